//! A throwaway SoftHSM2 token for HSM benchmarks: its own token directory
//! and `softhsm2.conf` (SoftHSM2 finds them through `SOFTHSM2_CONF`), a
//! token made with `softhsm2-util --init-token`, and a PIN file (mode 0600).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The SoftHSM2 PKCS#11 module as Debian and Ubuntu install it.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The label of the benchmark token.
pub const LABEL: &str = "keywarden-bench";
/// The user PIN of the benchmark token. The token lives in a temporary
/// directory for one run and holds nothing but benchmark keys.
const PIN: &str = "1234";
const SO_PIN: &str = "5678";

/// A fresh token under a directory the caller owns.
pub struct Token {
    /// The `softhsm2.conf` to put in `SOFTHSM2_CONF`.
    pub conf: PathBuf,
    /// A file holding the user PIN (first line).
    pub pin_file: PathBuf,
}

impl Token {
    /// Creates `dir` (which must not exist) with a token directory, a
    /// configuration and a PIN file, and initializes the token `LABEL`.
    pub fn create(dir: &Path) -> Result<Token> {
        if !Path::new(MODULE).exists() {
            bail!("SoftHSM2 is missing ({MODULE}): apt-get install softhsm2");
        }
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens)
            .with_context(|| format!("creating {}", tokens.display()))?;
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let pin_file = dir.join("pin");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pin_file)
                .with_context(|| format!("creating {}", pin_file.display()))?;
            writeln!(f, "{PIN}").with_context(|| format!("writing {}", pin_file.display()))?;
        }
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", LABEL])
            .args(["--pin", PIN, "--so-pin", SO_PIN])
            .output()
            .context("running softhsm2-util (apt-get install softhsm2)")?;
        if !out.status.success() {
            bail!(
                "softhsm2-util --init-token failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Token { conf, pin_file })
    }

    /// The user PIN, read back from the PIN file.
    pub fn pin(&self) -> Result<zeroize::Zeroizing<String>> {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(&self.pin_file)
                .with_context(|| format!("reading {}", self.pin_file.display()))?,
        );
        Ok(zeroize::Zeroizing::new(
            text.lines().next().unwrap_or("").to_owned(),
        ))
    }

    /// A keywarden configuration file offering this token as the custom
    /// key store `store_id` with `sessions` sessions.
    pub fn keywarden_config(&self, store_id: &str, sessions: usize) -> String {
        format!(
            "[[custom_key_stores]]\n\
             id = {id}\n\
             name = \"keywarden-bench SoftHSM2\"\n\
             module = {module}\n\
             token_label = {label}\n\
             pin_file = {pin}\n\
             sessions = {sessions}\n",
            id = toml_string(store_id),
            module = toml_string(MODULE),
            label = toml_string(LABEL),
            pin = toml_string(&self.pin_file.to_string_lossy()),
        )
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_toml_strings() {
        assert_eq!(toml_string("cks-bench"), "\"cks-bench\"");
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn config_names_the_store_and_the_pin_file() {
        let token = Token {
            conf: PathBuf::from("/t/softhsm2.conf"),
            pin_file: PathBuf::from("/t/pin"),
        };
        let toml = token.keywarden_config("cks-bench", 16);
        assert!(toml.contains("id = \"cks-bench\""), "{toml}");
        assert!(toml.contains("pin_file = \"/t/pin\""), "{toml}");
        assert!(toml.contains("sessions = 16"), "{toml}");
        assert!(!toml.contains(PIN), "{toml}");
    }
}
