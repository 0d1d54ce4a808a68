//! DER `SubjectPublicKeyInfo` (RFC 5280) parsing with the `spki` crate.

use spki::der::Decode;
use spki::SubjectPublicKeyInfoRef;

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
