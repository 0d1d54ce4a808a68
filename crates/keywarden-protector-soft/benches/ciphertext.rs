//! Hot-path microbenchmarks: unwrapping a key version, sealing and opening a
//! 32-byte data key into/from a ciphertext blob (AES-256-GCM via aws-lc-rs
//! plus the blob codec), and parsing a blob.
//!
//! `cargo bench -p keywarden-protector-soft --bench ciphertext`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use keywarden_core::ciphertext;
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyId;
use keywarden_core::protector::{KeyBinding, KeyProtector};
use keywarden_protector_soft::{RootKey, SoftwareProtector};

fn benches(c: &mut Criterion) {
    let protector = SoftwareProtector::new(Arc::new(RootKey::from_bytes(&[5u8; 32])));
    let key_id = KeyId::from_bytes([7u8; 16]);
    let binding = KeyBinding {
        key_id: &key_id,
        version: 1,
    };
    let stored = protector.generate(binding).unwrap();
    let handle = protector.load(binding, &stored).unwrap();
    let dek = [0x11u8; 32];
    let empty = EncryptionContext::empty();
    let ctx = EncryptionContext::new(BTreeMap::from([
        ("tenant".to_string(), "123456789012".to_string()),
        ("volume".to_string(), "vol-0123456789abcdef".to_string()),
    ]))
    .unwrap();
    let blob = ciphertext::seal(handle.as_ref(), &key_id, 1, &ctx, &dek).unwrap();

    c.bench_function("unwrap key version (root key AES-GCM + key setup)", |b| {
        b.iter(|| {
            protector
                .load(black_box(binding), black_box(&stored))
                .unwrap()
        })
    });
    c.bench_function("seal 32-byte data key, empty context", |b| {
        b.iter(|| {
            ciphertext::seal(
                handle.as_ref(),
                &key_id,
                1,
                black_box(&empty),
                black_box(&dek),
            )
            .unwrap()
        })
    });
    c.bench_function("seal 32-byte data key, two-pair context", |b| {
        b.iter(|| {
            ciphertext::seal(
                handle.as_ref(),
                &key_id,
                1,
                black_box(&ctx),
                black_box(&dek),
            )
            .unwrap()
        })
    });
    c.bench_function("parse + open 32-byte data key, two-pair context", |b| {
        b.iter(|| {
            let parsed = ciphertext::parse(black_box(&blob)).unwrap();
            ciphertext::open(handle.as_ref(), &parsed, black_box(&ctx)).unwrap()
        })
    });
    c.bench_function("parse blob header", |b| {
        b.iter(|| ciphertext::parse(black_box(&blob)).unwrap().version)
    });
}

criterion_group!(hot_path, benches);
criterion_main!(hot_path);
