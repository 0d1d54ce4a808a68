//! The operations of keys other than symmetric encryption keys: Sign,
//! Verify, GetPublicKey, GenerateMac, VerifyMac, asymmetric Encrypt and
//! Decrypt, DeriveSharedSecret, Encapsulate, Decapsulate; and
//! GenerateDataKeyPair, which uses a symmetric key.
//!
//! Each checks, in AWS's order: the request's sizes (ValidationException),
//! then the key (NotFound, access), its state (Disabled, InvalidState), its
//! usage and the algorithm (InvalidKeyUsageException), the message type
//! against the algorithm (ValidationException), then DryRun.

use std::sync::Arc;

use crate::cache::CachedKey;
use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::key_spec::{
    DataKeyPairSpec, EncapsulationAlgorithm, EncryptionAlgorithm, KeyAgreementAlgorithm,
    KeyUsageType, MacAlgorithm, MessageType, SigningAlgorithm,
};
use crate::kms::{Access, Caller, Kms};
use crate::model::{CryptoOperation, GrantOperation, KeyRecord};
use crate::protector::{KeyBinding, SpecHandle};
use crate::secret::Secret;

/// Longest message Sign, Verify, GenerateMac and VerifyMac take.
pub const MAX_MESSAGE: usize = 4096;
/// Longest signature, MAC or ciphertext a request may carry (AWS's
/// `CiphertextType`).
pub const MAX_BLOB: usize = 6144;
/// Longest peer public key DeriveSharedSecret takes (AWS's `PublicKeyType`).
pub const MAX_PUBLIC_KEY: usize = 8192;

/// A generated data key pair.
pub struct DataKeyPair {
    /// The symmetric key that encrypted the private key.
    pub key: Arc<KeyRecord>,
    /// The private key (PKCS#8 DER); `None` for the WithoutPlaintext form.
    pub private_plaintext: Option<Secret>,
    /// The private key encrypted under `key`.
    pub private_blob: Vec<u8>,
    /// The public key (DER `SubjectPublicKeyInfo`).
    pub public_key: Vec<u8>,
}

impl std::fmt::Debug for DataKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyPair")
            .field("key", &self.key.key_id)
            .field("private_blob", &self.private_blob.len())
            .finish_non_exhaustive()
    }
}

/// The caller with the request's algorithm condition keys
/// (`kms:SigningAlgorithm`, `kms:MessageType`, ...), which key and IAM
/// policies may test.
fn with_facts(caller: &Caller, facts: &[(&'static str, &'static str)]) -> Caller {
    let mut ctx = crate::policy::RequestContext::new();
    for (k, v) in facts {
        ctx.insert(*k, *v);
    }
    caller.with_operation_keys(ctx)
}

fn check_len(field: &str, value: &[u8], max: usize) -> Result<(), KmsError> {
    if value.is_empty() || value.len() > max {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between 1 and {max}"
        )));
    }
    Ok(())
}

impl Kms {
    /// Resolves a key for a cryptographic operation of another spec and
    /// checks its state and usage.
    pub(crate) async fn resolve_kind(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        grant: GrantOperation,
        usage: KeyUsageType,
    ) -> Result<Arc<CachedKey>, KmsError> {
        let empty = EncryptionContext::empty();
        let key = self
            .resolve(caller, key_ref, Access::Crypto(grant, &empty))
            .await?;
        self.require_usable(&key.record)?;
        let kind = &key.record.kind;
        if kind.usage != usage || kind.is_symmetric_encryption() {
            return Err(self.wrong_usage(&key.record, grant.as_str()));
        }
        Ok(key)
    }

    /// `InvalidKeyUsageException` for `operation` on `key`.
    pub(crate) fn wrong_usage(&self, key: &KeyRecord, operation: &str) -> KmsError {
        KmsError::InvalidKeyUsage(format!(
            "{} key usage is {} (KeySpec {}), which is not valid for {operation}.",
            self.record_arn(key),
            key.kind.usage,
            key.kind.spec
        ))
    }

    fn wrong_algorithm(&self, key: &KeyRecord, algorithm: &str) -> KmsError {
        KmsError::InvalidKeyUsage(format!(
            "Algorithm {algorithm} is incompatible with key spec {} of {}.",
            key.kind.spec,
            self.record_arn(key)
        ))
    }

    /// The loaded private key of `key`, loaded once per cache entry.
    fn spec_handle(&self, key: &CachedKey) -> Result<Arc<SpecHandle>, KmsError> {
        if let Some(h) = key.spec_handle() {
            return Ok(h);
        }
        let record = &key.record;
        let v = record.current_version().ok_or_else(|| {
            KmsError::InvalidState(format!("{} has no key material.", self.record_arn(record)))
        })?;
        let protector = self.protector(&v.protector).ok_or_else(|| {
            KmsError::Protector(crate::protector::ProtectorError::Unavailable(format!(
                "no key protector named {:?} is configured",
                v.protector
            )))
        })?;
        let handle = protector
            .load_spec(
                KeyBinding {
                    key_id: &record.key_id,
                    version: v.version,
                },
                record.kind.spec,
                record.kind.usage,
                &v.material,
            )
            .map_err(KmsError::from_protector)?;
        Ok(key.put_spec_handle(Arc::new(handle)))
    }

    fn public_key_of<'a>(&self, key: &'a KeyRecord) -> Result<&'a [u8], KmsError> {
        key.kind.public_key.as_deref().ok_or_else(|| {
            KmsError::InvalidState(format!("{} has no public key.", self.record_arn(key)))
        })
    }

    /// Checks a Sign or Verify request's algorithm and message type against
    /// the key.
    fn check_signing(
        &self,
        key: &KeyRecord,
        algorithm: SigningAlgorithm,
        message_type: MessageType,
        message: &[u8],
    ) -> Result<(), KmsError> {
        if !key
            .kind
            .spec
            .signing_algorithms(key.kind.usage)
            .contains(&algorithm)
        {
            return Err(self.wrong_algorithm(key, algorithm.as_str()));
        }
        match message_type {
            MessageType::Raw => Ok(()),
            MessageType::Digest => match algorithm.digest_len() {
                None => Err(KmsError::Validation(format!(
                    "MessageType DIGEST is not supported with signing algorithm {algorithm}"
                ))),
                Some(n) if n != message.len() => Err(KmsError::Validation(format!(
                    "Digest is invalid length for algorithm {algorithm}: it must be {n} bytes"
                ))),
                Some(_) => Ok(()),
            },
            MessageType::ExternalMu => {
                if algorithm != SigningAlgorithm::MlDsaShake256 {
                    return Err(KmsError::Validation(format!(
                        "MessageType EXTERNAL_MU is supported with ML_DSA_SHAKE_256 only, not {algorithm}"
                    )));
                }
                if message.len() != 64 {
                    return Err(KmsError::Validation(
                        "An EXTERNAL_MU message must be exactly 64 bytes".into(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Sign: a signature of `message` with the key's private key.
    pub async fn sign(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        message: &[u8],
        message_type: MessageType,
        algorithm: SigningAlgorithm,
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Vec<u8>), KmsError> {
        check_len("message", message, MAX_MESSAGE)?;
        let caller = &with_facts(
            caller,
            &[
                ("kms:SigningAlgorithm", algorithm.as_str()),
                ("kms:MessageType", message_type.as_str()),
            ],
        );
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::Sign,
                KeyUsageType::SignVerify,
            )
            .await?;
        self.check_signing(&key.record, algorithm, message_type, message)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let signature = match self.spec_handle(&key)?.as_ref() {
            SpecHandle::Sign(s) => s
                .sign(algorithm, message_type, message)
                .map_err(KmsError::from_protector)?,
            _ => return Err(self.wrong_usage(&key.record, "Sign")),
        };
        self.record_use(caller, &key.record, CryptoOperation::Sign);
        Ok((key.record.clone(), signature))
    }

    /// Verify: `KMSInvalidSignatureException` unless `signature` is valid.
    #[allow(clippy::too_many_arguments)]
    pub async fn verify(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        message: &[u8],
        message_type: MessageType,
        signature: &[u8],
        algorithm: SigningAlgorithm,
        dry_run: bool,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        check_len("message", message, MAX_MESSAGE)?;
        check_len("signature", signature, MAX_BLOB)?;
        let crypto = self.public_crypto()?;
        let caller = &with_facts(
            caller,
            &[
                ("kms:SigningAlgorithm", algorithm.as_str()),
                ("kms:MessageType", message_type.as_str()),
            ],
        );
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::Verify,
                KeyUsageType::SignVerify,
            )
            .await?;
        self.check_signing(&key.record, algorithm, message_type, message)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let valid = crypto
            .verify(
                key.record.kind.spec,
                self.public_key_of(&key.record)?,
                algorithm,
                message_type,
                message,
                signature,
            )
            .map_err(KmsError::from_protector)?;
        self.record_use(caller, &key.record, CryptoOperation::Verify);
        if !valid {
            return Err(KmsError::InvalidSignature(
                "The signature is not valid for the message and key.".into(),
            ));
        }
        Ok(key.record.clone())
    }

    /// GetPublicKey: the key record, whose `kind.public_key` is the answer.
    pub async fn get_public_key(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        let empty = EncryptionContext::empty();
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Crypto(GrantOperation::GetPublicKey, &empty),
            )
            .await?;
        self.require_usable(&key.record)?;
        if !key.record.kind.spec.has_public_key() {
            return Err(KmsError::Unsupported(format!(
                "{} is a KeySpec {} key, which has no public key.",
                self.record_arn(&key.record),
                key.record.kind.spec
            )));
        }
        self.public_key_of(&key.record)?;
        self.record_use(caller, &key.record, CryptoOperation::GetPublicKey);
        Ok(key.record.clone())
    }

    fn check_mac_algorithm(
        &self,
        key: &KeyRecord,
        algorithm: MacAlgorithm,
    ) -> Result<(), KmsError> {
        if key.kind.spec.mac_algorithms().contains(&algorithm) {
            Ok(())
        } else {
            Err(self.wrong_algorithm(key, algorithm.as_str()))
        }
    }

    /// GenerateMac.
    pub async fn generate_mac(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        message: &[u8],
        algorithm: MacAlgorithm,
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Vec<u8>), KmsError> {
        check_len("message", message, MAX_MESSAGE)?;
        let caller = &with_facts(caller, &[("kms:MacAlgorithm", algorithm.as_str())]);
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::GenerateMac,
                KeyUsageType::GenerateVerifyMac,
            )
            .await?;
        self.check_mac_algorithm(&key.record, algorithm)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let mac = match self.spec_handle(&key)?.as_ref() {
            SpecHandle::Mac(m) => m
                .mac(algorithm, message)
                .map_err(KmsError::from_protector)?,
            _ => return Err(self.wrong_usage(&key.record, "GenerateMac")),
        };
        self.record_use(caller, &key.record, CryptoOperation::GenerateMac);
        Ok((key.record.clone(), mac))
    }

    /// VerifyMac: `KMSInvalidMacException` unless `mac` is valid.
    pub async fn verify_mac(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        message: &[u8],
        algorithm: MacAlgorithm,
        mac: &[u8],
        dry_run: bool,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        check_len("message", message, MAX_MESSAGE)?;
        check_len("mac", mac, MAX_BLOB)?;
        let caller = &with_facts(caller, &[("kms:MacAlgorithm", algorithm.as_str())]);
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::VerifyMac,
                KeyUsageType::GenerateVerifyMac,
            )
            .await?;
        self.check_mac_algorithm(&key.record, algorithm)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let valid = match self.spec_handle(&key)?.as_ref() {
            SpecHandle::Mac(m) => m
                .verify_mac(algorithm, message, mac)
                .map_err(KmsError::from_protector)?,
            _ => return Err(self.wrong_usage(&key.record, "VerifyMac")),
        };
        self.record_use(caller, &key.record, CryptoOperation::VerifyMac);
        if !valid {
            return Err(KmsError::InvalidMac(
                "The MAC is not valid for the message and key.".into(),
            ));
        }
        Ok(key.record.clone())
    }

    pub(crate) fn check_encryption_algorithm(
        &self,
        key: &KeyRecord,
        algorithm: EncryptionAlgorithm,
    ) -> Result<(), KmsError> {
        if key
            .kind
            .spec
            .encryption_algorithms(key.kind.usage)
            .contains(&algorithm)
        {
            Ok(())
        } else {
            Err(self.wrong_algorithm(key, algorithm.as_str()))
        }
    }

    /// Encrypt with an asymmetric `ENCRYPT_DECRYPT` key (RSA-OAEP, SM2PKE):
    /// the ciphertext is the algorithm's output, not a Keywarden blob.
    pub async fn encrypt_asymmetric(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        algorithm: EncryptionAlgorithm,
        plaintext: &[u8],
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Vec<u8>), KmsError> {
        check_len("plaintext", plaintext, crate::ops::encrypt::MAX_PLAINTEXT)?;
        let crypto = self.public_crypto()?;
        let caller = &with_facts(caller, &[("kms:EncryptionAlgorithm", algorithm.as_str())]);
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::Encrypt,
                KeyUsageType::EncryptDecrypt,
            )
            .await?;
        self.check_asymmetric_plaintext(&key.record, algorithm, plaintext)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let ciphertext =
            self.encrypt_to_public_key(crypto.as_ref(), &key.record, algorithm, plaintext)?;
        self.record_use(caller, &key.record, CryptoOperation::Encrypt);
        Ok((key.record.clone(), ciphertext))
    }

    /// Checks an asymmetric encryption's algorithm and plaintext size
    /// against the key.
    pub(crate) fn check_asymmetric_plaintext(
        &self,
        key: &KeyRecord,
        algorithm: EncryptionAlgorithm,
        plaintext: &[u8],
    ) -> Result<(), KmsError> {
        self.check_encryption_algorithm(key, algorithm)?;
        let max = key.kind.spec.max_plaintext(algorithm);
        if plaintext.len() > max {
            return Err(KmsError::Validation(format!(
                "Plaintext is too long for {algorithm} with KeySpec {}: at most {max} bytes",
                key.kind.spec
            )));
        }
        Ok(())
    }

    /// Encrypts to the key's public key (checked by
    /// [`Kms::check_asymmetric_plaintext`]).
    pub(crate) fn encrypt_to_public_key(
        &self,
        crypto: &dyn crate::protector::PublicKeyCrypto,
        key: &KeyRecord,
        algorithm: EncryptionAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        crypto
            .encrypt(
                key.kind.spec,
                self.public_key_of(key)?,
                algorithm,
                plaintext,
            )
            .map_err(KmsError::from_protector)
    }

    /// Decrypt with an asymmetric `ENCRYPT_DECRYPT` key; the request must
    /// name the key and the algorithm.
    pub async fn decrypt_asymmetric(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Secret), KmsError> {
        check_len("ciphertextBlob", ciphertext, MAX_BLOB)?;
        let caller = &with_facts(caller, &[("kms:EncryptionAlgorithm", algorithm.as_str())]);
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::Decrypt,
                KeyUsageType::EncryptDecrypt,
            )
            .await?;
        self.check_encryption_algorithm(&key.record, algorithm)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let plaintext = self.decrypt_with_private_key(&key, algorithm, ciphertext)?;
        self.record_use(caller, &key.record, CryptoOperation::Decrypt);
        Ok((key.record.clone(), plaintext))
    }

    /// Decrypts with the key's private key (RSA-OAEP, SM2PKE).
    pub(crate) fn decrypt_with_private_key(
        &self,
        key: &CachedKey,
        algorithm: EncryptionAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Secret, KmsError> {
        match self.spec_handle(key)?.as_ref() {
            SpecHandle::Decrypt(d) => d
                .decrypt(algorithm, ciphertext)
                .map_err(KmsError::from_protector),
            _ => Err(self.wrong_usage(&key.record, "Decrypt")),
        }
    }

    /// DeriveSharedSecret: ECDH between the key's private key and `peer`
    /// (DER `SubjectPublicKeyInfo`).
    pub async fn derive_shared_secret(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        algorithm: KeyAgreementAlgorithm,
        peer: &[u8],
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Secret), KmsError> {
        check_len("publicKey", peer, MAX_PUBLIC_KEY)?;
        let caller = &with_facts(caller, &[("kms:KeyAgreementAlgorithm", algorithm.as_str())]);
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::DeriveSharedSecret,
                KeyUsageType::KeyAgreement,
            )
            .await?;
        if !key
            .record
            .kind
            .spec
            .key_agreement_algorithms(key.record.kind.usage)
            .contains(&algorithm)
        {
            return Err(self.wrong_algorithm(&key.record, algorithm.as_str()));
        }
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let secret = match self.spec_handle(&key)?.as_ref() {
            SpecHandle::Agree(a) => a.derive(peer).map_err(KmsError::from_protector)?,
            _ => return Err(self.wrong_usage(&key.record, "DeriveSharedSecret")),
        };
        self.record_use(caller, &key.record, CryptoOperation::DeriveSharedSecret);
        Ok((key.record.clone(), secret))
    }

    fn check_kem(
        &self,
        key: &KeyRecord,
        algorithm: EncapsulationAlgorithm,
    ) -> Result<(), KmsError> {
        if key
            .kind
            .spec
            .encapsulation_algorithms()
            .contains(&algorithm)
        {
            Ok(())
        } else {
            Err(self.wrong_algorithm(key, algorithm.as_str()))
        }
    }

    /// Encapsulate: a fresh shared secret and its ML-KEM ciphertext under
    /// the key's public key.
    pub async fn encapsulate(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        algorithm: EncapsulationAlgorithm,
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Vec<u8>, Secret), KmsError> {
        let crypto = self.public_crypto()?;
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::Encapsulate,
                KeyUsageType::EncapsulateDecapsulate,
            )
            .await?;
        self.check_kem(&key.record, algorithm)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let (ciphertext, secret) = crypto
            .encapsulate(key.record.kind.spec, self.public_key_of(&key.record)?)
            .map_err(KmsError::from_protector)?;
        self.record_use(caller, &key.record, CryptoOperation::Encapsulate);
        Ok((key.record.clone(), ciphertext, secret))
    }

    /// Decapsulate: the shared secret inside an ML-KEM ciphertext.
    pub async fn decapsulate(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        algorithm: EncapsulationAlgorithm,
        ciphertext: &[u8],
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Secret), KmsError> {
        check_len("sharedSecretCiphertextBlob", ciphertext, MAX_BLOB)?;
        let key = self
            .resolve_kind(
                caller,
                key_ref,
                GrantOperation::Decapsulate,
                KeyUsageType::EncapsulateDecapsulate,
            )
            .await?;
        self.check_kem(&key.record, algorithm)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let secret = match self.spec_handle(&key)?.as_ref() {
            SpecHandle::Kem(k) => k.decapsulate(ciphertext).map_err(|e| match e {
                crate::protector::ProtectorError::InvalidInput(_) => KmsError::InvalidCiphertext,
                other => KmsError::from_protector(other),
            })?,
            _ => return Err(self.wrong_usage(&key.record, "Decapsulate")),
        };
        self.record_use(caller, &key.record, CryptoOperation::Decapsulate);
        Ok((key.record.clone(), secret))
    }

    /// GenerateDataKeyPair (`with_plaintext`) and
    /// GenerateDataKeyPairWithoutPlaintext: a fresh key pair whose private
    /// key is encrypted under a symmetric encryption key.
    pub async fn generate_data_key_pair(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        spec: DataKeyPairSpec,
        context: &EncryptionContext,
        with_plaintext: bool,
        dry_run: bool,
    ) -> Result<DataKeyPair, KmsError> {
        let crypto = self.public_crypto()?.clone();
        let (grant, operation) = if with_plaintext {
            (
                GrantOperation::GenerateDataKeyPair,
                CryptoOperation::GenerateDataKeyPair,
            )
        } else {
            (
                GrantOperation::GenerateDataKeyPairWithoutPlaintext,
                CryptoOperation::GenerateDataKeyPairWithoutPlaintext,
            )
        };
        let caller = &with_facts(caller, &[("kms:DataKeyPairSpec", spec.as_str())]);
        let key = self
            .resolve(caller, key_ref, Access::Crypto(grant, context))
            .await?;
        self.require_usable(&key.record)?;
        if !key.record.kind.is_symmetric_encryption() {
            return Err(self.wrong_usage(&key.record, grant.as_str()));
        }
        // AWS: "You cannot use an asymmetric KMS key or a KMS key in a
        // custom key store" to wrap a data key pair.
        if let Some(store) = key.record.custom_key_store_id() {
            return Err(KmsError::Unsupported(format!(
                "{} is in custom key store {store}; data key pairs need a KMS key outside custom key stores.",
                self.record_arn(&key.record)
            )));
        }
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let (private, public_key) = self
            .on_keygen_pool(move || crypto.generate_pair(spec))
            .await?;
        let private_blob = self.seal_with_current(&key, context, private.expose())?;
        self.record_use(caller, &key.record, operation);
        Ok(DataKeyPair {
            key: key.record.clone(),
            private_plaintext: with_plaintext.then_some(private),
            private_blob,
            public_key,
        })
    }
}
