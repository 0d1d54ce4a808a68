//! Wire shapes of the key lifecycle operations: CreateKey, DescribeKey,
//! ListKeys, UpdateKeyDescription, EnableKey, DisableKey,
//! ScheduleKeyDeletion, CancelKeyDeletion, GetKeyLastUsage, and the
//! deletion protection extensions.

use keywarden_core::key_spec::{KeySpec, KeyUsageType};
use keywarden_core::model::Origin;
use keywarden_core::ops::create_key::CreateKeyRequest;
use keywarden_core::ops::replicate_key::ReplicateKeyRequest;
use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use super::{key_id_only, key_id_response, ListIn, EMPTY};
use crate::error::ApiError;
use crate::wire::{
    check_enum, check_grant_tokens, check_len, check_range, decode, encode, invalid_enum, key_ref,
    limit, marker, parse_enum, required, tags, KeyMetadata, WireTag,
};

/// The values of the deprecated `CustomerMasterKeySpec` (AWS's model has
/// no ML-DSA, ML-KEM or Ed25519 there).
const CUSTOMER_MASTER_KEY_SPECS: &[KeySpec] = &[
    KeySpec::Rsa2048,
    KeySpec::Rsa3072,
    KeySpec::Rsa4096,
    KeySpec::EccNistP256,
    KeySpec::EccNistP384,
    KeySpec::EccNistP521,
    KeySpec::EccSecgP256k1,
    KeySpec::SymmetricDefault,
    KeySpec::Hmac224,
    KeySpec::Hmac256,
    KeySpec::Hmac384,
    KeySpec::Hmac512,
    KeySpec::Sm2,
];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyIn {
    policy: Option<String>,
    description: Option<String>,
    key_usage: Option<String>,
    customer_master_key_spec: Option<String>,
    key_spec: Option<String>,
    origin: Option<String>,
    custom_key_store_id: Option<String>,
    bypass_policy_lockout_safety_check: Option<bool>,
    tags: Option<Vec<WireTag>>,
    multi_region: Option<bool>,
    xks_key_id: Option<String>,
}

/// AWS's `CreateKeyResponse` and `DescribeKeyResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadataOut {
    key_metadata: KeyMetadata,
}

pub(super) async fn create_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: CreateKeyIn = decode(body)?;
    if let Some(p) = &req.policy {
        check_len(p, "policy", 1, 131_072)?;
    }
    if let Some(d) = &req.description {
        check_len(d, "description", 0, 8192)?;
    }
    if req.customer_master_key_spec.is_some() && req.key_spec.is_some() {
        return Err(KmsError::Validation(
            "You cannot specify both KeySpec and CustomerMasterKeySpec".into(),
        )
        .into());
    }
    let key_spec = match (&req.key_spec, &req.customer_master_key_spec) {
        (Some(spec), _) => parse_enum::<KeySpec>(spec, "keySpec", KeySpec::ALL, KeySpec::parse)?,
        (None, Some(spec)) => {
            let cmk_spec = parse_enum::<KeySpec>(
                spec,
                "customerMasterKeySpec",
                CUSTOMER_MASTER_KEY_SPECS,
                KeySpec::parse,
            )?;
            if !CUSTOMER_MASTER_KEY_SPECS.contains(&cmk_spec) {
                return Err(
                    invalid_enum(spec, "customerMasterKeySpec", CUSTOMER_MASTER_KEY_SPECS).into(),
                );
            }
            cmk_spec
        }
        (None, None) => KeySpec::SymmetricDefault,
    };
    let key_usage = req
        .key_usage
        .as_deref()
        .map(|u| parse_enum(u, "keyUsage", KeyUsageType::ALL, KeyUsageType::parse))
        .transpose()?;
    let origin = match req.origin.as_deref() {
        None | Some("AWS_KMS") => Origin::AwsKms,
        Some("EXTERNAL") => Origin::External,
        Some("AWS_CLOUDHSM") => Origin::AwsCloudHsm,
        Some(o) => {
            check_enum(
                o,
                "origin",
                &["AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
            )?;
            return Err(KmsError::Unsupported(
                "External key stores (Origin EXTERNAL_KEY_STORE) are not supported".into(),
            )
            .into());
        }
    };
    if req.xks_key_id.is_some() {
        return Err(KmsError::Unsupported("External key stores are not supported".into()).into());
    }
    if let Some(id) = &req.custom_key_store_id {
        check_len(id, "customKeyStoreId", 1, 64)?;
    }
    let key = kms
        .create_key(
            caller,
            CreateKeyRequest {
                description: req.description.unwrap_or_default(),
                origin,
                tags: tags(req.tags)?,
                policy: req.policy,
                bypass_policy_lockout_safety_check: req
                    .bypass_policy_lockout_safety_check
                    .unwrap_or(false),
                custom_key_store_id: req.custom_key_store_id.clone(),
                key_spec,
                key_usage,
                multi_region: req.multi_region.unwrap_or(false),
            },
        )
        .await?;
    Ok(encode(&KeyMetadataOut {
        key_metadata: KeyMetadata::of(kms, &key),
    }))
}

pub(super) async fn describe_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        grant_tokens: Option<Vec<String>>,
    }
    let req: In = decode(body)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let key = kms
        .describe_key(caller, &key_ref(&required(req.key_id, "keyId")?)?)
        .await?;
    Ok(encode(&KeyMetadataOut {
        key_metadata: KeyMetadata::of(kms, &key),
    }))
}

/// AWS's `KeyListEntry`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyListEntry {
    key_arn: String,
    key_id: String,
}

/// AWS's `ListKeysResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeysOut {
    keys: Vec<KeyListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
}

pub(super) async fn list_keys(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: ListIn = decode(body)?;
    let page = kms
        .list_keys(caller, limit(req.limit)?, marker(req.marker.as_ref())?)
        .await?;
    Ok(encode(&ListKeysOut {
        keys: page
            .items
            .iter()
            .map(|k| KeyListEntry {
                key_arn: kms.record_arn(k),
                key_id: k.key_id.to_string(),
            })
            .collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    }))
}

pub(super) async fn update_key_description(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        description: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let description = required(req.description, "description")?;
    check_len(&description, "description", 0, 8192)?;
    kms.update_key_description(caller, &key, &description)
        .await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn enable_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    kms.enable_key(caller, &key_id_only(body)?).await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn disable_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    kms.disable_key(caller, &key_id_only(body)?).await?;
    Ok(EMPTY.to_vec())
}

/// AWS's `ScheduleKeyDeletionResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduleKeyDeletionOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_date: Option<f64>,
    key_id: String,
    key_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_window_in_days: Option<u32>,
}

pub(super) async fn schedule_key_deletion(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        pending_window_in_days: Option<i64>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let days = match req.pending_window_in_days {
        None => None,
        Some(d) => {
            check_range(d, "pendingWindowInDays", 1, 365)?;
            Some(d as u32)
        }
    };
    let key = kms.schedule_key_deletion(caller, &key, days).await?;
    // A scheduled key always has both a date and a window, so nothing is
    // ever skipped here; `null` would not be valid for AWS's shape.
    Ok(encode(&ScheduleKeyDeletionOut {
        deletion_date: key.deletion_date.map(|d| d.as_epoch_seconds()),
        key_id: kms.record_arn(&key),
        key_state: key.state.as_str(),
        pending_window_in_days: key.pending_window_days,
    }))
}

pub(super) async fn cancel_key_deletion(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let key = kms.cancel_key_deletion(caller, &key_id_only(body)?).await?;
    Ok(key_id_response(kms.record_arn(&key)))
}

/// AWS's `KeyLastUsageData`, plus `Principal` (an extension: the access
/// key id that made the request). Every member is absent when the key has
/// not been used since tracking began (AWS: "an empty object").
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct KeyLastUsageData {
    #[serde(skip_serializing_if = "Option::is_none")]
    kms_request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    operation: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timestamp: Option<f64>,
}

/// AWS's `GetKeyLastUsageResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetKeyLastUsageOut {
    key_creation_date: f64,
    key_id: String,
    key_last_usage: KeyLastUsageData,
    tracking_start_date: f64,
}

/// AWS's shape, plus `KeyLastUsage.Principal`. No `CloudTrailEventId`:
/// Keywarden has no CloudTrail; `KmsRequestId` is the `x-amzn-RequestId` of
/// that request.
pub(super) async fn get_key_last_usage(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let usage = kms.get_key_last_usage(caller, &key_id_only(body)?).await?;
    let key = &usage.key;
    let last = match &usage.last_usage {
        Some(u) => KeyLastUsageData {
            kms_request_id: Some(u.request_id.clone()),
            operation: Some(u.operation.as_str()),
            principal: Some(u.principal.clone()),
            timestamp: Some(u.used_at.as_epoch_seconds()),
        },
        None => KeyLastUsageData::default(),
    };
    Ok(encode(&GetKeyLastUsageOut {
        key_creation_date: key.created_at.as_epoch_seconds(),
        key_id: kms.record_arn(key),
        key_last_usage: last,
        tracking_start_date: usage.tracking_start.as_epoch_seconds(),
    }))
}

/// `KeywardenService.EnableKeyDeletionProtection` (docs/api-extensions.md).
pub(super) async fn enable_key_deletion_protection(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    kms.enable_key_deletion_protection(caller, &key_id_only(body)?)
        .await?;
    Ok(EMPTY.to_vec())
}

/// `KeywardenService.DisableKeyDeletionProtection` (docs/api-extensions.md).
pub(super) async fn disable_key_deletion_protection(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    kms.disable_key_deletion_protection(caller, &key_id_only(body)?)
        .await?;
    Ok(EMPTY.to_vec())
}

/// A region name as AWS's model constrains `ReplicaRegion` and
/// `PrimaryRegion` (1-32 characters; lowercase letters, digits, hyphens).
fn region_name(value: Option<String>, field: &str) -> Result<String, ApiError> {
    let region = required(value, field)?;
    check_len(&region, field, 1, 32)?;
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([a-z]+-){{2,3}}\\d+$"
        ))
        .into());
    }
    Ok(region)
}

/// AWS's `ReplicateKeyResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReplicateKeyOut {
    replica_key_metadata: KeyMetadata,
    replica_policy: String,
    replica_tags: Vec<WireTag>,
}

/// `ReplicateKey` (docs/multi-region.md).
pub(super) async fn replicate_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        replica_region: Option<String>,
        policy: Option<String>,
        bypass_policy_lockout_safety_check: Option<bool>,
        description: Option<String>,
        tags: Option<Vec<WireTag>>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let replica_region = region_name(req.replica_region, "replicaRegion")?;
    if let Some(p) = &req.policy {
        check_len(p, "policy", 1, 131_072)?;
    }
    if let Some(d) = &req.description {
        check_len(d, "description", 0, 8192)?;
    }
    let replica = kms
        .replicate_key(
            caller,
            &key,
            ReplicateKeyRequest {
                replica_region,
                description: req.description.unwrap_or_default(),
                policy: req.policy,
                bypass_policy_lockout_safety_check: req
                    .bypass_policy_lockout_safety_check
                    .unwrap_or(false),
                tags: tags(req.tags)?,
            },
        )
        .await?;
    Ok(encode(&ReplicateKeyOut {
        replica_key_metadata: KeyMetadata::of(kms, &replica),
        replica_policy: kms.effective_key_policy(&replica),
        replica_tags: replica.tags.iter().map(WireTag::from).collect(),
    }))
}

/// `UpdatePrimaryRegion` (docs/multi-region.md).
pub(super) async fn update_primary_region(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        primary_region: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let region = region_name(req.primary_region, "primaryRegion")?;
    kms.update_primary_region(caller, &key, &region).await?;
    Ok(EMPTY.to_vec())
}
