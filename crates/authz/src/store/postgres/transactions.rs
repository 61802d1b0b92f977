//! The store's steps that read before they write, each one transaction: what the `Store`
//! methods of the same names run on a connection.

use super::pool::Conn;
use super::{db, insert, rows, sql, wide, SWEEP_LOCK};
use crate::store::{KeyRecord, RefreshRecord, StoreError, UnixTime};

/// Deletes the client, revokes its grants, drops its consents, codes and device
/// authorizations; whether it existed.
pub(super) fn remove_client(conn: &mut Conn, id: &str, now: UnixTime) -> Result<bool, StoreError> {
    let op = db("remove_client");
    let mut tx = conn
        .transaction(&[
            sql::clients::DELETE,
            sql::grants::REVOKE_OF_CLIENT,
            sql::consents::DELETE_OF_CLIENT,
            sql::codes::DELETE_OF_CLIENT,
            sql::devices::DELETE_OF_CLIENT,
        ])
        .map_err(&op)?;
    let existed = tx.execute(sql::clients::DELETE, &[&id]).map_err(&op)? > 0;
    tx.execute(sql::grants::REVOKE_OF_CLIENT, &[&id, &now])
        .map_err(&op)?;
    for statement in [
        sql::consents::DELETE_OF_CLIENT,
        sql::codes::DELETE_OF_CLIENT,
        sql::devices::DELETE_OF_CLIENT,
    ] {
        tx.execute(statement, &[&id]).map_err(&op)?;
    }
    tx.commit().map_err(&op)?;
    Ok(existed)
}

/// Spends `old` and adds `new`, only if `old` was unspent: the row count says who won.
pub(super) fn rotate_refresh(
    conn: &mut Conn,
    old: &str,
    new: &RefreshRecord,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let op = db("rotate_refresh");
    let mut tx = conn
        .transaction(&[sql::refresh_tokens::SPEND, sql::refresh_tokens::INSERT])
        .map_err(&op)?;
    let spent = tx
        .execute(sql::refresh_tokens::SPEND, &[&old, &now])
        .map_err(&op)?;
    if spent == 0 {
        return Ok(false); // dropping the transaction rolls back
    }
    tx.execute(
        sql::refresh_tokens::INSERT,
        &[&new.hash.0, &new.grant_id, &new.expires_at, &new.spent_at],
    )
    .map_err(insert("rotate_refresh", || {
        format!("refresh token {:?}", new.hash)
    }))?;
    tx.commit().map_err(&op)?;
    Ok(true)
}

/// Records a poll; the previous one. The row is locked until then, so two polls at once
/// each see the other's.
pub(super) fn device_polled(
    conn: &mut Conn,
    hash: &str,
    now: UnixTime,
    interval: u32,
) -> Result<Option<UnixTime>, StoreError> {
    let op = db("device_polled");
    let mut tx = conn
        .transaction(&[sql::devices::LAST_POLL, sql::devices::POLLED])
        .map_err(&op)?;
    let Some(row) = tx
        .query_opt(sql::devices::LAST_POLL, &[&hash])
        .map_err(&op)?
    else {
        return Ok(None);
    };
    let previous: Option<UnixTime> = rows::first(&row)?;
    tx.execute(sql::devices::POLLED, &[&hash, &now, &wide(interval)])
        .map_err(&op)?;
    tx.commit().map_err(&op)?;
    Ok(previous)
}

/// Inserts `fresh` and retires the others unless a key younger than `newer_than` is
/// unretired, under a lock that other rotations wait for (readers do not).
pub(super) fn rotate_signing_key(
    conn: &mut Conn,
    fresh: &KeyRecord,
    newer_than: UnixTime,
) -> Result<bool, StoreError> {
    let op = db("rotate_signing_key");
    let mut tx = conn
        .transaction(&[
            sql::signing_keys::YOUNG_EXISTS,
            sql::signing_keys::INSERT,
            sql::signing_keys::RETIRE_OTHERS,
        ])
        .map_err(&op)?;
    tx.execute(sql::signing_keys::LOCK, &[]).map_err(&op)?;
    let young = tx
        .query_opt(sql::signing_keys::YOUNG_EXISTS, &[&newer_than])
        .map_err(&op)?;
    if let Some(row) = young {
        if rows::first::<bool>(&row)? {
            return Ok(false);
        }
    }
    tx.execute(
        sql::signing_keys::INSERT,
        &[
            &fresh.kid,
            &fresh.algorithm,
            &fresh.private_pkcs8,
            &fresh.created_at,
            &fresh.retired_at,
        ],
    )
    .map_err(insert("rotate_signing_key", || {
        format!("signing key {}", fresh.kid)
    }))?;
    tx.execute(
        sql::signing_keys::RETIRE_OTHERS,
        &[&fresh.kid, &fresh.created_at],
    )
    .map_err(&op)?;
    tx.commit().map_err(&op)?;
    Ok(true)
}

/// Deletes what can never be used again; 0 when another instance holds the sweep lock.
pub(super) fn sweep(conn: &mut Conn, now: UnixTime, cutoff: UnixTime) -> Result<u64, StoreError> {
    let op = db("sweep");
    let steps: [(&'static str, UnixTime); 5] = [
        (sql::codes::SWEEP, now),
        (sql::devices::SWEEP, now),
        (sql::refresh_tokens::SWEEP, cutoff),
        (sql::grants::SWEEP_REVOKED, cutoff),
        (sql::grants::SWEEP_ORPHANED, cutoff),
    ];
    let mut tx = conn.transaction(&[sql::SWEEP_LOCK]).map_err(&op)?;
    let locked = tx
        .query_opt(sql::SWEEP_LOCK, &[&SWEEP_LOCK])
        .map_err(&op)?
        .map(|row| rows::first::<bool>(&row))
        .transpose()?;
    if locked != Some(true) {
        return Ok(0);
    }
    let mut deleted = 0_u64;
    for (statement, time) in steps {
        deleted += tx.execute(statement, &[&time]).map_err(&op)?;
    }
    tx.commit().map_err(&op)?;
    Ok(deleted)
}
