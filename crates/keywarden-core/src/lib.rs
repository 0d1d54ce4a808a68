//! Keywarden's domain crate.
//!
//! Everything here is pure logic over the seams it defines: [`store::Store`]
//! (persistence), [`protector::KeyProtector`] (where key material lives),
//! [`clock::Clock`] and [`protector::SecureRandom`]. The crate performs no I/O
//! of its own and knows nothing about HTTP, the wire's JSON or SigV4; the
//! server crate translates the AWS wire format into the request types of
//! [`ops`]. (JSON appears here only where a stored format is JSON: the store
//! codec's metadata and policy documents, [`policy`].)
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod authz;
pub mod billing;
mod cache;
pub mod ciphertext;
pub mod clock;
pub mod context;
pub mod dump;
pub mod error;
pub mod iam;
pub mod ids;
pub mod key_spec;
pub mod kms;
mod metering;
pub mod model;
pub mod operation;
pub mod ops;
pub mod policy;
pub mod protector;
pub mod secret;
pub mod store;
pub mod store_codec;
mod usage;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use error::KmsError;
pub use kms::{Caller, Kms, KmsConfig, Page, ProductCaller, RequestFacts};
pub use operation::{Namespace, Operation, QuotaClass};
