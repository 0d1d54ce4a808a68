//! Wire shapes of the custom key store operations: DescribeCustomKeyStores
//! (the HSM key stores the operator configured; docs/hsm.md).

use keywarden_core::{Caller, Kms};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::wire::{check_len, decode, encode, limit, marker};

/// AWS's `CustomKeyStoresListEntry`, for a PKCS#11 store presented as
/// `AWS_CLOUDHSM`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CustomKeyStoresListEntry {
    cloud_hsm_cluster_id: String,
    connection_state: &'static str,
    creation_date: f64,
    custom_key_store_id: String,
    custom_key_store_name: String,
    custom_key_store_type: &'static str,
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

/// DescribeCustomKeyStores: the HSM key stores the operator configured.
pub(super) fn describe_custom_key_stores(
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
    Ok(encode(&DescribeCustomKeyStoresOut {
        custom_key_stores: page
            .items
            .iter()
            .map(|s| CustomKeyStoresListEntry {
                cloud_hsm_cluster_id: format!("keywarden-pkcs11-{}", s.id),
                connection_state: if s.connected {
                    "CONNECTED"
                } else {
                    "DISCONNECTED"
                },
                creation_date: s.created_at.as_epoch_seconds(),
                custom_key_store_id: s.id.to_string(),
                custom_key_store_name: s.name.to_string(),
                custom_key_store_type: "AWS_CLOUDHSM",
            })
            .collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    }))
}
