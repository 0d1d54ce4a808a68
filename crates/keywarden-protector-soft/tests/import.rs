//! Imported key material (BYOK): round trips with the exact bytes an AWS
//! client sends, known-answer vectors from an independent implementation
//! (`tests/vectors/make_import_vectors.py`, Python `cryptography`), and the
//! failure cases of `ImportKeyMaterial`.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::key_wrap::{AesKek, KeyWrapPadded as _, AES_256};
use aws_lc_rs::rand::SecureRandom as _;
use aws_lc_rs::rsa::{
    KeySize, OaepPublicEncryptingKey, PrivateDecryptingKey, PublicEncryptingKey,
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
};
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::KeyId;
use keywarden_protector_soft::{
    ImportError, ImportParameters, Importer, RootKey, WrappingAlgorithm, WrappingKeySpec,
    MAX_IMPORT_TOKEN_LEN,
};
use proptest::prelude::*;
use serde::Deserialize;

const NOW: UnixMillis = UnixMillis(1_750_000_000_000);

fn importer() -> Importer {
    Importer::new(Arc::new(RootKey::from_bytes(&[0x42; 32])))
}

fn key_a() -> KeyId {
    KeyId::from_bytes([0xa1; 16])
}

fn random(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut v).unwrap();
    v
}

/// `EncryptedKeyMaterial` exactly as an AWS client makes it from the
/// `PublicKey` of `GetParametersForImport`.
fn aws_client_encrypt(public_key_der: &[u8], alg: WrappingAlgorithm, material: &[u8]) -> Vec<u8> {
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_key_der).unwrap())
            .unwrap();
    let oaep = match alg {
        WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaAesKeyWrapSha1 => {
            &OAEP_SHA1_MGF1SHA1
        }
        WrappingAlgorithm::RsaesOaepSha256 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            &OAEP_SHA256_MGF1SHA256
        }
    };
    let rsa = |msg: &[u8]| {
        let mut out = vec![0u8; public.ciphertext_size()];
        let len = public.encrypt(oaep, msg, &mut out, None).unwrap().len();
        out.truncate(len);
        out
    };
    match alg {
        WrappingAlgorithm::RsaesOaepSha1 | WrappingAlgorithm::RsaesOaepSha256 => rsa(material),
        WrappingAlgorithm::RsaAesKeyWrapSha1 | WrappingAlgorithm::RsaAesKeyWrapSha256 => {
            let k = random(32);
            let mut wrapped = vec![0u8; material.len() + 15];
            let len = AesKek::new(&AES_256, &k)
                .unwrap()
                .wrap_with_padding(material, &mut wrapped)
                .unwrap()
                .len();
            wrapped.truncate(len);
            let mut out = rsa(&k);
            assert_eq!(out.len(), public.key_size_bytes());
            out.extend_from_slice(&wrapped);
            out
        }
    }
}

/// A PKCS#8 RSA-2048 key generated once per test binary, and a second one.
fn pkcs8_2048(which: usize) -> &'static [u8] {
    static KEYS: OnceLock<[Vec<u8>; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let gen = || {
            PrivateDecryptingKey::generate(KeySize::Rsa2048)
                .unwrap()
                .as_der()
                .unwrap()
                .as_ref()
                .to_vec()
        };
        [gen(), gen()]
    });
    &keys[which]
}

fn params_2048(key_id: &KeyId, alg: WrappingAlgorithm, which: usize) -> ImportParameters {
    importer()
        .parameters_for_private_key(key_id, alg, pkcs8_2048(which), NOW.plus_days(1))
        .unwrap()
}

#[test]
fn round_trip_every_algorithm_and_key_size() {
    let imp = importer();
    let key_id = key_a();
    let check = |spec: WrappingKeySpec, alg: WrappingAlgorithm, p: &ImportParameters| {
        let public = PublicEncryptingKey::from_der(&p.public_key_der).unwrap();
        assert_eq!(public.key_size_bits(), spec.bits(), "{spec} {alg}");
        assert!(
            p.import_token.len() <= MAX_IMPORT_TOKEN_LEN,
            "{spec}: token of {} bytes",
            p.import_token.len()
        );
        let material = random(32);
        let encrypted = aws_client_encrypt(&p.public_key_der, alg, &material);
        let expected_len = spec.bits() / 8
            + if alg.as_str().contains("KEY_WRAP") {
                40
            } else {
                0
            };
        assert_eq!(encrypted.len(), expected_len, "{spec} {alg}");
        let got = imp
            .unwrap_material(&key_id, &p.import_token, &encrypted, NOW)
            .unwrap_or_else(|e| panic!("{spec} {alg}: {e}"));
        assert_eq!(got.expose(), &material[..], "{spec} {alg}");
    };

    // RSA-2048 and RSA-3072: a fresh key pair from `parameters` for every algorithm.
    for spec in [WrappingKeySpec::Rsa2048, WrappingKeySpec::Rsa3072] {
        for alg in WrappingAlgorithm::ALL {
            let p = imp.parameters(&key_id, alg, spec, NOW).unwrap();
            assert_eq!(p.valid_to, NOW.plus_days(1));
            check(spec, alg, &p);
        }
    }

    // RSA-4096 (slow to generate): one key pair from `parameters`, and one
    // more generated here and sealed into a token for every algorithm.
    let alg = WrappingAlgorithm::RsaAesKeyWrapSha256;
    let p = imp
        .parameters(&key_id, alg, WrappingKeySpec::Rsa4096, NOW)
        .unwrap();
    check(WrappingKeySpec::Rsa4096, alg, &p);
    let pkcs8 = PrivateDecryptingKey::generate(KeySize::Rsa4096)
        .unwrap()
        .as_der()
        .unwrap()
        .as_ref()
        .to_vec();
    for alg in WrappingAlgorithm::ALL {
        let p = imp
            .parameters_for_private_key(&key_id, alg, &pkcs8, NOW.plus_days(1))
            .unwrap();
        check(WrappingKeySpec::Rsa4096, alg, &p);
    }
}

#[derive(Deserialize)]
struct Vectors {
    keys: Vec<VectorKey>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct VectorKey {
    key_spec: String,
    private_key_pkcs8: String,
    public_key_der: String,
}

#[derive(Deserialize)]
struct Case {
    description: String,
    key_spec: String,
    wrapping_algorithm: String,
    material: String,
    encrypted_key_material: String,
    result: String,
}

#[test]
fn unwraps_vectors_from_an_independent_implementation() {
    let v: Vectors =
        serde_json::from_str(include_str!("vectors/import-v1.json")).expect("import-v1.json");
    let imp = importer();
    let key_id = key_a();
    assert_eq!(v.keys.len(), 3);
    let mut checked = 0;
    for c in &v.cases {
        let key = v.keys.iter().find(|k| k.key_spec == c.key_spec).unwrap();
        let spec = WrappingKeySpec::parse(&key.key_spec).unwrap();
        let alg = WrappingAlgorithm::parse(&c.wrapping_algorithm).unwrap();
        let p = imp
            .parameters_for_private_key(
                &key_id,
                alg,
                &hex::decode(&key.private_key_pkcs8).unwrap(),
                NOW.plus_days(1),
            )
            .unwrap();
        // Same SubjectPublicKeyInfo encoding as Python/OpenSSL.
        assert_eq!(hex::encode(&p.public_key_der), key.public_key_der, "{spec}");
        let got = imp.unwrap_material(
            &key_id,
            &p.import_token,
            &hex::decode(&c.encrypted_key_material).unwrap(),
            NOW,
        );
        let what = format!("{spec} {alg}: {}", c.description);
        match (c.result.as_str(), got) {
            ("ok", Ok(m)) => assert_eq!(hex::encode(m.expose()), c.material, "{what}"),
            ("IncorrectKeyMaterial", Err(ImportError::IncorrectKeyMaterial)) => {}
            ("InvalidCiphertext", Err(ImportError::InvalidCiphertext)) => {}
            (want, got) => panic!("{what}: want {want}, got {got:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 25, "{checked}");
}

#[test]
fn a_token_issued_for_another_key_is_invalid() {
    let imp = importer();
    let alg = WrappingAlgorithm::RsaesOaepSha256;
    let p = params_2048(&key_a(), alg, 0);
    let ct = aws_client_encrypt(&p.public_key_der, alg, &[1; 32]);
    let key_b = KeyId::from_bytes([0xb2; 16]);
    assert!(matches!(
        imp.unwrap_material(&key_b, &p.import_token, &ct, NOW),
        Err(ImportError::InvalidToken)
    ));
    // Wrong key takes precedence over expiry: nothing in the token is
    // believed before it authenticates.
    assert!(matches!(
        imp.unwrap_material(&key_b, &p.import_token, &ct, NOW.plus_days(9)),
        Err(ImportError::InvalidToken)
    ));
    assert!(imp
        .unwrap_material(&key_a(), &p.import_token, &ct, NOW)
        .is_ok());
}

#[test]
fn a_token_expires_24_hours_after_issue() {
    let imp = importer();
    let alg = WrappingAlgorithm::RsaAesKeyWrapSha1;
    let p = imp
        .parameters(&key_a(), alg, WrappingKeySpec::Rsa2048, NOW)
        .unwrap();
    assert_eq!(p.valid_to, UnixMillis(NOW.0 + UnixMillis::DAY));
    let ct = aws_client_encrypt(&p.public_key_der, alg, &[2; 32]);
    let at = |t: UnixMillis| imp.unwrap_material(&key_a(), &p.import_token, &ct, t);
    assert!(at(p.valid_to).is_ok(), "valid up to and including valid_to");
    assert!(matches!(
        at(UnixMillis(p.valid_to.0 + 1)),
        Err(ImportError::ExpiredToken)
    ));
    assert!(matches!(
        at(UnixMillis(i64::MAX)),
        Err(ImportError::ExpiredToken)
    ));
    // An instant near the end of time does not overflow.
    let late = imp
        .parameters_for_private_key(&key_a(), alg, pkcs8_2048(0), UnixMillis(i64::MAX))
        .unwrap();
    assert_eq!(late.valid_to, UnixMillis(i64::MAX));
}

#[test]
fn a_token_works_more_than_once_and_earlier_tokens_stay_valid() {
    let imp = importer();
    let alg = WrappingAlgorithm::RsaesOaepSha1;
    let first = params_2048(&key_a(), alg, 0);
    let second = params_2048(&key_a(), alg, 1);
    for p in [&first, &second, &first] {
        let material = random(32);
        let ct = aws_client_encrypt(&p.public_key_der, alg, &material);
        let got = imp
            .unwrap_material(&key_a(), &p.import_token, &ct, NOW)
            .unwrap();
        assert_eq!(got.expose(), &material[..]);
    }
}

#[test]
fn every_flipped_token_byte_is_an_invalid_token() {
    let imp = importer();
    let alg = WrappingAlgorithm::RsaAesKeyWrapSha256;
    let p = params_2048(&key_a(), alg, 0);
    let ct = aws_client_encrypt(&p.public_key_der, alg, &[3; 32]);
    for i in 0..p.import_token.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut t = p.import_token.clone();
            t[i] ^= mask;
            assert!(
                matches!(
                    imp.unwrap_material(&key_a(), &t, &ct, NOW),
                    Err(ImportError::InvalidToken)
                ),
                "byte {i} ^ {mask:#x} not rejected as InvalidToken"
            );
        }
    }
}

#[test]
fn truncated_or_extended_tokens_are_invalid() {
    let imp = importer();
    let alg = WrappingAlgorithm::RsaesOaepSha256;
    let p = params_2048(&key_a(), alg, 0);
    let ct = aws_client_encrypt(&p.public_key_der, alg, &[4; 32]);
    for len in 0..p.import_token.len() {
        assert!(
            matches!(
                imp.unwrap_material(&key_a(), &p.import_token[..len], &ct, NOW),
                Err(ImportError::InvalidToken)
            ),
            "prefix of {len} bytes"
        );
    }
    let mut longer = p.import_token.clone();
    longer.push(0);
    assert!(matches!(
        imp.unwrap_material(&key_a(), &longer, &ct, NOW),
        Err(ImportError::InvalidToken)
    ));
}

#[test]
fn material_encrypted_under_another_key_pair_is_invalid_ciphertext() {
    let imp = importer();
    for alg in WrappingAlgorithm::ALL {
        let ours = params_2048(&key_a(), alg, 0);
        let theirs = params_2048(&key_a(), alg, 1);
        let ct = aws_client_encrypt(&theirs.public_key_der, alg, &[5; 32]);
        assert!(
            matches!(
                imp.unwrap_material(&key_a(), &ours.import_token, &ct, NOW),
                Err(ImportError::InvalidCiphertext)
            ),
            "{alg}"
        );
    }
}

#[test]
fn material_encrypted_for_another_algorithm_is_invalid_ciphertext() {
    let imp = importer();
    for token_alg in WrappingAlgorithm::ALL {
        let p = params_2048(&key_a(), token_alg, 0);
        for client_alg in WrappingAlgorithm::ALL {
            if client_alg == token_alg {
                continue;
            }
            let ct = aws_client_encrypt(&p.public_key_der, client_alg, &[6; 32]);
            assert!(
                matches!(
                    imp.unwrap_material(&key_a(), &p.import_token, &ct, NOW),
                    Err(ImportError::InvalidCiphertext)
                ),
                "token {token_alg}, client {client_alg}"
            );
        }
    }
}

#[test]
fn every_flipped_byte_of_encrypted_material_is_invalid_ciphertext() {
    let imp = importer();
    for alg in WrappingAlgorithm::ALL {
        let p = params_2048(&key_a(), alg, 0);
        let ct = aws_client_encrypt(&p.public_key_der, alg, &[7; 32]);
        for i in 0..ct.len() {
            let mut c = ct.clone();
            c[i] ^= 0x01;
            assert!(
                matches!(
                    imp.unwrap_material(&key_a(), &p.import_token, &c, NOW),
                    Err(ImportError::InvalidCiphertext)
                ),
                "{alg}: flip at {i}"
            );
        }
    }
}

#[test]
fn material_that_is_not_32_bytes_is_incorrect_key_material() {
    let imp = importer();
    for alg in WrappingAlgorithm::ALL {
        let p = params_2048(&key_a(), alg, 0);
        for len in [1, 16, 31, 33, 48, 64] {
            let ct = aws_client_encrypt(&p.public_key_der, alg, &random(len));
            assert!(
                matches!(
                    imp.unwrap_material(&key_a(), &p.import_token, &ct, NOW),
                    Err(ImportError::IncorrectKeyMaterial)
                ),
                "{alg}: {len} bytes"
            );
        }
    }
    // Empty material: RSA-OAEP can carry it; key wrap with padding cannot.
    let p = params_2048(&key_a(), WrappingAlgorithm::RsaesOaepSha256, 0);
    let ct = aws_client_encrypt(&p.public_key_der, WrappingAlgorithm::RsaesOaepSha256, &[]);
    assert!(matches!(
        imp.unwrap_material(&key_a(), &p.import_token, &ct, NOW),
        Err(ImportError::IncorrectKeyMaterial)
    ));
}

#[test]
fn empty_odd_and_huge_inputs_are_rejected_without_panicking() {
    let imp = importer();
    let huge = vec![0x5a; 1 << 20];
    for alg in WrappingAlgorithm::ALL {
        let p = params_2048(&key_a(), alg, 0);
        let good = aws_client_encrypt(&p.public_key_der, alg, &[8; 32]);
        for token in [&[][..], &[1u8][..], &[1u8; 11][..], &huge[..]] {
            assert!(matches!(
                imp.unwrap_material(&key_a(), token, &good, NOW),
                Err(ImportError::InvalidToken)
            ));
        }
        let n = good.len();
        let mut longer = good.clone();
        longer.push(0);
        let mut misaligned = good.clone();
        misaligned.extend_from_slice(&[0; 7]);
        let mut bad_inputs: Vec<&[u8]> = vec![
            &[],
            &[0],
            &good[..255],
            &good[..n - 1],
            &longer,
            &misaligned,
            &huge[..n],
            &huge,
        ];
        let rsa_and_short_wrap = [&good[..256], &[0u8; 8][..]].concat();
        if n > 256 {
            // The RSA part alone, with one byte or with a wrap too short for KWP.
            bad_inputs.extend([&good[..256], &good[..257], &rsa_and_short_wrap[..]]);
        }
        for ct in bad_inputs {
            assert!(
                matches!(
                    imp.unwrap_material(&key_a(), &p.import_token, ct, NOW),
                    Err(ImportError::InvalidCiphertext)
                ),
                "{alg}: {} bytes",
                ct.len()
            );
        }
    }
}

#[test]
fn the_4096_bit_token_is_within_the_aws_limit() {
    // Largest key AWS offers; the token is the sealed PKCS#8 plus 40 bytes.
    let pkcs8 = include_str!("vectors/import-v1.json");
    let v: Vectors = serde_json::from_str(pkcs8).unwrap();
    let key = v.keys.iter().find(|k| k.key_spec == "RSA_4096").unwrap();
    let p = importer()
        .parameters_for_private_key(
            &key_a(),
            WrappingAlgorithm::RsaAesKeyWrapSha256,
            &hex::decode(&key.private_key_pkcs8).unwrap(),
            NOW,
        )
        .unwrap();
    assert!(p.import_token.len() <= MAX_IMPORT_TOKEN_LEN);
    assert!(p.import_token.len() < 2500, "{}", p.import_token.len());
}

#[test]
fn debug_output_holds_no_bytes() {
    let imp = importer();
    let p = params_2048(&key_a(), WrappingAlgorithm::RsaesOaepSha1, 0);
    let shown = format!("{p:?}");
    assert_eq!(
        shown,
        format!(
            "ImportParameters {{ public_key_der: \"{} bytes\", import_token: \"{} bytes\", valid_to: UnixMillis({}) }}",
            p.public_key_der.len(),
            p.import_token.len(),
            p.valid_to.0
        )
        .replace('"', "")
    );
    assert_eq!(format!("{imp:?}"), "Importer(..)");
    let ct = aws_client_encrypt(
        &p.public_key_der,
        WrappingAlgorithm::RsaesOaepSha1,
        &[9; 32],
    );
    let material = imp
        .unwrap_material(&key_a(), &p.import_token, &ct, NOW)
        .unwrap();
    assert_eq!(format!("{material:?}"), "Secret(32 bytes)");
    for e in [
        ImportError::InvalidToken,
        ImportError::ExpiredToken,
        ImportError::InvalidCiphertext,
        ImportError::IncorrectKeyMaterial,
        ImportError::Crypto("x"),
    ] {
        assert!(!e.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_tokens_are_invalid(token in proptest::collection::vec(any::<u8>(), 0..3000),
                                    header in proptest::collection::vec(any::<u8>(), 11)) {
        let imp = importer();
        let ct = [0u8; 256];
        prop_assert!(matches!(
            imp.unwrap_material(&key_a(), &token, &ct, NOW),
            Err(ImportError::InvalidToken)
        ));
        // A well-formed header followed by junk.
        let mut t = vec![1u8, 1 + header[0] % 4, 1 + header[1] % 3];
        t.extend_from_slice(&header[3..]);
        t.extend_from_slice(&token);
        prop_assert!(matches!(
            imp.unwrap_material(&key_a(), &t, &ct, NOW),
            Err(ImportError::InvalidToken)
        ));
    }

    #[test]
    fn arbitrary_encrypted_material_is_invalid_ciphertext(
        alg in 0usize..4,
        ct in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..700),
            proptest::collection::vec(any::<u8>(), 256..=256),
            proptest::collection::vec(any::<u8>(), 296..=296),
        ],
    ) {
        let alg = WrappingAlgorithm::ALL[alg];
        let p = params_2048(&key_a(), alg, 0);
        prop_assert!(matches!(
            importer().unwrap_material(&key_a(), &p.import_token, &ct, NOW),
            Err(ImportError::InvalidCiphertext)
        ));
    }
}
