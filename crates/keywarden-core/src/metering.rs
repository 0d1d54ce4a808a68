//! Request counts recorded in memory between flushes (billing).
//!
//! A successful cryptographic request adds one to its (account, key,
//! operation, month) counter here; [`crate::Kms::flush_metering`] writes
//! the counters as one batch with a batch id. A batch whose write failed
//! is retried, with the same id, before anything newer: the store adds a
//! batch id's counts once, so a retry after an unclear failure (the write
//! committed but the answer was lost) never counts twice.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::billing::{Month, RequestCount};
use crate::ids::{AccountId, KeyId};
use crate::model::CryptoOperation;

type Counters = HashMap<(AccountId, KeyId, CryptoOperation, Month), u64>;

/// A batch handed to the store.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    pub(crate) id: String,
    pub(crate) counts: Vec<RequestCount>,
}

#[derive(Default)]
struct State {
    pending: Counters,
    unwritten: Option<Batch>,
    next: u64,
}

/// The counters of one process.
pub(crate) struct MeterTracker {
    /// Distinguishes this process's batch ids from other processes' and
    /// earlier runs'.
    node: String,
    state: Mutex<State>,
}

impl MeterTracker {
    pub(crate) fn new(node: String) -> Self {
        MeterTracker {
            node,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one request.
    pub(crate) fn count(
        &self,
        account: &AccountId,
        key: &KeyId,
        operation: CryptoOperation,
        month: Month,
    ) {
        *self
            .lock()
            .pending
            .entry((account.clone(), *key, operation, month))
            .or_insert(0) += 1;
    }

    /// The batch to write next: the unwritten one if a write failed, else
    /// everything pending under a new id; `None` if there is nothing.
    pub(crate) fn next_batch(&self) -> Option<Batch> {
        let mut s = self.lock();
        if let Some(b) = &s.unwritten {
            return Some(b.clone());
        }
        if s.pending.is_empty() {
            return None;
        }
        let counts = std::mem::take(&mut s.pending)
            .into_iter()
            .map(
                |((account_id, key_id, operation, month), count)| RequestCount {
                    account_id,
                    key_id,
                    operation,
                    month,
                    count,
                },
            )
            .collect();
        s.next += 1;
        let batch = Batch {
            id: format!("{}-{}", self.node, s.next),
            counts,
        };
        s.unwritten = Some(batch.clone());
        Some(batch)
    }

    /// The batch was stored (or will be retried as is when `stored` is
    /// false).
    pub(crate) fn finish(&self, batch_id: &str, stored: bool) {
        let mut s = self.lock();
        if stored && s.unwritten.as_ref().is_some_and(|b| b.id == batch_id) {
            s.unwritten = None;
        }
    }
}

/// The month-to-date totals this process last brought the ledger up to,
/// per (account, month): a billing run skips accounts whose total has not
/// moved since (no write transaction per account and interval). Losing
/// it (a restart) only costs one extra, idempotent, posting.
#[derive(Default)]
pub(crate) struct PostedTotals(Mutex<HashMap<(AccountId, Month), i64>>);

impl PostedTotals {
    pub(crate) fn get(&self, key: &(AccountId, Month)) -> Option<i64> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .copied()
    }

    pub(crate) fn set(&self, key: (AccountId, Month), total: i64) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= 1_000_000 {
            map.clear();
        }
        map.insert(key, total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aggregate_and_a_failed_batch_is_retried_with_its_id() {
        let t = MeterTracker::new("n".into());
        let a = AccountId::parse("111122223333").unwrap();
        let k = KeyId::from_bytes([1; 16]);
        let m = Month {
            year: 2026,
            month: 11,
        };
        for _ in 0..3 {
            t.count(&a, &k, CryptoOperation::Encrypt, m);
        }
        t.count(&a, &k, CryptoOperation::Decrypt, m);
        let b = t.next_batch().unwrap();
        assert_eq!(b.counts.iter().map(|c| c.count).sum::<u64>(), 4);
        // Counted meanwhile: not in this batch.
        t.count(&a, &k, CryptoOperation::Encrypt, m);
        t.finish(&b.id, false);
        let again = t.next_batch().unwrap();
        assert_eq!(again.id, b.id);
        assert_eq!(again.counts.len(), b.counts.len());
        t.finish(&again.id, true);
        let next = t.next_batch().unwrap();
        assert_ne!(next.id, b.id);
        assert_eq!(next.counts.iter().map(|c| c.count).sum::<u64>(), 1);
        t.finish(&next.id, true);
        assert!(t.next_batch().is_none());
    }
}
