//! [`SqliteStore`]: the embedded store, one SQLite file in `state_dir` (WAL).
//!
//! One connection behind a mutex: the authorization server's traffic is a few statements per
//! sign-in or token request, far below what one connection serves, and a single writer
//! needs no retry logic. Every [`Store`] method is one statement, or one `IMMEDIATE`
//! transaction where it must read before it writes, so the atomic steps the grant logic
//! relies on (a code redeemed once, a refresh token rotated once, a device finished once)
//! hold even against a second process opening the same file.
//!
//! The file holds the private signing keys, so it is created mode 0600 (SQLite gives its
//! `-wal` and `-shm` files the same mode).
//!
//! The column lists and readers are the shared ones (`store::columns`), with SQLite's
//! column types in `rows`; the steps that read before they write are the shared ones
//! (`store::steps`), with their statements and transaction in `transactions`; the file and
//! the connection's settings are in `open`, the schema and its migrations in `schema`.

mod open;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
mod transactions;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::types::FromSql;
use rusqlite::{params, Connection, OptionalExtension, Params};

use crate::store::columns::{self, select, Reader, Unique};
use crate::store::steps;
use crate::store::{
    ApiKeyRecord, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus, GrantRecord, KeyRecord,
    RefreshRecord, Store, StoreError, TokenHash, UnixTime,
};

/// The embedded store: a SQLite database file.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// The file, for `Debug`; `None` in memory.
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// The connection. A panic while it was held cannot have left a transaction open (a
    /// dropped `Transaction` rolls back), so a poisoned lock is taken over, not propagated.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The one row `sql` selects by a single key, through the connection's statement cache:
    /// these lookups run on every mail login (`grant`) and token request, and preparing
    /// their SQL each time was a third of their cost.
    fn lookup<T>(
        &self,
        operation: &'static str,
        sql: &str,
        key: &str,
        record: Reader<T, rusqlite::Error>,
    ) -> Result<Option<T>, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(sql).map_err(db(operation))?;
        statement
            .query_row([key], |row| rows::read(row, record))
            .optional()
            .map_err(db(operation))
    }

    /// Every row `sql` selects, read by `record`.
    fn all<T>(
        &self,
        operation: &'static str,
        sql: &str,
        record: Reader<T, rusqlite::Error>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare(sql).map_err(db(operation))?;
        let all = statement
            .query_map([], |row| rows::read(row, record))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db(operation))?;
        Ok(all)
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("SqliteStore");
        match &self.path {
            Some(path) => s.field("path", path),
            None => s.field("path", &":memory:"),
        };
        s.finish_non_exhaustive()
    }
}

/// Maps a failure of operation `op` (the message names tables and columns, never values).
fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Database(format!("{op}: {e}"))
}

/// Runs one statement on `conn` (or in a transaction); the rows it changed.
fn execute(
    conn: &Connection,
    op: &'static str,
    sql: &str,
    params: impl Params,
) -> Result<usize, StoreError> {
    conn.execute(sql, params).map_err(db(op))
}

/// The first column of the row one statement answers, if any.
fn first<T: FromSql>(
    conn: &Connection,
    op: &'static str,
    sql: &str,
    params: impl Params,
) -> Result<Option<T>, StoreError> {
    conn.query_row(sql, params, |row| row.get(0))
        .optional()
        .map_err(db(op))
}

/// Like [`db`], but a uniqueness violation is `record`'s [`StoreError::Conflict`].
fn insert<'r>(
    op: &'static str,
    record: &'r impl Unique,
) -> impl FnOnce(rusqlite::Error) -> StoreError + 'r {
    move |e| {
        let unique = e.sqlite_error().is_some_and(|f| {
            f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        });
        if unique {
            record.conflict()
        } else {
            db(op)(e)
        }
    }
}

impl Store for SqliteStore {
    fn insert_client(&self, client: &ClientRecord) -> Result<(), StoreError> {
        let redirect_uris = rows::list_text(&client.redirect_uris)?;
        let grant_types = rows::list_text(&client.grant_types)?;
        self.conn()
            .execute(
                "INSERT INTO clients (id, secret_hash, auth_method, name, redirect_uris, \
                 grant_types, registered_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    client.id,
                    client.secret_hash.as_ref().map(|h| &h.0),
                    client.auth_method.name(),
                    client.name,
                    redirect_uris,
                    grant_types,
                    columns::registered_by_name(client.registered_by),
                    client.created_at,
                ],
            )
            .map_err(insert("insert_client", client))?;
        Ok(())
    }

    fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let sql = select!(client, "FROM clients WHERE id = ?1");
        self.lookup("client", sql, id, columns::client)
    }

    fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let sql = select!(client, "FROM clients ORDER BY id");
        self.all("clients", sql, columns::client)
    }

    /// See [`steps::remove_client`].
    fn remove_client(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        self.step("remove_client", |tx| steps::remove_client(tx, id, now))
    }

    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let permissions = rows::list_text(&key.permissions)?;
        self.conn()
            .execute(
                "INSERT INTO api_keys (hash, permissions, created_at) VALUES (?1, ?2, ?3)",
                params![key.hash.0, permissions, key.created_at],
            )
            .map_err(insert("insert_api_key", key))?;
        Ok(())
    }

    fn api_key(&self, hash: &TokenHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = select!(api_key, "FROM api_keys WHERE hash = ?1");
        self.lookup("api_key", sql, &hash.0, columns::api_key)
    }

    fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        let resource = rows::list_text(&grant.resource)?;
        self.conn()
            .execute(
                "INSERT INTO grants (id, user, client_id, scope, created_at, revoked_at, \
                 resource) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    grant.id,
                    grant.user,
                    grant.client_id,
                    grant.scope,
                    grant.created_at,
                    grant.revoked_at,
                    resource,
                ],
            )
            .map_err(insert("insert_grant", grant))?;
        Ok(())
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let sql = select!(grant, "FROM grants WHERE id = ?1");
        self.lookup("grant", sql, id, columns::grant)
    }

    fn revoke_grant(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let sql = "UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL";
        Ok(execute(&self.conn(), "revoke_grant", sql, params![id, now])? > 0)
    }

    fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        let resource = rows::list_text(&code.resource)?;
        self.conn()
            .execute(
                "INSERT INTO codes (hash, user, client_id, redirect_uri, code_challenge, scope, \
                 expires_at, failed_attempts, grant_id, resource) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    code.hash.0,
                    code.user,
                    code.client_id,
                    code.redirect_uri,
                    code.code_challenge,
                    code.scope,
                    code.expires_at,
                    code.failed_attempts,
                    code.grant_id,
                    resource,
                ],
            )
            .map_err(insert("insert_code", code))?;
        Ok(())
    }

    fn code(&self, hash: &TokenHash) -> Result<Option<CodeRecord>, StoreError> {
        let sql = select!(code, "FROM codes WHERE hash = ?1");
        self.lookup("code", sql, &hash.0, columns::code)
    }

    /// 0 when there is no such code.
    fn code_failed(&self, hash: &TokenHash) -> Result<u32, StoreError> {
        let sql = "UPDATE codes SET failed_attempts = failed_attempts + 1 WHERE hash = ?1 \
                   RETURNING failed_attempts";
        let count = first(&self.conn(), "code_failed", sql, [&hash.0])?;
        Ok(count.unwrap_or(0))
    }

    fn redeem_code(&self, hash: &TokenHash, grant_id: &str) -> Result<bool, StoreError> {
        let sql = "UPDATE codes SET grant_id = ?2 WHERE hash = ?1 AND grant_id IS NULL";
        Ok(execute(&self.conn(), "redeem_code", sql, params![hash.0, grant_id])? > 0)
    }

    fn delete_code(&self, hash: &TokenHash) -> Result<(), StoreError> {
        let sql = "DELETE FROM codes WHERE hash = ?1";
        execute(&self.conn(), "delete_code", sql, [&hash.0])?;
        Ok(())
    }

    /// The grant must exist (a refresh token belongs to a family).
    fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError> {
        transactions::insert_refresh(&self.conn(), "insert_refresh", token)
    }

    fn refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let sql = select!(refresh, "FROM refresh_tokens WHERE hash = ?1");
        self.lookup("refresh", sql, &hash.0, columns::refresh)
    }

    /// See [`steps::rotate_refresh`].
    fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &RefreshRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        self.step("rotate_refresh", |tx| {
            steps::rotate_refresh(tx, &old.0, new, now)
        })
    }

    fn insert_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        let (status, user) = columns::status_columns(&device.status);
        let resource = rows::list_text(&device.resource)?;
        self.conn()
            .execute(
                "INSERT INTO devices (device_hash, user_code, client_id, scope, expires_at, \
                 poll_interval, last_poll, status, user, resource) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    device.device_hash.0,
                    device.user_code,
                    device.client_id,
                    device.scope,
                    device.expires_at,
                    device.interval,
                    device.last_poll,
                    status,
                    user,
                    resource,
                ],
            )
            .map_err(insert("insert_device", device))?;
        Ok(())
    }

    fn device(&self, hash: &TokenHash) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = select!(device, "FROM devices WHERE device_hash = ?1");
        self.lookup("device", sql, &hash.0, columns::device)
    }

    fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = select!(device, "FROM devices WHERE user_code = ?1");
        self.lookup("device_by_user_code", sql, user_code, columns::device)
    }

    fn device_polled(
        &self,
        hash: &TokenHash,
        now: UnixTime,
        interval: u32,
    ) -> Result<Option<UnixTime>, StoreError> {
        self.step("device_polled", |tx| {
            steps::device_polled(tx, &hash.0, now, interval)
        })
    }

    /// Only [`DeviceStatus::Approved`] and [`DeviceStatus::Denied`] are decisions; any other
    /// `status` changes nothing and answers `false`.
    fn decide_device(&self, user_code: &str, status: &DeviceStatus) -> Result<bool, StoreError> {
        if !matches!(status, DeviceStatus::Approved { .. } | DeviceStatus::Denied) {
            return Ok(false);
        }
        let (status, user) = columns::status_columns(status);
        let sql = "UPDATE devices SET status = ?2, user = ?3 \
                   WHERE user_code = ?1 AND status = 'pending'";
        let params = params![user_code, status, user];
        Ok(execute(&self.conn(), "decide_device", sql, params)? > 0)
    }

    fn finish_device(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let sql = "UPDATE devices SET status = 'finished' \
                   WHERE device_hash = ?1 AND status = 'approved'";
        Ok(execute(&self.conn(), "finish_device", sql, [&hash.0])? > 0)
    }

    fn consent(&self, user: &str, client_id: &str) -> Result<Option<String>, StoreError> {
        let sql = "SELECT scope FROM consents WHERE user = ?1 AND client_id = ?2";
        first(&self.conn(), "consent", sql, [user, client_id])
    }

    /// Replaces what was remembered before.
    fn put_consent(
        &self,
        user: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO consents (user, client_id, scope, updated_at) \
                   VALUES (?1, ?2, ?3, ?4) \
                   ON CONFLICT (user, client_id) \
                   DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at";
        let params = params![user, client_id, scope, now];
        execute(&self.conn(), "put_consent", sql, params)?;
        Ok(())
    }

    /// Newest by `created_at`; of two made in the same second, the one inserted last.
    fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = select!(
            signing_key,
            "FROM signing_keys ORDER BY created_at DESC, rowid DESC"
        );
        self.all("signing_keys", sql, columns::signing_key)
    }

    fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        transactions::insert_signing_key(&self.conn(), "insert_signing_key", key)
    }

    /// See [`steps::rotate_signing_key`]; a second process rotating at once waits for the
    /// transaction, then finds the first one's key.
    fn rotate_signing_key(
        &self,
        fresh: &KeyRecord,
        newer_than: UnixTime,
    ) -> Result<bool, StoreError> {
        self.step("rotate_signing_key", |tx| {
            steps::rotate_signing_key(tx, fresh, newer_than)
        })
    }

    /// A key retired already keeps its first retirement time (which dates its last tokens).
    fn retire_signing_key(&self, kid: &str, now: UnixTime) -> Result<(), StoreError> {
        let sql = "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL";
        execute(&self.conn(), "retire_signing_key", sql, params![kid, now])?;
        Ok(())
    }

    /// A key not retired yet is kept: it may be the one signing now.
    fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        let sql = "DELETE FROM signing_keys WHERE kid = ?1 AND retired_at IS NOT NULL";
        execute(&self.conn(), "delete_signing_key", sql, [kid])?;
        Ok(())
    }

    /// See [`steps::server_secret`].
    fn server_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.step("server_secret", |tx| steps::server_secret(tx, name, fresh))
    }

    /// See [`steps::sweep`].
    fn sweep(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.step("sweep", |tx| steps::sweep(tx, now))
    }
}
