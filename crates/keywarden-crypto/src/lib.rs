//! Keywarden's cryptography for keys of every spec other than
//! `SYMMETRIC_DEFAULT`: HMAC, RSA, ECDSA/ECDH on the NIST curves and
//! secp256k1, Ed25519, ML-DSA, ML-KEM and SM2.
//!
//! The core (`keywarden-core`) links no cryptographic library; it defines the
//! seams ([`Signer`](keywarden_core::protector::Signer),
//! [`PublicKeyCrypto`], ...) and this crate implements them:
//!
//! - [`generate`] makes fresh private material for a spec and returns its
//!   *private encoding* (below) with the public key as DER
//!   `SubjectPublicKeyInfo`;
//! - [`load`] turns a private encoding into a [`SpecHandle`] for one usage;
//! - [`public_key`] recomputes the public key of a private encoding;
//! - [`Crypto`] does what needs only a public key (Verify, asymmetric
//!   Encrypt, Encapsulate) and makes data key pairs.
//!
//! A key protector wraps the private encoding like any other secret and
//! hands it back to [`load`]; nothing here stores anything.
//!
//! # The private encoding
//!
//! One format byte, [`FORMAT_V1`], then the key by spec:
//!
//! | spec | after the format byte |
//! | --- | --- |
//! | `HMAC_224/256/384/512` | the raw HMAC key: generated 28, 32, 48 or 64 bytes long; loads from that length up to one hash block (64 bytes for HMAC_224/256, 128 for HMAC_384/512), so imported keys fit |
//! | `RSA_*`, `ECC_NIST_P*`, `ECC_SECG_P256K1` | PKCS#8 v1 DER (`PrivateKeyInfo`) as aws-lc-rs writes it |
//! | `ECC_NIST_EDWARDS25519` | the 32-byte RFC 8032 seed |
//! | `ML_DSA_44/65/87` | the 32-byte FIPS 204 seed ξ |
//! | `ML_KEM_512/768/1024` | the 64-byte FIPS 203 seed d‖z |
//! | `SM2` | PKCS#8 v1 DER (id-ecPublicKey with the SM2 curve, SEC1 `ECPrivateKey`) |
//!
//! The format byte lets a later version change an encoding (a new byte)
//! while old material keeps loading.
//!
//! # Algorithms
//!
//! AWS's semantics throughout: RSASSA-PSS with MGF1 of the message hash
//! and a salt as long as the hash; RSAES-OAEP without label; ECDSA, SM2DSA
//! signatures in DER; `DIGEST` messages are the hash the algorithm would
//! have computed (for SM2DSA, e = SM3(Z_A ‖ M) with the distinguishing ID
//! [`SM2_DISTINGUISHING_ID`]); Ed25519ph has an empty context; ML-DSA is
//! pure ML-DSA with an empty context, `EXTERNAL_MU` the 64-byte μ; ECDH
//! returns the raw x-coordinate; SM2PKE ciphertexts are DER C1C3C2.
//! Data key pairs ([`Crypto`]'s `generate_pair`) are PKCS#8 v1 DER, seed
//! form for ML-KEM.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod ecc;
mod ed25519;
mod hmac;
mod mldsa;
mod mlkem;
mod rng;
mod rsa;
mod sm2;
mod spki;

use keywarden_core::key_spec::{
    DataKeyPairSpec, EncryptionAlgorithm, KeySpec, KeyUsageType, MessageType, SigningAlgorithm,
};
use keywarden_core::protector::{ProtectorError, PublicKeyCrypto, SpecHandle};
use keywarden_core::secret::Secret;

pub use sm2::DISTINGUISHING_ID as SM2_DISTINGUISHING_ID;

/// The first byte of every private encoding this version writes.
pub const FORMAT_V1: u8 = 1;

/// Fresh private material for a key of `spec` (not `SYMMETRIC_DEFAULT`):
/// its private encoding and, for asymmetric specs, the public key as DER
/// `SubjectPublicKeyInfo` (`None` for HMAC). RSA-4096 takes up to seconds.
pub fn generate(spec: KeySpec) -> Result<(Secret, Option<Vec<u8>>), ProtectorError> {
    let (body, public) = match spec {
        KeySpec::SymmetricDefault => return Err(symmetric()),
        KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512 => {
            (hmac::generate(spec)?, None)
        }
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            let (private, public) = rsa::generate(spec)?;
            (private, Some(public))
        }
        KeySpec::EccNistP256
        | KeySpec::EccNistP384
        | KeySpec::EccNistP521
        | KeySpec::EccSecgP256k1 => {
            let (private, public) = ecc::generate(spec)?;
            (private, Some(public))
        }
        KeySpec::EccNistEdwards25519 => {
            let (private, public) = ed25519::generate()?;
            (private, Some(public))
        }
        KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => {
            let (private, public) = mldsa::generate(spec)?;
            (private, Some(public))
        }
        KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024 => {
            let (private, public) = mlkem::generate(spec)?;
            (private, Some(public))
        }
        KeySpec::Sm2 => {
            let (private, public) = sm2::generate()?;
            (private, Some(public))
        }
    };
    Ok((with_format(body.expose()), public))
}

/// A handle over a private encoding made by [`generate`] (or an import),
/// for the operations of `usage`: [`SpecHandle::Sign`], `Mac`, `Decrypt`,
/// `Agree` or `Kem`. A usage the spec does not have is
/// [`ProtectorError::Unsupported`]; an encoding that does not parse is
/// [`ProtectorError::MalformedMaterial`].
pub fn load(
    spec: KeySpec,
    usage: KeyUsageType,
    private: &Secret,
) -> Result<SpecHandle, ProtectorError> {
    if spec == KeySpec::SymmetricDefault {
        return Err(symmetric());
    }
    if !spec.usages().contains(&usage) {
        return Err(ProtectorError::Unsupported(format!(
            "A key of KeySpec {spec} cannot have KeyUsage {usage}"
        )));
    }
    let body = body(private)?;
    match (spec, usage) {
        (KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512, _) => {
            Ok(SpecHandle::Mac(Box::new(hmac::HmacKey::load(spec, body)?)))
        }
        (KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096, KeyUsageType::SignVerify) => Ok(
            SpecHandle::Sign(Box::new(rsa::RsaSigner::load(spec, body)?)),
        ),
        (KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096, _) => Ok(SpecHandle::Decrypt(
            Box::new(rsa::RsaDecrypter::load(spec, body)?),
        )),
        (
            KeySpec::EccNistP256
            | KeySpec::EccNistP384
            | KeySpec::EccNistP521
            | KeySpec::EccSecgP256k1,
            KeyUsageType::SignVerify,
        ) => Ok(SpecHandle::Sign(Box::new(ecc::EcdsaSigner::load(
            spec, body,
        )?))),
        (KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521, _) => {
            Ok(SpecHandle::Agree(Box::new(ecc::Ecdh::load(spec, body)?)))
        }
        (KeySpec::EccNistEdwards25519, _) => Ok(SpecHandle::Sign(Box::new(
            ed25519::Ed25519Signer::load(body)?,
        ))),
        (KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87, _) => Ok(SpecHandle::Sign(
            Box::new(mldsa::MlDsaSigner::load(spec, body)?),
        )),
        (KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024, _) => Ok(SpecHandle::Kem(
            Box::new(mlkem::MlKemKey::load(spec, body)?),
        )),
        (KeySpec::Sm2, KeyUsageType::SignVerify) => {
            Ok(SpecHandle::Sign(Box::new(sm2::Sm2Signer::load(body)?)))
        }
        (KeySpec::Sm2, KeyUsageType::EncryptDecrypt) => Ok(SpecHandle::Decrypt(Box::new(
            sm2::Sm2Decrypter::load(body)?,
        ))),
        (KeySpec::Sm2, _) => Ok(SpecHandle::Agree(Box::new(sm2::Sm2Ecdh::load(body)?))),
        (other, _) => Err(unsupported_spec(other)),
    }
}

/// The private encoding of imported key material for a key of `spec`, and
/// its public key: an HMAC key's raw bytes (of a length the spec allows), or
/// a PKCS#8 private key (RSA of the spec's size, ECC on the spec's curve,
/// SM2, Ed25519). Material that is not such a key is
/// [`ProtectorError::MalformedMaterial`]; specs whose material cannot be
/// imported (ML-DSA, ML-KEM) are [`ProtectorError::Unsupported`].
pub fn import(spec: KeySpec, material: &[u8]) -> Result<(Secret, Option<Vec<u8>>), ProtectorError> {
    let private = match spec {
        KeySpec::SymmetricDefault => return Err(symmetric()),
        KeySpec::MlDsa44
        | KeySpec::MlDsa65
        | KeySpec::MlDsa87
        | KeySpec::MlKem512
        | KeySpec::MlKem768
        | KeySpec::MlKem1024 => {
            return Err(ProtectorError::Unsupported(format!(
                "Key material of KeySpec {spec} cannot be imported"
            )))
        }
        KeySpec::EccNistEdwards25519 => {
            let seed = ed25519::seed_from_pkcs8(material)?;
            with_format(seed.expose())
        }
        _ => with_format(material),
    };
    // Parsing the key proves it is one of this spec (size, curve).
    let public = public_key(spec, &private)?;
    Ok((private, public))
}

/// The public key (DER `SubjectPublicKeyInfo`) of a private encoding;
/// `None` for HMAC keys.
pub fn public_key(spec: KeySpec, private: &Secret) -> Result<Option<Vec<u8>>, ProtectorError> {
    let body = body(private)?;
    match spec {
        KeySpec::SymmetricDefault => Err(symmetric()),
        KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512 => {
            hmac::HmacKey::load(spec, body)?;
            Ok(None)
        }
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            rsa::public_key(spec, body).map(Some)
        }
        KeySpec::EccNistP256
        | KeySpec::EccNistP384
        | KeySpec::EccNistP521
        | KeySpec::EccSecgP256k1 => ecc::public_key(spec, body).map(Some),
        KeySpec::EccNistEdwards25519 => ed25519::public_key(body).map(Some),
        KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => {
            mldsa::public_key(spec, body).map(Some)
        }
        KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024 => {
            mlkem::public_key(spec, body).map(Some)
        }
        KeySpec::Sm2 => sm2::public_key(body).map(Some),
    }
}

/// Public-key operations and data key pairs with this crate's algorithms
/// ([`PublicKeyCrypto`]). Holds nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crypto;

impl PublicKeyCrypto for Crypto {
    fn verify(
        &self,
        spec: KeySpec,
        public_key: &[u8],
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
        signature: &[u8],
    ) -> Result<bool, ProtectorError> {
        if !spec
            .signing_algorithms(KeyUsageType::SignVerify)
            .contains(&algorithm)
        {
            return Err(ProtectorError::Unsupported(format!(
                "SigningAlgorithm {algorithm} is not valid for KeySpec {spec}"
            )));
        }
        match spec {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => rsa::verify(
                spec,
                public_key,
                algorithm,
                message_type,
                message,
                signature,
            ),
            KeySpec::EccNistP256
            | KeySpec::EccNistP384
            | KeySpec::EccNistP521
            | KeySpec::EccSecgP256k1 => {
                ecc::verify(spec, public_key, message_type, message, signature)
            }
            KeySpec::EccNistEdwards25519 => {
                ed25519::verify(public_key, algorithm, message_type, message, signature)
            }
            KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => {
                mldsa::verify(spec, public_key, message_type, message, signature)
            }
            KeySpec::Sm2 => sm2::verify(public_key, message_type, message, signature),
            other => Err(unsupported_spec(other)),
        }
    }

    fn encrypt(
        &self,
        spec: KeySpec,
        public_key: &[u8],
        algorithm: EncryptionAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        if !spec
            .encryption_algorithms(KeyUsageType::EncryptDecrypt)
            .contains(&algorithm)
            || algorithm == EncryptionAlgorithm::SymmetricDefault
        {
            return Err(ProtectorError::Unsupported(format!(
                "EncryptionAlgorithm {algorithm} is not valid for KeySpec {spec}"
            )));
        }
        match spec {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                rsa::encrypt(spec, public_key, algorithm, plaintext)
            }
            KeySpec::Sm2 => sm2::encrypt(public_key, algorithm, plaintext),
            other => Err(unsupported_spec(other)),
        }
    }

    fn encapsulate(
        &self,
        spec: KeySpec,
        public_key: &[u8],
    ) -> Result<(Vec<u8>, Secret), ProtectorError> {
        match spec {
            KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024 => {
                mlkem::encapsulate(spec, public_key)
            }
            other => Err(ProtectorError::Unsupported(format!(
                "KeySpec {other} cannot encapsulate"
            ))),
        }
    }

    fn generate_pair(&self, spec: DataKeyPairSpec) -> Result<(Secret, Vec<u8>), ProtectorError> {
        match spec.key_spec() {
            key_spec @ (KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096) => {
                rsa::generate(key_spec)
            }
            key_spec @ (KeySpec::EccNistP256
            | KeySpec::EccNistP384
            | KeySpec::EccNistP521
            | KeySpec::EccSecgP256k1) => ecc::generate(key_spec),
            KeySpec::EccNistEdwards25519 => ed25519::generate_pair(),
            key_spec @ (KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024) => {
                mlkem::generate_pair(key_spec)
            }
            KeySpec::Sm2 => sm2::generate(),
            other => Err(unsupported_spec(other)),
        }
    }
}

/// `FORMAT_V1` followed by `body`, as a secret.
fn with_format(body: &[u8]) -> Secret {
    let mut out = Secret::zeroed(body.len() + 1);
    let bytes = out.expose_mut();
    bytes[0] = FORMAT_V1;
    bytes[1..].copy_from_slice(body);
    out
}

/// The key bytes after the format byte.
fn body(private: &Secret) -> Result<&[u8], ProtectorError> {
    match private.expose().split_first() {
        Some((&FORMAT_V1, body)) => Ok(body),
        _ => Err(ProtectorError::MalformedMaterial),
    }
}

/// A `DIGEST` message as an aws-lc-rs digest of `algorithm`.
fn digest_of(
    algorithm: &'static aws_lc_rs::digest::Algorithm,
    message: &[u8],
) -> Result<aws_lc_rs::digest::Digest, ProtectorError> {
    aws_lc_rs::digest::Digest::import_less_safe(message, algorithm).map_err(|_| {
        ProtectorError::InvalidInput(format!(
            "A DIGEST message for this algorithm must be {} bytes",
            algorithm.output_len()
        ))
    })
}

fn external_mu_only_ml_dsa() -> ProtectorError {
    ProtectorError::InvalidInput("MessageType EXTERNAL_MU is only valid for ML-DSA keys".into())
}

fn digest_not_allowed() -> ProtectorError {
    ProtectorError::InvalidInput("MessageType DIGEST is not valid for this algorithm".into())
}

fn bad_peer_key() -> ProtectorError {
    ProtectorError::InvalidInput(
        "PublicKey must be a DER-encoded SubjectPublicKeyInfo on the key's curve".into(),
    )
}

fn symmetric() -> ProtectorError {
    ProtectorError::Unsupported(
        "SYMMETRIC_DEFAULT keys are the key protector's own AES keys".to_string(),
    )
}

fn unsupported_spec(spec: KeySpec) -> ProtectorError {
    ProtectorError::Unsupported(format!(
        "KeySpec {spec} is not supported by this build of Keywarden"
    ))
}

#[cfg(test)]
mod tests;
