//! `keywarden admin account topup|balance|ledger|usage|statement`: the
//! operator's side of billing (docs/billing.md). Amounts are integer minor
//! units throughout; the decimal strings are made and parsed only by the
//! price table (`PriceTable::format` / `parse_amount`).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use keywarden_core::billing::{LedgerEntry, LedgerKind, LineKind, Month, PriceTable};
use keywarden_core::clock::{Clock, SystemClock};
use keywarden_core::ids::AccountId;
use keywarden_core::ops::billing::Statement;
use keywarden_core::Kms;
use serde_json::{json, Value};

use crate::key::iso8601;
use crate::{setup, DataArgs};

/// Output of `account statement`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON with PascalCase keys, like every admin command.
    Json,
    /// An aligned table for people.
    Text,
}

/// What a statement says when its lines and the posted charges differ
/// because nothing is posted.
const NOT_POSTED: &str = "not posted: billing is disabled";

/// Parses `--account` and opens the data dir (with `--config`'s price
/// table), refusing an account that does not exist: an unknown account has
/// no ledger, and a zero balance for it would be a lie.
async fn open_account(data: &DataArgs, account: &str) -> Result<(Arc<Kms>, AccountId)> {
    let account = AccountId::parse(account)
        .with_context(|| format!("--account must be a 12-digit account id, got {account:?}"))?;
    let kms = setup::open(data).await?.kms;
    let exists = kms
        .list_accounts()
        .await?
        .iter()
        .any(|a| a.account_id == account);
    if !exists {
        bail!("account {account} does not exist");
    }
    Ok((kms, account))
}

fn parse_month(s: &str) -> Result<Month> {
    Month::parse(s).with_context(|| format!("--month {s:?}"))
}

fn current_month() -> Month {
    Month::of(SystemClock.now())
}

/// `"Amount": "12.34", "AmountMinorUnits": 1234` under `name`.
fn put_money(obj: &mut serde_json::Map<String, Value>, prices: &PriceTable, name: &str, v: i64) {
    obj.insert(name.to_owned(), json!(prices.format(v)));
    obj.insert(format!("{name}MinorUnits"), json!(v));
}

fn protection(hardware: bool) -> &'static str {
    if hardware {
        "HSM"
    } else {
        "SOFTWARE"
    }
}

fn print_json(v: &Value) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// `account topup`: validates everything before writing; a refused amount
/// leaves the ledger untouched.
/// With a `reference` a retry is safe: the same reference again prints the
/// entry already recorded and credits nothing.
pub async fn top_up(
    data: &DataArgs,
    account: &str,
    amount: &str,
    memo: &str,
    reference: Option<&str>,
) -> Result<()> {
    let (kms, account) = open_account(data, account).await?;
    let prices = kms.billing().prices.clone();
    let minor = prices
        .parse_amount(amount)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("--amount (currency {})", prices.currency))?;
    let (entry, standing) = kms
        .top_up(&account, minor, memo, reference)
        .await
        .context("topping up")?;
    let mut out = serde_json::Map::new();
    out.insert("AccountId".into(), json!(account.as_str()));
    out.insert("Seq".into(), json!(entry.seq));
    out.insert("Time".into(), json!(iso8601(entry.at)));
    out.insert("Currency".into(), json!(prices.currency));
    put_money(&mut out, &prices, "Amount", entry.amount);
    out.insert("Memo".into(), json!(entry.memo));
    if let Some(r) = &entry.reference {
        out.insert("Reference".into(), json!(r));
    }
    put_money(&mut out, &prices, "Balance", standing.balance);
    out.insert("Frozen".into(), json!(standing.frozen));
    print_json(&Value::Object(out))
}

/// `account balance`: the standing and the month-to-date charges as metered
/// now (which the next billing run posts, when billing is on).
pub async fn balance(data: &DataArgs, account: &str) -> Result<()> {
    let (kms, account) = open_account(data, account).await?;
    let prices = &kms.billing().prices;
    let standing = kms.standing(&account).await?;
    let bill = kms.month_bill(&account, current_month()).await?;
    // The same month-to-date fields as GetAccountBalance
    // (docs/api-extensions.md).
    let totals = bill.totals();
    let mut mtd = serde_json::Map::new();
    mtd.insert("Month".into(), json!(bill.month.to_string()));
    mtd.insert("KeyHours".into(), json!(totals.key_hours));
    mtd.insert(
        "KeyCharges".into(),
        json!(prices.format(totals.key_charges)),
    );
    mtd.insert("Requests".into(), json!(totals.requests));
    mtd.insert("FreeRequests".into(), json!(prices.free_requests));
    mtd.insert("BillableRequests".into(), json!(totals.billable_requests));
    mtd.insert(
        "RequestCharges".into(),
        json!(prices.format(totals.request_charges)),
    );
    put_money(&mut mtd, prices, "Total", bill.total);
    let mut out = serde_json::Map::new();
    out.insert("AccountId".into(), json!(account.as_str()));
    out.insert("Currency".into(), json!(prices.currency));
    put_money(&mut out, prices, "Balance", standing.balance);
    out.insert("Frozen".into(), json!(standing.frozen));
    out.insert("BillingEnabled".into(), json!(kms.billing().enabled));
    out.insert("MonthToDate".into(), Value::Object(mtd));
    print_json(&Value::Object(out))
}

fn entry_json(prices: &PriceTable, e: &LedgerEntry) -> Value {
    let mut o = serde_json::Map::new();
    o.insert("Seq".into(), json!(e.seq));
    o.insert("Time".into(), json!(iso8601(e.at)));
    o.insert("Kind".into(), json!(e.kind.as_str()));
    put_money(&mut o, prices, "Amount", e.amount);
    o.insert("Month".into(), json!(e.month.map(|m| m.to_string())));
    o.insert("Memo".into(), json!(e.memo));
    if let Some(r) = &e.reference {
        o.insert("Reference".into(), json!(r));
    }
    Value::Object(o)
}

/// `account ledger`.
pub async fn ledger(data: &DataArgs, account: &str) -> Result<()> {
    let (kms, account) = open_account(data, account).await?;
    let prices = &kms.billing().prices;
    let entries = kms.account_ledger(&account).await?;
    let standing = kms.standing(&account).await?;
    let mut out = serde_json::Map::new();
    out.insert("AccountId".into(), json!(account.as_str()));
    out.insert("Currency".into(), json!(prices.currency));
    out.insert(
        "Entries".into(),
        Value::Array(entries.iter().map(|e| entry_json(prices, e)).collect()),
    );
    put_money(&mut out, prices, "Balance", standing.balance);
    out.insert("Frozen".into(), json!(standing.frozen));
    print_json(&Value::Object(out))
}

/// `account usage`: flushed request counts (a running server writes its
/// counts every second) and the customer keys' started hours.
pub async fn usage(data: &DataArgs, account: &str, month: Option<&str>) -> Result<()> {
    let month = month.map(parse_month).transpose()?;
    let (kms, account) = open_account(data, account).await?;
    let month = month.unwrap_or_else(current_month);
    let counts = kms.account_requests(&account, month).await?;
    let bill = kms.month_bill(&account, month).await?;
    let mut by_operation: BTreeMap<&str, u64> = BTreeMap::new();
    let mut total = 0u64;
    let requests: Vec<Value> = counts
        .iter()
        .map(|c| {
            *by_operation.entry(c.operation.as_str()).or_default() += c.count;
            total += c.count;
            json!({
                "KeyId": c.key_id.to_string(),
                "Operation": c.operation.as_str(),
                "Count": c.count,
            })
        })
        .collect();
    let mut total_hours = 0i64;
    let key_hours: Vec<Value> = bill
        .lines
        .iter()
        .filter_map(|l| match &l.kind {
            LineKind::KeyHours {
                key_id,
                hardware,
                hours,
            } => {
                total_hours += hours;
                Some(json!({
                    "KeyId": key_id.to_string(),
                    "Protection": protection(*hardware),
                    "Hours": hours,
                }))
            }
            LineKind::Requests { .. } => None,
        })
        .collect();
    print_json(&json!({
        "AccountId": account.as_str(),
        "Month": month.to_string(),
        "Requests": requests,
        "RequestsByOperation": by_operation,
        "TotalRequests": total,
        "KeyHours": key_hours,
        "TotalKeyHours": total_hours,
    }))
}

/// `account statement`.
pub async fn statement(data: &DataArgs, account: &str, month: &str, format: Format) -> Result<()> {
    let month = parse_month(month)?;
    let (kms, account) = open_account(data, account).await?;
    let st = kms.statement(&account, month).await?;
    let prices = &kms.billing().prices;
    let enabled = kms.billing().enabled;
    match format {
        Format::Json => print_json(&statement_json(prices, enabled, &st)),
        Format::Text => {
            outln!(
                "{}",
                statement_text(prices, enabled, &st).trim_end_matches('\n')
            );
            Ok(())
        }
    }
}

fn top_ups(st: &Statement) -> i64 {
    st.entries
        .iter()
        .filter(|e| e.kind == LedgerKind::TopUp)
        .map(|e| e.amount)
        .sum()
}

/// Why the lines and the posted charges differ, if they do.
fn discrepancy(prices: &PriceTable, enabled: bool, st: &Statement) -> Option<String> {
    let diff = st.charges_posted - st.bill.total;
    if diff == 0 {
        None
    } else if !enabled && st.charges_posted == 0 {
        Some(NOT_POSTED.to_owned())
    } else if !enabled {
        // A server with billing on posted them; this command was run
        // without its configuration file (other prices, nothing posted).
        Some(format!(
            "{NOT_POSTED} in this configuration, but {} was posted for the month: give the server's --config to see its lines",
            prices.format(st.charges_posted)
        ))
    } else {
        // `statement` posts up to the lines first, so only a larger total
        // posted by another node since, or under other prices, remains.
        Some(format!(
            "charges posted differ from the lines by {} (posted by another node since, or under a different price table)",
            prices.format(diff)
        ))
    }
}

fn statement_json(prices: &PriceTable, enabled: bool, st: &Statement) -> Value {
    let lines: Vec<Value> = st
        .bill
        .lines
        .iter()
        .map(|l| {
            let mut o = serde_json::Map::new();
            match &l.kind {
                LineKind::KeyHours {
                    key_id,
                    hardware,
                    hours,
                } => {
                    o.insert("Kind".into(), json!("KeyHours"));
                    o.insert("KeyId".into(), json!(key_id.to_string()));
                    o.insert("Protection".into(), json!(protection(*hardware)));
                    o.insert("Hours".into(), json!(hours));
                }
                LineKind::Requests {
                    total,
                    free,
                    billable,
                } => {
                    o.insert("Kind".into(), json!("Requests"));
                    o.insert("Total".into(), json!(total));
                    o.insert("Free".into(), json!(free));
                    o.insert("Billable".into(), json!(billable));
                }
            }
            put_money(&mut o, prices, "Amount", l.amount);
            Value::Object(o)
        })
        .collect();
    let mut out = serde_json::Map::new();
    out.insert("AccountId".into(), json!(st.bill.account_id.as_str()));
    out.insert("Month".into(), json!(st.bill.month.to_string()));
    out.insert("Currency".into(), json!(prices.currency));
    out.insert("BillingEnabled".into(), json!(enabled));
    out.insert("Lines".into(), Value::Array(lines));
    put_money(&mut out, prices, "LinesTotal", st.bill.total);
    put_money(&mut out, prices, "ChargesPosted", st.charges_posted);
    put_money(&mut out, prices, "TopUps", top_ups(st));
    put_money(&mut out, prices, "Balance", st.standing.balance);
    out.insert("Frozen".into(), json!(st.standing.frozen));
    out.insert(
        "Reconciled".into(),
        json!(st.charges_posted == st.bill.total),
    );
    if let Some(note) = discrepancy(prices, enabled, st) {
        out.insert("Note".into(), json!(note));
    }
    out.insert(
        "Entries".into(),
        Value::Array(st.entries.iter().map(|e| entry_json(prices, e)).collect()),
    );
    Value::Object(out)
}

/// Three columns (what, quantity, amount), the last two right-aligned.
fn statement_text(prices: &PriceTable, enabled: bool, st: &Statement) -> String {
    let month = st.bill.month;
    let mut rows: Vec<(String, String, String)> = Vec::new();
    for l in &st.bill.lines {
        let (what, qty) = match &l.kind {
            LineKind::KeyHours {
                key_id,
                hardware,
                hours,
            } => (
                format!("key {key_id} ({})", protection(*hardware)),
                format!("{hours} h"),
            ),
            LineKind::Requests {
                total,
                free,
                billable,
            } => (
                format!("requests: {total} total, {free} free"),
                format!("{billable} billable"),
            ),
        };
        rows.push((what, qty, prices.format(l.amount)));
    }
    if rows.is_empty() {
        rows.push(("(nothing metered)".into(), String::new(), prices.format(0)));
    }
    let summary = [
        ("Total of the lines".to_owned(), st.bill.total),
        (format!("Charges posted for {month}"), st.charges_posted),
        (format!("Top-ups in {month}"), top_ups(st)),
        ("Balance now".to_owned(), st.standing.balance),
    ];
    let header = (
        "Line".to_owned(),
        "Quantity".to_owned(),
        format!("Amount {}", prices.currency),
    );
    let w1 = rows
        .iter()
        .map(|r| r.0.len())
        .chain(summary.iter().map(|s| s.0.len()))
        .chain([header.0.len()])
        .max()
        .unwrap_or(0);
    let w2 = rows
        .iter()
        .map(|r| r.1.len())
        .chain([header.1.len()])
        .max()
        .unwrap_or(0);
    let w3 = rows
        .iter()
        .map(|r| r.2.len())
        .chain(summary.iter().map(|s| prices.format(s.1).len()))
        .chain([header.2.len()])
        .max()
        .unwrap_or(0);
    let row = |a: &str, b: &str, c: &str| format!("{a:<w1$}  {b:>w2$}  {c:>w3$}\n");
    let mut out = format!(
        "Statement for account {}, {month} (amounts in {})\n\n",
        st.bill.account_id, prices.currency
    );
    out += &row(&header.0, &header.1, &header.2);
    out += &row(&"-".repeat(w1), &"-".repeat(w2), &"-".repeat(w3));
    for r in &rows {
        out += &row(&r.0, &r.1, &r.2);
    }
    out += &row("", "", &"-".repeat(w3));
    for (what, amount) in &summary {
        out += &row(what, "", &prices.format(*amount));
    }
    if st.standing.frozen {
        out += "\nThe account is frozen for insufficient balance.\n";
    }
    if let Some(note) = discrepancy(prices, enabled, st) {
        out += &format!("\nNote: {note}.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keywarden_core::billing::{Line, Standing};
    use keywarden_core::ids::KeyId;
    use keywarden_core::ops::billing::MonthBill;

    fn sample(posted: i64) -> Statement {
        let account = AccountId::parse("111122223333").unwrap();
        let month = Month::parse("2026-11").unwrap();
        let lines = vec![
            Line {
                kind: LineKind::KeyHours {
                    key_id: KeyId::from_bytes([7; 16]),
                    hardware: false,
                    hours: 720,
                },
                amount: 100,
            },
            Line {
                kind: LineKind::Requests {
                    total: 53_333,
                    free: 20_000,
                    billable: 33_333,
                },
                amount: 9,
            },
        ];
        Statement {
            bill: MonthBill {
                account_id: account.clone(),
                month,
                total: 109,
                lines,
            },
            entries: vec![LedgerEntry {
                seq: 1,
                account_id: account,
                at: month.start(),
                kind: LedgerKind::TopUp,
                amount: 5000,
                month: None,
                memo: "first".into(),
                reference: None,
            }],
            charges_posted: posted,
            standing: Standing {
                balance: 5000 - posted,
                frozen: false,
            },
        }
    }

    #[test]
    fn json_statement_adds_up_and_flags_unposted_charges() {
        let prices = PriceTable::default();
        let v = statement_json(&prices, true, &sample(109));
        assert_eq!(v["LinesTotal"], "1.09");
        assert_eq!(v["ChargesPostedMinorUnits"], 109);
        assert_eq!(v["TopUps"], "50.00");
        assert_eq!(v["Balance"], "48.91");
        assert_eq!(v["Reconciled"], true);
        assert!(v.get("Note").is_none());
        let sum: i64 = v["Lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["AmountMinorUnits"].as_i64().unwrap())
            .sum();
        assert_eq!(sum, 109);
        assert_eq!(v["Lines"][1]["Billable"], 33_333);
        assert_eq!(v["Entries"][0]["Time"], "2026-11-01T00:00:00.000Z");

        let off = statement_json(&prices, false, &sample(0));
        assert_eq!(off["Reconciled"], false);
        assert_eq!(off["Note"], NOT_POSTED);
        let elsewhere = statement_json(&prices, false, &sample(50));
        assert!(elsewhere["Note"]
            .as_str()
            .unwrap()
            .contains("0.50 was posted"));
    }

    #[test]
    fn text_statement_is_aligned() {
        let prices = PriceTable::default();
        let text = statement_text(&prices, false, &sample(0));
        assert!(text.contains("(amounts in USD)"), "{text}");
        assert!(text.contains(NOT_POSTED), "{text}");
        // Every table row ends its amount column at the same place.
        let table: Vec<&str> = text.lines().skip(2).take_while(|l| !l.is_empty()).collect();
        assert!(table.len() >= 8, "{text}");
        let width = table[0].len();
        assert!(table.iter().all(|l| l.len() == width), "{text}");
        assert!(table.iter().any(|l| l.ends_with(" 1.09")), "{text}");
    }
}
