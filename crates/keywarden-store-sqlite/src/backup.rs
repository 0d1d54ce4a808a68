//! Online backup and restore of the database file
//! (`keywarden admin backup` / `keywarden admin restore`).
//!
//! A backup is `VACUUM INTO` a new file: one read transaction, so the copy
//! is a consistent snapshot of a committed state while servers keep
//! writing, and compact. It is written beside its destination, synced,
//! made 0600 and renamed into place, so a crash never leaves a partial
//! backup under the final name.
//!
//! A restore copies a backup's pages into the live database with SQLite's
//! online backup API, in one write transaction of the live file: every
//! process sharing the file sees either the old state or the restored one.
//! The backup is checked first (`PRAGMA integrity_check`, a schema version
//! this build understands), brought up to the current schema, and the
//! change counter is set past both files' values so every server drops its
//! caches.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use keywarden_core::store::StoreError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Fail, Invalid};
use crate::{backend, blocking, lock, schema, SqliteStore};

/// What a backup file holds, read before it is restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// Its schema version (≤ this build's).
    pub schema_version: i64,
    /// Accounts in it.
    pub accounts: u64,
    /// Keys in it.
    pub keys: u64,
}

impl SqliteStore {
    /// Writes a consistent snapshot of the database to `dest`, which must
    /// not exist. Safe while servers use the database.
    pub async fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        let inner = std::sync::Arc::clone(&self.inner);
        let dest = dest.to_owned();
        blocking(move || {
            if dest.exists() {
                return Err(StoreError::AlreadyExists.into());
            }
            let tmp = temp_beside(&dest);
            let _ = std::fs::remove_file(&tmp);
            let conn = lock(&inner.writer);
            let result = (|| -> Result<(), Fail> {
                // Created empty with mode 0600 first (VACUUM INTO accepts an
                // empty file), so the copy is never readable by others.
                create_private(&tmp)?;
                conn.execute("VACUUM INTO ?1", [tmp.to_string_lossy().as_ref()])?;
                seal_file(&tmp)?;
                std::fs::rename(&tmp, &dest).map_err(backend)?;
                sync_dir(&dest)
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result
        })
        .await
    }

    /// SQLite's own checks of the live file: `PRAGMA integrity_check` and
    /// `PRAGMA foreign_key_check`. Empty when both pass; otherwise one line
    /// per finding (naming tables and row ids, never contents).
    pub async fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let mut problems = Vec::new();
            let mut stmt = tx.prepare("PRAGMA integrity_check")?;
            for line in stmt.query_map([], |r| r.get::<_, String>(0))? {
                let line = line?;
                if line != "ok" {
                    problems.push(format!("integrity_check: {line}"));
                }
            }
            let mut stmt = tx.prepare("PRAGMA foreign_key_check")?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })?;
            for row in rows {
                let (table, rowid, parent) = row?;
                problems.push(format!(
                    "foreign_key_check: {table} row {} refers to a missing {parent} row",
                    rowid.map_or_else(|| "?".to_owned(), |r| r.to_string())
                ));
            }
            Ok(problems)
        })
        .await
    }

    /// Checks a backup file without changing it: integrity, schema version,
    /// what it holds.
    pub async fn inspect_backup(path: &Path) -> Result<BackupInfo, StoreError> {
        let path = path.to_owned();
        blocking(move || inspect(&path)).await
    }

    /// Replaces the whole database with the backup at `src` (see the module
    /// docs). The backup file is not modified.
    pub async fn restore_from(&self, src: &Path) -> Result<(), StoreError> {
        let inner = std::sync::Arc::clone(&self.inner);
        let src = src.to_owned();
        blocking(move || {
            inspect(&src)?;
            // Work on a private copy: bringing it to the current schema
            // writes to it, and the caller's backup stays as it was.
            let copy = temp_beside(&inner.path);
            let _ = std::fs::remove_file(&copy);
            let result = (|| -> Result<(), Fail> {
                create_private(&copy)?;
                std::io::copy(
                    &mut File::open(&src).map_err(backend)?,
                    &mut File::options().write(true).open(&copy).map_err(backend)?,
                )
                .map_err(backend)?;
                let mut staged = Connection::open_with_flags(
                    &copy,
                    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                staged.pragma_update(None, "journal_mode", "DELETE")?;
                schema::migrate(&mut staged)?;
                let restored_counter = counter(&staged)?;
                let mut live = lock(&inner.writer);
                let live_counter = counter(&live)?;
                {
                    let backup = Backup::new(&staged, &mut live)?;
                    // All pages in one step (-1): the live file's write lock
                    // is held for the copy only, not for pauses between
                    // steps. Busy or locked: another process holds the
                    // file's lock for a moment; try again shortly.
                    let deadline = std::time::Instant::now() + Duration::from_secs(30);
                    loop {
                        match backup.step(-1)? {
                            StepResult::Done => break,
                            StepResult::More => {}
                            _ if std::time::Instant::now() < deadline => {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            _ => {
                                return Err(Invalid::new(
                                    "the database stayed locked by another process for 30 s",
                                )
                                .into())
                            }
                        }
                    }
                }
                live.execute(
                    "UPDATE changes SET counter = ?1 WHERE id = 1",
                    [live_counter.max(restored_counter) + 1],
                )?;
                Ok(())
            })();
            let _ = std::fs::remove_file(&copy);
            result
        })
        .await
    }
}

fn inspect(path: &Path) -> Result<BackupInfo, Fail> {
    if !path.is_file() {
        return Err(Invalid::new("the backup file does not exist").into());
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|_| Invalid::new("the backup file is not a SQLite database"))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|_| Invalid::new("the backup file is not a SQLite database"))?;
    if check != "ok" {
        return Err(Invalid::new("the backup file fails SQLite's integrity check").into());
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        return Err(Invalid::new("the backup file is not a Keywarden database").into());
    }
    if version > schema::SCHEMA_VERSION {
        return Err(Invalid::new(
            "the backup was written by a newer Keywarden (schema version above this build's)",
        )
        .into());
    }
    let count = |table: &str| -> Result<u64, Fail> {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .map_err(|_| Invalid::new("the backup file is not a Keywarden database"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(BackupInfo {
        schema_version: version,
        accounts: count("accounts")?,
        keys: count("keys")?,
    })
}

fn counter(conn: &Connection) -> Result<i64, Fail> {
    Ok(conn.query_row("SELECT counter FROM changes WHERE id = 1", [], |r| r.get(0))?)
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    path.with_file_name(name)
}

/// A new empty file, mode 0600.
fn create_private(path: &Path) -> Result<(), Fail> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(backend)
}

/// fsync and 0600.
fn seal_file(path: &Path) -> Result<(), Fail> {
    let file = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(backend)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(backend)?;
    }
    file.sync_all().map_err(backend)
}

fn sync_dir(path: &Path) -> Result<(), Fail> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(backend)
}
