//! Envelope encryption in the AWS Encryption SDK message format, version 2,
//! with the key-committing algorithm suites (`docs/envelope.md`).
//!
//! Layers, bottom-up:
//! - [`suite`]: the two algorithm suites and their parameters;
//! - [`message`]: the message format (header, frames, footer), parsing and
//!   serialisation, no I/O policy;
//! - [`stream`]: streaming encryption and decryption over `std::io` with
//!   constant memory, given materials (non-framed messages, read only, are
//!   held whole up to a limit);
//! - [`materials`]: where materials come from: the [`Keyring`] trait (data
//!   keys), the [`MaterialsManager`] trait (a keyring plus the signing key of
//!   signed suites), [`DefaultMaterialsManager`];
//! - keyrings: [`raw_aes::RawAesKeyring`] (the specification's raw AES
//!   keyring, for test vectors and offline use), [`kms::KmsKeyring`] (data keys
//!   from Keywarden's GenerateDataKey/Decrypt);
//! - [`cache`]: a caching materials manager for high-volume callers.
//!
//! The entry points are [`encrypt`] and [`decrypt`] (streaming) and
//! [`encrypt_to_vec`] and [`decrypt_to_vec`] (in memory).

#![forbid(unsafe_code)]

pub mod cache;
pub mod error;
mod keys;
#[cfg(feature = "kms")]
pub mod kms;
pub mod materials;
pub mod message;
pub mod raw_aes;
pub mod stream;
pub mod suite;

pub use error::Error;
pub use materials::{
    DecryptionMaterials, DecryptionRequest, DefaultMaterialsManager, EncryptedDataKey,
    EncryptionContext, EncryptionMaterials, EncryptionRequest, Keyring, MaterialsManager,
    SigningKey,
};
pub use raw_aes::RawAesKeyring;
pub use stream::{
    decrypt, decrypt_to_vec, encrypt, encrypt_to_vec, DecryptOptions, EncryptOptions, MessageInfo,
};
pub use suite::AlgorithmSuite;
