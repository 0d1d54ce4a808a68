//! `keywarden-sfs`: file systems of the elastic file service (product code
//! `sfs`) encrypted with the kernel's fscrypt (ext4, v2 policies), whose
//! key is a data key from Keywarden, through `keywarden-product`.
//!
//! A file system is an ext4 image made with `mkfs.ext4 -O encrypt`,
//! `IMAGE`, and a small JSON file beside it, `IMAGE.kwsfs`, holding the
//! file system's data key encrypted by the tenant's `sfs` default key
//! (`arn:aws:kms:<region>:<account>:alias_sfs`), that key's ARN, the
//! encryption context and the name of the fscrypt protector the key opens:
//!
//! ```text
//! {"account": <account>, "keywarden:product": "sfs", "keywarden:filesystem": <file system id>}
//! ```
//!
//! Inside the image, the top-level directory `data/` carries an fscrypt v2
//! policy (the root directory cannot: it holds `lost+found` and fscrypt's
//! own `.fscrypt/` metadata) whose master key is wrapped by a `raw_key`
//! protector; the protector's 32-byte key is the data key. The plaintext
//! data key exists only in this process's memory (zeroized on drop), in a
//! socket buffer and in fscrypt, which reads it from its standard input
//! (a Unix datagram socket; no `--key` file): never argv, the environment
//! or a file. See `docs/integrations/file-storage.md`.
//!
//! Configuration: `--endpoint` or `KEYWARDEN_ENDPOINT`, `--region` or
//! `AWS_REGION` (default `us-east-1`); the product credential only from
//! `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, so it stays out of `ps`.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Output, Stdio};

use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use clap::{Args, Parser, Subcommand};
use keywarden_product::{Context, KeyChoice, PlaintextDataKey, ProductClient, ProductConfig};
use serde::{Deserialize, Serialize};

/// The product this binary plays.
const PRODUCT: &str = "sfs";
/// Suffix of the metadata file beside an image.
const KWSFS_SUFFIX: &str = ".kwsfs";
/// The `format` field of a metadata file.
const KWSFS_FORMAT: &str = "keywarden-sfs-dek";
/// The metadata file version this binary reads and writes.
const KWSFS_VERSION: u32 = 1;
/// A metadata file is a few kilobytes; anything much larger is not one.
const KWSFS_MAX_BYTES: u64 = 64 * 1024;
/// The encrypted top-level directory inside the file system.
const ENCRYPTED_DIR: &str = "data";
/// Prefix of the fscrypt protector names this binary creates.
const PROTECTOR_PREFIX: &str = "keywarden-sfs-";
/// fscrypt's `raw_key` protectors take exactly this many bytes.
const RAW_KEY_LEN: usize = 32;
/// fscrypt's global configuration; the CLI has no option to name another.
const FSCRYPT_CONF: &str = "/etc/fscrypt.conf";
/// How often `umount` is retried while the file system is busy, 100 ms apart.
const UMOUNT_BUSY_RETRIES: u32 = 20;
/// Environment variables the system tools never need: the product's credential.
const CREDENTIAL_VARS: [&str; 3] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

#[derive(Parser)]
#[command(
    name = "keywarden-sfs",
    about = "ext4 file systems encrypted with fscrypt under a data key from Keywarden (product sfs)"
)]
struct Cli {
    /// Keywarden's URL.
    #[arg(long, env = "KEYWARDEN_ENDPOINT", global = true)]
    endpoint: Option<String>,
    /// The region in key ARNs and SigV4 scopes.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1", global = true)]
    region: String,
    /// The fscrypt binary.
    #[arg(
        long,
        env = "KEYWARDEN_FSCRYPT",
        default_value = "fscrypt",
        global = true
    )]
    fscrypt: PathBuf,
    /// The mkfs.ext4 binary (create).
    #[arg(
        long,
        env = "KEYWARDEN_MKFS_EXT4",
        default_value = "mkfs.ext4",
        global = true
    )]
    mkfs_ext4: PathBuf,
    #[command(subcommand)]
    command: Command,
}

/// Which file system, of which tenant.
#[derive(Args)]
struct FileSystem {
    /// The tenant account (12 digits) whose sfs default key protects the file system.
    #[arg(long)]
    account: String,
    /// The ext4 image; its data key lives in IMAGE.kwsfs.
    #[arg(long)]
    image: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a new file system: a data key from Keywarden, IMAGE.kwsfs, an
    /// ext4 image whose directory data/ has an fscrypt v2 policy protected
    /// by the data key. Leaves it locked and unmounted. Never overwrites.
    Create {
        #[command(flatten)]
        fs: FileSystem,
        /// Size: bytes, or with a K, M, G or T suffix (powers of 1024).
        #[arg(long)]
        size: String,
    },
    /// Loop-mounts the image on DIR (locked: data/ shows encoded names).
    Mount {
        #[command(flatten)]
        fs: FileSystem,
        /// The mount point, an existing directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Unmounts DIR (the kernel forgets the file system's key with it).
    Umount {
        /// The mount point.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Decrypts the data key through Keywarden and unlocks DIR/data.
    Unlock {
        #[command(flatten)]
        fs: FileSystem,
        /// The mount point of the image.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Removes DIR/data's key from the kernel.
    Lock {
        /// The mount point of the image.
        #[arg(long)]
        dir: PathBuf,
    },
    /// Replaces the data key: a new raw_key protector for a new data key on
    /// the policy, the new IMAGE.kwsfs, the old protector removed. The
    /// files are not re-encrypted. The image must be mounted on DIR.
    Rekey {
        #[command(flatten)]
        fs: FileSystem,
        /// The mount point of the image.
        #[arg(long)]
        dir: PathBuf,
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
            // files, ids and the tools' own one-line messages only).
            let message = format!("{e:#}");
            eprintln!(
                "keywarden-sfs: error: {}",
                message.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = Config {
        endpoint: cli.endpoint,
        region: cli.region,
        fscrypt: cli.fscrypt,
        mkfs_ext4: cli.mkfs_ext4,
    };
    match cli.command {
        Command::Create { fs, size } => create(&config, &fs, &size).await,
        Command::Mount { fs, dir } => mount(&fs, &dir),
        Command::Umount { dir } => umount(&dir),
        Command::Unlock { fs, dir } => unlock(&config, &fs, &dir).await,
        Command::Lock { dir } => lock(&config, &dir),
        Command::Rekey { fs, dir } => rekey(&config, &fs, &dir).await,
    }
}

struct Config {
    endpoint: Option<String>,
    region: String,
    fscrypt: PathBuf,
    mkfs_ext4: PathBuf,
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

    /// Runs fscrypt with `--quiet` (no prompts: fscrypt takes the default
    /// answer or fails) and `keys`, in the order fscrypt asks for them, on
    /// its standard input (see [`KeyInput`]).
    fn fscrypt(&self, args: &[OsString], keys: &[&PlaintextDataKey]) -> Result<Output> {
        let mut all: Vec<OsString> = args.to_vec();
        all.push("--quiet".into());
        let input = if keys.is_empty() {
            None
        } else {
            Some(KeyInput::new(keys)?)
        };
        run_tool(&self.fscrypt, &all, input)
    }
}

async fn create(config: &Config, fs_args: &FileSystem, size: &str) -> Result<()> {
    check_account(&fs_args.account)?;
    let bytes = parse_size(size)?;
    let image = &fs_args.image;
    let kwsfs = kwsfs_path(image)?;
    // Checked before any request; the exclusive creations below make the
    // refusal race-free.
    for path in [image, &kwsfs] {
        if fs::symlink_metadata(path).is_ok() {
            bail!(
                "{} already exists; refusing to overwrite it",
                path.display()
            );
        }
    }
    if !Path::new(FSCRYPT_CONF).exists() {
        bail!(
            "{FSCRYPT_CONF} does not exist: run `fscrypt setup` once as root \
             (fscrypt's global configuration; its CLI reads no other)"
        );
    }
    let client = config.client()?;
    let fs_id = uuid::Uuid::new_v4();
    let context = fs_context(&fs_args.account, &fs_id.to_string());
    let generated = client
        .generate_data_key(&fs_args.account, &KeyChoice::Default, &context)
        .await
        .with_context(|| {
            format!(
                "could not get a data key for account {} from Keywarden",
                fs_args.account
            )
        })?;
    let key = generated.plaintext;
    let record = KwsfsFile::new(
        fs_id.to_string(),
        generated.key_arn.clone(),
        context,
        new_protector_name(),
        &generated.encrypted_data_key,
    );

    // Order: IMAGE.kwsfs first, so the key to an image exists before the
    // image does; then the image name is claimed exclusively (mode 0600)
    // and formatted. A failure removes both; a crash in between leaves a
    // .kwsfs without a usable image, which `create` refuses to overwrite:
    // delete both and create again.
    write_kwsfs(&kwsfs, &record, Replace::No)?;
    let mut claimed = false;
    let mut mounted: Option<PathBuf> = None;
    let result = (|| -> Result<()> {
        let file = new_file(image).with_context(|| {
            format!(
                "could not create {} (refusing to overwrite)",
                image.display()
            )
        })?;
        claimed = true;
        file.set_len(bytes)
            .with_context(|| format!("could not size {}", image.display()))?;
        drop(file);
        // -U: the ext4 UUID is the file system id, so `blkid IMAGE` names
        // the .kwsfs it belongs to.
        run_checked(
            &config.mkfs_ext4,
            &[
                "-q".into(),
                "-F".into(),
                "-O".into(),
                "encrypt".into(),
                "-U".into(),
                fs_id.to_string().into(),
                "-L".into(),
                "kwsfs".into(),
                image.into(),
            ],
        )?;
        let dir = scratch_mount_dir(image)?;
        fs::create_dir(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        mounted = Some(dir.clone());
        mount_image(image, &dir)?;
        config.fscrypt(&["setup".into(), dir.clone().into()], &[])?;
        let data = dir.join(ENCRYPTED_DIR);
        fs::create_dir(&data).with_context(|| format!("could not create {}", data.display()))?;
        config.fscrypt(
            &[
                "encrypt".into(),
                data.clone().into(),
                "--source=raw_key".into(),
                format!("--name={}", record.protector_name).into(),
                "--no-recovery".into(),
                "--skip-unlock".into(),
            ],
            &[&key],
        )?;
        let status = FscryptStatus::of_dir(config, &data)?;
        if status.policy_version.as_deref() != Some("2") {
            bail!(
                "fscrypt made a v{} policy, not v2: set \"policy_version\": \"2\" in {FSCRYPT_CONF}",
                status.policy_version.as_deref().unwrap_or("?")
            );
        }
        status.protector(&record.protector_name)?;
        Ok(())
    })();
    // Unmount the scratch mount whatever happened: create leaves the file
    // system locked and unmounted.
    let mut cleanup = Ok(());
    if let Some(dir) = mounted {
        if is_mount_point(&dir) {
            cleanup = umount(&dir);
        }
        if cleanup.is_ok() {
            let _ = fs::remove_dir(&dir);
        }
    }
    if let Err(e) = result.and(cleanup) {
        if claimed {
            let _ = fs::remove_file(image);
        }
        let _ = fs::remove_file(&kwsfs);
        return Err(e.context(format!("could not create {}", image.display())));
    }
    eprintln!(
        "created {} ({bytes} bytes, ext4, fscrypt v2 policy on {ENCRYPTED_DIR}/) with a data key \
         under {}; data key in {}; locked and unmounted",
        image.display(),
        record.key_arn,
        kwsfs.display()
    );
    Ok(())
}

fn mount(fs_args: &FileSystem, dir: &Path) -> Result<()> {
    check_account(&fs_args.account)?;
    // The metadata is checked so that a tenant mounts only its own file
    // systems; no key is needed to mount (the data stays locked).
    KwsfsFile::load(&fs_args.image, &fs_args.account)?;
    if is_mount_point(dir) {
        bail!("{} is already a mount point", dir.display());
    }
    mount_image(&fs_args.image, dir)
}

fn umount(dir: &Path) -> Result<()> {
    // A file system just mounted or just used can be busy for a moment
    // (a process still closing a file in it); retry that briefly, nothing
    // else.
    let mut attempts = 0;
    loop {
        match run_checked(Path::new("umount"), &[dir.into()]) {
            Err(e) if attempts < UMOUNT_BUSY_RETRIES && format!("{e:#}").contains("busy") => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            result => return result,
        }
    }
}

async fn unlock(config: &Config, fs_args: &FileSystem, dir: &Path) -> Result<()> {
    check_account(&fs_args.account)?;
    let record = KwsfsFile::load(&fs_args.image, &fs_args.account)?;
    let data = encrypted_dir(dir)?;
    // Which protector: the one the .kwsfs names (after an interrupted
    // rekey the policy has two).
    let status = FscryptStatus::of_dir(config, &data)?;
    let protector = status.protector(&record.protector_name)?;
    let client = config.client()?;
    let key = record.data_key(&client, &fs_args.account).await?;
    config.fscrypt(
        &[
            "unlock".into(),
            data.clone().into(),
            format!("--unlock-with={}:{protector}", dir.display()).into(),
        ],
        &[&key],
    )?;
    drop(key);
    eprintln!("unlocked {}", data.display());
    Ok(())
}

fn lock(config: &Config, dir: &Path) -> Result<()> {
    let data = encrypted_dir(dir)?;
    config.fscrypt(&["lock".into(), data.clone().into()], &[])?;
    eprintln!("locked {}", data.display());
    Ok(())
}

async fn rekey(config: &Config, fs_args: &FileSystem, dir: &Path) -> Result<()> {
    check_account(&fs_args.account)?;
    let image = &fs_args.image;
    let kwsfs = kwsfs_path(image)?;
    let old = KwsfsFile::load(image, &fs_args.account)?;
    let data = encrypted_dir(dir)?;
    let status = FscryptStatus::of_dir(config, &data)?;
    let old_protector = status.protector(&old.protector_name)?;
    let policy = status.policy.clone();
    let client = config.client()?;
    let old_key = old.data_key(&client, &fs_args.account).await?;
    // The same file system, the same context.
    let context = old.encryption_context.clone();
    let generated = client
        .generate_data_key(&fs_args.account, &KeyChoice::Default, &context)
        .await
        .context("could not get a new data key from Keywarden")?;
    let new_key = generated.plaintext;
    let new = KwsfsFile::new(
        old.filesystem_id.clone(),
        generated.key_arn.clone(),
        context,
        new_protector_name(),
        &generated.encrypted_data_key,
    );

    // The ordering keeps the file system unlockable by whatever
    // IMAGE.kwsfs says at every point a crash can interrupt:
    //
    // 1. a new raw_key protector for the new data key. Crash after: an
    //    unused protector; the old .kwsfs unlocks.
    // 2. the new protector added to the policy (the policy's master key
    //    unwrapped with the old key, wrapped under the new one). Crash
    //    after: both protect the policy; the old .kwsfs unlocks.
    // 3. IMAGE.kwsfs replaced atomically. Crash after: the new one unlocks.
    // 4. the old protector removed from the policy and destroyed.
    config.fscrypt(
        &[
            "metadata".into(),
            "create".into(),
            "protector".into(),
            dir.into(),
            "--source=raw_key".into(),
            format!("--name={}", new.protector_name).into(),
        ],
        &[&new_key],
    )?;
    let new_protector = FscryptStatus::of_mount(config, dir)?.protector(&new.protector_name)?;
    let mount = dir.display().to_string();
    // fscrypt unlocks the new protector first, then the policy with the
    // old one (cmd/fscrypt/commands.go, addProtectorAction); keys in the
    // wrong order fail with "incorrect key provided" and change nothing.
    config
        .fscrypt(
            &[
                "metadata".into(),
                "add-protector-to-policy".into(),
                format!("--protector={mount}:{new_protector}").into(),
                format!("--policy={mount}:{policy}").into(),
                format!("--unlock-with={mount}:{old_protector}").into(),
            ],
            &[&new_key, &old_key],
        )
        .context(
            "could not add the new protector to the policy; the old data key is still in use",
        )?;
    drop(old_key);

    write_kwsfs(&kwsfs, &new, Replace::Yes)
        .context("the new protector was added, but the old data key is still in use")?;

    let removed = config
        .fscrypt(
            &[
                "metadata".into(),
                "remove-protector-from-policy".into(),
                format!("--protector={mount}:{old_protector}").into(),
                format!("--policy={mount}:{policy}").into(),
                "--force".into(),
            ],
            &[],
        )
        .and_then(|_| {
            config.fscrypt(
                &[
                    "metadata".into(),
                    "destroy".into(),
                    format!("--protector={mount}:{old_protector}").into(),
                    "--force".into(),
                ],
                &[],
            )
        });
    removed.context(format!(
        "the new data key is in place ({}), but the old protector {old_protector} \
         could not be removed; the old data key still unlocks",
        kwsfs.display()
    ))?;
    eprintln!(
        "rekeyed {} (now under {}, protector {new_protector}); old protector removed, \
         files not re-encrypted",
        image.display(),
        new.key_arn
    );
    Ok(())
}

/// The encryption context binding a data key to one file system of one account.
fn fs_context(account: &str, fs_id: &str) -> Context {
    [
        ("keywarden:product", PRODUCT),
        ("account", account),
        ("keywarden:filesystem", fs_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn new_protector_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{PROTECTOR_PREFIX}{}", &id[..16])
}

fn is_protector_name(name: &str) -> bool {
    name.strip_prefix(PROTECTOR_PREFIX).is_some_and(|rest| {
        rest.len() == 16
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Data keys on their way to fscrypt: queued, one datagram each, on a
/// Unix datagram socket pair whose other end becomes fscrypt's standard
/// input. fscrypt 0.3.3 reads a raw_key protector's key from a standard
/// input that is not a terminal when no `--key` file is named, 32 bytes per
/// key through a fresh buffered reader each time; a datagram socket hands
/// out one key per read, where a pipe would give the first reader both
/// keys of a rekey. Nothing reaches argv, the environment or a file.
struct KeyInput {
    stdin: UnixDatagram,
}

impl KeyInput {
    fn new(keys: &[&PlaintextDataKey]) -> Result<KeyInput> {
        let (ours, stdin) =
            UnixDatagram::pair().context("could not create a socket for the data key")?;
        for key in keys {
            let key = key.expose();
            if key.len() != RAW_KEY_LEN {
                bail!(
                    "the data key is {} bytes, fscrypt needs {RAW_KEY_LEN}",
                    key.len()
                );
            }
            let sent = ours.send(key).context("could not pass the data key on")?;
            if sent != key.len() {
                bail!("could not pass the data key on: short write");
            }
        }
        // Closing our end: a read past the queued keys sees end of file.
        drop(ours);
        Ok(KeyInput { stdin })
    }
}

/// Runs a system tool, the product credential removed from its
/// environment, `keys` (if any) as its standard input; fails with the
/// tool's own error message, on one line, when it exits non-zero.
fn run_tool(program: &Path, args: &[OsString], keys: Option<KeyInput>) -> Result<Output> {
    let mut command = Process::new(program);
    command.args(args);
    for var in CREDENTIAL_VARS {
        command.env_remove(var);
    }
    command.stdin(match keys {
        Some(k) => Stdio::from(OwnedFd::from(k.stdin)),
        None => Stdio::null(),
    });
    let name = tool_name(program, args);
    let out = command
        .output()
        .with_context(|| format!("could not run {}", program.display()))?;
    if !out.status.success() {
        bail!("{name} failed: {}", tool_message(&out));
    }
    Ok(out)
}

fn run_checked(program: &Path, args: &[OsString]) -> Result<()> {
    run_tool(program, args, None).map(drop)
}

/// `fscrypt unlock`, `mkfs.ext4`: the program and its first word.
fn tool_name(program: &Path, args: &[OsString]) -> String {
    let program = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match args.first().map(|a| a.to_string_lossy()) {
        Some(a) if program == "fscrypt" && !a.starts_with('-') => format!("{program} {a}"),
        _ => program,
    }
}

/// The gist of a failed tool's output on one line: fscrypt's `[ERROR] ...`
/// message (its first paragraph), or else the first lines of stderr.
fn tool_message(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = match stderr.find("[ERROR]") {
        Some(at) => &stderr[at..],
        None => &stderr,
    };
    let first_paragraph = text.split("\n\n").next().unwrap_or("");
    let mut line = first_paragraph
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        line = format!("{}", out.status);
    }
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push_str("...");
    }
    line
}

/// What `fscrypt status` says about a directory or a mount point: the
/// policy (directories), its version, and the protectors by name.
struct FscryptStatus {
    policy: String,
    policy_version: Option<String>,
    /// (descriptor, name) of each raw_key protector listed.
    protectors: Vec<(String, String)>,
}

impl FscryptStatus {
    fn of_dir(config: &Config, dir: &Path) -> Result<FscryptStatus> {
        let out = FscryptStatus::run(config, dir)?;
        let status = FscryptStatus::parse(&String::from_utf8_lossy(&out.stdout));
        if status.policy.is_empty() {
            bail!("fscrypt status shows no policy on {}", dir.display());
        }
        Ok(status)
    }

    fn of_mount(config: &Config, dir: &Path) -> Result<FscryptStatus> {
        let out = FscryptStatus::run(config, dir)?;
        Ok(FscryptStatus::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `fscrypt status` (not `--quiet`: that silences the report itself).
    fn run(config: &Config, dir: &Path) -> Result<Output> {
        run_tool(&config.fscrypt, &["status".into(), dir.into()], None)
    }

    fn parse(text: &str) -> FscryptStatus {
        let mut status = FscryptStatus {
            policy: String::new(),
            policy_version: None,
            protectors: Vec::new(),
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("Policy:") {
                status.policy = rest.trim().to_owned();
            }
            if let Some(at) = line.find("policy_version:") {
                status.policy_version = line[at + "policy_version:".len()..]
                    .split_whitespace()
                    .next()
                    .map(str::to_owned);
            }
            let Some(first) = line.split_whitespace().next() else {
                continue;
            };
            let is_descriptor = first.len() == 16 && first.bytes().all(|b| b.is_ascii_hexdigit());
            if let (true, Some(at)) = (is_descriptor, line.find("raw key protector \"")) {
                let name = line[at + "raw key protector \"".len()..].trim_end();
                if let Some(name) = name.strip_suffix('"') {
                    status.protectors.push((first.to_owned(), name.to_owned()));
                }
            }
        }
        status
    }

    /// The descriptor of the protector named `name`.
    fn protector(&self, name: &str) -> Result<String> {
        let mut found = self.protectors.iter().filter(|(_, n)| n == name);
        match (found.next(), found.next()) {
            (Some((descriptor, _)), None) => Ok(descriptor.clone()),
            (Some(_), Some(_)) => bail!("fscrypt lists more than one protector named {name}"),
            (None, _) => bail!(
                "the policy has no protector named {name}: the metadata file is not this \
                 file system's, or it is older than the last rekey"
            ),
        }
    }
}

/// `DIR/data`, after checking that DIR is a mount point.
fn encrypted_dir(dir: &Path) -> Result<PathBuf> {
    if !is_mount_point(dir) {
        bail!(
            "{} is not a mount point: mount the image there first",
            dir.display()
        );
    }
    Ok(dir.join(ENCRYPTED_DIR))
}

/// Whether `dir` is listed as a mount point in /proc/self/mounts.
fn is_mount_point(dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else {
        return false;
    };
    let Ok(mounts) = fs::read_to_string("/proc/self/mounts") else {
        return false;
    };
    mounts.lines().any(|line| {
        line.split(' ')
            .nth(1)
            .is_some_and(|m| unescape_mount(m) == dir)
    })
}

/// /proc/self/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|o| o.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(o) if bytes[i] == b'\\' => {
                out.push(o.iter().fold(0u8, |n, d| n.wrapping_mul(8) + (d - b'0')));
                i += 4;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

fn mount_image(image: &Path, dir: &Path) -> Result<()> {
    run_checked(
        Path::new("mount"),
        &[
            "-t".into(),
            "ext4".into(),
            "-o".into(),
            "loop,nodev,nosuid".into(),
            image.into(),
            dir.into(),
        ],
    )
}

/// A fresh directory beside the image for `create`'s own mount.
fn scratch_mount_dir(image: &Path) -> Result<PathBuf> {
    let name = image
        .file_name()
        .with_context(|| format!("{} is not a file path", image.display()))?
        .to_string_lossy()
        .into_owned();
    Ok(parent_dir(image).join(format!(".{name}.mnt.{}", uuid::Uuid::new_v4().simple())))
}

/// `IMAGE.kwsfs`, the parsed metadata file of a file system.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KwsfsFile {
    /// Always [`KWSFS_FORMAT`].
    format: String,
    /// Always [`KWSFS_VERSION`].
    version: u32,
    /// The file system's id (a UUID; also the ext4 UUID), named by the
    /// encryption context.
    filesystem_id: String,
    /// The key ARN of the KMS key that encrypted the data key.
    key_arn: String,
    /// The encryption context the data key was generated with.
    encryption_context: BTreeMap<String, String>,
    /// The name of the fscrypt raw_key protector whose key is the data key.
    protector_name: String,
    /// The encrypted data key, standard base64.
    encrypted_data_key: String,
}

impl KwsfsFile {
    fn new(
        filesystem_id: String,
        key_arn: String,
        encryption_context: Context,
        protector_name: String,
        encrypted_data_key: &[u8],
    ) -> KwsfsFile {
        KwsfsFile {
            format: KWSFS_FORMAT.to_owned(),
            version: KWSFS_VERSION,
            filesystem_id,
            key_arn,
            encryption_context,
            protector_name,
            encrypted_data_key: base64::engine::general_purpose::STANDARD
                .encode(encrypted_data_key),
        }
    }

    /// Reads and checks `IMAGE.kwsfs` for `account`. The file is untrusted:
    /// everything is checked that can be without Keywarden, and Keywarden
    /// refuses a ciphertext, key or context changed after the fact.
    fn load(image: &Path, account: &str) -> Result<KwsfsFile> {
        let path = kwsfs_path(image)?;
        if !image.exists() {
            bail!("{} does not exist", image.display());
        }
        // One open, then checks on what was opened: a FIFO, a device or a
        // file growing meanwhile cannot make the read hang or grow.
        let file = fs::File::open(&path).with_context(|| {
            format!(
                "could not read {} (the metadata file of {})",
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
        file.take(KWSFS_MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("could not read {}", path.display()))?;
        if bytes.len() as u64 > KWSFS_MAX_BYTES {
            bail!(
                "{} is malformed: larger than {KWSFS_MAX_BYTES} bytes",
                path.display()
            );
        }
        let record: KwsfsFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is malformed", path.display()))?;
        record.check(account).with_context(|| {
            format!("{} is malformed or not this file system's", path.display())
        })?;
        Ok(record)
    }

    fn check(&self, account: &str) -> Result<()> {
        if self.format != KWSFS_FORMAT {
            bail!("format is not {KWSFS_FORMAT:?}");
        }
        if self.version != KWSFS_VERSION {
            bail!("unsupported version {}", self.version);
        }
        if uuid::Uuid::try_parse(&self.filesystem_id).is_err() {
            bail!("filesystem_id is not a UUID");
        }
        match key_arn_account(&self.key_arn) {
            Some(a) if a == account => {}
            Some(a) => bail!("the file system belongs to account {a}, not {account}; refusing"),
            None => bail!("key_arn is not a KMS key ARN"),
        }
        if self.encryption_context != fs_context(account, &self.filesystem_id) {
            bail!("encryption_context is not this account's and file system's");
        }
        if !is_protector_name(&self.protector_name) {
            bail!("protector_name is not {PROTECTOR_PREFIX} and 16 hex digits");
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

    /// The data key, decrypted by Keywarden.
    async fn data_key(&self, client: &ProductClient, account: &str) -> Result<PlaintextDataKey> {
        client
            .decrypt_data_key(
                account,
                &self.key_arn,
                &self.encryption_context,
                &self.ciphertext()?,
            )
            .await
            .with_context(|| {
                format!(
                    "Keywarden did not decrypt the data key of file system {}",
                    self.filesystem_id
                )
            })
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

/// Whether [`write_kwsfs`] may replace an existing file.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replace {
    No,
    Yes,
}

/// Writes `record` to a new temporary file beside `path` (mode 0600),
/// syncs it, and renames it over `path` (`Replace::Yes`) or links it to
/// `path`, failing if `path` exists (`Replace::No`); then syncs the
/// directory. Readers see the old file or the new one, never a partial one.
fn write_kwsfs(path: &Path, record: &KwsfsFile, replace: Replace) -> Result<()> {
    let mut json =
        serde_json::to_vec_pretty(record).context("could not encode the metadata file")?;
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

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn kwsfs_path(image: &Path) -> Result<PathBuf> {
    let name = image
        .file_name()
        .with_context(|| format!("{} is not a file path", image.display()))?;
    let mut name = name.to_owned();
    name.push(KWSFS_SUFFIX);
    Ok(image.with_file_name(name))
}

fn check_account(account: &str) -> Result<()> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        bail!("account must be 12 digits, got {account:?}");
    }
    Ok(())
}

/// `64M`, `1G`, `67108864`: bytes, or K/M/G/T (powers of 1024), at least
/// 16 MiB (room for ext4's journal and fscrypt's metadata) and a multiple
/// of 4096 (the block size).
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
    if bytes < 16 << 20 || bytes % 4096 != 0 {
        bail!("size {size:?} must be at least 16M and a multiple of 4096 bytes");
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
        assert_eq!(parse_size("16384k").unwrap(), 16 << 20);
        assert_eq!(parse_size("16777216").unwrap(), 16 << 20);
        for bad in [
            "",
            "M",
            "-1M",
            "1.5G",
            "64m",
            "1M",
            "15M",
            "16777217",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_is_parsed() {
        let dir = "\"/m/data\" is encrypted with fscrypt.\n\n\
            Policy:   b3037f84ebedead4754c6470c5c05bd8\n\
            Options:  padding:32 contents:AES_256_XTS filenames:AES_256_CTS policy_version:2 \n\
            Unlocked: No\n\n\
            Protected with 2 protectors:\n\
            PROTECTOR         LINKED  DESCRIPTION\n\
            c749049cc20a2eed  No      raw key protector \"keywarden-sfs-0123456789abcdef\"\n\
            41e440d63d1c0dba  No      raw key protector \"other \\\"x\\\"\"\n";
        let s = FscryptStatus::parse(dir);
        assert_eq!(s.policy, "b3037f84ebedead4754c6470c5c05bd8");
        assert_eq!(s.policy_version.as_deref(), Some("2"));
        assert_eq!(
            s.protector("keywarden-sfs-0123456789abcdef").unwrap(),
            "c749049cc20a2eed"
        );
        let err = s.protector("keywarden-sfs-ffffffffffffffff").unwrap_err();
        assert!(err.to_string().contains("no protector named"), "{err}");
        let twice = format!(
            "{dir}c749049cc20a2eef  No      raw key protector \"keywarden-sfs-0123456789abcdef\"\n"
        );
        assert!(FscryptStatus::parse(&twice)
            .protector("keywarden-sfs-0123456789abcdef")
            .is_err());
    }

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount("/a\\040b"), Path::new("/a b"));
        assert_eq!(unescape_mount("/plain"), Path::new("/plain"));
        assert_eq!(unescape_mount("/x\\134y"), Path::new("/x\\y"));
        assert_eq!(unescape_mount("/\\04"), Path::new("/\\04"));
    }

    #[test]
    fn protector_names() {
        let n = new_protector_name();
        assert!(is_protector_name(&n), "{n}");
        assert_ne!(n, new_protector_name());
        assert!(!is_protector_name("keywarden-sfs-0123"));
        assert!(!is_protector_name("keywarden-sfs-0123456789ABCDEF"));
        assert!(!is_protector_name("other-0123456789abcdef"));
    }

    #[test]
    fn kwsfs_records_are_checked() {
        let account = "123456789012";
        let id = "6f9619ff-8b86-4d01-b42d-00cf4fc964ff";
        let good = || {
            KwsfsFile::new(
                id.to_owned(),
                format!("arn:aws:kms:us-east-1:{account}:key/k1"),
                fs_context(account, id),
                "keywarden-sfs-0123456789abcdef".to_owned(),
                &[1, 2, 3],
            )
        };
        good().check(account).unwrap();
        let err = good().check("210987654321").unwrap_err();
        assert!(err.to_string().contains("belongs to account"), "{err}");
        let mut r = good();
        r.filesystem_id = "6f9619ff-8b86-4d01-b42d-00cf4fc964fe".to_owned();
        assert!(r.check(account).is_err());
        let mut r = good();
        r.key_arn = format!("arn:aws:kms:us-east-1:{account}:alias_sfs");
        assert!(r.check(account).is_err());
        let mut r = good();
        r.encrypted_data_key = "not base64!".to_owned();
        assert!(r.check(account).is_err());
        let mut r = good();
        r.protector_name = "--key=/etc/passwd".to_owned();
        assert!(r.check(account).is_err());
        let mut r = good();
        r.version = 2;
        assert!(r.check(account).is_err());
    }
}
