//! Encryption context: string pairs authenticated (not encrypted) with a
//! ciphertext. The canonical form sorts pairs by key bytes, so the order a
//! caller sends them in never matters.

use std::collections::BTreeMap;

use crate::error::KmsError;

/// Largest canonical encryption context accepted, in bytes.
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// An encryption context. Keys are unique; iteration is in canonical order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionContext(BTreeMap<String, String>);

impl EncryptionContext {
    /// Builds a context from pairs, checking the size limit.
    pub fn new(pairs: BTreeMap<String, String>) -> Result<Self, KmsError> {
        let ctx = EncryptionContext(pairs);
        if ctx.canonical_len() > MAX_CONTEXT_BYTES {
            return Err(KmsError::Validation(format!(
                "Encryption context exceeds the limit of {MAX_CONTEXT_BYTES} bytes"
            )));
        }
        Ok(ctx)
    }

    /// The empty context.
    pub fn empty() -> Self {
        EncryptionContext(BTreeMap::new())
    }

    /// The pairs in canonical order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn canonical_len(&self) -> usize {
        2 + self
            .0
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>()
    }

    /// Appends the canonical encoding: a big-endian u16 pair count, then for
    /// each pair in key order a u16 length and the UTF-8 bytes of the key,
    /// and a u16 length and the bytes of the value.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        // `new` bounds the total size, so every length fits in a u16.
        out.extend_from_slice(&(self.0.len() as u16).to_be_bytes());
        for (k, v) in &self.0 {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        EncryptionContext::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn order_does_not_matter() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        ctx(&[("b", "2"), ("a", "1")]).write_canonical(&mut a);
        ctx(&[("a", "1"), ("b", "2")]).write_canonical(&mut b);
        assert_eq!(a, b);
        assert_eq!(a, [0, 2, 0, 1, b'a', 0, 1, b'1', 0, 1, b'b', 0, 1, b'2']);
    }

    #[test]
    fn pair_boundaries_are_unambiguous() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        ctx(&[("ab", "c")]).write_canonical(&mut a);
        ctx(&[("a", "bc")]).write_canonical(&mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn oversized_context_is_refused() {
        let big: BTreeMap<String, String> =
            [("k".to_string(), "v".repeat(MAX_CONTEXT_BYTES))].into();
        assert!(matches!(
            EncryptionContext::new(big),
            Err(KmsError::Validation(_))
        ));
    }
}
