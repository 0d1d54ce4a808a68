//! Decrypt.

use std::sync::Arc;

use crate::cache::CachedKey;
use crate::ciphertext;
use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::{KeyId, KeyRef};
use crate::kms::{Access, Caller, Kms};
use crate::model::{CryptoOperation, GrantOperation, KeyRecord};
use crate::secret::Secret;

impl Kms {
    /// Decrypts a blob. The key comes from the blob; if the caller names a
    /// key too, it must be that key (`IncorrectKeyException` otherwise). A
    /// blob whose key is neither the caller's account's nor shared with the
    /// caller is `InvalidCiphertext`, so a foreign blob reveals nothing
    /// about other accounts.
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
        let parsed = ciphertext::parse(blob)?;
        let access = Access::Crypto(operation, context);
        let key = match key_ref {
            Some(named) => {
                let named = self.resolve(caller, named, access).await?;
                if named.record.key_id != parsed.key_id {
                    return Err(KmsError::IncorrectKey(
                        "The key ID in the request does not identify a KMS key that can perform this operation.".into(),
                    ));
                }
                named
            }
            None => {
                let key = match self.cached_key(&caller.account_id, &parsed.key_id).await? {
                    // A multi-Region key decrypts in every region it has a
                    // key in; elsewhere the blob names no key the caller has.
                    Some(key) => self
                        .regional_view(caller, key)
                        .ok_or(KmsError::InvalidCiphertext)?,
                    None => self
                        .shared_blob_key(caller, &parsed.key_id, access)
                        .await?
                        .ok_or(KmsError::InvalidCiphertext)?,
                };
                self.authorize(caller, &key.record, access, None).await?;
                key
            }
        };
        self.require_usable(&key.record)?;
        let handle = self.handle(&key, parsed.version)?;
        let plaintext = ciphertext::open(handle.as_ref(), &parsed, context)?;
        Ok((key.record.clone(), plaintext))
    }
}

impl Kms {
    /// The key of another account that made a blob, when that key is
    /// shared with the caller ([`Kms::is_shared_with`]); `None` otherwise,
    /// so a blob of a key the caller may not see is `InvalidCiphertext`
    /// whether or not the key exists.
    async fn shared_blob_key(
        &self,
        caller: &Caller,
        key_id: &KeyId,
        access: Access<'_>,
    ) -> Result<Option<Arc<CachedKey>>, KmsError> {
        // Products act for the account their request names (or, for a
        // Decrypt naming no key, the blob's key's account already).
        if caller.product.is_some() {
            return Ok(None);
        }
        let Some(account) = self.store.key_account(key_id).await? else {
            return Ok(None);
        };
        if account == caller.account_id {
            return Ok(None);
        }
        let Some(key) = self
            .cached_key(&account, key_id)
            .await?
            .and_then(|k| self.regional_view(caller, k))
        else {
            return Ok(None);
        };
        if !self.is_shared_with(caller, &key.record, access).await? {
            return Ok(None);
        }
        Ok(Some(key))
    }
}

/// A product's request must name the tenant's key: the blob names only a
/// key id, not the account the product acts for.
pub(crate) fn product_must_name_key() -> KmsError {
    KmsError::AccessDenied(
        "a product must name the tenant's key by key ARN or alias ARN (KeyId is required)".into(),
    )
}
