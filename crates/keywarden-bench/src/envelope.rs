//! `keywarden-bench envelope`: throughput of the envelope SDK
//! (`keywarden-envelope`) on one large stream, for both algorithm suites,
//! against raw AES-256-GCM (and SHA-384, which the signed suite adds) on
//! the same machine in the same run, so the ratios hold on a noisy host.
//!
//! The data key comes from an in-process raw AES keyring: one data key per
//! message, so the key service's round trip (one GenerateDataKey or Decrypt
//! per message, measured by the load generator) does not count here.

use std::io::{Read, Write};
use std::time::Instant;

use anyhow::{Context, Result};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use keywarden_envelope::raw_aes::RawAesKeyring;
use keywarden_envelope::{
    AlgorithmSuite, DecryptOptions, DefaultMaterialsManager, EncryptOptions, EncryptionContext,
};

use crate::procfs::{clock_ticks_per_second, cpu_ticks, Pid};

/// Options of `keywarden-bench envelope`.
#[derive(clap::Args, Debug)]
pub struct EnvelopeArgs {
    /// Stream size in MiB.
    #[arg(long, default_value_t = 256)]
    pub size_mib: u64,
    /// Frame length in bytes.
    #[arg(long, default_value_t = 4096)]
    pub frame_length: u32,
    /// Measure each step this many times over (CPU time is read in clock
    /// ticks of 10 ms; a fast step needs repeating to be measured well).
    #[arg(long, default_value_t = 4)]
    pub repeat: u32,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A reader of `len` bytes cycling over a random 1 MiB block.
struct Cycle {
    block: Vec<u8>,
    pos: usize,
    left: u64,
}

impl Read for Cycle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(self.block.len() - self.pos)
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that counts and drops.
struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One measured step: wall seconds and this process's CPU seconds.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Measured {
    wall_s: f64,
    cpu_s: f64,
    mib_per_cpu_s: f64,
}

fn measure<T>(mib: f64, f: impl FnOnce() -> Result<T>) -> Result<(T, Measured)> {
    let ticks = clock_ticks_per_second() as f64;
    let cpu0 = cpu_ticks(Pid::SelfProc)?.total();
    let t0 = Instant::now();
    let out = f()?;
    let wall_s = t0.elapsed().as_secs_f64();
    let cpu_s = ((cpu_ticks(Pid::SelfProc)?.total() - cpu0) as f64 / ticks).max(1.0 / ticks);
    Ok((
        out,
        Measured {
            wall_s,
            cpu_s,
            mib_per_cpu_s: mib / cpu_s,
        },
    ))
}

fn block() -> Vec<u8> {
    let mut b = vec![0u8; 1 << 20];
    fastrand::fill(&mut b);
    b
}

/// Raw AES-256-GCM over `size` bytes in `frame`-byte pieces, in place.
fn raw_gcm(size: u64, frame: usize) -> Result<()> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &[7u8; 32]).map_err(|_| anyhow::anyhow!("aes key"))?,
    );
    let mut buf = block();
    let mut done = 0u64;
    let mut seq = 0u64;
    while done < size {
        for chunk in buf.chunks_mut(frame) {
            let mut iv = [0u8; 12];
            iv[4..].copy_from_slice(&seq.to_be_bytes());
            seq += 1;
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(iv),
                    Aad::from(b"bench"),
                    chunk,
                )
                .map_err(|_| anyhow::anyhow!("seal"))?;
            let _ = std::hint::black_box(tag);
        }
        done += buf.len() as u64;
    }
    Ok(())
}

/// SHA-384 over `size` bytes.
fn raw_sha384(size: u64) -> Result<()> {
    let buf = block();
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA384);
    let mut done = 0u64;
    while done < size {
        ctx.update(&buf);
        done += buf.len() as u64;
    }
    std::hint::black_box(ctx.finish());
    Ok(())
}

/// Runs the benchmark and prints the table (or JSON).
pub async fn run(args: EnvelopeArgs) -> Result<bool> {
    let size = args.size_mib << 20;
    let repeat = args.repeat.max(1);
    let mib = args.size_mib as f64 * f64::from(repeat);
    let mut wrapping = [0u8; 32];
    fastrand::fill(&mut wrapping);
    let keyring =
        RawAesKeyring::new("keywarden-bench", "bench-key", &wrapping).context("raw AES keyring")?;
    let cmm = DefaultMaterialsManager::new(keyring);
    let context: EncryptionContext = [("purpose".to_owned(), "bench".to_owned())].into();

    let ((), gcm) = measure(mib, || {
        raw_gcm(size * u64::from(repeat), args.frame_length as usize)
    })?;
    let ((), sha) = measure(mib, || raw_sha384(size * u64::from(repeat)))?;
    let mut rows = Vec::new();
    for suite in [
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
    ] {
        let options = EncryptOptions {
            suite,
            frame_length: args.frame_length,
            plaintext_length: Some(size),
        };
        let data = block();
        let reader = || Cycle {
            block: data.clone(),
            pos: 0,
            left: size,
        };
        // Timed: encryption into a counting sink (no 256 MiB of fresh pages
        // to fault in); untimed: one message kept for decryption.
        let (_, enc) = measure(mib, || {
            for _ in 0..repeat {
                futures_block_on(keywarden_envelope::encrypt(
                    &cmm,
                    &context,
                    &options,
                    reader(),
                    Count(0),
                ))
                .context("encrypt")?;
            }
            Ok(())
        })?;
        let mut message = Vec::with_capacity(size as usize + size as usize / 64 + 4096);
        futures_block_on(keywarden_envelope::encrypt(
            &cmm,
            &context,
            &options,
            reader(),
            &mut message,
        ))
        .context("encrypt")?;
        let (decrypted, dec) = measure(mib, || {
            let mut total = 0;
            for _ in 0..repeat {
                let mut sink = Count(0);
                futures_block_on(keywarden_envelope::decrypt(
                    &cmm,
                    &DecryptOptions::default(),
                    message.as_slice(),
                    &mut sink,
                ))
                .context("decrypt")?;
                total += sink.0;
            }
            Ok(total)
        })?;
        anyhow::ensure!(
            decrypted == size * u64::from(repeat),
            "decrypted {decrypted} of {size} bytes per pass"
        );
        rows.push((suite, enc, dec, message.len()));
    }

    if args.json {
        let out = serde_json::json!({
            "size_mib": args.size_mib,
            "repeat": repeat,
            "frame_length": args.frame_length,
            "raw_aes_256_gcm": gcm,
            "raw_sha384": sha,
            "suites": rows.iter().map(|(suite, enc, dec, len)| serde_json::json!({
                "suite": suite.name(),
                "message_bytes": len,
                "encrypt": enc,
                "decrypt": dec,
                "encrypt_vs_raw_gcm": enc.mib_per_cpu_s / gcm.mib_per_cpu_s,
                "decrypt_vs_raw_gcm": dec.mib_per_cpu_s / gcm.mib_per_cpu_s,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{} MiB x {repeat}, frame {} B; MiB per CPU-second (wall seconds), ratio to raw AES-256-GCM in this run",
            args.size_mib, args.frame_length
        );
        println!(
            "raw AES-256-GCM seal  {:>8.0} ({:.2} s)",
            gcm.mib_per_cpu_s, gcm.wall_s
        );
        println!(
            "raw SHA-384           {:>8.0} ({:.2} s)",
            sha.mib_per_cpu_s, sha.wall_s
        );
        for (suite, enc, dec, _) in &rows {
            println!(
                "{:<50} encrypt {:>6.0} ({:.2} s, {:.2}x)  decrypt {:>6.0} ({:.2} s, {:.2}x)",
                suite.name(),
                enc.mib_per_cpu_s,
                enc.wall_s,
                enc.mib_per_cpu_s / gcm.mib_per_cpu_s,
                dec.mib_per_cpu_s,
                dec.wall_s,
                dec.mib_per_cpu_s / gcm.mib_per_cpu_s,
            );
        }
    }
    Ok(true)
}

/// Drives a future that never waits (the raw AES keyring and in-memory
/// I/O complete at once) on this thread, so the measurement is this
/// thread's work alone.
fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}
