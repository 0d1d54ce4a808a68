//! Database keyrings (docs/integrations/mariadb.md): the keys a database
//! instance of a database product reads through the Vault-compatible
//! endpoint (`GET /v1/<keyring id>/data/<key number>`).
//!
//! A keyring belongs to an account and names one KMS key of it: a customer
//! key the account granted to the product, or the product's default key
//! (`alias_mysql`). Every keyring key version is a 32-byte data key
//! generated under that KMS key *by the product acting for the account*
//! (the normal `GenerateDataKey` path: authorization, grants, billing
//! freeze, metering), and stored only as its ciphertext blob. A read
//! decrypts it through the normal `Decrypt` path as the product, so a
//! disabled or deleted KMS key, a frozen account, a revoked grant or a
//! disabled product stop the database from obtaining keys.
//!
//! Access to the endpoint is by keyring token. The caller (the server)
//! makes the token and gives this module only its SHA-256 hash; a read
//! presents the hash of the token it received, compared in constant time.

use std::collections::BTreeMap;

use subtle::ConstantTimeEq;

use crate::context::EncryptionContext;
use crate::error::KmsError;
use crate::ids::{KeyId, KeyRef, KeyringId, ProductCode, DEFAULT_KEY_ALIAS_PREFIX};
use crate::kms::{Caller, Kms};
use crate::model::{KeyringKeyVersion, KeyringRecord, ProductClass};
use crate::operation::Operation;
use crate::secret::Secret;
use crate::store::StoreError;

/// The key numbers a keyring starts with when the caller names none:
/// MariaDB's system data key (1: redo log, system tablespace, default for
/// tables) and temporary data key (2: temporary files and tables).
pub const DEFAULT_KEY_NUMBERS: &[u32] = &[1, 2];

/// Most key numbers one `CreateKeyring` may name.
pub const MAX_INITIAL_KEYS: usize = 64;

/// Most versions a key of a keyring may have.
pub const MAX_KEY_VERSIONS: u32 = 10_000;

/// How often one rotation (or token change) re-reads and retries after
/// losing a race to another change of the same key number (or keyring):
/// docs/integrations/mariadb.md.
pub const RACE_ATTEMPTS: usize = 64;

/// Most key numbers a keyring may have.
pub const MAX_KEY_NUMBERS: usize = 1_024;

/// Most keyrings an account may have.
pub const MAX_KEYRINGS_PER_ACCOUNT: usize = 1_000;

/// Length of every keyring data key: AES-256.
pub const KEYRING_DATA_KEY_LEN: usize = 32;

/// Encryption context keys binding a data key's ciphertext to its place.
const CONTEXT_KEYRING: &str = "keywarden:keyring";
const CONTEXT_KEY_NUMBER: &str = "keywarden:keyring-key";
const CONTEXT_VERSION: &str = "keywarden:keyring-key-version";

/// A keyring and the newest version of each of its keys.
#[derive(Debug, Clone)]
pub struct KeyringSummary {
    /// The keyring.
    pub keyring: KeyringRecord,
    /// `(key number, newest version, when that version was created)`,
    /// ordered by key number.
    pub keys: Vec<(u32, u32, crate::clock::UnixMillis)>,
}

/// What a keyring read returns.
#[derive(Debug)]
pub struct KeyringRead {
    /// The keyring's account (for the audit record).
    pub account_id: crate::ids::AccountId,
    /// The product that read it.
    pub product: ProductCode,
    /// The version read.
    pub version: u32,
    /// When that version was created.
    pub created_at: crate::clock::UnixMillis,
    /// The data key.
    pub data_key: Secret,
}

/// Why a keyring read was refused. The endpoint answers these as Vault
/// would (403, 404, 400, 5xx).
#[derive(Debug, thiserror::Error)]
pub enum KeyringReadError {
    /// No such keyring, no token issued, or a token that does not match.
    /// One answer for all three, so a token prober learns nothing.
    #[error("permission denied")]
    Denied,
    /// The keyring has no such key number or version.
    #[error("key not found")]
    NotFound,
    /// The store failed before the token could be checked: the caller is
    /// not authenticated.
    #[error("keyring lookup failed: {0}")]
    Unavailable(KmsError),
    /// The KMS path refused (disabled, deleted or pending-deletion key,
    /// frozen account, revoked grant, disabled product) or failed.
    #[error(transparent)]
    Kms(#[from] KmsError),
}

impl Kms {
    /// Creates a keyring for `product` (a database product) under the
    /// account's KMS key `key`, with a first version of every key in
    /// `key_numbers` ([`DEFAULT_KEY_NUMBERS`] if empty). `token_hash` is the
    /// SHA-256 of the keyring's first token. Only an account's own users
    /// may create keyrings.
    pub async fn create_keyring(
        &self,
        caller: &Caller,
        name: &str,
        product: &ProductCode,
        key: &KeyRef,
        key_numbers: &[u32],
        token_hash: [u8; 32],
    ) -> Result<KeyringSummary, KmsError> {
        require_account_user(caller)?;
        check_keyring_name(name)?;
        let key_numbers = initial_key_numbers(key_numbers)?;
        // Before any metered data key: a taken name or a full account
        // (the store's uniqueness check still decides races).
        let existing = self.store.list_keyrings(&caller.account_id).await?;
        if existing.iter().any(|k| k.name == name) {
            return Err(KmsError::AlreadyExists(format!(
                "a keyring named {name:?} already exists in this account"
            )));
        }
        if existing.len() >= MAX_KEYRINGS_PER_ACCOUNT {
            return Err(KmsError::LimitExceeded(format!(
                "the account has the most keyrings allowed ({MAX_KEYRINGS_PER_ACCOUNT})"
            )));
        }
        let product = self.product(product).await?;
        if product.class != ProductClass::Database {
            return Err(KmsError::Validation(format!(
                "keyrings are for database products; {} is a {} product",
                product.code,
                product.class.as_str()
            )));
        }
        // The product names the key as products must: by ARN. Its own
        // default key by alias ARN (created on first use); any other key by
        // key ARN, after checking as the account that the key exists.
        let product_ref = self.product_key_ref(caller, &product.code, key).await?;
        let acting = self.product_caller(
            &product,
            &self.product_principal_arn(&product.code),
            &caller.request_id,
            Operation::GenerateDataKey.wire_name(),
            &[&product_ref],
        )?;
        let id = KeyringId::from_random(self.random_array::<16>()?);
        let now = self.clock.now();
        let mut versions = Vec::with_capacity(key_numbers.len());
        let mut key_id: Option<KeyId> = None;
        for number in key_numbers {
            let data_key = self
                .generate_data_key(
                    &acting,
                    &product_ref,
                    &keyring_context(&id, number, 1)?,
                    KEYRING_DATA_KEY_LEN,
                    false,
                )
                .await?;
            key_id = Some(data_key.key.key_id);
            versions.push(KeyringKeyVersion {
                keyring_id: id.clone(),
                key_number: number,
                version: 1,
                ciphertext: data_key.blob,
                created_at: now,
            });
        }
        let Some(key_id) = key_id else {
            return Err(KmsError::Validation("no key numbers".into()));
        };
        // Every read of the keyring is a Decrypt as the product: a key the
        // product may use for GenerateDataKey but not for Decrypt (a grant
        // without Decrypt) would make a keyring nothing can ever read.
        // Decrypt one new version now, as a read would, before storing.
        let read_ref = KeyRef::KeyArn {
            region: self.config.region.clone(),
            account: caller.account_id.as_str().to_owned(),
            key: key_id,
        };
        let reading = self.product_caller(
            &product,
            &self.product_principal_arn(&product.code),
            &caller.request_id,
            Operation::Decrypt.wire_name(),
            &[&read_ref],
        )?;
        let first = &versions[0];
        self.decrypt(
            &reading,
            &first.ciphertext,
            &keyring_context(&id, first.key_number, first.version)?,
            Some(&read_ref),
            false,
        )
        .await?;
        let keyring = KeyringRecord {
            id,
            account_id: caller.account_id.clone(),
            name: name.to_owned(),
            product: product.code.clone(),
            key_id,
            token_hash: Some(token_hash),
            token_issued_at: Some(now),
            created_at: now,
            revision: 1,
        };
        match self.store.create_keyring(&keyring, &versions).await {
            Ok(()) => Ok(KeyringSummary {
                keys: versions
                    .iter()
                    .map(|v| (v.key_number, v.version, v.created_at))
                    .collect(),
                keyring,
            }),
            Err(StoreError::AlreadyExists) => Err(KmsError::AlreadyExists(format!(
                "a keyring named {name:?} already exists in this account"
            ))),
            Err(StoreError::MissingReference) => Err(KmsError::NotFound(format!(
                "account {} does not exist",
                caller.account_id
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The caller's keyring with this id (`NotFoundException` for another
    /// account's).
    pub async fn keyring(
        &self,
        caller: &Caller,
        id: &KeyringId,
    ) -> Result<KeyringRecord, KmsError> {
        require_account_user(caller)?;
        match self.store.get_keyring(id).await? {
            Some(k) if k.account_id == caller.account_id => Ok(k),
            _ => Err(KmsError::NotFound(format!("keyring {id} does not exist"))),
        }
    }

    /// The caller's keyring with the newest version of each key.
    pub async fn describe_keyring(
        &self,
        caller: &Caller,
        id: &KeyringId,
    ) -> Result<KeyringSummary, KmsError> {
        let keyring = self.keyring(caller, id).await?;
        let keys = self.store.keyring_key_summary(id).await?;
        Ok(KeyringSummary { keyring, keys })
    }

    /// The caller's keyrings, ordered by id.
    pub async fn list_keyrings(&self, caller: &Caller) -> Result<Vec<KeyringRecord>, KmsError> {
        require_account_user(caller)?;
        Ok(self.store.list_keyrings(&caller.account_id).await?)
    }

    /// Adds the next version of key `key_number` of the keyring (version 1
    /// of a new key number): a new data key under the keyring's KMS key.
    /// Older versions stay readable, so the database can still read what
    /// they encrypted while it re-encrypts.
    pub async fn rotate_keyring_key(
        &self,
        caller: &Caller,
        id: &KeyringId,
        key_number: u32,
    ) -> Result<KeyringKeyVersion, KmsError> {
        check_key_number(key_number)?;
        let keyring = self.keyring(caller, id).await?;
        let product = self.product(&keyring.product).await?;
        let key_ref = self.keyring_key_ref(&keyring);
        let acting = self.product_caller(
            &product,
            &self.product_principal_arn(&product.code),
            &caller.request_id,
            Operation::GenerateDataKey.wire_name(),
            &[&key_ref],
        )?;
        // A racing rotation of the same key (another request, another node)
        // takes the version first: re-read and try the next one. Every lost
        // race means another rotation committed, so N racers all finish
        // within N attempts; only more than RACE_ATTEMPTS at once get
        // the 4xx below.
        for _ in 0..RACE_ATTEMPTS {
            let newest = self
                .store
                .get_keyring_key_version(id, key_number, None)
                .await?
                .map_or(0, |v| v.version);
            if newest >= MAX_KEY_VERSIONS {
                return Err(KmsError::LimitExceeded(format!(
                    "key {key_number} of keyring {id} has the most versions allowed ({MAX_KEY_VERSIONS})"
                )));
            }
            if newest == 0 && self.store.keyring_key_summary(id).await?.len() >= MAX_KEY_NUMBERS {
                return Err(KmsError::LimitExceeded(format!(
                    "keyring {id} has the most key numbers allowed ({MAX_KEY_NUMBERS})"
                )));
            }
            let version = newest + 1;
            let data_key = self
                .generate_data_key(
                    &acting,
                    &key_ref,
                    &keyring_context(id, key_number, version)?,
                    KEYRING_DATA_KEY_LEN,
                    false,
                )
                .await?;
            let record = KeyringKeyVersion {
                keyring_id: id.clone(),
                key_number,
                version,
                ciphertext: data_key.blob,
                created_at: self.clock.now(),
            };
            match self.store.add_keyring_key_version(&record).await {
                Ok(()) => return Ok(record),
                Err(StoreError::Conflict) => continue,
                Err(StoreError::MissingReference) => {
                    return Err(KmsError::NotFound(format!("keyring {id} does not exist")))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::LimitExceeded(format!(
            "more than {RACE_ATTEMPTS} rotations of key {key_number} of keyring {id} raced \
             at once; retry"
        )))
    }

    /// Replaces the keyring's token with one whose hash is `token_hash`,
    /// or revokes it (`None`): from the moment this returns, on every
    /// node, the old token reads nothing.
    pub async fn set_keyring_token(
        &self,
        caller: &Caller,
        id: &KeyringId,
        token_hash: Option<[u8; 32]>,
    ) -> Result<KeyringRecord, KmsError> {
        for _ in 0..RACE_ATTEMPTS {
            let current = self.keyring(caller, id).await?;
            let mut next = current.clone();
            next.token_hash = token_hash;
            next.token_issued_at = token_hash.map(|_| self.clock.now());
            next.revision = current.revision + 1;
            match self.store.update_keyring(&next, current.revision).await {
                Ok(()) => return Ok(next),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(KmsError::LimitExceeded(format!(
            "more than {RACE_ATTEMPTS} token changes of keyring {id} raced at once; retry"
        )))
    }

    /// Deletes the keyring and every key version in it. The data keys are
    /// gone for good: what a database encrypted with them cannot be read
    /// again.
    pub async fn delete_keyring(&self, caller: &Caller, id: &KeyringId) -> Result<(), KmsError> {
        require_account_user(caller)?;
        if self.store.delete_keyring(&caller.account_id, id).await? {
            Ok(())
        } else {
            Err(KmsError::NotFound(format!("keyring {id} does not exist")))
        }
    }

    /// The keyring `id` for the holder of a token whose SHA-256 is
    /// `token_hash`: [`KeyringReadError::Denied`] for no such keyring, no
    /// token issued or another token (one answer for the three), and
    /// [`KeyringReadError::Unavailable`] if the store cannot say.
    pub async fn authenticate_keyring(
        &self,
        id: &KeyringId,
        token_hash: &[u8; 32],
    ) -> Result<KeyringRecord, KeyringReadError> {
        let keyring = self
            .store
            .get_keyring(id)
            .await
            .map_err(|e| KeyringReadError::Unavailable(e.into()))?
            .ok_or(KeyringReadError::Denied)?;
        match keyring.token_hash {
            Some(stored) if bool::from(stored.ct_eq(token_hash)) => Ok(keyring),
            _ => Err(KeyringReadError::Denied),
        }
    }

    /// A read on the keyring endpoint, after [`Kms::authenticate_keyring`]:
    /// the data key of `key_number` at `version` (the newest when `None`)
    /// and its version. Decrypts through the normal path as the keyring's
    /// product acting for its account.
    pub async fn read_keyring_key(
        &self,
        keyring: &KeyringRecord,
        key_number: u32,
        version: Option<u32>,
        request_id: &str,
    ) -> Result<KeyringRead, KeyringReadError> {
        let id = &keyring.id;
        let product = self.product(&keyring.product).await?;
        let key_ref = self.keyring_key_ref(keyring);
        let acting = self.product_caller(
            &product,
            &format!("keyring/{id}"),
            request_id,
            Operation::Decrypt.wire_name(),
            &[&key_ref],
        )?;
        let stored_version = self
            .store
            .get_keyring_key_version(id, key_number, version)
            .await
            .map_err(KmsError::from)?
            .ok_or(KeyringReadError::NotFound)?;
        let context = keyring_context(id, key_number, stored_version.version)?;
        let (_, plaintext) = self
            .decrypt(
                &acting,
                &stored_version.ciphertext,
                &context,
                Some(&key_ref),
                false,
            )
            .await?;
        Ok(KeyringRead {
            account_id: keyring.account_id.clone(),
            product: keyring.product.clone(),
            version: stored_version.version,
            created_at: stored_version.created_at,
            data_key: plaintext,
        })
    }

    /// The key ARN of the keyring's KMS key.
    pub fn keyring_key_arn(&self, keyring: &KeyringRecord) -> String {
        self.key_arn(&keyring.account_id, &keyring.key_id)
    }

    /// The key ARN a product names the keyring's KMS key by.
    fn keyring_key_ref(&self, keyring: &KeyringRecord) -> KeyRef {
        KeyRef::KeyArn {
            region: self.config.region.clone(),
            account: keyring.account_id.as_str().to_owned(),
            key: keyring.key_id,
        }
    }

    /// How `product` names the key the account chose: its own default key
    /// by alias ARN; another key by key ARN, once the account has seen that
    /// it exists (as `DescribeKey` would).
    async fn product_key_ref(
        &self,
        caller: &Caller,
        product: &ProductCode,
        key: &KeyRef,
    ) -> Result<KeyRef, KmsError> {
        let default_alias = format!("{DEFAULT_KEY_ALIAS_PREFIX}{product}");
        let names_default = match key {
            KeyRef::Alias(alias) => alias.as_str() == default_alias,
            KeyRef::AliasArn { alias, account, .. } => {
                alias.as_str() == default_alias && account == caller.account_id.as_str()
            }
            _ => false,
        };
        if names_default {
            return KeyRef::parse(&format!(
                "arn:{}:kms:{}:{}:{default_alias}",
                self.config.partition, self.config.region, caller.account_id
            ));
        }
        let record = self.describe_key(caller, key).await?;
        Ok(KeyRef::KeyArn {
            region: self.config.region.clone(),
            account: record.account_id.as_str().to_owned(),
            key: record.key_id,
        })
    }
}

/// The encryption context of a keyring data key: its keyring, key number
/// and version, so a ciphertext moved to another place fails to decrypt.
fn keyring_context(
    id: &KeyringId,
    key_number: u32,
    version: u32,
) -> Result<EncryptionContext, KmsError> {
    EncryptionContext::new(BTreeMap::from([
        (CONTEXT_KEYRING.to_owned(), id.as_str().to_owned()),
        (CONTEXT_KEY_NUMBER.to_owned(), key_number.to_string()),
        (CONTEXT_VERSION.to_owned(), version.to_string()),
    ]))
}

fn require_account_user(caller: &Caller) -> Result<(), KmsError> {
    if caller.product.is_some() {
        return Err(KmsError::AccessDenied(
            "keyrings are managed by the account's own users, not by products".into(),
        ));
    }
    Ok(())
}

/// 1-128 characters of `[A-Za-z0-9_.-]`: the name of a database instance.
fn check_keyring_name(name: &str) -> Result<(), KmsError> {
    if (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Ok(())
    } else {
        Err(KmsError::Validation(format!(
            "keyring name must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', '-', got {:?}",
            crate::ids::truncate_for_message(name)
        )))
    }
}

/// Key numbers are MariaDB key ids: 1 to 4294967294 (4294967295 is its
/// "invalid" marker).
fn check_key_number(n: u32) -> Result<(), KmsError> {
    if n == 0 || n == u32::MAX {
        return Err(KmsError::Validation(format!(
            "key number must be between 1 and {}, got {n}",
            u32::MAX - 1
        )));
    }
    Ok(())
}

fn initial_key_numbers(given: &[u32]) -> Result<Vec<u32>, KmsError> {
    let given = if given.is_empty() {
        DEFAULT_KEY_NUMBERS
    } else {
        given
    };
    if given.len() > MAX_INITIAL_KEYS {
        return Err(KmsError::Validation(format!(
            "at most {MAX_INITIAL_KEYS} key numbers may be given"
        )));
    }
    let mut out = Vec::with_capacity(given.len());
    for &n in given {
        check_key_number(n)?;
        if out.contains(&n) {
            return Err(KmsError::Validation(format!(
                "key number {n} is given twice"
            )));
        }
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_numbers_are_checked() {
        assert_eq!(initial_key_numbers(&[]).unwrap(), vec![1, 2]);
        assert_eq!(initial_key_numbers(&[5, 3]).unwrap(), vec![3, 5]);
        assert!(initial_key_numbers(&[0]).is_err());
        assert!(initial_key_numbers(&[u32::MAX]).is_err());
        assert!(initial_key_numbers(&[4, 4]).is_err());
        assert!(initial_key_numbers(&(1..=65).collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_keyring_name("orders-db.eu_1").is_ok());
        assert!(check_keyring_name("").is_err());
        assert!(check_keyring_name("a b").is_err());
        assert!(check_keyring_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn contexts_bind_place() {
        let id = KeyringId::from_random([1; 16]);
        assert_ne!(
            keyring_context(&id, 1, 1).unwrap(),
            keyring_context(&id, 1, 2).unwrap()
        );
        assert_ne!(
            keyring_context(&id, 1, 1).unwrap(),
            keyring_context(&id, 2, 1).unwrap()
        );
    }
}
