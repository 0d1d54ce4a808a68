//! Round trips for every spec and usage, known-answer vectors, and the
//! errors callers see.

use keywarden_core::key_spec::{
    DataKeyPairSpec, EncryptionAlgorithm, KeySpec, KeyUsageType, MacAlgorithm, MessageType,
    SigningAlgorithm,
};
use keywarden_core::protector::{ProtectorError, PublicKeyCrypto, SpecHandle};
use keywarden_core::secret::Secret;

use crate::{generate, load, public_key, Crypto, FORMAT_V1};

/// Specs whose implementation this build has (the others are Unsupported).
pub(crate) fn implemented(spec: KeySpec) -> bool {
    !matches!(spec, KeySpec::SymmetricDefault) && generate_cached(spec).is_some()
}

/// One generated key per spec for the whole test run (RSA-4096 is slow).
fn generate_cached(spec: KeySpec) -> Option<&'static (Vec<u8>, Option<Vec<u8>>)> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    type Cache = Mutex<HashMap<&'static str, Option<&'static (Vec<u8>, Option<Vec<u8>>)>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap();
    *map.entry(spec.as_str())
        .or_insert_with(|| match generate(spec) {
            Ok((private, public)) => Some(Box::leak(Box::new((private.expose().to_vec(), public)))),
            Err(ProtectorError::Unsupported(_)) => None,
            Err(e) => panic!("generate {spec}: {e}"),
        })
}

fn key(spec: KeySpec) -> (Secret, Vec<u8>) {
    let (private, public) = generate_cached(spec).expect("implemented");
    (
        Secret::new(private.clone()),
        public.clone().unwrap_or_default(),
    )
}

fn hash(alg: SigningAlgorithm, message: &[u8]) -> Vec<u8> {
    use aws_lc_rs::digest;
    let d = match alg.digest_len() {
        Some(32) => &digest::SHA256,
        Some(48) => &digest::SHA384,
        _ => &digest::SHA512,
    };
    digest::digest(d, message).as_ref().to_vec()
}

fn signer(spec: KeySpec, private: &Secret) -> Box<dyn keywarden_core::protector::Signer> {
    match load(spec, KeyUsageType::SignVerify, private).unwrap() {
        SpecHandle::Sign(s) => s,
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_signing_algorithm_round_trips_and_rejects_a_flipped_byte() {
    let message = b"Keywarden signs this message.";
    let mut ran = 0;
    for spec in KeySpec::ALL.iter().copied().filter(|s| implemented(*s)) {
        let (private, public) = key(spec);
        assert_eq!(
            public_key(spec, &private).unwrap(),
            generate_cached(spec).unwrap().1
        );
        for alg in spec
            .signing_algorithms(KeyUsageType::SignVerify)
            .iter()
            .copied()
        {
            let s = signer(spec, &private);
            let mut types = vec![(MessageType::Raw, message.to_vec())];
            if alg.digest_len().is_some() {
                types.push((MessageType::Digest, hash(alg, message)));
            }
            for (mt, m) in types {
                let sig = s.sign(alg, mt, &m).unwrap();
                assert!(
                    Crypto.verify(spec, &public, alg, mt, &m, &sig).unwrap(),
                    "{spec} {alg} {mt}"
                );
                let mut bad = sig.clone();
                let i = bad.len() / 2;
                bad[i] ^= 1;
                assert!(
                    !Crypto.verify(spec, &public, alg, mt, &m, &bad).unwrap(),
                    "{spec} {alg} {mt}"
                );
                assert!(!Crypto
                    .verify(spec, &public, alg, mt, b"other", &sig)
                    .unwrap_or(false));
                // A truncated or empty signature is just invalid.
                assert!(!Crypto
                    .verify(spec, &public, alg, mt, &m, &sig[..3])
                    .unwrap());
                assert!(!Crypto.verify(spec, &public, alg, mt, &m, &[]).unwrap());
                ran += 1;
            }
        }
    }
    assert!(ran >= 16, "{ran}");
}

#[test]
fn digest_signatures_verify_as_raw_and_back() {
    let message = b"the same message two ways";
    for spec in KeySpec::ALL.iter().copied().filter(|s| implemented(*s)) {
        let (private, public) = key(spec);
        for alg in spec
            .signing_algorithms(KeyUsageType::SignVerify)
            .iter()
            .copied()
        {
            if alg.digest_len().is_none() || alg == SigningAlgorithm::Sm2Dsa {
                continue; // SM2's DIGEST is e = SM3(Z_A ‖ M), tested with SM2
            }
            let s = signer(spec, &private);
            let digest = hash(alg, message);
            let over_digest = s.sign(alg, MessageType::Digest, &digest).unwrap();
            assert!(
                Crypto
                    .verify(spec, &public, alg, MessageType::Raw, message, &over_digest)
                    .unwrap(),
                "{spec} {alg}"
            );
            let over_raw = s.sign(alg, MessageType::Raw, message).unwrap();
            assert!(
                Crypto
                    .verify(spec, &public, alg, MessageType::Digest, &digest, &over_raw)
                    .unwrap(),
                "{spec} {alg}"
            );
        }
    }
}

#[test]
fn malformed_public_keys_are_malformed_material() {
    let (_, p256) = key(KeySpec::EccNistP256);
    let (_, p384) = key(KeySpec::EccNistP384);
    let (_, rsa) = key(KeySpec::Rsa2048);
    let (_, ed) = key(KeySpec::EccNistEdwards25519);
    let (_, sm2) = key(KeySpec::Sm2);
    let (_, ml44) = key(KeySpec::MlDsa44);
    let cases: &[(KeySpec, &[u8], SigningAlgorithm)] = &[
        (KeySpec::Sm2, &p256, SigningAlgorithm::Sm2Dsa),
        (KeySpec::EccNistP256, &sm2, SigningAlgorithm::EcdsaSha256),
        (
            KeySpec::EccNistEdwards25519,
            &p256,
            SigningAlgorithm::Ed25519Sha512,
        ),
        (
            KeySpec::EccNistEdwards25519,
            &p256,
            SigningAlgorithm::Ed25519PhSha512,
        ),
        (
            KeySpec::EccNistEdwards25519,
            &ed[..ed.len() - 1],
            SigningAlgorithm::Ed25519PhSha512,
        ),
        (KeySpec::MlDsa65, &ml44, SigningAlgorithm::MlDsaShake256),
        (KeySpec::MlDsa44, &ed, SigningAlgorithm::MlDsaShake256),
        (
            KeySpec::EccNistP256,
            b"not a key",
            SigningAlgorithm::EcdsaSha256,
        ),
        (KeySpec::EccNistP256, &p384, SigningAlgorithm::EcdsaSha256),
        (KeySpec::EccNistP384, &p256, SigningAlgorithm::EcdsaSha384),
        (KeySpec::EccNistP256, &rsa, SigningAlgorithm::EcdsaSha256),
        (KeySpec::Rsa3072, &rsa, SigningAlgorithm::RsassaPssSha256),
        (KeySpec::Rsa2048, &p256, SigningAlgorithm::RsassaPssSha256),
        (
            KeySpec::Rsa2048,
            &rsa[..rsa.len() - 1],
            SigningAlgorithm::RsassaPssSha256,
        ),
    ];
    for (spec, public, alg) in cases {
        let r = Crypto.verify(*spec, public, *alg, MessageType::Raw, b"m", &[0u8; 64]);
        assert!(
            matches!(r, Err(ProtectorError::MalformedMaterial)),
            "{spec} {alg}: {r:?}"
        );
    }
}

#[test]
fn digest_of_the_wrong_length_is_invalid_input() {
    let (private, _) = key(KeySpec::EccNistP256);
    let r = signer(KeySpec::EccNistP256, &private).sign(
        SigningAlgorithm::EcdsaSha256,
        MessageType::Digest,
        &[0u8; 31],
    );
    assert!(matches!(r, Err(ProtectorError::InvalidInput(_))), "{r:?}");
}

#[test]
fn oaep_round_trips_up_to_awss_limit_and_not_one_byte_more() {
    for spec in [KeySpec::Rsa2048, KeySpec::Rsa3072, KeySpec::Rsa4096] {
        let (private, public) = key(spec);
        let SpecHandle::Decrypt(d) = load(spec, KeyUsageType::EncryptDecrypt, &private).unwrap()
        else {
            panic!("not a decrypter")
        };
        for alg in [
            EncryptionAlgorithm::RsaesOaepSha1,
            EncryptionAlgorithm::RsaesOaepSha256,
        ] {
            let max = spec.max_plaintext(alg);
            for len in [0, 1, max] {
                let plaintext: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let ct = Crypto.encrypt(spec, &public, alg, &plaintext).unwrap();
                assert_eq!(ct.len() * 8, spec.as_str()[4..].parse::<usize>().unwrap());
                assert_eq!(d.decrypt(alg, &ct).unwrap().expose(), &plaintext[..]);
                // The other OAEP hash does not decrypt it.
                let other = if alg == EncryptionAlgorithm::RsaesOaepSha1 {
                    EncryptionAlgorithm::RsaesOaepSha256
                } else {
                    EncryptionAlgorithm::RsaesOaepSha1
                };
                assert!(matches!(
                    d.decrypt(other, &ct),
                    Err(ProtectorError::Authentication)
                ));
                let mut bad = ct.clone();
                bad[10] ^= 0x40;
                assert!(matches!(
                    d.decrypt(alg, &bad),
                    Err(ProtectorError::Authentication)
                ));
            }
            let too_long = vec![7u8; max + 1];
            let r = Crypto.encrypt(spec, &public, alg, &too_long);
            assert!(
                matches!(r, Err(ProtectorError::InvalidInput(_))),
                "{spec} {alg}: {r:?}"
            );
        }
        assert!(matches!(
            d.decrypt(EncryptionAlgorithm::RsaesOaepSha256, b"short"),
            Err(ProtectorError::Authentication)
        ));
    }
}

/// RFC 4231 §4.2 and §4.3 (test cases 1 and 2), through the private
/// encoding. HMAC pads a key shorter than the hash block with zeros
/// (RFC 2104 §2), so the RFC's 20- and 4-byte keys padded with zeros to
/// the spec's length give the RFC's MACs.
#[test]
fn hmac_matches_rfc_4231() {
    let cases: [(&[u8], &[u8], [&str; 4]); 2] = [
        (
            &[0x0b; 20],
            b"Hi There",
            [
                "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ],
        ),
        (
            b"Jefe",
            b"what do ya want for nothing?",
            [
                "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ],
        ),
    ];
    let specs = [
        (KeySpec::Hmac224, MacAlgorithm::HmacSha224, 28),
        (KeySpec::Hmac256, MacAlgorithm::HmacSha256, 32),
        (KeySpec::Hmac384, MacAlgorithm::HmacSha384, 48),
        (KeySpec::Hmac512, MacAlgorithm::HmacSha512, 64),
    ];
    for (key, data, expected) in cases {
        for ((spec, alg, len), expected) in specs.iter().zip(expected) {
            let mut encoding = vec![FORMAT_V1];
            encoding.extend_from_slice(key);
            encoding.resize(1 + len, 0);
            let SpecHandle::Mac(mac) = load(
                *spec,
                KeyUsageType::GenerateVerifyMac,
                &Secret::new(encoding),
            )
            .unwrap() else {
                panic!("not a MAC key")
            };
            let tag = mac.mac(*alg, data).unwrap();
            assert_eq!(hex::encode(&tag), expected, "{spec}");
            assert_eq!(tag.len(), alg.mac_len());
            assert!(mac.verify_mac(*alg, data, &tag).unwrap());
            let mut bad = tag.clone();
            bad[0] ^= 1;
            assert!(!mac.verify_mac(*alg, data, &bad).unwrap());
            assert!(!mac.verify_mac(*alg, data, &tag[..tag.len() - 1]).unwrap());
        }
    }
}

#[test]
fn generated_hmac_keys_have_awss_lengths_and_work() {
    for (spec, alg, len) in [
        (KeySpec::Hmac224, MacAlgorithm::HmacSha224, 28),
        (KeySpec::Hmac256, MacAlgorithm::HmacSha256, 32),
        (KeySpec::Hmac384, MacAlgorithm::HmacSha384, 48),
        (KeySpec::Hmac512, MacAlgorithm::HmacSha512, 64),
    ] {
        let (private, public) = generate(spec).unwrap();
        assert!(public.is_none());
        assert_eq!(private.len(), 1 + len);
        assert_eq!(public_key(spec, &private).unwrap(), None);
        let SpecHandle::Mac(mac) = load(spec, KeyUsageType::GenerateVerifyMac, &private).unwrap()
        else {
            panic!("not a MAC key")
        };
        let tag = mac.mac(alg, b"m").unwrap();
        assert!(mac.verify_mac(alg, b"m", &tag).unwrap());
        assert!(!mac.verify_mac(alg, b"n", &tag).unwrap());
        // Another spec's algorithm is refused.
        let other = if alg == MacAlgorithm::HmacSha256 {
            MacAlgorithm::HmacSha512
        } else {
            MacAlgorithm::HmacSha256
        };
        assert!(matches!(
            mac.mac(other, b"m"),
            Err(ProtectorError::Unsupported(_))
        ));
        // Too short for the spec.
        let short = Secret::new(private.expose()[..len].to_vec());
        assert!(matches!(
            load(spec, KeyUsageType::GenerateVerifyMac, &short),
            Err(ProtectorError::MalformedMaterial)
        ));
    }
}

#[test]
fn ecdh_between_two_keys_agrees_and_rejects_bad_peers() {
    for spec in [
        KeySpec::EccNistP256,
        KeySpec::EccNistP384,
        KeySpec::EccNistP521,
    ] {
        let (a, a_pub) = generate(spec).unwrap();
        let (b, b_pub) = generate(spec).unwrap();
        let agree = |k: &Secret| match load(spec, KeyUsageType::KeyAgreement, k).unwrap() {
            SpecHandle::Agree(a) => a,
            other => panic!("{other:?}"),
        };
        let ab = agree(&a).derive(&b_pub.unwrap()).unwrap();
        let ba = agree(&b).derive(&a_pub.unwrap()).unwrap();
        assert_eq!(ab.expose(), ba.expose());
        let field = match spec {
            KeySpec::EccNistP256 => 32,
            KeySpec::EccNistP384 => 48,
            KeySpec::EccNistP521 => 66,
            _ => 32,
        };
        assert_eq!(ab.len(), field);
        // P-256 and SM2 keys have the same size: each is the other's wrong curve.
        let other_curve = match spec {
            KeySpec::EccNistP256 => KeySpec::Sm2,
            _ => KeySpec::EccNistP256,
        };
        let (_, wrong) = key(other_curve);
        for peer in [&b"garbage"[..], &wrong, &[]] {
            let r = agree(&a).derive(peer);
            assert!(
                matches!(r, Err(ProtectorError::InvalidInput(_))),
                "{spec}: {r:?}"
            );
        }
    }
    // A bare SEC1 point is not a SubjectPublicKeyInfo.
    let (a, a_pub) = generate(KeySpec::EccNistP256).unwrap();
    let point = &a_pub.unwrap()[26..];
    assert_eq!(point[0], 4);
    let SpecHandle::Agree(h) = load(KeySpec::EccNistP256, KeyUsageType::KeyAgreement, &a).unwrap()
    else {
        panic!()
    };
    assert!(matches!(
        h.derive(point),
        Err(ProtectorError::InvalidInput(_))
    ));
}

#[test]
fn usages_a_spec_lacks_are_unsupported_and_bad_encodings_malformed() {
    let (p256, _) = key(KeySpec::EccNistP256);
    assert!(matches!(
        load(KeySpec::EccNistP256, KeyUsageType::EncryptDecrypt, &p256),
        Err(ProtectorError::Unsupported(_))
    ));
    assert!(matches!(
        load(KeySpec::EccSecgP256k1, KeyUsageType::KeyAgreement, &p256),
        Err(ProtectorError::Unsupported(_))
    ));
    assert!(matches!(
        generate(KeySpec::SymmetricDefault),
        Err(ProtectorError::Unsupported(_))
    ));
    // The P-256 key is not a P-384 key.
    assert!(matches!(
        load(KeySpec::EccNistP384, KeyUsageType::SignVerify, &p256),
        Err(ProtectorError::MalformedMaterial)
    ));
    // An unknown format byte, and nothing at all.
    let mut other_format = p256.expose().to_vec();
    other_format[0] = 2;
    for bad in [other_format, vec![]] {
        assert!(matches!(
            load(
                KeySpec::EccNistP256,
                KeyUsageType::SignVerify,
                &Secret::new(bad)
            ),
            Err(ProtectorError::MalformedMaterial)
        ));
    }
    let (rsa2048, _) = key(KeySpec::Rsa2048);
    assert!(matches!(
        load(KeySpec::Rsa4096, KeyUsageType::SignVerify, &rsa2048),
        Err(ProtectorError::MalformedMaterial)
    ));
}

#[test]
fn data_key_pairs_are_pkcs8_and_spki() {
    for spec in DataKeyPairSpec::ALL.iter().copied() {
        let key_spec = spec.key_spec();
        if !implemented(key_spec) {
            continue;
        }
        let (private, public) = match Crypto.generate_pair(spec) {
            Ok(pair) => pair,
            Err(ProtectorError::Unsupported(_)) => continue,
            Err(e) => panic!("{spec}: {e}"),
        };
        // PKCS#8 and SPKI: DER SEQUENCEs.
        assert_eq!(private.expose()[0], 0x30, "{spec}");
        assert_eq!(public[0], 0x30, "{spec}");
        // The private key wrapped in our encoding gives the same public key
        // (for the specs whose encoding is PKCS#8).
        if matches!(
            key_spec,
            KeySpec::Rsa2048
                | KeySpec::Rsa3072
                | KeySpec::Rsa4096
                | KeySpec::EccNistP256
                | KeySpec::EccNistP384
                | KeySpec::EccNistP521
                | KeySpec::EccSecgP256k1
                | KeySpec::Sm2
        ) {
            let mut encoding = vec![FORMAT_V1];
            encoding.extend_from_slice(private.expose());
            assert_eq!(
                public_key(key_spec, &Secret::new(encoding)).unwrap(),
                Some(public),
                "{spec}"
            );
        }
    }
}

#[test]
fn ed25519_data_key_pairs_are_pkcs8_of_the_public_key() {
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    let (private, public) = Crypto
        .generate_pair(DataKeyPairSpec::EccNistEdwards25519)
        .unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(private.expose()).unwrap();
    assert!(public.ends_with(pair.public_key().as_ref()));
    assert_eq!(public.len(), 44);
}

#[test]
fn debug_output_holds_no_key_bytes() {
    let (private, _) = generate(KeySpec::Hmac256).unwrap();
    let handle = load(KeySpec::Hmac256, KeyUsageType::GenerateVerifyMac, &private).unwrap();
    assert_eq!(format!("{handle:?}"), "SpecHandle::Mac");
    assert_eq!(format!("{private:?}"), "Secret(33 bytes)");
}

fn kem(spec: KeySpec, private: &Secret) -> Box<dyn keywarden_core::protector::Decapsulator> {
    match load(spec, KeyUsageType::EncapsulateDecapsulate, private).unwrap() {
        SpecHandle::Kem(k) => k,
        other => panic!("{other:?}"),
    }
}

#[test]
fn ml_kem_round_trips_and_checks_ciphertext_length() {
    for (spec, ct_len) in [
        (KeySpec::MlKem512, 768),
        (KeySpec::MlKem768, 1088),
        (KeySpec::MlKem1024, 1568),
    ] {
        let (private, public) = key(spec);
        let (ct, shared) = Crypto.encapsulate(spec, &public).unwrap();
        assert_eq!(ct.len(), ct_len);
        assert_eq!(shared.len(), 32);
        let k = kem(spec, &private);
        assert_eq!(
            k.decapsulate(&ct).unwrap().expose(),
            shared.expose(),
            "{spec}"
        );
        // Implicit rejection: an altered ciphertext gives another secret.
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_ne!(k.decapsulate(&bad).unwrap().expose(), shared.expose());
        for wrong in [ct_len - 1, ct_len + 1, 0] {
            let r = k.decapsulate(&vec![0u8; wrong]);
            assert!(
                matches!(r, Err(ProtectorError::InvalidInput(_))),
                "{spec} {wrong}: {r:?}"
            );
        }
        // Another parameter set's public key, and garbage, are malformed.
        let other = if spec == KeySpec::MlKem768 {
            KeySpec::MlKem512
        } else {
            KeySpec::MlKem768
        };
        let (_, other_public) = key(other);
        for bad in [&other_public[..], b"garbage", &public[..public.len() - 1]] {
            let r = Crypto.encapsulate(spec, bad);
            assert!(
                matches!(r, Err(ProtectorError::MalformedMaterial)),
                "{spec}: {r:?}"
            );
        }
    }
}

/// The SPKI encodings name the NIST OIDs with absent parameters.
#[test]
fn post_quantum_spkis_carry_the_nist_oids() {
    // DER of OID 2.16.840.1.101.3.4.<arc>.<n>: 06 09 60 86 48 01 65 03 04 <arc> <n>
    for (spec, arc, n) in [
        (KeySpec::MlDsa44, 3, 17),
        (KeySpec::MlDsa65, 3, 18),
        (KeySpec::MlDsa87, 3, 19),
        (KeySpec::MlKem512, 4, 1),
        (KeySpec::MlKem768, 4, 2),
        (KeySpec::MlKem1024, 4, 3),
    ] {
        let (_, public) = key(spec);
        let algorithm_identifier = [
            0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, arc, n,
        ];
        assert!(
            public
                .windows(13)
                .take(8)
                .any(|w| w == algorithm_identifier),
            "{spec}: {}",
            hex::encode(&public[..20])
        );
    }
}

#[test]
fn ml_kem_data_key_pairs_are_seed_form_pkcs8() {
    use ml_kem::pkcs8::DecodePrivateKey;
    use ml_kem::KeyExport;
    let (private, public) = Crypto.generate_pair(DataKeyPairSpec::MlKem768).unwrap();
    let dk =
        ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_pkcs8_der(private.expose()).unwrap();
    // Seed form: the 64-byte seed inside [0] IMPLICIT OCTET STRING (80 40).
    assert!(private.expose().windows(2).any(|w| w == [0x80, 0x40]));
    let (ct, shared) = Crypto.encapsulate(KeySpec::MlKem768, &public).unwrap();
    let mut seed_encoding = vec![FORMAT_V1];
    seed_encoding.extend_from_slice(&dk.to_bytes());
    let k = kem(KeySpec::MlKem768, &Secret::new(seed_encoding));
    assert_eq!(k.decapsulate(&ct).unwrap().expose(), shared.expose());
}

/// Every spec but SYMMETRIC_DEFAULT generates, and loads for each of its
/// usages as the handle of that usage.
#[test]
fn every_spec_and_usage_loads_as_its_handle() {
    for spec in KeySpec::ALL.iter().copied() {
        if spec == KeySpec::SymmetricDefault {
            assert!(!implemented(spec));
            continue;
        }
        assert!(implemented(spec), "{spec}");
        let (private, public) = key(spec);
        assert_eq!(!public.is_empty(), spec.has_public_key(), "{spec}");
        for usage in spec.usages().iter().copied() {
            let handle = load(spec, usage, &private).unwrap();
            let ok = matches!(
                (usage, &handle),
                (KeyUsageType::SignVerify, SpecHandle::Sign(_))
                    | (KeyUsageType::GenerateVerifyMac, SpecHandle::Mac(_))
                    | (KeyUsageType::EncryptDecrypt, SpecHandle::Decrypt(_))
                    | (KeyUsageType::KeyAgreement, SpecHandle::Agree(_))
                    | (KeyUsageType::EncapsulateDecapsulate, SpecHandle::Kem(_))
            );
            assert!(ok, "{spec} {usage}: {handle:?}");
        }
        for usage in KeyUsageType::ALL.iter().copied() {
            if !spec.usages().contains(&usage) {
                assert!(matches!(
                    load(spec, usage, &private),
                    Err(ProtectorError::Unsupported(_))
                ));
            }
        }
    }
}

#[test]
fn sm2_encrypts_through_crypto_and_decrypts_through_the_handle() {
    let (private, public) = key(KeySpec::Sm2);
    let alg = EncryptionAlgorithm::Sm2Pke;
    let ct = Crypto
        .encrypt(KeySpec::Sm2, &public, alg, b"plaintext")
        .unwrap();
    let SpecHandle::Decrypt(d) =
        load(KeySpec::Sm2, KeyUsageType::EncryptDecrypt, &private).unwrap()
    else {
        panic!()
    };
    assert_eq!(d.decrypt(alg, &ct).unwrap().expose(), b"plaintext");
    // RSA algorithms are not SM2's.
    assert!(matches!(
        Crypto.encrypt(
            KeySpec::Sm2,
            &public,
            EncryptionAlgorithm::RsaesOaepSha256,
            b"p"
        ),
        Err(ProtectorError::Unsupported(_))
    ));
}
