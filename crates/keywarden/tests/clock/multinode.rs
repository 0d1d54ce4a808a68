//! Races between nodes on one PostgreSQL database, through the injected
//! clock: three services ("nodes"), each with its own `PgStore` (its own
//! pool and change listener, as separate processes have), sharing the root
//! key and a manual clock. Scheduled deletions execute once, due automatic
//! rotations happen once, and concurrent on-demand rotations are counted
//! exactly (never past the limit), however the nodes interleave.

use std::sync::Arc;

use keywarden_core::clock::{ManualClock, UnixMillis};
use keywarden_core::context::EncryptionContext;
use keywarden_core::ids::KeyRef;
use keywarden_core::ops::create_key::CreateKeyRequest;
use keywarden_core::ops::rotate_key_on_demand::MAX_ON_DEMAND_ROTATIONS;
use keywarden_core::store::KeyStore;
use keywarden_core::{Caller, Kms, KmsError};
use keywarden_store_postgres::{PgOptions, PgStore};
use keywarden_testkit::clock::{account, key_request, node};
use keywarden_testpg::TestCluster;

const DAY: i64 = UnixMillis::DAY;

struct Nodes {
    _cluster: TestCluster,
    stores: Vec<Arc<PgStore>>,
    nodes: Vec<Kms>,
    clock: Arc<ManualClock>,
    caller: Caller,
}

async fn nodes(n: usize) -> Nodes {
    let cluster = TestCluster::start();
    let url = cluster.create_database("races");
    let clock = Arc::new(ManualClock::new(UnixMillis(1_700_000_000_000)));
    let mut stores = Vec::new();
    let mut nodes = Vec::new();
    for _ in 0..n {
        let store = Arc::new(PgStore::connect(&url, PgOptions::default()).await.unwrap());
        nodes.push(node(store.clone(), clock.clone()));
        stores.push(store);
    }
    let caller = account(&nodes[0], "t").await;
    Nodes {
        _cluster: cluster,
        stores,
        nodes,
        clock,
        caller,
    }
}

fn request() -> CreateKeyRequest {
    key_request(keywarden_core::model::Origin::AwsKms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_and_rotations_due_execute_once_across_nodes() {
    let n = nodes(3).await;
    let mut doomed = Vec::new();
    let mut rotating = Vec::new();
    for i in 0..6 {
        let key = n.nodes[i % 3]
            .create_key(&n.caller, request())
            .await
            .unwrap();
        let key = KeyRef::Id(key.key_id);
        if i % 2 == 0 {
            n.nodes[0]
                .schedule_key_deletion(&n.caller, &key, Some(7))
                .await
                .unwrap();
            doomed.push(key);
        } else {
            n.nodes[1]
                .enable_key_rotation(&n.caller, &key, None)
                .await
                .unwrap();
            rotating.push(key);
        }
    }
    n.clock.advance(365 * DAY);
    for round in 0..4 {
        let (a, b, c) = tokio::join!(
            n.nodes[0].execute_due_deletions(),
            n.nodes[1].execute_due_deletions(),
            n.nodes[2].execute_due_deletions(),
        );
        let destroyed = a.unwrap() + b.unwrap() + c.unwrap();
        let (a, b, c) = tokio::join!(
            n.nodes[0].execute_due_rotations(),
            n.nodes[1].execute_due_rotations(),
            n.nodes[2].execute_due_rotations(),
        );
        let rotated = a.unwrap() + b.unwrap() + c.unwrap();
        let (want_destroyed, want_rotated) = if round == 0 {
            (doomed.len(), rotating.len())
        } else {
            (0, 0)
        };
        assert_eq!(
            destroyed, want_destroyed,
            "round {round}: deletions executed once"
        );
        assert_eq!(
            rotated, want_rotated,
            "round {round}: rotations executed once"
        );
    }
    for key in &doomed {
        let KeyRef::Id(id) = key else { unreachable!() };
        for store in &n.stores {
            assert!(store
                .get_key(&n.caller.account_id, id)
                .await
                .unwrap()
                .is_none());
        }
    }
    for key in &rotating {
        let KeyRef::Id(id) = key else { unreachable!() };
        let stored = n.stores[2]
            .get_key(&n.caller.account_id, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.versions.len(), 2, "one new version per due key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_on_demand_rotations_are_counted_exactly_across_nodes() {
    let n = nodes(3).await;
    let key = n.nodes[0].create_key(&n.caller, request()).await.unwrap();
    let key = KeyRef::Id(key.key_id);
    let ctx = EncryptionContext::empty();
    let (_, before) = n.nodes[2]
        .encrypt(&n.caller, &key, b"v1", &ctx, false)
        .await
        .unwrap();

    // 15 requests spread over the nodes, all at once; the limit is 10.
    let attempts = 15;
    let mut tasks = Vec::new();
    for i in 0..attempts {
        let node = &n.nodes[i % 3];
        tasks.push(node.rotate_key_on_demand(&n.caller, &key));
    }
    let results = futures_join_all(tasks).await;
    let succeeded = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        match r {
            Ok(_) => {}
            Err(KmsError::LimitExceeded(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(succeeded, MAX_ON_DEMAND_ROTATIONS as usize);
    let KeyRef::Id(id) = &key else { unreachable!() };
    let stored = n.stores[1]
        .get_key(&n.caller.account_id, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.on_demand_rotations, MAX_ON_DEMAND_ROTATIONS);
    assert_eq!(stored.versions.len(), 1 + MAX_ON_DEMAND_ROTATIONS as usize);
    // Every node decrypts the old ciphertext and encrypts under the newest
    // version.
    for node in &n.nodes {
        let plain = node
            .decrypt(&n.caller, &before, &ctx, Some(&key), false)
            .await;
        assert!(plain.is_ok(), "{:?}", plain.err());
    }
}

/// Polls every future concurrently on this task (no extra dependency).
async fn futures_join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.unwrap()).collect()
}
