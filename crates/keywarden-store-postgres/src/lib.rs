//! Keywarden's shared store: PostgreSQL, for several nodes on one database.
//!
//! [`PgStore`] implements the whole store seam of `keywarden-core`
//! ([`keywarden_core::store::Store`]) and [`DumpStore`]. It records exactly
//! what the SQLite store records, encoded by the same code
//! (`keywarden_core::store_codec`), so a dump moves between the two
//! unchanged.
//!
//! # Transactions
//!
//! Every trait method is one transaction on a pooled connection
//! (deadpool-postgres, [`PgOptions::pool_size`] connections):
//!
//! * reads are `REPEATABLE READ, READ ONLY`: one snapshot for a key and its
//!   versions, or a balance and its frozen flag;
//! * writes are `READ COMMITTED`. Compare-and-set is `UPDATE ... WHERE
//!   revision = $expected` and the number of rows it changed. Where a method
//!   reads before it writes, it first locks the row that serializes it
//!   across processes: the key (`FOR NO KEY UPDATE`) for `create_grant`'s
//!   limits and `destroy_key`'s revision check, the account for the
//!   ledger's `post_charges` and `append_top_up`, so two nodes never both
//!   post a month's charge; `create_default_key` relies on the alias's
//!   primary key (the loser's insert fails and its key is rolled back);
//!   metering batches on the batch id's primary key; the keyring
//!   (`FOR UPDATE`) for `add_keyring_key_version`, so of racing rotations
//!   to one version exactly one wins.
//! * Unique violations (SQLSTATE 23505) answer `AlreadyExists`, foreign-key
//!   violations (23503) `MissingReference`; serialization failures and
//!   deadlocks (40001, 40P01) run the transaction again, a few times.
//!
//! # Outages
//!
//! A dead server answers [`StoreError::Unavailable`] within about
//! [`PgOptions::connect_timeout`]: pooled connections the server closed are
//! discarded when taken from the pool, a connection on which a call failed
//! for connection reasons is never returned to it, new connections time
//! out, and waiting for a free connection is bounded by
//! [`PgOptions::pool_wait_timeout`]. Once the server is back the same store
//! works again. Error messages never contain the URL's password.
//!
//! # Change feed and coherence
//!
//! `change_stamp` never queries: it reads a local stamp, moved by this
//! store's own commits at once, by `NOTIFY keywarden_changes` from any
//! node's commit (sent by the change triggers, received by a background
//! task on a dedicated `LISTEN` connection), and by a poll of the change
//! counter every [`PgOptions::stamp_poll_interval`] (missed notifications,
//! reconnections; after a reconnection the stamp moves anyway). So a
//! server's caches learn of another node's change after the notification
//! latency (milliseconds) normally, and at most `stamp_poll_interval` when
//! notifications are lost, plus the server's cache refresh period (100 ms).
//! The task stops when the last handle of the store is dropped.
//! While the listener is disconnected (or silent for two poll intervals
//! plus the connect timeout), `change_stamp` answers
//! [`StoreError::Unavailable`]: the server then knows its caches are
//! unchecked and applies its outage policy.
//!
//! # TLS
//!
//! Every connection (the pool's and the change listener's) uses the TLS
//! settings of the URL's `sslmode` and `sslrootcert` parameters, as libpq
//! reads them: `disable`, `prefer` (the default), `require`, `verify-ca`,
//! `verify-full` (the CA certificates of `sslrootcert` and the host name
//! checked; recommended). See the `tls` module and docs/operations.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod billing;
mod dump;
mod error;
mod feed;
mod keyring;
mod rows;
mod schema;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, AliasName, KeyId, ProductCode};
use keywarden_core::model::{
    Account, AliasRecord, Credential, CredentialStatus, GrantRecord, KeyRecord, KeyState, KeyUsage,
    KeyVersion, Product, ProductStatus,
};
use keywarden_core::store::{
    AccountStore, AliasStore, ChangeFeed, CredentialStore, DeploymentStore, GrantQuery, GrantStore,
    KeyQuery, KeyStore, ProductStore, StoreError, UsageStore,
};
use keywarden_core::store_codec::{
    check_versions, credential_owner_columns, decode_account, decode_product, revision_to_sql,
    rotation_type_to_sql, status_to_sql, GrantRow, KeyColumns, KeyRow,
};
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, SimpleQueryMessage};

use crate::error::{classify, Fail, Invalid};
use crate::feed::{Feed, Listener};
use crate::rows::{
    account_from_row, alias_from_row, credential_from_row, grant_from_row, key_from_row,
    product_from_row, usage_from_row, version_from_row, ACCOUNT_COLUMNS, ALIAS_COLUMNS,
    CREDENTIAL_COLUMNS, GRANT_COLUMNS, KEY_COLUMNS, PRODUCT_COLUMNS, USAGE_COLUMNS,
    VERSION_COLUMNS,
};

pub use keywarden_core::dump::DumpStore;

/// How often a transaction aborted by a serialization failure or a
/// deadlock is run again before the failure is answered.
const RETRIES: u32 = 5;

/// How long sent data may stay unacknowledged before a connection counts
/// as dead (Linux `TCP_USER_TIMEOUT`).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);

/// How a [`PgStore`] connects and how closely it follows other nodes.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Pooled connections (default 16).
    pub pool_size: usize,
    /// Bound on establishing one connection, and on taking a pooled one
    /// back into use (default 3 s).
    pub connect_timeout: Duration,
    /// Bound on waiting for a free pooled connection (default 3 s); past it
    /// a call answers [`StoreError::Unavailable`].
    pub pool_wait_timeout: Duration,
    /// How often the change counter is polled, the change feed's fallback
    /// for lost notifications (default 500 ms).
    pub stamp_poll_interval: Duration,
    /// Whether to `LISTEN` for change notifications (default true; false
    /// only to test the polling fallback).
    pub listen: bool,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 16,
            connect_timeout: Duration::from_secs(3),
            pool_wait_timeout: Duration::from_secs(3),
            stamp_poll_interval: Duration::from_millis(500),
            listen: true,
        }
    }
}

/// The PostgreSQL store. Cheap to clone; clones share the pool and the
/// change feed, which stops with the last clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    feed: Arc<Feed>,
    /// How long the change listener may go without hearing from the
    /// database before `change_stamp` answers `Unavailable`.
    max_silence: Duration,
    /// `user@host:port/db`, for `Debug`: never the password.
    target: String,
    /// Dropped with the last handle, which stops the listener task.
    _stop: oneshot::Sender<()>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.inner.target)
            .field("pool_size", &self.inner.pool.status().max_size)
            .finish_non_exhaustive()
    }
}

/// Which kind of transaction a method runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `REPEATABLE READ, READ ONLY`: one snapshot.
    Read,
    /// `READ COMMITTED`, moving the change stamp: reads the change counter
    /// before committing, and the feed observes it after.
    Write,
    /// `READ COMMITTED`, for writes to tables caches do not hold (key
    /// usage, metering), which must not move the change stamp. (The ledger
    /// methods use `Write`: they may change the frozen flag.)
    Quiet,
}

/// A pooled connection's transaction.
type Tx<'a> = deadpool_postgres::Transaction<'a>;

/// Runs `$body` (an expression using `$tx` and `?`, whose `return`s leave
/// the transaction with an error) inside one transaction of kind `$mode`,
/// committing if it succeeds. Serialization failures and deadlocks run it
/// again; a connection that failed is not returned to the pool. A macro
/// rather than a function taking a closure, because the body borrows the
/// transaction across awaits.
macro_rules! transact {
    ($store:expr, $mode:expr, |$tx:ident| $body:expr) => {{
        let store: &$crate::PgStore = $store;
        let mode: $crate::Mode = $mode;
        let mut attempt: u32 = 0;
        loop {
            let outcome = async {
                let mut client = store
                    .inner
                    .pool
                    .get()
                    .await
                    .map_err($crate::error::Fail::from)?;
                let result = async {
                    let $tx = $crate::begin(&mut client, mode).await?;
                    let out = $body;
                    let counter = $crate::end($tx, mode).await?;
                    Ok::<_, $crate::error::Fail>((out, counter))
                }
                .await;
                if let Err(fail) = &result {
                    if fail.is_unavailable() {
                        drop(::deadpool_postgres::Object::take(client));
                    }
                }
                result
            }
            .await;
            match outcome {
                Ok((out, counter)) => {
                    if let Some(counter) = counter {
                        store.inner.feed.observe(counter);
                    }
                    break Ok(out);
                }
                Err(fail) if fail.retryable && attempt < $crate::RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(::std::time::Duration::from_millis(5 * u64::from(attempt)))
                        .await;
                }
                Err(fail) => break Err::<_, ::keywarden_core::store::StoreError>(fail.error),
            }
        }
    }};
}

pub(crate) use transact;

/// Opens a transaction of kind `mode`.
async fn begin(client: &mut Object, mode: Mode) -> Result<Tx<'_>, Fail> {
    let builder = client.build_transaction();
    let tx = match mode {
        Mode::Read => {
            builder
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?
        }
        Mode::Write | Mode::Quiet => {
            builder
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .await?
        }
    };
    Ok(tx)
}

/// Commits; for [`Mode::Write`], first fires the deferred change triggers
/// and answers the change counter this transaction leaves.
async fn end(tx: Tx<'_>, mode: Mode) -> Result<Option<i64>, Fail> {
    let counter = if mode == Mode::Write {
        let messages = tx
            .simple_query(&format!(
                "SET CONSTRAINTS ALL IMMEDIATE; {}",
                feed::COUNTER_SQL
            ))
            .await?;
        let value = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse::<i64>().ok()),
            _ => None,
        });
        Some(value.ok_or_else(|| Invalid::new("the change counter is missing"))?)
    } else {
        None
    };
    tx.commit().await?;
    Ok(counter)
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:pass@host:port/db`
    /// or the `key=value` form), applies pending migrations under an
    /// advisory lock (several nodes starting together migrate once), builds
    /// the pool and starts the change listener.
    ///
    /// TLS follows the URL's `sslmode` (`disable`, `prefer` (default),
    /// `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file
    /// of CA certificates, required by `verify-ca` and `verify-full`), as
    /// libpq reads them; `verify-ca`, `verify-full` and `sslrootcert` only
    /// in the URL form. A failed handshake answers an error naming the
    /// server and what the check found, never the URL.
    ///
    /// Refuses a database whose schema is newer than this build
    /// ([`PgStore::schema_version`]). Must be called inside a Tokio runtime.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        Self::connect_inner(url, options).await.map_err(|f| f.error)
    }

    /// The schema version this build creates and understands.
    pub fn schema_version() -> i64 {
        schema::SCHEMA_VERSION
    }

    /// Whether this store's sessions are encrypted (`pg_stat_ssl` of one
    /// pooled session), for checks and diagnostics.
    pub async fn session_encrypted(&self) -> Result<bool, StoreError> {
        let query = async {
            let client = self.inner.pool.get().await?;
            let row = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            Ok::<bool, Fail>(row.try_get(0)?)
        };
        query.await.map_err(|f| f.error)
    }

    async fn connect_inner(url: &str, options: PgOptions) -> Result<PgStore, Fail> {
        let tls::Target {
            mut config,
            tls,
            mode,
            unverified,
        } = tls::parse(url)?;
        // Keepalives find idle connections to a vanished host; the user
        // timeout bounds a request the host never acknowledges (a lock
        // wait sends nothing, so it is not cut short by it).
        config
            .connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .application_name("keywarden");
        let target = describe(&config);
        if unverified {
            tracing::warn!(
                "postgres store: sslmode={mode} without sslrootcert: the database's certificate \
                 is not checked, so the connection is not protected against an active \
                 attacker; use sslmode=verify-full with sslrootcert"
            );
        }

        // Migrations, on a session of their own (the advisory lock is the
        // session's).
        let (mut client, connection) = config
            .connect(tls.clone())
            .await
            .map_err(|e| connect_failure(e, &config))?;
        let driver = tokio::spawn(connection);
        let migrated = schema::migrate(&mut client).await;
        drop(client);
        let _ = driver.await;
        migrated?;

        // Server-side bounds for the pool's sessions: a transaction left
        // open by a node that vanished releases its locks after 10 s, and
        // no call waits on a lock for more than 5 s or runs for more than
        // 60 s (each answers Unavailable, retryable). The operator's own
        // `options` in the URL come first and are kept.
        let mut pooled = config.clone();
        let bounds = "-c idle_in_transaction_session_timeout=10000 -c lock_timeout=5000 \
                      -c statement_timeout=60000";
        let options_text = match config.get_options() {
            Some(own) if !own.is_empty() => format!("{own} {bounds}"),
            _ => bounds.to_owned(),
        };
        pooled.options(&options_text);
        let manager = Manager::from_config(
            pooled,
            tls.clone(),
            ManagerConfig {
                // Fast: a connection the server closed is detected when
                // taken (its client is closed); one that fails during a
                // call is discarded by `transact!`. No extra round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.pool_wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(Box::new(e)))?;

        let counter: i64 = {
            let client = pool.get().await?;
            client.query_one(feed::COUNTER_SQL, &[]).await?.try_get(0)?
        };
        let feed = Arc::new(Feed::new(counter));
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let listener = Listener {
            feed: Arc::clone(&feed),
            config,
            tls,
            listen: options.listen,
            poll_interval: options.stamp_poll_interval,
            query_timeout: options.connect_timeout,
        };
        tokio::spawn(listener.run(stop_rx, ready_tx));
        // Wait for the listener to listen, so that changes right after
        // `connect` are noticed by notification; if it cannot connect now
        // it keeps trying in the background.
        let _ = tokio::time::timeout(options.connect_timeout, ready_rx).await;
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                feed,
                max_silence: options.stamp_poll_interval * 2 + options.connect_timeout,
                target,
                _stop: stop_tx,
            }),
        })
    }
}

/// Why the first connection failed, naming the server(s) (`host:port`)
/// and what failed: the TLS check, the server's refusal, or the network.
/// Never the URL or its password.
fn connect_failure(e: tokio_postgres::Error, config: &tokio_postgres::Config) -> Fail {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(h, port)| match h {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let server = hosts.join(",");
    if let Some(why) = tls::handshake_failure(&e) {
        return Invalid::new(format!("TLS handshake with {server} failed: {why}")).into();
    }
    let detail = match e.as_db_error() {
        Some(db) => format!("{server} refused the connection: {db}"),
        None => {
            let mut text = format!("connecting to {server} failed: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    };
    let fail = classify(e);
    let described: Box<dyn std::error::Error + Send + Sync> = Box::new(Invalid::new(detail));
    match fail.error {
        StoreError::Unavailable(_) => StoreError::Unavailable(described).into(),
        _ => StoreError::Backend(described).into(),
    }
}

/// `user@host:port/db` for `Debug` output: everything but the password.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// A request the store refuses to carry out.
fn invalid(message: &str) -> StoreError {
    StoreError::Backend(Box::new(Invalid::new(message)))
}

/// Converts a page size to an SQL `LIMIT`.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A boxed statement parameter, for queries built at run time.
type Param = Box<dyn ToSql + Sync + Send>;

/// Borrows boxed parameters the way `query` takes them.
fn param_refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Validates and encodes a key for writing: its `keys` row and its versions.
fn encode_key(key: &KeyRecord) -> Result<(KeyColumns, Vec<KeyVersion>), StoreError> {
    let encode = || -> Result<_, Fail> {
        check_versions(key)?;
        Ok((KeyColumns::encode(key)?, key.versions.clone()))
    };
    encode().map_err(|f| f.error)
}

/// Loads the versions of the keys in `rows` (one query) and decodes them.
async fn load_keys(tx: &Tx<'_>, rows: Vec<KeyRow>) -> Result<Vec<KeyRecord>, Fail> {
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
async fn insert_key_row(
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
async fn insert_versions(tx: &Tx<'_>, key_id: &str, versions: &[KeyVersion]) -> Result<(), Fail> {
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

/// Inserts an alias row. The composite foreign key (account_id, key_id)
/// answers `MissingReference` for a target that is missing or belongs to
/// another account.
async fn insert_alias_row(tx: &Tx<'_>, alias: &AliasRecord) -> Result<(), Fail> {
    let revision = revision_to_sql(alias.revision)?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO aliases (account_id, name, key_id, created_at, updated_at, revision)
             VALUES ($1, $2, $3, $4, $5, $6)",
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
        ],
    )
    .await?;
    Ok(())
}

/// The `SELECT` answering a [`KeyQuery`] (without versions) and its
/// parameters. States are literals, so the partial indexes of the due
/// queries apply.
fn key_query_sql(query: &KeyQuery) -> (String, Vec<Param>) {
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

#[async_trait]
impl DeploymentStore for PgStore {
    async fn root_key_check(&self, check: &[u8]) -> Result<Vec<u8>, StoreError> {
        transact!(self, Mode::Quiet, |tx| {
            // Racing first callers: the primary key lets one insert win;
            // the others' DO NOTHING waits for it, then everyone reads it.
            let insert = tx
                .prepare_cached(
                    "INSERT INTO deployment (id, root_key_check) VALUES (1, $1)
                     ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            tx.execute(&insert, &[&check]).await?;
            let read = tx
                .prepare_cached("SELECT root_key_check FROM deployment WHERE id = 1")
                .await?;
            tx.query_one(&read, &[]).await?.try_get::<_, Vec<u8>>(0)?
        })
    }
}

#[async_trait]
impl ChangeFeed for PgStore {
    /// The local stamp, or [`StoreError::Unavailable`] while the change
    /// listener is disconnected or has not heard from the database for two
    /// poll intervals plus the connect timeout: then nothing vouches that
    /// the stamp follows the database, and a server must not treat its
    /// caches as checked.
    async fn change_stamp(&self) -> Result<u64, StoreError> {
        if !self.inner.feed.in_touch(self.inner.max_silence) {
            return Err(StoreError::Unavailable(
                "the change listener is not in touch with the database".into(),
            ));
        }
        Ok(self.inner.feed.stamp())
    }
}

#[async_trait]
impl UsageStore for PgStore {
    async fn record_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError> {
        // Per (key, account), the newest use (the first of equals, as
        // entry-by-entry upserts would keep): one upsert row per key, so
        // the statement never touches a row twice.
        let mut newest: HashMap<(String, &str), &KeyUsage> = HashMap::new();
        for u in usage {
            newest
                .entry((u.key_id.to_string(), u.account_id.as_str()))
                .and_modify(|kept| {
                    if u.used_at > kept.used_at {
                        *kept = u;
                    }
                })
                .or_insert(u);
        }
        if newest.is_empty() {
            return Ok(());
        }
        let mut entries: Vec<(String, &KeyUsage)> =
            newest.into_iter().map(|((k, _), u)| (k, u)).collect();
        // One lock order for every batch: no deadlocks between nodes.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.account_id.cmp(&b.1.account_id)));
        let key_ids: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        let accounts: Vec<&str> = entries.iter().map(|(_, u)| u.account_id.as_str()).collect();
        let used_at: Vec<i64> = entries.iter().map(|(_, u)| u.used_at.0).collect();
        let operations: Vec<&str> = entries.iter().map(|(_, u)| u.operation.as_str()).collect();
        let principals: Vec<&str> = entries.iter().map(|(_, u)| u.principal.as_str()).collect();
        let requests: Vec<&str> = entries.iter().map(|(_, u)| u.request_id.as_str()).collect();
        transact!(self, Mode::Quiet, |tx| {
            // Only keys of that account that still exist; `FOR KEY SHARE`
            // makes a concurrent destroy_key wait for this batch (or this
            // batch for it), so no usage row outlives its key.
            let stmt = tx
                .prepare_cached(
                    "WITH batch AS (
                         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
                                              $5::text[], $6::text[])
                             AS b(key_id, account_id, used_at, operation, principal, request_id)
                     ),
                     live AS (
                         SELECT k.key_id, k.account_id FROM keys k JOIN batch b
                             ON k.key_id = b.key_id AND k.account_id = b.account_id
                         ORDER BY k.key_id FOR KEY SHARE OF k
                     )
                     INSERT INTO key_usage (key_id, account_id, used_at, operation, principal,
                                            request_id)
                     SELECT b.key_id, b.account_id, b.used_at, b.operation, b.principal,
                            b.request_id
                     FROM batch b JOIN live l ON l.key_id = b.key_id AND l.account_id = b.account_id
                     ORDER BY b.key_id
                     ON CONFLICT (key_id) DO UPDATE SET
                         account_id = excluded.account_id, used_at = excluded.used_at,
                         operation = excluded.operation, principal = excluded.principal,
                         request_id = excluded.request_id
                     WHERE excluded.used_at > key_usage.used_at",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &key_ids,
                    &accounts,
                    &used_at,
                    &operations,
                    &principals,
                    &requests,
                ],
            )
            .await?;
        })
    }

    async fn get_key_usage(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyUsage>, StoreError> {
        let key_id = key.to_string();
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {USAGE_COLUMNS} FROM key_usage WHERE key_id = $1 AND account_id = $2"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&key_id, &account.as_str()]).await? {
                Some(row) => Some(usage_from_row(&row)?.decode()?),
                None => None,
            }
        })
    }

    async fn usage_tracking_start(&self) -> Result<UnixMillis, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached("SELECT started_at FROM usage_tracking WHERE id = 1")
                .await?;
            UnixMillis(tx.query_one(&stmt, &[]).await?.try_get(0)?)
        })
    }
}

#[async_trait]
impl AliasStore for PgStore {
    async fn create_alias(&self, alias: &AliasRecord) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| insert_alias_row(&tx, alias).await?)
    }

    async fn get_alias(
        &self,
        account: &AccountId,
        name: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ALIAS_COLUMNS} FROM aliases WHERE account_id = $1 AND name = $2"
                ))
                .await?;
            match tx
                .query_opt(&stmt, &[&account.as_str(), &name.as_str()])
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
                     WHERE account_id = $4 AND name = $5 AND revision = $6",
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
        name: &AliasName,
    ) -> Result<bool, StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached("DELETE FROM aliases WHERE account_id = $1 AND name = $2")
                .await?;
            tx.execute(&stmt, &[&account.as_str(), &name.as_str()])
                .await?
                > 0
        })
    }

    async fn list_aliases(
        &self,
        account: &AccountId,
        target: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        let mut params: Vec<Param> = vec![Box::new(account.as_str().to_owned())];
        let mut filter = String::from("account_id = $1");
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

#[async_trait]
impl AccountStore for PgStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO accounts (account_id, name, created_at) VALUES ($1, $2, $3)",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &account.account_id.as_str(),
                    &account.name,
                    &account.created_at.0,
                ],
            )
            .await?;
        })
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&id.as_str()]).await? {
                Some(row) => Some(decode_account(account_from_row(&row)?)?),
                None => None,
            }
        })
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY account_id"
                ))
                .await?;
            tx.query(&stmt, &[])
                .await?
                .iter()
                .map(|row| Ok(decode_account(account_from_row(row)?)?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn create_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        let (account, product) = credential_owner_columns(&credential.owner);
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO credentials
                         (access_key_id, account_id, product_code, sealed_secret, status,
                          created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &credential.access_key_id,
                    &account,
                    &product,
                    &credential.sealed_secret,
                    &status_to_sql(credential.status),
                    &credential.created_at.0,
                ],
            )
            .await?;
        })
    }

    async fn get_credential(&self, access_key_id: &str) -> Result<Option<Credential>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key_id = $1"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&access_key_id]).await? {
                Some(row) => Some(credential_from_row(&row)?.decode()?),
                None => None,
            }
        })
    }

    async fn list_credentials(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<Credential>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let rows = match account {
                Some(account) => {
                    let stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {CREDENTIAL_COLUMNS} FROM credentials
                             WHERE account_id = $1 ORDER BY access_key_id"
                        ))
                        .await?;
                    tx.query(&stmt, &[&account.as_str()]).await?
                }
                None => {
                    let stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY access_key_id"
                        ))
                        .await?;
                    tx.query(&stmt, &[]).await?
                }
            };
            rows.iter()
                .map(|row| Ok(credential_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn revoke_credential(&self, access_key_id: &str) -> Result<bool, StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached("UPDATE credentials SET status = $1 WHERE access_key_id = $2")
                .await?;
            tx.execute(
                &stmt,
                &[&status_to_sql(CredentialStatus::Revoked), &access_key_id],
            )
            .await?
                > 0
        })
    }
}

#[async_trait]
impl ProductStore for PgStore {
    async fn create_default_key(
        &self,
        key: &KeyRecord,
        alias: &AliasRecord,
    ) -> Result<(), StoreError> {
        let (cols, versions) = encode_key(key)?;
        transact!(self, Mode::Write, |tx| {
            // Cheap early answer; the alias's primary key decides races:
            // of concurrent creators, all but one fail the alias insert
            // (after waiting for the winner's commit) and roll back their
            // key with it.
            let taken = tx
                .prepare_cached("SELECT 1 FROM aliases WHERE account_id = $1 AND name = $2")
                .await?;
            if tx
                .query_opt(&taken, &[&alias.account_id.as_str(), &alias.name.as_str()])
                .await?
                .is_some()
            {
                return Err(StoreError::AlreadyExists.into());
            }
            insert_key_row(&tx, &cols, &versions).await?;
            insert_alias_row(&tx, alias).await?
        })
    }

    async fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO products (code, class, status, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &product.code.as_str(),
                    &product.class.as_str(),
                    &product.status.as_str(),
                    &product.created_at.0,
                ],
            )
            .await?;
        })
    }

    async fn get_product(&self, code: &ProductCode) -> Result<Option<Product>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products WHERE code = $1"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&code.as_str()]).await? {
                Some(row) => Some(decode_product(product_from_row(&row)?)?),
                None => None,
            }
        })
    }

    async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY code"
                ))
                .await?;
            tx.query(&stmt, &[])
                .await?
                .iter()
                .map(|row| Ok(decode_product(product_from_row(row)?)?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn set_product_status(
        &self,
        code: &ProductCode,
        status: ProductStatus,
    ) -> Result<bool, StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached("UPDATE products SET status = $1 WHERE code = $2")
                .await?;
            tx.execute(&stmt, &[&status.as_str(), &code.as_str()])
                .await?
                > 0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let config: tokio_postgres::Config = "postgres://kw:s3cr3t-pw@db.example:5433/keywarden"
            .parse()
            .unwrap();
        let shown = describe(&config);
        assert_eq!(shown, "kw@db.example:5433/keywarden");
        let config: tokio_postgres::Config = "host=db.example user=kw password=s3cr3t-pw dbname=k"
            .parse()
            .unwrap();
        assert!(!describe(&config).contains("s3cr3t"));
    }

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

    #[tokio::test]
    async fn a_malformed_url_is_refused_without_echoing_it() {
        let got = PgStore::connect(
            "postgres://u:pw-secret@host:notaport/db",
            PgOptions::default(),
        )
        .await;
        match got {
            Err(e) => assert!(!e.to_string().contains("pw-secret"), "{e}"),
            Ok(_) => panic!("a malformed URL was accepted"),
        }
    }
}
