//! Adding clients: RFC 7591 dynamic registration (open, or with an API key, and always open to
//! public native clients unless `open_native = false`), the command line's `clients add`, and
//! the API keys that open registration.

use serde_json::{json, Map, Value};

use crate::clients::{
    check_client_name, is_client_id, AUTHORIZATION_CODE, GRANT_TYPES, REFRESH_TOKEN,
};
use crate::error::{ErrorCode, OAuthError};
use crate::redirect;
use crate::scope::Scopes;
use crate::server::AuthServer;
use crate::store::{
    ApiKeyRecord, ClientAuthMethod, ClientRecord, RegisteredBy, StoreError, TokenHash, UnixTime,
    PERMISSION_CLIENT_REGISTRATION,
};
use crate::{tokens, DEVICE_CODE_GRANT};

/// At most this many redirect URIs per client.
const MAX_REDIRECT_URIS: usize = 20;
/// A redirect URI longer than this is refused (browsers cap URLs near 2 KiB–8 KiB; ours get
/// parameters appended).
const MAX_REDIRECT_URI_LEN: usize = 2_000;
/// A random client id colliding with a taken one is retried this many times.
const ID_ATTEMPTS: usize = 4;

fn bad_metadata(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

/// The RFC 7591 metadata this server understands, checked; other members are ignored
/// (RFC 7591 §2).
#[derive(Debug)]
struct ClientMetadata {
    redirect_uris: Vec<String>,
    auth_method: ClientAuthMethod,
    grant_types: Vec<String>,
    response_types: Vec<String>,
    client_name: Option<String>,
}

/// A member that must be a string, if present.
fn string<'a>(object: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, OAuthError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_metadata(&format!("{name} must be a string"))),
    }
}

/// A member that must be an array of strings, if present; duplicates dropped, order kept.
fn strings(object: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(value) = object.get(name).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let Some(items) = value.as_array() else {
        return Err(bad_metadata(&format!("{name} must be an array of strings")));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Some(s) = item.as_str() else {
            return Err(bad_metadata(&format!("{name} must be an array of strings")));
        };
        if !out.iter().any(|have| have == s) {
            out.push(s.to_owned());
        }
    }
    Ok(Some(out))
}

/// Checks redirect URIs for registration (also the command line's).
fn check_redirect_uris(uris: &[String]) -> Result<(), OAuthError> {
    if uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::new(
            ErrorCode::InvalidRedirectUri,
            format!("at most {MAX_REDIRECT_URIS} redirect URIs"),
        ));
    }
    for uri in uris {
        if uri.len() > MAX_REDIRECT_URI_LEN {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "redirect URI too long",
            ));
        }
        redirect::check_registrable(uri)?;
    }
    Ok(())
}

impl ClientMetadata {
    fn parse(metadata: &Value) -> Result<Self, OAuthError> {
        let Some(object) = metadata.as_object() else {
            return Err(bad_metadata("the metadata must be a JSON object"));
        };
        let grant_types = strings(object, "grant_types")?
            .unwrap_or_else(|| vec![AUTHORIZATION_CODE.to_owned(), REFRESH_TOKEN.to_owned()]);
        if grant_types.is_empty()
            || grant_types
                .iter()
                .any(|g| !GRANT_TYPES.contains(&g.as_str()))
        {
            return Err(bad_metadata(
                "grant_types may contain authorization_code, refresh_token and \
                 urn:ietf:params:oauth:grant-type:device_code",
            ));
        }
        let has = |grant: &str| grant_types.iter().any(|g| g == grant);
        if !has(AUTHORIZATION_CODE) && !has(DEVICE_CODE_GRANT) {
            return Err(bad_metadata(
                "refresh_token needs authorization_code or the device grant beside it",
            ));
        }
        let code_flow = has(AUTHORIZATION_CODE);
        // RFC 7591 §2.1: `code` goes with authorization_code, and nothing else is supported.
        let response_types = strings(object, "response_types")?.unwrap_or_else(|| {
            if code_flow {
                vec!["code".to_owned()]
            } else {
                Vec::new()
            }
        });
        if response_types.iter().any(|r| r != "code") {
            return Err(bad_metadata("response_types may only contain code"));
        }
        if code_flow != (response_types.len() == 1) {
            return Err(bad_metadata(
                "response_types [\"code\"] goes with grant type authorization_code, and only \
                 with it",
            ));
        }
        let redirect_uris = strings(object, "redirect_uris")?.unwrap_or_default();
        if code_flow && redirect_uris.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "redirect_uris is required for the authorization code grant",
            ));
        }
        check_redirect_uris(&redirect_uris)?;
        // RFC 7591 §2: the default is client_secret_basic.
        let auth_method = match string(object, "token_endpoint_auth_method")? {
            None => ClientAuthMethod::ClientSecretBasic,
            Some(name) => ClientAuthMethod::from_name(name).ok_or_else(|| {
                bad_metadata(
                    "token_endpoint_auth_method must be none, client_secret_basic or \
                     client_secret_post",
                )
            })?,
        };
        let client_name = string(object, "client_name")?.map(str::to_owned);
        if let Some(name) = &client_name {
            check_client_name(name)?;
        }
        // Checked so that a typo is reported, but not kept: a client gets what it asks for
        // at the authorization endpoint, among the supported scopes.
        if let Some(scope) = string(object, "scope")? {
            Scopes::parse(scope).map_err(|_| bad_metadata("scope names an unsupported scope"))?;
        }
        Ok(ClientMetadata {
            redirect_uris,
            auth_method,
            grant_types,
            response_types,
            client_name,
        })
    }
}

impl ClientMetadata {
    /// Whether this is a public native client (RFC 8252): no secret, and every redirect a
    /// loopback or private-use one (or none, for a device-flow client). Such a client may
    /// register without an API key when `open_native` is on.
    fn is_native(&self) -> bool {
        self.auth_method == ClientAuthMethod::None
            && self
                .redirect_uris
                .iter()
                .all(|uri| redirect::classify(uri).is_some_and(|(_, kind)| kind.is_native()))
    }
}

/// Whether `metadata` is a valid registration of a public native client.
pub(crate) fn is_native_metadata(metadata: &Value) -> bool {
    ClientMetadata::parse(metadata).is_ok_and(|m| m.is_native())
}

/// The RFC 7591 §3.2.1 answer: the client's id and the metadata it was registered with.
fn answer(client_id: &str, issued_at: UnixTime, metadata: ClientMetadata) -> Value {
    let mut answer = json!({
        "client_id": client_id,
        "client_id_issued_at": issued_at,
        "redirect_uris": metadata.redirect_uris,
        "token_endpoint_auth_method": metadata.auth_method.name(),
        "grant_types": metadata.grant_types,
        "response_types": metadata.response_types,
    });
    if let Some(name) = metadata.client_name {
        answer["client_name"] = Value::String(name);
    }
    answer
}

impl AuthServer {
    /// Who is registering: an API key with the registration permission, or anyone when
    /// registration is open. A bad key is refused even then (a client that sends one
    /// expects it to count). The error is `invalid_token` (HTTP 401 with
    /// `WWW-Authenticate: Bearer`, RFC 7591 §3 and RFC 6750 §3.1).
    fn registration_authority(&self, api_key: Option<&str>) -> Result<RegisteredBy, OAuthError> {
        let Some(key) = api_key else {
            if self.settings.client_registration.anonymous {
                return Ok(RegisteredBy::Anonymous);
            }
            return Err(OAuthError::new(
                ErrorCode::InvalidToken,
                "client registration needs an API key with the oauth-client-registration \
                 permission",
            ));
        };
        let record = self.store.api_key(&tokens::hash(key))?;
        let allowed = record.is_some_and(|record| {
            record
                .permissions
                .iter()
                .any(|p| p == PERMISSION_CLIENT_REGISTRATION)
        });
        if !allowed {
            return Err(OAuthError::new(
                ErrorCode::InvalidToken,
                "the API key is unknown or may not register clients",
            ));
        }
        Ok(RegisteredBy::ApiKey)
    }

    /// RFC 7591 §3: registers a client and answers with its id, secret and metadata.
    ///
    /// Without an API key and with `open_native`, a public native client gets a
    /// self-contained client id (module `native`) and nothing is stored; any other keyless
    /// registration needs `anonymous`.
    pub(crate) fn register_client(
        &self,
        api_key: Option<&str>,
        metadata: &Value,
    ) -> Result<Value, OAuthError> {
        let now = (self.clock)();
        let rules = &self.settings.client_registration;
        if api_key.is_none() && rules.open_native() {
            let parsed = ClientMetadata::parse(metadata)?;
            if parsed.is_native() {
                return self.register_native(parsed, now);
            }
            if !rules.anonymous {
                return Err(OAuthError::new(
                    ErrorCode::InvalidToken,
                    "client registration needs an API key with the oauth-client-registration \
                     permission, except for public native clients (token_endpoint_auth_method \
                     none, loopback or private-use redirect URIs)",
                ));
            }
        }
        let registered_by = self.registration_authority(api_key)?;
        let metadata = ClientMetadata::parse(metadata)?;
        let (secret, secret_hash) = self.new_client_secret(metadata.auth_method)?;
        let mut record = ClientRecord {
            id: String::new(),
            secret_hash,
            auth_method: metadata.auth_method,
            name: metadata.client_name.clone(),
            redirect_uris: metadata.redirect_uris.clone(),
            grant_types: metadata.grant_types.clone(),
            registered_by,
            created_at: now,
        };
        let mut inserted = false;
        for _ in 0..ID_ATTEMPTS {
            record.id = tokens::random_id(&self.rng)?;
            match self.store.insert_client(&record) {
                Ok(()) => {
                    inserted = true;
                    break;
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if !inserted {
            return Err(StoreError::Database("no free client id".to_owned()).into());
        }
        tracing::info!(client_id = %record.id, ?registered_by, "client registered");
        let mut answer = answer(&record.id, now, metadata);
        if let Some(secret) = secret {
            answer["client_secret"] = Value::String(secret);
            answer["client_secret_expires_at"] = json!(0);
        }
        Ok(answer)
    }

    /// Open native registration: the id carries the registration, signed; nothing stored.
    fn register_native(
        &self,
        metadata: ClientMetadata,
        now: UnixTime,
    ) -> Result<Value, OAuthError> {
        let id = self.native_ids.issue(
            metadata.client_name.as_deref(),
            &metadata.redirect_uris,
            &metadata.grant_types,
            now,
        )?;
        // The id is up to 2 KiB: its short form is enough to tie log lines together.
        let tag = crate::native::short_form(&id).unwrap_or_else(|| id.clone());
        tracing::info!(client_id = %tag, "native client registered (self-contained id)");
        Ok(answer(&id, now, metadata))
    }

    /// A secret and its hash for a confidential client; nothing for a public one.
    fn new_client_secret(
        &self,
        method: ClientAuthMethod,
    ) -> Result<(Option<String>, Option<TokenHash>), StoreError> {
        if method == ClientAuthMethod::None {
            return Ok((None, None));
        }
        let secret = tokens::secret(&self.rng)?;
        let hash = tokens::hash(&secret);
        Ok((Some(secret), Some(hash)))
    }

    /// The command line's `clients add`: the admin's client, its name trusted. Confidential
    /// clients authenticate with HTTP Basic (the RFC 6749 §2.3.1 method every client has).
    pub(crate) fn add_admin_client(
        &self,
        id: &str,
        redirect_uris: &[String],
        name: Option<&str>,
        confidential: bool,
    ) -> Result<Option<String>, OAuthError> {
        if !is_client_id(id) {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "a client id is 1 to 200 printable ASCII characters",
            ));
        }
        check_redirect_uris(redirect_uris)?;
        if let Some(name) = name {
            check_client_name(name)?;
        }
        let mut grant_types = vec![REFRESH_TOKEN.to_owned(), DEVICE_CODE_GRANT.to_owned()];
        if !redirect_uris.is_empty() {
            grant_types.insert(0, AUTHORIZATION_CODE.to_owned());
        }
        let auth_method = if confidential {
            ClientAuthMethod::ClientSecretBasic
        } else {
            ClientAuthMethod::None
        };
        let (secret, secret_hash) = self.new_client_secret(auth_method)?;
        let mut uris: Vec<String> = Vec::with_capacity(redirect_uris.len());
        for uri in redirect_uris {
            if !uris.contains(uri) {
                uris.push(uri.clone());
            }
        }
        let record = ClientRecord {
            id: id.to_owned(),
            secret_hash,
            auth_method,
            name: name.map(str::to_owned),
            redirect_uris: uris,
            grant_types,
            registered_by: RegisteredBy::Admin,
            created_at: (self.clock)(),
        };
        match self.store.insert_client(&record) {
            Ok(()) => Ok(secret),
            Err(StoreError::Conflict(_)) => Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "a client with this id exists",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A new API key (`bgk_…`), shown once; only its hash is kept.
    pub(crate) fn new_api_key(&self, permissions: &[String]) -> Result<String, StoreError> {
        let key = tokens::prefixed_secret(&self.rng, tokens::API_KEY_PREFIX)?;
        self.store.insert_api_key(&ApiKeyRecord {
            hash: tokens::hash(&key),
            permissions: permissions.to_vec(),
            created_at: (self.clock)(),
        })?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<ClientMetadata, OAuthError> {
        ClientMetadata::parse(&value)
    }

    #[test]
    fn defaults_follow_rfc_7591() {
        let m = parse(json!({ "redirect_uris": ["https://app.example/cb"] })).unwrap();
        assert_eq!(m.auth_method, ClientAuthMethod::ClientSecretBasic);
        assert_eq!(m.grant_types, [AUTHORIZATION_CODE, REFRESH_TOKEN]);
        assert_eq!(m.response_types, ["code"]);
    }

    #[test]
    fn redirect_uris_follow_the_rules() {
        for uri in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "http://localhost/cb",
        ] {
            let error = parse(json!({ "redirect_uris": [uri] })).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRedirectUri, "{uri}");
        }
        assert!(
            parse(json!({ "redirect_uris": ["com.example.app:/cb", "http://[::1]/cb"] })).is_ok()
        );
        let error = parse(json!({ "client_name": "x" })).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidRedirectUri);
    }

    #[test]
    fn device_only_clients_need_no_redirect() {
        let m = parse(json!({
            "grant_types": [DEVICE_CODE_GRANT, REFRESH_TOKEN],
            "token_endpoint_auth_method": "none",
        }))
        .unwrap();
        assert!(m.redirect_uris.is_empty());
        assert!(m.response_types.is_empty());
        assert_eq!(m.auth_method, ClientAuthMethod::None);
    }

    #[test]
    fn unsupported_metadata_is_refused() {
        let base = |extra: Value| {
            let mut m = json!({ "redirect_uris": ["https://app.example/cb"] });
            for (k, v) in extra.as_object().unwrap() {
                m[k] = v.clone();
            }
            parse(m).map(|_| ()).map_err(|e| e.code)
        };
        let bad = Err(ErrorCode::InvalidClientMetadata);
        assert_eq!(base(json!({ "grant_types": ["password"] })), bad);
        assert_eq!(base(json!({ "grant_types": ["implicit"] })), bad);
        assert_eq!(base(json!({ "grant_types": [REFRESH_TOKEN] })), bad);
        assert_eq!(base(json!({ "response_types": ["token"] })), bad);
        assert_eq!(
            base(json!({ "token_endpoint_auth_method": "private_key_jwt" })),
            bad
        );
        assert_eq!(base(json!({ "client_name": "a".repeat(101) })), bad);
        assert_eq!(base(json!({ "client_name": "Mail\u{202E}lieM" })), bad);
        assert_eq!(base(json!({ "scope": "openid admin" })), bad);
        assert_eq!(
            base(json!({ "redirect_uris": "https://app.example/cb" })),
            bad
        );
        assert_eq!(
            base(json!({ "logo_uri": "https://app.example/logo.png" })),
            Ok(())
        );
        assert!(parse(json!([1, 2])).is_err());
    }
}

#[cfg(test)]
mod server_tests;
