//! The router's shared state and its routes.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use authz::{paths, AuthServer};
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{middleware, Router};

use crate::ratelimit::{AddressLimiter, BucketLimits};
use crate::session::Sessions;
use crate::templates::Templates;
use crate::{
    api, autoconfig, headers, pages, PasswordCheck, PeerAddr, WebConfig, WebError, BODY_LIMIT,
};
use authz::signin::SignInLimiter;

/// Anonymous registrations per address: 10 an hour (one back every 6 minutes).
const REGISTRATION_LIMITS: BucketLimits = BucketLimits {
    burst: 10,
    refill_every: Duration::from_secs(360),
    max_addresses: 10_000,
};

/// Open native registrations per address (no API key; nothing is stored, so this only
/// bounds the work): 30, then one a minute. A household or office behind one address sets up
/// a handful of mail apps at a time, each registering once per install.
const NATIVE_REGISTRATION_LIMITS: BucketLimits = BucketLimits {
    burst: 30,
    refill_every: Duration::from_secs(60),
    max_addresses: 10_000,
};

/// Wrong device user codes per address, across sessions: 10, then one every 6 minutes. A
/// code has 20⁸ values (RFC 8628 §6.1), so this leaves guessing hopeless.
const DEVICE_GUESS_LIMITS: BucketLimits = BucketLimits {
    burst: 10,
    refill_every: Duration::from_secs(360),
    max_addresses: 10_000,
};

/// Device authorizations started per address by callers without a client secret: 30, then
/// one every 20 seconds (180 an hour). Anyone may start one for any public client id, and
/// each is a stored row with a live user code until it expires; a device starts one per
/// sign-in, so this only ever meets a flood.
const DEVICE_START_LIMITS: BucketLimits = BucketLimits {
    burst: 30,
    refill_every: Duration::from_secs(20),
    max_addresses: 10_000,
};

/// Everything a handler needs.
pub(crate) struct App {
    pub(crate) server: Arc<AuthServer>,
    pub(crate) passwords: Arc<dyn PasswordCheck>,
    pub(crate) normalise_user: Arc<dyn Fn(&str) -> String + Send + Sync>,
    pub(crate) templates: Templates,
    pub(crate) sessions: Sessions,
    pub(crate) signin: SignInLimiter,
    pub(crate) registrations: AddressLimiter,
    pub(crate) native_registrations: AddressLimiter,
    pub(crate) device_guesses: AddressLimiter,
    pub(crate) device_starts: AddressLimiter,
    /// The issuer's origin (`https://host[:port]`), which page POSTs must come from.
    pub(crate) issuer_origin: url::Origin,
    /// Whether the issuer is https: the browser then speaks TLS to us (perhaps through a
    /// terminator in front of a plaintext listener), so cookies are `Secure` and responses
    /// carry HSTS whatever `secure_cookies` says.
    pub(crate) https: bool,
    /// The autoconfiguration documents.
    pub(crate) autoconfig: autoconfig::Documents,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("server", &self.server)
            .field("issuer_origin", &self.issuer_origin)
            .finish_non_exhaustive()
    }
}

impl App {
    pub(crate) fn new(config: WebConfig) -> Result<Self, WebError> {
        let issuer = config.server.issuer().to_owned();
        let Some(issuer_url) = url::Url::parse(&issuer)
            .ok()
            .filter(|url| url.origin().is_tuple())
        else {
            return Err(WebError::Issuer(issuer));
        };
        let https = issuer_url.scheme() == "https";
        let autoconfig =
            autoconfig::Documents::new(&issuer, &config.server.metadata(false), &config.mail);
        // `secure_cookies = false` is meant for a plain-http issuer, where browsers drop
        // `Secure` cookies; an https issuer behind a TLS terminator still gets them, or the
        // session cookie would also go out over plain http to the same host.
        let secure_cookies = config.secure_cookies || https;
        Ok(Self {
            templates: Templates::load(config.templates_dir.as_deref())?,
            sessions: Sessions::new(secure_cookies).map_err(|_| WebError::Random)?,
            signin: SignInLimiter::new(config.signin_limits),
            registrations: AddressLimiter::new(REGISTRATION_LIMITS),
            native_registrations: AddressLimiter::new(NATIVE_REGISTRATION_LIMITS),
            device_guesses: AddressLimiter::new(DEVICE_GUESS_LIMITS),
            device_starts: AddressLimiter::new(DEVICE_START_LIMITS),
            server: config.server,
            passwords: config.passwords,
            normalise_user: config.normalise_user,
            issuer_origin: issuer_url.origin(),
            https,
            autoconfig,
        })
    }

    /// Wrong device codes a session may type before entry is locked for it.
    pub(crate) fn max_attempts(&self) -> u32 {
        self.server.settings().max_attempts
    }
}

/// The client's address, from the [`PeerAddr`] extension; `0.0.0.0` without one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<PeerAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.0.ip());
        Ok(Peer(address))
    }
}

/// Every route, the body limit and the security headers.
pub(crate) fn routes(app: Arc<App>) -> Router {
    let router = Router::new()
        .route(paths::METADATA, get(api::metadata))
        .route(paths::OPENID_CONFIGURATION, get(api::openid_configuration))
        .route(paths::JWKS, get(api::jwks))
        .route(paths::TOKEN, post(api::token))
        .route(paths::DEVICE_AUTHORIZATION, post(api::device_authorization))
        .route(paths::INTROSPECTION, post(api::introspect))
        .route(paths::REVOCATION, post(api::revoke))
        .route(paths::REGISTRATION, post(api::register))
        .route(paths::USERINFO, get(api::userinfo).post(api::userinfo))
        .route(
            paths::AUTHORIZE,
            get(pages::authorize::show).post(pages::authorize::decide),
        )
        .route(
            paths::DEVICE_VERIFICATION,
            get(pages::device::show).post(pages::device::submit),
        )
        .route(
            pages::SIGNIN,
            get(pages::signin::show).post(pages::signin::submit),
        )
        .route(
            pages::SIGNOUT,
            get(pages::signin::show_signout).post(pages::signin::signout),
        )
        .route(pages::STYLE, get(pages::style))
        .route(autoconfig::PACC_PATH, get(autoconfig::pacc))
        .route(autoconfig::PACC_LEGACY_PATH, get(autoconfig::pacc))
        .route(
            autoconfig::AUTOCONFIG_WELL_KNOWN_PATH,
            get(autoconfig::thunderbird),
        )
        .route(autoconfig::AUTOCONFIG_PATH, get(autoconfig::thunderbird))
        .route(
            autoconfig::PROTECTED_RESOURCE_PATH,
            get(autoconfig::protected_resource),
        )
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::map_response(headers::security_headers));
    let router = if app.https {
        router.layer(middleware::map_response(headers::strict_transport_security))
    } else {
        router
    };
    router.with_state(app)
}
