//! `keywarden-bench pkcs11`: raw PKCS#11 AES-256-GCM seals of 32-byte
//! plaintexts (what a GenerateDataKey under an HSM key asks of the token)
//! on a fresh SoftHSM2 token, through Keywarden's own HSM protector
//! (`keywarden-protector-pkcs11`), from N threads with a pool of N sessions.
//!
//! This is the floor under an HSM key's GenerateDataKey as the load
//! generator measures it: the same token, the same protector code, no HTTP,
//! no SigV4, no store.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keywarden_core::ids::KeyId;
use keywarden_core::protector::{KeyBinding, KeyHandle, KeyProtector};
use keywarden_protector_pkcs11::{Pkcs11Config, Pkcs11Protector};

use crate::procfs::{clock_ticks_per_second, cpu_ticks, Pid};
use crate::softhsm;

/// Options of `keywarden-bench pkcs11`.
#[derive(clap::Args, Debug)]
pub struct Pkcs11Args {
    /// Thread counts to measure in turn; each run has as many sessions as
    /// threads.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,...",
        default_value = "1,4,16"
    )]
    pub threads_list: Vec<usize>,
    /// Seconds to measure per thread count.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Seconds of unmeasured load before each measurement.
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One thread count's result.
#[derive(Debug, serde::Serialize)]
struct Row {
    threads: usize,
    sessions: usize,
    ops: u64,
    errors: u64,
    wall_s: f64,
    ops_per_s: f64,
    cpu_s: f64,
    cpu_us_per_op: f64,
}

/// The plaintext of a data key and the AAD the seal binds (any fixed
/// bytes: the token's cost does not depend on them).
const PLAINTEXT: [u8; 32] = [0x5a; 32];
const AAD: &[u8] = b"keywarden-bench pkcs11 aad";

/// Seals from `threads` threads until `until`; returns (ops, errors).
fn hammer(handle: &dyn KeyHandle, threads: usize, start: &Barrier, until: Instant) -> (u64, u64) {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    start.wait();
                    let (mut ok, mut errors) = (0u64, 0u64);
                    while Instant::now() < until {
                        match handle.seal(AAD, &PLAINTEXT) {
                            Ok(_) => ok += 1,
                            Err(_) => errors += 1,
                        }
                    }
                    (ok, errors)
                })
            })
            .collect();
        start.wait();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or((0, 1)))
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    })
}

fn measure(threads: usize, args: &Pkcs11Args, pin: &str, clk_tck: u64) -> Result<Row> {
    let protector = Pkcs11Protector::new(Pkcs11Config {
        module: softhsm::MODULE.into(),
        token_label: softhsm::LABEL.into(),
        pin: zeroize::Zeroizing::new(pin.to_owned()),
        sessions: threads,
        protector_id: "hsm:bench".into(),
    })
    .context("opening the SoftHSM2 token")?;
    let key_id = KeyId::from_bytes([threads as u8; 16]);
    let binding = KeyBinding {
        key_id: &key_id,
        version: 1,
    };
    let stored = protector
        .generate(binding)
        .context("generating an AES key in the token")?;
    let handle = protector
        .load(binding, &stored)
        .context("loading the key")?;
    handle
        .seal(AAD, &PLAINTEXT)
        .context("a first seal in the token")?;

    if args.warmup > 0.0 {
        let barrier = Barrier::new(threads + 1);
        let until = Instant::now() + Duration::from_secs_f64(args.warmup);
        hammer(handle.as_ref(), threads, &barrier, until);
    }
    let barrier = Barrier::new(threads + 1);
    let cpu0 = cpu_ticks(Pid::SelfProc)?.total();
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(args.duration);
    let (ops, errors) = hammer(handle.as_ref(), threads, &barrier, until);
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = cpu_ticks(Pid::SelfProc)?.total().saturating_sub(cpu0) as f64 / clk_tck as f64;
    let _ = protector.destroy(binding, &stored);
    Ok(Row {
        threads,
        sessions: threads,
        ops,
        errors,
        wall_s,
        ops_per_s: ops as f64 / wall_s,
        cpu_s,
        cpu_us_per_op: if ops == 0 {
            0.0
        } else {
            cpu_s * 1e6 / ops as f64
        },
    })
}

/// Runs the subcommand; `Ok(false)` if any seal failed.
pub fn run(args: Pkcs11Args) -> Result<bool> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        bail!("--duration must be a positive number of seconds");
    }
    if !(args.warmup.is_finite() && args.warmup >= 0.0) {
        bail!("--warmup must be zero or a positive number of seconds");
    }
    if args.threads_list.is_empty() || args.threads_list.iter().any(|&n| n == 0 || n > 64) {
        bail!("--threads-list needs thread counts from 1 to 64");
    }
    let dir = tempfile::Builder::new()
        .prefix("keywarden-bench-softhsm-")
        .tempdir()
        .context("creating a temporary token directory")?;
    let token = softhsm::Token::create(&dir.path().join("softhsm"))?;
    // SoftHSM2 reads SOFTHSM2_CONF once, at C_Initialize, which has not
    // happened yet: the module is loaded by the first protector below.
    std::env::set_var("SOFTHSM2_CONF", &token.conf);
    let pin = token.pin()?;
    let clk_tck = clock_ticks_per_second();

    let mut rows = Vec::new();
    for &threads in &args.threads_list {
        rows.push(measure(threads, &args, &pin, clk_tck)?);
    }

    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "PKCS#11 AES-256-GCM seal of 32 bytes, SoftHSM2 ({}), Pkcs11Protector, \
             {} s per row after {} s warm-up; CPU is this whole process",
            softhsm::MODULE,
            args.duration,
            args.warmup
        );
        println!(
            "{:>8} {:>9} {:>12} {:>10} {:>12} {:>8}",
            "threads", "sessions", "ops", "ops/s", "CPU µs/op", "errors"
        );
        for r in &rows {
            println!(
                "{:>8} {:>9} {:>12} {:>10.0} {:>12.2} {:>8}",
                r.threads, r.sessions, r.ops, r.ops_per_s, r.cpu_us_per_op, r.errors
            );
        }
    }
    Ok(rows.iter().all(|r| r.errors == 0))
}
