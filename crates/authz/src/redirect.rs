//! Redirect URI rules: which URIs a client may register or use, how a request's URI matches
//! a registered one, and how the response parameters are added.
//!
//! Three kinds are accepted, nothing else (RFC 9700 §2.1, RFC 8252 §7):
//! - `https` with any host (registered clients only);
//! - loopback: `http://127.0.0.1:PORT/…` or `http://[::1]:PORT/…`, written as the URL parser
//!   writes it (no `..`, no `127.1`); `localhost` is refused because a name can resolve
//!   elsewhere (RFC 8252 §8.3); the port may vary (§7.3);
//! - a private-use scheme containing a dot, such as `com.example.app:/cb` (§7.1).

use std::net::IpAddr;

use url::{Host, Url};

use crate::error::{ErrorCode, OAuthError};

/// What kind of redirect a URI is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedirectKind {
    /// `https://host/…`.
    Https,
    /// `http://127.0.0.1:PORT/…` or `http://[::1]:PORT/…`.
    Loopback,
    /// `reverse.dns.name:/…`.
    PrivateUse,
}

impl RedirectKind {
    /// Whether any app on the device could receive the redirect (a native app's loopback
    /// port or claimed scheme): such a client's identity cannot be assured (RFC 8252 §8.6).
    pub(crate) fn is_native(self) -> bool {
        matches!(self, RedirectKind::Loopback | RedirectKind::PrivateUse)
    }
}

/// Schemes that are never redirect targets, even though none contains a dot today: named so
/// that the rule reads as what it protects against.
const FORBIDDEN_SCHEMES: [&str; 6] = ["http", "https", "javascript", "data", "file", "vbscript"];

/// Parses and classifies `uri`; `None` when it is none of the accepted kinds, has a
/// fragment (RFC 6749 §3.1.2) or user info, or contains spaces or control characters.
pub(crate) fn classify(uri: &str) -> Option<(Url, RedirectKind)> {
    // The url crate strips surrounding whitespace and tabs; refuse them instead, so the
    // string bound to the code is the one that is checked.
    if uri.is_empty() || uri.bytes().any(|c| c <= b' ' || c == 0x7f) {
        return None;
    }
    let url = Url::parse(uri).ok()?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    let kind = match url.scheme() {
        "https" => {
            if !matches!(
                url.host(),
                Some(Host::Domain(_) | Host::Ipv4(_) | Host::Ipv6(_))
            ) {
                return None;
            }
            RedirectKind::Https
        }
        "http" => {
            if !is_loopback_ip(&url) || !written_as_parsed(uri, &url) {
                return None;
            }
            RedirectKind::Loopback
        }
        scheme => {
            if !scheme.contains('.') || FORBIDDEN_SCHEMES.contains(&scheme) {
                return None;
            }
            RedirectKind::PrivateUse
        }
    };
    Some((url, kind))
}

/// Whether `uri` is already in the form the URL parser writes it (an empty path aside), so
/// that the string a code is bound to is the address the browser is sent to. Loopback URIs
/// are compared parsed (their port varies), where `/x/../cb`, `HTTP:`, `127.1`, `:80` or
/// `[0:0:0:0:0:0:0:1]` would otherwise pass as other spellings of a registered URI.
fn written_as_parsed(uri: &str, url: &Url) -> bool {
    let parsed = url.as_str();
    parsed == uri
        || (url.path() == "/" && url.query().is_none() && parsed.strip_suffix('/') == Some(uri))
}

fn is_loopback_ip(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        _ => false,
    }
}

/// Whether `uri` may be registered (RFC 7591 or the command line): https, loopback or
/// private-use.
pub(crate) fn check_registrable(uri: &str) -> Result<RedirectKind, OAuthError> {
    classify(uri).map(|(_, kind)| kind).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            "redirect URIs must be https, http://127.0.0.1 or http://[::1] (any port), or a \
             private-use scheme such as com.example.app:/callback, without a fragment",
        )
    })
}

/// For an unregistered client: only a loopback or private-use redirect, where PKCE is what
/// keeps a code from being used by someone else.
pub(crate) fn unregistered_redirect(uri: &str) -> Option<RedirectKind> {
    classify(uri)
        .map(|(_, kind)| kind)
        .filter(|kind| kind.is_native())
}

/// For a registered client: the redirect URI to use, or `None` when the request's does not
/// match. Matching is exact string comparison, except that a registered loopback URI
/// matches the same URI on any port (RFC 8252 §7.3). Omitting `redirect_uri` is allowed
/// only when exactly one is registered and it is not a loopback one (whose port varies).
pub(crate) fn match_registered(registered: &[String], requested: Option<&str>) -> Option<String> {
    let Some(requested) = requested else {
        return match registered {
            [only] if classify(only).is_some_and(|(_, kind)| kind != RedirectKind::Loopback) => {
                Some(only.clone())
            }
            _ => None,
        };
    };
    if registered.iter().any(|uri| uri == requested) {
        return Some(requested.to_owned());
    }
    let (asked, RedirectKind::Loopback) = classify(requested)? else {
        return None;
    };
    registered
        .iter()
        .filter_map(|uri| classify(uri))
        .any(|(url, kind)| kind == RedirectKind::Loopback && same_but_port(&url, &asked))
        .then(|| requested.to_owned())
}

fn same_but_port(registered: &Url, asked: &Url) -> bool {
    registered.scheme() == asked.scheme()
        && registered.host() == asked.host()
        && registered.path() == asked.path()
        && registered.query() == asked.query()
}

/// What a person is shown as the redirect's destination: the host for http(s), the scheme
/// (`com.example.app:`) for a private-use one.
pub(crate) fn display_host(uri: &str) -> Option<String> {
    let (url, kind) = classify(uri)?;
    match kind {
        RedirectKind::PrivateUse => Some(format!("{}:", url.scheme())),
        RedirectKind::Https | RedirectKind::Loopback => url.host_str().map(str::to_owned),
    }
}

/// `uri` with `params` appended to its query (after any query it already has).
pub(crate) fn with_params(uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(uri).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in params {
            query.append_pair(name, value);
        }
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_accepted_kinds() {
        let cases = [
            ("https://app.example/cb", Some(RedirectKind::Https)),
            ("http://127.0.0.1:8080/cb", Some(RedirectKind::Loopback)),
            ("http://127.0.0.1/cb", Some(RedirectKind::Loopback)),
            ("http://[::1]:51000/", Some(RedirectKind::Loopback)),
            (
                "com.example.app:/oauth2redirect",
                Some(RedirectKind::PrivateUse),
            ),
            ("http://localhost:8080/cb", None),
            ("http://app.example/cb", None),
            ("http://127.0.0.1.evil.example/cb", None),
            ("https://app.example/cb#frag", None),
            ("https://user:pw@app.example/cb", None),
            ("myapp:/cb", None),
            ("javascript:alert(1)", None),
            ("data:text/html,hi", None),
            ("file:///etc/passwd", None),
            (" https://app.example/cb", None),
            ("relative/path", None),
            ("", None),
        ];
        for (uri, expected) in cases {
            assert_eq!(classify(uri).map(|(_, kind)| kind), expected, "{uri}");
        }
    }

    #[test]
    fn loopback_redirects_must_be_written_canonically() {
        // The string a code is bound to must be where the browser goes: no dot segments,
        // no other spellings of the address, scheme or port, which the URL parser would
        // quietly rewrite before the redirect.
        for uri in [
            "http://127.0.0.1:9/x/../native",
            "http://127.0.0.1:9/%2e%2e/native",
            "http://127.0.0.1:9/./native",
            "HTTP://127.0.0.1:9/native",
            "http://127.1:9/native",
            "http://0x7f.0.0.1:9/native",
            "http://2130706433:9/native",
            "http://[0:0:0:0:0:0:0:1]:9/native",
            "http://127.0.0.1:80/native",
            "http://127.0.0.1:09/native",
            "http://127.0.0.1:8000\\@evil.example/",
        ] {
            assert_eq!(classify(uri).map(|(_, kind)| kind), None, "{uri}");
            assert_eq!(unregistered_redirect(uri), None, "{uri}");
        }
        for uri in [
            "http://127.0.0.1:9",
            "http://127.0.0.1:9/",
            "http://[::1]:9/native?app=1",
        ] {
            assert_eq!(
                classify(uri).map(|(_, kind)| kind),
                Some(RedirectKind::Loopback),
                "{uri}"
            );
        }
        let registered = vec!["http://127.0.0.1:8000/native".to_owned()];
        for uri in [
            "http://127.0.0.1:49152/x/../native",
            "http://127.0.0.1:49152/%6eative",
            "HTTP://127.0.0.1:49152/native",
        ] {
            assert_eq!(match_registered(&registered, Some(uri)), None, "{uri}");
        }
    }

    #[test]
    fn userinfo_zone_ids_and_odd_schemes_are_refused() {
        for uri in [
            "http://evil.example@127.0.0.1:9/cb",
            "http://127.0.0.1:9@evil.example/cb",
            "http://[::1%25lo]:9/cb",
            "https://[fe80::1%25eth0]/cb",
            "com.example.app://user@host/cb",
            "javascript://127.0.0.1/%0aalert(1)",
            "vbscript:msgbox(1)",
            "data:text/html;base64,PHNjcmlwdD4=",
            "myapp:/cb",
            "http://[::ffff:127.0.0.1]:9/cb",
            "http://127.0.0.2:9/cb",
            "http://0.0.0.0:9/cb",
            "http://localhost.:9/cb",
            "https://app.example/cb#",
            "http://127.0.0.1:9/cb#",
            "https://app.example/cb\t",
            "https://app.example/c\u{0}b",
        ] {
            assert_eq!(classify(uri).map(|(_, kind)| kind), None, "{uri}");
        }
    }

    #[test]
    fn unregistered_clients_get_only_native_redirects() {
        assert_eq!(
            unregistered_redirect("http://127.0.0.1:1234/x"),
            Some(RedirectKind::Loopback)
        );
        assert_eq!(
            unregistered_redirect("org.example.mail:/cb"),
            Some(RedirectKind::PrivateUse)
        );
        assert_eq!(unregistered_redirect("https://app.example/cb"), None);
    }

    #[test]
    fn registered_matching_is_exact_except_loopback_port() {
        let registered = vec![
            "https://app.example/cb".to_owned(),
            "http://127.0.0.1:8000/native".to_owned(),
        ];
        let matched = |uri| match_registered(&registered, Some(uri));
        assert!(matched("https://app.example/cb").is_some());
        assert!(matched("https://app.example/cb/").is_none());
        assert!(matched("https://app.example/other").is_none());
        assert!(matched("https://app.example/cb?x=1").is_none());
        assert_eq!(
            matched("http://127.0.0.1:49152/native").as_deref(),
            Some("http://127.0.0.1:49152/native")
        );
        assert!(matched("http://127.0.0.1:49152/other").is_none());
        assert!(matched("http://[::1]:49152/native").is_none());
    }

    #[test]
    fn omitted_redirect_only_for_one_non_loopback() {
        let one = vec!["https://app.example/cb".to_owned()];
        assert_eq!(match_registered(&one, None), Some(one[0].clone()));
        let loopback = vec!["http://127.0.0.1/cb".to_owned()];
        assert_eq!(match_registered(&loopback, None), None);
        let two = vec![one[0].clone(), "https://b.example/cb".to_owned()];
        assert_eq!(match_registered(&two, None), None);
    }

    #[test]
    fn params_are_appended_to_an_existing_query() {
        let url = with_params(
            "https://app.example/cb?a=1",
            &[("code", "x y"), ("state", "s&t")],
        )
        .unwrap();
        assert_eq!(url, "https://app.example/cb?a=1&code=x+y&state=s%26t");
        let url = with_params("com.example.app:/cb", &[("code", "c")]).unwrap();
        assert_eq!(url, "com.example.app:/cb?code=c");
    }

    #[test]
    fn display_host_names_the_destination() {
        assert_eq!(
            display_host("https://app.example:8443/cb").as_deref(),
            Some("app.example")
        );
        assert_eq!(
            display_host("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(display_host("http://[::1]:9/cb").as_deref(), Some("[::1]"));
    }
}
