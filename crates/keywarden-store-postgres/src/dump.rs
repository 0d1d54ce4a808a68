//! [`DumpStore`]: a whole store out of and into PostgreSQL, with every id,
//! revision, timestamp and ledger `seq` kept.

use async_trait::async_trait;
use keywarden_core::billing::RequestCount;
use keywarden_core::clock::UnixMillis;
use keywarden_core::dump::{DumpStore, StoreDump};
use keywarden_core::model::CryptoOperation;
use keywarden_core::store::StoreError;
use keywarden_core::store_codec::{
    decode_account, decode_account_id, decode_key_id, decode_month, decode_product, IamRow,
    KeyColumns, KeyringRow,
};

use crate::accounts::insert_credential;
use crate::aliases::insert_alias_row;
use crate::billing::lifetime_from_row;
use crate::error::{Fail, Invalid};
use crate::iam::{all_iam_entities, insert_iam_row};
use crate::keyrings::{export_keyrings, insert_keyring_row, insert_keyring_version};
use crate::keys::{insert_key_row, load_keys};
use crate::rows::{
    account_from_row, alias_from_row, credential_from_row, grant_from_row, key_from_row,
    ledger_from_row, product_from_row, usage_from_row, ACCOUNT_COLUMNS, ALIAS_COLUMNS,
    CREDENTIAL_COLUMNS, GRANT_COLUMNS, KEY_COLUMNS, LEDGER_COLUMNS, PRODUCT_COLUMNS, USAGE_COLUMNS,
};
use crate::{transact, Mode, PgStore};

/// Serializes imports into one database (`pg_advisory_xact_lock`).
const IMPORT_LOCK: i64 = 0x6b65_7977_696d_706f;

#[async_trait]
impl DumpStore for PgStore {
    async fn export_dump(&self) -> Result<StoreDump, StoreError> {
        // Mode::Read is one REPEATABLE READ snapshot: the dump is
        // consistent even if something writes meanwhile.
        transact!(self, Mode::Read, |tx| {
            let all = |sql: String| {
                let tx = &tx;
                async move {
                    let stmt = tx.prepare(&sql).await?;
                    tx.query(&stmt, &[]).await
                }
            };
            let accounts = all(format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY account_id"
            ))
            .await?
            .iter()
            .map(|r| Ok(decode_account(account_from_row(r)?)?))
            .collect::<Result<Vec<_>, Fail>>()?;
            let products = all(format!(
                "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY code"
            ))
            .await?
            .iter()
            .map(|r| Ok(decode_product(product_from_row(r)?)?))
            .collect::<Result<Vec<_>, Fail>>()?;
            let credentials = all(format!(
                "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY access_key_id"
            ))
            .await?
            .iter()
            .map(|r| Ok(credential_from_row(r)?.decode()?))
            .collect::<Result<Vec<_>, Fail>>()?;
            let key_rows = all(format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY key_id"))
                .await?
                .iter()
                .map(key_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let keys = load_keys(&tx, key_rows).await?;
            let aliases = all(format!(
                "SELECT {ALIAS_COLUMNS} FROM aliases ORDER BY account_id, region, name"
            ))
            .await?
            .iter()
            .map(|r| Ok(alias_from_row(r)?.decode()?))
            .collect::<Result<Vec<_>, Fail>>()?;
            let grants = all(format!(
                "SELECT {GRANT_COLUMNS} FROM grants ORDER BY grant_id"
            ))
            .await?
            .iter()
            .map(|r| Ok(grant_from_row(r)?.decode()?))
            .collect::<Result<Vec<_>, Fail>>()?;
            let key_usage = all(format!(
                "SELECT {USAGE_COLUMNS} FROM key_usage ORDER BY key_id"
            ))
            .await?
            .iter()
            .map(|r| Ok(usage_from_row(r)?.decode()?))
            .collect::<Result<Vec<_>, Fail>>()?;
            let usage_tracking_start = UnixMillis(
                all("SELECT started_at FROM usage_tracking WHERE id = 1".into())
                    .await?
                    .first()
                    .ok_or_else(|| Invalid::new("usage_tracking is empty"))?
                    .try_get(0)?,
            );
            let key_lifetimes = all(
                "SELECT key_id, hardware, default_key, created_at, deleted_at, account_id
                 FROM key_lifetimes ORDER BY key_id"
                    .into(),
            )
            .await?
            .iter()
            .map(lifetime_from_row)
            .collect::<Result<Vec<_>, Fail>>()?;
            let request_counts = all(
                "SELECT account_id, month, key_id, operation, count FROM request_counts
                 ORDER BY account_id, month, key_id, operation"
                    .into(),
            )
            .await?
            .iter()
            .map(|r| {
                let (account, month, key, op, count): (String, i64, String, String, i64) = (
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get(4)?,
                );
                Ok(RequestCount {
                    account_id: decode_account_id(&account)?,
                    key_id: decode_key_id(&key)?,
                    operation: CryptoOperation::parse(&op)
                        .ok_or_else(|| Invalid::new("stored operation is unknown"))?,
                    month: decode_month(month)?,
                    count: u64::try_from(count).map_err(|_| Invalid::new("negative count"))?,
                })
            })
            .collect::<Result<Vec<_>, Fail>>()?;
            let ledger = all(format!("SELECT {LEDGER_COLUMNS} FROM ledger ORDER BY seq"))
                .await?
                .iter()
                .map(|r| Ok(ledger_from_row(r)?.decode()?))
                .collect::<Result<Vec<_>, Fail>>()?;
            let standings =
                all("SELECT account_id, frozen FROM account_standing ORDER BY account_id".into())
                    .await?
                    .iter()
                    .map(|r| {
                        let account: String = r.try_get(0)?;
                        Ok((decode_account_id(&account)?, r.try_get::<_, bool>(1)?))
                    })
                    .collect::<Result<Vec<_>, Fail>>()?;
            let root_key_check = all("SELECT root_key_check FROM deployment WHERE id = 1".into())
                .await?
                .first()
                .map(|r| r.try_get::<_, Vec<u8>>(0))
                .transpose()?;
            let (keyrings, keyring_key_versions) = export_keyrings(&tx).await?;
            let iam_entities = all_iam_entities(&tx).await?;
            let custom_key_stores =
                crate::custom_key_stores::all_custom_key_stores(&tx, None).await?;
            StoreDump {
                custom_key_stores,
                iam_entities,
                root_key_check,
                keyrings,
                keyring_key_versions,
                accounts,
                products,
                credentials,
                keys,
                aliases,
                grants,
                key_usage,
                usage_tracking_start,
                key_lifetimes,
                request_counts,
                ledger,
                standings,
            }
        })
    }

    async fn import_dump(&self, dump: &StoreDump) -> Result<(), StoreError> {
        let keys = dump
            .keys
            .iter()
            .map(|k| {
                keywarden_core::store_codec::check_versions(k)?;
                KeyColumns::encode(k)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fail::from(e).error)?;
        let keyrings = dump
            .keyrings
            .iter()
            .map(KeyringRow::encode)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Fail::from(e).error)?;
        transact!(self, Mode::Write, |tx| {
            let run = |sql: &'static str| {
                let tx = &tx;
                async move { tx.prepare_cached(sql).await }
            };
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&IMPORT_LOCK])
                .await?;
            let occupied: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM keys)
                         OR EXISTS (SELECT 1 FROM credentials)",
                    &[],
                )
                .await?
                .try_get(0)?;
            if occupied {
                return Err(StoreError::AlreadyExists.into());
            }
            // Without accounts and keys, these can only hold leftovers of
            // destroyed keys; the dump's records replace them, and the seed
            // products are replaced by the dump's.
            tx.batch_execute(
                "DELETE FROM key_lifetimes; DELETE FROM request_counts; DELETE FROM key_usage;
                 DELETE FROM metering_batches; DELETE FROM products;",
            )
            .await?;

            let stmt =
                run("INSERT INTO accounts (account_id, name, created_at) VALUES ($1, $2, $3)")
                    .await?;
            for a in &dump.accounts {
                tx.execute(&stmt, &[&a.account_id.as_str(), &a.name, &a.created_at.0])
                    .await?;
            }
            let stmt = run(
                "INSERT INTO products (code, class, status, created_at) VALUES ($1, $2, $3, $4)",
            )
            .await?;
            for p in &dump.products {
                tx.execute(
                    &stmt,
                    &[
                        &p.code.as_str(),
                        &p.class.as_str(),
                        &p.status.as_str(),
                        &p.created_at.0,
                    ],
                )
                .await?;
            }
            for c in &dump.credentials {
                insert_credential(&tx, c).await?;
            }
            for (cols, key) in keys.iter().zip(&dump.keys) {
                insert_key_row(&tx, cols, &key.versions).await?;
            }
            for a in &dump.aliases {
                insert_alias_row(&tx, a).await?;
            }
            let stmt = run(
                "INSERT INTO grants (grant_id, account_id, key_id, grantee, retiring, name,
                                     created_at, meta)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await?;
            for g in &dump.grants {
                let row = keywarden_core::store_codec::GrantRow::encode(g)?;
                tx.execute(
                    &stmt,
                    &[
                        &row.grant_id,
                        &row.account_id,
                        &row.key_id,
                        &row.grantee,
                        &row.retiring,
                        &row.name,
                        &row.created_at,
                        &row.meta,
                    ],
                )
                .await?;
            }
            let stmt = run(
                "INSERT INTO key_usage (key_id, account_id, used_at, operation, principal,
                                        request_id)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .await?;
            for u in &dump.key_usage {
                tx.execute(
                    &stmt,
                    &[
                        &u.key_id.to_string(),
                        &u.account_id.as_str(),
                        &u.used_at.0,
                        &u.operation.as_str(),
                        &u.principal,
                        &u.request_id,
                    ],
                )
                .await?;
            }
            let stmt = run("UPDATE usage_tracking SET started_at = $1 WHERE id = 1").await?;
            tx.execute(&stmt, &[&dump.usage_tracking_start.0]).await?;
            // Key inserts made lifetimes through the trigger; the dump's
            // (with their end dates) win.
            let stmt = run(
                "INSERT INTO key_lifetimes (key_id, account_id, hardware, default_key, created_at,
                                            deleted_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (key_id) DO UPDATE SET account_id = excluded.account_id,
                     hardware = excluded.hardware, default_key = excluded.default_key,
                     created_at = excluded.created_at, deleted_at = excluded.deleted_at",
            )
            .await?;
            for l in &dump.key_lifetimes {
                tx.execute(
                    &stmt,
                    &[
                        &l.key_id.to_string(),
                        &l.account_id.as_str(),
                        &l.hardware,
                        &l.default_key,
                        &l.created_at.0,
                        &l.deleted_at.map(|t| t.0),
                    ],
                )
                .await?;
            }
            let stmt = run(
                "INSERT INTO request_counts (account_id, month, key_id, operation, count)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .await?;
            for c in &dump.request_counts {
                let count =
                    i64::try_from(c.count).map_err(|_| Invalid::new("count out of range"))?;
                tx.execute(
                    &stmt,
                    &[
                        &c.account_id.as_str(),
                        &i64::from(c.month.code()),
                        &c.key_id.to_string(),
                        &c.operation.as_str(),
                        &count,
                    ],
                )
                .await?;
            }
            let stmt = run(
                "INSERT INTO ledger (seq, account_id, at, kind, amount, month, memo, reference)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await?;
            for e in &dump.ledger {
                let seq =
                    i64::try_from(e.seq).map_err(|_| Invalid::new("ledger seq out of range"))?;
                tx.execute(
                    &stmt,
                    &[
                        &seq,
                        &e.account_id.as_str(),
                        &e.at.0,
                        &e.kind.as_str(),
                        &e.amount,
                        &e.month.map(|m| i64::from(m.code())),
                        &e.memo,
                        &e.reference,
                    ],
                )
                .await?;
            }
            // New entries continue after the imported ones.
            tx.batch_execute(
                "SELECT setval(pg_get_serial_sequence('ledger', 'seq'),
                               COALESCE((SELECT MAX(seq) FROM ledger), 1),
                               (SELECT MAX(seq) FROM ledger) IS NOT NULL)",
            )
            .await?;
            let stmt =
                run("INSERT INTO account_standing (account_id, frozen) VALUES ($1, $2)").await?;
            for (account, frozen) in &dump.standings {
                tx.execute(&stmt, &[&account.as_str(), frozen]).await?;
            }
            // The deployment's root key check is the dump's (a node that
            // opened the empty database first may have stored its own).
            tx.execute("DELETE FROM deployment", &[]).await?;
            if let Some(check) = &dump.root_key_check {
                tx.execute(
                    "INSERT INTO deployment (id, root_key_check) VALUES (1, $1)",
                    &[check],
                )
                .await?;
            }
            // After the accounts they belong to.
            for k in &keyrings {
                insert_keyring_row(&tx, k).await?;
            }
            for v in &dump.keyring_key_versions {
                insert_keyring_version(&tx, v).await?;
            }
            for e in &dump.iam_entities {
                insert_iam_row(&tx, &IamRow::encode(e)).await?;
            }
            for s in &dump.custom_key_stores {
                crate::custom_key_stores::insert_custom_key_store(&tx, s).await?;
            }
        })
    }
}
