//! Streaming encryption and decryption through the public API.

mod common;

use std::sync::atomic::Ordering;

use keywarden_envelope::message::TAG_LEN;
use keywarden_envelope::{
    decrypt, decrypt_to_vec, encrypt, encrypt_to_vec, AlgorithmSuite, DecryptOptions,
    DecryptionRequest, DefaultMaterialsManager, EncryptOptions, EncryptionContext,
    EncryptionRequest, Error, MaterialsManager, RawAesKeyring,
};
use proptest::prelude::*;

use common::StaticKeyring;

const SUITES: [AlgorithmSuite; 2] = [
    AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
    AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
];

fn cmm() -> DefaultMaterialsManager<RawAesKeyring> {
    DefaultMaterialsManager::new(RawAesKeyring::new("test", "key-1", &[0x42; 32]).unwrap())
}

fn context() -> EncryptionContext {
    [("tenant", "acme"), ("purpose", "test")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn options(suite: AlgorithmSuite, frame_length: u32) -> EncryptOptions {
    EncryptOptions {
        suite,
        frame_length,
        plaintext_length: None,
    }
}

fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

/// Offsets where each frame starts and the footer (if any) starts.
fn frame_starts(message: &[u8], header_len: usize, frame_length: usize) -> Vec<usize> {
    let mut starts = vec![];
    let mut p = header_len;
    loop {
        starts.push(p);
        if message[p..p + 4] == [0xff; 4] {
            let len = u32::from_be_bytes(message[p + 20..p + 24].try_into().unwrap()) as usize;
            p += 24 + len + TAG_LEN;
            starts.push(p);
            return starts;
        }
        p += 16 + frame_length + TAG_LEN;
    }
}

fn header_len(message: &[u8]) -> usize {
    // Walk the length-prefixed fields; after the EDKs come the content
    // type, frame length, commitment and header tag.
    let mut p = 1 + 2 + 32;
    let ctx = u16::from_be_bytes([message[p], message[p + 1]]) as usize;
    p += 2 + ctx;
    let n = u16::from_be_bytes([message[p], message[p + 1]]) as usize;
    p += 2;
    for _ in 0..n * 3 {
        let l = u16::from_be_bytes([message[p], message[p + 1]]) as usize;
        p += 2 + l;
    }
    p + 1 + 4 + 32 + TAG_LEN
}

#[tokio::test]
async fn round_trips_for_boundary_sizes_both_suites_several_frame_lengths() {
    let cmm = cmm();
    for suite in SUITES {
        for frame_length in [1u32, 7, 64, 4096] {
            let fl = frame_length as usize;
            for len in [0, 1, fl - 1, fl, fl + 1, 3 * fl, 3 * fl + 5] {
                let pt = plaintext(len);
                let (message, info) =
                    encrypt_to_vec(&cmm, &context(), &options(suite, frame_length), &pt)
                        .await
                        .unwrap();
                assert_eq!(info.plaintext_length, len as u64);
                let (got, dinfo) = decrypt_to_vec(&cmm, &DecryptOptions::default(), &message)
                    .await
                    .unwrap();
                assert_eq!(got, pt, "{suite:?} frame {frame_length} len {len}");
                assert_eq!(dinfo.message_id, info.message_id);
                assert_eq!(dinfo.frame_length, frame_length);
                assert_eq!(dinfo.context.get("tenant").unwrap(), "acme");
                assert_eq!(
                    dinfo.context.contains_key("aws-crypto-public-key"),
                    suite.is_signed()
                );
                // Frame count: an exact multiple ends with a full final frame.
                let frames = frame_starts(&message, header_len(&message), fl).len() - 1;
                let expected = if len == 0 { 1 } else { len.div_ceil(fl) };
                assert_eq!(frames, expected, "{suite:?} frame {frame_length} len {len}");
            }
        }
    }
}

/// A reader handing out at most 3 bytes per call, like a slow pipe.
struct Trickle<'a>(&'a [u8]);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(3).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[tokio::test]
async fn streams_through_short_reads() {
    let cmm = cmm();
    for suite in SUITES {
        let pt = plaintext(1000);
        let mut message = vec![];
        encrypt(
            &cmm,
            &context(),
            &options(suite, 100),
            Trickle(&pt),
            &mut message,
        )
        .await
        .unwrap();
        let mut out = vec![];
        decrypt(
            &cmm,
            &DecryptOptions::default(),
            Trickle(&message),
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(out, pt);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn round_trip_any_size_and_frame_length(
        pt in proptest::collection::vec(any::<u8>(), 0..3000),
        frame_length in 1u32..700,
        signed in any::<bool>(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let suite = SUITES[usize::from(signed)];
        let cmm = cmm();
        let (message, _) = rt
            .block_on(encrypt_to_vec(&cmm, &context(), &options(suite, frame_length), &pt))
            .unwrap();
        let (got, _) = rt
            .block_on(decrypt_to_vec(&cmm, &DecryptOptions::default(), &message))
            .unwrap();
        prop_assert_eq!(got, pt);
    }
}

async fn small_message(suite: AlgorithmSuite) -> Vec<u8> {
    // Three frames: 8, 8 and a final one of 4 bytes.
    encrypt_to_vec(&cmm(), &context(), &options(suite, 8), &plaintext(20))
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn every_flipped_byte_is_rejected() {
    let cmm = cmm();
    for suite in SUITES {
        let message = small_message(suite).await;
        for i in 0..message.len() {
            let mut m = message.clone();
            m[i] ^= 0x01;
            let r = decrypt_to_vec(&cmm, &DecryptOptions::default(), &m).await;
            assert!(r.is_err(), "{suite:?}: flipping byte {i} went unnoticed");
        }
    }
}

#[tokio::test]
async fn every_truncation_is_rejected_and_trailing_bytes_too() {
    let cmm = cmm();
    for suite in SUITES {
        let message = small_message(suite).await;
        let starts = frame_starts(&message, header_len(&message), 8);
        for cut in 0..message.len() {
            let r = decrypt_to_vec(&cmm, &DecryptOptions::default(), &message[..cut]).await;
            assert!(
                matches!(r, Err(Error::Malformed(_))),
                "{suite:?}: cut at {cut} (frame boundaries {starts:?}): {r:?}"
            );
        }
        let mut m = message.clone();
        m.push(0);
        let r = decrypt_to_vec(&cmm, &DecryptOptions::default(), &m).await;
        assert!(matches!(r, Err(Error::Malformed(ref s)) if s.contains("after the end")));
    }
}

#[tokio::test]
async fn a_message_cut_at_a_frame_boundary_releases_only_whole_verified_frames() {
    let cmm = cmm();
    let pt = plaintext(20);
    for suite in SUITES {
        let message = small_message(suite).await;
        let starts = frame_starts(&message, header_len(&message), 8);
        // Cut right after frame 1, after frame 2, after the final frame
        // (signed: footer missing).
        for (k, &cut) in starts[1..].iter().enumerate() {
            if cut == message.len() {
                continue;
            }
            let mut out = vec![];
            let r = decrypt(&cmm, &DecryptOptions::default(), &message[..cut], &mut out).await;
            assert!(matches!(r, Err(Error::Malformed(_))), "{suite:?} cut {cut}");
            assert_eq!(out, pt[..(8 * (k + 1)).min(16)], "{suite:?} cut {cut}");
        }
    }
}

#[tokio::test]
async fn a_tampered_frame_releases_nothing_from_it_on() {
    let cmm = cmm();
    let pt = plaintext(20);
    for suite in SUITES {
        let message = small_message(suite).await;
        let starts = frame_starts(&message, header_len(&message), 8);
        // Frame k's ciphertext starts after its prefix (16 bytes, final: 24).
        for (k, good) in [(0usize, 0usize), (1, 8), (2, 16)] {
            let prefix = if k == 2 { 24 } else { 16 };
            let mut m = message.clone();
            m[starts[k] + prefix] ^= 0x80;
            let mut out = vec![];
            let r = decrypt(&cmm, &DecryptOptions::default(), &m[..], &mut out).await;
            assert!(
                matches!(r, Err(Error::Authentication(_))),
                "{suite:?} frame {k}"
            );
            assert_eq!(out, pt[..good], "{suite:?} frame {k}");
        }
    }
}

#[tokio::test]
async fn a_tampered_footer_fails_and_holds_back_the_final_frame() {
    let cmm = cmm();
    let pt = plaintext(20);
    let message = small_message(SUITES[1]).await;
    let mut m = message.clone();
    let last = m.len() - 1;
    m[last] ^= 0x01;
    let mut out = vec![];
    let r = decrypt(&cmm, &DecryptOptions::default(), &m[..], &mut out).await;
    assert!(
        matches!(r, Err(Error::Authentication("signature"))),
        "{r:?}"
    );
    assert_eq!(
        out,
        pt[..16],
        "the final frame is held until the signature verifies"
    );
    // decrypt_to_vec gives nothing at all.
    assert!(decrypt_to_vec(&cmm, &DecryptOptions::default(), &m)
        .await
        .is_err());
}

#[tokio::test]
async fn wrong_keyring_or_required_context_is_rejected_before_any_output() {
    let message = small_message(SUITES[1]).await;
    let other =
        DefaultMaterialsManager::new(RawAesKeyring::new("test", "key-1", &[1; 32]).unwrap());
    let mut out = vec![];
    let r = decrypt(&other, &DecryptOptions::default(), &message[..], &mut out).await;
    assert!(matches!(r, Err(Error::NoDecryptableKey(_))), "{r:?}");
    assert!(out.is_empty());

    let mut required = EncryptionContext::new();
    required.insert("tenant".into(), "other".into());
    let opts = DecryptOptions {
        required_context: required,
        ..DecryptOptions::default()
    };
    let r = decrypt(&cmm(), &opts, &message[..], &mut out).await;
    assert!(matches!(r, Err(Error::Context(_))), "{r:?}");
    assert!(out.is_empty());
    let mut required = context();
    required.remove("purpose");
    let opts = DecryptOptions {
        required_context: required,
        ..DecryptOptions::default()
    };
    assert!(decrypt(&cmm(), &opts, &message[..], &mut out).await.is_ok());
}

#[tokio::test]
async fn a_wrong_data_key_fails_the_commitment_check() {
    let message = small_message(SUITES[0]).await;
    // A keyring that "decrypts" to another key: the commitment catches it
    // before the header tag.
    let liar = DefaultMaterialsManager::new(StaticKeyring::new(vec![9; 32]));
    let r = decrypt_to_vec(&liar, &DecryptOptions::default(), &message).await;
    assert!(
        matches!(r, Err(Error::Authentication("key commitment"))),
        "{r:?}"
    );
}

#[tokio::test]
async fn max_encrypted_data_keys_is_enforced_before_the_keyring_is_called() {
    let mut keyring = StaticKeyring::new(vec![5; 32]);
    keyring.copies = 3;
    let cmm = DefaultMaterialsManager::new(keyring);
    let (message, _) = encrypt_to_vec(&cmm, &context(), &options(SUITES[0], 64), b"x")
        .await
        .unwrap();
    let opts = |max| DecryptOptions {
        max_encrypted_data_keys: Some(max),
        ..DecryptOptions::default()
    };
    let r = decrypt_to_vec(&cmm, &opts(2), &message).await;
    assert!(
        matches!(r, Err(Error::TooManyEncryptedDataKeys { found: 3, max: 2 })),
        "{r:?}"
    );
    assert_eq!(cmm.keyring().decrypt_calls.load(Ordering::SeqCst), 0);
    assert!(decrypt_to_vec(&cmm, &opts(3), &message).await.is_ok());
    assert_eq!(cmm.keyring().decrypt_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn reserved_context_keys_and_bad_options_are_refused() {
    let mut ctx = context();
    ctx.insert("aws-crypto-public-key".into(), "x".into());
    let r = encrypt_to_vec(&cmm(), &ctx, &options(SUITES[0], 64), b"x").await;
    assert!(matches!(r, Err(Error::Context(_))), "{r:?}");
    let r = encrypt_to_vec(&cmm(), &context(), &options(SUITES[0], 0), b"x").await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    let opts = EncryptOptions {
        plaintext_length: Some(3),
        ..options(SUITES[0], 2)
    };
    let mut out = vec![];
    let r = encrypt(&cmm(), &context(), &opts, &b"four"[..], &mut out).await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
}

#[tokio::test]
async fn the_default_manager_checks_the_public_key_before_the_keyring() {
    let cmm = DefaultMaterialsManager::new(StaticKeyring::new(vec![5; 32]));
    let ask = |suite, ctx: EncryptionContext| {
        let cmm = &cmm;
        async move {
            cmm.decryption_materials(DecryptionRequest {
                suite,
                context: &ctx,
                encrypted_data_keys: &[],
            })
            .await
        }
    };
    let with = |v: &str| {
        let mut c = context();
        c.insert("aws-crypto-public-key".into(), v.into());
        c
    };
    let cases = [
        (SUITES[1], context()),    // signed, no key
        (SUITES[0], with("AA==")), // unsigned, with a key
        (SUITES[1], with("not base64!")),
        (SUITES[1], with("AAAA")), // not a compressed point
    ];
    for (suite, ctx) in cases {
        let r = ask(suite, ctx).await;
        assert!(matches!(r, Err(Error::Context(_))), "{r:?}");
    }
    assert_eq!(cmm.keyring().decrypt_calls.load(Ordering::SeqCst), 0);

    // Materials and errors never show key bytes.
    let m = cmm
        .encryption_materials(EncryptionRequest {
            suite: SUITES[1],
            context: &context(),
            plaintext_length: None,
        })
        .await
        .unwrap();
    let shown = format!("{m:?}");
    assert!(!shown.contains("5, 5, 5"), "{shown}");
    // The signing key shows only as present (hand-written Debug).
    assert!(shown.contains("signing_key: true"), "{shown}");
    assert!(!shown.contains("SigningKey("), "{shown}");
}

#[tokio::test]
async fn the_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let cmm = cmm();
    let ctx = context();
    let opts = EncryptOptions::default();
    let dopts = DecryptOptions::default();
    send(encrypt(&cmm, &ctx, &opts, &b""[..], Vec::new()));
    send(decrypt(&cmm, &dopts, &b""[..], Vec::new()));
    send(encrypt_to_vec(&cmm, &ctx, &opts, b""));
    send(decrypt_to_vec(&cmm, &dopts, b""));
}
