//! Writers of the commands the proxy sends a backend before and during login.
//!
//! Each writer appends one whole command, CRLF included, to `out`; on error `out` is left
//! as it was. Strings are quoted when they can be, else sent as non-synchronizing literals
//! (`{n+}`) when the backend advertised LITERAL+; a synchronizing literal would need a
//! round trip, which is the caller's business, so without LITERAL+ such a value is an
//! error ([`WriteError::NeedsLiteral`]).

use super::command::InitialResponse;
use super::core::{is_valid_atom, is_valid_tag, write_astring, write_string, WriteError};

/// Run `write`, appending to `out`, and undo the partial write on error.
fn atomically(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    let start = out.len();
    let result = write(out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_tag(out: &mut Vec<u8>, tag: &str) -> Result<(), WriteError> {
    if !is_valid_tag(tag.as_bytes()) {
        return Err(WriteError::InvalidTag);
    }
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    Ok(())
}

/// `tag LOGIN username password` CRLF, each an astring (atom, quoted or `{n+}` literal).
pub fn write_login(
    out: &mut Vec<u8>,
    tag: &str,
    username: &[u8],
    password: &[u8],
    literal_plus: bool,
) -> Result<(), WriteError> {
    atomically(out, |out| {
        write_tag(out, tag)?;
        out.extend_from_slice(b"LOGIN ");
        write_astring(out, username, literal_plus)?;
        out.push(b' ');
        write_astring(out, password, literal_plus)?;
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// `tag AUTHENTICATE mechanism [initial-response]` CRLF. The initial response is base64
/// text (SASL-IR, RFC 4959), or `=` for an empty one.
pub fn write_authenticate(
    out: &mut Vec<u8>,
    tag: &str,
    mechanism: &str,
    initial_response: Option<&InitialResponse>,
) -> Result<(), WriteError> {
    atomically(out, |out| {
        write_tag(out, tag)?;
        if !is_valid_atom(mechanism.as_bytes()) {
            return Err(WriteError::InvalidAtom);
        }
        out.extend_from_slice(b"AUTHENTICATE ");
        out.extend_from_slice(mechanism.as_bytes());
        match initial_response {
            None => {}
            Some(InitialResponse::Empty) => out.extend_from_slice(b" ="),
            Some(InitialResponse::Base64(b64)) => {
                out.push(b' ');
                write_base64(out, b64)?;
            }
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// One AUTHENTICATE client response line: base64 text CRLF (empty for an empty response).
pub fn write_authenticate_response(out: &mut Vec<u8>, base64: &[u8]) -> Result<(), WriteError> {
    atomically(out, |out| {
        write_base64(out, base64)?;
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
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

/// `tag ID (field value ...)` CRLF, or `tag ID NIL` for `None` or an empty list. Values
/// `None` are sent as `NIL`. RFC 2971's limits (30 pairs, 30-octet fields, 1024-octet
/// values) are the caller's to respect: Dovecot drops a connection that breaks them.
pub fn write_id(
    out: &mut Vec<u8>,
    tag: &str,
    params: Option<&[(String, Option<String>)]>,
    literal_plus: bool,
) -> Result<(), WriteError> {
    atomically(out, |out| {
        write_tag(out, tag)?;
        out.extend_from_slice(b"ID ");
        match params {
            None | Some([]) => out.extend_from_slice(b"NIL"),
            Some(params) => {
                out.push(b'(');
                for (i, (field, val)) in params.iter().enumerate() {
                    if i > 0 {
                        out.push(b' ');
                    }
                    write_string(out, field.as_bytes(), literal_plus)?;
                    out.push(b' ');
                    match val {
                        Some(val) => write_string(out, val.as_bytes(), literal_plus)?,
                        None => out.extend_from_slice(b"NIL"),
                    }
                }
                out.push(b')');
            }
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// `tag CAPABILITY` CRLF.
pub fn write_capability(out: &mut Vec<u8>, tag: &str) -> Result<(), WriteError> {
    write_simple(out, tag, "CAPABILITY")
}

/// `tag STARTTLS` CRLF.
pub fn write_starttls(out: &mut Vec<u8>, tag: &str) -> Result<(), WriteError> {
    write_simple(out, tag, "STARTTLS")
}

/// `tag LOGOUT` CRLF.
pub fn write_logout(out: &mut Vec<u8>, tag: &str) -> Result<(), WriteError> {
    write_simple(out, tag, "LOGOUT")
}

fn write_simple(out: &mut Vec<u8>, tag: &str, name: &str) -> Result<(), WriteError> {
    atomically(out, |out| {
        write_tag(out, tag)?;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::{parse_command, CommandBody};
    use secrecy::ExposeSecret;

    #[test]
    fn known_answers() {
        let mut out = Vec::new();
        write_login(&mut out, "b1", b"user@example.com", b"p a\"ss", false).unwrap();
        assert_eq!(out, b"b1 LOGIN user@example.com \"p a\\\"ss\"\r\n");

        out.clear();
        write_login(&mut out, "b1", b"u", b"p\r\nss", true).unwrap();
        assert_eq!(out, b"b1 LOGIN u {5+}\r\np\r\nss\r\n");

        out.clear();
        assert_eq!(
            write_login(&mut out, "b1", b"u", b"p\r\nss", false),
            Err(WriteError::NeedsLiteral)
        );
        assert!(out.is_empty(), "nothing written on error");

        out.clear();
        let ir = InitialResponse::Base64("AGEAYg==".into());
        write_authenticate(&mut out, "b2", "PLAIN", Some(&ir)).unwrap();
        write_authenticate(&mut out, "b3", "OAUTHBEARER", Some(&InitialResponse::Empty)).unwrap();
        write_authenticate(&mut out, "b4", "PLAIN", None).unwrap();
        write_authenticate_response(&mut out, b"").unwrap();
        assert_eq!(
            out,
            b"b2 AUTHENTICATE PLAIN AGEAYg==\r\nb3 AUTHENTICATE OAUTHBEARER =\r\n\
              b4 AUTHENTICATE PLAIN\r\n\r\n"
        );
        let bad = InitialResponse::Base64("a\r\nb".into());
        assert_eq!(
            write_authenticate(&mut out, "b5", "PLAIN", Some(&bad)),
            Err(WriteError::InvalidBase64)
        );
        assert_eq!(
            write_authenticate(&mut out, "b5", "PL AIN", None),
            Err(WriteError::InvalidAtom)
        );
        assert_eq!(
            write_capability(&mut out, "b+"),
            Err(WriteError::InvalidTag)
        );

        out.clear();
        let params = vec![
            ("x-originating-ip".to_owned(), Some("192.0.2.1".to_owned())),
            ("x-session-id".to_owned(), None),
        ];
        write_id(&mut out, "b6", Some(&params), false).unwrap();
        write_id(&mut out, "b7", None, false).unwrap();
        write_capability(&mut out, "b8").unwrap();
        write_starttls(&mut out, "b9").unwrap();
        write_logout(&mut out, "b10").unwrap();
        assert_eq!(
            out,
            b"b6 ID (\"x-originating-ip\" \"192.0.2.1\" \"x-session-id\" NIL)\r\nb7 ID NIL\r\n\
              b8 CAPABILITY\r\nb9 STARTTLS\r\nb10 LOGOUT\r\n"
        );
    }

    #[test]
    fn login_round_trips_through_the_parser() {
        let cases: &[(&str, &str)] = &[
            ("u", "p"),
            ("user@ex.com", ""),
            ("a b", "\"\\"),
            ("caf\u{e9}", "p\r\nss"),
            ("NIL", "{5}"),
        ];
        for (user, pass) in cases {
            let mut out = Vec::new();
            write_login(&mut out, "t", user.as_bytes(), pass.as_bytes(), true).unwrap();
            let cmd = parse_command(&out).unwrap();
            let CommandBody::Login { username, password } = cmd.body else {
                panic!("{cmd:?}")
            };
            assert_eq!(
                (username.as_str(), password.expose_secret()),
                (*user, *pass)
            );
        }
    }
}
