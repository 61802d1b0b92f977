//! The authorization code grant: the authorization request's checks, consent, the code, and
//! its redemption at the token endpoint (RFC 6749 §4.1, RFC 7636, RFC 9207, RFC 9700).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::{invalid_grant, missing};
use crate::clients::{Client, AUTHORIZATION_CODE};
use crate::error::{AuthorizeError, ErrorCode, OAuthError};
use crate::model::{AuthorizationRequest, PendingAuthorization, TokenRequest, TokenResponse};
use crate::redirect::{self, RedirectKind};
use crate::resource;
use crate::scope::Scopes;
use crate::server::AuthServer;
use crate::store::{CodeRecord, StoreError, UnixTime};
use crate::{pkce, tokens};

/// Longest OpenID `nonce` kept (it is stored with the code and copied into the ID token).
const MAX_NONCE: usize = 1_024;

/// Marks the nonce inside a code's stored `scope` (see [`encode_scope`]).
const NONCE_MARK: &str = " nonce:";

/// The code's `scope` column carries the OpenID nonce too, so that the store schema needs no
/// column for it: `"<scopes> nonce:<base64url(nonce)>"`. Scope words never contain `:`
/// after `nonce`, and base64url has no space, so the split is unambiguous.
fn encode_scope(scope: Scopes, nonce: Option<&str>) -> String {
    match nonce {
        Some(nonce) => format!(
            "{}{NONCE_MARK}{}",
            scope.to_scope_string(),
            URL_SAFE_NO_PAD.encode(nonce)
        ),
        None => scope.to_scope_string(),
    }
}

/// The scopes and nonce of a code's stored `scope`.
fn decode_scope(stored: &str) -> (Scopes, Option<String>) {
    match stored.rsplit_once(NONCE_MARK) {
        Some((scope, nonce)) => {
            let nonce = URL_SAFE_NO_PAD
                .decode(nonce)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            (Scopes::parse_stored(scope), nonce)
        }
        None => (Scopes::parse_stored(stored), None),
    }
}

fn page(code: ErrorCode, description: &str) -> AuthorizeError {
    AuthorizeError::Page(OAuthError::new(code, description))
}

impl AuthServer {
    /// The client and the redirect URI to use, or a page error: nothing is redirected to
    /// before both are trusted (RFC 6749 §4.1.2.1).
    fn trusted_redirect(
        &self,
        client_id: Option<&str>,
        redirect_uri: Option<&str>,
    ) -> Result<(Client, String), AuthorizeError> {
        let Some(id) = client_id else {
            return Err(page(ErrorCode::InvalidRequest, "client_id is required"));
        };
        let Some(client) = self.find_client(id)? else {
            return Err(page(ErrorCode::InvalidRequest, "malformed client_id"));
        };
        let uri = match &client {
            Client::Registered(record) => {
                redirect::match_registered(&record.redirect_uris, redirect_uri).ok_or_else(
                    || {
                        page(
                            ErrorCode::InvalidRequest,
                            "redirect_uri is missing or not one registered for this client",
                        )
                    },
                )?
            }
            Client::Unregistered(_) => {
                let Some(uri) =
                    redirect_uri.filter(|uri| redirect::unregistered_redirect(uri).is_some())
                else {
                    return Err(page(
                        ErrorCode::InvalidRequest,
                        "an unregistered client may only redirect to http://127.0.0.1:PORT, \
                         http://[::1]:PORT or a private-use scheme such as com.example.app:/cb",
                    ));
                };
                uri.to_owned()
            }
        };
        Ok((client, uri))
    }

    /// `uri` with the response parameters and `iss` (RFC 9207).
    fn response_url(
        &self,
        uri: &str,
        params: &[(&str, &str)],
        state: Option<&str>,
    ) -> Option<String> {
        let mut all: Vec<(&str, &str)> = params.to_vec();
        if let Some(state) = state {
            all.push(("state", state));
        }
        all.push(("iss", &self.settings.public_url));
        redirect::with_params(uri, &all)
    }

    fn error_redirect(&self, uri: &str, state: Option<&str>, error: &OAuthError) -> AuthorizeError {
        let params = [
            ("error", error.code.name()),
            ("error_description", error.description.as_str()),
        ];
        match self.response_url(uri, &params, state) {
            Some(url) => AuthorizeError::Redirect(url),
            None => AuthorizeError::Page(error.clone()),
        }
    }

    /// The authorization endpoint's checks, before anyone signs in.
    pub(crate) fn check_authorization(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<PendingAuthorization, AuthorizeError> {
        let (client, redirect_uri) = self.trusted_redirect(
            request.client_id.as_deref(),
            request.redirect_uri.as_deref(),
        )?;
        let state = request.state.as_deref();
        let fail = |code: ErrorCode, description: &str| {
            self.error_redirect(&redirect_uri, state, &OAuthError::new(code, description))
        };
        match request.response_type.as_deref() {
            Some("code") => {}
            None => return Err(fail(ErrorCode::InvalidRequest, "response_type is required")),
            Some(_) => {
                return Err(fail(
                    ErrorCode::UnsupportedResponseType,
                    "only response_type=code is supported",
                ))
            }
        }
        if request
            .response_mode
            .as_deref()
            .is_some_and(|mode| mode != "query")
        {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "only response_mode=query is supported",
            ));
        }
        if !client.allows(AUTHORIZATION_CODE) {
            return Err(fail(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the authorization code grant",
            ));
        }
        let scope = Scopes::parse_request(request.scope.as_deref())
            .map_err(|e| self.error_redirect(&redirect_uri, state, &e))?;
        // RFC 8707 §2: an unknown resource is `invalid_target`, sent back to the client.
        let resource = resource::requested(&request.resource, &self.settings.mail_resources)
            .map_err(|e| self.error_redirect(&redirect_uri, state, &e))?;
        let code_challenge = pkce::check_challenge(
            request.code_challenge.as_deref(),
            request.code_challenge_method.as_deref(),
            client.is_public(),
        )
        .map_err(|e| self.error_redirect(&redirect_uri, state, &e))?;
        if request
            .nonce
            .as_deref()
            .is_some_and(|n| n.len() > MAX_NONCE)
        {
            return Err(fail(ErrorCode::InvalidRequest, "nonce is too long"));
        }
        Ok(PendingAuthorization {
            client: client.display(Some(&redirect_uri)),
            client_id: client.id().to_owned(),
            redirect_uri,
            scope: scope.to_scope_string(),
            state: request.state.clone(),
            code_challenge,
            nonce: request.nonce.clone(),
            resource,
        })
    }

    /// Whether a remembered consent may stand in for asking: only for a registered client
    /// whose redirect is https. Anyone can claim an unregistered id, a loopback port or a
    /// private-use scheme, so such a client's identity cannot be assured and the person is
    /// asked every time (RFC 8252 §8.6, RFC 9700 §4.1.1).
    fn is_recognisable(client: &Client, redirect_uri: &str) -> bool {
        matches!(client, Client::Registered(_))
            && redirect::classify(redirect_uri).is_some_and(|(_, kind)| kind == RedirectKind::Https)
    }

    /// Whether `user` must be asked.
    pub(crate) fn consent_needed(
        &self,
        user: &str,
        pending: &PendingAuthorization,
    ) -> Result<bool, StoreError> {
        let Some(client) = self.find_client(&pending.client_id)? else {
            return Ok(true);
        };
        if !Self::is_recognisable(&client, &pending.redirect_uri) {
            return Ok(true);
        }
        let Some(consented) = self.store.consent(user, &pending.client_id)? else {
            return Ok(true);
        };
        let asked = Scopes::parse_stored(&pending.scope);
        Ok(!asked.is_subset_of(Scopes::parse_stored(&consented)))
    }

    /// `user` approved: checks the client again (it may have been removed, and unregistered
    /// ones need an override user when registration is required), remembers the consent,
    /// stores the code and returns the redirect with `code`, `state` and `iss`.
    pub(crate) fn approve_authorization(
        &self,
        user: &str,
        pending: &PendingAuthorization,
    ) -> Result<String, AuthorizeError> {
        let now = (self.clock)();
        let (client, redirect_uri) =
            self.trusted_redirect(Some(&pending.client_id), Some(&pending.redirect_uri))?;
        if matches!(client, Client::Unregistered(_)) && !self.may_authorize_unregistered(user) {
            return Err(page(
                ErrorCode::UnauthorizedClient,
                "this server only accepts registered clients; ask the administrator to \
                 register this one",
            ));
        }
        if client.is_public() && pending.code_challenge.is_none() {
            return Err(page(ErrorCode::InvalidRequest, "this client must use PKCE"));
        }
        let scope = Scopes::parse(&pending.scope).map_err(AuthorizeError::Page)?;
        if Self::is_recognisable(&client, &redirect_uri) {
            let before = self
                .store
                .consent(user, client.id())?
                .map(|s| Scopes::parse_stored(&s))
                .unwrap_or_default();
            let remembered = before.union(scope).to_scope_string();
            self.store
                .put_consent(user, client.id(), &remembered, now)?;
        }
        let code = tokens::secret(&self.rng)?;
        let lifetime =
            UnixTime::try_from(self.settings.auth_code_lifetime.as_secs()).unwrap_or(UnixTime::MAX);
        self.store.insert_code(&CodeRecord {
            hash: tokens::hash(&code),
            user: user.to_owned(),
            client_id: client.id().to_owned(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: pending.code_challenge.clone(),
            scope: encode_scope(scope, pending.nonce.as_deref()),
            resource: pending.resource.clone(),
            expires_at: now.saturating_add(lifetime),
            failed_attempts: 0,
            grant_id: None,
        })?;
        self.response_url(&redirect_uri, &[("code", &code)], pending.state.as_deref())
            .ok_or_else(|| page(ErrorCode::ServerError, "the redirect URI cannot be used"))
    }

    /// `user` refused: the redirect with `error=access_denied`.
    pub(crate) fn deny_authorization(&self, pending: &PendingAuthorization) -> String {
        let params = [
            ("error", ErrorCode::AccessDenied.name()),
            ("error_description", "the user refused access"),
        ];
        // The URI passed `classify` in `check_authorization`, so it parses; should it not,
        // the client still learns nothing was granted.
        self.response_url(&pending.redirect_uri, &params, pending.state.as_deref())
            .unwrap_or_else(|| pending.redirect_uri.clone())
    }

    /// `grant_type=authorization_code`.
    pub(crate) fn redeem_code(
        &self,
        request: &TokenRequest,
        client: &Client,
    ) -> Result<TokenResponse, OAuthError> {
        let now = (self.clock)();
        let Some(code) = request.code.as_deref() else {
            return Err(missing("code"));
        };
        let hash = tokens::hash(code);
        let unusable = "the code is unknown, expired or already used";
        let Some(record) = self.store.code(&hash)? else {
            return Err(invalid_grant(unusable));
        };
        if now >= record.expires_at {
            return Err(invalid_grant(unusable));
        }
        if let Some(grant_id) = &record.grant_id {
            // RFC 6749 §4.1.2: a used code presented again means it leaked; end what it gave.
            self.store.revoke_grant(grant_id, now)?;
            tracing::warn!(client_id = %record.client_id, "authorization code replayed; grant revoked");
            return Err(invalid_grant(unusable));
        }
        if !self.code_binding_holds(&record, request, client) {
            let failures = self.store.code_failed(&hash)?;
            if failures >= self.settings.max_attempts {
                self.store.delete_code(&hash)?;
            }
            return Err(invalid_grant(
                "the code was issued to another client or redirect_uri, or the code_verifier \
                 is wrong",
            ));
        }
        let resource = resource::narrowed(
            &request.resource,
            &record.resource,
            &self.settings.mail_resources,
        )?;
        let (scope, nonce) = decode_scope(&record.scope);
        let grant = self.new_grant(
            &record.user,
            &record.client_id,
            &scope.to_scope_string(),
            &record.resource,
            now,
        )?;
        // The grant is stored before the code is marked: a crash in between leaves an
        // unused grant (swept later), never a used code without its grant.
        self.store.insert_grant(&grant)?;
        if !self.store.redeem_code(&hash, &grant.id)? {
            // Someone redeemed it at the same moment: one of the two is a replay.
            self.store.revoke_grant(&grant.id, now)?;
            if let Some(winner) = self.store.code(&hash)?.and_then(|r| r.grant_id) {
                self.store.revoke_grant(&winner, now)?;
            }
            return Err(invalid_grant(unusable));
        }
        self.start_grant(&grant, &resource, nonce.as_deref(), now)
    }

    /// Whether the token request repeats what the code is bound to: client, redirect URI and
    /// PKCE verifier.
    fn code_binding_holds(
        &self,
        record: &CodeRecord,
        request: &TokenRequest,
        client: &Client,
    ) -> bool {
        if record.client_id != client.id() {
            return false;
        }
        let redirect_ok = match request.redirect_uri.as_deref() {
            Some(uri) => uri == record.redirect_uri,
            // RFC 6749 §4.1.3 requires it only when the authorization request had it, which
            // it may omit only when one (non-loopback) URI is registered.
            None => match client {
                Client::Registered(c) => {
                    redirect::match_registered(&c.redirect_uris, None).as_ref()
                        == Some(&record.redirect_uri)
                }
                Client::Unregistered(_) => false,
            },
        };
        let pkce_ok = match (&record.code_challenge, request.code_verifier.as_deref()) {
            (Some(challenge), Some(verifier)) => pkce::verifier_matches(verifier, challenge),
            (None, None) => true,
            // A verifier for a code without challenge is a downgrade attempt (RFC 9700
            // §2.1.1); a missing one for a code with a challenge fails PKCE.
            _ => false,
        };
        redirect_ok && pkce_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_rides_along_the_scope() {
        let scope = Scopes::parse("openid email").unwrap();
        let stored = encode_scope(scope, Some("n 0:nonce: x"));
        let (decoded, nonce) = decode_scope(&stored);
        assert_eq!(decoded, scope);
        assert_eq!(nonce.as_deref(), Some("n 0:nonce: x"));
        assert_eq!(
            decode_scope("openid"),
            (Scopes::parse("openid").unwrap(), None)
        );
    }
}
