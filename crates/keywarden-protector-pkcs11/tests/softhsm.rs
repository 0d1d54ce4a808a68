//! The HSM protector against a real SoftHSM2 token (one token, scenarios in
//! sequence: see `common`).

mod common;

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;
use keywarden_core::ids::KeyId;
use keywarden_core::protector::{KeyBinding, KeyProtector, ProtectorError};
use keywarden_protector_pkcs11::Pkcs11Protector;

fn binding(key_id: &KeyId, version: u32) -> KeyBinding<'_> {
    KeyBinding { key_id, version }
}

#[test]
fn softhsm_scenarios() {
    let _token = common::token(true);
    let protector = Pkcs11Protector::new(common::config(common::LABEL, common::PIN, 4)).unwrap();
    assert!(protector.available());
    assert_eq!(protector.id(), "hsm-test");
    let shown = format!("{protector:?}");
    assert!(!shown.contains(common::PIN), "{shown}");

    let ctx = common::raw_context();
    let raw = common::raw_session(&ctx, common::LABEL);

    generated_key_has_the_required_attributes(&protector, &raw);
    round_trip_aad_and_tampering(&protector);
    stored_form_is_bound_to_its_key_version(&protector);
    destroy_then_load_fails(&protector, &raw);
    second_instance_opens_what_the_first_sealed(&protector);
    concurrent_seals_share_the_pool(protector);
    lost_login_is_recovered(&raw);
}

fn generated_key_has_the_required_attributes(p: &Pkcs11Protector, raw: &Session) {
    let k = KeyId::from_bytes([1; 16]);
    let stored = p.generate(binding(&k, 3)).unwrap();
    assert!(!stored.is_empty());
    let objects = raw
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Id(stored[1..].to_vec()),
        ])
        .unwrap();
    assert_eq!(objects.len(), 1);
    let attrs = raw
        .get_attributes(
            objects[0],
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::Wrap,
                AttributeType::Unwrap,
                AttributeType::Sign,
                AttributeType::Verify,
                AttributeType::Derive,
                AttributeType::ValueLen,
                AttributeType::Label,
            ],
        )
        .unwrap();
    let mut seen = 0;
    for a in &attrs {
        match a {
            Attribute::Token(v) | Attribute::Private(v) | Attribute::Sensitive(v) => {
                assert!(*v, "{:?}", a.attribute_type())
            }
            Attribute::Encrypt(v) | Attribute::Decrypt(v) => assert!(*v),
            Attribute::Extractable(v)
            | Attribute::Wrap(v)
            | Attribute::Unwrap(v)
            | Attribute::Sign(v)
            | Attribute::Verify(v)
            | Attribute::Derive(v) => assert!(!*v, "{:?}", a.attribute_type()),
            Attribute::ValueLen(n) => assert_eq!(u64::from(*n), 32),
            Attribute::Label(l) => assert_eq!(l, format!("keywarden/{k}#3").as_bytes()),
            other => panic!("unexpected {:?}", other.attribute_type()),
        }
        seen += 1;
    }
    assert_eq!(seen, 13, "every attribute was readable");
    // The value itself is sensitive: the token refuses to return it
    // (cryptoki leaves unavailable attributes out of the answer).
    let value = raw
        .get_attributes(objects[0], &[AttributeType::Value])
        .unwrap();
    assert!(value.is_empty(), "CKA_VALUE must not be readable");
}

fn round_trip_aad_and_tampering(p: &Pkcs11Protector) {
    let k = KeyId::from_bytes([2; 16]);
    let b = binding(&k, 1);
    let h = p.load(b, &p.generate(b).unwrap()).unwrap();
    let sealed = h.seal(b"aad", b"hello hsm").unwrap();
    assert_eq!(sealed.ciphertext.len(), 9 + 16);
    assert_ne!(&sealed.ciphertext[..9], b"hello hsm");
    let opened = h.open(&sealed.nonce, b"aad", &sealed.ciphertext).unwrap();
    assert_eq!(opened.expose(), b"hello hsm");
    // Fresh IVs.
    assert_ne!(h.seal(b"aad", b"hello hsm").unwrap().nonce, sealed.nonce);
    // Empty plaintext and empty AAD work too.
    let empty = h.seal(b"", b"").unwrap();
    assert!(h
        .open(&empty.nonce, b"", &empty.ciphertext)
        .unwrap()
        .is_empty());

    assert!(matches!(
        h.open(&sealed.nonce, b"aae", &sealed.ciphertext),
        Err(ProtectorError::Authentication)
    ));
    for i in 0..sealed.ciphertext.len() {
        let mut bad = sealed.ciphertext.clone();
        bad[i] ^= 1;
        assert!(
            matches!(
                h.open(&sealed.nonce, b"aad", &bad),
                Err(ProtectorError::Authentication)
            ),
            "flip at {i}"
        );
    }
    let mut bad_nonce = sealed.nonce;
    bad_nonce[0] ^= 1;
    assert!(matches!(
        h.open(&bad_nonce, b"aad", &sealed.ciphertext),
        Err(ProtectorError::Authentication)
    ));
    assert!(matches!(
        h.open(&sealed.nonce, b"aad", &sealed.ciphertext[..10]),
        Err(ProtectorError::Authentication)
    ));
    // Another key version's material does not open it.
    let other = p.load(b, &p.generate(b).unwrap()).unwrap();
    assert!(matches!(
        other.open(&sealed.nonce, b"aad", &sealed.ciphertext),
        Err(ProtectorError::Authentication)
    ));
    // The handle still works after the failures (sessions stay usable).
    assert_eq!(
        h.open(&sealed.nonce, b"aad", &sealed.ciphertext)
            .unwrap()
            .expose(),
        b"hello hsm"
    );
}

fn stored_form_is_bound_to_its_key_version(p: &Pkcs11Protector) {
    let k1 = KeyId::from_bytes([3; 16]);
    let k2 = KeyId::from_bytes([4; 16]);
    let stored = p.generate(binding(&k1, 1)).unwrap();
    for wrong in [binding(&k2, 1), binding(&k1, 2)] {
        assert!(matches!(
            p.load(wrong, &stored).err(),
            Some(ProtectorError::MalformedMaterial)
        ));
        assert!(matches!(
            p.destroy(wrong, &stored),
            Err(ProtectorError::MalformedMaterial)
        ));
    }
    assert!(matches!(
        p.load(binding(&k1, 1), &stored[..5]).err(),
        Some(ProtectorError::MalformedMaterial)
    ));
    assert!(p.load(binding(&k1, 1), &stored).is_ok());
}

fn destroy_then_load_fails(p: &Pkcs11Protector, raw: &Session) {
    let k = KeyId::from_bytes([5; 16]);
    let b = binding(&k, 1);
    let stored = p.generate(b).unwrap();
    let h = p.load(b, &stored).unwrap();
    h.seal(b"", b"x").unwrap();
    p.destroy(b, &stored).unwrap();
    assert!(raw
        .find_objects(&[Attribute::Id(stored[1..].to_vec())])
        .unwrap()
        .is_empty());
    assert!(p.load(b, &stored).is_err());
    // Idempotent.
    p.destroy(b, &stored).unwrap();
}

fn second_instance_opens_what_the_first_sealed(p: &Pkcs11Protector) {
    let k = KeyId::from_bytes([6; 16]);
    let b = binding(&k, 9);
    let stored = p.generate(b).unwrap();
    let sealed = p
        .load(b, &stored)
        .unwrap()
        .seal(b"ctx", b"persist")
        .unwrap();
    let q = Pkcs11Protector::new(common::config(common::LABEL, common::PIN, 2)).unwrap();
    let opened = q
        .load(b, &stored)
        .unwrap()
        .open(&sealed.nonce, b"ctx", &sealed.ciphertext)
        .unwrap();
    assert_eq!(opened.expose(), b"persist");
}

fn concurrent_seals_share_the_pool(p: Pkcs11Protector) {
    let p = Arc::new(p);
    let k = KeyId::from_bytes([7; 16]);
    let b = binding(&k, 1);
    let stored = p.generate(b).unwrap();
    let handle: Arc<dyn keywarden_core::protector::KeyHandle> =
        Arc::from(p.load(b, &stored).unwrap());
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || {
                for i in 0..100u8 {
                    let msg = [t, i];
                    let sealed = handle.seal(&[t], &msg).unwrap();
                    let opened = handle
                        .open(&sealed.nonce, &[t], &sealed.ciphertext)
                        .unwrap();
                    assert_eq!(opened.expose(), msg);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The login is the application's: a logout from any session logs the
/// protector's sessions out too. The next call sees the failure, reconnects
/// and succeeds.
fn lost_login_is_recovered(raw: &Session) {
    let p = Pkcs11Protector::new(common::config(common::LABEL, common::PIN, 2)).unwrap();
    let k = KeyId::from_bytes([8; 16]);
    let b = binding(&k, 1);
    let stored = p.generate(b).unwrap();
    let h = p.load(b, &stored).unwrap();
    let sealed = h.seal(b"", b"before").unwrap();
    raw.logout().unwrap();
    assert_eq!(
        h.open(&sealed.nonce, b"", &sealed.ciphertext)
            .unwrap()
            .expose(),
        b"before"
    );
    assert!(p.available());
}
