//! Custom key stores: HSMs the operator configured (PKCS#11), offered to
//! accounts through AWS's custom key store operations. A store is a named
//! [`KeyProtector`] whose id is `hsm:<store id>`; keys created in it
//! (`Origin` `AWS_CLOUDHSM`, `CustomKeyStoreId`) have their material
//! generated and used inside the HSM.

use std::sync::Arc;

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::kms::{Caller, Kms, Page};
use crate::protector::KeyProtector;

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
    /// Configured at.
    pub created_at: UnixMillis,
    /// Whether its HSM can be reached now.
    pub connected: bool,
}

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

    /// The store with this id.
    pub(crate) fn custom_key_store(&self, id: &str) -> Result<&CustomKeyStore, KmsError> {
        self.custom_key_stores
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| {
                KmsError::CustomKeyStoreNotFound(format!(
                    "Custom key store {} does not exist",
                    crate::ids::truncate_for_message(id)
                ))
            })
    }

    /// DescribeCustomKeyStores: the configured stores (every account may
    /// use every store), optionally one by id or by name, with their
    /// connection state.
    pub fn describe_custom_key_stores(
        &self,
        _caller: &Caller,
        id: Option<&str>,
        name: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<CustomKeyStoreInfo>, KmsError> {
        if let Some(id) = id {
            self.custom_key_store(id)?;
        }
        if let Some(name) = name {
            if !self.custom_key_stores.iter().any(|s| s.name == name) {
                return Err(KmsError::CustomKeyStoreNotFound(format!(
                    "Custom key store named {} does not exist",
                    crate::ids::truncate_for_message(name)
                )));
            }
        }
        let mut stores: Vec<&CustomKeyStore> = self
            .custom_key_stores
            .iter()
            .filter(|s| id.is_none_or(|i| s.id == i) && name.is_none_or(|n| s.name == n))
            .collect();
        stores.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(m) = marker {
            stores.retain(|s| s.id.as_str() > m);
        }
        let limit = crate::kms::page_limit(limit);
        let next_marker = (stores.len() > limit).then(|| stores[limit - 1].id.clone());
        stores.truncate(limit);
        Ok(Page {
            items: stores
                .into_iter()
                .map(|s| CustomKeyStoreInfo {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    created_at: s.created_at,
                    connected: s.protector.available(),
                })
                .collect(),
            next_marker,
        })
    }
}
