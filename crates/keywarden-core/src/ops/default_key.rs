//! Default keys: the key a cloud product encrypts an account's data with
//! when no other key is chosen (the seed's "default key"). Created by the
//! system on the product's first request for the account, named
//! `alias_<product code>`, managed by Keywarden (`KeyManager` `AWS`).

use crate::error::KmsError;
use crate::ids::{AliasName, KeyId};
use crate::kms::{Caller, Kms, ProductCaller};
use crate::model::{AliasRecord, KeyManager, KeyRecord, KeyState, KeyVersion, Origin};
use crate::protector::KeyBinding;
use crate::store::StoreError;

impl Kms {
    /// Creates the default key of `product` in the caller's account and
    /// returns its id; if another request (on any node) created it first,
    /// returns that one. The store inserts key and alias in one
    /// transaction and refuses a second alias of the same name, so an
    /// account never has two default keys for one product. An account that
    /// does not exist gets no key (`NotFoundException`, as for any key of
    /// an unknown account).
    pub(crate) async fn create_default_key(
        &self,
        caller: &Caller,
        product: &ProductCaller,
    ) -> Result<KeyId, KmsError> {
        let alias_name = AliasName::default_key(&product.code);
        if self.store.get_account(&caller.account_id).await?.is_none() {
            return Err(KmsError::NotFound(format!(
                "Alias '{}' is not found.",
                self.alias_arn(caller.region.as_deref(), &caller.account_id, &alias_name)
            )));
        }
        let now = self.clock.now();
        let key_id = KeyId::from_random(self.random_array()?);
        let material = self
            .default_protector
            .generate(KeyBinding {
                key_id: &key_id,
                version: 1,
            })
            .map_err(KmsError::Protector)?;
        let key = KeyRecord {
            key_id,
            account_id: caller.account_id.clone(),
            revision: 1,
            description: format!(
                "Default key of cloud product {code} ({alias_name}): created by Keywarden on the product's first request, used by {code} for server-side encryption",
                code = product.code
            ),
            state: KeyState::Enabled,
            origin: Origin::AwsKms,
            key_manager: KeyManager::Aws,
            created_at: now,
            deletion_date: None,
            pending_window_days: None,
            tags: Vec::new(),
            policy: None,
            versions: vec![KeyVersion {
                version: 1,
                protector: self.default_protector.id().to_owned(),
                material,
                created_at: now,
                rotation: None,
            }],
            // The seed: default keys do not rotate automatically.
            rotation: None,
            on_demand_rotations: 0,
            deletion_protection: false,
            import: None,
            default_for: Some(product.code.clone()),
            kind: crate::key_spec::KeyKind::default(),
            region: None,
            multi_region: None,
        };
        let alias = AliasRecord {
            account_id: caller.account_id.clone(),
            name: alias_name,
            target: key_id,
            region: None,
            created_at: now,
            updated_at: now,
            revision: 1,
        };
        match self.store.create_default_key(&key, &alias).await {
            Ok(()) => Ok(key_id),
            Err(StoreError::AlreadyExists) => {
                // Lost the race: the winner's alias is committed.
                let winner = self
                    .store
                    .get_alias(&caller.account_id, None, &alias.name)
                    .await?;
                winner
                    .map(|a| a.target)
                    .ok_or_else(|| StoreError::Conflict.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
