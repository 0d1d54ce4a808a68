//! Database keyrings through the real server (docs/integrations/mariadb.md):
//! the `KeywardenService` keyring operations, signed by an account's access
//! key, and the Vault-compatible endpoint under `/v1/` that MariaDB's
//! `hashicorp_key_management` plugin reads, driven byte for byte as the
//! plugin does (GET with `X-Vault-Token`). Every refusal the seed names
//! (disabled key, deletion, revoked grant, frozen account, disabled
//! product) stops key reads; tokens are revocable; nothing secret reaches
//! the log or the data dir.

use crate::common;

use std::time::{Duration, Instant};

use aws_sdk_kms::types::GrantOperation;
use common::{admin_json, product_credential, raw_post, vault_get, vault_request, Server};
use serde_json::{json, Value};

const MYSQL: &str = "arn:aws:iam::000000000000:role/keywarden-product/mysql";

async fn op(
    server: &Server,
    account: &common::Account,
    name: &str,
    body: Value,
) -> common::RawResponse {
    raw_post(
        &server.url,
        account,
        &format!("KeywardenService.{name}"),
        &body.to_string(),
    )
    .await
}

fn hex_key(r: &common::RawResponse) -> String {
    assert_eq!(r.status, 200, "{:?}", r.body);
    let key = r.body["data"]["data"]["data"]
        .as_str()
        .expect("key text")
        .to_owned();
    assert_eq!(key.len(), 64, "a 32-byte key in hex");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    key
}

fn version(r: &common::RawResponse) -> u64 {
    r.body["data"]["metadata"]["version"]
        .as_u64()
        .expect("version number")
}

fn first_error(r: &common::RawResponse) -> String {
    r.body["errors"][0].as_str().unwrap_or("").to_owned()
}

/// Polls `path` until it answers `status` (changes reach the server's
/// caches within its refresh period).
async fn wait_status(server: &Server, path: &str, token: &str, status: u16) -> common::RawResponse {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = vault_get(&server.url, path, Some(token)).await;
        if r.status == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{path} answered {} {:?}, not {status}, for 10 s",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn grant_mysql(client: &aws_sdk_kms::Client, key: &str) -> String {
    client
        .create_grant()
        .key_id(key)
        .grantee_principal(MYSQL)
        .operations(GrantOperation::GenerateDataKey)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .expect("CreateGrant")
        .grant_id
        .expect("grant id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_keys_come_through_the_kms_path_and_stop_with_it() {
    let server = Server::start(common::BIN);
    let tenant = server.account("shop");
    let client = server.client(&tenant);
    let cmk = client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();

    // Without a grant to the database product, no keyring on that key.
    let r = op(
        &server,
        &tenant,
        "CreateKeyring",
        json!({"Name": "orders-db", "KeyId": cmk}),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error_type(), "AccessDeniedException");
    let grant = grant_mysql(&client, &cmk).await;

    let r = op(
        &server,
        &tenant,
        "CreateKeyring",
        json!({"Name": "orders-db", "KeyId": cmk}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["KeyringId"].as_str().unwrap().to_owned();
    let token = r.body["Token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("kwkr_"));
    assert_eq!(r.body["KeyId"], cmk.as_str());
    assert_eq!(r.body["ProductCode"], "mysql");
    assert_eq!(r.body["MountPath"], format!("/v1/{id}"));
    assert_eq!(
        r.body["Keys"],
        json!([
            {"KeyNumber": 1, "LatestVersion": 1, "LatestVersionCreationDate": r.body["Keys"][0]["LatestVersionCreationDate"]},
            {"KeyNumber": 2, "LatestVersion": 1, "LatestVersionCreationDate": r.body["Keys"][1]["LatestVersionCreationDate"]},
        ])
    );

    // The mount check MariaDB makes at start.
    let tune = format!("/v1/sys/mounts/{id}/tune");
    let r = vault_get(&server.url, &tune, Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["options"]["version"], "2");

    // Reads, as the plugin makes them.
    let key1 = format!("/v1/{id}/data/1");
    let r = vault_get(&server.url, &key1, Some(&token)).await;
    let k1v1 = hex_key(&r);
    assert_eq!(version(&r), 1);
    assert_eq!(
        hex_key(&vault_get(&server.url, &key1, Some(&token)).await),
        k1v1
    );
    let k2 = hex_key(&vault_get(&server.url, &format!("/v1/{id}/data/2"), Some(&token)).await);
    assert_ne!(k1v1, k2);

    // Refusals without a valid token are one answer.
    for (path, tok) in [
        (key1.as_str(), None),
        (key1.as_str(), Some("kwkr_0000")),
        (key1.as_str(), Some(&token[..token.len() - 1])),
        (tune.as_str(), Some("")),
        (
            "/v1/kr-00000000000000000000000000000000/data/1",
            Some(token.as_str()),
        ),
        ("/v1/not-a-keyring/data/1", Some(token.as_str())),
    ] {
        let r = vault_get(&server.url, path, tok).await;
        assert_eq!(r.status, 403, "{path} {tok:?}: {:?}", r.body);
        assert_eq!(r.body, json!({"errors": ["permission denied"]}));
    }
    // Missing keys and versions are 404 {"errors":[]}, as Vault answers.
    for path in [
        format!("/v1/{id}/data/3"),
        format!("/v1/{id}/data/1?version=2"),
        format!("/v1/{id}/data/abc"),
        format!("/v1/{id}/data/0"),
        format!("/v1/{id}/data/4294967295"),
    ] {
        let r = vault_get(&server.url, &path, Some(&token)).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
        assert_eq!(r.body, json!({"errors": []}));
    }
    // Hostile input: an oversized token, encoded separators, a huge version.
    let long = format!("kwkr_{}", "a".repeat(4000));
    assert_eq!(vault_get(&server.url, &key1, Some(&long)).await.status, 403);
    for path in [
        format!("/v1/{id}/data/1%2F..%2F2"),
        format!("/v1/{id}/data/%31"),
        format!("/v1/{id}%2Fdata%2F1"),
    ] {
        let r = vault_get(&server.url, &path, Some(&token)).await;
        assert!(
            matches!(r.status, 403 | 404),
            "{path}: {} {:?}",
            r.status,
            r.body
        );
        assert!(!r.body.to_string().contains(&k1v1), "{path}");
    }
    let r = vault_get(
        &server.url,
        &format!("{key1}?version=99999999999"),
        Some(&token),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = vault_get(&server.url, &format!("{key1}?version=x"), Some(&token)).await;
    assert_eq!(r.status, 400);
    for method in ["POST", "PUT", "DELETE"] {
        let r = vault_request(&server.url, method, &key1, Some(&token)).await;
        assert_eq!(r.status, 405, "{method}");
    }
    let r = vault_get(&server.url, &format!("/v1/{id}/metadata/1"), Some(&token)).await;
    assert_eq!(r.status, 404);

    // Rotation adds a version; the old one stays readable.
    let r = op(
        &server,
        &tenant,
        "RotateKeyringKey",
        json!({"KeyringId": id, "KeyNumber": 1}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["Version"], 2);
    let r = vault_get(&server.url, &key1, Some(&token)).await;
    let k1v2 = hex_key(&r);
    assert_eq!(version(&r), 2);
    assert_ne!(k1v2, k1v1);
    let r = vault_get(&server.url, &format!("{key1}?version=1"), Some(&token)).await;
    assert_eq!(hex_key(&r), k1v1);
    assert_eq!(version(&r), 1);
    // A new key number starts at version 1.
    let r = op(
        &server,
        &tenant,
        "RotateKeyringKey",
        json!({"KeyringId": id, "KeyNumber": 7}),
    )
    .await;
    assert_eq!(r.body["Version"], 1, "{:?}", r.body);
    let r = op(
        &server,
        &tenant,
        "DescribeKeyring",
        json!({"KeyringId": id}),
    )
    .await;
    let keys: Vec<(u64, u64)> = r.body["Keyring"]["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["KeyNumber"].as_u64().unwrap(),
                k["LatestVersion"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, vec![(1, 2), (2, 1), (7, 1)]);
    assert!(r.body["Keyring"].get("Token").is_none());
    let r = op(&server, &tenant, "ListKeyrings", json!({})).await;
    assert_eq!(r.body["Keyrings"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["Keyrings"][0]["KeyringId"], id.as_str());

    // A disabled KMS key stops reads; enabling it brings them back.
    client.disable_key().key_id(&cmk).send().await.unwrap();
    let r = wait_status(&server, &key1, &token, 403).await;
    assert!(
        first_error(&r).starts_with("DisabledException"),
        "{:?}",
        r.body
    );
    client.enable_key().key_id(&cmk).send().await.unwrap();
    assert_eq!(
        hex_key(&wait_status(&server, &key1, &token, 200).await),
        k1v2
    );

    // So does revoking the product's grant.
    client
        .revoke_grant()
        .key_id(&cmk)
        .grant_id(&grant)
        .send()
        .await
        .unwrap();
    let r = wait_status(&server, &key1, &token, 403).await;
    assert!(
        first_error(&r).starts_with("AccessDeniedException"),
        "{:?}",
        r.body
    );
    let rotate = op(
        &server,
        &tenant,
        "RotateKeyringKey",
        json!({"KeyringId": id, "KeyNumber": 1}),
    )
    .await;
    assert_eq!(rotate.error_type(), "AccessDeniedException");
    grant_mysql(&client, &cmk).await;
    assert_eq!(
        hex_key(&wait_status(&server, &key1, &token, 200).await),
        k1v2
    );

    // Tokens: a new one replaces the old; revoking leaves none.
    let r = op(
        &server,
        &tenant,
        "CreateKeyringToken",
        json!({"KeyringId": id}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let token2 = r.body["Token"].as_str().unwrap().to_owned();
    assert_ne!(token2, token);
    assert_eq!(
        vault_get(&server.url, &key1, Some(&token)).await.status,
        403
    );
    assert_eq!(
        hex_key(&vault_get(&server.url, &key1, Some(&token2)).await),
        k1v2
    );
    let r = op(
        &server,
        &tenant,
        "RevokeKeyringToken",
        json!({"KeyringId": id}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        vault_get(&server.url, &key1, Some(&token2)).await.status,
        403
    );
    assert_eq!(
        vault_get(&server.url, &tune, Some(&token2)).await.status,
        403
    );
    let r = op(
        &server,
        &tenant,
        "CreateKeyringToken",
        json!({"KeyringId": id}),
    )
    .await;
    let token3 = r.body["Token"].as_str().unwrap().to_owned();

    // Bad input answers with AWS-style errors and changes nothing.
    let other = server.account("other");
    for (name, body, error) in [
        (
            "CreateKeyring",
            json!({"KeyId": cmk}),
            "ValidationException",
        ),
        (
            "CreateKeyring",
            json!({"Name": "x y", "KeyId": cmk}),
            "ValidationException",
        ),
        (
            "CreateKeyring",
            json!({"Name": "orders-db", "KeyId": cmk}),
            "AlreadyExistsException",
        ),
        (
            "CreateKeyring",
            json!({"Name": "n2", "KeyId": cmk, "ProductCode": "evs"}),
            "ValidationException",
        ),
        (
            "CreateKeyring",
            json!({"Name": "n2", "KeyId": cmk, "ProductCode": "nosuch"}),
            "NotFoundException",
        ),
        (
            "CreateKeyring",
            json!({"Name": "n2", "KeyId": cmk, "KeyNumbers": [0]}),
            "ValidationException",
        ),
        (
            "CreateKeyring",
            json!({"Name": "n2", "KeyId": cmk, "KeyNumbers": [3, 3]}),
            "ValidationException",
        ),
        (
            "CreateKeyring",
            json!({"Name": "n2", "KeyId": "alias/none"}),
            "NotFoundException",
        ),
        (
            "CreateKeyring",
            json!({"Name": 5, "KeyId": cmk}),
            "SerializationException",
        ),
        (
            "DescribeKeyring",
            json!({"KeyringId": "kr-zz"}),
            "NotFoundException",
        ),
        ("DescribeKeyring", json!({}), "ValidationException"),
        (
            "RotateKeyringKey",
            json!({"KeyringId": id, "KeyNumber": 0}),
            "ValidationException",
        ),
        (
            "RotateKeyringKey",
            json!({"KeyringId": id, "KeyNumber": 4294967295u64}),
            "ValidationException",
        ),
        (
            "RotateKeyringKey",
            json!({"KeyringId": id}),
            "ValidationException",
        ),
    ] {
        let r = op(&server, &tenant, name, body.clone()).await;
        assert_eq!(r.status, 400, "{name} {body}: {:?}", r.body);
        assert_eq!(r.error_type(), error, "{name} {body}: {:?}", r.body);
    }
    // Another account sees nothing of this keyring.
    for name in [
        "DescribeKeyring",
        "CreateKeyringToken",
        "RevokeKeyringToken",
        "DeleteKeyring",
    ] {
        let r = op(&server, &other, name, json!({"KeyringId": id})).await;
        assert_eq!(r.error_type(), "NotFoundException", "{name}");
    }
    let r = op(&server, &other, "ListKeyrings", json!({})).await;
    assert_eq!(r.body["Keyrings"], json!([]));
    // Products do not manage keyrings.
    let mysql = product_credential(&server, "mysql");
    let r = op(&server, &mysql, "ListKeyrings", json!({})).await;
    assert_eq!(r.error_type(), "AccessDeniedException");
    // Nothing above changed the keyring.
    assert_eq!(
        hex_key(&vault_get(&server.url, &key1, Some(&token3)).await),
        k1v2
    );

    // Scheduling the KMS key's deletion stops reads.
    client
        .schedule_key_deletion()
        .key_id(&cmk)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    let r = wait_status(&server, &key1, &token3, 403).await;
    assert!(
        first_error(&r).starts_with("KMSInvalidStateException"),
        "{:?}",
        r.body
    );
    client
        .cancel_key_deletion()
        .key_id(&cmk)
        .send()
        .await
        .unwrap();
    client.enable_key().key_id(&cmk).send().await.unwrap();
    assert_eq!(
        hex_key(&wait_status(&server, &key1, &token3, 200).await),
        k1v2
    );

    // Secrets: no token and no keyring key in the log or the data dir.
    let secrets = [
        token.clone(),
        token2.clone(),
        token3.clone(),
        k1v1.clone(),
        k1v2.clone(),
        k2.clone(),
    ];
    let log = std::fs::read(&server.log).unwrap();
    let mut files = vec![(server.log.clone(), log)];
    for entry in std::fs::read_dir(&server.data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            files.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    for (path, bytes) in &files {
        for secret in &secrets {
            let raw = hex::decode(secret.trim_start_matches("kwkr_")).unwrap();
            for needle in [secret.as_bytes(), raw.as_slice()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a keyring secret is in {}",
                    path.display()
                );
            }
        }
    }
    // Positive control: the key does appear where it is meant to, in a read.
    assert!(vault_get(&server.url, &key1, Some(&token3))
        .await
        .body
        .to_string()
        .contains(&k1v2));

    // Deleting the keyring deletes its keys.
    let r = op(&server, &tenant, "DeleteKeyring", json!({"KeyringId": id})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        vault_get(&server.url, &key1, Some(&token3)).await.status,
        403
    );
    let r = op(
        &server,
        &tenant,
        "DescribeKeyring",
        json!({"KeyringId": id}),
    )
    .await;
    assert_eq!(r.error_type(), "NotFoundException");

    // Every read is in the audit log, whose chain verifies.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit = std::fs::read_to_string(server.data_dir.join("audit.log")).unwrap();
    let reads: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("Keyring.ReadKey") && l.contains(&format!("keyring/{id}")))
        .collect();
    assert!(reads.len() > 20, "{} keyring reads audited", reads.len());
    assert!(reads
        .iter()
        .any(|l| l.contains(&tenant.account_id) && l.contains("mysql")));
    assert!(audit.contains("Keyring.CheckMount"));
    let verify = server.admin(&["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_on_the_default_key_stops_with_the_product() {
    let server = Server::start(common::BIN);
    let tenant = server.account("shop");
    let client = server.client(&tenant);
    // The account names the product's default key; it is created for it.
    let r = op(
        &server,
        &tenant,
        "CreateKeyring",
        json!({"Name": "db1", "KeyId": "alias_mysql", "KeyNumbers": [1]}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["KeyringId"].as_str().unwrap().to_owned();
    let token = r.body["Token"].as_str().unwrap().to_owned();
    let described = client
        .describe_key()
        .key_id("alias_mysql")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.body["KeyId"].as_str(),
        described.key_metadata.unwrap().arn.as_deref()
    );
    let key1 = format!("/v1/{id}/data/1");
    let k = hex_key(&vault_get(&server.url, &key1, Some(&token)).await);
    assert_eq!(
        vault_get(&server.url, &format!("/v1/{id}/data/2"), Some(&token))
            .await
            .status,
        404
    );

    // A disabled product reads nothing.
    admin_json(&server.admin(&["product", "disable", "--code", "mysql"]));
    let r = wait_status(&server, &key1, &token, 403).await;
    assert!(
        first_error(&r).starts_with("AccessDeniedException"),
        "{:?}",
        r.body
    );
    admin_json(&server.admin(&["product", "enable", "--code", "mysql"]));
    assert_eq!(hex_key(&wait_status(&server, &key1, &token, 200).await), k);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_account_reads_no_keyring_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("keywarden.toml");
    // One started hour of a software key costs 1000 minor units in a
    // 30-day month (967 in a 31-day one).
    std::fs::write(
        &config,
        "[billing]\nenabled = true\ncharge_interval_secs = 1\n\n[billing.prices]\nsoftware_key_per_month_minor = 720000\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let server = Server::start_with(
        common::BIN,
        &tmp.path().join("data"),
        tmp.path().join("server.log"),
        &["--config", &config],
    );
    let admin = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--config", &config]);
        server.admin(&all)
    };
    let tenant = server.account("shop");
    let client = server.client(&tenant);
    admin_json(&admin(&[
        "account",
        "topup",
        "--account",
        &tenant.account_id,
        "--amount",
        "15.00",
    ]));
    let cmk = common::create_key(&client).await;
    grant_mysql(&client, &cmk).await;
    let r = op(
        &server,
        &tenant,
        "CreateKeyring",
        json!({"Name": "db1", "KeyId": cmk}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["KeyringId"].as_str().unwrap().to_owned();
    let token = r.body["Token"].as_str().unwrap().to_owned();
    let key1 = format!("/v1/{id}/data/1");
    let k = hex_key(&vault_get(&server.url, &key1, Some(&token)).await);

    // Two more keys' first hours exceed the balance: frozen.
    common::create_key(&client).await;
    common::create_key(&client).await;
    let r = wait_status(&server, &key1, &token, 403).await;
    assert!(
        first_error(&r).starts_with("AccountFrozenException"),
        "{:?}",
        r.body
    );
    admin_json(&admin(&[
        "account",
        "topup",
        "--account",
        &tenant.account_id,
        "--amount",
        "100.00",
    ]));
    assert_eq!(hex_key(&wait_status(&server, &key1, &token, 200).await), k);
}

/// Keyring reads count against the account's cryptographic quota: a
/// flood of reads is answered 429 with ThrottlingException, and reads are
/// served again once the budget refills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyring_reads_are_charged_to_the_accounts_quota() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("keywarden.toml");
    std::fs::write(&config, "[limits]\ncrypto_per_second = 5\n").unwrap();
    let server = Server::start_with(
        common::BIN,
        &tmp.path().join("data"),
        tmp.path().join("server.log"),
        &["--config", config.to_str().unwrap()],
    );
    let tenant = server.account("shop");
    let r = op(
        &server,
        &tenant,
        "CreateKeyring",
        json!({"Name": "db1", "KeyId": "alias_mysql", "KeyNumbers": [1]}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["KeyringId"].as_str().unwrap().to_owned();
    let token = r.body["Token"].as_str().unwrap().to_owned();
    let key1 = format!("/v1/{id}/data/1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(vault_get(&server.url, &key1, Some(&token)).await);
    }
    assert!(statuses.iter().any(|r| r.status == 200));
    let throttled: Vec<_> = statuses.iter().filter(|r| r.status == 429).collect();
    assert!(!throttled.is_empty(), "no read was throttled");
    assert!(first_error(throttled[0]).starts_with("ThrottlingException"));
    // A wrong token is refused before any quota is charged or consulted.
    assert_eq!(
        vault_get(&server.url, &key1, Some("kwkr_wrong"))
            .await
            .status,
        403
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    hex_key(&vault_get(&server.url, &key1, Some(&token)).await);
}

/// Simultaneous rotations of one key number each get their own version;
/// none answers a 5xx (issue 17: 1-2 of 8 answered `KMSInternalException`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_rotations_of_one_key_each_get_a_version() {
    let server = Server::start(common::BIN);
    let tenant = server.account("racers");
    let r = op(
        &server,
        &tenant,
        "CreateKeyring",
        json!({"Name": "race-db", "KeyId": "alias_mysql", "KeyNumbers": [1]}),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["KeyringId"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (url, tenant, id) = (server.url.clone(), tenant.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            raw_post(
                &url,
                &tenant,
                "KeywardenService.RotateKeyringKey",
                &json!({"KeyringId": id, "KeyNumber": 1}).to_string(),
            )
            .await
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{:?}", r.body);
        versions.push(r.body["Version"].as_u64().expect("Version"));
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=9).collect::<Vec<u64>>());
}

/// A grant that allows GenerateDataKey but not Decrypt cannot make a
/// keyring: every read would be refused. Nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyring_needs_a_grant_that_also_decrypts() {
    let server = Server::start(common::BIN);
    let tenant = server.account("half-granted");
    let client = server.client(&tenant);
    let cmk = client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    client
        .create_grant()
        .key_id(&cmk)
        .grantee_principal(MYSQL)
        .operations(GrantOperation::GenerateDataKey)
        .send()
        .await
        .expect("CreateGrant");
    let r = op(
        &server,
        &tenant,
        "CreateKeyring",
        json!({"Name": "no-reads", "KeyId": cmk}),
    )
    .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(r.error_type(), "AccessDeniedException", "{:?}", r.body);
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("Decrypt"),
        "{:?}",
        r.body
    );
    let list = op(&server, &tenant, "ListKeyrings", json!({})).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["Keyrings"], json!([]), "{:?}", list.body);
}
