//! Fuzz target: the policy language parser (`keywarden_core::policy`).
//!
//! Seeds: AWS's example key policies (the default key policy, key
//! administrators and users, persistent resources, encryption context,
//! `kms:ViaService`) and an identity policy. Properties: parsing never
//! panics, for key and identity policies alike; an accepted document
//! serializes to text that parses to an equal AST; an accepted key policy
//! names a principal in every statement and an identity policy in none.
//! `KEYWARDEN_FUZZ_SECS` sets the run time (keywarden-fuzz).

use keywarden_core::policy::{parse_key_policy, parse_policy, PolicyKind};
use keywarden_fuzz::{json_from_seeds, run};
use proptest::prelude::*;
use serde_json::{json, Value};

fn seeds() -> Vec<Value> {
    let root = json!({"AWS": "arn:aws:iam::111122223333:root"});
    let role = json!({"AWS": "arn:aws:iam::111122223333:role/ExampleRole"});
    vec![
        json!({
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [{
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": root,
                "Action": "kms:*",
                "Resource": "*"
            }]
        }),
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Allow access for Key Administrators",
                    "Effect": "Allow",
                    "Principal": {"AWS": ["arn:aws:iam::111122223333:user/KMSAdminUser", "111122223333"]},
                    "Action": ["kms:Create*", "kms:Describe*", "kms:Put*", "kms:ScheduleKeyDeletion"],
                    "Resource": "*"
                },
                {
                    "Sid": "Allow use of the key",
                    "Effect": "Allow",
                    "Principal": role,
                    "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
                    "Resource": "*"
                },
                {
                    "Sid": "Allow attachment of persistent resources",
                    "Effect": "Allow",
                    "Principal": role,
                    "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
                    "Resource": "*",
                    "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
                }
            ]
        }),
        json!({
            "Statement": {
                "Effect": "Deny",
                "NotPrincipal": {"AWS": "arn:aws:sts::111122223333:assumed-role/Admin/alice", "Service": "kms.amazonaws.com"},
                "NotAction": "kms:Describe?ey",
                "NotResource": "arn:aws:kms:us-west-2:111122223333:key/*",
                "Condition": {
                    "StringEquals": {"kms:EncryptionContext:AppName": "ExampleApp", "kms:CallerAccount": "111122223333"},
                    "ForAnyValue:StringLike": {"kms:ViaService": ["ec2.*.amazonaws.com", "rds.us-west-2.amazonaws.com"]},
                    "NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "2001:db8::/32"]},
                    "DateLessThanIfExists": {"aws:CurrentTime": "2030-01-01T00:00:00Z"},
                    "NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
                    "Null": {"kms:EncryptionContextKeys": false}
                }
            }
        }),
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "AllowEncrypt",
                "Effect": "Allow",
                "Action": "kms:Encrypt",
                "Resource": ["arn:aws:kms:us-east-1:111122223333:key/*"]
            }]
        }),
    ]
}

#[test]
fn fuzz_policy_parser() {
    run("policy_parser", json_from_seeds(seeds()), |(_, bytes)| {
        let text = String::from_utf8_lossy(&bytes.0);
        for kind in [PolicyKind::Key, PolicyKind::Identity] {
            if let Ok(doc) = parse_policy(&text, kind) {
                let again = parse_policy(&doc.to_json_string(), kind);
                prop_assert_eq!(
                    again.as_ref(),
                    Ok(&doc),
                    "re-parse of {}",
                    doc.to_json_string()
                );
                let with_principal = doc
                    .statements
                    .iter()
                    .filter(|s| s.principal.is_some())
                    .count();
                let expected = match kind {
                    PolicyKind::Key => doc.statements.len(),
                    _ => 0,
                };
                prop_assert_eq!(with_principal, expected);
            }
        }
        Ok(())
    });
}

#[test]
fn seeds_are_accepted() {
    let seeds = seeds();
    for seed in &seeds[..3] {
        parse_key_policy(&seed.to_string()).unwrap();
    }
    parse_policy(&seeds[3].to_string(), PolicyKind::Identity).unwrap();
}

/// Found by this target: serde_json's default float parser can be one ulp
/// off, so a long decimal did not read back as itself until core enabled
/// `float_roundtrip`.
#[test]
fn regression_long_decimal_round_trips() {
    let text = r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*",
        "Condition": {"ForAnyValue:StringLike": {"kms:ViaService": -8.622146262366698e-197}}}}"#;
    let doc = parse_key_policy(text).unwrap();
    assert_eq!(parse_key_policy(&doc.to_json_string()).unwrap(), doc);
}
