//! The STS Query API on the KMS listener (issue 18, first part):
//! `GetCallerIdentity`, which every AWS tool calls to learn who its
//! credentials are (Terraform's AWS provider, `aws sts
//! get-caller-identity`, boto3's `sts` client).
//!
//! A request is STS's when its SigV4 credential scope names the service
//! `sts` (the endpoint URL is the same). The protocol is AWS's Query
//! protocol: a form-encoded body (`Action=...&Version=2011-06-15`), XML
//! answers and XML errors (`<ErrorResponse>` with `Sender`/`Receiver`).

use keywarden_core::ops::accounts::ActiveOwner;
use keywarden_core::KmsError;

use crate::error::ApiError;
use crate::query::{query_error, xml_escape, Params};

/// The STS API version the clients send.
pub const VERSION: &str = "2011-06-15";

/// The XML namespace of STS answers.
pub const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// What a request was: for the audit log and the access log.
pub fn action_name(body: &[u8]) -> String {
    let action = form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    format!("sts:{}", keywarden_core::ids::truncate_for_message(&action))
}

/// Runs the STS action in `body` for the authenticated credential owner
/// `owner` (access key `access_key_id`); answers the XML document.
pub fn run(
    owner: &ActiveOwner,
    access_key_id: &str,
    partition: &str,
    body: &[u8],
    request_id: &str,
) -> Result<Vec<u8>, ApiError> {
    let params = Params::parse(body)?;
    let action = params.action()?.to_owned();
    params.check_version(VERSION)?;
    match action.as_str() {
        "GetCallerIdentity" => Ok(get_caller_identity(
            owner,
            access_key_id,
            partition,
            request_id,
        )),
        other => Err(query_error(
            "InvalidAction",
            format!(
                "Could not find operation {} for version {VERSION}",
                keywarden_core::ids::truncate_for_message(other)
            ),
        )),
    }
}

/// `GetCallerIdentity`: the account, the principal's ARN and its user id.
/// An account's access keys are its root (`arn:<partition>:iam::<account>:root`,
/// user id the account id); a product's act as its role principal.
fn get_caller_identity(
    owner: &ActiveOwner,
    access_key_id: &str,
    partition: &str,
    request_id: &str,
) -> Vec<u8> {
    let (account, arn, user_id) = match owner {
        ActiveOwner::Account(account) => (
            account.as_str().to_owned(),
            format!("arn:{partition}:iam::{account}:root"),
            account.as_str().to_owned(),
        ),
        ActiveOwner::User(user) => (
            user.account_id.as_str().to_owned(),
            format!(
                "arn:{partition}:iam::{}:user{}{}",
                user.account_id, user.path, user.name
            ),
            user.user_id.clone(),
        ),
        ActiveOwner::Product(product) => (
            keywarden_core::ids::PRODUCT_SERVICE_ACCOUNT.to_owned(),
            keywarden_core::ids::product_principal_arn(partition, &product.code),
            access_key_id.to_owned(),
        ),
    };
    format!(
        "<GetCallerIdentityResponse xmlns=\"{XMLNS}\">\n  <GetCallerIdentityResult>\n    \
         <Arn>{}</Arn>\n    <UserId>{}</UserId>\n    <Account>{}</Account>\n  \
         </GetCallerIdentityResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  \
         </ResponseMetadata>\n</GetCallerIdentityResponse>\n",
        xml_escape(&arn),
        xml_escape(&user_id),
        xml_escape(&account),
        xml_escape(request_id)
    )
    .into_bytes()
}

/// The Query protocol's error code and fault for an error: AWS STS's codes
/// for authentication and throttling, `InternalFailure` for the rest of
/// the 5xx answers.
pub fn error_code(err: &ApiError) -> &'static str {
    match err {
        ApiError::Query { code, .. } => code,
        ApiError::Iam(e) => e.code(),
        ApiError::Auth(crate::sigv4::AuthError::Missing) => "MissingAuthenticationToken",
        ApiError::Auth(crate::sigv4::AuthError::Incomplete(_)) => "IncompleteSignature",
        ApiError::Auth(crate::sigv4::AuthError::Signature(_)) => "SignatureDoesNotMatch",
        ApiError::UnrecognizedClient => "InvalidClientTokenId",
        ApiError::Throttled(_) => "Throttling",
        ApiError::TooLarge(_) => "RequestEntityTooLarge",
        ApiError::Serialization(_) => "MalformedInput",
        ApiError::RequestTimeout(_) => "RequestTimeout",
        ApiError::AuditUnavailable => "ServiceUnavailable",
        ApiError::Kms(KmsError::Store(keywarden_core::store::StoreError::Unavailable(_))) => {
            "ServiceUnavailable"
        }
        _ if err.is_internal() => "InternalFailure",
        _ => "InvalidAction",
    }
}

/// The XML error document of the Query protocol.
pub fn error_body(err: &ApiError, request_id: &str, xmlns: &str) -> Vec<u8> {
    let fault = if err.is_internal() {
        "Receiver"
    } else {
        "Sender"
    };
    format!(
        "<ErrorResponse xmlns=\"{xmlns}\">\n  <Error>\n    <Type>{fault}</Type>\n    \
         <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n\
         </ErrorResponse>\n",
        error_code(err),
        xml_escape(&err.message()),
        xml_escape(request_id)
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_versions_are_checked() {
        let owner =
            ActiveOwner::Account(keywarden_core::ids::AccountId::parse("111122223333").unwrap());
        let ok = run(
            &owner,
            "AKIA",
            "aws",
            b"Action=GetCallerIdentity&Version=2011-06-15",
            "r1",
        )
        .unwrap();
        let text = String::from_utf8(ok).unwrap();
        assert!(
            text.contains("<Arn>arn:aws:iam::111122223333:root</Arn>"),
            "{text}"
        );
        assert!(text.contains("<Account>111122223333</Account>"), "{text}");
        for (body, code) in [
            (&b"Version=2011-06-15"[..], "MissingAction"),
            (b"Action=AssumeRole&Version=2011-06-15", "InvalidAction"),
            (
                b"Action=GetCallerIdentity&Version=1999-01-01",
                "InvalidAction",
            ),
            (
                b"Action=GetCallerIdentity&Action=GetCallerIdentity",
                "InvalidParameterValue",
            ),
        ] {
            let err = run(&owner, "AKIA", "aws", body, "r").unwrap_err();
            assert_eq!(error_code(&err), code, "{}", String::from_utf8_lossy(body));
            assert_eq!(err.status().as_u16(), 400);
        }
    }

    #[test]
    fn error_documents_escape_what_they_echo() {
        let err = query_error("InvalidAction", "<script>&".into());
        let body = String::from_utf8(error_body(&err, "id", XMLNS)).unwrap();
        assert!(
            body.contains("<Message>&lt;script&gt;&amp;</Message>"),
            "{body}"
        );
        assert!(body.contains("<Type>Sender</Type>"), "{body}");
    }
}
