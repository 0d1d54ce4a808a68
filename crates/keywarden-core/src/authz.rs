//! Policy-based authorization of KMS requests (issue 18): the key policy,
//! the caller's identity policies and grants, decided by
//! [`crate::policy::evaluate_kms`] as AWS KMS decides
//! (docs/access-control.md).
//!
//! Who is evaluated: an account's root and its IAM users. Cloud products
//! keep the product rules of docs/products.md (`Kms::authorize_principal`),
//! which are stricter than any policy the account can write.
//!
//! Parsed documents are cached: a key's policy by (account, key, revision),
//! so an update of the key is a new entry and a stale one is never read; a
//! user's identity policies by (account, user), dropped with every cache
//! clear (IAM changes clear the caches here, and on other nodes through the
//! change feed).

use std::sync::Arc;

use crate::error::KmsError;
use crate::iam::IamOwner;
use crate::ids::AccountId;
use crate::kms::{Access, Caller, Identity, Kms};
use crate::model::{KeyManager, KeyRecord};
use crate::operation::Operation;
use crate::ops::get_key_policy::{default_key_policy, managed_key_policy};
use crate::policy::{
    denial_message, evaluate_kms, key_policy_names, parse_policy, Decision, KmsEvaluation,
    PolicyDocument, PolicyKind, PrincipalInfo, PrincipalKind, Request, RequestContext,
};

/// A caller's identity policies, parsed.
pub(crate) type IdentityPolicies = Arc<Vec<PolicyDocument>>;

/// A key's policy, parsed, and which request facts it can ask about that
/// cost something to compute (the clock's time as text).
///
/// A request's condition keys are only built when the policy can ask for
/// them: a condition key (or a policy variable naming one) that the
/// document's text does not contain cannot affect its decision, and
/// building them costs allocations on every request.
pub(crate) struct CachedKeyPolicy {
    doc: PolicyDocument,
    /// It names `aws:CurrentTime` or `aws:EpochTime`.
    uses_time: bool,
    /// It names `kms:KeyOrigin`, `kms:KeySpec` or `kms:KeyUsage`.
    uses_key_facts: bool,
    /// It names `aws:ResourceTag/`.
    uses_tags: bool,
    /// It names `kms:EncryptionContext` (`:<key>` or `Keys`) or
    /// `kms:EncryptionAlgorithm`.
    uses_context: bool,
}

impl Kms {
    /// Who `caller` is, as the evaluator sees it.
    pub(crate) fn principal_info(&self, caller: &Caller) -> PrincipalInfo {
        match &caller.identity {
            Identity::Root => PrincipalInfo {
                arn: format!(
                    "arn:{}:iam::{}:root",
                    self.config.partition, caller.account_id
                ),
                account: caller.account_id.as_str().to_owned(),
                kind: PrincipalKind::Root,
                user_id: caller.account_id.as_str().to_owned(),
                username: None,
                tags: Vec::new(),
            },
            Identity::User(user) => PrincipalInfo {
                arn: self.user_arn(user),
                account: user.account_id.as_str().to_owned(),
                kind: PrincipalKind::User,
                user_id: user.user_id.clone(),
                username: Some(user.name.clone()),
                tags: user
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
            },
            Identity::RoleSession { role, session_name } => PrincipalInfo {
                arn: self.assumed_role_arn(role, session_name),
                account: role.account_id.as_str().to_owned(),
                kind: PrincipalKind::AssumedRole {
                    role_arn: self.role_arn(role),
                    session_name: session_name.clone(),
                },
                user_id: format!("{}:{session_name}", role.role_id),
                username: None,
                tags: role
                    .tags
                    .iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect(),
            },
        }
    }

    /// The caller's ARN (for audit records and refusals).
    pub fn caller_arn(&self, caller: &Caller) -> String {
        match &caller.product {
            Some(p) => self.product_principal_arn(&p.code),
            None => self.principal_info(caller).arn,
        }
    }

    /// The parsed policy of `key` (its stored document, else the default
    /// for its kind), from the cache when possible.
    fn key_policy_document(&self, key: &KeyRecord) -> Arc<CachedKeyPolicy> {
        if let Some(hit) = self.caches.key_policy(&key.key_id, key.revision) {
            return hit;
        }
        let text = match (&key.policy, key.key_manager, &key.default_for) {
            (Some(text), _, _) => text.clone(),
            (None, KeyManager::Aws, Some(code)) => managed_key_policy(
                &self.config.partition,
                &key.account_id,
                &self.product_principal_arn(code),
            ),
            (None, _, _) => default_key_policy(&self.config.partition, &key.account_id),
        };
        let lower = text.to_ascii_lowercase();
        // Documents were checked when stored; one that no longer parses
        // (stored by an older version) allows nothing (fail closed).
        let policy = Arc::new(CachedKeyPolicy {
            doc: parse_policy(&text, PolicyKind::Key).unwrap_or_else(|_| empty_policy()),
            uses_time: lower.contains("aws:currenttime") || lower.contains("aws:epochtime"),
            uses_key_facts: lower.contains("kms:keyorigin")
                || lower.contains("kms:keyspec")
                || lower.contains("kms:keyusage"),
            uses_tags: lower.contains("aws:resourcetag/"),
            uses_context: lower.contains("kms:encryptioncontext")
                || lower.contains("kms:encryptionalgorithm"),
        });
        self.caches
            .put_key_policy(&key.key_id, key.revision, policy.clone());
        policy
    }

    /// The parsed identity policies of an IAM user (inline and attached).
    pub(crate) async fn identity_policies(
        &self,
        account: &AccountId,
        owner: &IamOwner,
    ) -> Result<IdentityPolicies, KmsError> {
        if let Some(hit) = self.caches.identity_policies(account, owner) {
            return Ok(hit);
        }
        let epoch = self.caches.epoch();
        let texts = self
            .iam_identity_policies(account, owner)
            .await
            .map_err(|e| match e {
                crate::ops::iam::IamError::Kms(k) => k,
                other => KmsError::AccessDenied(other.to_string()),
            })?;
        let docs: Vec<PolicyDocument> = texts
            .iter()
            .filter_map(|t| parse_policy(t, PolicyKind::Identity).ok())
            .collect();
        let docs = Arc::new(docs);
        self.caches
            .put_identity_policies(epoch, account, owner, docs.clone());
        Ok(docs)
    }

    /// The caller's identity policies; `None` for the root (which has
    /// every identity permission in its account).
    pub(crate) async fn caller_identity_policies(
        &self,
        caller: &Caller,
    ) -> Result<Option<IdentityPolicies>, KmsError> {
        match &caller.identity {
            Identity::Root => Ok(None),
            Identity::User(user) => Ok(Some(
                self.identity_policies(&user.account_id, &IamOwner::User(user.name.clone()))
                    .await?,
            )),
            Identity::RoleSession { role, .. } => Ok(Some(
                self.identity_policies(&role.account_id, &IamOwner::Role(role.name.clone()))
                    .await?,
            )),
        }
    }

    /// Decides the policies for a root or user caller on `key`.
    pub(crate) async fn authorize_policies(
        &self,
        caller: &Caller,
        key: &KeyRecord,
        access: Access<'_>,
    ) -> Result<(), KmsError> {
        let (action, context) = match access {
            // Who may retire a grant is the grant's business.
            Access::RetireGrant => return Ok(()),
            Access::Describe(op) | Access::Manage(op) => (op.wire_name(), None),
            Access::Crypto(op, context) => (op.as_str(), Some(context)),
        };
        // The hot path: the account's root on a key with the default key
        // policy, which allows the root everything.
        if matches!(caller.identity, Identity::Root)
            && key.policy.is_none()
            && key.key_manager == KeyManager::Customer
            && key.account_id == caller.account_id
        {
            return Ok(());
        }
        let policy = self.key_policy_document(key);
        let identity = self.caller_identity_policies(caller).await?;
        let principal = self.principal_info(caller);
        let action = format!("kms:{action}");
        let resource = self.key_arn(&key.account_id, &key.key_id);
        // Condition keys only when a policy can ask for them: the key's
        // (`CachedKeyPolicy`), or any identity policy (the root, the common
        // caller, has none).
        let all = identity.is_some();
        let mut ctx = RequestContext::new();
        if all || policy.uses_key_facts {
            ctx.insert("kms:KeyOrigin", key.origin.as_str())
                .insert("kms:KeySpec", "SYMMETRIC_DEFAULT")
                .insert("kms:KeyUsage", "ENCRYPT_DECRYPT");
        }
        if all || policy.uses_time {
            let now = self.clock.now();
            ctx.insert("aws:CurrentTime", crate::clock::iso8601(now))
                .insert("aws:EpochTime", (now.0 / 1000).to_string());
        }
        if all || policy.uses_tags {
            for tag in &key.tags {
                ctx.insert(format!("aws:ResourceTag/{}", tag.key), tag.value.clone());
            }
        }
        if let Some(context) = context.filter(|_| all || policy.uses_context) {
            let mut keys = Vec::new();
            for (k, v) in context.pairs() {
                ctx.insert(format!("kms:EncryptionContext:{k}"), v);
                keys.push(k);
            }
            ctx.insert_multi("kms:EncryptionContextKeys", keys);
            ctx.insert("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
        }
        let request = Request {
            principal: &principal,
            action: &action,
            resource: &resource,
            context: &ctx,
        };
        let docs: Vec<&PolicyDocument> = identity
            .as_deref()
            .map_or(Vec::new(), |d| d.iter().collect());
        let mut eval = KmsEvaluation {
            key_policy: Some(&policy.doc),
            key_account: Some(key.account_id.as_str()),
            identity_policies: &docs,
            principal_is_root: matches!(caller.identity, Identity::Root),
            grant_allows: false,
        };
        let mut decision = evaluate_kms(&eval, &request);
        if matches!(decision, Decision::ImplicitDeny(_)) {
            // Grants are read only when policies do not decide.
            eval.grant_allows = self
                .caller_grant_allows(caller, &principal, key, access)
                .await?;
            decision = evaluate_kms(&eval, &request);
        }
        match denial_message(&decision, &request) {
            None => Ok(()),
            Some(message) => Err(KmsError::AccessDenied(message)),
        }
    }

    /// Decides identity policies for an operation that names no key
    /// ([`names_no_key`]: CreateKey, ListKeys, GenerateRandom, ...): the
    /// account's root and products (their own rules) may call them; a user
    /// needs an identity policy allowing `kms:<Operation>` on `*`.
    /// Operations on a key are decided when the key is resolved.
    pub async fn authorize_operation(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<(), KmsError> {
        if caller.product.is_some() || !names_no_key(operation) {
            return Ok(());
        }
        self.authorize_action(caller, &format!("kms:{}", operation.wire_name()), "*")
            .await
    }

    /// Whether a grant on `key` allows `access` to the caller: a grant to
    /// its ARN, or for a role session a grant to the role (as AWS matches
    /// grants to roles).
    async fn caller_grant_allows(
        &self,
        caller: &Caller,
        principal: &PrincipalInfo,
        key: &KeyRecord,
        access: Access<'_>,
    ) -> Result<bool, KmsError> {
        if let Identity::RoleSession { role, .. } = &caller.identity {
            if self.grant_allows(key, &self.role_arn(role), access).await? {
                return Ok(true);
            }
        }
        self.grant_allows(key, &principal.arn, access).await
    }

    /// Whether a key of another account is shared with `caller`: a
    /// customer key whose key policy names the caller or its account in
    /// an `Allow` statement ([`key_policy_names`]), or that has a grant to
    /// the caller (its ARN, or its role's). A key that is not shared is
    /// `NotFoundException` to the caller, as if it did not exist, so keys
    /// of other accounts cannot be probed. Retiring a grant is the grant's
    /// business ([`Kms::retire_grant`] checks the caller is its retiring
    /// principal or grantee).
    pub(crate) async fn is_shared_with(
        &self,
        caller: &Caller,
        key: &KeyRecord,
        access: Access<'_>,
    ) -> Result<bool, KmsError> {
        if key.key_manager != KeyManager::Customer {
            return Ok(false);
        }
        if matches!(access, Access::RetireGrant) {
            return Ok(true);
        }
        let principal = self.principal_info(caller);
        if key_policy_names(&self.key_policy_document(key).doc, &principal) {
            return Ok(true);
        }
        if let Identity::RoleSession { role, .. } = &caller.identity {
            if !self.grants_to(key, &self.role_arn(role)).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(!self.grants_to(key, &principal.arn).await?.is_empty())
    }

    /// Decides an action on a resource by the caller's identity policies
    /// alone (operations that name no key; IAM actions, `iam:<Action>` on
    /// the user, role or policy ARN): the root may do all.
    pub async fn authorize_action(
        &self,
        caller: &Caller,
        action: &str,
        resource: &str,
    ) -> Result<(), KmsError> {
        let Some(identity) = self.caller_identity_policies(caller).await? else {
            return Ok(());
        };
        let principal = self.principal_info(caller);
        let ctx = RequestContext::new();
        let request = Request {
            principal: &principal,
            action,
            resource,
            context: &ctx,
        };
        let docs: Vec<&PolicyDocument> = identity.iter().collect();
        let decision = evaluate_kms(
            &KmsEvaluation {
                key_policy: None,
                key_account: None,
                identity_policies: &docs,
                principal_is_root: false,
                grant_allows: false,
            },
            &request,
        );
        match denial_message(&decision, &request) {
            None => Ok(()),
            Some(message) => Err(KmsError::AccessDenied(message)),
        }
    }

    /// The policy lockout safety check of PutKeyPolicy and CreateKey: the
    /// caller must still be allowed `kms:PutKeyPolicy` on the key under
    /// the new policy.
    pub(crate) async fn check_lockout(
        &self,
        caller: &Caller,
        key_arn: &str,
        key_account: &AccountId,
        policy: &PolicyDocument,
    ) -> Result<(), KmsError> {
        let identity = self.caller_identity_policies(caller).await?;
        let principal = self.principal_info(caller);
        let ctx = RequestContext::new();
        let request = Request {
            principal: &principal,
            action: "kms:PutKeyPolicy",
            resource: key_arn,
            context: &ctx,
        };
        let docs: Vec<&PolicyDocument> = identity
            .as_deref()
            .map_or(Vec::new(), |d| d.iter().collect());
        let decision = evaluate_kms(
            &KmsEvaluation {
                key_policy: Some(policy),
                key_account: Some(key_account.as_str()),
                identity_policies: &docs,
                principal_is_root: matches!(caller.identity, Identity::Root),
                grant_allows: false,
            },
            &request,
        );
        if decision.is_allowed() {
            Ok(())
        } else {
            Err(KmsError::MalformedPolicyDocument(format!(
                "The new key policy will not allow you to update the key policy in the future ({} would be refused kms:PutKeyPolicy). Set BypassPolicyLockoutSafetyCheck to store it anyway.",
                principal.arn
            )))
        }
    }
}

/// The operations that name no key, decided by identity policies alone
/// (as AWS decides them; DeleteAlias here too, since Keywarden resolves no
/// key for it). Keyring and account operations are Keywarden's extensions,
/// named `kms:<Operation>` in policies.
pub fn names_no_key(operation: Operation) -> bool {
    use Operation as Op;
    matches!(
        operation,
        Op::CreateKey
            | Op::ListKeys
            | Op::ListAliases
            | Op::GenerateRandom
            | Op::ListRetirableGrants
            | Op::DeleteAlias
            | Op::DescribeCustomKeyStores
            | Op::GetAccountBalance
            | Op::CreateKeyring
            | Op::DescribeKeyring
            | Op::ListKeyrings
            | Op::RotateKeyringKey
            | Op::CreateKeyringToken
            | Op::RevokeKeyringToken
            | Op::DeleteKeyring
    )
}

/// What a stored document that no longer parses becomes: one statement
/// that applies to no request, so nothing is allowed by it (fail closed).
fn empty_policy() -> PolicyDocument {
    parse_policy(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:None","Resource":"*"}]}"#,
        PolicyKind::Key,
    )
    .expect("a fixed policy parses")
}
