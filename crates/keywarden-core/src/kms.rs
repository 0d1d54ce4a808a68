//! The service object every operation hangs off, and the helpers the
//! operations share: key resolution, state checks, compare-and-set updates.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use crate::cache::{CachedKey, Caches};
use crate::clock::{Clock, UnixMillis};
use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::{AccountId, AliasName, KeyId, KeyRef, ProductCode};
use crate::metering::{MeterTracker, PostedTotals};
use crate::model::{
    CryptoOperation, GrantOperation, KeyManager, KeyRecord, KeyState, KeyUsage, KeyVersion, Origin,
    ProductClass, RotationType,
};
use crate::operation::Operation;
use crate::ops::billing::BillingConfig;
use crate::policy::RequestContext;
use crate::protector::{
    KeyBinding, KeyHandle, KeyImporter, KeyProtector, SecretSealer, SecureRandom,
};
use crate::secret::Secret;
use crate::store::{Store, StoreError};
use crate::usage::UsageTracker;

/// Service-wide settings.
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// The home region, e.g. `us-east-1`: the region of every key and
    /// alias made before regions existed, and of callers that name none.
    pub region: String,
    /// The other regions this deployment serves (docs/multi-region.md);
    /// empty for a single-region deployment.
    pub other_regions: Vec<String>,
    /// The ARN partition, `aws`.
    pub partition: String,
}

impl KmsConfig {
    /// Whether the deployment serves `region`.
    pub fn serves(&self, region: &str) -> bool {
        region == self.region || self.other_regions.iter().any(|r| r == region)
    }

    /// How records name `region`: `None` for the home region.
    pub fn region_tag(&self, region: &str) -> Option<String> {
        (region != self.region).then(|| region.to_owned())
    }

    /// Every region served, the home region first.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.region.as_str()).chain(self.other_regions.iter().map(String::as_str))
    }

    /// The name of a region as records tag it (`None`: the home region).
    pub fn region_name<'a>(&'a self, tag: Option<&'a str>) -> &'a str {
        tag.unwrap_or(&self.region)
    }
}

impl Default for KmsConfig {
    fn default() -> Self {
        KmsConfig {
            region: "us-east-1".into(),
            other_regions: Vec::new(),
            partition: "aws".into(),
        }
    }
}

/// Who is calling: an authenticated principal acting for an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The account the request acts for.
    pub account_id: AccountId,
    /// The authenticated principal (an access key id).
    pub principal: String,
    /// Whose credentials signed: the account's own (its root) or an IAM
    /// user's. A product's credential is `Root` here and `product` is set.
    pub identity: Identity,
    /// Set when a cloud product's credential signed the request; the
    /// product acts for `account_id`, the account its key ARN named
    /// (`Kms::product_caller`), and may use only the keys its class allows.
    pub product: Option<ProductCaller>,
    /// The id of the request being served, recorded with the key's last
    /// use (`GetKeyLastUsage`); empty outside a request (operator CLI,
    /// tests).
    pub request_id: String,
    /// What policy conditions may ask about the request besides who sent
    /// it: where from, and the keys its operation's parameters set.
    pub facts: RequestFacts,
    /// The region the request is for (its SigV4 scope's); `None` is the
    /// deployment's home region. Keys and aliases are looked up in it.
    pub region: Option<String>,
}

/// The facts of one request that condition keys describe, besides the
/// caller and the key (docs/access-control.md, "Condition keys a KMS
/// request carries").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFacts {
    /// The TCP peer's address, `aws:SourceIp` (never a forwarded-for
    /// header, which the client controls); `None` outside a request
    /// (operator CLI, tests).
    pub source_ip: Option<IpAddr>,
    /// Whether the request arrived on a TLS listener,
    /// `aws:SecureTransport`; `None` outside a request.
    pub secure_transport: Option<bool>,
    /// The condition keys of the operation's own parameters
    /// (`aws:RequestTag/<key>`, `aws:TagKeys`, `kms:GrantOperations`, ...),
    /// set with [`Caller::with_operation_keys`].
    operation_keys: Option<Arc<RequestContext>>,
}

impl RequestFacts {
    /// The facts of a request that arrived from `source_ip`, over TLS or
    /// not.
    pub fn network(source_ip: IpAddr, secure_transport: bool) -> Self {
        RequestFacts {
            source_ip: Some(source_ip),
            secure_transport: Some(secure_transport),
            operation_keys: None,
        }
    }

    /// The operation's own condition keys, if it set any.
    pub(crate) fn operation_keys(&self) -> Option<&RequestContext> {
        self.operation_keys.as_deref()
    }
}

impl Caller {
    /// This caller, for a request whose parameters set `keys`
    /// (`aws:RequestTag/<key>` of CreateKey or TagUser, `kms:GrantOperations`
    /// of CreateGrant, ...); they replace any set before. Keys describing
    /// the principal cannot be set this way (the evaluator derives them).
    pub fn with_operation_keys(&self, keys: RequestContext) -> Caller {
        let mut caller = self.clone();
        caller.facts.operation_keys = Some(Arc::new(keys));
        caller
    }
}

/// The IAM identity behind a [`Caller`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The account's own access keys: `arn:aws:iam::<account>:root`.
    Root,
    /// An IAM user of the account.
    User(Arc<crate::iam::IamUser>),
    /// A session of an IAM role of the account (STS `AssumeRole`).
    RoleSession {
        /// The role.
        role: Arc<crate::iam::IamRole>,
        /// The session name.
        session_name: String,
    },
}

/// The product behind a [`Caller`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductCaller {
    /// The product's code.
    pub code: ProductCode,
    /// Its class, which decides the keys it may use.
    pub class: ProductClass,
}

/// Walks every key (of all accounts) matching a query, 256 at a time in
/// key-id order, with [`Kms::next_batch`]. Shared by the background sweeps
/// (deletion, rotation, material expiry).
pub(crate) struct KeySweep {
    query: crate::store::KeyQuery,
    done: bool,
}

impl KeySweep {
    /// A sweep over the keys matching `query`; its `account`, `after` and
    /// `limit` are managed by the sweep.
    pub(crate) fn new(mut query: crate::store::KeyQuery) -> Self {
        query.account = None;
        query.after = None;
        query.limit = 256;
        KeySweep { query, done: false }
    }

    /// A sweep over every key (of all accounts) whose id sorts after
    /// `after`.
    pub(crate) fn after(after: KeyId) -> Self {
        let mut sweep = KeySweep::new(crate::store::KeyQuery::default());
        sweep.query.after = Some(after);
        sweep
    }
}

/// How a caller wants to access a key; [`Kms::authorize`] decides.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access<'a> {
    /// Read its metadata with this operation (DescribeKey,
    /// ListResourceTags, ListAliases by key, GetKeyRotationStatus, ...).
    Describe(Operation),
    /// A cryptographic operation with this encryption context.
    Crypto(GrantOperation, &'a EncryptionContext),
    /// Change it with this operation, whose wire name goes into refusals.
    Manage(Operation),
    /// Retire one of its grants: who may is decided by the grant itself
    /// (`Kms::retire_grant`), so a product passes here whatever its class.
    RetireGrant,
}

/// One page of a paginated listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Marker for the next page; `None` on the last page.
    pub next_marker: Option<String>,
}

/// Default page size of list operations (AWS's default).
pub const DEFAULT_PAGE: usize = 100;

/// How many times a compare-and-set update is retried before giving up.
const CAS_ATTEMPTS: usize = 16;

/// The key management service: the seams plus the operations in [`crate::ops`].
pub struct Kms {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) protectors: HashMap<String, Arc<dyn KeyProtector>>,
    pub(crate) default_protector: Arc<dyn KeyProtector>,
    pub(crate) sealer: Arc<dyn SecretSealer>,
    pub(crate) random: Arc<dyn SecureRandom>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: KmsConfig,
    pub(crate) caches: Caches,
    pub(crate) importer: Option<Arc<dyn KeyImporter>>,
    pub(crate) public_crypto: Option<Arc<dyn crate::protector::PublicKeyCrypto>>,
    pub(crate) keygen_permits: Arc<tokio::sync::Semaphore>,
    pub(crate) usage: UsageTracker,
    pub(crate) metering: MeterTracker,
    pub(crate) billing: BillingConfig,
    pub(crate) posted_totals: PostedTotals,
    pub(crate) custom_key_stores: Vec<crate::ops::custom_key_stores::CustomKeyStore>,
    /// The operator's HSM clusters and how to open them (account-created
    /// custom key stores); `None`: no clusters.
    pub(crate) hsm: Option<Arc<dyn crate::ops::custom_key_stores::HsmConnector>>,
    /// The protectors of account-created custom key stores connected on
    /// this node, by store id; changed by Connect/Disconnect and when other
    /// nodes' changes are noticed ([`Kms::sync_custom_key_stores`]).
    pub(crate) account_hsms: std::sync::RwLock<HashMap<String, Arc<dyn KeyProtector>>>,
    pub(crate) orphaned_material: std::sync::atomic::AtomicU64,
}

/// The seams a [`Kms`] is built from.
pub struct KmsParts {
    /// Persistence.
    pub store: Arc<dyn Store>,
    /// The protector for software keys (origin `AWS_KMS`).
    pub software_protector: Arc<dyn KeyProtector>,
    /// Seals credential secrets under the root of trust.
    pub sealer: Arc<dyn SecretSealer>,
    /// Randomness.
    pub random: Arc<dyn SecureRandom>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub config: KmsConfig,
}

impl Kms {
    /// Assembles the service.
    pub fn new(parts: KmsParts) -> Self {
        let mut protectors = HashMap::new();
        protectors.insert(
            parts.software_protector.id().to_owned(),
            parts.software_protector.clone(),
        );
        // Batch ids of this process's metering flushes start with this.
        let mut node = [0u8; 8];
        let node = match parts.random.fill(&mut node) {
            Ok(()) => node.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            Err(_) => format!("t{}", parts.clock.now().0),
        };
        Kms {
            metering: MeterTracker::new(node),
            billing: BillingConfig::default(),
            posted_totals: PostedTotals::default(),
            custom_key_stores: Vec::new(),
            hsm: None,
            account_hsms: std::sync::RwLock::new(HashMap::new()),
            orphaned_material: std::sync::atomic::AtomicU64::new(0),
            store: parts.store,
            protectors,
            default_protector: parts.software_protector,
            sealer: parts.sealer,
            random: parts.random,
            clock: parts.clock,
            config: parts.config,
            caches: Caches::default(),
            importer: None,
            public_crypto: None,
            keygen_permits: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            )),
            usage: UsageTracker::default(),
        }
    }

    /// Sets the billing configuration (prices, whether charges are posted
    /// and frozen accounts refused; docs/billing.md). Without it billing is
    /// off: requests and key lifetimes are still metered.
    pub fn with_billing(mut self, billing: BillingConfig) -> Self {
        self.billing = billing;
        self
    }

    /// Enables imported key material (origin `EXTERNAL`,
    /// `GetParametersForImport`, `ImportKeyMaterial`). Without an importer
    /// those answer `UnsupportedOperationException`.
    pub fn with_importer(mut self, importer: Arc<dyn KeyImporter>) -> Self {
        self.importer = Some(importer);
        self
    }

    /// Enables keys of specs other than `SYMMETRIC_DEFAULT`: the public-key
    /// operations and data key pairs run on `crypto`.
    pub fn with_public_key_crypto(
        mut self,
        crypto: Arc<dyn crate::protector::PublicKeyCrypto>,
    ) -> Self {
        self.public_crypto = Some(crypto);
        self
    }

    /// The public-key cryptography, or `UnsupportedOperationException`.
    pub(crate) fn public_crypto(
        &self,
    ) -> Result<&Arc<dyn crate::protector::PublicKeyCrypto>, KmsError> {
        self.public_crypto.as_ref().ok_or_else(|| {
            KmsError::Unsupported("Asymmetric and HMAC keys are not enabled on this server".into())
        })
    }

    /// The importer, or `UnsupportedOperationException` if none is configured.
    pub(crate) fn importer(&self) -> Result<&Arc<dyn KeyImporter>, KmsError> {
        self.importer.as_ref().ok_or_else(|| {
            KmsError::Unsupported(
                "Keys with imported key material (Origin EXTERNAL) are not enabled on this server"
                    .into(),
            )
        })
    }

    /// Drops cached state if the store reports changes made elsewhere
    /// (another process or node). The server calls this periodically; the
    /// period bounds how long such a change can go unnoticed. Returns whether
    /// the caches were dropped.
    pub async fn refresh_caches(&self) -> Result<bool, KmsError> {
        let stamp = self.store.change_stamp().await?;
        let moved = self.caches.observe_stamp(stamp);
        if moved && self.hsm.is_some() {
            // A custom key store may have been connected or disconnected
            // elsewhere: follow it.
            self.sync_custom_key_stores().await?;
        }
        Ok(moved)
    }

    /// Drops every cached key, credential, grant and flag, so the next
    /// requests read the store. The server does this when the store has
    /// been unreachable for longer than its outage grace period (nothing
    /// is served from a cache that can no longer be checked), and when it
    /// answers again.
    pub fn drop_caches(&self) {
        self.caches.clear();
    }

    /// Settings.
    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The ARN of a key of the home region. Prefer [`Kms::record_arn`],
    /// which names the region the record describes.
    pub fn key_arn(&self, account: &AccountId, key: &KeyId) -> String {
        self.regional_key_arn(None, account, key)
    }

    /// The ARN of a key in `region` (`None`: the home region).
    pub fn regional_key_arn(
        &self,
        region: Option<&str>,
        account: &AccountId,
        key: &KeyId,
    ) -> String {
        format!(
            "arn:{}:kms:{}:{}:key/{}",
            self.config.partition,
            self.config.region_name(region),
            account,
            key
        )
    }

    /// The ARN of the key a record describes, in the record's region.
    pub fn record_arn(&self, key: &KeyRecord) -> String {
        self.regional_key_arn(key.region.as_deref(), &key.account_id, &key.key_id)
    }

    /// The region a caller's request is for.
    pub fn caller_region<'a>(&'a self, caller: &'a Caller) -> &'a str {
        self.config.region_name(caller.region.as_deref())
    }

    /// The principal of a cloud product, the grantee of grants to it:
    /// `arn:<partition>:iam::000000000000:role/keywarden-product/<code>`.
    pub fn product_principal_arn(&self, code: &ProductCode) -> String {
        crate::ids::product_principal_arn(&self.config.partition, code)
    }

    /// The ARN of an alias of `region` (`None`: the home region).
    pub fn alias_arn(
        &self,
        region: Option<&str>,
        account: &AccountId,
        alias: &AliasName,
    ) -> String {
        format!(
            "arn:{}:kms:{}:{}:{}",
            self.config.partition,
            self.config.region_name(region),
            account,
            alias
        )
    }

    pub(crate) fn random_array<const N: usize>(&self) -> Result<[u8; N], KmsError> {
        let mut out = [0u8; N];
        self.random.fill(&mut out).map_err(KmsError::Protector)?;
        Ok(out)
    }

    pub(crate) fn random_secret(&self, len: usize) -> Result<Secret, KmsError> {
        let mut s = Secret::zeroed(len);
        self.random
            .fill(s.expose_mut())
            .map_err(KmsError::Protector)?;
        Ok(s)
    }

    /// Finds the key a caller names, from the cache when possible, and
    /// checks that the caller may access it as `access` says
    /// ([`Kms::authorize`]). Keys of other regions, unknown aliases and
    /// aliases of other accounts are all `NotFound`; so is a key of another
    /// account, unless the operation may use one and the key is shared with
    /// the caller ([`Kms::is_shared_with`]). A product naming its own
    /// default key (`alias_<code>`) for an account that has none yet
    /// creates it.
    pub(crate) async fn resolve(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        access: Access<'_>,
    ) -> Result<Arc<CachedKey>, KmsError> {
        let (account, key_id) = self.resolve_id(caller, key_ref, access, true).await?;
        let key = self
            .cached_key(&account, &key_id)
            .await?
            .and_then(|k| self.regional_view(caller, k))
            .ok_or_else(|| not_found(key_ref))?;
        if account != caller.account_id && !self.is_shared_with(caller, &key.record, access).await?
        {
            return Err(not_found(key_ref));
        }
        self.authorize(caller, &key.record, access, Some(key_ref))
            .await?;
        Ok(key)
    }

    /// Finds the key a caller names, reading the store (for changes), and
    /// checks access like [`Kms::resolve`].
    pub(crate) async fn resolve_fresh(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        access: Access<'_>,
    ) -> Result<KeyRecord, KmsError> {
        let (account, key_id) = self.resolve_id(caller, key_ref, access, false).await?;
        let key = self
            .store
            .get_key(&account, &key_id)
            .await?
            .and_then(|k| k.in_region(self.caller_region(caller), &self.config.region))
            .ok_or_else(|| not_found(key_ref))?;
        if account != caller.account_id && !self.is_shared_with(caller, &key, access).await? {
            return Err(not_found(key_ref));
        }
        self.authorize(caller, &key, access, Some(key_ref)).await?;
        Ok(key)
    }

    /// Decides whether `caller` may access `key` as `access` says. The one
    /// place the rules of docs/products.md live:
    /// - account users: every access to customer keys; to default keys
    ///   (`KeyManager` `AWS`) only describing (cryptography is their
    ///   product's, `AccessDeniedException`; changes are the system's,
    ///   `UnsupportedOperationException`);
    /// - products: their own default key; storage products nothing else;
    ///   database products a customer key of the account only through a
    ///   grant to their principal that allows the operation, unless the
    ///   key policy denies it (`Kms::product_policy_denies`).
    ///
    /// `named` is how the request named the key, if it did (an alias
    /// there is `kms:RequestAlias`).
    pub(crate) async fn authorize(
        &self,
        caller: &Caller,
        key: &KeyRecord,
        access: Access<'_>,
        named: Option<&KeyRef>,
    ) -> Result<(), KmsError> {
        self.authorize_principal(caller, key, access, named).await?;
        if let Access::Crypto(..) = access {
            self.require_not_frozen(key).await?;
        }
        Ok(())
    }

    async fn authorize_principal(
        &self,
        caller: &Caller,
        key: &KeyRecord,
        access: Access<'_>,
        named: Option<&KeyRef>,
    ) -> Result<(), KmsError> {
        let arn = || self.record_arn(key);
        let owner = || {
            key.default_for
                .as_ref()
                .map_or_else(|| "a cloud product".to_owned(), |p| format!("product {p}"))
        };
        let Some(product) = &caller.product else {
            if key.key_manager == KeyManager::Customer {
                return self.authorize_policies(caller, key, access, named).await;
            }
            return match access {
                Access::Describe(_) => self.authorize_policies(caller, key, access, named).await,
                Access::RetireGrant => Ok(()),
                Access::Crypto(op, _) => Err(KmsError::AccessDenied(format!(
                    "{} is the default key of {}; only that product can use it for cryptographic operations ({} refused)",
                    arn(),
                    owner(),
                    op.as_str()
                ))),
                Access::Manage(op) => Err(KmsError::Unsupported(format!(
                    "{} is not supported on {}: it is the default key of {}, and default keys are managed by Keywarden",
                    op.wire_name(),
                    arn(),
                    owner()
                ))),
            };
        };
        if matches!(access, Access::RetireGrant) {
            return Ok(());
        }
        if key.key_manager == KeyManager::Aws {
            if key.default_for.as_ref() == Some(&product.code)
                && !matches!(access, Access::Manage(_))
            {
                return Ok(());
            }
            return Err(KmsError::AccessDenied(format!(
                "product {} can only use its own default key; {} is the default key of {}",
                product.code,
                arn(),
                owner()
            )));
        }
        match product.class {
            ProductClass::Storage => Err(KmsError::AccessDenied(format!(
                "storage products can only use their default key (you can choose the key for server-side encryption only for database products); product {} may not use {}",
                product.code,
                arn()
            ))),
            ProductClass::Database => {
                let principal = self.product_principal_arn(&product.code);
                if self.grant_allows(key, &principal, access).await? {
                    // The grant allows; the key policy may still deny.
                    return self
                        .product_policy_denies(caller, product, key, access, named)
                        .await;
                }
                let what = match access {
                    Access::Describe(op) => op.wire_name(),
                    Access::Crypto(op, _) => op.as_str(),
                    Access::Manage(op) => op.wire_name(),
                    Access::RetireGrant => Operation::RetireGrant.wire_name(),
                };
                Err(KmsError::AccessDenied(format!(
                    "database products can use their default key, or a key the account granted to them; product {} ({principal}) has no grant for {what} on {} that matches this request",
                    product.code,
                    arn()
                )))
            }
        }
    }

    /// A cached key as the caller's region sees it: the entry itself when
    /// it describes that region (always, in a single-region deployment),
    /// else the view of a multi-Region key's key there, sharing the
    /// entry's unwrapped handles (the material is shared); `None` when the
    /// key has no key in that region.
    pub(crate) fn regional_view(
        &self,
        caller: &Caller,
        key: Arc<CachedKey>,
    ) -> Option<Arc<CachedKey>> {
        if key.record.region == caller.region {
            return Some(key);
        }
        let view = key
            .record
            .in_region(self.caller_region(caller), &self.config.region)?;
        Some(Arc::new(key.view(view)))
    }

    /// The record to store for a view of a key: a multi-Region key is
    /// stored as its primary region's view.
    pub(crate) fn stored_view(&self, view: KeyRecord) -> KeyRecord {
        match &view.multi_region {
            Some(mr) if mr.primary_region != view.region_name(&self.config.region) => view
                .in_region(&mr.primary_region, &self.config.region)
                .unwrap_or(view),
            _ => view,
        }
    }

    /// A key of `account` by id, through the cache.
    pub(crate) async fn cached_key(
        &self,
        account: &AccountId,
        key_id: &KeyId,
    ) -> Result<Option<Arc<CachedKey>>, KmsError> {
        if let Some(hit) = self.caches.key(account, key_id) {
            return Ok(Some(hit));
        }
        let epoch = self.caches.epoch();
        let Some(record) = self.store.get_key(account, key_id).await? else {
            return Ok(None);
        };
        let entry = Arc::new(CachedKey::new(record));
        self.caches.put_key(epoch, entry.clone());
        Ok(Some(entry))
    }

    /// The account and id of the key `key_ref` names. A key ARN may name
    /// another account when the caller is not a product and `access` is an
    /// operation AWS allows across accounts ([`cross_account_access`]);
    /// every other reference resolves in the caller's account.
    async fn resolve_id(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        access: Access<'_>,
        cached: bool,
    ) -> Result<(AccountId, KeyId), KmsError> {
        match key_ref {
            KeyRef::Id(id) => Ok((caller.account_id.clone(), *id)),
            KeyRef::KeyArn {
                region,
                account,
                key,
            } => {
                if region != self.caller_region(caller) {
                    return Err(not_found(key_ref));
                }
                if account == caller.account_id.as_str() {
                    return Ok((caller.account_id.clone(), *key));
                }
                if caller.product.is_some() {
                    return Err(not_found(key_ref));
                }
                if !cross_account_access(access) {
                    return Err(KmsError::NotFound(format!(
                        "Key '{}' does not exist in account {}: {} cannot use a key of another account",
                        describe_ref(key_ref),
                        caller.account_id,
                        access_name(access)
                    )));
                }
                let account = AccountId::parse(account).map_err(|_| not_found(key_ref))?;
                Ok((account, *key))
            }
            KeyRef::Alias(alias) => Ok((
                caller.account_id.clone(),
                self.alias_target(caller, alias, key_ref, cached).await?,
            )),
            KeyRef::AliasArn {
                region,
                account,
                alias,
            } => {
                if !self.arn_in_scope(caller, region, account) {
                    return Err(not_found(key_ref));
                }
                Ok((
                    caller.account_id.clone(),
                    self.alias_target(caller, alias, key_ref, cached).await?,
                ))
            }
        }
    }

    fn arn_in_scope(&self, caller: &Caller, region: &str, account: &str) -> bool {
        region == self.caller_region(caller) && account == caller.account_id.as_str()
    }

    async fn alias_target(
        &self,
        caller: &Caller,
        alias: &AliasName,
        key_ref: &KeyRef,
        cached: bool,
    ) -> Result<KeyId, KmsError> {
        // Another product's default key is refused by name, before any
        // lookup: the same answer whether or not the account has that key
        // yet, so a product cannot learn which other products an account
        // uses.
        if let (Some(product), Some(owner)) = (&caller.product, alias.default_key_product()) {
            if owner != product.code {
                return Err(KmsError::AccessDenied(format!(
                    "product {} can only use its own default key; {} is the default key of {owner}",
                    product.code,
                    describe_ref(key_ref)
                )));
            }
        }
        if cached {
            if let Some(hit) =
                self.caches
                    .alias(&caller.account_id, caller.region.as_deref(), alias)
            {
                return Ok(hit);
            }
        }
        let epoch = self.caches.epoch();
        let target = match self
            .store
            .get_alias(&caller.account_id, caller.region.as_deref(), alias)
            .await?
        {
            Some(a) => a.target,
            None => match &caller.product {
                Some(product) if alias.default_key_product().as_ref() == Some(&product.code) => {
                    self.create_default_key(caller, product).await?
                }
                _ => {
                    return Err(KmsError::NotFound(format!(
                        "Alias '{}' is not found.",
                        describe_ref(key_ref)
                    )))
                }
            },
        };
        self.caches.put_alias(
            epoch,
            &caller.account_id,
            caller.region.as_deref(),
            alias,
            target,
        );
        Ok(target)
    }

    /// Remembers a successful cryptographic use of `key` (in memory; see
    /// [`Kms::flush_key_usage`]) and, except for ReEncrypt (one request,
    /// two keys: `ReEncrypt` meters its destination itself), counts the
    /// request for billing ([`Kms::flush_metering`]).
    pub(crate) fn record_use(&self, caller: &Caller, key: &KeyRecord, operation: CryptoOperation) {
        if operation != CryptoOperation::ReEncrypt {
            self.meter(key, operation);
        }
        self.usage.record(KeyUsage {
            account_id: key.account_id.clone(),
            key_id: key.key_id,
            used_at: self.clock.now(),
            operation,
            principal: caller.principal.clone(),
            request_id: caller.request_id.clone(),
        });
    }

    /// Refuses cryptographic use of a key that is not enabled.
    pub(crate) fn require_usable(&self, key: &KeyRecord) -> Result<(), KmsError> {
        let arn = || self.record_arn(key);
        match key.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!("{} is disabled.", arn()))),
            KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
                "{} is pending deletion.",
                arn()
            ))),
            KeyState::PendingImport => Err(KmsError::InvalidState(format!(
                "{} is pending import.",
                arn()
            ))),
            KeyState::PendingReplicaDeletion => Err(KmsError::InvalidState(format!(
                "{} is pending replica deletion.",
                arn()
            ))),
        }
    }

    /// Refuses management of a key that is pending deletion (or, a
    /// multi-Region primary, pending the deletion of its replicas).
    pub(crate) fn require_not_pending_deletion(&self, key: &KeyRecord) -> Result<(), KmsError> {
        let what = match key.state {
            KeyState::PendingDeletion => "pending deletion",
            KeyState::PendingReplicaDeletion => "pending replica deletion",
            _ => return Ok(()),
        };
        Err(KmsError::InvalidState(format!(
            "{} is {what}.",
            self.record_arn(key)
        )))
    }

    /// Refuses rotation of a key whose material Keywarden cannot rotate:
    /// imported material (origin `EXTERNAL`) and custom key stores, as AWS
    /// does. `manage` is set for the operations that change rotation
    /// (enable, disable, rotate now); those are also refused for default
    /// keys (`KeyManager` `AWS`), whose rotation the system owns.
    pub(crate) fn require_rotation_supported(
        &self,
        key: &KeyRecord,
        manage: bool,
    ) -> Result<(), KmsError> {
        let arn = || self.record_arn(key);
        if !key.kind.is_symmetric_encryption() {
            return Err(KmsError::Unsupported(format!(
                "{} is a KeySpec {} key; only symmetric encryption keys (SYMMETRIC_DEFAULT) rotate.",
                arn(),
                key.kind.spec
            )));
        }
        match key.origin {
            Origin::AwsKms => {}
            Origin::External => {
                return Err(KmsError::Unsupported(format!(
                "{} has imported key material (Origin EXTERNAL); its material cannot be rotated.",
                arn()
            )))
            }
            // Rotation adds a new HSM object for the new version.
            Origin::AwsCloudHsm => {}
        }
        if manage && key.multi_region.is_some() && !key.is_primary(&self.config.region) {
            // https://docs.aws.amazon.com/kms/latest/developerguide/multi-region-keys-manage.html
            // Rotation is shared: it is managed on the primary key.
            return Err(KmsError::Unsupported(format!(
                "{} is a multi-Region replica key; its rotation is shared with its primary key \
                 and can be changed only there.",
                arn()
            )));
        }
        if manage && key.key_manager == KeyManager::Aws {
            return Err(KmsError::Unsupported(format!(
                "{} is a default key managed by the system; its rotation cannot be changed.",
                arn()
            )));
        }
        Ok(())
    }

    /// Adds a new version with fresh material from the protector of the
    /// key's current version; from now on it encrypts, and every older
    /// version still decrypts.
    pub(crate) fn add_rotated_version(
        &self,
        key: &mut KeyRecord,
        rotation: RotationType,
        now: UnixMillis,
    ) -> Result<(), KmsError> {
        let current = key.current_version().ok_or_else(|| {
            KmsError::InvalidState(format!("{} has no key material.", self.record_arn(key)))
        })?;
        let version = current.version.checked_add(1).ok_or_else(|| {
            KmsError::LimitExceeded(format!(
                "{} has reached the largest version number.",
                self.record_arn(key)
            ))
        })?;
        let protector = self.protector(&current.protector).ok_or_else(|| {
            KmsError::Protector(crate::protector::ProtectorError::Unavailable(format!(
                "no key protector named {:?} is configured",
                current.protector
            )))
        })?;
        let material = protector
            .generate(KeyBinding {
                key_id: &key.key_id,
                version,
            })
            .map_err(KmsError::Protector)?;
        key.versions.push(KeyVersion {
            version,
            protector: protector.id().to_owned(),
            material,
            created_at: now,
            rotation: Some(rotation),
        });
        Ok(())
    }

    /// A handle for one version of a key, unwrapped once and cached with
    /// the key's entry (dropped with it on any change to the key).
    pub(crate) fn handle(
        &self,
        key: &CachedKey,
        version: u32,
    ) -> Result<Arc<dyn KeyHandle>, KmsError> {
        if let Some(h) = key.handle(version) {
            return Ok(h);
        }
        let record = &key.record;
        if !record.kind.is_symmetric_encryption() {
            return Err(KmsError::InvalidKeyUsage(format!(
                "{} key usage is {} (KeySpec {}), which is not valid for symmetric encryption (EncryptionAlgorithm SYMMETRIC_DEFAULT).",
                self.record_arn(record),
                record.kind.usage,
                record.kind.spec
            )));
        }
        let v = record.version(version).ok_or(KmsError::InvalidCiphertext)?;
        let protector = self.protector(&v.protector).ok_or_else(|| {
            KmsError::Protector(crate::protector::ProtectorError::Unavailable(format!(
                "no key protector named {:?} is configured",
                v.protector
            )))
        })?;
        let handle: Arc<dyn KeyHandle> = protector
            .load(
                KeyBinding {
                    key_id: &record.key_id,
                    version,
                },
                &v.material,
            )
            .map_err(KmsError::Protector)?
            .into();
        key.put_handle(version, handle.clone());
        Ok(handle)
    }

    /// The next batch of a [`KeySweep`]; `None` when it is exhausted.
    pub(crate) async fn next_batch(
        &self,
        sweep: &mut KeySweep,
    ) -> Result<Option<Vec<KeyRecord>>, KmsError> {
        if sweep.done {
            return Ok(None);
        }
        let batch = self.store.list_keys(&sweep.query).await?;
        sweep.done = batch.len() < sweep.query.limit;
        match batch.last() {
            None => Ok(None),
            Some(last) => {
                sweep.query.after = Some(last.key_id);
                Ok(Some(batch))
            }
        }
    }

    /// Applies `change` to the key the caller names and stores it with a
    /// compare-and-set on its revision, re-reading and retrying on conflict.
    /// `operation` (the AWS name) is what a refusal for a default key
    /// names.
    pub(crate) async fn update_key_with<F>(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        operation: Operation,
        mut change: F,
    ) -> Result<KeyRecord, KmsError>
    where
        F: FnMut(&Kms, &mut KeyRecord) -> Result<(), KmsError>,
    {
        for _ in 0..CAS_ATTEMPTS {
            let mut key = self
                .resolve_fresh(caller, key_ref, Access::Manage(operation))
                .await?;
            let expected = key.revision;
            change(self, &mut key)?;
            key.revision = expected + 1;
            let result = self
                .store
                .update_key(&self.stored_view(key.clone()), expected)
                .await;
            // Whatever happened, the cached copy may be stale now.
            self.caches.invalidate_key(&key.account_id, &key.key_id);
            match result {
                Ok(()) => return Ok(key),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }
}

/// Whether AWS lets `access` use a key of another account: cryptographic
/// operations, DescribeKey, GetKeyRotationStatus and the grant operations
/// (CreateGrant, ListGrants, RevokeGrant, RetireGrant); not key policies,
/// tags, aliases or the key's life cycle.
pub(crate) fn cross_account_access(access: Access<'_>) -> bool {
    match access {
        Access::Crypto(..) | Access::RetireGrant => true,
        Access::Describe(op) => matches!(
            op,
            Operation::DescribeKey | Operation::GetKeyRotationStatus | Operation::ListGrants
        ),
        Access::Manage(op) => matches!(op, Operation::CreateGrant | Operation::RevokeGrant),
    }
}

/// The operation an access is for, as named on the wire.
fn access_name(access: Access<'_>) -> &'static str {
    match access {
        Access::Crypto(op, _) => op.as_str(),
        Access::Describe(op) | Access::Manage(op) => op.wire_name(),
        Access::RetireGrant => Operation::RetireGrant.wire_name(),
    }
}

fn not_found(key_ref: &KeyRef) -> KmsError {
    KmsError::NotFound(format!("Key '{}' does not exist", describe_ref(key_ref)))
}

/// Parses a pagination limit the way AWS does (default 100, 1-1000 checked
/// by the wire layer).
pub(crate) fn page_limit(limit: Option<u32>) -> usize {
    limit.map_or(DEFAULT_PAGE, |l| l as usize)
}

fn describe_ref(key_ref: &KeyRef) -> String {
    match key_ref {
        KeyRef::Id(id) => id.to_string(),
        KeyRef::KeyArn {
            region,
            account,
            key,
        } => format!("arn:aws:kms:{region}:{account}:key/{key}"),
        KeyRef::Alias(a) => a.to_string(),
        KeyRef::AliasArn {
            region,
            account,
            alias,
        } => format!("arn:aws:kms:{region}:{account}:{alias}"),
    }
}
