//! Wire shapes of the custom key store operations (docs/hsm.md):
//! DescribeCustomKeyStores (the operator's stores and the account's own),
//! and CreateCustomKeyStore, ConnectCustomKeyStore,
//! DisconnectCustomKeyStore, UpdateCustomKeyStore, DeleteCustomKeyStore
//! for the account's own `AWS_CLOUDHSM` stores on the operator's clusters.

use keywarden_core::ops::custom_key_stores::{
    CreateCustomKeyStoreRequest, UpdateCustomKeyStoreRequest,
};
use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::wire::{check_len, decode, encode, limit, marker, required, SecretString};

/// The body of operations whose AWS output shape has no members.
const EMPTY: &[u8] = b"{}";

/// AWS's `CustomKeyStoresListEntry`, for a PKCS#11 store presented as
/// `AWS_CLOUDHSM`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CustomKeyStoresListEntry {
    cloud_hsm_cluster_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_error_code: Option<&'static str>,
    connection_state: &'static str,
    creation_date: f64,
    custom_key_store_id: String,
    custom_key_store_name: String,
    custom_key_store_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_anchor_certificate: Option<String>,
}

/// AWS's `DescribeCustomKeyStoresResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeCustomKeyStoresOut {
    custom_key_stores: Vec<CustomKeyStoresListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
}

/// Checks a `CustomKeyStoreId` (AWS: 1-64 characters).
fn store_id(id: Option<String>) -> Result<String, ApiError> {
    let id = required(id, "customKeyStoreId")?;
    check_len(&id, "customKeyStoreId", 1, 64)?;
    Ok(id)
}

/// Checks a `CloudHsmClusterId` (AWS: 19-24 characters).
fn cluster_id(id: &str) -> Result<(), ApiError> {
    check_len(id, "cloudHsmClusterId", 19, 24)
}

/// DescribeCustomKeyStores: the operator's stores and the caller's
/// account's own.
pub(super) async fn describe_custom_key_stores(
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
    let page = kms
        .describe_custom_key_stores(
            caller,
            req.custom_key_store_id.as_deref(),
            req.custom_key_store_name.as_deref(),
            limit(req.limit)?,
            marker(req.marker.as_ref())?,
        )
        .await?;
    Ok(encode(&DescribeCustomKeyStoresOut {
        custom_key_stores: page
            .items
            .into_iter()
            .map(|s| CustomKeyStoresListEntry {
                cloud_hsm_cluster_id: s
                    .cluster_id
                    .unwrap_or_else(|| format!("keywarden-pkcs11-{}", s.id)),
                connection_error_code: s.error_code.map(|c| c.as_str()),
                connection_state: s.state.as_str(),
                creation_date: s.created_at.as_epoch_seconds(),
                custom_key_store_id: s.id,
                custom_key_store_name: s.name,
                custom_key_store_type: "AWS_CLOUDHSM",
                trust_anchor_certificate: s.trust_anchor,
            })
            .collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    }))
}

/// CreateCustomKeyStore (`AWS_CLOUDHSM` only).
pub(super) async fn create_custom_key_store(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        custom_key_store_name: Option<String>,
        cloud_hsm_cluster_id: Option<String>,
        trust_anchor_certificate: Option<String>,
        key_store_password: Option<SecretString>,
        custom_key_store_type: Option<String>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Out {
        custom_key_store_id: String,
    }
    let req: In = decode(body)?;
    let name = required(req.custom_key_store_name, "customKeyStoreName")?;
    check_len(&name, "customKeyStoreName", 1, 256)?;
    match req.custom_key_store_type.as_deref() {
        None | Some("AWS_CLOUDHSM") => {}
        Some("EXTERNAL_KEY_STORE") => {
            return Err(KmsError::Unsupported(
                "External key stores (EXTERNAL_KEY_STORE) are not supported; create an AWS_CLOUDHSM store on a cluster the operator configured".into(),
            )
            .into())
        }
        Some(other) => {
            return Err(crate::wire::invalid_enum(
                other,
                "customKeyStoreType",
                &["AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"],
            )
            .into())
        }
    }
    if let Some(id) = &req.cloud_hsm_cluster_id {
        cluster_id(id)?;
    }
    if let Some(anchor) = &req.trust_anchor_certificate {
        check_len(anchor, "trustAnchorCertificate", 1, 5000)?;
    }
    let id = kms
        .create_custom_key_store(
            caller,
            CreateCustomKeyStoreRequest {
                name,
                cluster_id: req.cloud_hsm_cluster_id,
                trust_anchor: req.trust_anchor_certificate,
                password: req.key_store_password.map(|p| p.0),
            },
        )
        .await?;
    Ok(encode(&Out {
        custom_key_store_id: id,
    }))
}

/// `{"CustomKeyStoreId": ...}`, the request of Connect, Disconnect and
/// Delete.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StoreIdOnly {
    custom_key_store_id: Option<String>,
}

/// ConnectCustomKeyStore.
pub(super) async fn connect_custom_key_store(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: StoreIdOnly = decode(body)?;
    kms.connect_custom_key_store(caller, &store_id(req.custom_key_store_id)?)
        .await?;
    Ok(EMPTY.to_vec())
}

/// DisconnectCustomKeyStore.
pub(super) async fn disconnect_custom_key_store(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: StoreIdOnly = decode(body)?;
    kms.disconnect_custom_key_store(caller, &store_id(req.custom_key_store_id)?)
        .await?;
    Ok(EMPTY.to_vec())
}

/// DeleteCustomKeyStore.
pub(super) async fn delete_custom_key_store(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: StoreIdOnly = decode(body)?;
    kms.delete_custom_key_store(caller, &store_id(req.custom_key_store_id)?)
        .await?;
    Ok(EMPTY.to_vec())
}

/// UpdateCustomKeyStore (the `AWS_CLOUDHSM` members; the external key
/// store's are refused).
pub(super) async fn update_custom_key_store(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        custom_key_store_id: Option<String>,
        new_custom_key_store_name: Option<String>,
        key_store_password: Option<SecretString>,
        cloud_hsm_cluster_id: Option<String>,
        xks_proxy_uri_endpoint: Option<serde_json::Value>,
        xks_proxy_uri_path: Option<serde_json::Value>,
        xks_proxy_vpc_endpoint_service_name: Option<serde_json::Value>,
        xks_proxy_authentication_credential: Option<serde_json::Value>,
        xks_proxy_connectivity: Option<serde_json::Value>,
    }
    let req: In = decode(body)?;
    let id = store_id(req.custom_key_store_id)?;
    if req.xks_proxy_uri_endpoint.is_some()
        || req.xks_proxy_uri_path.is_some()
        || req.xks_proxy_vpc_endpoint_service_name.is_some()
        || req.xks_proxy_authentication_credential.is_some()
        || req.xks_proxy_connectivity.is_some()
    {
        return Err(KmsError::Unsupported(
            "External key store (XksProxy*) settings are not supported".into(),
        )
        .into());
    }
    if let Some(name) = &req.new_custom_key_store_name {
        check_len(name, "newCustomKeyStoreName", 1, 256)?;
    }
    if let Some(cluster) = &req.cloud_hsm_cluster_id {
        cluster_id(cluster)?;
    }
    kms.update_custom_key_store(
        caller,
        &id,
        UpdateCustomKeyStoreRequest {
            new_name: req.new_custom_key_store_name,
            password: req.key_store_password.map(|p| p.0),
            cluster_id: req.cloud_hsm_cluster_id,
        },
    )
    .await?;
    Ok(EMPTY.to_vec())
}
