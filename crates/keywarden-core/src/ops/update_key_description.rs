//! UpdateKeyDescription.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::operation::Operation;
use crate::ops::create_key::MAX_DESCRIPTION;

impl Kms {
    /// Replaces the key's description.
    pub async fn update_key_description(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        description: &str,
    ) -> Result<(), KmsError> {
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {MAX_DESCRIPTION}"
            )));
        }
        self.update_key_with(
            caller,
            key_ref,
            Operation::UpdateKeyDescription,
            |kms, key| {
                kms.require_not_pending_deletion(key)?;
                key.description = description.to_owned();
                Ok(())
            },
        )
        .await
        .map(|_| ())
    }
}
