//! DisableKeyDeletionProtection: a Keywarden extension, not an AWS operation
//! (`X-Amz-Target: KeywardenService.DisableKeyDeletionProtection`).

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};

impl Kms {
    /// Turns deletion protection off, so the key can be scheduled for
    /// deletion again. Same state rules as
    /// [`Kms::enable_key_deletion_protection`]; turning it off twice is a
    /// no-op.
    pub async fn disable_key_deletion_protection(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<(), KmsError> {
        self.set_deletion_protection(caller, key_ref, false).await
    }
}
