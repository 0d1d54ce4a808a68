//! The root key sealed by an HSM (`[root_key] sealed_by = "cks-..."`,
//! docs/hsm.md): the root key file holds the root key encrypted under an
//! AES-256 key that lives in the HSM, so a copy of the data dir and the
//! root key file is useless without the HSM and its PIN.
//!
//! File layout: `KWROOTH1` (8 bytes) | stored-form length (u16, big-endian)
//! | the HSM key's stored form (its CKA_ID reference) | nonce (12) |
//! AES-256-GCM(root key) with tag (48), the magic as AAD. Written once, mode
//! 0600, through a temporary file, fsynced and hard-linked into place (two
//! processes racing to create it cannot overwrite each other's).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use keywarden_core::ids::KeyId;
use keywarden_core::protector::{KeyBinding, KeyProtector, SecureRandom};
use keywarden_protector_soft::RootKey;
use zeroize::Zeroizing;

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"KWROOTH1";

/// The binding of the HSM key that seals the root key (no customer key
/// has this id: key ids are random version-4 UUIDs, this one is all ones).
fn binding() -> KeyBinding<'static> {
    static ROOT_SEALING_KEY: std::sync::OnceLock<KeyId> = std::sync::OnceLock::new();
    KeyBinding {
        key_id: ROOT_SEALING_KEY.get_or_init(|| KeyId::from_bytes([0xff; 16])),
        version: 1,
    }
}

/// Whether the file at `path` is a sealed root key file.
pub fn is_sealed(path: &Path) -> bool {
    let mut head = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == MAGIC)
}

/// Loads the sealed root key at `path` (unsealing it in the HSM), or
/// creates one there. Returns the key and whether it was created.
pub fn load_or_create(path: &Path, hsm: &dyn KeyProtector) -> Result<(RootKey, bool)> {
    match fs::read(path) {
        Ok(bytes) => Ok((unseal(path, &bytes, hsm)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, hsm),
        Err(e) => Err(e).with_context(|| format!("reading root key file {}", path.display())),
    }
}

fn unseal(path: &Path, bytes: &[u8], hsm: &dyn KeyProtector) -> Result<RootKey> {
    if !bytes.starts_with(MAGIC) {
        bail!(
            "root key file {} holds a plain root key, but [root_key] sealed_by is configured; sealing an existing root key is not supported (start from a new data dir, or remove sealed_by)",
            path.display()
        );
    }
    let malformed = || anyhow::anyhow!("root key file {} is malformed", path.display());
    let rest = &bytes[MAGIC.len()..];
    let (len, rest) = rest.split_at_checked(2).ok_or_else(malformed)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (stored, rest) = rest.split_at_checked(len).ok_or_else(malformed)?;
    let (nonce, sealed) = rest.split_at_checked(12).ok_or_else(malformed)?;
    if sealed.len() != 32 + 16 {
        return Err(malformed());
    }
    let nonce: [u8; 12] = nonce.try_into().map_err(|_| malformed())?;
    let handle = hsm.load(binding(), stored).map_err(|e| {
        anyhow::anyhow!(
            "cannot unseal the root key in {}: the HSM key that seals it is not available ({e})",
            path.display()
        )
    })?;
    let opened = handle
        .open(&nonce, MAGIC, sealed)
        .map_err(|e| anyhow::anyhow!("cannot unseal the root key in {}: {e}", path.display()))?;
    let key: &[u8; 32] = opened.expose().try_into().map_err(|_| malformed())?;
    Ok(RootKey::from_bytes(key))
}

fn create(path: &Path, hsm: &dyn KeyProtector) -> Result<(RootKey, bool)> {
    let mut key = Zeroizing::new([0u8; 32]);
    keywarden_protector_soft::SystemRandom::new()
        .fill(key.as_mut())
        .map_err(|_| anyhow::anyhow!("no randomness for the root key"))?;
    let stored = hsm
        .generate(binding())
        .map_err(|e| anyhow::anyhow!("creating the root key's sealing key in the HSM: {e}"))?;
    let sealed = hsm
        .load(binding(), &stored)
        .and_then(|h| h.seal(MAGIC, key.as_ref()))
        .map_err(|e| anyhow::anyhow!("sealing the root key in the HSM: {e}"))?;
    let len = u16::try_from(stored.len()).context("HSM key reference too long")?;
    let mut file =
        Vec::with_capacity(MAGIC.len() + 2 + stored.len() + 12 + sealed.ciphertext.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&len.to_be_bytes());
    file.extend_from_slice(&stored);
    file.extend_from_slice(&sealed.nonce);
    file.extend_from_slice(&sealed.ciphertext);

    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&file)?;
        f.sync_all()
    };
    write().with_context(|| format!("writing root key file {}", tmp.display()))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                if let Ok(d) = File::open(dir) {
                    let _ = d.sync_all();
                }
            }
            Ok((RootKey::from_bytes(&key), true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process won the race: use its key, drop our HSM key.
            let _ = hsm.destroy(binding(), &stored);
            let bytes = fs::read(path)
                .with_context(|| format!("reading root key file {}", path.display()))?;
            Ok((unseal(path, &bytes, hsm)?, false))
        }
        Err(e) => Err(e).with_context(|| format!("creating root key file {}", path.display())),
    }
}
