//! ListResourceTags.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{page_limit, Access, Caller, Kms, Page};
use crate::model::Tag;

impl Kms {
    /// A key's tags ordered by tag key. The marker is the last tag key of
    /// the previous page.
    pub async fn list_resource_tags(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<Tag>, KmsError> {
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::ListResourceTags),
            )
            .await?;
        let mut tags = key.record.tags.clone();
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        if let Some(m) = marker {
            if !tags.iter().any(|t| t.key == m) {
                return Err(KmsError::InvalidMarker(
                    "The marker is not one this service returned".into(),
                ));
            }
            tags.retain(|t| t.key.as_str() > m);
        }
        let limit = page_limit(limit);
        let next_marker = if tags.len() > limit {
            tags.truncate(limit);
            tags.last().map(|t| t.key.clone())
        } else {
            None
        };
        Ok(Page {
            items: tags,
            next_marker,
        })
    }
}
