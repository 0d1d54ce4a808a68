//! Default keys through the real server and aws-sdk-kms: created by a
//! product's first request for an account (exactly once under a race),
//! visible to the account, usable for cryptography only by their product,
//! and closed to every management operation.

use crate::common;

use std::collections::BTreeSet;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeyManagerType, OriginType};
use common::{code, product_credential, raw_post, Server};

fn default_alias_arn(account: &str, product: &str) -> String {
    format!("arn:aws:kms:us-east-1:{account}:alias_{product}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_requests_create_exactly_one_default_key() {
    let server = Server::start(common::BIN);
    let acct = server.account("tenant");
    let evs = server.client(&product_credential(&server, "evs"));
    let alias_arn = default_alias_arn(&acct.account_id, "evs");

    let requests = (0..50).map(|_| {
        let evs = evs.clone();
        let alias_arn = alias_arn.clone();
        tokio::spawn(async move {
            evs.generate_data_key()
                .key_id(alias_arn)
                .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
                .send()
                .await
        })
    });
    let mut key_ids = BTreeSet::new();
    for r in requests {
        let out = r.await.unwrap().expect("every first request succeeds");
        assert_eq!(out.plaintext().unwrap().as_ref().len(), 32);
        key_ids.insert(out.key_id().unwrap().to_owned());
    }
    assert_eq!(
        key_ids.len(),
        1,
        "all 50 requests used one key: {key_ids:?}"
    );
    let key_arn = key_ids.into_iter().next().unwrap();

    // The account sees exactly that one key, with its alias.
    let tenant = server.client(&acct);
    let keys = tenant.list_keys().send().await.unwrap();
    assert_eq!(keys.keys().len(), 1);
    assert_eq!(keys.keys()[0].key_arn(), Some(key_arn.as_str()));
    let aliases = tenant.list_aliases().send().await.unwrap();
    let alias = aliases
        .aliases()
        .iter()
        .find(|a| a.alias_name() == Some("alias_evs"))
        .expect("alias_evs listed");
    assert_eq!(alias.alias_arn(), Some(alias_arn.as_str()));
    assert_eq!(
        Some(alias.target_key_id().unwrap()),
        key_arn.rsplit('/').next()
    );
    let meta = tenant
        .describe_key()
        .key_id("alias_evs")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(meta.arn(), Some(key_arn.as_str()));
    assert_eq!(meta.key_manager(), Some(&KeyManagerType::Aws));
    assert_eq!(meta.origin(), Some(&OriginType::AwsKms));
    assert!(meta.enabled());
    assert!(meta.description().unwrap().contains("evs"), "{meta:?}");
    let rotation = tenant
        .get_key_rotation_status()
        .key_id(&key_arn)
        .send()
        .await
        .unwrap();
    assert!(!rotation.key_rotation_enabled());

    // Later requests, by alias ARN and by key ARN, reuse it.
    let again = evs
        .encrypt()
        .key_id(&alias_arn)
        .plaintext(Blob::new(b"block 7".to_vec()))
        .encryption_context("volume", "vol-1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.key_id(), Some(key_arn.as_str()));
    let back = evs
        .decrypt()
        .key_id(&key_arn)
        .ciphertext_blob(again.ciphertext_blob().unwrap().clone())
        .encryption_context("volume", "vol-1")
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), b"block 7");
    assert_eq!(tenant.list_keys().send().await.unwrap().keys().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_keys_are_their_products_alone() {
    let server = Server::start(common::BIN);
    let acct = server.account("tenant");
    let second = server.account("second");
    let evs = server.client(&product_credential(&server, "evs"));
    let zos = server.client(&product_credential(&server, "zos"));
    let mysql = server.client(&product_credential(&server, "mysql"));
    let tenant = server.client(&acct);

    let evs_arn = default_alias_arn(&acct.account_id, "evs");
    let blob = evs
        .encrypt()
        .key_id(&evs_arn)
        .plaintext(Blob::new(b"evs data".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();

    // Another product cannot reach evs's default key, by alias or key ARN.
    let evs_key_arn = tenant
        .describe_key()
        .key_id("alias_evs")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    for key in [&evs_arn, &evs_key_arn] {
        let err = zos
            .decrypt()
            .key_id(key)
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException", "{key}");
        assert!(
            err.message()
                .unwrap()
                .contains("only use its own default key"),
            "{err:?}"
        );
        let err = zos.describe_key().key_id(key).send().await.unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException", "{key}");
    }
    // Each product has its own; a database product too.
    for (client, product) in [(&zos, "zos"), (&mysql, "mysql")] {
        let out = client
            .generate_data_key_without_plaintext()
            .key_id(default_alias_arn(&acct.account_id, product))
            .number_of_bytes(32)
            .send()
            .await
            .unwrap();
        assert_ne!(out.key_id(), Some(evs_key_arn.as_str()));
    }
    assert_eq!(tenant.list_keys().send().await.unwrap().keys().len(), 3);

    // The same product in another account gets another key; the first
    // account's blob does not open there.
    let other_arn = default_alias_arn(&second.account_id, "evs");
    let err = evs
        .decrypt()
        .key_id(&other_arn)
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "IncorrectKeyException");
    let second_keys = server.client(&second).list_keys().send().await.unwrap();
    assert_eq!(second_keys.keys().len(), 1);
    assert_ne!(second_keys.keys()[0].key_arn(), Some(evs_key_arn.as_str()));

    // A product may not name another product's alias, even to create it;
    // the answer does not tell whether that key exists (issue 17).
    let err = evs
        .generate_data_key()
        .key_id(default_alias_arn(&second.account_id, "sfs"))
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    assert_eq!(
        server
            .client(&second)
            .list_keys()
            .send()
            .await
            .unwrap()
            .keys()
            .len(),
        1
    );

    // An account that does not exist gets no default key.
    let err = evs
        .generate_data_key()
        .key_id(default_alias_arn("123456789012", "evs"))
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");

    // The account itself cannot use the default key for cryptography.
    for key in ["alias_evs", evs_key_arn.as_str()] {
        let err = tenant
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException", "{key}");
        assert!(
            err.message()
                .unwrap()
                .contains("default key of product evs"),
            "{err:?}"
        );
        let err = tenant
            .generate_data_key()
            .key_id(key)
            .number_of_bytes(32)
            .send()
            .await
            .unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException", "{key}");
    }
    let err = tenant
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    let cmk = tenant
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let err = tenant
        .re_encrypt()
        .ciphertext_blob(blob)
        .destination_key_id(cmk.key_id())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
}

/// Every management operation on a default key is refused with
/// UnsupportedOperationException and a message saying why; the key is
/// unchanged afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_cannot_manage_a_default_key() {
    let server = Server::start(common::BIN);
    let acct = server.account("tenant");
    let evs = server.client(&product_credential(&server, "evs"));
    let tenant = server.client(&acct);
    evs.generate_data_key()
        .key_id(default_alias_arn(&acct.account_id, "evs"))
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let before = tenant
        .describe_key()
        .key_id("alias_evs")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let id = before.key_id().to_owned();

    fn refused<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
        what: &str,
        result: Result<impl std::fmt::Debug, aws_sdk_kms::error::SdkError<E, R>>,
    ) {
        let err = result.expect_err(what);
        assert_eq!(
            code(&err),
            "UnsupportedOperationException",
            "{what}: {err:?}"
        );
        let message = err.message().unwrap_or_default();
        assert!(
            message.contains("default key") && message.contains(what),
            "{what}: {message}"
        );
    }
    refused("EnableKey", tenant.enable_key().key_id(&id).send().await);
    refused("DisableKey", tenant.disable_key().key_id(&id).send().await);
    refused(
        "ScheduleKeyDeletion",
        tenant
            .schedule_key_deletion()
            .key_id(&id)
            .pending_window_in_days(7)
            .send()
            .await,
    );
    refused(
        "CancelKeyDeletion",
        tenant.cancel_key_deletion().key_id(&id).send().await,
    );
    refused(
        "UpdateKeyDescription",
        tenant
            .update_key_description()
            .key_id(&id)
            .description("mine now")
            .send()
            .await,
    );
    refused(
        "EnableKeyRotation",
        tenant.enable_key_rotation().key_id(&id).send().await,
    );
    refused(
        "DisableKeyRotation",
        tenant.disable_key_rotation().key_id(&id).send().await,
    );
    refused(
        "RotateKeyOnDemand",
        tenant.rotate_key_on_demand().key_id(&id).send().await,
    );
    refused(
        "GetParametersForImport",
        tenant
            .get_parameters_for_import()
            .key_id(&id)
            .wrapping_algorithm(aws_sdk_kms::types::AlgorithmSpec::RsaesOaepSha256)
            .wrapping_key_spec(aws_sdk_kms::types::WrappingKeySpec::Rsa2048)
            .send()
            .await,
    );
    refused(
        "ImportKeyMaterial",
        tenant
            .import_key_material()
            .key_id(&id)
            .import_token(Blob::new(vec![1; 64]))
            .encrypted_key_material(Blob::new(vec![2; 256]))
            .expiration_model(aws_sdk_kms::types::ExpirationModelType::KeyMaterialDoesNotExpire)
            .send()
            .await,
    );
    refused(
        "DeleteImportedKeyMaterial",
        tenant
            .delete_imported_key_material()
            .key_id(&id)
            .send()
            .await,
    );
    refused(
        "TagResource",
        tenant
            .tag_resource()
            .key_id(&id)
            .tags(
                aws_sdk_kms::types::Tag::builder()
                    .tag_key("team")
                    .tag_value("a")
                    .build()
                    .unwrap(),
            )
            .send()
            .await,
    );
    refused(
        "UntagResource",
        tenant
            .untag_resource()
            .key_id(&id)
            .tag_keys("team")
            .send()
            .await,
    );
    refused(
        "CreateAlias",
        tenant
            .create_alias()
            .alias_name("alias/mine")
            .target_key_id(&id)
            .send()
            .await,
    );
    let cmk = tenant
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    tenant
        .create_alias()
        .alias_name("alias/mine")
        .target_key_id(cmk.key_id())
        .send()
        .await
        .unwrap();
    refused(
        "UpdateAlias",
        tenant
            .update_alias()
            .alias_name("alias/mine")
            .target_key_id(&id)
            .send()
            .await,
    );
    for (target, op) in [
        (
            "KeywardenService.EnableKeyDeletionProtection",
            "EnableKeyDeletionProtection",
        ),
        (
            "KeywardenService.DisableKeyDeletionProtection",
            "DisableKeyDeletionProtection",
        ),
    ] {
        let raw = raw_post(
            &server.url,
            &acct,
            target,
            &format!(r#"{{"KeyId":"{id}"}}"#),
        )
        .await;
        assert_eq!(raw.status, 400, "{op}: {raw:?}");
        assert_eq!(raw.error_type(), "UnsupportedOperationException", "{op}");
        assert!(
            raw.body["message"].as_str().unwrap().contains(op),
            "{raw:?}"
        );
    }

    // The `alias_` names are the system's: users can neither create,
    // re-point nor delete them.
    for result in [
        tenant
            .create_alias()
            .alias_name("alias_zos")
            .target_key_id(cmk.key_id())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.into_service_error().meta().clone()),
        tenant
            .update_alias()
            .alias_name("alias_evs")
            .target_key_id(cmk.key_id())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.into_service_error().meta().clone()),
        tenant
            .delete_alias()
            .alias_name("alias_evs")
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.into_service_error().meta().clone()),
    ] {
        let err = result.expect_err("alias_ names are reserved");
        assert_eq!(err.code(), Some("InvalidAliasNameException"), "{err:?}");
        assert!(err.message().unwrap().contains("reserved"), "{err:?}");
    }

    // Nothing changed.
    let after = tenant
        .describe_key()
        .key_id("alias_evs")
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(after, before);
    let tags = tenant
        .list_resource_tags()
        .key_id(&id)
        .send()
        .await
        .unwrap();
    assert!(tags.tags().is_empty());
    let aliases = tenant.list_aliases().key_id(&id).send().await.unwrap();
    let names: Vec<_> = aliases
        .aliases()
        .iter()
        .filter_map(|a| a.alias_name())
        .collect();
    assert_eq!(names, ["alias_evs"]);
    // The product still uses it.
    evs.encrypt()
        .key_id(default_alias_arn(&acct.account_id, "evs"))
        .plaintext(Blob::new(b"still fine".to_vec()))
        .send()
        .await
        .unwrap();
}
