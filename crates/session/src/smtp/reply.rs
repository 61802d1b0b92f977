//! The replies the session writes, kept in one place so every code and text the client sees
//! before login can be found here. Encoding is the codec's ([`Reply`]).
//!
//! Codes and texts follow RFC 5321, RFC 3207 (STARTTLS), RFC 4954 §6 (AUTH) and the reply
//! table of DESIGN.md; enhanced status codes (RFC 3463) on every reply but the greeting and
//! EHLO/HELO, as ENHANCEDSTATUSCODES (RFC 2034) promises.

use codec::smtp::{EnhancedCode, Reply};

fn write(out: &mut Vec<u8>, code: u16, enhanced: EnhancedCode, text: &str) {
    Reply::new(code, Some(enhanced), text).write_to(out);
}

/// `220 <host> ESMTP bearergate ready`
pub(crate) fn greeting(out: &mut Vec<u8>, hostname: &str) {
    Reply::new(220, None, format!("{hostname} ESMTP bearergate ready")).write_to(out);
}

/// `250-<host>`, then one line per extension.
pub(crate) fn ehlo(out: &mut Vec<u8>, hostname: &str, extensions: Vec<String>) {
    let mut lines = Vec::with_capacity(extensions.len() + 1);
    lines.push(hostname.to_owned());
    lines.extend(extensions);
    Reply::multiline(250, None, lines).write_to(out);
}

/// `250 <host>`: HELO gets no extensions.
pub(crate) fn helo(out: &mut Vec<u8>, hostname: &str) {
    Reply::new(250, None, hostname).write_to(out);
}

/// `250 2.0.0 OK`, for NOOP and RSET.
pub(crate) fn ok(out: &mut Vec<u8>) {
    write(out, 250, (2, 0, 0), "OK");
}

/// `221 2.0.0 Bye`
pub(crate) fn bye(out: &mut Vec<u8>) {
    write(out, 221, (2, 0, 0), "Bye");
}

/// `214 2.0.0 ...`: HELP (RFC 5321 §4.1.1.8 asks servers to support it).
pub(crate) fn help(out: &mut Vec<u8>) {
    write(
        out,
        214,
        (2, 0, 0),
        "Authenticate with AUTH OAUTHBEARER or XOAUTH2 and an OAuth 2.0 token",
    );
}

/// `252 2.5.2 ...`: VRFY (RFC 5321 §3.5.3: 252 when the server will not verify).
pub(crate) fn vrfy(out: &mut Vec<u8>) {
    write(out, 252, (2, 5, 2), "Cannot VRFY user");
}

/// `502 5.5.1 ...`: EXPN (RFC 5321 §3.5.2 lets a server disable it).
pub(crate) fn expn(out: &mut Vec<u8>) {
    write(out, 502, (5, 5, 1), "EXPN not available");
}

/// `220 2.0.0 Ready to start TLS` (RFC 3207 §4)
pub(crate) fn starttls_ready(out: &mut Vec<u8>) {
    write(out, 220, (2, 0, 0), "Ready to start TLS");
}

/// `503 5.5.1 TLS already active` (RFC 3207 §4.2: no STARTTLS after the handshake)
pub(crate) fn tls_already_active(out: &mut Vec<u8>) {
    write(out, 503, (5, 5, 1), "TLS already active");
}

/// `454 4.7.0 TLS not available` (RFC 3207 §4): this listener does not offer STARTTLS.
pub(crate) fn tls_not_available(out: &mut Vec<u8>) {
    write(out, 454, (4, 7, 0), "TLS not available");
}

/// `530 5.7.0 Must issue a STARTTLS command first` (RFC 3207 §4, DESIGN.md)
pub(crate) fn starttls_first(out: &mut Vec<u8>) {
    write(out, 530, (5, 7, 0), "Must issue a STARTTLS command first");
}

/// `530 5.7.0 Authentication required` (RFC 4954 §6): MAIL, RCPT, DATA, BDAT before AUTH.
pub(crate) fn auth_required(out: &mut Vec<u8>) {
    write(out, 530, (5, 7, 0), "Authentication required");
}

/// `503 5.5.1 EHLO first`: AUTH before EHLO/HELO.
pub(crate) fn ehlo_first(out: &mut Vec<u8>) {
    write(out, 503, (5, 5, 1), "EHLO first");
}

/// `504 5.5.4 Unrecognized authentication type` (RFC 4954 §4)
pub(crate) fn unknown_mechanism(out: &mut Vec<u8>) {
    write(out, 504, (5, 5, 4), "Unrecognized authentication type");
}

/// `334 <base64>`: a SASL challenge; `334 ` (with the space) when empty.
pub(crate) fn challenge(out: &mut Vec<u8>, base64: &str) {
    Reply::new(334, None, base64).write_to(out);
}

/// `235 2.7.0 Authentication successful` (RFC 4954 §6)
pub(crate) fn authenticated(out: &mut Vec<u8>) {
    write(out, 235, (2, 7, 0), "Authentication successful");
}

/// `535 5.7.8 Authentication credentials invalid` (RFC 4954 §6, DESIGN.md)
pub(crate) fn credentials_invalid(out: &mut Vec<u8>) {
    write(out, 535, (5, 7, 8), "Authentication credentials invalid");
}

/// `454 4.7.0 Temporary authentication failure` (RFC 4954 §6, DESIGN.md): the identity
/// provider or the backend is unreachable; the client may try again.
pub(crate) fn temporary_failure(out: &mut Vec<u8>) {
    write(
        out,
        454,
        (4, 7, 0),
        "Temporary authentication failure, try again later",
    );
}

/// `501 5.7.0 Authentication cancelled` (RFC 4954 §4: a `*` gets 501)
pub(crate) fn auth_cancelled(out: &mut Vec<u8>) {
    write(out, 501, (5, 7, 0), "Authentication cancelled");
}

/// `501 5.5.2 Cannot Base64-decode Client responses` (RFC 4954 §4)
pub(crate) fn bad_base64(out: &mut Vec<u8>) {
    write(out, 501, (5, 5, 2), "Cannot Base64-decode Client responses");
}

/// `500 5.5.2 Command unrecognized`
pub(crate) fn unrecognized(out: &mut Vec<u8>) {
    write(out, 500, (5, 5, 2), "Command unrecognized");
}

/// `501 5.5.4 <usage>`: a known command with bad arguments.
pub(crate) fn syntax(out: &mut Vec<u8>, usage: &str) {
    write(out, 501, (5, 5, 4), usage);
}

/// `500 5.5.2 Line too long` (DESIGN.md)
pub(crate) fn line_too_long(out: &mut Vec<u8>) {
    write(out, 500, (5, 5, 2), "Line too long");
}

/// `500 5.5.6 Authentication Exchange line is too long` (RFC 4954 §6): a client response
/// of the AUTH exchange (initial response or continuation line), or the token in it, over
/// the limit.
pub(crate) fn auth_line_too_long(out: &mut Vec<u8>) {
    write(
        out,
        500,
        (5, 5, 6),
        "Authentication Exchange line is too long",
    );
}

/// `421 4.7.0 Too many failed authentications`, before closing.
pub(crate) fn too_many_auth_failures(out: &mut Vec<u8>) {
    write(out, 421, (4, 7, 0), "Too many failed authentications");
}

/// `421 4.7.0 Too many invalid commands`, before closing.
pub(crate) fn too_many_bad_commands(out: &mut Vec<u8>) {
    write(
        out,
        421,
        (4, 7, 0),
        "Too many invalid commands, closing connection",
    );
}

/// `421 4.7.0 Too many long lines`, before closing.
pub(crate) fn too_many_long_lines(out: &mut Vec<u8>) {
    write(
        out,
        421,
        (4, 7, 0),
        "Too many long lines, closing connection",
    );
}

/// `421 4.7.0 <host> Too many connections...` instead of the greeting (RFC 5321 §3.1: a
/// server that cannot serve the client answers 421 and closes).
pub(crate) fn busy(out: &mut Vec<u8>, hostname: &str, why: crate::Busy) {
    let text = match why {
        crate::Busy::ListenerFull => "Too many connections, try again later",
        crate::Busy::AddressLimit => "Too many connections from your address, try again later",
    };
    write(out, 421, (4, 7, 0), &format!("{hostname} {text}"));
}

/// `421 4.3.2 <host> Service shutting down` (RFC 3463: 4.3.2 "system not accepting network
/// messages"), as Postfix says it.
pub(crate) fn shutting_down(out: &mut Vec<u8>, hostname: &str) {
    write(
        out,
        421,
        (4, 3, 2),
        &format!("{hostname} Service shutting down"),
    );
}

/// `421 4.4.2 <host> Timeout: took too long to log in`: the listener's `preauth_deadline`
/// passed, however busy the client was (RFC 3463's 4.4.2, as Postfix's own timeouts).
pub(crate) fn deadline_passed(out: &mut Vec<u8>, hostname: &str) {
    write(
        out,
        421,
        (4, 4, 2),
        &format!("{hostname} Timeout: took too long to log in"),
    );
}

/// `421 4.4.2 <host> Idle timeout, closing`
pub(crate) fn idle_timeout(out: &mut Vec<u8>, hostname: &str) {
    write(
        out,
        421,
        (4, 4, 2),
        &format!("{hostname} Idle timeout, closing"),
    );
}
