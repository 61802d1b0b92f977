//! Records to columns and back, the same for every store: the column list of each record's
//! `SELECT`s, one reader per record taking its columns in that order, the text forms of the
//! enums, and what a conflict on a record's unique key says. A store supplies only how it
//! keeps each kind of column ([`Columns`]: SQLite has JSON text for lists and `INTEGER`
//! counters, PostgreSQL `TEXT[]` and `BIGINT`), so a column added in a migration changes a
//! list and a reader here, and a migration in each store.
//!
//! A value this build cannot read is an error naming the column, never a panic and never
//! the value.

use crate::store::{
    ApiKeyRecord, ClientAuthMethod, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus,
    GrantRecord, KeyRecord, RefreshRecord, RegisteredBy, StoreError, TokenHash, UnixTime,
};

/// The columns a record's reader takes, in its order, for a `SELECT` of either store:
/// `columns!(grant)`. `"user"` is quoted: a reserved word in PostgreSQL, an ordinary name
/// to SQLite. A device's `"user"` comes before its `status`, which is read with it.
macro_rules! columns {
    (client) => {
        "id, secret_hash, auth_method, name, redirect_uris, grant_types, registered_by, \
         created_at"
    };
    (api_key) => {
        "hash, permissions, created_at"
    };
    (grant) => {
        r#"id, "user", client_id, scope, created_at, revoked_at, resource"#
    };
    (code) => {
        r#"hash, "user", client_id, redirect_uri, code_challenge, scope, expires_at, failed_attempts, grant_id, resource"#
    };
    (refresh) => {
        "hash, grant_id, expires_at, spent_at"
    };
    (device) => {
        r#"device_hash, user_code, client_id, scope, expires_at, poll_interval, last_poll, "user", status, resource"#
    };
    (signing_key) => {
        "kid, algorithm, private_pkcs8, created_at, retired_at"
    };
}
pub(super) use columns;

/// A `SELECT` of a record's columns, then `$rest`: `select!(grant, "FROM grants")`.
macro_rules! select {
    ($record:ident, $rest:literal) => {
        concat!(
            "SELECT ",
            $crate::store::columns::columns!($record),
            " ",
            $rest
        )
    };
}
pub(super) use select;

/// One row, read column after column in the order of its list: what a store's types make
/// of each kind of column.
pub(super) trait Columns {
    /// The store's error for a column it cannot read.
    type Error;
    /// A `TEXT NOT NULL` column.
    fn text(&mut self) -> Result<String, Self::Error>;
    /// A `TEXT` column (`NULL`: `None`).
    fn optional_text(&mut self) -> Result<Option<String>, Self::Error>;
    /// A time, in Unix seconds.
    fn time(&mut self) -> Result<UnixTime, Self::Error>;
    /// A time that may be `NULL`.
    fn optional_time(&mut self) -> Result<Option<UnixTime>, Self::Error>;
    /// A counter, the record's `u32`.
    fn count(&mut self) -> Result<u32, Self::Error>;
    /// A list of strings.
    fn list(&mut self) -> Result<Vec<String>, Self::Error>;
    /// Bytes.
    fn bytes(&mut self) -> Result<Vec<u8>, Self::Error>;
    /// The column just read holds a value this build does not know (`what`, for errors).
    fn unknown(&self, what: &str) -> Self::Error;
}

/// A record's reader, as a store's lookups take it.
pub(super) type Reader<T, E> = fn(&mut dyn Columns<Error = E>) -> Result<T, E>;

/// Reads `columns!(client)`.
pub(super) fn client<E>(c: &mut dyn Columns<Error = E>) -> Result<ClientRecord, E> {
    Ok(ClientRecord {
        id: c.text()?,
        secret_hash: c.optional_text()?.map(TokenHash),
        auth_method: ClientAuthMethod::from_name(&c.text()?)
            .ok_or_else(|| c.unknown("token_endpoint_auth_method"))?,
        name: c.optional_text()?,
        redirect_uris: c.list()?,
        grant_types: c.list()?,
        registered_by: registered_by_from_name(&c.text()?)
            .ok_or_else(|| c.unknown("registered_by"))?,
        created_at: c.time()?,
    })
}

/// Reads `columns!(api_key)`.
pub(super) fn api_key<E>(c: &mut dyn Columns<Error = E>) -> Result<ApiKeyRecord, E> {
    Ok(ApiKeyRecord {
        hash: TokenHash(c.text()?),
        permissions: c.list()?,
        created_at: c.time()?,
    })
}

/// Reads `columns!(grant)`.
pub(super) fn grant<E>(c: &mut dyn Columns<Error = E>) -> Result<GrantRecord, E> {
    Ok(GrantRecord {
        id: c.text()?,
        user: c.text()?,
        client_id: c.text()?,
        scope: c.text()?,
        created_at: c.time()?,
        revoked_at: c.optional_time()?,
        resource: c.list()?,
    })
}

/// Reads `columns!(code)`.
pub(super) fn code<E>(c: &mut dyn Columns<Error = E>) -> Result<CodeRecord, E> {
    Ok(CodeRecord {
        hash: TokenHash(c.text()?),
        user: c.text()?,
        client_id: c.text()?,
        redirect_uri: c.text()?,
        code_challenge: c.optional_text()?,
        scope: c.text()?,
        expires_at: c.time()?,
        failed_attempts: c.count()?,
        grant_id: c.optional_text()?,
        resource: c.list()?,
    })
}

/// Reads `columns!(refresh)`.
pub(super) fn refresh<E>(c: &mut dyn Columns<Error = E>) -> Result<RefreshRecord, E> {
    Ok(RefreshRecord {
        hash: TokenHash(c.text()?),
        grant_id: c.text()?,
        expires_at: c.time()?,
        spent_at: c.optional_time()?,
    })
}

/// Reads `columns!(device)`.
pub(super) fn device<E>(c: &mut dyn Columns<Error = E>) -> Result<DeviceRecord, E> {
    Ok(DeviceRecord {
        device_hash: TokenHash(c.text()?),
        user_code: c.text()?,
        client_id: c.text()?,
        scope: c.text()?,
        expires_at: c.time()?,
        interval: c.count()?,
        last_poll: c.optional_time()?,
        status: {
            let user = c.optional_text()?;
            status_from_columns(&c.text()?, user).ok_or_else(|| c.unknown("device status"))?
        },
        resource: c.list()?,
    })
}

/// Reads `columns!(signing_key)`.
pub(super) fn signing_key<E>(c: &mut dyn Columns<Error = E>) -> Result<KeyRecord, E> {
    Ok(KeyRecord {
        kid: c.text()?,
        algorithm: c.text()?,
        private_pkcs8: c.bytes()?,
        created_at: c.time()?,
        retired_at: c.optional_time()?,
    })
}

/// The `registered_by` column.
pub(super) fn registered_by_name(by: RegisteredBy) -> &'static str {
    match by {
        RegisteredBy::Admin => "admin",
        RegisteredBy::ApiKey => "api_key",
        RegisteredBy::Anonymous => "anonymous",
    }
}

fn registered_by_from_name(name: &str) -> Option<RegisteredBy> {
    match name {
        "admin" => Some(RegisteredBy::Admin),
        "api_key" => Some(RegisteredBy::ApiKey),
        "anonymous" => Some(RegisteredBy::Anonymous),
        _ => None,
    }
}

/// The `status` and `"user"` columns of a device authorization.
pub(super) fn status_columns(status: &DeviceStatus) -> (&'static str, Option<&str>) {
    match status {
        DeviceStatus::Pending => ("pending", None),
        DeviceStatus::Approved { user } => ("approved", Some(user)),
        DeviceStatus::Denied => ("denied", None),
        DeviceStatus::Finished => ("finished", None),
    }
}

fn status_from_columns(status: &str, user: Option<String>) -> Option<DeviceStatus> {
    match (status, user) {
        ("pending", _) => Some(DeviceStatus::Pending),
        ("approved", Some(user)) => Some(DeviceStatus::Approved { user }),
        ("denied", _) => Some(DeviceStatus::Denied),
        // The user who approved stays in the row; the status no longer carries it.
        ("finished", _) => Some(DeviceStatus::Finished),
        _ => None,
    }
}

/// A record whose unique key may be taken already.
pub(super) trait Unique {
    /// The [`StoreError::Conflict`] for a row with this record's key that exists already:
    /// the words every store uses, naming no secret (a hash by its short tag).
    fn conflict(&self) -> StoreError;
}

impl Unique for ClientRecord {
    fn conflict(&self) -> StoreError {
        StoreError::Conflict(format!("client {}", self.id))
    }
}

impl Unique for ApiKeyRecord {
    fn conflict(&self) -> StoreError {
        StoreError::Conflict(format!("API key {:?}", self.hash))
    }
}

impl Unique for GrantRecord {
    fn conflict(&self) -> StoreError {
        StoreError::Conflict(format!("grant {}", self.id))
    }
}

impl Unique for CodeRecord {
    fn conflict(&self) -> StoreError {
        StoreError::Conflict(format!("code {:?}", self.hash))
    }
}

impl Unique for RefreshRecord {
    fn conflict(&self) -> StoreError {
        StoreError::Conflict(format!("refresh token {:?}", self.hash))
    }
}

impl Unique for DeviceRecord {
    /// The user code is what a person types to approve: not echoed.
    fn conflict(&self) -> StoreError {
        StoreError::Conflict("device authorization with this user code or device code".into())
    }
}

impl Unique for KeyRecord {
    fn conflict(&self) -> StoreError {
        StoreError::Conflict(format!("signing key {}", self.kid))
    }
}
