//! What the authorization server keeps: clients, API keys, grants (one per refresh-token
//! family), authorization codes, refresh tokens, device codes, consents and signing keys.
//!
//! The [`Store`] trait is synchronous and every method is one atomic step, so that the
//! grant logic above it stays plain functions and a networked database (PostgreSQL, for
//! several instances) can implement the same trait with one statement or transaction per
//! method. Secrets are never stored: codes, refresh tokens, device codes, client secrets and
//! API keys are kept as [`TokenHash`]es.
//!
//! Times are Unix seconds ([`UnixTime`]).

mod columns;
#[cfg(test)]
pub(crate) mod conformance;
mod migrations;
mod postgres;
mod sqlite;
mod steps;

use std::fmt;

pub use postgres::{PostgresStore, StoreUrl, TlsMode};
pub use sqlite::SqliteStore;

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// SHA-256 of a secret, hex-encoded: how every secret is looked up.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub String);

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is not a secret, but a short tag is enough to correlate log lines.
        write!(f, "TokenHash({}…)", self.0.get(..8).unwrap_or(&self.0))
    }
}

/// Why the store could not answer: always our fault (disk, corruption), never the client's.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("store: {0}")]
    Database(String),
    /// A row that must be unique already exists (a client id taken, say).
    #[error("store: already exists: {0}")]
    Conflict(String),
}

/// How a client proves itself at the token endpoint (RFC 7591 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// A public client (native or browser): no secret; PKCE S256 is its proof.
    None,
    /// HTTP Basic with the client id and secret.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl ClientAuthMethod {
    /// The RFC 7591 name.
    pub fn name(self) -> &'static str {
        match self {
            ClientAuthMethod::None => "none",
            ClientAuthMethod::ClientSecretBasic => "client_secret_basic",
            ClientAuthMethod::ClientSecretPost => "client_secret_post",
        }
    }

    /// From the RFC 7591 name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(ClientAuthMethod::None),
            "client_secret_basic" => Some(ClientAuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(ClientAuthMethod::ClientSecretPost),
            _ => None,
        }
    }
}

/// Who registered a client, which decides how much a person is told to trust its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisteredBy {
    /// The admin, from the command line: the name is trusted.
    Admin,
    /// RFC 7591 registration with an API key.
    ApiKey,
    /// Open RFC 7591 registration: the name is shown as unverified.
    Anonymous,
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// `client_id`.
    pub id: String,
    /// Hash of the client secret, for confidential clients.
    pub secret_hash: Option<TokenHash>,
    /// How it authenticates at the token endpoint.
    pub auth_method: ClientAuthMethod,
    /// `client_name`, as registered (unverified unless [`RegisteredBy::Admin`]).
    pub name: Option<String>,
    /// Redirect URIs, matched exactly (a loopback one on any port).
    pub redirect_uris: Vec<String>,
    /// Grant types it may use (`authorization_code`, `refresh_token`, the device code URN).
    pub grant_types: Vec<String>,
    /// Who registered it.
    pub registered_by: RegisteredBy,
    /// When.
    pub created_at: UnixTime,
}

/// A permission an API key carries.
pub const PERMISSION_CLIENT_REGISTRATION: &str = "oauth-client-registration";

/// An API key (its hash and what it may do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Hash of the key.
    pub hash: TokenHash,
    /// Permissions, e.g. [`PERMISSION_CLIENT_REGISTRATION`].
    pub permissions: Vec<String>,
    /// When it was created.
    pub created_at: UnixTime,
}

/// A grant: what a user allowed one client. Every refresh token of one family and every
/// access token minted from them carry its id, so revoking the grant ends them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// Random id (in access tokens as a claim; not a secret).
    pub id: String,
    /// The mail user.
    pub user: String,
    /// The client it was granted to.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// RFC 8707 resource indicators the user approved (`imap://host`, …): the audience of
    /// the grant's access tokens. Empty: no restriction (the audience is the issuer).
    pub resource: Vec<String>,
    /// When it was granted.
    pub created_at: UnixTime,
    /// When it was revoked (by the user, the client, or reuse of a spent refresh token).
    pub revoked_at: Option<UnixTime>,
}

/// An authorization code, bound to everything the token request must repeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// Hash of the code.
    pub hash: TokenHash,
    /// The user who approved.
    pub user: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The exact `redirect_uri` of the authorization request.
    pub redirect_uri: String,
    /// The PKCE S256 challenge (`None` only for a confidential client that sent none).
    pub code_challenge: Option<String>,
    /// Approved scopes, space-separated.
    pub scope: String,
    /// Approved RFC 8707 resource indicators (empty: none asked for).
    pub resource: Vec<String>,
    /// When it stops being redeemable.
    pub expires_at: UnixTime,
    /// Failed redemptions so far (wrong verifier, client or redirect).
    pub failed_attempts: u32,
    /// Set once redeemed: the grant it started. A second redemption revokes that grant.
    pub grant_id: Option<String>,
}

/// A refresh token: one member of a grant's family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Hash of the token.
    pub hash: TokenHash,
    /// The grant (family) it belongs to.
    pub grant_id: String,
    /// When it stops being usable.
    pub expires_at: UnixTime,
    /// When it was exchanged for its successor; reuse after that revokes the family.
    pub spent_at: Option<UnixTime>,
}

/// Where a device authorization (RFC 8628) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Waiting for the user.
    Pending,
    /// The user approved; the next poll gets tokens.
    Approved {
        /// Who approved.
        user: String,
    },
    /// The user said no.
    Denied,
    /// Tokens were issued; further polls fail.
    Finished,
}

/// A device authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Hash of the device code (the client's secret handle).
    pub device_hash: TokenHash,
    /// The user code, normalised (upper case, no dash): what a person types.
    pub user_code: String,
    /// The client that asked.
    pub client_id: String,
    /// Requested scopes, space-separated.
    pub scope: String,
    /// Requested RFC 8707 resource indicators (empty: none asked for).
    pub resource: Vec<String>,
    /// When both codes die.
    pub expires_at: UnixTime,
    /// Seconds the client must wait between polls.
    pub interval: u32,
    /// When the client last polled.
    pub last_poll: Option<UnixTime>,
    /// Where it stands.
    pub status: DeviceStatus,
}

/// A signing key of the issuer.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `kid`.
    pub kid: String,
    /// `alg` (`ES256`).
    pub algorithm: String,
    /// The private key, PKCS#8 DER.
    pub private_pkcs8: Vec<u8>,
    /// When it became the signing key.
    pub created_at: UnixTime,
    /// When a newer key took over; it stays published until tokens it signed have expired.
    pub retired_at: Option<UnixTime>,
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("private_pkcs8", &"[redacted]")
            .field("created_at", &self.created_at)
            .field("retired_at", &self.retired_at)
            .finish()
    }
}

/// The authorization server's state. Every method is one atomic step.
pub trait Store: Send + Sync + fmt::Debug {
    /// Adds a client; [`StoreError::Conflict`] when the id is taken.
    fn insert_client(&self, client: &ClientRecord) -> Result<(), StoreError>;
    /// One client.
    fn client(&self, id: &str) -> Result<Option<ClientRecord>, StoreError>;
    /// Every client, by id.
    fn clients(&self) -> Result<Vec<ClientRecord>, StoreError>;
    /// Removes a client and revokes its grants; whether it existed.
    fn remove_client(&self, id: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Adds an API key.
    fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// The API key with this hash.
    fn api_key(&self, hash: &TokenHash) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Adds a grant.
    fn insert_grant(&self, grant: &GrantRecord) -> Result<(), StoreError>;
    /// One grant.
    fn grant(&self, id: &str) -> Result<Option<GrantRecord>, StoreError>;
    /// Revokes a grant (and with it its refresh tokens); whether it was active.
    fn revoke_grant(&self, id: &str, now: UnixTime) -> Result<bool, StoreError>;

    /// Adds an authorization code.
    fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError>;
    /// The code with this hash, redeemed or not.
    fn code(&self, hash: &TokenHash) -> Result<Option<CodeRecord>, StoreError>;
    /// Counts a failed redemption; the new count.
    fn code_failed(&self, hash: &TokenHash) -> Result<u32, StoreError>;
    /// Marks the code redeemed for `grant_id`, only if nobody redeemed it before: `true`
    /// for the one caller that wins.
    fn redeem_code(&self, hash: &TokenHash, grant_id: &str) -> Result<bool, StoreError>;
    /// Deletes a code (dead after too many failures).
    fn delete_code(&self, hash: &TokenHash) -> Result<(), StoreError>;

    /// Adds a refresh token.
    fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError>;
    /// The refresh token with this hash, spent or not.
    fn refresh(&self, hash: &TokenHash) -> Result<Option<RefreshRecord>, StoreError>;
    /// Marks `old` spent and adds `new`, only if `old` was unspent: `true` for the one caller
    /// that wins; `false` means `old` was spent already (reuse).
    fn rotate_refresh(
        &self,
        old: &TokenHash,
        new: &RefreshRecord,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Adds a device authorization; [`StoreError::Conflict`] when its user code is taken.
    fn insert_device(&self, device: &DeviceRecord) -> Result<(), StoreError>;
    /// The device authorization with this device-code hash.
    fn device(&self, hash: &TokenHash) -> Result<Option<DeviceRecord>, StoreError>;
    /// The device authorization with this (normalised) user code.
    fn device_by_user_code(&self, user_code: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// Records a poll: stores `now` as `last_poll` and `interval` as the interval (raised
    /// after a `slow_down`); the previous `last_poll`, `None` on the first poll or when there
    /// is no such device code.
    fn device_polled(
        &self,
        hash: &TokenHash,
        now: UnixTime,
        interval: u32,
    ) -> Result<Option<UnixTime>, StoreError>;
    /// Sets a pending authorization's status (approved or denied); `false` when it was not
    /// pending any more.
    fn decide_device(&self, user_code: &str, status: &DeviceStatus) -> Result<bool, StoreError>;
    /// Moves an approved authorization to finished: `true` for the one caller that wins.
    fn finish_device(&self, hash: &TokenHash) -> Result<bool, StoreError>;

    /// The scopes `user` already allowed `client_id`, space-separated.
    fn consent(&self, user: &str, client_id: &str) -> Result<Option<String>, StoreError>;
    /// Remembers that `user` allowed `client_id` these scopes.
    fn put_consent(
        &self,
        user: &str,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<(), StoreError>;

    /// Signing keys, newest first.
    fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Adds a signing key.
    fn insert_signing_key(&self, key: &KeyRecord) -> Result<(), StoreError>;
    /// Makes `fresh` the signing key, atomically against other instances sharing the store:
    /// inserts it and retires every other unretired key (at `fresh.created_at`), unless an
    /// unretired key created after `newer_than` exists — another instance rotated first.
    /// `true` when `fresh` went in. `UnixTime::MIN` inserts only into a store with no
    /// unretired key; `UnixTime::MAX` always inserts.
    fn rotate_signing_key(
        &self,
        fresh: &KeyRecord,
        newer_than: UnixTime,
    ) -> Result<bool, StoreError>;
    /// Marks a key retired at `now`.
    fn retire_signing_key(&self, kid: &str, now: UnixTime) -> Result<(), StoreError>;
    /// Deletes a retired key.
    fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError>;

    /// The server secret called `name`: the one stored, or `fresh` stored under that name
    /// when there was none, in one atomic step, so that several instances sharing the store
    /// all end up with the first one written. Secrets are never deleted by [`Store::sweep`];
    /// like the signing keys they are kept in the clear (the store is private to the server).
    /// Used for the MAC of self-contained client ids (`"client-id-mac"`).
    fn server_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>, StoreError>;

    /// Deletes what can never be used again (expired codes, device authorizations and
    /// refresh tokens; grants revoked or without a live refresh token for a day); the number
    /// of rows deleted.
    fn sweep(&self, now: UnixTime) -> Result<u64, StoreError>;
}
