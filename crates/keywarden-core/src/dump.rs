//! Moving a whole store from one backend to another
//! (`keywarden admin migrate-store`): every record, with its ids, revisions
//! and sealed material unchanged, so every key id, alias, credential and
//! ciphertext stays valid on the new backend.
//!
//! A dump is taken from a store nothing else writes to (the servers of the
//! old deployment are stopped) and loaded into an empty store in one
//! transaction. It is an in-memory value, never written to disk: key
//! material in it is wrapped (sealed under the root key or an HSM key) and
//! credential secrets are sealed, as they are in the store.
//!
//! The dump has no serialized form and so no format version: backends
//! build it from their current schema (an older database is migrated when
//! opened, an older SQLite backup when restored), and a record kind a store
//! did not hold yet is an empty list. A dump without IAM entities (a store
//! from before IAM) loads like any other.

use async_trait::async_trait;

use crate::billing::{KeyLifetime, LedgerEntry, RequestCount};
use crate::clock::UnixMillis;
use crate::iam::IamEntity;
use crate::ids::AccountId;
use crate::model::{
    Account, AliasRecord, Credential, GrantRecord, KeyRecord, KeyUsage, KeyringKeyVersion,
    KeyringRecord, Product,
};
use crate::store::StoreError;

/// Everything a store holds, but transient bookkeeping (the change stamp,
/// the ids of metering batches already counted).
#[derive(Clone, PartialEq, Eq)]
pub struct StoreDump {
    /// Accounts, ordered by id.
    pub accounts: Vec<Account>,
    /// Registered products, ordered by code.
    pub products: Vec<Product>,
    /// Credentials of accounts and products, ordered by access key id.
    pub credentials: Vec<Credential>,
    /// Keys with all their versions, ordered by key id.
    pub keys: Vec<KeyRecord>,
    /// Aliases, ordered by account and name.
    pub aliases: Vec<AliasRecord>,
    /// Grants, ordered by grant id.
    pub grants: Vec<GrantRecord>,
    /// The newest use of each key, ordered by key id.
    pub key_usage: Vec<KeyUsage>,
    /// Since when the store records usage ([`crate::store::UsageStore::usage_tracking_start`]).
    pub usage_tracking_start: UnixMillis,
    /// Key lifetimes (destroyed keys' too), ordered by key id.
    pub key_lifetimes: Vec<KeyLifetime>,
    /// Request counts, ordered by account, month, key and operation.
    pub request_counts: Vec<RequestCount>,
    /// The ledger of every account, in `seq` order; `seq` values are kept.
    pub ledger: Vec<LedgerEntry>,
    /// Each account's frozen flag, where one was ever set, ordered by account.
    pub standings: Vec<(AccountId, bool)>,
    /// The root key check ([`crate::store::DeploymentStore`]), if one was
    /// stored. An import replaces the target's.
    pub root_key_check: Option<Vec<u8>>,
    /// Database keyrings, ordered by id.
    pub keyrings: Vec<KeyringRecord>,
    /// Their key versions, ordered by keyring, key number and version.
    pub keyring_key_versions: Vec<KeyringKeyVersion>,
    /// IAM users, roles, policies, inline policies and attachments
    /// ([`crate::store::IamStore`]), ordered by account, kind
    /// ([`crate::iam::IamKind::as_str`]) and stored name
    /// ([`IamEntity::name`]). Credentials of IAM users are among
    /// `credentials` (owner [`crate::model::CredentialOwner::User`]).
    pub iam_entities: Vec<IamEntity>,
    /// Custom key stores accounts created
    /// ([`crate::store::CustomKeyStoreStore`]), ordered by id, their PINs
    /// sealed as stored. Imported after keys (a store's keys are found by
    /// their versions' protector id, not a foreign key).
    pub custom_key_stores: Vec<crate::model::CustomKeyStoreRecord>,
}

impl std::fmt::Debug for StoreDump {
    // Counts only: credentials carry sealed secrets and keys wrapped material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreDump")
            .field("accounts", &self.accounts.len())
            .field("products", &self.products.len())
            .field("credentials", &self.credentials.len())
            .field("keys", &self.keys.len())
            .field("aliases", &self.aliases.len())
            .field("grants", &self.grants.len())
            .field("key_usage", &self.key_usage.len())
            .field("key_lifetimes", &self.key_lifetimes.len())
            .field("request_counts", &self.request_counts.len())
            .field("ledger", &self.ledger.len())
            .field("standings", &self.standings.len())
            .field("root_key_check", &self.root_key_check.is_some())
            .field("keyrings", &self.keyrings.len())
            .field("keyring_key_versions", &self.keyring_key_versions.len())
            .field("iam_entities", &self.iam_entities.len())
            .field("custom_key_stores", &self.custom_key_stores.len())
            .finish()
    }
}

/// A backend that can export and import whole stores.
#[async_trait]
pub trait DumpStore: Send + Sync {
    /// Every record, read in one consistent snapshot.
    async fn export_dump(&self) -> Result<StoreDump, StoreError>;

    /// Loads `dump` into this store in one transaction, keeping every id,
    /// revision, timestamp and ledger `seq`; afterwards `export_dump`
    /// answers a dump equal to `dump`. Refused with
    /// [`StoreError::AlreadyExists`] unless the store holds no accounts,
    /// keys or credentials (seed products and a root key check may exist:
    /// they are replaced by the dump's). Moves the change stamp.
    async fn import_dump(&self, dump: &StoreDump) -> Result<(), StoreError>;
}
