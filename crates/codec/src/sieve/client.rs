//! Writers of the commands the proxy sends a ManageSieve backend before and during login.
//!
//! Each writer appends one whole command, CRLF included, to `out`; on error `out` is left
//! as it was. Strings are quoted when they can be (at most 1024 octets), else sent as
//! `{n+}` literals, the only form RFC 5804 gives clients.

use super::core::{write_string, Direction};

/// Why a command could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A mechanism name is not `1*20(ALPHA / DIGIT / "-" / "_")` (RFC 4422 §3.1).
    #[error("invalid SASL mechanism name")]
    InvalidMechanism,
    /// A SASL response is not base64 text.
    #[error("SASL response is not base64")]
    InvalidBase64,
}

fn is_mechanism(name: &str) -> bool {
    (1..=20).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

fn is_base64(s: &[u8]) -> bool {
    s.iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// `AUTHENTICATE "MECH" ["initial-response"]` CRLF. The initial response is base64 text;
/// `Some(b"")` sends an empty one (`""`), `None` none at all.
pub fn write_authenticate(
    out: &mut Vec<u8>,
    mechanism: &str,
    initial_response: Option<&[u8]>,
) -> Result<(), WriteError> {
    if !is_mechanism(mechanism) {
        return Err(WriteError::InvalidMechanism);
    }
    if initial_response.is_some_and(|ir| !is_base64(ir)) {
        return Err(WriteError::InvalidBase64);
    }
    out.extend_from_slice(b"AUTHENTICATE ");
    write_string(out, mechanism.as_bytes(), Direction::ToServer);
    if let Some(ir) = initial_response {
        out.push(b' ');
        write_string(out, ir, Direction::ToServer);
    }
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// One AUTHENTICATE client response: a base64 string on its own line (`""` for an empty
/// response).
pub fn write_sasl_response(out: &mut Vec<u8>, base64: &[u8]) -> Result<(), WriteError> {
    if !is_base64(base64) {
        return Err(WriteError::InvalidBase64);
    }
    write_string(out, base64, Direction::ToServer);
    out.extend_from_slice(b"\r\n");
    Ok(())
}

/// `"*"` CRLF: cancel an AUTHENTICATE exchange.
pub fn write_sasl_cancel(out: &mut Vec<u8>) {
    out.extend_from_slice(b"\"*\"\r\n");
}

/// `STARTTLS` CRLF.
pub fn write_starttls(out: &mut Vec<u8>) {
    out.extend_from_slice(b"STARTTLS\r\n");
}

/// `CAPABILITY` CRLF.
pub fn write_capability(out: &mut Vec<u8>) {
    out.extend_from_slice(b"CAPABILITY\r\n");
}

/// `LOGOUT` CRLF.
pub fn write_logout(out: &mut Vec<u8>) {
    out.extend_from_slice(b"LOGOUT\r\n");
}

/// `NOOP ["tag"]` CRLF.
pub fn write_noop(out: &mut Vec<u8>, tag: Option<&str>) {
    out.extend_from_slice(b"NOOP");
    if let Some(tag) = tag {
        out.push(b' ');
        write_string(out, tag.as_bytes(), Direction::ToServer);
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::{parse_command, Command, InitialResponse};

    #[test]
    fn known_answers() {
        let mut out = Vec::new();
        write_authenticate(&mut out, "PLAIN", Some(b"AGFsaWNlAHNlY3JldA==")).expect("valid");
        assert_eq!(out, b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHNlY3JldA==\"\r\n");
        out.clear();
        write_authenticate(&mut out, "OAUTHBEARER", None).expect("valid");
        assert_eq!(out, b"AUTHENTICATE \"OAUTHBEARER\"\r\n");
        out.clear();
        write_authenticate(&mut out, "PLAIN", Some(b"")).expect("valid");
        assert_eq!(out, b"AUTHENTICATE \"PLAIN\" \"\"\r\n");
        out.clear();
        write_sasl_response(&mut out, b"AQ==").expect("valid");
        write_sasl_response(&mut out, b"").expect("valid");
        write_sasl_cancel(&mut out);
        write_starttls(&mut out);
        write_capability(&mut out);
        write_noop(&mut out, Some("sync 1"));
        write_noop(&mut out, None);
        write_logout(&mut out);
        assert_eq!(
            out,
            b"\"AQ==\"\r\n\"\"\r\n\"*\"\r\nSTARTTLS\r\nCAPABILITY\r\nNOOP \"sync 1\"\r\nNOOP\r\nLOGOUT\r\n"
        );
    }

    #[test]
    fn invalid_input_writes_nothing() {
        let mut out = b"kept".to_vec();
        assert_eq!(
            write_authenticate(&mut out, "PL AIN", None),
            Err(WriteError::InvalidMechanism)
        );
        assert_eq!(
            write_authenticate(&mut out, "PLAIN", Some(b"a\"b")),
            Err(WriteError::InvalidBase64)
        );
        assert_eq!(
            write_sasl_response(&mut out, b"\r\n"),
            Err(WriteError::InvalidBase64)
        );
        assert_eq!(out, b"kept");
    }

    #[test]
    fn long_initial_response_goes_as_literal_and_reads_back() {
        let ir = vec![b'A'; 2_000];
        let mut out = Vec::new();
        write_authenticate(&mut out, "PLAIN", Some(&ir)).expect("valid");
        assert!(out.starts_with(b"AUTHENTICATE \"PLAIN\" {2000+}\r\nAAAA"));
        let Ok(Command::Authenticate {
            mechanism,
            initial_response: Some(InitialResponse::Base64(got)),
        }) = parse_command(&out)
        else {
            panic!("does not read back");
        };
        assert_eq!(mechanism, "PLAIN");
        assert_eq!(&got[..], &ir[..]);
    }
}
