//! Logging in to an SMTP submission backend: greeting, EHLO with the client's own name (so
//! the backend's view of the session matches the client's), optional STARTTLS and a fresh
//! EHLO, then AUTH PLAIN as the master user, with an authorization id, or the client's own
//! mechanism and token.

use bytes::BytesMut;
use codec::smtp::client::{
    write_auth, write_auth_response, write_ehlo, write_quit, write_starttls, write_xclient,
};
use codec::smtp::{ehlo_keywords, InitialResponse, ReplyFramer, ReplyLimits, Response};
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Backend, BackendError, LoggedIn, LoginRequest, PasswordRequest};
use crate::config::{BackendTls, LoginStrategy};
use crate::stream::BackendStream;

/// RFC 4954 lets servers refuse AUTH lines over 512 octets; longer responses go on their own
/// line after `334`.
const MAX_AUTH_LINE: usize = 512;

/// The name the proxy gives when the client gave none (password fallback before EHLO).
const DEFAULT_EHLO: &str = "bearergate";

struct Conversation {
    stream: BackendStream,
    buffer: BytesMut,
    framer: ReplyFramer,
    output: Vec<u8>,
}

impl Conversation {
    async fn reply(&mut self) -> Result<Response, BackendError> {
        loop {
            match self.framer.decode(&mut self.buffer) {
                Ok(Some(reply)) => return Ok(reply),
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

    async fn expect(&mut self, code: u16, what: &str) -> Result<Response, BackendError> {
        let reply = self.reply().await?;
        if reply.code == code {
            return Ok(reply);
        }
        let text = reply.lines.join(" ");
        if reply.class() == 4 || reply.class() == 5 {
            Err(BackendError::Refused(format!(
                "{what}: {} {text}",
                reply.code
            )))
        } else {
            Err(BackendError::Protocol(format!(
                "{what}: {} {text}",
                reply.code
            )))
        }
    }

    async fn ehlo(&mut self, name: &str) -> Result<Vec<(String, String)>, BackendError> {
        write_ehlo(&mut self.output, name)
            .map_err(|e| BackendError::Protocol(format!("EHLO: {e:?}")))?;
        self.send().await?;
        let reply = self.expect(250, "EHLO").await?;
        Ok(ehlo_keywords(&reply.lines))
    }
}

/// Connects, reads the EHLO reply (learning the backend's extensions, so that the proxy's
/// own EHLO offers CHUNKING, SMTPUTF8, ... before any client has logged in) and quits.
pub async fn probe(backend: &Backend) -> Result<(), BackendError> {
    let (mut conversation, _) = open(backend, None).await?;
    write_quit(&mut conversation.output);
    conversation.send().await
}

/// Greeting, EHLO and STARTTLS: what comes before any login.
async fn open(
    backend: &Backend,
    client_name: Option<&str>,
) -> Result<(Conversation, Vec<(String, String)>), BackendError> {
    let stream = backend.connect().await?;
    let mut conversation = Conversation {
        stream,
        buffer: BytesMut::with_capacity(1_024),
        framer: ReplyFramer::new(ReplyLimits::default()),
        output: Vec::with_capacity(256),
    };
    conversation.expect(220, "greeting").await?;
    let name = client_name.unwrap_or(DEFAULT_EHLO);
    let mut keywords = conversation.ehlo(name).await?;
    if backend.tls_mode == BackendTls::Starttls {
        let Some(tls) = &backend.tls else {
            return Err(BackendError::Protocol(
                "STARTTLS without TLS settings".into(),
            ));
        };
        write_starttls(&mut conversation.output);
        conversation.send().await?;
        conversation.expect(220, "STARTTLS").await?;
        // Nothing the backend sent in clear text after its 220 is trusted (RFC 3207).
        conversation.buffer.clear();
        conversation.framer = ReplyFramer::new(ReplyLimits::default());
        let BackendStream::Plain(tcp) = conversation.stream else {
            return Err(BackendError::Protocol(
                "STARTTLS on a TLS connection".into(),
            ));
        };
        conversation.stream = backend.start_tls(tcp, tls).await?;
        keywords = conversation.ehlo(name).await?;
    }
    backend.learn_smtp_extensions(&keywords);
    Ok((conversation, keywords))
}

/// Password fallback: AUTH PLAIN with the client's own user name and password (and its
/// authorization identity), so that the backend checks them. Only `235` is a login; `535`
/// and other permanent failures are the password's fault, `4xx` the backend's.
pub async fn password_login(
    backend: &Backend,
    request: PasswordRequest<'_>,
) -> Result<LoggedIn, BackendError> {
    let credentials = request.credentials;
    let (mut conversation, keywords) = open(backend, request.client_name).await?;
    let keywords = forward_client_address(
        backend,
        &mut conversation,
        keywords,
        request.client,
        request.client_name,
    )
    .await?;
    let response = sasl::plain_client_response(
        credentials.authzid.as_deref().unwrap_or(""),
        &credentials.user,
        credentials.password.expose_secret(),
    )
    .map_err(|_| BackendError::PasswordRefused)?;
    let (reply, _) = conversation.auth(&keywords, "PLAIN", &response).await?;
    match reply.class() {
        2 if reply.code == 235 => conversation.hand_over(request.client_name).await,
        5 => Err(BackendError::PasswordRefused),
        _ => Err(BackendError::Refused(format!(
            "AUTH: {} {}",
            reply.code,
            reply.lines.join(" ")
        ))),
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

/// Tells a backend that trusts the proxy with XCLIENT (Dovecot submission with the proxy in
/// `login_trusted_networks`, Postfix with it in `smtpd_authorized_xclient_hosts`) the
/// client's address and port, so that its logs, rate limits and authentication penalties
/// apply to the client and not to the proxy, as IMAP's `ID` does. Nothing else: the login
/// stays the backend's to check. Returns the EHLO keywords of the session that follows.
async fn forward_client_address(
    backend: &Backend,
    conversation: &mut Conversation,
    keywords: Vec<(String, String)>,
    client: std::net::SocketAddr,
    client_name: Option<&str>,
) -> Result<Vec<(String, String)>, BackendError> {
    let Some((_, advertised)) = keywords.iter().find(|(k, _)| k == "XCLIENT") else {
        return Ok(keywords);
    };
    if !backend.forward_client_address {
        return Ok(keywords);
    }
    let address = client.ip().to_string();
    let port = client.port().to_string();
    let attributes = offered_attributes(advertised, &[("ADDR", &address), ("PORT", &port)]);
    if !attributes.iter().any(|(attribute, _)| *attribute == "ADDR") {
        return Ok(keywords);
    }
    conversation.xclient(&attributes).await?;
    conversation.ehlo(client_name.unwrap_or(DEFAULT_EHLO)).await
}

impl Conversation {
    /// `XCLIENT` with these attributes; the backend answers each command with a new `220`
    /// greeting, after which it wants a fresh EHLO.
    async fn xclient(&mut self, attributes: &[(&str, &str)]) -> Result<(), BackendError> {
        let commands = write_xclient(&mut self.output, attributes)
            .map_err(|e| BackendError::Protocol(format!("XCLIENT: {e:?}")))?;
        self.send().await?;
        for _ in 0..commands {
            self.expect(220, "XCLIENT").await?;
        }
        Ok(())
    }

    /// The last step before the client gets the connection: an EHLO (with the client's own
    /// name) shows what the backend now grants *this* connection. XCLIENT or XFORWARD there
    /// means the client could rewrite its identity or address once it has the connection —
    /// Postfix re-checks `smtpd_authorized_xclient_hosts` against the address the last
    /// XCLIENT set, so a client whose own address is listed inherits the proxy's right — and
    /// the login is refused. Dovecot drops XCLIENT after login; Postfix without the proxy in
    /// those lists never offers it.
    async fn hand_over(mut self, client_name: Option<&str>) -> Result<LoggedIn, BackendError> {
        let keywords = self.ehlo(client_name.unwrap_or(DEFAULT_EHLO)).await?;
        if let Some((privilege, _)) = keywords
            .iter()
            .find(|(keyword, _)| keyword == "XCLIENT" || keyword == "XFORWARD")
        {
            return Err(BackendError::Unsafe(format!(
                "after login the backend still offers {privilege} to this connection, so the \
                 client could change the login or its address; remove the client's network from \
                 smtpd_authorized_xclient_hosts / smtpd_authorized_xforward_hosts (only the \
                 proxy's address belongs there)"
            )));
        }
        Ok(LoggedIn {
            stream: self.stream,
            capabilities: Vec::new(),
            leftover: self.buffer,
        })
    }

    /// `AUTH mechanism` with `response` (initial response when short enough, else after
    /// the `334`). A `334` after the response is an error challenge: it is answered with
    /// the mechanism's dummy and returned with the final reply.
    async fn auth(
        &mut self,
        keywords: &[(String, String)],
        mechanism: &str,
        response: &[u8],
    ) -> Result<(Response, Option<Vec<u8>>), BackendError> {
        let offered = keywords
            .iter()
            .find(|(k, _)| k == "AUTH")
            .map(|(_, mechanisms)| {
                mechanisms
                    .split_whitespace()
                    .any(|m| m.eq_ignore_ascii_case(mechanism))
            })
            .unwrap_or(false);
        if !offered {
            return Err(BackendError::Protocol(format!(
                "backend does not offer AUTH {mechanism}"
            )));
        }
        let encoded = sasl::encode_base64(response);
        let write_error = |e| BackendError::Protocol(format!("AUTH: {e:?}"));
        if encoded.len() + mechanism.len() + 8 <= MAX_AUTH_LINE {
            let initial = InitialResponse::Base64(encoded.into_bytes().into());
            write_auth(&mut self.output, mechanism, Some(&initial)).map_err(write_error)?;
            self.send().await?;
        } else {
            write_auth(&mut self.output, mechanism, None).map_err(write_error)?;
            self.send().await?;
            self.expect(334, "AUTH").await?;
            write_auth_response(&mut self.output, encoded.as_bytes()).map_err(write_error)?;
            self.send().await?;
        }
        let reply = self.reply().await?;
        if reply.code != 334 {
            return Ok((reply, None));
        }
        // The backend refused with a challenge: answer with the mechanism's dummy and keep
        // the challenge for the client.
        let data = reply.lines.first().map(String::as_str).unwrap_or("");
        let challenge = sasl::decode_base64(data.as_bytes()).unwrap_or_default();
        let dummy: &[u8] = if mechanism == "OAUTHBEARER" {
            b"AQ==\r\n"
        } else {
            b"\r\n"
        };
        self.output.extend_from_slice(dummy);
        self.send().await?;
        Ok((self.reply().await?, Some(challenge)))
    }
}

/// Connects and logs in as `request.user`.
pub async fn login(backend: &Backend, request: LoginRequest<'_>) -> Result<LoggedIn, BackendError> {
    let (mut conversation, keywords) = open(backend, request.client_name).await?;
    if backend.login == LoginStrategy::Xclient {
        return xclient(conversation, &keywords, request).await;
    }
    let keywords = forward_client_address(
        backend,
        &mut conversation,
        keywords,
        request.client,
        request.client_name,
    )
    .await?;
    let (mechanism, response) = credentials(backend, request)?;
    let (reply, challenge) = conversation.auth(&keywords, mechanism, &response).await?;
    match reply.code {
        235 => conversation.hand_over(request.client_name).await,
        code if backend.login == LoginStrategy::Passthrough
            && (code == 535 || challenge.is_some()) =>
        {
            Err(BackendError::TokenRefused { challenge })
        }
        code => Err(BackendError::Refused(format!(
            "AUTH: {code} {}",
            reply.lines.join(" ")
        ))),
    }
}

/// Postfix XCLIENT: the proxy vouches for the user and the client's address (the backend
/// must list the proxy in `smtpd_authorized_xclient_hosts`). Only the attributes the backend
/// advertises are sent; then the backend greets anew and gets a fresh EHLO.
async fn xclient(
    mut conversation: Conversation,
    keywords: &[(String, String)],
    request: LoginRequest<'_>,
) -> Result<LoggedIn, BackendError> {
    let Some((_, advertised)) = keywords.iter().find(|(k, _)| k == "XCLIENT") else {
        return Err(BackendError::Protocol(
            "backend does not offer XCLIENT (smtpd_authorized_xclient_hosts)".into(),
        ));
    };
    let name = request.client_name.unwrap_or(DEFAULT_EHLO);
    let address = request.client.ip().to_string();
    let port = request.client.port().to_string();
    let wanted = [
        ("LOGIN", request.user),
        ("ADDR", address.as_str()),
        ("PORT", port.as_str()),
        // The proxy does no reverse lookups; Postfix's own word for "not known".
        ("NAME", "[UNAVAILABLE]"),
        ("HELO", name),
        ("PROTO", "ESMTP"),
    ];
    let attributes = offered_attributes(advertised, &wanted);
    if !attributes
        .iter()
        .any(|(attribute, _)| *attribute == "LOGIN")
    {
        return Err(BackendError::Protocol(
            "backend's XCLIENT does not take LOGIN".into(),
        ));
    }
    conversation.xclient(&attributes).await?;
    conversation.hand_over(request.client_name).await
}

/// The mechanism and unencoded response for the backend's AUTH.
fn credentials(
    backend: &Backend,
    request: LoginRequest<'_>,
) -> Result<(&'static str, Vec<u8>), BackendError> {
    let encode_error =
        |e: sasl::SaslError| BackendError::Protocol(format!("cannot encode AUTH: {e}"));
    let password = backend.master_password.expose_secret();
    match backend.login {
        LoginStrategy::Master => {
            let name = backend.master_login_name(request.user);
            let response =
                sasl::plain_client_response("", &name, password).map_err(encode_error)?;
            Ok(("PLAIN", response))
        }
        LoginStrategy::PlainAuthzid => {
            let response =
                sasl::plain_client_response(request.user, &backend.master_user, password)
                    .map_err(encode_error)?;
            Ok(("PLAIN", response))
        }
        LoginStrategy::Passthrough => Ok((
            request.credentials.mechanism.name(),
            super::client_response(request)?,
        )),
        LoginStrategy::Xclient => Err(BackendError::Protocol(
            "xclient is not available in this version".into(),
        )),
    }
}
