//! Role sessions: STS `AssumeRole` and the temporary credentials it issues.
//!
//! A session's credentials are stateless: the session token is the
//! session's claims (access key id, secret access key, account, role,
//! session name, expiry) sealed under the root key with the deployment's
//! [`crate::protector::SecretSealer`]. Any node sharing the root key
//! verifies a token without a store read; nothing is stored per session.
//! A token that does not unseal, or whose access key id is not the one
//! the request was signed with, is refused; an expired one is refused as
//! expired. The role is read (through the cache) on every use, so deleting
//! the role ends its sessions.
//!
//! The secret access key travels inside the token encrypted; the token is
//! never logged (it is a credential).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::iam::{IamEntity, IamKind, IamRole};
use crate::ids::AccountId;
use crate::kms::{Caller, Identity, Kms};
use crate::ops::accounts::{ActiveCredential, ActiveOwner};
use crate::ops::iam::{check_name, IamError};
use crate::policy::{
    evaluate_kms, parse_policy, Decision, KmsEvaluation, PolicyKind, Request, RequestContext,
};
use crate::secret::Secret;

/// The shortest session `DurationSeconds` allows.
pub const MIN_SESSION_SECONDS: u32 = 900;
/// The longest session any role allows.
pub const MAX_SESSION_SECONDS: u32 = 43_200;
/// The default session length.
pub const DEFAULT_SESSION_SECONDS: u32 = 3600;
/// The longest session a role session may start by assuming another role
/// (role chaining), as AWS limits it.
pub const MAX_CHAINED_SESSION_SECONDS: u32 = 3600;

const SESSION_AAD: &[u8] = b"keywarden/sts-session/v1";
const ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// What a session token says, sealed.
#[derive(Serialize, Deserialize)]
struct Claims {
    /// `ASIA...`.
    akid: String,
    /// The secret access key.
    secret: String,
    /// The role's account.
    account: String,
    /// The role's name.
    role: String,
    /// The role's id when the session began: a role deleted and made
    /// again under the same name does not revive old sessions.
    role_id: String,
    /// The session name.
    session: String,
    /// Expiry, Unix milliseconds.
    expires: i64,
}

/// Temporary credentials from [`Kms::assume_role`].
pub struct SessionCredentials {
    /// `ASIA` + 16 characters.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The session token (opaque bytes; the wire carries them in base64).
    pub session_token: Vec<u8>,
    /// When the credentials stop working.
    pub expires_at: UnixMillis,
    /// `arn:aws:sts::<account>:assumed-role/<role>/<session>`.
    pub assumed_role_arn: String,
    /// `<role id>:<session>`.
    pub assumed_role_id: String,
}

impl std::fmt::Debug for SessionCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_at", &self.expires_at)
            .field("assumed_role_arn", &self.assumed_role_arn)
            .finish_non_exhaustive()
    }
}

/// Why a session credential does not authenticate.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionRefusal {
    /// The token is not one this deployment issued for this access key,
    /// or its role is gone.
    Invalid,
    /// The token was issued here and has expired.
    Expired,
}

impl Kms {
    /// The ARN of a role session.
    pub fn assumed_role_arn(&self, role: &IamRole, session: &str) -> String {
        format!(
            "arn:{}:sts::{}:assumed-role/{}/{}",
            self.config.partition, role.account_id, role.name, session
        )
    }

    /// STS `AssumeRole`: temporary credentials for a session of the role
    /// `role_arn`, if its trust policy (and, where AWS requires it, the
    /// caller's identity policies) allow `sts:AssumeRole` to the caller.
    pub async fn assume_role(
        &self,
        caller: &Caller,
        role_arn: &str,
        session_name: &str,
        duration_seconds: Option<u32>,
    ) -> Result<SessionCredentials, IamError> {
        if session_name.len() < 2 {
            return Err(IamError::Validation(
                "1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2".to_owned(),
            ));
        }
        check_name("roleSessionName", session_name, 64)?;
        let duration = duration_seconds.unwrap_or(DEFAULT_SESSION_SECONDS);
        if !(MIN_SESSION_SECONDS..=MAX_SESSION_SECONDS).contains(&duration) {
            return Err(IamError::Validation(format!(
                "1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: Member must have value between {MIN_SESSION_SECONDS} and {MAX_SESSION_SECONDS}"
            )));
        }
        if caller.product.is_some() {
            return Err(IamError::AccessDenied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {} because cloud products may not assume roles",
                self.caller_arn(caller),
                crate::ids::truncate_for_message(role_arn)
            )));
        }
        let role = self.role_by_arn(role_arn).await?;
        let denied = || {
            IamError::AccessDenied(format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {}",
                self.caller_arn(caller),
                crate::ids::truncate_for_message(role_arn)
            ))
        };
        let Some(role) = role else {
            // An unknown role is refused like a role that does not trust
            // the caller, as AWS does: no one learns which roles exist.
            return Err(denied());
        };
        let trust =
            parse_policy(&role.assume_role_policy, PolicyKind::Key).map_err(|_| denied())?;
        let identity = self
            .caller_identity_policies(caller)
            .await
            .map_err(IamError::Kms)?;
        let principal = self.principal_info(caller);
        let role_arn_exact = self.role_arn(&role);
        let mut ctx = RequestContext::new();
        self.request_facts(caller, &mut ctx);
        let request = Request {
            principal: &principal,
            action: "sts:AssumeRole",
            resource: &role_arn_exact,
            context: &ctx,
        };
        let docs: Vec<&crate::policy::PolicyDocument> = identity
            .as_deref()
            .map_or(Vec::new(), |d| d.iter().collect());
        let decision = evaluate_kms(
            &KmsEvaluation {
                key_policy: Some(&trust),
                key_account: Some(role.account_id.as_str()),
                identity_policies: &docs,
                principal_is_root: matches!(caller.identity, Identity::Root),
                grant_allows: false,
            },
            &request,
        );
        if !matches!(decision, Decision::Allow(_)) {
            return Err(denied());
        }
        if matches!(caller.identity, Identity::RoleSession { .. })
            && duration > MAX_CHAINED_SESSION_SECONDS
        {
            return Err(IamError::Validation(format!(
                "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining ({MAX_CHAINED_SESSION_SECONDS} seconds)."
            )));
        }
        if duration > role.max_session_duration {
            return Err(IamError::Validation(
                "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."
                    .to_owned(),
            ));
        }
        let raw: [u8; 16] = self.random_array()?;
        let access_key_id: String = "ASIA"
            .chars()
            .chain(
                raw.iter()
                    .map(|b| char::from(ID_ALPHABET[usize::from(b % 32)])),
            )
            .collect();
        let secret_raw = self.random_secret(40)?;
        let secret: String = secret_raw
            .expose()
            .iter()
            .map(|b| char::from(SECRET_ALPHABET[usize::from(b % 64)]))
            .collect();
        let expires_at = UnixMillis(self.clock.now().0 + i64::from(duration) * 1000);
        let claims = Claims {
            akid: access_key_id.clone(),
            secret: secret.clone(),
            account: role.account_id.as_str().to_owned(),
            role: role.name.clone(),
            role_id: role.role_id.clone(),
            session: session_name.to_owned(),
            expires: expires_at.0,
        };
        let plain = Secret::new(
            serde_json::to_vec(&claims)
                .map_err(|e| IamError::Kms(KmsError::Validation(e.to_string())))?,
        );
        drop(claims);
        let session_token = self
            .sealer
            .seal(SESSION_AAD, plain.expose())
            .map_err(|e| IamError::Kms(KmsError::Protector(e)))?;
        Ok(SessionCredentials {
            access_key_id,
            secret_access_key: Secret::new(secret.into_bytes()),
            session_token,
            expires_at,
            assumed_role_arn: self.assumed_role_arn(&role, session_name),
            assumed_role_id: format!("{}:{session_name}", role.role_id),
        })
    }

    /// The role an ARN names (in any account of this deployment).
    async fn role_by_arn(&self, arn: &str) -> Result<Option<IamRole>, IamError> {
        let prefix = format!("arn:{}:iam::", self.config.partition);
        let Some(rest) = arn.strip_prefix(&prefix) else {
            return Err(IamError::Validation(format!(
                "{} is not a valid role ARN",
                crate::ids::truncate_for_message(arn)
            )));
        };
        let Some((account, path_name)) = rest.split_once(":role/") else {
            return Err(IamError::Validation(format!(
                "{} is not a valid role ARN",
                crate::ids::truncate_for_message(arn)
            )));
        };
        let Ok(account) = AccountId::parse(account) else {
            return Err(IamError::Validation(format!(
                "{} is not a valid role ARN",
                crate::ids::truncate_for_message(arn)
            )));
        };
        let name = path_name.rsplit('/').next().unwrap_or(path_name);
        match self
            .store
            .get_iam_entity(&account, IamKind::Role, &crate::iam::entity_name(name))
            .await?
        {
            Some(IamEntity::Role(role)) if self.role_arn(&role) == arn => Ok(Some(role)),
            _ => Ok(None),
        }
    }

    /// The credential a request signed with a session token authenticates
    /// as: the role session, with the secret to verify the signature
    /// against.
    pub async fn session_credential(
        &self,
        access_key_id: &str,
        token: &[u8],
    ) -> Result<Result<Arc<ActiveCredential>, SessionRefusal>, KmsError> {
        let now = self.clock.now();
        if let Some(hit) = self.caches.credential(access_key_id) {
            if let ActiveOwner::RoleSession { expires_at, .. } = &hit.owner {
                if hit.session_token.as_deref() == Some(token) {
                    if *expires_at <= now {
                        return Ok(Err(SessionRefusal::Expired));
                    }
                    return Ok(Ok(hit));
                }
            }
        }
        let epoch = self.caches.epoch();
        let Ok(plain) = self.sealer.unseal(SESSION_AAD, token) else {
            return Ok(Err(SessionRefusal::Invalid));
        };
        let Ok(claims) = serde_json::from_slice::<Claims>(plain.expose()) else {
            return Ok(Err(SessionRefusal::Invalid));
        };
        if claims.akid != access_key_id {
            return Ok(Err(SessionRefusal::Invalid));
        }
        if UnixMillis(claims.expires) <= now {
            return Ok(Err(SessionRefusal::Expired));
        }
        let Ok(account) = AccountId::parse(&claims.account) else {
            return Ok(Err(SessionRefusal::Invalid));
        };
        let role = match self
            .store
            .get_iam_entity(
                &account,
                IamKind::Role,
                &crate::iam::entity_name(&claims.role),
            )
            .await?
        {
            Some(IamEntity::Role(role)) if role.role_id == claims.role_id => role,
            _ => return Ok(Err(SessionRefusal::Invalid)),
        };
        let active = Arc::new(ActiveCredential::session(
            ActiveOwner::RoleSession {
                role,
                session_name: claims.session.clone(),
                expires_at: UnixMillis(claims.expires),
            },
            Secret::new(claims.secret.into_bytes()),
            token.to_vec(),
        ));
        self.caches
            .put_credential(epoch, access_key_id, active.clone());
        Ok(Ok(active))
    }
}
