//! Custom key stores accounts created (`CustomKeyStoreStore`), migration 6,
//! as SQLite's schema 12: one `custom_key_stores` row per store, every
//! field a column (`keywarden_core::store_codec::CustomKeyStoreRow`).
//! Writes are [`Mode::Write`]: the table's change trigger moves the counter
//! and notifies every node, which then follows the store's connection state.

use async_trait::async_trait;
use keywarden_core::ids::AccountId;
use keywarden_core::model::CustomKeyStoreRecord;
use keywarden_core::ops::custom_key_stores::PROTECTOR_PREFIX;
use keywarden_core::store::{CustomKeyStoreStore, StoreError};
use keywarden_core::store_codec::{revision_to_sql, CustomKeyStoreRow};
use tokio_postgres::Row;

use crate::error::Fail;
use crate::{transact, Mode, PgStore, Tx};

/// Reads the columns named by [`CustomKeyStoreRow::COLUMNS`].
fn from_row(row: &Row) -> Result<CustomKeyStoreRow, tokio_postgres::Error> {
    Ok(CustomKeyStoreRow {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        name: row.try_get(2)?,
        cluster_id: row.try_get(3)?,
        sealed_pin: row.try_get(4)?,
        trust_anchor: row.try_get(5)?,
        state: row.try_get(6)?,
        error_code: row.try_get(7)?,
        created_at: row.try_get(8)?,
        revision: row.try_get(9)?,
    })
}

/// Inserts a store. A taken id, (account, name) or cluster answers
/// `AlreadyExists`, an unknown account `MissingReference`.
pub(crate) async fn insert_custom_key_store(
    tx: &Tx<'_>,
    store: &CustomKeyStoreRecord,
) -> Result<(), Fail> {
    let r = CustomKeyStoreRow::encode(store)?;
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO custom_key_stores ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            CustomKeyStoreRow::COLUMNS
        ))
        .await?;
    tx.execute(
        &stmt,
        &[
            &r.id,
            &r.account_id,
            &r.name,
            &r.cluster_id,
            &r.sealed_pin,
            &r.trust_anchor,
            &r.state,
            &r.error_code,
            &r.created_at,
            &r.revision,
        ],
    )
    .await?;
    Ok(())
}

/// The stores of one account or of all, ordered by id.
pub(crate) async fn all_custom_key_stores(
    tx: &Tx<'_>,
    account: Option<&str>,
) -> Result<Vec<CustomKeyStoreRecord>, Fail> {
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {} FROM custom_key_stores
             WHERE $1::TEXT IS NULL OR account_id = $1 ORDER BY id",
            CustomKeyStoreRow::COLUMNS
        ))
        .await?;
    tx.query(&stmt, &[&account])
        .await?
        .iter()
        .map(|row| Ok(from_row(row)?.decode()?))
        .collect()
}

#[async_trait]
impl CustomKeyStoreStore for PgStore {
    async fn create_custom_key_store(
        &self,
        store: &CustomKeyStoreRecord,
    ) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| {
            insert_custom_key_store(&tx, store).await?;
        })
    }

    async fn list_custom_key_stores(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<CustomKeyStoreRecord>, StoreError> {
        let account = account.map(AccountId::as_str);
        transact!(self, Mode::Read, |tx| {
            all_custom_key_stores(&tx, account).await?
        })
    }

    async fn update_custom_key_store(
        &self,
        store: &CustomKeyStoreRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        if store.revision <= expected_revision {
            return Err(StoreError::Conflict);
        }
        let r = CustomKeyStoreRow::encode(store).map_err(|e| Fail::from(e).error)?;
        let expected = revision_to_sql(expected_revision).map_err(|e| Fail::from(e).error)?;
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "UPDATE custom_key_stores SET name = $3, cluster_id = $4, sealed_pin = $5,
                         trust_anchor = $6, state = $7, error_code = $8, revision = $9
                     WHERE id = $1 AND account_id = $2 AND revision = $10",
                )
                .await?;
            let n = tx
                .execute(
                    &stmt,
                    &[
                        &r.id,
                        &r.account_id,
                        &r.name,
                        &r.cluster_id,
                        &r.sealed_pin,
                        &r.trust_anchor,
                        &r.state,
                        &r.error_code,
                        &r.revision,
                        &expected,
                    ],
                )
                .await?;
            if n == 0 {
                return Err(StoreError::Conflict.into());
            }
        })
    }

    async fn delete_custom_key_store(
        &self,
        account: &AccountId,
        id: &str,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let expected = revision_to_sql(expected_revision).map_err(|e| Fail::from(e).error)?;
        let protector = format!("{PROTECTOR_PREFIX}{id}");
        transact!(self, Mode::Write, |tx| {
            // The row lock first: a concurrent update or delete of the
            // store waits, and the key check below sees what committed.
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM custom_key_stores
                     WHERE id = $1 AND account_id = $2 AND revision = $3",
                )
                .await?;
            let n = tx
                .execute(&stmt, &[&id, &account.as_str(), &expected])
                .await?;
            if n == 0 {
                return Err(StoreError::Conflict.into());
            }
            let stmt = tx
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM key_versions WHERE protector = $1)")
                .await?;
            let in_use: bool = tx.query_one(&stmt, &[&protector]).await?.try_get(0)?;
            if in_use {
                // The transaction is rolled back: nothing was deleted.
                return Err(StoreError::InUse.into());
            }
        })
    }
}
