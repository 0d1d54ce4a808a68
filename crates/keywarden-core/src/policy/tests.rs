//! Tests of the whole parser: AWS's published example policies, every
//! validation rule, and properties (never panics; serializing and parsing
//! again gives the same AST).

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn key(text: &str) -> PolicyDocument {
    match parse_key_policy(text) {
        Ok(doc) => doc,
        Err(e) => panic!("refused: {e}\n{text}"),
    }
}

fn key_err(value: serde_json::Value) -> PolicyError {
    let text = value.to_string();
    match parse_key_policy(&text) {
        Ok(doc) => panic!("accepted: {doc:?}\n{text}"),
        Err(e) => e,
    }
}

fn identity_err(value: serde_json::Value) -> PolicyError {
    parse_policy(&value.to_string(), PolicyKind::Identity).unwrap_err()
}

fn round_trips(doc: &PolicyDocument, kind: PolicyKind) {
    let again = parse_policy(&doc.to_json_string(), kind)
        .unwrap_or_else(|e| panic!("re-parse failed: {e}\n{}", doc.to_json_string()));
    assert_eq!(&again, doc);
}

/// A statement that is valid in a key policy, to break one element at a time.
fn statement() -> serde_json::Value {
    json!({
        "Sid": "Base",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
        "Action": "kms:*",
        "Resource": "*"
    })
}

fn with(key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut st = statement();
    st[key] = value;
    json!({"Version": "2012-10-17", "Statement": [st]})
}

fn without(key: &str) -> serde_json::Value {
    let mut st = statement();
    st.as_object_mut().unwrap().remove(key);
    json!({"Version": "2012-10-17", "Statement": [st]})
}

// ---- AWS's example key policies ----

/// The default key policy for keys created programmatically:
/// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
/// ("Allows access to the AWS account and enables IAM policies").
const DEFAULT_KEY_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Id": "key-default-1",
  "Statement": [
    {
      "Sid": "Enable IAM User Permissions",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
      "Action": "kms:*",
      "Resource": "*"
    }
  ]
}"#;

/// The console's default statements: key administrators, key users ("Allow
/// use of the key") and "Allow attachment of persistent resources":
/// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
const CONSOLE_KEY_POLICY: &str = r#"{
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
      "Principal": {"AWS": ["arn:aws:iam::111122223333:role/KMSKeyAdmins", "arn:aws:iam::111122223333:user/KMSAdminUser"]},
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
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleRole"},
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
      "Resource": "*"
    },
    {
      "Sid": "Allow attachment of persistent resources",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/ExampleRole"},
      "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"],
      "Resource": "*",
      "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    }
  ]
}"#;

/// An encryption-context condition (`kms:EncryptionContext:context-key`) and
/// the keys-only form (`ForAllValues:StringEquals` on `kms:EncryptionContextKeys`):
/// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html
const ENCRYPTION_CONTEXT_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "DecryptOnlyForExampleApp",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"},
      "Action": "kms:Decrypt",
      "Resource": "*",
      "Condition": {
        "StringEquals": {"kms:EncryptionContext:AppName": "ExampleApp"}
      }
    },
    {
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:role/RoleForExampleApp"},
      "Action": ["kms:Encrypt", "kms:GenerateDataKey*"],
      "Resource": "*",
      "Condition": {
        "ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["AppName", "FilePath"]},
        "Null": {"kms:EncryptionContextKeys": "false"}
      }
    }
  ]
}"#;

/// `kms:ViaService` with `kms:CallerAccount`, as in AWS managed keys' policies:
/// https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html
/// (kms:ViaService).
const VIA_SERVICE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Id": "auto-ebs-2",
  "Statement": [
    {
      "Sid": "Allow access through EBS for all principals in the account that are authorized to use EBS",
      "Effect": "Allow",
      "Principal": {"AWS": "*"},
      "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey"],
      "Resource": "*",
      "Condition": {
        "StringEquals": {
          "kms:CallerAccount": "111122223333",
          "kms:ViaService": ["ec2.us-west-2.amazonaws.com", "rds.us-west-2.amazonaws.com"]
        }
      }
    },
    {
      "Sid": "Allow direct access to key metadata to the account",
      "Effect": "Allow",
      "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
      "Action": ["kms:Describe*", "kms:Get*", "kms:List*", "kms:RevokeGrant"],
      "Resource": "*"
    }
  ]
}"#;

/// A deny with `NotPrincipal`, `aws:SourceIp` and a date, as in the IAM
/// condition operator examples:
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
const OPERATORS_POLICY: &str = r#"{
  "Statement": {
    "Effect": "Deny",
    "NotPrincipal": {"AWS": ["111122223333", "arn:aws:sts::111122223333:assumed-role/Admin/alice"]},
    "NotAction": "kms:Describe*",
    "Resource": "arn:aws:kms:us-west-2:111122223333:key/*",
    "Condition": {
      "NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24", "2001:db8::/32"]},
      "DateGreaterThanIfExists": {"aws:CurrentTime": "2020-04-01T00:00:01Z"},
      "NumericLessThanEquals": {"aws:MultiFactorAuthAge": 3600},
      "ForAnyValue:StringLike": {"aws:PrincipalTag/team": ["ops-*", "sec?"]}
    }
  }
}"#;

const EXAMPLES: &[&str] = &[
    DEFAULT_KEY_POLICY,
    CONSOLE_KEY_POLICY,
    ENCRYPTION_CONTEXT_POLICY,
    VIA_SERVICE_POLICY,
    OPERATORS_POLICY,
];

#[test]
fn the_default_key_policy_parses_to_the_expected_ast() {
    let doc = key(DEFAULT_KEY_POLICY);
    assert_eq!(doc.version, Some(PolicyVersion::V2012_10_17));
    assert_eq!(doc.id.as_deref(), Some("key-default-1"));
    assert_eq!(doc.statements.len(), 1);
    let st = &doc.statements[0];
    assert_eq!(st.sid.as_deref(), Some("Enable IAM User Permissions"));
    assert_eq!(st.effect, Effect::Allow);
    let Some(PrincipalMatcher::Principal(Principal::Set(set))) = &st.principal else {
        panic!("{:?}", st.principal);
    };
    assert_eq!(
        set.aws,
        vec![AwsPrincipal::Arn(PrincipalArn {
            arn: "arn:aws:iam::111122223333:root".into(),
            partition: "aws".into(),
            account: "111122223333".into(),
            kind: PrincipalArnKind::Root,
            name: String::new(),
        })]
    );
    assert_eq!(st.action, ActionMatcher::Action(vec!["kms:*".into()]));
    assert!(st.action.matches("kms:Encrypt"));
    assert!(!st.action.matches("iam:CreateUser"));
    assert_eq!(
        st.resource,
        Some(ResourceMatcher::Resource(vec!["*".into()]))
    );
    assert!(st.conditions.is_empty());
}

#[test]
fn aws_example_policies_parse_and_round_trip() {
    for text in EXAMPLES {
        let doc = key(text);
        round_trips(&doc, PolicyKind::Key);
    }
}

#[test]
fn example_conditions_are_typed() {
    let doc = key(CONSOLE_KEY_POLICY);
    let c = &doc.statements[3].conditions;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].operator.kind, OperatorKind::Bool);
    assert_eq!(c[0].key, "kms:GrantIsForAWSResource");
    assert_eq!(c[0].values, vec![ConditionValue::String("true".into())]);

    let doc = key(VIA_SERVICE_POLICY);
    let st = &doc.statements[0];
    assert_eq!(
        st.principal,
        Some(PrincipalMatcher::Principal(Principal::Set(PrincipalSet {
            aws: vec![AwsPrincipal::Any],
            ..Default::default()
        })))
    );
    // Sorted by operator, then key.
    let keys: Vec<&str> = st.conditions.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["kms:CallerAccount", "kms:ViaService"]);
    assert_eq!(st.conditions[1].values.len(), 2);

    let doc = key(OPERATORS_POLICY);
    let st = &doc.statements[0];
    assert_eq!(doc.version, None);
    assert!(matches!(
        st.principal,
        Some(PrincipalMatcher::NotPrincipal(_))
    ));
    assert!(st.action.matches("kms:Encrypt"));
    assert!(!st.action.matches("kms:DescribeKey"));
    let names: Vec<String> = st
        .conditions
        .iter()
        .map(|c| c.operator.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "DateGreaterThanIfExists",
            "ForAnyValue:StringLike",
            "NotIpAddress",
            "NumericLessThanEquals"
        ]
    );
    let any = st.conditions[1].operator;
    assert_eq!(any.qualifier, Some(SetQualifier::ForAnyValue));
    assert!(st.conditions[0].operator.if_exists);
    assert!(st
        .resource
        .as_ref()
        .unwrap()
        .matches("arn:aws:kms:us-west-2:111122223333:key/1234"));
}

// ---- document-level rules ----

#[test]
fn size_is_limited_to_32_kib() {
    let doc = key(DEFAULT_KEY_POLICY);
    let pad = MAX_KEY_POLICY_BYTES - DEFAULT_KEY_POLICY.len();
    let exact = format!("{DEFAULT_KEY_POLICY}{}", " ".repeat(pad));
    assert_eq!(key(&exact), doc);
    let over = format!("{exact} ");
    assert_eq!(
        parse_key_policy(&over).unwrap_err().kind,
        PolicyErrorKind::TooLarge {
            size: MAX_KEY_POLICY_BYTES + 1,
            max: MAX_KEY_POLICY_BYTES
        }
    );
    assert_eq!(
        parse_key_policy(&over).unwrap_err().to_string(),
        "the policy is 32769 bytes; at most 32768 bytes are allowed"
    );
}

#[test]
fn only_printable_latin1_and_whitespace_are_allowed() {
    let ok = DEFAULT_KEY_POLICY
        .replace("key-default-1", "clé défaut ÿ")
        .replace("\"Id\":", "\"Id\":\t\r\n");
    assert_eq!(key(&ok).id.as_deref(), Some("clé défaut ÿ"));
    for bad in ['\u{1}', '\u{7f}', '\u{100}', '€', '😀'] {
        let text = DEFAULT_KEY_POLICY.replace("key-default-1", &bad.to_string());
        assert_eq!(
            parse_key_policy(&text).unwrap_err().kind,
            PolicyErrorKind::InvalidCharacter(bad as u32)
        );
    }
    // An escape is fine in the text, and the AST holds the character.
    let text = DEFAULT_KEY_POLICY.replace("key-default-1", "\\u20ac");
    let doc = key(&text);
    assert_eq!(doc.id.as_deref(), Some("€"));
    round_trips(&doc, PolicyKind::Key);
}

#[test]
fn the_document_must_be_a_json_object() {
    for text in ["", "[]", "\"x\"", "null", "42", "{", "{\"Statement\": [}"] {
        let e = parse_key_policy(text).unwrap_err();
        assert!(
            matches!(
                e.kind,
                PolicyErrorKind::Syntax(_) | PolicyErrorKind::WrongType("a JSON object")
            ),
            "{text}: {e}"
        );
    }
    let e = parse_key_policy("{} x").unwrap_err();
    assert!(
        e.to_string().starts_with("the policy is not valid JSON: "),
        "{e}"
    );
}

#[test]
fn duplicate_keys_are_refused_at_every_level() {
    let top = r#"{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}"#;
    let e = parse_key_policy(top).unwrap_err();
    assert_eq!(e.kind, PolicyErrorKind::DuplicateKey("Version".into()));
    assert_eq!(e.to_string(), "duplicate key \"Version\"");

    let inner = DEFAULT_KEY_POLICY.replace(
        r#""Effect": "Allow","#,
        r#""Effect": "Allow", "Effect": "Deny","#,
    );
    let e = parse_key_policy(&inner).unwrap_err();
    assert_eq!(e.location, "Statement[0]");
    assert_eq!(e.kind, PolicyErrorKind::DuplicateKey("Effect".into()));

    let condition = r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*",
        "Condition": {"StringEquals": {"kms:ViaService": "a.b", "kms:ViaService": "c.d"}}}}"#;
    let e = parse_key_policy(condition).unwrap_err();
    assert_eq!(e.location, "Statement.Condition.StringEquals");
    assert_eq!(
        e.to_string(),
        "Statement.Condition.StringEquals: duplicate key \"kms:ViaService\""
    );
}

#[test]
fn nesting_is_bounded() {
    let deep = format!(
        r#"{{"Statement": {}{}}}"#,
        "[".repeat(MAX_NESTING_DEPTH),
        "]".repeat(MAX_NESTING_DEPTH)
    );
    assert_eq!(
        parse_key_policy(&deep).unwrap_err().kind,
        PolicyErrorKind::TooDeep(MAX_NESTING_DEPTH)
    );
}

#[test]
fn top_level_elements_are_checked() {
    let e = key_err(json!({"Version": "2012-10-17"}));
    assert_eq!(e.kind, PolicyErrorKind::Missing("Statement"));
    assert_eq!(e.to_string(), "missing required element Statement");

    let e = key_err(json!({"Version": "2012-10-18", "Statement": [statement()]}));
    assert_eq!(e.location, "Version");
    assert_eq!(e.kind, PolicyErrorKind::InvalidVersion("2012-10-18".into()));
    let e = key_err(json!({"Version": 2012, "Statement": [statement()]}));
    assert_eq!(e.kind, PolicyErrorKind::WrongType("a string"));

    let old = json!({"Version": "2008-10-17", "Statement": [statement()]}).to_string();
    assert_eq!(key(&old).version, Some(PolicyVersion::V2008_10_17));

    let e = key_err(json!({"Id": ["x"], "Statement": [statement()]}));
    assert_eq!(
        (e.location.as_str(), e.kind),
        ("Id", PolicyErrorKind::WrongType("a string"))
    );

    let e = key_err(json!({"Statement": [statement()], "Statements": []}));
    assert_eq!(e.kind, PolicyErrorKind::UnknownElement("Statements".into()));
    let e = key_err(json!({"version": "2012-10-17", "Statement": [statement()]}));
    assert_eq!(e.kind, PolicyErrorKind::UnknownElement("version".into()));

    let e = key_err(json!({"Statement": []}));
    assert_eq!(
        (e.location.as_str(), e.kind),
        ("Statement", PolicyErrorKind::EmptyArray)
    );
    let e = key_err(json!({"Statement": "x"}));
    assert_eq!(e.location, "Statement");
    let e = key_err(json!({"Statement": [statement(), 1]}));
    assert_eq!(
        (e.location.as_str(), e.kind),
        (
            "Statement[1]",
            PolicyErrorKind::WrongType("a statement object")
        )
    );

    // A single statement object is the same as an array of one.
    let single = json!({"Statement": statement()}).to_string();
    let array = json!({"Statement": [statement()]}).to_string();
    assert_eq!(key(&single), key(&array));
}

// ---- statement rules ----

#[test]
fn statement_elements_are_checked() {
    let e = key_err(with("Resources", json!("*")));
    assert_eq!(
        (e.location.as_str(), e.kind),
        (
            "Statement[0]",
            PolicyErrorKind::UnknownElement("Resources".into())
        )
    );

    let e = key_err(without("Effect"));
    assert_eq!(e.kind, PolicyErrorKind::Missing("Effect"));
    for bad in ["allow", "Permit", ""] {
        let e = key_err(with("Effect", json!(bad)));
        assert_eq!(e.location, "Statement[0].Effect");
        assert_eq!(e.kind, PolicyErrorKind::InvalidEffect(bad.into()));
    }
    let e = key_err(with("Effect", json!(true)));
    assert_eq!(e.kind, PolicyErrorKind::WrongType("a string"));

    let e = key_err(with("Sid", json!(7)));
    assert_eq!(e.location, "Statement[0].Sid");
    // Spaces are allowed in key policy Sids, and the Sid is optional.
    key(&with("Sid", json!("Allow use of the key")).to_string());
    assert_eq!(key(&without("Sid").to_string()).statements[0].sid, None);

    let two = json!({"Statement": [statement(), statement()]});
    let e = key_err(two);
    assert_eq!(e.location, "Statement[1].Sid");
    assert_eq!(e.kind, PolicyErrorKind::DuplicateSid("Base".into()));
    let mut other = statement();
    other["Sid"] = json!("Other");
    key(&json!({"Statement": [statement(), other]}).to_string());
}

#[test]
fn principal_and_not_principal_are_exclusive_and_required_in_key_policies() {
    let e = key_err(without("Principal"));
    assert_eq!(
        e.kind,
        PolicyErrorKind::Missing("Principal or NotPrincipal")
    );
    let mut both = statement();
    both["NotPrincipal"] = json!({"AWS": "111122223333"});
    let e = key_err(json!({"Statement": [both]}));
    assert_eq!(
        e.kind,
        PolicyErrorKind::Conflict("Principal", "NotPrincipal")
    );
    assert_eq!(
        e.to_string(),
        "Statement[0]: Principal and NotPrincipal cannot both be present"
    );
}

#[test]
fn action_and_not_action_are_exclusive_and_one_is_required() {
    let e = key_err(without("Action"));
    assert_eq!(e.kind, PolicyErrorKind::Missing("Action or NotAction"));
    let e = key_err(with("NotAction", json!("kms:Decrypt")));
    assert_eq!(e.kind, PolicyErrorKind::Conflict("Action", "NotAction"));

    let ok = [
        "*",
        "kms:*",
        "kms:Encrypt",
        "kms:ReEncrypt*",
        "kms:Get?eyPolicy",
        "KMS:Decrypt",
        "s3-object-lambda:Get*",
    ];
    for a in ok {
        key(&with("Action", json!(a)).to_string());
    }
    key(&with("Action", json!(ok)).to_string());
    for bad in [
        "",
        "kms",
        "kms:",
        ":Encrypt",
        "k*s:Encrypt",
        "kms:En crypt",
        "kms:Encrypt:x",
        "kms_x:Encrypt",
        "*:*",
    ] {
        let e = key_err(with("Action", json!(["kms:Encrypt", bad])));
        assert_eq!(e.location, "Statement[0].Action[1]");
        assert_eq!(e.kind, PolicyErrorKind::InvalidAction(bad.into()));
    }
    let e = key_err(with("Action", json!([])));
    assert_eq!(
        (e.location.as_str(), e.kind),
        ("Statement[0].Action", PolicyErrorKind::EmptyArray)
    );
    let e = key_err(with("Action", json!([1])));
    assert_eq!(e.location, "Statement[0].Action[0]");
    let e = key_err(with("Action", json!({"kms": "Encrypt"})));
    assert_eq!(
        e.kind,
        PolicyErrorKind::WrongType("a string or an array of strings")
    );
}

#[test]
fn resources_are_star_or_arns_and_at_most_one_element() {
    assert_eq!(
        key(&without("Resource").to_string()).statements[0].resource,
        None
    );
    let e = key_err(with("NotResource", json!("*")));
    assert_eq!(e.kind, PolicyErrorKind::Conflict("Resource", "NotResource"));
    for ok in [
        "*",
        "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:kms:*:111122223333:key/*",
        "arn:aws:s3:::bucket/*",
    ] {
        key(&with("Resource", json!(ok)).to_string());
    }
    for bad in [
        "",
        "key/1234",
        "arn:aws:kms",
        "arn:aws:kms:us-east-1:111122223333:",
        "urn:aws:kms:r:1:key/x",
        "arn::kms:r:1:key/x",
    ] {
        let e = key_err(with("Resource", json!(bad)));
        assert_eq!(
            e.kind,
            PolicyErrorKind::InvalidResource(bad.into()),
            "{bad}"
        );
    }
}

#[test]
fn principals_are_validated_and_bad_ones_named() {
    let ok = [
        json!("*"),
        json!({"AWS": "*"}),
        json!({"AWS": "111122223333"}),
        json!({"AWS": ["arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:user/Alice"]}),
        json!({"AWS": "arn:aws:iam::111122223333:user/division_abc/subdivision_xyz/Bob"}),
        json!({"AWS": "arn:aws:iam::111122223333:role/service-role/My.Role+=,@_-1"}),
        json!({"AWS": "arn:aws:sts::111122223333:assumed-role/Admin/alice@example.com"}),
        json!({"AWS": "arn:aws:iam::111122223333:assumed-role/Admin/s1"}),
        json!({"AWS": "arn:aws-cn:iam::111122223333:root"}),
        json!({"Service": "kms.amazonaws.com"}),
        json!({"Service": ["ec2.amazonaws.com", "rds.us-west-2.amazonaws.com"]}),
        json!({"Federated": "cognito-identity.amazonaws.com"}),
        json!({"Federated": "arn:aws:iam::111122223333:saml-provider/ExampleProvider"}),
        json!({"CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"}),
        json!({"AWS": "111122223333", "Service": "kms.amazonaws.com"}),
    ];
    for p in ok {
        let doc = key(&with("Principal", p.clone()).to_string());
        round_trips(&doc, PolicyKind::Key);
    }
    let bad = [
        (
            "arn:aws:iam::111122223333:root",
            json!("arn:aws:iam::111122223333:root"),
            "Statement[0].Principal",
        ),
        (
            "11112222333",
            json!({"AWS": "11112222333"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "arn:aws:iam::111122223333:rooot",
            json!({"AWS": ["111122223333", "arn:aws:iam::111122223333:rooot"]}),
            "Statement[0].Principal.AWS[1]",
        ),
        (
            "arn:aws:iam::111122223333:user/",
            json!({"AWS": "arn:aws:iam::111122223333:user/"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "arn:aws:iam::111122223333:user/*",
            json!({"AWS": "arn:aws:iam::111122223333:user/*"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "arn:aws:iam::111122223333:role//x",
            json!({"AWS": "arn:aws:iam::111122223333:role//x"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "arn:aws:iam:us-east-1:111122223333:root",
            json!({"AWS": "arn:aws:iam:us-east-1:111122223333:root"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "arn:aws:kms::111122223333:root",
            json!({"AWS": "arn:aws:kms::111122223333:root"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "arn:aws:sts::111122223333:assumed-role/Admin",
            json!({"AWS": "arn:aws:sts::111122223333:assumed-role/Admin"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "arn:aws:sts::111122223333:user/Alice",
            json!({"AWS": "arn:aws:sts::111122223333:user/Alice"}),
            "Statement[0].Principal.AWS",
        ),
        (
            "kms",
            json!({"Service": "kms"}),
            "Statement[0].Principal.Service",
        ),
        (
            "kms..amazonaws.com",
            json!({"Service": "kms..amazonaws.com"}),
            "Statement[0].Principal.Service",
        ),
        (
            "arn:aws:iam::111122223333:role/x",
            json!({"Federated": "arn:aws:iam::111122223333:role/x"}),
            "Statement[0].Principal.Federated",
        ),
        (
            "abc",
            json!({"CanonicalUser": "abc"}),
            "Statement[0].Principal.CanonicalUser",
        ),
    ];
    for (value, p, location) in bad {
        let e = key_err(with("Principal", p));
        assert_eq!(e.location, location, "{value}");
        assert_eq!(e.kind, PolicyErrorKind::InvalidPrincipal(value.into()));
        assert_eq!(
            e.to_string(),
            format!("{location}: invalid principal \"{value}\"")
        );
    }
    let e = key_err(with("Principal", json!({"IAM": "111122223333"})));
    assert_eq!(e.kind, PolicyErrorKind::UnknownPrincipalType("IAM".into()));
    let e = key_err(with("Principal", json!({})));
    assert!(matches!(e.kind, PolicyErrorKind::Missing(_)));
    let e = key_err(with("Principal", json!({"AWS": []})));
    assert_eq!(e.kind, PolicyErrorKind::EmptyArray);
    let e = key_err(with("Principal", json!(["*"])));
    assert!(matches!(e.kind, PolicyErrorKind::WrongType(_)));
}

#[test]
fn conditions_are_validated() {
    let cond = |c: serde_json::Value| with("Condition", c);
    let doc = key(&cond(json!({
        "StringEquals": {"kms:EncryptionContext:Department": "IT"},
        "StringLike": {"kms:EncryptionContext:Project": ["Alpha*", "Beta?"]},
        "Bool": {"aws:SecureTransport": true},
        "NumericGreaterThan": {"aws:MultiFactorAuthAge": "300"},
        "DateLessThan": {"aws:EpochTime": 1735689600},
        "BinaryEquals": {"kms:RecipientAttestation:ImageSha384": "QmluYXJ5"},
        "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/app-*"},
        "IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"},
        "ForAnyValue:StringEqualsIgnoreCase": {"aws:TagKeys": ["a", "b"]},
        "Null": {"aws:TokenIssueTime": "true"}
    }))
    .to_string());
    assert_eq!(doc.statements[0].conditions.len(), 10);
    round_trips(&doc, PolicyKind::Key);

    let e = key_err(cond(json!({"StringEqualz": {"kms:ViaService": "a.b"}})));
    assert_eq!(e.location, "Statement[0].Condition");
    assert_eq!(
        e.kind,
        PolicyErrorKind::UnknownConditionOperator("StringEqualz".into())
    );
    assert_eq!(
        e.to_string(),
        "Statement[0].Condition: unknown condition operator \"StringEqualz\""
    );
    let e = key_err(cond(json!({"NullIfExists": {"aws:TokenIssueTime": true}})));
    assert_eq!(
        e.kind,
        PolicyErrorKind::UnknownConditionOperator("NullIfExists".into())
    );

    let e = key_err(cond(
        json!({"NumericLessThan": {"aws:MultiFactorAuthAge": "soon"}}),
    ));
    assert_eq!(
        e.location,
        "Statement[0].Condition.NumericLessThan.aws:MultiFactorAuthAge"
    );
    assert_eq!(
        e.to_string(),
        "Statement[0].Condition.NumericLessThan.aws:MultiFactorAuthAge: invalid value \"soon\" for NumericLessThan: expected a number"
    );
    let e = key_err(cond(
        json!({"DateGreaterThan": {"aws:CurrentTime": ["2020-01-01T00:00:00Z", "yesterday"]}}),
    ));
    assert_eq!(
        e.location,
        "Statement[0].Condition.DateGreaterThan.aws:CurrentTime[1]"
    );
    assert!(matches!(
        e.kind,
        PolicyErrorKind::InvalidConditionValue { .. }
    ));
    let e = key_err(cond(json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/40"}})));
    assert!(matches!(
        e.kind,
        PolicyErrorKind::InvalidConditionValue { .. }
    ));
    let e = key_err(cond(json!({"Bool": {"aws:SecureTransport": "yes"}})));
    assert!(matches!(
        e.kind,
        PolicyErrorKind::InvalidConditionValue { .. }
    ));
    let e = key_err(cond(json!({"Null": {"aws:SecureTransport": 0}})));
    assert!(matches!(
        e.kind,
        PolicyErrorKind::InvalidConditionValue { .. }
    ));

    for bad in [json!(null), json!({"a": 1}), json!([[1]]), json!([null])] {
        let e = key_err(cond(json!({"StringEquals": {"kms:ViaService": bad}})));
        assert!(matches!(e.kind, PolicyErrorKind::WrongType(_)), "{e}");
    }
    let e = key_err(cond(json!({"StringEquals": {"kms:ViaService": []}})));
    assert_eq!(e.kind, PolicyErrorKind::EmptyArray);
    for bad_key in ["ViaService", ":x", "kms:", "k ms:x"] {
        let e = key_err(cond(json!({"StringEquals": {bad_key: "x"}})));
        assert_eq!(e.kind, PolicyErrorKind::InvalidConditionKey(bad_key.into()));
    }
    let e = key_err(cond(json!({"StringEquals": "kms:ViaService"})));
    assert_eq!(e.location, "Statement[0].Condition.StringEquals");
    let e = key_err(cond(json!(["StringEquals"])));
    assert_eq!(
        e.kind,
        PolicyErrorKind::WrongType("an object of condition operators")
    );
}

#[test]
fn identity_policies_refuse_principals_and_require_resources() {
    // IAM identity policies: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
    // (no Principal in identity-based policies) and
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
    let text = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AllowEncryptDecrypt",
            "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt"],
            "Resource": "arn:aws:kms:us-west-2:111122223333:key/*"
        }]
    });
    let doc = parse_policy(&text.to_string(), PolicyKind::Identity).unwrap();
    assert_eq!(doc.statements[0].principal, None);
    round_trips(&doc, PolicyKind::Identity);

    let e = identity_err(with("Sid", json!("Base")));
    assert_eq!(e.location, "Statement[0].Principal");
    assert_eq!(e.kind, PolicyErrorKind::PrincipalNotAllowed("Principal"));
    let mut st = statement();
    st.as_object_mut().unwrap().remove("Principal");
    st["NotPrincipal"] = json!("*");
    let e = identity_err(json!({"Statement": st}));
    assert_eq!(e.kind, PolicyErrorKind::PrincipalNotAllowed("NotPrincipal"));

    let mut st = statement();
    st.as_object_mut().unwrap().remove("Principal");
    st.as_object_mut().unwrap().remove("Resource");
    let e = identity_err(json!({"Statement": st}));
    assert_eq!(e.kind, PolicyErrorKind::Missing("Resource or NotResource"));

    // Identity policy Sids are letters and digits only.
    let e = identity_err(
        json!({"Statement": {"Sid": "a b", "Effect": "Allow", "Action": "*", "Resource": "*"}}),
    );
    assert_eq!(e.kind, PolicyErrorKind::InvalidSid("a b".into()));
}

// ---- properties ----

/// A strategy for valid key policies built from valid pieces.
fn valid_policy() -> impl Strategy<Value = serde_json::Value> {
    let principal = prop_oneof![
        Just(json!("*")),
        proptest::sample::subsequence(
            vec![
                "*",
                "111122223333",
                "arn:aws:iam::111122223333:root",
                "arn:aws:iam::111122223333:role/path/R1",
                "arn:aws:iam::444455556666:user/Bob",
                "arn:aws:sts::111122223333:assumed-role/R/s",
            ],
            1..4
        )
        .prop_map(|aws| json!({ "AWS": aws })),
        proptest::sample::select(vec!["kms.amazonaws.com", "ec2.us-west-2.amazonaws.com"])
            .prop_map(|s| json!({ "Service": s })),
    ];
    let actions = proptest::sample::subsequence(
        vec![
            "*",
            "kms:*",
            "kms:Encrypt",
            "kms:ReEncrypt*",
            "kms:Get?eyPolicy",
            "kms:Describe*",
        ],
        1..4,
    );
    let condition = proptest::sample::subsequence(
        vec![
            (
                "StringEquals",
                "kms:ViaService",
                json!(["ec2.us-east-1.amazonaws.com"]),
            ),
            ("StringEquals", "kms:CallerAccount", json!("111122223333")),
            (
                "ForAnyValue:StringLike",
                "kms:EncryptionContextKeys",
                json!(["a*", "b"]),
            ),
            ("NumericLessThan", "aws:MultiFactorAuthAge", json!(3600)),
            ("NumericLessThan", "kms:Size", json!(2.5)),
            (
                "DateGreaterThanIfExists",
                "aws:CurrentTime",
                json!("2024-01-01T00:00:00Z"),
            ),
            ("Bool", "kms:GrantIsForAWSResource", json!(true)),
            ("Null", "kms:EncryptionContextKeys", json!("false")),
            ("IpAddress", "aws:SourceIp", json!(["10.0.0.0/8", "::1"])),
            (
                "ArnLike",
                "aws:PrincipalArn",
                json!("arn:aws:iam::*:role/x"),
            ),
        ],
        0..5,
    )
    .prop_map(|items| {
        let mut block = serde_json::Map::new();
        for (op, k, v) in items {
            let entry = block.entry(op).or_insert_with(|| json!({}));
            entry[k] = v;
        }
        serde_json::Value::Object(block)
    });
    let statement = (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        principal,
        actions,
        proptest::option::of(proptest::sample::select(vec![
            "*",
            "arn:aws:kms:us-east-1:111122223333:key/*",
        ])),
        condition,
        proptest::option::of("[A-Za-z0-9 ]{0,12}"),
    )
        .prop_map(|(deny, not_p, not_a, p, a, r, c, sid)| {
            let mut st = serde_json::Map::new();
            st.insert("Effect".into(), json!(if deny { "Deny" } else { "Allow" }));
            st.insert((if not_p { "NotPrincipal" } else { "Principal" }).into(), p);
            st.insert(
                (if not_a { "NotAction" } else { "Action" }).into(),
                json!(a),
            );
            if let Some(r) = r {
                st.insert("Resource".into(), json!(r));
            }
            if c.as_object().is_some_and(|c| !c.is_empty()) {
                st.insert("Condition".into(), c);
            }
            (sid, serde_json::Value::Object(st))
        });
    (
        proptest::option::of(proptest::sample::select(vec!["2012-10-17", "2008-10-17"])),
        proptest::option::of("[ -~]{0,16}"),
        proptest::collection::vec(statement, 1..4),
    )
        .prop_map(|(version, id, statements)| {
            let mut doc = serde_json::Map::new();
            if let Some(v) = version {
                doc.insert("Version".into(), json!(v));
            }
            if let Some(id) = id {
                doc.insert("Id".into(), json!(id));
            }
            let statements: Vec<_> = statements
                .into_iter()
                .enumerate()
                .map(|(i, (sid, mut st))| {
                    if let Some(sid) = sid {
                        // Unique by construction.
                        st["Sid"] = json!(format!("{sid}{i}"));
                    }
                    st
                })
                .collect();
            doc.insert("Statement".into(), json!(statements));
            serde_json::Value::Object(doc)
        })
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_key_policy(&text);
        let _ = parse_policy(&text, PolicyKind::Identity);
    }

    #[test]
    fn parse_never_panics_on_arbitrary_json_like_text(text in r#"[\[\]{}":,0-9a-zA-Z*?/ \\-]{0,300}"#) {
        let _ = parse_key_policy(&text);
    }

    #[test]
    fn mutated_examples_never_panic_and_round_trip_when_accepted(
        which in 0..EXAMPLES.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<u8>()), 1..6),
    ) {
        let mut bytes = EXAMPLES[which].as_bytes().to_vec();
        for (at, op, byte) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => { bytes.remove(i); }
                1 => bytes.insert(i, byte),
                _ => bytes[i] = byte,
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(doc) = parse_key_policy(&text) {
            let again = parse_key_policy(&doc.to_json_string());
            prop_assert_eq!(again, Ok(doc));
        }
    }

    #[test]
    fn generated_valid_policies_parse_and_round_trip(value in valid_policy()) {
        let text = value.to_string();
        let doc = parse_key_policy(&text);
        prop_assert!(doc.is_ok(), "{:?}\n{}", doc, text);
        let doc = doc.unwrap();
        prop_assert_eq!(parse_key_policy(&doc.to_json_string()), Ok(doc.clone()));
        prop_assert_eq!(parse_key_policy(&serde_json::to_string_pretty(&doc.to_json_value()).unwrap()), Ok(doc));
    }
}
