//! `keywarden key ...`: operator commands on one tenant's keys. Like
//! `keywarden admin`, they open the data directory directly (SQLite in WAL
//! mode allows this while the server runs); a running server's caches pick
//! the changes up within 100 ms. Output is JSON in the shapes of the
//! matching AWS operations; errors are `<AWS error type>: <message>` on
//! stderr with a non-zero exit status.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, KeyRef};
use keywarden_core::model::{Credential, CredentialOwner, KeyRecord, MaterialExpiration, Origin};
use keywarden_core::ops::create_key::CreateKeyRequest;
use keywarden_core::ops::get_key_last_usage::KeyLastUsage;
use keywarden_core::ops::schedule_key_deletion::{MAX_WINDOW_DAYS, MIN_WINDOW_DAYS};
use keywarden_core::{Caller, Kms, KmsError};
use keywarden_server::{ApiError, KeyMetadata};
use serde_json::{json, Value};

use crate::{setup, DataArgs};

/// The principal recorded for operator actions (they are not crypto
/// operations, so it never appears in a key's last usage).
const OPERATOR: &str = "keywarden-cli";

/// Which tenant the command acts for.
#[derive(Args, Debug)]
pub struct Tenant {
    #[command(flatten)]
    data: DataArgs,
    /// The account (tenant) whose keys to act on, 12 digits.
    #[arg(long)]
    account: String,
}

/// A tenant and one of its keys.
#[derive(Args, Debug)]
pub struct KeyTarget {
    #[command(flatten)]
    tenant: Tenant,
    /// Key id, key ARN, alias name or alias ARN.
    #[arg(long)]
    key_id: String,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create a key; prints its KeyMetadata.
    Create {
        #[command(flatten)]
        tenant: Tenant,
        /// Description, up to 8192 characters.
        #[arg(long, default_value = "")]
        description: String,
        /// Where the material comes from (EXTERNAL: imported later through the API).
        #[arg(long, default_value = "AWS_KMS", value_parser = ["AWS_KMS", "EXTERNAL"])]
        origin: String,
        /// `hsm`: material generated and kept in a custom key store (an
        /// HSM through PKCS#11, `--custom-key-store-id`); `software`: under
        /// the root key.
        #[arg(long, default_value = "software", value_parser = ["software", "hsm"])]
        protection: String,
        /// The custom key store for `--protection hsm`: the `id`
        /// (`cks-...`) of a `[[custom_key_stores]]` entry of the
        /// configuration file given with `--config`.
        #[arg(long)]
        custom_key_store_id: Option<String>,
    },
    /// Print a key's KeyMetadata.
    Describe(KeyTarget),
    /// List the account's keys.
    List(Tenant),
    /// Enable a key.
    Enable(KeyTarget),
    /// Disable a key (cryptographic use is refused until it is enabled again).
    Disable(KeyTarget),
    /// Turn on automatic rotation.
    EnableRotation {
        #[command(flatten)]
        target: KeyTarget,
        /// Days between rotations (90-2560, default 365).
        #[arg(long)]
        period_days: Option<u32>,
    },
    /// Turn off automatic rotation.
    DisableRotation(KeyTarget),
    /// Rotate the key's material now.
    Rotate(KeyTarget),
    /// Whether automatic rotation is on, its period and next date.
    RotationStatus(KeyTarget),
    /// Turn deletion protection on (ScheduleKeyDeletion is refused).
    Protect(KeyTarget),
    /// Turn deletion protection off.
    Unprotect(KeyTarget),
    /// The key's last cryptographic use (as GetKeyLastUsage, with the principal).
    LastUsage(KeyTarget),
    /// Schedule the key's deletion after showing its last use and asking
    /// for confirmation.
    ScheduleDeletion {
        #[command(flatten)]
        target: KeyTarget,
        /// Waiting period in days (7-30, default 30).
        #[arg(long)]
        days: Option<u32>,
        /// Do not ask for confirmation (for scripts).
        #[arg(long)]
        yes: bool,
    },
    /// Cancel a scheduled deletion (the key becomes Disabled).
    CancelDeletion(KeyTarget),
    /// List the key's material versions and rotations (oldest first).
    ListRotations(KeyTarget),
    /// For an EXTERNAL key: write a fresh RSA public key (DER) and import
    /// token to files, for wrapping key material outside Keywarden.
    GetParametersForImport {
        #[command(flatten)]
        target: KeyTarget,
        /// RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256.
        #[arg(long, default_value = "RSAES_OAEP_SHA_256")]
        wrapping_algorithm: String,
        /// RSA_2048, RSA_3072 or RSA_4096.
        #[arg(long, default_value = "RSA_4096")]
        wrapping_key_spec: String,
        /// Where to write the public key (DER SubjectPublicKeyInfo).
        #[arg(long)]
        public_key_out: std::path::PathBuf,
        /// Where to write the import token.
        #[arg(long)]
        import_token_out: std::path::PathBuf,
    },
    /// Import wrapped key material into an EXTERNAL key.
    ImportKeyMaterial {
        #[command(flatten)]
        target: KeyTarget,
        /// The import token file from get-parameters-for-import.
        #[arg(long)]
        import_token: std::path::PathBuf,
        /// The wrapped key material file.
        #[arg(long)]
        encrypted_key_material: std::path::PathBuf,
        /// When the material expires (RFC 3339, e.g. 2027-01-01T00:00:00Z);
        /// without it the material does not expire.
        #[arg(long)]
        valid_to: Option<String>,
    },
    /// Delete an EXTERNAL key's imported material (the key returns to PendingImport).
    DeleteImportedKeyMaterial(KeyTarget),
}

/// An error as the API would name it: `NotFoundException: Key '...' does
/// not exist`. Internal errors keep their detail: the operator sees it.
fn aws(e: KmsError) -> anyhow::Error {
    let detail = e.to_string();
    let api = ApiError::from(e);
    anyhow!("{}: {detail}", api.aws_type())
}

/// The service and the caller for `tenant`, after checking the account
/// exists (a key must never be created for an unknown account).
async fn open(tenant: &Tenant) -> Result<(Arc<Kms>, Caller)> {
    let account = AccountId::parse(&tenant.account).map_err(|_| {
        anyhow!(
            "ValidationException: --account {:?} is not an account id (12 digits)",
            tenant.account
        )
    })?;
    let kms = setup::open(&tenant.data).await?.kms;
    let known = kms
        .list_accounts()
        .await
        .map_err(aws)?
        .iter()
        .any(|a| a.account_id == account);
    if !known {
        bail!("NotFoundException: Account {account} does not exist");
    }
    let caller = Caller {
        product: None,
        account_id: account,
        principal: OPERATOR.into(),
        identity: keywarden_core::kms::Identity::Root,
        request_id: String::new(),
        facts: Default::default(),
        region: None,
    };
    Ok((kms, caller))
}

async fn open_key(target: &KeyTarget) -> Result<(Arc<Kms>, Caller, KeyRef)> {
    let (kms, caller) = open(&target.tenant).await?;
    let key = KeyRef::parse(&target.key_id).map_err(aws)?;
    Ok((kms, caller, key))
}

fn print(v: &Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn metadata(kms: &Kms, key: &KeyRecord) -> Value {
    json!({ "KeyMetadata": KeyMetadata::of(kms, key) })
}

async fn describe(kms: &Kms, caller: &Caller, key: &KeyRef) -> Result<Value> {
    let record = kms.describe_key(caller, key).await.map_err(aws)?;
    Ok(metadata(kms, &record))
}

pub async fn run(cmd: KeyCommand) -> Result<()> {
    match cmd {
        KeyCommand::Create {
            tenant,
            description,
            origin,
            protection,
            custom_key_store_id,
        } => {
            if protection == "hsm" && custom_key_store_id.is_none() {
                bail!("--protection hsm needs --custom-key-store-id");
            }
            if protection == "hsm" && tenant.data.config.is_none() {
                bail!(
                    "--protection hsm: custom key stores are configured in the configuration \
                     file; pass --config with the file `keywarden serve` uses (docs/hsm.md)"
                );
            }
            let (kms, caller) = open(&tenant).await?;
            let origin = match (origin.as_str(), protection.as_str()) {
                ("EXTERNAL", "hsm") => {
                    bail!("--protection hsm generates the material in the HSM; it cannot be combined with --origin EXTERNAL")
                }
                (_, "hsm") => Origin::AwsCloudHsm,
                ("EXTERNAL", _) => Origin::External,
                _ => Origin::AwsKms,
            };
            let key = kms
                .create_key(
                    &caller,
                    CreateKeyRequest {
                        description,
                        origin,
                        tags: vec![],
                        policy: None,
                        bypass_policy_lockout_safety_check: false,
                        custom_key_store_id,
                        key_spec: keywarden_core::key_spec::KeySpec::SymmetricDefault,
                        key_usage: None,
                        multi_region: false,
                    },
                )
                .await
                .map_err(aws)?;
            print(&metadata(&kms, &key))
        }
        KeyCommand::Describe(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            print(&describe(&kms, &caller, &key).await?)
        }
        KeyCommand::List(tenant) => {
            let (kms, caller) = open(&tenant).await?;
            let mut keys = Vec::new();
            let mut marker = None;
            loop {
                let page = kms
                    .list_keys(&caller, Some(1000), marker.as_deref())
                    .await
                    .map_err(aws)?;
                keys.extend(page.items.iter().map(|k| {
                    json!({
                        "KeyId": k.key_id.to_string(),
                        "KeyArn": kms.record_arn(k),
                        "KeyState": k.state.as_str(),
                        "Description": k.description,
                    })
                }));
                match page.next_marker {
                    Some(m) => marker = Some(m),
                    None => break,
                }
            }
            print(&json!({ "Keys": keys }))
        }
        KeyCommand::Enable(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            kms.enable_key(&caller, &key).await.map_err(aws)?;
            print(&describe(&kms, &caller, &key).await?)
        }
        KeyCommand::Disable(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            kms.disable_key(&caller, &key).await.map_err(aws)?;
            print(&describe(&kms, &caller, &key).await?)
        }
        KeyCommand::EnableRotation {
            target,
            period_days,
        } => {
            let (kms, caller, key) = open_key(&target).await?;
            kms.enable_key_rotation(&caller, &key, period_days)
                .await
                .map_err(aws)?;
            print(&rotation_status(&kms, &caller, &key).await?)
        }
        KeyCommand::DisableRotation(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            kms.disable_key_rotation(&caller, &key).await.map_err(aws)?;
            print(&rotation_status(&kms, &caller, &key).await?)
        }
        KeyCommand::Rotate(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            let record = kms.rotate_key_on_demand(&caller, &key).await.map_err(aws)?;
            print(&json!({
                "KeyId": kms.record_arn(&record),
                "CurrentVersion": record.current_version().map(|v| v.version),
            }))
        }
        KeyCommand::RotationStatus(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            print(&rotation_status(&kms, &caller, &key).await?)
        }
        KeyCommand::Protect(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            kms.enable_key_deletion_protection(&caller, &key)
                .await
                .map_err(aws)?;
            print(&describe(&kms, &caller, &key).await?)
        }
        KeyCommand::Unprotect(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            kms.disable_key_deletion_protection(&caller, &key)
                .await
                .map_err(aws)?;
            print(&describe(&kms, &caller, &key).await?)
        }
        KeyCommand::LastUsage(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            let usage = kms.get_key_last_usage(&caller, &key).await.map_err(aws)?;
            print(&last_usage_json(&kms, &usage))
        }
        KeyCommand::ScheduleDeletion { target, days, yes } => {
            schedule_deletion(&target, days, yes).await
        }
        KeyCommand::CancelDeletion(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            let record = kms.cancel_key_deletion(&caller, &key).await.map_err(aws)?;
            print(&json!({ "KeyId": kms.record_arn(&record) }))
        }
        KeyCommand::ListRotations(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            let record = kms.describe_key(&caller, &key).await.map_err(aws)?;
            let versions: Vec<Value> = record
                .versions
                .iter()
                .map(|v| {
                    json!({
                        "Version": v.version,
                        "CreationDate": v.created_at.as_epoch_seconds(),
                        "RotationType": v.rotation.map(|r| r.as_str()),
                        "MaterialPresent": !v.material.is_empty(),
                    })
                })
                .collect();
            print(&json!({
                "KeyId": kms.record_arn(&record),
                "Versions": versions,
            }))
        }
        KeyCommand::GetParametersForImport {
            target,
            wrapping_algorithm,
            wrapping_key_spec,
            public_key_out,
            import_token_out,
        } => {
            let (kms, caller, key) = open_key(&target).await?;
            let (record, params) = kms
                .get_parameters_for_import(&caller, &key, &wrapping_algorithm, &wrapping_key_spec)
                .await
                .map_err(aws)?;
            std::fs::write(&public_key_out, &params.public_key)
                .with_context(|| format!("writing {}", public_key_out.display()))?;
            std::fs::write(&import_token_out, &params.import_token)
                .with_context(|| format!("writing {}", import_token_out.display()))?;
            print(&json!({
                "KeyId": kms.record_arn(&record),
                "PublicKeyFile": public_key_out,
                "ImportTokenFile": import_token_out,
                "ParametersValidTo": params.valid_to.as_epoch_seconds(),
            }))
        }
        KeyCommand::ImportKeyMaterial {
            target,
            import_token,
            encrypted_key_material,
            valid_to,
        } => {
            let expiration = match valid_to {
                None => MaterialExpiration::DoesNotExpire,
                Some(t) => {
                    let at = time::OffsetDateTime::parse(
                        &t,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .map_err(|_| {
                        anyhow!("ValidationException: --valid-to {t:?} is not an RFC 3339 time")
                    })?;
                    let millis = i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                        .map_err(|_| anyhow!("ValidationException: --valid-to is out of range"))?;
                    MaterialExpiration::ValidTo(UnixMillis(millis))
                }
            };
            let token = read_limited(&import_token)?;
            let material = read_limited(&encrypted_key_material)?;
            let (kms, caller, key) = open_key(&target).await?;
            let record = kms
                .import_key_material(&caller, &key, &token, &material, expiration)
                .await
                .map_err(aws)?;
            print(&metadata(&kms, &record))
        }
        KeyCommand::DeleteImportedKeyMaterial(t) => {
            let (kms, caller, key) = open_key(&t).await?;
            let record = kms
                .delete_imported_key_material(&caller, &key)
                .await
                .map_err(aws)?;
            print(&metadata(&kms, &record))
        }
    }
}

/// Reads a token or wrapped-material file, refusing anything larger than
/// the API would accept (6144 bytes).
fn read_limited(path: &std::path::Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.is_empty() || bytes.len() > 6144 {
        bail!(
            "ValidationException: {} must hold 1-6144 bytes, found {}",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes)
}

async fn rotation_status(kms: &Kms, caller: &Caller, key: &KeyRef) -> Result<Value> {
    let status = kms
        .get_key_rotation_status(caller, key)
        .await
        .map_err(aws)?;
    let mut out = json!({
        "KeyId": kms.record_arn(&status.key),
        "KeyRotationEnabled": status.rotation.is_some(),
    });
    if let Some(r) = status.rotation {
        out["RotationPeriodInDays"] = json!(r.period_days);
        out["NextRotationDate"] = json!(r.next_rotation.as_epoch_seconds());
    }
    Ok(out)
}

fn last_usage_json(kms: &Kms, usage: &KeyLastUsage) -> Value {
    let key = &usage.key;
    let last = match &usage.last_usage {
        Some(u) => json!({
            "Operation": u.operation.as_str(),
            "Timestamp": u.used_at.as_epoch_seconds(),
            "KmsRequestId": u.request_id,
            "Principal": u.principal,
        }),
        None => json!({}),
    };
    json!({
        "KeyId": kms.record_arn(key),
        "KeyLastUsage": last,
        "TrackingStartDate": usage.tracking_start.as_epoch_seconds(),
        "KeyCreationDate": key.created_at.as_epoch_seconds(),
    })
}

/// Shows the key's last use, asks for confirmation (or takes `--yes`),
/// then schedules the deletion. A cloud product still using the key would
/// break once it is deleted, so the operator sees who used it last first.
async fn schedule_deletion(target: &KeyTarget, days: Option<u32>, yes: bool) -> Result<()> {
    if let Some(d) = days {
        if !(MIN_WINDOW_DAYS..=MAX_WINDOW_DAYS).contains(&d) {
            bail!(
                "ValidationException: --days must be between {MIN_WINDOW_DAYS} and {MAX_WINDOW_DAYS}, got {d}"
            );
        }
    }
    let (kms, caller, key) = open_key(target).await?;
    let usage = kms.get_key_last_usage(&caller, &key).await.map_err(aws)?;
    let arn = kms.record_arn(&usage.key);
    let product_grants = kms.product_grants(&caller, &key).await.map_err(aws)?;
    // Whose access key made the last use: a product's, or the account's.
    let product_of = |access_key_id: &str, credentials: &[Credential]| {
        credentials.iter().find_map(|c| match &c.owner {
            CredentialOwner::Product(code) if c.access_key_id == access_key_id => {
                Some(code.to_string())
            }
            _ => None,
        })
    };
    let credentials = if usage.last_usage.is_some() {
        kms.list_credentials(None).await.map_err(aws)?
    } else {
        Vec::new()
    };
    let mut err = std::io::stderr().lock();
    match &usage.last_usage {
        Some(u) => writeln!(
            err,
            "Key {arn} was last used {} ({} by {}{}, request {}).",
            iso8601(u.used_at),
            u.operation.as_str(),
            u.principal,
            product_of(&u.principal, &credentials)
                .map(|p| format!(" of product {p}"))
                .unwrap_or_default(),
            if u.request_id.is_empty() {
                "-"
            } else {
                &u.request_id
            },
        )?,
        None => writeln!(
            err,
            "Key {arn} has no recorded cryptographic use since {}.",
            iso8601(usage.tracking_start)
        )?,
    }
    if !product_grants.is_empty() {
        writeln!(
            err,
            "WARNING: cloud products hold grants on {arn}; their data encrypted under it \
             becomes unreadable once the key is deleted:"
        )?;
        for (code, g) in &product_grants {
            let ops: Vec<&str> = g.operations.iter().map(|op| op.as_str()).collect();
            writeln!(
                err,
                "  product {code}: grant {} ({}) created {}",
                g.grant_id,
                ops.join(", "),
                iso8601(g.created_at)
            )?;
        }
    }
    writeln!(
        err,
        "Uses by a running server reach the store within about a second. Anything still \
         using this key (a cloud product, an application) breaks once it is deleted; \
         disabling it first shows who still depends on it."
    )?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "refusing to schedule the deletion of {arn} without confirmation: stdin is \
                 not a terminal. Pass --yes to confirm from a script. Nothing was changed."
            );
        }
        write!(
            err,
            "Schedule {arn} for deletion in {} days? [y/N] ",
            days.unwrap_or(MAX_WINDOW_DAYS)
        )?;
        err.flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            bail!("not confirmed; the deletion of {arn} was not scheduled");
        }
    }
    drop(err);
    let record = kms
        .schedule_key_deletion(&caller, &key, days)
        .await
        .map_err(aws)?;
    print(&json!({
        "KeyId": kms.record_arn(&record),
        "DeletionDate": record.deletion_date.map(|d| d.as_epoch_seconds()),
        "KeyState": record.state.as_str(),
        "PendingWindowInDays": record.pending_window_days,
    }))
}

/// `2026-11-28T17:30:00.123Z`.
pub(crate) fn iso8601(t: UnixMillis) -> String {
    let ms = t.0.rem_euclid(1000);
    let secs = t.0.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_dates() {
        assert_eq!(iso8601(UnixMillis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(UnixMillis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            iso8601(UnixMillis(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
