//! The loopback redirect of the code flow (RFC 8252 §7.3), without I/O: the browser's
//! request head in, what it asks for and what to answer out.
//!
//! Exactly one redirect is accepted: a `GET /?…` whose `state` is ours. Anything else on the
//! port (a favicon, a stray or forged request) is answered and ignored, and the wait goes on;
//! with the right `state`, the code or the error ends it. RFC 9207's `iss`, when present (or
//! promised by the metadata), must be our issuer: a code from another issuer is a mix-up
//! attack, not a sign-in.

use secrecy::SecretString;
use validator::client::Url;

/// Largest request head read from the browser: a redirect with a code and state is a few
/// hundred bytes; browsers add some KiB of headers.
pub const MAX_HEAD: usize = 16 * 1024;

/// What has arrived of the browser's request so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The blank line that ends the head has not come yet.
    Incomplete,
    /// A `GET` for this request target.
    Get(String),
    /// Not a `GET` request we can read, or larger than [`MAX_HEAD`].
    Unreadable,
}

/// Looks at the bytes read so far.
pub fn scan(bytes: &[u8]) -> Head {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if bytes.len() > MAX_HEAD {
            Head::Unreadable
        } else {
            Head::Incomplete
        };
    };
    if end > MAX_HEAD {
        return Head::Unreadable;
    }
    let line_end = bytes.windows(2).position(|w| w == b"\r\n").unwrap_or(end);
    let Ok(line) = std::str::from_utf8(&bytes[..line_end]) else {
        return Head::Unreadable;
    };
    let mut parts = line.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("GET"), Some(target), Some(version), None)
            if target.starts_with('/') && version.starts_with("HTTP/1.") =>
        {
            Head::Get(target.to_owned())
        }
        _ => Head::Unreadable,
    }
}

/// What one request means for the sign-in.
#[derive(Debug)]
pub enum Verdict {
    /// Not the redirect we wait for: answer `status` and keep waiting.
    Ignore {
        /// The HTTP status to answer.
        status: u16,
    },
    /// The redirect, with the code.
    Code(SecretString),
    /// The redirect, with an error (or a code we must not use).
    Refused {
        /// The OAuth error code, or our reason.
        error: String,
        /// The issuer's description, if any (printable characters only).
        description: Option<String>,
    },
}

/// What we expect of the redirect.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Our `state`.
    pub state: String,
    /// Our issuer identifier.
    pub issuer: String,
    /// Whether the issuer promised `iss` (RFC 9207 §3: then its absence is refused).
    pub iss_required: bool,
}

/// Judges a request for `target`.
pub fn judge(target: &str, expected: &Expected) -> Verdict {
    let Ok(url) = Url::parse(&format!("http://127.0.0.1{target}")) else {
        return Verdict::Ignore { status: 400 };
    };
    if url.path() != "/" {
        return Verdict::Ignore { status: 404 };
    }
    let mut state = None;
    let mut code = None;
    let mut error = None;
    let mut description = None;
    let mut iss = None;
    for (name, value) in url.query_pairs() {
        let slot = match name.as_ref() {
            "state" => &mut state,
            "code" => &mut code,
            "error" => &mut error,
            "error_description" => &mut description,
            "iss" => &mut iss,
            _ => continue,
        };
        // RFC 6749 §3.1: parameters must not repeat.
        if slot.replace(value.into_owned()).is_some() {
            return Verdict::Ignore { status: 400 };
        }
    }
    if state.as_deref() != Some(expected.state.as_str()) {
        return Verdict::Ignore { status: 400 };
    }
    match iss.as_deref() {
        Some(iss) if iss != expected.issuer => {
            return Verdict::Refused {
                error: "mix-up".to_owned(),
                description: Some(format!(
                    "the answer came from issuer {}, not {} (RFC 9207)",
                    shown(iss),
                    expected.issuer
                )),
            }
        }
        None if expected.iss_required => {
            return Verdict::Refused {
                error: "mix-up".to_owned(),
                description: Some("the answer does not name its issuer (RFC 9207)".to_owned()),
            }
        }
        _ => {}
    }
    match (code, error) {
        (_, Some(error)) => Verdict::Refused {
            error: shown(&error),
            description: description.map(|d| shown(&d)),
        },
        (Some(code), None) if !code.is_empty() => Verdict::Code(SecretString::from(code)),
        _ => Verdict::Ignore { status: 400 },
    }
}

/// Text from the request, safe for a terminal line.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The whole HTTP answer for `status`: a short page that tells the person where they are.
pub fn response(status: u16) -> Vec<u8> {
    let (reason, text) = match status {
        200 => (
            "OK",
            "Signed in. bearergate has the tokens; you can close this page.",
        ),
        403 => (
            "Forbidden",
            "Sign-in did not complete. The terminal says why.",
        ),
        404 => ("Not Found", "Nothing here."),
        _ => (
            "Bad Request",
            "This is not the answer bearergate is waiting for.",
        ),
    };
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>bearergate</title></head>\
         <body><p>{text}</p></body></html>\n"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nReferrer-Policy: no-referrer\r\n\
         Content-Security-Policy: default-src 'none'\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn expected() -> Expected {
        Expected {
            state: "s1".into(),
            issuer: "https://mail.example.test".into(),
            iss_required: true,
        }
    }

    #[test]
    fn scans_request_heads() {
        assert_eq!(
            scan(b"GET /?code=1 HTTP/1.1\r\nHost: x\r\n"),
            Head::Incomplete
        );
        assert_eq!(
            scan(b"GET /?code=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            Head::Get("/?code=1".into())
        );
        assert_eq!(scan(b"POST / HTTP/1.1\r\n\r\n"), Head::Unreadable);
        assert_eq!(scan(b"GET http://x/ HTTP/1.1\r\n\r\n"), Head::Unreadable);
        assert_eq!(scan(b"GET / / HTTP/1.1\r\n\r\n"), Head::Unreadable);
        assert_eq!(scan(&vec![b'a'; MAX_HEAD + 1]), Head::Unreadable);
    }

    fn code_of(verdict: Verdict) -> Option<String> {
        match verdict {
            Verdict::Code(code) => Some(code.expose_secret().to_owned()),
            _ => None,
        }
    }

    #[test]
    fn only_our_state_counts() {
        let iss = "iss=https%3A%2F%2Fmail.example.test";
        assert_eq!(
            code_of(judge(&format!("/?code=c1&state=s1&{iss}"), &expected())).as_deref(),
            Some("c1")
        );
        for ignored in [
            format!("/?code=c1&state=s2&{iss}"),
            format!("/?code=c1&{iss}"),
            format!("/favicon.ico?code=c1&state=s1&{iss}"),
            format!("/?code=c1&state=s1&state=s1&{iss}"),
            format!("/?state=s1&{iss}"),
        ] {
            assert!(
                matches!(judge(&ignored, &expected()), Verdict::Ignore { .. }),
                "{ignored}"
            );
        }
    }

    #[test]
    fn errors_and_mix_ups_end_the_wait() {
        let verdict = judge(
            "/?error=access_denied&error_description=no%1b&state=s1&iss=https%3A%2F%2Fmail.example.test",
            &expected(),
        );
        match verdict {
            Verdict::Refused { error, description } => {
                assert_eq!(error, "access_denied");
                assert_eq!(description.as_deref(), Some("no"));
            }
            other => panic!("{other:?}"),
        }
        let other_issuer = judge("/?code=c&state=s1&iss=https%3A%2F%2Fevil.test", &expected());
        assert!(matches!(other_issuer, Verdict::Refused { ref error, .. } if error == "mix-up"));
        assert!(matches!(
            judge("/?code=c&state=s1", &expected()),
            Verdict::Refused { .. }
        ));
        let lenient = Expected {
            iss_required: false,
            ..expected()
        };
        assert_eq!(
            code_of(judge("/?code=c&state=s1", &lenient)).as_deref(),
            Some("c")
        );
    }

    #[test]
    fn pages_are_complete_answers() {
        let ok = String::from_utf8(response(200)).unwrap();
        let (head, body) = ok.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.contains("Signed in"));
        assert!(String::from_utf8(response(404))
            .unwrap()
            .starts_with("HTTP/1.1 404"));
    }
}
