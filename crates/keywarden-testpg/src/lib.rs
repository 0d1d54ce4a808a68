//! Throwaway PostgreSQL clusters for tests: `initdb` into a fresh temporary
//! directory, `pg_ctl start` on a free TCP port of 127.0.0.1, one database
//! per test.
//!
//! ```ignore
//! let cluster = keywarden_testpg::TestCluster::start();
//! let url = cluster.create_database("conformance");
//! // postgres://postgres@127.0.0.1:<port>/conformance, trust authentication
//! ```
//!
//! The server binaries are found through `pg_config --bindir`, then the
//! newest `/usr/lib/postgresql/*/bin`, then `PATH`; without them
//! [`TestCluster::start`] panics saying what to install
//! (`apt-get install postgresql`). `initdb` and `postgres` refuse to run as
//! root, so under root they run as the `postgres` system user, which then
//! owns the cluster's directory.
//!
//! [`TestCluster::start_tls`] starts a cluster that accepts TCP clients
//! only over TLS (`hostssl` in `pg_hba.conf`), with a server certificate for
//! `localhost` (DNS name only, not the IP address) issued by a throwaway CA
//! ([`TestCluster::ca_cert`]); [`throwaway_ca`] makes another, unrelated CA.
//! The certificates are made with the `openssl` command-line tool.
//!
//! The cluster is tuned for speed, not durability (`fsync=off`, small
//! buffers). Dropping a [`TestCluster`] stops it (`-m immediate`) and removes
//! its directory. A cluster kept in a `static` is never dropped: a small
//! guardian shell process, started with the cluster, waits for this
//! process's end (its standard input closes) and then stops the cluster and
//! removes the directory, so nothing outlives the test binary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// What to tell someone without PostgreSQL.
const INSTALL_HINT: &str =
    "PostgreSQL's server binaries (initdb, pg_ctl, postgres) were not found \
     (looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin and PATH); install them with \
     `apt-get install postgresql`";

/// A running throwaway cluster. See the crate docs.
pub struct TestCluster {
    /// Everything: `data/` (the cluster), `sock/` (its Unix socket), `log`.
    dir: PathBuf,
    bindir: PathBuf,
    port: u16,
    /// Run the server binaries as the `postgres` user (we are root).
    as_postgres: bool,
    /// Holding it open keeps the guardian waiting; see the crate docs.
    guardian: Mutex<Option<(Child, ChildStdin)>>,
    /// The CA that issued the server's certificate (TLS clusters only).
    ca_cert: Option<PathBuf>,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("dir", &self.dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl TestCluster {
    /// Creates and starts a cluster (superuser `postgres`, trust
    /// authentication, UTF8) on a free port. Panics, saying why, if that
    /// fails or PostgreSQL is not installed.
    pub fn start() -> TestCluster {
        Self::start_with(false)
    }

    /// Like [`TestCluster::start`], but TLS only: `ssl=on` with a server
    /// certificate for `localhost` (subject alternative name `DNS:localhost`,
    /// not `127.0.0.1`) issued by a throwaway CA ([`TestCluster::ca_cert`]),
    /// and `pg_hba.conf` accepting TCP clients only over TLS (`hostssl`), so
    /// a client without TLS is refused. Panics if `openssl` is missing.
    pub fn start_tls() -> TestCluster {
        Self::start_with(true)
    }

    /// The PEM file of the CA that issued the server's certificate
    /// ([`TestCluster::start_tls`] clusters; `None` otherwise).
    pub fn ca_cert(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    fn start_with(tls: bool) -> TestCluster {
        let bindir = find_bindir().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let as_postgres = running_as_root();
        let dir = fresh_dir();
        std::fs::create_dir_all(dir.join("sock")).expect("create the cluster's socket directory");
        if as_postgres {
            let (uid, gid) = postgres_ids();
            for path in [dir.clone(), dir.join("sock")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                    .expect("hand the cluster's directory to the postgres user");
            }
        }
        let mut cluster = TestCluster {
            port: free_port(),
            dir,
            bindir,
            as_postgres,
            guardian: Mutex::new(None),
            ca_cert: None,
        };
        cluster.spawn_guardian();
        let data = cluster.data_dir();
        let out = cluster.run_server_tool(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        if !out.status.success() {
            panic!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if tls {
            cluster.ca_cert = Some(cluster.configure_tls());
        }
        cluster.start_again();
        cluster
    }

    /// Makes the CA and the server's certificate under `tls/`, turns TLS
    /// on in `postgresql.conf` and lets TCP clients in only over TLS.
    /// Answers the CA certificate's path.
    fn configure_tls(&self) -> PathBuf {
        let tls = self.dir.join("tls");
        std::fs::create_dir_all(&tls).expect("create the cluster's tls directory");
        let ca = throwaway_ca(&tls);
        let key = tls.join("server.key");
        let csr = tls.join("server.csr");
        let cert = tls.join("server.pem");
        let ext = tls.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the server certificate's extensions");
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&csr),
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&ca),
            "-CAkey",
            path_str(&tls.join("ca.key")),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            path_str(&ext),
            "-out",
            path_str(&cert),
        ]);
        // The server refuses a key others may read; under root it must
        // also be the postgres user's.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("restrict the server key");
        if self.as_postgres {
            let (uid, gid) = postgres_ids();
            std::os::unix::fs::chown(&key, Some(uid), Some(gid))
                .expect("hand the server key to the postgres user");
        }
        let data = self.data_dir();
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(
            conf,
            "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'",
            path_str(&cert),
            path_str(&key)
        )
        .expect("turn TLS on in postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("write pg_hba.conf");
        ca
    }

    /// Creates database `name` and answers its URL ([`TestCluster::url`]).
    /// Panics if it exists or the server refuses.
    pub fn create_database(&self, name: &str) -> String {
        let port = self.port.to_string();
        let out = Command::new(self.bindir.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name])
            .output()
            .expect("run createdb");
        if !out.status.success() {
            panic!(
                "createdb {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        self.url(name)
    }

    /// The URL of database `db` on this cluster:
    /// `postgres://postgres@127.0.0.1:<port>/<db>` (no password: trust).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The TCP port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected),
    /// keeping its data; [`TestCluster::start_again`] brings it back.
    pub fn stop(&self) {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w"]);
        if !out.status.success() {
            panic!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts the server on the same port and data (after
    /// [`TestCluster::stop`]; also how [`TestCluster::start`] starts it),
    /// waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c shared_buffers=16MB -c max_connections=300",
            self.port,
            path_str(&self.dir.join("sock")),
        );
        let log = self.dir.join("log");
        let out = self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            path_str(&log),
            "-o",
            &options,
        ]);
        if !out.status.success() {
            panic!(
                "pg_ctl start failed: {}{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.data_dir();
        let mut all = vec!["-D", path_str(&data)];
        all.extend_from_slice(args);
        self.run_server_tool("pg_ctl", &all)
    }

    /// Runs one of the server binaries, as the `postgres` user under root.
    fn run_server_tool(&self, tool: &str, args: &[&str]) -> Output {
        self.server_command(tool, args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("could not run {tool}: {e}"))
    }

    fn server_command(&self, tool: &str, args: &[&str]) -> Command {
        let program = self.bindir.join(tool);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        // The tools write into the cluster's directory only; a working
        // directory root's home would be unreadable for `postgres`.
        command.args(args).current_dir(&self.dir);
        command
    }

    /// Starts the guardian: `sh` waiting for end of input, then stopping
    /// the cluster and removing its directory.
    fn spawn_guardian(&self) {
        let data = self.data_dir();
        let stop = self.server_command(
            "pg_ctl",
            &["-D", path_str(&data), "stop", "-m", "immediate"],
        );
        let mut argv: Vec<String> = vec![stop.get_program().to_string_lossy().into_owned()];
        argv.extend(stop.get_args().map(|a| a.to_string_lossy().into_owned()));
        let spawned = Command::new("sh")
            .arg("-c")
            .arg(
                "trap '' INT TERM HUP; read _ignored; \
                 \"$@\" >/dev/null 2>&1; rm -rf \"$KEYWARDEN_TESTPG_DIR\"",
            )
            .arg("keywarden-testpg-guardian")
            .args(argv)
            .env("KEYWARDEN_TESTPG_DIR", &self.dir)
            .current_dir(&self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(mut child) => {
                if let Some(stdin) = child.stdin.take() {
                    *self.guardian.lock().unwrap_or_else(|p| p.into_inner()) = Some((child, stdin));
                }
            }
            // Without a guardian a leaked cluster outlives the tests; a
            // dropped one is still cleaned up.
            Err(e) => eprintln!("keywarden-testpg: no guardian process: {e}"),
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
        let _ = std::fs::remove_dir_all(&self.dir);
        let guardian = self
            .guardian
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((mut child, mut stdin)) = guardian {
            // Wake it: it finds the cluster stopped and the directory gone.
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Makes a throwaway CA in `dir` (`ca.key`, `ca.pem`, valid for two days)
/// with the `openssl` tool and answers the certificate's path. Panics if
/// that fails.
pub fn throwaway_ca(dir: &Path) -> PathBuf {
    let cert = dir.join("ca.pem");
    // A name of its own: two throwaway CAs must not look like one another.
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let subject = format!(
        "/CN=keywarden throwaway test CA {}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        path_str(&dir.join("ca.key")),
        "-out",
        path_str(&cert),
        "-days",
        "2",
        "-subj",
        &subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    cert
}

/// Runs `openssl` with `args`, panicking with its output if it fails.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run openssl (apt-get install openssl): {e}"));
    if !out.status.success() {
        panic!(
            "openssl {} failed: {}{}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .expect("the temporary directory's path is not UTF-8")
}

/// Whether this process's effective user is root (`/proc/self` is owned by
/// the effective uid).
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The `postgres` system user's uid and gid.
fn postgres_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| {
                panic!(
                    "running as root, and there is no `postgres` system user to run the \
                     server as; {INSTALL_HINT}"
                )
            })
    };
    (id("-u"), id("-g"))
}

/// A new directory under the system's temporary directory.
fn fresh_dir() -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "keywarden-testpg-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).expect("create the cluster's temporary directory");
    dir
}

/// A port nothing listens on right now (the kernel's choice for port 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free TCP port")
}

/// Where `initdb`, `pg_ctl` and `postgres` are.
fn find_bindir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|t| dir.join(t).is_file())
    };
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_tools(&dir) {
            return Some(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, dir)| has_tools(dir))
            .collect();
        versions.sort();
        if let Some((_, dir)) = versions.pop() {
            return Some(dir);
        }
    }
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).find(|dir| has_tools(dir)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_serves_stops_and_cleans_up() {
        let cluster = TestCluster::start();
        let url = cluster.create_database("smoke");
        assert_eq!(
            url,
            format!("postgres://postgres@127.0.0.1:{}/smoke", cluster.port())
        );
        let psql = |db: &str| {
            Command::new(cluster.bindir.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &cluster.port().to_string()])
                .args(["-U", "postgres", "-d", db, "-tAc", "SELECT 40 + 2"])
                .output()
                .unwrap()
        };
        assert_eq!(String::from_utf8_lossy(&psql("smoke").stdout).trim(), "42");
        cluster.stop();
        assert!(!psql("smoke").status.success());
        cluster.start_again();
        assert_eq!(String::from_utf8_lossy(&psql("smoke").stdout).trim(), "42");
        let dir = cluster.dir.clone();
        drop(cluster);
        assert!(!dir.exists());
    }

    #[test]
    fn a_tls_cluster_serves_tls_only_with_a_certificate_for_localhost() {
        let cluster = TestCluster::start_tls();
        cluster.create_database("tls");
        let ca = cluster
            .ca_cert()
            .expect("a TLS cluster has a CA")
            .to_owned();
        let psql = |conninfo: String| {
            Command::new(cluster.bindir.join("psql"))
                .args([
                    conninfo.as_str(),
                    "-tAc",
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                ])
                .output()
                .unwrap()
        };
        let port = cluster.port();
        let verified = psql(format!(
            "host=localhost port={port} user=postgres dbname=tls sslmode=verify-full sslrootcert={}",
            ca.display()
        ));
        assert_eq!(
            String::from_utf8_lossy(&verified.stdout).trim(),
            "t",
            "{}",
            String::from_utf8_lossy(&verified.stderr)
        );
        // The certificate names localhost, not the address.
        let by_ip = psql(format!(
            "host=127.0.0.1 port={port} user=postgres dbname=tls sslmode=verify-full sslrootcert={}",
            ca.display()
        ));
        assert!(!by_ip.status.success());
        let plain = psql(format!(
            "host=127.0.0.1 port={port} user=postgres dbname=tls sslmode=disable"
        ));
        assert!(!plain.status.success());
        assert!(
            String::from_utf8_lossy(&plain.stderr).contains("no encryption"),
            "{}",
            String::from_utf8_lossy(&plain.stderr)
        );
    }
}
