//! `keywarden encrypt` and `keywarden decrypt`: files in the AWS Encryption
//! SDK message format (`docs/envelope.md`), with data keys from a running
//! Keywarden reached over the AWS KMS API, like any SDK user. Unlike the
//! operator commands these never open the data directory.
//!
//! Credentials come only from the environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`), never from
//! the command line, where other users could read them in the process list.
//!
//! Output to a file is written to a temporary file (mode 0600) in the
//! output's directory and renamed over it only when the whole message was
//! processed: a failure (wrong key, altered or truncated message) leaves no
//! partial output behind. Output to stdout (`-`) cannot be taken back, so
//! what was released before the failure has been written.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, ValueEnum};
use keywarden_envelope::kms::{DiscoveryFilter, KmsClientConfig, KmsKeyring};
use keywarden_envelope::{
    AlgorithmSuite, DecryptOptions, DefaultMaterialsManager, EncryptOptions, EncryptionContext,
};
use zeroize::Zeroizing;

/// The largest frame length the official AWS Encryption SDKs decrypt
/// (they read it as a signed 32-bit integer).
const MAX_FRAME_LENGTH: i64 = i32::MAX as i64;

/// Inputs above this size show a progress bar when stderr is a terminal.
const PROGRESS_THRESHOLD: u64 = 8 << 20;

/// How to reach Keywarden.
#[derive(Args, Debug)]
pub struct Connection {
    /// Keywarden's URL, e.g. http://127.0.0.1:8080 [env: KEYWARDEN_ENDPOINT,
    /// then AWS_ENDPOINT_URL_KMS].
    #[arg(long)]
    endpoint_url: Option<String>,
    /// Region of the SigV4 scope [env: AWS_REGION; default us-east-1].
    #[arg(long)]
    region: Option<String>,
}

/// The two algorithm suites (both key-committing).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Suite {
    /// AES-256-GCM, HKDF-SHA512, key commitment (0x0478).
    Committing,
    /// As `committing` plus an ECDSA P-384 signature (0x0578); the default
    /// of the official SDKs.
    CommittingSigned,
}

impl From<Suite> for AlgorithmSuite {
    fn from(s: Suite) -> AlgorithmSuite {
        match s {
            Suite::Committing => AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
            Suite::CommittingSigned => AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
        }
    }
}

/// Options of `keywarden encrypt`.
#[derive(Args, Debug)]
pub struct EncryptArgs {
    #[command(flatten)]
    connection: Connection,
    /// Key ARN protecting the data key; repeat for more keys (the first
    /// generates the data key, each can decrypt the message alone).
    #[arg(long = "key-id", value_name = "ARN", required = true)]
    key_ids: Vec<String>,
    /// Encryption context pair bound to the message (repeatable). Not
    /// secret: it is stored in the clear in the message and in audit logs.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Algorithm suite.
    #[arg(long, value_enum, default_value = "committing-signed")]
    suite: Suite,
    /// Plaintext bytes per frame, 1 to 2147483647 (2^31-1, the largest
    /// frame the official AWS Encryption SDKs read).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=MAX_FRAME_LENGTH))]
    frame_length: u32,
    /// File to encrypt, `-` for stdin.
    input: String,
    /// Where to write the message, `-` for stdout.
    output: String,
}

/// Options of `keywarden decrypt`.
#[derive(Args, Debug)]
pub struct DecryptArgs {
    #[command(flatten)]
    connection: Connection,
    /// Strict mode: only try encrypted data keys of these key ARNs
    /// (repeatable). Without it, discovery mode: any KMS key the message
    /// names that the credentials may use.
    #[arg(long = "key-id", value_name = "ARN")]
    key_ids: Vec<String>,
    /// Discovery mode only: accept keys of this account only (repeatable).
    #[arg(
        long = "discovery-account",
        value_name = "ACCOUNT_ID",
        conflicts_with = "key_ids"
    )]
    discovery_accounts: Vec<String>,
    /// A pair the message's encryption context must contain (repeatable);
    /// checked before any plaintext is written.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    /// Refuse messages with more encrypted data keys than this.
    #[arg(long)]
    max_encrypted_data_keys: Option<usize>,
    /// File to decrypt, `-` for stdin.
    input: String,
    /// Where to write the plaintext, `-` for stdout.
    output: String,
}

pub async fn encrypt(args: EncryptArgs) -> Result<()> {
    let config = client_config(&args.connection)?;
    let context = parse_context(&args.context)?;
    let keyring = KmsKeyring::strict_with_config(&config, args.key_ids)?;
    let materials = DefaultMaterialsManager::new(keyring);
    let (input, length) = open_input(&args.input)?;
    let options = EncryptOptions {
        suite: args.suite.into(),
        frame_length: args.frame_length,
        plaintext_length: length,
    };
    let mut output = Output::create(&args.output)?;
    let progress = Progress::new(length);
    let result = {
        let mut writer = output.writer();
        let outcome = keywarden_envelope::encrypt(
            &materials,
            &context,
            &options,
            progress.wrap(input),
            &mut writer,
        )
        .await;
        match outcome {
            Ok(_) => writer.flush().context("writing the message"),
            Err(e) => Err(anyhow!(e)),
        }
    };
    progress.finish(result.is_ok());
    result.with_context(|| format!("cannot encrypt {}", args.input))?;
    output.commit()
}

pub async fn decrypt(args: DecryptArgs) -> Result<()> {
    let config = client_config(&args.connection)?;
    let required_context = parse_context(&args.context)?;
    let keyring = if args.key_ids.is_empty() {
        let filter = (!args.discovery_accounts.is_empty()).then(|| DiscoveryFilter {
            partition: "aws".to_owned(),
            account_ids: args.discovery_accounts.clone(),
        });
        KmsKeyring::discovery_with_config(&config, filter)?
    } else {
        KmsKeyring::strict_with_config(&config, args.key_ids)?
    };
    let materials = DefaultMaterialsManager::new(keyring);
    let options = DecryptOptions {
        max_encrypted_data_keys: args.max_encrypted_data_keys,
        required_context,
        ..DecryptOptions::default()
    };
    let (input, length) = open_input(&args.input)?;
    let mut output = Output::create(&args.output)?;
    let progress = Progress::new(length);
    let result = {
        let mut writer = output.writer();
        let outcome =
            keywarden_envelope::decrypt(&materials, &options, progress.wrap(input), &mut writer)
                .await;
        match outcome {
            Ok(_) => writer.flush().context("writing the plaintext"),
            Err(e) => Err(anyhow!(e)),
        }
    };
    progress.finish(result.is_ok());
    result.with_context(|| format!("cannot decrypt {}", args.input))?;
    output.commit()
}

/// Endpoint and region from the flags or the environment, credentials from
/// the environment only.
fn client_config(c: &Connection) -> Result<KmsClientConfig> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = c
        .endpoint_url
        .clone()
        .or_else(|| env("KEYWARDEN_ENDPOINT"))
        .or_else(|| env("AWS_ENDPOINT_URL_KMS"))
        .ok_or_else(|| {
            anyhow!("no endpoint: pass --endpoint-url or set KEYWARDEN_ENDPOINT or AWS_ENDPOINT_URL_KMS")
        })?;
    let region = c
        .region
        .clone()
        .or_else(|| env("AWS_REGION"))
        .unwrap_or_else(|| "us-east-1".to_owned());
    let access_key_id = env("AWS_ACCESS_KEY_ID").ok_or_else(|| {
        anyhow!("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    })?;
    let secret_access_key = Zeroizing::new(
        env("AWS_SECRET_ACCESS_KEY")
            .ok_or_else(|| anyhow!("no credentials: set AWS_SECRET_ACCESS_KEY"))?,
    );
    Ok(KmsClientConfig {
        endpoint,
        region,
        access_key_id,
        secret_access_key,
        session_token: env("AWS_SESSION_TOKEN").map(Zeroizing::new),
    })
}

/// `KEY=VALUE` pairs (split at the first `=`; the value may contain more).
fn parse_context(pairs: &[String]) -> Result<EncryptionContext> {
    let mut context = EncryptionContext::new();
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            bail!("--context {pair:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--context {pair:?}: the key is empty");
        }
        if context.insert(k.to_owned(), v.to_owned()).is_some() {
            bail!("--context: key {k:?} given twice");
        }
    }
    Ok(context)
}

type Input = Box<dyn Read + Send>;

/// The input and, for a regular file, its length.
fn open_input(path: &str) -> Result<(Input, Option<u64>)> {
    if path == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = File::open(path).with_context(|| format!("cannot open {path}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {path}"))?;
    let length = meta.is_file().then_some(meta.len());
    Ok((Box::new(file), length))
}

/// Where the output goes: stdout, or a temporary file renamed over the
/// destination by [`Output::commit`] (dropped without it, it is removed).
enum Output {
    Stdout(std::io::Stdout),
    File {
        tmp: tempfile::NamedTempFile,
        dest: PathBuf,
    },
}

impl Output {
    fn create(path: &str) -> Result<Output> {
        if path == "-" {
            return Ok(Output::Stdout(std::io::stdout()));
        }
        let dest = PathBuf::from(path);
        let name = dest
            .file_name()
            .ok_or_else(|| anyhow!("{path}: not a file name"))?
            .to_string_lossy()
            .into_owned();
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".keywarden-tmp")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(&dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        Ok(Output::File { tmp, dest })
    }

    fn writer(&mut self) -> BufWriter<&mut (dyn Write + Send)> {
        let w: &mut (dyn Write + Send) = match self {
            Output::Stdout(s) => s,
            Output::File { tmp, .. } => tmp.as_file_mut(),
        };
        BufWriter::with_capacity(1 << 16, w)
    }

    /// Makes the output durable and visible under its name.
    fn commit(self) -> Result<()> {
        match self {
            Output::Stdout(mut s) => s.flush().context("writing to stdout"),
            Output::File { tmp, dest } => {
                tmp.as_file()
                    .sync_all()
                    .with_context(|| format!("cannot write {}", dest.display()))?;
                tmp.persist(&dest)
                    .map_err(|e| e.error)
                    .with_context(|| format!("cannot rename the output to {}", dest.display()))?;
                sync_dir(&dest);
                Ok(())
            }
        }
    }
}

/// Best effort: makes the rename durable. A failure here does not undo a
/// complete output, so it is not reported.
fn sync_dir(dest: &Path) {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A progress bar on stderr (indicatif) for inputs of known length above
/// [`PROGRESS_THRESHOLD`] when stderr is a terminal; otherwise nothing.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(length: Option<u64>) -> Progress {
        let show = std::io::stderr().is_terminal();
        Progress(length.filter(|&n| show && n > PROGRESS_THRESHOLD).map(|n| {
            let bar = indicatif::ProgressBar::new(n);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }))
    }

    fn wrap(&self, input: Input) -> Input {
        match &self.0 {
            Some(bar) => Box::new(bar.wrap_read(input)),
            None => input,
        }
    }

    fn finish(&self, ok: bool) {
        if let Some(bar) = &self.0 {
            if ok {
                bar.finish_and_clear();
            } else {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_pairs() {
        let c = parse_context(&["a=1".into(), "b=x=y".into(), "c=".into()]).unwrap();
        assert_eq!(c["a"], "1");
        assert_eq!(c["b"], "x=y");
        assert_eq!(c["c"], "");
        assert!(parse_context(&["novalue".into()]).is_err());
        assert!(parse_context(&["=v".into()]).is_err());
        assert!(parse_context(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn failed_output_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        {
            let mut out = Output::create(dest.to_str().unwrap()).unwrap();
            out.writer().write_all(b"partial").unwrap();
            // Dropped without commit.
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        let mut out = Output::create(dest.to_str().unwrap()).unwrap();
        {
            let mut w = out.writer();
            w.write_all(b"whole").unwrap();
            w.flush().unwrap();
        }
        out.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
