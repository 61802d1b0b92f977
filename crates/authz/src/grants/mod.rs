//! The token endpoint and the three grants it serves: authorization code (with the
//! authorization endpoint's steps before it), refresh token and device code.

pub(crate) mod code;
pub(crate) mod device;
pub(crate) mod refresh;
#[cfg(test)]
mod tests;

use crate::clients::{AUTHORIZATION_CODE, REFRESH_TOKEN};
use crate::error::{ErrorCode, OAuthError};
use crate::model::{ClientCredentials, TokenRequest, TokenResponse};
use crate::scope::{Scopes, OPENID};
use crate::server::AuthServer;
use crate::store::{GrantRecord, RefreshRecord, StoreError, UnixTime};
use crate::tokens;
use crate::DEVICE_CODE_GRANT;

/// `invalid_grant` with a description.
pub(crate) fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, description)
}

/// `invalid_request` naming a missing parameter.
pub(crate) fn missing(parameter: &str) -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidRequest,
        format!("{parameter} is required"),
    )
}

impl AuthServer {
    /// The token endpoint: picks the grant, authenticates the client, checks it may use it.
    pub(crate) fn token_endpoint(
        &self,
        request: &TokenRequest,
        caller: &ClientCredentials,
    ) -> Result<TokenResponse, OAuthError> {
        let Some(grant_type) = request.grant_type.as_deref() else {
            return Err(missing("grant_type"));
        };
        // Implicit, password and client credentials are deliberately absent (RFC 9700 §2.4).
        if ![AUTHORIZATION_CODE, REFRESH_TOKEN, DEVICE_CODE_GRANT].contains(&grant_type) {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "supported grant types: authorization_code, refresh_token, device_code",
            ));
        }
        let client = self.authenticate(caller)?;
        if !client.allows(grant_type) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for this grant type",
            ));
        }
        match grant_type {
            AUTHORIZATION_CODE => self.redeem_code(request, &client),
            REFRESH_TOKEN => self.refresh_grant(request, &client),
            _ => self.device_grant(request, &client),
        }
    }

    /// Makes a grant for `user` and `client_id` with the approved `scope` and `resource`
    /// (not yet stored).
    pub(crate) fn new_grant(
        &self,
        user: &str,
        client_id: &str,
        scope: &str,
        resource: &[String],
        now: UnixTime,
    ) -> Result<GrantRecord, StoreError> {
        Ok(GrantRecord {
            id: tokens::random_id(&self.rng)?,
            user: user.to_owned(),
            client_id: client_id.to_owned(),
            scope: scope.to_owned(),
            resource: resource.to_vec(),
            created_at: now,
            revoked_at: None,
        })
    }

    /// A new refresh token of `grant_id`'s family: the token, and its record to store.
    pub(crate) fn new_refresh(
        &self,
        grant_id: &str,
        now: UnixTime,
    ) -> Result<(String, RefreshRecord), StoreError> {
        let token = tokens::prefixed_secret(&self.rng, tokens::REFRESH_PREFIX)?;
        let lifetime = UnixTime::try_from(self.settings.refresh_token_lifetime.as_secs())
            .unwrap_or(UnixTime::MAX);
        let record = RefreshRecord {
            hash: tokens::hash(&token),
            grant_id: grant_id.to_owned(),
            expires_at: now.saturating_add(lifetime),
            spent_at: None,
        };
        Ok((token, record))
    }

    /// The access token (and ID token, with `openid`) for a stored grant and the refresh
    /// token already stored for it; the access token is for `resource` (RFC 8707).
    pub(crate) fn token_response(
        &self,
        grant: &GrantRecord,
        scope: Scopes,
        resource: &[String],
        refresh_token: String,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let scope_string = scope.to_scope_string();
        let access_scope = scope.for_access_token().to_scope_string();
        let access_token = self.mint_access_token(grant, &access_scope, resource, now)?;
        let id_token = if scope.contains(OPENID) {
            Some(self.mint_id_token(grant, nonce, now)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.settings.access_token_lifetime.as_secs(),
            refresh_token,
            scope: scope_string,
            id_token,
        })
    }

    /// Stores a new grant with its first refresh token and answers with tokens for
    /// `resource` (the grant's, or what the token request narrowed it to): the end of the
    /// code and device grants.
    pub(crate) fn start_grant(
        &self,
        grant: &GrantRecord,
        resource: &[String],
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<TokenResponse, OAuthError> {
        let (refresh_token, record) = self.new_refresh(&grant.id, now)?;
        self.store.insert_refresh(&record)?;
        let scope = Scopes::parse_stored(&grant.scope);
        self.token_response(grant, scope, resource, refresh_token, nonce, now)
    }
}
