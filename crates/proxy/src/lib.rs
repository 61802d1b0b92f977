//! bearergate: OAuth 2.0 bearer-token login (SASL XOAUTH2 / OAUTHBEARER) in front of mail
//! servers that cannot do it. The async driver lives here; everything that parses or decides
//! is in the sans-I/O crates `codec`, `sasl` and `session` (both roles), and token checks in
//! `validator`.
//!
//! Reading order: [`server`] (starts the services and listeners, handles signals) →
//! [`reload`] (builds the shared parts and the services from a configuration, at start and
//! at each SIGHUP) → [`accept`] (who gets a session, who is turned away) → [`protocols`] (the registry: a listener's protocol → its session) →
//! [`driver`] (the one loop around any `session::Session`: read, feed, act on its requests,
//! hand over) → [`backend`] (connect, TLS, the one loop around any backend-login machine) →
//! [`relay`] (the plain byte copy). Beside them: [`listener`] (what a listener's connections
//! share), [`admission`] (connections before login per address), [`failure`] (whose fault a failed login was, and what follows from it),
//! [`throttle`] (failed-login delays and budgets), [`auth`] (token → user), [`http`] (the
//! HTTP service model), [`metrics`], [`config`], [`tls`].
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

pub mod accept;
pub mod admin;
pub mod admission;
pub mod auth;
pub mod backend;
pub mod config;
pub mod driver;
pub mod failure;
pub mod http;
pub mod issuer;
pub mod listen;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod protocols;
pub mod relay;
pub mod reload;
pub mod server;
pub mod stream;
pub mod throttle;
pub mod tls;
pub mod token;
