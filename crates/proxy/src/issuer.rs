//! The built-in authorization server as a service of the proxy: its store opened under
//! `state_dir`, its HTTPS endpoints on the HTTP service model ([`crate::http`]), its tokens
//! judged in process by the validator ([`local_issuer`]), and passwords checked the way
//! `users` says — by an IMAP login to the backend, or a Dovecot passwd-file.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use authz::model::TokenRejection;
use authz::settings::UserSource;
use authz::store::SqliteStore;
use authz::{AuthServer, Settings};
use secrecy::SecretString;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use validator::{InvalidReason, LocalIssuer, LocalRefusal, LocalTokens, Policy};

use crate::backend::{Backend, BackendError, PasswordRequest};
use crate::config::{self, Protocol};

/// The store's file under `state_dir`.
pub const STORE_FILE: &str = "issuer.sqlite3";

/// How often keys are rotated when due and expired rows swept.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(3_600);

/// Why the issuer could not start.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// `state_dir` could not be made.
    #[error("issuer: cannot create state_dir {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened or read.
    #[error("issuer: {0}")]
    Store(#[from] authz::store::StoreError),
    /// The passwd-file could not be read.
    #[error("issuer: {0}")]
    Passwd(String),
    /// A page template in `templates_dir` is broken.
    #[error("issuer: {0}")]
    Web(String),
}

/// Opens the authorization server's store under `state_dir` (made 0700: it holds the
/// private signing keys) and the server over it.
pub fn open(settings: &Settings, base: &Path) -> Result<Arc<AuthServer>, IssuerError> {
    let dir = config::resolve(base, &settings.state_dir);
    create_private_dir(&dir).map_err(|source| IssuerError::StateDir {
        path: dir.clone(),
        source,
    })?;
    let store = SqliteStore::open(&dir.join(STORE_FILE))?;
    Ok(Arc::new(AuthServer::new(
        settings.clone(),
        Arc::new(store),
    )?))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The user-name rules of the built-in issuer: applied to what a person types at sign-in,
/// so the token's `sub`, the backend login and a client's claimed user all agree.
pub fn user_policy(settings: &Settings) -> Policy {
    let mut policy = Policy::with_claim("sub");
    policy.username_domain = settings.username_domain.clone();
    policy.lowercase_username = settings.lowercase_username;
    policy.required_scopes = vec![authz::MAIL_SCOPE.to_owned()];
    policy
}

/// The validator's view of the built-in issuer: its tokens are judged by a call, and a
/// refused OAUTHBEARER client is pointed at its discovery document.
pub fn local_issuer(server: Arc<AuthServer>) -> LocalIssuer {
    let settings = server.settings();
    LocalIssuer {
        name: "builtin".to_owned(),
        policy: user_policy(settings),
        discovery: validator::Discovery {
            scope: Some(authz::MAIL_SCOPE.to_owned()),
            openid_configuration: Some(format!(
                "{}{}",
                settings.public_url,
                authz::paths::OPENID_CONFIGURATION
            )),
        },
        tokens: Arc::new(BuiltInTokens { server }),
    }
}

#[derive(Debug)]
struct BuiltInTokens {
    server: Arc<AuthServer>,
}

impl LocalTokens for BuiltInTokens {
    fn issuer(&self) -> &str {
        self.server.issuer()
    }

    fn check(&self, token: &str) -> Result<Map<String, Value>, LocalRefusal> {
        let claims = self.server.check_access_token(token).map_err(|rejection| {
            LocalRefusal::Invalid(match rejection {
                TokenRejection::NotOurs => InvalidReason::BadSignature,
                TokenRejection::Expired => InvalidReason::Expired,
                TokenRejection::Revoked => InvalidReason::Inactive,
                TokenRejection::Unavailable => {
                    return LocalRefusal::Unavailable(
                        "the authorization server's store did not answer".to_owned(),
                    )
                }
            })
        })?;
        let mut map = Map::new();
        map.insert("sub".into(), Value::String(claims.user));
        map.insert("scope".into(), Value::String(claims.scopes.join(" ")));
        map.insert("client_id".into(), Value::String(claims.client_id));
        map.insert("exp".into(), Value::from(claims.expires_at));
        Ok(map)
    }
}

/// Checks passwords by logging in to the IMAP backend as the user.
#[derive(Debug)]
struct BackendPasswords {
    backend: Arc<Backend>,
}

impl authz_web::PasswordCheck for BackendPasswords {
    fn check<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move {
            // The master user's name never signs in, however it is written.
            if self.backend.is_master_identity(user) {
                return Ok(false);
            }
            let credentials = sasl::PasswordCredentials {
                authzid: None,
                user: user.to_owned(),
                password: SecretString::from(password.to_owned()),
            };
            let request = PasswordRequest {
                credentials: &credentials,
                client: SocketAddr::from(([127, 0, 0, 1], 0)),
                client_name: None,
                session_id: "issuer-signin",
            };
            match crate::backend::password_login(Protocol::Imap, &self.backend, request).await {
                Ok(_logged_in) => Ok(true),
                Err(BackendError::PasswordRefused) => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Checks passwords against a Dovecot passwd-file, read at start.
#[derive(Debug)]
struct FilePasswords {
    file: Arc<authz::passwd::PasswdFile>,
}

impl authz_web::PasswordCheck for FilePasswords {
    fn check<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        let file = self.file.clone();
        let user = user.to_owned();
        let password = SecretString::from(password.to_owned());
        Box::pin(async move {
            // Password hashes are slow on purpose: keep them off the async threads.
            let verdict = tokio::task::spawn_blocking(move || {
                use secrecy::ExposeSecret;
                file.verify(&user, password.expose_secret())
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok(matches!(verdict, authz::passwd::Verdict::Accepted))
        })
    }
}

/// Everything the issuer's HTTP service needs from the rest of the process.
#[derive(Debug)]
pub struct IssuerService {
    /// The server.
    pub server: Arc<AuthServer>,
    /// Its router, ready to serve.
    pub router: axum::Router,
}

/// Builds the issuer's router: pages and endpoints over `server`, passwords checked as
/// `users` says (`password_backend` for `users = "backend"`).
pub fn service(
    server: Arc<AuthServer>,
    base: &Path,
    password_backend: Option<Arc<Backend>>,
) -> Result<IssuerService, IssuerError> {
    let settings = server.settings().clone();
    let passwords: Arc<dyn authz_web::PasswordCheck> = match settings.users {
        UserSource::Backend => match password_backend {
            Some(backend) => Arc::new(BackendPasswords { backend }),
            None => {
                return Err(IssuerError::Passwd(
                    "no IMAP backend to check passwords with".to_owned(),
                ))
            }
        },
        UserSource::PasswdFile => {
            let path = settings
                .passwd_file
                .as_ref()
                .map(|file| config::resolve(base, file))
                .ok_or_else(|| IssuerError::Passwd("passwd_file is not set".to_owned()))?;
            let file = authz::passwd::PasswdFile::load(&path)
                .map_err(|e| IssuerError::Passwd(e.to_string()))?;
            info!(users = file.len(), path = %path.display(), "issuer: passwd-file read");
            Arc::new(FilePasswords {
                file: Arc::new(file),
            })
        }
    };
    let policy = user_policy(&settings);
    let web = authz_web::WebConfig {
        server: server.clone(),
        passwords,
        normalise_user: Arc::new(move |typed: &str| policy.normalise(typed.trim())),
        templates_dir: settings
            .templates_dir
            .as_ref()
            .map(|dir| config::resolve(base, dir)),
        // `plaintext` may sit behind a TLS terminator: what the browser sees is public_url.
        secure_cookies: settings.public_url.starts_with("https://"),
        signin_limits: authz::signin::SignInLimits::from_settings(&settings),
    };
    let router = authz_web::router(web).map_err(|e| IssuerError::Web(e.to_string()))?;
    Ok(IssuerService { server, router })
}

/// The issuer's pages learn the client's address (sign-in limits) from this extension.
pub fn tag_peer(extensions: &mut axum::http::Extensions, peer: SocketAddr) {
    extensions.insert(authz_web::PeerAddr(peer));
}

/// Rotates signing keys when due and sweeps expired rows, hourly, until `shutdown`.
pub async fn upkeep(server: Arc<AuthServer>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let server = server.clone();
        let done = tokio::task::spawn_blocking(move || {
            server.rotate_keys()?;
            server.sweep()
        })
        .await;
        match done {
            Ok(Ok(swept)) if swept > 0 => info!(rows = swept, "issuer: expired state swept"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "issuer: upkeep failed"),
            Err(e) => warn!(error = %e, "issuer: upkeep task failed"),
        }
    }
}
