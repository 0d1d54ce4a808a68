//! One handler per operation: decode the request shape, validate it the way
//! AWS does, call the domain, encode the typed response shape. Handlers live
//! in one file per family, mirroring `keywarden-core/src/ops/`; [`run`] is
//! the one exhaustive `match` from [`Operation`] (keywarden-core's table of
//! operations) to handler, so an operation without a handler does not
//! compile. [`dispatch`] and [`dispatch_extension`] take a target's name
//! after the namespace's dot.
//!
//! Response structs list their fields in alphabetical order: that is the
//! order the bodies had when they were built as JSON maps, so answers stay
//! byte-identical (JSON does not make order significant, but logs and
//! golden files do).

use keywarden_core::ids::KeyRef;
use keywarden_core::{Caller, Kms, KmsError, Namespace, Operation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::wire::{decode, encode, key_ref, required, Blob};

mod account;
mod aliases;
mod asymmetric;
mod crypto;
mod data_keys;
mod grants;
mod import;
mod key_policies;
mod keyrings;
mod keys;
mod rotation;
mod stores;
mod tags;

pub(crate) use crypto::{decode_decrypt_request, encode_decrypt_response};
pub(crate) use data_keys::{decode_data_key_request, encode_data_key_response};

/// Runs AWS operation `op` (the target suffix after `TrentService.`) for
/// `caller` on a JSON body; returns the JSON response. Extension operation
/// names are unknown here.
pub async fn dispatch(
    kms: &Kms,
    caller: &Caller,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match Operation::from_target(Namespace::Trent, op) {
        Some(operation) => run(kms, caller, operation, body).await,
        None => Err(unknown_operation(op)),
    }
}

/// Runs Keywarden extension operation `op` (the target suffix after
/// `KeywardenService.`); AWS operation names are unknown here.
pub async fn dispatch_extension(
    kms: &Kms,
    caller: &Caller,
    op: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    match Operation::from_target(Namespace::Keywarden, op) {
        Some(operation) => run(kms, caller, operation, body).await,
        None => Err(unknown_operation(op)),
    }
}

/// Runs `operation` for `caller` on a JSON body; returns the JSON response.
pub async fn run(
    kms: &Kms,
    caller: &Caller,
    operation: Operation,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    use Operation as Op;
    kms.authorize_operation(caller, operation).await?;
    match operation {
        Op::Encrypt => crypto::encrypt(kms, caller, body).await,
        Op::Decrypt => crypto::decrypt(kms, caller, body).await,
        Op::ReEncrypt => crypto::re_encrypt(kms, caller, body).await,
        Op::GenerateDataKey => data_keys::generate_data_key(kms, caller, body, true).await,
        Op::GenerateDataKeyWithoutPlaintext => {
            data_keys::generate_data_key(kms, caller, body, false).await
        }
        Op::GenerateRandom => data_keys::generate_random(kms, caller, body).await,
        Op::Sign => asymmetric::sign(kms, caller, body).await,
        Op::Verify => asymmetric::verify(kms, caller, body).await,
        Op::GetPublicKey => asymmetric::get_public_key(kms, caller, body).await,
        Op::GenerateMac => asymmetric::generate_mac(kms, caller, body).await,
        Op::VerifyMac => asymmetric::verify_mac(kms, caller, body).await,
        Op::GenerateDataKeyPair => {
            asymmetric::generate_data_key_pair(kms, caller, body, true).await
        }
        Op::GenerateDataKeyPairWithoutPlaintext => {
            asymmetric::generate_data_key_pair(kms, caller, body, false).await
        }
        Op::DeriveSharedSecret => asymmetric::derive_shared_secret(kms, caller, body).await,
        Op::Encapsulate => asymmetric::encapsulate(kms, caller, body).await,
        Op::Decapsulate => asymmetric::decapsulate(kms, caller, body).await,
        Op::CreateKey => keys::create_key(kms, caller, body).await,
        Op::DescribeKey => keys::describe_key(kms, caller, body).await,
        Op::ListKeys => keys::list_keys(kms, caller, body).await,
        Op::UpdateKeyDescription => keys::update_key_description(kms, caller, body).await,
        Op::EnableKey => keys::enable_key(kms, caller, body).await,
        Op::DisableKey => keys::disable_key(kms, caller, body).await,
        Op::ScheduleKeyDeletion => keys::schedule_key_deletion(kms, caller, body).await,
        Op::CancelKeyDeletion => keys::cancel_key_deletion(kms, caller, body).await,
        Op::GetKeyLastUsage => keys::get_key_last_usage(kms, caller, body).await,
        Op::ReplicateKey => keys::replicate_key(kms, caller, body).await,
        Op::UpdatePrimaryRegion => keys::update_primary_region(kms, caller, body).await,
        Op::EnableKeyDeletionProtection => {
            keys::enable_key_deletion_protection(kms, caller, body).await
        }
        Op::DisableKeyDeletionProtection => {
            keys::disable_key_deletion_protection(kms, caller, body).await
        }
        Op::CreateAlias => aliases::create_alias(kms, caller, body).await,
        Op::UpdateAlias => aliases::update_alias(kms, caller, body).await,
        Op::DeleteAlias => aliases::delete_alias(kms, caller, body).await,
        Op::ListAliases => aliases::list_aliases(kms, caller, body).await,
        Op::TagResource => tags::tag_resource(kms, caller, body).await,
        Op::UntagResource => tags::untag_resource(kms, caller, body).await,
        Op::ListResourceTags => tags::list_resource_tags(kms, caller, body).await,
        Op::GetKeyPolicy => key_policies::get_key_policy(kms, caller, body).await,
        Op::PutKeyPolicy => key_policies::put_key_policy(kms, caller, body).await,
        Op::ListKeyPolicies => key_policies::list_key_policies(kms, caller, body).await,
        Op::EnableKeyRotation => rotation::enable_key_rotation(kms, caller, body).await,
        Op::DisableKeyRotation => rotation::disable_key_rotation(kms, caller, body).await,
        Op::GetKeyRotationStatus => rotation::get_key_rotation_status(kms, caller, body).await,
        Op::RotateKeyOnDemand => rotation::rotate_key_on_demand(kms, caller, body).await,
        Op::ListKeyRotations => rotation::list_key_rotations(kms, caller, body).await,
        Op::GetParametersForImport => import::get_parameters_for_import(kms, caller, body).await,
        Op::ImportKeyMaterial => import::import_key_material(kms, caller, body).await,
        Op::DeleteImportedKeyMaterial => {
            import::delete_imported_key_material(kms, caller, body).await
        }
        Op::CreateGrant => grants::create_grant(kms, caller, body).await,
        Op::ListGrants => grants::list_grants(kms, caller, body).await,
        Op::ListRetirableGrants => grants::list_retirable_grants(kms, caller, body).await,
        Op::RetireGrant => grants::retire_grant(kms, caller, body).await,
        Op::RevokeGrant => grants::revoke_grant(kms, caller, body).await,
        Op::CreateKeyring => keyrings::create_keyring(kms, caller, body).await,
        Op::DescribeKeyring => keyrings::describe_keyring(kms, caller, body).await,
        Op::ListKeyrings => keyrings::list_keyrings(kms, caller, body).await,
        Op::RotateKeyringKey => keyrings::rotate_keyring_key(kms, caller, body).await,
        Op::CreateKeyringToken => keyrings::create_keyring_token(kms, caller, body).await,
        Op::RevokeKeyringToken => keyrings::revoke_keyring_token(kms, caller, body).await,
        Op::DeleteKeyring => keyrings::delete_keyring(kms, caller, body).await,
        Op::DescribeCustomKeyStores => stores::describe_custom_key_stores(kms, caller, body).await,
        Op::CreateCustomKeyStore => stores::create_custom_key_store(kms, caller, body).await,
        Op::ConnectCustomKeyStore => stores::connect_custom_key_store(kms, caller, body).await,
        Op::DisconnectCustomKeyStore => {
            stores::disconnect_custom_key_store(kms, caller, body).await
        }
        Op::UpdateCustomKeyStore => stores::update_custom_key_store(kms, caller, body).await,
        Op::DeleteCustomKeyStore => stores::delete_custom_key_store(kms, caller, body).await,
        Op::GetAccountBalance => account::get_account_balance(kms, caller, body).await,
    }
}

/// The answer to a target name its namespace does not have.
pub(crate) fn unknown_operation(op: &str) -> ApiError {
    ApiError::UnknownOperation(format!(
        "Operation {} is not supported",
        keywarden_core::ids::truncate_for_message(op)
    ))
}

/// The body of operations whose AWS output shape has no members.
const EMPTY: &[u8] = b"{}";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdOnly {
    key_id: Option<String>,
}

/// The `KeyId` of a request whose only member is `KeyId`.
fn key_id_only(body: &[u8]) -> Result<KeyRef, ApiError> {
    let req: KeyIdOnly = decode(body)?;
    key_ref(&required(req.key_id, "keyId")?)
}

/// The members of the paginated listings that take a key.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListIn {
    key_id: Option<String>,
    limit: Option<i64>,
    marker: Option<String>,
}

/// `{"KeyId": <key ARN>}`, the whole answer of several key operations.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyIdOut {
    key_id: String,
}

/// Encodes `{"KeyId": arn}`.
fn key_id_response(arn: String) -> Vec<u8> {
    encode(&KeyIdOut { key_id: arn })
}

fn refuse_recipient(recipient: Option<&serde_json::Value>) -> Result<(), ApiError> {
    if recipient.is_some() {
        return Err(KmsError::Unsupported(
            "Recipient (attested enclave requests) is not supported".into(),
        )
        .into());
    }
    Ok(())
}

fn check_blob(blob: &Blob, field: &str) -> Result<(), ApiError> {
    if blob.0.is_empty() || blob.0.len() > 6144 {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between 1 and 6144"
        ))
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keywarden_core::clock::SystemClock;
    use keywarden_core::kms::KmsParts;
    use keywarden_core::KmsConfig;
    use keywarden_protector_soft::{RootKey, SoftwareProtector, SystemRandom};
    use keywarden_store_sqlite::SqliteStore;
    use serde_json::json;

    use super::*;

    async fn service(dir: &std::path::Path) -> (Kms, Caller) {
        let root = Arc::new(RootKey::from_bytes(&[3u8; 32]));
        let kms = Kms::new(KmsParts {
            store: Arc::new(SqliteStore::open(&dir.join("k.db")).unwrap()),
            software_protector: Arc::new(SoftwareProtector::new(root.clone())),
            sealer: root,
            random: Arc::new(SystemRandom::new()),
            clock: Arc::new(SystemClock),
            config: KmsConfig::default(),
        });
        let issued = kms.create_account("handlers").await.unwrap();
        let caller = Caller {
            product: None,
            account_id: issued.account_id,
            principal: issued.access_key_id,
            identity: keywarden_core::kms::Identity::Root,
            request_id: String::new(),
            facts: Default::default(),
            region: None,
        };
        (kms, caller)
    }

    fn is_unknown(r: &Result<Vec<u8>, ApiError>) -> bool {
        matches!(r, Err(ApiError::UnknownOperation(_)))
    }

    /// Every listed operation is served in its own namespace and unknown in
    /// the other one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_namespace_serves_exactly_its_operations() {
        let dir = tempfile::tempdir().unwrap();
        let (kms, caller) = service(dir.path()).await;
        for op in Operation::ALL {
            let name = op.wire_name();
            let (served, other) = match op.namespace() {
                Namespace::Trent => (
                    dispatch(&kms, &caller, name, b"{}").await,
                    dispatch_extension(&kms, &caller, name, b"{}").await,
                ),
                Namespace::Keywarden => (
                    dispatch_extension(&kms, &caller, name, b"{}").await,
                    dispatch(&kms, &caller, name, b"{}").await,
                ),
            };
            assert!(!is_unknown(&served), "{op} must be served");
            assert!(is_unknown(&other), "{name} must be unknown outside {op}");
        }
        let err = dispatch(&kms, &caller, "NoSuchOperation", b"{}")
            .await
            .unwrap_err();
        assert_eq!(err.aws_type(), "UnknownOperationException");
        assert_eq!(err.message(), "Operation NoSuchOperation is not supported");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletion_protection_shows_in_key_metadata_and_blocks_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let (kms, caller) = service(dir.path()).await;
        let created: serde_json::Value =
            serde_json::from_slice(&dispatch(&kms, &caller, "CreateKey", b"{}").await.unwrap())
                .unwrap();
        assert_eq!(created["KeyMetadata"]["DeletionProtectionEnabled"], false);
        let key_id = created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
        let body = serde_json::to_vec(&json!({ "KeyId": key_id })).unwrap();

        let out = dispatch_extension(&kms, &caller, "EnableKeyDeletionProtection", &body)
            .await
            .unwrap();
        assert_eq!(out, b"{}");
        let described: serde_json::Value =
            serde_json::from_slice(&dispatch(&kms, &caller, "DescribeKey", &body).await.unwrap())
                .unwrap();
        assert_eq!(described["KeyMetadata"]["DeletionProtectionEnabled"], true);
        let err = dispatch(&kms, &caller, "ScheduleKeyDeletion", &body)
            .await
            .unwrap_err();
        assert_eq!(err.aws_type(), "DeletionProtectionEnabledException");
        assert!(
            err.message().contains("DisableKeyDeletionProtection"),
            "{}",
            err.message()
        );

        dispatch_extension(&kms, &caller, "DisableKeyDeletionProtection", &body)
            .await
            .unwrap();
        dispatch(&kms, &caller, "ScheduleKeyDeletion", &body)
            .await
            .unwrap();
        let err = dispatch_extension(&kms, &caller, "EnableKeyDeletionProtection", &body)
            .await
            .unwrap_err();
        assert_eq!(err.aws_type(), "KMSInvalidStateException");
    }
}
