//! Errors as the AWS JSON 1.1 protocol shows them: `{"__type", "message"}`
//! with an HTTP status. The one exhaustive mapping from domain errors to
//! the wire lives here.

use http::StatusCode;
use keywarden_core::protector::ProtectorError;
use keywarden_core::store::StoreError;
use keywarden_core::KmsError;

use crate::sigv4::AuthError;

/// The fixed message of every internal error; the detail goes to the log.
pub const INTERNAL_MESSAGE: &str =
    "The request could not be completed because of an internal error. Quote the request id when reporting it.";

/// Anything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A domain error from an operation.
    #[error(transparent)]
    Kms(#[from] KmsError),
    /// Authentication failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The access key id is unknown or revoked.
    #[error(
        "The security token included in the request is invalid. (No such active access key in \
         this Keywarden deployment: it may belong to another data directory or deployment, or \
         it was revoked.)"
    )]
    UnrecognizedClient,
    /// A role session's token has expired.
    #[error("The security token included in the request is expired")]
    ExpiredToken,
    /// The body is not the JSON the operation takes (syntax, types, base64).
    #[error("{0}")]
    Serialization(String),
    /// `X-Amz-Target` is missing or names no operation.
    #[error("{0}")]
    UnknownOperation(String),
    /// The body exceeds the size limit.
    #[error("Request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The HTTP method or path is not the API's.
    #[error("{0}")]
    NotFound(String),
    /// The account's request quota for this kind of operation is used up
    /// (docs/limits.md).
    #[error("You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls. (The account's {} request quota on this node.)", .0.budget)]
    Throttled(crate::limits::Throttled),
    /// The request body did not arrive within the body read timeout.
    #[error("The request body did not arrive within {0} seconds")]
    RequestTimeout(u64),
    /// The audit log cannot be written: requests are refused (fail closed,
    /// docs/audit.md).
    #[error("the audit log cannot be written")]
    AuditUnavailable,
    /// A client error of the Query protocol (STS), with AWS's error code
    /// (`MissingAction`, `InvalidAction`, ...).
    #[error("{message}")]
    Query {
        /// AWS's error code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// An IAM operation's failure (`iam.rs`), with IAM's code and status.
    #[error(transparent)]
    Iam(keywarden_core::ops::iam::IamError),
}

impl ApiError {
    /// The AWS error type, the `__type` of the body.
    pub fn aws_type(&self) -> &'static str {
        match self {
            ApiError::Kms(e) => match e {
                KmsError::NotFound(_) => "NotFoundException",
                KmsError::AlreadyExists(_) => "AlreadyExistsException",
                KmsError::Disabled(_) => "DisabledException",
                KmsError::InvalidState(_) => "KMSInvalidStateException",
                KmsError::InvalidCiphertext => "InvalidCiphertextException",
                KmsError::IncorrectKey(_) => "IncorrectKeyException",
                KmsError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
                KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
                KmsError::InvalidArn(_) => "InvalidArnException",
                KmsError::InvalidMarker(_) => "InvalidMarkerException",
                KmsError::LimitExceeded(_) => "LimitExceededException",
                KmsError::Tag(_) => "TagException",
                KmsError::Unsupported(_) => "UnsupportedOperationException",
                KmsError::Validation(_) => "ValidationException",
                KmsError::AccessDenied(_) => "AccessDeniedException",
                KmsError::CustomKeyStoreNotFound(_) => "CustomKeyStoreNotFoundException",
                KmsError::DeletionProtectionEnabled(_) => "DeletionProtectionEnabledException",
                KmsError::InvalidImportToken(_) => "InvalidImportTokenException",
                KmsError::ExpiredImportToken(_) => "ExpiredImportTokenException",
                KmsError::IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
                KmsError::InvalidGrantId(_) => "InvalidGrantIdException",
                KmsError::InvalidGrantToken(_) => "InvalidGrantTokenException",
                KmsError::AccountFrozen(_) => "AccountFrozenException",
                KmsError::KeyUnavailable(_) => "KeyUnavailableException",
                KmsError::CustomKeyStoreInvalidState(_) => "CustomKeyStoreInvalidStateException",
                KmsError::CustomKeyStoreHasCmks(_) => "CustomKeyStoreHasCMKsException",
                KmsError::CustomKeyStoreNameInUse(_) => "CustomKeyStoreNameInUseException",
                KmsError::CloudHsmClusterNotFound(_) => "CloudHsmClusterNotFoundException",
                KmsError::CloudHsmClusterInUse(_) => "CloudHsmClusterInUseException",
                KmsError::CloudHsmClusterNotRelated(_) => "CloudHsmClusterNotRelatedException",
                KmsError::IncorrectTrustAnchor(_) => "IncorrectTrustAnchorException",
                KmsError::Protector(ProtectorError::Unavailable(_)) => "KeyUnavailableException",
                KmsError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
                KmsError::DryRun => "DryRunOperationException",
                KmsError::InvalidSignature(_) => "KMSInvalidSignatureException",
                KmsError::InvalidMac(_) => "KMSInvalidMacException",
                KmsError::Store(StoreError::Unavailable(_)) => "DependencyTimeoutException",
                KmsError::Store(_) | KmsError::Protector(_) => "KMSInternalException",
            },
            ApiError::Auth(e) => e.aws_type(),
            ApiError::UnrecognizedClient => "UnrecognizedClientException",
            ApiError::ExpiredToken => "ExpiredTokenException",
            ApiError::Serialization(_) => "SerializationException",
            ApiError::UnknownOperation(_) => "UnknownOperationException",
            ApiError::TooLarge(_) => "ValidationException",
            ApiError::NotFound(_) => "UnknownOperationException",
            ApiError::Throttled(_) => "ThrottlingException",
            ApiError::RequestTimeout(_) => "RequestTimeoutException",
            ApiError::AuditUnavailable => "KMSInternalException",
            ApiError::Query { code, .. } => code,
            ApiError::Iam(e) => e.code(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Kms(
                KmsError::Store(_) | KmsError::Protector(_) | KmsError::KeyUnavailable(_),
            ) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Kms(KmsError::DryRun) => StatusCode::PRECONDITION_FAILED,
            ApiError::Kms(_) => StatusCode::BAD_REQUEST,
            ApiError::Auth(AuthError::Missing) => StatusCode::FORBIDDEN,
            ApiError::Auth(_) | ApiError::UnrecognizedClient | ApiError::ExpiredToken => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Serialization(_) | ApiError::UnknownOperation(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Throttled(_) => StatusCode::BAD_REQUEST,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::AuditUnavailable => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Query { .. } => StatusCode::BAD_REQUEST,
            ApiError::Iam(keywarden_core::ops::iam::IamError::Kms(e)) => match e {
                KmsError::Store(_) | KmsError::Protector(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            },
            ApiError::Iam(e) => StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
        }
    }

    /// Whether this is an internal failure (logged in detail, shown fixed).
    pub fn is_internal(&self) -> bool {
        self.status().is_server_error()
    }

    /// The message shown to the caller.
    pub fn message(&self) -> String {
        if matches!(
            self,
            ApiError::Kms(
                KmsError::KeyUnavailable(_) | KmsError::Protector(ProtectorError::Unavailable(_))
            )
        ) {
            // The detail (which HSM, why) goes to the log only.
            return KEY_UNAVAILABLE_MESSAGE.to_owned();
        }
        if matches!(
            self,
            ApiError::Kms(KmsError::Store(StoreError::Unavailable(_)))
        ) {
            // Which database, and why, goes to the log only.
            return STORE_UNAVAILABLE_MESSAGE.to_owned();
        }
        if matches!(self, ApiError::AuditUnavailable) {
            return AUDIT_UNAVAILABLE_MESSAGE.to_owned();
        }
        if self.is_internal() {
            return INTERNAL_MESSAGE.to_owned();
        }
        match self {
            ApiError::Auth(e) => e.message(),
            other => other.to_string(),
        }
    }
}

/// What a caller is told when a key's custom key store (HSM) cannot be
/// reached: AWS's KeyUnavailableException, retryable.
const KEY_UNAVAILABLE_MESSAGE: &str =
    "The key is not available: its custom key store cannot be reached now. Retry the request later.";

/// What a caller is told when the store (the PostgreSQL database) cannot
/// be reached: AWS's DependencyTimeoutException, retryable.
const STORE_UNAVAILABLE_MESSAGE: &str =
    "The service's database cannot be reached now. Retry the request later.";

/// What a caller is told while the audit log cannot be written: the
/// request was not served because it could not be recorded. Retryable.
pub const AUDIT_UNAVAILABLE_MESSAGE: &str =
    "The request was refused because the service cannot write its audit log now. Retry the request later.";

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant pinned to its (status, __type).
    #[test]
    fn every_variant_maps_to_its_aws_error() {
        let s = || "m".to_string();
        let table: Vec<(ApiError, u16, &str)> = vec![
            (KmsError::NotFound(s()).into(), 400, "NotFoundException"),
            (
                KmsError::AlreadyExists(s()).into(),
                400,
                "AlreadyExistsException",
            ),
            (KmsError::Disabled(s()).into(), 400, "DisabledException"),
            (
                KmsError::InvalidState(s()).into(),
                400,
                "KMSInvalidStateException",
            ),
            (
                KmsError::InvalidCiphertext.into(),
                400,
                "InvalidCiphertextException",
            ),
            (
                KmsError::IncorrectKey(s()).into(),
                400,
                "IncorrectKeyException",
            ),
            (
                KmsError::InvalidKeyUsage(s()).into(),
                400,
                "InvalidKeyUsageException",
            ),
            (
                KmsError::InvalidAliasName(s()).into(),
                400,
                "InvalidAliasNameException",
            ),
            (KmsError::InvalidArn(s()).into(), 400, "InvalidArnException"),
            (
                KmsError::InvalidMarker(s()).into(),
                400,
                "InvalidMarkerException",
            ),
            (
                KmsError::LimitExceeded(s()).into(),
                400,
                "LimitExceededException",
            ),
            (KmsError::Tag(s()).into(), 400, "TagException"),
            (
                KmsError::Unsupported(s()).into(),
                400,
                "UnsupportedOperationException",
            ),
            (KmsError::Validation(s()).into(), 400, "ValidationException"),
            (
                KmsError::AccessDenied(s()).into(),
                400,
                "AccessDeniedException",
            ),
            (
                KmsError::CustomKeyStoreNotFound(s()).into(),
                400,
                "CustomKeyStoreNotFoundException",
            ),
            (
                KmsError::DeletionProtectionEnabled(s()).into(),
                400,
                "DeletionProtectionEnabledException",
            ),
            (
                KmsError::InvalidImportToken(s()).into(),
                400,
                "InvalidImportTokenException",
            ),
            (
                KmsError::ExpiredImportToken(s()).into(),
                400,
                "ExpiredImportTokenException",
            ),
            (
                KmsError::IncorrectKeyMaterial(s()).into(),
                400,
                "IncorrectKeyMaterialException",
            ),
            (
                KmsError::InvalidGrantId(s()).into(),
                400,
                "InvalidGrantIdException",
            ),
            (
                KmsError::InvalidGrantToken(s()).into(),
                400,
                "InvalidGrantTokenException",
            ),
            (
                KmsError::AccountFrozen(s()).into(),
                400,
                "AccountFrozenException",
            ),
            (
                KmsError::KeyUnavailable(s()).into(),
                500,
                "KeyUnavailableException",
            ),
            (
                KmsError::Protector(ProtectorError::Unavailable("hsm gone".into())).into(),
                500,
                "KeyUnavailableException",
            ),
            (
                KmsError::CustomKeyStoreInvalidState(s()).into(),
                400,
                "CustomKeyStoreInvalidStateException",
            ),
            (
                KmsError::CustomKeyStoreHasCmks(s()).into(),
                400,
                "CustomKeyStoreHasCMKsException",
            ),
            (
                KmsError::CustomKeyStoreNameInUse(s()).into(),
                400,
                "CustomKeyStoreNameInUseException",
            ),
            (
                KmsError::CloudHsmClusterNotFound(s()).into(),
                400,
                "CloudHsmClusterNotFoundException",
            ),
            (
                KmsError::CloudHsmClusterInUse(s()).into(),
                400,
                "CloudHsmClusterInUseException",
            ),
            (
                KmsError::CloudHsmClusterNotRelated(s()).into(),
                400,
                "CloudHsmClusterNotRelatedException",
            ),
            (
                KmsError::IncorrectTrustAnchor(s()).into(),
                400,
                "IncorrectTrustAnchorException",
            ),
            (
                KmsError::MalformedPolicyDocument("x".into()).into(),
                400,
                "MalformedPolicyDocumentException",
            ),
            (KmsError::DryRun.into(), 412, "DryRunOperationException"),
            (
                KmsError::Store(StoreError::Conflict).into(),
                500,
                "KMSInternalException",
            ),
            (
                KmsError::Protector(ProtectorError::Crypto("x")).into(),
                500,
                "KMSInternalException",
            ),
            (
                AuthError::Missing.into(),
                403,
                "MissingAuthenticationTokenException",
            ),
            (
                AuthError::Incomplete(s()).into(),
                400,
                "IncompleteSignatureException",
            ),
            (
                AuthError::Signature(s()).into(),
                400,
                "InvalidSignatureException",
            ),
            (
                ApiError::UnrecognizedClient,
                400,
                "UnrecognizedClientException",
            ),
            (ApiError::ExpiredToken, 400, "ExpiredTokenException"),
            (ApiError::Serialization(s()), 400, "SerializationException"),
            (
                ApiError::UnknownOperation(s()),
                400,
                "UnknownOperationException",
            ),
            (ApiError::TooLarge(1), 413, "ValidationException"),
            (ApiError::NotFound(s()), 404, "UnknownOperationException"),
            (
                ApiError::Throttled(crate::limits::Throttled {
                    budget: "cryptographic",
                    retry_after: std::time::Duration::from_millis(5),
                }),
                400,
                "ThrottlingException",
            ),
            (ApiError::RequestTimeout(10), 408, "RequestTimeoutException"),
            (ApiError::AuditUnavailable, 500, "KMSInternalException"),
        ];
        for (err, status, ty) in table {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.aws_type(), ty, "{err:?}");
        }
    }

    #[test]
    fn internal_errors_hide_their_detail() {
        let e: ApiError =
            KmsError::Store(StoreError::Backend("disk on fire at /secret/path".into())).into();
        assert_eq!(e.message(), INTERNAL_MESSAGE);
        let e: ApiError = KmsError::Store(StoreError::Unavailable(
            "connect to 10.0.0.7:5432 as keywarden: refused".into(),
        ))
        .into();
        assert_eq!(e.status().as_u16(), 500);
        assert_eq!(e.aws_type(), "DependencyTimeoutException");
        assert_eq!(e.message(), STORE_UNAVAILABLE_MESSAGE);
        assert_eq!(
            ApiError::AuditUnavailable.message(),
            AUDIT_UNAVAILABLE_MESSAGE
        );
        let e: ApiError = KmsError::InvalidCiphertext.into();
        assert_eq!(e.message(), "");
    }
}
