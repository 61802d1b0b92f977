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
use authz::store::{PostgresStore, SqliteStore, Store};
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

/// Opens the authorization server's store and the server over it: the PostgreSQL database
/// of `store` when it is set (shared by several instances; the schema is created or
/// migrated now), else SQLite under `state_dir` (made 0700: it holds the private signing
/// keys). Safe on any thread: the PostgreSQL store talks to the database from threads of
/// its own.
pub fn open(settings: &Settings, base: &Path) -> Result<Arc<AuthServer>, IssuerError> {
    let store: Arc<dyn Store> = match &settings.store {
        Some(url) => {
            let store = PostgresStore::open(url, base)?;
            info!(store = ?url, "issuer: PostgreSQL store opened");
            Arc::new(store)
        }
        None => {
            let dir = config::resolve(base, &settings.state_dir);
            create_private_dir(&dir).map_err(|source| IssuerError::StateDir {
                path: dir.clone(),
                source,
            })?;
            Arc::new(SqliteStore::open(&dir.join(STORE_FILE))?)
        }
    };
    Ok(Arc::new(AuthServer::new(settings.clone(), store)?))
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
/// so the token's `sub`, the backend login and a client's claimed user all agree. Every
/// login needs the mail scope; the profile's contacts and calendars scopes open none.
pub fn user_policy(settings: &Settings) -> Policy {
    let mut policy = Policy::with_claim("sub");
    policy.username_domain = settings.username_domain.clone();
    policy.lowercase_username = settings.lowercase_username;
    policy.required_scopes = vec![authz::MAIL_SCOPE.to_owned()];
    policy
}

/// The mail services RFC 8707 `resource` parameters may name: one per listener, its
/// protocol's URI scheme (`imap`; `smtp` for submission; `pop`, RFC 2384; `sieve`, RFC 5804),
/// its `hostname` and its port. The proxy refuses a token for other services at login
/// ([`crate::auth::check`]).
pub fn mail_resources(listeners: &[config::ListenerConfig]) -> Vec<authz::resource::MailResource> {
    let mut resources: Vec<authz::resource::MailResource> = Vec::new();
    for listener in listeners {
        let resource = authz::resource::MailResource {
            scheme: crate::auth::resource_scheme(listener.protocol).to_owned(),
            host: listener.hostname.to_ascii_lowercase(),
            port: listener.listen.port(),
        };
        if !resources.contains(&resource) {
            resources.push(resource);
        }
    }
    resources
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
        tokens: Arc::new(BuiltInTokens {
            remote_store: settings.store.is_some(),
            server,
        }),
    }
}

#[derive(Debug)]
struct BuiltInTokens {
    server: Arc<AuthServer>,
    /// The store is a database across the network (PostgreSQL): each check waits for a
    /// round trip, so the worker thread is handed over first.
    remote_store: bool,
}

impl BuiltInTokens {
    /// Checks `token`, letting the runtime move its other tasks off this thread while a
    /// remote store answers (a slow database must not stall the sessions relaying on it).
    fn check_access_token(
        &self,
        token: &str,
    ) -> Result<authz::model::AccessClaims, TokenRejection> {
        let multi_thread = tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
        if self.remote_store && multi_thread {
            tokio::task::block_in_place(|| self.server.check_access_token(token))
        } else {
            self.server.check_access_token(token)
        }
    }
}

impl LocalTokens for BuiltInTokens {
    fn issuer(&self) -> &str {
        self.server.issuer()
    }

    fn check(&self, token: &str) -> Result<Map<String, Value>, LocalRefusal> {
        let claims = self.check_access_token(token).map_err(|rejection| {
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
        // The RFC 8707 resources it is for (or the issuer): the proxy holds logins to them.
        map.insert(
            "aud".into(),
            Value::Array(claims.audiences.into_iter().map(Value::String).collect()),
        );
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
                // The proxy's own login (a PROXY header to the backend says LOCAL).
                destination: None,
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
/// `users` says (`password_backend` for `users = "backend"`), and the autoconfiguration
/// documents describing `listeners`. A reload builds it anew from the new configuration,
/// so the documents always name the listeners that run.
pub fn service(
    server: Arc<AuthServer>,
    base: &Path,
    password_backend: Option<Arc<Backend>>,
    listeners: &[config::ListenerConfig],
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
        mail: mail_services(&settings, listeners),
    };
    let router = authz_web::router(web).map_err(|e| IssuerError::Web(e.to_string()))?;
    Ok(IssuerService { server, router })
}

/// The mail side as autoconfiguration describes it: every listener (the documents leave
/// out the plaintext ones) by its `hostname` and listen port, the mail domains
/// (`mail_domains`, else `username_domain`), and whether logins are addresses: with
/// `username_domain` the mail server logs in by address, without it by the bare name.
fn mail_services(
    settings: &Settings,
    listeners: &[config::ListenerConfig],
) -> authz_web::autoconfig::MailServices {
    use authz_web::autoconfig::{LoginName, MailProtocol, MailServer, MailServices, MailTls};
    let servers = listeners
        .iter()
        .map(|listener| MailServer {
            protocol: match listener.protocol {
                Protocol::Imap => MailProtocol::Imap,
                Protocol::Smtp => MailProtocol::Smtp,
                Protocol::Sieve => MailProtocol::Sieve,
                Protocol::Pop3 => MailProtocol::Pop3,
            },
            hostname: listener.hostname.clone(),
            port: listener.listen.port(),
            tls: match listener.tls {
                config::ListenerTls::Implicit => MailTls::Implicit,
                config::ListenerTls::Starttls => MailTls::Starttls,
                config::ListenerTls::None => MailTls::None,
            },
            password: listener.password_fallback,
        })
        .collect();
    let domains = if settings.mail_domains.is_empty() {
        settings
            .username_domain
            .iter()
            .map(|domain| domain.to_ascii_lowercase())
            .collect()
    } else {
        settings.mail_domains.clone()
    };
    MailServices {
        servers,
        domains,
        login: if settings.username_domain.is_some() {
            LoginName::Address
        } else {
            LoginName::LocalPart
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listener_is_a_mail_resource_of_the_issuer() {
        let listener = |protocol: &str, port: u16, hostname: &str| {
            format!(
                "[[listeners]]\nprotocol = \"{protocol}\"\nlisten = \"127.0.0.1:{port}\"\n\
                 tls = \"implicit\"\nbackend = \"b\"\nhostname = \"{hostname}\"\n"
            )
        };
        let text = [
            listener("imap", 993, "Mail.Example.test"),
            listener("imap", 143, "mail.example.test"),
            listener("smtp", 465, "smtp.example.test"),
            listener("pop3", 995, "mail.example.test"),
            listener("sieve", 4190, "mail.example.test"),
            listener("imap", 993, "mail.example.test"),
            "[backends.b]\naddress = \"127.0.0.1:1\"\nlogin = \"passthrough\"\n\n\
             [issuer]\npublic_url = \"https://mail.example.test\"\nlisten = \"127.0.0.1:8443\"\n\
             state_dir = \"state\"\n"
                .to_owned(),
        ]
        .concat();
        let config = config::Config::parse(&text).expect("parses");
        let issuer = config.issuer.expect("[issuer]");
        // Mail logins need the mail scope: the profile's contacts and calendars scopes,
        // which the issuer grants too, open none.
        assert_eq!(user_policy(&issuer).required_scopes, [authz::MAIL_SCOPE]);
        let named: Vec<String> = issuer
            .mail_resources
            .iter()
            .map(|r| format!("{}:{}", r.uri(), r.port))
            .collect();
        assert_eq!(
            named,
            [
                "imap://mail.example.test:993",
                "imap://mail.example.test:143",
                "smtp://smtp.example.test:465",
                "pop://mail.example.test:995",
                "sieve://mail.example.test:4190",
            ]
        );
    }
}
