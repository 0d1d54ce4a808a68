//! UpdateAlias.

use crate::error::KmsError;
use crate::ids::{AliasName, KeyRef};
use crate::kms::{Caller, Kms};
use crate::operation::Operation;
use crate::store::StoreError;

impl Kms {
    /// Points an existing alias at another key of the account.
    pub async fn update_alias(
        &self,
        caller: &Caller,
        name: &str,
        target: &KeyRef,
    ) -> Result<(), KmsError> {
        let name = AliasName::parse_user(name)?;
        let key = self
            .alias_target_key(caller, target, Operation::UpdateAlias)
            .await?;
        for _ in 0..16 {
            let mut alias = self
                .store
                .get_alias(&caller.account_id, caller.region.as_deref(), &name)
                .await?
                .ok_or_else(|| {
                    KmsError::NotFound(format!(
                        "Alias {} is not found.",
                        self.alias_arn(caller.region.as_deref(), &caller.account_id, &name)
                    ))
                })?;
            let expected = alias.revision;
            alias.target = key.key_id;
            alias.updated_at = self.clock.now();
            alias.revision = expected + 1;
            let result = self.store.update_alias(&alias, expected).await;
            self.caches
                .invalidate_alias(&caller.account_id, caller.region.as_deref(), &name);
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::MissingReference) => {
                    return Err(KmsError::NotFound(format!(
                        "Key '{}' does not exist",
                        self.record_arn(&key)
                    )))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}
