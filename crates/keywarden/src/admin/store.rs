//! `keywarden admin backup|restore|migrate-store`: the store as a whole.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keywarden_store_sqlite::SqliteStore;
use serde_json::json;

use crate::setup;
use crate::DataArgs;

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Check the store's integrity: the database's own checks (SQLite) and
    /// every key's material loading, every credential unsealing, every alias
    /// and grant pointing at a key. Prints a report; exit status 1 when
    /// anything is wrong.
    Check {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Write a consistent snapshot of the embedded database to a new file
    /// (safe while servers run). The root key is not in it: back it up
    /// separately (docs/operations.md).
    Backup {
        #[command(flatten)]
        data: DataArgs,
        /// The backup file to create; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the embedded database with a backup. Servers on the data
    /// directory see the restored state at once; stop them first unless
    /// that is what you want.
    Restore {
        #[command(flatten)]
        data: DataArgs,
        /// The backup file (from `keywarden admin backup`).
        #[arg(long)]
        from: PathBuf,
        /// Confirm replacing the current database.
        #[arg(long)]
        yes: bool,
    },
    /// Copy an embedded deployment (its data directory's database) into an
    /// empty PostgreSQL database, keeping every key id, alias, credential
    /// and ciphertext valid. Stop the embedded servers first; start the new
    /// nodes with the same root key file.
    MigrateStore {
        /// The embedded deployment's data directory.
        #[arg(long)]
        from: PathBuf,
        /// The PostgreSQL database (`postgres://...`), which must hold no
        /// accounts, keys or credentials. Prefer the environment variable:
        /// a command line is visible to other local users.
        #[arg(long, env = "KEYWARDEN_DATABASE_URL", hide_env_values = true)]
        to: crate::config::DatabaseUrl,
    },
}

pub async fn run(cmd: StoreCommand) -> Result<()> {
    match cmd {
        StoreCommand::Backup { data, out } => {
            let sqlite = embedded(&data, "backup")?;
            sqlite.backup_to(&out).await.map_err(|e| match e {
                keywarden_core::store::StoreError::AlreadyExists => {
                    anyhow::anyhow!("{} exists already; choose a new file", out.display())
                }
                other => anyhow::anyhow!("writing the backup {}: {other}", out.display()),
            })?;
            let info = SqliteStore::inspect_backup(&out).await?;
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "Backup": out.display().to_string(),
                    "SchemaVersion": info.schema_version,
                    "Accounts": info.accounts,
                    "Keys": info.keys,
                }))?
            );
        }
        StoreCommand::Restore { data, from, yes } => restore(&data, &from, yes).await?,
        StoreCommand::Check { data } => check(&data).await?,
        StoreCommand::MigrateStore { from, to } => migrate(&from, &to).await?,
    }
    Ok(())
}

async fn check(data: &DataArgs) -> Result<()> {
    // Before the database file is opened for its own checks.
    setup::require_deployment(data)?;
    let mut problems = Vec::new();
    if setup::database_url(data)?.is_none() {
        problems.extend(embedded(data, "check")?.integrity_check().await?);
    }
    let opened = setup::open(data).await?;
    let report = opened.kms.check_store().await?;
    problems.extend(report.problems.iter().cloned());
    outln!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "Ok": problems.is_empty(),
            "Accounts": report.accounts,
            "Credentials": report.credentials,
            "Keys": report.keys,
            "VersionsLoaded": report.versions_loaded,
            "VersionsWithoutMaterial": report.versions_skipped,
            "Aliases": report.aliases,
            "Grants": report.grants,
            "Problems": problems,
        }))?
    );
    if !problems.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

/// The embedded database of the data directory, opened without the rest of
/// the service (a backup needs no root key).
fn embedded(data: &DataArgs, what: &str) -> Result<SqliteStore> {
    if setup::database_url(data)?.is_some() {
        bail!(
            "{what} is for the embedded store; this deployment uses PostgreSQL: use pg_dump / \
             pg_basebackup and replication there (docs/operations.md)"
        );
    }
    let path = data.data_dir.join("keywarden.db");
    if !path.is_file() {
        bail!("no database at {}", path.display());
    }
    SqliteStore::open(&path).with_context(|| format!("opening database {}", path.display()))
}

async fn restore(data: &DataArgs, from: &Path, yes: bool) -> Result<()> {
    if setup::database_url(data)?.is_some() {
        bail!("restore is for the embedded store; this deployment uses PostgreSQL (docs/operations.md)");
    }
    let info = SqliteStore::inspect_backup(from)
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", from.display()))?;
    let root_key = data
        .root_key_file
        .clone()
        .unwrap_or_else(|| data.data_dir.join("root.key"));
    if !root_key.exists() {
        bail!(
            "no root key at {}: a backup opens only with the root key it was written under; \
             copy that file there first",
            root_key.display()
        );
    }
    // Only the root key: the live database may be the thing that is broken.
    let config = crate::config::Config::load(data.config.as_deref())?;
    let root = setup::load_root(&config, &root_key)?.root;
    std::fs::create_dir_all(&data.data_dir)?;
    // Check the backup against this root key on a scratch copy first.
    let scratch = tempfile::Builder::new()
        .prefix(".restore-check-")
        .tempdir_in(&data.data_dir)?;
    let staged = SqliteStore::open(&scratch.path().join("keywarden.db"))?;
    staged.restore_from(from).await?;
    if !keywarden_core::ops::accounts::sealer_is_deployments(root.as_ref(), &staged).await? {
        bail!(
            "{} was written under another root key than {}; nothing was changed",
            from.display(),
            root_key.display()
        );
    }
    drop(staged);
    let live_path = data.data_dir.join("keywarden.db");
    if !yes {
        bail!(
            "this replaces every key, alias, account and credential in {} with the {} accounts \
             and {} keys of the backup; run again with --yes",
            live_path.display(),
            info.accounts,
            info.keys
        );
    }
    let how = match SqliteStore::open(&live_path) {
        // In place, in one transaction: running servers see old or new.
        Ok(live) => {
            live.restore_from(from).await?;
            "in place"
        }
        // The live file does not open (corrupt, not a database): replace
        // it. Nothing can be using it.
        Err(e) => {
            eprintln!(
                "the database {} does not open ({e}); replacing the file",
                live_path.display()
            );
            replace_file(from, &live_path)?;
            "file replaced"
        }
    };
    outln!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "Restored": from.display().to_string(),
            "How": how,
            "SchemaVersion": info.schema_version,
            "Accounts": info.accounts,
            "Keys": info.keys,
        }))?
    );
    Ok(())
}

/// Copies `from` over `to` atomically (0600 temporary file beside it,
/// synced, renamed), removing the old file's WAL companions first.
fn replace_file(from: &Path, to: &Path) -> Result<()> {
    use std::io::Write as _;
    let dir = to.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".keywarden.db.restore-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)?;
    std::io::copy(&mut std::fs::File::open(from)?, tmp.as_file_mut())?;
    tmp.as_file_mut().flush()?;
    tmp.as_file().sync_all()?;
    for suffix in ["-wal", "-shm"] {
        let mut companion = to.as_os_str().to_owned();
        companion.push(suffix);
        match std::fs::remove_file(&companion) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    tmp.persist(to).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

async fn migrate(from: &Path, to: &crate::config::DatabaseUrl) -> Result<()> {
    use keywarden_core::dump::DumpStore;
    let path = from.join("keywarden.db");
    if !path.is_file() {
        bail!("no embedded database at {}", path.display());
    }
    let source =
        SqliteStore::open(&path).with_context(|| format!("opening database {}", path.display()))?;
    let target = setup::connect_postgres(to, None).await?;
    let dump = source.export_dump().await?;
    anyhow::ensure!(
        !dump.accounts.is_empty() || !dump.keys.is_empty(),
        "{} holds no accounts or keys: nothing to migrate",
        path.display()
    );
    target.import_dump(&dump).await.map_err(|e| match e {
        keywarden_core::store::StoreError::AlreadyExists => anyhow::anyhow!(
            "{} is not empty (it holds accounts, keys or credentials); migrate into a new database",
            to.redacted()
        ),
        other => anyhow::anyhow!("writing to {}: {other}", to.redacted()),
    })?;
    // A server still writing to the embedded database would lose whatever
    // it writes from now on; catch the ones that wrote during the copy.
    if source.export_dump().await? != dump {
        bail!(
            "{} changed during the migration (is a server still running on it?): {} holds \
             the state from before the change. Stop every server on the data directory, \
             then migrate again into a new, empty database",
            path.display(),
            to.redacted()
        );
    }
    outln!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "From": path.display().to_string(),
            "To": to.redacted(),
            "Accounts": dump.accounts.len(),
            "Keys": dump.keys.len(),
            "Aliases": dump.aliases.len(),
            "Credentials": dump.credentials.len(),
            "Grants": dump.grants.len(),
            "LedgerEntries": dump.ledger.len(),
        }))?
    );
    Ok(())
}
