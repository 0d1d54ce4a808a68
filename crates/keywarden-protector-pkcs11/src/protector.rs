//! The HSM protector and its key handles.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState};
use cryptoki::types::Ulong;
use keywarden_core::key_spec::{KeySpec, KeyUsageType};
use keywarden_core::protector::{
    GeneratedMaterial, KeyBinding, KeyHandle, KeyProtector, ProtectorError, Sealed, SpecHandle,
};
use keywarden_core::secret::Secret;

use crate::config::Pkcs11Config;
use crate::connection::{classify, Connection, Failure};
use crate::{spec, stored};

/// How often a disconnected protector tries the token again.
pub const DEFAULT_RECONNECT_INTERVAL: Duration = Duration::from_secs(1);
const KEY_LEN: u64 = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const TAG_BITS: u64 = 128;

/// Keys generated and kept in a PKCS#11 token; the token runs AES-256-GCM.
///
/// Sessions come from a pool of at most [`Pkcs11Config::sessions`]. If the
/// token cannot be reached at construction the protector is still built,
/// disconnected, and connects on first use. A session or device error
/// (token removed, session closed, login lost) drops the whole pool; the
/// call is retried once on a fresh connection, and later calls reconnect,
/// at most once per reconnect interval while the token stays away. A token
/// that refuses the PIN is not retried (that could lock it).
pub struct Pkcs11Protector {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: Connection,
    pub(crate) rng: SystemRandom,
}

impl fmt::Debug for Pkcs11Protector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Protector")
            .field("config", self.inner.conn.config())
            .finish_non_exhaustive()
    }
}

/// Why [`Pkcs11Protector::open`] failed.
#[derive(Debug)]
pub enum OpenError {
    /// The token refused the PIN.
    LoginRefused,
    /// The module, the token or a session could not be had.
    Unavailable(ProtectorError),
}

impl Pkcs11Protector {
    /// Loads the module, finds the token and logs in now, failing if any
    /// of it fails (an account connecting its custom key store wants to
    /// know): [`OpenError::LoginRefused`] for a refused PIN.
    pub fn open(config: Pkcs11Config) -> Result<Self, OpenError> {
        if config.protector_id.is_empty() || config.token_label.is_empty() {
            return Err(OpenError::Unavailable(ProtectorError::Unavailable(
                "pkcs11 configuration needs a protector id and a token label".into(),
            )));
        }
        let conn = Connection::new(config, DEFAULT_RECONNECT_INTERVAL);
        if let Err(e) = conn.connect_now() {
            return Err(if conn.login_refused() {
                OpenError::LoginRefused
            } else {
                OpenError::Unavailable(e)
            });
        }
        Ok(Pkcs11Protector {
            inner: Arc::new(Inner {
                conn,
                rng: SystemRandom::new(),
            }),
        })
    }

    /// Loads the module, finds the token by label and logs in. A token that
    /// cannot be reached is not an error here (the protector reconnects on
    /// use, see [`KeyProtector::available`]); only an unusable configuration is.
    pub fn new(config: Pkcs11Config) -> Result<Self, ProtectorError> {
        Self::with_reconnect_interval(config, DEFAULT_RECONNECT_INTERVAL)
    }

    /// [`Pkcs11Protector::new`] with another rate limit for reconnection
    /// attempts (tests use zero).
    pub fn with_reconnect_interval(
        config: Pkcs11Config,
        interval: Duration,
    ) -> Result<Self, ProtectorError> {
        if config.protector_id.is_empty() || config.token_label.is_empty() {
            return Err(ProtectorError::Unavailable(
                "pkcs11 configuration needs a protector id and a token label".into(),
            ));
        }
        let conn = Connection::new(config, interval);
        if let Err(e) = conn.connect_now() {
            tracing::warn!(error = %e, "pkcs11 token not reachable at start; will reconnect on use");
        }
        Ok(Pkcs11Protector {
            inner: Arc::new(Inner {
                conn,
                rng: SystemRandom::new(),
            }),
        })
    }
}

impl Inner {
    /// Runs `op` on a pooled session; after a connection failure, reconnects
    /// and runs it once more.
    pub(crate) fn with_session<T>(
        &self,
        mut op: impl FnMut(&Session, u64) -> Result<T, Failure>,
    ) -> Result<T, ProtectorError> {
        let mut retried = false;
        loop {
            let lease = self.conn.acquire()?;
            match op(&lease.session, lease.generation) {
                Ok(v) => {
                    self.conn.release(lease);
                    return Ok(v);
                }
                Err(Failure::Operation(ProtectorError::Authentication)) => {
                    // C_Decrypt ended the operation; the session is clean.
                    self.conn.release(lease);
                    return Err(ProtectorError::Authentication);
                }
                Err(Failure::Operation(e)) => {
                    self.conn.discard(lease, false);
                    return Err(e);
                }
                Err(Failure::Connection(e)) => {
                    self.conn.discard(lease, true);
                    if retried {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }

    /// A fresh random tail for a `CKA_ID`.
    pub(crate) fn nonce(&self) -> Result<[u8; stored::NONCE_LEN], ProtectorError> {
        let mut nonce = [0u8; stored::NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| ProtectorError::Crypto("random"))?;
        Ok(nonce)
    }

    /// The one object of `class` with `CKA_ID` `id`, if any.
    pub(crate) fn find(
        &self,
        session: &Session,
        class: ObjectClass,
        id: &[u8],
    ) -> Result<Option<ObjectHandle>, Failure> {
        let found = session
            .find_objects(&[Attribute::Class(class), Attribute::Id(id.to_vec())])
            .map_err(|e| classify(&e, "pkcs11 find object"))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            // The random tail of the id makes this a corrupted token.
            _ => Err(Failure::Operation(ProtectorError::Crypto(
                "pkcs11 duplicate key objects",
            ))),
        }
    }
}

impl KeyProtector for Pkcs11Protector {
    fn id(&self) -> &str {
        &self.inner.conn.config().protector_id
    }

    fn generate(&self, binding: KeyBinding<'_>) -> Result<Vec<u8>, ProtectorError> {
        let nonce = self.inner.nonce()?;
        let id = stored::object_id(binding, &nonce);
        let label = format!("keywarden/{}#{}", binding.key_id, binding.version);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::ValueLen(Ulong::from(KEY_LEN)),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Sign(false),
            Attribute::Verify(false),
            Attribute::Derive(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.into_bytes()),
        ];
        self.inner.with_session(|session, _| {
            session
                .generate_key(&Mechanism::AesKeyGen, &template)
                .map_err(|e| classify(&e, "pkcs11 generate key"))
        })?;
        Ok(stored::encode(&id))
    }

    fn load(
        &self,
        binding: KeyBinding<'_>,
        stored: &[u8],
    ) -> Result<Box<dyn KeyHandle>, ProtectorError> {
        let id = stored::decode(binding, stored)?.to_vec();
        let key = TokenObject::find(&self.inner, ObjectClass::SECRET_KEY, id)?;
        Ok(Box::new(Pkcs11Handle { key }))
    }

    /// Destroys every object whose `CKA_ID` the stored form names: the AES
    /// key, the HMAC key, or both halves of a key pair (this protector
    /// keeps only the private half on the token, but a public half made
    /// by another version or tool under the same `CKA_ID` goes too).
    fn destroy(&self, binding: KeyBinding<'_>, stored: &[u8]) -> Result<(), ProtectorError> {
        let id = stored::decode_any(binding, stored)?;
        self.inner.with_session(|session, _| {
            let objects = session
                .find_objects(&[Attribute::Id(id.to_vec())])
                .map_err(|e| classify(&e, "pkcs11 find object"))?;
            for object in objects {
                match session.destroy_object(object) {
                    // Destroyed concurrently: the goal is reached.
                    Ok(()) | Err(CkError::Pkcs11(RvError::ObjectHandleInvalid, _)) => {}
                    Err(e) => return Err(classify(&e, "pkcs11 destroy object")),
                }
            }
            Ok(())
        })
    }

    fn generate_spec(
        &self,
        binding: KeyBinding<'_>,
        spec: KeySpec,
    ) -> Result<GeneratedMaterial, ProtectorError> {
        if spec == KeySpec::SymmetricDefault {
            return Ok(GeneratedMaterial {
                stored: self.generate(binding)?,
                public_key: None,
            });
        }
        spec::generate(&self.inner, binding, spec)
    }

    fn load_spec(
        &self,
        binding: KeyBinding<'_>,
        spec: KeySpec,
        usage: KeyUsageType,
        stored: &[u8],
    ) -> Result<SpecHandle, ProtectorError> {
        spec::load(&self.inner, binding, spec, usage, stored)
    }

    fn available(&self) -> bool {
        self.inner.conn.available()
    }
}

/// A key object in the token: its class, its `CKA_ID` and the object
/// handle found for the current connection (found again after a
/// reconnection).
pub(crate) struct TokenObject {
    pub(crate) inner: Arc<Inner>,
    class: ObjectClass,
    id: Vec<u8>,
    object: Mutex<(u64, ObjectHandle)>,
}

impl TokenObject {
    /// Finds the object of `class` with `CKA_ID` `id`; a missing object is
    /// [`ProtectorError::Crypto`] (the key's material is gone).
    pub(crate) fn find(
        inner: &Arc<Inner>,
        class: ObjectClass,
        id: Vec<u8>,
    ) -> Result<Self, ProtectorError> {
        let (generation, object) =
            inner.with_session(
                |session, generation| match inner.find(session, class, &id)? {
                    Some(object) => Ok((generation, object)),
                    None => Err(Failure::Operation(ProtectorError::Crypto(
                        "pkcs11 key object not found",
                    ))),
                },
            )?;
        Ok(TokenObject {
            inner: Arc::clone(inner),
            class,
            id,
            object: Mutex::new((generation, object)),
        })
    }

    /// Runs `op` with the object's handle on a pooled session (reconnecting
    /// as [`Inner::with_session`] does).
    pub(crate) fn with_object<T>(
        &self,
        mut op: impl FnMut(&Session, ObjectHandle) -> Result<T, Failure>,
    ) -> Result<T, ProtectorError> {
        self.inner.with_session(|session, generation| {
            let object = self.object(session, generation)?;
            op(session, object)
        })
    }

    /// The object's handle in the session of connection `generation`.
    pub(crate) fn object(
        &self,
        session: &Session,
        generation: u64,
    ) -> Result<ObjectHandle, Failure> {
        let mut cached = self.object.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.0 == generation {
            return Ok(cached.1);
        }
        match self.inner.find(session, self.class, &self.id)? {
            Some(object) => {
                *cached = (generation, object);
                Ok(object)
            }
            None => Err(Failure::Operation(ProtectorError::Crypto(
                "pkcs11 key object not found",
            ))),
        }
    }

    /// Classifies a failure of an operation with the cached key handle. A
    /// private object is invisible once the login is gone (another session
    /// of this process logged out, or the token restarted), and the token
    /// then calls the handle invalid: that is a lost connection, not a
    /// missing key.
    pub(crate) fn failure(&self, session: &Session, e: &CkError, what: &'static str) -> Failure {
        if let CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _) = e {
            let logged_in = session.get_session_info().is_ok_and(|info| {
                matches!(
                    info.session_state(),
                    SessionState::RwUser | SessionState::RoUser
                )
            });
            if !logged_in {
                tracing::warn!(operation = what, "pkcs11 login lost; reconnecting");
                return Failure::Connection(ProtectorError::Unavailable(
                    "pkcs11 login lost".into(),
                ));
            }
            // Find the object again next time.
            self.object.lock().unwrap_or_else(PoisonError::into_inner).0 = 0;
        }
        classify(e, what)
    }
}

/// An AES key version in the token.
struct Pkcs11Handle {
    key: TokenObject,
}

impl KeyHandle for Pkcs11Handle {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, ProtectorError> {
        // The caller picks the IV: tokens such as SoftHSM2 do not generate
        // GCM IVs, and a random 96-bit IV is what the soft protector uses.
        let mut nonce = [0u8; NONCE_LEN];
        self.key
            .inner
            .rng
            .fill(&mut nonce)
            .map_err(|_| ProtectorError::Crypto("random"))?;
        let ciphertext = self.key.inner.with_session(|session, generation| {
            let object = self.key.object(session, generation)?;
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, aad, Ulong::from(TAG_BITS))
                .map_err(|_| Failure::Operation(ProtectorError::Crypto("pkcs11 gcm params")))?;
            session
                .encrypt(&Mechanism::AesGcm(params), object, plaintext)
                .map_err(|e| self.key.failure(session, &e, "pkcs11 encrypt"))
        })?;
        if ciphertext.len() != plaintext.len() + TAG_LEN {
            return Err(ProtectorError::Crypto("pkcs11 encrypt length"));
        }
        Ok(Sealed { nonce, ciphertext })
    }

    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Secret, ProtectorError> {
        if ciphertext.len() < TAG_LEN {
            return Err(ProtectorError::Authentication);
        }
        self.key.inner.with_session(|session, generation| {
            let object = self.key.object(session, generation)?;
            let mut iv = *nonce;
            let params = GcmParams::new(&mut iv, aad, Ulong::from(TAG_BITS))
                .map_err(|_| Failure::Operation(ProtectorError::Crypto("pkcs11 gcm params")))?;
            match session.decrypt(&Mechanism::AesGcm(params), object, ciphertext) {
                Ok(plaintext) => Ok(Secret::new(plaintext)),
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                    _,
                )) => Err(Failure::Operation(ProtectorError::Authentication)),
                // SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR
                // from C_Decrypt itself (after C_DecryptInit accepted key
                // and parameters), and ends the operation.
                Err(CkError::Pkcs11(RvError::GeneralError, Function::Decrypt)) => {
                    Err(Failure::Operation(ProtectorError::Authentication))
                }
                Err(e) => Err(self.key.failure(session, &e, "pkcs11 decrypt")),
            }
        })
    }
}
