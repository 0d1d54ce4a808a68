//! Lifecycles through the injected clock: a `Kms` on a `ManualClock` and
//! the real store (`keywarden_testkit::clock`), so days pass in
//! microseconds. One module per area, one test binary.
//!
//! The HSM clock tests (`hsm_clock.rs`, `hsm_outage.rs`) are separate
//! binaries: they load SoftHSM2 in the test process, which reads
//! `SOFTHSM2_CONF` once per process, and each needs its own token.

mod billing;
mod deletion;
mod import;
mod multinode;
mod rotation;
mod sessions;
mod usage;
