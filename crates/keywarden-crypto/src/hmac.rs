//! HMAC keys (`HMAC_224/256/384/512`) with aws-lc-rs.

use aws_lc_rs::hmac;
use keywarden_core::key_spec::{KeySpec, MacAlgorithm};
use keywarden_core::protector::{MacKey, ProtectorError};
use keywarden_core::secret::Secret;

/// The length of a generated key of each HMAC spec, in bytes, and the
/// longest key the spec takes: AWS generates keys as long as the hash
/// output and imports keys from that length up to 64 bytes (HMAC_224/256)
/// or 128 bytes (HMAC_384/512), one hash block.
fn key_lens(spec: KeySpec) -> Option<(usize, usize)> {
    match spec {
        KeySpec::Hmac224 => Some((28, 64)),
        KeySpec::Hmac256 => Some((32, 64)),
        KeySpec::Hmac384 => Some((48, 128)),
        KeySpec::Hmac512 => Some((64, 128)),
        _ => None,
    }
}

fn algorithm(mac: MacAlgorithm) -> hmac::Algorithm {
    match mac {
        MacAlgorithm::HmacSha224 => hmac::HMAC_SHA224,
        MacAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
        MacAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
        MacAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
    }
}

/// Fresh random key bytes of the spec's length.
pub(crate) fn generate(spec: KeySpec) -> Result<Secret, ProtectorError> {
    let (len, _) = key_lens(spec).ok_or(ProtectorError::MalformedMaterial)?;
    let mut key = Secret::zeroed(len);
    aws_lc_rs::rand::fill(key.expose_mut()).map_err(|_| ProtectorError::Crypto("rand"))?;
    Ok(key)
}

/// An HMAC key of one spec. aws-lc-rs keeps the key schedule; the raw
/// bytes are not kept.
pub(crate) struct HmacKey {
    spec: KeySpec,
    key: hmac::Key,
}

impl HmacKey {
    /// The key whose raw bytes are `body`, of a length the spec takes.
    pub(crate) fn load(spec: KeySpec, body: &[u8]) -> Result<Self, ProtectorError> {
        let (min, max) = key_lens(spec).ok_or(ProtectorError::MalformedMaterial)?;
        if !(min..=max).contains(&body.len()) {
            return Err(ProtectorError::MalformedMaterial);
        }
        let mac = *spec
            .mac_algorithms()
            .first()
            .ok_or(ProtectorError::MalformedMaterial)?;
        Ok(HmacKey {
            spec,
            key: hmac::Key::new(algorithm(mac), body),
        })
    }

    fn check(&self, mac: MacAlgorithm) -> Result<(), ProtectorError> {
        if self.spec.mac_algorithms().contains(&mac) {
            Ok(())
        } else {
            Err(ProtectorError::Unsupported(format!(
                "MacAlgorithm {mac} is not valid for KeySpec {}",
                self.spec
            )))
        }
    }
}

impl MacKey for HmacKey {
    fn mac(&self, algorithm: MacAlgorithm, message: &[u8]) -> Result<Vec<u8>, ProtectorError> {
        self.check(algorithm)?;
        Ok(hmac::sign(&self.key, message).as_ref().to_vec())
    }

    fn verify_mac(
        &self,
        algorithm: MacAlgorithm,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, ProtectorError> {
        self.check(algorithm)?;
        // aws-lc-rs compares in constant time.
        Ok(hmac::verify(&self.key, message, mac).is_ok())
    }
}
