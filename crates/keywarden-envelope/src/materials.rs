//! Materials: the data key of a message, its encrypted copies, and (signed
//! suites) the signing or verification key. A [`Keyring`] makes and opens
//! data keys; a [`MaterialsManager`] turns a request into complete
//! materials ([`DefaultMaterialsManager`] around one keyring; a caching one
//! in `cache`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyCompressedBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_ASN1_SIGNING};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
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

/// The prefix of encryption context keys reserved to the format.
pub const RESERVED_CONTEXT_PREFIX: &str = "aws-crypto-";

/// Length of a compressed P-384 point (SEC 1 section 2.3.3).
const COMPRESSED_P384_LEN: usize = 49;

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
            .field(
                "provider_info",
                &String::from_utf8_lossy(&self.provider_info),
            )
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

impl SigningKey {
    /// A fresh ECDSA P-384 key.
    pub fn generate() -> Result<SigningKey, Error> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &SystemRandom::new())
                .map_err(|_| Error::Internal("P-384 key generation"))?;
        Ok(SigningKey {
            pkcs8: Zeroizing::new(pkcs8.as_ref().to_vec()),
        })
    }

    /// The public key as a compressed point, as the encryption context
    /// carries it (base64-encoded).
    pub fn public_key_compressed(&self) -> Result<Vec<u8>, Error> {
        let pair = self.key_pair()?;
        let point: EcPublicKeyCompressedBin<'_> = pair
            .public_key()
            .as_be_bytes()
            .map_err(|_| Error::Internal("P-384 public key encoding"))?;
        Ok(point.as_ref().to_vec())
    }

    pub(crate) fn key_pair(&self) -> Result<EcdsaKeyPair, Error> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, &self.pkcs8)
            .map_err(|_| Error::Internal("P-384 key parsing"))
    }
}

/// Everything needed to encrypt one message. Its `Debug` leaves out the
/// data key and the signing key.
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

/// Everything needed to decrypt one message. Its `Debug` leaves out the
/// data key.
pub struct DecryptionMaterials {
    /// The data key (plaintext).
    pub data_key: Zeroizing<Vec<u8>>,
    /// The verification key for signed suites: the compressed P-384 point
    /// decoded from `aws-crypto-public-key`.
    pub verification_key: Option<Vec<u8>>,
}

// By hand: `Zeroizing<Vec<u8>>` derives `Debug` and would print the
// plaintext data key.
impl std::fmt::Debug for EncryptionMaterials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionMaterials")
            .field("suite", &self.suite)
            .field("context", &self.context)
            .field("encrypted_data_keys", &self.encrypted_data_keys)
            .field("signing_key", &self.signing_key.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for DecryptionMaterials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionMaterials")
            .field("verification_key", &self.verification_key)
            .finish_non_exhaustive()
    }
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
///
/// Encryption refuses caller contexts with keys starting `aws-crypto-`
/// ([`Error::Context`]). Decryption requires `aws-crypto-public-key` (a
/// base64 compressed P-384 point) for the signed suite and its absence for
/// the unsigned one, checked before the keyring is asked for the data key.
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

impl<K> std::fmt::Debug for DefaultMaterialsManager<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DefaultMaterialsManager")
    }
}

fn check_data_key(suite: AlgorithmSuite, data_key: &[u8]) -> Result<(), Error> {
    if data_key.len() != suite.data_key_len() {
        return Err(Error::KeyProvider(format!(
            "the keyring returned a data key of {} bytes, the suite needs {}",
            data_key.len(),
            suite.data_key_len()
        )));
    }
    Ok(())
}

/// The verification key a message's context must carry (signed suite) or
/// must not carry (unsigned suite).
fn verification_key(
    suite: AlgorithmSuite,
    context: &EncryptionContext,
) -> Result<Option<Vec<u8>>, Error> {
    match (suite.is_signed(), context.get(PUBLIC_KEY_CONTEXT_KEY)) {
        (true, Some(encoded)) => {
            let point = BASE64
                .decode(encoded)
                .ok()
                .filter(|p| p.len() == COMPRESSED_P384_LEN && matches!(p[0], 0x02 | 0x03))
                .ok_or_else(|| {
                    Error::Context(format!(
                        "{PUBLIC_KEY_CONTEXT_KEY} is not a base64 compressed P-384 point"
                    ))
                })?;
            Ok(Some(point))
        }
        (true, None) => Err(Error::Context(format!(
            "a signed message without {PUBLIC_KEY_CONTEXT_KEY}"
        ))),
        (false, Some(_)) => Err(Error::Context(format!(
            "an unsigned message with {PUBLIC_KEY_CONTEXT_KEY}"
        ))),
        (false, None) => Ok(None),
    }
}

#[async_trait]
impl<K: Keyring> MaterialsManager for DefaultMaterialsManager<K> {
    async fn encryption_materials(
        &self,
        request: EncryptionRequest<'_>,
    ) -> Result<EncryptionMaterials, Error> {
        if let Some(key) = request
            .context
            .keys()
            .find(|k| k.starts_with(RESERVED_CONTEXT_PREFIX))
        {
            return Err(Error::Context(format!(
                "the key {key:?} is reserved (prefix {RESERVED_CONTEXT_PREFIX})"
            )));
        }
        let mut context = request.context.clone();
        let signing_key = if request.suite.is_signed() {
            let key = SigningKey::generate()?;
            context.insert(
                PUBLIC_KEY_CONTEXT_KEY.to_string(),
                BASE64.encode(key.public_key_compressed()?),
            );
            Some(key)
        } else {
            None
        };
        let (data_key, encrypted_data_keys) =
            self.keyring.on_encrypt(request.suite, &context).await?;
        check_data_key(request.suite, &data_key)?;
        if encrypted_data_keys.is_empty() {
            return Err(Error::KeyProvider(
                "the keyring returned no encrypted data key".into(),
            ));
        }
        Ok(EncryptionMaterials {
            suite: request.suite,
            context,
            data_key,
            encrypted_data_keys,
            signing_key,
        })
    }

    async fn decryption_materials(
        &self,
        request: DecryptionRequest<'_>,
    ) -> Result<DecryptionMaterials, Error> {
        let verification_key = verification_key(request.suite, request.context)?;
        let data_key = self.keyring.on_decrypt(request).await?;
        check_data_key(request.suite, &data_key)?;
        Ok(DecryptionMaterials {
            data_key,
            verification_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_leaves_out_data_keys() {
        let key = vec![0xAB; 32];
        let decryption = DecryptionMaterials {
            data_key: Zeroizing::new(key.clone()),
            verification_key: None,
        };
        let encryption = EncryptionMaterials {
            suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
            context: EncryptionContext::new(),
            data_key: Zeroizing::new(key),
            encrypted_data_keys: Vec::new(),
            signing_key: None,
        };
        for text in [format!("{decryption:?}"), format!("{encryption:?}")] {
            assert!(!text.contains("171"), "{text}");
            assert!(!text.to_lowercase().contains("ab, ab"), "{text}");
        }
    }
}
