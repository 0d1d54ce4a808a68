//! TLS to PostgreSQL: `sslmode` and `sslrootcert` against a cluster that
//! accepts TCP clients only over TLS, with a certificate for `localhost`
//! (not for `127.0.0.1`) from a throwaway CA.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use keywarden_core::store::{AccountStore, ChangeFeed, StoreError};
use keywarden_store_postgres::{PgOptions, PgStore};
use keywarden_testpg::TestCluster;

/// The binary's TLS cluster.
fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(TestCluster::start_tls)
}

/// A fresh database on the TLS cluster; its name.
fn fresh_database(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("{label}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cluster().create_database(&name);
    name
}

/// The cluster's CA.
fn ca() -> PathBuf {
    cluster().ca_cert().expect("a TLS cluster").to_owned()
}

/// Another CA, which did not issue the server's certificate.
fn wrong_ca() -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let path = dir.path().join("ca.pem");
    if !path.exists() {
        keywarden_testpg::throwaway_ca(dir.path());
    }
    path
}

/// A URL with a password (trust authentication ignores it), to check that
/// errors never show it.
fn url(host: &str, db: &str, query: &str) -> String {
    format!(
        "postgres://postgres:pa55word@{host}:{}/{db}?{query}",
        cluster().port()
    )
}

fn verify(mode: &str, ca: &std::path::Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", ca.display())
}

async fn connect(url: &str) -> Result<PgStore, StoreError> {
    PgStore::connect(url, common::options()).await
}

/// The error `connect` answers, as the binary would show it.
async fn refusal(url: &str) -> String {
    match connect(url).await {
        Ok(_) => panic!("the connection must be refused"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains("pa55word"), "{text}");
            text
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_by_name_connects_encrypted_and_the_store_works() {
    let db = fresh_database("full");
    let store = connect(&url(
        "localhost",
        &db,
        &format!("application_name=tls-test&{}", verify("verify-full", &ca())),
    ))
    .await
    .unwrap();
    assert!(store.session_encrypted().await.unwrap());
    let id = common::account_id(1);
    store.create_account(&common::account(&id)).await.unwrap();
    assert_eq!(
        store.get_account(&id).await.unwrap(),
        Some(common::account(&id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_checks_the_name_and_verify_ca_does_not() {
    let db = fresh_database("name");
    let text = refusal(&url("127.0.0.1", &db, &verify("verify-full", &ca()))).await;
    assert!(text.contains("TLS handshake with 127.0.0.1:"), "{text}");
    assert!(text.contains("not valid for name"), "{text}");

    let store = connect(&url("127.0.0.1", &db, &verify("verify-ca", &ca())))
        .await
        .unwrap();
    assert!(store.session_encrypted().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused() {
    let db = fresh_database("wrongca");
    for mode in ["verify-full", "verify-ca", "require"] {
        let text = refusal(&url("localhost", &db, &verify(mode, &wrong_ca()))).await;
        assert!(
            text.contains("TLS handshake with localhost:"),
            "{mode}: {text}"
        );
        assert!(text.contains("UnknownIssuer"), "{mode}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_and_prefer_without_a_root_certificate_encrypt_unverified() {
    let db = fresh_database("require");
    for query in ["sslmode=require", "sslmode=prefer", ""] {
        let store = connect(&url("127.0.0.1", &db, query)).await.unwrap();
        assert!(store.session_encrypted().await.unwrap(), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_is_refused_by_a_tls_only_server() {
    let db = fresh_database("disable");
    let text = refusal(&url("localhost", &db, "sslmode=disable")).await;
    assert!(text.contains("refused the connection"), "{text}");
    assert!(text.contains("no encryption"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_without_a_root_certificate_is_a_configuration_error() {
    let db = fresh_database("noroot");
    for mode in ["verify-full", "verify-ca"] {
        let text = refusal(&url("localhost", &db, &format!("sslmode={mode}"))).await;
        assert!(
            text.contains(&format!("sslmode={mode} needs sslrootcert")),
            "{text}"
        );
    }
    let missing = refusal(&url(
        "localhost",
        &db,
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ))
    .await;
    assert!(missing.contains("cannot read sslrootcert"), "{missing}");
    let text = refusal(&url("localhost", &db, "sslmode=allow")).await;
    assert!(text.contains("sslmode must be"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_works_over_tls() {
    let db = fresh_database("feed");
    let url = url("localhost", &db, &verify("verify-full", &ca()));
    let a = connect(&url).await.unwrap();
    // Polling too rarely to matter: only a notification, received on the
    // listener's own (TLS) connection, can be in time.
    let b = PgStore::connect(
        &url,
        PgOptions {
            stamp_poll_interval: Duration::from_secs(600),
            ..common::options()
        },
    )
    .await
    .unwrap();
    for n in 0..3 {
        let before = b.change_stamp().await.unwrap();
        a.create_account(&common::account(&common::account_id(100 + n)))
            .await
            .unwrap();
        let moved = common::eventually(Duration::from_secs(1), || async {
            b.change_stamp().await.unwrap() != before
        })
        .await;
        assert!(moved, "B's stamp must move within 1 s of A's commit");
    }
}
