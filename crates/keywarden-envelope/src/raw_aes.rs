//! The raw AES keyring (to be implemented).
