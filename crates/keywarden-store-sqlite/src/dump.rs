//! Whole-store export and import ([`DumpStore`]), for
//! `keywarden admin migrate-store`.

use async_trait::async_trait;
use keywarden_core::billing::{KeyLifetime, RequestCount};
use keywarden_core::clock::UnixMillis;
use keywarden_core::dump::{DumpStore, StoreDump};
use keywarden_core::ids::{AccountId, KeyId};
use keywarden_core::model::CryptoOperation;
use keywarden_core::store::StoreError;
use rusqlite::{params, OptionalExtension, Transaction};

use keywarden_core::store_codec::{self, GrantRow};

use crate::accounts::insert_credential;
use crate::aliases::insert_alias_row;
use crate::billing::{decode_entry, entry_from_row, ENTRY_COLUMNS};
use crate::error::{Fail, Invalid};
use crate::iam::{all_iam_entities, insert_iam_row};
use crate::keyrings::{
    all_keyring_versions, all_keyrings, insert_keyring_row, insert_keyring_version,
};
use crate::keys::{insert_key_row, load_key};
use crate::rows::{
    account_from_row, alias_from_row, credential_from_row, decode_account, decode_product,
    grant_from_row, key_from_row, product_from_row, revision_to_sql, usage_from_row, KeyColumns,
    ACCOUNT_COLUMNS, ALIAS_COLUMNS, CREDENTIAL_COLUMNS, GRANT_COLUMNS, KEY_COLUMNS,
    PRODUCT_COLUMNS, USAGE_COLUMNS,
};
use crate::SqliteStore;

fn account_id(s: &str) -> Result<AccountId, Fail> {
    Ok(store_codec::decode_account_id(s)?)
}

fn key_id(s: &str) -> Result<KeyId, Fail> {
    Ok(store_codec::decode_key_id(s)?)
}

/// Every row of every table but the change counter and metering batch ids,
/// read in one transaction.
fn export(tx: &Transaction<'_>) -> Result<StoreDump, Fail> {
    let accounts = tx
        .prepare(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY account_id"
        ))?
        .query_map([], account_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(decode_account)
        .collect::<Result<Vec<_>, _>>()?;
    let products = tx
        .prepare(&format!(
            "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY code"
        ))?
        .query_map([], product_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(decode_product)
        .collect::<Result<Vec<_>, _>>()?;
    let credentials = tx
        .prepare(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials ORDER BY access_key_id"
        ))?
        .query_map([], credential_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|row| row.decode().map_err(Fail::from))
        .collect::<Result<Vec<_>, _>>()?;
    let key_rows = tx
        .prepare(&format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY key_id"))?
        .query_map([], key_from_row)?
        .collect::<Result<Vec<_>, _>>()?;
    let keys = key_rows
        .into_iter()
        .map(|row| load_key(tx, row))
        .collect::<Result<Vec<_>, _>>()?;
    let aliases = tx
        .prepare(&format!(
            "SELECT {ALIAS_COLUMNS} FROM aliases ORDER BY account_id, region, name"
        ))?
        .query_map([], alias_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|row| row.decode().map_err(Fail::from))
        .collect::<Result<Vec<_>, _>>()?;
    let grants = tx
        .prepare(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants ORDER BY grant_id"
        ))?
        .query_map([], grant_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|row| row.decode().map_err(Fail::from))
        .collect::<Result<Vec<_>, _>>()?;
    let key_usage = tx
        .prepare(&format!(
            "SELECT {USAGE_COLUMNS} FROM key_usage ORDER BY key_id"
        ))?
        .query_map([], usage_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|row| row.decode().map_err(Fail::from))
        .collect::<Result<Vec<_>, _>>()?;
    let usage_tracking_start: i64 = tx.query_row(
        "SELECT started_at FROM usage_tracking WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let key_lifetimes = tx
        .prepare(
            "SELECT account_id, key_id, hardware, default_key, created_at, deleted_at
             FROM key_lifetimes ORDER BY key_id",
        )?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(account, key, hardware, default_key, created, deleted)| {
            Ok(KeyLifetime {
                account_id: account_id(&account)?,
                key_id: key_id(&key)?,
                hardware: hardware != 0,
                default_key: default_key != 0,
                created_at: UnixMillis(created),
                deleted_at: deleted.map(UnixMillis),
            })
        })
        .collect::<Result<Vec<_>, Fail>>()?;
    let request_counts = tx
        .prepare(
            "SELECT account_id, month, key_id, operation, count FROM request_counts
             ORDER BY account_id, month, key_id, operation",
        )?
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(account, month_code, key, op, count)| {
            Ok(RequestCount {
                account_id: account_id(&account)?,
                key_id: key_id(&key)?,
                operation: CryptoOperation::parse(&op)
                    .ok_or_else(|| Invalid::new("stored operation is unknown"))?,
                month: store_codec::decode_month(month_code)?,
                count: u64::try_from(count).map_err(|_| Invalid::new("negative count"))?,
            })
        })
        .collect::<Result<Vec<_>, Fail>>()?;
    let ledger = tx
        .prepare(&format!("SELECT {ENTRY_COLUMNS} FROM ledger ORDER BY seq"))?
        .query_map([], entry_from_row)?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(decode_entry)
        .collect::<Result<Vec<_>, _>>()?;
    let standings = tx
        .prepare("SELECT account_id, frozen FROM account_standing ORDER BY account_id")?
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(account, frozen)| Ok((account_id(&account)?, frozen != 0)))
        .collect::<Result<Vec<_>, Fail>>()?;
    let root_key_check: Option<Vec<u8>> = tx
        .prepare("SELECT root_key_check FROM deployment WHERE id = 1")?
        .query_row([], |r| r.get(0))
        .optional()?;
    let keyrings = all_keyrings(tx)?;
    let keyring_key_versions = all_keyring_versions(tx)?;
    let iam_entities = all_iam_entities(tx)?;
    let custom_key_stores = crate::custom_key_stores::all_custom_key_stores(tx, None)?;
    Ok(StoreDump {
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
        usage_tracking_start: UnixMillis(usage_tracking_start),
        key_lifetimes,
        request_counts,
        ledger,
        standings,
    })
}

/// Whether the store holds anything a dump could collide with.
fn holds_data(tx: &Transaction<'_>) -> Result<bool, Fail> {
    Ok(tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM accounts) OR EXISTS (SELECT 1 FROM keys)
             OR EXISTS (SELECT 1 FROM credentials) OR EXISTS (SELECT 1 FROM ledger)",
        [],
        |r| r.get::<_, bool>(0),
    )?)
}

fn import(tx: &Transaction<'_>, dump: &StoreDump) -> Result<(), Fail> {
    if holds_data(tx)? {
        return Err(StoreError::AlreadyExists.into());
    }
    // Seed products registered when the empty store was opened give way to
    // the dump's (no credential refers to them yet: the store is empty).
    tx.execute("DELETE FROM products", [])?;
    for a in &dump.accounts {
        tx.prepare_cached(
            "INSERT INTO accounts (account_id, name, created_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![a.account_id.as_str(), a.name, a.created_at.0])?;
    }
    for p in &dump.products {
        tx.prepare_cached(
            "INSERT INTO products (code, class, status, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            p.code.as_str(),
            p.class.as_str(),
            p.status.as_str(),
            p.created_at.0
        ])?;
    }
    for c in &dump.credentials {
        insert_credential(tx, c)?;
    }
    // Lifetimes before keys: the insert trigger's INSERT OR IGNORE then
    // keeps the dumped ones (destroyed keys' lifetimes have no key row).
    for l in &dump.key_lifetimes {
        tx.prepare_cached(
            "INSERT INTO key_lifetimes
                 (key_id, account_id, hardware, default_key, created_at, deleted_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            l.key_id.to_string(),
            l.account_id.as_str(),
            i64::from(l.hardware),
            i64::from(l.default_key),
            l.created_at.0,
            l.deleted_at.map(|t| t.0)
        ])?;
    }
    for k in &dump.keys {
        let cols = KeyColumns::encode(k)?;
        insert_key_row(tx, &cols, &k.versions)?;
    }
    for a in &dump.aliases {
        insert_alias_row(tx, a)?;
    }
    for g in &dump.grants {
        let row = GrantRow::encode(g)?;
        tx.prepare_cached(
            "INSERT INTO grants (grant_id, account_id, key_id, grantee, retiring, name, created_at, meta)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            row.grant_id,
            row.account_id,
            row.key_id,
            row.grantee,
            row.retiring,
            row.name,
            row.created_at,
            row.meta
        ])?;
    }
    for u in &dump.key_usage {
        tx.prepare_cached(
            "INSERT INTO key_usage (key_id, account_id, used_at, operation, principal, request_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            u.key_id.to_string(),
            u.account_id.as_str(),
            u.used_at.0,
            u.operation.as_str(),
            u.principal,
            u.request_id
        ])?;
    }
    tx.execute(
        "UPDATE usage_tracking SET started_at = ?1 WHERE id = 1",
        [dump.usage_tracking_start.0],
    )?;
    for r in &dump.request_counts {
        let count = i64::try_from(r.count).map_err(|_| Invalid::new("count out of range"))?;
        tx.prepare_cached(
            "INSERT INTO request_counts (account_id, month, key_id, operation, count)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            r.account_id.as_str(),
            i64::from(r.month.code()),
            r.key_id.to_string(),
            r.operation.as_str(),
            count
        ])?;
    }
    for e in &dump.ledger {
        let seq = revision_to_sql(e.seq)?;
        tx.prepare_cached(
            "INSERT INTO ledger (seq, account_id, at, kind, amount, month, memo, reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            seq,
            e.account_id.as_str(),
            e.at.0,
            e.kind.as_str(),
            e.amount,
            e.month.map(|m| i64::from(m.code())),
            e.memo,
            e.reference
        ])?;
    }
    tx.execute("DELETE FROM deployment", [])?;
    if let Some(check) = &dump.root_key_check {
        tx.execute(
            "INSERT INTO deployment (id, root_key_check) VALUES (1, ?1)",
            [check],
        )?;
    }
    for (account, frozen) in &dump.standings {
        tx.prepare_cached("INSERT INTO account_standing (account_id, frozen) VALUES (?1, ?2)")?
            .execute(params![account.as_str(), i64::from(*frozen)])?;
    }
    // After the accounts they belong to.
    for k in &dump.keyrings {
        insert_keyring_row(tx, &store_codec::KeyringRow::encode(k)?)?;
    }
    for v in &dump.keyring_key_versions {
        insert_keyring_version(tx, v)?;
    }
    for e in &dump.iam_entities {
        insert_iam_row(tx, &store_codec::IamRow::encode(e))?;
    }
    for s in &dump.custom_key_stores {
        crate::custom_key_stores::insert_custom_key_store(tx, s)?;
    }
    Ok(())
}

#[async_trait]
impl DumpStore for SqliteStore {
    async fn export_dump(&self) -> Result<StoreDump, StoreError> {
        self.read(export).await
    }

    async fn import_dump(&self, dump: &StoreDump) -> Result<(), StoreError> {
        let dump = dump.clone();
        self.write(move |tx| import(tx, &dump)).await
    }
}
