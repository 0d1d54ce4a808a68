//! The STS Query API on the KMS listener (issue 18): `GetCallerIdentity`,
//! which every AWS tool calls to learn who its credentials are (Terraform's
//! AWS provider, `aws sts get-caller-identity`, boto3's `sts` client), and
//! `AssumeRole`, which issues a role session's temporary credentials
//! (`keywarden_core::ops::sessions`).
//!
//! A request is STS's when its SigV4 credential scope names the service
//! `sts` (the endpoint URL is the same). The protocol is AWS's Query
//! protocol: a form-encoded body (`Action=...&Version=2011-06-15`), XML
//! answers and XML errors (`<ErrorResponse>` with `Sender`/`Receiver`).

use keywarden_core::ops::accounts::ActiveOwner;
use keywarden_core::ops::iam::IamError;
use keywarden_core::{Caller, Kms, KmsError};

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
/// `owner` (access key `access_key_id`; `caller` unless it is a product);
/// answers the XML document.
pub async fn run(
    kms: &Kms,
    owner: &ActiveOwner,
    caller: Option<&Caller>,
    access_key_id: &str,
    body: &[u8],
    request_id: &str,
) -> Result<Vec<u8>, ApiError> {
    let params = Params::parse(body)?;
    let action = params.action()?.to_owned();
    params.check_version(VERSION)?;
    let partition = &kms.config().partition;
    match action.as_str() {
        "GetCallerIdentity" => Ok(get_caller_identity(
            owner,
            access_key_id,
            partition,
            request_id,
        )),
        "AssumeRole" => {
            let Some(caller) = caller else {
                return Err(IamError::AccessDenied(
                    "cloud products may not assume roles".to_owned(),
                )
                .into());
            };
            assume_role(kms, caller, &params, request_id).await
        }
        other => Err(query_error(
            "InvalidAction",
            format!(
                "Could not find operation {} for version {VERSION}",
                keywarden_core::ids::truncate_for_message(other)
            ),
        )),
    }
}

/// `AssumeRole`: `RoleArn`, `RoleSessionName`, optional `DurationSeconds`.
/// Session policies (`Policy`, `PolicyArns`), tags, MFA and source
/// identities are not supported and refused, so a caller never gets a
/// session wider than it asked for.
async fn assume_role(
    kms: &Kms,
    caller: &Caller,
    params: &Params,
    request_id: &str,
) -> Result<Vec<u8>, ApiError> {
    for unsupported in [
        "Policy",
        "PolicyArns.member.1.arn",
        "Tags.member.1.Key",
        "TransitiveTagKeys.member.1",
        "SerialNumber",
        "TokenCode",
        "SourceIdentity",
        "ExternalId",
        "ProvidedContexts.member.1.ProviderArn",
    ] {
        if params.get(unsupported).is_some() {
            let name = unsupported.split('.').next().unwrap_or(unsupported);
            return Err(query_error(
                "InvalidParameterValue",
                format!("AssumeRole's {name} is not supported by Keywarden"),
            ));
        }
    }
    let duration = params
        .integer("DurationSeconds")?
        .map(|d| u32::try_from(d).unwrap_or(u32::MAX));
    let creds = kms
        .assume_role(
            caller,
            params.required("RoleArn")?,
            params.required("RoleSessionName")?,
            duration,
        )
        .await?;
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(&creds.session_token);
    let mut a = crate::query::XmlAnswer::new("AssumeRole", XMLNS);
    a.open("Credentials")
        .text("AccessKeyId", &creds.access_key_id)
        .text(
            "SecretAccessKey",
            std::str::from_utf8(creds.secret_access_key.expose()).unwrap_or_default(),
        )
        .text("SessionToken", &token)
        .text("Expiration", &crate::query::iso_date(creds.expires_at.0))
        .close("Credentials");
    a.open("AssumedRoleUser")
        .text("AssumedRoleId", &creds.assumed_role_id)
        .text("Arn", &creds.assumed_role_arn)
        .close("AssumedRoleUser");
    Ok(a.finish(request_id))
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
        ActiveOwner::RoleSession {
            role, session_name, ..
        } => (
            role.account_id.as_str().to_owned(),
            format!(
                "arn:{partition}:sts::{}:assumed-role/{}/{session_name}",
                role.account_id, role.name
            ),
            format!("{}:{session_name}", role.role_id),
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
        ApiError::ExpiredToken => "ExpiredToken",
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
