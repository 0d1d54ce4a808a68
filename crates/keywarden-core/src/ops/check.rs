//! `keywarden admin check`: the store's integrity, as the domain sees it.
//! Backend checks (SQLite's `integrity_check`) come on top, from the binary.

use crate::error::KmsError;
use crate::kms::{KeySweep, Kms};
use crate::model::{KeyRecord, KeyState};
use crate::protector::KeyBinding;
use crate::store::{GrantQuery, KeyQuery};

/// What [`Kms::check_store`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Keys examined.
    pub keys: u64,
    /// Key versions whose material was unwrapped (loaded by its protector).
    pub versions_loaded: u64,
    /// Versions not loaded on purpose: deleted imported material, or keys
    /// whose protector is not configured here (reported as problems when
    /// the protector is missing).
    pub versions_skipped: u64,
    /// Accounts examined.
    pub accounts: u64,
    /// Credentials whose secret was unsealed.
    pub credentials: u64,
    /// Aliases examined.
    pub aliases: u64,
    /// Grants examined.
    pub grants: u64,
    /// Every inconsistency, one line each, naming the record (never its
    /// material).
    pub problems: Vec<String>,
}

impl Kms {
    /// Reads every account, credential, key, alias and grant and checks
    /// what must hold after any crash: every key has versions numbered
    /// 1..n with material its protector can load (deleted imported material
    /// excepted), its state agrees with its dates, every credential's
    /// secret unseals, every alias points at a key of its account, every
    /// grant names an existing key. A half-created key, a torn update or a
    /// root key that does not match shows up here.
    pub async fn check_store(&self) -> Result<CheckReport, KmsError> {
        let mut report = CheckReport::default();
        let accounts = self.store.list_accounts().await?;
        report.accounts = accounts.len() as u64;
        for c in self.store.list_credentials(None).await? {
            if self.credential_secret_opens(&c) {
                report.credentials += 1;
            } else {
                report.problems.push(format!(
                    "credential {}: its secret does not unseal with this root key",
                    c.access_key_id
                ));
            }
        }
        let mut sweep = KeySweep::new(KeyQuery::default());
        while let Some(batch) = self.next_batch(&mut sweep).await? {
            for key in batch {
                report.keys += 1;
                self.check_key(&key, &mut report);
            }
        }
        let regions: Vec<Option<&str>> = std::iter::once(None)
            .chain(self.config.other_regions.iter().map(|r| Some(r.as_str())))
            .collect();
        for (account, region) in accounts
            .iter()
            .flat_map(|a| regions.iter().map(move |r| (a, *r)))
        {
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .store
                    .list_aliases(&account.account_id, region, None, after.as_deref(), 1000)
                    .await?;
                for alias in &page {
                    report.aliases += 1;
                    if self
                        .store
                        .get_key(&account.account_id, &alias.target)
                        .await?
                        .is_none()
                    {
                        report.problems.push(format!(
                            "alias {} of account {}: its key {} does not exist",
                            alias.name, account.account_id, alias.target
                        ));
                    }
                }
                if page.len() < 1000 {
                    break;
                }
                after = page.last().map(|a| a.name.as_str().to_owned());
            }
            let mut query = GrantQuery::account(&account.account_id, 1000);
            loop {
                let page = self.store.list_grants(&query).await?;
                for grant in &page {
                    report.grants += 1;
                    if self
                        .store
                        .get_key(&account.account_id, &grant.key_id)
                        .await?
                        .is_none()
                    {
                        report.problems.push(format!(
                            "grant {} of account {}: its key {} does not exist",
                            grant.grant_id, account.account_id, grant.key_id
                        ));
                    }
                }
                if page.len() < 1000 {
                    break;
                }
                query.after = page.last().map(|g| g.grant_id.clone());
            }
        }
        Ok(report)
    }

    fn check_key(&self, key: &KeyRecord, report: &mut CheckReport) {
        let name = format!("key {} of account {}", key.key_id, key.account_id);
        // Only a key waiting for its first imported material has none.
        if key.versions.is_empty() && key.state != KeyState::PendingImport {
            report
                .problems
                .push(format!("{name}: has no versions but is {:?}", key.state));
        }
        for (i, v) in key.versions.iter().enumerate() {
            if v.version as usize != i + 1 {
                report.problems.push(format!(
                    "{name}: versions are not numbered 1..n (position {} holds {})",
                    i + 1,
                    v.version
                ));
                break;
            }
        }
        match (key.state, key.deletion_date) {
            (KeyState::PendingDeletion, None) => report
                .problems
                .push(format!("{name}: pending deletion without a deletion date")),
            (KeyState::PendingDeletion, Some(_)) | (_, None) => {}
            (state, Some(_)) => report
                .problems
                .push(format!("{name}: {state:?} but carries a deletion date")),
        }
        for v in &key.versions {
            if v.material.is_empty() {
                // Deleted imported material (DeleteImportedKeyMaterial or
                // expiry): nothing to load, by design.
                report.versions_skipped += 1;
                continue;
            }
            let Some(protector) = self.protector(&v.protector) else {
                report.versions_skipped += 1;
                report.problems.push(format!(
                    "{name}: version {} needs key protector {:?}, which is not configured",
                    v.version, v.protector
                ));
                continue;
            };
            match protector.load(
                KeyBinding {
                    key_id: &key.key_id,
                    version: v.version,
                },
                &v.material,
            ) {
                Ok(_) => report.versions_loaded += 1,
                Err(e) => report
                    .problems
                    .push(format!("{name}: version {} does not load: {e}", v.version)),
            }
        }
    }
}
