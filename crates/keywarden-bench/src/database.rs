//! The shared PostgreSQL database of `--database-url` / `--spawn-postgres`
//! runs: where it is, how it is shown, and whose CPU time it is.

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
}
