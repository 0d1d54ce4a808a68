//! A store for the ManualClock tests: the real SQLite store behind every
//! store trait, with hooks where a test needs to watch or disturb a call
//! (the usage clock tests count usage writes, the billing clock tests lose
//! the answer of a committed metering write).

use async_trait::async_trait;
use keywarden_core::billing::{KeyLifetime, LedgerEntry, Month, RequestCount, Standing};
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, AliasName, KeyId, KeyringId, ProductCode};
use keywarden_core::model::{
    Account, AliasRecord, Credential, GrantRecord, KeyRecord, KeyUsage, KeyringKeyVersion,
    KeyringRecord, Product, ProductStatus,
};
use keywarden_core::store::{
    AccountStore, AliasStore, ChangeFeed, CredentialStore, GrantQuery, GrantStore, KeyQuery,
    KeyStore, KeyringStore, LedgerStore, MeteringStore, ProductStore, StoreError, UsageStore,
};
use keywarden_store_sqlite::SqliteStore;

/// Where a test looks into or disturbs the store calls.
pub trait Hooks: Send + Sync {
    /// Before `record_key_usage` reaches the store.
    fn on_record_key_usage(&self, _usage: &[KeyUsage]) {}
    /// Before `record_requests` reaches the store.
    fn on_record_requests(&self, _batch_id: &str) {}
    /// What the caller of `record_requests` hears, given what the store
    /// answered (a test may turn a committed write into an error).
    fn after_record_requests(&self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        result
    }
}

/// No hooks.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// The SQLite store with hooks.
pub struct Wrapped<H> {
    /// The real store.
    pub inner: SqliteStore,
    /// The test's hooks.
    pub hooks: H,
}

#[async_trait]
impl<H: Hooks> KeyStore for Wrapped<H> {
    async fn insert_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.inner.insert_key(key).await
    }
    async fn get_key(&self, a: &AccountId, k: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.get_key(a, k).await
    }
    async fn key_account(&self, k: &KeyId) -> Result<Option<AccountId>, StoreError> {
        self.inner.key_account(k).await
    }
    async fn update_key(&self, key: &KeyRecord, expected: u64) -> Result<(), StoreError> {
        self.inner.update_key(key, expected).await
    }
    async fn list_keys(&self, q: &KeyQuery) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_keys(q).await
    }
    async fn destroy_key(&self, a: &AccountId, k: &KeyId, expected: u64) -> Result<(), StoreError> {
        self.inner.destroy_key(a, k, expected).await
    }
}

#[async_trait]
impl<H: Hooks> AliasStore for Wrapped<H> {
    async fn create_alias(&self, alias: &AliasRecord) -> Result<(), StoreError> {
        self.inner.create_alias(alias).await
    }
    async fn get_alias(
        &self,
        a: &AccountId,
        r: Option<&str>,
        n: &AliasName,
    ) -> Result<Option<AliasRecord>, StoreError> {
        self.inner.get_alias(a, r, n).await
    }
    async fn update_alias(&self, alias: &AliasRecord, expected: u64) -> Result<(), StoreError> {
        self.inner.update_alias(alias, expected).await
    }
    async fn delete_alias(
        &self,
        a: &AccountId,
        r: Option<&str>,
        n: &AliasName,
    ) -> Result<bool, StoreError> {
        self.inner.delete_alias(a, r, n).await
    }
    async fn list_aliases(
        &self,
        a: &AccountId,
        r: Option<&str>,
        target: Option<&KeyId>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AliasRecord>, StoreError> {
        self.inner.list_aliases(a, r, target, after, limit).await
    }
}

#[async_trait]
impl<H: Hooks> ProductStore for Wrapped<H> {
    async fn create_product(&self, p: &Product) -> Result<(), StoreError> {
        self.inner.create_product(p).await
    }
    async fn get_product(&self, code: &ProductCode) -> Result<Option<Product>, StoreError> {
        self.inner.get_product(code).await
    }
    async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        self.inner.list_products().await
    }
    async fn set_product_status(
        &self,
        code: &ProductCode,
        status: ProductStatus,
    ) -> Result<bool, StoreError> {
        self.inner.set_product_status(code, status).await
    }
    async fn create_default_key(
        &self,
        key: &KeyRecord,
        alias: &AliasRecord,
    ) -> Result<(), StoreError> {
        self.inner.create_default_key(key, alias).await
    }
}

#[async_trait]
impl<H: Hooks> AccountStore for Wrapped<H> {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        self.inner.create_account(account).await
    }
    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        self.inner.get_account(id).await
    }
    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.inner.list_accounts().await
    }
}

#[async_trait]
impl<H: Hooks> CredentialStore for Wrapped<H> {
    async fn create_credential(&self, c: &Credential) -> Result<(), StoreError> {
        self.inner.create_credential(c).await
    }
    async fn get_credential(&self, id: &str) -> Result<Option<Credential>, StoreError> {
        self.inner.get_credential(id).await
    }
    async fn list_credentials(&self, a: Option<&AccountId>) -> Result<Vec<Credential>, StoreError> {
        self.inner.list_credentials(a).await
    }
    async fn revoke_credential(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_credential(id).await
    }
    async fn set_credential_status(
        &self,
        id: &str,
        status: keywarden_core::model::CredentialStatus,
    ) -> Result<bool, StoreError> {
        self.inner.set_credential_status(id, status).await
    }
}

#[async_trait]
impl<H: Hooks> keywarden_core::store::IamStore for Wrapped<H> {
    async fn create_iam_entity(
        &self,
        e: &keywarden_core::iam::IamEntity,
    ) -> Result<(), StoreError> {
        self.inner.create_iam_entity(e).await
    }
    async fn put_iam_entity(&self, e: &keywarden_core::iam::IamEntity) -> Result<(), StoreError> {
        self.inner.put_iam_entity(e).await
    }
    async fn get_iam_entity(
        &self,
        a: &AccountId,
        kind: keywarden_core::iam::IamKind,
        name: &str,
    ) -> Result<Option<keywarden_core::iam::IamEntity>, StoreError> {
        self.inner.get_iam_entity(a, kind, name).await
    }
    async fn list_iam_entities(
        &self,
        q: &keywarden_core::store::IamQuery,
    ) -> Result<Vec<keywarden_core::iam::IamEntity>, StoreError> {
        self.inner.list_iam_entities(q).await
    }
    async fn delete_iam_entity(
        &self,
        a: &AccountId,
        kind: keywarden_core::iam::IamKind,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.inner.delete_iam_entity(a, kind, name).await
    }
}

#[async_trait]
impl<H: Hooks> keywarden_core::store::CustomKeyStoreStore for Wrapped<H> {
    async fn create_custom_key_store(
        &self,
        s: &keywarden_core::model::CustomKeyStoreRecord,
    ) -> Result<(), StoreError> {
        self.inner.create_custom_key_store(s).await
    }
    async fn list_custom_key_stores(
        &self,
        a: Option<&AccountId>,
    ) -> Result<Vec<keywarden_core::model::CustomKeyStoreRecord>, StoreError> {
        self.inner.list_custom_key_stores(a).await
    }
    async fn update_custom_key_store(
        &self,
        s: &keywarden_core::model::CustomKeyStoreRecord,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        self.inner
            .update_custom_key_store(s, expected_revision)
            .await
    }
    async fn delete_custom_key_store(
        &self,
        a: &AccountId,
        id: &str,
        expected_revision: u64,
    ) -> Result<(), StoreError> {
        self.inner
            .delete_custom_key_store(a, id, expected_revision)
            .await
    }
}

#[async_trait]
impl<H: Hooks> UsageStore for Wrapped<H> {
    async fn record_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError> {
        self.hooks.on_record_key_usage(usage);
        self.inner.record_key_usage(usage).await
    }
    async fn get_key_usage(
        &self,
        a: &AccountId,
        k: &KeyId,
    ) -> Result<Option<KeyUsage>, StoreError> {
        self.inner.get_key_usage(a, k).await
    }
    async fn usage_tracking_start(&self) -> Result<UnixMillis, StoreError> {
        self.inner.usage_tracking_start().await
    }
}

#[async_trait]
impl<H: Hooks> GrantStore for Wrapped<H> {
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        max: usize,
        max_grantee: usize,
    ) -> Result<(), StoreError> {
        self.inner.create_grant(grant, max, max_grantee).await
    }
    async fn list_grants(&self, query: &GrantQuery) -> Result<Vec<GrantRecord>, StoreError> {
        self.inner.list_grants(query).await
    }
    async fn delete_grant(&self, a: &AccountId, k: &KeyId, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_grant(a, k, id).await
    }
}

#[async_trait]
impl<H: Hooks> MeteringStore for Wrapped<H> {
    async fn record_requests(&self, id: &str, c: &[RequestCount]) -> Result<(), StoreError> {
        self.hooks.on_record_requests(id);
        let result = self.inner.record_requests(id, c).await;
        self.hooks.after_record_requests(result)
    }
    async fn request_counts(
        &self,
        a: &AccountId,
        m: Month,
    ) -> Result<Vec<RequestCount>, StoreError> {
        self.inner.request_counts(a, m).await
    }
    async fn key_lifetimes(
        &self,
        a: &AccountId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<KeyLifetime>, StoreError> {
        self.inner.key_lifetimes(a, from, to).await
    }
}

#[async_trait]
impl<H: Hooks> LedgerStore for Wrapped<H> {
    async fn append_top_up(
        &self,
        a: &AccountId,
        amount: i64,
        at: UnixMillis,
        memo: &str,
        reference: Option<&str>,
    ) -> Result<(LedgerEntry, Standing), StoreError> {
        self.inner
            .append_top_up(a, amount, at, memo, reference)
            .await
    }
    async fn post_charges(
        &self,
        a: &AccountId,
        m: Month,
        total: i64,
        at: UnixMillis,
    ) -> Result<(Option<LedgerEntry>, Standing), StoreError> {
        self.inner.post_charges(a, m, total, at).await
    }
    async fn ledger(
        &self,
        a: &AccountId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        self.inner.ledger(a, after, limit).await
    }
    async fn standing(&self, a: &AccountId) -> Result<Standing, StoreError> {
        self.inner.standing(a).await
    }
}

#[async_trait]
impl<H: Hooks> keywarden_core::store::DeploymentStore for Wrapped<H> {
    async fn root_key_check(&self, check: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.inner.root_key_check(check).await
    }
}

#[async_trait]
impl<H: Hooks> KeyringStore for Wrapped<H> {
    async fn create_keyring(
        &self,
        keyring: &KeyringRecord,
        versions: &[KeyringKeyVersion],
    ) -> Result<(), StoreError> {
        self.inner.create_keyring(keyring, versions).await
    }
    async fn get_keyring(&self, id: &KeyringId) -> Result<Option<KeyringRecord>, StoreError> {
        self.inner.get_keyring(id).await
    }
    async fn list_keyrings(&self, a: &AccountId) -> Result<Vec<KeyringRecord>, StoreError> {
        self.inner.list_keyrings(a).await
    }
    async fn update_keyring(&self, k: &KeyringRecord, expected: u64) -> Result<(), StoreError> {
        self.inner.update_keyring(k, expected).await
    }
    async fn delete_keyring(&self, a: &AccountId, id: &KeyringId) -> Result<bool, StoreError> {
        self.inner.delete_keyring(a, id).await
    }
    async fn add_keyring_key_version(&self, v: &KeyringKeyVersion) -> Result<(), StoreError> {
        self.inner.add_keyring_key_version(v).await
    }
    async fn get_keyring_key_version(
        &self,
        k: &KeyringId,
        key_number: u32,
        version: Option<u32>,
    ) -> Result<Option<KeyringKeyVersion>, StoreError> {
        self.inner
            .get_keyring_key_version(k, key_number, version)
            .await
    }
    async fn list_keyring_key_versions(
        &self,
        k: &KeyringId,
    ) -> Result<Vec<KeyringKeyVersion>, StoreError> {
        self.inner.list_keyring_key_versions(k).await
    }
    async fn keyring_key_summary(
        &self,
        k: &KeyringId,
    ) -> Result<Vec<(u32, u32, keywarden_core::clock::UnixMillis)>, StoreError> {
        self.inner.keyring_key_summary(k).await
    }
}

#[async_trait]
impl<H: Hooks> ChangeFeed for Wrapped<H> {
    async fn change_stamp(&self) -> Result<u64, StoreError> {
        self.inner.change_stamp().await
    }
}
