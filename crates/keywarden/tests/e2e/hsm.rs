//! Hardware-protected keys end to end: the real server with a custom key
//! store on SoftHSM2 (the system package `softhsm2`), driven with
//! aws-sdk-kms. SoftHSM2 reads `SOFTHSM2_CONF` once per process: the
//! server and the CLI get this test's token in their own environment.

use crate::common;

use keywarden_testkit::softhsm;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{ConnectionStateType, OriginType};
use common::{code, Options, Server};

use softhsm::MODULE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_keys_through_the_aws_api() {
    let tmp = tempfile::tempdir().unwrap();
    let conf = softhsm::token(tmp.path(), "kw-e2e", "1234");
    let pin_file = tmp.path().join("pin");
    std::fs::write(&pin_file, "1234\n").unwrap();
    let config = tmp.path().join("keywarden.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[custom_key_stores]]
id = "cks-softhsm"
name = "softhsm"
module = "{MODULE}"
token_label = "kw-e2e"
pin_env = "KW_E2E_HSM_PIN"
sessions = 4

[[custom_key_stores]]
id = "cks-absent"
name = "absent"
module = "{MODULE}"
token_label = "no-such-token"
pin_file = "{}"
"#,
            pin_file.display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_opts(
        common::BIN,
        &data,
        tmp.path().join("server.log"),
        Options::new()
            .args(&["--config", config.to_str().unwrap()])
            .env("SOFTHSM2_CONF", &conf)
            .env("KW_E2E_HSM_PIN", "1234"),
    );
    let acct = server.account("tenant");
    let kms = server.client(&acct);

    // The stores and their connection state.
    let stores = kms.describe_custom_key_stores().send().await.unwrap();
    let state = |id: &str| {
        stores
            .custom_key_stores()
            .iter()
            .find(|s| s.custom_key_store_id() == Some(id))
            .and_then(|s| s.connection_state().cloned())
    };
    assert_eq!(state("cks-softhsm"), Some(ConnectionStateType::Connected));
    assert_eq!(state("cks-absent"), Some(ConnectionStateType::Disconnected));
    let err = kms
        .describe_custom_key_stores()
        .custom_key_store_id("cks-nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreNotFoundException");

    // A key whose material is generated in the HSM.
    let meta = kms
        .create_key()
        .origin(OriginType::AwsCloudhsm)
        .custom_key_store_id("cks-softhsm")
        .description("in the HSM")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(meta.origin(), Some(&OriginType::AwsCloudhsm));
    assert_eq!(meta.custom_key_store_id(), Some("cks-softhsm"));
    let hsm_key = meta.arn().unwrap().to_owned();
    let described = kms
        .describe_key()
        .key_id(&hsm_key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(described.custom_key_store_id(), Some("cks-softhsm"));
    // The protection level, a Keywarden extension field AWS clients skip.
    for (key, level) in [(hsm_key.as_str(), "HARDWARE")] {
        let raw = common::raw_post(
            &server.url,
            &acct,
            "TrentService.DescribeKey",
            &format!(r#"{{"KeyId":"{key}"}}"#),
        )
        .await;
        assert_eq!(raw.body["KeyMetadata"]["ProtectionLevel"], level, "{raw:?}");
    }

    // Crypto runs in the HSM, with the usual blob format and context.
    let blob = kms
        .encrypt()
        .key_id(&hsm_key)
        .plaintext(Blob::new(b"hardware-protected".to_vec()))
        .encryption_context("purpose", "e2e")
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let back = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "e2e")
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), b"hardware-protected");
    assert_eq!(back.key_id(), Some(hsm_key.as_str()));
    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "other")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidCiphertextException");
    let dk = kms
        .generate_data_key()
        .key_id(&hsm_key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let opened = kms
        .decrypt()
        .ciphertext_blob(dk.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        opened.plaintext().unwrap().as_ref(),
        dk.plaintext().unwrap().as_ref()
    );
    kms.generate_data_key_without_plaintext()
        .key_id(&hsm_key)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();

    // ReEncrypt between an HSM key and a software key, both ways.
    let soft = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let moved = kms
        .re_encrypt()
        .ciphertext_blob(blob.clone())
        .source_encryption_context("purpose", "e2e")
        .destination_key_id(soft.key_id())
        .send()
        .await
        .unwrap();
    let back_to_hsm = kms
        .re_encrypt()
        .ciphertext_blob(moved.ciphertext_blob().unwrap().clone())
        .destination_key_id(&hsm_key)
        .destination_encryption_context("purpose", "again")
        .send()
        .await
        .unwrap();
    let again = kms
        .decrypt()
        .ciphertext_blob(back_to_hsm.ciphertext_blob().unwrap().clone())
        .encryption_context("purpose", "again")
        .send()
        .await
        .unwrap();
    assert_eq!(again.plaintext().unwrap().as_ref(), b"hardware-protected");

    // Rotation makes a new HSM object; the old version still decrypts.
    kms.rotate_key_on_demand()
        .key_id(&hsm_key)
        .send()
        .await
        .unwrap();
    let rotations = kms
        .list_key_rotations()
        .key_id(&hsm_key)
        .send()
        .await
        .unwrap();
    assert_eq!(rotations.rotations().len(), 1);
    let old = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "e2e")
        .send()
        .await
        .unwrap();
    assert_eq!(old.plaintext().unwrap().as_ref(), b"hardware-protected");
    let newer = kms
        .encrypt()
        .key_id(&hsm_key)
        .plaintext(Blob::new(b"v2".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    assert_ne!(
        newer.as_ref()[17..21],
        blob.as_ref()[17..21],
        "the version field moved"
    );
    kms.decrypt().ciphertext_blob(newer).send().await.unwrap();

    // Deletion through the API: scheduled (crypto refused), cancelled,
    // enabled again (the HSM objects are destroyed only when the waiting
    // period ends: tests/hsm_clock.rs).
    let scheduled = kms
        .schedule_key_deletion()
        .key_id(&hsm_key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    assert_eq!(
        scheduled.key_state(),
        Some(&aws_sdk_kms::types::KeyState::PendingDeletion)
    );
    let err = kms
        .decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "e2e")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    kms.cancel_key_deletion()
        .key_id(&hsm_key)
        .send()
        .await
        .unwrap();
    kms.enable_key().key_id(&hsm_key).send().await.unwrap();
    kms.decrypt()
        .ciphertext_blob(blob.clone())
        .encryption_context("purpose", "e2e")
        .send()
        .await
        .unwrap();

    // A store whose HSM cannot be reached: no new keys there, and every
    // other key keeps working.
    let err = kms
        .create_key()
        .origin(OriginType::AwsCloudhsm)
        .custom_key_store_id("cks-absent")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "CustomKeyStoreInvalidStateException");
    let err = kms
        .create_key()
        .origin(OriginType::AwsCloudhsm)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "ValidationException");
    let err = kms
        .create_key()
        .custom_key_store_id("cks-softhsm")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "UnsupportedOperationException");
    kms.encrypt()
        .key_id(soft.key_id())
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap();

    // The operator CLI creates HSM keys too (its own process and sessions
    // on the same token); the running server uses them.
    let out = server
        .command()
        .args([
            "key",
            "create",
            "--account",
            &acct.account_id,
            "--protection",
            "hsm",
            "--custom-key-store-id",
            "cks-softhsm",
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["KeyMetadata"]["Origin"], "AWS_CLOUDHSM");
    assert_eq!(created["KeyMetadata"]["CustomKeyStoreId"], "cks-softhsm");
    let cli_key = created["KeyMetadata"]["Arn"].as_str().unwrap().to_owned();
    let sealed = kms
        .encrypt()
        .key_id(&cli_key)
        .plaintext(Blob::new(b"from the cli key".to_vec()))
        .send()
        .await
        .unwrap();
    let opened = kms
        .decrypt()
        .ciphertext_blob(sealed.ciphertext_blob().unwrap().clone())
        .send()
        .await
        .unwrap();
    assert_eq!(opened.plaintext().unwrap().as_ref(), b"from the cli key");
    let refused = server
        .command()
        .args([
            "key",
            "create",
            "--account",
            &acct.account_id,
            "--protection",
            "hsm",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--custom-key-store-id"));

    // The token goes away under the running server (its directory moved
    // away: SoftHSM2 loses it) and comes back: the store's keys answer
    // KeyUnavailableException meanwhile, software keys keep working, and
    // service resumes by itself.
    let tokens = tmp.path().join("tokens");
    let away = tmp.path().join("tokens.away");
    std::fs::rename(&tokens, &away).unwrap();
    let err = kms
        .encrypt()
        .key_id(&hsm_key)
        .plaintext(Blob::new(b"while away".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KeyUnavailableException");
    kms.encrypt()
        .key_id(soft.key_id())
        .plaintext(Blob::new(b"software still".to_vec()))
        .send()
        .await
        .unwrap();
    let stores = kms
        .describe_custom_key_stores()
        .custom_key_store_id("cks-softhsm")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stores.custom_key_stores()[0].connection_state(),
        Some(&ConnectionStateType::Disconnected)
    );
    std::fs::rename(&away, &tokens).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("purpose", "e2e")
            .send()
            .await
        {
            Ok(out) => {
                assert_eq!(out.plaintext().unwrap().as_ref(), b"hardware-protected");
                break;
            }
            Err(e)
                if code(&e) == "KeyUnavailableException"
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await
            }
            Err(e) => panic!("the HSM key did not come back within 10 s: {e:?}"),
        }
    }
    let stores = kms
        .describe_custom_key_stores()
        .custom_key_store_id("cks-softhsm")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stores.custom_key_stores()[0].connection_state(),
        Some(&ConnectionStateType::Connected)
    );

    // The database holds a reference to the HSM object, never material: the
    // plaintext data key is nowhere in the data dir.
    let secret = dk.plaintext().unwrap().as_ref().to_vec();
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_slice()),
            "a data key's plaintext reached the data dir"
        );
    }
}

/// Keys of other specs in the custom key store: generated in SoftHSM2,
/// signing and MACs in the token, Verify and VerifyMac over the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_asymmetric_and_hmac_keys_through_the_aws_api() {
    use aws_sdk_kms::types::{
        KeySpec, KeyUsageType, MacAlgorithmSpec, MessageType, SigningAlgorithmSpec,
    };

    let tmp = tempfile::tempdir().unwrap();
    let conf = softhsm::token(tmp.path(), "kw-e2e-specs", "1234");
    let config = tmp.path().join("keywarden.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[custom_key_stores]]
id = "cks-specs"
name = "softhsm-specs"
module = "{MODULE}"
token_label = "kw-e2e-specs"
pin_env = "KW_E2E_HSM_PIN"
sessions = 2
"#
        ),
    )
    .unwrap();
    let server = Server::start_opts(
        common::BIN,
        &tmp.path().join("data"),
        tmp.path().join("server.log"),
        Options::new()
            .args(&["--config", config.to_str().unwrap()])
            .env("SOFTHSM2_CONF", &conf)
            .env("KW_E2E_HSM_PIN", "1234"),
    );
    let acct = server.account("tenant");
    let kms = server.client(&acct);

    let create = |spec: KeySpec, usage: KeyUsageType| {
        kms.create_key()
            .origin(OriginType::AwsCloudhsm)
            .custom_key_store_id("cks-specs")
            .key_spec(spec)
            .key_usage(usage)
            .send()
    };

    // Signing keys: RSA and ECDSA, signed in the token, verified by the
    // server on the stored public key, and by aws-lc-rs on GetPublicKey's.
    let message = b"signed by the HSM".to_vec();
    for (spec, algorithm, verifier) in [
        (
            KeySpec::Rsa2048,
            SigningAlgorithmSpec::RsassaPssSha256,
            &aws_lc_rs::signature::RSA_PSS_2048_8192_SHA256
                as &dyn aws_lc_rs::signature::VerificationAlgorithm,
        ),
        (
            KeySpec::EccNistP256,
            SigningAlgorithmSpec::EcdsaSha256,
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        ),
    ] {
        let meta = create(spec.clone(), KeyUsageType::SignVerify)
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        let key = meta.key_id().to_owned();
        let described = kms
            .describe_key()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .key_metadata
            .unwrap();
        assert_eq!(described.origin(), Some(&OriginType::AwsCloudhsm));
        assert_eq!(described.custom_key_store_id(), Some("cks-specs"));
        assert_eq!(described.key_spec(), Some(&spec));
        assert!(described.signing_algorithms().contains(&algorithm));

        let signature = kms
            .sign()
            .key_id(&key)
            .message(Blob::new(message.clone()))
            .message_type(MessageType::Raw)
            .signing_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap()
            .signature
            .unwrap();
        let verified = kms
            .verify()
            .key_id(&key)
            .message(Blob::new(message.clone()))
            .message_type(MessageType::Raw)
            .signature(signature.clone())
            .signing_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap();
        assert!(verified.signature_valid(), "{spec}");
        let public = kms
            .get_public_key()
            .key_id(&key)
            .send()
            .await
            .unwrap()
            .public_key
            .unwrap();
        aws_lc_rs::signature::ParsedPublicKey::new(verifier, public.as_ref())
            .unwrap()
            .verify_sig(&message, signature.as_ref())
            .unwrap();
        let err = kms
            .verify()
            .key_id(&key)
            .message(Blob::new(b"another message".to_vec()))
            .message_type(MessageType::Raw)
            .signature(signature)
            .signing_algorithm(algorithm)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "KMSInvalidSignatureException", "{spec}");
    }

    // An HMAC key: GenerateMac in the token, VerifyMac with C_Verify.
    let key = create(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac)
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id()
        .to_owned();
    let mac = kms
        .generate_mac()
        .key_id(&key)
        .message(Blob::new(b"mac me".to_vec()))
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap()
        .mac
        .unwrap();
    assert_eq!(mac.as_ref().len(), 32);
    let ok = kms
        .verify_mac()
        .key_id(&key)
        .message(Blob::new(b"mac me".to_vec()))
        .mac(mac.clone())
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap();
    assert!(ok.mac_valid());
    let err = kms
        .verify_mac()
        .key_id(&key)
        .message(Blob::new(b"mac you".to_vec()))
        .mac(mac)
        .mac_algorithm(MacAlgorithmSpec::HmacSha256)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidMacException");

    // A spec the HSM does not keep.
    let err = create(KeySpec::MlDsa65, KeyUsageType::SignVerify)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "UnsupportedOperationException");
    let err = create(KeySpec::EccNistEdwards25519, KeyUsageType::SignVerify)
        .await
        .unwrap_err();
    assert_eq!(code(&err), "UnsupportedOperationException");
}
