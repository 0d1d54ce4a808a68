//! A fresh SoftHSM2 token for the HSM tests (`mod softhsm;`). SoftHSM2
//! reads `SOFTHSM2_CONF` once per process, so each test binary using it
//! holds one test and sets the variable before the module is loaded.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The module of the Debian package `softhsm2` (scripts/test.sh installs it).
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Initialises a token `label` with user PIN `pin` in `dir/tokens` and
/// returns the SoftHSM2 configuration file (`dir/softhsm2.conf`) to put in
/// `SOFTHSM2_CONF`.
pub fn token(dir: &Path, label: &str, pin: &str) -> PathBuf {
    assert!(
        Path::new(MODULE).exists(),
        "{MODULE} is missing: install the softhsm2 package (scripts/test.sh does)"
    );
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
    let out = Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", pin, "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (package softhsm2) runs");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    conf
}
