//! Cloud products through `keywarden admin product ...` and the real server:
//! the seed registry, registration, status, product credentials, and what
//! a product may do when it acts for an account.

use crate::common;

use std::time::{Duration, Instant};

use common::{admin_json, product_credential, Server};

/// Polls `list_keys` until it fails with `want` and a message containing
/// `needle` (another process's change reaches the server within 100 ms;
/// allow ten times that).
async fn eventually(client: &aws_sdk_kms::Client, want: &str, needle: &str) -> String {
    use aws_sdk_kms::error::ProvideErrorMetadata;
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match client.list_keys().send().await {
            Err(e)
                if common::code(&e) == want && e.message().unwrap_or_default().contains(needle) =>
            {
                return e.message().unwrap_or_default().to_owned();
            }
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("expected {want} within 1 s, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_registry_and_product_admin() {
    let server = Server::start(common::BIN);

    // The seed products exist from the first open, exactly once.
    let listed = admin_json(&server.admin(&["product", "list"]));
    let products = listed["Products"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = products
        .iter()
        .map(|p| {
            (
                p["ProductCode"].as_str().unwrap().to_owned(),
                p["Class"].as_str().unwrap().to_owned(),
                p["Status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = |c: &str, k: &str| (c.to_owned(), k.to_owned(), "active".to_owned());
    assert_eq!(
        summary,
        vec![
            want("evs", "storage"),
            want("mysql", "database"),
            want("sfs", "storage"),
            want("zos", "storage"),
        ]
    );
    assert_eq!(
        products[0]["Principal"],
        "arn:aws:iam::000000000000:role/keywarden-product/evs"
    );

    // Registration: new, duplicate, malformed code, unknown class.
    let added =
        admin_json(&server.admin(&["product", "add", "--code", "pgsql", "--class", "database"]));
    assert_eq!(added["Class"], "database");
    assert_eq!(added["Status"], "active");
    for bad in [
        &["product", "add", "--code", "pgsql", "--class", "database"][..],
        &["product", "add", "--code", "PG", "--class", "database"],
        &["product", "add", "--code", "x", "--class", "storage"],
        &["product", "add", "--code", "ecs", "--class", "compute"],
        &["product", "disable", "--code", "nope"],
        &["product", "credentials", "create", "--code", "nope"],
    ] {
        assert!(!server.admin(bad).status.success(), "{bad:?} must fail");
    }
    assert_eq!(
        admin_json(&server.admin(&["product", "list"]))["Products"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // Product credentials sit beside account credentials.
    let acct = server.account("tenant");
    let evs = product_credential(&server, "evs");
    let all = admin_json(&server.admin(&["credentials", "list"]));
    let row = all["Credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["AccessKeyId"] == evs.access_key_id.as_str())
        .expect("product credential listed")
        .clone();
    assert_eq!(row["ProductCode"], "evs");
    assert!(row.get("AccountId").is_none());
    let mine = admin_json(&server.admin(&["credentials", "list", "--account", &acct.account_id]));
    assert_eq!(mine["Credentials"].as_array().unwrap().len(), 1);

    // A product acts for the account its key ARN names, for crypto and
    // DescribeKey only, and (default keys aside) may use no key.
    let tenant = server.client(&acct);
    let cmk = tenant
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let cmk_arn = cmk.arn().unwrap().to_owned();
    tenant
        .create_alias()
        .alias_name("alias/disks")
        .target_key_id(cmk.key_id())
        .send()
        .await
        .unwrap();
    let alias_arn = format!("arn:aws:kms:us-east-1:{}:alias/disks", acct.account_id);
    let product = server.client(&evs);
    let mysql = server.client(&product_credential(&server, "mysql"));
    let message = |e: &dyn aws_sdk_kms::error::ProvideErrorMetadata| {
        e.message().unwrap_or_default().to_owned()
    };

    let err = product.list_keys().send().await.unwrap_err();
    assert_eq!(common::code(&err), "AccessDeniedException");
    assert!(message(&err).contains("may not call ListKeys"), "{err:?}");
    let err = product.create_key().send().await.unwrap_err();
    assert_eq!(common::code(&err), "AccessDeniedException");
    for bare in [cmk.key_id(), "alias/disks"] {
        let err = product
            .generate_data_key()
            .key_id(bare)
            .number_of_bytes(32)
            .send()
            .await
            .unwrap_err();
        assert_eq!(common::code(&err), "AccessDeniedException", "{bare}");
        assert!(message(&err).contains("by key ARN or alias ARN"), "{err:?}");
    }
    for arn in [&cmk_arn, &alias_arn] {
        let err = product
            .generate_data_key()
            .key_id(arn)
            .number_of_bytes(32)
            .send()
            .await
            .unwrap_err();
        assert_eq!(common::code(&err), "AccessDeniedException", "{arn}");
        assert!(
            message(&err).contains("storage products can only use their default key"),
            "{err:?}"
        );
        let err = product.describe_key().key_id(arn).send().await.unwrap_err();
        assert_eq!(common::code(&err), "AccessDeniedException", "{arn}");
    }
    let err = mysql
        .encrypt()
        .key_id(&cmk_arn)
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::code(&err), "AccessDeniedException");
    assert!(message(&err).contains("database products"), "{err:?}");

    // A Decrypt naming no key acts for the blob's key's account, and the
    // product rules apply to that key: a CMK's blob is refused as if the
    // product had named the CMK.
    let blob = tenant
        .encrypt()
        .key_id(cmk.key_id())
        .plaintext(aws_sdk_kms::primitives::Blob::new(b"secret".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let err = product
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::code(&err), "AccessDeniedException");
    assert!(
        message(&err).contains("storage products can only use their default key"),
        "{err:?}"
    );
    let err = product
        .decrypt()
        .ciphertext_blob(blob)
        .key_id(&cmk_arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(common::code(&err), "AccessDeniedException");

    // Unknown accounts and other regions are not found.
    let other = acct.account_id.replace(|_: char| true, "9");
    let other = if other == acct.account_id {
        "888888888888".to_owned()
    } else {
        other
    };
    for arn in [
        format!("arn:aws:kms:us-east-1:{other}:key/{}", cmk.key_id()),
        format!(
            "arn:aws:kms:eu-west-1:{}:key/{}",
            acct.account_id,
            cmk.key_id()
        ),
    ] {
        let err = product
            .generate_data_key()
            .key_id(&arn)
            .number_of_bytes(32)
            .send()
            .await
            .unwrap_err();
        assert_eq!(common::code(&err), "NotFoundException", "{arn}");
    }
    // The account's own use is unaffected.
    server.client(&acct).list_keys().send().await.unwrap();

    // Disabling the product is honoured by the running server.
    admin_json(&server.admin(&["product", "disable", "--code", "evs"]));
    let message = eventually(&product, "AccessDeniedException", "disabled").await;
    assert!(message.contains("evs"), "{message}");
    let enabled = admin_json(&server.admin(&["product", "enable", "--code", "evs"]));
    assert_eq!(enabled["Status"], "active");

    // Revoking needs the right product; then the key stops authenticating.
    assert!(!server
        .admin(&[
            "product",
            "credentials",
            "revoke",
            "--code",
            "zos",
            "--access-key-id",
            &evs.access_key_id,
        ])
        .status
        .success());
    assert!(!server
        .admin(&[
            "product",
            "credentials",
            "revoke",
            "--code",
            "evs",
            "--access-key-id",
            &acct.access_key_id,
        ])
        .status
        .success());
    admin_json(&server.admin(&[
        "product",
        "credentials",
        "revoke",
        "--code",
        "evs",
        "--access-key-id",
        &evs.access_key_id,
    ]));
    eventually(&product, "UnrecognizedClientException", "").await;
}
