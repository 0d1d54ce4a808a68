//! The deployment's root key check (`DeploymentStore`).

use async_trait::async_trait;
use keywarden_core::store::{DeploymentStore, StoreError};

use crate::{transact, Mode, PgStore};

#[async_trait]
impl DeploymentStore for PgStore {
    async fn root_key_check(&self, check: &[u8]) -> Result<Vec<u8>, StoreError> {
        transact!(self, Mode::Quiet, |tx| {
            // Racing first callers: the primary key lets one insert win;
            // the others' DO NOTHING waits for it, then everyone reads it.
            let insert = tx
                .prepare_cached(
                    "INSERT INTO deployment (id, root_key_check) VALUES (1, $1)
                     ON CONFLICT (id) DO NOTHING",
                )
                .await?;
            tx.execute(&insert, &[&check]).await?;
            let read = tx
                .prepare_cached("SELECT root_key_check FROM deployment WHERE id = 1")
                .await?;
            tx.query_one(&read, &[]).await?.try_get::<_, Vec<u8>>(0)?
        })
    }
}
