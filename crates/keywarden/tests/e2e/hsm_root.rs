//! The root key sealed by an HSM (`[root_key] sealed_by`), with SoftHSM2:
//! the server and the admin commands unseal it through the HSM; without the
//! HSM key (another token), or without the configuration, the data dir does
//! not open. SoftHSM2 reads `SOFTHSM2_CONF` once per process: the server
//! and every admin command get the token and the configuration in their
//! own environment.

use crate::common;

use keywarden_testkit::softhsm;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use aws_sdk_kms::primitives::Blob;
use common::{Options, Server};

use softhsm::MODULE;

/// `keywarden admin account list` on `data` with `env` set and `remove`
/// removed (nothing else from this test's environment reaches it that the
/// test chose).
fn admin(data: &Path, env: &[(&str, &Path)], remove: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(common::BIN);
    cmd.args(["admin", "account", "list", "--data-dir"])
        .arg(data);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for k in remove {
        cmd.env_remove(k);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_root_key_needs_its_hsm() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = softhsm::token(&tmp.path().join("hsm"), "kw-root", "1234");
    let pin = tmp.path().join("pin");
    std::fs::write(&pin, "1234\n").unwrap();
    let config = tmp.path().join("keywarden.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[root_key]
sealed_by = "cks-root"

[[custom_key_stores]]
id = "cks-root"
name = "root sealing"
module = "{MODULE}"
token_label = "kw-root"
pin_file = "{}"
"#,
            pin.display()
        ),
    )
    .unwrap();
    // For the server and every admin command below.
    let hsm_env: [(&str, &Path); 2] = [
        ("SOFTHSM2_CONF", conf.as_path()),
        ("KEYWARDEN_CONFIG", config.as_path()),
    ];
    let options = || {
        Options::new()
            .env("SOFTHSM2_CONF", &conf)
            .env("KEYWARDEN_CONFIG", &config)
    };

    let data = tmp.path().join("data");
    let mut server =
        Server::start_opts(common::BIN, &data, tmp.path().join("server.log"), options());
    let root_file = data.join("root.key");
    let sealed = std::fs::read(&root_file).unwrap();
    assert!(
        sealed.starts_with(b"KWROOTH1"),
        "the root key file is sealed"
    );
    assert_eq!(
        std::fs::metadata(&root_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let acct = server.account("tenant");
    let kms = server.client(&acct);
    let key = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let blob = kms
        .encrypt()
        .key_id(key.key_id())
        .plaintext(Blob::new(b"under a sealed root".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert!(server.stop().success());

    // A restart unseals the same root key: old ciphertexts decrypt, old
    // credentials authenticate.
    let server = Server::start_opts(common::BIN, &data, tmp.path().join("server.log"), options());
    assert_eq!(std::fs::read(&root_file).unwrap(), sealed, "not rewritten");
    let kms = server.client(&acct);
    let back = kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), b"under a sealed root");
    drop(server);

    // Without the configuration the data dir does not open, and says why.
    let out = admin(&data, &hsm_env[..1], &["KEYWARDEN_CONFIG"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sealed by an HSM"), "{err}");

    // With another HSM (a token of the same label, without the sealing
    // key): a stolen data dir and root key file are useless.
    let other = softhsm::token(&tmp.path().join("other-hsm"), "kw-root", "1234");
    let out = admin(
        &data,
        &[("SOFTHSM2_CONF", &other), ("KEYWARDEN_CONFIG", &config)],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot unseal the root key"), "{err}");
    assert!(!err.contains("1234"), "the PIN is not in messages: {err}");

    // A plain root key is not sealed after the fact: refused, unchanged.
    let plain = tmp.path().join("plain");
    // `admin account create` starts a deployment (`account list` no
    // longer creates one).
    let mut create = Command::new(common::BIN);
    create
        .args([
            "admin",
            "account",
            "create",
            "--name",
            "plain",
            "--data-dir",
        ])
        .arg(&plain)
        .env_remove("KEYWARDEN_CONFIG");
    for (k, v) in &hsm_env[..1] {
        create.env(k, v);
    }
    let out = create.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = std::fs::read(plain.join("root.key")).unwrap();
    assert_eq!(before.len(), 32);
    let out = admin(&plain, &hsm_env, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds a plain root key"), "{err}");
    assert_eq!(std::fs::read(plain.join("root.key")).unwrap(), before);
}
