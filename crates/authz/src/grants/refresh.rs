//! The refresh token grant (RFC 6749 §6) with rotation: every use spends the token and
//! issues its successor; presenting a spent one means it was copied, so the whole family
//! (the grant) is revoked (RFC 9700 §4.14.2). Scope and RFC 8707 resources are the grant's,
//! or narrower when the request says so; never wider.

use super::{invalid_grant, missing};
use crate::clients::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::model::{TokenRequest, TokenResponse};
use crate::resource;
use crate::scope::Scopes;
use crate::server::AuthServer;
use crate::tokens;

impl AuthServer {
    /// `grant_type=refresh_token`.
    pub(crate) fn refresh_grant(
        &self,
        request: &TokenRequest,
        client: &Client,
    ) -> Result<TokenResponse, OAuthError> {
        let now = (self.clock)();
        let Some(token) = request.refresh_token.as_deref() else {
            return Err(missing("refresh_token"));
        };
        let hash = tokens::hash(token);
        let unusable = "the refresh token is unknown, expired or revoked";
        let Some(record) = self.store.refresh(&hash)? else {
            return Err(invalid_grant(unusable));
        };
        let Some(grant) = self.store.grant(&record.grant_id)? else {
            return Err(invalid_grant(unusable));
        };
        // Another client presenting it learns nothing and ends nothing: it may merely have
        // guessed a public client's id wrong.
        if grant.client_id != client.id() || grant.revoked_at.is_some() {
            return Err(invalid_grant(unusable));
        }
        if record.spent_at.is_some() {
            self.store.revoke_grant(&grant.id, now)?;
            tracing::warn!(client_id = %grant.client_id, "spent refresh token reused; grant revoked");
            return Err(invalid_grant(unusable));
        }
        if now >= record.expires_at {
            return Err(invalid_grant(unusable));
        }
        let granted = Scopes::parse_stored(&grant.scope);
        let scope = match request.scope.as_deref() {
            None => granted,
            Some(asked) => {
                let asked = Scopes::parse(asked)?;
                if asked.is_empty() || !asked.is_subset_of(granted) {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        "the scope must be a subset of the scopes originally granted",
                    ));
                }
                asked
            }
        };
        let resource = resource::narrowed(
            &request.resource,
            &grant.resource,
            &self.settings.mail_resources,
        )?;
        let (successor, successor_record) = self.new_refresh(&grant.id, now)?;
        if !self.store.rotate_refresh(&hash, &successor_record, now)? {
            // Spent between our read and now: a concurrent second use, treated as reuse.
            self.store.revoke_grant(&grant.id, now)?;
            tracing::warn!(client_id = %grant.client_id, "refresh token used twice at once; grant revoked");
            return Err(invalid_grant(unusable));
        }
        self.token_response(&grant, scope, &resource, successor, None, now)
    }
}
