//! What the PostgreSQL store's tests share: one throwaway cluster per test
//! binary (started on first use, stopped by its guardian when the binary
//! exits), a fresh database per test.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use keywarden_store_postgres::{PgOptions, PgStore};
use keywarden_testpg::TestCluster;

/// The binary's shared cluster.
pub fn cluster() -> &'static TestCluster {
    static CLUSTER: OnceLock<TestCluster> = OnceLock::new();
    CLUSTER.get_or_init(TestCluster::start)
}

/// A new, empty database on the shared cluster; its URL.
pub fn fresh_database(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("{label}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cluster().create_database(&name)
}

/// Options for tests: short timeouts, a quick poll.
pub fn options() -> PgOptions {
    PgOptions {
        connect_timeout: Duration::from_secs(2),
        pool_wait_timeout: Duration::from_secs(5),
        stamp_poll_interval: Duration::from_millis(200),
        ..PgOptions::default()
    }
}

/// A store on `url` with [`options`].
pub async fn store(url: &str) -> PgStore {
    PgStore::connect(url, options()).await.expect("connect")
}

use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, AliasName, KeyId, ProductCode};
use keywarden_core::model::{
    Account, AliasRecord, GrantConstraints, GrantOperation, GrantRecord, KeyManager, KeyRecord,
    KeyState, KeyVersion, Origin,
};

/// A distinct account id per `n` (and per test process).
pub fn account_id(n: u32) -> AccountId {
    AccountId::parse(&format!("{:04}{n:08}", std::process::id() % 10_000)).expect("twelve digits")
}

/// An account record.
pub fn account(id: &AccountId) -> Account {
    Account {
        account_id: id.clone(),
        name: format!("account {}", id.as_str()),
        created_at: UnixMillis(1_700_000_000_000),
    }
}

/// A random key id.
pub fn key_id() -> KeyId {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&std::process::id().to_be_bytes());
    bytes[12..].copy_from_slice(&NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    KeyId::from_random(bytes)
}

/// A plain enabled key of `account` with one version.
pub fn key(account: &AccountId) -> KeyRecord {
    KeyRecord {
        key_id: key_id(),
        account_id: account.clone(),
        revision: 1,
        description: "test key".into(),
        state: KeyState::Enabled,
        origin: Origin::AwsKms,
        key_manager: KeyManager::Customer,
        created_at: UnixMillis(1_700_000_000_000),
        deletion_date: None,
        pending_window_days: None,
        tags: Vec::new(),
        policy: None,
        versions: vec![KeyVersion {
            version: 1,
            protector: "soft".into(),
            material: vec![7; 40],
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

/// A default key of `account` for `code`, and its alias.
pub fn default_key(account: &AccountId, code: &ProductCode) -> (KeyRecord, AliasRecord) {
    let key = KeyRecord {
        key_manager: KeyManager::Aws,
        default_for: Some(code.clone()),
        kind: keywarden_core::key_spec::KeyKind::default(),
        region: None,
        multi_region: None,
        ..key(account)
    };
    let alias = AliasRecord {
        account_id: account.clone(),
        name: AliasName::default_key(code),
        target: key.key_id,
        region: None,
        created_at: UnixMillis(1_700_000_000_000),
        updated_at: UnixMillis(1_700_000_000_000),
        revision: 1,
    };
    (key, alias)
}

/// A grant on `key` to `grantee`.
pub fn grant(key: &KeyRecord, id: &str, grantee: &str) -> GrantRecord {
    GrantRecord {
        grant_id: id.to_owned(),
        account_id: key.account_id.clone(),
        key_id: key.key_id,
        name: Some(format!("grant {id}")),
        grantee_principal: grantee.to_owned(),
        retiring_principal: Some("arn:aws:iam::111122223333:role/retirer".into()),
        operations: vec![GrantOperation::Decrypt, GrantOperation::Encrypt],
        constraints: GrantConstraints {
            subset: Some([("purpose".to_owned(), "test".to_owned())].into()),
            equals: None,
        },
        created_at: UnixMillis(1_700_000_000_000),
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes; whether it
/// held.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A direct session on `url`, for looking behind the store's back.
pub async fn raw_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("raw connection");
    tokio::spawn(connection);
    client
}
