//! The raw library operation beside a Sign or GenerateMac load: the same
//! signature or MAC, with a key of the same spec, through `keywarden_crypto`
//! directly, in this process on one thread, timed by the thread's own CPU
//! clock. Server CPU per request minus this is what the server spends
//! around the cryptography (HTTP, SigV4, JSON, key lookup, audit).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use keywarden_core::key_spec::{KeySpec, MessageType};
use keywarden_core::protector::SpecHandle;
use serde::Serialize;

use crate::keys;
use crate::mix::{Mix, Op};
use crate::procfs;

/// What the raw measurement found.
#[derive(Clone, Debug, Serialize)]
pub struct RawOp {
    /// `Sign` or `GenerateMac`.
    pub operation: String,
    pub key_spec: String,
    pub algorithm: String,
    pub message_bytes: usize,
    pub ops: u64,
    pub wall_s: f64,
    pub cpu_s: f64,
    /// CPU time per operation on the measuring thread.
    pub us_per_op: f64,
    /// How the thread's CPU time was read.
    pub clock: String,
}

/// The operation of the mix that has a raw counterpart (Sign or
/// GenerateMac; a valid mix has at most one of them).
pub fn raw_op(mix: &Mix) -> Option<Op> {
    [Op::Sign, Op::GenerateMac]
        .into_iter()
        .find(|&op| mix.contains(op))
}

/// Runs `op` with a fresh key of `spec` for about `duration` on a thread of
/// its own and returns its CPU time per operation.
pub fn measure(op: Op, spec: KeySpec, duration: Duration, clk_tck: u64) -> Result<RawOp> {
    std::thread::Builder::new()
        .name("raw-crypto".to_owned())
        .spawn(move || measure_here(op, spec, duration, clk_tck))
        .context("starting the raw measurement thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the raw measurement thread panicked"))?
}

fn measure_here(op: Op, spec: KeySpec, duration: Duration, clk_tck: u64) -> Result<RawOp> {
    let usage = keys::key_usage(spec).with_context(|| format!("no usage for {spec}"))?;
    let (private, _public) = keywarden_crypto::generate(spec)
        .map_err(|e| anyhow::anyhow!("generating a {spec} key: {e}"))?;
    let handle = keywarden_crypto::load(spec, usage, &private)
        .map_err(|e| anyhow::anyhow!("loading the {spec} key: {e}"))?;
    let mut message = [0u8; keys::MESSAGE_BYTES];
    fastrand::Rng::new().fill(&mut message);
    let (algorithm, mut once): (String, Box<dyn FnMut() -> Result<usize> + '_>) =
        match (op, &handle) {
            (Op::Sign, SpecHandle::Sign(signer)) => {
                let alg = keys::signing_algorithm(spec).context("no signing algorithm")?;
                (
                    alg.as_str().to_owned(),
                    Box::new(move || {
                        signer
                            .sign(alg, MessageType::Raw, &message)
                            .map(|s| s.len())
                            .map_err(|e| anyhow::anyhow!("Sign: {e}"))
                    }),
                )
            }
            (Op::GenerateMac, SpecHandle::Mac(key)) => {
                let alg = keys::mac_algorithm(spec).context("no MAC algorithm")?;
                (
                    alg.as_str().to_owned(),
                    Box::new(move || {
                        key.mac(alg, &message)
                            .map(|m| m.len())
                            .map_err(|e| anyhow::anyhow!("GenerateMac: {e}"))
                    }),
                )
            }
            (op, handle) => bail!("no raw measurement of {op} with a {spec} key ({handle:?})"),
        };
    // Warm-up: caches, lazily built tables, the CPU's clock.
    let warm_until = Instant::now() + duration.min(Duration::from_millis(200));
    while Instant::now() < warm_until {
        std::hint::black_box(once()?);
    }
    // Operations between clock reads: enough that a batch takes ~1 ms, so
    // reading the clock is no part of the figure even for a fast MAC.
    let mut batch = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            std::hint::black_box(once()?);
        }
        if t.elapsed() >= Duration::from_millis(1) || batch >= 1 << 20 {
            break;
        }
        batch *= 2;
    }
    let (cpu0, clock) = procfs::thread_cpu_ns(clk_tck)?;
    let started = Instant::now();
    let mut ops = 0u64;
    while started.elapsed() < duration {
        for _ in 0..batch {
            std::hint::black_box(once()?);
        }
        ops += batch;
    }
    let wall = started.elapsed();
    let (cpu1, _) = procfs::thread_cpu_ns(clk_tck)?;
    let cpu_s = cpu1.saturating_sub(cpu0) as f64 / 1e9;
    Ok(RawOp {
        operation: op.name().to_owned(),
        key_spec: spec.as_str().to_owned(),
        algorithm,
        message_bytes: keys::MESSAGE_BYTES,
        ops,
        wall_s: round3(wall.as_secs_f64()),
        cpu_s: round3(cpu_s),
        us_per_op: round2(cpu_s * 1e6 / ops as f64),
        clock: clock.to_owned(),
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Server CPU per request minus the raw operation's CPU.
pub fn overhead_us(srv_us_per_request: f64, raw: &RawOp) -> f64 {
    round2(srv_us_per_request - raw.us_per_op)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_raw_operation_of_the_mix() {
        assert_eq!(
            raw_op(&"Sign=1,DescribeKey=1".parse().unwrap()),
            Some(Op::Sign)
        );
        assert_eq!(
            raw_op(&"GenerateMac=1".parse().unwrap()),
            Some(Op::GenerateMac)
        );
        assert_eq!(
            raw_op(&"GenerateDataKey=1,Decrypt=1".parse().unwrap()),
            None
        );
    }

    #[test]
    fn measures_an_ecdsa_signature_and_an_hmac() {
        let clk = procfs::clock_ticks_per_second();
        for (op, spec, alg) in [
            (Op::Sign, KeySpec::EccNistP256, "ECDSA_SHA_256"),
            (Op::GenerateMac, KeySpec::Hmac256, "HMAC_SHA_256"),
        ] {
            let raw = measure(op, spec, Duration::from_millis(100), clk).unwrap();
            assert_eq!(raw.algorithm, alg);
            assert_eq!(raw.operation, op.name());
            assert_eq!(raw.message_bytes, 256);
            assert!(raw.ops > 0, "{raw:?}");
            assert!(raw.us_per_op > 0.0, "{raw:?}");
            assert!(raw.wall_s >= 0.1, "{raw:?}");
        }
        assert!(measure(Op::Sign, KeySpec::Hmac256, Duration::from_millis(10), clk).is_err());
        let raw = RawOp {
            operation: "Sign".into(),
            key_spec: "ECC_NIST_P256".into(),
            algorithm: "ECDSA_SHA_256".into(),
            message_bytes: 256,
            ops: 1,
            wall_s: 1.0,
            cpu_s: 1.0,
            us_per_op: 20.5,
            clock: String::new(),
        };
        assert_eq!(overhead_us(120.0, &raw), 99.5);
    }
}
