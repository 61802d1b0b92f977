//! OAuth client requests: bearergate as the *client* of an authorization server, for the
//! `bearergate token` helper that gets tokens for mail programs which cannot run OAuth flows
//! themselves.
//!
//! [`OAuthClient`] sends the requests — the metadata document (RFC 8414 / OpenID
//! Discovery), device authorization (RFC 8628 §3.1), the token endpoint's grants (RFC 6749
//! §4.1.3, §6; RFC 8628 §3.4) and revocation (RFC 7009) — as form-encoded POSTs over the
//! same kind of HTTP client the validator uses (rustls, no redirects, bounded time and
//! size). The answers are read without I/O in [`answers`] and every failure is a
//! [`RequestError`] whose [`Fault`] says whether the grant is gone or the issuer merely could
//! not answer now. Nothing here logs or formats a token, code or secret.

mod answers;
mod error;
mod metadata;
mod pkce;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::redirect;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::introspection::{describe, form_urlencode};

pub use self::answers::{
    device_answer, json_answer, token_answer, DeviceAuthorization, TokenAnswer, MAX_TOKEN_LEN,
};
pub use self::error::{ErrorCode, Fault, Refusal, RequestError, MAX_DESCRIPTION_LEN};
pub use self::metadata::{
    check_transport, issuer_url, parse as parse_metadata, well_known_urls, ServerMetadata,
    OAUTH_WELL_KNOWN, OPENID_WELL_KNOWN,
};
pub use self::pkce::{is_verifier, state_from_random, AuthorizationRequest, Pkce};
pub use reqwest::Url;

/// Largest answer read from an issuer: the validator's limit for introspection answers
/// (64 KiB), far above any metadata document or token answer.
pub const MAX_ANSWER_LEN: usize = crate::MAX_RESPONSE_LEN;

/// Default time for one request, connecting included: a mail program waits for the token
/// command, and an issuer that has not answered in 20 s is down for all purposes.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The grant type of RFC 8628 §3.4.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How the HTTP client is built.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time for one request, connecting and reading the answer included.
    pub timeout: Duration,
    /// PEM certificates trusted beside the public roots (an issuer with its own CA or a
    /// self-signed certificate).
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_REQUEST_TIMEOUT,
            ca_file: None,
        }
    }
}

/// How we authenticate to the token, device and revocation endpoints.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// Our client id.
    pub client_id: String,
    /// Our secret, for a confidential client; `None` for a public one (RFC 6749 §2.1).
    pub secret: Option<SecretString>,
    /// How the secret is sent.
    pub method: SecretMethod,
}

/// RFC 6749 §2.3.1: where a client secret goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMethod {
    /// HTTP Basic (`client_secret_basic`, the default of RFC 8414 §2).
    Basic,
    /// In the form body (`client_secret_post`).
    Post,
}

impl SecretMethod {
    /// Basic unless the issuer lists only `client_secret_post` of the two.
    pub fn for_issuer(metadata: &ServerMetadata) -> Self {
        let listed = &metadata.token_endpoint_auth_methods_supported;
        let has = |name: &str| listed.iter().any(|m| m == name);
        if has("client_secret_post") && !has("client_secret_basic") {
            Self::Post
        } else {
            Self::Basic
        }
    }

    /// The RFC 8414 name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Basic => "client_secret_basic",
            Self::Post => "client_secret_post",
        }
    }
}

/// One grant at the token endpoint.
#[derive(Debug, Clone, Copy)]
pub enum Grant<'a> {
    /// RFC 8628 §3.4: a device code being polled.
    DeviceCode {
        /// From the device authorization answer.
        device_code: &'a SecretString,
    },
    /// RFC 6749 §4.1.3 with RFC 7636 §4.5.
    AuthorizationCode {
        /// The code the redirect brought.
        code: &'a SecretString,
        /// The redirect URI of the authorization request, exactly.
        redirect_uri: &'a str,
        /// The PKCE verifier.
        code_verifier: &'a SecretString,
    },
    /// RFC 6749 §6. No `scope`: the grant keeps what was granted.
    RefreshToken {
        /// The refresh token.
        refresh_token: &'a SecretString,
        /// RFC 8707 resource indicators asked for at sign-in, asked for again.
        resources: &'a [String],
    },
}

/// RFC 7009 §2.1 `token_type_hint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHint {
    /// A refresh token (revoking it ends the grant at most issuers).
    RefreshToken,
    /// An access token.
    AccessToken,
}

/// An HTTP client for one issuer's OAuth endpoints.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    http: reqwest::Client,
}

impl OAuthClient {
    /// Builds the client: rustls with the public roots and `options.ca_file`, no redirects
    /// (a redirect would resend a code or token to wherever Location points).
    pub fn new(options: &ClientOptions) -> Result<Self, RequestError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(redirect::Policy::none())
            .user_agent(concat!("bearergate/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &options.ca_file {
            for certificate in read_certificates(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| RequestError::Setup(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http })
    }

    /// The issuer's metadata: RFC 8414's well-known document, else OpenID Discovery's when
    /// the first is not found; the document must name `issuer` (RFC 8414 §3.3).
    pub async fn discover(&self, issuer: &str) -> Result<ServerMetadata, RequestError> {
        let mut last = None;
        for url in well_known_urls(issuer)? {
            match self.get_json(&url).await {
                Ok(document) => return metadata::parse(issuer, &document),
                // Not published there (404, 400, 405…): try the other place.
                Err(RequestError::Server {
                    status: Some(status),
                    detail,
                }) if (400..500).contains(&status) => {
                    last = Some(RequestError::Server {
                        status: Some(status),
                        detail: format!("{url}: {detail}"),
                    });
                }
                Err(RequestError::Refused(refusal)) if refusal.status < 500 => {
                    last = Some(RequestError::Refused(refusal));
                }
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or_else(|| RequestError::Setup("no metadata URL to try".to_owned())))
    }

    /// RFC 8628 §3.1: asks for a device code and a user code.
    pub async fn device_authorization(
        &self,
        endpoint: &Url,
        client: &ClientCredentials,
        scope: &str,
        resources: &[String],
    ) -> Result<DeviceAuthorization, RequestError> {
        let mut form = Form::default();
        if !scope.is_empty() {
            form.add("scope", scope);
        }
        for resource in resources {
            form.add("resource", resource);
        }
        let answer = self.post_form(endpoint, client, form).await?;
        device_answer(&answer)
    }

    /// One token endpoint request.
    pub async fn token(
        &self,
        endpoint: &Url,
        client: &ClientCredentials,
        grant: Grant<'_>,
    ) -> Result<TokenAnswer, RequestError> {
        let mut form = Form::default();
        match grant {
            Grant::DeviceCode { device_code } => {
                form.add("grant_type", DEVICE_CODE_GRANT);
                form.add("device_code", device_code.expose_secret());
            }
            Grant::AuthorizationCode {
                code,
                redirect_uri,
                code_verifier,
            } => {
                form.add("grant_type", "authorization_code");
                form.add("code", code.expose_secret());
                form.add("redirect_uri", redirect_uri);
                form.add("code_verifier", code_verifier.expose_secret());
            }
            Grant::RefreshToken {
                refresh_token,
                resources,
            } => {
                form.add("grant_type", "refresh_token");
                form.add("refresh_token", refresh_token.expose_secret());
                for resource in resources {
                    form.add("resource", resource);
                }
            }
        }
        let answer = self.post_form(endpoint, client, form).await?;
        token_answer(&answer)
    }

    /// RFC 7009: revokes `token`. Success includes "the token was already unknown"
    /// (RFC 7009 §2.2).
    pub async fn revoke(
        &self,
        endpoint: &Url,
        client: &ClientCredentials,
        token: &SecretString,
        hint: TokenHint,
    ) -> Result<(), RequestError> {
        let mut form = Form::default();
        form.add("token", token.expose_secret());
        form.add(
            "token_type_hint",
            match hint {
                TokenHint::RefreshToken => "refresh_token",
                TokenHint::AccessToken => "access_token",
            },
        );
        let (status, body) = self.send(self.request(endpoint, client, form)?).await?;
        if status == 200 {
            return Ok(());
        }
        json_answer(status, &body).map(|_| ())
    }

    async fn get_json(&self, url: &Url) -> Result<Map<String, Value>, RequestError> {
        let request = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json");
        let (status, body) = self.send(request).await?;
        json_answer(status, &body)
    }

    async fn post_form(
        &self,
        endpoint: &Url,
        client: &ClientCredentials,
        form: Form,
    ) -> Result<Map<String, Value>, RequestError> {
        let (status, body) = self.send(self.request(endpoint, client, form)?).await?;
        json_answer(status, &body)
    }

    /// A form POST with our client authentication (RFC 6749 §2.3.1): a public client names
    /// itself in the form; a confidential one sends its secret by `client.method`.
    fn request(
        &self,
        endpoint: &Url,
        client: &ClientCredentials,
        mut form: Form,
    ) -> Result<reqwest::RequestBuilder, RequestError> {
        check_transport(endpoint, "endpoint").map_err(RequestError::Setup)?;
        let mut request = self
            .http
            .post(endpoint.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match (&client.secret, client.method) {
            (None, _) => form.add("client_id", &client.client_id),
            (Some(secret), SecretMethod::Post) => {
                form.add("client_id", &client.client_id);
                form.add("client_secret", secret.expose_secret());
            }
            (Some(secret), SecretMethod::Basic) => {
                let credentials = format!(
                    "{}:{}",
                    form_urlencode(&client.client_id),
                    form_urlencode(secret.expose_secret())
                );
                let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
                let mut value =
                    HeaderValue::try_from(format!("Basic {encoded}")).map_err(|_| {
                        RequestError::Setup("the client credentials do not fit a header".to_owned())
                    })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
        }
        Ok(request.body(form.finish().expose_secret().to_owned()))
    }

    /// Sends a request and reads at most [`MAX_ANSWER_LEN`] bytes of its answer.
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), RequestError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| RequestError::Network(describe(&e)))?;
        let status = response.status().as_u16();
        let too_large = || {
            RequestError::server(
                Some(status),
                format!("the answer is larger than {MAX_ANSWER_LEN} bytes"),
            )
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_ANSWER_LEN as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RequestError::Network(describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_LEN {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

/// PEM certificates from `path`.
fn read_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, RequestError> {
    let pem = std::fs::read(path)
        .map_err(|e| RequestError::Setup(format!("cannot read {}: {e}", path.display())))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        RequestError::Setup(format!(
            "{} holds no usable PEM certificate: {e}",
            path.display()
        ))
    })?;
    if certificates.is_empty() {
        return Err(RequestError::Setup(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certificates)
}

/// An `application/x-www-form-urlencoded` body being built; it holds secrets, so it is
/// never formatted.
#[derive(Default)]
struct Form(String);

impl Form {
    fn add(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(&form_urlencode(name));
        self.0.push('=');
        self.0.push_str(&form_urlencode(value));
    }

    fn finish(self) -> SecretString {
        SecretString::from(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encodes_names_and_values() {
        let mut form = Form::default();
        form.add("grant_type", DEVICE_CODE_GRANT);
        form.add("scope", "a b");
        assert_eq!(
            form.finish().expose_secret(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&scope=a+b"
        );
    }

    #[test]
    fn secret_method_follows_the_metadata() {
        let mut metadata = ServerMetadata {
            issuer: "https://x.test".into(),
            authorization_endpoint: None,
            token_endpoint: Url::parse("https://x.test/token").unwrap(),
            device_authorization_endpoint: None,
            revocation_endpoint: None,
            code_challenge_methods_supported: Vec::new(),
            token_endpoint_auth_methods_supported: Vec::new(),
            authorization_response_iss_parameter_supported: false,
        };
        assert_eq!(SecretMethod::for_issuer(&metadata), SecretMethod::Basic);
        metadata.token_endpoint_auth_methods_supported = vec!["client_secret_post".into()];
        assert_eq!(SecretMethod::for_issuer(&metadata), SecretMethod::Post);
        metadata
            .token_endpoint_auth_methods_supported
            .push("client_secret_basic".into());
        assert_eq!(SecretMethod::for_issuer(&metadata), SecretMethod::Basic);
    }

    #[test]
    fn unreadable_ca_file_is_our_fault() {
        let options = ClientOptions {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..ClientOptions::default()
        };
        let error = OAuthClient::new(&options).unwrap_err();
        assert_eq!(error.fault(), Fault::Ours);
    }

    #[tokio::test]
    async fn closed_port_is_a_network_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let client = OAuthClient::new(&ClientOptions::default()).unwrap();
        let endpoint = Url::parse(&format!("http://127.0.0.1:{port}/token")).unwrap();
        let credentials = ClientCredentials {
            client_id: "bearergate".into(),
            secret: None,
            method: SecretMethod::Basic,
        };
        let refresh = SecretString::from("rt");
        let error = client
            .token(
                &endpoint,
                &credentials,
                Grant::RefreshToken {
                    refresh_token: &refresh,
                    resources: &[],
                },
            )
            .await
            .unwrap_err();
        assert_eq!(error.fault(), Fault::Network, "{error:?}");
        assert!(!error.to_string().contains("rt&"));
    }
}
