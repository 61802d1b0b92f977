//! Google/Microsoft XOAUTH2 client responses: parser and builder.
//!
//! There is no RFC; the format is Google's "OAuth 2.0 Mechanism" page, which Microsoft
//! copies: `user=U^Aauth=Bearer T^A^A`.

use crate::bearer::{is_b64token, parse_auth_value};
use crate::{BearerCredentials, Mechanism, SaslError, MAX_RESPONSE_LEN};

const SEP: u8 = 0x01;

/// Parses a decoded XOAUTH2 client response.
///
/// ```text
/// xoauth2-resp = field *(%x01 field) [%x01 [%x01]]   ; as seen in the wild
/// field        = key "=" value
/// ```
///
/// Tolerant where real clients differ: pairs in any order, `^A^A`, a single `^A` or
/// nothing at the end, any case of `Bearer`, extra blanks around the token. Unknown keys
/// are ignored, like OAUTHBEARER's. Strict where leniency would be a guess: `user` and
/// `auth` are both required and may appear once; empty fields in the middle are errors.
///
/// `user` is raw (no GS2 escaping), must be non-empty UTF-8 and must not contain control
/// characters: it ends up compared with the token's identity and written to logs and
/// backend commands, where CR, LF or NUL would be an injection.
pub fn parse_xoauth2(decoded: &[u8]) -> Result<BearerCredentials, SaslError> {
    if decoded.len() > MAX_RESPONSE_LEN {
        return Err(SaslError::TooLong {
            len: decoded.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    if decoded.is_empty() {
        return Err(SaslError::EmptyResponse);
    }
    let body = decoded.strip_suffix(&[SEP]).unwrap_or(decoded);
    let body = body.strip_suffix(&[SEP]).unwrap_or(body);

    let mut user = None;
    let mut auth = None;
    for field in body.split(|&b| b == SEP) {
        let eq = field
            .iter()
            .position(|&b| b == b'=')
            .ok_or(SaslError::MalformedKvPair)?;
        let (key, value) = (&field[..eq], &field[eq + 1..]);
        if key.is_empty() || !key.iter().all(u8::is_ascii_alphabetic) {
            return Err(SaslError::MalformedKvPair);
        }
        let slot = match key {
            b"user" => &mut user,
            b"auth" => &mut auth,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            let key = if key == b"user" { "user" } else { "auth" };
            return Err(SaslError::DuplicateKey { key });
        }
    }

    let user = parse_user(user.ok_or(SaslError::MissingUser)?)?;
    let token = parse_auth_value(auth.ok_or(SaslError::MissingAuth)?)?;
    Ok(BearerCredentials {
        mechanism: Mechanism::XOAuth2,
        authzid: Some(user),
        token,
        host: None,
        port: None,
    })
}

fn parse_user(value: &[u8]) -> Result<String, SaslError> {
    if value.is_empty() {
        return Err(SaslError::MissingUser);
    }
    let user = std::str::from_utf8(value).map_err(|_| SaslError::InvalidUser)?;
    if user.chars().any(char::is_control) {
        return Err(SaslError::InvalidUser);
    }
    Ok(user.to_owned())
}

/// Builds an XOAUTH2 client response (not yet base64-encoded):
/// `user=U^Aauth=Bearer T^A^A`, exactly Google's layout.
///
/// Refuses a user that is empty or contains control characters (the parser would refuse
/// it, and `^A` would split the message) and a token that is not a b64token.
pub fn xoauth2_client_response(user: &str, token: &str) -> Result<Vec<u8>, SaslError> {
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(SaslError::Unencodable { field: "user" });
    }
    if !is_b64token(token.as_bytes()) {
        return Err(SaslError::Unencodable { field: "token" });
    }
    let mut out = Vec::with_capacity(24 + user.len() + token.len());
    out.extend_from_slice(b"user=");
    out.extend_from_slice(user.as_bytes());
    out.extend_from_slice(b"\x01auth=Bearer ");
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(b"\x01\x01");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::{decode_base64, encode_base64};

    const GOOGLE: &str = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
    const GOOGLE_TOKEN: &str = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg";
    const EXTRA: &str = "dXNlcj11c2VyQGV4YW1wbGUuY29tAWF1dGg9QmVhcmVyIG1GXzkuQjVmLTQuMUpxTQEB";

    #[test]
    fn google_example_parses_and_rebuilds() {
        let decoded = decode_base64(GOOGLE.as_bytes()).unwrap();
        assert_eq!(
            decoded,
            b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
        );
        let creds = parse_xoauth2(&decoded).unwrap();
        assert_eq!(creds.mechanism, Mechanism::XOAuth2);
        assert_eq!(creds.authzid.as_deref(), Some("someuser@example.com"));
        assert_eq!(creds.token.expose_secret(), GOOGLE_TOKEN);
        assert_eq!((creds.host, creds.port), (None, None));
        let built = xoauth2_client_response("someuser@example.com", GOOGLE_TOKEN).unwrap();
        assert_eq!(encode_base64(&built), GOOGLE);
    }

    #[test]
    fn extra_vector() {
        let creds = parse_xoauth2(&decode_base64(EXTRA.as_bytes()).unwrap()).unwrap();
        assert_eq!(creds.authzid.as_deref(), Some("user@example.com"));
        assert_eq!(creds.token.expose_secret(), "mF_9.B5f-4.1JqM");
        let built = xoauth2_client_response("user@example.com", "mF_9.B5f-4.1JqM").unwrap();
        assert_eq!(encode_base64(&built), EXTRA);
    }

    #[test]
    fn known_answers() {
        type Row<'a> = (&'a [u8], Result<(&'a str, &'a str), SaslError>);
        let table: &[Row] = &[
            (b"user=u\x01auth=Bearer T\x01\x01", Ok(("u", "T"))),
            (b"user=u\x01auth=Bearer T\x01", Ok(("u", "T"))),
            (b"user=u\x01auth=Bearer T", Ok(("u", "T"))),
            (b"auth=Bearer T\x01user=u\x01\x01", Ok(("u", "T"))),
            (b"user=u\x01auth=bearer T\x01\x01", Ok(("u", "T"))),
            (b"user=u\x01auth=Bearer  T \x01\x01", Ok(("u", "T"))),
            (b"user=u\x01xyz=1\x01auth=Bearer T\x01\x01", Ok(("u", "T"))),
            // sievelib 1.6's stray comma becomes part of the user (and later mismatches)
            (b"user=alice,\x01auth=Bearer T\x01\x01", Ok(("alice,", "T"))),
            (
                "user=jörg\x01auth=Bearer T\x01\x01".as_bytes(),
                Ok(("jörg", "T")),
            ),
            (b"user=a=b\x01auth=Bearer T\x01\x01", Ok(("a=b", "T"))),
            (b"", Err(SaslError::EmptyResponse)),
            (b"\x01", Err(SaslError::MalformedKvPair)),
            (b"\x01\x01", Err(SaslError::MalformedKvPair)),
            (
                b"user=u\x01auth=Bearer T\x01\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (
                b"user=u\x01\x01auth=Bearer T\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (b"auth=Bearer T\x01\x01", Err(SaslError::MissingUser)),
            (
                b"user=\x01auth=Bearer T\x01\x01",
                Err(SaslError::MissingUser),
            ),
            (b"user=u\x01\x01", Err(SaslError::MissingAuth)),
            (b"user=u\x01auth=\x01\x01", Err(SaslError::EmptyAuth)),
            (
                b"user=u\x01auth=Bearer\x01\x01",
                Err(SaslError::InvalidToken),
            ),
            (
                b"user=u\x01auth=Bearer a b\x01\x01",
                Err(SaslError::InvalidToken),
            ),
            (
                b"user=u\x01auth=MAC T\x01\x01",
                Err(SaslError::UnsupportedScheme),
            ),
            (
                b"user=u\r\n\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidUser),
            ),
            (
                b"user=u\0v\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidUser),
            ),
            (
                b"user=\xff\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidUser),
            ),
            (
                b"user u\x01auth=Bearer T\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (
                b"=u\x01auth=Bearer T\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (
                b"user=u\x01user=v\x01auth=Bearer T\x01\x01",
                Err(SaslError::DuplicateKey { key: "user" }),
            ),
            (
                b"user=u\x01auth=Bearer T\x01auth=Bearer U\x01\x01",
                Err(SaslError::DuplicateKey { key: "auth" }),
            ),
        ];
        for (input, expected) in table {
            let got = parse_xoauth2(input);
            let got = got
                .as_ref()
                .map(|c| {
                    (
                        c.authzid.as_deref().unwrap_or("<none>"),
                        c.token.expose_secret(),
                    )
                })
                .map_err(Clone::clone);
            assert_eq!(
                got,
                expected.clone(),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn builder_refuses_what_it_cannot_encode() {
        assert_eq!(
            xoauth2_client_response("", "T"),
            Err(SaslError::Unencodable { field: "user" })
        );
        assert_eq!(
            xoauth2_client_response("a\x01b", "T"),
            Err(SaslError::Unencodable { field: "user" })
        );
        assert_eq!(
            xoauth2_client_response("a", "T T"),
            Err(SaslError::Unencodable { field: "token" })
        );
    }

    #[test]
    fn too_long_is_rejected() {
        let big = vec![b'a'; MAX_RESPONSE_LEN + 1];
        assert!(matches!(
            parse_xoauth2(&big),
            Err(SaslError::TooLong { .. })
        ));
    }
}
