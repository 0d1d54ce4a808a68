//! Abuse cases against the real binary (docs/limits.md): huge headers,
//! slow clients, many connections, oversized and deeply nested JSON,
//! replayed signatures outside the clock-skew window, revoked credentials,
//! a product acting for an account that does not exist. Each gets a clear
//! answer within bounded time, and the server's memory (RSS from
//! `/proc/<pid>/status`) stays bounded while well-behaved clients are
//! served meanwhile.

use crate::common;

use std::time::{Duration, Instant, SystemTime};

use common::{authority, product_credential, raw_post, signed_request, Account, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const BODY_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_CONNECTIONS: usize = 32;

/// A server with small request and connection limits and no quotas in the
/// way.
fn start() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keywarden.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\ncrypto_per_second = 0\nmanage_per_second = 0\n\
             max_connections = {MAX_CONNECTIONS}\nheader_read_timeout_secs = {}\n\
             body_read_timeout_secs = {}\nmax_header_bytes = 16384\n",
            HEADER_TIMEOUT.as_secs(),
            BODY_TIMEOUT.as_secs()
        ),
    )
    .unwrap();
    let server = Server::start_with(
        common::BIN,
        &dir.path().join("data"),
        dir.path().join("server.log"),
        &["--config", config.to_str().unwrap()],
    );
    (server, dir)
}

/// The server's resident set size in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// A well-behaved request on a new connection: must be served.
async fn healthy(server: &Server, account: &Account) {
    let r = raw_post(
        &server.url,
        account,
        "TrentService.GenerateRandom",
        r#"{"NumberOfBytes":8}"#,
    )
    .await;
    assert_eq!(r.status, 200, "a well-behaved client was refused: {r:?}");
}

/// Reads until the server closes (or resets) the connection; what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

fn status_of(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_headers_are_refused_within_bounded_memory() {
    let (server, _dir) = start();
    let account = server.account("a");
    let addr = authority(&server.url).to_owned();
    healthy(&server, &account).await;
    let before = rss_kib(&server);

    // 1 MiB of headers, 20 clients at once, three shapes: many 1 KiB
    // headers, one 1 MiB header, and many tiny headers (over the count).
    let shapes: Vec<String> = vec![
        (0..1024)
            .map(|i| format!("x-pad-{i}: {}\r\n", "a".repeat(1000)))
            .collect(),
        format!("x-big: {}\r\n", "b".repeat(1 << 20)),
        (0..200).map(|i| format!("x-h{i}: 1\r\n")).collect(),
    ];
    let mut tasks = Vec::new();
    for i in 0..20 {
        let head = format!(
            "POST / HTTP/1.1\r\nhost: {addr}\r\n{}\r\n",
            shapes[i % shapes.len()]
        );
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            // The server may close before the client finished writing.
            let _ = stream.write_all(head.as_bytes()).await;
            let answer = read_until_closed(&mut stream).await;
            (status_of(&answer), started.elapsed())
        }));
    }
    // A well-behaved client is served meanwhile.
    healthy(&server, &account).await;
    for t in tasks {
        let (status, took) = t.await.unwrap();
        // 431, or the connection closed before an answer could be read.
        assert!(
            matches!(status, None | Some(431)),
            "huge headers answered {status:?}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
    }
    healthy(&server, &account).await;
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_off() {
    let (server, _dir) = start();
    let account = server.account("a");
    let addr = authority(&server.url).to_owned();

    // Slowloris: a header byte every 300 ms, never finishing.
    let slowloris = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            let head = b"POST / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            for b in head {
                if stream.write_all(&[*b]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                if started.elapsed() > Duration::from_secs(15) {
                    break;
                }
            }
            let answer = read_until_closed(&mut stream).await;
            (answer, started.elapsed())
        })
    };
    // A connection that never sends a byte, and one that stops after the
    // first (hyper waits for the protocol's first bytes without a timer;
    // the server's first-request deadline covers that).
    let mut silent = Vec::new();
    for prefix in [&b""[..], b"P"] {
        let addr = addr.clone();
        silent.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream.write_all(prefix).await.unwrap();
            let answer =
                tokio::time::timeout(Duration::from_secs(15), read_until_closed(&mut stream))
                    .await
                    .expect("a silent connection was never closed");
            (answer, started.elapsed())
        }));
    }
    // A signed request whose body trickles in a byte every 300 ms.
    let trickle = {
        let request = signed_request(
            &server.url,
            &account,
            "TrentService.GenerateRandom",
            r#"{"NumberOfBytes":8,                                                  "Pad":1}"#,
            SystemTime::now(),
            false,
        );
        let addr = addr.clone();
        tokio::spawn(async move {
            let (head, body) = request.split_once("\r\n\r\n").unwrap();
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream
                .write_all(format!("{head}\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let started = Instant::now();
            let (mut reader, mut writer) = stream.into_split();
            let body = body.as_bytes().to_vec();
            let writing = tokio::spawn(async move {
                for b in body {
                    if writer.write_all(&[b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            let mut first_answer = None;
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        first_answer.get_or_insert(started.elapsed());
                        answer.extend_from_slice(&buf[..n]);
                    }
                }
            }
            writing.abort();
            (answer, first_answer, started.elapsed())
        })
    };

    // Served meanwhile.
    healthy(&server, &account).await;

    let (answer, took) = slowloris.await.unwrap();
    let limit = HEADER_TIMEOUT + Duration::from_secs(2);
    assert!(
        took < limit,
        "slowloris held its connection {took:?} (answer {:?})",
        String::from_utf8_lossy(&answer)
    );
    for s in silent {
        let (answer, took) = s.await.unwrap();
        assert!(took < limit, "silent connection held {took:?}");
        assert!(answer.is_empty() || status_of(&answer).is_some());
    }
    let (answer, first, took) = trickle.await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), Some(408), "{text}");
    assert!(text.contains("RequestTimeoutException"), "{text}");
    let first = first.unwrap();
    assert!(
        first >= BODY_TIMEOUT && first < BODY_TIMEOUT + Duration::from_secs(2),
        "answered after {first:?}"
    );
    assert!(
        took < BODY_TIMEOUT + Duration::from_secs(4),
        "held {took:?}"
    );
    healthy(&server, &account).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_connections_wait_while_existing_clients_are_served() {
    let (server, _dir) = start();
    let account = server.account("a");
    let addr = authority(&server.url).to_owned();

    // An existing keep-alive client.
    let mut existing = TcpStream::connect(&addr).await.unwrap();
    let keep_alive_request = || {
        signed_request(
            &server.url,
            &account,
            "TrentService.GenerateRandom",
            r#"{"NumberOfBytes":8}"#,
            SystemTime::now(),
            false,
        )
    };
    let mut buf = vec![0u8; 65536];
    existing
        .write_all(keep_alive_request().as_bytes())
        .await
        .unwrap();
    let n = existing.read(&mut buf).await.unwrap();
    assert_eq!(status_of(&buf[..n]), Some(200));
    let served_at = Instant::now();
    let before = rss_kib(&server);

    // 300 connections, far beyond the cap of 32, each holding a partial
    // request head.
    // Beyond the cap they wait in the listen backlog (and, past it, in
    // the clients' SYN retries), so they connect from their own tasks.
    let flood: Vec<_> = (0..300)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let mut s = TcpStream::connect(&addr).await.unwrap();
                let _ = s.write_all(b"POST / HTTP/1.1\r\nhost: x\r\n").await;
                let _ = read_until_closed(&mut s).await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The existing client is served at once.
    let started = Instant::now();
    existing
        .write_all(keep_alive_request().as_bytes())
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(1), existing.read(&mut buf))
        .await
        .expect("the existing client waited")
        .unwrap();
    assert_eq!(
        status_of(&buf[..n]),
        Some(200),
        "{:?} after {:?} idle: {:?}",
        started.elapsed(),
        started - served_at,
        String::from_utf8_lossy(&buf[..n])
    );
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");

    // A new client waits for a slot: the flood's connections are admitted
    // 32 at a time and each is cut off after the header timeout, so it is
    // served within (300 / 32 + 1) header timeouts.
    let started = Instant::now();
    let fresh = tokio::time::timeout(Duration::from_secs(40), healthy(&server, &account)).await;
    assert!(fresh.is_ok(), "a new client was never served");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(1),
        "no wait at the cap: {waited:?}"
    );
    let grown = rss_kib(&server).saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    for t in flood {
        t.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_and_deeply_nested_json() {
    let (server, _dir) = start();
    let account = server.account("a");
    let evs = product_credential(&server, "evs");

    // Over the 256 KiB body limit: 413 before the body is read.
    let big = format!(
        r#"{{"NumberOfBytes":8,"Pad":"{}"}}"#,
        "x".repeat(300 * 1024)
    );
    let r = raw_post(&server.url, &account, "TrentService.GenerateRandom", &big).await;
    assert_eq!(
        (r.status, r.error_type()),
        (413, "ValidationException"),
        "{r:?}"
    );

    // 100,000 nested arrays (200 KB, under the size limit): serde_json's
    // recursion limit (128) answers SerializationException, no stack
    // overflow, in a known field and anywhere in a product's body (parsed
    // for its key ids before the operation).
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for (who, target, body) in [
        (
            &account,
            "TrentService.Encrypt",
            format!(r#"{{"KeyId":{nested},"Plaintext":"AA=="}}"#),
        ),
        (
            &evs,
            "TrentService.GenerateDataKey",
            format!(r#"{{"KeyId":"alias_evs","Extra":{nested}}}"#),
        ),
    ] {
        let r = raw_post(&server.url, who, target, &body).await;
        assert_eq!(
            (r.status, r.error_type()),
            (400, "SerializationException"),
            "{target}: {r:?}"
        );
    }
    // In a field the operation does not know, serde_json skips the value
    // without recursion (one byte of state per level, bounded by the body
    // limit) and the field is ignored like any unknown field.
    let r = raw_post(
        &server.url,
        &account,
        "TrentService.GenerateRandom",
        &format!(r#"{{"NumberOfBytes":8,"Extra":{nested}}}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // Deep objects in a known field.
    let objects = format!("{}1{}", r#"{"a":"#.repeat(40_000), "}".repeat(40_000));
    let r = raw_post(
        &server.url,
        &account,
        "TrentService.GenerateRandom",
        &format!(r#"{{"NumberOfBytes":{objects}}}"#),
    )
    .await;
    assert_eq!(
        (r.status, r.error_type()),
        (400, "SerializationException"),
        "{r:?}"
    );
    healthy(&server, &account).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signatures_outside_the_clock_skew_window_are_refused() {
    let (server, _dir) = start();
    let account = server.account("a");
    let addr = authority(&server.url).to_owned();
    let send = |time: SystemTime| {
        let request = signed_request(
            &server.url,
            &account,
            "TrentService.GenerateRandom",
            r#"{"NumberOfBytes":8}"#,
            time,
            true,
        );
        let addr = addr.clone();
        async move {
            let mut stream = TcpStream::connect(&addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            String::from_utf8(read_until_closed(&mut stream).await).unwrap()
        }
    };
    let now = SystemTime::now();
    // A request captured 20 minutes ago and replayed now.
    let answer = send(now - Duration::from_secs(20 * 60)).await;
    assert_eq!(status_of(answer.as_bytes()), Some(400), "{answer}");
    assert!(answer.contains("InvalidSignatureException"), "{answer}");
    assert!(answer.contains("Signature expired"), "{answer}");
    // Signed 20 minutes in the future.
    let answer = send(now + Duration::from_secs(20 * 60)).await;
    assert!(answer.contains("InvalidSignatureException"), "{answer}");
    assert!(answer.contains("Signature not yet current"), "{answer}");
    // Inside the window (14 minutes old) it is accepted, as AWS does.
    let answer = send(now - Duration::from_secs(14 * 60)).await;
    assert_eq!(status_of(answer.as_bytes()), Some(200), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revoked_credentials_and_missing_accounts() {
    let (server, _dir) = start();
    let account = server.account("a");
    healthy(&server, &account).await;

    let out = server.admin(&[
        "credentials",
        "revoke",
        "--access-key-id",
        &account.access_key_id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Other processes' changes reach the server within its 100 ms refresh.
    let deadline = Instant::now() + Duration::from_secs(2);
    let r = loop {
        let r = raw_post(
            &server.url,
            &account,
            "TrentService.GenerateRandom",
            r#"{"NumberOfBytes":8}"#,
        )
        .await;
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (r.status, r.error_type()),
        (400, "UnrecognizedClientException"),
        "{r:?}"
    );

    // A product acting for an account that does not exist: NotFound, as
    // for a key that does not exist; no default key is created.
    let evs = product_credential(&server, "evs");
    for key in [
        "arn:aws:kms:us-east-1:123456789012:alias_evs",
        "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555",
    ] {
        let r = raw_post(
            &server.url,
            &evs,
            "TrentService.GenerateDataKey",
            &format!(r#"{{"KeyId":"{key}","NumberOfBytes":32}}"#),
        )
        .await;
        assert_eq!(
            (r.status, r.error_type()),
            (400, "NotFoundException"),
            "{key}: {r:?}"
        );
    }
}
