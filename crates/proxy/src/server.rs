//! The top of the program: builds the shared parts (validator, TLS, backends, failure
//! throttle), starts the services (metrics over HTTP, one accept loop per listener, the
//! backends' capability probes) and waits for signals. SIGTERM stops accepting and gives
//! open sessions `drain_timeout` to finish; those still open then are told so (before
//! login: the protocol's goodbye; relays: closed, since nothing may be injected into the
//! backend's byte stream) and log how they ended. Who is accepted lives in
//! [`crate::accept`]; what one connection needs, in [`crate::listener`]; what it does, in
//! [`crate::driver`].

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::backend::Backend;
use crate::config::{self, Config, ListenerTls, Protocol};
use crate::listener::ListenerContext;
use crate::tls;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Certificates or keys could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    /// A secret file could not be read.
    #[error("cannot read {path}: {source}")]
    SecretFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The token validator refused its configuration.
    #[error("validator: {0}")]
    Validator(String),
    /// The built-in authorization server could not start.
    #[error(transparent)]
    Issuer(#[from] crate::issuer::IssuerError),
}

fn secret(
    inline: &Option<SecretString>,
    file: &Option<std::path::PathBuf>,
    base: &Path,
) -> Result<SecretString, StartError> {
    if let Some(value) = inline {
        return Ok(value.clone());
    }
    let Some(file) = file else {
        return Ok(SecretString::from(String::new()));
    };
    let path = config::resolve(base, file);
    config::read_secret_file(&path).map_err(|source| StartError::SecretFile {
        path: path.display().to_string(),
        source,
    })
}

/// The validator, from `[validator]` as [`Config::load`] left it (secret files read), with
/// the built-in issuer's tokens judged in process when there is one.
fn build_validator(
    config: &Config,
    issuer: Option<&Arc<authz::AuthServer>>,
) -> Result<validator::Validator, StartError> {
    let built = match issuer {
        Some(server) => validator::Validator::with_local(
            config.validator.clone(),
            crate::issuer::local_issuer(server.clone()),
        ),
        None => validator::Validator::new(config.validator.clone()),
    };
    built.map_err(|e| StartError::Validator(e.to_string()))
}

/// After the drain, the longest the sessions get to log their end.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// Runs until SIGTERM or SIGINT, then drains.
pub async fn run(config: Config, base: &Path) -> Result<(), StartError> {
    raise_descriptor_limit(&config);
    let issuer = match &config.issuer {
        Some(settings) => Some(crate::issuer::open(settings, base)?),
        None => None,
    };
    let validator = Arc::new(build_validator(&config, issuer.as_ref())?);
    let acceptor = match &config.tls {
        Some(tls_config) => Some(tls::server_acceptor(
            &config::resolve(base, &tls_config.cert),
            &config::resolve(base, &tls_config.key),
        )?),
        None => None,
    };
    let mut backends = std::collections::BTreeMap::new();
    for (name, backend_config) in &config.backends {
        let password = secret(
            &backend_config.master_password,
            &backend_config.master_password_file,
            base,
        )?;
        let backend = Backend::from_config(name, backend_config, password, base)?;
        backends.insert(name.clone(), Arc::new(backend));
    }
    // The built-in or first issuer's hints; a refused token gets its own issuer's (driver).
    let challenge = validator.default_discovery().clone();

    let shutdown = CancellationToken::new();
    let drain_over = CancellationToken::new();
    let tracker = TaskTracker::new();
    if let Some(metrics) = &config.metrics {
        let listener = crate::metrics::bind(metrics.listen)
            .await
            .map_err(|source| StartError::Bind {
                address: metrics.listen,
                source,
            })?;
        tokio::spawn(crate::metrics::serve(
            listener,
            validator.clone(),
            shutdown.clone(),
        ));
    }
    if let (Some(server), Some(settings)) = (&issuer, &config.issuer) {
        let password_backend = config
            .password_backend(settings)
            .and_then(|name| backends.get(name).cloned());
        let service = crate::issuer::service(server.clone(), base, password_backend)?;
        let tls = match (&settings.cert, &settings.key) {
            _ if settings.plaintext => None,
            (Some(cert), Some(key)) => Some(tls::server_acceptor(
                &config::resolve(base, cert),
                &config::resolve(base, key),
            )?),
            _ => acceptor.clone(),
        };
        let listener = crate::http::bind(settings.listen, "issuer")
            .await
            .map_err(|source| StartError::Bind {
                address: settings.listen,
                source,
            })?;
        info!(issuer = %server.issuer(), "built-in authorization server ready");
        tracker.spawn(crate::http::serve(
            listener,
            tls,
            service.router,
            crate::http::HttpLimits::default(),
            shutdown.clone(),
            crate::issuer::tag_peer,
        ));
        tokio::spawn(crate::issuer::upkeep(server.clone(), shutdown.clone()));
    }
    let throttle = Arc::new(crate::throttle::Throttle::new(config.auth_limits.limits()));
    let mut bound = Vec::new();
    for listener_config in &config.listeners {
        let listener = TcpListener::bind(listener_config.listen)
            .await
            .map_err(|source| StartError::Bind {
                address: listener_config.listen,
                source,
            })?;
        let Some(backend) = backends.get(&listener_config.backend) else {
            continue; // check-config rules make this unreachable
        };
        let context = Arc::new(ListenerContext {
            protocol: listener_config.protocol,
            tls_mode: listener_config.tls,
            acceptor: acceptor
                .clone()
                .filter(|_| listener_config.tls != ListenerTls::None),
            allow_plaintext_auth: listener_config.allow_plaintext_auth,
            password_fallback: listener_config.password_fallback,
            error_challenge: listener_config.error_challenge,
            throttle: throttle.clone(),
            hostname: listener_config.hostname.clone(),
            preauth_idle_timeout: listener_config.preauth_idle_timeout,
            preauth_deadline: listener_config.preauth_deadline,
            max_auth_failures: listener_config.max_auth_failures,
            backend: backend.clone(),
            validator: validator.clone(),
            scope_key: listener_config.protocol.scope_key(),
            challenge: challenge.clone(),
            drain_over: drain_over.clone(),
        });
        info!(
            protocol = listener_config.protocol.name(),
            addr = %listener_config.listen,
            tls = ?listener_config.tls,
            "listening"
        );
        bound.push(crate::accept::Listening {
            listener,
            context,
            max_connections: listener_config.max_connections,
            max_prelogin_per_address: listener_config.max_prelogin_per_address,
        });
    }
    for listening in bound {
        tracker.spawn(crate::accept::accept_loop(
            listening,
            tracker.clone(),
            shutdown.clone(),
        ));
    }
    // ManageSieve clients see the backend's capabilities in the greeting and SMTP clients its
    // extensions in EHLO, before any login: ask the backends once now (later logins keep
    // them current).
    for listener_config in &config.listeners {
        let Some(backend) = backends.get(&listener_config.backend).cloned() else {
            continue;
        };
        let protocol = listener_config.protocol;
        tokio::spawn(async move {
            let probed = match protocol {
                Protocol::Sieve => crate::backend::sieve::probe(&backend).await,
                Protocol::Smtp => crate::backend::smtp::probe(&backend).await,
                Protocol::Imap | Protocol::Pop3 => return,
            };
            if let Err(e) = probed {
                warn!(backend = %backend.name, protocol = protocol.name(), error = %e, "cannot read the backend's capabilities yet");
            }
        });
    }
    info!(listeners = config.listeners.len(), "bearergate ready");

    wait_for_signal().await;
    info!(drain_timeout = ?config.drain_timeout, "shutting down: no new connections");
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(config.drain_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!("drain timeout reached; closing the remaining sessions");
        drain_over.cancel();
        // Each session says its goodbye if its socket takes it at once, and logs its end;
        // none waits on a client, so this is quick.
        if tokio::time::timeout(FAREWELL_WAIT, tracker.wait())
            .await
            .is_err()
        {
            warn!("sessions still open after their goodbye; exiting anyway");
        }
    }
    info!("bearergate stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        _ => {
            error!("cannot install signal handlers; stop with SIGKILL");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Raises the soft limit on open files to the hard one (the default soft limit of 1,024
/// serves ~500 sessions), logs both, and warns when the listeners' `max_connections` cannot
/// all be served: each session holds two descriptors, the client's and the backend's.
fn raise_descriptor_limit(config: &Config) {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        warn!(error = %e, "cannot raise the open files limit");
    }
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return;
    };
    info!(soft, hard, "open files limit");
    let sessions: u64 = config
        .listeners
        .iter()
        .map(|listener| listener.max_connections as u64)
        .sum();
    // Listeners, the metrics endpoint, log and identity-provider connections: a margin;
    // and the refusals each listener may be writing.
    let refusals = (config.listeners.len() * crate::accept::REFUSALS_IN_FLIGHT) as u64;
    let needed = sessions
        .saturating_mul(2)
        .saturating_add(64)
        .saturating_add(refusals);
    if needed > soft {
        warn!(
            needed,
            limit = soft,
            "the listeners' max_connections need more open files than the process may have \
             (two per session); lower max_connections or raise the limit (LimitNOFILE=)"
        );
    }
}
