//! Decrypt.

use std::sync::Arc;

use crate::ciphertext;
use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::{CryptoOperation, GrantOperation, KeyRecord};
use crate::secret::Secret;

impl Kms {
    /// Decrypts a blob. The key comes from the blob; if the caller names a
    /// key too, it must be that key (`IncorrectKeyException` otherwise). A
    /// blob whose key the caller does not own is `InvalidCiphertext`, so a
    /// foreign blob reveals nothing about other accounts.
    pub async fn decrypt(
        &self,
        caller: &Caller,
        blob: &[u8],
        context: &EncryptionContext,
        key_ref: Option<&KeyRef>,
        dry_run: bool,
    ) -> Result<(Arc<KeyRecord>, Secret), KmsError> {
        let (key, plaintext) = self
            .open_blob(caller, blob, context, key_ref, GrantOperation::Decrypt)
            .await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        self.record_use(caller, &key, CryptoOperation::Decrypt);
        Ok((key, plaintext))
    }

    /// Shared by Decrypt and ReEncrypt.
    pub(crate) async fn open_blob(
        &self,
        caller: &Caller,
        blob: &[u8],
        context: &EncryptionContext,
        key_ref: Option<&KeyRef>,
        operation: GrantOperation,
    ) -> Result<(Arc<KeyRecord>, Secret), KmsError> {
        if caller.product.is_some() && key_ref.is_none() {
            return Err(product_must_name_key());
        }
        let parsed = ciphertext::parse(blob)?;
        if let Some(named) = key_ref {
            let named = self
                .resolve(caller, named, Access::Crypto(operation, context))
                .await?;
            if named.record.key_id != parsed.key_id {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify a KMS key that can perform this operation.".into(),
                ));
            }
        }
        let key = self
            .cached_key(&caller.account_id, &parsed.key_id)
            .await?
            .ok_or(KmsError::InvalidCiphertext)?;
        // The key named in the request is the blob's key (checked above):
        // its alias is `kms:RequestAlias` here too.
        self.authorize(
            caller,
            &key.record,
            Access::Crypto(operation, context),
            key_ref,
        )
        .await?;
        self.require_usable(&key.record)?;
        let handle = self.handle(&key, parsed.version)?;
        let plaintext = ciphertext::open(handle.as_ref(), &parsed, context)?;
        Ok((key.record.clone(), plaintext))
    }
}

/// A product's request must name the tenant's key: the blob names only a
/// key id, not the account the product acts for.
pub(crate) fn product_must_name_key() -> KmsError {
    KmsError::AccessDenied(
        "a product must name the tenant's key by key ARN or alias ARN (KeyId is required)".into(),
    )
}
