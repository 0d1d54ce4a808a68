//! Caches on the hot path: key records with their unwrapped key handles,
//! alias targets, and credential secrets.
//!
//! Invalidation rules (caches of unwrapped keys are invalidated on disable,
//! deletion, rotation and import; ARCHITECTURE.md, `cache.rs`):
//! * every change this process makes through [`crate::Kms`] invalidates the
//!   entries it touches before the call returns (disable, deletion,
//!   alias changes, credential revocation, ...);
//! * changes made elsewhere (the `keywarden admin` CLI, other nodes) are
//!   picked up by [`crate::Kms::refresh_caches`], which the server calls
//!   periodically: when the store's change stamp moves, everything is dropped;
//! * a value read from the store is only inserted if no invalidation
//!   happened since the read began (the epoch check), so a slow reader can
//!   never put back a record that an invalidation already removed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::ids::{AccountId, AliasName, KeyId};
use crate::model::{GrantRecord, KeyRecord};
use crate::ops::accounts::ActiveCredential;
use crate::protector::{KeyHandle, SpecHandle};

/// Entries per map before the map is emptied (a crude bound on memory).
const MAX_ENTRIES: usize = 100_000;

/// A key record and the handles of its versions loaded so far.
pub(crate) struct CachedKey {
    pub(crate) record: Arc<KeyRecord>,
    /// Shared with the entry's regional views (a multi-Region key's
    /// regions share its material).
    handles: Arc<RwLock<HashMap<u32, Arc<dyn KeyHandle>>>>,
    /// The loaded private key of a key of another spec (one version).
    spec_handle: Arc<std::sync::OnceLock<Arc<SpecHandle>>>,
}

impl CachedKey {
    pub(crate) fn new(record: KeyRecord) -> Self {
        CachedKey {
            record: Arc::new(record),
            handles: Arc::new(RwLock::new(HashMap::new())),
            spec_handle: Arc::new(std::sync::OnceLock::new()),
        }
    }

    /// Another region's view of the same key (`KeyRecord::in_region`),
    /// sharing this entry's loaded handles.
    pub(crate) fn view(&self, record: KeyRecord) -> Self {
        CachedKey {
            record: Arc::new(record),
            handles: Arc::clone(&self.handles),
            spec_handle: Arc::clone(&self.spec_handle),
        }
    }

    pub(crate) fn spec_handle(&self) -> Option<Arc<SpecHandle>> {
        self.spec_handle.get().cloned()
    }

    pub(crate) fn put_spec_handle(&self, handle: Arc<SpecHandle>) -> Arc<SpecHandle> {
        self.spec_handle.get_or_init(|| handle).clone()
    }

    pub(crate) fn handle(&self, version: u32) -> Option<Arc<dyn KeyHandle>> {
        read(&self.handles).get(&version).cloned()
    }

    pub(crate) fn put_handle(&self, version: u32, handle: Arc<dyn KeyHandle>) {
        write(&self.handles).insert(version, handle);
    }
}

type KeyMap = HashMap<(AccountId, KeyId), Arc<CachedKey>>;
/// Alias targets by account, region (`None`: the home region) and name.
type AliasMap = HashMap<(AccountId, Option<String>, AliasName), KeyId>;
/// Parsed key policies by key and revision (key ids are unique across
/// accounts, so the lookup needs no account and allocates nothing).
type KeyPolicyMap = HashMap<(KeyId, u64), Arc<crate::authz::CachedKeyPolicy>>;
/// Parsed identity policies by account and user or role.
type IdentityPolicyMap =
    HashMap<(AccountId, crate::iam::IamOwner), Arc<Vec<crate::policy::PolicyDocument>>>;
/// The names of the aliases pointing at a key (`kms:ResourceAliases`).
type ResourceAliasMap = HashMap<(AccountId, KeyId), Arc<Vec<String>>>;
/// A key's grants to one grantee principal.
type GrantMap = HashMap<(AccountId, KeyId, String), Arc<Vec<GrantRecord>>>;

#[derive(Default)]
pub(crate) struct Caches {
    epoch: AtomicU64,
    keys: RwLock<KeyMap>,
    aliases: RwLock<AliasMap>,
    resource_aliases: RwLock<ResourceAliasMap>,
    key_policies: RwLock<KeyPolicyMap>,
    identity_policies: RwLock<IdentityPolicyMap>,
    credentials: RwLock<HashMap<String, Arc<ActiveCredential>>>,
    grants: RwLock<GrantMap>,
    frozen: RwLock<HashMap<AccountId, bool>>,
    stamp: Mutex<Option<u64>>,
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn bounded_insert<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(k, v);
}

impl Caches {
    /// Read before going to the store; pass to the `put_*` methods.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn key(&self, account: &AccountId, key: &KeyId) -> Option<Arc<CachedKey>> {
        read(&self.keys).get(&(account.clone(), *key)).cloned()
    }

    /// Inserts unless an invalidation happened since `epoch` was read.
    pub(crate) fn put_key(&self, epoch: u64, entry: Arc<CachedKey>) {
        let mut map = write(&self.keys);
        if self.epoch() == epoch {
            let k = (entry.record.account_id.clone(), entry.record.key_id);
            bounded_insert(&mut map, k, entry);
        }
    }

    pub(crate) fn alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        alias: &AliasName,
    ) -> Option<KeyId> {
        read(&self.aliases)
            .get(&(account.clone(), region.map(str::to_owned), alias.clone()))
            .copied()
    }

    pub(crate) fn put_alias(
        &self,
        epoch: u64,
        account: &AccountId,
        region: Option<&str>,
        alias: &AliasName,
        key: KeyId,
    ) {
        let mut map = write(&self.aliases);
        if self.epoch() == epoch {
            bounded_insert(
                &mut map,
                (account.clone(), region.map(str::to_owned), alias.clone()),
                key,
            );
        }
    }

    /// The aliases pointing at a key, if cached.
    pub(crate) fn resource_aliases(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Option<Arc<Vec<String>>> {
        read(&self.resource_aliases)
            .get(&(account.clone(), *key))
            .cloned()
    }

    /// Inserts unless an invalidation happened since `epoch` was read.
    pub(crate) fn put_resource_aliases(
        &self,
        epoch: u64,
        account: &AccountId,
        key: &KeyId,
        names: Arc<Vec<String>>,
    ) {
        let mut map = write(&self.resource_aliases);
        if self.epoch() == epoch {
            bounded_insert(&mut map, (account.clone(), *key), names);
        }
    }

    pub(crate) fn credential(&self, access_key_id: &str) -> Option<Arc<ActiveCredential>> {
        read(&self.credentials).get(access_key_id).cloned()
    }

    pub(crate) fn put_credential(&self, epoch: u64, access_key_id: &str, c: Arc<ActiveCredential>) {
        let mut map = write(&self.credentials);
        if self.epoch() == epoch {
            bounded_insert(&mut map, access_key_id.to_owned(), c);
        }
    }

    /// Whether an account is frozen, if known.
    pub(crate) fn frozen(&self, account: &AccountId) -> Option<bool> {
        read(&self.frozen).get(account).copied()
    }

    pub(crate) fn put_frozen(&self, epoch: u64, account: &AccountId, frozen: bool) {
        let mut map = write(&self.frozen);
        if self.epoch() == epoch {
            bounded_insert(&mut map, account.clone(), frozen);
        }
    }

    /// Drops an account's frozen flag (after a top-up or a charge here).
    pub(crate) fn invalidate_frozen(&self, account: &AccountId) {
        let mut map = write(&self.frozen);
        self.bump();
        map.remove(account);
    }

    pub(crate) fn grants(
        &self,
        account: &AccountId,
        key: &KeyId,
        grantee: &str,
    ) -> Option<Arc<Vec<GrantRecord>>> {
        read(&self.grants)
            .get(&(account.clone(), *key, grantee.to_owned()))
            .cloned()
    }

    pub(crate) fn put_grants(
        &self,
        epoch: u64,
        account: &AccountId,
        key: &KeyId,
        grantee: &str,
        grants: Arc<Vec<GrantRecord>>,
    ) {
        let mut map = write(&self.grants);
        if self.epoch() == epoch {
            bounded_insert(
                &mut map,
                (account.clone(), *key, grantee.to_owned()),
                grants,
            );
        }
    }

    /// Drops one key and its grants (after this process changed or
    /// destroyed it, or changed its grants).
    pub(crate) fn invalidate_key(&self, account: &AccountId, key: &KeyId) {
        let mut map = write(&self.keys);
        let mut grants = write(&self.grants);
        self.bump();
        map.remove(&(account.clone(), *key));
        grants.retain(|(a, k, _), _| !(a == account && k == key));
    }

    /// Drops one alias (after this process created, changed or deleted
    /// it), and the alias lists of the account's keys (the alias may have
    /// left one key for another).
    pub(crate) fn invalidate_alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        alias: &AliasName,
    ) {
        let mut map = write(&self.aliases);
        let mut lists = write(&self.resource_aliases);
        self.bump();
        map.remove(&(account.clone(), region.map(str::to_owned), alias.clone()));
        lists.retain(|(a, _), _| a != account);
    }

    /// Drops every alias of an account pointing at `key` (its destruction).
    pub(crate) fn invalidate_aliases_of(&self, account: &AccountId, key: &KeyId) {
        let mut map = write(&self.aliases);
        let mut lists = write(&self.resource_aliases);
        self.bump();
        map.retain(|(a, _, _), target| !(a == account && target == key));
        lists.remove(&(account.clone(), *key));
    }

    /// Drops one credential (after revocation).
    pub(crate) fn invalidate_credential(&self, access_key_id: &str) {
        let mut map = write(&self.credentials);
        self.bump();
        map.remove(access_key_id);
    }

    pub(crate) fn key_policy(
        &self,
        key: &KeyId,
        revision: u64,
    ) -> Option<Arc<crate::authz::CachedKeyPolicy>> {
        read(&self.key_policies).get(&(*key, revision)).cloned()
    }

    /// Inserts a parsed key policy. Keyed by revision, an entry can never
    /// be stale, so no epoch check is needed.
    pub(crate) fn put_key_policy(
        &self,
        key: &KeyId,
        revision: u64,
        policy: Arc<crate::authz::CachedKeyPolicy>,
    ) {
        bounded_insert(&mut write(&self.key_policies), (*key, revision), policy);
    }

    pub(crate) fn identity_policies(
        &self,
        account: &AccountId,
        owner: &crate::iam::IamOwner,
    ) -> Option<Arc<Vec<crate::policy::PolicyDocument>>> {
        read(&self.identity_policies)
            .get(&(account.clone(), owner.clone()))
            .cloned()
    }

    pub(crate) fn put_identity_policies(
        &self,
        epoch: u64,
        account: &AccountId,
        owner: &crate::iam::IamOwner,
        docs: Arc<Vec<crate::policy::PolicyDocument>>,
    ) {
        let mut map = write(&self.identity_policies);
        if self.epoch() == epoch {
            bounded_insert(&mut map, (account.clone(), owner.clone()), docs);
        }
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        let mut k = write(&self.keys);
        let mut a = write(&self.aliases);
        let mut ra = write(&self.resource_aliases);
        let mut c = write(&self.credentials);
        let mut g = write(&self.grants);
        let mut f = write(&self.frozen);
        let mut ip = write(&self.identity_policies);
        self.bump();
        ip.clear();
        k.clear();
        a.clear();
        ra.clear();
        c.clear();
        g.clear();
        f.clear();
    }

    /// Records the store's change stamp; `true` if it moved since last time
    /// (and the caches were cleared).
    pub(crate) fn observe_stamp(&self, stamp: u64) -> bool {
        let mut last = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        let moved = last.is_some_and(|l| l != stamp);
        *last = Some(stamp);
        if moved {
            self.clear();
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::UnixMillis;
    use crate::model::{KeyManager, KeyState, Origin};

    fn record(account: &AccountId, n: u8) -> KeyRecord {
        KeyRecord {
            key_id: KeyId::from_bytes([n; 16]),
            account_id: account.clone(),
            revision: 1,
            description: String::new(),
            state: KeyState::Enabled,
            origin: Origin::AwsKms,
            key_manager: KeyManager::Customer,
            created_at: UnixMillis(0),
            deletion_date: None,
            pending_window_days: None,
            tags: vec![],
            policy: None,
            versions: vec![],
            rotation: None,
            on_demand_rotations: 0,
            deletion_protection: false,
            import: None,
            default_for: None,
            kind: crate::key_spec::KeyKind::default(),
            region: None,
            multi_region: None,
        }
    }

    #[test]
    fn a_read_that_raced_an_invalidation_is_not_cached() {
        let c = Caches::default();
        let acct = AccountId::parse("111122223333").unwrap();
        let r = record(&acct, 1);
        let id = r.key_id;
        let epoch = c.epoch();
        // Another task invalidates while this one was reading the store.
        c.invalidate_key(&acct, &id);
        c.put_key(epoch, Arc::new(CachedKey::new(r.clone())));
        assert!(c.key(&acct, &id).is_none());
        // A read that started after the invalidation is cached.
        let epoch = c.epoch();
        c.put_key(epoch, Arc::new(CachedKey::new(r)));
        assert!(c.key(&acct, &id).is_some());
    }

    #[test]
    fn entries_are_per_account() {
        let c = Caches::default();
        let a = AccountId::parse("111122223333").unwrap();
        let b = AccountId::parse("444455556666").unwrap();
        let r = record(&a, 2);
        let id = r.key_id;
        c.put_key(c.epoch(), Arc::new(CachedKey::new(r)));
        assert!(c.key(&a, &id).is_some());
        assert!(c.key(&b, &id).is_none());
    }

    #[test]
    fn a_moved_stamp_clears_everything() {
        let c = Caches::default();
        let a = AccountId::parse("111122223333").unwrap();
        c.put_key(c.epoch(), Arc::new(CachedKey::new(record(&a, 3))));
        assert!(!c.observe_stamp(5), "first observation only records");
        assert!(!c.observe_stamp(5));
        assert!(c.key(&a, &KeyId::from_bytes([3; 16])).is_some());
        assert!(c.observe_stamp(6));
        assert!(c.key(&a, &KeyId::from_bytes([3; 16])).is_none());
    }

    #[test]
    fn alias_targets_are_per_region() {
        let c = Caches::default();
        let a = AccountId::parse("111122223333").unwrap();
        let name = AliasName::parse_user("alias/x").unwrap();
        let (k1, k2) = (KeyId::from_bytes([4; 16]), KeyId::from_bytes([5; 16]));
        c.put_alias(c.epoch(), &a, None, &name, k1);
        c.put_alias(c.epoch(), &a, Some("eu-west-1"), &name, k2);
        assert_eq!(c.alias(&a, None, &name), Some(k1));
        assert_eq!(c.alias(&a, Some("eu-west-1"), &name), Some(k2));
        assert_eq!(c.alias(&a, Some("ap-south-1"), &name), None);
        c.invalidate_alias(&a, Some("eu-west-1"), &name);
        assert_eq!(c.alias(&a, Some("eu-west-1"), &name), None);
        assert_eq!(c.alias(&a, None, &name), Some(k1));
    }

    #[test]
    fn alias_lists_go_with_any_alias_change_in_their_account() {
        let c = Caches::default();
        let a = AccountId::parse("111122223333").unwrap();
        let b = AccountId::parse("444455556666").unwrap();
        let (k1, k2) = (KeyId::from_bytes([4; 16]), KeyId::from_bytes([5; 16]));
        let names = || Arc::new(vec!["alias/x".to_owned()]);
        c.put_resource_aliases(c.epoch(), &a, &k1, names());
        c.put_resource_aliases(c.epoch(), &a, &k2, names());
        c.put_resource_aliases(c.epoch(), &b, &k1, names());
        // An alias of account a moved: every list of a goes, b's stays.
        c.invalidate_alias(&a, None, &AliasName::parse_user("alias/y").unwrap());
        assert!(c.resource_aliases(&a, &k1).is_none());
        assert!(c.resource_aliases(&a, &k2).is_none());
        assert!(c.resource_aliases(&b, &k1).is_some());
        // A list read before an alias change is not cached.
        let epoch = c.epoch();
        c.invalidate_alias(&b, None, &AliasName::parse_user("alias/z").unwrap());
        c.put_resource_aliases(epoch, &a, &k1, names());
        assert!(c.resource_aliases(&a, &k1).is_none());
        // A key's destruction and a moved stamp drop them too.
        c.put_resource_aliases(c.epoch(), &a, &k1, names());
        c.invalidate_aliases_of(&a, &k1);
        assert!(c.resource_aliases(&a, &k1).is_none());
        c.put_resource_aliases(c.epoch(), &a, &k2, names());
        assert!(!c.observe_stamp(1));
        assert!(c.observe_stamp(2));
        assert!(c.resource_aliases(&a, &k2).is_none());
    }
}
