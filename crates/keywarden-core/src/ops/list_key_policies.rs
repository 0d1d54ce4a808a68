//! ListKeyPolicies: every key has exactly one policy, `default`.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::ops::get_key_policy::DEFAULT_POLICY_NAME;

impl Kms {
    /// The names of the key's policies (always `["default"]`, as in AWS).
    pub async fn list_key_policies(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<Vec<&'static str>, KmsError> {
        self.resolve(
            caller,
            key_ref,
            Access::Describe(crate::operation::Operation::ListKeyPolicies),
        )
        .await?;
        Ok(vec![DEFAULT_POLICY_NAME])
    }
}
