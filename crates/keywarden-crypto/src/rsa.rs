//! RSA keys (`RSA_2048/3072/4096`) with aws-lc-rs: RSASSA-PSS and
//! RSASSA-PKCS1-v1_5 signatures, RSAES-OAEP encryption.
//!
//! AWS's PSS uses MGF1 with the message hash and a salt as long as the hash
//! (<https://docs.aws.amazon.com/kms/latest/developerguide/asymmetric-key-specs.html#key-spec-rsa-sign>);
//! aws-lc-rs's PSS encodings do exactly that. OAEP has no label and MGF1
//! with the OAEP hash (`RSAES_OAEP_SHA_1`: SHA-1/MGF1-SHA-1;
//! `RSAES_OAEP_SHA_256`: SHA-256/MGF1-SHA-256).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey, RsaEncoding, RsaParameters};
use aws_lc_rs::{digest, rand::SystemRandom};
use keywarden_core::key_spec::{EncryptionAlgorithm, KeySpec, MessageType, SigningAlgorithm};
use keywarden_core::protector::{Decrypter, ProtectorError, Signer};
use keywarden_core::secret::Secret;

use crate::digest_of;

fn key_size(spec: KeySpec) -> Result<KeySize, ProtectorError> {
    match spec {
        KeySpec::Rsa2048 => Ok(KeySize::Rsa2048),
        KeySpec::Rsa3072 => Ok(KeySize::Rsa3072),
        KeySpec::Rsa4096 => Ok(KeySize::Rsa4096),
        _ => Err(ProtectorError::MalformedMaterial),
    }
}

fn modulus_bits(spec: KeySpec) -> usize {
    match spec {
        KeySpec::Rsa2048 => 2048,
        KeySpec::Rsa3072 => 3072,
        _ => 4096,
    }
}

/// The padding, verification parameters and digest of an RSA algorithm.
fn signing(
    algorithm: SigningAlgorithm,
) -> Result<
    (
        &'static dyn RsaEncoding,
        &'static RsaParameters,
        &'static digest::Algorithm,
    ),
    ProtectorError,
> {
    use SigningAlgorithm as S;
    Ok(match algorithm {
        S::RsassaPssSha256 => (
            &signature::RSA_PSS_SHA256,
            &signature::RSA_PSS_2048_8192_SHA256,
            &digest::SHA256,
        ),
        S::RsassaPssSha384 => (
            &signature::RSA_PSS_SHA384,
            &signature::RSA_PSS_2048_8192_SHA384,
            &digest::SHA384,
        ),
        S::RsassaPssSha512 => (
            &signature::RSA_PSS_SHA512,
            &signature::RSA_PSS_2048_8192_SHA512,
            &digest::SHA512,
        ),
        S::RsassaPkcs1V15Sha256 => (
            &signature::RSA_PKCS1_SHA256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
            &digest::SHA256,
        ),
        S::RsassaPkcs1V15Sha384 => (
            &signature::RSA_PKCS1_SHA384,
            &signature::RSA_PKCS1_2048_8192_SHA384,
            &digest::SHA384,
        ),
        S::RsassaPkcs1V15Sha512 => (
            &signature::RSA_PKCS1_SHA512,
            &signature::RSA_PKCS1_2048_8192_SHA512,
            &digest::SHA512,
        ),
        other => {
            return Err(ProtectorError::Unsupported(format!(
                "SigningAlgorithm {other} is not an RSA algorithm"
            )))
        }
    })
}

fn oaep(algorithm: EncryptionAlgorithm) -> Result<&'static OaepAlgorithm, ProtectorError> {
    match algorithm {
        EncryptionAlgorithm::RsaesOaepSha1 => Ok(&OAEP_SHA1_MGF1SHA1),
        EncryptionAlgorithm::RsaesOaepSha256 => Ok(&OAEP_SHA256_MGF1SHA256),
        other => Err(ProtectorError::Unsupported(format!(
            "EncryptionAlgorithm {other} is not valid for RSA keys"
        ))),
    }
}

/// A fresh key pair: (PKCS#8 v1 DER, SPKI DER).
pub(crate) fn generate(spec: KeySpec) -> Result<(Secret, Vec<u8>), ProtectorError> {
    let pair = KeyPair::generate(key_size(spec)?).map_err(|_| ProtectorError::Crypto("RSA"))?;
    let pkcs8 = pair.as_der().map_err(|_| ProtectorError::Crypto("RSA"))?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| ProtectorError::Crypto("RSA"))?;
    Ok((
        Secret::new(pkcs8.as_ref().to_vec()),
        public.as_ref().to_vec(),
    ))
}

fn parse_pair(spec: KeySpec, pkcs8: &[u8]) -> Result<KeyPair, ProtectorError> {
    let pair = KeyPair::from_pkcs8(pkcs8).map_err(|_| ProtectorError::MalformedMaterial)?;
    if pair.public_modulus_len() * 8 != modulus_bits(spec) {
        return Err(ProtectorError::MalformedMaterial);
    }
    Ok(pair)
}

/// The SPKI DER of a PKCS#8 private key.
pub(crate) fn public_key(spec: KeySpec, pkcs8: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    let pair = parse_pair(spec, pkcs8)?;
    let der = pair
        .public_key()
        .as_der()
        .map_err(|_| ProtectorError::Crypto("RSA"))?;
    Ok(der.as_ref().to_vec())
}

/// A `SubjectPublicKeyInfo` with an RSA key of the spec's size.
fn parse_public(spec: KeySpec, spki: &[u8]) -> Result<PublicEncryptingKey, ProtectorError> {
    let key = PublicEncryptingKey::from_der(spki).map_err(|_| ProtectorError::MalformedMaterial)?;
    if key.key_size_bits() != modulus_bits(spec) {
        return Err(ProtectorError::MalformedMaterial);
    }
    Ok(key)
}

/// An RSA signing key.
pub(crate) struct RsaSigner {
    pair: KeyPair,
}

impl RsaSigner {
    pub(crate) fn load(spec: KeySpec, pkcs8: &[u8]) -> Result<Self, ProtectorError> {
        Ok(RsaSigner {
            pair: parse_pair(spec, pkcs8)?,
        })
    }
}

impl Signer for RsaSigner {
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        let (padding, _, hash) = signing(algorithm)?;
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        match message_type {
            MessageType::Raw => self
                .pair
                .sign(padding, &SystemRandom::new(), message, &mut sig)
                .map_err(|_| ProtectorError::Crypto("RSA"))?,
            MessageType::Digest => {
                let digest = digest_of(hash, message)?;
                self.pair
                    .sign_digest(padding, &digest, &mut sig)
                    .map_err(|_| ProtectorError::Crypto("RSA"))?
            }
            MessageType::ExternalMu => return Err(crate::external_mu_only_ml_dsa()),
        }
        Ok(sig)
    }
}

/// Verify with an RSA public key.
pub(crate) fn verify(
    spec: KeySpec,
    spki: &[u8],
    algorithm: SigningAlgorithm,
    message_type: MessageType,
    message: &[u8],
    sig: &[u8],
) -> Result<bool, ProtectorError> {
    let (_, params, hash) = signing(algorithm)?;
    parse_public(spec, spki)?;
    let key = ParsedPublicKey::new(params, spki).map_err(|_| ProtectorError::MalformedMaterial)?;
    Ok(match message_type {
        MessageType::Raw => key.verify_sig(message, sig).is_ok(),
        MessageType::Digest => key
            .verify_digest_sig(&digest_of(hash, message)?, sig)
            .is_ok(),
        MessageType::ExternalMu => return Err(crate::external_mu_only_ml_dsa()),
    })
}

/// RSAES-OAEP to an RSA public key.
pub(crate) fn encrypt(
    spec: KeySpec,
    spki: &[u8],
    algorithm: EncryptionAlgorithm,
    plaintext: &[u8],
) -> Result<Vec<u8>, ProtectorError> {
    let alg = oaep(algorithm)?;
    let key = OaepPublicEncryptingKey::new(parse_public(spec, spki)?)
        .map_err(|_| ProtectorError::MalformedMaterial)?;
    if plaintext.len() > spec.max_plaintext(algorithm) {
        return Err(ProtectorError::InvalidInput(format!(
            "Plaintext is longer than {} bytes, the limit of {algorithm} with KeySpec {spec}",
            spec.max_plaintext(algorithm)
        )));
    }
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(alg, plaintext, &mut out, None)
        .map_err(|_| ProtectorError::Crypto("RSA-OAEP"))?
        .len();
    out.truncate(len);
    Ok(out)
}

/// An RSA decryption key.
pub(crate) struct RsaDecrypter {
    key: OaepPrivateDecryptingKey,
}

impl RsaDecrypter {
    pub(crate) fn load(spec: KeySpec, pkcs8: &[u8]) -> Result<Self, ProtectorError> {
        let key = PrivateDecryptingKey::from_pkcs8(pkcs8)
            .map_err(|_| ProtectorError::MalformedMaterial)?;
        if key.key_size_bits() != modulus_bits(spec) {
            return Err(ProtectorError::MalformedMaterial);
        }
        Ok(RsaDecrypter {
            key: OaepPrivateDecryptingKey::new(key)
                .map_err(|_| ProtectorError::MalformedMaterial)?,
        })
    }
}

impl Decrypter for RsaDecrypter {
    fn decrypt(
        &self,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Secret, ProtectorError> {
        let alg = oaep(algorithm)?;
        let mut out = Secret::zeroed(self.key.min_output_size());
        let len = self
            .key
            .decrypt(alg, ciphertext, out.expose_mut(), None)
            .map_err(|_| ProtectorError::Authentication)?
            .len();
        Ok(Secret::new(out.expose()[..len].to_vec()))
    }
}
