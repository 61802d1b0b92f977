//! Logging in to an IMAP backend for a user whose token was accepted: greeting, optional
//! STARTTLS, `ID` with the client's address, then LOGIN as the master user or AUTHENTICATE
//! PLAIN with an authorization id. Returns the backend's post-login capabilities for the
//! client's tagged OK.

use std::net::SocketAddr;

use bytes::BytesMut;
use codec::imap::client::{
    write_authenticate, write_capability, write_id, write_login, write_starttls,
};
use codec::imap::response::{parse_response, Response, ResponseFramer, Status};
use codec::imap::InitialResponse;
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Backend, BackendError, LoggedIn, LoginRequest, PasswordRequest};
use crate::config::{BackendTls, LoginStrategy};
use crate::stream::BackendStream;

/// Longest backend response line accepted during login. Capability lists of big servers
/// run to about 1 KiB; 64 KiB is Dovecot's own input limit.
const MAX_RESPONSE_LINE: usize = 64 * 1_024;

/// Reads response lines from the backend.
struct Conversation {
    stream: BackendStream,
    buffer: BytesMut,
    framer: ResponseFramer,
    output: Vec<u8>,
}

impl Conversation {
    fn new(stream: BackendStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(1_024),
            framer: ResponseFramer::new(MAX_RESPONSE_LINE),
            output: Vec::with_capacity(256),
        }
    }

    async fn read_response(&mut self) -> Result<Response, BackendError> {
        loop {
            match self.framer.decode(&mut self.buffer) {
                Ok(Some(line)) => {
                    return parse_response(&line)
                        .map_err(|e| BackendError::Protocol(e.to_string()));
                }
                Ok(None) => {}
                Err(e) => return Err(BackendError::Protocol(e.to_string())),
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(BackendError::Closed);
            }
        }
    }

    async fn send(&mut self) -> Result<(), BackendError> {
        self.stream.write_all(&self.output).await?;
        self.stream.flush().await?;
        self.output.clear();
        Ok(())
    }

    /// Reads until the tagged reply for `tag`; collects capabilities seen on the way.
    async fn until_tagged(
        &mut self,
        tag: &str,
        capabilities: &mut Option<Vec<String>>,
    ) -> Result<(Status, String), BackendError> {
        let (status, _, text) = self.until_tagged_code(tag, capabilities).await?;
        Ok((status, text))
    }

    /// [`Conversation::until_tagged`], with the reply's response code.
    async fn until_tagged_code(
        &mut self,
        tag: &str,
        capabilities: &mut Option<Vec<String>>,
    ) -> Result<(Status, Option<codec::imap::response::Code>, String), BackendError> {
        loop {
            let response = self.read_response().await?;
            if let Some(caps) = response.capabilities() {
                *capabilities = Some(caps.to_vec());
            }
            match response {
                Response::Tagged {
                    tag: got,
                    status,
                    code,
                    text,
                } if got == tag => return Ok((status, code, text)),
                Response::Bye { text, .. } => {
                    return Err(BackendError::Refused(format!("BYE {text}")))
                }
                Response::Continue(_) => {
                    return Err(BackendError::Protocol(format!(
                        "unexpected continuation for {tag}"
                    )))
                }
                _ => {}
            }
        }
    }
}

impl Conversation {
    /// `bg3 AUTHENTICATE mech`, with the response as SASL-IR or after the `+`. A challenge
    /// after the response means the backend refused: it is answered with the mechanism's
    /// dummy (RFC 7628: `AQ==`; XOAUTH2: an empty line) and returned for the client.
    async fn authenticate(
        &mut self,
        mechanism: &str,
        response: &[u8],
        sasl_ir: bool,
        capabilities: &mut Option<Vec<String>>,
    ) -> Result<(Status, bool, String, Option<Vec<u8>>), BackendError> {
        let encoded = sasl::encode_base64(response);
        if sasl_ir {
            let initial = InitialResponse::Base64(encoded.into_bytes().into());
            write_authenticate(&mut self.output, "bg3", mechanism, Some(&initial))
                .map_err(write_error)?;
            self.send().await?;
        } else {
            write_authenticate(&mut self.output, "bg3", mechanism, None).map_err(write_error)?;
            self.send().await?;
            match self.read_response().await? {
                Response::Continue(_) => {}
                Response::Tagged {
                    status, code, text, ..
                } => return Ok((status, is_unavailable(&code), text, None)),
                other => {
                    return Err(BackendError::Protocol(format!(
                        "expected continuation, got {other:?}"
                    )))
                }
            }
            self.output.extend_from_slice(encoded.as_bytes());
            self.output.extend_from_slice(b"\r\n");
            self.send().await?;
        }
        let mut challenge = None;
        loop {
            let response = self.read_response().await?;
            if let Some(caps) = response.capabilities() {
                *capabilities = Some(caps.to_vec());
            }
            match response {
                Response::Continue(data) if challenge.is_none() => {
                    let decoded = sasl::decode_base64(&data).unwrap_or_default();
                    challenge = Some(decoded);
                    let dummy: &[u8] = if mechanism == "OAUTHBEARER" {
                        b"AQ==\r\n"
                    } else {
                        b"\r\n"
                    };
                    self.output.extend_from_slice(dummy);
                    self.send().await?;
                }
                Response::Tagged {
                    tag,
                    status,
                    code,
                    text,
                } if tag == "bg3" => return Ok((status, is_unavailable(&code), text, challenge)),
                Response::Bye { text, .. } => {
                    return Err(BackendError::Refused(format!("BYE {text}")))
                }
                Response::Continue(_) => {
                    return Err(BackendError::Protocol("second challenge".into()))
                }
                _ => {}
            }
        }
    }
}

fn is_unavailable(code: &Option<codec::imap::response::Code>) -> bool {
    matches!(code, Some(codec::imap::response::Code::Unavailable))
}

fn write_error(e: codec::imap::WriteError) -> BackendError {
    BackendError::Protocol(format!("cannot encode command: {e}"))
}

fn has(capabilities: &Option<Vec<String>>, name: &str) -> bool {
    capabilities
        .as_ref()
        .is_some_and(|caps| caps.iter().any(|c| c.eq_ignore_ascii_case(name)))
}

/// Connects and logs in as `user`.
pub async fn login(backend: &Backend, request: LoginRequest<'_>) -> Result<LoggedIn, BackendError> {
    let user = request.user;
    let (mut conversation, capabilities) =
        open(backend, request.client, request.session_id).await?;
    let literal_plus = has(&capabilities, "LITERAL+");
    let mut post_login = None;
    match backend.login {
        LoginStrategy::Master => {
            let name = backend.master_login_name(user);
            write_login(
                &mut conversation.output,
                "bg3",
                name.as_bytes(),
                backend.master_password.expose_secret().as_bytes(),
                literal_plus,
            )
            .map_err(write_error)?;
            conversation.send().await?;
            let (status, text) = conversation.until_tagged("bg3", &mut post_login).await?;
            if status != Status::Ok {
                return Err(BackendError::Refused(text));
            }
        }
        LoginStrategy::PlainAuthzid => {
            let response = sasl::plain_client_response(
                user,
                &backend.master_user,
                backend.master_password.expose_secret(),
            )
            .map_err(|e| BackendError::Protocol(format!("cannot encode PLAIN: {e}")))?;
            let sasl_ir = has(&capabilities, "SASL-IR");
            let (status, _, text, challenge) = conversation
                .authenticate("PLAIN", &response, sasl_ir, &mut post_login)
                .await?;
            if status != Status::Ok || challenge.is_some() {
                return Err(BackendError::Refused(text));
            }
        }
        LoginStrategy::Passthrough => {
            let response = super::client_response(request)?;
            let mechanism = request.credentials.mechanism.name();
            let sasl_ir = has(&capabilities, "SASL-IR");
            let (status, unavailable, text, challenge) = conversation
                .authenticate(mechanism, &response, sasl_ir, &mut post_login)
                .await?;
            if status != Status::Ok {
                return Err(super::passthrough_refusal(challenge, unavailable, text));
            }
        }
        LoginStrategy::Xclient => {
            return Err(BackendError::Protocol(
                "login strategy not available for IMAP".into(),
            ))
        }
    }
    finish(conversation, post_login).await
}

/// Password fallback: logs in with the client's own user name and password, so that the
/// backend checks them. AUTHENTICATE PLAIN where offered (any octets, and the client's
/// authorization identity), else LOGIN. Only a tagged OK is a login; a NO is the password's
/// fault unless it says `[UNAVAILABLE]`.
pub async fn password_login(
    backend: &Backend,
    request: PasswordRequest<'_>,
) -> Result<LoggedIn, BackendError> {
    let credentials = request.credentials;
    let (mut conversation, capabilities) =
        open(backend, request.client, request.session_id).await?;
    let password = credentials.password.expose_secret();
    let mut post_login = None;
    let (status, unavailable) = if has(&capabilities, "AUTH=PLAIN") {
        let authzid = credentials.authzid.as_deref().unwrap_or("");
        let response = sasl::plain_client_response(authzid, &credentials.user, password)
            .map_err(|_| BackendError::PasswordRefused)?;
        let sasl_ir = has(&capabilities, "SASL-IR");
        let (status, unavailable, _, challenge) = conversation
            .authenticate("PLAIN", &response, sasl_ir, &mut post_login)
            .await?;
        if challenge.is_some() {
            return Err(BackendError::PasswordRefused);
        }
        (status, unavailable)
    } else {
        if credentials.authzid.is_some() || has(&capabilities, "LOGINDISABLED") {
            return Err(BackendError::Protocol(
                "the backend offers neither AUTH=PLAIN nor LOGIN for this password".into(),
            ));
        }
        write_login(
            &mut conversation.output,
            "bg3",
            credentials.user.as_bytes(),
            password.as_bytes(),
            has(&capabilities, "LITERAL+"),
        )
        // Without LITERAL+, 8-bit or CR/LF passwords cannot be sent with LOGIN.
        .map_err(|_| BackendError::PasswordRefused)?;
        conversation.send().await?;
        let (status, code, _) = conversation
            .until_tagged_code("bg3", &mut post_login)
            .await?;
        (status, is_unavailable(&code))
    };
    match status {
        Status::Ok => finish(conversation, post_login).await,
        _ if unavailable => Err(BackendError::Refused(
            "the backend is unavailable for this login".into(),
        )),
        _ => Err(BackendError::PasswordRefused),
    }
}

/// After a login: the post-login capabilities (asked for when the tagged OK did not carry
/// them), filtered for the client.
async fn finish(
    mut conversation: Conversation,
    mut post_login: Option<Vec<String>>,
) -> Result<LoggedIn, BackendError> {
    if post_login.is_none() {
        write_capability(&mut conversation.output, "bg4").map_err(write_error)?;
        conversation.send().await?;
        conversation.until_tagged("bg4", &mut post_login).await?;
    }
    let capabilities = session::imap::filter_backend_capabilities(&post_login.unwrap_or_default());
    Ok(LoggedIn {
        stream: conversation.stream,
        capabilities,
        leftover: conversation.buffer,
    })
}

/// Greeting, STARTTLS, capabilities and the client's address: what comes before any login.
async fn open(
    backend: &Backend,
    client: SocketAddr,
    session_id: &str,
) -> Result<(Conversation, Option<Vec<String>>), BackendError> {
    let stream = backend.connect().await?;
    let mut conversation = Conversation::new(stream);
    let mut capabilities = None;

    match conversation.read_response().await? {
        Response::Untagged {
            status: Status::Ok,
            code,
            ..
        } => {
            if let Some(codec::imap::response::Code::Capability(caps)) = code {
                capabilities = Some(caps);
            }
        }
        Response::Bye { text, .. } => {
            return Err(BackendError::Refused(format!("greeting BYE {text}")))
        }
        Response::PreAuth { .. } => {
            return Err(BackendError::Protocol(
                "backend greets with PREAUTH: it cannot log in as the user".into(),
            ))
        }
        other => {
            return Err(BackendError::Protocol(format!(
                "unexpected greeting {other:?}"
            )))
        }
    }

    if backend.tls_mode == BackendTls::Starttls {
        let Some(tls) = &backend.tls else {
            return Err(BackendError::Protocol(
                "STARTTLS without TLS settings".into(),
            ));
        };
        write_starttls(&mut conversation.output, "bg0").map_err(write_error)?;
        conversation.send().await?;
        let (status, text) = conversation.until_tagged("bg0", &mut None).await?;
        if status != Status::Ok {
            return Err(BackendError::Refused(format!("STARTTLS {text}")));
        }
        // Whatever followed the STARTTLS reply in clear text is not trusted.
        conversation.buffer.clear();
        conversation.framer = ResponseFramer::new(MAX_RESPONSE_LINE);
        let BackendStream::Plain(tcp) = conversation.stream else {
            return Err(BackendError::Protocol(
                "STARTTLS on a TLS connection".into(),
            ));
        };
        conversation.stream = backend.start_tls(tcp, tls).await?;
        capabilities = None;
    }

    if capabilities.is_none() {
        write_capability(&mut conversation.output, "bg1").map_err(write_error)?;
        conversation.send().await?;
        conversation.until_tagged("bg1", &mut capabilities).await?;
    }
    let literal_plus = has(&capabilities, "LITERAL+");

    if backend.forward_client_address && has(&capabilities, "ID") {
        let fields = [
            ("x-originating-ip", client.ip().to_string()),
            ("x-originating-port", client.port().to_string()),
            ("x-session-ext-id", session_id.to_owned()),
        ];
        let fields: Vec<(String, Option<String>)> = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Some(v)))
            .collect();
        write_id(&mut conversation.output, "bg2", Some(&fields), literal_plus)
            .map_err(write_error)?;
        conversation.send().await?;
        // A refused ID does not stop the login: the backend just logs the proxy's address.
        conversation.until_tagged("bg2", &mut None).await?;
    }
    Ok((conversation, capabilities))
}
