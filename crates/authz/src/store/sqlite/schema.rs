//! The schema and its migrations, versioned by `PRAGMA user_version` (the bookkeeping is
//! the shared one, `store::migrations`; version 0 is an empty file). All the steps a file
//! lacks run in one `IMMEDIATE` transaction, so that two processes opening a new file at
//! once do not both run step 1.
//!
//! Conventions of the tables:
//! - `STRICT` tables, so a wrong type is an error rather than a silent conversion;
//! - times are Unix seconds (`INTEGER`), absent times `NULL`;
//! - lists of strings (`redirect_uris`, `grant_types`, `permissions`, `resource`) are JSON
//!   arrays of strings: unlike a newline-joined list it survives any character and needs no
//!   escaping rules of our own;
//! - secrets appear only as hex SHA-256 hashes; the exceptions are the signing keys' PKCS#8
//!   and the server secrets, which is why the file is created mode 0600;
//! - `client_id` is not a foreign key anywhere: unregistered public clients get codes, grants
//!   and device authorizations too. `refresh_tokens.grant_id` is one (a family without its
//!   grant means nothing); `codes.grant_id` is not, because a code is redeemed before its
//!   grant is written.

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::db;
use crate::store::migrations::{self, Versioned};
use crate::store::StoreError;

/// Version 1: the initial schema.
const V1: &str = "
CREATE TABLE clients (
    id            TEXT PRIMARY KEY NOT NULL,
    secret_hash   TEXT,
    auth_method   TEXT NOT NULL,
    name          TEXT,
    redirect_uris TEXT NOT NULL,
    grant_types   TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    hash        TEXT PRIMARY KEY NOT NULL,
    permissions TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE grants (
    id         TEXT PRIMARY KEY NOT NULL,
    user       TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX grants_client_id ON grants (client_id);

CREATE TABLE codes (
    hash            TEXT PRIMARY KEY NOT NULL,
    user            TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT,
    scope           TEXT NOT NULL,
    expires_at      INTEGER NOT NULL,
    failed_attempts INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    grant_id        TEXT
) STRICT;
CREATE INDEX codes_grant_id ON codes (grant_id);
CREATE INDEX codes_client_id ON codes (client_id);
CREATE INDEX codes_expires_at ON codes (expires_at);

CREATE TABLE refresh_tokens (
    hash       TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    spent_at   INTEGER
) STRICT;
CREATE INDEX refresh_tokens_grant_id ON refresh_tokens (grant_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE devices (
    device_hash   TEXT PRIMARY KEY NOT NULL,
    user_code     TEXT NOT NULL UNIQUE,
    client_id     TEXT NOT NULL,
    scope         TEXT NOT NULL,
    expires_at    INTEGER NOT NULL,
    poll_interval INTEGER NOT NULL CHECK (poll_interval >= 0),
    last_poll     INTEGER,
    status        TEXT NOT NULL
                  CHECK (status IN ('pending', 'approved', 'denied', 'finished')),
    -- who approved: set from 'approved' on (and kept once 'finished'), NULL before
    user          TEXT,
    CHECK (status <> 'approved' OR user IS NOT NULL),
    CHECK (status NOT IN ('pending', 'denied') OR user IS NULL)
) STRICT;
CREATE INDEX devices_client_id ON devices (client_id);
CREATE INDEX devices_expires_at ON devices (expires_at);

CREATE TABLE consents (
    user       TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (user, client_id)
) STRICT;
CREATE INDEX consents_client_id ON consents (client_id);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY NOT NULL,
    algorithm     TEXT NOT NULL,
    private_pkcs8 BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    retired_at    INTEGER
) STRICT;
";

/// Version 2: RFC 8707 resource indicators kept with codes, device authorizations and grants
/// (JSON lists; `'[]'`, no restriction, for rows written before), and server secrets (the
/// key of self-contained client ids), one row per name, written once.
const V2: &str = "
ALTER TABLE codes ADD COLUMN resource TEXT NOT NULL DEFAULT '[]';
ALTER TABLE devices ADD COLUMN resource TEXT NOT NULL DEFAULT '[]';
ALTER TABLE grants ADD COLUMN resource TEXT NOT NULL DEFAULT '[]';

CREATE TABLE server_secrets (
    name   TEXT PRIMARY KEY NOT NULL,
    secret BLOB NOT NULL
) STRICT;
";

/// Every step, oldest first; the schema version is `MIGRATIONS.len()`.
const MIGRATIONS: &[&str] = &[V1, V2];

/// The schema version this build writes.
#[cfg(test)]
pub(super) const VERSION: usize = MIGRATIONS.len();

/// Brings the database to the version of this build (see [`migrations::migrate`]).
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("migrate"))?;
    migrations::migrate(&mut tx, MIGRATIONS)?;
    tx.commit().map_err(db("migrate"))
}

impl Versioned for Transaction<'_> {
    fn version(&mut self) -> Result<i64, StoreError> {
        self.pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(db("migrate"))
    }

    fn step(&mut self, step: &str, version: usize) -> Result<(), StoreError> {
        self.execute_batch(step).map_err(db("migrate"))?;
        self.pragma_update(None, "user_version", version)
            .map_err(db("migrate"))
    }
}

/// The schema version recorded in the file.
#[cfg(test)]
pub(super) fn version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::columns::{self, columns, Reader};
    use crate::store::sqlite::rows;

    /// The one row of `table`, its `columns` read by `record`.
    fn read<T>(
        conn: &Connection,
        columns: &str,
        table: &str,
        record: Reader<T, rusqlite::Error>,
    ) -> T {
        let sql = format!("SELECT {columns} FROM {table}");
        conn.query_row(&sql, [], |row| rows::read(row, record))
            .unwrap()
    }

    /// A database written by version 1 keeps its rows, which read as asking for no resource.
    #[test]
    fn version_1_rows_read_as_unrestricted() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(V1).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO grants VALUES ('g', 'alice', 'app', 'openid', 1, NULL);
             INSERT INTO codes VALUES ('h', 'alice', 'app', 'http://127.0.0.1/cb', NULL,
                                       'openid', 2, 0, NULL);
             INSERT INTO devices VALUES ('d', 'BCDFGHJK', 'tv', 'openid', 3, 5, NULL,
                                         'pending', NULL);",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(version(&conn).unwrap(), VERSION as i64);
        let grant = read(&conn, columns!(grant), "grants", columns::grant);
        let code = read(&conn, columns!(code), "codes", columns::code);
        let device = read(&conn, columns!(device), "devices", columns::device);
        assert!(grant.resource.is_empty() && code.resource.is_empty());
        assert!(device.resource.is_empty());
        assert_eq!(grant.scope, "openid");
    }
}
