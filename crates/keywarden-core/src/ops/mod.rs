//! One module per KMS operation, named after it (`Decrypt` is in
//! `decrypt.rs`). Each adds an inherent method to [`crate::Kms`] taking and
//! returning domain types; the server crate does the wire translation.
//! Besides the AWS operations: the Keywarden extensions
//! (`enable_key_deletion_protection`, `disable_key_deletion_protection`),
//! the operator's `accounts` and `products`, and the executors the server runs
//! periodically (`execute_deletions`, `execute_rotations`,
//! `execute_material_expirations`) and the flush of recorded key usage
//! (`flush_key_usage`).

pub mod accounts;
pub mod asymmetric;
pub mod billing;
pub mod cancel_key_deletion;
pub mod check;
pub mod connect_custom_key_store;
pub mod create_alias;
pub mod create_custom_key_store;
pub mod create_key;
pub mod custom_key_stores;
pub mod decrypt;
pub mod default_key;
pub mod delete_alias;
pub mod delete_custom_key_store;
pub mod delete_imported_key_material;
pub mod describe_key;
pub mod disable_key;
pub mod disable_key_deletion_protection;
pub mod disable_key_rotation;
pub mod disconnect_custom_key_store;
pub mod enable_key;
pub mod enable_key_deletion_protection;
pub mod enable_key_rotation;
pub mod encrypt;
pub mod execute_deletions;
pub mod execute_material_expirations;
pub mod execute_rotations;
pub mod flush_key_usage;
pub mod generate_data_key;
pub mod generate_random;
pub mod get_key_last_usage;
pub mod get_key_policy;
pub mod get_key_rotation_status;
pub mod get_parameters_for_import;
pub mod grants;
pub mod iam;
pub mod import_key_material;
pub mod keyrings;
pub mod list_aliases;
pub mod list_key_policies;
pub mod list_key_rotations;
pub mod list_keys;
pub mod list_resource_tags;
pub mod products;
pub mod put_key_policy;
pub mod re_encrypt;
pub mod replicate_key;
pub mod rotate_key_on_demand;
pub mod schedule_key_deletion;
pub mod sessions;
pub mod tag_resource;
pub mod untag_resource;
pub mod update_alias;
pub mod update_custom_key_store;
pub mod update_key_description;
pub mod update_primary_region;
