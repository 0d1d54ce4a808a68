//! UpdateCustomKeyStore: renames an account store, changes its password or
//! moves it to a related cluster, while it is disconnected.
//! <https://docs.aws.amazon.com/kms/latest/APIReference/API_UpdateCustomKeyStore.html>

use crate::error::KmsError;
use crate::kms::{Caller, Kms};
use crate::ops::custom_key_stores::{
    check_password, require_disconnected, UpdateCustomKeyStoreRequest,
};

impl Kms {
    /// UpdateCustomKeyStore: only while `DISCONNECTED`
    /// (`CustomKeyStoreInvalidStateException`). A new name must be free in
    /// the account; a new password 7-32 characters (sealed like the first);
    /// a new cluster configured, free, and related to the current one:
    /// the same cluster, or one the operator configured on the same token
    /// (module and token label), else `CloudHsmClusterNotRelatedException`.
    pub async fn update_custom_key_store(
        &self,
        caller: &Caller,
        id: &str,
        req: UpdateCustomKeyStoreRequest,
    ) -> Result<(), KmsError> {
        let read = self.account_key_store(caller, id).await?;
        require_disconnected(&read, "UpdateCustomKeyStore")?;
        let mut record = read.clone();
        if let Some(name) = req.new_name {
            self.check_store_name_free(caller, &name, Some(id)).await?;
            record.name = name;
        }
        if let Some(pin) = &req.password {
            check_password(pin)?;
            record.sealed_pin = self.seal_pin(id, pin)?;
        }
        if let Some(cluster_id) = req.cluster_id {
            if cluster_id != read.cluster_id {
                let new = self.hsm_cluster(&cluster_id)?;
                let related = self
                    .hsm
                    .as_ref()
                    .and_then(|c| c.cluster(&read.cluster_id))
                    .is_some_and(|old| old.token == new.token);
                if !related {
                    return Err(KmsError::CloudHsmClusterNotRelated(format!(
                        "Cluster {cluster_id} is not related to cluster {}, the cluster of custom key store {id}",
                        read.cluster_id
                    )));
                }
                self.check_cluster_free(&cluster_id, Some(id)).await?;
                record.cluster_id = cluster_id;
            }
        }
        // A failed store was disconnected; nothing else to clear.
        record.error_code = None;
        if record != read {
            self.put_account_store(record, &read).await?;
        }
        Ok(())
    }
}
