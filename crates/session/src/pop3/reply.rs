//! The replies the session writes, kept in one place so every status and text the client
//! sees before login can be found here. Encoding is the codec's ([`Reply`]).
//!
//! Codes follow RFC 2449 §8 and RFC 3206 and DESIGN.md's reply table: `[AUTH]` on every
//! failure that is the credentials' fault (or that refuses credentials outright, before
//! TLS or without the password fallback), as AUTH-RESP-CODE promises; `[SYS/TEMP]` when
//! the identity provider or the backend cannot be reached. Everything else is a bare
//! `-ERR`. Texts follow Dovecot's where it has one.
//!
//! One command, one reply: POP3 has no unsolicited responses, so a reply that ends the
//! connection is the command's own `-ERR`, with nothing after it.

use codec::pop3::{Code, Reply};

fn ok(out: &mut Vec<u8>, text: &str) {
    Reply::ok(text).write_to(out);
}

fn err(out: &mut Vec<u8>, code: Option<Code>, text: &str) {
    Reply::err(code, text).write_to(out);
}

/// `+OK bearergate ready.` No APOP timestamp: APOP is not offered.
pub(crate) fn greeting(out: &mut Vec<u8>) {
    ok(out, "bearergate ready.");
}

/// `+OK Capability list follows`, the capability lines, `.` (RFC 2449 §5).
pub(crate) fn capa(out: &mut Vec<u8>, capabilities: Vec<String>) {
    Reply::multi_line("Capability list follows", capabilities).write_to(out);
}

/// `+OK`, one mechanism per line, `.`: the answer to a bare `AUTH` (see
/// [`codec::pop3::Command::ListMechanisms`]).
pub(crate) fn mechanisms(out: &mut Vec<u8>, mechanisms: Vec<String>) {
    Reply::multi_line("List of supported mechanisms follows", mechanisms).write_to(out);
}

/// `+OK`: NOOP (RFC 1939 §5 has it only after login; answering it costs nothing).
pub(crate) fn noop(out: &mut Vec<u8>) {
    ok(out, "");
}

/// `+OK Logging out.`: QUIT in the AUTHORIZATION state (RFC 1939 §4).
pub(crate) fn bye(out: &mut Vec<u8>) {
    ok(out, "Logging out.");
}

/// `+OK Begin TLS negotiation` (RFC 2595 §4).
pub(crate) fn stls_ready(out: &mut Vec<u8>) {
    ok(out, "Begin TLS negotiation");
}

/// `-ERR Command not permitted when TLS active` (RFC 2595 §4).
pub(crate) fn tls_already_active(out: &mut Vec<u8>) {
    err(out, None, "Command not permitted when TLS active");
}

/// `-ERR STLS not available on this port.`: this listener does not offer STLS.
pub(crate) fn tls_not_available(out: &mut Vec<u8>) {
    err(out, None, "STLS not available on this port.");
}

/// `-ERR [AUTH] ...`: AUTH, USER or PASS before TLS where that is not allowed (DESIGN.md).
pub(crate) fn tls_required(out: &mut Vec<u8>) {
    err(
        out,
        Some(Code::Auth),
        "Plaintext authentication disallowed on non-secure (SSL/TLS) connections: use STLS first.",
    );
}

/// `-ERR [AUTH] ...`: USER or PASS without the password fallback.
pub(crate) fn passwords_not_accepted(out: &mut Vec<u8>) {
    err(
        out,
        Some(Code::Auth),
        "USER/PASS is not accepted: authenticate with AUTH XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.",
    );
}

/// `+OK`: USER taken, PASS may follow (RFC 1939 §7 lets the server say nothing about
/// whether the user exists).
pub(crate) fn user_accepted(out: &mut Vec<u8>) {
    ok(out, "");
}

/// `-ERR No username given.`: PASS not right after an accepted USER (RFC 1939 §7).
pub(crate) fn pass_without_user(out: &mut Vec<u8>) {
    err(out, None, "No username given.");
}

/// `-ERR Unsupported authentication mechanism.` (RFC 5034 §4: a negative response).
pub(crate) fn unknown_mechanism(out: &mut Vec<u8>) {
    err(out, None, "Unsupported authentication mechanism.");
}

/// `+ <base64>`: a SASL continuation; `+ ` when empty (RFC 5034 §4).
pub(crate) fn continuation(out: &mut Vec<u8>, base64: &str) {
    Reply::continuation(base64).write_to(out);
}

/// `+OK Logged in.`
pub(crate) fn logged_in(out: &mut Vec<u8>) {
    ok(out, "Logged in.");
}

/// `-ERR [AUTH] Authentication failed.` (DESIGN.md): a refused token or password, or an
/// unusable SASL response.
pub(crate) fn auth_failed(out: &mut Vec<u8>) {
    err(out, Some(Code::Auth), "Authentication failed.");
}

/// `-ERR [SYS/TEMP] ...` (DESIGN.md, RFC 3206): the identity provider or the backend is
/// unreachable, or the address has used up its failed logins; the client may retry.
pub(crate) fn temporary_failure(out: &mut Vec<u8>) {
    err(
        out,
        Some(Code::SysTemp),
        "Authentication service temporarily unavailable; try again later.",
    );
}

/// `-ERR [SYS/TEMP] ...` instead of the greeting (RFC 3206: a temporary condition; the
/// client should try again later).
pub(crate) fn busy(out: &mut Vec<u8>, why: crate::Busy) {
    let text = match why {
        crate::Busy::ListenerFull => "Too many connections, try again later.",
        crate::Busy::AddressLimit => "Too many connections from your address, try again later.",
    };
    err(out, Some(Code::SysTemp), text);
}

/// `-ERR [SYS/TEMP] Server shutting down.`: the drain is over.
pub(crate) fn shutting_down(out: &mut Vec<u8>) {
    err(out, Some(Code::SysTemp), "Server shutting down.");
}

/// `-ERR Took too long to log in.`: the listener's `preauth_deadline` passed. Bare: it is
/// neither the credentials' fault (`[AUTH]`) nor a passing fault of the server's
/// (`[SYS/TEMP]`).
pub(crate) fn deadline_passed(out: &mut Vec<u8>) {
    err(out, None, "Took too long to log in.");
}

/// `-ERR Authentication cancelled.` (RFC 5034 §4: a `*` gets `-ERR`). Not the
/// credentials' fault, so no `[AUTH]`.
pub(crate) fn auth_cancelled(out: &mut Vec<u8>) {
    err(out, None, "Authentication cancelled.");
}

/// `-ERR Invalid base64 data.` (RFC 5034 §4: an undecodable response gets `-ERR`).
pub(crate) fn bad_base64(out: &mut Vec<u8>) {
    err(out, None, "Invalid base64 data.");
}

/// `-ERR Authenticate first.`: a command of the TRANSACTION state, or an unknown one.
pub(crate) fn authenticate_first(out: &mut Vec<u8>) {
    err(out, None, "Authenticate first.");
}

/// `-ERR Unknown command.`: an empty line, or one that starts with a blank.
pub(crate) fn unknown_command(out: &mut Vec<u8>) {
    err(out, None, "Unknown command.");
}

/// `-ERR <usage>`: a known command with bad arguments.
pub(crate) fn syntax(out: &mut Vec<u8>, usage: &str) {
    err(out, None, usage);
}

/// `-ERR Line too long.` (DESIGN.md).
pub(crate) fn line_too_long(out: &mut Vec<u8>) {
    err(out, None, "Line too long.");
}

/// `-ERR Authentication line too long.`: a client response of the AUTH exchange (initial
/// response or continuation line), or the token in it, over the limit; the exchange is
/// over.
pub(crate) fn auth_line_too_long(out: &mut Vec<u8>) {
    err(out, None, "Authentication line too long.");
}
