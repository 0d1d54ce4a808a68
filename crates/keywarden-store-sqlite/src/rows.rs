//! Reading rows: the rusqlite adapters from a `Row` to the plain-value row
//! types of `keywarden_core::store_codec`, which does the encoding and
//! decoding shared with the other SQL backends. Private to the crate: the
//! domain never sees how a record is laid out on disk.

use keywarden_core::model::{Account, KeyVersion, Product};
use keywarden_core::store_codec::{self, AliasRow, CredentialRow, GrantRow, KeyRow, UsageRow};
use rusqlite::Row;

use crate::error::Fail;

pub(crate) use keywarden_core::store_codec::{
    check_versions, revision_to_sql, rotation_type_to_sql, status_to_sql, KeyColumns,
};

/// The column list [`key_from_row`] expects.
pub(crate) const KEY_COLUMNS: &str =
    "key_id, account_id, revision, state, deletion_date, meta, rotation_date, material_valid_to";

/// Reads the columns named by [`KEY_COLUMNS`], in that order.
pub(crate) fn key_from_row(row: &Row<'_>) -> rusqlite::Result<KeyRow> {
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

/// The column list [`version_from_row`] expects.
pub(crate) const VERSION_COLUMNS: &str = "version, protector, material, created_at, rotation_type";

/// Reads one `key_versions` row; decoded by [`decode_version`].
pub(crate) fn version_from_row(row: &Row<'_>) -> rusqlite::Result<store_codec::VersionRow> {
    Ok(store_codec::VersionRow {
        version: row.get(0)?,
        protector: row.get(1)?,
        material: row.get(2)?,
        created_at: row.get(3)?,
        rotation_type: row.get(4)?,
    })
}

/// Decodes a version row read by [`version_from_row`].
pub(crate) fn decode_version(row: store_codec::VersionRow) -> Result<KeyVersion, Fail> {
    Ok(row.decode()?)
}

/// The column list [`alias_from_row`] expects.
pub(crate) const ALIAS_COLUMNS: &str =
    "account_id, name, key_id, created_at, updated_at, revision, region";

/// Reads the columns named by [`ALIAS_COLUMNS`].
pub(crate) fn alias_from_row(row: &Row<'_>) -> rusqlite::Result<AliasRow> {
    Ok(AliasRow {
        account_id: row.get(0)?,
        name: row.get(1)?,
        key_id: row.get(2)?,
        created_at: row.get(3)?,
        updated_at: row.get(4)?,
        revision: row.get(5)?,
        region: row.get(6)?,
    })
}

/// The column list [`account_from_row`] expects.
pub(crate) const ACCOUNT_COLUMNS: &str = "account_id, name, created_at";

/// Reads the columns named by [`ACCOUNT_COLUMNS`].
pub(crate) fn account_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

/// Decodes an account row.
pub(crate) fn decode_account(row: (String, String, i64)) -> Result<Account, Fail> {
    Ok(store_codec::decode_account(row)?)
}

/// The column list [`credential_from_row`] expects.
pub(crate) const CREDENTIAL_COLUMNS: &str =
    "access_key_id, account_id, product_code, sealed_secret, status, created_at, user_name";

/// Reads the columns named by [`CREDENTIAL_COLUMNS`].
pub(crate) fn credential_from_row(row: &Row<'_>) -> rusqlite::Result<CredentialRow> {
    Ok(CredentialRow {
        access_key_id: row.get(0)?,
        account_id: row.get(1)?,
        product_code: row.get(2)?,
        user_name: row.get(6)?,
        sealed_secret: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get(5)?,
    })
}

/// `key_usage` columns, in the order [`usage_from_row`] reads them.
pub(crate) const USAGE_COLUMNS: &str =
    "account_id, key_id, used_at, operation, principal, request_id";

/// Reads the columns named by [`USAGE_COLUMNS`].
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

/// The column list [`product_from_row`] expects.
pub(crate) const PRODUCT_COLUMNS: &str = "code, class, status, created_at";

/// Reads the columns named by [`PRODUCT_COLUMNS`].
pub(crate) fn product_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// Decodes a `products` row.
pub(crate) fn decode_product(row: (String, String, String, i64)) -> Result<Product, Fail> {
    Ok(store_codec::decode_product(row)?)
}

/// The columns of `grants`, in the order [`grant_from_row`] reads them.
pub(crate) const GRANT_COLUMNS: &str =
    "grant_id, account_id, key_id, grantee, retiring, name, created_at, meta";

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
