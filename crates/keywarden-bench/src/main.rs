//! `keywarden-bench`: a load generator for Keywarden and other AWS KMS
//! endpoints. See the crate README for usage.
#![forbid(unsafe_code)]

mod baseline;
mod bench;
mod client;
mod database;
mod envelope;
mod keys;
mod load;
mod mix;
mod pkcs11;
mod procfs;
mod raw;
mod report;
mod softhsm;
mod spawn;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args, Parser, Subcommand};
use keywarden_core::key_spec::KeySpec;

use crate::mix::Mix;

/// Load generator for Keywarden (and any AWS KMS JSON 1.1 endpoint):
/// SigV4-signed requests over keep-alive HTTP/1.1 connections, HDR latency
/// histograms, and the server's CPU time per request.
#[derive(Parser, Debug)]
#[command(
    name = "keywarden-bench",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a no-op HTTP server that answers every POST with a fixed ~200-byte
    /// JSON body (the reference for "what does the HTTP stack alone cost").
    BaselineServer {
        /// Address to listen on; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// Throughput of the envelope SDK (AWS Encryption SDK message format)
    /// on one large in-memory stream, both suites, against raw
    /// AES-256-GCM and SHA-384 measured in the same run.
    Envelope(envelope::EnvelopeArgs),
    /// Raw PKCS#11 AES-256-GCM seals of 32-byte plaintexts (an HSM key's
    /// GenerateDataKey, inside the token) on a fresh SoftHSM2 token through
    /// Keywarden's HSM protector, from N threads with N sessions.
    Pkcs11(pkcs11::Pkcs11Args),
}

/// Options of a benchmark run.
#[derive(Args, Debug)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["spawn", "spawn_baseline", "endpoint"])
))]
pub struct RunArgs {
    /// Start a keywarden server (default: `keywarden` next to this
    /// executable) on a temporary data dir, create an account and a key, and
    /// stop it with SIGTERM at the end.
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub spawn: Option<Option<PathBuf>>,

    /// With --spawn: create the benchmark key with this key policy (a JSON
    /// file; `ACCOUNT_ID` in it stands for the benchmark account), so every
    /// request evaluates it (docs/BENCHMARKS.md, "Policy evaluation").
    #[arg(long, value_name = "FILE", requires = "spawn")]
    pub key_policy: Option<PathBuf>,

    /// Start `keywarden-bench baseline-server` (a no-op HTTP server) instead
    /// of keywarden; no accounts or keys are set up.
    #[arg(long)]
    pub spawn_baseline: bool,

    /// With --spawn: create a fresh SoftHSM2 token in the temporary dir,
    /// offer it to the server as custom key store `cks-bench` (--config),
    /// and create the benchmark key in it (Origin AWS_CLOUDHSM).
    #[arg(long, conflicts_with_all = ["spawn_baseline", "endpoint"])]
    pub hsm: bool,

    /// With --hsm: the custom key store's PKCS#11 session pool size.
    #[arg(long, value_name = "N", default_value_t = 4, requires = "hsm")]
    pub hsm_sessions: usize,

    /// With --spawn: start this many keywarden servers on one shared
    /// PostgreSQL database (--database-url or --spawn-postgres) and the same
    /// root key; each connection is bound to one node, round-robin.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub nodes: usize,

    /// With --spawn: the nodes store everything in this PostgreSQL database
    /// (postgres://user[:password]@host:port/db; an empty one: the root key
    /// is new each run) instead of the embedded one. Handed to keywarden in
    /// its environment; the password is never printed. Also read from
    /// KEYWARDEN_BENCH_DATABASE_URL.
    #[arg(
        long,
        value_name = "URL",
        env = "KEYWARDEN_BENCH_DATABASE_URL",
        hide_env_values = true,
        conflicts_with_all = ["spawn_baseline", "endpoint", "hsm", "spawn_postgres"]
    )]
    pub database_url: Option<String>,

    /// With --spawn: start a throwaway PostgreSQL cluster (initdb/pg_ctl,
    /// PostgreSQL server binaries needed) with a fresh database for the
    /// nodes, and report its CPU per request too.
    #[arg(long, conflicts_with_all = ["spawn_baseline", "endpoint", "hsm"])]
    pub spawn_postgres: bool,

    /// Pid of the postmaster of the --database-url (or --endpoint server's)
    /// PostgreSQL: its CPU time and its descendants' are reported per request.
    #[arg(long, value_name = "PID", conflicts_with_all = ["spawn_postgres", "spawn_baseline"])]
    pub postgres_pid: Option<u32>,

    /// Pin the spawned server with `taskset -c CPUS` (e.g. `0` or `0-1`).
    #[arg(long, value_name = "CPUS")]
    pub server_cpus: Option<String>,

    /// Drive an already running server at this URL (http://host:port).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,

    /// Access key id for --endpoint.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,

    /// Secret access key for --endpoint.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,

    /// Key to use with --endpoint (default: create one with CreateKey).
    #[arg(long)]
    pub key_id: Option<String>,

    /// With --endpoint: never call CreateKey; without --key-id the requests
    /// name the placeholder key `alias/keywarden-bench`.
    #[arg(long)]
    pub no_create_key: bool,

    /// Pid of the --endpoint server, for its CPU time and memory.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// SigV4 region.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,

    /// Operation weights: GenerateDataKey, Decrypt, Encrypt,
    /// GenerateDataKeyWithoutPlaintext, DescribeKey (SYMMETRIC_DEFAULT key);
    /// Sign (a SIGN_VERIFY --key-spec); GenerateMac (an HMAC --key-spec).
    #[arg(long, default_value = "GenerateDataKey=1,Decrypt=1")]
    pub mix: Mix,

    /// Spec of the benchmark key (ECC_NIST_P256, RSA_2048, ML_DSA_65,
    /// HMAC_256, ...): created with SIGN_VERIFY, or GENERATE_VERIFY_MAC for
    /// HMAC; with --key-id, the spec of that key. Sign uses the spec's
    /// first algorithm (ECDSA_SHA_256, RSASSA_PSS_SHA_256, ML_DSA_SHAKE_256),
    /// GenerateMac its HMAC, over a fresh 256-byte RAW message each request.
    #[arg(long, value_name = "SPEC", default_value = "SYMMETRIC_DEFAULT", value_parser = keys::parse_key_spec)]
    pub key_spec: KeySpec,

    /// With Sign or GenerateMac in the mix: seconds to run the same
    /// operation through keywarden-crypto in this process (one thread,
    /// after the load) for the raw CPU per operation; 0 skips it.
    #[arg(long, value_name = "SECS", default_value_t = 2.0)]
    pub raw_duration: f64,

    /// Connections, each with one request in flight.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,

    /// Run at each of these concurrencies in turn (e.g. 1,4,16,64), against
    /// the same server, with a fresh warm-up and measurement window each.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub sweep: Option<Vec<usize>>,

    /// Seconds to measure (per level) [default: 10].
    #[arg(long, short = 'd', conflicts_with = "requests")]
    pub duration: Option<f64>,

    /// Requests to measure (per level) instead of a duration.
    #[arg(long, short = 'n')]
    pub requests: Option<u64>,

    /// Seconds of unmeasured load before each measurement window.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// Ciphertexts made with GenerateDataKey before the run, for Decrypt.
    #[arg(long, default_value_t = 256)]
    pub pool_size: usize,

    /// Seconds before a request (or a connect) counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,

    /// Generator runtime threads (default: the CPUs this process may use).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Exit with status 1 if any request failed.
    #[arg(long)]
    pub fail_on_error: bool,
}

fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    builder.build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::BaselineServer { listen }) => runtime(None)
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(baseline::serve(listen)))
            .map(|()| true),
        Some(Command::Envelope(args)) => runtime(None)
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(envelope::run(args))),
        Some(Command::Pkcs11(args)) => pkcs11::run(args),
        None => runtime(cli.run.threads)
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(bench::main(cli.run))),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_spawn_forms() {
        let cli = Cli::try_parse_from(["kb", "--spawn", "--server-cpus", "0"]).unwrap();
        assert_eq!(cli.run.spawn, Some(None));
        assert_eq!(cli.run.server_cpus.as_deref(), Some("0"));
        let cli = Cli::try_parse_from(["kb", "--spawn", "/x/keywarden", "-c", "4"]).unwrap();
        assert_eq!(cli.run.spawn, Some(Some(PathBuf::from("/x/keywarden"))));
        assert_eq!(cli.run.concurrency, 4);
        assert_eq!(cli.run.key_spec, KeySpec::SymmetricDefault);
        assert_eq!(cli.run.raw_duration, 2.0);
        let cli = Cli::try_parse_from([
            "kb",
            "--spawn",
            "--mix",
            "Sign=1",
            "--key-spec",
            "ML_DSA_65",
            "--raw-duration",
            "0.5",
        ])
        .unwrap();
        assert_eq!(cli.run.key_spec, KeySpec::MlDsa65);
        assert_eq!(cli.run.mix.to_string(), "Sign=1");
        assert_eq!(cli.run.raw_duration, 0.5);
        assert!(Cli::try_parse_from(["kb", "--spawn", "--key-spec", "P256"]).is_err());
        let cli = Cli::try_parse_from(["kb", "--spawn-baseline", "--sweep", "1,4,16"]).unwrap();
        assert!(cli.run.spawn_baseline);
        assert_eq!(cli.run.sweep, Some(vec![1, 4, 16]));
    }

    #[test]
    fn parses_multi_node_forms() {
        let cli = Cli::try_parse_from(["kb", "--spawn"]).unwrap();
        assert_eq!(cli.run.nodes, 1);
        assert_eq!(cli.run.database_url, None);
        assert!(!cli.run.spawn_postgres);
        let cli = Cli::try_parse_from([
            "kb",
            "--spawn",
            "--nodes",
            "2",
            "--database-url",
            "postgres://kw@127.0.0.1:5432/bench",
            "--postgres-pid",
            "77",
            "--server-cpus",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.run.nodes, 2);
        assert_eq!(
            cli.run.database_url.as_deref(),
            Some("postgres://kw@127.0.0.1:5432/bench")
        );
        assert_eq!(cli.run.postgres_pid, Some(77));
        assert_eq!(cli.run.server_cpus.as_deref(), Some("0"));
        let cli =
            Cli::try_parse_from(["kb", "--spawn", "--nodes", "2", "--spawn-postgres"]).unwrap();
        assert!(cli.run.spawn_postgres);
        // One node on PostgreSQL.
        let cli =
            Cli::try_parse_from(["kb", "--spawn", "--database-url", "postgres://h/d"]).unwrap();
        assert_eq!(cli.run.nodes, 1);
        assert!(cli.run.database_url.is_some());

        for bad in [
            &[
                "kb",
                "--spawn",
                "--spawn-postgres",
                "--database-url",
                "postgres://h/d",
            ][..],
            &["kb", "--spawn", "--spawn-postgres", "--postgres-pid", "1"],
            &["kb", "--spawn", "--hsm", "--spawn-postgres"],
            &["kb", "--spawn", "--hsm", "--database-url", "postgres://h/d"],
            &["kb", "--spawn-baseline", "--spawn-postgres"],
            &[
                "kb",
                "--endpoint",
                "http://h:1",
                "--database-url",
                "postgres://h/d",
            ],
            &["kb", "--spawn", "--nodes", "two"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_hsm_forms() {
        let cli = Cli::try_parse_from(["kb", "--spawn", "--hsm"]).unwrap();
        assert!(cli.run.hsm);
        assert_eq!(cli.run.hsm_sessions, 4);
        let cli = Cli::try_parse_from(["kb", "--spawn", "--hsm", "--hsm-sessions", "16"]).unwrap();
        assert_eq!(cli.run.hsm_sessions, 16);
        assert!(Cli::try_parse_from(["kb", "--endpoint", "http://h:1", "--hsm"]).is_err());
        assert!(Cli::try_parse_from(["kb", "--spawn", "--hsm-sessions", "2"]).is_err());
        let cli = Cli::try_parse_from(["kb", "pkcs11", "--threads-list", "1,4", "--duration", "1"])
            .unwrap();
        let Some(Command::Pkcs11(args)) = cli.command else {
            panic!("not pkcs11")
        };
        assert_eq!(args.threads_list, vec![1, 4]);
    }

    #[test]
    fn needs_exactly_one_target() {
        assert!(Cli::try_parse_from(["kb"]).is_err());
        assert!(Cli::try_parse_from(["kb", "--spawn", "--endpoint", "http://h:1"]).is_err());
        assert!(
            Cli::try_parse_from(["kb", "--spawn", "--duration", "1", "--requests", "5"]).is_err()
        );
        assert!(Cli::try_parse_from(["kb", "--spawn", "--mix", "Verify=1"]).is_err());
        let cli =
            Cli::try_parse_from(["kb", "baseline-server", "--listen", "127.0.0.1:0"]).unwrap();
        assert!(matches!(cli.command, Some(Command::BaselineServer { .. })));
    }
}
