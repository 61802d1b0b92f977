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

mod open;
mod rows;
mod schema;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::store::{
    ApiKeyRecord, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus, GrantRecord, KeyRecord,
    RefreshRecord, Store, StoreError, TokenHash, UnixTime,
};

/// How long [`Store::sweep`] keeps what access tokens may still point at: a grant revoked
/// this long ago, and expired refresh tokens (so that "the grant has had no live refresh
/// token for this long" is still visible).
///
/// An access token is minted at code redemption or refresh, so it lives at most
/// `access_token_lifetime` past its grant's creation or its last refresh token's expiry.
/// That lifetime is hours (1 h by default); a day covers it with room to spare. A grant
/// deleted while one of its access tokens still lived would make that token look revoked
/// (or, worse, unrevoked), so `access_token_lifetime` must stay below this.
pub const SWEEP_GRACE: UnixTime = 86_400;

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
        row: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(sql).map_err(db(operation))?;
        statement
            .query_row([key], row)
            .optional()
            .map_err(db(operation))
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

/// Like [`db`], but a uniqueness violation is [`StoreError::Conflict`] naming `what`.
fn insert(
    op: &'static str,
    what: impl FnOnce() -> String,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| {
        let unique = e.sqlite_error().is_some_and(|f| {
            f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
        });
        if unique {
            StoreError::Conflict(what())
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
                    rows::registered_by_name(client.registered_by),
                    client.created_at,
                ],
            )
            .map_err(insert("insert_client", || format!("client {}", client.id)))?;
        Ok(())
    }

    fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        let sql = format!("SELECT {} FROM clients WHERE id = ?1", rows::CLIENT);
        self.lookup("client", &sql, id, rows::client)
    }

    fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let sql = format!("SELECT {} FROM clients ORDER BY id", rows::CLIENT);
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(db("clients"))?;
        let clients = stmt
            .query_map([], rows::client)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db("clients"))?;
        Ok(clients)
    }

    /// Also revokes grants of an id that was never registered (an unregistered public
    /// client's), and drops the client's consents, codes and device authorizations, so an
    /// id registered again later starts from nothing.
    fn remove_client(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let op = "remove_client";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let existed = tx
            .execute("DELETE FROM clients WHERE id = ?1", [id])
            .map_err(db(op))?
            > 0;
        tx.execute(
            "UPDATE grants SET revoked_at = ?2 WHERE client_id = ?1 AND revoked_at IS NULL",
            params![id, now],
        )
        .map_err(db(op))?;
        for table in ["consents", "codes", "devices"] {
            tx.execute(&format!("DELETE FROM {table} WHERE client_id = ?1"), [id])
                .map_err(db(op))?;
        }
        tx.commit().map_err(db(op))?;
        Ok(existed)
    }

    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let permissions = rows::list_text(&key.permissions)?;
        self.conn()
            .execute(
                "INSERT INTO api_keys (hash, permissions, created_at) VALUES (?1, ?2, ?3)",
                params![key.hash.0, permissions, key.created_at],
            )
            .map_err(insert("insert_api_key", || {
                format!("API key {:?}", key.hash)
            }))?;
        Ok(())
    }

    fn api_key(&self, hash: &TokenHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {} FROM api_keys WHERE hash = ?1", rows::API_KEY);
        self.lookup("api_key", &sql, &hash.0, rows::api_key)
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
            .map_err(insert("insert_grant", || format!("grant {}", grant.id)))?;
        Ok(())
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        let sql = format!("SELECT {} FROM grants WHERE id = ?1", rows::GRANT);
        self.lookup("grant", &sql, id, rows::grant)
    }

    fn revoke_grant(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(db("revoke_grant"))?;
        Ok(changed > 0)
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
            .map_err(insert("insert_code", || format!("code {:?}", code.hash)))?;
        Ok(())
    }

    fn code(&self, hash: &TokenHash) -> Result<Option<CodeRecord>, StoreError> {
        let sql = format!("SELECT {} FROM codes WHERE hash = ?1", rows::CODE);
        self.lookup("code", &sql, &hash.0, rows::code)
    }

    /// 0 when there is no such code.
    fn code_failed(&self, hash: &TokenHash) -> Result<u32, StoreError> {
        let count = self
            .conn()
            .query_row(
                "UPDATE codes SET failed_attempts = failed_attempts + 1 WHERE hash = ?1 \
                 RETURNING failed_attempts",
                [&hash.0],
                |row| row.get(0),
            )
            .optional()
            .map_err(db("code_failed"))?;
        Ok(count.unwrap_or(0))
    }

    fn redeem_code(&self, hash: &TokenHash, grant_id: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE codes SET grant_id = ?2 WHERE hash = ?1 AND grant_id IS NULL",
                params![hash.0, grant_id],
            )
            .map_err(db("redeem_code"))?;
        Ok(changed > 0)
    }

    fn delete_code(&self, hash: &TokenHash) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM codes WHERE hash = ?1", [&hash.0])
            .map_err(db("delete_code"))?;
        Ok(())
    }

    /// The grant must exist (a refresh token belongs to a family).
    fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO refresh_tokens (hash, grant_id, expires_at, spent_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    token.hash.0,
                    token.grant_id,
                    token.expires_at,
                    token.spent_at
                ],
            )
            .map_err(insert("insert_refresh", || {
                format!("refresh token {:?}", token.hash)
            }))?;
        Ok(())
    }

    fn refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM refresh_tokens WHERE hash = ?1",
            rows::REFRESH
        );
        self.lookup("refresh", &sql, &hash.0, rows::refresh)
    }

    /// `false` too when `old` does not exist. Expiry and revocation are the caller's to
    /// check; this only guarantees that one rotation of `old` wins.
    fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &RefreshRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let op = "rotate_refresh";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let spent = tx
            .execute(
                "UPDATE refresh_tokens SET spent_at = ?2 WHERE hash = ?1 AND spent_at IS NULL",
                params![old.0, now],
            )
            .map_err(db(op))?;
        if spent == 0 {
            // Nothing written; dropping the transaction rolls back.
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO refresh_tokens (hash, grant_id, expires_at, spent_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![new.hash.0, new.grant_id, new.expires_at, new.spent_at],
        )
        .map_err(insert(op, || format!("refresh token {:?}", new.hash)))?;
        tx.commit().map_err(db(op))?;
        Ok(true)
    }

    fn insert_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        let (status, user) = rows::status_columns(&device.status);
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
            // The user code is what a person types to approve: not echoed.
            .map_err(insert("insert_device", || {
                "device authorization with this user code or device code".to_owned()
            }))?;
        Ok(())
    }

    fn device(&self, hash: &TokenHash) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM devices WHERE device_hash = ?1",
            rows::DEVICE
        );
        self.lookup("device", &sql, &hash.0, rows::device)
    }

    fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let sql = format!("SELECT {} FROM devices WHERE user_code = ?1", rows::DEVICE);
        self.lookup("device_by_user_code", &sql, user_code, rows::device)
    }

    fn device_polled(
        &self,
        hash: &TokenHash,
        now: UnixTime,
        interval: u32,
    ) -> Result<Option<UnixTime>, StoreError> {
        let op = "device_polled";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let previous: Option<Option<UnixTime>> = tx
            .query_row(
                "SELECT last_poll FROM devices WHERE device_hash = ?1",
                [&hash.0],
                |row| row.get(0),
            )
            .optional()
            .map_err(db(op))?;
        let Some(previous) = previous else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE devices SET last_poll = ?2, poll_interval = ?3 WHERE device_hash = ?1",
            params![hash.0, now, interval],
        )
        .map_err(db(op))?;
        tx.commit().map_err(db(op))?;
        Ok(previous)
    }

    /// Only [`DeviceStatus::Approved`] and [`DeviceStatus::Denied`] are decisions; any other
    /// `status` changes nothing and answers `false`.
    fn decide_device(&self, user_code: &str, status: &DeviceStatus) -> Result<bool, StoreError> {
        if !matches!(status, DeviceStatus::Approved { .. } | DeviceStatus::Denied) {
            return Ok(false);
        }
        let (status, user) = rows::status_columns(status);
        let changed = self
            .conn()
            .execute(
                "UPDATE devices SET status = ?2, user = ?3 \
                 WHERE user_code = ?1 AND status = 'pending'",
                params![user_code, status, user],
            )
            .map_err(db("decide_device"))?;
        Ok(changed > 0)
    }

    fn finish_device(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .execute(
                "UPDATE devices SET status = 'finished' \
                 WHERE device_hash = ?1 AND status = 'approved'",
                [&hash.0],
            )
            .map_err(db("finish_device"))?;
        Ok(changed > 0)
    }

    fn consent(&self, user: &str, client_id: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT scope FROM consents WHERE user = ?1 AND client_id = ?2",
                [user, client_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(db("consent"))
    }

    /// Replaces what was remembered before.
    fn put_consent(
        &self,
        user: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO consents (user, client_id, scope, updated_at) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (user, client_id) \
                 DO UPDATE SET scope = excluded.scope, updated_at = excluded.updated_at",
                params![user, client_id, scope, now],
            )
            .map_err(db("put_consent"))?;
        Ok(())
    }

    /// Newest by `created_at`; of two made in the same second, the one inserted last.
    fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {} FROM signing_keys ORDER BY created_at DESC, rowid DESC",
            rows::SIGNING_KEY
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(db("signing_keys"))?;
        let keys = stmt
            .query_map([], rows::signing_key)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(db("signing_keys"))?;
        Ok(keys)
    }

    fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO signing_keys (kid, algorithm, private_pkcs8, created_at, \
                 retired_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    key.kid,
                    key.algorithm,
                    key.private_pkcs8,
                    key.created_at,
                    key.retired_at,
                ],
            )
            .map_err(insert("insert_signing_key", || {
                format!("signing key {}", key.kid)
            }))?;
        Ok(())
    }

    /// In one `IMMEDIATE` transaction: a second process rotating at once waits, then finds
    /// the first one's key.
    fn rotate_signing_key(
        &self,
        fresh: &KeyRecord,
        newer_than: UnixTime,
    ) -> Result<bool, StoreError> {
        let op = "rotate_signing_key";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let young: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM signing_keys \
                 WHERE retired_at IS NULL AND created_at > ?1)",
                [newer_than],
                |row| row.get(0),
            )
            .map_err(db(op))?;
        if young {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO signing_keys (kid, algorithm, private_pkcs8, created_at, retired_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                fresh.kid,
                fresh.algorithm,
                fresh.private_pkcs8,
                fresh.created_at,
                fresh.retired_at,
            ],
        )
        .map_err(insert(op, || format!("signing key {}", fresh.kid)))?;
        tx.execute(
            "UPDATE signing_keys SET retired_at = ?2 WHERE kid <> ?1 AND retired_at IS NULL",
            params![fresh.kid, fresh.created_at],
        )
        .map_err(db(op))?;
        tx.commit().map_err(db(op))?;
        Ok(true)
    }

    /// A key retired already keeps its first retirement time (which dates its last tokens).
    fn retire_signing_key(&self, kid: &str, now: UnixTime) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE signing_keys SET retired_at = ?2 WHERE kid = ?1 AND retired_at IS NULL",
                params![kid, now],
            )
            .map_err(db("retire_signing_key"))?;
        Ok(())
    }

    /// A key not retired yet is kept: it may be the one signing now.
    fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM signing_keys WHERE kid = ?1 AND retired_at IS NOT NULL",
                [kid],
            )
            .map_err(db("delete_signing_key"))?;
        Ok(())
    }

    /// Insert-if-absent and read back in one `IMMEDIATE` transaction: of two instances
    /// starting at once, the second reads the first one's secret.
    fn server_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let op = "server_secret";
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        tx.execute(
            "INSERT INTO server_secrets (name, secret) VALUES (?1, ?2) \
             ON CONFLICT (name) DO NOTHING",
            params![name, fresh],
        )
        .map_err(db(op))?;
        let secret: Vec<u8> = tx
            .query_row(
                "SELECT secret FROM server_secrets WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .map_err(db(op))?;
        tx.commit().map_err(db(op))?;
        Ok(secret)
    }

    /// Deletes codes and device authorizations once expired (a redeemed code is kept until
    /// then: a replay before expiry must still find it and revoke its grant); refresh tokens
    /// [`SWEEP_GRACE`] after they expired, and with them grants that have none left and are
    /// older than that; grants revoked more than [`SWEEP_GRACE`] ago with their refresh
    /// tokens. Consents and signing keys are kept.
    fn sweep(&self, now: UnixTime) -> Result<u64, StoreError> {
        let op = "sweep";
        let cutoff = now.saturating_sub(SWEEP_GRACE);
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let steps: [(&str, UnixTime); 5] = [
            ("DELETE FROM codes WHERE expires_at < ?1", now),
            ("DELETE FROM devices WHERE expires_at < ?1", now),
            // Explicitly rather than by cascade, so that they are counted.
            (
                "DELETE FROM refresh_tokens WHERE expires_at < ?1 OR grant_id IN \
                 (SELECT id FROM grants WHERE revoked_at < ?1)",
                cutoff,
            ),
            ("DELETE FROM grants WHERE revoked_at < ?1", cutoff),
            (
                "DELETE FROM grants WHERE created_at < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM refresh_tokens WHERE refresh_tokens.grant_id = grants.id)",
                cutoff,
            ),
        ];
        let mut deleted = 0_u64;
        for (sql, time) in steps {
            let rows = tx.execute(sql, [time]).map_err(db(op))?;
            deleted += rows as u64;
        }
        tx.commit().map_err(db(op))?;
        Ok(deleted)
    }
}
