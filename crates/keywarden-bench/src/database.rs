//! The shared PostgreSQL database of `--database-url` / `--spawn-postgres`
//! runs: where it is, how it is shown, and whose CPU time it is.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use keywarden_testpg::TestCluster;
use zeroize::Zeroizing;

/// The environment variable keywarden (`serve` and `admin`) reads the
/// database URL from. The bench hands the URL over in the environment, never
/// on a command line, so it stays out of `ps` and out of the report.
pub const URL_ENV: &str = "KEYWARDEN_DATABASE_URL";

/// A `postgres://` URL without its password and query: `user@host:port/db`
/// stays, `:password` becomes `:***`, a `?query` (which may carry
/// `password=`) becomes `?***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (rest, query) = match rest.split_once(['?', '#']) {
        Some((before, _)) => (before, true),
        None => (rest, false),
    };
    // Userinfo ends at the last '@' (so an unencoded '@' or '/' in a
    // password is hidden too; a database name with '@' is masked, the safe
    // side).
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host_and_path}"),
            None => format!("{userinfo}@{host_and_path}"),
        },
        None => rest.to_owned(),
    };
    let mut out = String::new();
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(&rest);
    if query {
        out.push_str("?***");
    }
    out
}

/// Redacts the value of `--database-url` (either form) in a command line.
pub fn redact_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut next_is_url = false;
    for arg in args {
        if next_is_url {
            out.push(redact_url(&arg));
            next_is_url = false;
        } else if arg == "--database-url" {
            out.push(arg);
            next_is_url = true;
        } else if let Some(url) = arg.strip_prefix("--database-url=") {
            out.push(format!("--database-url={}", redact_url(url)));
        } else {
            out.push(arg);
        }
    }
    out
}

/// The postmaster's pid: the first line of `postmaster.pid` in a cluster's
/// data directory.
pub fn parse_postmaster_pid(contents: &str) -> Option<u32> {
    contents.lines().next()?.trim().parse().ok()
}

/// The data directory (`-D DIR`) of a postmaster command line that listens
/// on `port` (`-p PORT`). Backends rewrite their command line
/// (`postgres: user db host(port) idle`), so only the postmaster matches.
pub fn postmaster_data_dir(argv: &[String], port: u16) -> Option<PathBuf> {
    let program = argv.first()?;
    if !(program == "postgres" || program.ends_with("/postgres")) {
        return None;
    }
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
    };
    if value("-p")? != &port.to_string() {
        return None;
    }
    value("-D").map(PathBuf::from)
}

/// Finds the postmaster of the cluster listening on 127.0.0.1:`port` (a
/// [`TestCluster`] does not say its pid): the process whose command line
/// says `-p PORT`, confirmed by its data directory's `postmaster.pid`.
pub fn find_postmaster(port: u16) -> Result<u32> {
    for entry in std::fs::read_dir("/proc").context("listing /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(data_dir) = postmaster_data_dir(&argv, port) else {
            continue;
        };
        let pid_file = data_dir.join("postmaster.pid");
        let contents = std::fs::read_to_string(&pid_file)
            .with_context(|| format!("reading {}", pid_file.display()))?;
        if parse_postmaster_pid(&contents) == Some(pid) {
            return Ok(pid);
        }
    }
    bail!("found no postmaster listening on port {port} in /proc")
}

/// A throwaway cluster with one fresh database, its URL and its
/// postmaster. Dropping it stops the cluster and removes its files.
pub struct SpawnedPostgres {
    pub url: Zeroizing<String>,
    pub postmaster_pid: u32,
    /// Held for its `Drop`.
    _cluster: TestCluster,
}

/// Starts a [`TestCluster`] (initdb + pg_ctl; as the `postgres` user when
/// root) and creates database `name` in it.
pub fn spawn_postgres(name: &str) -> Result<SpawnedPostgres> {
    // keywarden-testpg is test support and panics, saying why, where a
    // tool fails; here that is an error of the run.
    let cluster = std::panic::catch_unwind(TestCluster::start)
        .map_err(|_| anyhow!("starting a PostgreSQL cluster failed (see the message above)"))?;
    let url = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cluster.create_database(name)
    }))
    .map_err(|_| anyhow!("creating database {name} failed (see the message above)"))?;
    let postmaster_pid = find_postmaster(cluster.port())?;
    Ok(SpawnedPostgres {
        url: Zeroizing::new(url),
        postmaster_pid,
        _cluster: cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_and_queries() {
        assert_eq!(
            redact_url("postgres://kw:s3cr%40t@127.0.0.1:5432/bench"),
            "postgres://kw:***@127.0.0.1:5432/bench"
        );
        assert_eq!(
            redact_url("postgres://kw@127.0.0.1:5432/bench"),
            "postgres://kw@127.0.0.1:5432/bench"
        );
        assert_eq!(
            redact_url("postgresql://127.0.0.1/bench?user=kw&password=hunter2"),
            "postgresql://127.0.0.1/bench?***"
        );
        // A password with '@' in it (not percent-encoded): the host is after
        // the last '@'.
        let r = redact_url("postgres://kw:a@b@h:1/d");
        assert_eq!(r, "postgres://kw:***@h:1/d");
        assert!(!redact_url("postgres://u:pw/with/slash@h/d").contains("with"));
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn redacts_the_bench_command_line() {
        let args = [
            "kb",
            "--spawn",
            "--database-url",
            "postgres://u:pw@h:1/d",
            "--database-url=postgres://u:pw2@h:1/d",
            "-c",
            "4",
        ]
        .map(str::to_owned);
        let out = redact_args(args).join(" ");
        assert!(!out.contains("pw"), "{out}");
        assert_eq!(
            out,
            "kb --spawn --database-url postgres://u:***@h:1/d --database-url=postgres://u:***@h:1/d -c 4"
        );
    }

    #[test]
    fn postmaster_pid_file() {
        assert_eq!(
            parse_postmaster_pid("4242\n/var/lib/pg\n1700000000\n5432\n"),
            Some(4242)
        );
        assert_eq!(parse_postmaster_pid(""), None);
        assert_eq!(parse_postmaster_pid("x\n"), None);
    }

    #[test]
    fn recognizes_a_postmaster_command_line() {
        let argv = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let pm = argv("/usr/lib/postgresql/15/bin/postgres -D /tmp/c/data -p 5433 -k /tmp/c/sock");
        assert_eq!(
            postmaster_data_dir(&pm, 5433),
            Some(PathBuf::from("/tmp/c/data"))
        );
        assert_eq!(postmaster_data_dir(&pm, 5432), None);
        let backend = argv("postgres: postgres kwb 127.0.0.1(5433) idle");
        assert_eq!(postmaster_data_dir(&backend, 5433), None);
        assert_eq!(
            postmaster_data_dir(&argv("/bin/sleep -p 5433 -D /x"), 5433),
            None
        );
        assert_eq!(postmaster_data_dir(&[], 5433), None);
    }

    #[test]
    fn finds_a_spawned_postmaster_and_its_backends() {
        let pg = spawn_postgres("bench_test").unwrap();
        assert!(pg.url.contains("/bench_test"));
        let tree = crate::procfs::tree_cpu(pg.postmaster_pid).unwrap();
        // The postmaster and at least its checkpointer, writer, WAL writer...
        assert!(tree.processes >= 4, "{tree:?}");
        let stat = std::fs::read_to_string(format!("/proc/{}/cmdline", pg.postmaster_pid)).unwrap();
        assert!(stat.contains("postgres"), "{stat:?}");
    }
}
