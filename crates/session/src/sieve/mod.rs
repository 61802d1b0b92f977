//! The ManageSieve pre-authentication session (RFC 5804, non-authenticated state).
//!
//! The proxy answers everything before login itself: the greeting (capability block and
//! `OK`), CAPABILITY, NOOP, LOGOUT, STARTTLS and AUTHENTICATE with OAUTHBEARER or XOAUTH2.
//! Every other command gets `NO "Authenticate first."`. It implements the crate's
//! [`Session`] trait like every protocol.
//!
//! Input handling:
//! - Commands are handled strictly one at a time from the driver's buffer. Once
//!   AUTHENTICATE has the client's credentials the session stops reading: whatever the
//!   client pipelined behind it stays in the driver's buffer and goes to the backend
//!   untouched after login.
//! - **After STARTTLS nothing buffered survives.** The session stops reading at STARTTLS
//!   and returns [`Action::StartTls`] (again, until told otherwise); the driver discards
//!   every byte still buffered before the handshake, and `tls_started`
//!   starts framing afresh and re-sends the capability block and `OK` unasked, as RFC 5804
//!   §2.2 requires.
//! - Strings may be quoted or literals (`{n+}`, and `{n}` read at once: see
//!   [`codec::sieve::framing`]). Quoted strings are accepted beyond RFC 5804's 1024 octets,
//!   up to the line limit, because sievelib sends the OAUTHBEARER token as one quoted
//!   string whatever its length.
//! - Over-large input gets `NO "..."` and the session reads on from the end of the
//!   offending command (an over-large literal's octets are skipped); the second closes with
//!   `BYE`. A literal too large to skip (over 128 KiB, say `{4294967296}`) closes at once
//!   with `BYE "Literal too large."`: skipping it would leave the session deaf, and its
//!   octets must not be read as commands. A response or token over the SASL layer's
//!   limits gets `NO "SASL response too long."`, never "invalid base64".
//!
//! Replies (DESIGN.md's table): a refused token gets the mechanism's error challenge, then
//! `NO "Authentication failed."` after the client's dummy answer; an unreachable identity
//! provider or backend `NO (TRYLATER) "..."`; AUTHENTICATE before TLS where that is not
//! allowed `NO (ENCRYPT-NEEDED) "..."`; over-long input `NO "..."`. A `BYE` that closes the
//! connection *replaces* the `NO` it would otherwise be, since in ManageSieve `BYE` is a
//! command's final response (RFC 5804 §2.1's example ends three failed AUTHENTICATEs with
//! `BYE "Too many failed authentication attempts"` alone).
//!
//! Every command refused for what it is (malformed, unknown, of the logged-in state,
//! STARTTLS where it is not offered, authentication before TLS, with an unknown mechanism
//! or bad base64) counts towards [`SieveSessionConfig::max_bad_commands`], and the last
//! one allowed is answered `BYE "Too many invalid commands."`: answered one by one for
//! ever, a flood of them would cost the proxy a reply each until the pre-login deadline.

mod reply;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use codec::sieve::{
    parse_command, parse_sasl_response, Capability, Code, Command, Framer, FramingError,
    InitialResponse, SaslResponse,
};
use sasl::{ClientMessage, Mechanism};

use crate::auth::{is_too_long, Auth, AuthHost, AuthSettings, Outcome};
/// [`Action::PasswordLogin`] is never returned: this session has no password fallback.
pub use crate::{Action, Discovery, Refusal, Session, Verdict, WrongState};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SieveSessionConfig {
    /// TLS already protects the connection (implicit TLS listener).
    pub tls_active: bool,
    /// The listener offers STARTTLS (port 4190).
    pub starttls_available: bool,
    /// Authentication is allowed without TLS (loopback tests only).
    pub allow_plaintext_auth: bool,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: u32,
    /// A refused token gets the mechanism's error challenge before the final `NO` (RFC
    /// 7628). Off: the `NO` comes at once, for clients that never answer the challenge.
    pub error_challenge: bool,
    /// Framing limits for commands before login. The default line limit (24,236) fits a
    /// 16 KiB token, base64-encoded, in a quoted string.
    pub limits: codec::Limits,
    /// What the session's own error challenges (for unusable credentials) tell the client;
    /// a refused token's challenge says what its [`Verdict::TokenRefused`] carries.
    pub discovery: Discovery,
    /// The backend's own capability block (before login), as the driver learned it.
    /// Everything in it that is not about authentication, TLS or the server's identity is
    /// advertised as the backend sent it, unknown capabilities included: RFC 5804 §1.7
    /// ties some to others (`NOTIFY` is required whenever `SIEVE` lists `enotify`), and
    /// after login the client talks to the backend with what it read here. The proxy says
    /// `IMPLEMENTATION`, `SASL` and `STARTTLS` itself. `None` (the backend was not
    /// reached yet) advertises `"SIEVE" ""` and `"VERSION" "1.0"`: clients then see the
    /// real list only when they ask the backend with CAPABILITY after login, so the driver
    /// should fill this in.
    pub backend_capabilities: Option<Arc<[Capability]>>,
    /// Over-long inputs tolerated before the connection is closed.
    pub max_oversized_inputs: u32,
    /// Malformed, unknown or out-of-place commands tolerated before the connection is
    /// closed (the last one is answered with `BYE`).
    pub max_bad_commands: u32,
}

impl Default for SieveSessionConfig {
    fn default() -> Self {
        Self {
            tls_active: false,
            starttls_available: false,
            allow_plaintext_auth: false,
            max_auth_failures: 3,
            error_challenge: true,
            // Lines of 24,236 octets: a 16 KiB token, base64-encoded, plus the command.
            limits: codec::Limits::default(),
            discovery: Discovery::default(),
            backend_capabilities: None,
            // "NO, then close if it repeats": the second over-long input closes.
            max_oversized_inputs: 2,
            // Dovecot closes after 20 bad commands; a client that needs ten is broken.
            max_bad_commands: 10,
        }
    }
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// AUTHENTICATE in progress.
    Auth(Auth),
    /// `OK "Begin TLS negotiation now."` sent; waiting for the driver's handshake.
    TlsPending,
    /// Logged in: the session is finished and the driver relays.
    LoggedIn,
    /// Closing.
    Closed,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Commands => "reading commands",
            State::Auth(_) => "authenticating",
            State::TlsPending => "waiting for the TLS handshake",
            State::LoggedIn => "logged in",
            State::Closed => "closed",
        }
    }
}

/// One client connection before login.
#[derive(Debug)]
pub struct SieveSession {
    config: SieveSessionConfig,
    framer: Framer,
    state: State,
    output: Vec<u8>,
    auth_failures: u32,
    oversized_inputs: u32,
    bad_commands: u32,
    close_reason: &'static str,
}

/// ManageSieve's SASL continuation: a quoted string (or literal) of base64.
fn sasl_continuation(out: &mut Vec<u8>, base64: &str) {
    reply::challenge(out, base64.to_owned());
}

impl SieveSession {
    /// A new session; its greeting (the capability block and `OK "bearergate ready."`) is
    /// already in the output.
    pub fn new(config: SieveSessionConfig) -> Self {
        let framer = Framer::new(config.limits);
        let mut session = Self {
            config,
            framer,
            state: State::Commands,
            output: Vec::new(),
            auth_failures: 0,
            oversized_inputs: 0,
            bad_commands: 0,
            close_reason: "closed",
        };
        session.write_capabilities();
        reply::ok(&mut session.output, None, "bearergate ready.");
        session
    }

    fn auth_allowed(&self) -> bool {
        self.config.tls_active || self.config.allow_plaintext_auth
    }

    fn write_capabilities(&mut self) {
        let sasl = if self.auth_allowed() {
            Mechanism::ALL.map(|m| m.name()).join(" ")
        } else {
            String::new()
        };
        let starttls = self.config.starttls_available && !self.config.tls_active;
        let backend = self.config.backend_capabilities.as_deref();
        reply::capabilities(&mut self.output, &sasl, starttls, backend);
    }

    /// Handles one command, or says more input is needed (`Some(NeedInput)`); `None` means
    /// "handled, carry on".
    fn next_command(&mut self, input: &mut BytesMut) -> Option<Action> {
        let bytes = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(bytes)) => bytes,
            Err(error) => {
                self.framing_error(&error);
                return None;
            }
        };
        let Ok(command) = parse_command(&bytes) else {
            self.refuse(None, "Syntax error in command.");
            return None;
        };
        match command {
            Command::Capability => {
                self.write_capabilities();
                reply::ok(&mut self.output, None, "Capability completed.");
            }
            Command::Noop { tag } => {
                // RFC 5804 §2.13: the tag comes back in a TAG response code.
                reply::ok(&mut self.output, tag.map(Code::Tag), "NOOP completed.");
            }
            Command::Logout => {
                reply::ok(&mut self.output, None, "Logout completed.");
                self.close("logout");
            }
            Command::StartTls => return self.starttls(),
            Command::Authenticate {
                mechanism,
                initial_response,
            } => return self.authenticate(&mechanism, initial_response),
            Command::Unauthenticate => self.refuse(None, "Not authenticated."),
            Command::Other { .. } => self.refuse(None, "Authenticate first."),
        }
        None
    }

    fn starttls(&mut self) -> Option<Action> {
        if self.config.tls_active || !self.config.starttls_available {
            let text = if self.config.tls_active {
                "TLS is already active."
            } else {
                "STARTTLS is not available on this port."
            };
            self.refuse(None, text);
            return None;
        }
        reply::ok(&mut self.output, None, "Begin TLS negotiation now.");
        self.state = State::TlsPending;
        Some(Action::StartTls)
    }

    fn authenticate(
        &mut self,
        mechanism: &str,
        initial_response: Option<InitialResponse>,
    ) -> Option<Action> {
        if !self.auth_allowed() {
            self.refuse(
                Some(Code::EncryptNeeded),
                "Authentication requires TLS: use STARTTLS first.",
            );
            return None;
        }
        let Some(mechanism) = Mechanism::from_name(mechanism.as_bytes()) else {
            self.refuse(
                None,
                "Unsupported authentication mechanism: use OAUTHBEARER or XOAUTH2.",
            );
            return None;
        };
        let settings = AuthSettings {
            error_challenge: self.config.error_challenge,
            discovery: self.config.discovery.clone(),
        };
        let mut auth = Auth::token(mechanism, &settings, sasl_continuation);
        let message = match initial_response {
            // No initial response: the exchange answers with an empty challenge `""`.
            None | Some(InitialResponse::Empty) => ClientMessage::Empty,
            Some(InitialResponse::Base64(text)) => match ClientMessage::from_line(&text) {
                Ok(message) => message,
                Err(error) if is_too_long(&error) => {
                    self.too_large("SASL response too long.");
                    return None;
                }
                Err(_) => {
                    self.refuse(None, "Invalid base64 in initial response.");
                    return None;
                }
            },
        };
        let step = auth.start(&mut self.output, Some(message));
        self.after_auth((), auth, step)
    }

    fn next_auth_line(&mut self, input: &mut BytesMut) -> Option<Action> {
        let framed = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(bytes)) => Ok(bytes),
            Err(error) => Err(error),
        };
        let State::Auth(mut auth) = std::mem::replace(&mut self.state, State::Commands) else {
            return None;
        };
        let bytes = match framed {
            Ok(bytes) => bytes,
            Err(error) => {
                auth.abandon();
                self.framing_error(&error);
                return None;
            }
        };
        let line: Bytes = match parse_sasl_response(&bytes) {
            Ok(SaslResponse::Empty) => Bytes::new(),
            Ok(SaslResponse::Cancel) => Bytes::from_static(b"*"),
            Ok(SaslResponse::Base64(text)) => text,
            Err(_) => {
                auth.abandon();
                self.refuse(None, "Invalid SASL response: expected a string.");
                return None;
            }
        };
        let step = auth.line(&mut self.output, &line);
        self.after_auth((), auth, step)
    }

    /// The final response to AUTHENTICATE.
    ///
    /// A login gets `OK "Logged in."` without capabilities: RFC 5804 §2.1 has the server
    /// re-send them only when the SASL exchange negotiated a security layer, which
    /// OAUTHBEARER and XOAUTH2 never do. A client that wants the backend's own list asks
    /// with CAPABILITY, which is relayed to the backend from then on.
    fn auth_reply(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Failed => self.authentication_failed(),
            // RFC 5804 §2.1: the server answers a cancel with NO.
            Outcome::Cancelled => reply::no(&mut self.output, None, "Authentication cancelled."),
            Outcome::BadBase64 => self.refuse(None, "Invalid base64 in SASL response."),
            Outcome::TooLong => self.too_large("SASL response too long."),
            Outcome::Unavailable => reply::no(
                &mut self.output,
                Some(Code::TryLater),
                "Authentication service temporarily unavailable; try again later.",
            ),
            Outcome::LoggedIn(_) => {
                reply::ok(&mut self.output, None, "Logged in.");
                self.state = State::LoggedIn;
            }
        }
    }

    fn authentication_failed(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            reply::bye(&mut self.output, "Too many failed authentications.");
            self.close("too-many-auth-failures");
            return;
        }
        reply::no(&mut self.output, None, "Authentication failed.");
    }

    fn framing_error(&mut self, error: &FramingError) {
        let text = match error {
            FramingError::LineTooLong => "Line too long.",
            FramingError::LiteralTooLarge { .. } => "Literal too large.",
            FramingError::CommandTooLong => "Command too long.",
            FramingError::LiteralTooLargeToSkip { .. } => {
                // The framer drops all input from here: answering anything more would be a
                // lie, so the `BYE` is the command's answer and the connection closes.
                reply::bye(&mut self.output, "Literal too large.");
                self.close("literal-too-large");
                return;
            }
        };
        self.too_large(text);
    }

    /// Over-large input: `NO "text"`, or `BYE` and close when it repeats.
    fn too_large(&mut self, text: &str) {
        self.oversized_inputs += 1;
        if self.oversized_inputs >= self.config.max_oversized_inputs {
            reply::bye(&mut self.output, "Too many invalid commands.");
            self.close("too-many-bad-commands");
            return;
        }
        reply::no(&mut self.output, None, text);
    }

    /// A refused command: `NO [(code)] "text"`, counted; the last one allowed gets `BYE`
    /// instead, and the connection closes.
    fn refuse(&mut self, code: Option<Code>, text: &str) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            reply::bye(&mut self.output, "Too many invalid commands.");
            self.close("too-many-bad-commands");
            return;
        }
        reply::no(&mut self.output, code, text);
    }

    fn close(&mut self, reason: &'static str) {
        self.state = State::Closed;
        self.close_reason = reason;
    }
}

impl AuthHost for SieveSession {
    type Context = ();

    fn park(&mut self, _: (), auth: Auth) {
        self.state = State::Auth(auth);
    }

    fn unpark(&mut self) -> Result<((), Auth), &'static str> {
        match std::mem::replace(&mut self.state, State::Commands) {
            State::Auth(auth) => Ok(((), auth)),
            other => {
                let name = other.name();
                self.state = other;
                Err(name)
            }
        }
    }

    fn out(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    fn finish_auth(&mut self, _: (), outcome: Outcome) {
        self.auth_reply(outcome)
    }
}

impl Session for SieveSession {
    fn output(&self) -> &[u8] {
        &self.output
    }

    fn output_written(&mut self) {
        crate::reset_output(&mut self.output);
    }

    fn advance(&mut self, input: &mut BytesMut) -> Action {
        loop {
            let step = match &self.state {
                State::Commands => self.next_command(input),
                State::Auth(auth) if auth.wants_line() => self.next_auth_line(input),
                State::Auth(_) | State::LoggedIn => return Action::NeedInput,
                State::TlsPending => return Action::StartTls,
                State::Closed => return Action::Close,
            };
            if let Some(action) = step {
                return action;
            }
        }
    }

    /// Framing starts afresh (nothing read before the handshake may be taken as a command)
    /// and, as RFC 5804 §2.2 requires, the capability block and `OK` are sent again without
    /// being asked, now with the SASL mechanisms and without STARTTLS.
    fn tls_started(&mut self) -> Result<(), WrongState<()>> {
        if !matches!(self.state, State::TlsPending) {
            return Err(WrongState::new("tls_started", self.state.name(), ()));
        }
        self.config.tls_active = true;
        self.framer = Framer::new(self.config.limits);
        self.state = State::Commands;
        self.write_capabilities();
        reply::ok(&mut self.output, None, "TLS negotiation successful.");
        Ok(())
    }

    fn verdict(&mut self, verdict: Verdict) -> Result<(), WrongState<Verdict>> {
        self.deliver_verdict(verdict)
    }

    /// `BYE`, then close.
    fn idle_timeout(&mut self) {
        if matches!(self.state, State::Closed | State::LoggedIn) {
            return;
        }
        reply::bye(&mut self.output, "Disconnected for inactivity.");
        self.close("idle-timeout");
    }

    /// `BYE (TRYLATER)`, then close.
    fn shutting_down(&mut self) {
        if matches!(self.state, State::Closed | State::LoggedIn) {
            return;
        }
        reply::shutting_down(&mut self.output);
        self.close("drained");
    }

    fn deadline_passed(&mut self) {
        if matches!(self.state, State::Closed | State::LoggedIn) {
            return;
        }
        reply::deadline_passed(&mut self.output);
        self.close("prelogin-deadline");
    }

    fn close_reason(&self) -> &'static str {
        self.close_reason
    }
}

/// What a client that cannot be served now is told instead of the greeting, before the
/// connection closes.
pub fn refusal(why: crate::Busy) -> Vec<u8> {
    let mut out = Vec::new();
    reply::busy(&mut out, why);
    out
}
