//! DeleteCustomKeyStore: removes an account's disconnected, empty store.
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_DeleteCustomKeyStore.html>

use crate::error::KmsError;
use crate::kms::{Caller, Kms};
use crate::ops::custom_key_stores::require_disconnected;
use crate::store::StoreError;

impl Kms {
    /// DeleteCustomKeyStore: only while `DISCONNECTED`
    /// (`CustomKeyStoreInvalidStateException`) and holding no keys in any
    /// state, pending deletion included (`CustomKeyStoreHasCMKsException`;
    /// decided by the store in the deleting transaction).
    pub async fn delete_custom_key_store(&self, caller: &Caller, id: &str) -> Result<(), KmsError> {
        let read = self.account_key_store(caller, id).await?;
        require_disconnected(&read, "DeleteCustomKeyStore")?;
        match self
            .store
            .delete_custom_key_store(&caller.account_id, id, read.revision)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::InUse) => Err(KmsError::CustomKeyStoreHasCmks(format!(
                "Custom key store {id} still holds keys; delete them (ScheduleKeyDeletion, and wait for their deletion) first"
            ))),
            Err(StoreError::Conflict) => Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} was changed concurrently; retry the request"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}
