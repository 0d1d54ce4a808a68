//! The key-protector seam: where key material lives and who runs the cipher.
//!
//! A protector turns a new key version into a stored form (wrapped bytes for
//! software keys, an object reference for HSM keys) and later turns that
//! stored form back into a [`KeyHandle`] that seals and opens. Software
//! handles hold unwrapped material only as long as the handle lives; HSM
//! handles perform the operation in the HSM.

use std::fmt;

use crate::ids::KeyId;
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
    /// The material decrypted but is not 256-bit symmetric material.
    #[error("the imported key material is not 256-bit symmetric key material")]
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
    /// not have expired at `now`) and returns the material's stored form for
    /// `binding` and its fingerprint.
    async fn import(
        &self,
        binding: KeyBinding<'_>,
        import_token: &[u8],
        encrypted: &[u8],
        now: crate::clock::UnixMillis,
    ) -> Result<ImportedMaterial, ImportError>;
}
