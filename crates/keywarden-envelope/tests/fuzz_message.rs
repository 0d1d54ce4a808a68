//! Fuzz target: the message format parser (header, frames, non-framed
//! body, footer) through the decryption entry points, and the encryption
//! context codec.
//!
//! Seeds: messages encrypted now with a raw AES keyring (both suites, one
//! and several frames, empty plaintext, a context) and the official SDKs'
//! vectors (`vectors/message-format-v2.json`, with their data keys).
//! Properties: decryption never panics; a message that is not byte for
//! byte a seed is refused; on refusal, streaming decryption has written at
//! most a prefix of the seed's true plaintext (authenticated frames only)
//! and `decrypt_to_vec` nothing. `KEYWARDEN_FUZZ_SECS` sets the run time
//! (keywarden-fuzz).

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use keywarden_envelope::message::{parse_context, serialize_context};
use keywarden_envelope::{
    decrypt, decrypt_to_vec, encrypt_to_vec, AlgorithmSuite, DecryptOptions,
    DefaultMaterialsManager, EncryptOptions, EncryptionContext, MaterialsManager, RawAesKeyring,
};
use keywarden_fuzz::{bytes_from_seeds, run};
use proptest::prelude::*;
use serde_json::Value;

use common::StaticKeyring;

struct Seed {
    message: Vec<u8>,
    /// `None` for vectors that must fail (wrong commitment).
    plaintext: Option<Vec<u8>>,
    cmm: Box<dyn MaterialsManager>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

fn raw_keyring() -> RawAesKeyring {
    RawAesKeyring::new("keywarden-fuzz", "wrapping-key-1", &[0x11; 32]).unwrap()
}

fn seeds(rt: &tokio::runtime::Runtime) -> Vec<Seed> {
    let mut out = Vec::new();
    let context: EncryptionContext = [("purpose", "fuzz"), ("tenant", "t-1")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ] {
        for (len, frame_length, ctx) in [
            (0usize, 64u32, EncryptionContext::new()),
            (200, 64, context.clone()),
            (128, 64, EncryptionContext::new()),
            (10, 4096, context.clone()),
        ] {
            let cmm = DefaultMaterialsManager::new(raw_keyring());
            let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let options = EncryptOptions {
                suite,
                frame_length,
                plaintext_length: None,
            };
            let (message, _) = rt
                .block_on(encrypt_to_vec(&cmm, &ctx, &options, &plaintext))
                .unwrap();
            out.push(Seed {
                message,
                plaintext: Some(plaintext),
                cmm: Box::new(cmm),
            });
        }
    }
    let doc: Value =
        serde_json::from_str(include_str!("vectors/message-format-v2.json")).expect("JSON");
    let b64 = |v: &Value| BASE64.decode(v.as_str().unwrap()).unwrap();
    for t in doc["tests"].as_array().unwrap() {
        out.push(Seed {
            message: b64(&t["ciphertext"]),
            plaintext: t["plaintext"].as_str().map(|_| b64(&t["plaintext"])),
            cmm: Box::new(DefaultMaterialsManager::new(StaticKeyring::new(b64(
                &t["data-key"]
            )))),
        });
    }
    out
}

#[test]
fn fuzz_message_decrypt() {
    let rt = runtime();
    let seeds = seeds(&rt);
    let corpus: Vec<Vec<u8>> = seeds.iter().map(|s| s.message.clone()).collect();
    let fallback = DefaultMaterialsManager::new(raw_keyring());
    run(
        "envelope_message",
        bytes_from_seeds(corpus, 512),
        |(seed, bytes)| {
            let message = bytes.0;
            let seed = seed.map(|i| &seeds[i]);
            let cmm: &dyn MaterialsManager = seed.map_or(&fallback, |s| s.cmm.as_ref());
            let options = DecryptOptions {
                max_non_framed_length: 1 << 20,
                ..DecryptOptions::default()
            };

            let whole = rt.block_on(decrypt_to_vec(cmm, &options, &message));
            let mut streamed = Vec::new();
            let stream = rt.block_on(decrypt(cmm, &options, &message[..], &mut streamed));
            prop_assert_eq!(whole.is_ok(), stream.is_ok());

            let Some(seed) = seed else {
                return Ok(());
            };
            let is_seed = message == seed.message;
            match (&whole, &seed.plaintext) {
                (Ok((plaintext, _)), Some(expected)) => {
                    prop_assert!(is_seed, "a changed message decrypted");
                    prop_assert_eq!(plaintext, expected);
                    prop_assert_eq!(&streamed, expected);
                }
                (Ok(_), None) => prop_assert!(false, "a message that must fail decrypted"),
                (Err(_), Some(expected)) => {
                    prop_assert!(!is_seed, "the seed itself did not decrypt");
                    prop_assert!(
                        expected.starts_with(&streamed),
                        "streaming wrote bytes that are not the authentic plaintext"
                    );
                }
                (Err(_), None) => prop_assert!(streamed.is_empty()),
            }
            Ok(())
        },
    );
}

#[test]
fn fuzz_encryption_context_codec() {
    let rt = runtime();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    for s in seeds(&rt) {
        // The context field of the header: after version, suite and id.
        let m = &s.message;
        let len = usize::from(u16::from_be_bytes([m[35], m[36]]));
        corpus.push(m[37..37 + len].to_vec());
    }
    corpus.retain(|c| !c.is_empty());
    assert!(
        !corpus.is_empty(),
        "no seed message has an encryption context"
    );
    run(
        "envelope_context",
        bytes_from_seeds(corpus, 128),
        |(_, bytes)| {
            if let Ok(context) = parse_context(&bytes.0) {
                let again = serialize_context(&context).unwrap();
                prop_assert_eq!(parse_context(&again).unwrap(), context);
                prop_assert_eq!(again.len(), bytes.0.len());
            }
            Ok(())
        },
    );
}
