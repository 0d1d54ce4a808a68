//! Key usage recorded in memory between flushes.
//!
//! A successful cryptographic request records its key's use here (a map
//! overwritten per key, so memory is bounded by the number of keys used
//! since the last flush, not by the request rate); the server calls
//! [`crate::Kms::flush_key_usage`] about once a second, which writes the
//! whole map to the store in one call. No request waits for the store.
//!
//! Entries being flushed stay visible (`in_flight`) until the store call
//! returns, so `GetKeyLastUsage` on this node never misses a use.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::ids::{AccountId, KeyId};
use crate::model::KeyUsage;

/// Keys tracked between two flushes. Past this, uses of further keys are
/// dropped (and counted) until the next flush; uses of keys already in the
/// map still overwrite their entry.
pub(crate) const MAX_PENDING: usize = 100_000;

type UsageMap = HashMap<(AccountId, KeyId), KeyUsage>;

#[derive(Default)]
struct State {
    pending: UsageMap,
    in_flight: UsageMap,
    dropped: u64,
}

#[derive(Default)]
pub(crate) struct UsageTracker {
    state: Mutex<State>,
}

/// Inserts `usage` unless the map holds a newer use of the same key.
fn keep_newest(map: &mut UsageMap, usage: KeyUsage) {
    let k = (usage.account_id.clone(), usage.key_id);
    match map.get(&k) {
        Some(old) if old.used_at > usage.used_at => {}
        _ => {
            map.insert(k, usage);
        }
    }
}

impl UsageTracker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one use (the newest use of a key wins).
    pub(crate) fn record(&self, usage: KeyUsage) {
        let mut s = self.lock();
        let k = (usage.account_id.clone(), usage.key_id);
        if s.pending.len() >= MAX_PENDING && !s.pending.contains_key(&k) {
            s.dropped += 1;
            return;
        }
        keep_newest(&mut s.pending, usage);
    }

    /// The newest use of a key not yet in the store.
    pub(crate) fn get(&self, account: &AccountId, key: &KeyId) -> Option<KeyUsage> {
        let s = self.lock();
        let k = (account.clone(), *key);
        [s.pending.get(&k), s.in_flight.get(&k)]
            .into_iter()
            .flatten()
            .max_by_key(|u| u.used_at)
            .cloned()
    }

    /// Moves everything pending to in-flight and returns it (with the count
    /// of uses dropped since the last call).
    pub(crate) fn take(&self) -> (Vec<KeyUsage>, u64) {
        let mut s = self.lock();
        let batch: Vec<KeyUsage> = std::mem::take(&mut s.pending).into_values().collect();
        for u in &batch {
            keep_newest(&mut s.in_flight, u.clone());
        }
        (batch, std::mem::take(&mut s.dropped))
    }

    /// Ends a flush: the batch leaves in-flight; if it was not stored, it
    /// goes back to pending for the next flush (where newer uses win).
    pub(crate) fn finish(&self, batch: Vec<KeyUsage>, stored: bool) {
        let mut s = self.lock();
        for u in batch {
            let k = (u.account_id.clone(), u.key_id);
            if s.in_flight.get(&k) == Some(&u) {
                s.in_flight.remove(&k);
            }
            if !stored {
                if s.pending.len() >= MAX_PENDING && !s.pending.contains_key(&k) {
                    s.dropped += 1;
                } else {
                    keep_newest(&mut s.pending, u);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixMillis;
    use crate::model::CryptoOperation;

    fn usage(n: u8, at: i64) -> KeyUsage {
        KeyUsage {
            account_id: AccountId::parse("111122223333").unwrap(),
            key_id: KeyId::from_bytes([n; 16]),
            used_at: UnixMillis(at),
            operation: CryptoOperation::Encrypt,
            principal: "AKIA".into(),
            request_id: format!("r{at}"),
        }
    }

    #[test]
    fn one_entry_per_key_newest_wins() {
        let t = UsageTracker::default();
        t.record(usage(1, 10));
        t.record(usage(1, 30));
        t.record(usage(1, 20));
        t.record(usage(2, 5));
        let a = AccountId::parse("111122223333").unwrap();
        assert_eq!(
            t.get(&a, &KeyId::from_bytes([1; 16])).unwrap().used_at.0,
            30
        );
        let (batch, dropped) = t.take();
        assert_eq!((batch.len(), dropped), (2, 0));
    }

    #[test]
    fn in_flight_entries_stay_visible_and_a_failed_flush_is_retried() {
        let t = UsageTracker::default();
        let a = AccountId::parse("111122223333").unwrap();
        let k = KeyId::from_bytes([1; 16]);
        t.record(usage(1, 10));
        let (batch, _) = t.take();
        assert_eq!(
            t.get(&a, &k).unwrap().used_at.0,
            10,
            "visible while flushing"
        );
        t.record(usage(1, 40));
        t.finish(batch, false);
        // The newer use recorded during the failed flush wins.
        let (batch, _) = t.take();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].used_at.0, 40);
        t.finish(batch, true);
        assert!(t.get(&a, &k).is_none());
        assert!(t.take().0.is_empty());
    }
}
