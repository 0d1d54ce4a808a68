//! The `keywarden` binary: `keywarden serve` runs the service,
//! `keywarden admin ...` manages accounts and credentials, `keywarden key ...`
//! a tenant's keys, `keywarden encrypt`/`decrypt` protect files with data
//! keys from a running Keywarden.
#![forbid(unsafe_code)]

/// `println!` for a command's output. A reader that goes away early
/// (`keywarden admin audit query | head`) ends the command quietly with
/// status 0, as `cat` would, instead of a panic about a broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}

mod admin;
mod config;
mod envelope;
mod hsm_clusters;
mod key;
mod limits_config;
mod output;
mod sealed_root;
mod serve;
mod setup;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keywarden: a key management service that speaks the AWS KMS API.
///
/// Keywarden creates and guards master keys (in software under a root key,
/// or inside an HSM through PKCS#11) and serves the AWS KMS JSON API, so the
/// AWS CLI, the AWS SDKs and the AWS Encryption SDK work with it unchanged.
/// Cloud products (block volumes, object storage, file storage, databases)
/// use it for envelope encryption through per-product default keys; tenants
/// manage their own keys; the operator runs `keywarden serve` and manages
/// accounts, products, billing, backups and the audit log with
/// `keywarden admin`. See README.md and docs/.
#[derive(Parser)]
#[command(name = "keywarden", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Operator commands: accounts, their access keys and billing (top-ups,
    /// balance, ledger, usage, statements), cloud products and their access
    /// keys, the store (check, backup, restore, migration to PostgreSQL) and
    /// the audit log (verify, query).
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Operator commands on a tenant's keys (`--account`): create, describe,
    /// enable/disable, rotation, deletion protection, last usage, deletion.
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Encrypt a file into an AWS Encryption SDK message (format version 2,
    /// key-committing suites) with a data key from Keywarden; credentials from
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    Encrypt(envelope::EncryptArgs),
    /// Decrypt an AWS Encryption SDK message (ours or the official SDKs');
    /// credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    Decrypt(envelope::DecryptArgs),
}

/// Where the data lives; shared by every command.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// Data directory: the SQLite database and, by default, the root key.
    #[arg(long, env = "KEYWARDEN_DATA_DIR", default_value = "./keywarden-data")]
    pub data_dir: PathBuf,
    /// Root key file (256-bit, mode 0600; created on first use). Defaults to
    /// DATA_DIR/root.key; keep it on another volume in production.
    #[arg(long, env = "KEYWARDEN_ROOT_KEY_FILE")]
    pub root_key_file: Option<PathBuf>,
    /// Region used in ARNs and SigV4 credential scopes.
    #[arg(long, env = "KEYWARDEN_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Other regions this deployment serves besides `--region`
    /// (comma-separated): requests signed for any of them act in that
    /// region, and multi-Region keys may have replicas there
    /// (docs/multi-region.md). `--region` stays the home region.
    #[arg(long, env = "KEYWARDEN_REGIONS", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Configuration file (TOML) with the sections `[billing]` and
    /// `[billing.prices]` (docs/billing.md; without them billing is off),
    /// `[database]` (docs/operations.md), `[[custom_key_stores]]` and
    /// `[root_key]` (docs/hsm.md), `[limits]` (docs/limits.md) and `[audit]`
    /// (docs/audit.md).
    #[arg(long, env = "KEYWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    /// A PostgreSQL database shared by several nodes
    /// (`postgres://user:password@host:port/db`) instead of the embedded
    /// database in the data directory (docs/operations.md). Also
    /// `[database] url` in the configuration file.
    #[arg(long, env = "KEYWARDEN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<config::DatabaseUrl>,
}

/// Options of `keywarden serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "KEYWARDEN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate chain for HTTPS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (credentials and data keys
    /// would cross the network unencrypted).
    #[arg(long)]
    allow_plaintext: bool,
    /// How often keys whose deletion waiting period ended are destroyed and
    /// keys whose automatic rotation is due are rotated, in seconds.
    #[arg(long, default_value_t = 10, hide = true)]
    deletion_sweep_secs: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Admin(cmd) => admin::run(cmd).await,
            Command::Key(cmd) => key::run(cmd).await,
            Command::Encrypt(args) => envelope::encrypt(args).await,
            Command::Decrypt(args) => envelope::decrypt(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
