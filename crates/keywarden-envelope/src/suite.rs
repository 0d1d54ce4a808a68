//! The algorithm suites: the two key-committing suites of message format
//! version 2.

/// An algorithm suite of message format version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlgorithmSuite {
    /// `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY`, id 0x0478: AES-256-GCM,
    /// HKDF-SHA512 key derivation with key commitment, no signature.
    Aes256GcmHkdfSha512CommitKey,
    /// `ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384`, id 0x0578: as
    /// above plus an ECDSA P-384 signature over the whole message, the
    /// public key in the encryption context (`aws-crypto-public-key`). The
    /// official SDKs' default.
    Aes256GcmHkdfSha512CommitKeyEcdsaP384,
}

impl AlgorithmSuite {
    /// The suite's two-byte id.
    pub fn id(self) -> u16 {
        match self {
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKey => 0x0478,
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384 => 0x0578,
        }
    }

    /// The suite with this id, if it is one of the two.
    pub fn from_id(id: u16) -> Option<AlgorithmSuite> {
        match id {
            0x0478 => Some(AlgorithmSuite::Aes256GcmHkdfSha512CommitKey),
            0x0578 => Some(AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384),
            _ => None,
        }
    }

    /// The AWS name.
    pub fn name(self) -> &'static str {
        match self {
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKey => {
                "ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY"
            }
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384 => {
                "ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384"
            }
        }
    }

    /// Whether messages carry an ECDSA P-384 footer signature.
    pub fn is_signed(self) -> bool {
        matches!(self, AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
    }

    /// Length of the data key (the HKDF input key material), in bytes.
    pub fn data_key_len(self) -> usize {
        32
    }

    /// Length of the algorithm suite data in the header (the commitment
    /// key), in bytes.
    pub fn suite_data_len(self) -> usize {
        32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_refused() {
        for suite in [
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
            AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
        ] {
            assert_eq!(AlgorithmSuite::from_id(suite.id()), Some(suite));
        }
        // The version-1 suites (no key commitment) are not ours.
        for id in [0x0014, 0x0078, 0x0178, 0x0378, 0x0000, 0xffff] {
            assert_eq!(AlgorithmSuite::from_id(id), None);
        }
    }
}
