//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant,
//! RevokeGrant, and the check that lets a database product use a customer
//! key through a grant to its principal (docs/products.md).
//!
//! Account users already have every permission on their account's keys
//! (Keywarden does not evaluate key policies), so a grant changes what its
//! grantee may do only when the grantee is a product principal
//! (`arn:aws:iam::000000000000:role/keywarden-product/<code>`). Grants to
//! any other principal are stored, listed, retired and revoked with AWS's
//! semantics, and documented as having no effect on authorization.

use std::sync::Arc;

use crate::context::{EncryptionContext, MAX_CONTEXT_BYTES};
use crate::error::KmsError;
use crate::ids::{truncate_for_message, AccountId, KeyId, KeyRef};
use crate::kms::{Access, Caller, Kms, Page};
use crate::model::{GrantConstraints, GrantOperation, GrantRecord, KeyRecord};
use crate::operation::Operation;
use crate::policy::RequestContext;
use crate::store::{GrantQuery, StoreError};

/// Most grants one key may have (AWS's quota).
pub const MAX_GRANTS_PER_KEY: usize = 50_000;

/// Most grants one key may have for one grantee principal (AWS's quota);
/// the per-request grant check reads all of them.
pub const MAX_GRANTS_PER_GRANTEE: usize = 500;

/// Default page size of ListGrants and ListRetirableGrants (AWS: 50).
pub const DEFAULT_GRANT_PAGE: usize = 50;

/// Prefix of Keywarden's grant tokens.
const TOKEN_PREFIX: &str = "kwgt1";

/// What CreateGrant was asked for (validated by [`Kms::create_grant`]).
#[derive(Debug, Clone)]
pub struct CreateGrantRequest {
    /// The key.
    pub key: KeyRef,
    /// Who may use the grant.
    pub grantee_principal: String,
    /// Who may retire it, besides the account.
    pub retiring_principal: Option<String>,
    /// The operations allowed.
    pub operations: Vec<GrantOperation>,
    /// Encryption context constraints.
    pub constraints: GrantConstraints,
    /// Optional name; with the same name and parameters CreateGrant returns
    /// the existing grant.
    pub name: Option<String>,
    /// Only check.
    pub dry_run: bool,
}

/// A created (or, by name, found) grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedGrant {
    /// Its id.
    pub grant_id: String,
    /// A token naming it (accepted by RetireGrant and in `GrantTokens`).
    pub grant_token: String,
}

/// How RetireGrant names the grant.
#[derive(Debug, Clone)]
pub enum RetireTarget {
    /// By grant token.
    Token(String),
    /// By key and grant id.
    Id {
        /// The key.
        key: KeyRef,
        /// The grant.
        grant_id: String,
    },
}

/// The grant token of a grant: `kwgt1.<account>.<key id>.<grant id>`. Not a
/// secret and not a capability: like AWS's tokens it only names a grant;
/// who may use or retire the grant is decided by the caller's identity.
pub fn grant_token(grant: &GrantRecord) -> String {
    format!(
        "{TOKEN_PREFIX}.{}.{}.{}",
        grant.account_id, grant.key_id, grant.grant_id
    )
}

/// Parses a grant token into account, key and grant id.
pub fn parse_grant_token(token: &str) -> Result<(AccountId, KeyId, String), KmsError> {
    let invalid = || KmsError::InvalidGrantToken("The grant token is not valid".into());
    let mut parts = token.split('.');
    let (Some(TOKEN_PREFIX), Some(account), Some(key), Some(grant), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid());
    };
    let account = AccountId::parse(account).map_err(|_| invalid())?;
    let key = KeyId::parse(key).ok_or_else(invalid)?;
    check_grant_id(grant).map_err(|_| invalid())?;
    Ok((account, key, grant.to_owned()))
}

/// Checks the `GrantTokens` of a request: at most 10, each 1-8192
/// characters. Keywarden's grants take effect when CreateGrant returns
/// (the store is strongly consistent), so tokens need not be presented;
/// well-formed ones are accepted and otherwise ignored, as AWS does once a
/// grant is consistent.
pub fn check_grant_tokens(tokens: &[String]) -> Result<(), KmsError> {
    if tokens.len() > 10 {
        return Err(KmsError::Validation(
            "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10".into(),
        ));
    }
    if tokens.iter().any(|t| t.is_empty() || t.len() > 8192) {
        return Err(KmsError::Validation(
            "1 validation error detected: Value at 'grantTokens' failed to satisfy constraint: Member must satisfy constraint: [Member must have length less than or equal to 8192, Member must have length greater than or equal to 1]".into(),
        ));
    }
    Ok(())
}

fn check_grant_id(id: &str) -> Result<(), KmsError> {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(KmsError::InvalidGrantId(format!(
            "Invalid grant ID {}",
            truncate_for_message(id)
        )))
    }
}

fn check_principal(field: &str, value: &str) -> Result<(), KmsError> {
    if value.is_empty() || value.len() > 256 {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must have length between 1 and 256"
        )));
    }
    // AWS's pattern `^[\w+=,.@:/-]+$`, where `\w` is ASCII.
    if !value.bytes().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'_' | b'+' | b'=' | b',' | b'.' | b'@' | b':' | b'/' | b'-'
            )
    }) {
        return Err(KmsError::Validation(format!(
            "1 validation error detected: Value at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$"
        )));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), KmsError> {
    if name.is_empty() || name.len() > 256 {
        return Err(KmsError::Validation(
            "1 validation error detected: Value at 'name' failed to satisfy constraint: Member must have length between 1 and 256".into(),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'))
    {
        return Err(KmsError::Validation(
            "1 validation error detected: Value at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$".into(),
        ));
    }
    Ok(())
}

fn check_constraints(constraints: &GrantConstraints) -> Result<(), KmsError> {
    for map in [&constraints.subset, &constraints.equals]
        .into_iter()
        .flatten()
    {
        // The same limit as an encryption context.
        EncryptionContext::new(map.clone()).map_err(|_| {
            KmsError::Validation(format!(
                "Grant constraints exceed the limit of {MAX_CONTEXT_BYTES} bytes"
            ))
        })?;
    }
    constraints.check().map_err(KmsError::Validation)
}

fn marker_after(marker: Option<&str>) -> Result<Option<String>, KmsError> {
    match marker {
        None => Ok(None),
        Some(m) => {
            check_grant_id(m).map_err(|_| {
                KmsError::InvalidMarker("The marker is not one this service returned".into())
            })?;
            Ok(Some(m.to_owned()))
        }
    }
}

impl Kms {
    /// CreateGrant: lets `grantee_principal` use the key for `operations`.
    /// Refused for default keys (`UnsupportedOperationException`) and keys
    /// pending deletion. With a `name`, a grant of the same key, name and
    /// parameters is returned instead of creating another (AWS's
    /// idempotence).
    pub async fn create_grant(
        &self,
        caller: &Caller,
        req: CreateGrantRequest,
    ) -> Result<CreatedGrant, KmsError> {
        check_principal("granteePrincipal", &req.grantee_principal)?;
        if let Some(r) = &req.retiring_principal {
            check_principal("retiringPrincipal", r)?;
        }
        if let Some(n) = &req.name {
            check_name(n)?;
        }
        if req.operations.is_empty() {
            return Err(KmsError::Validation(
                "1 validation error detected: Value at 'operations' failed to satisfy constraint: Member must have length greater than or equal to 1".into(),
            ));
        }
        check_constraints(&req.constraints)?;
        let mut operations: Vec<GrantOperation> = Vec::new();
        for op in &req.operations {
            if !operations.contains(op) {
                operations.push(*op);
            }
        }

        let caller = &caller.with_operation_keys(self.grant_request_keys(&req, &operations));
        let key = self
            .resolve_fresh(caller, &req.key, Access::Manage(Operation::CreateGrant))
            .await?;
        self.require_not_pending_deletion(&key)?;
        if let Some(op) = operations.iter().find(|op| !op.applies_to(&key.kind)) {
            return Err(KmsError::Validation(format!(
                "Grant operation {} is not supported on keys of KeySpec {} and KeyUsage {}",
                op.as_str(),
                key.kind.spec,
                key.kind.usage
            )));
        }
        if req.dry_run {
            return Err(KmsError::DryRun);
        }
        if let Some(name) = &req.name {
            let mut query = GrantQuery::account(&key.account_id, MAX_GRANTS_PER_GRANTEE);
            query.key = Some(key.key_id);
            query.grantee = Some(req.grantee_principal.clone());
            let same = self.store.list_grants(&query).await?.into_iter().find(|g| {
                g.name.as_deref() == Some(name.as_str())
                    && g.retiring_principal == req.retiring_principal
                    && sorted(&g.operations) == sorted(&operations)
                    && g.constraints == req.constraints
            });
            if let Some(g) = same {
                return Ok(CreatedGrant {
                    grant_token: grant_token(&g),
                    grant_id: g.grant_id,
                });
            }
        }
        let grant = GrantRecord {
            grant_id: hex_lower(&self.random_array::<32>()?),
            account_id: key.account_id.clone(),
            key_id: key.key_id,
            name: req.name,
            grantee_principal: req.grantee_principal,
            retiring_principal: req.retiring_principal,
            operations,
            constraints: req.constraints,
            created_at: self.clock.now(),
        };
        let result = self
            .store
            .create_grant(&grant, MAX_GRANTS_PER_KEY, MAX_GRANTS_PER_GRANTEE)
            .await;
        self.caches.invalidate_key(&key.account_id, &key.key_id);
        match result {
            Ok(()) => Ok(CreatedGrant {
                grant_token: grant_token(&grant),
                grant_id: grant.grant_id,
            }),
            Err(StoreError::LimitExceeded) => Err(KmsError::LimitExceeded(format!(
                "{} has reached the limit of {MAX_GRANTS_PER_KEY} grants, or of {MAX_GRANTS_PER_GRANTEE} grants to {}",
                self.record_arn(&key),
                grant.grantee_principal
            ))),
            Err(StoreError::MissingReference) => Err(KmsError::NotFound(format!(
                "Key '{}' does not exist",
                self.record_arn(&key)
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// ListGrants: the grants of one key, ordered by grant id, optionally
    /// only one grant id or one grantee.
    pub async fn list_grants(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        grant_id: Option<&str>,
        grantee: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<GrantRecord>, KmsError> {
        if let Some(id) = grant_id {
            check_grant_id(id)?;
        }
        if let Some(g) = grantee {
            check_principal("granteePrincipal", g)?;
        }
        let after = marker_after(marker)?;
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::ListGrants),
            )
            .await?;
        let limit = limit.map_or(DEFAULT_GRANT_PAGE, |l| l as usize);
        let mut query = GrantQuery::account(&key.record.account_id, limit + 1);
        query.key = Some(key.record.key_id);
        query.grant_id = grant_id.map(str::to_owned);
        query.grantee = grantee.map(str::to_owned);
        query.after = after;
        self.grant_page(&query, limit).await
    }

    /// ListRetirableGrants: the grants of the caller's account that
    /// `retiring_principal` may retire, ordered by grant id.
    pub async fn list_retirable_grants(
        &self,
        caller: &Caller,
        retiring_principal: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<GrantRecord>, KmsError> {
        check_principal("retiringPrincipal", retiring_principal)?;
        let after = marker_after(marker)?;
        let limit = limit.map_or(DEFAULT_GRANT_PAGE, |l| l as usize);
        let mut query = GrantQuery::account(&caller.account_id, limit + 1);
        query.retiring = Some(retiring_principal.to_owned());
        query.after = after;
        self.grant_page(&query, limit).await
    }

    async fn grant_page(
        &self,
        query: &GrantQuery,
        limit: usize,
    ) -> Result<Page<GrantRecord>, KmsError> {
        let mut items = self.store.list_grants(query).await?;
        let next_marker = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|g| g.grant_id.clone())
        } else {
            None
        };
        Ok(Page { items, next_marker })
    }

    /// RetireGrant: deletes a grant named by token or by key and id. The
    /// account's users may retire any grant of the account; a product only
    /// a grant whose retiring principal it is, or whose grantee it is when
    /// the grant allows `RetireGrant`.
    pub async fn retire_grant(
        &self,
        caller: &Caller,
        target: &RetireTarget,
        dry_run: bool,
    ) -> Result<(), KmsError> {
        let (key_ref, grant_id) = match target {
            RetireTarget::Token(token) => {
                let (account, key, grant) = parse_grant_token(token)?;
                if account == caller.account_id {
                    (KeyRef::Id(key), grant)
                } else if caller.product.is_some() {
                    // Products act for the account their request names.
                    return Err(KmsError::NotFound(format!("Grant ID {grant} not found")));
                } else {
                    // A grant on a key of another account: only its
                    // retiring principal or grantee may retire it (below).
                    let key_ref = KeyRef::KeyArn {
                        region: self.config().region.clone(),
                        account: account.as_str().to_owned(),
                        key,
                    };
                    (key_ref, grant)
                }
            }
            RetireTarget::Id { key, grant_id } => {
                check_grant_id(grant_id)?;
                (key.clone(), grant_id.clone())
            }
        };
        let key = self
            .resolve_fresh(caller, &key_ref, Access::RetireGrant)
            .await?;
        let grant = self.find_grant(&key, &grant_id).await?;
        if key.account_id != caller.account_id {
            // Another account's grant: the caller must be named by it, and
            // a grant that does not name it is "not found" to it.
            let me = self.principal_info(caller);
            let mut names = vec![me.arn.clone()];
            if let crate::kms::Identity::RoleSession { role, .. } = &caller.identity {
                names.push(self.role_arn(role));
            }
            let named = |p: &str| names.iter().any(|n| n == p);
            let may = grant.retiring_principal.as_deref().is_some_and(named)
                || (named(&grant.grantee_principal)
                    && grant.operations.contains(&GrantOperation::RetireGrant));
            if !may {
                return Err(KmsError::NotFound(format!("Grant ID {grant_id} not found")));
            }
        }
        if let Some(product) = &caller.product {
            let me = self.product_principal_arn(&product.code);
            let may = grant.retiring_principal.as_deref() == Some(me.as_str())
                || (grant.grantee_principal == me
                    && grant.operations.contains(&GrantOperation::RetireGrant));
            if !may {
                return Err(KmsError::AccessDenied(format!(
                    "product {} may not retire grant {grant_id}: it is neither its retiring principal nor a grantee allowed to retire it",
                    product.code
                )));
            }
        }
        if dry_run {
            return Err(KmsError::DryRun);
        }
        self.delete_grant(&key, &grant_id).await
    }

    /// RevokeGrant: deletes a grant of a key of the caller's account.
    pub async fn revoke_grant(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        grant_id: &str,
        dry_run: bool,
    ) -> Result<(), KmsError> {
        check_grant_id(grant_id)?;
        let key = self
            .resolve_fresh(caller, key_ref, Access::Manage(Operation::RevokeGrant))
            .await?;
        self.find_grant(&key, grant_id).await?;
        if dry_run {
            return Err(KmsError::DryRun);
        }
        self.delete_grant(&key, grant_id).await
    }

    /// The grants of a key whose grantee is a cloud product, with the
    /// product's code (for the operator's warning before deleting a key a
    /// product may still need), read 1,000 at a time.
    pub async fn product_grants(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<Vec<(String, GrantRecord)>, KmsError> {
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::ListGrants),
            )
            .await?;
        let prefix = format!(
            "arn:{}:iam::{}:role/keywarden-product/",
            self.config.partition,
            crate::ids::PRODUCT_SERVICE_ACCOUNT
        );
        let mut query = GrantQuery::account(&key.record.account_id, 1000);
        query.key = Some(key.record.key_id);
        let mut out = Vec::new();
        loop {
            let page = self.store.list_grants(&query).await?;
            let full = page.len() == query.limit;
            query.after = page.last().map(|g| g.grant_id.clone());
            out.extend(page.into_iter().filter_map(|g| {
                let code = g.grantee_principal.strip_prefix(&prefix)?.to_owned();
                Some((code, g))
            }));
            if !full {
                return Ok(out);
            }
        }
    }

    async fn find_grant(&self, key: &KeyRecord, grant_id: &str) -> Result<GrantRecord, KmsError> {
        let mut query = GrantQuery::account(&key.account_id, 1);
        query.key = Some(key.key_id);
        query.grant_id = Some(grant_id.to_owned());
        self.store
            .list_grants(&query)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| KmsError::NotFound(format!("Grant ID {grant_id} not found")))
    }

    async fn delete_grant(&self, key: &KeyRecord, grant_id: &str) -> Result<(), KmsError> {
        let deleted = self
            .store
            .delete_grant(&key.account_id, &key.key_id, grant_id)
            .await;
        // Whatever happened, no cached grant may outlive this call.
        self.caches.invalidate_key(&key.account_id, &key.key_id);
        if deleted? {
            Ok(())
        } else {
            Err(KmsError::NotFound(format!("Grant ID {grant_id} not found")))
        }
    }

    /// The grants of `key` to `grantee` (at most [`MAX_GRANTS_PER_GRANTEE`]),
    /// from the cache when possible.
    pub(crate) async fn grants_to(
        &self,
        key: &KeyRecord,
        grantee: &str,
    ) -> Result<Arc<Vec<GrantRecord>>, KmsError> {
        Ok(
            match self.caches.grants(&key.account_id, &key.key_id, grantee) {
                Some(hit) => hit,
                None => {
                    let epoch = self.caches.epoch();
                    let mut query = GrantQuery::account(&key.account_id, MAX_GRANTS_PER_GRANTEE);
                    query.key = Some(key.key_id);
                    query.grantee = Some(grantee.to_owned());
                    let grants = Arc::new(self.store.list_grants(&query).await?);
                    self.caches.put_grants(
                        epoch,
                        &key.account_id,
                        &key.key_id,
                        grantee,
                        grants.clone(),
                    );
                    grants
                }
            },
        )
    }

    /// Whether a grant to `grantee` allows `access` on `key`: some grant
    /// lists the operation and, for operations with an encryption context,
    /// its constraints accept the request's context. From the cache; grant
    /// changes through this process invalidate it, changes elsewhere move
    /// the change stamp.
    pub(crate) async fn grant_allows(
        &self,
        key: &KeyRecord,
        grantee: &str,
        access: Access<'_>,
    ) -> Result<bool, KmsError> {
        let (op, context) = match access {
            Access::Describe(_) => (GrantOperation::DescribeKey, None),
            Access::Crypto(op, context) => (op, Some(context)),
            Access::Manage(_) | Access::RetireGrant => return Ok(false),
        };
        let grants = self.grants_to(key, grantee).await?;
        Ok(grants.iter().any(|g| {
            g.operations.contains(&op)
                && match context {
                    Some(ctx) if op.takes_context() => g.constraints.allow(ctx.pairs()),
                    _ => true,
                }
        }))
    }
}

impl Kms {
    /// The condition keys of a CreateGrant request:
    /// `kms:GrantOperations`, `kms:GranteePrincipal`,
    /// `kms:RetiringPrincipal` (when given) and `kms:GrantIsForAWSResource`
    /// (<https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html>).
    /// The last means in Keywarden: the grantee is a cloud product's
    /// principal, so the grant lets a product use the key for the
    /// account's resources.
    fn grant_request_keys(
        &self,
        req: &CreateGrantRequest,
        operations: &[GrantOperation],
    ) -> RequestContext {
        let mut ctx = RequestContext::new();
        ctx.insert_multi(
            "kms:GrantOperations",
            operations.iter().map(|op| op.as_str()),
        )
        .insert("kms:GranteePrincipal", req.grantee_principal.clone())
        .insert(
            "kms:GrantIsForAWSResource",
            if is_product_principal(&self.config.partition, &req.grantee_principal) {
                "true"
            } else {
                "false"
            },
        );
        if let Some(r) = &req.retiring_principal {
            ctx.insert("kms:RetiringPrincipal", r.clone());
        }
        ctx
    }
}

/// Whether `arn` is a cloud product's principal
/// ([`crate::ids::product_principal_arn`] of a well-formed product code).
pub(crate) fn is_product_principal(partition: &str, arn: &str) -> bool {
    let prefix = format!(
        "arn:{partition}:iam::{}:role/keywarden-product/",
        crate::ids::PRODUCT_SERVICE_ACCOUNT
    );
    arn.strip_prefix(&prefix)
        .is_some_and(|code| crate::ids::ProductCode::parse(code).is_ok())
}

fn sorted(ops: &[GrantOperation]) -> Vec<GrantOperation> {
    let mut v = ops.to_vec();
    v.sort();
    v
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn constraints(subset: &[(&str, &str)], equals: Option<&[(&str, &str)]>) -> GrantConstraints {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        GrantConstraints {
            subset: (!subset.is_empty()).then(|| map(subset)),
            equals: equals.map(map),
        }
    }

    #[test]
    fn only_a_product_principal_is_for_an_aws_resource() {
        assert!(is_product_principal(
            "aws",
            "arn:aws:iam::000000000000:role/keywarden-product/mysql"
        ));
        for arn in [
            // Another partition, account, path or an invalid product code.
            "arn:aws-cn:iam::000000000000:role/keywarden-product/mysql",
            "arn:aws:iam::111122223333:role/keywarden-product/mysql",
            "arn:aws:iam::000000000000:role/other/mysql",
            "arn:aws:iam::000000000000:role/keywarden-product/",
            "arn:aws:iam::000000000000:role/keywarden-product/MySQL",
            "arn:aws:iam::000000000000:role/keywarden-product/mysql/x",
            "arn:aws:iam::111122223333:user/keywarden-product/mysql",
        ] {
            assert!(!is_product_principal("aws", arn), "{arn}");
        }
    }

    #[test]
    fn constraints_follow_aws_rules() {
        let req = [("Tenant", "a"), ("db", "orders")];
        // Subset: keys without regard to case, values exactly.
        assert!(constraints(&[("tenant", "a")], None).allow(req.iter().copied()));
        assert!(!constraints(&[("tenant", "A")], None).allow(req.iter().copied()));
        assert!(!constraints(&[("missing", "a")], None).allow(req.iter().copied()));
        // Equals: the same pairs, no more.
        assert!(
            constraints(&[], Some(&[("TENANT", "a"), ("db", "orders")])).allow(req.iter().copied())
        );
        assert!(!constraints(&[], Some(&[("tenant", "a")])).allow(req.iter().copied()));
        // None: anything.
        assert!(GrantConstraints::default().allow(std::iter::empty()));
        assert!(!constraints(&[("tenant", "a")], None).allow(std::iter::empty()));
    }

    #[test]
    fn keys_differing_only_by_case_cannot_widen_a_grant() {
        // Such constraints are refused at CreateGrant ...
        let doubled = constraints(&[], Some(&[("tenant", "x"), ("TENANT", "x")]));
        assert!(doubled.check().is_err());
        assert!(constraints(&[("a", "1"), ("A", "1")], None)
            .check()
            .is_err());
        assert!(constraints(&[("a", "1")], Some(&[("b", "2")]))
            .check()
            .is_ok());
        // ... and would not let an extra pair through anyway.
        assert!(!doubled.allow([("tenant", "x"), ("other", "evil")].into_iter()));
        // A request naming one key twice (by case) satisfies no constraint.
        let equals = constraints(&[], Some(&[("tenant", "x")]));
        assert!(!equals.allow([("tenant", "x"), ("TENANT", "y")].into_iter()));
        let subset = constraints(&[("tenant", "x")], None);
        assert!(!subset.allow([("tenant", "x"), ("Tenant", "y")].into_iter()));
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let grant = GrantRecord {
            grant_id: "ab".repeat(32),
            account_id: AccountId::parse("111122223333").unwrap(),
            key_id: KeyId::from_random([7; 16]),
            name: None,
            grantee_principal: "p".into(),
            retiring_principal: None,
            operations: vec![GrantOperation::Decrypt],
            constraints: GrantConstraints::default(),
            created_at: crate::clock::UnixMillis(0),
        };
        let token = grant_token(&grant);
        let (a, k, g) = parse_grant_token(&token).unwrap();
        assert_eq!((a, k, g), (grant.account_id, grant.key_id, grant.grant_id));
        for bad in [
            "",
            "kwgt1",
            "kwgt2.111122223333.x.y",
            &format!("{token}.extra"),
            &token.replace("kwgt1.", "kwgt1.1."),
            &token[..token.len() - 1],
        ] {
            assert!(
                matches!(parse_grant_token(bad), Err(KmsError::InvalidGrantToken(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn grant_ids_are_64_hex_digits() {
        assert!(check_grant_id(&"0f".repeat(32)).is_ok());
        assert!(check_grant_id(&"0f".repeat(31)).is_err());
        assert!(check_grant_id(&"zz".repeat(32)).is_err());
        assert_eq!(hex_lower(&[0x0f, 0xa0]), "0fa0");
    }
}
