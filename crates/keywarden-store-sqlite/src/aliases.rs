//! Aliases (`AliasStore`).

use async_trait::async_trait;
use keywarden_core::ids::{AccountId, AliasName, KeyId};
use keywarden_core::model::AliasRecord;
use keywarden_core::store::{AliasStore, StoreError};
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::error::Fail;
use crate::rows::{alias_from_row, revision_to_sql, ALIAS_COLUMNS};
use crate::{invalid, sql_limit, SqliteStore};

/// Inserts an alias row.
pub(crate) fn insert_alias_row(tx: &Transaction<'_>, alias: &AliasRecord) -> Result<(), Fail> {
    let revision = revision_to_sql(alias.revision)?;
    // The composite foreign key (account_id, key_id) answers
    // MissingReference for a target that is missing or belongs to
    // another account.
    tx.prepare_cached(
        "INSERT INTO aliases (account_id, name, key_id, created_at, updated_at, revision, region)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        alias.account_id.as_str(),
        alias.name.as_str(),
        alias.target.to_string(),
        alias.created_at.0,
        alias.updated_at.0,
        revision,
        alias.region.as_deref().unwrap_or("")
    ])?;
    Ok(())
}

#[async_trait]
impl AliasStore for SqliteStore {
    async fn create_alias(&self, alias: &AliasRecord) -> Result<(), StoreError> {
        let alias = alias.clone();
        self.write(move |tx| insert_alias_row(tx, &alias)).await
    }

    async fn get_alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        name: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let account = account.as_str().to_owned();
        let region = region.unwrap_or("").to_owned();
        let name = name.as_str().to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {ALIAS_COLUMNS} FROM aliases
                 WHERE account_id = ?1 AND region = ?2 AND name = ?3"
            ))?
            .query_row([&account, &region, &name], alias_from_row)
            .optional()?
            .map(|row| Ok(row.decode()?))
            .transpose()
        })
        .await
    }

    async fn update_alias(
        &self,
        alias: &AliasRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        if alias.revision <= expected_revision {
            return Err(invalid(
                "update_alias: the new revision must exceed the expected one",
            ));
        }
        let Ok(expected) = i64::try_from(expected_revision) else {
            return Err(StoreError::Conflict);
        };
        let revision = revision_to_sql(alias.revision).map_err(|e| Fail::from(e).0)?;
        let alias = alias.clone();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE aliases SET key_id = ?1, updated_at = ?2, revision = ?3
                     WHERE account_id = ?4 AND name = ?5 AND revision = ?6 AND region = ?7",
                )?
                .execute(params![
                    alias.target.to_string(),
                    alias.updated_at.0,
                    revision,
                    alias.account_id.as_str(),
                    alias.name.as_str(),
                    expected,
                    alias.region.as_deref().unwrap_or("")
                ])?;
            if changed == 0 {
                return Err(StoreError::Conflict.into());
            }
            Ok(())
        })
        .await
    }

    async fn delete_alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        name: &AliasName,
    ) -> Result<bool, StoreError> {
        let account = account.as_str().to_owned();
        let region = region.unwrap_or("").to_owned();
        let name = name.as_str().to_owned();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "DELETE FROM aliases WHERE account_id = ?1 AND region = ?2 AND name = ?3",
                )?
                .execute([&account, &region, &name])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn list_aliases(
        &self,
        account: &AccountId,
        region: Option<&str>,
        target: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let mut values = vec![
            Value::Text(account.as_str().to_owned()),
            Value::Text(region.unwrap_or("").to_owned()),
        ];
        let mut filter = String::from("account_id = ?1 AND region = ?2");
        if let Some(target) = target {
            values.push(Value::Text(target.to_string()));
            filter.push_str(&format!(" AND key_id = ?{}", values.len()));
        }
        if let Some(after) = after {
            values.push(Value::Text(after.to_owned()));
            filter.push_str(&format!(" AND name > ?{}", values.len()));
        }
        values.push(Value::Integer(sql_limit(limit)));
        let sql = format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases WHERE {filter} ORDER BY name LIMIT ?{}",
            values.len()
        );
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(values), alias_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|row| Ok(row.decode()?)).collect()
        })
        .await
    }
}
