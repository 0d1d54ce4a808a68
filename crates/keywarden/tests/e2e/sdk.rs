//! End-to-end: the real binary driven by the official `aws-sdk-kms`.

use crate::common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState, Tag};
use common::{code, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_and_crypto_through_the_sdk() {
    let server = Server::start(common::BIN);
    let acct = server.account("team-a");
    let kms = server.client(&acct);

    let created = kms
        .create_key()
        .description("first key")
        .tags(
            Tag::builder()
                .tag_key("env")
                .tag_value("test")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let md = created.key_metadata().unwrap();
    let key_id = md.key_id().to_owned();
    let arn = md.arn().unwrap().to_owned();
    assert_eq!(
        arn,
        format!("arn:aws:kms:us-east-1:{}:key/{key_id}", acct.account_id)
    );
    assert_eq!(md.aws_account_id(), Some(acct.account_id.as_str()));
    assert_eq!(md.key_state(), Some(&KeyState::Enabled));
    assert_eq!(md.description(), Some("first key"));
    assert!(md.enabled());

    // Encrypt by key id, decrypt without naming the key; the context is bound.
    let enc = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"hello keywarden".to_vec()))
        .encryption_context("purpose", "test")
        .encryption_context("tenant", "a")
        .send()
        .await
        .unwrap();
    assert_eq!(enc.key_id(), Some(arn.as_str()));
    let blob = enc.ciphertext_blob().unwrap().clone();
    let dec = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "a")
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), b"hello keywarden");
    assert_eq!(dec.key_id(), Some(arn.as_str()));
    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("tenant", "b")
        .encryption_context("purpose", "test")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidCiphertextException");

    // Data keys.
    let dk = kms
        .generate_data_key()
        .key_id(&arn)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    assert_eq!(dk.plaintext().unwrap().as_ref().len(), 32);
    let back = kms
        .decrypt()
        .ciphertext_blob(dk.ciphertext_blob().unwrap().clone())
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        back.plaintext().unwrap().as_ref(),
        dk.plaintext().unwrap().as_ref()
    );
    let wp = kms
        .generate_data_key_without_plaintext()
        .key_id(&key_id)
        .number_of_bytes(64)
        .send()
        .await
        .unwrap();
    let back = kms
        .decrypt()
        .ciphertext_blob(wp.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref().len(), 64);
    let rnd = kms
        .generate_random()
        .number_of_bytes(1024)
        .send()
        .await
        .unwrap();
    assert_eq!(rnd.plaintext().unwrap().as_ref().len(), 1024);

    // Disable, enable, schedule deletion, cancel.
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let err = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
    kms.enable_key().key_id(&key_id).send().await.unwrap();
    let sched = kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(sched.key_state(), Some(&KeyState::PendingDeletion));
    assert_eq!(sched.pending_window_in_days(), Some(7));
    assert_eq!(sched.key_id(), Some(arn.as_str()));
    let err = kms
        .generate_data_key()
        .key_id(&key_id)
        .number_of_bytes(16)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    let d = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert!(d.key_metadata().unwrap().deletion_date().is_some());
    kms.cancel_key_deletion()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let d = kms.describe_key().key_id(&key_id).send().await.unwrap();
    assert_eq!(
        d.key_metadata().unwrap().key_state(),
        Some(&KeyState::Disabled)
    );
    assert!(d.key_metadata().unwrap().deletion_date().is_none());
    for days in [6, 31] {
        let err = kms
            .schedule_key_deletion()
            .key_id(&key_id)
            .pending_window_in_days(days)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "ValidationException", "{days} days");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_tags_reencrypt_and_pagination() {
    let server = Server::start(common::BIN);
    let acct = server.account("team-b");
    let kms = server.client(&acct);
    let k1 = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let k2 = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;

    kms.create_alias()
        .alias_name("alias/app")
        .target_key_id(&k1)
        .send()
        .await
        .unwrap();
    let err = kms
        .create_alias()
        .alias_name("alias/app")
        .target_key_id(&k2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AlreadyExistsException");
    for bad in ["alias/aws/x", "alias_evs", "nope"] {
        let err = kms
            .create_alias()
            .alias_name(bad)
            .target_key_id(&k1)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "InvalidAliasNameException", "{bad}");
    }
    let alias_arn = format!("arn:aws:kms:us-east-1:{}:alias/app", acct.account_id);
    let enc = kms
        .encrypt()
        .key_id(&alias_arn)
        .plaintext(Blob::new(b"via alias".to_vec()))
        .send()
        .await
        .unwrap();
    assert!(enc.key_id().unwrap().ends_with(&k1));

    // ReEncrypt moves the ciphertext to k2 without revealing it.
    let re = kms
        .re_encrypt()
        .ciphertext_blob(enc.ciphertext_blob().unwrap().clone())
        .destination_key_id(&k2)
        .destination_encryption_context("moved", "yes")
        .send()
        .await
        .unwrap();
    assert!(re.source_key_id().unwrap().ends_with(&k1));
    assert!(re.key_id().unwrap().ends_with(&k2));
    let dec = kms
        .decrypt()
        .ciphertext_blob(re.ciphertext_blob().unwrap().clone())
        .encryption_context("moved", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), b"via alias");
    let err = kms
        .decrypt()
        .ciphertext_blob(re.ciphertext_blob().unwrap().clone())
        .encryption_context("moved", "yes")
        .key_id(&k1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "IncorrectKeyException");

    kms.update_alias()
        .alias_name("alias/app")
        .target_key_id(&k2)
        .send()
        .await
        .unwrap();
    let aliases = kms.list_aliases().key_id(&k2).send().await.unwrap();
    let names: Vec<_> = aliases
        .aliases()
        .iter()
        .filter_map(|a| a.alias_name())
        .collect();
    assert_eq!(names, ["alias/app"]);
    kms.delete_alias()
        .alias_name("alias/app")
        .send()
        .await
        .unwrap();
    let err = kms
        .delete_alias()
        .alias_name("alias/app")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");

    // Tags.
    kms.tag_resource()
        .key_id(&k1)
        .tags(Tag::builder().tag_key("a").tag_value("1").build().unwrap())
        .tags(Tag::builder().tag_key("b").tag_value("2").build().unwrap())
        .send()
        .await
        .unwrap();
    kms.untag_resource()
        .key_id(&k1)
        .tag_keys("a")
        .send()
        .await
        .unwrap();
    let tags = kms.list_resource_tags().key_id(&k1).send().await.unwrap();
    let got: Vec<_> = tags
        .tags()
        .iter()
        .map(|t| (t.tag_key(), t.tag_value()))
        .collect();
    assert_eq!(got, [("b", "2")]);
    let err = kms
        .tag_resource()
        .key_id(&k1)
        .tags(
            Tag::builder()
                .tag_key("aws:x")
                .tag_value("1")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "TagException");

    // Pagination visits every key once.
    for _ in 0..3 {
        kms.create_key().send().await.unwrap();
    }
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let page = kms
            .list_keys()
            .limit(2)
            .set_marker(marker)
            .send()
            .await
            .unwrap();
        assert!(page.keys().len() <= 2);
        seen.extend(page.keys().iter().map(|k| k.key_id().unwrap().to_owned()));
        if !page.truncated() {
            break;
        }
        marker = page.next_marker().map(str::to_owned);
    }
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(seen.len(), 5);
    assert_eq!(dedup.len(), 5);
    let err = kms
        .list_keys()
        .marker("not-a-marker")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidMarkerException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let server = Server::start(common::BIN);
    let a = server.account("a");
    let b = server.account("b");
    let (ka, kb) = (server.client(&a), server.client(&b));
    let key = ka.create_key().send().await.unwrap().key_metadata.unwrap();
    let arn = key.arn().unwrap().to_owned();
    ka.create_alias()
        .alias_name("alias/shared-name")
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    let blob = ka
        .encrypt()
        .key_id(&arn)
        .plaintext(Blob::new(b"a's secret".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();

    for id in [
        key.key_id().to_owned(),
        arn.clone(),
        "alias/shared-name".to_owned(),
    ] {
        let err = kb.describe_key().key_id(&id).send().await.unwrap_err();
        assert_eq!(code(&err), "NotFoundException", "{id}");
        let err = kb
            .encrypt()
            .key_id(&id)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "NotFoundException", "{id}");
        let err = kb.disable_key().key_id(&id).send().await.unwrap_err();
        assert_eq!(code(&err), "NotFoundException", "{id}");
    }
    let err = kb
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidCiphertextException");
    assert!(kb.list_keys().send().await.unwrap().keys().is_empty());
    assert!(kb.list_aliases().send().await.unwrap().aliases().is_empty());
    // B may use the same alias name for its own key.
    let kb_key = kb
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    kb.create_alias()
        .alias_name("alias/shared-name")
        .target_key_id(&kb_key)
        .send()
        .await
        .unwrap();
    // A's key is untouched.
    let d = ka.describe_key().key_id(&arn).send().await.unwrap();
    assert_eq!(
        d.key_metadata().unwrap().key_state(),
        Some(&KeyState::Enabled)
    );
    let dec = ka.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), b"a's secret");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_change_while_the_server_runs_and_data_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start_in(common::BIN, &data, tmp.path().join("log"));
    let acct = server.account("ops");
    let kms = server.client(&acct);
    let key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let blob = kms
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"durable".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();

    // A second credential for the same account works at once...
    let out = server.admin(&["credentials", "create", "--account", &acct.account_id]);
    assert!(out.status.success());
    let second = common::parse_account(&out.stdout);
    let kms2 = server.client(&second);
    assert_eq!(kms2.list_keys().send().await.unwrap().keys().len(), 1);
    // ...and stops when revoked: another process's change reaches the
    // server's caches within 100 ms; allow ten times that.
    let out = server.admin(&[
        "credentials",
        "revoke",
        "--access-key-id",
        &second.access_key_id,
    ]);
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    let err = loop {
        match kms2.list_keys().send().await {
            Err(e) => break e,
            Ok(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Ok(_) => panic!("revoked credential still accepted after 1 s"),
        }
    };
    assert_eq!(code(&err), "UnrecognizedClientException");
    // A wrong secret is a signature failure.
    let mut wrong = acct.clone();
    wrong.secret_access_key = "0".repeat(40);
    let err = server.client(&wrong).list_keys().send().await.unwrap_err();
    assert_eq!(code(&err), "InvalidSignatureException");

    assert!(server.stop().success(), "graceful shutdown exits 0");
    let server = Server::start_in(common::BIN, &data, tmp.path().join("log"));
    let kms = server.client(&acct);
    let dec = kms.decrypt().ciphertext_blob(blob).send().await.unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), b"durable");
}

#[test]
fn plain_http_on_a_public_address_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to serve plain HTTP"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_data_dir_or_the_log() {
    use base64::Engine as _;
    let server = Server::start(common::BIN);
    let acct = server.account("scan");
    let kms = server.client(&acct);
    let key = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let dk = kms
        .generate_data_key()
        .key_id(&key)
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    let dek = dk.plaintext().unwrap().as_ref().to_vec();
    kms.decrypt()
        .ciphertext_blob(dk.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    // The log is written by a background thread: wait until the requests
    // above are in it before scanning.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !std::fs::read_to_string(&server.log)
        .unwrap_or_default()
        .contains("op=Decrypt")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the access log never recorded the Decrypt request"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let needles: Vec<(String, Vec<u8>)> = vec![
        ("raw DEK".into(), dek.clone()),
        (
            "base64 DEK".into(),
            base64::engine::general_purpose::STANDARD
                .encode(&dek)
                .into_bytes(),
        ),
        ("hex DEK".into(), hex::encode(&dek).into_bytes()),
        (
            "secret access key".into(),
            acct.secret_access_key.as_bytes().to_vec(),
        ),
    ];
    let mut files = vec![server.log.clone()];
    for entry in std::fs::read_dir(&server.data_dir).unwrap() {
        files.push(entry.unwrap().path());
    }
    assert!(files.len() >= 3, "expected db, root key and log: {files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what} found in {}",
                f.display()
            );
        }
    }
    let log = std::fs::read_to_string(&server.log).unwrap();
    assert!(
        log.contains("GenerateDataKey"),
        "the access log records operations"
    );
}
