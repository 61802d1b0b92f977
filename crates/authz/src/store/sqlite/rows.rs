//! Records to columns and back: the column lists every `SELECT` uses, the text forms of the
//! enums, and the JSON lists. Kept apart from the statements so that a column added in a
//! migration changes one reader here.

use rusqlite::types::Type;
use rusqlite::Row;

use crate::store::{
    ApiKeyRecord, ClientAuthMethod, ClientRecord, CodeRecord, DeviceRecord, DeviceStatus,
    GrantRecord, KeyRecord, RefreshRecord, RegisteredBy, StoreError, TokenHash,
};

/// Columns read by [`client`].
pub(super) const CLIENT: &str = "id, secret_hash, auth_method, name, redirect_uris, \
                                 grant_types, registered_by, created_at";
/// Columns read by [`api_key`].
pub(super) const API_KEY: &str = "hash, permissions, created_at";
/// Columns read by [`grant`].
pub(super) const GRANT: &str = "id, user, client_id, scope, created_at, revoked_at, resource";
/// Columns read by [`code`].
pub(super) const CODE: &str = "hash, user, client_id, redirect_uri, code_challenge, scope, \
                               expires_at, failed_attempts, grant_id, resource";
/// Columns read by [`refresh`].
pub(super) const REFRESH: &str = "hash, grant_id, expires_at, spent_at";
/// Columns read by [`device`].
pub(super) const DEVICE: &str = "device_hash, user_code, client_id, scope, expires_at, \
                                 poll_interval, last_poll, status, user, resource";
/// Columns read by [`signing_key`].
pub(super) const SIGNING_KEY: &str = "kid, algorithm, private_pkcs8, created_at, retired_at";

pub(super) fn client(row: &Row<'_>) -> rusqlite::Result<ClientRecord> {
    let auth_method: String = row.get(2)?;
    let registered_by: String = row.get(6)?;
    Ok(ClientRecord {
        id: row.get(0)?,
        secret_hash: row.get::<_, Option<String>>(1)?.map(TokenHash),
        auth_method: ClientAuthMethod::from_name(&auth_method)
            .ok_or_else(|| unknown(2, "token_endpoint_auth_method"))?,
        name: row.get(3)?,
        redirect_uris: list(row, 4)?,
        grant_types: list(row, 5)?,
        registered_by: registered_by_from_name(&registered_by)
            .ok_or_else(|| unknown(6, "registered_by"))?,
        created_at: row.get(7)?,
    })
}

pub(super) fn api_key(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        hash: TokenHash(row.get(0)?),
        permissions: list(row, 1)?,
        created_at: row.get(2)?,
    })
}

pub(super) fn grant(row: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    Ok(GrantRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        client_id: row.get(2)?,
        scope: row.get(3)?,
        created_at: row.get(4)?,
        revoked_at: row.get(5)?,
        resource: list(row, 6)?,
    })
}

pub(super) fn code(row: &Row<'_>) -> rusqlite::Result<CodeRecord> {
    Ok(CodeRecord {
        hash: TokenHash(row.get(0)?),
        user: row.get(1)?,
        client_id: row.get(2)?,
        redirect_uri: row.get(3)?,
        code_challenge: row.get(4)?,
        scope: row.get(5)?,
        expires_at: row.get(6)?,
        failed_attempts: row.get(7)?,
        grant_id: row.get(8)?,
        resource: list(row, 9)?,
    })
}

pub(super) fn refresh(row: &Row<'_>) -> rusqlite::Result<RefreshRecord> {
    Ok(RefreshRecord {
        hash: TokenHash(row.get(0)?),
        grant_id: row.get(1)?,
        expires_at: row.get(2)?,
        spent_at: row.get(3)?,
    })
}

pub(super) fn device(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let status: String = row.get(7)?;
    let user: Option<String> = row.get(8)?;
    Ok(DeviceRecord {
        device_hash: TokenHash(row.get(0)?),
        user_code: row.get(1)?,
        client_id: row.get(2)?,
        scope: row.get(3)?,
        expires_at: row.get(4)?,
        interval: row.get(5)?,
        last_poll: row.get(6)?,
        status: status_from_columns(&status, user).ok_or_else(|| unknown(7, "device status"))?,
        resource: list(row, 9)?,
    })
}

pub(super) fn signing_key(row: &Row<'_>) -> rusqlite::Result<KeyRecord> {
    Ok(KeyRecord {
        kid: row.get(0)?,
        algorithm: row.get(1)?,
        private_pkcs8: row.get(2)?,
        created_at: row.get(3)?,
        retired_at: row.get(4)?,
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

/// The `status` and `user` columns of a device authorization.
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

/// A list column's text: a JSON array of strings.
pub(super) fn list_text(items: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(items).map_err(|e| StoreError::Database(format!("encode list: {e}")))
}

fn list(row: &Row<'_>, idx: usize) -> rusqlite::Result<Vec<String>> {
    let text: String = row.get(idx)?;
    // serde_json's message names a position, never the text.
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

/// A text column holding a value this build does not know (the value is not echoed).
fn unknown(idx: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, format!("unknown {what}").into())
}
