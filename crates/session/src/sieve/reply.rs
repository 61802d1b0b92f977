//! The replies the session writes, kept in one place so every text and code the client sees
//! before login can be found here. Encoding is the codec's ([`Response`]).

use codec::sieve::{Capability, Code, Completion, Response, Status};

/// What the proxy calls itself in `"IMPLEMENTATION"`.
const IMPLEMENTATION: &str = "bearergate";

/// The capability block (RFC 5804 §1.7), without the `OK` that ends it.
///
/// `sasl` is the space-separated mechanism list, empty where authentication is not allowed
/// (`"SASL" ""`, §1.7). `UNAUTHENTICATE` is never listed: it would let a client step back
/// into a pre-login state the proxy no longer watches.
pub(crate) fn capabilities(out: &mut Vec<u8>, sasl: &str, sieve: &str, starttls: bool) {
    let mut lines = vec![
        Capability::new("IMPLEMENTATION", Some(IMPLEMENTATION)),
        Capability::new("SASL", Some(sasl)),
        Capability::new("SIEVE", Some(sieve)),
    ];
    if starttls {
        lines.push(Capability::new("STARTTLS", None));
    }
    lines.push(Capability::new("VERSION", Some("1.0")));
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

/// A SASL challenge: its base64 as a string on its own line (`""` when empty).
pub(crate) fn challenge(out: &mut Vec<u8>, base64: String) {
    Response::Challenge(base64.into_bytes().into()).write_to(out);
}
