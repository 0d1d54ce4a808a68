//! ListKeys.

use crate::error::KmsError;
use crate::ids::KeyId;
use crate::kms::{page_limit, Caller, Kms, Page};
use crate::model::KeyRecord;
use crate::store::KeyQuery;

impl Kms {
    /// The caller's keys, ordered by key id. The marker is the last key id
    /// of the previous page.
    pub async fn list_keys(
        &self,
        caller: &Caller,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyRecord>, KmsError> {
        let after = match marker {
            None => None,
            Some(m) => Some(KeyId::parse(m).ok_or_else(|| {
                KmsError::InvalidMarker("The marker is not one this service returned".into())
            })?),
        };
        let limit = page_limit(limit);
        let region = self.caller_region(caller);
        let home = self.config.region.as_str();
        // Keys of the caller's region (as that region sees them): in a
        // single-region deployment every key; otherwise the store's pages
        // are filtered, reading on until the page is full.
        let mut items = Vec::new();
        let mut query = KeyQuery {
            account: Some(caller.account_id.clone()),
            after,
            deletion_due_by: None,
            rotation_due_by: None,
            material_expiry_due_by: None,
            limit: limit + 1,
        };
        loop {
            let batch = self.store.list_keys(&query).await?;
            let exhausted = batch.len() < query.limit;
            query.after = batch.last().map(|k| k.key_id);
            items.extend(batch.iter().filter_map(|k| k.in_region(region, home)));
            if exhausted || items.len() > limit {
                break;
            }
        }
        let next_marker = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|k| k.key_id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_marker })
    }
}
