//! Accounts and their credentials (`AccountStore`, `CredentialStore`).

use async_trait::async_trait;
use keywarden_core::ids::AccountId;
use keywarden_core::model::{Account, Credential, CredentialStatus};
use keywarden_core::store::{AccountStore, CredentialStore, StoreError};
use keywarden_core::store_codec::{credential_owner_columns, decode_account, status_to_sql};

use crate::error::Fail;
use crate::rows::{account_from_row, credential_from_row, ACCOUNT_COLUMNS, CREDENTIAL_COLUMNS};
use crate::{transact, Mode, PgStore, Tx};

/// Inserts a credential row (`create_credential`, `import_dump`). An
/// unknown owner answers `MissingReference`, a taken id `AlreadyExists`.
pub(crate) async fn insert_credential(tx: &Tx<'_>, credential: &Credential) -> Result<(), Fail> {
    let (account, product, user_name) = credential_owner_columns(&credential.owner);
    let stmt = tx
        .prepare_cached(
            "INSERT INTO credentials
                 (access_key_id, account_id, product_code, user_name, sealed_secret, status,
                  created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &credential.access_key_id,
            &account,
            &product,
            &user_name,
            &credential.sealed_secret,
            &status_to_sql(credential.status),
            &credential.created_at.0,
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO accounts (account_id, name, created_at) VALUES ($1, $2, $3)",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &account.account_id.as_str(),
                    &account.name,
                    &account.created_at.0,
                ],
            )
            .await?;
        })
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&id.as_str()]).await? {
                Some(row) => Some(decode_account(account_from_row(&row)?)?),
                None => None,
            }
        })
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY account_id"
                ))
                .await?;
            tx.query(&stmt, &[])
                .await?
                .iter()
                .map(|row| Ok(decode_account(account_from_row(row)?)?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn create_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        transact!(self, Mode::Write, |tx| {
            insert_credential(&tx, credential).await?;
        })
    }

    async fn get_credential(&self, access_key_id: &str) -> Result<Option<Credential>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key_id = $1"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&access_key_id]).await? {
                Some(row) => Some(credential_from_row(&row)?.decode()?),
                None => None,
            }
        })
    }

    async fn list_credentials(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<Credential>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let rows = match account {
                Some(account) => {
                    let stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {CREDENTIAL_COLUMNS} FROM credentials
                             WHERE account_id = $1 ORDER BY access_key_id"
                        ))
                        .await?;
                    tx.query(&stmt, &[&account.as_str()]).await?
                }
                None => {
                    let stmt = tx
                        .prepare_cached(&format!(
                            "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY access_key_id"
                        ))
                        .await?;
                    tx.query(&stmt, &[]).await?
                }
            };
            rows.iter()
                .map(|row| Ok(credential_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn revoke_credential(&self, access_key_id: &str) -> Result<bool, StoreError> {
        self.set_credential_status(access_key_id, CredentialStatus::Revoked)
            .await
    }

    async fn set_credential_status(
        &self,
        access_key_id: &str,
        status: CredentialStatus,
    ) -> Result<bool, StoreError> {
        // Mode::Write: the change trigger on `credentials` moves the
        // counter and notifies every node, which drop the key from their
        // caches.
        transact!(self, Mode::Write, |tx| {
            let stmt = tx
                .prepare_cached("UPDATE credentials SET status = $1 WHERE access_key_id = $2")
                .await?;
            tx.execute(&stmt, &[&status_to_sql(status), &access_key_id])
                .await?
                > 0
        })
    }
}
