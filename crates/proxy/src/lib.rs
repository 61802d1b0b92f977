//! bearergate: OAuth 2.0 bearer-token login (SASL XOAUTH2 / OAUTHBEARER) in front of mail
//! servers that cannot do it. The async driver lives here; everything that parses or decides
//! is in the sans-I/O crates `codec`, `sasl` and `session`, and token checks in `validator`.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]

pub mod auth;
pub mod backend;
pub mod config;
pub mod driver;
pub mod failure;
pub mod http;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod protocols;
pub mod relay;
pub mod server;
pub mod stream;
pub mod throttle;
pub mod tls;
