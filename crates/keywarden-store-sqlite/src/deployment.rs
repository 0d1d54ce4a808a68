//! The deployment's root key check (`DeploymentStore`).

use async_trait::async_trait;
use keywarden_core::store::{DeploymentStore, StoreError};

use crate::SqliteStore;

#[async_trait]
impl DeploymentStore for SqliteStore {
    async fn root_key_check(&self, check: &[u8]) -> Result<Vec<u8>, StoreError> {
        let check = check.to_vec();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO deployment (id, root_key_check) VALUES (1, ?1)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute([&check])?;
            Ok(tx
                .prepare_cached("SELECT root_key_check FROM deployment WHERE id = 1")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }
}
