//! The product registry and default keys (`ProductStore`).

use async_trait::async_trait;
use keywarden_core::ids::ProductCode;
use keywarden_core::model::{AliasRecord, KeyRecord, Product, ProductStatus};
use keywarden_core::store::{ProductStore, StoreError};
use rusqlite::{params, OptionalExtension};

use crate::aliases::insert_alias_row;
use crate::error::Fail;
use crate::keys::{encode_key, insert_key_row};
use crate::rows::{decode_product, product_from_row, PRODUCT_COLUMNS};
use crate::SqliteStore;

#[async_trait]
impl ProductStore for SqliteStore {
    async fn create_default_key(
        &self,
        key: &KeyRecord,
        alias: &AliasRecord,
    ) -> Result<(), StoreError> {
        let (cols, versions) = encode_key(key).map_err(|Fail(e)| e)?;
        let alias = alias.clone();
        // The alias goes first: if the name is taken, the transaction rolls
        // back before the key's rows were written, and the caller reads the
        // winner's alias.
        self.write(move |tx| {
            let taken: bool = tx
                .prepare_cached("SELECT 1 FROM aliases WHERE account_id = ?1 AND name = ?2")?
                .query_row([alias.account_id.as_str(), alias.name.as_str()], |_| Ok(()))
                .optional()?
                .is_some();
            if taken {
                return Err(StoreError::AlreadyExists.into());
            }
            insert_key_row(tx, &cols, &versions)?;
            insert_alias_row(tx, &alias)
        })
        .await
    }

    async fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        let product = product.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO products (code, class, status, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                product.code.as_str(),
                product.class.as_str(),
                product.status.as_str(),
                product.created_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_product(&self, code: &ProductCode) -> Result<Option<Product>, StoreError> {
        let code = code.as_str().to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE code = ?1"
            ))?
            .query_row([&code], product_from_row)
            .optional()?
            .map(decode_product)
            .transpose()
        })
        .await
    }

    async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY code"
                ))?
                .query_map([], product_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(decode_product).collect()
        })
        .await
    }

    async fn set_product_status(
        &self,
        code: &ProductCode,
        status: ProductStatus,
    ) -> Result<bool, StoreError> {
        let code = code.as_str().to_owned();
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE products SET status = ?1 WHERE code = ?2")?
                .execute(params![status.as_str(), code])?;
            Ok(changed > 0)
        })
        .await
    }
}
