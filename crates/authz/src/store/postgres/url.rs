//! `[issuer] store`: the PostgreSQL connection URL, its checks, and the parts of it that
//! are ours rather than the driver's (`sslmode` beyond what the driver knows, `sslrootcert`).
//!
//! The URL carries the database password, so [`StoreUrl`] redacts it in `Debug`, and no
//! message made here repeats the URL.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

/// The schemes libpq accepts for a connection URI.
const SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

/// A PostgreSQL connection URL (`postgres://user:password@host:5432/db?sslmode=verify-full`),
/// in libpq's URI syntax. Its password is shown as `***` in `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreUrl(String);

/// How the connection is protected (`sslmode`, as libpq names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `disable`: plaintext (a trusted network, or a Unix socket).
    Disable,
    /// `prefer`: TLS when the server offers it, plaintext when it does not; a certificate
    /// that is offered is verified like `verify-full`. The default only for a database on
    /// this machine (a Unix socket, `localhost`, a loopback address): across a network,
    /// anyone on the path can answer "no TLS" for the server, and then ask for the password
    /// in clear.
    Prefer,
    /// `require` and `verify-full`: TLS, the certificate verified against the public roots
    /// (or `sslrootcert`) and the host name. libpq's `require` would accept any
    /// certificate; here it is as strict as `verify-full`, so that a URL copied from
    /// elsewhere never connects to an impostor. The default for a database across a
    /// network.
    Verify,
}

/// What [`StoreUrl::target`] makes of the URL: the driver's settings and ours.
pub(crate) struct Target {
    /// Everything the driver understands (host, port, user, password, dbname, timeouts…).
    pub(crate) config: postgres::Config,
    /// `sslmode`.
    pub(crate) tls: TlsMode,
    /// `sslrootcert`: a PEM file of the certificate authorities to trust instead of the
    /// public roots.
    pub(crate) root_certs: Option<PathBuf>,
    /// Whether every address connected to is on this machine (see [`TlsMode::Prefer`]).
    pub(crate) local: bool,
}

impl StoreUrl {
    /// A URL from its text (not checked yet: see [`StoreUrl::problem`]).
    pub fn new(url: impl Into<String>) -> Self {
        StoreUrl(url.into())
    }

    /// Why the URL cannot be used, naming the part (never its value); `None` when it can.
    pub fn problem(&self) -> Option<String> {
        self.target(Path::new(".")).err()
    }

    /// The `sslrootcert` file as the URL names it (relative paths are relative to the
    /// configuration file), for checks before connecting.
    pub fn root_cert_file(&self) -> Option<PathBuf> {
        let (_, query) = self.0.split_once('?')?;
        ::url::form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "sslrootcert")
            .map(|(_, value)| PathBuf::from(&*value))
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        let text = &self.0;
        let Some(scheme_end) = text.find("://").map(|at| at + 3) else {
            return "[unparsable URL]".to_owned();
        };
        let rest = &text[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let mut out = text[..scheme_end].to_owned();
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        let tail = &rest[authority_end..];
        match tail.split_once('?') {
            Some((path, query)) => {
                out.push_str(path);
                out.push('?');
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| {
                        // Decoded, as `target` hands it to the driver.
                        let is_password = ::url::form_urlencoded::parse(pair.as_bytes())
                            .next()
                            .is_some_and(|(name, _)| name == "password");
                        if is_password {
                            "password=***".to_owned()
                        } else {
                            pair.to_owned()
                        }
                    })
                    .collect();
                out.push_str(&pairs.join("&"));
            }
            None => out.push_str(tail),
        }
        out
    }

    /// The driver's configuration and ours; a relative `sslrootcert` is taken relative to
    /// `base` (the configuration file's directory). The error names the part at fault.
    pub(crate) fn target(&self, base: &Path) -> Result<Target, String> {
        let text = self.0.trim();
        if !SCHEMES.iter().any(|scheme| text.starts_with(scheme)) {
            return Err("must be a postgres:// or postgresql:// URL".to_owned());
        }
        let (head, query) = text.split_once('?').unwrap_or((text, ""));
        let mut tls = None;
        let mut root_certs = None;
        let mut passed = ::url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in ::url::form_urlencoded::parse(query.as_bytes()) {
            match &*name {
                "sslmode" => {
                    tls = Some(match &*value {
                        "disable" => TlsMode::Disable,
                        "prefer" => TlsMode::Prefer,
                        "require" | "verify-full" => TlsMode::Verify,
                        _ => {
                            return Err("sslmode must be disable, prefer, require or verify-full \
                                 (require verifies the certificate as verify-full does)"
                                .to_owned())
                        }
                    })
                }
                "sslrootcert" => {
                    let path = Path::new(&*value);
                    root_certs = Some(if path.is_absolute() {
                        path.to_path_buf()
                    } else {
                        base.join(path)
                    });
                }
                "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslsni" | "passfile"
                | "service" | "requiressl" | "gssencmode" | "krbsrvname" => {
                    return Err(format!("the URL parameter {name} is not supported"));
                }
                _ => {
                    passed.append_pair(&name, &value);
                }
            }
        }
        let passed = passed.finish();
        let rebuilt = if passed.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{passed}")
        };
        // The driver's messages name the option, never its value.
        let mut config = postgres::Config::from_str(&rebuilt).map_err(|e| {
            match std::error::Error::source(&e) {
                Some(cause) => format!("not a usable PostgreSQL URL: {cause}"),
                None => format!("not a usable PostgreSQL URL: {e}"),
            }
        })?;
        if config.get_hosts().is_empty() {
            return Err("the URL names no host".to_owned());
        }
        if config.get_user().is_none() {
            return Err("the URL names no user".to_owned());
        }
        let local = on_this_machine(&config);
        let tls = tls.unwrap_or(if local {
            TlsMode::Prefer
        } else {
            TlsMode::Verify
        });
        if tls == TlsMode::Disable && root_certs.is_some() {
            return Err("sslrootcert needs sslmode prefer, require or verify-full".to_owned());
        }
        config.ssl_mode(match tls {
            TlsMode::Disable => postgres::config::SslMode::Disable,
            TlsMode::Prefer => postgres::config::SslMode::Prefer,
            TlsMode::Verify => postgres::config::SslMode::Require,
        });
        Ok(Target {
            config,
            tls,
            root_certs,
            local,
        })
    }
}

/// Whether every address the driver may connect to is on this machine: Unix sockets,
/// `localhost` and loopback addresses (and, when `hostaddr` is given, which the driver
/// connects to instead of the names, loopback addresses only). No one else is on the path
/// to those.
fn on_this_machine(config: &postgres::Config) -> bool {
    use postgres::config::Host;
    let hostaddrs = config.get_hostaddrs();
    if !hostaddrs.is_empty() {
        return hostaddrs.iter().all(std::net::IpAddr::is_loopback);
    }
    config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.to_canonical().is_loopback())
        }
    })
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl").field(&self.redacted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_is_redacted() {
        for (url, want) in [
            (
                "postgres://bg:s3cr%40t@db.example:5432/bearergate?sslmode=require",
                "postgres://bg:***@db.example:5432/bearergate?sslmode=require",
            ),
            (
                "postgresql://bg@db/x?password=s3cret&sslmode=disable",
                "postgresql://bg@db/x?password=***&sslmode=disable",
            ),
            ("postgres://db.example/x", "postgres://db.example/x"),
            // The driver gets the name decoded: `password` however it is spelt.
            (
                "postgres://bg@db/x?pass%77ord=s3cret&Password=x",
                "postgres://bg@db/x?password=***&Password=x",
            ),
            ("not a url s3cret", "[unparsable URL]"),
        ] {
            let store = StoreUrl::new(url);
            assert_eq!(store.redacted(), want);
            let debug = format!("{store:?}");
            assert!(!debug.contains("s3cr"), "{debug}");
        }
    }

    #[test]
    fn settings_never_show_the_password() {
        let settings: crate::Settings = toml::from_str(
            "public_url = \"https://auth.example.test\"\nlisten = \"127.0.0.1:0\"\n\
             state_dir = \"unused\"\n\
             store = \"postgres://bg:s3cret@db.example/issuer?sslmode=verify-full\"\n",
        )
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(
            debug.contains("postgres://bg:***@db.example/issuer"),
            "{debug}"
        );
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(settings.problems().is_empty(), "{:?}", settings.problems());
        let bad: crate::Settings = toml::from_str(
            "public_url = \"https://auth.example.test\"\nlisten = \"127.0.0.1:0\"\n\
             state_dir = \"unused\"\nstore = \"mysql://bg:s3cret@db/x\"\n",
        )
        .unwrap();
        let problems = bad.problems();
        assert!(
            problems.iter().any(|(key, _)| *key == "store"),
            "{problems:?}"
        );
        assert!(!format!("{problems:?}").contains("s3cret"));
    }

    #[test]
    fn our_parameters_are_taken_out() {
        let url = StoreUrl::new(
            "postgres://bg:pw@127.0.0.1:6543/issuer?sslmode=verify-full&sslrootcert=ca.pem\
             &connect_timeout=3&application_name=bearergate",
        );
        let target = url.target(Path::new("/etc/bearergate")).unwrap();
        assert_eq!(target.tls, TlsMode::Verify);
        assert_eq!(
            target.root_certs.as_deref(),
            Some(Path::new("/etc/bearergate/ca.pem"))
        );
        assert_eq!(url.root_cert_file(), Some(PathBuf::from("ca.pem")));
        assert_eq!(target.config.get_dbname(), Some("issuer"));
        assert_eq!(target.config.get_user(), Some("bg"));
        assert_eq!(target.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(target.config.get_ports(), [6543]);
        assert_eq!(
            target.config.get_connect_timeout(),
            Some(&std::time::Duration::from_secs(3))
        );
        assert_eq!(
            target.config.get_ssl_mode(),
            postgres::config::SslMode::Require
        );
        let plain = StoreUrl::new("postgresql://bg@localhost/x?sslmode=disable");
        assert_eq!(plain.target(Path::new(".")).unwrap().tls, TlsMode::Disable);
        let default = StoreUrl::new("postgresql://bg@localhost/x");
        assert_eq!(default.target(Path::new(".")).unwrap().tls, TlsMode::Prefer);
    }

    /// Without `sslmode`, a database across a network gets verified TLS: libpq's `prefer`
    /// falls back to plaintext whenever the server (or anyone on the path, answering for
    /// it) says it has no TLS, and then hands a password to whoever asks for it in clear.
    /// Only a database on this machine keeps `prefer`.
    #[test]
    fn without_sslmode_only_a_local_database_may_go_without_tls() {
        let mode = |url: &str| StoreUrl::new(url).target(Path::new(".")).unwrap().tls;
        for remote in [
            "postgres://bg:pw@db.example.com/x",
            "postgres://bg:pw@10.0.0.7:5432/x",
            "postgres://bg:pw@[2001:db8::7]/x",
            "postgres://bg:pw@localhost,db.example.com/x",
            "postgres://bg:pw@localhost/x?hostaddr=10.0.0.7",
        ] {
            assert_eq!(mode(remote), TlsMode::Verify, "{remote}");
        }
        for local in [
            "postgres://bg:pw@localhost/x",
            "postgres://bg:pw@127.0.0.1:6543/x",
            "postgres://bg:pw@[::1]/x",
            "postgres://bg@%2Frun%2Fpostgresql/x",
            "postgres://bg:pw@localhost/x?hostaddr=127.0.0.1",
        ] {
            assert_eq!(mode(local), TlsMode::Prefer, "{local}");
        }
        // Said outright, it is the admin's choice.
        let prefer = "postgres://bg:pw@db.example.com/x?sslmode=prefer";
        assert_eq!(mode(prefer), TlsMode::Prefer);
        assert_eq!(
            mode("postgres://bg:pw@db.example.com/x?sslmode=disable"),
            TlsMode::Disable
        );
    }

    #[test]
    fn problems_name_the_part_not_the_value() {
        for (url, part) in [
            ("mysql://bg:s3cret@db/x", "postgres://"),
            ("postgres://bg:s3cret@db/x?sslmode=verify-ca", "sslmode"),
            ("postgres://bg:s3cret@db/x?sslmode=allow", "sslmode"),
            ("postgres://bg:s3cret@db/x?sslcert=c.pem", "sslcert"),
            ("postgres://bg:s3cret@db/x?nonsense=1", "nonsense"),
            ("postgres://bg:s3cret@db:notaport/x", "port"),
            ("postgres://bg:s3cret@/x", "host"),
            ("postgres://db/x", "user"),
            (
                "postgres://bg:s3cret@db/x?sslmode=disable&sslrootcert=ca.pem",
                "sslrootcert",
            ),
        ] {
            let problem = StoreUrl::new(url).problem().expect(url);
            assert!(problem.contains(part), "{url}: {problem}");
            assert!(!problem.contains("s3cret"), "{url}: {problem}");
        }
        assert_eq!(
            StoreUrl::new("postgres://bg:pw@db.example/issuer").problem(),
            None
        );
    }
}
