//! RotateKeyOnDemand.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::{KeyRecord, RotationType};
use crate::operation::Operation;

/// On-demand rotations allowed per key.
pub const MAX_ON_DEMAND_ROTATIONS: u32 = 10;

impl Kms {
    /// Rotates the key's material now: a new version encrypts from now on and
    /// every older one still decrypts. The rotation completes before the call
    /// returns. It does not move the automatic rotation schedule, and a key
    /// gets at most [`MAX_ON_DEMAND_ROTATIONS`] of them
    /// (`LimitExceededException` after that).
    pub async fn rotate_key_on_demand(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<KeyRecord, KmsError> {
        let now = self.clock.now();
        self.update_key_with(caller, key_ref, Operation::RotateKeyOnDemand, |kms, key| {
            kms.require_rotation_supported(key, true)?;
            kms.require_usable(key)?;
            if key.on_demand_rotations >= MAX_ON_DEMAND_ROTATIONS {
                return Err(KmsError::LimitExceeded(format!(
                    "{} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations.",
                    kms.record_arn(key)
                )));
            }
            kms.add_rotated_version(key, RotationType::OnDemand, now)?;
            key.on_demand_rotations += 1;
            Ok(())
        })
        .await
    }
}
