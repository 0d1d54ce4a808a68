//! An unreachable token is an `Unavailable` error, never a panic, and the
//! protector connects once the token appears (its own binary: see `common`).

mod common;

use std::time::Duration;

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use keywarden_core::ids::KeyId;
use keywarden_core::protector::{KeyBinding, KeyProtector, ProtectorError};
use keywarden_protector_pkcs11::Pkcs11Protector;

const LATE: &str = "kw-late";

#[test]
fn unreachable_token_then_lazy_connection() {
    let _token = common::token(true);
    let k = KeyId::from_bytes([1; 16]);
    let b = KeyBinding {
        key_id: &k,
        version: 1,
    };

    // A module that does not exist.
    let mut missing = common::config(common::LABEL, common::PIN, 2);
    missing.module = "/nonexistent/libpkcs11.so".into();
    let p = Pkcs11Protector::new(missing).unwrap();
    assert!(!p.available());
    assert!(matches!(p.generate(b), Err(ProtectorError::Unavailable(_))));

    // A wrong PIN: refused, reported without the PIN, not retried.
    let p = Pkcs11Protector::with_reconnect_interval(
        common::config(common::LABEL, "9999", 2),
        Duration::ZERO,
    )
    .unwrap();
    assert!(!p.available());
    match p.generate(b) {
        Err(ProtectorError::Unavailable(m)) => assert!(!m.contains("9999"), "{m}"),
        other => panic!("{other:?}"),
    }

    // A token that is not there yet.
    let p = Pkcs11Protector::with_reconnect_interval(
        common::config(LATE, common::PIN, 2),
        Duration::ZERO,
    )
    .unwrap();
    assert!(!p.available());
    match p.generate(b) {
        Err(ProtectorError::Unavailable(m)) => assert!(!m.contains(common::PIN), "{m}"),
        other => panic!("{other:?}"),
    }
    let stored_elsewhere = [0u8; 29];
    assert!(p.load(b, &stored_elsewhere).is_err());

    // The token appears (initialized in the free slot): the protector
    // connects on its next call.
    let ctx = common::raw_context();
    let free = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| !ctx.get_token_info(*s).unwrap().token_initialized())
        .expect("SoftHSM2 keeps a free slot");
    let so_pin = AuthPin::new("5678".into());
    ctx.init_token(free, &so_pin, LATE).unwrap();
    let so = ctx.open_rw_session(free).unwrap();
    so.login(UserType::So, Some(&so_pin)).unwrap();
    so.init_pin(&AuthPin::new(common::PIN.into())).unwrap();
    so.logout().unwrap();
    drop(so);

    assert!(p.available());
    let stored = p.generate(b).unwrap();
    let h = p.load(b, &stored).unwrap();
    let sealed = h.seal(b"a", b"late").unwrap();
    assert_eq!(
        h.open(&sealed.nonce, b"a", &sealed.ciphertext)
            .unwrap()
            .expose(),
        b"late"
    );
}
