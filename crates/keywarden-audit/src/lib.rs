//! The audit log (docs/audit.md): one JSON line per API request, also
//! refused and unauthenticated ones, in a keyed hash chain.
//!
//! Each record carries `seq` and `mac` = HMAC-SHA256(audit key, previous
//! mac || the record's canonical bytes). The canonical bytes are the
//! record's JSON without `mac`, as serde serialises [`Record`] (field order
//! fixed by the struct); the writer produces the same bytes from an
//! [`Entry`] in one pass and splices the mac in. The audit key is 32 random
//! bytes sealed under the root key (`audit.key` in the data dir), so whoever edits the file cannot
//! recompute the chain without the root key. A head file (`<path>.head`:
//! seq and mac of the last durable record, replaced atomically) lets
//! [`verify`] detect a truncated tail.
//!
//! Requests hand records to a bounded channel ([`AuditLog::record`] waits
//! when it is full); a background task ([`AuditWriter`]) writes them in
//! batches (append, `fdatasync`, then the head). While a write fails,
//! [`AuditLog::is_failing`] is true and the server refuses API requests
//! (fail closed); the writer retries every 100 ms.
//!
//! The crate knows no HTTP: the server (`keywarden-server`) fills in
//! [`Facts`] and an [`Outcome`] per request, and `keywarden admin audit`
//! verifies and queries the file without linking the request path.
//!
//! Where things are: `record.rs` the schema (what a line holds and how an
//! [`Entry`] becomes its canonical bytes), `chain.rs` the [`AuditKey`], the
//! [`Chain`] and the head file, `sink.rs` the file (one writer, torn tails,
//! durable appends), `writer.rs` the channel and the background task,
//! `verify.rs` and `query.rs` the readers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod chain;
mod error;
mod query;
mod record;
mod sink;
mod verify;
mod writer;

#[cfg(test)]
mod test_support;

pub use chain::{head_path, AuditKey, Chain};
pub use error::AuditError;
pub use query::Query;
pub use record::{Entry, Facts, Outcome, Record};
pub use verify::{verify, Problem, ProblemKind, Verified};
pub use writer::{AuditConfig, AuditLog, AuditWriter};
