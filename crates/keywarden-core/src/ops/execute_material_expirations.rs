//! The expiry executor: deletes imported key material whose valid-to has
//! passed. Not an AWS operation; the server runs it periodically, next to
//! the deletion and rotation executors.

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::kms::{KeySweep, Kms};
use crate::model::KeyRecord;
use crate::ops::delete_imported_key_material::clear_material;
use crate::store::{KeyQuery, StoreError};

/// How often one key is re-read after a conflicting change before the
/// executor leaves it to the next sweep.
const ATTEMPTS: usize = 4;

impl Kms {
    /// Deletes the material of every key whose imported material expired
    /// (valid-to before now), exactly as `DeleteImportedKeyMaterial` does,
    /// and returns how many were deleted. Each deletion is one
    /// compare-and-set on the revision read; of several executors one wins
    /// and the others, re-reading, find the material gone (or re-imported
    /// with a later valid-to) and leave the key alone.
    pub async fn execute_material_expirations(&self) -> Result<usize, KmsError> {
        let now = self.clock.now();
        let mut sweep = KeySweep::new(KeyQuery {
            material_expiry_due_by: Some(now),
            ..KeyQuery::default()
        });
        let mut expired = 0;
        while let Some(batch) = self.next_batch(&mut sweep).await? {
            for key in batch {
                if self.expire_if_due(key, now).await? {
                    expired += 1;
                }
            }
        }
        Ok(expired)
    }

    async fn expire_if_due(&self, mut key: KeyRecord, now: UnixMillis) -> Result<bool, KmsError> {
        for _ in 0..ATTEMPTS {
            let due = key
                .import
                .as_ref()
                .and_then(|i| i.expiration)
                .and_then(|e| e.valid_to())
                .is_some_and(|t| t <= now);
            if !due {
                return Ok(false);
            }
            let expected = key.revision;
            clear_material(&mut key);
            key.revision = expected + 1;
            let result = self.store.update_key(&key, expected).await;
            // Whatever happened, the cached copy (and its unwrapped handle)
            // may be stale now.
            self.caches.invalidate_key(&key.account_id, &key.key_id);
            match result {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict) => {
                    match self.store.get_key(&key.account_id, &key.key_id).await? {
                        Some(fresh) => key = fresh,
                        None => return Ok(false),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }
}
