//! The built-in OAuth 2.0 authorization server, without sockets.
//!
//! [`AuthServer`] is the whole server as plain functions over a [`store::Store`]: the HTTP
//! layer (crate `authz-web`) parses requests into the types of [`model`], calls one method,
//! and renders what comes back. Passwords are checked outside (the proxy logs in to the
//! backend, or [`passwd::PasswdFile`]); the logic here is told who signed in.
//!
//! Safe by default, where the usual seeds were not (RFC 9700):
//! - an unregistered client id gets tokens only through the device flow, or the code flow
//!   with PKCE S256 and a loopback or private-use-scheme redirect; any other redirect is
//!   refused on a page, never followed;
//! - redirect URIs match exactly (a loopback one on any port, RFC 8252 §7.3);
//! - codes are single-use and bound to client, redirect, challenge and scope; a replay
//!   revokes the grant; `max_attempts` wrong verifiers kill a code;
//! - refresh tokens are opaque, stored hashed, rotated on every use; reuse of a spent one
//!   revokes the whole family;
//! - access tokens are ES256 JWTs (`typ: at+jwt`, RFC 9068) with `kid`; keys rotate and old
//!   ones stay published while their tokens live;
//! - revocation is checked by the proxy at every login ([`AuthServer::check_access_token`]).
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

pub mod error;
pub mod model;
pub mod passwd;
pub mod resource;
pub mod settings;
pub mod signin;
pub mod store;

mod clients;
mod grants;
mod introspection;
mod jwt;
mod keys;
mod metadata;
mod native;
mod pkce;
mod redirect;
mod registration;
mod scope;
mod server;
#[cfg(test)]
mod testing;
mod tokens;
mod verified;

pub use crate::error::{AuthorizeError, ErrorCode, OAuthError};
pub use crate::native::is_native_id as is_self_contained_client_id;
pub use crate::server::AuthServer;
pub use crate::settings::Settings;

/// Paths of the endpoints under `public_url`. Metadata names them; nothing else may.
pub mod paths {
    /// RFC 8414 metadata.
    pub const METADATA: &str = "/.well-known/oauth-authorization-server";
    /// OpenID discovery.
    pub const OPENID_CONFIGURATION: &str = "/.well-known/openid-configuration";
    /// JWKS.
    pub const JWKS: &str = "/auth/jwks.json";
    /// Authorization endpoint (sign-in and consent pages).
    pub const AUTHORIZE: &str = "/auth/authorize";
    /// Token endpoint.
    pub const TOKEN: &str = "/auth/token";
    /// RFC 8628 device authorization endpoint.
    pub const DEVICE_AUTHORIZATION: &str = "/auth/device";
    /// Where a person enters a user code.
    pub const DEVICE_VERIFICATION: &str = "/auth/device/verify";
    /// RFC 7662 introspection.
    pub const INTROSPECTION: &str = "/auth/introspect";
    /// RFC 7009 revocation.
    pub const REVOCATION: &str = "/auth/revoke";
    /// RFC 7591 registration.
    pub const REGISTRATION: &str = "/auth/register";
    /// OpenID userinfo.
    pub const USERINFO: &str = "/auth/userinfo";
}

/// The mail scope (draft-ietf-mailmaint-oauth-public): what a token needs for IMAP, SMTP,
/// ManageSieve and POP3 logins through the proxy; the default when a client asks for none.
pub const MAIL_SCOPE: &str = "urn:ietf:params:oauth:scope:mail";

/// The contacts scope (draft-ietf-mailmaint-oauth-public): granted to clients that ask, so that
/// a client setting up a whole account is not refused, but it opens no mail login.
pub const CONTACTS_SCOPE: &str = "urn:ietf:params:oauth:scope:contacts";

/// The calendars scope (draft-ietf-mailmaint-oauth-public): as [`CONTACTS_SCOPE`].
pub const CALENDARS_SCOPE: &str = "urn:ietf:params:oauth:scope:calendars";

/// The device code grant type (RFC 8628).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
