//! The stored form of an HSM key version: a reference to the token object,
//! not a secret.
//!
//! Layout (version 1, AES keys): `0x01 || key id (16) || version (u32 BE) ||
//! nonce (8)`. Layout (version 2, keys of other specs: RSA, ECC, HMAC):
//! `0x02 || key id (16) || version (u32 BE) || spec (1) || nonce (8)`, the
//! spec byte from [`spec_code`]. Everything after the first byte is the
//! object's `CKA_ID` (for a key pair, the private key's; the public key
//! object, if any, has the same `CKA_ID`). The key id and
//! version bind the stored form to its key version (the seam's rule); the
//! random tail keeps two objects for the same binding apart: two rotations
//! racing for one version number, or an object left behind when the store's
//! commit failed after generation, must never be confused with (or deleted
//! in place of) the version that was committed.

use keywarden_core::key_spec::KeySpec;
use keywarden_core::protector::{KeyBinding, ProtectorError};

const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;
const KEY_ID_LEN: usize = 16;
const BINDING_LEN: usize = KEY_ID_LEN + 4;
/// Length of the random tail of a `CKA_ID`.
pub(crate) const NONCE_LEN: usize = 8;
/// Length of a `CKA_ID` this protector makes.
pub(crate) const OBJECT_ID_LEN: usize = BINDING_LEN + NONCE_LEN;
const STORED_LEN: usize = 1 + OBJECT_ID_LEN;
const OBJECT_ID_V2_LEN: usize = BINDING_LEN + 1 + NONCE_LEN;
const STORED_V2_LEN: usize = 1 + OBJECT_ID_V2_LEN;

/// The byte naming `spec` in a version 2 stored form; `None` for the
/// specs this protector does not keep that way. The values are stored:
/// never renumber them.
pub(crate) fn spec_code(spec: KeySpec) -> Option<u8> {
    Some(match spec {
        KeySpec::Rsa2048 => 1,
        KeySpec::Rsa3072 => 2,
        KeySpec::Rsa4096 => 3,
        KeySpec::EccNistP256 => 4,
        KeySpec::EccNistP384 => 5,
        KeySpec::EccNistP521 => 6,
        KeySpec::EccSecgP256k1 => 7,
        KeySpec::Hmac224 => 8,
        KeySpec::Hmac256 => 9,
        KeySpec::Hmac384 => 10,
        KeySpec::Hmac512 => 11,
        _ => return None,
    })
}

/// The `CKA_ID` for a new object (or key pair) of `spec` for `binding`,
/// with the random `nonce`.
pub(crate) fn spec_object_id(
    binding: KeyBinding<'_>,
    spec: KeySpec,
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, ProtectorError> {
    let code = spec_code(spec).ok_or(ProtectorError::MalformedMaterial)?;
    let mut id = Vec::with_capacity(OBJECT_ID_V2_LEN);
    id.extend_from_slice(binding.key_id.as_bytes());
    id.extend_from_slice(&binding.version.to_be_bytes());
    id.push(code);
    id.extend_from_slice(nonce);
    Ok(id)
}

/// The stored form of the object (or key pair) `object_id` of a spec.
pub(crate) fn encode_spec(object_id: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + object_id.len());
    out.push(FORMAT_V2);
    out.extend_from_slice(object_id);
    out
}

/// The `CKA_ID` inside a version 2 `stored`, if it is well formed and was
/// made for `binding` and `spec`.
pub(crate) fn decode_spec<'a>(
    binding: KeyBinding<'_>,
    spec: KeySpec,
    stored: &'a [u8],
) -> Result<&'a [u8], ProtectorError> {
    if stored.len() != STORED_V2_LEN || stored[0] != FORMAT_V2 {
        return Err(ProtectorError::MalformedMaterial);
    }
    let id = &stored[1..];
    if !bound_to(binding, id) || Some(id[BINDING_LEN]) != spec_code(spec) {
        return Err(ProtectorError::MalformedMaterial);
    }
    Ok(id)
}

/// The `CKA_ID` inside a stored form of either version made for `binding`
/// (to destroy it, whatever its spec).
pub(crate) fn decode_any<'a>(
    binding: KeyBinding<'_>,
    stored: &'a [u8],
) -> Result<&'a [u8], ProtectorError> {
    match stored.first() {
        Some(&FORMAT_V1) => decode(binding, stored),
        Some(&FORMAT_V2) if stored.len() == STORED_V2_LEN && bound_to(binding, &stored[1..]) => {
            Ok(&stored[1..])
        }
        _ => Err(ProtectorError::MalformedMaterial),
    }
}

fn bound_to(binding: KeyBinding<'_>, id: &[u8]) -> bool {
    id.len() >= BINDING_LEN
        && &id[..KEY_ID_LEN] == binding.key_id.as_bytes()
        && id[KEY_ID_LEN..BINDING_LEN] == binding.version.to_be_bytes()
}

/// The `CKA_ID` for a new object of `binding` with the random `nonce`.
pub(crate) fn object_id(binding: KeyBinding<'_>, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    let mut id = Vec::with_capacity(OBJECT_ID_LEN);
    id.extend_from_slice(binding.key_id.as_bytes());
    id.extend_from_slice(&binding.version.to_be_bytes());
    id.extend_from_slice(nonce);
    id
}

/// The stored form of the object `object_id`.
pub(crate) fn encode(object_id: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + object_id.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(object_id);
    out
}

/// The `CKA_ID` inside `stored`, if `stored` is well formed and was made
/// for `binding`.
pub(crate) fn decode<'a>(
    binding: KeyBinding<'_>,
    stored: &'a [u8],
) -> Result<&'a [u8], ProtectorError> {
    if stored.len() != STORED_LEN || stored[0] != FORMAT_V1 {
        return Err(ProtectorError::MalformedMaterial);
    }
    let id = &stored[1..];
    if !bound_to(binding, id) {
        return Err(ProtectorError::MalformedMaterial);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywarden_core::ids::KeyId;

    #[test]
    fn round_trips_and_is_bound_to_key_and_version() {
        let k1 = KeyId::from_bytes([1; 16]);
        let k2 = KeyId::from_bytes([2; 16]);
        let b = |key_id, version| KeyBinding { key_id, version };
        let stored = encode(&object_id(b(&k1, 7), &[9; NONCE_LEN]));
        assert_eq!(stored.len(), STORED_LEN);
        let id = decode(b(&k1, 7), &stored).unwrap();
        assert_eq!(&id[..16], &[1; 16]);
        assert_eq!(&id[16..20], &7u32.to_be_bytes());
        assert!(matches!(
            decode(b(&k2, 7), &stored),
            Err(ProtectorError::MalformedMaterial)
        ));
        assert!(matches!(
            decode(b(&k1, 8), &stored),
            Err(ProtectorError::MalformedMaterial)
        ));
    }

    #[test]
    fn rejects_other_formats_and_lengths() {
        let k = KeyId::from_bytes([1; 16]);
        let b = KeyBinding {
            key_id: &k,
            version: 1,
        };
        let stored = encode(&object_id(b, &[0; NONCE_LEN]));
        for cut in 0..stored.len() {
            assert!(decode(b, &stored[..cut]).is_err());
        }
        let mut longer = stored.clone();
        longer.push(0);
        assert!(decode(b, &longer).is_err());
        let mut other = stored;
        other[0] = 2;
        assert!(decode(b, &other).is_err());
    }

    #[test]
    fn version_2_is_bound_to_key_version_and_spec() {
        let k1 = KeyId::from_bytes([1; 16]);
        let k2 = KeyId::from_bytes([2; 16]);
        let b = |key_id, version| KeyBinding { key_id, version };
        let id = spec_object_id(b(&k1, 4), KeySpec::EccNistP256, &[5; NONCE_LEN]).unwrap();
        let stored = encode_spec(&id);
        assert_eq!(stored.len(), STORED_V2_LEN);
        assert_eq!(
            decode_spec(b(&k1, 4), KeySpec::EccNistP256, &stored).unwrap(),
            &id[..]
        );
        assert_eq!(decode_any(b(&k1, 4), &stored).unwrap(), &id[..]);
        for (binding, spec) in [
            (b(&k2, 4), KeySpec::EccNistP256),
            (b(&k1, 5), KeySpec::EccNistP256),
            (b(&k1, 4), KeySpec::EccNistP384),
            (b(&k1, 4), KeySpec::Rsa2048),
            (b(&k1, 4), KeySpec::MlDsa65),
        ] {
            assert!(matches!(
                decode_spec(binding, spec, &stored),
                Err(ProtectorError::MalformedMaterial)
            ));
        }
        assert!(decode_any(b(&k2, 4), &stored).is_err());
        // An AES (version 1) stored form is not a key of a spec, and the
        // other way round.
        let aes = encode(&object_id(b(&k1, 4), &[5; NONCE_LEN]));
        assert!(decode_spec(b(&k1, 4), KeySpec::EccNistP256, &aes).is_err());
        assert!(decode(b(&k1, 4), &stored).is_err());
        assert!(decode_any(b(&k1, 4), &aes).is_ok());
        for cut in 0..stored.len() {
            assert!(decode_spec(b(&k1, 4), KeySpec::EccNistP256, &stored[..cut]).is_err());
            assert!(decode_any(b(&k1, 4), &stored[..cut]).is_err());
        }
        assert!(spec_object_id(b(&k1, 4), KeySpec::MlKem768, &[0; NONCE_LEN]).is_err());
    }

    #[test]
    fn spec_codes_are_distinct() {
        let codes: Vec<u8> = KeySpec::ALL.iter().filter_map(|s| spec_code(*s)).collect();
        let mut unique = codes.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
        assert_eq!(codes.len(), 11);
    }
}
