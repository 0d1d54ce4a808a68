//! Key usage (`GetKeyLastUsage`) through the injected clock on the real
//! SQLite store: crypto requests only touch memory, one flush writes the
//! whole batch in one store call, the node that served a request answers
//! from memory before the flush, other nodes after it, batches flushed out
//! of order never move a key's last use back, and flushing does not empty
//! the caches.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use keywarden_core::clock::{ManualClock, UnixMillis};
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::model::{CryptoOperation, KeyUsage, Origin};
use keywarden_core::{Caller, KmsError};
use keywarden_store_sqlite::SqliteStore;
use keywarden_testkit::clock::{self, key_request, node, START};
use keywarden_testkit::wrapped_store::{Hooks, Wrapped};

/// Counts `record_key_usage` calls and their batches.
struct Counting {
    usage_writes: AtomicUsize,
    batches: Mutex<Vec<usize>>,
}

impl Hooks for Counting {
    fn on_record_key_usage(&self, usage: &[KeyUsage]) {
        self.usage_writes.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().unwrap().push(usage.len());
    }
}

/// The fixture of these tests: a node on the SQLite store counting usage
/// writes.
type Fixture = clock::Fixture<Wrapped<Counting>>;

async fn fixture() -> Fixture {
    let counting = |inner| Wrapped {
        inner,
        hooks: Counting {
            usage_writes: AtomicUsize::new(0),
            batches: Mutex::new(Vec::new()),
        },
    };
    clock::fixture_with(START, counting, |kms| kms).await
}

async fn new_key(f: &Fixture) -> KeyRef {
    let key = f
        .kms
        .create_key(&f.caller, key_request(Origin::AwsKms))
        .await
        .unwrap();
    KeyRef::Id(key.key_id)
}

fn with_request(caller: &Caller, request_id: &str) -> Caller {
    Caller {
        request_id: request_id.into(),
        ..caller.clone()
    }
}

fn ctx() -> EncryptionContext {
    EncryptionContext::empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_crypto_calls_are_one_store_write() {
    let f = fixture().await;
    let a = new_key(&f).await;
    let b = new_key(&f).await;
    let fresh = f.kms.get_key_last_usage(&f.caller, &a).await.unwrap();
    assert!(fresh.last_usage.is_none(), "a new key was never used");
    assert_eq!(
        fresh.tracking_start, fresh.key.created_at,
        "on a database that records usage from its creation, tracking starts at key creation"
    );
    let _ = f.kms.refresh_caches().await.unwrap();

    let mut last_blob = Vec::new();
    for i in 0..50 {
        f.clock.advance(10);
        let caller = with_request(&f.caller, &format!("req-{i}"));
        last_blob = f
            .kms
            .encrypt(&caller, &a, b"data", &ctx(), false)
            .await
            .unwrap()
            .1;
        f.kms
            .generate_data_key(&caller, &b, &ctx(), 32, false)
            .await
            .unwrap();
    }
    f.clock.advance(10);
    let decrypted_at = clock_now(&f);
    f.kms
        .decrypt(
            &with_request(&f.caller, "req-dec"),
            &last_blob,
            &ctx(),
            None,
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        f.store.hooks.usage_writes.load(Ordering::SeqCst),
        0,
        "crypto requests must not write to the store"
    );

    // The serving node answers from memory before the flush.
    let before = f.kms.get_key_last_usage(&f.caller, &a).await.unwrap();
    let u = before.last_usage.expect("used");
    assert_eq!(u.operation, CryptoOperation::Decrypt);
    assert_eq!(u.request_id, "req-dec");
    assert_eq!(u.principal, f.caller.principal);
    assert_eq!(u.used_at, decrypted_at);

    let flushed = f.kms.flush_key_usage().await.unwrap();
    assert_eq!(flushed.written, 2);
    assert_eq!(f.store.hooks.usage_writes.load(Ordering::SeqCst), 1);
    assert_eq!(*f.store.hooks.batches.lock().unwrap(), vec![2]);

    // Nothing used since: no store call at all.
    assert_eq!(f.kms.flush_key_usage().await.unwrap().written, 0);
    assert_eq!(f.store.hooks.usage_writes.load(Ordering::SeqCst), 1);

    // Flushing usage is not a change the caches must drop everything for.
    assert!(
        !f.kms.refresh_caches().await.unwrap(),
        "a usage flush must not move the change stamp"
    );

    // Another node on the same store sees the flushed uses.
    let other = node(
        Arc::new(SqliteStore::open(&f.path).unwrap()),
        f.clock.clone(),
    );
    let seen = other.get_key_last_usage(&f.caller, &b).await.unwrap();
    let u = seen.last_usage.expect("flushed");
    assert_eq!(u.operation, CryptoOperation::GenerateDataKey);
    assert_eq!(u.request_id, "req-49");
    let seen = other.get_key_last_usage(&f.caller, &a).await.unwrap();
    assert_eq!(seen.last_usage.unwrap().request_id, "req-dec");
}

fn clock_now(f: &Fixture) -> UnixMillis {
    use keywarden_core::clock::Clock;
    f.clock.now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn which_operations_are_recorded() {
    let f = fixture().await;
    let src = new_key(&f).await;
    let dst = new_key(&f).await;
    let blob = f
        .kms
        .encrypt(&f.caller, &src, b"x", &ctx(), false)
        .await
        .unwrap()
        .1;
    f.clock.advance(1_000);
    f.kms
        .re_encrypt(
            &with_request(&f.caller, "req-re"),
            &blob,
            &ctx(),
            None,
            &dst,
            &ctx(),
            false,
        )
        .await
        .unwrap();
    for key in [&src, &dst] {
        let u = f.kms.get_key_last_usage(&f.caller, key).await.unwrap();
        let u = u.last_usage.unwrap();
        assert_eq!(
            u.operation,
            CryptoOperation::ReEncrypt,
            "both keys of ReEncrypt"
        );
        assert_eq!(u.request_id, "req-re");
    }

    let gdk = new_key(&f).await;
    f.kms
        .generate_data_key_without_plaintext(&f.caller, &gdk, &ctx(), 16, false)
        .await
        .unwrap();
    let u = f.kms.get_key_last_usage(&f.caller, &gdk).await.unwrap();
    assert_eq!(
        u.last_usage.unwrap().operation,
        CryptoOperation::GenerateDataKeyWithoutPlaintext
    );

    // Dry runs, failures and non-crypto operations are not uses.
    let idle = new_key(&f).await;
    let err = f
        .kms
        .encrypt(&f.caller, &idle, b"x", &ctx(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, KmsError::DryRun));
    f.kms.describe_key(&f.caller, &idle).await.unwrap();
    f.kms.disable_key(&f.caller, &idle).await.unwrap();
    assert!(f
        .kms
        .encrypt(&f.caller, &idle, b"x", &ctx(), false)
        .await
        .is_err());
    assert!(f
        .kms
        .get_key_last_usage(&f.caller, &idle)
        .await
        .unwrap()
        .last_usage
        .is_none());
    f.kms.flush_key_usage().await.unwrap();
    assert!(f
        .kms
        .get_key_last_usage(&f.caller, &idle)
        .await
        .unwrap()
        .last_usage
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_flush_never_moves_the_last_use_back() {
    let f = fixture().await;
    let key = new_key(&f).await;
    // Two nodes with their own clocks: B used the key earlier than A, but
    // flushes later.
    let clock_b = Arc::new(ManualClock::new(START));
    let b = node(
        Arc::new(SqliteStore::open(&f.path).unwrap()),
        clock_b.clone(),
    );
    clock_b.advance(1_000);
    b.encrypt(&with_request(&f.caller, "req-b"), &key, b"x", &ctx(), false)
        .await
        .unwrap();
    f.clock.advance(2_000);
    f.kms
        .encrypt(&with_request(&f.caller, "req-a"), &key, b"x", &ctx(), false)
        .await
        .unwrap();
    f.kms.flush_key_usage().await.unwrap();
    b.flush_key_usage().await.unwrap();
    for n in [&f.kms, &b] {
        let u = n.get_key_last_usage(&f.caller, &key).await.unwrap();
        assert_eq!(u.last_usage.unwrap().request_id, "req-a");
    }
    // A newer use from B does replace it.
    clock_b.advance(5_000);
    b.decrypt(
        &with_request(&f.caller, "req-b2"),
        &f.kms
            .encrypt(&f.caller, &key, b"y", &ctx(), false)
            .await
            .unwrap()
            .1,
        &ctx(),
        None,
        false,
    )
    .await
    .unwrap();
    b.flush_key_usage().await.unwrap();
    let u = f
        .kms
        .get_key_last_usage(&f.caller, &key)
        .await
        .unwrap()
        .last_usage
        .unwrap();
    // f.kms's own unflushed Encrypt (at START + 2000) is older than B's.
    assert_eq!(u.request_id, "req-b2");
    assert_eq!(u.operation, CryptoOperation::Decrypt);
}
