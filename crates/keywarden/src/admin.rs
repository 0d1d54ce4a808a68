//! `keywarden admin ...`: operator commands (accounts, credentials, products,
//! billing). They open the data directory directly (SQLite in WAL mode allows
//! this while the server runs), and the server sees their changes on its next
//! request.

mod audit;
mod billing;
mod store;

use anyhow::{Context, Result};
use clap::Subcommand;
use keywarden_core::ids::{AccountId, ProductCode};
use keywarden_core::model::{CredentialOwner, CredentialStatus, ProductClass, ProductStatus};
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
    /// Cloud products (docs/products.md).
    #[command(subcommand)]
    Product(ProductCommand),
    #[command(flatten)]
    Store(store::StoreCommand),
    /// The audit log: verify its chain, query its records (docs/audit.md).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

#[derive(Subcommand)]
pub enum ProductCommand {
    /// Register a product; prints it as JSON.
    Add {
        #[command(flatten)]
        data: DataArgs,
        /// The product code, 2-16 characters a-z or 0-9.
        #[arg(long)]
        code: String,
        /// `storage` or `database`.
        #[arg(long)]
        class: String,
    },
    /// List products as JSON.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Disable a product: its credentials are refused.
    Disable {
        #[command(flatten)]
        data: DataArgs,
        /// The product code.
        #[arg(long)]
        code: String,
    },
    /// Enable a disabled product.
    Enable {
        #[command(flatten)]
        data: DataArgs,
        /// The product code.
        #[arg(long)]
        code: String,
    },
    /// Access keys of a product.
    #[command(subcommand)]
    Credentials(ProductCredentialsCommand),
}

#[derive(Subcommand)]
pub enum ProductCredentialsCommand {
    /// Issue an access key for a product; prints it as JSON.
    Create {
        #[command(flatten)]
        data: DataArgs,
        /// The product code.
        #[arg(long)]
        code: String,
    },
    /// Revoke one of a product's access keys.
    Revoke {
        #[command(flatten)]
        data: DataArgs,
        /// The product code.
        #[arg(long)]
        code: String,
        /// The access key id.
        #[arg(long)]
        access_key_id: String,
    },
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
    /// Add money to an account (docs/billing.md); unfreezes it once the
    /// balance is zero or more. Prints the ledger entry and the new balance.
    Topup {
        #[command(flatten)]
        data: DataArgs,
        /// The account id (12 digits).
        #[arg(long)]
        account: String,
        /// A positive decimal amount in the configured currency, at most its
        /// fraction digits (`12.34`).
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        /// A note kept with the entry (at most 256 characters).
        #[arg(long, default_value = "")]
        memo: String,
        /// The payment's reference (its transaction id; 1 to 128 printable
        /// ASCII characters), unique per account: a retry with the same
        /// reference credits once and prints the entry already recorded;
        /// the same reference with another amount is refused.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Balance, frozen flag and month-to-date charges as JSON.
    Balance {
        #[command(flatten)]
        data: DataArgs,
        /// The account id (12 digits).
        #[arg(long)]
        account: String,
    },
    /// The account's ledger (top-ups and charges, in order) as JSON.
    Ledger {
        #[command(flatten)]
        data: DataArgs,
        /// The account id (12 digits).
        #[arg(long)]
        account: String,
    },
    /// Metered requests per key and operation and key-hours of a month as
    /// JSON.
    Usage {
        #[command(flatten)]
        data: DataArgs,
        /// The account id (12 digits).
        #[arg(long)]
        account: String,
        /// YYYY-MM (UTC); the current month by default.
        #[arg(long)]
        month: Option<String>,
    },
    /// A month's statement: its lines, the charges posted, top-ups and the
    /// balance. With billing on, the month's charges are posted first.
    Statement {
        #[command(flatten)]
        data: DataArgs,
        /// The account id (12 digits).
        #[arg(long)]
        account: String,
        /// YYYY-MM (UTC).
        #[arg(long)]
        month: String,
        /// `json` (the default) or `text` (an aligned table).
        #[arg(long, value_enum, default_value_t = billing::Format::Json)]
        format: billing::Format,
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
            let kms = setup::open_with(&data, setup::Mode::CreateIfMissing)
                .await?
                .kms;
            let issued = kms
                .create_account(&name)
                .await
                .context("creating account")?;
            print_issued(&issued);
        }
        AdminCommand::Account(AccountCommand::List { data }) => {
            let kms = setup::open(&data).await?.kms;
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
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "Accounts": list }))?
            );
        }
        AdminCommand::Account(AccountCommand::Topup {
            data,
            account,
            amount,
            memo,
            reference,
        }) => billing::top_up(&data, &account, &amount, &memo, reference.as_deref()).await?,
        AdminCommand::Account(AccountCommand::Balance { data, account }) => {
            billing::balance(&data, &account).await?
        }
        AdminCommand::Account(AccountCommand::Ledger { data, account }) => {
            billing::ledger(&data, &account).await?
        }
        AdminCommand::Account(AccountCommand::Usage {
            data,
            account,
            month,
        }) => billing::usage(&data, &account, month.as_deref()).await?,
        AdminCommand::Account(AccountCommand::Statement {
            data,
            account,
            month,
            format,
        }) => billing::statement(&data, &account, &month, format).await?,
        AdminCommand::Credentials(CredentialsCommand::Create { data, account }) => {
            let account = AccountId::parse(&account)?;
            let kms = setup::open(&data).await?.kms;
            let issued = kms.create_credential(&account).await?;
            print_issued(&issued);
        }
        AdminCommand::Credentials(CredentialsCommand::Revoke {
            data,
            access_key_id,
        }) => {
            let kms = setup::open(&data).await?.kms;
            kms.revoke_credential(&access_key_id).await?;
            outln!(
                "{}",
                json!({ "AccessKeyId": access_key_id, "Status": "Revoked" })
            );
        }
        AdminCommand::Credentials(CredentialsCommand::List { data, account }) => {
            let account = account.as_deref().map(AccountId::parse).transpose()?;
            let kms = setup::open(&data).await?.kms;
            let creds = kms.list_credentials(account.as_ref()).await?;
            let list: Vec<_> = creds
                .iter()
                .map(|c| {
                    let mut entry = json!({
                        "AccessKeyId": c.access_key_id,
                        "Status": match c.status {
                            CredentialStatus::Active => "Active",
                            CredentialStatus::Revoked => "Revoked",
                            CredentialStatus::Inactive => "Inactive",
                        },
                        "CreationDate": c.created_at.as_epoch_seconds(),
                    });
                    match &c.owner {
                        CredentialOwner::Account(a) => entry["AccountId"] = json!(a.as_str()),
                        CredentialOwner::Product(p) => entry["ProductCode"] = json!(p.as_str()),
                        CredentialOwner::User { account, user_name } => {
                            entry["AccountId"] = json!(account.as_str());
                            entry["UserName"] = json!(user_name);
                        }
                    }
                    entry
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "Credentials": list }))?
            );
        }
        AdminCommand::Product(cmd) => run_product(cmd).await?,
        AdminCommand::Store(cmd) => store::run(cmd).await?,
        AdminCommand::Audit(cmd) => audit::run(cmd).await?,
    }
    Ok(())
}

async fn run_product(cmd: ProductCommand) -> Result<()> {
    match cmd {
        ProductCommand::Add { data, code, class } => {
            let code = ProductCode::parse(&code)?;
            let class = ProductClass::parse(&class)
                .with_context(|| format!("--class must be storage or database, got {class:?}"))?;
            let kms = setup::open(&data).await?.kms;
            let product = kms.register_product(&code, class).await?;
            outln!("{}", product_json(&kms, &product));
        }
        ProductCommand::List { data } => {
            let kms = setup::open(&data).await?.kms;
            let list: Vec<_> = kms
                .list_products()
                .await?
                .iter()
                .map(|p| product_json(&kms, p))
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({ "Products": list }))?
            );
        }
        ProductCommand::Disable { data, code } => {
            set_status(&data, &code, ProductStatus::Disabled).await?;
        }
        ProductCommand::Enable { data, code } => {
            set_status(&data, &code, ProductStatus::Active).await?;
        }
        ProductCommand::Credentials(ProductCredentialsCommand::Create { data, code }) => {
            let code = ProductCode::parse(&code)?;
            let kms = setup::open(&data).await?.kms;
            let issued = kms.create_product_credential(&code).await?;
            let secret = String::from_utf8_lossy(issued.secret_access_key.expose()).into_owned();
            outln!(
                "{}",
                json!({
                    "ProductCode": issued.product.as_str(),
                    "AccessKeyId": issued.access_key_id,
                    "SecretAccessKey": secret,
                })
            );
        }
        ProductCommand::Credentials(ProductCredentialsCommand::Revoke {
            data,
            code,
            access_key_id,
        }) => {
            let code = ProductCode::parse(&code)?;
            let kms = setup::open(&data).await?.kms;
            kms.revoke_product_credential(&code, &access_key_id).await?;
            outln!(
                "{}",
                json!({ "AccessKeyId": access_key_id, "Status": "Revoked" })
            );
        }
    }
    Ok(())
}

async fn set_status(data: &DataArgs, code: &str, status: ProductStatus) -> Result<()> {
    let code = ProductCode::parse(code)?;
    let kms = setup::open(data).await?.kms;
    kms.set_product_status(&code, status).await?;
    outln!("{}", product_json(&kms, &kms.product(&code).await?));
    Ok(())
}

fn product_json(
    kms: &keywarden_core::Kms,
    p: &keywarden_core::model::Product,
) -> serde_json::Value {
    json!({
        "ProductCode": p.code.as_str(),
        "Class": p.class.as_str(),
        "Status": p.status.as_str(),
        "Principal": p.principal_arn(&kms.config().partition),
        "CreationDate": p.created_at.as_epoch_seconds(),
    })
}

fn print_issued(issued: &keywarden_core::ops::accounts::IssuedCredential) {
    // The one place a secret is shown: to the operator who asked for it.
    let secret = String::from_utf8_lossy(issued.secret_access_key.expose()).into_owned();
    outln!(
        "{}",
        json!({
            "AccountId": issued.account_id.as_str(),
            "AccessKeyId": issued.access_key_id,
            "SecretAccessKey": secret,
        })
    );
}
