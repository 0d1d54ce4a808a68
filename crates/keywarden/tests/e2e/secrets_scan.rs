//! Secrets hygiene, end to end: a workload through the real server (logging
//! at `trace`) hands out data keys, encrypts known plaintexts, issues access
//! keys; then every byte the server left behind (its log, every file of the
//! data dir including SQLite's WAL and shared-memory files) is searched for
//! each secret in raw, hex and base64 forms. Only the root key file may
//! hold the root key.

use crate::common;

use std::path::{Path, PathBuf};

use aws_sdk_kms::types::{DataKeySpec, GrantOperation};
use base64::Engine as _;
use common::{product_credential, Options, Server};

/// The forms a secret could take in text or binary output.
fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
    ];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(secret).into_bytes());
    }
    out
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.len() <= haystack.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_or_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    // The most verbose log: whatever the server could ever log is scanned.
    let mut server =
        Server::start_opts(common::BIN, &data, log.clone(), Options::new().log("trace"));
    let account = server.account("scan");
    let evs = product_credential(&server, "evs");
    let kms = server.client(&account);

    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        (
            "account secret access key".into(),
            account.secret_access_key.clone().into_bytes(),
        ),
        (
            "product secret access key".into(),
            evs.secret_access_key.clone().into_bytes(),
        ),
    ];
    let key = common::create_key(&kms).await;
    for i in 0..3 {
        let dk = kms
            .generate_data_key()
            .key_id(&key)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context("object", format!("o{i}"))
            .send()
            .await
            .unwrap();
        secrets.push((format!("data key {i}"), dk.plaintext.unwrap().into_inner()));
    }
    let known = b"known plaintext: the launch codes are 0000".to_vec();
    let blob = common::encrypt(&kms, &key, known.clone()).await;
    let back = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext.unwrap().as_ref(), known.as_slice());
    secrets.push(("known plaintext".into(), known));
    kms.re_encrypt()
        .ciphertext_blob(blob)
        .destination_key_id(&key)
        .send()
        .await
        .unwrap();
    let random = kms
        .generate_random()
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    secrets.push((
        "random bytes".into(),
        random.plaintext.unwrap().into_inner(),
    ));
    kms.rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    kms.create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::000000000000:role/keywarden-product/mysql")
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    // A product's default key and its data key.
    let product_dk = server
        .client(&evs)
        .generate_data_key()
        .key_id(format!(
            "arn:aws:kms:us-east-1:{}:alias_evs",
            account.account_id
        ))
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    secrets.push((
        "product data key".into(),
        product_dk.plaintext.unwrap().into_inner(),
    ));
    // Keys of other specs: a data key pair's private key and an ML-KEM
    // shared secret are handed out in plaintext and must not be kept.
    let cmk = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let pair = kms
        .generate_data_key_pair()
        .key_id(&cmk)
        .key_pair_spec(aws_sdk_kms::types::DataKeyPairSpec::EccNistP256)
        .send()
        .await
        .unwrap();
    secrets.push((
        "data key pair private key".into(),
        pair.private_key_plaintext.unwrap().into_inner(),
    ));
    let kem = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::MlKem768)
        .key_usage(aws_sdk_kms::types::KeyUsageType::EncapsulateDecapsulate)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let encapsulated = kms
        .encapsulate()
        .key_id(&kem)
        .encapsulation_algorithm(aws_sdk_kms::types::EncapsulationAlgorithmSpec::MlKem)
        .send()
        .await
        .unwrap();
    secrets.push((
        "ML-KEM shared secret".into(),
        encapsulated.shared_secret.unwrap().into_inner(),
    ));
    // A failed signature with the right access key id: the secret must not
    // appear in what the refusal logs either.
    let mut wrong = account.clone();
    wrong.secret_access_key = "x".repeat(40);
    assert!(server.client(&wrong).list_keys().send().await.is_err());

    // Scanned twice: while the server runs (SQLite's WAL and shared-memory
    // files exist, usage and metering flushed), and after it stopped.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let root_key = std::fs::read(data.join("root.key")).unwrap();
    let running = scan(&data, &log, &secrets, &root_key);
    assert!(server.stop().success());
    let stopped = scan(&data, &log, &secrets, &root_key);
    assert!(
        running
            .iter()
            .any(|f| f.to_string_lossy().ends_with("-wal")),
        "the running scan saw the WAL: {running:?}"
    );
    // A positive control: the scan does find what is there (the access key
    // id is public and logged with every request).
    let log_bytes = std::fs::read(&log).unwrap();
    assert!(contains(&log_bytes, account.access_key_id.as_bytes()));
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.matches("keywarden::access").count() >= 10,
        "every request was logged (the scan looked at a real log)"
    );
    eprintln!(
        "scanned {} files while running and {} after the stop, for {} secrets in 7 forms each",
        running.len(),
        stopped.len(),
        secrets.len() + 1
    );
}

/// Searches the log and every file of the data dir; returns the files.
fn scan(data: &Path, log: &Path, secrets: &[(String, Vec<u8>)], root_key: &[u8]) -> Vec<PathBuf> {
    let mut files = vec![log.to_owned()];
    files_under(data, &mut files);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for (what, secret) in secrets {
            for form in forms(secret) {
                assert!(
                    !contains(&bytes, &form),
                    "{what} found in {}",
                    file.display()
                );
            }
        }
        if file.file_name().and_then(|n| n.to_str()) != Some("root.key") {
            for form in forms(root_key) {
                assert!(
                    !contains(&bytes, &form),
                    "the root key found in {}",
                    file.display()
                );
            }
        }
    }
    files
}

/// `keywarden serve` locks its memory (the root key's pages) where it may,
/// and says plainly when it may not.
#[test]
fn the_root_key_is_locked_in_memory_or_the_server_says_why_not() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut server = Server::start_in(common::BIN, &dir.path().join("data"), log.clone());
    server.stop();
    let text = std::fs::read_to_string(&log).unwrap();
    let locked = text.contains("memory locked (mlockall)");
    let refused = text.contains("could not lock memory (mlockall)");
    assert!(locked ^ refused, "exactly one of the two lines: {text}");

    // Not permitted: an unprivileged user with RLIMIT_MEMLOCK 0. Needs root
    // (to switch user) and util-linux's runuser and prlimit.
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let tools = ["runuser", "prlimit"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .unwrap()
            .status
            .success()
    });
    if !root || !tools {
        eprintln!("skipping the unprivileged case: needs root, runuser and prlimit");
        return;
    }
    let place = tempfile::tempdir().unwrap();
    let bin = place.path().join("keywarden");
    std::fs::copy(common::BIN, &bin).unwrap();
    let data = place.path().join("data");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(place.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(Command::new("chown")
        .args(["nobody"])
        .arg(&data)
        .status()
        .unwrap()
        .success());
    let out = Command::new("prlimit")
        .args([
            "--memlock=0:0",
            "runuser",
            "-u",
            "nobody",
            "--",
            "timeout",
            "3",
        ])
        .arg(&bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.join("kw"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not lock memory (mlockall)"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("listening on"),
        "the server runs anyway"
    );
}
