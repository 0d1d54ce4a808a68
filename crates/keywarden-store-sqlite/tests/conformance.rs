//! The store conformance suite against SQLite (one test per case, each on a
//! fresh database file), plus what only SQLite has: a file on disk, its
//! permissions, migrations, and several connections (or processes) sharing
//! one file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::{Account, KeyManager, KeyRecord, KeyState, KeyVersion, Origin, Tag};
use keywarden_core::store::{AccountStore, KeyQuery, KeyStore, StoreError};
use keywarden_store_sqlite::SqliteStore;

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("keywarden.db")
}

fn account(n: u8) -> AccountId {
    AccountId::from_random([n; 12])
}

fn key(n: u128, account: &AccountId) -> KeyRecord {
    KeyRecord {
        key_id: KeyId::from_bytes(n.to_be_bytes()),
        account_id: account.clone(),
        revision: 1,
        description: format!("key {n}"),
        state: KeyState::Enabled,
        origin: Origin::AwsKms,
        key_manager: KeyManager::Customer,
        created_at: UnixMillis(1_700_000_000_000),
        deletion_date: None,
        pending_window_days: None,
        tags: vec![Tag {
            key: "n".into(),
            value: n.to_string(),
        }],
        policy: None,
        versions: vec![KeyVersion {
            version: 1,
            protector: "soft".into(),
            material: vec![n as u8; 40],
            created_at: UnixMillis(1_700_000_000_000),
            rotation: None,
        }],
        rotation: None,
        on_demand_rotations: 0,
        deletion_protection: false,
        import: None,
        default_for: None,
        kind: keywarden_core::key_spec::KeyKind::default(),
        region: None,
        multi_region: None,
    }
}

/// A fresh database file for one conformance case; the directory holding
/// it is removed when the case's test ends.
async fn fresh_store(_case: &'static str) -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    (store, dir)
}

mod conformance {
    keywarden_core::store_conformance_tests!(super::fresh_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_runs_twice_against_one_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    keywarden_core::conformance::run(&store).await;
    drop(store);
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    keywarden_core::conformance::run(&store).await;
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let a = account(1);
    let k = key(42, &a);
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .create_account(&Account {
                account_id: a.clone(),
                name: "one".into(),
                created_at: UnixMillis(5),
            })
            .await
            .unwrap();
        store.insert_key(&k).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.get_key(&a, &k.key_id).await.unwrap(), Some(k));
    assert_eq!(store.list_accounts().await.unwrap().len(), 1);
}

#[cfg(unix)]
#[tokio::test]
async fn database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).unwrap();
    store.insert_key(&key(1, &account(1))).await.unwrap();
    assert_eq!(mode(&path), 0o600, "database file");
    for suffix in ["-wal", "-shm"] {
        let companion = PathBuf::from(format!("{}{suffix}", path.display()));
        if companion.exists() {
            assert_eq!(mode(&companion), 0o600, "{suffix} file");
        }
    }
    drop(store);

    // An existing file with loose permissions is tightened.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = SqliteStore::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600, "tightened database file");
}

#[tokio::test]
async fn pragmas_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let _store = SqliteStore::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 13);
}

#[tokio::test]
async fn migrations_are_idempotent_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let a = account(2);
    let k = key(7, &a);
    SqliteStore::open(&path)
        .unwrap()
        .insert_key(&k)
        .await
        .unwrap();
    for _ in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get_key(&a, &k.key_id).await.unwrap(), Some(k.clone()));
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 13);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 20);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn corrupted_rows_are_backend_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).unwrap();
    let a = account(3);
    let bad_meta = key(1, &a);
    let bad_state = key(2, &a);
    let bad_version = key(3, &a);
    for k in [&bad_meta, &bad_state, &bad_version] {
        store.insert_key(k).await.unwrap();
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE keys SET meta = '{not json' WHERE key_id = ?1",
        [bad_meta.key_id.to_string()],
    )
    .unwrap();
    conn.execute(
        "UPDATE keys SET state = 'Exploded' WHERE key_id = ?1",
        [bad_state.key_id.to_string()],
    )
    .unwrap();
    conn.execute(
        "UPDATE key_versions SET version = -1 WHERE key_id = ?1",
        [bad_version.key_id.to_string()],
    )
    .unwrap();
    drop(conn);
    for k in [&bad_meta, &bad_state, &bad_version] {
        assert!(
            matches!(
                store.get_key(&a, &k.key_id).await,
                Err(StoreError::Backend(_))
            ),
            "{}",
            k.description
        );
    }
    assert!(matches!(
        store
            .list_keys(&KeyQuery {
                account: Some(a),
                limit: 10,
                ..KeyQuery::default()
            })
            .await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn duplicate_version_numbers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&db_path(&dir)).unwrap();
    let a = account(4);
    let mut k = key(1, &a);
    k.versions.push(k.versions[0].clone());
    assert!(matches!(
        store.insert_key(&k).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(store.get_key(&a, &k.key_id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let server = SqliteStore::open(&path).unwrap();
    let cli = SqliteStore::open(&path).unwrap();
    let a = account(5);

    let k = key(9, &a);
    server.insert_key(&k).await.unwrap();
    assert_eq!(cli.get_key(&a, &k.key_id).await.unwrap(), Some(k.clone()));

    let mut updated = k.clone();
    updated.revision = 2;
    updated.state = KeyState::Disabled;
    cli.update_key(&updated, 1).await.unwrap();
    assert_eq!(
        server.get_key(&a, &k.key_id).await.unwrap(),
        Some(updated.clone())
    );

    // Compare-and-set holds across connections.
    let mut stale = k.clone();
    stale.revision = 2;
    assert!(matches!(
        server.update_key(&stale, 1).await,
        Err(StoreError::Conflict)
    ));

    // Concurrent writers on both connections: nothing lost, nothing busy.
    let write = |store: SqliteStore, base: u128| {
        let a = a.clone();
        tokio::spawn(async move {
            for n in base..base + 50 {
                store.insert_key(&key(n, &a)).await.unwrap();
            }
        })
    };
    let (x, y) = tokio::join!(write(server.clone(), 1000), write(cli.clone(), 2000));
    x.unwrap();
    y.unwrap();
    let listed = server
        .list_keys(&KeyQuery {
            account: Some(a.clone()),
            limit: 1000,
            ..KeyQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 101);
}

/// Where the child process of `two_processes_share_one_file` finds the
/// database.
const CHILD_ENV: &str = "KEYWARDEN_SQLITE_TEST_CHILD_DB";

/// Runs as the second process of `two_processes_share_one_file` (the test
/// binary re-executes itself with `--ignored`); ignored in a normal test
/// run, where it would have nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the second process of two_processes_share_one_file, which runs it"]
async fn child_process_writer() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = SqliteStore::open(Path::new(&path)).unwrap();
    std::fs::write(ready_marker(Path::new(&path)), b"").unwrap();
    contend(&store, 2).await;
}

fn ready_marker(db: &Path) -> PathBuf {
    db.with_extension("child-ready")
}

/// Inserts 40 keys and bumps a shared counter key 40 times with
/// compare-and-set retries.
async fn contend(store: &SqliteStore, who: u128) {
    let a = account(6);
    for n in 0..40 {
        store.insert_key(&key(who * 1000 + n, &a)).await.unwrap();
        loop {
            let mut k = store
                .get_key(&a, &KeyId::from_bytes(1u128.to_be_bytes()))
                .await
                .unwrap()
                .expect("shared key");
            let expected = k.revision;
            k.revision += 1;
            match store.update_key(&k, expected).await {
                Ok(()) => break,
                Err(StoreError::Conflict) => continue,
                Err(e) => panic!("update failed: {e}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_file() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let store = SqliteStore::open(&path).unwrap();
    let a = account(6);
    store.insert_key(&key(1, &a)).await.unwrap();

    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_writer",
            "--ignored",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Start contending only once the child has the file open.
    let started = std::time::Instant::now();
    while !ready_marker(&path).exists() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the child process never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    contend(&store, 1).await;
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "child process failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let shared = store
        .get_key(&a, &KeyId::from_bytes(1u128.to_be_bytes()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(shared.revision, 81, "every compare-and-set bump must land");
    let listed = store
        .list_keys(&KeyQuery {
            account: Some(a),
            limit: 1000,
            ..KeyQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.len(), 81);
}

#[test]
fn concurrent_first_opens_of_a_new_file() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || SqliteStore::open(&path).map(drop))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }
}

/// Export, import into a fresh file, export again: equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_round_trip() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let source = SqliteStore::open(&db_path(&a)).unwrap();
    let target = SqliteStore::open(&db_path(&b)).unwrap();
    keywarden_core::conformance::dump_round_trip(&source, &target).await;
}
