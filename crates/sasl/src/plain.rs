//! RFC 4616 PLAIN: the builder backend login uses (Dovecot master user via authzid) and a
//! server-side parser kept for a later password fallback.

use secrecy::SecretString;

use crate::{SaslError, MAX_RESPONSE_LEN};

/// A parsed PLAIN message. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct PlainCredentials {
    /// Identity to act as; `None` when the client sent an empty authzid.
    pub authzid: Option<String>,
    /// Identity whose password this is.
    pub authcid: String,
    /// The password.
    pub password: SecretString,
}

/// Parses a decoded PLAIN message (RFC 4616 §2):
///
/// ```text
/// message   = [authzid] UTF8NUL authcid UTF8NUL passwd
/// authcid   = 1*SAFE ; MUST accept up to 255 octets
/// authzid   = 1*SAFE ; MUST accept up to 255 octets
/// passwd    = 1*SAFE ; MUST accept up to 255 octets
/// SAFE      = UTF1 / UTF2 / UTF3 / UTF4   ; any UTF-8 except NUL
/// ```
///
/// The 255-octet figures are minimums to accept, not maximums; the whole message is bounded
/// by [`MAX_RESPONSE_LEN`] instead.
pub fn parse_plain(decoded: &[u8]) -> Result<PlainCredentials, SaslError> {
    if decoded.len() > MAX_RESPONSE_LEN {
        return Err(SaslError::TooLong {
            len: decoded.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    let mut fields = decoded.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SaslError::MalformedPlain);
    };
    let utf8 = |bytes: &[u8], field: &'static str| {
        String::from_utf8(bytes.to_vec()).map_err(|_| SaslError::InvalidPlainField { field })
    };
    if authcid.is_empty() {
        return Err(SaslError::InvalidPlainField { field: "authcid" });
    }
    if passwd.is_empty() {
        return Err(SaslError::InvalidPlainField { field: "passwd" });
    }
    let authzid = match authzid {
        [] => None,
        bytes => Some(utf8(bytes, "authzid")?),
    };
    Ok(PlainCredentials {
        authzid,
        authcid: utf8(authcid, "authcid")?,
        password: SecretString::from(utf8(passwd, "passwd")?),
    })
}

/// Builds a PLAIN message: `authzid NUL authcid NUL passwd` (an empty `authzid` means none).
///
/// NUL in any field would shift the fields (an authzid of `alice\0proxymaster` must never
/// become a different authcid), so it is refused, as are an empty authcid or password.
pub fn plain_client_response(
    authzid: &str,
    authcid: &str,
    password: &str,
) -> Result<Vec<u8>, SaslError> {
    for (value, field, may_be_empty) in [
        (authzid, "authzid", true),
        (authcid, "authcid", false),
        (password, "passwd", false),
    ] {
        if value.contains('\0') || (value.is_empty() && !may_be_empty) {
            return Err(SaslError::Unencodable { field });
        }
    }
    let mut out = Vec::with_capacity(authzid.len() + authcid.len() + password.len() + 2);
    out.extend_from_slice(authzid.as_bytes());
    out.push(0);
    out.extend_from_slice(authcid.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::{decode_base64, encode_base64};

    #[test]
    fn known_answers() {
        type Expected<'a> = Result<(Option<&'a str>, &'a str, &'a str), SaslError>;
        let table: &[(&[u8], Expected)] = &[
            // RFC 4616 §4 examples
            (
                b"\0tim\0tanstaaftanstaaf",
                Ok((None, "tim", "tanstaaftanstaaf")),
            ),
            (
                b"Ursel\0Kurt\0xipj3plmq",
                Ok((Some("Ursel"), "Kurt", "xipj3plmq")),
            ),
            (
                b"alice\0proxymaster\0secret",
                Ok((Some("alice"), "proxymaster", "secret")),
            ),
            (
                "\0jörg\0pässwörd".as_bytes(),
                Ok((None, "jörg", "pässwörd")),
            ),
            (b"", Err(SaslError::MalformedPlain)),
            (b"\0tim", Err(SaslError::MalformedPlain)),
            (b"a\0b\0c\0d", Err(SaslError::MalformedPlain)),
            (
                b"\0\0pw",
                Err(SaslError::InvalidPlainField { field: "authcid" }),
            ),
            (
                b"\0tim\0",
                Err(SaslError::InvalidPlainField { field: "passwd" }),
            ),
            (
                b"\xff\0tim\0pw",
                Err(SaslError::InvalidPlainField { field: "authzid" }),
            ),
            (
                b"\0t\xffm\0pw",
                Err(SaslError::InvalidPlainField { field: "authcid" }),
            ),
            (
                b"\0tim\0p\xff",
                Err(SaslError::InvalidPlainField { field: "passwd" }),
            ),
        ];
        for (input, expected) in table {
            let got = parse_plain(input);
            let got = got
                .as_ref()
                .map(|c| {
                    (
                        c.authzid.as_deref(),
                        c.authcid.as_str(),
                        c.password.expose_secret(),
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
    fn builder() {
        let built = plain_client_response("alice", "proxymaster", "secret").unwrap();
        assert_eq!(built, b"alice\0proxymaster\0secret");
        assert_eq!(encode_base64(&built), "YWxpY2UAcHJveHltYXN0ZXIAc2VjcmV0");
        let built = plain_client_response("", "tim", "tanstaaftanstaaf").unwrap();
        assert_eq!(
            decode_base64(b"AHRpbQB0YW5zdGFhZnRhbnN0YWFm").unwrap(),
            built
        );
        assert_eq!(
            plain_client_response("alice\0proxymaster", "x", "y"),
            Err(SaslError::Unencodable { field: "authzid" })
        );
        assert_eq!(
            plain_client_response("", "", "y"),
            Err(SaslError::Unencodable { field: "authcid" })
        );
        assert_eq!(
            plain_client_response("", "x", ""),
            Err(SaslError::Unencodable { field: "passwd" })
        );
    }
}
