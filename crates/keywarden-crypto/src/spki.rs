//! DER `SubjectPublicKeyInfo` (RFC 5280) parsing with the `spki` crate.

use spki::der::Decode;
use spki::{ObjectIdentifier, SubjectPublicKeyInfoRef};

/// The input is not a single well-formed `SubjectPublicKeyInfo`, or not the
/// expected algorithm.
#[derive(Debug)]
pub(crate) struct NotSpki;

/// Checks that `der` is exactly one DER `SubjectPublicKeyInfo`.
pub(crate) fn check(der: &[u8]) -> Result<(), NotSpki> {
    SubjectPublicKeyInfoRef::from_der(der)
        .map(|_| ())
        .map_err(|_| NotSpki)
}

/// The key bits of a `SubjectPublicKeyInfo` whose algorithm is `oid` with
/// absent parameters (the encoding of Ed25519, ML-DSA and ML-KEM keys).
pub(crate) fn key_bits(der: &[u8], oid: ObjectIdentifier) -> Result<&[u8], NotSpki> {
    let info = SubjectPublicKeyInfoRef::from_der(der).map_err(|_| NotSpki)?;
    if info.algorithm.oid != oid || info.algorithm.parameters.is_some() {
        return Err(NotSpki);
    }
    info.subject_public_key.as_bytes().ok_or(NotSpki)
}
