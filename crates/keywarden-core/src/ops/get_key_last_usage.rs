//! GetKeyLastUsage.

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::{KeyRecord, KeyUsage};

/// What GetKeyLastUsage answers.
#[derive(Debug, Clone)]
pub struct KeyLastUsage {
    /// The key.
    pub key: KeyRecord,
    /// Its last successful cryptographic use; `None` if none was recorded
    /// since `tracking_start`.
    pub last_usage: Option<KeyUsage>,
    /// Since when uses of this key are recorded: the key's creation date,
    /// or, for a key created before the store recorded usage, the time the
    /// store was upgraded to record it.
    pub tracking_start: UnixMillis,
}

impl Kms {
    /// The key's last successful cryptographic use: the newer of the
    /// store's record and this node's not yet flushed one. Uses served by
    /// other nodes show once they flushed (about a second). Answers for
    /// keys in any state.
    pub async fn get_key_last_usage(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<KeyLastUsage, KmsError> {
        let key = self
            .resolve_fresh(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::GetKeyLastUsage),
            )
            .await?;
        let stored = self
            .store
            .get_key_usage(&key.account_id, &key.key_id)
            .await?;
        let pending = self.usage.get(&key.account_id, &key.key_id);
        let last_usage = [stored, pending]
            .into_iter()
            .flatten()
            .max_by_key(|u| u.used_at);
        let tracking_start = self.store.usage_tracking_start().await?.max(key.created_at);
        Ok(KeyLastUsage {
            key,
            last_usage,
            tracking_start,
        })
    }
}
