//! Accounts and their credentials (`AccountStore`, `CredentialStore`).

use async_trait::async_trait;
use keywarden_core::ids::AccountId;
use keywarden_core::model::{Account, Credential, CredentialStatus};
use keywarden_core::store::{AccountStore, CredentialStore, StoreError};
use keywarden_core::store_codec::credential_owner_columns;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::error::Fail;
use crate::rows::{
    account_from_row, credential_from_row, decode_account, status_to_sql, ACCOUNT_COLUMNS,
    CREDENTIAL_COLUMNS,
};
use crate::SqliteStore;

/// Inserts a credential row (`create_credential`, `import_dump`). An
/// unknown owner answers `MissingReference`, a taken id `AlreadyExists`.
pub(crate) fn insert_credential(tx: &Transaction<'_>, credential: &Credential) -> Result<(), Fail> {
    let (account, product, user_name) = credential_owner_columns(&credential.owner);
    tx.prepare_cached(
        "INSERT INTO credentials
             (access_key_id, account_id, product_code, user_name, sealed_secret, status,
              created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        credential.access_key_id,
        account,
        product,
        user_name,
        credential.sealed_secret,
        status_to_sql(credential.status),
        credential.created_at.0
    ])?;
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, account: &Account) -> Result<(), StoreError> {
        let account = account.clone();
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT INTO accounts (account_id, name, created_at) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                account.account_id.as_str(),
                account.name,
                account.created_at.0
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_account(&self, id: &AccountId) -> Result<Option<Account>, StoreError> {
        let id = id.as_str().to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?1"
            ))?
            .query_row([&id], account_from_row)
            .optional()?
            .map(decode_account)
            .transpose()
        })
        .await
    }

    async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY account_id"
                ))?
                .query_map([], account_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(decode_account).collect()
        })
        .await
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn create_credential(&self, credential: &Credential) -> Result<(), StoreError> {
        let credential = credential.clone();
        self.write(move |tx| {
            insert_credential(tx, &credential)?;
            Ok(())
        })
        .await
    }

    async fn get_credential(&self, access_key_id: &str) -> Result<Option<Credential>, StoreError> {
        let id = access_key_id.to_owned();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE access_key_id = ?1"
            ))?
            .query_row([&id], credential_from_row)
            .optional()?
            .map(|row| Ok(row.decode()?))
            .transpose()
        })
        .await
    }

    async fn list_credentials(
        &self,
        account: Option<&AccountId>,
    ) -> Result<Vec<Credential>, StoreError> {
        let account = account.map(|a| a.as_str().to_owned());
        self.read(move |tx| {
            let rows = match &account {
                Some(account) => tx
                    .prepare_cached(&format!(
                        "SELECT {CREDENTIAL_COLUMNS} FROM credentials
                         WHERE account_id = ?1 ORDER BY access_key_id"
                    ))?
                    .query_map([account], credential_from_row)?
                    .collect::<Result<Vec<_>, _>>()?,
                None => tx
                    .prepare_cached(&format!(
                        "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY access_key_id"
                    ))?
                    .query_map([], credential_from_row)?
                    .collect::<Result<Vec<_>, _>>()?,
            };
            rows.into_iter().map(|row| Ok(row.decode()?)).collect()
        })
        .await
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
        let id = access_key_id.to_owned();
        // The update trigger moves the change counter (schema 5), so every
        // process drops the key from its cache.
        self.write(move |tx| {
            let changed = tx
                .prepare_cached("UPDATE credentials SET status = ?1 WHERE access_key_id = ?2")?
                .execute(params![status_to_sql(status), id])?;
            Ok(changed > 0)
        })
        .await
    }
}
