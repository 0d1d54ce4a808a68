//! `keywarden serve`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use keywarden_server::{load_tls_config, router, AppState};
use tokio::net::TcpListener;

use crate::{setup, ServeArgs};

/// How often the store is asked whether another process changed it.
const CACHE_REFRESH: Duration = Duration::from_millis(100);

/// How often key usage recorded in memory is written to the store (one
/// transaction per flush, none if no key was used). `GetKeyLastUsage` on
/// another node (or `keywarden key last-usage`) lags by at most this.
const USAGE_FLUSH: Duration = Duration::from_secs(1);

/// The audit key's file in the data dir (sealed under the root key).
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// Refuses to start when another process holds the audit file's writer
/// lock (taken by the audit writer, one per file): that is another
/// Keywarden server on the same data dir, and the message names it.
/// The lock is only tried here and released at once; the writer takes it
/// for good.
fn refuse_if_audit_file_taken(audit_path: &Path, data_dir: &Path) -> Result<()> {
    let file = match std::fs::File::open(audit_path) {
        Ok(f) => f,
        // No file yet: nobody writes it.
        Err(_) => return Ok(()),
    };
    if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        use std::os::unix::fs::MetadataExt;
        let holder = file
            .metadata()
            .ok()
            .and_then(|m| flock_holder(m.dev(), m.ino()))
            .map(|pid| format!(" (pid {pid})"))
            .unwrap_or_default();
        bail!(
            "another Keywarden server{holder} is using data directory {}: it writes the audit \
             log {}. Stop it first, or give this server its own --data-dir (or its own [audit] \
             path when several nodes share a directory)",
            data_dir.display(),
            audit_path.display()
        );
    }
    Ok(())
}

/// The pid of the process holding a `flock` on the file with device `dev`
/// and inode `ino`, read from `/proc/locks` (Linux; `None` elsewhere).
fn flock_holder(dev: u64, ino: u64) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // glibc's encoding of dev_t: major and minor, as /proc/locks prints them.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major:02x}:{minor:02x}:{ino}");
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        let pid = fields.get(at + 3)?;
        let file = fields.get(at + 4)?;
        (*file == wanted).then(|| pid.parse().ok()).flatten()
    })
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let _log_guard = init_logging();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            load_tls_config(cert, key).map_err(anyhow::Error::msg)?,
        )),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.allow_plaintext {
        bail!(
            "refusing to serve plain HTTP on non-loopback address {}: give --tls-cert and --tls-key, or --allow-plaintext if a TLS-terminating proxy sits in front",
            args.listen
        );
    }
    let opened = setup::open_with(&args.data, setup::Mode::CreateIfMissing).await?;
    lock_memory();
    // The audit log (docs/audit.md): its key sealed under the root key in
    // the data dir, one chain per node. Opened before listening; a file
    // that cannot be opened leaves requests refused until it can.
    let audit_path = opened.config.audit.path(&args.data.data_dir);
    refuse_if_audit_file_taken(&audit_path, &args.data.data_dir)?;
    let audit_key = keywarden_audit::AuditKey::load_or_create(
        &args.data.data_dir.join(AUDIT_KEY_FILE),
        opened.root.as_ref(),
    )?;
    let (audit, audit_writer) = keywarden_audit::AuditLog::start(
        keywarden_audit::AuditConfig {
            path: audit_path,
            context_values: opened.config.audit.context_values,
            flush_interval: opened.config.audit.flush_interval(),
        },
        audit_key,
    )?;
    let (stop_audit, audit_stop) = tokio::sync::oneshot::channel::<()>();
    let audit_writer = tokio::spawn(audit_writer.run(async move {
        let _ = audit_stop.await;
    }));
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {} on {} is already in use (another Keywarden server or another program \
                 listens there): stop it or choose another --listen address",
                args.listen.port(),
                args.listen.ip()
            )
        } else {
            anyhow::anyhow!("binding {}: {e}", args.listen)
        }
    })?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let kms = opened.kms.clone();

    if opened.created {
        println!(
            "First start: created root key {} (mode 0600) and database {}.",
            opened.root_key_path.display(),
            opened.store_description
        );
    }
    println!(
        "Keywarden {} listening on {scheme}://{addr} (region {}, data dir {})",
        env!("CARGO_PKG_VERSION"),
        kms.config().regions().collect::<Vec<_>>().join(", "),
        args.data.data_dir.display()
    );
    println!("Next steps:");
    println!(
        "  keywarden admin account create --data-dir {} --name my-team",
        args.data.data_dir.display()
    );
    println!(
        "  aws kms create-key --endpoint-url {scheme}://{addr} --region {}",
        kms.config().region
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    // Destroys keys whose deletion waiting period ended, deletes imported
    // material whose valid-to passed and rotates keys whose automatic
    // rotation is due; each is compare-and-set per key, so several servers
    // on one database may sweep at once.
    let sweeper = {
        let kms = kms.clone();
        let every = Duration::from_secs(args.deletion_sweep_secs.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match kms.execute_due_deletions().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(destroyed = n, "executed scheduled key deletions"),
                    Err(e) => {
                        tracing::error!(error = %e, "executing scheduled key deletions failed")
                    }
                }
                match kms.execute_material_expirations().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(expired = n, "deleted expired imported key material"),
                    Err(e) => {
                        tracing::error!(error = %e, "deleting expired imported key material failed")
                    }
                }
                match kms.execute_due_rotations().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rotated = n, "executed automatic key rotations"),
                    Err(e) => {
                        tracing::error!(error = %e, "executing automatic key rotations failed")
                    }
                }
            }
        })
    };

    // Changes made by `keywarden admin` (another process) reach the caches
    // within this period.
    let refresher = {
        let kms = kms.clone();
        let grace = opened.config.database.outage_grace();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CACHE_REFRESH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // One line when checks start failing (a database outage) and
            // one when they succeed again, not ten a second. Within the
            // grace period cached keys and credentials keep serving; past
            // it the caches are emptied on every tick, so every request
            // needs the store and fails with DependencyTimeoutException
            // until it answers (docs/operations.md, "Database outages").
            let mut failing_since: Option<std::time::Instant> = None;
            loop {
                tick.tick().await;
                match kms.refresh_caches().await {
                    Err(e) => match failing_since {
                        None => {
                            failing_since = Some(std::time::Instant::now());
                            tracing::error!(error = %e, grace_secs = grace.as_secs(), "checking the store for changes failed; cached keys keep serving for the grace period");
                        }
                        Some(since) if since.elapsed() >= grace => {
                            if since.elapsed() < grace + CACHE_REFRESH {
                                tracing::error!("the store has been unreachable for the whole grace period; caches dropped, requests fail until it answers");
                            }
                            kms.drop_caches();
                        }
                        Some(_) => {}
                    },
                    Ok(_) => {
                        if let Some(since) = failing_since.take() {
                            tracing::warn!(
                                after_ms = since.elapsed().as_millis() as u64,
                                "the store answers again; caches dropped"
                            );
                            kms.drop_caches();
                        }
                    }
                }
            }
        })
    };

    // Billing: charges posted to the ledger from the metered data, and
    // accounts frozen or not, every charge interval (only when enabled).
    let biller = opened.config.billing.enabled.then(|| {
        let kms = kms.clone();
        let every = opened.config.billing.charge_interval();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match kms.run_billing().await {
                    Ok(run) if run.charges_posted > 0 => tracing::info!(
                        accounts = run.accounts,
                        charges = run.charges_posted,
                        frozen = run.frozen,
                        "billing run posted charges"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "billing run failed; retrying at the next interval"),
                }
            }
        })
    });

    // Key usage and request counts: crypto requests only touch memory;
    // this writes the batches.
    // Stopped between flushes (never in the middle of one), after which it
    // flushes once more: the uses of the requests drained at shutdown.
    let (stop_flusher, mut stop) = tokio::sync::oneshot::channel::<()>();
    let flusher = {
        let kms = kms.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(USAGE_FLUSH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        flush_usage(&kms).await;
                        flush_metering(&kms).await;
                    }
                    _ = &mut stop => break,
                }
            }
            flush_usage(&kms).await;
            flush_metering(&kms).await;
        })
    };

    let limits = opened
        .config
        .limits
        .to_server()
        .map_err(anyhow::Error::msg)?;
    let app = router(Arc::new(
        AppState::with_limits(kms, limits.clone()).with_audit(audit),
    ));
    let served = keywarden_server::serve(listener, tls, app, shutdown_signal(), &limits).await;
    // The drained requests' records, then the writer stops.
    let _ = stop_audit.send(());
    if let Err(e) = audit_writer.await {
        tracing::error!(error = %e, "the audit writer failed");
    }
    let _ = stop_flusher.send(());
    if let Err(e) = flusher.await {
        tracing::error!(error = %e, "the key usage flush task failed");
    }
    served?;
    sweeper.abort();
    refresher.abort();
    if let Some(b) = biller {
        b.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

async fn flush_usage(kms: &keywarden_core::Kms) {
    match kms.flush_key_usage().await {
        Ok(f) if f.dropped > 0 => tracing::warn!(
            written = f.written,
            dropped = f.dropped,
            "more keys were used than key usage tracking holds between flushes; some uses were not recorded"
        ),
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "writing key usage failed; retrying at the next flush"),
    }
}

/// Writes the request counts held in memory (billing). A process killed
/// without a graceful shutdown loses at most the last flush period's
/// counts; a failed write is retried under the same batch id, so a retry
/// never counts twice.
async fn flush_metering(kms: &keywarden_core::Kms) {
    if let Err(e) = kms.flush_metering().await {
        tracing::error!(error = %e, "writing request counts failed; retrying at the next flush");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}

/// Logs go to stderr through a background writer thread, so a request never
/// waits for a write(2). The returned guard flushes what is queued when it
/// drops (at shutdown). If more than 128k lines are queued, new lines are
/// dropped rather than blocking requests.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("KEYWARDEN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(128 * 1024)
        .lossy(true)
        .finish(std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(true)
        .try_init();
    guard
}

/// Locks every page mapped now (the root key's included: it was loaded
/// just before) into RAM, so the root key is never written to swap. Only
/// the pages mapped now (`MCL_CURRENT`): locking future ones too could make
/// later allocations fail under a low `RLIMIT_MEMLOCK`. Where it is not
/// permitted (no `CAP_IPC_LOCK` and a low limit), the server runs anyway and
/// says so.
fn lock_memory() {
    use nix::sys::mman::{mlockall, MlockAllFlags};
    match mlockall(MlockAllFlags::MCL_CURRENT) {
        Ok(()) => tracing::info!("memory locked (mlockall): the root key is kept out of swap"),
        Err(e) => tracing::warn!(
            error = %e,
            "could not lock memory (mlockall): the root key may be written to swap; grant CAP_IPC_LOCK or raise RLIMIT_MEMLOCK, or use encrypted swap"
        ),
    }
}
