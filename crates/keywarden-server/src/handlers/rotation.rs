//! Wire shapes of the rotation operations: EnableKeyRotation,
//! DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand,
//! ListKeyRotations.

use keywarden_core::ops::enable_key_rotation::{
    MAX_ROTATION_PERIOD_DAYS, MIN_ROTATION_PERIOD_DAYS,
};
use keywarden_core::{Caller, Kms};
use serde::{Deserialize, Serialize};

use super::{key_id_only, EMPTY};
use crate::error::ApiError;
use crate::wire::{check_enum, check_range, decode, encode, key_ref, limit, marker, required};

pub(super) async fn enable_key_rotation(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        rotation_period_in_days: Option<i64>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let period = match req.rotation_period_in_days {
        None => None,
        Some(d) => {
            check_range(
                d,
                "rotationPeriodInDays",
                i64::from(MIN_ROTATION_PERIOD_DAYS),
                i64::from(MAX_ROTATION_PERIOD_DAYS),
            )?;
            Some(d as u32)
        }
    };
    kms.enable_key_rotation(caller, &key, period).await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn disable_key_rotation(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    kms.disable_key_rotation(caller, &key_id_only(body)?)
        .await?;
    Ok(EMPTY.to_vec())
}

/// AWS's `GetKeyRotationStatusResponse`. No `OnDemandRotationStartDate`:
/// on-demand rotations complete before RotateKeyOnDemand returns, so none
/// is ever in progress.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetKeyRotationStatusOut {
    key_id: String,
    key_rotation_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_rotation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_period_in_days: Option<u32>,
}

pub(super) async fn get_key_rotation_status(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let status = kms
        .get_key_rotation_status(caller, &key_id_only(body)?)
        .await?;
    let key = &status.key;
    Ok(encode(&GetKeyRotationStatusOut {
        key_id: kms.record_arn(key),
        key_rotation_enabled: status.rotation.is_some(),
        next_rotation_date: status.rotation.map(|r| r.next_rotation.as_epoch_seconds()),
        rotation_period_in_days: status.rotation.map(|r| r.period_days),
    }))
}

/// AWS's `RotateKeyOnDemandResponse`: the key id, not its ARN.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RotateKeyOnDemandOut {
    key_id: String,
}

pub(super) async fn rotate_key_on_demand(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let key = kms
        .rotate_key_on_demand(caller, &key_id_only(body)?)
        .await?;
    Ok(encode(&RotateKeyOnDemandOut {
        key_id: key.key_id.to_string(),
    }))
}

/// AWS's `RotationsListEntry`; the initial material (listed with
/// `IncludeKeyMaterial: ALL_KEY_MATERIAL`) has no rotation date or type.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RotationsListEntry {
    key_id: String,
    key_material_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation_type: Option<&'static str>,
}

/// AWS's `ListKeyRotationsResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyRotationsOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    rotations: Vec<RotationsListEntry>,
    truncated: bool,
}

pub(super) async fn list_key_rotations(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        include_key_material: Option<String>,
        limit: Option<i64>,
        marker: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let include_initial = match req.include_key_material.as_deref() {
        None => false,
        Some(v) => {
            check_enum(
                v,
                "includeKeyMaterial",
                &["ALL_KEY_MATERIAL", "ROTATIONS_ONLY"],
            )?;
            v == "ALL_KEY_MATERIAL"
        }
    };
    let listed = kms
        .list_key_rotations(
            caller,
            &key,
            include_initial,
            limit(req.limit)?,
            marker(req.marker.as_ref())?,
        )
        .await?;
    let arn = kms.record_arn(&listed.key);
    let page = listed.page;
    Ok(encode(&ListKeyRotationsOut {
        rotations: page
            .items
            .iter()
            .map(|r| RotationsListEntry {
                key_id: arn.clone(),
                key_material_state: if r.current { "CURRENT" } else { "NON_CURRENT" },
                rotation_date: r.rotation.map(|_| r.date.as_epoch_seconds()),
                rotation_type: r.rotation.map(|rotation| rotation.as_str()),
            })
            .collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    }))
}
