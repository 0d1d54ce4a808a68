//! ML-DSA keys (`ML_DSA_44/65/87`, FIPS 204) from their 32-byte seed ξ.
//!
//! `ML_DSA_SHAKE_256` over a `RAW` message is pure ML-DSA with an empty
//! context, signed and verified by aws-lc-rs. `EXTERNAL_MU` (the caller
//! computed μ = SHAKE256(tr ‖ 0 ‖ 0 ‖ M, 64) itself) is signed and verified
//! by RustCrypto's `ml-dsa`, because aws-lc-rs has no μ API; both expand the
//! same ξ to the same key (tested). Signing is hedged (fresh randomness).
//! <https://docs.aws.amazon.com/kms/latest/developerguide/asymmetric-key-specs.html>

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    self, KeyPair as _, ParsedPublicKey, PqdsaKeyPair, PqdsaSigningAlgorithm,
    PqdsaVerificationAlgorithm,
};
use hybrid_array::typenum::U64;
use hybrid_array::Array;
use keywarden_core::key_spec::{KeySpec, MessageType, SigningAlgorithm};
use keywarden_core::protector::{ProtectorError, Signer};
use keywarden_core::secret::Secret;
use ml_dsa::{EncodedVerifyingKey, ExpandedSigningKey, MlDsaParams, VerifyingKey};
use spki::ObjectIdentifier;
use zeroize::Zeroizing;

use crate::rng::AwsLcRng;

const SEED_LEN: usize = 32;
const MU_LEN: usize = 64;

struct Level {
    signing: &'static PqdsaSigningAlgorithm,
    verification: &'static PqdsaVerificationAlgorithm,
    /// id-ml-dsa-44/65/87 (NIST CSOR, RFC 9881).
    oid: ObjectIdentifier,
}

fn level(spec: KeySpec) -> Result<Level, ProtectorError> {
    Ok(match spec {
        KeySpec::MlDsa44 => Level {
            signing: &signature::ML_DSA_44_SIGNING,
            verification: &signature::ML_DSA_44,
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.17"),
        },
        KeySpec::MlDsa65 => Level {
            signing: &signature::ML_DSA_65_SIGNING,
            verification: &signature::ML_DSA_65,
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.18"),
        },
        KeySpec::MlDsa87 => Level {
            signing: &signature::ML_DSA_87_SIGNING,
            verification: &signature::ML_DSA_87,
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.3.19"),
        },
        _ => return Err(ProtectorError::MalformedMaterial),
    })
}

fn pair(spec: KeySpec, seed: &[u8]) -> Result<PqdsaKeyPair, ProtectorError> {
    if seed.len() != SEED_LEN {
        return Err(ProtectorError::MalformedMaterial);
    }
    PqdsaKeyPair::from_seed(level(spec)?.signing, seed)
        .map_err(|_| ProtectorError::MalformedMaterial)
}

/// A fresh seed ξ and its SPKI.
pub(crate) fn generate(spec: KeySpec) -> Result<(Secret, Vec<u8>), ProtectorError> {
    let mut seed = Secret::zeroed(SEED_LEN);
    aws_lc_rs::rand::fill(seed.expose_mut()).map_err(|_| ProtectorError::Crypto("rand"))?;
    let public = public_key(spec, seed.expose())?;
    Ok((seed, public))
}

/// The SPKI of a seed.
pub(crate) fn public_key(spec: KeySpec, seed: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    let der = pair(spec, seed)?
        .public_key()
        .as_der()
        .map_err(|_| ProtectorError::Crypto("ML-DSA"))?;
    Ok(der.as_ref().to_vec())
}

fn sign_mu<P: MlDsaParams>(seed: &[u8; SEED_LEN], mu: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    let mu = mu_array(mu)?;
    let xi = Zeroizing::new(ml_dsa::Seed::from(*seed));
    let key = ExpandedSigningKey::<P>::from_seed(&xi);
    let sig = key
        .sign_mu_randomized(&mu, &mut AwsLcRng)
        .map_err(|_| ProtectorError::Crypto("ML-DSA"))?;
    Ok(sig.encode().to_vec())
}

fn verify_mu<P: MlDsaParams>(raw: &[u8], mu: &[u8], sig: &[u8]) -> Result<bool, ProtectorError> {
    let mu = mu_array(mu)?;
    let enc =
        EncodedVerifyingKey::<P>::try_from(raw).map_err(|_| ProtectorError::MalformedMaterial)?;
    let key = VerifyingKey::<P>::decode(&enc);
    let Ok(sig) = ml_dsa::Signature::<P>::try_from(sig) else {
        return Ok(false);
    };
    Ok(key.verify_mu(&mu, &sig))
}

fn mu_array(mu: &[u8]) -> Result<Array<u8, U64>, ProtectorError> {
    Array::try_from(mu).map_err(|_| {
        ProtectorError::InvalidInput(format!("An EXTERNAL_MU message must be {MU_LEN} bytes"))
    })
}

/// An ML-DSA signing key.
pub(crate) struct MlDsaSigner {
    spec: KeySpec,
    pair: PqdsaKeyPair,
    seed: Zeroizing<[u8; SEED_LEN]>,
}

impl MlDsaSigner {
    pub(crate) fn load(spec: KeySpec, seed: &[u8]) -> Result<Self, ProtectorError> {
        let pair = pair(spec, seed)?;
        let seed = Zeroizing::new(
            seed.try_into()
                .map_err(|_| ProtectorError::MalformedMaterial)?,
        );
        Ok(MlDsaSigner { spec, pair, seed })
    }
}

impl Signer for MlDsaSigner {
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        if algorithm != SigningAlgorithm::MlDsaShake256 {
            return Err(ProtectorError::Unsupported(format!(
                "SigningAlgorithm {algorithm} is not valid for ML-DSA keys"
            )));
        }
        match message_type {
            MessageType::Raw => {
                let mut sig = vec![0u8; self.pair.algorithm().signature_len()];
                let len = self
                    .pair
                    .sign(message, &mut sig)
                    .map_err(|_| ProtectorError::Crypto("ML-DSA"))?;
                sig.truncate(len);
                Ok(sig)
            }
            MessageType::ExternalMu => match self.spec {
                KeySpec::MlDsa44 => sign_mu::<ml_dsa::MlDsa44>(&self.seed, message),
                KeySpec::MlDsa65 => sign_mu::<ml_dsa::MlDsa65>(&self.seed, message),
                _ => sign_mu::<ml_dsa::MlDsa87>(&self.seed, message),
            },
            MessageType::Digest => Err(crate::digest_not_allowed()),
        }
    }
}

/// Verify with an ML-DSA public key (SPKI DER).
pub(crate) fn verify(
    spec: KeySpec,
    spki: &[u8],
    message_type: MessageType,
    message: &[u8],
    sig: &[u8],
) -> Result<bool, ProtectorError> {
    let level = level(spec)?;
    let raw =
        crate::spki::key_bits(spki, level.oid).map_err(|_| ProtectorError::MalformedMaterial)?;
    match message_type {
        MessageType::Raw => {
            let key = ParsedPublicKey::new(level.verification, spki)
                .map_err(|_| ProtectorError::MalformedMaterial)?;
            Ok(key.verify_sig(message, sig).is_ok())
        }
        MessageType::ExternalMu => match spec {
            KeySpec::MlDsa44 => verify_mu::<ml_dsa::MlDsa44>(raw, message, sig),
            KeySpec::MlDsa65 => verify_mu::<ml_dsa::MlDsa65>(raw, message, sig),
            _ => verify_mu::<ml_dsa::MlDsa87>(raw, message, sig),
        },
        MessageType::Digest => Err(crate::digest_not_allowed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shake::{ExtendableOutput, Update};

    /// μ = SHAKE256(SHAKE256(pk, 64) ‖ 0x00 ‖ 0x00 ‖ M, 64): FIPS 204
    /// Algorithm 2 with an empty context, as a caller of EXTERNAL_MU computes it.
    fn mu(raw_public: &[u8], message: &[u8]) -> Vec<u8> {
        let mut tr = [0u8; 64];
        shake::Shake256::default()
            .chain(raw_public)
            .finalize_xof_into(&mut tr);
        let mut out = vec![0u8; 64];
        shake::Shake256::default()
            .chain(tr)
            .chain([0u8, 0u8])
            .chain(message)
            .finalize_xof_into(&mut out);
        out
    }

    #[test]
    fn both_libraries_expand_a_seed_to_the_same_key_and_mu_matches_raw() {
        for spec in [KeySpec::MlDsa44, KeySpec::MlDsa65, KeySpec::MlDsa87] {
            let (seed, spki) = generate(spec).unwrap();
            let seed: &[u8; 32] = seed.expose().try_into().unwrap();
            let xi = ml_dsa::Seed::from(*seed);
            let rust_public = match spec {
                KeySpec::MlDsa44 => ExpandedSigningKey::<ml_dsa::MlDsa44>::from_seed(&xi)
                    .verifying_key()
                    .encode()
                    .to_vec(),
                KeySpec::MlDsa65 => ExpandedSigningKey::<ml_dsa::MlDsa65>::from_seed(&xi)
                    .verifying_key()
                    .encode()
                    .to_vec(),
                _ => ExpandedSigningKey::<ml_dsa::MlDsa87>::from_seed(&xi)
                    .verifying_key()
                    .encode()
                    .to_vec(),
            };
            let raw = crate::spki::key_bits(&spki, level(spec).unwrap().oid).unwrap();
            assert_eq!(raw, &rust_public[..], "{spec}");

            // A signature over μ verifies as a signature over the message
            // (aws-lc-rs) and the other way round (ml-dsa).
            let signer = MlDsaSigner::load(spec, seed).unwrap();
            let message = b"message for ML-DSA";
            let m = mu(raw, message);
            let alg = SigningAlgorithm::MlDsaShake256;
            let over_mu = signer.sign(alg, MessageType::ExternalMu, &m).unwrap();
            assert!(verify(spec, &spki, MessageType::Raw, message, &over_mu).unwrap());
            let over_raw = signer.sign(alg, MessageType::Raw, message).unwrap();
            assert!(verify(spec, &spki, MessageType::ExternalMu, &m, &over_raw).unwrap());
            assert!(
                !verify(spec, &spki, MessageType::ExternalMu, &m[..63], &over_raw).is_ok_and(|v| v)
            );
            let mut other = m.clone();
            other[0] ^= 1;
            assert!(!verify(spec, &spki, MessageType::ExternalMu, &other, &over_raw).unwrap());
        }
    }
}
