//! Logging in to an IMAP backend: greeting, optional STARTTLS, capabilities, `ID` with the
//! client's address, then LOGIN as the master user, AUTHENTICATE PLAIN with an
//! authorization id, the client's own mechanism and token (passthrough), or the client's
//! password (fallback). Ends with the backend's post-login capabilities for the client's
//! tagged OK.
//!
//! The conversation, with the tags the backend sees:
//!
//! ```text
//! S: * OK [CAPABILITY ...] ready          (BYE: unavailable; PREAUTH: refused)
//! C: bg0 STARTTLS                         (only when asked; then the handshake)
//! C: bg1 CAPABILITY                       (when the greeting had none, and after TLS)
//! C: bg2 ID ("x-originating-ip" ...)      (forward_client_address and ID offered)
//! C: bg3 LOGIN name password              (master; password fallback without AUTH=PLAIN)
//! C: bg3 AUTHENTICATE mech [response]     (with SASL-IR when offered, else after `+`)
//! C: bg4 CAPABILITY                       (when the tagged OK had no capabilities)
//! ```
//!
//! A challenge after the response means the backend refused: it is answered with the
//! mechanism's dummy (`AQ==` for OAUTHBEARER, an empty line otherwise) and, for
//! passthrough, returned for the client.

use bytes::{Bytes, BytesMut};
use codec::imap::client::{
    write_authenticate, write_capability, write_id, write_login, write_starttls,
};
use codec::imap::response::{parse_response, Code, Response, ResponseFramer, Status};
use codec::imap::{FramingError, InitialResponse, WriteError};
use secrecy::ExposeSecret;

use super::{
    client_response, decode_challenge, dummy_response, encode_secret, loggable,
    passthrough_refusal, plain_response, BackendLogin, Event, LoggedIn, LoginError, LoginRequest,
    Outgoing, ProtocolError, Secret, Stage, Strategy, WrongState,
};

/// Longest backend response line accepted during login. Capability lists of big servers
/// run to about 1 KiB; 64 KiB is Dovecot's own input limit.
pub const MAX_RESPONSE_LINE: usize = 64 * 1_024;

const TAG_STARTTLS: &str = "bg0";
const TAG_CAPABILITY: &str = "bg1";
const TAG_ID: &str = "bg2";
const TAG_LOGIN: &str = "bg3";
const TAG_POST_LOGIN: &str = "bg4";

#[derive(Debug)]
enum State {
    /// Waiting for the greeting.
    Greeting,
    /// `bg0 STARTTLS` sent.
    StartTls,
    /// Waiting for the driver's handshake.
    TlsPending,
    /// `bg1 CAPABILITY` sent.
    Capability,
    /// `bg2 ID` sent.
    Id,
    /// `bg3 LOGIN` sent.
    Login,
    /// `bg3 AUTHENTICATE mech` sent without an initial response: waiting for `+`.
    AuthContinue {
        mechanism: &'static str,
        /// The base64 response to send then.
        response: Secret,
    },
    /// The SASL response was sent; `challenge` once the backend answered with one.
    Auth {
        mechanism: &'static str,
        challenge: Option<Vec<u8>>,
    },
    /// `bg4 CAPABILITY` sent after the login.
    PostLogin,
    /// Finished.
    Done,
}

/// One IMAP backend login. See the [module docs](self).
#[derive(Debug)]
pub struct ImapLogin {
    request: LoginRequest,
    framer: ResponseFramer,
    state: State,
    output: Outgoing,
    /// The capabilities before login (greeting or `bg1 CAPABILITY`).
    capabilities: Option<Vec<String>>,
    /// The capabilities the login's replies carried (or `bg4 CAPABILITY`'s).
    post_login: Option<Vec<String>>,
}

impl ImapLogin {
    /// A login as `request` says; the machine waits for the greeting. Refuses the
    /// `xclient` strategy, which is SMTP's.
    pub fn new(request: LoginRequest) -> Result<Self, LoginError> {
        if let Strategy::Xclient { .. } = request.strategy {
            return Err(LoginError::Unsupported {
                strategy: request.strategy.name(),
                protocol: "IMAP",
            });
        }
        Ok(Self {
            request,
            framer: ResponseFramer::new(MAX_RESPONSE_LINE),
            state: State::Greeting,
            output: Outgoing::default(),
            capabilities: None,
            post_login: None,
        })
    }

    fn stage(&self) -> Stage {
        match self.state {
            State::Greeting => Stage::Greeting,
            State::StartTls | State::TlsPending => Stage::StartTls,
            State::Capability => Stage::Capability,
            State::Id => Stage::Id,
            State::Login | State::AuthContinue { .. } | State::Auth { .. } | State::Done => {
                Stage::Login
            }
            State::PostLogin => Stage::PostLogin,
        }
    }

    fn has(&self, capability: &str) -> bool {
        self.capabilities
            .as_ref()
            .is_some_and(|caps| caps.iter().any(|c| c.eq_ignore_ascii_case(capability)))
    }

    fn fail(&mut self, error: LoginError) -> Event {
        self.state = State::Done;
        Event::Failed(error)
    }

    /// Appends a command; a value its grammar cannot carry is the backend's problem only in
    /// that it fails the login.
    fn write(
        &mut self,
        what: &'static str,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), WriteError>,
    ) -> Result<(), LoginError> {
        write(self.output.buffer())
            .map_err(|_| LoginError::protocol(self.stage(), ProtocolError::Unencodable(what)))
    }

    fn on_response(
        &mut self,
        response: Response,
        line: &[u8],
        input: &mut BytesMut,
    ) -> Result<Option<Event>, LoginError> {
        let stage = self.stage();
        let unexpected = || LoginError::protocol(stage, ProtocolError::Unexpected(loggable(line)));
        let bye = || LoginError::Unavailable {
            stage,
            reply: loggable(line),
        };
        // The capabilities of any response while the login command runs are the
        // post-login ones (Dovecot puts them in the tagged OK).
        if matches!(
            self.state,
            State::Login | State::Auth { .. } | State::PostLogin
        ) {
            if let Some(caps) = response.capabilities() {
                self.post_login = Some(caps.to_vec());
            }
        }
        if let State::Capability = self.state {
            if let Some(caps) = response.capabilities() {
                self.capabilities = Some(caps.to_vec());
            }
        }
        match (&mut self.state, response) {
            (
                State::Greeting,
                Response::Untagged {
                    status: Status::Ok,
                    code,
                    ..
                },
            ) => {
                if let Some(Code::Capability(caps)) = code {
                    self.capabilities = Some(caps);
                }
                if self.request.starttls {
                    self.write("STARTTLS", |out| write_starttls(out, TAG_STARTTLS))?;
                    self.state = State::StartTls;
                    return Ok(None);
                }
                self.ask_capabilities().map(|()| None)
            }
            (State::Greeting, Response::Bye { .. }) => Err(bye()),
            (State::Greeting, Response::PreAuth { .. }) => {
                Err(LoginError::protocol(stage, ProtocolError::PreAuth))
            }
            (State::Greeting, _) => Err(unexpected()),
            (_, Response::Bye { .. }) => Err(bye()),
            (State::StartTls, Response::Tagged { tag, status, .. }) if tag == TAG_STARTTLS => {
                if status != Status::Ok {
                    return Err(LoginError::Refused {
                        stage,
                        reply: loggable(line),
                    });
                }
                self.state = State::TlsPending;
                Ok(Some(Event::StartTls))
            }
            (State::Capability, Response::Tagged { tag, .. }) if tag == TAG_CAPABILITY => {
                self.send_id().map(|()| None)
            }
            (State::Id, Response::Tagged { tag, .. }) if tag == TAG_ID => {
                // A refused ID does not stop the login: the backend just logs the proxy's
                // address.
                self.login().map(|()| None)
            }
            (
                State::Login,
                Response::Tagged {
                    tag, status, code, ..
                },
            ) if tag == TAG_LOGIN => self.login_done(status, code, line, None, input),
            (State::AuthContinue { .. }, Response::Continue(_)) => {
                let State::AuthContinue {
                    mechanism,
                    response,
                } = std::mem::replace(&mut self.state, State::Done)
                else {
                    return Err(unexpected());
                };
                self.output.extend_secret(&response);
                self.output.buffer().extend_from_slice(b"\r\n");
                self.state = State::Auth {
                    mechanism,
                    challenge: None,
                };
                Ok(None)
            }
            (
                State::AuthContinue { .. },
                Response::Tagged {
                    tag, status, code, ..
                },
            ) if tag == TAG_LOGIN => self.login_done(status, code, line, None, input),
            (State::AuthContinue { .. }, _) => Err(unexpected()),
            (
                State::Auth {
                    mechanism,
                    challenge: challenge @ None,
                },
                Response::Continue(data),
            ) => {
                *challenge = Some(decode_challenge(&data));
                let dummy = dummy_response(mechanism);
                let out = self.output.buffer();
                out.extend_from_slice(dummy);
                out.extend_from_slice(b"\r\n");
                Ok(None)
            }
            (State::Auth { .. }, Response::Continue(_)) => {
                Err(LoginError::protocol(stage, ProtocolError::SecondChallenge))
            }
            (
                State::Auth { challenge, .. },
                Response::Tagged {
                    tag, status, code, ..
                },
            ) if tag == TAG_LOGIN => {
                let challenge = challenge.take();
                self.login_done(status, code, line, challenge, input)
            }
            (State::PostLogin, Response::Tagged { tag, .. }) if tag == TAG_POST_LOGIN => {
                Ok(Some(self.logged_in(input)))
            }
            (_, Response::Continue(_)) => Err(unexpected()),
            // Untagged data, and tagged replies to other commands: nothing to do.
            _ => Ok(None),
        }
    }

    /// `bg1 CAPABILITY` unless the capabilities are known.
    fn ask_capabilities(&mut self) -> Result<(), LoginError> {
        if self.capabilities.is_some() {
            return self.send_id();
        }
        self.write("CAPABILITY", |out| write_capability(out, TAG_CAPABILITY))?;
        self.state = State::Capability;
        Ok(())
    }

    /// `bg2 ID` with the client's address, where wanted and offered.
    fn send_id(&mut self) -> Result<(), LoginError> {
        if !(self.request.forward_client_address && self.has("ID")) {
            return self.login();
        }
        let client = self.request.client;
        let fields: Vec<(String, Option<String>)> = [
            ("x-originating-ip", client.ip().to_string()),
            ("x-originating-port", client.port().to_string()),
            ("x-session-ext-id", self.request.session_id.clone()),
        ]
        .into_iter()
        .map(|(field, value)| (field.to_owned(), Some(value)))
        .collect();
        let literal_plus = self.has("LITERAL+");
        self.state = State::Id;
        self.write("ID", |out| {
            write_id(out, TAG_ID, Some(&fields), literal_plus)
        })
    }

    /// `bg3 LOGIN` or `bg3 AUTHENTICATE`, as the strategy says.
    fn login(&mut self) -> Result<(), LoginError> {
        self.state = State::Login;
        let literal_plus = self.has("LITERAL+");
        let encode = |what| LoginError::protocol(Stage::Login, ProtocolError::Unencodable(what));
        match &self.request.strategy {
            Strategy::Master { user, master } => {
                let name = master.login_name(user);
                let password = master.password.expose_secret().as_bytes();
                write_login(
                    self.output.buffer(),
                    TAG_LOGIN,
                    name.as_bytes(),
                    password,
                    literal_plus,
                )
                .map_err(|_| encode("LOGIN name or master password"))
            }
            Strategy::PlainAuthzid { user, master } => {
                let response = plain_response(user, &master.name, &master.password)
                    .map_err(|_| encode("PLAIN response"))?;
                self.authenticate("PLAIN", response)
            }
            Strategy::Passthrough { user, credentials } => {
                let mechanism = credentials.mechanism.name();
                let response = client_response(user, credentials)
                    .map_err(|_| encode("client's SASL response"))?;
                self.authenticate(mechanism, response)
            }
            Strategy::Password(credentials) => {
                if self.has("AUTH=PLAIN") {
                    // Any octets, and the client's authorization identity.
                    let authzid = credentials.authzid.as_deref().unwrap_or("");
                    let response =
                        plain_response(authzid, &credentials.user, &credentials.password)
                            .map_err(|_| LoginError::PasswordRefused)?;
                    return self.authenticate("PLAIN", response);
                }
                if credentials.authzid.is_some() || self.has("LOGINDISABLED") {
                    return Err(LoginError::protocol(
                        Stage::Login,
                        ProtocolError::NoPasswordLogin,
                    ));
                }
                // Without LITERAL+, 8-bit or CR/LF passwords cannot be sent with LOGIN.
                write_login(
                    self.output.buffer(),
                    TAG_LOGIN,
                    credentials.user.as_bytes(),
                    credentials.password.expose_secret().as_bytes(),
                    literal_plus,
                )
                .map_err(|_| LoginError::PasswordRefused)
            }
            Strategy::Xclient { .. } => Err(LoginError::Unsupported {
                strategy: "xclient",
                protocol: "IMAP",
            }),
        }
    }

    /// `bg3 AUTHENTICATE mechanism`, with the response as SASL-IR when offered, else after
    /// the `+`.
    fn authenticate(
        &mut self,
        mechanism: &'static str,
        response: Secret,
    ) -> Result<(), LoginError> {
        let encoded = encode_secret(&response);
        if self.has("SASL-IR") {
            let initial = InitialResponse::Base64(Bytes::copy_from_slice(encoded.expose_secret()));
            self.write("AUTHENTICATE", |out| {
                write_authenticate(out, TAG_LOGIN, mechanism, Some(&initial))
            })?;
            self.state = State::Auth {
                mechanism,
                challenge: None,
            };
            return Ok(());
        }
        self.write("AUTHENTICATE", |out| {
            write_authenticate(out, TAG_LOGIN, mechanism, None)
        })?;
        self.state = State::AuthContinue {
            mechanism,
            response: encoded,
        };
        Ok(())
    }

    /// The tagged reply to `bg3`: a login, or whose fault it was that there is none.
    fn login_done(
        &mut self,
        status: Status,
        code: Option<Code>,
        line: &[u8],
        challenge: Option<Vec<u8>>,
        input: &mut BytesMut,
    ) -> Result<Option<Event>, LoginError> {
        let unavailable = matches!(code, Some(Code::Unavailable));
        let reply = loggable(line);
        let ok = status == Status::Ok;
        let refusal = |reply| {
            if unavailable {
                LoginError::Unavailable {
                    stage: Stage::Login,
                    reply,
                }
            } else {
                LoginError::Refused {
                    stage: Stage::Login,
                    reply,
                }
            }
        };
        match &self.request.strategy {
            Strategy::Passthrough { .. } if !ok => Err(passthrough_refusal(
                challenge,
                unavailable,
                Stage::Login,
                reply,
            )),
            Strategy::Password(_) if challenge.is_some() => Err(LoginError::PasswordRefused),
            Strategy::Password(_) if !ok && unavailable => Err(refusal(reply)),
            Strategy::Password(_) if !ok => Err(LoginError::PasswordRefused),
            // PLAIN has no challenges: one means something is wrong.
            Strategy::Master { .. } | Strategy::PlainAuthzid { .. }
                if !ok || challenge.is_some() =>
            {
                Err(refusal(reply))
            }
            _ => self.finish(input),
        }
    }

    /// After the login: the post-login capabilities, asked for when the login's replies
    /// did not carry them.
    fn finish(&mut self, input: &mut BytesMut) -> Result<Option<Event>, LoginError> {
        if self.post_login.is_some() {
            return Ok(Some(self.logged_in(input)));
        }
        self.state = State::PostLogin;
        self.write("CAPABILITY", |out| write_capability(out, TAG_POST_LOGIN))?;
        Ok(None)
    }

    fn logged_in(&mut self, input: &mut BytesMut) -> Event {
        self.state = State::Done;
        let capabilities = self.post_login.take().unwrap_or_default();
        Event::LoggedIn(LoggedIn {
            capabilities: crate::imap::filter_backend_capabilities(&capabilities),
            leftover: input.split(),
        })
    }
}

impl BackendLogin for ImapLogin {
    fn output(&self) -> &[u8] {
        self.output.bytes()
    }

    fn output_written(&mut self) {
        self.output.written();
    }

    fn advance(&mut self, input: &mut BytesMut) -> Event {
        loop {
            match self.state {
                State::TlsPending => return Event::StartTls,
                State::Done => return Event::Failed(LoginError::Finished),
                _ => {}
            }
            let line = match self.framer.decode(input) {
                Ok(Some(line)) => line,
                Ok(None) => return Event::NeedInput,
                Err(FramingError::LineTooLong { .. }) => {
                    let error = LoginError::protocol(self.stage(), ProtocolError::TooLong);
                    return self.fail(error);
                }
                Err(other) => {
                    let error = ProtocolError::Malformed(other.to_string());
                    return self.fail(LoginError::protocol(self.stage(), error));
                }
            };
            let response = match parse_response(&line) {
                Ok(response) => response,
                Err(e) => {
                    let error = ProtocolError::Malformed(format!("{e}: {}", loggable(&line)));
                    return self.fail(LoginError::protocol(self.stage(), error));
                }
            };
            match self.on_response(response, &line, input) {
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
        // Nothing read before the handshake is trusted, nor what it said it could do.
        self.framer = ResponseFramer::new(MAX_RESPONSE_LINE);
        self.capabilities = None;
        self.state = State::Capability;
        if self
            .write("CAPABILITY", |out| write_capability(out, TAG_CAPABILITY))
            .is_err()
        {
            self.state = State::Done;
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
