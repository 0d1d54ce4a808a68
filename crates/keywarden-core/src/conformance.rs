//! The store conformance suite: the executable form of the [`crate::store`]
//! contract, one named case per part of it ([`CASES`]). Every backend runs
//! each case as its own test against a fresh store, so a failing case never
//! hides the others:
//!
//! ```ignore
//! /// A fresh, empty store for `case`, and whatever must outlive it (a
//! /// temporary directory, say).
//! async fn fresh_store(case: &'static str) -> (MyStore, Guard) { /* ... */ }
//!
//! mod conformance {
//!     keywarden_core::store_conformance_tests!(super::fresh_store);
//! }
//! ```
//!
//! The macro expands to one `#[tokio::test]` per case, named after it, and a
//! test that the expansion lists every case of [`CASES`]; both come from the
//! one list inside the macro, and a case function missing from that list is
//! dead code (a warning, an error in CI). [`run`] runs every case against one
//! store.
//!
//! A case panics, naming itself and what was expected, at the first
//! deviation. Cases create their own accounts and derive every id from a
//! per-run seed and a counter, so they also run against a database that
//! already holds data (including data of earlier runs); they never delete
//! anything they did not create. Needs the `conformance` feature.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::billing::{KeyLifetime, LedgerEntry, LedgerKind, Month, RequestCount, Standing};
use crate::clock::UnixMillis;
use crate::iam::{
    child_prefix, entity_name, IamAttachment, IamEntity, IamInlinePolicy, IamKind,
    IamManagedPolicy, IamOwner, IamRole, IamUser,
};
use crate::ids::{AccountId, AliasName, KeyId, KeyringId, ProductCode};
use crate::model::{
    Account, AliasRecord, AutoRotation, Credential, CredentialOwner, CredentialStatus,
    CryptoOperation, GrantConstraints, GrantOperation, GrantRecord, ImportState, KeyManager,
    KeyRecord, KeyState, KeyUsage, KeyVersion, KeyringKeyVersion, KeyringRecord,
    MaterialExpiration, Origin, Product, ProductClass, ProductStatus, RotationType, Tag,
};
use crate::model::{ConnectionErrorCode, ConnectionState, CustomKeyStoreRecord};
use crate::store::{GrantQuery, IamQuery, KeyQuery, Store, StoreError};

/// Runs every conformance case against `store`, panicking with a message
/// naming the case at the first deviation from the store contract.
///
/// Covered: key round-trips (all fields, several versions, version order),
/// account scoping of reads, insert conflicts, compare-and-set updates (stale,
/// missing, cross-account, non-increasing revisions), version immutability,
/// `list_keys` (account filter, pagination, `deletion_due_by`,
/// `rotation_due_by`, `material_expiry_due_by`, limit), imported material
/// (clearing a version's material, filling it back in, the import state),
/// `destroy_key` (compare-and-set, versions and aliases removed), aliases
/// (create, duplicates, missing or foreign targets, compare-and-set updates,
/// delete, filtered and paginated listing), accounts, credentials, products
/// (create, duplicates, status changes moving the change stamp, product
/// credentials beside account credentials), and
/// concurrent compare-and-set: of 16 simultaneous updates with the same
/// expected revision exactly one wins. Key usage: a batch is recorded,
/// only the newest use per key is kept whatever the order of batches,
/// uses of unknown or foreign keys are ignored, reads are account-scoped,
/// destroying a key removes its usage, and recording usage does not move
/// the change stamp. Metering: request counts add up per (account, key,
/// operation, month), a batch id counts once, reads are scoped by account
/// and month, recording does not move the change stamp; key lifetimes are
/// recorded by `insert_key` and `create_default_key` (hardware and default
/// flags) and closed by `destroy_key` at the key's deletion date. Ledger:
/// top-ups of unknown accounts are refused, the balance follows top-ups and
/// charges, `post_charges` posts only the missing part of a month's total
/// (once, also under 16 simultaneous calls), the frozen flag is set by a
/// charge below zero and cleared by a top-up back to zero or more (both
/// moving the change stamp), and the ledger is ordered, paginated and
/// scoped by account. Keyrings: creation with key versions, duplicates (id,
/// name within the account), unknown accounts, account-scoped ordered
/// listing, compare-and-set token updates, key versions strictly one after
/// the newest (gaps, duplicates and unknown keyrings refused), newest and
/// specific reads, `u32::MAX` key numbers and versions, deletion scoped by
/// account, and no effect on the change stamp; the suite leaves a keyring
/// with two keys and several versions behind (for dumps). IAM: entities are
/// created (duplicates and unknown accounts refused), read, replaced, listed
/// by kind and name prefix (one owner's children, never those of an owner
/// whose name extends it or matches it as a `LIKE` pattern), paginated and
/// scoped by account, deleted, and every write moves the change stamp;
/// credentials of IAM users round-trip and their status changes (moving
/// the change stamp). The suite leaves IAM entities and user credentials
/// behind (for dumps).
pub async fn run(store: &dyn Store) {
    for case in CASES {
        case.run(store).await;
    }
}

/// One conformance case: its name, which is the name of its test in every
/// backend, and the check itself.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name (a Rust identifier).
    pub name: &'static str,
    check: for<'a> fn(&'a dyn Store, &'a Ids) -> CaseFuture<'a>,
}

/// A running case. Not `Send`: cases run on the test's own task.
type CaseFuture<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

impl Case {
    /// Runs the case against `store`, panicking with a message naming the
    /// case at the first deviation from the store contract.
    pub async fn run(&self, store: &dyn Store) {
        let ids = Ids::new();
        (self.check)(store, &ids).await;
    }
}

impl Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

/// Runs the case called `name` against `store` (what each test generated by
/// [`store_conformance_tests!`](crate::store_conformance_tests) does).
///
/// # Panics
///
/// At the case's first deviation from the store contract, and when no case
/// is called `name`.
pub async fn run_case(store: &dyn Store, name: &str) {
    let case = CASES
        .iter()
        .find(|case| case.name == name)
        .unwrap_or_else(|| panic!("store conformance: there is no case called {name}"));
    case.run(store).await;
}

crate::store_conformance_tests!(@list @cases);

/// Expands to one `#[tokio::test]` per conformance case, named after the
/// case, each running it against a fresh store from `$fresh_store`, plus
/// `every_case_has_a_test`, which holds the expansion equal to
/// [`conformance::CASES`](crate::conformance::CASES).
///
/// `$fresh_store` is the path of an `async fn(&'static str) -> (S, G)`
/// taking the case's name and answering a fresh, empty store `S:
/// keywarden_core::store::Store` and a guard `G` that must outlive it (a
/// temporary directory; `()` if nothing). The calling crate needs `tokio`
/// (with the `macros` and `rt-multi-thread` features). Put the invocation in
/// a module of its own, so the case names cannot collide with the test
/// file's items.
///
/// This macro holds the list of cases: [`conformance::CASES`] is generated
/// from it too, in the same order.
///
/// [`conformance::CASES`]: crate::conformance::CASES
#[macro_export]
macro_rules! store_conformance_tests {
    ($fresh_store:path) => {
        $crate::store_conformance_tests!(@list @tests ($fresh_store));
    };
    // The one list of cases, in the order `run` runs them; handed to the
    // rule named by the tokens after `@list`.
    (@list @$rule:ident $($args:tt)*) => {
        $crate::store_conformance_tests!(@$rule $($args)* [
            accounts
            key_round_trip
            key_kinds_round_trip
            key_updates
            list_keys
            list_keys_due
            list_keys_rotation_due
            imported_material
            destroy_key
            create_alias
            update_and_delete_alias
            list_aliases
            aliases_per_region
            multi_region_keys
            credentials
            products
            default_keys
            grants
            concurrency
            change_feed
            root_key_check
            key_usage
            metering
            ledger
            keyrings
            iam_entities_create_get_list_delete
            iam_entity_changes_move_the_change_stamp
            user_credentials_roundtrip_and_status
            custom_key_stores
        ]);
    };
    (@cases [$($case:ident)*]) => {
        /// Every conformance case, in the order [`run`] runs them.
        pub const CASES: &[Case] = &[$(Case {
            name: stringify!($case),
            check: |store, ids| Box::pin($case(store, ids)),
        }),*];
    };
    (@tests ($fresh_store:path) [$($case:ident)*]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fresh_store(stringify!($case)).await;
                $crate::conformance::run_case(&fixture.0, stringify!($case)).await;
            }
        )*

        /// The generated tests are exactly the suite's cases, in its order.
        #[test]
        fn every_case_has_a_test() {
            let generated: &[&str] = &[$(stringify!($case)),*];
            let suite: ::std::vec::Vec<&str> = $crate::conformance::CASES
                .iter()
                .map(|case| case.name)
                .collect();
            assert_eq!(generated, suite.as_slice());
        }
    };
}

fn usage_of(key: &KeyRecord, at: i64, operation: CryptoOperation, who: &str) -> KeyUsage {
    KeyUsage {
        account_id: key.account_id.clone(),
        key_id: key.key_id,
        used_at: UnixMillis(at),
        operation,
        principal: who.into(),
        request_id: format!("req-{at}"),
    }
}

/// Key usage: batches, the newest-wins rule, scoping, destruction, and no
/// effect on the change stamp.
async fn key_usage(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "key_usage";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    let a = plain_key(ids, &account);
    let b = plain_key(ids, &account);
    ok(store.insert_key(&a).await, CASE, "insert_key");
    ok(store.insert_key(&b).await, CASE, "insert_key");
    let get = |key: &KeyRecord, acct: &AccountId| {
        let (acct, id) = (acct.clone(), key.key_id);
        async move { ok(store.get_key_usage(&acct, &id).await, CASE, "get_key_usage") }
    };
    assert_eq!(
        get(&a, &account).await,
        None,
        "store conformance: {CASE}: a key never used has no usage"
    );
    ok(
        store.usage_tracking_start().await,
        CASE,
        "usage_tracking_start",
    );

    let stamp = ok(store.change_stamp().await, CASE, "change_stamp");
    let first = [
        usage_of(&a, 2_000, CryptoOperation::Encrypt, "AKIA1"),
        usage_of(&b, 1_000, CryptoOperation::Decrypt, "AKIA2"),
    ];
    ok(
        store.record_key_usage(&first).await,
        CASE,
        "record_key_usage",
    );
    assert_eq!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        stamp,
        "store conformance: {CASE}: recording usage must not move the change stamp"
    );
    assert_eq!(get(&a, &account).await.as_ref(), Some(&first[0]));
    assert_eq!(get(&b, &account).await.as_ref(), Some(&first[1]));
    assert_eq!(
        get(&a, &other).await,
        None,
        "store conformance: {CASE}: usage is scoped by account"
    );

    // A batch flushed late (another node, a retry) carries an older use of
    // `a` and a newer one of `b`: only the newer one lands.
    let late = [
        usage_of(&a, 1_500, CryptoOperation::GenerateDataKey, "AKIA3"),
        usage_of(&b, 3_000, CryptoOperation::ReEncrypt, "AKIA3"),
        // The same instant as the stored use: the stored one stays.
        usage_of(&a, 2_000, CryptoOperation::Decrypt, "AKIA4"),
    ];
    ok(
        store.record_key_usage(&late).await,
        CASE,
        "record_key_usage",
    );
    assert_eq!(
        get(&a, &account).await.as_ref(),
        Some(&first[0]),
        "store conformance: {CASE}: an older or equal use must not replace a newer one"
    );
    assert_eq!(get(&b, &account).await.as_ref(), Some(&late[1]));

    // Uses of unknown keys and of keys named with the wrong account are
    // ignored, and do not fail the batch.
    let stranger = plain_key(ids, &account);
    let mut foreign = usage_of(&a, 9_000, CryptoOperation::Encrypt, "AKIA5");
    foreign.account_id = other.clone();
    let odd = [
        usage_of(&stranger, 9_000, CryptoOperation::Encrypt, "AKIA5"),
        foreign,
    ];
    ok(store.record_key_usage(&odd).await, CASE, "record_key_usage");
    assert_eq!(get(&stranger, &account).await, None);
    assert_eq!(get(&a, &other).await, None);
    assert_eq!(get(&a, &account).await.as_ref(), Some(&first[0]));
    ok(
        store.record_key_usage(&[]).await,
        CASE,
        "record_key_usage []",
    );

    // Destroying a key removes its usage; a late use does not bring it back.
    ok(
        store.destroy_key(&account, &a.key_id, a.revision).await,
        CASE,
        "destroy_key",
    );
    assert_eq!(get(&a, &account).await, None);
    ok(
        store
            .record_key_usage(&[usage_of(&a, 10_000, CryptoOperation::Encrypt, "AKIA1")])
            .await,
        CASE,
        "record_key_usage",
    );
    assert_eq!(
        get(&a, &account).await,
        None,
        "store conformance: {CASE}: usage of a destroyed key must be ignored"
    );
}

/// The change stamp stays put while nothing is committed and moves after
/// every commit, so caches can trust it.
async fn change_feed(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "change_feed";
    let first = ok(store.change_stamp().await, CASE, "change_stamp");
    let again = ok(store.change_stamp().await, CASE, "change_stamp");
    assert_eq!(
        first, again,
        "store conformance: {CASE}: the stamp must not move while nothing is committed"
    );
    for i in 0..3 {
        let before = ok(store.change_stamp().await, CASE, "change_stamp");
        let a = Account {
            account_id: ids.account(),
            name: format!("change feed {i}"),
            created_at: UnixMillis(1_700_000_000_000),
        };
        ok(store.create_account(&a).await, CASE, "create_account");
        let after = ok(store.change_stamp().await, CASE, "change_stamp");
        assert_ne!(
            before, after,
            "store conformance: {CASE}: the stamp must move after a commit"
        );
    }
}

fn count_of(key: &KeyRecord, operation: CryptoOperation, month: Month, count: u64) -> RequestCount {
    RequestCount {
        account_id: key.account_id.clone(),
        key_id: key.key_id,
        operation,
        month,
        count,
    }
}

/// Metering: request counts (batches counted once, sums per counter,
/// scoping, the change stamp) and key lifetimes (recorded on insert and on
/// default key creation, closed at the deletion date on destruction).
async fn metering(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "metering";
    let november = Month {
        year: 2026,
        month: 11,
    };
    let december = november.next();
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    let a = plain_key(ids, &account);
    let b = plain_key(ids, &account);
    let foreign = plain_key(ids, &other);
    let counts = |acct: &AccountId, month: Month| {
        let acct = acct.clone();
        async move {
            let mut got = ok(
                store.request_counts(&acct, month).await,
                CASE,
                "request_counts",
            );
            // Ordered by key and operation.
            let mut sorted = got.clone();
            sorted.sort_by_key(|c| (c.key_id.to_string(), c.operation.as_str()));
            assert_eq!(
                got, sorted,
                "store conformance: {CASE}: request_counts must be ordered by key and operation"
            );
            got.sort_by_key(|c| (c.key_id.to_string(), c.operation.as_str()));
            got
        }
    };
    let sorted = |mut v: Vec<RequestCount>| {
        v.sort_by_key(|c| (c.key_id.to_string(), c.operation.as_str()));
        v
    };
    assert_eq!(counts(&account, november).await, Vec::new());

    let stamp = ok(store.change_stamp().await, CASE, "change_stamp");
    let batch = format!("conformance-{:016x}", ids.next());
    let first = [
        count_of(&a, CryptoOperation::Encrypt, november, 3),
        count_of(&a, CryptoOperation::Decrypt, november, 2),
        count_of(&b, CryptoOperation::GenerateDataKey, november, 1),
        count_of(&a, CryptoOperation::Encrypt, december, 7),
        count_of(&foreign, CryptoOperation::Encrypt, november, 5),
    ];
    ok(
        store.record_requests(&batch, &first).await,
        CASE,
        "record_requests",
    );
    assert_eq!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        stamp,
        "store conformance: {CASE}: recording requests must not move the change stamp"
    );
    let want_november = sorted(first[..3].to_vec());
    assert_eq!(
        counts(&account, november).await,
        want_november,
        "store conformance: {CASE}: request_counts must return the recorded counts of the account and month"
    );
    assert_eq!(
        counts(&account, december).await,
        vec![first[3].clone()],
        "store conformance: {CASE}: request_counts must be scoped by month"
    );
    assert_eq!(
        counts(&other, november).await,
        vec![first[4].clone()],
        "store conformance: {CASE}: request_counts must be scoped by account"
    );

    // The same batch again (a retry after a lost answer) changes nothing.
    ok(
        store.record_requests(&batch, &first).await,
        CASE,
        "record_requests (same batch id)",
    );
    assert_eq!(
        counts(&account, november).await,
        want_november,
        "store conformance: {CASE}: a batch id recorded before must not count twice"
    );

    // Another batch adds to the counters.
    let second = [
        count_of(&a, CryptoOperation::Encrypt, november, 4),
        count_of(&b, CryptoOperation::Decrypt, november, 9),
    ];
    ok(
        store
            .record_requests(&format!("conformance-{:016x}", ids.next()), &second)
            .await,
        CASE,
        "record_requests (another batch)",
    );
    assert_eq!(
        counts(&account, november).await,
        sorted(vec![
            count_of(&a, CryptoOperation::Encrypt, november, 7),
            first[1].clone(),
            first[2].clone(),
            second[1].clone(),
        ]),
        "store conformance: {CASE}: counts of a new batch must add to the counters"
    );
    assert_eq!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        stamp,
        "store conformance: {CASE}: recording requests must not move the change stamp"
    );
    ok(
        store
            .record_requests(&format!("conformance-{:016x}", ids.next()), &[])
            .await,
        CASE,
        "record_requests []",
    );

    // Key lifetimes: recorded with the key, whichever way it is created.
    let t = 1_794_000_000_000;
    let software = KeyRecord {
        created_at: UnixMillis(t),
        ..plain_key(ids, &account)
    };
    let hardware = KeyRecord {
        origin: Origin::AwsCloudHsm,
        created_at: UnixMillis(t + 1_000),
        ..plain_key(ids, &account)
    };
    let code = ids.product();
    let default_key = KeyRecord {
        key_manager: KeyManager::Aws,
        default_for: Some(code.clone()),
        kind: crate::key_spec::KeyKind::default(),
        created_at: UnixMillis(t + 2_000),
        ..plain_key(ids, &account)
    };
    let elsewhere = KeyRecord {
        created_at: UnixMillis(t),
        ..plain_key(ids, &other)
    };
    ok(store.insert_key(&software).await, CASE, "insert_key");
    ok(store.insert_key(&hardware).await, CASE, "insert_key");
    ok(store.insert_key(&elsewhere).await, CASE, "insert_key");
    let default_alias = AliasRecord {
        account_id: account.clone(),
        name: AliasName::default_key(&code),
        target: default_key.key_id,
        region: None,
        created_at: UnixMillis(t + 2_000),
        updated_at: UnixMillis(t + 2_000),
        revision: 1,
    };
    ok(
        store.create_default_key(&default_key, &default_alias).await,
        CASE,
        "create_default_key",
    );
    let lifetime = |key: &KeyRecord, hardware: bool, default_key: bool| KeyLifetime {
        account_id: key.account_id.clone(),
        key_id: key.key_id,
        hardware,
        default_key,
        created_at: key.created_at,
        deleted_at: None,
    };
    let lifetimes = |acct: &AccountId, from: i64, to: i64| {
        let acct = acct.clone();
        async move {
            let mut got = ok(
                store
                    .key_lifetimes(&acct, UnixMillis(from), UnixMillis(to))
                    .await,
                CASE,
                "key_lifetimes",
            );
            got.sort_by_key(|l| l.key_id.to_string());
            got
        }
    };
    let by_id = |mut v: Vec<KeyLifetime>| {
        v.sort_by_key(|l| l.key_id.to_string());
        v
    };
    let all = by_id(vec![
        lifetime(&software, false, false),
        lifetime(&hardware, true, false),
        lifetime(&default_key, false, true),
    ]);
    assert_eq!(
        lifetimes(&account, t, t + UnixMillis::DAY).await,
        all,
        "store conformance: {CASE}: insert_key and create_default_key must record the key's \
         lifetime (created_at, hardware for AWS_CLOUDHSM, default_key for default keys)"
    );
    assert_eq!(
        lifetimes(&account, t - UnixMillis::DAY, t).await,
        Vec::new(),
        "store conformance: {CASE}: a window ending at a key's creation must not include it"
    );
    assert_eq!(
        lifetimes(&account, t - UnixMillis::DAY, t + 1).await,
        vec![lifetime(&software, false, false)],
        "store conformance: {CASE}: a window overlapping a key's creation must include it"
    );
    assert_eq!(
        lifetimes(&other, t, t + UnixMillis::DAY).await,
        vec![lifetime(&elsewhere, false, false)],
        "store conformance: {CASE}: key_lifetimes must be scoped by account"
    );

    // Destroyed: the lifetime stays, ending at the key's deletion date.
    let deletion_date = UnixMillis(t + 10 * UnixMillis::DAY);
    let pending = KeyRecord {
        revision: software.revision + 1,
        state: KeyState::PendingDeletion,
        deletion_date: Some(deletion_date),
        pending_window_days: Some(10),
        ..software.clone()
    };
    ok(
        store.update_key(&pending, software.revision).await,
        CASE,
        "update_key to PendingDeletion",
    );
    ok(
        store
            .destroy_key(&account, &software.key_id, pending.revision)
            .await,
        CASE,
        "destroy_key",
    );
    let ended = KeyLifetime {
        deleted_at: Some(deletion_date),
        ..lifetime(&software, false, false)
    };
    assert_eq!(
        lifetimes(&account, t, t + UnixMillis::DAY).await,
        by_id(vec![
            ended.clone(),
            lifetime(&hardware, true, false),
            lifetime(&default_key, false, true),
        ]),
        "store conformance: {CASE}: a destroyed key's lifetime must remain, ending at its \
         deletion date"
    );
    assert_eq!(
        lifetimes(&account, deletion_date.0 - 1, deletion_date.0 + 1)
            .await
            .into_iter()
            .find(|l| l.key_id == software.key_id),
        Some(ended),
        "store conformance: {CASE}: a window overlapping the deletion date must include the key"
    );
    assert_eq!(
        lifetimes(&account, deletion_date.0, deletion_date.0 + UnixMillis::DAY).await,
        by_id(vec![
            lifetime(&hardware, true, false),
            lifetime(&default_key, false, true),
        ]),
        "store conformance: {CASE}: a window after the deletion date must not include the key"
    );
    assert_eq!(
        lifetimes(&other, t, deletion_date.0 + UnixMillis::DAY).await,
        vec![lifetime(&elsewhere, false, false)],
        "store conformance: {CASE}: key_lifetimes must be scoped by account"
    );
}

/// The ledger: top-ups, charges posted as month-to-date totals, the
/// balance and frozen flag (and their effect on the change stamp), order,
/// pagination, scoping, and simultaneous postings of one total.
async fn ledger(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "ledger";
    const POSTERS: usize = 16;
    let november = Month {
        year: 2026,
        month: 11,
    };
    let december = november.next();
    let at = |n: i64| UnixMillis(1_794_000_000_000 + n);
    let standing_of = |balance: i64, frozen: bool| Standing { balance, frozen };

    expect_err(
        store
            .append_top_up(&ids.account(), 100, at(0), "x", None)
            .await,
        Expected::MissingReference,
        CASE,
        "append_top_up to an unknown account",
    );

    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    assert_eq!(
        ok(store.standing(&account).await, CASE, "standing"),
        standing_of(0, false),
        "store conformance: {CASE}: an account without entries stands at zero, not frozen"
    );

    let mut entries: Vec<LedgerEntry> = Vec::new();
    let (top_up, standing) = ok(
        store
            .append_top_up(&account, 1_000, at(1), "wire \u{2713} 'transfer'", None)
            .await,
        CASE,
        "append_top_up",
    );
    assert_eq!(
        (
            &top_up.account_id,
            top_up.at,
            top_up.kind,
            top_up.amount,
            top_up.month,
            top_up.memo.as_str()
        ),
        (
            &account,
            at(1),
            LedgerKind::TopUp,
            1_000,
            None,
            "wire \u{2713} 'transfer'"
        ),
        "store conformance: {CASE}: append_top_up must return the entry as recorded"
    );
    assert_eq!(standing, standing_of(1_000, false));
    entries.push(top_up);

    // Month-to-date totals: only the missing part is posted.
    let post = |month: Month, total: i64, n: i64| {
        let account = account.clone();
        async move {
            ok(
                store.post_charges(&account, month, total, at(n)).await,
                CASE,
                "post_charges",
            )
        }
    };
    let (charge, standing) = post(november, 300, 2).await;
    let charge = charge.unwrap_or_else(|| {
        panic!("store conformance: {CASE}: a first month-to-date total must post a charge")
    });
    assert_eq!(
        (
            charge.kind,
            charge.amount,
            charge.month,
            charge.at,
            &charge.account_id
        ),
        (LedgerKind::Charge, 300, Some(november), at(2), &account),
        "store conformance: {CASE}: post_charges must return the charge as recorded"
    );
    assert_eq!(standing, standing_of(700, false));
    entries.push(charge);
    assert_eq!(
        post(november, 300, 3).await,
        (None, standing_of(700, false)),
        "store conformance: {CASE}: posting the same total twice must post once"
    );
    let (charge, standing) = post(november, 500, 4).await;
    assert_eq!(
        charge.as_ref().map(|c| (c.amount, c.month)),
        Some((200, Some(november))),
        "store conformance: {CASE}: a higher total must post only the difference"
    );
    assert_eq!(standing, standing_of(500, false));
    entries.extend(charge);
    assert_eq!(
        post(november, 100, 5).await,
        (None, standing_of(500, false)),
        "store conformance: {CASE}: a lower total must post nothing (never a negative charge)"
    );

    // Below zero: frozen, and the change stamp moves (caches learn of it).
    let stamp = ok(store.change_stamp().await, CASE, "change_stamp");
    let (charge, standing) = post(december, 800, 6).await;
    assert_eq!(
        charge.as_ref().map(|c| (c.amount, c.month)),
        Some((800, Some(december))),
        "store conformance: {CASE}: totals are per month"
    );
    assert_eq!(
        standing,
        standing_of(-300, true),
        "store conformance: {CASE}: a charge taking the balance below zero must freeze the account"
    );
    entries.extend(charge);
    assert_ne!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        stamp,
        "store conformance: {CASE}: freezing an account must move the change stamp"
    );
    assert_eq!(
        ok(store.standing(&account).await, CASE, "standing"),
        standing_of(-300, true)
    );
    let (charge, standing) = post(december, 900, 7).await;
    assert_eq!(charge.as_ref().map(|c| c.amount), Some(100));
    assert_eq!(standing, standing_of(-400, true));
    entries.extend(charge);

    // A top-up that leaves the balance below zero keeps it frozen; one that
    // brings it to zero unfreezes it and moves the stamp.
    let (top_up, standing) = ok(
        store.append_top_up(&account, 100, at(8), "", None).await,
        CASE,
        "append_top_up",
    );
    assert_eq!(
        standing,
        standing_of(-300, true),
        "store conformance: {CASE}: a top-up leaving the balance below zero must not unfreeze"
    );
    entries.push(top_up);
    let stamp = ok(store.change_stamp().await, CASE, "change_stamp");
    let (top_up, standing) = ok(
        store.append_top_up(&account, 300, at(9), "", None).await,
        CASE,
        "append_top_up",
    );
    assert_eq!(
        standing,
        standing_of(0, false),
        "store conformance: {CASE}: a top-up bringing the balance to zero must unfreeze"
    );
    assert_ne!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        stamp,
        "store conformance: {CASE}: unfreezing an account must move the change stamp"
    );
    entries.push(top_up);
    assert_eq!(
        ok(store.standing(&account).await, CASE, "standing"),
        standing_of(0, false)
    );

    // The ledger: every entry, in seq order; pages after a seq.
    let all = ok(store.ledger(&account, None, 100).await, CASE, "ledger");
    assert_eq!(
        all, entries,
        "store conformance: {CASE}: ledger must return the account's entries as recorded, in order"
    );
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "store conformance: {CASE}: ledger seqs must increase"
    );
    assert_eq!(
        ok(
            store.ledger(&account, Some(all[2].seq), 2).await,
            CASE,
            "ledger"
        ),
        all[3..5].to_vec(),
        "store conformance: {CASE}: ledger must page after a seq, at most limit entries"
    );
    assert_eq!(
        ok(
            store.ledger(&account, Some(all[6].seq), 100).await,
            CASE,
            "ledger"
        ),
        Vec::new()
    );
    assert_eq!(
        ok(store.ledger(&other, None, 100).await, CASE, "ledger"),
        Vec::new(),
        "store conformance: {CASE}: ledger must be scoped by account"
    );
    assert_eq!(
        ok(store.standing(&other).await, CASE, "standing"),
        standing_of(0, false),
        "store conformance: {CASE}: standing must be scoped by account"
    );

    // Simultaneous postings of one total (several nodes): one charge.
    let busy = new_account(store, ids).await;
    let results = join_all(
        (0..POSTERS)
            .map(|i| store.post_charges(&busy, november, 1_234, at(10 + i as i64)))
            .collect(),
    )
    .await;
    let posted: Vec<&LedgerEntry> = results
        .iter()
        .filter_map(|r| match r {
            Ok((entry, _)) => entry.as_ref(),
            Err(e) => panic!("store conformance: {CASE}: post_charges failed: {e:?}"),
        })
        .collect();
    assert_eq!(
        posted.len(),
        1,
        "store conformance: {CASE}: of {POSTERS} simultaneous post_charges with one total \
         exactly one must post"
    );
    let ledger = ok(store.ledger(&busy, None, 100).await, CASE, "ledger");
    assert_eq!(
        ledger.iter().map(|e| e.amount).collect::<Vec<_>>(),
        vec![1_234],
        "store conformance: {CASE}: simultaneous post_charges must post the total once"
    );
    assert_eq!(
        ok(store.standing(&busy).await, CASE, "standing"),
        standing_of(-1_234, true)
    );

    // Top-ups with a reference: idempotent per account.
    let paid = new_account(store, ids).await;
    let (first, standing) = ok(
        store
            .append_top_up(&paid, 500, at(30), "invoice 7", Some("txn-7"))
            .await,
        CASE,
        "append_top_up with a reference",
    );
    assert_eq!(
        (
            first.amount,
            first.memo.as_str(),
            first.reference.as_deref()
        ),
        (500, "invoice 7", Some("txn-7")),
        "store conformance: {CASE}: append_top_up must return the reference as recorded"
    );
    assert_eq!(standing, standing_of(500, false));
    let (again, standing) = ok(
        store
            .append_top_up(&paid, 500, at(31), "retry", Some("txn-7"))
            .await,
        CASE,
        "append_top_up with a used reference",
    );
    assert_eq!(
        again, first,
        "store conformance: {CASE}: a top-up with a used reference must answer the existing entry"
    );
    assert_eq!(
        standing,
        standing_of(500, false),
        "store conformance: {CASE}: a top-up with a used reference must credit once"
    );
    expect_err(
        store
            .append_top_up(&paid, 600, at(32), "other", Some("txn-7"))
            .await,
        Expected::AlreadyExists,
        CASE,
        "append_top_up with a used reference and another amount",
    );
    let paid_other = new_account(store, ids).await;
    let (elsewhere, standing) = ok(
        store
            .append_top_up(&paid_other, 600, at(33), "", Some("txn-7"))
            .await,
        CASE,
        "append_top_up with another account's reference",
    );
    assert!(
        elsewhere.seq != first.seq && standing == standing_of(600, false),
        "store conformance: {CASE}: references must be scoped by account"
    );
    for n in 0..2 {
        ok(
            store.append_top_up(&paid, 100, at(34 + n), "", None).await,
            CASE,
            "append_top_up without a reference",
        );
    }
    assert_eq!(
        ok(store.ledger(&paid, None, 100).await, CASE, "ledger")
            .iter()
            .map(|e| (e.amount, e.reference.as_deref()))
            .collect::<Vec<_>>(),
        vec![(500, Some("txn-7")), (100, None), (100, None)],
        "store conformance: {CASE}: a refused reference writes nothing; top-ups without \
         a reference always append"
    );
    assert_eq!(
        ok(store.standing(&paid).await, CASE, "standing"),
        standing_of(700, false)
    );

    // Simultaneous top-ups with one reference (several nodes): one entry.
    let racing = new_account(store, ids).await;
    let results = join_all(
        (0..POSTERS)
            .map(|i| store.append_top_up(&racing, 250, at(40 + i as i64), "race", Some("txn-race")))
            .collect(),
    )
    .await;
    let seqs: Vec<u64> = results
        .iter()
        .map(|r| match r {
            Ok((entry, _)) => entry.seq,
            Err(e) => panic!("store conformance: {CASE}: append_top_up failed: {e:?}"),
        })
        .collect();
    assert!(
        seqs.iter().all(|s| *s == seqs[0]),
        "store conformance: {CASE}: simultaneous top-ups with one reference must all answer \
         the one entry: {seqs:?}"
    );
    assert_eq!(
        ok(store.ledger(&racing, None, 100).await, CASE, "ledger").len(),
        1,
        "store conformance: {CASE}: simultaneous top-ups with one reference must append once"
    );
    assert_eq!(
        ok(store.standing(&racing).await, CASE, "standing"),
        standing_of(250, false)
    );
}

// ---------------------------------------------------------------------------
// Cases

async fn accounts(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "accounts";
    let a = Account {
        account_id: ids.account(),
        name: "conformance account \u{2713} \"quoted\"".into(),
        created_at: UnixMillis(1_700_000_000_001),
    };
    ok(store.create_account(&a).await, CASE, "create_account");
    assert_eq!(
        ok(store.get_account(&a.account_id).await, CASE, "get_account"),
        Some(a.clone()),
        "store conformance: {CASE}: get_account must return the account as created"
    );

    let duplicate = Account {
        name: "another name".into(),
        ..a.clone()
    };
    expect_err(
        store.create_account(&duplicate).await,
        Expected::AlreadyExists,
        CASE,
        "create_account with a taken id",
    );
    assert_eq!(
        ok(store.get_account(&a.account_id).await, CASE, "get_account"),
        Some(a.clone()),
        "store conformance: {CASE}: a refused duplicate must not change the stored account"
    );
    assert_eq!(
        ok(store.get_account(&ids.account()).await, CASE, "get_account"),
        None,
        "store conformance: {CASE}: get_account of an unknown id must be None"
    );

    let b = Account {
        account_id: ids.account(),
        name: String::new(),
        created_at: UnixMillis(0),
    };
    ok(store.create_account(&b).await, CASE, "create_account");
    let all = ok(store.list_accounts().await, CASE, "list_accounts");
    assert_strictly_sorted(
        all.iter().map(|x| x.account_id.as_str()),
        CASE,
        "list_accounts",
    );
    for want in [&a, &b] {
        assert!(
            all.contains(want),
            "store conformance: {CASE}: list_accounts must include every account as created"
        );
    }
}

/// Keys of other specs: spec, usage and public key come back as inserted,
/// survive updates, and show in listings.
async fn key_kinds_round_trip(store: &dyn Store, ids: &Ids) {
    use crate::key_spec::{KeyKind, KeySpec, KeyUsageType};
    const CASE: &str = "key kinds round trip";
    let account = new_account(store, ids).await;
    let mut signer = plain_key(ids, &account);
    signer.kind = KeyKind {
        spec: KeySpec::EccNistP256,
        usage: KeyUsageType::SignVerify,
        public_key: Some((0..=255u8).rev().collect()),
    };
    let mut mac = plain_key(ids, &account);
    mac.kind = KeyKind::new(KeySpec::Hmac512, KeyUsageType::GenerateVerifyMac);
    for key in [&signer, &mac] {
        ok(store.insert_key(key).await, CASE, "insert_key");
        assert_eq!(
            get_key(store, &account, &key.key_id, CASE).await.as_ref(),
            Some(key),
            "store conformance: {CASE}: get_key must return the key's spec, usage and public key"
        );
    }
    let mut updated = signer.clone();
    updated.description = "renamed".into();
    updated.state = KeyState::Disabled;
    updated.revision = signer.revision + 1;
    ok(
        store.update_key(&updated, signer.revision).await,
        CASE,
        "update_key",
    );
    let got = get_key(store, &account, &signer.key_id, CASE)
        .await
        .expect("updated key");
    assert_eq!(
        got.kind, signer.kind,
        "store conformance: {CASE}: update_key must keep the key's kind and public key"
    );
    let listed = ok(
        store
            .list_keys(&KeyQuery {
                account: Some(account.clone()),
                after: None,
                deletion_due_by: None,
                rotation_due_by: None,
                material_expiry_due_by: None,
                limit: 10,
            })
            .await,
        CASE,
        "list_keys",
    );
    let kinds: Vec<_> = listed.iter().map(|k| (k.key_id, k.kind.clone())).collect();
    assert!(
        kinds.contains(&(mac.key_id, mac.kind.clone())),
        "store conformance: {CASE}: list_keys must carry each key's kind"
    );
}

async fn key_round_trip(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "key round trip";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;

    let full = full_key(ids, &account);
    ok(store.insert_key(&full).await, CASE, "insert_key");
    assert_eq!(
        get_key(store, &account, &full.key_id, CASE).await,
        Some(full.clone()),
        "store conformance: {CASE}: get_key must return every field as inserted"
    );
    assert_eq!(
        get_key(store, &other, &full.key_id, CASE).await,
        None,
        "store conformance: {CASE}: get_key with another account must be None"
    );
    assert_eq!(
        get_key(store, &account, &ids.key(), CASE).await,
        None,
        "store conformance: {CASE}: get_key of an unknown id must be None"
    );
    assert_eq!(
        ok(store.key_account(&full.key_id).await, CASE, "key_account"),
        Some(account.clone()),
        "store conformance: {CASE}: key_account must name the account holding the key"
    );
    assert_eq!(
        ok(store.key_account(&ids.key()).await, CASE, "key_account"),
        None,
        "store conformance: {CASE}: key_account of an unknown id must be None"
    );

    let mut duplicate = plain_key(ids, &account);
    duplicate.key_id = full.key_id;
    expect_err(
        store.insert_key(&duplicate).await,
        Expected::AlreadyExists,
        CASE,
        "insert_key with a taken key id",
    );
    duplicate.account_id = other.clone();
    expect_err(
        store.insert_key(&duplicate).await,
        Expected::AlreadyExists,
        CASE,
        "insert_key with a key id taken in another account",
    );
    assert_eq!(
        get_key(store, &account, &full.key_id, CASE).await,
        Some(full.clone()),
        "store conformance: {CASE}: a refused insert must not change the stored key"
    );
    assert_eq!(
        get_key(store, &other, &full.key_id, CASE).await,
        None,
        "store conformance: {CASE}: a refused insert must not create the key in another account"
    );

    // A key waiting for imported material has no versions at all.
    let empty = KeyRecord {
        state: KeyState::PendingImport,
        origin: Origin::External,
        versions: Vec::new(),
        ..plain_key(ids, &account)
    };
    ok(
        store.insert_key(&empty).await,
        CASE,
        "insert_key without versions",
    );
    assert_eq!(
        get_key(store, &account, &empty.key_id, CASE).await,
        Some(empty),
        "store conformance: {CASE}: a key without versions must round-trip"
    );

    // Versions come back ordered by number, whatever order they were given
    // in; the full u32 range and large revisions must be storable.
    let mut shuffled = plain_key(ids, &account);
    shuffled.revision = 1 << 40;
    shuffled.versions = vec![version(u32::MAX, 7), version(1, 1), version(2, 2)];
    ok(store.insert_key(&shuffled).await, CASE, "insert_key");
    let mut sorted = shuffled.clone();
    sorted.versions.sort_by_key(|v| v.version);
    assert_eq!(
        get_key(store, &account, &shuffled.key_id, CASE).await,
        Some(sorted),
        "store conformance: {CASE}: versions must be returned ordered by version, \
         u32::MAX versions and 2^40 revisions must round-trip"
    );
}

async fn key_updates(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "update_key";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;

    let mut original = full_key(ids, &account);
    original.versions.truncate(2);
    ok(store.insert_key(&original).await, CASE, "insert_key");

    // A successful compare-and-set replaces every metadata field and adds
    // the new version.
    let mut v2 = original.clone();
    v2.revision = original.revision + 1;
    v2.description = "updated".into();
    v2.state = KeyState::Disabled;
    v2.deletion_date = None;
    v2.pending_window_days = None;
    v2.tags = vec![Tag {
        key: "only".into(),
        value: "tag".into(),
    }];
    v2.policy = None;
    v2.rotation = Some(AutoRotation {
        period_days: 2560,
        next_rotation: UnixMillis(1_900_000_000_000),
    });
    v2.on_demand_rotations = 4;
    v2.deletion_protection = false;
    v2.versions.push(KeyVersion {
        rotation: Some(RotationType::OnDemand),
        ..version(3, 3)
    });
    ok(
        store.update_key(&v2, original.revision).await,
        CASE,
        "update_key with the current revision",
    );
    assert_eq!(
        get_key(store, &account, &v2.key_id, CASE).await,
        Some(v2.clone()),
        "store conformance: {CASE}: after a successful update get_key must return the new record"
    );

    // Stale and wrong expectations.
    let mut stale = v2.clone();
    stale.revision = v2.revision + 1;
    stale.description = "lost update".into();
    expect_err(
        store.update_key(&stale, original.revision).await,
        Expected::Conflict,
        CASE,
        "update_key with a stale revision",
    );
    stale.revision = v2.revision + 10;
    expect_err(
        store.update_key(&stale, v2.revision + 5).await,
        Expected::Conflict,
        CASE,
        "update_key with a revision newer than the stored one",
    );
    assert_eq!(
        get_key(store, &account, &v2.key_id, CASE).await,
        Some(v2.clone()),
        "store conformance: {CASE}: a refused update must not change the key"
    );

    // A key cannot be moved to another account by an update.
    let mut moved = v2.clone();
    moved.account_id = other.clone();
    moved.revision = v2.revision + 1;
    expect_err(
        store.update_key(&moved, v2.revision).await,
        Expected::Conflict,
        CASE,
        "update_key naming another account than the key's",
    );
    assert_eq!(
        get_key(store, &other, &v2.key_id, CASE).await,
        None,
        "store conformance: {CASE}: an update must never move a key to another account"
    );

    // The new revision must exceed the expected one; otherwise two updaters
    // holding the same revision could both succeed.
    let mut same = v2.clone();
    same.description = "revision not bumped".into();
    assert!(
        store.update_key(&same, v2.revision).await.is_err(),
        "store conformance: {CASE}: update_key whose new revision does not exceed the \
         expected one must be refused"
    );
    assert_eq!(
        get_key(store, &account, &v2.key_id, CASE).await,
        Some(v2.clone()),
        "store conformance: {CASE}: a refused update must not change the key"
    );

    // Updates never change or remove stored versions, they only add.
    let mut v3 = v2.clone();
    v3.revision = v2.revision + 1;
    v3.rotation = None;
    v3.versions[0].material = b"tampered".to_vec();
    v3.versions[0].protector = "tampered".into();
    v3.versions[0].rotation = Some(RotationType::Automatic);
    v3.versions.remove(1);
    v3.versions.push(version(4, 4));
    ok(store.update_key(&v3, v2.revision).await, CASE, "update_key");
    let mut expected = v3.clone();
    expected.versions = v2.versions.clone();
    expected.versions.push(version(4, 4));
    assert_eq!(
        get_key(store, &account, &v3.key_id, CASE).await,
        Some(expected),
        "store conformance: {CASE}: an update must keep stored versions unchanged and add new ones"
    );

    // A missing key is a conflict too.
    let mut missing = plain_key(ids, &account);
    missing.revision = 2;
    expect_err(
        store.update_key(&missing, 1).await,
        Expected::Conflict,
        CASE,
        "update_key of a key that does not exist",
    );
    assert_eq!(
        get_key(store, &account, &missing.key_id, CASE).await,
        None,
        "store conformance: {CASE}: update_key must not create a missing key"
    );
}

async fn list_keys(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "list_keys";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;

    let mut mine: Vec<KeyRecord> = (0..7).map(|_| plain_key(ids, &account)).collect();
    mine[3] = KeyRecord {
        key_id: mine[3].key_id,
        ..full_key(ids, &account)
    };
    let theirs: Vec<KeyRecord> = (0..3).map(|_| plain_key(ids, &other)).collect();
    for key in mine.iter().chain(&theirs) {
        ok(store.insert_key(key).await, CASE, "insert_key");
    }
    // Key ids sort as their text form; that is also KeyId's own order.
    mine.sort_by_key(|k| k.key_id.to_string());
    assert!(
        mine.windows(2).all(|w| w[0].key_id < w[1].key_id),
        "store conformance: {CASE}: suite bug: KeyId order differs from its text order"
    );

    let query = |after: Option<KeyId>, limit: usize| KeyQuery {
        account: Some(account.clone()),
        after,
        deletion_due_by: None,
        rotation_due_by: None,
        material_expiry_due_by: None,
        limit,
    };
    assert_eq!(
        ok(store.list_keys(&query(None, 100)).await, CASE, "list_keys"),
        mine,
        "store conformance: {CASE}: listing an account must return exactly its keys, complete \
         with versions, ordered by key id"
    );

    // Pagination: `after` is exclusive, `limit` bounds every page.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = ok(store.list_keys(&query(after, 3)).await, CASE, "list_keys");
        assert!(
            page.len() <= 3,
            "store conformance: {CASE}: a page must hold at most `limit` keys"
        );
        let Some(last) = page.last() else { break };
        after = Some(last.key_id);
        let full = page.len() == 3;
        paged.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(
        paged, mine,
        "store conformance: {CASE}: pages of 3 must concatenate to the full listing"
    );
    assert_eq!(
        ok(
            store.list_keys(&query(Some(mine[2].key_id), 2)).await,
            CASE,
            "list_keys"
        ),
        mine[3..5].to_vec(),
        "store conformance: {CASE}: `after` must be exclusive and `limit` honoured"
    );
    assert_eq!(
        ok(
            store.list_keys(&query(Some(mine[6].key_id), 100)).await,
            CASE,
            "list_keys"
        ),
        Vec::new(),
        "store conformance: {CASE}: nothing may follow the last key"
    );

    // Without an account filter: every account's keys, in key id order.
    let all = ok(
        store
            .list_keys(&KeyQuery {
                account: None,
                after: None,
                deletion_due_by: None,
                rotation_due_by: None,
                material_expiry_due_by: None,
                limit: usize::MAX,
            })
            .await,
        CASE,
        "list_keys of all accounts",
    );
    assert_strictly_sorted(
        all.iter().map(|k| k.key_id.to_string()),
        CASE,
        "list_keys of all accounts",
    );
    for key in mine.iter().chain(&theirs) {
        assert!(
            all.contains(key),
            "store conformance: {CASE}: listing all accounts must include every key"
        );
    }
}

async fn list_keys_due(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "list_keys deletion_due_by";
    let account = new_account(store, ids).await;
    let now = UnixMillis(1_900_000_000_000);
    let keyed = |state: KeyState, deletion_date: Option<UnixMillis>| KeyRecord {
        state,
        deletion_date,
        pending_window_days: deletion_date.map(|_| 7),
        ..plain_key(ids, &account)
    };
    let overdue = keyed(KeyState::PendingDeletion, Some(UnixMillis(now.0 - 1)));
    let due_now = keyed(KeyState::PendingDeletion, Some(now));
    let due_later = keyed(KeyState::PendingDeletion, Some(UnixMillis(now.0 + 1)));
    let not_pending = keyed(KeyState::Disabled, Some(UnixMillis(now.0 - 10)));
    let undated = keyed(KeyState::PendingDeletion, None);
    let enabled = keyed(KeyState::Enabled, None);
    for key in [
        &overdue,
        &due_now,
        &due_later,
        &not_pending,
        &undated,
        &enabled,
    ] {
        ok(store.insert_key(key).await, CASE, "insert_key");
    }
    let mut due = vec![overdue.clone(), due_now.clone()];
    due.sort_by_key(|k| k.key_id);

    let query =
        |account: Option<AccountId>, after: Option<KeyId>, by: UnixMillis, limit| KeyQuery {
            account,
            after,
            deletion_due_by: Some(by),
            rotation_due_by: None,
            material_expiry_due_by: None,
            limit,
        };
    assert_eq!(
        ok(
            store
                .list_keys(&query(Some(account.clone()), None, now, 100))
                .await,
            CASE,
            "list_keys"
        ),
        due,
        "store conformance: {CASE}: only keys pending deletion with a deletion date at or \
         before the bound are due"
    );
    assert_eq!(
        ok(
            store
                .list_keys(&query(Some(account.clone()), Some(due[0].key_id), now, 100))
                .await,
            CASE,
            "list_keys"
        ),
        due[1..].to_vec(),
        "store conformance: {CASE}: `after` must apply together with `deletion_due_by`"
    );
    assert_eq!(
        ok(
            store
                .list_keys(&query(Some(account.clone()), None, now, 1))
                .await,
            CASE,
            "list_keys"
        ),
        due[..1].to_vec(),
        "store conformance: {CASE}: `limit` must apply together with `deletion_due_by`"
    );
    assert_eq!(
        ok(
            store
                .list_keys(&query(
                    Some(account.clone()),
                    None,
                    UnixMillis(now.0 + 1),
                    100
                ))
                .await,
            CASE,
            "list_keys"
        )
        .len(),
        3,
        "store conformance: {CASE}: a later bound must include the key due then"
    );

    // Across accounts (what the deletion executor asks): other data may be
    // due too, but every answer must satisfy the filter.
    let all = ok(
        store.list_keys(&query(None, None, now, usize::MAX)).await,
        CASE,
        "list_keys of all accounts",
    );
    assert_strictly_sorted(
        all.iter().map(|k| k.key_id.to_string()),
        CASE,
        "list_keys of all accounts",
    );
    assert!(
        all.iter()
            .all(|k| k.state == KeyState::PendingDeletion
                && k.deletion_date.is_some_and(|d| d <= now)),
        "store conformance: {CASE}: every listed key must be pending deletion and due"
    );
    for key in &due {
        assert!(
            all.contains(key),
            "store conformance: {CASE}: listing all accounts must include every due key"
        );
    }
}

async fn list_keys_rotation_due(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "list_keys rotation_due_by";
    let account = new_account(store, ids).await;
    let now = UnixMillis(1_900_000_000_000);
    let keyed = |state: KeyState, next: Option<UnixMillis>| KeyRecord {
        state,
        rotation: next.map(|next_rotation| AutoRotation {
            period_days: 365,
            next_rotation,
        }),
        ..plain_key(ids, &account)
    };
    let overdue = keyed(
        KeyState::Enabled,
        Some(UnixMillis(now.0 - 400 * UnixMillis::DAY)),
    );
    let due_now = keyed(KeyState::Enabled, Some(now));
    let due_later = keyed(KeyState::Enabled, Some(UnixMillis(now.0 + 1)));
    let disabled = keyed(KeyState::Disabled, Some(UnixMillis(now.0 - 10)));
    let pending = KeyRecord {
        deletion_date: Some(UnixMillis(now.0 - 10)),
        pending_window_days: Some(7),
        ..keyed(KeyState::PendingDeletion, Some(UnixMillis(now.0 - 10)))
    };
    let off = keyed(KeyState::Enabled, None);
    for key in [&overdue, &due_now, &due_later, &disabled, &pending, &off] {
        ok(store.insert_key(key).await, CASE, "insert_key");
    }
    let mut due = vec![overdue.clone(), due_now.clone()];
    due.sort_by_key(|k| k.key_id);

    let query =
        |account: Option<AccountId>, after: Option<KeyId>, by: UnixMillis, limit| KeyQuery {
            account,
            after,
            deletion_due_by: None,
            rotation_due_by: Some(by),
            material_expiry_due_by: None,
            limit,
        };
    let listed = |q: KeyQuery| async move { ok(store.list_keys(&q).await, CASE, "list_keys") };
    assert_eq!(
        listed(query(Some(account.clone()), None, now, 100)).await,
        due,
        "store conformance: {CASE}: only enabled keys with automatic rotation on and a next \
         rotation date at or before the bound are due, complete with versions"
    );
    assert_eq!(
        listed(query(Some(account.clone()), Some(due[0].key_id), now, 100)).await,
        due[1..].to_vec(),
        "store conformance: {CASE}: `after` must apply together with `rotation_due_by`"
    );
    assert_eq!(
        listed(query(Some(account.clone()), None, now, 1)).await,
        due[..1].to_vec(),
        "store conformance: {CASE}: `limit` must apply together with `rotation_due_by`"
    );
    assert_eq!(
        listed(query(
            Some(account.clone()),
            None,
            UnixMillis(now.0 + 1),
            100
        ))
        .await
        .len(),
        3,
        "store conformance: {CASE}: a later bound must include the key due then"
    );

    // Rotating moves the date: an update must move the key out of (and
    // back into) the due set.
    let mut rotated = due_now.clone();
    rotated.revision += 1;
    rotated.rotation = Some(AutoRotation {
        period_days: 365,
        next_rotation: now.plus_days(365),
    });
    rotated.versions.push(KeyVersion {
        rotation: Some(RotationType::Automatic),
        ..version(2, 9)
    });
    ok(
        store.update_key(&rotated, due_now.revision).await,
        CASE,
        "update_key",
    );
    assert_eq!(
        listed(query(Some(account.clone()), None, now, 100)).await,
        vec![overdue.clone()],
        "store conformance: {CASE}: a key whose next rotation date moved past the bound is \
         no longer due"
    );
    let mut off_again = overdue.clone();
    off_again.revision += 1;
    off_again.rotation = None;
    ok(
        store.update_key(&off_again, overdue.revision).await,
        CASE,
        "update_key",
    );
    assert_eq!(
        listed(query(Some(account.clone()), None, now, 100)).await,
        Vec::new(),
        "store conformance: {CASE}: a key whose automatic rotation was turned off is not due"
    );
    let mut enabled_again = disabled.clone();
    enabled_again.revision += 1;
    enabled_again.state = KeyState::Enabled;
    ok(
        store.update_key(&enabled_again, disabled.revision).await,
        CASE,
        "update_key",
    );
    assert_eq!(
        listed(query(Some(account.clone()), None, now, 100)).await,
        vec![enabled_again.clone()],
        "store conformance: {CASE}: a re-enabled key whose rotation date passed is due"
    );

    // Across accounts (what the rotation executor asks): other data may be
    // due too, but every answer must satisfy the filter.
    let all = listed(query(None, None, now, usize::MAX)).await;
    assert_strictly_sorted(
        all.iter().map(|k| k.key_id.to_string()),
        CASE,
        "list_keys of all accounts",
    );
    assert!(
        all.iter()
            .all(|k| k.state == KeyState::Enabled
                && k.rotation.is_some_and(|r| r.next_rotation <= now)),
        "store conformance: {CASE}: every listed key must be enabled and due for rotation"
    );
    assert!(
        all.contains(&enabled_again),
        "store conformance: {CASE}: listing all accounts must include every due key"
    );
}

/// Imported material: an update clears a version's material when given
/// empty and fills an empty one back in, never otherwise changes it; the
/// import state round-trips; `material_expiry_due_by` finds exactly the
/// keys whose present material expires by then.
async fn imported_material(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "imported material";
    let account = new_account(store, ids).await;
    let valid_to = UnixMillis(1_750_000_000_000);
    let imported = |expiration: Option<MaterialExpiration>| KeyRecord {
        origin: Origin::External,
        versions: vec![version(1, 9)],
        import: Some(ImportState {
            fingerprint: vec![0xab; 32],
            expiration,
        }),
        ..plain_key(ids, &account)
    };
    let expiring = imported(Some(MaterialExpiration::ValidTo(valid_to)));
    let forever = imported(Some(MaterialExpiration::DoesNotExpire));
    let later = imported(Some(MaterialExpiration::ValidTo(valid_to.plus_days(1))));
    for k in [&expiring, &forever, &later] {
        ok(store.insert_key(k).await, CASE, "insert_key");
        assert_eq!(
            get_key(store, &account, &k.key_id, CASE).await.as_ref(),
            Some(k),
            "store conformance: {CASE}: a key with imported material must round-trip"
        );
    }
    let due = |by: UnixMillis| KeyQuery {
        account: Some(account.clone()),
        material_expiry_due_by: Some(by),
        limit: 100,
        ..KeyQuery::default()
    };
    let listed = |keys: Result<Vec<KeyRecord>, StoreError>| -> Vec<KeyId> {
        match keys {
            Ok(keys) => keys.into_iter().map(|k| k.key_id).collect(),
            Err(e) => panic!("store conformance: {CASE}: list_keys failed: {e:?}"),
        }
    };
    assert_eq!(
        listed(store.list_keys(&due(UnixMillis(valid_to.0 - 1))).await),
        Vec::<KeyId>::new(),
        "store conformance: {CASE}: no material expires before its valid-to"
    );
    assert_eq!(
        listed(store.list_keys(&due(valid_to)).await),
        vec![expiring.key_id],
        "store conformance: {CASE}: material_expiry_due_by must list exactly the keys \
         whose material expires by then (inclusive)"
    );

    // Deleting the material: the version stays, its material is cleared,
    // and the key is no longer due.
    let mut deleted = expiring.clone();
    deleted.revision += 1;
    deleted.state = KeyState::PendingImport;
    deleted.versions[0].material.clear();
    deleted.import = Some(ImportState {
        fingerprint: vec![0xab; 32],
        expiration: None,
    });
    ok(
        store.update_key(&deleted, expiring.revision).await,
        CASE,
        "update_key clearing material",
    );
    assert_eq!(
        get_key(store, &account, &deleted.key_id, CASE).await,
        Some(deleted.clone()),
        "store conformance: {CASE}: a version given with empty material must have its \
         stored material cleared"
    );
    assert_eq!(
        listed(store.list_keys(&due(valid_to.plus_days(2))).await),
        vec![later.key_id],
        "store conformance: {CASE}: deleted material is never due"
    );

    // Re-import fills the empty material back in.
    let mut reimported = deleted.clone();
    reimported.revision += 1;
    reimported.state = KeyState::Enabled;
    reimported.versions[0].material = b"re-wrapped".to_vec();
    reimported.import = Some(ImportState {
        fingerprint: vec![0xab; 32],
        expiration: Some(MaterialExpiration::DoesNotExpire),
    });
    ok(
        store.update_key(&reimported, deleted.revision).await,
        CASE,
        "update_key re-importing material",
    );
    assert_eq!(
        get_key(store, &account, &reimported.key_id, CASE).await,
        Some(reimported.clone()),
        "store conformance: {CASE}: a stored version with empty material must take the \
         material given"
    );

    // Present material is never replaced by other material.
    let mut replaced = reimported.clone();
    replaced.revision += 1;
    replaced.versions[0].material = b"other".to_vec();
    ok(
        store.update_key(&replaced, reimported.revision).await,
        CASE,
        "update_key",
    );
    let mut expected = replaced.clone();
    expected.versions = reimported.versions.clone();
    assert_eq!(
        get_key(store, &account, &replaced.key_id, CASE).await,
        Some(expected),
        "store conformance: {CASE}: present material must never be replaced by an update"
    );
}

async fn destroy_key(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "destroy_key";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;

    let mut doomed = full_key(ids, &account);
    doomed.revision = 3;
    let survivor = plain_key(ids, &account);
    ok(store.insert_key(&doomed).await, CASE, "insert_key");
    ok(store.insert_key(&survivor).await, CASE, "insert_key");
    let doomed_aliases = [
        alias(ids, &account, doomed.key_id),
        alias(ids, &account, doomed.key_id),
    ];
    let kept_alias = alias(ids, &account, survivor.key_id);
    for a in doomed_aliases.iter().chain([&kept_alias]) {
        ok(store.create_alias(a).await, CASE, "create_alias");
    }

    expect_err(
        store.destroy_key(&account, &doomed.key_id, 2).await,
        Expected::Conflict,
        CASE,
        "destroy_key with a stale revision",
    );
    expect_err(
        store.destroy_key(&other, &doomed.key_id, 3).await,
        Expected::Conflict,
        CASE,
        "destroy_key naming another account",
    );
    assert_eq!(
        get_key(store, &account, &doomed.key_id, CASE).await,
        Some(doomed.clone()),
        "store conformance: {CASE}: a refused destroy must leave the key intact"
    );
    for a in &doomed_aliases {
        assert_eq!(
            ok(
                store.get_alias(&account, None, &a.name).await,
                CASE,
                "get_alias"
            ),
            Some(a.clone()),
            "store conformance: {CASE}: a refused destroy must leave its aliases intact"
        );
    }

    ok(
        store.destroy_key(&account, &doomed.key_id, 3).await,
        CASE,
        "destroy_key with the current revision",
    );
    assert_eq!(
        ok(store.key_account(&doomed.key_id).await, CASE, "key_account"),
        None,
        "store conformance: {CASE}: key_account of a destroyed key must be None"
    );
    assert_eq!(
        get_key(store, &account, &doomed.key_id, CASE).await,
        None,
        "store conformance: {CASE}: a destroyed key must be gone"
    );
    for a in &doomed_aliases {
        assert_eq!(
            ok(
                store.get_alias(&account, None, &a.name).await,
                CASE,
                "get_alias"
            ),
            None,
            "store conformance: {CASE}: aliases of a destroyed key must be gone"
        );
    }
    assert_eq!(
        ok(
            store.list_aliases(&account, None, None, None, 100).await,
            CASE,
            "list_aliases"
        ),
        vec![kept_alias.clone()],
        "store conformance: {CASE}: aliases of other keys must survive"
    );
    assert_eq!(
        ok(
            store
                .list_keys(&KeyQuery {
                    account: Some(account.clone()),
                    limit: 100,
                    ..KeyQuery::default()
                })
                .await,
            CASE,
            "list_keys"
        ),
        vec![survivor.clone()],
        "store conformance: {CASE}: a destroyed key must not be listed"
    );
    expect_err(
        store.destroy_key(&account, &doomed.key_id, 3).await,
        Expected::Conflict,
        CASE,
        "destroy_key of a destroyed key",
    );

    // The versions went with the key: a new key under the same id starts
    // without any.
    let reborn = KeyRecord {
        key_id: doomed.key_id,
        versions: Vec::new(),
        ..plain_key(ids, &account)
    };
    ok(
        store.insert_key(&reborn).await,
        CASE,
        "insert_key reusing a destroyed key's id",
    );
    assert_eq!(
        get_key(store, &account, &reborn.key_id, CASE).await,
        Some(reborn),
        "store conformance: {CASE}: a destroyed key's versions must be gone"
    );
    for a in &doomed_aliases {
        assert_eq!(
            ok(
                store.get_alias(&account, None, &a.name).await,
                CASE,
                "get_alias"
            ),
            None,
            "store conformance: {CASE}: a destroyed key's aliases must not come back"
        );
    }
}

async fn create_alias(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "create_alias";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    let key = plain_key(ids, &account);
    let second = plain_key(ids, &account);
    let foreign = plain_key(ids, &other);
    for k in [&key, &second, &foreign] {
        ok(store.insert_key(k).await, CASE, "insert_key");
    }

    let a = alias(ids, &account, key.key_id);
    ok(store.create_alias(&a).await, CASE, "create_alias");
    assert_eq!(
        ok(
            store.get_alias(&account, None, &a.name).await,
            CASE,
            "get_alias"
        ),
        Some(a.clone()),
        "store conformance: {CASE}: get_alias must return the alias as created"
    );

    let taken = AliasRecord {
        target: second.key_id,
        ..a.clone()
    };
    expect_err(
        store.create_alias(&taken).await,
        Expected::AlreadyExists,
        CASE,
        "create_alias with a name taken in the account",
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &a.name).await,
            CASE,
            "get_alias"
        ),
        Some(a.clone()),
        "store conformance: {CASE}: a refused create must not change the alias"
    );

    let dangling = alias(ids, &account, ids.key());
    expect_err(
        store.create_alias(&dangling).await,
        Expected::MissingReference,
        CASE,
        "create_alias pointing at a key that does not exist",
    );
    let cross = alias(ids, &account, foreign.key_id);
    expect_err(
        store.create_alias(&cross).await,
        Expected::MissingReference,
        CASE,
        "create_alias pointing at a key of another account",
    );
    for refused in [&dangling, &cross] {
        assert_eq!(
            ok(
                store.get_alias(&account, None, &refused.name).await,
                CASE,
                "get_alias"
            ),
            None,
            "store conformance: {CASE}: a refused create must not store the alias"
        );
    }

    // Names are per account.
    let same_name = AliasRecord {
        account_id: other.clone(),
        target: foreign.key_id,
        ..a.clone()
    };
    ok(
        store.create_alias(&same_name).await,
        CASE,
        "create_alias with a name used in another account",
    );
    assert_eq!(
        ok(
            store.get_alias(&other, None, &a.name).await,
            CASE,
            "get_alias"
        ),
        Some(same_name),
        "store conformance: {CASE}: alias names must be scoped to their account"
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &a.name).await,
            CASE,
            "get_alias"
        ),
        Some(a),
        "store conformance: {CASE}: alias names must be scoped to their account"
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &alias_name(ids)).await,
            CASE,
            "get_alias"
        ),
        None,
        "store conformance: {CASE}: get_alias of an unknown name must be None"
    );
}

async fn update_and_delete_alias(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "update_alias/delete_alias";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    let first = plain_key(ids, &account);
    let second = plain_key(ids, &account);
    let foreign = plain_key(ids, &other);
    for k in [&first, &second, &foreign] {
        ok(store.insert_key(k).await, CASE, "insert_key");
    }
    let original = alias(ids, &account, first.key_id);
    ok(store.create_alias(&original).await, CASE, "create_alias");
    let twin = AliasRecord {
        account_id: other.clone(),
        target: foreign.key_id,
        ..original.clone()
    };
    ok(store.create_alias(&twin).await, CASE, "create_alias");

    let moved = AliasRecord {
        target: second.key_id,
        updated_at: UnixMillis(original.updated_at.0 + 5_000),
        revision: original.revision + 1,
        ..original.clone()
    };
    ok(
        store.update_alias(&moved, original.revision).await,
        CASE,
        "update_alias with the current revision",
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &original.name).await,
            CASE,
            "get_alias"
        ),
        Some(moved.clone()),
        "store conformance: {CASE}: after an update get_alias must return the new target, \
         update time and revision"
    );

    let stale = AliasRecord {
        target: first.key_id,
        revision: moved.revision + 1,
        ..moved.clone()
    };
    expect_err(
        store.update_alias(&stale, original.revision).await,
        Expected::Conflict,
        CASE,
        "update_alias with a stale revision",
    );
    let dangling = AliasRecord {
        target: ids.key(),
        revision: moved.revision + 1,
        ..moved.clone()
    };
    expect_err(
        store.update_alias(&dangling, moved.revision).await,
        Expected::MissingReference,
        CASE,
        "update_alias to a key that does not exist",
    );
    let cross = AliasRecord {
        target: foreign.key_id,
        revision: moved.revision + 1,
        ..moved.clone()
    };
    expect_err(
        store.update_alias(&cross, moved.revision).await,
        Expected::MissingReference,
        CASE,
        "update_alias to a key of another account",
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &original.name).await,
            CASE,
            "get_alias"
        ),
        Some(moved.clone()),
        "store conformance: {CASE}: a refused update must not change the alias"
    );
    let absent = AliasRecord {
        name: alias_name(ids),
        ..moved.clone()
    };
    expect_err(
        store.update_alias(&absent, original.revision).await,
        Expected::Conflict,
        CASE,
        "update_alias of an alias that does not exist",
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &absent.name).await,
            CASE,
            "get_alias"
        ),
        None,
        "store conformance: {CASE}: update_alias must not create a missing alias"
    );

    assert!(
        ok(
            store.delete_alias(&account, None, &original.name).await,
            CASE,
            "delete_alias"
        ),
        "store conformance: {CASE}: delete_alias of an existing alias must answer true"
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &original.name).await,
            CASE,
            "get_alias"
        ),
        None,
        "store conformance: {CASE}: a deleted alias must be gone"
    );
    assert!(
        !ok(
            store.delete_alias(&account, None, &original.name).await,
            CASE,
            "delete_alias"
        ),
        "store conformance: {CASE}: delete_alias of a missing alias must answer false"
    );
    assert_eq!(
        ok(
            store.get_alias(&other, None, &twin.name).await,
            CASE,
            "get_alias"
        ),
        Some(twin),
        "store conformance: {CASE}: deleting an alias must not touch another account's"
    );
    assert!(
        get_key(store, &account, &second.key_id, CASE)
            .await
            .is_some(),
        "store conformance: {CASE}: deleting an alias must not touch its key"
    );
}

async fn list_aliases(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "list_aliases";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    let first = plain_key(ids, &account);
    let second = plain_key(ids, &account);
    let foreign = plain_key(ids, &other);
    for k in [&first, &second, &foreign] {
        ok(store.insert_key(k).await, CASE, "insert_key");
    }
    let mut all: Vec<AliasRecord> = (0..6)
        .map(|i| {
            let target = if i % 3 == 0 {
                first.key_id
            } else {
                second.key_id
            };
            alias(ids, &account, target)
        })
        .collect();
    for a in &all {
        ok(store.create_alias(a).await, CASE, "create_alias");
    }
    ok(
        store
            .create_alias(&alias(ids, &other, foreign.key_id))
            .await,
        CASE,
        "create_alias",
    );
    all.sort_by(|x, y| x.name.as_str().cmp(y.name.as_str()));

    assert_eq!(
        ok(
            store.list_aliases(&account, None, None, None, 100).await,
            CASE,
            "list_aliases"
        ),
        all,
        "store conformance: {CASE}: an account's aliases, exactly, ordered by name"
    );
    let of_first: Vec<AliasRecord> = all
        .iter()
        .filter(|a| a.target == first.key_id)
        .cloned()
        .collect();
    assert_eq!(
        ok(
            store
                .list_aliases(&account, None, Some(&first.key_id), None, 100)
                .await,
            CASE,
            "list_aliases"
        ),
        of_first,
        "store conformance: {CASE}: the target filter must keep only aliases of that key"
    );
    assert_eq!(
        ok(
            store
                .list_aliases(&account, None, Some(&foreign.key_id), None, 100)
                .await,
            CASE,
            "list_aliases"
        ),
        Vec::new(),
        "store conformance: {CASE}: another account's key has no aliases in this account"
    );

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ok(
            store
                .list_aliases(&account, None, None, after.as_deref(), 4)
                .await,
            CASE,
            "list_aliases",
        );
        assert!(
            page.len() <= 4,
            "store conformance: {CASE}: a page must hold at most `limit` aliases"
        );
        let Some(last) = page.last() else { break };
        after = Some(last.name.as_str().to_owned());
        let full = page.len() == 4;
        paged.extend(page);
        if !full {
            break;
        }
    }
    assert_eq!(
        paged, all,
        "store conformance: {CASE}: pages of 4 must concatenate to the full listing"
    );
    assert_eq!(
        ok(
            store
                .list_aliases(&account, None, None, Some(all[1].name.as_str()), 2)
                .await,
            CASE,
            "list_aliases"
        ),
        all[2..4].to_vec(),
        "store conformance: {CASE}: `after` must be exclusive and `limit` honoured"
    );
    let first_of_first = of_first.first().map(|a| a.name.as_str().to_owned());
    assert_eq!(
        ok(
            store
                .list_aliases(
                    &account,
                    None,
                    Some(&first.key_id),
                    first_of_first.as_deref(),
                    100
                )
                .await,
            CASE,
            "list_aliases"
        ),
        of_first[1..].to_vec(),
        "store conformance: {CASE}: `after` must apply together with the target filter"
    );
}

async fn credentials(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "credentials";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    let credential = |account: &AccountId| Credential {
        access_key_id: format!("AKCONF{:016X}", ids.next()),
        owner: CredentialOwner::Account(account.clone()),
        sealed_secret: (0..=255u8).rev().collect(),
        status: CredentialStatus::Active,
        created_at: UnixMillis(1_700_000_000_000),
    };

    let orphan = credential(&ids.account());
    expect_err(
        store.create_credential(&orphan).await,
        Expected::MissingReference,
        CASE,
        "create_credential for an unknown account",
    );
    assert_eq!(
        ok(
            store.get_credential(&orphan.access_key_id).await,
            CASE,
            "get_credential"
        ),
        None,
        "store conformance: {CASE}: a refused credential must not be stored"
    );

    let first = credential(&account);
    ok(
        store.create_credential(&first).await,
        CASE,
        "create_credential",
    );
    assert_eq!(
        ok(
            store.get_credential(&first.access_key_id).await,
            CASE,
            "get_credential"
        ),
        Some(first.clone()),
        "store conformance: {CASE}: get_credential must return the credential as created"
    );
    let duplicate = Credential {
        owner: CredentialOwner::Account(other.clone()),
        sealed_secret: b"other".to_vec(),
        ..first.clone()
    };
    expect_err(
        store.create_credential(&duplicate).await,
        Expected::AlreadyExists,
        CASE,
        "create_credential with a taken access key id",
    );
    assert_eq!(
        ok(
            store.get_credential(&first.access_key_id).await,
            CASE,
            "get_credential"
        ),
        Some(first.clone()),
        "store conformance: {CASE}: a refused duplicate must not change the credential"
    );
    assert_eq!(
        ok(
            store.get_credential("AKCONF-UNKNOWN").await,
            CASE,
            "get_credential"
        ),
        None,
        "store conformance: {CASE}: get_credential of an unknown id must be None"
    );

    let second = credential(&account);
    let theirs = credential(&other);
    ok(
        store.create_credential(&second).await,
        CASE,
        "create_credential",
    );
    ok(
        store.create_credential(&theirs).await,
        CASE,
        "create_credential",
    );
    let mut mine = vec![first.clone(), second.clone()];
    mine.sort_by(|x, y| x.access_key_id.cmp(&y.access_key_id));
    assert_eq!(
        ok(
            store.list_credentials(Some(&account)).await,
            CASE,
            "list_credentials"
        ),
        mine,
        "store conformance: {CASE}: an account's credentials, exactly, ordered by access key id"
    );
    let everyone = ok(store.list_credentials(None).await, CASE, "list_credentials");
    assert_strictly_sorted(
        everyone.iter().map(|c| c.access_key_id.as_str()),
        CASE,
        "list_credentials of all accounts",
    );
    for c in [&first, &second, &theirs] {
        assert!(
            everyone.contains(c),
            "store conformance: {CASE}: listing all accounts must include every credential"
        );
    }

    assert!(
        ok(
            store.revoke_credential(&first.access_key_id).await,
            CASE,
            "revoke_credential"
        ),
        "store conformance: {CASE}: revoking an existing credential must answer true"
    );
    let revoked = Credential {
        status: CredentialStatus::Revoked,
        ..first.clone()
    };
    assert_eq!(
        ok(
            store.get_credential(&first.access_key_id).await,
            CASE,
            "get_credential"
        ),
        Some(revoked.clone()),
        "store conformance: {CASE}: a revoked credential must read back revoked, otherwise unchanged"
    );
    assert!(
        ok(
            store.revoke_credential(&first.access_key_id).await,
            CASE,
            "revoke_credential"
        ),
        "store conformance: {CASE}: revoking a revoked (still existing) credential must answer true"
    );
    assert!(
        !ok(
            store.revoke_credential("AKCONF-UNKNOWN").await,
            CASE,
            "revoke_credential"
        ),
        "store conformance: {CASE}: revoking an unknown credential must answer false"
    );
    assert!(
        ok(
            store.list_credentials(Some(&account)).await,
            CASE,
            "list_credentials"
        )
        .contains(&revoked),
        "store conformance: {CASE}: listings must show the revoked status"
    );
    assert_eq!(
        ok(
            store.get_credential(&second.access_key_id).await,
            CASE,
            "get_credential"
        ),
        Some(second),
        "store conformance: {CASE}: revoking one credential must not touch another"
    );
}

async fn products(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "products";
    let code = ids.product();
    let product = Product {
        code: code.clone(),
        class: ProductClass::Storage,
        status: ProductStatus::Active,
        created_at: UnixMillis(1_700_000_000_000),
    };
    assert_eq!(
        ok(store.get_product(&code).await, CASE, "get_product"),
        None,
        "store conformance: {CASE}: an unregistered product must read as None"
    );
    ok(store.create_product(&product).await, CASE, "create_product");
    assert_eq!(
        ok(store.get_product(&code).await, CASE, "get_product"),
        Some(product.clone()),
        "store conformance: {CASE}: get_product must return the product as created"
    );
    let duplicate = Product {
        class: ProductClass::Database,
        ..product.clone()
    };
    expect_err(
        store.create_product(&duplicate).await,
        Expected::AlreadyExists,
        CASE,
        "create_product with a taken code",
    );
    let database = Product {
        code: ids.product(),
        class: ProductClass::Database,
        ..product.clone()
    };
    ok(
        store.create_product(&database).await,
        CASE,
        "create_product",
    );
    let all = ok(store.list_products().await, CASE, "list_products");
    assert_strictly_sorted(all.iter().map(|p| p.code.as_str()), CASE, "list_products");
    for p in [&product, &database] {
        assert!(
            all.contains(p),
            "store conformance: {CASE}: list_products must include every product"
        );
    }

    let before = ok(store.change_stamp().await, CASE, "change_stamp");
    assert!(
        ok(
            store
                .set_product_status(&code, ProductStatus::Disabled)
                .await,
            CASE,
            "set_product_status"
        ),
        "store conformance: {CASE}: changing an existing product's status must answer true"
    );
    assert_ne!(
        before,
        ok(store.change_stamp().await, CASE, "change_stamp"),
        "store conformance: {CASE}: a product status change must move the change stamp"
    );
    assert_eq!(
        ok(store.get_product(&code).await, CASE, "get_product"),
        Some(Product {
            status: ProductStatus::Disabled,
            ..product.clone()
        }),
        "store conformance: {CASE}: a disabled product must read back disabled, otherwise unchanged"
    );
    assert!(
        !ok(
            store
                .set_product_status(&ids.product(), ProductStatus::Active)
                .await,
            CASE,
            "set_product_status"
        ),
        "store conformance: {CASE}: changing an unknown product's status must answer false"
    );

    let credential = |owner: CredentialOwner| Credential {
        access_key_id: format!("AKCONF{:016X}", ids.next()),
        owner,
        sealed_secret: vec![7; 60],
        status: CredentialStatus::Active,
        created_at: UnixMillis(1_700_000_000_000),
    };
    let orphan = credential(CredentialOwner::Product(ids.product()));
    expect_err(
        store.create_credential(&orphan).await,
        Expected::MissingReference,
        CASE,
        "create_credential for an unknown product",
    );
    let account = new_account(store, ids).await;
    let theirs = credential(CredentialOwner::Product(code.clone()));
    let mine = credential(CredentialOwner::Account(account.clone()));
    ok(
        store.create_credential(&theirs).await,
        CASE,
        "create_credential",
    );
    ok(
        store.create_credential(&mine).await,
        CASE,
        "create_credential",
    );
    assert_eq!(
        ok(
            store.get_credential(&theirs.access_key_id).await,
            CASE,
            "get_credential"
        ),
        Some(theirs.clone()),
        "store conformance: {CASE}: a product credential must read back as created"
    );
    assert_eq!(
        ok(
            store.list_credentials(Some(&account)).await,
            CASE,
            "list_credentials"
        ),
        vec![mine.clone()],
        "store conformance: {CASE}: an account's listing must not include product credentials"
    );
    let everyone = ok(store.list_credentials(None).await, CASE, "list_credentials");
    assert!(
        everyone.contains(&theirs) && everyone.contains(&mine),
        "store conformance: {CASE}: listing everything must include product credentials"
    );
    assert!(
        ok(
            store.revoke_credential(&theirs.access_key_id).await,
            CASE,
            "revoke_credential"
        ),
        "store conformance: {CASE}: revoking a product credential must answer true"
    );
    assert_eq!(
        ok(
            store.get_credential(&theirs.access_key_id).await,
            CASE,
            "get_credential"
        )
        .map(|c| c.status),
        Some(CredentialStatus::Revoked),
        "store conformance: {CASE}: a revoked product credential must read back revoked"
    );
}

/// `create_default_key`: key and alias in one transaction; of many
/// simultaneous creations for one account and product exactly one wins and
/// the losers write nothing; another product or account is independent.
async fn default_keys(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "default_keys";
    const CONTENDERS: usize = 16;
    let account = new_account(store, ids).await;
    let code = ids.product();
    let alias_for = |key: &KeyRecord, code: &ProductCode| AliasRecord {
        account_id: key.account_id.clone(),
        name: AliasName::default_key(code),
        target: key.key_id,
        region: None,
        created_at: UnixMillis(1_700_000_000_000),
        updated_at: UnixMillis(1_700_000_000_000),
        revision: 1,
    };
    let candidates: Vec<KeyRecord> = (0..CONTENDERS)
        .map(|_| KeyRecord {
            key_manager: KeyManager::Aws,
            default_for: Some(code.clone()),
            kind: crate::key_spec::KeyKind::default(),
            ..plain_key(ids, &account)
        })
        .collect();
    let aliases: Vec<AliasRecord> = candidates.iter().map(|k| alias_for(k, &code)).collect();
    let results = join_all(
        candidates
            .iter()
            .zip(&aliases)
            .map(|(k, a)| store.create_default_key(k, a))
            .collect(),
    )
    .await;
    let winner = single_winner_with(
        &results,
        Expected::AlreadyExists,
        CASE,
        "create_default_key",
    );
    let alias = ok(
        store
            .get_alias(&account, None, &AliasName::default_key(&code))
            .await,
        CASE,
        "get_alias",
    );
    assert_eq!(
        alias.map(|a| a.target),
        Some(candidates[winner].key_id),
        "store conformance: {CASE}: the alias must point at the winning key"
    );
    assert_eq!(
        get_key(store, &account, &candidates[winner].key_id, CASE).await,
        Some(candidates[winner].clone()),
        "store conformance: {CASE}: the winning key must be stored as given (default_for included)"
    );
    let listed = ok(
        store
            .list_keys(&KeyQuery {
                account: Some(account.clone()),
                limit: 1000,
                ..KeyQuery::default()
            })
            .await,
        CASE,
        "list_keys",
    );
    assert_eq!(
        listed.len(),
        1,
        "store conformance: {CASE}: losers of the race must leave no key behind"
    );

    // A second product, and the same product in another account, are
    // independent of the first.
    let other_code = ids.product();
    let other = KeyRecord {
        key_manager: KeyManager::Aws,
        default_for: Some(other_code.clone()),
        kind: crate::key_spec::KeyKind::default(),
        ..plain_key(ids, &account)
    };
    ok(
        store
            .create_default_key(&other, &alias_for(&other, &other_code))
            .await,
        CASE,
        "create_default_key for another product",
    );
    let second_account = new_account(store, ids).await;
    let elsewhere = KeyRecord {
        key_manager: KeyManager::Aws,
        default_for: Some(code.clone()),
        kind: crate::key_spec::KeyKind::default(),
        ..plain_key(ids, &second_account)
    };
    ok(
        store
            .create_default_key(&elsewhere, &alias_for(&elsewhere, &code))
            .await,
        CASE,
        "create_default_key in another account",
    );
    assert_eq!(
        get_key(store, &second_account, &elsewhere.key_id, CASE).await,
        Some(elsewhere.clone()),
        "store conformance: {CASE}: each account gets its own default key"
    );
}

fn grant_of(ids: &Ids, key: &KeyRecord, grantee: &str, retiring: Option<&str>) -> GrantRecord {
    let n = ids.next();
    GrantRecord {
        grant_id: format!(
            "{:016x}{:016x}{:016x}{:016x}",
            n,
            ids.next(),
            ids.next(),
            ids.next()
        ),
        account_id: key.account_id.clone(),
        key_id: key.key_id,
        name: Some(format!("grant-{n}")),
        grantee_principal: grantee.into(),
        retiring_principal: retiring.map(str::to_owned),
        operations: vec![GrantOperation::Decrypt, GrantOperation::GenerateDataKey],
        constraints: GrantConstraints {
            subset: Some([("Tenant".to_owned(), "a \u{2713}".to_owned())].into()),
            equals: None,
        },
        created_at: UnixMillis(1_700_000_000_000 + (n % 1000) as i64),
    }
}

/// Grants: round trip, references, limits, filters, pagination, deletion
/// (also with the key), account scoping, and the change stamp.
async fn grants(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "grants";
    let account = new_account(store, ids).await;
    let other_account = new_account(store, ids).await;
    let key = plain_key(ids, &account);
    let second_key = plain_key(ids, &account);
    ok(store.insert_key(&key).await, CASE, "insert_key");
    ok(store.insert_key(&second_key).await, CASE, "insert_key");
    let db = "arn:aws:iam::000000000000:role/keywarden-product/db";
    let other = "arn:aws:iam::000000000000:role/keywarden-product/other";

    let before = ok(store.change_stamp().await, CASE, "change_stamp");
    let first = GrantRecord {
        constraints: GrantConstraints {
            subset: None,
            equals: Some([("k".to_owned(), "v".to_owned())].into()),
        },
        name: None,
        ..grant_of(ids, &key, db, Some(other))
    };
    ok(
        store.create_grant(&first, 3, 100).await,
        CASE,
        "create_grant",
    );
    assert_ne!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        before,
        "store conformance: {CASE}: creating a grant must move the change stamp"
    );
    let second = grant_of(ids, &key, other, None);
    ok(
        store.create_grant(&second, 3, 100).await,
        CASE,
        "create_grant",
    );
    let third = grant_of(ids, &key, db, None);
    ok(
        store.create_grant(&third, 3, 100).await,
        CASE,
        "create_grant",
    );
    expect_err(
        store
            .create_grant(&grant_of(ids, &key, db, None), 3, 100)
            .await,
        Expected::LimitExceeded,
        CASE,
        "create_grant beyond max_per_key",
    );
    expect_err(
        store.create_grant(&third, 100, 100).await,
        Expected::AlreadyExists,
        CASE,
        "create_grant with a taken grant id",
    );
    expect_err(
        store
            .create_grant(
                &grant_of(ids, &plain_key(ids, &account), db, None),
                100,
                100,
            )
            .await,
        Expected::MissingReference,
        CASE,
        "create_grant for a key that does not exist",
    );
    expect_err(
        store
            .create_grant(
                &GrantRecord {
                    account_id: other_account.clone(),
                    ..grant_of(ids, &key, db, None)
                },
                100,
                100,
            )
            .await,
        Expected::MissingReference,
        CASE,
        "create_grant naming a key of another account",
    );

    // The per-grantee limit counts one grantee on one key.
    ok(
        store
            .create_grant(&grant_of(ids, &second_key, db, None), 100, 1)
            .await,
        CASE,
        "create_grant",
    );
    expect_err(
        store
            .create_grant(&grant_of(ids, &second_key, db, None), 100, 1)
            .await,
        Expected::LimitExceeded,
        CASE,
        "create_grant beyond max_per_grantee",
    );
    ok(
        store
            .create_grant(&grant_of(ids, &second_key, other, None), 100, 1)
            .await,
        CASE,
        "create_grant to another grantee",
    );

    let all_of = |key: &KeyRecord| {
        let mut q = GrantQuery::account(&key.account_id, 1000);
        q.key = Some(key.key_id);
        q
    };
    let listed = ok(store.list_grants(&all_of(&key)).await, CASE, "list_grants");
    assert_eq!(
        listed.len(),
        3,
        "store conformance: {CASE}: the key must have exactly the grants created for it"
    );
    assert_strictly_sorted(
        listed.iter().map(|g| g.grant_id.as_str()),
        CASE,
        "list_grants",
    );
    for g in [&first, &second, &third] {
        assert!(
            listed.contains(g),
            "store conformance: {CASE}: list_grants must return {} exactly as created",
            g.grant_id
        );
    }
    let mut by_grantee = all_of(&key);
    by_grantee.grantee = Some(db.into());
    let db_grants = ok(store.list_grants(&by_grantee).await, CASE, "list_grants");
    assert!(
        db_grants.iter().all(|g| g.grantee_principal == db) && db_grants.len() == 2,
        "store conformance: {CASE}: the grantee filter must select exactly that grantee's grants"
    );
    let mut by_id = all_of(&key);
    by_id.grant_id = Some(second.grant_id.clone());
    assert_eq!(
        ok(store.list_grants(&by_id).await, CASE, "list_grants"),
        vec![second.clone()],
        "store conformance: {CASE}: the grant id filter must select that grant"
    );
    let mut retirable = GrantQuery::account(&account, 1000);
    retirable.retiring = Some(other.into());
    assert_eq!(
        ok(store.list_grants(&retirable).await, CASE, "list_grants"),
        vec![first.clone()],
        "store conformance: {CASE}: the retiring filter must select grants that principal may retire"
    );
    let mut foreign = GrantQuery::account(&other_account, 1000);
    foreign.key = Some(key.key_id);
    assert!(
        ok(store.list_grants(&foreign).await, CASE, "list_grants").is_empty(),
        "store conformance: {CASE}: grants must be scoped by account"
    );
    // Pagination: two at a time, after the last id seen.
    let mut page = all_of(&key);
    page.limit = 2;
    let head = ok(store.list_grants(&page).await, CASE, "list_grants");
    page.after = head.last().map(|g| g.grant_id.clone());
    let tail = ok(store.list_grants(&page).await, CASE, "list_grants");
    let joined: Vec<_> = head.iter().chain(&tail).cloned().collect();
    assert_eq!(
        joined, listed,
        "store conformance: {CASE}: pages must join up to the full listing"
    );

    // Deletion: only the right account and key; then gone.
    assert!(
        !ok(
            store
                .delete_grant(&other_account, &key.key_id, &first.grant_id)
                .await,
            CASE,
            "delete_grant"
        ),
        "store conformance: {CASE}: delete_grant must not delete through another account"
    );
    assert!(
        !ok(
            store
                .delete_grant(&account, &second_key.key_id, &first.grant_id)
                .await,
            CASE,
            "delete_grant"
        ),
        "store conformance: {CASE}: delete_grant must not delete through another key"
    );
    let before = ok(store.change_stamp().await, CASE, "change_stamp");
    assert!(
        ok(
            store
                .delete_grant(&account, &key.key_id, &first.grant_id)
                .await,
            CASE,
            "delete_grant"
        ),
        "store conformance: {CASE}: delete_grant of an existing grant must answer true"
    );
    assert_ne!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        before,
        "store conformance: {CASE}: deleting a grant must move the change stamp"
    );
    assert!(
        !ok(
            store
                .delete_grant(&account, &key.key_id, &first.grant_id)
                .await,
            CASE,
            "delete_grant"
        ),
        "store conformance: {CASE}: deleting a deleted grant must answer false"
    );
    // Destroying the key removes its grants.
    ok(
        store.destroy_key(&account, &key.key_id, key.revision).await,
        CASE,
        "destroy_key",
    );
    assert!(
        ok(store.list_grants(&all_of(&key)).await, CASE, "list_grants").is_empty(),
        "store conformance: {CASE}: destroying a key must remove its grants"
    );
}

async fn concurrency(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "concurrent compare-and-set";
    const WRITERS: usize = 16;
    let account = new_account(store, ids).await;

    // 16 updates expecting the same revision: exactly one wins.
    let key = plain_key(ids, &account);
    ok(store.insert_key(&key).await, CASE, "insert_key");
    let contenders: Vec<KeyRecord> = (0..WRITERS)
        .map(|i| {
            let mut k = key.clone();
            k.revision = key.revision + 1;
            k.description = format!("writer {i}");
            k.versions.push(version(2, i as u8));
            k
        })
        .collect();
    let results = join_all(
        contenders
            .iter()
            .map(|k| store.update_key(k, key.revision))
            .collect(),
    )
    .await;
    let winner = single_winner(&results, CASE, "update_key");
    assert_eq!(
        get_key(store, &account, &key.key_id, CASE).await,
        Some(contenders[winner].clone()),
        "store conformance: {CASE}: the stored key must be exactly the winning update"
    );

    // Simultaneous inserts of one key id: exactly one wins.
    let base = plain_key(ids, &account);
    let inserts: Vec<KeyRecord> = (0..WRITERS)
        .map(|i| KeyRecord {
            description: format!("inserter {i}"),
            ..base.clone()
        })
        .collect();
    let results = join_all(inserts.iter().map(|k| store.insert_key(k)).collect()).await;
    let winner = single_winner_with(&results, Expected::AlreadyExists, CASE, "insert_key");
    assert_eq!(
        get_key(store, &account, &base.key_id, CASE).await,
        Some(inserts[winner].clone()),
        "store conformance: {CASE}: the stored key must be exactly the winning insert"
    );

    // Simultaneous alias updates expecting the same revision.
    let a = alias(ids, &account, key.key_id);
    ok(store.create_alias(&a).await, CASE, "create_alias");
    let repoints: Vec<AliasRecord> = (0..WRITERS)
        .map(|i| AliasRecord {
            target: if i % 2 == 0 { key.key_id } else { base.key_id },
            updated_at: UnixMillis(a.updated_at.0 + 1 + i as i64),
            revision: a.revision + 1,
            ..a.clone()
        })
        .collect();
    let results = join_all(
        repoints
            .iter()
            .map(|r| store.update_alias(r, a.revision))
            .collect(),
    )
    .await;
    let winner = single_winner(&results, CASE, "update_alias");
    assert_eq!(
        ok(
            store.get_alias(&account, None, &a.name).await,
            CASE,
            "get_alias"
        ),
        Some(repoints[winner].clone()),
        "store conformance: {CASE}: the stored alias must be exactly the winning update"
    );

    // Simultaneous destroys of one key: exactly one wins.
    let winner_key = &contenders[0];
    let results = join_all(
        (0..WRITERS)
            .map(|_| store.destroy_key(&account, &key.key_id, winner_key.revision))
            .collect(),
    )
    .await;
    single_winner(&results, CASE, "destroy_key");
    assert_eq!(
        get_key(store, &account, &key.key_id, CASE).await,
        None,
        "store conformance: {CASE}: the destroyed key must be gone"
    );
}

/// Aliases are per region: one name in two regions of an account is two
/// aliases, each read, listed, updated and deleted in its own region only.
async fn aliases_per_region(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "aliases_per_region";
    let account = new_account(store, ids).await;
    let home_key = plain_key(ids, &account);
    let eu_key = plain_key(ids, &account);
    for k in [&home_key, &eu_key] {
        ok(store.insert_key(k).await, CASE, "insert_key");
    }
    let home = alias(ids, &account, home_key.key_id);
    let eu = AliasRecord {
        region: Some("eu-west-1".into()),
        target: eu_key.key_id,
        ..home.clone()
    };
    ok(store.create_alias(&home).await, CASE, "create_alias (home)");
    ok(
        store.create_alias(&eu).await,
        CASE,
        "create_alias (eu-west-1)",
    );
    expect_err(
        store.create_alias(&eu).await,
        Expected::AlreadyExists,
        CASE,
        "create_alias with a name taken in the region",
    );
    assert_eq!(
        ok(
            store.get_alias(&account, None, &home.name).await,
            CASE,
            "get_alias"
        ),
        Some(home.clone()),
        "store conformance: {CASE}: the home region's alias"
    );
    assert_eq!(
        ok(
            store
                .get_alias(&account, Some("eu-west-1"), &home.name)
                .await,
            CASE,
            "get_alias"
        ),
        Some(eu.clone()),
        "store conformance: {CASE}: the other region's alias keeps its region and target"
    );
    assert_eq!(
        ok(
            store
                .get_alias(&account, Some("ap-south-1"), &home.name)
                .await,
            CASE,
            "get_alias"
        ),
        None,
        "store conformance: {CASE}: no alias in a third region"
    );
    let listed = |region: Option<&'static str>| {
        let account = account.clone();
        async move {
            ok(
                store.list_aliases(&account, region, None, None, 100).await,
                CASE,
                "list_aliases",
            )
        }
    };
    assert_eq!(listed(None).await, vec![home.clone()]);
    assert_eq!(listed(Some("eu-west-1")).await, vec![eu.clone()]);
    assert_eq!(
        ok(
            store
                .list_aliases(
                    &account,
                    Some("eu-west-1"),
                    Some(&home_key.key_id),
                    None,
                    100
                )
                .await,
            CASE,
            "list_aliases"
        ),
        Vec::new(),
        "store conformance: {CASE}: a region lists only its aliases of the target"
    );
    let moved = AliasRecord {
        target: home_key.key_id,
        revision: 2,
        ..eu.clone()
    };
    ok(
        store.update_alias(&moved, 1).await,
        CASE,
        "update_alias (eu-west-1)",
    );
    assert_eq!(listed(Some("eu-west-1")).await, vec![moved.clone()]);
    assert_eq!(
        listed(None).await,
        vec![home.clone()],
        "store conformance: {CASE}: updating one region's alias leaves the other"
    );
    assert!(ok(
        store
            .delete_alias(&account, Some("eu-west-1"), &home.name)
            .await,
        CASE,
        "delete_alias"
    ));
    assert_eq!(listed(Some("eu-west-1")).await, Vec::new());
    assert_eq!(
        listed(None).await,
        vec![home],
        "store conformance: {CASE}: deleting one region's alias leaves the other"
    );
}

/// Multi-Region keys: an `mrk-` id, a region and the other regions' keys
/// round-trip; `mrk-` ids list after every single-Region id (text order);
/// an update may change the per-region metadata.
async fn multi_region_keys(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "multi_region_keys";
    let account = new_account(store, ids).await;
    // The suite's ids are arbitrary bytes, some of them with the
    // multi-Region version nibble: take a single-Region one.
    let single = loop {
        let k = plain_key(ids, &account);
        if !k.key_id.is_multi_region() {
            break k;
        }
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&ids.next().to_be_bytes());
    bytes[8..].copy_from_slice(&ids.next().to_be_bytes());
    // The smallest byte values: sorts first by bytes, last by text.
    bytes[0] = 0;
    let mrk = KeyId::multi_region_from_random(bytes);
    assert!(mrk.is_multi_region());
    let mut key = KeyRecord {
        key_id: mrk,
        ..full_key(ids, &account)
    };
    key.state = KeyState::Enabled;
    key.deletion_date = None;
    key.import = None;
    key.origin = Origin::AwsKms;
    key.key_manager = KeyManager::Customer;
    key.default_for = None;
    ok(store.insert_key(&single).await, CASE, "insert_key");
    ok(
        store.insert_key(&key).await,
        CASE,
        "insert_key (multi-Region)",
    );
    assert_eq!(
        ok(store.get_key(&account, &mrk).await, CASE, "get_key"),
        Some(key.clone()),
        "store conformance: {CASE}: a multi-Region key reads back as inserted"
    );
    assert_eq!(
        ok(store.key_account(&mrk).await, CASE, "key_account"),
        Some(account.clone())
    );
    let listed = ok(
        store
            .list_keys(&KeyQuery {
                account: Some(account.clone()),
                limit: 100,
                ..KeyQuery::default()
            })
            .await,
        CASE,
        "list_keys",
    );
    let order: Vec<KeyId> = listed.iter().map(|k| k.key_id).collect();
    assert_eq!(
        order,
        vec![single.key_id, mrk],
        "store conformance: {CASE}: mrk- ids list after single-Region ids"
    );
    let after = ok(
        store
            .list_keys(&KeyQuery {
                account: Some(account.clone()),
                after: Some(single.key_id),
                limit: 100,
                ..KeyQuery::default()
            })
            .await,
        CASE,
        "list_keys after",
    );
    assert_eq!(
        after.iter().map(|k| k.key_id).collect::<Vec<_>>(),
        vec![mrk]
    );
    let mut changed = key.clone();
    changed.revision = key.revision + 1;
    changed.region = None;
    if let Some(mr) = changed.multi_region.as_mut() {
        mr.primary_region = "eu-west-1".into();
        mr.others[0].region = "eu-west-1".into();
        mr.others[0].state = KeyState::Disabled;
    }
    ok(
        store.update_key(&changed, key.revision).await,
        CASE,
        "update_key (multi-Region)",
    );
    assert_eq!(
        ok(store.get_key(&account, &mrk).await, CASE, "get_key"),
        Some(changed),
        "store conformance: {CASE}: per-region metadata is updated"
    );
}

// ---------------------------------------------------------------------------
// Records

/// A key with every optional field set, several versions, tags in
/// non-alphabetical order and text that needs escaping.
fn full_key(ids: &Ids, account: &AccountId) -> KeyRecord {
    KeyRecord {
        key_id: ids.key(),
        account_id: account.clone(),
        revision: 7,
        description: "conformance \u{2713} \"quoted\" 'single' \\ back\nslash; DROP TABLE keys;--"
            .into(),
        state: KeyState::PendingDeletion,
        origin: Origin::External,
        key_manager: KeyManager::Aws,
        created_at: UnixMillis(1_700_000_000_123),
        deletion_date: Some(UnixMillis(1_700_604_800_123)),
        pending_window_days: Some(7),
        tags: vec![
            Tag {
                key: "zeta".into(),
                value: String::new(),
            },
            Tag {
                key: "alpha".into(),
                value: "\u{fc}ber".into(),
            },
            Tag {
                key: "mid".into(),
                value: "x".repeat(256),
            },
        ],
        policy: Some(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:*"}]}"#.into(),
        ),
        versions: vec![
            version(1, 1),
            KeyVersion {
                rotation: Some(RotationType::Automatic),
                ..version(2, 2)
            },
            KeyVersion {
                rotation: Some(RotationType::OnDemand),
                ..version(3, 3)
            },
        ],
        rotation: Some(AutoRotation {
            period_days: 90,
            next_rotation: UnixMillis(1_707_776_000_123),
        }),
        on_demand_rotations: 1,
        deletion_protection: true,
        import: Some(ImportState {
            fingerprint: vec![0xf1; 32],
            expiration: Some(MaterialExpiration::ValidTo(UnixMillis(1_800_000_000_000))),
        }),
        default_for: Some(ProductCode::parse("evs").unwrap()),
        kind: crate::key_spec::KeyKind::default(),
        region: Some("eu-west-1".into()),
        multi_region: Some(crate::model::MultiRegion {
            primary_region: "us-east-1".into(),
            others: vec![crate::model::RegionalKey {
                region: "us-east-1".into(),
                state: KeyState::PendingReplicaDeletion,
                description: "primary \"quoted\"".into(),
                tags: vec![Tag {
                    key: "k".into(),
                    value: "v".into(),
                }],
                policy: Some("{\"Version\":\"2012-10-17\",\"Statement\":[]}".into()),
                created_at: UnixMillis(1_700_000_000_001),
                deletion_date: None,
                pending_window_days: Some(30),
                deletion_protection: true,
            }],
        }),
    }
}

/// A key with the optional fields unset and one version.
fn plain_key(ids: &Ids, account: &AccountId) -> KeyRecord {
    KeyRecord {
        key_id: ids.key(),
        account_id: account.clone(),
        revision: 1,
        description: String::new(),
        state: KeyState::Enabled,
        origin: Origin::AwsKms,
        key_manager: KeyManager::Customer,
        created_at: UnixMillis(1_700_000_000_000),
        deletion_date: None,
        pending_window_days: None,
        tags: Vec::new(),
        policy: None,
        versions: vec![version(1, 0)],
        rotation: None,
        on_demand_rotations: 0,
        deletion_protection: false,
        import: None,
        default_for: None,
        kind: crate::key_spec::KeyKind::default(),
        region: None,
        multi_region: None,
    }
}

/// A version whose material holds every byte value (and a marker byte).
fn version(number: u32, marker: u8) -> KeyVersion {
    KeyVersion {
        version: number,
        protector: format!("soft-{marker}"),
        material: (0..=255u8).chain([marker, 0]).collect(),
        created_at: UnixMillis(1_700_000_000_000 + i64::from(number)),
        rotation: None,
    }
}

fn alias(ids: &Ids, account: &AccountId, target: KeyId) -> AliasRecord {
    AliasRecord {
        account_id: account.clone(),
        name: alias_name(ids),
        target,
        region: None,
        created_at: UnixMillis(1_700_000_000_000),
        updated_at: UnixMillis(1_700_000_000_000),
        revision: 1,
    }
}

fn alias_name(ids: &Ids) -> AliasName {
    match AliasName::parse_user(&format!("alias/conformance-{:016x}", ids.next())) {
        Ok(name) => name,
        Err(e) => panic!("store conformance: suite bug: bad alias name: {e}"),
    }
}

async fn new_account(store: &dyn Store, ids: &Ids) -> AccountId {
    let account = Account {
        account_id: ids.account(),
        name: "conformance".into(),
        created_at: UnixMillis(1_700_000_000_000),
    };
    ok(
        store.create_account(&account).await,
        "setup",
        "create_account",
    );
    account.account_id
}

// ---------------------------------------------------------------------------
// IAM

fn iam_user(account: &AccountId, name: &str) -> IamEntity {
    IamEntity::User(IamUser {
        account_id: account.clone(),
        name: name.into(),
        path: "/".into(),
        user_id: format!("AIDA{name}"),
        created_at: UnixMillis(1_700_000_000_000),
        tags: vec![Tag {
            key: "team".into(),
            value: "conformance".into(),
        }],
    })
}

fn iam_role(account: &AccountId, name: &str) -> IamEntity {
    IamEntity::Role(IamRole {
        account_id: account.clone(),
        name: name.into(),
        path: "/service/".into(),
        role_id: format!("AROA{name}"),
        assume_role_policy: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
        description: Some("a role".into()),
        max_session_duration: 3600,
        created_at: UnixMillis(1_700_000_000_000),
        tags: Vec::new(),
    })
}

fn iam_policy(account: &AccountId, name: &str) -> IamEntity {
    IamEntity::Policy(IamManagedPolicy {
        account_id: account.clone(),
        name: name.into(),
        path: "/".into(),
        policy_id: format!("ANPA{name}"),
        document: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
        description: None,
        created_at: UnixMillis(1_700_000_000_000),
    })
}

fn iam_inline(account: &AccountId, owner: IamOwner, name: &str) -> IamEntity {
    IamEntity::InlinePolicy(IamInlinePolicy {
        account_id: account.clone(),
        owner,
        name: name.into(),
        document: r#"{"Version":"2012-10-17","Statement":[]}"#.into(),
    })
}

fn iam_query(account: &AccountId, kind: IamKind, prefix: &str) -> IamQuery {
    IamQuery {
        account: account.clone(),
        kind,
        prefix: prefix.into(),
        after: None,
        limit: usize::MAX,
    }
}

async fn iam_list(store: &dyn Store, query: &IamQuery, case: &str) -> Vec<IamEntity> {
    ok(
        store.list_iam_entities(query).await,
        case,
        "list_iam_entities",
    )
}

async fn iam_get(
    store: &dyn Store,
    account: &AccountId,
    kind: IamKind,
    name: &str,
    case: &str,
) -> Option<IamEntity> {
    ok(
        store.get_iam_entity(account, kind, name).await,
        case,
        "get_iam_entity",
    )
}

/// IAM entities: create (duplicates by stored name, unknown accounts),
/// get, put (replace and insert), list (kind, prefix, `after`, `limit`,
/// account scope), delete.
async fn iam_entities_create_get_list_delete(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "iam_entities_create_get_list_delete";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;

    let bob = iam_user(&account, "Bob");
    ok(
        store.create_iam_entity(&bob).await,
        CASE,
        "create_iam_entity",
    );
    assert_eq!(
        iam_get(store, &account, IamKind::User, &entity_name("Bob"), CASE).await,
        Some(bob.clone()),
        "store conformance: {CASE}: get_iam_entity must answer the record as created"
    );
    // The stored name folds case: `BOB` is `bob`.
    let shouting = iam_user(&account, "BOB");
    expect_err(
        store.create_iam_entity(&shouting).await,
        Expected::AlreadyExists,
        CASE,
        "create_iam_entity with a taken stored name",
    );
    assert_eq!(
        iam_get(store, &account, IamKind::User, "bob", CASE).await,
        Some(bob.clone()),
        "store conformance: {CASE}: a refused duplicate must not change the record"
    );
    let orphan = iam_user(&ids.account(), "Bob");
    expect_err(
        store.create_iam_entity(&orphan).await,
        Expected::MissingReference,
        CASE,
        "create_iam_entity in an unknown account",
    );
    expect_err(
        store.put_iam_entity(&orphan).await,
        Expected::MissingReference,
        CASE,
        "put_iam_entity in an unknown account",
    );
    assert_eq!(
        iam_get(store, orphan.account_id(), IamKind::User, "bob", CASE).await,
        None,
        "store conformance: {CASE}: a refused record must not be stored"
    );

    // Kinds are separate namespaces; accounts too.
    let bob_role = iam_role(&account, "bob");
    ok(
        store.create_iam_entity(&bob_role).await,
        CASE,
        "create_iam_entity (a role named like a user)",
    );
    let their_bob = iam_user(&other, "bob");
    ok(
        store.create_iam_entity(&their_bob).await,
        CASE,
        "create_iam_entity (another account's bob)",
    );
    assert_eq!(
        iam_get(store, &account, IamKind::Role, "bob", CASE).await,
        Some(bob_role.clone())
    );
    assert_eq!(
        iam_get(store, &other, IamKind::User, "bob", CASE).await,
        Some(their_bob.clone())
    );
    assert_eq!(
        iam_get(store, &account, IamKind::Policy, "bob", CASE).await,
        None,
        "store conformance: {CASE}: get_iam_entity must match the kind"
    );

    // put replaces, and inserts what is missing.
    let moved = match bob.clone() {
        IamEntity::User(mut u) => {
            u.path = "/moved/".into();
            u.tags.clear();
            IamEntity::User(u)
        }
        _ => unreachable!(),
    };
    ok(store.put_iam_entity(&moved).await, CASE, "put_iam_entity");
    assert_eq!(
        iam_get(store, &account, IamKind::User, "bob", CASE).await,
        Some(moved.clone()),
        "store conformance: {CASE}: put_iam_entity must replace the record"
    );
    assert_eq!(
        iam_get(store, &other, IamKind::User, "bob", CASE).await,
        Some(their_bob.clone()),
        "store conformance: {CASE}: put_iam_entity must not touch another account"
    );
    let carol = iam_user(&account, "carol");
    ok(
        store.put_iam_entity(&carol).await,
        CASE,
        "put_iam_entity (new)",
    );
    assert_eq!(
        iam_list(store, &iam_query(&account, IamKind::User, ""), CASE).await,
        vec![moved.clone(), carol.clone()],
        "store conformance: {CASE}: an account's users, exactly, in name order"
    );
    assert_eq!(
        iam_list(store, &iam_query(&account, IamKind::Role, ""), CASE).await,
        vec![bob_role.clone()],
        "store conformance: {CASE}: listing is by kind"
    );

    // Children of one owner: `bob/` only, not of `bobby`, `bob0` (the
    // byte after `/`), `bob.` (the byte before), nor `bobx` (which `bob_`
    // would match as a LIKE pattern).
    let user = |n: &str| IamOwner::User(n.into());
    let mine = vec![
        iam_inline(&account, user("Bob"), "Alpha"),
        iam_inline(&account, user("bob"), "beta"),
    ];
    let theirs = [
        iam_inline(&account, user("bobby"), "alpha"),
        iam_inline(&account, user("bob0"), "alpha"),
        iam_inline(&account, user("bob."), "alpha"),
        iam_inline(&account, user("bo"), "b"),
        iam_inline(&account, user("bob_"), "alpha"),
        iam_inline(&account, user("bobx"), "alpha"),
        iam_inline(&account, IamOwner::Role("bob".into()), "alpha"),
        iam_inline(&other, user("bob"), "gamma"),
    ];
    for e in theirs.iter().chain(&mine) {
        ok(store.create_iam_entity(e).await, CASE, "create_iam_entity");
    }
    assert_eq!(
        iam_list(
            store,
            &iam_query(
                &account,
                IamKind::UserInlinePolicy,
                &child_prefix(&user("BOB"))
            ),
            CASE
        )
        .await,
        mine,
        "store conformance: {CASE}: a prefix lists exactly one owner's children, in name order"
    );
    assert_eq!(
        iam_list(
            store,
            &iam_query(
                &account,
                IamKind::UserInlinePolicy,
                &child_prefix(&user("bob_"))
            ),
            CASE
        )
        .await,
        vec![theirs[4].clone()],
        "store conformance: {CASE}: `_` in a prefix is a plain character"
    );
    assert!(
        iam_list(
            store,
            &iam_query(&account, IamKind::UserInlinePolicy, "%"),
            CASE
        )
        .await
        .is_empty(),
        "store conformance: {CASE}: `%` in a prefix is a plain character"
    );
    let all_inline = iam_list(
        store,
        &iam_query(&account, IamKind::UserInlinePolicy, ""),
        CASE,
    )
    .await;
    assert_eq!(
        all_inline.len(),
        8,
        "store conformance: {CASE}: the account's user inline policies, and no role's or other account's"
    );
    assert_strictly_sorted(
        all_inline.iter().map(IamEntity::name),
        CASE,
        "list_iam_entities",
    );

    // Pagination: `after` is exclusive, `limit` caps the page; with a
    // prefix too.
    let policies: Vec<IamEntity> = (0..5)
        .map(|i| iam_policy(&account, &format!("Policy-{i}")))
        .collect();
    for p in policies.iter().rev() {
        ok(store.create_iam_entity(p).await, CASE, "create_iam_entity");
    }
    let page = |after: Option<&str>, limit: usize, prefix: &str| IamQuery {
        after: after.map(str::to_owned),
        limit,
        ..iam_query(&account, IamKind::Policy, prefix)
    };
    let first = iam_list(store, &page(None, 2, ""), CASE).await;
    assert_eq!(
        first,
        policies[..2].to_vec(),
        "store conformance: {CASE}: first page"
    );
    let second = iam_list(store, &page(Some(&first[1].name()), 2, ""), CASE).await;
    assert_eq!(
        second,
        policies[2..4].to_vec(),
        "store conformance: {CASE}: `after` is exclusive"
    );
    let last = iam_list(store, &page(Some(&second[1].name()), 2, ""), CASE).await;
    assert_eq!(
        last,
        policies[4..].to_vec(),
        "store conformance: {CASE}: last page"
    );
    assert!(
        iam_list(store, &page(Some(&last[0].name()), 2, ""), CASE)
            .await
            .is_empty(),
        "store conformance: {CASE}: nothing after the last record"
    );
    assert_eq!(
        iam_list(store, &page(Some("policy-1"), 10, "policy-"), CASE).await,
        policies[2..].to_vec(),
        "store conformance: {CASE}: `after` with a prefix"
    );
    assert_eq!(
        iam_list(store, &page(Some("a"), 1, "policy-3"), CASE).await,
        policies[3..4].to_vec(),
        "store conformance: {CASE}: an `after` before the prefix"
    );

    // Delete: exactly the one record.
    assert!(
        ok(
            store
                .delete_iam_entity(&account, IamKind::Role, "bob")
                .await,
            CASE,
            "delete_iam_entity"
        ),
        "store conformance: {CASE}: deleting an existing record must answer true"
    );
    assert_eq!(
        iam_get(store, &account, IamKind::Role, "bob", CASE).await,
        None
    );
    assert!(
        !ok(
            store
                .delete_iam_entity(&account, IamKind::Role, "bob")
                .await,
            CASE,
            "delete_iam_entity"
        ),
        "store conformance: {CASE}: deleting a missing record must answer false"
    );
    assert!(
        !ok(
            store
                .delete_iam_entity(&ids.account(), IamKind::User, "bob")
                .await,
            CASE,
            "delete_iam_entity"
        ),
        "store conformance: {CASE}: deleting in an unknown account must answer false"
    );
    assert_eq!(
        iam_get(store, &account, IamKind::User, "bob", CASE).await,
        Some(moved),
        "store conformance: {CASE}: deleting a role must not delete the user of that name"
    );
    assert_eq!(
        iam_get(store, &other, IamKind::User, "bob", CASE).await,
        Some(their_bob),
        "store conformance: {CASE}: deleting must not reach another account"
    );
}

/// Every IAM write moves the change stamp (identities and policies are
/// cached); reads do not.
async fn iam_entity_changes_move_the_change_stamp(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "iam_entity_changes_move_the_change_stamp";
    let account = new_account(store, ids).await;
    let role = iam_role(&account, "Deployer");
    let attachment = IamEntity::Attachment(IamAttachment {
        account_id: account.clone(),
        owner: IamOwner::Role("Deployer".into()),
        policy_arn: format!("arn:aws:iam::{}:policy/Deploy", account.as_str()),
    });
    let stamp = || async { ok(store.change_stamp().await, CASE, "change_stamp") };

    let before = stamp().await;
    ok(
        store.create_iam_entity(&role).await,
        CASE,
        "create_iam_entity",
    );
    let created = stamp().await;
    assert_ne!(
        before, created,
        "store conformance: {CASE}: create_iam_entity must move the stamp"
    );
    iam_get(store, &account, IamKind::Role, "deployer", CASE).await;
    iam_list(store, &iam_query(&account, IamKind::Role, ""), CASE).await;
    assert_eq!(
        stamp().await,
        created,
        "store conformance: {CASE}: reads must not move the stamp"
    );
    ok(
        store.put_iam_entity(&attachment).await,
        CASE,
        "put_iam_entity",
    );
    let inserted = stamp().await;
    assert_ne!(
        created, inserted,
        "store conformance: {CASE}: put_iam_entity (insert) must move the stamp"
    );
    let renamed = match role.clone() {
        IamEntity::Role(mut r) => {
            r.max_session_duration = 7200;
            IamEntity::Role(r)
        }
        _ => unreachable!(),
    };
    ok(store.put_iam_entity(&renamed).await, CASE, "put_iam_entity");
    let replaced = stamp().await;
    assert_ne!(
        inserted, replaced,
        "store conformance: {CASE}: put_iam_entity (replace) must move the stamp"
    );
    assert!(ok(
        store
            .delete_iam_entity(&account, attachment.kind(), &attachment.name())
            .await,
        CASE,
        "delete_iam_entity"
    ));
    assert_ne!(
        replaced,
        stamp().await,
        "store conformance: {CASE}: delete_iam_entity must move the stamp"
    );
}

/// Access keys of IAM users: the owner round-trips; the status goes
/// Inactive, Active and Revoked, each moving the change stamp (a
/// deactivated key must drop from every node's cache).
async fn user_credentials_roundtrip_and_status(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "user_credentials_roundtrip_and_status";
    let account = new_account(store, ids).await;
    ok(
        store.create_iam_entity(&iam_user(&account, "Alice")).await,
        CASE,
        "create_iam_entity",
    );
    let credential = |owner: CredentialOwner| Credential {
        access_key_id: format!("AKCONF{:016X}", ids.next()),
        owner,
        sealed_secret: vec![0x5a; 60],
        status: CredentialStatus::Active,
        created_at: UnixMillis(1_700_000_000_000),
    };
    let alice = |account: &AccountId| CredentialOwner::User {
        account: account.clone(),
        user_name: "Alice".into(),
    };

    let orphan = credential(alice(&ids.account()));
    expect_err(
        store.create_credential(&orphan).await,
        Expected::MissingReference,
        CASE,
        "create_credential for a user of an unknown account",
    );
    let first = credential(alice(&account));
    let second = credential(alice(&account));
    let root = credential(CredentialOwner::Account(account.clone()));
    for c in [&first, &second, &root] {
        ok(store.create_credential(c).await, CASE, "create_credential");
    }
    assert_eq!(
        ok(
            store.get_credential(&first.access_key_id).await,
            CASE,
            "get_credential"
        ),
        Some(first.clone()),
        "store conformance: {CASE}: a user's credential must read back as created"
    );
    let mut all = vec![first.clone(), second.clone(), root.clone()];
    all.sort_by(|x, y| x.access_key_id.cmp(&y.access_key_id));
    assert_eq!(
        ok(
            store.list_credentials(Some(&account)).await,
            CASE,
            "list_credentials"
        ),
        all,
        "store conformance: {CASE}: an account's credentials include its users'"
    );
    assert!(
        ok(store.list_credentials(None).await, CASE, "list_credentials").contains(&first),
        "store conformance: {CASE}: listing all credentials must include users'"
    );

    for status in [
        CredentialStatus::Inactive,
        CredentialStatus::Active,
        CredentialStatus::Inactive,
        CredentialStatus::Revoked,
    ] {
        let before = ok(store.change_stamp().await, CASE, "change_stamp");
        assert!(
            ok(
                store
                    .set_credential_status(&first.access_key_id, status)
                    .await,
                CASE,
                "set_credential_status"
            ),
            "store conformance: {CASE}: setting an existing credential's status must answer true"
        );
        assert_ne!(
            ok(store.change_stamp().await, CASE, "change_stamp"),
            before,
            "store conformance: {CASE}: a status change ({status:?}) must move the change stamp"
        );
        assert_eq!(
            ok(
                store.get_credential(&first.access_key_id).await,
                CASE,
                "get_credential"
            ),
            Some(Credential {
                status,
                ..first.clone()
            }),
            "store conformance: {CASE}: the credential must read back {status:?}, otherwise unchanged"
        );
    }
    assert!(
        !ok(
            store
                .set_credential_status("AKCONF-UNKNOWN", CredentialStatus::Inactive)
                .await,
            CASE,
            "set_credential_status"
        ),
        "store conformance: {CASE}: setting an unknown credential's status must answer false"
    );
    assert_eq!(
        ok(
            store.get_credential("AKCONF-UNKNOWN").await,
            CASE,
            "get_credential"
        ),
        None,
        "store conformance: {CASE}: setting an unknown credential's status must not create it"
    );
    // The others are untouched; `second` stays active, for dumps.
    for c in [&second, &root] {
        assert_eq!(
            ok(
                store.get_credential(&c.access_key_id).await,
                CASE,
                "get_credential"
            ),
            Some(c.clone()),
            "store conformance: {CASE}: a status change must touch one credential only"
        );
    }
}

// ---------------------------------------------------------------------------
// Keyrings

fn keyring_of(ids: &Ids, account: &AccountId, name: &str) -> KeyringRecord {
    let mut random = [0u8; 16];
    random[..8].copy_from_slice(&ids.next().to_be_bytes());
    random[8..].copy_from_slice(&ids.next().to_be_bytes());
    KeyringRecord {
        id: KeyringId::from_random(random),
        account_id: account.clone(),
        name: name.into(),
        product: ids.product(),
        key_id: ids.key(),
        token_hash: Some([0xa5; 32]),
        token_issued_at: Some(UnixMillis(1_700_000_000_000)),
        created_at: UnixMillis(1_700_000_000_000),
        revision: 1,
    }
}

fn keyring_version(keyring: &KeyringRecord, key_number: u32, version: u32) -> KeyringKeyVersion {
    let mut ciphertext = vec![0x6b; 48];
    ciphertext.extend_from_slice(&key_number.to_be_bytes());
    ciphertext.extend_from_slice(&version.to_be_bytes());
    KeyringKeyVersion {
        keyring_id: keyring.id.clone(),
        key_number,
        version,
        ciphertext,
        created_at: UnixMillis(1_700_000_000_000 + i64::from(version)),
    }
}

/// Keyrings and their key versions ([`crate::store::KeyringStore`]).
async fn keyrings(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "keyrings";
    let account = new_account(store, ids).await;
    let other = new_account(store, ids).await;
    let stamp = ok(store.change_stamp().await, CASE, "change_stamp");

    // Creation with versions, reads, listing.
    let a = keyring_of(ids, &account, "orders");
    let a_versions = vec![
        keyring_version(&a, 1, 1),
        keyring_version(&a, 1, 2),
        keyring_version(&a, 2, 1),
    ];
    ok(
        store.create_keyring(&a, &a_versions).await,
        CASE,
        "create_keyring",
    );
    let mut b = keyring_of(ids, &account, "billing");
    b.token_hash = None;
    b.token_issued_at = None;
    ok(store.create_keyring(&b, &[]).await, CASE, "create_keyring");
    let foreign = keyring_of(ids, &other, "orders");
    ok(
        store
            .create_keyring(&foreign, &[keyring_version(&foreign, 1, 1)])
            .await,
        CASE,
        "create_keyring with a name taken in another account",
    );
    assert_eq!(
        ok(store.get_keyring(&a.id).await, CASE, "get_keyring"),
        Some(a.clone()),
        "store conformance: {CASE}: get_keyring must return the keyring as created"
    );
    assert_eq!(
        ok(store.get_keyring(&b.id).await, CASE, "get_keyring"),
        Some(b.clone()),
        "store conformance: {CASE}: a keyring without a token must read back without one"
    );
    assert_eq!(
        ok(
            store.list_keyring_key_versions(&a.id).await,
            CASE,
            "list_keyring_key_versions"
        ),
        a_versions,
        "store conformance: {CASE}: create_keyring must store its versions"
    );
    let mut mine = vec![a.clone(), b.clone()];
    mine.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(
        ok(store.list_keyrings(&account).await, CASE, "list_keyrings"),
        mine,
        "store conformance: {CASE}: list_keyrings must list the account's keyrings, ordered by id"
    );
    assert_eq!(
        ok(store.list_keyrings(&other).await, CASE, "list_keyrings"),
        vec![foreign.clone()],
        "store conformance: {CASE}: list_keyrings must list only the account's keyrings"
    );
    let unknown = keyring_of(ids, &account, "never stored");
    assert_eq!(
        ok(store.get_keyring(&unknown.id).await, CASE, "get_keyring"),
        None,
        "store conformance: {CASE}: an unknown keyring must read as None"
    );

    // Duplicates and missing references.
    let same_id = KeyringRecord {
        name: "another name".into(),
        ..a.clone()
    };
    expect_err(
        store.create_keyring(&same_id, &[]).await,
        Expected::AlreadyExists,
        CASE,
        "create_keyring with a taken id",
    );
    let same_name = keyring_of(ids, &account, "orders");
    expect_err(
        store
            .create_keyring(&same_name, &[keyring_version(&same_name, 1, 1)])
            .await,
        Expected::AlreadyExists,
        CASE,
        "create_keyring with a name taken in the account",
    );
    assert_eq!(
        ok(store.get_keyring(&same_name.id).await, CASE, "get_keyring"),
        None,
        "store conformance: {CASE}: a refused create_keyring must store nothing"
    );
    assert!(
        ok(
            store.list_keyring_key_versions(&same_name.id).await,
            CASE,
            "list_keyring_key_versions"
        )
        .is_empty(),
        "store conformance: {CASE}: a refused create_keyring must store no versions"
    );
    let orphan = keyring_of(ids, &ids.account(), "orphan");
    expect_err(
        store.create_keyring(&orphan, &[]).await,
        Expected::MissingReference,
        CASE,
        "create_keyring for an unknown account",
    );

    // Compare-and-set token updates.
    let mut cleared = b.clone();
    cleared.token_hash = Some([0x11; 32]);
    cleared.token_issued_at = Some(UnixMillis(1_700_000_000_500));
    cleared.revision = 2;
    ok(
        store.update_keyring(&cleared, 1).await,
        CASE,
        "update_keyring (set a token)",
    );
    assert_eq!(
        ok(store.get_keyring(&b.id).await, CASE, "get_keyring"),
        Some(cleared.clone()),
        "store conformance: {CASE}: update_keyring must store the token and the revision"
    );
    let mut stale = cleared.clone();
    stale.revision = 3;
    stale.token_hash = None;
    expect_err(
        store.update_keyring(&stale, 1).await,
        Expected::Conflict,
        CASE,
        "update_keyring with a stale revision",
    );
    let cross = KeyringRecord {
        account_id: other.clone(),
        ..stale.clone()
    };
    expect_err(
        store.update_keyring(&cross, 2).await,
        Expected::Conflict,
        CASE,
        "update_keyring naming another account",
    );
    expect_err(
        store.update_keyring(&unknown, 1).await,
        Expected::Conflict,
        CASE,
        "update_keyring of an unknown keyring",
    );
    stale.token_issued_at = None;
    ok(
        store.update_keyring(&stale, 2).await,
        CASE,
        "update_keyring (clear the token)",
    );
    assert_eq!(
        ok(store.get_keyring(&b.id).await, CASE, "get_keyring"),
        Some(stale.clone()),
        "store conformance: {CASE}: a cleared token must read back cleared"
    );
    // Only the token fields and the revision change.
    let mut reshaped = stale.clone();
    reshaped.name = "renamed".into();
    reshaped.product = ids.product();
    reshaped.key_id = ids.key();
    reshaped.created_at = UnixMillis(5);
    reshaped.token_hash = Some([0x22; 32]);
    reshaped.token_issued_at = Some(UnixMillis(1_700_000_000_900));
    reshaped.revision = 4;
    ok(
        store.update_keyring(&reshaped, 3).await,
        CASE,
        "update_keyring",
    );
    let b_now = KeyringRecord {
        token_hash: reshaped.token_hash,
        token_issued_at: reshaped.token_issued_at,
        revision: 4,
        ..stale.clone()
    };
    assert_eq!(
        ok(store.get_keyring(&b.id).await, CASE, "get_keyring"),
        Some(b_now.clone()),
        "store conformance: {CASE}: update_keyring must change only the token fields and the revision"
    );

    // Key versions.
    ok(
        store
            .add_keyring_key_version(&keyring_version(&a, 1, 3))
            .await,
        CASE,
        "add_keyring_key_version (next version)",
    );
    expect_err(
        store
            .add_keyring_key_version(&keyring_version(&a, 1, 5))
            .await,
        Expected::Conflict,
        CASE,
        "add_keyring_key_version skipping a version",
    );
    expect_err(
        store
            .add_keyring_key_version(&keyring_version(&a, 1, 3))
            .await,
        Expected::Conflict,
        CASE,
        "add_keyring_key_version of a stored version",
    );
    expect_err(
        store
            .add_keyring_key_version(&keyring_version(&a, 3, 2))
            .await,
        Expected::Conflict,
        CASE,
        "add_keyring_key_version starting a new key number at 2",
    );
    ok(
        store
            .add_keyring_key_version(&keyring_version(&a, 3, 1))
            .await,
        CASE,
        "add_keyring_key_version (a new key number)",
    );
    expect_err(
        store
            .add_keyring_key_version(&keyring_version(&unknown, 1, 1))
            .await,
        Expected::MissingReference,
        CASE,
        "add_keyring_key_version to an unknown keyring",
    );
    let get_version = |keyring: &KeyringRecord, key_number: u32, version: Option<u32>| {
        let id = keyring.id.clone();
        async move {
            ok(
                store
                    .get_keyring_key_version(&id, key_number, version)
                    .await,
                CASE,
                "get_keyring_key_version",
            )
        }
    };
    assert_eq!(
        get_version(&a, 1, None).await,
        Some(keyring_version(&a, 1, 3)),
        "store conformance: {CASE}: without a version, the newest must be read"
    );
    assert_eq!(
        get_version(&a, 1, Some(2)).await,
        Some(keyring_version(&a, 1, 2)),
        "store conformance: {CASE}: a specific version must be read"
    );
    assert_eq!(
        get_version(&a, 1, Some(4)).await,
        None,
        "store conformance: {CASE}: a missing version must read as None"
    );
    assert_eq!(
        get_version(&a, 9, None).await,
        None,
        "store conformance: {CASE}: a missing key number must read as None"
    );
    assert_eq!(
        get_version(&b, 1, None).await,
        None,
        "store conformance: {CASE}: a keyring without versions has no newest version"
    );
    let all = vec![
        keyring_version(&a, 1, 1),
        keyring_version(&a, 1, 2),
        keyring_version(&a, 1, 3),
        keyring_version(&a, 2, 1),
        keyring_version(&a, 3, 1),
    ];
    assert_eq!(
        ok(
            store.list_keyring_key_versions(&a.id).await,
            CASE,
            "list_keyring_key_versions"
        ),
        all,
        "store conformance: {CASE}: list_keyring_key_versions must order by key number, then version"
    );
    let summary: Vec<(u32, u32, UnixMillis)> = [(1, 3), (2, 1), (3, 1)]
        .iter()
        .map(|&(n, v)| {
            let found = all
                .iter()
                .find(|x| x.key_number == n && x.version == v)
                .expect("in all");
            (n, v, found.created_at)
        })
        .collect();
    assert_eq!(
        ok(
            store.keyring_key_summary(&a.id).await,
            CASE,
            "keyring_key_summary"
        ),
        summary,
        "store conformance: {CASE}: keyring_key_summary must give each key number's newest version with its creation time"
    );

    // The whole u32 range round-trips.
    let wide = keyring_of(ids, &account, "wide");
    let wide_versions = vec![
        keyring_version(&wide, 7, u32::MAX - 1),
        keyring_version(&wide, u32::MAX, 1),
    ];
    ok(
        store.create_keyring(&wide, &wide_versions).await,
        CASE,
        "create_keyring",
    );
    ok(
        store
            .add_keyring_key_version(&keyring_version(&wide, 7, u32::MAX))
            .await,
        CASE,
        "add_keyring_key_version (u32::MAX)",
    );
    assert_eq!(
        get_version(&wide, u32::MAX, None).await,
        Some(keyring_version(&wide, u32::MAX, 1)),
        "store conformance: {CASE}: key number u32::MAX must round-trip"
    );
    assert_eq!(
        get_version(&wide, 7, None).await,
        Some(keyring_version(&wide, 7, u32::MAX)),
        "store conformance: {CASE}: version u32::MAX must round-trip"
    );
    assert_eq!(
        ok(
            store.list_keyring_key_versions(&wide.id).await,
            CASE,
            "list_keyring_key_versions"
        ),
        vec![
            keyring_version(&wide, 7, u32::MAX - 1),
            keyring_version(&wide, 7, u32::MAX),
            keyring_version(&wide, u32::MAX, 1),
        ],
        "store conformance: {CASE}: large key numbers must sort as numbers"
    );

    // Deletion, scoped by account.
    assert!(
        !ok(
            store.delete_keyring(&other, &wide.id).await,
            CASE,
            "delete_keyring"
        ),
        "store conformance: {CASE}: deleting another account's keyring must answer false"
    );
    assert_eq!(
        ok(store.get_keyring(&wide.id).await, CASE, "get_keyring"),
        Some(wide.clone()),
        "store conformance: {CASE}: a refused delete_keyring must delete nothing"
    );
    assert_eq!(
        ok(
            store.list_keyring_key_versions(&wide.id).await,
            CASE,
            "list_keyring_key_versions"
        )
        .len(),
        3,
        "store conformance: {CASE}: a refused delete_keyring must delete no versions"
    );
    assert!(
        ok(
            store.delete_keyring(&account, &wide.id).await,
            CASE,
            "delete_keyring"
        ),
        "store conformance: {CASE}: deleting the account's keyring must answer true"
    );
    assert_eq!(
        ok(store.get_keyring(&wide.id).await, CASE, "get_keyring"),
        None,
        "store conformance: {CASE}: a deleted keyring must read as None"
    );
    assert!(
        ok(
            store.list_keyring_key_versions(&wide.id).await,
            CASE,
            "list_keyring_key_versions"
        )
        .is_empty(),
        "store conformance: {CASE}: deleting a keyring must delete its versions"
    );
    assert!(
        !ok(
            store.delete_keyring(&account, &wide.id).await,
            CASE,
            "delete_keyring"
        ),
        "store conformance: {CASE}: deleting a deleted keyring must answer false"
    );
    expect_err(
        store
            .add_keyring_key_version(&keyring_version(&wide, 7, 1))
            .await,
        Expected::MissingReference,
        CASE,
        "add_keyring_key_version to a deleted keyring",
    );

    // Concurrent rotations to one version: exactly one wins.
    let racing: Vec<BoxFuture<'_, Result<(), StoreError>>> = (0..8u8)
        .map(|i| {
            let mut v = keyring_version(&a, 2, 2);
            v.ciphertext[0] = i;
            Box::pin(async move { store.add_keyring_key_version(&v).await })
                as BoxFuture<'_, Result<(), StoreError>>
        })
        .collect();
    single_winner(&join_all(racing).await, CASE, "add_keyring_key_version");

    assert_eq!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        stamp,
        "store conformance: {CASE}: keyring writes must not move the change stamp"
    );
    // Left behind for dumps: `a` (three keys, several versions), `b` and
    // the other account's keyring.
    assert_eq!(
        ok(store.list_keyrings(&account).await, CASE, "list_keyrings"),
        mine.iter()
            .map(|k| if k.id == b.id {
                b_now.clone()
            } else {
                k.clone()
            })
            .collect::<Vec<_>>(),
        "store conformance: {CASE}: list_keyrings after the updates and the deletion"
    );
}

// ---------------------------------------------------------------------------
// Ids

/// Fresh ids: a per-run seed (time, process, run number) mixed with a
/// counter, so repeated runs against one database never collide.
struct Ids {
    seed: u64,
    counter: AtomicU64,
}

impl Ids {
    fn new() -> Ids {
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        Ids {
            seed: splitmix(nanos ^ splitmix(u64::from(std::process::id()) ^ splitmix(run))),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        splitmix(
            self.seed
                .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        )
    }

    fn key(&self) -> KeyId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes());
        KeyId::from_bytes(bytes)
    }

    fn product(&self) -> ProductCode {
        let code = format!("c{:015x}", self.next() >> 4);
        ProductCode::parse(&code).expect("a valid product code")
    }

    fn account(&self) -> AccountId {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&self.next().to_be_bytes());
        bytes[8..].copy_from_slice(&self.next().to_be_bytes()[..4]);
        AccountId::from_random(bytes)
    }
}

// ---------------------------------------------------------------------------
// Custom key stores

fn custom_key_store_of(ids: &Ids, account: &AccountId, name: &str) -> CustomKeyStoreRecord {
    CustomKeyStoreRecord {
        id: format!("cks-{:017x}", ids.next() >> 4),
        account_id: account.clone(),
        name: name.to_owned(),
        cluster_id: format!("cluster-{:016x}", ids.next()),
        // Every byte value: a sealed PIN is opaque bytes.
        sealed_pin: (0..=255u8).rev().collect(),
        trust_anchor: "-----BEGIN CERTIFICATE-----\nTUlJ\n-----END CERTIFICATE-----\n".into(),
        state: ConnectionState::Disconnected,
        error_code: None,
        created_at: UnixMillis(1_700_000_000_123),
        revision: 1,
    }
}

async fn stores_of(
    store: &dyn Store,
    account: Option<&AccountId>,
    case: &str,
) -> Vec<CustomKeyStoreRecord> {
    ok(
        store.list_custom_key_stores(account).await,
        case,
        "list_custom_key_stores",
    )
}

/// Custom key stores: created (taken ids, names within an account and
/// clusters refused, unknown accounts refused), listed by account in id
/// order, updated by compare-and-set (stale revisions, other accounts,
/// taken names refused), deleted by compare-and-set and only while no key
/// version (pending deletion too) names the store's protector; every write
/// moves the change stamp. Leaves stores behind (for dumps).
async fn custom_key_stores(store: &dyn Store, ids: &Ids) {
    const CASE: &str = "custom_key_stores";
    let a = new_account(store, ids).await;
    let b = new_account(store, ids).await;
    let stamp = || async { ok(store.change_stamp().await, CASE, "change_stamp") };

    let before = stamp().await;
    let first = custom_key_store_of(ids, &a, "rack 1");
    ok(
        store.create_custom_key_store(&first).await,
        CASE,
        "create_custom_key_store",
    );
    assert_ne!(
        before,
        stamp().await,
        "store conformance: {CASE}: create_custom_key_store must move the stamp"
    );
    assert_eq!(
        stores_of(store, Some(&a), CASE).await,
        vec![first.clone()],
        "store conformance: {CASE}: a created store reads back equal"
    );

    let mut same_id = custom_key_store_of(ids, &b, "other");
    same_id.id = first.id.clone();
    expect_err(
        store.create_custom_key_store(&same_id).await,
        Expected::AlreadyExists,
        CASE,
        "a store with a taken id",
    );
    expect_err(
        store
            .create_custom_key_store(&custom_key_store_of(ids, &a, "rack 1"))
            .await,
        Expected::AlreadyExists,
        CASE,
        "a store with a name the account uses",
    );
    let mut same_cluster = custom_key_store_of(ids, &b, "rack 2");
    same_cluster.cluster_id = first.cluster_id.clone();
    expect_err(
        store.create_custom_key_store(&same_cluster).await,
        Expected::AlreadyExists,
        CASE,
        "a store on a cluster another store uses",
    );
    expect_err(
        store
            .create_custom_key_store(&custom_key_store_of(ids, &ids.account(), "x"))
            .await,
        Expected::MissingReference,
        CASE,
        "a store of an unknown account",
    );
    // The same name in another account is another store.
    let other = custom_key_store_of(ids, &b, "rack 1");
    ok(
        store.create_custom_key_store(&other).await,
        CASE,
        "create_custom_key_store (other account)",
    );
    let second = custom_key_store_of(ids, &a, "rack 2");
    ok(
        store.create_custom_key_store(&second).await,
        CASE,
        "create_custom_key_store (second)",
    );
    let listed = stores_of(store, Some(&a), CASE).await;
    assert_eq!(
        listed.len(),
        2,
        "store conformance: {CASE}: an account lists its own stores only"
    );
    assert_strictly_sorted(listed.iter().map(|s| s.id.as_str()), CASE, "stores");
    let all = stores_of(store, None, CASE).await;
    assert_strictly_sorted(all.iter().map(|s| s.id.as_str()), CASE, "all stores");
    for s in [&first, &second, &other] {
        assert!(
            all.contains(s),
            "store conformance: {CASE}: listing every account's stores shows {}",
            s.id
        );
    }

    // Compare-and-set updates.
    let mut connected = first.clone();
    connected.revision = 2;
    connected.state = ConnectionState::Connected;
    connected.name = "rack 1 renamed".into();
    connected.sealed_pin = vec![7; 40];
    expect_err(
        store.update_custom_key_store(&connected, 5).await,
        Expected::Conflict,
        CASE,
        "update_custom_key_store with a stale revision",
    );
    let mut foreign = connected.clone();
    foreign.account_id = b.clone();
    expect_err(
        store.update_custom_key_store(&foreign, 1).await,
        Expected::Conflict,
        CASE,
        "update_custom_key_store naming another account",
    );
    let mut taken = connected.clone();
    taken.name = second.name.clone();
    expect_err(
        store.update_custom_key_store(&taken, 1).await,
        Expected::AlreadyExists,
        CASE,
        "update_custom_key_store to a name the account uses",
    );
    let before = stamp().await;
    ok(
        store.update_custom_key_store(&connected, 1).await,
        CASE,
        "update_custom_key_store",
    );
    assert_ne!(
        before,
        stamp().await,
        "store conformance: {CASE}: update_custom_key_store must move the stamp"
    );
    let mut failed = connected.clone();
    failed.revision = 3;
    failed.state = ConnectionState::Failed;
    failed.error_code = Some(ConnectionErrorCode::InvalidCredentials);
    ok(
        store.update_custom_key_store(&failed, 2).await,
        CASE,
        "update_custom_key_store (failed)",
    );
    assert!(
        stores_of(store, Some(&a), CASE).await.contains(&failed),
        "store conformance: {CASE}: an updated store reads back equal"
    );

    // Deletion: compare-and-set, and refused while a key is in the store.
    let mut key = plain_key(ids, &a);
    key.state = KeyState::PendingDeletion;
    key.deletion_date = Some(UnixMillis(1_800_000_000_000));
    key.versions[0].protector = format!(
        "{}{}",
        crate::ops::custom_key_stores::PROTECTOR_PREFIX,
        second.id
    );
    ok(store.insert_key(&key).await, CASE, "insert_key");
    expect_err(
        store.delete_custom_key_store(&a, &second.id, 7).await,
        Expected::Conflict,
        CASE,
        "delete_custom_key_store with a stale revision",
    );
    expect_err(
        store.delete_custom_key_store(&b, &second.id, 1).await,
        Expected::Conflict,
        CASE,
        "delete_custom_key_store naming another account",
    );
    expect_err(
        store.delete_custom_key_store(&a, &second.id, 1).await,
        Expected::InUse,
        CASE,
        "delete_custom_key_store of a store holding a key pending deletion",
    );
    assert!(
        stores_of(store, Some(&a), CASE).await.contains(&second),
        "store conformance: {CASE}: a refused deletion deletes nothing"
    );
    ok(
        store.destroy_key(&a, &key.key_id, key.revision).await,
        CASE,
        "destroy_key",
    );
    let before = stamp().await;
    ok(
        store.delete_custom_key_store(&a, &second.id, 1).await,
        CASE,
        "delete_custom_key_store",
    );
    assert_ne!(
        before,
        stamp().await,
        "store conformance: {CASE}: delete_custom_key_store must move the stamp"
    );
    assert_eq!(
        stores_of(store, Some(&a), CASE).await,
        vec![failed],
        "store conformance: {CASE}: a deleted store is gone, the others stay"
    );
    expect_err(
        store.delete_custom_key_store(&a, &second.id, 1).await,
        Expected::Conflict,
        CASE,
        "delete_custom_key_store of a deleted store",
    );
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------
// Assertions

#[derive(Debug, Clone, Copy)]
enum Expected {
    Conflict,
    AlreadyExists,
    MissingReference,
    LimitExceeded,
    InUse,
}

impl Expected {
    fn matches(self, e: &StoreError) -> bool {
        matches!(
            (self, e),
            (Expected::Conflict, StoreError::Conflict)
                | (Expected::AlreadyExists, StoreError::AlreadyExists)
                | (Expected::MissingReference, StoreError::MissingReference)
                | (Expected::LimitExceeded, StoreError::LimitExceeded)
                | (Expected::InUse, StoreError::InUse)
        )
    }
}

fn ok<T>(result: Result<T, StoreError>, case: &str, call: &str) -> T {
    match result {
        Ok(value) => value,
        Err(e) => panic!("store conformance: {case}: {call} failed: {e:?}"),
    }
}

fn expect_err<T: Debug>(result: Result<T, StoreError>, want: Expected, case: &str, what: &str) {
    match result {
        Err(e) if want.matches(&e) => {}
        other => panic!("store conformance: {case}: {what}: expected {want:?}, got {other:?}"),
    }
}

async fn get_key(
    store: &dyn Store,
    account: &AccountId,
    key: &KeyId,
    case: &str,
) -> Option<KeyRecord> {
    ok(store.get_key(account, key).await, case, "get_key")
}

fn assert_strictly_sorted<S: AsRef<str>>(items: impl Iterator<Item = S>, case: &str, what: &str) {
    let items: Vec<S> = items.collect();
    assert!(
        items.windows(2).all(|w| w[0].as_ref() < w[1].as_ref()),
        "store conformance: {case}: {what} must be ordered by id, without duplicates"
    );
}

/// The index of the one `Ok` among `results`; every other result must be a
/// conflict.
fn single_winner(results: &[Result<(), StoreError>], case: &str, call: &str) -> usize {
    single_winner_with(results, Expected::Conflict, case, call)
}

fn single_winner_with(
    results: &[Result<(), StoreError>],
    losers: Expected,
    case: &str,
    call: &str,
) -> usize {
    let winners: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "store conformance: {case}: exactly one of {} simultaneous {call} calls must succeed, \
         {} did",
        results.len(),
        winners.len()
    );
    for r in results {
        if let Err(e) = r {
            assert!(
                losers.matches(e),
                "store conformance: {case}: the losing {call} calls must fail with \
                 {losers:?}, one got {e:?}"
            );
        }
    }
    winners[0]
}

// ---------------------------------------------------------------------------
// Joining futures without an executor dependency

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Polls every future from the calling task until all are done, and returns
/// their outputs in order. (The core crate has no `futures` dependency.)
async fn join_all<T: Unpin>(futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let done = futures.iter().map(|_| None).collect();
    JoinAll {
        pending: futures.into_iter().map(Some).collect(),
        done,
    }
    .await
}

struct JoinAll<'a, T> {
    pending: Vec<Option<BoxFuture<'a, T>>>,
    done: Vec<Option<T>>,
}

impl<T: Unpin> Future for JoinAll<'_, T> {
    type Output = Vec<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<T>> {
        let this = self.get_mut();
        for (slot, out) in this.pending.iter_mut().zip(this.done.iter_mut()) {
            if let Some(future) = slot {
                if let Poll::Ready(value) = future.as_mut().poll(cx) {
                    *out = Some(value);
                    *slot = None;
                }
            }
        }
        if this.pending.iter().all(Option::is_none) {
            Poll::Ready(this.done.iter_mut().filter_map(Option::take).collect())
        } else {
            Poll::Pending
        }
    }
}

// ---------------------------------------------------------------------------
// Deployment

/// The root key check is set once: the first value stored is the answer to
/// every later call, including racing ones, and setting it does not move
/// the change stamp. (A store that held a check before the suite ran keeps
/// it.)
async fn root_key_check(store: &dyn Store, _ids: &Ids) {
    const CASE: &str = "root_key_check";
    let stamp = ok(store.change_stamp().await, CASE, "change_stamp");
    let mine = b"conformance check value".to_vec();
    let first = ok(store.root_key_check(&mine).await, CASE, "root_key_check");
    let racing: Vec<BoxFuture<'_, Result<Vec<u8>, StoreError>>> = (0..8u8)
        .map(|i| {
            Box::pin(async move { store.root_key_check(&[i; 40]).await })
                as BoxFuture<'_, Result<Vec<u8>, StoreError>>
        })
        .collect();
    for answer in join_all(racing).await {
        let answer = ok(answer, CASE, "root_key_check (racing)");
        assert_eq!(
            answer, first,
            "store conformance: {CASE}: a stored check is never replaced"
        );
    }
    assert_eq!(
        ok(
            store.root_key_check(b"later").await,
            CASE,
            "root_key_check (later)"
        ),
        first,
        "store conformance: {CASE}: a stored check is never replaced"
    );
    assert_eq!(
        ok(store.change_stamp().await, CASE, "change_stamp"),
        stamp,
        "store conformance: {CASE}: the root key check does not move the change stamp"
    );
}

// ---------------------------------------------------------------------------
// Dumps

/// Moving a store to another backend ([`crate::dump::DumpStore`]): fills
/// `source` by running the whole suite on it, exports it, imports the dump
/// into `target` (an empty store, possibly of another backend), and checks
/// that `target` exports an equal dump, that its change stamp moved, that it
/// keeps working (a ledger entry appended after the import gets a `seq`
/// after every imported one) and that a second import is refused with
/// [`StoreError::AlreadyExists`].
pub async fn dump_round_trip<A, B>(source: &A, target: &B)
where
    A: Store + crate::dump::DumpStore,
    B: Store + crate::dump::DumpStore,
{
    const CASE: &str = "dump_round_trip";
    run(source).await;
    let dump = ok(source.export_dump().await, CASE, "export_dump (source)");
    assert!(
        !dump.keys.is_empty() && !dump.ledger.is_empty() && !dump.grants.is_empty(),
        "store conformance: {CASE}: the suite left keys, grants and ledger entries to move"
    );
    assert!(
        dump.keyrings.iter().any(|k| {
            let versions: Vec<&KeyringKeyVersion> = dump
                .keyring_key_versions
                .iter()
                .filter(|v| v.keyring_id == k.id)
                .collect();
            let mut numbers: Vec<u32> = versions.iter().map(|v| v.key_number).collect();
            numbers.dedup();
            numbers.len() >= 2 && versions.len() > numbers.len()
        }),
        "store conformance: {CASE}: the suite left a keyring with two keys and several versions to move"
    );
    assert!(
        IamKind::ALL
            .iter()
            .filter(|kind| dump.iam_entities.iter().any(|e| e.kind() == **kind))
            .count()
            >= 4
            && dump
                .credentials
                .iter()
                .any(|c| matches!(c.owner, CredentialOwner::User { .. })),
        "store conformance: {CASE}: the suite left IAM entities of several kinds and a user's \
         credential to move"
    );
    assert!(
        dump.custom_key_stores
            .iter()
            .any(|s| s.error_code.is_some() && !s.sealed_pin.is_empty()),
        "store conformance: {CASE}: the suite left a custom key store with an error code to move"
    );
    let stamp = ok(target.change_stamp().await, CASE, "change_stamp (before)");
    ok(target.import_dump(&dump).await, CASE, "import_dump");
    let moved = ok(target.export_dump().await, CASE, "export_dump (target)");
    assert!(
        moved == dump,
        "store conformance: {CASE}: the target's dump differs from the imported one \
         (source {dump:?}, target {moved:?}; first differing key: {:?})",
        dump.keys
            .iter()
            .zip(&moved.keys)
            .find(|(a, b)| a != b)
            .map(|(a, _)| a.key_id)
    );
    assert_ne!(
        ok(target.change_stamp().await, CASE, "change_stamp (after)"),
        stamp,
        "store conformance: {CASE}: an import moves the change stamp"
    );
    let last_seq = dump.ledger.iter().map(|e| e.seq).max().unwrap_or(0);
    let account = &dump.ledger[0].account_id;
    let (entry, _) = ok(
        target
            .append_top_up(
                account,
                1,
                UnixMillis(1_800_000_000_000),
                "after import",
                None,
            )
            .await,
        CASE,
        "append_top_up after the import",
    );
    assert!(
        entry.seq > last_seq,
        "store conformance: {CASE}: a ledger entry after the import gets seq {} <= imported {last_seq}",
        entry.seq
    );
    let referenced = dump
        .ledger
        .iter()
        .find(|e| e.reference.is_some())
        .unwrap_or_else(|| {
            panic!("store conformance: {CASE}: the suite left no top-up with a reference")
        });
    let (again, _) = ok(
        target
            .append_top_up(
                &referenced.account_id,
                referenced.amount,
                UnixMillis(1_800_000_000_001),
                "retry after import",
                referenced.reference.as_deref(),
            )
            .await,
        CASE,
        "append_top_up with an imported reference",
    );
    assert_eq!(
        &again, referenced,
        "store conformance: {CASE}: an imported reference must still make top-ups idempotent"
    );
    expect_err(
        target.import_dump(&dump).await,
        Expected::AlreadyExists,
        CASE,
        "import_dump into a store that holds data",
    );
}

#[cfg(test)]
mod tests {
    use super::CASES;

    /// Case names become test names: identifiers, each used once.
    #[test]
    fn case_names_are_distinct_identifiers() {
        let mut names: Vec<&str> = CASES.iter().map(|case| case.name).collect();
        assert!(names.iter().all(|name| {
            name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }));
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "a case name is used twice");
    }
}
