//! The store conformance suite against PostgreSQL: one test per case, each
//! on a fresh database of the binary's one throwaway cluster.

mod common;

use keywarden_store_postgres::PgStore;

/// A fresh database (named after the case) on the shared cluster, and a
/// store on it.
async fn fresh_store(case: &'static str) -> (PgStore, ()) {
    let url = common::fresh_database(case);
    (common::store(&url).await, ())
}

mod conformance {
    keywarden_core::store_conformance_tests!(super::fresh_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_runs_twice_against_one_database() {
    let url = common::fresh_database("conformance_twice");
    let store = common::store(&url).await;
    keywarden_core::conformance::run(&store).await;
    drop(store);
    let store = common::store(&url).await;
    keywarden_core::conformance::run(&store).await;
}
