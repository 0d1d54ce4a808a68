//! DescribeKey.

use std::sync::Arc;

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::KeyRecord;

impl Kms {
    /// The key's metadata, in any state.
    pub async fn describe_key(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
    ) -> Result<Arc<KeyRecord>, KmsError> {
        Ok(self
            .resolve(
                caller,
                key_ref,
                Access::Describe(crate::operation::Operation::DescribeKey),
            )
            .await?
            .record
            .clone())
    }
}
