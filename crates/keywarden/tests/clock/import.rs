//! Imported key material (BYOK) through the injected clock, on the real
//! SQLite store, software protector and importer: material expires at its
//! valid-to and not before, exactly once (also with two executors), the key
//! then refuses to decrypt until the same material is imported again, other
//! material is refused for good, and import tokens expire after 24 hours.

use std::sync::Arc;

use aws_lc_rs::rand::SecureRandom as _;
use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
use keywarden_core::clock::{Clock, ManualClock, UnixMillis};
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::model::{KeyState, MaterialExpiration, Origin};
use keywarden_core::store::{KeyStore, Store};
use keywarden_core::{Kms, KmsError};
use keywarden_protector_soft::{Importer, SoftKeyImporter, SoftwareProtector};
use keywarden_store_sqlite::SqliteStore;
use keywarden_testkit::clock::{self, key_request, START};

const DAY: i64 = UnixMillis::DAY;
/// The software importer (BYOK) under the fixture's root key.
fn importer() -> Arc<SoftKeyImporter> {
    let root = clock::root_key();
    let protector = Arc::new(SoftwareProtector::new(root.clone()));
    Arc::new(SoftKeyImporter::new(
        Arc::new(Importer::new(root)),
        protector,
    ))
}

/// One service ("node") on `store` that imports key material.
fn node(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Kms {
    clock::node(store, clock).with_importer(importer())
}

/// The fixture of these tests: a node on the plain SQLite store.
type Fixture = clock::Fixture<SqliteStore>;

async fn fixture() -> Fixture {
    clock::fixture_with(START, |store| store, |kms| kms.with_importer(importer())).await
}

async fn create(f: &Fixture, origin: Origin) -> KeyRef {
    let key = f
        .kms
        .create_key(&f.caller, key_request(origin))
        .await
        .unwrap();
    KeyRef::Id(key.key_id)
}

fn material() -> [u8; 32] {
    let mut m = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut m).unwrap();
    m
}

/// GetParametersForImport (RSAES_OAEP_SHA_256, RSA_2048), then the
/// material wrapped as an AWS client does; returns (token, encrypted).
async fn wrapped(f: &Fixture, key: &KeyRef, material: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (_, params) = f
        .kms
        .get_parameters_for_import(&f.caller, key, "RSAES_OAEP_SHA_256", "RSA_2048")
        .await
        .unwrap();
    assert_eq!(params.valid_to, UnixMillis(f.clock.now().0 + DAY));
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&params.public_key).unwrap())
            .unwrap();
    let mut out = vec![0u8; public.ciphertext_size()];
    let len = public
        .encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
        .unwrap()
        .len();
    out.truncate(len);
    (params.import_token, out)
}

async fn import(
    f: &Fixture,
    key: &KeyRef,
    token: &[u8],
    encrypted: &[u8],
    expiration: MaterialExpiration,
) -> Result<(), KmsError> {
    f.kms
        .import_key_material(&f.caller, key, token, encrypted, expiration)
        .await
        .map(|_| ())
}

async fn encrypt(f: &Fixture, key: &KeyRef) -> Result<Vec<u8>, KmsError> {
    f.kms
        .encrypt(&f.caller, key, b"hello", &EncryptionContext::empty(), false)
        .await
        .map(|(_, blob)| blob)
}

async fn decrypt(f: &Fixture, blob: &[u8]) -> Result<Vec<u8>, KmsError> {
    f.kms
        .decrypt(&f.caller, blob, &EncryptionContext::empty(), None, false)
        .await
        .map(|(_, p)| p.expose().to_vec())
}

async fn state(f: &Fixture, key: &KeyRef) -> KeyState {
    f.kms.describe_key(&f.caller, key).await.unwrap().state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_deletion_and_reimport_of_the_same_material() {
    let f = fixture().await;
    let key = create(&f, Origin::External).await;
    assert_eq!(state(&f, &key).await, KeyState::PendingImport);
    assert!(matches!(
        encrypt(&f, &key).await,
        Err(KmsError::InvalidState(_))
    ));
    // Rotation of imported material is refused.
    assert!(matches!(
        f.kms.rotate_key_on_demand(&f.caller, &key).await,
        Err(KmsError::Unsupported(_))
    ));

    let m = material();
    let (token, enc) = wrapped(&f, &key, &m).await;
    let valid_to = UnixMillis(START.0 + 10 * DAY);
    import(
        &f,
        &key,
        &token,
        &enc,
        MaterialExpiration::ValidTo(valid_to),
    )
    .await
    .unwrap();
    assert_eq!(state(&f, &key).await, KeyState::Enabled);
    let described = f.kms.describe_key(&f.caller, &key).await.unwrap();
    assert_eq!(
        described.import.as_ref().unwrap().expiration,
        Some(MaterialExpiration::ValidTo(valid_to))
    );
    let blob = encrypt(&f, &key).await.unwrap();
    assert_eq!(decrypt(&f, &blob).await.unwrap(), b"hello");

    // Not before its valid-to...
    f.clock.set(UnixMillis(valid_to.0 - 1));
    assert_eq!(f.kms.execute_material_expirations().await.unwrap(), 0);
    assert_eq!(decrypt(&f, &blob).await.unwrap(), b"hello");
    // ...at it, exactly once.
    f.clock.set(valid_to);
    assert_eq!(f.kms.execute_material_expirations().await.unwrap(), 1);
    assert_eq!(f.kms.execute_material_expirations().await.unwrap(), 0);
    assert_eq!(state(&f, &key).await, KeyState::PendingImport);
    assert!(matches!(
        decrypt(&f, &blob).await,
        Err(KmsError::InvalidState(_))
    ));
    let KeyRef::Id(id) = key else { unreachable!() };
    let stored = f
        .store
        .get_key(&f.caller.account_id, &id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.versions.iter().all(|v| v.material.is_empty()),
        "the wrapped material must be gone from the store"
    );
    assert_eq!(stored.import.as_ref().unwrap().expiration, None);

    // The first token expired long ago.
    assert!(matches!(
        import(&f, &key, &token, &enc, MaterialExpiration::DoesNotExpire).await,
        Err(KmsError::ExpiredImportToken(_))
    ));

    // The same material under new parameters: old ciphertexts decrypt again.
    let (token2, enc2) = wrapped(&f, &key, &m).await;
    import(&f, &key, &token2, &enc2, MaterialExpiration::DoesNotExpire)
        .await
        .unwrap();
    assert_eq!(state(&f, &key).await, KeyState::Enabled);
    assert_eq!(decrypt(&f, &blob).await.unwrap(), b"hello");
    // Material that does not expire never does.
    f.clock.set(UnixMillis(valid_to.0 + 1000 * DAY));
    assert_eq!(f.kms.execute_material_expirations().await.unwrap(), 0);
    assert_eq!(decrypt(&f, &blob).await.unwrap(), b"hello");

    // Any other material is refused, before and after a deletion.
    let (token3, enc3) = wrapped(&f, &key, &material()).await;
    assert!(matches!(
        import(&f, &key, &token3, &enc3, MaterialExpiration::DoesNotExpire).await,
        Err(KmsError::IncorrectKeyMaterial(_))
    ));
    f.kms
        .delete_imported_key_material(&f.caller, &key)
        .await
        .unwrap();
    assert_eq!(state(&f, &key).await, KeyState::PendingImport);
    assert!(matches!(
        decrypt(&f, &blob).await,
        Err(KmsError::InvalidState(_))
    ));
    assert!(matches!(
        import(&f, &key, &token3, &enc3, MaterialExpiration::DoesNotExpire).await,
        Err(KmsError::IncorrectKeyMaterial(_))
    ));
    assert_eq!(state(&f, &key).await, KeyState::PendingImport);
    import(&f, &key, &token2, &enc2, MaterialExpiration::DoesNotExpire)
        .await
        .unwrap_err(); // token2 is more than 24 h old by now
    let (token4, enc4) = wrapped(&f, &key, &m).await;
    import(&f, &key, &token4, &enc4, MaterialExpiration::DoesNotExpire)
        .await
        .unwrap();
    assert_eq!(decrypt(&f, &blob).await.unwrap(), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_tokens_expire_after_24_hours() {
    let f = fixture().await;
    let key = create(&f, Origin::External).await;
    let m = material();
    let (token, enc) = wrapped(&f, &key, &m).await;
    f.clock.set(UnixMillis(START.0 + DAY + 1));
    assert!(matches!(
        import(&f, &key, &token, &enc, MaterialExpiration::DoesNotExpire).await,
        Err(KmsError::ExpiredImportToken(_))
    ));
    // Valid up to and including its valid-to.
    f.clock.set(UnixMillis(START.0 + DAY));
    import(&f, &key, &token, &enc, MaterialExpiration::DoesNotExpire)
        .await
        .unwrap();
    // A token of another key is invalid here.
    let other = create(&f, Origin::External).await;
    assert!(matches!(
        import(&f, &other, &token, &enc, MaterialExpiration::DoesNotExpire).await,
        Err(KmsError::InvalidImportToken(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_executors_expire_material_once() {
    let f = fixture().await;
    let second = node(f.store.clone(), f.clock.clone());
    let mut keys = Vec::new();
    for _ in 0..3 {
        let key = create(&f, Origin::External).await;
        let (token, enc) = wrapped(&f, &key, &material()).await;
        import(
            &f,
            &key,
            &token,
            &enc,
            MaterialExpiration::ValidTo(UnixMillis(START.0 + DAY)),
        )
        .await
        .unwrap();
        keys.push(key);
    }
    f.clock.set(UnixMillis(START.0 + DAY));
    let (a, b) = tokio::join!(
        f.kms.execute_material_expirations(),
        second.execute_material_expirations()
    );
    assert_eq!(a.unwrap() + b.unwrap(), 3);
    for key in &keys {
        assert_eq!(state(&f, key).await, KeyState::PendingImport);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_operations_need_an_external_key() {
    let f = fixture().await;
    let generated = create(&f, Origin::AwsKms).await;
    assert!(matches!(
        f.kms
            .get_parameters_for_import(&f.caller, &generated, "RSAES_OAEP_SHA_256", "RSA_2048")
            .await,
        Err(KmsError::Unsupported(_))
    ));
    assert!(matches!(
        f.kms
            .delete_imported_key_material(&f.caller, &generated)
            .await,
        Err(KmsError::Unsupported(_))
    ));
    let external = create(&f, Origin::External).await;
    assert!(matches!(
        f.kms
            .get_parameters_for_import(&f.caller, &external, "RSAES_PKCS1_V1_5", "RSA_2048")
            .await,
        Err(KmsError::Unsupported(_))
    ));
    assert!(matches!(
        f.kms
            .get_parameters_for_import(&f.caller, &external, "RSAES_OAEP_SHA_256", "SM2")
            .await,
        Err(KmsError::Unsupported(_))
    ));
    f.kms
        .schedule_key_deletion(&f.caller, &external, Some(7))
        .await
        .unwrap();
    assert!(matches!(
        f.kms
            .get_parameters_for_import(&f.caller, &external, "RSAES_OAEP_SHA_256", "RSA_2048")
            .await,
        Err(KmsError::InvalidState(_))
    ));
    // Cancelled, a key that never had material waits for import again.
    let back = f
        .kms
        .cancel_key_deletion(&f.caller, &external)
        .await
        .unwrap();
    assert_eq!(back.state, KeyState::PendingImport);
}
