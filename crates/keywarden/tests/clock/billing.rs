//! Billing through the injected clock on the real SQLite store: key-hours
//! prorated from creation to the deletion date or the month's end, metered
//! requests, charges posted to the ledger once, statements that add up,
//! freezing a CMK account (default keys keep working) and unfreezing it by
//! a top-up, and a metering flush whose answer was lost counted once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use keywarden_core::billing::{
    LedgerKind, LineKind, Month, PriceTable, RequestCount, Standing, HOUR,
};
use keywarden_core::clock::UnixMillis;
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::{AliasName, KeyRef, ProductCode};
use keywarden_core::model::Origin;
use keywarden_core::ops::billing::BillingConfig;
use keywarden_core::store::StoreError;
use keywarden_core::{Caller, KmsConfig, KmsError};
use keywarden_testkit::clock::{self, key_request};
use keywarden_testkit::wrapped_store::{Hooks, Wrapped};

const DAY: i64 = UnixMillis::DAY;
const MINUTE: i64 = 60_000;
const NOVEMBER: Month = Month {
    year: 2026,
    month: 11,
};

/// `2026-11-<day>T<hour>:<minute>Z`.
fn november(day: i64, hour: i64, minute: i64) -> UnixMillis {
    UnixMillis(NOVEMBER.start().0 + (day - 1) * DAY + hour * HOUR + minute * MINUTE)
}

/// Can lose the answer of one `record_requests` after it committed, and
/// remembers the batch ids it was given.
struct Flaky {
    lose_next_answer: AtomicBool,
    record_calls: Mutex<Vec<String>>,
}

impl Hooks for Flaky {
    fn on_record_requests(&self, batch_id: &str) {
        self.record_calls.lock().unwrap().push(batch_id.to_owned());
    }
    fn after_record_requests(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if self.lose_next_answer.swap(false, Ordering::SeqCst) {
            // Committed, but the caller never hears so.
            result?;
            return Err(StoreError::Backend("connection lost after commit".into()));
        }
        result
    }
}

/// The fixture of these tests: a node on the SQLite store that can lose a
/// metering answer.
type Fixture = clock::Fixture<Wrapped<Flaky>>;

/// 72.00 per software key and month: 100 minor units per hour in a
/// 720-hour month, so November's amounts are exact.
fn billing() -> BillingConfig {
    BillingConfig {
        enabled: true,
        prices: PriceTable {
            software_key_month: 72_000,
            ..PriceTable::default()
        },
        freeze_default_keys: false,
    }
}

async fn fixture(start: UnixMillis) -> Fixture {
    let flaky = |inner| Wrapped {
        inner,
        hooks: Flaky {
            lose_next_answer: AtomicBool::new(false),
            record_calls: Mutex::new(Vec::new()),
        },
    };
    clock::fixture_with(start, flaky, |kms| kms.with_billing(billing())).await
}

async fn new_key(f: &Fixture) -> KeyRef {
    let key = f
        .kms
        .create_key(&f.caller, key_request(Origin::AwsKms))
        .await
        .unwrap();
    KeyRef::Id(key.key_id)
}

async fn encrypt(f: &Fixture, caller: &Caller, key: &KeyRef) -> Result<Vec<u8>, KmsError> {
    f.kms
        .encrypt(caller, key, b"metered", &EncryptionContext::empty(), false)
        .await
        .map(|(_, blob)| blob)
}

fn key_hours(lines: &[keywarden_core::billing::Line], key: &KeyRef) -> Option<(i64, i64)> {
    let KeyRef::Id(id) = key else {
        unreachable!("keys are named by id here")
    };
    lines.iter().find_map(|l| match l.kind {
        LineKind::KeyHours { key_id, hours, .. } if key_id == *id => Some((hours, l.amount)),
        _ => None,
    })
}

#[tokio::test]
async fn key_hours_are_prorated_and_charges_posted_once() {
    let f = fixture(november(10, 0, 0)).await;
    let account = f.caller.account_id.clone();
    f.kms
        .top_up(&account, 100_000, "prepaid", None)
        .await
        .unwrap();

    let first = new_key(&f).await;
    for _ in 0..3 {
        encrypt(&f, &f.caller, &first).await.unwrap();
    }
    assert!(f.kms.flush_metering().await.unwrap() > 0);

    f.clock.set(november(16, 12, 30));
    let scheduled = f
        .kms
        .schedule_key_deletion(&f.caller, &first, Some(7))
        .await
        .unwrap();
    assert_eq!(scheduled.deletion_date, Some(november(23, 12, 30)));

    f.clock.set(november(20, 6, 0));
    let second = new_key(&f).await;
    for _ in 0..2 {
        encrypt(&f, &f.caller, &second).await.unwrap();
    }
    f.kms.flush_metering().await.unwrap();

    f.clock.set(november(24, 0, 0));
    assert_eq!(f.kms.execute_due_deletions().await.unwrap(), 1);

    f.clock.set(UnixMillis(NOVEMBER.end().0 + 10 * MINUTE));
    let bill = f.kms.month_bill(&account, NOVEMBER).await.unwrap();
    // 10th 00:00 to 23rd 12:30: 13 days and 12.5 hours, 325 started hours.
    assert_eq!(
        key_hours(&bill.lines, &first),
        Some((325, 325 * 72_000 / 720))
    );
    // 20th 06:00 to the month's end: 10 days and 18 hours.
    assert_eq!(
        key_hours(&bill.lines, &second),
        Some((258, 258 * 72_000 / 720))
    );
    let requests: Vec<&LineKind> = bill
        .lines
        .iter()
        .map(|l| &l.kind)
        .filter(|k| matches!(k, LineKind::Requests { .. }))
        .collect();
    assert_eq!(
        requests,
        vec![&LineKind::Requests {
            total: 5,
            free: 5,
            billable: 0
        }]
    );
    assert_eq!(bill.lines.len(), 3);
    assert_eq!(bill.total, 32_500 + 25_800);

    // December: the deleted key is gone; the second key's first hour.
    let december = f.kms.month_bill(&account, NOVEMBER.next()).await.unwrap();
    assert_eq!(key_hours(&december.lines, &first), None);
    assert_eq!(key_hours(&december.lines, &second), Some((1, 72_000 / 744)));
    assert_eq!(december.lines.len(), 1);

    // One run posts November and December; a second posts nothing.
    let run = f.kms.run_billing().await.unwrap();
    assert_eq!((run.accounts, run.charges_posted, run.frozen), (1, 2, 0));
    let again = f.kms.run_billing().await.unwrap();
    assert_eq!((again.accounts, again.charges_posted), (1, 0));
    let charges: Vec<(i64, Option<Month>)> = f
        .kms
        .account_ledger(&account)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == LedgerKind::Charge)
        .map(|e| (e.amount, e.month))
        .collect();
    assert_eq!(
        charges,
        vec![(58_300, Some(NOVEMBER)), (96, Some(NOVEMBER.next()))]
    );

    let statement = f.kms.statement(&account, NOVEMBER).await.unwrap();
    let lines_sum: i64 = statement.bill.lines.iter().map(|l| l.amount).sum();
    assert_eq!(lines_sum, statement.charges_posted);
    assert_eq!(statement.charges_posted, 58_300);
    assert_eq!(
        statement.standing,
        Standing {
            balance: 100_000 - 58_300 - 96,
            frozen: false
        }
    );
}

#[tokio::test]
async fn a_frozen_account_refuses_cmk_crypto_until_topped_up() {
    let f = fixture(november(10, 0, 0)).await;
    let account = f.caller.account_id.clone();
    let cmk = new_key(&f).await;
    f.kms.register_seed_products().await.unwrap();
    let evs = ProductCode::parse("evs").unwrap();
    let default_key = KeyRef::AliasArn {
        region: KmsConfig::default().region,
        account: account.as_str().to_owned(),
        alias: AliasName::default_key(&evs),
    };
    let product = f.kms.product(&evs).await.unwrap();
    let evs_caller = f
        .kms
        .product_caller(&product, "AKIAEVS", "", "Encrypt", &[&default_key])
        .unwrap();
    // Both work, and the account's standing ("not frozen") is now cached.
    encrypt(&f, &f.caller, &cmk).await.unwrap();
    encrypt(&f, &evs_caller, &default_key).await.unwrap();

    f.clock.advance(DAY);
    let run = f.kms.run_billing().await.unwrap();
    assert_eq!(run.frozen, 1);
    let standing = f.kms.standing(&account).await.unwrap();
    assert!(standing.frozen && standing.balance < 0, "{standing:?}");

    assert!(matches!(
        encrypt(&f, &f.caller, &cmk).await,
        Err(KmsError::AccountFrozen(_))
    ));
    // Default keys keep working (freeze_default_keys is off).
    encrypt(&f, &evs_caller, &default_key).await.unwrap();

    // A top-up of less than the debt keeps it frozen; enough unfreezes it
    // at once (no cache to wait for).
    f.kms.top_up(&account, 1, "too little", None).await.unwrap();
    assert!(matches!(
        encrypt(&f, &f.caller, &cmk).await,
        Err(KmsError::AccountFrozen(_))
    ));
    let (_, standing) = f
        .kms
        .top_up(&account, -standing.balance, "enough", None)
        .await
        .unwrap();
    assert!(!standing.frozen, "{standing:?}");
    encrypt(&f, &f.caller, &cmk).await.unwrap();
}

#[tokio::test]
async fn a_flush_whose_answer_was_lost_is_retried_and_counted_once() {
    let f = fixture(november(10, 0, 0)).await;
    let account = f.caller.account_id.clone();
    let key = new_key(&f).await;
    for _ in 0..3 {
        encrypt(&f, &f.caller, &key).await.unwrap();
    }
    f.store.hooks.lose_next_answer.store(true, Ordering::SeqCst);
    assert!(f.kms.flush_metering().await.is_err());
    let total = |counts: Vec<RequestCount>| counts.iter().map(|c| c.count).sum::<u64>();
    // Committed although the flush failed.
    assert_eq!(
        total(f.kms.account_requests(&account, NOVEMBER).await.unwrap()),
        3
    );

    for _ in 0..2 {
        encrypt(&f, &f.caller, &key).await.unwrap();
    }
    f.kms.flush_metering().await.unwrap();
    assert_eq!(
        total(f.kms.account_requests(&account, NOVEMBER).await.unwrap()),
        5,
        "the retried batch must not count twice"
    );
    let calls = f.store.hooks.record_calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0], calls[1], "the retry must reuse the batch id");
    assert_ne!(calls[1], calls[2]);
    assert_eq!(f.kms.flush_metering().await.unwrap(), 0);
    assert_eq!(f.store.hooks.record_calls.lock().unwrap().len(), 3);
}
