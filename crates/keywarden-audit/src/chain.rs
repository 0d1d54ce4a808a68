//! The chain: the [`AuditKey`] (HMAC-SHA256, sealed under the root key in
//! its own file), [`Chain`] (the last link: seq and mac) and how a record
//! is linked, and the head file that remembers the last durable link.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::hmac;
use keywarden_core::protector::SecretSealer;
use serde::{Deserialize, Serialize};

use crate::error::AuditError;
use crate::record::{Entry, Record};

/// The AAD the audit key is sealed under.
const AUDIT_KEY_AAD: &[u8] = b"keywarden audit key v1";

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
    pub fn load_or_create(path: &Path, sealer: &dyn SecretSealer) -> Result<AuditKey, AuditError> {
        if !path.exists() {
            let mut raw = zeroize::Zeroizing::new([0u8; 32]);
            aws_lc_rs::rand::fill(&mut raw[..]).map_err(|_| AuditError::Randomness)?;
            let sealed = sealer
                .seal(AUDIT_KEY_AAD, &raw[..])
                .map_err(|error| AuditError::SealKey { error })?;
            write_atomically(path, &sealed).map_err(|error| AuditError::WriteKey {
                path: path.to_owned(),
                error,
            })?;
        }
        AuditKey::load(path, sealer)
    }

    /// Loads the audit key sealed at `path`.
    pub fn load(path: &Path, sealer: &dyn SecretSealer) -> Result<AuditKey, AuditError> {
        let sealed = std::fs::read(path).map_err(|error| AuditError::ReadKey {
            path: path.to_owned(),
            error,
        })?;
        let raw = sealer
            .unseal(AUDIT_KEY_AAD, &sealed)
            .map_err(|_| AuditError::WrongRootKey {
                path: path.to_owned(),
            })?;
        Ok(AuditKey::from_bytes(raw.expose()))
    }

    pub(crate) fn mac(&self, prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(prev);
        ctx.update(canonical);
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    pub(crate) fn verify(&self, prev: &[u8; 32], canonical: &[u8], mac: &[u8]) -> bool {
        let mut data = Vec::with_capacity(32 + canonical.len());
        data.extend_from_slice(prev);
        data.extend_from_slice(canonical);
        hmac::verify(&self.0, &data, mac).is_ok()
    }
}

/// Writes `bytes` to `path` through a 0600 temporary file, fsync and
/// rename, then fsyncs the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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

pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
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
    /// Before the first record.
    pub(crate) const START: Chain = Chain {
        seq: 0,
        mac: [0; 32],
    };

    /// Appends `entry` as the next link to `out`: its line, with the
    /// newline. The record is serialised once: the mac is computed over the
    /// canonical bytes just written, then spliced in as the last field
    /// (the canonical bytes end in the record's closing brace).
    pub(crate) fn append(&mut self, key: &AuditKey, entry: &Entry, out: &mut Vec<u8>) {
        let seq = self.seq + 1;
        let start = out.len();
        serde_json::to_writer(&mut *out, &entry.canonical(seq)).expect("records serialise");
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

/// The head file's content: the last durable link, mac in hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeadFile {
    pub(crate) seq: u64,
    pub(crate) mac: String,
}

/// The head file of the audit file at `path`: `<path>.head`.
pub fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// The head file at `path`, if there is one.
pub(crate) fn read_head(path: &Path) -> std::io::Result<Option<Chain>> {
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

/// A mac from its 64 hex digits.
pub(crate) fn parse_mac(text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}

/// The link a line of the audit file records, if it is a record.
pub(crate) fn chain_of_line(line: &[u8]) -> Option<Chain> {
    let r: Record = serde_json::from_slice(line).ok()?;
    Some(Chain {
        seq: r.seq,
        mac: parse_mac(&r.mac)?,
    })
}
