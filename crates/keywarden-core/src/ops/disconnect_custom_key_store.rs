//! DisconnectCustomKeyStore: closes an account store's HSM sessions.
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_DisconnectCustomKeyStore.html>

use crate::error::KmsError;
use crate::kms::{Caller, Kms};
use crate::model::{ConnectionState, CustomKeyStoreRecord};

impl Kms {
    /// DisconnectCustomKeyStore: the store becomes `DISCONNECTED` (from any
    /// state; a `DISCONNECTED` one stays so) and this node drops its
    /// protector and every cached key handle, so its keys answer
    /// `KeyUnavailableException` at once; other nodes follow when they
    /// notice the change ([`Kms::sync_custom_key_stores`]).
    pub async fn disconnect_custom_key_store(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(), KmsError> {
        let read = self.account_key_store(caller, id).await?;
        if read.state != ConnectionState::Disconnected || read.error_code.is_some() {
            self.put_account_store(
                CustomKeyStoreRecord {
                    state: ConnectionState::Disconnected,
                    error_code: None,
                    ..read.clone()
                },
                &read,
            )
            .await?;
        }
        if self.account_hsms_write().remove(id).is_some() {
            self.caches.clear();
        }
        Ok(())
    }
}
