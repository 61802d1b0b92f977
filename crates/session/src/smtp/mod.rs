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
//! - Every line, commands and AUTH responses alike, is bounded by
//!   [`SmtpSessionConfig::max_line`]: RFC 4954 §4's 12,288 octets by default. A longer
//!   line is refused whole, never truncated.
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
use codec::smtp::{parse_command, Command, InitialResponse, LineFramer, ParseError};
use sasl::{
    ChallengeError, Failure, Mechanism, PasswordExchange, PasswordMechanism, PasswordStep,
    ServerExchange, ServerStep,
};

pub use crate::{Action, Refusal};

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
    /// Longest line, commands and AUTH responses alike, not counting its CRLF. Default
    /// 12,288: RFC 4954 §4 ([`codec::smtp::DEFAULT_MAX_LINE`]).
    pub max_line: usize,
    /// Sent in the OAUTHBEARER error challenge.
    pub openid_configuration: Option<String>,
    /// Scope named in error challenges.
    pub challenge_scope: Option<String>,
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
            max_line: codec::smtp::DEFAULT_MAX_LINE,
            openid_configuration: None,
            challenge_scope: None,
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
    /// AUTH sent a `334`; the next line is a SASL response.
    SaslResponse { exchange: ServerExchange },
    /// Waiting for the driver to validate the token.
    Validating { exchange: ServerExchange },
    /// AUTH PLAIN/LOGIN sent a `334`; the next line answers it.
    PasswordResponse { exchange: PasswordExchange },
    /// Waiting for the driver to have the backend check a password.
    CheckingPassword,
    /// `220 Ready to start TLS` sent; waiting for the driver's handshake.
    TlsPending,
    /// Logged in: the session is finished and the driver relays.
    LoggedIn,
    /// Closing.
    Closed,
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
        let framer = LineFramer::new(config.max_line);
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

    /// Bytes to send to the client.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// The driver wrote all of [`SmtpSession::output`].
    pub fn output_written(&mut self) {
        self.output.clear();
        if self.output.capacity() > 4 * 1_024 {
            self.output = Vec::new();
        }
    }

    /// Why the session ended, for the log.
    pub fn close_reason(&self) -> &'static str {
        self.close_reason
    }

    /// The EHLO (or HELO) argument the client gave since the last TLS handshake, which the
    /// proxy replays to the backend after login.
    pub fn client_ehlo(&self) -> Option<&str> {
        self.ehlo.as_deref()
    }

    fn auth_allowed(&self) -> bool {
        self.config.tls_active || self.config.allow_plaintext_auth
    }

    /// Processes buffered input until the session needs something from the driver.
    pub fn advance(&mut self, input: &mut BytesMut) -> Action {
        loop {
            let step = match &self.state {
                State::Commands => self.next_command(input),
                State::SaslResponse { .. } => self.next_sasl_response(input),
                State::PasswordResponse { .. } => self.next_password_response(input),
                State::TlsPending => return Action::StartTls,
                State::Validating { .. } | State::CheckingPassword | State::LoggedIn => {
                    return Action::NeedInput
                }
                State::Closed => return Action::Close,
            };
            if let Some(action) = step {
                return action;
            }
        }
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
            } if self.config.password_fallback
                && self.ehlo.is_some()
                && PasswordMechanism::from_name(mechanism.as_bytes()).is_some() =>
            {
                return self.auth_password(&mechanism, initial_response);
            }
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
        let Some(mechanism) = Mechanism::from_name(mechanism.as_bytes()) else {
            self.refuse(reply::unknown_mechanism);
            return None;
        };
        let mut exchange = ServerExchange::new(mechanism).with_discovery(
            self.config.challenge_scope.clone(),
            self.config.openid_configuration.clone(),
        );
        let message = match crate::initial_message(initial_response) {
            Ok(Some(message)) => message,
            Ok(None) => {
                reply::challenge(&mut self.output, "");
                self.state = State::SaslResponse { exchange };
                return None;
            }
            Err(_) => {
                self.refuse(reply::bad_base64);
                return None;
            }
        };
        let step = exchange.step(message);
        self.sasl_step(exchange, step)
    }

    /// AUTH PLAIN or LOGIN with the password fallback: the session collects the
    /// credentials, so the backend only ever sees a login the proxy writes.
    fn auth_password(
        &mut self,
        mechanism: &str,
        initial_response: Option<InitialResponse>,
    ) -> Option<Action> {
        let Some(mechanism) = PasswordMechanism::from_name(mechanism.as_bytes()) else {
            return self.auth(mechanism, initial_response);
        };
        let mut exchange = PasswordExchange::new(mechanism);
        let Ok(initial) = crate::initial_message(initial_response) else {
            self.refuse(reply::bad_base64);
            return None;
        };
        let step = exchange.start(initial);
        self.password_step(exchange, step)
    }

    fn next_password_response(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => line,
            Err(_) => {
                self.state = State::Commands;
                self.line_too_long(reply::auth_line_too_long);
                return None;
            }
        };
        let State::PasswordResponse { mut exchange } =
            std::mem::replace(&mut self.state, State::Commands)
        else {
            return None;
        };
        let step = exchange.step_line(&line);
        self.password_step(exchange, step)
    }

    fn password_step(&mut self, exchange: PasswordExchange, step: PasswordStep) -> Option<Action> {
        match step {
            PasswordStep::SendEmptyChallenge => {
                reply::challenge(&mut self.output, "");
                self.state = State::PasswordResponse { exchange };
                None
            }
            PasswordStep::Challenge(prompt) => {
                reply::challenge(&mut self.output, &sasl::encode_base64(prompt));
                self.state = State::PasswordResponse { exchange };
                None
            }
            PasswordStep::Verify(credentials) => {
                self.state = State::CheckingPassword;
                Some(Action::PasswordLogin(credentials))
            }
            PasswordStep::Failed(Failure::Undecodable(_)) => {
                self.refuse(reply::bad_base64);
                None
            }
            PasswordStep::Failed(_) => {
                self.authentication_failed();
                None
            }
            PasswordStep::Cancelled => {
                reply::auth_cancelled(&mut self.output);
                None
            }
        }
    }

    fn next_sasl_response(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => line,
            Err(_) => {
                if let State::SaslResponse { mut exchange } =
                    std::mem::replace(&mut self.state, State::Commands)
                {
                    exchange.abandon();
                }
                self.line_too_long(reply::auth_line_too_long);
                return None;
            }
        };
        let State::SaslResponse { mut exchange } =
            std::mem::replace(&mut self.state, State::Commands)
        else {
            return None;
        };
        let step = exchange.step_line(&line);
        self.sasl_step(exchange, step)
    }

    fn sasl_step(&mut self, exchange: ServerExchange, step: ServerStep) -> Option<Action> {
        match step {
            ServerStep::SendEmptyChallenge => {
                reply::challenge(&mut self.output, "");
                self.state = State::SaslResponse { exchange };
                None
            }
            ServerStep::Challenge(_) if !self.config.error_challenge => {
                let mut exchange = exchange;
                exchange.abandon();
                self.authentication_failed();
                None
            }
            ServerStep::Challenge(challenge) => {
                reply::challenge(&mut self.output, &sasl::encode_base64(&challenge));
                self.state = State::SaslResponse { exchange };
                None
            }
            ServerStep::Validate(credentials) => {
                self.state = State::Validating { exchange };
                Some(Action::Authenticate(credentials))
            }
            ServerStep::Failed(Failure::Undecodable(_)) => {
                self.refuse(reply::bad_base64);
                None
            }
            ServerStep::Failed(_) => {
                self.authentication_failed();
                None
            }
            ServerStep::Cancelled => {
                reply::auth_cancelled(&mut self.output);
                None
            }
        }
    }

    fn authentication_failed(&mut self) {
        reply::credentials_invalid(&mut self.output);
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            reply::too_many_auth_failures(&mut self.output);
            self.close("too-many-auth-failures");
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

    /// The TLS handshake after STARTTLS succeeded. Framing starts afresh and the client's
    /// EHLO is forgotten (RFC 3207 §4.2): it must send EHLO again before AUTH. The driver
    /// has discarded every byte read before the handshake.
    pub fn tls_started(&mut self) {
        self.config.tls_active = true;
        self.framer = LineFramer::new(self.config.max_line);
        self.ehlo = None;
        if matches!(self.state, State::TlsPending) {
            self.state = State::Commands;
        }
    }

    /// Sets what the error challenge tells OAUTHBEARER clients (`scope`,
    /// `openid-configuration`): with several identity providers, the refused token's own.
    pub fn set_discovery(&mut self, scope: Option<String>, openid_configuration: Option<String>) {
        self.config.challenge_scope = scope;
        self.config.openid_configuration = openid_configuration;
    }

    /// The token was refused: send the mechanism's error challenge (`334 <base64 JSON>`)
    /// and wait for the client's dummy response, after which AUTH fails with
    /// `535 5.7.8 Authentication credentials invalid`.
    pub fn token_refused(&mut self, refusal: Refusal) {
        let State::Validating { mut exchange } =
            std::mem::replace(&mut self.state, State::Commands)
        else {
            return;
        };
        let error = ChallengeError {
            status: match refusal {
                Refusal::InvalidToken => sasl::ChallengeStatus::InvalidToken,
                Refusal::InsufficientScope => sasl::ChallengeStatus::InsufficientScope,
            },
            scope: self.config.challenge_scope.clone(),
            openid_configuration: self.config.openid_configuration.clone(),
        };
        if !self.config.error_challenge {
            exchange.abandon();
            self.authentication_failed();
            return;
        }
        match exchange.refuse(error) {
            Ok(challenge) => {
                reply::challenge(&mut self.output, &sasl::encode_base64(&challenge));
                self.state = State::SaslResponse { exchange };
            }
            Err(_) => self.authentication_failed(),
        }
    }

    /// A backend that validates tokens itself (`passthrough`) refused this one. Its
    /// challenge, when it sent one, reaches the client unchanged; AUTH then fails like for
    /// any refused token.
    pub fn backend_refused(&mut self, challenge: Option<Vec<u8>>) {
        let State::Validating { mut exchange } =
            std::mem::replace(&mut self.state, State::Commands)
        else {
            return;
        };
        let Some(challenge) = challenge.filter(|_| self.config.error_challenge) else {
            exchange.abandon();
            self.authentication_failed();
            return;
        };
        match exchange.refuse_with_challenge(challenge) {
            Ok(challenge) => {
                reply::challenge(&mut self.output, &sasl::encode_base64(&challenge));
                self.state = State::SaslResponse { exchange };
            }
            Err(_) => self.authentication_failed(),
        }
    }

    /// The identity provider or the backend could not be reached, or the client's address
    /// has used up its failed logins: AUTH fails with `454 4.7.0` and the client may try
    /// again later. Works for token and password logins alike.
    pub fn unavailable(&mut self) {
        match std::mem::replace(&mut self.state, State::Commands) {
            State::Validating { mut exchange } => exchange.abandon(),
            State::CheckingPassword => {}
            other => {
                self.state = other;
                return;
            }
        }
        reply::temporary_failure(&mut self.output);
    }

    /// The backend refused the password (password fallback): `535 5.7.8`, counted against
    /// the failure limit; the client stays with the proxy.
    pub fn password_refused(&mut self) {
        if !matches!(self.state, State::CheckingPassword) {
            return;
        }
        self.state = State::Commands;
        self.authentication_failed();
    }

    /// The backend accepted the login: `235 2.7.0 Authentication successful`, and the
    /// driver relays from now on (starting with what is left in its buffer).
    pub fn logged_in(&mut self) {
        match std::mem::replace(&mut self.state, State::LoggedIn) {
            // Only fails outside AwaitingVerdict, which Validating rules out.
            State::Validating { mut exchange } => {
                let _ = exchange.accept();
            }
            State::CheckingPassword => {}
            other => {
                self.state = other;
                return;
            }
        }
        reply::authenticated(&mut self.output);
    }

    /// The client sent nothing for too long: `421 4.4.2 <host> Idle timeout, closing`.
    pub fn idle_timeout(&mut self) {
        reply::idle_timeout(&mut self.output, &self.config.hostname);
        self.close("idle-timeout");
    }
}
