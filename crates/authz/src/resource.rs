//! RFC 8707 resource indicators: which of bearergate's mail services a token is for.
//!
//! A client names the services it wants with `resource` parameters (repeatable) on the
//! authorization, device authorization and token requests: `imap://mail.example.com`,
//! `smtp://mail.example.com:465`, … (draft-ietf-mailmaint-oauth-public). Only the services
//! this bearergate serves are accepted, one per listener: its protocol's URI scheme and its
//! `hostname`, with or without its port. The approved ones become the access token's `aud`,
//! and the proxy refuses the token on every other listener.
//!
//! Written in one normal form (lower-case scheme and host, the port only when the client
//! named it), so that a grant's resources compare by string when a refresh narrows them.

use crate::error::{ErrorCode, OAuthError};

/// At most this many `resource` parameters in one request: a client names the handful of
/// services it uses, and each is checked against every listener.
pub const MAX_RESOURCES: usize = 16;
/// A resource indicator longer than this is refused unparsed: a mail host name is at most
/// 253 characters (RFC 1035), a scheme and port add a dozen.
const MAX_RESOURCE_LEN: usize = 512;

/// The URI schemes of the services the issuer names resources for: IMAP (RFC 5092), SMTP
/// submission, POP3 (RFC 2384) and ManageSieve (RFC 5804).
pub const MAIL_SCHEMES: [&str; 4] = ["imap", "smtp", "pop", "sieve"];

/// One mail service bearergate serves: a listener's protocol scheme, host name and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailResource {
    /// `imap`, `smtp`, `pop` or `sieve` (one of [`MAIL_SCHEMES`]).
    pub scheme: String,
    /// The listener's `hostname` (compared ignoring ASCII case).
    pub host: String,
    /// The listener's port: `scheme://host:port` names this listener alone.
    pub port: u16,
}

impl MailResource {
    /// `scheme://host`, the form a client writes without a port.
    pub fn uri(&self) -> String {
        format!(
            "{}://{}",
            self.scheme.to_ascii_lowercase(),
            self.host.to_ascii_lowercase()
        )
    }
}

/// A resource indicator taken apart: scheme and host lower-cased, the port if written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Indicator {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Indicator {
    /// RFC 8707 §2: an absolute URI without a fragment. For a mail service also nothing but
    /// scheme, host and port (a path of `/` at most, no query, no user info).
    fn parse(uri: &str) -> Option<Self> {
        if uri.len() > MAX_RESOURCE_LEN || uri.bytes().any(|c| c <= b' ' || c == 0x7f) {
            return None;
        }
        let url = url::Url::parse(uri).ok()?;
        let plain = url.fragment().is_none()
            && url.query().is_none()
            && url.username().is_empty()
            && url.password().is_none()
            && matches!(url.path(), "" | "/");
        let host = url.host_str().filter(|host| !host.is_empty())?;
        plain.then(|| Indicator {
            scheme: url.scheme().to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port: url.port(),
        })
    }

    /// Whether it names `service`: same scheme and host, and its port if it has one.
    fn names(&self, service: &MailResource) -> bool {
        self.scheme.eq_ignore_ascii_case(&service.scheme)
            && self.host.eq_ignore_ascii_case(&service.host)
            && self.port.is_none_or(|port| port == service.port)
    }

    /// Whether every service it names is one `wider` names too.
    fn within(&self, wider: &Indicator) -> bool {
        self.scheme == wider.scheme
            && self.host == wider.host
            && (wider.port.is_none() || wider.port == self.port)
    }

    /// The normal form.
    fn to_uri(&self) -> String {
        match self.port {
            Some(port) => format!("{}://{}:{port}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }
}

fn invalid_target(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidTarget, description)
}

/// Checks a request's `resource` parameters against the services served: their normal
/// forms, duplicates dropped, order kept. An unknown or malformed one is `invalid_target`
/// (RFC 8707 §2). None asked: none returned (the token is for the issuer, as before).
pub(crate) fn requested(
    asked: &[String],
    served: &[MailResource],
) -> Result<Vec<String>, OAuthError> {
    if asked.len() > MAX_RESOURCES {
        return Err(invalid_target(&format!(
            "at most {MAX_RESOURCES} resource parameters"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(asked.len());
    for uri in asked {
        let Some(indicator) = Indicator::parse(uri) else {
            return Err(invalid_target(
                "resource must be an absolute URI without query or fragment, such as \
                 imap://mail.example.com",
            ));
        };
        if !served.iter().any(|service| indicator.names(service)) {
            return Err(invalid_target(
                "resource names no mail service of this server",
            ));
        }
        let normal = indicator.to_uri();
        if !out.contains(&normal) {
            out.push(normal);
        }
    }
    Ok(out)
}

/// The resources of a token minted from a code, device authorization or grant that was
/// approved for `granted`: `granted` itself when the token request names none, else the
/// named ones, which must each lie within one granted (RFC 8707 §2.2: a token request may
/// narrow, never widen; `invalid_target` otherwise). A grant without resources covers every
/// service served.
pub(crate) fn narrowed(
    asked: &[String],
    granted: &[String],
    served: &[MailResource],
) -> Result<Vec<String>, OAuthError> {
    if asked.is_empty() {
        return Ok(granted.to_vec());
    }
    let asked = requested(asked, served)?;
    if granted.is_empty() {
        return Ok(asked);
    }
    let granted: Vec<Indicator> = granted.iter().filter_map(|g| Indicator::parse(g)).collect();
    for uri in &asked {
        let covered = Indicator::parse(uri)
            .is_some_and(|indicator| granted.iter().any(|g| indicator.within(g)));
        if !covered {
            return Err(invalid_target(
                "the resource was not granted: a token request may only narrow the resources \
                 approved",
            ));
        }
    }
    Ok(asked)
}

/// Whether `aud` is a resource indicator this issuer could have minted: a mail scheme, a
/// host, nothing else. (The check of an access token's `aud`; which listener it names is
/// the proxy's question.)
pub(crate) fn is_mail_resource(aud: &str) -> bool {
    Indicator::parse(aud).is_some_and(|indicator| MAIL_SCHEMES.contains(&indicator.scheme.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Vec<MailResource> {
        let service = |scheme: &str, port| MailResource {
            scheme: scheme.to_owned(),
            host: "Mail.Example.test".to_owned(),
            port,
        };
        vec![
            service("imap", 993),
            service("imap", 143),
            service("smtp", 465),
            service("sieve", 4190),
        ]
    }

    fn asked(uris: &[&str]) -> Vec<String> {
        uris.iter().map(|uri| (*uri).to_owned()).collect()
    }

    fn code(result: Result<Vec<String>, OAuthError>) -> &'static str {
        result.expect_err("expected an error").code.name()
    }

    #[test]
    fn served_resources_are_accepted_in_normal_form() {
        let got = requested(
            &asked(&[
                "imap://mail.example.test",
                "IMAP://MAIL.example.TEST/",
                "smtp://mail.example.test:465",
                "imap://mail.example.test",
            ]),
            &served(),
        )
        .unwrap();
        assert_eq!(
            got,
            ["imap://mail.example.test", "smtp://mail.example.test:465"]
        );
        assert_eq!(requested(&[], &served()).unwrap(), Vec::<String>::new());
        assert_eq!(served()[0].uri(), "imap://mail.example.test");
    }

    #[test]
    fn unknown_or_malformed_resources_are_invalid_target() {
        for bad in [
            "imap://elsewhere.example",
            "imap://mail.example.test:994",
            "pop://mail.example.test",
            "https://mail.example.test",
            "imap://mail.example.test#frag",
            "imap://mail.example.test/INBOX",
            "imap://mail.example.test?x=1",
            "imap://user@mail.example.test",
            "mail.example.test",
            "imap:mail.example.test",
            "/relative",
            " imap://mail.example.test",
            "",
        ] {
            assert_eq!(
                code(requested(&asked(&[bad]), &served())),
                "invalid_target",
                "{bad:?}"
            );
        }
        let long = format!("imap://{}.test", "a".repeat(MAX_RESOURCE_LEN));
        assert_eq!(code(requested(&[long], &served())), "invalid_target");
        let many = vec!["imap://mail.example.test".to_owned(); MAX_RESOURCES + 1];
        assert_eq!(code(requested(&many, &served())), "invalid_target");
        // Nothing served (no listener): every resource is unknown.
        assert_eq!(
            code(requested(&asked(&["imap://mail.example.test"]), &[])),
            "invalid_target"
        );
    }

    #[test]
    fn token_requests_narrow_but_never_widen() {
        let granted = asked(&["imap://mail.example.test", "smtp://mail.example.test:465"]);
        // Nothing named: everything granted.
        assert_eq!(narrowed(&[], &granted, &served()).unwrap(), granted);
        // A subset, or one port of a granted host.
        assert_eq!(
            narrowed(
                &asked(&["imap://mail.example.test:993"]),
                &granted,
                &served()
            )
            .unwrap(),
            ["imap://mail.example.test:993"]
        );
        assert_eq!(
            narrowed(
                &asked(&["SMTP://mail.example.test:465"]),
                &granted,
                &served()
            )
            .unwrap(),
            ["smtp://mail.example.test:465"]
        );
        // Wider or other: refused.
        for wider in [
            "sieve://mail.example.test",
            "smtp://mail.example.test",
            "imap://elsewhere.example",
        ] {
            assert_eq!(
                code(narrowed(&asked(&[wider]), &granted, &served())),
                "invalid_target",
                "{wider}"
            );
        }
        // A grant without resources covers every service served.
        assert_eq!(
            narrowed(&asked(&["sieve://mail.example.test"]), &[], &served()).unwrap(),
            ["sieve://mail.example.test"]
        );
    }

    #[test]
    fn mail_resources_are_recognised() {
        assert!(is_mail_resource("imap://mail.example.test"));
        assert!(is_mail_resource("sieve://mail.example.test:4190"));
        assert!(!is_mail_resource("https://mail.example.test"));
        assert!(!is_mail_resource("imap://mail.example.test/INBOX"));
        assert!(!is_mail_resource("urn:x"));
    }
}
