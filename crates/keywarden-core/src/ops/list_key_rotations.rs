//! ListKeyRotations.

use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{page_limit, Access, Caller, Kms, Page};
use crate::model::{KeyRecord, RotationType};

/// One material version as ListKeyRotations reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationEntry {
    /// The version number (the marker of the next page).
    pub version: u32,
    /// When the version was made: the rotation date.
    pub date: UnixMillis,
    /// The rotation that made it; `None` for the initial material.
    pub rotation: Option<RotationType>,
    /// Whether this version encrypts (the newest).
    pub current: bool,
}

/// A page of a key's rotations.
#[derive(Debug)]
pub struct KeyRotations {
    /// The key.
    pub key: Arc<KeyRecord>,
    /// Its rotations, oldest first.
    pub page: Page<RotationEntry>,
}

impl Kms {
    /// The key's completed rotations, oldest first; with `include_initial`
    /// (`IncludeKeyMaterial` `ALL_KEY_MATERIAL`) the initial material too.
    /// The marker names the key and the last version of the previous page,
    /// so a marker of another key or listing is `InvalidMarkerException`.
    pub async fn list_key_rotations(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        include_initial: bool,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<KeyRotations, KmsError> {
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::ListKeyRotations),
            )
            .await?
            .record
            .clone();
        self.require_rotation_supported(&key, false)?;
        let after = match marker {
            None => None,
            Some(m) => Some(parse_marker(&key, m).ok_or_else(|| {
                KmsError::InvalidMarker("The marker is not one this service returned".into())
            })?),
        };
        let current = key.current_version().map(|v| v.version);
        let limit = page_limit(limit);
        let mut items: Vec<RotationEntry> = key
            .versions
            .iter()
            .filter(|v| include_initial || v.rotation.is_some())
            .filter(|v| after.is_none_or(|a| v.version > a))
            .take(limit.saturating_add(1))
            .map(|v| RotationEntry {
                version: v.version,
                date: v.created_at,
                rotation: v.rotation,
                current: Some(v.version) == current,
            })
            .collect();
        let next_marker = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|e| marker_of(&key, e.version))
        } else {
            None
        };
        Ok(KeyRotations {
            key,
            page: Page { items, next_marker },
        })
    }
}

fn marker_of(key: &KeyRecord, version: u32) -> String {
    format!("{}/{version}", key.key_id)
}

/// The version a marker names, if it is one [`marker_of`] made for this key
/// and the version exists.
fn parse_marker(key: &KeyRecord, marker: &str) -> Option<u32> {
    let (key_id, version) = marker.split_once('/')?;
    if key_id != key.key_id.to_string() || version.starts_with('+') {
        return None;
    }
    let version: u32 = version.parse().ok()?;
    key.version(version).map(|v| v.version)
}
