//! Who a client is: a registered one from the store, or an unregistered id (a public client
//! held to PKCE and native redirects), and how it authenticates at the token, device,
//! introspection and revocation endpoints.

use secrecy::ExposeSecret as _;

use crate::error::{ErrorCode, OAuthError};
use crate::model::{ClientCredentials, ClientDisplay, CredentialsVia};
use crate::redirect;
use crate::server::AuthServer;
use crate::store::{ClientAuthMethod, ClientRecord, RegisteredBy, StoreError};
use crate::tokens;
use crate::DEVICE_CODE_GRANT;

/// The authorization code grant type.
pub(crate) const AUTHORIZATION_CODE: &str = "authorization_code";
/// The refresh token grant type.
pub(crate) const REFRESH_TOKEN: &str = "refresh_token";
/// Every grant type this server implements.
pub(crate) const GRANT_TYPES: [&str; 3] = [AUTHORIZATION_CODE, REFRESH_TOKEN, DEVICE_CODE_GRANT];

/// Longest client id accepted.
const MAX_CLIENT_ID: usize = 200;

/// A client, as far as the server knows it.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    /// In the store.
    Registered(ClientRecord),
    /// Not in the store: a public client that named itself.
    Unregistered(String),
}

impl Client {
    /// The client id.
    pub(crate) fn id(&self) -> &str {
        match self {
            Client::Registered(record) => &record.id,
            Client::Unregistered(id) => id,
        }
    }

    /// Whether it has no secret (PKCE is then its only proof).
    pub(crate) fn is_public(&self) -> bool {
        match self {
            Client::Registered(record) => record.auth_method == ClientAuthMethod::None,
            Client::Unregistered(_) => true,
        }
    }

    /// Whether it may use `grant_type`. Unregistered clients may use every implemented
    /// grant; the redirect and PKCE rules are what hold them back.
    pub(crate) fn allows(&self, grant_type: &str) -> bool {
        match self {
            Client::Registered(record) => record.grant_types.iter().any(|g| g == grant_type),
            Client::Unregistered(_) => GRANT_TYPES.contains(&grant_type),
        }
    }

    /// What the pages show about it.
    pub(crate) fn display(&self, redirect_uri: Option<&str>) -> ClientDisplay {
        let (name, verified) = match self {
            Client::Registered(record) => (
                record.name.clone(),
                record.registered_by == RegisteredBy::Admin,
            ),
            Client::Unregistered(_) => (None, false),
        };
        ClientDisplay {
            id: self.id().to_owned(),
            name,
            verified,
            redirect_host: redirect_uri.and_then(redirect::display_host),
        }
    }
}

/// RFC 6749 appendix A.1 (`client-id = *VSCHAR`), 1 to 200 of them.
pub(crate) fn is_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID).contains(&id.len()) && id.bytes().all(|c| (0x20..=0x7e).contains(&c))
}

/// `client_name`: at most 100 characters, none of them control characters.
pub(crate) fn check_client_name(name: &str) -> Result<(), OAuthError> {
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "client_name must be 1 to 100 printable characters",
        ));
    }
    Ok(())
}

fn client_failed(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, description)
}

impl AuthServer {
    /// The client with this id, registered or not; `None` when the id is malformed.
    pub(crate) fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        if !is_client_id(id) {
            return Ok(None);
        }
        Ok(Some(match self.store.client(id)? {
            Some(record) => Client::Registered(record),
            None => Client::Unregistered(id.to_owned()),
        }))
    }

    /// Whether `user` may authorize an unregistered client: anyone unless registration is
    /// required, then only the override users.
    pub(crate) fn may_authorize_unregistered(&self, user: &str) -> bool {
        !self.settings.client_registration.require
            || self
                .settings
                .client_override_users
                .iter()
                .any(|u| u == user)
    }

    /// Authenticates the caller of the token, device, introspection or revocation endpoint.
    ///
    /// A confidential client must use its registered method (Basic or post) with the right
    /// secret; a public or unregistered one sends only its `client_id` and must not send a
    /// secret (a secret it does not have means a confused or lying caller).
    pub(crate) fn authenticate(&self, caller: &ClientCredentials) -> Result<Client, OAuthError> {
        let Some(id) = caller.client_id.as_deref() else {
            return Err(client_failed("client authentication is required"));
        };
        let Some(client) = self.find_client(id)? else {
            return Err(client_failed("malformed client_id"));
        };
        let secret = caller.secret.as_ref().map(|s| s.expose_secret());
        let Client::Registered(record) = &client else {
            if secret.is_some() {
                return Err(client_failed("this client has no secret"));
            }
            return Ok(client);
        };
        let expected_via = match record.auth_method {
            ClientAuthMethod::None => {
                if secret.is_some() {
                    return Err(client_failed("this client has no secret"));
                }
                return Ok(client);
            }
            ClientAuthMethod::ClientSecretBasic => CredentialsVia::Basic,
            ClientAuthMethod::ClientSecretPost => CredentialsVia::Post,
        };
        let authenticated = match (secret, &record.secret_hash) {
            (Some(secret), Some(stored)) => {
                // Hash comparison first, then the method: no early return on the secret.
                tokens::matches(secret, stored) & (caller.via == expected_via)
            }
            _ => false,
        };
        if !authenticated {
            return Err(client_failed("client authentication failed"));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_1_to_200_vschars() {
        assert!(is_client_id("thunderbird"));
        assert!(is_client_id("a b~"));
        assert!(is_client_id(&"x".repeat(200)));
        assert!(!is_client_id(""));
        assert!(!is_client_id(&"x".repeat(201)));
        assert!(!is_client_id("tab\there"));
        assert!(!is_client_id("é"));
    }

    #[test]
    fn client_names_are_short_and_printable() {
        assert!(check_client_name("Mail für Alice").is_ok());
        assert!(check_client_name("").is_err());
        assert!(check_client_name(&"n".repeat(101)).is_err());
        assert!(check_client_name("bad\nname").is_err());
    }
}
