//! The benchmark key's spec (`--key-spec`): the usage it is created with,
//! the algorithm Sign or GenerateMac requests name, and which operations of
//! the mix a key of that spec can serve.

use anyhow::{bail, Result};
use keywarden_core::key_spec::{KeySpec, KeyUsageType, MacAlgorithm, SigningAlgorithm};

use crate::mix::{Mix, Op};

/// Bytes of the message every Sign and GenerateMac request carries (and the
/// raw measurement signs): a realistic small document or token, rather
/// than a bare 32-byte digest, hashed by the server (`MessageType` RAW).
pub const MESSAGE_BYTES: usize = 256;

/// `--key-spec`'s parser: an AWS KeySpec name.
pub fn parse_key_spec(s: &str) -> Result<KeySpec, String> {
    KeySpec::parse(s.trim()).ok_or_else(|| {
        format!(
            "unknown key spec {s:?} (e.g. SYMMETRIC_DEFAULT, ECC_NIST_P256, RSA_2048, ML_DSA_65, HMAC_256)"
        )
    })
}

/// The usage the bench creates a key of `spec` with: GENERATE_VERIFY_MAC for
/// HMAC, SIGN_VERIFY for every spec that can sign, ENCRYPT_DECRYPT for
/// SYMMETRIC_DEFAULT; `None` for specs the bench has no operation for.
pub fn key_usage(spec: KeySpec) -> Option<KeyUsageType> {
    let usages = spec.usages();
    [
        KeyUsageType::GenerateVerifyMac,
        KeyUsageType::SignVerify,
        KeyUsageType::EncryptDecrypt,
    ]
    .into_iter()
    .find(|u| usages.contains(u))
    .filter(|u| *u != KeyUsageType::EncryptDecrypt || spec.is_symmetric_default())
}

/// The algorithm Sign uses with a key of `spec`: the first AWS lists
/// (ECDSA_SHA_256 for ECC_NIST_P256, RSASSA_PSS_SHA_256 for RSA,
/// ML_DSA_SHAKE_256 for ML-DSA).
pub fn signing_algorithm(spec: KeySpec) -> Option<SigningAlgorithm> {
    spec.signing_algorithms(KeyUsageType::SignVerify)
        .first()
        .copied()
}

/// The algorithm GenerateMac uses with a key of `spec` (HMAC_SHA_256 for
/// HMAC_256).
pub fn mac_algorithm(spec: KeySpec) -> Option<MacAlgorithm> {
    spec.mac_algorithms().first().copied()
}

/// Refuses a mix that a key of `spec` cannot serve, with what to change.
pub fn check_mix(spec: KeySpec, mix: &Mix) -> Result<()> {
    let Some(usage) = key_usage(spec) else {
        bail!("--key-spec {spec}: the bench has no operation for keys of this spec (it signs with SIGN_VERIFY keys and MACs with HMAC keys)");
    };
    for &(op, _) in mix.entries() {
        let fits = match op {
            Op::DescribeKey => true,
            Op::GenerateDataKey
            | Op::GenerateDataKeyWithoutPlaintext
            | Op::Encrypt
            | Op::Decrypt => spec.is_symmetric_default(),
            Op::Sign => usage == KeyUsageType::SignVerify,
            Op::GenerateMac => usage == KeyUsageType::GenerateVerifyMac,
        };
        if !fits {
            let wants = match op {
                Op::Sign => "a SIGN_VERIFY key: --key-spec ECC_NIST_P256, RSA_2048, ML_DSA_65, ...",
                Op::GenerateMac => "an HMAC key: --key-spec HMAC_256 (or HMAC_224/384/512)",
                _ => "a SYMMETRIC_DEFAULT key (the default --key-spec)",
            };
            bail!(
                "the mix has {op}, which a {spec} key ({usage}) cannot do: {op} needs {wants}; use one --key-spec per run"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, mix: &str) -> Result<()> {
        check_mix(parse_key_spec(spec).unwrap(), &mix.parse().unwrap())
    }

    #[test]
    fn usages_and_algorithms() {
        let spec = |s: &str| parse_key_spec(s).unwrap();
        assert_eq!(
            key_usage(spec("SYMMETRIC_DEFAULT")),
            Some(KeyUsageType::EncryptDecrypt)
        );
        for s in ["ECC_NIST_P256", "RSA_2048", "ML_DSA_65", "SM2"] {
            assert_eq!(key_usage(spec(s)), Some(KeyUsageType::SignVerify), "{s}");
        }
        assert_eq!(
            key_usage(spec("HMAC_256")),
            Some(KeyUsageType::GenerateVerifyMac)
        );
        assert_eq!(key_usage(spec("ML_KEM_768")), None);
        let alg = |s: &str| signing_algorithm(spec(s)).map(SigningAlgorithm::as_str);
        assert_eq!(alg("ECC_NIST_P256"), Some("ECDSA_SHA_256"));
        assert_eq!(alg("RSA_2048"), Some("RSASSA_PSS_SHA_256"));
        assert_eq!(alg("ML_DSA_65"), Some("ML_DSA_SHAKE_256"));
        assert_eq!(alg("HMAC_256"), None);
        assert_eq!(
            mac_algorithm(spec("HMAC_256")).map(MacAlgorithm::as_str),
            Some("HMAC_SHA_256")
        );
        assert_eq!(mac_algorithm(spec("RSA_2048")), None);
        assert!(parse_key_spec("ECC_NIST_P257").is_err());
        assert!(parse_key_spec(" RSA_2048 ").is_ok());
    }

    #[test]
    fn refuses_mixes_the_key_cannot_serve() {
        check(
            "SYMMETRIC_DEFAULT",
            "GenerateDataKey=1,Decrypt=1,DescribeKey=1",
        )
        .unwrap();
        check("ECC_NIST_P256", "Sign=1,DescribeKey=1").unwrap();
        check("RSA_2048", "Sign=1").unwrap();
        check("ML_DSA_65", "Sign=1").unwrap();
        check("HMAC_256", "GenerateMac=1").unwrap();

        let err = |spec: &str, mix: &str| check(spec, mix).unwrap_err().to_string();
        let e = err("SYMMETRIC_DEFAULT", "Sign=1");
        assert!(
            e.contains("the mix has Sign") && e.contains("--key-spec ECC_NIST_P256"),
            "{e}"
        );
        let e = err("ECC_NIST_P256", "GenerateMac=1");
        assert!(e.contains("--key-spec HMAC_256"), "{e}");
        let e = err("HMAC_256", "Sign=1");
        assert!(e.contains("SIGN_VERIFY"), "{e}");
        let e = err("RSA_2048", "Sign=1,GenerateDataKey=1");
        assert!(
            e.contains("GenerateDataKey") && e.contains("SYMMETRIC_DEFAULT"),
            "{e}"
        );
        let e = err("ML_KEM_768", "DescribeKey=1");
        assert!(e.contains("no operation for keys of this spec"), "{e}");
        // Sign and GenerateMac need keys of different specs.
        assert!(check("HMAC_256", "Sign=1,GenerateMac=1").is_err());
        assert!(check("ECC_NIST_P256", "Sign=1,GenerateMac=1").is_err());
    }
}
