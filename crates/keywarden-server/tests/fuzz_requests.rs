//! Fuzz target: the request decoder. Bodies go through
//! `keywarden_server::dispatch` / `dispatch_extension`, the path the server
//! takes after authentication: JSON decoding (`wire::decode`), AWS-style
//! validation and the operation itself, on a real SQLite store and the
//! software protector.
//!
//! Seeds: one valid body per operation (every AWS and extension operation
//! the server routes, checked), on real keys, blobs and grants. Inputs:
//! structurally mutated JSON (wrong types, removed and added members, huge
//! and odd values, deep nesting), byte-level mutations of the text, random
//! bytes. Properties: no panic; a refusal is a client error (4xx), never
//! an internal one; an answer is a JSON object; Decrypt and ReEncrypt
//! succeed only for a real blob with its own encryption context, and
//! Decrypt then returns that blob's plaintext. `KEYWARDEN_FUZZ_SECS` sets
//! the run time (keywarden-fuzz).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use keywarden_core::clock::SystemClock;
use keywarden_core::kms::KmsParts;
use keywarden_core::{Caller, Kms, KmsConfig};
use keywarden_core::{Namespace, Operation};
use keywarden_fuzz::{json_from_seeds, run};
use keywarden_protector_soft::{
    Importer, RootKey, SoftKeyImporter, SoftwareProtector, SystemRandom,
};
use keywarden_server::{dispatch, dispatch_extension};
use keywarden_store_sqlite::SqliteStore;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

struct World {
    rt: tokio::runtime::Runtime,
    kms: Kms,
    caller: Caller,
    _dir: tempfile::TempDir,
}

impl World {
    fn call(&self, op: &str, body: &[u8]) -> Result<Vec<u8>, keywarden_server::ApiError> {
        let fut = async {
            let extension = Operation::from_target(Namespace::Keywarden, op).is_some();
            if extension {
                dispatch_extension(&self.kms, &self.caller, op, body).await
            } else {
                dispatch(&self.kms, &self.caller, op, body).await
            }
        };
        self.rt.block_on(fut)
    }

    fn ok(&self, op: &str, body: Value) -> Value {
        let out = self
            .call(op, &serde_json::to_vec(&body).unwrap())
            .unwrap_or_else(|e| panic!("{op}: {e:?}"));
        serde_json::from_slice(&out).unwrap()
    }
}

fn world() -> World {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = Arc::new(RootKey::from_bytes(&[1u8; 32]));
    let protector = Arc::new(SoftwareProtector::new(root.clone()));
    let importer = SoftKeyImporter::new(Arc::new(Importer::new(root.clone())), protector.clone());
    let kms = Kms::new(KmsParts {
        store: Arc::new(SqliteStore::open(&dir.path().join("fuzz.db")).unwrap()),
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
    .with_public_key_crypto(Arc::new(keywarden_crypto::Crypto));
    let issued = rt.block_on(kms.create_account("fuzz")).unwrap();
    // The seed products (`mysql` for the keyring operations).
    rt.block_on(kms.register_seed_products()).unwrap();
    let caller = Caller {
        product: None,
        account_id: issued.account_id.clone(),
        principal: issued.access_key_id.clone(),
        identity: keywarden_core::kms::Identity::Root,
        request_id: String::new(),
        facts: Default::default(),
        region: None,
    };
    World {
        rt,
        kms,
        caller,
        _dir: dir,
    }
}

/// A blob made by Encrypt or GenerateDataKey, with its context and
/// plaintext.
struct RealBlob {
    blob: Vec<u8>,
    context: BTreeMap<String, String>,
    plaintext: Vec<u8>,
}

fn key_id(created: &Value) -> String {
    created["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

/// Keys, blobs and grants for the seeds; one body per operation.
fn setup(w: &World) -> (Vec<(&'static str, Value)>, Vec<RealBlob>) {
    // `crypto` is only used for cryptography, `managed` for state changes,
    // so mutated management requests rarely disable the crypto key.
    let crypto = key_id(&w.ok("CreateKey", json!({"Description": "crypto"})));
    let managed = key_id(&w.ok("CreateKey", json!({"Description": "managed"})));
    let external = key_id(&w.ok("CreateKey", json!({"Origin": "EXTERNAL"})));
    let mrk = key_id(&w.ok("CreateKey", json!({"MultiRegion": true})));
    w.ok(
        "CreateAlias",
        json!({"AliasName": "alias/fuzz-crypto", "TargetKeyId": crypto}),
    );
    let context: BTreeMap<String, String> = [("tenant", "t-1"), ("purpose", "fuzz")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let mut blobs = Vec::new();
    let plaintext = b"known plaintext for the decoder fuzz target".to_vec();
    let enc = w.ok(
        "Encrypt",
        json!({"KeyId": crypto, "Plaintext": B64.encode(&plaintext), "EncryptionContext": context}),
    );
    blobs.push(RealBlob {
        blob: B64.decode(enc["CiphertextBlob"].as_str().unwrap()).unwrap(),
        context: context.clone(),
        plaintext,
    });
    let dk = w.ok(
        "GenerateDataKey",
        json!({"KeyId": "alias/fuzz-crypto", "KeySpec": "AES_256"}),
    );
    blobs.push(RealBlob {
        blob: B64.decode(dk["CiphertextBlob"].as_str().unwrap()).unwrap(),
        context: BTreeMap::new(),
        plaintext: B64.decode(dk["Plaintext"].as_str().unwrap()).unwrap(),
    });
    let grantee = "arn:aws:iam::111122223333:role/fuzz";
    let grant = w.ok(
        "CreateGrant",
        json!({"KeyId": crypto, "GranteePrincipal": grantee, "RetiringPrincipal": grantee,
               "Operations": ["Decrypt", "Encrypt", "GenerateDataKey"],
               "Constraints": {"EncryptionContextSubset": {"tenant": "t-1"}}, "Name": "fuzz"}),
    );
    let grant_id = grant["GrantId"].as_str().unwrap().to_owned();
    let grant_token = grant["GrantToken"].as_str().unwrap().to_owned();
    // Keyrings on the mysql product's default key (no grant needed): one
    // to mutate requests on, one for DeleteKeyring.
    let keyring = w.ok(
        "CreateKeyring",
        json!({"Name": "fuzz-db", "KeyId": "alias_mysql", "KeyNumbers": [1, 2]}),
    )["KeyringId"]
        .as_str()
        .unwrap()
        .to_owned();
    let doomed = w.ok(
        "CreateKeyring",
        json!({"Name": "fuzz-doomed", "KeyId": "alias_mysql"}),
    )["KeyringId"]
        .as_str()
        .unwrap()
        .to_owned();
    let spec_key = |spec: &str, usage: &str| {
        key_id(&w.ok("CreateKey", json!({"KeySpec": spec, "KeyUsage": usage})))
    };
    let signer = spec_key("ECC_NIST_P256", "SIGN_VERIFY");
    let rsa = spec_key("RSA_2048", "ENCRYPT_DECRYPT");
    let mac_key = spec_key("HMAC_256", "GENERATE_VERIFY_MAC");
    let agreer = spec_key("ECC_NIST_P256", "KEY_AGREEMENT");
    let kem = spec_key("ML_KEM_512", "ENCAPSULATE_DECAPSULATE");
    let message = B64.encode(b"fuzz message");
    let signature = w.ok(
        "Sign",
        json!({"KeyId": signer, "Message": message, "SigningAlgorithm": "ECDSA_SHA_256"}),
    )["Signature"]
        .clone();
    let mac = w.ok(
        "GenerateMac",
        json!({"KeyId": mac_key, "Message": message, "MacAlgorithm": "HMAC_SHA_256"}),
    )["Mac"]
        .clone();
    let public_key = w.ok("GetPublicKey", json!({"KeyId": signer}))["PublicKey"].clone();
    let encapsulated = w.ok(
        "Encapsulate",
        json!({"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM"}),
    )["SharedSecretCiphertextBlob"]
        .clone();
    let blob0 = B64.encode(&blobs[0].blob);
    let blob1 = B64.encode(&blobs[1].blob);

    let seeds = vec![
        (
            "Sign",
            json!({"KeyId": signer, "Message": message, "MessageType": "RAW",
                   "SigningAlgorithm": "ECDSA_SHA_256", "GrantTokens": [], "DryRun": false}),
        ),
        (
            "Verify",
            json!({"KeyId": signer, "Message": message, "MessageType": "RAW",
                   "Signature": signature, "SigningAlgorithm": "ECDSA_SHA_256"}),
        ),
        ("GetPublicKey", json!({"KeyId": rsa})),
        (
            "GenerateMac",
            json!({"KeyId": mac_key, "Message": message, "MacAlgorithm": "HMAC_SHA_256"}),
        ),
        (
            "VerifyMac",
            json!({"KeyId": mac_key, "Message": message, "MacAlgorithm": "HMAC_SHA_256",
                   "Mac": mac}),
        ),
        (
            "GenerateDataKeyPair",
            json!({"KeyId": crypto, "KeyPairSpec": "ECC_NIST_P256",
                   "EncryptionContext": {"a": "b"}}),
        ),
        (
            "GenerateDataKeyPairWithoutPlaintext",
            json!({"KeyId": crypto, "KeyPairSpec": "ECC_NIST_EDWARDS25519"}),
        ),
        (
            "DeriveSharedSecret",
            json!({"KeyId": agreer, "KeyAgreementAlgorithm": "ECDH", "PublicKey": public_key}),
        ),
        (
            "Encapsulate",
            json!({"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM"}),
        ),
        (
            "Decapsulate",
            json!({"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM",
                   "SharedSecretCiphertextBlob": encapsulated}),
        ),
        ("CancelKeyDeletion", json!({"KeyId": managed})),
        (
            "CreateAlias",
            json!({"AliasName": "alias/fuzz-new", "TargetKeyId": managed}),
        ),
        (
            "DescribeCustomKeyStores",
            json!({"Limit": 10, "CustomKeyStoreName": "hsm"}),
        ),
        (
            "CreateCustomKeyStore",
            json!({"CustomKeyStoreName": "fuzz", "CloudHsmClusterId": "cluster-1234567890a",
            "TrustAnchorCertificate": "-----BEGIN CERTIFICATE-----", "KeyStorePassword": "password1",
            "CustomKeyStoreType": "AWS_CLOUDHSM"}),
        ),
        (
            "ConnectCustomKeyStore",
            json!({"CustomKeyStoreId": "cks-1234567890abcdef0"}),
        ),
        (
            "DisconnectCustomKeyStore",
            json!({"CustomKeyStoreId": "cks-1234567890abcdef0"}),
        ),
        (
            "UpdateCustomKeyStore",
            json!({"CustomKeyStoreId": "cks-1234567890abcdef0", "NewCustomKeyStoreName": "fuzz-2",
            "KeyStorePassword": "password2"}),
        ),
        (
            "DeleteCustomKeyStore",
            json!({"CustomKeyStoreId": "cks-1234567890abcdef0"}),
        ),
        (
            "CreateGrant",
            json!({"KeyId": crypto, "GranteePrincipal": grantee,
            "Operations": ["Decrypt"], "Constraints": {"EncryptionContextEquals": {"a": "b"}},
            "GrantTokens": [grant_token], "Name": "g", "DryRun": false}),
        ),
        (
            "CreateKey",
            json!({"Description": "d", "KeyUsage": "ENCRYPT_DECRYPT",
            "KeySpec": "SYMMETRIC_DEFAULT", "Origin": "AWS_KMS", "MultiRegion": false,
            "Tags": [{"TagKey": "k", "TagValue": "v"}], "Policy": "{}",
            "BypassPolicyLockoutSafetyCheck": false}),
        ),
        (
            "Decrypt",
            json!({"CiphertextBlob": blob0, "EncryptionContext": context,
            "KeyId": crypto, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT", "GrantTokens": []}),
        ),
        ("Decrypt", json!({"CiphertextBlob": blob1})),
        ("DeleteAlias", json!({"AliasName": "alias/fuzz-new"})),
        ("DeleteImportedKeyMaterial", json!({"KeyId": external})),
        (
            "DescribeKey",
            json!({"KeyId": "alias/fuzz-crypto", "GrantTokens": []}),
        ),
        ("DisableKey", json!({"KeyId": managed})),
        ("DisableKeyRotation", json!({"KeyId": managed})),
        ("EnableKey", json!({"KeyId": managed})),
        (
            "EnableKeyRotation",
            json!({"KeyId": managed, "RotationPeriodInDays": 90}),
        ),
        (
            "Encrypt",
            json!({"KeyId": crypto, "Plaintext": "aGVsbG8=",
            "EncryptionContext": context, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": crypto, "KeySpec": "AES_256",
            "EncryptionContext": context, "GrantTokens": [grant_token]}),
        ),
        (
            "GenerateDataKey",
            json!({"KeyId": "alias/fuzz-crypto", "NumberOfBytes": 64}),
        ),
        (
            "GenerateDataKeyWithoutPlaintext",
            json!({"KeyId": crypto, "KeySpec": "AES_128"}),
        ),
        ("GenerateRandom", json!({"NumberOfBytes": 32})),
        ("GetKeyLastUsage", json!({"KeyId": crypto})),
        ("GetKeyRotationStatus", json!({"KeyId": managed})),
        (
            "GetParametersForImport",
            json!({"KeyId": external,
            "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}),
        ),
        (
            "ImportKeyMaterial",
            json!({"KeyId": external, "ImportToken": "AAECAw==",
            "EncryptedKeyMaterial": "BAUGBw==", "ExpirationModel": "KEY_MATERIAL_EXPIRES",
            "ValidTo": 4_102_444_800u64}),
        ),
        ("ListAliases", json!({"KeyId": crypto, "Limit": 10})),
        (
            "ListGrants",
            json!({"KeyId": crypto, "Limit": 5, "GrantId": grant_id,
            "GranteePrincipal": grantee}),
        ),
        ("ListKeyRotations", json!({"KeyId": managed, "Limit": 3})),
        ("ListKeys", json!({"Limit": 2, "Marker": "x"})),
        ("ListResourceTags", json!({"KeyId": crypto, "Limit": 10})),
        (
            "GetKeyPolicy",
            json!({"KeyId": crypto, "PolicyName": "default"}),
        ),
        (
            "PutKeyPolicy",
            json!({"KeyId": crypto, "PolicyName": "default", "Policy": r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"kms:*","Resource":"*"}]}"#, "BypassPolicyLockoutSafetyCheck": false}),
        ),
        ("ListKeyPolicies", json!({"KeyId": crypto, "Limit": 10})),
        (
            "ListRetirableGrants",
            json!({"RetiringPrincipal": grantee, "Limit": 10}),
        ),
        (
            "ReEncrypt",
            json!({"CiphertextBlob": blob0, "SourceEncryptionContext": context,
            "SourceKeyId": crypto, "DestinationKeyId": crypto,
            "DestinationEncryptionContext": {"x": "y"},
            "SourceEncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
        ),
        ("RetireGrant", json!({"GrantToken": grant_token})),
        (
            "RevokeGrant",
            json!({"KeyId": crypto, "GrantId": grant_id, "DryRun": true}),
        ),
        ("RotateKeyOnDemand", json!({"KeyId": managed})),
        (
            "ReplicateKey",
            json!({"KeyId": mrk, "ReplicaRegion": "eu-west-1", "Description": "replica"}),
        ),
        (
            "UpdatePrimaryRegion",
            json!({"KeyId": mrk, "PrimaryRegion": "eu-west-1"}),
        ),
        (
            "ScheduleKeyDeletion",
            json!({"KeyId": managed, "PendingWindowInDays": 7}),
        ),
        (
            "TagResource",
            json!({"KeyId": crypto, "Tags": [{"TagKey": "a", "TagValue": "b"}]}),
        ),
        ("UntagResource", json!({"KeyId": crypto, "TagKeys": ["a"]})),
        (
            "UpdateAlias",
            json!({"AliasName": "alias/fuzz-new", "TargetKeyId": managed}),
        ),
        (
            "UpdateKeyDescription",
            json!({"KeyId": managed, "Description": "x"}),
        ),
        ("GetAccountBalance", json!({})),
        ("EnableKeyDeletionProtection", json!({"KeyId": managed})),
        ("DisableKeyDeletionProtection", json!({"KeyId": managed})),
        (
            "CreateKeyring",
            json!({"Name": "fuzz-new", "KeyId": "alias_mysql", "ProductCode": "mysql", "KeyNumbers": [1, 5]}),
        ),
        ("DescribeKeyring", json!({"KeyringId": keyring})),
        ("ListKeyrings", json!({})),
        (
            "RotateKeyringKey",
            json!({"KeyringId": keyring, "KeyNumber": 1}),
        ),
        ("CreateKeyringToken", json!({"KeyringId": keyring})),
        ("RevokeKeyringToken", json!({"KeyringId": keyring})),
        ("DeleteKeyring", json!({"KeyringId": doomed})),
    ];
    for op in Operation::ALL.iter().map(|o| o.wire_name()) {
        assert!(
            seeds.iter().any(|(o, _)| *o == op),
            "the decoder fuzz target has no seed body for {op}: add one"
        );
    }
    (seeds, blobs)
}

/// The `CiphertextBlob` and context a Decrypt/ReEncrypt body names, read
/// the way the decoder reads them: a struct that ignores unknown members
/// (a `Value` would refuse unknown members nested deeper than serde_json's
/// recursion limit, which the decoder skips without recursing).
fn named_blob(op: &str, body: &[u8]) -> Option<(Vec<u8>, BTreeMap<String, String>)> {
    // Only the members the operation reads: Decrypt ignores
    // `SourceEncryptionContext` whatever it holds, ReEncrypt ignores
    // `EncryptionContext` (a fuzzed number there must not fail the oracle).
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ForDecrypt {
        ciphertext_blob: Option<String>,
        encryption_context: Option<BTreeMap<String, String>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ForReEncrypt {
        ciphertext_blob: Option<String>,
        source_encryption_context: Option<BTreeMap<String, String>>,
    }
    let (blob, context) = if op == "ReEncrypt" {
        let named: ForReEncrypt = serde_json::from_slice(body).ok()?;
        (named.ciphertext_blob?, named.source_encryption_context)
    } else {
        let named: ForDecrypt = serde_json::from_slice(body).ok()?;
        (named.ciphertext_blob?, named.encryption_context)
    };
    let blob = B64.decode(blob).ok()?;
    Some((blob, context.unwrap_or_default()))
}

#[test]
fn fuzz_request_decoder() {
    let w = world();
    let (seeds, blobs) = setup(&w);
    let ops: Vec<&str> = Operation::ALL
        .iter()
        .map(|o| o.wire_name())
        .chain(["NoSuchOperation", ""])
        .collect();
    let bodies: Vec<Value> = seeds.iter().map(|(_, b)| b.clone()).collect();
    run(
        "request_decoder",
        (json_from_seeds(bodies), any::<Index>()),
        |((seed, body), op)| {
            let op = seed.map_or_else(|| ops[op.index(ops.len())], |s| seeds[s].0);
            let body = body.0;
            let result = w.call(op, &body);
            match &result {
                Err(e) => prop_assert!(
                    e.status().is_client_error(),
                    "{op}: internal error {e:?} for a client's body"
                ),
                Ok(out) => {
                    let v: Value = serde_json::from_slice(out).expect("JSON answer");
                    prop_assert!(v.is_object(), "{op}: answer {v}");
                    if op != "Decrypt" && op != "ReEncrypt" {
                        return Ok(());
                    }
                    let (blob, context) = named_blob(op, &body)
                        .expect("a decrypting request that succeeded names a blob");
                    let real = blobs
                        .iter()
                        .find(|r| r.blob == blob && r.context == context);
                    prop_assert!(real.is_some(), "{op} accepted a blob/context it never made");
                    if op == "Decrypt" {
                        let plaintext = B64.decode(v["Plaintext"].as_str().unwrap()).unwrap();
                        prop_assert_eq!(&plaintext, &real.unwrap().plaintext);
                    }
                }
            }
            Ok(())
        },
    );
}
