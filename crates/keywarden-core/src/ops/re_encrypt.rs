//! ReEncrypt.

use std::sync::Arc;

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyRef;
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
        let (source, plaintext) = self
            .open_blob(
                caller,
                blob,
                source_context,
                source_key,
                GrantOperation::ReEncryptFrom,
            )
            .await?;
        let destination = self
            .resolve(
                caller,
                destination_key,
                Access::Crypto(GrantOperation::ReEncryptTo, destination_context),
            )
            .await?;
        self.require_usable(&destination.record)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let blob = self.seal_with_current(&destination, destination_context, plaintext.expose())?;
        self.record_use(caller, &source, CryptoOperation::ReEncrypt);
        self.record_use(caller, &destination.record, CryptoOperation::ReEncrypt);
        self.meter(&destination.record, CryptoOperation::ReEncrypt);
        Ok(ReEncrypted {
            source,
            destination: destination.record.clone(),
            blob,
        })
    }
}
