//! `DumpStore`: a store filled through the traits, exported, imported into
//! a fresh database and exported again, is the same store.

mod common;

use keywarden_core::billing::{Month, RequestCount};
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::ProductCode;
use keywarden_core::model::{
    AliasRecord, AutoRotation, Credential, CredentialOwner, CredentialStatus, CryptoOperation,
    ImportState, KeyUsage, KeyVersion, MaterialExpiration, Origin, Product, ProductClass,
    ProductStatus, RotationType, Tag,
};
use keywarden_core::store::{
    AccountStore, AliasStore, ChangeFeed, CredentialStore, GrantStore, KeyStore, LedgerStore,
    MeteringStore, ProductStore, StoreError, UsageStore,
};
use keywarden_store_postgres::{DumpStore, PgStore};

async fn fill(store: &PgStore) {
    let a = common::account_id(1);
    let b = common::account_id(2);
    for id in [&a, &b] {
        store.create_account(&common::account(id)).await.unwrap();
    }
    let code = ProductCode::parse("rds").unwrap();
    store
        .create_product(&Product {
            code: code.clone(),
            class: ProductClass::Database,
            status: ProductStatus::Active,
            created_at: UnixMillis(5),
        })
        .await
        .unwrap();
    for (i, owner) in [
        CredentialOwner::Account(a.clone()),
        CredentialOwner::Account(b.clone()),
        CredentialOwner::Product(code.clone()),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .create_credential(&Credential {
                access_key_id: format!("AKIADUMP{i}"),
                owner,
                sealed_secret: vec![i as u8; 48],
                status: CredentialStatus::Active,
                created_at: UnixMillis(6),
            })
            .await
            .unwrap();
    }
    store.revoke_credential("AKIADUMP1").await.unwrap();

    // A key with every optional field, rotated twice.
    let mut rich = common::key(&a);
    rich.description = "rich \u{2713} \"quoted\"".into();
    rich.tags = vec![Tag {
        key: "team".into(),
        value: "vault".into(),
    }];
    rich.policy = Some(r#"{"Version":"2012-10-17"}"#.into());
    rich.origin = Origin::External;
    rich.import = Some(ImportState {
        fingerprint: vec![0xaa; 32],
        expiration: Some(MaterialExpiration::ValidTo(UnixMillis(1_800_000_000_000))),
    });
    rich.rotation = Some(AutoRotation {
        period_days: 90,
        next_rotation: UnixMillis(1_710_000_000_000),
    });
    rich.deletion_protection = true;
    rich.on_demand_rotations = 1;
    for (v, rotation) in [(2, RotationType::Automatic), (3, RotationType::OnDemand)] {
        rich.versions.push(KeyVersion {
            version: v,
            protector: "soft".into(),
            material: vec![v as u8; 40],
            created_at: UnixMillis(1_700_000_000_000 + i64::from(v)),
            rotation: Some(rotation),
        });
    }
    store.insert_key(&rich).await.unwrap();
    let plain = common::key(&b);
    store.insert_key(&plain).await.unwrap();
    let (default_key, default_alias) = common::default_key(&b, &code);
    store
        .create_default_key(&default_key, &default_alias)
        .await
        .unwrap();
    // A destroyed key leaves its lifetime behind.
    let mut doomed = common::key(&a);
    store.insert_key(&doomed).await.unwrap();
    doomed.revision = 2;
    doomed.state = keywarden_core::model::KeyState::PendingDeletion;
    doomed.deletion_date = Some(UnixMillis(1_700_500_000_000));
    store.update_key(&doomed, 1).await.unwrap();
    store
        .destroy_key(&a, &doomed.key_id, doomed.revision)
        .await
        .unwrap();

    store
        .create_alias(&AliasRecord {
            account_id: a.clone(),
            name: keywarden_core::ids::AliasName::parse_user("alias/rich").unwrap(),
            target: rich.key_id,
            region: Some("eu-west-1".into()),
            created_at: UnixMillis(7),
            updated_at: UnixMillis(8),
            revision: 1,
        })
        .await
        .unwrap();
    for (i, grantee) in ["alice", "bob"].into_iter().enumerate() {
        store
            .create_grant(&common::grant(&rich, &format!("g{i}"), grantee), 50, 50)
            .await
            .unwrap();
    }
    store
        .record_key_usage(&[KeyUsage {
            account_id: a.clone(),
            key_id: rich.key_id,
            used_at: UnixMillis(1_700_000_001_000),
            operation: CryptoOperation::Decrypt,
            principal: "AKIADUMP0".into(),
            request_id: "req-1".into(),
        }])
        .await
        .unwrap();
    let month = Month::of(UnixMillis(1_700_000_000_000));
    store
        .record_requests(
            "dump-batch",
            &[RequestCount {
                account_id: a.clone(),
                key_id: rich.key_id,
                operation: CryptoOperation::Encrypt,
                month,
                count: 42,
            }],
        )
        .await
        .unwrap();
    // Account a in credit, account b frozen.
    store
        .append_top_up(&a, 10_000, UnixMillis(10), "welcome", None)
        .await
        .unwrap();
    store
        .post_charges(&a, month, 2_500, UnixMillis(11))
        .await
        .unwrap();
    store
        .post_charges(&b, month, 300, UnixMillis(12))
        .await
        .unwrap();
    assert!(store.standing(&b).await.unwrap().frozen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_import_export_is_the_identity() {
    let source = common::store(&common::fresh_database("dump_source")).await;
    fill(&source).await;
    let dump = source.export_dump().await.unwrap();
    assert_eq!(dump.accounts.len(), 2);
    assert_eq!(dump.keys.len(), 3);
    assert_eq!(dump.key_lifetimes.len(), 4, "the destroyed key's too");
    assert_eq!(dump.standings.len(), 1);
    assert_eq!(dump.ledger.len(), 3);
    let shown = format!("{dump:?}");
    assert!(!shown.contains("170"), "Debug shows counts only: {shown}");

    let target = common::store(&common::fresh_database("dump_target")).await;
    // Seed products, as every open registers them, are replaced.
    target
        .create_product(&Product {
            code: ProductCode::parse("evs").unwrap(),
            class: ProductClass::Storage,
            status: ProductStatus::Active,
            created_at: UnixMillis(1),
        })
        .await
        .unwrap();
    let stamp = target.change_stamp().await.unwrap();
    target.import_dump(&dump).await.unwrap();
    assert_ne!(target.change_stamp().await.unwrap(), stamp);
    assert_eq!(target.export_dump().await.unwrap(), dump);

    // The ledger goes on after the imported entries.
    let last = dump.ledger.iter().map(|e| e.seq).max().unwrap();
    let (entry, _) = target
        .append_top_up(
            &dump.accounts[1].account_id,
            300,
            UnixMillis(20),
            "more",
            None,
        )
        .await
        .unwrap();
    assert!(entry.seq > last);
    assert!(
        !target
            .standing(&dump.accounts[1].account_id)
            .await
            .unwrap()
            .frozen
    );

    // A store with data refuses an import.
    assert!(matches!(
        target.import_dump(&dump).await,
        Err(StoreError::AlreadyExists)
    ));
    assert!(matches!(
        source.import_dump(&dump).await,
        Err(StoreError::AlreadyExists)
    ));
}

/// The conformance case across backends: a SQLite store filled by the whole
/// suite moves into PostgreSQL unchanged (what `keywarden admin
/// migrate-store` does), and back again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = keywarden_store_sqlite::SqliteStore::open(&dir.path().join("a.db")).unwrap();
    let pg = common::store(&common::fresh_database("from_sqlite")).await;
    keywarden_core::conformance::dump_round_trip(&sqlite, &pg).await;

    let back = keywarden_store_sqlite::SqliteStore::open(&dir.path().join("b.db")).unwrap();
    let from_pg = pg.export_dump().await.unwrap();
    back.import_dump(&from_pg).await.unwrap();
    assert!(back.export_dump().await.unwrap() == from_pg);
}
