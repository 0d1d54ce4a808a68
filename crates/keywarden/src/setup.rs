//! Opening a data directory: the root key, the store, the service.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use keywarden_core::clock::SystemClock;
use keywarden_core::kms::KmsParts;
use keywarden_core::store::Store;
use keywarden_core::{Kms, KmsConfig};
use keywarden_protector_soft::{
    Importer, RootKey, SoftKeyImporter, SoftwareProtector, SystemRandom,
};
use keywarden_store_postgres::{PgOptions, PgStore};
use keywarden_store_sqlite::SqliteStore;

use crate::config::DatabaseUrl;

use crate::DataArgs;

/// An opened data directory.
pub struct Opened {
    /// The configuration file's settings (defaults without one).
    pub config: crate::config::Config,
    pub kms: Arc<Kms>,
    /// Whether this call created the root key (first start).
    pub created: bool,
    pub root_key_path: PathBuf,
    /// The root key (seals the audit key).
    pub root: Arc<RootKey>,
    /// Where the store is, for messages: the database file, or the
    /// PostgreSQL URL without user and password.
    pub store_description: String,
}

/// The concrete store behind the service, for the operations only one
/// backend has (backup and restore of the embedded database).
#[derive(Clone, Debug)]
pub enum OpenedStore {
    /// The embedded SQLite file in the data directory.
    Sqlite(SqliteStore),
    /// A PostgreSQL database shared by several nodes.
    Postgres(PgStore),
}

impl OpenedStore {
    fn as_store(&self) -> Arc<dyn Store> {
        match self {
            OpenedStore::Sqlite(s) => Arc::new(s.clone()),
            OpenedStore::Postgres(s) => Arc::new(s.clone()),
        }
    }
}

/// The database URL in effect: `--database-url` / `KEYWARDEN_DATABASE_URL`,
/// else `[database] url` of the configuration file.
pub fn database_url(args: &DataArgs) -> Result<Option<DatabaseUrl>> {
    if let Some(url) = &args.database_url {
        return Ok(Some(url.clone()));
    }
    Ok(crate::config::Config::load(args.config.as_deref())?
        .database
        .url)
}

/// Connects to PostgreSQL, applying pending migrations. TLS follows the
/// URL's `sslmode` and `sslrootcert` (docs/operations.md). Errors name the
/// database without user or password.
pub async fn connect_postgres(url: &DatabaseUrl, pool_size: Option<usize>) -> Result<PgStore> {
    let text = url.expose();
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        anyhow::bail!(
            "the database URL {} is not a postgres:// or postgresql:// URL",
            url.redacted()
        );
    }
    let mut options = PgOptions::default();
    if let Some(n) = pool_size {
        anyhow::ensure!(n > 0, "[database] pool_size must be at least 1");
        options.pool_size = n;
    }
    PgStore::connect(text, options)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {}: {e}", url.redacted()))
}

/// The root key and the custom key stores' protectors (one of which may
/// seal the root key).
pub struct RootParts {
    /// The root key.
    pub root: Arc<RootKey>,
    /// Whether this call created the root key file.
    pub created: bool,
    /// Each configured custom key store with its protector.
    pub hsms: Vec<(
        crate::config::CustomKeyStore,
        Arc<keywarden_protector_pkcs11::Pkcs11Protector>,
    )>,
}

/// Loads (creating on first use) the root key at `root_key_path`, unsealing
/// it with its HSM if `[root_key] sealed_by` says so.
pub fn load_root(
    config: &crate::config::Config,
    root_key_path: &std::path::Path,
) -> Result<RootParts> {
    // The custom key stores' protectors first: one of them may seal the
    // root key.
    let mut hsms = Vec::new();
    for store in &config.custom_key_stores {
        let protector = keywarden_protector_pkcs11::Pkcs11Protector::new(
            keywarden_protector_pkcs11::Pkcs11Config {
                module: store.module.clone(),
                token_label: store.token_label.clone(),
                pin: store.pin()?,
                sessions: store.sessions,
                protector_id: format!(
                    "{}{}",
                    keywarden_core::ops::custom_key_stores::PROTECTOR_PREFIX,
                    store.id
                ),
            },
        )
        .map_err(|e| anyhow::anyhow!("custom key store {}: {e}", store.id))?;
        hsms.push((store.clone(), Arc::new(protector)));
    }
    let (root, created) = match &config.root_key.sealed_by {
        Some(id) => {
            let (_, hsm) = hsms.iter().find(|(s, _)| &s.id == id).ok_or_else(|| {
                anyhow::anyhow!("[root_key] sealed_by = {id:?}: no such custom key store")
            })?;
            crate::sealed_root::load_or_create(root_key_path, hsm.as_ref())?
        }
        None => {
            anyhow::ensure!(
                !crate::sealed_root::is_sealed(root_key_path),
                "root key file {} is sealed by an HSM: configure [root_key] sealed_by and its custom key store (docs/hsm.md)",
                root_key_path.display()
            );
            RootKey::load_or_create(root_key_path)?
        }
    };
    let root = Arc::new(root);
    Ok(RootParts {
        root,
        created,
        hsms,
    })
}

/// Whether a command may start a new deployment: create the data
/// directory, its database and its root key. Only `keywarden serve` and
/// `keywarden admin account create` may; every other command works on a
/// deployment that exists and refuses to make a second, empty one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Create what is missing (first start).
    CreateIfMissing,
    /// The deployment must exist; nothing is created.
    Existing,
}

/// Opens an existing deployment: the data dir, its root key and database
/// ([`Mode::Existing`]). See [`open_with`].
pub async fn open(args: &DataArgs) -> Result<Opened> {
    open_with(args, Mode::Existing).await
}

/// Opens the data dir, its root key and database, creating them on first
/// use when `mode` allows, and registers the seed products (evs, zos, sfs,
/// mysql) if they are not registered yet.
///
/// Refuses, writing nothing, when an embedded data dir holds a database but
/// its root key is missing: a new key could never open that database, and
/// a stray key file beside it would only hide the loss.
pub async fn open_with(args: &DataArgs, mode: Mode) -> Result<Opened> {
    let config = crate::config::Config::load(args.config.as_deref())?;
    let root_key_path = args
        .root_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("root.key"));
    let db_path = args.data_dir.join("keywarden.db");
    let embedded = args.database_url.is_none() && config.database.url.is_none();
    check_deployment(args, mode, embedded, &db_path, &root_key_path)?;
    if !args.data_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&args.data_dir)
            .with_context(|| format!("creating data directory {}", args.data_dir.display()))?;
    }
    let meta = fs::metadata(&args.data_dir)
        .with_context(|| format!("reading data directory {}", args.data_dir.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "{} is not a directory",
        args.data_dir.display()
    );
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            dir = %args.data_dir.display(),
            "data directory is accessible to group or others; chmod 700 is recommended"
        );
    }
    let store = match args.database_url.as_ref().or(config.database.url.as_ref()) {
        Some(url) => OpenedStore::Postgres(connect_postgres(url, config.database.pool_size).await?),
        None => OpenedStore::Sqlite(
            SqliteStore::open(&db_path)
                .with_context(|| format!("opening database {}", db_path.display()))?,
        ),
    };
    // A fresh root key for a database that already holds secrets would
    // only fail the check below, after leaving a useless key file behind.
    if matches!(store, OpenedStore::Postgres(_)) && !root_key_path.exists() {
        let as_store = store.as_store();
        if !as_store.list_accounts().await?.is_empty()
            || !as_store.list_credentials(None).await?.is_empty()
        {
            anyhow::bail!(
                "no root key at {}, and the database already holds accounts: every node \
                 sharing a database needs the same root key file (copy it from the node that \
                 created the database)",
                root_key_path.display()
            );
        }
    }
    let RootParts {
        root,
        created,
        hsms,
    } = load_root(&config, &root_key_path)?;
    let protector = Arc::new(SoftwareProtector::new(root.clone()));
    let importer = SoftKeyImporter::new(Arc::new(Importer::new(root.clone())), protector.clone());
    let kms = Kms::new(KmsParts {
        store: store.as_store(),
        software_protector: protector,
        sealer: root.clone(),
        random: Arc::new(SystemRandom::new()),
        clock: clock(),
        config: KmsConfig {
            region: args.region.clone(),
            other_regions: other_regions(&args.region, &args.regions)?,
            partition: "aws".into(),
        },
    })
    .with_importer(Arc::new(importer))
    .with_public_key_crypto(Arc::new(keywarden_crypto::Crypto))
    .with_billing(config.billing.to_core())
    .with_hsm_connector(Arc::new(crate::hsm_clusters::Clusters::new(&config)?));
    let mut kms = kms;
    // Stores come from the configuration file; "created" is when this
    // process loaded them.
    let loaded_at = kms.clock().now();
    for (store, protector) in hsms {
        kms = kms
            .with_custom_key_store(keywarden_core::ops::custom_key_stores::CustomKeyStore {
                id: store.id.clone(),
                name: store.name.clone(),
                created_at: loaded_at,
                protector,
            })
            .map_err(|e| anyhow::anyhow!("custom key store {}: {e}", store.id))?;
    }
    if !kms.root_key_opens_store().await? {
        anyhow::bail!(
            "the root key {} does not open this database's secrets: it was written under another \
             root key. Every node sharing a database needs the same root key file (copy it from \
             the node that created the database)",
            root_key_path.display()
        );
    }
    kms.register_seed_products()
        .await
        .context("registering the seed products")?;
    // Accounts' custom key stores that are CONNECTED are opened here too.
    for (store, error) in kms
        .sync_custom_key_stores()
        .await
        .context("opening the connected custom key stores")?
    {
        tracing::warn!(
            store,
            ?error,
            "custom key store is CONNECTED but cannot be opened on this node"
        );
    }
    let store_description = match &store {
        OpenedStore::Sqlite(_) => db_path.display().to_string(),
        OpenedStore::Postgres(_) => args
            .database_url
            .as_ref()
            .or(config.database.url.as_ref())
            .map(DatabaseUrl::redacted)
            .unwrap_or_default(),
    };
    Ok(Opened {
        config,
        kms: Arc::new(kms),
        created,
        root_key_path,
        root,
        store_description,
    })
}

/// Checks, opening nothing, that `args` name an existing deployment (see
/// [`Mode::Existing`]): for commands that read the database file directly
/// before opening the service.
pub fn require_deployment(args: &DataArgs) -> Result<()> {
    let config = crate::config::Config::load(args.config.as_deref())?;
    let root_key_path = args
        .root_key_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("root.key"));
    let embedded = args.database_url.is_none() && config.database.url.is_none();
    check_deployment(
        args,
        Mode::Existing,
        embedded,
        &args.data_dir.join("keywarden.db"),
        &root_key_path,
    )
}

/// The checks made before anything is created or opened (see [`Mode`]).
fn check_deployment(
    args: &DataArgs,
    mode: Mode,
    embedded: bool,
    db_path: &std::path::Path,
    root_key_path: &std::path::Path,
) -> Result<()> {
    let dir = args.data_dir.display();
    if embedded && db_path.exists() && !root_key_path.exists() {
        anyhow::bail!(
            "the root key of data directory {dir} is missing: expected it at {}. The database {} \
             holds keys and credentials that open only with the root key they were written \
             under, so no new key is made: put that file back (from your backup of it), or \
             name it with --root-key-file. Nothing was written.",
            root_key_path.display(),
            db_path.display()
        );
    }
    if mode == Mode::CreateIfMissing {
        return Ok(());
    }
    let hint = "pass --data-dir (or set KEYWARDEN_DATA_DIR) with the directory `keywarden serve` \
                uses (default ./keywarden-data); only `keywarden serve` and `keywarden admin \
                account create` start a new one";
    if embedded && !args.data_dir.exists() {
        anyhow::bail!("data directory {dir} does not exist: {hint}");
    }
    if embedded && !db_path.exists() {
        anyhow::bail!(
            "data directory {dir} holds no Keywarden database ({} is missing): {hint}",
            db_path.display()
        );
    }
    // On PostgreSQL the database decides, after connecting: a node of an
    // empty database may make its root key; one of a database that holds
    // accounts is refused with advice to copy the key ([`open_with`]).
    Ok(())
}

/// The service's clock: the system's. Debug builds (the test suite's) also
/// honour `KEYWARDEN_TEST_CLOCK_OFFSET_DAYS`, which moves it forward so a
/// test can make scheduled deletions come due in a real server process;
/// release builds do not read it.
fn clock() -> Arc<dyn keywarden_core::clock::Clock> {
    #[cfg(debug_assertions)]
    if let Some(days) = std::env::var("KEYWARDEN_TEST_CLOCK_OFFSET_DAYS")
        .ok()
        .and_then(|d| d.parse::<i64>().ok())
    {
        tracing::warn!(days, "test clock offset in effect (debug build)");
        return Arc::new(OffsetClock(days * keywarden_core::clock::UnixMillis::DAY));
    }
    Arc::new(SystemClock)
}

/// The system clock moved forward by a fixed number of milliseconds.
#[cfg(debug_assertions)]
struct OffsetClock(i64);

#[cfg(debug_assertions)]
impl keywarden_core::clock::Clock for OffsetClock {
    fn now(&self) -> keywarden_core::clock::UnixMillis {
        keywarden_core::clock::UnixMillis(SystemClock.now().0 + self.0)
    }
}

/// The other regions a deployment serves (`--regions`): region names
/// (lowercase letters, digits and hyphens, as AWS spells them), each once,
/// never the home region.
pub(crate) fn other_regions(home: &str, regions: &[String]) -> anyhow::Result<Vec<String>> {
    let valid = |r: &str| {
        !r.is_empty()
            && r.len() <= 32
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    for r in std::iter::once(home).chain(regions.iter().map(String::as_str)) {
        if !valid(r) {
            anyhow::bail!(
                "{r:?} is not a region name (lowercase letters, digits and hyphens, e.g. eu-west-1)"
            );
        }
    }
    let mut out: Vec<String> = Vec::new();
    for r in regions {
        if r == home {
            anyhow::bail!("--regions lists {r}, the home region (--region); list only the others");
        }
        if out.contains(r) {
            anyhow::bail!("--regions lists {r} twice");
        }
        out.push(r.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod region_tests {
    use super::other_regions;

    #[test]
    fn other_regions_are_checked() {
        let v = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            other_regions("us-east-1", &v(&["eu-west-1", "ap-south-1"])).unwrap(),
            v(&["eu-west-1", "ap-south-1"])
        );
        assert!(other_regions("us-east-1", &v(&[])).unwrap().is_empty());
        assert!(other_regions("us-east-1", &v(&["us-east-1"])).is_err());
        assert!(other_regions("us-east-1", &v(&["eu-west-1", "eu-west-1"])).is_err());
        assert!(other_regions("us-east-1", &v(&["EU west"])).is_err());
        assert!(other_regions("us-east-1", &v(&[""])).is_err());
    }
}
