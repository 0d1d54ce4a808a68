//! The policy evaluator on the request path: the console's five-statement
//! key policy (one statement with a condition) for a key user, an
//! administrator refused, and a user allowed through delegation to an
//! identity policy.
//!
//! `cargo bench -p keywarden-core --bench policy_eval`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use keywarden_core::policy::{
    evaluate_kms, parse_key_policy, parse_policy, KmsEvaluation, PolicyKind, PrincipalInfo,
    PrincipalKind, Request, RequestContext,
};

const KEY: &str = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

const KEY_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
    {"Sid": "Key administrators", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/KMSAdminRole"},
     "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
                "kms:CancelKeyDeletion"],
     "Resource": "*"},
    {"Sid": "Key users", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleUserRole"},
     "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*",
                "kms:DescribeKey"],
     "Resource": "*"},
    {"Sid": "Grants", "Effect": "Allow",
     "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleUserRole"},
     "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
     "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}},
    {"Sid": "Deny outside the network", "Effect": "Deny", "Principal": "*", "Action": "kms:*",
     "Resource": "*", "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}
  ]
}"#;

fn session(role: &str) -> PrincipalInfo {
    PrincipalInfo {
        arn: format!("arn:aws:sts::111122223333:assumed-role/{role}/s1"),
        account: "111122223333".into(),
        kind: PrincipalKind::AssumedRole {
            role_arn: format!("arn:aws:iam::111122223333:role/{role}"),
            session_name: "s1".into(),
        },
        user_id: "AROAEXAMPLE:s1".into(),
        username: None,
        tags: vec![],
    }
}

fn policy_eval(c: &mut Criterion) {
    let key_policy = parse_key_policy(KEY_POLICY).unwrap();
    let identity = parse_policy(
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "arn:aws:kms:*:111122223333:key/*"}]}"#,
        PolicyKind::Identity,
    )
    .unwrap();
    let mut ctx = RequestContext::new();
    ctx.insert("aws:SourceIp", "10.1.2.3")
        .insert("kms:EncryptionAlgorithm", "SYMMETRIC_DEFAULT")
        .insert("kms:ViaService", "ec2.us-east-2.amazonaws.com")
        .insert_multi("kms:EncryptionContextKeys", ["tenant", "volume"]);
    let user_role = session("ExampleUserRole");
    let admin = session("KMSAdminRole");
    let app = session("AppRole");
    let identities = [&identity];

    for (name, who, ids) in [
        (
            "key user Decrypt (allowed by key policy)",
            &user_role,
            &[][..],
        ),
        ("administrator Decrypt (refused)", &admin, &[][..]),
        (
            "delegated Decrypt (allowed by identity policy)",
            &app,
            &identities[..],
        ),
    ] {
        let eval = KmsEvaluation {
            key_policy: Some(&key_policy),
            key_account: Some("111122223333"),
            identity_policies: ids,
            principal_is_root: false,
            grant_allows: false,
        };
        c.bench_function(name, |b| {
            b.iter(|| {
                let req = Request {
                    principal: who,
                    action: "kms:Decrypt",
                    resource: KEY,
                    context: &ctx,
                };
                evaluate_kms(black_box(&eval), black_box(&req))
            })
        });
    }
}

criterion_group!(benches, policy_eval);
criterion_main!(benches);
