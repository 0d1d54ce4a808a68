//! The policy evaluator: which statements of a parsed policy apply to a
//! request, and the whole KMS decision over a key policy, the caller's
//! identity policies and grants.
//!
//! Pure and allocation-light: a statement is checked cheapest part first
//! (action, principal, resource, conditions); matching plain ASCII patterns
//! allocates nothing, and only values with policy variables are copied.
//!
//! Sources, cited where each rule is implemented:
//! - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html>
//! - <https://docs.aws.amazon.com/kms/latest/developerguide/determining-access.html>
//! - <https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html>
//! - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html>
//! - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html>
//! - <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html>

use std::borrow::Cow;
use std::net::IpAddr;

use time::format_description::well_known::{Iso8601, Rfc3339};

use super::condition::{OperatorFamily, OperatorKind, SetQualifier};
use super::context::{PrincipalInfo, PrincipalKind, RequestContext};
use super::document::{
    AwsPrincipal, Condition, ConditionValue, Effect, PolicyDocument, PolicyVersion, Principal,
    PrincipalArn, PrincipalArnKind, PrincipalMatcher, ResourceMatcher, Statement,
};
use super::wildcard::{symbols_match, wildcard_matches_within, Budget, Sym, DECISION_STEPS};
use super::PolicyKind;

/// One request, as the evaluator sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Who is asking.
    pub principal: &'a PrincipalInfo,
    /// The action, e.g. `kms:Decrypt`.
    pub action: &'a str,
    /// The key ARN, or `*` for requests without a key (CreateKey, ListKeys).
    pub resource: &'a str,
    /// The request's condition keys.
    pub context: &'a RequestContext,
}

/// One document's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A statement allows the request and none denies it.
    Allow,
    /// A statement denies the request.
    Deny,
    /// No statement applies.
    NotApplicable,
}

/// The whole KMS decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, and by what.
    Allow(AllowedBy),
    /// A statement denies the request.
    ExplicitDeny(PolicySource),
    /// Nothing allows the request.
    ImplicitDeny(ImplicitReason),
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// What allowed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedBy {
    /// The key policy names the principal itself (or everyone).
    KeyPolicy,
    /// The key policy delegates to the principal's account, whose identity
    /// policies (or the root's implicit permissions) allow.
    IdentityPolicy,
    /// A grant.
    Grant,
}

/// Where a denying statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The key policy (a resource-based policy).
    KeyPolicy,
    /// One of the caller's identity policies.
    IdentityPolicy,
}

/// Why nothing allowed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImplicitReason {
    /// The key policy lets the principal's account decide (or the request
    /// has no key), and no identity policy allows.
    NoIdentityPolicyAllows,
    /// The key policy neither names the principal nor delegates to its
    /// account.
    NoResourcePolicyAllows,
}

/// The inputs of a KMS decision besides the request.
#[derive(Debug, Clone, Copy)]
pub struct KmsEvaluation<'a> {
    /// The key's policy; `None` for requests without a key.
    pub key_policy: Option<&'a PolicyDocument>,
    /// The account that owns the key; `None` for requests without a key.
    pub key_account: Option<&'a str>,
    /// The caller's identity policies (none for root and products).
    pub identity_policies: &'a [&'a PolicyDocument],
    /// The caller is its account's root, which has every identity
    /// permission in its own account (it has no identity policies).
    pub principal_is_root: bool,
    /// A grant on the key allows this request.
    pub grant_allows: bool,
}

/// How a key policy statement names the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    /// Not at all.
    No,
    /// Through its account (`111122223333` or `arn:aws:iam::111122223333:root`):
    /// delegation to the account's identity policies.
    Account,
    /// Itself: its user or role ARN, its session ARN, its service name, or `*`.
    Directly,
}

/// One document's verdict on a request.
///
/// Deny wins over Allow within the document. For key policies a statement
/// that names the caller's account counts as allowing here; what that
/// delegation means for the decision is [`evaluate_kms`]'s business.
pub fn evaluate_document(doc: &PolicyDocument, kind: PolicyKind, req: &Request) -> Outcome {
    let budget = Budget::new(DECISION_STEPS);
    let scan = scan(doc, kind, req, &budget);
    // A document too costly to evaluate denies (see `evaluate_kms`).
    if scan.deny || budget.exhausted() {
        Outcome::Deny
    } else if scan.allow > Named::No {
        Outcome::Allow
    } else {
        Outcome::NotApplicable
    }
}

/// Whether an `Allow` statement of a key policy names `who`, itself or its
/// account (or everyone), whatever its actions, resources and conditions.
/// A key is shared with another account exactly when its policy says so:
/// Keywarden shows a key to a caller of another account only then
/// (docs/access-control.md, "Cross-account use").
pub fn key_policy_names(doc: &PolicyDocument, who: &PrincipalInfo) -> bool {
    doc.statements.iter().any(|st| {
        st.effect == Effect::Allow
            && st
                .principal
                .as_ref()
                .is_some_and(|p| principal_applies(p, st.effect, who) != Named::No)
    })
}

struct Scan {
    deny: bool,
    /// The strongest way an applicable Allow statement names the caller
    /// (`Directly` for identity policies, whose statements name no one).
    allow: Named,
}

fn scan(doc: &PolicyDocument, kind: PolicyKind, req: &Request, budget: &Budget) -> Scan {
    let vars = doc.version == Some(PolicyVersion::V2012_10_17);
    let mut allow = Named::No;
    for st in &doc.statements {
        // Skip Allow statements that cannot improve on what is known; a
        // Deny must still be looked for.
        if st.effect == Effect::Allow && allow == Named::Directly {
            continue;
        }
        let named = applies(st, kind, req, vars, budget);
        if named == Named::No {
            continue;
        }
        match st.effect {
            Effect::Deny => return Scan { deny: true, allow },
            Effect::Allow => allow = allow.max(named),
        }
    }
    Scan { deny: false, allow }
}

/// Whether `st` applies to the request, and how it names the caller.
fn applies(st: &Statement, kind: PolicyKind, req: &Request, vars: bool, budget: &Budget) -> Named {
    if !st.action.matches_within(req.action, budget) {
        return Named::No;
    }
    let named = match (&st.principal, kind) {
        (Some(p), PolicyKind::Key) => principal_applies(p, st.effect, req.principal),
        // The parser refuses principals in identity policies and requires
        // them in key policies; a hand-built AST without one names no one.
        (None, PolicyKind::Key) => Named::No,
        (_, PolicyKind::Identity) => Named::Directly,
    };
    if named == Named::No {
        return Named::No;
    }
    if !resource_applies(st.resource.as_ref(), kind, req, vars, budget) {
        return Named::No;
    }
    if !st
        .conditions
        .iter()
        .all(|c| condition_holds(c, req, vars, budget))
    {
        return Named::No;
    }
    named
}

// ---- principals ----
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notprincipal.html

/// Which of the caller's identities a `Principal` value lists.
#[derive(Default)]
struct Listed {
    /// The caller itself (or everyone).
    itself: bool,
    /// The caller's account.
    account: bool,
}

fn principal_applies(p: &PrincipalMatcher, effect: Effect, who: &PrincipalInfo) -> Named {
    match p {
        PrincipalMatcher::Principal(p) => {
            let l = listed(p, who);
            if l.itself {
                Named::Directly
            } else if l.account {
                Named::Account
            } else {
                Named::No
            }
        }
        PrincipalMatcher::NotPrincipal(p) => {
            let l = listed(p, who);
            // With Deny, AWS exempts a principal only when both it and its
            // account are listed (the notprincipal page: "you must also
            // include the account ARN"); the root is its account. With
            // Allow, any listing excludes: each reading errs towards less
            // access.
            let exempt = match (effect, &who.kind) {
                (Effect::Deny, PrincipalKind::Root) => l.account || l.itself,
                (Effect::Deny, _) => l.itself && l.account,
                (Effect::Allow, _) => l.itself || l.account,
            };
            if exempt {
                Named::No
            } else {
                Named::Directly
            }
        }
    }
}

fn listed(p: &Principal, who: &PrincipalInfo) -> Listed {
    let set = match p {
        Principal::Any => {
            return Listed {
                itself: true,
                account: true,
            }
        }
        Principal::Set(set) => set,
    };
    let mut l = Listed::default();
    for entry in &set.aws {
        match entry {
            AwsPrincipal::Any => {
                l.itself = true;
                l.account = true;
            }
            AwsPrincipal::Account(id) => l.account |= *id == who.account,
            AwsPrincipal::Arn(arn) => match arn.kind {
                PrincipalArnKind::Root => l.account |= arn.account == who.account,
                PrincipalArnKind::User => l.itself |= arn.arn == who.arn,
                // A role names its sessions, and a product acting as the role.
                PrincipalArnKind::Role => {
                    l.itself |= arn.arn == who.arn
                        || matches!(&who.kind, PrincipalKind::AssumedRole { role_arn, .. } if *role_arn == arn.arn)
                }
                PrincipalArnKind::AssumedRole => l.itself |= same_session(arn, &who.arn),
            },
        }
    }
    if let PrincipalKind::Service { name } = &who.kind {
        l.itself |= set.service.iter().any(|s| s == name);
    }
    l
}

/// Whether a policy's assumed-role ARN (spelled with `sts` or `iam`) names
/// the session `arn`.
fn same_session(policy: &PrincipalArn, arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("sts" | "iam"), Some(""), Some(account), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition == policy.partition
        && account == policy.account
        && res.strip_prefix("assumed-role/") == Some(policy.name.as_str())
}

// ---- resources ----
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html

fn resource_applies(
    r: Option<&ResourceMatcher>,
    kind: PolicyKind,
    req: &Request,
    vars: bool,
    budget: &Budget,
) -> bool {
    let any = |patterns: &[String]| {
        patterns.iter().any(|p| {
            // In a key policy `*` means "this key", which is what the policy
            // is evaluated for.
            if p == "*" {
                return true;
            }
            match pattern(p, vars, req, budget) {
                Resolved::Plain(p) => wildcard_matches_within(p, req.resource, budget),
                Resolved::Symbols(s) => symbols_match(&s, req.resource, budget),
                Resolved::Unresolved => false,
            }
        })
    };
    match r {
        Some(ResourceMatcher::Resource(patterns)) => any(patterns),
        Some(ResourceMatcher::NotResource(patterns)) => !any(patterns),
        // Key policies may omit Resource (meaning the key); identity
        // policies never do once parsed.
        None => kind == PolicyKind::Key,
    }
}

// ---- condition keys ----

/// The request's values of a condition key.
#[derive(Clone, Copy)]
enum Values<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl<'a> Values<'a> {
    fn is_empty(&self) -> bool {
        matches!(self, Values::Many([]))
    }

    fn iter(self) -> impl Iterator<Item = &'a str> {
        let (one, many) = match self {
            Values::One(s) => (Some(s), &[][..]),
            Values::Many(v) => (None, v),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }

    /// The value of a single-valued key; `None` for none or several.
    fn single(self) -> Option<&'a str> {
        match self {
            Values::One(s) => Some(s),
            Values::Many([s]) => Some(s.as_str()),
            Values::Many(_) => None,
        }
    }
}

/// A condition key's values: those describing the principal come from the
/// authenticated [`PrincipalInfo`], everything else from the context.
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
fn lookup<'a>(req: &Request<'a>, key: &str) -> Option<Values<'a>> {
    let who = req.principal;
    let is = |name: &str| key.eq_ignore_ascii_case(name);
    const TAG: &str = "aws:PrincipalTag/";
    if key.len() > TAG.len()
        && key.is_char_boundary(TAG.len())
        && key[..TAG.len()].eq_ignore_ascii_case(TAG)
    {
        let tag = &key[TAG.len()..];
        return who
            .tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(tag))
            .map(|(_, v)| Values::One(v));
    }
    if is("aws:username") {
        return who.username.as_deref().map(Values::One);
    }
    if is("aws:userid") {
        return Some(Values::One(&who.user_id));
    }
    if is("aws:PrincipalAccount") || is("kms:CallerAccount") {
        return Some(Values::One(&who.account));
    }
    if is("aws:PrincipalArn") {
        // For a role session this is the role's ARN, not the session's.
        return Some(Values::One(match &who.kind {
            PrincipalKind::AssumedRole { role_arn, .. } => role_arn,
            _ => &who.arn,
        }));
    }
    if is("aws:PrincipalType") {
        return match &who.kind {
            PrincipalKind::Root => Some(Values::One("Account")),
            PrincipalKind::User => Some(Values::One("User")),
            PrincipalKind::AssumedRole { .. } => Some(Values::One("AssumedRole")),
            PrincipalKind::Service { .. } => None,
        };
    }
    if is("aws:PrincipalServiceName") {
        return match &who.kind {
            PrincipalKind::Service { name } => Some(Values::One(name)),
            _ => None,
        };
    }
    req.context.get(key).map(Values::Many)
}

// ---- policy variables ----
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html

/// A policy string after substituting its variables.
enum Resolved<'p> {
    /// No variables: the text as written (`*` and `?` are wildcards where
    /// the operator has them).
    Plain(&'p str),
    /// With variables: inserted text is literal, the policy's own `*`/`?`
    /// stay wildcards.
    Symbols(Vec<Sym>),
    /// A variable names a key the request lacks (or has several values
    /// of) and has no default: the value matches nothing.
    Unresolved,
}

/// Substitutes the variables of `text` (only in 2012-10-17 policies; in
/// older ones `${...}` is literal text).
fn pattern<'p>(text: &'p str, vars: bool, req: &Request, budget: &Budget) -> Resolved<'p> {
    if !vars || !text.contains("${") {
        return Resolved::Plain(text);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        push_pattern(&mut out, &rest[..start]);
        let body_and_more = &rest[start + 2..];
        let Some(end) = variable_end(body_and_more) else {
            return Resolved::Unresolved;
        };
        let body = body_and_more[..end].trim();
        match body {
            "*" | "?" | "$" => out.push(Sym::Char(body.chars().next().unwrap_or('$'))),
            _ => {
                let (name, default) = match body.split_once(',') {
                    Some((name, default)) => match unquote(default.trim()) {
                        Some(d) => (name.trim(), Some(d)),
                        None => return Resolved::Unresolved,
                    },
                    None => (body, None),
                };
                let inserted = match (lookup(req, name).and_then(Values::single), &default) {
                    (Some(v), _) => v,
                    (None, Some(d)) => d.as_str(),
                    (None, None) => return Resolved::Unresolved,
                };
                // What variables insert is bounded by the decision's budget,
                // which also bounds the memory resolved patterns hold.
                if !budget.spend_copy(inserted.len()) {
                    return Resolved::Unresolved;
                }
                out.extend(inserted.chars().map(Sym::Char));
            }
        }
        rest = &body_and_more[end + 1..];
    }
    push_pattern(&mut out, rest);
    Resolved::Symbols(out)
}

/// Where the variable body starting at `s` ends (the index of its `}`),
/// skipping a quoted default value.
fn variable_end(s: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// `'text'` with `''` standing for one quote.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

fn push_pattern(out: &mut Vec<Sym>, text: &str) {
    out.extend(text.chars().map(|c| match c {
        '*' => Sym::Any,
        '?' => Sym::One,
        c => Sym::Char(c),
    }));
}

// ---- conditions ----
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
// https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html

/// The positive comparison behind an operator, and whether the operator
/// negates it (`StringNotEquals` is "no value `StringEquals`").
fn positive(kind: OperatorKind) -> (OperatorKind, bool) {
    use OperatorKind as K;
    match kind {
        K::StringNotEquals => (K::StringEquals, true),
        K::StringNotEqualsIgnoreCase => (K::StringEqualsIgnoreCase, true),
        K::StringNotLike => (K::StringLike, true),
        K::NumericNotEquals => (K::NumericEquals, true),
        K::DateNotEquals => (K::DateEquals, true),
        K::NotIpAddress => (K::IpAddress, true),
        K::ArnNotEquals => (K::ArnEquals, true),
        K::ArnNotLike => (K::ArnLike, true),
        other => (other, false),
    }
}

fn condition_holds(c: &Condition, req: &Request, vars: bool, budget: &Budget) -> bool {
    let op = c.operator;
    let values = lookup(req, &c.key).filter(|v| !v.is_empty());
    if op.kind == OperatorKind::Null {
        // `true`: the key is absent; `false`: present. Values OR.
        let absent = values.is_none();
        return c.values.iter().any(|v| as_bool(v) == Some(absent));
    }
    let (kind, negated) = positive(op.kind);
    let Some(values) = values else {
        return match op.qualifier {
            // Vacuously true for no values.
            Some(SetQualifier::ForAllValues) => true,
            Some(SetQualifier::ForAnyValue) => op.if_exists,
            // A negated operator holds when the key is missing.
            None => op.if_exists || negated,
        };
    };
    // The policy's values after substituting variables; one that cannot be
    // resolved is left out, and a condition left with none does not hold.
    // Values without variables (nearly all) are compared as written, with no
    // copy; values with variables are resolved once here.
    let has_vars = vars
        && c.values
            .iter()
            .any(|v| matches!(v, ConditionValue::String(s) if s.contains("${")));
    let resolved: Vec<PolicyValue>;
    let policy: &[PolicyValue] = if has_vars {
        resolved = c
            .values
            .iter()
            .filter_map(|v| PolicyValue::new(v, kind, vars, req, budget))
            .collect();
        if resolved.is_empty() {
            return false;
        }
        &resolved
    } else {
        &[]
    };
    // Each comparison is a step too: a multi-valued key's values times a
    // condition's values is a product, whatever the operator.
    let one = |r: &str| {
        if has_vars {
            policy
                .iter()
                .any(|p| budget.spend(1) && compare(kind, r, p, budget))
        } else {
            c.values.iter().any(|v| {
                budget.spend(1)
                    && PolicyValue::new(v, kind, false, req, budget)
                        .is_some_and(|p| compare(kind, r, &p, budget))
            })
        }
    };
    match op.qualifier {
        None => {
            let any = values.iter().any(one);
            any != negated
        }
        Some(SetQualifier::ForAnyValue) => values.iter().any(|r| one(r) != negated),
        Some(SetQualifier::ForAllValues) => values.iter().all(|r| one(r) != negated),
    }
}

/// A policy condition value ready to compare.
enum PolicyValue<'p> {
    Text(Cow<'p, str>),
    Symbols(Vec<Sym>),
    Bool(bool),
}

impl<'p> PolicyValue<'p> {
    fn new(
        v: &'p ConditionValue,
        kind: OperatorKind,
        vars: bool,
        req: &Request,
        budget: &Budget,
    ) -> Option<Self> {
        Some(match (kind.family(), v) {
            (OperatorFamily::Bool, v) => PolicyValue::Bool(as_bool(v)?),
            (OperatorFamily::String | OperatorFamily::Arn, ConditionValue::String(s)) => {
                match pattern(s, vars, req, budget) {
                    Resolved::Plain(p) => PolicyValue::Text(Cow::Borrowed(p)),
                    Resolved::Symbols(s) => PolicyValue::Symbols(s),
                    Resolved::Unresolved => return None,
                }
            }
            (_, ConditionValue::String(s)) => PolicyValue::Text(Cow::Borrowed(s)),
            // AWS compares numbers and booleans given to string operators
            // as their text.
            (_, ConditionValue::Bool(b)) => {
                PolicyValue::Text(Cow::Borrowed(if *b { "true" } else { "false" }))
            }
            (_, ConditionValue::Number(n)) => PolicyValue::Text(Cow::Owned(n.to_string())),
        })
    }
}

fn as_bool(v: &ConditionValue) -> Option<bool> {
    match v {
        ConditionValue::Bool(b) => Some(*b),
        ConditionValue::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        ConditionValue::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The positive comparison `kind` of request value `r` with policy value `p`.
fn compare(kind: OperatorKind, r: &str, p: &PolicyValue, budget: &Budget) -> bool {
    use OperatorKind as K;
    match (kind, p) {
        (K::Bool, PolicyValue::Bool(b)) => {
            (*b && r.eq_ignore_ascii_case("true")) || (!*b && r.eq_ignore_ascii_case("false"))
        }
        (_, PolicyValue::Bool(_)) => false,
        (K::StringEquals, p) => text_equals(p, r, false),
        (K::StringEqualsIgnoreCase, p) => text_equals(p, r, true),
        (K::StringLike, PolicyValue::Text(t)) => wildcard_matches_within(t, r, budget),
        (K::StringLike, PolicyValue::Symbols(s)) => symbols_match(s, r, budget),
        (K::ArnEquals | K::ArnLike, p) => arn_matches(p, r, budget),
        (K::BinaryEquals, PolicyValue::Text(t)) => t.as_ref() == r,
        (K::IpAddress, PolicyValue::Text(t)) => ip_in(r, t),
        (
            K::NumericEquals
            | K::NumericLessThan
            | K::NumericLessThanEquals
            | K::NumericGreaterThan
            | K::NumericGreaterThanEquals,
            PolicyValue::Text(t),
        ) => match (r.trim().parse::<f64>(), t.parse::<f64>()) {
            (Ok(r), Ok(p)) => ordered(kind, r.partial_cmp(&p)),
            _ => false,
        },
        (
            K::DateEquals
            | K::DateLessThan
            | K::DateLessThanEquals
            | K::DateGreaterThan
            | K::DateGreaterThanEquals,
            PolicyValue::Text(t),
        ) => match (instant(r), instant(t)) {
            (Some(r), Some(p)) => ordered(kind, Some(r.cmp(&p))),
            _ => false,
        },
        _ => false,
    }
}

fn ordered(kind: OperatorKind, ord: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    use OperatorKind as K;
    matches!(
        (kind, ord),
        (K::NumericEquals | K::DateEquals, Some(Equal))
            | (K::NumericLessThan | K::DateLessThan, Some(Less))
            | (
                K::NumericLessThanEquals | K::DateLessThanEquals,
                Some(Less | Equal)
            )
            | (K::NumericGreaterThan | K::DateGreaterThan, Some(Greater))
            | (
                K::NumericGreaterThanEquals | K::DateGreaterThanEquals,
                Some(Greater | Equal)
            )
    )
}

fn text_equals(p: &PolicyValue, r: &str, ignore_case: bool) -> bool {
    let eq = |a: &str, b: &str| {
        if ignore_case {
            a.chars()
                .flat_map(char::to_lowercase)
                .eq(b.chars().flat_map(char::to_lowercase))
        } else {
            a == b
        }
    };
    match p {
        PolicyValue::Text(t) => eq(t, r),
        // Equality has no wildcards: a `*` or `?` of the policy's own text
        // is that character.
        PolicyValue::Symbols(s) => {
            let text: String = s
                .iter()
                .map(|s| match s {
                    Sym::Char(c) => *c,
                    Sym::Any => '*',
                    Sym::One => '?',
                })
                .collect();
            eq(&text, r)
        }
        PolicyValue::Bool(_) => false,
    }
}

/// ArnEquals/ArnLike: each colon-separated component is matched on its
/// own, with wildcards (the operators page: "Each of the six
/// colon-delimited components of the ARN is checked separately"). A pattern
/// of fewer components lets its last one cover the rest of the ARN.
fn arn_matches(p: &PolicyValue, r: &str, budget: &Budget) -> bool {
    match p {
        PolicyValue::Text(t) => {
            let n = t.splitn(6, ':').count();
            let mut rs = r.splitn(n, ':');
            t.splitn(6, ':').all(|pc| match rs.next() {
                Some(rc) => wildcard_matches_within(pc, rc, budget),
                None => false,
            })
        }
        PolicyValue::Symbols(s) => {
            let colon = Sym::Char(':');
            let n = s.splitn(6, |c| *c == colon).count();
            let mut rs = r.splitn(n, ':');
            s.splitn(6, |c| *c == colon).all(|pc| match rs.next() {
                Some(rc) => symbols_match(pc, rc, budget),
                None => false,
            })
        }
        PolicyValue::Bool(_) => false,
    }
}

/// Whether address `r` is in the range `cidr` (an address alone is a /32
/// or /128). IPv4-mapped IPv6 addresses count as IPv4.
fn ip_in(r: &str, cidr: &str) -> bool {
    let Ok(addr) = r.trim().parse::<IpAddr>() else {
        return false;
    };
    let (net, bits) = match cidr.split_once('/') {
        Some((a, b)) => (a, b.parse::<u32>().ok()),
        None => (cidr, None),
    };
    let Ok(net) = net.parse::<IpAddr>() else {
        return false;
    };
    match (addr.to_canonical(), net.to_canonical()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// A date as nanoseconds since the epoch: seconds since the epoch, or ISO
/// 8601 (a date alone is its midnight UTC).
fn instant(s: &str) -> Option<i128> {
    let s = s.trim();
    if !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i128>()
            .ok()
            .map(|secs| secs.saturating_mul(1_000_000_000));
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.unix_timestamp_nanos());
    }
    time::Date::parse(s, &Iso8601::DEFAULT)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp_nanos())
}

// ---- the KMS decision ----

/// The KMS decision for a request
/// (<https://docs.aws.amazon.com/kms/latest/developerguide/determining-access.html>):
///
/// 1. A Deny that applies in the key policy or an identity policy wins.
/// 2. A key policy Allow naming the principal (or everyone) allows, in the
///    key's account.
/// 3. A key policy Allow naming the principal's account delegates to its
///    identity policies: one of them must allow (the root has every
///    identity permission in its own account).
/// 4. A grant allows.
///
/// Across accounts, the key policy must name the caller or its account
/// *and* the caller's identity policies must allow (except for services,
/// which have none: a key policy naming a service allows it). Requests without a key
/// are decided by identity policies alone.
pub fn evaluate_kms(eval: &KmsEvaluation, req: &Request) -> Decision {
    // Matching is bounded per decision (`wildcard.rs`): patterns built to
    // be quadratic, or variables inserting kilobytes of the request into
    // hundreds of patterns, would otherwise cost seconds of CPU per request.
    // A policy whose evaluation runs out of steps denies, as if it held a
    // matching Deny: what was cut short can never allow.
    let budget = Budget::new(DECISION_STEPS);
    let key = eval
        .key_policy
        .map(|doc| scan(doc, PolicyKind::Key, req, &budget));
    if key.as_ref().is_some_and(|k| k.deny) || budget.exhausted() {
        return Decision::ExplicitDeny(PolicySource::KeyPolicy);
    }
    let mut identity_allows = eval.principal_is_root;
    for doc in eval.identity_policies {
        let s = scan(doc, PolicyKind::Identity, req, &budget);
        if s.deny || budget.exhausted() {
            return Decision::ExplicitDeny(PolicySource::IdentityPolicy);
        }
        identity_allows |= s.allow > Named::No;
    }
    let Some(key) = key else {
        return if identity_allows {
            Decision::Allow(AllowedBy::IdentityPolicy)
        } else {
            Decision::ImplicitDeny(ImplicitReason::NoIdentityPolicyAllows)
        };
    };
    let same_account = eval.key_account.is_none_or(|a| a == req.principal.account);
    // A service has no identity policies to consult: a key policy naming it
    // is the whole permission, as for AWS service principals.
    let service = matches!(req.principal.kind, PrincipalKind::Service { .. });
    match key.allow {
        Named::Directly if same_account || service => return Decision::Allow(AllowedBy::KeyPolicy),
        Named::Directly if identity_allows => return Decision::Allow(AllowedBy::KeyPolicy),
        Named::Account if identity_allows => return Decision::Allow(AllowedBy::IdentityPolicy),
        _ => {}
    }
    if eval.grant_allows {
        return Decision::Allow(AllowedBy::Grant);
    }
    Decision::ImplicitDeny(match key.allow {
        Named::No => ImplicitReason::NoResourcePolicyAllows,
        Named::Account | Named::Directly => ImplicitReason::NoIdentityPolicyAllows,
    })
}

/// Which kind of policy decided a denial whose message [`denial_message`]
/// wrote (for audit records): `explicit-deny-key-policy`,
/// `explicit-deny-identity-policy`, `no-key-policy-allows` or
/// `no-identity-policy-allows`; `None` for other messages.
pub fn denial_kind(message: &str) -> Option<&'static str> {
    if message.ends_with(" with an explicit deny in a resource-based policy") {
        Some("explicit-deny-key-policy")
    } else if message.ends_with(" with an explicit deny in an identity-based policy") {
        Some("explicit-deny-identity-policy")
    } else if message.contains(" because no resource-based policy allows the ") {
        Some("no-key-policy-allows")
    } else if message.contains(" because no identity-based policy allows the ") {
        Some("no-identity-policy-allows")
    } else {
        None
    }
}

/// AWS's `AccessDeniedException` message for a denial; `None` for an
/// allow. It names the principal, action and resource, which are not
/// secret; never a policy's content.
pub fn denial_message(decision: &Decision, req: &Request) -> Option<String> {
    let why = match decision {
        Decision::Allow(_) => return None,
        Decision::ExplicitDeny(PolicySource::KeyPolicy) => {
            "with an explicit deny in a resource-based policy".to_owned()
        }
        Decision::ExplicitDeny(PolicySource::IdentityPolicy) => {
            "with an explicit deny in an identity-based policy".to_owned()
        }
        Decision::ImplicitDeny(ImplicitReason::NoIdentityPolicyAllows) => format!(
            "because no identity-based policy allows the {} action",
            req.action
        ),
        Decision::ImplicitDeny(ImplicitReason::NoResourcePolicyAllows) => format!(
            "because no resource-based policy allows the {} action",
            req.action
        ),
    };
    Some(format!(
        "User: {} is not authorized to perform: {} on resource: {} {why}",
        req.principal.arn, req.action, req.resource
    ))
}
