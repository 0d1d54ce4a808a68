//! TagResource, and the tag rules shared with CreateKey.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Caller, Kms};
use crate::model::Tag;
use crate::operation::Operation;

/// Most tags a key may carry (AWS's limit).
pub const MAX_TAGS: usize = 50;

/// Checks tag keys and values against AWS's rules.
pub fn validate_tags(tags: &[Tag]) -> Result<(), KmsError> {
    for t in tags {
        validate_tag_key(&t.key)?;
        if t.value.chars().count() > 256 {
            return Err(KmsError::Tag(
                "Tag values must be at most 256 characters".into(),
            ));
        }
    }
    Ok(())
}

/// Checks one tag key.
pub fn validate_tag_key(key: &str) -> Result<(), KmsError> {
    let n = key.chars().count();
    if n == 0 || n > 128 {
        return Err(KmsError::Tag(
            "Tag keys must be between 1 and 128 characters".into(),
        ));
    }
    if key.starts_with("aws:") {
        return Err(KmsError::Tag(
            "Tag keys beginning with \"aws:\" are reserved".into(),
        ));
    }
    Ok(())
}

impl Kms {
    /// Adds or replaces tags on a key.
    pub async fn tag_resource(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        tags: &[Tag],
    ) -> Result<(), KmsError> {
        validate_tags(tags)?;
        let caller = &caller.with_operation_keys(crate::authz::request_tag_keys(tags));
        self.update_key_with(caller, key_ref, Operation::TagResource, |kms, key| {
            kms.require_not_pending_deletion(key)?;
            for t in tags {
                match key.tags.iter_mut().find(|e| e.key == t.key) {
                    Some(existing) => existing.value = t.value.clone(),
                    None => key.tags.push(t.clone()),
                }
            }
            if key.tags.len() > MAX_TAGS {
                return Err(KmsError::LimitExceeded(format!(
                    "A key can have at most {MAX_TAGS} tags"
                )));
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }
}
