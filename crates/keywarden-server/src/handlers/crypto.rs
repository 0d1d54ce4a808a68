//! Wire shapes of the cryptographic operations on a key: Encrypt, Decrypt,
//! ReEncrypt.

use std::collections::BTreeMap;

use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::key_spec::EncryptionAlgorithm;
use keywarden_core::ops::re_encrypt::ReEncryptRequest;
use keywarden_core::secret::Secret;
use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use super::{check_blob, refuse_recipient};
use crate::error::ApiError;
use crate::wire::{
    check_grant_tokens, context, decode, encode, encryption_algorithm, key_ref, required, Blob,
    SecretBlob, SecretField,
};

/// The only encryption algorithm of symmetric keys.
const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";

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

/// AWS's `EncryptResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptOut {
    ciphertext_blob: Blob,
    encryption_algorithm: &'static str,
    key_id: String,
}

pub(super) async fn encrypt(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: EncryptIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let plaintext = required(req.plaintext, "plaintext")?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let algorithm =
        encryption_algorithm(req.encryption_algorithm.as_deref(), "encryptionAlgorithm")?;
    let ctx = context(req.encryption_context)?;
    if let Some(algorithm) = algorithm.filter(|a| *a != EncryptionAlgorithm::SymmetricDefault) {
        refuse_context(&ctx)?;
        let (key, ciphertext) = kms
            .encrypt_asymmetric(
                caller,
                &key,
                algorithm,
                plaintext.0.expose(),
                req.dry_run.unwrap_or(false),
            )
            .await?;
        return Ok(encode(&EncryptOut {
            ciphertext_blob: Blob(ciphertext),
            encryption_algorithm: algorithm.as_str(),
            key_id: kms.record_arn(&key),
        }));
    }
    let (key, blob) = kms
        .encrypt(
            caller,
            &key,
            plaintext.0.expose(),
            &ctx,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&EncryptOut {
        ciphertext_blob: Blob(blob),
        encryption_algorithm: SYMMETRIC_DEFAULT,
        key_id: kms.record_arn(&key),
    }))
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

/// A decoded and validated Decrypt request.
pub(crate) struct DecryptRequest {
    blob: Blob,
    context: EncryptionContext,
    key: Option<KeyRef>,
    /// An asymmetric algorithm (`None` for SYMMETRIC_DEFAULT).
    algorithm: Option<EncryptionAlgorithm>,
    dry_run: bool,
}

/// Asymmetric encryption binds no encryption context; a request that
/// gives one is refused rather than silently ignored.
fn refuse_context(ctx: &EncryptionContext) -> Result<(), ApiError> {
    if ctx.is_empty() {
        Ok(())
    } else {
        Err(KmsError::Validation(
            "EncryptionContext is not supported with asymmetric encryption algorithms".into(),
        )
        .into())
    }
}

pub(crate) fn decode_decrypt_request(body: &[u8]) -> Result<DecryptRequest, ApiError> {
    let req: DecryptIn = decode(body)?;
    let blob = required(req.ciphertext_blob, "ciphertextBlob")?;
    check_blob(&blob, "ciphertextBlob")?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let algorithm =
        encryption_algorithm(req.encryption_algorithm.as_deref(), "encryptionAlgorithm")?
            .filter(|a| *a != EncryptionAlgorithm::SymmetricDefault);
    refuse_recipient(req.recipient.as_ref())?;
    let key = req.key_id.as_deref().map(key_ref).transpose()?;
    let context = context(req.encryption_context)?;
    if algorithm.is_some() {
        refuse_context(&context)?;
        if key.is_none() {
            return Err(KmsError::Validation(
                "KeyId is required to decrypt with an asymmetric encryption algorithm".into(),
            )
            .into());
        }
    }
    Ok(DecryptRequest {
        key,
        context,
        blob,
        algorithm,
        dry_run: req.dry_run.unwrap_or(false),
    })
}

/// AWS's `DecryptResponse`. Holds the plaintext, so no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptOut<'a> {
    encryption_algorithm: &'static str,
    key_id: String,
    plaintext: SecretField<'a>,
}

pub(crate) fn encode_decrypt_response(arn: String, plaintext: &Secret) -> Vec<u8> {
    encode(&DecryptOut {
        encryption_algorithm: SYMMETRIC_DEFAULT,
        key_id: arn,
        plaintext: SecretField(plaintext),
    })
}

pub(super) async fn decrypt(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req = decode_decrypt_request(body)?;
    if let (Some(algorithm), Some(key)) = (req.algorithm, req.key.as_ref()) {
        let (key, plaintext) = kms
            .decrypt_asymmetric(caller, key, algorithm, &req.blob.0, req.dry_run)
            .await?;
        return Ok(encode(&DecryptOut {
            encryption_algorithm: algorithm.as_str(),
            key_id: kms.record_arn(&key),
            plaintext: SecretField(&plaintext),
        }));
    }
    let (key, plaintext) = kms
        .decrypt(
            caller,
            &req.blob.0,
            &req.context,
            req.key.as_ref(),
            req.dry_run,
        )
        .await?;
    Ok(encode_decrypt_response(kms.record_arn(&key), &plaintext))
}

/// AWS's `ReEncryptResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptOut {
    ciphertext_blob: Blob,
    destination_encryption_algorithm: &'static str,
    key_id: String,
    source_encryption_algorithm: &'static str,
    source_key_id: String,
}

pub(super) async fn re_encrypt(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
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
    let asymmetric = |field: &str, value: Option<String>| {
        encryption_algorithm(value.as_deref(), field)
            .map(|a| a.filter(|a| *a != EncryptionAlgorithm::SymmetricDefault))
    };
    let source_algorithm =
        asymmetric("sourceEncryptionAlgorithm", req.source_encryption_algorithm)?;
    let destination_algorithm = asymmetric(
        "destinationEncryptionAlgorithm",
        req.destination_encryption_algorithm,
    )?;
    let source_context = context(req.source_encryption_context)?;
    let destination_context = context(req.destination_encryption_context)?;
    if source_algorithm.is_some() {
        refuse_context(&source_context)?;
    }
    if destination_algorithm.is_some() {
        refuse_context(&destination_context)?;
    }
    let source = req.source_key_id.as_deref().map(key_ref).transpose()?;
    let out = kms
        .re_encrypt_with(
            caller,
            ReEncryptRequest {
                blob: &blob.0,
                source_context: &source_context,
                source_key: source.as_ref(),
                source_algorithm,
                destination_key: &destination,
                destination_context: &destination_context,
                destination_algorithm,
                dry_run: req.dry_run.unwrap_or(false),
            },
        )
        .await?;
    let name =
        |a: Option<EncryptionAlgorithm>| a.map_or(SYMMETRIC_DEFAULT, EncryptionAlgorithm::as_str);
    Ok(encode(&ReEncryptOut {
        ciphertext_blob: Blob(out.blob),
        destination_encryption_algorithm: name(destination_algorithm),
        key_id: kms.record_arn(&out.destination),
        source_encryption_algorithm: name(source_algorithm),
        source_key_id: kms.record_arn(&out.source),
    }))
}
