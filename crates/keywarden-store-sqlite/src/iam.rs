//! IAM users, roles, policies, inline policies and attachments
//! (`IamStore`), schema 11: one `iam_entities` row per record, its JSON in
//! `body` (`keywarden_core::store_codec::IamRow`). Change triggers on the
//! table move the change stamp on every write.

use async_trait::async_trait;
use keywarden_core::iam::{IamEntity, IamKind};
use keywarden_core::ids::AccountId;
use keywarden_core::store::{IamQuery, IamStore, StoreError};
use keywarden_core::store_codec::{IamRow, NameRange};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::error::Fail;
use crate::SqliteStore;

/// The column list [`iam_from_row`] expects.
pub(crate) const IAM_COLUMNS: &str = "account_id, kind, name, body";

/// Reads the columns named by [`IAM_COLUMNS`].
pub(crate) fn iam_from_row(row: &Row<'_>) -> rusqlite::Result<IamRow> {
    Ok(IamRow {
        account_id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        body: row.get(3)?,
    })
}

/// Inserts a record. A taken (account, kind, name) answers
/// `AlreadyExists`, an unknown account `MissingReference`.
pub(crate) fn insert_iam_row(tx: &Transaction<'_>, row: &IamRow) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO iam_entities (account_id, kind, name, body) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![row.account_id, row.kind, row.name, row.body])?;
    Ok(())
}

/// `list_iam_entities`'s query: parameters account, kind, limit, then the
/// range's ends.
fn list_sql(range: &NameRange) -> String {
    format!(
        "SELECT {IAM_COLUMNS} FROM iam_entities
         WHERE account_id = ?1 AND kind = ?2 AND {}
         ORDER BY name LIMIT ?3",
        range.sql("name", '?', 4)
    )
}

/// Every record, ordered by account, kind and name (for dumps).
pub(crate) fn all_iam_entities(tx: &Transaction<'_>) -> Result<Vec<IamEntity>, Fail> {
    tx.prepare(&format!(
        "SELECT {IAM_COLUMNS} FROM iam_entities ORDER BY account_id, kind, name"
    ))?
    .query_map([], iam_from_row)?
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .map(|row| Ok(row.decode()?))
    .collect()
}

#[async_trait]
impl IamStore for SqliteStore {
    async fn create_iam_entity(&self, entity: &IamEntity) -> Result<(), StoreError> {
        let row = IamRow::encode(entity);
        self.write(move |tx| insert_iam_row(tx, &row)).await
    }

    async fn put_iam_entity(&self, entity: &IamEntity) -> Result<(), StoreError> {
        let row = IamRow::encode(entity);
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO iam_entities (account_id, kind, name, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account_id, kind, name) DO UPDATE SET body = excluded.body",
            )?
            .execute(params![row.account_id, row.kind, row.name, row.body])?;
            Ok(())
        })
        .await
    }

    async fn get_iam_entity(
        &self,
        account: &AccountId,
        kind: IamKind,
        name: &str,
    ) -> Result<Option<IamEntity>, StoreError> {
        let (account, name) = (account.as_str().to_owned(), name.to_owned());
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {IAM_COLUMNS} FROM iam_entities
                 WHERE account_id = ?1 AND kind = ?2 AND name = ?3"
            ))?
            .query_row(params![account, kind.as_str(), name], iam_from_row)
            .optional()?
            .map(|row| Ok(row.decode()?))
            .transpose()
        })
        .await
    }

    async fn list_iam_entities(&self, query: &IamQuery) -> Result<Vec<IamEntity>, StoreError> {
        let account = query.account.as_str().to_owned();
        let kind = query.kind.as_str();
        // A range of the primary key rather than LIKE: `%` and `_` are
        // plain characters in names, and the range is an index scan.
        let range = NameRange::new(&query.prefix, query.after.as_deref());
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            let mut stmt = tx.prepare_cached(&list_sql(&range))?;
            let rows = match &range.upper {
                Some(upper) => stmt.query_map(
                    params![account, kind, limit, range.lower, upper],
                    iam_from_row,
                )?,
                None => stmt.query_map(params![account, kind, limit, range.lower], iam_from_row)?,
            };
            rows.collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .map(|row| Ok(row.decode()?))
                .collect()
        })
        .await
    }

    async fn delete_iam_entity(
        &self,
        account: &AccountId,
        kind: IamKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        let (account, name) = (account.as_str().to_owned(), name.to_owned());
        self.write(move |tx| {
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM iam_entities WHERE account_id = ?1 AND kind = ?2 AND name = ?3",
                )?
                .execute(params![account, kind.as_str(), name])?;
            Ok(deleted > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock;

    /// Listing one owner's children is a range of the primary key (both
    /// ends in the index search), not a scan of the account's records.
    #[test]
    fn prefix_lists_are_primary_key_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("plan.db")).unwrap();
        let conn = lock(&store.inner.writer);
        for (range, want) in [
            (NameRange::new("bob/", None), "name>? AND name<?"),
            (NameRange::new("bob/", Some("bob/p")), "name>? AND name<?"),
            (NameRange::new("", Some("bob")), "name>?"),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {}", list_sql(&range)))
                .unwrap()
                .query_map(
                    rusqlite::params_from_iter(
                        ["111122223333", "user", "10", range.lower.as_str()]
                            .into_iter()
                            .chain(range.upper.as_deref()),
                    ),
                    |row| row.get(3),
                )
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(
                plan.contains("SEARCH") && plan.contains(&format!("kind=? AND {want})")),
                "{plan}"
            );
        }
    }
}
