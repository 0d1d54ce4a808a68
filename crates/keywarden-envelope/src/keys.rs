//! A message's keys and the AES-256-GCM operations done with them.
//!
//! From the data key, HKDF-SHA512 (salt: the 32-byte message id) derives
//! two keys from one extract step: the encryption key (info: suite id,
//! big-endian, then `DERIVEKEY`) and the 32-byte commitment key (info:
//! `COMMITKEY`), which the header carries as its suite data. The encryption
//! key authenticates the header (empty plaintext, all-zero IV) and
//! encrypts each frame (IV: the sequence number, left-padded with zeros;
//! decryption uses the IV as stored, like the official SDKs). A non-framed
//! body (decryption only) is one AES-GCM message with the IV as stored.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::{constant_time, hkdf};
use zeroize::Zeroize;

use crate::error::Error;
use crate::message::{COMMITMENT_LEN, IV_LEN, MESSAGE_ID_LEN, TAG_LEN};
use crate::suite::AlgorithmSuite;

const ENCRYPTION_KEY_LABEL: &[u8] = b"DERIVEKEY";
const COMMITMENT_KEY_LABEL: &[u8] = b"COMMITKEY";
const FRAME_AAD_CONTENT: &[u8] = b"AWSKMSEncryptionClient Frame";
const FINAL_FRAME_AAD_CONTENT: &[u8] = b"AWSKMSEncryptionClient Final Frame";
const SINGLE_BLOCK_AAD_CONTENT: &[u8] = b"AWSKMSEncryptionClient Single Block";
/// The body AAD sequence number of a non-framed body.
const SINGLE_BLOCK_SEQUENCE_NUMBER: u32 = 1;

/// An HKDF output length that is not an AEAD key.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// The derived encryption key of one message. Its `Debug` shows nothing.
pub(crate) struct MessageKey {
    key: LessSafeKey,
    message_id: [u8; MESSAGE_ID_LEN],
}

impl std::fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageKey(<redacted>)")
    }
}

/// Derives the encryption key and the commitment key of a message.
pub(crate) fn derive(
    suite: AlgorithmSuite,
    data_key: &[u8],
    message_id: &[u8; MESSAGE_ID_LEN],
) -> Result<(MessageKey, [u8; COMMITMENT_LEN]), Error> {
    if data_key.len() != suite.data_key_len() {
        return Err(Error::KeyProvider(format!(
            "the data key has {} bytes, the suite needs {}",
            data_key.len(),
            suite.data_key_len()
        )));
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA512, message_id).extract(data_key);
    let suite_id = suite.id().to_be_bytes();
    let info: [&[u8]; 2] = [&suite_id, ENCRYPTION_KEY_LABEL];
    let okm = prk
        .expand(&info, &AES_256_GCM)
        .map_err(|_| Error::Internal("HKDF expand (encryption key)"))?;
    let key = LessSafeKey::new(UnboundKey::from(okm));
    let mut commitment = [0u8; COMMITMENT_LEN];
    prk.expand(&[COMMITMENT_KEY_LABEL], OutputLen(COMMITMENT_LEN))
        .and_then(|okm| okm.fill(&mut commitment))
        .map_err(|_| Error::Internal("HKDF expand (commitment key)"))?;
    Ok((
        MessageKey {
            key,
            message_id: *message_id,
        },
        commitment,
    ))
}

/// Compares the derived commitment key with the header's, in constant time.
pub(crate) fn verify_commitment(derived: &[u8], stored: &[u8]) -> Result<(), Error> {
    constant_time::verify_slices_are_equal(derived, stored)
        .map_err(|_| Error::Authentication("key commitment"))
}

/// The IV of frame `sequence_number`.
pub(crate) fn frame_iv(sequence_number: u32) -> [u8; IV_LEN] {
    let mut iv = [0u8; IV_LEN];
    iv[IV_LEN - 4..].copy_from_slice(&sequence_number.to_be_bytes());
    iv
}

impl MessageKey {
    /// The header authentication tag over the serialised header body.
    pub(crate) fn header_tag(&self, header_body: &[u8]) -> Result<[u8; TAG_LEN], Error> {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([0u8; IV_LEN]),
                Aad::from(header_body),
                &mut [],
            )
            .map_err(|_| Error::Internal("AES-GCM seal (header)"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Checks the header authentication tag.
    pub(crate) fn verify_header(&self, header_body: &[u8], tag: &[u8]) -> Result<(), Error> {
        self.key
            .open_in_place_separate_tag(
                Nonce::assume_unique_for_key([0u8; IV_LEN]),
                Aad::from(header_body),
                tag,
                &mut [],
            )
            .map(|_| ())
            .map_err(|_| Error::Authentication("header authentication tag"))
    }

    /// Encrypts one frame's plaintext in place; returns its tag.
    pub(crate) fn seal_frame(
        &self,
        sequence_number: u32,
        is_final: bool,
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Error> {
        let aad = self.body_aad(frame_aad_content(is_final), sequence_number, in_out.len());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(frame_iv(sequence_number)),
                Aad::from(aad),
                in_out,
            )
            .map_err(|_| Error::Internal("AES-GCM seal (frame)"))?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Decrypts one frame in place if its tag verifies, with the IV as
    /// stored in the frame. On failure the buffer is wiped: unauthenticated
    /// plaintext never leaves here.
    pub(crate) fn open_frame(
        &self,
        sequence_number: u32,
        is_final: bool,
        iv: [u8; IV_LEN],
        in_out: &mut [u8],
        tag: &[u8],
    ) -> Result<(), Error> {
        let aad = self.body_aad(frame_aad_content(is_final), sequence_number, in_out.len());
        self.open(iv, aad, in_out, tag, "frame authentication tag")
    }

    /// Decrypts a non-framed body in place if its tag verifies, with the IV
    /// as stored. On failure the buffer is wiped.
    pub(crate) fn open_non_framed(
        &self,
        iv: [u8; IV_LEN],
        in_out: &mut [u8],
        tag: &[u8],
    ) -> Result<(), Error> {
        let aad = self.body_aad(
            SINGLE_BLOCK_AAD_CONTENT,
            SINGLE_BLOCK_SEQUENCE_NUMBER,
            in_out.len(),
        );
        self.open(iv, aad, in_out, tag, "non-framed body authentication tag")
    }

    fn open(
        &self,
        iv: [u8; IV_LEN],
        aad: Vec<u8>,
        in_out: &mut [u8],
        tag: &[u8],
        what: &'static str,
    ) -> Result<(), Error> {
        let opened = self.key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad),
            tag,
            in_out,
        );
        if opened.is_err() {
            in_out.zeroize();
            return Err(Error::Authentication(what));
        }
        Ok(())
    }

    /// The message body AAD: message id, content string, sequence number,
    /// plaintext length.
    fn body_aad(&self, content: &[u8], sequence_number: u32, len: usize) -> Vec<u8> {
        let mut aad = Vec::with_capacity(MESSAGE_ID_LEN + content.len() + 12);
        aad.extend_from_slice(&self.message_id);
        aad.extend_from_slice(content);
        aad.extend_from_slice(&sequence_number.to_be_bytes());
        aad.extend_from_slice(&(len as u64).to_be_bytes());
        aad
    }
}

fn frame_aad_content(is_final: bool) -> &'static [u8] {
    if is_final {
        FINAL_FRAME_AAD_CONTENT
    } else {
        FRAME_AAD_CONTENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUITE: AlgorithmSuite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;

    #[test]
    fn frame_iv_is_the_sequence_number_left_padded() {
        assert_eq!(frame_iv(1), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(frame_iv(0x0102_0304), [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
    }

    #[test]
    fn commitment_depends_on_key_and_message_id_but_not_on_suite() {
        let (_, c1) = derive(SUITE, &[1; 32], &[0; 32]).unwrap();
        let (_, c2) = derive(SUITE, &[2; 32], &[0; 32]).unwrap();
        let (_, c3) = derive(SUITE, &[1; 32], &[9; 32]).unwrap();
        let (_, c4) = derive(
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
            &[1; 32],
            &[0; 32],
        )
        .unwrap();
        assert_ne!(c1, c2);
        assert_ne!(c1, c3);
        // The commit key info is the label alone (the suite is bound
        // through the encryption key and the header instead).
        assert_eq!(c1, c4);
        assert!(verify_commitment(&c1, &c1).is_ok());
        assert!(matches!(
            verify_commitment(&c1, &c2),
            Err(Error::Authentication(_))
        ));
    }

    #[test]
    fn wrong_data_key_length_is_refused() {
        assert!(matches!(
            derive(SUITE, &[0; 16], &[0; 32]),
            Err(Error::KeyProvider(_))
        ));
    }

    #[test]
    fn frames_open_only_with_the_same_position_and_kind() {
        let (key, _) = derive(SUITE, &[7; 32], &[3; 32]).unwrap();
        let mut buf = *b"hello";
        let tag = key.seal_frame(2, false, &mut buf).unwrap();
        let sealed = buf;
        for (seq, fin) in [(1, false), (3, false), (2, true)] {
            let mut b = sealed;
            assert!(key
                .open_frame(seq, fin, frame_iv(seq), &mut b, &tag)
                .is_err());
            assert_eq!(b, [0; 5], "a failed open leaves no plaintext behind");
        }
        let mut b = sealed;
        assert!(key.open_frame(2, false, frame_iv(3), &mut b, &tag).is_err());
        let mut b = sealed;
        key.open_frame(2, false, frame_iv(2), &mut b, &tag).unwrap();
        assert_eq!(&b, b"hello");
    }

    #[test]
    fn non_framed_bodies_use_the_single_block_aad() {
        // Sealed here from the specification's layout (message-body-aad.md),
        // not with our own AAD code.
        let message_id = [3u8; 32];
        let (key, _) = derive(SUITE, &[7; 32], &message_id).unwrap();
        let iv = [0x11; IV_LEN];
        let mut aad = message_id.to_vec();
        aad.extend_from_slice(b"AWSKMSEncryptionClient Single Block");
        aad.extend_from_slice(&1u32.to_be_bytes());
        aad.extend_from_slice(&5u64.to_be_bytes());
        let mut buf = *b"hello";
        let tag = key
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buf)
            .unwrap();
        let sealed = buf;
        let mut b = sealed;
        key.open_non_framed(iv, &mut b, tag.as_ref()).unwrap();
        assert_eq!(&b, b"hello");
        // The same bytes are not a frame, and a wrong IV fails.
        let mut b = sealed;
        assert!(key.open_frame(1, true, iv, &mut b, tag.as_ref()).is_err());
        assert_eq!(b, [0; 5]);
        let mut b = sealed;
        let r = key.open_non_framed([0x12; IV_LEN], &mut b, tag.as_ref());
        assert!(
            matches!(
                r,
                Err(Error::Authentication("non-framed body authentication tag"))
            ),
            "{r:?}"
        );
        assert_eq!(b, [0; 5], "a failed open leaves no plaintext behind");
    }
}
