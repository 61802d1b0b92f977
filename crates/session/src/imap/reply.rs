//! The few server replies the session writes, kept in one place so every text and code
//! the client sees can be found here.

/// Status of a tagged or untagged status response.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Status {
    Ok,
    No,
    Bad,
}

/// Response codes used before login (RFC 3501, RFC 5530).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Code<'a> {
    Capability(&'a [&'a str]),
    AuthenticationFailed,
    Unavailable,
    PrivacyRequired,
}

fn status(out: &mut Vec<u8>, status: Status, code: Option<Code<'_>>, text: &str) {
    out.extend_from_slice(match status {
        Status::Ok => b"OK ",
        Status::No => b"NO ",
        Status::Bad => b"BAD ",
    });
    if let Some(code) = code {
        out.push(b'[');
        match code {
            Code::Capability(list) => {
                out.extend_from_slice(b"CAPABILITY");
                for item in list {
                    out.push(b' ');
                    out.extend_from_slice(item.as_bytes());
                }
            }
            Code::AuthenticationFailed => out.extend_from_slice(b"AUTHENTICATIONFAILED"),
            Code::Unavailable => out.extend_from_slice(b"UNAVAILABLE"),
            Code::PrivacyRequired => out.extend_from_slice(b"PRIVACYREQUIRED"),
        }
        out.extend_from_slice(b"] ");
    }
    text_line(out, text);
}

/// Text ends the line: CR and LF inside it would start a new response.
fn text_line(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().filter(|b| *b != b'\r' && *b != b'\n'));
    out.extend_from_slice(b"\r\n");
}

pub(crate) fn tagged(out: &mut Vec<u8>, tag: &str, s: Status, code: Option<Code<'_>>, text: &str) {
    out.extend_from_slice(tag.as_bytes());
    out.push(b' ');
    status(out, s, code, text);
}

pub(crate) fn untagged(out: &mut Vec<u8>, s: Status, code: Option<Code<'_>>, text: &str) {
    out.extend_from_slice(b"* ");
    status(out, s, code, text);
}

pub(crate) fn bye(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b"* BYE ");
    text_line(out, text);
}

pub(crate) fn capability(out: &mut Vec<u8>, list: &[&str]) {
    out.extend_from_slice(b"* CAPABILITY");
    for item in list {
        out.push(b' ');
        out.extend_from_slice(item.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// `+ ` and the (base64) data; always with the space, which old clients need.
pub(crate) fn continuation(out: &mut Vec<u8>, data: Option<&str>) {
    out.extend_from_slice(b"+ ");
    out.extend_from_slice(data.unwrap_or("Ready for literal data.").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `* ID (...)`: our own identification (RFC 2971). Values are fixed ASCII without quotes.
pub(crate) fn id(out: &mut Vec<u8>, fields: &[(&str, &str)]) {
    out.extend_from_slice(b"* ID (");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\" \"");
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b")\r\n");
}
