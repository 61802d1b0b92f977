//! The RFC 5801 §4 GS2 header that starts an OAUTHBEARER client response.

use crate::SaslError;

/// Parses the GS2 header and returns the authzid and the bytes after the header's last `,`.
///
/// ```text
/// gs2-header      = [gs2-nonstd-flag ","] gs2-cb-flag "," [gs2-authzid] ","
/// gs2-nonstd-flag = "F"
/// gs2-cb-flag     = ("p=" cb-name) / "n" / "y"
/// gs2-authzid     = "a=" saslname
/// ```
///
/// `n` and `y` are both accepted (neither side does channel binding with OAUTHBEARER);
/// `p=` is refused with its own error because it means the client *requires* channel
/// binding, which RFC 7628 does not define. `F,` is tolerated and ignored: it only states
/// the GSS-API framing is non-standard, which is meaningless here.
///
/// `user=` in place of `a=` (the RFC 7628 §4.4 SMTP example, a known erratum) is refused:
/// no client we know of sends it (curl, Thunderbird, K-9, sievelib and mutt all send `a=`),
/// and guessing which identity a non-standard header names is how authorization confusion
/// starts. The error is specific so a log shows why such a client fails.
pub(crate) fn gs2_header(input: &[u8]) -> Result<(Option<String>, &[u8]), SaslError> {
    let input = input.strip_prefix(b"F,").unwrap_or(input);
    let after_cb = match input {
        [b'n' | b'y', b',', rest @ ..] => rest,
        [b'p', b'=', ..] => return Err(SaslError::ChannelBindingUnsupported),
        _ => return Err(SaslError::MalformedGs2Header),
    };
    if let Some(rest) = after_cb.strip_prefix(b",") {
        return Ok((None, rest));
    }
    if let Some(after_a) = after_cb.strip_prefix(b"a=") {
        let end = after_a
            .iter()
            .position(|&b| b == b',')
            .ok_or(SaslError::MalformedGs2Header)?;
        let authzid = saslname(&after_a[..end])?;
        return Ok((Some(authzid), &after_a[end + 1..]));
    }
    if after_cb.starts_with(b"user=") {
        return Err(SaslError::NonStandardAuthzid);
    }
    Err(SaslError::MalformedGs2Header)
}

/// Decodes a saslname:
///
/// ```text
/// saslname       = 1*(UTF8-char-safe / "=2C" / "=3D")
/// UTF8-1-safe    = %x01-2B / %x2D-3C / %x3E-7F   ; UTF8-1 minus NUL, "=", ","
/// ```
///
/// Any other `=` sequence is an error (RFC 5801 §4 says so), so `=` can never smuggle a
/// second meaning past us. Hex digits are case-insensitive because ABNF strings are.
pub(crate) fn saslname(input: &[u8]) -> Result<String, SaslError> {
    if input.is_empty() {
        return Err(SaslError::InvalidAuthzid);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let [first, tail @ ..] = rest {
        match first {
            b'=' => {
                let (decoded, after) = match tail {
                    [a, b, after @ ..] if [*a, *b].eq_ignore_ascii_case(b"2C") => (b',', after),
                    [a, b, after @ ..] if [*a, *b].eq_ignore_ascii_case(b"3D") => (b'=', after),
                    _ => return Err(SaslError::InvalidAuthzid),
                };
                out.push(decoded);
                rest = after;
            }
            0 | b',' => return Err(SaslError::InvalidAuthzid),
            other => {
                out.push(*other);
                rest = tail;
            }
        }
    }
    String::from_utf8(out).map_err(|_| SaslError::InvalidAuthzid)
}

/// Encodes a saslname: `,` → `=2C`, `=` → `=3D`. NUL cannot be represented and an empty
/// name is not a saslname, so both are refused rather than silently changed.
pub(crate) fn encode_saslname(name: &str) -> Result<String, SaslError> {
    if name.is_empty() || name.contains('\0') {
        return Err(SaslError::Unencodable { field: "authzid" });
    }
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_known_answers() {
        type Expected<'a> = Result<(Option<&'a str>, &'a [u8]), SaslError>;
        let table: &[(&[u8], Expected)] = &[
            (b"n,,\x01", Ok((None, b"\x01"))),
            (b"y,,\x01", Ok((None, b"\x01"))),
            (b"F,n,,\x01", Ok((None, b"\x01"))),
            (
                b"n,a=user@example.com,\x01",
                Ok((Some("user@example.com"), b"\x01")),
            ),
            (b"F,y,a=u,", Ok((Some("u"), b""))),
            (b"n,a=a=2Cb=3Dc,", Ok((Some("a,b=c"), b""))),
            (b"n,a=a=2cb=3dc,", Ok((Some("a,b=c"), b""))),
            ("n,a=jörg,".as_bytes(), Ok((Some("jörg"), b""))),
            (b"n,a=\x01x,", Ok((Some("\u{1}x"), b""))),
            (
                b"p=tls-unique,,\x01",
                Err(SaslError::ChannelBindingUnsupported),
            ),
            (
                b"F,p=tls-unique,,",
                Err(SaslError::ChannelBindingUnsupported),
            ),
            (
                b"n,user=someuser@example.com,\x01",
                Err(SaslError::NonStandardAuthzid),
            ),
            (b"n,a=,", Err(SaslError::InvalidAuthzid)),
            (b"n,a=x=2", Err(SaslError::MalformedGs2Header)),
            (b"n,a=x=2D,", Err(SaslError::InvalidAuthzid)),
            (b"n,a=x=,", Err(SaslError::InvalidAuthzid)),
            (b"n,a=x\0y,", Err(SaslError::InvalidAuthzid)),
            (b"n,a=\xff,", Err(SaslError::InvalidAuthzid)),
            (b"n,a=user", Err(SaslError::MalformedGs2Header)),
            (b"n,", Err(SaslError::MalformedGs2Header)),
            (b"n", Err(SaslError::MalformedGs2Header)),
            (b"", Err(SaslError::MalformedGs2Header)),
            (b"\x01", Err(SaslError::MalformedGs2Header)),
            (b"N,,", Err(SaslError::MalformedGs2Header)),
            (b"x,,", Err(SaslError::MalformedGs2Header)),
            (b"F,F,n,,", Err(SaslError::MalformedGs2Header)),
            (b"n,b=x,", Err(SaslError::MalformedGs2Header)),
        ];
        for (input, expected) in table {
            let got = gs2_header(input);
            let got = got
                .as_ref()
                .map(|(a, rest)| (a.as_deref(), *rest))
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
    fn saslname_escaping() {
        assert_eq!(encode_saslname("a,b=c").as_deref(), Ok("a=2Cb=3Dc"));
        assert_eq!(encode_saslname("=2C").as_deref(), Ok("=3D2C"));
        assert_eq!(saslname(b"=3D2C").as_deref(), Ok("=2C"));
        assert_eq!(
            encode_saslname("plain@example.com").as_deref(),
            Ok("plain@example.com")
        );
        assert_eq!(
            encode_saslname(""),
            Err(SaslError::Unencodable { field: "authzid" })
        );
        assert_eq!(
            encode_saslname("a\0b"),
            Err(SaslError::Unencodable { field: "authzid" })
        );
    }
}
