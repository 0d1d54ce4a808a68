//! A caching materials manager: reuses data keys across messages to save
//! key-service calls, within limits.
//!
//! Reuse is a trade: every message encrypted with cached materials shares
//! one data key (and, for the signed suite, one signing key), so one
//! leaked data key exposes all of them, and the key service's audit log
//! shows one `GenerateDataKey` for many messages. The limits bound that
//! exposure ([`CacheLimits`]); `docs/envelope.md` discusses choosing them.
//!
//! Rules, whatever the limits:
//! - encryption materials are reused only for the same suite and exactly
//!   the same caller encryption context (the context is the key of the
//!   cache), never across contexts;
//! - encryption materials are cached only when the request says how long
//!   the plaintext is ([`EncryptionRequest::plaintext_length`]): without it
//!   the byte limit could not be kept, so such requests always go to the
//!   wrapped manager (and count as `bypassed`);
//! - a message longer than `max_bytes` is never served from, nor put into,
//!   the cache;
//! - decryption materials are reused for the same suite, context and set
//!   of encrypted data keys, for at most `max_age`;
//! - at most `capacity` entries of each kind; the least recently used one
//!   is evicted first. Expired entries are dropped when met.
//!
//! Cached data keys and signing keys live in zeroizing buffers and are
//! zeroized when evicted or when the manager is dropped. Nothing is written
//! anywhere else.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::materials::{
    DecryptionMaterials, DecryptionRequest, EncryptedDataKey, EncryptionContext,
    EncryptionMaterials, EncryptionRequest, MaterialsManager, SigningKey,
};
use crate::suite::AlgorithmSuite;

/// Where the cache reads the time; injected so tests can age entries
/// without sleeping.
pub trait Clock: Send + Sync {
    /// Now, monotonic.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How far cached materials may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// The longest time any entry is used after it was made.
    pub max_age: Duration,
    /// The most messages one data key encrypts (at least 1).
    pub max_messages: u64,
    /// The most plaintext bytes one data key encrypts, over all its
    /// messages.
    pub max_bytes: u64,
    /// The most entries of each kind (encryption, decryption) kept.
    pub capacity: usize,
}

impl Default for CacheLimits {
    /// Conservative defaults: 5 minutes, 1,000 messages, 1 GiB, 100
    /// entries.
    fn default() -> Self {
        CacheLimits {
            max_age: Duration::from_secs(300),
            max_messages: 1_000,
            max_bytes: 1 << 30,
            capacity: 100,
        }
    }
}

/// Counters of a [`CachingMaterialsManager`] since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Encryption materials served from the cache.
    pub encrypt_hits: u64,
    /// Encryption requests that went to the wrapped manager although they
    /// were cacheable (no entry, or it was exhausted or expired).
    pub encrypt_misses: u64,
    /// Encryption requests not cacheable (length unknown or above
    /// `max_bytes`): always the wrapped manager.
    pub encrypt_bypassed: u64,
    /// Decryption materials served from the cache.
    pub decrypt_hits: u64,
    /// Decryption requests that went to the wrapped manager.
    pub decrypt_misses: u64,
    /// Entries evicted because the cache was full.
    pub evictions: u64,
    /// Entries now held (both kinds).
    pub entries: usize,
}

impl CacheStats {
    /// All hits.
    pub fn hits(&self) -> u64 {
        self.encrypt_hits + self.decrypt_hits
    }

    /// All calls to the wrapped manager.
    pub fn misses(&self) -> u64 {
        self.encrypt_misses + self.encrypt_bypassed + self.decrypt_misses
    }
}

/// A [`MaterialsManager`] in front of another one, reusing its materials
/// within [`CacheLimits`] (see the module docs for the rules).
pub struct CachingMaterialsManager<M> {
    inner: M,
    limits: CacheLimits,
    clock: Box<dyn Clock>,
    state: Mutex<State>,
}

impl<M> std::fmt::Debug for CachingMaterialsManager<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachingMaterialsManager")
            .field("limits", &self.limits)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A digest naming one cache entry (suite, context, and for decryption the
/// encrypted data keys), so the map holds no plaintext context or keys
/// twice and lookups are cheap.
type EntryId = [u8; 64];

#[derive(Default)]
struct State {
    encrypt: HashMap<EntryId, EncryptEntry>,
    decrypt: HashMap<EntryId, DecryptEntry>,
    /// Increases on every use; the entry with the smallest is evicted.
    tick: u64,
    stats: CacheStats,
}

/// What is kept of encryption materials. Not `Clone` or `Debug`: it holds
/// the data key and the signing key.
struct EncryptEntry {
    suite: AlgorithmSuite,
    context: EncryptionContext,
    data_key: Zeroizing<Vec<u8>>,
    encrypted_data_keys: Vec<EncryptedDataKey>,
    signing_key: Option<Zeroizing<Vec<u8>>>,
    created: Instant,
    messages: u64,
    bytes: u64,
    last_used: u64,
}

struct DecryptEntry {
    data_key: Zeroizing<Vec<u8>>,
    verification_key: Option<Vec<u8>>,
    created: Instant,
    last_used: u64,
}

impl EncryptEntry {
    fn materials(&self) -> EncryptionMaterials {
        EncryptionMaterials {
            suite: self.suite,
            context: self.context.clone(),
            data_key: Zeroizing::new(self.data_key.to_vec()),
            encrypted_data_keys: self.encrypted_data_keys.clone(),
            signing_key: self.signing_key.as_ref().map(|pkcs8| SigningKey {
                pkcs8: Zeroizing::new(pkcs8.to_vec()),
            }),
        }
    }
}

impl<M: MaterialsManager> CachingMaterialsManager<M> {
    /// Caches `inner`'s materials within `limits`. `max_messages` and
    /// `capacity` must be at least 1 and `max_age` non-zero.
    pub fn new(inner: M, limits: CacheLimits) -> Result<Self, Error> {
        CachingMaterialsManager::with_clock(inner, limits, Box::new(SystemClock))
    }

    /// As [`new`](Self::new), reading the time from `clock`.
    pub fn with_clock(inner: M, limits: CacheLimits, clock: Box<dyn Clock>) -> Result<Self, Error> {
        if limits.max_messages == 0 || limits.capacity == 0 || limits.max_age.is_zero() {
            return Err(Error::Config(
                "cache limits: max_messages, capacity and max_age must be non-zero".into(),
            ));
        }
        Ok(CachingMaterialsManager {
            inner,
            limits,
            clock,
            state: Mutex::new(State::default()),
        })
    }
}

impl<M> CachingMaterialsManager<M> {
    /// The wrapped manager.
    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// The counters, and how many entries are held now.
    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        let mut stats = state.stats;
        stats.entries = state.encrypt.len() + state.decrypt.len();
        stats
    }

    /// Drops every entry (zeroizing the keys); the counters stay.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.encrypt.clear();
        state.decrypt.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave an entry half-made
        // (entries are inserted whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl<M: MaterialsManager> MaterialsManager for CachingMaterialsManager<M> {
    async fn encryption_materials(
        &self,
        request: EncryptionRequest<'_>,
    ) -> Result<EncryptionMaterials, Error> {
        let length = match request.plaintext_length {
            Some(n) if n <= self.limits.max_bytes => n,
            _ => {
                self.lock().stats.encrypt_bypassed += 1;
                return self.inner.encryption_materials(request).await;
            }
        };
        let id = encrypt_id(request.suite, request.context);
        {
            let now = self.clock.now();
            let mut guard = self.lock();
            let state = &mut *guard;
            state.tick += 1;
            let tick = state.tick;
            if let Some(entry) = state.encrypt.get_mut(&id) {
                let fresh = now.saturating_duration_since(entry.created) < self.limits.max_age;
                let fits = entry.messages < self.limits.max_messages
                    && entry
                        .bytes
                        .checked_add(length)
                        .is_some_and(|b| b <= self.limits.max_bytes);
                if fresh && fits {
                    entry.messages += 1;
                    entry.bytes += length;
                    entry.last_used = tick;
                    state.stats.encrypt_hits += 1;
                    return Ok(entry.materials());
                }
                // Used up or expired: its key is not used again.
                state.encrypt.remove(&id);
            }
            state.stats.encrypt_misses += 1;
        }

        let materials = self.inner.encryption_materials(request).await?;
        let entry = EncryptEntry {
            suite: materials.suite,
            context: materials.context.clone(),
            data_key: Zeroizing::new(materials.data_key.to_vec()),
            encrypted_data_keys: materials.encrypted_data_keys.clone(),
            signing_key: materials
                .signing_key
                .as_ref()
                .map(|k| Zeroizing::new(k.pkcs8.to_vec())),
            created: self.clock.now(),
            messages: 1,
            bytes: length,
            last_used: 0,
        };
        let mut guard = self.lock();
        let state = &mut *guard;
        state.tick += 1;
        let entry = EncryptEntry {
            last_used: state.tick,
            ..entry
        };
        // Another task may have filled the slot meanwhile; the newer entry
        // wins, the older key is simply not reused further.
        state.encrypt.insert(id, entry);
        let evicted = evict(&mut state.encrypt, self.limits.capacity, |e| e.last_used);
        state.stats.evictions += evicted;
        Ok(materials)
    }

    async fn decryption_materials(
        &self,
        request: DecryptionRequest<'_>,
    ) -> Result<DecryptionMaterials, Error> {
        let id = decrypt_id(request.suite, request.context, request.encrypted_data_keys);
        {
            let now = self.clock.now();
            let mut guard = self.lock();
            let state = &mut *guard;
            state.tick += 1;
            let tick = state.tick;
            if let Some(entry) = state.decrypt.get_mut(&id) {
                if now.saturating_duration_since(entry.created) < self.limits.max_age {
                    entry.last_used = tick;
                    state.stats.decrypt_hits += 1;
                    return Ok(DecryptionMaterials {
                        data_key: Zeroizing::new(entry.data_key.to_vec()),
                        verification_key: entry.verification_key.clone(),
                    });
                }
                state.decrypt.remove(&id);
            }
            state.stats.decrypt_misses += 1;
        }

        let materials = self.inner.decryption_materials(request).await?;
        let created = self.clock.now();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.tick += 1;
        let entry = DecryptEntry {
            data_key: Zeroizing::new(materials.data_key.to_vec()),
            verification_key: materials.verification_key.clone(),
            created,
            last_used: state.tick,
        };
        state.decrypt.insert(id, entry);
        let evicted = evict(&mut state.decrypt, self.limits.capacity, |e| e.last_used);
        state.stats.evictions += evicted;
        Ok(materials)
    }
}

/// Removes least recently used entries until at most `capacity` remain;
/// returns how many went. A linear scan: capacities are small, and this
/// runs only on inserts (misses), which cost a key-service call anyway.
fn evict<E>(map: &mut HashMap<EntryId, E>, capacity: usize, last_used: impl Fn(&E) -> u64) -> u64 {
    let mut evicted = 0;
    while map.len() > capacity {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, e)| last_used(e))
            .map(|(id, _)| *id)
        else {
            break;
        };
        map.remove(&oldest);
        evicted += 1;
    }
    evicted
}

/// Feeds `bytes` with its length first, so that no two different
/// sequences of fields hash the same input.
fn put(ctx: &mut digest::Context, bytes: &[u8]) {
    ctx.update(&(bytes.len() as u64).to_be_bytes());
    ctx.update(bytes);
}

fn put_context(ctx: &mut digest::Context, context: &EncryptionContext) {
    ctx.update(&(context.len() as u64).to_be_bytes());
    // A BTreeMap iterates sorted by key: one encoding per context.
    for (k, v) in context {
        put(ctx, k.as_bytes());
        put(ctx, v.as_bytes());
    }
}

fn encrypt_id(suite: AlgorithmSuite, context: &EncryptionContext) -> EntryId {
    let mut ctx = digest::Context::new(&digest::SHA512);
    ctx.update(b"keywarden-envelope cache: encrypt\0");
    ctx.update(&suite.id().to_be_bytes());
    put_context(&mut ctx, context);
    to_id(ctx.finish())
}

fn decrypt_id(
    suite: AlgorithmSuite,
    context: &EncryptionContext,
    edks: &[EncryptedDataKey],
) -> EntryId {
    // A set: the same keys in another order are the same entry.
    let mut digests: Vec<EntryId> = edks
        .iter()
        .map(|edk| {
            let mut ctx = digest::Context::new(&digest::SHA512);
            put(&mut ctx, edk.provider_id.as_bytes());
            put(&mut ctx, &edk.provider_info);
            put(&mut ctx, &edk.ciphertext);
            to_id(ctx.finish())
        })
        .collect();
    digests.sort_unstable();
    digests.dedup();
    let mut ctx = digest::Context::new(&digest::SHA512);
    ctx.update(b"keywarden-envelope cache: decrypt\0");
    ctx.update(&suite.id().to_be_bytes());
    put_context(&mut ctx, context);
    ctx.update(&(digests.len() as u64).to_be_bytes());
    for d in &digests {
        ctx.update(d);
    }
    to_id(ctx.finish())
}

fn to_id(d: digest::Digest) -> EntryId {
    let mut id = [0u8; 64];
    id.copy_from_slice(d.as_ref());
    id
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    const UNSIGNED: AlgorithmSuite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKey;
    const SIGNED: AlgorithmSuite = AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384;

    /// A manager that counts its calls and makes a distinct data key each
    /// time (the call number), with a fake signing key for signed suites.
    #[derive(Default)]
    struct Counting {
        encrypt_calls: AtomicU64,
        decrypt_calls: AtomicU64,
    }

    #[async_trait]
    impl MaterialsManager for Counting {
        async fn encryption_materials(
            &self,
            request: EncryptionRequest<'_>,
        ) -> Result<EncryptionMaterials, Error> {
            let n = self.encrypt_calls.fetch_add(1, Ordering::SeqCst) + 1;
            let mut context = request.context.clone();
            if request.suite.is_signed() {
                context.insert("aws-crypto-public-key".into(), format!("pk{n}"));
            }
            Ok(EncryptionMaterials {
                suite: request.suite,
                context,
                data_key: Zeroizing::new(vec![n as u8; 32]),
                encrypted_data_keys: vec![EncryptedDataKey {
                    provider_id: "count".into(),
                    provider_info: n.to_string().into_bytes(),
                    ciphertext: vec![n as u8],
                }],
                signing_key: request.suite.is_signed().then(|| SigningKey {
                    pkcs8: Zeroizing::new(vec![n as u8; 8]),
                }),
            })
        }

        async fn decryption_materials(
            &self,
            request: DecryptionRequest<'_>,
        ) -> Result<DecryptionMaterials, Error> {
            self.decrypt_calls.fetch_add(1, Ordering::SeqCst);
            Ok(DecryptionMaterials {
                data_key: Zeroizing::new(request.encrypted_data_keys[0].ciphertext.repeat(32)),
                verification_key: None,
            })
        }
    }

    #[derive(Clone)]
    struct ManualClock(Arc<Mutex<Instant>>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn cache(limits: CacheLimits) -> (CachingMaterialsManager<Counting>, ManualClock) {
        let clock = ManualClock(Arc::new(Mutex::new(Instant::now())));
        let c = CachingMaterialsManager::with_clock(
            Counting::default(),
            limits,
            Box::new(clock.clone()),
        )
        .unwrap();
        (c, clock)
    }

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    async fn enc(
        c: &CachingMaterialsManager<Counting>,
        suite: AlgorithmSuite,
        context: &EncryptionContext,
        len: Option<u64>,
    ) -> EncryptionMaterials {
        c.encryption_materials(EncryptionRequest {
            suite,
            context,
            plaintext_length: len,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn reuses_within_message_limit_and_reports_hit_rate() {
        let (c, _) = cache(CacheLimits {
            max_messages: 10,
            ..CacheLimits::default()
        });
        let context = ctx(&[("tenant", "a")]);
        let mut keys = Vec::new();
        for _ in 0..100 {
            keys.push(enc(&c, SIGNED, &context, Some(100)).await.data_key[0]);
        }
        // 100 messages, 10 per data key: 10 calls, 90 hits.
        assert_eq!(c.inner().encrypt_calls.load(Ordering::SeqCst), 10);
        let s = c.stats();
        assert_eq!((s.encrypt_hits, s.encrypt_misses), (90, 10));
        assert_eq!(s.hits() as f64 / (s.hits() + s.misses()) as f64, 0.9);
        for (i, chunk) in keys.chunks(10).enumerate() {
            assert!(chunk.iter().all(|k| *k == i as u8 + 1), "{keys:?}");
        }
    }

    #[tokio::test]
    async fn cached_materials_are_complete_copies() {
        let (c, _) = cache(CacheLimits::default());
        let context = ctx(&[("a", "1")]);
        let first = enc(&c, SIGNED, &context, Some(1)).await;
        let again = enc(&c, SIGNED, &context, Some(1)).await;
        assert_eq!(c.stats().encrypt_hits, 1);
        assert_eq!(first.context, again.context);
        assert_eq!(first.context.get("aws-crypto-public-key").unwrap(), "pk1");
        assert_eq!(*first.data_key, *again.data_key);
        assert_eq!(first.encrypted_data_keys, again.encrypted_data_keys);
        assert_eq!(
            *first.signing_key.unwrap().pkcs8,
            *again.signing_key.unwrap().pkcs8
        );
    }

    #[tokio::test]
    async fn never_across_contexts_or_suites() {
        let (c, _) = cache(CacheLimits::default());
        let a = enc(&c, UNSIGNED, &ctx(&[("k", "a")]), Some(1)).await;
        let b = enc(&c, UNSIGNED, &ctx(&[("k", "b")]), Some(1)).await;
        let empty = enc(&c, UNSIGNED, &ctx(&[]), Some(1)).await;
        let signed = enc(&c, SIGNED, &ctx(&[("k", "a")]), Some(1)).await;
        // Field boundaries are part of the id: ("ab","c") is not ("a","bc").
        let x = enc(&c, UNSIGNED, &ctx(&[("ab", "c")]), Some(1)).await;
        let y = enc(&c, UNSIGNED, &ctx(&[("a", "bc")]), Some(1)).await;
        let keys = [a, b, empty, signed, x, y].map(|m| m.data_key[0]);
        assert_eq!(keys, [1, 2, 3, 4, 5, 6]);
        assert_eq!(c.stats().encrypt_hits, 0);
        let again = enc(&c, UNSIGNED, &ctx(&[("k", "b")]), Some(1)).await;
        assert_eq!(again.data_key[0], 2);
    }

    #[tokio::test]
    async fn byte_limit_and_unknown_length() {
        let (c, _) = cache(CacheLimits {
            max_bytes: 1000,
            ..CacheLimits::default()
        });
        let context = ctx(&[]);
        assert_eq!(enc(&c, UNSIGNED, &context, Some(600)).await.data_key[0], 1);
        // 600 + 600 > 1000: a new key.
        assert_eq!(enc(&c, UNSIGNED, &context, Some(600)).await.data_key[0], 2);
        assert_eq!(enc(&c, UNSIGNED, &context, Some(400)).await.data_key[0], 2);
        assert_eq!(enc(&c, UNSIGNED, &context, Some(1)).await.data_key[0], 3);
        // Unknown length or more than the limit: never cached.
        assert_eq!(enc(&c, UNSIGNED, &context, None).await.data_key[0], 4);
        assert_eq!(enc(&c, UNSIGNED, &context, Some(1001)).await.data_key[0], 5);
        assert_eq!(enc(&c, UNSIGNED, &context, Some(1)).await.data_key[0], 3);
        let s = c.stats();
        assert_eq!(
            (s.encrypt_hits, s.encrypt_misses, s.encrypt_bypassed),
            (2, 3, 2)
        );
    }

    #[tokio::test]
    async fn entries_expire() {
        let (c, clock) = cache(CacheLimits {
            max_age: Duration::from_secs(60),
            ..CacheLimits::default()
        });
        let context = ctx(&[]);
        assert_eq!(enc(&c, UNSIGNED, &context, Some(1)).await.data_key[0], 1);
        clock.advance(Duration::from_secs(59));
        assert_eq!(enc(&c, UNSIGNED, &context, Some(1)).await.data_key[0], 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(enc(&c, UNSIGNED, &context, Some(1)).await.data_key[0], 2);

        let edks = [EncryptedDataKey {
            provider_id: "count".into(),
            provider_info: b"1".to_vec(),
            ciphertext: vec![7],
        }];
        let req = DecryptionRequest {
            suite: UNSIGNED,
            context: &context,
            encrypted_data_keys: &edks,
        };
        c.decryption_materials(req).await.unwrap();
        c.decryption_materials(req).await.unwrap();
        clock.advance(Duration::from_secs(60));
        c.decryption_materials(req).await.unwrap();
        assert_eq!(c.inner().decrypt_calls.load(Ordering::SeqCst), 2);
        assert_eq!(c.stats().decrypt_hits, 1);
    }

    #[tokio::test]
    async fn decryption_keyed_by_context_and_edk_set() {
        let (c, _) = cache(CacheLimits::default());
        let edk = |n: u8| EncryptedDataKey {
            provider_id: "count".into(),
            provider_info: vec![n],
            ciphertext: vec![n],
        };
        let ab = [edk(1), edk(2)];
        let ba = [edk(2), edk(1)];
        let a = [edk(1)];
        let c1 = ctx(&[("k", "1")]);
        let c2 = ctx(&[("k", "2")]);
        for (context, edks) in [
            (&c1, &ab[..]),
            (&c1, &ba[..]),
            (&c1, &a[..]),
            (&c2, &ab[..]),
        ] {
            c.decryption_materials(DecryptionRequest {
                suite: UNSIGNED,
                context,
                encrypted_data_keys: edks,
            })
            .await
            .unwrap();
        }
        // Only the reordered set was a hit.
        let s = c.stats();
        assert_eq!((s.decrypt_hits, s.decrypt_misses), (1, 3));
    }

    #[tokio::test]
    async fn capacity_evicts_least_recently_used() {
        let (c, _) = cache(CacheLimits {
            capacity: 2,
            ..CacheLimits::default()
        });
        let (x, y, z) = (ctx(&[("n", "x")]), ctx(&[("n", "y")]), ctx(&[("n", "z")]));
        enc(&c, UNSIGNED, &x, Some(1)).await; // key 1
        enc(&c, UNSIGNED, &y, Some(1)).await; // key 2
        enc(&c, UNSIGNED, &x, Some(1)).await; // hit: x is now the most recent
        enc(&c, UNSIGNED, &z, Some(1)).await; // key 3, evicts y
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.stats().entries, 2);
        assert_eq!(enc(&c, UNSIGNED, &x, Some(1)).await.data_key[0], 1);
        assert_eq!(enc(&c, UNSIGNED, &y, Some(1)).await.data_key[0], 4);
    }

    /// A keyring that counts its calls; its "encrypted" data key is the
    /// data key itself (test only).
    #[derive(Default)]
    struct CountingKeyring {
        encrypts: AtomicU64,
        decrypts: AtomicU64,
    }

    #[async_trait]
    impl crate::materials::Keyring for CountingKeyring {
        async fn on_encrypt(
            &self,
            suite: AlgorithmSuite,
            _context: &EncryptionContext,
        ) -> Result<(Zeroizing<Vec<u8>>, Vec<EncryptedDataKey>), Error> {
            let n = self.encrypts.fetch_add(1, Ordering::SeqCst) as u8 + 1;
            let key = vec![n; suite.data_key_len()];
            let edk = EncryptedDataKey {
                provider_id: "counting".into(),
                provider_info: vec![n],
                ciphertext: key.clone(),
            };
            Ok((Zeroizing::new(key), vec![edk]))
        }

        async fn on_decrypt(
            &self,
            request: DecryptionRequest<'_>,
        ) -> Result<Zeroizing<Vec<u8>>, Error> {
            self.decrypts.fetch_add(1, Ordering::SeqCst);
            Ok(Zeroizing::new(
                request.encrypted_data_keys[0].ciphertext.clone(),
            ))
        }
    }

    #[tokio::test]
    async fn hit_rate_with_a_counting_keyring_and_real_messages() {
        use crate::materials::DefaultMaterialsManager;
        use crate::stream::{decrypt_to_vec, encrypt_to_vec, DecryptOptions, EncryptOptions};

        let c = CachingMaterialsManager::new(
            DefaultMaterialsManager::new(CountingKeyring::default()),
            CacheLimits {
                max_messages: 8,
                ..CacheLimits::default()
            },
        )
        .unwrap();
        let context = ctx(&[("tenant", "a")]);
        for suite in [UNSIGNED, SIGNED] {
            let options = EncryptOptions {
                suite,
                ..EncryptOptions::default()
            };
            let mut messages = Vec::new();
            for i in 0..32usize {
                let plain = vec![i as u8; 100 + i];
                let (message, _) = encrypt_to_vec(&c, &context, &options, &plain)
                    .await
                    .unwrap();
                messages.push((plain, message));
            }
            for (plain, message) in &messages {
                let (back, _) = decrypt_to_vec(&c, &DecryptOptions::default(), message)
                    .await
                    .unwrap();
                assert_eq!(&back, plain);
            }
        }
        // Per suite: 32 messages at 8 per data key = 4 keyring calls to
        // encrypt and 4 to decrypt (one per distinct data key).
        let keyring = c.inner().keyring();
        assert_eq!(keyring.encrypts.load(Ordering::SeqCst), 8);
        assert_eq!(keyring.decrypts.load(Ordering::SeqCst), 8);
        let s = c.stats();
        assert_eq!((s.encrypt_hits, s.encrypt_misses), (56, 8));
        assert_eq!((s.decrypt_hits, s.decrypt_misses), (56, 8));
        assert_eq!(s.hits() as f64 / (s.hits() + s.misses()) as f64, 0.875);
    }

    #[test]
    fn limits_must_be_non_zero() {
        for limits in [
            CacheLimits {
                max_messages: 0,
                ..CacheLimits::default()
            },
            CacheLimits {
                capacity: 0,
                ..CacheLimits::default()
            },
            CacheLimits {
                max_age: Duration::ZERO,
                ..CacheLimits::default()
            },
        ] {
            assert!(CachingMaterialsManager::new(Counting::default(), limits).is_err());
        }
    }
}
