//! `keywarden admin ...`: operator commands. They open the data directory
//! directly (SQLite in WAL mode allows this while the server runs), and the
//! server sees their changes on its next request.

use anyhow::{Context, Result};
use clap::Subcommand;
use keywarden_core::ids::AccountId;
use keywarden_core::model::CredentialStatus;
use serde_json::json;

use crate::{setup, DataArgs};

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Accounts (tenants).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Access keys of accounts.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
}

#[derive(Subcommand)]
pub enum AccountCommand {
    /// Create an account with one access key; prints AccountId, AccessKeyId, SecretAccessKey as JSON.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// A name for the account.
        #[arg(long)]
        name: String,
    },
    /// List accounts as JSON.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Subcommand)]
pub enum CredentialsCommand {
    /// Issue another access key for an account; prints it as JSON.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// The account id (12 digits).
        #[arg(long)]
        account: String,
    },
    /// Revoke an access key; it stops authenticating at once.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// The access key id.
        #[arg(long)]
        access_key_id: String,
    },
    /// List access keys (never secrets) as JSON.
    List {
        #[command(flatten)]
        data: DataArgs,
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
    },
}

pub async fn run(cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::Account(AccountCommand::Create { data, name }) => {
            let kms = setup::open(&data)?.kms;
            let issued = kms
                .create_account(&name)
                .await
                .context("creating account")?;
            print_issued(&issued);
        }
        AdminCommand::Account(AccountCommand::List { data }) => {
            let kms = setup::open(&data)?.kms;
            let accounts = kms.list_accounts().await?;
            let list: Vec<_> = accounts
                .iter()
                .map(|a| {
                    json!({
                        "AccountId": a.account_id.as_str(),
                        "Name": a.name,
                        "CreationDate": a.created_at.as_epoch_seconds(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "Accounts": list }))?
            );
        }
        AdminCommand::Credentials(CredentialsCommand::Create { data, account }) => {
            let account = AccountId::parse(&account)?;
            let kms = setup::open(&data)?.kms;
            let issued = kms.create_credential(&account).await?;
            print_issued(&issued);
        }
        AdminCommand::Credentials(CredentialsCommand::Revoke {
            data,
            access_key_id,
        }) => {
            let kms = setup::open(&data)?.kms;
            kms.revoke_credential(&access_key_id).await?;
            println!(
                "{}",
                json!({ "AccessKeyId": access_key_id, "Status": "Revoked" })
            );
        }
        AdminCommand::Credentials(CredentialsCommand::List { data, account }) => {
            let account = account.as_deref().map(AccountId::parse).transpose()?;
            let kms = setup::open(&data)?.kms;
            let creds = kms.list_credentials(account.as_ref()).await?;
            let list: Vec<_> = creds
                .iter()
                .map(|c| {
                    json!({
                        "AccessKeyId": c.access_key_id,
                        "AccountId": c.account_id.as_str(),
                        "Status": match c.status {
                            CredentialStatus::Active => "Active",
                            CredentialStatus::Revoked => "Revoked",
                        },
                        "CreationDate": c.created_at.as_epoch_seconds(),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({ "Credentials": list }))?
            );
        }
    }
    Ok(())
}

fn print_issued(issued: &keywarden_core::ops::accounts::IssuedCredential) {
    // The one place a secret is shown: to the operator who asked for it.
    let secret = String::from_utf8_lossy(issued.secret_access_key.expose()).into_owned();
    println!(
        "{}",
        json!({
            "AccountId": issued.account_id.as_str(),
            "AccessKeyId": issued.access_key_id,
            "SecretAccessKey": secret,
        })
    );
}
