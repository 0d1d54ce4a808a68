//! Keywarden's embedded store: one SQLite database file in the data directory.
//!
//! [`SqliteStore`] implements the store seam of `keywarden-core`
//! ([`KeyStore`], [`AliasStore`], [`AccountStore`], [`CredentialStore`],
//! [`ProductStore`], [`UsageStore`], [`ChangeFeed`], and the others of
//! `keywarden_core::store::Store`, such as `KeyringStore`).
//! Every trait method is one SQLite transaction, run on Tokio's blocking pool
//! so the async executor never waits on disk I/O:
//!
//! * writes go through a single writer connection and take the write lock up
//!   front (`BEGIN IMMEDIATE`), so a transaction that has started never fails
//!   half-way because another connection or process wrote in between;
//! * reads go through a small pool of read-only connections; in WAL mode they
//!   neither block nor are blocked by the writer, and each read transaction
//!   sees everything committed before it began.
//!
//! The file may be opened by several processes at once (the server and the
//! `keywarden admin` CLI): SQLite's file locks serialize writers across
//! processes, and the busy timeout makes a writer wait for the lock instead of
//! failing.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backup;
mod billing;
mod dump;
mod error;
mod keyring;
mod rows;
mod schema;

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, AliasName, KeyId, ProductCode};
use keywarden_core::model::{
    Account, AliasRecord, Credential, CredentialOwner, GrantRecord, KeyRecord, KeyState, KeyUsage,
    KeyVersion, Product, ProductStatus,
};
use keywarden_core::store::{
    AccountStore, AliasStore, ChangeFeed, CredentialStore, DeploymentStore, GrantQuery, GrantStore,
    KeyQuery, KeyStore, ProductStore, StoreError, UsageStore,
};
use rusqlite::types::Value;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};

pub use crate::backup::BackupInfo;
use crate::error::{Fail, Invalid};
use crate::rows::{
    account_from_row, alias_from_row, check_versions, credential_from_row, decode_account,
    decode_product, decode_version, grant_from_row, key_from_row, product_from_row,
    revision_to_sql, rotation_type_to_sql, status_to_sql, usage_from_row, version_from_row,
    KeyColumns, ACCOUNT_COLUMNS, ALIAS_COLUMNS, CREDENTIAL_COLUMNS, GRANT_COLUMNS, KEY_COLUMNS,
    PRODUCT_COLUMNS, USAGE_COLUMNS, VERSION_COLUMNS,
};
use keywarden_core::store_codec::{GrantRow, KeyRow};

/// How long a connection waits for another connection's (or process's) lock
/// before giving up with a backend error.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Read connections kept open next to the writer.
const READERS: usize = 4;

/// Prepared statements cached per connection (`list_keys` and `list_aliases`
/// have a few variants each).
const STATEMENT_CACHE: usize = 64;

/// The embedded SQLite store. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Only ever reads the `changes` counter, which triggers bump on every
    /// commit that changes accounts, credentials, keys or aliases (by any
    /// connection or process), and not on key usage.
    watcher: Mutex<Connection>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("readers", &self.inner.readers.len())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path` and brings its
    /// schema up to date.
    ///
    /// The file is created with mode 0600 before SQLite touches it, and an
    /// existing file (and its `-wal`/`-shm` companions) is tightened to 0600.
    /// Every connection runs with `journal_mode=WAL`, `synchronous=FULL`,
    /// `foreign_keys=ON`, `secure_delete=ON` and a 5 s busy timeout. Pending
    /// migrations are applied in one transaction; a database written by a
    /// newer schema version is refused. Blocking: call it at start-up, or
    /// from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open_inner(path).map_err(|Fail(e)| e)
    }

    fn open_inner(path: &Path) -> Result<SqliteStore, Fail> {
        prepare_file(path).map_err(backend)?;
        let mut writer = connect(path, false)?;
        retry_while_busy(|| {
            let mode: String =
                writer.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                // SQLite answers the old mode when it could not switch.
                return Ok(false);
            }
            schema::migrate(&mut writer)?;
            Ok(true)
        })?;
        let readers = (0..READERS)
            .map(|_| connect(path, true).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let watcher = Mutex::new(connect(path, true)?);
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                writer: Mutex::new(writer),
                readers,
                next_reader: AtomicUsize::new(0),
                watcher,
            }),
        })
    }

    /// Runs `f` inside one write transaction on the writer connection, off
    /// the async executor. The transaction commits if `f` succeeds and rolls
    /// back otherwise.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, Fail> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = lock(&inner.writer);
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` inside one read transaction (a consistent snapshot) on a
    /// read connection, off the async executor.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, Fail> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let mut conn = inner.reader();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

impl Inner {
    /// An idle read connection if there is one, else waits for one (chosen
    /// round-robin so waiters spread over the pool).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let n = self.readers.len();
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            match self.readers[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        lock(&self.readers[start])
    }
}

/// Runs `setup` until it reports success (`Ok(true)`), retrying while it
/// fails because another connection holds a lock or reports that it could
/// not switch the file to WAL mode (`Ok(false)`).
///
/// Needed when several processes open a new file at once: switching it to
/// WAL needs an exclusive lock, and SQLite answers `SQLITE_BUSY` at once,
/// without consulting the busy timeout, where waiting could deadlock.
/// Migrations are one transaction and the WAL switch is idempotent, so a
/// retry is safe. Gives up after [`BUSY_TIMEOUT`].
fn retry_while_busy(mut setup: impl FnMut() -> Result<bool, Fail>) -> Result<(), Fail> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(2);
    loop {
        let failure = match setup() {
            Ok(true) => return Ok(()),
            Ok(false) => Fail::from(Invalid::new(
                "the database could not be switched to WAL mode",
            )),
            Err(e) if e.is_busy() => e,
            Err(e) => return Err(e),
        };
        if Instant::now() >= deadline {
            return Err(failure);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Locks a connection. A panic while it was held cannot leave a transaction
/// open (rusqlite rolls back when a `Transaction` is dropped during
/// unwinding), so a poisoned connection is still fine to use.
fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs blocking SQLite work on Tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Fail> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(|Fail(e)| e),
        Err(join) => Err(StoreError::Backend(Box::new(join))),
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Fail {
    Fail(StoreError::Backend(Box::new(e)))
}

/// Creates the database file with mode 0600 if it is missing and tightens an
/// existing one (and its WAL companions, if present) to 0600.
fn prepare_file(path: &Path) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        for suffix in ["-wal", "-shm"] {
            let mut companion = path.as_os_str().to_owned();
            companion.push(suffix);
            match std::fs::set_permissions(&companion, std::fs::Permissions::from_mode(0o600)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    drop(file);
    Ok(())
}

/// Opens one connection to an existing file and applies the per-connection
/// settings. (`journal_mode` is a property of the file and is set once, by
/// the writer.)
fn connect(path: &Path, read_only: bool) -> Result<Connection, Fail> {
    // No CREATE (the file was made by `prepare_file` with the right mode) and
    // no URI interpretation of the path.
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // FULL: a committed transaction survives power loss, not only a crash.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Overwrite deleted content, so a destroyed key's (wrapped) material does
    // not linger in free pages of the database file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    if read_only {
        conn.pragma_update(None, "query_only", "ON")?;
    }
    let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |row| row.get(0))?;
    if fk != 1 {
        return Err(Invalid::new("this SQLite build does not enforce foreign keys").into());
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A request the store refuses to carry out.
fn invalid(message: &str) -> StoreError {
    StoreError::Backend(Box::new(Invalid::new(message)))
}

/// Validates and encodes a key for writing: its `keys` row and its versions.
fn encode_key(key: &KeyRecord) -> Result<(KeyColumns, Vec<KeyVersion>), Fail> {
    check_versions(key)?;
    Ok((KeyColumns::encode(key)?, key.versions.clone()))
}

/// Converts a page size to an SQL `LIMIT`.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Loads the versions of the key in `row` and decodes it.
fn load_key(tx: &Transaction<'_>, row: KeyRow) -> Result<KeyRecord, Fail> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {VERSION_COLUMNS} FROM key_versions WHERE key_id = ?1 ORDER BY version"
    ))?;
    let versions = stmt
        .query_map([&row.key_id], version_from_row)?
        .map(|r| decode_version(r?))
        .collect::<Result<Vec<_>, Fail>>()?;
    Ok(row.decode(versions)?)
}

/// Inserts the versions that are not stored yet. Of stored ones only the
/// material changes, and only for imported material: given empty, it is
/// cleared (deleted material); stored empty, it takes the given material
/// (re-import). See `KeyStore::update_key`.
/// Inserts a key's row and its versions.
fn insert_key_row(
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

/// Inserts an alias row.
fn insert_alias_row(tx: &Transaction<'_>, alias: &AliasRecord) -> Result<(), Fail> {
    let revision = revision_to_sql(alias.revision)?;
    // The composite foreign key (account_id, key_id) answers
    // MissingReference for a target that is missing or belongs to
    // another account.
    tx.prepare_cached(
        "INSERT INTO aliases (account_id, name, key_id, created_at, updated_at, revision)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        alias.account_id.as_str(),
        alias.name.as_str(),
        alias.target.to_string(),
        alias.created_at.0,
        alias.updated_at.0,
        revision
    ])?;
    Ok(())
}

fn insert_versions(
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
fn key_query_sql(query: &KeyQuery) -> (String, Vec<Value>) {
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

#[async_trait]
impl DeploymentStore for SqliteStore {
    async fn root_key_check(&self, check: &[u8]) -> Result<Vec<u8>, StoreError> {
        let check = check.to_vec();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO deployment (id, root_key_check) VALUES (1, ?1)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute([&check])?;
            Ok(tx
                .prepare_cached("SELECT root_key_check FROM deployment WHERE id = 1")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }
}

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn change_stamp(&self) -> Result<u64, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let conn = lock(&inner.watcher);
            let v: i64 = conn
                .prepare_cached("SELECT counter FROM changes WHERE id = 1")?
                .query_row([], |row| row.get(0))?;
            Ok(v as u64)
        })
        .await
    }
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn record_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError> {
        let usage = usage.to_vec();
        self.write(move |tx| {
            // Only for a key of that account that still exists; an older
            // or equal use never replaces a stored one.
            let mut stmt = tx.prepare_cached(
                "INSERT INTO key_usage (key_id, account_id, used_at, operation, principal, request_id)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6
                 WHERE EXISTS (SELECT 1 FROM keys WHERE key_id = ?1 AND account_id = ?2)
                 ON CONFLICT (key_id) DO UPDATE SET
                     account_id = excluded.account_id, used_at = excluded.used_at,
                     operation = excluded.operation, principal = excluded.principal,
                     request_id = excluded.request_id
                 WHERE excluded.used_at > key_usage.used_at",
            )?;
            for u in &usage {
                stmt.execute(params![
                    u.key_id.to_string(),
                    u.account_id.as_str(),
                    u.used_at.0,
                    u.operation.as_str(),
                    u.principal,
                    u.request_id
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn get_key_usage(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyUsage>, StoreError> {
        let account = account.as_str().to_owned();
        let key_id = key.to_string();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {USAGE_COLUMNS} FROM key_usage WHERE key_id = ?1 AND account_id = ?2"
            ))?
            .query_row([&key_id, &account], usage_from_row)
            .optional()?
            .map(|row| Ok(row.decode()?))
            .transpose()
        })
        .await
    }

    async fn usage_tracking_start(&self) -> Result<UnixMillis, StoreError> {
        self.read(|tx| {
            let t: i64 = tx
                .prepare_cached("SELECT started_at FROM usage_tracking WHERE id = 1")?
                .query_row([], |row| row.get(0))?;
            Ok(UnixMillis(t))
        })
        .await
    }
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
        name: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError> {
        let account = account.as_str().to_owned();
        let name = name.as_str().to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {ALIAS_COLUMNS} FROM aliases WHERE account_id = ?1 AND name = ?2"
            ))?
            .query_row([&account, &name], alias_from_row)
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
                     WHERE account_id = ?4 AND name = ?5 AND revision = ?6",
                )?
                .execute(params![
                    alias.target.to_string(),
                    alias.updated_at.0,
                    revision,
                    alias.account_id.as_str(),
                    alias.name.as_str(),
                    expected
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
        name: &AliasName,
    ) -> Result<bool, StoreError> {
        let account = account.as_str().to_owned();
        let name = name.as_str().to_owned();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("DELETE FROM aliases WHERE account_id = ?1 AND name = ?2")?
                .execute([&account, &name])?;
            Ok(changed > 0)
        })
        .await
    }

    async fn list_aliases(
        &self,
        account: &AccountId,
        target: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let mut values = vec![Value::Text(account.as_str().to_owned())];
        let mut filter = String::from("account_id = ?1");
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

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let account = account.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO accounts (account_id, name, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                account.account_id.as_str(),
                account.name,
                account.created_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?1"
            ))?
            .query_row([&id], account_from_row)
            .optional()?
            .map(decode_account)
            .transpose()
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY account_id"
                ))?
                .query_map([], account_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(decode_account).collect()
        })
        .await
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn create_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        let credential = credential.clone();
        self.write(move |tx| {
            let (account, product) = match &credential.owner {
                CredentialOwner::Account(a) => (Some(a.as_str()), None),
                CredentialOwner::Product(p) => (None, Some(p.as_str())),
            };
            tx.prepare_cached(
                "INSERT INTO credentials
                     (access_key_id, account_id, product_code, sealed_secret, status, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                credential.access_key_id,
                account,
                product,
                credential.sealed_secret,
                status_to_sql(credential.status),
                credential.created_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_credential(&self, access_key_id: &str) -> Result<Option<Credential>, StoreError> {
        let id = access_key_id.to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key_id = ?1"
            ))?
            .query_row([&id], credential_from_row)
            .optional()?
            .map(|row| Ok(row.decode()?))
            .transpose()
        })
        .await
    }

    async fn list_credentials(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<Credential>, StoreError> {
        let account = account.map(|a| a.as_str().to_owned());
        self.read(move |tx| {
            let rows = match &account {
                Some(account) => tx
                    .prepare_cached(&format!(
                        "SELECT {CREDENTIAL_COLUMNS} FROM credentials
                         WHERE account_id = ?1 ORDER BY access_key_id"
                    ))?
                    .query_map([account], credential_from_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY access_key_id"
                    ))?
                    .query_map([], credential_from_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            rows.into_iter().map(|row| Ok(row.decode()?)).collect()
        })
        .await
    }

    async fn revoke_credential(&self, access_key_id: &str) -> Result<bool, StoreError> {
        let id = access_key_id.to_owned();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE credentials SET status = ?1 WHERE access_key_id = ?2")?
                .execute(params![
                    status_to_sql(keywarden_core::model::CredentialStatus::Revoked),
                    id
                ])?;
            Ok(changed > 0)
        })
        .await
    }
}

#[async_trait]
impl ProductStore for SqliteStore {
    async fn create_default_key(
        &self,
        key: &KeyRecord,
        alias: &AliasRecord,
    ) -> Result<(), StoreError> {
        let (cols, versions) = encode_key(key).map_err(|Fail(e)| e)?;
        let alias = alias.clone();
        // The alias goes first: if the name is taken, the transaction rolls
        // back before the key's rows were written, and the caller reads the
        // winner's alias.
        self.write(move |tx| {
            let taken: bool = tx
                .prepare_cached("SELECT 1 FROM aliases WHERE account_id = ?1 AND name = ?2")?
                .query_row([alias.account_id.as_str(), alias.name.as_str()], |_| Ok(()))
                .optional()?
                .is_some();
            if taken {
                return Err(StoreError::AlreadyExists.into());
            }
            insert_key_row(tx, &cols, &versions)?;
            insert_alias_row(tx, &alias)
        })
        .await
    }

    async fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        let product = product.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO products (code, class, status, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                product.code.as_str(),
                product.class.as_str(),
                product.status.as_str(),
                product.created_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_product(&self, code: &ProductCode) -> Result<Option<Product>, StoreError> {
        let code = code.as_str().to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE code = ?1"
            ))?
            .query_row([&code], product_from_row)
            .optional()?
            .map(decode_product)
            .transpose()
        })
        .await
    }

    async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY code"
                ))?
                .query_map([], product_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(decode_product).collect()
        })
        .await
    }

    async fn set_product_status(
        &self,
        code: &ProductCode,
        status: ProductStatus,
    ) -> Result<bool, StoreError> {
        let code = code.as_str().to_owned();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE products SET status = ?1 WHERE code = ?2")?
                .execute(params![status.as_str(), code])?;
            Ok(changed > 0)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
