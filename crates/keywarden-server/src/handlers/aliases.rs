//! Wire shapes of the alias operations: CreateAlias, UpdateAlias,
//! DeleteAlias, ListAliases.

use keywarden_core::{Caller, Kms};
use serde::{Deserialize, Serialize};

use super::{ListIn, EMPTY};
use crate::error::ApiError;
use crate::wire::{decode, encode, key_ref, limit, marker, required};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasIn {
    alias_name: Option<String>,
    target_key_id: Option<String>,
}

pub(super) async fn create_alias(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: AliasIn = decode(body)?;
    let name = required(req.alias_name, "aliasName")?;
    let target = key_ref(&required(req.target_key_id, "targetKeyId")?)?;
    kms.create_alias(caller, &name, &target).await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn update_alias(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: AliasIn = decode(body)?;
    let name = required(req.alias_name, "aliasName")?;
    let target = key_ref(&required(req.target_key_id, "targetKeyId")?)?;
    kms.update_alias(caller, &name, &target).await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn delete_alias(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: AliasIn = decode(body)?;
    let name = required(req.alias_name, "aliasName")?;
    kms.delete_alias(caller, &name).await?;
    Ok(EMPTY.to_vec())
}

/// AWS's `AliasListEntry`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AliasListEntry {
    alias_arn: String,
    alias_name: String,
    creation_date: f64,
    last_updated_date: f64,
    target_key_id: String,
}

/// AWS's `ListAliasesResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListAliasesOut {
    aliases: Vec<AliasListEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
}

pub(super) async fn list_aliases(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
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
    Ok(encode(&ListAliasesOut {
        aliases: page
            .items
            .iter()
            .map(|a| AliasListEntry {
                alias_arn: kms.alias_arn(a.region.as_deref(), &a.account_id, &a.name),
                alias_name: a.name.as_str().to_owned(),
                creation_date: a.created_at.as_epoch_seconds(),
                last_updated_date: a.updated_at.as_epoch_seconds(),
                target_key_id: a.target.to_string(),
            })
            .collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    }))
}
