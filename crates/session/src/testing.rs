//! Test support shared by every protocol's tests: feeding a session, taking its output, the
//! SASL responses, and one runner for `C:`/`S:` transcript files
//! (`crates/session/transcripts/<protocol>/*.txt`).
//!
//! A transcript is the protocol's own notation (RFC 3501, RFC 1939, ...) with two more kinds
//! of line for what the driver does:
//!
//! ```text
//! # comment
//! config: tls password-fallback      the session's set-up (names per protocol, see below)
//! S: * OK [CAPABILITY ...] ready.    what the session must have written since the last C:/D:
//! C: a LOGIN alice secret            a client line (CRLF added); the session advances
//! A: password-login                  the action the last advance returned
//! D: password-refused                the driver's verdict (or `tls-started`)
//! ```
//!
//! Actions: `need-input`, `start-tls`, `authenticate`, `password-login`, `close`. Verdicts:
//! `token-refused`, `scope-refused`, `backend-refused [base64 challenge]`,
//! `password-refused`, `unavailable`, `logged-in [capability ...]`, `tls-started`.
//! Config words: `tls`, `starttls`, `plaintext-auth`, `password-fallback`, `no-challenge`.
//! After the last line, every `S:` line must have been written and nothing more.

use std::path::Path;

use bytes::BytesMut;

use crate::{Action, Discovery, Refusal, Session, Verdict};

/// Feeds `input`, returns the action and everything the session wrote.
pub(crate) fn feed<S: Session>(
    session: &mut S,
    buffer: &mut BytesMut,
    input: &[u8],
) -> (Action, String) {
    buffer.extend_from_slice(input);
    let action = session.advance(buffer);
    (action, take(session))
}

/// Takes what the session wrote outside `feed` (greeting, verdict replies).
pub(crate) fn take<S: Session>(session: &mut S) -> String {
    let out = String::from_utf8_lossy(session.output()).into_owned();
    session.output_written();
    out
}

/// A token refusal without discovery hints.
pub(crate) fn refused(refusal: Refusal) -> Verdict {
    Verdict::TokenRefused {
        refusal,
        discovery: Discovery::default(),
    }
}

/// A base64 XOAUTH2 initial response.
pub(crate) fn xoauth2(user: &str, token: &str) -> String {
    sasl::encode_base64(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// A base64 OAUTHBEARER initial response naming `user`.
pub(crate) fn oauthbearer(user: &str, token: &str) -> String {
    sasl::encode_base64(format!("n,a={user},\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// The protocol-independent set-up words of a `config:` line.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Setup {
    pub tls: bool,
    pub starttls: bool,
    pub plaintext_auth: bool,
    pub password_fallback: bool,
    pub no_challenge: bool,
}

fn setup(words: &str) -> Setup {
    let mut setup = Setup::default();
    for word in words.split_whitespace() {
        match word {
            "tls" => setup.tls = true,
            "starttls" => setup.starttls = true,
            "plaintext-auth" => setup.plaintext_auth = true,
            "password-fallback" => setup.password_fallback = true,
            "no-challenge" => setup.no_challenge = true,
            other => panic!("unknown config word {other:?}"),
        }
    }
    setup
}

fn action_name(action: &Action) -> &'static str {
    match action {
        Action::NeedInput => "need-input",
        Action::StartTls => "start-tls",
        Action::Authenticate(_) => "authenticate",
        Action::PasswordLogin(_) => "password-login",
        Action::Close => "close",
    }
}

fn verdict(words: &str) -> Verdict {
    let mut words = words.split_whitespace();
    match words.next() {
        Some("token-refused") => refused(Refusal::InvalidToken),
        Some("scope-refused") => refused(Refusal::InsufficientScope),
        Some("backend-refused") => Verdict::BackendRefused {
            challenge: words
                .next()
                .map(|b64| sasl::decode_base64(b64.as_bytes()).expect("challenge in base64")),
        },
        Some("password-refused") => Verdict::PasswordRefused,
        Some("unavailable") => Verdict::Unavailable,
        Some("logged-in") => Verdict::LoggedIn {
            capabilities: words.map(str::to_owned).collect(),
        },
        other => panic!("unknown verdict {other:?}"),
    }
}

/// Replays one transcript against the session `start` builds from its `config:` line.
pub(crate) fn replay<S: Session>(name: &str, text: &str, start: impl Fn(Setup) -> S) {
    let mut session: Option<S> = None;
    let mut buffer = BytesMut::new();
    let mut want = String::new();
    let mut last = Action::NeedInput;
    for (number, raw) in text.lines().enumerate() {
        let at = format!("{name}:{}", number + 1);
        // Trailing spaces are significant (`+ `, `334 `): only a CR is dropped.
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (kind, rest) = line.split_once(':').unwrap_or((line, ""));
        let rest = rest.strip_prefix(' ').unwrap_or(rest);
        if kind == "config" {
            assert!(session.is_none(), "{at}: a second config line");
            session = Some(start(setup(rest)));
            continue;
        }
        let session = session.get_or_insert_with(|| start(Setup::default()));
        match kind {
            "S" => {
                want.push_str(rest);
                want.push_str("\r\n");
            }
            "C" => {
                assert_eq!(take(session), std::mem::take(&mut want), "{at}: before C:");
                buffer.extend_from_slice(rest.as_bytes());
                buffer.extend_from_slice(b"\r\n");
                last = session.advance(&mut buffer);
            }
            "A" => assert_eq!(action_name(&last), rest, "{at}: the action"),
            "D" => {
                assert_eq!(take(session), std::mem::take(&mut want), "{at}: before D:");
                if rest == "tls-started" {
                    session.tls_started().expect("TLS was asked for");
                    buffer.clear();
                } else {
                    session
                        .verdict(verdict(rest))
                        .unwrap_or_else(|wrong| panic!("{at}: {wrong}"));
                }
                last = session.advance(&mut buffer);
            }
            other => panic!("{at}: unknown line kind {other:?}"),
        }
    }
    let session = session.as_mut().expect("an empty transcript");
    assert_eq!(take(session), want, "{name}: at the end");
}

/// Replays every transcript file of `protocol`; returns how many ran.
pub(crate) fn replay_dir<S: Session>(protocol: &str, start: impl Fn(Setup) -> S) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("transcripts")
        .join(protocol);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read transcript");
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        replay(&name.unwrap_or_default(), &text, &start);
    }
    files.len()
}
