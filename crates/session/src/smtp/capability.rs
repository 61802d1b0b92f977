//! The proxy's own EHLO extensions before login.

/// What a relayed extension's parameters may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Params {
    /// None are offered, whatever the backend sent.
    Dropped,
    /// Digits, or nothing (`SIZE` without a number: "no fixed limit announced").
    Number,
    /// As the backend sent them: printable ASCII words.
    AsSent,
}

/// The backend's service extensions the proxy offers before login when the backend has
/// them (an allow-list: everything else stays out). Each shapes only how the client
/// writes its envelope and message, which after AUTH go to the backend untouched:
/// - `PIPELINING` (RFC 2920): commands are handled one by one from the buffer anyway,
///   and what follows AUTH stays buffered for the backend.
/// - `ENHANCEDSTATUSCODES` (RFC 2034): every reply of the proxy's carries one.
/// - `8BITMIME` (RFC 6152), `BINARYMIME` and `CHUNKING` (RFC 3030, BDAT), `SMTPUTF8`
///   (RFC 6531): the message's form.
/// - `SIZE` (RFC 1870), the backend's limit.
/// - `DSN` (RFC 3461), `DELIVERBY` (RFC 2852), `MT-PRIORITY` (RFC 6710), `FUTURERELEASE`
///   (RFC 4865), `RRVS` (RFC 7293), `LIMITS` (RFC 9422): envelope parameters.
/// - `BURL` (RFC 4468): the message fetched by URL from the user's IMAP server.
///
/// Left out, however the backend offers them: anything about authentication (`AUTH`) or
/// TLS (`STARTTLS`, `REQUIRETLS`: the proxy's hop to the backend is not the client's),
/// anything that trusts the peer (`XCLIENT`, `XFORWARD`, `ETRN`, `ATRN`), and every
/// keyword not listed here.
const RELAYED: &[(&str, Params)] = &[
    ("PIPELINING", Params::Dropped),
    ("ENHANCEDSTATUSCODES", Params::Dropped),
    ("8BITMIME", Params::Dropped),
    ("BINARYMIME", Params::Dropped),
    ("CHUNKING", Params::Dropped),
    ("SMTPUTF8", Params::Dropped),
    ("SIZE", Params::Number),
    ("DSN", Params::Dropped),
    ("DELIVERBY", Params::AsSent),
    ("MT-PRIORITY", Params::AsSent),
    ("FUTURERELEASE", Params::AsSent),
    ("RRVS", Params::AsSent),
    ("LIMITS", Params::AsSent),
    ("BURL", Params::AsSent),
];

/// What the proxy offers before it has reached the backend: what every submission backend
/// (Postfix, Dovecot) has, so a client plans its message as it will be relayed.
const UNKNOWN_BACKEND: &[&str] = &["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE"];

/// The lines after `250-<host>` in the EHLO reply (RFC 5321 §4.1.1.1).
///
/// - The backend's extensions from [`RELAYED`] (`backend`: its EHLO keywords, upper-cased,
///   with their params), in the backend's order: after login the client talks to the
///   backend, which never advertised anything to it, so nothing it lacks is offered.
///   A keyword whose params are not of the expected form is left out (never trimmed), and
///   so is a repeated one. With no backend reply yet, [`UNKNOWN_BACKEND`].
/// - `STARTTLS` (RFC 3207) only before TLS on a listener that offers it: RFC 3207 §4.2
///   forbids it after the handshake.
/// - `AUTH OAUTHBEARER XOAUTH2` (RFC 4954) only where authentication is allowed: with TLS,
///   or when the listener allows plaintext authentication.
pub(crate) fn ehlo_extensions(
    auth_allowed: bool,
    starttls: bool,
    backend: Option<&[(String, String)]>,
    password_fallback: bool,
) -> Vec<String> {
    let mut list: Vec<String> = match backend {
        Some(keywords) => relayed(keywords),
        None => UNKNOWN_BACKEND.iter().map(|&k| k.to_owned()).collect(),
    };
    if starttls {
        list.push("STARTTLS".to_owned());
    }
    if auth_allowed {
        let mut mechanisms: Vec<&str> = sasl::Mechanism::ALL.iter().map(|m| m.name()).collect();
        if password_fallback {
            // Passed to the backend unchanged (password fallback).
            mechanisms.extend(["PLAIN", "LOGIN"]);
        }
        list.push(format!("AUTH {}", mechanisms.join(" ")));
    }
    list
}

/// The backend's keywords that [`RELAYED`] allows, as EHLO lines.
fn relayed(keywords: &[(String, String)]) -> Vec<String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut lines = Vec::new();
    for (keyword, params) in keywords {
        let Some(&(name, kind)) = RELAYED.iter().find(|(name, _)| name == keyword) else {
            continue;
        };
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let params = params.trim();
        let line = match kind {
            Params::Dropped => Some(name.to_owned()),
            Params::Number if params.is_empty() => Some(name.to_owned()),
            Params::Number => params
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| format!("{name} {params}")),
            Params::AsSent if params.is_empty() => Some(name.to_owned()),
            Params::AsSent => params
                .bytes()
                .all(|b| b == b' ' || b.is_ascii_graphic())
                .then(|| format!("{name} {params}")),
        };
        lines.extend(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keywords(lines: &[(&str, &str)]) -> Vec<(String, String)> {
        lines
            .iter()
            .map(|&(k, p)| (k.to_owned(), p.to_owned()))
            .collect()
    }

    /// Dovecot 2.3 submission's EHLO after login, with what Postfix adds for trusted peers.
    const BACKEND: &[(&str, &str)] = &[
        ("8BITMIME", ""),
        ("AUTH", "PLAIN LOGIN"),
        ("BURL", "imap"),
        ("CHUNKING", ""),
        ("DSN", ""),
        ("ENHANCEDSTATUSCODES", ""),
        ("ETRN", ""),
        ("PIPELINING", ""),
        ("SIZE", "52428800"),
        ("SMTPUTF8", ""),
        ("STARTTLS", ""),
        ("XCLIENT", "NAME ADDR PROTO HELO LOGIN"),
        ("XFORWARD", "NAME ADDR PROTO HELO"),
        ("REQUIRETLS", ""),
        ("VRFY", ""),
        ("X-UNKNOWN", ""),
        ("BINARYMIME", ""),
    ];

    #[test]
    fn the_backends_message_extensions_are_offered_in_its_order() {
        let list = ehlo_extensions(true, false, Some(&keywords(BACKEND)), false);
        assert_eq!(
            list,
            [
                "8BITMIME",
                "BURL imap",
                "CHUNKING",
                "DSN",
                "ENHANCEDSTATUSCODES",
                "PIPELINING",
                "SIZE 52428800",
                "SMTPUTF8",
                "BINARYMIME",
                "AUTH OAUTHBEARER XOAUTH2",
            ]
        );
    }

    #[test]
    fn nothing_privileged_or_about_auth_or_tls_is_relayed() {
        let list = ehlo_extensions(false, true, Some(&keywords(BACKEND)), false);
        let text = list.join("\n");
        for left_out in [
            "XCLIENT",
            "XFORWARD",
            "ETRN",
            "REQUIRETLS",
            "PLAIN",
            "X-UNKNOWN",
        ] {
            assert!(!text.contains(left_out), "{left_out}: {list:?}");
        }
        assert_eq!(list.iter().filter(|l| l.starts_with("AUTH")).count(), 0);
        // STARTTLS is the proxy's own, once, last.
        assert_eq!(list.last().map(String::as_str), Some("STARTTLS"));
        assert_eq!(list.iter().filter(|l| *l == "STARTTLS").count(), 1);
    }

    #[test]
    fn what_the_backend_lacks_is_not_offered() {
        let list = ehlo_extensions(true, false, Some(&keywords(&[("SIZE", "")])), false);
        assert_eq!(list, ["SIZE", "AUTH OAUTHBEARER XOAUTH2"]);
        let list = ehlo_extensions(true, false, Some(&[]), false);
        assert_eq!(list, ["AUTH OAUTHBEARER XOAUTH2"]);
    }

    #[test]
    fn malformed_params_leave_the_keyword_out_and_repeats_count_once() {
        let backend = keywords(&[
            ("SIZE", "10M"),
            ("SIZE", "100"),
            ("BURL", "imap\u{7f}"),
            ("CHUNKING", "ignored"),
            ("CHUNKING", ""),
            ("LIMITS", "RCPTMAX=40 MAILMAX=10"),
        ]);
        let list = ehlo_extensions(false, false, Some(&backend), false);
        assert_eq!(list, ["CHUNKING", "LIMITS RCPTMAX=40 MAILMAX=10"]);
    }

    #[test]
    fn an_unknown_backend_gets_what_every_backend_has() {
        let list = ehlo_extensions(true, false, None, true);
        assert_eq!(
            list,
            [
                "PIPELINING",
                "ENHANCEDSTATUSCODES",
                "8BITMIME",
                "SIZE",
                "AUTH OAUTHBEARER XOAUTH2 PLAIN LOGIN",
            ]
        );
    }
}
