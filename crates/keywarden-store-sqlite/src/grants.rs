//! Grants (`GrantStore`).

use async_trait::async_trait;
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::GrantRecord;
use keywarden_core::store::{GrantQuery, GrantStore, StoreError};
use keywarden_core::store_codec::GrantRow;
use rusqlite::params;
use rusqlite::types::Value;

use crate::error::Fail;
use crate::rows::{grant_from_row, GRANT_COLUMNS};
use crate::SqliteStore;

#[async_trait]
impl GrantStore for SqliteStore {
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        max_per_key: usize,
        max_per_grantee: usize,
    ) -> Result<(), StoreError> {
        let row = GrantRow::encode(grant).map_err(|e| Fail::from(e).0)?;
        let max = i64::try_from(max_per_key).unwrap_or(i64::MAX);
        let max_grantee = i64::try_from(max_per_grantee).unwrap_or(i64::MAX);
        self.write(move |tx| {
            // The counts and the insert are one immediate transaction, so
            // concurrent creations cannot overshoot the limits.
            let count: i64 = tx
                .prepare_cached("SELECT count(*) FROM grants WHERE account_id = ?1 AND key_id = ?2")?
                .query_row([&row.account_id, &row.key_id], |r| r.get(0))?;
            let to_grantee: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM grants WHERE account_id = ?1 AND key_id = ?2 AND grantee = ?3",
                )?
                .query_row([&row.account_id, &row.key_id, &row.grantee], |r| r.get(0))?;
            if count >= max || to_grantee >= max_grantee {
                return Err(StoreError::LimitExceeded.into());
            }
            tx.prepare_cached(
                "INSERT INTO grants (grant_id, account_id, key_id, grantee, retiring, name, created_at, meta)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                row.grant_id,
                row.account_id,
                row.key_id,
                row.grantee,
                row.retiring,
                row.name,
                row.created_at,
                row.meta
            ])?;
            Ok(())
        })
        .await
    }

    async fn list_grants(&self, query: &GrantQuery) -> Result<Vec<GrantRecord>, StoreError> {
        let mut conditions = vec!["account_id = ?1".to_owned()];
        let mut values: Vec<Value> = vec![Value::Text(query.account.as_str().to_owned())];
        let mut add = |column: &str, op: &str, value: String| {
            values.push(Value::Text(value));
            conditions.push(format!("{column} {op} ?{}", values.len()));
        };
        if let Some(key) = &query.key {
            add("key_id", "=", key.to_string());
        }
        if let Some(id) = &query.grant_id {
            add("grant_id", "=", id.clone());
        }
        if let Some(grantee) = &query.grantee {
            add("grantee", "=", grantee.clone());
        }
        if let Some(retiring) = &query.retiring {
            add("retiring", "=", retiring.clone());
        }
        if let Some(after) = &query.after {
            add("grant_id", ">", after.clone());
        }
        values.push(Value::Integer(
            i64::try_from(query.limit).unwrap_or(i64::MAX),
        ));
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE {} ORDER BY grant_id LIMIT ?{}",
            conditions.join(" AND "),
            values.len()
        );
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(values), grant_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|row| Ok(row.decode()?)).collect()
        })
        .await
    }

    async fn delete_grant(
        &self,
        account: &AccountId,
        key: &KeyId,
        grant_id: &str,
    ) -> Result<bool, StoreError> {
        let account = account.as_str().to_owned();
        let key_id = key.to_string();
        let grant_id = grant_id.to_owned();
        self.write(move |tx| {
            let n = tx
                .prepare_cached(
                    "DELETE FROM grants WHERE grant_id = ?1 AND account_id = ?2 AND key_id = ?3",
                )?
                .execute([&grant_id, &account, &key_id])?;
            Ok(n > 0)
        })
        .await
    }
}
