//! Keywarden's shared store: PostgreSQL, for several nodes on one database.
//!
//! [`PgStore`] implements the whole store seam of `keywarden-core`
//! ([`keywarden_core::store::Store`]) and [`DumpStore`]. It records exactly
//! what the SQLite store records, encoded by the same code
//! (`keywarden_core::store_codec`), so a dump moves between the two
//! unchanged. One file per seam, named as in the SQLite store (`keys.rs`,
//! `aliases.rs`, `grants.rs`, `accounts.rs`, `products.rs`, `billing.rs`,
//! `keyrings.rs`, `iam.rs`, `deployment.rs`, `feed.rs`, `dump.rs`); this file
//! connects and runs transactions.
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

mod accounts;
mod aliases;
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
mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use keywarden_core::store::StoreError;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;
use tokio_postgres::{IsolationLevel, SimpleQueryMessage};

use crate::error::{classify, Fail, Invalid};
use crate::feed::{Feed, Listener};

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
