//! Billing: months, the price table, month-to-date charges from metered
//! data, the ledger's records. Pure functions and types; the operations
//! that read and write the store are in `ops/billing.rs`.
//!
//! Money is an integer number of minor units (cents) everywhere; no
//! floating point. Every division rounds down, in the tenant's favour, and
//! is applied per statement line, so a statement's lines add up exactly to
//! the charges posted to the ledger.

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;
use crate::error::KmsError;
use crate::ids::{AccountId, KeyId};
use crate::model::CryptoOperation;

/// One hour in milliseconds.
pub const HOUR: i64 = 3_600_000;

/// A calendar month, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Month {
    /// The year, e.g. 2026.
    pub year: i32,
    /// 1-12.
    pub month: u8,
}

impl Month {
    /// The month an instant falls in.
    pub fn of(t: UnixMillis) -> Month {
        let secs = t.0.div_euclid(1000);
        let date = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .date();
        Month {
            year: date.year(),
            month: u8::from(date.month()),
        }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(s: &str) -> Result<Month, KmsError> {
        let bad = || KmsError::Validation(format!("month must be YYYY-MM, got {s:?}"));
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Month { year, month })
    }

    /// Its first instant.
    pub fn start(self) -> UnixMillis {
        let month = time::Month::try_from(self.month).unwrap_or(time::Month::January);
        let date = time::Date::from_calendar_date(self.year, month, 1).unwrap_or(time::Date::MIN);
        let t = date.midnight().assume_utc().unix_timestamp();
        UnixMillis(t * 1000)
    }

    /// The next month.
    pub fn next(self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The previous month.
    pub fn previous(self) -> Month {
        if self.month == 1 {
            Month {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Month {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    /// The first instant of the next month.
    pub fn end(self) -> UnixMillis {
        self.next().start()
    }

    /// Hours in the month (672-744).
    pub fn hours(self) -> i64 {
        (self.end().0 - self.start().0) / HOUR
    }

    /// `YYYYMM`, the store's form.
    pub fn code(self) -> u32 {
        self.year as u32 * 100 + u32::from(self.month)
    }

    /// From [`Month::code`].
    pub fn from_code(code: u32) -> Option<Month> {
        let month = (code % 100) as u8;
        let year = (code / 100) as i32;
        (1..=12).contains(&month).then_some(Month { year, month })
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// The price table (server configuration, `docs/billing.md`). Amounts in
/// minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    /// ISO 4217 code, shown on statements.
    pub currency: String,
    /// Digits of the minor unit (2 for cents).
    pub minor_digits: u32,
    /// Per customer key with software protection, per month.
    pub software_key_month: i64,
    /// Per customer key with hardware (HSM) protection, per month.
    pub hardware_key_month: i64,
    /// Per 10,000 cryptographic requests beyond the free allowance.
    pub requests_10k: i64,
    /// Cryptographic requests per account and month that are free.
    pub free_requests: u64,
}

impl Default for PriceTable {
    /// AWS KMS's published list prices (us-east-1): 1 USD per key and
    /// month, 0.03 USD per 10,000 requests, 20,000 free requests a month;
    /// hardware keys at the AWS CloudHSM custom key store rate is not a
    /// per-key price, so Keywarden's default is 5 USD.
    fn default() -> Self {
        PriceTable {
            currency: "USD".into(),
            minor_digits: 2,
            software_key_month: 100,
            hardware_key_month: 500,
            requests_10k: 3,
            free_requests: 20_000,
        }
    }
}

impl PriceTable {
    /// Refuses negative prices and absurd minor units.
    pub fn check(&self) -> Result<(), String> {
        if self.software_key_month < 0 || self.hardware_key_month < 0 || self.requests_10k < 0 {
            return Err("prices must not be negative".into());
        }
        if self.minor_digits > 6 {
            return Err("minor_digits must be 0-6".into());
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err("currency must be a three-letter ISO 4217 code such as USD".into());
        }
        Ok(())
    }

    /// Formats minor units as a decimal amount (`-12.34`).
    pub fn format(&self, minor: i64) -> String {
        format_amount(minor, self.minor_digits)
    }

    /// Parses a decimal amount (`12.34`, `12`) into minor units, exactly:
    /// no more fraction digits than the currency has, positive, no sign.
    pub fn parse_amount(&self, s: &str) -> Result<i64, String> {
        parse_amount(s, self.minor_digits)
    }
}

/// Formats minor units with `digits` fraction digits.
pub fn format_amount(minor: i64, digits: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs}");
    }
    let scale = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$}",
        abs / scale,
        abs % scale,
        width = digits as usize
    )
}

/// Parses a positive decimal amount into minor units.
pub fn parse_amount(s: &str, digits: u32) -> Result<i64, String> {
    let bad = |why: &str| format!("invalid amount {s:?}: {why}");
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "expected digits, an optional '.' and at most the currency's fraction digits; no sign",
        ));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > digits as usize {
        return Err(bad(&format!("at most {digits} fraction digits")));
    }
    if s.ends_with('.') {
        return Err(bad("a '.' must be followed by digits"));
    }
    let scale = 10i64.pow(digits);
    let w: i64 = whole.parse().map_err(|_| bad("too large"))?;
    let mut f: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad("too large"))?
    };
    for _ in frac.len()..digits as usize {
        f *= 10;
    }
    let total = w
        .checked_mul(scale)
        .and_then(|v| v.checked_add(f))
        .ok_or_else(|| bad("too large"))?;
    if total <= 0 {
        return Err(bad("must be greater than zero"));
    }
    if total > 1_000_000_000_000_000 {
        return Err(bad("too large"));
    }
    Ok(total)
}

/// Requests of one account, key and operation in one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    /// The account billed.
    pub account_id: AccountId,
    /// The key used.
    pub key_id: KeyId,
    /// The operation.
    pub operation: CryptoOperation,
    /// The month.
    pub month: Month,
    /// How many succeeded.
    pub count: u64,
}

/// When a key existed, for key-hours. Recorded by the store when the key is
/// inserted; `deleted_at` is set when it is destroyed (to its deletion date).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLifetime {
    /// The owning account.
    pub account_id: AccountId,
    /// The key.
    pub key_id: KeyId,
    /// Hardware (HSM, origin `AWS_CLOUDHSM`) rather than software protection.
    pub hardware: bool,
    /// A default key (free of the key fee).
    pub default_key: bool,
    /// Creation.
    pub created_at: UnixMillis,
    /// Destruction (the scheduled deletion date); `None` while it exists.
    pub deleted_at: Option<UnixMillis>,
}

/// What a ledger entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerKind {
    /// Money paid in by the operator (`keywarden admin account topup`).
    TopUp,
    /// Charges for a month, posted as they accrue.
    Charge,
}

impl LedgerKind {
    /// `TopUp` / `Charge`.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::TopUp => "TopUp",
            LedgerKind::Charge => "Charge",
        }
    }
}

/// One ledger entry; the ledger is append-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Assigned by the store, increasing per store.
    pub seq: u64,
    /// The account.
    pub account_id: AccountId,
    /// When it was recorded.
    pub at: UnixMillis,
    /// Top-up or charge.
    pub kind: LedgerKind,
    /// Minor units, always positive (a charge lowers the balance).
    pub amount: i64,
    /// The month a charge is for.
    pub month: Option<Month>,
    /// Free text (top-ups: the operator's note).
    pub memo: String,
    /// A top-up's operator-supplied reference (the payment's transaction
    /// id), unique per account: a retried top-up with the same reference
    /// credits once. `None` for charges and unreferenced top-ups.
    pub reference: Option<String>,
}

/// An account's balance and whether it is frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// Top-ups minus charges, minor units.
    pub balance: i64,
    /// Frozen for insufficient balance (set when a charge takes the
    /// balance below zero, cleared when a top-up brings it back to zero or
    /// more).
    pub frozen: bool,
}

/// One line of a month's charges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineKind {
    /// A customer key's hours in the month.
    KeyHours {
        /// The key.
        key_id: KeyId,
        /// Hardware protection.
        hardware: bool,
        /// Started hours in the month.
        hours: i64,
    },
    /// The month's cryptographic requests.
    Requests {
        /// All of them.
        total: u64,
        /// The free allowance.
        free: u64,
        /// Those charged.
        billable: u64,
    },
}

/// A statement line: what, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// What is charged.
    pub kind: LineKind,
    /// Minor units.
    pub amount: i64,
}

/// Started hours of `[from, to)` (0 when empty).
pub fn started_hours(from: UnixMillis, to: UnixMillis) -> i64 {
    if to.0 <= from.0 {
        0
    } else {
        (to.0 - from.0 + HOUR - 1) / HOUR
    }
}

/// The month-to-date charges of one account: one line per customer key
/// that existed in the month (started hours, prorated from the monthly
/// fee: `hours * fee / hours_in_month`, rounded down), then one line for
/// the requests beyond the free allowance (`billable * price / 10,000`,
/// rounded down). Keys count from creation until destruction (pending
/// deletion included); default keys are free of the key fee. Hours count
/// up to `now` (the hour in progress included) or the month's end.
pub fn month_lines(
    prices: &PriceTable,
    month: Month,
    now: UnixMillis,
    lifetimes: &[KeyLifetime],
    counts: &[RequestCount],
) -> Vec<Line> {
    let start = month.start();
    let end = UnixMillis(month.end().0.min(now.0.max(start.0)));
    let hours_in_month = month.hours();
    let mut lines = Vec::new();
    let mut keys: Vec<&KeyLifetime> = lifetimes.iter().filter(|l| !l.default_key).collect();
    keys.sort_by_key(|l| (l.created_at, l.key_id));
    for l in keys {
        let from = UnixMillis(l.created_at.0.max(start.0));
        let to = UnixMillis(l.deleted_at.map_or(end.0, |d| d.0.min(end.0)));
        let hours = started_hours(from, to);
        if hours == 0 {
            continue;
        }
        let fee = if l.hardware {
            prices.hardware_key_month
        } else {
            prices.software_key_month
        };
        let amount =
            i64::try_from(i128::from(hours) * i128::from(fee) / i128::from(hours_in_month))
                .unwrap_or(i64::MAX);
        lines.push(Line {
            kind: LineKind::KeyHours {
                key_id: l.key_id,
                hardware: l.hardware,
                hours,
            },
            amount,
        });
    }
    let total: u64 = counts
        .iter()
        .filter(|c| c.month == month)
        .map(|c| c.count)
        .sum();
    if total > 0 {
        let billable = total.saturating_sub(prices.free_requests);
        let amount = i64::try_from(i128::from(billable) * i128::from(prices.requests_10k) / 10_000)
            .unwrap_or(i64::MAX);
        lines.push(Line {
            kind: LineKind::Requests {
                total,
                free: prices.free_requests.min(total),
                billable,
            },
            amount,
        });
    }
    lines
}

/// The sum of the lines' amounts.
pub fn total(lines: &[Line]) -> i64 {
    lines.iter().map(|l| l.amount).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> UnixMillis {
        let t =
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
        UnixMillis(t.unix_timestamp() * 1000)
    }

    #[test]
    fn months() {
        let m = Month::parse("2026-11").unwrap();
        assert_eq!(m.start(), at("2026-11-01T00:00:00Z"));
        assert_eq!(m.end(), at("2026-12-01T00:00:00Z"));
        assert_eq!(m.hours(), 720);
        assert_eq!(Month::parse("2026-02").unwrap().hours(), 672);
        assert_eq!(Month::parse("2028-02").unwrap().hours(), 696);
        assert_eq!(Month::of(at("2026-11-30T23:59:59Z")), m);
        assert_eq!(Month::of(at("2026-12-01T00:00:00Z")), m.next());
        assert_eq!(
            Month::parse("2026-01").unwrap().previous().to_string(),
            "2025-12"
        );
        assert_eq!(Month::from_code(m.code()), Some(m));
        for bad in [
            "2026-13", "2026-1", "26-11", "2026/11", "", "2026-00", "abcd-ef",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(parse_amount("12.34", 2), Ok(1234));
        assert_eq!(parse_amount("12", 2), Ok(1200));
        assert_eq!(parse_amount("0.5", 2), Ok(50));
        for bad in [
            "-1",
            "0",
            "0.00",
            "1.234",
            "1.",
            ".5",
            "1e3",
            " 1",
            "+1",
            "",
            "99999999999999999999",
        ] {
            assert!(parse_amount(bad, 2).is_err(), "{bad}");
        }
        assert_eq!(format_amount(1234, 2), "12.34");
        assert_eq!(format_amount(-5, 2), "-0.05");
        assert_eq!(format_amount(7, 0), "7");
    }

    #[test]
    fn prorated_key_hours_and_requests() {
        let prices = PriceTable::default();
        let month = Month::parse("2026-11").unwrap();
        let account = AccountId::parse("111122223333").unwrap();
        let key = |n: u8, created: &str, deleted: Option<&str>, default_key: bool| KeyLifetime {
            account_id: account.clone(),
            key_id: KeyId::from_random([n; 16]),
            hardware: n == 3,
            default_key,
            created_at: at(created),
            deleted_at: deleted.map(at),
        };
        let lifetimes = vec![
            // Created mid-month (the 16th, 00:00), still there at the end.
            key(1, "2026-11-16T00:00:00Z", None, false),
            // Created before the month, deleted on the 11th at 00:30.
            key(
                2,
                "2026-10-01T00:00:00Z",
                Some("2026-11-11T00:30:00Z"),
                false,
            ),
            // Hardware, the whole month.
            key(3, "2026-01-01T00:00:00Z", None, false),
            // A default key: free.
            key(4, "2026-11-02T00:00:00Z", None, true),
            // Deleted before the month: nothing.
            key(
                5,
                "2026-01-01T00:00:00Z",
                Some("2026-10-31T00:00:00Z"),
                false,
            ),
        ];
        let counts = vec![RequestCount {
            account_id: account.clone(),
            key_id: KeyId::from_random([1; 16]),
            operation: CryptoOperation::Encrypt,
            month,
            count: 53_333,
        }];
        let lines = month_lines(
            &prices,
            month,
            at("2027-01-01T00:00:00Z"),
            &lifetimes,
            &counts,
        );
        let amounts: Vec<i64> = lines.iter().map(|l| l.amount).collect();
        // 15 days = 360 h: 360 * 100 / 720 = 50; 10 days + 1 started hour =
        // 241 h: 241 * 100 / 720 = 33 (33.47 down); 720 h of 500 = 500;
        // 33,333 billable requests: 33,333 * 3 / 10,000 = 9 (9.99 down).
        // Lines in creation order: the hardware key, the deleted one, the
        // mid-month one, then the requests.
        assert_eq!(amounts, vec![500, 33, 50, 9]);
        assert_eq!(total(&lines), 592);
        match &lines[1].kind {
            LineKind::KeyHours { hours, .. } => assert_eq!(*hours, 241),
            other => panic!("{other:?}"),
        }
        // Mid-month "now": hours up to now, the current hour included.
        let mid = month_lines(&prices, month, at("2026-11-16T10:15:00Z"), &lifetimes, &[]);
        match &mid.iter().find(|l| matches!(l.kind, LineKind::KeyHours { key_id, .. } if key_id == KeyId::from_random([1; 16]))).unwrap().kind {
            LineKind::KeyHours { hours, .. } => assert_eq!(*hours, 11),
            _ => unreachable!(),
        }
        // Within the free allowance: a zero line, nothing billable.
        let few = vec![RequestCount {
            count: 19_999,
            ..counts[0].clone()
        }];
        let lines = month_lines(&prices, month, at("2026-11-20T00:00:00Z"), &[], &few);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].amount, 0);
    }
}
