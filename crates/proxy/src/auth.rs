//! From presented credentials to the mail user: validate the token, make sure it is for this
//! service (its RFC 8707 audience), then that the identity the client claims is the token's
//! own. Shared by every protocol driver.

use std::sync::Arc;

use sasl::BearerCredentials;
use validator::{Identity, InvalidReason, ScopeKey, ValidationError, Validator};

use crate::config::{ListenerConfig, Protocol};

/// Why a login cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The client's fault: the token, or the identity claimed with it.
    #[error("{0}")]
    Refused(Refused),
    /// The identity provider could not answer; the client may retry later.
    #[error("identity provider unavailable: {0}")]
    Unavailable(validator::Unavailable),
}

/// The client-fault reasons.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The validator refused the token.
    #[error("{0}")]
    Token(InvalidReason),
    /// The token is valid but for another user than the one the client named. The message
    /// names the claim compared: "which claim?" is the first question of whoever reads it.
    #[error(
        "claimed user `{claimed}` is not the token's user `{token_user}` \
         (from claim `{claim}` of issuer {issuer})"
    )]
    WrongUser {
        /// What the client sent (`user=` / `a=`).
        claimed: String,
        /// What the token says, after the issuer's policy.
        token_user: String,
        /// The claim the token's user came from.
        claim: String,
        /// The issuer that accepted the token.
        issuer: String,
    },
    /// The token is valid but its audience names other mail services (RFC 8707), not this
    /// listener's: a token for IMAP does not log in to submission.
    #[error("token is for another service: its audience {audiences:?} does not name {service}")]
    WrongService {
        /// The token's audiences.
        audiences: Vec<String>,
        /// This listener's service.
        service: String,
    },
}

/// The mail service a listener is, as RFC 8707 resource indicators name it: its protocol,
/// its `hostname` and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName {
    /// Protocol spoken.
    pub protocol: Protocol,
    /// The listener's `hostname`.
    pub hostname: String,
    /// The port it listens on.
    pub port: u16,
}

impl ServiceName {
    /// The service `listener` is.
    pub fn of(listener: &ListenerConfig) -> Self {
        Self {
            protocol: listener.protocol,
            hostname: listener.hostname.clone(),
            port: listener.listen.port(),
        }
    }
}

impl std::fmt::Display for ServiceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = resource_scheme(self.protocol);
        write!(f, "{scheme}://{}:{}", self.hostname, self.port)
    }
}

/// The URI scheme the built-in issuer names a listener's service with: `imap` (RFC 5092),
/// `smtp` for submission, `pop` (RFC 2384), `sieve` (RFC 5804).
pub fn resource_scheme(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Imap => "imap",
        Protocol::Smtp => "smtp",
        Protocol::Pop3 => "pop",
        Protocol::Sieve => "sieve",
    }
}

/// The schemes that name a service of `protocol` in an audience: the registered one and the
/// spellings other issuers use (with TLS, or the submission port's name).
fn schemes(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Imap => &["imap", "imaps"],
        Protocol::Smtp => &["smtp", "submission", "submissions"],
        Protocol::Pop3 => &["pop", "pop3", "pops"],
        Protocol::Sieve => &["sieve"],
    }
}

/// An audience that names a mail service, taken apart: scheme (lower case), host, port.
#[derive(Debug, PartialEq, Eq)]
struct MailAudience<'a> {
    scheme: String,
    /// `None` when the authority could not be read: such an audience restricts the token
    /// but names no listener.
    host: Option<&'a str>,
    port: Option<u16>,
}

impl<'a> MailAudience<'a> {
    /// `scheme://host[:port][/…]` with a mail scheme; `None` for any other audience (an
    /// https resource server, the issuer, a client id), which restricts nothing here.
    fn parse(aud: &'a str) -> Option<Self> {
        let (scheme, rest) = aud.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let is_mail = [
            Protocol::Imap,
            Protocol::Smtp,
            Protocol::Pop3,
            Protocol::Sieve,
        ]
        .into_iter()
        .any(|protocol| schemes(protocol).contains(&scheme.as_str()));
        if !is_mail {
            return None;
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (host, port) = host_port(authority).unzip();
        Some(Self {
            scheme,
            host,
            port: port.flatten(),
        })
    }

    /// Whether it names `service`: a scheme of its protocol, its host (ASCII case ignored),
    /// and its port when the audience has one.
    fn names(&self, service: &ServiceName) -> bool {
        schemes(service.protocol).contains(&self.scheme.as_str())
            && self
                .host
                .is_some_and(|host| host.eq_ignore_ascii_case(&service.hostname))
            && self.port.is_none_or(|port| port == service.port)
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port` (brackets dropped); `None` when malformed or
/// with user info (which no service identifier has).
fn host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(port.parse::<u16>().ok()?),
    };
    (!host.is_empty()).then_some((host, port))
}

/// Whether a token with these audiences may log in to `service`: always when none of them
/// names a mail service (tokens of issuers that know nothing of RFC 8707, or the built-in
/// issuer's when no resource was asked for); else only when one names this very service.
pub fn audience_allows(audiences: &[String], service: &ServiceName) -> bool {
    let mut mail = audiences
        .iter()
        .filter_map(|aud| MailAudience::parse(aud))
        .peekable();
    if mail.peek().is_none() {
        return true;
    }
    mail.any(|aud| aud.names(service))
}

impl Refused {
    /// True when the token lacks a required scope (OAUTHBEARER says `insufficient_scope`).
    pub fn is_missing_scope(&self) -> bool {
        matches!(self, Refused::Token(InvalidReason::MissingScope { .. }))
    }
}

/// Validates the token (with the further scopes `protocol_scopes` names for `scope_key`, the
/// listener's protocol), checks that its audience allows `service` ([`audience_allows`]),
/// and checks the claimed identity against it.
///
/// The comparison ignores ASCII case: mail systems treat `Alice@Example.org` and
/// `alice@example.org` as one mailbox, and the backend login always uses the token's user,
/// never the claimed one, so a case difference cannot reach another mailbox.
pub async fn check(
    validator: &Validator,
    credentials: &BearerCredentials,
    scope_key: &ScopeKey,
    service: &ServiceName,
) -> Result<Arc<Identity>, AuthError> {
    let identity = validator
        .validate_for(&credentials.token, scope_key)
        .await
        .map_err(|e| match e {
            ValidationError::Invalid(reason) => AuthError::Refused(Refused::Token(reason)),
            ValidationError::Unavailable(why) => AuthError::Unavailable(why),
        })?;
    if !audience_allows(&identity.audiences, service) {
        return Err(AuthError::Refused(Refused::WrongService {
            audiences: identity.audiences.clone(),
            service: service.to_string(),
        }));
    }
    if let Some(claimed) = &credentials.authzid {
        let comparable = validator.normalise_claimed(&identity, claimed);
        if !comparable.eq_ignore_ascii_case(&identity.user) {
            return Err(AuthError::Refused(Refused::WrongUser {
                claimed: claimed.clone(),
                token_user: identity.user.clone(),
                claim: identity.user_claim.clone(),
                issuer: identity.issuer.clone(),
            }));
        }
    }
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use base64::Engine as _;
    use secrecy::SecretString;
    use serde_json::{json, Map, Value};
    use validator::{LocalIssuer, LocalRefusal, LocalTokens, Policy, ValidatorConfig};

    use super::*;

    fn service(protocol: Protocol, port: u16) -> ServiceName {
        ServiceName {
            protocol,
            hostname: "Mail.Example.test".to_owned(),
            port,
        }
    }

    fn allows(audiences: &[&str], service: &ServiceName) -> bool {
        let audiences: Vec<String> = audiences.iter().map(|a| (*a).to_owned()).collect();
        audience_allows(&audiences, service)
    }

    #[test]
    fn tokens_without_a_mail_audience_are_not_restricted() {
        let imap = service(Protocol::Imap, 993);
        assert!(allows(&[], &imap));
        assert!(allows(&["https://auth.example.test"], &imap));
        assert!(allows(&["mail-clients", "https://rs.example"], &imap));
        assert!(allows(&["urn:example:imap"], &imap));
    }

    #[test]
    fn a_mail_audience_must_name_this_listener() {
        let imap = service(Protocol::Imap, 993);
        let smtp = service(Protocol::Smtp, 465);
        let pop = service(Protocol::Pop3, 995);
        let sieve = service(Protocol::Sieve, 4190);
        for aud in [
            "imap://mail.example.test",
            "IMAP://MAIL.EXAMPLE.TEST",
            "imap://mail.example.test:993",
            "imaps://mail.example.test/",
            "imap://mail.example.test:993/INBOX",
        ] {
            assert!(allows(&[aud], &imap), "{aud}");
            assert!(!allows(&[aud], &smtp), "{aud} opens SMTP");
        }
        for (aud, wrong) in [
            ("imap://mail.example.test:143", "another port"),
            ("imap://other.example.test", "another host"),
            ("imap://user@mail.example.test", "user info"),
            ("imap://", "no host"),
            ("imap://mail.example.test:x", "a bad port"),
            ("smtp://mail.example.test", "another protocol"),
        ] {
            assert!(!allows(&[aud], &imap), "{wrong}: {aud}");
        }
        // One of several may name it; a foreign https audience beside them changes nothing.
        assert!(allows(
            &[
                "smtp://mail.example.test",
                "imap://mail.example.test",
                "https://x"
            ],
            &imap
        ));
        for aud in [
            "smtp://mail.example.test",
            "submission://mail.example.test:465",
            "submissions://mail.example.test",
        ] {
            assert!(allows(&[aud], &smtp), "{aud}");
        }
        for aud in [
            "pop://mail.example.test",
            "pop3://mail.example.test:995",
            "pops://mail.example.test",
        ] {
            assert!(allows(&[aud], &pop), "{aud}");
        }
        assert!(allows(&["sieve://mail.example.test:4190"], &sieve));
        assert!(!allows(&["sieve://mail.example.test:4190"], &pop));
        // IPv6 literals, with their brackets.
        let v6 = ServiceName {
            protocol: Protocol::Imap,
            hostname: "::1".to_owned(),
            port: 993,
        };
        assert!(allows(&["imap://[::1]:993"], &v6));
        assert!(!allows(&["imap://[::1]:994"], &v6));
        assert_eq!(imap.to_string(), "imap://Mail.Example.test:993");
    }

    /// The built-in issuer as the validator sees it, answering with `aud`.
    #[derive(Debug)]
    struct Issued(Value);

    const ISSUER: &str = "https://auth.example.test";

    impl LocalTokens for Issued {
        fn issuer(&self) -> &str {
            ISSUER
        }

        fn check(&self, _token: &str) -> Result<Map<String, Value>, LocalRefusal> {
            let exp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() + 600);
            let mut claims = json!({"sub": "alice", "scope": "mail", "client_id": "c", "exp": exp});
            claims["aud"] = self.0.clone();
            Ok(claims.as_object().cloned().unwrap_or_default())
        }
    }

    async fn login(aud: Value, service: &ServiceName) -> Result<Arc<Identity>, AuthError> {
        let local = LocalIssuer {
            name: "builtin".into(),
            tokens: Arc::new(Issued(aud)),
            policy: Policy::with_claim("sub"),
            discovery: validator::Discovery::default(),
        };
        let validator =
            Validator::with_local(ValidatorConfig::several(Vec::new()), local).expect("validator");
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({ "iss": ISSUER }).to_string());
        let credentials = BearerCredentials {
            mechanism: sasl::Mechanism::OAuthBearer,
            authzid: Some("alice".to_owned()),
            token: SecretString::from(format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln")),
            host: None,
            port: None,
        };
        check(
            &validator,
            &credentials,
            &service.protocol.scope_key(),
            service,
        )
        .await
    }

    #[tokio::test]
    async fn a_token_for_imap_logs_in_to_imap_only() {
        let imap = service(Protocol::Imap, 993);
        let smtp = service(Protocol::Smtp, 465);
        let identity = login(json!(["imap://mail.example.test"]), &imap)
            .await
            .expect("IMAP accepts it");
        assert_eq!(identity.audiences, ["imap://mail.example.test"]);
        let refused = login(json!(["imap://mail.example.test"]), &smtp).await;
        let Err(AuthError::Refused(reason)) = refused else {
            panic!("submission must refuse an IMAP token: {refused:?}");
        };
        assert!(matches!(reason, Refused::WrongService { .. }), "{reason:?}");
        assert!(!reason.is_missing_scope());
        let text = reason.to_string();
        assert!(text.contains("token is for another service"), "{text}");
        assert!(text.contains("smtp://Mail.Example.test:465"), "{text}");
        // The issuer as audience (no resource asked for): every service.
        assert!(login(json!([ISSUER]), &smtp).await.is_ok());
    }
}
