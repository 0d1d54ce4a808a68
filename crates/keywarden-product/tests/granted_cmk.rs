//! The product library end to end with a customer managed key granted to a
//! database product: the real `keywarden` server (port 0, fresh data dir),
//! an account and `mysql`/`zos` product credentials made with
//! `keywarden admin`, the account's own aws-sdk-kms client creating the CMK
//! and the grants, and `ProductClient` sealing and opening with the CMK's
//! ARN. Checks the round trip, that a storage product is refused the CMK
//! even with a grant, that disabling the key stops `open` until it is
//! enabled again, and that revoking the grant stops it at once.
//!
//! Needs `target/debug/keywarden`: run `cargo build --bin keywarden` first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kms::config::{BehaviorVersion, Region};
use aws_sdk_kms::types::GrantOperation;
use keywarden_product::{Context, Envelope, Error, KeyChoice, ProductClient, ProductConfig};

const REGION: &str = "us-east-1";

/// `target/debug/keywarden`: this test runs as `target/debug/deps/<name>`.
fn keywarden_binary() -> PathBuf {
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

/// A fresh directory, removed on drop (this crate has no `tempfile`).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "keywarden-granted-cmk-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Server {
    child: Child,
    url: String,
    data_dir: PathBuf,
}

impl Server {
    fn start(tmp: &Path) -> Server {
        let data_dir = tmp.join("data");
        let log = tmp.join("server.log");
        let mut child = Command::new(keywarden_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .env("KEYWARDEN_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start keywarden");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some((_, rest)) = line.split_once("listening on ") {
                    let url = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(url);
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("keywarden did not print its address within 30 s");
        Server {
            child,
            url,
            data_dir,
        }
    }

    /// `keywarden admin ARGS --data-dir D`; returns its JSON output.
    fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(keywarden_binary())
            .arg("admin")
            .args(args)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .output()
            .expect("run keywarden admin");
        assert!(
            out.status.success(),
            "keywarden admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("admin prints UTF-8")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The string value of the top-level `field` in the admin's JSON output (a
/// flat object of strings; this crate has no `serde_json`).
fn json_str(json: &str, field: &str) -> String {
    let key = format!("\"{field}\"");
    let at = json
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} in the admin output"));
    let rest = json[at + key.len()..].trim_start();
    let rest = rest
        .strip_prefix(':')
        .expect("':' after the field name")
        .trim_start();
    let rest = rest
        .strip_prefix('"')
        .unwrap_or_else(|| panic!("{field} is not a string"));
    let mut value = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next().expect("unterminated JSON string") {
            '"' => return value,
            '\\' => match chars.next().expect("unterminated escape") {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                c @ ('"' | '\\' | '/') => value.push(c),
                c => panic!("unexpected escape \\{c} in {field}"),
            },
            c => value.push(c),
        }
    }
}

/// An access key pair issued by `keywarden admin`.
struct Credential {
    access_key_id: String,
    secret_access_key: String,
}

impl Credential {
    fn from_admin(json: &str) -> Credential {
        Credential {
            access_key_id: json_str(json, "AccessKeyId"),
            secret_access_key: json_str(json, "SecretAccessKey"),
        }
    }
}

/// The account's own KMS client.
fn account_client(server: &Server, cred: &Credential) -> aws_sdk_kms::Client {
    let credentials = aws_credential_types::Credentials::new(
        &cred.access_key_id,
        &cred.secret_access_key,
        None,
        None,
        "granted-cmk-test",
    );
    let config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(credentials)
        .endpoint_url(&server.url)
        .build();
    aws_sdk_kms::Client::from_conf(config)
}

fn product_client(server: &Server, code: &str) -> ProductClient {
    let cred = Credential::from_admin(&server.admin(&[
        "product",
        "credentials",
        "create",
        "--code",
        code,
    ]));
    ProductClient::new(ProductConfig {
        endpoint: server.url.clone(),
        region: REGION.to_owned(),
        product_code: code.to_owned(),
        access_key_id: cred.access_key_id,
        secret_access_key: cred.secret_access_key.into(),
    })
    .expect("product client")
}

fn principal(code: &str) -> String {
    format!("arn:aws:iam::000000000000:role/keywarden-product/{code}")
}

/// Asserts `result` failed with Keywarden's AWS error `code`.
fn assert_kms_error<T>(result: Result<T, Error>, code: &str, what: &str) {
    match result {
        Ok(_) => panic!("{what}: succeeded, expected {code}"),
        Err(err) => assert_eq!(err.aws_code(), Some(code), "{what}: {err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_cmk_seals_and_opens_for_a_database_product_until_disabled_or_revoked() {
    let tmp = TempDir::new();
    let server = Server::start(&tmp.0);
    let created = server.admin(&["account", "create", "--name", "tenant"]);
    let account = json_str(&created, "AccountId");
    let tenant = account_client(&server, &Credential::from_admin(&created));
    let mysql = product_client(&server, "mysql");
    let zos = product_client(&server, "zos");

    let cmk = tenant
        .create_key()
        .description("orders database")
        .send()
        .await
        .expect("CreateKey")
        .key_metadata
        .expect("KeyMetadata");
    let key_id = cmk.key_id().to_owned();
    let arn = cmk.arn().expect("the key's ARN").to_owned();
    assert_eq!(
        arn,
        format!("arn:aws:kms:{REGION}:{account}:key/{key_id}"),
        "CreateKey's ARN"
    );
    let key = KeyChoice::Arn(arn.clone());
    let ctx: Context = [
        ("database".to_owned(), "orders".to_owned()),
        ("table".to_owned(), "customers".to_owned()),
    ]
    .into();
    let data = b"row 1: alice, 42 Main Street".to_vec();

    // Without a grant, the database product may not use the CMK.
    assert_kms_error(
        mysql.seal(&account, &key, &ctx, &data).await,
        "AccessDeniedException",
        "mysql seal before any grant",
    );

    let grant = |grantee: &'static str| {
        tenant
            .create_grant()
            .key_id(&key_id)
            .grantee_principal(principal(grantee))
            .operations(GrantOperation::GenerateDataKey)
            .operations(GrantOperation::Decrypt)
            .send()
    };
    let mysql_grant = grant("mysql")
        .await
        .expect("CreateGrant to mysql")
        .grant_id
        .expect("GrantId");
    grant("zos").await.expect("CreateGrant to zos");

    // Seal and open round trip, through the stored bytes.
    let sealed = mysql
        .seal(&account, &key, &ctx, &data)
        .await
        .expect("mysql seals with the granted CMK");
    assert_eq!(sealed.key_arn(), arn, "the envelope names the CMK's ARN");
    assert_eq!(sealed.account_id(), account);
    let stored = sealed.to_bytes();
    let envelope = Envelope::from_bytes(&stored).expect("the stored envelope parses");
    assert_eq!(envelope.key_arn(), arn, "the stored envelope keeps the ARN");
    let opened = mysql
        .open(&account, &ctx, &envelope)
        .await
        .expect("mysql opens with the granted CMK");
    assert_eq!(*opened, data);

    // A storage product never uses a CMK, even with a grant to its principal:
    // neither to seal nor to open the database's envelope.
    assert_kms_error(
        zos.seal(&account, &key, &ctx, &data).await,
        "AccessDeniedException",
        "zos seal with a CMK granted to it",
    );
    assert_kms_error(
        zos.open(&account, &ctx, &envelope).await,
        "AccessDeniedException",
        "zos open of mysql's envelope",
    );

    // A disabled key opens nothing until it is enabled again.
    tenant
        .disable_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("DisableKey");
    assert_kms_error(
        mysql.open(&account, &ctx, &envelope).await,
        "DisabledException",
        "mysql open with the CMK disabled",
    );
    assert_kms_error(
        mysql.seal(&account, &key, &ctx, &data).await,
        "DisabledException",
        "mysql seal with the CMK disabled",
    );
    tenant
        .enable_key()
        .key_id(&key_id)
        .send()
        .await
        .expect("EnableKey");
    let opened = mysql
        .open(&account, &ctx, &envelope)
        .await
        .expect("mysql opens again once the CMK is enabled");
    assert_eq!(*opened, data);

    // Revoking the grant stops the very next request.
    tenant
        .revoke_grant()
        .key_id(&key_id)
        .grant_id(&mysql_grant)
        .send()
        .await
        .expect("RevokeGrant");
    assert_kms_error(
        mysql.open(&account, &ctx, &envelope).await,
        "AccessDeniedException",
        "mysql open right after RevokeGrant",
    );
    assert_kms_error(
        mysql.seal(&account, &key, &ctx, &data).await,
        "AccessDeniedException",
        "mysql seal right after RevokeGrant",
    );
}
