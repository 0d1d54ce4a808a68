//! One handler per operation: decode the request shape, validate it the way
//! AWS does, call the domain, encode the response shape. The AWS operations
//! are reached through [`dispatch`], Keywarden's own extensions
//! (`docs/api-extensions.md`) through [`dispatch_extension`].

use std::collections::BTreeMap;

use keywarden_core::clock::UnixMillis;
use keywarden_core::model::{MaterialExpiration, Origin};
use keywarden_core::ops::create_key::CreateKeyRequest;
use keywarden_core::ops::enable_key_rotation::{
    MAX_ROTATION_PERIOD_DAYS, MIN_ROTATION_PERIOD_DAYS,
};
use keywarden_core::{Caller, Kms, KmsError};
use serde::Deserialize;
use serde_json::json;

mod grants;
mod keyrings;

/// DescribeCustomKeyStores: the HSM key stores the operator configured.
fn describe_custom_key_stores(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        custom_key_store_id: Option<String>,
        custom_key_store_name: Option<String>,
        limit: Option<i64>,
        marker: Option<String>,
    }
    let req: In = decode(body)?;
    if let Some(id) = &req.custom_key_store_id {
        check_len(id, "customKeyStoreId", 1, 64)?;
    }
    if let Some(name) = &req.custom_key_store_name {
        check_len(name, "customKeyStoreName", 1, 256)?;
    }
    let page = kms.describe_custom_key_stores(
        caller,
        req.custom_key_store_id.as_deref(),
        req.custom_key_store_name.as_deref(),
        limit(req.limit)?,
        marker(req.marker.as_ref())?,
    )?;
    let mut out = serde_json::Map::new();
    out.insert(
        "CustomKeyStores".into(),
        page.items
            .iter()
            .map(|s| {
                json!({
                    "CustomKeyStoreId": s.id,
                    "CustomKeyStoreName": s.name,
                    "CustomKeyStoreType": "AWS_CLOUDHSM",
                    "CloudHsmClusterId": format!("keywarden-pkcs11-{}", s.id),
                    "ConnectionState": if s.connected { "CONNECTED" } else { "DISCONNECTED" },
                    "CreationDate": s.created_at.as_epoch_seconds(),
                })
            })
            .collect(),
    );
    out.insert("Truncated".into(), json!(page.next_marker.is_some()));
    if let Some(m) = page.next_marker {
        out.insert("NextMarker".into(), json!(m));
    }
    Ok(encode(&out))
}

/// `KeywardenService.GetAccountBalance` (docs/api-extensions.md): the
/// caller's own balance, frozen flag and month-to-date charges.
async fn get_account_balance(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {}
    let _: In = decode(body)?;
    let (standing, bill) = kms.get_account_balance(caller).await?;
    let prices = &kms.billing().prices;
    let mut key_hours = 0i64;
    let mut key_charges = 0i64;
    let mut requests = 0u64;
    let mut billable = 0u64;
    let mut request_charges = 0i64;
    for line in &bill.lines {
        match &line.kind {
            keywarden_core::billing::LineKind::KeyHours { hours, .. } => {
                key_hours += hours;
                key_charges += line.amount;
            }
            keywarden_core::billing::LineKind::Requests {
                total, billable: b, ..
            } => {
                requests += total;
                billable += b;
                request_charges += line.amount;
            }
        }
    }
    Ok(encode(&json!({
        "AccountId": caller.account_id.as_str(),
        "Currency": prices.currency,
        "Balance": prices.format(standing.balance),
        "BalanceMinorUnits": standing.balance,
        "Frozen": standing.frozen,
        "BillingEnabled": kms.billing().enabled,
        "MonthToDate": {
            "Month": bill.month.to_string(),
            "KeyHours": key_hours,
            "KeyCharges": prices.format(key_charges),
            "Requests": requests,
            "FreeRequests": prices.free_requests,
            "BillableRequests": billable,
            "RequestCharges": prices.format(request_charges),
            "Total": prices.format(bill.total),
            "TotalMinorUnits": bill.total,
        },
    })))
}

use crate::error::ApiError;
use crate::wire::{
    check_encryption_algorithm, check_enum, check_grant_tokens, check_len, check_range, context,
    decode, encode, key_ref, limit, marker, required, secret_b64, tags, Blob, KeyMetadata,
    SecretBlob, WireTag,
};

/// The AWS operations Keywarden serves, by `X-Amz-Target` suffix after
/// `TrentService.`.
pub const OPERATIONS: &[&str] = &[
    "CancelKeyDeletion",
    "CreateAlias",
    "CreateGrant",
    "CreateKey",
    "Decrypt",
    "DeleteAlias",
    "DeleteImportedKeyMaterial",
    "DescribeCustomKeyStores",
    "DescribeKey",
    "DisableKey",
    "DisableKeyRotation",
    "EnableKey",
    "EnableKeyRotation",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateRandom",
    "GetKeyLastUsage",
    "GetKeyRotationStatus",
    "GetParametersForImport",
    "ImportKeyMaterial",
    "ListAliases",
    "ListGrants",
    "ListKeyRotations",
    "ListKeys",
    "ListResourceTags",
    "ListRetirableGrants",
    "ReEncrypt",
    "RetireGrant",
    "RevokeGrant",
    "RotateKeyOnDemand",
    "ScheduleKeyDeletion",
    "TagResource",
    "UntagResource",
    "UpdateAlias",
    "UpdateKeyDescription",
];

/// Keywarden's extension operations, by `X-Amz-Target` suffix after
/// `KeywardenService.` (`docs/api-extensions.md`). A separate namespace, so
/// no future AWS operation can collide with them.
pub const EXTENSION_OPERATIONS: &[&str] = &[
    "CreateKeyring",
    "CreateKeyringToken",
    "DeleteKeyring",
    "DescribeKeyring",
    "DisableKeyDeletionProtection",
    "EnableKeyDeletionProtection",
    "GetAccountBalance",
    "ListKeyrings",
    "RevokeKeyringToken",
    "RotateKeyringKey",
];

/// Runs AWS operation `op` (the target suffix after `TrentService.`) for
/// `caller` on a JSON body; returns the JSON response. Extension operation
/// names are unknown here.
pub async fn dispatch(
    kms: &Kms,
    caller: &Caller,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        "CancelKeyDeletion" => cancel_key_deletion(kms, caller, body).await,
        "CreateAlias" => create_alias(kms, caller, body).await,
        "DescribeCustomKeyStores" => describe_custom_key_stores(kms, caller, body),
        "CreateGrant" => grants::create_grant(kms, caller, body).await,
        "CreateKey" => create_key(kms, caller, body).await,
        "Decrypt" => decrypt(kms, caller, body).await,
        "DeleteAlias" => delete_alias(kms, caller, body).await,
        "DeleteImportedKeyMaterial" => delete_imported_key_material(kms, caller, body).await,
        "DescribeKey" => describe_key(kms, caller, body).await,
        "DisableKey" => disable_key(kms, caller, body).await,
        "DisableKeyRotation" => disable_key_rotation(kms, caller, body).await,
        "EnableKey" => enable_key(kms, caller, body).await,
        "EnableKeyRotation" => enable_key_rotation(kms, caller, body).await,
        "Encrypt" => encrypt(kms, caller, body).await,
        "GenerateDataKey" => generate_data_key(kms, caller, body, true).await,
        "GenerateDataKeyWithoutPlaintext" => generate_data_key(kms, caller, body, false).await,
        "GenerateRandom" => generate_random(kms, caller, body),
        "GetKeyLastUsage" => get_key_last_usage(kms, caller, body).await,
        "GetKeyRotationStatus" => get_key_rotation_status(kms, caller, body).await,
        "GetParametersForImport" => get_parameters_for_import(kms, caller, body).await,
        "ImportKeyMaterial" => import_key_material(kms, caller, body).await,
        "ListAliases" => list_aliases(kms, caller, body).await,
        "ListGrants" => grants::list_grants(kms, caller, body).await,
        "ListKeyRotations" => list_key_rotations(kms, caller, body).await,
        "ListKeys" => list_keys(kms, caller, body).await,
        "ListResourceTags" => list_resource_tags(kms, caller, body).await,
        "ListRetirableGrants" => grants::list_retirable_grants(kms, caller, body).await,
        "ReEncrypt" => re_encrypt(kms, caller, body).await,
        "RetireGrant" => grants::retire_grant(kms, caller, body).await,
        "RevokeGrant" => grants::revoke_grant(kms, caller, body).await,
        "RotateKeyOnDemand" => rotate_key_on_demand(kms, caller, body).await,
        "ScheduleKeyDeletion" => schedule_key_deletion(kms, caller, body).await,
        "TagResource" => tag_resource(kms, caller, body).await,
        "UntagResource" => untag_resource(kms, caller, body).await,
        "UpdateAlias" => update_alias(kms, caller, body).await,
        "UpdateKeyDescription" => update_key_description(kms, caller, body).await,
        other => Err(unknown_operation(other)),
    }
}

/// Runs Keywarden extension operation `op` (the target suffix after
/// `KeywardenService.`); AWS operation names are unknown here.
pub async fn dispatch_extension(
    kms: &Kms,
    caller: &Caller,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match op {
        "GetAccountBalance" => get_account_balance(kms, caller, body).await,
        "CreateKeyring" => keyrings::create_keyring(kms, caller, body).await,
        "CreateKeyringToken" => keyrings::create_keyring_token(kms, caller, body).await,
        "DeleteKeyring" => keyrings::delete_keyring(kms, caller, body).await,
        "DescribeKeyring" => keyrings::describe_keyring(kms, caller, body).await,
        "ListKeyrings" => keyrings::list_keyrings(kms, caller, body).await,
        "RevokeKeyringToken" => keyrings::revoke_keyring_token(kms, caller, body).await,
        "RotateKeyringKey" => keyrings::rotate_keyring_key(kms, caller, body).await,
        "DisableKeyDeletionProtection" => {
            kms.disable_key_deletion_protection(caller, &key_id_only(body)?)
                .await?;
            Ok(EMPTY.to_vec())
        }
        "EnableKeyDeletionProtection" => {
            kms.enable_key_deletion_protection(caller, &key_id_only(body)?)
                .await?;
            Ok(EMPTY.to_vec())
        }
        other => Err(unknown_operation(other)),
    }
}

fn unknown_operation(op: &str) -> ApiError {
    ApiError::UnknownOperation(format!(
        "Operation {} is not supported",
        keywarden_core::ids::truncate_for_message(op)
    ))
}

const EMPTY: &[u8] = b"{}";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdOnly {
    key_id: Option<String>,
}

fn key_id_only(body: &[u8]) -> Result<keywarden_core::ids::KeyRef, ApiError> {
    let req: KeyIdOnly = decode(body)?;
    key_ref(&required(req.key_id, "keyId")?)
}

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
    #[allow(dead_code)]
    bypass_policy_lockout_safety_check: Option<bool>,
    tags: Option<Vec<WireTag>>,
    multi_region: Option<bool>,
    xks_key_id: Option<String>,
}

const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "SYMMETRIC_DEFAULT",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
];

async fn create_key(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
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
    let spec = req.key_spec.or(req.customer_master_key_spec);
    if let Some(spec) = &spec {
        check_enum(spec, "keySpec", KEY_SPECS)?;
    }
    if let Some(usage) = &req.key_usage {
        check_enum(
            usage,
            "keyUsage",
            &[
                "SIGN_VERIFY",
                "ENCRYPT_DECRYPT",
                "GENERATE_VERIFY_MAC",
                "KEY_AGREEMENT",
                "ENCAPSULATE_DECAPSULATE",
            ],
        )?;
    }
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
    if let Some(spec) = spec.as_deref().filter(|s| *s != "SYMMETRIC_DEFAULT") {
        return Err(KmsError::Unsupported(format!(
            "KeySpec {spec} is not supported; Keywarden keys are SYMMETRIC_DEFAULT (AES-256-GCM)"
        ))
        .into());
    }
    if let Some(usage) = req.key_usage.as_deref().filter(|u| *u != "ENCRYPT_DECRYPT") {
        return Err(KmsError::Validation(format!(
            "KeyUsage {usage} is not compatible with KeySpec SYMMETRIC_DEFAULT"
        ))
        .into());
    }
    if req.multi_region == Some(true) {
        return Err(KmsError::Unsupported("Multi-Region keys are not supported".into()).into());
    }
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
                custom_key_store_id: req.custom_key_store_id.clone(),
            },
        )
        .await?;
    Ok(encode(
        &json!({ "KeyMetadata": KeyMetadata::of(kms, &key) }),
    ))
}

async fn describe_key(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
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
    Ok(encode(
        &json!({ "KeyMetadata": KeyMetadata::of(kms, &key) }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListIn {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

fn page_fields(next: Option<String>) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("Truncated".into(), json!(next.is_some()));
    if let Some(n) = next {
        m.insert("NextMarker".into(), json!(n));
    }
    m
}

async fn list_keys(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: ListIn = decode(body)?;
    let page = kms
        .list_keys(caller, limit(req.limit)?, marker(req.marker.as_ref())?)
        .await?;
    let mut out = page_fields(page.next_marker);
    out.insert(
        "Keys".into(),
        page.items
            .iter()
            .map(|k| {
                json!({
                    "KeyId": k.key_id.to_string(),
                    "KeyArn": kms.key_arn(&k.account_id, &k.key_id),
                })
            })
            .collect(),
    );
    Ok(encode(&out))
}

async fn update_key_description(
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

async fn enable_key(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    kms.enable_key(caller, &key_id_only(body)?).await?;
    Ok(EMPTY.to_vec())
}

async fn disable_key(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    kms.disable_key(caller, &key_id_only(body)?).await?;
    Ok(EMPTY.to_vec())
}

async fn enable_key_rotation(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
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

async fn disable_key_rotation(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    kms.disable_key_rotation(caller, &key_id_only(body)?)
        .await?;
    Ok(EMPTY.to_vec())
}

/// AWS's shape, plus `KeyLastUsage.Principal` (an extension: the access
/// key id that made the request). No `CloudTrailEventId`: Keywarden has no
/// CloudTrail; `KmsRequestId` is the `x-amzn-RequestId` of that request.
async fn get_key_last_usage(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let usage = kms.get_key_last_usage(caller, &key_id_only(body)?).await?;
    let key = &usage.key;
    // AWS: "If the key has not been used since tracking began, this
    // response element is an empty object."
    let last = match &usage.last_usage {
        Some(u) => json!({
            "Operation": u.operation.as_str(),
            "Timestamp": u.used_at.as_epoch_seconds(),
            "KmsRequestId": u.request_id,
            "Principal": u.principal,
        }),
        None => json!({}),
    };
    Ok(encode(&json!({
        "KeyId": kms.key_arn(&key.account_id, &key.key_id),
        "KeyLastUsage": last,
        "TrackingStartDate": usage.tracking_start.as_epoch_seconds(),
        "KeyCreationDate": key.created_at.as_epoch_seconds(),
    })))
}

async fn get_key_rotation_status(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let status = kms
        .get_key_rotation_status(caller, &key_id_only(body)?)
        .await?;
    let key = &status.key;
    let mut out = serde_json::Map::new();
    out.insert(
        "KeyRotationEnabled".into(),
        json!(status.rotation.is_some()),
    );
    out.insert(
        "KeyId".into(),
        json!(kms.key_arn(&key.account_id, &key.key_id)),
    );
    if let Some(r) = status.rotation {
        out.insert("RotationPeriodInDays".into(), json!(r.period_days));
        out.insert(
            "NextRotationDate".into(),
            json!(r.next_rotation.as_epoch_seconds()),
        );
    }
    // No OnDemandRotationStartDate: on-demand rotations complete before
    // RotateKeyOnDemand returns, so none is ever in progress.
    Ok(encode(&out))
}

async fn rotate_key_on_demand(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let key = kms
        .rotate_key_on_demand(caller, &key_id_only(body)?)
        .await?;
    Ok(encode(&json!({ "KeyId": key.key_id.to_string() })))
}

/// AWS's `AlgorithmSpec` values for `GetParametersForImport`; which of them
/// are implemented is the importer's business (`UnsupportedOperationException`).
const WRAPPING_ALGORITHMS: &[&str] = &[
    "RSAES_PKCS1_V1_5",
    "RSAES_OAEP_SHA_1",
    "RSAES_OAEP_SHA_256",
    "RSA_AES_KEY_WRAP_SHA_1",
    "RSA_AES_KEY_WRAP_SHA_256",
    "SM2PKE",
];

/// AWS's `WrappingKeySpec` values.
const WRAPPING_KEY_SPECS: &[&str] = &["RSA_2048", "RSA_3072", "RSA_4096", "SM2"];

async fn get_parameters_for_import(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        wrapping_algorithm: Option<String>,
        wrapping_key_spec: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let algorithm = required(req.wrapping_algorithm, "wrappingAlgorithm")?;
    check_enum(&algorithm, "wrappingAlgorithm", WRAPPING_ALGORITHMS)?;
    let spec = required(req.wrapping_key_spec, "wrappingKeySpec")?;
    check_enum(&spec, "wrappingKeySpec", WRAPPING_KEY_SPECS)?;
    let (key, params) = kms
        .get_parameters_for_import(caller, &key, &algorithm, &spec)
        .await?;
    Ok(encode(&json!({
        "KeyId": kms.key_arn(&key.account_id, &key.key_id),
        "ImportToken": Blob(params.import_token),
        "PublicKey": Blob(params.public_key),
        "ParametersValidTo": params.valid_to.as_epoch_seconds(),
    })))
}

async fn import_key_material(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        import_token: Option<Blob>,
        encrypted_key_material: Option<Blob>,
        valid_to: Option<f64>,
        expiration_model: Option<String>,
        // Multi-material keys (rotation of imported material) are not
        // supported; any value but the default is refused below.
        import_type: Option<String>,
        key_material_description: Option<String>,
        key_material_id: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let token = required(req.import_token, "importToken")?.0;
    check_blob_len(&token, "importToken", 1, 6144)?;
    let encrypted = required(req.encrypted_key_material, "encryptedKeyMaterial")?.0;
    check_blob_len(&encrypted, "encryptedKeyMaterial", 1, 6144)?;
    let model = req
        .expiration_model
        .unwrap_or_else(|| "KEY_MATERIAL_EXPIRES".to_owned());
    check_enum(
        &model,
        "expirationModel",
        &["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"],
    )?;
    if let Some(t) = &req.import_type {
        check_enum(
            t,
            "importType",
            &["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"],
        )?;
    }
    if req.key_material_description.is_some() || req.key_material_id.is_some() {
        return Err(KmsError::Unsupported(
            "KeyMaterialDescription and KeyMaterialId (multiple imported key materials) are not supported".into(),
        )
        .into());
    }
    let expiration = match (model.as_str(), req.valid_to) {
        ("KEY_MATERIAL_DOES_NOT_EXPIRE", None) => MaterialExpiration::DoesNotExpire,
        ("KEY_MATERIAL_DOES_NOT_EXPIRE", Some(_)) => {
            return Err(KmsError::Validation(
                "ValidTo must not be set when ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE."
                    .into(),
            )
            .into())
        }
        (_, None) => {
            return Err(KmsError::Validation(
                "ValidTo is required when ExpirationModel is KEY_MATERIAL_EXPIRES.".into(),
            )
            .into())
        }
        (_, Some(t)) => {
            if !t.is_finite() || !(0.0..=1e11).contains(&t) {
                return Err(KmsError::Validation("ValidTo is out of range.".into()).into());
            }
            MaterialExpiration::ValidTo(UnixMillis((t * 1000.0).round() as i64))
        }
    };
    let key = kms
        .import_key_material(caller, &key, &token, &encrypted, expiration)
        .await?;
    Ok(encode(
        &json!({ "KeyId": kms.key_arn(&key.account_id, &key.key_id) }),
    ))
}

async fn delete_imported_key_material(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        key_material_id: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    if req.key_material_id.is_some() {
        return Err(KmsError::Unsupported(
            "KeyMaterialId (multiple imported key materials) is not supported".into(),
        )
        .into());
    }
    let key = kms.delete_imported_key_material(caller, &key).await?;
    Ok(encode(
        &json!({ "KeyId": kms.key_arn(&key.account_id, &key.key_id) }),
    ))
}

fn check_blob_len(value: &[u8], field: &str, min: usize, max: usize) -> Result<(), ApiError> {
    if value.len() < min || value.len() > max {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between {min} and {max}"
        ))
        .into());
    }
    Ok(())
}

async fn list_key_rotations(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
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
    let arn = kms.key_arn(&listed.key.account_id, &listed.key.key_id);
    let mut out = page_fields(listed.page.next_marker);
    out.insert(
        "Rotations".into(),
        listed
            .page
            .items
            .iter()
            .map(|r| {
                let mut entry = serde_json::Map::new();
                entry.insert("KeyId".into(), json!(arn));
                if let Some(rotation) = r.rotation {
                    entry.insert("RotationDate".into(), json!(r.date.as_epoch_seconds()));
                    entry.insert("RotationType".into(), json!(rotation.as_str()));
                }
                entry.insert(
                    "KeyMaterialState".into(),
                    json!(if r.current { "CURRENT" } else { "NON_CURRENT" }),
                );
                serde_json::Value::Object(entry)
            })
            .collect(),
    );
    Ok(encode(&out))
}

async fn schedule_key_deletion(
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
    Ok(encode(&json!({
        "KeyId": kms.key_arn(&key.account_id, &key.key_id),
        "DeletionDate": key.deletion_date.map(|d| d.as_epoch_seconds()),
        "KeyState": key.state.as_str(),
        "PendingWindowInDays": key.pending_window_days,
    })))
}

async fn cancel_key_deletion(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let key = kms.cancel_key_deletion(caller, &key_id_only(body)?).await?;
    Ok(encode(
        &json!({ "KeyId": kms.key_arn(&key.account_id, &key.key_id) }),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptIn {
    key_id: Option<String>,
    plaintext: Option<SecretBlob>,
    encryption_context: Option<BTreeMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

async fn encrypt(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: EncryptIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let plaintext = required(req.plaintext, "plaintext")?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    check_encryption_algorithm(req.encryption_algorithm.as_deref(), "encryptionAlgorithm")?;
    let ctx = context(req.encryption_context)?;
    let (key, blob) = kms
        .encrypt(
            caller,
            &key,
            plaintext.0.expose(),
            &ctx,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&json!({
        "CiphertextBlob": Blob(blob),
        "KeyId": kms.key_arn(&key.account_id, &key.key_id),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    })))
}

fn refuse_recipient(recipient: Option<&serde_json::Value>) -> Result<(), ApiError> {
    if recipient.is_some() {
        return Err(KmsError::Unsupported(
            "Recipient (attested enclave requests) is not supported".into(),
        )
        .into());
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptIn {
    ciphertext_blob: Option<Blob>,
    encryption_context: Option<BTreeMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    key_id: Option<String>,
    encryption_algorithm: Option<String>,
    recipient: Option<serde_json::Value>,
    dry_run: Option<bool>,
}

fn check_blob(blob: &Blob, field: &str) -> Result<(), ApiError> {
    if blob.0.is_empty() || blob.0.len() > 6144 {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between 1 and 6144"
        ))
        .into());
    }
    Ok(())
}

/// A decoded and validated Decrypt request.
pub(crate) struct DecryptRequest {
    blob: Blob,
    context: keywarden_core::context::EncryptionContext,
    key: Option<keywarden_core::ids::KeyRef>,
    dry_run: bool,
}

pub(crate) fn decode_decrypt_request(body: &[u8]) -> Result<DecryptRequest, ApiError> {
    let req: DecryptIn = decode(body)?;
    let blob = required(req.ciphertext_blob, "ciphertextBlob")?;
    check_blob(&blob, "ciphertextBlob")?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    check_encryption_algorithm(req.encryption_algorithm.as_deref(), "encryptionAlgorithm")?;
    refuse_recipient(req.recipient.as_ref())?;
    Ok(DecryptRequest {
        key: req.key_id.as_deref().map(key_ref).transpose()?,
        context: context(req.encryption_context)?,
        blob,
        dry_run: req.dry_run.unwrap_or(false),
    })
}

pub(crate) fn encode_decrypt_response(
    arn: String,
    plaintext: &keywarden_core::secret::Secret,
) -> Vec<u8> {
    encode(&json!({
        "KeyId": arn,
        "Plaintext": secret_b64(plaintext),
        "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    }))
}

async fn decrypt(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req = decode_decrypt_request(body)?;
    let (key, plaintext) = kms
        .decrypt(
            caller,
            &req.blob.0,
            &req.context,
            req.key.as_ref(),
            req.dry_run,
        )
        .await?;
    Ok(encode_decrypt_response(
        kms.key_arn(&key.account_id, &key.key_id),
        &plaintext,
    ))
}

async fn re_encrypt(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        ciphertext_blob: Option<Blob>,
        source_encryption_context: Option<BTreeMap<String, String>>,
        source_key_id: Option<String>,
        destination_key_id: Option<String>,
        destination_encryption_context: Option<BTreeMap<String, String>>,
        source_encryption_algorithm: Option<String>,
        destination_encryption_algorithm: Option<String>,
        grant_tokens: Option<Vec<String>>,
        dry_run: Option<bool>,
    }
    let req: In = decode(body)?;
    let blob = required(req.ciphertext_blob, "ciphertextBlob")?;
    check_blob(&blob, "ciphertextBlob")?;
    let destination = key_ref(&required(req.destination_key_id, "destinationKeyId")?)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    check_encryption_algorithm(
        req.source_encryption_algorithm.as_deref(),
        "sourceEncryptionAlgorithm",
    )?;
    check_encryption_algorithm(
        req.destination_encryption_algorithm.as_deref(),
        "destinationEncryptionAlgorithm",
    )?;
    let source = req.source_key_id.as_deref().map(key_ref).transpose()?;
    let out = kms
        .re_encrypt(
            caller,
            &blob.0,
            &context(req.source_encryption_context)?,
            source.as_ref(),
            &destination,
            &context(req.destination_encryption_context)?,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&json!({
        "CiphertextBlob": Blob(out.blob),
        "SourceKeyId": kms.key_arn(&out.source.account_id, &out.source.key_id),
        "KeyId": kms.key_arn(&out.destination.account_id, &out.destination.key_id),
        "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        "DestinationEncryptionAlgorithm": "SYMMETRIC_DEFAULT",
    })))
}

/// A decoded and validated GenerateDataKey(WithoutPlaintext) request.
pub(crate) struct DataKeyRequest {
    key: keywarden_core::ids::KeyRef,
    context: keywarden_core::context::EncryptionContext,
    len: usize,
    dry_run: bool,
}

pub(crate) fn decode_data_key_request(
    body: &[u8],
    with_plaintext: bool,
) -> Result<DataKeyRequest, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        encryption_context: Option<BTreeMap<String, String>>,
        number_of_bytes: Option<i64>,
        key_spec: Option<String>,
        grant_tokens: Option<Vec<String>>,
        recipient: Option<serde_json::Value>,
        dry_run: Option<bool>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    if with_plaintext {
        refuse_recipient(req.recipient.as_ref())?;
    }
    let len = match (req.key_spec.as_deref(), req.number_of_bytes) {
        (Some(_), Some(_)) => {
            return Err(KmsError::Validation(
                "Specify either KeySpec or NumberOfBytes, not both".into(),
            )
            .into())
        }
        (None, None) => {
            return Err(
                KmsError::Validation("Specify either KeySpec or NumberOfBytes".into()).into(),
            )
        }
        (Some(spec), None) => {
            check_enum(spec, "keySpec", &["AES_256", "AES_128"])?;
            if spec == "AES_256" {
                32
            } else {
                16
            }
        }
        (None, Some(n)) => {
            check_range(n, "numberOfBytes", 1, 1024)?;
            n as usize
        }
    };
    Ok(DataKeyRequest {
        key,
        context: context(req.encryption_context)?,
        len,
        dry_run: req.dry_run.unwrap_or(false),
    })
}

pub(crate) fn encode_data_key_response(
    arn: String,
    blob: Vec<u8>,
    plaintext: Option<&keywarden_core::secret::Secret>,
) -> Vec<u8> {
    let out = match plaintext {
        Some(p) => json!({
            "CiphertextBlob": Blob(blob),
            "Plaintext": secret_b64(p),
            "KeyId": arn,
        }),
        None => json!({ "CiphertextBlob": Blob(blob), "KeyId": arn }),
    };
    encode(&out)
}

async fn generate_data_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
    with_plaintext: bool,
) -> Result<Vec<u8>, ApiError> {
    let req = decode_data_key_request(body, with_plaintext)?;
    let dk = if with_plaintext {
        kms.generate_data_key(caller, &req.key, &req.context, req.len, req.dry_run)
            .await?
    } else {
        kms.generate_data_key_without_plaintext(
            caller,
            &req.key,
            &req.context,
            req.len,
            req.dry_run,
        )
        .await?
    };
    let arn = kms.key_arn(&dk.key.account_id, &dk.key.key_id);
    Ok(encode_data_key_response(
        arn,
        dk.blob,
        with_plaintext.then_some(&dk.plaintext),
    ))
}

fn generate_random(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        number_of_bytes: Option<i64>,
        custom_key_store_id: Option<String>,
        recipient: Option<serde_json::Value>,
    }
    let req: In = decode(body)?;
    refuse_recipient(req.recipient.as_ref())?;
    let n = required(req.number_of_bytes, "numberOfBytes")?;
    check_range(n, "numberOfBytes", 1, 1024)?;
    if let Some(id) = &req.custom_key_store_id {
        check_len(id, "customKeyStoreId", 1, 64)?;
        // The store must exist; the bytes come from Keywarden's CSPRNG.
        kms.describe_custom_key_stores(caller, Some(id), None, None, None)?;
    }
    let bytes = kms.generate_random(caller, n as usize)?;
    Ok(encode(&json!({ "Plaintext": secret_b64(&bytes) })))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasIn {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

async fn create_alias(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: AliasIn = decode(body)?;
    let name = required(req.alias_name, "aliasName")?;
    let target = key_ref(&required(req.target_key_id, "targetKeyId")?)?;
    kms.create_alias(caller, &name, &target).await?;
    Ok(EMPTY.to_vec())
}

async fn update_alias(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: AliasIn = decode(body)?;
    let name = required(req.alias_name, "aliasName")?;
    let target = key_ref(&required(req.target_key_id, "targetKeyId")?)?;
    kms.update_alias(caller, &name, &target).await?;
    Ok(EMPTY.to_vec())
}

async fn delete_alias(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: AliasIn = decode(body)?;
    let name = required(req.alias_name, "aliasName")?;
    kms.delete_alias(caller, &name).await?;
    Ok(EMPTY.to_vec())
}

async fn list_aliases(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: ListIn = decode(body)?;
    let key = req.key_id.as_deref().map(key_ref).transpose()?;
    let page = kms
        .list_aliases(
            caller,
            key.as_ref(),
            limit(req.limit)?,
            marker(req.marker.as_ref())?,
        )
        .await?;
    let mut out = page_fields(page.next_marker);
    out.insert(
        "Aliases".into(),
        page.items
            .iter()
            .map(|a| {
                json!({
                    "AliasName": a.name.as_str(),
                    "AliasArn": kms.alias_arn(&a.account_id, &a.name),
                    "TargetKeyId": a.target.to_string(),
                    "CreationDate": a.created_at.as_epoch_seconds(),
                    "LastUpdatedDate": a.updated_at.as_epoch_seconds(),
                })
            })
            .collect(),
    );
    Ok(encode(&out))
}

async fn tag_resource(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        tags: Option<Vec<WireTag>>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let tags = tags(Some(required(req.tags, "tags")?))?;
    kms.tag_resource(caller, &key, &tags).await?;
    Ok(EMPTY.to_vec())
}

async fn untag_resource(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        tag_keys: Option<Vec<String>>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let keys = required(req.tag_keys, "tagKeys")?;
    kms.untag_resource(caller, &key, &keys).await?;
    Ok(EMPTY.to_vec())
}

async fn list_resource_tags(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: ListIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let page = kms
        .list_resource_tags(
            caller,
            &key,
            limit(req.limit)?,
            marker(req.marker.as_ref())?,
        )
        .await?;
    let mut out = page_fields(page.next_marker);
    out.insert(
        "Tags".into(),
        serde_json::to_value(page.items.iter().map(WireTag::from).collect::<Vec<_>>())
            .expect("tags serialise"),
    );
    Ok(encode(&out))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keywarden_core::clock::SystemClock;
    use keywarden_core::kms::KmsParts;
    use keywarden_core::KmsConfig;
    use keywarden_protector_soft::{RootKey, SoftwareProtector, SystemRandom};
    use keywarden_store_sqlite::SqliteStore;

    use super::*;

    async fn service(dir: &std::path::Path) -> (Kms, Caller) {
        let root = Arc::new(RootKey::from_bytes(&[3u8; 32]));
        let kms = Kms::new(KmsParts {
            store: Arc::new(SqliteStore::open(&dir.join("k.db")).unwrap()),
            software_protector: Arc::new(SoftwareProtector::new(root.clone())),
            sealer: root,
            random: Arc::new(SystemRandom::new()),
            clock: Arc::new(SystemClock),
            config: KmsConfig::default(),
        });
        let issued = kms.create_account("handlers").await.unwrap();
        let caller = Caller {
            product: None,
            account_id: issued.account_id,
            principal: issued.access_key_id,
            request_id: String::new(),
        };
        (kms, caller)
    }

    fn is_unknown(r: &Result<Vec<u8>, ApiError>) -> bool {
        matches!(r, Err(ApiError::UnknownOperation(_)))
    }

    /// Every listed operation is served in its own namespace and unknown in
    /// the other one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_namespace_serves_exactly_its_operations() {
        let dir = tempfile::tempdir().unwrap();
        let (kms, caller) = service(dir.path()).await;
        for op in OPERATIONS {
            assert!(
                !is_unknown(&dispatch(&kms, &caller, op, b"{}").await),
                "TrentService.{op} must be served"
            );
            assert!(
                is_unknown(&dispatch_extension(&kms, &caller, op, b"{}").await),
                "KeywardenService.{op} must be unknown"
            );
        }
        for op in EXTENSION_OPERATIONS {
            assert!(
                !is_unknown(&dispatch_extension(&kms, &caller, op, b"{}").await),
                "KeywardenService.{op} must be served"
            );
            assert!(
                is_unknown(&dispatch(&kms, &caller, op, b"{}").await),
                "TrentService.{op} must be unknown"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletion_protection_shows_in_key_metadata_and_blocks_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let (kms, caller) = service(dir.path()).await;
        let created: serde_json::Value =
            serde_json::from_slice(&dispatch(&kms, &caller, "CreateKey", b"{}").await.unwrap())
                .unwrap();
        assert_eq!(created["KeyMetadata"]["DeletionProtectionEnabled"], false);
        let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let body = serde_json::to_vec(&json!({ "KeyId": key_id })).unwrap();

        let out = dispatch_extension(&kms, &caller, "EnableKeyDeletionProtection", &body)
            .await
            .unwrap();
        assert_eq!(out, b"{}");
        let described: serde_json::Value =
            serde_json::from_slice(&dispatch(&kms, &caller, "DescribeKey", &body).await.unwrap())
                .unwrap();
        assert_eq!(described["KeyMetadata"]["DeletionProtectionEnabled"], true);
        let err = dispatch(&kms, &caller, "ScheduleKeyDeletion", &body)
            .await
            .unwrap_err();
        assert_eq!(err.aws_type(), "DeletionProtectionEnabledException");
        assert!(
            err.message().contains("DisableKeyDeletionProtection"),
            "{}",
            err.message()
        );

        dispatch_extension(&kms, &caller, "DisableKeyDeletionProtection", &body)
            .await
            .unwrap();
        dispatch(&kms, &caller, "ScheduleKeyDeletion", &body)
            .await
            .unwrap();
        let err = dispatch_extension(&kms, &caller, "EnableKeyDeletionProtection", &body)
            .await
            .unwrap_err();
        assert_eq!(err.aws_type(), "KMSInvalidStateException");
    }
}
