//! Database keyrings and their key versions (`KeyringStore`), schema 9.
//! No change triggers on these tables: keyring writes leave the change
//! stamp alone.

use async_trait::async_trait;
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, KeyringId};
use keywarden_core::model::{KeyringKeyVersion, KeyringRecord};
use keywarden_core::store::{KeyringStore, StoreError};
use keywarden_core::store_codec::{check_keyring_versions, KeyringRow, KeyringVersionRow};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::error::Fail;
use crate::SqliteStore;

/// The column list [`keyring_from_row`] expects.
pub(crate) const KEYRING_COLUMNS: &str =
    "id, account_id, name, product, key_id, token_hash, token_issued_at, created_at, revision";

/// Reads the columns named by [`KEYRING_COLUMNS`].
pub(crate) fn keyring_from_row(row: &Row<'_>) -> rusqlite::Result<KeyringRow> {
    Ok(KeyringRow {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        product: row.get(3)?,
        key_id: row.get(4)?,
        token_hash: row.get(5)?,
        token_issued_at: row.get(6)?,
        created_at: row.get(7)?,
        revision: row.get(8)?,
    })
}

/// The column list [`keyring_version_from_row`] expects.
pub(crate) const KEYRING_VERSION_COLUMNS: &str =
    "keyring_id, key_number, version, ciphertext, created_at";

/// Reads the columns named by [`KEYRING_VERSION_COLUMNS`].
pub(crate) fn keyring_version_from_row(row: &Row<'_>) -> rusqlite::Result<KeyringVersionRow> {
    Ok(KeyringVersionRow {
        keyring_id: row.get(0)?,
        key_number: row.get(1)?,
        version: row.get(2)?,
        ciphertext: row.get(3)?,
        created_at: row.get(4)?,
    })
}

/// Inserts a keyring row. A taken id or (account, name) answers
/// `AlreadyExists`, an unknown account `MissingReference`.
pub(crate) fn insert_keyring_row(tx: &Transaction<'_>, row: &KeyringRow) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO keyrings (id, account_id, name, product, key_id, token_hash,
                               token_issued_at, created_at, revision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        row.id,
        row.account_id,
        row.name,
        row.product,
        row.key_id,
        row.token_hash,
        row.token_issued_at,
        row.created_at,
        row.revision
    ])?;
    Ok(())
}

/// Inserts a key version row as given (no check of the version sequence).
pub(crate) fn insert_keyring_version(
    tx: &Transaction<'_>,
    v: &KeyringKeyVersion,
) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO keyring_key_versions (keyring_id, key_number, version, ciphertext, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        v.keyring_id.as_str(),
        i64::from(v.key_number),
        i64::from(v.version),
        v.ciphertext,
        v.created_at.0
    ])?;
    Ok(())
}

/// Every keyring, ordered by id (for dumps).
pub(crate) fn all_keyrings(tx: &Transaction<'_>) -> Result<Vec<KeyringRecord>, Fail> {
    tx.prepare(&format!(
        "SELECT {KEYRING_COLUMNS} FROM keyrings ORDER BY id"
    ))?
    .query_map([], keyring_from_row)?
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .map(|row| Ok(row.decode()?))
    .collect()
}

/// Every key version, ordered by keyring, key number and version (for
/// dumps).
pub(crate) fn all_keyring_versions(tx: &Transaction<'_>) -> Result<Vec<KeyringKeyVersion>, Fail> {
    tx.prepare(&format!(
        "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
         ORDER BY keyring_id, key_number, version"
    ))?
    .query_map([], keyring_version_from_row)?
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .map(|row| Ok(row.decode()?))
    .collect()
}

#[async_trait]
impl KeyringStore for SqliteStore {
    async fn create_keyring(
        &self,
        keyring: &KeyringRecord,
        versions: &[KeyringKeyVersion],
    ) -> Result<(), StoreError> {
        let encode = || -> Result<KeyringRow, Fail> {
            check_keyring_versions(keyring, versions)?;
            Ok(KeyringRow::encode(keyring)?)
        };
        let row = encode().map_err(|Fail(e)| e)?;
        let versions = versions.to_vec();
        self.write(move |tx| {
            insert_keyring_row(tx, &row)?;
            for v in &versions {
                insert_keyring_version(tx, v)?;
            }
            Ok(())
        })
        .await
    }

    async fn get_keyring(&self, id: &KeyringId) -> Result<Option<KeyringRecord>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {KEYRING_COLUMNS} FROM keyrings WHERE id = ?1"
            ))?
            .query_row([&id], keyring_from_row)
            .optional()?
            .map(|row| Ok(row.decode()?))
            .transpose()
        })
        .await
    }

    async fn list_keyrings(&self, account: &AccountId) -> Result<Vec<KeyringRecord>, StoreError> {
        let account = account.as_str().to_owned();
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {KEYRING_COLUMNS} FROM keyrings WHERE account_id = ?1 ORDER BY id"
                ))?
                .query_map([&account], keyring_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|row| Ok(row.decode()?)).collect()
        })
        .await
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
        let row = KeyringRow::encode(keyring).map_err(|e| Fail::from(e).0)?;
        self.write(move |tx| {
            // Only the token fields and the revision change.
            let changed = tx
                .prepare_cached(
                    "UPDATE keyrings SET token_hash = ?1, token_issued_at = ?2, revision = ?3
                     WHERE id = ?4 AND account_id = ?5 AND revision = ?6",
                )?
                .execute(params![
                    row.token_hash,
                    row.token_issued_at,
                    row.revision,
                    row.id,
                    row.account_id,
                    expected
                ])?;
            if changed == 0 {
                return Err(StoreError::Conflict.into());
            }
            Ok(())
        })
        .await
    }

    async fn delete_keyring(
        &self,
        account: &AccountId,
        id: &KeyringId,
    ) -> Result<bool, StoreError> {
        let account = account.as_str().to_owned();
        let id = id.as_str().to_owned();
        self.write(move |tx| {
            let owned = tx
                .prepare_cached("SELECT 1 FROM keyrings WHERE id = ?1 AND account_id = ?2")?
                .query_row([&id, &account], |_| Ok(()))
                .optional()?
                .is_some();
            if !owned {
                return Ok(false);
            }
            // The foreign key cascades too; deleting explicitly keeps
            // crypto-shredding independent of that.
            tx.prepare_cached("DELETE FROM keyring_key_versions WHERE keyring_id = ?1")?
                .execute([&id])?;
            tx.prepare_cached("DELETE FROM keyrings WHERE id = ?1")?
                .execute([&id])?;
            Ok(true)
        })
        .await
    }

    async fn add_keyring_key_version(&self, version: &KeyringKeyVersion) -> Result<(), StoreError> {
        let version = version.clone();
        // The writer's immediate transaction holds the database's write
        // lock, so the newest version read here is still the newest when
        // the insert commits.
        self.write(move |tx| {
            let exists = tx
                .prepare_cached("SELECT 1 FROM keyrings WHERE id = ?1")?
                .query_row([version.keyring_id.as_str()], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Err(StoreError::MissingReference.into());
            }
            let newest: Option<i64> = tx
                .prepare_cached(
                    "SELECT MAX(version) FROM keyring_key_versions
                     WHERE keyring_id = ?1 AND key_number = ?2",
                )?
                .query_row(
                    params![version.keyring_id.as_str(), i64::from(version.key_number)],
                    |r| r.get(0),
                )?;
            if i64::from(version.version) != newest.unwrap_or(0) + 1 {
                return Err(StoreError::Conflict.into());
            }
            insert_keyring_version(tx, &version)
        })
        .await
    }

    async fn get_keyring_key_version(
        &self,
        keyring: &KeyringId,
        key_number: u32,
        version: Option<u32>,
    ) -> Result<Option<KeyringKeyVersion>, StoreError> {
        let keyring = keyring.as_str().to_owned();
        self.read(move |tx| {
            let row = match version {
                Some(version) => tx
                    .prepare_cached(&format!(
                        "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
                         WHERE keyring_id = ?1 AND key_number = ?2 AND version = ?3"
                    ))?
                    .query_row(
                        params![keyring, i64::from(key_number), i64::from(version)],
                        keyring_version_from_row,
                    )
                    .optional()?,
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
                         WHERE keyring_id = ?1 AND key_number = ?2
                         ORDER BY version DESC LIMIT 1"
                    ))?
                    .query_row(
                        params![keyring, i64::from(key_number)],
                        keyring_version_from_row,
                    )
                    .optional()?,
            };
            row.map(|row| Ok(row.decode()?)).transpose()
        })
        .await
    }

    async fn list_keyring_key_versions(
        &self,
        keyring: &KeyringId,
    ) -> Result<Vec<KeyringKeyVersion>, StoreError> {
        let keyring = keyring.as_str().to_owned();
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {KEYRING_VERSION_COLUMNS} FROM keyring_key_versions
                     WHERE keyring_id = ?1 ORDER BY key_number, version"
                ))?
                .query_map([&keyring], keyring_version_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|row| Ok(row.decode()?)).collect()
        })
        .await
    }

    async fn keyring_key_summary(
        &self,
        keyring: &KeyringId,
    ) -> Result<Vec<(u32, u32, UnixMillis)>, StoreError> {
        let keyring = keyring.as_str().to_owned();
        self.read(move |tx| {
            // SQLite takes the bare column `created_at` from the row that
            // holds MAX(version).
            let rows = tx
                .prepare_cached(
                    "SELECT key_number, MAX(version), created_at FROM keyring_key_versions
                     WHERE keyring_id = ?1 GROUP BY key_number ORDER BY key_number",
                )?
                .query_map([&keyring], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(n, v, at)| Ok((summary_u32(n)?, summary_u32(v)?, UnixMillis(at))))
                .collect()
        })
        .await
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
