//! The proxy's part around a pre-login session, as `crates/proxy/src/driver.rs` plays it:
//! feed the client's reads, write out what the session produces, discard the buffer and
//! report the handshake on STARTTLS, answer every request with a verdict. On the way it
//! checks what must hold whatever the client sends:
//!
//! - no panic, and no request without progress (a session that keeps asking without
//!   consuming input would hang the driver);
//! - every write is whole, well-formed replies ([`Wire::replies`]);
//! - the input left buffered while the session waits for more stays within its framing
//!   limits, so a client cannot make the proxy hold more;
//! - STARTTLS only where offered and before TLS, and its go-ahead is the last reply: the
//!   session stops reading at STARTTLS (nothing read before the handshake counts);
//! - credentials only where authentication is allowed (TLS, or plaintext allowed), a
//!   password only with the password fallback, a token that is a b64token, and neither in
//!   any `Debug` output;
//! - while a verdict is pending the session reads and writes nothing, and refuses the
//!   other kind of verdict and a `tls_started` it did not ask for, handing the value back
//!   and changing nothing;
//! - after the login the success reply is all it writes, and it never consumes another
//!   byte: whatever the client pipelined stays in the buffer for the backend;
//! - the idle timeout closes the session, with the protocol's goodbye (POP3: none); the
//!   end of a drain and the pre-login deadline close it with their goodbyes (POP3 too);
//! - a session that asks to close says why (`close_reason`).

use std::fmt::Debug;

use bytes::BytesMut;
use sasl::ExposeSecret;
use session::{Action, Discovery, Refusal, Session, Verdict, WrongState};

use crate::script::Script;
use crate::wire::{Kind, Wire};
use crate::{shows_secret, trace, tracing};

/// What the session was configured with, as far as the checks need it.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    /// The session's wire protocol.
    pub wire: Wire,
    /// TLS from the start (implicit TLS listener).
    pub tls_active: bool,
    /// The listener offers STARTTLS.
    pub starttls_available: bool,
    /// Authentication allowed without TLS.
    pub allow_plaintext_auth: bool,
    /// The password fallback is on.
    pub password_fallback: bool,
    /// Most octets the driver's buffer may hold while the session waits for input.
    pub input_bound: usize,
}

/// The capabilities the simulated backend reports at login (IMAP shows them).
const BACKEND_CAPABILITIES: [&str; 4] = ["IMAP4rev1", "IDLE", "ENABLE", "UIDPLUS"];

/// A backend's own error challenge for `login = "passthrough"`, relayed as it came; its
/// CRLF must not reach the client's wire as a line end.
const BACKEND_CHALLENGE: &[u8] = b"{\"status\":\"401\"}\r\n* OK [ALERT] injected\r\n";

/// Runs `session` against `script`'s reads and decisions, checking as it goes.
pub fn drive<S: Session + Debug>(mut session: S, setup: Setup, mut script: Script) {
    let reads = std::mem::take(&mut script.reads);
    // Each request must consume input; a few more for the greeting and the end.
    let budget = 16 + 2 * reads.iter().map(|r| r.bytes.len() + 1).sum::<usize>();
    let mut reads = reads.into_iter();
    let mut input = BytesMut::new();
    // Everything the client sent: a secret it also sent in the clear (as a tag, say) may
    // show in `Debug` output there.
    let mut seen = Vec::new();
    let mut tls = setup.tls_active;
    let mut idle_pending = false;
    let mut requests = 0usize;
    flush(&mut session, setup.wire);
    loop {
        let action = session.advance(&mut input);
        if tracing() {
            eprintln!("action: {action:?}");
        }
        let written = flush(&mut session, setup.wire);
        match action {
            Action::NeedInput => {
                assert!(
                    input.len() <= setup.input_bound,
                    "{} octets buffered while the session waits for input, over {}",
                    input.len(),
                    setup.input_bound
                );
                assert_refuses_stray_calls(&mut session);
                if idle_pending {
                    // The same pause ends one of three ways, by what the client sent so
                    // far: the idle timer, the end of a SIGTERM drain or the pre-login
                    // deadline; the last two always say goodbye.
                    let end = seen.len() % 3;
                    match end {
                        0 => session.idle_timeout(),
                        1 => session.shutting_down(),
                        _ => session.deadline_passed(),
                    }
                    let kinds = flush(&mut session, setup.wire);
                    assert_eq!(
                        !kinds.is_empty(),
                        end != 0 || setup.wire.says_goodbye_when_idle(),
                        "the goodbye at the idle timeout, the drain's end or the deadline"
                    );
                    assert!(matches!(session.advance(&mut input), Action::Close));
                    let reason = session.close_reason();
                    match end {
                        0 => assert_ne!(reason, "closed"),
                        1 => assert_eq!(reason, "drained"),
                        _ => assert_eq!(reason, "prelogin-deadline"),
                    }
                    // A second call says nothing more.
                    session.deadline_passed();
                    assert!(session.output().is_empty(), "a goodbye after the close");
                    return;
                }
                let Some(read) = reads.next() else {
                    return;
                };
                trace("C", &read.bytes);
                input.extend_from_slice(&read.bytes);
                seen.extend_from_slice(&read.bytes);
                idle_pending = read.idle_after;
                continue;
            }
            Action::Close => {
                assert_ne!(session.close_reason(), "closed", "closed without a reason");
                return;
            }
            _ => {}
        }
        // A request must consume input: a session asking again and again would hang.
        requests += 1;
        assert!(
            requests <= budget,
            "{requests} requests from {budget} octets: no progress"
        );
        match action {
            Action::NeedInput | Action::Close => {}
            Action::StartTls => {
                assert!(setup.starttls_available, "STARTTLS where it is not offered");
                assert!(!tls, "STARTTLS under TLS");
                assert_eq!(
                    written.last(),
                    Some(&Kind::Ok),
                    "the STARTTLS go-ahead is not the last reply"
                );
                // The driver discards what came with or after STARTTLS (CVE-2011-0411).
                input.clear();
                let Ok(()) = session.tls_started() else {
                    panic!("tls_started refused after StartTls");
                };
                tls = true;
                assert_eq!(session.client_name(), None, "EHLO survived the handshake");
                flush(&mut session, setup.wire);
            }
            Action::Authenticate(credentials) => {
                assert!(
                    tls || setup.allow_plaintext_auth,
                    "a token was taken without TLS"
                );
                let token = credentials.token.expose_secret().to_owned();
                assert!(sasl::is_b64token(token.as_bytes()), "not a b64token");
                assert!(token.len() <= sasl::MAX_RESPONSE_LEN);
                let shown = format!("{credentials:?} {session:?}");
                let named = format!("{:?} {:?}", credentials.authzid, credentials.host);
                assert!(
                    !shows_secret(&shown, &token)
                        || named.contains(&token)
                        || sent_in_clear(&seen, &token),
                    "Debug shows the token: {shown}"
                );
                if setup.wire == Wire::Smtp {
                    assert!(session.client_name().is_some(), "AUTH before EHLO");
                }
                assert_waits(&mut session, &mut input);
                let decision = script.decision();
                if decision & 0x80 != 0 {
                    assert_refused(&mut session, Verdict::PasswordRefused);
                }
                let verdict = match (decision & 0x3F) % 6 {
                    choice @ (0 | 1) => Verdict::TokenRefused {
                        refusal: if choice == 0 {
                            Refusal::InvalidToken
                        } else {
                            Refusal::InsufficientScope
                        },
                        discovery: discovery(decision & 0x40 != 0),
                    },
                    2 => Verdict::Unavailable,
                    3 => Verdict::BackendRefused { challenge: None },
                    4 => Verdict::BackendRefused {
                        challenge: Some(BACKEND_CHALLENGE.to_vec()),
                    },
                    _ => logged_in(),
                };
                if deliver(&mut session, setup.wire, verdict) {
                    return after_login(session, setup.wire, input, reads);
                }
            }
            Action::PasswordLogin(credentials) => {
                assert!(setup.password_fallback, "a password without the fallback");
                assert!(
                    tls || setup.allow_plaintext_auth,
                    "a password was taken without TLS"
                );
                let password = credentials.password.expose_secret().to_owned();
                let shown = format!("{credentials:?} {session:?}");
                let named = format!("{:?} {:?}", credentials.user, credentials.authzid);
                assert!(
                    !shows_secret(&shown, &password)
                        || named.contains(&password)
                        || sent_in_clear(&seen, &password),
                    "Debug shows the password: {shown}"
                );
                if setup.wire == Wire::Smtp {
                    assert!(session.client_name().is_some(), "AUTH before EHLO");
                }
                assert_waits(&mut session, &mut input);
                let decision = script.decision();
                if decision & 0x80 != 0 {
                    assert_refused(
                        &mut session,
                        Verdict::TokenRefused {
                            refusal: Refusal::InvalidToken,
                            discovery: Discovery::default(),
                        },
                    );
                }
                let verdict = match (decision & 0x7F) % 3 {
                    0 => Verdict::PasswordRefused,
                    1 => Verdict::Unavailable,
                    _ => logged_in(),
                };
                if deliver(&mut session, setup.wire, verdict) {
                    return after_login(session, setup.wire, input, reads);
                }
            }
        }
    }
}

/// Whether the client sent `secret` as plain text somewhere (IMAP LOGIN does, a tag may).
fn sent_in_clear(seen: &[u8], secret: &str) -> bool {
    seen.windows(secret.len().max(1))
        .any(|w| w == secret.as_bytes())
}

fn logged_in() -> Verdict {
    Verdict::LoggedIn {
        capabilities: BACKEND_CAPABILITIES.map(str::to_owned).to_vec(),
    }
}

fn discovery(with_hints: bool) -> Discovery {
    if !with_hints {
        return Discovery::default();
    }
    Discovery {
        scope: Some("mail \"read\"\\write".to_owned()),
        openid_configuration: Some("https://idp.example/.well-known/openid-configuration".into()),
    }
}

/// Writes out (and checks) what the session has to say; the kinds of its replies.
fn flush<S: Session>(session: &mut S, wire: Wire) -> Vec<Kind> {
    trace("S", session.output());
    let kinds = wire.replies(session.output());
    session.output_written();
    assert!(
        session.output().is_empty(),
        "output survived output_written"
    );
    kinds
}

/// Reports `verdict`; whether the session is now logged in.
fn deliver<S: Session + Debug>(session: &mut S, wire: Wire, verdict: Verdict) -> bool {
    let login = matches!(verdict, Verdict::LoggedIn { .. });
    if tracing() {
        eprintln!("verdict: {verdict:?}");
    }
    if let Err(wrong) = session.verdict(verdict) {
        panic!("the verdict the session asked for was refused: {wrong:?}");
    }
    let kinds = flush(session, wire);
    if login {
        assert_eq!(kinds, [Kind::Ok], "the login's reply is one success");
    } else {
        assert!(!kinds.is_empty(), "a verdict without a reply");
        assert!(!kinds.contains(&Kind::Ok), "a refusal reads as success");
    }
    login
}

/// While a verdict is pending the session reads and writes nothing, and a handshake it
/// did not ask for is refused.
fn assert_waits<S: Session + Debug>(session: &mut S, input: &mut BytesMut) {
    let before = input.clone();
    assert!(matches!(session.advance(input), Action::NeedInput));
    assert_eq!(*input, before, "input consumed while a verdict is pending");
    assert!(
        session.output().is_empty(),
        "output while a verdict is pending"
    );
    assert_unchanged_by(session, "tls_started", |s| s.tls_started().map_err(drop));
}

/// A verdict of the wrong kind is handed back untouched, and nothing changes.
fn assert_refused<S: Session + Debug>(session: &mut S, verdict: Verdict) {
    let expected = format!("{verdict:?}");
    assert_unchanged_by(session, "verdict", |s| match s.verdict(verdict) {
        Ok(()) => Ok(()),
        Err(WrongState { value, .. }) => {
            assert_eq!(format!("{value:?}"), expected, "not handed back untouched");
            Err(())
        }
    });
}

/// Calls the driver never makes in this state are refused and change nothing.
fn assert_refuses_stray_calls<S: Session + Debug>(session: &mut S) {
    assert_unchanged_by(session, "tls_started", |s| s.tls_started().map_err(drop));
    assert_refused(session, Verdict::Unavailable);
}

fn assert_unchanged_by<S: Session + Debug>(
    session: &mut S,
    what: &str,
    call: impl FnOnce(&mut S) -> Result<(), ()>,
) {
    let before = format!("{session:?}");
    assert!(call(session).is_err(), "{what} accepted out of turn");
    assert_eq!(
        format!("{session:?}"),
        before,
        "{what} out of turn changed the session"
    );
}

/// After the login the session is done: whatever else the client sends (pipelined behind
/// its login, or later) stays in the buffer for the backend, and nothing more is written.
fn after_login<S: Session + Debug>(
    mut session: S,
    wire: Wire,
    mut input: BytesMut,
    reads: impl Iterator<Item = crate::script::Read>,
) {
    for read in reads {
        input.extend_from_slice(&read.bytes);
    }
    let before = input.clone();
    assert!(matches!(session.advance(&mut input), Action::NeedInput));
    assert_eq!(input, before, "input consumed after the login");
    assert!(
        flush(&mut session, wire).is_empty(),
        "output after the login"
    );
    assert_refuses_stray_calls(&mut session);
}
