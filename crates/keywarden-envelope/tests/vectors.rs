//! Known-answer vectors from the official SDKs (`tests/vectors/README.md`).

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keywarden_envelope::message::{CONTENT_TYPE_NON_FRAMED, IV_LEN, TAG_LEN};
use keywarden_envelope::{
    decrypt, decrypt_to_vec, DecryptOptions, DefaultMaterialsManager, Error, RawAesKeyring,
};
use serde_json::Value;

use common::StaticKeyring;

fn b64(v: &Value) -> Vec<u8> {
    BASE64
        .decode(v.as_str().expect("a string"))
        .expect("base64")
}

#[tokio::test]
async fn official_message_format_v2_vectors() {
    let doc: Value =
        serde_json::from_str(include_str!("vectors/message-format-v2.json")).expect("JSON");
    let tests = doc["tests"].as_array().expect("tests");
    let (mut decrypted, mut non_framed, mut commitment_refused) = (0, 0, 0);
    for t in tests {
        let name = t["comment"].as_str().unwrap();
        let message = b64(&t["ciphertext"]);
        let cmm = DefaultMaterialsManager::new(StaticKeyring::new(b64(&t["data-key"])));
        let result = decrypt_to_vec(&cmm, &DecryptOptions::default(), &message).await;
        match (&t["plaintext"], result) {
            (Value::String(_), Ok((plaintext, info))) => {
                assert_eq!(plaintext, b64(&t["plaintext"]), "{name}");
                assert_eq!(info.message_id.to_vec(), b64(&t["message-id"]), "{name}");
                for (k, v) in t["encryption-context"].as_object().unwrap() {
                    assert_eq!(
                        info.context.get(k).map(String::as_str),
                        v.as_str(),
                        "{name}"
                    );
                }
                decrypted += 1;
                if info.frame_length == 0 {
                    assert!(is_non_framed_name(name), "{name}");
                    non_framed += 1;
                }
            }
            (Value::Null, Err(Error::Authentication("key commitment"))) => {
                assert!(
                    t["error"].as_str().unwrap().contains("commitment"),
                    "{name}"
                );
                commitment_refused += 1;
            }
            (expected, got) => panic!("{name}: expected {expected:?}, got {got:?}"),
        }
    }
    assert_eq!(tests.len(), 46);
    assert_eq!((decrypted, non_framed, commitment_refused), (41, 7, 5));
}

fn is_non_framed_name(name: &str) -> bool {
    name.contains("unframed") || name.contains("frame_size=0") || name.contains("frameSize=0")
}

/// A non-framed vector: its message, data key, plaintext, and where its
/// body starts.
struct NonFramed {
    name: String,
    message: Vec<u8>,
    data_key: Vec<u8>,
    plaintext: Vec<u8>,
    body_at: usize,
}

impl NonFramed {
    fn cmm(&self) -> DefaultMaterialsManager<StaticKeyring> {
        DefaultMaterialsManager::new(StaticKeyring::new(self.data_key.clone()))
    }

    /// Where the body's content length field is.
    fn length_at(&self) -> usize {
        self.body_at + IV_LEN
    }
}

/// Where the body starts: after the header body (walked field by field)
/// and the header tag. Checks the content type on the way.
fn body_start(message: &[u8]) -> (u8, usize) {
    let u16_at = |p: usize| usize::from(u16::from_be_bytes([message[p], message[p + 1]]));
    let mut p = 1 + 2 + 32;
    p += 2 + u16_at(p);
    let edks = u16_at(p);
    p += 2;
    for _ in 0..edks * 3 {
        p += 2 + u16_at(p);
    }
    (message[p], p + 1 + 4 + 32 + TAG_LEN)
}

fn non_framed_vectors() -> Vec<NonFramed> {
    let doc: Value =
        serde_json::from_str(include_str!("vectors/message-format-v2.json")).expect("JSON");
    let out: Vec<NonFramed> = doc["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter_map(|t| {
            let message = b64(&t["ciphertext"]);
            let (content_type, body_at) = body_start(&message);
            (content_type == CONTENT_TYPE_NON_FRAMED).then(|| NonFramed {
                name: t["comment"].as_str().unwrap().to_owned(),
                message,
                data_key: b64(&t["data-key"]),
                plaintext: b64(&t["plaintext"]),
                body_at,
            })
        })
        .collect();
    assert_eq!(out.len(), 7);
    // Both suites are among them.
    assert!(out.iter().any(|v| v.message[1..3] == [0x04, 0x78]));
    assert!(out.iter().any(|v| v.message[1..3] == [0x05, 0x78]));
    out
}

#[tokio::test]
async fn non_framed_messages_with_any_byte_flipped_are_rejected_and_write_nothing() {
    for v in non_framed_vectors() {
        let cmm = v.cmm();
        let mut out = Vec::new();
        decrypt(&cmm, &DecryptOptions::default(), &v.message[..], &mut out)
            .await
            .unwrap();
        assert_eq!(out, v.plaintext, "{}", v.name);
        for at in 0..v.message.len() {
            let mut m = v.message.clone();
            m[at] ^= 0x01;
            let mut out = Vec::new();
            let r = decrypt(&cmm, &DecryptOptions::default(), &m[..], &mut out).await;
            assert!(r.is_err(), "{}: flip at {at} accepted", v.name);
            assert!(out.is_empty(), "{}: flip at {at} wrote {r:?}", v.name);
        }
    }
}

#[tokio::test]
async fn truncated_non_framed_messages_are_rejected_and_write_nothing() {
    for v in non_framed_vectors() {
        let cmm = v.cmm();
        for cut in 0..v.message.len() {
            let mut out = Vec::new();
            let r = decrypt(
                &cmm,
                &DecryptOptions::default(),
                &v.message[..cut],
                &mut out,
            )
            .await;
            // From the body on, the header verified: what is left is a
            // truncation.
            if cut >= v.body_at {
                assert!(
                    matches!(r, Err(Error::Malformed(ref m)) if m.contains("truncated")),
                    "{}: cut at {cut}: {r:?}",
                    v.name
                );
            } else {
                assert!(r.is_err(), "{}: cut at {cut} accepted", v.name);
            }
            assert!(out.is_empty(), "{}: cut at {cut} wrote something", v.name);
        }
    }
}

#[tokio::test]
async fn non_framed_lengths_above_the_limit_are_refused_before_the_body_is_read() {
    for v in non_framed_vectors() {
        let cmm = v.cmm();
        let len = v.plaintext.len() as u64;
        let limit = |max| DecryptOptions {
            max_non_framed_length: max,
            ..DecryptOptions::default()
        };
        assert!(decrypt_to_vec(&cmm, &limit(len), &v.message).await.is_ok());

        // One byte over the limit; and a declared 32 GiB (the length is
        // not authenticated by the header, so this reaches the body) under
        // the default 64 MiB. Neither may read a byte of the content.
        let mut huge = v.message.clone();
        huge[v.length_at()..v.length_at() + 8].copy_from_slice(&(32u64 << 30).to_be_bytes());
        for (message, options, length, max) in [
            (&v.message, limit(len - 1), len, len - 1),
            (&huge, DecryptOptions::default(), 32 << 30, 64 << 20),
        ] {
            let mut input = &message[..];
            let mut out = Vec::new();
            let r = decrypt(&cmm, &options, &mut input, &mut out).await;
            assert!(
                matches!(r, Err(Error::NonFramedTooLong { length: l, max: m }) if l == length && m == max),
                "{}: {r:?}",
                v.name
            );
            assert_eq!(
                input.len(),
                message.len() - (v.length_at() + 8),
                "{}: the body was read",
                v.name
            );
            assert!(out.is_empty());
        }
    }
}

#[tokio::test]
async fn the_non_framed_limit_does_not_apply_to_framed_messages() {
    let cmm =
        DefaultMaterialsManager::new(RawAesKeyring::new("test", "key-1", &[0x42; 32]).unwrap());
    let plaintext = vec![7u8; 10_000];
    let (message, _) = keywarden_envelope::encrypt_to_vec(
        &cmm,
        &Default::default(),
        &Default::default(),
        &plaintext,
    )
    .await
    .unwrap();
    let options = DecryptOptions {
        max_non_framed_length: 0,
        ..DecryptOptions::default()
    };
    let (got, info) = decrypt_to_vec(&cmm, &options, &message).await.unwrap();
    assert_eq!(got, plaintext);
    assert_eq!(info.frame_length, 4096);
}
