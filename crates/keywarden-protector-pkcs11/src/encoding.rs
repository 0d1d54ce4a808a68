//! DER in and out of the token, with the `spki` crate (and the `der` crate
//! it re-exports): public keys as `SubjectPublicKeyInfo` from the token's
//! attributes, a peer's EC public key from its `SubjectPublicKeyInfo`, and
//! ECDSA signatures from the token's `r || s` to AWS's DER form.

use keywarden_core::protector::ProtectorError;
use spki::der::asn1::{AnyRef, BitString, BitStringRef, Null, OctetStringRef, UintRef};
use spki::der::{Any, Decode, Encode};
use spki::{AlgorithmIdentifier, ObjectIdentifier, SubjectPublicKeyInfo, SubjectPublicKeyInfoRef};

/// `rsaEncryption` (RFC 8017 appendix C).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// `id-ecPublicKey` (RFC 5480 §2.1.1).
pub(crate) const ID_EC_PUBLIC_KEY: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

fn der_error(_: spki::der::Error) -> ProtectorError {
    ProtectorError::Crypto("pkcs11 public key encoding")
}

/// The DER `SubjectPublicKeyInfo` of the RSA public key (`modulus`,
/// `exponent`), both big-endian as the token's `CKA_MODULUS` and
/// `CKA_PUBLIC_EXPONENT` give them: `rsaEncryption` with NULL parameters
/// around a PKCS#1 `RSAPublicKey` (RFC 8017 appendix A.1.1), which is a
/// SEQUENCE of two INTEGERs.
pub(crate) fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    let rsa_public_key = [
        UintRef::new(modulus).map_err(der_error)?,
        UintRef::new(exponent).map_err(der_error)?,
    ]
    .to_der()
    .map_err(der_error)?;
    let info = SubjectPublicKeyInfo {
        algorithm: AlgorithmIdentifier {
            oid: RSA_ENCRYPTION,
            parameters: Some(Any::encode_from(&Null).map_err(der_error)?),
        },
        subject_public_key: BitString::from_bytes(&rsa_public_key).map_err(der_error)?,
    };
    info.to_der().map_err(der_error)
}

/// The DER `SubjectPublicKeyInfo` of an EC public key on the named curve
/// `curve` (RFC 5480): `id-ecPublicKey` with the curve's OID, and the
/// uncompressed point, which `ec_point` (the token's `CKA_EC_POINT`) holds
/// inside a DER OCTET STRING (PKCS#11 v2.40 §2.3.3). Some modules give the
/// bare point; both are accepted. The point must be `1 + 2 * field_len`
/// bytes, uncompressed.
pub(crate) fn ec_spki(
    curve: ObjectIdentifier,
    field_len: usize,
    ec_point: &[u8],
) -> Result<Vec<u8>, ProtectorError> {
    let point =
        uncompressed_point(ec_point, field_len).ok_or(ProtectorError::Crypto("pkcs11 EC point"))?;
    let info = SubjectPublicKeyInfo {
        algorithm: AlgorithmIdentifier {
            oid: ID_EC_PUBLIC_KEY,
            parameters: Some(Any::encode_from(&curve).map_err(der_error)?),
        },
        subject_public_key: BitStringRef::from_bytes(point).map_err(der_error)?,
    };
    info.to_der().map_err(der_error)
}

fn uncompressed_point(ec_point: &[u8], field_len: usize) -> Option<&[u8]> {
    let want = 1 + 2 * field_len;
    let point = match <&OctetStringRef>::from_der(ec_point) {
        Ok(inner) if inner.as_bytes().len() == want => inner.as_bytes(),
        _ if ec_point.len() == want => ec_point,
        _ => return None,
    };
    (point[0] == 0x04).then_some(point)
}

/// The uncompressed point of a peer's EC public key given as DER
/// `SubjectPublicKeyInfo`, if it is one on `curve` (`id-ecPublicKey` with
/// that named curve, an uncompressed point of the curve's size). Whether
/// the point is on the curve is checked by the caller.
pub(crate) fn peer_point(
    spki_der: &[u8],
    curve: ObjectIdentifier,
    field_len: usize,
) -> Option<&[u8]> {
    let info = SubjectPublicKeyInfoRef::from_der(spki_der).ok()?;
    if info.algorithm.oid != ID_EC_PUBLIC_KEY {
        return None;
    }
    let named: ObjectIdentifier = info
        .algorithm
        .parameters
        .map(AnyRef::decode_as::<ObjectIdentifier>)?
        .ok()?;
    if named != curve {
        return None;
    }
    let point = info.subject_public_key.as_bytes()?;
    (point.len() == 1 + 2 * field_len && point[0] == 0x04).then_some(point)
}

/// `CKA_EC_PARAMS` of a named curve: the DER of its OID.
pub(crate) fn ec_params(curve: ObjectIdentifier) -> Result<Vec<u8>, ProtectorError> {
    curve.to_der().map_err(der_error)
}

/// An ECDSA signature as the token gives it (`CKM_ECDSA`: `r || s`, each
/// as long as the curve's order) in DER, as AWS KMS returns it: the
/// `ECDSA-Sig-Value` of RFC 3279 §2.2.3, a SEQUENCE of two INTEGERs.
pub(crate) fn ecdsa_der(raw: &[u8]) -> Result<Vec<u8>, ProtectorError> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return Err(ProtectorError::Crypto("pkcs11 ECDSA signature length"));
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    [
        UintRef::new(r).map_err(der_error)?,
        UintRef::new(s).map_err(der_error)?,
    ]
    .to_der()
    .map_err(der_error)
}

/// The DER `DigestInfo` prefixes of RFC 8017 §9.2, note 1: what comes
/// before the hash in an EMSA-PKCS1-v1_5 encoding (`CKM_RSA_PKCS` signs
/// `DigestInfo` as given, so a DIGEST message is wrapped here).
pub(crate) const DIGEST_INFO_SHA256: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// See [`DIGEST_INFO_SHA256`].
pub(crate) const DIGEST_INFO_SHA384: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
/// See [`DIGEST_INFO_SHA256`].
pub(crate) const DIGEST_INFO_SHA512: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

#[cfg(test)]
mod tests {
    use super::*;

    const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

    #[test]
    fn ecdsa_signature_is_a_sequence_of_minimal_integers() {
        // r has a leading zero byte (dropped), s a high bit set (a zero
        // byte is prepended so the INTEGER stays positive).
        let mut raw = vec![0u8; 64];
        raw[1] = 0x01;
        raw[32] = 0x80;
        let der = ecdsa_der(&raw).unwrap();
        assert_eq!(&der[..2], &[0x30, der.len() as u8 - 2]);
        assert_eq!(&der[2..5], &[0x02, 31, 0x01]);
        let s_at = 2 + 2 + 31;
        assert_eq!(&der[s_at..s_at + 4], &[0x02, 33, 0x00, 0x80]);
        assert!(ecdsa_der(&raw[..63]).is_err());
        assert!(ecdsa_der(&[]).is_err());
    }

    #[test]
    fn digest_info_prefixes_name_their_hash() {
        // The OID's last arc (SHA-256 = 1, SHA-384 = 2, SHA-512 = 3) and
        // the OCTET STRING length, and the total length of the SEQUENCE.
        for (prefix, arc, len) in [
            (DIGEST_INFO_SHA256, 1u8, 32u8),
            (DIGEST_INFO_SHA384, 2, 48),
            (DIGEST_INFO_SHA512, 3, 64),
        ] {
            assert_eq!(prefix[14], arc);
            assert_eq!(prefix[18], len);
            assert_eq!(prefix[1] as usize, prefix.len() - 2 + len as usize);
        }
    }

    #[test]
    fn ec_points_in_and_out() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[7u8; 64]);
        let wrapped = OctetStringRef::new(&point).unwrap().to_der().unwrap();
        let a = ec_spki(P256, 32, &wrapped).unwrap();
        let b = ec_spki(P256, 32, &point).unwrap();
        assert_eq!(a, b);
        assert_eq!(peer_point(&a, P256, 32), Some(&point[..]));
        // Another curve, another size, not an SPKI, a compressed point.
        assert_eq!(peer_point(&a, P384, 48), None);
        assert_eq!(peer_point(&a, P384, 32), None);
        assert_eq!(peer_point(&a[1..], P256, 32), None);
        assert!(ec_spki(P256, 48, &wrapped).is_err());
        let mut compressed = point.clone();
        compressed[0] = 0x02;
        assert!(ec_spki(P256, 32, &compressed).is_err());
        let rsa = rsa_spki(&[0xc5; 256], &[1, 0, 1]).unwrap();
        assert_eq!(peer_point(&rsa, P256, 32), None);
    }
}
