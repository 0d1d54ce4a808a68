//! Operator operations on cloud products and their access keys. Not part of
//! the AWS API; the `keywarden admin product` commands call them.

use crate::error::KmsError;
use crate::ids::{AccountId, KeyRef, ProductCode};
use crate::kms::{Caller, Kms, ProductCaller};
use crate::model::{Credential, CredentialOwner, Product, ProductClass, ProductStatus};
use crate::operation::{Namespace, Operation};
use crate::secret::Secret;
use crate::store::StoreError;

/// The products every data dir starts with (the seed's four): EVS block
/// volumes, ZOS object storage and SFS elastic file are storage, MySQL is a
/// database.
pub const SEED_PRODUCTS: &[(&str, ProductClass)] = &[
    ("evs", ProductClass::Storage),
    ("zos", ProductClass::Storage),
    ("sfs", ProductClass::Storage),
    ("mysql", ProductClass::Database),
];

/// The operations a product may call, in table order: the cryptographic
/// ones, `DescribeKey` and `RetireGrant` ([`Operation::products_may_call`]).
/// Everything else is `AccessDeniedException`.
pub fn product_operations() -> impl Iterator<Item = Operation> {
    Operation::ALL
        .iter()
        .copied()
        .filter(|op| op.products_may_call())
}

/// A newly issued product access key. The secret is shown once, to the
/// operator.
pub struct IssuedProductCredential {
    /// The product.
    pub product: ProductCode,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
}

impl std::fmt::Debug for IssuedProductCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedProductCredential")
            .field("product", &self.product)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Kms {
    /// Registers a product (active).
    pub async fn register_product(
        &self,
        code: &ProductCode,
        class: ProductClass,
    ) -> Result<Product, KmsError> {
        let product = Product {
            code: code.clone(),
            class,
            status: ProductStatus::Active,
            created_at: self.clock.now(),
        };
        match self.store.create_product(&product).await {
            Ok(()) => Ok(product),
            Err(StoreError::AlreadyExists) => Err(KmsError::AlreadyExists(format!(
                "product {code} is already registered"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers the [`SEED_PRODUCTS`] that are not registered yet; called
    /// whenever a data dir is opened, so it is idempotent (and safe when
    /// several processes open a new data dir at once).
    pub async fn register_seed_products(&self) -> Result<(), KmsError> {
        for (code, class) in SEED_PRODUCTS {
            let code = ProductCode::parse(code)?;
            if self.store.get_product(&code).await?.is_some() {
                continue;
            }
            match self.register_product(&code, *class).await {
                Ok(_) | Err(KmsError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Every product, ordered by code.
    pub async fn list_products(&self) -> Result<Vec<Product>, KmsError> {
        Ok(self.store.list_products().await?)
    }

    /// The product with this code, or `NotFound`.
    pub async fn product(&self, code: &ProductCode) -> Result<Product, KmsError> {
        self.store
            .get_product(code)
            .await?
            .ok_or_else(|| KmsError::NotFound(format!("product {code} does not exist")))
    }

    /// Enables or disables a product. A disabled product's credentials
    /// authenticate but every request is refused (`AccessDeniedException`).
    pub async fn set_product_status(
        &self,
        code: &ProductCode,
        status: ProductStatus,
    ) -> Result<(), KmsError> {
        let changed = self.store.set_product_status(code, status).await;
        // Cached credentials carry the product; rare enough to drop them all.
        self.caches.clear();
        if changed? {
            Ok(())
        } else {
            Err(KmsError::NotFound(format!("product {code} does not exist")))
        }
    }

    /// Issues an access key for a product.
    pub async fn create_product_credential(
        &self,
        code: &ProductCode,
    ) -> Result<IssuedProductCredential, KmsError> {
        self.product(code).await?;
        let (access_key_id, secret_access_key) = self
            .issue_credential(CredentialOwner::Product(code.clone()))
            .await?;
        Ok(IssuedProductCredential {
            product: code.clone(),
            access_key_id,
            secret_access_key,
        })
    }

    /// Revokes one of a product's access keys; `NotFound` if the key does
    /// not exist or belongs to someone else.
    pub async fn revoke_product_credential(
        &self,
        code: &ProductCode,
        access_key_id: &str,
    ) -> Result<(), KmsError> {
        match self.store.get_credential(access_key_id).await? {
            Some(Credential {
                owner: CredentialOwner::Product(owner),
                ..
            }) if &owner == code => self.revoke_credential(access_key_id).await,
            _ => Err(KmsError::NotFound(format!(
                "product {code} has no access key {}",
                crate::ids::truncate_for_message(access_key_id)
            ))),
        }
    }

    /// Refuses a disabled product, and operations outside
    /// [`product_operations`] (`AccessDeniedException`). The server asks
    /// this before it reads the request body.
    pub fn product_may_call(&self, product: &Product, operation: &str) -> Result<(), KmsError> {
        let code = &product.code;
        if product.status == ProductStatus::Disabled {
            return Err(KmsError::AccessDenied(format!(
                "product {code} is disabled"
            )));
        }
        let allowed = Operation::from_target(Namespace::Trent, operation)
            .is_some_and(Operation::products_may_call);
        if !allowed {
            let names: Vec<&str> = product_operations().map(Operation::wire_name).collect();
            return Err(KmsError::AccessDenied(format!(
                "product {code} may not call {}; products may call only {}",
                crate::ids::truncate_for_message(operation),
                names.join(", ")
            )));
        }
        Ok(())
    }

    /// The caller for a product's `Decrypt` that names no key: the account
    /// is the one holding the key that made the blob (`KeyStore::key_account`;
    /// key ids are unique across accounts), and the product rules then
    /// apply to that key exactly as if the product had named its ARN
    /// (docs/products.md, "Decrypt without a KeyId"). A blob whose key does
    /// not exist is `InvalidCiphertextException`.
    pub async fn product_blob_caller(
        &self,
        product: &Product,
        principal: &str,
        request_id: &str,
        blob: &[u8],
    ) -> Result<Caller, KmsError> {
        self.product_may_call(product, "Decrypt")?;
        let parsed = crate::ciphertext::parse(blob)?;
        let account_id = self
            .store
            .key_account(&parsed.key_id)
            .await?
            .ok_or(KmsError::InvalidCiphertext)?;
        Ok(Caller {
            account_id,
            principal: principal.to_owned(),
            identity: crate::kms::Identity::Root,
            product: Some(ProductCaller {
                code: product.code.clone(),
                class: product.class,
            }),
            request_id: request_id.to_owned(),
            facts: Default::default(),
            region: None,
        })
    }

    /// The caller for a request a product signed: the product acts for the
    /// account its key ARNs or alias ARNs name. `keys` are every key the
    /// request names (`KeyId`, `SourceKeyId`, `DestinationKeyId`).
    ///
    /// Refused with `AccessDeniedException`: a disabled product, an
    /// operation outside [`product_operations`], a request naming no key
    /// (except a `Decrypt`: [`Kms::product_blob_caller`]) or naming one
    /// by bare id or alias, keys of two accounts in one request. A key of an
    /// account that does not exist is `NotFoundException` when resolved.
    pub fn product_caller(
        &self,
        product: &Product,
        principal: &str,
        request_id: &str,
        operation: &str,
        keys: &[&KeyRef],
    ) -> Result<Caller, KmsError> {
        let code = &product.code;
        self.product_may_call(product, operation)?;
        let mut account: Option<&str> = None;
        for key in keys {
            let named = match key {
                KeyRef::KeyArn { account, .. } | KeyRef::AliasArn { account, .. } => account,
                KeyRef::Id(_) | KeyRef::Alias(_) => {
                    return Err(crate::ops::decrypt::product_must_name_key())
                }
            };
            match account {
                Some(a) if a != named.as_str() => {
                    return Err(KmsError::AccessDenied(
                        "a product request may name keys of one account only".into(),
                    ))
                }
                _ => account = Some(named),
            }
        }
        let Some(account) = account else {
            return Err(crate::ops::decrypt::product_must_name_key());
        };
        // No store read for the account: an unknown account has no keys, so
        // resolving the named key answers `NotFoundException`, and the hot
        // path stays free of store access.
        let account_id = AccountId::parse(account)
            .map_err(|_| KmsError::NotFound(format!("account {account} does not exist")))?;
        Ok(Caller {
            account_id,
            principal: principal.to_owned(),
            identity: crate::kms::Identity::Root,
            product: Some(ProductCaller {
                code: code.clone(),
                class: product.class,
            }),
            request_id: request_id.to_owned(),
            facts: Default::default(),
            region: None,
        })
    }
}
