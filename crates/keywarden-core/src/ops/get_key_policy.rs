//! GetKeyPolicy, and the policies a key has when none was given: AWS's
//! default key policy for customer keys, and a managed-key policy for the
//! default keys of cloud products.
//!
//! Key policies are stored, validated and returned; they are not yet
//! evaluated (docs/access-control.md says what is enforced today).

use crate::error::KmsError;
use crate::ids::{AccountId, KeyRef};
use crate::kms::{Access, Caller, Kms};
use crate::model::{KeyManager, KeyRecord};

/// The one policy name a key has (AWS's `default`).
pub const DEFAULT_POLICY_NAME: &str = "default";

/// AWS's default key policy for a key created without one: the account
/// (its root) may do everything, which lets its identity policies decide
/// (AWS KMS Developer Guide, "Default key policy").
pub fn default_key_policy(partition: &str, account: &AccountId) -> String {
    format!(
        r#"{{
  "Version" : "2012-10-17",
  "Id" : "key-default-1",
  "Statement" : [ {{
    "Sid" : "Enable IAM User Permissions",
    "Effect" : "Allow",
    "Principal" : {{
      "AWS" : "arn:{partition}:iam::{account}:root"
    }},
    "Action" : "kms:*",
    "Resource" : "*"
  }} ]
}}"#
    )
}

/// The policy of a cloud product's default key (`alias_<code>`), in the
/// style of AWS managed keys: the product may use it for cryptography on
/// the account's behalf, the account may only read its metadata. Nobody
/// can change it.
pub fn managed_key_policy(partition: &str, account: &AccountId, product_principal: &str) -> String {
    format!(
        r#"{{
  "Version" : "2012-10-17",
  "Id" : "keywarden-managed-1",
  "Statement" : [ {{
    "Sid" : "Allow use through the product for the account",
    "Effect" : "Allow",
    "Principal" : {{
      "AWS" : "{product_principal}"
    }},
    "Action" : [ "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey" ],
    "Resource" : "*",
    "Condition" : {{
      "StringEquals" : {{
        "kms:CallerAccount" : "{account}"
      }}
    }}
  }}, {{
    "Sid" : "Allow direct access to key metadata to the account",
    "Effect" : "Allow",
    "Principal" : {{
      "AWS" : "arn:{partition}:iam::{account}:root"
    }},
    "Action" : [ "kms:Describe*", "kms:Get*", "kms:List*" ],
    "Resource" : "*"
  }} ]
}}"#
    )
}

/// Checks a `PolicyName` parameter: only `default` exists.
pub fn check_policy_name(name: Option<&str>) -> Result<(), KmsError> {
    match name {
        None | Some(DEFAULT_POLICY_NAME) => Ok(()),
        Some(other) => Err(KmsError::Validation(format!(
            "PolicyName '{}' is not valid: the only key policy name is 'default'",
            crate::ids::truncate_for_message(other)
        ))),
    }
}

impl Kms {
    /// The key's policy document: the one stored, else the default one for
    /// its kind of key.
    pub async fn get_key_policy(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        policy_name: Option<&str>,
    ) -> Result<String, KmsError> {
        check_policy_name(policy_name)?;
        let key = self
            .resolve(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::GetKeyPolicy),
            )
            .await?;
        Ok(self.effective_key_policy(&key.record))
    }

    /// The policy `key` has: as stored, or the default for its kind.
    pub fn effective_key_policy(&self, key: &KeyRecord) -> String {
        let partition = &self.config.partition;
        if let Some(policy) = &key.policy {
            return policy.clone();
        }
        match (&key.key_manager, &key.default_for) {
            (KeyManager::Aws, Some(product)) => managed_key_policy(
                partition,
                &key.account_id,
                &self.product_principal_arn(product),
            ),
            _ => default_key_policy(partition, &key.account_id),
        }
    }
}
