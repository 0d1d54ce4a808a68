//! The validator: strict JSON to [`PolicyDocument`], refusing what AWS
//! refuses, with the location of the first problem found.

use std::collections::HashSet;

use super::condition::ConditionOperator;
use super::document::{
    ActionMatcher, AwsPrincipal, Condition, ConditionValue, Effect, PolicyDocument, PolicyVersion,
    Principal, PrincipalArn, PrincipalArnKind, PrincipalMatcher, PrincipalSet, ResourceMatcher,
    Statement,
};
use super::json::{self, Json};
use super::{PolicyError, PolicyErrorKind as E, PolicyKind};

type Result<T> = std::result::Result<T, PolicyError>;

fn err<T>(location: &str, kind: E) -> Result<T> {
    Err(PolicyError::new(location, kind))
}

fn child(location: &str, name: &str) -> String {
    if location.is_empty() {
        name.to_owned()
    } else {
        format!("{location}.{name}")
    }
}

pub(crate) fn parse_document(text: &str, kind: PolicyKind) -> Result<PolicyDocument> {
    // Size and character set of key policies:
    // https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html
    // ("Key policy format").
    let max = kind.max_bytes();
    if text.len() > max {
        return err(
            "",
            E::TooLarge {
                size: text.len(),
                max,
            },
        );
    }
    if kind == PolicyKind::Key {
        if let Some(c) = text.chars().find(|&c| !key_policy_char(c)) {
            return err("", E::InvalidCharacter(c as u32));
        }
    }
    let Json::Object(elements) = json::read(text)? else {
        return err("", E::WrongType("a JSON object"));
    };

    // Top-level elements: Version, Id, Statement.
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_version.html
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_id.html
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_statement.html
    let (mut version, mut id, mut statement) = (None, None, None);
    for (name, value) in &elements {
        match name.as_str() {
            "Version" => {
                version = Some(match string(value, "Version")? {
                    "2012-10-17" => PolicyVersion::V2012_10_17,
                    "2008-10-17" => PolicyVersion::V2008_10_17,
                    other => return err("Version", E::InvalidVersion(other.to_owned())),
                })
            }
            "Id" => id = Some(string(value, "Id")?.to_owned()),
            "Statement" => statement = Some(value),
            other => return err("", E::UnknownElement(other.to_owned())),
        }
    }
    let Some(statement) = statement else {
        return err("", E::Missing("Statement"));
    };
    let items: Vec<(String, &Json)> = match statement {
        Json::Object(_) => vec![("Statement".to_owned(), statement)],
        Json::Array(items) if items.is_empty() => return err("Statement", E::EmptyArray),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| (format!("Statement[{i}]"), item))
            .collect(),
        _ => {
            return err(
                "Statement",
                E::WrongType("a statement object or an array of them"),
            )
        }
    };
    let mut sids = HashSet::new();
    let mut statements = Vec::with_capacity(items.len());
    for (location, item) in items {
        let st = parse_statement(item, &location, kind)?;
        if let Some(sid) = &st.sid {
            if !sids.insert(sid.clone()) {
                return err(&child(&location, "Sid"), E::DuplicateSid(sid.clone()));
            }
        }
        statements.push(st);
    }
    Ok(PolicyDocument {
        version,
        id,
        statements,
    })
}

/// Tab, line feed, carriage return, printable ASCII and printable Latin-1.
fn key_policy_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{A0}'..='\u{FF}')
}

fn string<'a>(value: &'a Json, location: &str) -> Result<&'a str> {
    match value {
        Json::String(s) => Ok(s),
        _ => err(location, E::WrongType("a string")),
    }
}

/// A string or a non-empty array of strings, each with its location.
fn string_list(value: &Json, location: &str) -> Result<Vec<(String, String)>> {
    match value {
        Json::String(s) => Ok(vec![(s.clone(), location.to_owned())]),
        Json::Array(items) if items.is_empty() => err(location, E::EmptyArray),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = format!("{location}[{i}]");
                Ok((string(item, &at)?.to_owned(), at))
            })
            .collect(),
        _ => err(location, E::WrongType("a string or an array of strings")),
    }
}

/// Picks at most one of two mutually exclusive elements.
fn one_of<'a>(
    location: &str,
    a: (&'static str, Option<&'a Json>),
    b: (&'static str, Option<&'a Json>),
) -> Result<Option<(bool, &'a Json)>> {
    match (a.1, b.1) {
        (Some(_), Some(_)) => err(location, E::Conflict(a.0, b.0)),
        (Some(v), None) => Ok(Some((false, v))),
        (None, Some(v)) => Ok(Some((true, v))),
        (None, None) => Ok(None),
    }
}

// Statement elements:
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html
// (Sid, Effect, Principal/NotPrincipal, Action/NotAction, Resource/NotResource,
// Condition), and for key policies
// https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html
// ("Elements in a key policy": Principal required, Sid may contain spaces).
fn parse_statement(value: &Json, location: &str, kind: PolicyKind) -> Result<Statement> {
    let Json::Object(elements) = value else {
        return err(location, E::WrongType("a statement object"));
    };
    let mut sid = None;
    let mut effect = None;
    let (mut principal, mut not_principal) = (None, None);
    let (mut action, mut not_action) = (None, None);
    let (mut resource, mut not_resource) = (None, None);
    let mut condition = None;
    for (name, value) in elements {
        let slot = match name.as_str() {
            "Sid" => &mut sid,
            "Effect" => &mut effect,
            "Principal" => &mut principal,
            "NotPrincipal" => &mut not_principal,
            "Action" => &mut action,
            "NotAction" => &mut not_action,
            "Resource" => &mut resource,
            "NotResource" => &mut not_resource,
            "Condition" => &mut condition,
            other => return err(location, E::UnknownElement(other.to_owned())),
        };
        *slot = Some(value);
    }

    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_sid.html
    let sid = match sid {
        Some(v) => {
            let at = child(location, "Sid");
            let s = string(v, &at)?;
            if kind == PolicyKind::Identity && !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return err(&at, E::InvalidSid(s.to_owned()));
            }
            Some(s.to_owned())
        }
        None => None,
    };

    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_effect.html
    let effect = match effect {
        Some(v) => {
            let at = child(location, "Effect");
            match string(v, &at)? {
                "Allow" => Effect::Allow,
                "Deny" => Effect::Deny,
                other => return err(&at, E::InvalidEffect(other.to_owned())),
            }
        }
        None => return err(location, E::Missing("Effect")),
    };

    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html
    let principal = match one_of(
        location,
        ("Principal", principal),
        ("NotPrincipal", not_principal),
    )? {
        Some((negated, v)) => {
            let name = if negated { "NotPrincipal" } else { "Principal" };
            let at = child(location, name);
            if kind == PolicyKind::Identity {
                return err(&at, E::PrincipalNotAllowed(name));
            }
            let p = parse_principal(v, &at)?;
            Some(if negated {
                PrincipalMatcher::NotPrincipal(p)
            } else {
                PrincipalMatcher::Principal(p)
            })
        }
        None if kind == PolicyKind::Key => {
            return err(location, E::Missing("Principal or NotPrincipal"))
        }
        None => None,
    };

    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html
    let action = match one_of(location, ("Action", action), ("NotAction", not_action))? {
        Some((negated, v)) => {
            let at = child(location, if negated { "NotAction" } else { "Action" });
            let mut patterns = Vec::new();
            for (a, at) in string_list(v, &at)? {
                if !valid_action(&a) {
                    return err(&at, E::InvalidAction(a));
                }
                patterns.push(a);
            }
            if negated {
                ActionMatcher::NotAction(patterns)
            } else {
                ActionMatcher::Action(patterns)
            }
        }
        None => return err(location, E::Missing("Action or NotAction")),
    };

    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
    // (required in identity policies); key policies: `*` (this key) or ARNs.
    let resource = match one_of(
        location,
        ("Resource", resource),
        ("NotResource", not_resource),
    )? {
        Some((negated, v)) => {
            let at = child(location, if negated { "NotResource" } else { "Resource" });
            let mut patterns = Vec::new();
            for (r, at) in string_list(v, &at)? {
                if !valid_resource(&r) {
                    return err(&at, E::InvalidResource(r));
                }
                patterns.push(r);
            }
            Some(if negated {
                ResourceMatcher::NotResource(patterns)
            } else {
                ResourceMatcher::Resource(patterns)
            })
        }
        None if kind == PolicyKind::Identity => {
            return err(location, E::Missing("Resource or NotResource"))
        }
        None => None,
    };

    let conditions = match condition {
        Some(v) => parse_conditions(v, &child(location, "Condition"))?,
        None => Vec::new(),
    };

    Ok(Statement {
        sid,
        effect,
        principal,
        action,
        resource,
        conditions,
    })
}

fn parse_principal(value: &Json, location: &str) -> Result<Principal> {
    let types = match value {
        Json::String(s) if s == "*" => return Ok(Principal::Any),
        Json::String(s) => return err(location, E::InvalidPrincipal(s.clone())),
        Json::Object(types) => types,
        _ => {
            return err(
                location,
                E::WrongType("\"*\" or an object of principal types"),
            )
        }
    };
    if types.is_empty() {
        return err(
            location,
            E::Missing("a principal type (AWS, Service, Federated or CanonicalUser)"),
        );
    }
    let mut set = PrincipalSet::default();
    for (name, value) in types {
        let at = child(location, name);
        let check = |valid: fn(&str) -> bool| -> Result<Vec<String>> {
            string_list(value, &at)?
                .into_iter()
                .map(|(s, at)| {
                    if valid(&s) {
                        Ok(s)
                    } else {
                        err(&at, E::InvalidPrincipal(s))
                    }
                })
                .collect()
        };
        match name.as_str() {
            "AWS" => {
                for (s, at) in string_list(value, &at)? {
                    match parse_aws_principal(&s) {
                        Some(p) => set.aws.push(p),
                        None => return err(&at, E::InvalidPrincipal(s)),
                    }
                }
            }
            "Service" => set.service = check(dns_name)?,
            "Federated" => {
                set.federated = check(|s| dns_name(s) || provider_arn(s))?;
            }
            "CanonicalUser" => {
                set.canonical_user =
                    check(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))?;
            }
            other => return err(location, E::UnknownPrincipalType(other.to_owned())),
        }
    }
    Ok(Principal::Set(set))
}

/// `*`, a 12-digit account id, or an IAM principal ARN (no wildcards: AWS
/// matches principals exactly).
fn parse_aws_principal(s: &str) -> Option<AwsPrincipal> {
    if s == "*" {
        return Some(AwsPrincipal::Any);
    }
    if account_id(s) {
        return Some(AwsPrincipal::Account(s.to_owned()));
    }
    let mut parts = s.splitn(6, ':');
    let (arn, partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if arn != "arn" || !partition_name(partition) || !region.is_empty() || !account_id(account) {
        return None;
    }
    let (kind, name) = match (service, resource) {
        ("iam", "root") => (PrincipalArnKind::Root, ""),
        ("iam", r) if r.starts_with("user/") => (PrincipalArnKind::User, &r[5..]),
        ("iam", r) if r.starts_with("role/") => (PrincipalArnKind::Role, &r[5..]),
        // Sessions are STS principals; the `iam` spelling is accepted too.
        ("sts" | "iam", r) if r.starts_with("assumed-role/") => {
            (PrincipalArnKind::AssumedRole, &r[13..])
        }
        _ => return None,
    };
    let valid = match kind {
        PrincipalArnKind::Root => true,
        PrincipalArnKind::User | PrincipalArnKind::Role => iam_path_and_name(name),
        PrincipalArnKind::AssumedRole => match name.split_once('/') {
            Some((role, session)) => iam_name(role) && iam_name(session),
            None => false,
        },
    };
    valid.then(|| {
        AwsPrincipal::Arn(PrincipalArn {
            arn: s.to_owned(),
            partition: partition.to_owned(),
            account: account.to_owned(),
            kind,
            name: name.to_owned(),
        })
    })
}

fn account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn partition_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An IAM user or role name: letters, digits and `+=,.@_-`.
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html
fn iam_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// `name` or `path/.../name`, every segment a valid name.
fn iam_path_and_name(s: &str) -> bool {
    s.split('/').all(iam_name)
}

/// A service principal such as `kms.amazonaws.com`: two or more DNS labels.
fn dns_name(s: &str) -> bool {
    s.len() <= 253
        && s.contains('.')
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// A SAML or OIDC provider ARN for `Federated`.
fn provider_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && partition_name(parts[1])
        && parts[2] == "iam"
        && account_id(parts[4])
        && (parts[5].starts_with("saml-provider/") || parts[5].starts_with("oidc-provider/"))
        && parts[5].len() > 14
}

/// `*`, or `service:Action` with `*`/`?` only in the action part; the
/// service prefix is letters, digits and `-` (compared case-insensitively,
/// as AWS does).
fn valid_action(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let Some((service, name)) = s.split_once(':') else {
        return false;
    };
    !service.is_empty()
        && service
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
}

/// `*` or an ARN pattern `arn:partition:service:region:account:resource`
/// (region and account may be empty; wildcards allowed).
fn valid_resource(s: &str) -> bool {
    if s == "*" {
        return true;
    }
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && !parts[2].is_empty()
        && !parts[5].is_empty()
}

// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition.html
// A Condition is an object of operators, each an object of context keys, each
// a value or an array of values.
fn parse_conditions(value: &Json, location: &str) -> Result<Vec<Condition>> {
    let Json::Object(operators) = value else {
        return err(location, E::WrongType("an object of condition operators"));
    };
    let mut conditions = Vec::new();
    for (op_name, block) in operators {
        let Some(operator) = ConditionOperator::parse(op_name) else {
            return err(location, E::UnknownConditionOperator(op_name.clone()));
        };
        let op_at = child(location, op_name);
        let Json::Object(keys) = block else {
            return err(&op_at, E::WrongType("an object of condition keys"));
        };
        for (key, values) in keys {
            let at = child(&op_at, key);
            if !valid_condition_key(key) {
                return err(&op_at, E::InvalidConditionKey(key.clone()));
            }
            let items: Vec<(&Json, String)> = match values {
                Json::Array(items) if items.is_empty() => return err(&at, E::EmptyArray),
                Json::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v, format!("{at}[{i}]")))
                    .collect(),
                scalar => vec![(scalar, at.clone())],
            };
            let mut parsed = Vec::with_capacity(items.len());
            for (v, at) in items {
                let value = match v {
                    Json::String(s) => ConditionValue::String(s.clone()),
                    Json::Bool(b) => ConditionValue::Bool(*b),
                    Json::Number(n) => ConditionValue::Number(n.clone()),
                    _ => {
                        return err(
                            &at,
                            E::WrongType("a string, number or boolean, or an array of them"),
                        )
                    }
                };
                if let Err(expected) = operator.check_value(&value) {
                    return err(
                        &at,
                        E::InvalidConditionValue {
                            operator: op_name.clone(),
                            value: v.to_compact(),
                            expected,
                        },
                    );
                }
                parsed.push(value);
            }
            conditions.push(Condition {
                operator,
                key: key.clone(),
                values: parsed,
            });
        }
    }
    // Canonical order (see `Statement::conditions`): by operator name, then key.
    conditions
        .sort_by(|a, b| (a.operator.to_string(), &a.key).cmp(&(b.operator.to_string(), &b.key)));
    Ok(conditions)
}

/// `prefix:name`, e.g. `aws:SourceIp`, `kms:EncryptionContext:Department`.
fn valid_condition_key(s: &str) -> bool {
    match s.split_once(':') {
        Some((prefix, name)) => {
            !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !name.is_empty()
                && s.len() <= 256
        }
        None => false,
    }
}
