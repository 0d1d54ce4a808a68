//! Several `PgStore`s on one database, like several nodes: migrations raced
//! at start-up, the change feed across stores, and the contract's races
//! across processes (each store has its own pool, so concurrent calls run
//! on different sessions, as on different nodes).

mod common;

use std::time::Duration;

use keywarden_core::billing::{Month, RequestCount};
use keywarden_core::clock::UnixMillis;
use keywarden_core::iam::{IamEntity, IamKind, IamUser};
use keywarden_core::ids::{KeyId, KeyringId, ProductCode};
use keywarden_core::model::{Credential, CredentialOwner, CredentialStatus};
use keywarden_core::model::{CryptoOperation, KeyringKeyVersion, KeyringRecord};
use keywarden_core::store::{
    AccountStore, ChangeFeed, CredentialStore, GrantQuery, GrantStore, IamStore, KeyQuery,
    KeyStore, KeyringStore, LedgerStore, MeteringStore, ProductStore, StoreError,
};
use keywarden_store_postgres::{PgOptions, PgStore};

async fn schema_rows(url: &str) -> i64 {
    common::raw_client(url)
        .await
        .query_one("SELECT count(*) FROM keywarden_schema", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let url = common::fresh_database("migrate_race");
    let racers: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PgStore::connect(&url, common::options()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for racer in racers {
        stores.push(racer.await.unwrap().expect("every racer connects"));
    }
    assert_eq!(schema_rows(&url).await, PgStore::schema_version());

    // Reconnecting to a migrated database changes nothing.
    drop(stores);
    let again = common::store(&url).await;
    assert_eq!(schema_rows(&url).await, PgStore::schema_version());
    drop(again);

    // A database migrated by a newer build is refused, saying so.
    common::raw_client(&url)
        .await
        .execute(
            "INSERT INTO keywarden_schema (version) VALUES ($1)",
            &[&(PgStore::schema_version() + 1)],
        )
        .await
        .unwrap();
    match PgStore::connect(&url, common::options()).await {
        Err(StoreError::Backend(e)) => {
            assert!(e.to_string().contains("newer than this build"), "{e}")
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_write_reaches_the_stamp_by_notification() {
    let url = common::fresh_database("notify");
    let a = common::store(&url).await;
    // Polling too rarely to matter: only a notification can be in time.
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
    // And it stays put while nothing is committed.
    let settled = b.change_stamp().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.change_stamp().await.unwrap(), settled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_notifications_the_poll_catches_up() {
    let url = common::fresh_database("poll");
    let a = common::store(&url).await;
    let poll = Duration::from_millis(200);
    let b = PgStore::connect(
        &url,
        PgOptions {
            listen: false,
            stamp_poll_interval: poll,
            ..common::options()
        },
    )
    .await
    .unwrap();
    let before = b.change_stamp().await.unwrap();
    a.create_account(&common::account(&common::account_id(200)))
        .await
        .unwrap();
    let moved = common::eventually(poll + Duration::from_millis(800), || async {
        b.change_stamp().await.unwrap() != before
    })
    .await;
    assert!(moved, "B's stamp must move within the poll interval");
}

/// Three stores on one database.
async fn three_nodes(label: &str) -> Vec<PgStore> {
    let url = common::fresh_database(label);
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(common::store(&url).await);
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_default_key_however_many_nodes_race() {
    let stores = three_nodes("default_key_race").await;
    let account = common::account_id(300);
    stores[0]
        .create_account(&common::account(&account))
        .await
        .unwrap();
    let code = ProductCode::parse("evs").unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let store = stores[i % 3].clone();
            let (key, alias) = common::default_key(&account, &code);
            tokio::spawn(async move { store.create_default_key(&key, &alias).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::AlreadyExists) => {}
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one creator wins");
    let keys = stores[1]
        .list_keys(&KeyQuery {
            account: Some(account.clone()),
            limit: 100,
            ..KeyQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "the losers wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_update_wins_across_nodes() {
    let stores = three_nodes("cas_race").await;
    let account = common::account_id(400);
    stores[0]
        .create_account(&common::account(&account))
        .await
        .unwrap();
    let key = common::key(&account);
    stores[0].insert_key(&key).await.unwrap();
    for round in 0..10u64 {
        let expected = key.revision + round;
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let store = stores[i].clone();
                let mut update = key.clone();
                update.revision = expected + 1;
                update.description = format!("round {round} writer {i}");
                tokio::spawn(async move { store.update_key(&update, expected).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let wins = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Ok(()) | Err(StoreError::Conflict))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_limits_hold_across_nodes() {
    let stores = three_nodes("grant_race").await;
    let account = common::account_id(500);
    stores[0]
        .create_account(&common::account(&account))
        .await
        .unwrap();
    let key = common::key(&account);
    stores[0].insert_key(&key).await.unwrap();
    const LIMIT: usize = 10;
    for i in 0..LIMIT - 3 {
        let g = common::grant(&key, &format!("pre-{i:02}"), &format!("grantee-{i}"));
        stores[0].create_grant(&g, LIMIT, 100).await.unwrap();
    }
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = stores[i % 3].clone();
            let g = common::grant(&key, &format!("race-{i:02}"), "racer");
            tokio::spawn(async move { store.create_grant(&g, LIMIT, 100).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => won += 1,
            Err(StoreError::LimitExceeded) => {}
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!(won, 3);
    let grants = stores[2]
        .list_grants(&GrantQuery::account(&account, 1000))
        .await
        .unwrap();
    assert_eq!(grants.len(), LIMIT);

    // The per-grantee limit too.
    let other = common::key(&account);
    stores[0].insert_key(&other).await.unwrap();
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let store = stores[i % 3].clone();
            let g = common::grant(&other, &format!("per-grantee-{i:02}"), "same");
            tokio::spawn(async move { store.create_grant(&g, 100, 2).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        if task.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_months_charges_post_once_across_nodes() {
    let stores = three_nodes("charges_race").await;
    let account = common::account_id(600);
    stores[0]
        .create_account(&common::account(&account))
        .await
        .unwrap();
    stores[0]
        .append_top_up(&account, 1_000, UnixMillis(1), "start", None)
        .await
        .unwrap();
    let month = Month::of(UnixMillis(1_700_000_000_000));
    for (round, total) in [700i64, 700, 1_500].into_iter().enumerate() {
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let store = stores[i % 3].clone();
                let account = account.clone();
                tokio::spawn(async move {
                    store
                        .post_charges(&account, month, total, UnixMillis(2 + i as i64))
                        .await
                })
            })
            .collect();
        let mut posted = 0;
        for task in tasks {
            let (entry, _) = task.await.unwrap().unwrap();
            posted += usize::from(entry.is_some());
        }
        let expected = if round == 1 { 0 } else { 1 };
        assert_eq!(posted, expected, "round {round}");
    }
    let standing = stores[1].standing(&account).await.unwrap();
    assert_eq!(standing.balance, 1_000 - 1_500);
    assert!(standing.frozen);
    let charges: i64 = stores[2]
        .ledger(&account, None, 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.month == Some(month))
        .map(|e| e.amount)
        .sum();
    assert_eq!(charges, 1_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_referenced_top_up_credits_once_across_nodes() {
    let stores = three_nodes("top_up_reference_race").await;
    let account = common::account_id(650);
    stores[0]
        .create_account(&common::account(&account))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % 3].clone();
            let account = account.clone();
            tokio::spawn(async move {
                store
                    .append_top_up(
                        &account,
                        2_500,
                        UnixMillis(10 + i as i64),
                        "retried",
                        Some("txn-0001"),
                    )
                    .await
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        let (entry, standing) = task.await.unwrap().unwrap();
        assert_eq!(entry.reference.as_deref(), Some("txn-0001"));
        assert_eq!(standing.balance, 2_500);
        seqs.push(entry.seq);
    }
    assert!(seqs.iter().all(|s| *s == seqs[0]), "{seqs:?}");
    let ledger = stores[1].ledger(&account, None, 100).await.unwrap();
    assert_eq!(ledger.len(), 1, "{ledger:?}");
    assert_eq!(ledger[0].seq, seqs[0]);
    assert_eq!(stores[2].standing(&account).await.unwrap().balance, 2_500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metering_batch_counts_once_across_nodes() {
    let stores = three_nodes("metering_race").await;
    let account = common::account_id(700);
    stores[0]
        .create_account(&common::account(&account))
        .await
        .unwrap();
    let key = common::key(&account);
    let month = Month::of(UnixMillis(1_700_000_000_000));
    let counts = vec![RequestCount {
        account_id: account.clone(),
        key_id: key.key_id,
        operation: CryptoOperation::Encrypt,
        month,
        count: 3,
    }];
    for batch in 0..10 {
        let tasks: Vec<_> = (0..2)
            .map(|i| {
                let store = stores[i].clone();
                let counts = counts.clone();
                tokio::spawn(async move {
                    store
                        .record_requests(&format!("batch-{batch}"), &counts)
                        .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    }
    let recorded = stores[2].request_counts(&account, month).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].count, 30);
}

/// A database that went back (a failover that lost the last commits, a
/// restored backup) has a lower change counter than a node saw: the node
/// notices, and every later change counts again, rather than being ignored
/// until the counter passes its old high mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_went_back_does_not_hide_later_changes() {
    let url = common::fresh_database("regress");
    let a = common::store(&url).await;
    let b = common::store(&url).await;
    for n in 0..5 {
        a.create_account(&common::account(&common::account_id(300 + n)))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = b.change_stamp().await.unwrap();
    // The database "goes back" by ten commits.
    common::raw_client(&url)
        .await
        .execute("UPDATE changes SET counter = counter - 10", &[])
        .await
        .unwrap();
    let noticed = common::eventually(Duration::from_secs(3), || async {
        b.change_stamp().await.unwrap() != before
    })
    .await;
    assert!(noticed, "B notices the counter went back (two polls)");
    // Now a change through A, whose counter value is below B's old high
    // mark, still reaches B.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = b.change_stamp().await.unwrap();
    a.create_account(&common::account(&common::account_id(399)))
        .await
        .unwrap();
    let moved = common::eventually(Duration::from_secs(1), || async {
        b.change_stamp().await.unwrap() != settled
    })
    .await;
    assert!(
        moved,
        "a change after the counter went back reaches B within 1 s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_keyring_rotations_have_one_winner_across_nodes() {
    let url = common::fresh_database("keyring_race");
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(common::store(&url).await);
    }
    let account = common::account_id(800);
    let mut created = Vec::new();
    for s in &stores {
        created.push(s.change_stamp().await.unwrap());
    }
    stores[0]
        .create_account(&common::account(&account))
        .await
        .unwrap();
    // Every node has seen the account's commit (by notification) before
    // the stamps are taken, so only the keyring writes could move them.
    for (s, before) in stores.iter().zip(created) {
        let seen = common::eventually(Duration::from_secs(2), || async {
            s.change_stamp().await.unwrap() != before
        })
        .await;
        assert!(seen, "every node sees the account's commit");
    }
    let keyring = KeyringRecord {
        id: KeyringId::from_random([8; 16]),
        account_id: account.clone(),
        name: "race".into(),
        product: ProductCode::parse("mysql").unwrap(),
        key_id: KeyId::from_bytes([8; 16]),
        token_hash: None,
        token_issued_at: None,
        created_at: UnixMillis(1),
        revision: 1,
    };
    let version = |n: u32, marker: u8| KeyringKeyVersion {
        keyring_id: keyring.id.clone(),
        key_number: 1,
        version: n,
        ciphertext: vec![marker; 40],
        created_at: UnixMillis(i64::from(n)),
    };
    stores[0]
        .create_keyring(&keyring, &[version(1, 0)])
        .await
        .unwrap();
    let stamps: Vec<u64> = {
        let mut stamps = Vec::new();
        for s in &stores {
            stamps.push(s.change_stamp().await.unwrap());
        }
        stamps
    };
    // Another session holds the keyring's row lock while the racers start,
    // so they all overlap: each has to wait for it, then for each other.
    let mut gate = common::raw_client(&url).await;
    let gate_tx = gate.transaction().await.unwrap();
    gate_tx
        .execute(
            "SELECT 1 FROM keyrings WHERE id = $1 FOR UPDATE",
            &[&keyring.id.as_str()],
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20u8)
        .map(|i| {
            let store = stores[usize::from(i) % 3].clone();
            let v = version(2, i + 1);
            tokio::spawn(async move { store.add_keyring_key_version(&v).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gate_tx.commit().await.unwrap();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(()) => winners.push(i),
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected failure: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one rotation wins: {winners:?}");
    let stored = stores[2]
        .list_keyring_key_versions(&keyring.id)
        .await
        .unwrap();
    assert_eq!(
        stored,
        vec![version(1, 0), version(2, winners[0] as u8 + 1)],
        "the winner's version, and nothing else, is stored"
    );
    // Keyring writes do not move any node's change stamp.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (s, before) in stores.iter().zip(stamps) {
        assert_eq!(s.change_stamp().await.unwrap(), before);
    }
}

/// A database of schema 4 (before IAM) upgrades: its credentials keep
/// their owners, and user names are accepted beside an account only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_iam_upgrades() {
    let url = common::fresh_database("iam_upgrade");
    let account = common::account_id(7);
    drop(common::store(&url).await);
    // Back to schema 4, as an older build left it, with an account key.
    let raw = common::raw_client(&url).await;
    raw.batch_execute(&format!(
        "ALTER TABLE aliases DROP CONSTRAINT aliases_pkey;
         ALTER TABLE aliases DROP COLUMN region;
         ALTER TABLE aliases ADD PRIMARY KEY (account_id, name);
         DELETE FROM keywarden_schema WHERE version = 7;
         DROP TABLE custom_key_stores;
         DROP INDEX key_versions_protector;
         DELETE FROM keywarden_schema WHERE version = 6;
         DROP TABLE iam_entities;
         ALTER TABLE credentials DROP COLUMN user_name;
         DELETE FROM keywarden_schema WHERE version = 5;
         INSERT INTO accounts VALUES ('{a}', 'old', 1);
         INSERT INTO products VALUES ('evs', 'Storage', 'Active', 1);
         INSERT INTO credentials VALUES ('AKIAOLD', '{a}', NULL, '\\x01', 'Active', 2);",
        a = account.as_str()
    ))
    .await
    .unwrap();
    let store = common::store(&url).await;
    assert_eq!(schema_rows(&url).await, PgStore::schema_version());
    let old = store.get_credential("AKIAOLD").await.unwrap().unwrap();
    assert_eq!(old.owner, CredentialOwner::Account(account.clone()));
    assert_eq!(old.sealed_secret, vec![1]);
    for (id, account_id, product) in [
        ("AKIABAD1", None::<&str>, Some("evs")),
        ("AKIABAD2", None, None),
    ] {
        let refused = raw
            .execute(
                "INSERT INTO credentials (access_key_id, account_id, product_code, user_name,
                                          sealed_secret, status, created_at)
                 VALUES ($1, $2, $3, 'bob', '\\x01', 'Active', 3)",
                &[&id, &account_id, &product],
            )
            .await;
        assert!(refused.is_err(), "{id}: a user name needs an account");
    }
    let user = Credential {
        access_key_id: "AKIAUSER".into(),
        owner: CredentialOwner::User {
            account: account.clone(),
            user_name: "bob".into(),
        },
        sealed_secret: vec![2],
        status: CredentialStatus::Active,
        created_at: UnixMillis(4),
    };
    store.create_credential(&user).await.unwrap();
    assert_eq!(store.get_credential("AKIAUSER").await.unwrap(), Some(user));
}

/// An IAM write or a user key's deactivation on one node reaches another
/// node's change stamp by notification: the other node drops the key, or
/// the identity, from its caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_changes_reach_other_nodes() {
    let url = common::fresh_database("iam_notify");
    let a = common::store(&url).await;
    let b = PgStore::connect(
        &url,
        PgOptions {
            stamp_poll_interval: Duration::from_secs(600),
            ..common::options()
        },
    )
    .await
    .unwrap();
    let account = common::account_id(8);
    a.create_account(&common::account(&account)).await.unwrap();
    let user = IamEntity::User(IamUser {
        account_id: account.clone(),
        name: "Bob".into(),
        path: "/".into(),
        user_id: "AIDABOB".into(),
        created_at: UnixMillis(1),
        tags: Vec::new(),
    });
    let key = Credential {
        access_key_id: "AKIABOB".into(),
        owner: CredentialOwner::User {
            account: account.clone(),
            user_name: "Bob".into(),
        },
        sealed_secret: vec![3],
        status: CredentialStatus::Active,
        created_at: UnixMillis(2),
    };
    a.create_credential(&key).await.unwrap();
    for step in 0..3 {
        let before = b.change_stamp().await.unwrap();
        match step {
            0 => a.create_iam_entity(&user).await.unwrap(),
            1 => assert!(a
                .set_credential_status("AKIABOB", CredentialStatus::Inactive)
                .await
                .unwrap()),
            _ => assert!(a
                .delete_iam_entity(&account, IamKind::User, "bob")
                .await
                .unwrap()),
        }
        let moved = common::eventually(Duration::from_secs(1), || async {
            b.change_stamp().await.unwrap() != before
        })
        .await;
        assert!(
            moved,
            "step {step}: B's stamp must move within 1 s of A's commit"
        );
    }
    assert_eq!(
        b.get_credential("AKIABOB").await.unwrap().map(|c| c.status),
        Some(CredentialStatus::Inactive)
    );
}
