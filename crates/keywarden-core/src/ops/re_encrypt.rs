//! ReEncrypt.

use std::sync::Arc;

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::key_spec::{EncryptionAlgorithm, KeyUsageType};
use crate::kms::{Access, Caller, Kms};
use crate::model::{CryptoOperation, GrantOperation, KeyRecord};

/// What ReEncrypt produced.
#[derive(Debug)]
pub struct ReEncrypted {
    /// The key that made the input blob.
    pub source: Arc<KeyRecord>,
    /// The key of the new blob.
    pub destination: Arc<KeyRecord>,
    /// The new blob.
    pub blob: Vec<u8>,
}

impl Kms {
    /// Decrypts a blob and encrypts its plaintext under another key (or the
    /// newest version of the same key) without returning the plaintext.
    #[allow(clippy::too_many_arguments)]
    pub async fn re_encrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        source_context: &EncryptionContext,
        source_key: Option<&KeyRef>,
        destination_key: &KeyRef,
        destination_context: &EncryptionContext,
        dry_run: bool,
    ) -> Result<ReEncrypted, KmsError> {
        self.re_encrypt_with(
            caller,
            ReEncryptRequest {
                blob,
                source_context,
                source_key,
                source_algorithm: None,
                destination_key,
                destination_context,
                destination_algorithm: None,
                dry_run,
            },
        )
        .await
    }

    /// ReEncrypt with any source and destination: a symmetric blob or an
    /// asymmetric ciphertext (the request names the source key and its
    /// algorithm), to a symmetric key or an asymmetric one (with its
    /// algorithm). The plaintext never leaves the server.
    pub async fn re_encrypt_with(
        &self,
        caller: &Caller,
        req: ReEncryptRequest<'_>,
    ) -> Result<ReEncrypted, KmsError> {
        let (source, plaintext) = match req.source_algorithm {
            Some(algorithm) => {
                let key_ref = req.source_key.ok_or_else(|| {
                    KmsError::Validation(
                        "SourceKeyId is required to re-encrypt from an asymmetric encryption algorithm"
                            .into(),
                    )
                })?;
                let key = self
                    .resolve_kind(
                        caller,
                        key_ref,
                        GrantOperation::ReEncryptFrom,
                        KeyUsageType::EncryptDecrypt,
                    )
                    .await?;
                self.check_encryption_algorithm(&key.record, algorithm)?;
                let plaintext = if req.dry_run {
                    None
                } else {
                    Some(self.decrypt_with_private_key(&key, algorithm, req.blob)?)
                };
                (key.record.clone(), plaintext)
            }
            None => {
                let (source, plaintext) = self
                    .open_blob(
                        caller,
                        req.blob,
                        req.source_context,
                        req.source_key,
                        GrantOperation::ReEncryptFrom,
                    )
                    .await?;
                (source, Some(plaintext))
            }
        };
        let blob = match req.destination_algorithm {
            Some(algorithm) => {
                let crypto = self.public_crypto()?.clone();
                let destination = self
                    .resolve_kind(
                        caller,
                        req.destination_key,
                        GrantOperation::ReEncryptTo,
                        KeyUsageType::EncryptDecrypt,
                    )
                    .await?;
                let Some(plaintext) = plaintext.filter(|_| !req.dry_run) else {
                    self.check_encryption_algorithm(&destination.record, algorithm)?;
                    return Err(KmsError::DryRun);
                };
                self.check_asymmetric_plaintext(
                    &destination.record,
                    algorithm,
                    plaintext.expose(),
                )?;
                let blob = self.encrypt_to_public_key(
                    crypto.as_ref(),
                    &destination.record,
                    algorithm,
                    plaintext.expose(),
                )?;
                (destination.record.clone(), blob)
            }
            None => {
                let destination = self
                    .resolve(
                        caller,
                        req.destination_key,
                        Access::Crypto(GrantOperation::ReEncryptTo, req.destination_context),
                    )
                    .await?;
                self.require_usable(&destination.record)?;
                let Some(plaintext) = plaintext.filter(|_| !req.dry_run) else {
                    return Err(KmsError::DryRun);
                };
                let blob = self.seal_with_current(
                    &destination,
                    req.destination_context,
                    plaintext.expose(),
                )?;
                (destination.record.clone(), blob)
            }
        };
        let (destination, blob) = blob;
        self.record_use(caller, &source, CryptoOperation::ReEncrypt);
        self.record_use(caller, &destination, CryptoOperation::ReEncrypt);
        self.meter(&destination, CryptoOperation::ReEncrypt);
        Ok(ReEncrypted {
            source,
            destination,
            blob,
        })
    }
}

/// A ReEncrypt request; `None` algorithms mean `SYMMETRIC_DEFAULT`.
#[derive(Debug, Clone, Copy)]
pub struct ReEncryptRequest<'a> {
    /// `CiphertextBlob`.
    pub blob: &'a [u8],
    /// `SourceEncryptionContext` (symmetric sources).
    pub source_context: &'a EncryptionContext,
    /// `SourceKeyId` (required for asymmetric sources).
    pub source_key: Option<&'a KeyRef>,
    /// `SourceEncryptionAlgorithm`.
    pub source_algorithm: Option<EncryptionAlgorithm>,
    /// `DestinationKeyId`.
    pub destination_key: &'a KeyRef,
    /// `DestinationEncryptionContext` (symmetric destinations).
    pub destination_context: &'a EncryptionContext,
    /// `DestinationEncryptionAlgorithm`.
    pub destination_algorithm: Option<EncryptionAlgorithm>,
    /// `DryRun`.
    pub dry_run: bool,
}
