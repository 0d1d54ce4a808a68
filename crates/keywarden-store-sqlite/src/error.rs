//! Error plumbing: SQLite failures and decoding failures (the shared
//! codec's [`CodecError`]) become [`StoreError`]s. Messages never carry row contents.

use std::fmt;

use keywarden_core::store::StoreError;
use keywarden_core::store_codec::CodecError;
use rusqlite::ffi;

/// The error type of the blocking closures. It only exists so that `?` works
/// on `rusqlite` and `serde_json` results (neither they nor [`StoreError`]
/// belong to this crate, so `From` cannot be implemented between them).
pub(crate) struct Fail(pub(crate) StoreError);

impl Fail {
    /// Whether this is SQLite reporting a lock held by another connection.
    pub(crate) fn is_busy(&self) -> bool {
        match &self.0 {
            StoreError::Backend(e) => e.downcast_ref::<rusqlite::Error>().is_some_and(|e| {
                matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                )
            }),
            _ => false,
        }
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail(e)
    }
}

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail(classify(e))
    }
}

impl From<serde_json::Error> for Fail {
    fn from(e: serde_json::Error) -> Self {
        Fail(StoreError::Backend(Box::new(e)))
    }
}

impl From<CodecError> for Fail {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Invalid(message) => Invalid(message).into(),
            CodecError::Json(e) => e.into(),
        }
    }
}

impl From<Invalid> for Fail {
    fn from(e: Invalid) -> Self {
        Fail(StoreError::Backend(Box::new(e)))
    }
}

/// Maps SQLite errors precisely: a primary-key or unique violation means the
/// record exists already, a foreign-key violation means a referenced record is
/// missing; everything else is a backend failure.
pub(crate) fn classify(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &e {
        match failure.extended_code {
            ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_UNIQUE => {
                return StoreError::AlreadyExists
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => return StoreError::MissingReference,
            _ => {}
        }
    }
    StoreError::Backend(Box::new(e))
}

/// Stored data that does not decode, a record the store refuses to write, or
/// a database this build cannot handle. The message names the problem, never
/// the offending value.
#[derive(Debug)]
pub(crate) struct Invalid(pub(crate) String);

impl Invalid {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sqlite store: {}", self.0)
    }
}

impl std::error::Error for Invalid {}
