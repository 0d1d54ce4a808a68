//! The specification's raw AES keyring: data keys wrapped locally with
//! AES-256-GCM under a caller-held wrapping key, for test vectors, offline
//! use and tests. Keywarden's keys are reached with `kms::KmsKeyring`.
//!
//! An encrypted data key it makes has
//! - provider id: the key namespace;
//! - provider info: the key name (UTF-8), the tag length in bits (u32, 128),
//!   the IV length in bytes (u32, 12), the random IV;
//! - ciphertext: the wrapped data key then the 16-byte tag;
//!
//! and the AAD of the wrapping is the serialised encryption context of the
//! message (with `aws-crypto-public-key` for signed messages), so a data
//! key unwraps only for the context it was made for.

use async_trait::async_trait;
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::materials::{DecryptionRequest, EncryptedDataKey, EncryptionContext, Keyring};
use crate::message::{serialize_context, IV_LEN, TAG_LEN};
use crate::suite::AlgorithmSuite;

/// The tag length field of the provider info, in bits.
const TAG_LEN_BITS: u32 = (TAG_LEN * 8) as u32;
/// Length of the wrapping key: AES-256 only.
pub const WRAPPING_KEY_LEN: usize = 32;

/// A raw AES keyring: one AES-256 wrapping key named by a namespace and a
/// name. Its `Debug` shows the names, never the key.
pub struct RawAesKeyring {
    key_namespace: String,
    key_name: String,
    wrapping_key: LessSafeKey,
}

impl std::fmt::Debug for RawAesKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAesKeyring")
            .field("key_namespace", &self.key_namespace)
            .field("key_name", &self.key_name)
            .finish_non_exhaustive()
    }
}

impl RawAesKeyring {
    /// A keyring for `wrapping_key` (32 bytes; 128- and 192-bit wrapping
    /// keys of the specification are not supported). The namespace may not
    /// start with `aws-kms` (reserved to KMS keyrings).
    pub fn new(
        key_namespace: impl Into<String>,
        key_name: impl Into<String>,
        wrapping_key: &[u8],
    ) -> Result<RawAesKeyring, Error> {
        let key_namespace = key_namespace.into();
        let key_name = key_name.into();
        if key_namespace.starts_with("aws-kms") {
            return Err(Error::Config(
                "a raw keyring's namespace may not start with aws-kms".into(),
            ));
        }
        if key_namespace.len() > usize::from(u16::MAX)
            || key_name.len() > usize::from(u16::MAX) - 8 - IV_LEN
        {
            return Err(Error::Config("key namespace or key name too long".into()));
        }
        if wrapping_key.len() != WRAPPING_KEY_LEN {
            return Err(Error::Config(format!(
                "the wrapping key must have {WRAPPING_KEY_LEN} bytes"
            )));
        }
        let key = UnboundKey::new(&AES_256_GCM, wrapping_key)
            .map_err(|_| Error::Internal("AES-256-GCM key"))?;
        Ok(RawAesKeyring {
            key_namespace,
            key_name,
            wrapping_key: LessSafeKey::new(key),
        })
    }

    /// The key namespace (the provider id of its encrypted data keys).
    pub fn key_namespace(&self) -> &str {
        &self.key_namespace
    }

    /// The key name.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    fn provider_info(&self, iv: &[u8; IV_LEN]) -> Vec<u8> {
        let mut info = Vec::with_capacity(self.key_name.len() + 8 + IV_LEN);
        info.extend_from_slice(self.key_name.as_bytes());
        info.extend_from_slice(&TAG_LEN_BITS.to_be_bytes());
        info.extend_from_slice(&(IV_LEN as u32).to_be_bytes());
        info.extend_from_slice(iv);
        info
    }

    /// The IV in `info` if it names this key with our tag and IV lengths.
    fn parse_provider_info(&self, info: &[u8]) -> Result<[u8; IV_LEN], &'static str> {
        let name = self.key_name.as_bytes();
        if info.len() != name.len() + 8 + IV_LEN || !info.starts_with(name) {
            return Err("another key name");
        }
        let rest = &info[name.len()..];
        if rest[..4] != TAG_LEN_BITS.to_be_bytes() {
            return Err("unsupported tag length");
        }
        if rest[4..8] != (IV_LEN as u32).to_be_bytes() {
            return Err("unsupported IV length");
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&rest[8..]);
        Ok(iv)
    }

    fn unwrap(
        &self,
        suite: AlgorithmSuite,
        aad: &[u8],
        edk: &EncryptedDataKey,
    ) -> Result<Zeroizing<Vec<u8>>, &'static str> {
        if edk.provider_id != self.key_namespace {
            return Err("another provider");
        }
        let iv = self.parse_provider_info(&edk.provider_info)?;
        if edk.ciphertext.len() != suite.data_key_len() + TAG_LEN {
            return Err("ciphertext of the wrong length");
        }
        let (wrapped, tag) = edk.ciphertext.split_at(suite.data_key_len());
        let mut data_key = Zeroizing::new(wrapped.to_vec());
        self.wrapping_key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(aad),
                tag,
                &mut data_key,
            )
            .map_err(|_| "does not decrypt (wrong key or encryption context)")?;
        Ok(data_key)
    }
}

#[async_trait]
impl Keyring for RawAesKeyring {
    async fn on_encrypt(
        &self,
        suite: AlgorithmSuite,
        context: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, Vec<EncryptedDataKey>), Error> {
        let aad = serialize_context(context)?;
        let mut data_key = Zeroizing::new(vec![0u8; suite.data_key_len()]);
        aws_lc_rs::rand::fill(&mut data_key).map_err(|_| Error::Internal("random data key"))?;
        let mut iv = [0u8; IV_LEN];
        aws_lc_rs::rand::fill(&mut iv).map_err(|_| Error::Internal("random IV"))?;
        let mut ciphertext = data_key.to_vec();
        let tag = self
            .wrapping_key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(&aad),
                &mut ciphertext,
            )
            .map_err(|_| Error::Internal("AES-GCM seal (data key)"))?;
        ciphertext.extend_from_slice(tag.as_ref());
        let edk = EncryptedDataKey {
            provider_id: self.key_namespace.clone(),
            provider_info: self.provider_info(&iv),
            ciphertext,
        };
        Ok((data_key, vec![edk]))
    }

    async fn on_decrypt(
        &self,
        request: DecryptionRequest<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let aad = serialize_context(request.context)?;
        let mut reasons = Vec::new();
        for (i, edk) in request.encrypted_data_keys.iter().enumerate() {
            match self.unwrap(request.suite, &aad, edk) {
                Ok(data_key) => return Ok(data_key),
                Err(reason) => reasons.push(format!("key {i}: {reason}")),
            }
        }
        Err(Error::NoDecryptableKey(format!(
            "raw AES key {}/{}: {}",
            self.key_namespace,
            self.key_name,
            reasons.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: AlgorithmSuite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;

    fn keyring(key: u8) -> RawAesKeyring {
        RawAesKeyring::new("ns", "name", &[key; 32]).unwrap()
    }

    fn context() -> EncryptionContext {
        [("a".to_string(), "1".to_string())].into_iter().collect()
    }

    async fn decrypt(
        k: &RawAesKeyring,
        context: &EncryptionContext,
        edks: &[EncryptedDataKey],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        k.on_decrypt(DecryptionRequest {
            suite: SUITE,
            context,
            encrypted_data_keys: edks,
        })
        .await
    }

    #[tokio::test]
    async fn wraps_in_the_specified_layout_and_unwraps() {
        let k = keyring(1);
        let (data_key, edks) = k.on_encrypt(SUITE, &context()).await.unwrap();
        assert_eq!(data_key.len(), 32);
        let edk = &edks[0];
        assert_eq!(edk.provider_id, "ns");
        assert_eq!(edk.provider_info.len(), 4 + 4 + 4 + 12);
        assert_eq!(&edk.provider_info[..4], b"name");
        assert_eq!(&edk.provider_info[4..12], &[0, 0, 0, 128, 0, 0, 0, 12]);
        assert_eq!(edk.ciphertext.len(), 32 + 16);
        let got = decrypt(&k, &context(), &edks).await.unwrap();
        assert_eq!(*got, *data_key);
    }

    #[tokio::test]
    async fn wrong_key_name_namespace_or_context_does_not_unwrap() {
        let (_, edks) = keyring(1).on_encrypt(SUITE, &context()).await.unwrap();
        let others = [
            keyring(2),
            RawAesKeyring::new("other", "name", &[1; 32]).unwrap(),
            RawAesKeyring::new("ns", "other", &[1; 32]).unwrap(),
        ];
        for k in &others {
            assert!(matches!(
                decrypt(k, &context(), &edks).await,
                Err(Error::NoDecryptableKey(_))
            ));
        }
        let err = decrypt(&keyring(1), &EncryptionContext::new(), &edks)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoDecryptableKey(_)));
    }

    #[test]
    fn bad_configuration_is_refused_and_debug_hides_the_key() {
        assert!(RawAesKeyring::new("ns", "n", &[0; 16]).is_err());
        assert!(RawAesKeyring::new("aws-kms", "n", &[0; 32]).is_err());
        let shown = format!("{:?}", keyring(0xab));
        assert!(shown.contains("ns") && !shown.contains("171") && !shown.contains("ab"));
    }
}
