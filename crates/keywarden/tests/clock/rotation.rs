//! Automatic rotation through the injected clock, on the real SQLite store
//! and software protector: it fires when due and not before, exactly once
//! per due date (also with several executors at once), a missed period
//! rotates once, and every old ciphertext still decrypts.

use std::sync::Arc;

use keywarden_core::ciphertext;
use keywarden_core::clock::{Clock, UnixMillis};
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::model::{KeyRecord, Origin, RotationType};
use keywarden_core::store::{KeyStore, Store};
use keywarden_core::KmsError;
use keywarden_store_sqlite::SqliteStore;
use keywarden_testkit::clock::{self, fixture, key_request, node, START};

const DAY: i64 = UnixMillis::DAY;
/// The fixture of these tests: a node on the plain SQLite store.
type Fixture = clock::Fixture<SqliteStore>;

async fn new_key(f: &Fixture) -> KeyRef {
    let key = f
        .kms
        .create_key(&f.caller, key_request(Origin::AwsKms))
        .await
        .unwrap();
    KeyRef::Id(key.key_id)
}

async fn stored(f: &Fixture, key: &KeyRef) -> KeyRecord {
    let KeyRef::Id(id) = key else { unreachable!() };
    f.store
        .get_key(&f.caller.account_id, id)
        .await
        .unwrap()
        .unwrap()
}

async fn encrypt(f: &Fixture, key: &KeyRef, plaintext: &[u8]) -> Vec<u8> {
    f.kms
        .encrypt(
            &f.caller,
            key,
            plaintext,
            &EncryptionContext::empty(),
            false,
        )
        .await
        .unwrap()
        .1
}

fn version_of(blob: &[u8]) -> u32 {
    ciphertext::parse(blob).unwrap().version
}

async fn decrypts(f: &Fixture, blob: &[u8], plaintext: &[u8]) {
    let (_, got) = f
        .kms
        .decrypt(&f.caller, blob, &EncryptionContext::empty(), None, false)
        .await
        .unwrap();
    assert_eq!(got.expose(), plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_rotation_fires_when_due_and_not_before_exactly_once() {
    let f = fixture().await;
    let key = new_key(&f).await;
    let bystander = new_key(&f).await;
    let before = encrypt(&f, &key, b"made with version 1").await;
    assert_eq!(version_of(&before), 1);

    f.kms
        .enable_key_rotation(&f.caller, &key, Some(90))
        .await
        .unwrap();
    let status = f
        .kms
        .get_key_rotation_status(&f.caller, &key)
        .await
        .unwrap();
    let rotation = status.rotation.unwrap();
    assert_eq!(rotation.period_days, 90);
    assert_eq!(rotation.next_rotation, START.plus_days(90));

    // One millisecond early: nothing.
    f.clock.advance(90 * DAY - 1);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 0);
    assert_eq!(stored(&f, &key).await.versions.len(), 1);

    // Due: exactly one rotation, however often the executor runs.
    f.clock.advance(1);
    let due_at = f.clock.now();
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 1);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 0);
    let k = stored(&f, &key).await;
    assert_eq!(k.versions.len(), 2);
    let v2 = &k.versions[1];
    assert_eq!(
        (v2.version, v2.rotation, v2.created_at),
        (2, Some(RotationType::Automatic), due_at)
    );
    assert_eq!(
        k.rotation.unwrap().next_rotation,
        due_at.plus_days(90),
        "the next date advances by one period"
    );
    assert_eq!(k.on_demand_rotations, 0);
    assert_eq!(
        stored(&f, &bystander).await.versions.len(),
        1,
        "keys without automatic rotation are left alone"
    );

    // The rotating node's cache was invalidated: new ciphertexts use the new
    // version, the old one still decrypts.
    let after = encrypt(&f, &key, b"made with version 2").await;
    assert_eq!(version_of(&after), 2);
    decrypts(&f, &before, b"made with version 1").await;
    decrypts(&f, &after, b"made with version 2").await;

    // ListKeyRotations shows it.
    let listed = f
        .kms
        .list_key_rotations(&f.caller, &key, false, None, None)
        .await
        .unwrap();
    assert_eq!(listed.page.items.len(), 1);
    assert_eq!(listed.page.items[0].rotation, Some(RotationType::Automatic));
    assert_eq!(listed.page.items[0].date, due_at);

    // The next period.
    f.clock.advance(90 * DAY - 1);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 0);
    f.clock.advance(1);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 1);
    assert_eq!(stored(&f, &key).await.versions.len(), 3);
    decrypts(&f, &before, b"made with version 1").await;
    decrypts(&f, &after, b"made with version 2").await;
    assert_eq!(version_of(&encrypt(&f, &key, b"v3").await), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_executors_rotate_a_due_key_once() {
    let f = fixture().await;
    let keys = [new_key(&f).await, new_key(&f).await, new_key(&f).await];
    for key in &keys {
        f.kms
            .enable_key_rotation(&f.caller, key, None)
            .await
            .unwrap();
    }
    // Three more nodes: two share this store's connections, one has its own
    // (like another process on the same file).
    let other_store: Arc<dyn Store> = Arc::new(SqliteStore::open(&f.path).unwrap());
    let nodes = [
        node(f.store.clone(), f.clock.clone()),
        node(f.store.clone(), f.clock.clone()),
        node(other_store, f.clock.clone()),
    ];
    f.clock.advance(365 * DAY);
    for round in 0..5 {
        let (a, b, c, d) = tokio::join!(
            f.kms.execute_due_rotations(),
            nodes[0].execute_due_rotations(),
            nodes[1].execute_due_rotations(),
            nodes[2].execute_due_rotations(),
        );
        let total = a.unwrap() + b.unwrap() + c.unwrap() + d.unwrap();
        let want = if round == 0 { keys.len() } else { 0 };
        assert_eq!(
            total, want,
            "round {round}: every due key rotated exactly once"
        );
    }
    for key in &keys {
        let k = stored(&f, key).await;
        assert_eq!(k.versions.len(), 2, "one new version per key");
        assert_eq!(
            k.rotation.unwrap().next_rotation,
            f.clock.now().plus_days(365)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_missed_several_periods_rotates_once() {
    let f = fixture().await;
    let key = new_key(&f).await;
    let blob = encrypt(&f, &key, b"old").await;
    f.kms
        .enable_key_rotation(&f.caller, &key, Some(90))
        .await
        .unwrap();
    drop(f.kms);

    // The service was down for five periods and a bit; a new process on the
    // same database sweeps once.
    f.clock.advance(5 * 90 * DAY + 7 * DAY);
    let restarted = node(
        Arc::new(SqliteStore::open(&f.path).unwrap()),
        f.clock.clone(),
    );
    let f = Fixture {
        kms: restarted,
        ..f
    };
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 1);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 0);
    let k = stored(&f, &key).await;
    assert_eq!(
        k.versions.len(),
        2,
        "one rotation, not one per missed period"
    );
    assert_eq!(
        k.rotation.unwrap().next_rotation,
        f.clock.now().plus_days(90),
        "the schedule restarts from the rotation"
    );
    decrypts(&f, &blob, b"old").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_enabled_keys_rotate_and_settings_follow_aws() {
    let f = fixture().await;
    let key = new_key(&f).await;
    f.kms
        .enable_key_rotation(&f.caller, &key, Some(365))
        .await
        .unwrap();

    // A disabled key is not rotated while due; re-enabled, it is rotated at
    // the next sweep.
    f.kms.disable_key(&f.caller, &key).await.unwrap();
    f.clock.advance(400 * DAY);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 0);
    assert!(
        f.kms
            .get_key_rotation_status(&f.caller, &key)
            .await
            .unwrap()
            .rotation
            .is_some(),
        "a disabled key keeps its rotation setting"
    );
    for refused in [
        f.kms
            .enable_key_rotation(&f.caller, &key, None)
            .await
            .map(|_| ()),
        f.kms.disable_key_rotation(&f.caller, &key).await,
        f.kms
            .rotate_key_on_demand(&f.caller, &key)
            .await
            .map(|_| ()),
    ] {
        assert!(matches!(refused, Err(KmsError::Disabled(_))), "{refused:?}");
    }
    f.kms.enable_key(&f.caller, &key).await.unwrap();
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 1);

    // Pending deletion: reported off, not rotated, refused; the setting
    // returns when the deletion is cancelled.
    f.kms
        .schedule_key_deletion(&f.caller, &key, Some(30))
        .await
        .unwrap();
    f.clock.advance(366 * DAY);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 0);
    let status = f
        .kms
        .get_key_rotation_status(&f.caller, &key)
        .await
        .unwrap();
    assert!(status.rotation.is_none());
    assert!(matches!(
        f.kms.rotate_key_on_demand(&f.caller, &key).await,
        Err(KmsError::InvalidState(_))
    ));
    assert!(matches!(
        f.kms.enable_key_rotation(&f.caller, &key, None).await,
        Err(KmsError::InvalidState(_))
    ));
    f.kms.cancel_key_deletion(&f.caller, &key).await.unwrap();
    assert!(f
        .kms
        .get_key_rotation_status(&f.caller, &key)
        .await
        .unwrap()
        .rotation
        .is_some());
    f.kms.enable_key(&f.caller, &key).await.unwrap();
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 1);
    let now = f.clock.now();

    // A new period applies to the running interval: 365 → 90 after 100 days
    // makes the key due at once.
    f.clock.advance(100 * DAY);
    f.kms
        .enable_key_rotation(&f.caller, &key, Some(90))
        .await
        .unwrap();
    let r = stored(&f, &key).await.rotation.unwrap();
    assert_eq!((r.period_days, r.next_rotation), (90, now.plus_days(90)));
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 1);

    // On-demand rotations leave the schedule alone.
    let before = stored(&f, &key).await.rotation;
    f.kms.rotate_key_on_demand(&f.caller, &key).await.unwrap();
    let k = stored(&f, &key).await;
    assert_eq!(k.rotation, before);
    assert_eq!(k.on_demand_rotations, 1);
    assert_eq!(
        k.current_version().unwrap().rotation,
        Some(RotationType::OnDemand)
    );

    // Disabling rotation stops it.
    f.kms.disable_key_rotation(&f.caller, &key).await.unwrap();
    f.clock.advance(3000 * DAY);
    assert_eq!(f.kms.execute_due_rotations().await.unwrap(), 0);
    assert_eq!(stored(&f, &key).await.versions.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_whose_material_cannot_rotate_are_refused() {
    use keywarden_core::model::{KeyManager, KeyState, KeyVersion};
    let f = fixture().await;
    // Keys with imported material cannot be created yet; store such records
    // directly to check the rules written for them.
    let mut external = stored(&f, &new_key(&f).await).await;
    external.key_id = keywarden_core::ids::KeyId::from_bytes([0xe1; 16]);
    external.origin = Origin::External;
    external.state = KeyState::Enabled;
    external.versions = vec![KeyVersion {
        version: 1,
        ..external.versions[0].clone()
    }];
    f.store.insert_key(&external).await.unwrap();
    let mut default_key = external.clone();
    default_key.key_id = keywarden_core::ids::KeyId::from_bytes([0xa1; 16]);
    default_key.origin = Origin::AwsKms;
    default_key.key_manager = KeyManager::Aws;
    f.store.insert_key(&default_key).await.unwrap();

    let ext = KeyRef::Id(external.key_id);
    let unsupported = |r: Result<(), KmsError>| matches!(r, Err(KmsError::Unsupported(_)));
    assert!(unsupported(
        f.kms
            .enable_key_rotation(&f.caller, &ext, None)
            .await
            .map(|_| ())
    ));
    assert!(unsupported(
        f.kms.disable_key_rotation(&f.caller, &ext).await
    ));
    assert!(unsupported(
        f.kms
            .rotate_key_on_demand(&f.caller, &ext)
            .await
            .map(|_| ())
    ));
    assert!(unsupported(
        f.kms
            .get_key_rotation_status(&f.caller, &ext)
            .await
            .map(|_| ())
    ));
    assert!(unsupported(
        f.kms
            .list_key_rotations(&f.caller, &ext, false, None, None)
            .await
            .map(|_| ())
    ));

    // Default keys: the system owns their rotation; reading it is fine.
    let dflt = KeyRef::Id(default_key.key_id);
    assert!(unsupported(
        f.kms
            .enable_key_rotation(&f.caller, &dflt, None)
            .await
            .map(|_| ())
    ));
    assert!(unsupported(
        f.kms
            .rotate_key_on_demand(&f.caller, &dflt)
            .await
            .map(|_| ())
    ));
    f.kms
        .get_key_rotation_status(&f.caller, &dflt)
        .await
        .unwrap();
}
