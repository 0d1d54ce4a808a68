//! CreateAlias.

use crate::error::KmsError;
use crate::ids::{AliasName, KeyRef};
use crate::kms::{Access, Caller, Kms};
use crate::model::AliasRecord;
use crate::operation::Operation;
use crate::store::StoreError;

impl Kms {
    /// Creates `alias/...` pointing at a key of the caller's account. The
    /// target must be named by key id or key ARN, not by another alias.
    pub async fn create_alias(
        &self,
        caller: &Caller,
        name: &str,
        target: &KeyRef,
    ) -> Result<(), KmsError> {
        let name = AliasName::parse_user(name)?;
        let key = self
            .alias_target_key(caller, target, Operation::CreateAlias)
            .await?;
        let now = self.clock.now();
        let alias = AliasRecord {
            account_id: caller.account_id.clone(),
            name,
            target: key.key_id,
            region: caller.region.clone(),
            created_at: now,
            updated_at: now,
            revision: 1,
        };
        let result = self.store.create_alias(&alias).await;
        // The key's cached alias list (`kms:ResourceAliases`) is stale now.
        self.caches
            .invalidate_alias(&caller.account_id, caller.region.as_deref(), &alias.name);
        match result {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists) => Err(KmsError::AlreadyExists(format!(
                "An alias with the name {} already exists",
                self.alias_arn(caller.region.as_deref(), &caller.account_id, &alias.name)
            ))),
            Err(StoreError::MissingReference) => Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                self.regional_key_arn(caller.region.as_deref(), &caller.account_id, &alias.target)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves the target of CreateAlias/UpdateAlias: a key id or key ARN of
    /// the caller's account, not pending deletion.
    pub(crate) async fn alias_target_key(
        &self,
        caller: &Caller,
        target: &KeyRef,
        operation: Operation,
    ) -> Result<crate::model::KeyRecord, KmsError> {
        if matches!(target, KeyRef::Alias(_) | KeyRef::AliasArn { .. }) {
            return Err(KmsError::Validation(
                "TargetKeyId must be a key ID or key ARN, not an alias".into(),
            ));
        }
        let key = self
            .resolve_fresh(caller, target, Access::Manage(operation))
            .await?;
        self.require_not_pending_deletion(&key)?;
        Ok(key)
    }
}
