//! CreateKey: a new symmetric customer master key.

use crate::error::KmsError;
use crate::ids::KeyId;
use crate::key_spec::{KeyKind, KeySpec, KeyUsageType};
use crate::kms::{Caller, Identity, Kms};
use crate::model::{KeyManager, KeyRecord, KeyState, KeyVersion, MultiRegion, Origin, Tag};
use crate::ops::tag_resource::validate_tags;
use crate::protector::KeyBinding;
use crate::store::StoreError;

/// Longest key description AWS accepts.
pub const MAX_DESCRIPTION: usize = 8192;

/// What the caller asked for.
#[derive(Debug, Clone)]
pub struct CreateKeyRequest {
    /// Description, 0-8192 characters.
    pub description: String,
    /// Where the material comes from.
    pub origin: Origin,
    /// Initial tags.
    pub tags: Vec<Tag>,
    /// Key policy document, kept as given after
    /// [`check_key_policy`](crate::ops::put_key_policy::check_key_policy);
    /// `None` for the default key policy.
    pub policy: Option<String>,
    /// `BypassPolicyLockoutSafetyCheck`: store a `policy` under which the
    /// caller could not call PutKeyPolicy.
    pub bypass_policy_lockout_safety_check: bool,
    /// The custom key store (with `Origin` `AWS_CLOUDHSM`).
    pub custom_key_store_id: Option<String>,
    /// `KeySpec`.
    pub key_spec: KeySpec,
    /// `KeyUsage`; `None` picks the spec's default (or is refused when the
    /// spec has none).
    pub key_usage: Option<KeyUsageType>,
    /// `MultiRegion`: a multi-Region primary key (`mrk-` id) in the
    /// caller's region (docs/multi-region.md).
    pub multi_region: bool,
}

impl CreateKeyRequest {
    /// A request for a symmetric encryption key with the given origin and
    /// nothing else set.
    pub fn symmetric(origin: Origin) -> Self {
        CreateKeyRequest {
            description: String::new(),
            origin,
            tags: Vec::new(),
            policy: None,
            bypass_policy_lockout_safety_check: false,
            custom_key_store_id: None,
            key_spec: KeySpec::SymmetricDefault,
            key_usage: None,
            multi_region: false,
        }
    }
}

/// AWS's rules for `KeySpec` and `KeyUsage` together: the usage the key
/// gets, or `ValidationException`.
pub fn check_spec_and_usage(
    spec: KeySpec,
    usage: Option<KeyUsageType>,
) -> Result<KeyUsageType, KmsError> {
    let usage = match usage.or(spec.default_usage()) {
        Some(u) => u,
        None => {
            return Err(KmsError::Validation(format!(
                "You must specify a KeyUsage value for a KMS key with KeySpec {spec} (one of {})",
                join(spec.usages())
            )))
        }
    };
    if !spec.usages().contains(&usage) {
        return Err(KmsError::Validation(format!(
            "KeyUsage {usage} is not compatible with KeySpec {spec}; it supports {}",
            join(spec.usages())
        )));
    }
    Ok(usage)
}

fn join(usages: &[KeyUsageType]) -> String {
    usages
        .iter()
        .map(|u| u.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Kms {
    /// Creates a customer master key: with freshly generated material, or
    /// (origin `EXTERNAL`) without material, `PendingImport` until
    /// `ImportKeyMaterial`.
    pub async fn create_key(
        &self,
        caller: &Caller,
        req: CreateKeyRequest,
    ) -> Result<KeyRecord, KmsError> {
        let policy_doc = match &req.policy {
            Some(policy) => Some(crate::ops::put_key_policy::check_key_policy(policy)?),
            None => None,
        };
        if req.description.chars().count() > MAX_DESCRIPTION {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to {MAX_DESCRIPTION}"
            )));
        }
        validate_tags(&req.tags)?;
        let usage = check_spec_and_usage(req.key_spec, req.key_usage)?;
        let kind = KeyKind::new(req.key_spec, usage);
        if !kind.is_symmetric_encryption() {
            self.public_crypto()?;
            if req.origin == Origin::External && !req.key_spec.importable() {
                return Err(KmsError::Unsupported(format!(
                    "Imported key material (Origin EXTERNAL) is not supported for KeySpec {}",
                    req.key_spec
                )));
            }
        }
        if req.multi_region {
            // Keywarden's limits (docs/multi-region.md): imported material
            // would have to be imported into every replica, and an HSM key
            // store is one cluster, not one per region.
            if req.origin == Origin::External {
                return Err(KmsError::Unsupported(
                    "Multi-Region keys with imported key material (Origin EXTERNAL) are not supported"
                        .into(),
                ));
            }
            if req.custom_key_store_id.is_some() || req.origin == Origin::AwsCloudHsm {
                return Err(KmsError::Unsupported(
                    "Multi-Region keys cannot be created in a custom key store".into(),
                ));
            }
        }
        // Decided here, once the tags are checked and before the key store
        // is looked at: an identity policy may ask about the tags
        // (`aws:RequestTag/<key>`, `aws:TagKeys`). The root has every
        // identity permission.
        if caller.product.is_none() && !matches!(caller.identity, Identity::Root) {
            // AWS's CreateKey condition keys: the request's tags and the
            // key it would make (kms:KeySpec, kms:KeyUsage, kms:KeyOrigin).
            let mut facts = crate::authz::request_tag_keys(&req.tags);
            facts
                .insert("kms:KeySpec", kind.spec.as_str())
                .insert("kms:KeyUsage", kind.usage.as_str())
                .insert("kms:KeyOrigin", req.origin.as_str())
                .insert(
                    "kms:MultiRegion",
                    if req.multi_region { "true" } else { "false" },
                );
            if req.multi_region {
                facts.insert("kms:MultiRegionKeyType", "PRIMARY");
            }
            let tagged = caller.with_operation_keys(facts);
            self.authorize_action(&tagged, "kms:CreateKey", "*").await?;
        }
        let protector = match (req.origin, &req.custom_key_store_id) {
            (Origin::AwsKms, None) => self.default_protector.clone(),
            (Origin::External, None) => {
                self.importer()?;
                self.default_protector.clone()
            }
            (Origin::AwsCloudHsm, Some(id)) => self.store_protector(caller, id).await?,
            (Origin::AwsCloudHsm, None) => {
                return Err(KmsError::Validation(
                    "Origin AWS_CLOUDHSM requires a CustomKeyStoreId".into(),
                ))
            }
            (_, Some(_)) => {
                return Err(KmsError::Unsupported(
                    "CustomKeyStoreId requires Origin AWS_CLOUDHSM".into(),
                ))
            }
        };
        let mut tags: Vec<Tag> = Vec::new();
        for t in req.tags {
            match tags.iter_mut().find(|e| e.key == t.key) {
                Some(existing) => existing.value = t.value,
                None => tags.push(t),
            }
        }
        let now = self.clock.now();
        // A collision of 122 random bits is not expected; retry once anyway
        // rather than fail the request.
        for _ in 0..2 {
            let key_id = if req.multi_region {
                KeyId::multi_region_from_random(self.random_array()?)
            } else {
                KeyId::from_random(self.random_array()?)
            };
            if let (Some(doc), false) = (&policy_doc, req.bypass_policy_lockout_safety_check) {
                let arn =
                    self.regional_key_arn(caller.region.as_deref(), &caller.account_id, &key_id);
                self.check_lockout(caller, &arn, &caller.account_id, doc)
                    .await?;
            }
            let mut kind = kind.clone();
            let (state, versions) = if req.origin == Origin::External {
                (KeyState::PendingImport, Vec::new())
            } else {
                let material = if kind.is_symmetric_encryption() {
                    protector
                        .generate(KeyBinding {
                            key_id: &key_id,
                            version: 1,
                        })
                        .map_err(KmsError::Protector)?
                } else {
                    let generated = self
                        .generate_on_pool(protector.clone(), key_id, kind.spec)
                        .await?;
                    kind.public_key = generated.public_key;
                    generated.stored
                };
                (
                    KeyState::Enabled,
                    vec![KeyVersion {
                        version: 1,
                        protector: protector.id().to_owned(),
                        material,
                        created_at: now,
                        rotation: None,
                    }],
                )
            };
            let key = KeyRecord {
                key_id,
                account_id: caller.account_id.clone(),
                revision: 1,
                description: req.description.clone(),
                state,
                origin: req.origin,
                key_manager: KeyManager::Customer,
                created_at: now,
                deletion_date: None,
                pending_window_days: None,
                tags: tags.clone(),
                policy: req.policy.clone(),
                versions,
                rotation: None,
                on_demand_rotations: 0,
                deletion_protection: false,
                import: None,
                default_for: None,
                kind,
                region: caller.region.clone(),
                multi_region: req.multi_region.then(|| MultiRegion {
                    primary_region: self.caller_region(caller).to_owned(),
                    others: Vec::new(),
                }),
            };
            match self.store.insert_key(&key).await {
                Ok(()) => return Ok(key),
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::AlreadyExists.into())
    }

    /// Runs a protector's `generate_spec` (seconds for RSA-4096, tens of
    /// milliseconds for ML-DSA) on the key generation pool.
    pub(crate) async fn generate_on_pool(
        &self,
        protector: std::sync::Arc<dyn crate::protector::KeyProtector>,
        key_id: KeyId,
        spec: KeySpec,
    ) -> Result<crate::protector::GeneratedMaterial, KmsError> {
        self.on_keygen_pool(move || {
            protector.generate_spec(
                KeyBinding {
                    key_id: &key_id,
                    version: 1,
                },
                spec,
            )
        })
        .await
    }

    /// Runs `work` (key generation) on tokio's blocking pool, at most one
    /// per CPU at a time, so a burst of CreateKey or GenerateDataKeyPair
    /// cannot starve the event loop or fill the blocking pool.
    pub(crate) async fn on_keygen_pool<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, crate::protector::ProtectorError> + Send + 'static,
    ) -> Result<T, KmsError> {
        use crate::protector::ProtectorError;
        let _permit = self
            .keygen_permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| KmsError::Protector(ProtectorError::Crypto("key generation pool")))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| KmsError::Protector(ProtectorError::Crypto("key generation task")))?
            .map_err(KmsError::from_protector)
    }
}
