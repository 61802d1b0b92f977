//! RFC 7628 OAUTHBEARER client responses: parser and builder.

use crate::bearer::{is_b64token, parse_auth_value};
use crate::gs2::{encode_saslname, gs2_header};
use crate::{BearerCredentials, Mechanism, SaslError, MAX_RESPONSE_LEN};

const KVSEP: u8 = 0x01;

/// Parses a decoded OAUTHBEARER client response (RFC 7628 §3.1):
///
/// ```text
/// client-resp = (gs2-header kvsep *kvpair kvsep) / kvsep
/// kvpair      = key "=" value kvsep
/// key         = 1*(ALPHA)
/// value       = *(VCHAR / SP / HTAB / CR / LF )
/// ```
///
/// * The `/ kvsep` branch (a lone `^A`) is only meaningful as the dummy answer to an error
///   challenge; as a credential it is [`SaslError::LoneKvsep`] (§3.1 lets the server "simply
///   fail").
/// * `auth` is required and parsed by the Bearer rules (case-insensitive scheme, extra
///   blanks tolerated, token checked as an RFC 6750 b64token). An empty `auth=` is
///   [`SaslError::EmptyAuth`], which asks for the discovery challenge (§4.3).
/// * `host` and `port` are kept for the caller to compare if it wants to (§3.2); `port` is
///   decimal without leading zeros. An empty `host=` counts as absent.
/// * Every other key (`mthd`, `path`, `post`, `qs`, anything) is ignored, as §3.1 requires,
///   but its value must still follow the grammar.
/// * `auth`, `host` and `port` may appear once each: with two, which one the client meant
///   would be a guess.
/// * The GS2 header rules, including the refusal of the §4.4 `user=` erratum, are described
///   on the (private) header parser: `n`/`y` accepted, `F,` tolerated, `p=` refused with
///   [`SaslError::ChannelBindingUnsupported`], `user=` refused with
///   [`SaslError::NonStandardAuthzid`].
pub fn parse_oauthbearer(decoded: &[u8]) -> Result<BearerCredentials, SaslError> {
    if decoded.len() > MAX_RESPONSE_LEN {
        return Err(SaslError::TooLong {
            len: decoded.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    match decoded {
        [] => return Err(SaslError::EmptyResponse),
        [KVSEP] => return Err(SaslError::LoneKvsep),
        _ => {}
    }
    let (authzid, rest) = gs2_header(decoded)?;
    let mut pairs = rest
        .strip_prefix(&[KVSEP])
        .ok_or(SaslError::MalformedGs2Header)?;

    let mut auth = None;
    let mut host = None;
    let mut port = None;
    loop {
        match pairs {
            [KVSEP] => break,
            [] => return Err(SaslError::MissingTerminator),
            _ => {}
        }
        let (KvPair { key, value }, after) = kvpair(pairs)?;
        pairs = after;
        match key {
            b"auth" => set_once(&mut auth, value, "auth")?,
            b"host" => set_once(&mut host, value, "host")?,
            b"port" => set_once(&mut port, value, "port")?,
            _ => {}
        }
    }

    let token = parse_auth_value(auth.ok_or(SaslError::MissingAuth)?)?;
    let host = match host {
        None | Some([]) => None,
        Some(value) => Some(String::from_utf8(value.to_vec()).map_err(|_| SaslError::InvalidHost)?),
    };
    let port = port.map(parse_port).transpose()?;
    Ok(BearerCredentials {
        mechanism: Mechanism::OAuthBearer,
        authzid,
        token,
        host,
        port,
    })
}

fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    value: &'a [u8],
    key: &'static str,
) -> Result<(), SaslError> {
    if slot.replace(value).is_some() {
        return Err(SaslError::DuplicateKey { key });
    }
    Ok(())
}

/// One `key=value` pair, borrowed from the response.
struct KvPair<'a> {
    key: &'a [u8],
    value: &'a [u8],
}

/// `kvpair = key "=" value kvsep`; returns the pair and what follows the separator.
fn kvpair(input: &[u8]) -> Result<(KvPair<'_>, &[u8]), SaslError> {
    let key_len = input.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    if key_len == 0 || input.get(key_len) != Some(&b'=') {
        return Err(SaslError::MalformedKvPair);
    }
    let key = &input[..key_len];
    let value_and_rest = &input[key_len + 1..];
    let value_len = value_and_rest
        .iter()
        .position(|&b| b == KVSEP)
        .ok_or(SaslError::MissingTerminator)?;
    let value = &value_and_rest[..value_len];
    if !value.iter().all(|&b| is_value_char(b)) {
        return Err(SaslError::MalformedKvPair);
    }
    Ok((KvPair { key, value }, &value_and_rest[value_len + 1..]))
}

/// `value = *(VCHAR / SP / HTAB / CR / LF)`.
fn is_value_char(b: u8) -> bool {
    matches!(b, 0x21..=0x7e | b' ' | b'\t' | b'\r' | b'\n')
}

/// Port: decimal, no leading zeros (RFC 7628 §3.1), 1–65535.
fn parse_port(value: &[u8]) -> Result<u16, SaslError> {
    let digits_ok = !value.is_empty() && value.len() <= 5 && value.iter().all(u8::is_ascii_digit);
    if !digits_ok || value[0] == b'0' {
        return Err(SaslError::InvalidPort);
    }
    let port = value
        .iter()
        .fold(0u32, |acc, &d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(port).map_err(|_| SaslError::InvalidPort)
}

/// Builds an OAUTHBEARER client response (not yet base64-encoded), in the field order of
/// RFC 7628 §4.1: `n,a=AUTHZID,^Ahost=H^Aport=P^Aauth=Bearer T^A^A`.
///
/// Used for backend login and tests. The authzid is escaped (`,` → `=2C`, `=` → `=3D`);
/// `Some("")` is treated as no authzid, since a saslname cannot be empty. Values that would
/// change the message's structure are refused rather than mangled: a token that is not a
/// b64token, a host outside the `value` grammar or containing `^A`, an authzid with NUL.
/// Port 0 is refused because the parser refuses it too.
pub fn oauthbearer_client_response(
    authzid: Option<&str>,
    token: &str,
    host: Option<&str>,
    port: Option<u16>,
) -> Result<Vec<u8>, SaslError> {
    if !is_b64token(token.as_bytes()) {
        return Err(SaslError::Unencodable { field: "token" });
    }
    let mut out = Vec::with_capacity(64 + token.len());
    out.extend_from_slice(b"n,");
    if let Some(authzid) = authzid.filter(|a| !a.is_empty()) {
        out.extend_from_slice(b"a=");
        out.extend_from_slice(encode_saslname(authzid)?.as_bytes());
    }
    out.extend_from_slice(b",\x01");
    if let Some(host) = host {
        if !host.bytes().all(is_value_char) {
            return Err(SaslError::Unencodable { field: "host" });
        }
        out.extend_from_slice(b"host=");
        out.extend_from_slice(host.as_bytes());
        out.push(KVSEP);
    }
    if let Some(port) = port {
        if port == 0 {
            return Err(SaslError::Unencodable { field: "port" });
        }
        out.extend_from_slice(format!("port={port}\x01").as_bytes());
    }
    out.extend_from_slice(b"auth=Bearer ");
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(b"\x01\x01");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::{decode_base64, encode_base64};

    /// RFC 7628 §4.1 IMAP, as base64 on the wire.
    const RFC_4_1_IMAP: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
    const RFC_4_1_SMTP: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
    const RFC_4_2_OAUTH10A: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9ZXhhbXBsZS5jb20BcG9ydD0xNDMBYXV0aD1PQXV0aCByZWFsbT0iRXhhbXBsZSIsb2F1dGhfY29uc3VtZXJfa2V5PSI5ZGpkajgyaDQ4ZGpzOWQyIixvYXV0aF90b2tlbj0ia2trOWQ3ZGgzazM5c2p2NyIsb2F1dGhfc2lnbmF0dXJlX21ldGhvZD0iSE1BQy1TSEExIixvYXV0aF90aW1lc3RhbXA9IjEzNzEzMTIwMSIsb2F1dGhfbm9uY2U9IjdkOGYzZTRhIixvYXV0aF9zaWduYXR1cmU9IlRtOTBJR0VnY21WaGJDQnphV2R1WVhSMWNtVSUzRCIBAQ==";
    const RFC_4_3_EMPTY_AUTH: &str =
        "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9AQE=";
    const RFC_4_4_ERRATUM: &str = "bix1c2VyPXNvbWV1c2VyQGV4YW1wbGUuY29tLAFhdXRoPUJlYXJlciB2RjlkZnQ0cW1UYzJOdmIzUmxja0JoZEhSaGRtbHpkR0V1WTI5dENnPT0BAQ==";
    const EXTRA_993: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9aW1hcC5leGFtcGxlLmNvbQFwb3J0PTk5MwFhdXRoPUJlYXJlciBtRl85LkI1Zi00LjFKcU0BAQ==";
    const EXTRA_NO_AUTHZID: &str = "biwsAWF1dGg9QmVhcmVyIG1GXzkuQjVmLTQuMUpxTQEB";
    const RFC_TOKEN: &str = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";

    fn parse_b64(line: &str) -> Result<BearerCredentials, SaslError> {
        parse_oauthbearer(&decode_base64(line.as_bytes())?)
    }

    #[test]
    fn rfc7628_4_1_imap_parses_and_rebuilds_byte_for_byte() {
        let decoded = decode_base64(RFC_4_1_IMAP.as_bytes()).unwrap();
        assert_eq!(
            decoded,
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
        );
        assert_eq!(decoded.len(), 111);
        let creds = parse_oauthbearer(&decoded).unwrap();
        assert_eq!(creds.mechanism, Mechanism::OAuthBearer);
        assert_eq!(creds.authzid.as_deref(), Some("user@example.com"));
        assert_eq!(creds.token.expose_secret(), RFC_TOKEN);
        assert_eq!(creds.host.as_deref(), Some("server.example.com"));
        assert_eq!(creds.port, Some(143));

        let built = oauthbearer_client_response(
            Some("user@example.com"),
            RFC_TOKEN,
            Some("server.example.com"),
            Some(143),
        )
        .unwrap();
        assert_eq!(encode_base64(&built), RFC_4_1_IMAP);
    }

    #[test]
    fn rfc7628_4_1_smtp() {
        let creds = parse_b64(RFC_4_1_SMTP).unwrap();
        assert_eq!(creds.port, Some(587));
        assert_eq!(creds.token.expose_secret(), RFC_TOKEN);
        let built = oauthbearer_client_response(
            Some("user@example.com"),
            RFC_TOKEN,
            Some("server.example.com"),
            Some(587),
        )
        .unwrap();
        assert_eq!(encode_base64(&built), RFC_4_1_SMTP);
    }

    #[test]
    fn rfc7628_4_2_oauth10a_is_an_unsupported_scheme() {
        let err = parse_b64(RFC_4_2_OAUTH10A).unwrap_err();
        assert_eq!(err, SaslError::UnsupportedScheme);
        assert!(err.challenge_status().is_some());
    }

    #[test]
    fn rfc7628_4_3_empty_auth_asks_for_the_challenge() {
        let decoded = decode_base64(RFC_4_3_EMPTY_AUTH.as_bytes()).unwrap();
        assert_eq!(
            decoded,
            b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=\x01\x01"
        );
        let err = parse_oauthbearer(&decoded).unwrap_err();
        assert_eq!(err, SaslError::EmptyAuth);
        assert!(err.challenge_status().is_some());
    }

    #[test]
    fn rfc7628_4_4_erratum_is_refused_deliberately() {
        let decoded = decode_base64(RFC_4_4_ERRATUM.as_bytes()).unwrap();
        assert!(decoded.starts_with(b"n,user=someuser@example.com,\x01auth=Bearer "));
        assert_eq!(
            parse_oauthbearer(&decoded).unwrap_err(),
            SaslError::NonStandardAuthzid
        );
    }

    #[test]
    fn extra_vectors() {
        let creds = parse_b64(EXTRA_993).unwrap();
        assert_eq!(creds.authzid.as_deref(), Some("user@example.com"));
        assert_eq!(creds.host.as_deref(), Some("imap.example.com"));
        assert_eq!(creds.port, Some(993));
        assert_eq!(creds.token.expose_secret(), "mF_9.B5f-4.1JqM");
        let built = oauthbearer_client_response(
            Some("user@example.com"),
            "mF_9.B5f-4.1JqM",
            Some("imap.example.com"),
            Some(993),
        )
        .unwrap();
        assert_eq!(encode_base64(&built), EXTRA_993);

        let creds = parse_b64(EXTRA_NO_AUTHZID).unwrap();
        assert_eq!(creds.authzid, None);
        assert_eq!(creds.host, None);
        assert_eq!(creds.port, None);
        assert_eq!(creds.token.expose_secret(), "mF_9.B5f-4.1JqM");
        for authzid in [None, Some("")] {
            let built = oauthbearer_client_response(authzid, "mF_9.B5f-4.1JqM", None, None);
            assert_eq!(encode_base64(&built.unwrap()), EXTRA_NO_AUTHZID);
        }
    }

    #[test]
    fn known_answers() {
        type Expected<'a> =
            Result<(Option<&'a str>, &'a str, Option<&'a str>, Option<u16>), SaslError>;
        let table: &[(&[u8], Expected)] = &[
            (b"n,,\x01auth=Bearer T\x01\x01", Ok((None, "T", None, None))),
            (b"y,,\x01auth=bearer T\x01\x01", Ok((None, "T", None, None))),
            (
                b"F,n,,\x01auth=BEARER   T\x01\x01",
                Ok((None, "T", None, None)),
            ),
            // unknown and reserved keys are ignored, wherever they are
            (
                b"n,,\x01mthd=POST\x01path=/x y\x01xyz=\x01auth=Bearer T\x01qs=a=b\x01\x01",
                Ok((None, "T", None, None)),
            ),
            (
                b"n,a=a=2Cb,\x01auth=Bearer T\x01\x01",
                Ok((Some("a,b"), "T", None, None)),
            ),
            (
                b"n,,\x01host=\x01auth=Bearer T\x01\x01",
                Ok((None, "T", None, None)),
            ),
            (
                b"n,,\x01port=65535\x01host=h\x01auth=Bearer T\x01\x01",
                Ok((None, "T", Some("h"), Some(65_535))),
            ),
            (b"", Err(SaslError::EmptyResponse)),
            (b"\x01", Err(SaslError::LoneKvsep)),
            (b"\x01\x01", Err(SaslError::MalformedGs2Header)),
            (b"n,,", Err(SaslError::MalformedGs2Header)),
            (
                b"n,,auth=Bearer T\x01\x01",
                Err(SaslError::MalformedGs2Header),
            ),
            (b"n,,\x01", Err(SaslError::MissingTerminator)),
            (b"n,,\x01\x01", Err(SaslError::MissingAuth)),
            (
                b"n,,\x01auth=Bearer T\x01",
                Err(SaslError::MissingTerminator),
            ),
            (b"n,,\x01auth=Bearer T", Err(SaslError::MissingTerminator)),
            (
                b"n,,\x01auth=Bearer T\x01\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (
                b"n,,\x01auth=Bearer T\x01\x01x",
                Err(SaslError::MalformedKvPair),
            ),
            (b"n,,\x01host=h\x01\x01", Err(SaslError::MissingAuth)),
            (b"n,,\x01auth=\x01\x01", Err(SaslError::EmptyAuth)),
            (b"n,,\x01auth=Bearer\x01\x01", Err(SaslError::InvalidToken)),
            (
                b"n,,\x01auth=Bearer a\"b\x01\x01",
                Err(SaslError::InvalidToken),
            ),
            (
                b"n,,\x01auth=Bearer a=b\x01\x01",
                Err(SaslError::InvalidToken),
            ),
            (
                b"n,,\x01auth=Bearer a\rb\x01\x01",
                Err(SaslError::InvalidToken),
            ),
            (
                b"n,,\x01auth=Basic dTpw\x01\x01",
                Err(SaslError::UnsupportedScheme),
            ),
            (
                b"n,,\x01auth=Bearer \xc3\xa4\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (
                b"n,,\x01auth=Bearer T\x00\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (
                b"n,,\x01=x\x01auth=Bearer T\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (
                b"n,,\x01a1=x\x01auth=Bearer T\x01\x01",
                Err(SaslError::MalformedKvPair),
            ),
            (b"n,,\x01auth\x01\x01", Err(SaslError::MalformedKvPair)),
            (
                b"n,,\x01auth=Bearer T\x01auth=Bearer U\x01\x01",
                Err(SaslError::DuplicateKey { key: "auth" }),
            ),
            (
                b"n,,\x01host=a\x01host=b\x01auth=Bearer T\x01\x01",
                Err(SaslError::DuplicateKey { key: "host" }),
            ),
            (
                b"n,,\x01port=0143\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidPort),
            ),
            (
                b"n,,\x01port=0\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidPort),
            ),
            (
                b"n,,\x01port=65536\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidPort),
            ),
            (
                b"n,,\x01port=999999\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidPort),
            ),
            (
                b"n,,\x01port=+1\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidPort),
            ),
            (
                b"n,,\x01port=\x01auth=Bearer T\x01\x01",
                Err(SaslError::InvalidPort),
            ),
            (
                b"p=tls-server-end-point,,\x01auth=Bearer T\x01\x01",
                Err(SaslError::ChannelBindingUnsupported),
            ),
        ];
        for (input, expected) in table {
            let got = parse_oauthbearer(input);
            let got = got
                .as_ref()
                .map(|c| {
                    (
                        c.authzid.as_deref(),
                        c.token.expose_secret(),
                        c.host.as_deref(),
                        c.port,
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
    fn too_long_is_rejected_before_parsing() {
        let mut big = b"n,,\x01auth=Bearer ".to_vec();
        big.resize(MAX_RESPONSE_LEN + 1, b'a');
        assert!(matches!(
            parse_oauthbearer(&big),
            Err(SaslError::TooLong { .. })
        ));
    }

    #[test]
    fn builder_refuses_what_it_cannot_encode() {
        let cases = [
            (
                oauthbearer_client_response(None, "a b", None, None),
                "token",
            ),
            (oauthbearer_client_response(None, "", None, None), "token"),
            (
                oauthbearer_client_response(Some("a\0"), "T", None, None),
                "authzid",
            ),
            (
                oauthbearer_client_response(None, "T", Some("h\x01"), None),
                "host",
            ),
            (
                oauthbearer_client_response(None, "T", Some("hä"), None),
                "host",
            ),
            (
                oauthbearer_client_response(None, "T", None, Some(0)),
                "port",
            ),
        ];
        for (got, field) in cases {
            assert_eq!(got, Err(SaslError::Unencodable { field }));
        }
    }

    #[test]
    fn builder_escapes_authzid() {
        let built = oauthbearer_client_response(Some("a,b=c"), "T", None, None).unwrap();
        assert_eq!(built, b"n,a=a=2Cb=3Dc,\x01auth=Bearer T\x01\x01");
        let creds = parse_oauthbearer(&built).unwrap();
        assert_eq!(creds.authzid.as_deref(), Some("a,b=c"));
    }
}
