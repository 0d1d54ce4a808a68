//! DisableKeyRotation.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::operation::Operation;

impl Kms {
    /// Turns automatic rotation off; existing versions stay and still
    /// decrypt. Disabling it where it is off is a no-op. Same state and
    /// origin rules as [`Kms::enable_key_rotation`].
    pub async fn disable_key_rotation(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<(), KmsError> {
        self.update_key_with(
            caller,
            key_ref,
            Operation::DisableKeyRotation,
            |kms, key| {
                kms.require_rotation_supported(key, true)?;
                kms.require_usable(key)?;
                key.rotation = None;
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }
}
