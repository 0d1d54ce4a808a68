//! Errors. Messages never contain key material or plaintext.

/// Everything that can go wrong encrypting or decrypting a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message is not well-formed (truncated, bad lengths, unknown
    /// version or suite, trailing bytes). Says where, never shows data.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// An authentication check failed: the key commitment, the header
    /// authentication tag, a frame's tag, or the signature. The message was
    /// altered, or the data key is not the message's.
    #[error("authentication failed: {0}")]
    Authentication(&'static str),
    /// The message has more encrypted data keys than allowed.
    #[error("the message has {found} encrypted data keys, more than the {max} allowed")]
    TooManyEncryptedDataKeys {
        /// How many the header lists.
        found: usize,
        /// The configured limit.
        max: usize,
    },
    /// A non-framed message declares more content than
    /// `DecryptOptions::max_non_framed_length` (or than this platform can
    /// address). Its plaintext is only released after its single tag (and
    /// signature) verified, so it is held in memory; the message is refused
    /// as soon as the length is read, before any room is made for it.
    #[error(
        "the non-framed message declares {length} bytes of content, more than the {max} allowed"
    )]
    NonFramedTooLong {
        /// The declared content length.
        length: u64,
        /// The configured limit.
        max: u64,
    },
    /// The encryption context is not usable: a reserved key
    /// (`aws-crypto-...`) given by the caller, or it does not match what
    /// the caller required.
    #[error("encryption context: {0}")]
    Context(String),
    /// No keyring key could decrypt any of the message's encrypted data
    /// keys (or none was allowed in strict mode). Carries the reasons per
    /// key, without secrets.
    #[error("no encrypted data key could be decrypted: {0}")]
    NoDecryptableKey(String),
    /// The keyring or key service failed (e.g. an AWS error from Keywarden:
    /// code and message are kept).
    #[error("key provider: {0}")]
    KeyProvider(String),
    /// Invalid options (frame length 0, unsupported suite, ...).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A cryptographic primitive failed where it cannot fail on valid
    /// inputs (key generation, HKDF, sealing). Names the operation only.
    #[error("internal cryptographic failure: {0}")]
    Internal(&'static str),
    /// Reading the input or writing the output failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
