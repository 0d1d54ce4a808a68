//! Deletion of custom key store keys through the injected clock: a Kms on
//! a `ManualClock`, the real SQLite store and a SoftHSM2 token (the system
//! package `softhsm2`). The HSM objects of every version go when the key
//! goes, not before, and a cancelled deletion leaves them alone.
//!
//! One test in this file: SoftHSM2 reads `SOFTHSM2_CONF` once per process.

use std::sync::Arc;

use keywarden_core::clock::{Clock, ManualClock, UnixMillis};
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::model::{KeyRecord, KeyState, Origin};
use keywarden_core::ops::create_key::CreateKeyRequest;
use keywarden_core::ops::custom_key_stores::CustomKeyStore;
use keywarden_core::protector::{KeyBinding, KeyProtector, ProtectorError};
use keywarden_core::store::KeyStore;
use keywarden_core::KmsError;
use keywarden_protector_pkcs11::{Pkcs11Config, Pkcs11Protector};
use keywarden_store_sqlite::SqliteStore;
use keywarden_testkit::clock::{account, node, START};
use keywarden_testkit::softhsm;
use zeroize::Zeroizing;

const DAY: i64 = UnixMillis::DAY;
use softhsm::MODULE;
const LABEL: &str = "kw-clock";
const PIN: &str = "1234";

/// Whether the token still holds the object of every version of `key`
/// (as the store recorded them), asked of the protector directly; any
/// other failure than a missing object fails the test.
fn objects_present(protector: &Pkcs11Protector, key: &KeyRecord) -> Vec<bool> {
    key.versions
        .iter()
        .map(|v| {
            let binding = KeyBinding {
                key_id: &key.key_id,
                version: v.version,
            };
            match protector.load(binding, &v.material) {
                Ok(_) => true,
                // The stored form is well formed (it loaded before): only
                // the object can be missing.
                Err(ProtectorError::Crypto("pkcs11 key object not found")) => false,
                Err(e) => panic!("load version {}: {e}", v.version),
            }
        })
        .collect()
}

#[tokio::test]
async fn hsm_objects_are_destroyed_with_their_key_and_not_before() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = softhsm::token(tmp.path(), LABEL, PIN);
    // Before the protector's C_Initialize, which is when SoftHSM2 reads it;
    // the only test in this binary, so no other thread reads the env.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let hsm = Arc::new(
        Pkcs11Protector::new(Pkcs11Config {
            module: MODULE.into(),
            token_label: LABEL.into(),
            pin: Zeroizing::new(PIN.into()),
            sessions: 2,
            protector_id: "hsm:cks-clock".into(),
        })
        .unwrap(),
    );
    assert!(hsm.available());

    let store = Arc::new(SqliteStore::open(&tmp.path().join("k.db")).unwrap());
    let t0 = START;
    let clock = Arc::new(ManualClock::new(t0));
    let kms = node(store.clone(), clock.clone())
        .with_custom_key_store(CustomKeyStore {
            id: "cks-clock".into(),
            name: "clock".into(),
            created_at: t0,
            protector: hsm.clone(),
        })
        .unwrap();

    let caller = account(&kms, "t").await;
    let req = || CreateKeyRequest {
        description: String::new(),
        origin: Origin::AwsCloudHsm,
        tags: vec![],
        policy: None,
        bypass_policy_lockout_safety_check: false,
        custom_key_store_id: Some("cks-clock".into()),
        key_spec: keywarden_core::key_spec::KeySpec::SymmetricDefault,
        key_usage: None,
        multi_region: false,
    };
    let ctx = EncryptionContext::empty();

    // (1) HSM keys work, before and after an on-demand rotation.
    let doomed = kms.create_key(&caller, req()).await.unwrap();
    let kept = kms.create_key(&caller, req()).await.unwrap();
    let doomed_ref = KeyRef::Id(doomed.key_id);
    let kept_ref = KeyRef::Id(kept.key_id);
    let (_, blob_v1) = kms
        .encrypt(&caller, &doomed_ref, b"version one", &ctx, false)
        .await
        .unwrap();
    let rotated = kms
        .rotate_key_on_demand(&caller, &doomed_ref)
        .await
        .unwrap();
    assert_eq!(rotated.versions.len(), 2);
    let (_, blob_v2) = kms
        .encrypt(&caller, &doomed_ref, b"version two", &ctx, false)
        .await
        .unwrap();
    for (blob, want) in [(&blob_v1, &b"version one"[..]), (&blob_v2, b"version two")] {
        let (_, plain) = kms.decrypt(&caller, blob, &ctx, None, false).await.unwrap();
        assert_eq!(plain.expose(), want);
    }
    let (_, kept_blob) = kms
        .encrypt(&caller, &kept_ref, b"kept", &ctx, false)
        .await
        .unwrap();

    // The stored forms, read before the rows go: the only way to name the
    // HSM objects afterwards.
    let doomed_record = store
        .get_key(&caller.account_id, &doomed.key_id)
        .await
        .unwrap()
        .unwrap();
    let kept_record = store
        .get_key(&caller.account_id, &kept.key_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(doomed_record.versions.len(), 2);
    assert!(doomed_record
        .versions
        .iter()
        .chain(&kept_record.versions)
        .all(|v| v.protector == "hsm:cks-clock"));
    assert_eq!(objects_present(&hsm, &doomed_record), [true, true]);
    assert_eq!(objects_present(&hsm, &kept_record), [true]);

    // (2) Scheduled for 7 days: nothing is destroyed at day 6 or at 7 days
    // less 1 ms, and the objects are still in the token.
    let scheduled_at = clock.now();
    let pending = kms
        .schedule_key_deletion(&caller, &doomed_ref, Some(7))
        .await
        .unwrap();
    assert_eq!(pending.deletion_date, Some(scheduled_at.plus_days(7)));
    clock.advance(6 * DAY);
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 0);
    clock.set(UnixMillis(scheduled_at.0 + 7 * DAY - 1));
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 0);
    let k = kms.describe_key(&caller, &doomed_ref).await.unwrap();
    assert_eq!(k.state, KeyState::PendingDeletion);
    assert!(matches!(
        kms.decrypt(&caller, &blob_v1, &ctx, None, false).await,
        Err(KmsError::InvalidState(_))
    ));
    assert_eq!(objects_present(&hsm, &doomed_record), [true, true]);

    // At 7 days + 1 ms the key goes, and with it both versions' objects.
    clock.set(UnixMillis(scheduled_at.0 + 7 * DAY + 1));
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 1);
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 0, "once");
    assert!(matches!(
        kms.describe_key(&caller, &doomed_ref).await,
        Err(KmsError::NotFound(_))
    ));
    assert_eq!(objects_present(&hsm, &doomed_record), [false, false]);
    for blob in [&blob_v1, &blob_v2] {
        assert!(matches!(
            kms.decrypt(&caller, blob, &ctx, None, false).await,
            Err(KmsError::InvalidCiphertext)
        ));
    }
    // The other key's object was not touched.
    assert_eq!(objects_present(&hsm, &kept_record), [true]);

    // (3) Every destroy succeeded.
    assert_eq!(kms.orphaned_material(), 0);

    // (4) A cancelled deletion destroys nothing, even long after the date
    // it had.
    let scheduled_at = clock.now();
    kms.schedule_key_deletion(&caller, &kept_ref, Some(7))
        .await
        .unwrap();
    clock.advance(3 * DAY);
    let cancelled = kms.cancel_key_deletion(&caller, &kept_ref).await.unwrap();
    assert_eq!(cancelled.state, KeyState::Disabled);
    clock.set(UnixMillis(scheduled_at.0 + 7 * DAY + 1));
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 0);
    clock.advance(30 * DAY);
    assert_eq!(kms.execute_due_deletions().await.unwrap(), 0);
    assert_eq!(objects_present(&hsm, &kept_record), [true]);
    kms.enable_key(&caller, &kept_ref).await.unwrap();
    let (_, plain) = kms
        .decrypt(&caller, &kept_blob, &ctx, None, false)
        .await
        .unwrap();
    assert_eq!(plain.expose(), b"kept");
    assert_eq!(kms.orphaned_material(), 0);
}
