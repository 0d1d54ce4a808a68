//! The software [`KeyImporter`]: [`Importer`] for the RSA wrapping, the
//! [`SoftwareProtector`] for storing and fingerprinting the material.

use std::sync::Arc;

use async_trait::async_trait;
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::KeyId;
use keywarden_core::key_spec::KeySpec;
use keywarden_core::protector::{
    ImportError as CoreImportError, ImportParameters, ImportedMaterial, KeyBinding, KeyImporter,
    KeyProtector, ProtectorError,
};

use crate::import::{ImportError, Importer, WrappingAlgorithm, WrappingKeySpec};
use crate::soft::SoftwareProtector;

/// Imported material for software keys: unwrapped with the RSA key sealed
/// in the import token, then wrapped under the root key like generated
/// material. The RSA work runs on tokio's blocking pool.
pub struct SoftKeyImporter {
    importer: Arc<Importer>,
    protector: Arc<SoftwareProtector>,
}

impl std::fmt::Debug for SoftKeyImporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SoftKeyImporter(..)")
    }
}

impl SoftKeyImporter {
    /// An importer whose tokens are sealed by `importer` and whose material
    /// is stored by `protector` (both under the same root key).
    pub fn new(importer: Arc<Importer>, protector: Arc<SoftwareProtector>) -> Self {
        SoftKeyImporter {
            importer,
            protector,
        }
    }
}

fn map_error(e: ImportError) -> CoreImportError {
    match e {
        ImportError::InvalidToken => CoreImportError::InvalidToken,
        ImportError::ExpiredToken => CoreImportError::ExpiredToken,
        ImportError::InvalidCiphertext => CoreImportError::InvalidCiphertext,
        ImportError::IncorrectKeyMaterial => CoreImportError::IncorrectKeyMaterial,
        ImportError::Crypto(what) => CoreImportError::Failed(ProtectorError::Crypto(what)),
    }
}

fn joined() -> CoreImportError {
    CoreImportError::Failed(ProtectorError::Unavailable(
        "import task failed to complete".into(),
    ))
}

#[async_trait]
impl KeyImporter for SoftKeyImporter {
    async fn parameters(
        &self,
        key_id: &KeyId,
        algorithm: &str,
        spec: &str,
        now: UnixMillis,
    ) -> Result<ImportParameters, CoreImportError> {
        let alg = WrappingAlgorithm::parse(algorithm).ok_or_else(|| {
            CoreImportError::Unsupported(format!("Wrapping algorithm {algorithm} is not supported"))
        })?;
        let spec_parsed = WrappingKeySpec::parse(spec).ok_or_else(|| {
            CoreImportError::Unsupported(format!("Wrapping key spec {spec} is not supported"))
        })?;
        let importer = self.importer.clone();
        let key_id = *key_id;
        // RSA key generation: tens of milliseconds to seconds of CPU.
        let p = tokio::task::spawn_blocking(move || {
            importer.parameters(&key_id, alg, spec_parsed, now)
        })
        .await
        .map_err(|_| joined())?
        .map_err(map_error)?;
        Ok(ImportParameters {
            public_key: p.public_key_der,
            import_token: p.import_token,
            valid_to: p.valid_to,
        })
    }

    async fn import(
        &self,
        binding: KeyBinding<'_>,
        spec: KeySpec,
        import_token: &[u8],
        encrypted: &[u8],
        now: UnixMillis,
    ) -> Result<ImportedMaterial, CoreImportError> {
        let importer = self.importer.clone();
        let protector = self.protector.clone();
        let key_id = *binding.key_id;
        let version = binding.version;
        let token = import_token.to_vec();
        let encrypted = encrypted.to_vec();
        // One RSA private-key operation (about a millisecond or more).
        tokio::task::spawn_blocking(move || {
            let binding = KeyBinding {
                key_id: &key_id,
                version,
            };
            if spec != KeySpec::SymmetricDefault {
                let material = importer
                    .unwrap_any(&key_id, &token, &encrypted, now)
                    .map_err(map_error)?;
                let (private, public_key) = keywarden_crypto::import(spec, material.expose())
                    .map_err(|e| match e {
                        ProtectorError::MalformedMaterial => CoreImportError::IncorrectKeyMaterial,
                        ProtectorError::Unsupported(m) => CoreImportError::Unsupported(m),
                        other => CoreImportError::Failed(other),
                    })?;
                return Ok(ImportedMaterial {
                    protector: protector.id().to_owned(),
                    stored: protector.wrap_spec_material(binding, spec, &private)?,
                    fingerprint: protector.fingerprint_material(&key_id, material.expose()),
                    public_key,
                });
            }
            let material = importer
                .unwrap_material(&key_id, &token, &encrypted, now)
                .map_err(map_error)?;
            let stored = protector
                .wrap_material(binding, material.expose())
                .map_err(|e| match e {
                    ProtectorError::MalformedMaterial => CoreImportError::IncorrectKeyMaterial,
                    other => CoreImportError::Failed(other),
                })?;
            Ok(ImportedMaterial {
                protector: protector.id().to_owned(),
                stored,
                fingerprint: protector.fingerprint_material(&key_id, material.expose()),
                public_key: None,
            })
        })
        .await
        .map_err(|_| joined())?
    }
}
