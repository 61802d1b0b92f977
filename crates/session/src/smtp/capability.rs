//! The proxy's own EHLO extensions before login.

/// The lines after `250-<host>` in the EHLO reply (RFC 5321 §4.1.1.1).
///
/// - `PIPELINING` (RFC 2920): commands are handled one by one from the buffer anyway, and
///   what follows AUTH stays buffered for the backend.
/// - `ENHANCEDSTATUSCODES` (RFC 2034): every reply but EHLO/HELO's carries one.
/// - `8BITMIME` (RFC 6152) and `SIZE` (RFC 1870): what every submission backend (Postfix,
///   Dovecot) offers, so a client plans its message as it will be relayed. `SIZE` without a
///   number ("no fixed limit announced") unless one is configured.
/// - `STARTTLS` (RFC 3207) only before TLS on a listener that offers it: RFC 3207 §4.2
///   forbids it after the handshake.
/// - `AUTH OAUTHBEARER XOAUTH2` (RFC 4954) only where authentication is allowed: with TLS,
///   or when the listener allows plaintext authentication.
///
/// Extensions the backend may lack (CHUNKING, SMTPUTF8, DSN) are not offered: after login
/// the client talks to the backend, which never advertised anything to it.
pub(crate) fn ehlo_extensions(
    auth_allowed: bool,
    starttls: bool,
    max_message_size: Option<u64>,
    password_fallback: bool,
) -> Vec<String> {
    let mut list: Vec<String> = ["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    list.push(match max_message_size {
        Some(size) => format!("SIZE {size}"),
        None => "SIZE".to_owned(),
    });
    if starttls {
        list.push("STARTTLS".to_owned());
    }
    if auth_allowed {
        let mut mechanisms: Vec<&str> = sasl::Mechanism::ALL.iter().map(|m| m.name()).collect();
        if password_fallback {
            // Passed to the backend unchanged (password fallback).
            mechanisms.extend(["PLAIN", "LOGIN"]);
        }
        list.push(format!("AUTH {}", mechanisms.join(" ")));
    }
    list
}
