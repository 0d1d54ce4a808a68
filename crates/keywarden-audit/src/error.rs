//! The crate's one error type: what can keep the audit log from starting.
//! Failures while running are not errors to a caller: the log turns failing
//! and the server refuses requests until a write succeeds.

use std::path::PathBuf;

use keywarden_core::protector::ProtectorError;

/// Why the audit key could not be loaded or created, or the audit file
/// not be opened for writing.
///
/// The cause is part of each message rather than a `source`: the messages
/// are what the operator has always read on `keywarden serve` and
/// `keywarden admin audit verify`, and the CLI prints a source chain after
/// the message, which would say the cause twice.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The system's random generator failed (creating the audit key).
    #[error("no randomness")]
    Randomness,
    /// The root of trust could not seal a new audit key.
    #[error("sealing the audit key: {error}")]
    SealKey {
        /// What the sealer said.
        error: ProtectorError,
    },
    /// A new audit key could not be written.
    #[error("writing the audit key {}: {error}", path.display())]
    WriteKey {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        error: std::io::Error,
    },
    /// The audit key file could not be read.
    #[error("reading the audit key {}: {error}", path.display())]
    ReadKey {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        error: std::io::Error,
    },
    /// The audit key does not unseal: another root key, or an altered file.
    #[error("the audit key {} does not open with this root key", path.display())]
    WrongRootKey {
        /// The key file.
        path: PathBuf,
    },
    /// Another process holds the audit file: each needs its own.
    #[error("audit file {}: {error}", path.display())]
    FileInUse {
        /// The audit file.
        path: PathBuf,
        /// The refusal, with the advice to give each node its own path.
        error: std::io::Error,
    },
}
