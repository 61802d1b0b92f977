//! `login`: discovery, then the device flow or the code flow with a loopback redirect, then
//! the token file. The decisions are in [`super::device`] and [`super::loopback`]; this is
//! the waiting, the sockets and the messages.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use validator::client::{
    state_from_random, AuthorizationRequest, ClientCredentials, ClientOptions, Grant, OAuthClient,
    Pkce, SecretMethod, ServerMetadata, TokenAnswer,
};

use super::device::{progress_line, DevicePoll, PollStep};
use super::disk;
use super::loopback::{self, Expected, Head, Verdict};
use super::print::credentials;
use super::store::SignedIn;
use super::{unix_now, Exit, Failure, Target};

/// How long the browser has to come back with the code: a sign-in with a password manager
/// and a second factor takes minutes, not hours.
pub const BROWSER_WAIT: Duration = Duration::from_secs(10 * 60);
/// How long one connection to the loopback port may take to send its request.
const REQUEST_WAIT: Duration = Duration::from_secs(10);

/// What the person asked for.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    /// The issuer identifier.
    pub issuer: String,
    /// Our client id.
    pub client_id: String,
    /// The file with the client secret, for a confidential client.
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes.
    pub scope: String,
    /// RFC 8707 resource indicators.
    pub resources: Vec<String>,
    /// The code flow even when the issuer offers the device flow.
    pub browser: bool,
    /// PEM certificates to trust beside the public roots.
    pub ca_file: Option<PathBuf>,
    /// Time for each request.
    pub timeout: Duration,
}

/// Signs in and writes the token file; returns the message for the person.
pub fn login(request: &LoginRequest, target: &Target) -> Result<String, Failure> {
    // Before anything else: a sign-in whose tokens cannot be kept is wasted.
    disk::prepare(&target.path)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot start the runtime: {e}")))?;
    let (signed_in, answer) = runtime.block_on(sign_in(request))?;
    let issuer = signed_in.issuer.clone();
    let file = signed_in.into_file(answer, unix_now());
    let _lock = disk::lock(&target.path)?;
    disk::write(&target.path, &file)?;
    let refresh = if file.refresh_token.is_some() {
        ""
    } else {
        " (the issuer gave no refresh token: sign in again when the access token expires)"
    };
    Ok(format!(
        "Signed in at {issuer}; the tokens are in {}{refresh}. Mail programs can now run: \
         bearergate token print {}",
        target.path.display(),
        target.option
    ))
}

async fn sign_in(request: &LoginRequest) -> Result<(SignedIn, TokenAnswer), Failure> {
    let options = ClientOptions {
        timeout: request.timeout,
        ca_file: request.ca_file.clone(),
    };
    let client = OAuthClient::new(&options)
        .map_err(|e| Failure::request("cannot set up the HTTP client", &e))?;
    let metadata = client
        .discover(&request.issuer)
        .await
        .map_err(|e| Failure::request("cannot read the issuer's metadata", &e))?;
    let method = request
        .client_secret_file
        .as_ref()
        .map(|_| SecretMethod::for_issuer(&metadata));
    let credentials = credentials(
        &request.client_id,
        request.client_secret_file.as_deref(),
        method,
    )
    .map_err(|e| Failure::request("cannot use the client secret", &e))?;
    let answer = match (&metadata.device_authorization_endpoint, request.browser) {
        (Some(_), false) => device_flow(&client, &metadata, &credentials, request).await?,
        (None, false) => {
            eprintln!("The issuer offers no device flow; signing in through a browser instead.");
            code_flow(&client, &metadata, &credentials, request).await?
        }
        (_, true) => code_flow(&client, &metadata, &credentials, request).await?,
    };
    let signed_in = SignedIn {
        issuer: metadata.issuer.clone(),
        token_endpoint: metadata.token_endpoint.to_string(),
        revocation_endpoint: metadata.revocation_endpoint.as_ref().map(|u| u.to_string()),
        client_id: request.client_id.clone(),
        client_secret: request.client_secret_file.clone().zip(method),
        ca_file: request.ca_file.clone(),
        scope: request.scope.clone(),
        resources: request.resources.clone(),
    };
    Ok((signed_in, answer))
}

/// RFC 8628: ask for codes, tell the person, poll until they decide.
async fn device_flow(
    client: &OAuthClient,
    metadata: &ServerMetadata,
    credentials: &ClientCredentials,
    request: &LoginRequest,
) -> Result<TokenAnswer, Failure> {
    let Some(endpoint) = &metadata.device_authorization_endpoint else {
        return Err(Failure::new(
            Exit::Configuration,
            "the issuer has no device flow",
        ));
    };
    let authorization = client
        .device_authorization(endpoint, credentials, &request.scope, &request.resources)
        .await
        .map_err(|e| Failure::request("the issuer refused to start the device flow", &e))?;
    let started = Instant::now();
    eprintln!("{}", progress_line(&authorization));
    let mut poll = DevicePoll::new(authorization.interval, authorization.expires_in);
    let mut step = poll.start();
    loop {
        match step {
            PollStep::Wait(pause) => {
                // The interval is the protocol's (RFC 8628 §3.5), not a guess.
                tokio::time::sleep(pause).await;
                let grant = Grant::DeviceCode {
                    device_code: &authorization.device_code,
                };
                let answer = client
                    .token(&metadata.token_endpoint, credentials, grant)
                    .await;
                step = poll.on_answer(answer, started.elapsed());
            }
            PollStep::Granted(answer) => return Ok(*answer),
            PollStep::Denied => {
                return Err(Failure::new(Exit::Failed, "the sign-in was refused"));
            }
            PollStep::Expired => {
                return Err(Failure::new(
                    Exit::Failed,
                    "the code expired before the sign-in finished; run the command again",
                ));
            }
            PollStep::Failed(error) => {
                return Err(Failure::request(
                    "the issuer refused the device flow",
                    &error,
                ));
            }
        }
    }
}

/// RFC 6749 §4.1 with PKCE (RFC 7636) and a loopback redirect (RFC 8252 §7.3).
async fn code_flow(
    client: &OAuthClient,
    metadata: &ServerMetadata,
    credentials: &ClientCredentials,
    request: &LoginRequest,
) -> Result<TokenAnswer, Failure> {
    let Some(endpoint) = &metadata.authorization_endpoint else {
        return Err(Failure::new(
            Exit::Configuration,
            "the issuer names no authorization endpoint",
        ));
    };
    if !metadata.allows_s256() {
        return Err(Failure::new(
            Exit::Configuration,
            "the issuer does not support PKCE with S256, which a client without a secret needs",
        ));
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| {
        Failure::new(
            Exit::Failed,
            format!("cannot listen on a loopback port: {e}"),
        )
    })?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::new(Exit::Failed, format!("loopback port: {e}")))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/");
    let pkce = Pkce::from_random(&random()?);
    let state = state_from_random(&random()?);
    let url = AuthorizationRequest {
        endpoint,
        client_id: &credentials.client_id,
        redirect_uri: &redirect_uri,
        scope: &request.scope,
        resources: &request.resources,
        state: &state,
        pkce: &pkce,
    }
    .url();
    eprintln!("To sign in, open this address in a browser on this computer: {url}");
    open_browser(url.as_str());
    let expected = Expected {
        state,
        issuer: metadata.issuer.clone(),
        iss_required: metadata.authorization_response_iss_parameter_supported,
    };
    let code = match tokio::time::timeout(BROWSER_WAIT, redirect(listener, expected)).await {
        Ok(code) => code?,
        Err(_) => {
            return Err(Failure::new(
                Exit::Failed,
                format!(
                    "no answer from the browser within {} minutes",
                    BROWSER_WAIT.as_secs() / 60
                ),
            ))
        }
    };
    let grant = Grant::AuthorizationCode {
        code: &code,
        redirect_uri: &redirect_uri,
        code_verifier: &pkce.verifier,
    };
    client
        .token(&metadata.token_endpoint, credentials, grant)
        .await
        .map_err(|e| Failure::request("the issuer refused the code", &e))
}

/// Runs `xdg-open` when there is a graphical session; the printed address is the fallback.
fn open_browser(url: &str) {
    let graphical = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !graphical {
        return;
    }
    let spawned = Command::new("xdg-open")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut child) = spawned {
        // Reaped in the background; the sign-in does not depend on it.
        std::thread::spawn(move || child.wait());
    }
}

/// Waits for the one redirect with our state; every connection is served on its own, so a
/// browser's idle speculative connection does not hold up the real one.
async fn redirect(listener: TcpListener, expected: Expected) -> Result<SecretString, Failure> {
    let (found, mut verdicts) = mpsc::channel::<Verdict>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve(stream, expected.clone(), found.clone()));
                }
            }
            Some(verdict) = verdicts.recv() => match verdict {
                Verdict::Code(code) => return Ok(code),
                Verdict::Refused { error, description } => {
                    let mut message = format!("the sign-in did not complete: {error}");
                    if let Some(description) = description {
                        message.push_str(&format!(" ({description})"));
                    }
                    return Err(Failure::new(Exit::Failed, message));
                }
                Verdict::Ignore { .. } => {}
            },
        }
    }
}

/// Reads one request, answers it, and reports a final verdict.
async fn serve(mut stream: TcpStream, expected: Expected, found: mpsc::Sender<Verdict>) {
    let head = tokio::time::timeout(REQUEST_WAIT, read_head(&mut stream)).await;
    let verdict = match head {
        Ok(Head::Get(target)) => loopback::judge(&target, &expected),
        _ => Verdict::Ignore { status: 400 },
    };
    let status = match &verdict {
        Verdict::Ignore { status } => *status,
        Verdict::Code(_) => 200,
        Verdict::Refused { .. } => 403,
    };
    let _ = stream.write_all(&loopback::response(status)).await;
    let _ = stream.shutdown().await;
    if !matches!(verdict, Verdict::Ignore { .. }) {
        let _ = found.send(verdict).await;
    }
}

async fn read_head(stream: &mut TcpStream) -> Head {
    let mut bytes = Vec::with_capacity(1_024);
    let mut chunk = [0u8; 2_048];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Head::Unreadable,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
        match loopback::scan(&bytes) {
            Head::Incomplete => {}
            head => return head,
        }
    }
}

/// `N` bytes from the kernel's random source.
fn random<const N: usize>() -> Result<[u8; N], Failure> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut source| source.read_exact(&mut bytes))
        .map_err(|e| Failure::new(Exit::Failed, format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes)
}
