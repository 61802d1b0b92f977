//! Writers of the commands the proxy sends an SMTP backend before and during login, and
//! the xtext encoding XCLIENT attribute values use.
//!
//! Each writer appends whole commands, CRLF included, to `out`; on error `out` is left as
//! it was.

use super::{InitialResponse, MAX_COMMAND_LINE};

/// A value that cannot be written into a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// An EHLO name is empty, over 255 octets, or has octets outside `!`..`~`.
    #[error("invalid EHLO name")]
    InvalidDomain,
    /// A SASL mechanism name is not `1*20(ALPHA / DIGIT / "-" / "_")`.
    #[error("invalid SASL mechanism name")]
    InvalidMechanism,
    /// An initial or continuation response is not base64 text.
    #[error("response is not base64")]
    InvalidBase64,
    /// An XCLIENT attribute name is not `1*(ALPHA / "-" / "_")`.
    #[error("invalid XCLIENT attribute name")]
    InvalidAttribute,
    /// One attribute alone would make an XCLIENT command longer than 512 octets.
    #[error("XCLIENT attribute too long")]
    LineTooLong,
    /// XCLIENT with no attributes.
    #[error("XCLIENT needs at least one attribute")]
    NoAttributes,
}

/// Run `write`, appending to `out`, and undo the partial write on error.
fn atomically<T>(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<T, WriteError>,
) -> Result<T, WriteError> {
    let start = out.len();
    let result = write(out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// `EHLO name` CRLF. The name (usually the client's own EHLO argument, replayed) must be
/// 1–255 printable US-ASCII octets without spaces.
pub fn write_ehlo(out: &mut Vec<u8>, name: &str) -> Result<(), WriteError> {
    let valid = (1..=255).contains(&name.len()) && name.bytes().all(|b| (0x21..0x7f).contains(&b));
    if !valid {
        return Err(WriteError::InvalidDomain);
    }
    out.extend_from_slice(b"EHLO ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `STARTTLS` CRLF.
pub fn write_starttls(out: &mut Vec<u8>) {
    out.extend_from_slice(b"STARTTLS\r\n");
}

/// `QUIT` CRLF.
pub fn write_quit(out: &mut Vec<u8>) {
    out.extend_from_slice(b"QUIT\r\n");
}

/// `AUTH mechanism [initial-response]` CRLF (RFC 4954 §4): base64 text, or `=` for an empty
/// initial response. `AUTH PLAIN <base64>` is `write_auth(out, "PLAIN", Some(&ir))`.
///
/// The caller keeps the line within the backend's limit: RFC 4954 lets a server refuse an
/// AUTH line over 512 octets, so a long response goes on its own line after `334 `
/// ([`write_auth_response`]).
pub fn write_auth(
    out: &mut Vec<u8>,
    mechanism: &str,
    initial_response: Option<&InitialResponse>,
) -> Result<(), WriteError> {
    atomically(out, |out| {
        let valid = (1..=20).contains(&mechanism.len())
            && mechanism
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !valid {
            return Err(WriteError::InvalidMechanism);
        }
        out.extend_from_slice(b"AUTH ");
        out.extend_from_slice(mechanism.as_bytes());
        match initial_response {
            None => {}
            Some(InitialResponse::Empty) => out.extend_from_slice(b" ="),
            Some(InitialResponse::Base64(b64)) => {
                if b64.is_empty() {
                    return Err(WriteError::InvalidBase64);
                }
                out.push(b' ');
                write_base64(out, b64)?;
            }
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// One client response line of the AUTH exchange: base64 text CRLF (empty for an empty
/// response).
pub fn write_auth_response(out: &mut Vec<u8>, base64: &[u8]) -> Result<(), WriteError> {
    atomically(out, |out| {
        write_base64(out, base64)?;
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// `*` CRLF: cancel the AUTH exchange (RFC 4954 §4).
pub fn write_auth_cancel(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*\r\n");
}

fn write_base64(out: &mut Vec<u8>, b64: &[u8]) -> Result<(), WriteError> {
    let valid = b64
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !valid {
        return Err(WriteError::InvalidBase64);
    }
    out.extend_from_slice(b64);
    Ok(())
}

/// `XCLIENT name=value ...` CRLF (Postfix XCLIENT_README), each value xtext-encoded.
///
/// Attributes are written in the order given; when they do not all fit in one 512-octet
/// command line (RFC 5321 §4.5.3.1.4, which XCLIENT_README repeats), they are split over
/// several XCLIENT commands. Returns how many commands were written: the backend answers
/// each one (`220` on success), and the caller must read that many replies.
///
/// The caller sends only attributes the backend's EHLO listed after `XCLIENT`; names are
/// written as given (Postfix reads them case-insensitively).
///
/// ```abnf
/// xclient-command = "XCLIENT" 1*( SP attribute-name "=" attribute-value ) CRLF
/// attribute-value = xtext
/// ```
pub fn write_xclient(out: &mut Vec<u8>, attributes: &[(&str, &str)]) -> Result<usize, WriteError> {
    const PREFIX: &[u8] = b"XCLIENT";
    atomically(out, |out| {
        if attributes.is_empty() {
            return Err(WriteError::NoAttributes);
        }
        let mut commands = 0;
        let mut line: Vec<u8> = Vec::new();
        for (name, value) in attributes {
            let valid = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'_'));
            if !valid {
                return Err(WriteError::InvalidAttribute);
            }
            let attribute = format!(" {name}={}", xtext_encode(value.as_bytes()));
            if PREFIX.len() + attribute.len() + 2 > MAX_COMMAND_LINE {
                return Err(WriteError::LineTooLong);
            }
            if !line.is_empty() && line.len() + attribute.len() + 2 > MAX_COMMAND_LINE {
                line.extend_from_slice(b"\r\n");
                out.append(&mut line);
                commands += 1;
            }
            if line.is_empty() {
                line.extend_from_slice(PREFIX);
            }
            line.extend_from_slice(attribute.as_bytes());
        }
        line.extend_from_slice(b"\r\n");
        out.append(&mut line);
        Ok(commands + 1)
    })
}

/// xtext (RFC 3461 §4, used by XCLIENT): octets from `!` to `~` except `+` and `=` as they
/// are, every other octet as `+` and two upper-case hex digits.
///
/// ```abnf
/// xtext    = *( xchar / hexchar )
/// xchar    = %d33-42 / %d44-60 / %d62-126
/// hexchar  = "+" 2(%x30-39 / %x41-46)
/// ```
pub fn xtext_encode(value: &[u8]) -> String {
    let mut encoded = String::with_capacity(value.len());
    for &b in value {
        if (0x21..=0x7e).contains(&b) && b != b'+' && b != b'=' {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("+{b:02X}"));
        }
    }
    encoded
}

/// The octets an xtext stands for; `None` if it is not xtext (a bare `+`, lower-case or
/// missing hex digits, an octet outside `!`..`~`, or a bare `=`).
pub fn xtext_decode(text: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut decoded = Vec::with_capacity(text.len());
    let mut rest = text;
    while let [b, tail @ ..] = rest {
        match b {
            b'+' => {
                let [hi, lo, tail @ ..] = tail else {
                    return None;
                };
                decoded.push(hex(*hi)? << 4 | hex(*lo)?);
                rest = tail;
            }
            0x21..=0x7e if *b != b'=' => {
                decoded.push(*b);
                rest = tail;
            }
            _ => return None,
        }
    }
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::{parse_command, Command};

    #[test]
    fn known_answers() {
        let mut out = Vec::new();
        write_ehlo(&mut out, "client.example.org").unwrap();
        write_starttls(&mut out);
        let ir = InitialResponse::Base64("AGFsaWNlAHNlY3JldA==".into());
        write_auth(&mut out, "PLAIN", Some(&ir)).unwrap();
        write_auth(&mut out, "OAUTHBEARER", Some(&InitialResponse::Empty)).unwrap();
        write_auth(&mut out, "XOAUTH2", None).unwrap();
        write_auth_response(&mut out, b"AQ==").unwrap();
        write_auth_response(&mut out, b"").unwrap();
        write_auth_cancel(&mut out);
        write_quit(&mut out);
        assert_eq!(
            out,
            b"EHLO client.example.org\r\nSTARTTLS\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n\
              AUTH OAUTHBEARER =\r\nAUTH XOAUTH2\r\nAQ==\r\n\r\n*\r\nQUIT\r\n"
        );
    }

    #[test]
    fn invalid_values_are_refused_and_nothing_is_written() {
        let mut out = b"keep".to_vec();
        assert_eq!(write_ehlo(&mut out, ""), Err(WriteError::InvalidDomain));
        assert_eq!(write_ehlo(&mut out, "a b"), Err(WriteError::InvalidDomain));
        assert_eq!(
            write_ehlo(&mut out, "a\r\nRCPT"),
            Err(WriteError::InvalidDomain)
        );
        assert_eq!(
            write_ehlo(&mut out, &"a".repeat(256)),
            Err(WriteError::InvalidDomain)
        );
        let bad = InitialResponse::Base64("a\r\nb".into());
        assert_eq!(
            write_auth(&mut out, "PLAIN", Some(&bad)),
            Err(WriteError::InvalidBase64)
        );
        assert_eq!(
            write_auth(&mut out, "PL AIN", None),
            Err(WriteError::InvalidMechanism)
        );
        assert_eq!(
            write_auth_response(&mut out, b"*"),
            Err(WriteError::InvalidBase64)
        );
        assert_eq!(
            write_xclient(&mut out, &[("LO GIN", "x")]),
            Err(WriteError::InvalidAttribute)
        );
        assert_eq!(write_xclient(&mut out, &[]), Err(WriteError::NoAttributes));
        let huge = "x".repeat(600);
        assert_eq!(
            write_xclient(&mut out, &[("ADDR", "192.0.2.1"), ("HELO", &huge)]),
            Err(WriteError::LineTooLong)
        );
        assert_eq!(out, b"keep");
    }

    #[test]
    fn xclient_known_answer_and_xtext() {
        let mut out = Vec::new();
        let n = write_xclient(
            &mut out,
            &[
                ("ADDR", "203.0.113.7"),
                ("PORT", "51234"),
                ("NAME", "[UNAVAILABLE]"),
                ("HELO", "client.example.org"),
                ("LOGIN", "user+tag@example.com"),
            ],
        )
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            b"XCLIENT ADDR=203.0.113.7 PORT=51234 NAME=[UNAVAILABLE] HELO=client.example.org \
              LOGIN=user+2Btag@example.com\r\n"
        );
        assert_eq!(
            xtext_encode(b"a b=c+d\xc3\xa9\x7f"),
            "a+20b+3Dc+2Bd+C3+A9+7F"
        );
        assert_eq!(xtext_encode(b"IPV6:2001:db8::1"), "IPV6:2001:db8::1");
        assert_eq!(
            xtext_decode(b"a+20b+3Dc+2Bd+C3+A9+7F").as_deref(),
            Some(&b"a b=c+d\xc3\xa9\x7f"[..])
        );
        for bad in [&b"+"[..], b"+4", b"+4g", b"+4a", b"a=b", b"a b", b"\xc3"] {
            assert_eq!(xtext_decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn xclient_splits_at_512_octets() {
        let helo = "h".repeat(255);
        let login = "l".repeat(255);
        let mut out = Vec::new();
        let n = write_xclient(
            &mut out,
            &[("ADDR", "192.0.2.1"), ("HELO", &helo), ("LOGIN", &login)],
        )
        .unwrap();
        assert_eq!(n, 2);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0], format!("XCLIENT ADDR=192.0.2.1 HELO={helo}"));
        assert_eq!(lines[1], format!("XCLIENT LOGIN={login}"));
        assert!(lines.iter().all(|l| l.len() + 2 <= MAX_COMMAND_LINE));
    }

    #[test]
    fn auth_round_trips_through_the_parser() {
        for (mechanism, ir) in [
            ("PLAIN", Some(InitialResponse::Base64("AGEAYg==".into()))),
            ("XOAUTH2", Some(InitialResponse::Empty)),
            ("OAUTHBEARER", None),
        ] {
            let mut out = Vec::new();
            write_auth(&mut out, mechanism, ir.as_ref()).unwrap();
            assert_eq!(
                parse_command(&out),
                Ok(Command::Auth {
                    mechanism: mechanism.to_owned(),
                    initial_response: ir,
                })
            );
        }
        let mut out = Vec::new();
        write_ehlo(&mut out, "[IPv6:2001:db8::1]").unwrap();
        assert_eq!(
            parse_command(&out),
            Ok(Command::Ehlo("[IPv6:2001:db8::1]".to_owned()))
        );
    }
}
