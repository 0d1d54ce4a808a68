//! MariaDB's data-at-rest encryption with keys from Keywarden
//! (docs/integrations/mariadb.md): a throwaway `mariadbd` (its own datadir,
//! port and socket, run as the `mysql` user) with the stock
//! `hashicorp_key_management` plugin pointed at a Keywarden keyring, with
//! `innodb-encrypt-tables=FORCE`, an encrypted redo log, encrypted
//! temporary files and tables. Rows with a marker string read back across
//! restarts and no file of the server holds the marker; a keyring rotation
//! is picked up at restart while old pages still read; a disabled KMS key
//! keeps MariaDB from starting, and enabling it brings the data back.
//!
//! Needs `mariadbd`, `mariadb-install-db`, `mariadb`, `mariadb-admin` and
//! the plugin (Debian: mariadb-server, mariadb-plugin-hashicorp-key-management),
//! which `scripts/test.sh` installs.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::types::GrantOperation;
use common::{raw_post, vault_get, Server};
use serde_json::json;

const MARKER: &str = "KEYWARDEN-MARIADB-MARKER-4c1e9b";
const ROWS: u32 = 20_000;

fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: scripts/test.sh installs mariadb-server and \
         mariadb-plugin-hashicorp-key-management"
    );
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A throwaway MariaDB server.
struct MariaDb {
    datadir: PathBuf,
    run: PathBuf,
    cnf: PathBuf,
    child: Option<Child>,
}

impl MariaDb {
    /// Writes the configuration (0600: it holds the keyring token) and
    /// initializes the datadir, which already needs keys from the keyring.
    fn create(base: &Path, vault_url: &str, token: &str) -> MariaDb {
        for tool in ["mariadbd", "mariadb-install-db", "mariadb", "mariadb-admin"] {
            require(tool);
        }
        let datadir = base.join("data");
        let run = base.join("run");
        std::fs::create_dir_all(&datadir).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let root = is_root();
        if root {
            // The server drops to `mysql`, which must reach its directories.
            run_ok(Command::new("chmod").arg("755").arg(base));
            run_ok(
                Command::new("chown")
                    .args(["-R", "mysql:mysql"])
                    .arg(&datadir)
                    .arg(&run),
            );
        }
        let cnf = base.join("my.cnf");
        let user = if root { "user=mysql\n" } else { "" };
        let text = format!(
            "[mariadbd]\n\
             {user}\
             datadir={datadir}\n\
             socket={run}/mysqld.sock\n\
             pid-file={run}/mysqld.pid\n\
             log-error={run}/error.log\n\
             tmpdir={run}\n\
             port={port}\n\
             bind-address=127.0.0.1\n\
             innodb-buffer-pool-size=32M\n\
             innodb-log-file-size=16M\n\
             plugin-load-add=hashicorp_key_management\n\
             hashicorp-key-management-vault-url={vault_url}\n\
             hashicorp-key-management-token={token}\n\
             hashicorp-key-management-timeout=10\n\
             innodb-encrypt-tables=FORCE\n\
             innodb-encrypt-log=ON\n\
             innodb-encrypt-temporary-tables=ON\n\
             innodb-encryption-threads=2\n\
             encrypt-tmp-files=ON\n\
             encrypt-tmp-disk-tables=ON\n\
             aria-encrypt-tables=ON\n",
            datadir = datadir.display(),
            run = run.display(),
            port = free_port(),
        );
        std::fs::write(&cnf, text).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&cnf, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let out = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", cnf.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        MariaDb {
            datadir,
            run,
            cnf,
            child: None,
        }
    }

    fn socket(&self) -> PathBuf {
        self.run.join("mysqld.sock")
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.run.join("error.log")).unwrap_or_default()
    }

    /// Starts `mariadbd`; `Err` with the new part of its error log if it
    /// exits instead of accepting connections.
    fn start(&mut self) -> Result<(), String> {
        let log_before = self.error_log().len();
        let mut child = Command::new("mariadbd")
            .arg(format!("--defaults-file={}", self.cnf.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let log = self.error_log();
                return Err(format!(
                    "mariadbd exited with {status}:\n{}",
                    &log[log_before.min(log.len())..]
                ));
            }
            if self.socket().exists() && self.try_sql("SELECT 1").is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd did not accept connections within 60 s:\n{}",
                self.error_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new("mariadb")
            .arg("--no-defaults")
            .arg("-uroot")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-N", "-B", "-e", sql])
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}\n{}", self.error_log()))
    }

    /// A clean shutdown.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        run_ok(
            Command::new("mariadb-admin")
                .arg("--no-defaults")
                .arg("-uroot")
                .arg(format!("--socket={}", self.socket().display()))
                .arg("shutdown"),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "mariadbd did not stop in 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every file under the datadir and the run directory (redo log,
    /// system tablespace, `.ibd` files, Aria logs, temporary files).
    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut dirs = vec![self.datadir.clone(), self.run.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.is_file() {
                    out.push(path);
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn holds(path: &Path, needle: &[u8]) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.windows(needle.len()).any(|w| w == needle)
}

fn files_holding(db: &MariaDb, needle: &[u8]) -> Vec<PathBuf> {
    db.files()
        .into_iter()
        .filter(|p| holds(p, needle))
        .collect()
}

/// `(min key version, current key version)` of a tablespace.
fn key_versions(db: &MariaDb, name: &str) -> (u32, u32) {
    let row = db.sql(&format!(
        "SELECT ENCRYPTION_SCHEME, MIN_KEY_VERSION, CURRENT_KEY_VERSION, CURRENT_KEY_ID \
         FROM information_schema.INNODB_TABLESPACES_ENCRYPTION WHERE NAME = '{name}'"
    ));
    let cols: Vec<u32> = row.split('\t').map(|c| c.parse().unwrap()).collect();
    assert_eq!(cols.len(), 4, "{name}: {row:?}");
    assert_eq!(cols[0], 1, "{name} is encrypted");
    assert_eq!(cols[3], 1, "{name} uses key 1");
    (cols[1], cols[2])
}

async fn wait_keyring_status(url: &str, path: &str, token: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while vault_get(url, path, Some(token)).await.status != status {
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_encrypts_at_rest_with_keys_from_a_keywarden_keyring() {
    let server = Server::start(common::BIN);
    let tenant = server.account("shop");
    let client = server.client(&tenant);
    let cmk = common::create_key(&client).await;
    client
        .create_grant()
        .key_id(&cmk)
        .grantee_principal("arn:aws:iam::000000000000:role/keywarden-product/mysql")
        .operations(GrantOperation::GenerateDataKey)
        .operations(GrantOperation::Decrypt)
        .send()
        .await
        .unwrap();
    let created = raw_post(
        &server.url,
        &tenant,
        "KeywardenService.CreateKeyring",
        &json!({"Name": "orders-db", "KeyId": cmk}).to_string(),
    )
    .await;
    assert_eq!(created.status, 200, "{:?}", created.body);
    let id = created.body["KeyringId"].as_str().unwrap().to_owned();
    let token = created.body["Token"].as_str().unwrap().to_owned();
    let vault_url = format!("{}/v1/{id}", server.url.trim_end_matches('/'));

    let tmp = tempfile::tempdir().unwrap();
    let mut db = MariaDb::create(tmp.path(), &vault_url, &token);
    db.start().unwrap();
    assert_eq!(
        db.sql("SELECT PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'hashicorp_key_management'"),
        "ACTIVE"
    );

    // Tables, rows with the marker, a sort and a temporary table.
    db.sql(&format!(
        "CREATE DATABASE shop; \
         CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(200)) ENGINE=InnoDB; \
         USE shop; \
         INSERT INTO orders(note) SELECT CONCAT('{MARKER}-', seq) FROM seq_1_to_{ROWS}; \
         CREATE TABLE shop.audit (id INT PRIMARY KEY, note VARCHAR(200)) ENGINE=Aria; \
         INSERT INTO shop.audit SELECT id, note FROM shop.orders WHERE id <= 100;"
    ));
    assert_eq!(
        db.sql(
            "SET SESSION sort_buffer_size = 32768; \
             CREATE TEMPORARY TABLE shop.t ENGINE=InnoDB AS SELECT * FROM shop.orders; \
             SELECT COUNT(*) FROM (SELECT note FROM shop.t ORDER BY note DESC) s"
        ),
        ROWS.to_string()
    );
    // FORCE: a table cannot opt out of encryption.
    let refused = db
        .try_sql("CREATE TABLE shop.plain (x INT) ENGINE=InnoDB ENCRYPTED=NO")
        .expect_err("an unencrypted table is refused");
    assert!(
        refused.contains("Wrong create options") || refused.contains("ENCRYPTED"),
        "{refused}"
    );
    assert_eq!(key_versions(&db, "shop/orders"), (1, 1));
    assert_eq!(key_versions(&db, "innodb_system"), (1, 1));

    // Restart: the data reads back; no file holds the marker.
    db.stop();
    let files = db.files();
    assert!(files.iter().any(|p| p.ends_with("shop/orders.ibd")));
    assert!(files.iter().any(|p| p.ends_with("ib_logfile0")));
    let leaked = files_holding(&db, MARKER.as_bytes());
    assert!(leaked.is_empty(), "plaintext marker found in {leaked:?}");
    db.start().unwrap();
    let count = db.sql("SELECT COUNT(*) FROM shop.orders");
    assert_eq!(count, ROWS.to_string());
    assert_eq!(
        db.sql("SELECT note FROM shop.orders WHERE id = 777"),
        format!("{MARKER}-777")
    );
    assert_eq!(db.sql("SELECT COUNT(*) FROM shop.audit"), "100");
    // Positive control: the scan finds the marker where MariaDB writes it in
    // plaintext on purpose.
    let control = db.run.join("control.txt");
    db.sql(&format!(
        "SELECT note FROM shop.orders WHERE id = 5 INTO OUTFILE '{}'",
        control.display()
    ));
    assert!(holds(&control, MARKER.as_bytes()));
    std::fs::remove_file(&control).unwrap();

    // Rotate key 1: after a restart MariaDB writes with version 2, and
    // pages written with version 1 still read (through ?version=1).
    let rotated = raw_post(
        &server.url,
        &tenant,
        "KeywardenService.RotateKeyringKey",
        &json!({"KeyringId": id, "KeyNumber": 1}).to_string(),
    )
    .await;
    assert_eq!(rotated.body["Version"], 2, "{:?}", rotated.body);
    db.stop();
    db.start().unwrap();
    let (min, current) = key_versions(&db, "shop/orders");
    assert_eq!(current, 2, "MariaDB picked up the new key version");
    assert_eq!(min, 1, "pages written with version 1 remain");
    assert_eq!(db.sql("SELECT COUNT(*) FROM shop.orders"), ROWS.to_string());
    assert_eq!(
        db.sql("SELECT note FROM shop.orders WHERE id = 19999"),
        format!("{MARKER}-19999")
    );
    db.sql(&format!(
        "INSERT INTO shop.orders(note) SELECT CONCAT('{MARKER}-new-', seq) FROM shop.seq_1_to_1000"
    ));
    db.stop();
    let leaked = files_holding(&db, MARKER.as_bytes());
    assert!(
        leaked.is_empty(),
        "plaintext marker found in {leaked:?} after rotation"
    );

    // Disable the KMS key: MariaDB cannot obtain its keys and refuses to
    // start; the error log names the refusal.
    client.disable_key().key_id(&cmk).send().await.unwrap();
    wait_keyring_status(&server.url, &format!("/v1/{id}/data/1"), &token, 403).await;
    let failure = db
        .start()
        .expect_err("MariaDB must not start without its keys");
    assert!(failure.contains("DisabledException"), "{failure}");
    assert!(db.try_sql("SELECT COUNT(*) FROM shop.orders").is_err());

    // Enable it again: the data is back.
    client.enable_key().key_id(&cmk).send().await.unwrap();
    wait_keyring_status(&server.url, &format!("/v1/{id}/data/1"), &token, 200).await;
    db.start().unwrap();
    assert_eq!(
        db.sql("SELECT COUNT(*) FROM shop.orders"),
        (ROWS + 1000).to_string()
    );
    assert_eq!(
        db.sql("SELECT note FROM shop.orders WHERE id = 1"),
        format!("{MARKER}-1")
    );
    db.stop();

    // A revoked keyring token also keeps it from starting.
    let r = raw_post(
        &server.url,
        &tenant,
        "KeywardenService.RevokeKeyringToken",
        &json!({"KeyringId": id}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200);
    let failure = db
        .start()
        .expect_err("MariaDB must not start with a revoked token");
    assert!(failure.contains("permission denied"), "{failure}");
}
