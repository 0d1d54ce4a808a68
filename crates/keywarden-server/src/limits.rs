//! Request quotas and the limits that bound what one client can make the
//! server hold (docs/limits.md).
//!
//! Quotas are per account and per node: every authenticated request is
//! charged to the account it acts for (a product's request to the account
//! its key ARN names), against one of two budgets, cryptographic or
//! management operations. A request over budget is answered
//! `ThrottlingException` (400), which the AWS SDKs retry with backoff.
//!
//! The limiter is GCRA (the "virtual scheduling" form of a token bucket):
//! one timestamp per account and budget, so a check is a hash, a lock of one
//! of [`SHARDS`] mutexes and a compare, with no background task. An entry
//! whose timestamp has passed is a full bucket, the same as no entry, so
//! idle entries are dropped whenever a shard reaches its share of
//! [`QuotaConfig::max_tracked_accounts`]; memory is bounded by that.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keywarden_core::ids::AccountId;
use keywarden_core::{Operation, QuotaClass};

use crate::error::ApiError;

/// Number of independently locked parts of the limiter's map. Requests of
/// different accounts rarely wait for each other's lock.
pub const SHARDS: usize = 64;

/// One budget: a sustained rate and how many requests may come at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per second; 0 turns the budget off (unlimited).
    pub per_second: u32,
    /// Requests accepted at once after an idle period (at least 1).
    pub burst: u32,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0,
        burst: 0,
    };
}

/// The two per-account budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Encrypt, Decrypt, ReEncrypt, GenerateDataKey*, GenerateRandom.
    pub crypto: Rate,
    /// Every other operation.
    pub manage: Rate,
    /// Accounts whose recent requests are remembered at most; idle ones are
    /// forgotten first (forgetting an idle account changes nothing).
    pub max_tracked_accounts: usize,
}

impl Default for QuotaConfig {
    /// AWS KMS's shared symmetric cryptographic quota in most Regions
    /// (10,000/s), and one management budget between AWS's per-operation
    /// management quotas (docs/limits.md has the sources).
    fn default() -> Self {
        QuotaConfig {
            crypto: Rate {
                per_second: 10_000,
                burst: 10_000,
            },
            manage: Rate {
                per_second: 1_000,
                burst: 1_000,
            },
            max_tracked_accounts: 100_000,
        }
    }
}

/// Everything configurable under `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Per-account request rates.
    pub quotas: QuotaConfig,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// A request's head (HTTP/1) must arrive within this; a new connection
    /// must start its first request within it too.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this after its head.
    pub body_read_timeout: Duration,
    /// Largest request head (HTTP/1 request line and headers; HTTP/2 header
    /// list), bytes.
    pub max_header_bytes: usize,
    /// Most headers in one HTTP/1 request.
    pub max_headers: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            quotas: QuotaConfig::default(),
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_body_bytes: crate::http_server::MAX_BODY_BYTES,
        }
    }
}

/// Which budget an operation draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Cryptographic operations.
    Crypto = 0,
    /// Management operations (everything else, extensions included).
    Manage = 1,
}

impl Budget {
    /// The budget of `op`: its quota class in keywarden-core's operation
    /// table. Extension operations are management operations.
    pub fn of(op: Operation) -> Budget {
        match op.quota_class() {
            QuotaClass::Crypto => Budget::Crypto,
            QuotaClass::Manage => Budget::Manage,
        }
    }

    /// The budget of an `X-Amz-Target` name no namespace has: management,
    /// so unknown names never use up the cryptographic budget.
    pub const UNKNOWN: Budget = Budget::Manage;

    fn name(self) -> &'static str {
        match self {
            Budget::Crypto => "cryptographic",
            Budget::Manage => "management",
        }
    }
}

/// A request refused by its account's quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// The budget that was exhausted.
    pub budget: &'static str,
    /// When the request would have been accepted.
    pub retry_after: Duration,
}

/// The emission interval and tolerance of one budget, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    /// Nanoseconds per request; 0 = unlimited.
    interval: u64,
    /// How far ahead of now an account's schedule may run: `burst * interval`.
    tolerance: u64,
}

impl Gcra {
    fn new(rate: Rate) -> Gcra {
        if rate.per_second == 0 {
            return Gcra {
                interval: 0,
                tolerance: 0,
            };
        }
        let interval = (1_000_000_000 / u64::from(rate.per_second)).max(1);
        Gcra {
            interval,
            tolerance: interval.saturating_mul(u64::from(rate.burst.max(1))),
        }
    }
}

/// Per-account request-rate limiter (see the module docs).
pub struct QuotaLimiter {
    budgets: [Gcra; 2],
    shard_capacity: usize,
    hasher: RandomState,
    origin: Instant,
    /// Account → theoretical arrival time per budget (ns since `origin`).
    shards: Vec<Mutex<HashMap<AccountId, [u64; 2]>>>,
}

impl std::fmt::Debug for QuotaLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuotaLimiter")
            .field("budgets", &self.budgets)
            .field("shard_capacity", &self.shard_capacity)
            .finish_non_exhaustive()
    }
}

impl QuotaLimiter {
    /// A limiter enforcing `config`.
    pub fn new(config: &QuotaConfig) -> QuotaLimiter {
        QuotaLimiter {
            budgets: [Gcra::new(config.crypto), Gcra::new(config.manage)],
            shard_capacity: config.max_tracked_accounts.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
            origin: Instant::now(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Charges one request of `account` to `budget`.
    pub fn check(&self, account: &AccountId, budget: Budget) -> Result<(), Throttled> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(account, budget, now)
    }

    /// Accounts currently remembered (tests, metrics).
    pub fn tracked_accounts(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn check_at(&self, account: &AccountId, budget: Budget, now: u64) -> Result<(), Throttled> {
        let gcra = self.budgets[budget as usize];
        if gcra.interval == 0 {
            return Ok(());
        }
        let shard = (self.hasher.hash_one(account) as usize) % SHARDS;
        // A poisoned lock only means another request panicked mid-update of
        // two integers; the map is still usable.
        let mut map = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(account) && map.len() >= self.shard_capacity {
            // Entries in the past are full buckets: dropping them changes
            // no answer.
            map.retain(|_, tat| tat.iter().any(|t| *t > now));
            if map.len() >= self.shard_capacity {
                // More busy accounts than remembered: forget them all
                // (they get one fresh burst) rather than grow.
                tracing::warn!(
                    capacity = self.shard_capacity,
                    "quota limiter shard full of active accounts; resetting it"
                );
                map.clear();
            }
        }
        let tat = &mut map.entry(account.clone()).or_insert([0, 0])[budget as usize];
        let next = (*tat).max(now).saturating_add(gcra.interval);
        if next - now > gcra.tolerance {
            return Err(Throttled {
                budget: budget.name(),
                retry_after: Duration::from_nanos(next - now - gcra.tolerance),
            });
        }
        *tat = next;
        Ok(())
    }
}

/// Reads a request body within `limits`: at most `max_body_bytes`
/// (`TooLarge`, 413, refused from `Content-Length` before any byte is read)
/// and within `body_read_timeout` (`RequestTimeout`, 408), so a client
/// trickling its body holds its connection for a bounded time.
pub(crate) async fn read_body(
    headers: &http::HeaderMap,
    body: axum::body::Body,
    limits: &Limits,
) -> Result<axum::body::Bytes, ApiError> {
    use http_body_util::{BodyExt, Limited};
    let max = limits.max_body_bytes;
    if let Some(len) = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(ApiError::TooLarge(max));
        }
    }
    let collected =
        tokio::time::timeout(limits.body_read_timeout, Limited::new(body, max).collect())
            .await
            .map_err(|_| ApiError::RequestTimeout(limits.body_read_timeout.as_secs()))?;
    Ok(collected
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::TooLarge(max)
            } else {
                ApiError::Serialization("The request body could not be read".into())
            }
        })?
        .to_bytes())
}

/// Applies the head limits to the connection builder (its timers are set
/// by the caller): HTTP/1 head size (`max_buf_size`: beyond it hyper
/// answers 431 and closes), header count, head read timeout; HTTP/2 header
/// list size.
pub(crate) fn configure_connections(
    builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    limits: &Limits,
) {
    builder
        .http1()
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(MIN_HEADER_BYTES))
        .max_headers(limits.max_headers);
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
}

/// The smallest `max_header_bytes` (hyper's minimum read buffer).
pub const MIN_HEADER_BYTES: usize = 8192;

/// The cap on connections served at once.
pub(crate) struct ConnectionGate {
    permits: Arc<tokio::sync::Semaphore>,
    first_request_within: Duration,
}

impl ConnectionGate {
    pub(crate) fn new(limits: &Limits) -> ConnectionGate {
        ConnectionGate {
            permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            first_request_within: limits.header_read_timeout,
        }
    }

    /// Waits for a free connection slot.
    pub(crate) async fn admit(&self) -> ConnectionPermit {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        ConnectionPermit {
            _permit: permit,
            started: Arc::new(AtomicBool::new(false)),
            first_request_within: self.first_request_within,
        }
    }
}

/// One admitted connection's slot, released when the connection ends.
pub(crate) struct ConnectionPermit {
    _permit: tokio::sync::OwnedSemaphorePermit,
    started: Arc<AtomicBool>,
    first_request_within: Duration,
}

/// Told by the service when a request's head has arrived.
#[derive(Clone)]
pub(crate) struct FirstRequest(Arc<AtomicBool>);

impl FirstRequest {
    pub(crate) fn arrived(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl ConnectionPermit {
    pub(crate) fn first_request(&self) -> FirstRequest {
        FirstRequest(self.started.clone())
    }

    /// Drives `conn` to its end, holding the slot. A connection whose first
    /// request has not arrived within the header read timeout is dropped
    /// (closed): hyper's HTTP/1 header timeout starts only once the
    /// protocol is detected, and detection waits for bytes without a limit.
    pub(crate) async fn serve<F: std::future::Future>(self, conn: F) {
        tokio::pin!(conn);
        tokio::select! {
            _ = &mut conn => {}
            () = tokio::time::sleep(self.first_request_within) => {
                if self.started.load(Ordering::Relaxed) {
                    let _ = conn.await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u64) -> AccountId {
        AccountId::parse(&format!("{n:012}")).unwrap()
    }

    fn limiter(crypto: u32, burst: u32, manage: u32, tracked: usize) -> QuotaLimiter {
        QuotaLimiter::new(&QuotaConfig {
            crypto: Rate {
                per_second: crypto,
                burst,
            },
            manage: Rate {
                per_second: manage,
                burst: manage,
            },
            max_tracked_accounts: tracked,
        })
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn burst_then_sustained_rate() {
        let l = limiter(10, 5, 1, 100);
        let a = account(1);
        let t0 = 5 * SEC;
        for i in 0..5 {
            assert!(l.check_at(&a, Budget::Crypto, t0).is_ok(), "request {i}");
        }
        let err = l.check_at(&a, Budget::Crypto, t0).unwrap_err();
        assert_eq!(err.budget, "cryptographic");
        assert_eq!(err.retry_after, Duration::from_millis(100));
        // One request per 100 ms after that.
        assert!(l.check_at(&a, Budget::Crypto, t0 + SEC / 10).is_ok());
        assert!(l.check_at(&a, Budget::Crypto, t0 + SEC / 10).is_err());
        // Idle for a second: a full burst again, never more.
        let t1 = t0 + 2 * SEC;
        for _ in 0..5 {
            assert!(l.check_at(&a, Budget::Crypto, t1).is_ok());
        }
        assert!(l.check_at(&a, Budget::Crypto, t1).is_err());
    }

    #[test]
    fn accounts_and_budgets_are_separate() {
        let l = limiter(1, 1, 1, 100);
        let (a, b) = (account(1), account(2));
        assert!(l.check_at(&a, Budget::Crypto, SEC).is_ok());
        assert!(l.check_at(&a, Budget::Crypto, SEC).is_err());
        assert!(l.check_at(&a, Budget::Manage, SEC).is_ok());
        assert!(l.check_at(&b, Budget::Crypto, SEC).is_ok());
        assert!(l.check_at(&b, Budget::Manage, SEC).is_ok());
        assert!(l.check_at(&b, Budget::Manage, SEC).is_err());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let l = limiter(0, 0, 1, 100);
        let a = account(1);
        for _ in 0..10_000 {
            assert!(l.check_at(&a, Budget::Crypto, SEC).is_ok());
        }
        assert_eq!(l.tracked_accounts(), 0);
    }

    #[test]
    fn idle_accounts_are_forgotten_and_memory_is_bounded() {
        let l = limiter(1, 1, 1, SHARDS * 4);
        for n in 0..100_000 {
            // Each account is idle again one second later.
            let _ = l.check_at(&account(n), Budget::Crypto, (n / 1000) * 2 * SEC);
        }
        assert!(
            l.tracked_accounts() <= SHARDS * 4,
            "{}",
            l.tracked_accounts()
        );
        // All busy at once: still bounded.
        for n in 0..100_000 {
            let _ = l.check_at(&account(n), Budget::Crypto, 10_000 * SEC);
        }
        assert!(
            l.tracked_accounts() <= SHARDS * 4,
            "{}",
            l.tracked_accounts()
        );
    }

    #[test]
    fn operations_map_to_their_budget() {
        for op in [
            Operation::Encrypt,
            Operation::Decrypt,
            Operation::ReEncrypt,
            Operation::GenerateDataKey,
            Operation::GenerateDataKeyWithoutPlaintext,
            Operation::GenerateRandom,
        ] {
            assert_eq!(Budget::of(op), Budget::Crypto, "{op}");
        }
        for &op in Operation::ALL {
            let name = op.wire_name();
            if Budget::of(op) == Budget::Crypto {
                assert!(
                    name.starts_with("Generate")
                        || name.contains("crypt")
                        || name.contains("capsulate")
                        || [
                            "Sign",
                            "Verify",
                            "GetPublicKey",
                            "VerifyMac",
                            "DeriveSharedSecret"
                        ]
                        .contains(&name),
                    "{op} is not cryptographic"
                );
                assert_eq!(op.namespace(), keywarden_core::Namespace::Trent, "{op}");
            }
        }
        for op in [
            Operation::CreateKey,
            Operation::DescribeKey,
            Operation::ListKeys,
            Operation::CreateGrant,
            Operation::GetAccountBalance,
        ] {
            assert_eq!(Budget::of(op), Budget::Manage, "{op}");
        }
    }
}
