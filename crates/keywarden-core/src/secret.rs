//! Types that hold secrets: DEK plaintext, decrypted data, credential secrets.
//!
//! None of them derives `Debug`, `Clone`, `PartialEq` or `Serialize`; their
//! `Debug` prints the length only, and their bytes are zeroized on drop.

use std::fmt;

use zeroize::Zeroizing;

/// Secret bytes: plaintext a caller handed us or that we hand back.
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Takes ownership of `bytes`; they are zeroized when the secret drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(Zeroizing::new(bytes))
    }

    /// A secret of `len` zero bytes, to be filled in place.
    pub fn zeroed(len: usize) -> Self {
        Secret(Zeroizing::new(vec![0u8; len]))
    }

    /// The secret bytes. Keep the borrow short.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Mutable access, for filling a buffer made by [`Secret::zeroed`].
    pub fn expose_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_bytes() {
        let s = Secret::new(b"hunter2-super-secret".to_vec());
        let shown = format!("{s:?}");
        assert_eq!(shown, "Secret(20 bytes)");
        assert!(!shown.contains("hunter2"));
    }
}
