//! Crash tests: servers killed with SIGKILL in the middle of writes and of
//! deletion execution, then `keywarden admin check` and the survivors
//! checked. Their own test binary, apart from the end-to-end tests: they
//! kill their servers repeatedly under load and measure what survives,
//! which wants no unrelated servers competing for the machine.

mod deletion;
mod safety;

/// The testkit's server helpers, with this crate's binary.
mod common {
    pub use keywarden_testkit::server::*;

    /// The `keywarden` binary cargo built for these tests.
    pub const BIN: &str = env!("CARGO_BIN_EXE_keywarden");
}
