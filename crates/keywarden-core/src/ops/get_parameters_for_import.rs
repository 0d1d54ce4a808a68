//! GetParametersForImport.

use crate::error::KmsError;
use crate::ids::KeyRef;
use crate::kms::{Access, Caller, Kms};
use crate::model::{KeyRecord, KeyState, Origin};
use crate::operation::Operation;
use crate::protector::ImportParameters;

impl Kms {
    /// A wrapping public key and an import token for importing material
    /// into an `EXTERNAL` key, valid for 24 hours. Nothing is stored: the
    /// wrapping private key travels sealed inside the token.
    pub async fn get_parameters_for_import(
        &self,
        caller: &Caller,
        key_ref: &KeyRef,
        algorithm: &str,
        spec: &str,
    ) -> Result<(KeyRecord, ImportParameters), KmsError> {
        let importer = self.importer()?;
        let key = self
            .resolve_fresh(
                caller,
                key_ref,
                Access::Manage(Operation::GetParametersForImport),
            )
            .await?;
        self.require_external(&key)?;
        if key.state == KeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is pending deletion.",
                self.record_arn(&key)
            )));
        }
        let params = importer
            .parameters(&key.key_id, algorithm, spec, self.clock.now())
            .await
            .map_err(|e| self.import_error(e))?;
        Ok((key, params))
    }

    /// Refuses import operations on keys whose material Keywarden generated.
    pub(crate) fn require_external(&self, key: &KeyRecord) -> Result<(), KmsError> {
        if key.origin != Origin::External {
            return Err(KmsError::Unsupported(format!(
                "{} has origin {}; only keys with origin EXTERNAL take imported key material.",
                self.record_arn(key),
                key.origin.as_str()
            )));
        }
        Ok(())
    }

    /// Maps an importer failure to the AWS error of the same meaning.
    pub(crate) fn import_error(&self, e: crate::protector::ImportError) -> KmsError {
        use crate::protector::ImportError as E;
        match e {
            E::Unsupported(m) => KmsError::Unsupported(m),
            E::InvalidToken => {
                KmsError::InvalidImportToken("The import token is invalid for this key.".into())
            }
            E::ExpiredToken => KmsError::ExpiredImportToken(
                "The import token has expired; call GetParametersForImport again.".into(),
            ),
            E::InvalidCiphertext => KmsError::InvalidCiphertext,
            E::IncorrectKeyMaterial => KmsError::IncorrectKeyMaterial(
                "The key material is not valid for the key's KeySpec: 256-bit symmetric key material for SYMMETRIC_DEFAULT, an HMAC key of the spec's allowed length, or a PKCS#8 private key of the spec's size or curve.".into(),
            ),
            E::Failed(p) => KmsError::Protector(p),
        }
    }
}
