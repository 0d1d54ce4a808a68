//! End-to-end key lifecycle: rotation through the official `aws-sdk-kms`,
//! old ciphertexts across rotations and a server restart, and deletion
//! protection (a Keywarden extension) through raw SigV4-signed requests.

use crate::common;

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{IncludeKeyMaterial, RotationType};
use common::{code, raw_post, Server};
use keywarden_core::ciphertext;

/// The key version a ciphertext blob was made with (its header, see
/// `docs/ciphertext-format.md`).
fn version_of(blob: &Blob) -> u32 {
    ciphertext::parse(blob.as_ref()).unwrap().version
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_through_the_sdk_and_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start_in(common::BIN, &data, tmp.path().join("log"));
    let acct = server.account("rotation");
    let kms = server.client(&acct);
    let md = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let key_id = md.key_id().to_owned();
    let arn = md.arn().unwrap().to_owned();

    // Status, enable (default and custom period), disable.
    let st = kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert!(!st.key_rotation_enabled());
    assert_eq!(st.key_id(), Some(arn.as_str()));
    assert_eq!(st.rotation_period_in_days(), None);
    assert!(st.next_rotation_date().is_none());

    kms.enable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let st = kms
        .get_key_rotation_status()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    assert!(st.key_rotation_enabled());
    assert_eq!(st.rotation_period_in_days(), Some(365));
    let next = st.next_rotation_date().unwrap().as_secs_f64();
    let in_a_year = now_secs() + 365.0 * 86_400.0;
    assert!((next - in_a_year).abs() < 120.0, "{next} vs {in_a_year}");
    assert!(st.on_demand_rotation_start_date().is_none());

    kms.enable_key_rotation()
        .key_id(&key_id)
        .rotation_period_in_days(180)
        .send()
        .await
        .unwrap();
    let st = kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(st.rotation_period_in_days(), Some(180));
    for bad in [89, 2561] {
        let err = kms
            .enable_key_rotation()
            .key_id(&key_id)
            .rotation_period_in_days(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "ValidationException", "period {bad}");
    }
    kms.disable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let st = kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert!(!st.key_rotation_enabled());
    assert_eq!(st.rotation_period_in_days(), None);

    // Ten on-demand rotations, a ciphertext before and after each one; the
    // eleventh is over AWS's limit.
    let mut blobs = Vec::new();
    for i in 0..=10u32 {
        let plaintext = format!("made with version {}", i + 1);
        let enc = kms
            .encrypt()
            .key_id(&key_id)
            .plaintext(Blob::new(plaintext.clone().into_bytes()))
            .encryption_context("i", i.to_string())
            .send()
            .await
            .unwrap();
        let blob = enc.ciphertext_blob().unwrap().clone();
        assert_eq!(
            version_of(&blob),
            i + 1,
            "new ciphertexts use the newest version"
        );
        blobs.push((i, plaintext, blob));
        if i < 10 {
            let out = kms
                .rotate_key_on_demand()
                .key_id(&arn)
                .send()
                .await
                .unwrap();
            assert_eq!(out.key_id(), Some(key_id.as_str()));
        }
    }
    let err = kms
        .rotate_key_on_demand()
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "LimitExceededException");

    // GenerateDataKey uses the newest version too.
    let dk = kms
        .generate_data_key()
        .key_id(&key_id)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    assert_eq!(version_of(dk.ciphertext_blob().unwrap()), 11);

    // ReEncrypt to the same key moves an old ciphertext to the newest
    // version: a different blob that still decrypts.
    let (i0, p0, oldest) = &blobs[0];
    let re = kms
        .re_encrypt()
        .ciphertext_blob(oldest.clone())
        .source_encryption_context("i", i0.to_string())
        .destination_key_id(&key_id)
        .destination_encryption_context("i", i0.to_string())
        .send()
        .await
        .unwrap();
    let moved = re.ciphertext_blob().unwrap().clone();
    assert_ne!(moved.as_ref(), oldest.as_ref());
    assert_eq!(version_of(oldest), 1);
    assert_eq!(version_of(&moved), 11);
    let dec = kms
        .decrypt()
        .ciphertext_blob(moved.clone())
        .encryption_context("i", i0.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(dec.plaintext().unwrap().as_ref(), p0.as_bytes());

    // ListKeyRotations: the ten rotations, oldest first, in pages.
    let all = kms
        .list_key_rotations()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert!(!all.truncated());
    let rotations = all.rotations();
    assert_eq!(rotations.len(), 10);
    for r in rotations {
        assert_eq!(r.key_id(), Some(arn.as_str()));
        assert_eq!(r.rotation_type(), Some(&RotationType::OnDemand));
        let date = r.rotation_date().unwrap().as_secs_f64();
        assert!((date - now_secs()).abs() < 300.0, "{date}");
    }
    let mut paged = 0;
    let mut marker: Option<String> = None;
    loop {
        let page = kms
            .list_key_rotations()
            .key_id(&key_id)
            .limit(3)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        assert!(page.rotations().len() <= 3);
        paged += page.rotations().len();
        if !page.truncated() {
            assert!(page.next_marker().is_none());
            break;
        }
        marker = Some(page.next_marker().unwrap().to_owned());
    }
    assert_eq!(paged, 10);
    let with_initial = kms
        .list_key_rotations()
        .key_id(&key_id)
        .include_key_material(IncludeKeyMaterial::AllKeyMaterial)
        .send()
        .await
        .unwrap();
    assert_eq!(with_initial.rotations().len(), 11);
    assert!(with_initial.rotations()[0].rotation_type().is_none());
    let err = kms
        .list_key_rotations()
        .key_id(&key_id)
        .marker("not-a-marker-we-issued")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "InvalidMarkerException");

    // State rules: disabled → DisabledException; rotation status unchanged.
    kms.enable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    kms.disable_key().key_id(&key_id).send().await.unwrap();
    let err = kms
        .enable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
    let err = kms
        .disable_key_rotation()
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
    let err = kms
        .rotate_key_on_demand()
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
    assert!(kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap()
        .key_rotation_enabled());
    kms.enable_key().key_id(&key_id).send().await.unwrap();

    // Pending deletion → KMSInvalidStateException; status reads "off".
    let other = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    kms.schedule_key_deletion()
        .key_id(other.key_id())
        .send()
        .await
        .unwrap();
    for err in [
        code(
            &kms.enable_key_rotation()
                .key_id(other.key_id())
                .send()
                .await
                .unwrap_err(),
        ),
        code(
            &kms.rotate_key_on_demand()
                .key_id(other.key_id())
                .send()
                .await
                .unwrap_err(),
        ),
    ] {
        assert_eq!(err, "KMSInvalidStateException");
    }

    // Every ciphertext survives a restart, and the rotations with them.
    assert!(server.stop().success(), "graceful shutdown exits 0");
    let server = Server::start_in(common::BIN, &data, tmp.path().join("log"));
    let kms = server.client(&acct);
    for (i, plaintext, blob) in blobs.iter().chain([&(*i0, p0.clone(), moved)]) {
        let dec = kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .encryption_context("i", i.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(dec.plaintext().unwrap().as_ref(), plaintext.as_bytes());
    }
    let after = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"after restart".to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(version_of(after.ciphertext_blob().unwrap()), 11);
    let listed = kms
        .list_key_rotations()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.rotations().len(), 10);
    let st = kms
        .get_key_rotation_status()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert!(st.key_rotation_enabled());
    assert_eq!(st.rotation_period_in_days(), Some(365));
    let err = kms
        .rotate_key_on_demand()
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "LimitExceededException", "the count persists");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_protection_through_raw_requests() {
    let server = Server::start(common::BIN);
    let acct = server.account("protected");
    let kms = server.client(&acct);
    let key_id = kms
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    let body = serde_json::json!({ "KeyId": key_id }).to_string();
    let post = |target: &'static str, body: String| {
        let url = server.url.clone();
        let acct = acct.clone();
        async move { raw_post(&url, &acct, target, &body).await }
    };
    let describe = || async {
        let r = post("TrentService.DescribeKey", body.clone()).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body["KeyMetadata"]["DeletionProtectionEnabled"].clone()
    };
    assert_eq!(describe().await, false);

    let r = post("KeywardenService.EnableKeyDeletionProtection", body.clone()).await;
    assert_eq!((r.status, &r.body), (200, &serde_json::json!({})));
    assert_eq!(describe().await, true);

    // The SDK sees the dedicated error code (and DescribeKey works as
    // before: it skips the field it does not know).
    let err = kms
        .schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DeletionProtectionEnabledException");
    let message = aws_sdk_kms::error::ProvideErrorMetadata::message(&err)
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("Deletion protection is enabled")
            && message.contains("KeywardenService.DisableKeyDeletionProtection"),
        "{message}"
    );
    let md = kms
        .describe_key()
        .key_id(&key_id)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert!(md.enabled());
    assert!(md.deletion_date().is_none());

    // Each namespace knows only its own operations.
    let r = post("TrentService.EnableKeyDeletionProtection", body.clone()).await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "UnknownOperationException")
    );
    let r = post("KeywardenService.DescribeKey", body.clone()).await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "UnknownOperationException")
    );

    // Bad input changes nothing.
    for (bad, want) in [
        ("{}".to_owned(), "ValidationException"),
        (r#"{"KeyId": 5}"#.to_owned(), "SerializationException"),
        (r#"{"KeyId": "#.to_owned(), "SerializationException"),
        (
            serde_json::json!({ "KeyId": "00000000-0000-4000-8000-000000000000" }).to_string(),
            "NotFoundException",
        ),
    ] {
        let r = post("KeywardenService.DisableKeyDeletionProtection", bad.clone()).await;
        assert_eq!((r.status, r.error_type()), (400, want), "{bad}");
    }
    assert_eq!(describe().await, true);

    // Off again: deletion may be scheduled; a key pending deletion cannot
    // get protection.
    let r = post(
        "KeywardenService.DisableKeyDeletionProtection",
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(describe().await, false);
    kms.schedule_key_deletion()
        .key_id(&key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let r = post("KeywardenService.EnableKeyDeletionProtection", body.clone()).await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "KMSInvalidStateException")
    );
    kms.cancel_key_deletion()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let r = post("KeywardenService.EnableKeyDeletionProtection", body.clone()).await;
    assert_eq!(r.status, 200, "a disabled key can be protected: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_usage_through_the_sdk_flushed_and_kept_across_a_restart() {
    use aws_sdk_kms::operation::RequestId;
    use aws_sdk_kms::types::KeyLastUsageTrackingOperation as Op;

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start_in(common::BIN, &data, tmp.path().join("log"));
    let acct = server.account("usage");
    let kms = server.client(&acct);
    let md = kms.create_key().send().await.unwrap().key_metadata.unwrap();
    let key_id = md.key_id().to_owned();
    let arn = md.arn().unwrap().to_owned();
    let created = md.creation_date().unwrap().as_secs_f64();

    // Never used: KeyLastUsage is an empty object, tracking starts at creation.
    let fresh = kms
        .get_key_last_usage()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.key_id(), Some(arn.as_str()));
    let last = fresh.key_last_usage().expect("an empty KeyLastUsage");
    assert!(last.operation().is_none() && last.timestamp().is_none());
    assert!(last.kms_request_id().is_none() && last.cloud_trail_event_id().is_none());
    let tracking = fresh.tracking_start_date().unwrap().as_secs_f64();
    assert!((tracking - created).abs() < 0.01, "{tracking} vs {created}");
    assert!((fresh.key_creation_date().unwrap().as_secs_f64() - created).abs() < 0.01);

    let before = now_secs();
    let enc = kms
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"used".to_vec()))
        .send()
        .await
        .unwrap();
    let dk = kms
        .generate_data_key_without_plaintext()
        .key_id(&arn)
        .number_of_bytes(16)
        .send()
        .await
        .unwrap();
    let request_id = dk.request_id().expect("x-amzn-RequestId").to_owned();
    assert_ne!(enc.request_id(), Some(request_id.as_str()));

    // The serving node answers at once, before its flush.
    let got = kms.get_key_last_usage().key_id(&arn).send().await.unwrap();
    let last = got.key_last_usage().unwrap();
    assert_eq!(last.operation(), Some(&Op::GenerateDataKeyWithoutPlaintext));
    assert_eq!(last.kms_request_id(), Some(request_id.as_str()));
    let at = last.timestamp().unwrap().as_secs_f64();
    assert!(at >= before - 1.0 && at <= now_secs() + 1.0, "{at}");

    // The principal is an extension field, only seen with a raw request.
    let raw = raw_post(
        &server.url,
        &acct,
        "TrentService.GetKeyLastUsage",
        &format!("{{\"KeyId\": \"{key_id}\"}}"),
    )
    .await;
    assert_eq!(raw.status, 200, "{:?}", raw.body);
    assert_eq!(
        raw.body["KeyLastUsage"]["Principal"],
        acct.access_key_id.as_str()
    );
    assert_eq!(
        raw.body["KeyLastUsage"]["Operation"],
        "GenerateDataKeyWithoutPlaintext"
    );

    // Errors.
    let err = kms
        .get_key_last_usage()
        .key_id("00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
    let other = server.account("usage-other");
    let err = server
        .client(&other)
        .get_key_last_usage()
        .key_id(&key_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        code(&err),
        "NotFoundException",
        "tenants do not see each other's keys"
    );

    // A graceful stop flushes; the restarted server answers from the store.
    assert!(server.stop().success(), "graceful shutdown exits 0");
    let server = Server::start_in(common::BIN, &data, tmp.path().join("log"));
    let kms = server.client(&acct);
    let got = kms
        .get_key_last_usage()
        .key_id(&key_id)
        .send()
        .await
        .unwrap();
    let last = got.key_last_usage().unwrap();
    assert_eq!(last.operation(), Some(&Op::GenerateDataKeyWithoutPlaintext));
    assert_eq!(last.kms_request_id(), Some(request_id.as_str()));
}
