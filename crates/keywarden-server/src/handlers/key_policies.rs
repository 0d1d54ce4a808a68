//! Wire shapes of the key policy operations: GetKeyPolicy, PutKeyPolicy,
//! ListKeyPolicies.

use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use super::{ListIn, EMPTY};
use crate::error::ApiError;
use crate::wire::{check_len, decode, encode, key_ref, limit, marker, required};

/// A `PolicyName` member: 1-128 word characters (AWS's `PolicyNameType`).
fn policy_name(name: &Option<String>) -> Result<Option<&str>, ApiError> {
    match name {
        None => Ok(None),
        Some(n) => {
            check_len(n, "policyName", 1, 128)?;
            Ok(Some(n.as_str()))
        }
    }
}

/// AWS's `GetKeyPolicyResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetKeyPolicyOut<'a> {
    policy: String,
    policy_name: &'a str,
}

pub(super) async fn get_key_policy(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        policy_name: Option<String>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let name = policy_name(&req.policy_name)?;
    let policy = kms.get_key_policy(caller, &key, name).await?;
    Ok(encode(&GetKeyPolicyOut {
        policy,
        policy_name: keywarden_core::ops::get_key_policy::DEFAULT_POLICY_NAME,
    }))
}

pub(super) async fn put_key_policy(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct In {
        key_id: Option<String>,
        policy_name: Option<String>,
        policy: Option<String>,
        bypass_policy_lockout_safety_check: Option<bool>,
    }
    let req: In = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let name = policy_name(&req.policy_name)?;
    let policy = required(req.policy, "policy")?;
    check_len(&policy, "policy", 1, 131_072)?;
    let bypass = req.bypass_policy_lockout_safety_check.unwrap_or(false);
    kms.put_key_policy(caller, &key, name, &policy, bypass)
        .await?;
    Ok(EMPTY.to_vec())
}

/// AWS's `ListKeyPoliciesResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyPoliciesOut {
    policy_names: Vec<&'static str>,
    truncated: bool,
}

pub(super) async fn list_key_policies(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: ListIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    limit(req.limit)?;
    let names = kms.list_key_policies(caller, &key).await?;
    // One policy fits any page, so no marker is ever handed out.
    if marker(req.marker.as_ref())?.is_some() {
        return Err(
            KmsError::InvalidMarker("The marker is not one this service returned".into()).into(),
        );
    }
    Ok(encode(&ListKeyPoliciesOut {
        policy_names: names,
        truncated: false,
    }))
}
