//! `keywarden admin backup` / `restore` against a running server: an online
//! snapshot, restored under the running server, which serves the restored
//! state at once; refusals for missing confirmation, another root key and
//! files that are not backups.

use crate::common;

use common::{admin_json, code, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_load_and_restore_under_a_running_server() {
    let server = Server::start(common::BIN);
    let account = server.account("backup");
    let kms = server.client(&account);
    let kept = common::create_key(&kms).await;
    kms.create_alias()
        .alias_name("alias/kept")
        .target_key_id(&kept)
        .send()
        .await
        .unwrap();
    let blob = common::encrypt(&kms, "alias/kept", b"before the backup".to_vec()).await;

    // The backup runs while requests keep writing (keys created).
    let load = {
        let kms = kms.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                kms.create_key().send().await.unwrap();
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("kw.backup");
    let backup_arg = backup.to_str().unwrap();
    let out = tokio::task::spawn_blocking({
        let mut admin = server.admin_command(&["backup", "--out", backup_arg]);
        move || admin.output()
    })
    .await
    .unwrap()
    .unwrap();
    let info = admin_json(&out);
    load.await.unwrap();
    let keys_in_backup = info["Keys"].as_u64().unwrap();
    assert!((1..=21).contains(&keys_in_backup), "{info}");
    assert_eq!(info["Accounts"], 1);

    // A second backup to the same file is refused.
    let again = server.admin(&["backup", "--out", backup_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // After the backup: a new key, the alias deleted.
    let after = common::create_key(&kms).await;
    kms.delete_alias()
        .alias_name("alias/kept")
        .send()
        .await
        .unwrap();

    // Without --yes nothing changes.
    let refused = server.admin(&["restore", "--from", backup_arg]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    kms.describe_key().key_id(&after).send().await.unwrap();

    let restored = admin_json(&server.admin(&["restore", "--from", backup_arg, "--yes"]));
    assert_eq!(restored["Keys"].as_u64(), Some(keys_in_backup));

    // The running server serves the restored state (within its cache
    // refresh period).
    let mut seen = false;
    for _ in 0..50 {
        match kms.describe_key().key_id(&after).send().await {
            Err(e) if code(&e) == "NotFoundException" => {
                seen = true;
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert!(
        seen,
        "the key created after the backup is gone after the restore"
    );
    let plain = kms
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap()
        .plaintext
        .unwrap();
    assert_eq!(plain.as_ref(), b"before the backup");
    let via_alias = kms
        .describe_key()
        .key_id("alias/kept")
        .send()
        .await
        .unwrap();
    assert_eq!(via_alias.key_metadata.unwrap().key_id, kept);
    let listed = kms
        .list_keys()
        .limit(1000)
        .send()
        .await
        .unwrap()
        .keys
        .unwrap();
    assert_eq!(listed.len() as u64, keys_in_backup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restores_that_would_break_the_deployment_are_refused() {
    let first = Server::start(common::BIN);
    let account = first.account("one");
    let kms = first.client(&account);
    let key = common::create_key(&kms).await;
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("one.backup");
    let backup_arg = backup.to_str().unwrap();
    admin_json(&first.admin(&["backup", "--out", backup_arg]));

    // Another deployment (another root key) refuses it and keeps its data.
    let second = Server::start(common::BIN);
    let other = second.account("two");
    let out = second.admin(&["restore", "--from", backup_arg, "--yes"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another root key"), "{err}");
    second
        .client(&other)
        .list_keys()
        .send()
        .await
        .expect("the second deployment still serves its own account");

    // Files that are not backups.
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"not a database at all, just bytes").unwrap();
    for bad in [garbage.to_str().unwrap(), "/nonexistent/backup"] {
        let out = first.admin(&["restore", "--from", bad, "--yes"]);
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().count() <= 3 && !err.contains("panicked"),
            "{err}"
        );
    }
    kms.describe_key().key_id(&key).send().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_database_is_replaced_by_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_in(common::BIN, &data, dir.path().join("server.log"));
    let account = server.account("disaster");
    let kms = server.client(&account);
    let key = common::create_key(&kms).await;
    let blob = common::encrypt(&kms, &key, b"survives".to_vec()).await;
    let backup = dir.path().join("kw.backup");
    admin_json(&server.admin(&["backup", "--out", backup.to_str().unwrap()]));
    server.stop();

    // The disk ate the database.
    let live = data.join("keywarden.db");
    std::fs::write(&live, vec![0xA5; 64 * 1024]).unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", live.display()));
    }
    let out = server.admin(&["account", "list"]);
    assert!(!out.status.success(), "the corrupt database does not open");

    let restored =
        admin_json(&server.admin(&["restore", "--from", backup.to_str().unwrap(), "--yes"]));
    assert_eq!(restored["How"], "file replaced");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&live).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let server = Server::start_in(common::BIN, &data, dir.path().join("server.log"));
    let out = server
        .client(&account)
        .decrypt()
        .ciphertext_blob(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext.unwrap().as_ref(), b"survives");
}
