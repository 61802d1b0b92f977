//! What other parties may ask about a token: introspection (RFC 7662), revocation (RFC 7009),
//! OpenID userinfo, and the proxy's own in-process check.

use crate::error::{ErrorCode, OAuthError};
use crate::jwt::AccessTokenClaims;
use crate::model::{AccessClaims, ClientCredentials, TokenRejection};
use crate::server::AuthServer;
use crate::store::UnixTime;
use crate::tokens;

/// Whether `token` has the shape of a JWT (three dot-separated parts); everything else is
/// tried as a refresh token.
fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|c| *c == b'.').count() == 2
}

fn unavailable() -> OAuthError {
    OAuthError::new(
        ErrorCode::ServerError,
        "the server could not complete the request",
    )
}

impl AuthServer {
    /// An access token that verifies, has not expired, and whose grant is live.
    pub(crate) fn live_access_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, TokenRejection> {
        let claims = self.decode_access_token(token, now)?;
        match self.store.grant(&claims.gid) {
            Ok(Some(grant))
                if grant.revoked_at.is_none() && grant.client_id == claims.client_id =>
            {
                Ok(claims)
            }
            Ok(_) => Err(TokenRejection::Revoked),
            Err(error) => {
                tracing::error!(%error, "store failed while checking an access token");
                Err(TokenRejection::Unavailable)
            }
        }
    }

    /// [`AuthServer::check_access_token`]: one decode, one signature check, one store read.
    pub(crate) fn check_access(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        let claims = self.live_access_token(token, (self.clock)())?;
        Ok(AccessClaims {
            scopes: claims
                .scope
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            audiences: claims.aud.values().to_vec(),
            user: claims.sub,
            client_id: claims.client_id,
            expires_at: claims.exp,
            grant_id: claims.gid,
        })
    }

    /// RFC 7662. Only a confidential client may ask (a public client's id is no proof of
    /// anything); every token of this issuer may be asked about.
    pub(crate) fn introspect_token(
        &self,
        caller: &ClientCredentials,
        token: &str,
    ) -> Result<serde_json::Value, OAuthError> {
        let now = (self.clock)();
        let client = self.authenticate(caller)?;
        if client.is_public() {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "introspection needs a client with a secret",
            ));
        }
        let inactive = serde_json::json!({ "active": false });
        if looks_like_jwt(token) {
            return match self.live_access_token(token, now) {
                Ok(claims) => Ok(serde_json::json!({
                    "active": true,
                    "scope": claims.scope,
                    "client_id": claims.client_id,
                    "username": claims.sub,
                    "sub": claims.sub,
                    "token_type": "Bearer",
                    "exp": claims.exp,
                    "iat": claims.iat,
                    "iss": claims.iss,
                    "aud": claims.aud,
                    "jti": claims.jti,
                })),
                Err(TokenRejection::Unavailable) => Err(unavailable()),
                Err(_) => Ok(inactive),
            };
        }
        let Some(record) = self.store.refresh(&tokens::hash(token))? else {
            return Ok(inactive);
        };
        if record.spent_at.is_some() || now >= record.expires_at {
            return Ok(inactive);
        }
        let Some(grant) = self.store.grant(&record.grant_id)? else {
            return Ok(inactive);
        };
        if grant.revoked_at.is_some() {
            return Ok(inactive);
        }
        // The audience the grant's access tokens get when the refresh names no resource.
        let aud = crate::jwt::Audience::of(&grant.resource, &self.settings.public_url);
        Ok(serde_json::json!({
            "active": true,
            "scope": grant.scope,
            "client_id": grant.client_id,
            "username": grant.user,
            "sub": grant.user,
            "token_type": "refresh_token",
            "exp": record.expires_at,
            "iss": self.settings.public_url,
            "aud": aud,
        }))
    }

    /// RFC 7009: revokes the grant behind a refresh or access token of the caller's. A token
    /// of another client, or no token of ours, changes nothing and is not an error (§2.2).
    pub(crate) fn revoke_token(
        &self,
        caller: &ClientCredentials,
        token: &str,
    ) -> Result<(), OAuthError> {
        let now = (self.clock)();
        let client = self.authenticate(caller)?;
        let grant_id = if looks_like_jwt(token) {
            // An expired access token still names its grant: revoking ends the refresh tokens.
            match self.verify_access_token(token, now) {
                Ok(claims) if claims.client_id == client.id() => Some(claims.gid),
                Ok(_) => None,
                Err(TokenRejection::Unavailable) => return Err(unavailable()),
                Err(_) => None,
            }
        } else {
            match self.store.refresh(&tokens::hash(token))? {
                Some(record) => self
                    .store
                    .grant(&record.grant_id)?
                    .filter(|grant| grant.client_id == client.id())
                    .map(|grant| grant.id),
                None => None,
            }
        };
        if let Some(grant_id) = grant_id {
            self.store.revoke_grant(&grant_id, now)?;
        }
        Ok(())
    }

    /// OpenID userinfo: who the bearer of a live access token is.
    pub(crate) fn userinfo_for(&self, access_token: &str) -> Result<serde_json::Value, OAuthError> {
        let claims = match self.live_access_token(access_token, (self.clock)()) {
            Ok(claims) => claims,
            Err(TokenRejection::Unavailable) => return Err(unavailable()),
            Err(_) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the access token is invalid, expired or revoked",
                ))
            }
        };
        let mut info = serde_json::json!({
            "sub": claims.sub,
            "preferred_username": claims.sub,
        });
        if claims.sub.contains('@') {
            info["email"] = serde_json::Value::String(claims.sub);
        }
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use crate::model::TokenRejection;
    use crate::scope::MAIL;
    use crate::testing::{basic, code_of, public, refresh, Harness, ISSUER, LOOPBACK};

    /// A server with a confidential resource-server client `rs`; its secret.
    fn with_resource_server() -> (Harness, String) {
        let h = Harness::new("");
        let secret = h
            .server
            .add_client("rs", &["https://rs.example/cb".to_owned()], None, true)
            .unwrap()
            .expect("confidential clients get a secret");
        (h, secret)
    }

    #[test]
    fn introspection_needs_a_confidential_client() {
        let (h, secret) = with_resource_server();
        let tokens = h.tokens_for("alice", "mail-app", LOOPBACK);
        assert_eq!(
            code_of(
                h.server
                    .introspect(&public("mail-app"), &tokens.access_token)
            ),
            "invalid_client"
        );
        assert_eq!(
            code_of(h.server.introspect(&public("rs"), &tokens.access_token)),
            "invalid_client"
        );
        assert_eq!(
            code_of(
                h.server
                    .introspect(&basic("rs", "wrong"), &tokens.access_token)
            ),
            "invalid_client"
        );

        let rs = basic("rs", &secret);
        let access = h.server.introspect(&rs, &tokens.access_token).unwrap();
        assert_eq!(access["active"], true);
        assert_eq!(access["token_type"], "Bearer");
        assert_eq!(access["client_id"], "mail-app");
        assert_eq!(access["username"], "alice");
        assert_eq!(access["scope"], format!("openid {MAIL}"));
        assert_eq!(access["iss"], ISSUER);
        assert_eq!(access["aud"], ISSUER);
        assert_eq!(access["exp"], h.now() + 3_600);

        let refresh_token = h.server.introspect(&rs, &tokens.refresh_token).unwrap();
        assert_eq!(refresh_token["active"], true);
        assert_eq!(refresh_token["token_type"], "refresh_token");
        assert_eq!(refresh_token["sub"], "alice");

        for garbage in ["", "nonsense", "a.b.c", "bgr_unknown"] {
            let answer = h.server.introspect(&rs, garbage).unwrap();
            assert_eq!(
                answer,
                serde_json::json!({ "active": false }),
                "{garbage:?}"
            );
        }
        // A spent refresh token is inactive.
        h.server
            .token(&refresh(&tokens.refresh_token), &public("mail-app"))
            .unwrap();
        let spent = h.server.introspect(&rs, &tokens.refresh_token).unwrap();
        assert_eq!(spent, serde_json::json!({ "active": false }));
    }

    #[test]
    fn revoking_an_access_token_ends_the_grant() {
        let (h, secret) = with_resource_server();
        let tokens = h.tokens_for("bob", "mail-app", LOOPBACK);
        h.server
            .revoke(&public("mail-app"), &tokens.access_token)
            .unwrap();
        assert_eq!(
            h.server.check_access_token(&tokens.access_token),
            Err(TokenRejection::Revoked)
        );
        let again = h
            .server
            .token(&refresh(&tokens.refresh_token), &public("mail-app"));
        assert_eq!(code_of(again), "invalid_grant");
        let answer = h
            .server
            .introspect(&basic("rs", &secret), &tokens.access_token)
            .unwrap();
        assert_eq!(answer, serde_json::json!({ "active": false }));
    }

    #[test]
    fn revoking_a_refresh_token_ends_the_grant() {
        let h = Harness::new("");
        let tokens = h.tokens_for("carol", "mail-app", LOOPBACK);
        h.server
            .revoke(&public("mail-app"), &tokens.refresh_token)
            .unwrap();
        assert_eq!(
            h.server.check_access_token(&tokens.access_token),
            Err(TokenRejection::Revoked)
        );
    }

    #[test]
    fn another_clients_tokens_are_left_alone() {
        let h = Harness::new("");
        let tokens = h.tokens_for("dave", "mail-app", LOOPBACK);
        h.server
            .revoke(&public("other-app"), &tokens.access_token)
            .unwrap();
        h.server
            .revoke(&public("other-app"), &tokens.refresh_token)
            .unwrap();
        h.server.revoke(&public("other-app"), "unknown").unwrap();
        assert!(h.server.check_access_token(&tokens.access_token).is_ok());
        assert_eq!(
            code_of(h.server.revoke(&basic("other-app", "secret"), "x")),
            "invalid_client"
        );
    }

    #[test]
    fn userinfo_names_the_user() {
        let h = Harness::new("");
        let tokens = h.tokens_for("erin@example.test", "mail-app", LOOPBACK);
        let info = h.server.userinfo(&tokens.access_token).unwrap();
        assert_eq!(info["sub"], "erin@example.test");
        assert_eq!(info["preferred_username"], "erin@example.test");
        assert_eq!(info["email"], "erin@example.test");
        let plain = h.tokens_for("frank", "mail-app", LOOPBACK);
        assert!(h
            .server
            .userinfo(&plain.access_token)
            .unwrap()
            .get("email")
            .is_none());
        assert_eq!(code_of(h.server.userinfo("nonsense")), "invalid_token");
        h.server
            .revoke(&public("mail-app"), &tokens.access_token)
            .unwrap();
        assert_eq!(
            code_of(h.server.userinfo(&tokens.access_token)),
            "invalid_token"
        );
    }
}
