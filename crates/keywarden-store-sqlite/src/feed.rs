//! The change feed (`ChangeFeed`): the `changes` counter, bumped by triggers
//! on the tables the caches hold (schema 4), read on its own connection.

use std::sync::Arc;

use async_trait::async_trait;
use keywarden_core::store::{ChangeFeed, StoreError};

use crate::{blocking, lock, SqliteStore};

#[async_trait]
impl ChangeFeed for SqliteStore {
    async fn change_stamp(&self) -> Result<u64, StoreError> {
        let inner = Arc::clone(&self.inner);
        blocking(move || {
            let conn = lock(&inner.watcher);
            let v: i64 = conn
                .prepare_cached("SELECT counter FROM changes WHERE id = 1")?
                .query_row([], |row| row.get(0))?;
            Ok(v as u64)
        })
        .await
    }
}
