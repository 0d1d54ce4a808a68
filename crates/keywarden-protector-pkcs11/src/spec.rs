//! Keys of specs other than `SYMMETRIC_DEFAULT` in the token: RSA key
//! pairs, EC key pairs on named curves, and HMAC keys. The private half
//! (or the HMAC key) is a token object that never leaves the token; the
//! public half is read once, at generation, and handed back as DER
//! `SubjectPublicKeyInfo` (the core verifies, encrypts and checks with it
//! in software, so the token only ever does private-key operations).
//!
//! What each spec needs of the token, and what is refused, is in
//! `docs/hsm.md` ("Asymmetric and HMAC keys in an HSM").

use std::sync::Arc;

use aws_lc_rs::{agreement, digest};
use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use keywarden_core::key_spec::{
    EncryptionAlgorithm, KeySpec, KeyUsageType, MacAlgorithm, MessageType, SigningAlgorithm,
};
use keywarden_core::protector::{
    Decrypter, GeneratedMaterial, KeyAgreement, KeyBinding, MacKey, ProtectorError, Signer,
    SpecHandle,
};
use keywarden_core::secret::Secret;
use spki::ObjectIdentifier;

use crate::connection::{classify, Failure};
use crate::encoding;
use crate::protector::{Inner, TokenObject};
use crate::stored;

/// The public exponent of every RSA key generated here (F4, as AWS KMS
/// and aws-lc-rs use).
const RSA_PUBLIC_EXPONENT: [u8; 3] = [0x01, 0x00, 0x01];

/// A named curve: its OID (`CKA_EC_PARAMS`), the byte length of its field
/// elements, the hash of its one ECDSA algorithm and, on the NIST curves,
/// the aws-lc-rs ECDH algorithm that validates a peer's point.
struct Curve {
    oid: ObjectIdentifier,
    field_len: usize,
    digest: &'static digest::Algorithm,
    agreement: Option<&'static agreement::Algorithm>,
}

/// How a spec is kept in the token.
enum Family {
    Rsa { bits: u64 },
    Ec(Curve),
    Hmac { len: u64, algorithm: MacAlgorithm },
}

impl Family {
    fn of(spec: KeySpec) -> Result<Family, ProtectorError> {
        let curve = |oid: &str, field_len, digest, agreement| {
            Family::Ec(Curve {
                oid: ObjectIdentifier::new_unwrap(oid),
                field_len,
                digest,
                agreement,
            })
        };
        Ok(match spec {
            KeySpec::Rsa2048 => Family::Rsa { bits: 2048 },
            KeySpec::Rsa3072 => Family::Rsa { bits: 3072 },
            KeySpec::Rsa4096 => Family::Rsa { bits: 4096 },
            // RFC 5480 §2.1.1.1 (NIST curves); SEC 2 §2.4.1 (secp256k1).
            KeySpec::EccNistP256 => curve(
                "1.2.840.10045.3.1.7",
                32,
                &digest::SHA256,
                Some(&agreement::ECDH_P256),
            ),
            KeySpec::EccNistP384 => curve(
                "1.3.132.0.34",
                48,
                &digest::SHA384,
                Some(&agreement::ECDH_P384),
            ),
            KeySpec::EccNistP521 => curve(
                "1.3.132.0.35",
                66,
                &digest::SHA512,
                Some(&agreement::ECDH_P521),
            ),
            KeySpec::EccSecgP256k1 => curve("1.3.132.0.10", 32, &digest::SHA256, None),
            KeySpec::Hmac224 => Family::Hmac {
                len: 28,
                algorithm: MacAlgorithm::HmacSha224,
            },
            KeySpec::Hmac256 => Family::Hmac {
                len: 32,
                algorithm: MacAlgorithm::HmacSha256,
            },
            KeySpec::Hmac384 => Family::Hmac {
                len: 48,
                algorithm: MacAlgorithm::HmacSha384,
            },
            KeySpec::Hmac512 => Family::Hmac {
                len: 64,
                algorithm: MacAlgorithm::HmacSha512,
            },
            KeySpec::SymmetricDefault => {
                return Err(ProtectorError::Unsupported(
                    "SYMMETRIC_DEFAULT keys are the HSM's AES keys".into(),
                ))
            }
            // Ed25519 (CKM_EDDSA), SM2 and ML-DSA/ML-KEM (PKCS#11 3.2) are
            // not in what this protector drives; see docs/hsm.md.
            other => {
                return Err(ProtectorError::Unsupported(format!(
                    "KeySpec {other} is not supported by this HSM key store: Keywarden keeps RSA, ECC (NIST curves, secp256k1) and HMAC keys in a PKCS#11 token"
                )))
            }
        })
    }

    fn generation_mechanism(&self) -> MechanismType {
        match self {
            Family::Rsa { .. } => MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            Family::Ec(_) => MechanismType::ECC_KEY_PAIR_GEN,
            Family::Hmac { .. } => MechanismType::GENERIC_SECRET_KEY_GEN,
        }
    }

    /// The mechanisms every algorithm of `usage` needs.
    fn usage_mechanisms(&self, usage: KeyUsageType) -> Vec<MechanismType> {
        match (self, usage) {
            (Family::Rsa { .. }, KeyUsageType::SignVerify) => vec![
                MechanismType::SHA256_RSA_PKCS_PSS,
                MechanismType::SHA384_RSA_PKCS_PSS,
                MechanismType::SHA512_RSA_PKCS_PSS,
                MechanismType::RSA_PKCS_PSS,
                MechanismType::SHA256_RSA_PKCS,
                MechanismType::SHA384_RSA_PKCS,
                MechanismType::SHA512_RSA_PKCS,
                MechanismType::RSA_PKCS,
            ],
            (Family::Rsa { .. }, _) => vec![MechanismType::RSA_PKCS_OAEP],
            (Family::Ec(_), KeyUsageType::SignVerify) => vec![MechanismType::ECDSA],
            (Family::Ec(_), _) => vec![MechanismType::ECDH1_DERIVE],
            (Family::Hmac { algorithm, .. }, _) => vec![hmac_mechanism(*algorithm).0],
        }
    }

    fn class(&self) -> ObjectClass {
        match self {
            Family::Hmac { .. } => ObjectClass::SECRET_KEY,
            _ => ObjectClass::PRIVATE_KEY,
        }
    }
}

fn hmac_mechanism(algorithm: MacAlgorithm) -> (MechanismType, Mechanism<'static>) {
    match algorithm {
        MacAlgorithm::HmacSha224 => (MechanismType::SHA224_HMAC, Mechanism::Sha224Hmac),
        MacAlgorithm::HmacSha256 => (MechanismType::SHA256_HMAC, Mechanism::Sha256Hmac),
        MacAlgorithm::HmacSha384 => (MechanismType::SHA384_HMAC, Mechanism::Sha384Hmac),
        MacAlgorithm::HmacSha512 => (MechanismType::SHA512_HMAC, Mechanism::Sha512Hmac),
    }
}

/// [`ProtectorError::Unsupported`] naming the mechanisms of `needed` the
/// token does not list.
fn require(
    inner: &Inner,
    what: impl FnOnce() -> String,
    needed: &[MechanismType],
) -> Result<(), ProtectorError> {
    check_mechanisms(&inner.conn.mechanisms()?, what, needed)
}

fn check_mechanisms(
    listed: &[MechanismType],
    what: impl FnOnce() -> String,
    needed: &[MechanismType],
) -> Result<(), ProtectorError> {
    let missing: Vec<String> = needed
        .iter()
        .filter(|m| !listed.contains(m))
        .map(ToString::to_string)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ProtectorError::Unsupported(format!(
        "{} is not supported by this HSM: the token does not offer {}",
        what(),
        missing.join(", ")
    )))
}

/// Generates a key of `spec` in the token for `binding`.
pub(crate) fn generate(
    inner: &Arc<Inner>,
    binding: KeyBinding<'_>,
    spec: KeySpec,
) -> Result<GeneratedMaterial, ProtectorError> {
    let family = Family::of(spec)?;
    require(
        inner,
        || format!("KeySpec {spec}"),
        &[family.generation_mechanism()],
    )?;
    let id = stored::spec_object_id(binding, spec, &inner.nonce()?)?;
    let label = format!("keywarden/{}#{}", binding.key_id, binding.version).into_bytes();
    // Both usages of the spec stay possible on the private object:
    // generation does not know the key's usage (the seam passes the spec
    // only), and the core refuses every operation outside the key's usage.
    let private = |usage: &[Attribute]| {
        let mut t = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Unwrap(false),
            Attribute::Id(id.clone()),
            Attribute::Label(label.clone()),
        ];
        t.extend_from_slice(usage);
        t
    };
    // The public half is a session object, read and destroyed right away:
    // the stored SPKI is the public key from then on, and the token keeps
    // one object per key.
    let public = |params: &[Attribute]| {
        let mut t = vec![
            Attribute::Token(false),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::Id(id.clone()),
        ];
        t.extend_from_slice(params);
        t
    };
    let public_key = match &family {
        Family::Rsa { bits } => {
            let public_t = public(&[
                Attribute::Encrypt(true),
                Attribute::ModulusBits(Ulong::from(*bits)),
                Attribute::PublicExponent(RSA_PUBLIC_EXPONENT.to_vec()),
            ]);
            let private_t = private(&[
                Attribute::Sign(true),
                Attribute::Decrypt(true),
                Attribute::Derive(false),
            ]);
            Some(generate_pair(
                inner,
                spec,
                &Mechanism::RsaPkcsKeyPairGen,
                &public_t,
                &private_t,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
                |attrs| {
                    let (mut n, mut e) = (None, None);
                    for a in attrs {
                        match a {
                            Attribute::Modulus(v) => n = Some(v),
                            Attribute::PublicExponent(v) => e = Some(v),
                            _ => {}
                        }
                    }
                    match (n, e) {
                        (Some(n), Some(e)) if n.len() as u64 * 8 == *bits => {
                            encoding::rsa_spki(n, e)
                        }
                        _ => Err(ProtectorError::Crypto("pkcs11 RSA public key")),
                    }
                },
            )?)
        }
        Family::Ec(curve) => {
            let public_t = public(&[Attribute::EcParams(encoding::ec_params(curve.oid)?)]);
            let private_t = private(&[
                Attribute::Sign(true),
                Attribute::Derive(curve.agreement.is_some()),
                Attribute::Decrypt(false),
            ]);
            Some(generate_pair(
                inner,
                spec,
                &Mechanism::EccKeyPairGen,
                &public_t,
                &private_t,
                &[AttributeType::EcPoint],
                |attrs| match attrs {
                    [Attribute::EcPoint(point)] => {
                        encoding::ec_spki(curve.oid, curve.field_len, point)
                    }
                    _ => Err(ProtectorError::Crypto("pkcs11 EC public key")),
                },
            )?)
        }
        Family::Hmac { len, .. } => {
            // A MAC key verifies too (C_Verify in verify_mac).
            let template = private(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(Ulong::from(*len)),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Encrypt(false),
                Attribute::Decrypt(false),
                Attribute::Wrap(false),
                Attribute::Derive(false),
            ]);
            inner.with_session(|session, _| {
                session
                    .generate_key(&Mechanism::GenericSecretKeyGen, &template)
                    .map_err(|e| classify(&e, "pkcs11 generate HMAC key"))
            })?;
            None
        }
    };
    Ok(GeneratedMaterial {
        stored: stored::encode_spec(&id),
        public_key,
    })
}

/// `C_GenerateKeyPair`, then the public half's `attributes` through
/// `spki`; the public (session) object is destroyed either way, and the
/// private one too when the public key cannot be read.
fn generate_pair(
    inner: &Inner,
    spec: KeySpec,
    mechanism: &Mechanism<'_>,
    public_template: &[Attribute],
    private_template: &[Attribute],
    attributes: &[AttributeType],
    spki: impl Fn(&[Attribute]) -> Result<Vec<u8>, ProtectorError>,
) -> Result<Vec<u8>, ProtectorError> {
    inner.with_session(|session, _| {
        let (public, private) = session
            .generate_key_pair(mechanism, public_template, private_template)
            .map_err(|e| generation_failure(&e, spec))?;
        let read = session
            .get_attributes(public, attributes)
            .map_err(|e| classify(&e, "pkcs11 read public key"))
            .and_then(|attrs| spki(&attrs).map_err(Failure::Operation));
        let _ = session.destroy_object(public);
        if read.is_err() {
            let _ = session.destroy_object(private);
        }
        read
    })
}

/// A token that refuses the curve or the key size does not support the
/// spec; anything else is classified as usual.
fn generation_failure(e: &CkError, spec: KeySpec) -> Failure {
    match e {
        CkError::Pkcs11(
            rv @ (RvError::CurveNotSupported
            | RvError::DomainParamsInvalid
            | RvError::KeySizeRange
            | RvError::AttributeValueInvalid
            | RvError::TemplateInconsistent),
            Function::GenerateKeyPair,
        ) => {
            tracing::warn!(spec = %spec, rv = ?rv, "pkcs11 token refused to generate the key pair");
            Failure::Operation(ProtectorError::Unsupported(format!(
                "KeySpec {spec} is not supported by this HSM: the token refused to generate the key ({rv:?})"
            )))
        }
        other => classify(other, "pkcs11 generate key pair"),
    }
}

/// A handle on the token object of a key of `spec`, for the operations of
/// `usage`.
pub(crate) fn load(
    inner: &Arc<Inner>,
    binding: KeyBinding<'_>,
    spec: KeySpec,
    usage: KeyUsageType,
    stored: &[u8],
) -> Result<SpecHandle, ProtectorError> {
    let family = Family::of(spec)?;
    if !spec.usages().contains(&usage) {
        return Err(ProtectorError::Unsupported(format!(
            "A key of KeySpec {spec} cannot have KeyUsage {usage}"
        )));
    }
    let id = stored::decode_spec(binding, spec, stored)?.to_vec();
    require(
        inner,
        || format!("KeySpec {spec} with KeyUsage {usage}"),
        &family.usage_mechanisms(usage),
    )?;
    let key = TokenObject::find(inner, family.class(), id)?;
    check_object(&key, &family)?;
    Ok(match (family, usage) {
        (Family::Rsa { bits }, KeyUsageType::SignVerify) => {
            SpecHandle::Sign(Box::new(RsaSigner { key, bits }))
        }
        (Family::Rsa { .. }, _) => SpecHandle::Decrypt(Box::new(RsaDecrypter { key })),
        (Family::Ec(curve), KeyUsageType::SignVerify) => {
            SpecHandle::Sign(Box::new(EcdsaSigner { key, curve }))
        }
        (Family::Ec(curve), _) => {
            let algorithm = curve.agreement.ok_or_else(|| {
                ProtectorError::Unsupported(format!("KeySpec {spec} has no key agreement"))
            })?;
            SpecHandle::Agree(Box::new(Ecdh {
                key,
                curve,
                algorithm,
            }))
        }
        (Family::Hmac { algorithm, .. }, _) => {
            SpecHandle::Mac(Box::new(HmacKey { key, algorithm }))
        }
    })
}

/// Whether the object found under the stored `CKA_ID` is a key of the
/// family: key type, and modulus size, curve or key length. A mismatch is
/// [`ProtectorError::MalformedMaterial`] (a stored form that names another
/// object).
fn check_object(key: &TokenObject, family: &Family) -> Result<(), ProtectorError> {
    let (key_type, detail) = match family {
        Family::Rsa { .. } => (KeyType::RSA, AttributeType::Modulus),
        Family::Ec(_) => (KeyType::EC, AttributeType::EcParams),
        Family::Hmac { .. } => (KeyType::GENERIC_SECRET, AttributeType::ValueLen),
    };
    let attrs = key.with_object(|session, object| {
        session
            .get_attributes(object, &[AttributeType::KeyType, detail])
            .map_err(|e| key.failure(session, &e, "pkcs11 read key attributes"))
    })?;
    let mut type_ok = false;
    let mut detail_ok = false;
    for a in &attrs {
        match (a, family) {
            (Attribute::KeyType(t), _) => type_ok = *t == key_type,
            (Attribute::Modulus(n), Family::Rsa { bits }) => {
                detail_ok = n.len() as u64 * 8 == *bits
            }
            (Attribute::EcParams(p), Family::Ec(curve)) => {
                detail_ok = *p == encoding::ec_params(curve.oid)?
            }
            (Attribute::ValueLen(l), Family::Hmac { len, .. }) => detail_ok = u64::from(*l) == *len,
            _ => {}
        }
    }
    if type_ok && detail_ok {
        Ok(())
    } else {
        Err(ProtectorError::MalformedMaterial)
    }
}

/// A signature or decryption the token turned down at `C_SignInit` or
/// `C_DecryptInit` for its parameters: a hash or MGF it does not implement
/// there (SoftHSM2 2.6 takes RSA-OAEP with SHA-1 only and answers
/// CKR_ARGUMENTS_BAD to SHA-256). The algorithm is then unsupported.
fn param_failure(
    key: &TokenObject,
    session: &Session,
    e: &CkError,
    what: &'static str,
    algorithm: impl FnOnce() -> String,
) -> Failure {
    match e {
        CkError::Pkcs11(
            rv @ (RvError::MechanismParamInvalid
            | RvError::MechanismInvalid
            | RvError::ArgumentsBad),
            Function::SignInit | Function::DecryptInit,
        ) => {
            tracing::warn!(operation = what, rv = ?rv, "pkcs11 token refused the mechanism parameters");
            Failure::Operation(ProtectorError::Unsupported(format!(
                "{} is not supported by this HSM: the token refused its mechanism parameters ({rv:?})",
                algorithm()
            )))
        }
        other => key.failure(session, other, what),
    }
}

fn check_digest(message: &[u8], len: usize) -> Result<(), ProtectorError> {
    if message.len() == len {
        Ok(())
    } else {
        Err(ProtectorError::InvalidInput(format!(
            "A DIGEST message for this algorithm must be {len} bytes"
        )))
    }
}

fn external_mu() -> ProtectorError {
    ProtectorError::InvalidInput("MessageType EXTERNAL_MU is only valid for ML-DSA keys".into())
}

/// An RSA private key: RSASSA-PSS and RSASSA-PKCS1-v1_5 in the token.
struct RsaSigner {
    key: TokenObject,
    bits: u64,
}

fn pss(hash: MechanismType, mgf: PkcsMgfType, len: u64) -> PkcsPssParams {
    PkcsPssParams {
        hash_alg: hash,
        mgf,
        s_len: Ulong::from(len),
    }
}

impl Signer for RsaSigner {
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        use SigningAlgorithm as S;
        let (hash, mgf, prefix, len) = match algorithm {
            S::RsassaPssSha256 | S::RsassaPkcs1V15Sha256 => (
                MechanismType::SHA256,
                PkcsMgfType::MGF1_SHA256,
                encoding::DIGEST_INFO_SHA256,
                32,
            ),
            S::RsassaPssSha384 | S::RsassaPkcs1V15Sha384 => (
                MechanismType::SHA384,
                PkcsMgfType::MGF1_SHA384,
                encoding::DIGEST_INFO_SHA384,
                48,
            ),
            S::RsassaPssSha512 | S::RsassaPkcs1V15Sha512 => (
                MechanismType::SHA512,
                PkcsMgfType::MGF1_SHA512,
                encoding::DIGEST_INFO_SHA512,
                64,
            ),
            other => {
                return Err(ProtectorError::Unsupported(format!(
                    "SigningAlgorithm {other} is not valid for an RSA key"
                )))
            }
        };
        let pss_mode = matches!(
            algorithm,
            S::RsassaPssSha256 | S::RsassaPssSha384 | S::RsassaPssSha512
        );
        // The salt is as long as the hash (AWS KMS's RSASSA-PSS), MGF1 with
        // the same hash.
        let params = pss(hash, mgf, len as u64);
        let digest_info;
        let (mechanism, data): (Mechanism<'_>, &[u8]) = match (message_type, pss_mode) {
            (MessageType::ExternalMu, _) => return Err(external_mu()),
            (MessageType::Raw, true) => (
                match len {
                    32 => Mechanism::Sha256RsaPkcsPss(params),
                    48 => Mechanism::Sha384RsaPkcsPss(params),
                    _ => Mechanism::Sha512RsaPkcsPss(params),
                },
                message,
            ),
            (MessageType::Raw, false) => (
                match len {
                    32 => Mechanism::Sha256RsaPkcs,
                    48 => Mechanism::Sha384RsaPkcs,
                    _ => Mechanism::Sha512RsaPkcs,
                },
                message,
            ),
            (MessageType::Digest, true) => {
                check_digest(message, len)?;
                (Mechanism::RsaPkcsPss(params), message)
            }
            (MessageType::Digest, false) => {
                check_digest(message, len)?;
                digest_info = [prefix, message].concat();
                (Mechanism::RsaPkcs, &digest_info[..])
            }
        };
        let signature = self.key.with_object(|session, object| {
            session.sign(&mechanism, object, data).map_err(|e| {
                param_failure(&self.key, session, &e, "pkcs11 RSA sign", || {
                    format!("SigningAlgorithm {algorithm}")
                })
            })
        })?;
        if signature.len() as u64 * 8 != self.bits {
            return Err(ProtectorError::Crypto("pkcs11 RSA signature length"));
        }
        Ok(signature)
    }
}

/// An RSA private key: RSAES-OAEP decryption in the token.
struct RsaDecrypter {
    key: TokenObject,
}

impl Decrypter for RsaDecrypter {
    fn decrypt(
        &self,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Secret, ProtectorError> {
        let (hash, mgf) = match algorithm {
            EncryptionAlgorithm::RsaesOaepSha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            EncryptionAlgorithm::RsaesOaepSha256 => {
                (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256)
            }
            other => {
                return Err(ProtectorError::Unsupported(format!(
                    "EncryptionAlgorithm {other} is not valid for an RSA key"
                )))
            }
        };
        let mechanism =
            Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()));
        self.key.with_object(|session, object| {
            match session.decrypt(&mechanism, object, ciphertext) {
                Ok(plaintext) => Ok(Secret::new(plaintext)),
                Err(CkError::Pkcs11(
                    RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange,
                    _,
                )) => Err(Failure::Operation(ProtectorError::Authentication)),
                // SoftHSM2 reports an OAEP padding failure as
                // CKR_GENERAL_ERROR from C_Decrypt, after C_DecryptInit
                // accepted key and parameters; the operation is over.
                Err(CkError::Pkcs11(RvError::GeneralError, Function::Decrypt)) => {
                    Err(Failure::Operation(ProtectorError::Authentication))
                }
                Err(e) => Err(param_failure(
                    &self.key,
                    session,
                    &e,
                    "pkcs11 RSA decrypt",
                    || format!("EncryptionAlgorithm {algorithm}"),
                )),
            }
        })
    }
}

/// An EC private key: ECDSA in the token (`CKM_ECDSA` over a digest made
/// here with aws-lc-rs).
struct EcdsaSigner {
    key: TokenObject,
    curve: Curve,
}

impl Signer for EcdsaSigner {
    fn sign(
        &self,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<Vec<u8>, ProtectorError> {
        let _ = algorithm; // one algorithm per curve; the caller checked it
        let hashed;
        let digest: &[u8] = match message_type {
            MessageType::Raw => {
                hashed = digest::digest(self.curve.digest, message);
                hashed.as_ref()
            }
            MessageType::Digest => {
                check_digest(message, self.curve.digest.output_len())?;
                message
            }
            MessageType::ExternalMu => return Err(external_mu()),
        };
        let raw = self.key.with_object(|session, object| {
            session
                .sign(&Mechanism::Ecdsa, object, digest)
                .map_err(|e| self.key.failure(session, &e, "pkcs11 ECDSA sign"))
        })?;
        if raw.len() != 2 * self.curve.field_len {
            return Err(ProtectorError::Crypto("pkcs11 ECDSA signature length"));
        }
        encoding::ecdsa_der(&raw)
    }
}

/// An EC private key on a NIST curve: ECDH (`CKM_ECDH1_DERIVE`, no KDF) in
/// the token, the shared x-coordinate read from a derived session object.
struct Ecdh {
    key: TokenObject,
    curve: Curve,
    algorithm: &'static agreement::Algorithm,
}

fn bad_peer_key() -> ProtectorError {
    ProtectorError::InvalidInput(
        "PublicKey must be a DER-encoded SubjectPublicKeyInfo on the key's curve".into(),
    )
}

impl KeyAgreement for Ecdh {
    fn derive(&self, peer: &[u8]) -> Result<Secret, ProtectorError> {
        let point = encoding::peer_point(peer, self.curve.oid, self.curve.field_len)
            .ok_or_else(bad_peer_key)?;
        // The point must be on the curve: aws-lc-rs checks it by agreeing
        // with a throwaway key, so the token never sees an invalid point
        // (whose rejection modules report in assorted ways).
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let ephemeral = agreement::EphemeralPrivateKey::generate(self.algorithm, &rng)
            .map_err(|_| ProtectorError::Crypto("ECDH"))?;
        agreement::agree_ephemeral(
            ephemeral,
            agreement::UnparsedPublicKey::new(self.algorithm, point),
            bad_peer_key(),
            |_| Ok(()),
        )?;
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen(Ulong::from(self.curve.field_len as u64)),
        ];
        let mechanism = Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), point));
        self.key.with_object(|session, object| {
            let derived = session
                .derive_key(&mechanism, object, &template)
                .map_err(|e| self.key.failure(session, &e, "pkcs11 ECDH derive"))?;
            let value = read_value(session, derived);
            // A session object; destroyed at once so the secret does not
            // stay in the pooled session.
            let _ = session.destroy_object(derived);
            value
        })
    }
}

/// `CKA_VALUE` of the derived secret, as a [`Secret`].
fn read_value(session: &Session, object: ObjectHandle) -> Result<Secret, Failure> {
    let attrs = session
        .get_attributes(object, &[AttributeType::Value])
        .map_err(|e| classify(&e, "pkcs11 read derived secret"))?;
    for a in attrs {
        if let Attribute::Value(v) = a {
            return Ok(Secret::new(v));
        }
    }
    Err(Failure::Operation(ProtectorError::Crypto(
        "pkcs11 derived secret",
    )))
}

/// An HMAC key: `CKM_SHA*_HMAC` in the token, verified with `C_Verify`.
struct HmacKey {
    key: TokenObject,
    algorithm: MacAlgorithm,
}

impl HmacKey {
    fn check(&self, algorithm: MacAlgorithm) -> Result<(), ProtectorError> {
        if algorithm == self.algorithm {
            Ok(())
        } else {
            Err(ProtectorError::Unsupported(format!(
                "MacAlgorithm {algorithm} is not valid for this key"
            )))
        }
    }
}

impl MacKey for HmacKey {
    fn mac(&self, algorithm: MacAlgorithm, message: &[u8]) -> Result<Vec<u8>, ProtectorError> {
        self.check(algorithm)?;
        let mac = self.key.with_object(|session, object| {
            session
                .sign(&hmac_mechanism(algorithm).1, object, message)
                .map_err(|e| self.key.failure(session, &e, "pkcs11 HMAC"))
        })?;
        if mac.len() != algorithm.mac_len() {
            return Err(ProtectorError::Crypto("pkcs11 HMAC length"));
        }
        Ok(mac)
    }

    fn verify_mac(
        &self,
        algorithm: MacAlgorithm,
        message: &[u8],
        mac: &[u8],
    ) -> Result<bool, ProtectorError> {
        self.check(algorithm)?;
        self.key.with_object(|session, object| {
            match session.verify(&hmac_mechanism(algorithm).1, object, message, mac) {
                Ok(()) => Ok(true),
                // The token compared (in constant time) and said no; the
                // operation is over and the session clean.
                Err(CkError::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _)) => {
                    Ok(false)
                }
                Err(e) => Err(self.key.failure(session, &e, "pkcs11 HMAC verify")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_mechanisms_are_named() {
        let family = Family::of(KeySpec::Rsa2048).unwrap();
        let needed = family.usage_mechanisms(KeyUsageType::SignVerify);
        assert!(check_mechanisms(&needed, String::new, &needed).is_ok());
        let without_pss: Vec<_> = needed
            .iter()
            .copied()
            .filter(|m| *m != MechanismType::RSA_PKCS_PSS)
            .collect();
        match check_mechanisms(&without_pss, || "KeySpec RSA_2048".into(), &needed) {
            Err(ProtectorError::Unsupported(m)) => assert_eq!(
                m,
                "KeySpec RSA_2048 is not supported by this HSM: the token does not offer CKM_RSA_PKCS_PSS"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_spec_is_kept_or_refused() {
        for spec in KeySpec::ALL {
            match Family::of(*spec) {
                Ok(family) => {
                    assert!(stored::spec_code(*spec).is_some(), "{spec}");
                    for usage in spec.usages() {
                        assert!(!family.usage_mechanisms(*usage).is_empty());
                    }
                }
                Err(ProtectorError::Unsupported(m)) => {
                    assert!(stored::spec_code(*spec).is_none(), "{spec}");
                    assert!(m.contains(spec.as_str()), "{m}");
                }
                Err(e) => panic!("{spec}: {e:?}"),
            }
        }
    }
}
