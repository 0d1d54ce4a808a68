//! Crash safety: the real server is killed with SIGKILL again and again
//! while requests write (keys, aliases, rotations, imported material,
//! grants, deletion scheduling, billing flushes). After every crash `keywarden admin check`
//! passes (no half-created key, every version loads, every credential
//! unseals), and after the last one every acknowledged write is there:
//! every acknowledged ciphertext decrypts, every acknowledged alias points
//! at its key, every acknowledged grant is listed.

use crate::common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::GrantOperation;
use aws_sdk_kms::Client;
use common::{admin_json, Server};

const ITERATIONS: usize = 6;

#[derive(Default)]
struct Acknowledged {
    /// blob → (key id, plaintext)
    sealed: Vec<(Blob, String, Vec<u8>)>,
    aliases: BTreeMap<String, String>,
    grants: Vec<(String, String)>,
}

async fn workload(kms: Client, worker: usize, round: usize, acked: Arc<Mutex<Acknowledged>>) {
    for n in 0.. {
        let Ok(created) = kms.create_key().send().await else {
            return;
        };
        let key = created.key_metadata.unwrap().key_id;
        let alias = format!("alias/r{round}-w{worker}-{n}");
        if kms
            .create_alias()
            .alias_name(&alias)
            .target_key_id(&key)
            .send()
            .await
            .is_err()
        {
            return;
        }
        acked.lock().unwrap().aliases.insert(alias, key.clone());
        if n % 2 == 1
            && kms
                .rotate_key_on_demand()
                .key_id(&key)
                .send()
                .await
                .is_err()
        {
            return;
        }
        let plaintext = format!("round {round} worker {worker} item {n}").into_bytes();
        let Ok(out) = kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(plaintext.clone()))
            .send()
            .await
        else {
            return;
        };
        acked
            .lock()
            .unwrap()
            .sealed
            .push((out.ciphertext_blob.unwrap(), key.clone(), plaintext));
        if n % 3 == 0 {
            let Ok(grant) = kms
                .create_grant()
                .key_id(&key)
                .grantee_principal("arn:aws:iam::000000000000:role/keywarden-product/mysql")
                .operations(GrantOperation::Decrypt)
                .send()
                .await
            else {
                return;
            };
            acked
                .lock()
                .unwrap()
                .grants
                .push((key.clone(), grant.grant_id.unwrap()));
        }
        if n % 4 == 2 {
            // Schedule and cancel: two more writes of the key row.
            if kms
                .schedule_key_deletion()
                .key_id(&key)
                .pending_window_in_days(7)
                .send()
                .await
                .is_err()
                || kms.cancel_key_deletion().key_id(&key).send().await.is_err()
                || kms.enable_key().key_id(&key).send().await.is_err()
            {
                return;
            }
        }
    }
}

/// Imported key material (BYOK): CreateKey with origin EXTERNAL,
/// GetParametersForImport, the material wrapped as AWS clients do,
/// ImportKeyMaterial, then Encrypt.
async fn import_workload(kms: Client, round: usize, acked: Arc<Mutex<Acknowledged>>) {
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
    use aws_sdk_kms::types::{AlgorithmSpec, ExpirationModelType, OriginType, WrappingKeySpec};
    for n in 0.. {
        let Ok(created) = kms.create_key().origin(OriginType::External).send().await else {
            return;
        };
        let key = created.key_metadata.unwrap().key_id;
        let Ok(params) = kms
            .get_parameters_for_import()
            .key_id(&key)
            .wrapping_algorithm(AlgorithmSpec::RsaesOaepSha256)
            .wrapping_key_spec(WrappingKeySpec::Rsa2048)
            .send()
            .await
        else {
            return;
        };
        let public = OaepPublicEncryptingKey::new(
            PublicEncryptingKey::from_der(params.public_key.unwrap().as_ref()).unwrap(),
        )
        .unwrap();
        let material = [(round * 16 + n) as u8; 32];
        let mut wrapped = vec![0u8; public.ciphertext_size()];
        let len = public
            .encrypt(&OAEP_SHA256_MGF1SHA256, &material, &mut wrapped, None)
            .unwrap()
            .len();
        wrapped.truncate(len);
        if kms
            .import_key_material()
            .key_id(&key)
            .import_token(params.import_token.unwrap())
            .encrypted_key_material(Blob::new(wrapped))
            .expiration_model(ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
            .await
            .is_err()
        {
            return;
        }
        let plaintext = format!("round {round} imported item {n}").into_bytes();
        let Ok(out) = kms
            .encrypt()
            .key_id(&key)
            .plaintext(Blob::new(plaintext.clone()))
            .send()
            .await
        else {
            return;
        };
        acked
            .lock()
            .unwrap()
            .sealed
            .push((out.ciphertext_blob.unwrap(), key, plaintext));
    }
}

fn check(server: &Server) -> serde_json::Value {
    let out = server.admin(&["check"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "check prints JSON: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && report["Ok"] == true,
        "admin check after a crash: {report}"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let config = dir.path().join("keywarden.toml");
    // Billing on, charges posted every second: ledger writes and metering
    // flushes are among what gets interrupted.
    std::fs::write(
        &config,
        "[billing]\nenabled = true\ncharge_interval_secs = 1\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let mut server = Server::start_with(common::BIN, &data, log.clone(), &args);
    let account = server.account("crash");
    admin_json(&server.admin(&[
        "account",
        "topup",
        "--account",
        &account.account_id,
        "--amount",
        "100000",
        "--config",
        config.to_str().unwrap(),
    ]));
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    for round in 0..ITERATIONS {
        let kms = server.client(&account);
        let mut workers: Vec<_> = (0..3)
            .map(|w| tokio::spawn(workload(kms.clone(), w, round, acked.clone())))
            .collect();
        workers.push(tokio::spawn(import_workload(
            kms.clone(),
            round,
            acked.clone(),
        )));
        // Kill at a different moment each round (250 ms .. 1.5 s).
        tokio::time::sleep(Duration::from_millis(250 + 250 * round as u64)).await;
        server.kill9();
        for w in workers {
            w.await.unwrap();
        }
        let report = check(&server);
        eprintln!("round {round}: killed; check {report}");
        server = Server::start_with(common::BIN, &data, log.clone(), &args);
    }

    // Everything acknowledged is there.
    let kms = server.client(&account);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.sealed.len() >= ITERATIONS,
        "the workload made progress"
    );
    for (blob, key, plaintext) in &acked.sealed {
        // A crash between ScheduleKeyDeletion, CancelKeyDeletion and
        // EnableKey leaves the key pending deletion or disabled, as it
        // should: bring it back the way an operator would.
        let state = kms.describe_key().key_id(key).send().await.unwrap();
        match state.key_metadata.unwrap().key_state.unwrap().as_str() {
            "PendingDeletion" => {
                kms.cancel_key_deletion().key_id(key).send().await.unwrap();
                kms.enable_key().key_id(key).send().await.unwrap();
            }
            "Disabled" => {
                kms.enable_key().key_id(key).send().await.unwrap();
            }
            _ => {}
        }
        let out = kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap();
        assert!(out.key_id.unwrap().ends_with(key.as_str()));
        assert_eq!(out.plaintext.unwrap().as_ref(), plaintext.as_slice());
    }
    for (alias, key) in &acked.aliases {
        let described = kms.describe_key().key_id(alias).send().await.unwrap();
        assert_eq!(&described.key_metadata.unwrap().key_id, key, "{alias}");
    }
    for (key, grant) in &acked.grants {
        let listed = kms.list_grants().key_id(key).send().await.unwrap();
        assert!(
            listed
                .grants()
                .iter()
                .any(|g| g.grant_id() == Some(grant.as_str())),
            "grant {grant} on {key}"
        );
    }
    eprintln!(
        "{} ciphertexts, {} aliases, {} grants acknowledged across {ITERATIONS} crashes",
        acked.sealed.len(),
        acked.aliases.len(),
        acked.grants.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_check_finds_torn_and_corrupt_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_in(common::BIN, &data, dir.path().join("server.log"));
    let account = server.account("check");
    let kms = server.client(&account);
    let key = common::create_key(&kms).await;
    kms.create_key().send().await.unwrap();
    server.stop();
    let clean = check(&server);
    assert_eq!(clean["Keys"], 2);

    // Flip one byte of the wrapped material of one key's version, and
    // leave another key pending deletion without a date (a torn write).
    let db = rusqlite::Connection::open(data.join("keywarden.db")).unwrap();
    let mut material: Vec<u8> = db
        .query_row(
            "SELECT material FROM key_versions WHERE key_id = ?1 AND version = 1",
            [&key],
            |r| r.get(0),
        )
        .unwrap();
    material[20] ^= 1;
    db.execute(
        "UPDATE key_versions SET material = ?1 WHERE key_id = ?2 AND version = 1",
        rusqlite::params![material, key],
    )
    .unwrap();
    let changed: usize = db
        .execute(
            "UPDATE keys SET state = 'PendingDeletion', deletion_date = NULL WHERE key_id <> ?1",
            [&key],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);
    let out = server.admin(&["check"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["Ok"], false);
    let problems = report["Problems"].to_string();
    assert!(
        problems.contains(&key) && problems.contains("does not load"),
        "{problems}"
    );
    assert!(
        problems.contains("pending deletion without a deletion date"),
        "{problems}"
    );
}
