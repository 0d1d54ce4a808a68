//! The ciphertext blob format against known-answer vectors produced from
//! the specification by an independent AES-GCM implementation
//! (`docs/vectors/make_ciphertext_vectors.py`), and property tests: any
//! flipped byte or truncation is rejected.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use keywarden_core::ciphertext;
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyId;
use keywarden_core::protector::{KeyBinding, KeyHandle, KeyProtector, ProtectorError, Sealed};
use keywarden_core::secret::Secret;
use keywarden_core::KmsError;
use keywarden_protector_soft::{RootKey, SoftwareProtector};
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    description: String,
    material: String,
    key_id: String,
    version: u32,
    nonce: String,
    context: BTreeMap<String, String>,
    plaintext: String,
    blob: String,
}

/// A handle that seals with a fixed nonce, to reproduce vectors exactly.
struct FixedNonce {
    key: LessSafeKey,
    nonce: [u8; 12],
}

impl KeyHandle for FixedNonce {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, ProtectorError> {
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(self.nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map_err(|_| ProtectorError::Crypto("seal"))?;
        Ok(Sealed {
            nonce: self.nonce,
            ciphertext: buf,
        })
    }

    fn open(&self, _: &[u8; 12], _: &[u8], _: &[u8]) -> Result<Secret, ProtectorError> {
        unreachable!("vectors are opened with the production handle")
    }
}

fn vectors() -> Vec<Vector> {
    let text = include_str!("vectors/ciphertext-v1.json");
    serde_json::from_str::<File>(text).unwrap().vectors
}

fn production_handle(material: &[u8], key_id: &KeyId, version: u32) -> Box<dyn KeyHandle> {
    let p = SoftwareProtector::new(Arc::new(RootKey::from_bytes(&[3u8; 32])));
    let binding = KeyBinding { key_id, version };
    let stored = p.wrap_material(binding, material).unwrap();
    p.load(binding, &stored).unwrap()
}

#[test]
fn known_answer_vectors() {
    let vs = vectors();
    assert!(vs.len() >= 4);
    for v in vs {
        let material = hex::decode(&v.material).unwrap();
        let key_id = KeyId::parse(&v.key_id).unwrap();
        let ctx = EncryptionContext::new(v.context.clone()).unwrap();
        let plaintext = hex::decode(&v.plaintext).unwrap();
        let expected = hex::decode(&v.blob).unwrap();
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&hex::decode(&v.nonce).unwrap());

        let fixed = FixedNonce {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &material).unwrap()),
            nonce,
        };
        let sealed = ciphertext::seal(&fixed, &key_id, v.version, &ctx, &plaintext).unwrap();
        assert_eq!(hex::encode(&sealed), v.blob, "{}: encoding", v.description);

        let parsed = ciphertext::parse(&expected).unwrap();
        assert_eq!(parsed.key_id, key_id, "{}", v.description);
        assert_eq!(parsed.version, v.version, "{}", v.description);
        let handle = production_handle(&material, &key_id, v.version);
        let opened = ciphertext::open(handle.as_ref(), &parsed, &ctx).unwrap();
        assert_eq!(
            opened.expose(),
            plaintext.as_slice(),
            "{}: decoding",
            v.description
        );

        let mut other = v.context.clone();
        other.insert("extra".into(), "pair".into());
        let wrong = EncryptionContext::new(other).unwrap();
        assert!(matches!(
            ciphertext::open(handle.as_ref(), &parsed, &wrong),
            Err(KmsError::InvalidCiphertext)
        ));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_and_every_flip_or_truncation_is_rejected(
        plaintext in proptest::collection::vec(any::<u8>(), 1..64),
        pairs in proptest::collection::btree_map("[a-z]{0,6}", "[a-z0-9]{0,6}", 0..4),
        version in 1u32..5,
        key in any::<[u8; 16]>(),
    ) {
        let key_id = KeyId::from_bytes(key);
        let material = [0x42u8; 32];
        let handle = production_handle(&material, &key_id, version);
        let ctx = EncryptionContext::new(pairs).unwrap();
        let blob = ciphertext::seal(handle.as_ref(), &key_id, version, &ctx, &plaintext).unwrap();
        let parsed = ciphertext::parse(&blob).unwrap();
        let opened = ciphertext::open(handle.as_ref(), &parsed, &ctx).unwrap();
        prop_assert_eq!(opened.expose(), plaintext.as_slice());
        for i in 0..blob.len() {
            for bit in [0x01u8, 0x80] {
                let mut t = blob.clone();
                t[i] ^= bit;
                // A flip in the key id or version names another key or version:
                // the service then finds no such key (InvalidCiphertext); here the
                // same handle must still refuse, because the header is AAD.
                let rejected = match ciphertext::parse(&t) {
                    Err(_) => true,
                    Ok(p) => ciphertext::open(handle.as_ref(), &p, &ctx).is_err(),
                };
                prop_assert!(rejected, "flip of bit {bit:#x} at byte {i} accepted");
            }
        }
        for len in 0..blob.len() {
            let rejected = match ciphertext::parse(&blob[..len]) {
                Err(_) => true,
                Ok(p) => ciphertext::open(handle.as_ref(), &p, &ctx).is_err(),
            };
            prop_assert!(rejected, "truncation to {len} bytes accepted");
        }
    }
}
