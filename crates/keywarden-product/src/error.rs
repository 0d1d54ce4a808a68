//! The crate's one error type.
//!
//! No variant carries key material, plaintext or credentials: the server's
//! error messages name keys and accounts, never bytes of data.

use std::fmt;

/// Why a malformed envelope was refused by [`crate::Envelope::from_bytes`].
///
/// Parsing never panics; each refusal names the first rule the input broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The input does not start with the envelope magic `KWEV`.
    #[error("not a Keywarden envelope (bad magic)")]
    BadMagic,
    /// The version byte names a format this library does not know.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u8),
    /// The input ended inside the named field.
    #[error("envelope truncated in {0}")]
    Truncated(&'static str),
    /// Bytes follow the last field.
    #[error("{0} trailing bytes after the envelope")]
    TrailingBytes(usize),
    /// A length field is outside the limits in the format description.
    #[error("envelope field {0} has an invalid length")]
    BadLength(&'static str),
    /// A text field (key ARN, context key or value) is not UTF-8.
    #[error("envelope field {0} is not UTF-8")]
    NotUtf8(&'static str),
    /// Context keys are not strictly ascending (unsorted or duplicated), so
    /// the encoding would not be canonical.
    #[error("encryption context keys are not strictly ascending")]
    ContextNotCanonical,
    /// The key ARN is not `arn:<partition>:kms:<region>:<account>:<resource>`.
    #[error("envelope key ARN is malformed")]
    BadKeyArn,
}

/// Everything that can go wrong while sealing or opening.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Keywarden answered with an AWS error (`AccessDeniedException`,
    /// `DisabledException`, `KMSInvalidStateException`,
    /// `NotFoundException`, `InvalidCiphertextException`, ...). `code` and
    /// `message` are the server's, unchanged.
    #[error("{operation}: {code}{}{}", MessageSuffix(.message), RequestIdSuffix(.request_id))]
    Kms {
        /// `GenerateDataKey` or `Decrypt`.
        operation: &'static str,
        /// The AWS error code (`__type`).
        code: String,
        /// The server's message.
        message: String,
        /// The `x-amzn-RequestId` of the failed request, for the operator's log.
        request_id: Option<String>,
    },
    /// The request did not get an AWS error answer: connection refused,
    /// timeout, TLS failure, an unparseable response.
    #[error("{operation}: no answer from Keywarden: {detail}")]
    Transport {
        /// `GenerateDataKey` or `Decrypt`.
        operation: &'static str,
        /// The SDK's error chain (it holds no credentials or data).
        detail: String,
    },
    /// The server's answer lacks a field or has one of the wrong shape.
    #[error("{operation}: unexpected response from Keywarden: {problem}")]
    BadResponse {
        /// `GenerateDataKey` or `Decrypt`.
        operation: &'static str,
        /// What was wrong (no bytes of the response).
        problem: &'static str,
    },
    /// The serialized envelope is malformed.
    #[error("malformed envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The data did not decrypt: the envelope was modified or its data key
    /// does not belong to it. No further reason is given, by design.
    #[error("the object failed authentication (tampered or not sealed with this data key)")]
    Authentication,
    /// The plaintext exceeds [`crate::MAX_PLAINTEXT_LEN`].
    #[error("object of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The plaintext size offered.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The encryption context breaks a limit (see [`crate::Context`] rules).
    #[error("invalid encryption context: {0}")]
    InvalidContext(&'static str),
    /// An account id or key ARN given by the caller is malformed, or a key
    /// ARN names another account than the one the call is for.
    #[error("invalid key or account: {0}")]
    InvalidKey(String),
    /// The envelope was sealed for another account than the caller expects.
    #[error("object was sealed for account {found}, not {expected}")]
    WrongAccount {
        /// The account the caller asked for.
        expected: String,
        /// The account the envelope's key ARN names.
        found: String,
    },
    /// The envelope's encryption context differs from the one the caller
    /// expects (e.g. a file renamed or copied to another object's place).
    #[error("object's encryption context does not match the expected one")]
    ContextMismatch,
    /// The product configuration is incomplete or malformed.
    #[error("invalid product configuration: {0}")]
    Config(&'static str),
    /// The blocking encryption task did not complete (the runtime shut down).
    #[error("encryption task was cancelled")]
    Cancelled,
}

/// `: message` unless the message is empty (AWS sends
/// `InvalidCiphertextException` without one).
struct MessageSuffix<'a>(&'a str);

impl fmt::Display for MessageSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            "" => Ok(()),
            m => write!(f, ": {m}"),
        }
    }
}

/// ` (request id X)` when there is one.
struct RequestIdSuffix<'a>(&'a Option<String>);

impl fmt::Display for RequestIdSuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (request id {id})"),
            None => Ok(()),
        }
    }
}

impl Error {
    /// The AWS error code when Keywarden answered with one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Kms { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_errors_show_code_message_and_request_id() {
        let e = Error::Kms {
            operation: "Decrypt",
            code: "InvalidCiphertextException".to_owned(),
            message: String::new(),
            request_id: Some("r-1".to_owned()),
        };
        assert_eq!(
            e.to_string(),
            "Decrypt: InvalidCiphertextException (request id r-1)"
        );
        assert_eq!(e.aws_code(), Some("InvalidCiphertextException"));
        let e = Error::Kms {
            operation: "GenerateDataKey",
            code: "AccessDeniedException".to_owned(),
            message: "product zos is disabled".to_owned(),
            request_id: None,
        };
        assert_eq!(
            e.to_string(),
            "GenerateDataKey: AccessDeniedException: product zos is disabled"
        );
    }
}
