//! SM2 keys (GB/T 32918) with RustCrypto's `sm2`: SM2DSA signatures with
//! SM3, SM2PKE encryption, and ECDH on the SM2 curve.
//!
//! - Signatures use the distinguishing ID `1234567812345678`, the default
//!   AWS documents for verifying SM2 signatures outside KMS
//!   (<https://docs.aws.amazon.com/kms/latest/developerguide/offline-operations.html>).
//!   A `RAW` message is hashed as e = SM3(Z_A ‖ M); a `DIGEST` message is
//!   that e, 32 bytes, computed by the caller. Signatures are DER
//!   `SEQUENCE { r, s }`.
//! - SM2PKE ciphertexts are the GM/T 0009 ASN.1 DER encoding
//!   `SEQUENCE { x, y INTEGER, hash (C3) OCTET STRING, ciphertext (C2) OCTET STRING }`
//!   (C1C3C2 order), the encoding Chinese SM2 toolkits (GmSSL,
//!   BouncyCastle's DER mode) exchange.
//! - ECDH is the raw x-coordinate of d·Q, as for the NIST curves (not the
//!   SM2 key exchange protocol of GB/T 32918.3).
//!
//! Public keys are SPKI with id-ecPublicKey and the SM2 curve
//! 1.2.156.10197.1.301; private keys are PKCS#8 with the same algorithm.

use elliptic_curve::ecdh::diffie_hellman;
use elliptic_curve::Generate;
use keywarden_core::key_spec::{EncryptionAlgorithm, KeySpec, MessageType, SigningAlgorithm};
use keywarden_core::protector::{Decrypter, KeyAgreement, ProtectorError, Signer};
use keywarden_core::secret::Secret;
use sm2::dsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use sm2::dsa::signature::{RandomizedSigner, Verifier};
use sm2::dsa::{Signature, SigningKey, VerifyingKey};
use sm2::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use sm2::pke::{DecryptingKey, EncryptingKey};
use sm2::{PublicKey, SecretKey};

use crate::rng::AwsLcRng;

/// The distinguishing ID AWS signs with.
pub const DISTINGUISHING_ID: &str = "1234567812345678";
const DIGEST_LEN: usize = 32;

/// A fresh key pair: (PKCS#8 DER, SPKI DER).
pub(crate) fn generate() -> Result<(Secret, Vec<u8>), ProtectorError> {
    let secret = SecretKey::generate_from_rng(&mut AwsLcRng);
    let pkcs8 = secret
        .to_pkcs8_der()
        .map_err(|_| ProtectorError::Crypto("SM2"))?;
    let public = spki(&secret.public_key())?;
    Ok((Secret::new(pkcs8.as_bytes().to_vec()), public))
}

fn spki(public: &PublicKey) -> Result<Vec<u8>, ProtectorError> {
    public
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|_| ProtectorError::Crypto("SM2"))
}

fn parse_secret(pkcs8: &[u8]) -> Result<SecretKey, ProtectorError> {
    SecretKey::from_pkcs8_der(pkcs8).map_err(|_| ProtectorError::MalformedMaterial)
}

fn parse_public(spki: &[u8]) -> Option<PublicKey> {
    PublicKey::from_public_key_der(spki).ok()
}

/// The SPKI of a PKCS#8 private key.
pub(crate) fn public_key(pkcs8: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    spki(&parse_secret(pkcs8)?.public_key())
}

/// An SM2 signing key.
pub(crate) struct Sm2Signer {
    key: SigningKey,
}

impl Sm2Signer {
    pub(crate) fn load(pkcs8: &[u8]) -> Result<Self, ProtectorError> {
        let key = SigningKey::new(DISTINGUISHING_ID, &parse_secret(pkcs8)?)
            .map_err(|_| ProtectorError::MalformedMaterial)?;
        Ok(Sm2Signer { key })
    }
}

impl Signer for Sm2Signer {
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        if algorithm != SigningAlgorithm::Sm2Dsa {
            return Err(ProtectorError::Unsupported(format!(
                "SigningAlgorithm {algorithm} is not valid for SM2 keys"
            )));
        }
        let sig: Signature = match message_type {
            MessageType::Raw => self.key.try_sign_with_rng(&mut AwsLcRng, message),
            MessageType::Digest => {
                if message.len() != DIGEST_LEN {
                    return Err(ProtectorError::InvalidInput(
                        "A DIGEST message for SM2DSA must be 32 bytes".into(),
                    ));
                }
                self.key.sign_prehash_with_rng(&mut AwsLcRng, message)
            }
            MessageType::ExternalMu => return Err(crate::external_mu_only_ml_dsa()),
        }
        .map_err(|_| ProtectorError::Crypto("SM2DSA"))?;
        Ok(sig.to_der().to_vec())
    }
}

/// Verify an SM2DSA signature with an SM2 public key (SPKI DER).
pub(crate) fn verify(
    spki: &[u8],
    message_type: MessageType,
    message: &[u8],
    sig: &[u8],
) -> Result<bool, ProtectorError> {
    let public = parse_public(spki).ok_or(ProtectorError::MalformedMaterial)?;
    let key = VerifyingKey::new(DISTINGUISHING_ID, public)
        .map_err(|_| ProtectorError::MalformedMaterial)?;
    let Ok(sig) = Signature::from_der(sig) else {
        return Ok(false);
    };
    Ok(match message_type {
        MessageType::Raw => key.verify(message, &sig).is_ok(),
        MessageType::Digest => {
            if message.len() != DIGEST_LEN {
                return Err(ProtectorError::InvalidInput(
                    "A DIGEST message for SM2DSA must be 32 bytes".into(),
                ));
            }
            key.verify_prehash(message, &sig).is_ok()
        }
        MessageType::ExternalMu => return Err(crate::external_mu_only_ml_dsa()),
    })
}

/// SM2PKE to an SM2 public key (SPKI DER).
pub(crate) fn encrypt(
    spki: &[u8],
    algorithm: EncryptionAlgorithm,
    plaintext: &[u8],
) -> Result<Vec<u8>, ProtectorError> {
    if algorithm != EncryptionAlgorithm::Sm2Pke {
        return Err(ProtectorError::Unsupported(format!(
            "EncryptionAlgorithm {algorithm} is not valid for SM2 keys"
        )));
    }
    let max = KeySpec::Sm2.max_plaintext(algorithm);
    if plaintext.len() > max {
        return Err(ProtectorError::InvalidInput(format!(
            "Plaintext is longer than {max} bytes, the limit of SM2PKE"
        )));
    }
    let public = parse_public(spki).ok_or(ProtectorError::MalformedMaterial)?;
    EncryptingKey::new(public)
        .encrypt_der(&mut AwsLcRng, plaintext)
        .map_err(|_| ProtectorError::Crypto("SM2PKE"))
}

/// An SM2PKE decryption key.
pub(crate) struct Sm2Decrypter {
    key: DecryptingKey,
}

impl Sm2Decrypter {
    pub(crate) fn load(pkcs8: &[u8]) -> Result<Self, ProtectorError> {
        Ok(Sm2Decrypter {
            key: DecryptingKey::new(parse_secret(pkcs8)?),
        })
    }
}

impl Decrypter for Sm2Decrypter {
    fn decrypt(
        &self,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Secret, ProtectorError> {
        if algorithm != EncryptionAlgorithm::Sm2Pke {
            return Err(ProtectorError::Unsupported(format!(
                "EncryptionAlgorithm {algorithm} is not valid for SM2 keys"
            )));
        }
        self.key
            .decrypt_der(ciphertext)
            .map(Secret::new)
            .map_err(|_| ProtectorError::Authentication)
    }
}

/// An SM2 key for ECDH.
pub(crate) struct Sm2Ecdh {
    key: SecretKey,
}

impl Sm2Ecdh {
    pub(crate) fn load(pkcs8: &[u8]) -> Result<Self, ProtectorError> {
        Ok(Sm2Ecdh {
            key: parse_secret(pkcs8)?,
        })
    }
}

impl KeyAgreement for Sm2Ecdh {
    fn derive(&self, peer: &[u8]) -> Result<Secret, ProtectorError> {
        let peer = parse_public(peer).ok_or_else(crate::bad_peer_key)?;
        let shared = diffie_hellman(self.key.to_nonzero_scalar(), peer.as_affine());
        Ok(Secret::new(shared.raw_secret_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sm3::{Digest, Sm3};

    /// e = SM3(Z_A ‖ M) with Z_A = SM3(ENTL ‖ ID ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A)
    /// (GB/T 32918.2 §5.5), computed here from the curve's published
    /// parameters as an offline verifier would.
    fn e(public: &PublicKey, message: &[u8]) -> Vec<u8> {
        let a = hex::decode("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC")
            .unwrap();
        let b = hex::decode("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93")
            .unwrap();
        let gx = hex::decode("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7")
            .unwrap();
        let gy = hex::decode("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
            .unwrap();
        let point = elliptic_curve::sec1::ToSec1Point::to_sec1_point(public, false);
        let xy = &point.as_bytes()[1..];
        let id = DISTINGUISHING_ID.as_bytes();
        let entl = ((id.len() * 8) as u16).to_be_bytes();
        let z = Sm3::new()
            .chain_update(entl)
            .chain_update(id)
            .chain_update(a)
            .chain_update(b)
            .chain_update(gx)
            .chain_update(gy)
            .chain_update(xy)
            .finalize();
        Sm3::new()
            .chain_update(z)
            .chain_update(message)
            .finalize()
            .to_vec()
    }

    #[test]
    fn digest_is_sm3_of_za_and_message() {
        let (pkcs8, spki) = generate().unwrap();
        let public = parse_public(&spki).unwrap();
        let signer = Sm2Signer::load(pkcs8.expose()).unwrap();
        let message = b"message to sign with SM2";
        let digest = e(&public, message);
        let alg = SigningAlgorithm::Sm2Dsa;
        let over_digest = signer.sign(alg, MessageType::Digest, &digest).unwrap();
        assert!(verify(&spki, MessageType::Raw, message, &over_digest).unwrap());
        let over_raw = signer.sign(alg, MessageType::Raw, message).unwrap();
        assert!(verify(&spki, MessageType::Digest, &digest, &over_raw).unwrap());
        assert!(!verify(&spki, MessageType::Digest, &e(&public, b"other"), &over_raw).unwrap());
        assert!(matches!(
            signer.sign(alg, MessageType::Digest, &digest[..31]),
            Err(ProtectorError::InvalidInput(_))
        ));
    }

    #[test]
    fn spki_names_id_ec_public_key_and_the_sm2_curve() {
        let (_, spki) = generate().unwrap();
        // AlgorithmIdentifier { id-ecPublicKey, 1.2.156.10197.1.301 }
        let algorithm = hex::decode("301306072a8648ce3d020106082a811ccf5501822d").unwrap();
        assert_eq!(&spki[2..2 + algorithm.len()], &algorithm[..]);
        assert_eq!(spki.len(), 91);
    }

    #[test]
    fn sm2pke_is_c1c3c2_der() {
        let (pkcs8, spki) = generate().unwrap();
        let alg = EncryptionAlgorithm::Sm2Pke;
        let ct = encrypt(&spki, alg, b"hello").unwrap();
        // SEQUENCE { INTEGER x, INTEGER y, OCTET STRING (32) C3, OCTET STRING (5) C2 }
        assert_eq!(ct[0], 0x30);
        assert_eq!(ct[ct.len() - 7..ct.len() - 5], [0x04, 0x05]);
        assert_eq!(ct[ct.len() - 41..ct.len() - 39], [0x04, 0x20]);
        let d = Sm2Decrypter::load(pkcs8.expose()).unwrap();
        assert_eq!(d.decrypt(alg, &ct).unwrap().expose(), b"hello");
        let max = KeySpec::Sm2.max_plaintext(alg);
        let long = vec![9u8; max];
        let ct = encrypt(&spki, alg, &long).unwrap();
        assert_eq!(d.decrypt(alg, &ct).unwrap().expose(), &long[..]);
        let mut bad = ct.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            d.decrypt(alg, &bad),
            Err(ProtectorError::Authentication)
        ));
        assert!(matches!(
            d.decrypt(alg, b"junk"),
            Err(ProtectorError::Authentication)
        ));
        assert!(matches!(
            encrypt(&spki, alg, &vec![0u8; max + 1]),
            Err(ProtectorError::InvalidInput(_))
        ));
    }
}
