//! The ManualClock fixture: a `Kms` on an injected [`ManualClock`], the real
//! SQLite store (or any store) and the software protector under a fixed
//! root key, so a test moves time by days in microseconds. Several `Kms`
//! values ("nodes") may share a store and a clock, as processes share a
//! database and real time.

use std::path::PathBuf;
use std::sync::Arc;

use keywarden_core::clock::{ManualClock, UnixMillis};
use keywarden_core::kms::KmsParts;
use keywarden_core::model::Origin;
use keywarden_core::ops::create_key::CreateKeyRequest;
use keywarden_core::store::Store;
use keywarden_core::{Caller, Kms, KmsConfig};
use keywarden_protector_soft::{RootKey, SoftwareProtector, SystemRandom};
use keywarden_store_sqlite::SqliteStore;

/// Where the manual clocks start (2023-11-14T22:13:20Z).
pub const START: UnixMillis = UnixMillis(1_700_000_000_000);

/// The root key every node of a fixture shares (a test value; what matters
/// is that the nodes agree).
pub fn root_key() -> Arc<RootKey> {
    Arc::new(RootKey::from_bytes(&[9u8; 32]))
}

/// One service ("node") on `store`, with [`root_key`], the software
/// protector and `clock`; the default configuration. Add importers,
/// billing or custom key stores with `Kms`'s `with_*` builders.
pub fn node(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Kms {
    let root = root_key();
    Kms::new(KmsParts {
        store,
        software_protector: Arc::new(SoftwareProtector::new(root.clone())),
        sealer: root,
        random: Arc::new(SystemRandom::new()),
        clock,
        config: KmsConfig::default(),
    })
}

/// Creates the account `name` through `kms` and returns its root caller.
pub async fn account(kms: &Kms, name: &str) -> Caller {
    let issued = kms.create_account(name).await.unwrap();
    Caller {
        product: None,
        account_id: issued.account_id,
        principal: issued.access_key_id,
        identity: keywarden_core::kms::Identity::Root,
        request_id: String::new(),
        facts: Default::default(),
        region: None,
    }
}

/// CreateKey for a key of `origin` with no description, tags, policy or
/// custom key store.
pub fn key_request(origin: Origin) -> CreateKeyRequest {
    CreateKeyRequest {
        description: String::new(),
        origin,
        tags: vec![],
        policy: None,
        bypass_policy_lockout_safety_check: false,
        custom_key_store_id: None,
        key_spec: keywarden_core::key_spec::KeySpec::SymmetricDefault,
        key_usage: None,
        multi_region: false,
    }
}

/// A node on a fresh SQLite database, its clock and one account.
pub struct Fixture<S> {
    /// The temporary directory holding the database; removed on drop.
    pub dir: tempfile::TempDir,
    /// The SQLite database file (`dir/k.db`), to open it again.
    pub path: PathBuf,
    /// The store the node uses.
    pub store: Arc<S>,
    /// The node's clock, which only the test moves.
    pub clock: Arc<ManualClock>,
    /// The node.
    pub kms: Kms,
    /// The root caller of the account `t`.
    pub caller: Caller,
}

/// A [`Fixture`] on the plain SQLite store, the clock at [`START`].
pub async fn fixture() -> Fixture<SqliteStore> {
    fixture_with(START, |store| store, |kms| kms).await
}

/// A [`Fixture`] whose clock starts at `start`, whose store is the fresh
/// SQLite store as `wrap` makes it (e.g. a
/// [`Wrapped`](crate::wrapped_store::Wrapped) one with hooks), and whose
/// node `build` finishes (`with_billing`, `with_importer`, ...).
pub async fn fixture_with<S, W, B>(start: UnixMillis, wrap: W, build: B) -> Fixture<S>
where
    S: Store + 'static,
    W: FnOnce(SqliteStore) -> S,
    B: FnOnce(Kms) -> Kms,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.db");
    let store = Arc::new(wrap(SqliteStore::open(&path).unwrap()));
    let clock = Arc::new(ManualClock::new(start));
    let kms = build(node(store.clone(), clock.clone()));
    let caller = account(&kms, "t").await;
    Fixture {
        dir,
        path,
        store,
        clock,
        kms,
        caller,
    }
}
