//! The store seam: where accounts, credentials, keys (wrapped material only)
//! and aliases live. Backends: SQLite (`keywarden-store-sqlite`), later
//! PostgreSQL.
//!
//! Every state change is one call, and every call is one transaction.
//! Updates carry the revision the caller read (`expected_revision`); a
//! backend applies the change only if the stored revision still equals it,
//! and answers [`StoreError::Conflict`] otherwise. Callers re-read and retry.
//!
//! Keys and aliases are scoped by account: `update_key` and `destroy_key`
//! answer [`StoreError::Conflict`] when the stored key belongs to another
//! account than the record names, so an update can never move a key between
//! accounts, and an alias may only point at a key of its own account.
//!
//! Key usage ([`UsageStore`]) is the one exception to compare-and-set: it is
//! not state anything decides on, it is written in batches (the server
//! flushes what it recorded in memory about once a second), and its merge
//! rule (the newest use wins) makes batches from several nodes commute.

use async_trait::async_trait;

use crate::billing::{KeyLifetime, LedgerEntry, Month, RequestCount, Standing};
use crate::clock::UnixMillis;
use crate::ids::{AccountId, AliasName, KeyId, KeyringId, ProductCode};
use crate::model::{
    Account, AliasRecord, Credential, GrantRecord, KeyRecord, KeyUsage, KeyringKeyVersion,
    KeyringRecord, Product, ProductStatus,
};

/// Failures of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record changed since it was read (compare-and-set failed), or it
    /// no longer exists.
    #[error("the record was changed concurrently")]
    Conflict,
    /// A record with the same identity exists already.
    #[error("the record exists already")]
    AlreadyExists,
    /// A record this one refers to does not exist (an alias's target key).
    #[error("a referenced record does not exist")]
    MissingReference,
    /// A per-parent limit would be exceeded (grants per key).
    #[error("a limit on the number of records was reached")]
    LimitExceeded,
    /// The record is still referenced and cannot be deleted (a custom key
    /// store that holds keys).
    #[error("the record is still in use")]
    InUse,
    /// The backend cannot be reached now (a database server down,
    /// connection refused or lost, connection pool exhausted past its wait
    /// bound). Nothing was written, or the write's outcome is unknown to
    /// this call; retrying later is reasonable.
    #[error("backend unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The backend itself failed (I/O, corruption).
    #[error("backend failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Which keys to list. The filters that are set all apply.
#[derive(Debug, Clone, Default)]
pub struct KeyQuery {
    /// Only keys of this account; `None` lists every account (operator use).
    pub account: Option<AccountId>,
    /// Only keys whose id sorts after this one (pagination).
    pub after: Option<KeyId>,
    /// Only keys pending deletion whose deletion date is at or before this.
    pub deletion_due_by: Option<UnixMillis>,
    /// Only enabled keys with automatic rotation on whose next rotation date
    /// is at or before this. Backends answer it without reading other keys
    /// (an index on state and next rotation date), since the rotation
    /// executor asks it every few seconds.
    pub rotation_due_by: Option<UnixMillis>,
    /// Only keys with imported material present whose valid-to is at or
    /// before this (any state). Answered from an index, like
    /// `rotation_due_by`: the expiry executor asks it every few seconds.
    pub material_expiry_due_by: Option<UnixMillis>,
    /// At most this many keys.
    pub limit: usize,
}

/// Keys and their versions.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Inserts a new key with all its versions; its revision is stored as given.
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError>;

    /// The key with this id if it belongs to `account`.
    async fn get_key(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyRecord>, StoreError>;

    /// The account that holds the key with this id, whichever it is (key
    /// ids are unique across accounts). For a Decrypt that names no key:
    /// the ciphertext names only the key id, and the caller may be allowed
    /// a key of another account (docs/access-control.md).
    async fn key_account(&self, key: &KeyId) -> Result<Option<AccountId>, StoreError>;

    /// Replaces the key's metadata (every field but `key_id`, `account_id`
    /// and `versions`, including `rotation`, `on_demand_rotations`,
    /// `deletion_protection` and `import`) and adds any versions not yet
    /// stored, if the stored revision equals `expected_revision`; the stored
    /// revision becomes `key.revision`, which must be greater. Versions are
    /// never removed by an update, and stored versions change in exactly two
    /// ways, both for imported material: a version given with empty
    /// `material` has its stored material cleared
    /// (`DeleteImportedKeyMaterial`, expiry), and a stored version whose
    /// material is empty takes the material given (re-import). Any other
    /// difference between a given and a stored version is ignored.
    async fn update_key(&self, key: &KeyRecord, expected_revision: u64) -> Result<(), StoreError>;

    /// Keys matching `query`, ordered by key id.
    async fn list_keys(&self, query: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError>;

    /// Removes the key, all its versions, its recorded usage, its grants and
    /// every alias pointing at it, if the stored revision equals `expected_revision`
    /// (crypto-shredding).
    async fn destroy_key(
        &self,
        account: &AccountId,
        key: &KeyId,
        expected_revision: u64,
    ) -> Result<(), StoreError>;
}

/// Aliases. An alias is in one region of its account (`region`: `None` is
/// the home region): the same name may exist in each region, pointing at
/// different keys.
#[async_trait]
pub trait AliasStore: Send + Sync {
    /// Creates the alias; [`StoreError::AlreadyExists`] if the name is taken in
    /// the account's region, [`StoreError::MissingReference`] if the target
    /// key is gone.
    async fn create_alias(&self, alias: &AliasRecord) -> Result<(), StoreError>;

    /// The alias of that name in the account's region.
    async fn get_alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        name: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError>;

    /// Re-points the alias (of the record's region) if its stored revision
    /// equals `expected_revision`.
    async fn update_alias(
        &self,
        alias: &AliasRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// Deletes the alias; `false` if it did not exist.
    async fn delete_alias(
        &self,
        account: &AccountId,
        region: Option<&str>,
        name: &AliasName,
    ) -> Result<bool, StoreError>;

    /// The aliases of the account's region ordered by name, optionally only
    /// those pointing at `target`, starting after the name `after`, at most
    /// `limit`.
    async fn list_aliases(
        &self,
        account: &AccountId,
        region: Option<&str>,
        target: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError>;
}

/// Which grants to list: always of one account; the filters that are set
/// all apply.
#[derive(Debug, Clone)]
pub struct GrantQuery {
    /// The account owning the keys.
    pub account: AccountId,
    /// Only grants for this key.
    pub key: Option<KeyId>,
    /// Only the grant with this id.
    pub grant_id: Option<String>,
    /// Only grants to this grantee principal.
    pub grantee: Option<String>,
    /// Only grants this principal may retire.
    pub retiring: Option<String>,
    /// Only grants whose id sorts after this one (pagination).
    pub after: Option<String>,
    /// At most this many grants.
    pub limit: usize,
}

impl GrantQuery {
    /// Every grant of `account`, up to `limit`; narrow it with the fields.
    pub fn account(account: &AccountId, limit: usize) -> Self {
        GrantQuery {
            account: account.clone(),
            key: None,
            grant_id: None,
            grantee: None,
            retiring: None,
            after: None,
            limit,
        }
    }
}

/// Grants (`CreateGrant` and friends). A grant belongs to one key; it goes
/// when the key is destroyed.
#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Stores a new grant if its key exists in its account
    /// ([`StoreError::MissingReference`] otherwise), the key has fewer than
    /// `max_per_key` grants and fewer than `max_per_grantee` grants to the
    /// grant's grantee ([`StoreError::LimitExceeded`] otherwise),
    /// atomically. [`StoreError::AlreadyExists`] if the grant id is taken.
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        max_per_key: usize,
        max_per_grantee: usize,
    ) -> Result<(), StoreError>;

    /// Grants matching `query`, ordered by grant id.
    async fn list_grants(&self, query: &GrantQuery) -> Result<Vec<GrantRecord>, StoreError>;

    /// Deletes the grant if it belongs to that key of that account; `false`
    /// if there was none.
    async fn delete_grant(
        &self,
        account: &AccountId,
        key: &KeyId,
        grant_id: &str,
    ) -> Result<bool, StoreError>;
}

/// Metering: request counts and key lifetimes, the inputs of billing.
///
/// Key lifetimes are recorded by the key store itself: `insert_key` and
/// `create_default_key` record the key's creation (with its protection
/// level and whether it is a default key) in the same transaction, and
/// `destroy_key` sets its end to the key's deletion date. They outlive the
/// key, so a destroyed key's hours stay billable for its last month.
#[async_trait]
pub trait MeteringStore: Send + Sync {
    /// Adds a batch of request counts, once: a batch whose `batch_id` was
    /// recorded before changes nothing (a retried flush never counts
    /// twice). Counts add up per (account, key, operation, month). Must not
    /// move the change stamp.
    async fn record_requests(
        &self,
        batch_id: &str,
        counts: &[RequestCount],
    ) -> Result<(), StoreError>;

    /// The account's request counts for a month, ordered by key and
    /// operation.
    async fn request_counts(
        &self,
        account: &AccountId,
        month: Month,
    ) -> Result<Vec<RequestCount>, StoreError>;

    /// The account's keys that existed at some point in `[from, to)`,
    /// destroyed ones included.
    async fn key_lifetimes(
        &self,
        account: &AccountId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<KeyLifetime>, StoreError>;
}

/// The ledger: an append-only list of top-ups and charges per account; the
/// balance is derived from it, and the frozen flag follows it.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Appends a top-up of `amount` (> 0) and, if the balance is then zero
    /// or more, clears the frozen flag, in one transaction.
    /// [`StoreError::MissingReference`] if the account does not exist.
    ///
    /// With a `reference`, idempotent: if the account has a top-up with
    /// that reference already, nothing is written and the answer is that
    /// entry and the current standing; [`StoreError::AlreadyExists`] if
    /// its amount differs from `amount`. Racing calls with one reference
    /// (several processes or nodes) append exactly one entry: backends
    /// rely on a unique index on (account, reference) inside the
    /// transaction, not on a read before the write.
    async fn append_top_up(
        &self,
        account: &AccountId,
        amount: i64,
        at: UnixMillis,
        memo: &str,
        reference: Option<&str>,
    ) -> Result<(LedgerEntry, Standing), StoreError>;

    /// Brings the charges posted for `month` up to `month_to_date`: if the
    /// sum already posted is lower, appends one charge of the difference;
    /// then, if the balance is below zero, sets the frozen flag; one
    /// transaction. Idempotent (the same total twice posts once) and safe
    /// with several nodes posting. `None` if nothing was posted.
    async fn post_charges(
        &self,
        account: &AccountId,
        month: Month,
        month_to_date: i64,
        at: UnixMillis,
    ) -> Result<(Option<LedgerEntry>, Standing), StoreError>;

    /// The account's ledger in order, entries after `after` (a `seq`), at
    /// most `limit`.
    async fn ledger(
        &self,
        account: &AccountId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError>;

    /// The account's balance and frozen flag (zero and not frozen for an
    /// account without entries).
    async fn standing(&self, account: &AccountId) -> Result<Standing, StoreError>;
}

/// Tenant accounts.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account; [`StoreError::AlreadyExists`] if the id is taken.
    async fn create_account(&self, account: &Account) -> Result<(), StoreError>;

    /// The account with this id.
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError>;

    /// Every account, ordered by id.
    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError>;
}

/// Access keys.
#[async_trait]
pub trait CredentialStore: Send + Sync {
    /// Stores a new credential; [`StoreError::AlreadyExists`] if the access key
    /// id is taken, [`StoreError::MissingReference`] if its owner (account or
    /// product) is unknown.
    async fn create_credential(&self, credential: &Credential) -> Result<(), StoreError>;

    /// The credential with this access key id, active or revoked.
    async fn get_credential(&self, access_key_id: &str) -> Result<Option<Credential>, StoreError>;

    /// Credentials of one account, or every credential (of accounts and of
    /// products) when `account` is `None`, ordered by access key id.
    async fn list_credentials(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<Credential>, StoreError>;

    /// Marks the credential revoked; `false` if it did not exist.
    async fn revoke_credential(&self, access_key_id: &str) -> Result<bool, StoreError>;

    /// Sets an access key's status (an IAM user's key: `Active` or
    /// `Inactive`; deleting it is `Revoked`); whether the key exists.
    async fn set_credential_status(
        &self,
        access_key_id: &str,
        status: crate::model::CredentialStatus,
    ) -> Result<bool, StoreError>;
}

/// Cloud products (`keywarden admin product ...`).
#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Registers a product; [`StoreError::AlreadyExists`] if the code is taken.
    async fn create_product(&self, product: &Product) -> Result<(), StoreError>;

    /// The product with this code.
    async fn get_product(&self, code: &ProductCode) -> Result<Option<Product>, StoreError>;

    /// Every product, ordered by code.
    async fn list_products(&self) -> Result<Vec<Product>, StoreError>;

    /// Creates a product's default key for an account: inserts `key` (with
    /// all its versions) and `alias` (`alias_<code>`, pointing at it) in one
    /// transaction. If the account already has an alias of that name,
    /// nothing is written and the answer is [`StoreError::AlreadyExists`]:
    /// the alias's uniqueness per account is what guarantees exactly one
    /// default key per account and product, however many nodes race to
    /// create it. Callers then read the alias that won.
    async fn create_default_key(
        &self,
        key: &KeyRecord,
        alias: &AliasRecord,
    ) -> Result<(), StoreError>;

    /// Sets the product's status; `false` if it does not exist. Moves the
    /// change stamp, so servers drop cached product credentials.
    async fn set_product_status(
        &self,
        code: &ProductCode,
        status: ProductStatus,
    ) -> Result<bool, StoreError>;
}

/// The last cryptographic use of each key (`GetKeyLastUsage`).
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Records a batch of key uses in one transaction. Per key, only the
    /// newest use is kept: an entry whose `used_at` is not later than the
    /// stored one is ignored, so batches flushed out of order (several
    /// nodes, retries) never move a key's last use back in time. Entries
    /// for keys that do not exist in the entry's account (destroyed since)
    /// are ignored. Recording usage must not move the change stamp
    /// ([`ChangeFeed`]): it is not state caches hold, and it is written
    /// every second.
    async fn record_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError>;

    /// The newest recorded use of the key if it belongs to `account`.
    async fn get_key_usage(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyUsage>, StoreError>;

    /// Since when this store records usage: `UnixMillis(0)` for a store
    /// that recorded it from its creation, otherwise the time the backend
    /// was upgraded to record it. Uses before that are unknown.
    async fn usage_tracking_start(&self) -> Result<UnixMillis, StoreError>;
}

/// How caches learn that state changed outside this process (another
/// process on the same file, another node on the same database).
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// A value that differs from the one the previous call returned whenever
    /// state was committed in between by anyone, this process included:
    /// keys, aliases, accounts, credentials, products. Recorded key usage
    /// ([`UsageStore`]) does not count, so its per-second flush does not
    /// empty every cache. It must be cheap: the server calls it several
    /// times a second.
    async fn change_stamp(&self) -> Result<u64, StoreError>;
}

/// What every node of a deployment must agree on.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// The deployment's root key check: a random value sealed under the
    /// root key by the first node (or CLI) that opened the store. Stores
    /// `check` if no check is stored yet, atomically (of racing callers
    /// exactly one stores its value), and answers the stored check: `check`
    /// itself if this call stored it. A caller whose root key cannot unseal
    /// the answer has another root key than the deployment and must not
    /// write. Does not move the change stamp.
    async fn root_key_check(&self, check: &[u8]) -> Result<Vec<u8>, StoreError>;
}

/// Database keyrings and their key versions (docs/integrations/mariadb.md).
/// Nothing caches keyrings (every read on the keyring endpoint reads the
/// store), so keyring changes need not move the change stamp, and do not.
#[async_trait]
pub trait KeyringStore: Send + Sync {
    /// Creates a keyring with its first key versions, in one transaction.
    /// [`StoreError::AlreadyExists`] if the id, or the name within the
    /// account, is taken; [`StoreError::MissingReference`] if the account
    /// does not exist. Every version must name this keyring.
    async fn create_keyring(
        &self,
        keyring: &KeyringRecord,
        versions: &[KeyringKeyVersion],
    ) -> Result<(), StoreError>;

    /// The keyring with this id.
    async fn get_keyring(&self, id: &KeyringId) -> Result<Option<KeyringRecord>, StoreError>;

    /// The account's keyrings, ordered by id.
    async fn list_keyrings(&self, account: &AccountId) -> Result<Vec<KeyringRecord>, StoreError>;

    /// Replaces the stored keyring (its token fields; id, account, product
    /// and key are fixed) if its revision is still `expected_revision`, and
    /// stores `keyring.revision`; [`StoreError::Conflict`] otherwise, or if
    /// it is gone or the record names another account.
    async fn update_keyring(
        &self,
        keyring: &KeyringRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// Deletes the keyring of `account` and all its key versions; `false`
    /// if there was none.
    async fn delete_keyring(&self, account: &AccountId, id: &KeyringId)
        -> Result<bool, StoreError>;

    /// Adds a key version. Its version must be one more than the newest
    /// stored for the key number (1 for a new key number):
    /// [`StoreError::Conflict`] otherwise (a racing rotation won);
    /// [`StoreError::MissingReference`] if the keyring does not exist.
    async fn add_keyring_key_version(&self, version: &KeyringKeyVersion) -> Result<(), StoreError>;

    /// One version of one key, or its newest version when `version` is
    /// `None`.
    async fn get_keyring_key_version(
        &self,
        keyring: &KeyringId,
        key_number: u32,
        version: Option<u32>,
    ) -> Result<Option<KeyringKeyVersion>, StoreError>;

    /// Every version of every key of the keyring, ordered by key number
    /// and version.
    async fn list_keyring_key_versions(
        &self,
        keyring: &KeyringId,
    ) -> Result<Vec<KeyringKeyVersion>, StoreError>;

    /// The newest version of each key of the keyring as `(key number,
    /// version, created_at)`, ordered by key number, without reading any
    /// ciphertext.
    async fn keyring_key_summary(
        &self,
        keyring: &KeyringId,
    ) -> Result<Vec<(u32, u32, UnixMillis)>, StoreError>;
}

/// Which IAM records to list ([`IamStore::list_iam_entities`]).
#[derive(Debug, Clone)]
pub struct IamQuery {
    /// The account.
    pub account: AccountId,
    /// The kind.
    pub kind: crate::iam::IamKind,
    /// Only names starting with this (`""` for all; an owner's children:
    /// [`crate::iam::child_prefix`]).
    pub prefix: String,
    /// Only names sorting after this one (pagination).
    pub after: Option<String>,
    /// At most this many records, in name order.
    pub limit: usize,
}

/// IAM users, roles, managed policies, inline policies and attachments
/// (`crate::iam`): one generic record addressed by account, kind and name
/// ([`crate::iam::IamEntity::name`]). Every write is seen by the change feed
/// (identities and their policies are cached).
#[async_trait]
pub trait IamStore: Send + Sync {
    /// Stores a new record; [`StoreError::AlreadyExists`] if the account
    /// has one of the same kind and name.
    async fn create_iam_entity(&self, entity: &crate::iam::IamEntity) -> Result<(), StoreError>;

    /// Stores a record, replacing one of the same kind and name if any.
    async fn put_iam_entity(&self, entity: &crate::iam::IamEntity) -> Result<(), StoreError>;

    /// A record by account, kind and stored name.
    async fn get_iam_entity(
        &self,
        account: &AccountId,
        kind: crate::iam::IamKind,
        name: &str,
    ) -> Result<Option<crate::iam::IamEntity>, StoreError>;

    /// Records of one account and kind in name order, as `query` says.
    async fn list_iam_entities(
        &self,
        query: &IamQuery,
    ) -> Result<Vec<crate::iam::IamEntity>, StoreError>;

    /// Deletes a record; whether it existed.
    async fn delete_iam_entity(
        &self,
        account: &AccountId,
        kind: crate::iam::IamKind,
        name: &str,
    ) -> Result<bool, StoreError>;
}

/// Custom key stores accounts created (`CreateCustomKeyStore`). Every
/// write moves the change stamp: every node follows a store's connection
/// state (opening or dropping its HSM sessions).
#[async_trait]
pub trait CustomKeyStoreStore: Send + Sync {
    /// Stores a new custom key store. [`StoreError::AlreadyExists`] if its
    /// id is taken, its account has a store of the same name, or any
    /// store uses its cluster; [`StoreError::MissingReference`] for an
    /// unknown account.
    async fn create_custom_key_store(
        &self,
        store: &crate::model::CustomKeyStoreRecord,
    ) -> Result<(), StoreError>;

    /// The stores of one account, or of all accounts (`None`), ordered by
    /// id.
    async fn list_custom_key_stores(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<crate::model::CustomKeyStoreRecord>, StoreError>;

    /// Replaces the stored record (name, cluster, sealed PIN, trust anchor,
    /// state, error code; id, account and creation are fixed) if its
    /// revision is still `expected_revision` and it belongs to the record's
    /// account; the stored revision becomes `store.revision`.
    /// [`StoreError::Conflict`] otherwise (or when it is gone),
    /// [`StoreError::AlreadyExists`] for a name or cluster taken by another
    /// store.
    async fn update_custom_key_store(
        &self,
        store: &crate::model::CustomKeyStoreRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError>;

    /// Deletes the account's store if its revision is still
    /// `expected_revision` ([`StoreError::Conflict`] otherwise), and only
    /// if no key version anywhere has the protector `hsm:<id>`
    /// ([`StoreError::InUse`]): keys in any state, pending deletion
    /// included, keep their store.
    async fn delete_custom_key_store(
        &self,
        account: &AccountId,
        id: &str,
        expected_revision: u64,
    ) -> Result<(), StoreError>;
}

/// Everything Keywarden persists.
pub trait Store:
    KeyStore
    + AliasStore
    + AccountStore
    + CredentialStore
    + ProductStore
    + UsageStore
    + GrantStore
    + MeteringStore
    + LedgerStore
    + ChangeFeed
    + DeploymentStore
    + KeyringStore
    + IamStore
    + CustomKeyStoreStore
{
}

impl<
        T: KeyStore
            + AliasStore
            + AccountStore
            + CredentialStore
            + ProductStore
            + UsageStore
            + GrantStore
            + MeteringStore
            + LedgerStore
            + ChangeFeed
            + DeploymentStore
            + KeyringStore
            + IamStore
            + CustomKeyStoreStore,
    > Store for T
{
}
