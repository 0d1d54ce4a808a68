//! Wire shapes of the keyring operations (`KeywardenService.CreateKeyring`
//! and friends; docs/api-extensions.md, docs/integrations/mariadb.md).
//! Tokens are made and hashed here ([`crate::keyring_endpoint`]); the core
//! only ever sees their SHA-256.

use keywarden_core::ids::{KeyringId, ProductCode};
use keywarden_core::model::KeyringRecord;
use keywarden_core::ops::keyrings::KeyringSummary;
use keywarden_core::{Caller, Kms, KmsError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::keyring_endpoint::{mount_path, new_token};
use crate::wire::{check_len, check_range, decode, encode, key_ref, required};

const EMPTY: &[u8] = b"{}";

/// The database product keyrings are for when the request names none.
const DEFAULT_PRODUCT: &str = "mysql";

fn keyring_id(value: Option<String>) -> Result<KeyringId, ApiError> {
    let value = required(value, "keyringId")?;
    check_len(&value, "keyringId", 1, 64)?;
    KeyringId::parse(&value).map_err(|_| {
        ApiError::Kms(KmsError::NotFound(format!(
            "keyring {} does not exist",
            keywarden_core::ids::truncate_for_message(&value)
        )))
    })
}

fn key_number(value: Option<i64>, field: &str) -> Result<u32, ApiError> {
    let value = required(value, field)?;
    check_range(value, field, 1, i64::from(u32::MAX) - 1)?;
    Ok(value as u32)
}

fn render(kms: &Kms, keyring: &KeyringRecord) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("KeyringId".into(), json!(keyring.id.as_str()));
    out.insert("Name".into(), json!(keyring.name));
    out.insert("AccountId".into(), json!(keyring.account_id.as_str()));
    out.insert("ProductCode".into(), json!(keyring.product.as_str()));
    out.insert(
        "KeyId".into(),
        json!(kms.key_arn(&keyring.account_id, &keyring.key_id)),
    );
    out.insert("MountPath".into(), json!(mount_path(&keyring.id)));
    out.insert(
        "CreationDate".into(),
        json!(keyring.created_at.as_epoch_seconds()),
    );
    out.insert("TokenIssued".into(), json!(keyring.token_hash.is_some()));
    if let Some(at) = keyring.token_issued_at {
        out.insert("TokenIssuedDate".into(), json!(at.as_epoch_seconds()));
    }
    out
}

fn render_summary(kms: &Kms, summary: &KeyringSummary) -> Value {
    let mut out = render(kms, &summary.keyring);
    let keys: Vec<Value> = summary
        .keys
        .iter()
        .map(|(number, version, at)| {
            json!({
                "KeyNumber": number,
                "LatestVersion": version,
                "LatestVersionCreationDate": at.as_epoch_seconds(),
            })
        })
        .collect();
    out.insert("Keys".into(), Value::Array(keys));
    Value::Object(out)
}

pub(super) async fn create_keyring(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct In {
        name: Option<String>,
        key_id: Option<String>,
        product_code: Option<String>,
        key_numbers: Option<Vec<i64>>,
    }
    let req: In = decode(body)?;
    let name = required(req.name, "name")?;
    check_len(&name, "name", 1, 128)?;
    let key_id = required(req.key_id, "keyId")?;
    check_len(&key_id, "keyId", 1, 2048)?;
    let key = key_ref(&key_id)?;
    let product = ProductCode::parse(req.product_code.as_deref().unwrap_or(DEFAULT_PRODUCT))?;
    let numbers = req
        .key_numbers
        .unwrap_or_default()
        .into_iter()
        .map(|n| key_number(Some(n), "keyNumbers"))
        .collect::<Result<Vec<u32>, ApiError>>()?;
    let token = new_token()?;
    // Rendered from what was created: a failed read now would lose the
    // token of a keyring that exists.
    let summary = kms
        .create_keyring(caller, &name, &product, &key, &numbers, token.hash())
        .await?;
    let mut out = match render_summary(kms, &summary) {
        Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    out.insert("Token".into(), json!(token.expose()));
    Ok(encode(&Value::Object(out)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct KeyringIdIn {
    keyring_id: Option<String>,
}

pub(super) async fn describe_keyring(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: KeyringIdIn = decode(body)?;
    let id = keyring_id(req.keyring_id)?;
    let summary = kms.describe_keyring(caller, &id).await?;
    Ok(encode(&json!({ "Keyring": render_summary(kms, &summary) })))
}

pub(super) async fn list_keyrings(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {}
    let _: In = decode(body)?;
    let keyrings = kms.list_keyrings(caller).await?;
    let list: Vec<Value> = keyrings
        .iter()
        .map(|k| Value::Object(render(kms, k)))
        .collect();
    Ok(encode(&json!({ "Keyrings": list })))
}

pub(super) async fn rotate_keyring_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    struct In {
        keyring_id: Option<String>,
        key_number: Option<i64>,
    }
    let req: In = decode(body)?;
    let id = keyring_id(req.keyring_id)?;
    let number = key_number(req.key_number, "keyNumber")?;
    let version = kms.rotate_keyring_key(caller, &id, number).await?;
    Ok(encode(&json!({
        "KeyringId": id.as_str(),
        "KeyNumber": version.key_number,
        "Version": version.version,
        "CreationDate": version.created_at.as_epoch_seconds(),
    })))
}

pub(super) async fn create_keyring_token(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: KeyringIdIn = decode(body)?;
    let id = keyring_id(req.keyring_id)?;
    let token = new_token()?;
    kms.set_keyring_token(caller, &id, Some(token.hash()))
        .await?;
    Ok(encode(&json!({
        "KeyringId": id.as_str(),
        "Token": token.expose(),
    })))
}

pub(super) async fn revoke_keyring_token(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: KeyringIdIn = decode(body)?;
    let id = keyring_id(req.keyring_id)?;
    kms.set_keyring_token(caller, &id, None).await?;
    Ok(EMPTY.to_vec())
}

pub(super) async fn delete_keyring(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: KeyringIdIn = decode(body)?;
    let id = keyring_id(req.keyring_id)?;
    kms.delete_keyring(caller, &id).await?;
    Ok(EMPTY.to_vec())
}
