//! The end-to-end tests: the real `keywarden` binary started on port 0
//! with a fresh data dir (`keywarden_testkit::server`) and driven with
//! `aws-sdk-kms`, raw SigV4 requests and the admin CLI, one module per
//! area. One test binary rather than one per file, so the test
//! dependencies are linked once. Nothing here sets process-wide state
//! (environment, current directory): what a server needs (`SOFTHSM2_CONF`,
//! `KEYWARDEN_CONFIG`, a log filter) is handed to its process
//! (`keywarden_testkit::server::Options`), so the tests run in parallel
//! threads of one process.
//!
//! `cargo test -p keywarden --test e2e <module>::` runs one area.

mod abuse;
mod audit;
mod backup;
mod billing;
mod default_keys;
mod envelope;
mod grants;
mod hsm;
mod hsm_root;
mod key_policies;
mod keyrings;
mod lifecycle;
mod mariadb;
mod multinode;
mod new_user;
mod products;
mod quotas;
mod sdk;
mod secrets_scan;
mod terraform;

/// The testkit's server helpers, with this crate's binary.
mod common {
    pub use keywarden_testkit::server::*;

    /// The `keywarden` binary cargo built for these tests.
    pub const BIN: &str = env!("CARGO_BIN_EXE_keywarden");
}
