//! The requests' side ([`AuditLog`]: a bounded channel and the failing
//! flag) and the background task ([`AuditWriter`]) that gathers records
//! into batches, hands them to the sink on the blocking pool and retries
//! while the sink fails.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::chain::AuditKey;
use crate::error::AuditError;
use crate::record::Entry;
use crate::sink::Sink;

/// Records waiting in the channel before a request has to wait.
const CHANNEL_CAPACITY: usize = 8192;
/// Records written in one batch at most.
const BATCH_MAX: usize = 4096;
/// Records the writer holds while the sink fails; beyond them the channel
/// fills and requests wait (bounded memory).
const MAX_PENDING: usize = 65_536;
/// Time between two attempts while the sink fails.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Settings of the audit log.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The audit file; its head is `<path>.head`.
    pub path: PathBuf,
    /// Record encryption context values too (keys only by default).
    pub context_values: bool,
    /// A batch is written at most this long after its first record arrived.
    pub flush_interval: Duration,
}

#[derive(Default)]
struct Status {
    failing: AtomicBool,
    detail: Mutex<Option<String>>,
}

/// The requests' side of the audit log: cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Entry>,
    status: Arc<Status>,
    context_values: bool,
}

impl AuditLog {
    /// Opens the audit file (a failure leaves the log failing, and the
    /// writer retries) and returns the handle for requests and the writer
    /// to spawn.
    ///
    /// An audit file another process holds is an error: each process
    /// needs its own.
    pub fn start(
        config: AuditConfig,
        key: AuditKey,
    ) -> Result<(AuditLog, AuditWriter), AuditError> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let status = Arc::new(Status::default());
        let mut sink = Sink::new(config.path, key);
        if let Err(e) = sink.open() {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(AuditError::FileInUse {
                    path: sink.path.clone(),
                    error: e,
                });
            }
            tracing::error!(path = %sink.path.display(), error = %e, "cannot open the audit file; API requests are refused until it opens");
            status.fail(&e);
        }
        Ok((
            AuditLog {
                tx,
                status: status.clone(),
                context_values: config.context_values,
            },
            AuditWriter {
                rx,
                status,
                sink,
                interval: config.flush_interval,
            },
        ))
    }

    /// Whether the sink fails now: requests are then refused.
    pub fn is_failing(&self) -> bool {
        self.status.failing.load(Ordering::Relaxed)
    }

    /// Why the sink fails (for the health endpoint), if it does.
    pub fn failure(&self) -> Option<String> {
        if !self.is_failing() {
            return None;
        }
        self.status.detail.lock().ok().and_then(|d| d.clone())
    }

    /// Whether context values are recorded.
    pub fn context_values(&self) -> bool {
        self.context_values
    }

    /// Queues a request's record; waits while the channel is full.
    pub async fn record(&self, entry: Entry) {
        if self.tx.send(entry).await.is_err() {
            tracing::error!("the audit writer has stopped; a record was not written");
        }
    }
}

impl Status {
    fn fail(&self, e: &std::io::Error) {
        if let Ok(mut d) = self.detail.lock() {
            // The kind and OS message, never a record.
            *d = Some(e.to_string());
        }
        self.failing.store(true, Ordering::Relaxed);
    }

    fn recover(&self) {
        self.failing.store(false, Ordering::Relaxed);
        if let Ok(mut d) = self.detail.lock() {
            *d = None;
        }
    }
}

/// The background task that writes batches.
pub struct AuditWriter {
    rx: mpsc::Receiver<Entry>,
    status: Arc<Status>,
    sink: Sink,
    interval: Duration,
}

impl AuditWriter {
    /// Writes batches until `stop` completes, then writes what is queued
    /// (trying for up to 5 s if the sink fails) and returns.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut pending: Vec<Entry> = Vec::new();
        let mut stopping = false;
        loop {
            if !stopping && pending.is_empty() && !self.status.failing.load(Ordering::Relaxed) {
                tokio::select! {
                    n = self.rx.recv_many(&mut pending, BATCH_MAX) => {
                        if n == 0 { stopping = true; }
                    }
                    () = &mut stop => stopping = true,
                }
                // Gather for at most one interval after the first record.
                let deadline = tokio::time::Instant::now() + self.interval;
                while !stopping && pending.len() < BATCH_MAX {
                    let room = BATCH_MAX - pending.len();
                    tokio::select! {
                        n = self.rx.recv_many(&mut pending, room) => {
                            if n == 0 { stopping = true; }
                        }
                        () = tokio::time::sleep_until(deadline) => break,
                        () = &mut stop => stopping = true,
                    }
                }
            }
            if stopping {
                while pending.len() < MAX_PENDING {
                    match self.rx.try_recv() {
                        Ok(r) => pending.push(r),
                        Err(_) => break,
                    }
                }
            }
            let (sink, batch, result) = {
                let mut sink = self.sink;
                let batch = std::mem::take(&mut pending);
                tokio::task::spawn_blocking(move || {
                    let r = sink.flush(&batch);
                    (sink, batch, r)
                })
                .await
                .expect("the audit flush does not panic")
            };
            self.sink = sink;
            match result {
                Ok(()) => {
                    if self.status.failing.load(Ordering::Relaxed) {
                        tracing::warn!(path = %self.sink.path.display(), "the audit file is written again; API requests are served");
                        self.status.recover();
                    }
                    if stopping && self.rx.is_empty() {
                        return;
                    }
                }
                Err(e) => {
                    pending = batch;
                    if !self.status.failing.load(Ordering::Relaxed) {
                        tracing::error!(path = %self.sink.path.display(), error = %e, "writing the audit file failed; API requests are refused until a write succeeds");
                    }
                    self.status.fail(&e);
                    if stopping {
                        return self.give_up_after_retries(pending).await;
                    }
                    // Retry after a pause, taking in records meanwhile up to
                    // the bound.
                    let until = tokio::time::Instant::now() + RETRY_EVERY;
                    while pending.len() < MAX_PENDING {
                        let room = (MAX_PENDING - pending.len()).min(BATCH_MAX);
                        tokio::select! {
                            n = self.rx.recv_many(&mut pending, room) => {
                                if n == 0 { stopping = true; break; }
                            }
                            () = tokio::time::sleep_until(until) => break,
                            () = &mut stop => { stopping = true; break; }
                        }
                    }
                }
            }
        }
    }

    async fn give_up_after_retries(mut self, mut pending: Vec<Entry>) {
        for _ in 0..50 {
            tokio::time::sleep(RETRY_EVERY).await;
            let mut sink = self.sink;
            let (s, p, r) = tokio::task::spawn_blocking(move || {
                let r = sink.flush(&pending);
                (sink, pending, r)
            })
            .await
            .expect("the audit flush does not panic");
            self.sink = s;
            pending = p;
            if r.is_ok() {
                return;
            }
        }
        tracing::error!(
            lost = pending.len(),
            "stopping with audit records that could not be written"
        );
    }
}
