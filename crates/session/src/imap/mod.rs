//! The IMAP pre-authentication session (RFC 3501 / RFC 9051 not-authenticated state).
//!
//! The proxy answers everything before login itself: greeting, CAPABILITY, NOOP, LOGOUT,
//! ID, STARTTLS and AUTHENTICATE with XOAUTH2 or OAUTHBEARER (and, with the password
//! fallback, LOGIN and AUTHENTICATE PLAIN/LOGIN). Commands are handled strictly one at a
//! time; once authentication starts, the session stops reading commands, so anything a
//! client pipelined behind AUTHENTICATE stays in the driver's buffer and goes to the backend
//! untouched after login.
//!
//! Every command refused for what it is (malformed, unknown, of the logged-in state,
//! STARTTLS where it is not offered, authentication before TLS or with an unknown
//! mechanism) counts towards [`ImapSessionConfig::max_bad_commands`], as SMTP's and POP3's
//! refusals do: answered one by one for ever, a flood of them would cost the proxy a reply
//! each until the pre-login deadline.

mod capability;
mod reply;
#[cfg(test)]
mod tests;

use bytes::BytesMut;
use codec::imap::{
    parse_command, CommandBody, CommandFramer, FramedCommand, FramingError, InitialResponse,
};
use sasl::{Mechanism, PasswordMechanism};

use crate::auth::{is_too_long, Auth, AuthHost, AuthSettings, Outcome};
pub use crate::{Action, Discovery, Refusal, Session, Verdict, WrongState};
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
    /// What the session's own error challenges (for unusable credentials) tell the client;
    /// a refused token's challenge says what its [`Verdict::TokenRefused`] carries.
    pub discovery: Discovery,
    /// Over-long inputs tolerated before the connection is closed.
    pub max_oversized_inputs: u32,
    /// Malformed, unknown or out-of-place commands tolerated before the connection is
    /// closed (`* BYE Too many invalid commands.` after the last one's reply).
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
            // Lines of 24,236 octets: a 16 KiB token, base64-encoded, plus the command.
            limits: codec::Limits::default(),
            discovery: Discovery::default(),
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
    /// LOGIN or AUTHENTICATE (with this tag) in progress.
    Auth { tag: String, auth: Auth },
    /// `OK Begin TLS negotiation now.` sent; waiting for the driver's handshake.
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
            State::Auth { .. } => "authenticating",
            State::TlsPending => "waiting for the TLS handshake",
            State::LoggedIn => "logged in",
            State::Closed => "closed",
        }
    }
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

/// IMAP's SASL continuation: `+ <base64>`.
fn sasl_continuation(out: &mut Vec<u8>, base64: &str) {
    reply::continuation(out, Some(base64));
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

    fn capabilities(&self) -> Vec<&'static str> {
        capability::pre_login(
            self.auth_allowed(),
            self.config.starttls_available && !self.config.tls_active,
            self.password_fallback_allowed(),
        )
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
                let credentials = sasl::PasswordCredentials {
                    authzid: None,
                    user: username,
                    password,
                };
                let (auth, step) =
                    Auth::login_command(credentials, &self.auth_settings(), sasl_continuation);
                return self.after_auth(tag, auth, step);
            }
            CommandBody::Login { .. } => self.login_refused(&tag),
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => return self.authenticate(tag, &mechanism, initial_response),
            CommandBody::Other { .. } => {
                self.bad_input(
                    Some(&tag),
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
            self.bad_input(Some(tag), None, text);
            return None;
        }
        reply::tagged(
            &mut self.output,
            tag,
            Status::Ok,
            None,
            "Begin TLS negotiation now.",
        );
        self.state = State::TlsPending;
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
            self.count_bad_command();
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
            self.count_bad_command();
            return None;
        }
        let settings = self.auth_settings();
        let password = PasswordMechanism::from_name(mechanism.as_bytes())
            .filter(|_| self.password_fallback_allowed());
        let mut auth = match (Mechanism::from_name(mechanism.as_bytes()), password) {
            (Some(mechanism), _) => Auth::token(mechanism, &settings, sasl_continuation),
            (None, Some(mechanism)) => Auth::password(mechanism, &settings, sasl_continuation),
            (None, None) => {
                reply::tagged(
                    &mut self.output,
                    &tag,
                    Status::No,
                    None,
                    "Unsupported authentication mechanism: use XOAUTH2 or OAUTHBEARER.",
                );
                self.count_bad_command();
                return None;
            }
        };
        let initial = match crate::initial_message(initial_response) {
            Ok(initial) => initial,
            Err(error) if is_too_long(&error) => {
                self.bad_input(Some(&tag), Some(Code::TooBig), "SASL response too long.");
                return None;
            }
            Err(_) => {
                self.bad_input(Some(&tag), None, "Invalid base64 in initial response.");
                return None;
            }
        };
        let step = auth.start(&mut self.output, initial);
        self.after_auth(tag, auth, step)
    }

    fn next_auth_line(&mut self, input: &mut BytesMut) -> Option<Action> {
        let line = match self.framer.decode_line(input) {
            Ok(None) => return Some(Action::NeedInput),
            Ok(Some(line)) => Ok(line),
            Err(error) => Err(error),
        };
        let State::Auth { tag, mut auth } = std::mem::replace(&mut self.state, State::Commands)
        else {
            return None;
        };
        let line = match line {
            Ok(line) => line,
            Err(FramingError::LineTooLong { .. }) => {
                auth.abandon();
                self.bad_input(Some(&tag), Some(Code::TooBig), "SASL response too long.");
                return None;
            }
            Err(error) => {
                auth.abandon();
                self.framing_error(&error);
                return None;
            }
        };
        let step = auth.line(&mut self.output, &line);
        self.after_auth(tag, auth, step)
    }

    /// The final reply of an authentication.
    fn auth_reply(&mut self, tag: &str, outcome: Outcome) {
        match outcome {
            Outcome::Failed => {
                reply::tagged(
                    &mut self.output,
                    tag,
                    Status::No,
                    Some(Code::AuthenticationFailed),
                    "Authentication failed.",
                );
                self.count_auth_failure();
            }
            Outcome::Cancelled => reply::tagged(
                &mut self.output,
                tag,
                Status::Bad,
                None,
                "Authentication cancelled.",
            ),
            Outcome::BadBase64 => {
                self.bad_input(Some(tag), None, "Invalid base64 in SASL response.");
            }
            Outcome::TooLong => {
                self.bad_input(Some(tag), Some(Code::TooBig), "SASL response too long.");
            }
            Outcome::Unavailable => reply::tagged(
                &mut self.output,
                tag,
                Status::No,
                Some(Code::Unavailable),
                "Authentication service temporarily unavailable; try again later.",
            ),
            Outcome::LoggedIn(capabilities) => {
                let capabilities: Vec<&str> = capabilities.iter().map(String::as_str).collect();
                reply::tagged(
                    &mut self.output,
                    tag,
                    Status::Ok,
                    Some(Code::Capability(&capabilities)),
                    "Logged in.",
                );
                self.state = State::LoggedIn;
            }
        }
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
            FramingError::LiteralTooLarge { .. } | FramingError::LiteralTooLargeToSkip { .. } => {
                "Literal too large."
            }
            FramingError::LineTooLong { .. } => "Command line too long.",
            FramingError::CommandTooLong { .. } => "Command too long.",
        };
        self.bad_input(tag.as_deref(), Some(Code::TooBig), text);
        if matches!(error, FramingError::LiteralTooLargeToSkip { .. })
            && !matches!(self.state, State::Closed)
        {
            // Its octets would take too long to skip, and must not be read as commands.
            reply::bye(&mut self.output, "Literal too large to skip; closing.");
            self.close("literal-too-large");
        }
    }

    fn bad_input(&mut self, tag: Option<&str>, code: Option<Code<'_>>, text: &str) {
        match tag {
            Some(tag) => reply::tagged(&mut self.output, tag, Status::Bad, code, text),
            None => reply::untagged(&mut self.output, Status::Bad, code, text),
        }
        if !matches!(code, Some(Code::TooBig)) {
            self.count_bad_command();
            return;
        }
        self.oversized_inputs += 1;
        if self.oversized_inputs >= self.config.max_oversized_inputs {
            self.too_many_invalid();
        }
    }

    /// Counts a refused command (its reply already written); the last one allowed closes.
    fn count_bad_command(&mut self) {
        self.bad_commands += 1;
        if self.bad_commands >= self.config.max_bad_commands {
            self.too_many_invalid();
        }
    }

    fn too_many_invalid(&mut self) {
        reply::bye(&mut self.output, "Too many invalid commands.");
        self.close("too-many-bad-commands");
    }

    fn close(&mut self, reason: &'static str) {
        self.state = State::Closed;
        self.close_reason = reason;
    }
}

impl AuthHost for ImapSession {
    type Context = String;

    fn park(&mut self, context: String, auth: Auth) {
        self.state = State::Auth { tag: context, auth };
    }

    fn unpark(&mut self) -> Result<(String, Auth), &'static str> {
        match std::mem::replace(&mut self.state, State::Commands) {
            State::Auth { tag, auth } => Ok((tag, auth)),
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

    fn finish_auth(&mut self, context: String, outcome: Outcome) {
        self.auth_reply(&context, outcome)
    }
}

impl Session for ImapSession {
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
                State::Auth { auth, .. } if auth.wants_line() => self.next_auth_line(input),
                State::Auth { .. } | State::LoggedIn => return Action::NeedInput,
                State::TlsPending => return Action::StartTls,
                State::Closed => return Action::Close,
            };
            if let Some(action) = step {
                return action;
            }
        }
    }

    /// Framing starts afresh: nothing read before the handshake may be taken as a command.
    fn tls_started(&mut self) -> Result<(), WrongState<()>> {
        if !matches!(self.state, State::TlsPending) {
            return Err(WrongState::new("tls_started", self.state.name(), ()));
        }
        self.config.tls_active = true;
        self.framer = CommandFramer::new(self.config.limits);
        self.state = State::Commands;
        Ok(())
    }

    fn verdict(&mut self, verdict: Verdict) -> Result<(), WrongState<Verdict>> {
        self.deliver_verdict(verdict)
    }

    fn idle_timeout(&mut self) {
        reply::bye(&mut self.output, "Autologout; idle for too long.");
        self.close("idle-timeout");
    }

    /// `* BYE [UNAVAILABLE]`: an untagged BYE may come at any time (RFC 3501 §7.1.5).
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

/// What a client that cannot be served now is told before the connection closes.
pub fn refusal(why: crate::Busy) -> Vec<u8> {
    let mut out = Vec::new();
    reply::busy(&mut out, why);
    out
}
