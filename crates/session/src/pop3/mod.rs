//! The POP3 pre-authentication session (RFC 1939 AUTHORIZATION state, on 110 with STLS or
//! 995 with implicit TLS).
//!
//! The proxy answers everything before login itself: the greeting, CAPA (RFC 2449), STLS
//! (RFC 2595), AUTH with XOAUTH2 or OAUTHBEARER (RFC 5034, RFC 7628) and a bare AUTH's
//! mechanism list, NOOP and QUIT; with the password fallback also USER/PASS and AUTH
//! PLAIN/LOGIN, whose password the backend checks. Every other command gets `-ERR
//! Authenticate first.`. It implements the crate's [`Session`] trait like every protocol,
//! and uses the shared AUTH sub-machine for every exchange.
//!
//! Input handling:
//! - Commands are handled strictly one at a time from the driver's buffer. Once AUTH (or
//!   PASS) has the client's credentials the session stops reading: whatever the client
//!   pipelined behind it stays in the driver's buffer and goes to the backend untouched
//!   after login. After login the session consumes nothing more.
//! - **After STLS nothing buffered survives.** The session stops reading at STLS and
//!   returns [`Action::StartTls`] (again, until told otherwise); the driver discards every
//!   byte still buffered before the handshake (RFC 2595 §4, CVE-2011-0411), and
//!   [`Pop3Session::tls_started`] starts framing afresh and forgets a USER given before.
//! - Every line, commands and AUTH responses alike, is bounded by
//!   [`Pop3SessionConfig::max_line`]: a 16 KiB token, base64-encoded, plus 1 KiB, although
//!   RFC 2449 §4 says 255 octets for a command. A longer line is refused whole (`-ERR`),
//!   never truncated, and the connection closed when it repeats; so is a response or token
//!   over the SASL layer's limits (`-ERR Authentication line too long.`, never "invalid
//!   base64").
//!
//! Replies follow DESIGN.md's table: a refused token gets the mechanism's error challenge,
//! then `-ERR [AUTH] Authentication failed.` after the client's dummy answer; an
//! unreachable identity provider or backend `-ERR [SYS/TEMP] ...`; authentication before
//! TLS where that is not allowed `-ERR [AUTH] ...`, with no SASL in CAPA. POP3 has no
//! unsolicited replies, so when a limit closes the connection the offending command's own
//! `-ERR` is the last line, and an idle client is disconnected without a word (RFC 1939
//! §3: the server "should close the TCP connection without ... sending any response").
//! A client still not logged in at the listener's `preauth_deadline` may not be idle at
//! all, so it is told (`-ERR Took too long to log in.`), as at the end of a drain.

mod capability;
mod reply;
#[cfg(test)]
mod tests;

use bytes::BytesMut;
use codec::pop3::{parse_command, Command, InitialResponse, LineFramer, ParseError};
use sasl::{Mechanism, PasswordMechanism, SecretString};

use crate::auth::{is_too_long, Auth, AuthHost, AuthSettings, Outcome};
pub use crate::{Action, Discovery, Refusal, Session, Verdict, WrongState};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct Pop3SessionConfig {
    /// TLS already protects the connection (implicit TLS listener, port 995).
    pub tls_active: bool,
    /// The listener offers STLS (port 110).
    pub starttls_available: bool,
    /// Authentication is allowed without TLS (loopback tests only).
    pub allow_plaintext_auth: bool,
    /// USER/PASS and AUTH PLAIN/LOGIN are accepted and the password checked by the backend
    /// (app passwords and OAuth users on one port). Still only where authentication is
    /// allowed.
    pub password_fallback: bool,
    /// A refused token gets the mechanism's error challenge before `-ERR [AUTH]` (RFC
    /// 7628). Off: `-ERR [AUTH]` at once, for clients that never answer the challenge.
    pub error_challenge: bool,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: u32,
    /// Longest line, commands and AUTH responses alike, not counting its CRLF. Default
    /// 24,236 ([`codec::pop3::DEFAULT_MAX_LINE`]): a 16 KiB token in a client response,
    /// base64-encoded ([`sasl::MAX_ENCODED_RESPONSE_LEN`]), and 1 KiB for the command
    /// around it, as every protocol allows its AUTH lines.
    pub max_line: usize,
    /// What the session's own error challenges (for unusable credentials) tell the client;
    /// a refused token's challenge says what its [`Verdict::TokenRefused`] carries.
    pub discovery: Discovery,
    /// Refused or malformed commands tolerated before the connection is closed.
    pub max_bad_commands: u32,
    /// Over-long lines tolerated before the connection is closed. Default 2: "`-ERR`, then
    /// close if it repeats".
    pub max_oversized_lines: u32,
}

impl Default for Pop3SessionConfig {
    fn default() -> Self {
        Self {
            tls_active: false,
            starttls_available: false,
            allow_plaintext_auth: false,
            password_fallback: false,
            error_challenge: true,
            max_auth_failures: 3,
            max_line: codec::pop3::DEFAULT_MAX_LINE,
            discovery: Discovery::default(),
            // Dovecot closes after 20 bad commands; a client that needs ten is broken.
            max_bad_commands: 10,
            max_oversized_lines: 2,
        }
    }
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// AUTH (or PASS) in progress.
    Auth(Auth),
    /// `+OK Begin TLS negotiation` sent; waiting for the driver's handshake.
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
pub struct Pop3Session {
    config: Pop3SessionConfig,
    framer: LineFramer,
    state: State,
    output: Vec<u8>,
    /// The name of a USER just accepted, for the PASS that must follow at once (RFC 1939
    /// §7). Only with the password fallback.
    user: Option<String>,
    auth_failures: u32,
    oversized_lines: u32,
    bad_commands: u32,
    close_reason: &'static str,
}

impl Pop3Session {
    /// A new session; its greeting `+OK bearergate ready.` is already in the output.
    pub fn new(config: Pop3SessionConfig) -> Self {
        let framer = LineFramer::new(config.max_line);
        let mut session = Self {
            config,
            framer,
            state: State::Commands,
            output: Vec::new(),
            user: None,
            auth_failures: 0,
            oversized_lines: 0,
            bad_commands: 0,
            close_reason: "closed",
        };
        reply::greeting(&mut session.output);
        session
    }

    fn auth_allowed(&self) -> bool {
        self.config.tls_active || self.config.allow_plaintext_auth
    }

    fn password_fallback_allowed(&self) -> bool {
        self.config.password_fallback && self.auth_allowed()
    }

    fn auth_settings(&self) -> AuthSettings {
        AuthSettings {
            error_challenge: self.config.error_challenge,
            discovery: self.config.discovery.clone(),
        }
    }

    /// Handles one command, or says more input is needed (`Some(NeedInput)`); `None` means
    /// "handled, carry on".
    fn next_command(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => line,
            Err(_) => {
                self.user = None;
                self.line_too_long(reply::line_too_long);
                return None;
            }
        };
        // RFC 1939 §7: PASS only right after USER; any other line forgets the user.
        let user = self.user.take();
        let command = match parse_command(&line) {
            Ok(command) => command,
            Err(error) => {
                self.syntax_error(&error);
                return None;
            }
        };
        match command {
            Command::Capa => {
                let capabilities = capability::pre_login(
                    self.auth_allowed(),
                    self.config.starttls_available && !self.config.tls_active,
                    self.password_fallback_allowed(),
                );
                reply::capa(&mut self.output, capabilities);
            }
            Command::Stls => return self.stls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => return self.auth(&mechanism, initial_response),
            Command::ListMechanisms => self.list_mechanisms(),
            Command::User(name) => self.user_command(name),
            Command::Pass(password) => return self.pass(user, password),
            Command::Quit => {
                reply::bye(&mut self.output);
                self.close("quit");
            }
            Command::Noop => reply::noop(&mut self.output),
            Command::Other(_) => self.refuse(reply::authenticate_first),
        }
        None
    }

    fn stls(&mut self) -> Option<Action> {
        if self.config.tls_active {
            self.refuse(reply::tls_already_active);
            return None;
        }
        if !self.config.starttls_available {
            self.refuse(reply::tls_not_available);
            return None;
        }
        reply::stls_ready(&mut self.output);
        self.state = State::TlsPending;
        Some(Action::StartTls)
    }

    fn list_mechanisms(&mut self) {
        if !self.auth_allowed() {
            self.refuse(reply::tls_required);
            return;
        }
        let mechanisms = capability::mechanisms(self.password_fallback_allowed());
        reply::mechanisms(&mut self.output, mechanisms);
    }

    fn auth(
        &mut self,
        mechanism: &str,
        initial_response: Option<InitialResponse>,
    ) -> Option<Action> {
        if !self.auth_allowed() {
            self.refuse(reply::tls_required);
            return None;
        }
        let settings = self.auth_settings();
        let password = PasswordMechanism::from_name(mechanism.as_bytes())
            .filter(|_| self.password_fallback_allowed());
        let mut auth = match (Mechanism::from_name(mechanism.as_bytes()), password) {
            (Some(mechanism), _) => Auth::token(mechanism, &settings, reply::continuation),
            (None, Some(mechanism)) => Auth::password(mechanism, &settings, reply::continuation),
            (None, None) => {
                self.refuse(reply::unknown_mechanism);
                return None;
            }
        };
        let initial = match crate::initial_message(initial_response) {
            Ok(initial) => initial,
            Err(error) if is_too_long(&error) => {
                self.line_too_long(reply::auth_line_too_long);
                return None;
            }
            Err(_) => {
                self.refuse(reply::bad_base64);
                return None;
            }
        };
        let step = auth.start(&mut self.output, initial);
        self.after_auth((), auth, step)
    }

    /// USER: remembered for PASS with the password fallback, refused otherwise.
    fn user_command(&mut self, name: String) {
        if !self.auth_allowed() {
            self.refuse(reply::tls_required);
            return;
        }
        if !self.config.password_fallback {
            self.refuse(reply::passwords_not_accepted);
            return;
        }
        reply::user_accepted(&mut self.output);
        self.user = Some(name);
    }

    /// PASS: with the password fallback and a USER just before, the backend checks the
    /// credentials; without the fallback, a refused login like IMAP's LOGIN.
    fn pass(&mut self, user: Option<String>, password: SecretString) -> Option<Action> {
        if !self.auth_allowed() {
            self.refuse(reply::tls_required);
            return None;
        }
        if !self.config.password_fallback {
            reply::passwords_not_accepted(&mut self.output);
            self.count_auth_failure();
            return None;
        }
        let Some(user) = user else {
            self.refuse(reply::pass_without_user);
            return None;
        };
        let credentials = sasl::PasswordCredentials {
            authzid: None,
            user,
            password,
        };
        let (auth, step) =
            Auth::login_command(credentials, &self.auth_settings(), reply::continuation);
        self.after_auth((), auth, step)
    }

    fn next_auth_line(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => Ok(line),
            Err(_) => Err(()),
        };
        let State::Auth(mut auth) = std::mem::replace(&mut self.state, State::Commands) else {
            return None;
        };
        let Ok(line) = line else {
            auth.abandon();
            self.line_too_long(reply::auth_line_too_long);
            return None;
        };
        let step = auth.line(&mut self.output, &line);
        self.after_auth((), auth, step)
    }

    /// The final reply to AUTH or PASS.
    fn auth_reply(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Failed => {
                reply::auth_failed(&mut self.output);
                self.count_auth_failure();
            }
            Outcome::Cancelled => reply::auth_cancelled(&mut self.output),
            Outcome::BadBase64 => self.refuse(reply::bad_base64),
            Outcome::TooLong => self.line_too_long(reply::auth_line_too_long),
            Outcome::Unavailable => reply::temporary_failure(&mut self.output),
            Outcome::LoggedIn(_) => {
                reply::logged_in(&mut self.output);
                self.state = State::LoggedIn;
            }
        }
    }

    fn syntax_error(&mut self, error: &ParseError) {
        let usage = match error {
            ParseError::Empty | ParseError::Syntax { rule: "command" } => {
                self.refuse(reply::unknown_command);
                return;
            }
            ParseError::Syntax {
                rule: "initial-response",
            } => {
                self.refuse(reply::bad_base64);
                return;
            }
            ParseError::Syntax { rule: "auth" } => "Syntax: AUTH [mechanism [initial-response]]",
            ParseError::Syntax { rule: "user" } => "Syntax: USER name",
            ParseError::Syntax { rule: "pass" } => "Syntax: PASS password",
            ParseError::Syntax { .. } => "No arguments allowed.",
        };
        self.refuse(|out| reply::syntax(out, usage));
    }

    fn count_auth_failure(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            self.close("too-many-auth-failures");
        }
    }

    /// Writes a refusal and counts it: too many close the connection.
    fn refuse(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.output);
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.close("too-many-bad-commands");
        }
    }

    fn line_too_long(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.output);
        self.oversized_lines += 1;
        if self.oversized_lines >= self.config.max_oversized_lines {
            self.close("too-many-long-lines");
        }
    }

    fn close(&mut self, reason: &'static str) {
        self.state = State::Closed;
        self.close_reason = reason;
    }
}

impl AuthHost for Pop3Session {
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

impl Session for Pop3Session {
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

    /// Framing starts afresh and a USER given before is forgotten: nothing read before the
    /// handshake counts. The driver has discarded every byte read before it.
    fn tls_started(&mut self) -> Result<(), WrongState<()>> {
        if !matches!(self.state, State::TlsPending) {
            return Err(WrongState::new("tls_started", self.state.name(), ()));
        }
        self.config.tls_active = true;
        self.framer = LineFramer::new(self.config.max_line);
        self.user = None;
        self.state = State::Commands;
        Ok(())
    }

    fn verdict(&mut self, verdict: Verdict) -> Result<(), WrongState<Verdict>> {
        self.deliver_verdict(verdict)
    }

    /// Closes without a word: RFC 1939 §3 has an expired autologout timer close the
    /// connection "without ... sending any response to the client".
    fn idle_timeout(&mut self) {
        self.close("idle-timeout");
    }

    /// `-ERR [SYS/TEMP] Server shutting down.`, then close. Unlike the idle timeout the
    /// client did nothing wrong and should come back, so it is told (Dovecot's pop3-login
    /// also says `-ERR` when it shuts down); the line reads as the `-ERR` of whatever
    /// command it sends next.
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
