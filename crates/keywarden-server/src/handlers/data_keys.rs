//! Wire shapes of the data key operations: GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext, and GenerateRandom.

use std::collections::BTreeMap;

use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::secret::Secret;
use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use super::refuse_recipient;
use crate::error::ApiError;
use crate::wire::{
    check_enum, check_grant_tokens, check_len, check_range, context, decode, encode, key_ref,
    required, Blob, SecretField,
};

/// A decoded and validated GenerateDataKey(WithoutPlaintext) request.
pub(crate) struct DataKeyRequest {
    key: KeyRef,
    context: EncryptionContext,
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

/// AWS's `GenerateDataKeyResponse`, and without `Plaintext`
/// `GenerateDataKeyWithoutPlaintextResponse`. Holds the plaintext, so no
/// `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DataKeyOut<'a> {
    ciphertext_blob: Blob,
    key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<SecretField<'a>>,
}

pub(crate) fn encode_data_key_response(
    arn: String,
    blob: Vec<u8>,
    plaintext: Option<&Secret>,
) -> Vec<u8> {
    encode(&DataKeyOut {
        ciphertext_blob: Blob(blob),
        key_id: arn,
        plaintext: plaintext.map(SecretField),
    })
}

pub(super) async fn generate_data_key(
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
    let arn = kms.record_arn(&dk.key);
    Ok(encode_data_key_response(
        arn,
        dk.blob,
        with_plaintext.then_some(&dk.plaintext),
    ))
}

/// AWS's `GenerateRandomResponse`. Holds the random bytes, so no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateRandomOut<'a> {
    plaintext: SecretField<'a>,
}

pub(super) async fn generate_random(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
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
        kms.describe_custom_key_stores(caller, Some(id), None, None, None)
            .await?;
    }
    let bytes = kms.generate_random(caller, n as usize)?;
    Ok(encode(&GenerateRandomOut {
        plaintext: SecretField(&bytes),
    }))
}
