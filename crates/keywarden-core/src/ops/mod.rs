//! One module per KMS operation, named after it (`Decrypt` is in
//! `decrypt.rs`). Each adds an inherent method to [`crate::Kms`] taking and
//! returning domain types; the server crate does the wire translation.

pub mod accounts;
pub mod cancel_key_deletion;
pub mod create_alias;
pub mod create_key;
pub mod decrypt;
pub mod delete_alias;
pub mod describe_key;
pub mod disable_key;
pub mod enable_key;
pub mod encrypt;
pub mod execute_deletions;
pub mod generate_data_key;
pub mod generate_random;
pub mod list_aliases;
pub mod list_keys;
pub mod list_resource_tags;
pub mod re_encrypt;
pub mod schedule_key_deletion;
pub mod tag_resource;
pub mod untag_resource;
pub mod update_alias;
pub mod update_key_description;
