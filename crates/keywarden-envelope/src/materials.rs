//! Materials: the data key of a message, its encrypted copies, and (signed
//! suites) the signing or verification key. A [`Keyring`] makes and opens
//! data keys; a [`MaterialsManager`] turns a request into complete
//! materials ([`DefaultMaterialsManager`] around one keyring; a caching one
//! in `cache`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::suite::AlgorithmSuite;

/// An encryption context: UTF-8 pairs bound to the message (authenticated,
/// not encrypted), serialised sorted by key.
pub type EncryptionContext = BTreeMap<String, String>;

/// The encryption context key carrying the signing public key of signed
/// suites (base64 of the compressed P-384 point). Keys starting with
/// `aws-crypto-` are reserved: callers may not set them.
pub const PUBLIC_KEY_CONTEXT_KEY: &str = "aws-crypto-public-key";

/// One encrypted copy of the data key, as stored in the header.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedDataKey {
    /// Who can decrypt it: `aws-kms` for KMS keys (Keywarden), the key
    /// namespace for raw keyrings.
    pub provider_id: String,
    /// Which key: the key ARN for `aws-kms`; for raw AES the key name plus
    /// tag length, IV length and IV.
    pub provider_info: Vec<u8>,
    /// The encrypted data key.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for EncryptedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedDataKey")
            .field("provider_id", &self.provider_id)
            .field("provider_info", &String::from_utf8_lossy(&self.provider_info))
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// What a keyring is asked to decrypt.
#[derive(Debug, Clone, Copy)]
pub struct DecryptionRequest<'a> {
    /// The message's suite.
    pub suite: AlgorithmSuite,
    /// The message's encryption context as stored (including
    /// `aws-crypto-public-key` for signed suites).
    pub context: &'a EncryptionContext,
    /// The message's encrypted data keys.
    pub encrypted_data_keys: &'a [EncryptedDataKey],
}

/// What encrypting a message needs.
#[derive(Debug, Clone, Copy)]
pub struct EncryptionRequest<'a> {
    /// The suite to use.
    pub suite: AlgorithmSuite,
    /// The caller's encryption context (no reserved keys).
    pub context: &'a EncryptionContext,
    /// The plaintext length, when known in advance (caches count bytes).
    pub plaintext_length: Option<u64>,
}

/// Data keys: made and encrypted under the keyring's keys, or decrypted.
#[async_trait]
pub trait Keyring: Send + Sync {
    /// A fresh data key of `suite.data_key_len()` bytes and its encrypted
    /// copies, one per key of the keyring (any one decrypts). `context` is
    /// the message's full encryption context (with the public key for
    /// signed suites), bound to each copy where the key service supports it.
    async fn on_encrypt(
        &self,
        suite: AlgorithmSuite,
        context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<EncryptedDataKey>), Error>;

    /// The data key, from the first of `request.encrypted_data_keys` this
    /// keyring may and can decrypt; [`Error::NoDecryptableKey`] (with the
    /// reasons) if none.
    async fn on_decrypt(&self, request: DecryptionRequest<'_>)
        -> Result<Zeroizing<Vec<u8>>, Error>;
}

/// A signing key of a signed suite (ECDSA P-384), generated per message
/// (or per cached materials). Its `Debug` shows nothing secret.
pub struct SigningKey {
    /// PKCS#8 document of the private key.
    pub(crate) pkcs8: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Everything needed to encrypt one message.
#[derive(Debug)]
pub struct EncryptionMaterials {
    /// The suite.
    pub suite: AlgorithmSuite,
    /// The full encryption context written to the header (the caller's
    /// pairs, plus `aws-crypto-public-key` for signed suites).
    pub context: EncryptionContext,
    /// The data key (plaintext).
    pub data_key: Zeroizing<Vec<u8>>,
    /// Its encrypted copies for the header.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// The signing key, for signed suites.
    pub signing_key: Option<SigningKey>,
}

/// Everything needed to decrypt one message.
#[derive(Debug)]
pub struct DecryptionMaterials {
    /// The data key (plaintext).
    pub data_key: Zeroizing<Vec<u8>>,
    /// The verification key for signed suites: the compressed P-384 point
    /// decoded from `aws-crypto-public-key`.
    pub verification_key: Option<Vec<u8>>,
}

/// Turns requests into complete materials.
#[async_trait]
pub trait MaterialsManager: Send + Sync {
    /// Materials to encrypt one message.
    async fn encryption_materials(
        &self,
        request: EncryptionRequest<'_>,
    ) -> Result<EncryptionMaterials, Error>;

    /// Materials to decrypt one message.
    async fn decryption_materials(
        &self,
        request: DecryptionRequest<'_>,
    ) -> Result<DecryptionMaterials, Error>;
}

/// The default materials manager: one keyring; for signed suites it makes
/// a fresh signing key per message and puts its public key in the context.
pub struct DefaultMaterialsManager<K> {
    keyring: K,
}

impl<K: Keyring> DefaultMaterialsManager<K> {
    /// Wraps a keyring.
    pub fn new(keyring: K) -> Self {
        DefaultMaterialsManager { keyring }
    }

    /// The keyring.
    pub fn keyring(&self) -> &K {
        &self.keyring
    }
}
