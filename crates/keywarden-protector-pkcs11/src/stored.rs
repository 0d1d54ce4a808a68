//! The stored form of an HSM key version: a reference to the token object,
//! not a secret.
//!
//! Layout (version 1): `0x01 || key id (16) || version (u32 BE) || nonce (8)`.
//! Everything after the first byte is the object's `CKA_ID`. The key id and
//! version bind the stored form to its key version (the seam's rule); the
//! random tail keeps two objects for the same binding apart: two rotations
//! racing for one version number, or an object left behind when the store's
//! commit failed after generation, must never be confused with (or deleted
//! in place of) the version that was committed.

use keywarden_core::protector::{KeyBinding, ProtectorError};

const FORMAT_V1: u8 = 1;
const KEY_ID_LEN: usize = 16;
const BINDING_LEN: usize = KEY_ID_LEN + 4;
/// Length of the random tail of a `CKA_ID`.
pub(crate) const NONCE_LEN: usize = 8;
/// Length of a `CKA_ID` this protector makes.
pub(crate) const OBJECT_ID_LEN: usize = BINDING_LEN + NONCE_LEN;
const STORED_LEN: usize = 1 + OBJECT_ID_LEN;

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
    if &id[..KEY_ID_LEN] != binding.key_id.as_bytes()
        || id[KEY_ID_LEN..BINDING_LEN] != binding.version.to_be_bytes()
    {
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
}
