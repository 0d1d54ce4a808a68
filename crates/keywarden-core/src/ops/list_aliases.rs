//! ListAliases.

use crate::error::KmsError;
use crate::ids::{AliasName, KeyRef};
use crate::kms::{page_limit, Access, Caller, Kms, Page};
use crate::model::AliasRecord;

impl Kms {
    /// The caller's aliases, optionally only those of one key, ordered by
    /// name. The marker is the last alias name of the previous page.
    pub async fn list_aliases(
        &self,
        caller: &Caller,
        key_ref: Option<&KeyRef>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasRecord>, KmsError> {
        let target = match key_ref {
            None => None,
            Some(r) => {
                if matches!(r, KeyRef::Alias(_) | KeyRef::AliasArn { .. }) {
                    return Err(KmsError::InvalidArn(
                        "KeyId must be a key ID or key ARN".into(),
                    ));
                }
                Some(
                    self.resolve(
                        caller,
                        r,
                        Access::Describe(crate::operation::Operation::ListAliases),
                    )
                    .await?
                    .record
                    .key_id,
                )
            }
        };
        if let Some(m) = marker {
            AliasName::parse_lookup(m).map_err(|_| {
                KmsError::InvalidMarker("The marker is not one this service returned".into())
            })?;
        }
        let limit = page_limit(limit);
        let mut items = self
            .store
            .list_aliases(
                &caller.account_id,
                caller.region.as_deref(),
                target.as_ref(),
                marker,
                limit + 1,
            )
            .await?;
        let next_marker = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|a| a.name.to_string())
        } else {
            None
        };
        Ok(Page { items, next_marker })
    }
}
