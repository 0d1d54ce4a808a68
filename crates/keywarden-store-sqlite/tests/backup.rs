//! `backup_to` / `restore_from`: an online snapshot, restored into a live
//! database that another handle (another process, in production) shares.

use keywarden_core::clock::UnixMillis;
use keywarden_core::dump::DumpStore;
use keywarden_core::ids::AccountId;
use keywarden_core::model::Account;
use keywarden_core::store::{AccountStore, ChangeFeed, StoreError};
use keywarden_store_sqlite::SqliteStore;

fn account(n: u32) -> Account {
    Account {
        account_id: AccountId::parse(&format!("{n:012}")).unwrap(),
        name: format!("account {n}"),
        created_at: UnixMillis(1_700_000_000_000 + i64::from(n)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_writes_restores_to_a_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let live_path = dir.path().join("keywarden.db");
    let store = SqliteStore::open(&live_path).unwrap();
    let other = SqliteStore::open(&live_path).unwrap();
    for n in 0..20 {
        store.create_account(&account(n)).await.unwrap();
    }
    // Writes continue through the other handle while the backup runs.
    let writer = {
        let other = other.clone();
        tokio::spawn(async move {
            for n in 1000..1200 {
                other.create_account(&account(n)).await.unwrap();
            }
        })
    };
    let backup = dir.path().join("snapshot.db");
    store.backup_to(&backup).await.unwrap();
    writer.await.unwrap();

    let info = SqliteStore::inspect_backup(&backup).await.unwrap();
    assert!(info.accounts >= 20 && info.accounts <= 220, "{info:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The snapshot is a prefix of the writes: accounts 1000.. in order.
    let snapshot = SqliteStore::open(&dir.path().join("copy-check.db")).unwrap();
    snapshot.restore_from(&backup).await.unwrap();
    let got = snapshot.list_accounts().await.unwrap();
    assert_eq!(got.len() as u64, info.accounts);
    let late: Vec<u32> = got
        .iter()
        .map(|a| {
            a.name
                .trim_start_matches("account ")
                .parse::<u32>()
                .unwrap()
        })
        .filter(|n| *n >= 1000)
        .collect();
    let mut expected: Vec<u32> = (1000..1000 + late.len() as u32).collect();
    expected.sort_by_key(|n| account(*n).account_id.as_str().to_owned());
    let mut late_sorted = late.clone();
    late_sorted.sort_by_key(|n| account(*n).account_id.as_str().to_owned());
    assert_eq!(
        late_sorted, expected,
        "the backup holds a prefix of the writes"
    );

    // Restore into the live file: the other handle sees the restored state
    // and its change stamp moves.
    let before = other.change_stamp().await.unwrap();
    let dump_at_backup = snapshot.export_dump().await.unwrap();
    store.create_account(&account(5000)).await.unwrap();
    store.restore_from(&backup).await.unwrap();
    assert_eq!(other.export_dump().await.unwrap(), dump_at_backup);
    assert_eq!(store.export_dump().await.unwrap(), dump_at_backup);
    assert_ne!(other.change_stamp().await.unwrap(), before);
    assert!(other
        .get_account(&account(5000).account_id)
        .await
        .unwrap()
        .is_none());
    // The live database keeps working.
    store.create_account(&account(6000)).await.unwrap();
    assert!(other
        .get_account(&account(6000).account_id)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_backups_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("keywarden.db")).unwrap();
    store.create_account(&account(1)).await.unwrap();
    let before = store.export_dump().await.unwrap();

    let existing = dir.path().join("exists.db");
    std::fs::write(&existing, b"keep me").unwrap();
    assert!(matches!(
        store.backup_to(&existing).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let missing = dir.path().join("missing.db");
    let empty_sqlite = dir.path().join("other-app.db");
    rusqlite::Connection::open(&empty_sqlite)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    for bad in [&garbage, &missing, &existing, &empty_sqlite] {
        let err = store.restore_from(bad).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Backend(_)), "{bad:?}: {text}");
        assert!(SqliteStore::inspect_backup(bad).await.is_err(), "{bad:?}");
    }
    assert_eq!(store.export_dump().await.unwrap(), before);
}
