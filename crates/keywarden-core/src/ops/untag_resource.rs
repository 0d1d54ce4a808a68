//! UntagResource.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::operation::Operation;
use crate::ops::tag_resource::validate_tag_key;

impl Kms {
    /// Removes tags by key; keys that are not present are ignored, as in AWS.
    pub async fn untag_resource(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        tag_keys: &[String],
    ) -> Result<(), KmsError> {
        for k in tag_keys {
            validate_tag_key(k)?;
        }
        let caller = &caller.with_operation_keys(crate::authz::removed_tag_keys(tag_keys));
        self.update_key_with(caller, key_ref, Operation::UntagResource, |kms, key| {
            kms.require_not_pending_deletion(key)?;
            key.tags.retain(|t| !tag_keys.contains(&t.key));
            Ok(())
        })
        .await
        .map(|_| ())
    }
}
