//! The change feed: a local stamp that follows the database's change
//! counter (`changes.counter`) without a query per call.
//!
//! The stamp moves whenever a counter value greater than every one seen so
//! far is observed, from three sources: this store's own commits (each
//! state-changing method reads the counter its transaction left, right
//! before committing), `NOTIFY keywarden_changes` (payload: the counter
//! after the notifying commit) received on a dedicated `LISTEN` session, and
//! a poll of the counter on that session every `stamp_poll_interval`
//! (notifications lost, or not listening). Counting only increases keeps a
//! late notification of an already observed commit from moving the stamp a
//! second time, so the stamp stays put while nothing new is committed.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use keywarden_core::store::{ChangeFeed, StoreError};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::PgStore;

/// The notification channel the change triggers notify on.
pub(crate) const CHANNEL: &str = "keywarden_changes";

/// The change counter's current value.
pub(crate) const COUNTER_SQL: &str = "SELECT counter FROM changes WHERE id = 1";

/// Backoff bounds between reconnection attempts of the listener.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The local stamp and the greatest counter value seen, and whether the
/// feed is in touch with the database.
#[derive(Debug)]
pub(crate) struct Feed {
    seen: AtomicI64,
    stamp: AtomicU64,
    /// The listener's session is up (set when it listens, cleared when it
    /// loses its connection).
    connected: AtomicBool,
    /// When the database last answered the listener (a counter read or a
    /// notification), in milliseconds since `epoch`.
    last_contact_ms: AtomicU64,
    epoch: Instant,
}

impl Feed {
    /// A feed that has seen `counter`, just now.
    pub(crate) fn new(counter: i64) -> Feed {
        Feed {
            seen: AtomicI64::new(counter),
            stamp: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            last_contact_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// The database answered the listener.
    pub(crate) fn contact(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_contact_ms.fetch_max(now, Ordering::SeqCst);
    }

    /// The listener's session came up or went down.
    pub(crate) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::SeqCst);
        if up {
            self.contact();
        }
    }

    /// Whether the stamp can be trusted: the listener is connected and
    /// heard from the database within `max_silence`. When not, nothing
    /// vouches that the stamp follows the database's changes.
    pub(crate) fn in_touch(&self, max_silence: Duration) -> bool {
        let last = Duration::from_millis(self.last_contact_ms.load(Ordering::SeqCst));
        self.connected.load(Ordering::SeqCst) && self.epoch.elapsed() <= last + max_silence
    }

    /// Moves the stamp if `counter` is newer than everything seen.
    pub(crate) fn observe(&self, counter: i64) {
        if self.seen.fetch_max(counter, Ordering::SeqCst) < counter {
            self.stamp.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Takes `counter`, read from the database just now, as the current
    /// value: moves the stamp if it is newer than everything seen, and
    /// also if it is *older*. A committed counter never goes back, so an
    /// older current value means the database itself went back (a
    /// failover that lost commits, a restored backup); every later change
    /// must count again from there. (Notifications may arrive late, so
    /// only reads of the current value may lower what was seen.)
    pub(crate) fn observe_current(&self, counter: i64) {
        let before = self.seen.swap(counter, Ordering::SeqCst);
        if before != counter {
            self.stamp.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The greatest counter value seen (since the last reset).
    pub(crate) fn seen(&self) -> i64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// Moves the stamp unconditionally (something may have been missed).
    pub(crate) fn bump(&self) {
        self.stamp.fetch_add(1, Ordering::SeqCst);
    }

    /// The stamp.
    pub(crate) fn stamp(&self) -> u64 {
        self.stamp.load(Ordering::SeqCst)
    }
}

/// What the listener task needs.
pub(crate) struct Listener {
    pub(crate) feed: Arc<Feed>,
    pub(crate) config: Config,
    /// The same TLS settings as the pool's connections.
    pub(crate) tls: MakeRustlsConnect,
    pub(crate) listen: bool,
    pub(crate) poll_interval: Duration,
    pub(crate) query_timeout: Duration,
}

impl Listener {
    /// Runs until `stop` resolves (its sender is dropped with the last
    /// store handle). `ready` is told when the first session listens.
    pub(crate) async fn run(self, mut stop: oneshot::Receiver<()>, ready: oneshot::Sender<()>) {
        let mut ready = Some(ready);
        let mut backoff = BACKOFF_MIN;
        let mut connected_before = false;
        loop {
            let session = self.session(&mut ready, connected_before);
            let established = tokio::select! {
                _ = &mut stop => return,
                established = session => established,
            };
            if established {
                connected_before = true;
                backoff = BACKOFF_MIN;
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One session: connect, `LISTEN`, read the counter, then follow
    /// notifications and poll until the connection fails. Answers whether
    /// the session got as far as listening.
    async fn session(&self, ready: &mut Option<oneshot::Sender<()>>, reconnect: bool) -> bool {
        let Ok((client, mut connection)) = self.config.connect(self.tls.clone()).await else {
            return false;
        };
        // The connection must be driven for the client to work; the driver
        // forwards notifications and ends with the connection (or when the
        // client is dropped at the end of this function).
        let (notes_tx, mut notes) = mpsc::unbounded_channel::<String>();
        let driver = tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notification(n) = message {
                    if notes_tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
            }
        });
        let established = async {
            if self.listen {
                client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            }
            let counter = client.prepare(COUNTER_SQL).await?;
            let value: i64 = client.query_one(&counter, &[]).await?.try_get(0)?;
            Ok::<_, tokio_postgres::Error>(counter).map(|c| (c, value))
        };
        let counter = match tokio::time::timeout(self.query_timeout, established).await {
            Ok(Ok((statement, value))) => {
                self.feed.observe_current(value);
                self.feed.set_connected(true);
                if reconnect {
                    // Notifications sent while disconnected are lost.
                    self.feed.bump();
                }
                statement
            }
            _ => {
                driver.abort();
                return false;
            }
        };
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        let mut tick = tokio::time::interval(self.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Polls that read a counter below the greatest seen, in a row. One
        // may be a read that raced this store's own commit; two in a row
        // mean the database went back (see `Feed::observe_current`).
        let mut lower_reads = 0u32;
        loop {
            tokio::select! {
                note = notes.recv() => match note {
                    Some(payload) => {
                        self.feed.contact();
                        match payload.parse::<i64>() {
                            Ok(value) => self.feed.observe(value),
                            Err(_) => self.feed.bump(),
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    let read = tokio::time::timeout(self.query_timeout, client.query_one(&counter, &[]));
                    match read.await {
                        Ok(Ok(row)) => match row.try_get::<_, i64>(0) {
                            Ok(value) => {
                                self.feed.contact();
                                if value < self.feed.seen() {
                                    lower_reads += 1;
                                    if lower_reads >= 2 {
                                        tracing::warn!("postgres store: the change counter went back (failover or restore); caches will be dropped");
                                        self.feed.observe_current(value);
                                        lower_reads = 0;
                                    }
                                } else {
                                    lower_reads = 0;
                                    self.feed.observe(value);
                                }
                            }
                            Err(_) => break,
                        },
                        _ => break,
                    }
                }
            }
        }
        self.feed.set_connected(false);
        tracing::warn!("postgres store: change listener lost its connection; reconnecting");
        driver.abort();
        true
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
