//! Row types and their conversions to and from the domain records. Private
//! to the crate: the domain never sees how a record is laid out on disk.

use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, AliasName, KeyId, ProductCode};
use keywarden_core::model::{
    Account, AliasRecord, AutoRotation, Credential, CredentialOwner, CredentialStatus,
    CryptoOperation, GrantConstraints, GrantOperation, GrantRecord, ImportState, KeyManager,
    KeyRecord, KeyState, KeyUsage, KeyVersion, MaterialExpiration, Origin, Product, ProductClass,
    ProductStatus, RotationType, Tag,
};
use rusqlite::Row;
use serde::{Deserialize, Serialize};

use crate::error::{Fail, Invalid};

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
}

/// The columns of `keys` a key record is written to.
pub(crate) struct KeyColumns {
    pub(crate) key_id: String,
    pub(crate) account_id: String,
    pub(crate) revision: i64,
    pub(crate) state: &'static str,
    pub(crate) deletion_date: Option<i64>,
    /// The next automatic rotation date; NULL while rotation is off.
    pub(crate) rotation_date: Option<i64>,
    /// When imported material expires; NULL unless it is present and expires.
    pub(crate) material_valid_to: Option<i64>,
    pub(crate) meta: String,
}

impl KeyColumns {
    /// Encodes a key record's own row (its versions go to `key_versions`).
    pub(crate) fn encode(key: &KeyRecord) -> Result<KeyColumns, Fail> {
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
pub(crate) struct KeyRow {
    key_id: String,
    account_id: String,
    revision: i64,
    state: String,
    deletion_date: Option<i64>,
    meta: String,
    rotation_date: Option<i64>,
    material_valid_to: Option<i64>,
}

/// The column list [`KeyRow::from_row`] expects.
pub(crate) const KEY_COLUMNS: &str =
    "key_id, account_id, revision, state, deletion_date, meta, rotation_date, material_valid_to";

impl KeyRow {
    /// Reads the columns named by [`KEY_COLUMNS`], in that order.
    pub(crate) fn from_row(row: &Row<'_>) -> rusqlite::Result<KeyRow> {
        Ok(KeyRow {
            key_id: row.get(0)?,
            account_id: row.get(1)?,
            revision: row.get(2)?,
            state: row.get(3)?,
            deletion_date: row.get(4)?,
            meta: row.get(5)?,
            rotation_date: row.get(6)?,
            material_valid_to: row.get(7)?,
        })
    }

    /// The stored key id, to look its versions up by.
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Decodes the row into a record carrying `versions`.
    pub(crate) fn decode(self, versions: Vec<KeyVersion>) -> Result<KeyRecord, Fail> {
        let meta: MetaIn = serde_json::from_str(&self.meta)?;
        let rotation = match (self.rotation_date, meta.rotation_period_days) {
            (Some(next), Some(period_days)) => Some(AutoRotation {
                period_days,
                next_rotation: UnixMillis(next),
            }),
            (None, None) => None,
            _ => {
                return Err(Invalid::new(
                    "stored key has a rotation date without a period, or the reverse",
                )
                .into())
            }
        };
        let import = match meta.import {
            None => None,
            Some(i) => Some(ImportState {
                fingerprint: hex::decode(&i.fingerprint)
                    .map_err(|_| Invalid::new("stored import fingerprint is not hex"))?,
                expiration: match (i.expiration.as_deref(), self.material_valid_to) {
                    (None, None) => None,
                    (Some("KEY_MATERIAL_DOES_NOT_EXPIRE"), None) => {
                        Some(MaterialExpiration::DoesNotExpire)
                    }
                    (Some("KEY_MATERIAL_EXPIRES"), Some(t)) => {
                        Some(MaterialExpiration::ValidTo(UnixMillis(t)))
                    }
                    _ => {
                        return Err(Invalid::new(
                            "stored key's material expiration model and valid-to disagree",
                        )
                        .into())
                    }
                },
            }),
        };
        if import.is_none() && self.material_valid_to.is_some() {
            return Err(Invalid::new("stored key has a material valid-to but no import").into());
        }
        Ok(KeyRecord {
            key_id: decode_key_id(&self.key_id)?,
            account_id: decode_account_id(&self.account_id)?,
            revision: u64::try_from(self.revision)
                .map_err(|_| Invalid::new("stored key revision is negative"))?,
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
        })
    }
}

/// The column list [`version_from_row`] expects.
pub(crate) const VERSION_COLUMNS: &str = "version, protector, material, created_at, rotation_type";

/// Reads one `key_versions` row; the version number is checked by
/// [`decode_version`].
pub(crate) fn version_from_row(row: &Row<'_>) -> rusqlite::Result<(i64, KeyVersionRest)> {
    Ok((
        row.get(0)?,
        KeyVersionRest {
            protector: row.get(1)?,
            material: row.get(2)?,
            created_at: row.get(3)?,
            rotation_type: row.get(4)?,
        },
    ))
}

/// A version row apart from its number.
pub(crate) struct KeyVersionRest {
    protector: String,
    material: Vec<u8>,
    created_at: i64,
    rotation_type: Option<String>,
}

/// Decodes a version row read by [`version_from_row`].
pub(crate) fn decode_version((version, rest): (i64, KeyVersionRest)) -> Result<KeyVersion, Fail> {
    Ok(KeyVersion {
        version: u32::try_from(version)
            .map_err(|_| Invalid::new("stored key version number is out of range"))?,
        protector: rest.protector,
        material: rest.material,
        created_at: UnixMillis(rest.created_at),
        rotation: rest
            .rotation_type
            .as_deref()
            .map(decode_rotation_type)
            .transpose()?,
    })
}

/// The column list [`alias_from_row`] expects.
pub(crate) const ALIAS_COLUMNS: &str = "account_id, name, key_id, created_at, updated_at, revision";

/// An `aliases` row as read, not yet decoded.
pub(crate) struct AliasRow {
    account_id: String,
    name: String,
    key_id: String,
    created_at: i64,
    updated_at: i64,
    revision: i64,
}

/// Reads the columns named by [`ALIAS_COLUMNS`].
pub(crate) fn alias_from_row(row: &Row<'_>) -> rusqlite::Result<AliasRow> {
    Ok(AliasRow {
        account_id: row.get(0)?,
        name: row.get(1)?,
        key_id: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        revision: row.get(5)?,
    })
}

impl AliasRow {
    /// Decodes the row.
    pub(crate) fn decode(self) -> Result<AliasRecord, Fail> {
        Ok(AliasRecord {
            account_id: decode_account_id(&self.account_id)?,
            name: AliasName::parse_lookup(&self.name)
                .map_err(|_| Invalid::new("stored alias name is malformed"))?,
            target: decode_key_id(&self.key_id)?,
            created_at: UnixMillis(self.created_at),
            updated_at: UnixMillis(self.updated_at),
            revision: u64::try_from(self.revision)
                .map_err(|_| Invalid::new("stored alias revision is negative"))?,
        })
    }
}

/// The column list [`account_from_row`] expects.
pub(crate) const ACCOUNT_COLUMNS: &str = "account_id, name, created_at";

/// Reads the columns named by [`ACCOUNT_COLUMNS`].
pub(crate) fn account_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

/// Decodes an account row.
pub(crate) fn decode_account(
    (id, name, created_at): (String, String, i64),
) -> Result<Account, Fail> {
    Ok(Account {
        account_id: decode_account_id(&id)?,
        name,
        created_at: UnixMillis(created_at),
    })
}

/// The column list [`credential_from_row`] expects.
pub(crate) const CREDENTIAL_COLUMNS: &str =
    "access_key_id, account_id, product_code, sealed_secret, status, created_at";

/// A `credentials` row as read, not yet decoded.
pub(crate) struct CredentialRow {
    access_key_id: String,
    account_id: Option<String>,
    product_code: Option<String>,
    sealed_secret: Vec<u8>,
    status: String,
    created_at: i64,
}

/// Reads the columns named by [`CREDENTIAL_COLUMNS`].
pub(crate) fn credential_from_row(row: &Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        access_key_id: row.get(0)?,
        account_id: row.get(1)?,
        product_code: row.get(2)?,
        sealed_secret: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get(5)?,
    })
}

impl CredentialRow {
    /// Decodes the row.
    pub(crate) fn decode(self) -> Result<Credential, Fail> {
        let owner = match (self.account_id, self.product_code) {
            (Some(account), None) => CredentialOwner::Account(decode_account_id(&account)?),
            (None, Some(code)) => CredentialOwner::Product(
                ProductCode::parse(&code)
                    .map_err(|_| Invalid::new("stored product code is malformed"))?,
            ),
            _ => return Err(Invalid::new("stored credential has no single owner").into()),
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

/// How a credential status is stored.
pub(crate) fn status_to_sql(status: CredentialStatus) -> &'static str {
    match status {
        CredentialStatus::Active => "Active",
        CredentialStatus::Revoked => "Revoked",
    }
}

fn decode_status(s: &str) -> Result<CredentialStatus, Invalid> {
    match s {
        "Active" => Ok(CredentialStatus::Active),
        "Revoked" => Ok(CredentialStatus::Revoked),
        _ => Err(Invalid::new("stored credential status is unknown")),
    }
}

/// How a version's rotation type is stored (NULL: the initial material).
pub(crate) fn rotation_type_to_sql(rotation: Option<RotationType>) -> Option<&'static str> {
    rotation.map(RotationType::as_str)
}

fn decode_rotation_type(s: &str) -> Result<RotationType, Invalid> {
    [RotationType::Automatic, RotationType::OnDemand]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or_else(|| Invalid::new("stored rotation type is unknown"))
}

fn decode_state(s: &str) -> Result<KeyState, Invalid> {
    [
        KeyState::Enabled,
        KeyState::Disabled,
        KeyState::PendingDeletion,
        KeyState::PendingImport,
    ]
    .into_iter()
    .find(|state| state.as_str() == s)
    .ok_or_else(|| Invalid::new("stored key state is unknown"))
}

fn decode_key_id(s: &str) -> Result<KeyId, Invalid> {
    KeyId::parse(s).ok_or_else(|| Invalid::new("stored key id is malformed"))
}

fn decode_account_id(s: &str) -> Result<AccountId, Invalid> {
    AccountId::parse(s).map_err(|_| Invalid::new("stored account id is malformed"))
}

/// Revisions are `u64` in the domain and signed 64-bit integers in SQLite.
pub(crate) fn revision_to_sql(revision: u64) -> Result<i64, Invalid> {
    i64::try_from(revision).map_err(|_| Invalid::new("revision exceeds the storable range"))
}

/// Rejects a record listing the same version number twice; stored as is, the
/// duplicate would surface as a misleading primary-key conflict.
pub(crate) fn check_versions(key: &KeyRecord) -> Result<(), Invalid> {
    let mut seen: Vec<u32> = key.versions.iter().map(|v| v.version).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Err(Invalid::new("key record lists a version number twice"));
    }
    Ok(())
}

/// `key_usage` columns, in the order [`usage_from_row`] reads them.
pub(crate) const USAGE_COLUMNS: &str =
    "account_id, key_id, used_at, operation, principal, request_id";

/// A `key_usage` row before decoding.
pub(crate) struct UsageRow {
    account_id: String,
    key_id: String,
    used_at: i64,
    operation: String,
    principal: String,
    request_id: String,
}

pub(crate) fn usage_from_row(row: &Row<'_>) -> rusqlite::Result<UsageRow> {
    Ok(UsageRow {
        account_id: row.get(0)?,
        key_id: row.get(1)?,
        used_at: row.get(2)?,
        operation: row.get(3)?,
        principal: row.get(4)?,
        request_id: row.get(5)?,
    })
}

impl UsageRow {
    pub(crate) fn decode(self) -> Result<KeyUsage, Fail> {
        let operation = CryptoOperation::parse(&self.operation).ok_or_else(|| {
            Invalid::new(format!(
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

/// The column list [`product_from_row`] expects.
pub(crate) const PRODUCT_COLUMNS: &str = "code, class, status, created_at";

/// Reads and decodes the columns named by [`PRODUCT_COLUMNS`].
pub(crate) fn product_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// Decodes a `products` row.
pub(crate) fn decode_product(
    (code, class, status, created_at): (String, String, String, i64),
) -> Result<Product, Fail> {
    Ok(Product {
        code: ProductCode::parse(&code)
            .map_err(|_| Invalid::new("stored product code is malformed"))?,
        class: ProductClass::parse(&class)
            .ok_or_else(|| Invalid::new("stored product class is unknown"))?,
        status: ProductStatus::parse(&status)
            .ok_or_else(|| Invalid::new("stored product status is unknown"))?,
        created_at: UnixMillis(created_at),
    })
}

/// The `grants.meta` JSON column: what a grant allows.
#[derive(Serialize, Deserialize)]
struct GrantMeta {
    operations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subset: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    equals: Option<std::collections::BTreeMap<String, String>>,
}

/// The columns of `grants`, in the order [`grant_from_row`] reads them.
pub(crate) const GRANT_COLUMNS: &str =
    "grant_id, account_id, key_id, grantee, retiring, name, created_at, meta";

/// A `grants` row, to write or as read.
pub(crate) struct GrantRow {
    pub(crate) grant_id: String,
    pub(crate) account_id: String,
    pub(crate) key_id: String,
    pub(crate) grantee: String,
    pub(crate) retiring: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) meta: String,
}

/// Reads the columns named by [`GRANT_COLUMNS`].
pub(crate) fn grant_from_row(row: &Row<'_>) -> rusqlite::Result<GrantRow> {
    Ok(GrantRow {
        grant_id: row.get(0)?,
        account_id: row.get(1)?,
        key_id: row.get(2)?,
        grantee: row.get(3)?,
        retiring: row.get(4)?,
        name: row.get(5)?,
        created_at: row.get(6)?,
        meta: row.get(7)?,
    })
}

impl GrantRow {
    /// Encodes a grant.
    pub(crate) fn encode(grant: &GrantRecord) -> Result<GrantRow, Fail> {
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
    pub(crate) fn decode(self) -> Result<GrantRecord, Fail> {
        let meta: GrantMeta = serde_json::from_str(&self.meta)?;
        let operations = meta
            .operations
            .iter()
            .map(|op| {
                GrantOperation::parse(op)
                    .ok_or_else(|| Invalid::new("stored grant operation is unknown"))
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
