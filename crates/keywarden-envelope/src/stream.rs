//! Streaming encryption and decryption over `std::io`, in constant memory:
//! one frame of plaintext (plus the header) is held at a time, whatever the
//! input size. The exception is decrypting a non-framed message (which is
//! never written): its one tag covers all of it, so its content is held
//! whole, up to [`DecryptOptions::max_non_framed_length`].

use std::io::{Read, Write};

use aws_lc_rs::digest;
use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P384_SHA384_ASN1};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::keys;
use crate::materials::{
    DecryptionRequest, EncryptedDataKey, EncryptionContext, EncryptionRequest, MaterialsManager,
};
use crate::message::{self, Header, MessageReader, MESSAGE_ID_LEN, TAG_LEN};
use crate::suite::AlgorithmSuite;

/// Options of [`encrypt`].
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// The suite; default the signed one, like the official SDKs.
    pub suite: AlgorithmSuite,
    /// Plaintext bytes per frame (1 to 2^32 - 1); default 4096. Encryption
    /// and decryption each hold about one frame in memory.
    pub frame_length: u32,
    /// The plaintext length if known (passed to the materials manager).
    /// When set, an input longer than this fails with [`Error::Config`].
    pub plaintext_length: Option<u64>,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        EncryptOptions {
            suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
            frame_length: 4096,
            plaintext_length: None,
        }
    }
}

/// The default of [`DecryptOptions::max_non_framed_length`]: 64 MiB.
pub const DEFAULT_MAX_NON_FRAMED_LENGTH: u64 = 64 << 20;

/// Options of [`decrypt`].
#[derive(Debug, Clone)]
pub struct DecryptOptions {
    /// Refuse messages with more encrypted data keys than this (before any
    /// key is decrypted); `None`: no limit.
    pub max_encrypted_data_keys: Option<usize>,
    /// Refuse messages whose encryption context lacks any of these pairs
    /// (checked before any plaintext is written).
    pub required_context: EncryptionContext,
    /// The most content bytes a non-framed message may declare; default
    /// [`DEFAULT_MAX_NON_FRAMED_LENGTH`] (64 MiB). A non-framed message is
    /// held whole in memory until it verified, so one declaring more is
    /// refused ([`Error::NonFramedTooLong`]) as soon as its length is read.
    /// Framed messages are not affected.
    pub max_non_framed_length: u64,
}

impl Default for DecryptOptions {
    fn default() -> Self {
        DecryptOptions {
            max_encrypted_data_keys: None,
            required_context: EncryptionContext::new(),
            max_non_framed_length: DEFAULT_MAX_NON_FRAMED_LENGTH,
        }
    }
}

/// What a message held, besides its plaintext.
#[derive(Debug, Clone)]
pub struct MessageInfo {
    /// Its suite.
    pub suite: AlgorithmSuite,
    /// Its 32-byte message id.
    pub message_id: [u8; 32],
    /// Its encryption context as stored (including reserved keys).
    pub context: EncryptionContext,
    /// Its encrypted data keys.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// Its frame length; 0 for a non-framed message (decryption only).
    pub frame_length: u32,
    /// Plaintext bytes processed.
    pub plaintext_length: u64,
}

/// The most bytes a frame's prefix takes (final frame: marker, sequence
/// number, IV, content length).
const MAX_FRAME_PREFIX: usize = 4 + 4 + message::IV_LEN + 4;

/// Encrypts `input` into one message written to `output`.
///
/// Asks `materials` for the data key (and, for the signed suite, a signing
/// key whose public key is added to the context), then writes the header,
/// one frame per `options.frame_length` plaintext bytes (the last one a
/// final frame, full-length when the plaintext is an exact multiple; an
/// empty final frame for an empty input), and for the signed suite the
/// footer: an ECDSA P-384 signature over the SHA-384 digest of everything
/// before it, computed as the bytes are written. Memory is one frame.
///
/// `context` must not use `aws-crypto-` keys ([`Error::Context`]). On
/// error, `output` holds an incomplete message that must be discarded.
pub async fn encrypt<R: Read + Send, W: Write + Send>(
    materials: &dyn MaterialsManager,
    context: &EncryptionContext,
    options: &EncryptOptions,
    mut input: R,
    mut output: W,
) -> Result<MessageInfo, Error> {
    if options.frame_length == 0 {
        return Err(Error::Config("the frame length must be at least 1".into()));
    }
    let suite = options.suite;
    let materials = materials
        .encryption_materials(EncryptionRequest {
            suite,
            context,
            plaintext_length: options.plaintext_length,
        })
        .await?;
    if materials.suite != suite {
        return Err(Error::Config(format!(
            "the materials manager chose {} for a request for {}",
            materials.suite.name(),
            suite.name()
        )));
    }
    let signer = match (suite.is_signed(), &materials.signing_key) {
        (true, Some(key)) => Some(key.key_pair()?),
        (false, None) => None,
        _ => {
            return Err(Error::KeyProvider(
                "the materials' signing key does not match the suite".into(),
            ))
        }
    };

    let mut message_id = [0u8; MESSAGE_ID_LEN];
    aws_lc_rs::rand::fill(&mut message_id).map_err(|_| Error::Internal("random message id"))?;
    let (key, commitment) = keys::derive(suite, &materials.data_key, &message_id)?;
    let header = Header {
        suite,
        message_id,
        context: materials.context,
        encrypted_data_keys: materials.encrypted_data_keys,
        frame_length: options.frame_length,
        commitment,
    };
    let body = header.serialize_body()?;
    let header_tag = key.header_tag(&body)?;
    let mut digest = signer
        .as_ref()
        .map(|_| digest::Context::new(&digest::SHA384));
    emit(&mut output, &mut digest, &body)?;
    emit(&mut output, &mut digest, &header_tag)?;
    drop(body);

    // The frame is built in one buffer: room for the longest prefix, then
    // the plaintext read in place, sealed in place, then the tag.
    let frame_length = options.frame_length as usize;
    let mut frame = Zeroizing::new(Vec::with_capacity(
        MAX_FRAME_PREFIX + frame_length.min(1 << 20) + TAG_LEN,
    ));
    let mut carried: Option<u8> = None;
    let mut sequence_number: u32 = 1;
    let mut total: u64 = 0;
    loop {
        frame.clear();
        frame.resize(MAX_FRAME_PREFIX, 0);
        if let Some(b) = carried.take() {
            frame.push(b);
        }
        let want = (MAX_FRAME_PREFIX + frame_length - frame.len()) as u64;
        (&mut input).take(want).read_to_end(&mut frame)?;
        let content_len = frame.len() - MAX_FRAME_PREFIX;
        // A full frame is the final one only if the input ends right here.
        let is_final = content_len < frame_length || {
            let mut next = [0u8; 1];
            let ended = read_one(&mut input, &mut next)?;
            if !ended {
                carried = Some(next[0]);
            }
            ended
        };
        total += content_len as u64;
        if let Some(max) = options.plaintext_length {
            if total > max {
                return Err(Error::Config(format!(
                    "the input is longer than the declared plaintext length ({max} bytes)"
                )));
            }
        }
        if !is_final && sequence_number == message::FINAL_FRAME_MARKER - 1 {
            return Err(Error::Config(
                "the input needs more than 2^32 - 1 frames; use a larger frame length".into(),
            ));
        }
        let tag = key.seal_frame(sequence_number, is_final, &mut frame[MAX_FRAME_PREFIX..])?;
        frame.extend_from_slice(&tag);
        let mut prefix = Vec::with_capacity(MAX_FRAME_PREFIX);
        // content_len <= frame_length, a u32.
        message::frame_prefix(&mut prefix, sequence_number, is_final, content_len as u32);
        let start = MAX_FRAME_PREFIX - prefix.len();
        frame[start..MAX_FRAME_PREFIX].copy_from_slice(&prefix);
        emit(&mut output, &mut digest, &frame[start..])?;
        if is_final {
            break;
        }
        sequence_number += 1;
    }

    if let (Some(signer), Some(digest)) = (signer, digest) {
        let signature = signer
            .sign_digest(&digest.finish())
            .map_err(|_| Error::Internal("ECDSA signing"))?;
        output.write_all(&message::footer(signature.as_ref())?)?;
    }
    output.flush()?;
    Ok(MessageInfo {
        suite,
        message_id,
        context: header.context,
        encrypted_data_keys: header.encrypted_data_keys,
        frame_length: options.frame_length,
        plaintext_length: total,
    })
}

/// Reads one byte; `Ok(true)` if the input has ended instead.
fn read_one<R: Read>(input: &mut R, byte: &mut [u8; 1]) -> Result<bool, Error> {
    loop {
        match input.read(byte) {
            Ok(0) => return Ok(true),
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

fn emit<W: Write>(
    output: &mut W,
    digest: &mut Option<digest::Context>,
    bytes: &[u8],
) -> Result<(), Error> {
    if let Some(d) = digest.as_mut() {
        d.update(bytes);
    }
    output.write_all(bytes)?;
    Ok(())
}

/// Decrypts one message from `input` into `output`.
///
/// Steps, in order; the first failure stops everything:
/// 1. the header is parsed (strictly: [`Error::Malformed`]); a header with
///    more encrypted data keys than `options.max_encrypted_data_keys` is
///    refused as soon as the count is read, before any key is touched;
/// 2. the context must contain `options.required_context`;
/// 3. `materials` provides the data key (and, signed suite, the
///    verification key from `aws-crypto-public-key`);
/// 4. the key commitment is checked (constant time), then the header tag;
/// 5. frames are read one at a time, each checked (sequence number,
///    length) and its AES-GCM tag verified; a non-framed body (content
///    type 01, from other SDKs) is read whole instead, its declared length
///    checked against `options.max_non_framed_length` before any of it is
///    read ([`Error::NonFramedTooLong`]), then its one tag verified;
/// 6. signed suite: the footer signature over header and body is verified;
/// 7. the input must end right after the message.
///
/// What is written to `output`, when:
/// - nothing before step 4 has passed;
/// - each **regular** frame's plaintext, as soon as its own tag verified.
///   For the signed suite that plaintext is not yet signature-verified,
///   and for both suites the message may still turn out truncated;
/// - the **final** frame's plaintext only after steps 6 and 7 passed, then
///   `output` is flushed and `Ok` returned;
/// - a **non-framed** message's plaintext, all of it, only after its tag,
///   steps 6 and 7 passed (it is held in memory until then, and wiped on
///   failure), then `output` is flushed and `Ok` returned: on `Err`
///   nothing of it was written.
///
/// So `Ok` means the whole message was authentic and complete. On `Err`,
/// `output` may hold the plaintext of a prefix of regular frames and must
/// be discarded (write to a temporary file, rename on `Ok`); a tampered
/// frame or footer never lets its own or any later plaintext through. Use
/// [`decrypt_to_vec`] to get nothing at all unless everything verified.
/// Memory is one frame (at most the frame length, and never more than the
/// input actually supplied) plus the header; for a non-framed message, its
/// whole content (at most `options.max_non_framed_length`, and never more
/// than the input actually supplied).
pub async fn decrypt<R: Read + Send, W: Write + Send>(
    materials: &dyn MaterialsManager,
    options: &DecryptOptions,
    input: R,
    mut output: W,
) -> Result<MessageInfo, Error> {
    let mut reader = MessageReader::new(input);
    let (header, body) = message::read_header_body(&mut reader, options.max_encrypted_data_keys)?;
    let header_tag = reader.read_array::<TAG_LEN>("header authentication tag")?;
    for (k, v) in &options.required_context {
        if header.context.get(k) != Some(v) {
            return Err(Error::Context(format!(
                "the message's encryption context lacks the required pair with key {k:?}"
            )));
        }
    }
    let materials = materials
        .decryption_materials(DecryptionRequest {
            suite: header.suite,
            context: &header.context,
            encrypted_data_keys: &header.encrypted_data_keys,
        })
        .await?;
    let (key, commitment) = keys::derive(header.suite, &materials.data_key, &header.message_id)?;
    keys::verify_commitment(&commitment, &header.commitment)?;
    key.verify_header(&body, &header_tag)?;

    let verifier = match (header.suite.is_signed(), &materials.verification_key) {
        (true, Some(point)) => {
            let parsed = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, point.as_slice())
                .parse()
                .map_err(|_| {
                    Error::Context("aws-crypto-public-key is not a valid P-384 point".into())
                })?;
            let mut digest = digest::Context::new(&digest::SHA384);
            digest.update(&body);
            digest.update(&header_tag);
            reader.start_digest(digest);
            Some(parsed)
        }
        (false, None) => None,
        _ => {
            return Err(Error::KeyProvider(
                "the materials' verification key does not match the suite".into(),
            ))
        }
    };
    drop(body);

    let mut plaintext = Zeroizing::new(Vec::new());
    let total = if header.is_framed() {
        let mut sequence_number: u32 = 1;
        let mut total: u64 = 0;
        loop {
            let frame = message::read_frame(
                &mut reader,
                sequence_number,
                header.frame_length,
                &mut plaintext,
            )?;
            key.open_frame(
                sequence_number,
                frame.is_final,
                frame.iv,
                &mut plaintext,
                &frame.tag,
            )?;
            total += plaintext.len() as u64;
            if frame.is_final {
                break total;
            }
            output.write_all(&plaintext)?;
            sequence_number = sequence_number
                .checked_add(1)
                .ok_or_else(|| Error::Malformed("more than 2^32 - 1 frames".into()))?;
        }
    } else {
        let body = message::read_non_framed_body(
            &mut reader,
            options.max_non_framed_length,
            &mut plaintext,
        )?;
        key.open_non_framed(body.iv, &mut plaintext, &body.tag)?;
        plaintext.len() as u64
    };
    // `plaintext` now holds what is released only after the checks below:
    // the final frame, or the whole non-framed content. It is wiped when
    // dropped, on error as on success.
    if let Some(verifier) = verifier {
        let digest = reader
            .take_digest()
            .ok_or(Error::Internal("signature digest"))?;
        let signature = message::read_footer(&mut reader)?;
        verifier
            .verify_digest_sig(&digest.finish(), &signature)
            .map_err(|_| Error::Authentication("signature"))?;
    }
    if !reader.at_end()? {
        return Err(Error::Malformed(format!(
            "bytes after the end of the message (at byte {})",
            reader.offset()
        )));
    }
    output.write_all(&plaintext)?;
    output.flush()?;
    Ok(MessageInfo {
        suite: header.suite,
        message_id: header.message_id,
        context: header.context,
        encrypted_data_keys: header.encrypted_data_keys,
        frame_length: header.frame_length,
        plaintext_length: total,
    })
}

/// [`encrypt`] of an in-memory plaintext (its length is passed to the
/// materials manager); returns the message.
pub async fn encrypt_to_vec(
    materials: &dyn MaterialsManager,
    context: &EncryptionContext,
    options: &EncryptOptions,
    plaintext: &[u8],
) -> Result<(Vec<u8>, MessageInfo), Error> {
    let mut options = options.clone();
    options
        .plaintext_length
        .get_or_insert(plaintext.len() as u64);
    let mut message = Vec::with_capacity(plaintext.len() + 1024);
    let info = encrypt(materials, context, &options, plaintext, &mut message).await?;
    Ok((message, info))
}

/// [`decrypt`] of an in-memory message; returns the plaintext only if the
/// whole message verified (nothing at all is released otherwise, and the
/// partial plaintext is wiped).
pub async fn decrypt_to_vec(
    materials: &dyn MaterialsManager,
    options: &DecryptOptions,
    message: &[u8],
) -> Result<(Vec<u8>, MessageInfo), Error> {
    let mut plaintext = Zeroizing::new(Vec::with_capacity(message.len()));
    let info = decrypt(materials, options, message, &mut *plaintext).await?;
    Ok((std::mem::take(&mut *plaintext), info))
}
