//! Writers of the commands the proxy sends a POP3 backend before and during login.
//!
//! Each writer appends one whole command, CRLF included, to `out`; on error `out` is left
//! as it was. Every command line stays within RFC 2449 §4's 255 octets
//! ([`MAX_COMMAND_LINE`]) but the AUTH exchange's continuation lines, which RFC 5034 §4
//! exempts.

use super::command::is_text_octet;
use super::{InitialResponse, MAX_COMMAND_LINE};

/// A value that cannot be written into a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A USER name is empty, starts or ends with a blank, or holds a control octet.
    #[error("invalid user name")]
    InvalidUser,
    /// A PASS string is empty or holds a control octet.
    #[error("invalid password")]
    InvalidPassword,
    /// A SASL mechanism name is not `1*20(ALPHA / DIGIT / "-" / "_")`.
    #[error("invalid SASL mechanism name")]
    InvalidMechanism,
    /// An initial or continuation response is not base64 text.
    #[error("response is not base64")]
    InvalidBase64,
    /// The command would be longer than 255 octets. For AUTH: send the initial response
    /// on its own line after the server's `+ ` instead (RFC 5034 §4).
    #[error("command longer than {MAX_COMMAND_LINE} octets")]
    LineTooLong,
}

/// Run `write`, appending to `out`; undo the partial write on error, and refuse a command
/// line over [`MAX_COMMAND_LINE`] when `bounded`.
fn command(
    out: &mut Vec<u8>,
    bounded: bool,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), WriteError>,
) -> Result<(), WriteError> {
    let start = out.len();
    let mut result = write(out);
    if result.is_ok() && bounded && out.len() - start > MAX_COMMAND_LINE {
        result = Err(WriteError::LineTooLong);
    }
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// `USER name` CRLF (RFC 1939 §7). The name must be text without control octets, and not
/// start or end with a blank (the server would not see them).
pub fn write_user(out: &mut Vec<u8>, name: &str) -> Result<(), WriteError> {
    command(out, true, |out| {
        let bytes = name.as_bytes();
        let blank_edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
        let valid = !bytes.is_empty()
            && bytes.iter().all(|&b| is_text_octet(b))
            && !blank_edge(bytes.first())
            && !blank_edge(bytes.last());
        if !valid {
            return Err(WriteError::InvalidUser);
        }
        out.extend_from_slice(b"USER ");
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// `PASS string` CRLF (RFC 1939 §7): the password as it is, spaces included.
pub fn write_pass(out: &mut Vec<u8>, password: &str) -> Result<(), WriteError> {
    command(out, true, |out| {
        let bytes = password.as_bytes();
        if bytes.is_empty() || !bytes.iter().all(|&b| is_text_octet(b)) {
            return Err(WriteError::InvalidPassword);
        }
        out.extend_from_slice(b"PASS ");
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// `AUTH mechanism [initial-response]` CRLF (RFC 5034 §4): base64 text, or `=` for an
/// empty initial response. [`WriteError::LineTooLong`] when the line would exceed 255
/// octets: the caller then sends `AUTH mechanism` alone and the response after `+ `.
pub fn write_auth(
    out: &mut Vec<u8>,
    mechanism: &str,
    initial_response: Option<&InitialResponse>,
) -> Result<(), WriteError> {
    command(out, true, |out| {
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
/// response). Not bound to 255 octets: a token is longer.
pub fn write_auth_response(out: &mut Vec<u8>, base64: &[u8]) -> Result<(), WriteError> {
    command(out, false, |out| {
        write_base64(out, base64)?;
        out.extend_from_slice(b"\r\n");
        Ok(())
    })
}

/// `*` CRLF: cancel the AUTH exchange (RFC 5034 §4).
pub fn write_auth_cancel(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*\r\n");
}

/// `STLS` CRLF (RFC 2595 §4).
pub fn write_stls(out: &mut Vec<u8>) {
    out.extend_from_slice(b"STLS\r\n");
}

/// `CAPA` CRLF (RFC 2449 §5).
pub fn write_capa(out: &mut Vec<u8>) {
    out.extend_from_slice(b"CAPA\r\n");
}

/// `QUIT` CRLF.
pub fn write_quit(out: &mut Vec<u8>) {
    out.extend_from_slice(b"QUIT\r\n");
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

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::pop3::{parse_command, Command};

    #[test]
    fn known_answers() {
        let mut out = Vec::new();
        write_capa(&mut out);
        write_stls(&mut out);
        write_user(&mut out, "alice@example.com").unwrap();
        write_pass(&mut out, "correct horse battery staple").unwrap();
        let ir = InitialResponse::Base64("AGFsaWNlAHNlY3JldA==".into());
        write_auth(&mut out, "PLAIN", Some(&ir)).unwrap();
        write_auth(&mut out, "OAUTHBEARER", Some(&InitialResponse::Empty)).unwrap();
        write_auth(&mut out, "XOAUTH2", None).unwrap();
        write_auth_response(&mut out, b"AQ==").unwrap();
        write_auth_response(&mut out, b"").unwrap();
        write_auth_cancel(&mut out);
        write_quit(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "CAPA\r\nSTLS\r\nUSER alice@example.com\r\nPASS correct horse battery staple\r\n\
             AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nAUTH OAUTHBEARER =\r\nAUTH XOAUTH2\r\n\
             AQ==\r\n\r\n*\r\nQUIT\r\n"
        );
    }

    #[test]
    fn invalid_values_are_refused_and_nothing_is_written() {
        let mut out = b"keep".to_vec();
        for name in ["", " alice", "alice ", "a\r\nQUIT", "a\0b", "a\x7fb"] {
            assert_eq!(write_user(&mut out, name), Err(WriteError::InvalidUser));
        }
        for password in ["", "a\r\nRETR 1", "a\0b"] {
            assert_eq!(
                write_pass(&mut out, password),
                Err(WriteError::InvalidPassword)
            );
        }
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
        assert_eq!(out, b"keep");
    }

    #[test]
    fn command_lines_stay_within_255_octets() {
        let mut out = Vec::new();
        // `AUTH XOAUTH2 ` (13) + 240 + CRLF = 255: fits; one more does not.
        let fits = InitialResponse::Base64("A".repeat(240).into());
        write_auth(&mut out, "XOAUTH2", Some(&fits)).unwrap();
        assert_eq!(out.len(), MAX_COMMAND_LINE);
        let long = InitialResponse::Base64("A".repeat(241).into());
        out.clear();
        assert_eq!(
            write_auth(&mut out, "XOAUTH2", Some(&long)),
            Err(WriteError::LineTooLong)
        );
        assert_eq!(
            write_user(&mut out, &"u".repeat(251)),
            Err(WriteError::LineTooLong)
        );
        assert_eq!(
            write_pass(&mut out, &"p".repeat(251)),
            Err(WriteError::LineTooLong)
        );
        assert!(out.is_empty());
        // Continuation lines carry whole tokens.
        write_auth_response(&mut out, "A".repeat(23_212).as_bytes()).unwrap();
        assert_eq!(out.len(), 23_214);
    }

    #[test]
    fn commands_round_trip_through_the_parser() {
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
        write_user(&mut out, "Jean Dupont\u{e9}").unwrap();
        assert_eq!(
            parse_command(&out),
            Ok(Command::User("Jean Dupont\u{e9}".to_owned()))
        );
        let mut out = Vec::new();
        write_pass(&mut out, " spaced\tout ").unwrap();
        assert_eq!(
            parse_command(&out),
            Ok(Command::Pass(SecretString::from(" spaced\tout ")))
        );
        for (write, want) in [
            (write_capa as fn(&mut Vec<u8>), Command::Capa),
            (write_stls, Command::Stls),
            (write_quit, Command::Quit),
        ] {
            let mut out = Vec::new();
            write(&mut out);
            assert_eq!(parse_command(&out), Ok(want));
        }
    }
}
