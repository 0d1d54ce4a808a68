//! The real `keywarden` binary on port 0 with a fresh data dir, driven
//! the way users will: `aws-sdk-kms` clients, the admin CLI, and raw
//! SigV4-signed requests for what the SDK cannot send.
//!
//! The binary is named by the caller: integration tests of the `keywarden`
//! crate pass `env!("CARGO_BIN_EXE_keywarden")`; other crates' tests use
//! [`keywarden_binary`], which finds it beside the test executable.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::Client;

/// `target/<profile>/keywarden`, for tests of crates that do not build the
/// binary themselves (no `CARGO_BIN_EXE_keywarden`): a test executable
/// runs as `target/<profile>/deps/<name>`. Fails with what to run when the
/// binary has not been built.
pub fn keywarden_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let keywarden = dir.join(format!("keywarden{}", std::env::consts::EXE_SUFFIX));
    assert!(
        keywarden.exists(),
        "{} does not exist: run `cargo build --bin keywarden` first",
        keywarden.display()
    );
    keywarden
}

/// An access key printed by `keywarden admin account create`.
#[derive(Clone)]
pub struct Account {
    /// The account's id (empty for product credentials).
    pub account_id: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

// By hand: the secret access key stays out of test output, as secrets stay
// out of every `Debug` in the project.
impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("account_id", &self.account_id)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What `keywarden serve` gets beyond `--listen 127.0.0.1:0 --data-dir D`.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// More arguments for `serve` only (`--config FILE`, ...).
    pub args: Vec<String>,
    /// Arguments for `serve` and every `admin` command of the server
    /// (`--database-url URL`, ...).
    pub shared_args: Vec<String>,
    /// Environment of the server and of every command made by
    /// [`Server::command`] (`SOFTHSM2_CONF`, `KEYWARDEN_CONFIG`, ...): set
    /// per child, never in the test process, so tests that need different
    /// values can share a test binary.
    pub env: Vec<(String, OsString)>,
    /// `KEYWARDEN_LOG` for the server; unset: the variable
    /// `KEYWARDEN_TEST_SERVER_LOG` of the test run, else `debug`.
    pub log: Option<String>,
}

impl Options {
    /// No extra arguments or environment.
    pub fn new() -> Options {
        Options::default()
    }

    /// Adds `serve` arguments.
    pub fn args(mut self, args: &[&str]) -> Options {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Adds arguments for `serve` and `admin`.
    pub fn shared_args(mut self, args: &[&str]) -> Options {
        self.shared_args
            .extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Sets an environment variable for the server and its commands.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Options {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// The server's log filter (`KEYWARDEN_LOG`).
    pub fn log(mut self, filter: &str) -> Options {
        self.log = Some(filter.to_owned());
        self
    }
}

/// A running `keywarden serve`; killed when dropped.
pub struct Server {
    /// `http://127.0.0.1:PORT`, as the server printed it.
    pub url: String,
    /// The server's data dir.
    pub data_dir: PathBuf,
    /// The file the server's stderr (its log) is appended to.
    pub log: PathBuf,
    /// `--database-url URL` for nodes on PostgreSQL, passed to `admin` too.
    pub database_args: Vec<String>,
    bin: PathBuf,
    env: Vec<(String, OsString)>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    /// A server on a fresh data dir.
    pub fn start(bin: impl AsRef<Path>) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        let mut s = Server::start_in(bin, &data_dir, tmp.path().join("server.log"));
        s._tmp = Some(tmp);
        s
    }

    /// A server on an existing (or new) data dir; logs to `log`.
    pub fn start_in(bin: impl AsRef<Path>, data_dir: &Path, log: PathBuf) -> Server {
        Server::start_with(bin, data_dir, log, &[])
    }

    /// Like [`Server::start_in`], with more arguments for `keywarden serve`
    /// (`--config FILE`, ...).
    pub fn start_with(
        bin: impl AsRef<Path>,
        data_dir: &Path,
        log: PathBuf,
        extra_args: &[&str],
    ) -> Server {
        Server::start_opts(bin, data_dir, log, Options::new().args(extra_args))
    }

    /// A node on the PostgreSQL database at `database_url`, with its own
    /// data dir (which holds only its root key).
    pub fn start_node(
        bin: impl AsRef<Path>,
        data_dir: &Path,
        log: PathBuf,
        database_url: &str,
    ) -> Server {
        Server::start_node_with(bin, data_dir, log, database_url, &[])
    }

    /// Like [`Server::start_node`], with more arguments for `keywarden
    /// serve` (`--config FILE`, ...) that `admin` gets too.
    pub fn start_node_with(
        bin: impl AsRef<Path>,
        data_dir: &Path,
        log: PathBuf,
        database_url: &str,
        extra_args: &[&str],
    ) -> Server {
        let options = Options::new()
            .shared_args(&["--database-url", database_url])
            .shared_args(extra_args);
        Server::start_opts(bin, data_dir, log, options)
    }

    /// A server on `data_dir` (existing or new) with `options`, logging to
    /// `log`; waits up to 30 s for its `listening on URL` line.
    pub fn start_opts(
        bin: impl AsRef<Path>,
        data_dir: &Path,
        log: PathBuf,
        options: Options,
    ) -> Server {
        let bin = bin.as_ref().to_owned();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let filter = options.log.unwrap_or_else(|| {
            std::env::var("KEYWARDEN_TEST_SERVER_LOG").unwrap_or_else(|_| "debug".into())
        });
        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(&options.args)
            .args(&options.shared_args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .env("KEYWARDEN_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("start keywarden");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on ") {
                    let rest = &line[i + "listening on ".len()..];
                    let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not print its address within 30 s");
        Server {
            url,
            data_dir: data_dir.to_owned(),
            log,
            database_args: options.shared_args,
            bin,
            env: options.env,
            child: Some(child),
            _tmp: None,
        }
    }

    /// The binary this server runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A `keywarden` command with the server's environment
    /// ([`Options::env`]) and nothing else: for `keywarden key ...` and
    /// other commands a test runs beside the server.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs `keywarden admin ...` against this server's data dir.
    pub fn admin(&self, args: &[&str]) -> std::process::Output {
        self.admin_command(args)
            .output()
            .expect("run keywarden admin")
    }

    /// The `keywarden admin ...` command [`Server::admin`] runs, to run it
    /// elsewhere (another thread).
    pub fn admin_command(&self, args: &[&str]) -> Command {
        let mut cmd = self.command();
        cmd.arg("admin");
        cmd.args(args);
        cmd.arg("--data-dir").arg(&self.data_dir);
        cmd.args(&self.database_args);
        cmd
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Creates an account through the admin CLI.
    pub fn account(&self, name: &str) -> Account {
        let out = self.admin(&["account", "create", "--name", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_account(&out.stdout)
    }

    /// An `aws-sdk-kms` client for `account` on this server (us-east-1).
    pub fn client(&self, account: &Account) -> Client {
        let creds = Credentials::new(
            &account.access_key_id,
            &account.secret_access_key,
            None,
            None,
            "keywarden-test",
        );
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&self.url)
            .build();
        Client::from_conf(config)
    }

    /// SIGKILL, as a crash: no graceful shutdown, no final flush.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }

    /// Sends SIGTERM and waits for exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        for _ in 0..150 {
            if let Some(st) = child.try_wait().expect("wait") {
                return st;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        panic!("server did not stop within 15 s of SIGTERM");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The JSON a successful `keywarden admin ...` printed.
pub fn admin_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("admin prints JSON")
}

/// New access keys for a cloud product (`admin product credentials
/// create`), as an [`Account`] without an account id.
pub fn product_credential(server: &Server, code: &str) -> Account {
    let v = admin_json(&server.admin(&["product", "credentials", "create", "--code", code]));
    assert_eq!(v["ProductCode"], code);
    Account {
        account_id: String::new(),
        access_key_id: v["AccessKeyId"].as_str().unwrap().to_owned(),
        secret_access_key: v["SecretAccessKey"].as_str().unwrap().to_owned(),
    }
}

/// The access key in the JSON `keywarden admin account create` printed.
pub fn parse_account(stdout: &[u8]) -> Account {
    let v: serde_json::Value = serde_json::from_slice(stdout).expect("admin prints JSON");
    Account {
        account_id: v["AccountId"].as_str().unwrap().to_owned(),
        access_key_id: v["AccessKeyId"].as_str().unwrap().to_owned(),
        secret_access_key: v["SecretAccessKey"].as_str().unwrap().to_owned(),
    }
}

/// The AWS error code of an SDK error (`NotFoundException`, ...).
pub fn code<E, R>(err: &aws_sdk_kms::error::SdkError<E, R>) -> String
where
    E: aws_sdk_kms::error::ProvideErrorMetadata,
{
    use aws_sdk_kms::error::ProvideErrorMetadata;
    err.code().unwrap_or("<no code>").to_owned()
}

/// An HTTP answer to [`raw_post`].
#[derive(Debug)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (`Null` where [`vault_request`] got none).
    pub body: serde_json::Value,
}

impl RawResponse {
    /// The `__type` of an error body.
    pub fn error_type(&self) -> &str {
        self.body["__type"].as_str().unwrap_or("<none>")
    }
}

/// `host:port` of a plain-HTTP test server's URL.
pub fn authority(server_url: &str) -> &str {
    server_url
        .strip_prefix("http://")
        .expect("plain-HTTP test server")
        .trim_end_matches('/')
}

/// The bytes of an HTTP/1.1 `POST /` with `X-Amz-Target: target`,
/// SigV4-signed at `time` with `account`'s credentials by the official
/// `aws-sigv4` signer; `close` adds `connection: close`.
pub fn signed_request(
    server_url: &str,
    account: &Account,
    target: &str,
    body: &str,
    time: std::time::SystemTime,
    close: bool,
) -> String {
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    signed_post(server_url, account, "kms", &headers, body, time, close)
}

/// The bytes of an HTTP/1.1 `POST /` with `headers` (and `host`), signed at
/// `time` for `service` with `account`'s credentials by the official
/// `aws-sigv4` signer.
fn signed_post(
    server_url: &str,
    account: &Account,
    service: &str,
    headers: &[(&str, &str)],
    body: &str,
    time: std::time::SystemTime,
    close: bool,
) -> String {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    let authority = authority(server_url);
    let identity: Identity = aws_credential_types::Credentials::new(
        &account.access_key_id,
        &account.secret_access_key,
        None,
        None,
        "keywarden-test",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let headers: Vec<(&str, &str)> = std::iter::once(("host", authority))
        .chain(headers.iter().copied())
        .collect();
    let url = format!("http://{authority}/");
    let signable = SignableRequest::new(
        "POST",
        &url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();

    let mut request = String::from("POST / HTTP/1.1\r\n");
    for (name, value) in headers.iter().copied().chain(instructions.headers()) {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        request.push_str("connection: close\r\n");
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    request
}

/// POSTs `body` with `X-Amz-Target: target` to the server, SigV4-signed
/// with `account`'s credentials by the official `aws-sigv4` signer: for
/// requests the SDK cannot make (Keywarden's extension operations) and
/// fields it does not show. Plain HTTP/1.1 over one connection.
pub async fn raw_post(
    server_url: &str,
    account: &Account,
    target: &str,
    body: &str,
) -> RawResponse {
    let authority = authority(server_url);
    let request = signed_request(
        server_url,
        account,
        target,
        body,
        std::time::SystemTime::now(),
        true,
    );
    let (status, payload) = exchange(authority, &request).await;
    RawResponse {
        status,
        body: serde_json::from_str(&payload).expect("JSON body"),
    }
}

/// POSTs a Query-protocol `body` (form-encoded, `Action=...`) signed for
/// `service` (`iam`, `sts`) with `account`'s credentials; the status and
/// the XML answer.
pub async fn query_post(
    server_url: &str,
    account: &Account,
    service: &str,
    body: &str,
) -> (u16, String) {
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let request = signed_post(
        server_url,
        account,
        service,
        &headers,
        body,
        std::time::SystemTime::now(),
        true,
    );
    exchange(authority(server_url), &request).await
}

/// The text of the first `<tag>` element of an XML answer.
pub fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

/// Sends `request` over a new connection (which it closes) and reads the
/// answer: the status and the length-delimited body.
async fn exchange(authority: &str, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, payload) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "the test client reads only length-delimited bodies"
    );
    (status, payload.to_owned())
}

/// CreateKey with defaults; the new key's id.
pub async fn create_key(client: &Client) -> String {
    client
        .create_key()
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("KeyMetadata")
        .key_id
}

/// Encrypt `plaintext` under `key` (id, ARN or alias); the ciphertext blob.
pub async fn encrypt(
    client: &Client,
    key: impl Into<String>,
    plaintext: impl Into<Vec<u8>>,
) -> aws_sdk_kms::primitives::Blob {
    client
        .encrypt()
        .key_id(key)
        .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext))
        .send()
        .await
        .expect("Encrypt")
        .ciphertext_blob
        .expect("CiphertextBlob")
}

/// A plain HTTP/1.1 `GET path` with an optional `X-Vault-Token`, the way
/// MariaDB's `hashicorp_key_management` plugin reads the keyring endpoint;
/// the status and the JSON body.
pub async fn vault_get(server_url: &str, path: &str, token: Option<&str>) -> RawResponse {
    vault_request(server_url, "GET", path, token).await
}

/// Like [`vault_get`] with any method.
pub async fn vault_request(
    server_url: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> RawResponse {
    let authority = authority(server_url);
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {authority}\r\n");
    if let Some(token) = token {
        request.push_str(&format!("x-vault-token: {token}\r\n"));
    }
    request.push_str("content-length: 0\r\nconnection: close\r\n\r\n");
    let (status, payload) = exchange(authority, &request).await;
    RawResponse {
        status,
        body: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
    }
}
