//! The IAM Query API on the KMS listener (issue 18): users and their access
//! keys, roles, inline and customer managed policies, attachments.
//!
//! A request is IAM's when its SigV4 credential scope names the service
//! `iam` (the endpoint URL is the same). AWS's Query protocol
//! (`query.rs`): a form body with `Action=...&Version=2010-05-08`, XML
//! answers, `<ErrorResponse>` errors with IAM's codes. The operations are
//! `keywarden_core::ops::iam`; this file decodes parameters and renders
//! answers.
//!
//! Who may call: an account's root may call every action. A cloud
//! product's credentials may call none. IAM users may call what their
//! identity policies allow (`iam:<Action>` on the resource's ARN); until
//! identity policies are evaluated, users are refused every IAM action.

use keywarden_core::iam::{IamManagedPolicy, IamOwner, IamRole, IamUser};
use keywarden_core::ids::{truncate_for_message, AccountId};
use keywarden_core::kms::Kms;
use keywarden_core::model::{Credential, CredentialStatus, Tag};
use keywarden_core::ops::accounts::ActiveOwner;
use keywarden_core::ops::iam::{max_items, IamError};
use keywarden_core::Caller;

use crate::error::ApiError;
use crate::query::{iso_date, policy_encode, query_error, Params, XmlAnswer};

/// The IAM API version the clients send.
pub const VERSION: &str = "2010-05-08";

/// The XML namespace of IAM answers.
pub const XMLNS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

/// Every action served, for `InvalidAction` and the docs.
pub const ACTIONS: &[&str] = &[
    "CreateUser",
    "GetUser",
    "ListUsers",
    "DeleteUser",
    "TagUser",
    "UntagUser",
    "ListUserTags",
    "CreateAccessKey",
    "ListAccessKeys",
    "UpdateAccessKey",
    "DeleteAccessKey",
    "PutUserPolicy",
    "GetUserPolicy",
    "ListUserPolicies",
    "DeleteUserPolicy",
    "CreateRole",
    "GetRole",
    "ListRoles",
    "DeleteRole",
    "UpdateAssumeRolePolicy",
    "ListRoleTags",
    "PutRolePolicy",
    "GetRolePolicy",
    "ListRolePolicies",
    "DeleteRolePolicy",
    "CreatePolicy",
    "GetPolicy",
    "GetPolicyVersion",
    "ListPolicyVersions",
    "DeletePolicy",
    "AttachUserPolicy",
    "DetachUserPolicy",
    "AttachRolePolicy",
    "DetachRolePolicy",
    "ListAttachedUserPolicies",
    "ListAttachedRolePolicies",
    "ListPolicies",
    "GetAccessKeyLastUsed",
    "ListGroupsForUser",
    "ListInstanceProfilesForRole",
    "ListSSHPublicKeys",
    "ListServiceSpecificCredentials",
    "ListSigningCertificates",
    "ListMFADevices",
    "ListVirtualMFADevices",
    "GetLoginProfile",
    "DeleteLoginProfile",
];

/// What a request was: for the audit log and the access log.
pub fn action_name(body: &[u8]) -> String {
    let action = form_urlencoded::parse(body)
        .find(|(k, _)| k == "Action")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    format!("iam:{}", truncate_for_message(&action))
}

impl From<IamError> for ApiError {
    fn from(e: IamError) -> Self {
        ApiError::Iam(e)
    }
}

/// Runs the IAM action in `body` for the authenticated `owner`.
pub async fn run(
    kms: &Kms,
    owner: &ActiveOwner,
    caller: Option<&Caller>,
    body: &[u8],
    request_id: &str,
) -> Result<Vec<u8>, ApiError> {
    let params = Params::parse(body)?;
    let action = params.action()?.to_owned();
    params.check_version(VERSION)?;
    if !ACTIONS.contains(&action.as_str()) {
        return Err(query_error(
            "InvalidAction",
            format!(
                "Could not find operation {} for version {VERSION}",
                truncate_for_message(&action)
            ),
        ));
    }
    let account = authorize(kms, owner, caller, &action, &params).await?;
    Call {
        kms,
        account: &account,
        params: &params,
        action: &action,
        request_id,
    }
    .run()
    .await
}

/// The account an IAM request acts in, if the caller may call `action`:
/// the root every action of its account; users and role sessions what
/// their identity policies allow (`iam:<Action>` on the ARN of the user,
/// role or policy the request names, `*` for listings); products nothing.
async fn authorize(
    kms: &Kms,
    owner: &ActiveOwner,
    caller: Option<&Caller>,
    action: &str,
    params: &Params,
) -> Result<AccountId, ApiError> {
    let caller = match (owner, caller) {
        (ActiveOwner::Account(account), _) => return Ok(account.clone()),
        (_, Some(caller)) => caller,
        (_, None) => {
            let who = match owner {
                ActiveOwner::Product(product) => keywarden_core::ids::product_principal_arn(
                    &kms.config().partition,
                    &product.code,
                ),
                _ => String::new(),
            };
            return Err(IamError::AccessDenied(format!(
                "User: {who} is not authorized to perform: iam:{action} because cloud products may not call IAM"
            ))
            .into());
        }
    };
    let resource = resource_arn(kms, &caller.account_id, action, params).await;
    // The tags a request sets or removes are condition keys
    // (`aws:RequestTag/<key>`, `aws:TagKeys`).
    let tagged;
    let caller = match action {
        "CreateUser" | "TagUser" | "CreateRole" => {
            tagged = caller.with_operation_keys(keywarden_core::authz::request_tag_keys(
                &params.tags("Tags")?,
            ));
            &tagged
        }
        "UntagUser" => {
            tagged = caller.with_operation_keys(keywarden_core::authz::removed_tag_keys(
                &params.list("TagKeys"),
            ));
            &tagged
        }
        _ => caller,
    };
    kms.authorize_action(caller, &format!("iam:{action}"), &resource)
        .await
        .map_err(|e| match e {
            keywarden_core::KmsError::AccessDenied(m) => IamError::AccessDenied(m).into(),
            other => ApiError::Kms(other),
        })?;
    Ok(caller.account_id.clone())
}

/// The resource an IAM action is decided on: the named user's, role's or
/// policy's ARN (with its path when it exists), `*` for the rest.
async fn resource_arn(kms: &Kms, account: &AccountId, action: &str, params: &Params) -> String {
    let partition = &kms.config().partition;
    if let Some(arn) = params.get("PolicyArn") {
        if !action.starts_with("Attach") && !action.starts_with("Detach") {
            return arn.to_owned();
        }
    }
    if action == "CreatePolicy" {
        return format!(
            "arn:{partition}:iam::{account}:policy{}{}",
            params.get("Path").unwrap_or("/"),
            params.get("PolicyName").unwrap_or_default()
        );
    }
    if let Some(name) = params.get("UserName") {
        return match kms.iam_get_user(account, name).await {
            Ok(user) => kms.user_arn(&user),
            Err(_) => format!(
                "arn:{partition}:iam::{account}:user{}{name}",
                params.get("Path").unwrap_or("/")
            ),
        };
    }
    if let Some(name) = params.get("RoleName") {
        return match kms.iam_get_role(account, name).await {
            Ok(role) => kms.role_arn(&role),
            Err(_) => format!(
                "arn:{partition}:iam::{account}:role{}{name}",
                params.get("Path").unwrap_or("/")
            ),
        };
    }
    "*".to_owned()
}

struct Call<'a> {
    kms: &'a Kms,
    account: &'a AccountId,
    params: &'a Params,
    action: &'a str,
    request_id: &'a str,
}

impl Call<'_> {
    fn answer(&self) -> XmlAnswer {
        XmlAnswer::new(self.action, XMLNS)
    }

    fn empty(&self) -> Vec<u8> {
        XmlAnswer::empty(self.action, XMLNS, self.request_id)
    }

    fn max_items(&self) -> Result<usize, ApiError> {
        let n = self.params.integer("MaxItems")?;
        Ok(max_items(
            n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        )?)
    }

    fn user_owner(&self) -> Result<IamOwner, ApiError> {
        Ok(IamOwner::User(self.params.required("UserName")?.to_owned()))
    }

    fn role_owner(&self) -> Result<IamOwner, ApiError> {
        Ok(IamOwner::Role(self.params.required("RoleName")?.to_owned()))
    }

    /// The user or role the action names: `...Role...` actions take
    /// `RoleName`, `...User...` actions `UserName`.
    fn owner(&self) -> Result<IamOwner, ApiError> {
        if self.action.contains("Role") {
            self.role_owner()
        } else {
            self.user_owner()
        }
    }

    async fn run(self) -> Result<Vec<u8>, ApiError> {
        let kms = self.kms;
        let account = self.account;
        let p = self.params;
        match self.action {
            "CreateUser" => {
                let user = kms
                    .iam_create_user(
                        account,
                        p.required("UserName")?,
                        p.get("Path"),
                        &p.tags("Tags")?,
                    )
                    .await?;
                let mut a = self.answer();
                self.user(&mut a, &user);
                Ok(a.finish(self.request_id))
            }
            "GetUser" => {
                let user = match p.get("UserName") {
                    Some(name) => kms.iam_get_user(account, name).await?,
                    None => {
                        return Err(IamError::Validation(
                            "GetUser without UserName names the caller; the account's root has no user. Give UserName.".to_owned(),
                        )
                        .into())
                    }
                };
                let mut a = self.answer();
                self.user(&mut a, &user);
                Ok(a.finish(self.request_id))
            }
            "ListUsers" => {
                let page = kms
                    .iam_list_users(
                        account,
                        p.get("PathPrefix"),
                        p.get("Marker"),
                        self.max_items()?,
                    )
                    .await?;
                let mut a = self.answer();
                a.open("Users");
                for u in &page.items {
                    a.open("member");
                    self.user_fields(&mut a, u, false);
                    a.close("member");
                }
                a.close("Users");
                truncation(&mut a, page.next_marker.as_deref());
                Ok(a.finish(self.request_id))
            }
            "DeleteUser" => {
                kms.iam_delete_user(account, p.required("UserName")?)
                    .await?;
                Ok(self.empty())
            }
            "TagUser" => {
                kms.iam_tag_user(account, p.required("UserName")?, &p.tags("Tags")?)
                    .await?;
                Ok(self.empty())
            }
            "UntagUser" => {
                kms.iam_untag_user(account, p.required("UserName")?, &p.list("TagKeys"))
                    .await?;
                Ok(self.empty())
            }
            "ListUserTags" => {
                let user = kms.iam_get_user(account, p.required("UserName")?).await?;
                let mut a = self.answer();
                tags(&mut a, &user.tags, true);
                a.text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "CreateAccessKey" => {
                let (user, id, secret) = kms
                    .iam_create_access_key(account, p.required("UserName")?)
                    .await?;
                let mut a = self.answer();
                a.open("AccessKey")
                    .text("UserName", &user.name)
                    .text("AccessKeyId", &id)
                    .text("Status", "Active");
                // The one answer that carries the secret, as AWS's does.
                let secret_text = std::str::from_utf8(secret.expose()).unwrap_or_default();
                a.text("SecretAccessKey", secret_text)
                    .text("CreateDate", &iso_date(kms.clock().now().0))
                    .close("AccessKey");
                Ok(a.finish(self.request_id))
            }
            "ListAccessKeys" => {
                let name = p.required("UserName")?;
                let (user, keys) = kms.iam_list_access_keys(account, name).await?;
                let mut a = self.answer();
                a.open("AccessKeyMetadata");
                for k in &keys {
                    a.open("member");
                    key_metadata(&mut a, &user, k);
                    a.close("member");
                }
                a.close("AccessKeyMetadata");
                a.text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "UpdateAccessKey" => {
                let status = match p.required("Status")? {
                    "Active" => CredentialStatus::Active,
                    "Inactive" => CredentialStatus::Inactive,
                    other => {
                        return Err(IamError::Validation(format!(
                            "1 validation error detected: Value '{}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]",
                            truncate_for_message(other)
                        ))
                        .into())
                    }
                };
                kms.iam_update_access_key(
                    account,
                    p.required("UserName")?,
                    p.required("AccessKeyId")?,
                    status,
                )
                .await?;
                Ok(self.empty())
            }
            "DeleteAccessKey" => {
                kms.iam_delete_access_key(
                    account,
                    p.required("UserName")?,
                    p.required("AccessKeyId")?,
                )
                .await?;
                Ok(self.empty())
            }
            "PutUserPolicy" | "PutRolePolicy" => {
                let owner = self.owner()?;
                kms.iam_put_inline_policy(
                    account,
                    &owner,
                    p.required("PolicyName")?,
                    p.required("PolicyDocument")?,
                )
                .await?;
                Ok(self.empty())
            }
            "GetUserPolicy" | "GetRolePolicy" => {
                let owner = self.owner()?;
                let policy = kms
                    .iam_get_inline_policy(account, &owner, p.required("PolicyName")?)
                    .await?;
                let mut a = self.answer();
                match &policy.owner {
                    IamOwner::User(n) => a.text("UserName", n),
                    IamOwner::Role(n) => a.text("RoleName", n),
                };
                a.text("PolicyName", &policy.name)
                    .text("PolicyDocument", &policy_encode(&policy.document));
                Ok(a.finish(self.request_id))
            }
            "ListUserPolicies" | "ListRolePolicies" => {
                let owner = self.owner()?;
                let names = kms.iam_list_inline_policies(account, &owner).await?;
                let mut a = self.answer();
                a.open("PolicyNames");
                for n in &names {
                    a.text("member", n);
                }
                a.close("PolicyNames");
                a.text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "DeleteUserPolicy" | "DeleteRolePolicy" => {
                let owner = self.owner()?;
                kms.iam_delete_inline_policy(account, &owner, p.required("PolicyName")?)
                    .await?;
                Ok(self.empty())
            }
            "CreateRole" => {
                let max = p
                    .integer("MaxSessionDuration")?
                    .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
                let role = kms
                    .iam_create_role(
                        account,
                        p.required("RoleName")?,
                        p.get("Path"),
                        p.required("AssumeRolePolicyDocument")?,
                        p.get("Description"),
                        max,
                        &p.tags("Tags")?,
                    )
                    .await?;
                let mut a = self.answer();
                a.open("Role");
                self.role_fields(&mut a, &role);
                a.close("Role");
                Ok(a.finish(self.request_id))
            }
            "GetRole" => {
                let role = kms.iam_get_role(account, p.required("RoleName")?).await?;
                let mut a = self.answer();
                a.open("Role");
                self.role_fields(&mut a, &role);
                a.open("RoleLastUsed").close("RoleLastUsed");
                a.close("Role");
                Ok(a.finish(self.request_id))
            }
            "ListRoles" => {
                let page = kms
                    .iam_list_roles(
                        account,
                        p.get("PathPrefix"),
                        p.get("Marker"),
                        self.max_items()?,
                    )
                    .await?;
                let mut a = self.answer();
                a.open("Roles");
                for r in &page.items {
                    a.open("member");
                    self.role_fields(&mut a, r);
                    a.close("member");
                }
                a.close("Roles");
                truncation(&mut a, page.next_marker.as_deref());
                Ok(a.finish(self.request_id))
            }
            "ListRoleTags" => {
                let role = kms.iam_get_role(account, p.required("RoleName")?).await?;
                let mut a = self.answer();
                tags(&mut a, &role.tags, true);
                a.text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "DeleteRole" => {
                kms.iam_delete_role(account, p.required("RoleName")?)
                    .await?;
                Ok(self.empty())
            }
            "UpdateAssumeRolePolicy" => {
                kms.iam_update_assume_role_policy(
                    account,
                    p.required("RoleName")?,
                    p.required("PolicyDocument")?,
                )
                .await?;
                Ok(self.empty())
            }
            "CreatePolicy" => {
                let policy = kms
                    .iam_create_policy(
                        account,
                        p.required("PolicyName")?,
                        p.get("Path"),
                        p.required("PolicyDocument")?,
                        p.get("Description"),
                    )
                    .await?;
                let mut a = self.answer();
                a.open("Policy");
                self.policy_fields(&mut a, &policy, 0, true);
                a.close("Policy");
                Ok(a.finish(self.request_id))
            }
            "GetPolicy" => {
                let arn = p.required("PolicyArn")?;
                let policy = kms.iam_get_policy(account, arn).await?;
                let count = kms.iam_attachment_count(account, arn).await?;
                let mut a = self.answer();
                a.open("Policy");
                self.policy_fields(&mut a, &policy, count, true);
                a.close("Policy");
                Ok(a.finish(self.request_id))
            }
            "GetPolicyVersion" => {
                let policy = kms
                    .iam_get_policy(account, p.required("PolicyArn")?)
                    .await?;
                let version = p.required("VersionId")?;
                if version != "v1" {
                    return Err(IamError::NoSuchEntity(format!(
                        "Policy {} version {} does not exist or is not attachable.",
                        kms.policy_arn(&policy),
                        truncate_for_message(version)
                    ))
                    .into());
                }
                let mut a = self.answer();
                a.open("PolicyVersion");
                version_fields(&mut a, &policy);
                a.close("PolicyVersion");
                Ok(a.finish(self.request_id))
            }
            "ListPolicyVersions" => {
                let policy = kms
                    .iam_get_policy(account, p.required("PolicyArn")?)
                    .await?;
                let mut a = self.answer();
                a.open("Versions").open("member");
                version_fields(&mut a, &policy);
                a.close("member").close("Versions");
                a.text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "DeletePolicy" => {
                kms.iam_delete_policy(account, p.required("PolicyArn")?)
                    .await?;
                Ok(self.empty())
            }
            "AttachUserPolicy" | "AttachRolePolicy" => {
                let owner = self.owner()?;
                kms.iam_attach_policy(account, &owner, p.required("PolicyArn")?)
                    .await?;
                Ok(self.empty())
            }
            "DetachUserPolicy" | "DetachRolePolicy" => {
                let owner = self.owner()?;
                kms.iam_detach_policy(account, &owner, p.required("PolicyArn")?)
                    .await?;
                Ok(self.empty())
            }
            "ListAttachedUserPolicies" | "ListAttachedRolePolicies" => {
                let owner = self.owner()?;
                let owner = match &owner {
                    IamOwner::User(n) => IamOwner::User(kms.iam_get_user(account, n).await?.name),
                    IamOwner::Role(n) => IamOwner::Role(kms.iam_get_role(account, n).await?.name),
                };
                let attached = kms.iam_attached_policies(account, &owner).await?;
                let mut a = self.answer();
                a.open("AttachedPolicies");
                for at in &attached {
                    let name = at.policy_arn.rsplit('/').next().unwrap_or_default();
                    a.open("member")
                        .text("PolicyName", name)
                        .text("PolicyArn", &at.policy_arn)
                        .close("member");
                }
                a.close("AttachedPolicies");
                a.text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "ListPolicies" => {
                let scope = p.one_of("Scope", &["All", "AWS", "Local"])?;
                let usage = p.one_of(
                    "PolicyUsageFilter",
                    &["PermissionsPolicy", "PermissionsBoundary"],
                )?;
                let only_attached = p.boolean("OnlyAttached")?.unwrap_or(false);
                let max_items = self.max_items()?;
                // There are no AWS managed policies, and no policy is used
                // as a permissions boundary.
                let page = if scope == Some("AWS") || usage == Some("PermissionsBoundary") {
                    keywarden_core::kms::Page {
                        items: Vec::new(),
                        next_marker: None,
                    }
                } else {
                    kms.iam_list_policies(
                        account,
                        p.get("PathPrefix"),
                        only_attached,
                        p.get("Marker"),
                        max_items,
                    )
                    .await?
                };
                let mut a = self.answer();
                a.open("Policies");
                for (policy, attachments) in &page.items {
                    a.open("member");
                    // ListPolicies leaves descriptions out (GetPolicy has them).
                    self.policy_fields(&mut a, policy, *attachments, false);
                    a.close("member");
                }
                a.close("Policies");
                truncation(&mut a, page.next_marker.as_deref());
                Ok(a.finish(self.request_id))
            }
            "GetAccessKeyLastUsed" => {
                let user = kms
                    .iam_access_key_owner(account, p.required("AccessKeyId")?)
                    .await?;
                let mut a = self.answer();
                if let Some(user) = &user {
                    a.text("UserName", &user.name);
                }
                // Keywarden does not record when an access key was last
                // used: the answer IAM gives for a key never used.
                a.open("AccessKeyLastUsed")
                    .text("ServiceName", "N/A")
                    .text("Region", "N/A")
                    .close("AccessKeyLastUsed");
                Ok(a.finish(self.request_id))
            }
            // Keywarden has no SSH public keys, service-specific
            // credentials, signing certificates, MFA devices or console
            // passwords: the answers AWS gives for a user that has none.
            // Terraform lists them all when it deletes a user with
            // `force_destroy`.
            "ListSSHPublicKeys" => self.none_for_user("SSHPublicKeys").await,
            "ListServiceSpecificCredentials" => {
                self.none_for_user("ServiceSpecificCredentials").await
            }
            "ListSigningCertificates" => self.none_for_user("Certificates").await,
            "ListMFADevices" => self.none_for_user("MFADevices").await,
            "ListVirtualMFADevices" => {
                p.one_of("AssignmentStatus", &["Assigned", "Unassigned", "Any"])?;
                self.max_items()?;
                let mut a = self.answer();
                a.open("VirtualMFADevices")
                    .close("VirtualMFADevices")
                    .text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "GetLoginProfile" | "DeleteLoginProfile" => {
                let Some(name) = p.get("UserName") else {
                    return Err(IamError::Validation(format!(
                        "{} without UserName names the caller; the account's root has no user. Give UserName.",
                        self.action
                    ))
                    .into());
                };
                let user = kms.iam_get_user(account, name).await?;
                Err(IamError::NoSuchEntity(format!(
                    "Login Profile for User {} cannot be found.",
                    user.name
                ))
                .into())
            }
            // Keywarden has no groups and no instance profiles: the answers
            // AWS gives for an identity that has none.
            "ListGroupsForUser" => {
                kms.iam_get_user(account, p.required("UserName")?).await?;
                let mut a = self.answer();
                a.open("Groups")
                    .close("Groups")
                    .text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            "ListInstanceProfilesForRole" => {
                kms.iam_get_role(account, p.required("RoleName")?).await?;
                let mut a = self.answer();
                a.open("InstanceProfiles")
                    .close("InstanceProfiles")
                    .text("IsTruncated", "false");
                Ok(a.finish(self.request_id))
            }
            other => Err(query_error(
                "InvalidAction",
                format!(
                    "Could not find operation {} for version {VERSION}",
                    truncate_for_message(other)
                ),
            )),
        }
    }

    /// An empty `<list>` for the user `UserName` names (which must exist),
    /// or for the caller without it: the account's root, which has none
    /// either.
    async fn none_for_user(&self, list: &str) -> Result<Vec<u8>, ApiError> {
        if let Some(name) = self.params.get("UserName") {
            self.kms.iam_get_user(self.account, name).await?;
        }
        self.max_items()?;
        let mut a = self.answer();
        a.open(list).close(list).text("IsTruncated", "false");
        Ok(a.finish(self.request_id))
    }

    fn user(&self, a: &mut XmlAnswer, user: &IamUser) {
        a.open("User");
        self.user_fields(a, user, true);
        a.close("User");
    }

    fn user_fields(&self, a: &mut XmlAnswer, user: &IamUser, with_tags: bool) {
        a.text("Path", &user.path)
            .text("UserName", &user.name)
            .text("UserId", &user.user_id)
            .text("Arn", &self.kms.user_arn(user))
            .text("CreateDate", &iso_date(user.created_at.0));
        if with_tags {
            tags(a, &user.tags, false);
        }
    }

    fn role_fields(&self, a: &mut XmlAnswer, role: &IamRole) {
        a.text("Path", &role.path)
            .text("RoleName", &role.name)
            .text("RoleId", &role.role_id)
            .text("Arn", &self.kms.role_arn(role))
            .text("CreateDate", &iso_date(role.created_at.0))
            .text(
                "AssumeRolePolicyDocument",
                &policy_encode(&role.assume_role_policy),
            )
            .opt("Description", role.description.as_deref())
            .text("MaxSessionDuration", &role.max_session_duration.to_string());
        tags(a, &role.tags, false);
    }

    /// A managed policy's members; `with_description`: GetPolicy and
    /// CreatePolicy carry the description, ListPolicies does not.
    fn policy_fields(
        &self,
        a: &mut XmlAnswer,
        policy: &IamManagedPolicy,
        attachments: usize,
        with_description: bool,
    ) {
        let date = iso_date(policy.created_at.0);
        a.text("PolicyName", &policy.name)
            .text("PolicyId", &policy.policy_id)
            .text("Arn", &self.kms.policy_arn(policy))
            .text("Path", &policy.path)
            .text("DefaultVersionId", "v1")
            .text("AttachmentCount", &attachments.to_string())
            .text("PermissionsBoundaryUsageCount", "0")
            .text("IsAttachable", "true")
            .opt(
                "Description",
                policy.description.as_deref().filter(|_| with_description),
            )
            .text("CreateDate", &date)
            .text("UpdateDate", &date);
    }
}

fn version_fields(a: &mut XmlAnswer, policy: &IamManagedPolicy) {
    a.text("Document", &policy_encode(&policy.document))
        .text("VersionId", "v1")
        .text("IsDefaultVersion", "true")
        .text("CreateDate", &iso_date(policy.created_at.0));
}

fn key_metadata(a: &mut XmlAnswer, user: &IamUser, key: &Credential) {
    a.text("UserName", &user.name)
        .text("AccessKeyId", &key.access_key_id)
        .text(
            "Status",
            match key.status {
                CredentialStatus::Active => "Active",
                _ => "Inactive",
            },
        )
        .text("CreateDate", &iso_date(key.created_at.0));
}

/// `<Tags>`; an empty list is left out unless `always`.
fn tags(a: &mut XmlAnswer, tags: &[Tag], always: bool) {
    if tags.is_empty() && !always {
        return;
    }
    a.open("Tags");
    for t in tags {
        a.open("member")
            .text("Key", &t.key)
            .text("Value", &t.value)
            .close("member");
    }
    a.close("Tags");
}

fn truncation(a: &mut XmlAnswer, next_marker: Option<&str>) {
    match next_marker {
        Some(m) => {
            a.text("IsTruncated", "true").text("Marker", m);
        }
        None => {
            a.text("IsTruncated", "false");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ACTIONS;

    /// docs/access-control.md's IAM table names every action served.
    #[test]
    fn every_action_is_documented() {
        let doc = include_str!("../../../docs/access-control.md");
        for action in ACTIONS {
            assert!(
                doc.contains(&format!("`{action}`")),
                "{action} is served but not in docs/access-control.md"
            );
        }
    }
}
