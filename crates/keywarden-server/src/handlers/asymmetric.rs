//! Wire shapes of the operations of asymmetric, HMAC, key agreement and
//! ML-KEM keys: Sign, Verify, GetPublicKey, GenerateMac, VerifyMac,
//! DeriveSharedSecret, Encapsulate, Decapsulate, and GenerateDataKeyPair
//! (with and without plaintext).

use std::collections::BTreeMap;

use keywarden_core::key_spec::{
    DataKeyPairSpec, EncapsulationAlgorithm, KeyAgreementAlgorithm, KeySpec, KeyUsageType,
    MacAlgorithm, MessageType, SigningAlgorithm,
};
use keywarden_core::model::KeyRecord;
use keywarden_core::{Caller, Kms};
use serde::{Deserialize, Serialize};

use super::refuse_recipient;
use crate::error::ApiError;
use crate::wire::{
    check_grant_tokens, context, decode, encode, key_ref, parse_enum, required, Blob, SecretBlob,
    SecretField,
};

fn signing_algorithm(value: Option<String>) -> Result<SigningAlgorithm, ApiError> {
    let v = required(value, "signingAlgorithm")?;
    parse_enum(
        &v,
        "signingAlgorithm",
        SigningAlgorithm::ALL,
        SigningAlgorithm::parse,
    )
}

fn message_type(value: Option<String>) -> Result<MessageType, ApiError> {
    match value {
        None => Ok(MessageType::Raw),
        Some(v) => parse_enum(&v, "messageType", MessageType::ALL, MessageType::parse),
    }
}

fn mac_algorithm(value: Option<String>) -> Result<MacAlgorithm, ApiError> {
    let v = required(value, "macAlgorithm")?;
    parse_enum(&v, "macAlgorithm", MacAlgorithm::ALL, MacAlgorithm::parse)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SignIn {
    key_id: Option<String>,
    message: Option<SecretBlob>,
    message_type: Option<String>,
    grant_tokens: Option<Vec<String>>,
    signing_algorithm: Option<String>,
    dry_run: Option<bool>,
}

/// AWS's `SignResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct SignOut {
    key_id: String,
    signature: Blob,
    signing_algorithm: SigningAlgorithm,
}

pub(super) async fn sign(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: SignIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let message = required(req.message, "message")?;
    let message_type = message_type(req.message_type)?;
    let algorithm = signing_algorithm(req.signing_algorithm)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let (key, signature) = kms
        .sign(
            caller,
            &key,
            message.0.expose(),
            message_type,
            algorithm,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&SignOut {
        key_id: kms.record_arn(&key),
        signature: Blob(signature),
        signing_algorithm: algorithm,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VerifyIn {
    key_id: Option<String>,
    message: Option<SecretBlob>,
    message_type: Option<String>,
    signature: Option<Blob>,
    signing_algorithm: Option<String>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

/// AWS's `VerifyResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VerifyOut {
    key_id: String,
    signature_valid: bool,
    signing_algorithm: SigningAlgorithm,
}

pub(super) async fn verify(kms: &Kms, caller: &Caller, body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let req: VerifyIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let message = required(req.message, "message")?;
    let signature = required(req.signature, "signature")?;
    let message_type = message_type(req.message_type)?;
    let algorithm = signing_algorithm(req.signing_algorithm)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let key = kms
        .verify(
            caller,
            &key,
            message.0.expose(),
            message_type,
            &signature.0,
            algorithm,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&VerifyOut {
        key_id: kms.record_arn(&key),
        signature_valid: true,
        signing_algorithm: algorithm,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetPublicKeyIn {
    key_id: Option<String>,
    grant_tokens: Option<Vec<String>>,
}

/// AWS's `GetPublicKeyResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetPublicKeyOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_master_key_spec: Option<KeySpec>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    encapsulation_algorithms: &'static [EncapsulationAlgorithm],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    encryption_algorithms: &'static [keywarden_core::key_spec::EncryptionAlgorithm],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    key_agreement_algorithms: &'static [KeyAgreementAlgorithm],
    key_id: String,
    key_spec: KeySpec,
    key_usage: KeyUsageType,
    public_key: Blob,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    signing_algorithms: &'static [SigningAlgorithm],
}

pub(super) async fn get_public_key(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: GetPublicKeyIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let key: std::sync::Arc<KeyRecord> = kms.get_public_key(caller, &key).await?;
    let (spec, usage) = (key.kind.spec, key.kind.usage);
    Ok(encode(&GetPublicKeyOut {
        key_id: kms.record_arn(&key),
        public_key: Blob(key.kind.public_key.clone().unwrap_or_default()),
        customer_master_key_spec: crate::wire::customer_master_key_spec(spec).map(|_| spec),
        key_spec: spec,
        key_usage: usage,
        encryption_algorithms: spec.encryption_algorithms(usage),
        signing_algorithms: spec.signing_algorithms(usage),
        key_agreement_algorithms: spec.key_agreement_algorithms(usage),
        encapsulation_algorithms: spec.encapsulation_algorithms(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MacIn {
    key_id: Option<String>,
    message: Option<SecretBlob>,
    mac_algorithm: Option<String>,
    mac: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

/// AWS's `GenerateMacResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GenerateMacOut {
    key_id: String,
    mac: Blob,
    mac_algorithm: MacAlgorithm,
}

pub(super) async fn generate_mac(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: MacIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let message = required(req.message, "message")?;
    let algorithm = mac_algorithm(req.mac_algorithm)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let (key, mac) = kms
        .generate_mac(
            caller,
            &key,
            message.0.expose(),
            algorithm,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&GenerateMacOut {
        key_id: kms.record_arn(&key),
        mac: Blob(mac),
        mac_algorithm: algorithm,
    }))
}

/// AWS's `VerifyMacResponse`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VerifyMacOut {
    key_id: String,
    mac_algorithm: MacAlgorithm,
    mac_valid: bool,
}

pub(super) async fn verify_mac(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: MacIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let message = required(req.message, "message")?;
    let algorithm = mac_algorithm(req.mac_algorithm)?;
    let mac = required(req.mac, "mac")?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let key = kms
        .verify_mac(
            caller,
            &key,
            message.0.expose(),
            algorithm,
            &mac.0,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&VerifyMacOut {
        key_id: kms.record_arn(&key),
        mac_valid: true,
        mac_algorithm: algorithm,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeriveSharedSecretIn {
    key_id: Option<String>,
    key_agreement_algorithm: Option<String>,
    public_key: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<serde_json::Value>,
    dry_run: Option<bool>,
}

/// AWS's `DeriveSharedSecretResponse`. Holds the secret, so no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DeriveSharedSecretOut<'a> {
    key_agreement_algorithm: KeyAgreementAlgorithm,
    key_id: String,
    key_origin: &'static str,
    shared_secret: SecretField<'a>,
}

pub(super) async fn derive_shared_secret(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: DeriveSharedSecretIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let algorithm = required(req.key_agreement_algorithm, "keyAgreementAlgorithm")?;
    let algorithm = parse_enum(
        &algorithm,
        "keyAgreementAlgorithm",
        KeyAgreementAlgorithm::ALL,
        KeyAgreementAlgorithm::parse,
    )?;
    let peer = required(req.public_key, "publicKey")?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    refuse_recipient(req.recipient.as_ref())?;
    let (key, secret) = kms
        .derive_shared_secret(
            caller,
            &key,
            algorithm,
            &peer.0,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&DeriveSharedSecretOut {
        key_id: kms.record_arn(&key),
        shared_secret: SecretField(&secret),
        key_agreement_algorithm: algorithm,
        key_origin: key.origin.as_str(),
    }))
}

fn encapsulation_algorithm(value: Option<String>) -> Result<EncapsulationAlgorithm, ApiError> {
    let v = required(value, "encapsulationAlgorithm")?;
    parse_enum(
        &v,
        "encapsulationAlgorithm",
        EncapsulationAlgorithm::ALL,
        EncapsulationAlgorithm::parse,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KemIn {
    key_id: Option<String>,
    encapsulation_algorithm: Option<String>,
    shared_secret_ciphertext_blob: Option<Blob>,
    grant_tokens: Option<Vec<String>>,
    dry_run: Option<bool>,
}

/// AWS's `EncapsulateResponse`. Holds the secret, so no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EncapsulateOut<'a> {
    encapsulation_algorithm: EncapsulationAlgorithm,
    key_id: String,
    shared_secret: SecretField<'a>,
    shared_secret_ciphertext_blob: Blob,
}

pub(super) async fn encapsulate(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: KemIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let algorithm = encapsulation_algorithm(req.encapsulation_algorithm)?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let (key, ciphertext, secret) = kms
        .encapsulate(caller, &key, algorithm, req.dry_run.unwrap_or(false))
        .await?;
    Ok(encode(&EncapsulateOut {
        key_id: kms.record_arn(&key),
        shared_secret: SecretField(&secret),
        shared_secret_ciphertext_blob: Blob(ciphertext),
        encapsulation_algorithm: algorithm,
    }))
}

/// AWS's `DecapsulateResponse`. Holds the secret, so no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DecapsulateOut<'a> {
    encapsulation_algorithm: EncapsulationAlgorithm,
    key_id: String,
    shared_secret: SecretField<'a>,
}

pub(super) async fn decapsulate(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let req: KemIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let algorithm = encapsulation_algorithm(req.encapsulation_algorithm)?;
    let ciphertext = required(
        req.shared_secret_ciphertext_blob,
        "sharedSecretCiphertextBlob",
    )?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    let (key, secret) = kms
        .decapsulate(
            caller,
            &key,
            algorithm,
            &ciphertext.0,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&DecapsulateOut {
        key_id: kms.record_arn(&key),
        shared_secret: SecretField(&secret),
        encapsulation_algorithm: algorithm,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataKeyPairIn {
    key_id: Option<String>,
    key_pair_spec: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    grant_tokens: Option<Vec<String>>,
    recipient: Option<serde_json::Value>,
    dry_run: Option<bool>,
}

/// AWS's `GenerateDataKeyPairResponse` and
/// `GenerateDataKeyPairWithoutPlaintextResponse`. Holds the private key,
/// so no `Debug`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DataKeyPairOut<'a> {
    key_id: String,
    key_pair_spec: DataKeyPairSpec,
    private_key_ciphertext_blob: Blob,
    #[serde(skip_serializing_if = "Option::is_none")]
    private_key_plaintext: Option<SecretField<'a>>,
    public_key: Blob,
}

pub(super) async fn generate_data_key_pair(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
    with_plaintext: bool,
) -> Result<Vec<u8>, ApiError> {
    let req: DataKeyPairIn = decode(body)?;
    let key = key_ref(&required(req.key_id, "keyId")?)?;
    let spec = required(req.key_pair_spec, "keyPairSpec")?;
    let spec = parse_enum(
        &spec,
        "keyPairSpec",
        DataKeyPairSpec::ALL,
        DataKeyPairSpec::parse,
    )?;
    check_grant_tokens(req.grant_tokens.as_ref())?;
    if with_plaintext {
        refuse_recipient(req.recipient.as_ref())?;
    }
    let ctx = context(req.encryption_context)?;
    let pair = kms
        .generate_data_key_pair(
            caller,
            &key,
            spec,
            &ctx,
            with_plaintext,
            req.dry_run.unwrap_or(false),
        )
        .await?;
    Ok(encode(&DataKeyPairOut {
        key_id: kms.record_arn(&pair.key),
        key_pair_spec: spec,
        private_key_ciphertext_blob: Blob(pair.private_blob),
        private_key_plaintext: pair.private_plaintext.as_ref().map(SecretField),
        public_key: Blob(pair.public_key),
    }))
}
