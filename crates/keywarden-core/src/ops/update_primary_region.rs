//! UpdatePrimaryRegion: makes a replica of a multi-Region key its primary
//! key, and the primary a replica (docs/multi-region.md).
//!
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_UpdatePrimaryRegion.html>

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::KeyState;
use crate::operation::Operation;
use crate::policy::RequestContext;

impl Kms {
    /// Moves the primary key of the multi-Region key `key_ref` names (the
    /// primary, in the caller's region) to its replica in `region`. One
    /// compare-and-set: AWS's transient `Updating` state is never visible.
    /// Both keys need `kms:UpdatePrimaryRegion` (with `kms:PrimaryRegion`),
    /// as in AWS.
    pub async fn update_primary_region(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        region: &str,
    ) -> Result<(), KmsError> {
        let home = self.config.region.clone();
        let mut keys = RequestContext::new();
        keys.insert("kms:PrimaryRegion", region);
        let asking = caller.with_operation_keys(keys);
        let access = Access::Manage(Operation::UpdatePrimaryRegion);
        // The replica's own policy must allow it too: checked on the view
        // read first (its policy is not changed by this operation).
        let primary = self.resolve_fresh(&asking, key_ref, access).await?;
        let replica = check_move(self, &primary, region, &home)?;
        let mut replica_caller = asking.clone();
        replica_caller.region = self.config.region_tag(region);
        self.authorize(&replica_caller, &replica, access, None)
            .await?;
        let region = region.to_owned();
        self.update_key_with(
            &asking,
            key_ref,
            Operation::UpdatePrimaryRegion,
            |kms, key| {
                check_move(kms, key, &region, &home)?;
                if let Some(mr) = key.multi_region.as_mut() {
                    mr.primary_region.clone_from(&region);
                }
                Ok(())
            },
        )
        .await?;
        Ok(())
    }
}

/// Whether the primary key `key` may hand over to its replica in `region`:
/// the replica, or the refusal AWS gives.
fn check_move(
    kms: &Kms,
    key: &crate::model::KeyRecord,
    region: &str,
    home: &str,
) -> Result<crate::model::KeyRecord, KmsError> {
    let arn = kms.record_arn(key);
    let Some(mr) = &key.multi_region else {
        return Err(KmsError::Unsupported(format!(
            "{arn} is not a multi-Region key"
        )));
    };
    if !key.is_primary(home) {
        return Err(KmsError::Unsupported(format!(
            "{arn} is a multi-Region replica key; call UpdatePrimaryRegion on its primary key (in {})",
            mr.primary_region
        )));
    }
    if key.region_name(home) == region {
        return Err(KmsError::Validation(format!(
            "{arn} is already the primary key; PrimaryRegion must name the region of one of its replicas"
        )));
    }
    let Some(replica) = key.in_region(region, home) else {
        return Err(KmsError::NotFound(format!(
            "{arn} has no replica key in {}",
            crate::ids::truncate_for_message(region)
        )));
    };
    for k in [key, &replica] {
        match k.state {
            KeyState::Enabled | KeyState::Disabled => {}
            KeyState::PendingImport
            | KeyState::PendingDeletion
            | KeyState::PendingReplicaDeletion => {
                return Err(KmsError::InvalidState(format!(
                    "{} is {}; the primary region of a multi-Region key changes only between keys that are Enabled or Disabled.",
                    kms.record_arn(k),
                    k.state.as_str()
                )))
            }
        }
    }
    Ok(replica)
}
