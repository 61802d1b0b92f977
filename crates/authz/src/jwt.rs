//! The JWTs this server mints: RFC 9068 access tokens and OpenID ID tokens, and the check of
//! an access token (signature, header, issuer, audience and expiry; revocation is the
//! caller's one store read).

use serde::{Deserialize, Serialize};

use crate::model::TokenRejection;
use crate::server::AuthServer;
use crate::store::{GrantRecord, StoreError, UnixTime};
use crate::tokens;

/// RFC 9068 §2.1: the `typ` of an access token, so that an ID token (`JWT`) signed by the
/// same key is never taken for one.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// The `typ` of an ID token.
pub(crate) const ID_TOKEN_TYPE: &str = "JWT";

/// An access token's `aud` (RFC 7519 §4.1.3: a string, or an array of strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    /// One audience: the issuer (no resource asked for) or the one resource granted.
    One(String),
    /// The resources granted, when more than one.
    Many(Vec<String>),
}

impl Audience {
    /// The audience of a token for `resources` (RFC 8707), or for the issuer when there are
    /// none: the proxy in front of the mail servers is then the resource server, for every
    /// protocol.
    pub(crate) fn of(resources: &[String], issuer: &str) -> Self {
        match resources {
            [] => Audience::One(issuer.to_owned()),
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        }
    }

    /// Every audience named.
    pub(crate) fn values(&self) -> &[String] {
        match self {
            Audience::One(one) => std::slice::from_ref(one),
            Audience::Many(many) => many,
        }
    }

    /// Whether this issuer could have minted it: the issuer alone, or mail resources only.
    fn is_ours(&self, issuer: &str) -> bool {
        match self {
            Audience::One(one) if one == issuer => true,
            _ => {
                !self.values().is_empty()
                    && self
                        .values()
                        .iter()
                        .all(|aud| crate::resource::is_mail_resource(aud))
            }
        }
    }
}

/// An access token's claims (RFC 9068 §2.2). The grant, checked for revocation at every
/// use, is named by the `jti` itself (`{grant}.{random}`) rather than a claim of its own:
/// 30 octets fewer in every token, and neomutt refuses tokens over 510 octets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AccessTokenClaims {
    pub(crate) iss: String,
    pub(crate) sub: String,
    /// [`Audience::of`] the resources granted.
    pub(crate) aud: Audience,
    pub(crate) client_id: String,
    pub(crate) scope: String,
    pub(crate) iat: UnixTime,
    pub(crate) exp: UnixTime,
    /// `{grant id}.{random}`: unique per token, and says which grant it belongs to.
    pub(crate) jti: String,
    /// The grant: read from `gid` in tokens minted before the grant moved into `jti`, else
    /// from `jti` when the token is verified; never written.
    #[serde(default, skip_serializing)]
    pub(crate) gid: String,
}

impl AccessTokenClaims {
    /// Fills [`AccessTokenClaims::gid`] from `jti` when the token had no `gid` claim.
    fn with_grant(mut self) -> Result<Self, TokenRejection> {
        if self.gid.is_empty() {
            let Some((grant, _)) = self.jti.rsplit_once('.') else {
                return Err(TokenRejection::NotOurs);
            };
            self.gid = grant.to_owned();
        }
        Ok(self)
    }
}

/// An ID token's claims (OpenID Connect Core §2).
#[derive(Debug, Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: UnixTime,
    exp: UnixTime,
    auth_time: UnixTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
}

impl AuthServer {
    /// Seconds an access (and ID) token lives.
    pub(crate) fn access_lifetime(&self) -> UnixTime {
        UnixTime::try_from(self.settings.access_token_lifetime.as_secs()).unwrap_or(UnixTime::MAX)
    }

    /// Mints an access token for `grant` with `scope` and `resource` (the grant's, or
    /// narrower).
    pub(crate) fn mint_access_token(
        &self,
        grant: &GrantRecord,
        scope: &str,
        resource: &[String],
        now: UnixTime,
    ) -> Result<String, StoreError> {
        let claims = std::sync::Arc::new(AccessTokenClaims {
            iss: self.settings.public_url.clone(),
            sub: grant.user.clone(),
            aud: Audience::of(resource, &self.settings.public_url),
            client_id: grant.client_id.clone(),
            scope: scope.to_owned(),
            iat: now,
            exp: now.saturating_add(self.access_lifetime()),
            jti: format!("{}.{}", grant.id, tokens::token_suffix(&self.rng)?),
            gid: grant.id.clone(),
        });
        let token = self.keys.sign(
            self.store.as_ref(),
            &self.rng,
            now,
            ACCESS_TOKEN_TYPE,
            claims.as_ref(),
        )?;
        // Signed here, so known good: its first login skips the signature check too.
        self.verified.insert(&token, claims, now);
        Ok(token)
    }

    /// Mints an ID token for `grant`; `auth_time` is when the user approved (as near as we
    /// know: when the grant was made).
    pub(crate) fn mint_id_token(
        &self,
        grant: &GrantRecord,
        nonce: Option<&str>,
        now: UnixTime,
    ) -> Result<String, StoreError> {
        let claims = IdTokenClaims {
            iss: &self.settings.public_url,
            sub: &grant.user,
            aud: &grant.client_id,
            iat: now,
            exp: now.saturating_add(self.access_lifetime()),
            auth_time: grant.created_at,
            nonce,
        };
        self.keys
            .sign(self.store.as_ref(), &self.rng, now, ID_TOKEN_TYPE, &claims)
    }

    /// Verifies an access token's signature, `typ`, `iss` and `aud`, but not its expiry.
    pub(crate) fn verify_access_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, TokenRejection> {
        if let Some(known) = self.verified.get(token) {
            return Ok(AccessTokenClaims::clone(&known));
        }
        let claims = self
            .keys
            .verify::<AccessTokenClaims>(self.store.as_ref(), now, token, ACCESS_TOKEN_TYPE)?
            .with_grant()?;
        if claims.iss != self.settings.public_url || !claims.aud.is_ours(&self.settings.public_url)
        {
            return Err(TokenRejection::NotOurs);
        }
        self.verified
            .insert(token, std::sync::Arc::new(claims.clone()), now);
        Ok(claims)
    }

    /// [`AuthServer::verify_access_token`], and the token has not expired. `exp` is
    /// compared without leeway: the tokens are this server's own, minted and checked on the
    /// same clock (or, with a shared store, on instances expected to be NTP-synchronised).
    pub(crate) fn decode_access_token(
        &self,
        token: &str,
        now: UnixTime,
    ) -> Result<AccessTokenClaims, TokenRejection> {
        let claims = self.verify_access_token(token, now)?;
        if now >= claims.exp {
            return Err(TokenRejection::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::testing::{Harness, LOOPBACK};

    /// The claims of an access token minted before the grant moved into `jti`.
    #[derive(Serialize)]
    struct WithGrantClaim<'a> {
        iss: &'a str,
        sub: &'a str,
        aud: &'a str,
        client_id: &'a str,
        scope: &'a str,
        iat: UnixTime,
        exp: UnixTime,
        jti: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        gid: Option<&'a str>,
    }

    #[test]
    fn the_grant_is_read_from_jti_or_from_an_older_gid_claim() {
        let h = Harness::new("");
        let tokens = h.tokens_for("alice", "mail-app", LOOPBACK);
        let fresh = h.server.check_access_token(&tokens.access_token).unwrap();
        let payload = tokens.access_token.split('.').nth(1).unwrap();
        let payload =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap();
        let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert!(payload.get("gid").is_none(), "{payload}");
        let jti = payload["jti"].as_str().unwrap();
        let (grant, _) = jti.rsplit_once('.').unwrap();

        let now = h.now();
        let sign = |gid: Option<&str>, jti: &str| {
            let claims = WithGrantClaim {
                iss: crate::testing::ISSUER,
                sub: "alice",
                aud: crate::testing::ISSUER,
                client_id: "mail-app",
                scope: crate::scope::MAIL,
                iat: now,
                exp: now + 60,
                jti,
                gid,
            };
            h.server
                .keys
                .sign(
                    h.server.store.as_ref(),
                    &h.server.rng,
                    now,
                    ACCESS_TOKEN_TYPE,
                    &claims,
                )
                .unwrap()
        };
        // An older token: its own `gid` claim, a `jti` without one.
        let older = sign(Some(grant), "uaBjzJVqrR3zkW9SUxsLcw");
        let checked = h.server.check_access_token(&older).unwrap();
        assert_eq!(checked.user, fresh.user);
        // Neither: no grant to check revocation against, so not a token of ours.
        let orphan = sign(None, "uaBjzJVqrR3zkW9SUxsLcw");
        assert_eq!(
            h.server.check_access_token(&orphan).unwrap_err(),
            TokenRejection::NotOurs
        );
        // Revoking the grant ends both kinds.
        h.store.revoke_grant(grant, now).unwrap();
        for token in [&tokens.access_token, &older] {
            assert_eq!(
                h.server.check_access_token(token).unwrap_err(),
                TokenRejection::Revoked
            );
        }
    }

    #[test]
    fn audience_is_the_issuer_one_resource_or_a_list() {
        let issuer = "https://auth.example.test";
        let one = Audience::of(&["imap://mail.example.test".to_owned()], issuer);
        assert_eq!(
            serde_json::to_value(&one).unwrap(),
            serde_json::json!("imap://mail.example.test")
        );
        let two = Audience::of(
            &[
                "imap://mail.example.test".to_owned(),
                "smtp://mail.example.test".to_owned(),
            ],
            issuer,
        );
        assert_eq!(
            serde_json::to_value(&two).unwrap(),
            serde_json::json!(["imap://mail.example.test", "smtp://mail.example.test"])
        );
        let none = Audience::of(&[], issuer);
        assert_eq!(none.values(), [issuer]);
        for aud in [&one, &two, &none] {
            assert!(aud.is_ours(issuer), "{aud:?}");
            let back: Audience =
                serde_json::from_value(serde_json::to_value(aud).unwrap()).unwrap();
            assert_eq!(&back, aud);
        }
        // Someone else's audience, or an empty list, was never minted here.
        assert!(!Audience::One("https://other.example".into()).is_ours(issuer));
        assert!(!Audience::Many(vec![]).is_ours(issuer));
        assert!(!Audience::Many(vec![
            "imap://mail.example.test".into(),
            "https://other.example".into()
        ])
        .is_ours(issuer));
    }
}
