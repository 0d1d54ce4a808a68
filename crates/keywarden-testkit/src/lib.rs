//! Test support shared by Keywarden's test suites (a dev-dependency only,
//! never shipped): one copy of what every end-to-end or clock test needs.
//!
//! - [`server`]: the real `keywarden` binary on port 0 with a fresh data
//!   dir, its admin CLI, `aws-sdk-kms` clients and raw SigV4 requests.
//! - [`softhsm`]: a private SoftHSM2 token directory and configuration.
//! - [`clock`]: a `Kms` on a [`ManualClock`](keywarden_core::clock::ManualClock)
//!   and the real SQLite store, so lifecycles of days run in milliseconds.
//! - [`wrapped_store`]: the SQLite store with hooks where a test watches or
//!   disturbs a store call.
//!
//! Helpers panic with a message rather than return errors: they run only
//! inside tests, where a panic is the failure report.
#![forbid(unsafe_code)]

pub mod clock;
pub mod server;
pub mod softhsm;
pub mod wrapped_store;
