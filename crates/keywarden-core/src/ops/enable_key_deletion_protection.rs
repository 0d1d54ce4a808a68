//! EnableKeyDeletionProtection: a Keywarden extension, not an AWS operation
//! (`X-Amz-Target: KeywardenService.EnableKeyDeletionProtection`).

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::KeyManager;
use crate::operation::Operation;

impl Kms {
    /// Turns deletion protection on: `ScheduleKeyDeletion` is refused with
    /// `DeletionProtectionEnabledException` until it is turned off. Allowed
    /// in every state but PendingDeletion (cancel the deletion first), for
    /// customer managed keys; turning it on twice is a no-op.
    pub async fn enable_key_deletion_protection(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<(), KmsError> {
        self.set_deletion_protection(caller, key_ref, true).await
    }

    /// Shared by the two deletion protection operations.
    pub(crate) async fn set_deletion_protection(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        on: bool,
    ) -> Result<(), KmsError> {
        let operation = if on {
            Operation::EnableKeyDeletionProtection
        } else {
            Operation::DisableKeyDeletionProtection
        };
        self.update_key_with(caller, key_ref, operation, |kms, key| {
            kms.require_not_pending_deletion(key)?;
            if key.key_manager != KeyManager::Customer {
                return Err(KmsError::Unsupported(format!(
                    "{} is not a customer managed key; deletion protection applies to customer managed keys only.",
                    kms.record_arn(key)
                )));
            }
            key.deletion_protection = on;
            Ok(())
        })
        .await
        .map(|_| ())
    }
}
