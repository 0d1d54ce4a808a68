//! EnableKey.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::KeyState;
use crate::operation::Operation;

impl Kms {
    /// Enables a disabled key; enabling an enabled key is a no-op, as in AWS.
    pub async fn enable_key(&self, caller: &Caller, key_ref: &KeyRef) -> Result<(), KmsError> {
        self.update_key_with(
            caller,
            key_ref,
            Operation::EnableKey,
            |kms, key| match key.state {
                KeyState::Enabled | KeyState::Disabled => {
                    key.state = KeyState::Enabled;
                    Ok(())
                }
                _ => Err(KmsError::InvalidState(format!(
                    "{} is {} and cannot be enabled.",
                    kms.record_arn(key),
                    key.state.as_str()
                ))),
            },
        )
        .await
        .map(|_| ())
    }
}
