//! ReplicateKey: a replica of a multi-Region primary key in another region
//! this deployment serves (docs/multi-region.md).
//!
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_ReplicateKey.html>

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Identity, Kms};
use crate::model::{KeyRecord, KeyState, RegionalKey, Tag};
use crate::operation::Operation;
use crate::ops::create_key::MAX_DESCRIPTION;
use crate::ops::tag_resource::validate_tags;
use crate::policy::RequestContext;
use crate::store::StoreError;

/// What the caller asked for.
#[derive(Debug, Clone)]
pub struct ReplicateKeyRequest {
    /// `ReplicaRegion`.
    pub replica_region: String,
    /// `Description` of the replica (not shared: empty by default).
    pub description: String,
    /// `Policy` of the replica; `None` for the default key policy.
    pub policy: Option<String>,
    /// `BypassPolicyLockoutSafetyCheck`.
    pub bypass_policy_lockout_safety_check: bool,
    /// `Tags` of the replica (not shared with the primary).
    pub tags: Vec<Tag>,
}

impl Kms {
    /// Makes a replica of the multi-Region primary key `key_ref` names (in
    /// the caller's region) in `req.replica_region`, and returns the
    /// replica as that region sees it. The replica shares the key id,
    /// material, spec, origin and rotation; its description, policy, tags
    /// and state are its own. One compare-and-set on the key's row.
    ///
    /// Authorization, as AWS describes it: `kms:ReplicateKey` on the
    /// primary key (with `kms:ReplicaRegion`) and `kms:CreateKey` in the
    /// replica region (identity policies; the account's root has it).
    pub async fn replicate_key(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        req: ReplicateKeyRequest,
    ) -> Result<KeyRecord, KmsError> {
        let region = req.replica_region.clone();
        if region == self.caller_region(caller) {
            return Err(KmsError::Validation(format!(
                "ReplicaRegion {region} is the region of the request; a replica must be in another region"
            )));
        }
        if !self.config.serves(&region) {
            return Err(KmsError::Unsupported(format!(
                "ReplicaRegion {} is not a region this deployment serves (it serves {})",
                crate::ids::truncate_for_message(&region),
                self.config.regions().collect::<Vec<_>>().join(", ")
            )));
        }
        let policy_doc = match &req.policy {
            Some(p) => Some(crate::ops::put_key_policy::check_key_policy(p)?),
            None => None,
        };
        if req.description.chars().count() > MAX_DESCRIPTION {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {MAX_DESCRIPTION}"
            )));
        }
        validate_tags(&req.tags)?;
        let mut tags: Vec<Tag> = Vec::new();
        for t in req.tags {
            match tags.iter_mut().find(|e| e.key == t.key) {
                Some(existing) => existing.value = t.value,
                None => tags.push(t),
            }
        }
        let mut replica_caller = caller.clone();
        replica_caller.region = self.config.region_tag(&region);
        if caller.product.is_none() && !matches!(caller.identity, Identity::Root) {
            let mut facts = crate::authz::request_tag_keys(&tags);
            facts.insert("kms:ReplicaRegion", region.as_str());
            self.authorize_action(
                &replica_caller.with_operation_keys(facts),
                "kms:CreateKey",
                "*",
            )
            .await?;
        }
        let mut keys = RequestContext::new();
        keys.insert("kms:ReplicaRegion", region.as_str());
        let asking = caller.with_operation_keys(keys);
        let now = self.clock.now();
        let home = self.config.region.clone();
        let mut checked_lockout = false;
        for _ in 0..16 {
            let primary = self
                .resolve_fresh(&asking, key_ref, Access::Manage(Operation::ReplicateKey))
                .await?;
            let arn = self.record_arn(&primary);
            let Some(mr) = &primary.multi_region else {
                return Err(KmsError::Unsupported(format!(
                    "{arn} is not a multi-Region key; only multi-Region primary keys can be replicated"
                )));
            };
            if !primary.is_primary(&home) {
                return Err(KmsError::Unsupported(format!(
                    "{arn} is a multi-Region replica key; replicate its primary key (in {})",
                    mr.primary_region
                )));
            }
            match primary.state {
                KeyState::Enabled | KeyState::Disabled => {}
                _ => self.require_usable(&primary)?,
            }
            if primary.regions(&home).contains(&region.as_str()) {
                return Err(KmsError::AlreadyExists(format!(
                    "{arn} already has a replica in {region}"
                )));
            }
            if let (Some(doc), false, false) = (
                &policy_doc,
                req.bypass_policy_lockout_safety_check,
                checked_lockout,
            ) {
                let replica_arn =
                    self.regional_key_arn(Some(&region), &primary.account_id, &primary.key_id);
                self.check_lockout(&replica_caller, &replica_arn, &primary.account_id, doc)
                    .await?;
                checked_lockout = true;
            }
            let mut stored = self.stored_view(primary.clone());
            let expected = stored.revision;
            if let Some(mr) = stored.multi_region.as_mut() {
                mr.others.push(RegionalKey {
                    region: region.clone(),
                    state: KeyState::Enabled,
                    description: req.description.clone(),
                    tags: tags.clone(),
                    policy: req.policy.clone(),
                    created_at: now,
                    deletion_date: None,
                    pending_window_days: None,
                    deletion_protection: false,
                });
                mr.others.sort_by(|a, b| a.region.cmp(&b.region));
            }
            stored.revision = expected + 1;
            let result = self.store.update_key(&stored, expected).await;
            self.caches
                .invalidate_key(&stored.account_id, &stored.key_id);
            match result {
                Ok(()) => {
                    return stored
                        .in_region(&region, &home)
                        .ok_or_else(|| KmsError::NotFound(format!("Key '{arn}' does not exist")))
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}
