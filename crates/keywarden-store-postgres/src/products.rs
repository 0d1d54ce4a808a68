//! The product registry and default keys (`ProductStore`).

use async_trait::async_trait;
use keywarden_core::ids::ProductCode;
use keywarden_core::model::{AliasRecord, KeyRecord, Product, ProductStatus};
use keywarden_core::store::{ProductStore, StoreError};
use keywarden_core::store_codec::decode_product;

use crate::aliases::insert_alias_row;
use crate::error::Fail;
use crate::keys::{encode_key, insert_key_row};
use crate::rows::{product_from_row, PRODUCT_COLUMNS};
use crate::{transact, Mode, PgStore};

#[async_trait]
impl ProductStore for PgStore {
    async fn create_default_key(
        &self,
        key: &KeyRecord,
        alias: &AliasRecord,
    ) -> Result<(), StoreError> {
        let (cols, versions) = encode_key(key)?;
        transact!(self, Mode::Write, |tx| {
            // Cheap early answer; the alias's primary key decides races:
            // of concurrent creators, all but one fail the alias insert
            // (after waiting for the winner's commit) and roll back their
            // key with it.
            let taken = tx
                .prepare_cached("SELECT 1 FROM aliases WHERE account_id = $1 AND name = $2")
                .await?;
            if tx
                .query_opt(&taken, &[&alias.account_id.as_str(), &alias.name.as_str()])
                .await?
                .is_some()
            {
                return Err(StoreError::AlreadyExists.into());
            }
            insert_key_row(&tx, &cols, &versions).await?;
            insert_alias_row(&tx, alias).await?
        })
    }

    async fn create_product(&self, product: &Product) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO products (code, class, status, created_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &product.code.as_str(),
                    &product.class.as_str(),
                    &product.status.as_str(),
                    &product.created_at.0,
                ],
            )
            .await?;
        })
    }

    async fn get_product(&self, code: &ProductCode) -> Result<Option<Product>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products WHERE code = $1"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&code.as_str()]).await? {
                Some(row) => Some(decode_product(product_from_row(&row)?)?),
                None => None,
            }
        })
    }

    async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY code"
                ))
                .await?;
            tx.query(&stmt, &[])
                .await?
                .iter()
                .map(|row| Ok(decode_product(product_from_row(row)?)?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn set_product_status(
        &self,
        code: &ProductCode,
        status: ProductStatus,
    ) -> Result<bool, StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached("UPDATE products SET status = $1 WHERE code = $2")
                .await?;
            tx.execute(&stmt, &[&status.as_str(), &code.as_str()])
                .await?
                > 0
        })
    }
}
