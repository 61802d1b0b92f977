//! The SMTP submission pre-authentication session (RFC 6409 on 587 with STARTTLS, RFC 8314
//! on 465 with implicit TLS).
//!
//! The proxy answers everything before login itself: greeting, EHLO/HELO, STARTTLS,
//! AUTH with XOAUTH2 or OAUTHBEARER (RFC 4954, RFC 7628), NOOP, RSET, QUIT, HELP, VRFY and
//! EXPN; MAIL, RCPT, DATA and BDAT get `530 5.7.0 Authentication required`. The driver-facing
//! API is the IMAP session's ([`crate::imap::ImapSession`]), so the drivers look alike.
//!
//! Input handling:
//! - Commands are handled strictly one at a time from the driver's buffer (PIPELINING is
//!   advertised; RFC 2920 makes AUTH and STARTTLS the last command of a group). Once AUTH
//!   has the client's credentials the session stops reading: whatever the client pipelined
//!   behind it stays in the driver's buffer and goes to the backend untouched after login.
//! - **After STARTTLS nothing buffered survives.** The session stops reading at the
//!   STARTTLS command and returns [`Action::StartTls`]; the driver must discard every byte
//!   still in its buffer before the handshake (RFC 3207 §4.2, CVE-2011-0411), and
//!   [`SmtpSession::tls_started`] starts framing afresh and forgets the client's EHLO.
//! - Every line is bounded by [`SmtpSessionConfig::limits`]: an AUTH command (with its
//!   initial response) and an AUTH response line by 24,236 octets, a 16 KiB token
//!   base64-encoded (RFC 4954 §4's 12,288 is a minimum, and carries a token of only about
//!   9 KiB); every other command by 12,288. A longer line is refused whole, never
//!   truncated: `500 5.5.2 Line too long`, or `500 5.5.6` in the AUTH exchange (also for a
//!   response or token over the SASL layer's limits), and the second closes the connection.
//!
//! [`Action`] and [`Refusal`] are the crate's, shared with IMAP. With the password
//! fallback, AUTH PLAIN and AUTH LOGIN are run by the session like the OAuth mechanisms and
//! end in [`Action::PasswordLogin`]: the backend checks the password, the client stays with
//! the proxy until it has said yes.

mod capability;
mod reply;
#[cfg(test)]
mod tests;

use bytes::BytesMut;
use codec::smtp::{parse_command, Command, InitialResponse, LineFramer, LineLimits, ParseError};
use sasl::{Mechanism, PasswordMechanism};

use crate::auth::{is_too_long, Auth, AuthHost, AuthSettings, Outcome};
pub use crate::{Action, Discovery, Refusal, Session, Verdict, WrongState};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct SmtpSessionConfig {
    /// TLS already protects the connection (implicit TLS listener, port 465).
    pub tls_active: bool,
    /// The listener offers STARTTLS (port 587).
    pub starttls_available: bool,
    /// Authentication is allowed without TLS (loopback tests only).
    pub allow_plaintext_auth: bool,
    /// AUTH PLAIN and AUTH LOGIN are accepted and the password checked by the backend (app
    /// passwords and OAuth users on one port). Still only where authentication is allowed.
    pub password_fallback: bool,
    /// A refused token gets the mechanism's error challenge before `535` (RFC 7628). Off:
    /// `535` at once, for clients that never answer the challenge.
    pub error_challenge: bool,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: u32,
    /// The proxy's name in the greeting, the EHLO reply and `421` replies.
    pub hostname: String,
    /// Longest lines, not counting the CRLF: AUTH commands and AUTH responses 24,236 (a
    /// 16 KiB token, base64-encoded, and the command), every other command 12,288 (RFC
    /// 4954 §4). See [`LineLimits`].
    pub limits: LineLimits,
    /// What the session's own error challenges (for unusable credentials) tell the client;
    /// a refused token's challenge says what its [`Verdict::TokenRefused`] carries.
    pub discovery: Discovery,
    /// Refused or malformed commands tolerated before the connection is closed.
    pub max_bad_commands: u32,
    /// Over-long lines tolerated before the connection is closed. Default 2: "500, then
    /// close if it repeats".
    pub max_oversized_lines: u32,
    /// The keywords of the backend's EHLO reply, `(keyword upper-cased, params)`, as the
    /// driver learned them at a login. After AUTH the client sends its message to the
    /// backend, planned with the proxy's EHLO reply (it is not asked again), so the
    /// proxy offers the service extensions the backend has (CHUNKING, SMTPUTF8, `SIZE
    /// <n>`, ...) and only those; nothing about authentication, TLS or trusted peers (see
    /// `capability::RELAYED`). `None` (the backend was not reached yet) offers PIPELINING,
    /// ENHANCEDSTATUSCODES, 8BITMIME and `SIZE`, which every submission backend has.
    pub backend_extensions: Option<std::sync::Arc<[(String, String)]>>,
}

impl Default for SmtpSessionConfig {
    fn default() -> Self {
        Self {
            tls_active: false,
            starttls_available: false,
            allow_plaintext_auth: false,
            password_fallback: false,
            error_challenge: true,
            max_auth_failures: 3,
            hostname: "localhost".to_owned(),
            limits: LineLimits::default(),
            discovery: Discovery::default(),
            // Dovecot closes after 20 bad commands; a client that needs ten is broken.
            max_bad_commands: 10,
            max_oversized_lines: 2,
            backend_extensions: None,
        }
    }
}

#[derive(Debug)]
enum State {
    /// Reading commands.
    Commands,
    /// AUTH in progress.
    Auth(Auth),
    /// `220 Ready to start TLS` sent; waiting for the driver's handshake.
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
pub struct SmtpSession {
    config: SmtpSessionConfig,
    framer: LineFramer,
    state: State,
    output: Vec<u8>,
    /// The EHLO/HELO argument, once given (and since the last TLS handshake).
    ehlo: Option<String>,
    auth_failures: u32,
    oversized_lines: u32,
    bad_commands: u32,
    close_reason: &'static str,
}

impl SmtpSession {
    /// A new session; its greeting `220 <hostname> ESMTP bearergate ready` is already in
    /// the output.
    pub fn new(config: SmtpSessionConfig) -> Self {
        let framer = LineFramer::with_limits(config.limits);
        let mut session = Self {
            config,
            framer,
            state: State::Commands,
            output: Vec::new(),
            ehlo: None,
            auth_failures: 0,
            oversized_lines: 0,
            bad_commands: 0,
            close_reason: "closed",
        };
        reply::greeting(&mut session.output, &session.config.hostname);
        session
    }

    /// The EHLO (or HELO) argument the client gave since the last TLS handshake, which the
    /// proxy replays to the backend after login.
    pub fn client_ehlo(&self) -> Option<&str> {
        self.ehlo.as_deref()
    }

    fn auth_allowed(&self) -> bool {
        self.config.tls_active || self.config.allow_plaintext_auth
    }

    /// Handles one command, or says more input is needed (`Some(NeedInput)`); `None` means
    /// "handled, carry on".
    fn next_command(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => line,
            Err(_) => {
                self.line_too_long(reply::line_too_long);
                return None;
            }
        };
        let command = match parse_command(&line) {
            Ok(command) => command,
            Err(error) => {
                self.syntax_error(&error);
                return None;
            }
        };
        // RFC 3207 §4: while TLS is required, only these may go ahead (HELO and RSET are as
        // harmless as EHLO and NOOP). Unknown verbs still get 500 below.
        let before_tls_ok = matches!(
            command,
            Command::Ehlo(_)
                | Command::Helo(_)
                | Command::StartTls
                | Command::Noop
                | Command::Rset
                | Command::Quit
                | Command::Other(_)
        );
        if !self.auth_allowed() && !before_tls_ok {
            self.refuse(reply::starttls_first);
            return None;
        }
        match command {
            Command::Ehlo(name) => {
                let extensions = capability::ehlo_extensions(
                    self.auth_allowed(),
                    self.config.starttls_available && !self.config.tls_active,
                    self.config.backend_extensions.as_deref(),
                    self.config.password_fallback,
                );
                reply::ehlo(&mut self.output, &self.config.hostname, extensions);
                self.ehlo = Some(name);
            }
            Command::Helo(name) => {
                reply::helo(&mut self.output, &self.config.hostname);
                self.ehlo = Some(name);
            }
            Command::StartTls => return self.starttls(),
            Command::Auth {
                mechanism,
                initial_response,
            } => return self.auth(&mechanism, initial_response),
            Command::Mail | Command::Rcpt | Command::Data | Command::Bdat => {
                self.refuse(reply::auth_required);
            }
            Command::Rset | Command::Noop => reply::ok(&mut self.output),
            Command::Quit => {
                reply::bye(&mut self.output);
                self.close("quit");
            }
            Command::Help => reply::help(&mut self.output),
            Command::Vrfy => reply::vrfy(&mut self.output),
            Command::Expn => self.refuse(reply::expn),
            Command::Other(_) => self.refuse(reply::unrecognized),
        }
        None
    }

    fn starttls(&mut self) -> Option<Action> {
        if self.config.tls_active {
            self.refuse(reply::tls_already_active);
            return None;
        }
        if !self.config.starttls_available {
            self.refuse(reply::tls_not_available);
            return None;
        }
        reply::starttls_ready(&mut self.output);
        self.state = State::TlsPending;
        Some(Action::StartTls)
    }

    fn auth(
        &mut self,
        mechanism: &str,
        initial_response: Option<InitialResponse>,
    ) -> Option<Action> {
        if self.ehlo.is_none() {
            self.refuse(reply::ehlo_first);
            return None;
        }
        let settings = AuthSettings {
            error_challenge: self.config.error_challenge,
            discovery: self.config.discovery.clone(),
        };
        let password = PasswordMechanism::from_name(mechanism.as_bytes())
            .filter(|_| self.config.password_fallback);
        let mut auth = match (Mechanism::from_name(mechanism.as_bytes()), password) {
            (Some(mechanism), _) => Auth::token(mechanism, &settings, reply::challenge),
            (None, Some(mechanism)) => Auth::password(mechanism, &settings, reply::challenge),
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

    fn next_auth_line(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode_auth_response(input) {
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

    /// The final reply to AUTH.
    fn auth_reply(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Failed => {
                reply::credentials_invalid(&mut self.output);
                self.auth_failures += 1;
                if self.auth_failures >= self.config.max_auth_failures {
                    reply::too_many_auth_failures(&mut self.output);
                    self.close("too-many-auth-failures");
                }
            }
            Outcome::Cancelled => reply::auth_cancelled(&mut self.output),
            Outcome::BadBase64 => self.refuse(reply::bad_base64),
            Outcome::TooLong => self.line_too_long(reply::auth_line_too_long),
            Outcome::Unavailable => reply::temporary_failure(&mut self.output),
            Outcome::LoggedIn(_) => {
                reply::authenticated(&mut self.output);
                self.state = State::LoggedIn;
            }
        }
    }

    fn syntax_error(&mut self, error: &ParseError) {
        let usage = match error {
            ParseError::Empty | ParseError::Syntax { rule: "command" } => {
                self.refuse(reply::unrecognized);
                return;
            }
            ParseError::Syntax {
                rule: "initial-response",
            } => {
                self.refuse(reply::bad_base64);
                return;
            }
            ParseError::Syntax { rule: "ehlo" } => "Syntax: EHLO hostname",
            ParseError::Syntax { rule: "helo" } => "Syntax: HELO hostname",
            ParseError::Syntax { rule: "starttls" } => "Syntax error (no parameters allowed)",
            ParseError::Syntax { rule: "auth" } => "Syntax: AUTH mechanism [initial-response]",
            ParseError::Syntax { .. } => "Syntax error in parameters",
        };
        self.refuse(|out| reply::syntax(out, usage));
    }

    /// Writes a refusal and counts it: too many close the connection.
    fn refuse(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.output);
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            reply::too_many_bad_commands(&mut self.output);
            self.close("too-many-bad-commands");
        }
    }

    fn line_too_long(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        write(&mut self.output);
        self.oversized_lines += 1;
        if self.oversized_lines >= self.config.max_oversized_lines {
            reply::too_many_long_lines(&mut self.output);
            self.close("too-many-long-lines");
        }
    }

    fn close(&mut self, reason: &'static str) {
        self.state = State::Closed;
        self.close_reason = reason;
    }
}

impl AuthHost for SmtpSession {
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

impl Session for SmtpSession {
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

    /// Framing starts afresh and the client's EHLO is forgotten (RFC 3207 §4.2): it must
    /// send EHLO again before AUTH. The driver has discarded every byte read before the
    /// handshake.
    fn tls_started(&mut self) -> Result<(), WrongState<()>> {
        if !matches!(self.state, State::TlsPending) {
            return Err(WrongState::new("tls_started", self.state.name(), ()));
        }
        self.config.tls_active = true;
        self.framer = LineFramer::with_limits(self.config.limits);
        self.ehlo = None;
        self.state = State::Commands;
        Ok(())
    }

    fn verdict(&mut self, verdict: Verdict) -> Result<(), WrongState<Verdict>> {
        self.deliver_verdict(verdict)
    }

    /// `421 4.4.2 <host> Idle timeout, closing`.
    fn idle_timeout(&mut self) {
        reply::idle_timeout(&mut self.output, &self.config.hostname);
        self.close("idle-timeout");
    }

    /// `421 4.3.2 <host> Service shutting down` (RFC 5321 §3.8: a server that must shut
    /// down answers 421 and closes).
    fn shutting_down(&mut self) {
        if matches!(self.state, State::Closed | State::LoggedIn) {
            return;
        }
        reply::shutting_down(&mut self.output, &self.config.hostname);
        self.close("drained");
    }

    fn deadline_passed(&mut self) {
        if matches!(self.state, State::Closed | State::LoggedIn) {
            return;
        }
        reply::deadline_passed(&mut self.output, &self.config.hostname);
        self.close("prelogin-deadline");
    }

    fn close_reason(&self) -> &'static str {
        self.close_reason
    }

    fn client_name(&self) -> Option<&str> {
        self.client_ehlo()
    }
}

/// What a client that cannot be served now is told instead of the greeting, with the
/// listener's `hostname`, before the connection closes.
pub fn refusal(why: crate::Busy, hostname: &str) -> Vec<u8> {
    let mut out = Vec::new();
    reply::busy(&mut out, hostname, why);
    out
}
