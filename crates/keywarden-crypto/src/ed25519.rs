//! Ed25519 keys (`ECC_NIST_EDWARDS25519`): pure Ed25519 (`ED25519_SHA_512`)
//! with aws-lc-rs, Ed25519ph (`ED25519_PH_SHA_512`, RFC 8032 §5.1 with
//! an empty context) with ed25519-dalek, which aws-lc-rs has no API for.
//! Both derive the key from the same 32-byte RFC 8032 seed.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, ParsedPublicKey};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use keywarden_core::key_spec::{MessageType, SigningAlgorithm};
use keywarden_core::protector::{ProtectorError, Signer};
use keywarden_core::secret::Secret;
use sha2::digest::consts::U64;
use sha2::digest::{FixedOutput, HashMarker, Output, OutputSizeUser, Update};
use sha2::{Digest as _, Sha512};
use spki::ObjectIdentifier;
use zeroize::Zeroizing;

/// id-Ed25519 (RFC 8410).
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const SEED_LEN: usize = 32;

/// A SHA-512 digest computed elsewhere (a `DIGEST` message), in the shape
/// ed25519-dalek's prehashed API takes. ed25519-dalek only finalizes it;
/// `update` is never called and changes nothing.
#[derive(Clone, Default)]
struct Sha512Digest(Output<Sha512>);

impl OutputSizeUser for Sha512Digest {
    type OutputSize = U64;
}
impl Update for Sha512Digest {
    fn update(&mut self, _data: &[u8]) {}
}
impl FixedOutput for Sha512Digest {
    fn finalize_into(self, out: &mut Output<Self>) {
        out.copy_from_slice(&self.0);
    }
}
impl HashMarker for Sha512Digest {}

impl Sha512Digest {
    fn new(digest: &[u8]) -> Result<Self, ProtectorError> {
        let mut out = Output::<Sha512>::default();
        if digest.len() != out.len() {
            return Err(ProtectorError::InvalidInput(
                "A DIGEST message for ED25519_PH_SHA_512 must be 64 bytes".into(),
            ));
        }
        out.copy_from_slice(digest);
        Ok(Sha512Digest(out))
    }
}

/// A fresh 32-byte seed and its SPKI.
pub(crate) fn generate() -> Result<(Secret, Vec<u8>), ProtectorError> {
    let mut seed = Secret::zeroed(SEED_LEN);
    aws_lc_rs::rand::fill(seed.expose_mut()).map_err(|_| ProtectorError::Crypto("rand"))?;
    let public = public_key(seed.expose())?;
    Ok((seed, public))
}

fn pair(seed: &[u8]) -> Result<Ed25519KeyPair, ProtectorError> {
    if seed.len() != SEED_LEN {
        return Err(ProtectorError::MalformedMaterial);
    }
    Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| ProtectorError::MalformedMaterial)
}

/// The SPKI of a seed.
pub(crate) fn public_key(seed: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    let der = pair(seed)?
        .public_key()
        .as_der()
        .map_err(|_| ProtectorError::Crypto("Ed25519"))?;
    Ok(der.as_ref().to_vec())
}

/// The 32-byte seed of an imported PKCS#8 (v1 or v2) Ed25519 private key.
pub(crate) fn seed_from_pkcs8(pkcs8: &[u8]) -> Result<Secret, ProtectorError> {
    use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin};
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
        .map_err(|_| ProtectorError::MalformedMaterial)?;
    let seed = pair.seed().map_err(|_| ProtectorError::MalformedMaterial)?;
    let bin: Curve25519SeedBin<'_> = seed
        .as_be_bytes()
        .map_err(|_| ProtectorError::MalformedMaterial)?;
    Ok(Secret::new(bin.as_ref().to_vec()))
}

/// A data key pair: (PKCS#8 v1 DER, SPKI DER).
pub(crate) fn generate_pair() -> Result<(Secret, Vec<u8>), ProtectorError> {
    let (seed, public) = generate()?;
    let pkcs8 = pair(seed.expose())?
        .to_pkcs8v1()
        .map_err(|_| ProtectorError::Crypto("Ed25519"))?;
    Ok((Secret::new(pkcs8.as_ref().to_vec()), public))
}

/// An Ed25519 signing key.
pub(crate) struct Ed25519Signer {
    pure: Ed25519KeyPair,
    prehashed: SigningKey,
}

impl Ed25519Signer {
    pub(crate) fn load(seed: &[u8]) -> Result<Self, ProtectorError> {
        let pure = pair(seed)?;
        let bytes: Zeroizing<[u8; SEED_LEN]> = Zeroizing::new(
            seed.try_into()
                .map_err(|_| ProtectorError::MalformedMaterial)?,
        );
        Ok(Ed25519Signer {
            pure,
            prehashed: SigningKey::from_bytes(&bytes),
        })
    }
}

impl Signer for Ed25519Signer {
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        match (algorithm, message_type) {
            (SigningAlgorithm::Ed25519Sha512, MessageType::Raw) => {
                Ok(self.pure.sign(message).as_ref().to_vec())
            }
            (SigningAlgorithm::Ed25519Sha512, _) => Err(crate::digest_not_allowed()),
            (SigningAlgorithm::Ed25519PhSha512, MessageType::Raw) => self
                .prehashed
                .sign_prehashed(Sha512::new_with_prefix(message), None)
                .map(|s| s.to_bytes().to_vec())
                .map_err(|_| ProtectorError::Crypto("Ed25519ph")),
            (SigningAlgorithm::Ed25519PhSha512, MessageType::Digest) => self
                .prehashed
                .sign_prehashed(Sha512Digest::new(message)?, None)
                .map(|s| s.to_bytes().to_vec())
                .map_err(|_| ProtectorError::Crypto("Ed25519ph")),
            (SigningAlgorithm::Ed25519PhSha512, _) => Err(crate::external_mu_only_ml_dsa()),
            (other, _) => Err(ProtectorError::Unsupported(format!(
                "SigningAlgorithm {other} is not valid for Ed25519 keys"
            ))),
        }
    }
}

/// Verify with an Ed25519 public key (SPKI DER).
pub(crate) fn verify(
    spki: &[u8],
    algorithm: SigningAlgorithm,
    message_type: MessageType,
    message: &[u8],
    sig: &[u8],
) -> Result<bool, ProtectorError> {
    let raw =
        crate::spki::key_bits(spki, ED25519_OID).map_err(|_| ProtectorError::MalformedMaterial)?;
    let raw: &[u8; 32] = raw
        .try_into()
        .map_err(|_| ProtectorError::MalformedMaterial)?;
    match algorithm {
        SigningAlgorithm::Ed25519Sha512 => {
            if message_type != MessageType::Raw {
                return Err(crate::digest_not_allowed());
            }
            let key = ParsedPublicKey::new(&signature::ED25519, spki)
                .map_err(|_| ProtectorError::MalformedMaterial)?;
            Ok(key.verify_sig(message, sig).is_ok())
        }
        SigningAlgorithm::Ed25519PhSha512 => {
            let key =
                VerifyingKey::from_bytes(raw).map_err(|_| ProtectorError::MalformedMaterial)?;
            let Ok(sig) = Signature::from_slice(sig) else {
                return Ok(false);
            };
            let ok = match message_type {
                MessageType::Raw => {
                    key.verify_prehashed(Sha512::new_with_prefix(message), None, &sig)
                }
                MessageType::Digest => {
                    key.verify_prehashed(Sha512Digest::new(message)?, None, &sig)
                }
                MessageType::ExternalMu => return Err(crate::external_mu_only_ml_dsa()),
            };
            Ok(ok.is_ok())
        }
        other => Err(ProtectorError::Unsupported(format!(
            "SigningAlgorithm {other} is not valid for Ed25519 keys"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.3, "TEST abc": Ed25519ph with an empty context.
    #[test]
    fn ed25519ph_matches_rfc_8032_test_abc() {
        let seed = hex::decode("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42")
            .unwrap();
        let public =
            hex::decode("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf")
                .unwrap();
        let expected = hex::decode(
            "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41\
             31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406",
        )
        .unwrap();
        let spki = public_key(&seed).unwrap();
        assert!(spki.ends_with(&public));
        let signer = Ed25519Signer::load(&seed).unwrap();
        let alg = SigningAlgorithm::Ed25519PhSha512;
        assert_eq!(
            signer.sign(alg, MessageType::Raw, b"abc").unwrap(),
            expected
        );
        let digest = Sha512::digest(b"abc");
        assert_eq!(
            signer.sign(alg, MessageType::Digest, &digest).unwrap(),
            expected
        );
        assert!(verify(&spki, alg, MessageType::Raw, b"abc", &expected).unwrap());
        assert!(verify(&spki, alg, MessageType::Digest, &digest, &expected).unwrap());
        assert!(!verify(&spki, alg, MessageType::Raw, b"abd", &expected).unwrap());
        // Pure Ed25519 over the same message is a different signature.
        let pure = signer
            .sign(SigningAlgorithm::Ed25519Sha512, MessageType::Raw, b"abc")
            .unwrap();
        assert_ne!(pure, expected);
        assert!(!verify(&spki, alg, MessageType::Raw, b"abc", &pure).unwrap());
    }
}
