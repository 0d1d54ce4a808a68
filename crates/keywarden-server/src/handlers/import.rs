//! Wire shapes of the imported key material operations (BYOK):
//! GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial.

use keywarden_core::clock::UnixMillis;
use keywarden_core::model::MaterialExpiration;
use keywarden_core::{Caller, Kms, KmsError};
use serde::{Deserialize, Serialize};

use super::key_id_response;
use crate::error::ApiError;
use crate::wire::{check_enum, decode, encode, key_ref, required, Blob};

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

/// AWS's `GetParametersForImportResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersForImportOut {
    import_token: Blob,
    key_id: String,
    parameters_valid_to: f64,
    public_key: Blob,
}

pub(super) async fn get_parameters_for_import(
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
    Ok(encode(&GetParametersForImportOut {
        import_token: Blob(params.import_token),
        key_id: kms.record_arn(&key),
        parameters_valid_to: params.valid_to.as_epoch_seconds(),
        public_key: Blob(params.public_key),
    }))
}

pub(super) async fn import_key_material(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
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
    Ok(key_id_response(kms.record_arn(&key)))
}

pub(super) async fn delete_imported_key_material(
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
    Ok(key_id_response(kms.record_arn(&key)))
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
