//! Wire shapes of the keyring operations (`KeywardenService.CreateKeyring`
//! and friends; docs/api-extensions.md, docs/integrations/mariadb.md).
//! Tokens are made and hashed here ([`crate::keyring_endpoint`]); the core
//! only ever sees their SHA-256.

use keywarden_core::ids::{KeyringId, ProductCode};
use keywarden_core::model::KeyringRecord;
use keywarden_core::ops::keyrings::KeyringSummary;
use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use super::EMPTY;
use crate::error::ApiError;
use crate::keyring_endpoint::{mount_path, new_token, KeyringToken};
use crate::wire::{check_len, check_range, decode, encode, key_ref, required};

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

/// A keyring token in a response, shown once to its creator. Borrowed from
/// its zeroizing owner; no `Debug`.
struct TokenField<'a>(&'a KeyringToken);

impl Serialize for TokenField<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

/// One key number of a keyring and its newest version.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringKeyOut {
    key_number: u32,
    latest_version: u32,
    latest_version_creation_date: f64,
}

/// A keyring as the keyring operations answer it: `Keys` in CreateKeyring
/// and DescribeKeyring, `Token` in CreateKeyring only.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyringOut<'a> {
    account_id: &'a str,
    creation_date: f64,
    key_id: String,
    keyring_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<Vec<KeyringKeyOut>>,
    mount_path: String,
    name: &'a str,
    product_code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<TokenField<'a>>,
    token_issued: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_issued_date: Option<f64>,
}

fn render<'a>(kms: &Kms, keyring: &'a KeyringRecord) -> KeyringOut<'a> {
    KeyringOut {
        account_id: keyring.account_id.as_str(),
        creation_date: keyring.created_at.as_epoch_seconds(),
        key_id: kms.key_arn(&keyring.account_id, &keyring.key_id),
        keyring_id: keyring.id.as_str(),
        keys: None,
        mount_path: mount_path(&keyring.id),
        name: &keyring.name,
        product_code: keyring.product.as_str(),
        token: None,
        token_issued: keyring.token_hash.is_some(),
        token_issued_date: keyring.token_issued_at.map(|at| at.as_epoch_seconds()),
    }
}

fn render_summary<'a>(kms: &Kms, summary: &'a KeyringSummary) -> KeyringOut<'a> {
    KeyringOut {
        keys: Some(
            summary
                .keys
                .iter()
                .map(|(number, version, at)| KeyringKeyOut {
                    key_number: *number,
                    latest_version: *version,
                    latest_version_creation_date: at.as_epoch_seconds(),
                })
                .collect(),
        ),
        ..render(kms, &summary.keyring)
    }
}

/// The DescribeKeyring response.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeKeyringOut<'a> {
    keyring: KeyringOut<'a>,
}

/// The ListKeyrings response.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ListKeyringsOut<'a> {
    keyrings: Vec<KeyringOut<'a>>,
}

/// The RotateKeyringKey response: the version just added.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RotateKeyringKeyOut<'a> {
    creation_date: f64,
    key_number: u32,
    keyring_id: &'a str,
    version: u32,
}

/// The CreateKeyringToken response.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyringTokenOut<'a> {
    keyring_id: &'a str,
    token: TokenField<'a>,
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
    Ok(encode(&KeyringOut {
        token: Some(TokenField(&token)),
        ..render_summary(kms, &summary)
    }))
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
    Ok(encode(&DescribeKeyringOut {
        keyring: render_summary(kms, &summary),
    }))
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
    Ok(encode(&ListKeyringsOut {
        keyrings: keyrings.iter().map(|k| render(kms, k)).collect(),
    }))
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
    Ok(encode(&RotateKeyringKeyOut {
        creation_date: version.created_at.as_epoch_seconds(),
        key_number: version.key_number,
        keyring_id: id.as_str(),
        version: version.version,
    }))
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
    Ok(encode(&CreateKeyringTokenOut {
        keyring_id: id.as_str(),
        token: TokenField(&token),
    }))
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
