//! The built-in authorization server's HTTP layer: the OAuth endpoints (JSON) and the pages a
//! person sees (sign-in, consent, device code entry), as one axum [`Router`].
//!
//! Everything that decides lives in [`authz::AuthServer`]; this crate parses requests into
//! its types, calls one method, and renders what comes back. The only state kept here is
//! what belongs to browsers and addresses: sessions, CSRF tokens and rate limits.
//!
//! - **Calling the logic.** `AuthServer` methods are synchronous and touch the store (SQLite
//!   on disk), so every call goes through [`tokio::task::spawn_blocking`]: a slow disk never
//!   stalls the runtime's worker threads. The router therefore needs a multi-threaded (or at
//!   least blocking-capable) tokio runtime.
//! - **The peer address.** The proxy serves the router with hyper per connection, where
//!   axum's `ConnectInfo` is not available. It inserts [`PeerAddr`] as a request extension
//!   on every request of a connection instead; handlers read it for the per-address limits
//!   and fall back to `0.0.0.0` (one shared bucket) when it is absent, as in tests.
//! - **Pages.** Server-rendered (minijinja, auto-escaped), no JavaScript, one session cookie,
//!   a CSRF token in every form, `303 See Other` after every successful POST.
//! - **Headers.** Every response carries the security headers of [`headers`]; bodies are
//!   limited to [`BODY_LIMIT`].
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

mod api;
mod app;
pub mod autoconfig;
mod call;
mod form;
mod headers;
mod pages;
mod ratelimit;
mod session;
mod templates;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;

pub use crate::templates::TEMPLATE_NAMES;

/// The largest request body any endpoint reads: 64 KiB, far above any form or registration
/// document a client sends, as RFC 7591 implementations commonly cap it.
pub const BODY_LIMIT: usize = 65_536;

/// Checks a password; the proxy implements it over the backend login or a passwd-file.
pub trait PasswordCheck: Send + Sync + 'static {
    /// `Ok(true)` password right, `Ok(false)` wrong, `Err(text)` could not check (backend
    /// down). The text is logged, never shown; it must not contain the password.
    fn check<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>>;
}

/// What the router needs.
pub struct WebConfig {
    /// The logic.
    pub server: Arc<authz::AuthServer>,
    /// How passwords are checked at sign-in.
    pub passwords: Arc<dyn PasswordCheck>,
    /// Maps what a person typed to the mail user (trim, lower-case, default domain…);
    /// supplied by the proxy so that the sign-in page and IMAP logins agree on who is who.
    pub normalise_user: Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// Admin overrides: a file `NAME.html` there replaces the built-in template of that name
    /// (see [`TEMPLATE_NAMES`]); `style.css` there replaces the stylesheet.
    pub templates_dir: Option<PathBuf>,
    /// `true`: the session cookie is `__Host-bearergate; Secure`. `false` only for a plain
    /// `http` issuer (tests), where browsers would drop a `Secure` cookie; an `https` issuer
    /// gets `Secure` cookies (and HSTS) even with `false`, as behind a TLS terminator.
    pub secure_cookies: bool,
    /// Failed sign-ins per address and account.
    pub signin_limits: authz::signin::SignInLimits,
    /// The mail side, for the autoconfiguration documents ([`autoconfig`]).
    pub mail: autoconfig::MailServices,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("server", &self.server)
            .field("templates_dir", &self.templates_dir)
            .field("secure_cookies", &self.secure_cookies)
            .field("signin_limits", &self.signin_limits)
            .field("mail", &self.mail)
            .finish_non_exhaustive()
    }
}

/// The peer address of the connection a request came on. The proxy inserts it as a request
/// extension (`request.extensions_mut().insert(PeerAddr(addr))`) for every request it hands
/// to the router; without it the per-address limits treat every request as `0.0.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// Why the router could not be built: the admin's fault, found at start.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// An override template did not parse.
    #[error("template {name}: {source}")]
    Template {
        /// The template's file name.
        name: String,
        /// What minijinja said (with the line).
        #[source]
        source: minijinja::Error,
    },
    /// The templates directory or a file in it could not be read.
    #[error("templates_dir {path}: {source}")]
    TemplatesDir {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The issuer identifier is not a URL with an origin (checked at load, so only a
    /// programming error reaches this).
    #[error("issuer {0:?} is not an http(s) URL")]
    Issuer(String),
    /// The system random generator failed while making the CSRF key.
    #[error("the system random generator failed")]
    Random,
}

/// The router serving every endpoint of [`authz::paths`] and the pages. Serve it with the
/// peer address in a [`PeerAddr`] extension.
pub fn router(config: WebConfig) -> Result<Router, WebError> {
    let app = app::App::new(config)?;
    Ok(app::routes(Arc::new(app)))
}
