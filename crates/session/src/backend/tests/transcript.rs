//! The transcript runner: `transcripts/*.txt` replayed against the login machines.
//!
//! A file holds one or more transcripts, each starting with a `### title` line. Lines
//! starting with a single `#` are comments; blank lines are skipped. A transcript is a
//! header of `key: value` lines (the request), then steps:
//!
//! | line | meaning |
//! |---|---|
//! | `S: text` | the backend sends `text` CRLF (`S:` alone: an empty line) |
//! | `S! text` | the backend sends `text` as escaped, without CRLF (`\r`, `\n`, `\0`, `\xNN`, `\\`) |
//! | `C: text` | the machine's next output line is `text` CRLF (`C:` alone: an empty line) |
//! | `-- starttls` | the machine asks for TLS; buffered bytes are discarded, the handshake "runs" |
//! | `-- learned KEYWORD ...` | the machine reports what the backend offers (SMTP keywords, ManageSieve capability names) |
//! | `-- close` | the backend closes the connection |
//! | `= logged-in [CAP ...]` | the login succeeded, with exactly these capabilities |
//! | `= leftover text` | the bytes for the client after the login (escaped, as `S!`) |
//! | `= probed` | the probe finished |
//! | `= failed KIND [~ TEXT]` | the login failed: `KIND` as [`kind`] names it; `TEXT` is in its message (for `token-refused`: the challenge, exactly; without it: no challenge) |
//!
//! In `S:`, `S!`, `C:` text, `{{N*X}}` stands for `X` repeated `N` times and `{{b64:X}}`
//! for the base64 of `X` (escaped, as `S!`).
//!
//! Header values are expanded too. Header keys: `protocol` (imap, smtp, sieve, pop3), `strategy` (master, plain-authzid,
//! passthrough, xclient, password, probe), `user`, `master`, `master-password`, `format`,
//! `mechanism`, `token`, `authzid`, `password`, `starttls`, `forward` (yes/no),
//! `client`, `client-name`, `session`.
//!
//! Every transcript runs twice: consecutive `S:` lines as one read, and every byte its own
//! read. The outcome must not depend on it; the bytes for the client are the event's
//! leftover plus whatever arrived after it.

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use bytes::BytesMut;
use sasl::{BearerCredentials, Mechanism, PasswordCredentials};

use crate::backend::imap::ImapLogin;
use crate::backend::pop3::Pop3Login;
use crate::backend::sieve::SieveLogin;
use crate::backend::smtp::SmtpLogin;
use crate::backend::{
    BackendLogin, Event, Learned, LoginError, LoginRequest, MasterUser, Strategy,
};

/// One transcript.
#[derive(Debug)]
pub(super) struct Transcript {
    pub(super) title: String,
    header: HashMap<String, String>,
    steps: Vec<Step>,
}

#[derive(Debug)]
enum Step {
    Server(Vec<u8>),
    Client(Vec<u8>),
    StartTls,
    Learned(Vec<String>),
    Close,
    LoggedIn(Vec<String>),
    Leftover(Vec<u8>),
    Probed,
    Failed { kind: String, text: Option<String> },
}

/// Every transcript of every file in `dir`.
pub(super) fn load(dir: &Path) -> Vec<(String, Transcript)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("transcript file");
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
        for transcript in parse(&text) {
            all.push((file.clone().unwrap_or_default(), transcript));
        }
    }
    all
}

pub(super) fn parse(text: &str) -> Vec<Transcript> {
    let mut transcripts: Vec<Transcript> = Vec::new();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("### ") {
            transcripts.push(Transcript {
                title: title.trim().to_owned(),
                header: HashMap::new(),
                steps: Vec::new(),
            });
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let current = transcripts
            .last_mut()
            .unwrap_or_else(|| panic!("a line before the first `###`: {line}"));
        // `S:` and `C:` alone are empty lines.
        let line = match line {
            "S:" | "C:" => format!("{line} "),
            _ => line.to_owned(),
        };
        let line = line.as_str();
        let step = if let Some(text) = line.strip_prefix("S: ") {
            let mut bytes = expand(text);
            bytes.extend_from_slice(b"\r\n");
            Step::Server(bytes)
        } else if let Some(text) = line.strip_prefix("S! ") {
            Step::Server(expand(text))
        } else if let Some(text) = line.strip_prefix("C: ") {
            let mut bytes = expand(text);
            bytes.extend_from_slice(b"\r\n");
            Step::Client(bytes)
        } else if line == "-- starttls" {
            Step::StartTls
        } else if let Some(names) = line.strip_prefix("-- learned") {
            Step::Learned(names.split_whitespace().map(str::to_owned).collect())
        } else if line == "-- close" {
            Step::Close
        } else if let Some(caps) = line.strip_prefix("= logged-in") {
            Step::LoggedIn(caps.split_whitespace().map(str::to_owned).collect())
        } else if let Some(text) = line.strip_prefix("= leftover ") {
            Step::Leftover(expand(text))
        } else if line == "= probed" {
            Step::Probed
        } else if let Some(rest) = line.strip_prefix("= failed ") {
            let (kind, text) = match rest.split_once(" ~ ") {
                Some((kind, text)) => (kind, Some(text.to_owned())),
                None => (rest.strip_suffix(" ~").unwrap_or(rest), None),
            };
            let text = text.or_else(|| rest.ends_with(" ~").then(String::new));
            Step::Failed {
                kind: kind.trim().to_owned(),
                text,
            }
        } else if let Some((key, value)) = line.split_once(": ") {
            assert!(current.steps.is_empty(), "header after steps: {line}");
            let value = String::from_utf8(expand(value)).expect("UTF-8 header value");
            current.header.insert(key.to_owned(), value);
            continue;
        } else {
            panic!("unreadable transcript line: {line}");
        };
        current.steps.push(step);
    }
    transcripts
}

/// `{{N*X}}` and `{{b64:X}}` expanded (they nest), then the escapes of `S!`.
fn expand(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.extend(unescape(&rest[..start]));
        let end = closing(rest, start + 2);
        let inner = &rest[start + 2..end];
        if let Some(plain) = inner.strip_prefix("b64:") {
            out.extend_from_slice(sasl::encode_base64(&expand(plain)).as_bytes());
        } else {
            let (count, what) = inner.split_once('*').expect("{{N*X}}");
            let count: usize = count.parse().expect("a count");
            out.extend(expand(what).repeat(count));
        }
        rest = &rest[end + 2..];
    }
    out.extend(unescape(rest));
    out
}

/// Where the `}}` closing a `{{` opened before `from` is. The last `}` of a run closes:
/// `{{b64:{"a":1}}}` holds `{"a":1}`.
fn closing(text: &str, from: usize) -> usize {
    let mut depth = 1;
    let mut at = from;
    while at < text.len() {
        if text[at..].starts_with("{{") {
            depth += 1;
            at += 2;
        } else if text[at..].starts_with("}}") {
            depth -= 1;
            if depth == 0 {
                while text[at + 2..].starts_with('}') {
                    at += 1;
                }
                return at;
            }
            at += 2;
        } else {
            at += 1;
        }
    }
    panic!("`{{{{` without `}}}}` in {text}");
}

fn unescape(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex: String = [bytes.next(), bytes.next()]
                    .into_iter()
                    .map(|b| char::from(b.expect("two hex digits")))
                    .collect();
                out.push(u8::from_str_radix(&hex, 16).expect("hex"));
            }
            other => panic!("unknown escape \\{other:?}"),
        }
    }
    out
}

impl Transcript {
    fn get<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.header.get(key).map_or(default, String::as_str)
    }

    fn yes(&self, key: &str) -> bool {
        match self.get(key, "no") {
            "yes" => true,
            "no" => false,
            other => panic!("{key}: {other}"),
        }
    }

    /// The request the header describes (`None` for a probe).
    pub(super) fn request(&self) -> Option<LoginRequest> {
        let user = self.get("user", "alice").to_owned();
        let master = MasterUser {
            name: self.get("master", "proxymaster").to_owned(),
            password: self.get("master-password", "secret").into(),
            login_format: self.get("format", "{user}*{master}").to_owned(),
        };
        let authzid = self.header.get("authzid").cloned();
        let strategy = match self.get("strategy", "master") {
            "probe" => return None,
            "master" => Strategy::Master { user, master },
            "plain-authzid" => Strategy::PlainAuthzid { user, master },
            "passthrough" => Strategy::Passthrough {
                user,
                credentials: BearerCredentials {
                    mechanism: Mechanism::from_name(
                        self.get("mechanism", "OAUTHBEARER").as_bytes(),
                    )
                    .expect("mechanism"),
                    authzid,
                    token: self.get("token", "tok").into(),
                    host: None,
                    port: None,
                },
            },
            "xclient" => Strategy::Xclient { user },
            "password" => Strategy::Password(PasswordCredentials {
                authzid,
                user,
                password: self.get("password", "pw").into(),
            }),
            other => panic!("strategy {other}"),
        };
        Some(LoginRequest {
            strategy,
            client: self
                .get("client", "192.0.2.7:51234")
                .parse()
                .expect("client"),
            client_name: self.header.get("client-name").cloned(),
            session_id: self.get("session", "s1").to_owned(),
            starttls: self.yes("starttls"),
            forward_client_address: self.yes("forward"),
        })
    }

    fn machine(&self) -> Result<Box<dyn BackendLogin>, LoginError> {
        let starttls = self.yes("starttls");
        let protocol = self.get("protocol", "imap");
        let Some(request) = self.request() else {
            return Ok(match protocol {
                "smtp" => Box::new(SmtpLogin::probe(starttls)),
                "sieve" => Box::new(SieveLogin::probe(starttls)),
                other => panic!("no probe for {other}"),
            });
        };
        Ok(match protocol {
            "imap" => Box::new(ImapLogin::new(request)?),
            "smtp" => Box::new(SmtpLogin::new(request)?),
            "sieve" => Box::new(SieveLogin::new(request)?),
            "pop3" => Box::new(Pop3Login::new(request)?),
            other => panic!("protocol {other}"),
        })
    }
}

/// The name transcripts give a failure.
pub(super) fn kind(error: &LoginError) -> &'static str {
    match error {
        LoginError::TokenRefused { .. } => "token-refused",
        LoginError::PasswordRefused => "password-refused",
        LoginError::Unavailable { .. } => "unavailable",
        LoginError::Refused { .. } => "refused",
        LoginError::Protocol { .. } => "protocol",
        LoginError::Unsafe { .. } => "unsafe",
        LoginError::Unsupported { .. } => "unsupported",
        LoginError::Finished => "finished",
    }
}

/// A machine fed as a driver would, recording what it says.
struct Harness {
    machine: Option<Box<dyn BackendLogin>>,
    input: BytesMut,
    /// Output not yet matched by `C:` lines.
    written: Vec<u8>,
    events: VecDeque<Event>,
    awaiting_tls: bool,
    finished: bool,
    /// What the backend sent after the machine finished: the client's, like the leftover.
    after_end: Vec<u8>,
    leftover: Option<Vec<u8>>,
}

impl Harness {
    fn pump(&mut self) {
        let Some(machine) = self.machine.as_mut() else {
            return;
        };
        if self.awaiting_tls || self.finished {
            return;
        }
        loop {
            let event = machine.advance(&mut self.input);
            self.written.extend_from_slice(machine.output());
            machine.output_written();
            assert!(
                machine.output().is_empty(),
                "output_written empties the output"
            );
            match event {
                Event::NeedInput => return,
                Event::Learned(_) => self.events.push_back(event),
                Event::StartTls => {
                    self.events.push_back(event);
                    self.awaiting_tls = true;
                    return;
                }
                Event::LoggedIn(_) | Event::Probed | Event::Failed(_) => {
                    self.events.push_back(event);
                    self.finished = true;
                    return;
                }
            }
        }
    }

    fn feed(&mut self, bytes: &[u8], bytewise: bool) {
        if self.finished {
            self.after_end.extend_from_slice(bytes);
            return;
        }
        if !bytewise {
            self.input.extend_from_slice(bytes);
            self.pump();
            return;
        }
        for (i, &b) in bytes.iter().enumerate() {
            if self.finished {
                self.after_end.extend_from_slice(&bytes[i..]);
                return;
            }
            self.input.extend_from_slice(&[b]);
            self.pump();
        }
    }

    fn next_event(&mut self, wanted: &str) -> Result<Event, String> {
        self.events
            .pop_front()
            .ok_or_else(|| format!("expected {wanted}, but the machine reported nothing more"))
    }
}

/// Replays `transcript`; `bytewise`: every server byte is its own read.
pub(super) fn run(transcript: &Transcript, bytewise: bool) -> Result<(), String> {
    let mut harness = Harness {
        machine: None,
        input: BytesMut::new(),
        written: Vec::new(),
        events: VecDeque::new(),
        awaiting_tls: false,
        finished: false,
        after_end: Vec::new(),
        leftover: None,
    };
    match transcript.machine() {
        Ok(machine) => harness.machine = Some(machine),
        Err(error) => {
            harness.events.push_back(Event::Failed(error));
            harness.finished = true;
        }
    }
    harness.pump();
    let mut server = Vec::new();
    for step in &transcript.steps {
        if let Step::Server(bytes) = step {
            server.extend_from_slice(bytes);
            continue;
        }
        if !server.is_empty() {
            harness.feed(&std::mem::take(&mut server), bytewise);
        }
        check(&mut harness, step)?;
    }
    if !server.is_empty() {
        harness.feed(&server, bytewise);
    }
    if !harness.written.is_empty() {
        return Err(short(format!(
            "unexpected output: {:?}",
            String::from_utf8_lossy(&harness.written)
        )));
    }
    if let Some(event) = harness.events.pop_front() {
        return Err(short(format!("unexpected event: {event:?}")));
    }
    Ok(())
}

/// A failure message of bounded length: hostile transcripts carry 64 KiB lines.
fn short(message: String) -> String {
    const MAX: usize = 400;
    match message.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message,
    }
}

fn check(harness: &mut Harness, step: &Step) -> Result<(), String> {
    check_step(harness, step).map_err(short)
}

fn check_step(harness: &mut Harness, step: &Step) -> Result<(), String> {
    match step {
        Step::Server(_) => Ok(()),
        Step::Client(line) => {
            if !harness.written.starts_with(line) {
                return Err(format!(
                    "expected C: {:?}\n     got: {:?}",
                    String::from_utf8_lossy(line),
                    String::from_utf8_lossy(&harness.written)
                ));
            }
            harness.written.drain(..line.len());
            Ok(())
        }
        Step::StartTls => {
            let event = harness.next_event("StartTls")?;
            if !matches!(event, Event::StartTls) {
                return Err(format!("expected StartTls, got {event:?}"));
            }
            // The driver's part: nothing read before the handshake survives.
            harness.input.clear();
            harness.awaiting_tls = false;
            let machine = harness.machine.as_mut().ok_or("no machine")?;
            machine.tls_started().map_err(|e| e.to_string())?;
            harness.pump();
            Ok(())
        }
        Step::Learned(names) => {
            let event = harness.next_event("Learned")?;
            let got: Vec<String> = match &event {
                Event::Learned(Learned::SmtpExtensions(keywords)) => {
                    keywords.iter().map(|(k, _)| k.clone()).collect()
                }
                Event::Learned(Learned::SieveCapabilities(block)) => {
                    block.iter().map(|c| c.name.clone()).collect()
                }
                other => return Err(format!("expected Learned {names:?}, got {other:?}")),
            };
            if &got != names {
                return Err(format!("learned {got:?}, expected {names:?}"));
            }
            Ok(())
        }
        Step::Close => {
            if harness.finished {
                return Err("close after the machine finished".into());
            }
            let machine = harness.machine.as_mut().ok_or("no machine")?;
            let error = machine.closed();
            harness.events.push_back(Event::Failed(error));
            harness.finished = true;
            Ok(())
        }
        Step::LoggedIn(caps) => match harness.next_event("LoggedIn")? {
            Event::LoggedIn(logged_in) if &logged_in.capabilities == caps => {
                harness.leftover = Some(logged_in.leftover.to_vec());
                Ok(())
            }
            other => Err(format!("expected LoggedIn {caps:?}, got {other:?}")),
        },
        Step::Leftover(expected) => {
            let mut got = harness
                .leftover
                .clone()
                .ok_or("leftover before logged-in")?;
            got.extend_from_slice(&harness.after_end);
            if &got != expected {
                return Err(format!(
                    "leftover {:?}, expected {:?}",
                    String::from_utf8_lossy(&got),
                    String::from_utf8_lossy(expected)
                ));
            }
            Ok(())
        }
        Step::Probed => match harness.next_event("Probed")? {
            Event::Probed => Ok(()),
            other => Err(format!("expected Probed, got {other:?}")),
        },
        Step::Failed { kind: wanted, text } => {
            let event = harness.next_event("Failed")?;
            let Event::Failed(error) = event else {
                return Err(format!("expected failure {wanted}, got {event:?}"));
            };
            if kind(&error) != wanted {
                return Err(format!(
                    "expected failure {wanted}, got {error:?} ({error})"
                ));
            }
            if let LoginError::TokenRefused { challenge } = &error {
                let got = challenge
                    .as_ref()
                    .map(|c| String::from_utf8_lossy(c).into_owned());
                if &got != text {
                    return Err(format!("challenge {got:?}, expected {text:?}"));
                }
                return Ok(());
            }
            match text {
                Some(text) if !error.to_string().contains(text.as_str()) => {
                    Err(format!("`{error}` does not say `{text}`"))
                }
                _ => Ok(()),
            }
        }
    }
}
