//! EnableKeyRotation.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::{AutoRotation, KeyRecord};
use crate::operation::Operation;

/// Shortest automatic rotation period AWS accepts.
pub const MIN_ROTATION_PERIOD_DAYS: u32 = 90;
/// Longest automatic rotation period AWS accepts.
pub const MAX_ROTATION_PERIOD_DAYS: u32 = 2560;
/// The period when the request names none.
pub const DEFAULT_ROTATION_PERIOD_DAYS: u32 = 365;

impl Kms {
    /// Turns automatic rotation on with a period of `period_days` (90-2560,
    /// default 365): the first automatic rotation is due one period from
    /// now. On a key where it is on already, the call changes the period of
    /// the running interval, which then ends at its start plus the new period
    /// (at the next sweep, if that is in the past).
    ///
    /// Refused for keys that are not enabled (`DisabledException`,
    /// `KMSInvalidStateException`, as AWS) and for keys whose material
    /// cannot be rotated (`UnsupportedOperationException`).
    pub async fn enable_key_rotation(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        period_days: Option<u32>,
    ) -> Result<KeyRecord, KmsError> {
        let period = period_days.unwrap_or(DEFAULT_ROTATION_PERIOD_DAYS);
        if !(MIN_ROTATION_PERIOD_DAYS..=MAX_ROTATION_PERIOD_DAYS).contains(&period) {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value '{period}' at 'rotationPeriodInDays' failed to satisfy constraint: Member must have value between {MIN_ROTATION_PERIOD_DAYS} and {MAX_ROTATION_PERIOD_DAYS}"
            )));
        }
        let now = self.clock.now();
        self.update_key_with(caller, key_ref, Operation::EnableKeyRotation, |kms, key| {
            kms.require_rotation_supported(key, true)?;
            kms.require_usable(key)?;
            let next_rotation = match key.rotation {
                Some(running) => running
                    .next_rotation
                    .minus_days(running.period_days)
                    .plus_days(period),
                None => now.plus_days(period),
            };
            key.rotation = Some(AutoRotation {
                period_days: period,
                next_rotation,
            });
            Ok(())
        })
        .await
    }
}
