//! The local half of envelope encryption: AES-256-GCM under a data key,
//! with aws-lc-rs. No network; the unit tests drive it with locally
//! generated data keys.

use std::fmt;

use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM};
use zeroize::Zeroizing;

use crate::envelope::{Envelope, Header, MAX_PLAINTEXT_LEN, TAG_LEN};
use crate::error::{Error, Result};

/// The length of an AES-256 data key.
pub(crate) const DATA_KEY_LEN: usize = 32;

/// Objects larger than this are sealed and opened on tokio's blocking pool,
/// so a 64 MiB object does not stall the caller's runtime worker.
const INLINE_LIMIT: usize = 256 * 1024;

/// A plaintext data key: zeroized on drop, no `Clone`, `Debug` shows nothing.
pub(crate) struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// Takes the key out of a buffer of exactly 32 bytes; the buffer is
    /// zeroized when it is dropped, whatever its length.
    pub(crate) fn from_buffer(buffer: Zeroizing<Vec<u8>>) -> Option<DataKey> {
        let bytes: &[u8; DATA_KEY_LEN] = buffer.as_slice().try_into().ok()?;
        Some(DataKey(Zeroizing::new(*bytes)))
    }

    /// The key held in `bytes` (moved, not copied).
    pub(crate) fn from_array(bytes: Zeroizing<[u8; DATA_KEY_LEN]>) -> DataKey {
        DataKey(bytes)
    }

    /// A fresh random key from aws-lc-rs's CSPRNG (tests only: real data
    /// keys come from Keywarden).
    #[cfg(test)]
    pub(crate) fn random() -> DataKey {
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        aws_lc_rs::rand::fill(&mut key[..]).expect("CSPRNG");
        DataKey(key)
    }

    fn aead(&self) -> Result<RandomizedNonceKey> {
        // Only fails for a wrong key length, which the type rules out.
        RandomizedNonceKey::new(&AES_256_GCM, &self.0[..]).map_err(|_| Error::Authentication)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// Refuses plaintexts over [`MAX_PLAINTEXT_LEN`].
pub(crate) fn check_size(size: usize) -> Result<()> {
    if size > MAX_PLAINTEXT_LEN {
        return Err(Error::TooLarge {
            size,
            limit: MAX_PLAINTEXT_LEN,
        });
    }
    Ok(())
}

/// Seals `plaintext` under `dek` with a random nonce and the header as
/// additional authenticated data. The header's limits must already hold.
pub(crate) async fn seal_with_dek(
    dek: DataKey,
    header: Header,
    plaintext: &[u8],
) -> Result<Envelope> {
    check_size(plaintext.len())?;
    let aad = header.to_bytes();
    // The copy becomes the ciphertext in place; until then it is plaintext,
    // so it lives in a zeroizing buffer.
    let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
    buffer.extend_from_slice(plaintext);
    let (nonce, sealed) = blocking_if_large(plaintext.len(), move || {
        let key = dek.aead()?;
        let nonce = key
            .seal_in_place_append_tag(Aad::from(&aad[..]), &mut *buffer)
            .map_err(|_| Error::Authentication)?;
        Ok((*nonce.as_ref(), std::mem::take(&mut *buffer)))
    })
    .await?;
    Ok(Envelope {
        header,
        nonce,
        sealed,
    })
}

/// Opens the envelope's data under `dek`. Any tag failure is
/// [`Error::Authentication`], with no further reason.
pub(crate) async fn open_with_dek(dek: DataKey, envelope: &Envelope) -> Result<Zeroizing<Vec<u8>>> {
    let aad = envelope.header.to_bytes();
    let nonce = envelope.nonce;
    // Holds plaintext once opened.
    let mut buffer = Zeroizing::new(envelope.sealed.clone());
    blocking_if_large(buffer.len(), move || {
        let key = dek.aead()?;
        let plaintext_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..]),
                &mut buffer[..],
            )
            .map_err(|_| Error::Authentication)?
            .len();
        buffer.truncate(plaintext_len);
        Ok(buffer)
    })
    .await
}

async fn blocking_if_large<T, F>(size: usize, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    if size <= INLINE_LIMIT {
        work()
    } else {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| Error::Cancelled)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Context, MAX_CONTEXT_BYTES};
    use crate::error::EnvelopeError;

    fn header(context: &[(&str, &str)]) -> Header {
        Header {
            key_arn: "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000001"
                .to_owned(),
            context: context
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            encrypted_data_key: vec![0xAB; 120],
        }
    }

    fn same_key(dek: &DataKey) -> DataKey {
        DataKey(Zeroizing::new(*dek.0))
    }

    #[tokio::test]
    async fn round_trip_through_bytes() {
        for len in [0usize, 1, 15, 16, 17, 1000, INLINE_LIMIT + 1] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let dek = DataKey::random();
            let h = header(&[("object", "a/b"), ("account", "123456789012")]);
            let env = seal_with_dek(same_key(&dek), h.clone(), &plaintext)
                .await
                .unwrap();
            assert_eq!(env.plaintext_len(), len);
            let bytes = env.to_bytes();
            let parsed = Envelope::from_bytes(&bytes).unwrap();
            assert_eq!(parsed, env);
            assert_eq!(parsed.key_arn(), h.key_arn);
            assert_eq!(parsed.account_id(), "123456789012");
            assert_eq!(parsed.context(), &h.context);
            assert_eq!(parsed.encrypted_data_key(), &h.encrypted_data_key[..]);
            let opened = open_with_dek(dek, &parsed).await.unwrap();
            assert_eq!(&opened[..], &plaintext[..], "len {len}");
        }
    }

    #[tokio::test]
    async fn nonces_differ_between_seals() {
        let dek = DataKey::random();
        let a = seal_with_dek(same_key(&dek), header(&[]), b"x")
            .await
            .unwrap();
        let b = seal_with_dek(dek, header(&[]), b"x").await.unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.sealed, b.sealed);
    }

    #[tokio::test]
    async fn plaintext_does_not_appear_in_the_envelope() {
        let marker = b"keywarden-product plaintext marker 0123456789";
        let dek = DataKey::random();
        let env = seal_with_dek(dek, header(&[]), marker).await.unwrap();
        let bytes = env.to_bytes();
        assert!(!bytes.windows(marker.len()).any(|w| w == marker));
    }

    #[tokio::test]
    async fn every_truncation_is_refused() {
        let dek = DataKey::random();
        let env = seal_with_dek(dek, header(&[("k", "v"), ("z", "")]), b"hello")
            .await
            .unwrap();
        let bytes = env.to_bytes();
        for cut in 0..bytes.len() {
            assert!(
                Envelope::from_bytes(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes parsed"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Envelope::from_bytes(&longer),
            Err(EnvelopeError::TrailingBytes(1))
        );
    }

    #[tokio::test]
    async fn every_single_bit_flip_is_refused() {
        let dek = DataKey::random();
        let env = seal_with_dek(
            same_key(&dek),
            header(&[("account", "123456789012"), ("object", "x")]),
            b"attack at dawn",
        )
        .await
        .unwrap();
        let bytes = env.to_bytes();
        let mut parse_errors = 0;
        let mut auth_errors = 0;
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            match Envelope::from_bytes(&flipped) {
                Err(_) => parse_errors += 1,
                Ok(parsed) => {
                    let err = open_with_dek(same_key(&dek), &parsed).await.unwrap_err();
                    assert!(matches!(err, Error::Authentication), "bit {bit}: {err}");
                    auth_errors += 1;
                }
            }
        }
        // Both defences are exercised: framing and the tag.
        assert!(parse_errors > 0 && auth_errors > 0);
    }

    #[tokio::test]
    async fn wrong_context_key_or_data_key_is_refused() {
        let dek = DataKey::random();
        let env = seal_with_dek(
            same_key(&dek),
            header(&[("object", "report.pdf")]),
            b"quarterly numbers",
        )
        .await
        .unwrap();

        let mut other_context = env.clone();
        other_context
            .header
            .context
            .insert("object".to_owned(), "invoice.pdf".to_owned());
        let err = open_with_dek(same_key(&dek), &other_context)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Authentication));

        let mut no_context = env.clone();
        no_context.header.context = Context::new();
        assert!(matches!(
            open_with_dek(same_key(&dek), &no_context).await,
            Err(Error::Authentication)
        ));

        let mut other_key = env.clone();
        other_key.header.key_arn =
            "arn:aws:kms:us-east-1:210987654321:key/00000000-0000-4000-8000-000000000001".into();
        assert!(matches!(
            open_with_dek(same_key(&dek), &other_key).await,
            Err(Error::Authentication)
        ));

        assert!(matches!(
            open_with_dek(DataKey::random(), &env).await,
            Err(Error::Authentication)
        ));
    }

    #[test]
    fn malformed_inputs_name_the_rule() {
        assert_eq!(
            Envelope::from_bytes(b"KWEX\x01"),
            Err(EnvelopeError::BadMagic)
        );
        assert_eq!(
            Envelope::from_bytes(b"KWEV\x02"),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert_eq!(
            Envelope::from_bytes(b"KWEV\x01\x00\x00"),
            Err(EnvelopeError::BadLength("key ARN"))
        );
        assert_eq!(
            Envelope::from_bytes(b"KWEV\x01\x00\x03abc"),
            Err(EnvelopeError::BadKeyArn)
        );
        let arn = b"arn:aws:kms:r:123456789012:k";
        let mut bytes = b"KWEV\x01\x00".to_vec();
        bytes.push(arn.len() as u8);
        bytes.extend_from_slice(arn);
        // Two pairs out of order.
        bytes.extend_from_slice(b"\x00\x02\x00\x01b\x00\x00\x00\x01a\x00\x00");
        assert_eq!(
            Envelope::from_bytes(&bytes),
            Err(EnvelopeError::ContextNotCanonical)
        );
    }

    #[tokio::test]
    async fn header_limits_match_the_parser() {
        // The largest context the sealing side accepts parses back.
        let big = "v".repeat(MAX_CONTEXT_BYTES - 4 - 1);
        let mut context = Context::new();
        context.insert("k".to_owned(), big);
        crate::envelope::check_context(&context).unwrap();
        let mut h = header(&[]);
        h.context = context.clone();
        let env = seal_with_dek(DataKey::random(), h, b"").await.unwrap();
        assert_eq!(Envelope::from_bytes(&env.to_bytes()).unwrap(), env);

        context.insert("l".to_owned(), String::new());
        assert!(crate::envelope::check_context(&context).is_err());
        let empty_key: Context = [(String::new(), "v".to_owned())].into();
        assert!(crate::envelope::check_context(&empty_key).is_err());
    }

    #[tokio::test]
    async fn oversized_plaintext_is_refused_before_any_work() {
        let err = check_size(MAX_PLAINTEXT_LEN + 1).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("67108864"), "{err}");
        check_size(MAX_PLAINTEXT_LEN).unwrap();
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let dek = DataKey(Zeroizing::new([0x41; DATA_KEY_LEN]));
        assert_eq!(format!("{dek:?}"), "DataKey(..)");
        assert!(DataKey::from_buffer(Zeroizing::new(vec![0; 31])).is_none());
        assert!(DataKey::from_buffer(Zeroizing::new(vec![0; 32])).is_some());
    }
}
