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
