//! Policy-based authorization of KMS requests (issue 18): the key policy,
//! the caller's identity policies and grants, decided by
//! [`crate::policy::evaluate_kms`] as AWS KMS decides
//! (docs/access-control.md).
//!
//! Who is evaluated: an account's root, its IAM users and role sessions.
//! Cloud products keep the product rules of docs/products.md
//! (`Kms::authorize_principal`), which are stricter than any policy the
//! account can write; on a customer key (through a grant) the key
//! policy's explicit denies apply to them too (`Kms::product_policy_denies`).
//!
//! A request's condition keys are built here: from the key, the caller, the
//! request's facts (`Caller::facts`: source address, TLS, the operation's
//! own keys) and how the request named the key.
//!
//! Parsed documents are cached: a key's policy by (account, key, revision),
//! so an update of the key is a new entry and a stale one is never read; a
//! user's identity policies by (account, user), dropped with every cache
//! clear (IAM changes clear the caches here, and on other nodes through the
//! change feed).

use std::borrow::Cow;
use std::sync::Arc;

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::iam::IamOwner;
use crate::ids::{AccountId, KeyRef, ProductCode};
use crate::kms::{Access, Caller, Identity, Kms, ProductCaller};
use crate::model::{KeyManager, KeyRecord, Tag};
use crate::operation::Operation;
use crate::ops::get_key_policy::{default_key_policy, managed_key_policy};
use crate::policy::{
    denial_message, evaluate_document, evaluate_kms, key_policy_names, parse_policy, Decision,
    KmsEvaluation, Outcome, PolicyDocument, PolicyKind, PolicySource, PrincipalInfo, PrincipalKind,
    Request, RequestContext,
};

/// Most aliases read for `kms:ResourceAliases`, a bound on the read (a
/// key with more shows the first ones by name).
const MAX_RESOURCE_ALIASES: usize = 1000;

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
    /// The key's ARN, the request's resource (made once per key revision,
    /// not per request).
    key_arn: String,
    /// It names `aws:CurrentTime` or `aws:EpochTime`.
    uses_time: bool,
    /// It names `kms:KeyOrigin`, `kms:KeySpec` or `kms:KeyUsage`.
    uses_key_facts: bool,
    /// It names `aws:ResourceTag/`.
    uses_tags: bool,
    /// It names `kms:EncryptionContext` (`:<key>` or `Keys`) or
    /// `kms:EncryptionAlgorithm`.
    uses_context: bool,
    /// It names `aws:SourceIp` or `aws:SecureTransport`.
    uses_network: bool,
    /// It names `kms:RequestAlias`.
    uses_request_alias: bool,
    /// It names `kms:ResourceAliases`, whose values cost a store read.
    uses_resource_aliases: bool,
}

/// Which of a key request's condition keys to build: those a policy can
/// ask about.
#[derive(Clone, Copy)]
struct Wanted {
    key_facts: bool,
    time: bool,
    tags: bool,
    context: bool,
    network: bool,
    request_alias: bool,
    resource_aliases: bool,
}

impl Wanted {
    fn all(resource_aliases: bool) -> Self {
        Wanted {
            key_facts: true,
            time: true,
            tags: true,
            context: true,
            network: true,
            request_alias: true,
            resource_aliases,
        }
    }

    fn of(policy: &CachedKeyPolicy) -> Self {
        Wanted {
            key_facts: policy.uses_key_facts,
            time: policy.uses_time,
            tags: policy.uses_tags,
            context: policy.uses_context,
            network: policy.uses_network,
            request_alias: policy.uses_request_alias,
            resource_aliases: policy.uses_resource_aliases,
        }
    }
}

/// `kms:ViaService` of a product's requests: `<code>.<region>.amazonaws.com`,
/// the form of AWS's own (`rds.us-east-1.amazonaws.com`), so policies
/// written for AWS read the same here (docs/access-control.md).
pub fn via_service(code: &ProductCode, region: &str) -> String {
    format!("{code}.{region}.amazonaws.com")
}

/// The condition keys of tags a request sets (CreateKey's and
/// TagResource's `Tags`, IAM's CreateUser, TagUser, CreateRole):
/// `aws:RequestTag/<key>` for each tag and `aws:TagKeys` (every key).
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-requesttag>
pub fn request_tag_keys(tags: &[Tag]) -> RequestContext {
    let mut ctx = RequestContext::new();
    for t in tags {
        ctx.insert(format!("aws:RequestTag/{}", t.key), t.value.clone());
    }
    ctx.insert_multi("aws:TagKeys", tags.iter().map(|t| t.key.clone()));
    ctx
}

/// The condition key of the tag keys a request removes (UntagResource,
/// IAM's UntagUser): `aws:TagKeys`.
pub fn removed_tag_keys(keys: &[String]) -> RequestContext {
    RequestContext::new().with_multi("aws:TagKeys", keys.iter().cloned())
}

/// Whether any condition of `docs` is on `key` (ignoring case).
fn docs_name(docs: &[PolicyDocument], key: &str) -> bool {
    docs.iter().any(|d| {
        d.statements.iter().any(|st| {
            st.conditions
                .iter()
                .any(|c| c.key.eq_ignore_ascii_case(key))
        })
    })
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
        // A multi-Region key's regions share a key id and revision but not
        // their policy and ARN: their policies are parsed per request.
        let cacheable = key.multi_region.is_none();
        if let Some(hit) = self
            .caches
            .key_policy(&key.key_id, key.revision)
            .filter(|_| cacheable)
        {
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
            key_arn: self.record_arn(key),
            uses_time: lower.contains("aws:currenttime") || lower.contains("aws:epochtime"),
            uses_key_facts: lower.contains("kms:keyorigin")
                || lower.contains("kms:keyspec")
                || lower.contains("kms:keyusage")
                || lower.contains("kms:multiregion"),
            uses_tags: lower.contains("aws:resourcetag/"),
            uses_context: lower.contains("kms:encryptioncontext")
                || lower.contains("kms:encryptionalgorithm"),
            uses_network: lower.contains("aws:sourceip") || lower.contains("aws:securetransport"),
            uses_request_alias: lower.contains("kms:requestalias"),
            uses_resource_aliases: lower.contains("kms:resourcealiases"),
        });
        if cacheable {
            self.caches
                .put_key_policy(&key.key_id, key.revision, policy.clone());
        }
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

    /// Decides the policies for a root or user caller on `key`, which the
    /// request named as `named`.
    pub(crate) async fn authorize_policies(
        &self,
        caller: &Caller,
        key: &KeyRecord,
        access: Access<'_>,
        named: Option<&KeyRef>,
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
        let action = match access {
            Access::Crypto(op, _) => op.kms_action().map(Cow::Borrowed),
            _ => None,
        }
        .unwrap_or_else(|| Cow::Owned(format!("kms:{action}")));
        let resource = policy.key_arn.as_str();
        // Condition keys only when a policy can ask for them: the key's
        // (`CachedKeyPolicy`), or any identity policy (the root, the common
        // caller, has none). The key's aliases cost a store read, so only
        // when some policy names them.
        let wanted = match &identity {
            Some(docs) => {
                Wanted::all(policy.uses_resource_aliases || docs_name(docs, "kms:ResourceAliases"))
            }
            None => Wanted::of(&policy),
        };
        let ctx = self
            .key_request_context(caller, key, context, named, wanted)
            .await?;
        let request = Request {
            principal: &principal,
            action: &action,
            resource,
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

    /// The condition keys of a request on `key` that `wanted` asks for,
    /// plus those of the request itself (`Kms::request_facts`).
    async fn key_request_context(
        &self,
        caller: &Caller,
        key: &KeyRecord,
        context: Option<&EncryptionContext>,
        named: Option<&KeyRef>,
        wanted: Wanted,
    ) -> Result<RequestContext, KmsError> {
        let mut ctx = RequestContext::new();
        if wanted.key_facts {
            ctx.insert("kms:KeyOrigin", key.origin.as_str())
                .insert("kms:KeySpec", key.kind.spec.as_str())
                .insert("kms:KeyUsage", key.kind.usage.as_str());
            // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-multiregion
            ctx.insert(
                "kms:MultiRegion",
                if key.multi_region.is_some() {
                    "true"
                } else {
                    "false"
                },
            );
            if key.multi_region.is_some() {
                let kind = if key.is_primary(&self.config.region) {
                    "PRIMARY"
                } else {
                    "REPLICA"
                };
                ctx.insert("kms:MultiRegionKeyType", kind);
            }
        }
        if wanted.time {
            let now = self.clock.now();
            ctx.insert("aws:CurrentTime", crate::clock::iso8601(now))
                .insert("aws:EpochTime", (now.0 / 1000).to_string());
        }
        if wanted.tags {
            for tag in &key.tags {
                ctx.insert(format!("aws:ResourceTag/{}", tag.key), tag.value.clone());
            }
        }
        if let Some(context) = context.filter(|_| wanted.context) {
            let mut keys = Vec::new();
            for (k, v) in context.pairs() {
                ctx.insert(format!("kms:EncryptionContext:{k}"), v);
                keys.push(k);
            }
            ctx.insert_multi("kms:EncryptionContextKeys", keys);
            if key.kind.is_symmetric_encryption() {
                ctx.insert("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT");
            }
        }
        if wanted.request_alias {
            // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-request-alias
            if let Some(KeyRef::Alias(alias) | KeyRef::AliasArn { alias, .. }) = named {
                ctx.insert("kms:RequestAlias", alias.to_string());
            }
        }
        if wanted.resource_aliases {
            // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-resource-aliases
            // From the cache: alias changes through this process drop the
            // key's entry, changes elsewhere move the change stamp.
            // A multi-Region key has aliases per region under one key id:
            // not cached, the cache is keyed by account and key id.
            let cached = match key.multi_region {
                None => self.caches.resource_aliases(&key.account_id, &key.key_id),
                Some(_) => None,
            };
            let names = match cached {
                Some(hit) => hit,
                None => {
                    let epoch = self.caches.epoch();
                    let aliases = self
                        .store
                        .list_aliases(
                            &key.account_id,
                            key.region.as_deref(),
                            Some(&key.key_id),
                            None,
                            MAX_RESOURCE_ALIASES,
                        )
                        .await?;
                    let names = Arc::new(aliases.iter().map(|a| a.name.to_string()).collect());
                    self.caches.put_resource_aliases(
                        epoch,
                        &key.account_id,
                        &key.key_id,
                        Arc::clone(&names),
                    );
                    names
                }
            };
            ctx.insert_multi("kms:ResourceAliases", names.iter().cloned());
        }
        if wanted.network {
            self.request_facts(caller, &mut ctx);
        } else if let Some(keys) = caller.facts.operation_keys() {
            ctx.merge(keys);
        }
        Ok(ctx)
    }

    /// Adds the condition keys every request carries when they apply:
    /// the operation's own (`Caller::with_operation_keys`),
    /// `aws:SourceIp`, `aws:SecureTransport`, and for a product
    /// `kms:ViaService`.
    pub(crate) fn request_facts(&self, caller: &Caller, ctx: &mut RequestContext) {
        if let Some(keys) = caller.facts.operation_keys() {
            ctx.merge(keys);
        }
        if let Some(ip) = caller.facts.source_ip {
            ctx.insert("aws:SourceIp", ip.to_string());
        }
        if let Some(tls) = caller.facts.secure_transport {
            ctx.insert("aws:SecureTransport", if tls { "true" } else { "false" });
        }
        if let Some(product) = &caller.product {
            ctx.insert(
                "kms:ViaService",
                via_service(&product.code, &self.config.region),
            );
        }
    }

    /// A product using a customer key (a database product, through a
    /// grant): the product rules allowed it, and the key policy's explicit
    /// `Deny` statements may still refuse it. They are evaluated for the
    /// product's principal acting for the account (`kms:CallerAccount` is
    /// the account, `kms:ViaService` the product's service), so a `Deny`
    /// naming `*`, the account or the product's principal ARN applies; an
    /// `Allow` there adds nothing to the product rules.
    pub(crate) async fn product_policy_denies(
        &self,
        caller: &Caller,
        product: &ProductCaller,
        key: &KeyRecord,
        access: Access<'_>,
        named: Option<&KeyRef>,
    ) -> Result<(), KmsError> {
        let (action, context) = match access {
            Access::RetireGrant => return Ok(()),
            Access::Describe(op) | Access::Manage(op) => (op.wire_name(), None),
            Access::Crypto(op, context) => (op.as_str(), Some(context)),
        };
        // The default key policy has no Deny statement.
        if key.policy.is_none() {
            return Ok(());
        }
        let policy = self.key_policy_document(key);
        let arn = self.product_principal_arn(&product.code);
        let principal = PrincipalInfo {
            arn: arn.clone(),
            account: caller.account_id.as_str().to_owned(),
            kind: PrincipalKind::Service {
                name: format!("{}.amazonaws.com", product.code),
            },
            user_id: arn,
            username: None,
            tags: Vec::new(),
        };
        let mut wanted = Wanted::of(&policy);
        wanted.network = true;
        let ctx = self
            .key_request_context(caller, key, context, named, wanted)
            .await?;
        let action = format!("kms:{action}");
        let resource = self.record_arn(key);
        let request = Request {
            principal: &principal,
            action: &action,
            resource: &resource,
            context: &ctx,
        };
        if evaluate_document(&policy.doc, PolicyKind::Key, &request) != Outcome::Deny {
            return Ok(());
        }
        let decision = Decision::ExplicitDeny(PolicySource::KeyPolicy);
        Err(KmsError::AccessDenied(
            denial_message(&decision, &request).unwrap_or_default(),
        ))
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
        // CreateKey is decided by `Kms::create_key`, which knows its tags
        // (`aws:RequestTag/<key>`).
        if caller.product.is_some() || !names_no_key(operation) || operation == Operation::CreateKey
        {
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
        let mut ctx = RequestContext::new();
        self.request_facts(caller, &mut ctx);
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
        let mut ctx = RequestContext::new();
        self.request_facts(caller, &mut ctx);
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
            | Op::CreateCustomKeyStore
            | Op::ConnectCustomKeyStore
            | Op::DisconnectCustomKeyStore
            | Op::UpdateCustomKeyStore
            | Op::DeleteCustomKeyStore
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn request_tags_are_one_key_per_tag_and_their_keys() {
        let ctx = request_tag_keys(&[tag("env", "prod"), tag("owner", "ops")]);
        assert_eq!(ctx.get("aws:RequestTag/env").unwrap(), &["prod".to_owned()]);
        assert_eq!(
            ctx.get("aws:requesttag/OWNER").unwrap(),
            &["ops".to_owned()]
        );
        assert_eq!(
            ctx.get("aws:TagKeys").unwrap(),
            &["env".to_owned(), "owner".to_owned()]
        );
        assert_eq!(ctx.get("aws:RequestTag/team"), None);
        // No tags: aws:TagKeys is present with no values, so a
        // ForAllValues condition holds and ForAnyValue does not, as in AWS.
        assert_eq!(request_tag_keys(&[]).get("aws:TagKeys").unwrap().len(), 0);
        let removed = removed_tag_keys(&["a".into(), "b".into()]);
        assert_eq!(removed.get("aws:TagKeys").unwrap().len(), 2);
        assert_eq!(removed.get("aws:RequestTag/a"), None);
    }

    #[test]
    fn via_service_has_the_form_of_aws_services() {
        let code = ProductCode::parse("mysql").unwrap();
        assert_eq!(
            via_service(&code, "eu-west-1"),
            "mysql.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn a_condition_key_is_found_in_parsed_documents_ignoring_case() {
        let doc = parse_policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"kms:Encrypt","Resource":"*",
                "Condition":{"ForAnyValue:StringLike":{"KMS:resourceAliases":"alias/a-*"}}}]}"#,
            PolicyKind::Identity,
        )
        .unwrap();
        assert!(docs_name(std::slice::from_ref(&doc), "kms:ResourceAliases"));
        assert!(!docs_name(&[doc], "kms:RequestAlias"));
        assert!(!docs_name(&[], "kms:ResourceAliases"));
    }
}
