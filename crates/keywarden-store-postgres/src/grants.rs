//! Grants (`GrantStore`).

use async_trait::async_trait;
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::GrantRecord;
use keywarden_core::store::{GrantQuery, GrantStore, StoreError};
use keywarden_core::store_codec::GrantRow;

use crate::error::Fail;
use crate::rows::{grant_from_row, GRANT_COLUMNS};
use crate::{param_refs, sql_limit, transact, Mode, Param, PgStore};

#[async_trait]
impl GrantStore for PgStore {
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        max_per_key: usize,
        max_per_grantee: usize,
    ) -> Result<(), StoreError> {
        let row = GrantRow::encode(grant).map_err(|e| Fail::from(e).error)?;
        let max = sql_limit(max_per_key);
        let max_grantee = sql_limit(max_per_grantee);
        transact!(self, Mode::Write, |tx| {
            // The key's row lock serializes grant creation per key across
            // processes, so the counts below stay true until we commit.
            let lock = tx
                .prepare_cached(
                    "SELECT 1 FROM keys WHERE key_id = $1 AND account_id = $2 FOR NO KEY UPDATE",
                )
                .await?;
            tx.query_opt(&lock, &[&row.key_id, &row.account_id]).await?;
            let counts = tx
                .prepare_cached(
                    "SELECT count(*), count(*) FILTER (WHERE grantee = $3)
                     FROM grants WHERE account_id = $1 AND key_id = $2",
                )
                .await?;
            let counted = tx
                .query_one(&counts, &[&row.account_id, &row.key_id, &row.grantee])
                .await?;
            let (count, to_grantee): (i64, i64) = (counted.try_get(0)?, counted.try_get(1)?);
            if count >= max || to_grantee >= max_grantee {
                return Err(StoreError::LimitExceeded.into());
            }
            // A missing key fails the foreign key: MissingReference.
            let insert = tx
                .prepare_cached(
                    "INSERT INTO grants (grant_id, account_id, key_id, grantee, retiring, name,
                                         created_at, meta)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .await?;
            tx.execute(
                &insert,
                &[
                    &row.grant_id,
                    &row.account_id,
                    &row.key_id,
                    &row.grantee,
                    &row.retiring,
                    &row.name,
                    &row.created_at,
                    &row.meta,
                ],
            )
            .await?;
        })
    }

    async fn list_grants(&self, query: &GrantQuery) -> Result<Vec<GrantRecord>, StoreError> {
        let mut conditions = vec!["account_id = $1".to_owned()];
        let mut params: Vec<Param> = vec![Box::new(query.account.as_str().to_owned())];
        let mut add = |column: &str, op: &str, value: String| {
            params.push(Box::new(value));
            conditions.push(format!("{column} {op} ${}", params.len()));
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
        params.push(Box::new(sql_limit(query.limit)));
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM grants WHERE {} ORDER BY grant_id LIMIT ${}",
            conditions.join(" AND "),
            params.len()
        );
        transact!(self, Mode::Read, |tx| {
            let stmt = tx.prepare_cached(&sql).await?;
            tx.query(&stmt, &param_refs(&params))
                .await?
                .iter()
                .map(|row| Ok(grant_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn delete_grant(
        &self,
        account: &AccountId,
        key: &KeyId,
        grant_id: &str,
    ) -> Result<bool, StoreError> {
        let key_id = key.to_string();
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM grants WHERE grant_id = $1 AND account_id = $2 AND key_id = $3",
                )
                .await?;
            tx.execute(&stmt, &[&grant_id, &account.as_str(), &key_id])
                .await?
                > 0
        })
    }
}
