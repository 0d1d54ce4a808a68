//! Tests of the evaluator: vectors written from AWS's documented examples
//! (each cites its page), and properties (a matching Deny always denies,
//! removing an Allow never widens access, evaluation never panics).

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

const A: &str = "111122223333";
const B: &str = "444455556666";
const KEY: &str = "arn:aws:kms:us-east-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const OTHER_KEY: &str =
    "arn:aws:kms:us-east-2:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321";

fn key_policy(v: Value) -> PolicyDocument {
    parse_key_policy(&v.to_string()).unwrap_or_else(|e| panic!("refused: {e}\n{v}"))
}

fn identity_policy(v: Value) -> PolicyDocument {
    parse_policy(&v.to_string(), PolicyKind::Identity)
        .unwrap_or_else(|e| panic!("refused: {e}\n{v}"))
}

fn doc(statements: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn root(account: &str) -> PrincipalInfo {
    PrincipalInfo {
        arn: format!("arn:aws:iam::{account}:root"),
        account: account.into(),
        kind: PrincipalKind::Root,
        user_id: account.into(),
        username: None,
        tags: vec![],
    }
}

fn user(account: &str, name: &str) -> PrincipalInfo {
    PrincipalInfo {
        arn: format!("arn:aws:iam::{account}:user/{name}"),
        account: account.into(),
        kind: PrincipalKind::User,
        user_id: format!("AIDA{}", name.to_uppercase()),
        username: Some(name.into()),
        tags: vec![],
    }
}

fn session(account: &str, role: &str, name: &str) -> PrincipalInfo {
    PrincipalInfo {
        arn: format!("arn:aws:sts::{account}:assumed-role/{role}/{name}"),
        account: account.into(),
        kind: PrincipalKind::AssumedRole {
            role_arn: format!("arn:aws:iam::{account}:role/{role}"),
            session_name: name.into(),
        },
        user_id: format!("AROAEXAMPLE:{name}"),
        username: None,
        tags: vec![],
    }
}

fn service(name: &str) -> PrincipalInfo {
    PrincipalInfo {
        arn: format!("arn:aws:iam::999988887777:role/service/{name}"),
        account: "999988887777".into(),
        kind: PrincipalKind::Service { name: name.into() },
        user_id: "AROASERVICE".into(),
        username: None,
        tags: vec![],
    }
}

/// One case: the key's policy (the key is `KEY` in account `A`, or no key),
/// the caller's identity policies, and the request.
struct Case<'a> {
    key_policy: Option<&'a PolicyDocument>,
    identity: Vec<&'a PolicyDocument>,
    grant: bool,
    who: PrincipalInfo,
    action: &'a str,
    resource: &'a str,
    ctx: RequestContext,
}

impl<'a> Case<'a> {
    fn new(key_policy: &'a PolicyDocument, who: PrincipalInfo, action: &'a str) -> Self {
        Case {
            key_policy: Some(key_policy),
            identity: vec![],
            grant: false,
            who,
            action,
            resource: KEY,
            ctx: RequestContext::new(),
        }
    }

    fn ids(mut self, ids: &[&'a PolicyDocument]) -> Self {
        self.identity = ids.to_vec();
        self
    }

    fn ctx(mut self, ctx: RequestContext) -> Self {
        self.ctx = ctx;
        self
    }

    fn decide(&self) -> Decision {
        let req = Request {
            principal: &self.who,
            action: self.action,
            resource: self.resource,
            context: &self.ctx,
        };
        let eval = KmsEvaluation {
            key_policy: self.key_policy,
            key_account: self.key_policy.map(|_| A),
            identity_policies: &self.identity,
            principal_is_root: self.who.kind == PrincipalKind::Root,
            grant_allows: self.grant,
        };
        evaluate_kms(&eval, &req)
    }

    fn message(&self) -> Option<String> {
        let req = Request {
            principal: &self.who,
            action: self.action,
            resource: self.resource,
            context: &self.ctx,
        };
        denial_message(&self.decide(), &req)
    }
}

const ALLOW_KP: Decision = Decision::Allow(AllowedBy::KeyPolicy);
const ALLOW_ID: Decision = Decision::Allow(AllowedBy::IdentityPolicy);
const NO_ID: Decision = Decision::ImplicitDeny(ImplicitReason::NoIdentityPolicyAllows);
const NO_RES: Decision = Decision::ImplicitDeny(ImplicitReason::NoResourcePolicyAllows);
const DENY_KP: Decision = Decision::ExplicitDeny(PolicySource::KeyPolicy);
const DENY_ID: Decision = Decision::ExplicitDeny(PolicySource::IdentityPolicy);

fn ctx() -> RequestContext {
    RequestContext::new()
}

/// The default key policy: the account's root, which enables IAM policies.
/// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
fn default_key_policy() -> PolicyDocument {
    key_policy(json!({
        "Version": "2012-10-17",
        "Id": "key-default-1",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
            "Action": "kms:*",
            "Resource": "*"
        }]
    }))
}

/// An IAM policy allowing some KMS actions on keys of account A.
/// https://docs.aws.amazon.com/kms/latest/developerguide/customer-managed-policies.html
fn iam_allow(actions: Value) -> PolicyDocument {
    identity_policy(doc(json!([{
        "Effect": "Allow",
        "Action": actions,
        "Resource": "arn:aws:kms:*:111122223333:key/*"
    }])))
}

// ---- the default key policy ----
// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html

#[test]
fn default_policy_lets_the_root_do_everything() {
    let kp = default_key_policy();
    assert_eq!(
        Case::new(&kp, root(A), "kms:ScheduleKeyDeletion").decide(),
        ALLOW_ID
    );
    assert_eq!(Case::new(&kp, root(A), "kms:Decrypt").decide(), ALLOW_ID);
}

#[test]
fn default_policy_delegates_users_to_their_iam_policies() {
    let kp = default_key_policy();
    assert_eq!(
        Case::new(&kp, user(A, "alice"), "kms:Decrypt").decide(),
        NO_ID
    );
    let iam = iam_allow(json!(["kms:Decrypt", "kms:Encrypt"]));
    let allowed = Case::new(&kp, user(A, "alice"), "kms:Decrypt").ids(&[&iam]);
    assert_eq!(allowed.decide(), ALLOW_ID);
    let other = Case::new(&kp, user(A, "alice"), "kms:ScheduleKeyDeletion").ids(&[&iam]);
    assert_eq!(other.decide(), NO_ID);
}

#[test]
fn default_policy_gives_other_accounts_nothing() {
    let kp = default_key_policy();
    let iam = identity_policy(doc(
        json!([{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]),
    ));
    let case = Case::new(&kp, user(B, "mallory"), "kms:Decrypt").ids(&[&iam]);
    assert_eq!(case.decide(), NO_RES);
    assert_eq!(Case::new(&kp, root(B), "kms:Decrypt").decide(), NO_RES);
}

// ---- the console's key policy: administrators and users ----
// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
// ("Allows key administrators to administer the KMS key", "Allows key users
// to use the KMS key")

fn console_key_policy() -> PolicyDocument {
    key_policy(json!({
        "Version": "2012-10-17",
        "Id": "key-consolepolicy-3",
        "Statement": [
            {
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                "Action": "kms:*",
                "Resource": "*"
            },
            {
                "Sid": "Allow access for Key Administrators",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/KMSAdminRole"},
                "Action": [
                    "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*",
                    "kms:Update*", "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*",
                    "kms:TagResource", "kms:UntagResource", "kms:ScheduleKeyDeletion",
                    "kms:CancelKeyDeletion", "kms:RotateKeyOnDemand"
                ],
                "Resource": "*"
            },
            {
                "Sid": "Allow use of the key",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleUserRole"},
                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*",
                           "kms:GenerateDataKey*", "kms:DescribeKey"],
                "Resource": "*"
            },
            {
                "Sid": "Allow attachment of persistent resources",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleUserRole"},
                "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
                "Resource": "*",
                "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
            }
        ]
    }))
}

#[test]
fn key_administrators_manage_but_do_not_use_the_key() {
    let kp = console_key_policy();
    let admin = || session(A, "KMSAdminRole", "ops");
    assert_eq!(
        Case::new(&kp, admin(), "kms:ScheduleKeyDeletion").decide(),
        ALLOW_KP
    );
    assert_eq!(Case::new(&kp, admin(), "kms:DisableKey").decide(), ALLOW_KP);
    assert_eq!(Case::new(&kp, admin(), "kms:Decrypt").decide(), NO_ID);
}

#[test]
fn key_users_use_but_do_not_manage_the_key() {
    let kp = console_key_policy();
    let app = || session(A, "ExampleUserRole", "app");
    assert_eq!(Case::new(&kp, app(), "kms:Decrypt").decide(), ALLOW_KP);
    assert_eq!(
        Case::new(&kp, app(), "kms:GenerateDataKeyWithoutPlaintext").decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, app(), "kms:ReEncryptFrom").decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, app(), "kms:ScheduleKeyDeletion").decide(),
        NO_ID
    );
    // Another role's sessions are not key users.
    let other = session(A, "ExampleUserRole2", "app");
    assert_eq!(Case::new(&kp, other, "kms:Decrypt").decide(), NO_ID);
}

#[test]
fn key_users_create_grants_only_for_aws_resources() {
    // kms:GrantIsForAWSResource:
    // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-grant-is-for-aws-resource
    let kp = console_key_policy();
    let app = || session(A, "ExampleUserRole", "app");
    let yes = ctx().with("kms:GrantIsForAWSResource", "true");
    assert_eq!(
        Case::new(&kp, app(), "kms:CreateGrant").ctx(yes).decide(),
        ALLOW_KP
    );
    let no = ctx().with("kms:GrantIsForAWSResource", "false");
    assert_eq!(
        Case::new(&kp, app(), "kms:CreateGrant").ctx(no).decide(),
        NO_ID
    );
    assert_eq!(Case::new(&kp, app(), "kms:CreateGrant").decide(), NO_ID);
}

// ---- kms:EncryptionContext: and kms:EncryptionContextKeys ----
// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-encryption-context

fn app_policy(condition: Value) -> PolicyDocument {
    key_policy(doc(json!([{
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": condition
    }])))
}

fn app() -> PrincipalInfo {
    session(A, "RoleForExampleApp", "s1")
}

#[test]
fn encryption_context_pair_must_match_exactly() {
    let kp = app_policy(json!({"StringEquals": {"kms:EncryptionContext:AppName": "ExampleApp"}}));
    let with = |v: &str| ctx().with("kms:EncryptionContext:AppName", v);
    assert_eq!(
        Case::new(&kp, app(), "kms:Decrypt")
            .ctx(with("ExampleApp"))
            .decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, app(), "kms:Decrypt")
            .ctx(with("OtherApp"))
            .decide(),
        NO_RES
    );
    // Values compare case-sensitively under StringEquals.
    assert_eq!(
        Case::new(&kp, app(), "kms:Decrypt")
            .ctx(with("exampleapp"))
            .decide(),
        NO_RES
    );
    assert_eq!(Case::new(&kp, app(), "kms:Decrypt").decide(), NO_RES);
    // Condition key names are not case sensitive.
    let lower = ctx().with("kms:encryptioncontext:appname", "ExampleApp");
    assert_eq!(
        Case::new(&kp, app(), "kms:Decrypt").ctx(lower).decide(),
        ALLOW_KP
    );
}

#[test]
fn encryption_context_ignore_case_operator() {
    let kp = app_policy(
        json!({"StringEqualsIgnoreCase": {"kms:EncryptionContext:AppName": "ExampleApp"}}),
    );
    let c = ctx().with("kms:EncryptionContext:AppName", "EXAMPLEAPP");
    assert_eq!(
        Case::new(&kp, app(), "kms:Decrypt").ctx(c).decide(),
        ALLOW_KP
    );
}

#[test]
fn for_all_values_encryption_context_keys() {
    // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-encryption-context-keys
    let kp = app_policy(json!({
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}
    }));
    let keys = |ks: &[&str]| ctx().with_multi("kms:EncryptionContextKeys", ks.iter().copied());
    let case = |ks: &[&str]| Case::new(&kp, app(), "kms:Decrypt").ctx(keys(ks)).decide();
    assert_eq!(case(&["Department"]), ALLOW_KP);
    assert_eq!(case(&["Department", "Project"]), ALLOW_KP);
    assert_eq!(case(&["Department", "Cost"]), NO_RES);
    // The page warns: with no encryption context, ForAllValues holds.
    assert_eq!(case(&[]), ALLOW_KP);
    assert_eq!(Case::new(&kp, app(), "kms:Decrypt").decide(), ALLOW_KP);
}

#[test]
fn for_all_values_with_null_requires_some_context() {
    // The page's remedy: add `"Null": {"kms:EncryptionContextKeys": false}`.
    let kp = app_policy(json!({
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department"]},
        "Null": {"kms:EncryptionContextKeys": false}
    }));
    assert_eq!(Case::new(&kp, app(), "kms:Decrypt").decide(), NO_RES);
    let c = ctx().with_multi("kms:EncryptionContextKeys", ["Department"]);
    assert_eq!(
        Case::new(&kp, app(), "kms:Decrypt").ctx(c).decide(),
        ALLOW_KP
    );
}

#[test]
fn for_any_value_encryption_context_keys() {
    let kp = app_policy(json!({
        "ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Department"}
    }));
    let keys = |ks: &[&str]| ctx().with_multi("kms:EncryptionContextKeys", ks.iter().copied());
    let case = |ks: &[&str]| Case::new(&kp, app(), "kms:Decrypt").ctx(keys(ks)).decide();
    assert_eq!(case(&["Project", "Department"]), ALLOW_KP);
    assert_eq!(case(&["Project"]), NO_RES);
    assert_eq!(case(&[]), NO_RES);
    assert_eq!(Case::new(&kp, app(), "kms:Decrypt").decide(), NO_RES);
}

// ---- kms:ViaService and kms:CallerAccount ----
// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service

#[test]
fn via_service_limits_use_to_named_services() {
    let kp = key_policy(doc(json!([{
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:user/ExampleUser"},
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": [
            "ec2.us-west-2.amazonaws.com", "rds.us-west-2.amazonaws.com"
        ]}}
    }])));
    let who = || user(A, "ExampleUser");
    let via = |s: &str| ctx().with("kms:ViaService", s);
    let case = |c| Case::new(&kp, who(), "kms:Decrypt").ctx(c).decide();
    assert_eq!(case(via("rds.us-west-2.amazonaws.com")), ALLOW_KP);
    assert_eq!(case(via("s3.us-west-2.amazonaws.com")), NO_RES);
    assert_eq!(case(ctx()), NO_RES);
}

#[test]
fn deny_unless_via_service_denies_direct_calls() {
    // A Deny with a negated operator applies when the key is missing.
    let kp = key_policy(doc(json!([
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/ExampleUser"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}}
    ])));
    let who = || user(A, "ExampleUser");
    assert_eq!(Case::new(&kp, who(), "kms:Decrypt").decide(), DENY_KP);
    let via = ctx().with("kms:ViaService", "ec2.us-west-2.amazonaws.com");
    assert_eq!(
        Case::new(&kp, who(), "kms:Decrypt").ctx(via).decide(),
        ALLOW_KP
    );
}

#[test]
fn caller_account_with_via_service_like_aws_managed_keys() {
    // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-caller-account
    let kp = key_policy(doc(json!([{
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey*", "kms:DescribeKey"],
        "Resource": "*",
        "Condition": {"StringEquals": {
            "kms:CallerAccount": "111122223333",
            "kms:ViaService": "ec2.us-west-2.amazonaws.com"
        }}
    }])));
    let via = || ctx().with("kms:ViaService", "ec2.us-west-2.amazonaws.com");
    assert_eq!(
        Case::new(&kp, user(A, "bob"), "kms:Decrypt")
            .ctx(via())
            .decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, user(B, "eve"), "kms:Decrypt")
            .ctx(via())
            .decide(),
        NO_RES
    );
    // kms:CallerAccount comes from the principal, not the request context.
    let spoof = via().with("kms:CallerAccount", A);
    assert_eq!(
        Case::new(&kp, user(B, "eve"), "kms:Decrypt")
            .ctx(spoof)
            .decide(),
        NO_RES
    );
    assert_eq!(
        Case::new(&kp, user(A, "bob"), "kms:Decrypt").decide(),
        NO_RES
    );
}

// ---- aws:SourceIp, aws:PrincipalArn, aws:ResourceTag/ ----

#[test]
fn source_ip_deny_outside_ranges() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_examples_aws_deny-ip.html
    let kp = key_policy(doc(json!([
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
         "Condition": {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24", "2001:db8::/32"]}}}
    ])));
    let from = |ip: &str| ctx().with("aws:SourceIp", ip);
    let case = |c| {
        Case::new(&kp, user(A, "alice"), "kms:Decrypt")
            .ctx(c)
            .decide()
    };
    assert_eq!(case(from("192.0.2.10")), ALLOW_KP);
    assert_eq!(case(from("203.0.113.255")), ALLOW_KP);
    assert_eq!(case(from("2001:db8:1::7")), ALLOW_KP);
    assert_eq!(case(from("198.51.100.1")), DENY_KP);
    assert_eq!(case(from("2001:db9::1")), DENY_KP);
    assert_eq!(case(from("::ffff:192.0.2.1")), ALLOW_KP);
}

#[test]
fn principal_arn_string_like_matches_role_not_session() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn
    let kp = key_policy(doc(json!([{
        "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/KMS-*"}}
    }])));
    assert_eq!(
        Case::new(&kp, session(A, "KMS-Reader", "x"), "kms:Decrypt").decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, session(A, "Reader", "KMS-x"), "kms:Decrypt").decide(),
        NO_RES
    );
    assert_eq!(
        Case::new(&kp, user(A, "KMS-user"), "kms:Decrypt").decide(),
        NO_RES
    );
}

#[test]
fn resource_tag_abac_in_identity_policy() {
    // https://docs.aws.amazon.com/kms/latest/developerguide/tag-authorization.html
    let kp = default_key_policy();
    let iam = identity_policy(doc(json!([{
        "Effect": "Allow", "Action": ["kms:Decrypt", "kms:Encrypt"],
        "Resource": "arn:aws:kms:*:111122223333:key/*",
        "Condition": {"StringEquals": {"aws:ResourceTag/Project": "Alpha"}}
    }])));
    let tag = |v: &str| ctx().with("aws:ResourceTag/Project", v);
    let case = |c| {
        Case::new(&kp, user(A, "alice"), "kms:Decrypt")
            .ids(&[&iam])
            .ctx(c)
            .decide()
    };
    assert_eq!(case(tag("Alpha")), ALLOW_ID);
    assert_eq!(case(tag("Beta")), NO_ID);
    assert_eq!(case(ctx()), NO_ID);
}

// ---- the IAM evaluation logic ----
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html

#[test]
fn explicit_deny_in_identity_policy_overrides_key_policy_allow() {
    let kp = console_key_policy();
    let deny = identity_policy(doc(
        json!([{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]),
    ));
    let case = Case::new(&kp, session(A, "ExampleUserRole", "app"), "kms:Decrypt").ids(&[&deny]);
    assert_eq!(case.decide(), DENY_ID);
}

#[test]
fn explicit_deny_overrides_a_grant() {
    let kp = key_policy(doc(
        json!([{"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "kms:*", "Resource": "*"}]),
    ));
    let mut case = Case::new(&kp, user(A, "bob"), "kms:Decrypt");
    case.grant = true;
    assert_eq!(case.decide(), DENY_KP);
    let mut case = Case::new(&kp, user(A, "alice"), "kms:Decrypt");
    case.grant = true;
    assert_eq!(case.decide(), Decision::Allow(AllowedBy::Grant));
}

#[test]
fn not_action_allows_everything_else() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html
    let kp = default_key_policy();
    let iam = identity_policy(doc(json!([{
        "Effect": "Allow", "NotAction": ["kms:ScheduleKeyDeletion", "kms:Disable*"], "Resource": "*"
    }])));
    let case = |a| Case::new(&kp, user(A, "alice"), a).ids(&[&iam]).decide();
    assert_eq!(case("kms:Decrypt"), ALLOW_ID);
    assert_eq!(case("kms:ScheduleKeyDeletion"), NO_ID);
    assert_eq!(case("kms:DisableKeyRotation"), NO_ID);
}

#[test]
fn deny_with_not_action_denies_all_other_actions() {
    let kp = default_key_policy();
    let iam = identity_policy(doc(json!([
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "NotAction": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}
    ])));
    let case = |a| Case::new(&kp, user(A, "alice"), a).ids(&[&iam]).decide();
    assert_eq!(case("kms:Encrypt"), ALLOW_ID);
    assert_eq!(case("kms:DescribeKey"), DENY_ID);
}

#[test]
fn not_resource_excludes_named_keys() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html
    let kp = default_key_policy();
    let iam = identity_policy(doc(
        json!([{"Effect": "Allow", "Action": "kms:*", "NotResource": OTHER_KEY}]),
    ));
    let mut on_key = Case::new(&kp, user(A, "alice"), "kms:Decrypt").ids(&[&iam]);
    assert_eq!(on_key.decide(), ALLOW_ID);
    on_key.resource = OTHER_KEY;
    assert_eq!(on_key.decide(), NO_ID);
}

#[test]
fn key_policy_resource_naming_another_key_does_not_apply() {
    let kp = key_policy(doc(
        json!([{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"}, "Action": "kms:*", "Resource": OTHER_KEY}]),
    ));
    assert_eq!(
        Case::new(&kp, user(A, "alice"), "kms:Decrypt").decide(),
        NO_RES
    );
}

#[test]
fn if_exists_holds_when_the_key_is_missing() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_IfExists
    let kp = app_policy(
        json!({"StringEqualsIfExists": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}),
    );
    let case = |c| Case::new(&kp, app(), "kms:Decrypt").ctx(c).decide();
    assert_eq!(case(ctx()), ALLOW_KP);
    assert_eq!(
        case(ctx().with("kms:ViaService", "ec2.us-west-2.amazonaws.com")),
        ALLOW_KP
    );
    assert_eq!(
        case(ctx().with("kms:ViaService", "s3.us-west-2.amazonaws.com")),
        NO_RES
    );
}

#[test]
fn null_condition_checks_presence() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_Null
    let kp = key_policy(doc(json!([
        {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Principal": "*", "Action": "kms:ScheduleKeyDeletion", "Resource": "*",
         "Condition": {"Null": {"aws:MultiFactorAuthAge": true}}}
    ])));
    let case = |c| {
        Case::new(&kp, user(A, "alice"), "kms:ScheduleKeyDeletion")
            .ctx(c)
            .decide()
    };
    assert_eq!(case(ctx()), DENY_KP);
    assert_eq!(case(ctx().with("aws:MultiFactorAuthAge", "30")), ALLOW_KP);
}

#[test]
fn bool_numeric_and_date_operators() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
    let kp = app_policy(json!({
        "Bool": {"aws:SecureTransport": "true"},
        "NumericLessThan": {"aws:MultiFactorAuthAge": "3600"},
        "DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:01Z"}
    }));
    let good = || {
        ctx()
            .with("aws:SecureTransport", "true")
            .with("aws:MultiFactorAuthAge", "120")
            .with("aws:CurrentTime", "2024-01-01T12:00:00Z")
    };
    let case = |c| Case::new(&kp, app(), "kms:Decrypt").ctx(c).decide();
    assert_eq!(case(good()), ALLOW_KP);
    assert_eq!(case(good().with("aws:SecureTransport", "false")), NO_RES);
    assert_eq!(case(good().with("aws:MultiFactorAuthAge", "3600")), NO_RES);
    assert_eq!(
        case(good().with("aws:CurrentTime", "2019-12-31T23:59:59Z")),
        NO_RES
    );
    assert_eq!(
        case(good().with("aws:CurrentTime", "2020-04-01T02:00:00+02:00")),
        NO_RES
    );
}

#[test]
fn arn_like_compares_component_by_component() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html#Conditions_ARN
    let kp = app_policy(json!({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::amzn-s3-demo-bucket*"}}));
    let src = |a: &str| ctx().with("aws:SourceArn", a);
    let case = |c| Case::new(&kp, app(), "kms:Decrypt").ctx(c).decide();
    assert_eq!(case(src("arn:aws:s3:::amzn-s3-demo-bucket-logs")), ALLOW_KP);
    assert_eq!(
        case(src("arn:aws:s3:us-east-1::amzn-s3-demo-bucket")),
        NO_RES
    );
}

// ---- policy variables ----
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html

fn outcome(
    d: &PolicyDocument,
    kind: PolicyKind,
    who: &PrincipalInfo,
    c: &RequestContext,
) -> Outcome {
    let req = Request {
        principal: who,
        action: "kms:Decrypt",
        resource: KEY,
        context: c,
    };
    evaluate_document(d, kind, &req)
}

#[test]
fn username_variable_in_condition() {
    let iam = identity_policy(doc(json!([{
        "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:Owner": "${aws:username}"}}
    }])));
    let owner = |o: &str| ctx().with("kms:EncryptionContext:Owner", o);
    let id = PolicyKind::Identity;
    assert_eq!(
        outcome(&iam, id, &user(A, "alice"), &owner("alice")),
        Outcome::Allow
    );
    assert_eq!(
        outcome(&iam, id, &user(A, "alice"), &owner("bob")),
        Outcome::NotApplicable
    );
    // A role session has no aws:username: the variable does not resolve.
    let s = session(A, "R", "alice");
    assert_eq!(
        outcome(&iam, id, &s, &owner("alice")),
        Outcome::NotApplicable
    );
    assert_eq!(
        outcome(&iam, id, &s, &owner("${aws:username}")),
        Outcome::NotApplicable
    );
}

#[test]
fn principal_tag_variable_with_default_and_escapes() {
    let iam = identity_policy(doc(json!([{
        "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringLike": {"kms:EncryptionContext:Team": "${aws:PrincipalTag/team, 'none'}-${*}"}}
    }])));
    let team = |t: &str| ctx().with("kms:EncryptionContext:Team", t);
    let mut tagged = user(A, "alice");
    tagged.tags = vec![("Team".into(), "blue".into())];
    let id = PolicyKind::Identity;
    assert_eq!(outcome(&iam, id, &tagged, &team("blue-*")), Outcome::Allow);
    // `${*}` is a literal asterisk, not a wildcard.
    assert_eq!(
        outcome(&iam, id, &tagged, &team("blue-x")),
        Outcome::NotApplicable
    );
    assert_eq!(
        outcome(&iam, id, &user(A, "bob"), &team("none-*")),
        Outcome::Allow
    );
}

#[test]
fn variables_in_resource_and_only_in_2012_policies() {
    let st = json!([{"Effect": "Allow", "Action": "kms:Decrypt",
                     "Resource": "arn:aws:kms:*:${aws:PrincipalAccount}:key/*"}]);
    let new = identity_policy(doc(st.clone()));
    let old = identity_policy(json!({"Version": "2008-10-17", "Statement": st}));
    let id = PolicyKind::Identity;
    assert_eq!(outcome(&new, id, &user(A, "alice"), &ctx()), Outcome::Allow);
    assert_eq!(
        outcome(&new, id, &user(B, "eve"), &ctx()),
        Outcome::NotApplicable
    );
    assert_eq!(
        outcome(&old, id, &user(A, "alice"), &ctx()),
        Outcome::NotApplicable
    );
}

// ---- principals ----

#[test]
fn cross_account_needs_key_policy_and_identity_policy() {
    // https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-modifying-external-accounts.html
    let kp = key_policy(doc(json!([
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::444455556666:user/carol", "444455556666"]},
         "Action": ["kms:Decrypt", "kms:DescribeKey"], "Resource": "*"}
    ])));
    let iam = identity_policy(doc(
        json!([{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY}]),
    ));
    assert_eq!(
        Case::new(&kp, user(B, "carol"), "kms:Decrypt").decide(),
        NO_ID
    );
    assert_eq!(
        Case::new(&kp, user(B, "carol"), "kms:Decrypt")
            .ids(&[&iam])
            .decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, user(B, "dave"), "kms:Decrypt")
            .ids(&[&iam])
            .decide(),
        ALLOW_ID
    );
    assert_eq!(
        Case::new(&kp, user(B, "dave"), "kms:Encrypt")
            .ids(&[&iam])
            .decide(),
        NO_RES
    );
    // The other account's root has every identity permission of its account.
    assert_eq!(
        Case::new(&kp, root(B), "kms:DescribeKey").decide(),
        ALLOW_ID
    );
}

#[test]
fn service_principals_match_by_name() {
    let kp = key_policy(doc(
        json!([{"Effect": "Allow", "Principal": {"Service": "mysql.keywarden.internal"},
                                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": "*"}]),
    ));
    assert_eq!(
        Case::new(&kp, service("mysql.keywarden.internal"), "kms:Decrypt").decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, service("evs.keywarden.internal"), "kms:Decrypt").decide(),
        NO_RES
    );
}

#[test]
fn not_principal_deny_spares_only_listed_principals() {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html
    let kp = key_policy(doc(json!([
        {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "NotPrincipal": {"AWS": ["arn:aws:iam::111122223333:user/admin",
                                                     "arn:aws:iam::111122223333:root"]},
         "Action": "kms:*", "Resource": "*"}
    ])));
    assert_eq!(
        Case::new(&kp, user(A, "admin"), "kms:Decrypt").decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, user(A, "bob"), "kms:Decrypt").decide(),
        DENY_KP
    );
    assert_eq!(Case::new(&kp, root(A), "kms:Decrypt").decide(), ALLOW_KP);
}

#[test]
fn assumed_role_arn_names_one_session() {
    let kp = key_policy(doc(json!([{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:sts::111122223333:assumed-role/R/alice"},
        "Action": "kms:Decrypt", "Resource": "*"}])));
    assert_eq!(
        Case::new(&kp, session(A, "R", "alice"), "kms:Decrypt").decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, session(A, "R", "bob"), "kms:Decrypt").decide(),
        NO_RES
    );
}

#[test]
fn actions_match_ignoring_case() {
    let kp = key_policy(doc(
        json!([{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
                                    "Action": "KMS:decrypt", "Resource": "*"}]),
    ));
    assert_eq!(
        Case::new(&kp, user(A, "alice"), "kms:Decrypt").decide(),
        ALLOW_KP
    );
}

// ---- requests without a key ----
// https://docs.aws.amazon.com/kms/latest/developerguide/iam-policies.html (CreateKey needs "Resource": "*")

#[test]
fn requests_without_a_key_follow_identity_policies() {
    let no_key = |who: PrincipalInfo, ids: &[&PolicyDocument]| {
        let ctx = ctx();
        let req = Request {
            principal: &who,
            action: "kms:CreateKey",
            resource: "*",
            context: &ctx,
        };
        let eval = KmsEvaluation {
            key_policy: None,
            key_account: None,
            identity_policies: ids,
            principal_is_root: who.kind == PrincipalKind::Root,
            grant_allows: false,
        };
        evaluate_kms(&eval, &req)
    };
    let star = identity_policy(doc(
        json!([{"Effect": "Allow", "Action": "kms:CreateKey", "Resource": "*"}]),
    ));
    // A key ARN pattern does not cover a request without a resource.
    let arn = iam_allow(json!("kms:CreateKey"));
    assert_eq!(no_key(root(A), &[]), ALLOW_ID);
    assert_eq!(no_key(user(A, "alice"), &[&star]), ALLOW_ID);
    assert_eq!(no_key(user(A, "alice"), &[&arn]), NO_ID);
    assert_eq!(no_key(user(A, "alice"), &[]), NO_ID);
}

// ---- denial messages ----
// https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_access-denied.html

#[test]
fn denial_messages_say_why() {
    let kp = default_key_policy();
    let prefix = format!("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Decrypt on resource: {KEY} ");
    let m = Case::new(&kp, user(A, "alice"), "kms:Decrypt")
        .message()
        .unwrap();
    assert_eq!(
        m,
        format!("{prefix}because no identity-based policy allows the kms:Decrypt action")
    );

    let only_bob = key_policy(doc(
        json!([{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "kms:*", "Resource": "*"}]),
    ));
    let m = Case::new(&only_bob, user(A, "alice"), "kms:Decrypt")
        .message()
        .unwrap();
    assert_eq!(
        m,
        format!("{prefix}because no resource-based policy allows the kms:Decrypt action")
    );

    let deny_kp = key_policy(doc(
        json!([{"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*"}]),
    ));
    let m = Case::new(&deny_kp, user(A, "alice"), "kms:Decrypt")
        .message()
        .unwrap();
    assert_eq!(
        m,
        format!("{prefix}with an explicit deny in a resource-based policy")
    );

    let deny_id = identity_policy(doc(
        json!([{"Effect": "Deny", "Action": "kms:*", "Resource": "*"}]),
    ));
    let m = Case::new(&kp, user(A, "alice"), "kms:Decrypt")
        .ids(&[&deny_id])
        .message()
        .unwrap();
    assert_eq!(
        m,
        format!("{prefix}with an explicit deny in an identity-based policy")
    );

    assert_eq!(Case::new(&kp, root(A), "kms:Decrypt").message(), None);
}

// ---- properties ----

const KEY_PRINCIPALS: &[&str] = &[
    r#""*""#,
    r#"{"AWS": "111122223333"}"#,
    r#"{"AWS": "arn:aws:iam::111122223333:root"}"#,
    r#"{"AWS": "arn:aws:iam::111122223333:user/alice"}"#,
    r#"{"AWS": ["arn:aws:iam::111122223333:role/R", "arn:aws:iam::444455556666:root"]}"#,
    r#"{"AWS": "arn:aws:sts::111122223333:assumed-role/R/s1"}"#,
    r#"{"Service": "evs.keywarden.internal"}"#,
];

const ACTIONS: &[&str] = &[
    "kms:*",
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:Describe*",
    "*",
    "kms:?ecrypt",
    "kms:CreateKey",
];

const RESOURCES: &[&str] = &[
    "*",
    KEY,
    OTHER_KEY,
    "arn:aws:kms:*:111122223333:key/*",
    "arn:aws:kms:*:${aws:PrincipalAccount}:key/*",
    "arn:aws:kms:*:${aws:username, 'x'}${",
];

const CONDITIONS: &[&str] = &[
    r#"{"StringEquals": {"kms:EncryptionContext:Dept": "IT"}}"#,
    r#"{"StringNotEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}"#,
    r#"{"StringLikeIfExists": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}"#,
    r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Dept", "Proj"]}}"#,
    r#"{"ForAnyValue:StringNotLike": {"kms:EncryptionContextKeys": "D*"}}"#,
    r#"{"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#,
    r#"{"NotIpAddress": {"aws:SourceIp": "10.1.0.0/16"}}"#,
    r#"{"Null": {"kms:EncryptionContextKeys": "false"}}"#,
    r#"{"Bool": {"aws:SecureTransport": true}}"#,
    r#"{"NumericGreaterThanEquals": {"aws:MultiFactorAuthAge": 60}}"#,
    r#"{"DateLessThan": {"aws:CurrentTime": "2030-01-01"}}"#,
    r#"{"ArnNotLike": {"aws:SourceArn": "arn:aws:s3:::b*"}}"#,
    r#"{"StringEquals": {"kms:CallerAccount": "${aws:PrincipalAccount}"}}"#,
    r#"{"StringEquals": {"kms:EncryptionContext:Owner": "${aws:username}"}}"#,
    r#"{"BinaryEquals": {"kms:Blob": "QmluYXJ5"}}"#,
];

fn arb_statement(key: bool) -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        (0..KEY_PRINCIPALS.len(), any::<bool>()),
        (prop::sample::subsequence(ACTIONS, 1..3), any::<bool>()),
        (
            proptest::option::of(prop::sample::subsequence(RESOURCES, 1..3)),
            any::<bool>(),
        ),
        prop::sample::subsequence(CONDITIONS, 0..3),
    )
        .prop_map(
            move |(deny, (p, not_p), (actions, not_a), (resources, not_r), conds)| {
                let mut st = serde_json::Map::new();
                st.insert("Effect".into(), json!(if deny { "Deny" } else { "Allow" }));
                if key {
                    let name = if not_p { "NotPrincipal" } else { "Principal" };
                    st.insert(
                        name.into(),
                        serde_json::from_str(KEY_PRINCIPALS[p]).unwrap(),
                    );
                }
                st.insert(
                    (if not_a { "NotAction" } else { "Action" }).into(),
                    json!(actions),
                );
                let resources = match resources {
                    Some(r) => r,
                    None if key => vec![],
                    None => vec!["*"],
                };
                if !resources.is_empty() {
                    st.insert(
                        (if not_r { "NotResource" } else { "Resource" }).into(),
                        json!(resources),
                    );
                }
                let mut cond = serde_json::Map::new();
                for c in conds {
                    let Value::Object(block) = serde_json::from_str::<Value>(c).unwrap() else {
                        unreachable!()
                    };
                    for (op, keys) in block {
                        // Merge blocks that share an operator: duplicate keys are refused.
                        let entry = cond.entry(op).or_insert_with(|| json!({}));
                        for (k, v) in keys.as_object().unwrap() {
                            entry[k] = v.clone();
                        }
                    }
                }
                if !cond.is_empty() {
                    st.insert("Condition".into(), Value::Object(cond));
                }
                Value::Object(st)
            },
        )
}

fn arb_doc(key: bool) -> impl Strategy<Value = PolicyDocument> {
    (
        any::<bool>(),
        prop::collection::vec(arb_statement(key), 1..5),
    )
        .prop_map(move |(new, sts)| {
            let v =
                json!({"Version": if new { "2012-10-17" } else { "2008-10-17" }, "Statement": sts});
            let kind = if key {
                PolicyKind::Key
            } else {
                PolicyKind::Identity
            };
            parse_policy(&v.to_string(), kind)
                .unwrap_or_else(|e| panic!("generator made an invalid policy: {e}\n{v}"))
        })
}

fn arb_principal() -> impl Strategy<Value = PrincipalInfo> {
    prop::sample::select(vec![
        root(A),
        user(A, "alice"),
        user(A, "bob"),
        session(A, "R", "s1"),
        session(A, "R", "s2"),
        user(B, "carol"),
        root(B),
        service("evs.keywarden.internal"),
    ])
    .prop_map(|mut p| {
        p.tags = vec![("team".into(), "blue".into())];
        p
    })
}

fn arb_context() -> impl Strategy<Value = RequestContext> {
    (
        proptest::option::of(prop::sample::select(vec!["IT", "HR"])),
        proptest::option::of(prop::sample::subsequence(
            vec!["Dept", "Proj", "Owner"],
            0..3,
        )),
        proptest::option::of(prop::sample::select(vec![
            "10.0.0.1",
            "10.1.2.3",
            "192.0.2.1",
            "2001:db8::1",
        ])),
        proptest::option::of(prop::sample::select(vec![
            "ec2.us-west-2.amazonaws.com",
            "s3.us-west-2.amazonaws.com",
        ])),
        proptest::option::of(prop::sample::select(vec!["true", "false"])),
        proptest::option::of(prop::sample::select(vec!["0", "61", "x"])),
    )
        .prop_map(|(dept, keys, ip, via, tls, mfa)| {
            let mut c = RequestContext::new();
            if let Some(d) = dept {
                c.insert("kms:EncryptionContext:Dept", d);
            }
            if let Some(k) = keys {
                c.insert_multi("kms:EncryptionContextKeys", k);
            }
            if let Some(ip) = ip {
                c.insert("aws:SourceIp", ip);
            }
            if let Some(v) = via {
                c.insert("kms:ViaService", v);
            }
            if let Some(t) = tls {
                c.insert("aws:SecureTransport", t);
            }
            if let Some(m) = mfa {
                c.insert("aws:MultiFactorAuthAge", m);
            }
            c.insert("aws:CurrentTime", "2025-06-01T00:00:00Z");
            c
        })
}

#[derive(Debug, Clone)]
struct World {
    key_policy: Option<PolicyDocument>,
    identity: Vec<PolicyDocument>,
    grant: bool,
    who: PrincipalInfo,
    action: &'static str,
    ctx: RequestContext,
}

impl World {
    fn decide(&self) -> Decision {
        let ids: Vec<&PolicyDocument> = self.identity.iter().collect();
        let req = Request {
            principal: &self.who,
            action: self.action,
            resource: if self.key_policy.is_some() { KEY } else { "*" },
            context: &self.ctx,
        };
        let eval = KmsEvaluation {
            key_policy: self.key_policy.as_ref(),
            key_account: self.key_policy.as_ref().map(|_| A),
            identity_policies: &ids,
            principal_is_root: self.who.kind == PrincipalKind::Root,
            grant_allows: self.grant,
        };
        let d = evaluate_kms(&eval, &req);
        // Every document's own verdict is computable too.
        if let Some(kp) = &self.key_policy {
            evaluate_document(kp, PolicyKind::Key, &req);
        }
        assert_eq!(denial_message(&d, &req).is_none(), d.is_allowed());
        // The audit log's reading of a denial names the decision's kind.
        let kind = denial_message(&d, &req).and_then(|m| super::denial_kind(&m));
        let expected = match d {
            Decision::Allow(_) => None,
            Decision::ExplicitDeny(PolicySource::KeyPolicy) => Some("explicit-deny-key-policy"),
            Decision::ExplicitDeny(PolicySource::IdentityPolicy) => {
                Some("explicit-deny-identity-policy")
            }
            Decision::ImplicitDeny(ImplicitReason::NoResourcePolicyAllows) => {
                Some("no-key-policy-allows")
            }
            Decision::ImplicitDeny(ImplicitReason::NoIdentityPolicyAllows) => {
                Some("no-identity-policy-allows")
            }
        };
        assert_eq!(kind, expected);
        d
    }
}

fn arb_world() -> impl Strategy<Value = World> {
    (
        proptest::option::of(arb_doc(true)),
        prop::collection::vec(arb_doc(false), 0..3),
        any::<bool>(),
        arb_principal(),
        prop::sample::select(vec![
            "kms:Decrypt",
            "kms:Encrypt",
            "kms:DescribeKey",
            "kms:CreateKey",
        ]),
        arb_context(),
    )
        .prop_map(|(key_policy, identity, grant, who, action, ctx)| World {
            key_policy,
            identity,
            grant,
            who,
            action,
            ctx,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// (a) A Deny that matches the request, added to any of the documents,
    /// makes the decision an explicit deny from that kind of document.
    #[test]
    fn a_matching_deny_always_denies(mut w in arb_world(), target in any::<prop::sample::Index>()) {
        let slots = w.identity.len() + usize::from(w.key_policy.is_some()) ;
        let slot = if slots == 0 { 0 } else { target.index(slots) };
        let expected = if slot < w.identity.len() || w.key_policy.is_none() {
            let deny = identity_policy(doc(json!([{"Effect": "Deny", "Action": "*", "Resource": "*"}])));
            match w.identity.get_mut(slot) {
                Some(d) => d.statements.push(deny.statements[0].clone()),
                None => w.identity.push(deny),
            }
            None
        } else {
            let deny = key_policy(doc(json!([{"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"}])));
            w.key_policy.as_mut().unwrap().statements.push(deny.statements[0].clone());
            // The key policy is checked first, so its deny is the one reported.
            Some(DENY_KP)
        };
        let d = w.decide();
        match expected {
            Some(e) => prop_assert_eq!(d, e),
            None => prop_assert!(matches!(d, Decision::ExplicitDeny(_)), "{:?}", d),
        }
    }

    /// (b) Removing an Allow statement never turns a denial into an allow.
    #[test]
    fn removing_an_allow_never_widens_access(w in arb_world(), pick in any::<prop::sample::Index>()) {
        let before = w.decide();
        let mut allows = vec![];
        if let Some(kp) = &w.key_policy {
            for (i, st) in kp.statements.iter().enumerate() {
                if st.effect == Effect::Allow { allows.push((None, i)); }
            }
        }
        for (d, doc) in w.identity.iter().enumerate() {
            for (i, st) in doc.statements.iter().enumerate() {
                if st.effect == Effect::Allow { allows.push((Some(d), i)); }
            }
        }
        prop_assume!(!allows.is_empty());
        let (d, i) = allows[pick.index(allows.len())];
        let mut after = w.clone();
        match d {
            None => { after.key_policy.as_mut().unwrap().statements.remove(i); }
            Some(d) => { after.identity[d].statements.remove(i); }
        }
        let after = after.decide();
        if !before.is_allowed() {
            prop_assert!(!after.is_allowed(), "{:?} became {:?}", before, after);
        }
    }

    /// (c) Evaluation never panics on any parsed document, whatever the
    /// operators, values and variables.
    #[test]
    fn evaluation_never_panics(
        ops in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<bool>(), prop::collection::vec(VALUE, 1..3)), 1..4),
        w in arb_world(),
    ) {
        let mut cond = serde_json::Map::new();
        for (i, (op, q, if_exists, values)) in ops.into_iter().enumerate() {
            let kind = OperatorKind::ALL[op.index(OperatorKind::ALL.len())];
            let q = ["", "ForAnyValue:", "ForAllValues:"][q as usize];
            let suffix = if if_exists && kind != OperatorKind::Null { "IfExists" } else { "" };
            let key = ["kms:EncryptionContext:Dept", "kms:EncryptionContextKeys", "aws:SourceIp", "aws:CurrentTime", "aws:MultiFactorAuthAge", "aws:PrincipalTag/team"][i % 6];
            cond.insert(format!("{q}{}{suffix}", kind.name()), json!({key: values}));
        }
        let v = doc(json!([{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*", "Condition": cond}]));
        if let Ok(d) = parse_key_policy(&v.to_string()) {
            let mut w = w;
            w.key_policy = Some(d);
            let _ = w.decide();
        }
    }
}

const VALUE: &str = r"(\$\{[a-zA-Z:/*?$, ']{0,12}\}?|[0-9./:TZ-]{0,20}|true|false|\*|10\.0\.0\.0/8|::/0|[A-Za-z0-9+/]{4}|arn:aws:[a-z*]{0,4}:[a-z0-9-]{0,4}:[0-9*]{0,12}:[a-z/*]{0,8}){1,3}";

#[test]
fn deny_naming_an_account_denies_all_its_principals() {
    // An account principal in a Deny covers every identity of that account
    // (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html,
    // "AWS account principals"); other accounts are untouched.
    let kp = key_policy(doc(json!([
        {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": "444455556666"}, "Action": "kms:*", "Resource": "*"}
    ])));
    let iam = identity_policy(doc(
        json!([{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]),
    ));
    assert_eq!(
        Case::new(&kp, user(B, "carol"), "kms:Decrypt")
            .ids(&[&iam])
            .decide(),
        DENY_KP
    );
    assert_eq!(
        Case::new(&kp, session(B, "R", "s"), "kms:Decrypt")
            .ids(&[&iam])
            .decide(),
        DENY_KP
    );
    assert_eq!(
        Case::new(&kp, user(A, "alice"), "kms:Decrypt").decide(),
        ALLOW_KP
    );
}

/// Which callers of another account see a key: an Allow statement naming
/// them or their account, whatever its actions and conditions; a Deny
/// naming them, or a policy naming only the owner, shows nothing.
/// (Keywarden's rule, docs/access-control.md "Cross-account use".)
#[test]
fn key_policy_names_the_principals_a_key_is_shared_with() {
    let owner_only = key_policy(doc(json!([{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{A}:root")},
        "Action": "kms:*", "Resource": "*"}])));
    assert!(key_policy_names(&owner_only, &root(A)));
    assert!(key_policy_names(&owner_only, &user(A, "alice")));
    assert!(!key_policy_names(&owner_only, &root(B)));
    assert!(!key_policy_names(&owner_only, &user(B, "alice")));

    let to_account = key_policy(doc(json!([{
        "Effect": "Allow", "Principal": {"AWS": B}, "Action": "kms:Decrypt", "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:app": "x"}}}])));
    assert!(key_policy_names(&to_account, &root(B)));
    assert!(key_policy_names(&to_account, &session(B, "batch", "s1")));

    let to_user = key_policy(doc(json!([{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{B}:user/alice")},
        "Action": "kms:Encrypt", "Resource": "*"}])));
    assert!(key_policy_names(&to_user, &user(B, "alice")));
    assert!(!key_policy_names(&to_user, &user(B, "bob")));
    assert!(!key_policy_names(&to_user, &root(B)));

    let deny_only = key_policy(doc(json!([{
        "Effect": "Deny", "Principal": {"AWS": B}, "Action": "kms:*", "Resource": "*"}])));
    assert!(!key_policy_names(&deny_only, &root(B)));

    let everyone = key_policy(doc(json!([{
        "Effect": "Allow", "Principal": "*", "Action": "kms:DescribeKey", "Resource": "*"}])));
    assert!(key_policy_names(&everyone, &user(B, "anyone")));
}

// ---- the cost of one decision ----

/// `n` StringLike patterns that each insert the context value `p` and are
/// matched against the context value `v`: with `p` 1,500 and `v` 6,000
/// characters, about 6.75 million steps each.
fn costly_patterns(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("*${{kms:EncryptionContext:p}}b{i}"))
        .collect()
}

fn costly_context() -> RequestContext {
    ctx()
        .with("kms:EncryptionContext:p", "a".repeat(1_500))
        .with("kms:EncryptionContext:v", "a".repeat(6_000))
}

#[test]
fn a_policy_too_costly_to_evaluate_denies_and_stops_early() {
    // A Deny that never matches, but costs 400 × 6.75 million steps (about
    // 2.7 billion, seconds of CPU even in a release build) to find so.
    let kp = key_policy(doc(json!([
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "Costly", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:v": costly_patterns(400)}}}
    ])));
    let benign = ctx()
        .with("kms:EncryptionContext:p", "a")
        .with("kms:EncryptionContext:v", "a");
    assert_eq!(
        Case::new(&kp, root(A), "kms:Encrypt").ctx(benign).decide(),
        ALLOW_ID
    );
    let start = std::time::Instant::now();
    let costly = Case::new(&kp, root(A), "kms:Encrypt").ctx(costly_context());
    assert_eq!(costly.decide(), DENY_KP);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    // Without variables too: 25 patterns of 1,000 literal characters after
    // a `*`, each about 7 million steps against 8,000 characters.
    let plain: Vec<String> = (0..25)
        .map(|i| format!("*{}b{i}", "a".repeat(1_000)))
        .collect();
    let kp_plain = key_policy(doc(json!([
        {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "Costly", "Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:v": plain}}}
    ])));
    let long = ctx().with("kms:EncryptionContext:v", "a".repeat(8_000));
    assert_eq!(
        Case::new(&kp_plain, root(A), "kms:Encrypt")
            .ctx(long)
            .decide(),
        DENY_KP
    );
    let short = ctx().with("kms:EncryptionContext:v", "a".repeat(1_000));
    assert_eq!(
        Case::new(&kp_plain, root(A), "kms:Encrypt")
            .ctx(short)
            .decide(),
        ALLOW_ID
    );
    // Other actions do not reach the costly statement.
    assert_eq!(
        Case::new(&kp, root(A), "kms:Decrypt")
            .ctx(costly_context())
            .decide(),
        ALLOW_ID
    );
}

#[test]
fn a_costly_allow_never_allows() {
    // Evaluated to the end, the last pattern (`*`) would allow; cut short,
    // the decision denies rather than guess.
    let mut patterns = costly_patterns(400);
    patterns.push("*".into());
    let kp = key_policy(doc(json!([
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
         "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:v": patterns}}}
    ])));
    let short = ctx()
        .with("kms:EncryptionContext:p", "a")
        .with("kms:EncryptionContext:v", "a");
    assert_eq!(
        Case::new(&kp, user(A, "alice"), "kms:Encrypt")
            .ctx(short)
            .decide(),
        ALLOW_KP
    );
    assert_eq!(
        Case::new(&kp, user(A, "alice"), "kms:Encrypt")
            .ctx(costly_context())
            .decide(),
        DENY_KP
    );
    // The same in an identity policy denies as the identity policy.
    let iam = identity_policy(doc(json!([
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringLike": {"kms:EncryptionContext:v": costly_patterns(400)}}}
    ])));
    assert_eq!(
        Case::new(&default_key_policy(), user(A, "alice"), "kms:Encrypt")
            .ids(&[&iam])
            .ctx(costly_context())
            .decide(),
        DENY_ID
    );
    // Plain comparisons count too: 2,500 condition values against 2,000
    // context keys (5 million comparisons), the last value matching.
    let mut keys: Vec<String> = (0..2_500).map(|i| format!("no{i}")).collect();
    keys.push("k1999".into());
    let iam_keys = identity_policy(doc(json!([
        {"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": keys}}}
    ])));
    let many = ctx().with_multi(
        "kms:EncryptionContextKeys",
        (0..2_000).map(|i| format!("k{i}")),
    );
    let few = ctx().with_multi("kms:EncryptionContextKeys", ["k1999"]);
    let decide = |c: RequestContext| {
        Case::new(&default_key_policy(), user(A, "alice"), "kms:Encrypt")
            .ids(&[&iam_keys])
            .ctx(c)
            .decide()
    };
    assert_eq!(decide(few), ALLOW_ID);
    assert_eq!(decide(many), DENY_ID);
    // One decision's spending does not carry over to the next.
    let iam_any = iam_allow(json!("kms:Encrypt"));
    assert_eq!(
        Case::new(&default_key_policy(), user(A, "alice"), "kms:Encrypt")
            .ids(&[&iam_any])
            .decide(),
        ALLOW_ID
    );
}
