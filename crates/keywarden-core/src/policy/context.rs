//! What the evaluator knows about a request: who asks ([`PrincipalInfo`])
//! and the request's condition keys ([`RequestContext`]).
//!
//! Neither type holds secrets (no keys, no credentials), so both derive
//! `Debug`.

/// Who is asking: the authenticated principal, as the server resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalInfo {
    /// The principal's ARN: `arn:aws:iam::111122223333:root`,
    /// `arn:aws:iam::111122223333:user/path/name`,
    /// `arn:aws:sts::111122223333:assumed-role/RoleName/session`, or a
    /// product's role ARN.
    pub arn: String,
    /// The principal's 12-digit account id.
    pub account: String,
    /// What kind of principal it is.
    pub kind: PrincipalKind,
    /// `aws:userid`: the account id for root, `AIDA...` for users,
    /// `AROA...:session` for role sessions.
    pub user_id: String,
    /// `aws:username` (IAM users only).
    pub username: Option<String>,
    /// `aws:PrincipalTag/<key>`: the principal's tags.
    pub tags: Vec<(String, String)>,
}

/// The kinds of principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    /// The account's root.
    Root,
    /// An IAM user.
    User,
    /// A session of an IAM role.
    AssumedRole {
        /// The role's ARN, `arn:aws:iam::111122223333:role/path/Name`.
        role_arn: String,
        /// The session name.
        session_name: String,
    },
    /// A cloud product acting through its service.
    Service {
        /// The service principal name a key policy's `Principal.Service`
        /// names, e.g. `evs.keywarden.internal`.
        name: String,
    },
}

/// The request's condition keys: name (looked up ignoring ASCII case, as AWS
/// matches condition key names) to values. Single-valued keys hold one
/// value, multivalued keys (`kms:EncryptionContextKeys`,
/// `kms:GrantOperations`) any number.
///
/// Keys describing the principal (`aws:username`, `aws:userid`,
/// `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalTag/*`,
/// `aws:PrincipalType`, `aws:PrincipalServiceName`, `kms:CallerAccount`) are
/// derived from [`PrincipalInfo`] by the evaluator and take precedence over
/// entries here, so a request context cannot impersonate its principal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    // A vector, not a map: contexts hold a handful of keys, and a linear
    // scan comparing ignoring case needs no lower-cased copy of the name.
    entries: Vec<(String, Vec<String>)>,
}

impl RequestContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a single-valued key, replacing any earlier values of it.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.insert_multi(key, [value.into()])
    }

    /// Sets a multivalued key (possibly to no values), replacing any earlier
    /// values of it.
    pub fn insert_multi<I, V>(&mut self, key: impl Into<String>, values: I) -> &mut Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        let key = key.into();
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        match self
            .entries
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        {
            Some((_, slot)) => *slot = values,
            None => self.entries.push((key, values)),
        }
        self
    }

    /// [`insert`](Self::insert) by value, for building a context in one
    /// expression.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// [`insert_multi`](Self::insert_multi) by value.
    pub fn with_multi<I, V>(mut self, key: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<String>,
    {
        self.insert_multi(key, values);
        self
    }

    /// Sets every key of `other`, replacing earlier values of the same keys.
    pub fn merge(&mut self, other: &RequestContext) -> &mut Self {
        for (k, v) in &other.entries {
            self.insert_multi(k.clone(), v.iter().cloned());
        }
        self
    }

    /// The values of `key` (ignoring ASCII case), if the request has it.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_looked_up_ignoring_case_and_replaced() {
        let mut ctx = RequestContext::new();
        ctx.insert("kms:ViaService", "ec2.us-east-1.amazonaws.com");
        assert_eq!(
            ctx.get("KMS:viaservice"),
            Some(&["ec2.us-east-1.amazonaws.com".to_owned()][..])
        );
        ctx.insert("kms:viaSERVICE", "rds.us-east-1.amazonaws.com");
        assert_eq!(
            ctx.get("kms:ViaService").unwrap(),
            &["rds.us-east-1.amazonaws.com".to_owned()]
        );
        let ctx = ctx.with_multi("kms:EncryptionContextKeys", ["a", "b"]);
        assert_eq!(ctx.get("kms:encryptioncontextkeys").unwrap().len(), 2);
        assert_eq!(ctx.get("kms:CallerAccount"), None);
    }

    #[test]
    fn merge_replaces_keys_of_the_same_name_and_keeps_the_rest() {
        let mut ctx = RequestContext::new()
            .with("aws:SourceIp", "10.0.0.1")
            .with("kms:ViaService", "rds.us-east-1.amazonaws.com");
        let other = RequestContext::new()
            .with("AWS:sourceip", "127.0.0.1")
            .with_multi("aws:TagKeys", ["a", "b"]);
        ctx.merge(&other);
        assert_eq!(ctx.get("aws:SourceIp").unwrap(), &["127.0.0.1".to_owned()]);
        assert_eq!(ctx.get("aws:TagKeys").unwrap().len(), 2);
        assert_eq!(
            ctx.get("kms:ViaService").unwrap(),
            &["rds.us-east-1.amazonaws.com".to_owned()]
        );
    }
}
