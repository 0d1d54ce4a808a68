//! DeleteAlias.

use crate::error::KmsError;
use crate::ids::AliasName;
use crate::kms::{Caller, Kms};

impl Kms {
    /// Deletes one of the caller's aliases. The key is not affected.
    pub async fn delete_alias(&self, caller: &Caller, name: &str) -> Result<(), KmsError> {
        let name = AliasName::parse_user(name)?;
        let deleted = self
            .store
            .delete_alias(&caller.account_id, caller.region.as_deref(), &name)
            .await;
        self.caches
            .invalidate_alias(&caller.account_id, caller.region.as_deref(), &name);
        if deleted? {
            Ok(())
        } else {
            Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                self.alias_arn(caller.region.as_deref(), &caller.account_id, &name)
            )))
        }
    }
}
