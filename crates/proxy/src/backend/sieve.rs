//! Logging in to a ManageSieve backend (RFC 5804): capability block, optional STARTTLS (the
//! server re-sends its capabilities), then AUTHENTICATE "PLAIN" as the master user or with an
//! authorization id, or the client's own mechanism and token.

use bytes::BytesMut;
use codec::sieve::client::{write_authenticate, write_sasl_response, write_starttls};
use codec::sieve::{
    parse_auth_response, parse_response, Capability, Framer, Limits, Response, Status,
};
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Backend, BackendError, LoggedIn, LoginRequest};
use crate::config::{BackendTls, LoginStrategy};
use crate::stream::BackendStream;

struct Conversation {
    stream: BackendStream,
    buffer: BytesMut,
    framer: Framer,
    output: Vec<u8>,
}

/// Most lines in a capability block. RFC 5804 defines nine capabilities and Pigeonhole
/// sends six or seven; the proxy keeps the block for every new session, so it is bounded.
const MAX_CAPABILITIES: usize = 64;

/// Pre-login backend responses: capability lines of a few hundred octets, challenges up to a
/// base64 JSON object.
fn limits() -> Limits {
    Limits {
        max_line: 64 * 1_024,
        max_literal: 64 * 1_024,
        max_command: 128 * 1_024,
    }
}

impl Conversation {
    async fn line(&mut self) -> Result<bytes::Bytes, BackendError> {
        loop {
            match self.framer.decode(&mut self.buffer) {
                Ok(Some(line)) => return Ok(line),
                Ok(None) => {}
                Err(e) => return Err(BackendError::Protocol(format!("{e:?}"))),
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

    /// Reads a capability block up to its `OK`; returns its lines.
    async fn capabilities(&mut self) -> Result<Vec<Capability>, BackendError> {
        let mut block = Vec::new();
        loop {
            let line = self.line().await?;
            match parse_response(&line).map_err(|e| BackendError::Protocol(format!("{e:?}")))? {
                Response::Capability(_) if block.len() == MAX_CAPABILITIES => {
                    return Err(BackendError::Protocol(format!(
                        "more than {MAX_CAPABILITIES} capabilities"
                    )))
                }
                Response::Capability(capability) => block.push(capability),
                Response::Completion(done) if done.status == Status::Ok => return Ok(block),
                Response::Completion(done) => {
                    return Err(BackendError::Refused(done.text.unwrap_or_default()))
                }
                Response::Challenge(_) => {
                    return Err(BackendError::Protocol(
                        "challenge in a capability block".into(),
                    ))
                }
            }
        }
    }
}

/// Greeting and STARTTLS: what comes before any login.
async fn open(backend: &Backend) -> Result<Conversation, BackendError> {
    let stream = backend.connect().await?;
    let mut conversation = Conversation {
        stream,
        buffer: BytesMut::with_capacity(1_024),
        framer: Framer::new(limits()),
        output: Vec::with_capacity(256),
    };
    let mut block = conversation.capabilities().await?;
    if backend.tls_mode == BackendTls::Starttls {
        let Some(tls) = &backend.tls else {
            return Err(BackendError::Protocol(
                "STARTTLS without TLS settings".into(),
            ));
        };
        write_starttls(&mut conversation.output);
        conversation.send().await?;
        let line = conversation.line().await?;
        match parse_response(&line).map_err(|e| BackendError::Protocol(format!("{e:?}")))? {
            Response::Completion(done) if done.status == Status::Ok => {}
            other => return Err(BackendError::Refused(format!("STARTTLS: {other:?}"))),
        }
        conversation.buffer.clear();
        conversation.framer = Framer::new(limits());
        let BackendStream::Plain(tcp) = conversation.stream else {
            return Err(BackendError::Protocol(
                "STARTTLS on a TLS connection".into(),
            ));
        };
        conversation.stream = backend.start_tls(tcp, tls).await?;
        // RFC 5804 section 2.2: the server sends its capabilities again after TLS.
        block = conversation.capabilities().await?;
    }
    backend.learn_sieve_capabilities(block);
    Ok(conversation)
}

/// Connects and reads the capabilities, so that the proxy can advertise the backend's own
/// (its Sieve extensions, `NOTIFY`, ...) before any client has logged in.
pub async fn probe(backend: &Backend) -> Result<(), BackendError> {
    let mut conversation = open(backend).await?;
    conversation.output.extend_from_slice(b"LOGOUT\r\n");
    conversation.send().await
}

/// Connects and logs in as `request.user`.
pub async fn login(backend: &Backend, request: LoginRequest<'_>) -> Result<LoggedIn, BackendError> {
    let mut conversation = open(backend).await?;
    let encode_error =
        |e: sasl::SaslError| BackendError::Protocol(format!("cannot encode AUTHENTICATE: {e}"));
    let password = backend.master_password.expose_secret();
    let (mechanism, response) = match backend.login {
        LoginStrategy::Master => (
            "PLAIN",
            sasl::plain_client_response("", &backend.master_login_name(request.user), password)
                .map_err(encode_error)?,
        ),
        LoginStrategy::PlainAuthzid => (
            "PLAIN",
            sasl::plain_client_response(request.user, &backend.master_user, password)
                .map_err(encode_error)?,
        ),
        LoginStrategy::Passthrough => (
            request.credentials.mechanism.name(),
            super::client_response(request)?,
        ),
        LoginStrategy::Xclient => {
            return Err(BackendError::Protocol(
                "xclient is an SMTP login strategy".into(),
            ))
        }
    };
    let encoded = sasl::encode_base64(&response);
    write_authenticate(
        &mut conversation.output,
        mechanism,
        Some(encoded.as_bytes()),
    )
    .map_err(|e| BackendError::Protocol(format!("AUTHENTICATE: {e:?}")))?;
    conversation.send().await?;
    let mut challenge = None;
    loop {
        let line = conversation.line().await?;
        match parse_auth_response(&line).map_err(|e| BackendError::Protocol(format!("{e:?}")))? {
            Response::Challenge(data) if challenge.is_none() => {
                // The backend refused the token with a challenge: answer with the
                // mechanism's dummy and keep the challenge for the client.
                challenge = Some(sasl::decode_base64(&data).unwrap_or_default());
                let dummy: &[u8] = if mechanism == "OAUTHBEARER" {
                    b"AQ=="
                } else {
                    b""
                };
                write_sasl_response(&mut conversation.output, dummy)
                    .map_err(|e| BackendError::Protocol(format!("{e:?}")))?;
                conversation.send().await?;
            }
            Response::Completion(done) if done.status == Status::Ok => {
                return Ok(LoggedIn {
                    stream: conversation.stream,
                    capabilities: Vec::new(),
                    leftover: conversation.buffer,
                })
            }
            Response::Completion(done) => {
                let unavailable = matches!(done.code, Some(codec::sieve::Code::TryLater));
                let text = done.text.unwrap_or_default();
                return Err(if backend.login == LoginStrategy::Passthrough {
                    super::passthrough_refusal(challenge, unavailable, text)
                } else {
                    BackendError::Refused(text)
                });
            }
            other => return Err(BackendError::Protocol(format!("unexpected {other:?}"))),
        }
    }
}
