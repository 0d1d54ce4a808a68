//! Crash safety of deletion execution: many keys scheduled for deletion,
//! then a server whose clock is a week ahead (debug builds honour
//! `KEYWARDEN_TEST_CLOCK_OFFSET_DAYS`) destroys them in its sweep and is
//! killed with SIGKILL in the middle, several times. Afterwards every
//! scheduled key is either wholly gone or still pending deletion, never in
//! between; `keywarden admin check` passes after every crash; the keys that
//! were not scheduled are untouched and their ciphertexts decrypt.
//! (The offset is an environment variable of the server and its admin
//! commands only, never of the test process.)

use crate::common;

use std::time::Duration;

use common::{code, Options, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_execution_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut server = Server::start_in(common::BIN, &data, log.clone());
    let account = server.account("doomed");
    let kms = server.client(&account);
    let mut doomed = Vec::new();
    let mut kept = Vec::new();
    for i in 0..240 {
        let key = common::create_key(&kms).await;
        kms.create_alias()
            .alias_name(format!("alias/k{i}"))
            .target_key_id(&key)
            .send()
            .await
            .unwrap();
        if i % 6 == 0 {
            let blob = common::encrypt(&kms, &key, format!("kept {i}").into_bytes()).await;
            kept.push((key, blob, format!("kept {i}")));
        } else {
            kms.schedule_key_deletion()
                .key_id(&key)
                .pending_window_in_days(7)
                .send()
                .await
                .unwrap();
            doomed.push(key);
        }
    }
    server.stop();

    // Eight days later, the sweep (every second) destroys the doomed keys;
    // kill it part of the way through, up to five times.
    let mut remaining = Vec::new();
    for round in 0..5u64 {
        let mut ahead = Server::start_opts(
            common::BIN,
            &data,
            log.clone(),
            Options::new()
                .args(&["--deletion-sweep-secs", "1"])
                .env("KEYWARDEN_TEST_CLOCK_OFFSET_DAYS", "8"),
        );
        tokio::time::sleep(Duration::from_millis(40 + 60 * round)).await;
        ahead.kill9();
        let out = ahead.admin(&["check"]);
        assert!(
            out.status.success(),
            "admin check after crash {round}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("after crash {round}: {} keys left", report["Keys"]);
        remaining.push(report["Keys"].as_u64().unwrap());
        if remaining.last() == Some(&(kept.len() as u64)) {
            break;
        }
    }

    // Back to the real clock: each doomed key is gone (with its alias) or
    // still pending deletion with its alias; nothing in between.
    let server = Server::start_in(common::BIN, &data, log);
    let kms = server.client(&account);
    let (mut gone, mut pending) = (0, 0);
    for (i, key) in doomed.iter().enumerate() {
        match kms.describe_key().key_id(key).send().await {
            Err(e) => {
                assert_eq!(code(&e), "NotFoundException");
                gone += 1;
            }
            Ok(d) => {
                let state = d.key_metadata.unwrap().key_state.unwrap();
                assert_eq!(state.as_str(), "PendingDeletion", "{key}");
                pending += 1;
            }
        }
        let _ = i;
    }
    let aliases = kms.list_aliases().limit(1000).send().await.unwrap();
    let aliased: std::collections::BTreeSet<String> = aliases
        .aliases()
        .iter()
        .filter_map(|a| a.target_key_id().map(str::to_owned))
        .collect();
    for key in &doomed {
        let exists = kms.describe_key().key_id(key).send().await.is_ok();
        assert_eq!(
            aliased.contains(key),
            exists,
            "alias and key go together: {key}"
        );
    }
    for (key, blob, plaintext) in &kept {
        let out = kms
            .decrypt()
            .ciphertext_blob(blob.clone())
            .send()
            .await
            .unwrap();
        assert!(out.key_id.unwrap().ends_with(key.as_str()));
        assert_eq!(out.plaintext.unwrap().as_ref(), plaintext.as_bytes());
    }
    eprintln!(
        "{gone} of {} doomed keys destroyed across {} crashes, {pending} still pending",
        doomed.len(),
        remaining.len()
    );
    // At least one crash interrupted a sweep: some, not all, doomed keys
    // were destroyed at that point.
    let total = (doomed.len() + kept.len()) as u64;
    assert!(
        remaining
            .iter()
            .any(|&r| r < total && r > kept.len() as u64),
        "no crash fell in the middle of a sweep: {remaining:?}"
    );
    assert!(gone > 0);
}
