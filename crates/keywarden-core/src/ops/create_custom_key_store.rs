//! CreateCustomKeyStore: an account's own custom key store on an HSM
//! cluster the operator approved (`AWS_CLOUDHSM` stores only; docs/hsm.md).
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_CreateCustomKeyStore.html>

use crate::error::KmsError;
use crate::kms::{Caller, Kms};
use crate::model::{ConnectionState, CustomKeyStoreRecord};
use crate::ops::custom_key_stores::{
    check_password, cluster_in_use, same_certificate, CreateCustomKeyStoreRequest,
};
use crate::store::StoreError;

impl Kms {
    /// CreateCustomKeyStore: checks the cluster (configured, not used by
    /// another store, the trust anchor the operator set if any), the name
    /// (unused in the account) and the password (7-32 characters), stores
    /// the store `DISCONNECTED` with its PIN sealed under the root key, and
    /// answers its id (`cks-` and 17 hex digits, as AWS's).
    pub async fn create_custom_key_store(
        &self,
        caller: &Caller,
        req: CreateCustomKeyStoreRequest,
    ) -> Result<String, KmsError> {
        let cluster_id = req.cluster_id.ok_or_else(|| {
            KmsError::Validation(
                "CloudHsmClusterId is required for a custom key store of type AWS_CLOUDHSM".into(),
            )
        })?;
        let trust_anchor = req.trust_anchor.ok_or_else(|| {
            KmsError::Validation(
                "TrustAnchorCertificate is required for a custom key store of type AWS_CLOUDHSM"
                    .into(),
            )
        })?;
        let pin = req.password.ok_or_else(|| {
            KmsError::Validation(
                "KeyStorePassword is required for a custom key store of type AWS_CLOUDHSM".into(),
            )
        })?;
        check_password(&pin)?;
        let cluster = self.hsm_cluster(&cluster_id)?;
        if let Some(expected) = &cluster.trust_anchor {
            if !same_certificate(expected, &trust_anchor) {
                return Err(KmsError::IncorrectTrustAnchor(format!(
                    "The TrustAnchorCertificate is not the trust anchor certificate of cluster {cluster_id}"
                )));
            }
        }
        self.check_store_name_free(caller, &req.name, None).await?;
        self.check_cluster_free(&cluster_id, None).await?;
        let random: [u8; 9] = self.random_array()?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let id = format!("cks-{}", &hex[..17]);
        let record = CustomKeyStoreRecord {
            sealed_pin: self.seal_pin(&id, &pin)?,
            id: id.clone(),
            account_id: caller.account_id.clone(),
            name: req.name.clone(),
            cluster_id: cluster_id.clone(),
            trust_anchor,
            state: ConnectionState::Disconnected,
            error_code: None,
            created_at: self.clock.now(),
            revision: 1,
        };
        match self.store.create_custom_key_store(&record).await {
            Ok(()) => Ok(id),
            // Lost a race: say which uniqueness it was.
            Err(StoreError::AlreadyExists) => {
                self.check_store_name_free(caller, &req.name, None).await?;
                Err(cluster_in_use(&cluster_id))
            }
            Err(e) => Err(e.into()),
        }
    }
}
