//! What a session writes must be well-formed on its wire, whatever the client sent: whole
//! CRLF-terminated replies that the protocol's client-side parser (the codec's, which the
//! proxy uses on its backends) reads back without error and without leftovers.

use bytes::BytesMut;

/// The protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// IMAP: one line per response, no literals before login.
    Imap,
    /// SMTP: replies of one or more `ddd-` / `ddd ` lines.
    Smtp,
    /// ManageSieve: lines whose strings may be `{n}` literals.
    Sieve,
    /// POP3: status lines, `+ ` continuations, and a `+OK` opening a dot-terminated block
    /// (CAPA, a bare AUTH).
    Pop3,
}

/// What one reply says, as far as the driver's checks need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A command completed successfully: IMAP tagged `OK`, SMTP `2xx`, ManageSieve `OK`,
    /// POP3 `+OK`.
    Ok,
    /// A command failed: IMAP tagged `NO`/`BAD`, SMTP `4xx`/`5xx`, ManageSieve `NO`/`BYE`,
    /// POP3 `-ERR`.
    Failed,
    /// A continuation: IMAP and POP3 `+`, SMTP `334`.
    Continue,
    /// Anything else: untagged data, capability lines, a ManageSieve challenge.
    Other,
}

impl Wire {
    /// Splits one write of session output into replies, asserting that each is well-formed
    /// and that the write ends with a whole reply.
    pub fn replies(self, out: &[u8]) -> Vec<Kind> {
        if out.is_empty() {
            return Vec::new();
        }
        assert!(
            out.ends_with(b"\r\n"),
            "{self:?} output does not end with CRLF: {:?}",
            String::from_utf8_lossy(out)
        );
        match self {
            Wire::Imap => imap_replies(out),
            Wire::Smtp => smtp_replies(out),
            Wire::Sieve => sieve_replies(out),
            Wire::Pop3 => pop3_replies(out),
        }
    }

    /// Whether the idle timeout says goodbye: POP3 closes without a word (RFC 1939 §3).
    pub fn says_goodbye_when_idle(self) -> bool {
        self != Wire::Pop3
    }
}

/// Every CR starts a CRLF and every LF ends one: no bare line ends that one reader takes
/// for a line end and another for data.
fn assert_only_crlf(out: &[u8]) {
    for (i, &b) in out.iter().enumerate() {
        let ok = match b {
            b'\r' => out.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && out[i - 1] == b'\r',
            _ => true,
        };
        assert!(
            ok,
            "bare CR or LF at {i} in {:?}",
            String::from_utf8_lossy(out)
        );
    }
}

fn imap_replies(out: &[u8]) -> Vec<Kind> {
    use codec::imap::{parse_response, Response, Status};
    assert_only_crlf(out);
    out.split_inclusive(|&b| b == b'\n')
        .map(|line| {
            let response = parse_response(line).unwrap_or_else(|e| {
                panic!(
                    "IMAP reply does not parse ({e}): {:?}",
                    String::from_utf8_lossy(line)
                )
            });
            match response {
                Response::Tagged {
                    status: Status::Ok, ..
                } => Kind::Ok,
                Response::Tagged { .. } => Kind::Failed,
                Response::Continue(_) => Kind::Continue,
                _ => Kind::Other,
            }
        })
        .collect()
}

fn smtp_replies(out: &[u8]) -> Vec<Kind> {
    use codec::smtp::{ReplyFramer, ReplyLimits};
    assert_only_crlf(out);
    let mut framer = ReplyFramer::new(ReplyLimits::default());
    let mut buf = BytesMut::from(out);
    let mut kinds = Vec::new();
    loop {
        match framer.decode(&mut buf) {
            Ok(Some(response)) => kinds.push(match response.code {
                200..=299 => Kind::Ok,
                334 => Kind::Continue,
                400..=599 => Kind::Failed,
                _ => Kind::Other,
            }),
            Ok(None) => break,
            Err(e) => panic!(
                "SMTP reply does not read ({e}): {:?}",
                String::from_utf8_lossy(out)
            ),
        }
    }
    assert!(
        buf.is_empty(),
        "SMTP output ends in a partial reply: {:?}",
        String::from_utf8_lossy(out)
    );
    kinds
}

fn sieve_replies(out: &[u8]) -> Vec<Kind> {
    use codec::sieve::{parse_auth_response, parse_response, Framer, Limits, Response, Status};
    // Capability values and challenges may be literals: the framer knows where replies end.
    let mut framer = Framer::new(Limits {
        max_line: 1 << 20,
        max_literal: 1 << 20,
        max_command: 1 << 22,
    });
    let mut buf = BytesMut::from(out);
    let mut kinds = Vec::new();
    loop {
        let reply = match framer.decode(&mut buf) {
            Ok(Some(reply)) => reply,
            Ok(None) => break,
            Err(e) => panic!(
                "ManageSieve output does not frame ({e}): {:?}",
                String::from_utf8_lossy(out)
            ),
        };
        assert!(reply.ends_with(b"\r\n"), "reply without CRLF: {reply:?}");
        let parsed = parse_response(&reply).or_else(|_| parse_auth_response(&reply));
        let response = parsed.unwrap_or_else(|e| {
            panic!(
                "ManageSieve reply does not parse ({e}): {:?}",
                String::from_utf8_lossy(&reply)
            )
        });
        kinds.push(match response {
            Response::Completion(done) if done.status == Status::Ok => Kind::Ok,
            Response::Completion(_) => Kind::Failed,
            Response::Capability(_) | Response::Challenge(_) => Kind::Other,
        });
    }
    assert!(
        buf.is_empty(),
        "ManageSieve output ends in a partial reply: {:?}",
        String::from_utf8_lossy(out)
    );
    kinds
}

fn pop3_replies(out: &[u8]) -> Vec<Kind> {
    use codec::pop3::{parse_reply_line, ReplyLine};
    assert_only_crlf(out);
    let lines: Vec<&[u8]> = out
        .split_inclusive(|&b| b == b'\n')
        .map(|l| &l[..l.len() - 2])
        .collect();
    let parses = |line: &[u8]| parse_reply_line(line).is_ok();
    let mut kinds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let reply = parse_reply_line(line).unwrap_or_else(|e| {
            panic!(
                "POP3 reply does not parse ({e}): {:?}",
                String::from_utf8_lossy(out)
            )
        });
        i += 1;
        kinds.push(match reply {
            ReplyLine::Continuation(_) => Kind::Continue,
            ReplyLine::Status(status) if !status.is_ok() => Kind::Failed,
            ReplyLine::Status(_) => {
                // A `+OK` whose next line is no reply opens a block, which must end (with a
                // lone `.`) in this write, its lines dot-stuffed.
                if lines.get(i).is_some_and(|next| !parses(next)) {
                    loop {
                        let Some(&body) = lines.get(i) else {
                            panic!(
                                "unterminated POP3 block: {:?}",
                                String::from_utf8_lossy(out)
                            );
                        };
                        i += 1;
                        if body == b"." {
                            break;
                        }
                        assert!(
                            !body.starts_with(b".") || body.starts_with(b".."),
                            "block line not dot-stuffed: {:?}",
                            String::from_utf8_lossy(body)
                        );
                    }
                }
                Kind::Ok
            }
        });
    }
    kinds
}
