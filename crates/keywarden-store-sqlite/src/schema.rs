//! Versioned migrations, tracked in `PRAGMA user_version`.
//!
//! Migration `n` (1-based) is `MIGRATIONS[n - 1]`. Migrations only ever get
//! appended; a released migration is never edited.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Fail, Invalid};

/// Migration 1: the initial schema.
///
/// * Text ids sort the way the domain types do (`KeyId` renders as lowercase
///   hyphenated hex, whose byte order equals the UUID's byte order), so
///   `ORDER BY key_id` is the order `KeyQuery::after` paginates in.
/// * `aliases` refers to `keys` through `(account_id, key_id)`, so the
///   database itself refuses an alias whose target is a key of another
///   account. That needs the unique index `keys_by_account`, which also
///   serves listing an account's keys in key id order.
/// * Deleting a key cascades to its versions and aliases; `destroy_key` also
///   deletes them explicitly.
pub(crate) const MIGRATION_1: &str = "
CREATE TABLE accounts (
    account_id  TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE credentials (
    access_key_id TEXT    NOT NULL PRIMARY KEY,
    account_id    TEXT    NOT NULL REFERENCES accounts (account_id),
    sealed_secret BLOB    NOT NULL,
    status        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE INDEX credentials_by_account ON credentials (account_id, access_key_id);

CREATE TABLE keys (
    key_id        TEXT    NOT NULL PRIMARY KEY,
    account_id    TEXT    NOT NULL,
    revision      INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    deletion_date INTEGER,
    meta          TEXT    NOT NULL
) STRICT;

CREATE UNIQUE INDEX keys_by_account ON keys (account_id, key_id);
CREATE INDEX keys_by_deletion ON keys (state, deletion_date);

CREATE TABLE key_versions (
    key_id     TEXT    NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    protector  TEXT    NOT NULL,
    material   BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (key_id, version)
) STRICT;

CREATE TABLE aliases (
    account_id TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    PRIMARY KEY (account_id, name),
    FOREIGN KEY (account_id, key_id) REFERENCES keys (account_id, key_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX aliases_by_target ON aliases (account_id, key_id, name);
";

/// Migration 2: key rotation.
///
/// * `keys.rotation_date`: when the next automatic rotation is due, NULL
///   while automatic rotation is off (so every row written before this
///   migration reads as "off"). A column rather than a `meta` field so that
///   the rotation executor's question, "enabled keys due by now", is one
///   range scan of `keys_by_rotation` instead of a parse of every row. The
///   period and the other new key fields live in `meta` with serde
///   defaults.
/// * `key_versions.rotation_type`: `AUTOMATIC` or `ON_DEMAND` for a version
///   made by a rotation, NULL for a key's initial material (and every
///   version stored before this migration, all of which are initial).
const MIGRATION_2: &str = "
ALTER TABLE keys ADD COLUMN rotation_date INTEGER;
CREATE INDEX keys_by_rotation ON keys (state, rotation_date);
ALTER TABLE key_versions ADD COLUMN rotation_type TEXT;
";

/// Migration 3: imported key material.
///
/// * `keys.material_valid_to`: when a key's imported material expires, NULL
///   for generated keys, for material that does not expire and while the
///   material is deleted. A column so that the expiry executor's question
///   is one range scan of `keys_by_material_valid_to`. The fingerprint and
///   the expiration model live in `meta` (serde defaults: no import).
/// * A deleted version's `key_versions.material` is the empty blob.
const MIGRATION_3: &str = "
ALTER TABLE keys ADD COLUMN material_valid_to INTEGER;
CREATE INDEX keys_by_material_valid_to ON keys (material_valid_to);
";

/// Migration 4: key usage (`GetKeyLastUsage`) and a change counter.
///
/// * `key_usage`: one row per key, its newest cryptographic use. Servers
///   write it in batches about once a second; an upsert only replaces a
///   row with a strictly newer `used_at`. Not referenced by a foreign key,
///   so a batch never fails because a key was destroyed meanwhile (the
///   insert checks the key exists; `destroy_key` deletes the row).
/// * `usage_tracking`: since when usage is recorded. 0 for a database that
///   had no keys when migrated (every key's usage is known from its
///   creation), otherwise the migration time: older keys' earlier uses are
///   unknown.
/// * `changes`: the change stamp. Before this migration it was `PRAGMA
///   data_version`, which moves on every commit, so the usage flush would
///   have emptied every server's caches each second. Triggers bump the
///   counter on every change to the tables caches hold (not `key_usage`);
///   every process writing the file gets them from the schema.
const MIGRATION_4: &str = "
CREATE TABLE key_usage (
    key_id     TEXT    NOT NULL PRIMARY KEY,
    account_id TEXT    NOT NULL,
    used_at    INTEGER NOT NULL,
    operation  TEXT    NOT NULL,
    principal  TEXT    NOT NULL,
    request_id TEXT    NOT NULL
) STRICT;

CREATE TABLE usage_tracking (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    started_at INTEGER NOT NULL
) STRICT;

INSERT INTO usage_tracking (id, started_at)
    SELECT 1, CASE WHEN EXISTS (SELECT 1 FROM keys)
                   THEN CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)
                   ELSE 0 END;

CREATE TABLE changes (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    counter INTEGER NOT NULL
) STRICT;

INSERT INTO changes (id, counter) VALUES (1, 0);

CREATE TRIGGER accounts_insert_changes AFTER INSERT ON accounts
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER accounts_update_changes AFTER UPDATE ON accounts
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER accounts_delete_changes AFTER DELETE ON accounts
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER credentials_insert_changes AFTER INSERT ON credentials
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER credentials_update_changes AFTER UPDATE ON credentials
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER credentials_delete_changes AFTER DELETE ON credentials
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER keys_insert_changes AFTER INSERT ON keys
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER keys_update_changes AFTER UPDATE ON keys
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER keys_delete_changes AFTER DELETE ON keys
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER key_versions_insert_changes AFTER INSERT ON key_versions
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER key_versions_update_changes AFTER UPDATE ON key_versions
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER key_versions_delete_changes AFTER DELETE ON key_versions
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER aliases_insert_changes AFTER INSERT ON aliases
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER aliases_update_changes AFTER UPDATE ON aliases
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER aliases_delete_changes AFTER DELETE ON aliases
    BEGIN UPDATE changes SET counter = counter + 1; END;
";

/// Migration 5: cloud products and product credentials.
///
/// * `products`: the registry (`keywarden admin product ...`); the seed
///   products are registered by the core when a data dir is opened, not
///   here, so every backend gets them the same way.
/// * `credentials` is rebuilt (SQLite cannot relax `NOT NULL`): a row is
///   owned by exactly one of `account_id` and `product_code`, each a
///   foreign key. Rows copied from before are account credentials. The
///   table's index and change triggers are recreated; `products` gets
///   triggers too, so disabling a product reaches every server's cache.
const MIGRATION_5: &str = "
CREATE TABLE products (
    code       TEXT    NOT NULL PRIMARY KEY,
    class      TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE credentials_v5 (
    access_key_id TEXT    NOT NULL PRIMARY KEY,
    account_id    TEXT    REFERENCES accounts (account_id),
    product_code  TEXT    REFERENCES products (code),
    sealed_secret BLOB    NOT NULL,
    status        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    CHECK ((account_id IS NULL) <> (product_code IS NULL))
) STRICT;

INSERT INTO credentials_v5 (access_key_id, account_id, product_code, sealed_secret, status, created_at)
    SELECT access_key_id, account_id, NULL, sealed_secret, status, created_at FROM credentials;

DROP TABLE credentials;
ALTER TABLE credentials_v5 RENAME TO credentials;

CREATE INDEX credentials_by_account ON credentials (account_id, access_key_id);

CREATE TRIGGER credentials_insert_changes AFTER INSERT ON credentials
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER credentials_update_changes AFTER UPDATE ON credentials
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER credentials_delete_changes AFTER DELETE ON credentials
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER products_insert_changes AFTER INSERT ON products
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER products_update_changes AFTER UPDATE ON products
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER products_delete_changes AFTER DELETE ON products
    BEGIN UPDATE changes SET counter = counter + 1; END;
";

/// Schema 6: grants (`CreateGrant`). One row per grant; the columns are
/// what `list_grants` filters on (key, grantee, retiring principal), the
/// operations and constraints are `meta` JSON. A grant goes with its key
/// (foreign key, and `destroy_key` deletes explicitly). Grant changes move
/// the change stamp: a revocation must reach every server's cache.
const MIGRATION_6: &str = "
CREATE TABLE grants (
    grant_id   TEXT    NOT NULL PRIMARY KEY,
    account_id TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    grantee    TEXT    NOT NULL,
    retiring   TEXT,
    name       TEXT,
    created_at INTEGER NOT NULL,
    meta       TEXT    NOT NULL,
    FOREIGN KEY (account_id, key_id) REFERENCES keys (account_id, key_id) ON DELETE CASCADE
) STRICT;

CREATE INDEX grants_by_key ON grants (account_id, key_id, grant_id);
CREATE INDEX grants_by_grantee ON grants (account_id, key_id, grantee);
CREATE INDEX grants_by_retiring ON grants (account_id, retiring, grant_id);

CREATE TRIGGER grants_insert_changes AFTER INSERT ON grants
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER grants_update_changes AFTER UPDATE ON grants
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER grants_delete_changes AFTER DELETE ON grants
    BEGIN UPDATE changes SET counter = counter + 1; END;
";

/// Schema 7: billing.
///
/// * `key_lifetimes`: when each key existed, kept after the key is gone.
///   Maintained by triggers on `keys`, so every way a key is inserted or
///   destroyed records it: creation from the row's `meta` (origin
///   `AwsCloudHsm` is hardware, key manager `Aws` a default key), the end at
///   the key's deletion date (the moment the deletion came due; now, for a
///   key destroyed without one). Existing keys are back-filled.
/// * `request_counts` and `metering_batches`: counts per account, month,
///   key and operation, added once per batch id (idempotent flushes); old
///   batch ids are pruned after a day. No change triggers: metering is not
///   state caches hold.
/// * `ledger`: append-only (triggers refuse UPDATE and DELETE); amounts
///   are positive minor units.
/// * `account_standing`: the frozen flag, with change triggers so every
///   server's cache learns of a freeze or unfreeze.
const MIGRATION_7: &str = "
CREATE TABLE key_lifetimes (
    key_id      TEXT    NOT NULL PRIMARY KEY,
    account_id  TEXT    NOT NULL,
    hardware    INTEGER NOT NULL,
    default_key INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER
) STRICT;
CREATE INDEX key_lifetimes_by_account ON key_lifetimes (account_id, created_at);

INSERT INTO key_lifetimes (key_id, account_id, hardware, default_key, created_at, deleted_at)
    SELECT key_id, account_id,
           COALESCE(json_extract(meta, '$.origin') = 'AwsCloudHsm', 0),
           COALESCE(json_extract(meta, '$.key_manager') = 'Aws', 0),
           COALESCE(json_extract(meta, '$.created_at'), 0),
           NULL
    FROM keys;

CREATE TRIGGER keys_insert_lifetime AFTER INSERT ON keys
    BEGIN
        INSERT OR IGNORE INTO key_lifetimes
            (key_id, account_id, hardware, default_key, created_at, deleted_at)
        VALUES (NEW.key_id, NEW.account_id,
                COALESCE(json_extract(NEW.meta, '$.origin') = 'AwsCloudHsm', 0),
                COALESCE(json_extract(NEW.meta, '$.key_manager') = 'Aws', 0),
                COALESCE(json_extract(NEW.meta, '$.created_at'), 0),
                NULL);
    END;
CREATE TRIGGER keys_delete_lifetime AFTER DELETE ON keys
    BEGIN
        UPDATE key_lifetimes
            SET deleted_at = COALESCE(OLD.deletion_date, CAST(unixepoch('subsec') * 1000 AS INTEGER))
            WHERE key_id = OLD.key_id;
    END;

CREATE TABLE request_counts (
    account_id TEXT    NOT NULL,
    month      INTEGER NOT NULL,
    key_id     TEXT    NOT NULL,
    operation  TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (account_id, month, key_id, operation)
) STRICT;

CREATE TABLE metering_batches (
    batch_id    TEXT    NOT NULL PRIMARY KEY,
    recorded_at INTEGER NOT NULL
) STRICT;
CREATE INDEX metering_batches_by_time ON metering_batches (recorded_at);

CREATE TABLE ledger (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    account_id TEXT    NOT NULL REFERENCES accounts (account_id),
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('TopUp', 'Charge')),
    amount     INTEGER NOT NULL CHECK (amount > 0),
    month      INTEGER,
    memo       TEXT    NOT NULL
) STRICT;
CREATE INDEX ledger_by_account ON ledger (account_id, seq);
CREATE INDEX ledger_charges ON ledger (account_id, month) WHERE kind = 'Charge';
CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;

CREATE TABLE account_standing (
    account_id TEXT    NOT NULL PRIMARY KEY REFERENCES accounts (account_id),
    frozen     INTEGER NOT NULL
) STRICT;
CREATE TRIGGER account_standing_insert_changes AFTER INSERT ON account_standing
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER account_standing_update_changes AFTER UPDATE ON account_standing
    BEGIN UPDATE changes SET counter = counter + 1; END;
";

/// Schema 8: the deployment's root key check (`DeploymentStore`): one row,
/// written once by the first process that opens the database with a root
/// key. No change triggers: it never changes.
const MIGRATION_8: &str = "
CREATE TABLE deployment (
    id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    root_key_check BLOB    NOT NULL
) STRICT;
";

/// Schema 9: database keyrings (`KeyringStore`).
///
/// * `keyrings`: one row per keyring, its name unique per account. The
///   token is stored only as its SHA-256 (`token_hash`, NULL while none is
///   issued). Compare-and-set on `revision`.
/// * `keyring_key_versions`: one row per version of a key of a keyring,
///   the data key's ciphertext blob. Key numbers and versions are `u32` in
///   the domain, stored as INTEGER. Deleting a keyring cascades to its
///   versions; `delete_keyring` also deletes them explicitly.
/// * No change triggers: nothing caches keyrings, so keyring writes do not
///   move the change stamp.
const MIGRATION_9: &str = "
CREATE TABLE keyrings (
    id              TEXT    NOT NULL PRIMARY KEY,
    account_id      TEXT    NOT NULL REFERENCES accounts (account_id),
    name            TEXT    NOT NULL,
    product         TEXT    NOT NULL,
    key_id          TEXT    NOT NULL,
    token_hash      BLOB,
    token_issued_at INTEGER,
    created_at      INTEGER NOT NULL,
    revision        INTEGER NOT NULL,
    UNIQUE (account_id, name)
) STRICT;
CREATE INDEX keyrings_by_account ON keyrings (account_id, id);

CREATE TABLE keyring_key_versions (
    keyring_id TEXT    NOT NULL REFERENCES keyrings (id) ON DELETE CASCADE,
    key_number INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    ciphertext BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (keyring_id, key_number, version)
) STRICT;
";

/// Schema 10: top-up references. `ledger.reference` is the operator's
/// reference of a top-up (NULL for charges and unreferenced top-ups),
/// unique per account, so a retried top-up with the same reference is
/// credited once (`append_top_up` inserts with `ON CONFLICT DO NOTHING`).
const MIGRATION_10: &str = "
ALTER TABLE ledger ADD COLUMN reference TEXT;
CREATE UNIQUE INDEX ledger_top_up_reference ON ledger (account_id, reference)
    WHERE reference IS NOT NULL;
";

/// Schema 11: IAM (`IamStore`) and access keys of IAM users.
///
/// * `iam_entities`: one row per user, role, managed policy, inline policy
///   or attachment, addressed by account, kind and stored name
///   (`keywarden_core::iam::IamEntity::name`), the record itself as JSON in
///   `body`, so new IAM fields need no migration. Children are named
///   `<owner>/<child>`: the primary key's order serves listing one owner's
///   children as a range scan (`name >= prefix AND name < bound`, no
///   `LIKE`). Change triggers: identities and policies are cached.
/// * `credentials.user_name`: with `account_id`, the IAM user a key
///   belongs to (NULL for the account's own keys and products' keys). The
///   owner CHECK of schema 5 (exactly one of account and product) stays;
///   the column's CHECK allows a user name only beside an account.
///   Credential status changes already move the counter (schema 5's
///   `credentials_update_changes`), so deactivating a user's key reaches
///   every process's cache.
const MIGRATION_11: &str = "
CREATE TABLE iam_entities (
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, name)
) STRICT;

CREATE TRIGGER iam_entities_insert_changes AFTER INSERT ON iam_entities
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER iam_entities_update_changes AFTER UPDATE ON iam_entities
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER iam_entities_delete_changes AFTER DELETE ON iam_entities
    BEGIN UPDATE changes SET counter = counter + 1; END;

ALTER TABLE credentials ADD COLUMN user_name TEXT
    CHECK (user_name IS NULL OR account_id IS NOT NULL);
";

/// Schema 12: custom key stores accounts create (`CustomKeyStoreStore`).
///
/// * `custom_key_stores`: one row per store, every field a column; the
///   user PIN only sealed under the root key. A name is unique within its
///   account, a cluster backs at most one store. Change triggers: every
///   process follows a store's connection state.
/// * `key_versions_protector`: a store is deleted only while no key
///   version names its protector (`hsm:<id>`), asked from this index.
const MIGRATION_12: &str = "
CREATE TABLE custom_key_stores (
    id           TEXT    NOT NULL PRIMARY KEY,
    account_id   TEXT    NOT NULL REFERENCES accounts (account_id),
    name         TEXT    NOT NULL,
    cluster_id   TEXT    NOT NULL UNIQUE,
    sealed_pin   BLOB    NOT NULL,
    trust_anchor TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    error_code   TEXT,
    created_at   INTEGER NOT NULL,
    revision     INTEGER NOT NULL,
    UNIQUE (account_id, name)
) STRICT;

CREATE TRIGGER custom_key_stores_insert_changes AFTER INSERT ON custom_key_stores
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER custom_key_stores_update_changes AFTER UPDATE ON custom_key_stores
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER custom_key_stores_delete_changes AFTER DELETE ON custom_key_stores
    BEGIN UPDATE changes SET counter = counter + 1; END;

CREATE INDEX key_versions_protector ON key_versions (protector);
";

/// Schema 13: aliases are per region (multi-Region keys, docs/multi-region.md).
///
/// * `aliases.region`: the alias's region, `''` for the deployment's home
///   region (every alias made before regions existed, so nothing is
///   migrated beyond the default). The primary key becomes
///   `(account_id, region, name)`: a name may exist once per region.
///   SQLite cannot change a primary key in place, so the table is rebuilt
///   (nothing refers to it) and its change triggers recreated.
const MIGRATION_13: &str = "
CREATE TABLE aliases_v13 (
    account_id TEXT    NOT NULL,
    region     TEXT    NOT NULL DEFAULT '',
    name       TEXT    NOT NULL,
    key_id     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    revision   INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, name),
    FOREIGN KEY (account_id, key_id) REFERENCES keys (account_id, key_id) ON DELETE CASCADE
) STRICT;
INSERT INTO aliases_v13 (account_id, region, name, key_id, created_at, updated_at, revision)
    SELECT account_id, '', name, key_id, created_at, updated_at, revision FROM aliases;
DROP TABLE aliases;
ALTER TABLE aliases_v13 RENAME TO aliases;
CREATE INDEX aliases_by_target ON aliases (account_id, key_id, name);
CREATE TRIGGER aliases_insert_changes AFTER INSERT ON aliases
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER aliases_update_changes AFTER UPDATE ON aliases
    BEGIN UPDATE changes SET counter = counter + 1; END;
CREATE TRIGGER aliases_delete_changes AFTER DELETE ON aliases
    BEGIN UPDATE changes SET counter = counter + 1; END;
";

/// Every migration, in order.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
    MIGRATION_8,
    MIGRATION_9,
    MIGRATION_10,
    MIGRATION_11,
    MIGRATION_12,
    MIGRATION_13,
];

/// The schema version this build creates and understands.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`] in one immediate (write-locked)
/// transaction, so two processes opening a new file at once migrate it once:
/// the second waits for the first and then finds nothing left to do.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), Fail> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(Invalid::new(format!(
            "database schema version {current} is newer than this build supports ({SCHEMA_VERSION})"
        ))
        .into());
    }
    if current < 0 {
        return Err(Invalid::new("database schema version is negative").into());
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.execute_batch(sql)?;
        // PRAGMA takes no bound parameters; the value is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", done + 1))?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracking_start(conn: &Connection) -> i64 {
        conn.query_row("SELECT started_at FROM usage_tracking", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_new_database_tracks_usage_from_the_start() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(migrate(&mut conn).is_ok());
        assert_eq!(tracking_start(&conn), 0);
    }

    #[test]
    fn an_upgraded_database_with_keys_tracks_usage_from_the_upgrade() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (done, sql) in MIGRATIONS[..3].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute_batch(&format!("PRAGMA user_version = {}", done + 1))
                .unwrap();
        }
        conn.execute(
            "INSERT INTO keys (key_id, account_id, revision, state, meta) VALUES ('k', 'a', 1, 'Enabled', '{}')",
            [],
        )
        .unwrap();
        let before = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(migrate(&mut conn).is_ok());
        let started = tracking_start(&conn);
        assert!(
            (before - 1_000..before + 60_000).contains(&started),
            "{started} vs {before}"
        );
    }

    #[test]
    fn the_change_counter_moves_on_state_changes_only() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(migrate(&mut conn).is_ok());
        let counter = |c: &Connection| -> i64 {
            c.query_row("SELECT counter FROM changes", [], |r| r.get(0))
                .unwrap()
        };
        let start = counter(&conn);
        conn.execute(
            "INSERT INTO accounts (account_id, name, created_at) VALUES ('a', 'n', 0)",
            [],
        )
        .unwrap();
        let after_account = counter(&conn);
        assert!(after_account > start);
        conn.execute(
            "INSERT INTO key_usage VALUES ('k', 'a', 1, 'Encrypt', 'p', 'r')",
            [],
        )
        .unwrap();
        assert_eq!(counter(&conn), after_account);
        // Keyrings are not cached: no change triggers.
        conn.execute_batch(
            "INSERT INTO keyrings (id, account_id, name, product, key_id, created_at, revision)
                 VALUES ('kr', 'a', 'n', 'mysql', 'k', 0, 1);
             INSERT INTO keyring_key_versions VALUES ('kr', 1, 1, x'00', 0);
             UPDATE keyrings SET revision = 2;
             DELETE FROM keyrings;",
        )
        .unwrap();
        assert_eq!(counter(&conn), after_account);
    }

    #[test]
    fn credentials_written_before_products_existed_survive_the_rebuild() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (done, sql) in MIGRATIONS[..4].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute_batch(&format!("PRAGMA user_version = {}", done + 1))
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO accounts VALUES ('111122223333', 'n', 0);
             INSERT INTO credentials VALUES ('AKIAOLD', '111122223333', x'01', 'Active', 5);",
        )
        .unwrap();
        assert!(migrate(&mut conn).is_ok());
        let row: (String, Option<String>, Option<String>, i64) = conn
            .query_row(
                "SELECT access_key_id, account_id, product_code, created_at FROM credentials",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            ("AKIAOLD".into(), Some("111122223333".into()), None, 5)
        );
        // Exactly one owner per row.
        assert!(conn
            .execute(
                "INSERT INTO credentials VALUES ('AKIANONE', NULL, NULL, x'01', 'Active', 5)",
                [],
            )
            .is_err());
        // The change triggers were recreated with the table.
        let counter = |c: &Connection| -> i64 {
            c.query_row("SELECT counter FROM changes", [], |r| r.get(0))
                .unwrap()
        };
        let before = counter(&conn);
        conn.execute("UPDATE credentials SET status = 'Revoked'", [])
            .unwrap();
        assert!(counter(&conn) > before);
    }

    #[test]
    fn credentials_of_schema_10_survive_and_gain_user_names() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (done, sql) in MIGRATIONS[..10].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute_batch(&format!("PRAGMA user_version = {}", done + 1))
                .unwrap();
        }
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             INSERT INTO accounts VALUES ('111122223333', 'n', 0);
             INSERT INTO products VALUES ('evs', 'Storage', 'Active', 0);
             INSERT INTO credentials VALUES ('AKIAOLD', '111122223333', NULL, x'01', 'Active', 5);
             INSERT INTO credentials VALUES ('AKIAPRD', NULL, 'evs', x'02', 'Active', 6);",
        )
        .unwrap();
        assert!(migrate(&mut conn).is_ok());
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        type Owner = (String, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Owner> = conn
            .prepare(
                "SELECT access_key_id, account_id, product_code, user_name
                 FROM credentials ORDER BY access_key_id",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                ("AKIAOLD".into(), Some("111122223333".into()), None, None),
                ("AKIAPRD".into(), None, Some("evs".into()), None),
            ]
        );
        // A user's key: with its account, never with a product alone, and
        // still exactly one of account and product.
        conn.execute(
            "INSERT INTO credentials VALUES ('AKIAUSR', '111122223333', NULL, x'03', 'Active', 7, 'bob')",
            [],
        )
        .unwrap();
        assert!(conn
            .execute(
                "INSERT INTO credentials VALUES ('AKIABAD', NULL, 'evs', x'03', 'Active', 7, 'bob')",
                [],
            )
            .is_err());
        assert!(conn
            .execute(
                "INSERT INTO credentials VALUES ('AKIABD2', NULL, NULL, x'03', 'Active', 7, 'bob')",
                [],
            )
            .is_err());
    }

    #[test]
    fn aliases_of_schema_12_move_to_the_home_region() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (done, sql) in MIGRATIONS[..12].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.execute_batch(&format!("PRAGMA user_version = {}", done + 1))
                .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO keys (key_id, account_id, revision, state, meta)
                 VALUES ('k', 'a', 1, 'Enabled', '{}');
             INSERT INTO aliases VALUES ('a', 'alias/x', 'k', 1, 2, 3);",
        )
        .unwrap();
        assert!(migrate(&mut conn).is_ok());
        let row: (String, String, String, i64) = conn
            .query_row(
                "SELECT region, name, key_id, revision FROM aliases",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(row, (String::new(), "alias/x".into(), "k".into(), 3));
        // The same name in another region is another alias.
        conn.execute(
            "INSERT INTO aliases VALUES ('a', 'eu-west-1', 'alias/x', 'k', 1, 2, 1)",
            [],
        )
        .unwrap();
        assert!(conn
            .execute(
                "INSERT INTO aliases VALUES ('a', '', 'alias/x', 'k', 1, 2, 1)",
                []
            )
            .is_err());
        let counter = |c: &Connection| -> i64 {
            c.query_row("SELECT counter FROM changes", [], |r| r.get(0))
                .unwrap()
        };
        let before = counter(&conn);
        conn.execute("DELETE FROM aliases", []).unwrap();
        assert!(counter(&conn) > before);
    }

    #[test]
    fn iam_writes_move_the_change_counter() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(migrate(&mut conn).is_ok());
        let counter = |c: &Connection| -> i64 {
            c.query_row("SELECT counter FROM changes", [], |r| r.get(0))
                .unwrap()
        };
        conn.execute(
            "INSERT INTO accounts (account_id, name, created_at) VALUES ('a', 'n', 0)",
            [],
        )
        .unwrap();
        for sql in [
            "INSERT INTO iam_entities VALUES ('a', 'user', 'bob', '{}')",
            "UPDATE iam_entities SET body = '{ }'",
            "DELETE FROM iam_entities",
        ] {
            let before = counter(&conn);
            conn.execute(sql, []).unwrap();
            assert!(counter(&conn) > before, "{sql}");
        }
    }
}
