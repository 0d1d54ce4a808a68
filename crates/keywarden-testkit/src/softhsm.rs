//! A private SoftHSM2 token for HSM tests. SoftHSM2 finds its tokens
//! through the configuration file named in `SOFTHSM2_CONF`, and reads that
//! variable once per process (at `C_Initialize`): a test that loads the
//! module in its own process sets it before anything else does, alone in
//! its test binary; a test that only starts the server hands it to the
//! child process (`server::Options::env`) and can share a binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The module of the Debian package `softhsm2` (scripts/test.sh installs it).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The security officer PIN of every test token.
pub const SO_PIN: &str = "5678";

/// Fails with what to install when SoftHSM2 is missing.
pub fn require() {
    assert!(
        Path::new(MODULE).exists(),
        "SoftHSM2 is missing ({MODULE}): install the softhsm2 package (apt-get install -y softhsm2; scripts/test.sh does)"
    );
}

/// Creates `dir/tokens` and `dir/softhsm2.conf`, which points SoftHSM2 at
/// it, and returns the configuration file (for `SOFTHSM2_CONF`). No token
/// is initialised: see [`init_token`].
pub fn config(dir: &Path) -> PathBuf {
    require();
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    conf
}

/// Initialises a token `label` with user PIN `pin` (and [`SO_PIN`]) in the
/// token directory of the configuration `conf`, with `softhsm2-util`.
pub fn init_token(conf: &Path, label: &str, pin: &str) {
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", pin, "--so-pin", SO_PIN])
        .env("SOFTHSM2_CONF", conf)
        .output()
        .expect("softhsm2-util (package softhsm2) runs");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// [`config`] and [`init_token`]: a token `label` with user PIN `pin` in
/// `dir/tokens`; returns the configuration file to put in `SOFTHSM2_CONF`.
pub fn token(dir: &Path, label: &str, pin: &str) -> PathBuf {
    let conf = config(dir);
    init_token(&conf, label, pin);
    conf
}
