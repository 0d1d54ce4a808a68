//! The key-protector seam: where key material lives and who runs the cipher.
//!
//! A protector turns a new key version into a stored form (wrapped bytes for
//! software keys, an object reference for HSM keys) and later turns that
//! stored form back into a [`KeyHandle`] that seals and opens. Software
//! handles hold unwrapped material only as long as the handle lives; HSM
//! handles perform the operation in the HSM.

use std::fmt;

use crate::ids::KeyId;
use crate::key_spec::{
    DataKeyPairSpec, EncryptionAlgorithm, KeySpec, KeyUsageType, MacAlgorithm, MessageType,
    SigningAlgorithm,
};
use crate::secret::Secret;

/// Failures of a key protector. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum ProtectorError {
    /// An authentication tag did not verify: wrong key, altered data, wrong AAD.
    #[error("authentication failed")]
    Authentication,
    /// The stored form of the material is malformed.
    #[error("stored key material is malformed")]
    MalformedMaterial,
    /// The protector cannot be reached (HSM down, session lost).
    #[error("key protector unavailable: {0}")]
    Unavailable(String),
    /// The cryptographic library reported an error.
    #[error("cryptographic failure in {0}")]
    Crypto(&'static str),
    /// The protector does not implement this key spec or algorithm (an HSM
    /// without the mechanism). Becomes `UnsupportedOperationException`.
    #[error("{0}")]
    Unsupported(String),
    /// A caller-supplied input (a peer's public key, a ciphertext of the
    /// wrong length) is malformed. Becomes `ValidationException`; the
    /// message names the field, never key material.
    #[error("{0}")]
    InvalidInput(String),
}

/// What a key version's material is bound to. A protector must bind both
/// fields into the stored form, so material cannot be moved between keys or
/// versions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyBinding<'a> {
    /// The key.
    pub key_id: &'a KeyId,
    /// The version.
    pub version: u32,
}

impl fmt::Debug for KeyBinding<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.key_id, self.version)
    }
}

/// The output of [`KeyHandle::seal`]: a 96-bit nonce and the AES-256-GCM
/// ciphertext with its 16-byte tag appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The nonce.
    pub nonce: [u8; 12],
    /// Ciphertext followed by the tag.
    pub ciphertext: Vec<u8>,
}

/// A usable key version: AES-256-GCM under material the caller never sees.
pub trait KeyHandle: Send + Sync {
    /// Encrypts `plaintext` with a fresh random nonce, authenticating `aad`.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, ProtectorError>;

    /// Decrypts and verifies; [`ProtectorError::Authentication`] on any mismatch.
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Secret, ProtectorError>;
}

/// A place where key material is generated and kept.
pub trait KeyProtector: Send + Sync {
    /// Stable identifier recorded with each key version (`"soft"`, ...).
    fn id(&self) -> &str;

    /// Generates new AES-256 material for `binding`; returns its stored form.
    fn generate(&self, binding: KeyBinding<'_>) -> Result<Vec<u8>, ProtectorError>;

    /// Turns a stored form back into a handle.
    fn load(
        &self,
        binding: KeyBinding<'_>,
        stored: &[u8],
    ) -> Result<Box<dyn KeyHandle>, ProtectorError>;

    /// Destroys the material behind a stored form when its key is destroyed
    /// (scheduled deletion): HSM protectors delete the token object. The
    /// default does nothing: software material is gone with its stored
    /// form (crypto-shredding by deleting the row).
    fn destroy(&self, binding: KeyBinding<'_>, stored: &[u8]) -> Result<(), ProtectorError> {
        let _ = (binding, stored);
        Ok(())
    }

    /// Whether the protector can serve requests now (an HSM's
    /// connection state); software protectors always can.
    fn available(&self) -> bool {
        true
    }

    /// Generates material of a spec other than `SYMMETRIC_DEFAULT` (which
    /// is [`KeyProtector::generate`]) for `binding`: the stored form and,
    /// for asymmetric specs, the public key as DER `SubjectPublicKeyInfo`.
    /// May take seconds (RSA-4096); the caller runs it on a blocking pool.
    /// Protectors without such keys answer [`ProtectorError::Unsupported`].
    fn generate_spec(
        &self,
        binding: KeyBinding<'_>,
        spec: KeySpec,
    ) -> Result<GeneratedMaterial, ProtectorError> {
        let _ = binding;
        Err(ProtectorError::Unsupported(format!(
            "This key store does not support keys of KeySpec {spec}"
        )))
    }

    /// Turns a stored form made by [`KeyProtector::generate_spec`] (or an
    /// import) back into a handle for the operations of `usage`.
    fn load_spec(
        &self,
        binding: KeyBinding<'_>,
        spec: KeySpec,
        usage: KeyUsageType,
        stored: &[u8],
    ) -> Result<SpecHandle, ProtectorError> {
        let _ = (binding, usage, stored);
        Err(ProtectorError::Unsupported(format!(
            "This key store does not support keys of KeySpec {spec}"
        )))
    }
}

/// What [`KeyProtector::generate_spec`] made.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedMaterial {
    /// The stored form (wrapped, or an object reference).
    pub stored: Vec<u8>,
    /// DER `SubjectPublicKeyInfo`; `None` for HMAC keys.
    pub public_key: Option<Vec<u8>>,
}

impl fmt::Debug for GeneratedMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedMaterial")
            .field("stored", &format_args!("{} bytes", self.stored.len()))
            .field("public_key", &self.public_key.as_ref().map(Vec::len))
            .finish()
    }
}

/// A loaded key of a spec other than `SYMMETRIC_DEFAULT`, by usage: each
/// variant does the private-key operations of that usage. Public-key
/// operations (Verify, asymmetric Encrypt, Encapsulate) need no handle:
/// they run on the stored public key through [`PublicKeyCrypto`].
pub enum SpecHandle {
    /// `SIGN_VERIFY`.
    Sign(Box<dyn Signer>),
    /// `GENERATE_VERIFY_MAC`.
    Mac(Box<dyn MacKey>),
    /// `ENCRYPT_DECRYPT` with an asymmetric spec.
    Decrypt(Box<dyn Decrypter>),
    /// `KEY_AGREEMENT`.
    Agree(Box<dyn KeyAgreement>),
    /// `ENCAPSULATE_DECAPSULATE`.
    Kem(Box<dyn Decapsulator>),
}

impl fmt::Debug for SpecHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpecHandle::Sign(_) => "SpecHandle::Sign",
            SpecHandle::Mac(_) => "SpecHandle::Mac",
            SpecHandle::Decrypt(_) => "SpecHandle::Decrypt",
            SpecHandle::Agree(_) => "SpecHandle::Agree",
            SpecHandle::Kem(_) => "SpecHandle::Kem",
        })
    }
}

/// A private signing key.
pub trait Signer: Send + Sync {
    /// Signs `message`, read as `message_type` says (the caller has checked
    /// that the algorithm belongs to the key and a DIGEST's length). The
    /// signature is in AWS's encoding (DER for ECDSA and SM2).
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError>;
}

/// An HMAC key.
pub trait MacKey: Send + Sync {
    /// The MAC of `message`.
    fn mac(&self, algorithm: MacAlgorithm, message: &[u8]) -> Result<Vec<u8>, ProtectorError>;

    /// Whether `mac` is the MAC of `message`, compared in constant time.
    fn verify_mac(
        &self,
        algorithm: MacAlgorithm,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, ProtectorError>;
}

/// A private decryption key (RSA-OAEP, SM2PKE).
pub trait Decrypter: Send + Sync {
    /// Decrypts; [`ProtectorError::Authentication`] for any ciphertext that
    /// does not decrypt.
    fn decrypt(
        &self,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Secret, ProtectorError>;
}

/// A private key-agreement key (ECDH).
pub trait KeyAgreement: Send + Sync {
    /// The shared secret with the peer whose public key is `peer` (DER
    /// `SubjectPublicKeyInfo`); [`ProtectorError::InvalidInput`] when it is
    /// malformed or on another curve.
    fn derive(&self, peer: &[u8]) -> Result<Secret, ProtectorError>;
}

/// A private ML-KEM decapsulation key.
pub trait Decapsulator: Send + Sync {
    /// The shared secret in `ciphertext`; [`ProtectorError::InvalidInput`]
    /// when its length is not the parameter set's.
    fn decapsulate(&self, ciphertext: &[u8]) -> Result<Secret, ProtectorError>;
}

/// Public-key cryptography in the clear, and data key pairs: what needs no
/// protected material. Set on the `Kms` by the binary (the core links no
/// cryptographic library).
pub trait PublicKeyCrypto: Send + Sync {
    /// Whether `signature` is valid for `message` under `public_key`.
    /// Malformed signatures are `Ok(false)`.
    fn verify(
        &self,
        spec: KeySpec,
        public_key: &[u8],
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, ProtectorError>;

    /// Encrypts `plaintext` to `public_key` (RSA-OAEP, SM2PKE).
    fn encrypt(
        &self,
        spec: KeySpec,
        public_key: &[u8],
        algorithm: EncryptionAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ProtectorError>;

    /// ML-KEM encapsulation to `public_key`: (ciphertext, shared secret).
    fn encapsulate(
        &self,
        spec: KeySpec,
        public_key: &[u8],
    ) -> Result<(Vec<u8>, Secret), ProtectorError>;

    /// A fresh key pair: (private key as PKCS#8 DER, public key as DER
    /// `SubjectPublicKeyInfo`). May take seconds (RSA-4096).
    fn generate_pair(&self, spec: DataKeyPairSpec) -> Result<(Secret, Vec<u8>), ProtectorError>;
}

/// A cryptographically secure random source.
pub trait SecureRandom: Send + Sync {
    /// Fills `dest` with random bytes.
    fn fill(&self, dest: &mut [u8]) -> Result<(), ProtectorError>;
}

/// Seals small secrets (credential secrets) under the root of trust.
pub trait SecretSealer: Send + Sync {
    /// Encrypts `secret`, binding `aad`.
    fn seal(&self, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, ProtectorError>;

    /// Decrypts what [`SecretSealer::seal`] made with the same `aad`.
    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Secret, ProtectorError>;
}

/// What `GetParametersForImport` hands the caller. Holds no secret: the
/// wrapping private key travels inside the token, sealed under the root of
/// trust, and is never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportParameters {
    /// The RSA public key to wrap the material with (DER `SubjectPublicKeyInfo`).
    pub public_key: Vec<u8>,
    /// The opaque import token `ImportKeyMaterial` must present.
    pub import_token: Vec<u8>,
    /// The token is accepted up to and including this instant.
    pub valid_to: crate::clock::UnixMillis,
}

impl fmt::Debug for ImportParameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportParameters")
            .field(
                "public_key",
                &format_args!("{} bytes", self.public_key.len()),
            )
            .field(
                "import_token",
                &format_args!("{} bytes", self.import_token.len()),
            )
            .field("valid_to", &self.valid_to)
            .finish()
    }
}

/// Imported material, ready to store: its protector's stored form (wrapped,
/// never plaintext) and its fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct ImportedMaterial {
    /// Which protector made `stored` (recorded with the key version).
    pub protector: String,
    /// The stored form, bound to the key and version it was imported for.
    pub stored: Vec<u8>,
    /// A keyed MAC of the plaintext material, bound to the key: equal for
    /// equal material imported into the same key, and revealing nothing
    /// about the material to whoever reads the store. Compared in constant
    /// time.
    pub fingerprint: Vec<u8>,
    /// The public key (DER `SubjectPublicKeyInfo`) of imported asymmetric
    /// material; `None` for symmetric and HMAC material.
    pub public_key: Option<Vec<u8>>,
}

impl fmt::Debug for ImportedMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedMaterial")
            .field("protector", &self.protector)
            .field("stored", &format_args!("{} bytes", self.stored.len()))
            .finish_non_exhaustive()
    }
}

/// Failures of a [`KeyImporter`]. Messages never contain key bytes.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A wrapping algorithm or wrapping key spec AWS defines but this
    /// importer does not implement.
    #[error("{0}")]
    Unsupported(String),
    /// The import token is malformed, altered or was issued for another key.
    #[error("the import token is invalid for this key")]
    InvalidToken,
    /// The import token is authentic but past its valid-to instant.
    #[error("the import token has expired")]
    ExpiredToken,
    /// The encrypted material does not decrypt under the token's wrapping key.
    #[error("the encrypted key material could not be decrypted")]
    InvalidCiphertext,
    /// The material decrypted but is not key material of the key's spec
    /// (256-bit symmetric material, an HMAC key of an allowed length, a
    /// PKCS#8 private key of the spec).
    #[error("the imported key material is not valid key material for the key's KeySpec")]
    IncorrectKeyMaterial,
    /// The importer itself failed (internal).
    #[error(transparent)]
    Failed(ProtectorError),
}

/// Imported key material (BYOK): wrapping parameters out, wrapped material in.
///
/// Implementations may be slow (RSA key generation takes up to seconds) and
/// must not block the async executor: they run such work on a blocking pool.
#[async_trait::async_trait]
pub trait KeyImporter: Send + Sync {
    /// `GetParametersForImport`: a fresh wrapping key pair for `key_id`,
    /// named by its AWS `algorithm` and `spec` names. Names this importer
    /// does not implement are [`ImportError::Unsupported`].
    async fn parameters(
        &self,
        key_id: &KeyId,
        algorithm: &str,
        spec: &str,
        now: crate::clock::UnixMillis,
    ) -> Result<ImportParameters, ImportError>;

    /// `ImportKeyMaterial`: opens `encrypted` with the private key inside
    /// `import_token` (which must have been issued for `binding.key_id` and
    /// not have expired at `now`), checks it is material of `spec`, and
    /// returns the material's stored form for `binding`, its fingerprint and
    /// (asymmetric specs) its public key.
    async fn import(
        &self,
        binding: KeyBinding<'_>,
        spec: KeySpec,
        import_token: &[u8],
        encrypted: &[u8],
        now: crate::clock::UnixMillis,
    ) -> Result<ImportedMaterial, ImportError>;
}
