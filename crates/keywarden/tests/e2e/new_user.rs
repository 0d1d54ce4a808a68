//! What a new user runs into when following the docs (issue 17, "fixes
//! found by trying it as a new user would"): every command against the
//! real binary, each answer a clear message, and nothing written where
//! nothing should be.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use common::{admin_json, product_credential, raw_post, Server, BIN};
use serde_json::json;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run keywarden")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The names of the files in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A data dir whose database is there but whose root key is missing:
/// every command refuses, says which key is missing and where it was
/// expected, and writes nothing (no fresh key beside the old database).
#[test]
fn a_missing_root_key_is_refused_and_never_replaced() {
    let mut server = Server::start(common::BIN);
    server.account("before");
    server.stop();
    let dir = server.data_dir.clone();
    let data_dir = dir.to_str().unwrap();
    std::fs::rename(dir.join("root.key"), dir.join("..").join("root.key.moved")).unwrap();
    // The audit head and WAL files may be checkpointed away by the last
    // close; what matters is that nothing new appears from here on.
    let before = listing(&dir);
    let expected = dir.join("root.key");
    for args in [
        vec!["admin", "account", "list", "--data-dir", data_dir],
        vec!["admin", "check", "--data-dir", data_dir],
        vec![
            "admin",
            "account",
            "create",
            "--name",
            "x",
            "--data-dir",
            data_dir,
        ],
        vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "the root key of data directory {data_dir} is missing: expected it at {}",
                expected.display()
            )),
            "{args:?}: {err}"
        );
        assert!(!err.contains("PostgreSQL"), "{args:?}: {err}");
        assert!(!expected.exists(), "{args:?} wrote a root key");
        assert_eq!(listing(&dir), before, "{args:?} wrote to the data dir");
    }
}

/// Only `serve` and `admin account create` start a new data dir; every
/// other command on a directory that does not exist refuses, names the path
/// and the option, and creates nothing.
#[test]
fn commands_on_a_missing_data_dir_refuse_and_create_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("data");
    let dir = missing.to_str().unwrap();
    for args in [
        vec!["admin", "account", "list", "--data-dir", dir],
        vec!["admin", "product", "list", "--data-dir", dir],
        vec!["admin", "credentials", "list", "--data-dir", dir],
        vec![
            "admin",
            "account",
            "balance",
            "--account",
            "111122223333",
            "--data-dir",
            dir,
        ],
        vec![
            "key",
            "list",
            "--account",
            "111122223333",
            "--data-dir",
            dir,
        ],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("data directory {dir} does not exist"))
                && err.contains("--data-dir"),
            "{args:?}: {err}"
        );
        assert!(!missing.exists(), "{args:?} created {dir}");
    }
    // An existing directory without a database is no deployment either.
    std::fs::create_dir(&missing).unwrap();
    let out = run(&["admin", "account", "list", "--data-dir", dir]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holds no Keywarden database"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listing(&missing), Vec::<String>::new());
    // The first account starts the deployment.
    let out = run(&[
        "admin",
        "account",
        "create",
        "--name",
        "first",
        "--data-dir",
        dir,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["admin", "account", "list", "--data-dir", dir]);
    assert_eq!(admin_json(&out)["Accounts"][0]["Name"], "first");
}

/// A port another process listens on is reported as such.
#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let out = run(&[
        "serve",
        "--listen",
        &addr.to_string(),
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "port {} on 127.0.0.1 is already in use",
            addr.port()
        )),
        "{}",
        stderr(&out)
    );
}

/// A client configured for another region hears the server's region and
/// the setting; an unknown access key hears that it may belong elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_region_and_unknown_keys_say_what_to_check() {
    let server = Server::start(common::BIN);
    let tenant = server.account("regions");
    let client = |region: &str, key: &str, secret: &str| {
        aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(region.to_owned()))
                .credentials_provider(Credentials::new(key, secret, None, None, "test"))
                .endpoint_url(&server.url)
                .build(),
        )
    };
    let err = client(
        "eu-west-1",
        &tenant.access_key_id,
        &tenant.secret_access_key,
    )
    .list_keys()
    .send()
    .await
    .unwrap_err();
    let e = err.into_service_error();
    assert_eq!(e.meta().code(), Some("InvalidSignatureException"));
    let message = e.meta().message().unwrap_or_default();
    assert!(
        message.contains("This server's region is 'us-east-1' (keywarden serve --region)")
            && message.contains("'eu-west-1'"),
        "{message}"
    );
    let err = client("us-east-1", "AKIAUNKNOWNUNKNOWN00", "secret")
        .list_keys()
        .send()
        .await
        .unwrap_err();
    let e = err.into_service_error();
    assert_eq!(e.meta().code(), Some("UnrecognizedClientException"));
    assert!(
        e.meta()
            .message()
            .unwrap_or_default()
            .contains("it may belong to another data directory or deployment"),
        "{:?}",
        e.meta().message()
    );
}

/// A bare alias name (without `alias/`) hints at the prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_alias_name_hints_at_the_prefix() {
    let server = Server::start(common::BIN);
    let tenant = server.account("aliases");
    let err = server
        .client(&tenant)
        .describe_key()
        .key_id("walkthrough")
        .send()
        .await
        .unwrap_err();
    let e = err.into_service_error();
    assert_eq!(e.meta().code(), Some("NotFoundException"));
    assert!(
        e.meta()
            .message()
            .unwrap_or_default()
            .contains("'alias/walkthrough'"),
        "{:?}",
        e.meta().message()
    );
}

/// A product naming another product's default key hears the same answer
/// before and after that key exists, so it cannot learn which products an
/// account uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_products_default_key_answers_the_same_whether_or_not_it_exists() {
    let server = Server::start(common::BIN);
    let tenant = server.account("products");
    let zos = product_credential(&server, "zos");
    let evs = product_credential(&server, "evs");
    let evs_alias = format!("arn:aws:kms:us-east-1:{}:alias_evs", tenant.account_id);
    let body = json!({"KeyId": evs_alias, "KeySpec": "AES_256"}).to_string();
    let before = raw_post(&server.url, &zos, "TrentService.GenerateDataKey", &body).await;
    // The evs product's first use creates its default key.
    let created = raw_post(&server.url, &evs, "TrentService.GenerateDataKey", &body).await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let after = raw_post(&server.url, &zos, "TrentService.GenerateDataKey", &body).await;
    assert_eq!(before.status, 400, "{:?}", before.body);
    assert_eq!(before.error_type(), "AccessDeniedException");
    assert_eq!((before.status, &before.body), (after.status, &after.body));
}

/// `admin account balance` shows the same fields as GetAccountBalance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_balance_and_get_account_balance_show_the_same_fields() {
    let server = Server::start(common::BIN);
    let tenant = server.account("balance");
    let api = raw_post(
        &server.url,
        &tenant,
        "KeywardenService.GetAccountBalance",
        "{}",
    )
    .await;
    assert_eq!(api.status, 200, "{:?}", api.body);
    let admin = admin_json(&server.admin(&["account", "balance", "--account", &tenant.account_id]));
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&admin), keys(&api.body));
    assert_eq!(keys(&admin["MonthToDate"]), keys(&api.body["MonthToDate"]));
    assert_eq!(admin, api.body);
}

/// `--frame-length` stops at 2^31-1, the largest frame the official SDKs
/// read: a usage error (exit status 2) before anything is read or sent.
#[test]
fn frame_lengths_beyond_what_the_sdks_read_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::write(&input, b"data").unwrap();
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let out = Command::new(BIN)
        .args([
            "encrypt",
            "--endpoint-url",
            "http://127.0.0.1:9",
            "--key-id",
            key,
        ])
        .args(["--frame-length", "2147483648"])
        .arg(&input)
        .arg(tmp.path().join("out"))
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("2147483648"), "{}", stderr(&out));
    assert!(!tmp.path().join("out").exists());
}

/// An unreachable endpoint is one line on stderr, not a Rust debug dump.
#[test]
fn an_unreachable_endpoint_is_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::write(&input, b"data").unwrap();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let out = Command::new(BIN)
        .args(["encrypt", "--endpoint-url", &endpoint, "--key-id", key])
        .arg(&input)
        .arg(tmp.path().join("out"))
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot reach the key service"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("DispatchFailure"), "{err}");
    assert!(!err.contains("{ "), "a Debug dump: {err}");
}

/// `admin audit query | head -1` ends quietly: no broken-pipe panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_query_into_head_ends_quietly() {
    let server = Server::start(common::BIN);
    let tenant = server.account("reader");
    let client = server.client(&tenant);
    // Well beyond a pipe's buffer (64 KiB) of records.
    for _ in 0..400 {
        client.list_keys().send().await.unwrap();
    }
    // Let the writer flush its batches.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for query in [
        format!(
            "'{BIN}' admin audit query --data-dir '{}' | head -n 1",
            server.data_dir.display()
        ),
        format!(
            "'{BIN}' admin account list --data-dir '{}' | head -c 1",
            server.data_dir.display()
        ),
    ] {
        let out = Command::new("bash")
            .args(["-c", &format!("set -o pipefail; {query}")])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{query}: {err}");
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "{query}: {err}"
        );
        assert!(!out.stdout.is_empty(), "{query}");
    }
}

/// `key create --protection hsm` without `--config` says where custom key
/// stores come from.
#[test]
fn hsm_keys_without_a_configuration_file_say_so() {
    let server = Server::start(common::BIN);
    let tenant = server.account("hsm-less");
    let out = run(&[
        "key",
        "create",
        "--account",
        &tenant.account_id,
        "--protection",
        "hsm",
        "--custom-key-store-id",
        "cks-1",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pass --config with the file `keywarden serve` uses"),
        "{}",
        stderr(&out)
    );
}
