//! The policy language: parsing and validating key policies and IAM
//! identity policies into a typed AST, and evaluating them for a request.
//!
//! The parser answers "is this a well-formed policy, and what does it say";
//! the evaluator (`eval.rs`) decides access from parsed documents. Everything is pure: no I/O, no
//! clock. The rules follow AWS's published policy grammar so that a document
//! AWS KMS accepts for `PutKeyPolicy`/`CreateKey` is accepted here, and a
//! document it refuses is refused with a message saying what is wrong (the
//! server answers `MalformedPolicyDocumentException` with it). Each rule group
//! cites the AWS page it comes from.
//!
//! Layout:
//! - `json.rs`: a strict JSON reader (bounded depth, duplicate keys detected),
//!   because serde_json's `Value` silently keeps the last of two equal keys
//!   and AWS refuses such documents.
//! - `document.rs`: the AST ([`PolicyDocument`], [`Statement`], ...) and its
//!   serialization back to JSON.
//! - `parse.rs`: the validator from strict JSON to the AST.
//! - `condition.rs`: condition operators and the per-operator value checks.
//! - `wildcard.rs`: `*`/`?` matching in bounded time ([`action_matches`]).
//! - `context.rs`: who asks ([`PrincipalInfo`]) and the request's condition
//!   keys ([`RequestContext`]).
//! - `eval.rs`: the evaluator ([`evaluate_document`], [`evaluate_kms`],
//!   [`denial_message`]).

mod condition;
mod context;
mod document;
mod eval;
mod json;
mod parse;
mod wildcard;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod tests;

use thiserror::Error;

pub use condition::{ConditionOperator, OperatorFamily, OperatorKind, SetQualifier};
pub use context::{PrincipalInfo, PrincipalKind, RequestContext};
pub use document::{
    ActionMatcher, AwsPrincipal, Condition, ConditionValue, Effect, PolicyDocument, PolicyVersion,
    Principal, PrincipalArn, PrincipalArnKind, PrincipalMatcher, PrincipalSet, ResourceMatcher,
    Statement,
};
pub use eval::{
    denial_kind, denial_message, evaluate_document, evaluate_kms, key_policy_names, AllowedBy,
    Decision, ImplicitReason, KmsEvaluation, Outcome, PolicySource, Request,
};
pub use wildcard::{action_matches, wildcard_matches};

/// The largest key policy AWS KMS accepts, in bytes of the document text
/// (<https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-overview.html>,
/// "Key policy format").
pub const MAX_KEY_POLICY_BYTES: usize = 32 * 1024;

/// How deeply arrays and objects may nest. A valid policy needs at most 5
/// levels (document, statement array, statement, condition operator, key,
/// value array); the bound keeps hostile input from exhausting the stack.
pub const MAX_NESTING_DEPTH: usize = 32;

/// Which kind of policy a document is, since the grammars differ slightly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyKind {
    /// A key policy (resource-based): every statement names a `Principal`
    /// or `NotPrincipal`; `Resource` is optional (`*` means this key).
    Key,
    /// An IAM identity policy attached to a user or role: `Principal` and
    /// `NotPrincipal` are refused (the principal is the identity it is
    /// attached to) and `Resource`/`NotResource` is required.
    Identity,
}

impl PolicyKind {
    /// The size limit this module enforces for the kind. For identity
    /// policies this is only the parser's safety bound; IAM's own, smaller
    /// quotas (per user, role or managed policy) belong to the IAM layer.
    pub fn max_bytes(self) -> usize {
        MAX_KEY_POLICY_BYTES
    }
}

/// Parses and validates a key policy (`PutKeyPolicy`, `CreateKey`'s `Policy`).
pub fn parse_key_policy(text: &str) -> Result<PolicyDocument, PolicyError> {
    parse_policy(text, PolicyKind::Key)
}

/// Parses and validates a policy document of the given kind.
pub fn parse_policy(text: &str, kind: PolicyKind) -> Result<PolicyDocument, PolicyError> {
    parse::parse_document(text, kind)
}

/// Why a policy document was refused: where in the document (a path such as
/// `Statement[1].Principal.AWS[0]`, empty for the whole document) and what.
///
/// The Display text is meant for the caller (`MalformedPolicyDocumentException`);
/// policies are not secret, so it may quote the offending value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{kind}", location_prefix(.location))]
pub struct PolicyError {
    /// Where the problem is; empty for the document as a whole.
    pub location: String,
    /// What the problem is.
    pub kind: PolicyErrorKind,
}

fn location_prefix(location: &str) -> String {
    if location.is_empty() {
        String::new()
    } else {
        format!("{location}: ")
    }
}

impl PolicyError {
    pub(crate) fn new(location: impl Into<String>, kind: PolicyErrorKind) -> Self {
        PolicyError {
            location: location.into(),
            kind,
        }
    }
}

/// Every way a policy document can be malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    /// The document is larger than the kind allows.
    #[error("the policy is {size} bytes; at most {max} bytes are allowed")]
    TooLarge {
        /// The document's size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A character outside the set key policies may contain.
    #[error("the policy contains the character U+{0:04X}, which is not allowed; use printable ASCII or Latin-1 characters, tab, line feed or carriage return")]
    InvalidCharacter(u32),
    /// Arrays and objects nest more deeply than [`MAX_NESTING_DEPTH`].
    #[error("the policy nests arrays and objects more than {0} levels deep")]
    TooDeep(usize),
    /// The text is not JSON (serde_json's description, with line and column).
    #[error("the policy is not valid JSON: {0}")]
    Syntax(String),
    /// An object has the same key twice.
    #[error("duplicate key \"{0}\"")]
    DuplicateKey(String),
    /// The value has the wrong JSON type.
    #[error("expected {0}")]
    WrongType(&'static str),
    /// An element this position does not allow.
    #[error("unknown element \"{0}\"")]
    UnknownElement(String),
    /// A required element is missing.
    #[error("missing required element {0}")]
    Missing(&'static str),
    /// Two elements that exclude each other are both present.
    #[error("{0} and {1} cannot both be present")]
    Conflict(&'static str, &'static str),
    /// An array that must have at least one element is empty.
    #[error("the array must not be empty")]
    EmptyArray,
    /// `Version` is not a policy language version.
    #[error("unsupported policy version \"{0}\"; use \"2012-10-17\" or \"2008-10-17\"")]
    InvalidVersion(String),
    /// `Effect` is neither `Allow` nor `Deny`.
    #[error("invalid effect \"{0}\"; use \"Allow\" or \"Deny\"")]
    InvalidEffect(String),
    /// A `Sid` is used by two statements.
    #[error("statement id \"{0}\" is used by more than one statement")]
    DuplicateSid(String),
    /// A `Sid` with characters an identity policy does not allow.
    #[error("statement id \"{0}\" may contain only ASCII letters and digits")]
    InvalidSid(String),
    /// `Principal`/`NotPrincipal` in a policy kind that does not allow them.
    #[error("{0} is not allowed in an identity policy")]
    PrincipalNotAllowed(&'static str),
    /// An unknown principal type (not `AWS`, `Service`, `Federated`, `CanonicalUser`).
    #[error("unknown principal type \"{0}\"; use AWS, Service, Federated or CanonicalUser")]
    UnknownPrincipalType(String),
    /// A principal value that is not valid for its type.
    #[error("invalid principal \"{0}\"")]
    InvalidPrincipal(String),
    /// An action that is not `*` or `service:Action`.
    #[error(
        "invalid action \"{0}\"; use \"*\" or \"service:Action\" with optional * and ? wildcards"
    )]
    InvalidAction(String),
    /// A resource that is not `*` or an ARN.
    #[error("invalid resource \"{0}\"; use \"*\" or an ARN")]
    InvalidResource(String),
    /// A condition operator this policy language does not know.
    #[error("unknown condition operator \"{0}\"")]
    UnknownConditionOperator(String),
    /// A condition key that is not `prefix:name`.
    #[error("invalid condition key \"{0}\"; use \"prefix:name\"")]
    InvalidConditionKey(String),
    /// A condition value the operator cannot compare.
    #[error("invalid value {value} for {operator}: expected {expected}")]
    InvalidConditionValue {
        /// The operator as written.
        operator: String,
        /// The value as JSON.
        value: String,
        /// What the operator takes.
        expected: &'static str,
    },
}
