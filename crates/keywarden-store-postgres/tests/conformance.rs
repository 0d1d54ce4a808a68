//! The store conformance suite against PostgreSQL, unchanged.

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let url = common::fresh_database("conformance");
    let store = common::store(&url).await;
    keywarden_core::conformance::run(&store).await;
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
