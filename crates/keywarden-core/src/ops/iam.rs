//! IAM inside an account (`crate::iam`): users and their access keys,
//! roles, inline policies, customer managed policies and attachments.
//!
//! These are the operations behind the IAM Query API of the server
//! (`keywarden-server/src/iam.rs`). They answer [`IamError`]s, whose codes
//! are IAM's. Who may call them is decided before they run (root: every
//! action; users and role sessions: their identity policies).
//!
//! Limits follow IAM's quotas
//! (<https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>):
//! two access keys per user, 10 managed policies attached per user or role,
//! inline policies of at most 2,048 (user) and 10,240 (role) characters
//! not counting white space, managed policies of at most 6,144, trust
//! policies of at most 2,048.

use crate::error::KmsError;
use crate::iam::{
    child_prefix, entity_name, IamAttachment, IamEntity, IamInlinePolicy, IamKind,
    IamManagedPolicy, IamOwner, IamRole, IamUser,
};
use crate::ids::AccountId;
use crate::kms::{Kms, Page};
use crate::model::{Credential, CredentialOwner, CredentialStatus, Tag};
use crate::policy::{parse_policy, PolicyKind};
use crate::secret::Secret;
use crate::store::{IamQuery, StoreError};

/// An IAM failure, with IAM's error code.
#[derive(Debug, thiserror::Error)]
pub enum IamError {
    /// The named user, role, policy or key does not exist (404).
    #[error("{0}")]
    NoSuchEntity(String),
    /// A user, role or policy of that name exists already (409).
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The entity still has dependents (409).
    #[error("{0}")]
    DeleteConflict(String),
    /// A quota would be exceeded (409).
    #[error("{0}")]
    LimitExceeded(String),
    /// A policy document that does not parse or validate (400).
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// A parameter outside its allowed values (400).
    #[error("{0}")]
    InvalidInput(String),
    /// A parameter that fails its pattern or length (400).
    #[error("{0}")]
    Validation(String),
    /// The caller may not do this (403).
    #[error("{0}")]
    AccessDenied(String),
    /// Anything else (the store, the sealer).
    #[error(transparent)]
    Kms(#[from] KmsError),
}

impl From<StoreError> for IamError {
    fn from(e: StoreError) -> Self {
        IamError::Kms(KmsError::Store(e))
    }
}

impl IamError {
    /// IAM's error code.
    pub fn code(&self) -> &'static str {
        match self {
            IamError::NoSuchEntity(_) => "NoSuchEntity",
            IamError::EntityAlreadyExists(_) => "EntityAlreadyExists",
            IamError::DeleteConflict(_) => "DeleteConflict",
            IamError::LimitExceeded(_) => "LimitExceeded",
            IamError::MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            IamError::InvalidInput(_) => "InvalidInput",
            IamError::Validation(_) => "ValidationError",
            IamError::AccessDenied(_) => "AccessDenied",
            IamError::Kms(_) => "ServiceFailure",
        }
    }

    /// The HTTP status IAM answers with.
    pub fn status(&self) -> u16 {
        match self {
            IamError::NoSuchEntity(_) => 404,
            IamError::EntityAlreadyExists(_)
            | IamError::DeleteConflict(_)
            | IamError::LimitExceeded(_) => 409,
            IamError::AccessDenied(_) => 403,
            IamError::Kms(_) => 500,
            _ => 400,
        }
    }
}

/// Access keys per user.
pub const MAX_ACCESS_KEYS_PER_USER: usize = 2;
/// Managed policies attached per user or role.
pub const MAX_ATTACHED_POLICIES: usize = 10;
/// Inline policy size of a user, characters without white space.
pub const MAX_USER_INLINE_POLICY: usize = 2048;
/// Inline policy size of a role.
pub const MAX_ROLE_INLINE_POLICY: usize = 10240;
/// Managed policy size.
pub const MAX_MANAGED_POLICY: usize = 6144;
/// Trust policy size.
pub const MAX_TRUST_POLICY: usize = 2048;
/// Tags per user or role.
pub const MAX_TAGS: usize = 50;
/// Page size of IAM listings when `MaxItems` is not given.
pub const DEFAULT_MAX_ITEMS: usize = 100;
/// Largest `MaxItems`.
pub const MAX_MAX_ITEMS: usize = 1000;

const ID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Checks an IAM name (user, role, policy, inline policy): 1-`max`
/// characters of `[\w+=,.@-]`.
pub fn check_name(what: &str, name: &str, max: usize) -> Result<(), IamError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(IamError::Validation(format!(
            "1 validation error detected: Value '{}' at '{what}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length between 1 and {max}",
            crate::ids::truncate_for_message(name)
        )))
    }
}

/// Checks a path: `/`, or `/` + segments each followed by `/`, at most
/// 512 characters of printable ASCII.
pub fn check_path(path: &str) -> Result<(), IamError> {
    let ok = path.starts_with('/')
        && path.ends_with('/')
        && path.len() <= 512
        && path.chars().all(|c| ('!'..='~').contains(&c));
    if ok {
        Ok(())
    } else {
        Err(IamError::Validation(format!(
            "1 validation error detected: Value '{}' at 'path' failed to satisfy constraint: Member must satisfy regular expression pattern: (\\u002F)|(\\u002F[\\u0021-\\u007E]+\\u002F)",
            crate::ids::truncate_for_message(path)
        )))
    }
}

/// Checks tags as IAM does: at most 50, keys 1-128 and values 0-256
/// characters, keys unique (ignoring case).
pub fn check_tags(tags: &[Tag]) -> Result<(), IamError> {
    if tags.len() > MAX_TAGS {
        return Err(IamError::LimitExceeded(format!(
            "The number of tags has reached the maximum limit of {MAX_TAGS}."
        )));
    }
    for (i, t) in tags.iter().enumerate() {
        if t.key.is_empty() || t.key.chars().count() > 128 || t.value.chars().count() > 256 {
            return Err(IamError::Validation(
                "1 validation error detected: tag keys must have length between 1 and 128 and values between 0 and 256".to_owned(),
            ));
        }
        if !t.key.chars().chain(t.value.chars()).all(is_tag_char) {
            return Err(IamError::Validation(
                "1 validation error detected: tag keys and values must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*".to_owned(),
            ));
        }
        if tags[..i].iter().any(|o| o.key.eq_ignore_ascii_case(&t.key)) {
            return Err(IamError::InvalidInput(format!(
                "Duplicate tag keys found. Please note that Tag keys are case insensitive. ({})",
                crate::ids::truncate_for_message(&t.key)
            )));
        }
    }
    Ok(())
}

/// A character IAM allows in tag keys and values, `[\p{L}\p{Z}\p{N}_.:/=+\-@]`
/// (<https://docs.aws.amazon.com/IAM/latest/APIReference/API_Tag.html>):
/// letters and digits (Rust's alphanumeric, a close superset of `L` and
/// `N`), separators (white space that is not a control character) and
/// seven signs. Control characters are what matters: they were stored and
/// then could not be carried by the XML answers that list tags.
fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
}

/// Checks a role's or managed policy's description: at most 1,000
/// characters, none of them a control character other than tab, line feed
/// and carriage return (IAM's patterns allow none; an XML answer cannot
/// carry most of them).
pub fn check_description(description: Option<&str>) -> Result<(), IamError> {
    let Some(d) = description else {
        return Ok(());
    };
    if d.chars().count() > 1000 {
        return Err(IamError::Validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must have length less than or equal to 1000".to_owned(),
        ));
    }
    if d.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(IamError::Validation(
            "1 validation error detected: Value at 'description' failed to satisfy constraint: Member must not contain control characters".to_owned(),
        ));
    }
    Ok(())
}

/// Checks an identity policy document: it parses as one, and it is at
/// most `max` characters not counting white space.
pub fn check_identity_policy(document: &str, max: usize) -> Result<(), IamError> {
    check_policy_size(document, max)?;
    parse_policy(document, PolicyKind::Identity)
        .map_err(|e| IamError::MalformedPolicyDocument(e.to_string()))?;
    Ok(())
}

fn check_policy_size(document: &str, max: usize) -> Result<(), IamError> {
    let size = document.chars().filter(|c| !c.is_whitespace()).count();
    if size > max {
        return Err(IamError::LimitExceeded(format!(
            "Cannot exceed quota for PolicySize: {max}"
        )));
    }
    Ok(())
}

/// Checks a trust policy (a role's `AssumeRolePolicyDocument`): a
/// resource-based document naming principals, at most 2,048 characters.
pub fn check_trust_policy(document: &str) -> Result<(), IamError> {
    check_policy_size(document, MAX_TRUST_POLICY)?;
    parse_policy(document, PolicyKind::Key)
        .map_err(|e| IamError::MalformedPolicyDocument(e.to_string()))?;
    Ok(())
}

fn merge_tags(existing: &mut Vec<Tag>, new: &[Tag]) {
    for t in new {
        match existing
            .iter_mut()
            .find(|e| e.key.eq_ignore_ascii_case(&t.key))
        {
            Some(e) => e.value.clone_from(&t.value),
            None => existing.push(t.clone()),
        }
    }
}

/// One page of an IAM listing: `Marker` is the last name of the page.
fn page_of<T>(mut items: Vec<T>, limit: usize, name: impl Fn(&T) -> String) -> Page<T> {
    let next_marker = if items.len() > limit {
        items.truncate(limit);
        items.last().map(name)
    } else {
        None
    };
    Page { items, next_marker }
}

/// A checked `MaxItems`.
pub fn max_items(given: Option<usize>) -> Result<usize, IamError> {
    match given {
        None => Ok(DEFAULT_MAX_ITEMS),
        Some(n) if (1..=MAX_MAX_ITEMS).contains(&n) => Ok(n),
        Some(_) => Err(IamError::Validation(format!(
            "1 validation error detected: Value at 'maxItems' failed to satisfy constraint: Member must have value between 1 and {MAX_MAX_ITEMS}"
        ))),
    }
}

impl Kms {
    fn unique_id(&self, prefix: &str) -> Result<String, IamError> {
        let raw: [u8; 17] = self.random_array()?;
        Ok(prefix
            .chars()
            .chain(
                raw.iter()
                    .map(|b| char::from(ID_ALPHABET[usize::from(b % 32)])),
            )
            .collect())
    }

    /// The ARN of a user.
    pub fn user_arn(&self, user: &IamUser) -> String {
        format!(
            "arn:{}:iam::{}:user{}{}",
            self.config.partition, user.account_id, user.path, user.name
        )
    }

    /// The ARN of a role.
    pub fn role_arn(&self, role: &IamRole) -> String {
        format!(
            "arn:{}:iam::{}:role{}{}",
            self.config.partition, role.account_id, role.path, role.name
        )
    }

    /// The ARN of a customer managed policy.
    pub fn policy_arn(&self, policy: &IamManagedPolicy) -> String {
        format!(
            "arn:{}:iam::{}:policy{}{}",
            self.config.partition, policy.account_id, policy.path, policy.name
        )
    }

    async fn iam_get(
        &self,
        account: &AccountId,
        kind: IamKind,
        name: &str,
    ) -> Result<Option<IamEntity>, IamError> {
        Ok(self.store.get_iam_entity(account, kind, name).await?)
    }

    async fn iam_list(
        &self,
        account: &AccountId,
        kind: IamKind,
        prefix: String,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<IamEntity>, IamError> {
        Ok(self
            .store
            .list_iam_entities(&IamQuery {
                account: account.clone(),
                kind,
                prefix,
                after,
                limit,
            })
            .await?)
    }

    /// Every record of one account and kind under `prefix` (children of
    /// one owner are few: at most a handful of policies).
    async fn iam_list_all(
        &self,
        account: &AccountId,
        kind: IamKind,
        prefix: String,
    ) -> Result<Vec<IamEntity>, IamError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .iam_list(account, kind, prefix.clone(), after.clone(), 500)
                .await?;
            let done = page.len() < 500;
            after = page.last().map(IamEntity::name);
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// One page of a filtered listing of one kind: reads the store 500
    /// records at a time from `marker`, keeps what `pick` keeps, and stops
    /// once a page and one more record are found (the marker is then the
    /// last name of the page).
    async fn iam_filtered_page<T>(
        &self,
        account: &AccountId,
        kind: IamKind,
        marker: Option<&str>,
        max_items: usize,
        mut pick: impl FnMut(IamEntity) -> Option<T>,
        name: impl Fn(&T) -> String,
    ) -> Result<Page<T>, IamError> {
        let mut items = Vec::new();
        let mut after = marker.map(str::to_owned);
        loop {
            let batch = self
                .iam_list(account, kind, String::new(), after.clone(), 500)
                .await?;
            let done = batch.len() < 500;
            after = batch.last().map(IamEntity::name);
            items.extend(batch.into_iter().filter_map(&mut pick));
            if done || items.len() > max_items {
                break;
            }
        }
        Ok(page_of(items, max_items, name))
    }

    async fn iam_create(&self, entity: IamEntity, what: &str) -> Result<(), IamError> {
        match self.store.create_iam_entity(&entity).await {
            Ok(()) => Ok(()),
            Err(StoreError::AlreadyExists) => Err(IamError::EntityAlreadyExists(what.to_owned())),
            Err(StoreError::MissingReference) => Err(IamError::NoSuchEntity(format!(
                "The account {} does not exist.",
                entity.account_id()
            ))),
            Err(e) => Err(e.into()),
        }
    }

    // ---- users ----

    /// CreateUser.
    pub async fn iam_create_user(
        &self,
        account: &AccountId,
        name: &str,
        path: Option<&str>,
        tags: &[Tag],
    ) -> Result<IamUser, IamError> {
        check_name("userName", name, 64)?;
        let path = path.unwrap_or("/");
        check_path(path)?;
        check_tags(tags)?;
        let user = IamUser {
            account_id: account.clone(),
            name: name.to_owned(),
            path: path.to_owned(),
            user_id: self.unique_id("AIDA")?,
            created_at: self.clock.now(),
            tags: tags.to_vec(),
        };
        self.iam_create(
            IamEntity::User(user.clone()),
            &format!("User with name {name} already exists."),
        )
        .await?;
        Ok(user)
    }

    /// GetUser.
    pub async fn iam_get_user(&self, account: &AccountId, name: &str) -> Result<IamUser, IamError> {
        match self
            .iam_get(account, IamKind::User, &entity_name(name))
            .await?
        {
            Some(IamEntity::User(u)) => Ok(u),
            _ => Err(IamError::NoSuchEntity(format!(
                "The user with name {} cannot be found.",
                crate::ids::truncate_for_message(name)
            ))),
        }
    }

    /// ListUsers: users whose path starts with `path_prefix`, by name.
    pub async fn iam_list_users(
        &self,
        account: &AccountId,
        path_prefix: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<IamUser>, IamError> {
        let prefix = path_prefix.unwrap_or("/");
        self.iam_filtered_page(
            account,
            IamKind::User,
            marker,
            max_items,
            |e| match e {
                IamEntity::User(u) if u.path.starts_with(prefix) => Some(u),
                _ => None,
            },
            |u| entity_name(&u.name),
        )
        .await
    }

    /// TagUser: adds tags, replacing the values of keys it has.
    pub async fn iam_tag_user(
        &self,
        account: &AccountId,
        name: &str,
        tags: &[Tag],
    ) -> Result<(), IamError> {
        check_tags(tags)?;
        let mut user = self.iam_get_user(account, name).await?;
        merge_tags(&mut user.tags, tags);
        check_tags(&user.tags)?;
        self.store.put_iam_entity(&IamEntity::User(user)).await?;
        Ok(())
    }

    /// UntagUser: removes the tags with these keys (ignoring case).
    pub async fn iam_untag_user(
        &self,
        account: &AccountId,
        name: &str,
        keys: &[String],
    ) -> Result<(), IamError> {
        let mut user = self.iam_get_user(account, name).await?;
        user.tags
            .retain(|t| !keys.iter().any(|k| k.eq_ignore_ascii_case(&t.key)));
        self.store.put_iam_entity(&IamEntity::User(user)).await?;
        Ok(())
    }

    /// DeleteUser: refused while the user has access keys, inline
    /// policies or attached policies (`DeleteConflict`), as IAM does.
    pub async fn iam_delete_user(&self, account: &AccountId, name: &str) -> Result<(), IamError> {
        let user = self.iam_get_user(account, name).await?;
        if !self.iam_user_keys(&user).await?.is_empty() {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must delete access keys first.".to_owned(),
            ));
        }
        let owner = IamOwner::User(user.name.clone());
        if !self
            .iam_list(
                account,
                IamKind::UserInlinePolicy,
                child_prefix(&owner),
                None,
                1,
            )
            .await?
            .is_empty()
        {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must delete policies first.".to_owned(),
            ));
        }
        if !self
            .iam_list(
                account,
                IamKind::UserAttachment,
                child_prefix(&owner),
                None,
                1,
            )
            .await?
            .is_empty()
        {
            return Err(IamError::DeleteConflict(
                "Cannot delete entity, must detach all policies first.".to_owned(),
            ));
        }
        self.store
            .delete_iam_entity(account, IamKind::User, &entity_name(&user.name))
            .await?;
        self.caches.clear();
        Ok(())
    }

    // ---- access keys ----

    /// The user's access keys that are not deleted, oldest first.
    async fn iam_user_keys(&self, user: &IamUser) -> Result<Vec<Credential>, IamError> {
        let mut keys: Vec<Credential> = self
            .store
            .list_credentials(Some(&user.account_id))
            .await?
            .into_iter()
            .filter(|c| {
                c.status != CredentialStatus::Revoked
                    && matches!(&c.owner, CredentialOwner::User { user_name, .. } if user_name.eq_ignore_ascii_case(&user.name))
            })
            .collect();
        keys.sort_by_key(|c| c.created_at);
        Ok(keys)
    }

    /// CreateAccessKey: a new active key for the user (at most two).
    pub async fn iam_create_access_key(
        &self,
        account: &AccountId,
        user_name: &str,
    ) -> Result<(IamUser, String, Secret), IamError> {
        let user = self.iam_get_user(account, user_name).await?;
        if self.iam_user_keys(&user).await?.len() >= MAX_ACCESS_KEYS_PER_USER {
            return Err(IamError::LimitExceeded(format!(
                "Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS_PER_USER}"
            )));
        }
        let (id, secret) = self
            .issue_credential(CredentialOwner::User {
                account: account.clone(),
                user_name: user.name.clone(),
            })
            .await?;
        Ok((user, id, secret))
    }

    /// ListAccessKeys: the user's keys (id, status, creation time).
    pub async fn iam_list_access_keys(
        &self,
        account: &AccountId,
        user_name: &str,
    ) -> Result<(IamUser, Vec<Credential>), IamError> {
        let user = self.iam_get_user(account, user_name).await?;
        let keys = self.iam_user_keys(&user).await?;
        Ok((user, keys))
    }

    /// The user an access key of `account` belongs to, for
    /// GetAccessKeyLastUsed: `Some(user)` for a user's key, `None` for a key
    /// of the account's root. A key that is deleted, or is not the
    /// account's, answers `AccessDenied` as IAM does for a key the caller
    /// may not see.
    pub async fn iam_access_key_owner(
        &self,
        account: &AccountId,
        access_key_id: &str,
    ) -> Result<Option<IamUser>, IamError> {
        let denied = || {
            IamError::AccessDenied(format!(
                "User: arn:{}:iam::{account}:root is not authorized to perform: iam:GetAccessKeyLastUsed on resource: access key {}",
                self.config.partition,
                crate::ids::truncate_for_message(access_key_id)
            ))
        };
        let Some(key) = self.store.get_credential(access_key_id).await? else {
            return Err(denied());
        };
        if key.status == CredentialStatus::Revoked {
            return Err(denied());
        }
        match &key.owner {
            CredentialOwner::Account(a) if a == account => Ok(None),
            CredentialOwner::User {
                account: a,
                user_name,
            } if a == account => match self.iam_get_user(account, user_name).await {
                Ok(user) => Ok(Some(user)),
                Err(IamError::NoSuchEntity(_)) => Err(denied()),
                Err(e) => Err(e),
            },
            _ => Err(denied()),
        }
    }

    async fn iam_user_key(
        &self,
        account: &AccountId,
        user_name: &str,
        access_key_id: &str,
    ) -> Result<Credential, IamError> {
        let user = self.iam_get_user(account, user_name).await?;
        self.iam_user_keys(&user)
            .await?
            .into_iter()
            .find(|c| c.access_key_id == access_key_id)
            .ok_or_else(|| {
                IamError::NoSuchEntity(format!(
                    "The Access Key with id {} cannot be found.",
                    crate::ids::truncate_for_message(access_key_id)
                ))
            })
    }

    /// UpdateAccessKey: `Active` or `Inactive`. An inactive key stops
    /// authenticating on this node at once and on others within the
    /// change feed's bound.
    pub async fn iam_update_access_key(
        &self,
        account: &AccountId,
        user_name: &str,
        access_key_id: &str,
        status: CredentialStatus,
    ) -> Result<(), IamError> {
        let key = self.iam_user_key(account, user_name, access_key_id).await?;
        self.store
            .set_credential_status(&key.access_key_id, status)
            .await?;
        self.caches.invalidate_credential(&key.access_key_id);
        Ok(())
    }

    /// DeleteAccessKey.
    pub async fn iam_delete_access_key(
        &self,
        account: &AccountId,
        user_name: &str,
        access_key_id: &str,
    ) -> Result<(), IamError> {
        let key = self.iam_user_key(account, user_name, access_key_id).await?;
        self.store
            .set_credential_status(&key.access_key_id, CredentialStatus::Revoked)
            .await?;
        self.caches.invalidate_credential(&key.access_key_id);
        Ok(())
    }

    // ---- roles ----

    /// CreateRole.
    #[allow(clippy::too_many_arguments)]
    pub async fn iam_create_role(
        &self,
        account: &AccountId,
        name: &str,
        path: Option<&str>,
        assume_role_policy: &str,
        description: Option<&str>,
        max_session_duration: Option<u32>,
        tags: &[Tag],
    ) -> Result<IamRole, IamError> {
        check_name("roleName", name, 64)?;
        let path = path.unwrap_or("/");
        check_path(path)?;
        check_tags(tags)?;
        check_trust_policy(assume_role_policy)?;
        let max_session_duration = max_session_duration.unwrap_or(3600);
        if !(3600..=43200).contains(&max_session_duration) {
            return Err(IamError::Validation(
                "1 validation error detected: Value at 'maxSessionDuration' failed to satisfy constraint: Member must have value between 3600 and 43200".to_owned(),
            ));
        }
        check_description(description)?;
        let role = IamRole {
            account_id: account.clone(),
            name: name.to_owned(),
            path: path.to_owned(),
            role_id: self.unique_id("AROA")?,
            assume_role_policy: assume_role_policy.to_owned(),
            description: description.map(str::to_owned),
            max_session_duration,
            created_at: self.clock.now(),
            tags: tags.to_vec(),
        };
        self.iam_create(
            IamEntity::Role(role.clone()),
            &format!("Role with name {name} already exists."),
        )
        .await?;
        Ok(role)
    }

    /// GetRole.
    pub async fn iam_get_role(&self, account: &AccountId, name: &str) -> Result<IamRole, IamError> {
        match self
            .iam_get(account, IamKind::Role, &entity_name(name))
            .await?
        {
            Some(IamEntity::Role(r)) => Ok(r),
            _ => Err(IamError::NoSuchEntity(format!(
                "The role with name {} cannot be found.",
                crate::ids::truncate_for_message(name)
            ))),
        }
    }

    /// ListRoles.
    pub async fn iam_list_roles(
        &self,
        account: &AccountId,
        path_prefix: Option<&str>,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<IamRole>, IamError> {
        let prefix = path_prefix.unwrap_or("/");
        self.iam_filtered_page(
            account,
            IamKind::Role,
            marker,
            max_items,
            |e| match e {
                IamEntity::Role(r) if r.path.starts_with(prefix) => Some(r),
                _ => None,
            },
            |r| entity_name(&r.name),
        )
        .await
    }

    /// UpdateAssumeRolePolicy.
    pub async fn iam_update_assume_role_policy(
        &self,
        account: &AccountId,
        name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        check_trust_policy(document)?;
        let mut role = self.iam_get_role(account, name).await?;
        document.clone_into(&mut role.assume_role_policy);
        self.store.put_iam_entity(&IamEntity::Role(role)).await?;
        Ok(())
    }

    /// DeleteRole: refused while policies are attached or embedded.
    pub async fn iam_delete_role(&self, account: &AccountId, name: &str) -> Result<(), IamError> {
        let role = self.iam_get_role(account, name).await?;
        let owner = IamOwner::Role(role.name.clone());
        for (kind, what) in [
            (IamKind::RoleInlinePolicy, "must delete policies first"),
            (IamKind::RoleAttachment, "must detach all policies first"),
        ] {
            if !self
                .iam_list(account, kind, child_prefix(&owner), None, 1)
                .await?
                .is_empty()
            {
                return Err(IamError::DeleteConflict(format!(
                    "Cannot delete entity, {what}."
                )));
            }
        }
        self.store
            .delete_iam_entity(account, IamKind::Role, &entity_name(&role.name))
            .await?;
        self.caches.clear();
        Ok(())
    }

    // ---- inline policies ----

    /// The owner as stored (its spelling), or `NoSuchEntity`.
    async fn iam_owner(&self, account: &AccountId, owner: &IamOwner) -> Result<IamOwner, IamError> {
        Ok(match owner {
            IamOwner::User(n) => IamOwner::User(self.iam_get_user(account, n).await?.name),
            IamOwner::Role(n) => IamOwner::Role(self.iam_get_role(account, n).await?.name),
        })
    }

    fn inline_kind(owner: &IamOwner) -> IamKind {
        match owner {
            IamOwner::User(_) => IamKind::UserInlinePolicy,
            IamOwner::Role(_) => IamKind::RoleInlinePolicy,
        }
    }

    /// PutUserPolicy / PutRolePolicy: adds or replaces an inline policy.
    pub async fn iam_put_inline_policy(
        &self,
        account: &AccountId,
        owner: &IamOwner,
        policy_name: &str,
        document: &str,
    ) -> Result<(), IamError> {
        check_name("policyName", policy_name, 128)?;
        let max = match owner {
            IamOwner::User(_) => MAX_USER_INLINE_POLICY,
            IamOwner::Role(_) => MAX_ROLE_INLINE_POLICY,
        };
        check_identity_policy(document, max)?;
        let owner = self.iam_owner(account, owner).await?;
        self.store
            .put_iam_entity(&IamEntity::InlinePolicy(IamInlinePolicy {
                account_id: account.clone(),
                owner,
                name: policy_name.to_owned(),
                document: document.to_owned(),
            }))
            .await?;
        self.caches.clear();
        Ok(())
    }

    /// GetUserPolicy / GetRolePolicy.
    pub async fn iam_get_inline_policy(
        &self,
        account: &AccountId,
        owner: &IamOwner,
        policy_name: &str,
    ) -> Result<IamInlinePolicy, IamError> {
        let owner = self.iam_owner(account, owner).await?;
        let name = format!(
            "{}{}",
            child_prefix(&owner),
            policy_name.to_ascii_lowercase()
        );
        match self
            .iam_get(account, Self::inline_kind(&owner), &name)
            .await?
        {
            Some(IamEntity::InlinePolicy(p)) => Ok(p),
            _ => Err(IamError::NoSuchEntity(format!(
                "The {} policy with name {} cannot be found.",
                match owner {
                    IamOwner::User(_) => "user",
                    IamOwner::Role(_) => "role",
                },
                crate::ids::truncate_for_message(policy_name)
            ))),
        }
    }

    /// Every inline policy of an owner (for ListUserPolicies and for
    /// evaluation).
    pub async fn iam_inline_policies(
        &self,
        account: &AccountId,
        owner: &IamOwner,
    ) -> Result<Vec<IamInlinePolicy>, IamError> {
        Ok(self
            .iam_list_all(account, Self::inline_kind(owner), child_prefix(owner))
            .await?
            .into_iter()
            .filter_map(|e| match e {
                IamEntity::InlinePolicy(p) => Some(p),
                _ => None,
            })
            .collect())
    }

    /// ListUserPolicies / ListRolePolicies: the names.
    pub async fn iam_list_inline_policies(
        &self,
        account: &AccountId,
        owner: &IamOwner,
    ) -> Result<Vec<String>, IamError> {
        let owner = self.iam_owner(account, owner).await?;
        Ok(self
            .iam_inline_policies(account, &owner)
            .await?
            .into_iter()
            .map(|p| p.name)
            .collect())
    }

    /// DeleteUserPolicy / DeleteRolePolicy.
    pub async fn iam_delete_inline_policy(
        &self,
        account: &AccountId,
        owner: &IamOwner,
        policy_name: &str,
    ) -> Result<(), IamError> {
        let policy = self
            .iam_get_inline_policy(account, owner, policy_name)
            .await?;
        self.store
            .delete_iam_entity(
                account,
                Self::inline_kind(&policy.owner),
                &IamEntity::InlinePolicy(policy.clone()).name(),
            )
            .await?;
        self.caches.clear();
        Ok(())
    }

    // ---- managed policies ----

    /// CreatePolicy.
    pub async fn iam_create_policy(
        &self,
        account: &AccountId,
        name: &str,
        path: Option<&str>,
        document: &str,
        description: Option<&str>,
    ) -> Result<IamManagedPolicy, IamError> {
        check_name("policyName", name, 128)?;
        let path = path.unwrap_or("/");
        check_path(path)?;
        check_identity_policy(document, MAX_MANAGED_POLICY)?;
        check_description(description)?;
        let policy = IamManagedPolicy {
            account_id: account.clone(),
            name: name.to_owned(),
            path: path.to_owned(),
            policy_id: self.unique_id("ANPA")?,
            document: document.to_owned(),
            description: description.map(str::to_owned),
            created_at: self.clock.now(),
        };
        self.iam_create(
            IamEntity::Policy(policy.clone()),
            &format!("A policy called {name} already exists. Duplicate names are not allowed."),
        )
        .await?;
        Ok(policy)
    }

    /// The managed policy an ARN names, in `account`.
    pub async fn iam_get_policy(
        &self,
        account: &AccountId,
        policy_arn: &str,
    ) -> Result<IamManagedPolicy, IamError> {
        let missing = || {
            IamError::NoSuchEntity(format!(
                "Policy {} does not exist or is not attachable.",
                crate::ids::truncate_for_message(policy_arn)
            ))
        };
        let prefix = format!("arn:{}:iam::{}:policy/", self.config.partition, account);
        let Some(rest) = policy_arn.strip_prefix(&prefix) else {
            if policy_arn.starts_with("arn:") {
                return Err(missing());
            }
            return Err(IamError::InvalidInput(format!(
                "ARN {} is not valid.",
                crate::ids::truncate_for_message(policy_arn)
            )));
        };
        let name = rest.rsplit('/').next().unwrap_or(rest);
        match self
            .iam_get(account, IamKind::Policy, &entity_name(name))
            .await?
        {
            Some(IamEntity::Policy(p)) if self.policy_arn(&p) == policy_arn => Ok(p),
            _ => Err(missing()),
        }
    }

    /// ListPolicies: the account's customer managed policies whose path
    /// starts with `path_prefix`, by name, each with its attachment count;
    /// `only_attached` keeps those attached to a user or role.
    pub async fn iam_list_policies(
        &self,
        account: &AccountId,
        path_prefix: Option<&str>,
        only_attached: bool,
        marker: Option<&str>,
        max_items: usize,
    ) -> Result<Page<(IamManagedPolicy, usize)>, IamError> {
        let prefix = path_prefix.unwrap_or("/");
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for kind in [IamKind::UserAttachment, IamKind::RoleAttachment] {
            for e in self.iam_list_all(account, kind, String::new()).await? {
                if let IamEntity::Attachment(a) = e {
                    *counts.entry(a.policy_arn).or_default() += 1;
                }
            }
        }
        self.iam_filtered_page(
            account,
            IamKind::Policy,
            marker,
            max_items,
            |e| {
                let IamEntity::Policy(p) = e else { return None };
                let n = counts.get(&self.policy_arn(&p)).copied().unwrap_or(0);
                (p.path.starts_with(prefix) && (n > 0 || !only_attached)).then_some((p, n))
            },
            |(p, _)| entity_name(&p.name),
        )
        .await
    }

    /// How many users and roles a managed policy is attached to.
    pub async fn iam_attachment_count(
        &self,
        account: &AccountId,
        policy_arn: &str,
    ) -> Result<usize, IamError> {
        let mut n = 0;
        for kind in [IamKind::UserAttachment, IamKind::RoleAttachment] {
            n += self
                .iam_list_all(account, kind, String::new())
                .await?
                .iter()
                .filter(|e| matches!(e, IamEntity::Attachment(a) if a.policy_arn == policy_arn))
                .count();
        }
        Ok(n)
    }

    /// DeletePolicy: refused while attached.
    pub async fn iam_delete_policy(
        &self,
        account: &AccountId,
        policy_arn: &str,
    ) -> Result<(), IamError> {
        let policy = self.iam_get_policy(account, policy_arn).await?;
        if self.iam_attachment_count(account, policy_arn).await? > 0 {
            return Err(IamError::DeleteConflict(
                "Cannot delete a policy attached to entities.".to_owned(),
            ));
        }
        self.store
            .delete_iam_entity(account, IamKind::Policy, &entity_name(&policy.name))
            .await?;
        self.caches.clear();
        Ok(())
    }

    fn attachment_kind(owner: &IamOwner) -> IamKind {
        match owner {
            IamOwner::User(_) => IamKind::UserAttachment,
            IamOwner::Role(_) => IamKind::RoleAttachment,
        }
    }

    /// AttachUserPolicy / AttachRolePolicy (idempotent).
    pub async fn iam_attach_policy(
        &self,
        account: &AccountId,
        owner: &IamOwner,
        policy_arn: &str,
    ) -> Result<(), IamError> {
        let owner = self.iam_owner(account, owner).await?;
        self.iam_get_policy(account, policy_arn).await?;
        let attached = self.iam_attached_policies(account, &owner).await?;
        if attached.iter().any(|a| a.policy_arn == policy_arn) {
            return Ok(());
        }
        if attached.len() >= MAX_ATTACHED_POLICIES {
            return Err(IamError::LimitExceeded(format!(
                "Cannot exceed quota for PoliciesPerUser: {MAX_ATTACHED_POLICIES}"
            )));
        }
        self.store
            .put_iam_entity(&IamEntity::Attachment(IamAttachment {
                account_id: account.clone(),
                owner,
                policy_arn: policy_arn.to_owned(),
            }))
            .await?;
        self.caches.clear();
        Ok(())
    }

    /// DetachUserPolicy / DetachRolePolicy.
    pub async fn iam_detach_policy(
        &self,
        account: &AccountId,
        owner: &IamOwner,
        policy_arn: &str,
    ) -> Result<(), IamError> {
        let owner = self.iam_owner(account, owner).await?;
        let attachment = IamEntity::Attachment(IamAttachment {
            account_id: account.clone(),
            owner: owner.clone(),
            policy_arn: policy_arn.to_owned(),
        });
        let deleted = self
            .store
            .delete_iam_entity(account, Self::attachment_kind(&owner), &attachment.name())
            .await?;
        if !deleted {
            return Err(IamError::NoSuchEntity(format!(
                "Policy {} was not found.",
                crate::ids::truncate_for_message(policy_arn)
            )));
        }
        self.caches.clear();
        Ok(())
    }

    /// ListAttachedUserPolicies / ListAttachedRolePolicies.
    pub async fn iam_attached_policies(
        &self,
        account: &AccountId,
        owner: &IamOwner,
    ) -> Result<Vec<IamAttachment>, IamError> {
        Ok(self
            .iam_list_all(account, Self::attachment_kind(owner), child_prefix(owner))
            .await?
            .into_iter()
            .filter_map(|e| match e {
                IamEntity::Attachment(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    /// The identity policy documents that apply to `owner`: its inline
    /// policies and the managed policies attached to it.
    pub async fn iam_identity_policies(
        &self,
        account: &AccountId,
        owner: &IamOwner,
    ) -> Result<Vec<String>, IamError> {
        let mut docs: Vec<String> = self
            .iam_inline_policies(account, owner)
            .await?
            .into_iter()
            .map(|p| p.document)
            .collect();
        for a in self.iam_attached_policies(account, owner).await? {
            if let Ok(p) = self.iam_get_policy(account, &a.policy_arn).await {
                docs.push(p.document);
            }
        }
        Ok(docs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn tags_allow_iam_characters_and_refuse_control_characters() {
        check_tags(&[tag("team", "pay"), tag("Cost Center", "a_b.c:d/e=f+g-h@i")]).unwrap();
        check_tags(&[tag("équipe", "Zürich 東京 ٣"), tag("k", "")]).unwrap();
        for (k, v) in [
            ("k", "a\u{0}b"),
            ("k\u{1}", "v"),
            ("k", "line\nbreak"),
            ("k", "del\u{7f}"),
            ("k", "c1\u{85}"),
            ("k", "<b>"),
            ("k", "a,b"),
        ] {
            assert!(
                matches!(check_tags(&[tag(k, v)]), Err(IamError::Validation(_))),
                "{k:?}={v:?}"
            );
        }
    }

    #[test]
    fn descriptions_refuse_control_characters_but_not_white_space() {
        check_description(None).unwrap();
        check_description(Some("deploys\tthe\r\nservice, «vite»")).unwrap();
        check_description(Some(&"d".repeat(1000))).unwrap();
        for bad in ["a\u{0}b", "esc\u{1b}[31m", "del\u{7f}", "c1\u{9b}"] {
            assert!(
                matches!(check_description(Some(bad)), Err(IamError::Validation(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            check_description(Some(&"d".repeat(1001))),
            Err(IamError::Validation(_))
        ));
    }
}
