//! The replies the session writes, kept in one place so every text and code the client sees
//! before login can be found here. Encoding is the codec's ([`Reply`]).

pub(crate) use codec::imap::response::Status;
use codec::imap::response::{Code as WireCode, Continuation, Reply};

/// Response codes used before login (RFC 3501, RFC 5530).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Code<'a> {
    Capability(&'a [&'a str]),
    AuthenticationFailed,
    Unavailable,
    PrivacyRequired,
    TooBig,
}

impl Code<'_> {
    fn wire(self) -> WireCode {
        match self {
            Code::Capability(list) => {
                WireCode::Capability(list.iter().map(|c| (*c).to_owned()).collect())
            }
            Code::AuthenticationFailed => WireCode::AuthenticationFailed,
            Code::Unavailable => WireCode::Unavailable,
            Code::PrivacyRequired => WireCode::PrivacyRequired,
            Code::TooBig => WireCode::TooBig,
        }
    }
}

pub(crate) fn tagged(
    out: &mut Vec<u8>,
    tag: &str,
    status: Status,
    code: Option<Code<'_>>,
    text: &str,
) {
    Reply::tagged(tag, status, code.map(Code::wire), text).write_to(out);
}

pub(crate) fn untagged(out: &mut Vec<u8>, status: Status, code: Option<Code<'_>>, text: &str) {
    Reply::Untagged {
        status,
        code: code.map(Code::wire),
        text: text.to_owned(),
    }
    .write_to(out);
}

pub(crate) fn bye(out: &mut Vec<u8>, text: &str) {
    Reply::Bye {
        code: None,
        text: text.to_owned(),
    }
    .write_to(out);
}

/// `* BYE [UNAVAILABLE] ...` instead of a greeting (RFC 3501 §7.1.5 allows BYE as the
/// greeting; RFC 5530's UNAVAILABLE says "try again later").
pub(crate) fn busy(out: &mut Vec<u8>, why: crate::Busy) {
    let text = match why {
        crate::Busy::ListenerFull => "Too many connections, try again later.",
        crate::Busy::AddressLimit => "Too many connections from your address, try again later.",
    };
    unavailable_bye(out, text);
}

/// `* BYE [UNAVAILABLE] Server shutting down.`: the drain is over.
pub(crate) fn shutting_down(out: &mut Vec<u8>) {
    unavailable_bye(out, "Server shutting down.");
}

/// `* BYE Took too long to log in.`: the listener's `preauth_deadline` passed. Not
/// `[UNAVAILABLE]` (a server subsystem is down) and not the idle goodbye: the client may
/// have been busy all along, it just did not log in in time.
pub(crate) fn deadline_passed(out: &mut Vec<u8>) {
    bye(out, "Took too long to log in.");
}

fn unavailable_bye(out: &mut Vec<u8>, text: &str) {
    Reply::Bye {
        code: Some(WireCode::Unavailable),
        text: text.to_owned(),
    }
    .write_to(out);
}

pub(crate) fn capability(out: &mut Vec<u8>, list: &[&str]) {
    Reply::Capability(list.iter().map(|c| (*c).to_owned()).collect()).write_to(out);
}

/// `+ ` and base64 data (a SASL challenge, possibly empty), or literal-ready text.
pub(crate) fn continuation(out: &mut Vec<u8>, base64: Option<&str>) {
    let continuation = match base64 {
        Some("") => Continuation::Empty,
        Some(data) => Continuation::Base64(data.to_owned().into_bytes().into()),
        None => Continuation::Text("Ready for literal data.".to_owned()),
    };
    Reply::Continue(continuation).write_to(out);
}

/// `* ID (...)`: our own identification (RFC 2971).
pub(crate) fn id(out: &mut Vec<u8>, fields: &[(&str, &str)]) {
    let params = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
        .collect();
    Reply::Id(Some(params)).write_to(out);
}
