//! Keys and their wrapped material versions (`KeyStore`): the `keys` and
//! `key_versions` rows, and the `KeyQuery` translation.

use std::collections::HashMap;

use async_trait::async_trait;
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::{KeyRecord, KeyState, KeyVersion};
use keywarden_core::store::{KeyQuery, KeyStore, StoreError};
use keywarden_core::store_codec::{
    check_versions, decode_account_id, rotation_type_to_sql, KeyColumns, KeyRow,
};

use crate::error::Fail;
use crate::rows::{key_from_row, version_from_row, KEY_COLUMNS, VERSION_COLUMNS};
use crate::{invalid, param_refs, sql_limit, transact, Mode, Param, PgStore, Tx};

/// Validates and encodes a key for writing: its `keys` row and its versions.
pub(crate) fn encode_key(key: &KeyRecord) -> Result<(KeyColumns, Vec<KeyVersion>), StoreError> {
    let encode = || -> Result<_, Fail> {
        check_versions(key)?;
        Ok((KeyColumns::encode(key)?, key.versions.clone()))
    };
    encode().map_err(|f| f.error)
}

/// Loads the versions of the keys in `rows` (one query) and decodes them.
pub(crate) async fn load_keys(tx: &Tx<'_>, rows: Vec<KeyRow>) -> Result<Vec<KeyRecord>, Fail> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.key_id.as_str()).collect();
    let stmt = tx
        .prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM key_versions WHERE key_id = ANY($1)
             ORDER BY key_id, version"
        ))
        .await?;
    let mut versions: HashMap<String, Vec<KeyVersion>> = HashMap::new();
    for row in tx.query(&stmt, &[&ids]).await? {
        let (key_id, version) = version_from_row(&row)?;
        versions.entry(key_id).or_default().push(version.decode()?);
    }
    rows.into_iter()
        .map(|row| {
            let own = versions.remove(&row.key_id).unwrap_or_default();
            Ok(row.decode(own)?)
        })
        .collect()
}

/// Inserts a key's row and its versions.
pub(crate) async fn insert_key_row(
    tx: &Tx<'_>,
    cols: &KeyColumns,
    versions: &[KeyVersion],
) -> Result<(), Fail> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO keys (key_id, account_id, revision, state, deletion_date, meta,
                               rotation_date, material_valid_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &cols.key_id,
            &cols.account_id,
            &cols.revision,
            &cols.state,
            &cols.deletion_date,
            &cols.meta,
            &cols.rotation_date,
            &cols.material_valid_to,
        ],
    )
    .await?;
    insert_versions(tx, &cols.key_id, versions).await
}

/// Inserts the versions that are not stored yet. Of stored ones only the
/// material changes, and only for imported material: given empty, it is
/// cleared (deleted material); stored empty, it takes the given material
/// (re-import). See `KeyStore::update_key`.
pub(crate) async fn insert_versions(
    tx: &Tx<'_>,
    key_id: &str,
    versions: &[KeyVersion],
) -> Result<(), Fail> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO key_versions (key_id, version, protector, material, created_at,
                                       rotation_type)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (key_id, version) DO UPDATE SET material = excluded.material
             WHERE octet_length(excluded.material) = 0
                OR octet_length(key_versions.material) = 0",
        )
        .await?;
    for v in versions {
        tx.execute(
            &stmt,
            &[
                &key_id,
                &i64::from(v.version),
                &v.protector,
                &v.material,
                &v.created_at.0,
                &rotation_type_to_sql(v.rotation),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The `SELECT` answering a [`KeyQuery`] (without versions) and its
/// parameters. States are literals, so the partial indexes of the due
/// queries apply.
pub(crate) fn key_query_sql(query: &KeyQuery) -> (String, Vec<Param>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    if let Some(account) = &query.account {
        params.push(Box::new(account.as_str().to_owned()));
        conditions.push(format!("account_id = ${}", params.len()));
    }
    if let Some(after) = &query.after {
        params.push(Box::new(after.to_string()));
        conditions.push(format!("key_id > ${}", params.len()));
    }
    if let Some(due) = query.deletion_due_by {
        params.push(Box::new(due.0));
        conditions.push(format!(
            "state = '{}' AND deletion_date <= ${}",
            KeyState::PendingDeletion.as_str(),
            params.len()
        ));
    }
    if let Some(due) = query.rotation_due_by {
        params.push(Box::new(due.0));
        conditions.push(format!(
            "state = '{}' AND rotation_date IS NOT NULL AND rotation_date <= ${}",
            KeyState::Enabled.as_str(),
            params.len()
        ));
    }
    if let Some(due) = query.material_expiry_due_by {
        params.push(Box::new(due.0));
        conditions.push(format!(
            "material_valid_to IS NOT NULL AND material_valid_to <= ${}",
            params.len()
        ));
    }
    params.push(Box::new(sql_limit(query.limit)));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM keys {filter} ORDER BY key_id LIMIT ${}",
        params.len()
    );
    (sql, params)
}

#[async_trait]
impl KeyStore for PgStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let (cols, versions) = encode_key(key)?;
        transact!(self, Mode::Write, |tx| insert_key_row(
            &tx, &cols, &versions
        )
        .await?)
    }

    async fn get_key(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let key_id = key.to_string();
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE key_id = $1 AND account_id = $2"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&key_id, &account.as_str()]).await? {
                Some(row) => load_keys(&tx, vec![key_from_row(&row)?]).await?.pop(),
                None => None,
            }
        })
    }

    async fn key_account(&self, key: &KeyId) -> Result<Option<AccountId>, StoreError> {
        let key_id = key.to_string();
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached("SELECT account_id FROM keys WHERE key_id = $1")
                .await?;
            match tx.query_opt(&stmt, &[&key_id]).await? {
                Some(row) => Some(decode_account_id(row.try_get::<_, &str>(0)?)?),
                None => None,
            }
        })
    }

    async fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> Result<(), StoreError> {
        if key.revision <= expected_revision {
            return Err(invalid(
                "update_key: the new revision must exceed the expected one",
            ));
        }
        // No stored revision exceeds i64::MAX, so such an expectation can
        // never match.
        let Ok(expected) = i64::try_from(expected_revision) else {
            return Err(StoreError::Conflict);
        };
        let (cols, versions) = encode_key(key)?;
        transact!(self, Mode::Write, |tx| {
            // A concurrent update of the same row waits for ours and then
            // re-checks the revision, so exactly one of them changes a row.
            let stmt = tx
                .prepare_cached(
                    "UPDATE keys SET revision = $1, state = $2, deletion_date = $3, meta = $4,
                                     rotation_date = $5, material_valid_to = $6
                     WHERE key_id = $7 AND account_id = $8 AND revision = $9",
                )
                .await?;
            let changed = tx
                .execute(
                    &stmt,
                    &[
                        &cols.revision,
                        &cols.state,
                        &cols.deletion_date,
                        &cols.meta,
                        &cols.rotation_date,
                        &cols.material_valid_to,
                        &cols.key_id,
                        &cols.account_id,
                        &expected,
                    ],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::Conflict.into());
            }
            insert_versions(&tx, &cols.key_id, &versions).await?
        })
    }

    async fn list_keys(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let (sql, params) = key_query_sql(query);
        transact!(self, Mode::Read, |tx| {
            let stmt = tx.prepare_cached(&sql).await?;
            let rows = tx
                .query(&stmt, &param_refs(&params))
                .await?
                .iter()
                .map(key_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            load_keys(&tx, rows).await?
        })
    }

    async fn destroy_key(
        &self,
        account: &AccountId,
        key: &KeyId,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let key_id = key.to_string();
        let account = account.as_str();
        transact!(self, Mode::Write, |tx| {
            // The key's row lock first, the strongest (`FOR UPDATE`, what
            // the DELETE needs anyway): concurrent destroyers, grant
            // creators and usage batches (`FOR KEY SHARE`) wait here, and
            // find the key gone or changed, so no usage row is written for
            // a key being destroyed and no lock order can deadlock.
            let stmt = tx
                .prepare_cached(
                    "SELECT revision FROM keys WHERE key_id = $1 AND account_id = $2
                     FOR UPDATE",
                )
                .await?;
            let stored: Option<i64> = match tx.query_opt(&stmt, &[&key_id, &account]).await? {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            };
            if stored.and_then(|r| u64::try_from(r).ok()) != Some(expected_revision) {
                return Err(StoreError::Conflict.into());
            }
            // The foreign keys cascade too; deleting explicitly keeps
            // crypto-shredding independent of that.
            for sql in [
                "DELETE FROM aliases WHERE account_id = $2 AND key_id = $1",
                "DELETE FROM grants WHERE account_id = $2 AND key_id = $1",
            ] {
                let stmt = tx.prepare_cached(sql).await?;
                tx.execute(&stmt, &[&key_id, &account]).await?;
            }
            for sql in [
                "DELETE FROM key_versions WHERE key_id = $1",
                "DELETE FROM key_usage WHERE key_id = $1",
                "DELETE FROM keys WHERE key_id = $1",
            ] {
                let stmt = tx.prepare_cached(sql).await?;
                tx.execute(&stmt, &[&key_id]).await?;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use keywarden_core::clock::UnixMillis;

    use super::*;

    #[test]
    fn due_queries_spell_the_state_for_the_partial_indexes() {
        let (sql, params) = key_query_sql(&KeyQuery {
            rotation_due_by: Some(UnixMillis(5)),
            limit: 3,
            ..KeyQuery::default()
        });
        assert!(
            sql.contains("state = 'Enabled' AND rotation_date IS NOT NULL"),
            "{sql}"
        );
        assert_eq!(params.len(), 2);
    }
}
