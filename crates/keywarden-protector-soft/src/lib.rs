//! The root of trust and the software key protector.
//!
//! [`RootKey`] is the 256-bit key at the top of the hierarchy. It wraps the
//! material of every software key version ([`SoftwareProtector`]) and seals
//! credential secrets ([`keywarden_core::protector::SecretSealer`]). It comes
//! from a file created with mode 0600 on first start ([`RootKey::load_or_create`]).
//!
//! All cryptography is aws-lc-rs AES-256-GCM with random 96-bit nonces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod root;
mod soft;

pub use root::{RootKey, RootKeyError};
pub use soft::{SoftwareProtector, SystemRandom, SOFTWARE_PROTECTOR_ID};
