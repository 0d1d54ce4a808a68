//! GenerateRandom.

use crate::error::KmsError;
use crate::kms::{Caller, Kms};
use crate::secret::Secret;

impl Kms {
    /// 1-1024 random bytes.
    pub fn generate_random(&self, _caller: &Caller, len: usize) -> Result<Secret, KmsError> {
        if len == 0 || len > 1024 {
            return Err(KmsError::Validation(
                "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024".into(),
            ));
        }
        self.random_secret(len)
    }
}
