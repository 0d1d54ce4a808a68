//! Operator operations on accounts and their access keys. Not part of the
//! AWS API; the `keywarden admin` commands call them.

use std::sync::Arc;

use crate::error::KmsError;
use crate::ids::{AccountId, PRODUCT_SERVICE_ACCOUNT};
use crate::kms::Kms;
use crate::model::{Account, Credential, CredentialOwner, CredentialStatus, Product};
use crate::secret::Secret;
use crate::store::StoreError;

const AKID_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const SECRET_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// A newly issued access key. The secret is shown once, to the operator.
pub struct IssuedCredential {
    /// The account.
    pub account_id: AccountId,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Secret,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("account_id", &self.account_id)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Whom an active access key authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActiveOwner {
    /// A tenant account.
    Account(AccountId),
    /// A cloud product, as registered when the credential was loaded
    /// (changes to the product drop the cache entry).
    Product(Product),
    /// An IAM user of an account, as stored when the credential was loaded
    /// (IAM changes drop the cache entry).
    User(crate::iam::IamUser),
    /// A session of an IAM role (STS `AssumeRole`, `ops/sessions.rs`).
    RoleSession {
        /// The role, as stored when the session was checked.
        role: crate::iam::IamRole,
        /// The session name.
        session_name: String,
        /// When the session's credentials stop working.
        expires_at: crate::clock::UnixMillis,
    },
}

/// An active access key's owner and secret, as SigV4 verification needs
/// them. Cached; dropped from the cache when the key is revoked or its
/// product changes.
pub struct ActiveCredential {
    /// Whom the key authenticates.
    pub owner: ActiveOwner,
    secret: Secret,
    /// For a role session: the session token it was issued with (a
    /// request must carry exactly this token).
    pub(crate) session_token: Option<Vec<u8>>,
}

impl ActiveCredential {
    /// A role session's credential.
    pub(crate) fn session(owner: ActiveOwner, secret: Secret, token: Vec<u8>) -> Self {
        ActiveCredential {
            owner,
            secret,
            session_token: Some(token),
        }
    }

    /// The secret access key.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl std::fmt::Debug for ActiveCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActiveCredential")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn credential_aad(access_key_id: &str) -> Vec<u8> {
    let mut aad = b"keywarden/credential/v1/".to_vec();
    aad.extend_from_slice(access_key_id.as_bytes());
    aad
}

impl Kms {
    /// Creates an account with one access key.
    pub async fn create_account(&self, name: &str) -> Result<IssuedCredential, KmsError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 256 {
            return Err(KmsError::Validation(
                "account name must be 1-256 characters".into(),
            ));
        }
        for _ in 0..8 {
            let account_id = AccountId::from_random(self.random_array()?);
            if account_id.as_str() == PRODUCT_SERVICE_ACCOUNT {
                continue;
            }
            let account = Account {
                account_id,
                name: name.to_owned(),
                created_at: self.clock.now(),
            };
            match self.store.create_account(&account).await {
                Ok(()) => return self.create_credential(&account.account_id).await,
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::AlreadyExists.into())
    }

    /// Issues another access key for an existing account.
    pub async fn create_credential(
        &self,
        account_id: &AccountId,
    ) -> Result<IssuedCredential, KmsError> {
        if self.store.get_account(account_id).await?.is_none() {
            return Err(KmsError::NotFound(format!(
                "account {account_id} does not exist"
            )));
        }
        let (access_key_id, secret_access_key) = self
            .issue_credential(CredentialOwner::Account(account_id.clone()))
            .await?;
        Ok(IssuedCredential {
            account_id: account_id.clone(),
            access_key_id,
            secret_access_key,
        })
    }

    /// Generates, seals and stores a new access key for `owner`; returns
    /// its id and secret. An unknown owner is `NotFound`.
    pub(crate) async fn issue_credential(
        &self,
        owner: CredentialOwner,
    ) -> Result<(String, Secret), KmsError> {
        let missing = |owner: &CredentialOwner| match owner {
            CredentialOwner::Account(a) => {
                KmsError::NotFound(format!("account {a} does not exist"))
            }
            CredentialOwner::Product(p) => {
                KmsError::NotFound(format!("product {p} does not exist"))
            }
            CredentialOwner::User { account, user_name } => KmsError::NotFound(format!(
                "user {user_name} of account {account} does not exist"
            )),
        };
        for _ in 0..8 {
            let raw: [u8; 16] = self.random_array()?;
            let access_key_id: String = "AKIA"
                .chars()
                .chain(
                    raw.iter()
                        .map(|b| char::from(AKID_ALPHABET[usize::from(b % 32)])),
                )
                .collect();
            let secret_raw = self.random_secret(40)?;
            let secret = Secret::new(
                secret_raw
                    .expose()
                    .iter()
                    .map(|b| SECRET_ALPHABET[usize::from(b % 64)])
                    .collect(),
            );
            let sealed_secret = self
                .sealer
                .seal(&credential_aad(&access_key_id), secret.expose())
                .map_err(KmsError::Protector)?;
            let credential = Credential {
                access_key_id: access_key_id.clone(),
                owner: owner.clone(),
                sealed_secret,
                status: CredentialStatus::Active,
                created_at: self.clock.now(),
            };
            match self.store.create_credential(&credential).await {
                Ok(()) => return Ok((access_key_id, secret)),
                Err(StoreError::AlreadyExists) => continue,
                Err(StoreError::MissingReference) => return Err(missing(&owner)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::AlreadyExists.into())
    }

    /// Revokes an access key; it stops authenticating at once.
    pub async fn revoke_credential(&self, access_key_id: &str) -> Result<(), KmsError> {
        let revoked = self.store.revoke_credential(access_key_id).await;
        self.caches.invalidate_credential(access_key_id);
        if revoked? {
            Ok(())
        } else {
            Err(KmsError::NotFound(format!(
                "access key {} does not exist",
                crate::ids::truncate_for_message(access_key_id)
            )))
        }
    }

    /// Every account.
    pub async fn list_accounts(&self) -> Result<Vec<Account>, KmsError> {
        Ok(self.store.list_accounts().await?)
    }

    /// Access keys of one account or of all.
    pub async fn list_credentials(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<Credential>, KmsError> {
        Ok(self.store.list_credentials(account).await?)
    }

    /// The account and secret of an active access key, for SigV4
    /// verification; `None` if the key is unknown or revoked.
    pub async fn credential_secret(
        &self,
        access_key_id: &str,
    ) -> Result<Option<Arc<ActiveCredential>>, KmsError> {
        if let Some(hit) = self.caches.credential(access_key_id) {
            return Ok(Some(hit));
        }
        let epoch = self.caches.epoch();
        let Some(c) = self.store.get_credential(access_key_id).await? else {
            return Ok(None);
        };
        if c.status != CredentialStatus::Active {
            return Ok(None);
        }
        let secret = self
            .sealer
            .unseal(&credential_aad(access_key_id), &c.sealed_secret)
            .map_err(KmsError::Protector)?;
        let owner = match c.owner {
            CredentialOwner::Account(account) => ActiveOwner::Account(account),
            CredentialOwner::Product(code) => {
                let product = self.product(&code).await?;
                ActiveOwner::Product(product)
            }
            CredentialOwner::User { account, user_name } => {
                // A key whose user is gone authenticates no one.
                match self
                    .store
                    .get_iam_entity(
                        &account,
                        crate::iam::IamKind::User,
                        &crate::iam::entity_name(&user_name),
                    )
                    .await?
                {
                    Some(crate::iam::IamEntity::User(user)) => ActiveOwner::User(user),
                    _ => return Ok(None),
                }
            }
        };
        let active = Arc::new(ActiveCredential {
            owner,
            secret,
            session_token: None,
        });
        self.caches
            .put_credential(epoch, access_key_id, active.clone());
        Ok(Some(active))
    }
}

/// Whether `sealer` opens the secrets sealed in `store`: `Some(true)` if it
/// opens the first stored credential's secret, `Some(false)` if it does not
/// (the store was written under another root key), `None` if the store
/// holds no credential to try. Nodes sharing a database must share the root
/// key; this is how a node (or `keywarden admin restore`) finds out before
/// serving.
pub async fn sealer_opens_store(
    sealer: &dyn crate::protector::SecretSealer,
    store: &dyn crate::store::Store,
) -> Result<Option<bool>, KmsError> {
    let credentials = store.list_credentials(None).await?;
    let Some(c) = credentials.first() else {
        return Ok(None);
    };
    Ok(Some(
        sealer
            .unseal(&credential_aad(&c.access_key_id), &c.sealed_secret)
            .is_ok(),
    ))
}

const ROOT_KEY_CHECK_AAD: &[u8] = b"keywarden/root-key-check/v1";
const ROOT_KEY_CHECK_VALUE: &[u8] = b"this deployment's root key";

/// Whether `sealer` is the deployment's root key: it opens the first
/// stored credential's secret (if any), and it opens the deployment's root
/// key check, which this call stores (a known value sealed under `sealer`,
/// AES-GCM with a random nonce) if the store has none yet. Of nodes racing
/// to open a new store with different root keys, exactly one stores its
/// check; the others answer `false` here and must not serve.
pub async fn sealer_is_deployments(
    sealer: &dyn crate::protector::SecretSealer,
    store: &dyn crate::store::Store,
) -> Result<bool, KmsError> {
    if sealer_opens_store(sealer, store).await? == Some(false) {
        return Ok(false);
    }
    let mine = sealer
        .seal(ROOT_KEY_CHECK_AAD, ROOT_KEY_CHECK_VALUE)
        .map_err(KmsError::Protector)?;
    let stored = store.root_key_check(&mine).await?;
    Ok(sealer.unseal(ROOT_KEY_CHECK_AAD, &stored).is_ok())
}

impl Kms {
    /// [`sealer_is_deployments`] with this service's sealer and store.
    pub async fn root_key_opens_store(&self) -> Result<bool, KmsError> {
        sealer_is_deployments(self.sealer.as_ref(), self.store.as_ref()).await
    }
}

impl Kms {
    /// Whether this service's root key unseals `c`'s secret (for
    /// `check_store`; the secret itself is dropped at once).
    pub(crate) fn credential_secret_opens(&self, c: &Credential) -> bool {
        self.sealer
            .unseal(&credential_aad(&c.access_key_id), &c.sealed_secret)
            .is_ok()
    }
}
