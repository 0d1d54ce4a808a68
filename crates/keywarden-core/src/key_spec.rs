//! Key specs, key usages and algorithms, with AWS's spellings and AWS's
//! rules for which go together.
//!
//! One table ([`KeySpec::usages`] and the `*_algorithms` methods) answers
//! every "is this allowed?" question: CreateKey, DescribeKey, GetPublicKey,
//! CreateGrant and the cryptographic operations all read it.

use serde::{Deserialize, Serialize};

/// An enum whose variants are AWS names, with `as_str`, `parse` and `ALL`.
macro_rules! aws_names {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in the order of the AWS model.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The AWS spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value AWS spells `s`; `None` for any other string.
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

aws_names! {
    /// The type of a key's material (`KeySpec`).
    KeySpec {
        /// RSA with a 2048-bit modulus.
        Rsa2048 = "RSA_2048",
        /// RSA with a 3072-bit modulus.
        Rsa3072 = "RSA_3072",
        /// RSA with a 4096-bit modulus.
        Rsa4096 = "RSA_4096",
        /// ECC on NIST P-256 (secp256r1).
        EccNistP256 = "ECC_NIST_P256",
        /// ECC on NIST P-384.
        EccNistP384 = "ECC_NIST_P384",
        /// ECC on NIST P-521.
        EccNistP521 = "ECC_NIST_P521",
        /// ECC on secp256k1.
        EccSecgP256k1 = "ECC_SECG_P256K1",
        /// A 256-bit AES-GCM key (Keywarden's ciphertext format).
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        /// A 224-bit HMAC key.
        Hmac224 = "HMAC_224",
        /// A 256-bit HMAC key.
        Hmac256 = "HMAC_256",
        /// A 384-bit HMAC key.
        Hmac384 = "HMAC_384",
        /// A 512-bit HMAC key.
        Hmac512 = "HMAC_512",
        /// The Chinese national standard elliptic curve SM2.
        Sm2 = "SM2",
        /// ML-DSA-44 (FIPS 204).
        MlDsa44 = "ML_DSA_44",
        /// ML-DSA-65 (FIPS 204).
        MlDsa65 = "ML_DSA_65",
        /// ML-DSA-87 (FIPS 204).
        MlDsa87 = "ML_DSA_87",
        /// Ed25519 (RFC 8032).
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
        /// ML-KEM-512 (FIPS 203).
        MlKem512 = "ML_KEM_512",
        /// ML-KEM-768 (FIPS 203).
        MlKem768 = "ML_KEM_768",
        /// ML-KEM-1024 (FIPS 203).
        MlKem1024 = "ML_KEM_1024",
    }
}

aws_names! {
    /// What a key is for (`KeyUsageType`).
    KeyUsageType {
        /// Sign and Verify.
        SignVerify = "SIGN_VERIFY",
        /// Encrypt and Decrypt (and data keys for symmetric keys).
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        /// GenerateMac and VerifyMac.
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        /// DeriveSharedSecret.
        KeyAgreement = "KEY_AGREEMENT",
        /// Encapsulate and Decapsulate.
        EncapsulateDecapsulate = "ENCAPSULATE_DECAPSULATE",
    }
}

aws_names! {
    /// A signing algorithm (`SigningAlgorithmSpec`).
    SigningAlgorithm {
        /// RSASSA-PSS with SHA-256, MGF1 with SHA-256, salt of 32 bytes.
        RsassaPssSha256 = "RSASSA_PSS_SHA_256",
        /// RSASSA-PSS with SHA-384.
        RsassaPssSha384 = "RSASSA_PSS_SHA_384",
        /// RSASSA-PSS with SHA-512.
        RsassaPssSha512 = "RSASSA_PSS_SHA_512",
        /// RSASSA-PKCS1-v1_5 with SHA-256.
        RsassaPkcs1V15Sha256 = "RSASSA_PKCS1_V1_5_SHA_256",
        /// RSASSA-PKCS1-v1_5 with SHA-384.
        RsassaPkcs1V15Sha384 = "RSASSA_PKCS1_V1_5_SHA_384",
        /// RSASSA-PKCS1-v1_5 with SHA-512.
        RsassaPkcs1V15Sha512 = "RSASSA_PKCS1_V1_5_SHA_512",
        /// ECDSA with SHA-256 (DER signature).
        EcdsaSha256 = "ECDSA_SHA_256",
        /// ECDSA with SHA-384.
        EcdsaSha384 = "ECDSA_SHA_384",
        /// ECDSA with SHA-512.
        EcdsaSha512 = "ECDSA_SHA_512",
        /// SM2 signatures (GB/T 32918) with SM3.
        Sm2Dsa = "SM2DSA",
        /// ML-DSA (FIPS 204), SHAKE-256 for μ.
        MlDsaShake256 = "ML_DSA_SHAKE_256",
        /// Pure Ed25519.
        Ed25519Sha512 = "ED25519_SHA_512",
        /// Ed25519ph (pre-hashed with SHA-512).
        Ed25519PhSha512 = "ED25519_PH_SHA_512",
    }
}

aws_names! {
    /// An encryption algorithm (`EncryptionAlgorithmSpec`).
    EncryptionAlgorithm {
        /// AES-256-GCM in Keywarden's ciphertext format.
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        /// RSAES-OAEP with SHA-1 and MGF1-SHA-1.
        RsaesOaepSha1 = "RSAES_OAEP_SHA_1",
        /// RSAES-OAEP with SHA-256 and MGF1-SHA-256.
        RsaesOaepSha256 = "RSAES_OAEP_SHA_256",
        /// SM2 public-key encryption (GB/T 32918.4).
        Sm2Pke = "SM2PKE",
    }
}

aws_names! {
    /// A MAC algorithm (`MacAlgorithmSpec`).
    MacAlgorithm {
        /// HMAC with SHA-224.
        HmacSha224 = "HMAC_SHA_224",
        /// HMAC with SHA-256.
        HmacSha256 = "HMAC_SHA_256",
        /// HMAC with SHA-384.
        HmacSha384 = "HMAC_SHA_384",
        /// HMAC with SHA-512.
        HmacSha512 = "HMAC_SHA_512",
    }
}

aws_names! {
    /// A key agreement algorithm (`KeyAgreementAlgorithmSpec`).
    KeyAgreementAlgorithm {
        /// Elliptic-curve Diffie-Hellman (the raw shared x-coordinate).
        Ecdh = "ECDH",
    }
}

aws_names! {
    /// An encapsulation algorithm (`EncapsulationAlgorithmSpec`).
    EncapsulationAlgorithm {
        /// ML-KEM (FIPS 203).
        MlKem = "ML_KEM",
    }
}

aws_names! {
    /// How Sign and Verify read `Message` (`MessageType`).
    MessageType {
        /// The message itself; the algorithm hashes it.
        Raw = "RAW",
        /// The message's digest, made with the algorithm's hash.
        Digest = "DIGEST",
        /// ML-DSA's 64-byte μ, computed by the caller.
        ExternalMu = "EXTERNAL_MU",
    }
}

aws_names! {
    /// The kind of pair GenerateDataKeyPair makes (`DataKeyPairSpec`).
    DataKeyPairSpec {
        /// RSA 2048.
        Rsa2048 = "RSA_2048",
        /// RSA 3072.
        Rsa3072 = "RSA_3072",
        /// RSA 4096.
        Rsa4096 = "RSA_4096",
        /// NIST P-256.
        EccNistP256 = "ECC_NIST_P256",
        /// NIST P-384.
        EccNistP384 = "ECC_NIST_P384",
        /// NIST P-521.
        EccNistP521 = "ECC_NIST_P521",
        /// secp256k1.
        EccSecgP256k1 = "ECC_SECG_P256K1",
        /// SM2.
        Sm2 = "SM2",
        /// Ed25519.
        EccNistEdwards25519 = "ECC_NIST_EDWARDS25519",
        /// ML-KEM-512.
        MlKem512 = "ML_KEM_512",
        /// ML-KEM-768.
        MlKem768 = "ML_KEM_768",
        /// ML-KEM-1024.
        MlKem1024 = "ML_KEM_1024",
    }
}

impl DataKeyPairSpec {
    /// The key spec of the same name.
    pub fn key_spec(self) -> KeySpec {
        KeySpec::parse(self.as_str()).unwrap_or(KeySpec::SymmetricDefault)
    }
}

use EncryptionAlgorithm as E;
use KeyUsageType as U;
use SigningAlgorithm as S;

const RSA_SIGNING: &[SigningAlgorithm] = &[
    S::RsassaPssSha256,
    S::RsassaPssSha384,
    S::RsassaPssSha512,
    S::RsassaPkcs1V15Sha256,
    S::RsassaPkcs1V15Sha384,
    S::RsassaPkcs1V15Sha512,
];

impl KeySpec {
    /// The usages a key of this spec may be created with (AWS's table).
    pub fn usages(self) -> &'static [KeyUsageType] {
        match self {
            KeySpec::SymmetricDefault => &[U::EncryptDecrypt],
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                &[U::EncryptDecrypt, U::SignVerify]
            }
            KeySpec::EccNistP256 | KeySpec::EccNistP384 | KeySpec::EccNistP521 => {
                &[U::SignVerify, U::KeyAgreement]
            }
            KeySpec::EccSecgP256k1 | KeySpec::EccNistEdwards25519 => &[U::SignVerify],
            KeySpec::Sm2 => &[U::EncryptDecrypt, U::SignVerify, U::KeyAgreement],
            KeySpec::Hmac224 | KeySpec::Hmac256 | KeySpec::Hmac384 | KeySpec::Hmac512 => {
                &[U::GenerateVerifyMac]
            }
            KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => &[U::SignVerify],
            KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024 => {
                &[U::EncapsulateDecapsulate]
            }
        }
    }

    /// The usage CreateKey picks when the request names none: AWS's
    /// default, `ENCRYPT_DECRYPT`, for the specs that have it; `None`
    /// (the request must name one) for the others.
    pub fn default_usage(self) -> Option<KeyUsageType> {
        self.usages()
            .contains(&U::EncryptDecrypt)
            .then_some(U::EncryptDecrypt)
    }

    /// Whether this is the symmetric AES spec (Keywarden's own ciphertexts).
    pub fn is_symmetric_default(self) -> bool {
        self == KeySpec::SymmetricDefault
    }

    /// Whether keys of this spec may take imported material (Origin
    /// `EXTERNAL`): every spec but ML-DSA and ML-KEM.
    pub fn importable(self) -> bool {
        !matches!(
            self,
            KeySpec::MlDsa44
                | KeySpec::MlDsa65
                | KeySpec::MlDsa87
                | KeySpec::MlKem512
                | KeySpec::MlKem768
                | KeySpec::MlKem1024
        )
    }

    /// Whether the key has a public half (GetPublicKey answers).
    pub fn has_public_key(self) -> bool {
        !matches!(
            self,
            KeySpec::SymmetricDefault
                | KeySpec::Hmac224
                | KeySpec::Hmac256
                | KeySpec::Hmac384
                | KeySpec::Hmac512
        )
    }

    /// Signing algorithms for a `SIGN_VERIFY` key of this spec.
    pub fn signing_algorithms(self, usage: KeyUsageType) -> &'static [SigningAlgorithm] {
        if usage != U::SignVerify {
            return &[];
        }
        match self {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => RSA_SIGNING,
            KeySpec::EccNistP256 | KeySpec::EccSecgP256k1 => &[S::EcdsaSha256],
            KeySpec::EccNistP384 => &[S::EcdsaSha384],
            KeySpec::EccNistP521 => &[S::EcdsaSha512],
            KeySpec::EccNistEdwards25519 => &[S::Ed25519Sha512, S::Ed25519PhSha512],
            KeySpec::Sm2 => &[S::Sm2Dsa],
            KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87 => &[S::MlDsaShake256],
            _ => &[],
        }
    }

    /// Encryption algorithms for an `ENCRYPT_DECRYPT` key of this spec.
    pub fn encryption_algorithms(self, usage: KeyUsageType) -> &'static [EncryptionAlgorithm] {
        if usage != U::EncryptDecrypt {
            return &[];
        }
        match self {
            KeySpec::SymmetricDefault => &[E::SymmetricDefault],
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                &[E::RsaesOaepSha1, E::RsaesOaepSha256]
            }
            KeySpec::Sm2 => &[E::Sm2Pke],
            _ => &[],
        }
    }

    /// The MAC algorithm of an HMAC key.
    pub fn mac_algorithms(self) -> &'static [MacAlgorithm] {
        match self {
            KeySpec::Hmac224 => &[MacAlgorithm::HmacSha224],
            KeySpec::Hmac256 => &[MacAlgorithm::HmacSha256],
            KeySpec::Hmac384 => &[MacAlgorithm::HmacSha384],
            KeySpec::Hmac512 => &[MacAlgorithm::HmacSha512],
            _ => &[],
        }
    }

    /// Key agreement algorithms for a `KEY_AGREEMENT` key of this spec.
    pub fn key_agreement_algorithms(self, usage: KeyUsageType) -> &'static [KeyAgreementAlgorithm] {
        if usage == U::KeyAgreement {
            &[KeyAgreementAlgorithm::Ecdh]
        } else {
            &[]
        }
    }

    /// Encapsulation algorithms of an ML-KEM key.
    pub fn encapsulation_algorithms(self) -> &'static [EncapsulationAlgorithm] {
        match self {
            KeySpec::MlKem512 | KeySpec::MlKem768 | KeySpec::MlKem1024 => {
                &[EncapsulationAlgorithm::MlKem]
            }
            _ => &[],
        }
    }

    /// The longest plaintext Encrypt takes under `algorithm` with a key of
    /// this spec (AWS's documented limits: OAEP's k - 2·hLen - 2; 1024 bytes
    /// for SM2PKE; 4096 for symmetric keys).
    pub fn max_plaintext(self, algorithm: EncryptionAlgorithm) -> usize {
        let modulus = match self {
            KeySpec::Rsa2048 => 256,
            KeySpec::Rsa3072 => 384,
            KeySpec::Rsa4096 => 512,
            _ => 0,
        };
        match algorithm {
            E::SymmetricDefault => 4096,
            E::RsaesOaepSha1 => modulus - 2 * 20 - 2,
            E::RsaesOaepSha256 => modulus - 2 * 32 - 2,
            E::Sm2Pke => 1024,
        }
    }
}

impl SigningAlgorithm {
    /// The length of a `DIGEST` message for this algorithm; `None` where
    /// AWS refuses `DIGEST` (pure Ed25519, ML-DSA).
    pub fn digest_len(self) -> Option<usize> {
        match self {
            S::RsassaPssSha256 | S::RsassaPkcs1V15Sha256 | S::EcdsaSha256 | S::Sm2Dsa => Some(32),
            S::RsassaPssSha384 | S::RsassaPkcs1V15Sha384 | S::EcdsaSha384 => Some(48),
            S::RsassaPssSha512 | S::RsassaPkcs1V15Sha512 | S::EcdsaSha512 => Some(64),
            S::Ed25519PhSha512 => Some(64),
            S::Ed25519Sha512 | S::MlDsaShake256 => None,
        }
    }
}

impl MacAlgorithm {
    /// The MAC's length in bytes.
    pub fn mac_len(self) -> usize {
        match self {
            MacAlgorithm::HmacSha224 => 28,
            MacAlgorithm::HmacSha256 => 32,
            MacAlgorithm::HmacSha384 => 48,
            MacAlgorithm::HmacSha512 => 64,
        }
    }
}

/// What a key is: its spec, its usage and (for asymmetric keys) its public
/// key as DER `SubjectPublicKeyInfo`. Kept in `keys.meta`; the public key
/// is written once, when the material is generated or imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyKind {
    /// The spec.
    pub spec: KeySpec,
    /// The usage.
    pub usage: KeyUsageType,
    /// DER `SubjectPublicKeyInfo` of an asymmetric key with material.
    pub public_key: Option<Vec<u8>>,
}

impl Default for KeyKind {
    fn default() -> Self {
        KeyKind {
            spec: KeySpec::SymmetricDefault,
            usage: KeyUsageType::EncryptDecrypt,
            public_key: None,
        }
    }
}

impl KeyKind {
    /// A kind without a public key yet.
    pub fn new(spec: KeySpec, usage: KeyUsageType) -> Self {
        KeyKind {
            spec,
            usage,
            public_key: None,
        }
    }

    /// Whether this is a symmetric encryption key (the only kind before
    /// asymmetric keys existed, and the only kind that rotates).
    pub fn is_symmetric_encryption(&self) -> bool {
        self.spec == KeySpec::SymmetricDefault
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in KeySpec::ALL {
            assert_eq!(KeySpec::parse(s.as_str()), Some(*s));
            assert!(!s.usages().is_empty());
        }
        for s in DataKeyPairSpec::ALL {
            assert_eq!(s.key_spec().as_str(), s.as_str());
        }
        assert_eq!(KeySpec::ALL.len(), 20);
        assert_eq!(SigningAlgorithm::ALL.len(), 13);
        assert_eq!(KeySpec::parse("RSA_1024"), None);
    }

    #[test]
    fn every_usage_of_every_spec_has_an_algorithm() {
        for spec in KeySpec::ALL {
            for usage in spec.usages() {
                let n = spec.signing_algorithms(*usage).len()
                    + spec.encryption_algorithms(*usage).len()
                    + spec.key_agreement_algorithms(*usage).len()
                    + if *usage == KeyUsageType::GenerateVerifyMac {
                        spec.mac_algorithms().len()
                    } else {
                        0
                    }
                    + if *usage == KeyUsageType::EncapsulateDecapsulate {
                        spec.encapsulation_algorithms().len()
                    } else {
                        0
                    };
                assert!(n > 0, "{spec} {usage}");
            }
        }
    }

    #[test]
    fn oaep_limits_are_awss() {
        assert_eq!(KeySpec::Rsa2048.max_plaintext(E::RsaesOaepSha1), 214);
        assert_eq!(KeySpec::Rsa4096.max_plaintext(E::RsaesOaepSha1), 470);
        assert_eq!(KeySpec::Rsa2048.max_plaintext(E::RsaesOaepSha256), 190);
        assert_eq!(KeySpec::Rsa3072.max_plaintext(E::RsaesOaepSha256), 318);
        assert_eq!(KeySpec::Rsa4096.max_plaintext(E::RsaesOaepSha256), 446);
    }
}
