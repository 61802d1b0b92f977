//! The rules that span several keys, checked after parsing: `check-config` reports every
//! problem found, each with its key.

use std::path::Path;

use serde::de::{self, IntoDeserializer};
use serde::Deserialize;

use super::{
    resolve, split_host_port, BackendConfig, Config, ConfigError, ListenerTls, LoginStrategy,
    Protocol,
};

impl Config {
    /// Cross-field rules. `base` is the directory relative paths are resolved against when
    /// checking that files exist.
    pub fn validate(&self, base: &Path) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        if self.listeners.is_empty() {
            errors.push(ConfigError::new(
                "listeners",
                "at least one [[listeners]] is needed",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errors.push(ConfigError::new("log.level", e.to_string()));
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            let key = |field: &str| format!("listeners[{i}].{field}");
            if listener.password_fallback && listener.protocol == Protocol::Sieve {
                errors.push(ConfigError::new(
                    key("password_fallback"),
                    "available for IMAP, SMTP and POP3 listeners only",
                ));
            }
            let backend_login = self.backends.get(&listener.backend).map(|b| b.login);
            if listener.password_fallback && backend_login == Some(LoginStrategy::Xclient) {
                errors.push(ConfigError::new(
                    key("password_fallback"),
                    format!(
                        "cannot be used with [backends.{}] login = \"xclient\": that backend \
                         trusts the proxy's connection to name any user, and a password \
                         login would hand such a connection to the client",
                        listener.backend
                    ),
                ));
            }
            if listener.tls != ListenerTls::None && self.tls.is_none() {
                errors.push(ConfigError::new(
                    key("tls"),
                    "needs a [tls] table with cert and key",
                ));
            }
            match self.backends.get(&listener.backend) {
                None => errors.push(ConfigError::new(
                    key("backend"),
                    format!("no [backends.{}] table", listener.backend),
                )),
                Some(backend)
                    if backend.login == LoginStrategy::Xclient
                        && listener.protocol != Protocol::Smtp =>
                {
                    errors.push(ConfigError::new(
                        key("backend"),
                        format!(
                            "[backends.{}] uses login = \"xclient\", which only SMTP listeners can use",
                            listener.backend
                        ),
                    ))
                }
                Some(_) => {}
            }
            if listener.max_auth_failures == 0 {
                errors.push(ConfigError::new(
                    key("max_auth_failures"),
                    "must be at least 1",
                ));
            }
            if listener.max_connections == 0 {
                errors.push(ConfigError::new(
                    key("max_connections"),
                    "must be at least 1",
                ));
            }
            if listener.max_prelogin_per_address == 0 {
                errors.push(ConfigError::new(
                    key("max_prelogin_per_address"),
                    "must be at least 1",
                ));
            }
            match (
                listener.proxy_protocol,
                listener.proxy_trusted_networks.is_empty(),
            ) {
                (true, true) => errors.push(ConfigError::new(
                    key("proxy_trusted_networks"),
                    "proxy_protocol = true needs the load balancers' networks here: whoever \
                     may send the header chooses the client address",
                )),
                (false, false) => errors.push(ConfigError::new(
                    key("proxy_trusted_networks"),
                    "only used with proxy_protocol = true, which is not set",
                )),
                _ => {}
            }
            let duplicate = self.listeners[..i]
                .iter()
                .any(|other| other.listen == listener.listen);
            if duplicate {
                errors.push(ConfigError::new(
                    key("listen"),
                    "address used by an earlier listener",
                ));
            }
        }
        let limits = &self.auth_limits;
        let budgets = [
            ("address_failures", limits.address_failures),
            ("user_failures", limits.user_failures),
            ("address_idp_requests", limits.address_idp_requests),
        ];
        for (key, burst) in budgets {
            if burst == 0 {
                errors.push(ConfigError::new(
                    format!("auth_limits.{key}"),
                    "must be at least 1",
                ));
            }
        }
        let refills = [
            ("address_failure_refill", limits.address_failure_refill),
            ("user_failure_refill", limits.user_failure_refill),
            (
                "address_idp_request_refill",
                limits.address_idp_request_refill,
            ),
        ];
        for (key, refill) in refills {
            if refill.is_zero() {
                errors.push(ConfigError::new(
                    format!("auth_limits.{key}"),
                    "must be longer than 0s (a zero refill would be no limit at all)",
                ));
            }
        }
        if limits.max_failure_delay < limits.failure_delay {
            errors.push(ConfigError::new(
                "auth_limits.max_failure_delay",
                "must not be shorter than failure_delay",
            ));
        }
        if let Some(tls) = &self.tls {
            check_file(base, &tls.cert, "tls.cert", &mut errors);
            check_file(base, &tls.key, "tls.key", &mut errors);
        }
        for (name, backend) in &self.backends {
            backend.validate(name, base, &mut errors);
        }
        let checked = match &self.issuer {
            Some(_) => self.validator.validate_beside_local(),
            None if self.validator.issuers.is_empty() => {
                errors.push(ConfigError::new(
                    "validator",
                    "a [validator] table is needed to check tokens (or an [issuer] table for \
                     the built-in authorization server)",
                ));
                Ok(())
            }
            None => self.validator.validate(),
        };
        if let Err(problems) = checked {
            errors.extend(problems.into_iter().map(ConfigError::from));
        }
        if let Some(issuer) = &self.issuer {
            self.check_issuer(issuer, base, &mut errors);
        }
        self.check_protocol_scopes(&mut errors);
        self.check_overlapping_sockets(&mut errors);
        errors
    }

    /// No two of this instance's sockets may take connections for one address: with
    /// `reuse_port` both would bind and the kernel would split connections between them
    /// (see [`crate::listen::overlap`]). Identical listener addresses, and the issuer's
    /// identical to another, are reported where they are checked.
    fn check_overlapping_sockets(&self, errors: &mut Vec<ConfigError>) {
        let listeners = self.listeners.iter().enumerate();
        let sockets: Vec<(String, std::net::SocketAddr, bool)> = listeners
            .map(|(i, l)| (format!("listeners[{i}].listen"), l.listen, true))
            .chain(
                self.metrics
                    .iter()
                    .map(|m| ("metrics.listen".into(), m.listen, false)),
            )
            .chain(
                self.issuer
                    .iter()
                    .map(|i| ("issuer.listen".into(), i.listen, false)),
            )
            .collect();
        for (n, (key, address, is_listener)) in sockets.iter().enumerate() {
            let reported = |other: &std::net::SocketAddr, other_is_listener: bool| {
                other == address && ((*is_listener && other_is_listener) || key == "issuer.listen")
            };
            let clash = sockets[..n].iter().find(|(_, other, other_is_listener)| {
                crate::listen::overlap(*other, *address) && !reported(other, *other_is_listener)
            });
            if let Some((other_key, other, _)) = clash {
                errors.push(ConfigError::new(
                    key.clone(),
                    format!(
                        "{address} overlaps {other_key} ({other}): both sockets would bind \
                         (reuse_port) and the kernel would split connections between them"
                    ),
                ));
            }
        }
    }

    /// `protocol_scopes` keys must name protocols, as a listener's `protocol` does: the
    /// validator takes any key, and one that names no protocol would silently demand nothing.
    fn check_protocol_scopes(&self, errors: &mut Vec<ConfigError>) {
        for (index, issuer) in self.validator.issuers.iter().enumerate() {
            let unknown = issuer.policy.protocol_scopes.keys().find_map(|key| {
                let name = key.as_str().into_deserializer();
                Protocol::deserialize(name)
                    .err()
                    .map(|e: de::value::Error| (key, e))
            });
            if let Some((key, e)) = unknown {
                errors.push(ConfigError::new(
                    format!(
                        "validator.{}",
                        self.validator.key_path(index, "protocol_scopes")
                    ),
                    format!("{:?} is not a protocol: {e}", key.as_str()),
                ));
            }
        }
    }
}

impl BackendConfig {
    fn validate(&self, name: &str, base: &Path, errors: &mut Vec<ConfigError>) {
        let key = |field: &str| format!("backends.{name}.{field}");
        if split_host_port(&self.address).is_none() {
            errors.push(ConfigError::new(key("address"), "expected host:port"));
        }
        match self.login {
            LoginStrategy::Master | LoginStrategy::PlainAuthzid => {
                if self.master_user.as_deref().unwrap_or("").is_empty() {
                    errors.push(ConfigError::new(
                        key("master_user"),
                        "required for this login strategy",
                    ));
                }
                match (&self.master_password, &self.master_password_file) {
                    (None, None) => errors.push(ConfigError::new(
                        key("master_password"),
                        "required (or master_password_file)",
                    )),
                    (Some(_), Some(_)) => errors.push(ConfigError::new(
                        key("master_password_file"),
                        "give master_password or master_password_file, not both",
                    )),
                    (None, Some(file)) => {
                        check_file(base, file, &key("master_password_file"), errors)
                    }
                    (Some(_), None) => {}
                }
            }
            LoginStrategy::Passthrough => {}
            LoginStrategy::Xclient => {}
        }
        if self.login == LoginStrategy::Master && !self.master_user_format.contains("{user}") {
            errors.push(ConfigError::new(
                key("master_user_format"),
                "must contain {user}",
            ));
        }
        if let Some(file) = &self.ca_file {
            check_file(base, file, &key("ca_file"), errors);
        }
    }
}

fn check_file(base: &Path, file: &Path, key: &str, errors: &mut Vec<ConfigError>) {
    let path = resolve(base, file);
    if !path.is_file() {
        errors.push(ConfigError::new(
            key,
            format!("file {} not found", path.display()),
        ));
    }
}

impl Config {
    /// `[issuer]`: its own rules, then how it fits the rest (TLS, the backend that checks
    /// passwords, addresses).
    fn check_issuer(&self, issuer: &authz::Settings, base: &Path, errors: &mut Vec<ConfigError>) {
        for (key, problem) in issuer.problems() {
            errors.push(ConfigError::new(format!("issuer.{key}"), problem));
        }
        if let Some(ca) = issuer.store.as_ref().and_then(|s| s.root_cert_file()) {
            check_file(base, &ca, "issuer.store", errors);
        }
        for (index, text) in issuer.proxy_trusted_networks.iter().enumerate() {
            if let Err(problem) = super::network(text) {
                errors.push(ConfigError::new(
                    format!("issuer.proxy_trusted_networks[{index}]"),
                    problem,
                ));
            }
        }
        match (
            issuer.proxy_protocol,
            issuer.proxy_trusted_networks.is_empty(),
        ) {
            (true, true) => errors.push(ConfigError::new(
                "issuer.proxy_trusted_networks",
                "proxy_protocol needs the load balancers that may send the header",
            )),
            (false, false) => errors.push(ConfigError::new(
                "issuer.proxy_trusted_networks",
                "has no effect without proxy_protocol = true",
            )),
            _ => {}
        }
        if issuer.plaintext && !issuer.listen.ip().is_loopback() {
            errors.push(ConfigError::new(
                "issuer.plaintext",
                "plain HTTP is allowed on a loopback listen address only (behind a TLS \
                 terminator)",
            ));
        }
        if !issuer.plaintext && issuer.cert.is_none() && self.tls.is_none() {
            errors.push(ConfigError::new(
                "issuer.cert",
                "the issuer serves HTTPS: give cert and key here or a [tls] table",
            ));
        }
        if let (Some(cert), Some(key)) = (&issuer.cert, &issuer.key) {
            check_file(base, cert, "issuer.cert", errors);
            check_file(base, key, "issuer.key", errors);
        }
        match issuer.users {
            authz::settings::UserSource::PasswdFile => {
                if let Some(file) = &issuer.passwd_file {
                    check_file(base, file, "issuer.passwd_file", errors);
                }
            }
            authz::settings::UserSource::Backend => {
                if self.password_backend(issuer).is_none() {
                    let problem = match &issuer.users_backend {
                        Some(name) => format!(
                            "[backends.{name}] is not the backend of any IMAP listener: \
                             passwords are checked by an IMAP login"
                        ),
                        None => "users = \"backend\" checks passwords by an IMAP login, and \
                                 no IMAP listener names a backend; add one or set \
                                 users_backend"
                            .to_owned(),
                    };
                    errors.push(ConfigError::new("issuer.users_backend", problem));
                }
            }
        }
        let taken = self
            .listeners
            .iter()
            .map(|l| l.listen)
            .chain(self.metrics.as_ref().map(|m| m.listen));
        if taken.into_iter().any(|address| address == issuer.listen) {
            errors.push(ConfigError::new(
                "issuer.listen",
                "address used by a listener or [metrics]",
            ));
        }
    }

    /// The backend whose IMAP login checks the issuer's passwords (`users = "backend"`):
    /// `users_backend`, which an IMAP listener must use, else the first IMAP listener's.
    pub fn password_backend<'a>(&'a self, issuer: &'a authz::Settings) -> Option<&'a str> {
        let mut imap = self
            .listeners
            .iter()
            .filter(|l| l.protocol == Protocol::Imap)
            .map(|l| l.backend.as_str());
        match &issuer.users_backend {
            Some(name) => imap.find(|backend| backend == name),
            None => imap.next(),
        }
    }
}
