//! The schema and its migrations, versioned by the one row of `schema_version` (the
//! bookkeeping is the shared one, `store::migrations`; version 0 is an empty database or
//! schema). Every instance runs [`migrate`] at start, so two may run it at once: it holds a
//! transaction-scoped advisory lock for the whole check-and-step, and the steps run in that
//! same transaction (PostgreSQL's DDL is transactional), so the second instance waits, then
//! finds the work done; a failed step leaves the database at the version before.
//!
//! The tables, columns and meanings are the SQLite store's (`sqlite/schema.rs`), in
//! PostgreSQL's types: times are Unix seconds in `BIGINT`, lists of strings are `TEXT[]`,
//! counters are `BIGINT` (the records' `u32`s, checked on the way out), and `"user"` is
//! quoted (a reserved word here). `signing_keys.seq` orders keys made in the same second,
//! as SQLite's `rowid` does.

use postgres::Transaction;

use super::pool::Conn;
use super::{db, MIGRATION_LOCK};
use crate::store::migrations::{self, Versioned};
use crate::store::StoreError;

/// Version 1: the schema of SQLite's version 2 (resource indicators and server secrets
/// included).
const V1: &str = r#"
CREATE TABLE clients (
    id            TEXT PRIMARY KEY,
    secret_hash   TEXT,
    auth_method   TEXT NOT NULL
                  CHECK (auth_method IN ('none', 'client_secret_basic', 'client_secret_post')),
    name          TEXT,
    redirect_uris TEXT[] NOT NULL,
    grant_types   TEXT[] NOT NULL,
    registered_by TEXT NOT NULL CHECK (registered_by IN ('admin', 'api_key', 'anonymous')),
    created_at    BIGINT NOT NULL
);

CREATE TABLE api_keys (
    hash        TEXT PRIMARY KEY,
    permissions TEXT[] NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    "user"     TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    resource   TEXT[] NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX grants_client_id ON grants (client_id);

CREATE TABLE codes (
    hash            TEXT PRIMARY KEY,
    "user"          TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT,
    scope           TEXT NOT NULL,
    resource        TEXT[] NOT NULL DEFAULT '{}',
    expires_at      BIGINT NOT NULL,
    failed_attempts BIGINT NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    grant_id        TEXT
);
CREATE INDEX codes_grant_id ON codes (grant_id);
CREATE INDEX codes_client_id ON codes (client_id);
CREATE INDEX codes_expires_at ON codes (expires_at);

CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY,
    grant_id   TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE devices (
    device_hash   TEXT PRIMARY KEY,
    user_code     TEXT NOT NULL UNIQUE,
    client_id     TEXT NOT NULL,
    scope         TEXT NOT NULL,
    resource      TEXT[] NOT NULL DEFAULT '{}',
    expires_at    BIGINT NOT NULL,
    poll_interval BIGINT NOT NULL CHECK (poll_interval >= 0),
    last_poll     BIGINT,
    status        TEXT NOT NULL
                  CHECK (status IN ('pending', 'approved', 'denied', 'finished')),
    -- who approved: set from 'approved' on (and kept once 'finished'), NULL before
    "user"        TEXT,
    CHECK (status <> 'approved' OR "user" IS NOT NULL),
    CHECK (status NOT IN ('pending', 'denied') OR "user" IS NULL)
);
CREATE INDEX devices_client_id ON devices (client_id);
CREATE INDEX devices_expires_at ON devices (expires_at);

CREATE TABLE consents (
    "user"     TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY ("user", client_id)
);
CREATE INDEX consents_client_id ON consents (client_id);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    algorithm     TEXT NOT NULL,
    private_pkcs8 BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT,
    seq           BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY,
    secret BYTEA NOT NULL
);
"#;

/// Every step, oldest first; the schema version is `MIGRATIONS.len()`.
const MIGRATIONS: &[&str] = &[V1];

/// The schema version this build writes.
pub(super) const VERSION: usize = MIGRATIONS.len();

/// The version table: one row, made by the first instance that starts.
const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    one     BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version INTEGER NOT NULL
)";

/// Brings the database to [`VERSION`] (see [`migrations::migrate`]).
pub(super) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    let op = "migrate";
    let mut tx = conn.client().transaction().map_err(db(op))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db(op))?;
    tx.batch_execute(VERSION_TABLE).map_err(db(op))?;
    migrations::migrate(&mut tx, MIGRATIONS)?;
    tx.commit().map_err(db(op))
}

impl Versioned for Transaction<'_> {
    /// 0 when the table is empty.
    fn version(&mut self) -> Result<i64, StoreError> {
        let row = self
            .query_opt("SELECT version FROM schema_version", &[])
            .map_err(db("migrate"))?;
        let Some(row) = row else {
            return Ok(0);
        };
        let version: i32 = row.try_get(0).map_err(db("migrate"))?;
        Ok(i64::from(version))
    }

    fn step(&mut self, step: &str, version: usize) -> Result<(), StoreError> {
        self.batch_execute(step).map_err(db("migrate"))?;
        let version = i32::try_from(version).unwrap_or(i32::MAX);
        self.execute(
            "INSERT INTO schema_version (one, version) VALUES (TRUE, $1) \
             ON CONFLICT (one) DO UPDATE SET version = excluded.version",
            &[&version],
        )
        .map_err(db("migrate"))?;
        Ok(())
    }
}
