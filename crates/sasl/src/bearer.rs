//! The `auth` value both OAuth mechanisms carry: an HTTP `Authorization` header value with
//! the Bearer scheme (RFC 6750 §2.1).

use secrecy::SecretString;

use crate::{SaslError, MAX_TOKEN_LEN};

/// Whether `token` matches RFC 6750 §2.1:
///
/// ```text
/// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
/// ```
///
/// Checked before a token goes anywhere (cache key, introspection request, log hash) so
/// that nothing downstream has to think about separators, quotes or control characters.
pub fn is_b64token(token: &[u8]) -> bool {
    let body_len = token
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
        .count();
    body_len > 0 && token[body_len..].iter().all(|&b| b == b'=')
}

fn is_blank(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

fn trim_blanks(mut value: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = value {
        if !is_blank(first) {
            break;
        }
        value = rest;
    }
    while let [rest @ .., last] = value {
        if !is_blank(last) {
            break;
        }
        value = rest;
    }
    value
}

/// Parses an `auth` value:
///
/// ```text
/// credentials = "Bearer" 1*SP b64token        ; RFC 6750 §2.1, scheme case-insensitive
/// ```
///
/// Tolerated, because real clients do it: any case of `Bearer` (RFC 7628 §4 says so),
/// several spaces or tabs after it, blanks before the scheme and after the token.
///
/// An empty value is [`SaslError::EmptyAuth`], not a generic error: RFC 7628 §4.3 shows
/// clients sending `auth=` on purpose to fetch the discovery challenge. A token longer than
/// [`MAX_TOKEN_LEN`] is [`SaslError::TooLong`]: the client hears "too long", not "invalid".
pub(crate) fn parse_auth_value(value: &[u8]) -> Result<SecretString, SaslError> {
    let value = trim_blanks(value);
    if value.is_empty() {
        return Err(SaslError::EmptyAuth);
    }
    let scheme_len = value.iter().take_while(|b| !is_blank(b)).count();
    let (scheme, rest) = value.split_at(scheme_len);
    if !scheme.eq_ignore_ascii_case(b"Bearer") {
        return Err(SaslError::UnsupportedScheme);
    }
    let token = trim_blanks(rest);
    if token.len() > MAX_TOKEN_LEN {
        return Err(SaslError::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    if !is_b64token(token) {
        return Err(SaslError::InvalidToken);
    }
    // is_b64token admits ASCII only, so this cannot fail; stay panic-free regardless.
    let token = std::str::from_utf8(token).map_err(|_| SaslError::InvalidToken)?;
    Ok(SecretString::from(token))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn b64token_known_answers() {
        let table: &[(&[u8], bool)] = &[
            (b"mF_9.B5f-4.1JqM", true),
            (b"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", true),
            (b"a~b+c/d", true),
            (b"abc=", true),
            (b"abc===", true),
            (b"", false),
            (b"=", false),
            (b"==abc", false),
            (b"ab=c", false),
            (b"ab c", false),
            (b"ab,c", false),
            (b"ab\"c", false),
            (b"ab\x01c", false),
            (b"ab\r\nc", false),
            ("tökén".as_bytes(), false),
        ];
        for (token, ok) in table {
            assert_eq!(
                is_b64token(token),
                *ok,
                "{:?}",
                String::from_utf8_lossy(token)
            );
        }
    }

    #[test]
    fn auth_value_known_answers() {
        let table: &[(&[u8], Result<&str, SaslError>)] = &[
            (b"Bearer mF_9.B5f-4.1JqM", Ok("mF_9.B5f-4.1JqM")),
            (b"bearer mF_9.B5f-4.1JqM", Ok("mF_9.B5f-4.1JqM")),
            (b"BeArEr mF_9.B5f-4.1JqM", Ok("mF_9.B5f-4.1JqM")),
            (b"BEARER  mF_9", Ok("mF_9")),
            (b"Bearer\tmF_9", Ok("mF_9")),
            (b" Bearer mF_9 ", Ok("mF_9")),
            (b"", Err(SaslError::EmptyAuth)),
            (b"   ", Err(SaslError::EmptyAuth)),
            (b"Bearer", Err(SaslError::InvalidToken)),
            (b"Bearer ", Err(SaslError::InvalidToken)),
            (b"Bearer a b", Err(SaslError::InvalidToken)),
            (b"Bearer a,b", Err(SaslError::InvalidToken)),
            (b"Bearermf", Err(SaslError::UnsupportedScheme)),
            (b"Basic dXNlcjpwYXNz", Err(SaslError::UnsupportedScheme)),
            (
                b"OAuth realm=\"Example\",oauth_token=\"x\"",
                Err(SaslError::UnsupportedScheme),
            ),
        ];
        for (value, expected) in table {
            let got = parse_auth_value(value);
            let got = got
                .as_ref()
                .map(|t| t.expose_secret())
                .map_err(Clone::clone);
            assert_eq!(
                got,
                expected.clone(),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn token_length_limit() {
        let at_limit = format!("Bearer {}", "t".repeat(MAX_TOKEN_LEN));
        let got = parse_auth_value(at_limit.as_bytes()).map(|t| t.expose_secret().len());
        assert_eq!(got, Ok(MAX_TOKEN_LEN));
        let over = format!("Bearer {}", "t".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            parse_auth_value(over.as_bytes()).map(|_| ()),
            Err(SaslError::TooLong {
                len: MAX_TOKEN_LEN + 1,
                max: MAX_TOKEN_LEN
            })
        );
        // Too long is said before anything else about the token.
        let over_and_bad = format!("Bearer {} x", "t".repeat(MAX_TOKEN_LEN));
        assert!(matches!(
            parse_auth_value(over_and_bad.as_bytes()),
            Err(SaslError::TooLong { .. })
        ));
    }
}
