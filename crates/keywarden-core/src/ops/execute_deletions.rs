//! The deletion executor: destroys keys whose waiting period has ended.
//! Not an AWS operation; the server runs it periodically.

use crate::error::KmsError;
use crate::ids::KeyId;
use crate::model::KeyState;
use crate::ops::schedule_key_deletion::MAX_WINDOW_DAYS;
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
        destroyed += self.execute_due_replica_deletions().await?;
        Ok(destroyed)
    }

    /// Deletes the multi-Region replica keys whose waiting period ended:
    /// their region leaves the key's row (with the region's aliases of
    /// the key), and a primary key pending replica deletion whose last
    /// replica went starts its own waiting period. Replicas are found by
    /// listing the multi-Region keys (their ids sort after every other),
    /// not from the store's deletion index, which sees primary keys only.
    async fn execute_due_replica_deletions(&self) -> Result<usize, KmsError> {
        let now = self.clock.now();
        let mut sweep = KeySweep::after(KeyId::from_bytes([0xff; 16]));
        let mut deleted = 0;
        while let Some(batch) = self.next_batch(&mut sweep).await? {
            for mut key in batch {
                let Some(mr) = key.multi_region.as_mut() else {
                    continue;
                };
                let due: Vec<String> = mr
                    .others
                    .iter()
                    .filter(|r| {
                        r.state == KeyState::PendingDeletion
                            && r.deletion_date.is_some_and(|d| d <= now)
                    })
                    .map(|r| r.region.clone())
                    .collect();
                if due.is_empty() {
                    continue;
                }
                mr.others.retain(|r| !due.contains(&r.region));
                let last_gone = mr.others.is_empty();
                if last_gone && key.state == KeyState::PendingReplicaDeletion {
                    key.state = KeyState::PendingDeletion;
                    let days = key.pending_window_days.unwrap_or(MAX_WINDOW_DAYS);
                    key.deletion_date = Some(now.plus_days(days));
                }
                let expected = key.revision;
                key.revision = expected + 1;
                let result = self.store.update_key(&key, expected).await;
                self.caches.invalidate_key(&key.account_id, &key.key_id);
                match result {
                    Ok(()) => {}
                    // Changed meanwhile: the next sweep looks again.
                    Err(StoreError::Conflict) => continue,
                    Err(e) => return Err(e.into()),
                }
                for region in &due {
                    let tag = self.config.region_tag(region);
                    let aliases = self
                        .store
                        .list_aliases(
                            &key.account_id,
                            tag.as_deref(),
                            Some(&key.key_id),
                            None,
                            1000,
                        )
                        .await?;
                    for alias in aliases {
                        self.store
                            .delete_alias(&key.account_id, tag.as_deref(), &alias.name)
                            .await?;
                    }
                    deleted += 1;
                }
                self.caches
                    .invalidate_aliases_of(&key.account_id, &key.key_id);
            }
        }
        Ok(deleted)
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
