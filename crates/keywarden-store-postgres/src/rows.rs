//! Reading rows: tokio-postgres `Row` adapters onto the plain-value row types
//! of `keywarden_core::store_codec`, which encodes and decodes exactly as
//! the SQLite store does.

use keywarden_core::store_codec::{
    AliasRow, CredentialRow, GrantRow, KeyRow, LedgerRow, UsageRow, VersionRow,
};
use tokio_postgres::Row;

/// The column list [`key_from_row`] expects.
pub(crate) const KEY_COLUMNS: &str =
    "key_id, account_id, revision, state, deletion_date, meta, rotation_date, material_valid_to";

/// Reads the columns named by [`KEY_COLUMNS`], in that order.
pub(crate) fn key_from_row(row: &Row) -> Result<KeyRow, tokio_postgres::Error> {
    Ok(KeyRow {
        key_id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        revision: row.try_get(2)?,
        state: row.try_get(3)?,
        deletion_date: row.try_get(4)?,
        meta: row.try_get(5)?,
        rotation_date: row.try_get(6)?,
        material_valid_to: row.try_get(7)?,
    })
}

/// The column list [`version_from_row`] expects, after the key id.
pub(crate) const VERSION_COLUMNS: &str =
    "key_id, version, protector, material, created_at, rotation_type";

/// Reads the columns named by [`VERSION_COLUMNS`]: the key id and the row.
pub(crate) fn version_from_row(row: &Row) -> Result<(String, VersionRow), tokio_postgres::Error> {
    Ok((
        row.try_get(0)?,
        VersionRow {
            version: row.try_get(1)?,
            protector: row.try_get(2)?,
            material: row.try_get(3)?,
            created_at: row.try_get(4)?,
            rotation_type: row.try_get(5)?,
        },
    ))
}

/// The column list [`alias_from_row`] expects.
pub(crate) const ALIAS_COLUMNS: &str =
    "account_id, name, key_id, created_at, updated_at, revision, region";

/// Reads the columns named by [`ALIAS_COLUMNS`].
pub(crate) fn alias_from_row(row: &Row) -> Result<AliasRow, tokio_postgres::Error> {
    Ok(AliasRow {
        account_id: row.try_get(0)?,
        name: row.try_get(1)?,
        key_id: row.try_get(2)?,
        created_at: row.try_get(3)?,
        updated_at: row.try_get(4)?,
        revision: row.try_get(5)?,
        region: row.try_get(6)?,
    })
}

/// The column list [`account_from_row`] expects.
pub(crate) const ACCOUNT_COLUMNS: &str = "account_id, name, created_at";

/// Reads the columns named by [`ACCOUNT_COLUMNS`].
pub(crate) fn account_from_row(row: &Row) -> Result<(String, String, i64), tokio_postgres::Error> {
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// The column list [`credential_from_row`] expects.
pub(crate) const CREDENTIAL_COLUMNS: &str =
    "access_key_id, account_id, product_code, sealed_secret, status, created_at, user_name";

/// Reads the columns named by [`CREDENTIAL_COLUMNS`].
pub(crate) fn credential_from_row(row: &Row) -> Result<CredentialRow, tokio_postgres::Error> {
    Ok(CredentialRow {
        access_key_id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        product_code: row.try_get(2)?,
        user_name: row.try_get(6)?,
        sealed_secret: row.try_get(3)?,
        status: row.try_get(4)?,
        created_at: row.try_get(5)?,
    })
}

/// The column list [`usage_from_row`] expects.
pub(crate) const USAGE_COLUMNS: &str =
    "account_id, key_id, used_at, operation, principal, request_id";

/// Reads the columns named by [`USAGE_COLUMNS`].
pub(crate) fn usage_from_row(row: &Row) -> Result<UsageRow, tokio_postgres::Error> {
    Ok(UsageRow {
        account_id: row.try_get(0)?,
        key_id: row.try_get(1)?,
        used_at: row.try_get(2)?,
        operation: row.try_get(3)?,
        principal: row.try_get(4)?,
        request_id: row.try_get(5)?,
    })
}

/// The column list [`product_from_row`] expects.
pub(crate) const PRODUCT_COLUMNS: &str = "code, class, status, created_at";

/// Reads the columns named by [`PRODUCT_COLUMNS`].
pub(crate) fn product_from_row(
    row: &Row,
) -> Result<(String, String, String, i64), tokio_postgres::Error> {
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    ))
}

/// The column list [`grant_from_row`] expects.
pub(crate) const GRANT_COLUMNS: &str =
    "grant_id, account_id, key_id, grantee, retiring, name, created_at, meta";

/// Reads the columns named by [`GRANT_COLUMNS`].
pub(crate) fn grant_from_row(row: &Row) -> Result<GrantRow, tokio_postgres::Error> {
    Ok(GrantRow {
        grant_id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        key_id: row.try_get(2)?,
        grantee: row.try_get(3)?,
        retiring: row.try_get(4)?,
        name: row.try_get(5)?,
        created_at: row.try_get(6)?,
        meta: row.try_get(7)?,
    })
}

/// The column list [`ledger_from_row`] expects.
pub(crate) const LEDGER_COLUMNS: &str = "seq, account_id, at, kind, amount, month, memo, reference";

/// Reads the columns named by [`LEDGER_COLUMNS`].
pub(crate) fn ledger_from_row(row: &Row) -> Result<LedgerRow, tokio_postgres::Error> {
    Ok(LedgerRow {
        seq: row.try_get(0)?,
        account_id: row.try_get(1)?,
        at: row.try_get(2)?,
        kind: row.try_get(3)?,
        amount: row.try_get(4)?,
        month: row.try_get(5)?,
        memo: row.try_get(6)?,
        reference: row.try_get(7)?,
    })
}
