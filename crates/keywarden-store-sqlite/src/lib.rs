//! Keywarden's embedded store: one SQLite database file in the data directory.
//!
//! [`SqliteStore`] implements the store seam of `keywarden-core`
//! ([`keywarden_core::store::Store`]: `KeyStore`, `AliasStore`,
//! `AccountStore`, `CredentialStore`, `ProductStore`, `UsageStore`,
//! `ChangeFeed` and the others, such as `KeyringStore` and `IamStore`) and
//! [`keywarden_core::dump::DumpStore`], one file per seam, named as in the
//! PostgreSQL store (`keys.rs`, `aliases.rs`, `grants.rs`, `accounts.rs`,
//! `products.rs`, `billing.rs`, `keyrings.rs`, `iam.rs`, `deployment.rs`, `feed.rs`,
//! `dump.rs`); this file opens the store and runs transactions.
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

mod accounts;
mod aliases;
mod backup;
mod billing;
mod custom_key_stores;
mod deployment;
mod dump;
mod error;
mod feed;
mod grants;
mod iam;
mod keyrings;
mod keys;
mod products;
mod rows;
mod schema;

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use keywarden_core::store::StoreError;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

pub use crate::backup::BackupInfo;
use crate::error::{Fail, Invalid};

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

/// Converts a page size to an SQL `LIMIT`.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
