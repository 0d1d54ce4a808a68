//! ConnectCustomKeyStore: opens an account store's HSM sessions.
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_ConnectCustomKeyStore.html>

use crate::error::KmsError;
use crate::kms::{Caller, Kms};
use crate::model::{ConnectionErrorCode, ConnectionState, CustomKeyStoreRecord};
use crate::ops::custom_key_stores::HsmConnectError;

impl Kms {
    /// ConnectCustomKeyStore. A `DISCONNECTED` store becomes `CONNECTING`
    /// (stored, so DescribeCustomKeyStores on any node shows it), then this
    /// node opens its protector: `CONNECTED` on success, else `FAILED` with
    /// the `ConnectionErrorCode` (`INVALID_CREDENTIALS` for a refused PIN).
    /// AWS connects in the background and the call succeeds either way;
    /// Keywarden connects within the request (a PKCS#11 login takes
    /// milliseconds) and also succeeds either way: the outcome is the
    /// store's state. Connecting a `CONNECTED` or `CONNECTING` store does
    /// nothing; a `FAILED` one must be disconnected first
    /// (`CustomKeyStoreInvalidStateException`, as AWS).
    pub async fn connect_custom_key_store(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(), KmsError> {
        let read = self.account_key_store(caller, id).await?;
        match read.state {
            ConnectionState::Connected | ConnectionState::Connecting => return Ok(()),
            ConnectionState::Failed => {
                return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is FAILED ({}); disconnect it before connecting it again",
                read.error_code
                    .map_or("no error code", ConnectionErrorCode::as_str)
            )))
            }
            ConnectionState::Disconnected => {}
        }
        let connecting = self
            .put_account_store(
                CustomKeyStoreRecord {
                    state: ConnectionState::Connecting,
                    error_code: None,
                    ..read.clone()
                },
                &read,
            )
            .await?;
        let (state, error_code) = match self.open_account_store(&connecting).await {
            Ok(protector) => {
                self.account_hsms_write().insert(id.to_owned(), protector);
                (ConnectionState::Connected, None)
            }
            Err(e) => (
                ConnectionState::Failed,
                Some(match e {
                    HsmConnectError::InvalidCredentials => ConnectionErrorCode::InvalidCredentials,
                    HsmConnectError::ClusterNotFound => ConnectionErrorCode::ClusterNotFound,
                    HsmConnectError::Unreachable(_) => ConnectionErrorCode::NetworkErrors,
                }),
            ),
        };
        let outcome = self
            .put_account_store(
                CustomKeyStoreRecord {
                    state,
                    error_code,
                    ..connecting.clone()
                },
                &connecting,
            )
            .await;
        if outcome.is_err() {
            // Disconnected meanwhile: do not keep what was opened.
            self.account_hsms_write().remove(id);
        }
        outcome.map(|_| ())
    }
}
