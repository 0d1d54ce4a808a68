//! Database keyrings and their key versions (`KeyringStore`), migration 3.
//!
//! Writes are [`Mode::Quiet`]: the keyring tables have no change triggers
//! and keyring writes do not move the change stamp. Rotations racing on
//! several nodes are serialized by the keyring's row lock (`FOR UPDATE`)
//! in `add_keyring_key_version`: the later one waits, then reads the
//! winner's version and answers `Conflict`.

use async_trait::async_trait;
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, KeyringId};
use keywarden_core::model::{KeyringKeyVersion, KeyringRecord};
use keywarden_core::store::{KeyringStore, StoreError};
use keywarden_core::store_codec::{check_keyring_versions, KeyringRow, KeyringVersionRow};
use tokio_postgres::Row;

use crate::error::Fail;
use crate::{transact, Mode, PgStore, Tx};

/// The column list [`keyring_from_row`] expects.
pub(crate) const KEYRING_COLUMNS: &str =
    "id, account_id, name, product, key_id, token_hash, token_issued_at, created_at, revision";

/// Reads the columns named by [`KEYRING_COLUMNS`].
pub(crate) fn keyring_from_row(row: &Row) -> Result<KeyringRow, tokio_postgres::Error> {
    Ok(KeyringRow {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        name: row.try_get(2)?,
        product: row.try_get(3)?,
        key_id: row.try_get(4)?,
        token_hash: row.try_get(5)?,
        token_issued_at: row.try_get(6)?,
        created_at: row.try_get(7)?,
        revision: row.try_get(8)?,
    })
}

/// The column list [`keyring_version_from_row`] expects.
pub(crate) const KEYRING_VERSION_COLUMNS: &str =
    "keyring_id, key_number, version, ciphertext, created_at";

/// Reads the columns named by [`KEYRING_VERSION_COLUMNS`].
pub(crate) fn keyring_version_from_row(
    row: &Row,
) -> Result<KeyringVersionRow, tokio_postgres::Error> {
    Ok(KeyringVersionRow {
        keyring_id: row.try_get(0)?,
        key_number: row.try_get(1)?,
        version: row.try_get(2)?,
        ciphertext: row.try_get(3)?,
        created_at: row.try_get(4)?,
    })
}

/// Inserts a keyring row. A taken id or (account, name) answers
/// `AlreadyExists`, an unknown account `MissingReference`.
pub(crate) async fn insert_keyring_row(tx: &Tx<'_>, row: &KeyringRow) -> Result<(), Fail> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO keyrings (id, account_id, name, product, key_id, token_hash,
                                   token_issued_at, created_at, revision)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &row.id,
            &row.account_id,
            &row.name,
            &row.product,
            &row.key_id,
            &row.token_hash,
            &row.token_issued_at,
            &row.created_at,
            &row.revision,
        ],
    )
    .await?;
    Ok(())
}

/// Inserts a key version row as given (no check of the version sequence).
pub(crate) async fn insert_keyring_version(tx: &Tx<'_>, v: &KeyringKeyVersion) -> Result<(), Fail> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO keyring_key_versions (keyring_id, key_number, version, ciphertext,
                                               created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &v.keyring_id.as_str(),
            &i64::from(v.key_number),
            &i64::from(v.version),
            &v.ciphertext,
            &v.created_at.0,
        ],
    )
    .await?;
    Ok(())
}

/// Every keyring, ordered by id, and every key version, ordered by
/// keyring, key number and version (for dumps).
pub(crate) async fn export_keyrings(
    tx: &Tx<'_>,
) -> Result<(Vec<KeyringRecord>, Vec<KeyringKeyVersion>), Fail> {
    let keyrings = tx
        .query(
            &format!("SELECT {KEYRING_COLUMNS} FROM keyrings ORDER BY id"),
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok(keyring_from_row(r)?.decode()?))
        .collect::<Result<Vec<_>, Fail>>()?;
    let versions = tx
        .query(
            &format!(
                "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
                 ORDER BY keyring_id, key_number, version"
            ),
            &[],
        )
        .await?
        .iter()
        .map(|r| Ok(keyring_version_from_row(r)?.decode()?))
        .collect::<Result<Vec<_>, Fail>>()?;
    Ok((keyrings, versions))
}

#[async_trait]
impl KeyringStore for PgStore {
    async fn create_keyring(
        &self,
        keyring: &KeyringRecord,
        versions: &[KeyringKeyVersion],
    ) -> Result<(), StoreError> {
        let encode = || -> Result<KeyringRow, Fail> {
            check_keyring_versions(keyring, versions)?;
            Ok(KeyringRow::encode(keyring)?)
        };
        let row = encode().map_err(|f| f.error)?;
        transact!(self, Mode::Quiet, |tx| {
            insert_keyring_row(&tx, &row).await?;
            for v in versions {
                insert_keyring_version(&tx, v).await?;
            }
        })
    }

    async fn get_keyring(&self, id: &KeyringId) -> Result<Option<KeyringRecord>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {KEYRING_COLUMNS} FROM keyrings WHERE id = $1"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&id.as_str()]).await? {
                Some(row) => Some(keyring_from_row(&row)?.decode()?),
                None => None,
            }
        })
    }

    async fn list_keyrings(&self, account: &AccountId) -> Result<Vec<KeyringRecord>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {KEYRING_COLUMNS} FROM keyrings WHERE account_id = $1 ORDER BY id"
                ))
                .await?;
            tx.query(&stmt, &[&account.as_str()])
                .await?
                .iter()
                .map(|row| Ok(keyring_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn update_keyring(
        &self,
        keyring: &KeyringRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        // No stored revision exceeds i64::MAX, so such an expectation can
        // never match.
        let Ok(expected) = i64::try_from(expected_revision) else {
            return Err(StoreError::Conflict);
        };
        let row = KeyringRow::encode(keyring).map_err(|e| Fail::from(e).error)?;
        transact!(self, Mode::Quiet, |tx| {
            // Only the token fields and the revision change. A concurrent
            // update of the row waits for ours and then re-checks the
            // revision, so exactly one of them changes it.
            let stmt = tx
                .prepare_cached(
                    "UPDATE keyrings SET token_hash = $1, token_issued_at = $2, revision = $3
                     WHERE id = $4 AND account_id = $5 AND revision = $6",
                )
                .await?;
            let changed = tx
                .execute(
                    &stmt,
                    &[
                        &row.token_hash,
                        &row.token_issued_at,
                        &row.revision,
                        &row.id,
                        &row.account_id,
                        &expected,
                    ],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::Conflict.into());
            }
        })
    }

    async fn delete_keyring(
        &self,
        account: &AccountId,
        id: &KeyringId,
    ) -> Result<bool, StoreError> {
        transact!(self, Mode::Quiet, |tx| {
            let lock = tx
                .prepare_cached(
                    "SELECT 1 FROM keyrings WHERE id = $1 AND account_id = $2 FOR UPDATE",
                )
                .await?;
            if tx
                .query_opt(&lock, &[&id.as_str(), &account.as_str()])
                .await?
                .is_none()
            {
                false
            } else {
                // The foreign key cascades too; deleting explicitly keeps
                // crypto-shredding independent of that.
                for sql in [
                    "DELETE FROM keyring_key_versions WHERE keyring_id = $1",
                    "DELETE FROM keyrings WHERE id = $1",
                ] {
                    let stmt = tx.prepare_cached(sql).await?;
                    tx.execute(&stmt, &[&id.as_str()]).await?;
                }
                true
            }
        })
    }

    async fn add_keyring_key_version(&self, version: &KeyringKeyVersion) -> Result<(), StoreError> {
        let key_number = i64::from(version.key_number);
        transact!(self, Mode::Quiet, |tx| {
            // The keyring's row lock serializes rotations of the keyring
            // across nodes: a racing rotation waits here, then (READ
            // COMMITTED: a new snapshot per statement) reads the winner's
            // version below and answers Conflict.
            let lock = tx
                .prepare_cached("SELECT 1 FROM keyrings WHERE id = $1 FOR UPDATE")
                .await?;
            if tx
                .query_opt(&lock, &[&version.keyring_id.as_str()])
                .await?
                .is_none()
            {
                return Err(StoreError::MissingReference.into());
            }
            let newest = tx
                .prepare_cached(
                    "SELECT MAX(version) FROM keyring_key_versions
                     WHERE keyring_id = $1 AND key_number = $2",
                )
                .await?;
            let newest: Option<i64> = tx
                .query_one(&newest, &[&version.keyring_id.as_str(), &key_number])
                .await?
                .try_get(0)?;
            if i64::from(version.version) != newest.unwrap_or(0) + 1 {
                return Err(StoreError::Conflict.into());
            }
            insert_keyring_version(&tx, version).await?;
        })
    }

    async fn get_keyring_key_version(
        &self,
        keyring: &KeyringId,
        key_number: u32,
        version: Option<u32>,
    ) -> Result<Option<KeyringKeyVersion>, StoreError> {
        let key_number = i64::from(key_number);
        let version = version.map(i64::from);
        transact!(self, Mode::Read, |tx| {
            let row = match version {
                Some(version) => {
                    let stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
                             WHERE keyring_id = $1 AND key_number = $2 AND version = $3"
                        ))
                        .await?;
                    tx.query_opt(&stmt, &[&keyring.as_str(), &key_number, &version])
                        .await?
                }
                None => {
                    let stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
                             WHERE keyring_id = $1 AND key_number = $2
                             ORDER BY version DESC LIMIT 1"
                        ))
                        .await?;
                    tx.query_opt(&stmt, &[&keyring.as_str(), &key_number])
                        .await?
                }
            };
            match row {
                Some(row) => Some(keyring_version_from_row(&row)?.decode()?),
                None => None,
            }
        })
    }

    async fn list_keyring_key_versions(
        &self,
        keyring: &KeyringId,
    ) -> Result<Vec<KeyringKeyVersion>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
                     WHERE keyring_id = $1 ORDER BY key_number, version"
                ))
                .await?;
            tx.query(&stmt, &[&keyring.as_str()])
                .await?
                .iter()
                .map(|row| Ok(keyring_version_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn keyring_key_summary(
        &self,
        keyring: &KeyringId,
    ) -> Result<Vec<(u32, u32, UnixMillis)>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(
                    "SELECT DISTINCT ON (key_number) key_number, version, created_at
                     FROM keyring_key_versions WHERE keyring_id = $1
                     ORDER BY key_number, version DESC",
                )
                .await?;
            tx.query(&stmt, &[&keyring.as_str()])
                .await?
                .iter()
                .map(|row| {
                    let n: i64 = row.try_get(0)?;
                    let v: i64 = row.try_get(1)?;
                    let at: i64 = row.try_get(2)?;
                    Ok((summary_u32(n)?, summary_u32(v)?, UnixMillis(at)))
                })
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }
}

/// A stored key number or version, which must fit a `u32`.
fn summary_u32(value: i64) -> Result<u32, Fail> {
    u32::try_from(value).map_err(|_| {
        Fail::from(StoreError::Backend(
            format!("a stored keyring key number or version is out of range: {value}").into(),
        ))
    })
}
