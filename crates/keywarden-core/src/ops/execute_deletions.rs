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
                    Ok(()) => {
                        destroyed += 1;
                        // The row is gone (compare-and-set won): now the HSM
                        // objects of custom key store keys. Best effort: a
                        // failure leaves an unreachable object behind (the
                        // key's row, the only way to name it, is gone) and
                        // is counted for the operator.
                        self.destroy_material(&key);
                    }
                    // Changed (cancelled) or destroyed by another node meanwhile.
                    Err(StoreError::Conflict) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(destroyed)
    }

    /// Asks each version's protector to destroy its material (HSM objects).
    fn destroy_material(&self, key: &crate::model::KeyRecord) {
        for v in &key.versions {
            let Some(protector) = self.protector(&v.protector) else {
                continue;
            };
            let binding = crate::protector::KeyBinding {
                key_id: &key.key_id,
                version: v.version,
            };
            if protector.destroy(binding, &v.material).is_err() {
                self.orphaned_material
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// How many key versions' material a protector failed to destroy after
    /// their key was destroyed (HSM objects left behind; the server logs
    /// it).
    pub fn orphaned_material(&self) -> u64 {
        self.orphaned_material
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}
