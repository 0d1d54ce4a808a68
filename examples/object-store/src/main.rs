//! `object-store`: a tiny object storage product that keeps its tenants'
//! objects encrypted at rest with Keywarden, through `keywarden-product`.
//!
//! Objects live in `ROOT/<account>/<name>.kwobj`, each file one serialized
//! envelope (see `crates/keywarden-product/README.md`): the data key
//! encrypted by the tenant's default key for this product, and the object
//! encrypted by that data key. The encryption context of every object is
//!
//! ```text
//! {"keywarden:product": <product code>, "account": <account>, "object": <name>}
//! ```
//!
//! so a file copied to another name or another account's directory does not
//! open. Configuration comes from the environment (never argv, so the secret
//! stays out of `ps`): `KEYWARDEN_ENDPOINT`, `AWS_REGION` (default
//! `us-east-1`), `KEYWARDEN_PRODUCT` (default `zos`), `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`.
#![forbid(unsafe_code)]

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use keywarden_product::{
    Context, Envelope, KeyChoice, ProductClient, ProductConfig, Zeroizing, MAX_PLAINTEXT_LEN,
};

/// File name suffix of a stored object.
const SUFFIX: &str = ".kwobj";

#[derive(Parser)]
#[command(
    name = "object-store",
    about = "A tiny object store whose objects are encrypted with keys from Keywarden"
)]
struct Cli {
    /// The directory holding every account's objects.
    #[arg(long)]
    root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypts FILE (`-` for stdin) and stores it as object NAME.
    Put {
        /// The tenant account (12 digits).
        #[arg(long)]
        account: String,
        /// The object's name (no `/`, `\`, `..`; not starting with `.`).
        name: String,
        /// The file to store; `-` reads stdin.
        file: PathBuf,
    },
    /// Decrypts object NAME into OUT (`-` for stdout).
    Get {
        /// The tenant account (12 digits).
        #[arg(long)]
        account: String,
        /// The object's name.
        name: String,
        /// Where to write the object; `-` writes stdout.
        out: PathBuf,
    },
    /// Lists an account's objects: name and size in bytes, one per line.
    List {
        /// The tenant account (12 digits).
        #[arg(long)]
        account: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: what failed, then each cause.
            eprintln!("object-store: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Put {
            account,
            name,
            file,
        } => put(&cli.root, &account, &name, &file).await,
        Command::Get { account, name, out } => get(&cli.root, &account, &name, &out).await,
        Command::List { account } => list(&cli.root, &account),
    }
}

async fn put(root: &Path, account: &str, name: &str, file: &Path) -> Result<()> {
    let path = object_path(root, account, name)?;
    let plaintext = read_input(file)?;
    let client = client_from_env()?;
    let envelope = client
        .seal(
            account,
            &KeyChoice::Default,
            &context(&client, account, name),
            &plaintext,
        )
        .await
        .with_context(|| format!("could not encrypt object {name:?} for account {account}"))?;
    let dir = path.parent().expect("object paths have a parent");
    fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    write_atomically(&path, &envelope.to_bytes(), None)
        .with_context(|| format!("could not store {}", path.display()))?;
    eprintln!(
        "stored {name} ({} bytes) under {}",
        plaintext.len(),
        envelope.key_arn()
    );
    Ok(())
}

async fn get(root: &Path, account: &str, name: &str, out: &Path) -> Result<()> {
    let path = object_path(root, account, name)?;
    let bytes = fs::read(&path).with_context(|| format!("could not read {}", path.display()))?;
    let envelope = Envelope::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid stored object", path.display()))?;
    let client = client_from_env()?;
    // Decrypted completely before anything is written: a failure leaves no
    // output behind.
    let plaintext = client
        .open(account, &context(&client, account, name), &envelope)
        .await
        .with_context(|| format!("could not decrypt object {name:?} of account {account}"))?;
    if out == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&plaintext)?;
        stdout.flush()?;
    } else {
        // Plaintext: readable by the owner only.
        write_atomically(out, &plaintext, Some(0o600))
            .with_context(|| format!("could not write {}", out.display()))?;
    }
    Ok(())
}

fn list(root: &Path, account: &str) -> Result<()> {
    check_account(account)?;
    let dir = root.join(account);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("could not list {}", dir.display())),
    };
    let mut rows = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(SUFFIX)) else {
            continue;
        };
        if check_name(name).is_err() {
            continue;
        }
        // The plaintext size is in the envelope's framing; no key needed.
        let size = fs::read(entry.path())
            .ok()
            .and_then(|b| Envelope::from_bytes(&b).ok())
            .map_or_else(|| "?".to_owned(), |e| e.plaintext_len().to_string());
        rows.push((name.to_owned(), size));
    }
    rows.sort();
    let mut stdout = std::io::stdout().lock();
    for (name, size) in rows {
        writeln!(stdout, "{name}\t{size}")?;
    }
    Ok(())
}

/// The encryption context of object `name` of `account`.
fn context(client: &ProductClient, account: &str, name: &str) -> Context {
    [
        ("keywarden:product", client.product_code()),
        ("account", account),
        ("object", name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn client_from_env() -> Result<ProductClient> {
    fn var(name: &str) -> Result<String> {
        std::env::var(name).with_context(|| format!("environment variable {name} is not set"))
    }
    fn var_or(name: &str, default: &str) -> String {
        std::env::var(name).unwrap_or_else(|_| default.to_owned())
    }
    let config = ProductConfig {
        endpoint: var("KEYWARDEN_ENDPOINT")?,
        region: var_or("AWS_REGION", "us-east-1"),
        product_code: var_or("KEYWARDEN_PRODUCT", "zos"),
        access_key_id: var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: var("AWS_SECRET_ACCESS_KEY")?.into(),
    };
    Ok(ProductClient::new(config)?)
}

/// `root/<account>/<name>.kwobj`, after checking both parts are safe path
/// components.
fn object_path(root: &Path, account: &str, name: &str) -> Result<PathBuf> {
    check_account(account)?;
    check_name(name)?;
    Ok(root.join(account).join(format!("{name}{SUFFIX}")))
}

fn check_account(account: &str) -> Result<()> {
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        bail!("account must be 12 digits, got {account:?}");
    }
    Ok(())
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 {
        bail!("object name must be 1 to 200 bytes");
    }
    if name.contains(['/', '\\', '\0']) || name.contains("..") {
        bail!("object name {name:?} must not contain '/', '\\', NUL or '..'");
    }
    if name.starts_with('.') {
        // Dot files are this store's temporary files.
        bail!("object name {name:?} must not start with '.'");
    }
    Ok(())
}

/// The whole input, refusing more than the library's object size limit
/// before reading it all. Zeroized when dropped, as it is plaintext.
fn read_input(file: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let limit = MAX_PLAINTEXT_LEN as u64;
    let mut data = Zeroizing::new(Vec::new());
    let read = if file == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut data)
    } else {
        let f =
            fs::File::open(file).with_context(|| format!("could not open {}", file.display()))?;
        // Sized up front, so no reallocation leaves plaintext copies behind.
        if let Ok(meta) = f.metadata() {
            data.reserve(meta.len().min(limit + 1) as usize);
        }
        f.take(limit + 1).read_to_end(&mut data)
    };
    read.with_context(|| format!("could not read {}", file.display()))?;
    if data.len() > MAX_PLAINTEXT_LEN {
        bail!(
            "{} is larger than the object size limit of {MAX_PLAINTEXT_LEN} bytes",
            file.display()
        );
    }
    Ok(data)
}

/// Writes `bytes` to a new temporary file beside `path`, syncs it and
/// renames it over `path`, so readers see the old file or the new one, never
/// a partial one. The temporary file is removed on failure.
fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?
        .to_string_lossy()
        .into_owned();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = dir.join(format!(".{file_name}.{}.{nanos}.tmp", std::process::id()));

    let result = (|| -> Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        #[cfg(unix)]
        fs::File::open(&dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_account_directory_are_refused() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "a..b", ".hidden", "x\0y",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "report.pdf", "photo 2024-01-01.jpg", "0"] {
            check_name(good).unwrap();
        }
        assert!(check_name(&"n".repeat(201)).is_err());
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "../123456789",
            "12345678901a",
        ] {
            assert!(check_account(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            object_path(Path::new("/r"), "123456789012", "a.txt").unwrap(),
            Path::new("/r/123456789012/a.txt.kwobj")
        );
    }
}
