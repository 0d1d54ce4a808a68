//! IAM users, roles, policies, inline policies and attachments
//! (`IamStore`), migration 5: one `iam_entities` row per record, its JSON
//! in `body` (`keywarden_core::store_codec::IamRow`). Writes are
//! [`Mode::Write`]: the table's change trigger moves the counter and
//! notifies every node.

use async_trait::async_trait;
use keywarden_core::iam::{IamEntity, IamKind};
use keywarden_core::ids::AccountId;
use keywarden_core::store::{IamQuery, IamStore, StoreError};
use keywarden_core::store_codec::{IamRow, NameRange};
use tokio_postgres::Row;

use crate::error::Fail;
use crate::{param_refs, sql_limit, transact, Mode, Param, PgStore, Tx};

/// The column list [`iam_from_row`] expects.
pub(crate) const IAM_COLUMNS: &str = "account_id, kind, name, body";

/// Reads the columns named by [`IAM_COLUMNS`].
pub(crate) fn iam_from_row(row: &Row) -> Result<IamRow, tokio_postgres::Error> {
    Ok(IamRow {
        account_id: row.try_get(0)?,
        kind: row.try_get(1)?,
        name: row.try_get(2)?,
        body: row.try_get(3)?,
    })
}

/// Inserts a record. A taken (account, kind, name) answers
/// `AlreadyExists`, an unknown account `MissingReference`.
pub(crate) async fn insert_iam_row(tx: &Tx<'_>, row: &IamRow) -> Result<(), Fail> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO iam_entities (account_id, kind, name, body) VALUES ($1, $2, $3, $4)",
        )
        .await?;
    tx.execute(&stmt, &[&row.account_id, &row.kind, &row.name, &row.body])
        .await?;
    Ok(())
}

/// Every record, ordered by account, kind and name (for dumps).
pub(crate) async fn all_iam_entities(tx: &Tx<'_>) -> Result<Vec<IamEntity>, Fail> {
    let stmt = tx
        .prepare(&format!(
            "SELECT {IAM_COLUMNS} FROM iam_entities ORDER BY account_id, kind, name"
        ))
        .await?;
    tx.query(&stmt, &[])
        .await?
        .iter()
        .map(|row| Ok(iam_from_row(row)?.decode()?))
        .collect()
}

#[async_trait]
impl IamStore for PgStore {
    async fn create_iam_entity(&self, entity: &IamEntity) -> Result<(), StoreError> {
        let row = IamRow::encode(entity);
        transact!(self, Mode::Write, |tx| {
            insert_iam_row(&tx, &row).await?;
        })
    }

    async fn put_iam_entity(&self, entity: &IamEntity) -> Result<(), StoreError> {
        let row = IamRow::encode(entity);
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO iam_entities (account_id, kind, name, body)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (account_id, kind, name) DO UPDATE SET body = excluded.body",
                )
                .await?;
            tx.execute(&stmt, &[&row.account_id, &row.kind, &row.name, &row.body])
                .await?;
        })
    }

    async fn get_iam_entity(
        &self,
        account: &AccountId,
        kind: IamKind,
        name: &str,
    ) -> Result<Option<IamEntity>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {IAM_COLUMNS} FROM iam_entities
                     WHERE account_id = $1 AND kind = $2 AND name = $3"
                ))
                .await?;
            match tx
                .query_opt(&stmt, &[&account.as_str(), &kind.as_str(), &name])
                .await?
            {
                Some(row) => Some(iam_from_row(&row)?.decode()?),
                None => None,
            }
        })
    }

    async fn list_iam_entities(&self, query: &IamQuery) -> Result<Vec<IamEntity>, StoreError> {
        // A range of the primary key rather than LIKE: `%` and `_` are
        // plain characters in names, and the range is an index scan
        // (`COLLATE "C"`: byte order, as the bound is computed).
        let range = NameRange::new(&query.prefix, query.after.as_deref());
        let sql = format!(
            "SELECT {IAM_COLUMNS} FROM iam_entities
             WHERE account_id = $1 AND kind = $2 AND {}
             ORDER BY name LIMIT $3",
            range.sql("name", '$', 4)
        );
        let mut params: Vec<Param> = vec![
            Box::new(query.account.as_str().to_owned()),
            Box::new(query.kind.as_str()),
            Box::new(sql_limit(query.limit)),
            Box::new(range.lower.clone()),
        ];
        if let Some(upper) = &range.upper {
            params.push(Box::new(upper.clone()));
        }
        transact!(self, Mode::Read, |tx| {
            let stmt = tx.prepare_cached(&sql).await?;
            tx.query(&stmt, &param_refs(&params))
                .await?
                .iter()
                .map(|row| Ok(iam_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn delete_iam_entity(
        &self,
        account: &AccountId,
        kind: IamKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM iam_entities WHERE account_id = $1 AND kind = $2 AND name = $3",
                )
                .await?;
            tx.execute(&stmt, &[&account.as_str(), &kind.as_str(), &name])
                .await?
                > 0
        })
    }
}
