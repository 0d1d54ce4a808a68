//! Metering and the ledger (`MeteringStore`, `LedgerStore`), schema 7.

use async_trait::async_trait;
use keywarden_core::billing::{KeyLifetime, LedgerEntry, Month, RequestCount, Standing};
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::{CryptoOperation, KeyUsage};
use keywarden_core::store::{LedgerStore, MeteringStore, StoreError, UsageStore};
use keywarden_core::store_codec::{self, LedgerRow};
use rusqlite::{params, OptionalExtension, Row, Transaction};

use crate::error::{Fail, Invalid};
use crate::rows::{usage_from_row, USAGE_COLUMNS};
use crate::SqliteStore;

/// How long flushed batch ids are remembered (retries come within seconds).
const BATCH_MEMORY_MS: i64 = 86_400_000;

fn account_id(s: &str) -> Result<AccountId, Fail> {
    Ok(store_codec::decode_account_id(s)?)
}

fn key_id(s: &str) -> Result<KeyId, Fail> {
    Ok(store_codec::decode_key_id(s)?)
}

fn to_i64(v: u64) -> Result<i64, Fail> {
    i64::try_from(v).map_err(|_| Invalid::new("count out of range").into())
}

/// The account's standing inside a transaction.
fn standing(tx: &Transaction<'_>, account: &str) -> Result<Standing, Fail> {
    let balance: i64 = tx
        .prepare_cached(
            "SELECT COALESCE(SUM(CASE kind WHEN 'TopUp' THEN amount ELSE -amount END), 0)
             FROM ledger WHERE account_id = ?1",
        )?
        .query_row([account], |r| r.get(0))?;
    let frozen: Option<i64> = tx
        .prepare_cached("SELECT frozen FROM account_standing WHERE account_id = ?1")?
        .query_row([account], |r| r.get(0))
        .optional()?;
    Ok(Standing {
        balance,
        frozen: frozen.unwrap_or(0) != 0,
    })
}

/// Sets the frozen flag if it differs (only a change moves the change stamp).
fn set_frozen(tx: &Transaction<'_>, account: &str, frozen: bool) -> Result<(), Fail> {
    tx.prepare_cached(
        "INSERT INTO account_standing (account_id, frozen) VALUES (?1, ?2)
         ON CONFLICT (account_id) DO UPDATE SET frozen = excluded.frozen
         WHERE account_standing.frozen <> excluded.frozen",
    )?
    .execute(params![account, i64::from(frozen)])?;
    Ok(())
}

/// seq, account, at, kind, amount, month, memo, reference.
pub(crate) type EntryRow = (
    i64,
    String,
    i64,
    String,
    i64,
    Option<i64>,
    String,
    Option<String>,
);

pub(crate) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<EntryRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

pub(crate) fn decode_entry(r: EntryRow) -> Result<LedgerEntry, Fail> {
    let (seq, account_id, at, kind, amount, month, memo, reference) = r;
    Ok(LedgerRow {
        seq,
        account_id,
        at,
        kind,
        amount,
        month,
        memo,
        reference,
    }
    .decode()?)
}

pub(crate) const ENTRY_COLUMNS: &str = "seq, account_id, at, kind, amount, month, memo, reference";

fn last_entry(tx: &Transaction<'_>) -> Result<LedgerEntry, Fail> {
    let row = tx
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM ledger WHERE seq = last_insert_rowid()"
        ))?
        .query_row([], entry_from_row)?;
    decode_entry(row)
}

#[async_trait]
impl MeteringStore for SqliteStore {
    async fn record_requests(
        &self,
        batch_id: &str,
        counts: &[RequestCount],
    ) -> Result<(), StoreError> {
        let batch_id = batch_id.to_owned();
        let counts = counts.to_vec();
        self.write(move |tx| {
            let now: i64 = tx.query_row(
                "SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER)",
                [],
                |r| r.get(0),
            )?;
            let fresh = tx
                .prepare_cached(
                    "INSERT INTO metering_batches (batch_id, recorded_at) VALUES (?1, ?2)
                     ON CONFLICT (batch_id) DO NOTHING",
                )?
                .execute(params![batch_id, now])?;
            if fresh == 0 {
                return Ok(());
            }
            let mut add = tx.prepare_cached(
                "INSERT INTO request_counts (account_id, month, key_id, operation, count)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (account_id, month, key_id, operation)
                 DO UPDATE SET count = count + excluded.count",
            )?;
            for c in &counts {
                add.execute(params![
                    c.account_id.as_str(),
                    i64::from(c.month.code()),
                    c.key_id.to_string(),
                    c.operation.as_str(),
                    to_i64(c.count)?
                ])?;
            }
            tx.prepare_cached("DELETE FROM metering_batches WHERE recorded_at < ?1")?
                .execute([now - BATCH_MEMORY_MS])?;
            Ok(())
        })
        .await
    }

    async fn request_counts(
        &self,
        account: &AccountId,
        month_: Month,
    ) -> Result<Vec<RequestCount>, StoreError> {
        let account = account.as_str().to_owned();
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(
                    "SELECT key_id, operation, count FROM request_counts
                     WHERE account_id = ?1 AND month = ?2 ORDER BY key_id, operation",
                )?
                .query_map(params![account, i64::from(month_.code())], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(key, op, count)| {
                    Ok(RequestCount {
                        account_id: account_id(&account)?,
                        key_id: key_id(&key)?,
                        operation: CryptoOperation::parse(&op)
                            .ok_or_else(|| Invalid::new("stored operation is unknown"))?,
                        month: month_,
                        count: u64::try_from(count).map_err(|_| Invalid::new("negative count"))?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn key_lifetimes(
        &self,
        account: &AccountId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<KeyLifetime>, StoreError> {
        let account = account.as_str().to_owned();
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(
                    "SELECT key_id, hardware, default_key, created_at, deleted_at FROM key_lifetimes
                     WHERE account_id = ?1 AND created_at < ?3
                       AND (deleted_at IS NULL OR deleted_at > ?2)
                     ORDER BY created_at, key_id",
                )?
                .query_map(params![account, from.0, to.0], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(key, hardware, default_key, created, deleted)| {
                    Ok(KeyLifetime {
                        account_id: account_id(&account)?,
                        key_id: key_id(&key)?,
                        hardware: hardware != 0,
                        default_key: default_key != 0,
                        created_at: UnixMillis(created),
                        deleted_at: deleted.map(UnixMillis),
                    })
                })
                .collect()
        })
        .await
    }
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn append_top_up(
        &self,
        account: &AccountId,
        amount: i64,
        at: UnixMillis,
        memo: &str,
        reference: Option<&str>,
    ) -> Result<(LedgerEntry, Standing), StoreError> {
        if amount <= 0 {
            return Err(StoreError::Backend(Box::new(Invalid::new(
                "a top-up must be positive",
            ))));
        }
        let account = account.as_str().to_owned();
        let memo = memo.to_owned();
        let reference = reference.map(str::to_owned);
        self.write(move |tx| {
            // The foreign key answers MissingReference for an unknown
            // account; the unique index on (account, reference) turns a
            // repeated reference into no row inserted.
            let inserted = tx
                .prepare_cached(
                    "INSERT INTO ledger (account_id, at, kind, amount, month, memo, reference)
                     VALUES (?1, ?2, 'TopUp', ?3, NULL, ?4, ?5)
                     ON CONFLICT (account_id, reference) WHERE reference IS NOT NULL DO NOTHING",
                )?
                .execute(params![account, at.0, amount, memo, reference])?;
            let entry = if inserted == 0 {
                let existing = tx
                    .prepare_cached(&format!(
                        "SELECT {ENTRY_COLUMNS} FROM ledger
                         WHERE account_id = ?1 AND reference = ?2"
                    ))?
                    .query_row(params![account, reference], entry_from_row)?;
                let existing = decode_entry(existing)?;
                if existing.amount != amount {
                    return Err(Fail(StoreError::AlreadyExists));
                }
                existing
            } else {
                last_entry(tx)?
            };
            let mut now = standing(tx, &account)?;
            if now.frozen && now.balance >= 0 {
                set_frozen(tx, &account, false)?;
                now.frozen = false;
            }
            Ok((entry, now))
        })
        .await
    }

    async fn post_charges(
        &self,
        account: &AccountId,
        month_: Month,
        month_to_date: i64,
        at: UnixMillis,
    ) -> Result<(Option<LedgerEntry>, Standing), StoreError> {
        let account = account.as_str().to_owned();
        self.write(move |tx| {
            let posted: i64 = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(amount), 0) FROM ledger
                     WHERE account_id = ?1 AND kind = 'Charge' AND month = ?2",
                )?
                .query_row(params![account, i64::from(month_.code())], |r| r.get(0))?;
            let mut entry = None;
            if month_to_date > posted {
                tx.prepare_cached(
                    "INSERT INTO ledger (account_id, at, kind, amount, month, memo)
                     VALUES (?1, ?2, 'Charge', ?3, ?4, ?5)",
                )?
                .execute(params![
                    account,
                    at.0,
                    month_to_date - posted,
                    i64::from(month_.code()),
                    format!("charges for {month_}")
                ])?;
                entry = Some(last_entry(tx)?);
            }
            let mut now = standing(tx, &account)?;
            if !now.frozen && now.balance < 0 {
                set_frozen(tx, &account, true)?;
                now.frozen = true;
            }
            Ok((entry, now))
        })
        .await
    }

    async fn ledger(
        &self,
        account: &AccountId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let account = account.as_str().to_owned();
        let after = after.map_or(Ok(0), to_i64).map_err(|Fail(e)| e)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |tx| {
            let rows = tx
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger WHERE account_id = ?1 AND seq > ?2
                     ORDER BY seq LIMIT ?3"
                ))?
                .query_map(params![account, after, limit], entry_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(decode_entry).collect()
        })
        .await
    }

    async fn standing(&self, account: &AccountId) -> Result<Standing, StoreError> {
        let account = account.as_str().to_owned();
        self.read(move |tx| standing(tx, &account)).await
    }
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn record_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError> {
        let usage = usage.to_vec();
        self.write(move |tx| {
            // Only for a key of that account that still exists; an older
            // or equal use never replaces a stored one.
            let mut stmt = tx.prepare_cached(
                "INSERT INTO key_usage (key_id, account_id, used_at, operation, principal, request_id)
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6
                 WHERE EXISTS (SELECT 1 FROM keys WHERE key_id = ?1 AND account_id = ?2)
                 ON CONFLICT (key_id) DO UPDATE SET
                     account_id = excluded.account_id, used_at = excluded.used_at,
                     operation = excluded.operation, principal = excluded.principal,
                     request_id = excluded.request_id
                 WHERE excluded.used_at > key_usage.used_at",
            )?;
            for u in &usage {
                stmt.execute(params![
                    u.key_id.to_string(),
                    u.account_id.as_str(),
                    u.used_at.0,
                    u.operation.as_str(),
                    u.principal,
                    u.request_id
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn get_key_usage(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyUsage>, StoreError> {
        let account = account.as_str().to_owned();
        let key_id = key.to_string();
        self.read(move |tx| {
            tx.prepare_cached(&format!(
                "SELECT {USAGE_COLUMNS} FROM key_usage WHERE key_id = ?1 AND account_id = ?2"
            ))?
            .query_row([&key_id, &account], usage_from_row)
            .optional()?
            .map(|row| Ok(row.decode()?))
            .transpose()
        })
        .await
    }

    async fn usage_tracking_start(&self) -> Result<UnixMillis, StoreError> {
        self.read(|tx| {
            let t: i64 = tx
                .prepare_cached("SELECT started_at FROM usage_tracking WHERE id = 1")?
                .query_row([], |row| row.get(0))?;
            Ok(UnixMillis(t))
        })
        .await
    }
}
