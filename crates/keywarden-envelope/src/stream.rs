//! Streaming encryption and decryption (to be implemented).

use std::io::{Read, Write};

use crate::error::Error;
use crate::materials::{EncryptedDataKey, EncryptionContext, MaterialsManager};
use crate::suite::AlgorithmSuite;

/// Options of [`encrypt`].
#[derive(Debug, Clone)]
pub struct EncryptOptions {
    /// The suite; default the signed one, like the official SDKs.
    pub suite: AlgorithmSuite,
    /// Plaintext bytes per frame (1 to 2^32 - 1); default 4096.
    pub frame_length: u32,
    /// The plaintext length if known (passed to the materials manager).
    pub plaintext_length: Option<u64>,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        EncryptOptions {
            suite: AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384,
            frame_length: 4096,
            plaintext_length: None,
        }
    }
}

/// Options of [`decrypt`].
#[derive(Debug, Clone, Default)]
pub struct DecryptOptions {
    /// Refuse messages with more encrypted data keys than this (before any
    /// key is decrypted); `None`: no limit.
    pub max_encrypted_data_keys: Option<usize>,
    /// Refuse messages whose encryption context lacks any of these pairs
    /// (checked before any plaintext is written).
    pub required_context: EncryptionContext,
}

/// What a message held, besides its plaintext.
#[derive(Debug, Clone)]
pub struct MessageInfo {
    /// Its suite.
    pub suite: AlgorithmSuite,
    /// Its 32-byte message id.
    pub message_id: [u8; 32],
    /// Its encryption context as stored (including reserved keys).
    pub context: EncryptionContext,
    /// Its encrypted data keys.
    pub encrypted_data_keys: Vec<EncryptedDataKey>,
    /// Its frame length.
    pub frame_length: u32,
    /// Plaintext bytes processed.
    pub plaintext_length: u64,
}

/// Encrypts `input` into one message written to `output`.
pub async fn encrypt<R: Read + Send, W: Write + Send>(
    _materials: &dyn MaterialsManager,
    _context: &EncryptionContext,
    _options: &EncryptOptions,
    _input: R,
    _output: W,
) -> Result<MessageInfo, Error> {
    Err(Error::Config("not implemented yet".into()))
}

/// Decrypts one message from `input` into `output`.
pub async fn decrypt<R: Read + Send, W: Write + Send>(
    _materials: &dyn MaterialsManager,
    _options: &DecryptOptions,
    _input: R,
    _output: W,
) -> Result<MessageInfo, Error> {
    Err(Error::Config("not implemented yet".into()))
}
