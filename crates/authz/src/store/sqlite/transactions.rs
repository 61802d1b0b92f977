//! The shared steps (`store::steps`) on SQLite: their statements, and the `IMMEDIATE`
//! transaction each step runs in, so that a second process taking a step at the same time
//! waits for the first (up to the busy timeout), then reads what it wrote.

use rusqlite::{params, Connection, Transaction, TransactionBehavior};

use super::{db, execute, first, insert, SqliteStore};
use crate::store::steps::{ClientRows, Steps, Sweep};
use crate::store::{KeyRecord, RefreshRecord, StoreError, UnixTime};

/// A step's transaction; `op` names the step in errors.
pub(super) struct Tx<'c> {
    tx: Transaction<'c>,
    op: &'static str,
}

impl SqliteStore {
    /// Runs `step` in one `IMMEDIATE` transaction, committed when it returns `Ok` (and
    /// rolled back when it fails).
    pub(super) fn step<T>(
        &self,
        op: &'static str,
        step: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db(op))?;
        let mut tx = Tx { tx, op };
        let value = step(&mut tx)?;
        tx.tx.commit().map_err(db(op))?;
        Ok(value)
    }
}

/// Adds a refresh token on `conn` (or in a transaction); `op` names the call in errors.
pub(super) fn insert_refresh(
    conn: &Connection,
    op: &'static str,
    token: &RefreshRecord,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO refresh_tokens (hash, grant_id, expires_at, spent_at) \
         VALUES (?1, ?2, ?3, ?4)",
        params![
            token.hash.0,
            token.grant_id,
            token.expires_at,
            token.spent_at
        ],
    )
    .map_err(insert(op, token))?;
    Ok(())
}

/// Adds a signing key on `conn` (or in a transaction); `op` names the call in errors.
pub(super) fn insert_signing_key(
    conn: &Connection,
    op: &'static str,
    key: &KeyRecord,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO signing_keys (kid, algorithm, private_pkcs8, created_at, retired_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            key.kid,
            key.algorithm,
            key.private_pkcs8,
            key.created_at,
            key.retired_at,
        ],
    )
    .map_err(insert(op, key))?;
    Ok(())
}

impl Steps for Tx<'_> {
    fn delete_client(&mut self, id: &str) -> Result<bool, StoreError> {
        let sql = "DELETE FROM clients WHERE id = ?1";
        Ok(execute(&self.tx, self.op, sql, [id])? > 0)
    }

    fn revoke_grants_of(&mut self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        let sql = "UPDATE grants SET revoked_at = ?2 WHERE client_id = ?1 AND revoked_at IS NULL";
        execute(&self.tx, self.op, sql, params![id, now])?;
        Ok(())
    }

    fn delete_of_client(&mut self, table: ClientRows, id: &str) -> Result<(), StoreError> {
        let sql = match table {
            ClientRows::Consents => "DELETE FROM consents WHERE client_id = ?1",
            ClientRows::Codes => "DELETE FROM codes WHERE client_id = ?1",
            ClientRows::Devices => "DELETE FROM devices WHERE client_id = ?1",
        };
        execute(&self.tx, self.op, sql, [id])?;
        Ok(())
    }

    fn spend_refresh(&mut self, hash: &str, now: UnixTime) -> Result<bool, StoreError> {
        let sql = "UPDATE refresh_tokens SET spent_at = ?2 WHERE hash = ?1 AND spent_at IS NULL";
        Ok(execute(&self.tx, self.op, sql, params![hash, now])? > 0)
    }

    fn insert_refresh(&mut self, token: &RefreshRecord) -> Result<(), StoreError> {
        insert_refresh(&self.tx, self.op, token)
    }

    fn last_poll(&mut self, hash: &str) -> Result<Option<Option<UnixTime>>, StoreError> {
        let sql = "SELECT last_poll FROM devices WHERE device_hash = ?1";
        first(&self.tx, self.op, sql, [hash])
    }

    fn record_poll(&mut self, hash: &str, now: UnixTime, interval: u32) -> Result<(), StoreError> {
        let sql = "UPDATE devices SET last_poll = ?2, poll_interval = ?3 WHERE device_hash = ?1";
        execute(&self.tx, self.op, sql, params![hash, now, interval])?;
        Ok(())
    }

    fn unretired_key_after(&mut self, time: UnixTime) -> Result<bool, StoreError> {
        let sql = "SELECT EXISTS (SELECT 1 FROM signing_keys \
                   WHERE retired_at IS NULL AND created_at > ?1)";
        Ok(first(&self.tx, self.op, sql, [time])? == Some(true))
    }

    fn insert_signing_key(&mut self, key: &KeyRecord) -> Result<(), StoreError> {
        insert_signing_key(&self.tx, self.op, key)
    }

    fn retire_keys_but(&mut self, kid: &str, time: UnixTime) -> Result<(), StoreError> {
        let sql = "UPDATE signing_keys SET retired_at = ?2 WHERE kid <> ?1 AND retired_at IS NULL";
        execute(&self.tx, self.op, sql, params![kid, time])?;
        Ok(())
    }

    fn insert_secret_if_absent(&mut self, name: &str, secret: &[u8]) -> Result<(), StoreError> {
        let sql = "INSERT INTO server_secrets (name, secret) VALUES (?1, ?2) \
                   ON CONFLICT (name) DO NOTHING";
        execute(&self.tx, self.op, sql, params![name, secret])?;
        Ok(())
    }

    fn secret(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sql = "SELECT secret FROM server_secrets WHERE name = ?1";
        first(&self.tx, self.op, sql, [name])
    }

    fn sweep(&mut self, what: Sweep, cutoff: UnixTime) -> Result<u64, StoreError> {
        let sql = match what {
            Sweep::ExpiredCodes => "DELETE FROM codes WHERE expires_at < ?1",
            Sweep::ExpiredDevices => "DELETE FROM devices WHERE expires_at < ?1",
            Sweep::DeadRefreshTokens => {
                "DELETE FROM refresh_tokens WHERE expires_at < ?1 OR grant_id IN \
                 (SELECT id FROM grants WHERE revoked_at < ?1)"
            }
            Sweep::RevokedGrants => "DELETE FROM grants WHERE revoked_at < ?1",
            Sweep::OrphanedGrants => {
                "DELETE FROM grants WHERE created_at < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM refresh_tokens WHERE refresh_tokens.grant_id = grants.id)"
            }
        };
        let deleted = execute(&self.tx, self.op, sql, [cutoff])?;
        Ok(deleted as u64)
    }
}
