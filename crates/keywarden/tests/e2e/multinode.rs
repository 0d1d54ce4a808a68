//! Several `keywarden serve` nodes on one PostgreSQL database (a throwaway
//! cluster started by the test): changes through one node are honoured by
//! the others within one second, races across nodes create one default
//! key, a node with another root key refuses to start, and a database
//! outage under load gives clear errors, keeps cached crypto going, loses
//! no acknowledged write and heals by itself. IAM users, access keys,
//! inline policies and roles (with their STS sessions) changed through one
//! node are honoured by the others within the same bound.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, GrantOperation};
use aws_sdk_kms::Client;
use common::{admin_json, code, parse_account, product_credential, xml_text, Account, Server};
use keywarden_testpg::TestCluster;

/// Nodes with their own data dirs holding copies of one root key, as on
/// separate machines.
struct Deployment {
    nodes: Vec<Server>,
    _dir: tempfile::TempDir,
}

fn deploy(cluster: &TestCluster, database: &str, nodes: usize) -> Deployment {
    deploy_with(cluster, database, nodes, None)
}

/// [`deploy`] with a configuration file every node (and `admin`) reads.
fn deploy_with(
    cluster: &TestCluster,
    database: &str,
    nodes: usize,
    config: Option<&str>,
) -> Deployment {
    deploy_env(cluster, database, nodes, config, &[])
}

/// [`deploy_with`] with environment variables for every node.
fn deploy_env(
    cluster: &TestCluster,
    database: &str,
    nodes: usize,
    config: Option<&str>,
    env: &[(&str, &std::path::Path)],
) -> Deployment {
    let url = cluster.create_database(database);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("keywarden.toml");
    if let Some(config) = config {
        std::fs::write(&config_path, config).unwrap();
    }
    let extra: Vec<&str> = match config {
        Some(_) => vec!["--config", config_path.to_str().unwrap()],
        None => Vec::new(),
    };
    let mut started = Vec::new();
    for n in 0..nodes {
        let data = dir.path().join(format!("node{n}"));
        if n > 0 {
            std::fs::create_dir_all(&data).unwrap();
            std::fs::copy(dir.path().join("node0/root.key"), data.join("root.key")).unwrap();
        }
        let mut options = common::Options::new()
            .shared_args(&["--database-url", &url])
            .shared_args(&extra);
        for (key, value) in env {
            options = options.env(key, *value);
        }
        started.push(Server::start_opts(
            common::BIN,
            &data,
            dir.path().join(format!("node{n}.log")),
            options,
        ));
    }
    Deployment {
        nodes: started,
        _dir: dir,
    }
}

/// How long until `check` holds, polling every 10 ms for up to 5 s.
async fn time_until<F, Fut>(mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not observed within 5 s");
}

const BOUND: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_through_one_node_reach_the_others_within_a_second() {
    let cluster = TestCluster::start();
    let d = deploy(&cluster, "coherence", 3);
    let (a, b, c) = (&d.nodes[0], &d.nodes[1], &d.nodes[2]);
    let account = a.account("tenant");
    let on_a = a.client(&account);
    let on_b = b.client(&account);
    let on_c = c.client(&account);
    let key = common::create_key(&on_a).await;
    let encrypt = |client: Client, key: String| async move {
        client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
    };
    // Warm every node's caches (credential, key, unwrapped material).
    for client in [&on_a, &on_b, &on_c] {
        for _ in 0..3 {
            encrypt(client.clone(), key.clone()).await.unwrap();
        }
    }

    // DisableKey on A: refused on B and C within the bound.
    on_a.disable_key().key_id(&key).send().await.unwrap();
    for node in [&on_b, &on_c] {
        let took =
            time_until(|| {
                let node = node.clone();
                let key = key.clone();
                async move {
                    matches!(encrypt(node, key).await, Err(e) if code(&e) == "DisabledException")
                }
            })
            .await;
        eprintln!("disable seen after {took:?}");
        assert!(took < BOUND, "disable seen after {took:?}");
    }
    on_a.enable_key().key_id(&key).send().await.unwrap();
    let took = time_until(|| {
        let key = key.clone();
        let on_c = on_c.clone();
        async move { encrypt(on_c, key).await.is_ok() }
    })
    .await;
    assert!(took < BOUND, "enable seen after {took:?}");

    // ScheduleKeyDeletion through B: refused on A and C.
    on_b.schedule_key_deletion()
        .key_id(&key)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
    for node in [&on_a, &on_c] {
        let took = time_until(|| {
            let node = node.clone();
            let key = key.clone();
            async move {
                matches!(encrypt(node, key).await, Err(e) if code(&e) == "KMSInvalidStateException")
            }
        })
        .await;
        eprintln!("scheduled deletion seen after {took:?}");
        assert!(took < BOUND, "scheduled deletion seen after {took:?}");
    }
    on_b.cancel_key_deletion()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    on_b.enable_key().key_id(&key).send().await.unwrap();

    // A grant revoked through C stops the product on A and B.
    let mysql = product_credential(a, "mysql");
    let mysql_on_a = a.client(&mysql);
    let mysql_on_b = b.client(&mysql);
    let grant = on_c
        .create_grant()
        .key_id(&key)
        .grantee_principal("arn:aws:iam::000000000000:role/keywarden-product/mysql")
        .operations(GrantOperation::GenerateDataKey)
        .send()
        .await
        .unwrap()
        .grant_id
        .unwrap();
    let gdk = |client: Client, key: String| async move {
        client
            .generate_data_key()
            .key_id(key)
            .key_spec(DataKeySpec::Aes256)
            .send()
            .await
    };
    let key_arn = format!("arn:aws:kms:us-east-1:{}:key/{key}", account.account_id);
    for node in [&mysql_on_a, &mysql_on_b] {
        time_until(|| {
            let node = node.clone();
            let key_arn = key_arn.clone();
            async move { gdk(node, key_arn).await.is_ok() }
        })
        .await;
    }
    on_c.revoke_grant()
        .key_id(&key)
        .grant_id(grant)
        .send()
        .await
        .unwrap();
    for node in [&mysql_on_a, &mysql_on_b] {
        let took = time_until(|| {
            let node = node.clone();
            let key_arn = key_arn.clone();
            async move {
                matches!(gdk(node, key_arn).await, Err(e) if code(&e) == "AccessDeniedException")
            }
        })
        .await;
        eprintln!("grant revocation seen after {took:?}");
        assert!(took < BOUND, "grant revocation seen after {took:?}");
    }

    // A credential revoked with the admin CLI (straight into the database)
    // stops authenticating on every node.
    let second = parse_account(
        &c.admin(&["credentials", "create", "--account", &account.account_id])
            .stdout,
    );
    let second_on_a = a.client(&second);
    let second_on_b = b.client(&second);
    encrypt(second_on_a.clone(), key.clone()).await.unwrap();
    encrypt(second_on_b.clone(), key.clone()).await.unwrap();
    admin_json_ok(&c.admin(&[
        "credentials",
        "revoke",
        "--access-key-id",
        &second.access_key_id,
    ]));
    for node in [&second_on_a, &second_on_b] {
        let took = time_until(|| {
            let node = node.clone();
            let key = key.clone();
            async move {
                matches!(encrypt(node, key).await, Err(e) if code(&e) == "UnrecognizedClientException")
            }
        })
        .await;
        eprintln!("credential revocation seen after {took:?}");
        assert!(took < BOUND, "credential revocation seen after {took:?}");
    }
}

/// The key version a Keywarden ciphertext blob names (bytes 17..21,
/// docs/ciphertext-format.md).
fn blob_version(blob: &Blob) -> u32 {
    let b = blob.as_ref();
    u32::from_be_bytes([b[17], b[18], b[19], b[20]])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_freezes_and_top_ups_reach_the_other_node_within_a_second() {
    // Billing on, a charge run every second, one started key-hour costing
    // about 1000 minor units: an account without balance is frozen by its
    // first key's first hour.
    let config = "[billing]\nenabled = true\ncharge_interval_secs = 1\n\n[billing.prices]\nsoftware_key_per_month_minor = 720000\n";
    let cluster = TestCluster::start();
    let d = deploy_with(&cluster, "billing_rotation", 2, Some(config));
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    let account = a.account("tenant");
    admin_json(&a.admin(&[
        "account",
        "topup",
        "--account",
        &account.account_id,
        "--amount",
        "1000.00",
    ]));
    let on_a = a.client(&account);
    let on_b = b.client(&account);
    let key = common::create_key(&on_a).await;
    let encrypt = |client: Client, key: String| async move {
        client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(b"x".to_vec()))
            .send()
            .await
    };
    let first = encrypt(on_b.clone(), key.clone()).await.unwrap();
    assert_eq!(blob_version(first.ciphertext_blob.as_ref().unwrap()), 1);

    // An on-demand rotation through A: B encrypts under version 2.
    on_a.rotate_key_on_demand()
        .key_id(&key)
        .send()
        .await
        .unwrap();
    let took = time_until(|| {
        let on_b = on_b.clone();
        let key = key.clone();
        async move {
            let out = encrypt(on_b, key).await.unwrap();
            blob_version(out.ciphertext_blob.as_ref().unwrap()) == 2
        }
    })
    .await;
    eprintln!("rotation seen after {took:?}");
    assert!(took < BOUND, "rotation seen after {took:?}");

    // A second account without balance: frozen by the billing run of
    // either node; once one node refuses, the other does within the bound.
    let broke = a.account("broke");
    let broke_a = a.client(&broke);
    let broke_b = b.client(&broke);
    let broke_key = common::create_key(&broke_a).await;
    encrypt(broke_b.clone(), broke_key.clone()).await.unwrap();
    let frozen = |client: Client, key: String| async move {
        matches!(encrypt(client, key).await, Err(e) if code(&e) == "AccountFrozenException")
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let first_frozen = loop {
        if frozen(broke_a.clone(), broke_key.clone()).await {
            break &broke_b;
        }
        if frozen(broke_b.clone(), broke_key.clone()).await {
            break &broke_a;
        }
        assert!(Instant::now() < deadline, "not frozen within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = time_until(|| frozen(first_frozen.clone(), broke_key.clone())).await;
    eprintln!("freeze seen on the other node after {took:?}");
    assert!(took < BOUND, "freeze seen after {took:?}");

    // A top-up with the admin CLI lifts it on both nodes within the bound.
    admin_json(&b.admin(&[
        "account",
        "topup",
        "--account",
        &broke.account_id,
        "--amount",
        "1000.00",
    ]));
    for client in [&broke_a, &broke_b] {
        let took = time_until(|| {
            let client = client.clone();
            let key = broke_key.clone();
            async move { encrypt(client, key).await.is_ok() }
        })
        .await;
        eprintln!("top-up seen after {took:?}");
        assert!(took < BOUND, "top-up seen after {took:?}");
    }
}

fn admin_json_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_first_uses_through_three_nodes_create_one_default_key() {
    let cluster = TestCluster::start();
    let d = deploy(&cluster, "default_keys", 3);
    let account = d.nodes[0].account("tenant");
    let evs = product_credential(&d.nodes[0], "evs");
    let clients: Vec<Client> = d.nodes.iter().map(|n| n.client(&evs)).collect();
    let alias_arn = format!("arn:aws:kms:us-east-1:{}:alias_evs", account.account_id);
    let requests = (0..50).map(|i| {
        let client = clients[i % clients.len()].clone();
        let alias_arn = alias_arn.clone();
        tokio::spawn(async move {
            client
                .generate_data_key()
                .key_id(alias_arn)
                .key_spec(DataKeySpec::Aes256)
                .send()
                .await
        })
    });
    let mut keys = BTreeSet::new();
    for r in requests {
        let out = r.await.unwrap().expect("every first use succeeds");
        keys.insert(out.key_id().unwrap().to_owned());
    }
    assert_eq!(keys.len(), 1, "{keys:?}");
    for node in &d.nodes {
        let listed = node.client(&account).list_keys().send().await.unwrap();
        assert_eq!(listed.keys().len(), 1);
    }
    // Aliases stay unique across nodes: 10 racing CreateAlias, one wins.
    let tenant: Vec<Client> = d.nodes.iter().map(|n| n.client(&account)).collect();
    let key = common::create_key(&tenant[0]).await;
    let races = (0..10).map(|i| {
        let client = tenant[i % tenant.len()].clone();
        let key = key.clone();
        tokio::spawn(async move {
            client
                .create_alias()
                .alias_name("alias/contended")
                .target_key_id(key)
                .send()
                .await
        })
    });
    let mut won = 0;
    for r in races {
        match r.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(code(&e), "AlreadyExistsException"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_root_key_refuses_to_start() {
    let cluster = TestCluster::start();
    let d = deploy(&cluster, "root_keys", 1);
    d.nodes[0].account("tenant");
    let stranger = tempfile::tempdir().unwrap();
    let url = cluster.url("root_keys");
    let serve = |data: &std::path::Path| {
        std::process::Command::new(common::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .args(["--database-url", &url])
            .output()
            .unwrap()
    };
    // No root key: refused before one is created.
    let bare = stranger.path().join("bare");
    let out = serve(&bare);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no root key") && err.contains("copy it"),
        "{err}"
    );
    assert!(!bare.join("root.key").exists(), "no stray root key file");
    // Another deployment's root key: refused.
    let other = Server::start(common::BIN);
    let foreign = stranger.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::copy(other.data_dir.join("root.key"), foreign.join("root.key")).unwrap();
    let out = serve(&foreign);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another root key"), "{err}");
    // A malformed URL is refused without echoing it.
    let out = std::process::Command::new(common::BIN)
        .args(["admin", "account", "list", "--data-dir"])
        .arg(stranger.path().join("data2"))
        .args(["--database-url", "mysql://admin:hunter2@db/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("hunter2"), "{err}");
    // TLS demanded of a server without it is refused clearly rather than
    // failing as an outage.
    let out = std::process::Command::new(common::BIN)
        .args(["admin", "account", "list", "--data-dir"])
        .arg(stranger.path().join("data3"))
        .args(["--database-url", &format!("{url}?sslmode=require")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS handshake with") && err.contains("does not support TLS"),
        "{err}"
    );
}

fn client_without_retries(server: &Server, account: &Account) -> Client {
    let config = server
        .client(account)
        .config()
        .to_builder()
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            aws_sdk_kms::config::timeout::TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(20))
                .build(),
        )
        .build();
    Client::from_conf(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_under_load_fails_clearly_and_heals() {
    let cluster = TestCluster::start();
    let d = deploy(&cluster, "outage", 2);
    let account = d.nodes[0].account("tenant");
    let clients: Vec<Client> = d
        .nodes
        .iter()
        .map(|n| client_without_retries(n, &account))
        .collect();
    let key = common::create_key(&clients[0]).await;
    for c in &clients {
        c.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"warm".to_vec()))
            .send()
            .await
            .unwrap();
    }

    // Load: every worker creates keys (needs the database) and encrypts
    // under the cached key, recording what was acknowledged.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Every committed change empties every node's caches (noticed within
    // 100 ms), so key creation pauses shortly before the outage; it
    // resumes during the outage, where it fails and changes nothing.
    let quiet = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let client = clients[w % clients.len()].clone();
            let key = key.clone();
            let stop = stop.clone();
            let quiet = quiet.clone();
            tokio::spawn(async move {
                let mut created = Vec::new();
                let mut sealed = Vec::new();
                let mut failures: Vec<(String, Duration)> = Vec::new();
                let mut cached_crypto_during_failures = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    if !quiet.load(std::sync::atomic::Ordering::Relaxed) {
                        match client.create_key().send().await {
                            Ok(out) => created.push(out.key_metadata.unwrap().key_id),
                            Err(e) => failures.push((code(&e), started.elapsed())),
                        }
                    }
                    let plaintext = format!("worker {w} #{}", sealed.len());
                    match client
                        .encrypt()
                        .key_id(&key)
                        .plaintext(Blob::new(plaintext.clone().into_bytes()))
                        .send()
                        .await
                    {
                        Ok(out) => {
                            if !failures.is_empty() {
                                cached_crypto_during_failures += 1;
                            }
                            sealed.push((plaintext, out.ciphertext_blob.unwrap()));
                        }
                        Err(e) => failures.push((code(&e), started.elapsed())),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (created, sealed, failures, cached_crypto_during_failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    quiet.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cluster_ref = &cluster;
    tokio::task::block_in_place(|| cluster_ref.stop());
    quiet.store(false, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| cluster_ref.start_again());
    // Full service within 15 s of the database's return.
    let back = Instant::now();
    loop {
        if clients[1].create_key().send().await.is_ok() {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut all_created = Vec::new();
    let mut all_sealed: Vec<(String, Blob)> = Vec::new();
    let mut all_failures = Vec::new();
    let mut cached = 0;
    for w in workers {
        let (created, sealed, failures, during) = w.await.unwrap();
        all_created.extend(created);
        all_sealed.extend(sealed);
        all_failures.extend(failures);
        cached += during;
    }
    assert!(!all_failures.is_empty(), "the outage was noticed");
    for (error, took) in &all_failures {
        assert!(
            error == "DependencyTimeoutException" || error == "KMSInternalException",
            "failures during the outage are 5xx AWS errors, got {error}"
        );
        assert!(
            *took < Duration::from_secs(10),
            "a request failed only after {took:?}"
        );
    }
    assert!(
        cached > 0,
        "encryption under a cached key continued while CreateKey failed"
    );
    // Nothing acknowledged was lost: every created key exists, every
    // ciphertext decrypts, through either node.
    for (i, id) in all_created.iter().enumerate() {
        clients[i % 2]
            .describe_key()
            .key_id(id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("acknowledged key {id} lost: {}", code(&e)));
    }
    let encrypted = all_sealed.len();
    for (i, (plaintext, blob)) in all_sealed.into_iter().enumerate() {
        let out = clients[i % 2]
            .decrypt()
            .ciphertext_blob(blob)
            .send()
            .await
            .unwrap();
        assert_eq!(out.plaintext.unwrap().as_ref(), plaintext.as_bytes());
    }
    // Keys listed = keys acknowledged (+ the first, + the recovery probes):
    // no half-created key appeared either.
    let listed = clients[0].list_keys().limit(1000).send().await.unwrap();
    let listed: BTreeSet<String> = listed
        .keys()
        .iter()
        .filter_map(|k| k.key_id().map(str::to_owned))
        .collect();
    for id in &all_created {
        assert!(listed.contains(id));
    }

    // Metering is exact: every acknowledged Encrypt was counted once,
    // those served during the outage included (held in memory, written
    // when the database came back; the nodes flush at shutdown).
    let mut d = d;
    for node in &mut d.nodes {
        assert!(node.stop().success());
    }
    let usage =
        admin_json(&d.nodes[0].admin(&["account", "usage", "--account", &account.account_id]));
    assert_eq!(
        usage["RequestsByOperation"]["Encrypt"].as_u64(),
        Some(encrypted as u64 + 2),
        "{usage}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_moves_an_embedded_deployment_to_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut embedded = Server::start_in(common::BIN, &data, dir.path().join("embedded.log"));
    let account = embedded.account("tenant");
    let kms = embedded.client(&account);
    let mut sealed = Vec::new();
    for i in 0..5 {
        let key = common::create_key(&kms).await;
        kms.create_alias()
            .alias_name(format!("alias/k{i}"))
            .target_key_id(&key)
            .send()
            .await
            .unwrap();
        if i == 2 {
            kms.rotate_key_on_demand()
                .key_id(&key)
                .send()
                .await
                .unwrap();
        }
        let blob = common::encrypt(
            &kms,
            format!("alias/k{i}"),
            format!("secret {i}").into_bytes(),
        )
        .await;
        sealed.push((key, format!("secret {i}"), blob));
    }
    let evs = product_credential(&embedded, "evs");
    let evs_blob = embedded
        .client(&evs)
        .generate_data_key()
        .key_id(format!(
            "arn:aws:kms:us-east-1:{}:alias_evs",
            account.account_id
        ))
        .key_spec(DataKeySpec::Aes256)
        .send()
        .await
        .unwrap();
    embedded.stop();

    let cluster = TestCluster::start();
    let url = cluster.create_database("migrated");
    let out = std::process::Command::new(common::BIN)
        .args(["admin", "migrate-store", "--from"])
        .arg(&data)
        .args(["--to", &url])
        .output()
        .unwrap();
    let report = admin_json(&out);
    assert_eq!(report["Keys"], 6, "{report}");
    // A second migration into the now non-empty database is refused.
    let again = std::process::Command::new(common::BIN)
        .args(["admin", "migrate-store", "--from"])
        .arg(&data)
        .args(["--to", &url])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // Two nodes on the database, with the embedded deployment's root key.
    let nodes: Vec<Server> = (0..2)
        .map(|n| {
            let node_dir = dir.path().join(format!("node{n}"));
            std::fs::create_dir_all(&node_dir).unwrap();
            std::fs::copy(data.join("root.key"), node_dir.join("root.key")).unwrap();
            Server::start_node(
                common::BIN,
                &node_dir,
                dir.path().join(format!("node{n}.log")),
                &url,
            )
        })
        .collect();
    for (i, (key, plaintext, blob)) in sealed.into_iter().enumerate() {
        let client = nodes[i % 2].client(&account);
        let out = client.decrypt().ciphertext_blob(blob).send().await.unwrap();
        assert_eq!(
            out.key_id.unwrap(),
            format!("arn:aws:kms:us-east-1:{}:key/{key}", account.account_id)
        );
        assert_eq!(out.plaintext.unwrap().as_ref(), plaintext.as_bytes());
        let via_alias = client
            .describe_key()
            .key_id(format!("alias/k{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(via_alias.key_metadata.unwrap().key_id, key);
    }
    let out = nodes[1]
        .client(&evs)
        .decrypt()
        .key_id(evs_blob.key_id().unwrap())
        .ciphertext_blob(evs_blob.ciphertext_blob.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.plaintext.unwrap().as_ref(),
        evs_blob.plaintext.unwrap().as_ref()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_outage_grace_period_cached_keys_stop_serving() {
    let cluster = TestCluster::start();
    let d = deploy_with(
        &cluster,
        "grace",
        1,
        Some("[database]\noutage_grace_secs = 3\n"),
    );
    let account = d.nodes[0].account("tenant");
    let kms = client_without_retries(&d.nodes[0], &account);
    let key = common::create_key(&kms).await;
    let encrypt = || {
        kms.encrypt()
            .key_id(&key)
            .plaintext(Blob::new(b"grace".to_vec()))
            .send()
    };
    // Caches are emptied on every change (CreateKey's included, noticed
    // within 100 ms), so warm them once that has settled.
    encrypt().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    encrypt().await.unwrap();

    let cluster_ref = &cluster;
    // The node cannot notice before the stop begins.
    let stopped = Instant::now();
    tokio::task::block_in_place(|| cluster_ref.stop());
    // Within the grace period the cached key serves...
    encrypt().await.expect("cached key within the grace period");
    // ...and past it the node refuses.
    let refused_after = loop {
        match encrypt().await {
            Ok(_) => {}
            Err(e) => {
                assert_eq!(code(&e), "DependencyTimeoutException");
                break stopped.elapsed();
            }
        }
        assert!(stopped.elapsed() < Duration::from_secs(15), "still serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("refused {refused_after:?} into the outage (grace 3 s)");
    assert!(refused_after >= Duration::from_secs(3), "{refused_after:?}");

    tokio::task::block_in_place(|| cluster_ref.start_again());
    let back = Instant::now();
    while encrypt().await.is_err() {
        assert!(back.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_racing_to_create_root_keys_on_a_new_database_leave_one_standing() {
    // The operator forgot to copy the root key: two nodes start at once on
    // a new, empty database, each creating its own. Exactly one may serve.
    let cluster = TestCluster::start();
    let url = cluster.create_database("split_brain");
    let dir = tempfile::tempdir().unwrap();
    let spawn = |n: usize| {
        std::process::Command::new(common::BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join(format!("node{n}")))
            .args(["--database-url", &url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children = vec![spawn(0), spawn(1), spawn(2)];
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut running = 0;
    let mut refusals = Vec::new();
    for child in &mut children {
        match child.try_wait().unwrap() {
            None => running += 1,
            Some(status) => {
                assert!(!status.success());
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                refusals.push(err);
            }
        }
    }
    for child in &mut children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(running, 1, "exactly one node serves: {refusals:?}");
    assert_eq!(refusals.len(), 2);
    for err in &refusals {
        assert!(err.contains("another root key"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_store_refuses_to_pass_while_the_embedded_server_writes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start_in(common::BIN, &data, dir.path().join("embedded.log"));
    let account = server.account("busy");
    let kms = server.client(&account);
    kms.create_key().send().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let kms = kms.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                kms.create_key().send().await.unwrap();
            }
        })
    };
    let cluster = TestCluster::start();
    let url = cluster.create_database("busy");
    let out = tokio::task::spawn_blocking({
        let data = data.clone();
        move || {
            std::process::Command::new(common::BIN)
                .args(["admin", "migrate-store", "--from"])
                .arg(&data)
                .args(["--to", &url])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed during the migration"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_can_be_named_in_the_configuration_file() {
    let cluster = TestCluster::start();
    let url = cluster.create_database("from_config");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keywarden.toml");
    std::fs::write(
        &config,
        format!("[database]\nurl = \"{url}\"\npool_size = 4\n"),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let server = Server::start_with(
        common::BIN,
        &dir.path().join("data"),
        dir.path().join("server.log"),
        &["--config", config_arg],
    );
    let out = server.admin(&["account", "create", "--name", "cfg", "--config", config_arg]);
    let account = parse_account(&out.stdout);
    let kms = server.client(&account);
    kms.create_key().send().await.unwrap();
    // The data dir holds the root key only: the state is in PostgreSQL.
    assert!(!dir.path().join("data/keywarden.db").exists());
    let rows: i64 = {
        let (client, conn) = tokio_postgres_connect(&url).await;
        let n = client
            .query_one("SELECT count(*) FROM keys", &[])
            .await
            .unwrap()
            .get(0);
        drop(conn);
        n
    };
    assert_eq!(rows, 1);
}

async fn tokio_postgres_connect(
    url: &str,
) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, driver)
}

/// Keyrings live in the shared store and nothing caches them: a keyring
/// made through one node serves through the other, and a rotation or a
/// token replaced through one node holds on the other at once; a disabled
/// KMS key within the coherence bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyrings_are_shared_by_every_node() {
    let cluster = TestCluster::start();
    let d = deploy(&cluster, "keyrings", 2);
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    let tenant = a.account("db-owner");
    let client = a.client(&tenant);
    let cmk = common::create_key(&client).await;
    client
        .create_grant()
        .key_id(&cmk)
        .grantee_principal("arn:aws:iam::000000000000:role/keywarden-product/mysql")
        .operations(GrantOperation::GenerateDataKey)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    let call = |node: &Server, op: &str, body: serde_json::Value| {
        let url = node.url.clone();
        let tenant = tenant.clone();
        let op = format!("KeywardenService.{op}");
        async move { common::raw_post(&url, &tenant, &op, &body.to_string()).await }
    };
    let created = call(
        a,
        "CreateKeyring",
        serde_json::json!({"Name": "db", "KeyId": cmk}),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let id = created.body["KeyringId"].as_str().unwrap().to_owned();
    let token = created.body["Token"].as_str().unwrap().to_owned();
    let path = format!("/v1/{id}/data/1");
    let read = |node: &Server, token: &str| {
        let url = node.url.clone();
        let (path, token) = (path.clone(), token.to_owned());
        async move { common::vault_get(&url, &path, Some(&token)).await }
    };
    let on_a = read(a, &token).await;
    let on_b = read(b, &token).await;
    assert_eq!(on_b.status, 200, "{:?}", on_b.body);
    assert_eq!(on_a.body["data"]["data"], on_b.body["data"]["data"]);

    let rotated = call(
        a,
        "RotateKeyringKey",
        serde_json::json!({"KeyringId": id, "KeyNumber": 1}),
    )
    .await;
    assert_eq!(rotated.body["Version"], 2);
    assert_eq!(read(b, &token).await.body["data"]["metadata"]["version"], 2);

    let replaced = call(
        a,
        "CreateKeyringToken",
        serde_json::json!({"KeyringId": id}),
    )
    .await;
    let token2 = replaced.body["Token"].as_str().unwrap().to_owned();
    assert_eq!(read(b, &token).await.status, 403, "the old token, at once");
    assert_eq!(read(b, &token2).await.status, 200);

    client.disable_key().key_id(&cmk).send().await.unwrap();
    let took = time_until(|| {
        let read = read(b, &token2);
        async move { read.await.status == 403 }
    })
    .await;
    assert!(
        took < Duration::from_secs(1),
        "node b refused after {took:?}"
    );
}

/// TLS to PostgreSQL: a node on a TLS-only cluster with `sslmode=verify-full`
/// and the cluster's CA serves accounts and keys; a node given another CA
/// refuses to start, saying why, without the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_postgres_over_verified_tls_and_a_wrong_ca_is_refused() {
    let cluster = TestCluster::start_tls();
    cluster.create_database("tls");
    let ca = cluster.ca_cert().expect("a TLS cluster").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let url = |ca: &std::path::Path| {
        format!(
            "postgres://postgres:tls-pa55word@localhost:{}/tls?sslmode=verify-full&sslrootcert={}",
            cluster.port(),
            ca.display()
        )
    };
    let node = Server::start_node(
        common::BIN,
        &dir.path().join("node0"),
        dir.path().join("node0.log"),
        &url(&ca),
    );
    let tenant = node.account("tls-tenant");
    let client = node.client(&tenant);
    let key = common::create_key(&client).await;
    let blob = common::encrypt(&client, &key, b"over TLS".to_vec()).await;
    let plain = client
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap();
    assert_eq!(plain.as_ref(), b"over TLS");

    let other = tempfile::tempdir().unwrap();
    let wrong_ca = keywarden_testpg::throwaway_ca(other.path());
    let data = dir.path().join("node1");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(dir.path().join("node0/root.key"), data.join("root.key")).unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--database-url", &url(&wrong_ca)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS handshake with localhost:") && err.contains("certificate"),
        "{err}"
    );
    assert!(!err.contains("tls-pa55word"), "{err}");
}

/// `value` percent-encoded for a form body (everything but ASCII letters
/// and digits), so policy documents survive the Query protocol intact.
fn form(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An IAM Query action through `node` as `who`; panics unless it answers
/// 200, and returns the XML.
async fn iam_ok(node: &Server, who: &Account, body: &str) -> String {
    let (status, xml) =
        common::query_post(&node.url, who, "iam", &format!("Version=2010-05-08&{body}")).await;
    assert_eq!(status, 200, "{body}: {xml}");
    xml
}

/// A KMS client for a role session's temporary credentials.
fn session_client(node: &Server, akid: &str, secret: &str, token: &str) -> Client {
    let creds = aws_sdk_kms::config::Credentials::new(
        akid,
        secret,
        Some(token.to_owned()),
        None,
        "keywarden-test-session",
    );
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(&node.url)
        .retry_config(RetryConfig::disabled())
        .build();
    Client::from_conf(config)
}

/// The AWS error code of an Encrypt with `client` under `key`, `None` when
/// it succeeds.
async fn encrypt_outcome(client: Client, key: String) -> Option<String> {
    match client
        .encrypt()
        .key_id(key)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
    {
        Ok(_) => None,
        Err(e) => Some(code(&e)),
    }
}

/// How long until an Encrypt with `client` answers `want` (`None`: succeeds).
async fn time_until_encrypt(client: &Client, key: &str, want: Option<&str>) -> Duration {
    time_until(|| {
        let client = client.clone();
        let key = key.to_owned();
        async move { encrypt_outcome(client, key).await.as_deref() == want }
    })
    .await
}

/// Issue 18's IAM through one node, used through another: users, access
/// keys, inline policies and roles changed on A are honoured on B within
/// the bound of docs/operations.md ("Coherence between nodes"), with B's
/// caches warm before each change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_changes_through_one_node_reach_the_others_within_a_second() {
    let cluster = TestCluster::start();
    let d = deploy(&cluster, "iam_coherence", 2);
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    let root = a.account("tenant");
    let key = common::create_key(&a.client(&root)).await;
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["kms:Encrypt","kms:Decrypt"],"Resource":"*"}]}"#;

    // A user with an access key and an inline policy, made through A; the
    // key's default policy delegates to IAM, so the user encrypts on B.
    iam_ok(a, &root, "Action=CreateUser&UserName=app").await;
    let xml = iam_ok(a, &root, "Action=CreateAccessKey&UserName=app").await;
    let user = Account {
        account_id: root.account_id.clone(),
        access_key_id: xml_text(&xml, "AccessKeyId").unwrap().to_owned(),
        secret_access_key: xml_text(&xml, "SecretAccessKey").unwrap().to_owned(),
    };
    iam_ok(
        a,
        &root,
        &format!(
            "Action=PutUserPolicy&UserName=app&PolicyName=crypto&PolicyDocument={}",
            form(allow)
        ),
    )
    .await;
    let user_on_b = client_without_retries(b, &user);
    let took = time_until_encrypt(&user_on_b, &key, None).await;
    eprintln!("new user's access key and policy usable on B after {took:?}");
    assert!(took < BOUND, "new user usable on B after {took:?}");
    // Warm B's caches (credential, user, identity policies, key).
    for _ in 0..3 {
        assert_eq!(encrypt_outcome(user_on_b.clone(), key.clone()).await, None);
    }

    // The access key deactivated on A: refused on B; active again: works.
    let update = |status: &str| {
        format!(
            "Action=UpdateAccessKey&UserName=app&AccessKeyId={}&Status={status}",
            user.access_key_id
        )
    };
    iam_ok(a, &root, &update("Inactive")).await;
    let took = time_until_encrypt(&user_on_b, &key, Some("UnrecognizedClientException")).await;
    eprintln!("deactivated access key refused on B after {took:?}");
    assert!(
        took < BOUND,
        "deactivated access key refused on B after {took:?}"
    );
    iam_ok(a, &root, &update("Active")).await;
    let took = time_until_encrypt(&user_on_b, &key, None).await;
    eprintln!("reactivated access key accepted on B after {took:?}");
    assert!(
        took < BOUND,
        "reactivated access key accepted on B after {took:?}"
    );
    for _ in 0..3 {
        assert_eq!(encrypt_outcome(user_on_b.clone(), key.clone()).await, None);
    }

    // The inline policy deleted on A: B denies (the key still authenticates).
    iam_ok(
        a,
        &root,
        "Action=DeleteUserPolicy&UserName=app&PolicyName=crypto",
    )
    .await;
    let took = time_until_encrypt(&user_on_b, &key, Some("AccessDeniedException")).await;
    eprintln!("deleted user policy denied on B after {took:?}");
    assert!(
        took < BOUND,
        "deleted user policy denied on B after {took:?}"
    );

    // The access key deleted on A: B no longer knows it.
    iam_ok(
        a,
        &root,
        &format!(
            "Action=DeleteAccessKey&UserName=app&AccessKeyId={}",
            user.access_key_id
        ),
    )
    .await;
    let took = time_until_encrypt(&user_on_b, &key, Some("UnrecognizedClientException")).await;
    eprintln!("deleted access key refused on B after {took:?}");
    assert!(
        took < BOUND,
        "deleted access key refused on B after {took:?}"
    );

    // A role made on A, assumed through B, its session used on B.
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{}:root"}},"Action":"sts:AssumeRole"}}]}}"#,
        root.account_id
    );
    let xml = iam_ok(
        a,
        &root,
        &format!(
            "Action=CreateRole&RoleName=worker&AssumeRolePolicyDocument={}",
            form(&trust)
        ),
    )
    .await;
    let role_arn = xml_text(&xml, "Arn").unwrap().to_owned();
    assert_eq!(
        role_arn,
        format!("arn:aws:iam::{}:role/worker", root.account_id)
    );
    iam_ok(
        a,
        &root,
        &format!(
            "Action=PutRolePolicy&RoleName=worker&PolicyName=crypto&PolicyDocument={}",
            form(allow)
        ),
    )
    .await;
    let assume = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=batch",
        form(&role_arn)
    );
    let assumed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let took = time_until(|| {
        let assume = assume.clone();
        let root = root.clone();
        let url = b.url.clone();
        let assumed = assumed.clone();
        async move {
            let (status, xml) = common::query_post(&url, &root, "sts", &assume).await;
            let ok = status == 200;
            *assumed.lock().unwrap() = Some(xml);
            ok
        }
    })
    .await;
    eprintln!("new role assumable on B after {took:?}");
    assert!(took < BOUND, "new role assumable on B after {took:?}");
    let xml = assumed.lock().unwrap().take().unwrap();
    let session_on_b = session_client(
        b,
        xml_text(&xml, "AccessKeyId").unwrap(),
        xml_text(&xml, "SecretAccessKey").unwrap(),
        xml_text(&xml, "SessionToken").unwrap(),
    );
    let took = time_until_encrypt(&session_on_b, &key, None).await;
    assert!(took < BOUND, "role session usable on B after {took:?}");
    for _ in 0..3 {
        assert_eq!(
            encrypt_outcome(session_on_b.clone(), key.clone()).await,
            None
        );
    }

    // The role's policy deleted on A: the session is denied on B; the role
    // deleted on A: the session no longer authenticates on B (the role is
    // read on every use, docs of ops/sessions.rs).
    iam_ok(
        a,
        &root,
        "Action=DeleteRolePolicy&RoleName=worker&PolicyName=crypto",
    )
    .await;
    let took = time_until_encrypt(&session_on_b, &key, Some("AccessDeniedException")).await;
    eprintln!("deleted role policy denied on B after {took:?}");
    assert!(
        took < BOUND,
        "deleted role policy denied on B after {took:?}"
    );
    iam_ok(a, &root, "Action=DeleteRole&RoleName=worker").await;
    let took = time_until_encrypt(&session_on_b, &key, Some("UnrecognizedClientException")).await;
    eprintln!("deleted role's session refused on B after {took:?}");
    assert!(
        took < BOUND,
        "deleted role's session refused on B after {took:?}"
    );

    // A role made again under the same name does not revive the session.
    iam_ok(
        a,
        &root,
        &format!(
            "Action=CreateRole&RoleName=worker&AssumeRolePolicyDocument={}",
            form(&trust)
        ),
    )
    .await;
    iam_ok(
        a,
        &root,
        &format!(
            "Action=PutRolePolicy&RoleName=worker&PolicyName=crypto&PolicyDocument={}",
            form(allow)
        ),
    )
    .await;
    tokio::time::sleep(BOUND).await;
    assert_eq!(
        encrypt_outcome(session_on_b.clone(), key.clone())
            .await
            .as_deref(),
        Some("UnrecognizedClientException")
    );
}

/// How long until every client's Encrypt under `key` answers `want`
/// (`None`: succeeds), measured from one start for all of them.
async fn time_until_all_encrypt(clients: &[&Client], key: &str, want: Option<&str>) -> Duration {
    time_until(|| {
        let clients: Vec<Client> = clients.iter().map(|c| (*c).clone()).collect();
        let key = key.to_owned();
        async move {
            for client in clients {
                if encrypt_outcome(client, key.clone()).await.as_deref() != want {
                    return false;
                }
            }
            true
        }
    })
    .await
}

/// The other IAM documents that decide access, changed through one node
/// of three: managed policies and their attachments, an explicit deny, the
/// key policy (by revision), and a role's trust policy; honoured by the
/// other two within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_policy_changes_through_one_node_reach_the_others_within_a_second() {
    let cluster = TestCluster::start();
    let d = deploy(&cluster, "iam_policy_coherence", 3);
    let (a, b, c) = (&d.nodes[0], &d.nodes[1], &d.nodes[2]);
    let root = a.account("tenant");
    let root_on_a = a.client(&root);
    let key = common::create_key(&root_on_a).await;
    let account = root.account_id.clone();

    iam_ok(a, &root, "Action=CreateUser&UserName=app").await;
    let xml = iam_ok(a, &root, "Action=CreateAccessKey&UserName=app").await;
    let user = Account {
        account_id: account.clone(),
        access_key_id: xml_text(&xml, "AccessKeyId").unwrap().to_owned(),
        secret_access_key: xml_text(&xml, "SecretAccessKey").unwrap().to_owned(),
    };
    let (user_on_b, user_on_c) = (
        client_without_retries(b, &user),
        client_without_retries(c, &user),
    );
    let others = [&user_on_b, &user_on_c];
    // Warm B's and C's caches with the user refused (no policy yet).
    for client in others {
        assert_eq!(
            encrypt_outcome(client.clone(), key.clone())
                .await
                .as_deref(),
            Some("AccessDeniedException")
        );
    }

    // A managed policy attached on A allows on B and C.
    let allow = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*"}]}"#;
    let xml = iam_ok(
        a,
        &root,
        &format!(
            "Action=CreatePolicy&PolicyName=crypto&PolicyDocument={}",
            form(allow)
        ),
    )
    .await;
    let policy_arn = xml_text(&xml, "Arn").unwrap().to_owned();
    let attach = format!("UserName=app&PolicyArn={}", form(&policy_arn));
    iam_ok(a, &root, &format!("Action=AttachUserPolicy&{attach}")).await;
    let took = time_until_all_encrypt(&others, &key, None).await;
    eprintln!("attached managed policy honoured on B and C after {took:?}");
    assert!(
        took < BOUND,
        "attached managed policy honoured after {took:?}"
    );

    // An explicit deny put on A wins on B and C; deleted, access is back.
    let deny = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"kms:Encrypt","Resource":"*"}]}"#;
    iam_ok(
        a,
        &root,
        &format!(
            "Action=PutUserPolicy&UserName=app&PolicyName=deny&PolicyDocument={}",
            form(deny)
        ),
    )
    .await;
    let took = time_until_all_encrypt(&others, &key, Some("AccessDeniedException")).await;
    eprintln!("explicit deny honoured on B and C after {took:?}");
    assert!(took < BOUND, "explicit deny honoured after {took:?}");
    iam_ok(
        a,
        &root,
        "Action=DeleteUserPolicy&UserName=app&PolicyName=deny",
    )
    .await;
    let took = time_until_all_encrypt(&others, &key, None).await;
    assert!(took < BOUND, "deleted deny honoured after {took:?}");

    // A key policy put on A that denies the user by ARN: B and C refuse;
    // the previous policy back: they allow again.
    let default_policy = root_on_a
        .get_key_policy()
        .key_id(&key)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    let denying = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"Root","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"kms:*","Resource":"*"}},{{"Sid":"NotApp","Effect":"Deny","Principal":{{"AWS":"arn:aws:iam::{account}:user/app"}},"Action":"kms:Encrypt","Resource":"*"}}]}}"#
    );
    root_on_a
        .put_key_policy()
        .key_id(&key)
        .policy(denying)
        .send()
        .await
        .unwrap();
    let took = time_until_all_encrypt(&others, &key, Some("AccessDeniedException")).await;
    eprintln!("key policy denial honoured on B and C after {took:?}");
    assert!(took < BOUND, "key policy denial honoured after {took:?}");
    root_on_a
        .put_key_policy()
        .key_id(&key)
        .policy(default_policy)
        .send()
        .await
        .unwrap();
    let took = time_until_all_encrypt(&others, &key, None).await;
    assert!(took < BOUND, "restored key policy honoured after {took:?}");

    // Detached on A: B and C deny.
    iam_ok(a, &root, &format!("Action=DetachUserPolicy&{attach}")).await;
    let took = time_until_all_encrypt(&others, &key, Some("AccessDeniedException")).await;
    eprintln!("detached managed policy honoured on B and C after {took:?}");
    assert!(
        took < BOUND,
        "detached managed policy honoured after {took:?}"
    );

    // A trust policy changed on A: AssumeRole through B and C follows it.
    let trust = |effect: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"{effect}","Principal":{{"AWS":"arn:aws:iam::{account}:root"}},"Action":"sts:AssumeRole"}}]}}"#
        )
    };
    iam_ok(
        a,
        &root,
        &format!(
            "Action=CreateRole&RoleName=worker&AssumeRolePolicyDocument={}",
            form(&trust("Allow"))
        ),
    )
    .await;
    let assume = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleArn={}&RoleSessionName=batch",
        form(&format!("arn:aws:iam::{account}:role/worker"))
    );
    let assume_status = |node: &Server| {
        let url = node.url.clone();
        let root = root.clone();
        let assume = assume.clone();
        async move { common::query_post(&url, &root, "sts", &assume).await.0 }
    };
    let took = time_until(|| {
        let (on_b, on_c) = (assume_status(b), assume_status(c));
        async move { on_b.await == 200 && on_c.await == 200 }
    })
    .await;
    assert!(took < BOUND, "new role assumable after {took:?}");
    iam_ok(
        a,
        &root,
        &format!(
            "Action=UpdateAssumeRolePolicy&RoleName=worker&PolicyDocument={}",
            form(&trust("Deny"))
        ),
    )
    .await;
    let took = time_until(|| {
        let (on_b, on_c) = (assume_status(b), assume_status(c));
        async move { on_b.await == 403 && on_c.await == 403 }
    })
    .await;
    eprintln!("trust policy change honoured on B and C after {took:?}");
    assert!(took < BOUND, "trust policy change honoured after {took:?}");
}

/// An account-created custom key store (issue 20): connecting it through one
/// node lets the other node create and use keys in it within the bound;
/// disconnecting it through one node makes its keys unavailable on the
/// other within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_key_store_connections_reach_the_other_nodes_within_a_second() {
    use aws_sdk_kms::types::{ConnectionStateType, OriginType};
    let cluster = TestCluster::start();
    let hsm_dir = tempfile::tempdir().unwrap();
    let conf = keywarden_testkit::softhsm::token(hsm_dir.path(), "kw-nodes", "node-pin-1234");
    let config = format!(
        "[[hsm_clusters]]\nid = \"cluster-nodes1234567\"\nmodule = \"{}\"\ntoken_label = \"kw-nodes\"\n",
        keywarden_testkit::softhsm::MODULE
    );
    let d = deploy_env(
        &cluster,
        "custom_key_stores",
        2,
        Some(&config),
        &[("SOFTHSM2_CONF", conf.as_path())],
    );
    let (a, b) = (&d.nodes[0], &d.nodes[1]);
    let account = a.account("hsm-tenant");
    let on_a = a.client(&account);
    // No retries: KeyUnavailableException is a 500 the SDK would retry
    // with backoff, which would time the SDK, not the node.
    let on_b = Client::from_conf(
        b.client(&account)
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let store = on_a
        .create_custom_key_store()
        .custom_key_store_name("nodes")
        .cloud_hsm_cluster_id("cluster-nodes1234567")
        .trust_anchor_certificate("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----")
        .key_store_password("node-pin-1234")
        .send()
        .await
        .unwrap()
        .custom_key_store_id
        .unwrap();
    on_a.connect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let state = on_b
        .describe_custom_key_stores()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap()
        .custom_key_stores
        .unwrap()[0]
        .connection_state
        .clone();
    assert_eq!(state, Some(ConnectionStateType::Connected));
    // Node B opens the store itself once it notices the change.
    let made = std::sync::Arc::new(std::sync::Mutex::new(None));
    let waited = time_until(|| {
        let on_b = on_b.clone();
        let store = store.clone();
        let made = made.clone();
        async move {
            match on_b
                .create_key()
                .origin(OriginType::AwsCloudhsm)
                .custom_key_store_id(&store)
                .send()
                .await
            {
                Ok(out) => {
                    *made.lock().unwrap() = out.key_metadata.map(|m| m.key_id);
                    true
                }
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(
        waited < BOUND,
        "node B used the connected store after {waited:?}"
    );
    let key = made.lock().unwrap().take().unwrap();
    let blob = on_b
        .encrypt()
        .key_id(&key)
        .plaintext(Blob::new(b"in the tenant's HSM".to_vec()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();
    let plain = on_a
        .decrypt()
        .ciphertext_blob(blob.clone())
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap();
    assert_eq!(plain.as_ref(), b"in the tenant's HSM");
    // Disconnected through A: B's cached handles go too.
    on_a.disconnect_custom_key_store()
        .custom_key_store_id(&store)
        .send()
        .await
        .unwrap();
    let waited = time_until(|| {
        let on_b = on_b.clone();
        let blob = blob.clone();
        async move {
            match on_b.decrypt().ciphertext_blob(blob).send().await {
                Err(e) => code(&e) == "KeyUnavailableException",
                Ok(_) => false,
            }
        }
    })
    .await;
    assert!(
        waited < BOUND,
        "node B refused the disconnected store after {waited:?}"
    );
}
