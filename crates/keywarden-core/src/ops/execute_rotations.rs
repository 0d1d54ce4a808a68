//! The rotation executor: rotates keys whose automatic rotation is due.
//! Not an AWS operation; the server runs it periodically, next to the
//! deletion executor.

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::kms::{KeySweep, Kms};
use crate::model::{KeyRecord, KeyState, RotationType};
use crate::store::{KeyQuery, StoreError};

/// How often one key is re-read after a conflicting change before the
/// executor leaves it to the next sweep.
const ATTEMPTS: usize = 4;

impl Kms {
    /// Rotates every enabled key whose next automatic rotation date has
    /// passed and returns how many were rotated. Each rotation adds one
    /// version and moves the next date to now plus the period, so a key
    /// that missed several periods (the server was down) is rotated once.
    ///
    /// Exactly once per due date, also with several executors (nodes): the
    /// new version and the new date are stored together by one
    /// compare-and-set on the revision that was read. Of two executors that
    /// read the same due key one wins; the other gets a conflict, re-reads,
    /// finds the date moved and leaves the key alone.
    ///
    /// A key that cannot be rotated (its protector failed) does not hold up
    /// the others: the sweep goes on and reports the first such failure at
    /// the end; the key stays due and is tried again by the next sweep.
    pub async fn execute_due_rotations(&self) -> Result<usize, KmsError> {
        let now = self.clock.now();
        let mut sweep = KeySweep::new(KeyQuery {
            rotation_due_by: Some(now),
            ..KeyQuery::default()
        });
        let mut rotated = 0;
        let mut first_failure = None;
        while let Some(batch) = self.next_batch(&mut sweep).await? {
            for key in batch {
                match self.rotate_if_due(key, now).await {
                    Ok(true) => rotated += 1,
                    Ok(false) => {}
                    Err(e) => {
                        first_failure.get_or_insert(e);
                    }
                }
            }
        }
        match first_failure {
            None => Ok(rotated),
            Some(e) => Err(e),
        }
    }

    /// Rotates `key` (as read from the store) if it is still due at `now`;
    /// `true` if this call rotated it.
    async fn rotate_if_due(&self, mut key: KeyRecord, now: UnixMillis) -> Result<bool, KmsError> {
        for _ in 0..ATTEMPTS {
            let Some(mut rotation) = key.rotation.filter(|r| r.next_rotation <= now) else {
                return Ok(false);
            };
            if key.state != KeyState::Enabled
                || self.require_rotation_supported(&key, false).is_err()
            {
                return Ok(false);
            }
            let expected = key.revision;
            self.add_rotated_version(&mut key, RotationType::Automatic, now)?;
            rotation.next_rotation = now.plus_days(rotation.period_days);
            key.rotation = Some(rotation);
            key.revision = expected + 1;
            let result = self.store.update_key(&key, expected).await;
            // Whatever happened, the cached copy may be stale now.
            self.caches.invalidate_key(&key.account_id, &key.key_id);
            match result {
                Ok(()) => return Ok(true),
                // Changed meanwhile (by an owner, or rotated by another
                // executor): look again.
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
