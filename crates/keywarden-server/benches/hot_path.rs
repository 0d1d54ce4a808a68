//! Hot-path microbenchmarks of the wire layer: SigV4 verification of a
//! signed KMS request, and whole operations below HTTP (JSON decode,
//! validation, the core with warm caches, AES-256-GCM, JSON encode) through
//! `dispatch` on a real SQLite store and software protector.
//!
//! `cargo bench -p keywarden-server --bench hot_path`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use keywarden_core::clock::SystemClock;
use keywarden_core::kms::KmsParts;
use keywarden_core::{Caller, Kms, KmsConfig};
use keywarden_protector_soft::{RootKey, SoftwareProtector, SystemRandom};
use keywarden_server::dispatch;
use keywarden_server::sigv4::{SignedRequest, Verifier};
use keywarden_store_sqlite::SqliteStore;

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn sigv4(c: &mut Criterion) {
    let body = br#"{"KeyId":"alias/volume-keys","KeySpec":"AES_256","EncryptionContext":{"volume":"vol-0123456789abcdef"}}"#;
    let now = SystemTime::now();
    let identity: Identity = Credentials::new("AKIAEXAMPLE", SECRET, None, None, "bench").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kms")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers = [
        ("host", "127.0.0.1:8080"),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "TrentService.GenerateDataKey"),
    ];
    let signable = SignableRequest::new(
        "POST",
        "http://127.0.0.1:8080/",
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut map = HeaderMap::new();
    for (n, v) in headers.iter().copied().chain(instructions.headers()) {
        map.insert(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let verifier = Verifier::new("us-east-1", "kms", Duration::from_secs(900));
    let req = SignedRequest {
        method: "POST",
        path: "/",
        query: None,
        headers: &map,
        body,
    };
    c.bench_function("sigv4 parse + verify (signing key cached)", |b| {
        b.iter(|| {
            let auth = verifier.parse(black_box(&req)).unwrap();
            verifier
                .verify(&req, &auth, SECRET.as_bytes(), now)
                .unwrap();
        })
    });
}

fn operations(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = Arc::new(RootKey::from_bytes(&[1u8; 32]));
    let kms = Kms::new(KmsParts {
        store: Arc::new(SqliteStore::open(&dir.path().join("bench.db")).unwrap()),
        software_protector: Arc::new(SoftwareProtector::new(root.clone())),
        sealer: root,
        random: Arc::new(SystemRandom::new()),
        clock: Arc::new(SystemClock),
        config: KmsConfig::default(),
    });
    let issued = rt.block_on(kms.create_account("bench")).unwrap();
    let caller = Caller {
        product: None,
        account_id: issued.account_id.clone(),
        principal: issued.access_key_id.clone(),
        identity: keywarden_core::kms::Identity::Root,
        request_id: String::new(),
        facts: Default::default(),
        region: None,
    };
    let created = rt
        .block_on(dispatch(&kms, &caller, "CreateKey", b"{}"))
        .unwrap();
    let created: serde_json::Value = serde_json::from_slice(&created).unwrap();
    let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    let gdk = format!(
        r#"{{"KeyId":"{key_id}","KeySpec":"AES_256","EncryptionContext":{{"volume":"vol-0123456789abcdef"}}}}"#
    );
    let dk: serde_json::Value = serde_json::from_slice(
        &rt.block_on(dispatch(&kms, &caller, "GenerateDataKey", gdk.as_bytes()))
            .unwrap(),
    )
    .unwrap();
    let decrypt = format!(
        r#"{{"CiphertextBlob":"{}","EncryptionContext":{{"volume":"vol-0123456789abcdef"}}}}"#,
        dk["CiphertextBlob"].as_str().unwrap()
    );
    let encrypt = format!(
        r#"{{"KeyId":"{key_id}","Plaintext":"{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let describe = format!(r#"{{"KeyId":"{key_id}"}}"#);

    for (name, op, body) in [
        (
            "dispatch GenerateDataKey (warm cache)",
            "GenerateDataKey",
            gdk.as_bytes(),
        ),
        (
            "dispatch Decrypt (warm cache)",
            "Decrypt",
            decrypt.as_bytes(),
        ),
        (
            "dispatch Encrypt 32 bytes (warm cache)",
            "Encrypt",
            encrypt.as_bytes(),
        ),
        (
            "dispatch DescribeKey (warm cache)",
            "DescribeKey",
            describe.as_bytes(),
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(dispatch(&kms, &caller, op, black_box(body)))
                    .unwrap()
            })
        });
    }
}

fn json(c: &mut Criterion) {
    use keywarden_core::secret::Secret;
    use keywarden_server::bench_support as b;
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let gdk = br#"{"KeyId":"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab","KeySpec":"AES_256","EncryptionContext":{"volume":"vol-0123456789abcdef"}}"#;
    let blob = vec![1u8; 81];
    let decrypt = format!(
        r#"{{"CiphertextBlob":"{}","EncryptionContext":{{"volume":"vol-0123456789abcdef"}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(&blob)
    );
    let dek = Secret::new(vec![9u8; 32]);
    c.bench_function("json decode GenerateDataKey request", |bch| {
        bch.iter(|| b::decode_generate_data_key(black_box(gdk)).unwrap())
    });
    c.bench_function("json encode GenerateDataKey response", |bch| {
        bch.iter(|| b::encode_generate_data_key(arn.to_owned(), blob.clone(), black_box(&dek)))
    });
    c.bench_function("json decode Decrypt request", |bch| {
        bch.iter(|| b::decode_decrypt(black_box(decrypt.as_bytes())).unwrap())
    });
    c.bench_function("json encode Decrypt response", |bch| {
        bch.iter(|| b::encode_decrypt(arn.to_owned(), black_box(&dek)))
    });
}

criterion_group!(hot_path, sigv4, json, operations);
criterion_main!(hot_path);
