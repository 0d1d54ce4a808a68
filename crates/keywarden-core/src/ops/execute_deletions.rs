//! The deletion executor: destroys keys whose waiting period has ended.
//! Not an AWS operation; the server runs it periodically.

use crate::error::KmsError;
use crate::store::{KeyQuery, StoreError};

use crate::kms::{KeySweep, Kms};

impl Kms {
    /// Destroys every key pending deletion whose deletion date has passed and
    /// returns how many were destroyed. Safe to run concurrently (on several
    /// nodes): each destruction is a compare-and-set on the revision read,
    /// so a key cancelled in between is left alone and no key is destroyed
    /// twice.
    pub async fn execute_due_deletions(&self) -> Result<usize, KmsError> {
        let mut sweep = KeySweep::new(KeyQuery {
            deletion_due_by: Some(self.clock.now()),
            ..KeyQuery::default()
        });
        let mut destroyed = 0;
        while let Some(batch) = self.next_batch(&mut sweep).await? {
            for key in batch {
                let result = self
                    .store
                    .destroy_key(&key.account_id, &key.key_id, key.revision)
                    .await;
                self.caches.invalidate_key(&key.account_id, &key.key_id);
                self.caches
                    .invalidate_aliases_of(&key.account_id, &key.key_id);
                match result {
                    Ok(()) => destroyed += 1,
                    // Changed (cancelled) or destroyed by another node meanwhile.
                    Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(destroyed)
    }
}
