//! Billing operations: metering flushes, posting charges, top-ups,
//! balances, ledgers, usage, statements, and the freeze check on the
//! cryptographic path (docs/billing.md).

use crate::billing::{
    month_lines, total, KeyLifetime, LedgerEntry, LedgerKind, Line, Month, PriceTable,
    RequestCount, Standing,
};
use crate::error::KmsError;
use crate::ids::AccountId;
use crate::kms::{Caller, Kms};
use crate::model::{CryptoOperation, KeyManager, KeyRecord};
use crate::store::StoreError;

/// Billing settings (the server's configuration file, `[billing]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BillingConfig {
    /// Post charges to the ledger and refuse frozen accounts'
    /// cryptography. Off: nothing is charged, nobody is frozen; requests
    /// and key lifetimes are metered all the same.
    pub enabled: bool,
    /// The prices.
    pub prices: PriceTable,
    /// Whether a frozen account's default keys stop too (by default they
    /// keep working, so cloud products' data stays readable).
    pub freeze_default_keys: bool,
}

/// One account's charges for one month, computed from metered data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthBill {
    /// The account.
    pub account_id: AccountId,
    /// The month.
    pub month: Month,
    /// The lines (keys, then requests).
    pub lines: Vec<Line>,
    /// Their sum.
    pub total: i64,
}

/// A bill's lines added up by kind: what `GetAccountBalance` and
/// `keywarden admin account balance` show as the month to date.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillTotals {
    /// Started key-hours of all customer keys.
    pub key_hours: i64,
    /// Their charges, in minor units.
    pub key_charges: i64,
    /// Cryptographic requests, free and billable.
    pub requests: u64,
    /// Those beyond the free allowance.
    pub billable_requests: u64,
    /// Their charges, in minor units.
    pub request_charges: i64,
}

impl MonthBill {
    /// The lines added up by kind.
    pub fn totals(&self) -> BillTotals {
        let mut t = BillTotals::default();
        for line in &self.lines {
            match &line.kind {
                crate::billing::LineKind::KeyHours { hours, .. } => {
                    t.key_hours += hours;
                    t.key_charges += line.amount;
                }
                crate::billing::LineKind::Requests {
                    total, billable, ..
                } => {
                    t.requests += total;
                    t.billable_requests += billable;
                    t.request_charges += line.amount;
                }
            }
        }
        t
    }
}

/// A monthly statement: the computed lines next to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The bill.
    pub bill: MonthBill,
    /// Ledger entries of the month: charges for it, top-ups made in it.
    pub entries: Vec<LedgerEntry>,
    /// Sum of the charges posted for the month.
    pub charges_posted: i64,
    /// The account's standing now.
    pub standing: Standing,
}

/// What one billing run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillingRun {
    /// Accounts looked at.
    pub accounts: usize,
    /// Charges appended to the ledger.
    pub charges_posted: usize,
    /// Accounts frozen after the run, among those whose charges changed.
    pub frozen: usize,
}

const LEDGER_PAGE: usize = 1000;

impl Kms {
    /// The billing configuration.
    pub fn billing(&self) -> &BillingConfig {
        &self.billing
    }

    /// Counts one successful request of the key's account (in memory).
    pub(crate) fn meter(&self, key: &KeyRecord, operation: CryptoOperation) {
        let month = Month::of(self.clock.now());
        self.metering
            .count(&key.account_id, &key.key_id, operation, month);
    }

    /// Writes the request counts held in memory as one batch (retrying an
    /// earlier failed batch first, under its id, so nothing counts twice).
    /// Returns how many counters were written.
    pub async fn flush_metering(&self) -> Result<usize, KmsError> {
        let mut written = 0;
        // At most two rounds: a retried batch, then the new one.
        for _ in 0..2 {
            let Some(batch) = self.metering.next_batch() else {
                break;
            };
            let result = self.store.record_requests(&batch.id, &batch.counts).await;
            self.metering.finish(&batch.id, result.is_ok());
            result?;
            written += batch.counts.len();
        }
        Ok(written)
    }

    /// Refuses cryptography with a key of a frozen account, when billing
    /// is on (default keys only if so configured).
    pub(crate) async fn require_not_frozen(&self, key: &KeyRecord) -> Result<(), KmsError> {
        if !self.billing.enabled
            || (key.key_manager == KeyManager::Aws && !self.billing.freeze_default_keys)
        {
            return Ok(());
        }
        let frozen = match self.caches.frozen(&key.account_id) {
            Some(f) => f,
            None => {
                let epoch = self.caches.epoch();
                let f = self.store.standing(&key.account_id).await?.frozen;
                self.caches.put_frozen(epoch, &key.account_id, f);
                f
            }
        };
        if frozen {
            return Err(KmsError::AccountFrozen(format!(
                "account {} is frozen for insufficient balance: cryptographic operations with its keys are refused until a top-up restores the balance",
                key.account_id
            )));
        }
        Ok(())
    }

    /// The account's charges for `month` as metered now (hours up to now,
    /// or the month's end).
    pub async fn month_bill(
        &self,
        account: &AccountId,
        month: Month,
    ) -> Result<MonthBill, KmsError> {
        let lifetimes: Vec<KeyLifetime> = self
            .store
            .key_lifetimes(account, month.start(), month.end())
            .await?;
        let counts: Vec<RequestCount> = self.store.request_counts(account, month).await?;
        let lines = month_lines(
            &self.billing.prices,
            month,
            self.clock.now(),
            &lifetimes,
            &counts,
        );
        Ok(MonthBill {
            account_id: account.clone(),
            month,
            total: total(&lines),
            lines,
        })
    }

    /// Brings the ledger up to the account's metered charges for `month`
    /// (freezing the account if its balance goes below zero).
    pub async fn post_month(
        &self,
        account: &AccountId,
        month: Month,
    ) -> Result<(MonthBill, Standing, bool), KmsError> {
        let bill = self.month_bill(account, month).await?;
        self.post_bill(bill).await
    }

    async fn post_bill(&self, bill: MonthBill) -> Result<(MonthBill, Standing, bool), KmsError> {
        let (entry, standing) = self
            .store
            .post_charges(&bill.account_id, bill.month, bill.total, self.clock.now())
            .await?;
        if entry.is_some() {
            self.caches.invalidate_frozen(&bill.account_id);
        }
        self.posted_totals
            .set((bill.account_id.clone(), bill.month), bill.total);
        Ok((bill, standing, entry.is_some()))
    }

    /// One billing run (the server runs it periodically when billing is
    /// on): for every account, the current month's charges (and the
    /// previous month's, which may still have accrued in its last hour)
    /// are posted to the ledger.
    pub async fn run_billing(&self) -> Result<BillingRun, KmsError> {
        let mut run = BillingRun::default();
        if !self.billing.enabled {
            return Ok(run);
        }
        let month = Month::of(self.clock.now());
        for account in self.store.list_accounts().await? {
            run.accounts += 1;
            let mut frozen = false;
            for m in [month.previous(), month] {
                let bill = self.month_bill(&account.account_id, m).await?;
                // Unchanged since this process last posted it: the ledger
                // holds this total already, so no write transaction.
                if self.posted_totals.get(&(account.account_id.clone(), m)) == Some(bill.total) {
                    continue;
                }
                let (_, standing, posted) = self.post_bill(bill).await?;
                run.charges_posted += usize::from(posted);
                frozen |= standing.frozen;
            }
            run.frozen += usize::from(frozen);
        }
        Ok(run)
    }

    /// Operator: adds money to an account; unfreezes it if the balance is
    /// back at zero or more.
    ///
    /// With a `reference` (the payment's transaction id: 1 to 128
    /// printable ASCII characters), idempotent: a retry whose reference the
    /// account has used already writes nothing and answers the existing
    /// entry; one with another amount is refused
    /// ([`KmsError::AlreadyExists`]).
    pub async fn top_up(
        &self,
        account: &AccountId,
        amount: i64,
        memo: &str,
        reference: Option<&str>,
    ) -> Result<(LedgerEntry, Standing), KmsError> {
        if amount <= 0 {
            return Err(KmsError::Validation(
                "a top-up amount must be greater than zero".into(),
            ));
        }
        if memo.chars().count() > 256 {
            return Err(KmsError::Validation(
                "a top-up memo must be at most 256 characters".into(),
            ));
        }
        if let Some(r) = reference {
            validate_reference(r)?;
        }
        let result = self
            .store
            .append_top_up(account, amount, self.clock.now(), memo, reference)
            .await;
        self.caches.invalidate_frozen(account);
        match result {
            Ok(r) => Ok(r),
            Err(StoreError::MissingReference) => Err(KmsError::NotFound(format!(
                "account {account} does not exist"
            ))),
            // The reference was used for another amount: name that one.
            Err(StoreError::AlreadyExists) if reference.is_some() => {
                let reference = reference.unwrap_or_default();
                let prices = &self.billing.prices;
                let used = self
                    .account_ledger(account)
                    .await?
                    .into_iter()
                    .find(|e| e.reference.as_deref() == Some(reference))
                    .map_or_else(|| "another amount".to_owned(), |e| prices.format(e.amount));
                Err(KmsError::AlreadyExists(format!(
                    "reference {reference} was used for a top-up of {used}, not {}",
                    prices.format(amount)
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The account's balance and frozen flag.
    pub async fn standing(&self, account: &AccountId) -> Result<Standing, KmsError> {
        Ok(self.store.standing(account).await?)
    }

    /// The account's whole ledger, in order.
    pub async fn account_ledger(&self, account: &AccountId) -> Result<Vec<LedgerEntry>, KmsError> {
        let mut out: Vec<LedgerEntry> = Vec::new();
        loop {
            let page = self
                .store
                .ledger(account, out.last().map(|e| e.seq), LEDGER_PAGE)
                .await?;
            let full = page.len() == LEDGER_PAGE;
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
    }

    /// The account's metered requests for a month (flushed ones; this
    /// node's last second may still be in memory).
    pub async fn account_requests(
        &self,
        account: &AccountId,
        month: Month,
    ) -> Result<Vec<RequestCount>, KmsError> {
        Ok(self.store.request_counts(account, month).await?)
    }

    /// The monthly statement. With billing on, the month's charges are
    /// first brought up to date in the ledger, so the lines add up to the
    /// charges posted for the month.
    pub async fn statement(
        &self,
        account: &AccountId,
        month: Month,
    ) -> Result<Statement, KmsError> {
        if self.store.get_account(account).await?.is_none() {
            return Err(KmsError::NotFound(format!(
                "account {account} does not exist"
            )));
        }
        let bill = if self.billing.enabled {
            self.post_month(account, month).await?.0
        } else {
            self.month_bill(account, month).await?
        };
        let (start, end) = (month.start(), month.end());
        let entries: Vec<LedgerEntry> = self
            .account_ledger(account)
            .await?
            .into_iter()
            .filter(|e| match e.kind {
                LedgerKind::Charge => e.month == Some(month),
                LedgerKind::TopUp => e.at >= start && e.at < end,
            })
            .collect();
        let charges_posted = entries
            .iter()
            .filter(|e| e.kind == LedgerKind::Charge)
            .map(|e| e.amount)
            .sum();
        let standing = self.store.standing(account).await?;
        Ok(Statement {
            bill,
            entries,
            charges_posted,
            standing,
        })
    }

    /// `KeywardenService.GetAccountBalance`: the caller's own account:
    /// balance, frozen flag and month-to-date charges as metered.
    pub async fn get_account_balance(
        &self,
        caller: &Caller,
    ) -> Result<(Standing, MonthBill), KmsError> {
        let month = Month::of(self.clock.now());
        let standing = self.store.standing(&caller.account_id).await?;
        let bill = self.month_bill(&caller.account_id, month).await?;
        Ok((standing, bill))
    }
}

/// A top-up reference: 1 to 128 printable ASCII characters (no control
/// characters).
fn validate_reference(r: &str) -> Result<(), KmsError> {
    if r.is_empty() || r.len() > 128 || !r.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(KmsError::Validation(
            "a top-up reference must be 1 to 128 printable ASCII characters".into(),
        ));
    }
    Ok(())
}
