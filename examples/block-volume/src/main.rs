//! `keywarden-volume`: block volumes of the elastic volume service (product
//! code `evs`) encrypted at rest with a data key from Keywarden, through
//! `keywarden-product`.
//!
//! A volume is a qcow2 image with built-in LUKS encryption, `IMAGE`, and a
//! small JSON file beside it, `IMAGE.kwdek`, holding the volume's data key
//! encrypted by the tenant's `evs` default key
//! (`arn:aws:kms:<region>:<account>:alias_evs`), that key's ARN and the
//! encryption context:
//!
//! ```text
//! {"account": <account>, "keywarden:product": "evs", "keywarden:volume": <volume id>}
//! ```
//!
//! The LUKS keyslot passphrase is the plaintext data key as 64 lowercase
//! hex characters. It exists only in this process's memory (zeroized on
//! drop) and in a pipe: each QEMU tool reads it from an inherited pipe
//! descriptor (`--object secret,id=..,file=/dev/fd/N`), never from argv,
//! the environment or a file. See `docs/integrations/block-volumes.md`.
//!
//! Configuration: `--endpoint` or `KEYWARDEN_ENDPOINT`, `--region` or
//! `AWS_REGION` (default `us-east-1`); the product credential only from
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, so it stays out of `ps`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, ExitStatus};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use keywarden_product::{
    Context, KeyChoice, PlaintextDataKey, ProductClient, ProductConfig, Zeroizing,
};
use serde::{Deserialize, Serialize};

/// The product this binary plays.
const PRODUCT: &str = "evs";
/// Suffix of the data key file beside an image.
const KWDEK_SUFFIX: &str = ".kwdek";
/// The `format` field of a data key file.
const KWDEK_FORMAT: &str = "keywarden-volume-dek";
/// The data key file version this binary reads and writes.
const KWDEK_VERSION: u32 = 1;
/// A data key file is a few kilobytes; anything much larger is not one.
const KWDEK_MAX_BYTES: u64 = 64 * 1024;
/// The QEMU secret object id of the passphrase that opens the image.
const SECRET_ID: &str = "kwsec0";
/// The QEMU secret object id of a new passphrase during rotation.
const NEW_SECRET_ID: &str = "kwsec1";
/// LUKS PBKDF2 time per keyslot, in milliseconds (QEMU's default is 2000).
/// The passphrase is a random 256-bit key, not a password: stretching it
/// adds no security, only latency to every open.
const PBKDF_ITER_TIME_MS: u32 = 100;
/// Environment variables the QEMU tools never need: the product's credential.
const CREDENTIAL_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

#[derive(Parser)]
#[command(
    name = "keywarden-volume",
    about = "LUKS-encrypted qcow2 volumes whose passphrase is a data key from Keywarden (product evs)"
)]
struct Cli {
    /// Keywarden's URL.
    #[arg(long, env = "KEYWARDEN_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// The region in key ARNs and SigV4 scopes.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// The qemu-img binary (create, rotate).
    #[arg(
        long,
        env = "KEYWARDEN_QEMU_IMG",
        default_value = "qemu-img",
        global = true
    )]
    qemu_img: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Which volume, of which tenant.
#[derive(Args)]
struct Volume {
    /// The tenant account (12 digits) whose evs default key protects the volume.
    #[arg(long)]
    account: String,
    /// The qcow2 image; its data key lives in IMAGE.kwdek.
    #[arg(long)]
    image: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a new encrypted volume: a data key from Keywarden, a LUKS
    /// qcow2 image keyed by it, IMAGE.kwdek beside it. Never overwrites.
    Create {
        #[command(flatten)]
        volume: Volume,
        /// Virtual size: bytes, or with a K, M, G or T suffix (powers of 1024).
        #[arg(long)]
        size: String,
    },
    /// Opens the volume with a QEMU tool: `open ... -- qemu-io -c 'read 0 4k'`
    /// or `-- qemu-nbd -k SOCKET` or `-- qemu-img info`. This process
    /// becomes the tool (exec), run as `TOOL --object secret,.. --image-opts
    /// ARGS.. driver=qcow2,..`: the exit code is the tool's.
    Open {
        #[command(flatten)]
        volume: Volume,
        /// The QEMU tool and its arguments, after `--`; the image options
        /// are appended last.
        #[arg(last = true, required = true, num_args = 1..)]
        tool: Vec<OsString>,
    },
    /// Replaces the volume's data key: a new LUKS keyslot for a new data
    /// key, then the new IMAGE.kwdek, then the old keyslot removed. The
    /// data is not re-encrypted.
    Rotate {
        #[command(flatten)]
        volume: Volume,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed, then each cause. No error carries key
            // material (keywarden-product's errors never do; ours name
            // files and ids only).
            eprintln!("keywarden-volume: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = Config {
        endpoint: cli.endpoint,
        region: cli.region,
        qemu_img: cli.qemu_img,
    };
    match cli.command {
        Command::Create { volume, size } => create(&config, &volume, &size).await,
        Command::Open { volume, tool } => match open(&config, &volume, &tool).await? {},
        Command::Rotate { volume } => rotate(&config, &volume).await,
    }
}

struct Config {
    endpoint: Option<String>,
    region: String,
    qemu_img: PathBuf,
}

impl Config {
    fn client(&self) -> Result<ProductClient> {
        fn var(name: &str) -> Result<String> {
            std::env::var(name).with_context(|| format!("environment variable {name} is not set"))
        }
        let endpoint = self
            .endpoint
            .clone()
            .context("no Keywarden endpoint: pass --endpoint or set KEYWARDEN_ENDPOINT")?;
        Ok(ProductClient::new(ProductConfig {
            endpoint,
            region: self.region.clone(),
            product_code: PRODUCT.to_owned(),
            access_key_id: var("AWS_ACCESS_KEY_ID")?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")?.into(),
        })?)
    }
}

async fn create(config: &Config, volume: &Volume, size: &str) -> Result<()> {
    check_account(&volume.account)?;
    let bytes = parse_size(size)?;
    let image = &volume.image;
    let kwdek = kwdek_path(image)?;
    let image_arg = qemu_path(image)?;
    // Checked before any request; the exclusive creations below make the
    // refusal race-free.
    for path in [image, &kwdek] {
        if fs::symlink_metadata(path).is_ok() {
            bail!(
                "{} already exists; refusing to overwrite it",
                path.display()
            );
        }
    }
    let client = config.client()?;
    let volume_id = uuid::Uuid::new_v4().to_string();
    let context = volume_context(&volume.account, &volume_id);
    let generated = client
        .generate_data_key(&volume.account, &KeyChoice::Default, &context)
        .await
        .with_context(|| {
            format!(
                "could not get a data key for account {} from Keywarden",
                volume.account
            )
        })?;
    let passphrase = passphrase(&generated.plaintext);
    drop(generated.plaintext);
    let record = KwdekFile::new(
        volume_id,
        generated.key_arn.clone(),
        context,
        &generated.encrypted_data_key,
    );

    // Order: IMAGE.kwdek first, so the key to an image exists before the
    // image does; then the image name is claimed exclusively (mode 0600),
    // then qemu-img formats it. A failure removes both; a crash in between
    // leaves a .kwdek without an image (or an empty image), which `create`
    // refuses to overwrite: delete both and create again.
    write_kwdek(&kwdek, &record, Replace::No)?;
    let mut claimed = false;
    let result = (|| -> Result<()> {
        claim_new_file(image)?;
        claimed = true;
        let secret = SecretPipe::new(&passphrase)?;
        let status = run_qemu(
            &config.qemu_img,
            vec![
                "create".into(),
                "-q".into(),
                "-f".into(),
                "qcow2".into(),
                "--object".into(),
                secret.object_arg(SECRET_ID).into(),
                "-o".into(),
                format!(
                    "encrypt.format=luks,encrypt.key-secret={SECRET_ID},\
                     encrypt.iter-time={PBKDF_ITER_TIME_MS}"
                )
                .into(),
                image_arg.into(),
                bytes.to_string().into(),
            ],
            &[&secret],
        )?;
        if !status.success() {
            bail!("qemu-img create failed ({status})");
        }
        Ok(())
    })();
    if let Err(e) = result {
        // Only an image this call created; never one that appeared meanwhile.
        if claimed {
            let _ = fs::remove_file(image);
        }
        let _ = fs::remove_file(&kwdek);
        return Err(e.context(format!("could not create {}", image.display())));
    }
    eprintln!(
        "created {} ({bytes} bytes, LUKS) with a data key under {}; data key in {}",
        image.display(),
        record.key_arn,
        kwdek.display()
    );
    Ok(())
}

/// Returns only on failure: on success this process has become the tool.
async fn open(config: &Config, volume: &Volume, tool: &[OsString]) -> Result<Infallible> {
    check_account(&volume.account)?;
    let image_opts = image_opts(&volume.image, SECRET_ID)?;
    let record = KwdekFile::load(&volume.image, &volume.account)?;
    let client = config.client()?;
    let passphrase = record.passphrase(&client, &volume.account).await?;
    let secret = SecretPipe::new(&passphrase)?;
    drop(passphrase);

    let (program, user_args) = tool.split_first().context("no QEMU tool given after --")?;
    let mut args: Vec<OsString> = Vec::new();
    let mut user_args = user_args.iter();
    // qemu-img takes its subcommand first (`qemu-img info --object ..`).
    if Path::new(program).file_name() == Some("qemu-img".as_ref()) {
        args.extend(user_args.next().cloned());
    }
    args.push("--object".into());
    args.push(secret.object_arg(SECRET_ID).into());
    args.push("--image-opts".into());
    args.extend(user_args.cloned());
    args.push(image_opts.into());
    // The tool replaces this process: its exit code and signals are the
    // tool's own, and nothing of ours (the client, the credential) stays
    // around while the volume is open. Returns only if exec failed.
    let err = exec_qemu(Path::new(program), args, &secret);
    Err(err.context(format!("could not run {}", Path::new(program).display())))
}

async fn rotate(config: &Config, volume: &Volume) -> Result<()> {
    check_account(&volume.account)?;
    let image = &volume.image;
    let kwdek = kwdek_path(image)?;
    let opened_by_old = image_opts(image, SECRET_ID)?;
    let opened_by_new = image_opts(image, NEW_SECRET_ID)?;
    let old = KwdekFile::load(image, &volume.account)?;
    let client = config.client()?;
    let old_passphrase = old.passphrase(&client, &volume.account).await?;
    // The same volume, the same context.
    let context = old.encryption_context.clone();
    let generated = client
        .generate_data_key(&volume.account, &KeyChoice::Default, &context)
        .await
        .context("could not get a new data key from Keywarden")?;
    let new_passphrase = passphrase(&generated.plaintext);
    drop(generated.plaintext);
    let new = KwdekFile::new(
        old.volume_id.clone(),
        generated.key_arn.clone(),
        context,
        &generated.encrypted_data_key,
    );

    // The ordering keeps the volume openable by whatever IMAGE.kwdek says
    // at every point a crash can interrupt:
    //
    // 1. add a keyslot for the new passphrase (opened with the old one).
    //    Crash after: both keyslots active, the old .kwdek opens it.
    // 2. replace IMAGE.kwdek atomically (temp file, fsync, rename, fsync of
    //    the directory). Crash after: the new .kwdek opens it; the old
    //    keyslot still works too.
    // 3. remove the old passphrase's keyslot (opened with the new one).
    //    Crash during or after: the new keyslot is untouched.
    //
    // A crash between 1 and 2 leaves a keyslot whose data key was never
    // stored: nobody can open it, it only takes one of the 8 slots.
    let (old_secret, new_secret) = (
        SecretPipe::new(&old_passphrase)?,
        SecretPipe::new(&new_passphrase)?,
    );
    let status = run_qemu(
        &config.qemu_img,
        vec![
            "amend".into(),
            "--object".into(),
            old_secret.object_arg(SECRET_ID).into(),
            "--object".into(),
            new_secret.object_arg(NEW_SECRET_ID).into(),
            "--image-opts".into(),
            "-o".into(),
            format!(
                "encrypt.state=active,encrypt.new-secret={NEW_SECRET_ID},\
                 encrypt.iter-time={PBKDF_ITER_TIME_MS}"
            )
            .into(),
            opened_by_old.into(),
        ],
        &[&old_secret, &new_secret],
    )?;
    if !status.success() {
        bail!(
            "qemu-img amend could not add a keyslot for the new data key ({status}); \
             {} is unchanged",
            kwdek.display()
        );
    }

    write_kwdek(&kwdek, &new, Replace::Yes)
        .context("the new keyslot was added, but the old data key is still in use")?;

    let (old_secret, new_secret) = (
        SecretPipe::new(&old_passphrase)?,
        SecretPipe::new(&new_passphrase)?,
    );
    drop((old_passphrase, new_passphrase));
    let status = run_qemu(
        &config.qemu_img,
        vec![
            "amend".into(),
            "--object".into(),
            old_secret.object_arg(SECRET_ID).into(),
            "--object".into(),
            new_secret.object_arg(NEW_SECRET_ID).into(),
            "--image-opts".into(),
            "-o".into(),
            format!("encrypt.state=inactive,encrypt.old-secret={SECRET_ID}").into(),
            opened_by_new.into(),
        ],
        &[&old_secret, &new_secret],
    )?;
    if !status.success() {
        bail!(
            "{} now holds the new data key, but qemu-img amend could not remove the old \
             keyslot ({status}): the old data key still opens the volume",
            kwdek.display()
        );
    }
    eprintln!(
        "rotated the data key of {} (now under {}); old keyslot removed, data not re-encrypted",
        image.display(),
        new.key_arn
    );
    Ok(())
}

/// The encryption context binding a data key to one volume of one account.
fn volume_context(account: &str, volume_id: &str) -> Context {
    [
        ("keywarden:product", PRODUCT),
        ("account", account),
        ("keywarden:volume", volume_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The LUKS passphrase of a data key: its 64 lowercase hex characters, in a
/// buffer allocated once at its final size and zeroized on drop.
fn passphrase(key: &PlaintextDataKey) -> Zeroizing<Vec<u8>> {
    hex_lower(key.expose())
}

fn hex_lower(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Zeroizing::new(Vec::with_capacity(2 * bytes.len()));
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0x0f)]);
    }
    out
}

/// `IMAGE.kwdek`, the parsed data key file of a volume.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KwdekFile {
    /// Always [`KWDEK_FORMAT`].
    format: String,
    /// Always [`KWDEK_VERSION`].
    version: u32,
    /// The volume's id (a UUID), named by the encryption context.
    volume_id: String,
    /// The key ARN of the KMS key that encrypted the data key.
    key_arn: String,
    /// The encryption context the data key was generated with.
    encryption_context: BTreeMap<String, String>,
    /// The encrypted data key, standard base64.
    encrypted_data_key: String,
}

impl KwdekFile {
    fn new(
        volume_id: String,
        key_arn: String,
        encryption_context: Context,
        encrypted_data_key: &[u8],
    ) -> KwdekFile {
        KwdekFile {
            format: KWDEK_FORMAT.to_owned(),
            version: KWDEK_VERSION,
            volume_id,
            key_arn,
            encryption_context,
            encrypted_data_key: base64::engine::general_purpose::STANDARD
                .encode(encrypted_data_key),
        }
    }

    /// Reads and checks `IMAGE.kwdek` for `account`. The file is untrusted:
    /// everything is checked that can be without Keywarden, and Keywarden
    /// refuses a ciphertext, key or context changed after the fact.
    fn load(image: &Path, account: &str) -> Result<KwdekFile> {
        let path = kwdek_path(image)?;
        if !image.exists() {
            bail!("{} does not exist", image.display());
        }
        // One open, then checks on what was opened: a FIFO, a device or a
        // file growing meanwhile cannot make the read hang or grow.
        let file = fs::File::open(&path).with_context(|| {
            format!(
                "could not read {} (the data key file of {})",
                path.display(),
                image.display()
            )
        })?;
        let meta = file
            .metadata()
            .with_context(|| format!("could not read {}", path.display()))?;
        if !meta.is_file() {
            bail!("{} is malformed: not a regular file", path.display());
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, KWDEK_MAX_BYTES + 1),
            &mut bytes,
        )
        .with_context(|| format!("could not read {}", path.display()))?;
        if bytes.len() as u64 > KWDEK_MAX_BYTES {
            bail!(
                "{} is malformed: larger than {KWDEK_MAX_BYTES} bytes",
                path.display()
            );
        }
        let record: KwdekFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is malformed", path.display()))?;
        record
            .check(account)
            .with_context(|| format!("{} is malformed or not this volume's", path.display()))?;
        Ok(record)
    }

    fn check(&self, account: &str) -> Result<()> {
        if self.format != KWDEK_FORMAT {
            bail!("format is not {KWDEK_FORMAT:?}");
        }
        if self.version != KWDEK_VERSION {
            bail!("unsupported version {}", self.version);
        }
        if uuid::Uuid::try_parse(&self.volume_id).is_err() {
            bail!("volume_id is not a UUID");
        }
        match key_arn_account(&self.key_arn) {
            Some(a) if a == account => {}
            Some(a) => bail!("the volume belongs to account {a}, not {account}; refusing"),
            None => bail!("key_arn is not a KMS key ARN"),
        }
        if self.encryption_context != volume_context(account, &self.volume_id) {
            bail!("encryption_context is not this account's and volume's");
        }
        self.ciphertext()?;
        Ok(())
    }

    fn ciphertext(&self) -> Result<Vec<u8>> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.encrypted_data_key)
            .context("encrypted_data_key is not base64")?;
        if bytes.is_empty() {
            bail!("encrypted_data_key is empty");
        }
        Ok(bytes)
    }

    /// The data key's passphrase, decrypted by Keywarden.
    async fn passphrase(
        &self,
        client: &ProductClient,
        account: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let key = client
            .decrypt_data_key(
                account,
                &self.key_arn,
                &self.encryption_context,
                &self.ciphertext()?,
            )
            .await
            .with_context(|| {
                format!(
                    "Keywarden did not decrypt the data key of volume {}",
                    self.volume_id
                )
            })?;
        Ok(passphrase(&key))
    }
}

/// The account of `arn:<partition>:kms:<region>:<account>:key/<id>`.
fn key_arn_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts[..] {
        ["arn", partition, "kms", region, account, resource]
            if !partition.is_empty()
                && !region.is_empty()
                && resource
                    .strip_prefix("key/")
                    .is_some_and(|id| !id.is_empty())
                && check_account(account).is_ok() =>
        {
            Some(account)
        }
        _ => None,
    }
}

/// Whether [`write_kwdek`] may replace an existing file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    No,
    Yes,
}

/// Writes `record` to a new temporary file beside `path` (mode 0600),
/// syncs it, and renames it over `path` (`Replace::Yes`) or links it to
/// `path`, failing if `path` exists (`Replace::No`); then syncs the
/// directory. Readers see the old file or the new one, never a partial one.
fn write_kwdek(path: &Path, record: &KwdekFile, replace: Replace) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(record).context("could not encode the data key file")?;
    json.push(b'\n');
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| -> Result<()> {
        let mut f = new_file(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
        match replace {
            Replace::Yes => fs::rename(&tmp, path)?,
            Replace::No => {
                fs::hard_link(&tmp, path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::AlreadyExists {
                        anyhow::anyhow!(
                            "{} already exists; refusing to overwrite it",
                            path.display()
                        )
                    } else {
                        e.into()
                    }
                })?;
                fs::remove_file(&tmp)?;
            }
        }
        fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("could not write {}", path.display()))
}

/// Creates `path`, which must not exist, with mode 0600.
fn new_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Claims the image's name: an empty file, mode 0600, that qemu-img then
/// formats.
fn claim_new_file(path: &Path) -> Result<()> {
    new_file(path).map(drop).with_context(|| {
        format!(
            "could not create {} (refusing to overwrite)",
            path.display()
        )
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn kwdek_path(image: &Path) -> Result<PathBuf> {
    let name = image
        .file_name()
        .with_context(|| format!("{} is not a file path", image.display()))?;
    let mut name = name.to_owned();
    name.push(KWDEK_SUFFIX);
    Ok(image.with_file_name(name))
}

/// The image path as qemu-img's positional filename: UTF-8, and never
/// read as `protocol:...` (a `/` before any `:` rules that out).
fn qemu_path(image: &Path) -> Result<String> {
    let s = image
        .to_str()
        .with_context(|| format!("{} is not UTF-8", image.display()))?;
    if s.is_empty() {
        bail!("the image path is empty");
    }
    Ok(if s.starts_with('/') || s.starts_with("./") {
        s.to_owned()
    } else {
        format!("./{s}")
    })
}

/// The `--image-opts` string opening `image` as LUKS qcow2 with secret
/// `secret_id`: the file protocol named explicitly, commas in the path
/// doubled (QEMU's option syntax).
fn image_opts(image: &Path, secret_id: &str) -> Result<String> {
    let path = qemu_path(image)?.replace(',', ",,");
    Ok(format!(
        "driver=qcow2,file.driver=file,file.filename={path},encrypt.key-secret={secret_id}"
    ))
}

/// A pipe holding one passphrase for a QEMU tool to read as
/// `--object secret,id=ID,file=/dev/fd/N`. The passphrase is written and
/// the write end closed before the tool starts (64 bytes fit in any pipe
/// buffer, so the write never blocks), so the tool reads it and then EOF.
/// Nothing reaches argv, the environment or the disk.
struct SecretPipe {
    read: OwnedFd,
}

impl SecretPipe {
    fn new(passphrase: &[u8]) -> Result<SecretPipe> {
        // Close-on-exec until the one spawn that should inherit it.
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .context("could not create a pipe for the passphrase")?;
        let mut write = fs::File::from(write);
        write
            .write_all(passphrase)
            .context("could not write the passphrase into its pipe")?;
        drop(write);
        Ok(SecretPipe { read })
    }

    fn object_arg(&self, id: &str) -> String {
        format!("secret,id={id},file=/dev/fd/{}", self.read.as_raw_fd())
    }
}

/// Runs a QEMU tool with stdio inherited, the `pipes`' read ends inherited
/// at their own numbers (close-on-exec cleared just before the spawn and set
/// again after it; this process starts no other child meanwhile, so none
/// other inherits them),
/// and the product credential removed from its environment.
fn run_qemu(program: &Path, args: Vec<OsString>, pipes: &[&SecretPipe]) -> Result<ExitStatus> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    for pipe in pipes {
        fcntl(&pipe.read, FcntlArg::F_SETFD(FdFlag::empty()))
            .context("could not pass the passphrase pipe on")?;
    }
    let mut command = Process::new(program);
    command.args(args);
    for var in CREDENTIAL_VARS {
        command.env_remove(var);
    }
    let status = command
        .status()
        .with_context(|| format!("could not run {}", program.display()));
    for pipe in pipes {
        let _ = fcntl(&pipe.read, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    }
    status
}

/// Replaces this process with a QEMU tool that inherits `pipe`'s read end
/// (close-on-exec cleared), the product credential removed from its
/// environment. Returns only on failure.
fn exec_qemu(program: &Path, args: Vec<OsString>, pipe: &SecretPipe) -> anyhow::Error {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    use std::os::unix::process::CommandExt;
    if let Err(e) = fcntl(&pipe.read, FcntlArg::F_SETFD(FdFlag::empty())) {
        return anyhow::Error::new(e).context("could not pass the passphrase pipe on");
    }
    let mut command = Process::new(program);
    command.args(args);
    for var in CREDENTIAL_VARS {
        command.env_remove(var);
    }
    command.exec().into()
}

fn check_account(account: &str) -> Result<()> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        bail!("account must be 12 digits, got {account:?}");
    }
    Ok(())
}

/// `64M`, `1G`, `1048576`: bytes, or K/M/G/T (powers of 1024), at least
/// 1 MiB and a multiple of 512.
fn parse_size(size: &str) -> Result<u64> {
    let (digits, shift) = match size.as_bytes().last() {
        Some(b'k' | b'K') => (&size[..size.len() - 1], 10),
        Some(b'M') => (&size[..size.len() - 1], 20),
        Some(b'G') => (&size[..size.len() - 1], 30),
        Some(b'T') => (&size[..size.len() - 1], 40),
        _ => (size, 0),
    };
    let n: u64 = digits
        .parse()
        .ok()
        .filter(|_| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .with_context(|| format!("size {size:?} is not a number with an optional K, M, G or T"))?;
    let bytes = n
        .checked_mul(1 << shift)
        .with_context(|| format!("size {size:?} is too large"))?;
    if bytes < 1 << 20 || bytes % 512 != 0 {
        bail!("size {size:?} must be at least 1M and a multiple of 512 bytes");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("2048k").unwrap(), 2 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        for bad in [
            "",
            "M",
            "-1M",
            "1.5G",
            "1m",
            "1K",
            "100",
            "1048577",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_for_qemu() {
        assert_eq!(qemu_path(Path::new("v.qcow2")).unwrap(), "./v.qcow2");
        assert_eq!(qemu_path(Path::new("nbd:x")).unwrap(), "./nbd:x");
        assert_eq!(qemu_path(Path::new("/d/v.qcow2")).unwrap(), "/d/v.qcow2");
        assert_eq!(
            image_opts(Path::new("/d/a,b.qcow2"), "s").unwrap(),
            "driver=qcow2,file.driver=file,file.filename=/d/a,,b.qcow2,encrypt.key-secret=s"
        );
        assert_eq!(
            kwdek_path(Path::new("/d/v.qcow2")).unwrap(),
            Path::new("/d/v.qcow2.kwdek")
        );
    }

    #[test]
    fn passphrase_is_lowercase_hex_of_the_key() {
        let mut key = [0u8; 32];
        key[0] = 0xab;
        key[31] = 0x0f;
        let p = hex_lower(&key);
        assert_eq!(p.len(), 64);
        assert!(p.starts_with(b"ab00"));
        assert!(p.ends_with(b"000f"));
    }

    #[test]
    fn kwdek_records_are_checked() {
        let account = "123456789012";
        let id = "6f9619ff-8b86-4d01-b42d-00cf4fc964ff";
        let good = || {
            KwdekFile::new(
                id.to_owned(),
                format!("arn:aws:kms:us-east-1:{account}:key/k1"),
                volume_context(account, id),
                &[1, 2, 3],
            )
        };
        good().check(account).unwrap();
        let err = good().check("210987654321").unwrap_err();
        assert!(err.to_string().contains("belongs to account"), "{err}");
        let mut r = good();
        r.volume_id = "6f9619ff-8b86-4d01-b42d-00cf4fc964fe".to_owned();
        assert!(r.check(account).is_err());
        let mut r = good();
        r.key_arn = format!("arn:aws:kms:us-east-1:{account}:alias_evs");
        assert!(r.check(account).is_err());
        let mut r = good();
        r.encrypted_data_key = "not base64!".to_owned();
        assert!(r.check(account).is_err());
        let mut r = good();
        r.version = 2;
        assert!(r.check(account).is_err());
    }
}
