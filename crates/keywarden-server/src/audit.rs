//! The audit log (docs/audit.md): one JSON line per API request, also
//! refused and unauthenticated ones, in a keyed hash chain.
//!
//! Each record carries `seq` and `mac` = HMAC-SHA256(audit key, previous
//! mac || the record's canonical bytes). The canonical bytes are the
//! record's JSON without `mac`, as serde serialises [`Record`] (field order
//! fixed by the struct). The audit key is 32 random bytes sealed under the
//! root key (`audit.key` in the data dir), so whoever edits the file cannot
//! recompute the chain without the root key. A head file (`<path>.head`:
//! seq and mac of the last durable record, replaced atomically) lets
//! [`verify`] detect a truncated tail.
//!
//! Requests hand records to a bounded channel ([`AuditLog::record`] waits
//! when it is full); a background task ([`AuditWriter`]) writes them in
//! batches (append, `fdatasync`, then the head). While a write fails,
//! [`AuditLog::is_failing`] is true and the server refuses API requests
//! (fail closed); the writer retries every 100 ms.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::body::Bytes;
use keywarden_core::protector::SecretSealer;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Records waiting in the channel before a request has to wait.
const CHANNEL_CAPACITY: usize = 8192;
/// Records written in one batch at most.
const BATCH_MAX: usize = 4096;
/// Records the writer holds while the sink fails; beyond them the channel
/// fills and requests wait (bounded memory).
const MAX_PENDING: usize = 65_536;
/// Time between two attempts while the sink fails.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// The AAD the audit key is sealed under.
const AUDIT_KEY_AAD: &[u8] = b"keywarden audit key v1";
/// Longest operation name (the `X-Amz-Target` value) recorded.
const MAX_TARGET_CHARS: usize = 128;

/// One audit record: one line of the audit file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// When the request was answered, Unix milliseconds.
    pub time_ms: i64,
    /// The `x-amzn-RequestId` the caller got.
    pub request_id: String,
    /// The peer address (`ip:port`).
    pub source: String,
    /// The access key id: of the authenticated caller, or the one a request
    /// that failed authentication claimed (`authenticated` false); empty
    /// when the request named none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub principal: String,
    /// Whether the signature was verified.
    pub authenticated: bool,
    /// The product code when a cloud product's credential signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// The account the request acted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The full `X-Amz-Target` (`TrentService.Encrypt`); empty if missing.
    pub operation: String,
    /// The keys as the request named them: `KeyId`, `SourceKeyId`,
    /// `DestinationKeyId` → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, String>,
    /// The key ARNs the response named (`SourceKeyId`, `KeyId`,
    /// `KeyMetadata.Arn`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_arns: Vec<String>,
    /// Encryption context keys per request field (`EncryptionContext`,
    /// `SourceEncryptionContext`, `DestinationEncryptionContext`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context_keys: BTreeMap<String, Vec<String>>,
    /// The contexts with values, only with `[audit] context_values = true`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context_values: BTreeMap<String, BTreeMap<String, String>>,
    /// The HTTP status answered.
    pub status: u16,
    /// The AWS error type, for errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// HMAC-SHA256 (hex) over the previous record's mac and this record's
    /// canonical bytes; empty only while computing them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
}

/// What the request pipeline learnt about the caller, filled in as it goes.
#[derive(Default)]
pub struct Facts {
    /// The access key id the request claimed (set before verification).
    pub claimed_principal: String,
    /// Set once the signature verified.
    pub authenticated: bool,
    /// The account acted for.
    pub account: Option<String>,
    /// The product, for product callers.
    pub product: Option<String>,
    /// The request body (a reference-counted view, not a copy).
    pub body: Option<Bytes>,
}

impl Facts {
    /// The principal for the access log: only an authenticated one.
    pub fn authenticated_principal(&self) -> &str {
        if self.authenticated {
            &self.claimed_principal
        } else {
            ""
        }
    }
}

/// How a request ended, for its record.
pub enum Outcome<'a> {
    /// 200 with this response body (only key ARNs are read from it).
    Ok(&'a [u8]),
    /// An error answer.
    Err {
        /// HTTP status.
        status: u16,
        /// AWS error type.
        error_type: &'static str,
    },
}

/// The request fields an audit record needs, borrowed from the body; every
/// other field (plaintext, ciphertext, grant tokens, ...) is skipped
/// unread.
#[derive(Deserialize, Default)]
struct RequestFields<'a> {
    #[serde(rename = "KeyId", borrow, default)]
    key_id: Option<Cow<'a, str>>,
    #[serde(rename = "SourceKeyId", borrow, default)]
    source_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "DestinationKeyId", borrow, default)]
    destination_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "EncryptionContext", borrow, default)]
    context: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(rename = "SourceEncryptionContext", borrow, default)]
    source_context: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    #[serde(rename = "DestinationEncryptionContext", borrow, default)]
    destination_context: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
}

#[derive(Deserialize, Default)]
struct ResponseFields<'a> {
    #[serde(rename = "KeyId", borrow, default)]
    key_id: Option<Cow<'a, str>>,
    #[serde(rename = "SourceKeyId", borrow, default)]
    source_key_id: Option<Cow<'a, str>>,
    #[serde(rename = "KeyMetadata", borrow, default)]
    metadata: Option<MetadataFields<'a>>,
}

#[derive(Deserialize, Default)]
struct MetadataFields<'a> {
    #[serde(rename = "Arn", borrow, default)]
    arn: Option<Cow<'a, str>>,
}

/// Builds the record of one request (`seq` and `mac` are the writer's).
pub fn build_record(
    time_ms: i64,
    request_id: &str,
    source: &str,
    target: &str,
    facts: &Facts,
    outcome: &Outcome<'_>,
    context_values: bool,
) -> Record {
    let mut record = Record {
        seq: 0,
        time_ms,
        request_id: request_id.to_owned(),
        source: source.to_owned(),
        principal: facts.claimed_principal.clone(),
        authenticated: facts.authenticated,
        product: facts.product.clone(),
        account: facts.account.clone(),
        operation: target.chars().take(MAX_TARGET_CHARS).collect(),
        keys: BTreeMap::new(),
        key_arns: Vec::new(),
        context_keys: BTreeMap::new(),
        context_values: BTreeMap::new(),
        status: 200,
        error_type: None,
        mac: String::new(),
    };
    // Only authenticated requests' bodies are read: an unauthenticated
    // caller's body is not trusted enough to be worth recording.
    if let (true, Some(body)) = (facts.authenticated, &facts.body) {
        // A body that is not the JSON expected records no fields; the
        // request's own answer says why.
        let fields: RequestFields<'_> = serde_json::from_slice(body).unwrap_or_default();
        for (name, value) in [
            ("KeyId", fields.key_id),
            ("SourceKeyId", fields.source_key_id),
            ("DestinationKeyId", fields.destination_key_id),
        ] {
            if let Some(v) = value {
                record.keys.insert(name.to_owned(), v.into_owned());
            }
        }
        for (name, context) in [
            ("EncryptionContext", fields.context),
            ("SourceEncryptionContext", fields.source_context),
            ("DestinationEncryptionContext", fields.destination_context),
        ] {
            let Some(context) = context else { continue };
            record.context_keys.insert(
                name.to_owned(),
                context.keys().map(|k| k.clone().into_owned()).collect(),
            );
            if context_values {
                record.context_values.insert(
                    name.to_owned(),
                    context
                        .into_iter()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect(),
                );
            }
        }
    }
    match outcome {
        Outcome::Ok(body) => {
            let fields: ResponseFields<'_> = serde_json::from_slice(body).unwrap_or_default();
            for arn in [
                fields.source_key_id,
                fields.key_id,
                fields.metadata.and_then(|m| m.arn),
            ]
            .into_iter()
            .flatten()
            {
                if arn.starts_with("arn:") {
                    record.key_arns.push(arn.into_owned());
                }
            }
        }
        Outcome::Err { status, error_type } => {
            record.status = *status;
            record.error_type = Some((*error_type).to_owned());
        }
    }
    record
}

/// The HMAC key of the chain. Never printed.
pub struct AuditKey(hmac::Key);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

impl AuditKey {
    /// A key from raw bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> AuditKey {
        AuditKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// Loads the audit key sealed at `path`, creating it (32 random bytes,
    /// sealed, mode 0600, written atomically) if the file does not exist.
    pub fn load_or_create(path: &Path, sealer: &dyn SecretSealer) -> Result<AuditKey, String> {
        if !path.exists() {
            let mut raw = zeroize::Zeroizing::new([0u8; 32]);
            aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| "no randomness".to_owned())?;
            let sealed = sealer
                .seal(AUDIT_KEY_AAD, &raw[..])
                .map_err(|e| format!("sealing the audit key: {e}"))?;
            write_atomically(path, &sealed)
                .map_err(|e| format!("writing the audit key {}: {e}", path.display()))?;
        }
        AuditKey::load(path, sealer)
    }

    /// Loads the audit key sealed at `path`.
    pub fn load(path: &Path, sealer: &dyn SecretSealer) -> Result<AuditKey, String> {
        let sealed = std::fs::read(path)
            .map_err(|e| format!("reading the audit key {}: {e}", path.display()))?;
        let raw = sealer.unseal(AUDIT_KEY_AAD, &sealed).map_err(|_| {
            format!(
                "the audit key {} does not open with this root key",
                path.display()
            )
        })?;
        Ok(AuditKey::from_bytes(raw.expose()))
    }

    fn mac(&self, prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(prev);
        ctx.update(canonical);
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn verify(&self, prev: &[u8; 32], canonical: &[u8], mac: &[u8]) -> bool {
        let mut data = Vec::with_capacity(32 + canonical.len());
        data.extend_from_slice(prev);
        data.extend_from_slice(canonical);
        hmac::verify(&self.0, &data, mac).is_ok()
    }
}

/// Writes `bytes` to `path` through a 0600 temporary file, fsync and
/// rename, then fsyncs the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// The end of the chain: the last record's seq and mac (zeros before the
/// first record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// The last seq (0: no record yet).
    pub seq: u64,
    /// The last mac.
    pub mac: [u8; 32],
}

impl Chain {
    const START: Chain = Chain {
        seq: 0,
        mac: [0; 32],
    };

    /// Appends `record` as the next link: sets its seq and mac and returns
    /// its line (with the newline).
    fn link(&mut self, key: &AuditKey, record: &mut Record) -> Vec<u8> {
        record.seq = self.seq + 1;
        record.mac.clear();
        let canonical = serde_json::to_vec(&*record).expect("records serialise");
        let mac = key.mac(&self.mac, &canonical);
        record.mac = hex::encode(mac);
        let mut line = serde_json::to_vec(&*record).expect("records serialise");
        line.push(b'\n');
        self.seq = record.seq;
        self.mac = mac;
        line
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadFile {
    seq: u64,
    mac: String,
}

/// The head file of the audit file at `path`: `<path>.head`.
pub fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn read_head(path: &Path) -> std::io::Result<Option<Chain>> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed audit head file");
    let head: HeadFile = serde_json::from_slice(&text).map_err(|_| bad())?;
    let mac = parse_mac(&head.mac).ok_or_else(bad)?;
    Ok(Some(Chain { seq: head.seq, mac }))
}

fn parse_mac(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// Reads the last complete line of `file` (length `len`): its chain link
/// and the length up to and including its newline (anything after it is a
/// torn write).
fn read_tail(file: &mut File, len: u64) -> std::io::Result<(Option<Chain>, u64)> {
    if len == 0 {
        return Ok((None, 0));
    }
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        Read::by_ref(file).take(len - start).read_to_end(&mut buf)?;
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                // Not one complete line.
                return Ok((None, 0));
            }
            window *= 2;
            continue;
        };
        let complete = start + last_nl as u64 + 1;
        let before = &buf[..last_nl];
        match before.iter().rposition(|&b| b == b'\n') {
            Some(prev_nl) => {
                return Ok((chain_of_line(&before[prev_nl + 1..]), complete));
            }
            None if start == 0 => return Ok((chain_of_line(before), complete)),
            None => window *= 2,
        }
    }
}

fn chain_of_line(line: &[u8]) -> Option<Chain> {
    let r: Record = serde_json::from_slice(line).ok()?;
    Some(Chain {
        seq: r.seq,
        mac: parse_mac(&r.mac)?,
    })
}

/// Why an audit file that another process writes is refused.
const AUDIT_FILE_IN_USE: &str =
    "the audit file is in use by another keywarden process; give each node its own [audit] path";

/// Where the writer writes, and the chain's durable end.
struct Sink {
    path: PathBuf,
    head: PathBuf,
    key: AuditKey,
    file: Option<(File, (u64, u64))>,
    /// Length of the file's durable, complete lines.
    good_len: u64,
    /// The last durable record.
    chain: Chain,
    head_dirty: bool,
}

impl Sink {
    /// Opens (creating) the audit file: a torn last line is cut, and the
    /// chain continues from the furthest of memory, the head and the file's
    /// last record.
    fn open(&mut self) -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        // One writer per audit file: two processes appending to one file
        // would interleave two chains (an advisory lock on the open file,
        // released when it is closed).
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    AUDIT_FILE_IN_USE,
                ))
            }
            // A file system without locks (some network and FUSE file
            // systems): the file is still written, as before locks existed.
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot lock the audit file (file system without locks?); make sure no other process writes it");
            }
        }
        sync_parent(&self.path)?;
        let meta = file.metadata()?;
        let len = if meta.is_file() { meta.len() } else { 0 };
        let (tail, complete) = read_tail(&mut file, len)?;
        if complete < len {
            tracing::warn!(path = %self.path.display(), cut = len - complete, "the audit file ended in an incomplete record (a torn write); cut");
            file.set_len(complete)?;
        }
        let head = read_head(&self.head)?;
        let file_seq = tail.map_or(0, |c| c.seq);
        for candidate in [tail, head].into_iter().flatten() {
            if candidate.seq > self.chain.seq {
                self.chain = candidate;
            }
        }
        if file_seq < self.chain.seq {
            tracing::error!(path = %self.path.display(), file_seq, chain_seq = self.chain.seq, "the audit file ends before the chain's last durable record: records are missing (verify reports them); continuing the chain");
        }
        self.good_len = complete;
        self.file = Some((file, (meta.dev(), meta.ino())));
        Ok(())
    }

    /// Writes `pending` (linking them from the durable end), fdatasyncs,
    /// then replaces the head. On error nothing of `pending` counts as
    /// written, and the next attempt cuts what a failed one left.
    fn flush(&mut self, pending: &mut [Record]) -> std::io::Result<()> {
        if self.file.is_none() {
            self.open()?;
        }
        let (file, ident) = self.file.as_mut().expect("opened");
        // A removed or replaced file would swallow writes unseen.
        let current = std::fs::metadata(&self.path).map(|m| (m.dev(), m.ino()));
        if current.ok() != Some(*ident) {
            self.file = None;
            return Err(std::io::Error::other(
                "the audit file was removed or replaced",
            ));
        }
        if !pending.is_empty() {
            let mut chain = self.chain;
            let mut buf = Vec::with_capacity(pending.len() * 400);
            for record in pending.iter_mut() {
                buf.extend_from_slice(&chain.link(&self.key, record));
            }
            let meta = file.metadata()?;
            if meta.is_file() && meta.len() != self.good_len {
                file.set_len(self.good_len)?;
            }
            file.write_all(&buf)?;
            file.sync_data()?;
            self.good_len += buf.len() as u64;
            self.chain = chain;
            self.head_dirty = true;
        }
        if self.head_dirty {
            let head = HeadFile {
                seq: self.chain.seq,
                mac: hex::encode(self.chain.mac),
            };
            write_atomically(
                &self.head,
                &serde_json::to_vec(&head).expect("head serialises"),
            )?;
            self.head_dirty = false;
        }
        Ok(())
    }
}

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
    tx: mpsc::Sender<Record>,
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
    pub fn start(config: AuditConfig, key: AuditKey) -> Result<(AuditLog, AuditWriter), String> {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let status = Arc::new(Status::default());
        let mut sink = Sink {
            head: head_path(&config.path),
            path: config.path,
            key,
            file: None,
            good_len: 0,
            chain: Chain::START,
            head_dirty: false,
        };
        if let Err(e) = sink.open() {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                return Err(format!("audit file {}: {e}", sink.path.display()));
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

    /// Queues a record; waits while the channel is full.
    pub async fn record(&self, record: Record) {
        if self.tx.send(record).await.is_err() {
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
    rx: mpsc::Receiver<Record>,
    status: Arc<Status>,
    sink: Sink,
    interval: Duration,
}

impl AuditWriter {
    /// Writes batches until `stop` completes, then writes what is queued
    /// (trying for up to 5 s if the sink fails) and returns.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut pending: Vec<Record> = Vec::new();
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
                let mut batch = std::mem::take(&mut pending);
                tokio::task::spawn_blocking(move || {
                    let r = sink.flush(&mut batch);
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

    async fn give_up_after_retries(mut self, mut pending: Vec<Record>) {
        for _ in 0..50 {
            tokio::time::sleep(RETRY_EVERY).await;
            let mut sink = self.sink;
            let (s, p, r) = tokio::task::spawn_blocking(move || {
                let r = sink.flush(&mut pending);
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

/// What [`verify`] found wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the audit file (0: the head file).
    pub line: usize,
    /// The seq that line claims, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Details for the operator.
    pub detail: String,
}

/// Kinds of tampering (or damage) [`verify`] tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The line is not a record.
    Malformed,
    /// The record's mac does not match: its content or mac was changed.
    Edited,
    /// Records are missing before this line.
    Removed,
    /// The line is out of order.
    Reordered,
    /// The file ends before the head's last record, or mid-record.
    Truncated,
    /// The head file is missing or does not match the file.
    Head,
}

impl ProblemKind {
    /// A word for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Malformed => "malformed",
            ProblemKind::Edited => "edited",
            ProblemKind::Removed => "removed",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Head => "head",
        }
    }
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Records in the file.
    pub records: u64,
    /// Records after the head's (written, not yet in the head: a crash
    /// between the file's sync and the head's replacement).
    pub beyond_head: u64,
}

/// Recomputes the chain of the audit file at `path` with `key` and checks
/// it against the head; the first problem found, by line.
pub fn verify(path: &Path, key: &AuditKey) -> std::io::Result<Result<Verified, Problem>> {
    // First pass: every seq present, to tell a reordering from a removal.
    let mut seen = HashSet::new();
    for line in BufReader::new(File::open(path)?).split(b'\n') {
        if let Ok(r) = serde_json::from_slice::<Record>(&line?) {
            seen.insert(r.seq);
        }
    }
    let data = std::fs::read(path)?;
    let mut chain = Chain::START;
    let mut line_no = 0;
    for line in data.split_inclusive(|&b| b == b'\n') {
        line_no += 1;
        if !line.ends_with(b"\n") {
            return Ok(Err(Problem {
                line: line_no,
                seq: None,
                kind: ProblemKind::Truncated,
                detail: "the last line is an incomplete record".into(),
            }));
        }
        let text = &line[..line.len() - 1];
        let Ok(mut record) = serde_json::from_slice::<Record>(text) else {
            return Ok(Err(Problem {
                line: line_no,
                seq: None,
                kind: ProblemKind::Malformed,
                detail: "not an audit record (edited)".into(),
            }));
        };
        let seq = record.seq;
        let expected = chain.seq + 1;
        if seq != expected {
            let (kind, detail) = if seq > expected && seen.contains(&expected) {
                (
                    ProblemKind::Reordered,
                    format!("expected seq {expected} here, which appears later in the file"),
                )
            } else if seq > expected {
                (
                    ProblemKind::Removed,
                    format!("records {expected}..{} are missing", seq - 1),
                )
            } else {
                (
                    ProblemKind::Reordered,
                    format!("seq {seq} after seq {}", chain.seq),
                )
            };
            return Ok(Err(Problem {
                line: line_no,
                seq: Some(seq),
                kind,
                detail,
            }));
        }
        let mac = std::mem::take(&mut record.mac);
        let canonical = serde_json::to_vec(&record).expect("records serialise");
        let Some(mac_bytes) = parse_mac(&mac) else {
            return Ok(Err(Problem {
                line: line_no,
                seq: Some(seq),
                kind: ProblemKind::Edited,
                detail: "the mac is not 32 bytes of hex".into(),
            }));
        };
        if !key.verify(&chain.mac, &canonical, &mac_bytes) {
            return Ok(Err(Problem {
                line: line_no,
                seq: Some(seq),
                kind: ProblemKind::Edited,
                detail: "the mac does not match the record (its content was changed)".into(),
            }));
        }
        chain = Chain {
            seq,
            mac: mac_bytes,
        };
    }
    match read_head(&head_path(path))? {
        None if chain.seq > 0 => Ok(Err(Problem {
            line: 0,
            seq: None,
            kind: ProblemKind::Head,
            detail: format!("the head file {} is missing", head_path(path).display()),
        })),
        None => Ok(Ok(Verified {
            records: 0,
            beyond_head: 0,
        })),
        Some(head) if head.seq > chain.seq => Ok(Err(Problem {
            line: line_no + 1,
            seq: Some(chain.seq + 1),
            kind: ProblemKind::Truncated,
            detail: format!(
                "the head names seq {} but the file ends at seq {}: records {}..{} were cut",
                head.seq,
                chain.seq,
                chain.seq + 1,
                head.seq
            ),
        })),
        Some(head) => {
            // The head's record must be the one in the file.
            if head.seq > 0 && !head_matches(&data, head) {
                return Ok(Err(Problem {
                    line: 0,
                    seq: Some(head.seq),
                    kind: ProblemKind::Head,
                    detail: "the head's mac is not that record's mac".into(),
                }));
            }
            Ok(Ok(Verified {
                records: chain.seq,
                beyond_head: chain.seq - head.seq,
            }))
        }
    }
}

fn head_matches(data: &[u8], head: Chain) -> bool {
    data.split(|&b| b == b'\n')
        .filter_map(chain_of_line)
        .any(|c| c == head)
}

/// Filters for `keywarden admin audit query`.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The account acted for.
    pub account: Option<String>,
    /// A key: matches a requested key (as named) or a key ARN, or the key
    /// id at the end of a key ARN.
    pub key: Option<String>,
    /// The operation: the full target or the name after the dot.
    pub operation: Option<String>,
    /// From this time on (Unix ms, inclusive).
    pub since_ms: Option<i64>,
    /// Before this time (Unix ms, exclusive).
    pub until_ms: Option<i64>,
}

impl Query {
    /// Whether `r` matches every filter given.
    pub fn matches(&self, r: &Record) -> bool {
        if let Some(a) = &self.account {
            if r.account.as_deref() != Some(a.as_str()) {
                return false;
            }
        }
        if let Some(k) = &self.key {
            let suffix = format!("/{k}");
            let hit = r.keys.values().any(|v| v == k)
                || r.key_arns.iter().any(|a| a == k || a.ends_with(&suffix));
            if !hit {
                return false;
            }
        }
        if let Some(op) = &self.operation {
            let name = r.operation.rsplit_once('.').map_or("", |(_, n)| n);
            if &r.operation != op && name != op {
                return false;
            }
        }
        if self.since_ms.is_some_and(|s| r.time_ms < s) {
            return false;
        }
        if self.until_ms.is_some_and(|u| r.time_ms >= u) {
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Record {
        let facts = Facts {
            claimed_principal: "AKIDEXAMPLE".into(),
            authenticated: true,
            account: Some("111122223333".into()),
            product: None,
            body: Some(Bytes::from(format!(
                r#"{{"KeyId":"alias/k{i}","Plaintext":"c2VjcmV0","EncryptionContext":{{"tenant":"t{i}"}},"GrantTokens":["tok"]}}"#
            ))),
        };
        let resp =
            br#"{"KeyId":"arn:aws:kms:us-east-1:111122223333:key/abc","CiphertextBlob":"AAAA"}"#;
        build_record(
            1_700_000_000_000 + i as i64,
            &format!("req-{i}"),
            "127.0.0.1:5000",
            "TrentService.Encrypt",
            &facts,
            &Outcome::Ok(resp),
            false,
        )
    }

    fn write_chain(dir: &Path, n: u64) -> (PathBuf, AuditKey) {
        let key = AuditKey::from_bytes(&[7; 32]);
        let path = dir.join("audit.log");
        let mut sink = Sink {
            path: path.clone(),
            head: head_path(&path),
            key: AuditKey::from_bytes(&[7; 32]),
            file: None,
            good_len: 0,
            chain: Chain::START,
            head_dirty: false,
        };
        let mut batch: Vec<Record> = (1..=n).map(record).collect();
        sink.flush(&mut batch[..n as usize / 2]).unwrap();
        sink.flush(&mut batch[n as usize / 2..]).unwrap();
        (path, key)
    }

    #[test]
    fn records_keep_only_what_is_allowed() {
        let r = record(1);
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains("c2VjcmV0") && !line.contains("tok") && !line.contains("t1\""));
        assert_eq!(r.keys["KeyId"], "alias/k1");
        assert_eq!(
            r.context_keys["EncryptionContext"],
            vec!["tenant".to_owned()]
        );
        assert_eq!(
            r.key_arns,
            vec!["arn:aws:kms:us-east-1:111122223333:key/abc"]
        );
        assert!(r.context_values.is_empty());
        let unauth = build_record(
            1,
            "r",
            "s",
            "TrentService.Decrypt",
            &Facts {
                claimed_principal: "AKIDX".into(),
                body: Some(Bytes::from_static(br#"{"KeyId":"k"}"#)),
                ..Facts::default()
            },
            &Outcome::Err {
                status: 400,
                error_type: "InvalidSignatureException",
            },
            false,
        );
        assert!(!unauth.authenticated && unauth.keys.is_empty());
        assert_eq!(
            unauth.error_type.as_deref(),
            Some("InvalidSignatureException")
        );
    }

    #[test]
    fn a_written_chain_verifies_and_continues_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_chain(dir.path(), 6);
        assert_eq!(
            verify(&path, &key).unwrap(),
            Ok(Verified {
                records: 6,
                beyond_head: 0
            })
        );
        // Another key does not verify.
        let other = AuditKey::from_bytes(&[8; 32]);
        assert_eq!(
            verify(&path, &other).unwrap().unwrap_err().kind,
            ProblemKind::Edited
        );
        // Reopened, the chain continues.
        let mut sink = Sink {
            path: path.clone(),
            head: head_path(&path),
            key: AuditKey::from_bytes(&[7; 32]),
            file: None,
            good_len: 0,
            chain: Chain::START,
            head_dirty: false,
        };
        sink.flush(&mut [record(7)]).unwrap();
        assert_eq!(verify(&path, &key).unwrap().unwrap().records, 7);
    }

    fn tampered(edit: impl Fn(&mut Vec<String>)) -> Problem {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_chain(dir.path(), 6);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        edit(&mut lines);
        let mut out = lines.join("\n");
        if !lines.is_empty() {
            out.push('\n');
        }
        std::fs::write(&path, out).unwrap();
        verify(&path, &key).unwrap().unwrap_err()
    }

    #[test]
    fn every_tampering_is_found_where_it_is() {
        let p = tampered(|l| l[2] = l[2].replace("req-3", "req-X"));
        assert_eq!((p.kind, p.line, p.seq), (ProblemKind::Edited, 3, Some(3)));
        let p = tampered(|l| {
            l.remove(2);
        });
        assert_eq!((p.kind, p.line, p.seq), (ProblemKind::Removed, 3, Some(4)));
        let p = tampered(|l| l.swap(2, 3));
        assert_eq!(
            (p.kind, p.line, p.seq),
            (ProblemKind::Reordered, 3, Some(4))
        );
        let p = tampered(|l| {
            l.pop();
        });
        assert_eq!(
            (p.kind, p.line, p.seq),
            (ProblemKind::Truncated, 6, Some(6))
        );
        let p = tampered(|l| l[5].truncate(10));
        assert_eq!((p.kind, p.line), (ProblemKind::Malformed, 6));
    }

    #[test]
    fn a_torn_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_chain(dir.path(), 4);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":5,\"ti").unwrap();
        drop(f);
        assert_eq!(
            verify(&path, &key).unwrap().unwrap_err().kind,
            ProblemKind::Truncated
        );
        let mut sink = Sink {
            path: path.clone(),
            head: head_path(&path),
            key: AuditKey::from_bytes(&[7; 32]),
            file: None,
            good_len: 0,
            chain: Chain::START,
            head_dirty: false,
        };
        sink.flush(&mut [record(5)]).unwrap();
        assert_eq!(verify(&path, &key).unwrap().unwrap().records, 5);
    }

    #[test]
    fn queries_filter() {
        let r = record(1);
        assert!(Query::default().matches(&r));
        let q = |f: fn(&mut Query)| {
            let mut q = Query::default();
            f(&mut q);
            q.matches(&r)
        };
        assert!(q(|q| q.account = Some("111122223333".into())));
        assert!(!q(|q| q.account = Some("999999999999".into())));
        assert!(q(|q| q.key = Some("abc".into())));
        assert!(q(|q| q.key = Some("alias/k1".into())));
        assert!(!q(|q| q.key = Some("zzz".into())));
        assert!(q(|q| q.operation = Some("Encrypt".into())));
        assert!(q(|q| q.operation = Some("TrentService.Encrypt".into())));
        assert!(!q(|q| q.operation = Some("Decrypt".into())));
        assert!(q(|q| q.since_ms = Some(1_700_000_000_001)));
        assert!(!q(|q| q.until_ms = Some(1_700_000_000_001)));
    }
}
