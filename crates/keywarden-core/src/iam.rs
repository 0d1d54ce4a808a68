//! IAM identities inside an account (issue 18): users, roles, customer
//! managed policies, inline policies and policy attachments.
//!
//! The account's own access keys (`admin account create`) are its root
//! (`arn:aws:iam::<account>:root`). Users get access keys of their own
//! (credentials owned by [`crate::model::CredentialOwner::User`]); roles are
//! assumed through STS `AssumeRole`.
//!
//! Persistence is one seam, [`crate::store::IamStore`], over one generic
//! record, [`IamEntity`], addressed by account, [`IamKind`] and a name
//! ([`IamEntity::name`]): backends keep one row per entity with its JSON
//! ([`IamEntity::to_json`]), so adding a field here needs no schema change.
//! What refers to what (a user's inline policies, an attachment's policy)
//! is checked here in the core, as AWS does (`DeleteConflict`).

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::ids::AccountId;
use crate::model::Tag;

/// The kinds of IAM record, each its own namespace of names in an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IamKind {
    /// A user; named by its user name.
    User,
    /// A role; named by its role name.
    Role,
    /// A customer managed policy; named by its policy name.
    Policy,
    /// An inline policy of a user; named `<user>/<policy name>`.
    UserInlinePolicy,
    /// An inline policy of a role; named `<role>/<policy name>`.
    RoleInlinePolicy,
    /// A managed policy attached to a user; named `<user>/<policy arn>`.
    UserAttachment,
    /// A managed policy attached to a role; named `<role>/<policy arn>`.
    RoleAttachment,
}

impl IamKind {
    /// Every kind, for dumps and tests.
    pub const ALL: [IamKind; 7] = [
        IamKind::User,
        IamKind::Role,
        IamKind::Policy,
        IamKind::UserInlinePolicy,
        IamKind::RoleInlinePolicy,
        IamKind::UserAttachment,
        IamKind::RoleAttachment,
    ];

    /// The kind's stored name (a backend's `kind` column).
    pub fn as_str(self) -> &'static str {
        match self {
            IamKind::User => "user",
            IamKind::Role => "role",
            IamKind::Policy => "policy",
            IamKind::UserInlinePolicy => "user-inline-policy",
            IamKind::RoleInlinePolicy => "role-inline-policy",
            IamKind::UserAttachment => "user-attachment",
            IamKind::RoleAttachment => "role-attachment",
        }
    }

    /// The kind a stored name names.
    pub fn parse(s: &str) -> Option<IamKind> {
        IamKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The identity an inline policy or an attachment belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IamOwner {
    /// A user, by name.
    User(String),
    /// A role, by name.
    Role(String),
}

impl IamOwner {
    /// The owner's name.
    pub fn name(&self) -> &str {
        match self {
            IamOwner::User(n) | IamOwner::Role(n) => n,
        }
    }
}

/// An IAM user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamUser {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// The user name (1-64 of `[\w+=,.@-]`), unique in the account ignoring case.
    pub name: String,
    /// The path (`/` or `/a/b/`).
    pub path: String,
    /// The stable unique id (`AIDA` + 17 characters).
    pub user_id: String,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// An IAM role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamRole {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// The role name (1-64 of `[\w+=,.@-]`).
    pub name: String,
    /// The path.
    pub path: String,
    /// The stable unique id (`AROA` + 17 characters).
    pub role_id: String,
    /// The trust policy (who may assume it), as given.
    pub assume_role_policy: String,
    /// A description.
    pub description: Option<String>,
    /// The longest session AssumeRole grants, seconds (3600-43200).
    pub max_session_duration: u32,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Tags.
    pub tags: Vec<Tag>,
}

/// A customer managed policy (one version, `v1`, is the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamManagedPolicy {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// The policy name.
    pub name: String,
    /// The path.
    pub path: String,
    /// The stable unique id (`ANPA` + 17 characters).
    pub policy_id: String,
    /// The document, as given.
    pub document: String,
    /// A description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// An inline policy of a user or role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamInlinePolicy {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// The user or role it is embedded in.
    pub owner: IamOwner,
    /// The policy name.
    pub name: String,
    /// The document, as given.
    pub document: String,
}

/// A managed policy attached to a user or role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IamAttachment {
    /// The account it belongs to.
    pub account_id: AccountId,
    /// The user or role it is attached to.
    pub owner: IamOwner,
    /// The attached policy's ARN.
    pub policy_arn: String,
}

/// One IAM record, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IamEntity {
    /// A user.
    User(IamUser),
    /// A role.
    Role(IamRole),
    /// A customer managed policy.
    Policy(IamManagedPolicy),
    /// An inline policy.
    InlinePolicy(IamInlinePolicy),
    /// An attachment.
    Attachment(IamAttachment),
}

impl IamEntity {
    /// The account the record belongs to.
    pub fn account_id(&self) -> &AccountId {
        match self {
            IamEntity::User(u) => &u.account_id,
            IamEntity::Role(r) => &r.account_id,
            IamEntity::Policy(p) => &p.account_id,
            IamEntity::InlinePolicy(p) => &p.account_id,
            IamEntity::Attachment(a) => &a.account_id,
        }
    }

    /// The record's kind.
    pub fn kind(&self) -> IamKind {
        match self {
            IamEntity::User(_) => IamKind::User,
            IamEntity::Role(_) => IamKind::Role,
            IamEntity::Policy(_) => IamKind::Policy,
            IamEntity::InlinePolicy(p) => match p.owner {
                IamOwner::User(_) => IamKind::UserInlinePolicy,
                IamOwner::Role(_) => IamKind::RoleInlinePolicy,
            },
            IamEntity::Attachment(a) => match a.owner {
                IamOwner::User(_) => IamKind::UserAttachment,
                IamOwner::Role(_) => IamKind::RoleAttachment,
            },
        }
    }

    /// The record's name within its account and kind. Names of users,
    /// roles and policies are compared ignoring ASCII case, as IAM does, so
    /// the stored name is lower-cased; the record keeps the spelling.
    /// Children are named `<owner>/<child>` so that listing one owner's
    /// children is a prefix query ([`child_prefix`]).
    pub fn name(&self) -> String {
        match self {
            IamEntity::User(u) => u.name.to_ascii_lowercase(),
            IamEntity::Role(r) => r.name.to_ascii_lowercase(),
            IamEntity::Policy(p) => p.name.to_ascii_lowercase(),
            IamEntity::InlinePolicy(p) => {
                format!("{}{}", child_prefix(&p.owner), p.name.to_ascii_lowercase())
            }
            IamEntity::Attachment(a) => format!("{}{}", child_prefix(&a.owner), a.policy_arn),
        }
    }

    /// The record as the JSON text a backend stores.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("IAM records always serialize")
    }

    /// A record from stored JSON text.
    pub fn from_json(text: &str) -> Result<IamEntity, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// The stored name of an identity (user or role name) for
/// [`crate::store::IamStore::get_iam_entity`].
pub fn entity_name(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The stored-name prefix of `owner`'s children (inline policies,
/// attachments): `<lower-cased owner name>/`. Owner names cannot contain `/`.
pub fn child_prefix(owner: &IamOwner) -> String {
    format!("{}/", owner.name().to_ascii_lowercase())
}
