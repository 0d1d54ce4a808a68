//! The audit log (docs/audit.md): one JSON line per API request, also
//! refused and unauthenticated ones, in a keyed hash chain.
//!
//! Each record carries `seq` and `mac` = HMAC-SHA256(audit key, previous
//! mac || the record's canonical bytes). The canonical bytes are the
//! record's JSON without `mac`, as serde serialises [`Record`] (field order
//! fixed by the struct); the writer produces the same bytes from an
//! [`Entry`] in one pass and splices the mac in. The audit key is 32 random
//! bytes sealed under the root key (`audit.key` in the data dir), so whoever edits the file cannot
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
    /// 200 from a handler that names the key ARN itself (if any).
    OkNamed(Option<String>),
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

/// One request's record as the request hands it to the writer: the values
/// it owns moved in, and only the request fields recorded (the body, which
/// may carry plaintext, is not kept). `seq` and `mac` are the writer's,
/// which serialises it once (`Chain::append`) to exactly the line serde
/// writes for the equivalent [`Record`].
#[derive(Debug)]
pub struct Entry {
    time_ms: i64,
    request_id: String,
    source: String,
    principal: String,
    authenticated: bool,
    product: Option<String>,
    account: Option<String>,
    /// The full target; cut to [`MAX_TARGET_CHARS`] when written.
    operation: String,
    /// The request fields recorded (none for unauthenticated requests).
    requested: Requested,
    context_values: bool,
    key_arns: Vec<String>,
    status: u16,
    error_type: Option<&'static str>,
}

impl Entry {
    /// The entry of one request: a borrowed, partial parse of the request
    /// body (of authenticated requests only) and of a response body. Takes
    /// the account and product out of `facts` (the principal is copied: the
    /// access log still needs it).
    pub fn new(
        time_ms: i64,
        request_id: &str,
        source: &str,
        operation: String,
        facts: &mut Facts,
        outcome: Outcome<'_>,
        context_values: bool,
    ) -> Entry {
        let (status, error_type, key_arns) = match outcome {
            Outcome::Ok(body) => (200, None, response_key_arns(body)),
            Outcome::OkNamed(arn) => (
                200,
                None,
                arn.filter(|a| a.starts_with("arn:")).into_iter().collect(),
            ),
            Outcome::Err { status, error_type } => (status, Some(error_type), Vec::new()),
        };
        // Only authenticated requests' bodies are read: an unauthenticated
        // caller's body is not trusted enough to be worth recording.
        let requested = match (facts.authenticated, &facts.body) {
            (true, Some(body)) => Requested::parse(body, context_values),
            _ => Requested::default(),
        };
        Entry {
            time_ms,
            request_id: request_id.to_owned(),
            source: source.to_owned(),
            principal: facts.claimed_principal.clone(),
            authenticated: facts.authenticated,
            product: facts.product.take(),
            account: facts.account.take(),
            operation,
            requested,
            context_values,
            key_arns,
            status,
            error_type,
        }
    }
}

/// The key ARNs a response body names (a borrowed, partial parse).
fn response_key_arns(body: &[u8]) -> Vec<String> {
    let fields: ResponseFields<'_> = serde_json::from_slice(body).unwrap_or_default();
    [
        fields.source_key_id,
        fields.key_id,
        fields.metadata.and_then(|m| m.arn),
    ]
    .into_iter()
    .flatten()
    .filter(|arn| arn.starts_with("arn:"))
    .map(Cow::into_owned)
    .collect()
}

/// The request fields a record keeps, owned, names in canonical (sorted)
/// order: `DestinationKeyId`, `KeyId`, `SourceKeyId` and
/// `DestinationEncryptionContext`, `EncryptionContext`,
/// `SourceEncryptionContext`.
#[derive(Debug, Default)]
struct Requested {
    key_ids: [Option<String>; 3],
    /// Each context's pairs, sorted by key and without duplicates (as a
    /// map holds them); the values are empty unless recorded.
    contexts: [Option<Vec<(String, String)>>; 3],
}

const KEY_ID_NAMES: [&str; 3] = ["DestinationKeyId", "KeyId", "SourceKeyId"];
const CONTEXT_NAMES: [&str; 3] = [
    "DestinationEncryptionContext",
    "EncryptionContext",
    "SourceEncryptionContext",
];

impl Requested {
    fn parse(body: &[u8], context_values: bool) -> Requested {
        // A body that is not the JSON expected records no fields; the
        // request's own answer says why.
        let fields: RequestFields<'_> = serde_json::from_slice(body).unwrap_or_default();
        let context = |c: Option<BTreeMap<Cow<'_, str>, Cow<'_, str>>>| {
            c.map(|c| {
                c.into_iter()
                    .map(|(k, v)| {
                        let v = if context_values {
                            v.into_owned()
                        } else {
                            String::new()
                        };
                        (k.into_owned(), v)
                    })
                    .collect()
            })
        };
        Requested {
            key_ids: [
                fields.destination_key_id.map(Cow::into_owned),
                fields.key_id.map(Cow::into_owned),
                fields.source_key_id.map(Cow::into_owned),
            ],
            contexts: [
                context(fields.destination_context),
                context(fields.context),
                context(fields.source_context),
            ],
        }
    }
}

/// `s` cut to its first `n` characters.
fn first_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A record's canonical JSON, borrowed from its [`Entry`] and the parsed
/// request: the same field names, order and omissions as [`Record`]
/// (`mac` aside), so serde_json writes the same bytes
/// (`tests::entries_write_the_lines_records_wrote` holds them equal).
#[derive(Serialize)]
struct CanonicalRecord<'a> {
    seq: u64,
    time_ms: i64,
    request_id: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "str_is_empty")]
    principal: &'a str,
    authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    operation: &'a str,
    #[serde(skip_serializing_if = "Named::is_empty")]
    keys: Named<&'a String>,
    #[serde(skip_serializing_if = "slice_is_empty")]
    key_arns: &'a [String],
    #[serde(skip_serializing_if = "Named::is_empty")]
    context_keys: Named<ContextKeys<'a>>,
    #[serde(skip_serializing_if = "Named::is_empty")]
    context_values: Named<ContextMap<'a>>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'a str>,
}

fn str_is_empty(s: &&str) -> bool {
    s.is_empty()
}

fn slice_is_empty(s: &&[String]) -> bool {
    s.is_empty()
}

/// A JSON object of the present values, names in the order given (sorted,
/// as a `BTreeMap<String, _>` would write them).
struct Named<T>([(&'static str, Option<T>); 3]);

impl<T> Named<T> {
    fn is_empty(&self) -> bool {
        self.0.iter().all(|(_, v)| v.is_none())
    }
}

impl<T: Serialize> Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(
            self.0
                .iter()
                .filter_map(|(name, value)| value.as_ref().map(|v| (name, v))),
        )
    }
}

/// A context's keys, as a JSON array.
struct ContextKeys<'a>(&'a [(String, String)]);

impl Serialize for ContextKeys<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|(k, _)| k))
    }
}

/// A context with its values, as a JSON object.
struct ContextMap<'a>(&'a [(String, String)]);

impl Serialize for ContextMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
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

    /// Appends `entry` as the next link to `out`: its line, with the
    /// newline. The record is serialised once: the mac is computed over the
    /// canonical bytes just written, then spliced in as the last field
    /// (the canonical bytes end in the record's closing brace).
    fn append(&mut self, key: &AuditKey, entry: &Entry, out: &mut Vec<u8>) {
        let seq = self.seq + 1;
        let start = out.len();
        let requested = &entry.requested;
        let named = |i: usize| (CONTEXT_NAMES[i], requested.contexts[i].as_deref());
        let canonical = CanonicalRecord {
            seq,
            time_ms: entry.time_ms,
            request_id: &entry.request_id,
            source: &entry.source,
            principal: &entry.principal,
            authenticated: entry.authenticated,
            product: entry.product.as_deref(),
            account: entry.account.as_deref(),
            operation: first_chars(&entry.operation, MAX_TARGET_CHARS),
            keys: Named([0, 1, 2].map(|i| (KEY_ID_NAMES[i], requested.key_ids[i].as_ref()))),
            key_arns: &entry.key_arns,
            context_keys: Named([0, 1, 2].map(|i| {
                let (name, c) = named(i);
                (name, c.map(ContextKeys))
            })),
            context_values: Named([0, 1, 2].map(|i| {
                let (name, c) = named(i);
                (name, c.filter(|_| entry.context_values).map(ContextMap))
            })),
            status: entry.status,
            error_type: entry.error_type,
        };
        serde_json::to_writer(&mut *out, &canonical).expect("records serialise");
        let mac = key.mac(&self.mac, &out[start..]);
        debug_assert_eq!(out.last(), Some(&b'}'));
        out.pop();
        out.extend_from_slice(b",\"mac\":\"");
        let mut hex = [0u8; 64];
        hex::encode_to_slice(mac, &mut hex).expect("64 hex digits");
        out.extend_from_slice(&hex);
        out.extend_from_slice(b"\"}\n");
        self.seq = seq;
        self.mac = mac;
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
    fn flush(&mut self, pending: &[Entry]) -> std::io::Result<()> {
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
            let mut buf = Vec::with_capacity(pending.len() * 512);
            for entry in pending {
                chain.append(&self.key, entry, &mut buf);
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

    fn entry(i: u64) -> Entry {
        let mut facts = Facts {
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
        Entry::new(
            1_700_000_000_000 + i as i64,
            &format!("req-{i}"),
            "127.0.0.1:5000",
            "TrentService.Encrypt".to_owned(),
            &mut facts,
            Outcome::Ok(resp),
            false,
        )
    }

    /// The record `entry` is written as (seq 1).
    fn as_record(entry: &Entry) -> Record {
        let mut line = Vec::new();
        let mut chain = Chain::START;
        chain.append(&AuditKey::from_bytes(&[7; 32]), entry, &mut line);
        assert_eq!(line.pop(), Some(b'\n'));
        serde_json::from_slice(&line).unwrap()
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
        let batch: Vec<Entry> = (1..=n).map(entry).collect();
        sink.flush(&batch[..n as usize / 2]).unwrap();
        sink.flush(&batch[n as usize / 2..]).unwrap();
        (path, key)
    }

    #[test]
    fn records_keep_only_what_is_allowed() {
        let r = as_record(&entry(1));
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
        let unauth = as_record(&Entry::new(
            1,
            "r",
            "s",
            "TrentService.Decrypt".to_owned(),
            &mut Facts {
                claimed_principal: "AKIDX".into(),
                body: Some(Bytes::from_static(br#"{"KeyId":"k"}"#)),
                ..Facts::default()
            },
            Outcome::Err {
                status: 400,
                error_type: "InvalidSignatureException",
            },
            false,
        ));
        assert!(!unauth.authenticated && unauth.keys.is_empty());
        assert_eq!(
            unauth.error_type.as_deref(),
            Some("InvalidSignatureException")
        );
    }

    /// How a record was built before [`Entry`] (owned copies, the body
    /// parsed on the request path), kept to hold the format fixed.
    fn old_build_record(
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
        if let (true, Some(body)) = (facts.authenticated, &facts.body) {
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
            Outcome::OkNamed(_) => unreachable!("the keyring endpoint handed a body"),
            Outcome::Err { status, error_type } => {
                record.status = *status;
                record.error_type = Some((*error_type).to_owned());
            }
        }
        record
    }

    /// How a record was linked and written before [`Chain::append`]: the
    /// canonical bytes, then the whole record again with its mac.
    fn old_link(chain: &mut Chain, key: &AuditKey, record: &mut Record) -> Vec<u8> {
        record.seq = chain.seq + 1;
        record.mac.clear();
        let canonical = serde_json::to_vec(&*record).unwrap();
        let mac = key.mac(&chain.mac, &canonical);
        record.mac = hex::encode(mac);
        let mut line = serde_json::to_vec(&*record).unwrap();
        line.push(b'\n');
        chain.seq = record.seq;
        chain.mac = mac;
        line
    }

    #[test]
    fn entries_write_the_lines_records_wrote() {
        struct Case {
            principal: &'static str,
            authenticated: bool,
            product: Option<&'static str>,
            account: Option<&'static str>,
            body: Option<&'static str>,
            target: String,
            request_id: &'static str,
            source: &'static str,
            /// `Ok(response body)`, `Err(named ARN)` for the keyring
            /// endpoint's way, or an error answer.
            outcome: Result<Result<&'static str, Option<&'static str>>, (u16, &'static str)>,
            context_values: bool,
        }
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let base = || Case {
            principal: "AKIDEXAMPLE",
            authenticated: true,
            product: None,
            account: Some("111122223333"),
            body: Some(r#"{"KeyId":"alias/app","KeySpec":"AES_256"}"#),
            target: "TrentService.GenerateDataKey".into(),
            request_id: "3f1c0000-0000-0000-0000-00000000000b",
            source: "127.0.0.1:51234",
            outcome: Ok(Ok(
                r#"{"CiphertextBlob":"AAAA","KeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","Plaintext":"c2VjcmV0"}"#,
            )),
            context_values: false,
        };
        let cases = vec![
            base(),
            // Every request field, escapes, duplicates, empty and
            // non-ASCII contexts; values recorded.
            Case {
                body: Some(
                    r#"{"SourceKeyId":"alias/s\"q\\b","DestinationKeyId":"k\u00e9y\n","KeyId":"\ud83d\ude00","EncryptionContext":{"b":"1","a\t":"2\u0001","b":"3"},"SourceEncryptionContext":{},"DestinationEncryptionContext":{"z\/":"\"","é":"ü"},"Plaintext":"c2VjcmV0"}"#,
                ),
                context_values: true,
                ..base()
            },
            // The same without values.
            Case {
                body: Some(
                    r#"{"SourceKeyId":"alias/s\"q\\b","DestinationKeyId":"k\u00e9y\n","EncryptionContext":{"b":"1","a\t":"2"},"SourceEncryptionContext":{}}"#,
                ),
                ..base()
            },
            // Unauthenticated: no principal, no account, body unread.
            Case {
                principal: "",
                authenticated: false,
                account: None,
                outcome: Err((403, "IncompleteSignatureException")),
                ..base()
            },
            // Claimed principal with escapes, a product, no body, a long
            // multi-byte target cut at 128 characters, odd source.
            Case {
                principal: "AKID\"\\\u{7f}\u{1}",
                authenticated: false,
                product: Some("prod\"uct"),
                body: None,
                target: format!("TrentService.{}", "é\u{1}".repeat(100)),
                source: "[::1]:443",
                request_id: "r\"id",
                outcome: Err((400, "InvalidSignatureException")),
                ..base()
            },
            // A body that is not the JSON expected; an empty target.
            Case {
                body: Some(r#"{"KeyId":5}"#),
                target: String::new(),
                source: "",
                outcome: Err((500, "KMSInternalException")),
                ..base()
            },
            // Responses naming ARNs in every place, one not an ARN, escaped.
            Case {
                outcome: Ok(Ok(
                    r#"{"SourceKeyId":"arn:aws:kms:us-east-1:1:key/s\u002fx","KeyId":"alias/not-an-arn","KeyMetadata":{"Arn":"arn:aws:kms:us-east-1:1:key/m","KeyId":"m"}}"#,
                )),
                ..base()
            },
            Case {
                outcome: Ok(Ok("not json")),
                ..base()
            },
            // The keyring endpoint: a named ARN, none, not an ARN.
            Case {
                principal: "keyring/kr-1",
                product: Some("vault"),
                body: None,
                target: "Keyring.ReadKey".into(),
                outcome: Ok(Err(Some(arn))),
                ..base()
            },
            Case {
                outcome: Ok(Err(None)),
                ..base()
            },
            Case {
                outcome: Ok(Err(Some("key/\"x\""))),
                ..base()
            },
        ];
        let key = AuditKey::from_bytes(&[9; 32]);
        let (mut old_chain, mut new_chain) = (Chain::START, Chain::START);
        let mut file = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let facts = || Facts {
                claimed_principal: case.principal.to_owned(),
                authenticated: case.authenticated,
                account: case.account.map(str::to_owned),
                product: case.product.map(str::to_owned),
                body: case.body.map(|b| Bytes::from(b.to_owned())),
            };
            let named;
            let old_outcome = match case.outcome {
                Ok(Ok(body)) => Outcome::Ok(body.as_bytes()),
                Ok(Err(arn)) => {
                    // What the keyring endpoint handed before.
                    named = arn
                        .map(|arn| serde_json::json!({ "KeyId": arn }).to_string().into_bytes())
                        .unwrap_or_else(|| b"{}".to_vec());
                    Outcome::Ok(&named)
                }
                Err((status, error_type)) => Outcome::Err { status, error_type },
            };
            let new_outcome = match case.outcome {
                Ok(Ok(body)) => Outcome::Ok(body.as_bytes()),
                Ok(Err(arn)) => Outcome::OkNamed(arn.map(str::to_owned)),
                Err((status, error_type)) => Outcome::Err { status, error_type },
            };
            let time_ms = 1_718_000_000_123 + i as i64;
            let mut old_record = old_build_record(
                time_ms,
                case.request_id,
                case.source,
                &case.target,
                &facts(),
                &old_outcome,
                case.context_values,
            );
            let old_line = old_link(&mut old_chain, &key, &mut old_record);
            let mut new_facts = facts();
            let entry = Entry::new(
                time_ms,
                case.request_id,
                case.source,
                case.target.clone(),
                &mut new_facts,
                new_outcome,
                case.context_values,
            );
            let mut new_line = Vec::new();
            new_chain.append(&key, &entry, &mut new_line);
            assert_eq!(
                String::from_utf8_lossy(&new_line),
                String::from_utf8_lossy(&old_line),
                "case {i}"
            );
            assert_eq!(new_chain, old_chain, "case {i}");
            file.extend_from_slice(&new_line);
        }
        // And `verify` (which re-serialises each Record) accepts them.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, &file).unwrap();
        let head = HeadFile {
            seq: new_chain.seq,
            mac: hex::encode(new_chain.mac),
        };
        std::fs::write(head_path(&path), serde_json::to_vec(&head).unwrap()).unwrap();
        assert_eq!(
            verify(&path, &key).unwrap(),
            Ok(Verified {
                records: cases.len() as u64,
                beyond_head: 0
            })
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
        sink.flush(&[entry(7)]).unwrap();
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
        sink.flush(&[entry(5)]).unwrap();
        assert_eq!(verify(&path, &key).unwrap().unwrap().records, 5);
    }

    #[test]
    fn queries_filter() {
        let r = as_record(&entry(1));
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
