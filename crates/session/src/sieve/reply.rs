//! The replies the session writes, kept in one place so every text and code the client sees
//! before login can be found here. Encoding is the codec's ([`Response`]).

use codec::sieve::{Capability, Code, Completion, Response, Status};

/// What the proxy calls itself in `"IMPLEMENTATION"`.
const IMPLEMENTATION: &str = "bearergate";

/// Capabilities of the backend's block that the proxy never relays:
/// - `IMPLEMENTATION`, `SASL`, `STARTTLS`: before login the proxy is the server, with its
///   own name, its own mechanisms (OAuth, never the backend's passwords) and its own TLS.
/// - `UNAUTHENTICATE` (RFC 5804 §2.14.1): it would let a client step back into a pre-login
///   state the proxy no longer watches.
/// - `OWNER` (§1.7): the logged-in user, which no server may name before login.
/// - `LANGUAGE` (§1.7): the language of the human-readable texts, which before login are
///   the proxy's (`i-default`).
/// - `XCLIENT` (Dovecot): offered to the proxy because it is in the backend's
///   `login_trusted_networks`; that trust is the proxy's, never a client's.
const NOT_RELAYED: [&str; 7] = [
    "IMPLEMENTATION",
    "SASL",
    "STARTTLS",
    "UNAUTHENTICATE",
    "OWNER",
    "LANGUAGE",
    "XCLIENT",
];

/// The capability block (RFC 5804 §1.7), without the `OK` that ends it.
///
/// `sasl` is the space-separated mechanism list, empty where authentication is not allowed
/// (`"SASL" ""`, §1.7). `backend` is the backend's own block: everything in it but
/// [`NOT_RELAYED`] follows the proxy's lines as the backend sent it, in its order, unknown
/// extensions included. `VERSION` is the backend's too, absent when it has none: the
/// commands it promises (RENAMESCRIPT, CHECKSCRIPT, ...) are sent to the backend after
/// login. `SIEVE` is always listed (empty when the backend has none), since clients read a
/// missing one as "no extensions". With no backend block yet, `SIEVE` is empty and
/// `VERSION` is the proxy's own `1.0`.
pub(crate) fn capabilities(
    out: &mut Vec<u8>,
    sasl: &str,
    starttls: bool,
    backend: Option<&[Capability]>,
) {
    let sieve = backend
        .and_then(|block| block.iter().find(|c| c.is("SIEVE")))
        .and_then(|c| c.value.as_deref())
        .unwrap_or("");
    let mut lines = vec![
        Capability::new("IMPLEMENTATION", Some(IMPLEMENTATION)),
        Capability::new("SASL", Some(sasl)),
        Capability::new("SIEVE", Some(sieve)),
    ];
    if starttls {
        lines.push(Capability::new("STARTTLS", None));
    }
    match backend {
        Some(block) => lines.extend(
            block
                .iter()
                .filter(|c| !c.is("SIEVE") && !NOT_RELAYED.iter().any(|name| c.is(name)))
                .cloned(),
        ),
        None => lines.push(Capability::new("VERSION", Some("1.0"))),
    }
    for line in lines {
        Response::Capability(line).write_to(out);
    }
}

/// `OK [(code)] "text"`
pub(crate) fn ok(out: &mut Vec<u8>, code: Option<Code>, text: &str) {
    Response::Completion(Completion::new(Status::Ok, code, text)).write_to(out);
}

/// `NO [(code)] "text"`
pub(crate) fn no(out: &mut Vec<u8>, code: Option<Code>, text: &str) {
    Response::Completion(Completion::new(Status::No, code, text)).write_to(out);
}

/// `BYE "text"`: the answer to the command, and the connection closes.
pub(crate) fn bye(out: &mut Vec<u8>, text: &str) {
    Response::Completion(Completion::new(Status::Bye, None, text)).write_to(out);
}

/// `BYE (TRYLATER) "..."` instead of the greeting: RFC 5804 §1.3 lets a server that will
/// not serve the client say BYE at once, and TRYLATER (§1.3) says why not to give up.
pub(crate) fn busy(out: &mut Vec<u8>, why: crate::Busy) {
    let text = match why {
        crate::Busy::ListenerFull => "Too many connections, try again later.",
        crate::Busy::AddressLimit => "Too many connections from your address, try again later.",
    };
    try_later_bye(out, text);
}

/// `BYE (TRYLATER) "Server shutting down."`: the drain is over.
pub(crate) fn shutting_down(out: &mut Vec<u8>) {
    try_later_bye(out, "Server shutting down.");
}

/// `BYE "Took too long to log in."`: the listener's `preauth_deadline` passed. No
/// `(TRYLATER)`: nothing on the server's side is wrong.
pub(crate) fn deadline_passed(out: &mut Vec<u8>) {
    bye(out, "Took too long to log in.");
}

fn try_later_bye(out: &mut Vec<u8>, text: &str) {
    Response::Completion(Completion::new(Status::Bye, Some(Code::TryLater), text)).write_to(out);
}

/// A SASL challenge: its base64 as a string on its own line (`""` when empty).
pub(crate) fn challenge(out: &mut Vec<u8>, base64: String) {
    Response::Challenge(base64.into_bytes().into()).write_to(out);
}
