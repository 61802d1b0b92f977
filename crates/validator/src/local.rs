//! An issuer in this very process — bearergate's built-in authorization server — whose
//! tokens are judged by a function call instead of an HTTP request.
//!
//! Its answers are never cached: the call is cheap (a signature check and one store read)
//! and it consults revocation, so a revoked grant is refused at the next login, not after
//! the cache's lifetime.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::{InvalidReason, Unavailable, UnavailableKind, ValidationError};
use crate::identity::Identity;
use crate::issuer::Discovery;
use crate::policy::Policy;

/// What the in-process issuer offers the validator.
pub trait LocalTokens: Send + Sync + fmt::Debug {
    /// Its issuer identifier: a JWT whose `iss` is exactly this is judged here alone.
    fn issuer(&self) -> &str;

    /// The verified claims of `token` (`sub`, `scope`, `client_id`, `exp` at least), or why
    /// it is refused. Called on every login with such a token; must be quick.
    fn check(&self, token: &str) -> Result<Map<String, Value>, LocalRefusal>;
}

/// Why the in-process issuer refused a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRefusal {
    /// The token is bad (signature, expiry, revoked grant): the client's fault.
    Invalid(InvalidReason),
    /// The issuer could not say (its store failed): try later.
    Unavailable(String),
}

/// The in-process issuer as the validator runs it.
#[derive(Clone)]
pub struct LocalIssuer {
    /// Its name in logs and metrics.
    pub name: String,
    /// The judge.
    pub tokens: Arc<dyn LocalTokens>,
    /// How its claims become a mail user (user claim, scopes every token needs).
    pub policy: Policy,
    /// What a refused OAUTHBEARER client is told: where to get a token.
    pub discovery: Discovery,
}

impl fmt::Debug for LocalIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalIssuer")
            .field("name", &self.name)
            .field("issuer", &self.tokens.issuer())
            .field("discovery", &self.discovery)
            .finish_non_exhaustive()
    }
}

impl LocalIssuer {
    /// The identity `token` stands for, judged now.
    pub(crate) fn judge(&self, token: &str) -> Result<Arc<Identity>, ValidationError> {
        let claims = match self.tokens.check(token) {
            Ok(claims) => claims,
            Err(LocalRefusal::Invalid(reason)) => return Err(ValidationError::Invalid(reason)),
            Err(LocalRefusal::Unavailable(detail)) => {
                return Err(ValidationError::Unavailable(Unavailable::new(
                    UnavailableKind::Unreachable,
                    detail,
                )))
            }
        };
        let expires_at = match claims.get("exp").and_then(Value::as_u64) {
            Some(exp) => UNIX_EPOCH + std::time::Duration::from_secs(exp),
            None => {
                return Err(ValidationError::Invalid(InvalidReason::Malformed {
                    claim: "exp".to_owned(),
                    problem: "is missing",
                }))
            }
        };
        if expires_at <= SystemTime::now() {
            return Err(ValidationError::Invalid(InvalidReason::Expired));
        }
        let found = self.policy.apply(&claims)?;
        Ok(Arc::new(Identity::new(found, &self.name, Some(expires_at))))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use base64::Engine;
    use secrecy::SecretString;
    use serde_json::json;

    use super::*;
    use crate::{Validator, ValidatorConfig};

    const ISSUER: &str = "https://mail.example.test";

    /// Accepts every token until told the grant is revoked; counts its calls.
    #[derive(Debug, Default)]
    struct Fake {
        revoked: AtomicBool,
        down: AtomicBool,
        calls: AtomicU32,
    }

    impl LocalTokens for Fake {
        fn issuer(&self) -> &str {
            ISSUER
        }

        fn check(&self, _token: &str) -> Result<Map<String, Value>, LocalRefusal> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(LocalRefusal::Unavailable("store is down".into()));
            }
            if self.revoked.load(Ordering::SeqCst) {
                return Err(LocalRefusal::Invalid(InvalidReason::Inactive));
            }
            let exp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() + 3_600)
                .unwrap_or(0);
            let claims =
                json!({"sub": "Alice", "scope": "mail openid", "client_id": "c", "exp": exp});
            Ok(claims.as_object().cloned().unwrap_or_default())
        }
    }

    fn token(iss: &str) -> SecretString {
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = engine.encode(json!({ "iss": iss }).to_string());
        SecretString::from(format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln"))
    }

    fn validator(fake: Arc<Fake>, required: &str) -> Validator {
        let mut policy = Policy::with_claim("sub");
        policy.required_scopes = vec![required.to_owned()];
        policy.lowercase_username = true;
        let local = LocalIssuer {
            name: "builtin".into(),
            tokens: fake,
            policy,
            discovery: Discovery {
                scope: Some("mail".into()),
                openid_configuration: Some(format!("{ISSUER}/.well-known/openid-configuration")),
            },
        };
        Validator::with_local(ValidatorConfig::several(Vec::new()), local).expect("validator")
    }

    #[tokio::test]
    async fn the_built_in_issuer_judges_every_login_so_revocation_is_seen_at_once() {
        let fake = Arc::new(Fake::default());
        let validator = validator(fake.clone(), "mail");
        let identity = validator.validate(&token(ISSUER)).await.expect("valid");
        assert_eq!(identity.user, "alice", "the policy's case rule applies");
        assert_eq!(identity.issuer, "builtin");
        validator
            .validate(&token(ISSUER))
            .await
            .expect("still valid");
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            2,
            "never served from a cache"
        );

        fake.revoked.store(true, Ordering::SeqCst);
        let refused = validator.validate(&token(ISSUER)).await;
        assert_eq!(
            refused,
            Err(ValidationError::Invalid(InvalidReason::Inactive))
        );

        fake.down.store(true, Ordering::SeqCst);
        let down = validator.validate(&token(ISSUER)).await;
        assert!(
            matches!(down, Err(ValidationError::Unavailable(_))),
            "{down:?}"
        );
    }

    /// Answers with a token for the IMAP service of one host.
    #[derive(Debug)]
    struct ForImap;

    impl LocalTokens for ForImap {
        fn issuer(&self) -> &str {
            ISSUER
        }

        fn check(&self, _token: &str) -> Result<Map<String, Value>, LocalRefusal> {
            let exp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() + 3_600)
                .unwrap_or(0);
            let claims = json!({"sub": "alice", "scope": "mail", "client_id": "c", "exp": exp,
                                "aud": ["imap://mail.example.test"]});
            Ok(claims.as_object().cloned().unwrap_or_default())
        }
    }

    #[tokio::test]
    async fn the_audience_of_a_built_in_token_reaches_the_identity() {
        let local = LocalIssuer {
            name: "builtin".into(),
            tokens: Arc::new(ForImap),
            policy: Policy::with_claim("sub"),
            discovery: Discovery::default(),
        };
        let validator =
            Validator::with_local(ValidatorConfig::several(Vec::new()), local).expect("validator");
        let identity = validator.validate(&token(ISSUER)).await.expect("valid");
        assert_eq!(identity.audiences, ["imap://mail.example.test"]);
    }

    #[tokio::test]
    async fn its_policy_demands_the_mail_scope_and_other_tokens_are_refused_without_a_call() {
        let fake = Arc::new(Fake::default());
        let validator = validator(fake.clone(), "calendar");
        let refused = validator.validate(&token(ISSUER)).await;
        assert!(
            matches!(
                refused,
                Err(ValidationError::Invalid(InvalidReason::MissingScope { .. }))
            ),
            "{refused:?}"
        );
        let foreign = validator
            .validate(&token("https://elsewhere.example"))
            .await;
        assert_eq!(
            foreign,
            Err(ValidationError::Invalid(InvalidReason::WrongIssuer))
        );
        let opaque = validator
            .validate(&SecretString::from("opaque".to_owned()))
            .await;
        assert_eq!(
            opaque,
            Err(ValidationError::Invalid(InvalidReason::WrongIssuer))
        );
        assert_eq!(fake.calls.load(Ordering::SeqCst), 1);
        let hints = validator.default_discovery();
        assert_eq!(hints.scope.as_deref(), Some("mail"));
        assert!(validator
            .discovery_for(&token(ISSUER))
            .openid_configuration
            .as_deref()
            .is_some_and(|url| url.starts_with(ISSUER)));
    }
}
