//! JSON shapes and the rules of the AWS JSON 1.1 protocol shared by the
//! operation handlers: decoding with AWS-style errors, blobs as base64,
//! timestamps as epoch seconds, field validation messages.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::key_spec::{
    EncryptionAlgorithm, KeyAgreementAlgorithm, KeySpec, KeyUsageType, MacAlgorithm,
    SigningAlgorithm,
};
use keywarden_core::model::{KeyRecord, KeyState, Tag};
use keywarden_core::secret::Secret;
use keywarden_core::{Kms, KmsError};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Decodes a request body. An empty body counts as `{}`.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's messages name the problem and position, never echo
        // string contents beyond the offending token's type.
        let what = match e.classify() {
            serde_json::error::Category::Data => "Invalid field type or value",
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "Malformed JSON"
            }
            serde_json::error::Category::Io => "Unreadable body",
        };
        ApiError::Serialization(format!("{what} at line {} column {}", e.line(), e.column()))
    })
}

/// Serialises a response body.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("response types always serialise")
}

/// A required field: missing → AWS's "must not be null" validation error.
pub fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| {
        ApiError::Kms(KmsError::Validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        )))
    })
}

/// A string field restricted to an enum.
pub fn check_enum(value: &str, field: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(ApiError::Kms(KmsError::Validation(format!(
            "1 validation error detected: Value '{}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            keywarden_core::ids::truncate_for_message(value),
            allowed.join(", ")
        ))))
    }
}

/// The deprecated `CustomerMasterKeySpec` of a key: the spec, for the specs
/// AWS's model enumerates there (not ML-DSA, ML-KEM or Ed25519).
pub fn customer_master_key_spec(spec: KeySpec) -> Option<&'static str> {
    (!matches!(
        spec,
        KeySpec::MlDsa44
            | KeySpec::MlDsa65
            | KeySpec::MlDsa87
            | KeySpec::EccNistEdwards25519
            | KeySpec::MlKem512
            | KeySpec::MlKem768
            | KeySpec::MlKem1024
    ))
    .then_some(spec.as_str())
}

/// `ValidationException` for `value` outside the enum `allowed`.
pub fn invalid_enum<T: std::fmt::Display>(value: &str, field: &str, allowed: &[T]) -> KmsError {
    KmsError::Validation(format!(
        "1 validation error detected: Value '{}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
        keywarden_core::ids::truncate_for_message(value),
        allowed
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A string field naming one of `allowed` (an AWS enum of the core).
pub fn parse_enum<T: Copy + PartialEq + std::fmt::Display>(
    value: &str,
    field: &str,
    allowed: &[T],
    parse: fn(&str) -> Option<T>,
) -> Result<T, ApiError> {
    match parse(value) {
        Some(v) if allowed.contains(&v) => Ok(v),
        _ => Err(invalid_enum(value, field, allowed).into()),
    }
}

/// An integer field within bounds.
pub fn check_range(value: i64, field: &str, min: i64, max: i64) -> Result<(), ApiError> {
    if value < min {
        return Err(ApiError::Kms(KmsError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
        ))));
    }
    if value > max {
        return Err(ApiError::Kms(KmsError::Validation(format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must have value less than or equal to {max}"
        ))));
    }
    Ok(())
}

/// A string field's length in characters.
pub fn check_len(value: &str, field: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(ApiError::Kms(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between {min} and {max}"
        ))));
    }
    Ok(())
}

/// Parses a `KeyId`-shaped field.
pub fn key_ref(value: &str) -> Result<KeyRef, ApiError> {
    Ok(KeyRef::parse(value)?)
}

/// Converts an optional encryption context map.
pub fn context(map: Option<BTreeMap<String, String>>) -> Result<EncryptionContext, ApiError> {
    Ok(EncryptionContext::new(map.unwrap_or_default())?)
}

/// An `EncryptionAlgorithm` field: `None` when absent (symmetric).
pub fn encryption_algorithm(
    value: Option<&str>,
    field: &str,
) -> Result<Option<EncryptionAlgorithm>, ApiError> {
    value
        .map(|v| {
            parse_enum(
                v,
                field,
                EncryptionAlgorithm::ALL,
                EncryptionAlgorithm::parse,
            )
        })
        .transpose()
}

/// `GrantTokens`: checked (at most 10, 1-8192 characters each) and
/// otherwise not needed: grants take effect when CreateGrant returns
/// (`keywarden_core::ops::grants::check_grant_tokens`).
pub fn check_grant_tokens(tokens: Option<&Vec<String>>) -> Result<(), ApiError> {
    if let Some(t) = tokens {
        keywarden_core::ops::grants::check_grant_tokens(t)?;
    }
    Ok(())
}

/// A `Limit` field of a list operation.
pub fn limit(value: Option<i64>) -> Result<Option<u32>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) => {
            check_range(v, "limit", 1, 1000)?;
            Ok(Some(v as u32))
        }
    }
}

/// A `Marker` field.
pub fn marker(value: Option<&String>) -> Result<Option<&str>, ApiError> {
    match value {
        None => Ok(None),
        Some(m) => {
            check_len(m, "marker", 1, 1024)?;
            Ok(Some(m.as_str()))
        }
    }
}

/// A non-secret blob field (a ciphertext), base64 in JSON.
#[derive(Debug, Default)]
pub struct Blob(pub Vec<u8>);

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(B64Visitor)
            .map(|s| Blob(s.expose().to_vec()))
    }
}

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

/// A secret blob field (plaintext), base64 in JSON; decoded into a zeroizing
/// buffer and never printed.
pub struct SecretBlob(pub Secret);

impl std::fmt::Debug for SecretBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for SecretBlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(B64Visitor).map(SecretBlob)
    }
}

/// A secret string field (`KeyStorePassword`): its UTF-8 bytes in a
/// zeroizing buffer, never printed.
pub struct SecretString(pub Secret);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v.as_bytes().to_vec()))
            }
        }
        d.deserialize_str(V).map(SecretString)
    }
}

/// A secret blob in a response (`Plaintext`): borrowed from its zeroizing
/// owner and base64-encoded into a zeroizing buffer while the body is
/// written. No `Debug`, `Clone` or comparison, so response structs holding
/// one cannot print or copy the secret. The response buffer itself is
/// handed to hyper and cannot be zeroized by us; see SECURITY.md.
pub struct SecretField<'a>(pub &'a Secret);

impl Serialize for SecretField<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let encoded = zeroize::Zeroizing::new(B64.encode(self.0.expose()));
        s.serialize_str(&encoded)
    }
}

struct B64Visitor;

impl Visitor<'_> for B64Visitor {
    type Value = Secret;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a base64-encoded string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        let mut out = Secret::zeroed(base64::decoded_len_estimate(v.len()));
        match B64.decode_slice(v.as_bytes(), out.expose_mut()) {
            Ok(n) => Ok(Secret::new(out.expose()[..n].to_vec())),
            Err(_) => Err(E::custom("invalid base64")),
        }
    }
}

/// `KeyMetadata` as AWS returns it. Fields in alphabetical order: the order
/// the body had when it went through a JSON map, kept so answers stay
/// byte-identical.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    aws_account_id: String,
    arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cloud_hsm_cluster_id: Option<String>,
    creation_date: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_key_store_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_master_key_spec: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_date: Option<f64>,
    /// A Keywarden extension (`docs/api-extensions.md`); AWS clients skip
    /// fields their model does not have.
    deletion_protection_enabled: bool,
    description: String,
    enabled: bool,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    encryption_algorithms: &'static [EncryptionAlgorithm],
    /// Keys with imported material (origin `EXTERNAL`) while it is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_model: Option<&'static str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    key_agreement_algorithms: &'static [KeyAgreementAlgorithm],
    key_id: String,
    key_manager: &'static str,
    key_spec: &'static str,
    key_state: &'static str,
    key_usage: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mac_algorithms: &'static [MacAlgorithm],
    multi_region: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_region_configuration: Option<MultiRegionConfiguration>,
    origin: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_deletion_window_in_days: Option<u32>,
    /// A Keywarden extension: `HARDWARE` for keys in a custom key store
    /// (HSM), `SOFTWARE` otherwise (the seed's two protection levels).
    protection_level: &'static str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    signing_algorithms: &'static [SigningAlgorithm],
    #[serde(skip_serializing_if = "Option::is_none")]
    valid_to: Option<f64>,
}

impl KeyMetadata {
    /// Renders a key's metadata.
    pub fn of(kms: &Kms, key: &KeyRecord) -> Self {
        let (spec, usage) = (key.kind.spec, key.kind.usage);
        KeyMetadata {
            aws_account_id: key.account_id.to_string(),
            key_id: key.key_id.to_string(),
            arn: kms.record_arn(key),
            creation_date: key.created_at.as_epoch_seconds(),
            enabled: key.state == KeyState::Enabled,
            description: key.description.clone(),
            key_usage: usage.as_str(),
            key_state: key.state.as_str(),
            deletion_date: key.deletion_date.map(|d| d.as_epoch_seconds()),
            pending_deletion_window_in_days: key.pending_window_days,
            origin: key.origin.as_str(),
            custom_key_store_id: key.custom_key_store_id().map(str::to_owned),
            cloud_hsm_cluster_id: key
                .custom_key_store_id()
                .map(|id| format!("keywarden-pkcs11-{id}")),
            key_manager: key.key_manager.as_str(),
            // The deprecated field exists for the specs it enumerates.
            customer_master_key_spec: customer_master_key_spec(spec),
            key_spec: spec.as_str(),
            encryption_algorithms: spec.encryption_algorithms(usage),
            signing_algorithms: spec.signing_algorithms(usage),
            mac_algorithms: if usage == KeyUsageType::GenerateVerifyMac {
                spec.mac_algorithms()
            } else {
                &[]
            },
            key_agreement_algorithms: spec.key_agreement_algorithms(usage),
            multi_region: key.multi_region.is_some(),
            multi_region_configuration: MultiRegionConfiguration::of(kms, key),
            deletion_protection_enabled: key.deletion_protection,
            protection_level: if key.custom_key_store_id().is_some() {
                "HARDWARE"
            } else {
                "SOFTWARE"
            },
            expiration_model: key
                .import
                .as_ref()
                .and_then(|i| i.expiration)
                .map(|e| e.model_str()),
            valid_to: key
                .import
                .as_ref()
                .and_then(|i| i.expiration)
                .and_then(|e| e.valid_to())
                .map(|t| t.as_epoch_seconds()),
        }
    }
}

/// AWS's `MultiRegionConfiguration` (members in alphabetical order).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MultiRegionConfiguration {
    multi_region_key_type: &'static str,
    primary_key: MultiRegionKey,
    replica_keys: Vec<MultiRegionKey>,
}

/// AWS's `MultiRegionKey`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MultiRegionKey {
    arn: String,
    region: String,
}

impl MultiRegionConfiguration {
    /// The related keys of a multi-Region key, seen from the record's
    /// region; `None` for a single-Region key.
    fn of(kms: &Kms, key: &KeyRecord) -> Option<Self> {
        let mr = key.multi_region.as_ref()?;
        let home = kms.config().region.as_str();
        let entry = |region: &str| MultiRegionKey {
            arn: kms.regional_key_arn(
                kms.config().region_tag(region).as_deref(),
                &key.account_id,
                &key.key_id,
            ),
            region: region.to_owned(),
        };
        let mut replicas: Vec<&str> = key
            .regions(home)
            .into_iter()
            .filter(|r| *r != mr.primary_region)
            .collect();
        replicas.sort_unstable();
        Some(MultiRegionConfiguration {
            multi_region_key_type: if key.is_primary(home) {
                "PRIMARY"
            } else {
                "REPLICA"
            },
            primary_key: entry(&mr.primary_region),
            replica_keys: replicas.into_iter().map(entry).collect(),
        })
    }
}

/// A tag as AWS spells it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct WireTag {
    /// Tag key.
    pub tag_key: Option<String>,
    /// Tag value.
    pub tag_value: Option<String>,
}

/// Converts wire tags to domain tags; both members are required.
pub fn tags(list: Option<Vec<WireTag>>) -> Result<Vec<Tag>, ApiError> {
    list.unwrap_or_default()
        .into_iter()
        .map(|t| {
            Ok(Tag {
                key: required(t.tag_key, "tags.member.tagKey")?,
                value: required(t.tag_value, "tags.member.tagValue")?,
            })
        })
        .collect()
}

impl From<&Tag> for WireTag {
    fn from(t: &Tag) -> Self {
        WireTag {
            tag_key: Some(t.key.clone()),
            tag_value: Some(t.value.clone()),
        }
    }
}
