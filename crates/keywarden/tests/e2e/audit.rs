//! The audit log through the real binary (docs/audit.md): a workload of
//! served, refused and unauthenticated requests is recorded with the right
//! fields and nothing secret; `admin audit verify` passes and finds each
//! kind of tampering where it is; `admin audit query` filters; a failing
//! sink refuses requests and `/healthz` says so, until it recovers.

use crate::common;

use std::path::Path;
use std::time::Duration;

use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use common::{code, product_credential, query_post, raw_post, xml_text, Account, Server};
use serde_json::Value;

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `keywarden admin audit ...` with the server's data dir (and `extra`).
fn audit_cmd(server: &Server, args: &[&str], extra: &[&str]) -> std::process::Output {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    all.extend_from_slice(extra);
    server.admin(&all)
}

fn verify_json(server: &Server, extra: &[&str]) -> (bool, Value) {
    let out = audit_cmd(server, &["verify"], extra);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "verify prints JSON: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

fn query(server: &Server, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["query"];
    all.extend_from_slice(args);
    let out = audit_cmd(server, &all, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `GET /healthz`: status and body.
async fn healthz(url: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = url.strip_prefix("http://").unwrap().trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(authority).await.unwrap();
    s.write_all(
        format!("GET /healthz HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_recorded_nothing_secret_and_tampering_is_found() {
    let mut server = Server::start(common::BIN);
    let alice = server.account("alice");
    let bob = server.account("bob");
    let a = server.client(&alice);
    let b = server.client(&bob);

    // Served requests.
    let key = a.create_key().send().await.unwrap();
    let key_arn = key.key_metadata().unwrap().arn().unwrap().to_owned();
    let key_id = key.key_metadata().unwrap().key_id().to_owned();
    let plaintext = b"AUDIT-SENTINEL-PLAINTEXT-0123456789".to_vec();
    let ct = a
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(plaintext.clone()))
        .encryption_context("tenant", "SENTINEL-CONTEXT-VALUE")
        .send()
        .await
        .unwrap();
    let blob = ct.ciphertext_blob().unwrap().as_ref().to_vec();
    let dk = a
        .generate_data_key()
        .key_id(&key_arn)
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let dek = dk.plaintext().unwrap().as_ref().to_vec();
    let dek_blob = dk.ciphertext_blob().unwrap().as_ref().to_vec();
    let back = a
        .decrypt()
        .ciphertext_blob(Blob::new(blob.clone()))
        .encryption_context("tenant", "SENTINEL-CONTEXT-VALUE")
        .send()
        .await
        .unwrap();
    assert_eq!(back.plaintext().unwrap().as_ref(), plaintext.as_slice());

    // A product acting for alice (creates her default key).
    let evs = server.client(&product_credential(&server, "evs"));
    let evs_dk = evs
        .generate_data_key()
        .key_id(format!(
            "arn:aws:kms:us-east-1:{}:alias_evs",
            alice.account_id
        ))
        .number_of_bytes(32)
        .send()
        .await
        .unwrap();
    let default_arn = evs_dk.key_id().unwrap().to_owned();
    let evs_dek = evs_dk.plaintext().unwrap().as_ref().to_vec();

    // Refused: NotFound (another account's key), AccessDenied (crypto on a
    // default key by the account), Disabled.
    let e = b
        .encrypt()
        .key_id(&key_arn)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "NotFoundException");
    let e = a
        .encrypt()
        .key_id(&default_arn)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException");
    a.disable_key().key_id(&key_id).send().await.unwrap();
    let e = a
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "DisabledException");

    // Unauthenticated: a wrong secret, an unknown access key id.
    let forged = Account {
        secret_access_key: "WRONG-SECRET-WRONG-SECRET-WRONG-SECRET00".into(),
        ..alice.clone()
    };
    let body = format!(r#"{{"KeyId":"{key_id}","Plaintext":"QUJD"}}"#);
    let r = raw_post(&server.url, &forged, "TrentService.Encrypt", &body).await;
    assert_eq!(r.error_type(), "InvalidSignatureException");
    let stranger = Account {
        access_key_id: "AKIAUNKNOWNKEY000000".into(),
        ..forged.clone()
    };
    let r = raw_post(&server.url, &stranger, "TrentService.Encrypt", &body).await;
    assert_eq!(r.error_type(), "UnrecognizedClientException");

    // An IAM user without policies, refused by policy evaluation.
    let (status, _) = query_post(
        &server.url,
        &alice,
        "iam",
        "Action=CreateUser&Version=2010-05-08&UserName=carol",
    )
    .await;
    assert_eq!(status, 200);
    let (status, xml) = query_post(
        &server.url,
        &alice,
        "iam",
        "Action=CreateAccessKey&Version=2010-05-08&UserName=carol",
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    let carol = Account {
        account_id: alice.account_id.clone(),
        access_key_id: xml_text(&xml, "AccessKeyId").unwrap().to_owned(),
        secret_access_key: xml_text(&xml, "SecretAccessKey").unwrap().to_owned(),
    };
    a.enable_key().key_id(&key_id).send().await.unwrap();
    let e = server
        .client(&carol)
        .encrypt()
        .key_id(&key_id)
        .plaintext(Blob::new(b"x".to_vec()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "AccessDeniedException");

    // A graceful stop writes what is queued.
    server.stop();
    let path = server.data_dir.join("audit.log");
    let recs = records(&path);
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1, "{r}");
        assert!(r["time_ms"].as_i64().unwrap() > 1_600_000_000_000);
        assert!(r["request_id"].as_str().unwrap().len() == 36);
        assert!(r["source"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert_eq!(r["mac"].as_str().unwrap().len(), 64);
    }
    let find = |op: &str, pred: &dyn Fn(&Value) -> bool| -> Value {
        recs.iter()
            .find(|r| r["operation"] == op && pred(r))
            .unwrap_or_else(|| panic!("no {op} record: {recs:#?}"))
            .clone()
    };
    let create = find("TrentService.CreateKey", &|_| true);
    assert_eq!(create["status"], 200);
    assert_eq!(create["principal"], alice.access_key_id.as_str());
    assert_eq!(
        create["principal_arn"],
        format!("arn:aws:iam::{}:root", alice.account_id)
    );
    assert!(create.get("denied_by").is_none());
    assert_eq!(create["authenticated"], true);
    assert_eq!(create["account"], alice.account_id.as_str());
    assert_eq!(create["key_arns"][0], key_arn.as_str());
    let enc = find("TrentService.Encrypt", &|r| r["status"] == 200);
    assert_eq!(enc["keys"]["KeyId"], key_id.as_str());
    assert_eq!(enc["key_arns"][0], key_arn.as_str());
    assert_eq!(
        enc["context_keys"]["EncryptionContext"],
        serde_json::json!(["tenant"])
    );
    assert!(enc.get("context_values").is_none());
    let dec = find("TrentService.Decrypt", &|_| true);
    assert_eq!(dec["key_arns"][0], key_arn.as_str());
    assert!(dec.get("keys").is_none(), "Decrypt named no key: {dec}");
    let product = find("TrentService.GenerateDataKey", &|r| r["product"] == "evs");
    assert_eq!(product["account"], alice.account_id.as_str());
    assert_eq!(
        product["principal_arn"],
        "arn:aws:iam::000000000000:role/keywarden-product/evs"
    );
    assert_eq!(product["key_arns"][0], default_arn.as_str());
    for (ty, principal) in [
        ("NotFoundException", &bob),
        ("AccessDeniedException", &alice),
        ("DisabledException", &alice),
    ] {
        let r = find("TrentService.Encrypt", &|r| r["error_type"] == ty);
        assert_eq!(r["status"], 400, "{r}");
        assert_eq!(r["principal"], principal.access_key_id.as_str(), "{r}");
        assert_eq!(r["authenticated"], true, "{r}");
        assert!(r.get("keys").is_some(), "{r}");
    }
    let bad_sig = find("TrentService.Encrypt", &|r| {
        r["error_type"] == "InvalidSignatureException"
    });
    assert_eq!(bad_sig["principal"], alice.access_key_id.as_str());
    assert_eq!(bad_sig["authenticated"], false);
    assert!(bad_sig.get("account").is_none() && bad_sig.get("keys").is_none());
    let unknown = find("TrentService.Encrypt", &|r| {
        r["error_type"] == "UnrecognizedClientException"
    });
    assert_eq!(unknown["principal"], "AKIAUNKNOWNKEY000000");
    assert_eq!(unknown["authenticated"], false);
    assert!(unknown.get("principal_arn").is_none());
    // An IAM user refused by policy: its ARN and what decided.
    let denied = find("TrentService.Encrypt", &|r| {
        r["principal_arn"] == format!("arn:aws:iam::{}:user/carol", alice.account_id)
    });
    assert_eq!(denied["error_type"], "AccessDeniedException");
    assert_eq!(denied["denied_by"], "no-identity-policy-allows");
    let iam_create = find("iam:CreateUser", &|_| true);
    assert_eq!(iam_create["status"], 200);
    assert_eq!(iam_create["account"], alice.account_id.as_str());

    // Nothing secret, in any usual encoding.
    let raw = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (what, secret) in [
        ("plaintext", plaintext.as_slice()),
        ("DEK", dek.as_slice()),
        ("product DEK", evs_dek.as_slice()),
        ("ciphertext", blob.as_slice()),
        ("DEK ciphertext", dek_blob.as_slice()),
        ("secret key", alice.secret_access_key.as_bytes()),
        ("IAM user's secret key", carol.secret_access_key.as_bytes()),
        ("context value", b"SENTINEL-CONTEXT-VALUE".as_slice()),
    ] {
        for form in [
            b64.encode(secret),
            hex::encode(secret),
            hex::encode_upper(secret),
            String::from_utf8_lossy(secret).into_owned(),
        ] {
            assert!(!text.contains(&form), "the audit log holds the {what}");
        }
        // Also any 16-byte window of the raw bytes.
        if secret.len() >= 16 {
            assert!(
                !raw.windows(16).any(|w| w == &secret[..16]),
                "the audit log holds raw bytes of the {what}"
            );
        }
    }

    // Verify passes.
    let (ok, v) = verify_json(&server, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["Records"], recs.len() as u64);

    // Queries.
    let of_bob = query(&server, &["--account", &bob.account_id]);
    assert!(!of_bob.is_empty());
    assert!(of_bob
        .iter()
        .all(|r| r["account"] == bob.account_id.as_str()));
    let encrypts = query(&server, &["--operation", "Encrypt"]);
    assert_eq!(encrypts.len(), 7, "{encrypts:#?}");
    let on_key = query(&server, &["--key", &key_id]);
    assert!(on_key.len() >= 5, "{on_key:#?}");
    assert!(on_key.iter().all(|r| r.to_string().contains(&key_id)));
    assert_eq!(query(&server, &["--limit", "2"]).len(), 2);
    let first_ms = recs[0]["time_ms"].as_i64().unwrap();
    let last_ms = recs.last().unwrap()["time_ms"].as_i64().unwrap();
    assert_eq!(
        query(&server, &["--since", &(last_ms + 1).to_string()]).len(),
        0
    );
    assert_eq!(
        query(&server, &["--until", &(last_ms + 1).to_string()]).len(),
        recs.len()
    );
    assert_eq!(
        query(
            &server,
            &[
                "--since",
                "2000-01-01T00:00:00Z",
                "--until",
                &first_ms.to_string()
            ]
        )
        .len(),
        0
    );

    // Each tampering is found, at its line.
    let original = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    let mid = lines.len() / 2;
    let write = |ls: &[String]| {
        let mut t = ls.join("\n");
        t.push('\n');
        std::fs::write(&path, t).unwrap();
    };
    let owned = || lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    // Edit one field of a middle record.
    let mut ls = owned();
    let mut rec: Value = serde_json::from_str(&ls[mid]).unwrap();
    rec["status"] = serde_json::json!(if rec["status"] == 200 { 400 } else { 200 });
    ls[mid] = rec.to_string();
    write(&ls);
    let (ok, v) = verify_json(&server, &[]);
    assert!(!ok);
    assert_eq!(
        (v["Problem"].as_str(), v["Line"].as_u64()),
        (Some("edited"), Some(mid as u64 + 1)),
        "{v}"
    );
    // Delete a middle line.
    let mut ls = owned();
    ls.remove(mid);
    write(&ls);
    let (ok, v) = verify_json(&server, &[]);
    assert!(!ok);
    assert_eq!(
        (v["Problem"].as_str(), v["Line"].as_u64(), v["Seq"].as_u64()),
        (Some("removed"), Some(mid as u64 + 1), Some(mid as u64 + 2)),
        "{v}"
    );
    // Swap two lines.
    let mut ls = owned();
    ls.swap(mid, mid + 1);
    write(&ls);
    let (ok, v) = verify_json(&server, &[]);
    assert!(!ok);
    assert_eq!(
        (v["Problem"].as_str(), v["Line"].as_u64()),
        (Some("reordered"), Some(mid as u64 + 1)),
        "{v}"
    );
    // Truncate the last line.
    let mut ls = owned();
    ls.pop();
    write(&ls);
    let (ok, v) = verify_json(&server, &[]);
    assert!(!ok);
    assert_eq!(
        (v["Problem"].as_str(), v["Line"].as_u64()),
        (Some("truncated"), Some(lines.len() as u64)),
        "{v}"
    );
    // Restored, it verifies; and a restart continues the chain.
    std::fs::write(&path, &original).unwrap();
    assert!(verify_json(&server, &[]).0);
    let mut again = Server::start_in(common::BIN, &server.data_dir, server.log.clone());
    again.client(&alice).list_keys().send().await.unwrap();
    again.stop();
    let (ok, v) = verify_json(&server, &[]);
    assert!(ok, "{v}");
    assert_eq!(v["Records"], lines.len() as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_refuses_requests_until_it_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let audit_dir = tmp.path().join("audit");
    std::fs::create_dir(&audit_dir).unwrap();
    let config = tmp.path().join("keywarden.toml");
    std::fs::write(
        &config,
        format!(
            "[audit]\npath = \"{}\"\n",
            audit_dir.join("audit.log").display()
        ),
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let mut server = Server::start_with(
        common::BIN,
        &tmp.path().join("data"),
        tmp.path().join("server.log"),
        &["--config", config_arg],
    );
    let alice = server.account("alice");
    let a = server.client(&alice);
    let key_id = a
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_owned();
    let body = format!(r#"{{"KeyId":"{key_id}","Plaintext":"QUJD"}}"#);
    assert_eq!(healthz(&server.url).await.0, 200);

    // The audit directory goes away: the file the writer holds is no
    // longer at its path, and a new one cannot be created.
    let gone = tmp.path().join("audit.gone");
    std::fs::rename(&audit_dir, &gone).unwrap();
    let mut refused = None;
    for _ in 0..50 {
        let r = raw_post(&server.url, &alice, "TrentService.Encrypt", &body).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = refused.expect("requests are refused once the audit file cannot be written");
    assert_eq!(r.status, 500);
    assert_eq!(r.error_type(), "KMSInternalException");
    assert!(
        r.body["message"].as_str().unwrap().contains("audit log"),
        "{:?}",
        r.body
    );
    let (status, health) = healthz(&server.url).await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "unavailable");
    assert_eq!(health["failing"][0]["sink"], "audit");
    // Management requests are refused too.
    let r = raw_post(&server.url, &alice, "TrentService.ListKeys", "{}").await;
    assert_eq!((r.status, r.error_type()), (500, "KMSInternalException"));

    // It comes back: the writer reopens the file and writes what waited.
    std::fs::rename(&gone, &audit_dir).unwrap();
    let mut healthy = false;
    for _ in 0..50 {
        if healthz(&server.url).await.0 == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the server recovers when the audit file is back");
    let r = raw_post(&server.url, &alice, "TrentService.Encrypt", &body).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    server.stop();

    // Refused requests are in the log too, and the chain is whole.
    let recs = records(&audit_dir.join("audit.log"));
    assert!(recs
        .iter()
        .any(|r| r["status"] == 500 && r["error_type"] == "KMSInternalException"));
    let (ok, v) = verify_json(&server, &["--config", config_arg]);
    assert!(ok, "{v}");
    assert_eq!(v["Records"], recs.len() as u64);
}

/// One audit file has one writer: a second server on the same data dir
/// (so the same audit file) refuses to start and says why, and the first
/// keeps serving with an intact chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_of_one_audit_file_is_refused() {
    let server = Server::start(common::BIN);
    let tenant = server.account("solo");
    let client = server.client(&tenant);
    common::create_key(&client).await;
    let mut second = std::process::Command::new(common::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&server.data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a second server on the same audit file kept running"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    // It names the server already there, by pid, and the data dir.
    assert!(
        stderr.contains(&format!(
            "another Keywarden server (pid {}) is using data directory {}",
            server.pid(),
            server.data_dir.display()
        )),
        "{stderr}"
    );
    common::create_key(&client).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (ok, report) = verify_json(&server, &[]);
    assert!(ok, "{report}");
}
