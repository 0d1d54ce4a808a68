//! CancelKeyDeletion.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::{KeyRecord, KeyState};
use crate::operation::Operation;

impl Kms {
    /// Cancels a scheduled deletion; the key comes back Disabled (or
    /// PendingImport if it has no material), as in AWS.
    pub async fn cancel_key_deletion(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<KeyRecord, KmsError> {
        self.update_key_with(caller, key_ref, Operation::CancelKeyDeletion, |kms, key| {
            if !matches!(
                key.state,
                KeyState::PendingDeletion | KeyState::PendingReplicaDeletion
            ) {
                return Err(KmsError::InvalidState(format!(
                    "{} is not pending deletion.",
                    kms.record_arn(key)
                )));
            }
            // Imported material deleted or expired meanwhile: the key
            // waits for import again (as AWS does).
            key.state = if key.has_material() {
                KeyState::Disabled
            } else {
                KeyState::PendingImport
            };
            key.deletion_date = None;
            key.pending_window_days = None;
            Ok(())
        })
        .await
    }
}
