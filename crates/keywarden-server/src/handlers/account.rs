//! Wire shapes of the account operations: `KeywardenService.GetAccountBalance`
//! (docs/api-extensions.md, docs/billing.md).

use keywarden_core::billing::LineKind;
use keywarden_core::{Caller, Kms};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::wire::{decode, encode};

/// The month-to-date part of [`GetAccountBalanceOut`]: amounts formatted in
/// the price table's currency, plus the exact total in minor units.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MonthToDate {
    billable_requests: u64,
    free_requests: u64,
    key_charges: String,
    key_hours: i64,
    month: String,
    request_charges: String,
    requests: u64,
    total: String,
    total_minor_units: i64,
}

/// The `GetAccountBalance` response.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetAccountBalanceOut<'a> {
    account_id: &'a str,
    balance: String,
    balance_minor_units: i64,
    billing_enabled: bool,
    currency: &'a str,
    frozen: bool,
    month_to_date: MonthToDate,
}

/// `KeywardenService.GetAccountBalance` (docs/api-extensions.md): the
/// caller's own balance, frozen flag and month-to-date charges.
pub(super) async fn get_account_balance(
    kms: &Kms,
    caller: &Caller,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {}
    let _: In = decode(body)?;
    let (standing, bill) = kms.get_account_balance(caller).await?;
    let prices = &kms.billing().prices;
    let mut key_hours = 0i64;
    let mut key_charges = 0i64;
    let mut requests = 0u64;
    let mut billable = 0u64;
    let mut request_charges = 0i64;
    for line in &bill.lines {
        match &line.kind {
            LineKind::KeyHours { hours, .. } => {
                key_hours += hours;
                key_charges += line.amount;
            }
            LineKind::Requests {
                total, billable: b, ..
            } => {
                requests += total;
                billable += b;
                request_charges += line.amount;
            }
        }
    }
    Ok(encode(&GetAccountBalanceOut {
        account_id: caller.account_id.as_str(),
        balance: prices.format(standing.balance),
        balance_minor_units: standing.balance,
        billing_enabled: kms.billing().enabled,
        currency: &prices.currency,
        frozen: standing.frozen,
        month_to_date: MonthToDate {
            billable_requests: billable,
            free_requests: prices.free_requests,
            key_charges: prices.format(key_charges),
            key_hours,
            month: bill.month.to_string(),
            request_charges: prices.format(request_charges),
            requests,
            total: prices.format(bill.total),
            total_minor_units: bill.total,
        },
    }))
}
