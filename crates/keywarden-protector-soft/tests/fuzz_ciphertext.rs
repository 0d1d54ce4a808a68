//! Fuzz target: the ciphertext blob parser (`keywarden_core::ciphertext`)
//! and opening with the production software handle. Lives here rather than
//! in keywarden-core because the core has no AES-GCM of its own.
//!
//! Seeds: the known-answer vectors (`vectors/ciphertext-v1.json`) and blobs
//! sealed now. Properties: parsing never panics; a parsed header re-encodes
//! to the same bytes; a seed opens to its plaintext; any other bytes
//! derived from a seed are refused (`InvalidCiphertext`), never opened to
//! plaintext. `KEYWARDEN_FUZZ_SECS` sets the run time (keywarden-fuzz).

use std::collections::BTreeMap;
use std::sync::Arc;

use keywarden_core::ciphertext;
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyId;
use keywarden_core::protector::{KeyBinding, KeyHandle, KeyProtector};
use keywarden_core::KmsError;
use keywarden_fuzz::{bytes_from_seeds, run};
use keywarden_protector_soft::{RootKey, SoftwareProtector};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    material: String,
    key_id: String,
    version: u32,
    context: BTreeMap<String, String>,
    plaintext: String,
    blob: String,
}

struct Seed {
    blob: Vec<u8>,
    plaintext: Vec<u8>,
    context: EncryptionContext,
    handle: Box<dyn KeyHandle>,
}

fn handle(material: &[u8], key_id: &KeyId, version: u32) -> Box<dyn KeyHandle> {
    let p = SoftwareProtector::new(Arc::new(RootKey::from_bytes(&[3u8; 32])));
    let binding = KeyBinding { key_id, version };
    let stored = p.wrap_material(binding, material).unwrap();
    p.load(binding, &stored).unwrap()
}

fn seeds() -> Vec<Seed> {
    let file: File =
        serde_json::from_str(include_str!("vectors/ciphertext-v1.json")).expect("vectors");
    let mut out: Vec<Seed> = file
        .vectors
        .into_iter()
        .map(|v| {
            let key_id = KeyId::parse(&v.key_id).unwrap();
            Seed {
                blob: hex::decode(&v.blob).unwrap(),
                plaintext: hex::decode(&v.plaintext).unwrap(),
                context: EncryptionContext::new(v.context).unwrap(),
                handle: handle(&hex::decode(&v.material).unwrap(), &key_id, v.version),
            }
        })
        .collect();
    // Fresh blobs: the largest plaintext AWS accepts, a one-byte one, a
    // large context and a high version.
    for (len, pairs, version) in [(4096usize, 0usize, 1u32), (1, 0, u32::MAX), (32, 8, 7)] {
        let key_id = KeyId::from_bytes([0x5a; 16]);
        let h = handle(&[0x42; 32], &key_id, version);
        let context = EncryptionContext::new(
            (0..pairs)
                .map(|i| (format!("k{i}"), "v".repeat(i)))
                .collect(),
        )
        .unwrap();
        let plaintext = vec![0xa5; len];
        let blob = ciphertext::seal(h.as_ref(), &key_id, version, &context, &plaintext).unwrap();
        out.push(Seed {
            blob,
            plaintext,
            context,
            handle: h,
        });
    }
    out
}

#[test]
fn fuzz_ciphertext_blob() {
    let seeds = seeds();
    let corpus: Vec<Vec<u8>> = seeds.iter().map(|s| s.blob.clone()).collect();
    run(
        "ciphertext_blob",
        bytes_from_seeds(corpus, 200),
        |(seed, bytes)| {
            let bytes = bytes.0;
            let parsed = match ciphertext::parse(&bytes) {
                Ok(p) => p,
                Err(e) => {
                    prop_assert!(matches!(e, KmsError::InvalidCiphertext));
                    return Ok(());
                }
            };
            prop_assert_eq!(
                &ciphertext::header(&parsed.key_id, parsed.version)[..],
                &bytes[..ciphertext::HEADER_LEN]
            );
            let Some(seed) = seed.map(|i| &seeds[i]) else {
                return Ok(());
            };
            match ciphertext::open(seed.handle.as_ref(), &parsed, &seed.context) {
                Ok(plaintext) => {
                    prop_assert_eq!(&bytes, &seed.blob, "a changed blob opened");
                    prop_assert_eq!(plaintext.expose(), seed.plaintext.as_slice());
                }
                Err(e) => {
                    prop_assert!(bytes != seed.blob, "the seed itself did not open");
                    prop_assert!(matches!(e, KmsError::InvalidCiphertext), "{e:?}");
                }
            }
            Ok(())
        },
    );
}
