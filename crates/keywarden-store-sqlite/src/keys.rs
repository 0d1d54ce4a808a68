//! Keys and their wrapped material versions (`KeyStore`): the `keys` and
//! `key_versions` rows, and the `KeyQuery` translation.

use async_trait::async_trait;
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::{KeyRecord, KeyState, KeyVersion};
use keywarden_core::store::{KeyQuery, KeyStore, StoreError};
use keywarden_core::store_codec::{decode_account_id, KeyRow};
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::error::Fail;
use crate::rows::{
    check_versions, decode_version, key_from_row, rotation_type_to_sql, version_from_row,
    KeyColumns, KEY_COLUMNS, VERSION_COLUMNS,
};
use crate::{invalid, sql_limit, SqliteStore};

/// Validates and encodes a key for writing: its `keys` row and its versions.
pub(crate) fn encode_key(key: &KeyRecord) -> Result<(KeyColumns, Vec<KeyVersion>), Fail> {
    check_versions(key)?;
    Ok((KeyColumns::encode(key)?, key.versions.clone()))
}

/// Loads the versions of the key in `row` and decodes it.
pub(crate) fn load_key(tx: &Transaction<'_>, row: KeyRow) -> Result<KeyRecord, Fail> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM key_versions WHERE key_id = ?1 ORDER BY version"
    ))?;
    let versions = stmt
        .query_map([&row.key_id], version_from_row)?
        .map(|r| decode_version(r?))
        .collect::<Result<Vec<_>, Fail>>()?;
    Ok(row.decode(versions)?)
}

/// Inserts a key's row and its versions.
pub(crate) fn insert_key_row(
    tx: &Transaction<'_>,
    cols: &KeyColumns,
    versions: &[KeyVersion],
) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO keys (key_id, account_id, revision, state, deletion_date, meta, rotation_date,
                           material_valid_to)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        cols.key_id,
        cols.account_id,
        cols.revision,
        cols.state,
        cols.deletion_date,
        cols.meta,
        cols.rotation_date,
        cols.material_valid_to
    ])?;
    insert_versions(tx, &cols.key_id, versions)
}

/// Inserts the versions that are not stored yet. Of stored ones only the
/// material changes, and only for imported material: given empty, it is
/// cleared (deleted material); stored empty, it takes the given material
/// (re-import). See `KeyStore::update_key`.
pub(crate) fn insert_versions(
    tx: &Transaction<'_>,
    key_id: &str,
    versions: &[KeyVersion],
) -> Result<(), Fail> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO key_versions (key_id, version, protector, material, created_at, rotation_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (key_id, version) DO UPDATE SET material = excluded.material
         WHERE length(excluded.material) = 0 OR length(key_versions.material) = 0",
    )?;
    for v in versions {
        stmt.execute(params![
            key_id,
            v.version,
            v.protector,
            v.material,
            v.created_at.0,
            rotation_type_to_sql(v.rotation)
        ])?;
    }
    Ok(())
}

/// The `SELECT` answering a [`KeyQuery`] (without versions) and its
/// parameters.
pub(crate) fn key_query_sql(query: &KeyQuery) -> (String, Vec<Value>) {
    let mut conditions = Vec::new();
    let mut values = Vec::new();
    if let Some(account) = &query.account {
        values.push(Value::Text(account.as_str().to_owned()));
        conditions.push(format!("account_id = ?{}", values.len()));
    }
    if let Some(after) = &query.after {
        values.push(Value::Text(after.to_string()));
        conditions.push(format!("key_id > ?{}", values.len()));
    }
    if let Some(due) = query.deletion_due_by {
        values.push(Value::Text(KeyState::PendingDeletion.as_str().to_owned()));
        values.push(Value::Integer(due.0));
        conditions.push(format!(
            "state = ?{} AND deletion_date <= ?{}",
            values.len() - 1,
            values.len()
        ));
    }
    if let Some(due) = query.rotation_due_by {
        // Served by the index keys_by_rotation (state, rotation_date).
        values.push(Value::Text(KeyState::Enabled.as_str().to_owned()));
        values.push(Value::Integer(due.0));
        conditions.push(format!(
            "state = ?{} AND rotation_date <= ?{}",
            values.len() - 1,
            values.len()
        ));
    }
    if let Some(due) = query.material_expiry_due_by {
        // Served by the index keys_by_material_valid_to; the column is NULL
        // unless expiring material is present.
        values.push(Value::Integer(due.0));
        conditions.push(format!("material_valid_to <= ?{}", values.len()));
    }
    values.push(Value::Integer(sql_limit(query.limit)));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // With only a range on material_valid_to, the planner would rather scan
    // the primary key in ORDER BY order than sort the (few) due keys.
    let index = if query.material_expiry_due_by.is_some()
        && query.deletion_due_by.is_none()
        && query.rotation_due_by.is_none()
    {
        "INDEXED BY keys_by_material_valid_to "
    } else {
        ""
    };
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM keys {index}{filter} ORDER BY key_id LIMIT ?{}",
        values.len()
    );
    (sql, values)
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let (cols, versions) = encode_key(key).map_err(|Fail(e)| e)?;
        self.write(move |tx| insert_key_row(tx, &cols, &versions))
            .await
    }

    async fn get_key(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let account = account.as_str().to_owned();
        let key_id = key.to_string();
        self.read(move |tx| {
            let row = tx
                .prepare_cached(&format!(
                    "SELECT {KEY_COLUMNS} FROM keys WHERE key_id = ?1 AND account_id = ?2"
                ))?
                .query_row([&key_id, &account], key_from_row)
                .optional()?;
            row.map(|row| load_key(tx, row)).transpose()
        })
        .await
    }

    async fn key_account(&self, key: &KeyId) -> Result<Option<AccountId>, StoreError> {
        let key_id = key.to_string();
        self.read(move |tx| {
            let account: Option<String> = tx
                .prepare_cached("SELECT account_id FROM keys WHERE key_id = ?1")?
                .query_row([&key_id], |row| row.get(0))
                .optional()?;
            Ok(account.as_deref().map(decode_account_id).transpose()?)
        })
        .await
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
        let (cols, versions) = encode_key(key).map_err(|Fail(e)| e)?;
        self.write(move |tx| {
            let changed = tx
                .prepare_cached(
                    "UPDATE keys SET revision = ?1, state = ?2, deletion_date = ?3, meta = ?4,
                                     rotation_date = ?5, material_valid_to = ?6
                     WHERE key_id = ?7 AND account_id = ?8 AND revision = ?9",
                )?
                .execute(params![
                    cols.revision,
                    cols.state,
                    cols.deletion_date,
                    cols.meta,
                    cols.rotation_date,
                    cols.material_valid_to,
                    cols.key_id,
                    cols.account_id,
                    expected
                ])?;
            if changed == 0 {
                return Err(StoreError::Conflict.into());
            }
            insert_versions(tx, &cols.key_id, &versions)
        })
        .await
    }

    async fn list_keys(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        let (sql, values) = key_query_sql(query);
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&sql)?
                .query_map(rusqlite::params_from_iter(values), key_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|row| load_key(tx, row)).collect()
        })
        .await
    }

    async fn destroy_key(
        &self,
        account: &AccountId,
        key: &KeyId,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        let account = account.as_str().to_owned();
        let key_id = key.to_string();
        self.write(move |tx| {
            let stored: Option<i64> = tx
                .prepare_cached("SELECT revision FROM keys WHERE key_id = ?1 AND account_id = ?2")?
                .query_row([&key_id, &account], |row| row.get(0))
                .optional()?;
            if stored.and_then(|r| u64::try_from(r).ok()) != Some(expected_revision) {
                return Err(StoreError::Conflict.into());
            }
            // The foreign keys cascade too; deleting explicitly keeps
            // crypto-shredding independent of that.
            tx.prepare_cached("DELETE FROM aliases WHERE account_id = ?1 AND key_id = ?2")?
                .execute([&account, &key_id])?;
            tx.prepare_cached("DELETE FROM grants WHERE account_id = ?1 AND key_id = ?2")?
                .execute([&account, &key_id])?;
            tx.prepare_cached("DELETE FROM key_versions WHERE key_id = ?1")?
                .execute([&key_id])?;
            tx.prepare_cached("DELETE FROM key_usage WHERE key_id = ?1")?
                .execute([&key_id])?;
            tx.prepare_cached("DELETE FROM keys WHERE key_id = ?1")?
                .execute([&key_id])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::Connection;

    use super::*;
    use crate::{lock, schema};
    use keywarden_core::clock::UnixMillis;
    use keywarden_core::model::{KeyManager, Origin, Tag};

    const KEY_ID: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";
    const ACCOUNT: &str = "111122223333";

    /// A database as the first release left it: schema version 1, and a key
    /// row whose `meta` has only the fields that release wrote.
    fn first_release_database(path: &Path) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(schema::MIGRATION_1).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        conn.execute(
            "INSERT INTO keys (key_id, account_id, revision, state, deletion_date, meta)
             VALUES (?1, ?2, 3, 'Disabled', NULL, ?3)",
            params![
                KEY_ID,
                ACCOUNT,
                r#"{"description":"old","origin":"AwsKms","key_manager":"Customer","created_at":1700000000000,"pending_window_days":null,"tags":[{"key":"k","value":"v"}],"policy":null}"#
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO key_versions (key_id, version, protector, material, created_at)
             VALUES (?1, 1, 'soft', x'0102', 1700000000000)",
            [KEY_ID],
        )
        .unwrap();
    }

    #[tokio::test]
    async fn rows_written_before_rotation_existed_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        first_release_database(&path);

        let store = SqliteStore::open(&path).unwrap();
        let account = AccountId::parse(ACCOUNT).unwrap();
        let key_id = KeyId::parse(KEY_ID).unwrap();
        let old = store.get_key(&account, &key_id).await.unwrap().unwrap();
        assert_eq!(
            old,
            KeyRecord {
                key_id,
                account_id: account.clone(),
                revision: 3,
                description: "old".into(),
                state: KeyState::Disabled,
                origin: Origin::AwsKms,
                key_manager: KeyManager::Customer,
                created_at: UnixMillis(1_700_000_000_000),
                deletion_date: None,
                pending_window_days: None,
                tags: vec![Tag {
                    key: "k".into(),
                    value: "v".into(),
                }],
                policy: None,
                versions: vec![KeyVersion {
                    version: 1,
                    protector: "soft".into(),
                    material: vec![1, 2],
                    created_at: UnixMillis(1_700_000_000_000),
                    rotation: None,
                }],
                rotation: None,
                on_demand_rotations: 0,
                deletion_protection: false,
                import: None,
                default_for: None,
                kind: keywarden_core::key_spec::KeyKind::default(),
                region: None,
                multi_region: None,
            }
        );
        let version: i64 = lock(&store.inner.writer)
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, schema::SCHEMA_VERSION);

        // The migrated row takes the new fields like any other.
        let mut updated = old.clone();
        updated.revision = 4;
        updated.state = KeyState::Enabled;
        updated.rotation = Some(keywarden_core::model::AutoRotation {
            period_days: 90,
            next_rotation: UnixMillis(1_700_000_000_001),
        });
        updated.deletion_protection = true;
        store.update_key(&updated, 3).await.unwrap();
        assert_eq!(
            store.get_key(&account, &key_id).await.unwrap(),
            Some(updated.clone())
        );
        let due = store
            .list_keys(&KeyQuery {
                rotation_due_by: Some(UnixMillis(1_700_000_000_001)),
                material_expiry_due_by: None,
                limit: 10,
                ..KeyQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(due, vec![updated]);
    }

    #[test]
    fn a_rotation_date_without_a_period_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.db");
        first_release_database(&path);
        drop(SqliteStore::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE keys SET rotation_date = 5", [])
            .unwrap();
        let store = SqliteStore::open(&path).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(store.get_key(
            &AccountId::parse(ACCOUNT).unwrap(),
            &KeyId::parse(KEY_ID).unwrap(),
        ));
        assert!(matches!(got, Err(StoreError::Backend(_))), "{got:?}");
    }

    /// The executors' questions are range scans of their indexes, not
    /// scans of every key.
    #[test]
    fn due_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.db");
        let store = SqliteStore::open(&path).unwrap();
        let conn = lock(&store.inner.writer);
        let plan = |query: &KeyQuery| {
            let (sql, values) = key_query_sql(query);
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let details: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(values), |row| row.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            details.join("; ")
        };
        for after in [None, Some(KeyId::from_bytes([7; 16]))] {
            let rotation = plan(&KeyQuery {
                after,
                rotation_due_by: Some(UnixMillis(1)),
                material_expiry_due_by: None,
                limit: 256,
                ..KeyQuery::default()
            });
            assert!(rotation.contains("keys_by_rotation"), "{rotation}");
            let deletion = plan(&KeyQuery {
                after,
                deletion_due_by: Some(UnixMillis(1)),
                limit: 256,
                ..KeyQuery::default()
            });
            assert!(deletion.contains("keys_by_deletion"), "{deletion}");
            let expiry = plan(&KeyQuery {
                after,
                material_expiry_due_by: Some(UnixMillis(1)),
                limit: 256,
                ..KeyQuery::default()
            });
            assert!(expiry.contains("keys_by_material_valid_to"), "{expiry}");
        }
    }
}
