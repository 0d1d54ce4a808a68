//! RSA, ECC and HMAC keys in a real SoftHSM2 token: generated in the token,
//! private operations in the token, checked against the software side
//! (`keywarden_crypto`): what the token signs verifies with the public key
//! it returned, what software encrypts to it the token decrypts, and its
//! ECDH agrees with a software key's. One token, scenarios in sequence
//! (see `common`).

mod common;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;
use keywarden_core::ids::KeyId;
use keywarden_core::key_spec::{
    EncryptionAlgorithm, KeySpec, KeyUsageType, MacAlgorithm, MessageType, SigningAlgorithm,
};
use keywarden_core::protector::{
    KeyBinding, KeyProtector, ProtectorError, PublicKeyCrypto, SpecHandle,
};
use keywarden_crypto::Crypto;
use keywarden_protector_pkcs11::Pkcs11Protector;

fn binding(key_id: &KeyId, version: u32) -> KeyBinding<'_> {
    KeyBinding { key_id, version }
}

/// A hash of `message` as a DIGEST message for `algorithm`.
fn digest_for(algorithm: SigningAlgorithm, message: &[u8]) -> Vec<u8> {
    let alg = match algorithm.digest_len() {
        Some(32) => &aws_lc_rs::digest::SHA256,
        Some(48) => &aws_lc_rs::digest::SHA384,
        _ => &aws_lc_rs::digest::SHA512,
    };
    aws_lc_rs::digest::digest(alg, message).as_ref().to_vec()
}

#[test]
fn softhsm_key_specs() {
    let _token = common::token(true);
    let p = Pkcs11Protector::new(common::config(common::LABEL, common::PIN, 4)).unwrap();
    assert!(p.available());
    let ctx = common::raw_context();
    let raw = common::raw_session(&ctx, common::LABEL);

    let mut n = 0u8;
    let mut next_key = || {
        n += 1;
        KeyId::from_bytes([n; 16])
    };

    for spec in [KeySpec::Rsa2048, KeySpec::Rsa3072, KeySpec::Rsa4096] {
        rsa_signs_and_decrypts(&p, &raw, &next_key(), spec);
    }
    for spec in [
        KeySpec::EccNistP256,
        KeySpec::EccNistP384,
        KeySpec::EccNistP521,
    ] {
        ecdsa_signs(&p, &raw, &next_key(), spec);
        ecdh_agrees_with_software(&p, &next_key(), spec);
    }
    secp256k1(&p, &raw, &next_key());
    for spec in [
        KeySpec::Hmac224,
        KeySpec::Hmac256,
        KeySpec::Hmac384,
        KeySpec::Hmac512,
    ] {
        hmac_macs_and_verifies(&p, &raw, &next_key(), spec);
    }
    stored_forms_are_bound(&p, &next_key(), &next_key());
    unsupported_specs_are_refused(&p, &next_key());
    aes_keys_still_work(&p, &next_key());
    // Last: it logs the whole application out.
    lost_login_is_recovered(&raw, &next_key());
}

/// The private object of a generated pair (or the HMAC key): a token
/// object, private, sensitive, never extractable; no public object is
/// left on the token.
fn check_private_object(raw: &Session, stored: &[u8], class: ObjectClass) {
    let id = stored[1..].to_vec();
    let objects = raw.find_objects(&[Attribute::Id(id.clone())]).unwrap();
    assert_eq!(objects.len(), 1, "one object per key (no public object)");
    let attrs = raw
        .get_attributes(
            objects[0],
            &[
                AttributeType::Class,
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::AlwaysSensitive,
                AttributeType::NeverExtractable,
                AttributeType::Unwrap,
            ],
        )
        .unwrap();
    assert_eq!(attrs.len(), 8, "{attrs:?}");
    for a in &attrs {
        match a {
            Attribute::Class(c) => assert_eq!(*c, class),
            Attribute::Token(v)
            | Attribute::Private(v)
            | Attribute::Sensitive(v)
            | Attribute::AlwaysSensitive(v)
            | Attribute::NeverExtractable(v) => assert!(*v, "{:?}", a.attribute_type()),
            Attribute::Extractable(v) | Attribute::Unwrap(v) => {
                assert!(!*v, "{:?}", a.attribute_type())
            }
            other => panic!("unexpected {:?}", other.attribute_type()),
        }
    }
    let value = raw
        .get_attributes(objects[0], &[AttributeType::Value])
        .unwrap();
    assert!(value.is_empty(), "CKA_VALUE must not be readable");
}

fn signer(p: &Pkcs11Protector, b: KeyBinding<'_>, spec: KeySpec, stored: &[u8]) -> SpecHandle {
    p.load_spec(b, spec, KeyUsageType::SignVerify, stored)
        .unwrap()
}

fn rsa_signs_and_decrypts(p: &Pkcs11Protector, raw: &Session, k: &KeyId, spec: KeySpec) {
    let b = binding(k, 1);
    let generated = p.generate_spec(b, spec).unwrap();
    let public = generated.public_key.clone().expect("an RSA public key");
    check_private_object(raw, &generated.stored, ObjectClass::PRIVATE_KEY);

    let SpecHandle::Sign(s) = signer(p, b, spec, &generated.stored) else {
        panic!("a signer")
    };
    let message = b"signed inside the token".to_vec();
    for algorithm in spec.signing_algorithms(KeyUsageType::SignVerify) {
        for (message_type, m) in [
            (MessageType::Raw, message.clone()),
            (MessageType::Digest, digest_for(*algorithm, &message)),
        ] {
            let sig = s.sign(*algorithm, message_type, &m).unwrap();
            assert!(
                Crypto
                    .verify(spec, &public, *algorithm, message_type, &m, &sig)
                    .unwrap(),
                "{spec} {algorithm} {message_type}"
            );
            // RAW and DIGEST sign the same thing.
            let other_type = match message_type {
                MessageType::Raw => (MessageType::Digest, digest_for(*algorithm, &message)),
                _ => (MessageType::Raw, message.clone()),
            };
            assert!(Crypto
                .verify(spec, &public, *algorithm, other_type.0, &other_type.1, &sig)
                .unwrap());
            let mut bad = sig.clone();
            bad[10] ^= 1;
            assert!(!Crypto
                .verify(spec, &public, *algorithm, message_type, &m, &bad)
                .unwrap());
        }
        assert!(matches!(
            s.sign(*algorithm, MessageType::Digest, &message),
            Err(ProtectorError::InvalidInput(_))
        ));
    }
    // Another algorithm's signature does not verify as this one.
    let pss = s
        .sign(
            SigningAlgorithm::RsassaPssSha256,
            MessageType::Raw,
            &message,
        )
        .unwrap();
    assert!(!Crypto
        .verify(
            spec,
            &public,
            SigningAlgorithm::RsassaPkcs1V15Sha256,
            MessageType::Raw,
            &message,
            &pss
        )
        .unwrap());

    // The same key decrypts (the private object can do both; the core
    // keeps a key to its one usage).
    let SpecHandle::Decrypt(d) = p
        .load_spec(b, spec, KeyUsageType::EncryptDecrypt, &generated.stored)
        .unwrap()
    else {
        panic!("a decrypter")
    };
    let algorithm = EncryptionAlgorithm::RsaesOaepSha1;
    let plaintext = vec![0x5a; spec.max_plaintext(algorithm)];
    let ciphertext = Crypto
        .encrypt(spec, &public, algorithm, &plaintext)
        .unwrap();
    assert_eq!(
        d.decrypt(algorithm, &ciphertext).unwrap().expose(),
        &plaintext[..]
    );
    let short = Crypto.encrypt(spec, &public, algorithm, b"").unwrap();
    assert!(d.decrypt(algorithm, &short).unwrap().is_empty());
    // Altered or cut: no plaintext.
    let mut bad = ciphertext.clone();
    bad[7] ^= 1;
    assert!(matches!(
        d.decrypt(algorithm, &bad),
        Err(ProtectorError::Authentication)
    ));
    assert!(matches!(
        d.decrypt(algorithm, &ciphertext[1..]),
        Err(ProtectorError::Authentication)
    ));
    // SoftHSM2 2.6 implements RSA-OAEP with SHA-1 only: it refuses the
    // SHA-256 parameters at C_DecryptInit, and the operation says so.
    let sha256 = Crypto
        .encrypt(
            spec,
            &public,
            EncryptionAlgorithm::RsaesOaepSha256,
            b"to sha-256",
        )
        .unwrap();
    match d.decrypt(EncryptionAlgorithm::RsaesOaepSha256, &sha256) {
        Err(ProtectorError::Unsupported(m)) => {
            assert!(m.contains("RSAES_OAEP_SHA_256"), "{m}");
            assert!(m.contains("not supported by this HSM"), "{m}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // The session pool is still fine after the failures.
    assert_eq!(
        d.decrypt(algorithm, &ciphertext).unwrap().expose(),
        &plaintext[..]
    );
    // No key agreement for RSA.
    assert!(matches!(
        p.load_spec(b, spec, KeyUsageType::KeyAgreement, &generated.stored),
        Err(ProtectorError::Unsupported(_))
    ));

    p.destroy(b, &generated.stored).unwrap();
    assert!(raw
        .find_objects(&[Attribute::Id(generated.stored[1..].to_vec())])
        .unwrap()
        .is_empty());
    assert!(p
        .load_spec(b, spec, KeyUsageType::SignVerify, &generated.stored)
        .is_err());
    p.destroy(b, &generated.stored).unwrap();
}

fn ecdsa_signs(p: &Pkcs11Protector, raw: &Session, k: &KeyId, spec: KeySpec) {
    let b = binding(k, 2);
    let generated = p.generate_spec(b, spec).unwrap();
    let public = generated.public_key.clone().expect("an EC public key");
    check_private_object(raw, &generated.stored, ObjectClass::PRIVATE_KEY);
    let SpecHandle::Sign(s) = signer(p, b, spec, &generated.stored) else {
        panic!("a signer")
    };
    let algorithm = spec.signing_algorithms(KeyUsageType::SignVerify)[0];
    let message = b"an ECDSA signature from the token, in DER".to_vec();
    for (message_type, m) in [
        (MessageType::Raw, message.clone()),
        (MessageType::Digest, digest_for(algorithm, &message)),
    ] {
        let sig = s.sign(algorithm, message_type, &m).unwrap();
        assert_eq!(sig[0], 0x30, "DER ECDSA-Sig-Value");
        assert!(
            Crypto
                .verify(spec, &public, algorithm, message_type, &m, &sig)
                .unwrap(),
            "{spec} {message_type}"
        );
        assert!(!Crypto
            .verify(spec, &public, algorithm, message_type, &m[1..], &sig)
            .unwrap_or(false));
    }
    assert!(matches!(
        s.sign(algorithm, MessageType::Digest, &message),
        Err(ProtectorError::InvalidInput(_))
    ));
    assert!(matches!(
        s.sign(algorithm, MessageType::ExternalMu, &[0; 64]),
        Err(ProtectorError::InvalidInput(_))
    ));
    p.destroy(b, &generated.stored).unwrap();
}

fn ecdh_agrees_with_software(p: &Pkcs11Protector, k: &KeyId, spec: KeySpec) {
    let b = binding(k, 1);
    let generated = p.generate_spec(b, spec).unwrap();
    let hsm_public = generated.public_key.clone().unwrap();
    let SpecHandle::Agree(hsm) = p
        .load_spec(b, spec, KeyUsageType::KeyAgreement, &generated.stored)
        .unwrap()
    else {
        panic!("a key agreement handle")
    };
    // A software key on the same curve, from keywarden-crypto.
    let (soft_private, soft_public) = keywarden_crypto::generate(spec).unwrap();
    let soft_public = soft_public.unwrap();
    let SpecHandle::Agree(soft) =
        keywarden_crypto::load(spec, KeyUsageType::KeyAgreement, &soft_private).unwrap()
    else {
        panic!("a software key agreement handle")
    };
    let from_hsm = hsm.derive(&soft_public).unwrap();
    let from_soft = soft.derive(&hsm_public).unwrap();
    let field_len = match spec {
        KeySpec::EccNistP256 => 32,
        KeySpec::EccNistP384 => 48,
        _ => 66,
    };
    assert_eq!(from_hsm.len(), field_len);
    assert_eq!(from_hsm.expose(), from_soft.expose(), "{spec}");
    // Again (the derived session object was destroyed, nothing is left).
    assert_eq!(
        hsm.derive(&soft_public).unwrap().expose(),
        from_soft.expose()
    );

    // Malformed peers: not DER, another curve, RSA, a point off the curve.
    let other_curve = if spec == KeySpec::EccNistP256 {
        KeySpec::EccNistP384
    } else {
        KeySpec::EccNistP256
    };
    let (_, other) = keywarden_crypto::generate(other_curve).unwrap();
    let (_, rsa) = keywarden_crypto::generate(KeySpec::Rsa2048).unwrap();
    let mut off_curve = soft_public.clone();
    let last = off_curve.len() - 1;
    off_curve[last] ^= 1;
    for bad in [
        b"not a key".to_vec(),
        soft_public[..soft_public.len() - 1].to_vec(),
        other.unwrap(),
        rsa.unwrap(),
        off_curve,
    ] {
        assert!(
            matches!(hsm.derive(&bad), Err(ProtectorError::InvalidInput(_))),
            "{spec}"
        );
    }
    assert_eq!(
        hsm.derive(&soft_public).unwrap().expose(),
        from_soft.expose()
    );
    // An EC key does not decrypt.
    assert!(matches!(
        p.load_spec(b, spec, KeyUsageType::EncryptDecrypt, &generated.stored),
        Err(ProtectorError::Unsupported(_))
    ));
    p.destroy(b, &generated.stored).unwrap();
}

/// SoftHSM2 2.6 over OpenSSL knows secp256k1: the key is generated and
/// signs like the NIST curves.
fn secp256k1(p: &Pkcs11Protector, raw: &Session, k: &KeyId) {
    ecdsa_signs(p, raw, k, KeySpec::EccSecgP256k1);
}

fn hmac_macs_and_verifies(p: &Pkcs11Protector, raw: &Session, k: &KeyId, spec: KeySpec) {
    let b = binding(k, 1);
    let generated = p.generate_spec(b, spec).unwrap();
    assert!(generated.public_key.is_none());
    check_private_object(raw, &generated.stored, ObjectClass::SECRET_KEY);
    let objects = raw
        .find_objects(&[Attribute::Id(generated.stored[1..].to_vec())])
        .unwrap();
    let len = raw
        .get_attributes(objects[0], &[AttributeType::ValueLen])
        .unwrap();
    let want = match spec {
        KeySpec::Hmac224 => 28u64,
        KeySpec::Hmac256 => 32,
        KeySpec::Hmac384 => 48,
        _ => 64,
    };
    assert!(matches!(len.as_slice(), [Attribute::ValueLen(n)] if u64::from(*n) == want));

    let SpecHandle::Mac(m) = p
        .load_spec(b, spec, KeyUsageType::GenerateVerifyMac, &generated.stored)
        .unwrap()
    else {
        panic!("a MAC key")
    };
    let algorithm = spec.mac_algorithms()[0];
    let mac = m.mac(algorithm, b"message").unwrap();
    assert_eq!(mac.len(), algorithm.mac_len());
    assert_eq!(m.mac(algorithm, b"message").unwrap(), mac);
    assert_ne!(m.mac(algorithm, b"messagf").unwrap(), mac);
    assert!(m.verify_mac(algorithm, b"message", &mac).unwrap());
    assert!(!m.verify_mac(algorithm, b"messagf", &mac).unwrap());
    let mut bad = mac.clone();
    bad[0] ^= 1;
    assert!(!m.verify_mac(algorithm, b"message", &bad).unwrap());
    assert!(!m
        .verify_mac(algorithm, b"message", &mac[..mac.len() - 1])
        .unwrap());
    assert!(!m.verify_mac(algorithm, b"message", &[]).unwrap());
    assert!(m.verify_mac(algorithm, b"message", &mac).unwrap());
    let other = if algorithm == MacAlgorithm::HmacSha256 {
        MacAlgorithm::HmacSha512
    } else {
        MacAlgorithm::HmacSha256
    };
    assert!(matches!(
        m.mac(other, b"message"),
        Err(ProtectorError::Unsupported(_))
    ));
    // A second key of the same spec MACs differently.
    let b2 = binding(k, 2);
    let second = p.generate_spec(b2, spec).unwrap();
    let SpecHandle::Mac(m2) = p
        .load_spec(b2, spec, KeyUsageType::GenerateVerifyMac, &second.stored)
        .unwrap()
    else {
        panic!("a MAC key")
    };
    assert!(!m2.verify_mac(algorithm, b"message", &mac).unwrap());
    p.destroy(b, &generated.stored).unwrap();
    p.destroy(b2, &second.stored).unwrap();
}

fn stored_forms_are_bound(p: &Pkcs11Protector, k1: &KeyId, k2: &KeyId) {
    let spec = KeySpec::EccNistP256;
    let sv = KeyUsageType::SignVerify;
    let generated = p.generate_spec(binding(k1, 1), spec).unwrap();
    let stored = &generated.stored;
    assert!(p.load_spec(binding(k1, 1), spec, sv, stored).is_ok());
    for (b, s) in [
        (binding(k2, 1), spec),
        (binding(k1, 2), spec),
        (binding(k1, 1), KeySpec::EccNistP384),
        (binding(k1, 1), KeySpec::EccSecgP256k1),
    ] {
        assert!(
            matches!(
                p.load_spec(b, s, sv, stored),
                Err(ProtectorError::MalformedMaterial)
            ),
            "{b:?} {s}"
        );
    }
    assert!(matches!(
        p.load_spec(
            binding(k1, 1),
            KeySpec::Rsa2048,
            KeyUsageType::SignVerify,
            stored
        ),
        Err(ProtectorError::MalformedMaterial)
    ));
    // Not an AES key either, and an AES stored form is no EC key.
    assert!(matches!(
        p.load(binding(k1, 1), stored).err(),
        Some(ProtectorError::MalformedMaterial)
    ));
    let aes = p.generate(binding(k1, 1)).unwrap();
    assert!(matches!(
        p.load_spec(binding(k1, 1), spec, sv, &aes),
        Err(ProtectorError::MalformedMaterial)
    ));
    // Destroy checks the binding too.
    assert!(matches!(
        p.destroy(binding(k2, 1), stored),
        Err(ProtectorError::MalformedMaterial)
    ));
    assert!(p.load_spec(binding(k1, 1), spec, sv, stored).is_ok());
    p.destroy(binding(k1, 1), stored).unwrap();
    p.destroy(binding(k1, 1), &aes).unwrap();
}

fn unsupported_specs_are_refused(p: &Pkcs11Protector, k: &KeyId) {
    let b = binding(k, 1);
    for spec in [
        KeySpec::EccNistEdwards25519,
        KeySpec::Sm2,
        KeySpec::MlDsa44,
        KeySpec::MlDsa65,
        KeySpec::MlDsa87,
        KeySpec::MlKem512,
        KeySpec::MlKem768,
        KeySpec::MlKem1024,
    ] {
        match p.generate_spec(b, spec) {
            Err(ProtectorError::Unsupported(m)) => {
                assert!(m.contains("not supported by this HSM"), "{m}");
                assert!(m.contains(spec.as_str()), "{m}");
            }
            other => panic!("{spec}: {other:?}"),
        }
        let usage = spec.usages()[0];
        assert!(matches!(
            p.load_spec(b, spec, usage, &[2; 30]),
            Err(ProtectorError::Unsupported(_))
        ));
    }
}

/// AES keys (stored form version 1) are untouched by the spec keys.
fn aes_keys_still_work(p: &Pkcs11Protector, k: &KeyId) {
    let b = binding(k, 1);
    let generated = p.generate_spec(b, KeySpec::SymmetricDefault).unwrap();
    assert!(generated.public_key.is_none());
    assert_eq!(generated.stored[0], 1);
    let h = p.load(b, &generated.stored).unwrap();
    let sealed = h.seal(b"aad", b"aes").unwrap();
    assert_eq!(
        h.open(&sealed.nonce, b"aad", &sealed.ciphertext)
            .unwrap()
            .expose(),
        b"aes"
    );
    p.destroy(b, &generated.stored).unwrap();
    assert!(p.load(b, &generated.stored).is_err());
}

/// Spec handles recover from a lost login like AES handles: the object
/// handle is invisible once logged out, the pool reconnects and the call
/// is retried.
fn lost_login_is_recovered(raw: &Session, k: &KeyId) {
    let p = Pkcs11Protector::new(common::config(common::LABEL, common::PIN, 2)).unwrap();
    let b = binding(k, 1);
    let spec = KeySpec::EccNistP256;
    let generated = p.generate_spec(b, spec).unwrap();
    let public = generated.public_key.unwrap();
    let SpecHandle::Sign(s) = signer(&p, b, spec, &generated.stored) else {
        panic!("a signer")
    };
    let algorithm = SigningAlgorithm::EcdsaSha256;
    s.sign(algorithm, MessageType::Raw, b"before").unwrap();
    raw.logout().unwrap();
    let sig = s.sign(algorithm, MessageType::Raw, b"after").unwrap();
    assert!(Crypto
        .verify(spec, &public, algorithm, MessageType::Raw, b"after", &sig)
        .unwrap());
    assert!(p.available());
}
