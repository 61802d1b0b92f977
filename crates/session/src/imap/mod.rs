//! The IMAP pre-authentication session (RFC 3501 / RFC 9051 not-authenticated state).
//!
//! The proxy answers everything before login itself: greeting, CAPABILITY, NOOP, LOGOUT,
//! ID, STARTTLS and AUTHENTICATE with XOAUTH2 or OAUTHBEARER. Commands are handled strictly
//! one at a time; once authentication starts, the session stops reading commands, so
//! anything a client pipelined behind AUTHENTICATE stays in the driver's buffer and goes to
//! the backend untouched after login.

mod capability;
mod reply;
#[cfg(test)]
mod tests;

use bytes::BytesMut;
use codec::imap::{
    parse_command, CommandBody, CommandFramer, FramedCommand, FramingError, InitialResponse,
};
use sasl::{
    ChallengeError, Failure, Mechanism, PasswordExchange, PasswordMechanism, PasswordStep,
    ServerExchange, ServerStep,
};

pub use crate::{Action, Refusal};
pub use capability::filter_backend_capabilities;
use reply::{Code, Status};

/// How a session is set up.
#[derive(Debug, Clone)]
pub struct ImapSessionConfig {
    /// TLS already protects the connection (implicit TLS listener).
    pub tls_active: bool,
    /// The listener offers STARTTLS.
    pub starttls_available: bool,
    /// Authentication is allowed without TLS.
    pub allow_plaintext_auth: bool,
    /// LOGIN and AUTHENTICATE PLAIN/LOGIN are accepted and the password checked by the
    /// backend (app passwords and OAuth users on one port). Still only where
    /// authentication is allowed at all.
    pub password_fallback: bool,
    /// A refused token gets the mechanism's error challenge before the final `NO` (RFC
    /// 7628). Off: the `NO` comes at once, for clients that never answer the challenge.
    pub error_challenge: bool,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: u32,
    /// Framing limits for commands before login.
    pub limits: codec::Limits,
    /// Sent in the OAUTHBEARER error challenge.
    pub openid_configuration: Option<String>,
    /// Scope named in error challenges.
    pub challenge_scope: Option<String>,
    /// Over-long inputs tolerated before the connection is closed.
    pub max_oversized_inputs: u32,
    /// Malformed or out-of-place commands tolerated before the connection is closed.
    pub max_bad_commands: u32,
}

impl Default for ImapSessionConfig {
    fn default() -> Self {
        Self {
            tls_active: false,
            starttls_available: false,
            allow_plaintext_auth: false,
            password_fallback: false,
            error_challenge: true,
            max_auth_failures: 3,
            limits: codec::Limits {
                // A 16 KiB token, base64-encoded, plus the command around it.
                max_line: sasl::MAX_ENCODED_RESPONSE_LEN + 1_024,
                ..codec::Limits::default()
            },
            openid_configuration: None,
            challenge_scope: None,
            // "BAD, then close if it repeats": the second over-long input closes.
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
    /// AUTHENTICATE sent `+ `; the next line is a SASL response.
    SaslResponse {
        tag: String,
        exchange: ServerExchange,
    },
    /// Waiting for the driver to validate the token.
    Validating {
        tag: String,
        exchange: ServerExchange,
    },
    /// AUTHENTICATE PLAIN/LOGIN sent a continuation; the next line answers it.
    PasswordResponse {
        tag: String,
        exchange: PasswordExchange,
    },
    /// Waiting for the driver to have the backend check a password.
    CheckingPassword { tag: String },
    /// Logged in: the session is finished and the driver relays.
    LoggedIn,
    /// Closing.
    Closed,
}

/// One client connection before login.
#[derive(Debug)]
pub struct ImapSession {
    config: ImapSessionConfig,
    framer: CommandFramer,
    state: State,
    output: Vec<u8>,
    auth_failures: u32,
    oversized_inputs: u32,
    bad_commands: u32,
    close_reason: &'static str,
}

impl ImapSession {
    /// A new session; its greeting is already in the output.
    pub fn new(config: ImapSessionConfig) -> Self {
        let framer = CommandFramer::new(config.limits);
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
        let capabilities = session.capabilities();
        reply::untagged(
            &mut session.output,
            Status::Ok,
            Some(Code::Capability(&capabilities)),
            "bearergate ready.",
        );
        session
    }

    /// Bytes to send to the client.
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// The driver wrote all of [`ImapSession::output`].
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

    fn auth_allowed(&self) -> bool {
        self.config.tls_active || self.config.allow_plaintext_auth
    }

    fn password_fallback_allowed(&self) -> bool {
        self.config.password_fallback && self.auth_allowed()
    }

    fn capabilities(&self) -> Vec<&'static str> {
        capability::pre_login(
            self.auth_allowed(),
            self.config.starttls_available && !self.config.tls_active,
            self.password_fallback_allowed(),
        )
    }

    /// Processes buffered input until the session needs something from the driver.
    pub fn advance(&mut self, input: &mut BytesMut) -> Action {
        loop {
            let step = match &self.state {
                State::Commands => self.next_command(input),
                State::SaslResponse { .. } => self.next_sasl_response(input),
                State::PasswordResponse { .. } => self.next_password_response(input),
                State::Validating { .. } | State::CheckingPassword { .. } | State::LoggedIn => {
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
        let framed = match self.framer.decode(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(framed)) => framed,
            Err(error) => {
                self.framing_error(&error);
                return None;
            }
        };
        let bytes = match framed {
            FramedCommand::Complete(bytes) => bytes,
            FramedCommand::LiteralContinuationNeeded { .. } => {
                reply::continuation(&mut self.output, None);
                return None;
            }
        };
        let command = match parse_command(&bytes) {
            Ok(command) => command,
            Err(error) => {
                let tag = error.tag().map(str::to_owned);
                self.bad_input(tag.as_deref(), None, "Syntax error in command.");
                return None;
            }
        };
        let tag = command.tag;
        match command.body {
            CommandBody::Capability => {
                let capabilities = self.capabilities();
                reply::capability(&mut self.output, &capabilities);
                reply::tagged(
                    &mut self.output,
                    &tag,
                    Status::Ok,
                    None,
                    "CAPABILITY completed.",
                );
            }
            CommandBody::Noop => {
                reply::tagged(&mut self.output, &tag, Status::Ok, None, "NOOP completed.");
            }
            CommandBody::Logout => {
                reply::bye(&mut self.output, "Logging out.");
                reply::tagged(
                    &mut self.output,
                    &tag,
                    Status::Ok,
                    None,
                    "LOGOUT completed.",
                );
                self.close("logout");
            }
            CommandBody::Id(_) => {
                reply::id(&mut self.output, &[("name", "bearergate")]);
                reply::tagged(&mut self.output, &tag, Status::Ok, None, "ID completed.");
            }
            CommandBody::StartTls => return self.starttls(&tag),
            CommandBody::Login { username, password } if self.password_fallback_allowed() => {
                self.state = State::CheckingPassword { tag };
                return Some(Action::PasswordLogin(sasl::PasswordCredentials {
                    authzid: None,
                    user: username,
                    password,
                }));
            }
            CommandBody::Login { .. } => self.login_refused(&tag),
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if self.password_fallback_allowed()
                && PasswordMechanism::from_name(mechanism.as_bytes()).is_some() =>
            {
                return self.authenticate_password(tag, &mechanism, initial_response);
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => return self.authenticate(tag, &mechanism, initial_response),
            CommandBody::Other { .. } => {
                reply::tagged(
                    &mut self.output,
                    &tag,
                    Status::Bad,
                    None,
                    "Command not allowed before authentication.",
                );
            }
        }
        None
    }

    fn starttls(&mut self, tag: &str) -> Option<Action> {
        if self.config.tls_active || !self.config.starttls_available {
            let text = if self.config.tls_active {
                "TLS is already active."
            } else {
                "STARTTLS is not available on this port."
            };
            reply::tagged(&mut self.output, tag, Status::Bad, None, text);
            return None;
        }
        reply::tagged(
            &mut self.output,
            tag,
            Status::Ok,
            None,
            "Begin TLS negotiation now.",
        );
        Some(Action::StartTls)
    }

    fn login_refused(&mut self, tag: &str) {
        if !self.auth_allowed() {
            reply::tagged(
                &mut self.output,
                tag,
                Status::No,
                Some(Code::PrivacyRequired),
                "Use STARTTLS first; passwords are not accepted here.",
            );
            return;
        }
        reply::tagged(
            &mut self.output,
            tag,
            Status::No,
            Some(Code::AuthenticationFailed),
            "LOGIN is not accepted: authenticate with XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.",
        );
        self.count_auth_failure();
    }

    fn authenticate(
        &mut self,
        tag: String,
        mechanism: &str,
        initial_response: Option<InitialResponse>,
    ) -> Option<Action> {
        if !self.auth_allowed() {
            reply::tagged(
                &mut self.output,
                &tag,
                Status::No,
                Some(Code::PrivacyRequired),
                "Authentication requires TLS: use STARTTLS first.",
            );
            return None;
        }
        let Some(mechanism) = Mechanism::from_name(mechanism.as_bytes()) else {
            reply::tagged(
                &mut self.output,
                &tag,
                Status::No,
                None,
                "Unsupported authentication mechanism: use XOAUTH2 or OAUTHBEARER.",
            );
            return None;
        };
        let mut exchange = ServerExchange::new(mechanism).with_discovery(
            self.config.challenge_scope.clone(),
            self.config.openid_configuration.clone(),
        );
        let message = match crate::initial_message(initial_response) {
            Ok(Some(message)) => message,
            Ok(None) => {
                reply::continuation(&mut self.output, Some(""));
                self.state = State::SaslResponse { tag, exchange };
                return None;
            }
            Err(_) => {
                self.bad_input(Some(&tag), None, "Invalid base64 in initial response.");
                return None;
            }
        };
        let step = exchange.step(message);
        self.sasl_step(tag, exchange, step)
    }

    /// AUTHENTICATE PLAIN or LOGIN with the password fallback: the proxy collects the
    /// credentials itself, so the backend only ever sees a login the proxy writes.
    fn authenticate_password(
        &mut self,
        tag: String,
        mechanism: &str,
        initial_response: Option<InitialResponse>,
    ) -> Option<Action> {
        let Some(mechanism) = PasswordMechanism::from_name(mechanism.as_bytes()) else {
            return self.authenticate(tag, mechanism, initial_response);
        };
        let mut exchange = PasswordExchange::new(mechanism);
        let Ok(initial) = crate::initial_message(initial_response) else {
            self.bad_input(Some(&tag), None, "Invalid base64 in initial response.");
            return None;
        };
        let step = exchange.start(initial);
        self.password_step(tag, exchange, step)
    }

    fn next_password_response(&mut self, input: &mut BytesMut) -> Option<Action> {
        let decoded = self.framer.decode_line(input);
        let line = match decoded {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => Ok(line),
            Err(_) => Err(()),
        };
        let State::PasswordResponse { tag, mut exchange } =
            std::mem::replace(&mut self.state, State::Commands)
        else {
            return None;
        };
        let Ok(line) = line else {
            self.bad_input(Some(&tag), Some(Code::TooBig), "SASL response too long.");
            return None;
        };
        let step = exchange.step_line(&line);
        self.password_step(tag, exchange, step)
    }

    fn password_step(
        &mut self,
        tag: String,
        exchange: PasswordExchange,
        step: PasswordStep,
    ) -> Option<Action> {
        match step {
            PasswordStep::SendEmptyChallenge => {
                reply::continuation(&mut self.output, Some(""));
                self.state = State::PasswordResponse { tag, exchange };
                None
            }
            PasswordStep::Challenge(prompt) => {
                reply::continuation(&mut self.output, Some(&sasl::encode_base64(prompt)));
                self.state = State::PasswordResponse { tag, exchange };
                None
            }
            PasswordStep::Verify(credentials) => {
                self.state = State::CheckingPassword { tag };
                Some(Action::PasswordLogin(credentials))
            }
            PasswordStep::Failed(Failure::Undecodable(_)) => {
                self.bad_input(Some(&tag), None, "Invalid base64 in SASL response.");
                None
            }
            PasswordStep::Failed(_) => {
                self.authentication_failed(&tag);
                None
            }
            PasswordStep::Cancelled => {
                reply::tagged(
                    &mut self.output,
                    &tag,
                    Status::Bad,
                    None,
                    "Authentication cancelled.",
                );
                None
            }
        }
    }

    fn next_sasl_response(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode_line(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => line,
            Err(_) => {
                let State::SaslResponse { tag, .. } =
                    std::mem::replace(&mut self.state, State::Commands)
                else {
                    return None;
                };
                self.bad_input(Some(&tag), Some(Code::TooBig), "SASL response too long.");
                return None;
            }
        };
        let State::SaslResponse { tag, mut exchange } =
            std::mem::replace(&mut self.state, State::Commands)
        else {
            return None;
        };
        let step = exchange.step_line(&line);
        self.sasl_step(tag, exchange, step)
    }

    fn sasl_step(
        &mut self,
        tag: String,
        exchange: ServerExchange,
        step: ServerStep,
    ) -> Option<Action> {
        match step {
            ServerStep::SendEmptyChallenge => {
                reply::continuation(&mut self.output, Some(""));
                self.state = State::SaslResponse { tag, exchange };
                None
            }
            ServerStep::Challenge(_) if !self.config.error_challenge => {
                let mut exchange = exchange;
                exchange.abandon();
                self.authentication_failed(&tag);
                None
            }
            ServerStep::Challenge(challenge) => {
                reply::continuation(&mut self.output, Some(&sasl::encode_base64(&challenge)));
                self.state = State::SaslResponse { tag, exchange };
                None
            }
            ServerStep::Validate(credentials) => {
                self.state = State::Validating { tag, exchange };
                Some(Action::Authenticate(credentials))
            }
            ServerStep::Failed(Failure::Undecodable(_)) => {
                reply::tagged(
                    &mut self.output,
                    &tag,
                    Status::Bad,
                    None,
                    "Invalid base64 in SASL response.",
                );
                None
            }
            ServerStep::Failed(_) => {
                self.authentication_failed(&tag);
                None
            }
            ServerStep::Cancelled => {
                reply::tagged(
                    &mut self.output,
                    &tag,
                    Status::Bad,
                    None,
                    "Authentication cancelled.",
                );
                None
            }
        }
    }

    fn authentication_failed(&mut self, tag: &str) {
        reply::tagged(
            &mut self.output,
            tag,
            Status::No,
            Some(Code::AuthenticationFailed),
            "Authentication failed.",
        );
        self.count_auth_failure();
    }

    fn count_auth_failure(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.config.max_auth_failures {
            reply::bye(&mut self.output, "Too many failed authentications.");
            self.close("too-many-auth-failures");
        }
    }

    fn framing_error(&mut self, error: &FramingError) {
        let tag = error.tag().map(|t| String::from_utf8_lossy(t).into_owned());
        let text = match error {
            FramingError::LiteralTooLarge { .. } => "Literal too large.",
            FramingError::LineTooLong { .. } => "Command line too long.",
            FramingError::CommandTooLong { .. } => "Command too long.",
        };
        self.bad_input(tag.as_deref(), Some(Code::TooBig), text);
    }

    fn bad_input(&mut self, tag: Option<&str>, code: Option<Code<'_>>, text: &str) {
        match tag {
            Some(tag) => reply::tagged(&mut self.output, tag, Status::Bad, code, text),
            None => reply::untagged(&mut self.output, Status::Bad, code, text),
        }
        let (count, limit) = if matches!(code, Some(Code::TooBig)) {
            self.oversized_inputs += 1;
            (self.oversized_inputs, self.config.max_oversized_inputs)
        } else {
            self.bad_commands += 1;
            (self.bad_commands, self.config.max_bad_commands)
        };
        if count >= limit {
            reply::bye(&mut self.output, "Too many invalid commands.");
            self.close("too-many-bad-commands");
        }
    }

    fn close(&mut self, reason: &'static str) {
        self.state = State::Closed;
        self.close_reason = reason;
    }

    /// The TLS handshake after STARTTLS succeeded. Framing starts afresh: nothing read before
    /// the handshake may be taken as a command.
    pub fn tls_started(&mut self) {
        self.config.tls_active = true;
        self.framer = CommandFramer::new(self.config.limits);
        self.state = State::Commands;
    }

    /// Sets what the error challenge tells OAUTHBEARER clients (`scope`,
    /// `openid-configuration`): with several identity providers, the refused token's own.
    pub fn set_discovery(&mut self, scope: Option<String>, openid_configuration: Option<String>) {
        self.config.challenge_scope = scope;
        self.config.openid_configuration = openid_configuration;
    }

    /// The token was refused: send the mechanism's error challenge and wait for the client's
    /// dummy response, after which the command fails with AUTHENTICATIONFAILED.
    pub fn token_refused(&mut self, refusal: Refusal) {
        let State::Validating { tag, mut exchange } =
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
            self.authentication_failed(&tag);
            return;
        }
        match exchange.refuse(error) {
            Ok(challenge) => {
                reply::continuation(&mut self.output, Some(&sasl::encode_base64(&challenge)));
                self.state = State::SaslResponse { tag, exchange };
            }
            Err(_) => self.authentication_failed(&tag),
        }
    }

    /// A backend that validates tokens itself (`passthrough`) refused this one. Its challenge,
    /// when it sent one, reaches the client unchanged; the command then fails like any
    /// refused token.
    pub fn backend_refused(&mut self, challenge: Option<Vec<u8>>) {
        let State::Validating { tag, mut exchange } =
            std::mem::replace(&mut self.state, State::Commands)
        else {
            return;
        };
        let Some(challenge) = challenge.filter(|_| self.config.error_challenge) else {
            exchange.abandon();
            self.authentication_failed(&tag);
            return;
        };
        match exchange.refuse_with_challenge(challenge) {
            Ok(challenge) => {
                reply::continuation(&mut self.output, Some(&sasl::encode_base64(&challenge)));
                self.state = State::SaslResponse { tag, exchange };
            }
            Err(_) => self.authentication_failed(&tag),
        }
    }

    /// The identity provider or the backend could not be reached, or the client's address
    /// has used up its failed logins: the command fails with UNAVAILABLE and the client may
    /// try again later. Works for token and password logins alike.
    pub fn unavailable(&mut self) {
        let tag = match std::mem::replace(&mut self.state, State::Commands) {
            State::Validating { tag, mut exchange } => {
                exchange.abandon();
                tag
            }
            State::CheckingPassword { tag } => tag,
            other => {
                self.state = other;
                return;
            }
        };
        reply::tagged(
            &mut self.output,
            &tag,
            Status::No,
            Some(Code::Unavailable),
            "Authentication service temporarily unavailable; try again later.",
        );
    }

    /// The backend refused the password (password fallback): the command fails like a
    /// refused token, counts against the failure limit, and the client stays with the proxy.
    pub fn password_refused(&mut self) {
        let State::CheckingPassword { tag } = std::mem::replace(&mut self.state, State::Commands)
        else {
            return;
        };
        self.authentication_failed(&tag);
    }

    /// The backend accepted the login. `capabilities` are the backend's, already filtered.
    pub fn logged_in(&mut self, capabilities: &[String]) {
        let tag = match std::mem::replace(&mut self.state, State::LoggedIn) {
            State::Validating { tag, .. } | State::CheckingPassword { tag } => tag,
            other => {
                self.state = other;
                return;
            }
        };
        let capabilities: Vec<&str> = capabilities.iter().map(String::as_str).collect();
        reply::tagged(
            &mut self.output,
            &tag,
            Status::Ok,
            Some(Code::Capability(&capabilities)),
            "Logged in.",
        );
    }

    /// The client sent nothing for too long.
    pub fn idle_timeout(&mut self) {
        reply::bye(&mut self.output, "Autologout; idle for too long.");
        self.close("idle-timeout");
    }
}
