//! Grants through the real server and aws-sdk-kms: an account grants its
//! CMK to a database product, which then uses it within the grant's
//! operations and constraints, until the key is disabled, scheduled for
//! deletion, or the grant is revoked or retired. Storage products never use
//! a CMK, granted or not.

use crate::common;

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{GrantConstraints, GrantOperation};
use common::{admin_json, code, product_credential, raw_post, Server};

fn principal(code: &str) -> String {
    format!("arn:aws:iam::000000000000:role/keywarden-product/{code}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_product_uses_a_granted_cmk_until_the_grant_or_key_stops_it() {
    let server = Server::start(common::BIN);
    let acct = server.account("tenant");
    let tenant = server.client(&acct);
    let mysql = server.client(&product_credential(&server, "mysql"));
    let evs = server.client(&product_credential(&server, "evs"));
    admin_json(&server.admin(&["product", "add", "--code", "pgsql", "--class", "database"]));
    let pgsql = server.client(&product_credential(&server, "pgsql"));

    let cmk = tenant
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let arn = cmk.arn().unwrap().to_owned();

    // Before any grant, the database product is refused the CMK.
    let err = mysql
        .generate_data_key()
        .key_id(&arn)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(err.message().unwrap().contains("has no grant"), "{err:?}");

    let granted = tenant
        .create_grant()
        .key_id(cmk.key_id())
        .grantee_principal(principal("mysql"))
        .retiring_principal(principal("mysql"))
        .operations(GrantOperation::GenerateDataKey)
        .operations(GrantOperation::Decrypt)
        .operations(GrantOperation::DescribeKey)
        .name("orders-db")
        .send()
        .await
        .unwrap();
    let grant_id = granted.grant_id().unwrap().to_owned();
    assert_eq!(grant_id.len(), 64);
    assert!(grant_id.bytes().all(|b| b.is_ascii_hexdigit()));
    let token = granted.grant_token().unwrap().to_owned();

    // Same name and parameters: the same grant (AWS's idempotence).
    let again = tenant
        .create_grant()
        .key_id(&arn)
        .grantee_principal(principal("mysql"))
        .retiring_principal(principal("mysql"))
        .operations(GrantOperation::Decrypt)
        .operations(GrantOperation::DescribeKey)
        .operations(GrantOperation::GenerateDataKey)
        .name("orders-db")
        .send()
        .await
        .unwrap();
    assert_eq!(again.grant_id(), Some(grant_id.as_str()));

    let listed = tenant.list_grants().key_id(&arn).send().await.unwrap();
    assert_eq!(listed.grants().len(), 1);
    let entry = &listed.grants()[0];
    assert_eq!(entry.key_id(), Some(arn.as_str()));
    assert_eq!(entry.grant_id(), Some(grant_id.as_str()));
    assert_eq!(entry.name(), Some("orders-db"));
    assert_eq!(entry.grantee_principal(), Some(principal("mysql").as_str()));
    assert_eq!(
        entry.issuing_account(),
        Some(format!("arn:aws:iam::{}:root", acct.account_id).as_str())
    );
    assert_eq!(
        entry.operations(),
        [
            GrantOperation::GenerateDataKey,
            GrantOperation::Decrypt,
            GrantOperation::DescribeKey
        ]
    );
    assert!(entry.creation_date().is_some());
    assert!(!listed.truncated());

    // The product uses the CMK for what the grant allows, and only that.
    let dk = mysql
        .generate_data_key()
        .key_id(&arn)
        .number_of_bytes(32)
        .encryption_context("db", "orders")
        .grant_tokens(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(dk.key_id(), Some(arn.as_str()));
    let blob = dk.ciphertext_blob().unwrap().clone();
    let back = mysql
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob.clone())
        .encryption_context("db", "orders")
        .send()
        .await
        .unwrap();
    assert_eq!(
        back.plaintext().unwrap().as_ref(),
        dk.plaintext().unwrap().as_ref()
    );
    mysql.describe_key().key_id(&arn).send().await.unwrap();
    let err = mysql
        .encrypt()
        .key_id(&arn)
        .plaintext(Blob::new(b"not granted".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(err.message().unwrap().contains("Encrypt"), "{err:?}");

    // Another database product has no grant; a storage product may not use
    // a CMK even with one.
    let err = pgsql
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob.clone())
        .encryption_context("db", "orders")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    tenant
        .create_grant()
        .key_id(&arn)
        .grantee_principal(principal("evs"))
        .operations(GrantOperation::GenerateDataKey)
        .send()
        .await
        .unwrap();
    let err = evs
        .generate_data_key()
        .key_id(&arn)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    assert!(
        err.message()
            .unwrap()
            .contains("storage products can only use their default key"),
        "{err:?}"
    );

    // Disabled: the matching AWS error, and back when enabled.
    tenant.disable_key().key_id(&arn).send().await.unwrap();
    let err = mysql
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob.clone())
        .encryption_context("db", "orders")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "DisabledException");
    tenant.enable_key().key_id(&arn).send().await.unwrap();
    // Pending deletion: KMSInvalidStateException; after cancelling (which
    // leaves the key disabled, as in AWS) and enabling, the data is intact.
    tenant
        .schedule_key_deletion()
        .key_id(&arn)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let err = mysql
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob.clone())
        .encryption_context("db", "orders")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "KMSInvalidStateException");
    tenant
        .cancel_key_deletion()
        .key_id(&arn)
        .send()
        .await
        .unwrap();
    tenant.enable_key().key_id(&arn).send().await.unwrap();
    let back = mysql
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob.clone())
        .encryption_context("db", "orders")
        .send()
        .await
        .unwrap();
    assert_eq!(
        back.plaintext().unwrap().as_ref(),
        dk.plaintext().unwrap().as_ref()
    );

    // Revocation stops the product at once (the grant is cached by the
    // server; revoking invalidates it).
    let retirable = tenant
        .list_retirable_grants()
        .retiring_principal(principal("mysql"))
        .send()
        .await
        .unwrap();
    assert_eq!(retirable.grants().len(), 1);
    tenant
        .revoke_grant()
        .key_id(&arn)
        .grant_id(&grant_id)
        .send()
        .await
        .unwrap();
    let err = mysql
        .decrypt()
        .key_id(&arn)
        .ciphertext_blob(blob.clone())
        .encryption_context("db", "orders")
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    let err = tenant
        .revoke_grant()
        .key_id(&arn)
        .grant_id(&grant_id)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");

    // The product's data is untouched: the account can still decrypt it.
    let own = tenant
        .decrypt()
        .ciphertext_blob(blob)
        .encryption_context("db", "orders")
        .send()
        .await
        .unwrap();
    assert_eq!(
        own.plaintext().unwrap().as_ref(),
        dk.plaintext().unwrap().as_ref()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_and_retiring() {
    let server = Server::start(common::BIN);
    let acct = server.account("tenant");
    let tenant = server.client(&acct);
    let mysql_account = product_credential(&server, "mysql");
    let mysql = server.client(&mysql_account);
    let cmk = tenant
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let arn = cmk.arn().unwrap().to_owned();

    let subset = tenant
        .create_grant()
        .key_id(&arn)
        .grantee_principal(principal("mysql"))
        .operations(GrantOperation::Encrypt)
        .constraints(
            GrantConstraints::builder()
                .encryption_context_subset("db", "orders")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let encrypt = |pairs: &[(&str, &str)]| {
        let mut req = mysql
            .encrypt()
            .key_id(&arn)
            .plaintext(Blob::new(b"row".to_vec()));
        for (k, v) in pairs {
            req = req.encryption_context(*k, *v);
        }
        req.send()
    };
    encrypt(&[("db", "orders")]).await.unwrap();
    encrypt(&[("db", "orders"), ("table", "t1")]).await.unwrap();
    // Keys compare without regard to case, values exactly.
    encrypt(&[("DB", "orders")]).await.unwrap();
    for bad in [&[("db", "Orders")][..], &[("db", "other")], &[]] {
        let err = encrypt(bad).await.unwrap_err();
        assert_eq!(code(&err), "AccessDeniedException", "{bad:?}");
    }
    // EncryptionContextEquals: exactly those pairs.
    let equals = tenant
        .create_grant()
        .key_id(&arn)
        .grantee_principal(principal("mysql"))
        .operations(GrantOperation::GenerateDataKeyWithoutPlaintext)
        .constraints(
            GrantConstraints::builder()
                .encryption_context_equals("db", "orders")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let gdk = |pairs: &[(&str, &str)]| {
        let mut req = mysql
            .generate_data_key_without_plaintext()
            .key_id(&arn)
            .number_of_bytes(16);
        for (k, v) in pairs {
            req = req.encryption_context(*k, *v);
        }
        req.send()
    };
    gdk(&[("db", "orders")]).await.unwrap();
    let err = gdk(&[("db", "orders"), ("table", "t1")]).await.unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");

    // Retiring: the product is neither retiring principal nor allowed to
    // retire these, so it may not; the account may.
    let err = mysql
        .retire_grant()
        .grant_token(subset.grant_token().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");
    tenant
        .retire_grant()
        .key_id(&arn)
        .grant_id(subset.grant_id().unwrap())
        .send()
        .await
        .unwrap();
    let err = encrypt(&[("db", "orders")]).await.unwrap_err();
    assert_eq!(code(&err), "AccessDeniedException");

    // A grant whose retiring principal is the product: it retires it by
    // token (the token names the account and key), then loses access.
    let own = tenant
        .create_grant()
        .key_id(&arn)
        .grantee_principal(principal("mysql"))
        .retiring_principal(principal("mysql"))
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    mysql
        .retire_grant()
        .grant_token(own.grant_token().unwrap())
        .send()
        .await
        .unwrap();
    // A grantee allowed RetireGrant retires by key ARN and id.
    let self_retiring = tenant
        .create_grant()
        .key_id(&arn)
        .grantee_principal(principal("mysql"))
        .operations(GrantOperation::RetireGrant)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    mysql
        .retire_grant()
        .key_id(&arn)
        .grant_id(self_retiring.grant_id().unwrap())
        .send()
        .await
        .unwrap();
    let left: Vec<String> = tenant
        .list_grants()
        .key_id(&arn)
        .send()
        .await
        .unwrap()
        .grants()
        .iter()
        .filter_map(|g| g.grant_id().map(str::to_owned))
        .collect();
    assert_eq!(left, [equals.grant_id().unwrap().to_owned()]);

    // Pagination and the grantee filter of ListGrants.
    for _ in 0..3 {
        tenant
            .create_grant()
            .key_id(&arn)
            .grantee_principal("arn:aws:iam::111122223333:role/reader")
            .operations(GrantOperation::Decrypt)
            .send()
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = tenant
            .list_grants()
            .key_id(&arn)
            .limit(2)
            .set_marker(marker.clone())
            .send()
            .await
            .unwrap();
        seen.extend(
            page.grants()
                .iter()
                .map(|g| g.grant_id().unwrap().to_owned()),
        );
        if !page.truncated() {
            break;
        }
        marker = page.next_marker().map(str::to_owned);
    }
    assert_eq!(seen.len(), 4);
    let readers = tenant
        .list_grants()
        .key_id(&arn)
        .grantee_principal("arn:aws:iam::111122223333:role/reader")
        .send()
        .await
        .unwrap();
    assert_eq!(readers.grants().len(), 3);
    let one = tenant
        .list_grants()
        .key_id(&arn)
        .grant_id(equals.grant_id().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(one.grants().len(), 1);
    let c = one.grants()[0].constraints().unwrap();
    assert_eq!(
        c.encryption_context_equals()
            .unwrap()
            .get("db")
            .map(String::as_str),
        Some("orders")
    );
    assert!(c.encryption_context_subset().is_none());

    // Grants of one account are nothing to another account.
    let other = server.account("other");
    let err = server
        .client(&other)
        .list_grants()
        .key_id(&arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
    let err = server
        .client(&other)
        .retire_grant()
        .grant_token(equals.grant_token().unwrap())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "NotFoundException");
    drop(mysql_account);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_operations_answer_bad_input_with_aws_errors() {
    let server = Server::start(common::BIN);
    let acct = server.account("tenant");
    let tenant = server.client(&acct);
    let cmk = tenant
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let id = cmk.key_id().to_owned();
    let post = |target: &'static str, body: String| {
        let url = server.url.clone();
        let acct = acct.clone();
        async move { raw_post(&url, &acct, &format!("TrentService.{target}"), &body).await }
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "CreateGrant",
            format!(r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":["Fly"]}}"#),
            "ValidationException",
            "enum value set",
        ),
        (
            "CreateGrant",
            format!(r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":[]}}"#),
            "ValidationException",
            "operations",
        ),
        (
            "CreateGrant",
            format!(r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":["Sign"]}}"#),
            "ValidationException",
            "KeySpec SYMMETRIC_DEFAULT",
        ),
        (
            "CreateGrant",
            format!(r#"{{"KeyId":"{id}","Operations":["Decrypt"]}}"#),
            "ValidationException",
            "granteePrincipal",
        ),
        (
            "CreateGrant",
            format!(
                r#"{{"KeyId":"{id}","GranteePrincipal":"has space","Operations":["Decrypt"]}}"#
            ),
            "ValidationException",
            "granteePrincipal",
        ),
        (
            "CreateGrant",
            format!(
                r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":["Decrypt"],"Name":"no spaces"}}"#
            ),
            "ValidationException",
            "name",
        ),
        (
            "CreateGrant",
            format!(
                r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":["Decrypt"],"Constraints":{{"EncryptionContextSubset":{{"a":1}}}}}}"#
            ),
            "SerializationException",
            "",
        ),
        (
            "CreateGrant",
            format!(
                r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":["Decrypt"],"GrantTokens":["a","b","c","d","e","f","g","h","i","j","k"]}}"#
            ),
            "ValidationException",
            "grantTokens",
        ),
        (
            "CreateGrant",
            format!(
                r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":["Decrypt"],"Constraints":{{"EncryptionContextEquals":{{"tenant":"x","TENANT":"x"}}}}}}"#
            ),
            "ValidationException",
            "differ only by case",
        ),
        (
            "CreateGrant",
            format!(r#"{{"KeyId":"{id}","GranteePrincipal":"rôle","Operations":["Decrypt"]}}"#),
            "ValidationException",
            "granteePrincipal",
        ),
        (
            "CreateGrant",
            r#"{"KeyId":"alias/none","GranteePrincipal":"p","Operations":["Decrypt"]}"#.into(),
            "NotFoundException",
            "",
        ),
        (
            "ListGrants",
            format!(r#"{{"KeyId":"{id}","Limit":101}}"#),
            "ValidationException",
            "limit",
        ),
        (
            "ListGrants",
            format!(r#"{{"KeyId":"{id}","Marker":"not-a-marker"}}"#),
            "InvalidMarkerException",
            "",
        ),
        (
            "ListGrants",
            format!(r#"{{"KeyId":"{id}","GrantId":"xyz"}}"#),
            "InvalidGrantIdException",
            "",
        ),
        (
            "ListRetirableGrants",
            "{}".into(),
            "ValidationException",
            "retiringPrincipal",
        ),
        (
            "RevokeGrant",
            format!(r#"{{"KeyId":"{id}","GrantId":"1234"}}"#),
            "InvalidGrantIdException",
            "",
        ),
        (
            "RevokeGrant",
            format!(r#"{{"KeyId":"{id}","GrantId":"{}"}}"#, "ab".repeat(32)),
            "NotFoundException",
            "not found",
        ),
        (
            "RetireGrant",
            r#"{"GrantToken":"garbage"}"#.into(),
            "InvalidGrantTokenException",
            "",
        ),
        (
            "RetireGrant",
            format!(r#"{{"KeyId":"{id}"}}"#),
            "ValidationException",
            "GrantToken",
        ),
    ];
    for (op, body, want, needle) in cases {
        let raw = post(op, body.clone()).await;
        assert_eq!(raw.status, 400, "{op} {body}: {raw:?}");
        assert_eq!(raw.error_type(), want, "{op} {body}: {raw:?}");
        assert!(
            raw.body["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{op} {body}: {raw:?}"
        );
    }

    // DryRun creates nothing.
    let raw = post(
        "CreateGrant",
        format!(
            r#"{{"KeyId":"{id}","GranteePrincipal":"p","Operations":["Decrypt"],"DryRun":true}}"#
        ),
    )
    .await;
    assert_eq!(raw.error_type(), "DryRunOperationException");
    assert!(tenant
        .list_grants()
        .key_id(&id)
        .send()
        .await
        .unwrap()
        .grants()
        .is_empty());

    // Default keys take no grants.
    let evs = server.client(&product_credential(&server, "evs"));
    evs.generate_data_key()
        .key_id(format!(
            "arn:aws:kms:us-east-1:{}:alias_evs",
            acct.account_id
        ))
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let err = tenant
        .create_grant()
        .key_id("alias_evs")
        .grantee_principal(principal("mysql"))
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "UnsupportedOperationException");
    assert!(err.message().unwrap().contains("default key"), "{err:?}");
    let err = tenant
        .revoke_grant()
        .key_id("alias_evs")
        .grant_id("ab".repeat(32))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err), "UnsupportedOperationException");
    // Products cannot create or revoke grants.
    for target in ["TrentService.CreateGrant", "TrentService.RevokeGrant"] {
        let raw = raw_post(
            &server.url,
            &product_credential(&server, "mysql"),
            target,
            &format!(
                r#"{{"KeyId":"{}","GranteePrincipal":"p","Operations":["Decrypt"],"GrantId":"{}"}}"#,
                cmk.arn().unwrap(),
                "ab".repeat(32)
            ),
        )
        .await;
        assert_eq!(raw.error_type(), "AccessDeniedException", "{target}");
    }
}

/// Two servers on one data dir (two processes, as two nodes would be): a
/// grant revoked through one stops the product on the other within the
/// cache refresh period (100 ms; allow ten times that), although the other
/// had the grant cached from a request just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_through_one_server_reaches_another() {
    use std::time::{Duration, Instant};

    let first = Server::start(common::BIN);
    // Each process writes its own audit file (one writer per file).
    let config = first.data_dir.with_extension("second.toml");
    let audit = first.data_dir.with_extension("second-audit.log");
    std::fs::write(
        &config,
        format!(
            "[audit]\npath = {}\n",
            serde_json::Value::from(audit.to_str().unwrap())
        ),
    )
    .unwrap();
    let second = Server::start_with(
        common::BIN,
        &first.data_dir,
        first.log.with_extension("second.log"),
        &["--config", config.to_str().unwrap()],
    );
    let acct = first.account("tenant");
    let mysql_account = product_credential(&first, "mysql");
    let tenant = first.client(&acct);
    let cmk = tenant
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    let arn = cmk.arn().unwrap().to_owned();
    let grant = tenant
        .create_grant()
        .key_id(&arn)
        .grantee_principal(principal("mysql"))
        .operations(GrantOperation::GenerateDataKey)
        .send()
        .await
        .unwrap();
    let mysql_on_second = second.client(&mysql_account);
    let use_key = || {
        mysql_on_second
            .generate_data_key()
            .key_id(&arn)
            .number_of_bytes(32)
            .send()
    };
    // The second server learns of the grant (a change elsewhere) and caches it.
    let deadline = Instant::now() + Duration::from_secs(1);
    while use_key().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "grant not visible on the second server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    use_key().await.unwrap();

    tenant
        .revoke_grant()
        .key_id(&arn)
        .grant_id(grant.grant_id().unwrap())
        .send()
        .await
        .unwrap();
    let revoked_at = Instant::now();
    loop {
        match use_key().await {
            Err(e) if code(&e) == "AccessDeniedException" => break,
            Ok(_) if revoked_at.elapsed() < Duration::from_secs(1) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => panic!("revocation not honoured by the second server within 1 s: {other:?}"),
        }
    }
}
