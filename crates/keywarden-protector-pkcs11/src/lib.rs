//! Keywarden's HSM key protector: AES-256 keys generated inside a PKCS#11
//! token and used there (AES-256-GCM), through the `cryptoki` binding; and
//! RSA, ECC and HMAC keys, whose private operations (signing, OAEP
//! decryption, ECDH, HMAC) the token performs.
//!
//! The material never leaves the token (`CKA_SENSITIVE`, not
//! `CKA_EXTRACTABLE`); what Keywarden stores for a key version is only the
//! object's `CKA_ID`, bound to the key id and version. See
//! [`Pkcs11Protector`] for the connection model (session pool, lazy
//! reconnection).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod connection;
mod encoding;
mod protector;
mod spec;
mod stored;

pub use config::Pkcs11Config;
pub use protector::{OpenError, Pkcs11Protector, DEFAULT_RECONNECT_INTERVAL};
