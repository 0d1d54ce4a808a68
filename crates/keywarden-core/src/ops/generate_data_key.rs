//! GenerateDataKey and GenerateDataKeyWithoutPlaintext.

use std::sync::Arc;

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::{CryptoOperation, GrantOperation, KeyRecord};
use crate::secret::Secret;

/// Largest data key, in bytes.
pub const MAX_DATA_KEY: usize = 1024;

/// A generated data key.
#[derive(Debug)]
pub struct DataKey {
    /// The key that encrypted it.
    pub key: Arc<KeyRecord>,
    /// The data key itself.
    pub plaintext: Secret,
    /// The data key encrypted under `key`.
    pub blob: Vec<u8>,
}

impl Kms {
    /// Generates `len` random bytes (1-1024) and returns them with their
    /// encryption under the key.
    pub async fn generate_data_key(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        context: &EncryptionContext,
        len: usize,
        dry_run: bool,
    ) -> Result<DataKey, KmsError> {
        self.make_data_key(
            caller,
            key_ref,
            context,
            len,
            dry_run,
            CryptoOperation::GenerateDataKey,
        )
        .await
    }

    /// GenerateDataKeyWithoutPlaintext: the same as
    /// [`Kms::generate_data_key`] (the wire layer drops the plaintext), but
    /// recorded as its own operation in the key's last usage.
    pub async fn generate_data_key_without_plaintext(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        context: &EncryptionContext,
        len: usize,
        dry_run: bool,
    ) -> Result<DataKey, KmsError> {
        self.make_data_key(
            caller,
            key_ref,
            context,
            len,
            dry_run,
            CryptoOperation::GenerateDataKeyWithoutPlaintext,
        )
        .await
    }

    async fn make_data_key(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        context: &EncryptionContext,
        len: usize,
        dry_run: bool,
        operation: CryptoOperation,
    ) -> Result<DataKey, KmsError> {
        if len == 0 || len > MAX_DATA_KEY {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and {MAX_DATA_KEY}"
            )));
        }
        let grant_op = match operation {
            CryptoOperation::GenerateDataKey => GrantOperation::GenerateDataKey,
            _ => GrantOperation::GenerateDataKeyWithoutPlaintext,
        };
        let key = self
            .resolve(caller, key_ref, Access::Crypto(grant_op, context))
            .await?;
        self.require_usable(&key.record)?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        let plaintext = self.random_secret(len)?;
        let blob = self.seal_with_current(&key, context, plaintext.expose())?;
        self.record_use(caller, &key.record, operation);
        Ok(DataKey {
            key: key.record.clone(),
            plaintext,
            blob,
        })
    }
}
