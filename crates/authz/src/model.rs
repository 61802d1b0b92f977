//! What the endpoints hand to the logic and get back: requests as the HTTP layer parsed
//! them (strings, unchecked) and answers ready to serialise.

use secrecy::SecretString;
use serde::Serialize;

/// How the caller of the token, device, introspection or revocation endpoint identified
/// itself, as the HTTP layer found it (HTTP Basic, or `client_id`/`client_secret` in the
/// body). Unchecked.
#[derive(Debug, Clone, Default)]
pub struct ClientCredentials {
    /// The client id, from Basic or the body.
    pub client_id: Option<String>,
    /// The secret, from Basic or the body.
    pub secret: Option<SecretString>,
    /// Which way the secret came.
    pub via: CredentialsVia,
}

/// Where client credentials came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CredentialsVia {
    /// Only a `client_id` in the body, or nothing.
    #[default]
    None,
    /// The `Authorization: Basic` header.
    Basic,
    /// `client_secret` in the form body.
    Post,
}

/// The authorization endpoint's query (or form) parameters, unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct AuthorizationRequest {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// Where the code goes.
    pub redirect_uri: Option<String>,
    /// Requested scopes.
    pub scope: Option<String>,
    /// Opaque client state, returned as is.
    pub state: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// PKCE method: only `S256` is accepted.
    pub code_challenge_method: Option<String>,
    /// OpenID nonce, copied into the ID token.
    pub nonce: Option<String>,
    /// `query` only (the default).
    pub response_mode: Option<String>,
    /// RFC 8707 `resource` parameters (repeatable): the mail services the token is for.
    #[serde(default)]
    pub resource: Vec<String>,
}

/// An authorization request that passed every check, waiting for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAuthorization {
    /// The client.
    pub client_id: String,
    /// The exact redirect URI.
    pub redirect_uri: String,
    /// Scopes to grant, normalised (known scopes, space-separated, in a stable order).
    pub scope: String,
    /// The client's state.
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// OpenID nonce.
    pub nonce: Option<String>,
    /// RFC 8707 resources to grant, normalised (`imap://host`, …); empty when none asked.
    pub resource: Vec<String>,
    /// What the pages show about the client.
    pub client: ClientDisplay,
}

/// What a person is shown about a client before trusting it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientDisplay {
    /// The client id.
    pub id: String,
    /// Its registered name, if any.
    pub name: Option<String>,
    /// Whether the name was set by the admin; self-registered and unregistered clients'
    /// names are shown as unverified.
    pub verified: bool,
    /// Where the browser goes afterwards (`127.0.0.1`, `com.example.app:` …), if a redirect.
    pub redirect_host: Option<String>,
}

/// The token endpoint's form, unchecked. Its `Debug` redacts the secrets.
#[derive(Clone, Default, serde::Deserialize)]
pub struct TokenRequest {
    /// `authorization_code`, `refresh_token` or the device code URN.
    pub grant_type: Option<String>,
    /// For `authorization_code`.
    pub code: Option<String>,
    /// For `authorization_code`: must equal the authorization request's.
    pub redirect_uri: Option<String>,
    /// For `authorization_code`: the PKCE verifier.
    pub code_verifier: Option<String>,
    /// For `refresh_token`.
    pub refresh_token: Option<String>,
    /// For `refresh_token`: a subset of the grant's scopes.
    pub scope: Option<String>,
    /// For the device grant.
    pub device_code: Option<String>,
    /// RFC 8707 `resource` parameters (repeatable), for every grant: a subset of what was
    /// approved, to narrow this access token's audience.
    #[serde(default)]
    pub resource: Vec<String>,
}

/// A successful token response (RFC 6749 §5.1); sent with `Cache-Control: no-store`. Its
/// `Debug` redacts the tokens.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// The JWT access token.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The new refresh token (rotated on every use).
    pub refresh_token: String,
    /// Granted scopes.
    pub scope: String,
    /// With the `openid` scope: the ID token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// The device authorization endpoint's answer (RFC 8628 §3.2). Its `Debug` redacts the
/// device code.
#[derive(Clone, Serialize)]
pub struct DeviceAuthorizationResponse {
    /// The client's secret handle for polling.
    pub device_code: String,
    /// What the person types, `XXXX-XXXX`.
    pub user_code: String,
    /// Where to type it.
    pub verification_uri: String,
    /// The same with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until both codes die.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u32,
}

/// A device authorization a signed-in person is asked to confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevicePrompt {
    /// The user code, `XXXX-XXXX`.
    pub user_code: String,
    /// The client that asked.
    pub client: ClientDisplay,
    /// Requested scopes.
    pub scope: String,
    /// Requested RFC 8707 resources (empty when none).
    pub resource: Vec<String>,
}

/// What the in-process check of an access token found (the proxy's built-in validator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// The mail user (`sub`).
    pub user: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// The grant it came from (checked for revocation).
    pub grant_id: String,
    /// Its `aud`: the RFC 8707 resources it is for (`imap://host`, …), or the issuer when
    /// it was asked for none.
    pub audiences: Vec<String>,
}

/// Why an access token was refused by the in-process check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not a JWT of this issuer, or its signature does not verify.
    #[error("not a token of this issuer")]
    NotOurs,
    /// Past `exp`.
    #[error("expired")]
    Expired,
    /// Its grant was revoked (or its client removed).
    #[error("revoked")]
    Revoked,
    /// The store could not say (our fault; try later).
    #[error("store unavailable")]
    Unavailable,
}

/// What `Debug` shows for a secret: whether there is one, never its value.
fn redacted<T>(value: &Option<T>) -> &'static str {
    if value.is_some() {
        "Some([redacted])"
    } else {
        "None"
    }
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("code", &redacted(&self.code))
            .field("redirect_uri", &self.redirect_uri)
            .field("code_verifier", &redacted(&self.code_verifier))
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("scope", &self.scope)
            .field("device_code", &redacted(&self.device_code))
            .field("resource", &self.resource)
            .finish()
    }
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &"[redacted]")
            .field("scope", &self.scope)
            .field("id_token", &redacted(&self.id_token))
            .finish()
    }
}

impl std::fmt::Debug for DeviceAuthorizationResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorizationResponse")
            .field("device_code", &"[redacted]")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let request = TokenRequest {
            grant_type: Some("refresh_token".into()),
            code: Some("code-secret".into()),
            code_verifier: Some("verifier-secret".into()),
            refresh_token: Some("refresh-secret".into()),
            device_code: Some("device-secret".into()),
            ..TokenRequest::default()
        };
        let response = TokenResponse {
            access_token: "access-secret".into(),
            token_type: "Bearer",
            expires_in: 3_600,
            refresh_token: "refresh-secret".into(),
            scope: "openid".into(),
            id_token: Some("id-secret".into()),
        };
        let device = DeviceAuthorizationResponse {
            device_code: "device-secret".into(),
            user_code: "BCDF-GHJK".into(),
            verification_uri: "https://x/auth/device/verify".into(),
            verification_uri_complete: "https://x/auth/device/verify?user_code=BCDF-GHJK".into(),
            expires_in: 1_800,
            interval: 5,
        };
        let caller = ClientCredentials {
            client_id: Some("app".into()),
            secret: Some(SecretString::from("hunter2-xyzzy")),
            via: CredentialsVia::Basic,
        };
        let caller = format!("{caller:?}");
        assert!(
            !caller.contains("hunter2") && caller.contains("app"),
            "{caller}"
        );
        let shown = format!("{request:?} {response:?} {device:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("refresh_token") && shown.contains("BCDF-GHJK"),
            "{shown}"
        );
    }
}
