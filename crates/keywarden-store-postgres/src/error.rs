//! Error plumbing: PostgreSQL, pool and decoding failures become
//! [`StoreError`]s. Messages never carry row contents, and never the
//! database URL (its password): tokio-postgres's errors name neither.

use std::fmt;

use deadpool_postgres::PoolError;
use keywarden_core::store::StoreError;
use keywarden_core::store_codec::CodecError;
use tokio_postgres::error::SqlState;

/// The error type inside a transaction: a [`StoreError`], plus whether the
/// whole transaction may simply be run again (a serialization failure or a
/// deadlock, which PostgreSQL resolves by aborting one of the parties).
pub(crate) struct Fail {
    pub(crate) error: StoreError,
    pub(crate) retryable: bool,
}

impl Fail {
    /// Whether the connection it happened on is dead or suspect, and must
    /// not go back to the pool.
    pub(crate) fn is_unavailable(&self) -> bool {
        matches!(self.error, StoreError::Unavailable(_))
    }
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Fail {
            error,
            retryable: false,
        }
    }
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        classify(e)
    }
}

impl From<PoolError> for Fail {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => {
                let fail = classify(e);
                match fail.error {
                    // Whatever stopped a new connection (refused, reset,
                    // the server starting up or shutting down) is the
                    // backend being unreachable, unless the server itself
                    // refused us (authentication, unknown database).
                    StoreError::Backend(e) if e.downcast_ref::<DbRefusal>().is_none() => {
                        StoreError::Unavailable(e).into()
                    }
                    error => error.into(),
                }
            }
            PoolError::Timeout(_) | PoolError::Closed => {
                StoreError::Unavailable(Box::new(e)).into()
            }
            other => StoreError::Backend(Box::new(other)).into(),
        }
    }
}

impl From<CodecError> for Fail {
    fn from(e: CodecError) -> Self {
        StoreError::Backend(Box::new(e)).into()
    }
}

impl From<Invalid> for Fail {
    fn from(e: Invalid) -> Self {
        StoreError::Backend(Box::new(e)).into()
    }
}

/// A server's answer that is about us, not about its reachability.
#[derive(Debug)]
struct DbRefusal(tokio_postgres::Error);

impl fmt::Display for DbRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for DbRefusal {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Maps PostgreSQL errors precisely: unique violations mean the record
/// exists, foreign-key violations a missing reference; serialization
/// failures and deadlocks may be retried; connection failures (I/O, a
/// closed connection, SQLSTATE class 08, the server shutting down or
/// starting) mean the backend is unavailable; everything else is a backend
/// failure.
pub(crate) fn classify(e: tokio_postgres::Error) -> Fail {
    if let Some(code) = e.code() {
        let code = code.clone();
        if code == SqlState::UNIQUE_VIOLATION {
            return StoreError::AlreadyExists.into();
        }
        if code == SqlState::FOREIGN_KEY_VIOLATION {
            return StoreError::MissingReference.into();
        }
        if code == SqlState::T_R_SERIALIZATION_FAILURE || code == SqlState::T_R_DEADLOCK_DETECTED {
            return Fail {
                error: StoreError::Backend(Box::new(e)),
                retryable: true,
            };
        }
        // Also waits cut short by the session's lock and statement
        // timeouts (a lock held by a node that vanished mid-transaction),
        // a server out of connections or resources (class 53), and a
        // read-only server (a proxy still routing to a demoted primary):
        // all retryable later, and the connection is not reused.
        if code.code().starts_with("08")
            || code.code().starts_with("53")
            || code == SqlState::ADMIN_SHUTDOWN
            || code == SqlState::CRASH_SHUTDOWN
            || code == SqlState::CANNOT_CONNECT_NOW
            || code == SqlState::LOCK_NOT_AVAILABLE
            || code == SqlState::QUERY_CANCELED
            || code == SqlState::READ_ONLY_SQL_TRANSACTION
            || code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        {
            return StoreError::Unavailable(Box::new(e)).into();
        }
        return StoreError::Backend(Box::new(DbRefusal(e))).into();
    }
    let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
    if e.is_closed() || io {
        return StoreError::Unavailable(Box::new(e)).into();
    }
    StoreError::Backend(Box::new(e)).into()
}

/// Stored data that does not decode, a record the store refuses to write, or
/// a database this build cannot handle. The message names the problem, never
/// the offending value.
#[derive(Debug)]
pub(crate) struct Invalid(String);

impl Invalid {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres store: {}", self.0)
    }
}

impl std::error::Error for Invalid {}
