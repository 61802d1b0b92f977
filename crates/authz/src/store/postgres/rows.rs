//! Rows to records: each reader takes the columns in the order of its list in `sql`, and
//! the text forms of the enums (the same words as the SQLite store's). A value this build
//! cannot read is an error naming the column, never a panic and never the value.

use postgres::Row;

use crate::store::{
    ApiKeyRecord, ClientAuthMethod, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus,
    GrantRecord, KeyRecord, RefreshRecord, RegisteredBy, StoreError, TokenHash,
};

type Read<T> = Result<T, StoreError>;

/// Column `idx` of `row`, as `T`.
fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> Read<T> {
    row.try_get(idx).map_err(|e| {
        let name = row.columns().get(idx).map_or("?", |c| c.name());
        StoreError::Database(format!("reading column {name}: {e}"))
    })
}

/// A counter column (`BIGINT`) as the record's `u32`.
fn count(row: &Row, idx: usize) -> Read<u32> {
    let value: i64 = get(row, idx)?;
    u32::try_from(value).map_err(|_| unknown(row, idx))
}

fn unknown(row: &Row, idx: usize) -> StoreError {
    let name = row.columns().get(idx).map_or("?", |c| c.name());
    StoreError::Database(format!(
        "column {name} holds a value this program does not know"
    ))
}

pub(super) fn client(row: &Row) -> Read<ClientRecord> {
    let auth_method: String = get(row, 2)?;
    let registered_by: String = get(row, 6)?;
    Ok(ClientRecord {
        id: get(row, 0)?,
        secret_hash: get::<Option<String>>(row, 1)?.map(TokenHash),
        auth_method: ClientAuthMethod::from_name(&auth_method).ok_or_else(|| unknown(row, 2))?,
        name: get(row, 3)?,
        redirect_uris: get(row, 4)?,
        grant_types: get(row, 5)?,
        registered_by: registered_by_from_name(&registered_by).ok_or_else(|| unknown(row, 6))?,
        created_at: get(row, 7)?,
    })
}

pub(super) fn api_key(row: &Row) -> Read<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        hash: TokenHash(get(row, 0)?),
        permissions: get(row, 1)?,
        created_at: get(row, 2)?,
    })
}

pub(super) fn grant(row: &Row) -> Read<GrantRecord> {
    Ok(GrantRecord {
        id: get(row, 0)?,
        user: get(row, 1)?,
        client_id: get(row, 2)?,
        scope: get(row, 3)?,
        created_at: get(row, 4)?,
        revoked_at: get(row, 5)?,
        resource: get(row, 6)?,
    })
}

pub(super) fn code(row: &Row) -> Read<CodeRecord> {
    Ok(CodeRecord {
        hash: TokenHash(get(row, 0)?),
        user: get(row, 1)?,
        client_id: get(row, 2)?,
        redirect_uri: get(row, 3)?,
        code_challenge: get(row, 4)?,
        scope: get(row, 5)?,
        expires_at: get(row, 6)?,
        failed_attempts: count(row, 7)?,
        grant_id: get(row, 8)?,
        resource: get(row, 9)?,
    })
}

pub(super) fn refresh(row: &Row) -> Read<RefreshRecord> {
    Ok(RefreshRecord {
        hash: TokenHash(get(row, 0)?),
        grant_id: get(row, 1)?,
        expires_at: get(row, 2)?,
        spent_at: get(row, 3)?,
    })
}

pub(super) fn device(row: &Row) -> Read<DeviceRecord> {
    let status: String = get(row, 7)?;
    let user: Option<String> = get(row, 8)?;
    Ok(DeviceRecord {
        device_hash: TokenHash(get(row, 0)?),
        user_code: get(row, 1)?,
        client_id: get(row, 2)?,
        scope: get(row, 3)?,
        expires_at: get(row, 4)?,
        interval: count(row, 5)?,
        last_poll: get(row, 6)?,
        status: status_from_columns(&status, user).ok_or_else(|| unknown(row, 7))?,
        resource: get(row, 9)?,
    })
}

pub(super) fn signing_key(row: &Row) -> Read<KeyRecord> {
    Ok(KeyRecord {
        kid: get(row, 0)?,
        algorithm: get(row, 1)?,
        private_pkcs8: get(row, 2)?,
        created_at: get(row, 3)?,
        retired_at: get(row, 4)?,
    })
}

/// A single-column answer (a scope, a counter, a secret, a flag).
pub(super) fn first<T: for<'a> postgres::types::FromSql<'a>>(row: &Row) -> Read<T> {
    get(row, 0)
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
