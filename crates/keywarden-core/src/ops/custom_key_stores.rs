//! Custom key stores: HSMs reached through PKCS#11, offered to accounts
//! through AWS's custom key store operations. Two kinds: stores the
//! operator configured (`[[custom_key_stores]]`, every account may use
//! them) and stores an account created (`CreateCustomKeyStore`) on an HSM
//! cluster the operator approved (`[[hsm_clusters]]`), seen and used by
//! that account only. Either way a store is a [`KeyProtector`] whose id is
//! `hsm:<store id>`; keys created in it (`Origin` `AWS_CLOUDHSM`,
//! `CustomKeyStoreId`) have their material generated and used inside the
//! HSM.
//!
//! An account's store follows AWS's connection state machine
//! (docs/hsm.md): created `DISCONNECTED`; `ConnectCustomKeyStore` makes it
//! `CONNECTING`, opens its protector (through the [`HsmConnector`] the
//! server binary provides; the core never loads a PKCS#11 module) and
//! leaves it `CONNECTED`, or `FAILED` with a `ConnectionErrorCode`;
//! `DisconnectCustomKeyStore` makes it `DISCONNECTED` and drops the
//! protector. The state is stored, so every node follows it
//! ([`Kms::sync_custom_key_stores`]).

use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::kms::{Caller, Kms, Page};
use crate::model::{ConnectionErrorCode, ConnectionState, CustomKeyStoreRecord};
use crate::protector::KeyProtector;
use crate::secret::Secret;
use crate::store::StoreError;

/// The prefix of custom key store protector ids.
pub const PROTECTOR_PREFIX: &str = "hsm:";

/// A configured custom key store.
#[derive(Clone)]
pub struct CustomKeyStore {
    /// Its id (`cks-...`), as accounts name it.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When the operator configured it (shown as `CreationDate`).
    pub created_at: UnixMillis,
    /// The protector; its id must be `hsm:<id>`.
    pub protector: Arc<dyn KeyProtector>,
}

impl std::fmt::Debug for CustomKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomKeyStore")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish()
    }
}

/// What DescribeCustomKeyStores shows of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomKeyStoreInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Configured (operator stores) or created (account stores) at.
    pub created_at: UnixMillis,
    /// The connection state: for an operator store whether its HSM can be
    /// reached now, for an account store the stored state.
    pub state: ConnectionState,
    /// Why the last connection failed (account stores, while `FAILED`).
    pub error_code: Option<ConnectionErrorCode>,
    /// The HSM cluster (account stores; `None` for operator stores).
    pub cluster_id: Option<String>,
    /// The trust anchor certificate given at creation (account stores).
    pub trust_anchor: Option<String>,
}

/// An HSM cluster the operator approved (`[[hsm_clusters]]`): what the core
/// needs to know of it to check requests. Its module path and token label
/// stay with the [`HsmConnector`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmCluster {
    /// `cluster-...`, what accounts name in `CloudHsmClusterId`.
    pub id: String,
    /// The token it reaches (module and token label in one string):
    /// clusters with equal `token` are related (UpdateCustomKeyStore may
    /// move a store between them).
    pub token: String,
    /// The trust anchor certificate (PEM) a store on this cluster must be
    /// created with, if the operator set one.
    pub trust_anchor: Option<String>,
}

/// Why [`HsmConnector::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HsmConnectError {
    /// The token refused the PIN (`INVALID_CREDENTIALS`).
    InvalidCredentials,
    /// The cluster is not configured (`CLUSTER_NOT_FOUND`).
    ClusterNotFound,
    /// The token cannot be reached (`NETWORK_ERRORS`); the detail is for
    /// the log.
    Unreachable(String),
}

/// Opens account-created custom key stores on the operator's HSM clusters.
/// The server binary implements it over PKCS#11 (the core does not link a
/// PKCS#11 library); set with [`Kms::with_hsm_connector`]. A tenant names
/// a cluster id only, never a module: nothing a request says can make the
/// server load a library the operator did not configure.
pub trait HsmConnector: Send + Sync {
    /// The configured cluster with this id.
    fn cluster(&self, id: &str) -> Option<HsmCluster>;

    /// Opens a protector with the id `hsm:<store_id>` on `cluster`, logged
    /// in with `pin`, and checks that the token accepts it. Blocking (runs
    /// on the blocking pool).
    fn connect(
        &self,
        store_id: &str,
        cluster: &str,
        pin: &Secret,
    ) -> Result<Arc<dyn KeyProtector>, HsmConnectError>;
}

/// What CreateCustomKeyStore asks for (an `AWS_CLOUDHSM` store; the server
/// refuses other types).
pub struct CreateCustomKeyStoreRequest {
    /// `CustomKeyStoreName`.
    pub name: String,
    /// `CloudHsmClusterId`.
    pub cluster_id: Option<String>,
    /// `TrustAnchorCertificate`.
    pub trust_anchor: Option<String>,
    /// `KeyStorePassword`: the token's user PIN.
    pub password: Option<Secret>,
}

impl std::fmt::Debug for CreateCustomKeyStoreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateCustomKeyStoreRequest")
            .field("name", &self.name)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// What UpdateCustomKeyStore asks for; absent fields stay.
pub struct UpdateCustomKeyStoreRequest {
    /// `NewCustomKeyStoreName`.
    pub new_name: Option<String>,
    /// `KeyStorePassword`.
    pub password: Option<Secret>,
    /// `CloudHsmClusterId`.
    pub cluster_id: Option<String>,
}

impl std::fmt::Debug for UpdateCustomKeyStoreRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateCustomKeyStoreRequest")
            .field("new_name", &self.new_name)
            .field("cluster_id", &self.cluster_id)
            .finish_non_exhaustive()
    }
}

/// AWS's limits on `KeyStorePassword` (the `kmsuser` password): 7-32
/// characters.
/// <https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateCustomKeyStore.html>
const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 7..=32;

/// What a store's sealed PIN is bound to, besides its id.
const PIN_AAD: &[u8] = b"keywarden custom key store pin\0";

/// Checks a custom key store id: `cks-` and 1-60 characters `[a-z0-9-]`.
pub fn check_store_id(id: &str) -> Result<(), String> {
    let ok = id.len() <= 64
        && id.strip_prefix("cks-").is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "custom key store id must be cks- followed by 1-60 of [a-z0-9-], got {:?}",
            crate::ids::truncate_for_message(id)
        ))
    }
}

impl Kms {
    /// Adds a custom key store (operator configuration); its protector
    /// serves every key version recorded with its id.
    pub fn with_custom_key_store(mut self, store: CustomKeyStore) -> Result<Self, KmsError> {
        check_store_id(&store.id).map_err(KmsError::Validation)?;
        if store.protector.id() != format!("{PROTECTOR_PREFIX}{}", store.id) {
            return Err(KmsError::Validation(format!(
                "the protector of custom key store {} must have the id {PROTECTOR_PREFIX}{}",
                store.id, store.id
            )));
        }
        if self
            .custom_key_stores
            .iter()
            .any(|s| s.id == store.id || s.name == store.name)
        {
            return Err(KmsError::Validation(format!(
                "custom key store {} ({}) is configured twice",
                store.id, store.name
            )));
        }
        self.protectors
            .insert(store.protector.id().to_owned(), store.protector.clone());
        self.custom_key_stores.push(store);
        Ok(self)
    }

    /// Sets the operator's HSM clusters, on which accounts may create
    /// custom key stores. Without it every `CloudHsmClusterId` is unknown.
    pub fn with_hsm_connector(mut self, connector: Arc<dyn HsmConnector>) -> Self {
        self.hsm = Some(connector);
        self
    }

    /// The protector with this id: the software one, an operator store's,
    /// or an account store's connected on this node.
    pub(crate) fn protector(&self, id: &str) -> Option<Arc<dyn KeyProtector>> {
        if let Some(p) = self.protectors.get(id) {
            return Some(p.clone());
        }
        let store = id.strip_prefix(PROTECTOR_PREFIX)?;
        self.account_hsms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(store)
            .cloned()
    }

    /// The account's store with this id, or `CustomKeyStoreNotFoundException`
    /// (also for another account's store).
    pub(crate) async fn account_key_store(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<CustomKeyStoreRecord, KmsError> {
        self.store
            .list_custom_key_stores(Some(&caller.account_id))
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or_else(|| store_not_found(id))
    }

    /// The protector CreateKey uses for `CustomKeyStoreId` `id`: an operator
    /// store's, or the caller's account store's if it is connected here.
    pub(crate) async fn store_protector(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<Arc<dyn KeyProtector>, KmsError> {
        if let Some(store) = self.custom_key_stores.iter().find(|s| s.id == id) {
            if !store.protector.available() {
                return Err(KmsError::CustomKeyStoreInvalidState(format!(
                    "Custom key store {id} is not connected (ConnectionState DISCONNECTED)"
                )));
            }
            return Ok(store.protector.clone());
        }
        let record = self.account_key_store(caller, id).await?;
        let protector = (record.state == ConnectionState::Connected)
            .then(|| self.protector(&format!("{PROTECTOR_PREFIX}{id}")))
            .flatten()
            .filter(|p| p.available());
        protector.ok_or_else(|| {
            KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is not connected (ConnectionState {})",
                record.state.as_str()
            ))
        })
    }

    /// The configured cluster with this id, or
    /// `CloudHsmClusterNotFoundException`.
    pub(crate) fn hsm_cluster(&self, id: &str) -> Result<HsmCluster, KmsError> {
        self.hsm
            .as_ref()
            .and_then(|c| c.cluster(id))
            .ok_or_else(|| {
                KmsError::CloudHsmClusterNotFound(format!(
                    "The AWS CloudHSM cluster {} cannot be found",
                    crate::ids::truncate_for_message(id)
                ))
            })
    }

    /// Refuses a store name the account (or an operator store) uses
    /// already, other than the store `except`'s own.
    pub(crate) async fn check_store_name_free(
        &self,
        caller: &Caller,
        name: &str,
        except: Option<&str>,
    ) -> Result<(), KmsError> {
        let taken = self.custom_key_stores.iter().any(|s| s.name == name)
            || self
                .store
                .list_custom_key_stores(Some(&caller.account_id))
                .await?
                .iter()
                .any(|s| s.name == name && Some(s.id.as_str()) != except);
        if taken {
            return Err(name_in_use(name));
        }
        Ok(())
    }

    /// Refuses a cluster another store uses already (one store per cluster
    /// in the deployment, as AWS allows one per cluster).
    pub(crate) async fn check_cluster_free(
        &self,
        cluster: &str,
        except: Option<&str>,
    ) -> Result<(), KmsError> {
        if self
            .store
            .list_custom_key_stores(None)
            .await?
            .iter()
            .any(|s| s.cluster_id == cluster && Some(s.id.as_str()) != except)
        {
            return Err(cluster_in_use(cluster));
        }
        Ok(())
    }

    /// Seals a store's PIN under the root key, bound to the store id.
    pub(crate) fn seal_pin(&self, store_id: &str, pin: &Secret) -> Result<Vec<u8>, KmsError> {
        self.sealer
            .seal(&pin_aad(store_id), pin.expose())
            .map_err(KmsError::Protector)
    }

    /// Opens an account store's protector (on the blocking pool): the
    /// sealed PIN is unsealed only for this.
    pub(crate) async fn open_account_store(
        &self,
        record: &CustomKeyStoreRecord,
    ) -> Result<Arc<dyn KeyProtector>, HsmConnectError> {
        let Some(connector) = self.hsm.clone() else {
            return Err(HsmConnectError::ClusterNotFound);
        };
        let pin = self
            .sealer
            .unseal(&pin_aad(&record.id), &record.sealed_pin)
            .map_err(|e| HsmConnectError::Unreachable(format!("cannot unseal the PIN: {e}")))?;
        let (id, cluster) = (record.id.clone(), record.cluster_id.clone());
        tokio::task::spawn_blocking(move || connector.connect(&id, &cluster, &pin))
            .await
            .unwrap_or_else(|e| Err(HsmConnectError::Unreachable(format!("connect task: {e}"))))
    }

    /// Makes this node's open account stores match the stored states: opens
    /// the `CONNECTED` stores not open here, drops those disconnected,
    /// failed or deleted (a `CONNECTING` store is left as it is: the node
    /// connecting it decides). Called on start and whenever the store's
    /// change stamp moves. A store that fails to open here stays
    /// `CONNECTED` (another node may reach it); its keys answer
    /// `KeyUnavailableException` on this node, and the next change retries.
    /// Answers the stores that could not be opened, and why (for the log).
    pub async fn sync_custom_key_stores(&self) -> Result<Vec<(String, HsmConnectError)>, KmsError> {
        let stores = self.store.list_custom_key_stores(None).await?;
        let open: Vec<String> = self.account_hsms_read().keys().cloned().collect();
        let mut dropped = false;
        for id in &open {
            let keep = stores.iter().any(|s| {
                &s.id == id
                    && matches!(
                        s.state,
                        ConnectionState::Connected | ConnectionState::Connecting
                    )
            });
            if !keep {
                self.account_hsms_write().remove(id);
                dropped = true;
            }
        }
        if dropped {
            // Cached key handles hold the dropped protectors' sessions.
            self.caches.clear();
        }
        let mut failed = Vec::new();
        for record in stores
            .iter()
            .filter(|s| s.state == ConnectionState::Connected && !open.contains(&s.id))
        {
            match self.open_account_store(record).await {
                Ok(protector) => {
                    self.account_hsms_write()
                        .insert(record.id.clone(), protector);
                }
                Err(e) => failed.push((record.id.clone(), e)),
            }
        }
        Ok(failed)
    }

    pub(crate) fn account_hsms_read(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, std::collections::HashMap<String, Arc<dyn KeyProtector>>>
    {
        self.account_hsms
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn account_hsms_write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, std::collections::HashMap<String, Arc<dyn KeyProtector>>>
    {
        self.account_hsms
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces an account store's record (compare-and-set on the revision
    /// it was read with); `Conflict` becomes a retryable refusal.
    pub(crate) async fn put_account_store(
        &self,
        mut record: CustomKeyStoreRecord,
        read: &CustomKeyStoreRecord,
    ) -> Result<CustomKeyStoreRecord, KmsError> {
        record.revision = read.revision + 1;
        match self
            .store
            .update_custom_key_store(&record, read.revision)
            .await
        {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict) => Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {} was changed concurrently; retry the request",
                record.id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// DescribeCustomKeyStores: the operator's stores (every account may
    /// use them) and the caller's account's own, optionally one by id or by
    /// name, with their connection state, ordered by id.
    pub async fn describe_custom_key_stores(
        &self,
        caller: &Caller,
        id: Option<&str>,
        name: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<CustomKeyStoreInfo>, KmsError> {
        let mut stores: Vec<CustomKeyStoreInfo> = self
            .custom_key_stores
            .iter()
            .map(|s| CustomKeyStoreInfo {
                id: s.id.clone(),
                name: s.name.clone(),
                created_at: s.created_at,
                state: if s.protector.available() {
                    ConnectionState::Connected
                } else {
                    ConnectionState::Disconnected
                },
                error_code: None,
                cluster_id: None,
                trust_anchor: None,
            })
            .collect();
        stores.extend(
            self.store
                .list_custom_key_stores(Some(&caller.account_id))
                .await?
                .into_iter()
                .map(|s| CustomKeyStoreInfo {
                    id: s.id,
                    name: s.name,
                    created_at: s.created_at,
                    state: s.state,
                    error_code: s.error_code,
                    cluster_id: Some(s.cluster_id),
                    trust_anchor: Some(s.trust_anchor),
                }),
        );
        if let Some(id) = id {
            if !stores.iter().any(|s| s.id == id) {
                return Err(store_not_found(id));
            }
        }
        if let Some(name) = name {
            if !stores.iter().any(|s| s.name == name) {
                return Err(KmsError::CustomKeyStoreNotFound(format!(
                    "Custom key store named {} does not exist",
                    crate::ids::truncate_for_message(name)
                )));
            }
        }
        stores.retain(|s| id.is_none_or(|i| s.id == i) && name.is_none_or(|n| s.name == n));
        stores.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(m) = marker {
            stores.retain(|s| s.id.as_str() > m);
        }
        let limit = crate::kms::page_limit(limit);
        let next_marker = (stores.len() > limit).then(|| stores[limit - 1].id.clone());
        stores.truncate(limit);
        Ok(Page {
            items: stores,
            next_marker,
        })
    }
}

/// The AAD a store's PIN is sealed with.
fn pin_aad(store_id: &str) -> Vec<u8> {
    [PIN_AAD, store_id.as_bytes()].concat()
}

/// Checks a `KeyStorePassword`: 7-32 characters.
pub(crate) fn check_password(pin: &Secret) -> Result<(), KmsError> {
    let chars = std::str::from_utf8(pin.expose()).map_or(0, |s| s.chars().count());
    if !PASSWORD_CHARS.contains(&chars) {
        return Err(KmsError::Validation(
            "1 validation error detected: Value at 'keyStorePassword' failed to satisfy constraint: Member must have length between 7 and 32"
                .into(),
        ));
    }
    Ok(())
}

/// Trust anchors compare as their base64 content: line endings and
/// whitespace around the PEM lines do not matter.
pub(crate) fn same_certificate(a: &str, b: &str) -> bool {
    let squeeze = |s: &str| -> String { s.chars().filter(|c| !c.is_whitespace()).collect() };
    squeeze(a) == squeeze(b)
}

pub(crate) fn store_not_found(id: &str) -> KmsError {
    KmsError::CustomKeyStoreNotFound(format!(
        "Custom key store {} does not exist",
        crate::ids::truncate_for_message(id)
    ))
}

pub(crate) fn name_in_use(name: &str) -> KmsError {
    KmsError::CustomKeyStoreNameInUse(format!(
        "A custom key store named {} exists already",
        crate::ids::truncate_for_message(name)
    ))
}

pub(crate) fn cluster_in_use(cluster: &str) -> KmsError {
    KmsError::CloudHsmClusterInUse(format!(
        "The AWS CloudHSM cluster {} is already associated with a custom key store",
        crate::ids::truncate_for_message(cluster)
    ))
}

/// Refuses an operation on a store that is not `DISCONNECTED`.
pub(crate) fn require_disconnected(
    record: &CustomKeyStoreRecord,
    operation: &str,
) -> Result<(), KmsError> {
    if record.state != ConnectionState::Disconnected {
        return Err(KmsError::CustomKeyStoreInvalidState(format!(
            "{operation} requires custom key store {} to be DISCONNECTED; it is {}",
            record.id,
            record.state.as_str()
        )));
    }
    Ok(())
}
