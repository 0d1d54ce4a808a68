//! DeleteImportedKeyMaterial.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::{KeyRecord, KeyState};
use crate::operation::Operation;

impl Kms {
    /// Deletes an `EXTERNAL` key's material: the stored (wrapped) material
    /// is cleared and the key waits for import again. Its ciphertexts open
    /// again once the same material is imported.
    pub async fn delete_imported_key_material(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<KeyRecord, KmsError> {
        self.update_key_with(
            caller,
            key_ref,
            Operation::DeleteImportedKeyMaterial,
            |kms, key| {
                kms.require_external(key)?;
                kms.require_not_pending_deletion(key)?;
                clear_material(key);
                Ok(())
            },
        )
        .await
    }
}

/// Clears every version's material and the expiration; the fingerprint
/// stays. A key pending deletion stays so (its deletion still executes);
/// any other goes to `PendingImport`.
pub(crate) fn clear_material(key: &mut KeyRecord) {
    for v in &mut key.versions {
        v.material.clear();
    }
    if let Some(state) = &mut key.import {
        state.expiration = None;
    }
    if key.state != KeyState::PendingDeletion {
        key.state = KeyState::PendingImport;
    }
}
