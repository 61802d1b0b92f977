//! The shared steps (`store::steps`) on PostgreSQL: their statements, and the transaction
//! each step runs in (READ COMMITTED; the single-winner statements are conditional updates,
//! and the rest is serialised by the locks taken here).

use postgres::types::{FromSql, ToSql};

use super::pool::{Conn, Statements, Tx};
use super::{db, insert, rows, sql, wide, SWEEP_LOCK};
use crate::store::steps::{ClientRows, Steps, Sweep};
use crate::store::{KeyRecord, RefreshRecord, StoreError, UnixTime};

/// What each step runs, prepared (once per connection) before its transaction starts; a
/// statement left out is prepared in the transaction, each time.
pub(super) mod prepare {
    use super::sql;

    pub(crate) const REMOVE_CLIENT: &[&str] = &[
        sql::clients::DELETE,
        sql::grants::REVOKE_OF_CLIENT,
        sql::consents::DELETE_OF_CLIENT,
        sql::codes::DELETE_OF_CLIENT,
        sql::devices::DELETE_OF_CLIENT,
    ];
    pub(crate) const ROTATE_REFRESH: &[&str] =
        &[sql::refresh_tokens::SPEND, sql::refresh_tokens::INSERT];
    pub(crate) const DEVICE_POLLED: &[&str] = &[sql::devices::LAST_POLL, sql::devices::POLLED];
    pub(crate) const ROTATE_SIGNING_KEY: &[&str] = &[
        sql::signing_keys::YOUNG_EXISTS,
        sql::signing_keys::INSERT,
        sql::signing_keys::RETIRE_OTHERS,
    ];
    pub(crate) const SERVER_SECRET: &[&str] = &[
        sql::server_secrets::INSERT_ABSENT,
        sql::server_secrets::BY_NAME,
    ];
    pub(crate) const SWEEP: &[&str] = &[sql::SWEEP_LOCK];
}

/// A step's transaction; `op` names the step in errors.
pub(super) struct StepTx<'c> {
    tx: Tx<'c>,
    op: &'static str,
}

/// Runs `step` on `conn` in one transaction with `statements` prepared, committed when it
/// returns `Ok` (and rolled back when it fails).
pub(super) fn run<T>(
    conn: &mut Conn,
    op: &'static str,
    statements: &[&'static str],
    step: impl FnOnce(&mut StepTx<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction(statements).map_err(db(op))?;
    let mut tx = StepTx { tx, op };
    let value = step(&mut tx)?;
    tx.tx.commit().map_err(db(op))?;
    Ok(value)
}

/// Adds a refresh token on a connection or in a transaction; `op` names the call in errors.
pub(super) fn insert_refresh(
    conn: &mut impl Statements,
    op: &'static str,
    token: &RefreshRecord,
) -> Result<(), StoreError> {
    conn.execute(
        sql::refresh_tokens::INSERT,
        &[
            &token.hash.0,
            &token.grant_id,
            &token.expires_at,
            &token.spent_at,
        ],
    )
    .map_err(insert(op, token))?;
    Ok(())
}

/// Adds a signing key on a connection or in a transaction; `op` names the call in errors.
pub(super) fn insert_signing_key(
    conn: &mut impl Statements,
    op: &'static str,
    key: &KeyRecord,
) -> Result<(), StoreError> {
    conn.execute(
        sql::signing_keys::INSERT,
        &[
            &key.kid,
            &key.algorithm,
            &key.private_pkcs8,
            &key.created_at,
            &key.retired_at,
        ],
    )
    .map_err(insert(op, key))?;
    Ok(())
}

impl StepTx<'_> {
    /// Runs `statement`; rows changed.
    fn execute(
        &mut self,
        statement: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        self.tx.execute(statement, params).map_err(db(self.op))
    }

    /// The first column of the row `statement` answers, if any.
    fn first<T: for<'a> FromSql<'a>>(
        &mut self,
        statement: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<T>, StoreError> {
        self.tx
            .query_opt(statement, params)
            .map_err(db(self.op))?
            .map(|row| rows::first(&row))
            .transpose()
    }
}

impl Steps for StepTx<'_> {
    fn delete_client(&mut self, id: &str) -> Result<bool, StoreError> {
        Ok(self.execute(sql::clients::DELETE, &[&id])? > 0)
    }

    fn revoke_grants_of(&mut self, id: &str, now: UnixTime) -> Result<(), StoreError> {
        self.execute(sql::grants::REVOKE_OF_CLIENT, &[&id, &now])?;
        Ok(())
    }

    fn delete_of_client(&mut self, table: ClientRows, id: &str) -> Result<(), StoreError> {
        let statement = match table {
            ClientRows::Consents => sql::consents::DELETE_OF_CLIENT,
            ClientRows::Codes => sql::codes::DELETE_OF_CLIENT,
            ClientRows::Devices => sql::devices::DELETE_OF_CLIENT,
        };
        self.execute(statement, &[&id])?;
        Ok(())
    }

    fn spend_refresh(&mut self, hash: &str, now: UnixTime) -> Result<bool, StoreError> {
        Ok(self.execute(sql::refresh_tokens::SPEND, &[&hash, &now])? > 0)
    }

    fn insert_refresh(&mut self, token: &RefreshRecord) -> Result<(), StoreError> {
        insert_refresh(&mut self.tx, self.op, token)
    }

    /// The row stays locked until the poll is recorded: two polls at once each see the
    /// other's.
    fn last_poll(&mut self, hash: &str) -> Result<Option<Option<UnixTime>>, StoreError> {
        self.first(sql::devices::LAST_POLL, &[&hash])
    }

    fn record_poll(&mut self, hash: &str, now: UnixTime, interval: u32) -> Result<(), StoreError> {
        self.execute(sql::devices::POLLED, &[&hash, &now, &wide(interval)])?;
        Ok(())
    }

    fn lock_signing_keys(&mut self) -> Result<(), StoreError> {
        self.execute(sql::signing_keys::LOCK, &[])?;
        Ok(())
    }

    fn unretired_key_after(&mut self, time: UnixTime) -> Result<bool, StoreError> {
        let young = self.first(sql::signing_keys::YOUNG_EXISTS, &[&time])?;
        Ok(young == Some(true))
    }

    fn insert_signing_key(&mut self, key: &KeyRecord) -> Result<(), StoreError> {
        insert_signing_key(&mut self.tx, self.op, key)
    }

    fn retire_keys_but(&mut self, kid: &str, time: UnixTime) -> Result<(), StoreError> {
        self.execute(sql::signing_keys::RETIRE_OTHERS, &[&kid, &time])?;
        Ok(())
    }

    fn insert_secret_if_absent(&mut self, name: &str, secret: &[u8]) -> Result<(), StoreError> {
        self.execute(sql::server_secrets::INSERT_ABSENT, &[&name, &secret])?;
        Ok(())
    }

    fn secret(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.first(sql::server_secrets::BY_NAME, &[&name])
    }

    /// Sweeps of several instances do not queue: the one that finds the lock taken leaves
    /// the work to the other.
    fn claim_sweep(&mut self) -> Result<bool, StoreError> {
        let locked = self.first(sql::SWEEP_LOCK, &[&SWEEP_LOCK])?;
        Ok(locked == Some(true))
    }

    fn sweep(&mut self, what: Sweep, cutoff: UnixTime) -> Result<u64, StoreError> {
        let statement = match what {
            Sweep::ExpiredCodes => sql::codes::SWEEP,
            Sweep::ExpiredDevices => sql::devices::SWEEP,
            Sweep::DeadRefreshTokens => sql::refresh_tokens::SWEEP,
            Sweep::RevokedGrants => sql::grants::SWEEP_REVOKED,
            Sweep::OrphanedGrants => sql::grants::SWEEP_ORPHANED,
        };
        self.execute(statement, &[&cutoff])
    }
}
