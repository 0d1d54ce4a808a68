//! ScheduleKeyDeletion.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::{KeyRecord, KeyState};
use crate::operation::Operation;

/// Shortest waiting period.
pub const MIN_WINDOW_DAYS: u32 = 7;
/// Longest waiting period, and the default.
pub const MAX_WINDOW_DAYS: u32 = 30;

impl Kms {
    /// Schedules the key for deletion after `days` (7-30, default 30). The
    /// key is unusable from now on; when the period ends its material is
    /// destroyed (see [`Kms::execute_due_deletions`]). Refused while the
    /// key's deletion protection is on.
    pub async fn schedule_key_deletion(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        days: Option<u32>,
    ) -> Result<KeyRecord, KmsError> {
        let days = days.unwrap_or(MAX_WINDOW_DAYS);
        if !(MIN_WINDOW_DAYS..=MAX_WINDOW_DAYS).contains(&days) {
            return Err(KmsError::Validation(format!(
                "PendingWindowInDays must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS}, got {days}"
            )));
        }
        let now = self.clock.now();
        self.update_key_with(caller, key_ref, Operation::ScheduleKeyDeletion, |kms, key| {
            kms.require_not_pending_deletion(key)?;
            if key.deletion_protection {
                return Err(KmsError::DeletionProtectionEnabled(format!(
                    "Deletion protection is enabled for {}, so it cannot be scheduled for deletion. \
                     Disable it first with the KeywardenService.DisableKeyDeletionProtection operation.",
                    kms.record_arn(key)
                )));
            }
            // A multi-Region primary key with replicas waits for them: its
            // waiting period starts when the last replica is deleted
            // (`Kms::execute_due_deletions`).
            let home = &kms.config.region;
            if key.is_primary(home) && key.regions(home).len() > 1 {
                key.state = KeyState::PendingReplicaDeletion;
                key.deletion_date = None;
            } else {
                key.state = KeyState::PendingDeletion;
                key.deletion_date = Some(now.plus_days(days));
            }
            key.pending_window_days = Some(days);
            Ok(())
        })
        .await
    }
}
