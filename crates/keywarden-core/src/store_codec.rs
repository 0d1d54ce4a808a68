//! How records are laid out in a SQL store's rows: the backend-neutral half
//! of every SQL backend (`keywarden-store-sqlite`, `keywarden-store-postgres`).
//!
//! Encoding goes from a domain record to plain column values (strings,
//! `i64`, `Option`, `Vec<u8>`, JSON text); decoding takes the plain values a
//! backend read from a row and checks them on the way back. Sharing this
//! module is what makes a record stored by one backend identical to the same
//! record stored by another (the `meta` JSON byte for byte), so a dump moves
//! between them unchanged. Backends only adapt their row type to these
//! structs. No I/O.
//!
//! **Invariant:** error messages name the problem, never the offending
//! value (a row may hold wrapped key material or a sealed secret).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::billing::{LedgerEntry, LedgerKind, Month};
use crate::clock::UnixMillis;
use crate::iam::IamEntity;
use crate::ids::{AccountId, AliasName, KeyId, KeyringId, ProductCode};
use crate::key_spec::{KeyKind, KeySpec, KeyUsageType};
use crate::model::{
    Account, AliasRecord, AutoRotation, Credential, CredentialOwner, CredentialStatus,
    CryptoOperation, GrantConstraints, GrantOperation, GrantRecord, ImportState, KeyManager,
    KeyRecord, KeyState, KeyUsage, KeyVersion, KeyringKeyVersion, KeyringRecord,
    MaterialExpiration, MultiRegion, Origin, Product, ProductClass, ProductStatus, RegionalKey,
    RotationType, Tag,
};

/// A record that cannot be encoded, or stored values that do not decode.
#[derive(Debug)]
pub enum CodecError {
    /// Stored data that does not decode, or a record a store refuses to
    /// write. The message names the problem, never the offending value.
    Invalid(String),
    /// A `meta` JSON column that does not parse (or a record that does not
    /// serialize).
    Json(serde_json::Error),
}

impl CodecError {
    fn invalid(message: impl Into<String>) -> Self {
        CodecError::Invalid(message.into())
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Invalid(message) => f.write_str(message),
            CodecError::Json(e) => write!(f, "stored JSON does not decode: {e}"),
        }
    }
}

impl std::error::Error for CodecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CodecError::Invalid(_) => None,
            CodecError::Json(e) => Some(e),
        }
    }
}

impl From<serde_json::Error> for CodecError {
    fn from(e: serde_json::Error) -> Self {
        CodecError::Json(e)
    }
}

/// The `keys.meta` JSON column, as written: every `KeyRecord` field that is
/// neither queried nor part of the compare-and-set.
#[derive(Serialize)]
struct MetaOut<'a> {
    description: &'a str,
    origin: Origin,
    key_manager: KeyManager,
    created_at: UnixMillis,
    pending_window_days: Option<u32>,
    tags: &'a [Tag],
    policy: Option<&'a str>,
    /// The automatic rotation period; set exactly when the `rotation_date`
    /// column is.
    rotation_period_days: Option<u32>,
    on_demand_rotations: u32,
    deletion_protection: bool,
    /// Imported material: the fingerprint (hex) and expiration model; the
    /// valid-to instant is the `material_valid_to` column.
    #[serde(skip_serializing_if = "Option::is_none")]
    import: Option<ImportMeta>,
    /// The product a default key belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    default_for: Option<&'a ProductCode>,
    /// The key spec and usage; absent for symmetric encryption keys, so
    /// their meta is what it was before other specs existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_spec: Option<KeySpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_usage: Option<KeyUsageType>,
    /// DER `SubjectPublicKeyInfo`, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    /// The key's region; absent for the home region (every key made
    /// before regions existed), so their meta is unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
    /// A multi-Region key's primary region and other regions' keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    multi_region: Option<MultiRegionMeta>,
}

/// `meta.multi_region`.
#[derive(Serialize, Deserialize)]
struct MultiRegionMeta {
    primary_region: String,
    others: Vec<RegionalMeta>,
}

/// One region's key of a multi-Region key in `meta.multi_region.others`.
#[derive(Serialize, Deserialize)]
struct RegionalMeta {
    region: String,
    state: String,
    description: String,
    tags: Vec<Tag>,
    policy: Option<String>,
    created_at: UnixMillis,
    deletion_date: Option<UnixMillis>,
    pending_window_days: Option<u32>,
    deletion_protection: bool,
}

impl MultiRegionMeta {
    fn encode(mr: &MultiRegion) -> Self {
        MultiRegionMeta {
            primary_region: mr.primary_region.clone(),
            others: mr
                .others
                .iter()
                .map(|r| RegionalMeta {
                    region: r.region.clone(),
                    state: r.state.as_str().to_owned(),
                    description: r.description.clone(),
                    tags: r.tags.clone(),
                    policy: r.policy.clone(),
                    created_at: r.created_at,
                    deletion_date: r.deletion_date,
                    pending_window_days: r.pending_window_days,
                    deletion_protection: r.deletion_protection,
                })
                .collect(),
        }
    }

    fn decode(self) -> Result<MultiRegion, CodecError> {
        Ok(MultiRegion {
            primary_region: self.primary_region,
            others: self
                .others
                .into_iter()
                .map(|r| {
                    Ok(RegionalKey {
                        region: r.region,
                        state: decode_state(&r.state)?,
                        description: r.description,
                        tags: r.tags,
                        policy: r.policy,
                        created_at: r.created_at,
                        deletion_date: r.deletion_date,
                        pending_window_days: r.pending_window_days,
                        deletion_protection: r.deletion_protection,
                    })
                })
                .collect::<Result<_, CodecError>>()?,
        })
    }
}

/// `meta.import`. `expiration` is `null` while the material is deleted,
/// `"KEY_MATERIAL_DOES_NOT_EXPIRE"` or `"KEY_MATERIAL_EXPIRES"`.
#[derive(Serialize, Deserialize)]
struct ImportMeta {
    fingerprint: String,
    expiration: Option<String>,
}

/// The `keys.meta` JSON column, as read. Fields added after the first
/// release have serde defaults, so rows written before them still load
/// (as "rotation off, no on-demand rotations, deletion protection off").
#[derive(Deserialize)]
struct MetaIn {
    description: String,
    origin: Origin,
    key_manager: KeyManager,
    created_at: UnixMillis,
    #[serde(default)]
    pending_window_days: Option<u32>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    rotation_period_days: Option<u32>,
    #[serde(default)]
    on_demand_rotations: u32,
    #[serde(default)]
    deletion_protection: bool,
    #[serde(default)]
    import: Option<ImportMeta>,
    #[serde(default)]
    default_for: Option<ProductCode>,
    #[serde(default)]
    key_spec: Option<KeySpec>,
    #[serde(default)]
    key_usage: Option<KeyUsageType>,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    multi_region: Option<MultiRegionMeta>,
}

/// The columns of `keys` a key record is written to (its versions go to
/// `key_versions`).
pub struct KeyColumns {
    /// `key_id`: lowercase hyphenated UUID text.
    pub key_id: String,
    /// `account_id`.
    pub account_id: String,
    /// `revision`.
    pub revision: i64,
    /// `state`: [`KeyState::as_str`].
    pub state: &'static str,
    /// `deletion_date`.
    pub deletion_date: Option<i64>,
    /// `rotation_date`: the next automatic rotation date; NULL while
    /// rotation is off.
    pub rotation_date: Option<i64>,
    /// `material_valid_to`: when imported material expires; NULL unless it
    /// is present and expires.
    pub material_valid_to: Option<i64>,
    /// `meta`: JSON text of everything else.
    pub meta: String,
}

impl KeyColumns {
    /// Encodes a key record's own row.
    pub fn encode(key: &KeyRecord) -> Result<KeyColumns, CodecError> {
        let meta = serde_json::to_string(&MetaOut {
            description: &key.description,
            origin: key.origin,
            key_manager: key.key_manager,
            created_at: key.created_at,
            pending_window_days: key.pending_window_days,
            tags: &key.tags,
            policy: key.policy.as_deref(),
            rotation_period_days: key.rotation.map(|r| r.period_days),
            on_demand_rotations: key.on_demand_rotations,
            deletion_protection: key.deletion_protection,
            import: key.import.as_ref().map(|i| ImportMeta {
                fingerprint: hex::encode(&i.fingerprint),
                expiration: i.expiration.map(|e| e.model_str().to_owned()),
            }),
            default_for: key.default_for.as_ref(),
            key_spec: (!key.kind.is_symmetric_encryption()).then_some(key.kind.spec),
            key_usage: (!key.kind.is_symmetric_encryption()).then_some(key.kind.usage),
            public_key: key.kind.public_key.as_ref().map(hex::encode),
            region: key.region.as_deref(),
            multi_region: key.multi_region.as_ref().map(MultiRegionMeta::encode),
        })?;
        Ok(KeyColumns {
            key_id: key.key_id.to_string(),
            account_id: key.account_id.as_str().to_owned(),
            revision: revision_to_sql(key.revision)?,
            state: key.state.as_str(),
            deletion_date: key.deletion_date.map(|d| d.0),
            rotation_date: key.rotation.map(|r| r.next_rotation.0),
            material_valid_to: key
                .import
                .as_ref()
                .and_then(|i| i.expiration)
                .and_then(MaterialExpiration::valid_to)
                .map(|t| t.0),
            meta,
        })
    }
}

/// A `keys` row as read, not yet decoded.
pub struct KeyRow {
    /// `key_id`.
    pub key_id: String,
    /// `account_id`.
    pub account_id: String,
    /// `revision`.
    pub revision: i64,
    /// `state`.
    pub state: String,
    /// `deletion_date`.
    pub deletion_date: Option<i64>,
    /// `meta`.
    pub meta: String,
    /// `rotation_date`.
    pub rotation_date: Option<i64>,
    /// `material_valid_to`.
    pub material_valid_to: Option<i64>,
}

impl KeyRow {
    /// Decodes the row into a record carrying `versions`.
    pub fn decode(self, versions: Vec<KeyVersion>) -> Result<KeyRecord, CodecError> {
        let meta: MetaIn = serde_json::from_str(&self.meta)?;
        let rotation = match (self.rotation_date, meta.rotation_period_days) {
            (Some(next), Some(period_days)) => Some(AutoRotation {
                period_days,
                next_rotation: UnixMillis(next),
            }),
            (None, None) => None,
            _ => {
                return Err(CodecError::invalid(
                    "stored key has a rotation date without a period, or the reverse",
                ))
            }
        };
        let import = match meta.import {
            None => None,
            Some(i) => Some(ImportState {
                fingerprint: hex::decode(&i.fingerprint)
                    .map_err(|_| CodecError::invalid("stored import fingerprint is not hex"))?,
                expiration: match (i.expiration.as_deref(), self.material_valid_to) {
                    (None, None) => None,
                    (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), None) => {
                        Some(MaterialExpiration::DoesNotExpire)
                    }
                    (Some("KEY_MATERIAL_EXPIRES"), Some(t)) => {
                        Some(MaterialExpiration::ValidTo(UnixMillis(t)))
                    }
                    _ => {
                        return Err(CodecError::invalid(
                            "stored key's material expiration model and valid-to disagree",
                        ))
                    }
                },
            }),
        };
        if import.is_none() && self.material_valid_to.is_some() {
            return Err(CodecError::invalid(
                "stored key has a material valid-to but no import",
            ));
        }
        Ok(KeyRecord {
            key_id: decode_key_id(&self.key_id)?,
            account_id: decode_account_id(&self.account_id)?,
            revision: u64::try_from(self.revision)
                .map_err(|_| CodecError::invalid("stored key revision is negative"))?,
            description: meta.description,
            state: decode_state(&self.state)?,
            origin: meta.origin,
            key_manager: meta.key_manager,
            created_at: meta.created_at,
            deletion_date: self.deletion_date.map(UnixMillis),
            pending_window_days: meta.pending_window_days,
            tags: meta.tags,
            policy: meta.policy,
            versions,
            rotation,
            on_demand_rotations: meta.on_demand_rotations,
            deletion_protection: meta.deletion_protection,
            import,
            default_for: meta.default_for,
            kind: KeyKind {
                spec: meta.key_spec.unwrap_or(KeySpec::SymmetricDefault),
                usage: meta.key_usage.unwrap_or(KeyUsageType::EncryptDecrypt),
                public_key: match meta.public_key {
                    None => None,
                    Some(h) => Some(
                        hex::decode(h)
                            .map_err(|_| CodecError::invalid("stored public key is not hex"))?,
                    ),
                },
            },
            region: meta.region,
            multi_region: meta.multi_region.map(MultiRegionMeta::decode).transpose()?,
        })
    }
}

/// A `key_versions` row as read, not yet decoded (also what a version is
/// written as, apart from `material`'s type).
pub struct VersionRow {
    /// `version`.
    pub version: i64,
    /// `protector`.
    pub protector: String,
    /// `material` (wrapped; empty while imported material is deleted).
    pub material: Vec<u8>,
    /// `created_at`.
    pub created_at: i64,
    /// `rotation_type`: NULL for the initial material.
    pub rotation_type: Option<String>,
}

impl fmt::Debug for VersionRow {
    // The material is wrapped, but still not for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionRow")
            .field("version", &self.version)
            .field("protector", &self.protector)
            .field("material_len", &self.material.len())
            .finish_non_exhaustive()
    }
}

impl VersionRow {
    /// Decodes the row.
    pub fn decode(self) -> Result<KeyVersion, CodecError> {
        Ok(KeyVersion {
            version: u32::try_from(self.version)
                .map_err(|_| CodecError::invalid("stored key version number is out of range"))?,
            protector: self.protector,
            material: self.material,
            created_at: UnixMillis(self.created_at),
            rotation: self
                .rotation_type
                .as_deref()
                .map(decode_rotation_type)
                .transpose()?,
        })
    }
}

/// An `aliases` row as read, not yet decoded.
pub struct AliasRow {
    /// `account_id`.
    pub account_id: String,
    /// `name`.
    pub name: String,
    /// `key_id`: the target.
    pub key_id: String,
    /// `region`: empty for the home region.
    pub region: String,
    /// `created_at`.
    pub created_at: i64,
    /// `updated_at`.
    pub updated_at: i64,
    /// `revision`.
    pub revision: i64,
}

impl AliasRow {
    /// Decodes the row.
    pub fn decode(self) -> Result<AliasRecord, CodecError> {
        Ok(AliasRecord {
            account_id: decode_account_id(&self.account_id)?,
            name: AliasName::parse_lookup(&self.name)
                .map_err(|_| CodecError::invalid("stored alias name is malformed"))?,
            target: decode_key_id(&self.key_id)?,
            region: (!self.region.is_empty()).then_some(self.region),
            created_at: UnixMillis(self.created_at),
            updated_at: UnixMillis(self.updated_at),
            revision: u64::try_from(self.revision)
                .map_err(|_| CodecError::invalid("stored alias revision is negative"))?,
        })
    }
}

/// Decodes an `accounts` row: id, name, creation.
pub fn decode_account(
    (id, name, created_at): (String, String, i64),
) -> Result<Account, CodecError> {
    Ok(Account {
        account_id: decode_account_id(&id)?,
        name,
        created_at: UnixMillis(created_at),
    })
}

/// A `credentials` row as read, not yet decoded. Exactly one of
/// `account_id` and `product_code` is set.
pub struct CredentialRow {
    /// `access_key_id`.
    pub access_key_id: String,
    /// `account_id`: the owner, for an account's credential.
    pub account_id: Option<String>,
    /// `product_code`: the owner, for a product's credential.
    pub product_code: Option<String>,
    /// `user_name`: with `account_id`, for an IAM user's access key.
    pub user_name: Option<String>,
    /// `sealed_secret`.
    pub sealed_secret: Vec<u8>,
    /// `status`.
    pub status: String,
    /// `created_at`.
    pub created_at: i64,
}

impl fmt::Debug for CredentialRow {
    // Never the sealed secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRow")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl CredentialRow {
    /// Decodes the row.
    pub fn decode(self) -> Result<Credential, CodecError> {
        let owner = match (self.account_id, self.product_code, self.user_name) {
            (Some(account), None, None) => CredentialOwner::Account(decode_account_id(&account)?),
            (Some(account), None, Some(user_name)) => CredentialOwner::User {
                account: decode_account_id(&account)?,
                user_name,
            },
            (None, Some(code), None) => CredentialOwner::Product(
                ProductCode::parse(&code)
                    .map_err(|_| CodecError::invalid("stored product code is malformed"))?,
            ),
            _ => return Err(CodecError::invalid("stored credential has no single owner")),
        };
        Ok(Credential {
            access_key_id: self.access_key_id,
            owner,
            sealed_secret: self.sealed_secret,
            status: decode_status(&self.status)?,
            created_at: UnixMillis(self.created_at),
        })
    }
}

/// A credential's owner as the three columns `(account_id, product_code,
/// user_name)`.
pub fn credential_owner_columns(
    owner: &CredentialOwner,
) -> (Option<&str>, Option<&str>, Option<&str>) {
    match owner {
        CredentialOwner::Account(a) => (Some(a.as_str()), None, None),
        CredentialOwner::Product(p) => (None, Some(p.as_str()), None),
        CredentialOwner::User { account, user_name } => {
            (Some(account.as_str()), None, Some(user_name.as_str()))
        }
    }
}

/// How a credential status is stored.
pub fn status_to_sql(status: CredentialStatus) -> &'static str {
    match status {
        CredentialStatus::Active => "Active",
        CredentialStatus::Revoked => "Revoked",
        CredentialStatus::Inactive => "Inactive",
    }
}

fn decode_status(s: &str) -> Result<CredentialStatus, CodecError> {
    match s {
        "Active" => Ok(CredentialStatus::Active),
        "Revoked" => Ok(CredentialStatus::Revoked),
        "Inactive" => Ok(CredentialStatus::Inactive),
        _ => Err(CodecError::invalid("stored credential status is unknown")),
    }
}

/// How a version's rotation type is stored (NULL: the initial material).
pub fn rotation_type_to_sql(rotation: Option<RotationType>) -> Option<&'static str> {
    rotation.map(RotationType::as_str)
}

fn decode_rotation_type(s: &str) -> Result<RotationType, CodecError> {
    [RotationType::Automatic, RotationType::OnDemand]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| CodecError::invalid("stored rotation type is unknown"))
}

fn decode_state(s: &str) -> Result<KeyState, CodecError> {
    [
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingDeletion,
        KeyState::PendingImport,
        KeyState::PendingReplicaDeletion,
    ]
    .into_iter()
    .find(|state| state.as_str() == s)
    .ok_or_else(|| CodecError::invalid("stored key state is unknown"))
}

/// Decodes a stored key id.
pub fn decode_key_id(s: &str) -> Result<KeyId, CodecError> {
    KeyId::parse(s).ok_or_else(|| CodecError::invalid("stored key id is malformed"))
}

/// Decodes a stored account id.
pub fn decode_account_id(s: &str) -> Result<AccountId, CodecError> {
    AccountId::parse(s).map_err(|_| CodecError::invalid("stored account id is malformed"))
}

/// Revisions are `u64` in the domain and signed 64-bit integers in SQL.
pub fn revision_to_sql(revision: u64) -> Result<i64, CodecError> {
    i64::try_from(revision).map_err(|_| CodecError::invalid("revision exceeds the storable range"))
}

/// Rejects a record listing the same version number twice; stored as is, the
/// duplicate would surface as a misleading primary-key conflict.
pub fn check_versions(key: &KeyRecord) -> Result<(), CodecError> {
    let mut seen: Vec<u32> = key.versions.iter().map(|v| v.version).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(CodecError::invalid(
            "key record lists a version number twice",
        ));
    }
    Ok(())
}

/// A `key_usage` row before decoding.
pub struct UsageRow {
    /// `account_id`.
    pub account_id: String,
    /// `key_id`.
    pub key_id: String,
    /// `used_at`.
    pub used_at: i64,
    /// `operation`: [`CryptoOperation::as_str`].
    pub operation: String,
    /// `principal`.
    pub principal: String,
    /// `request_id`.
    pub request_id: String,
}

impl UsageRow {
    /// Decodes the row.
    pub fn decode(self) -> Result<KeyUsage, CodecError> {
        let operation = CryptoOperation::parse(&self.operation).ok_or_else(|| {
            CodecError::invalid(format!(
                "unknown operation {:?} in key_usage",
                self.operation
            ))
        })?;
        Ok(KeyUsage {
            account_id: decode_account_id(&self.account_id)?,
            key_id: decode_key_id(&self.key_id)?,
            used_at: UnixMillis(self.used_at),
            operation,
            principal: self.principal,
            request_id: self.request_id,
        })
    }
}

/// Decodes a `products` row: code, class, status, creation.
pub fn decode_product(
    (code, class, status, created_at): (String, String, String, i64),
) -> Result<Product, CodecError> {
    Ok(Product {
        code: ProductCode::parse(&code)
            .map_err(|_| CodecError::invalid("stored product code is malformed"))?,
        class: ProductClass::parse(&class)
            .ok_or_else(|| CodecError::invalid("stored product class is unknown"))?,
        status: ProductStatus::parse(&status)
            .ok_or_else(|| CodecError::invalid("stored product status is unknown"))?,
        created_at: UnixMillis(created_at),
    })
}

/// The `grants.meta` JSON column: what a grant allows.
#[derive(Serialize, Deserialize)]
struct GrantMeta {
    operations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subset: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<BTreeMap<String, String>>,
}

/// A `grants` row, to write or as read.
pub struct GrantRow {
    /// `grant_id`.
    pub grant_id: String,
    /// `account_id`.
    pub account_id: String,
    /// `key_id`.
    pub key_id: String,
    /// `grantee`: the grantee principal.
    pub grantee: String,
    /// `retiring`: the retiring principal.
    pub retiring: Option<String>,
    /// `name`.
    pub name: Option<String>,
    /// `created_at`.
    pub created_at: i64,
    /// `meta`: JSON text of the operations and constraints.
    pub meta: String,
}

impl GrantRow {
    /// Encodes a grant.
    pub fn encode(grant: &GrantRecord) -> Result<GrantRow, CodecError> {
        let meta = serde_json::to_string(&GrantMeta {
            operations: grant
                .operations
                .iter()
                .map(|op| op.as_str().to_owned())
                .collect(),
            subset: grant.constraints.subset.clone(),
            equals: grant.constraints.equals.clone(),
        })?;
        Ok(GrantRow {
            grant_id: grant.grant_id.clone(),
            account_id: grant.account_id.as_str().to_owned(),
            key_id: grant.key_id.to_string(),
            grantee: grant.grantee_principal.clone(),
            retiring: grant.retiring_principal.clone(),
            name: grant.name.clone(),
            created_at: grant.created_at.0,
            meta,
        })
    }

    /// Decodes the row.
    pub fn decode(self) -> Result<GrantRecord, CodecError> {
        let meta: GrantMeta = serde_json::from_str(&self.meta)?;
        let operations = meta
            .operations
            .iter()
            .map(|op| {
                GrantOperation::parse(op)
                    .ok_or_else(|| CodecError::invalid("stored grant operation is unknown"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(GrantRecord {
            grant_id: self.grant_id,
            account_id: decode_account_id(&self.account_id)?,
            key_id: decode_key_id(&self.key_id)?,
            name: self.name,
            grantee_principal: self.grantee,
            retiring_principal: self.retiring,
            operations,
            constraints: GrantConstraints {
                subset: meta.subset,
                equals: meta.equals,
            },
            created_at: UnixMillis(self.created_at),
        })
    }
}

/// Decodes a stored month (`YYYYMM`-style code, [`Month::code`]).
pub fn decode_month(code: i64) -> Result<Month, CodecError> {
    u32::try_from(code)
        .ok()
        .and_then(Month::from_code)
        .ok_or_else(|| CodecError::invalid("stored month is malformed"))
}

/// Decodes a stored ledger kind.
pub fn decode_ledger_kind(s: &str) -> Result<LedgerKind, CodecError> {
    match s {
        "TopUp" => Ok(LedgerKind::TopUp),
        "Charge" => Ok(LedgerKind::Charge),
        _ => Err(CodecError::invalid("stored ledger kind is unknown")),
    }
}

/// A `ledger` row before decoding.
pub struct LedgerRow {
    /// `seq`.
    pub seq: i64,
    /// `account_id`.
    pub account_id: String,
    /// `at`.
    pub at: i64,
    /// `kind`: [`LedgerKind::as_str`].
    pub kind: String,
    /// `amount`, minor units, positive.
    pub amount: i64,
    /// `month`: the month code a charge is for.
    pub month: Option<i64>,
    /// `memo`.
    pub memo: String,
    /// `reference`: a top-up's reference, unique per account.
    pub reference: Option<String>,
}

impl LedgerRow {
    /// Decodes the row.
    pub fn decode(self) -> Result<LedgerEntry, CodecError> {
        Ok(LedgerEntry {
            seq: u64::try_from(self.seq).map_err(|_| CodecError::invalid("negative ledger seq"))?,
            account_id: decode_account_id(&self.account_id)?,
            at: UnixMillis(self.at),
            kind: decode_ledger_kind(&self.kind)?,
            amount: self.amount,
            month: self.month.map(decode_month).transpose()?,
            memo: self.memo,
            reference: self.reference,
        })
    }
}

/// A `keyrings` row, to write or as read.
pub struct KeyringRow {
    /// `id`.
    pub id: String,
    /// `account_id`.
    pub account_id: String,
    /// `name`.
    pub name: String,
    /// `product`: the product code.
    pub product: String,
    /// `key_id`.
    pub key_id: String,
    /// `token_hash`: 32 bytes, or NULL.
    pub token_hash: Option<Vec<u8>>,
    /// `token_issued_at`.
    pub token_issued_at: Option<i64>,
    /// `created_at`.
    pub created_at: i64,
    /// `revision`.
    pub revision: i64,
}

impl fmt::Debug for KeyringRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringRow")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("has_token", &self.token_hash.is_some())
            .finish_non_exhaustive()
    }
}

impl KeyringRow {
    /// Encodes a keyring.
    pub fn encode(keyring: &KeyringRecord) -> Result<KeyringRow, CodecError> {
        Ok(KeyringRow {
            id: keyring.id.as_str().to_owned(),
            account_id: keyring.account_id.as_str().to_owned(),
            name: keyring.name.clone(),
            product: keyring.product.as_str().to_owned(),
            key_id: keyring.key_id.to_string(),
            token_hash: keyring.token_hash.map(|h| h.to_vec()),
            token_issued_at: keyring.token_issued_at.map(|t| t.0),
            created_at: keyring.created_at.0,
            revision: revision_to_sql(keyring.revision)?,
        })
    }

    /// Decodes the row.
    pub fn decode(self) -> Result<KeyringRecord, CodecError> {
        let token_hash = self
            .token_hash
            .map(|h| {
                <[u8; 32]>::try_from(h.as_slice())
                    .map_err(|_| CodecError::invalid("stored keyring token hash is not 32 bytes"))
            })
            .transpose()?;
        Ok(KeyringRecord {
            id: KeyringId::parse(&self.id)
                .map_err(|_| CodecError::invalid("stored keyring id is malformed"))?,
            account_id: decode_account_id(&self.account_id)?,
            name: self.name,
            product: ProductCode::parse(&self.product)
                .map_err(|_| CodecError::invalid("stored product code is malformed"))?,
            key_id: decode_key_id(&self.key_id)?,
            token_hash,
            token_issued_at: self.token_issued_at.map(UnixMillis),
            created_at: UnixMillis(self.created_at),
            revision: u64::try_from(self.revision)
                .map_err(|_| CodecError::invalid("stored keyring revision is negative"))?,
        })
    }
}

/// A `keyring_key_versions` row as read (written from the record's fields
/// directly: the numbers widen losslessly to `i64`).
pub struct KeyringVersionRow {
    /// `keyring_id`.
    pub keyring_id: String,
    /// `key_number`.
    pub key_number: i64,
    /// `version`.
    pub version: i64,
    /// `ciphertext`.
    pub ciphertext: Vec<u8>,
    /// `created_at`.
    pub created_at: i64,
}

impl fmt::Debug for KeyringVersionRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyringVersionRow")
            .field("keyring_id", &self.keyring_id)
            .field("key_number", &self.key_number)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl KeyringVersionRow {
    /// Decodes the row.
    pub fn decode(self) -> Result<KeyringKeyVersion, CodecError> {
        let number = |n: i64, what: &str| {
            u32::try_from(n)
                .map_err(|_| CodecError::invalid(format!("stored keyring {what} is out of range")))
        };
        Ok(KeyringKeyVersion {
            keyring_id: KeyringId::parse(&self.keyring_id)
                .map_err(|_| CodecError::invalid("stored keyring id is malformed"))?,
            key_number: number(self.key_number, "key number")?,
            version: number(self.version, "key version")?,
            ciphertext: self.ciphertext,
            created_at: UnixMillis(self.created_at),
        })
    }
}

/// Rejects key versions of a new keyring that name another keyring, or
/// list one (key number, version) twice.
pub fn check_keyring_versions(
    keyring: &KeyringRecord,
    versions: &[KeyringKeyVersion],
) -> Result<(), CodecError> {
    if versions.iter().any(|v| v.keyring_id != keyring.id) {
        return Err(CodecError::invalid(
            "a key version of a new keyring names another keyring",
        ));
    }
    let mut seen: Vec<(u32, u32)> = versions.iter().map(|v| (v.key_number, v.version)).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(CodecError::invalid(
            "a new keyring lists a key version twice",
        ));
    }
    Ok(())
}

/// An `iam_entities` row: the record's address (account, kind, stored
/// name) and its JSON ([`IamEntity::to_json`]). The address columns are
/// derived from the record, so they can never disagree with it when
/// written; decoding checks that they still do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamRow {
    /// `account_id`.
    pub account_id: String,
    /// `kind` ([`crate::iam::IamKind::as_str`]).
    pub kind: String,
    /// `name` ([`IamEntity::name`]).
    pub name: String,
    /// `body`: the record's JSON.
    pub body: String,
}

impl IamRow {
    /// The row of `entity`.
    pub fn encode(entity: &IamEntity) -> IamRow {
        IamRow {
            account_id: entity.account_id().as_str().to_owned(),
            kind: entity.kind().as_str().to_owned(),
            name: entity.name(),
            body: entity.to_json(),
        }
    }

    /// Decodes the row, refusing a body whose address is not the row's.
    pub fn decode(self) -> Result<IamEntity, CodecError> {
        let entity = IamEntity::from_json(&self.body)?;
        if entity.account_id().as_str() != self.account_id
            || entity.kind().as_str() != self.kind
            || entity.name() != self.name
        {
            return Err(CodecError::invalid(
                "a stored IAM record does not match its row's account, kind or name",
            ));
        }
        Ok(entity)
    }
}

/// The names an [`crate::store::IamQuery`] selects, as one key range for
/// an index scan: `name >= lower` (or `name > lower` when not
/// `lower_inclusive`) and, with an `upper`, `name < upper`. Byte order, as
/// [`prefix_upper_bound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRange {
    /// The lower end.
    pub lower: String,
    /// Whether `lower` itself is in the range.
    pub lower_inclusive: bool,
    /// The exclusive upper end, if any.
    pub upper: Option<String>,
}

impl NameRange {
    /// Names starting with `prefix` and sorting after `after`.
    pub fn new(prefix: &str, after: Option<&str>) -> NameRange {
        let (lower, lower_inclusive) = match after {
            Some(after) if after.as_bytes() >= prefix.as_bytes() => (after.to_owned(), false),
            _ => (prefix.to_owned(), true),
        };
        NameRange {
            lower,
            lower_inclusive,
            upper: prefix_upper_bound(prefix),
        }
    }

    /// The SQL condition on `column`, its parameters numbered from `first`
    /// (`$n` for PostgreSQL, `?n` for SQLite: `sigil`): the lower end's,
    /// then the upper end's if there is one.
    pub fn sql(&self, column: &str, sigil: char, first: usize) -> String {
        let op = if self.lower_inclusive { ">=" } else { ">" };
        match self.upper {
            Some(_) => format!(
                "{column} {op} {sigil}{first} AND {column} < {sigil}{}",
                first + 1
            ),
            None => format!("{column} {op} {sigil}{first}"),
        }
    }
}

/// The least string greater than every string that starts with `prefix`,
/// in byte order (SQLite's `BINARY`, PostgreSQL's `COLLATE "C"`; UTF-8
/// byte order is code point order): the exclusive upper bound of a prefix
/// range scan, `name >= prefix AND name < bound`. No `LIKE`, so `%` and `_`
/// in names are plain characters. `None` when there is no bound: the prefix
/// is empty or all `char::MAX`, and every string from `prefix` on matches.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next scalar value, skipping the surrogate gap.
        let next = match u32::from(last) {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyRecord {
        KeyRecord {
            key_id: KeyId::from_bytes([7; 16]),
            account_id: AccountId::parse("111122223333").unwrap(),
            revision: 2,
            description: "d".into(),
            state: KeyState::Enabled,
            origin: Origin::External,
            key_manager: KeyManager::Customer,
            created_at: UnixMillis(5),
            deletion_date: None,
            pending_window_days: None,
            tags: Vec::new(),
            policy: None,
            versions: Vec::new(),
            rotation: Some(AutoRotation {
                period_days: 90,
                next_rotation: UnixMillis(9),
            }),
            on_demand_rotations: 0,
            deletion_protection: false,
            import: Some(ImportState {
                fingerprint: vec![0xab, 0x01],
                expiration: Some(MaterialExpiration::ValidTo(UnixMillis(11))),
            }),
            default_for: None,
            kind: crate::key_spec::KeyKind::default(),
            region: None,
            multi_region: None,
        }
    }

    /// The `meta` JSON is the on-disk format of every SQL backend: pinned.
    #[test]
    fn key_meta_is_pinned_and_round_trips() {
        let k = key();
        let cols = KeyColumns::encode(&k).unwrap();
        assert_eq!(
            cols.meta,
            r#"{"description":"d","origin":"External","key_manager":"Customer","created_at":5,"pending_window_days":null,"tags":[],"policy":null,"rotation_period_days":90,"on_demand_rotations":0,"deletion_protection":false,"import":{"fingerprint":"ab01","expiration":"KEY_MATERIAL_EXPIRES"}}"#
        );
        let row = KeyRow {
            key_id: cols.key_id,
            account_id: cols.account_id,
            revision: cols.revision,
            state: cols.state.to_owned(),
            deletion_date: cols.deletion_date,
            meta: cols.meta,
            rotation_date: cols.rotation_date,
            material_valid_to: cols.material_valid_to,
        };
        assert_eq!(row.decode(Vec::new()).unwrap(), k);
    }

    #[test]
    fn bad_values_name_the_problem_not_the_value() {
        let e = decode_account_id("secret-looking-value").unwrap_err();
        assert!(!e.to_string().contains("secret-looking-value"));
        assert!(matches!(decode_month(-1), Err(CodecError::Invalid(_))));
        assert!(revision_to_sql(u64::MAX).is_err());
    }

    #[test]
    fn keyring_rows_round_trip_and_refuse_bad_values() {
        let keyring = KeyringRecord {
            id: KeyringId::from_random([3; 16]),
            account_id: AccountId::parse("111122223333").unwrap(),
            name: "n".into(),
            product: ProductCode::parse("mysql").unwrap(),
            key_id: KeyId::from_bytes([7; 16]),
            token_hash: Some([9; 32]),
            token_issued_at: Some(UnixMillis(4)),
            created_at: UnixMillis(3),
            revision: 2,
        };
        let row = KeyringRow::encode(&keyring).unwrap();
        assert!(!format!("{row:?}").contains("9, 9"));
        assert_eq!(row.decode().unwrap(), keyring);
        let mut short = KeyringRow::encode(&keyring).unwrap();
        short.token_hash = Some(vec![9; 31]);
        assert!(matches!(short.decode(), Err(CodecError::Invalid(_))));
        let version = |key_number: i64| KeyringVersionRow {
            keyring_id: keyring.id.as_str().to_owned(),
            key_number,
            version: i64::from(u32::MAX),
            ciphertext: vec![1],
            created_at: 0,
        };
        assert_eq!(version(1).decode().unwrap().version, u32::MAX);
        assert!(version(-1).decode().is_err());
        assert!(version(i64::from(u32::MAX) + 1).decode().is_err());
        let mut foreign = version(1).decode().unwrap();
        foreign.keyring_id = KeyringId::from_random([4; 16]);
        assert!(check_keyring_versions(&keyring, &[foreign]).is_err());
        let twice = version(1).decode().unwrap();
        assert!(check_keyring_versions(&keyring, &[twice.clone(), twice]).is_err());
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefixed_strings() {
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("bob/").as_deref(), Some("bob0"));
        assert_eq!(prefix_upper_bound("a%").as_deref(), Some("a&"));
        assert_eq!(
            prefix_upper_bound("x\u{D7FF}").as_deref(),
            Some("x\u{E000}")
        );
        assert_eq!(prefix_upper_bound("y\u{10FFFF}").as_deref(), Some("z"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        // Byte order of the UTF-8 encodings, as the databases compare.
        let prefix = "bob/";
        let bound = prefix_upper_bound(prefix).unwrap();
        for name in ["bob/", "bob/p", "bob/\u{10FFFF}", "bob/zz"] {
            assert!(name.as_bytes() >= prefix.as_bytes() && name.as_bytes() < bound.as_bytes());
        }
        for name in ["bob", "bobby/p", "bob0", "bob.", "bo"] {
            assert!(
                !(name.as_bytes() >= prefix.as_bytes() && name.as_bytes() < bound.as_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn name_ranges_start_at_the_later_of_prefix_and_after() {
        let r = NameRange::new("bob/", None);
        assert_eq!(
            (r.lower.as_str(), r.lower_inclusive, r.upper.as_deref()),
            ("bob/", true, Some("bob0"))
        );
        assert_eq!(r.sql("name", '$', 3), "name >= $3 AND name < $4");
        let r = NameRange::new("bob/", Some("bob/x"));
        assert_eq!((r.lower.as_str(), r.lower_inclusive), ("bob/x", false));
        let r = NameRange::new("bob/", Some("alice"));
        assert_eq!((r.lower.as_str(), r.lower_inclusive), ("bob/", true));
        // `after` equal to the prefix excludes the prefix itself.
        let r = NameRange::new("bob", Some("bob"));
        assert_eq!((r.lower.as_str(), r.lower_inclusive), ("bob", false));
        let r = NameRange::new("", Some("m"));
        assert_eq!(r.upper, None);
        assert_eq!(r.sql("name", '?', 3), "name > ?3");
    }

    #[test]
    fn iam_rows_round_trip_and_refuse_a_body_at_another_address() {
        let user = IamEntity::User(crate::iam::IamUser {
            account_id: AccountId::parse("111122223333").unwrap(),
            name: "Bob".into(),
            path: "/".into(),
            user_id: "AIDAEXAMPLE".into(),
            created_at: UnixMillis(1),
            tags: Vec::new(),
        });
        let row = IamRow::encode(&user);
        assert_eq!(
            (
                row.account_id.as_str(),
                row.kind.as_str(),
                row.name.as_str()
            ),
            ("111122223333", "user", "bob")
        );
        assert_eq!(row.clone().decode().unwrap(), user);
        let moved = IamRow {
            name: "alice".into(),
            ..row.clone()
        };
        assert!(matches!(moved.decode(), Err(CodecError::Invalid(_))));
        let other_kind = IamRow {
            kind: "role".into(),
            ..row.clone()
        };
        assert!(matches!(other_kind.decode(), Err(CodecError::Invalid(_))));
        let garbled = IamRow {
            body: "{".into(),
            ..row
        };
        assert!(matches!(garbled.decode(), Err(CodecError::Json(_))));
    }
}

/// A `custom_key_stores` row as plain column values, in both directions
/// (the record has no JSON part: every field is a column).
#[derive(Clone, PartialEq, Eq)]
pub struct CustomKeyStoreRow {
    /// `id`.
    pub id: String,
    /// `account_id`.
    pub account_id: String,
    /// `name`.
    pub name: String,
    /// `cluster_id`.
    pub cluster_id: String,
    /// `sealed_pin`: sealed by the root key, never the PIN itself.
    pub sealed_pin: Vec<u8>,
    /// `trust_anchor`.
    pub trust_anchor: String,
    /// `state` ([`crate::model::ConnectionState::as_str`]).
    pub state: String,
    /// `error_code` ([`crate::model::ConnectionErrorCode::as_str`]).
    pub error_code: Option<String>,
    /// `created_at`.
    pub created_at: i64,
    /// `revision`.
    pub revision: i64,
}

impl CustomKeyStoreRow {
    /// The column list, in the order of the fields.
    pub const COLUMNS: &'static str = "id, account_id, name, cluster_id, sealed_pin, \
         trust_anchor, state, error_code, created_at, revision";

    /// The row of `store`.
    pub fn encode(store: &crate::model::CustomKeyStoreRecord) -> Result<Self, CodecError> {
        Ok(CustomKeyStoreRow {
            id: store.id.clone(),
            account_id: store.account_id.as_str().to_owned(),
            name: store.name.clone(),
            cluster_id: store.cluster_id.clone(),
            sealed_pin: store.sealed_pin.clone(),
            trust_anchor: store.trust_anchor.clone(),
            state: store.state.as_str().to_owned(),
            error_code: store.error_code.map(|c| c.as_str().to_owned()),
            created_at: store.created_at.0,
            revision: revision_to_sql(store.revision)?,
        })
    }

    /// Decodes the row.
    pub fn decode(self) -> Result<crate::model::CustomKeyStoreRecord, CodecError> {
        use crate::model::{ConnectionErrorCode, ConnectionState};
        Ok(crate::model::CustomKeyStoreRecord {
            account_id: decode_account_id(&self.account_id)?,
            state: ConnectionState::parse(&self.state)
                .ok_or_else(|| CodecError::invalid("stored connection state is unknown"))?,
            error_code: self
                .error_code
                .map(|c| {
                    ConnectionErrorCode::parse(&c).ok_or_else(|| {
                        CodecError::invalid("stored connection error code is unknown")
                    })
                })
                .transpose()?,
            revision: u64::try_from(self.revision)
                .map_err(|_| CodecError::invalid("stored custom key store revision is negative"))?,
            id: self.id,
            name: self.name,
            cluster_id: self.cluster_id,
            sealed_pin: self.sealed_pin,
            trust_anchor: self.trust_anchor,
            created_at: UnixMillis(self.created_at),
        })
    }
}
