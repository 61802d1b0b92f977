//! [`PostgresStore`]: the store shared by several instances (`[issuer] store =
//! "postgres://…"`), so that a client registered, a code minted, a refresh token rotated,
//! a grant revoked or a key made on one instance holds on every other at once.
//!
//! Every [`Store`] method is one statement, or one transaction where it must read before it
//! writes, at PostgreSQL's default READ COMMITTED: the single-winner steps (a code redeemed,
//! a refresh token rotated, a device finished) are conditional `UPDATE`s whose row count
//! says who won — a second updater of the row waits for the first to commit, then finds the
//! condition false. A rotation of signing keys locks its table against other rotations
//! (not against readers); a sweep that finds another instance sweeping leaves it the work.
//!
//! What instances do not share, and the bounds that follow: nothing about a grant is kept
//! per instance — the token check at every login reads the grant (`check_access_token`;
//! the validator never caches the built-in issuer's answers), so a revocation through any
//! instance is refused at the next login on every other, with no delay. Verified token
//! signatures are remembered per instance, but not their grants' state. Signing keys are
//! cached with the bounds stated in `keys` (a new key verifies everywhere at once, and is
//! published in every instance's JWKS within seconds). Clients, consents, codes, refresh
//! tokens and device codes are read from the database at each use. Per instance only: the
//! sign-in and registration rate limits (so N instances allow N times the attempts) and the
//! sign-in pages' browser sessions and CSRF key (one browser must stay on one instance).
//!
//! Statements live in `sql`, the column types in `rows` (the readers are the shared ones,
//! `store::columns`), the statements of the steps that are transactions (the shared ones,
//! `store::steps`) in `transactions`, the schema and its migrations in `schema`, the
//! connections in `pool`
//! (threads of their own: callable from any thread, async or not), the URL in `url` and
//! TLS in `tls`. The database password never reaches a log line or an error: the URL
//! redacts itself, and database errors are reported by code and message, without the
//! `DETAIL` that can quote a row.

mod pool;
mod rows;
mod schema;
mod sql;
#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
mod test_server;
#[cfg(test)]
mod tests;
mod tls;
mod transactions;
mod url;

use std::fmt;
use std::path::Path;

use postgres::error::SqlState;

use self::pool::{Conn, Pool, Statements};
use self::transactions::{prepare, StepTx};
pub use self::url::{StoreUrl, TlsMode};
use crate::store::columns::{self, Reader, Unique};
use crate::store::steps;
use crate::store::{
    ApiKeyRecord, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus, GrantRecord, KeyRecord,
    RefreshRecord, Store, StoreError, TokenHash, UnixTime,
};

/// The advisory lock held while the schema is checked and migrated ("bearer" + 1).
const MIGRATION_LOCK: i64 = 0x6265_6172_6572_0001;
/// The advisory lock of a sweep ("bearer" + 2).
const SWEEP_LOCK: i64 = 0x6265_6172_6572_0002;

/// The shared store: a PostgreSQL database (or schema) of its own, reached through a small
/// pool of connections.
pub struct PostgresStore {
    pool: Pool,
    /// The URL without its password, for `Debug`.
    url: String,
}

impl PostgresStore {
    /// Connects, and creates or migrates the schema (waiting for another instance doing the
    /// same). A relative `sslrootcert` in the URL is taken relative to `base`.
    pub fn open(url: &StoreUrl, base: &Path) -> Result<Self, StoreError> {
        let target = url
            .target(base)
            .map_err(|why| StoreError::Database(format!("store URL: {why}")))?;
        if target.tls == TlsMode::Prefer && !target.local {
            tracing::warn!(
                "store: sslmode=prefer to a database across a network falls back to \
                 plaintext whenever anyone on the path says the server has no TLS; use \
                 verify-full (with sslrootcert for a private CA)"
            );
        }
        let pool = Pool::start(target).map_err(StoreError::Database)?;
        let store = Self {
            pool,
            url: url.redacted(),
        };
        store.pool.run("migrate", schema::migrate)?;
        Ok(store)
    }

    /// The schema version this build writes (tests compare it with the database's).
    pub const SCHEMA_VERSION: usize = schema::VERSION;

    /// The record `statement` selects by `key`, if any, read by `record`.
    fn lookup<T: Send + 'static>(
        &self,
        op: &'static str,
        statement: &'static str,
        key: &str,
        record: Reader<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let key = key.to_owned();
        self.pool.read(op, move |conn| {
            conn.query_opt(statement, &[&key])
                .map_err(db(op))?
                .map(|row| rows::read(&row, record))
                .transpose()
        })
    }

    /// Every record `statement` selects, read by `record`.
    fn all<T: Send + 'static>(
        &self,
        op: &'static str,
        statement: &'static str,
        record: Reader<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.pool.read(op, move |conn| {
            conn.query(statement, &[])
                .map_err(db(op))?
                .iter()
                .map(|row| rows::read(row, record))
                .collect()
        })
    }

    /// Runs `write`, one statement, on a connection; the rows it changed.
    fn write(
        &self,
        op: &'static str,
        write: impl FnOnce(&mut Conn) -> Result<u64, postgres::Error> + Send + 'static,
    ) -> Result<u64, StoreError> {
        self.pool.run(op, move |conn| write(conn).map_err(db(op)))
    }

    /// Runs a shared step (`store::steps`) in one transaction, with the statements of
    /// [`prepare`] it runs.
    fn step<T: Send + 'static>(
        &self,
        op: &'static str,
        statements: &'static [&'static str],
        step: impl FnOnce(&mut StepTx<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.pool.run(op, move |conn: &mut Conn| {
            transactions::run(conn, op, statements, step)
        })
    }
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("url", &self.url)
            .field("connections", &pool::POOL_SIZE)
            .finish_non_exhaustive()
    }
}

/// A database error in words that never quote a row: the server's code and message, or
/// the driver's own (connection) message.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
        None => {
            // The driver's own message is general ("error performing TLS handshake"); the
            // causes say what went wrong.
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(inner) = cause {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                cause = inner.source();
            }
            text
        }
    }
}

/// Maps a failure of operation `op`.
fn db(op: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| StoreError::Database(format!("{op}: {}", describe(&e)))
}

/// Like [`db`], but a uniqueness violation is `record`'s [`StoreError::Conflict`].
fn insert<'r>(
    op: &'static str,
    record: &'r impl Unique,
) -> impl FnOnce(postgres::Error) -> StoreError + 'r {
    move |e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            record.conflict()
        } else {
            db(op)(e)
        }
    }
}

/// A record's `u32` in a `BIGINT` column.
fn wide(value: u32) -> i64 {
    i64::from(value)
}

impl Store for PostgresStore {
    fn insert_client(&self, client: &ClientRecord) -> Result<(), StoreError> {
        let client = client.clone();
        self.pool.run("insert_client", move |conn| {
            let secret_hash = client.secret_hash.as_ref().map(|h| &h.0);
            conn.execute(
                sql::clients::INSERT,
                &[
                    &client.id,
                    &secret_hash,
                    &client.auth_method.name(),
                    &client.name,
                    &client.redirect_uris,
                    &client.grant_types,
                    &columns::registered_by_name(client.registered_by),
                    &client.created_at,
                ],
            )
            .map_err(insert("insert_client", &client))?;
            Ok(())
        })
    }

    fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError> {
        self.lookup("client", sql::clients::BY_ID, id, columns::client)
    }

    fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.all("clients", sql::clients::ALL, columns::client)
    }

    /// See [`steps::remove_client`].
    fn remove_client(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.step("remove_client", prepare::REMOVE_CLIENT, move |tx| {
            steps::remove_client(tx, &id, now)
        })
    }

    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.pool.run("insert_api_key", move |conn| {
            conn.execute(
                sql::api_keys::INSERT,
                &[&key.hash.0, &key.permissions, &key.created_at],
            )
            .map_err(insert("insert_api_key", &key))?;
            Ok(())
        })
    }

    fn api_key(&self, hash: &TokenHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.lookup("api_key", sql::api_keys::BY_HASH, &hash.0, columns::api_key)
    }

    fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError> {
        let grant = grant.clone();
        self.pool.run("insert_grant", move |conn| {
            conn.execute(
                sql::grants::INSERT,
                &[
                    &grant.id,
                    &grant.user,
                    &grant.client_id,
                    &grant.scope,
                    &grant.created_at,
                    &grant.revoked_at,
                    &grant.resource,
                ],
            )
            .map_err(insert("insert_grant", &grant))?;
            Ok(())
        })
    }

    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError> {
        self.lookup("grant", sql::grants::BY_ID, id, columns::grant)
    }

    fn revoke_grant(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        let id = id.to_owned();
        let changed = self.write("revoke_grant", move |conn| {
            conn.execute(sql::grants::REVOKE, &[&id, &now])
        })?;
        Ok(changed > 0)
    }

    fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        let code = code.clone();
        self.pool.run("insert_code", move |conn| {
            conn.execute(
                sql::codes::INSERT,
                &[
                    &code.hash.0,
                    &code.user,
                    &code.client_id,
                    &code.redirect_uri,
                    &code.code_challenge,
                    &code.scope,
                    &code.expires_at,
                    &wide(code.failed_attempts),
                    &code.grant_id,
                    &code.resource,
                ],
            )
            .map_err(insert("insert_code", &code))?;
            Ok(())
        })
    }

    fn code(&self, hash: &TokenHash) -> Result<Option<CodeRecord>, StoreError> {
        self.lookup("code", sql::codes::BY_HASH, &hash.0, columns::code)
    }

    /// 0 when there is no such code.
    fn code_failed(&self, hash: &TokenHash) -> Result<u32, StoreError> {
        let hash = hash.0.clone();
        self.pool.run("code_failed", move |conn| {
            let Some(row) = conn
                .query_opt(sql::codes::FAILED, &[&hash])
                .map_err(db("code_failed"))?
            else {
                return Ok(0);
            };
            let count: i64 = rows::first(&row)?;
            Ok(u32::try_from(count).unwrap_or(u32::MAX))
        })
    }

    fn redeem_code(&self, hash: &TokenHash, grant_id: &str) -> Result<bool, StoreError> {
        let (hash, grant_id) = (hash.0.clone(), grant_id.to_owned());
        let changed = self.write("redeem_code", move |conn| {
            conn.execute(sql::codes::REDEEM, &[&hash, &grant_id])
        })?;
        Ok(changed > 0)
    }

    fn delete_code(&self, hash: &TokenHash) -> Result<(), StoreError> {
        let hash = hash.0.clone();
        self.write("delete_code", move |conn| {
            conn.execute(sql::codes::DELETE, &[&hash])
        })?;
        Ok(())
    }

    /// The grant must exist (a refresh token belongs to a family).
    fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError> {
        let token = token.clone();
        self.pool.run("insert_refresh", move |conn| {
            transactions::insert_refresh(conn, "insert_refresh", &token)
        })
    }

    fn refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError> {
        self.lookup(
            "refresh",
            sql::refresh_tokens::BY_HASH,
            &hash.0,
            columns::refresh,
        )
    }

    /// See [`steps::rotate_refresh`].
    fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &RefreshRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let (old, new) = (old.0.clone(), new.clone());
        self.step("rotate_refresh", prepare::ROTATE_REFRESH, move |tx| {
            steps::rotate_refresh(tx, &old, &new, now)
        })
    }

    fn insert_device(&self, device: &DeviceRecord) -> Result<(), StoreError> {
        let device = device.clone();
        self.pool.run("insert_device", move |conn| {
            let (status, user) = columns::status_columns(&device.status);
            conn.execute(
                sql::devices::INSERT,
                &[
                    &device.device_hash.0,
                    &device.user_code,
                    &device.client_id,
                    &device.scope,
                    &device.expires_at,
                    &wide(device.interval),
                    &device.last_poll,
                    &status,
                    &user,
                    &device.resource,
                ],
            )
            .map_err(insert("insert_device", &device))?;
            Ok(())
        })
    }

    fn device(&self, hash: &TokenHash) -> Result<Option<DeviceRecord>, StoreError> {
        self.lookup("device", sql::devices::BY_HASH, &hash.0, columns::device)
    }

    fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let statement = sql::devices::BY_USER_CODE;
        self.lookup("device_by_user_code", statement, user_code, columns::device)
    }

    fn device_polled(
        &self,
        hash: &TokenHash,
        now: UnixTime,
        interval: u32,
    ) -> Result<Option<UnixTime>, StoreError> {
        let hash = hash.0.clone();
        self.step("device_polled", prepare::DEVICE_POLLED, move |tx| {
            steps::device_polled(tx, &hash, now, interval)
        })
    }

    /// Only [`DeviceStatus::Approved`] and [`DeviceStatus::Denied`] are decisions; any other
    /// `status` changes nothing and answers `false`.
    fn decide_device(&self, user_code: &str, status: &DeviceStatus) -> Result<bool, StoreError> {
        if !matches!(status, DeviceStatus::Approved { .. } | DeviceStatus::Denied) {
            return Ok(false);
        }
        let (user_code, status) = (user_code.to_owned(), status.clone());
        let changed = self.write("decide_device", move |conn| {
            let (status, user) = columns::status_columns(&status);
            conn.execute(sql::devices::DECIDE, &[&user_code, &status, &user])
        })?;
        Ok(changed > 0)
    }

    fn finish_device(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        let hash = hash.0.clone();
        let changed = self.write("finish_device", move |conn| {
            conn.execute(sql::devices::FINISH, &[&hash])
        })?;
        Ok(changed > 0)
    }

    fn consent(&self, user: &str, client_id: &str) -> Result<Option<String>, StoreError> {
        let (user, client_id) = (user.to_owned(), client_id.to_owned());
        self.pool.read("consent", move |conn| {
            conn.query_opt(sql::consents::SCOPE, &[&user, &client_id])
                .map_err(db("consent"))?
                .map(|row| rows::first(&row))
                .transpose()
        })
    }

    /// Replaces what was remembered before.
    fn put_consent(
        &self,
        user: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let (user, client_id, scope) = (user.to_owned(), client_id.to_owned(), scope.to_owned());
        self.write("put_consent", move |conn| {
            conn.execute(sql::consents::PUT, &[&user, &client_id, &scope, &now])
        })?;
        Ok(())
    }

    /// Newest by `created_at`; of two made in the same second, the one inserted last.
    fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.all("signing_keys", sql::signing_keys::ALL, columns::signing_key)
    }

    fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.pool.run("insert_signing_key", move |conn| {
            transactions::insert_signing_key(conn, "insert_signing_key", &key)
        })
    }

    /// See [`steps::rotate_signing_key`]: under a lock that other rotations wait for
    /// (readers do not), so that of several instances rotating at once one key wins and the
    /// others see it.
    fn rotate_signing_key(
        &self,
        fresh: &KeyRecord,
        newer_than: UnixTime,
    ) -> Result<bool, StoreError> {
        let fresh = fresh.clone();
        self.step(
            "rotate_signing_key",
            prepare::ROTATE_SIGNING_KEY,
            move |tx| steps::rotate_signing_key(tx, &fresh, newer_than),
        )
    }

    /// A key retired already keeps its first retirement time (which dates its last tokens).
    fn retire_signing_key(&self, kid: &str, now: UnixTime) -> Result<(), StoreError> {
        let kid = kid.to_owned();
        self.write("retire_signing_key", move |conn| {
            conn.execute(sql::signing_keys::RETIRE, &[&kid, &now])
        })?;
        Ok(())
    }

    /// A key not retired yet is kept: it may be the one signing now.
    fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        let kid = kid.to_owned();
        self.write("delete_signing_key", move |conn| {
            conn.execute(sql::signing_keys::DELETE, &[&kid])
        })?;
        Ok(())
    }

    /// See [`steps::server_secret`]: of two instances starting at once, the second waits
    /// for the first one's insert and reads its secret.
    fn server_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError> {
        let (name, fresh) = (name.to_owned(), fresh.to_vec());
        self.step("server_secret", prepare::SERVER_SECRET, move |tx| {
            steps::server_secret(tx, &name, &fresh)
        })
    }

    /// See [`steps::sweep`]: 0 when another instance is sweeping at this moment.
    fn sweep(&self, now: UnixTime) -> Result<u64, StoreError> {
        self.step("sweep", prepare::SWEEP, move |tx| steps::sweep(tx, now))
    }
}
