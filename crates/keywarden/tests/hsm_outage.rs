//! An HSM that becomes unreachable while keys are in use, and comes back:
//! the real SoftHSM2 protector behind a switch that makes every call
//! answer `ProtectorError::Unavailable` (what the PKCS#11 protector answers
//! when its token cannot be reached; its own reconnection after a lost
//! session or a token that appears later is tested in
//! `keywarden-protector-pkcs11/tests`). Shows what the service does with
//! it: that store's keys are unavailable (`KeyUnavailableException` on the
//! wire, pinned in the server's error table), its CreateKey is refused
//! (`CustomKeyStoreInvalidStateException`), every other key keeps working,
//! and service resumes without a restart, cached key handles included.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use keywarden_core::clock::ManualClock;
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::model::ConnectionState;
use keywarden_core::model::Origin;
use keywarden_core::ops::create_key::CreateKeyRequest;
use keywarden_core::ops::custom_key_stores::CustomKeyStore;
use keywarden_core::protector::{KeyBinding, KeyHandle, KeyProtector, ProtectorError, Sealed};
use keywarden_core::secret::Secret;
use keywarden_core::KmsError;
use keywarden_protector_pkcs11::{Pkcs11Config, Pkcs11Protector};
use keywarden_store_sqlite::SqliteStore;
use keywarden_testkit::clock::{account, node, START};
use keywarden_testkit::softhsm;
use zeroize::Zeroizing;

use softhsm::MODULE;

/// The real protector, and a switch standing for "the HSM is reachable".
struct Switched {
    inner: Arc<Pkcs11Protector>,
    up: Arc<AtomicBool>,
}

struct SwitchedHandle {
    inner: Box<dyn KeyHandle>,
    up: Arc<AtomicBool>,
}

fn outage() -> ProtectorError {
    ProtectorError::Unavailable("HSM unreachable (injected)".into())
}

impl KeyHandle for SwitchedHandle {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, ProtectorError> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(outage());
        }
        self.inner.seal(aad, plaintext)
    }
    fn open(&self, nonce: &[u8; 12], aad: &[u8], ct: &[u8]) -> Result<Secret, ProtectorError> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(outage());
        }
        self.inner.open(nonce, aad, ct)
    }
}

impl KeyProtector for Switched {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn generate(&self, binding: KeyBinding<'_>) -> Result<Vec<u8>, ProtectorError> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(outage());
        }
        self.inner.generate(binding)
    }
    fn load(
        &self,
        binding: KeyBinding<'_>,
        stored: &[u8],
    ) -> Result<Box<dyn KeyHandle>, ProtectorError> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(outage());
        }
        Ok(Box::new(SwitchedHandle {
            inner: self.inner.load(binding, stored)?,
            up: self.up.clone(),
        }))
    }
    fn available(&self) -> bool {
        self.up.load(Ordering::SeqCst) && self.inner.available()
    }
}

#[tokio::test]
async fn an_unreachable_hsm_stops_only_its_keys_and_service_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = softhsm::token(tmp.path(), "kw-outage", "1234");
    std::env::set_var("SOFTHSM2_CONF", &conf);

    let up = Arc::new(AtomicBool::new(true));
    let hsm = Arc::new(Switched {
        inner: Arc::new(
            Pkcs11Protector::new(Pkcs11Config {
                module: MODULE.into(),
                token_label: "kw-outage".into(),
                pin: Zeroizing::new("1234".into()),
                sessions: 2,
                protector_id: "hsm:cks-outage".into(),
            })
            .unwrap(),
        ),
        up: up.clone(),
    });
    let t0 = START;
    let kms = node(
        Arc::new(SqliteStore::open(&tmp.path().join("k.db")).unwrap()),
        Arc::new(ManualClock::new(t0)),
    )
    .with_custom_key_store(CustomKeyStore {
        id: "cks-outage".into(),
        name: "outage".into(),
        created_at: t0,
        protector: hsm.clone(),
    })
    .unwrap();
    let caller = account(&kms, "t").await;
    let request = |origin, store: Option<&str>| CreateKeyRequest {
        description: String::new(),
        origin,
        tags: vec![],
        policy: None,
        bypass_policy_lockout_safety_check: false,
        custom_key_store_id: store.map(str::to_owned),
        key_spec: keywarden_core::key_spec::KeySpec::SymmetricDefault,
        key_usage: None,
        multi_region: false,
    };
    let ctx = EncryptionContext::empty();
    let hsm_key = kms
        .create_key(&caller, request(Origin::AwsCloudHsm, Some("cks-outage")))
        .await
        .unwrap();
    let soft_key = kms
        .create_key(&caller, request(Origin::AwsKms, None))
        .await
        .unwrap();
    let (hsm_ref, soft_ref) = (KeyRef::Id(hsm_key.key_id), KeyRef::Id(soft_key.key_id));
    // Used once, so its handle is cached.
    let (_, hsm_blob) = kms
        .encrypt(&caller, &hsm_ref, b"in hsm", &ctx, false)
        .await
        .unwrap();
    let (_, soft_blob) = kms
        .encrypt(&caller, &soft_ref, b"in soft", &ctx, false)
        .await
        .unwrap();

    // The HSM goes away.
    up.store(false, Ordering::SeqCst);
    let unavailable = |r: Result<_, KmsError>| {
        assert!(
            matches!(r, Err(KmsError::Protector(ProtectorError::Unavailable(_)))),
            "expected Unavailable (KeyUnavailableException), got {:?}",
            r.map(|_| ())
        )
    };
    unavailable(
        kms.encrypt(&caller, &hsm_ref, b"x", &ctx, false)
            .await
            .map(|_| ()),
    );
    unavailable(
        kms.decrypt(&caller, &hsm_blob, &ctx, None, false)
            .await
            .map(|_| ()),
    );
    unavailable(
        kms.generate_data_key(&caller, &hsm_ref, &ctx, 32, false)
            .await
            .map(|_| ()),
    );
    let err = kms
        .create_key(&caller, request(Origin::AwsCloudHsm, Some("cks-outage")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KmsError::CustomKeyStoreInvalidState(_)),
        "{err:?}"
    );
    let stores = kms
        .describe_custom_key_stores(&caller, None, None, None, None)
        .await
        .unwrap();
    assert_eq!(stores.items[0].state, ConnectionState::Disconnected);
    // Everything else keeps working, the HSM key's metadata included.
    let (_, plain) = kms
        .decrypt(&caller, &soft_blob, &ctx, None, false)
        .await
        .unwrap();
    assert_eq!(plain.expose(), b"in soft");
    kms.encrypt(&caller, &soft_ref, b"still", &ctx, false)
        .await
        .unwrap();
    kms.describe_key(&caller, &hsm_ref).await.unwrap();

    // It comes back: service resumes without a restart.
    up.store(true, Ordering::SeqCst);
    let (_, plain) = kms
        .decrypt(&caller, &hsm_blob, &ctx, None, false)
        .await
        .unwrap();
    assert_eq!(plain.expose(), b"in hsm");
    kms.encrypt(&caller, &hsm_ref, b"again", &ctx, false)
        .await
        .unwrap();
    assert!(
        kms.describe_custom_key_stores(&caller, None, None, None, None)
            .await
            .unwrap()
            .items[0]
            .state
            == ConnectionState::Connected
    );
    kms.create_key(&caller, request(Origin::AwsCloudHsm, Some("cks-outage")))
        .await
        .unwrap();
}
