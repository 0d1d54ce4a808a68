//! The root of trust and the software key protector.
//!
//! [`RootKey`] is the 256-bit key at the top of the hierarchy. It wraps the
//! material of every software key version ([`SoftwareProtector`]) and seals
//! credential secrets ([`keywarden_core::protector::SecretSealer`]). It comes
//! from a file created with mode 0600 on first start ([`RootKey::load_or_create`]).
//!
//! [`Importer`] is the cryptography of imported key material (BYOK,
//! `GetParametersForImport` / `ImportKeyMaterial`): RSA wrapping key pairs
//! whose private keys travel sealed under the root key inside the import
//! token, and RSA-OAEP / RSA + AES key wrap (RFC 5649) unwrapping.
//!
//! All symmetric sealing is aws-lc-rs AES-256-GCM with random 96-bit nonces.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod import;
mod key_importer;
mod root;
mod soft;

pub use import::{
    ImportError, ImportParameters, Importer, WrappingAlgorithm, WrappingKeySpec,
    IMPORTED_MATERIAL_LEN, IMPORT_PARAMETERS_VALIDITY_MILLIS, MAX_ENCRYPTED_KEY_MATERIAL_LEN,
    MAX_IMPORT_TOKEN_LEN,
};
pub use key_importer::SoftKeyImporter;
pub use root::{RootKey, RootKeyError};
pub use soft::{SoftwareProtector, SystemRandom, SOFTWARE_PROTECTOR_ID};
