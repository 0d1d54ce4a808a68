//! Versioned migrations, tracked in the table `keywarden_schema`.
//!
//! Migration `n` (1-based) is `MIGRATIONS[n - 1]`. Migrations only ever get
//! appended; a released migration is never edited. Several nodes starting
//! together on a new database migrate it once: each takes the advisory lock
//! [`MIGRATION_LOCK`] in a dedicated session first, so the others wait and
//! then find nothing left to do. Each migration is its own transaction,
//! together with its row in `keywarden_schema`.

use tokio_postgres::Client;

use crate::error::{Fail, Invalid};

/// The advisory lock key migrations run under (`"keywarde"` in ASCII):
/// constant, so every node of every build agrees on it.
pub(crate) const MIGRATION_LOCK: i64 = 0x6b65_7977_6172_6465;

/// Migration 1: the SQLite schema's end state (its migrations 1 to 7),
/// translated.
///
/// * Times are `BIGINT` milliseconds, ids `TEXT COLLATE "C"` (byte order,
///   as in SQLite, whatever the database's collation: `ORDER BY` and the
///   pagination cursors agree with the domain's order), material and sealed
///   secrets `BYTEA`, `meta` the JSON text of `keywarden_core::store_codec`,
///   byte for byte what SQLite stores.
/// * `aliases` and `grants` refer to `keys` through `(account_id, key_id)`,
///   so the database refuses a target in another account.
/// * The due queries (`deletion_due_by`, `rotation_due_by`,
///   `material_expiry_due_by`) are served by partial indexes; the queries
///   spell the state as a literal so the planner can use them.
/// * `key_lifetimes` is maintained by triggers on `keys`, exactly as in
///   SQLite: origin `AwsCloudHsm` is hardware, key manager `Aws` a default
///   key, the end is the key's deletion date (now, without one).
/// * `ledger` is append-only: triggers refuse `UPDATE`, `DELETE` and
///   `TRUNCATE`. `seq` is an identity column (explicit values allowed, for
///   `import_dump`).
/// * `changes` is the change counter. Deferred constraint triggers on every
///   table caches hold (accounts, credentials, products, keys,
///   key_versions, aliases, grants, account_standing; not key_usage,
///   request_counts, metering_batches, ledger) bump it once per transaction
///   at commit and `pg_notify('keywarden_changes', <new counter>)`. Deferred,
///   so the counter's row lock is taken last and held only for the commit:
///   no transaction waits for another lock while holding it.
const MIGRATION_1: &str = r#"
CREATE TABLE accounts (
    account_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE products (
    code       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    class      TEXT   NOT NULL,
    status     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE credentials (
    access_key_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id    TEXT COLLATE "C" REFERENCES accounts (account_id),
    product_code  TEXT COLLATE "C" REFERENCES products (code),
    sealed_secret BYTEA  NOT NULL,
    status        TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    CHECK ((account_id IS NULL) <> (product_code IS NULL))
);
CREATE INDEX credentials_by_account ON credentials (account_id, access_key_id);

CREATE TABLE keys (
    key_id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id        TEXT COLLATE "C" NOT NULL,
    revision          BIGINT NOT NULL,
    state             TEXT   NOT NULL,
    deletion_date     BIGINT,
    meta              TEXT   NOT NULL,
    rotation_date     BIGINT,
    material_valid_to BIGINT,
    CONSTRAINT keys_by_account UNIQUE (account_id, key_id)
);
CREATE INDEX keys_by_deletion ON keys (deletion_date, key_id)
    WHERE state = 'PendingDeletion';
CREATE INDEX keys_by_rotation ON keys (rotation_date, key_id)
    WHERE state = 'Enabled' AND rotation_date IS NOT NULL;
CREATE INDEX keys_by_material_valid_to ON keys (material_valid_to, key_id)
    WHERE material_valid_to IS NOT NULL;

CREATE TABLE key_versions (
    key_id        TEXT COLLATE "C" NOT NULL REFERENCES keys (key_id) ON DELETE CASCADE,
    version       BIGINT NOT NULL,
    protector     TEXT   NOT NULL,
    material      BYTEA  NOT NULL,
    created_at    BIGINT NOT NULL,
    rotation_type TEXT,
    PRIMARY KEY (key_id, version)
);

CREATE TABLE aliases (
    account_id TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    key_id     TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision   BIGINT NOT NULL,
    PRIMARY KEY (account_id, name),
    FOREIGN KEY (account_id, key_id) REFERENCES keys (account_id, key_id) ON DELETE CASCADE
);
CREATE INDEX aliases_by_target ON aliases (account_id, key_id, name);

CREATE TABLE key_usage (
    key_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    used_at    BIGINT NOT NULL,
    operation  TEXT   NOT NULL,
    principal  TEXT   NOT NULL,
    request_id TEXT   NOT NULL
);

CREATE TABLE usage_tracking (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    started_at BIGINT  NOT NULL
);
-- A new database knows every key's usage from the key's creation.
INSERT INTO usage_tracking (id, started_at) VALUES (1, 0);

CREATE TABLE grants (
    grant_id   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL,
    key_id     TEXT COLLATE "C" NOT NULL,
    grantee    TEXT COLLATE "C" NOT NULL,
    retiring   TEXT COLLATE "C",
    name       TEXT,
    created_at BIGINT NOT NULL,
    meta       TEXT   NOT NULL,
    FOREIGN KEY (account_id, key_id) REFERENCES keys (account_id, key_id) ON DELETE CASCADE
);
CREATE INDEX grants_by_key ON grants (account_id, key_id, grant_id);
CREATE INDEX grants_by_grantee ON grants (account_id, key_id, grantee);
CREATE INDEX grants_by_retiring ON grants (account_id, retiring, grant_id);

CREATE TABLE key_lifetimes (
    key_id      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id  TEXT COLLATE "C" NOT NULL,
    hardware    BOOLEAN NOT NULL,
    default_key BOOLEAN NOT NULL,
    created_at  BIGINT  NOT NULL,
    deleted_at  BIGINT
);
CREATE INDEX key_lifetimes_by_account ON key_lifetimes (account_id, created_at);

CREATE FUNCTION keywarden_keys_insert_lifetime() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_lifetimes (key_id, account_id, hardware, default_key, created_at, deleted_at)
    VALUES (NEW.key_id, NEW.account_id,
            COALESCE((NEW.meta::jsonb ->> 'origin') = 'AwsCloudHsm', false),
            COALESCE((NEW.meta::jsonb ->> 'key_manager') = 'Aws', false),
            COALESCE((NEW.meta::jsonb ->> 'created_at')::bigint, 0),
            NULL)
    ON CONFLICT (key_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER keys_insert_lifetime AFTER INSERT ON keys
    FOR EACH ROW EXECUTE FUNCTION keywarden_keys_insert_lifetime();

CREATE FUNCTION keywarden_keys_delete_lifetime() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE key_lifetimes
        SET deleted_at = COALESCE(OLD.deletion_date,
                                  (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
        WHERE key_id = OLD.key_id;
    RETURN NULL;
END $$;
CREATE TRIGGER keys_delete_lifetime AFTER DELETE ON keys
    FOR EACH ROW EXECUTE FUNCTION keywarden_keys_delete_lifetime();

CREATE TABLE request_counts (
    account_id TEXT COLLATE "C" NOT NULL,
    month      BIGINT NOT NULL,
    key_id     TEXT COLLATE "C" NOT NULL,
    operation  TEXT COLLATE "C" NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (account_id, month, key_id, operation)
);

CREATE TABLE metering_batches (
    batch_id    TEXT   NOT NULL PRIMARY KEY,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX metering_batches_by_time ON metering_batches (recorded_at);

CREATE TABLE ledger (
    seq        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (account_id),
    at         BIGINT NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('TopUp', 'Charge')),
    amount     BIGINT NOT NULL CHECK (amount > 0),
    month      BIGINT,
    memo       TEXT   NOT NULL
);
CREATE INDEX ledger_by_account ON ledger (account_id, seq);
CREATE INDEX ledger_charges ON ledger (account_id, month) WHERE kind = 'Charge';

CREATE FUNCTION keywarden_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION keywarden_ledger_append_only();
CREATE TRIGGER ledger_append_only_truncate BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION keywarden_ledger_append_only();

CREATE TABLE account_standing (
    account_id TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES accounts (account_id),
    frozen     BOOLEAN NOT NULL
);

CREATE TABLE changes (
    id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    counter BIGINT  NOT NULL
);
INSERT INTO changes (id, counter) VALUES (1, 0);

CREATE FUNCTION keywarden_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    now_counter BIGINT;
BEGIN
    -- Once per transaction: the flag is transaction-local.
    IF current_setting('keywarden.changed', true) IS DISTINCT FROM 'on' THEN
        UPDATE changes SET counter = counter + 1 WHERE id = 1 RETURNING counter INTO now_counter;
        PERFORM pg_notify('keywarden_changes', now_counter::text);
        PERFORM set_config('keywarden.changed', 'on', true);
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER accounts_changes AFTER INSERT OR UPDATE OR DELETE ON accounts
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE CONSTRAINT TRIGGER credentials_changes AFTER INSERT OR UPDATE OR DELETE ON credentials
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE CONSTRAINT TRIGGER products_changes AFTER INSERT OR UPDATE OR DELETE ON products
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE CONSTRAINT TRIGGER keys_changes AFTER INSERT OR UPDATE OR DELETE ON keys
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE CONSTRAINT TRIGGER key_versions_changes AFTER INSERT OR UPDATE OR DELETE ON key_versions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE CONSTRAINT TRIGGER aliases_changes AFTER INSERT OR UPDATE OR DELETE ON aliases
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE CONSTRAINT TRIGGER grants_changes AFTER INSERT OR UPDATE OR DELETE ON grants
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE CONSTRAINT TRIGGER account_standing_changes
    AFTER INSERT OR UPDATE OR DELETE ON account_standing
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
"#;

/// Migration 2: the deployment's root key check (`DeploymentStore`), one
/// row written once by the first node (or CLI) that opens the database
/// with a root key. No change trigger: it never changes.
const MIGRATION_2: &str = r#"
CREATE TABLE deployment (
    id             SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
    root_key_check BYTEA    NOT NULL
);
"#;

/// Migration 3: database keyrings (`KeyringStore`), as SQLite's schema 9.
///
/// * `keyrings`: one row per keyring, its name unique per account; the
///   token only as its SHA-256 (`token_hash`, NULL while none is issued).
/// * `keyring_key_versions`: one row per version of a key of a keyring.
///   Key numbers and versions are `u32` in the domain, `BIGINT` here.
///   `add_keyring_key_version` locks the keyring row (`FOR UPDATE`), so
///   racing rotations on several nodes have one winner per version.
/// * No change triggers (`keywarden_changed`): nothing caches keyrings, so
///   keyring writes do not move the change counter.
const MIGRATION_3: &str = r#"
CREATE TABLE keyrings (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id      TEXT COLLATE "C" NOT NULL REFERENCES accounts (account_id),
    name            TEXT COLLATE "C" NOT NULL,
    product         TEXT COLLATE "C" NOT NULL,
    key_id          TEXT COLLATE "C" NOT NULL,
    token_hash      BYTEA,
    token_issued_at BIGINT,
    created_at      BIGINT NOT NULL,
    revision        BIGINT NOT NULL,
    CONSTRAINT keyrings_name_per_account UNIQUE (account_id, name)
);
CREATE INDEX keyrings_by_account ON keyrings (account_id, id);

CREATE TABLE keyring_key_versions (
    keyring_id TEXT COLLATE "C" NOT NULL REFERENCES keyrings (id) ON DELETE CASCADE,
    key_number BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    ciphertext BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (keyring_id, key_number, version)
);
"#;

/// Migration 4: top-up references, as SQLite's schema 10. `ledger.reference`
/// is the operator's reference of a top-up (NULL for charges and
/// unreferenced top-ups), unique per account: `append_top_up` inserts with
/// `ON CONFLICT DO NOTHING`, so racing retries on several nodes append one
/// entry.
const MIGRATION_4: &str = r#"
ALTER TABLE ledger ADD COLUMN reference TEXT COLLATE "C";
CREATE UNIQUE INDEX ledger_top_up_reference ON ledger (account_id, reference)
    WHERE reference IS NOT NULL;
"#;

/// Migration 5: IAM (`IamStore`) and access keys of IAM users, as
/// SQLite's schema 11.
///
/// * `iam_entities`: one row per user, role, managed policy, inline policy
///   or attachment, addressed by account, kind and stored name, the record
///   as JSON in `body`. Names are `COLLATE "C"`, so the primary key's order
///   is byte order and one owner's children (`<owner>/...`) are a range
///   scan (`name >= prefix AND name < bound`, no `LIKE`). A change trigger
///   (`keywarden_changed`): identities and policies are cached.
/// * `credentials.user_name`: with `account_id`, the IAM user a key belongs
///   to. The owner CHECK of migration 1 stays (exactly one of account and
///   product); a new one allows a user name only beside an account.
///   Status changes already move the counter (`credentials_changes`).
const MIGRATION_5: &str = r#"
CREATE TABLE iam_entities (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (account_id),
    kind       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (account_id, kind, name)
);
CREATE CONSTRAINT TRIGGER iam_entities_changes AFTER INSERT OR UPDATE OR DELETE ON iam_entities
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();

ALTER TABLE credentials ADD COLUMN user_name TEXT COLLATE "C";
ALTER TABLE credentials ADD CONSTRAINT credentials_user_has_account
    CHECK (user_name IS NULL OR account_id IS NOT NULL);
"#;

/// Migration 6: custom key stores accounts create (`CustomKeyStoreStore`),
/// as SQLite's schema 12: one `custom_key_stores` row per store (the user
/// PIN only sealed under the root key), names unique per account, a
/// cluster backing at most one store, a change trigger (every node follows
/// a store's connection state), and an index on `key_versions.protector`
/// for the "no keys left in the store" check of a deletion.
const MIGRATION_6: &str = r#"
CREATE TABLE custom_key_stores (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    account_id   TEXT COLLATE "C" NOT NULL REFERENCES accounts (account_id),
    name         TEXT NOT NULL,
    cluster_id   TEXT COLLATE "C" NOT NULL UNIQUE,
    sealed_pin   BYTEA NOT NULL,
    trust_anchor TEXT NOT NULL,
    state        TEXT NOT NULL,
    error_code   TEXT,
    created_at   BIGINT NOT NULL,
    revision     BIGINT NOT NULL,
    UNIQUE (account_id, name)
);
CREATE CONSTRAINT TRIGGER custom_key_stores_changes
    AFTER INSERT OR UPDATE OR DELETE ON custom_key_stores
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keywarden_changed();
CREATE INDEX key_versions_protector ON key_versions (protector);
"#;

/// Migration 7, as SQLite's schema 13: aliases are per region. `region`
/// is `''` for the deployment's home region (every alias made before), and
/// the primary key becomes `(account_id, region, name)`.
const MIGRATION_7: &str = r#"
ALTER TABLE aliases ADD COLUMN region TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE aliases DROP CONSTRAINT aliases_pkey;
ALTER TABLE aliases ADD PRIMARY KEY (account_id, region, name);
"#;

/// Every migration, in order.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    MIGRATION_7,
];

/// The schema version this build creates and understands.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database to [`SCHEMA_VERSION`] under the advisory lock, on a
/// session of its own (`client`, not shared with anything else: session
/// advisory locks belong to the connection). Refuses a database whose
/// schema is newer than this build.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), Fail> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let outcome = migrate_locked(client).await;
    // Closing the session would release it too; unlock explicitly so a
    // pooled or reused session never keeps it.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    outcome?;
    unlocked?;
    Ok(())
}

async fn migrate_locked(client: &mut Client) -> Result<(), Fail> {
    // DDL only when needed: a node whose role may only read and write data
    // starts on a database migrated by a more privileged role.
    let exists: bool = client
        .query_one("SELECT to_regclass('keywarden_schema') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS keywarden_schema (
                     version    BIGINT      NOT NULL PRIMARY KEY,
                     applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                 )",
            )
            .await?;
    }
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM keywarden_schema",
            &[],
        )
        .await?
        .try_get(0)?;
    if current > SCHEMA_VERSION {
        return Err(Invalid::new(format!(
            "database schema version {current} is newer than this build supports \
             ({SCHEMA_VERSION}); upgrade Keywarden"
        ))
        .into());
    }
    for (done, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
        let version = done as i64 + 1;
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO keywarden_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "postgres store: schema migrated");
    }
    Ok(())
}
