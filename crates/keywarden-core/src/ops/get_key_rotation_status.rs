//! GetKeyRotationStatus.

use std::sync::Arc;

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::{AutoRotation, KeyRecord, KeyState};

/// A key's automatic rotation as GetKeyRotationStatus reports it.
#[derive(Debug, Clone)]
pub struct RotationStatus {
    /// The key.
    pub key: Arc<KeyRecord>,
    /// The rotation in effect; `None` when it is off.
    pub rotation: Option<AutoRotation>,
}

impl Kms {
    /// Whether automatic rotation is on, its period and the next rotation
    /// date. As in AWS, a key pending deletion reports rotation off (and is
    /// not rotated) while keeping its setting, which returns if the
    /// deletion is cancelled; a disabled key reports its setting unchanged.
    /// Keys other than symmetric encryption keys report rotation off.
    pub async fn get_key_rotation_status(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<RotationStatus, KmsError> {
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::GetKeyRotationStatus),
            )
            .await?
            .record
            .clone();
        // Keys of other specs never rotate: they report rotation off (AWS
        // answers so, and clients such as Terraform's provider read it for
        // every key) while the rotation operations refuse them.
        if !key.kind.is_symmetric_encryption() {
            return Ok(RotationStatus {
                key,
                rotation: None,
            });
        }
        self.require_rotation_supported(&key, false)?;
        let rotation = match key.state {
            KeyState::PendingDeletion => None,
            _ => key.rotation,
        };
        Ok(RotationStatus { key, rotation })
    }
}
