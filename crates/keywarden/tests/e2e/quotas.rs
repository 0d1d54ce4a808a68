//! Per-account request quotas through the real binary (docs/limits.md):
//! a throttled account gets `ThrottlingException` (400) while another is
//! served, cryptographic and management budgets are separate, a product
//! counts against the account it acts for, and the SDK's retries get
//! through.

use crate::common;

use std::time::{Duration, Instant};

use aws_sdk_kms::config::retry::RetryConfig;
use common::{product_credential, raw_post, Account, Server};

/// 5 cryptographic and 3 management requests per second and account.
fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    let config = tmp.join("keywarden.toml");
    std::fs::write(
        &config,
        "[limits]\ncrypto_per_second = 5\nmanage_per_second = 3\n",
    )
    .unwrap();
    let server = Server::start_with(
        common::BIN,
        &tmp.join("data"),
        tmp.join("server.log"),
        &["--config", config.to_str().unwrap()],
    );
    (server, dir)
}

async fn random(server: &Server, account: &Account) -> common::RawResponse {
    raw_post(
        &server.url,
        account,
        "TrentService.GenerateRandom",
        r#"{"NumberOfBytes":16}"#,
    )
    .await
}

async fn list_keys(server: &Server, account: &Account) -> common::RawResponse {
    raw_post(&server.url, account, "TrentService.ListKeys", "{}").await
}

/// Sends requests of `account` back to back for `window`; (accepted,
/// throttled). Any other answer fails the test.
async fn flood(server: &Server, account: &Account, crypto: bool, window: Duration) -> (u32, u32) {
    let (mut ok, mut throttled) = (0, 0);
    let start = Instant::now();
    while start.elapsed() < window {
        let r = if crypto {
            random(server, account).await
        } else {
            list_keys(server, account).await
        };
        match r.status {
            200 => ok += 1,
            400 => {
                assert_eq!(r.error_type(), "ThrottlingException", "{r:?}");
                assert!(
                    r.body["message"]
                        .as_str()
                        .unwrap()
                        .contains("exceeded the rate"),
                    "{r:?}"
                );
                throttled += 1;
            }
            _ => panic!("unexpected answer {r:?}"),
        }
    }
    (ok, throttled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_noisy_account_is_throttled_while_another_is_served() {
    let (server, _dir) = start();
    let noisy = server.account("noisy");
    let quiet = server.account("quiet");

    // The noisy account floods for 2 s; meanwhile the quiet one makes a
    // request every 300 ms (below its own 5/s), every one of them served.
    let flooding = {
        let (url, noisy) = (server.url.clone(), noisy.clone());
        tokio::spawn(async move {
            let server_url = url;
            let (mut ok, mut throttled) = (0u32, 0u32);
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                let r = raw_post(
                    &server_url,
                    &noisy,
                    "TrentService.GenerateRandom",
                    r#"{"NumberOfBytes":16}"#,
                )
                .await;
                match (r.status, r.error_type()) {
                    (200, _) => ok += 1,
                    (400, "ThrottlingException") => throttled += 1,
                    _ => panic!("unexpected answer {r:?}"),
                }
            }
            (ok, throttled)
        })
    };
    for _ in 0..6 {
        let r = random(&server, &quiet).await;
        assert_eq!(r.status, 200, "the quiet account was refused: {r:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (ok, throttled) = flooding.await.unwrap();
    // A burst of 5 plus 5 a second over 2 s (a little slack for timing).
    assert!((5..=17).contains(&ok), "accepted {ok}");
    assert!(throttled > 0, "never throttled ({ok} accepted)");

    // The noisy account's management budget is its own.
    let (ok, _) = flood(&server, &noisy, true, Duration::from_millis(300)).await;
    assert!(ok <= 3, "crypto not exhausted: {ok}");
    let r = list_keys(&server, &noisy).await;
    assert_eq!(r.status, 200, "{r:?}");

    // And the other way round: management exhausted, crypto still served.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (ok, throttled) = flood(&server, &noisy, false, Duration::from_millis(300)).await;
    assert!(
        ok >= 3 && throttled > 0,
        "management {ok} ok, {throttled} throttled"
    );
    let r = random(&server, &noisy).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_product_counts_against_the_account_it_acts_for() {
    let (server, _dir) = start();
    let tenant = server.account("tenant");
    let other = server.account("other");
    let evs = product_credential(&server, "evs");
    let body = |account: &str| {
        format!(r#"{{"KeyId":"arn:aws:kms:us-east-1:{account}:alias_evs","NumberOfBytes":32}}"#)
    };
    // Served for the tenant (and creates its default key).
    let r = raw_post(
        &server.url,
        &evs,
        "TrentService.GenerateDataKey",
        &body(&tenant.account_id),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The tenant uses up its cryptographic budget itself ...
    let (_, throttled) = flood(&server, &tenant, true, Duration::from_millis(500)).await;
    assert!(throttled > 0);
    // ... so the product's request for it is throttled too,
    let r = raw_post(
        &server.url,
        &evs,
        "TrentService.GenerateDataKey",
        &body(&tenant.account_id),
    )
    .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "ThrottlingException"),
        "{r:?}"
    );
    // while the same product acting for another account is served.
    let r = raw_post(
        &server.url,
        &evs,
        "TrentService.GenerateDataKey",
        &body(&other.account_id),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sdk_retries_throttled_requests_until_they_succeed() {
    let (server, _dir) = start();
    let account = server.account("patient");

    // Without retries the SDK surfaces the error as AWS's.
    let no_retries = aws_sdk_kms::Client::from_conf(
        server
            .client(&account)
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    let mut codes = Vec::new();
    for _ in 0..10 {
        if let Err(e) = no_retries.generate_random().number_of_bytes(8).send().await {
            let status = e.raw_response().map(|r| r.status().as_u16());
            codes.push((common::code(&e), status));
        }
    }
    assert!(
        !codes.is_empty(),
        "10 requests at once were never throttled"
    );
    for c in &codes {
        assert_eq!(c, &("ThrottlingException".to_owned(), Some(400)));
    }

    // With the standard retry strategy (more attempts than the default 3,
    // since 20 requests at 5/s must wait up to 4 s), every request of 20
    // concurrent ones eventually succeeds.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let client = aws_sdk_kms::Client::from_conf(
        server
            .client(&account)
            .config()
            .to_builder()
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(12)
                    .with_max_backoff(Duration::from_secs(2)),
            )
            .build(),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.generate_random().number_of_bytes(8).send().await })
        })
        .collect();
    for t in tasks {
        let out = t.await.unwrap().expect("retried until served");
        assert_eq!(out.plaintext().unwrap().as_ref().len(), 8);
    }
    // 5 at once, then 5 a second: the last can only be served after ~3 s.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The server did refuse some of them: the retries were real.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(&server.log).unwrap();
    let throttled = log.matches("ThrottlingException").count();
    assert!(
        throttled > codes.len(),
        "{throttled} throttled answers logged:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
}
