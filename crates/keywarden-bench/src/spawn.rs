//! Starting and stopping the server under test.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The URL in a `listening on http://...` line.
pub fn listening_url(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on ")?;
    let url: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    (url.starts_with("http://") || url.starts_with("https://")).then_some(url)
}

/// Fails unless `taskset` can be run.
pub fn check_taskset() -> Result<()> {
    match Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!("--server-cpus needs the taskset command (util-linux), which was not found"),
    }
}

/// A server child process; stopped with SIGTERM when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    pub pid: u32,
    pub url: String,
    pub description: String,
}

impl ServerProcess {
    /// Starts `program args...` (under `taskset -c cpus` if given) and waits
    /// for its `listening on URL` line on stdout. `envs` sets (`Some`) or
    /// removes (`None`) environment variables; their values are not part of
    /// the description.
    pub fn start(
        program: &Path,
        args: &[OsString],
        cpus: Option<&str>,
        envs: &[(&str, Option<&str>)],
    ) -> Result<ServerProcess> {
        let mut command = match cpus {
            Some(cpus) => {
                check_taskset()?;
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(program);
                c
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            match v {
                Some(v) => command.env(k, v),
                None => command.env_remove(k),
            };
        }
        let description = format!(
            "{}{} {}",
            cpus.map(|c| format!("taskset -c {c} ")).unwrap_or_default(),
            program.display(),
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id();
        let stdout = child.stdout.take().context("server stdout is not piped")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            // Keep reading to the end so the server never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(url) = listening_url(&line) {
                        let _ = tx.send(url);
                        sent = true;
                    }
                }
            }
        });
        let mut server = ServerProcess {
            child: Some(child),
            pid,
            url: String::new(),
            description,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => server.url = url,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                bail!(
                    "{} printed no 'listening on' line within 60 s",
                    server.description
                )
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = server.stop();
                bail!(
                    "{} closed stdout without a 'listening on' line ({status})",
                    server.description
                )
            }
        }
        Ok(server)
    }

    /// Sends SIGTERM, waits up to 10 s, then kills; describes how it ended.
    pub fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".to_owned();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return format!("had already exited: {status}");
        }
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let started = Instant::now();
        if sent {
            while started.elapsed() < Duration::from_secs(10) {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        return format!(
                            "stopped by SIGTERM in {} ms: {status}",
                            started.elapsed().as_millis()
                        )
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break,
                }
            }
        }
        let _ = child.kill();
        let status = child
            .wait()
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        if sent {
            format!("did NOT stop within 10 s of SIGTERM; killed: {status}")
        } else {
            format!("could not send SIGTERM; killed: {status}")
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// The access key an admin command issued.
#[derive(Debug, serde::Deserialize)]
pub struct Issued {
    #[serde(rename = "AccountId")]
    pub account_id: String,
    #[serde(rename = "AccessKeyId")]
    pub access_key_id: String,
    #[serde(rename = "SecretAccessKey")]
    pub secret_access_key: String,
}

/// `keywarden admin account create --data-dir DIR --name NAME`, on the
/// PostgreSQL database `database_url` (handed over in the environment) or,
/// without one, on the embedded database in DIR.
pub fn create_account(
    keywarden: &Path,
    data_dir: &Path,
    region: &str,
    database_url: Option<&str>,
) -> Result<Issued> {
    let mut command = Command::new(keywarden);
    match database_url {
        Some(url) => command.env(crate::database::URL_ENV, url),
        None => command.env_remove(crate::database::URL_ENV),
    };
    let output = command
        .args(["admin", "account", "create", "--data-dir"])
        .arg(data_dir)
        .args(["--name", "keywarden-bench", "--region", region])
        .env("KEYWARDEN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} admin account create", keywarden.display()))?;
    if !output.status.success() {
        bail!(
            "keywarden admin account create failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("keywarden admin account create printed no JSON")?;
    serde_json::from_str(json).with_context(|| format!("parsing account JSON {json:?}"))
}

/// `keywarden` next to this executable.
pub fn default_keywarden_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the keywarden-bench executable")?;
    let dir = exe
        .parent()
        .context("the keywarden-bench executable has no parent directory")?;
    Ok(dir.join("keywarden"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_listening_url() {
        assert_eq!(
            listening_url(
                "Keywarden 0.1.0 listening on http://127.0.0.1:41234 (region us-east-1, data dir /tmp/x)"
            )
            .as_deref(),
            Some("http://127.0.0.1:41234")
        );
        assert_eq!(
            listening_url("listening on https://[::1]:8443").as_deref(),
            Some("https://[::1]:8443")
        );
        assert_eq!(listening_url("listening on 127.0.0.1:1"), None);
        assert_eq!(listening_url("Next steps:"), None);
    }
}
