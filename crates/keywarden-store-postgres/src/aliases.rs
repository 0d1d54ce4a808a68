//! Aliases (`AliasStore`).

use async_trait::async_trait;
use keywarden_core::ids::{AccountId, AliasName, KeyId};
use keywarden_core::model::AliasRecord;
use keywarden_core::store::{AliasStore, StoreError};
use keywarden_core::store_codec::revision_to_sql;

use crate::error::Fail;
use crate::rows::{alias_from_row, ALIAS_COLUMNS};
use crate::{invalid, param_refs, sql_limit, transact, Mode, Param, PgStore, Tx};

/// Inserts an alias row. The composite foreign key (account_id, key_id)
/// answers `MissingReference` for a target that is missing or belongs to
/// another account.
pub(crate) async fn insert_alias_row(tx: &Tx<'_>, alias: &AliasRecord) -> Result<(), Fail> {
    let revision = revision_to_sql(alias.revision)?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO aliases (account_id, name, key_id, created_at, updated_at, revision, region)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &alias.account_id.as_str(),
            &alias.name.as_str(),
            &alias.target.to_string(),
            &alias.created_at.0,
            &alias.updated_at.0,
            &revision,
            &alias.region.as_deref().unwrap_or(""),
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AliasStore for PgStore {
    async fn create_alias(&self, alias: &AliasRecord) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| insert_alias_row(&tx, alias).await?)
    }

    async fn get_alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        name: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let region = region.unwrap_or("");
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ALIAS_COLUMNS} FROM aliases
                     WHERE account_id = $1 AND region = $2 AND name = $3"
                ))
                .await?;
            match tx
                .query_opt(&stmt, &[&account.as_str(), &region, &name.as_str()])
                .await?
            {
                Some(row) => Some(alias_from_row(&row)?.decode()?),
                None => None,
            }
        })
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
        let revision = revision_to_sql(alias.revision).map_err(|e| Fail::from(e).error)?;
        let target = alias.target.to_string();
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "UPDATE aliases SET key_id = $1, updated_at = $2, revision = $3
                     WHERE account_id = $4 AND name = $5 AND revision = $6 AND region = $7",
                )
                .await?;
            let changed = tx
                .execute(
                    &stmt,
                    &[
                        &target,
                        &alias.updated_at.0,
                        &revision,
                        &alias.account_id.as_str(),
                        &alias.name.as_str(),
                        &expected,
                        &alias.region.as_deref().unwrap_or(""),
                    ],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::Conflict.into());
            }
        })
    }

    async fn delete_alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        name: &AliasName,
    ) -> Result<bool, StoreError> {
        let region = region.unwrap_or("");
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "DELETE FROM aliases WHERE account_id = $1 AND region = $2 AND name = $3",
                )
                .await?;
            tx.execute(&stmt, &[&account.as_str(), &region, &name.as_str()])
                .await?
                > 0
        })
    }

    async fn list_aliases(
        &self,
        account: &AccountId,
        region: Option<&str>,
        target: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let mut params: Vec<Param> = vec![
            Box::new(account.as_str().to_owned()),
            Box::new(region.unwrap_or("").to_owned()),
        ];
        let mut filter = String::from("account_id = $1 AND region = $2");
        if let Some(target) = target {
            params.push(Box::new(target.to_string()));
            filter.push_str(&format!(" AND key_id = ${}", params.len()));
        }
        if let Some(after) = after {
            params.push(Box::new(after.to_owned()));
            filter.push_str(&format!(" AND name > ${}", params.len()));
        }
        params.push(Box::new(sql_limit(limit)));
        let sql = format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases WHERE {filter} ORDER BY name LIMIT ${}",
            params.len()
        );
        transact!(self, Mode::Read, |tx| {
            let stmt = tx.prepare_cached(&sql).await?;
            tx.query(&stmt, &param_refs(&params))
                .await?
                .iter()
                .map(|row| Ok(alias_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }
}
