//! The database server goes away and comes back under a running store: calls
//! fail fast with `Unavailable` (never hang, never name the password), and
//! the same store, change listener included, recovers by itself. Its own
//! cluster, since it stops the server.

mod common;

use std::time::{Duration, Instant};

use keywarden_core::ids::AccountId;
use keywarden_core::store::{AccountStore, ChangeFeed, KeyStore, StoreError};
use keywarden_store_postgres::{PgOptions, PgStore};
use keywarden_testpg::TestCluster;

/// Trust authentication ignores it; it must still never be shown.
const PASSWORD: &str = "never-show-this-pw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_answers_unavailable_and_the_store_recovers() {
    let cluster = TestCluster::start();
    cluster.create_database("outage");
    let url = format!(
        "postgres://postgres:{PASSWORD}@127.0.0.1:{}/outage",
        cluster.port()
    );
    let connect_timeout = Duration::from_secs(2);
    let options = PgOptions {
        connect_timeout,
        pool_wait_timeout: Duration::from_secs(2),
        // Only a notification can move the stamp in time (see the end).
        stamp_poll_interval: Duration::from_secs(600),
        ..PgOptions::default()
    };
    let store = PgStore::connect(&url, options.clone()).await.unwrap();
    assert!(!format!("{store:?}").contains(PASSWORD));
    let first = common::account_id(1);
    store
        .create_account(&common::account(&first))
        .await
        .unwrap();

    cluster.stop();
    let deadline = connect_timeout + Duration::from_secs(8);
    for attempt in 0..3 {
        let started = Instant::now();
        let read = store.get_account(&first).await;
        let write = store
            .insert_key(&common::key(&first))
            .await
            .map(|_| None::<()>);
        let took = started.elapsed();
        assert!(took < deadline, "attempt {attempt}: took {took:?}");
        for outcome in [read.map(|_| ()), write.map(|_| ())] {
            match outcome {
                Err(StoreError::Unavailable(e)) => {
                    let shown = format!("{e} / {e:?}");
                    assert!(!shown.contains(PASSWORD), "{shown}");
                }
                other => panic!("attempt {attempt}: expected Unavailable, got {other:?}"),
            }
        }
    }
    // The change listener lost its connection: the stamp no longer
    // vouches for caches, and says so.
    let unvouched = common::eventually(Duration::from_secs(5), || async {
        matches!(store.change_stamp().await, Err(StoreError::Unavailable(_)))
    })
    .await;
    assert!(
        unvouched,
        "change_stamp answers Unavailable while the listener is down"
    );

    cluster.start_again();
    let back = common::eventually(Duration::from_secs(15), || async {
        store.get_account(&first).await.is_ok()
    })
    .await;
    assert!(back, "the same store works again after the server is back");
    let second = common::account_id(2);
    store
        .create_account(&common::account(&second))
        .await
        .unwrap();

    // The listener reconnects (with backoff) and listens again: writes by
    // another node move this store's stamp, by notification only.
    let other = PgStore::connect(&url, options).await.unwrap();
    let mut n = 10;
    let mut next_account = || -> AccountId {
        n += 1;
        common::account_id(n)
    };
    let recovered = common::eventually(Duration::from_secs(15), || {
        let id = next_account();
        let other = other.clone();
        let store = store.clone();
        async move {
            let Ok(before) = store.change_stamp().await else {
                return false;
            };
            other.create_account(&common::account(&id)).await.unwrap();
            common::eventually(Duration::from_millis(500), || async {
                store.change_stamp().await.unwrap() != before
            })
            .await
        }
    })
    .await;
    assert!(recovered, "the change listener must recover");
    // Confirmed: a further write is seen promptly.
    let before = store.change_stamp().await.unwrap();
    other
        .create_account(&common::account(&next_account()))
        .await
        .unwrap();
    let seen = common::eventually(Duration::from_secs(1), || async {
        store.change_stamp().await.unwrap() != before
    })
    .await;
    assert!(seen, "notifications reach the recovered listener");
}
