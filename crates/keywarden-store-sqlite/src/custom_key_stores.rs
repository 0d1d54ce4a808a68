//! Custom key stores accounts created (`CustomKeyStoreStore`), schema 12:
//! one `custom_key_stores` row per store, every field a column
//! (`keywarden_core::store_codec::CustomKeyStoreRow`). Change triggers on
//! the table move the change stamp on every write: every process follows a
//! store's connection state.

use async_trait::async_trait;
use keywarden_core::ids::AccountId;
use keywarden_core::model::CustomKeyStoreRecord;
use keywarden_core::ops::custom_key_stores::PROTECTOR_PREFIX;
use keywarden_core::store::{CustomKeyStoreStore, StoreError};
use keywarden_core::store_codec::{revision_to_sql, CustomKeyStoreRow};
use rusqlite::{params, Row, Transaction};

use crate::error::Fail;
use crate::SqliteStore;

/// Reads the columns named by [`CustomKeyStoreRow::COLUMNS`].
fn from_row(row: &Row<'_>) -> rusqlite::Result<CustomKeyStoreRow> {
    Ok(CustomKeyStoreRow {
        id: row.get(0)?,
        account_id: row.get(1)?,
        name: row.get(2)?,
        cluster_id: row.get(3)?,
        sealed_pin: row.get(4)?,
        trust_anchor: row.get(5)?,
        state: row.get(6)?,
        error_code: row.get(7)?,
        created_at: row.get(8)?,
        revision: row.get(9)?,
    })
}

/// Inserts a store. A taken id, (account, name) or cluster answers
/// `AlreadyExists`, an unknown account `MissingReference`.
pub(crate) fn insert_custom_key_store(
    tx: &Transaction<'_>,
    store: &CustomKeyStoreRecord,
) -> Result<(), Fail> {
    let r = CustomKeyStoreRow::encode(store)?;
    tx.prepare_cached(&format!(
        "INSERT INTO custom_key_stores ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        CustomKeyStoreRow::COLUMNS
    ))?
    .execute(params![
        r.id,
        r.account_id,
        r.name,
        r.cluster_id,
        r.sealed_pin,
        r.trust_anchor,
        r.state,
        r.error_code,
        r.created_at,
        r.revision
    ])?;
    Ok(())
}

/// The stores of one account or of all, ordered by id.
pub(crate) fn all_custom_key_stores(
    tx: &Transaction<'_>,
    account: Option<&str>,
) -> Result<Vec<CustomKeyStoreRecord>, Fail> {
    let sql = format!(
        "SELECT {} FROM custom_key_stores WHERE ?1 IS NULL OR account_id = ?1 ORDER BY id",
        CustomKeyStoreRow::COLUMNS
    );
    tx.prepare_cached(&sql)?
        .query_map(params![account], from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|row| Ok(row.decode()?))
        .collect()
}

#[async_trait]
impl CustomKeyStoreStore for SqliteStore {
    async fn create_custom_key_store(
        &self,
        store: &CustomKeyStoreRecord,
    ) -> Result<(), StoreError> {
        let store = store.clone();
        self.write(move |tx| insert_custom_key_store(tx, &store))
            .await
    }

    async fn list_custom_key_stores(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<CustomKeyStoreRecord>, StoreError> {
        let account = account.map(|a| a.as_str().to_owned());
        self.read(move |tx| all_custom_key_stores(tx, account.as_deref()))
            .await
    }

    async fn update_custom_key_store(
        &self,
        store: &CustomKeyStoreRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        if store.revision <= expected_revision {
            return Err(StoreError::Conflict);
        }
        let r = CustomKeyStoreRow::encode(store).map_err(|e| Fail::from(e).0)?;
        let expected = revision_to_sql(expected_revision).map_err(|e| Fail::from(e).0)?;
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "UPDATE custom_key_stores SET name = ?3, cluster_id = ?4, sealed_pin = ?5,
                         trust_anchor = ?6, state = ?7, error_code = ?8, revision = ?9
                     WHERE id = ?1 AND account_id = ?2 AND revision = ?10",
                )?
                .execute(params![
                    r.id,
                    r.account_id,
                    r.name,
                    r.cluster_id,
                    r.sealed_pin,
                    r.trust_anchor,
                    r.state,
                    r.error_code,
                    r.revision,
                    expected
                ])?;
            if n == 0 {
                return Err(StoreError::Conflict.into());
            }
            Ok(())
        })
        .await
    }

    async fn delete_custom_key_store(
        &self,
        account: &AccountId,
        id: &str,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let (account, id) = (account.as_str().to_owned(), id.to_owned());
        let expected = revision_to_sql(expected_revision).map_err(|e| Fail::from(e).0)?;
        self.write(move |tx| {
            let in_use: bool = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM key_versions WHERE protector = ?1)")?
                .query_row(params![format!("{PROTECTOR_PREFIX}{id}")], |r| r.get(0))?;
            let n = tx
                .prepare_cached(
                    "DELETE FROM custom_key_stores
                     WHERE id = ?1 AND account_id = ?2 AND revision = ?3",
                )?
                .execute(params![id, account, expected])?;
            if n == 0 {
                return Err(StoreError::Conflict.into());
            }
            if in_use {
                // The transaction is rolled back: nothing was deleted.
                return Err(StoreError::InUse.into());
            }
            Ok(())
        })
        .await
    }
}
