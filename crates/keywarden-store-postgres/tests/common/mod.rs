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
