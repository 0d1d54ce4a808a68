//! Writes the key usage recorded in memory to the store (the server calls
//! it about once a second and at shutdown).

use crate::error::KmsError;
use crate::kms::Kms;

/// What one flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageFlush {
    /// Keys whose last use was written (one store call for all of them).
    pub written: usize,
    /// Uses not recorded since the previous flush because more than
    /// [`MAX_PENDING_KEYS`] distinct keys were used in between.
    pub dropped: u64,
}

/// Distinct keys whose use is held in memory between two flushes.
pub const MAX_PENDING_KEYS: usize = crate::usage::MAX_PENDING;

impl Kms {
    /// Writes every key use recorded since the last flush in one store call
    /// (one transaction); no call at all if nothing was used. On failure
    /// the uses are kept for the next flush.
    pub async fn flush_key_usage(&self) -> Result<UsageFlush, KmsError> {
        let (batch, dropped) = self.usage.take();
        if batch.is_empty() {
            return Ok(UsageFlush {
                written: 0,
                dropped,
            });
        }
        let result = self.store.record_key_usage(&batch).await;
        let written = batch.len();
        self.usage.finish(batch, result.is_ok());
        result?;
        Ok(UsageFlush { written, dropped })
    }
}
