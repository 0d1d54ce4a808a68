//! Throughput of streaming encryption and decryption of 16 MiB with both
//! suites, 4 KiB frames, and a raw AES keyring (no key service).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keywarden_envelope::{
    decrypt, encrypt, AlgorithmSuite, DecryptOptions, DefaultMaterialsManager, EncryptOptions,
    EncryptionContext, RawAesKeyring,
};

const SIZE: usize = 16 << 20;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let cmm = DefaultMaterialsManager::new(
        RawAesKeyring::new("bench", "key", &[7; 32]).expect("keyring"),
    );
    let context: EncryptionContext = [("purpose".to_string(), "bench".to_string())]
        .into_iter()
        .collect();
    let plaintext = vec![0x5a; SIZE];
    let mut group = c.benchmark_group("stream-16MiB");
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.sample_size(10);
    for (name, suite) in [
        ("0478", AlgorithmSuite::Aes256GcmHkdfSha512CommitKey),
        (
            "0578-signed",
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
        ),
    ] {
        let options = EncryptOptions {
            suite,
            ..EncryptOptions::default()
        };
        let mut message = Vec::with_capacity(SIZE + SIZE / 64);
        rt.block_on(encrypt(
            &cmm,
            &context,
            &options,
            &plaintext[..],
            &mut message,
        ))
        .expect("encrypt");
        group.bench_function(format!("encrypt/{name}"), |b| {
            let mut out = Vec::with_capacity(message.len());
            b.iter(|| {
                out.clear();
                rt.block_on(encrypt(&cmm, &context, &options, &plaintext[..], &mut out))
                    .expect("encrypt")
            })
        });
        group.bench_function(format!("decrypt/{name}"), |b| {
            let mut out = Vec::with_capacity(SIZE);
            b.iter(|| {
                out.clear();
                rt.block_on(decrypt(
                    &cmm,
                    &DecryptOptions::default(),
                    &message[..],
                    &mut out,
                ))
                .expect("decrypt")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
