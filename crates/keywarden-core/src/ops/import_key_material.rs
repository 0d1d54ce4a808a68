//! ImportKeyMaterial.

use subtle::ConstantTimeEq;

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::{ImportState, KeyRecord, KeyState, KeyVersion, MaterialExpiration};
use crate::operation::Operation;
use crate::protector::KeyBinding;

/// The version imported material is stored as. Imported keys cannot be
/// rotated, so they have exactly this one version.
pub const IMPORTED_VERSION: u32 = 1;

/// How far in the future `ValidTo` may be (AWS's limit).
pub const MAX_VALID_TO_DAYS: u32 = 365;

impl Kms {
    /// Imports material into an `EXTERNAL` key: `encrypted` is the material
    /// wrapped under the public key of `import_token`'s parameters. A key
    /// waiting for material becomes `Enabled`; a key that has material keeps
    /// its state and takes the new expiration.
    ///
    /// A key only ever takes one material: once material was imported, any
    /// other is `IncorrectKeyMaterialException` (checked by fingerprint, in
    /// constant time), so ciphertexts made before a deletion decrypt again
    /// after the same material is imported again.
    pub async fn import_key_material(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        import_token: &[u8],
        encrypted: &[u8],
        expiration: MaterialExpiration,
    ) -> Result<KeyRecord, KmsError> {
        let importer = self.importer()?;
        let now = self.clock.now();
        if let MaterialExpiration::ValidTo(t) = expiration {
            if t <= now || t > now.plus_days(MAX_VALID_TO_DAYS) {
                return Err(KmsError::Validation(format!(
                    "ValidTo must be in the future and at most {MAX_VALID_TO_DAYS} days from now."
                )));
            }
        }
        let key = self
            .resolve_fresh(
                caller,
                key_ref,
                Access::Manage(Operation::ImportKeyMaterial),
            )
            .await?;
        self.check_importable(&key)?;
        let imported = importer
            .import(
                KeyBinding {
                    key_id: &key.key_id,
                    version: IMPORTED_VERSION,
                },
                key.kind.spec,
                import_token,
                encrypted,
                now,
            )
            .await
            .map_err(|e| self.import_error(e))?;
        // Re-checked against the record the compare-and-set writes, so a
        // concurrent first import of other material cannot slip in between.
        self.update_key_with(caller, key_ref, Operation::ImportKeyMaterial, |kms, key| {
            kms.check_importable(key)?;
            match &key.import {
                Some(state) if !bool::from(state.fingerprint.ct_eq(&imported.fingerprint)) => {
                    return Err(KmsError::IncorrectKeyMaterial(format!(
                        "The key material is not the material previously imported into {}.",
                        kms.record_arn(key)
                    )));
                }
                _ => {}
            }
            match key
                .versions
                .iter_mut()
                .find(|v| v.version == IMPORTED_VERSION)
            {
                // Present already (same material, checked above): keep the
                // stored form. Deleted: fill it back in.
                Some(v) if v.has_material() => {}
                Some(v) => v.material = imported.stored.clone(),
                None => key.versions.push(KeyVersion {
                    version: IMPORTED_VERSION,
                    protector: imported.protector.clone(),
                    material: imported.stored.clone(),
                    created_at: now,
                    rotation: None,
                }),
            }
            if key.kind.public_key.is_none() {
                key.kind.public_key = imported.public_key.clone();
            }
            key.import = Some(ImportState {
                fingerprint: imported.fingerprint.clone(),
                expiration: Some(expiration),
            });
            if key.state == KeyState::PendingImport {
                key.state = KeyState::Enabled;
            }
            Ok(())
        })
        .await
    }

    fn check_importable(&self, key: &KeyRecord) -> Result<(), KmsError> {
        self.require_external(key)?;
        self.require_not_pending_deletion(key)
    }
}
