//! Encrypt.

use std::sync::Arc;

use crate::cache::CachedKey;
use crate::ciphertext;
use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::{CryptoOperation, GrantOperation, KeyRecord};

/// Largest plaintext Encrypt accepts.
pub const MAX_PLAINTEXT: usize = 4096;

impl Kms {
    /// Encrypts up to 4096 bytes under the key's current version. Returns the
    /// key and the ciphertext blob.
    pub async fn encrypt(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        plaintext: &[u8],
        context: &EncryptionContext,
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Vec<u8>), KmsError> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: Member must have length between 1 and {MAX_PLAINTEXT}"
            )));
        }
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Crypto(GrantOperation::Encrypt, context),
            )
            .await?;
        self.require_usable(&key.record)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let blob = self.seal_with_current(&key, context, plaintext)?;
        self.record_use(caller, &key.record, CryptoOperation::Encrypt);
        Ok((key.record.clone(), blob))
    }

    /// Seals `plaintext` under the key's newest version.
    pub(crate) fn seal_with_current(
        &self,
        key: &CachedKey,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KmsError> {
        let record = &key.record;
        let version = record
            .current_version()
            .ok_or_else(|| {
                KmsError::InvalidState(format!("{} has no key material.", self.record_arn(record)))
            })?
            .version;
        let handle = self.handle(key, version)?;
        ciphertext::seal(handle.as_ref(), &record.key_id, version, context, plaintext)
    }
}
