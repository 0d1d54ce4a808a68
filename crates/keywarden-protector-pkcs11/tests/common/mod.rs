//! A private SoftHSM2 token per test binary.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and a process
//! initializes a module once: so each test binary makes one token directory
//! and runs its scenarios in sequence inside one `#[test]`.

#![allow(dead_code)]

use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use keywarden_protector_pkcs11::Pkcs11Config;
use keywarden_testkit::softhsm;
use zeroize::Zeroizing;

pub const MODULE: &str = softhsm::MODULE;
pub const LABEL: &str = "kw-test";
pub const PIN: &str = "1234";

/// A token directory, kept as long as the value lives.
pub struct Token {
    _dir: tempfile::TempDir,
    pub tokens: PathBuf,
}

/// Points SoftHSM2 at a fresh directory; with `init`, creates the token
/// `kw-test` there. Call before anything loads the module.
pub fn token(init: bool) -> Token {
    let dir = tempfile::tempdir().unwrap();
    let conf = softhsm::config(dir.path());
    // Set before the first C_Initialize in this process, which is when
    // SoftHSM2 reads it; the test is still single-threaded here.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    if init {
        softhsm::init_token(&conf, LABEL, PIN);
    }
    let tokens = dir.path().join("tokens");
    Token { _dir: dir, tokens }
}

pub fn config(label: &str, pin: &str, sessions: usize) -> Pkcs11Config {
    Pkcs11Config {
        module: MODULE.into(),
        token_label: label.into(),
        pin: Zeroizing::new(pin.into()),
        sessions,
        protector_id: "hsm-test".into(),
    }
}

/// The test's own view of the token, beside the protector's (same module
/// state: the process initializes it once).
pub fn raw_context() -> Pkcs11 {
    let ctx = Pkcs11::new(MODULE).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => panic!("C_Initialize: {e}"),
    }
    ctx
}

/// A logged-in session on the token labelled `label`.
pub fn raw_session(ctx: &Pkcs11, label: &str) -> Session {
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == label)
        .expect("token");
    let session = ctx.open_rw_session(slot).unwrap();
    match session.login(UserType::User, Some(&AuthPin::new(PIN.into()))) {
        Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) => panic!("C_Login: {e}"),
    }
    session
}
