//! The envelope: what a product stores in place of a plaintext object.
//!
//! Format version 1 (`README.md` of this crate has the same table). Integers
//! are big-endian; lengths count bytes.
//!
//! | field | size | rule |
//! | --- | --- | --- |
//! | magic | 4 | `KWEV` |
//! | version | 1 | `1` |
//! | key ARN length | 2 | 1..=2048 |
//! | key ARN | n | UTF-8, `arn:<partition>:kms:<region>:<account>:<resource>` |
//! | context pair count | 2 | |
//! | each pair: key length, key, value length, value | 2+n+2+n | UTF-8; keys non-empty and strictly ascending bytewise; the pairs take at most 8192 bytes counting 4 per pair plus keys and values |
//! | data key ciphertext length | 2 | 1..=6144 |
//! | data key ciphertext | n | the `CiphertextBlob` Keywarden returned |
//! | nonce | 12 | AES-GCM nonce, random |
//! | sealed data length | 4 | 16..=64 MiB + 16 |
//! | sealed data | n | AES-256-GCM ciphertext followed by the 16-byte tag |
//!
//! The additional authenticated data of the AES-GCM seal is the *header*:
//! every byte from the magic through the data key ciphertext. The nonce is
//! authenticated by GCM itself. Because the encoding is canonical (one
//! encoding per value, enforced when parsing), re-encoding a parsed header
//! gives back exactly the bytes that were authenticated.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::EnvelopeError;

/// The four bytes every envelope starts with.
pub const MAGIC: [u8; 4] = *b"KWEV";
/// The format version this library writes and reads.
pub const VERSION: u8 = 1;
/// The AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// The AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// The largest object (plaintext) a product may seal: 64 MiB.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024 * 1024;
/// The longest key ARN accepted.
pub const MAX_KEY_ARN_LEN: usize = 2048;
/// The longest data key ciphertext accepted (AWS's `CiphertextBlob` limit).
pub const MAX_ENCRYPTED_DATA_KEY_LEN: usize = 6144;
/// The most bytes an encryption context may take: 4 per pair plus its key
/// and value (the server's limit, counted the same way).
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// An encryption context: key-value pairs bound to the data key by the
/// server and to the data by the local seal. Ordered, so its encoding is
/// canonical.
pub type Context = BTreeMap<String, String>;

/// A sealed object: the data key ciphertext and the data ciphertext with
/// everything needed to open them (key ARN, encryption context, nonce).
///
/// Nothing in it is secret; it is meant to be stored as is. It is not
/// trusted either: [`crate::ProductClient::open`] checks it against the
/// account and context the caller expects.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub(crate) header: Header,
    pub(crate) nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the tag.
    pub(crate) sealed: Vec<u8>,
}

/// The authenticated part before the nonce.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) key_arn: String,
    pub(crate) context: Context,
    pub(crate) encrypted_data_key: Vec<u8>,
}

impl fmt::Debug for Envelope {
    // Lengths only: the data ciphertext can be 64 MiB.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("key_arn", &self.header.key_arn)
            .field("context", &self.header.context)
            .field(
                "encrypted_data_key_len",
                &self.header.encrypted_data_key.len(),
            )
            .field("sealed_len", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// The ARN of the KMS key that encrypted the data key (as Keywarden
    /// returned it from `GenerateDataKey`).
    pub fn key_arn(&self) -> &str {
        &self.header.key_arn
    }

    /// The account the key ARN names.
    pub fn account_id(&self) -> &str {
        arn_account(&self.header.key_arn).unwrap_or_default()
    }

    /// The encryption context the object was sealed with.
    pub fn context(&self) -> &Context {
        &self.header.context
    }

    /// The data key ciphertext (`CiphertextBlob`).
    pub fn encrypted_data_key(&self) -> &[u8] {
        &self.header.encrypted_data_key
    }

    /// The plaintext length (the sealed data minus the tag).
    pub fn plaintext_len(&self) -> usize {
        self.sealed.len() - TAG_LEN
    }

    /// The serialized envelope.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_bytes();
        out.reserve(NONCE_LEN + 4 + self.sealed.len());
        out.extend_from_slice(&self.nonce);
        // Bounded by MAX_PLAINTEXT_LEN + TAG_LEN when built or parsed.
        out.extend_from_slice(&(self.sealed.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.sealed);
        out
    }

    /// Parses a serialized envelope. Every malformed, truncated or
    /// over-long input is an error; the parser never panics.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let mut r = Reader { rest: bytes };
        if r.take(MAGIC.len(), "magic")? != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let version = r.take(1, "version")?[0];
        if version != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }

        let arn_len = r.u16("key ARN length")? as usize;
        if arn_len == 0 || arn_len > MAX_KEY_ARN_LEN {
            return Err(EnvelopeError::BadLength("key ARN"));
        }
        let key_arn = r.text(arn_len, "key ARN")?;
        if arn_account(&key_arn).is_none() {
            return Err(EnvelopeError::BadKeyArn);
        }

        let pairs = r.u16("context pair count")?;
        let mut context = Context::new();
        let mut context_bytes = 0usize;
        let mut previous: Option<String> = None;
        for _ in 0..pairs {
            let klen = r.u16("context key length")? as usize;
            if klen == 0 {
                return Err(EnvelopeError::BadLength("context key"));
            }
            let key = r.text(klen, "context key")?;
            let vlen = r.u16("context value length")? as usize;
            let value = r.text(vlen, "context value")?;
            context_bytes += 4 + klen + vlen;
            if context_bytes > MAX_CONTEXT_BYTES {
                return Err(EnvelopeError::BadLength("encryption context"));
            }
            if previous
                .as_ref()
                .is_some_and(|p| p.as_str() >= key.as_str())
            {
                return Err(EnvelopeError::ContextNotCanonical);
            }
            previous = Some(key.clone());
            context.insert(key, value);
        }

        let edk_len = r.u16("data key ciphertext length")? as usize;
        if edk_len == 0 || edk_len > MAX_ENCRYPTED_DATA_KEY_LEN {
            return Err(EnvelopeError::BadLength("data key ciphertext"));
        }
        let encrypted_data_key = r.take(edk_len, "data key ciphertext")?.to_vec();

        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(r.take(NONCE_LEN, "nonce")?);

        let sealed_len = r.u32("sealed data length")? as usize;
        if !(TAG_LEN..=MAX_PLAINTEXT_LEN + TAG_LEN).contains(&sealed_len) {
            return Err(EnvelopeError::BadLength("sealed data"));
        }
        let sealed = r.take(sealed_len, "sealed data")?.to_vec();
        if !r.rest.is_empty() {
            return Err(EnvelopeError::TrailingBytes(r.rest.len()));
        }

        Ok(Envelope {
            header: Header {
                key_arn,
                context,
                encrypted_data_key,
            },
            nonce,
            sealed,
        })
    }
}

impl Header {
    /// The canonical encoding: the seal's additional authenticated data and
    /// the first part of the serialized envelope. Lengths were checked by
    /// [`check_header_limits`] or the parser, so the casts do not truncate.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            MAGIC.len() + 1 + 2 + self.key_arn.len() + 2 + 2 + self.encrypted_data_key.len(),
        );
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        put_u16_field(&mut out, self.key_arn.as_bytes());
        out.extend_from_slice(&(self.context.len() as u16).to_be_bytes());
        for (k, v) in &self.context {
            put_u16_field(&mut out, k.as_bytes());
            put_u16_field(&mut out, v.as_bytes());
        }
        put_u16_field(&mut out, &self.encrypted_data_key);
        out
    }
}

/// Checks the limits the parser enforces, before anything is sealed, so an
/// envelope this library writes always parses.
pub(crate) fn check_context(context: &Context) -> Result<(), crate::Error> {
    let mut total = 0usize;
    for (k, v) in context {
        if k.is_empty() {
            return Err(crate::Error::InvalidContext("keys must not be empty"));
        }
        total = total.saturating_add(4 + k.len() + v.len());
    }
    if total > MAX_CONTEXT_BYTES {
        return Err(crate::Error::InvalidContext(
            "more than 8192 bytes (4 per pair plus keys and values)",
        ));
    }
    Ok(())
}

fn put_u16_field(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
    out.extend_from_slice(field);
}

/// The account of `arn:<partition>:kms:<region>:<account>:<resource>`, if
/// the ARN has that shape (12-digit account, non-empty parts).
pub(crate) fn arn_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let ok = arn_ == "arn"
        && !partition.is_empty()
        && service == "kms"
        && !region.is_empty()
        && is_account_id(account)
        && !resource.is_empty();
    ok.then_some(account)
}

/// Keywarden account ids are 12 ASCII digits.
pub(crate) fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], EnvelopeError> {
        if self.rest.len() < n {
            return Err(EnvelopeError::Truncated(field));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, EnvelopeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, EnvelopeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn text(&mut self, n: usize, field: &'static str) -> Result<String, EnvelopeError> {
        let b = self.take(n, field)?;
        String::from_utf8(b.to_vec()).map_err(|_| EnvelopeError::NotUtf8(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn envelope(context: Context, edk: Vec<u8>, sealed: Vec<u8>) -> Envelope {
        Envelope {
            header: Header {
                key_arn: "arn:aws:kms:us-east-1:123456789012:alias_zos".to_owned(),
                context,
                encrypted_data_key: edk,
            },
            nonce: [7; NONCE_LEN],
            sealed,
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Envelope::from_bytes(&bytes);
            let mut prefixed = b"KWEV\x01".to_vec();
            prefixed.extend_from_slice(&bytes);
            let _ = Envelope::from_bytes(&prefixed);
        }

        #[test]
        fn encoding_round_trips_and_is_canonical(
            context in proptest::collection::btree_map("[a-z:]{1,12}", "\\PC{0,20}", 0..8),
            edk in proptest::collection::vec(any::<u8>(), 1..200),
            sealed in proptest::collection::vec(any::<u8>(), TAG_LEN..200),
        ) {
            let env = envelope(context, edk, sealed);
            let bytes = env.to_bytes();
            let parsed = Envelope::from_bytes(&bytes).unwrap();
            prop_assert_eq!(&parsed, &env);
            prop_assert_eq!(parsed.to_bytes(), bytes);
        }
    }
}
