//! The ciphertext blob returned by Encrypt and GenerateDataKey. Specified in
//! `docs/ciphertext-format.md`:
//!
//! ```text
//! offset  size  field
//! 0       1     format version, 0x01
//! 1       16    key id (UUID bytes)
//! 17      4     key version, big-endian u32
//! 21      12    AES-256-GCM nonce
//! 33      n     ciphertext (n >= 1)
//! 33+n    16    GCM tag
//! ```
//!
//! The AAD is the 21-byte header followed by the canonical encryption context
//! (see [`crate::context`]); the nonce is authenticated by GCM itself.

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::KeyId;
use crate::protector::{KeyHandle, ProtectorError};
use crate::secret::Secret;

/// The only format version so far.
pub const FORMAT_V1: u8 = 0x01;
/// Bytes of the header (version, key id, key version).
pub const HEADER_LEN: usize = 1 + 16 + 4;
/// Bytes of the nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of the GCM tag.
pub const TAG_LEN: usize = 16;
/// Bytes a blob adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Largest blob accepted (AWS's CiphertextBlob limit).
pub const MAX_BLOB_LEN: usize = 6144;

/// A blob split into its fields; borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedBlob<'a> {
    /// The key that made the blob.
    pub key_id: KeyId,
    /// Its version.
    pub version: u32,
    header: &'a [u8],
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

/// Splits a blob into fields. Every malformed blob is `InvalidCiphertext`.
pub fn parse(blob: &[u8]) -> Result<ParsedBlob<'_>, KmsError> {
    if blob.len() < OVERHEAD + 1 || blob.len() > MAX_BLOB_LEN || blob[0] != FORMAT_V1 {
        return Err(KmsError::InvalidCiphertext);
    }
    let (header, rest) = blob.split_at(HEADER_LEN);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let mut key = [0u8; 16];
    key.copy_from_slice(&header[1..17]);
    let mut ver = [0u8; 4];
    ver.copy_from_slice(&header[17..21]);
    let mut n = [0u8; NONCE_LEN];
    n.copy_from_slice(nonce);
    Ok(ParsedBlob {
        key_id: KeyId::from_bytes(key),
        version: u32::from_be_bytes(ver),
        header,
        nonce: n,
        ciphertext,
    })
}

/// The header for a key version.
pub fn header(key_id: &KeyId, version: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = FORMAT_V1;
    h[1..17].copy_from_slice(key_id.as_bytes());
    h[17..21].copy_from_slice(&version.to_be_bytes());
    h
}

fn aad(header: &[u8], context: &EncryptionContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 64);
    aad.extend_from_slice(header);
    context.write_canonical(&mut aad);
    aad
}

/// Encrypts `plaintext` under a key version into a blob.
pub fn seal(
    handle: &dyn KeyHandle,
    key_id: &KeyId,
    version: u32,
    context: &EncryptionContext,
    plaintext: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let header = header(key_id, version);
    let sealed = handle
        .seal(&aad(&header, context), plaintext)
        .map_err(KmsError::Protector)?;
    let mut blob = Vec::with_capacity(HEADER_LEN + NONCE_LEN + sealed.ciphertext.len());
    blob.extend_from_slice(&header);
    blob.extend_from_slice(&sealed.nonce);
    blob.extend_from_slice(&sealed.ciphertext);
    Ok(blob)
}

/// Decrypts a parsed blob with the handle of the version it names.
pub fn open(
    handle: &dyn KeyHandle,
    blob: &ParsedBlob<'_>,
    context: &EncryptionContext,
) -> Result<Secret, KmsError> {
    handle
        .open(&blob.nonce, &aad(blob.header, context), blob.ciphertext)
        .map_err(|e| match e {
            ProtectorError::Authentication | ProtectorError::MalformedMaterial => {
                KmsError::InvalidCiphertext
            }
            other => KmsError::Protector(other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn header_round_trips(key in any::<[u8; 16]>(), version in any::<u32>(), body in proptest::collection::vec(any::<u8>(), NONCE_LEN + TAG_LEN + 1..200)) {
            let key_id = KeyId::from_bytes(key);
            let mut blob = header(&key_id, version).to_vec();
            blob.extend_from_slice(&body);
            let parsed = parse(&blob).unwrap();
            prop_assert_eq!(parsed.key_id, key_id);
            prop_assert_eq!(parsed.version, version);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn short_long_and_foreign_blobs_are_invalid() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[FORMAT_V1; OVERHEAD]).is_err());
        assert!(parse(&vec![FORMAT_V1; MAX_BLOB_LEN + 1]).is_err());
        let mut foreign = vec![0u8; 100];
        foreign[0] = 0x02;
        assert!(parse(&foreign).is_err());
    }
}
