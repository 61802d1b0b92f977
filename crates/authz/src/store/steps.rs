//! The [`Store`] methods that read before they write, written once for every store: which
//! statements run, in which order, and what their answers decide — who rotated a key first,
//! what a sweep deletes. A store runs each step in one transaction of its own (SQLite:
//! `IMMEDIATE`; PostgreSQL: READ COMMITTED and the locks [`Steps`] takes), committed when
//! the step returns `Ok`, and supplies the statements in its SQL: every method of [`Steps`]
//! is one statement.

#[cfg(doc)]
use crate::store::Store;
use crate::store::{KeyRecord, RefreshRecord, StoreError, UnixTime};

/// How long [`Store::sweep`] keeps what access tokens may still point at: a grant revoked
/// this long ago, and expired refresh tokens (so that "the grant has had no live refresh
/// token for this long" is still visible).
///
/// An access token is minted at code redemption or refresh, so it lives at most
/// `access_token_lifetime` past its grant's creation or its last refresh token's expiry.
/// That lifetime is hours (1 h by default); a day covers it with room to spare. A grant
/// deleted while one of its access tokens still lived would make that token look revoked
/// (or, worse, unrevoked), so `access_token_lifetime` must stay below this.
pub(crate) const SWEEP_GRACE: UnixTime = 86_400;

/// What [`sweep`] deletes: rows older than a cutoff, one statement each. Consents, signing
/// keys and server secrets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sweep {
    /// Codes expired before now (a redeemed code is kept until then: a replay before expiry
    /// must still find it and revoke its grant).
    ExpiredCodes,
    /// Device authorizations expired before now.
    ExpiredDevices,
    /// Refresh tokens expired before the cutoff, or of a grant revoked before it:
    /// explicitly rather than by cascade, so that they are counted.
    DeadRefreshTokens,
    /// Grants revoked before the cutoff.
    RevokedGrants,
    /// Grants created before the cutoff that have no refresh token left.
    OrphanedGrants,
}

impl Sweep {
    /// The order of a sweep: refresh tokens before the grants they would cascade from.
    const ORDER: [Sweep; 5] = [
        Sweep::ExpiredCodes,
        Sweep::ExpiredDevices,
        Sweep::DeadRefreshTokens,
        Sweep::RevokedGrants,
        Sweep::OrphanedGrants,
    ];

    /// The time its rows are older than: `now` for what merely expires, [`SWEEP_GRACE`]
    /// before for what access tokens may still point at.
    fn cutoff(self, now: UnixTime) -> UnixTime {
        match self {
            Sweep::ExpiredCodes | Sweep::ExpiredDevices => now,
            Sweep::DeadRefreshTokens | Sweep::RevokedGrants | Sweep::OrphanedGrants => {
                now.saturating_sub(SWEEP_GRACE)
            }
        }
    }
}

/// One open transaction of a store, as the steps use it: each method one statement in the
/// store's SQL, its errors mapped to [`StoreError`] (a taken unique key: a conflict).
pub(super) trait Steps {
    /// Deletes client `id`; whether it existed.
    fn delete_client(&mut self, id: &str) -> Result<bool, StoreError>;
    /// Revokes the unrevoked grants of client `id` at `now`.
    fn revoke_grants_of(&mut self, id: &str, now: UnixTime) -> Result<(), StoreError>;
    /// Deletes client `id`'s rows of `table`.
    fn delete_of_client(&mut self, table: ClientRows, id: &str) -> Result<(), StoreError>;

    /// Marks refresh token `hash` spent at `now` if it was unspent: whether it was.
    fn spend_refresh(&mut self, hash: &str, now: UnixTime) -> Result<bool, StoreError>;
    /// Adds a refresh token.
    fn insert_refresh(&mut self, token: &RefreshRecord) -> Result<(), StoreError>;

    /// The `last_poll` of device code `hash`, locked until the transaction ends where the
    /// store's transactions do not exclude each other; `None` when there is no such code.
    fn last_poll(&mut self, hash: &str) -> Result<Option<Option<UnixTime>>, StoreError>;
    /// Stores `now` as device code `hash`'s `last_poll`, and `interval`.
    fn record_poll(&mut self, hash: &str, now: UnixTime, interval: u32) -> Result<(), StoreError>;

    /// Makes rotations of the signing keys wait for each other (readers need not), where
    /// the store's transactions do not already.
    fn lock_signing_keys(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Whether an unretired key created after `time` exists.
    fn unretired_key_after(&mut self, time: UnixTime) -> Result<bool, StoreError>;
    /// Adds a signing key.
    fn insert_signing_key(&mut self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Retires every unretired key but `kid` at `time`.
    fn retire_keys_but(&mut self, kid: &str, time: UnixTime) -> Result<(), StoreError>;

    /// Stores `secret` as server secret `name` unless one is stored already.
    fn insert_secret_if_absent(&mut self, name: &str, secret: &[u8]) -> Result<(), StoreError>;
    /// Server secret `name`.
    fn secret(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Whether this transaction may sweep: `false` when another one is sweeping, where the
    /// store's transactions do not already exclude each other.
    fn claim_sweep(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Deletes the rows of `what` older than `cutoff`; how many.
    fn sweep(&mut self, what: Sweep, cutoff: UnixTime) -> Result<u64, StoreError>;
}

/// What else of a client [`remove_client`] deletes, so that an id registered again later
/// starts from nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientRows {
    /// Its consents.
    Consents,
    /// Its authorization codes.
    Codes,
    /// Its device authorizations.
    Devices,
}

/// [`Store::remove_client`]: deletes the client, revokes its grants (also those of an id
/// that was never registered, an unregistered public client's) and deletes its
/// [`ClientRows`]; whether it existed.
pub(super) fn remove_client(
    tx: &mut impl Steps,
    id: &str,
    now: UnixTime,
) -> Result<bool, StoreError> {
    let existed = tx.delete_client(id)?;
    tx.revoke_grants_of(id, now)?;
    for table in [ClientRows::Consents, ClientRows::Codes, ClientRows::Devices] {
        tx.delete_of_client(table, id)?;
    }
    Ok(existed)
}

/// [`Store::rotate_refresh`]: spends `old` and adds `new`, only if `old` was unspent (the
/// conditional update's row count says who won); `false` too when `old` does not exist.
/// Expiry and revocation are the caller's to check. A failed insert of `new` fails the step,
/// so the store's transaction rolls the spending back.
pub(super) fn rotate_refresh(
    tx: &mut impl Steps,
    old: &str,
    new: &RefreshRecord,
    now: UnixTime,
) -> Result<bool, StoreError> {
    if !tx.spend_refresh(old, now)? {
        return Ok(false);
    }
    tx.insert_refresh(new)?;
    Ok(true)
}

/// [`Store::device_polled`]: records the poll; the previous one, `None` when there is no
/// such device code.
pub(super) fn device_polled(
    tx: &mut impl Steps,
    hash: &str,
    now: UnixTime,
    interval: u32,
) -> Result<Option<UnixTime>, StoreError> {
    let Some(previous) = tx.last_poll(hash)? else {
        return Ok(None);
    };
    tx.record_poll(hash, now, interval)?;
    Ok(previous)
}

/// [`Store::rotate_signing_key`]: inserts `fresh` and retires every other unretired key at
/// `fresh.created_at`, unless an unretired key created after `newer_than` exists — another
/// instance rotated first, and its key stays the signing key.
pub(super) fn rotate_signing_key(
    tx: &mut impl Steps,
    fresh: &KeyRecord,
    newer_than: UnixTime,
) -> Result<bool, StoreError> {
    tx.lock_signing_keys()?;
    if tx.unretired_key_after(newer_than)? {
        return Ok(false);
    }
    tx.insert_signing_key(fresh)?;
    tx.retire_keys_but(&fresh.kid, fresh.created_at)?;
    Ok(true)
}

/// [`Store::server_secret`]: insert-if-absent, then read back, so that of two instances
/// starting at once the second reads the first one's secret.
pub(super) fn server_secret(
    tx: &mut impl Steps,
    name: &str,
    fresh: &[u8],
) -> Result<Vec<u8>, StoreError> {
    tx.insert_secret_if_absent(name, fresh)?;
    tx.secret(name)?
        .ok_or_else(|| StoreError::Database("server_secret: vanished".to_owned()))
}

/// [`Store::sweep`]: every [`Sweep`], in order; the number of rows deleted, 0 when another
/// instance is sweeping at this moment (it does the work).
pub(super) fn sweep(tx: &mut impl Steps, now: UnixTime) -> Result<u64, StoreError> {
    if !tx.claim_sweep()? {
        return Ok(0);
    }
    let mut deleted = 0_u64;
    for what in Sweep::ORDER {
        deleted += tx.sweep(what, what.cutoff(now))?;
    }
    Ok(deleted)
}
