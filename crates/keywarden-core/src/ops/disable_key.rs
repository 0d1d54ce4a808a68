//! DisableKey.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::KeyState;
use crate::operation::Operation;

impl Kms {
    /// Disables a key: it stays, but cryptographic operations are refused.
    pub async fn disable_key(&self, caller: &Caller, key_ref: &KeyRef) -> Result<(), KmsError> {
        self.update_key_with(
            caller,
            key_ref,
            Operation::DisableKey,
            |kms, key| match key.state {
                KeyState::Enabled | KeyState::Disabled => {
                    key.state = KeyState::Disabled;
                    Ok(())
                }
                _ => Err(KmsError::InvalidState(format!(
                    "{} is {} and cannot be disabled.",
                    kms.record_arn(key),
                    key.state.as_str()
                ))),
            },
        )
        .await
        .map(|_| ())
    }
}
