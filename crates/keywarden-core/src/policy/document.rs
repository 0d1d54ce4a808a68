//! The policy AST, and its serialization back to JSON.
//!
//! Values that a policy may write either as one string or as an array are
//! always vectors here; serialization writes arrays, which parse to the same
//! AST. Elements that were absent stay `None`, so nothing is invented.

use serde_json::{Map, Value};

use super::condition::ConditionOperator;
use super::wildcard::{action_matches_within, wildcard_matches, Budget};

/// A parsed, valid policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDocument {
    /// `Version`, if the document names one (AWS treats a missing version
    /// as `2008-10-17`).
    pub version: Option<PolicyVersion>,
    /// `Id`, if present.
    pub id: Option<String>,
    /// The statements, in document order (at least one).
    pub statements: Vec<Statement>,
}

/// The policy language versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVersion {
    /// `2012-10-17`, the current version (policy variables are honoured).
    V2012_10_17,
    /// `2008-10-17`, the original version.
    V2008_10_17,
}

impl PolicyVersion {
    /// The version as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyVersion::V2012_10_17 => "2012-10-17",
            PolicyVersion::V2008_10_17 => "2008-10-17",
        }
    }
}

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `Sid`, unique within the document when present.
    pub sid: Option<String>,
    /// Allow or deny.
    pub effect: Effect,
    /// `Principal` or `NotPrincipal`; always present in key policies, never
    /// in identity policies.
    pub principal: Option<PrincipalMatcher>,
    /// `Action` or `NotAction`.
    pub action: ActionMatcher,
    /// `Resource` or `NotResource`, if present (in a key policy, absent or
    /// `*` both mean the key itself).
    pub resource: Option<ResourceMatcher>,
    /// Every condition (all must hold), one per operator and key, sorted by
    /// operator name and then key: their order in a document means nothing,
    /// and a canonical order makes equal documents equal ASTs.
    pub conditions: Vec<Condition>,
}

/// `Effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// The statement allows what it matches.
    Allow,
    /// The statement denies what it matches; a deny always wins.
    Deny,
}

impl Effect {
    /// The effect as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        }
    }
}

/// `Principal` (matches the listed principals) or `NotPrincipal` (matches
/// every principal except those listed).
#[derive(Debug, Clone, PartialEq)]
pub enum PrincipalMatcher {
    /// `Principal`.
    Principal(Principal),
    /// `NotPrincipal`.
    NotPrincipal(Principal),
}

/// The value of `Principal`/`NotPrincipal`.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// `"*"`: everyone, including anonymous callers.
    Any,
    /// An object of principal types.
    Set(PrincipalSet),
}

/// The principal types of a `Principal` object; at least one is non-empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrincipalSet {
    /// `AWS`: accounts, IAM users and roles, assumed-role sessions.
    pub aws: Vec<AwsPrincipal>,
    /// `Service`: service principals such as `kms.amazonaws.com`.
    pub service: Vec<String>,
    /// `Federated`: identity providers.
    pub federated: Vec<String>,
    /// `CanonicalUser`: canonical user ids.
    pub canonical_user: Vec<String>,
}

/// One entry of `Principal.AWS`.
#[derive(Debug, Clone, PartialEq)]
pub enum AwsPrincipal {
    /// `"*"`: every AWS principal.
    Any,
    /// A bare 12-digit account id, which means the account's root (and, by
    /// delegation, the account's IAM policies).
    Account(String),
    /// An IAM principal ARN.
    Arn(PrincipalArn),
}

/// A principal ARN: the account root, an IAM user or role, or an assumed-role
/// session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalArn {
    /// The whole ARN as written.
    pub arn: String,
    /// The partition (`aws`, ...).
    pub partition: String,
    /// The 12-digit account id.
    pub account: String,
    /// What the ARN names.
    pub kind: PrincipalArnKind,
    /// The resource part after `root`, `user/`, `role/` or `assumed-role/`
    /// (path and name; role and session for assumed roles); empty for root.
    pub name: String,
}

/// What a [`PrincipalArn`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalArnKind {
    /// `arn:...:iam::<account>:root`, the account.
    Root,
    /// `arn:...:iam::<account>:user/<path/><name>`.
    User,
    /// `arn:...:iam::<account>:role/<path/><name>`.
    Role,
    /// `arn:...:sts::<account>:assumed-role/<role>/<session>`.
    AssumedRole,
}

/// `Action` (matches the listed actions) or `NotAction` (every other action).
#[derive(Debug, Clone, PartialEq)]
pub enum ActionMatcher {
    /// `Action`: at least one pattern.
    Action(Vec<String>),
    /// `NotAction`: at least one pattern.
    NotAction(Vec<String>),
}

impl ActionMatcher {
    /// Whether the statement applies to `action` (e.g. `kms:Encrypt`).
    pub fn matches(&self, action: &str) -> bool {
        self.matches_within(action, &Budget::unlimited())
    }

    /// [`ActionMatcher::matches`] within a decision's budget.
    pub(crate) fn matches_within(&self, action: &str, budget: &Budget) -> bool {
        let any = |patterns: &[String]| {
            patterns
                .iter()
                .any(|p| action_matches_within(p, action, budget))
        };
        match self {
            ActionMatcher::Action(patterns) => any(patterns),
            ActionMatcher::NotAction(patterns) => !any(patterns),
        }
    }
}

/// `Resource` or `NotResource`.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceMatcher {
    /// `Resource`: `*` or ARN patterns, at least one.
    Resource(Vec<String>),
    /// `NotResource`: `*` or ARN patterns, at least one.
    NotResource(Vec<String>),
}

impl ResourceMatcher {
    /// Whether the statement applies to the resource `arn`.
    pub fn matches(&self, arn: &str) -> bool {
        let any = |patterns: &[String]| patterns.iter().any(|p| wildcard_matches(p, arn));
        match self {
            ResourceMatcher::Resource(patterns) => any(patterns),
            ResourceMatcher::NotResource(patterns) => !any(patterns),
        }
    }
}

/// One condition: an operator applied to one context key and its values
/// (the condition holds if any value matches, per the operator's rules).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The operator.
    pub operator: ConditionOperator,
    /// The context key, e.g. `kms:ViaService` (matched case-insensitively
    /// by the evaluator, as AWS does).
    pub key: String,
    /// The policy's values, at least one, already checked for the operator.
    pub values: Vec<ConditionValue>,
}

/// A condition value as written (the JSON scalar type is kept, so the
/// document serializes back as it was).
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionValue {
    /// A string.
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
}

impl ConditionValue {
    fn to_value(&self) -> Value {
        match self {
            ConditionValue::String(s) => Value::String(s.clone()),
            ConditionValue::Bool(b) => Value::Bool(*b),
            ConditionValue::Number(n) => Value::Number(n.clone()),
        }
    }
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

impl Principal {
    fn to_value(&self) -> Value {
        match self {
            Principal::Any => Value::String("*".into()),
            Principal::Set(set) => {
                let mut map = Map::new();
                if !set.aws.is_empty() {
                    let aws = set
                        .aws
                        .iter()
                        .map(|p| {
                            Value::String(match p {
                                AwsPrincipal::Any => "*".into(),
                                AwsPrincipal::Account(id) => id.clone(),
                                AwsPrincipal::Arn(arn) => arn.arn.clone(),
                            })
                        })
                        .collect();
                    map.insert("AWS".into(), Value::Array(aws));
                }
                for (name, items) in [
                    ("Service", &set.service),
                    ("Federated", &set.federated),
                    ("CanonicalUser", &set.canonical_user),
                ] {
                    if !items.is_empty() {
                        map.insert(name.into(), strings(items));
                    }
                }
                Value::Object(map)
            }
        }
    }
}

impl PolicyDocument {
    /// The document as a JSON value that [`super::parse_policy`] parses back
    /// to an equal document.
    pub fn to_json_value(&self) -> Value {
        let mut doc = Map::new();
        if let Some(version) = self.version {
            doc.insert("Version".into(), Value::String(version.as_str().into()));
        }
        if let Some(id) = &self.id {
            doc.insert("Id".into(), Value::String(id.clone()));
        }
        let statements = self.statements.iter().map(Statement::to_value).collect();
        doc.insert("Statement".into(), Value::Array(statements));
        Value::Object(doc)
    }

    /// The document as compact JSON text, ASCII only: characters from
    /// U+007F up are written as `\u` escapes, because a string value may
    /// hold characters (from escapes) that a key policy's text may not
    /// contain raw. (Escaping can make the text longer than the original.)
    pub fn to_json_string(&self) -> String {
        let text = self.to_json_value().to_string();
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if (c as u32) < 0x7F {
                out.push(c);
            } else {
                // Non-ASCII only ever occurs inside strings in serde_json's
                // output, where an escape means the same character.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out
    }
}

impl Statement {
    fn to_value(&self) -> Value {
        let mut st = Map::new();
        if let Some(sid) = &self.sid {
            st.insert("Sid".into(), Value::String(sid.clone()));
        }
        st.insert("Effect".into(), Value::String(self.effect.as_str().into()));
        match &self.principal {
            Some(PrincipalMatcher::Principal(p)) => {
                st.insert("Principal".into(), p.to_value());
            }
            Some(PrincipalMatcher::NotPrincipal(p)) => {
                st.insert("NotPrincipal".into(), p.to_value());
            }
            None => {}
        }
        let (name, items) = match &self.action {
            ActionMatcher::Action(a) => ("Action", a),
            ActionMatcher::NotAction(a) => ("NotAction", a),
        };
        st.insert(name.into(), strings(items));
        match &self.resource {
            Some(ResourceMatcher::Resource(r)) => {
                st.insert("Resource".into(), strings(r));
            }
            Some(ResourceMatcher::NotResource(r)) => {
                st.insert("NotResource".into(), strings(r));
            }
            None => {}
        }
        if !self.conditions.is_empty() {
            // Conditions are sorted by operator name, so each operator's
            // block is built from adjacent entries.
            let mut block = Map::new();
            for c in &self.conditions {
                let entry = block
                    .entry(c.operator.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(keys) = entry {
                    keys.insert(
                        c.key.clone(),
                        Value::Array(c.values.iter().map(ConditionValue::to_value).collect()),
                    );
                }
            }
            st.insert("Condition".into(), Value::Object(block));
        }
        Value::Object(st)
    }
}
