//! The message format, version 2 (`docs/envelope.md`): serialisation and
//! strict parsing of the header, the frames and the footer. No policy lives
//! here (which keys, when plaintext is released: see [`crate::stream`]).
//!
//! ```text
//! header body   02 | suite id u16 | message id [32]
//!               | context length u16 | context (count u16, then sorted
//!                 (key u16-len, value u16-len) pairs; nothing if empty)
//!               | EDK count u16 (> 0) | per EDK: provider id, provider
//!                 info, ciphertext, each u16-length-prefixed
//!               | content type 02 (framed) or 01 (non-framed, read
//!                 only) | frame length u32 (> 0 framed, 0 non-framed)
//!               | suite data [32] (the commitment key)
//! header auth   tag [16] (AES-GCM, IV 0, AAD = header body, no plaintext)
//! non-framed    IV [12] | content length u64 | ciphertext | tag [16]
//! body          (instead of frames)
//! regular frame seq u32 | IV [12] (the seq, left-padded) | ciphertext [frame length] | tag [16]
//! final frame   FF FF FF FF | seq u32 | IV [12] | length u32 (<= frame
//!               length) | ciphertext | tag [16]
//! footer        (signed suite only) length u16 | DER ECDSA signature
//! ```
//!
//! All integers are big-endian. Parsing reports every truncation or bad
//! value as [`Error::Malformed`] naming the field and byte offset, never
//! the bytes themselves.

use std::io::{ErrorKind, Read};

use aws_lc_rs::digest;

use crate::error::Error;
use crate::keys::frame_iv;
use crate::materials::{EncryptedDataKey, EncryptionContext};
use crate::suite::AlgorithmSuite;

/// The message format version written and accepted.
pub const MESSAGE_FORMAT_VERSION: u8 = 0x02;
/// Content type of framed bodies, the only one written.
pub const CONTENT_TYPE_FRAMED: u8 = 0x02;
/// Content type of non-framed bodies (one IV, one tag for the whole
/// content), accepted when decrypting only.
pub const CONTENT_TYPE_NON_FRAMED: u8 = 0x01;
/// The longest non-framed content the format allows: `2^36 - 32` bytes,
/// the most one AES-GCM invocation may encrypt.
pub const MAX_NON_FRAMED_CONTENT_LENGTH: u64 = (1 << 36) - 32;
/// Length of the message id, in bytes.
pub const MESSAGE_ID_LEN: usize = 32;
/// Length of the commitment key (the header's suite data), in bytes.
pub const COMMITMENT_LEN: usize = 32;
/// AES-GCM IV length, in bytes.
pub const IV_LEN: usize = 12;
/// AES-GCM tag length, in bytes.
pub const TAG_LEN: usize = 16;
/// The sequence number end marker that opens the final frame.
pub const FINAL_FRAME_MARKER: u32 = 0xFFFF_FFFF;
/// The longest header body accepted when decrypting. The format allows
/// up to 65535 encrypted data keys of up to 3 × 65535 bytes each (12 GiB);
/// the header is held in memory for its authentication tag, so it is
/// capped. Real headers are a few hundred bytes per encrypted data key.
pub const MAX_HEADER_LENGTH: usize = 1 << 20;

/// The header body of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The suite.
    pub suite: AlgorithmSuite,
    /// The random message id (HKDF salt, bound into every frame).
    pub message_id: [u8; MESSAGE_ID_LEN],
    /// The encryption context.
    pub context: EncryptionContext,
    /// The encrypted copies of the data key (at least one).
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// Plaintext bytes per regular frame (at least 1); 0 for a non-framed
    /// message (as the format requires), which is only ever parsed.
    pub frame_length: u32,
    /// The commitment key derived from the data key.
    pub commitment: [u8; COMMITMENT_LEN],
}

impl Header {
    /// Whether the body is framed (content type 02) rather than one
    /// non-framed block (content type 01).
    pub fn is_framed(&self) -> bool {
        self.frame_length != 0
    }

    /// The serialised header body (what the header tag authenticates).
    /// Only framed headers are written: a frame length of 0 is refused.
    pub fn serialize_body(&self) -> Result<Vec<u8>, Error> {
        if self.frame_length == 0 {
            return Err(Error::Config("the frame length must be at least 1".into()));
        }
        if self.encrypted_data_keys.is_empty() {
            return Err(Error::KeyProvider(
                "the keyring returned no encrypted data key".into(),
            ));
        }
        let edk_count = u16::try_from(self.encrypted_data_keys.len())
            .map_err(|_| Error::KeyProvider("more than 65535 encrypted data keys".into()))?;
        let context = serialize_context(&self.context)?;
        let mut out = Vec::with_capacity(128 + context.len());
        out.push(MESSAGE_FORMAT_VERSION);
        out.extend_from_slice(&self.suite.id().to_be_bytes());
        out.extend_from_slice(&self.message_id);
        // serialize_context guarantees the length fits.
        out.extend_from_slice(&(context.len() as u16).to_be_bytes());
        out.extend_from_slice(&context);
        out.extend_from_slice(&edk_count.to_be_bytes());
        for edk in &self.encrypted_data_keys {
            for field in [
                edk.provider_id.as_bytes(),
                &edk.provider_info,
                &edk.ciphertext,
            ] {
                put_u16_prefixed(&mut out, field).map_err(|_| {
                    Error::KeyProvider("an encrypted data key field exceeds 65535 bytes".into())
                })?;
            }
        }
        out.push(CONTENT_TYPE_FRAMED);
        out.extend_from_slice(&self.frame_length.to_be_bytes());
        out.extend_from_slice(&self.commitment);
        Ok(out)
    }
}

fn put_u16_prefixed(out: &mut Vec<u8>, field: &[u8]) -> Result<(), ()> {
    let len = u16::try_from(field.len()).map_err(|_| ())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}

/// The specification's serialisation of an encryption context: empty for
/// an empty context, else the pair count then each key and value
/// length-prefixed, sorted by the keys' UTF-8 bytes. Used in the header
/// and as the AAD of raw keyrings. Fails ([`Error::Context`]) if a count
/// or length exceeds 65535 or the whole exceeds 65535 bytes (the header
/// field's limit).
pub fn serialize_context(context: &EncryptionContext) -> Result<Vec<u8>, Error> {
    if context.is_empty() {
        return Ok(Vec::new());
    }
    let too_long =
        || Error::Context("the serialised encryption context exceeds 65535 bytes".into());
    let count = u16::try_from(context.len()).map_err(|_| too_long())?;
    let mut out = Vec::new();
    out.extend_from_slice(&count.to_be_bytes());
    // BTreeMap<String, _> iterates in byte order of the UTF-8 keys.
    for (key, value) in context {
        put_u16_prefixed(&mut out, key.as_bytes()).map_err(|_| too_long())?;
        put_u16_prefixed(&mut out, value.as_bytes()).map_err(|_| too_long())?;
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(too_long());
    }
    Ok(out)
}

/// Parses a serialised encryption context strictly: the pairs must fill
/// the field exactly, be UTF-8, and have distinct keys. Pairs out of
/// order are accepted (older SDKs sorted by UTF-16); what is
/// authenticated is the bytes as stored.
pub fn parse_context(bytes: &[u8]) -> Result<EncryptionContext, Error> {
    let mut context = EncryptionContext::new();
    if bytes.is_empty() {
        return Ok(context);
    }
    let mut cur = Cursor { bytes, pos: 0 };
    let count = cur.u16("encryption context pair count")?;
    if count == 0 {
        return Err(Error::Malformed(
            "encryption context: a non-empty field with zero pairs".into(),
        ));
    }
    for i in 0..count {
        let key = cur.utf8("encryption context key", i)?;
        let value = cur.utf8("encryption context value", i)?;
        if context.insert(key, value).is_some() {
            return Err(Error::Malformed(format!(
                "encryption context: pair {i} repeats a key"
            )));
        }
    }
    if cur.pos != bytes.len() {
        return Err(Error::Malformed(format!(
            "encryption context: {} bytes after the last pair",
            bytes.len() - cur.pos
        )));
    }
    Ok(context)
}

/// A cursor over an in-memory field.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], Error> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(Error::Malformed(format!(
                "{what}: runs past its field (at byte {} of it)",
                self.pos
            )));
        };
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn utf8(&mut self, what: &str, index: u16) -> Result<String, Error> {
        let len = self.u16(what)?;
        let b = self.take(usize::from(len), what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| Error::Malformed(format!("{what} of pair {index} is not UTF-8")))
    }
}

/// Reads a message from a byte stream: counts offsets for error messages
/// and feeds what it reads to the signature digest once one is started.
pub(crate) struct MessageReader<R> {
    inner: R,
    offset: u64,
    digest: Option<digest::Context>,
}

impl<R: Read> MessageReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        MessageReader {
            inner,
            offset: 0,
            digest: None,
        }
    }

    /// From now on, every byte read also goes into `digest`.
    pub(crate) fn start_digest(&mut self, digest: digest::Context) {
        self.digest = Some(digest);
    }

    /// Stops feeding the digest and returns it.
    pub(crate) fn take_digest(&mut self) -> Option<digest::Context> {
        self.digest.take()
    }

    /// Appends exactly `n` bytes to `buf`. The buffer grows as bytes
    /// arrive, so a length field claiming gigabytes costs memory only if
    /// the bytes are really there.
    pub(crate) fn read_into(
        &mut self,
        buf: &mut Vec<u8>,
        n: usize,
        what: &str,
    ) -> Result<(), Error> {
        let start = buf.len();
        buf.reserve(n.min(1 << 16));
        let got = (&mut self.inner).take(n as u64).read_to_end(buf)?;
        if got < n {
            return Err(self.truncated(what, got as u64));
        }
        if let Some(d) = self.digest.as_mut() {
            d.update(&buf[start..]);
        }
        self.offset += n as u64;
        Ok(())
    }

    pub(crate) fn read_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        let mut filled = 0;
        while filled < N {
            match self.inner.read(&mut out[filled..]) {
                Ok(0) => return Err(self.truncated(what, filled as u64)),
                Ok(k) => filled += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
        if let Some(d) = self.digest.as_mut() {
            d.update(&out);
        }
        self.offset += N as u64;
        Ok(out)
    }

    pub(crate) fn read_u16(&mut self, what: &str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.read_array(what)?))
    }

    pub(crate) fn read_u32(&mut self, what: &str) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.read_array(what)?))
    }

    /// Whether the input has ended (reads at most one byte).
    pub(crate) fn at_end(&mut self) -> Result<bool, Error> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    fn truncated(&self, what: &str, got: u64) -> Error {
        Error::Malformed(format!(
            "truncated in {what} (input ends at byte {})",
            self.offset + got
        ))
    }
}

/// Reads the header body field by field, keeping its bytes (for the
/// header tag) and refusing more than [`MAX_HEADER_LENGTH`] of them.
struct HeaderReader<'r, R> {
    reader: &'r mut MessageReader<R>,
    body: Vec<u8>,
}

impl<R: Read> HeaderReader<'_, R> {
    fn bytes(&mut self, n: usize, what: &str) -> Result<&[u8], Error> {
        if self.body.len() + n > MAX_HEADER_LENGTH {
            return Err(Error::Malformed(format!(
                "header: longer than {MAX_HEADER_LENGTH} bytes (at {what})"
            )));
        }
        let start = self.body.len();
        self.reader.read_into(&mut self.body, n, what)?;
        Ok(&self.body[start..])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn prefixed(&mut self, what: &str) -> Result<Vec<u8>, Error> {
        let len = self.u16(what)?;
        Ok(self.bytes(usize::from(len), what)?.to_vec())
    }
}

/// Reads and checks a header body; returns it and its bytes. Stops with
/// [`Error::TooManyEncryptedDataKeys`] as soon as the count is read if it
/// exceeds `max_encrypted_data_keys`.
pub(crate) fn read_header_body<R: Read>(
    reader: &mut MessageReader<R>,
    max_encrypted_data_keys: Option<usize>,
) -> Result<(Header, Vec<u8>), Error> {
    let mut h = HeaderReader {
        reader,
        body: Vec::with_capacity(512),
    };
    let [version] = h.array::<1>("header version")?;
    if version != MESSAGE_FORMAT_VERSION {
        return Err(Error::Malformed(format!(
            "header: message format version {version} is not supported (only 2)"
        )));
    }
    let suite_id = h.u16("header algorithm suite id")?;
    let suite = AlgorithmSuite::from_id(suite_id).ok_or_else(|| {
        Error::Malformed(format!(
            "header: algorithm suite 0x{suite_id:04x} is not supported"
        ))
    })?;
    let message_id = h.array::<MESSAGE_ID_LEN>("header message id")?;
    let context_bytes = h.prefixed("header encryption context")?;
    let context = parse_context(&context_bytes)
        .map_err(|e| Error::Malformed(format!("header: {}", error_detail(&e))))?;
    let edk_count = usize::from(h.u16("header encrypted data key count")?);
    if edk_count == 0 {
        return Err(Error::Malformed("header: zero encrypted data keys".into()));
    }
    if let Some(max) = max_encrypted_data_keys {
        if edk_count > max {
            return Err(Error::TooManyEncryptedDataKeys {
                found: edk_count,
                max,
            });
        }
    }
    let mut encrypted_data_keys = Vec::with_capacity(edk_count.min(64));
    for i in 0..edk_count {
        let provider_id = h.prefixed("header encrypted data key provider id")?;
        let provider_id = String::from_utf8(provider_id).map_err(|_| {
            Error::Malformed(format!(
                "header: provider id of encrypted data key {i} is not UTF-8"
            ))
        })?;
        let provider_info = h.prefixed("header encrypted data key provider info")?;
        let ciphertext = h.prefixed("header encrypted data key ciphertext")?;
        encrypted_data_keys.push(EncryptedDataKey {
            provider_id,
            provider_info,
            ciphertext,
        });
    }
    let [content_type] = h.array::<1>("header content type")?;
    if content_type != CONTENT_TYPE_FRAMED && content_type != CONTENT_TYPE_NON_FRAMED {
        return Err(Error::Malformed(format!(
            "header: unknown content type {content_type}"
        )));
    }
    // The frame length alone then tells the two apart (Header::is_framed).
    let frame_length = u32::from_be_bytes(h.array("header frame length")?);
    if content_type == CONTENT_TYPE_FRAMED && frame_length == 0 {
        return Err(Error::Malformed(
            "header: frame length 0 in a framed message".into(),
        ));
    }
    if content_type == CONTENT_TYPE_NON_FRAMED && frame_length != 0 {
        return Err(Error::Malformed(
            "header: non-zero frame length in a non-framed message".into(),
        ));
    }
    let commitment = h.array::<COMMITMENT_LEN>("header algorithm suite data")?;
    let header = Header {
        suite,
        message_id,
        context,
        encrypted_data_keys,
        frame_length,
        commitment,
    };
    Ok((header, h.body))
}

fn error_detail(e: &Error) -> String {
    match e {
        Error::Malformed(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A frame as read: where its ciphertext went and its tag.
#[derive(Debug)]
pub(crate) struct FrameRead {
    pub(crate) is_final: bool,
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) tag: [u8; TAG_LEN],
}

/// Reads the frame `expected_sequence_number` into `buf` (cleared first):
/// checks the sequence number and the final frame's length.
pub(crate) fn read_frame<R: Read>(
    reader: &mut MessageReader<R>,
    expected_sequence_number: u32,
    frame_length: u32,
    buf: &mut Vec<u8>,
) -> Result<FrameRead, Error> {
    let n = expected_sequence_number;
    let start = reader.offset();
    let first = reader.read_u32("frame sequence number")?;
    let is_final = first == FINAL_FRAME_MARKER;
    let sequence_number = if is_final {
        reader.read_u32("final frame sequence number")?
    } else {
        first
    };
    if sequence_number != n {
        return Err(Error::Malformed(format!(
            "frame at byte {start}: sequence number out of order (expected {n})"
        )));
    }
    // Encryptors write the sequence number, zero-padded, as the IV. The
    // official SDKs decrypt with the IV as stored (their shared
    // known-answer messages use other padding), and so do we: GCM then
    // authenticates these bytes too.
    let iv = reader.read_array::<IV_LEN>("frame IV")?;
    let len = if is_final {
        let len = reader.read_u32("final frame content length")?;
        if len > frame_length {
            return Err(Error::Malformed(format!(
                "frame {n}: final frame longer than the frame length"
            )));
        }
        len
    } else {
        frame_length
    };
    buf.clear();
    reader.read_into(buf, len as usize, "frame content")?;
    let tag = reader.read_array::<TAG_LEN>("frame authentication tag")?;
    Ok(FrameRead { is_final, iv, tag })
}

/// A non-framed body as read: its IV and tag (the ciphertext went into
/// the caller's buffer).
#[derive(Debug)]
pub(crate) struct NonFramedRead {
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) tag: [u8; TAG_LEN],
}

/// Reads a non-framed body into `buf` (cleared first). The declared
/// content length is checked against the format's limit
/// ([`Error::Malformed`]) and against `max_length`
/// ([`Error::NonFramedTooLong`]) as soon as it is read, before any content
/// byte is read or any room is made for it; past that, `buf` grows only as
/// bytes really arrive.
pub(crate) fn read_non_framed_body<R: Read>(
    reader: &mut MessageReader<R>,
    max_length: u64,
    buf: &mut Vec<u8>,
) -> Result<NonFramedRead, Error> {
    let iv = reader.read_array::<IV_LEN>("non-framed body IV")?;
    let length = u64::from_be_bytes(reader.read_array("non-framed content length")?);
    if length > MAX_NON_FRAMED_CONTENT_LENGTH {
        return Err(Error::Malformed(format!(
            "non-framed body: content length {length} exceeds the format's limit of 2^36 - 32 bytes"
        )));
    }
    if length > max_length {
        return Err(Error::NonFramedTooLong {
            length,
            max: max_length,
        });
    }
    let n = usize::try_from(length).map_err(|_| Error::NonFramedTooLong {
        length,
        max: usize::MAX as u64,
    })?;
    buf.clear();
    reader.read_into(buf, n, "non-framed content")?;
    let tag = reader.read_array::<TAG_LEN>("non-framed body authentication tag")?;
    Ok(NonFramedRead { iv, tag })
}

/// The bytes before a frame's content.
pub(crate) fn frame_prefix(out: &mut Vec<u8>, sequence_number: u32, is_final: bool, len: u32) {
    if is_final {
        out.extend_from_slice(&FINAL_FRAME_MARKER.to_be_bytes());
    }
    out.extend_from_slice(&sequence_number.to_be_bytes());
    out.extend_from_slice(&frame_iv(sequence_number));
    if is_final {
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Reads the footer: the signature.
pub(crate) fn read_footer<R: Read>(reader: &mut MessageReader<R>) -> Result<Vec<u8>, Error> {
    let len = reader.read_u16("footer signature length")?;
    let mut signature = Vec::new();
    reader.read_into(&mut signature, usize::from(len), "footer signature")?;
    Ok(signature)
}

/// The footer bytes for `signature`.
pub(crate) fn footer(signature: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(2 + signature.len());
    put_u16_prefixed(&mut out, signature).map_err(|_| Error::Internal("signature length"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn context_serialisation_is_sorted_and_length_prefixed() {
        assert!(serialize_context(&EncryptionContext::new())
            .unwrap()
            .is_empty());
        let bytes = serialize_context(&ctx(&[("b", "22"), ("a", "1")])).unwrap();
        assert_eq!(
            bytes,
            [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 2, b'2', b'2']
        );
        assert_eq!(
            parse_context(&bytes).unwrap(),
            ctx(&[("a", "1"), ("b", "22")])
        );
    }

    #[test]
    fn oversized_contexts_are_refused() {
        let big = "x".repeat(40_000);
        let c = ctx(&[("a", &big), ("b", &big)]);
        assert!(matches!(serialize_context(&c), Err(Error::Context(_))));
        let c = ctx(&[("a", &"y".repeat(70_000))]);
        assert!(matches!(serialize_context(&c), Err(Error::Context(_))));
    }

    #[test]
    fn bad_contexts_are_malformed() {
        let cases: &[&[u8]] = &[
            &[0],                                        // count cut short
            &[0, 0],                                     // zero pairs in a non-empty field
            &[0, 1, 0, 1, b'a'],                         // value missing
            &[0, 1, 0, 1, b'a', 0, 2, b'1'],             // value cut short
            &[0, 1, 0, 1, b'a', 0, 0, 9],                // trailing byte
            &[0, 1, 0, 1, 0xff, 0, 0],                   // key not UTF-8
            &[0, 2, 0, 1, b'a', 0, 0, 0, 1, b'a', 0, 0], // repeated key
        ];
        for case in cases {
            assert!(
                matches!(parse_context(case), Err(Error::Malformed(_))),
                "{case:?}"
            );
        }
    }

    fn header() -> Header {
        Header {
            suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
            message_id: [7; 32],
            context: ctx(&[("purpose", "test")]),
            encrypted_data_keys: vec![EncryptedDataKey {
                provider_id: "p".into(),
                provider_info: b"info".to_vec(),
                ciphertext: vec![1, 2, 3],
            }],
            frame_length: 4096,
            commitment: [9; 32],
        }
    }

    #[test]
    fn header_round_trips_and_every_truncation_is_malformed() {
        let h = header();
        let body = h.serialize_body().unwrap();
        let (parsed, raw) = read_header_body(&mut MessageReader::new(&body[..]), None).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(raw, body);
        for cut in 0..body.len() {
            let r = read_header_body(&mut MessageReader::new(&body[..cut]), None);
            assert!(matches!(r, Err(Error::Malformed(_))), "cut at {cut}");
        }
    }

    #[test]
    fn header_limits_and_bad_values() {
        let mut h = header();
        h.encrypted_data_keys = vec![h.encrypted_data_keys[0].clone(); 3];
        let body = h.serialize_body().unwrap();
        assert!(matches!(
            read_header_body(&mut MessageReader::new(&body[..]), Some(2)),
            Err(Error::TooManyEncryptedDataKeys { found: 3, max: 2 })
        ));
        assert!(read_header_body(&mut MessageReader::new(&body[..]), Some(3)).is_ok());

        let body = header().serialize_body().unwrap();
        let edk_count_at = 1 + 2 + 32 + 2 + serialize_context(&header().context).unwrap().len();
        let content_type_at = body.len() - 32 - 4 - 1;
        let frame_length_at = body.len() - 32 - 4;
        let mutations: Vec<(usize, u8)> = vec![
            (0, 1),                // version 1
            (1, 0x03),             // suite 0x0378 (not committing)
            (edk_count_at + 1, 0), // zero EDKs
            (content_type_at, 1),  // non-framed with a frame length
            (content_type_at, 3),  // unknown content type
        ];
        for (at, value) in mutations {
            let mut b = body.clone();
            b[at] = value;
            let r = read_header_body(&mut MessageReader::new(&b[..]), None);
            assert!(matches!(r, Err(Error::Malformed(_))), "byte {at} = {value}");
        }
        let mut b = body.clone();
        b[frame_length_at..frame_length_at + 4].copy_from_slice(&[0; 4]);
        assert!(matches!(
            read_header_body(&mut MessageReader::new(&b[..]), None),
            Err(Error::Malformed(_))
        ));
        // Non-framed: content type 01 with frame length 0.
        b[content_type_at] = CONTENT_TYPE_NON_FRAMED;
        let (parsed, _) = read_header_body(&mut MessageReader::new(&b[..]), None).unwrap();
        assert_eq!(parsed.frame_length, 0);
        assert!(!parsed.is_framed());
        assert!(header().is_framed());
    }

    fn non_framed_body(declared: u64, content: &[u8]) -> Vec<u8> {
        let mut b = vec![0xa5; IV_LEN];
        b.extend_from_slice(&declared.to_be_bytes());
        b.extend_from_slice(content);
        b.extend_from_slice(&[0x5a; TAG_LEN]);
        b
    }

    #[test]
    fn non_framed_body_reads_and_every_truncation_is_malformed() {
        let b = non_framed_body(5, b"hello");
        let mut buf = vec![1, 2, 3];
        let read = read_non_framed_body(&mut MessageReader::new(&b[..]), 5, &mut buf).unwrap();
        assert_eq!(buf, b"hello");
        assert_eq!(read.iv, [0xa5; IV_LEN]);
        assert_eq!(read.tag, [0x5a; TAG_LEN]);
        for cut in 0..b.len() {
            let r = read_non_framed_body(&mut MessageReader::new(&b[..cut]), 5, &mut buf);
            assert!(matches!(r, Err(Error::Malformed(_))), "cut at {cut}");
        }
    }

    #[test]
    fn non_framed_lengths_are_checked_before_the_content_is_read() {
        // The content is absent: a limit error (not a truncation) shows the
        // length was refused before any content byte was wanted.
        let b = non_framed_body(6, b"");
        let mut buf = Vec::new();
        let r = read_non_framed_body(&mut MessageReader::new(&b[..IV_LEN + 8]), 5, &mut buf);
        assert!(
            matches!(r, Err(Error::NonFramedTooLong { length: 6, max: 5 })),
            "{r:?}"
        );
        assert_eq!(buf.capacity(), 0);
        let b = non_framed_body(MAX_NON_FRAMED_CONTENT_LENGTH + 1, b"");
        let r = read_non_framed_body(&mut MessageReader::new(&b[..]), u64::MAX, &mut buf);
        let Err(Error::Malformed(msg)) = r else {
            panic!("expected Malformed, got {r:?}")
        };
        assert!(msg.contains("2^36 - 32"), "{msg}");
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn oversized_headers_are_refused_before_reading_them() {
        // 65535 EDKs claiming 65535-byte fields, but only a few bytes present.
        let mut b = vec![MESSAGE_FORMAT_VERSION, 0x04, 0x78];
        b.extend_from_slice(&[0; 32]);
        b.extend_from_slice(&[0, 0, 0xff, 0xff]);
        for _ in 0..20 {
            b.extend_from_slice(&[0xff, 0xff]);
            b.extend_from_slice(&vec![b'a'; 65535]);
        }
        let r = read_header_body(&mut MessageReader::new(&b[..]), None);
        let Err(Error::Malformed(msg)) = r else {
            panic!("expected Malformed, got {r:?}")
        };
        assert!(msg.contains("longer than"), "{msg}");
    }

    #[test]
    fn footer_round_trips() {
        let f = footer(&[1, 2, 3]).unwrap();
        assert_eq!(f, [0, 3, 1, 2, 3]);
        assert_eq!(
            read_footer(&mut MessageReader::new(&f[..])).unwrap(),
            [1, 2, 3]
        );
        assert!(matches!(
            read_footer(&mut MessageReader::new(&f[..4])),
            Err(Error::Malformed(_))
        ));
    }
}
