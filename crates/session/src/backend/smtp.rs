//! Logging in to an SMTP submission backend: greeting, EHLO with the client's own name (so
//! the backend's view of the session matches the client's), optional STARTTLS and a fresh
//! EHLO, the client's address with XCLIENT where offered, then AUTH PLAIN as the master
//! user or with an authorization id, the client's own mechanism and token, the client's
//! password (fallback) — or Postfix XCLIENT naming the user. A last EHLO checks what the
//! backend grants the connection before the client gets it.
//!
//! ```text
//! S: 220 ...                              (4xx: unavailable; 5xx: refused)
//! C: EHLO <client name>
//! C: STARTTLS, then EHLO again            (only when asked)
//!    -> Learned::SmtpExtensions           (the last EHLO before login)
//! C: XCLIENT ADDR=... PORT=...            (forward_client_address and offered; then EHLO)
//! C: AUTH mech <response>                 (≤ 512 octets; else AUTH mech, 334, response)
//! C: XCLIENT LOGIN=... ADDR=... ...       (the xclient strategy, instead of AUTH)
//! C: EHLO <client name>                   (must not offer XCLIENT or XFORWARD any more)
//! ```

use bytes::BytesMut;
use codec::smtp::client::{
    write_auth, write_auth_response, write_ehlo, write_quit, write_starttls, write_xclient,
};
use codec::smtp::{ehlo_keywords, InitialResponse, ReplyError, ReplyFramer, ReplyLimits, Response};
use secrecy::ExposeSecret;

use super::{
    client_response, decode_challenge, dummy_response, encode_secret, loggable, plain_response,
    BackendLogin, Event, Learned, LoggedIn, LoginError, LoginRequest, Outgoing, Privilege,
    ProtocolError, Secret, Stage, Strategy, WrongState, DEFAULT_CLIENT_NAME,
};

/// RFC 4954 lets servers refuse AUTH lines over 512 octets; longer responses go on their own
/// line after `334`.
const MAX_AUTH_LINE: usize = 512;

/// Which EHLO the machine waits for the answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ehlo {
    /// After the greeting.
    First,
    /// After the TLS handshake.
    AfterTls,
    /// After XCLIENT forwarded the client's address; AUTH follows.
    AfterXclient,
    /// After the login: the connection is handed over unless it grants too much.
    HandOver,
}

#[derive(Debug)]
enum State {
    Greeting,
    Ehlo(Ehlo),
    StartTls,
    TlsPending,
    /// XCLIENT commands sent, `remaining` replies to read; then an EHLO.
    Xclient {
        remaining: usize,
        then: Ehlo,
    },
    /// `AUTH mech` sent without the response: waiting for `334`.
    AuthContinue {
        mechanism: &'static str,
        /// The base64 response to send then.
        response: Secret,
    },
    /// The response was sent; `challenge` once the backend answered with one.
    Auth {
        mechanism: &'static str,
        challenge: Option<Vec<u8>>,
    },
    Done,
}

/// What the conversation is for.
#[derive(Debug)]
enum Goal {
    /// Learn the EHLO keywords, then QUIT.
    Probe,
    /// Log in.
    Login(LoginRequest),
}

/// One SMTP backend login (or start-up probe). See the [module docs](self).
#[derive(Debug)]
pub struct SmtpLogin {
    goal: Goal,
    starttls: bool,
    /// The EHLO name: the client's, else [`DEFAULT_CLIENT_NAME`].
    name: String,
    framer: ReplyFramer,
    state: State,
    output: Outgoing,
    /// The keywords of the last EHLO reply.
    keywords: Vec<(String, String)>,
    /// An event to report at the next `advance`, after [`Event::Learned`].
    pending: Option<Event>,
}

impl SmtpLogin {
    /// A login as `request` says; the machine waits for the greeting.
    pub fn new(request: LoginRequest) -> Result<Self, LoginError> {
        let name = request
            .client_name
            .clone()
            .unwrap_or_else(|| DEFAULT_CLIENT_NAME.to_owned());
        let starttls = request.starttls;
        Ok(Self::with_goal(Goal::Login(request), name, starttls))
    }

    /// A start-up probe: greeting, EHLO (and STARTTLS), [`Event::Learned`] with the
    /// backend's extensions, then `QUIT` and [`Event::Probed`].
    pub fn probe(starttls: bool) -> Self {
        Self::with_goal(Goal::Probe, DEFAULT_CLIENT_NAME.to_owned(), starttls)
    }

    fn with_goal(goal: Goal, name: String, starttls: bool) -> Self {
        Self {
            goal,
            starttls,
            name,
            framer: ReplyFramer::new(ReplyLimits::default()),
            state: State::Greeting,
            output: Outgoing::default(),
            keywords: Vec::new(),
            pending: None,
        }
    }

    fn stage(&self) -> Stage {
        match self.state {
            State::Greeting => Stage::Greeting,
            State::StartTls | State::TlsPending => Stage::StartTls,
            State::Ehlo(Ehlo::HandOver) => Stage::PostLogin,
            State::Ehlo(_) => Stage::Ehlo,
            State::Xclient { .. } => Stage::Xclient,
            State::AuthContinue { .. } | State::Auth { .. } | State::Done => Stage::Login,
        }
    }

    fn request(&self) -> Result<&LoginRequest, LoginError> {
        match &self.goal {
            Goal::Login(request) => Ok(request),
            Goal::Probe => Err(LoginError::Finished),
        }
    }

    fn keyword(&self, name: &str) -> Option<&str> {
        self.keywords
            .iter()
            .find(|(keyword, _)| keyword == name)
            .map(|(_, params)| params.as_str())
    }

    fn fail(&mut self, error: LoginError) -> Event {
        self.state = State::Done;
        Event::Failed(error)
    }

    /// The reply is not `code`: whose fault is it?
    fn expect(&self, reply: &Response, code: u16) -> Result<(), LoginError> {
        if reply.code == code {
            return Ok(());
        }
        Err(refusal(self.stage(), reply))
    }

    fn ehlo(&mut self, which: Ehlo) -> Result<(), LoginError> {
        self.state = State::Ehlo(which);
        write_ehlo(self.output.buffer(), &self.name)
            .map_err(|_| LoginError::protocol(Stage::Ehlo, ProtocolError::Unencodable("EHLO name")))
    }

    fn on_reply(
        &mut self,
        reply: Response,
        input: &mut BytesMut,
    ) -> Result<Option<Event>, LoginError> {
        match &mut self.state {
            State::Greeting => {
                self.expect(&reply, 220)?;
                self.ehlo(Ehlo::First).map(|()| None)
            }
            State::Ehlo(which) => {
                let which = *which;
                self.expect(&reply, 250)?;
                self.keywords = ehlo_keywords(&reply.lines);
                match which {
                    Ehlo::First if self.starttls => {
                        write_starttls(self.output.buffer());
                        self.state = State::StartTls;
                        Ok(None)
                    }
                    Ehlo::First | Ehlo::AfterTls => Ok(Some(self.learned())),
                    Ehlo::AfterXclient => self.auth().map(|()| None),
                    Ehlo::HandOver => self.hand_over(input).map(Some),
                }
            }
            State::StartTls => {
                self.expect(&reply, 220)?;
                self.state = State::TlsPending;
                Ok(Some(Event::StartTls))
            }
            State::Xclient { remaining, then } => {
                // Each XCLIENT is answered with a new greeting.
                let (remaining, then) = (remaining.saturating_sub(1), *then);
                self.expect(&reply, 220)?;
                if remaining > 0 {
                    self.state = State::Xclient { remaining, then };
                    return Ok(None);
                }
                self.ehlo(then).map(|()| None)
            }
            State::AuthContinue { .. } => {
                self.expect(&reply, 334)?;
                let State::AuthContinue {
                    mechanism,
                    response,
                } = std::mem::replace(&mut self.state, State::Done)
                else {
                    return Err(LoginError::Finished);
                };
                write_auth_response(self.output.buffer(), response.expose_secret()).map_err(
                    |_| LoginError::protocol(Stage::Login, ProtocolError::Unencodable("AUTH")),
                )?;
                self.state = State::Auth {
                    mechanism,
                    challenge: None,
                };
                Ok(None)
            }
            State::Auth {
                mechanism,
                challenge: challenge @ None,
            } if reply.code == 334 => {
                // An error challenge: answer with the mechanism's dummy and keep the
                // challenge for the client.
                let data = reply.lines.first().map(String::as_str).unwrap_or("");
                *challenge = Some(decode_challenge(data.as_bytes()));
                let dummy = dummy_response(mechanism);
                let out = self.output.buffer();
                out.extend_from_slice(dummy);
                out.extend_from_slice(b"\r\n");
                Ok(None)
            }
            State::Auth { challenge, .. } => {
                let challenge = challenge.take();
                self.auth_done(&reply, challenge)
            }
            State::TlsPending | State::Done => Err(LoginError::Finished),
        }
    }

    /// The last EHLO before login was read: report its keywords, and go on.
    fn learned(&mut self) -> Event {
        let learned = Event::Learned(Learned::SmtpExtensions(self.keywords.clone()));
        self.pending = match self.after_ehlo() {
            Ok(next) => next,
            Err(error) => Some(self.fail(error)),
        };
        learned
    }

    /// What follows the EHLO: QUIT (probe), XCLIENT, or AUTH.
    fn after_ehlo(&mut self) -> Result<Option<Event>, LoginError> {
        let request = match &self.goal {
            Goal::Probe => {
                write_quit(self.output.buffer());
                self.state = State::Done;
                return Ok(Some(Event::Probed));
            }
            Goal::Login(request) => request,
        };
        let address = request.client.ip().to_string();
        let port = request.client.port().to_string();
        if let Strategy::Xclient { user } = &request.strategy {
            // Postfix XCLIENT: the proxy vouches for the user and the client's address
            // (the backend lists the proxy in `smtpd_authorized_xclient_hosts`).
            let Some(advertised) = self.keyword("XCLIENT") else {
                return Err(LoginError::protocol(Stage::Ehlo, ProtocolError::NoXclient));
            };
            let wanted = [
                ("LOGIN", user.as_str()),
                ("ADDR", address.as_str()),
                ("PORT", port.as_str()),
                // The proxy does no reverse lookups; Postfix's own word for "not known".
                ("NAME", "[UNAVAILABLE]"),
                ("HELO", self.name.as_str()),
                ("PROTO", "ESMTP"),
            ];
            let attributes = offered_attributes(advertised, &wanted);
            if !attributes
                .iter()
                .any(|(attribute, _)| *attribute == "LOGIN")
            {
                return Err(LoginError::protocol(
                    Stage::Ehlo,
                    ProtocolError::XclientWithoutLogin,
                ));
            }
            let attributes: Vec<(String, String)> = owned(&attributes);
            return self.xclient(&attributes, Ehlo::HandOver).map(|()| None);
        }
        // The client's address and port, so that the backend's logs, rate limits and
        // authentication penalties apply to the client, as IMAP's `ID` does. Nothing else:
        // the login stays the backend's to check.
        let forward = request.forward_client_address;
        if let Some(advertised) = self.keyword("XCLIENT").filter(|_| forward) {
            let attributes = offered_attributes(advertised, &[("ADDR", &address), ("PORT", &port)]);
            if attributes.iter().any(|(attribute, _)| *attribute == "ADDR") {
                let attributes = owned(&attributes);
                return self.xclient(&attributes, Ehlo::AfterXclient).map(|()| None);
            }
        }
        self.auth().map(|()| None)
    }

    /// `XCLIENT` with these attributes; each command is answered with a new `220`, after
    /// which the backend wants a fresh EHLO.
    fn xclient(&mut self, attributes: &[(String, String)], then: Ehlo) -> Result<(), LoginError> {
        let attributes: Vec<(&str, &str)> = attributes
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let remaining = write_xclient(self.output.buffer(), &attributes).map_err(|_| {
            LoginError::protocol(Stage::Xclient, ProtocolError::Unencodable("XCLIENT"))
        })?;
        self.state = State::Xclient { remaining, then };
        Ok(())
    }

    /// `AUTH mechanism` with the strategy's response: as the initial response when the
    /// line stays within 512 octets, else after the `334`.
    fn auth(&mut self) -> Result<(), LoginError> {
        let request = self.request()?;
        let encode = |what| LoginError::protocol(Stage::Login, ProtocolError::Unencodable(what));
        let (mechanism, response) = match &request.strategy {
            Strategy::Master { user, master } => (
                "PLAIN",
                plain_response("", &master.login_name(user), &master.password)
                    .map_err(|_| encode("PLAIN response"))?,
            ),
            Strategy::PlainAuthzid { user, master } => (
                "PLAIN",
                plain_response(user, &master.name, &master.password)
                    .map_err(|_| encode("PLAIN response"))?,
            ),
            Strategy::Passthrough { user, credentials } => (
                credentials.mechanism.name(),
                client_response(user, credentials).map_err(|_| encode("client's SASL response"))?,
            ),
            Strategy::Password(credentials) => (
                "PLAIN",
                plain_response(
                    credentials.authzid.as_deref().unwrap_or(""),
                    &credentials.user,
                    &credentials.password,
                )
                .map_err(|_| LoginError::PasswordRefused)?,
            ),
            Strategy::Xclient { .. } => return Err(LoginError::Finished),
        };
        let offered = self.keyword("AUTH").is_some_and(|mechanisms| {
            mechanisms
                .split_whitespace()
                .any(|m| m.eq_ignore_ascii_case(mechanism))
        });
        if !offered {
            return Err(LoginError::protocol(
                Stage::Login,
                ProtocolError::NoMechanism(mechanism.to_owned()),
            ));
        }
        let encoded = encode_secret(&response);
        let length = encoded.expose_secret().len();
        if length + mechanism.len() + 8 <= MAX_AUTH_LINE {
            let initial =
                InitialResponse::Base64(bytes::Bytes::copy_from_slice(encoded.expose_secret()));
            write_auth(self.output.buffer(), mechanism, Some(&initial))
                .map_err(|_| encode("AUTH"))?;
            self.state = State::Auth {
                mechanism,
                challenge: None,
            };
        } else {
            write_auth(self.output.buffer(), mechanism, None).map_err(|_| encode("AUTH"))?;
            self.state = State::AuthContinue {
                mechanism,
                response: encoded,
            };
        }
        Ok(())
    }

    /// The final reply to AUTH (after the dummy response, if there was a challenge).
    fn auth_done(
        &mut self,
        reply: &Response,
        challenge: Option<Vec<u8>>,
    ) -> Result<Option<Event>, LoginError> {
        if reply.code == 235 {
            return self.ehlo(Ehlo::HandOver).map(|()| None);
        }
        match &self.request()?.strategy {
            Strategy::Password(_) if reply.class() == 5 => Err(LoginError::PasswordRefused),
            Strategy::Passthrough { .. } if reply.code == 535 || challenge.is_some() => {
                Err(LoginError::TokenRefused { challenge })
            }
            _ => Err(refusal(Stage::Login, reply)),
        }
    }

    /// The last EHLO's answer shows what the backend now grants *this* connection. XCLIENT
    /// or XFORWARD there means the client could rewrite its identity or address once it
    /// has the connection — Postfix re-checks `smtpd_authorized_xclient_hosts` against the
    /// address the last XCLIENT set, so a client whose own address is listed inherits the
    /// proxy's right — and the login is refused. Dovecot drops XCLIENT after login; Postfix
    /// without the proxy in those lists never offers it.
    fn hand_over(&mut self, input: &mut BytesMut) -> Result<Event, LoginError> {
        let privilege = self
            .keywords
            .iter()
            .find_map(|(keyword, _)| match keyword.as_str() {
                "XCLIENT" => Some(Privilege::Xclient),
                "XFORWARD" => Some(Privilege::Xforward),
                _ => None,
            });
        if let Some(privilege) = privilege {
            return Err(LoginError::Unsafe { privilege });
        }
        self.state = State::Done;
        Ok(Event::LoggedIn(LoggedIn {
            capabilities: Vec::new(),
            leftover: input.split(),
        }))
    }
}

/// A reply that is not the one expected: `4xx` is "try again later", `5xx` a refusal of
/// the proxy, anything else a reply that makes no sense here.
fn refusal(stage: Stage, reply: &Response) -> LoginError {
    let text = loggable(format!("{} {}", reply.code, reply.lines.join(" ")).as_bytes());
    match reply.class() {
        4 => LoginError::Unavailable { stage, reply: text },
        5 => LoginError::Refused { stage, reply: text },
        _ => LoginError::protocol(stage, ProtocolError::Unexpected(text)),
    }
}

/// Those of `wanted` whose attribute names the backend's XCLIENT keyword advertises.
fn offered_attributes<'a>(
    advertised: &str,
    wanted: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let advertised: Vec<String> = advertised
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|(attribute, _)| advertised.iter().any(|a| a == attribute))
        .collect()
}

fn owned(attributes: &[(&str, &str)]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

impl BackendLogin for SmtpLogin {
    fn output(&self) -> &[u8] {
        self.output.bytes()
    }

    fn output_written(&mut self) {
        self.output.written();
    }

    fn advance(&mut self, input: &mut BytesMut) -> Event {
        loop {
            if let Some(event) = self.pending.take() {
                return event;
            }
            match self.state {
                State::TlsPending => return Event::StartTls,
                State::Done => return Event::Failed(LoginError::Finished),
                _ => {}
            }
            let reply = match self.framer.decode(input) {
                Ok(Some(reply)) => reply,
                Ok(None) => return Event::NeedInput,
                Err(ReplyError::LineTooLong | ReplyError::TooManyLines | ReplyError::TooLong) => {
                    let error = LoginError::protocol(self.stage(), ProtocolError::TooLong);
                    return self.fail(error);
                }
                Err(other) => {
                    let error = ProtocolError::Malformed(other.to_string());
                    return self.fail(LoginError::protocol(self.stage(), error));
                }
            };
            match self.on_reply(reply, input) {
                Ok(None) => {}
                Ok(Some(event)) => return event,
                Err(error) => return self.fail(error),
            }
        }
    }

    fn tls_started(&mut self) -> Result<(), WrongState<()>> {
        if !matches!(self.state, State::TlsPending) {
            return Err(WrongState::new("tls_started", "not waiting for TLS", ()));
        }
        // Nothing the backend sent in clear text after its 220 is trusted (RFC 3207).
        self.framer = ReplyFramer::new(ReplyLimits::default());
        self.keywords.clear();
        if let Err(error) = self.ehlo(Ehlo::AfterTls) {
            self.pending = Some(self.fail(error));
        }
        Ok(())
    }

    fn closed(&mut self) -> LoginError {
        if let State::Done = self.state {
            return LoginError::Finished;
        }
        let stage = self.stage();
        self.state = State::Done;
        LoginError::protocol(stage, ProtocolError::Closed)
    }
}
