//! ECC keys on NIST P-256/P-384/P-521 and secp256k1 with aws-lc-rs: ECDSA
//! (DER signatures) and, on the NIST curves, ECDH.
//!
//! AWS pairs each curve with one hash: P-256 and secp256k1 with SHA-256,
//! P-384 with SHA-384, P-521 with SHA-512.

use aws_lc_rs::agreement;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, EcdsaVerificationAlgorithm, KeyPair as _,
    ParsedPublicKey,
};
use aws_lc_rs::{digest, rand::SystemRandom};
use keywarden_core::key_spec::{KeySpec, MessageType, SigningAlgorithm};
use keywarden_core::protector::{KeyAgreement, ProtectorError, Signer};
use keywarden_core::secret::Secret;

use crate::digest_of;

struct Curve {
    signing: &'static EcdsaSigningAlgorithm,
    verification: &'static EcdsaVerificationAlgorithm,
    digest: &'static digest::Algorithm,
    /// `None` for secp256k1, which AWS offers for signing only.
    agreement: Option<&'static agreement::Algorithm>,
}

fn curve(spec: KeySpec) -> Result<Curve, ProtectorError> {
    Ok(match spec {
        KeySpec::EccNistP256 => Curve {
            signing: &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            verification: &signature::ECDSA_P256_SHA256_ASN1,
            digest: &digest::SHA256,
            agreement: Some(&agreement::ECDH_P256),
        },
        KeySpec::EccNistP384 => Curve {
            signing: &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            verification: &signature::ECDSA_P384_SHA384_ASN1,
            digest: &digest::SHA384,
            agreement: Some(&agreement::ECDH_P384),
        },
        KeySpec::EccNistP521 => Curve {
            signing: &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
            verification: &signature::ECDSA_P521_SHA512_ASN1,
            digest: &digest::SHA512,
            agreement: Some(&agreement::ECDH_P521),
        },
        KeySpec::EccSecgP256k1 => Curve {
            signing: &signature::ECDSA_P256K1_SHA256_ASN1_SIGNING,
            verification: &signature::ECDSA_P256K1_SHA256_ASN1,
            digest: &digest::SHA256,
            agreement: None,
        },
        _ => return Err(ProtectorError::MalformedMaterial),
    })
}

/// A fresh key pair: (PKCS#8 v1 DER, SPKI DER).
pub(crate) fn generate(spec: KeySpec) -> Result<(Secret, Vec<u8>), ProtectorError> {
    let pair =
        EcdsaKeyPair::generate(curve(spec)?.signing).map_err(|_| ProtectorError::Crypto("ECC"))?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| ProtectorError::Crypto("ECC"))?;
    let public = pair
        .public_key()
        .as_der()
        .map_err(|_| ProtectorError::Crypto("ECC"))?;
    Ok((
        Secret::new(pkcs8.as_ref().to_vec()),
        public.as_ref().to_vec(),
    ))
}

fn parse_pair(spec: KeySpec, pkcs8: &[u8]) -> Result<EcdsaKeyPair, ProtectorError> {
    EcdsaKeyPair::from_pkcs8(curve(spec)?.signing, pkcs8)
        .map_err(|_| ProtectorError::MalformedMaterial)
}

/// The SPKI DER of a PKCS#8 private key.
pub(crate) fn public_key(spec: KeySpec, pkcs8: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    let der = parse_pair(spec, pkcs8)?
        .public_key()
        .as_der()
        .map_err(|_| ProtectorError::Crypto("ECC"))?;
    Ok(der.as_ref().to_vec())
}

/// An ECDSA signing key.
pub(crate) struct EcdsaSigner {
    pair: EcdsaKeyPair,
    digest: &'static digest::Algorithm,
}

impl EcdsaSigner {
    pub(crate) fn load(spec: KeySpec, pkcs8: &[u8]) -> Result<Self, ProtectorError> {
        Ok(EcdsaSigner {
            pair: parse_pair(spec, pkcs8)?,
            digest: curve(spec)?.digest,
        })
    }
}

impl Signer for EcdsaSigner {
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        let _ = algorithm; // one algorithm per curve; the caller checked it
        let sig = match message_type {
            MessageType::Raw => self.pair.sign(&SystemRandom::new(), message),
            MessageType::Digest => self.pair.sign_digest(&digest_of(self.digest, message)?),
            MessageType::ExternalMu => return Err(crate::external_mu_only_ml_dsa()),
        }
        .map_err(|_| ProtectorError::Crypto("ECDSA"))?;
        Ok(sig.as_ref().to_vec())
    }
}

/// Verify with an ECDSA public key (SPKI DER).
pub(crate) fn verify(
    spec: KeySpec,
    spki: &[u8],
    message_type: MessageType,
    message: &[u8],
    sig: &[u8],
) -> Result<bool, ProtectorError> {
    let curve = curve(spec)?;
    crate::spki::check(spki).map_err(|_| ProtectorError::MalformedMaterial)?;
    let key = ParsedPublicKey::new(curve.verification, spki)
        .map_err(|_| ProtectorError::MalformedMaterial)?;
    Ok(match message_type {
        MessageType::Raw => key.verify_sig(message, sig).is_ok(),
        MessageType::Digest => key
            .verify_digest_sig(&digest_of(curve.digest, message)?, sig)
            .is_ok(),
        MessageType::ExternalMu => return Err(crate::external_mu_only_ml_dsa()),
    })
}

/// An ECDH key on a NIST curve.
pub(crate) struct Ecdh {
    key: agreement::PrivateKey,
    algorithm: &'static agreement::Algorithm,
}

impl Ecdh {
    pub(crate) fn load(spec: KeySpec, pkcs8: &[u8]) -> Result<Self, ProtectorError> {
        let algorithm = curve(spec)?
            .agreement
            .ok_or(ProtectorError::MalformedMaterial)?;
        let key = agreement::PrivateKey::from_private_key_der(algorithm, pkcs8)
            .map_err(|_| ProtectorError::MalformedMaterial)?;
        Ok(Ecdh { key, algorithm })
    }
}

impl KeyAgreement for Ecdh {
    fn derive(&self, peer: &[u8]) -> Result<Secret, ProtectorError> {
        // AWS takes the peer's key as DER SubjectPublicKeyInfo only; aws-lc
        // would also take a bare SEC1 point.
        crate::spki::check(peer).map_err(|_| crate::bad_peer_key())?;
        agreement::agree(
            &self.key,
            agreement::UnparsedPublicKey::new(self.algorithm, peer),
            crate::bad_peer_key(),
            |shared| Ok(Secret::new(shared.to_vec())),
        )
    }
}
