//! The root key and its file.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::SecureRandom as _;
use keywarden_core::protector::{ProtectorError, SecretSealer};
use keywarden_core::secret::Secret;
use zeroize::Zeroizing;

/// Length of the root key in bytes.
pub const ROOT_KEY_LEN: usize = 32;
const SEALED_V1: u8 = 0x01;
const FINGERPRINT_KEY_LABEL: &[u8] = b"keywarden/derive/import-fingerprint/v1";

/// Failures loading or creating the root key file.
#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    /// Reading or writing the file failed.
    #[error("root key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is readable or writable by group or others.
    #[error("root key file {path} has mode {mode:o}; it must not be accessible to group or others (chmod 600)")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The file does not hold exactly 32 bytes.
    #[error("root key file {path} must hold exactly {ROOT_KEY_LEN} bytes, found {len}")]
    Length {
        /// The file.
        path: PathBuf,
        /// Bytes found.
        len: usize,
    },
    /// The system random source failed.
    #[error("could not generate a root key: system random source failed")]
    Random,
}

/// The 256-bit root key. Never printed, cloned or serialised.
pub struct RootKey {
    key: RandomizedNonceKey,
    /// HMAC-SHA256 key for fingerprints of imported material, derived from
    /// the root key so that the fingerprint reveals nothing without it.
    fingerprint: hmac::Key,
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(..)")
    }
}

impl RootKey {
    /// Builds a root key from raw bytes (tests, and the HSM-sealed
    /// configuration, which unwraps the bytes elsewhere).
    pub fn from_bytes(bytes: &[u8; ROOT_KEY_LEN]) -> Self {
        // A one-block HKDF-Expand-style derivation: HMAC(root, label) is a
        // PRF output independent of every other use of the root key.
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, bytes),
            FINGERPRINT_KEY_LABEL,
        );
        RootKey {
            key: RandomizedNonceKey::new(&AES_256_GCM, bytes)
                .expect("AES-256-GCM accepts any 32-byte key"),
            fingerprint: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
        }
    }

    /// Loads the root key from `path`, or creates it there (mode 0600,
    /// written to a temporary file, fsynced and renamed into place) if the
    /// file does not exist. Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(RootKey, bool), RootKeyError> {
        let io = |source| RootKeyError::Io {
            path: path.to_owned(),
            source,
        };
        match File::open(path) {
            Ok(file) => Ok((Self::read(path, file)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; ROOT_KEY_LEN]);
                aws_lc_rs::rand::SystemRandom::new()
                    .fill(bytes.as_mut())
                    .map_err(|_| RootKeyError::Random)?;
                let tmp = path.with_extension("tmp");
                let _ = fs::remove_file(&tmp);
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(io)?;
                f.write_all(bytes.as_ref()).map_err(io)?;
                f.sync_all().map_err(io)?;
                drop(f);
                // Hard-link instead of rename so two processes racing to
                // create the key cannot overwrite each other's: the loser
                // gets AlreadyExists and reads the winner's key.
                let linked = fs::hard_link(&tmp, path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        if let Some(dir) = path.parent() {
                            if let Ok(d) = File::open(dir) {
                                let _ = d.sync_all();
                            }
                        }
                        Ok((Self::from_bytes(&bytes), true))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let file = File::open(path).map_err(io)?;
                        Ok((Self::read(path, file)?, false))
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    fn read(path: &Path, mut file: File) -> Result<RootKey, RootKeyError> {
        let io = |source| RootKeyError::Io {
            path: path.to_owned(),
            source,
        };
        let mode = file.metadata().map_err(io)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(RootKeyError::Permissions {
                path: path.to_owned(),
                mode: mode & 0o7777,
            });
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(ROOT_KEY_LEN + 1));
        Read::by_ref(&mut file)
            .take(ROOT_KEY_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(io)?;
        if buf.len() != ROOT_KEY_LEN {
            return Err(RootKeyError::Length {
                path: path.to_owned(),
                len: buf.len(),
            });
        }
        let mut bytes = Zeroizing::new([0u8; ROOT_KEY_LEN]);
        bytes.copy_from_slice(&buf);
        Ok(Self::from_bytes(&bytes))
    }

    /// Encrypts `plaintext` under the root key: `0x01 || nonce || ct || tag`.
    pub(crate) fn wrap(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, ProtectorError> {
        let mut in_out = Zeroizing::new(plaintext.to_vec());
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad), &mut *in_out)
            .map_err(|_| ProtectorError::Crypto("root key wrap"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(SEALED_V1);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    /// HMAC-SHA256 of `parts` (concatenated) under the key derived from the
    /// root key for fingerprints.
    pub(crate) fn fingerprint(&self, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.fingerprint);
        for p in parts {
            ctx.update(p);
        }
        ctx.sign().as_ref().to_vec()
    }

    /// Reverses [`RootKey::wrap`].
    pub(crate) fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> Result<Secret, ProtectorError> {
        if wrapped.len() < 1 + NONCE_LEN + 16 || wrapped[0] != SEALED_V1 {
            return Err(ProtectorError::MalformedMaterial);
        }
        let nonce = Nonce::try_assume_unique_for_key(&wrapped[1..1 + NONCE_LEN])
            .map_err(|_| ProtectorError::MalformedMaterial)?;
        let mut buf = Secret::new(wrapped[1 + NONCE_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(nonce, Aad::from(aad), buf.expose_mut())
            .map_err(|_| ProtectorError::Authentication)?
            .len();
        Ok(Secret::new(buf.expose()[..len].to_vec()))
    }
}

impl SecretSealer for RootKey {
    fn seal(&self, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, ProtectorError> {
        self.wrap(aad, secret)
    }

    fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Secret, ProtectorError> {
        self.unwrap(aad, sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_with_mode_0600_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let (a, created) = RootKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = RootKey::load_or_create(&path).unwrap();
        assert!(!created);
        let sealed = a.seal(b"aad", b"secret").unwrap();
        assert_eq!(b.unseal(b"aad", &sealed).unwrap().expose(), b"secret");
        assert!(!dir.path().join("root.tmp").exists());
    }

    #[test]
    fn refuses_a_world_readable_or_short_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        RootKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            RootKey::load_or_create(&path),
            Err(RootKeyError::Permissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, b"short").unwrap();
        assert!(matches!(
            RootKey::load_or_create(&path),
            Err(RootKeyError::Length { len: 5, .. })
        ));
    }

    #[test]
    fn sealed_secrets_are_bound_to_their_aad_and_detect_tampering() {
        let key = RootKey::from_bytes(&[7u8; 32]);
        let sealed = key.seal(b"akid-1", b"topsecret").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"topsecret"));
        assert!(matches!(
            key.unseal(b"akid-2", &sealed),
            Err(ProtectorError::Authentication)
        ));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert!(key.unseal(b"akid-1", &t).is_err(), "flip at {i} accepted");
        }
        assert!(key.unseal(b"akid-1", &sealed[..10]).is_err());
        assert_eq!(format!("{key:?}"), "RootKey(..)");
    }
}
