//! Wire shapes of the grant operations: CreateGrant, ListGrants,
//! ListRetirableGrants, RetireGrant, RevokeGrant.

use std::collections::BTreeMap;

use keywarden_core::model::{GrantConstraints, GrantOperation, GrantRecord};
use keywarden_core::ops::grants::{CreateGrantRequest, RetireTarget};
use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use super::EMPTY;
use crate::error::ApiError;
use crate::wire::{check_grant_tokens, check_range, decode, encode, key_ref, required};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ConstraintsIn {
    encryption_context_subset: Option<BTreeMap<String, String>>,
    encryption_context_equals: Option<BTreeMap<String, String>>,
}

/// `Limit` of the grant listings: 1-100 (AWS's bounds for these two).
fn grant_limit(value: Option<i64>) -> Result<Option<u32>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) => {
            check_range(v, "limit", 1, 100)?;
            Ok(Some(v as u32))
        }
    }
}

fn operations(list: Vec<String>) -> Result<Vec<GrantOperation>, ApiError> {
    list.iter()
        .map(|s| {
            GrantOperation::parse(s).ok_or_else(|| {
                let allowed: Vec<&str> = GrantOperation::ALL.iter().map(|op| op.as_str()).collect();
                ApiError::Kms(KmsError::Validation(format!(
                    "1 validation error detected: Value '[{}]' at 'operations' failed to satisfy constraint: Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                    keywarden_core::ids::truncate_for_message(s),
                    allowed.join(", ")
                )))
            })
        })
        .collect()
}

fn string_field<'a>(value: Option<&'a String>, field: &str) -> Result<Option<&'a str>, ApiError> {
    match value {
        Some(s) if s.is_empty() => Err(ApiError::Kms(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )))),
        other => Ok(other.map(String::as_str)),
    }
}

pub(super) async fn create_grant(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        grantee_principal: Option<String>,
        retiring_principal: Option<String>,
        operations: Option<Vec<String>>,
        constraints: Option<ConstraintsIn>,
        grant_tokens: Option<Vec<String>>,
        name: Option<String>,
        dry_run: Option<bool>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let grantee = required(req.grantee_principal, "granteePrincipal")?;
    let operations = operations(required(req.operations, "operations")?)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let constraints =
        req.constraints
            .map_or_else(GrantConstraints::default, |c| GrantConstraints {
                subset: c.encryption_context_subset,
                equals: c.encryption_context_equals,
            });
    let created = kms
        .create_grant(
            caller,
            CreateGrantRequest {
                key,
                grantee_principal: grantee,
                retiring_principal: req.retiring_principal,
                operations,
                constraints,
                name: req.name,
                dry_run: req.dry_run.unwrap_or(false),
            },
        )
        .await?;
    Ok(encode(&CreateGrantOut {
        grant_id: created.grant_id,
        grant_token: created.grant_token,
    }))
}

/// AWS's `CreateGrantResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateGrantOut {
    grant_id: String,
    grant_token: String,
}

/// AWS's `GrantConstraints`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GrantConstraintsOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_context_equals: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_context_subset: Option<&'a BTreeMap<String, String>>,
}

/// AWS's `GrantListEntry`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GrantListEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    constraints: Option<GrantConstraintsOut<'a>>,
    creation_date: f64,
    grant_id: &'a str,
    grantee_principal: &'a str,
    issuing_account: String,
    key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    operations: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retiring_principal: Option<&'a str>,
}

/// AWS's `ListGrantsResponse` (also ListRetirableGrants' answer).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListGrantsOut<'a> {
    grants: Vec<GrantListEntry<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_marker: Option<String>,
    truncated: bool,
}

fn grant_entry<'a>(kms: &Kms, g: &'a GrantRecord) -> GrantListEntry<'a> {
    let c = &g.constraints;
    GrantListEntry {
        constraints: (c.subset.is_some() || c.equals.is_some()).then_some(GrantConstraintsOut {
            encryption_context_equals: c.equals.as_ref(),
            encryption_context_subset: c.subset.as_ref(),
        }),
        creation_date: g.created_at.as_epoch_seconds(),
        grant_id: &g.grant_id,
        grantee_principal: &g.grantee_principal,
        issuing_account: format!("arn:{}:iam::{}:root", kms.config().partition, g.account_id),
        key_id: kms.key_arn(&g.account_id, &g.key_id),
        name: g.name.as_deref(),
        operations: g.operations.iter().map(|op| op.as_str()).collect(),
        retiring_principal: g.retiring_principal.as_deref(),
    }
}

fn grant_page(kms: &Kms, page: keywarden_core::Page<GrantRecord>) -> Vec<u8> {
    encode(&ListGrantsOut {
        grants: page.items.iter().map(|g| grant_entry(kms, g)).collect(),
        truncated: page.next_marker.is_some(),
        next_marker: page.next_marker,
    })
}

pub(super) async fn list_grants(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        limit: Option<i64>,
        marker: Option<String>,
        grant_id: Option<String>,
        grantee_principal: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let page = kms
        .list_grants(
            caller,
            &key,
            string_field(req.grant_id.as_ref(), "grantId")?,
            string_field(req.grantee_principal.as_ref(), "granteePrincipal")?,
            grant_limit(req.limit)?,
            string_field(req.marker.as_ref(), "marker")?,
        )
        .await?;
    Ok(grant_page(kms, page))
}

pub(super) async fn list_retirable_grants(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        retiring_principal: Option<String>,
        limit: Option<i64>,
        marker: Option<String>,
    }
    let req: In = decode(body)?;
    let retiring = required(req.retiring_principal, "retiringPrincipal")?;
    let page = kms
        .list_retirable_grants(
            caller,
            &retiring,
            grant_limit(req.limit)?,
            string_field(req.marker.as_ref(), "marker")?,
        )
        .await?;
    Ok(grant_page(kms, page))
}

pub(super) async fn retire_grant(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        grant_token: Option<String>,
        key_id: Option<String>,
        grant_id: Option<String>,
        dry_run: Option<bool>,
    }
    let req: In = decode(body)?;
    // AWS: the grant token, or both the key and the grant id.
    let target = match (req.grant_token, req.key_id, req.grant_id) {
        (Some(token), _, _) => {
            check_grant_tokens(Some(&vec![token.clone()]))?;
            RetireTarget::Token(token)
        }
        (None, Some(key), Some(grant_id)) => RetireTarget::Id {
            key: key_ref(&key)?,
            grant_id,
        },
        _ => {
            return Err(ApiError::Kms(KmsError::Validation(
                "RetireGrant needs either GrantToken, or both KeyId and GrantId".into(),
            )))
        }
    };
    kms.retire_grant(caller, &target, req.dry_run.unwrap_or(false))
        .await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn revoke_grant(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        grant_id: Option<String>,
        dry_run: Option<bool>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let grant_id = required(req.grant_id, "grantId")?;
    kms.revoke_grant(caller, &key, &grant_id, req.dry_run.unwrap_or(false))
        .await?;
    Ok(EMPTY.to_vec())
}
