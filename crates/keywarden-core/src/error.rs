//! The domain's error type. The server maps each variant to an AWS error
//! type and HTTP status in one exhaustive match; nothing here knows HTTP.

use thiserror::Error;

use crate::protector::ProtectorError;
use crate::store::StoreError;

/// Every way a KMS operation can fail.
///
/// Messages of client-facing variants are shown to the caller and must never
/// contain secrets. [`KmsError::Store`] and [`KmsError::Protector`] are
/// internal: the caller sees a fixed message and the detail goes to the log.
#[derive(Debug, Error)]
pub enum KmsError {
    /// The named key, alias or other resource does not exist for this caller.
    #[error("{0}")]
    NotFound(String),
    /// The resource being created exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// The key's state does not allow the operation.
    #[error("{0}")]
    InvalidState(String),
    /// The ciphertext is malformed, was altered, belongs to a key the caller
    /// cannot use, or the encryption context differs. Deliberately no detail.
    #[error("")]
    InvalidCiphertext,
    /// Decrypt named a key other than the one that encrypted the ciphertext.
    #[error("{0}")]
    IncorrectKey(String),
    /// The key's usage does not allow the operation or algorithm.
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// An alias name that is not allowed.
    #[error("{0}")]
    InvalidAliasName(String),
    /// A malformed ARN.
    #[error("{0}")]
    InvalidArn(String),
    /// A pagination marker we did not issue.
    #[error("{0}")]
    InvalidMarker(String),
    /// A quota was reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// A tag that is not allowed.
    #[error("{0}")]
    Tag(String),
    /// A valid request for something Keywarden does not do.
    #[error("{0}")]
    Unsupported(String),
    /// A request field is missing, malformed or out of range.
    #[error("{0}")]
    Validation(String),
    /// The caller may not perform the operation.
    #[error("{0}")]
    AccessDenied(String),
    /// The named custom key store does not exist.
    #[error("{0}")]
    CustomKeyStoreNotFound(String),
    /// ScheduleKeyDeletion of a key whose deletion protection (a Keywarden
    /// extension) is on.
    #[error("{0}")]
    DeletionProtectionEnabled(String),
    /// ImportKeyMaterial with an import token that is malformed, altered or
    /// was issued for another key.
    #[error("{0}")]
    InvalidImportToken(String),
    /// ImportKeyMaterial with an authentic import token past its valid-to.
    #[error("{0}")]
    ExpiredImportToken(String),
    /// ImportKeyMaterial with material that is not 256-bit symmetric
    /// material, or differs from the material the key had before.
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// A grant id that is malformed, or names no grant of the key.
    #[error("{0}")]
    InvalidGrantId(String),
    /// A grant token that is malformed or names no grant.
    #[error("{0}")]
    InvalidGrantToken(String),
    /// The key's custom key store (HSM) cannot be reached now; retry later.
    #[error("{0}")]
    KeyUnavailable(String),
    /// The custom key store is not in a state that allows the operation
    /// (disconnected).
    #[error("{0}")]
    CustomKeyStoreInvalidState(String),
    /// DeleteCustomKeyStore of a store that still holds keys (in any
    /// state, pending deletion included).
    #[error("{0}")]
    CustomKeyStoreHasCmks(String),
    /// A custom key store name the account (or an operator store) uses.
    #[error("{0}")]
    CustomKeyStoreNameInUse(String),
    /// A `CloudHsmClusterId` the operator did not configure
    /// (`[[hsm_clusters]]`).
    #[error("{0}")]
    CloudHsmClusterNotFound(String),
    /// A cluster another custom key store uses.
    #[error("{0}")]
    CloudHsmClusterInUse(String),
    /// UpdateCustomKeyStore to a cluster that reaches another token.
    #[error("{0}")]
    CloudHsmClusterNotRelated(String),
    /// A `TrustAnchorCertificate` other than the cluster's.
    #[error("{0}")]
    IncorrectTrustAnchor(String),
    /// Cryptography with a key of an account frozen for insufficient
    /// balance (billing).
    #[error("{0}")]
    AccountFrozen(String),
    /// A key policy document that is not well formed or not valid
    /// (`MalformedPolicyDocumentException`).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// `DryRun` was set and the request would have succeeded.
    #[error("The request would have succeeded, but the DryRun option is set.")]
    DryRun,
    /// The persistence layer failed (internal).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The key protector failed (internal).
    #[error("key protector: {0}")]
    Protector(#[source] ProtectorError),
    /// Verify: the signature is not valid for the message and key
    /// (`KMSInvalidSignatureException`).
    #[error("{0}")]
    InvalidSignature(String),
    /// VerifyMac: the MAC is not valid for the message and key
    /// (`KMSInvalidMacException`).
    #[error("{0}")]
    InvalidMac(String),
}

impl KmsError {
    /// A protector's failure as the caller should see it: what the
    /// protector does not implement is `UnsupportedOperationException`,
    /// malformed caller input `ValidationException`, a ciphertext that does
    /// not decrypt `InvalidCiphertextException`; the rest is internal.
    pub fn from_protector(e: ProtectorError) -> KmsError {
        match e {
            ProtectorError::Unsupported(m) => KmsError::Unsupported(m),
            ProtectorError::InvalidInput(m) => KmsError::Validation(m),
            ProtectorError::Authentication => KmsError::InvalidCiphertext,
            other => KmsError::Protector(other),
        }
    }
}
