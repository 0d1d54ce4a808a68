//! ML-KEM keys (`ML_KEM_512/768/1024`, FIPS 203) from their 64-byte seed
//! d‖z.
//!
//! RustCrypto's `ml-kem` expands the seed and decapsulates (aws-lc-rs can
//! neither take a seed nor export one); aws-lc-rs encapsulates to a public
//! key. The tests cross both ways. Public keys are SPKI with the NIST OIDs
//! id-alg-ml-kem-512/768/1024 (2.16.840.1.101.3.4.4.1/2/3) and absent
//! parameters; data key pairs are PKCS#8 in the seed form of the IETF
//! LAMPS ML-KEM certificate profile (`[0] IMPLICIT OCTET STRING`).

use aws_lc_rs::kem;
use keywarden_core::key_spec::KeySpec;
use keywarden_core::protector::{Decapsulator, ProtectorError};
use keywarden_core::secret::Secret;
use ml_kem::pkcs8::{EncodePrivateKey, EncodePublicKey};
use ml_kem::{Decapsulate, DecapsulationKey, MlKem1024, MlKem512, MlKem768};
use spki::ObjectIdentifier;
use zeroize::Zeroizing;

const SEED_LEN: usize = 64;

struct Level {
    aws: &'static kem::Algorithm,
    oid: ObjectIdentifier,
    ciphertext_len: usize,
}

fn level(spec: KeySpec) -> Result<Level, ProtectorError> {
    Ok(match spec {
        KeySpec::MlKem512 => Level {
            aws: &kem::ML_KEM_512,
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.1"),
            ciphertext_len: 768,
        },
        KeySpec::MlKem768 => Level {
            aws: &kem::ML_KEM_768,
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.2"),
            ciphertext_len: 1088,
        },
        KeySpec::MlKem1024 => Level {
            aws: &kem::ML_KEM_1024,
            oid: ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.4.3"),
            ciphertext_len: 1568,
        },
        _ => return Err(ProtectorError::MalformedMaterial),
    })
}

/// The decapsulation key of a seed, for one parameter set.
enum Key {
    L512(DecapsulationKey<MlKem512>),
    L768(DecapsulationKey<MlKem768>),
    L1024(DecapsulationKey<MlKem1024>),
}

impl Key {
    fn new(spec: KeySpec, seed: &[u8]) -> Result<Self, ProtectorError> {
        let seed: Zeroizing<ml_kem::Seed> = Zeroizing::new(
            ml_kem::Seed::try_from(seed).map_err(|_| ProtectorError::MalformedMaterial)?,
        );
        Ok(match spec {
            KeySpec::MlKem512 => Key::L512(DecapsulationKey::from_seed(*seed)),
            KeySpec::MlKem768 => Key::L768(DecapsulationKey::from_seed(*seed)),
            KeySpec::MlKem1024 => Key::L1024(DecapsulationKey::from_seed(*seed)),
            _ => return Err(ProtectorError::MalformedMaterial),
        })
    }

    fn public_key(&self) -> Result<Vec<u8>, ProtectorError> {
        match self {
            Key::L512(k) => k.encapsulation_key().to_public_key_der(),
            Key::L768(k) => k.encapsulation_key().to_public_key_der(),
            Key::L1024(k) => k.encapsulation_key().to_public_key_der(),
        }
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| ProtectorError::Crypto("ML-KEM"))
    }

    fn pkcs8(&self) -> Result<Secret, ProtectorError> {
        match self {
            Key::L512(k) => k.to_pkcs8_der(),
            Key::L768(k) => k.to_pkcs8_der(),
            Key::L1024(k) => k.to_pkcs8_der(),
        }
        .map(|d| Secret::new(d.as_bytes().to_vec()))
        .map_err(|_| ProtectorError::Crypto("ML-KEM"))
    }
}

/// A fresh seed and its SPKI.
pub(crate) fn generate(spec: KeySpec) -> Result<(Secret, Vec<u8>), ProtectorError> {
    let mut seed = Secret::zeroed(SEED_LEN);
    aws_lc_rs::rand::fill(seed.expose_mut()).map_err(|_| ProtectorError::Crypto("rand"))?;
    let public = public_key(spec, seed.expose())?;
    Ok((seed, public))
}

/// The SPKI of a seed.
pub(crate) fn public_key(spec: KeySpec, seed: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    Key::new(spec, seed)?.public_key()
}

/// A data key pair: (PKCS#8 seed form, SPKI DER).
pub(crate) fn generate_pair(spec: KeySpec) -> Result<(Secret, Vec<u8>), ProtectorError> {
    let (seed, public) = generate(spec)?;
    Ok((Key::new(spec, seed.expose())?.pkcs8()?, public))
}

/// Encapsulation to an ML-KEM public key (SPKI DER).
pub(crate) fn encapsulate(spec: KeySpec, spki: &[u8]) -> Result<(Vec<u8>, Secret), ProtectorError> {
    let level = level(spec)?;
    let raw =
        crate::spki::key_bits(spki, level.oid).map_err(|_| ProtectorError::MalformedMaterial)?;
    let key = kem::EncapsulationKey::new(level.aws, raw)
        .map_err(|_| ProtectorError::MalformedMaterial)?;
    let (ciphertext, shared) = key
        .encapsulate()
        .map_err(|_| ProtectorError::Crypto("ML-KEM"))?;
    Ok((
        ciphertext.as_ref().to_vec(),
        Secret::new(shared.as_ref().to_vec()),
    ))
}

/// An ML-KEM decapsulation key.
pub(crate) struct MlKemKey {
    key: Key,
    ciphertext_len: usize,
}

impl MlKemKey {
    pub(crate) fn load(spec: KeySpec, seed: &[u8]) -> Result<Self, ProtectorError> {
        Ok(MlKemKey {
            key: Key::new(spec, seed)?,
            ciphertext_len: level(spec)?.ciphertext_len,
        })
    }
}

impl Decapsulator for MlKemKey {
    fn decapsulate(&self, ciphertext: &[u8]) -> Result<Secret, ProtectorError> {
        if ciphertext.len() != self.ciphertext_len {
            return Err(ProtectorError::InvalidInput(format!(
                "Ciphertext must be {} bytes for this key",
                self.ciphertext_len
            )));
        }
        let wrong_len = |_| ProtectorError::InvalidInput("Ciphertext has the wrong length".into());
        // ML-KEM rejects implicitly: a ciphertext that was not made for this
        // key gives an unrelated shared secret, never an error.
        let shared = match &self.key {
            Key::L512(k) => k.decapsulate_slice(ciphertext).map_err(wrong_len)?,
            Key::L768(k) => k.decapsulate_slice(ciphertext).map_err(wrong_len)?,
            Key::L1024(k) => k.decapsulate_slice(ciphertext).map_err(wrong_len)?,
        };
        let out = Secret::new(shared.to_vec());
        let mut shared = shared;
        zeroize::Zeroize::zeroize(shared.as_mut_slice());
        Ok(out)
    }
}
