//! [`AuthServer`]: every endpoint's logic. The methods here are the public face; the work is
//! in the modules named in each doc comment.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;

use crate::error::{AuthorizeError, OAuthError};
use crate::keys::KeyRing;
use crate::model::{
    AccessClaims, AuthorizationRequest, ClientCredentials, DeviceAuthorizationResponse,
    DevicePrompt, PendingAuthorization, TokenRejection, TokenRequest, TokenResponse,
};
use crate::settings::Settings;
use crate::store::{ClientRecord, Store, StoreError, UnixTime};

/// The clock the server reads; tests set their own.
pub type Clock = Arc<dyn Fn() -> UnixTime + Send + Sync>;

/// The authorization server. Cheap to share behind an `Arc`; every method is synchronous and
/// quick (a few store statements), so the HTTP layer may call it from a blocking task.
pub struct AuthServer {
    pub(crate) settings: Settings,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Clock,
    /// The signing keys, parsed (module `keys`).
    pub(crate) keys: KeyRing,
    pub(crate) rng: SystemRandom,
    /// Access tokens whose signature is known good (module `verified`).
    pub(crate) verified: crate::verified::VerifiedTokens,
    /// The key of self-contained client ids (module `native`).
    pub(crate) native_ids: crate::native::NativeIds,
}

/// The system clock in Unix seconds (0 if the system clock is before 1970).
fn system_clock() -> UnixTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            UnixTime::try_from(elapsed.as_secs()).unwrap_or(UnixTime::MAX)
        })
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("issuer", &self.settings.public_url)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AuthServer {
    /// Opens the server over `store`: loads the signing keys, making the first one if there
    /// is none, and the key of self-contained client ids, likewise.
    pub fn new(settings: Settings, store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let clock: Clock = Arc::new(system_clock);
        let rng = SystemRandom::new();
        let keys = KeyRing::load(store.as_ref(), &rng, clock())?;
        let native_ids = crate::native::NativeIds::load(store.as_ref(), &rng)?;
        Ok(Self {
            settings,
            store,
            clock,
            keys,
            rng,
            verified: crate::verified::VerifiedTokens::default(),
            native_ids,
        })
    }

    /// Replaces the clock (tests).
    pub fn with_clock(self, clock: Clock) -> Self {
        Self { clock, ..self }
    }

    /// The issuer identifier (`public_url`).
    pub fn issuer(&self) -> &str {
        &self.settings.public_url
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// RFC 8414 metadata (`openid = false`) or OpenID discovery (`true`): only what is
    /// implemented (module `metadata`).
    pub fn metadata(&self, openid: bool) -> serde_json::Value {
        crate::metadata::document(&self.settings.public_url, openid)
    }

    /// The public signing keys (current and those retired while their tokens live). Keys are
    /// re-read from the store when the cache is a minute old, so that a key another instance
    /// made is published here too; a store failure serves the cached keys.
    pub fn jwks(&self) -> serde_json::Value {
        let now = (self.clock)();
        if self.keys.is_stale(now) {
            if let Err(error) = self.keys.reload(self.store.as_ref(), now) {
                tracing::error!(%error, "re-reading signing keys failed; serving cached ones");
            }
        }
        self.keys.jwks()
    }

    /// Checks an authorization request before anyone signs in (module `grants::code`).
    ///
    /// An unregistered client id passes here even when registration is required: an
    /// override user may still approve it ([`AuthServer::approve`] decides).
    pub fn authorize(
        &self,
        request: &AuthorizationRequest,
    ) -> Result<PendingAuthorization, AuthorizeError> {
        self.check_authorization(request)
    }

    /// Whether `user` must be asked (no remembered consent covering the scopes). Consent is
    /// only remembered for registered clients with an https redirect: anyone can claim an
    /// unregistered id, a loopback port or a private-use scheme (RFC 8252 §8.6).
    pub fn needs_consent(
        &self,
        user: &str,
        pending: &PendingAuthorization,
    ) -> Result<bool, StoreError> {
        self.consent_needed(user, pending)
    }

    /// `user` approved: remembers the consent and issues a code; the URL to send the
    /// browser to (`code`, `state`, `iss`).
    ///
    /// Errors are [`AuthorizeError::Page`]: the client was removed meanwhile, or it is
    /// unregistered while `client_registration.require` is on and `user` is not one of
    /// `client_override_users` (`unauthorized_client`), or the store failed.
    pub fn approve(
        &self,
        user: &str,
        pending: &PendingAuthorization,
    ) -> Result<String, AuthorizeError> {
        self.approve_authorization(user, pending)
    }

    /// `user` refused: the URL to send the browser to (`error=access_denied`, `state`, `iss`).
    pub fn deny(&self, pending: &PendingAuthorization) -> String {
        self.deny_authorization(pending)
    }

    /// The token endpoint (module `grants`).
    pub fn token(
        &self,
        request: &TokenRequest,
        caller: &ClientCredentials,
    ) -> Result<TokenResponse, OAuthError> {
        self.token_endpoint(request, caller)
    }

    /// The device authorization endpoint (RFC 8628 §3.1; module `grants::device`), with the
    /// request's RFC 8707 `resource` parameters (none: the token is for every service).
    pub fn device_authorization(
        &self,
        scope: Option<&str>,
        resource: &[String],
        caller: &ClientCredentials,
    ) -> Result<DeviceAuthorizationResponse, OAuthError> {
        self.start_device_authorization(scope, resource, caller)
    }

    /// What a person confirms after typing `user_code` (any case, dash optional). Unknown,
    /// expired or used codes are `invalid_grant` with a description for the page.
    pub fn device_prompt(&self, user_code: &str) -> Result<DevicePrompt, OAuthError> {
        self.prompt_device(user_code)
    }

    /// A signed-in person approved or denied the device authorization. Approving an
    /// unregistered client while registration is required needs an override user
    /// (`unauthorized_client` otherwise).
    pub fn device_decide(
        &self,
        user_code: &str,
        user: &str,
        approve: bool,
    ) -> Result<(), OAuthError> {
        self.decide_device(user_code, user, approve)
    }

    /// RFC 7662: the caller must be a registered confidential client
    /// (module `introspection`).
    pub fn introspect(
        &self,
        caller: &ClientCredentials,
        token: &str,
    ) -> Result<serde_json::Value, OAuthError> {
        self.introspect_token(caller, token)
    }

    /// RFC 7009: revokes the grant behind a refresh or access token of the caller's.
    pub fn revoke(&self, caller: &ClientCredentials, token: &str) -> Result<(), OAuthError> {
        self.revoke_token(caller, token)
    }

    /// RFC 7591: registers a client; `api_key` is the bearer key the request carried
    /// (module `registration`). A missing or bad key (when one is needed) is
    /// `invalid_token`: HTTP 401 with `WWW-Authenticate: Bearer`. Without a key, a public
    /// native client is registered when `open_native` is on, with a self-contained client id
    /// (nothing is stored).
    pub fn register(
        &self,
        api_key: Option<&str>,
        metadata: &serde_json::Value,
    ) -> Result<serde_json::Value, OAuthError> {
        self.register_client(api_key, metadata)
    }

    /// Whether `metadata`, sent without an API key, would be an open native registration
    /// (see [`AuthServer::register`]): the HTTP layer limits those apart from the others.
    pub fn is_open_native_registration(&self, metadata: &serde_json::Value) -> bool {
        self.settings.client_registration.open_native()
            && crate::registration::is_native_metadata(metadata)
    }

    /// OpenID userinfo for a bearer access token: `invalid_token` unless it is live
    /// (`server_error` when the store cannot say).
    pub fn userinfo(&self, access_token: &str) -> Result<serde_json::Value, OAuthError> {
        self.userinfo_for(access_token)
    }

    /// The proxy's in-process check: signature, `exp` (no leeway), and the grant not
    /// revoked. Keys come from memory; the one store read is the grant.
    pub fn check_access_token(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        self.check_access(token)
    }

    /// Adds a client from the command line; its secret (shown once) when `confidential`.
    /// Redirect URIs follow the registration rules (https, loopback, private-use); with
    /// none, the client may only use the device grant.
    pub fn add_client(
        &self,
        id: &str,
        redirect_uris: &[String],
        name: Option<&str>,
        confidential: bool,
    ) -> Result<Option<String>, OAuthError> {
        self.add_admin_client(id, redirect_uris, name, confidential)
    }

    /// Every registered client.
    pub fn clients(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.store.clients()
    }

    /// Removes a client and revokes its grants; whether it existed. A self-contained client
    /// id (open native registration) is not stored, so nothing is removed, but its grants are
    /// revoked and it counts as existing when its MAC holds.
    pub fn remove_client(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.remove_client(id, (self.clock)())?;
        Ok(removed || (crate::native::is_native_id(id) && self.native_ids.open(id).is_some()))
    }

    /// Creates an API key with `permissions`; the key (`bgk_…`), shown once.
    pub fn create_api_key(&self, permissions: &[String]) -> Result<String, StoreError> {
        self.new_api_key(permissions)
    }

    /// Makes a new signing key when the current one is older than `signing_key_lifetime`,
    /// and drops retired keys whose tokens have all expired (module `keys`).
    pub fn rotate_keys(&self) -> Result<(), StoreError> {
        self.keys.rotate(
            self.store.as_ref(),
            &self.rng,
            (self.clock)(),
            self.settings.signing_key_lifetime,
            self.settings.access_token_lifetime,
        )
    }

    /// Deletes expired state; rows deleted.
    pub fn sweep(&self) -> Result<u64, StoreError> {
        self.store.sweep((self.clock)())
    }
}
