//! The clock seam. Lifecycles of days (the deletion waiting period, later
//! rotation and import expiry) are tested by moving a [`ManualClock`], never by
//! sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// One day in milliseconds.
    pub const DAY: i64 = 86_400_000;

    /// This instant plus `days` whole days.
    pub fn plus_days(self, days: u32) -> UnixMillis {
        UnixMillis(self.0 + i64::from(days) * Self::DAY)
    }

    /// This instant minus `days` whole days.
    pub fn minus_days(self, days: u32) -> UnixMillis {
        UnixMillis(self.0 - i64::from(days) * Self::DAY)
    }

    /// Seconds since the epoch as a float, the way AWS JSON renders timestamps.
    pub fn as_epoch_seconds(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> UnixMillis;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        UnixMillis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: UnixMillis) -> Self {
        Self {
            now: AtomicI64::new(start.0),
        }
    }

    /// Moves the clock forward by `millis`.
    pub fn advance(&self, millis: i64) {
        self.now.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: UnixMillis) {
        self.now.store(to.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.now.load(Ordering::SeqCst))
    }
}

/// An instant as ISO 8601 in UTC with seconds (`2026-12-07T20:53:55Z`), as
/// `aws:CurrentTime` and IAM's dates are written.
pub fn iso8601(at: UnixMillis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(at.0.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(UnixMillis(1_000));
        assert_eq!(c.now(), UnixMillis(1_000));
        c.advance(UnixMillis::DAY);
        assert_eq!(c.now(), UnixMillis(1_000).plus_days(1));
    }
}
