//! The admin's command line for the built-in authorization server: clients registered by
//! hand and API keys for RFC 7591 registration. Each command opens the same store the
//! running server uses (SQLite in WAL mode takes both at once; with `[issuer] store`, the
//! PostgreSQL database every instance shares, so a client added once is known to all at
//! once) and prints what it did. The commands run before any async runtime exists; the
//! PostgreSQL store would be safe inside one too (its connections have threads of their own).

use std::fmt::Write as _;
use std::path::Path;

use authz::store::{ClientRecord, RegisteredBy};

use crate::config::Config;

/// Why an admin command failed: the message is for the terminal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AdminError(String);

fn open(config: &Config, base: &Path) -> Result<std::sync::Arc<authz::AuthServer>, AdminError> {
    let settings = config.issuer.as_ref().ok_or_else(|| {
        AdminError("the configuration has no [issuer] table: there is no store to manage".into())
    })?;
    crate::issuer::open(settings, base).map_err(|e| AdminError(e.to_string()))
}

/// `clients add`: registers a client; the output names it and, for a confidential client,
/// shows its secret once.
pub fn add_client(
    config: &Config,
    base: &Path,
    id: &str,
    redirect_uris: &[String],
    name: Option<&str>,
    confidential: bool,
) -> Result<String, AdminError> {
    let server = open(config, base)?;
    let secret = server
        .add_client(id, redirect_uris, name, confidential)
        .map_err(|e| AdminError(format!("cannot add client {id:?}: {}", e.description)))?;
    let mut out = format!("client {id} added\n");
    if let Some(secret) = secret {
        let _ = writeln!(out, "client_secret: {secret}");
        out.push_str("(shown only now: store it in the client's configuration)\n");
    }
    Ok(out)
}

/// `clients list`: one line per client.
pub fn list_clients(config: &Config, base: &Path) -> Result<String, AdminError> {
    let server = open(config, base)?;
    let clients = server
        .clients()
        .map_err(|e| AdminError(format!("cannot list clients: {e}")))?;
    if clients.is_empty() {
        return Ok("no registered clients\n".to_owned());
    }
    Ok(clients.iter().map(describe).collect())
}

fn describe(client: &ClientRecord) -> String {
    let by = match client.registered_by {
        RegisteredBy::Admin => "admin",
        RegisteredBy::ApiKey => "api-key",
        RegisteredBy::Anonymous => "anonymous",
    };
    format!(
        "{}\t{}\t{}\tregistered-by={}\tredirect-uris={}\n",
        client.id,
        client.name.as_deref().unwrap_or("-"),
        client.auth_method.name(),
        by,
        client.redirect_uris.join(","),
    )
}

/// `clients remove`: removes a client and revokes every grant it holds.
pub fn remove_client(config: &Config, base: &Path, id: &str) -> Result<String, AdminError> {
    let server = open(config, base)?;
    match server.remove_client(id) {
        // A self-registered id is its own registration: nothing stored to delete.
        Ok(true) if authz::is_self_contained_client_id(id) => Ok(format!(
            "the grants of client {id} are revoked; a self-registered client id carries its \
             own registration and stays usable while [issuer.client_registration] \
             open_native is on\n"
        )),
        Ok(true) => Ok(format!("client {id} removed; its grants are revoked\n")),
        Ok(false) => Err(AdminError(format!("no client {id:?}"))),
        Err(e) => Err(AdminError(format!("cannot remove client {id:?}: {e}"))),
    }
}

/// `api-keys create`: a new key with `permissions`, shown once.
pub fn create_api_key(
    config: &Config,
    base: &Path,
    permissions: &[String],
) -> Result<String, AdminError> {
    for permission in permissions {
        if permission != authz::store::PERMISSION_CLIENT_REGISTRATION {
            return Err(AdminError(format!(
                "unknown permission {permission:?}; known: {}",
                authz::store::PERMISSION_CLIENT_REGISTRATION
            )));
        }
    }
    if permissions.is_empty() {
        return Err(AdminError("give at least one --permission".into()));
    }
    let server = open(config, base)?;
    let key = server
        .create_api_key(permissions)
        .map_err(|e| AdminError(format!("cannot create the key: {e}")))?;
    Ok(format!(
        "{key}\n(shown only now; send it as \"Authorization: Bearer KEY\" to the registration endpoint)\n"
    ))
}
