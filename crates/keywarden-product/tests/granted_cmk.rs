//! The product library end to end with a customer managed key granted to a
//! database product: the real `keywarden` server (port 0, fresh data dir),
//! an account and `mysql`/`zos` product credentials made with
//! `keywarden admin`, the account's own aws-sdk-kms client creating the CMK
//! and the grants, and `ProductClient` sealing and opening with the CMK's
//! ARN. Checks the round trip, that a storage product is refused the CMK
//! even with a grant, that disabling the key stops `open` until it is
//! enabled again, and that revoking the grant stops it at once.
//!
//! Needs `target/debug/keywarden`: run `cargo build --bin keywarden` first.

use aws_sdk_kms::types::GrantOperation;
use keywarden_product::{Context, Envelope, Error, KeyChoice, ProductClient, ProductConfig};
use keywarden_testkit::server::{keywarden_binary, product_credential, Server};

const REGION: &str = "us-east-1";

/// A `ProductClient` for the product `code` with new credentials.
fn product_client(server: &Server, code: &str) -> ProductClient {
    let cred = product_credential(server, code);
    ProductClient::new(ProductConfig {
        endpoint: server.url.clone(),
        region: REGION.to_owned(),
        product_code: code.to_owned(),
        access_key_id: cred.access_key_id,
        secret_access_key: cred.secret_access_key.into(),
    })
    .expect("product client")
}

fn principal(code: &str) -> String {
    format!("arn:aws:iam::000000000000:role/keywarden-product/{code}")
}

/// Asserts `result` failed with Keywarden's AWS error `code`.
fn assert_kms_error<T>(result: Result<T, Error>, code: &str, what: &str) {
    match result {
        Ok(_) => panic!("{what}: succeeded, expected {code}"),
        Err(err) => assert_eq!(err.aws_code(), Some(code), "{what}: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_cmk_seals_and_opens_for_a_database_product_until_disabled_or_revoked() {
    let server = Server::start(keywarden_binary());
    let created = server.account("tenant");
    let account = created.account_id.clone();
    let tenant = server.client(&created);
    let mysql = product_client(&server, "mysql");
    let zos = product_client(&server, "zos");

    let cmk = tenant
        .create_key()
        .description("orders database")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("KeyMetadata");
    let key_id = cmk.key_id().to_owned();
    let arn = cmk.arn().expect("the key's ARN").to_owned();
    assert_eq!(
        arn,
        format!("arn:aws:kms:{REGION}:{account}:key/{key_id}"),
        "CreateKey's ARN"
    );
    let key = KeyChoice::Arn(arn.clone());
    let ctx: Context = [
        ("database".to_owned(), "orders".to_owned()),
        ("table".to_owned(), "customers".to_owned()),
    ]
    .into();
    let data = b"row 1: alice, 42 Main Street".to_vec();

    // Without a grant, the database product may not use the CMK.
    assert_kms_error(
        mysql.seal(&account, &key, &ctx, &data).await,
        "AccessDeniedException",
        "mysql seal before any grant",
    );

    let grant = |grantee: &'static str| {
        tenant
            .create_grant()
            .key_id(&key_id)
            .grantee_principal(principal(grantee))
            .operations(GrantOperation::GenerateDataKey)
            .operations(GrantOperation::Decrypt)
            .send()
    };
    let mysql_grant = grant("mysql")
        .await
        .expect("CreateGrant to mysql")
        .grant_id
        .expect("GrantId");
    grant("zos").await.expect("CreateGrant to zos");

    // Seal and open round trip, through the stored bytes.
    let sealed = mysql
        .seal(&account, &key, &ctx, &data)
        .await
        .expect("mysql seals with the granted CMK");
    assert_eq!(sealed.key_arn(), arn, "the envelope names the CMK's ARN");
    assert_eq!(sealed.account_id(), account);
    let stored = sealed.to_bytes();
    let envelope = Envelope::from_bytes(&stored).expect("the stored envelope parses");
    assert_eq!(envelope.key_arn(), arn, "the stored envelope keeps the ARN");
    let opened = mysql
        .open(&account, &ctx, &envelope)
        .await
        .expect("mysql opens with the granted CMK");
    assert_eq!(*opened, data);

    // A storage product never uses a CMK, even with a grant to its principal:
    // neither to seal nor to open the database's envelope.
    assert_kms_error(
        zos.seal(&account, &key, &ctx, &data).await,
        "AccessDeniedException",
        "zos seal with a CMK granted to it",
    );
    assert_kms_error(
        zos.open(&account, &ctx, &envelope).await,
        "AccessDeniedException",
        "zos open of mysql's envelope",
    );

    // A disabled key opens nothing until it is enabled again.
    tenant
        .disable_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("DisableKey");
    assert_kms_error(
        mysql.open(&account, &ctx, &envelope).await,
        "DisabledException",
        "mysql open with the CMK disabled",
    );
    assert_kms_error(
        mysql.seal(&account, &key, &ctx, &data).await,
        "DisabledException",
        "mysql seal with the CMK disabled",
    );
    tenant
        .enable_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("EnableKey");
    let opened = mysql
        .open(&account, &ctx, &envelope)
        .await
        .expect("mysql opens again once the CMK is enabled");
    assert_eq!(*opened, data);

    // Revoking the grant stops the very next request.
    tenant
        .revoke_grant()
        .key_id(&key_id)
        .grant_id(&mysql_grant)
        .send()
        .await
        .expect("RevokeGrant");
    assert_kms_error(
        mysql.open(&account, &ctx, &envelope).await,
        "AccessDeniedException",
        "mysql open right after RevokeGrant",
    );
    assert_kms_error(
        mysql.seal(&account, &key, &ctx, &data).await,
        "AccessDeniedException",
        "mysql seal right after RevokeGrant",
    );
}
