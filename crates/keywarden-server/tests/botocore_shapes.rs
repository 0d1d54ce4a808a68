//! Every operation's real response, checked against botocore's model of AWS
//! KMS (`kms/2014-11-01/service-2.json`, as the test venv's botocore ships
//! it): no member the output shape does not define (except Keywarden's
//! documented extensions, docs/api-extensions.md), every required member
//! present, scalar types as the model says, recursively through nested
//! structures, lists and maps. Also: every `TrentService` operation of the
//! table exists in the model, and every response of every operation (the
//! extensions too) writes its object members in sorted order, the order the
//! bodies had when they were built as JSON maps.
//!
//! The model is found through `KEYWARDEN_BOTOCORE_MODEL` (a path to
//! `service-2.json` or `service-2.json.gz`); `scripts/test.sh` creates the
//! venv and sets it. Without it the model checks print "skipped: ..." and
//! pass, except under `CI`, where a missing model fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use keywarden_core::clock::SystemClock;
use keywarden_core::kms::KmsParts;
use keywarden_core::{Caller, Kms, KmsConfig, Namespace, Operation};
use keywarden_protector_soft::{
    Importer, RootKey, SoftKeyImporter, SoftwareProtector, SystemRandom,
};
use keywarden_store_sqlite::SqliteStore;
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

/// Members Keywarden adds to AWS shapes (docs/api-extensions.md); AWS
/// clients skip members their model does not have.
const EXTENSIONS: &[(&str, &str)] = &[
    ("KeyMetadata", "DeletionProtectionEnabled"),
    ("KeyMetadata", "ProtectionLevel"),
    ("KeyLastUsageData", "Principal"),
];

const MODEL_VAR: &str = "KEYWARDEN_BOTOCORE_MODEL";

/// botocore's KMS model, or `None` (after saying so) when it is not
/// configured outside CI.
fn model() -> Option<Value> {
    let path = match std::env::var_os(MODEL_VAR) {
        Some(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{MODEL_VAR} is not set: CI must check responses against botocore's model \
                     (scripts/test.sh sets it after `scripts/python-tests.sh --venv-only`)"
                );
            }
            println!(
                "skipped: {MODEL_VAR} is not set (path to botocore's kms/2014-11-01/service-2.json[.gz]; \
                 scripts/test.sh sets it)"
            );
            return None;
        }
    };
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        // botocore ships the model gzipped; gzip(1) keeps a decompressor out
        // of the dependency tree.
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("{MODEL_VAR}: running gzip -dc {}: {e}", path.display()));
        assert!(
            out.status.success(),
            "{MODEL_VAR}: gzip -dc {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    } else {
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{MODEL_VAR}: reading {}: {e}", path.display()))
    };
    let model: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{MODEL_VAR}: {} is not JSON: {e}", path.display()));
    assert_eq!(
        model["metadata"]["targetPrefix"], "TrentService",
        "{MODEL_VAR} must be the KMS model"
    );
    Some(model)
}

struct World {
    rt: tokio::runtime::Runtime,
    kms: Kms,
    caller: Caller,
    /// Every response body, by operation, in call order.
    responses: Vec<(Operation, Vec<u8>)>,
    _dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(RootKey::from_bytes(&[5u8; 32]));
        let protector = Arc::new(SoftwareProtector::new(root.clone()));
        let importer =
            SoftKeyImporter::new(Arc::new(Importer::new(root.clone())), protector.clone());
        let kms = Kms::new(KmsParts {
            store: Arc::new(SqliteStore::open(&dir.path().join("shapes.db")).unwrap()),
            software_protector: protector,
            sealer: root,
            random: Arc::new(SystemRandom::new()),
            clock: Arc::new(SystemClock),
            config: KmsConfig {
                other_regions: vec!["eu-west-1".into()],
                ..KmsConfig::default()
            },
        })
        .with_importer(Arc::new(importer))
        .with_public_key_crypto(Arc::new(keywarden_crypto::Crypto))
        .with_hsm_connector(Arc::new(RefusingCluster));
        let issued = rt.block_on(kms.create_account("shapes")).unwrap();
        rt.block_on(kms.register_seed_products()).unwrap();
        let caller = Caller {
            product: None,
            account_id: issued.account_id.clone(),
            principal: issued.access_key_id.clone(),
            identity: keywarden_core::kms::Identity::Root,
            request_id: "shapes-request".into(),
            facts: Default::default(),
            region: None,
        };
        World {
            rt,
            kms,
            caller,
            responses: Vec::new(),
            _dir: dir,
        }
    }

    /// Runs `op` with `body`, which must succeed; keeps the raw response.
    fn ok(&mut self, op: Operation, body: Value) -> Value {
        let body = serde_json::to_vec(&body).unwrap();
        let out = self
            .rt
            .block_on(keywarden_server::run(&self.kms, &self.caller, op, &body))
            .unwrap_or_else(|e| panic!("{op}: {e:?}"));
        let value = serde_json::from_slice(&out).unwrap();
        self.responses.push((op, out));
        value
    }
}

/// A multi-Region key replicated to eu-west-1 (DescribeKey's
/// `MultiRegionConfiguration` in both regions), its primary moved there
/// and back, and a primary pending replica deletion.
fn multi_region(w: &mut World) {
    use Operation as Op;
    let created = w.ok(
        Op::CreateKey,
        json!({"MultiRegion": true, "Description": "mrk"}),
    );
    let mrk = str_of(&created["KeyMetadata"], "KeyId");
    w.ok(
        Op::ReplicateKey,
        json!({"KeyId": mrk, "ReplicaRegion": "eu-west-1", "Description": "replica",
               "Tags": [{"TagKey": "where", "TagValue": "eu"}]}),
    );
    w.ok(Op::DescribeKey, json!({"KeyId": mrk}));
    let home = w.caller.clone();
    w.caller.region = Some("eu-west-1".into());
    w.ok(Op::DescribeKey, json!({"KeyId": mrk}));
    w.caller = home.clone();
    w.ok(
        Op::UpdatePrimaryRegion,
        json!({"KeyId": mrk, "PrimaryRegion": "eu-west-1"}),
    );
    w.caller.region = Some("eu-west-1".into());
    w.ok(
        Op::UpdatePrimaryRegion,
        json!({"KeyId": mrk, "PrimaryRegion": "us-east-1"}),
    );
    w.caller = home;
    w.ok(
        Op::ScheduleKeyDeletion,
        json!({"KeyId": mrk, "PendingWindowInDays": 7}),
    );
    w.ok(Op::DescribeKey, json!({"KeyId": mrk}));
    w.ok(Op::CancelKeyDeletion, json!({"KeyId": mrk}));
}

fn str_of(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_owned()
}

/// Calls every operation at least once, in states that fill the optional
/// and nested members (a used key, a rotated key, a grant with constraints,
/// imported material, a truncated page).
fn workload(w: &mut World) {
    use Operation as Op;
    let created = w.ok(
        Op::CreateKey,
        json!({"Description": "shapes", "Tags": [{"TagKey": "team", "TagValue": "kms"}]}),
    );
    let key = str_of(&created["KeyMetadata"], "KeyId");
    let other = str_of(&w.ok(Op::CreateKey, json!({}))["KeyMetadata"], "KeyId");
    let external = str_of(
        &w.ok(Op::CreateKey, json!({"Origin": "EXTERNAL"}))["KeyMetadata"],
        "KeyId",
    );
    w.ok(Op::DescribeKey, json!({"KeyId": key}));
    let page = w.ok(Op::ListKeys, json!({"Limit": 1}));
    assert_eq!(page["Truncated"], true);
    w.ok(Op::ListKeys, json!({}));
    w.ok(
        Op::UpdateKeyDescription,
        json!({"KeyId": key, "Description": "renamed"}),
    );

    w.ok(
        Op::CreateAlias,
        json!({"AliasName": "alias/shapes", "TargetKeyId": key}),
    );
    w.ok(
        Op::UpdateAlias,
        json!({"AliasName": "alias/shapes", "TargetKeyId": key}),
    );
    w.ok(Op::ListAliases, json!({}));
    w.ok(Op::ListAliases, json!({"KeyId": key, "Limit": 1}));

    w.ok(
        Op::TagResource,
        json!({"KeyId": key, "Tags": [{"TagKey": "env", "TagValue": "test"}]}),
    );
    w.ok(Op::ListResourceTags, json!({"KeyId": key, "Limit": 1}));
    w.ok(Op::ListResourceTags, json!({"KeyId": key}));
    w.ok(Op::UntagResource, json!({"KeyId": key, "TagKeys": ["env"]}));

    w.ok(Op::GetKeyPolicy, json!({"KeyId": key}));
    w.ok(
        Op::PutKeyPolicy,
        json!({"KeyId": key, "PolicyName": "default", "Policy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#}),
    );
    w.ok(
        Op::GetKeyPolicy,
        json!({"KeyId": key, "PolicyName": "default"}),
    );
    w.ok(Op::ListKeyPolicies, json!({"KeyId": key}));

    let context = json!({"purpose": "shapes"});
    let enc = w.ok(
        Op::Encrypt,
        json!({"KeyId": key, "Plaintext": B64.encode(b"hello"), "EncryptionContext": context}),
    );
    let blob = str_of(&enc, "CiphertextBlob");
    w.ok(
        Op::Decrypt,
        json!({"CiphertextBlob": blob, "EncryptionContext": context}),
    );
    w.ok(
        Op::ReEncrypt,
        json!({"CiphertextBlob": blob, "SourceEncryptionContext": context,
               "DestinationKeyId": other}),
    );
    w.ok(
        Op::GenerateDataKey,
        json!({"KeyId": "alias/shapes", "KeySpec": "AES_256"}),
    );
    w.ok(
        Op::GenerateDataKeyWithoutPlaintext,
        json!({"KeyId": key, "NumberOfBytes": 16}),
    );
    w.ok(Op::GenerateRandom, json!({"NumberOfBytes": 32}));
    w.ok(Op::GetKeyLastUsage, json!({"KeyId": key}));
    w.ok(Op::GetKeyLastUsage, json!({"KeyId": external}));

    w.ok(
        Op::EnableKeyRotation,
        json!({"KeyId": key, "RotationPeriodInDays": 90}),
    );
    w.ok(Op::GetKeyRotationStatus, json!({"KeyId": key}));
    w.ok(Op::RotateKeyOnDemand, json!({"KeyId": key}));
    w.ok(
        Op::ListKeyRotations,
        json!({"KeyId": key, "IncludeKeyMaterial": "ALL_KEY_MATERIAL"}),
    );
    w.ok(Op::ListKeyRotations, json!({"KeyId": key, "Limit": 1}));
    w.ok(Op::DisableKeyRotation, json!({"KeyId": key}));
    w.ok(Op::GetKeyRotationStatus, json!({"KeyId": key}));

    let grantee = "arn:aws:iam::111122223333:role/shapes";
    let grant = w.ok(
        Op::CreateGrant,
        json!({"KeyId": key, "GranteePrincipal": grantee, "RetiringPrincipal": grantee,
               "Operations": ["Decrypt", "GenerateDataKey"], "Name": "shapes",
               "Constraints": {"EncryptionContextSubset": {"purpose": "shapes"}}}),
    );
    let second = w.ok(
        Op::CreateGrant,
        json!({"KeyId": key, "GranteePrincipal": grantee, "Operations": ["Encrypt"],
               "Constraints": {"EncryptionContextEquals": {"purpose": "shapes"}}}),
    );
    w.ok(Op::ListGrants, json!({"KeyId": key}));
    w.ok(Op::ListGrants, json!({"KeyId": key, "Limit": 1}));
    w.ok(
        Op::ListRetirableGrants,
        json!({"RetiringPrincipal": grantee}),
    );
    w.ok(
        Op::RetireGrant,
        json!({"GrantToken": str_of(&grant, "GrantToken")}),
    );
    w.ok(
        Op::RevokeGrant,
        json!({"KeyId": key, "GrantId": str_of(&second, "GrantId")}),
    );

    let params = w.ok(
        Op::GetParametersForImport,
        json!({"KeyId": external, "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
               "WrappingKeySpec": "RSA_2048"}),
    );
    let wrapped = wrap_material(&B64.decode(str_of(&params, "PublicKey")).unwrap());
    let in_30_days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 30 * 86_400;
    w.ok(
        Op::ImportKeyMaterial,
        json!({"KeyId": external, "ImportToken": str_of(&params, "ImportToken"),
               "EncryptedKeyMaterial": B64.encode(wrapped), "ValidTo": in_30_days}),
    );
    w.ok(Op::DescribeKey, json!({"KeyId": external}));
    w.ok(Op::DeleteImportedKeyMaterial, json!({"KeyId": external}));

    w.ok(Op::DisableKey, json!({"KeyId": other}));
    w.ok(Op::EnableKey, json!({"KeyId": other}));
    w.ok(
        Op::ScheduleKeyDeletion,
        json!({"KeyId": other, "PendingWindowInDays": 7}),
    );
    w.ok(Op::DescribeKey, json!({"KeyId": other}));
    w.ok(Op::CancelKeyDeletion, json!({"KeyId": other}));
    w.ok(Op::DescribeCustomKeyStores, json!({}));
    multi_region(w);
    other_specs(w);
    account_key_stores(w);
    w.ok(Op::DeleteAlias, json!({"AliasName": "alias/shapes"}));

    // The extensions: no AWS model, but the same ordering rule.
    w.ok(Op::EnableKeyDeletionProtection, json!({"KeyId": key}));
    w.ok(Op::DisableKeyDeletionProtection, json!({"KeyId": key}));
    w.ok(Op::GetAccountBalance, json!({}));
    let keyring = w.ok(
        Op::CreateKeyring,
        json!({"Name": "shapes", "KeyId": "alias_mysql", "KeyNumbers": [1]}),
    );
    let keyring = str_of(&keyring, "KeyringId");
    w.ok(Op::DescribeKeyring, json!({"KeyringId": keyring}));
    w.ok(Op::ListKeyrings, json!({}));
    w.ok(
        Op::RotateKeyringKey,
        json!({"KeyringId": keyring, "KeyNumber": 1}),
    );
    w.ok(Op::RevokeKeyringToken, json!({"KeyringId": keyring}));
    w.ok(Op::ListKeyrings, json!({}));
    w.ok(Op::CreateKeyringToken, json!({"KeyringId": keyring}));
    w.ok(Op::DeleteKeyring, json!({"KeyringId": keyring}));
}

/// An operator-approved HSM cluster whose token refuses every PIN, so a
/// store on it goes through DISCONNECTED, CONNECTING and FAILED (filling
/// `ConnectionErrorCode`) without an HSM.
struct RefusingCluster;

impl keywarden_core::ops::custom_key_stores::HsmConnector for RefusingCluster {
    fn cluster(&self, id: &str) -> Option<keywarden_core::ops::custom_key_stores::HsmCluster> {
        (id == "cluster-shapes1234567").then(|| {
            keywarden_core::ops::custom_key_stores::HsmCluster {
                id: id.to_owned(),
                token: "shapes-token".into(),
                trust_anchor: None,
            }
        })
    }

    fn connect(
        &self,
        _store_id: &str,
        _cluster: &str,
        _pin: &keywarden_core::secret::Secret,
    ) -> Result<
        Arc<dyn keywarden_core::protector::KeyProtector>,
        keywarden_core::ops::custom_key_stores::HsmConnectError,
    > {
        Err(keywarden_core::ops::custom_key_stores::HsmConnectError::InvalidCredentials)
    }
}

/// The custom key store management operations on a cluster whose token
/// refuses the PIN.
fn account_key_stores(w: &mut World) {
    use Operation as Op;
    let created = w.ok(
        Op::CreateCustomKeyStore,
        json!({"CustomKeyStoreName": "shapes-store", "CloudHsmClusterId": "cluster-shapes1234567",
               "TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
               "KeyStorePassword": "kmsuser-password"}),
    );
    let id = str_of(&created, "CustomKeyStoreId");
    w.ok(
        Op::UpdateCustomKeyStore,
        json!({"CustomKeyStoreId": id, "NewCustomKeyStoreName": "shapes-store-2"}),
    );
    w.ok(Op::ConnectCustomKeyStore, json!({"CustomKeyStoreId": id}));
    let described = w.ok(Op::DescribeCustomKeyStores, json!({"CustomKeyStoreId": id}));
    assert_eq!(
        described["CustomKeyStores"][0]["ConnectionState"], "FAILED",
        "{described}"
    );
    w.ok(
        Op::DisconnectCustomKeyStore,
        json!({"CustomKeyStoreId": id}),
    );
    w.ok(Op::DeleteCustomKeyStore, json!({"CustomKeyStoreId": id}));
}

/// The operations of keys of other specs, each with a key that fills its
/// response's optional members.
fn other_specs(w: &mut World) {
    use Operation as Op;
    let create = |w: &mut World, spec: &str, usage: &str| {
        let meta = w.ok(Op::CreateKey, json!({"KeySpec": spec, "KeyUsage": usage}));
        str_of(&meta["KeyMetadata"], "KeyId")
    };
    let message = B64.encode(b"shapes message");
    let signer = create(w, "ECC_NIST_P256", "SIGN_VERIFY");
    w.ok(Op::DescribeKey, json!({"KeyId": signer}));
    let signed = w.ok(
        Op::Sign,
        json!({"KeyId": signer, "Message": message, "SigningAlgorithm": "ECDSA_SHA_256"}),
    );
    w.ok(
        Op::Verify,
        json!({"KeyId": signer, "Message": message, "MessageType": "RAW",
               "Signature": str_of(&signed, "Signature"), "SigningAlgorithm": "ECDSA_SHA_256"}),
    );
    w.ok(Op::GetPublicKey, json!({"KeyId": signer}));
    let rsa = create(w, "RSA_2048", "ENCRYPT_DECRYPT");
    w.ok(Op::GetPublicKey, json!({"KeyId": rsa}));
    let enc = w.ok(
        Op::Encrypt,
        json!({"KeyId": rsa, "Plaintext": message, "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    );
    w.ok(
        Op::Decrypt,
        json!({"KeyId": rsa, "CiphertextBlob": str_of(&enc, "CiphertextBlob"),
               "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}),
    );
    let mac_key = create(w, "HMAC_256", "GENERATE_VERIFY_MAC");
    w.ok(Op::DescribeKey, json!({"KeyId": mac_key}));
    let mac = w.ok(
        Op::GenerateMac,
        json!({"KeyId": mac_key, "Message": message, "MacAlgorithm": "HMAC_SHA_256"}),
    );
    w.ok(
        Op::VerifyMac,
        json!({"KeyId": mac_key, "Message": message, "MacAlgorithm": "HMAC_SHA_256",
               "Mac": str_of(&mac, "Mac")}),
    );
    let agreer = create(w, "ECC_NIST_P256", "KEY_AGREEMENT");
    w.ok(Op::DescribeKey, json!({"KeyId": agreer}));
    let peer = w.ok(Op::GetPublicKey, json!({"KeyId": signer}));
    w.ok(
        Op::DeriveSharedSecret,
        json!({"KeyId": agreer, "KeyAgreementAlgorithm": "ECDH",
               "PublicKey": str_of(&peer, "PublicKey")}),
    );
    let kem = create(w, "ML_KEM_768", "ENCAPSULATE_DECAPSULATE");
    w.ok(Op::GetPublicKey, json!({"KeyId": kem}));
    let encapsulated = w.ok(
        Op::Encapsulate,
        json!({"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM"}),
    );
    w.ok(
        Op::Decapsulate,
        json!({"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM",
               "SharedSecretCiphertextBlob": str_of(&encapsulated, "SharedSecretCiphertextBlob")}),
    );
    let symmetric = create(w, "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT");
    w.ok(
        Op::GenerateDataKeyPair,
        json!({"KeyId": symmetric, "KeyPairSpec": "ECC_NIST_P256",
               "EncryptionContext": {"purpose": "shapes"}}),
    );
    w.ok(
        Op::GenerateDataKeyPairWithoutPlaintext,
        json!({"KeyId": symmetric, "KeyPairSpec": "RSA_2048"}),
    );
}

/// 32 bytes of key material wrapped with RSAES_OAEP_SHA_256 under the
/// import's public key, as a BYOK client does.
fn wrap_material(public_key_der: &[u8]) -> Vec<u8> {
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey, OAEP_SHA256_MGF1SHA256};
    let key = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_key_der).unwrap())
        .unwrap();
    let mut out = vec![0u8; key.ciphertext_size()];
    let len = key
        .encrypt(&OAEP_SHA256_MGF1SHA256, &[7u8; 32], &mut out, None)
        .unwrap()
        .len();
    out.truncate(len);
    out
}

/// Checks `value` against shape `name` of the model; problems go to `errors`
/// with their path.
fn check_shape(
    shapes: &Value,
    name: &str,
    value: &Value,
    path: &str,
    seen_members: &mut BTreeSet<String>,
    errors: &mut Vec<String>,
) {
    let shape = &shapes[name];
    let kind = shape["type"].as_str().unwrap_or("");
    match kind {
        "structure" => {
            let Some(object) = value.as_object() else {
                errors.push(format!("{path}: {name} must be an object, got {value}"));
                return;
            };
            let members = shape["members"].as_object().cloned().unwrap_or_default();
            for (field, v) in object {
                match members.get(field) {
                    Some(member) => {
                        seen_members.insert(format!("{name}.{field}"));
                        let member_shape = member["shape"].as_str().unwrap();
                        check_shape(
                            shapes,
                            member_shape,
                            v,
                            &format!("{path}.{field}"),
                            seen_members,
                            errors,
                        );
                    }
                    None if EXTENSIONS.contains(&(name, field.as_str())) => {}
                    None => errors.push(format!(
                        "{path}.{field}: AWS's {name} has no member {field}"
                    )),
                }
            }
            for required in shape["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                if !object.contains_key(required) {
                    errors.push(format!(
                        "{path}: required member {name}.{required} is missing"
                    ));
                }
            }
        }
        "list" => {
            let Some(items) = value.as_array() else {
                errors.push(format!("{path}: {name} must be a list, got {value}"));
                return;
            };
            let member = shape["member"]["shape"].as_str().unwrap();
            for (i, item) in items.iter().enumerate() {
                check_shape(
                    shapes,
                    member,
                    item,
                    &format!("{path}[{i}]"),
                    seen_members,
                    errors,
                );
            }
        }
        "map" => {
            let Some(object) = value.as_object() else {
                errors.push(format!("{path}: {name} must be a map, got {value}"));
                return;
            };
            let value_shape = shape["value"]["shape"].as_str().unwrap();
            for (k, v) in object {
                check_shape(
                    shapes,
                    value_shape,
                    v,
                    &format!("{path}[{k}]"),
                    seen_members,
                    errors,
                );
            }
        }
        "string" => match value.as_str() {
            None => errors.push(format!("{path}: {name} must be a string, got {value}")),
            Some(s) => {
                if let Some(allowed) = shape["enum"].as_array() {
                    if !allowed.iter().any(|a| a == s) {
                        errors.push(format!("{path}: {s:?} is not a value of enum {name}"));
                    }
                }
            }
        },
        "blob" => {
            if value.as_str().is_none_or(|s| B64.decode(s).is_err()) {
                errors.push(format!("{path}: {name} must be base64, got {value}"));
            }
        }
        "boolean" => {
            if !value.is_boolean() {
                errors.push(format!("{path}: {name} must be a boolean, got {value}"));
            }
        }
        "integer" | "long" => {
            if !(value.is_i64() || value.is_u64()) {
                errors.push(format!("{path}: {name} must be an integer, got {value}"));
            }
        }
        "timestamp" | "double" | "float" => {
            if !value.is_number() {
                errors.push(format!("{path}: {name} must be a number, got {value}"));
            }
        }
        other => errors.push(format!("{path}: shape {name} has unknown type {other:?}")),
    }
}

#[test]
fn responses_match_botocore_model() {
    let mut w = World::new();
    workload(&mut w);

    // Every operation ran, so every handler's response is covered below.
    let ran: BTreeSet<&str> = w.responses.iter().map(|(op, _)| op.target()).collect();
    for op in Operation::ALL {
        assert!(ran.contains(op.target()), "the workload never calls {op}");
    }

    // Member order: sorted, as the bodies were when built as JSON maps.
    for (op, body) in &w.responses {
        let mut de = serde_json::Deserializer::from_slice(body);
        if let Err(e) = SortedKeys::deserialize(&mut de) {
            panic!(
                "{op}: members out of order ({e}): {}",
                String::from_utf8_lossy(body)
            );
        }
    }

    let Some(model) = model() else { return };
    let operations = model["operations"].as_object().unwrap();
    let shapes = &model["shapes"];
    let mut errors = Vec::new();
    let mut seen_members = BTreeSet::new();
    for op in Operation::ALL {
        if op.namespace() == Namespace::Trent && !operations.contains_key(op.wire_name()) {
            errors.push(format!("{op}: botocore's model has no such operation"));
        }
    }
    let mut checked = BTreeMap::<&str, usize>::new();
    for (op, body) in &w.responses {
        if op.namespace() != Namespace::Trent {
            continue;
        }
        let value: Value = serde_json::from_slice(body).unwrap();
        *checked.entry(op.wire_name()).or_default() += 1;
        match operations[op.wire_name()]["output"]["shape"].as_str() {
            Some(output) => check_shape(
                shapes,
                output,
                &value,
                op.wire_name(),
                &mut seen_members,
                &mut errors,
            ),
            None if value == json!({}) => {}
            None => errors.push(format!("{op}: AWS's answer has no body, ours is {value}")),
        }
    }
    assert!(
        errors.is_empty(),
        "responses that do not match botocore's model:\n  {}",
        errors.join("\n  ")
    );
    // The nested shapes were really exercised, not just empty lists.
    for member in [
        "KeyMetadata.ExpirationModel",
        "KeyMetadata.DeletionDate",
        "KeyListEntry.KeyArn",
        "AliasListEntry.AliasArn",
        "Tag.TagKey",
        "KeyLastUsageData.Operation",
        "RotationsListEntry.RotationType",
        "GrantListEntry.Constraints",
        "GrantConstraints.EncryptionContextSubset",
        "GrantConstraints.EncryptionContextEquals",
        "GetKeyRotationStatusResponse.NextRotationDate",
        "ListKeysResponse.NextMarker",
    ] {
        assert!(
            seen_members.contains(member),
            "the workload never produced {member}"
        );
    }
    println!(
        "checked {} responses of {} operations against botocore's model",
        checked.values().sum::<usize>(),
        checked.len()
    );
}

/// The checker itself: an unknown member, a missing required one, a wrong
/// type and an out-of-order body are each caught.
#[test]
fn checker_catches_what_it_must() {
    let shapes = json!({
        "Out": {"type": "structure", "required": ["KeyId"],
                "members": {"KeyId": {"shape": "Str"}, "Entries": {"shape": "List"}}},
        "List": {"type": "list", "member": {"shape": "Entry"}},
        "Entry": {"type": "structure", "members": {"Enabled": {"shape": "Bool"}}},
        "Str": {"type": "string"},
        "Bool": {"type": "boolean"},
    });
    let check = |value: Value| {
        let mut errors = Vec::new();
        check_shape(
            &shapes,
            "Out",
            &value,
            "Op",
            &mut BTreeSet::new(),
            &mut errors,
        );
        errors
    };
    assert!(check(json!({"KeyId": "k", "Entries": [{"Enabled": true}]})).is_empty());
    let errors = check(json!({"Entries": [{"Enabled": "yes", "Extra": 1}]}));
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("no member Extra")));
    assert!(errors.iter().any(|e| e.contains("Out.KeyId is missing")));
    assert!(errors.iter().any(|e| e.contains("must be a boolean")));
    let mut de = serde_json::Deserializer::from_slice(br#"{"b": 1, "a": {"y": 2, "x": 3}}"#);
    assert!(SortedKeys::deserialize(&mut de).is_err());
    let mut de = serde_json::Deserializer::from_slice(br#"{"a": [{"x": 1, "y": 2}], "b": 1}"#);
    assert!(SortedKeys::deserialize(&mut de).is_ok());
}

/// Deserialises any JSON and fails unless every object's members come in
/// strictly increasing byte order.
struct SortedKeys;

impl<'de> Deserialize<'de> for SortedKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SortedKeysVisitor)
    }
}

struct SortedKeysVisitor;

impl<'de> Visitor<'de> for SortedKeysVisitor {
    type Value = SortedKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }
    fn visit_unit<E>(self) -> Result<SortedKeys, E> {
        Ok(SortedKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SortedKeys, A::Error> {
        while seq.next_element::<SortedKeys>()?.is_some() {}
        Ok(SortedKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SortedKeys, A::Error> {
        let mut previous: Option<String> = None;
        while let Some(key) = map.next_key::<String>()? {
            if previous.as_ref().is_some_and(|p| *p >= key) {
                return Err(serde::de::Error::custom(format!(
                    "{key:?} after {:?}",
                    previous.unwrap()
                )));
            }
            map.next_value::<SortedKeys>()?;
            previous = Some(key);
        }
        Ok(SortedKeys)
    }
}
