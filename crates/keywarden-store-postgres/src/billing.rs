//! Metering and the ledger (`MeteringStore`, `LedgerStore`).
//!
//! Several nodes post to one database, so the read-then-write methods are
//! serialized per account by a lock on the account's row
//! (`SELECT ... FOR NO KEY UPDATE`, which still lets foreign-key checks
//! through): under READ COMMITTED every later statement of the transaction
//! then sees what the previous holder committed, and `post_charges` posts a
//! month's difference exactly once.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use keywarden_core::billing::{KeyLifetime, LedgerEntry, Month, RequestCount, Standing};
use keywarden_core::clock::UnixMillis;
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::{CryptoOperation, KeyUsage};
use keywarden_core::store::{LedgerStore, MeteringStore, StoreError, UsageStore};
use keywarden_core::store_codec::{decode_account_id, decode_key_id};

use crate::error::{Fail, Invalid};
use crate::rows::{ledger_from_row, usage_from_row, LEDGER_COLUMNS, USAGE_COLUMNS};
use crate::{sql_limit, transact, Mode, PgStore, Tx};

/// How long counted batch ids are remembered (retries come within seconds).
const BATCH_MEMORY_MS: i64 = 86_400_000;

/// The database's clock in milliseconds, for bookkeeping only.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

fn to_i64(v: u64) -> Result<i64, Fail> {
    i64::try_from(v).map_err(|_| Invalid::new("count out of range").into())
}

/// Locks the account's row until the transaction ends (nothing if the
/// account does not exist; the ledger's foreign key answers that).
pub(crate) async fn lock_account(tx: &Tx<'_>, account: &str) -> Result<(), Fail> {
    let stmt = tx
        .prepare_cached("SELECT 1 FROM accounts WHERE account_id = $1 FOR NO KEY UPDATE")
        .await?;
    tx.query_opt(&stmt, &[&account]).await?;
    Ok(())
}

/// The account's standing inside a transaction.
async fn standing(tx: &Tx<'_>, account: &str) -> Result<Standing, Fail> {
    let stmt = tx
        .prepare_cached(
            "SELECT COALESCE(SUM(CASE kind WHEN 'TopUp' THEN amount ELSE -amount END), 0)::bigint,
                    COALESCE((SELECT frozen FROM account_standing WHERE account_id = $1), false)
             FROM ledger WHERE account_id = $1",
        )
        .await?;
    let row = tx.query_one(&stmt, &[&account]).await?;
    Ok(Standing {
        balance: row.try_get(0)?,
        frozen: row.try_get(1)?,
    })
}

/// Sets the frozen flag if it differs (only a change moves the change stamp).
async fn set_frozen(tx: &Tx<'_>, account: &str, frozen: bool) -> Result<(), Fail> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO account_standing (account_id, frozen) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET frozen = excluded.frozen
             WHERE account_standing.frozen <> excluded.frozen",
        )
        .await?;
    tx.execute(&stmt, &[&account, &frozen]).await?;
    Ok(())
}

/// Appends a ledger entry and answers it.
async fn append(
    tx: &Tx<'_>,
    account: &str,
    at: i64,
    kind: &str,
    amount: i64,
    month: Option<i64>,
    memo: &str,
) -> Result<LedgerEntry, Fail> {
    let stmt = tx
        .prepare_cached(&format!(
            "INSERT INTO ledger (account_id, at, kind, amount, month, memo)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {LEDGER_COLUMNS}"
        ))
        .await?;
    let row = tx
        .query_one(&stmt, &[&account, &at, &kind, &amount, &month, &memo])
        .await?;
    Ok(ledger_from_row(&row)?.decode()?)
}

/// Appends a top-up with a reference unless the account has one with it
/// already: then answers that entry (AlreadyExists if its amount differs).
/// The unique index decides, not a read before the write: a racing insert
/// of the same reference waits for the other transaction and then does
/// nothing, and the SELECT (a new statement under READ COMMITTED) sees the
/// committed row.
async fn top_up_once(
    tx: &Tx<'_>,
    account: &str,
    at: i64,
    amount: i64,
    memo: &str,
    reference: &str,
) -> Result<LedgerEntry, Fail> {
    let insert = tx
        .prepare_cached(&format!(
            "INSERT INTO ledger (account_id, at, kind, amount, month, memo, reference)
             VALUES ($1, $2, 'TopUp', $3, NULL, $4, $5)
             ON CONFLICT (account_id, reference) WHERE reference IS NOT NULL DO NOTHING
             RETURNING {LEDGER_COLUMNS}"
        ))
        .await?;
    if let Some(row) = tx
        .query_opt(&insert, &[&account, &at, &amount, &memo, &reference])
        .await?
    {
        return Ok(ledger_from_row(&row)?.decode()?);
    }
    let select = tx
        .prepare_cached(&format!(
            "SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = $1 AND reference = $2"
        ))
        .await?;
    let row = tx.query_one(&select, &[&account, &reference]).await?;
    let existing = ledger_from_row(&row)?.decode()?;
    if existing.amount != amount {
        return Err(Fail::from(StoreError::AlreadyExists));
    }
    Ok(existing)
}

#[async_trait]
impl MeteringStore for PgStore {
    async fn record_requests(
        &self,
        batch_id: &str,
        counts: &[RequestCount],
    ) -> Result<(), StoreError> {
        // Summed per counter and sorted: one upsert row per counter, and
        // one lock order for every batch.
        let mut sums: BTreeMap<(&str, i64, String, &str), i64> = BTreeMap::new();
        for c in counts {
            let n = to_i64(c.count).map_err(|f| f.error)?;
            let sum = sums
                .entry((
                    c.account_id.as_str(),
                    i64::from(c.month.code()),
                    c.key_id.to_string(),
                    c.operation.as_str(),
                ))
                .or_insert(0);
            *sum = sum
                .checked_add(n)
                .ok_or_else(|| Fail::from(Invalid::new("count out of range")).error)?;
        }
        let accounts: Vec<&str> = sums.keys().map(|k| k.0).collect();
        let months: Vec<i64> = sums.keys().map(|k| k.1).collect();
        let keys: Vec<&str> = sums.keys().map(|k| k.2.as_str()).collect();
        let operations: Vec<&str> = sums.keys().map(|k| k.3).collect();
        let values: Vec<i64> = sums.values().copied().collect();
        transact!(self, Mode::Quiet, |tx| {
            // A second recorder of the same batch id waits here for the
            // first one's commit, then inserts nothing and stops.
            let claim = tx
                .prepare_cached(&format!(
                    "INSERT INTO metering_batches (batch_id, recorded_at) VALUES ($1, {NOW_MS})
                     ON CONFLICT (batch_id) DO NOTHING"
                ))
                .await?;
            if tx.execute(&claim, &[&batch_id]).await? > 0 {
                let add = tx
                    .prepare_cached(
                        "INSERT INTO request_counts (account_id, month, key_id, operation, count)
                         SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[],
                                              $5::bigint[])
                         ORDER BY 1, 2, 3, 4
                         ON CONFLICT (account_id, month, key_id, operation)
                         DO UPDATE SET count = request_counts.count + excluded.count",
                    )
                    .await?;
                tx.execute(&add, &[&accounts, &months, &keys, &operations, &values])
                    .await?;
                let prune = tx
                    .prepare_cached(&format!(
                        "DELETE FROM metering_batches WHERE recorded_at < {NOW_MS} - $1"
                    ))
                    .await?;
                tx.execute(&prune, &[&BATCH_MEMORY_MS]).await?;
            }
        })
    }

    async fn request_counts(
        &self,
        account: &AccountId,
        month: Month,
    ) -> Result<Vec<RequestCount>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(
                    "SELECT key_id, operation, count FROM request_counts
                     WHERE account_id = $1 AND month = $2 ORDER BY key_id, operation",
                )
                .await?;
            let rows = tx
                .query(&stmt, &[&account.as_str(), &i64::from(month.code())])
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in rows {
                let (key, op, count): (String, String, i64) =
                    (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                out.push(RequestCount {
                    account_id: account.clone(),
                    key_id: decode_key_id(&key)?,
                    operation: CryptoOperation::parse(&op)
                        .ok_or_else(|| Invalid::new("stored operation is unknown"))?,
                    month,
                    count: u64::try_from(count).map_err(|_| Invalid::new("negative count"))?,
                });
            }
            out
        })
    }

    async fn key_lifetimes(
        &self,
        account: &AccountId,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<KeyLifetime>, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(
                    "SELECT key_id, hardware, default_key, created_at, deleted_at, account_id
                     FROM key_lifetimes
                     WHERE account_id = $1 AND created_at < $3
                       AND (deleted_at IS NULL OR deleted_at > $2)
                     ORDER BY created_at, key_id",
                )
                .await?;
            let rows = tx
                .query(&stmt, &[&account.as_str(), &from.0, &to.0])
                .await?;
            rows.iter()
                .map(lifetime_from_row)
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }
}

/// Decodes `key_id, hardware, default_key, created_at, deleted_at,
/// account_id` of `key_lifetimes`.
pub(crate) fn lifetime_from_row(row: &tokio_postgres::Row) -> Result<KeyLifetime, Fail> {
    let key: String = row.try_get(0)?;
    let account: String = row.try_get(5)?;
    Ok(KeyLifetime {
        account_id: decode_account_id(&account)?,
        key_id: decode_key_id(&key)?,
        hardware: row.try_get(1)?,
        default_key: row.try_get(2)?,
        created_at: UnixMillis(row.try_get(3)?),
        deleted_at: row.try_get::<_, Option<i64>>(4)?.map(UnixMillis),
    })
}

#[async_trait]
impl LedgerStore for PgStore {
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
        let account = account.as_str();
        // Write: unfreezing moves the change stamp.
        transact!(self, Mode::Write, |tx| {
            lock_account(&tx, account).await?;
            // The foreign key answers MissingReference for an unknown account.
            let entry = match reference {
                None => append(&tx, account, at.0, "TopUp", amount, None, memo).await?,
                Some(reference) => top_up_once(&tx, account, at.0, amount, memo, reference).await?,
            };
            let mut now = standing(&tx, account).await?;
            if now.frozen && now.balance >= 0 {
                set_frozen(&tx, account, false).await?;
                now.frozen = false;
            }
            (entry, now)
        })
    }

    async fn post_charges(
        &self,
        account: &AccountId,
        month: Month,
        month_to_date: i64,
        at: UnixMillis,
    ) -> Result<(Option<LedgerEntry>, Standing), StoreError> {
        let account = account.as_str();
        let code = i64::from(month.code());
        let memo = format!("charges for {month}");
        transact!(self, Mode::Write, |tx| {
            // Serializes posters of this account: the sum below includes
            // every charge committed before we got the lock.
            lock_account(&tx, account).await?;
            let posted_stmt = tx
                .prepare_cached(
                    "SELECT COALESCE(SUM(amount), 0)::bigint FROM ledger
                     WHERE account_id = $1 AND kind = 'Charge' AND month = $2",
                )
                .await?;
            let posted: i64 = tx
                .query_one(&posted_stmt, &[&account, &code])
                .await?
                .try_get(0)?;
            let mut entry = None;
            if month_to_date > posted {
                let amount = month_to_date - posted;
                entry =
                    Some(append(&tx, account, at.0, "Charge", amount, Some(code), &memo).await?);
            }
            let mut now = standing(&tx, account).await?;
            if !now.frozen && now.balance < 0 {
                set_frozen(&tx, account, true).await?;
                now.frozen = true;
            }
            (entry, now)
        })
    }

    async fn ledger(
        &self,
        account: &AccountId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let after = after.map_or(Ok(0), to_i64).map_err(|f| f.error)?;
        let limit = sql_limit(limit);
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {LEDGER_COLUMNS} FROM ledger WHERE account_id = $1 AND seq > $2
                     ORDER BY seq LIMIT $3"
                ))
                .await?;
            tx.query(&stmt, &[&account.as_str(), &after, &limit])
                .await?
                .iter()
                .map(|row| Ok(ledger_from_row(row)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?
        })
    }

    async fn standing(&self, account: &AccountId) -> Result<Standing, StoreError> {
        transact!(self, Mode::Read, |tx| standing(&tx, account.as_str())
            .await?)
    }
}

#[async_trait]
impl UsageStore for PgStore {
    async fn record_key_usage(&self, usage: &[KeyUsage]) -> Result<(), StoreError> {
        // Per (key, account), the newest use (the first of equals, as
        // entry-by-entry upserts would keep): one upsert row per key, so
        // the statement never touches a row twice.
        let mut newest: HashMap<(String, &str), &KeyUsage> = HashMap::new();
        for u in usage {
            newest
                .entry((u.key_id.to_string(), u.account_id.as_str()))
                .and_modify(|kept| {
                    if u.used_at > kept.used_at {
                        *kept = u;
                    }
                })
                .or_insert(u);
        }
        if newest.is_empty() {
            return Ok(());
        }
        let mut entries: Vec<(String, &KeyUsage)> =
            newest.into_iter().map(|((k, _), u)| (k, u)).collect();
        // One lock order for every batch: no deadlocks between nodes.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.account_id.cmp(&b.1.account_id)));
        let key_ids: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        let accounts: Vec<&str> = entries.iter().map(|(_, u)| u.account_id.as_str()).collect();
        let used_at: Vec<i64> = entries.iter().map(|(_, u)| u.used_at.0).collect();
        let operations: Vec<&str> = entries.iter().map(|(_, u)| u.operation.as_str()).collect();
        let principals: Vec<&str> = entries.iter().map(|(_, u)| u.principal.as_str()).collect();
        let requests: Vec<&str> = entries.iter().map(|(_, u)| u.request_id.as_str()).collect();
        transact!(self, Mode::Quiet, |tx| {
            // Only keys of that account that still exist; `FOR KEY SHARE`
            // makes a concurrent destroy_key wait for this batch (or this
            // batch for it), so no usage row outlives its key.
            let stmt = tx
                .prepare_cached(
                    "WITH batch AS (
                         SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
                                              $5::text[], $6::text[])
                             AS b(key_id, account_id, used_at, operation, principal, request_id)
                     ),
                     live AS (
                         SELECT k.key_id, k.account_id FROM keys k JOIN batch b
                             ON k.key_id = b.key_id AND k.account_id = b.account_id
                         ORDER BY k.key_id FOR KEY SHARE OF k
                     )
                     INSERT INTO key_usage (key_id, account_id, used_at, operation, principal,
                                            request_id)
                     SELECT b.key_id, b.account_id, b.used_at, b.operation, b.principal,
                            b.request_id
                     FROM batch b JOIN live l ON l.key_id = b.key_id AND l.account_id = b.account_id
                     ORDER BY b.key_id
                     ON CONFLICT (key_id) DO UPDATE SET
                         account_id = excluded.account_id, used_at = excluded.used_at,
                         operation = excluded.operation, principal = excluded.principal,
                         request_id = excluded.request_id
                     WHERE excluded.used_at > key_usage.used_at",
                )
                .await?;
            tx.execute(
                &stmt,
                &[
                    &key_ids,
                    &accounts,
                    &used_at,
                    &operations,
                    &principals,
                    &requests,
                ],
            )
            .await?;
        })
    }

    async fn get_key_usage(
        &self,
        account: &AccountId,
        key: &KeyId,
    ) -> Result<Option<KeyUsage>, StoreError> {
        let key_id = key.to_string();
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached(&format!(
                    "SELECT {USAGE_COLUMNS} FROM key_usage WHERE key_id = $1 AND account_id = $2"
                ))
                .await?;
            match tx.query_opt(&stmt, &[&key_id, &account.as_str()]).await? {
                Some(row) => Some(usage_from_row(&row)?.decode()?),
                None => None,
            }
        })
    }

    async fn usage_tracking_start(&self) -> Result<UnixMillis, StoreError> {
        transact!(self, Mode::Read, |tx| {
            let stmt = tx
                .prepare_cached("SELECT started_at FROM usage_tracking WHERE id = 1")
                .await?;
            UnixMillis(tx.query_one(&stmt, &[]).await?.try_get(0)?)
        })
    }
}
