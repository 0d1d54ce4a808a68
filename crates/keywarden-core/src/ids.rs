//! Identifiers: account ids, key ids, alias names, ARNs, and the forms a
//! caller may use to name a key (`KeyId` in the AWS API).

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::KmsError;

/// A 12-digit account id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountId(String);

impl AccountId {
    /// Parses a 12-digit account id.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_owned()))
        } else {
            Err(KmsError::Validation(format!(
                "account id must be 12 digits, got {:?}",
                truncate_for_message(s)
            )))
        }
    }

    /// Makes an account id from 12 random digits drawn from `random` bytes.
    pub fn from_random(random: [u8; 12]) -> Self {
        let digits: String = random.iter().map(|b| char::from(b'0' + (b % 10))).collect();
        AccountId(digits)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The account that owns product principals (`arn:aws:iam::000000000000:role/keywarden-product/<code>`).
/// No tenant account is ever given this id.
pub const PRODUCT_SERVICE_ACCOUNT: &str = "000000000000";

/// The principal ARN of a cloud product:
/// `arn:<partition>:iam::000000000000:role/keywarden-product/<code>`.
pub fn product_principal_arn(partition: &str, code: &ProductCode) -> String {
    format!("arn:{partition}:iam::{PRODUCT_SERVICE_ACCOUNT}:role/keywarden-product/{code}")
}

/// A cloud product's code: 2-16 characters `[a-z0-9]`, e.g. `evs`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductCode(String);

impl ProductCode {
    /// Parses a product code.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        if (2..=16).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            Ok(ProductCode(s.to_owned()))
        } else {
            Err(KmsError::Validation(format!(
                "product code must be 2-16 characters a-z or 0-9, got {:?}",
                truncate_for_message(s)
            )))
        }
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A database keyring's id: `kr-` and 32 lowercase hex digits. It is also
/// the keyring's mount name on the Vault-compatible endpoint
/// (`/v1/<keyring id>/data/<key id>`, docs/integrations/mariadb.md).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct KeyringId(String);

impl KeyringId {
    /// The prefix every keyring id starts with.
    pub const PREFIX: &'static str = "kr-";

    /// Makes a keyring id from 16 random bytes.
    pub fn from_random(random: [u8; 16]) -> Self {
        let mut id = String::with_capacity(35);
        id.push_str(Self::PREFIX);
        for b in random {
            id.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            id.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        KeyringId(id)
    }

    /// Parses `kr-` followed by 32 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        match s.strip_prefix(Self::PREFIX) {
            Some(hex)
                if hex.len() == 32
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(KeyringId(s.to_owned()))
            }
            _ => Err(KmsError::Validation(format!(
                "keyring id must be kr- and 32 lowercase hex digits, got {:?}",
                truncate_for_message(s)
            ))),
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyringId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key id: 16 bytes. A single-Region key's id is a version-4 UUID,
/// rendered lowercase and hyphenated like AWS key ids; a multi-Region key's
/// id is AWS's `mrk-` and 32 lowercase hex digits, whose 16 bytes Keywarden
/// makes with the UUID version nibble 8 (RFC 9562 "custom"), which is how
/// the two kinds are told apart (a ciphertext blob carries only the 16
/// bytes, docs/ciphertext-format.md). Ids order as their text does: every
/// UUID before every `mrk-` id (the order stores list keys in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyId(Uuid);

/// The prefix of multi-Region key ids.
pub const MULTI_REGION_KEY_PREFIX: &str = "mrk-";

impl KeyId {
    /// Makes a version-4 key id from 16 random bytes.
    pub fn from_random(random: [u8; 16]) -> Self {
        KeyId(uuid::Builder::from_random_bytes(random).into_uuid())
    }

    /// Makes a multi-Region key id (`mrk-...`) from 16 random bytes.
    pub fn multi_region_from_random(random: [u8; 16]) -> Self {
        KeyId(uuid::Builder::from_custom_bytes(random).into_uuid())
    }

    /// Whether this is a multi-Region key's id (`mrk-...`).
    pub fn is_multi_region(&self) -> bool {
        self.0.get_version_num() == 8
    }

    /// Parses the canonical 36-character hyphenated form, or `mrk-` and 32
    /// lowercase hex digits of a multi-Region id.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() != 36 {
            return None;
        }
        if let Some(hex) = s.strip_prefix(MULTI_REGION_KEY_PREFIX) {
            if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            let id = KeyId(Uuid::try_parse(hex).ok()?);
            return id.is_multi_region().then_some(id);
        }
        let id = KeyId(Uuid::try_parse(s).ok()?);
        // The hyphenated form is for single-Region ids only, so each id has
        // one text.
        (!id.is_multi_region()).then_some(id)
    }

    /// The 16 raw bytes, as carried in a ciphertext blob.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The key id from its 16 raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        KeyId(Uuid::from_bytes(bytes))
    }
}

impl PartialOrd for KeyId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.is_multi_region(), self.0.as_bytes())
            .cmp(&(other.is_multi_region(), other.0.as_bytes()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_multi_region() {
            write!(f, "{MULTI_REGION_KEY_PREFIX}{}", self.0.simple())
        } else {
            write!(f, "{}", self.0.hyphenated())
        }
    }
}

/// The prefix of the aliases of default keys (`alias_evs`), outside the
/// `alias/` namespace users create aliases in.
pub const DEFAULT_KEY_ALIAS_PREFIX: &str = "alias_";

/// An alias name such as `alias/my-key`, or a default key's `alias_evs`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AliasName(String);

impl AliasName {
    /// Longest alias name AWS accepts.
    pub const MAX_LEN: usize = 256;

    /// Validates a name a user wants to create or change: it must start with
    /// `alias/`, must not be in the reserved `alias/aws/` namespace, and use only
    /// the characters AWS allows. (The system's `alias_<product>` names cannot
    /// pass this check, so users can never take them.)
    pub fn parse_user(s: &str) -> Result<Self, KmsError> {
        Self::check_charset(s)?;
        if s.starts_with(DEFAULT_KEY_ALIAS_PREFIX) {
            return Err(KmsError::InvalidAliasName(format!(
                "Alias names that begin with \"{DEFAULT_KEY_ALIAS_PREFIX}\" are reserved for the default keys of cloud products; aliases must start with the prefix \"alias/\""
            )));
        }
        let Some(rest) = s.strip_prefix("alias/") else {
            return Err(KmsError::InvalidAliasName(
                "Alias must start with the prefix \"alias/\"".into(),
            ));
        };
        if rest.is_empty() {
            return Err(KmsError::InvalidAliasName(
                "Alias name must have characters after \"alias/\"".into(),
            ));
        }
        if rest.starts_with("aws/") {
            return Err(KmsError::InvalidAliasName(
                "Aliases that begin with \"alias/aws/\" are reserved".into(),
            ));
        }
        Ok(AliasName(s.to_owned()))
    }

    /// The alias of a product's default key, `alias_<code>`: the system's
    /// name, which [`AliasName::parse_user`] never accepts.
    pub fn default_key(code: &ProductCode) -> Self {
        AliasName(format!("{DEFAULT_KEY_ALIAS_PREFIX}{code}"))
    }

    /// The product whose default key this alias names, if it is of the
    /// form `alias_<code>` with a well-formed code.
    pub fn default_key_product(&self) -> Option<ProductCode> {
        self.0
            .strip_prefix(DEFAULT_KEY_ALIAS_PREFIX)
            .and_then(|code| ProductCode::parse(code).ok())
    }

    /// Validates a name used to look an alias up (any well-formed name).
    pub fn parse_lookup(s: &str) -> Result<Self, KmsError> {
        Self::check_charset(s)?;
        Ok(AliasName(s.to_owned()))
    }

    fn check_charset(s: &str) -> Result<(), KmsError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(KmsError::Validation(format!(
                "1 validation error detected: Value at 'aliasName' failed to satisfy constraint: Member must have length between 1 and {}",
                Self::MAX_LEN
            )));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'_' | b'-'))
        {
            return Err(KmsError::Validation(
                "1 validation error detected: Value at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$".into(),
            ));
        }
        Ok(())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AliasName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The ways a caller can name a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A bare key id.
    Id(KeyId),
    /// A key ARN.
    KeyArn {
        /// Region named in the ARN.
        region: String,
        /// Account named in the ARN.
        account: String,
        /// The key.
        key: KeyId,
    },
    /// An alias name.
    Alias(AliasName),
    /// An alias ARN.
    AliasArn {
        /// Region named in the ARN.
        region: String,
        /// Account named in the ARN.
        account: String,
        /// The alias.
        alias: AliasName,
    },
}

impl KeyRef {
    /// Parses the `KeyId` parameter of an AWS request.
    pub fn parse(s: &str) -> Result<KeyRef, KmsError> {
        if s.is_empty() || s.len() > 2048 {
            return Err(KmsError::Validation(
                "1 validation error detected: Value at 'keyId' failed to satisfy constraint: Member must have length between 1 and 2048".into(),
            ));
        }
        if let Some(rest) = s.strip_prefix("arn:") {
            // arn:<partition>:kms:<region>:<account>:<resource>
            let parts: Vec<&str> = rest.splitn(5, ':').collect();
            let invalid =
                || KmsError::InvalidArn(format!("Invalid arn {}", truncate_for_message(s)));
            if parts.len() != 5 || parts[1] != "kms" || parts[0].is_empty() {
                return Err(invalid());
            }
            let (region, account, resource) = (parts[2], parts[3], parts[4]);
            if region.is_empty() || account.is_empty() {
                return Err(invalid());
            }
            if let Some(id) = resource.strip_prefix("key/") {
                let key = KeyId::parse(id).ok_or_else(invalid)?;
                return Ok(KeyRef::KeyArn {
                    region: region.to_owned(),
                    account: account.to_owned(),
                    key,
                });
            }
            if resource.starts_with("alias/") || resource.starts_with(DEFAULT_KEY_ALIAS_PREFIX) {
                let alias = AliasName::parse_lookup(resource).map_err(|_| invalid())?;
                return Ok(KeyRef::AliasArn {
                    region: region.to_owned(),
                    account: account.to_owned(),
                    alias,
                });
            }
            return Err(invalid());
        }
        if s.starts_with("alias/") || s.starts_with(DEFAULT_KEY_ALIAS_PREFIX) {
            return Ok(KeyRef::Alias(AliasName::parse_lookup(s)?));
        }
        KeyId::parse(s).map(KeyRef::Id).ok_or_else(|| {
            let shown = truncate_for_message(s);
            // A bare alias name is the usual slip: say how aliases are named.
            let alias_like = s.len() <= 250
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            if alias_like {
                KmsError::NotFound(format!(
                    "Invalid keyId '{shown}' (an alias is named with its prefix: 'alias/{shown}')"
                ))
            } else {
                KmsError::NotFound(format!("Invalid keyId '{shown}'"))
            }
        })
    }
}

/// Shortens caller-supplied text before it is echoed in an error message.
pub fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 128;
    if s.len() <= MAX {
        s.to_owned()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn multi_region_ids_have_the_mrk_form_and_sort_after_single_region_ids() {
        let mrk = KeyId::multi_region_from_random([0u8; 16]);
        assert!(mrk.is_multi_region());
        let text = mrk.to_string();
        assert_eq!(text, "mrk-00000000000080008000000000000000");
        assert_eq!(KeyId::parse(&text), Some(mrk));
        assert_eq!(KeyId::from_bytes(*mrk.as_bytes()), mrk);
        // Not a key id: uppercase, a non-mrk id after the prefix, the
        // hyphenated form of a multi-Region id.
        assert_eq!(KeyId::parse(&text.to_uppercase()), None);
        assert_eq!(KeyId::parse("mrk-1234abcd12ab44cd56ef1234567890ab"), None);
        assert_eq!(KeyId::parse("00000000-0000-8000-8000-000000000000"), None);
        let single = KeyId::from_random([0xff; 16]);
        assert!(!single.is_multi_region());
        assert!(single < mrk);
        assert!(single.to_string() < mrk.to_string());
        assert!(KeyRef::parse(&text).is_ok());
    }

    #[test]
    fn a_bare_alias_name_hints_at_the_alias_prefix() {
        let err = KeyRef::parse("walkthrough").unwrap_err();
        assert_eq!(
            err.to_string(),
            KmsError::NotFound(
                "Invalid keyId 'walkthrough' (an alias is named with its prefix: \
                 'alias/walkthrough')"
                    .into()
            )
            .to_string()
        );
        // Not alias-shaped: AWS's message alone.
        let err = KeyRef::parse("not a key!").unwrap_err();
        assert_eq!(
            err.to_string(),
            KmsError::NotFound("Invalid keyId 'not a key!'".into()).to_string()
        );
    }

    #[test]
    fn product_codes_are_short_lowercase_alphanumerics() {
        for ok in ["evs", "zos", "sfs", "mysql", "s3", "abcdefghij012345"] {
            assert_eq!(ProductCode::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "",
            "e",
            "EVS",
            "alias_evs",
            "e-s",
            "abcdefghij0123456",
            "évs",
        ] {
            assert!(ProductCode::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_every_key_form() {
        let key = KeyId::parse(ID).unwrap();
        assert_eq!(KeyRef::parse(ID).unwrap(), KeyRef::Id(key));
        assert_eq!(
            KeyRef::parse(&format!("arn:aws:kms:us-east-1:111122223333:key/{ID}")).unwrap(),
            KeyRef::KeyArn {
                region: "us-east-1".into(),
                account: "111122223333".into(),
                key
            }
        );
        assert!(matches!(
            KeyRef::parse("alias/foo").unwrap(),
            KeyRef::Alias(a) if a.as_str() == "alias/foo"
        ));
        assert!(matches!(
            KeyRef::parse("arn:aws:kms:us-east-1:111122223333:alias/foo").unwrap(),
            KeyRef::AliasArn { alias, .. } if alias.as_str() == "alias/foo"
        ));
        // Default keys: `alias_<code>`, bare and in an alias ARN (the
        // seed's form, without `alias/`).
        assert!(matches!(
            KeyRef::parse("alias_evs").unwrap(),
            KeyRef::Alias(a) if a.default_key_product().unwrap().as_str() == "evs"
        ));
        assert!(matches!(
            KeyRef::parse("arn:aws:kms:us-east-1:111122223333:alias_mysql").unwrap(),
            KeyRef::AliasArn { alias, account, .. }
                if alias == AliasName::default_key(&ProductCode::parse("mysql").unwrap())
                    && account == "111122223333"
        ));
        assert_eq!(
            AliasName::parse_lookup("alias/evs")
                .unwrap()
                .default_key_product(),
            None
        );
        assert_eq!(
            AliasName::parse_lookup("alias_E")
                .unwrap()
                .default_key_product(),
            None
        );
    }

    #[test]
    fn rejects_malformed_key_forms() {
        assert!(matches!(KeyRef::parse("nope"), Err(KmsError::NotFound(_))));
        assert!(matches!(KeyRef::parse(""), Err(KmsError::Validation(_))));
        assert!(matches!(
            KeyRef::parse("arn:aws:kms:us-east-1:1:key/not-a-uuid"),
            Err(KmsError::InvalidArn(_))
        ));
        assert!(matches!(
            KeyRef::parse("arn:aws:s3:::bucket"),
            Err(KmsError::InvalidArn(_))
        ));
        assert!(matches!(
            KeyRef::parse(&"x".repeat(3000)),
            Err(KmsError::Validation(_))
        ));
    }

    #[test]
    fn user_alias_rules() {
        assert!(AliasName::parse_user("alias/ok-name_1").is_ok());
        assert!(matches!(
            AliasName::parse_user("alias_evs"),
            Err(KmsError::InvalidAliasName(_))
        ));
        assert!(matches!(
            AliasName::parse_user("alias/aws/s3"),
            Err(KmsError::InvalidAliasName(_))
        ));
        assert!(matches!(
            AliasName::parse_user("alias/"),
            Err(KmsError::InvalidAliasName(_))
        ));
        assert!(matches!(
            AliasName::parse_user("alias/sp ace"),
            Err(KmsError::Validation(_))
        ));
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        let a = AccountId::from_random([255; 12]);
        assert_eq!(a.as_str().len(), 12);
        assert!(AccountId::parse(a.as_str()).is_ok());
        assert!(AccountId::parse("12345").is_err());
    }
}
