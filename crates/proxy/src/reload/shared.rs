//! What every listener's connections share, built whole from one configuration — at start
//! and at each reload — before anything running is touched: the built-in authorization
//! server over its store, the validator, the certificate, the backends and the failed-login
//! throttle. A problem is a [`ConfigError`] naming the key it comes from, as `check-config`
//! names its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use authz::settings::UserSource;
use authz::AuthServer;
use secrecy::SecretString;
use tokio_rustls::TlsAcceptor;

use crate::backend::Backend;
use crate::config::{self, Config, ConfigError};
use crate::issuer::IssuerError;
use crate::throttle::Throttle;
use crate::tls::{self, TlsSetupError};

/// The parts built from one configuration.
pub struct Shared {
    /// The built-in authorization server, over the store in `state_dir`.
    pub issuer: Option<Arc<AuthServer>>,
    /// Token checks, the built-in issuer's first.
    pub validator: Arc<validator::Validator>,
    /// `[tls]`: certificate and key as read from disk now.
    pub acceptor: Option<TlsAcceptor>,
    /// `[backends.NAME]`.
    pub backends: BTreeMap<String, Arc<Backend>>,
    /// `[auth_limits]` with the budgets spent so far.
    pub throttle: Arc<Throttle>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field(
                "issuer",
                &self.issuer.as_ref().map(|server| server.issuer()),
            )
            .field("validator", &self.validator)
            .field("tls", &self.acceptor.is_some())
            .field("backends", &self.backends.keys())
            .finish_non_exhaustive()
    }
}

/// A problem with `key`.
pub fn keyed(key: impl Into<String>, message: impl ToString) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.to_string(),
    }
}

impl Shared {
    /// Builds everything `config` describes; every problem found, each with its key.
    /// `previous` lends what must outlive a reload: the budgets of failed logins while
    /// `[auth_limits]` stays the same (a reload must not wipe an attacker's slate), and what
    /// was learned of each backend that is still at the same address.
    pub fn build(
        config: &Config,
        base: &Path,
        previous: Option<&Shared>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let acceptor = match &config.tls {
            Some(files) => {
                let cert = config::resolve(base, &files.cert);
                let key = config::resolve(base, &files.key);
                tls::server_acceptor(&cert, &key)
                    .map_err(|e| errors.push(tls_error(e, "tls", &cert)))
                    .ok()
            }
            None => None,
        };
        let mut backends = BTreeMap::new();
        for (name, backend_config) in &config.backends {
            match build_backend(name, backend_config, base) {
                Ok(backend) => {
                    let same = previous
                        .and_then(|p| p.backends.get(name))
                        .filter(|old| old.address == backend.address);
                    if let Some(old) = same {
                        *backend
                            .learned
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = old.learned();
                    }
                    backends.insert(name.clone(), Arc::new(backend));
                }
                Err(e) => errors.push(e),
            }
        }
        let issuer = match &config.issuer {
            Some(settings) => crate::issuer::open(settings, base)
                .map_err(|e| errors.push(issuer_error(e, settings)))
                .ok(),
            None => None,
        };
        let validator = if config.issuer.is_some() && issuer.is_none() {
            None // already reported; the validator needs it
        } else {
            build_validator(config, issuer.as_ref())
                .map_err(|e| errors.push(e))
                .ok()
        };
        let limits = config.auth_limits.limits();
        let throttle = match previous {
            Some(p) if p.throttle.limits() == limits => p.throttle.clone(),
            _ => Arc::new(Throttle::new(limits)),
        };
        match validator {
            Some(validator) if errors.is_empty() => Ok(Self {
                issuer,
                validator: Arc::new(validator),
                acceptor,
                backends,
                throttle,
            }),
            _ => Err(errors),
        }
    }

    /// What a client with an unusable response is told in the error challenge: the
    /// built-in or first issuer's hints (a refused token gets its own issuer's).
    pub fn challenge(&self) -> session::Discovery {
        self.validator.default_discovery().clone()
    }
}

fn build_backend(
    name: &str,
    backend_config: &config::BackendConfig,
    base: &Path,
) -> Result<Backend, ConfigError> {
    let key = |field: &str| format!("backends.{name}.{field}");
    let password = match (
        &backend_config.master_password,
        &backend_config.master_password_file,
    ) {
        (Some(inline), _) => inline.clone(),
        (None, Some(file)) => {
            let path = config::resolve(base, file);
            config::read_secret_file(&path).map_err(|e| {
                keyed(
                    key("master_password_file"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?
        }
        (None, None) => SecretString::from(String::new()),
    };
    Backend::from_config(name, backend_config, password, base).map_err(|e| match e {
        TlsSetupError::Pem { .. } => keyed(key("ca_file"), e),
        TlsSetupError::ServerName(_) => keyed(key("server_name"), e),
        TlsSetupError::Rustls(_) => keyed(format!("backends.{name}"), e),
    })
}

/// The validator, from `[validator]` as [`Config::load`] left it (secret files read), with
/// the built-in issuer's tokens judged in process when there is one.
fn build_validator(
    config: &Config,
    issuer: Option<&Arc<AuthServer>>,
) -> Result<validator::Validator, ConfigError> {
    let built = match issuer {
        Some(server) => validator::Validator::with_local(
            config.validator.clone(),
            crate::issuer::local_issuer(server.clone()),
        ),
        None => validator::Validator::new(config.validator.clone()),
    };
    built.map_err(|e| keyed("validator", e))
}

/// A certificate problem, keyed `TABLE.cert` or `TABLE.key` by the file it is about; a
/// pair rustls refuses (a key that does not match) is the table's.
pub fn tls_error(error: TlsSetupError, table: &str, cert: &Path) -> ConfigError {
    match &error {
        TlsSetupError::Pem { path, .. } if *path == cert.display().to_string() => {
            keyed(format!("{table}.cert"), error)
        }
        TlsSetupError::Pem { .. } => keyed(format!("{table}.key"), error),
        TlsSetupError::Rustls(_) | TlsSetupError::ServerName(_) => keyed(table, error),
    }
}

/// An issuer problem with the key to look at.
pub fn issuer_error(error: IssuerError, settings: &authz::Settings) -> ConfigError {
    let key = match &error {
        IssuerError::StateDir { .. } | IssuerError::Store(_) => "issuer.state_dir",
        IssuerError::Passwd(_) if settings.users == UserSource::Backend => "issuer.users",
        IssuerError::Passwd(_) => "issuer.passwd_file",
        IssuerError::Web(_) => "issuer.templates_dir",
    };
    keyed(key, error)
}

/// The validator in force, for `/metrics`. A reload replaces it with a new one whose
/// counters start at zero; the figures of those before are carried, so that the process's
/// counters never go back. (What an old validator still counts for the logins it was
/// serving when it was replaced is not added.)
#[derive(Debug)]
pub struct CurrentValidator {
    current: RwLock<Arc<validator::Validator>>,
    retired: Mutex<Retired>,
}

#[derive(Debug, Default)]
struct Retired {
    stats: validator::ValidatorStats,
    /// Requests and refusals without asking, by issuer name.
    issuers: BTreeMap<String, (u64, u64)>,
}

impl CurrentValidator {
    /// Starts with `validator`.
    pub fn new(validator: Arc<validator::Validator>) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(validator),
            retired: Mutex::new(Retired::default()),
        })
    }

    /// `validator` from now on; the figures of the one it replaces are kept.
    pub fn replace(&self, validator: Arc<validator::Validator>) {
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(PoisonError::into_inner),
            validator,
        );
        let mut retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = old.stats();
        let sum = &mut retired.stats;
        sum.cache_hits += stats.cache_hits;
        sum.cache_misses += stats.cache_misses;
        sum.introspection_requests += stats.introspection_requests;
        sum.invalid += stats.invalid;
        sum.unavailable += stats.unavailable;
        sum.kept_confirmed += stats.kept_confirmed;
        for issuer in old.issuer_stats() {
            let entry = retired.issuers.entry(issuer.name).or_default();
            entry.0 += issuer.requests;
            entry.1 += issuer.rejected;
        }
    }

    /// The figures `/metrics` shows: the current validator's plus those carried.
    pub fn figures(&self) -> (validator::ValidatorStats, Vec<validator::IssuerStats>) {
        let current = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let retired = self.retired.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stats = current.stats();
        let sum = &retired.stats;
        stats.cache_hits += sum.cache_hits;
        stats.cache_misses += sum.cache_misses;
        stats.introspection_requests += sum.introspection_requests;
        stats.invalid += sum.invalid;
        stats.unavailable += sum.unavailable;
        stats.kept_confirmed += sum.kept_confirmed;
        let mut issuers = current.issuer_stats();
        for issuer in &mut issuers {
            if let Some((requests, rejected)) = retired.issuers.get(&issuer.name) {
                issuer.requests += requests;
                issuer.rejected += rejected;
            }
        }
        (stats, issuers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator() -> Arc<validator::Validator> {
        let config: validator::ValidatorConfig = toml::from_str(
            "kind = \"introspection\"\nname = \"idp\"\n\
             introspection_url = \"http://127.0.0.1:9/introspect\"\n\
             client_id = \"proxy\"\nclient_secret = \"secret\"\n",
        )
        .expect("a [validator] table");
        Arc::new(validator::Validator::new(config).expect("a validator"))
    }

    /// Refused at once, without asking anyone: counted as invalid.
    async fn refuse_an_empty_token(validator: &validator::Validator) {
        let refused = validator.validate(&SecretString::from(String::new())).await;
        assert!(refused.is_err());
    }

    #[tokio::test]
    async fn the_counters_of_a_replaced_validator_are_carried() {
        let first = validator();
        let current = CurrentValidator::new(first.clone());
        refuse_an_empty_token(&first).await;
        refuse_an_empty_token(&first).await;
        assert_eq!(current.figures().0.invalid, 2);
        let second = validator();
        current.replace(second.clone());
        assert_eq!(current.figures().0.invalid, 2, "not back to zero");
        refuse_an_empty_token(&second).await;
        let (stats, issuers) = current.figures();
        assert_eq!(stats.invalid, 3, "the new one's added");
        assert_eq!(issuers.len(), 1, "the issuers of the validator in force");
        assert_eq!(issuers[0].name, "idp");
    }

    #[test]
    fn certificate_problems_name_the_file_key() {
        let cert = Path::new("/etc/bearergate/server.crt");
        let missing_cert = TlsSetupError::Pem {
            path: cert.display().to_string(),
            reason: "No such file or directory".to_owned(),
        };
        let error = tls_error(missing_cert, "tls", cert);
        assert_eq!(error.key, "tls.cert");
        assert!(error
            .to_string()
            .starts_with("tls.cert: /etc/bearergate/server.crt: "));
        let missing_key = TlsSetupError::Pem {
            path: "/etc/bearergate/server.key".to_owned(),
            reason: "no private key".to_owned(),
        };
        assert_eq!(tls_error(missing_key, "issuer", cert).key, "issuer.key");
    }
}
