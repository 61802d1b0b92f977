//! Request parameters: `application/x-www-form-urlencoded` bodies and queries, and the
//! client credentials of RFC 6749 §2.3.1 (HTTP Basic or the body).

use std::collections::HashMap;

use authz::model::{AuthorizationRequest, ClientCredentials, CredentialsVia};
use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use secrecy::SecretString;

/// Parameters that may be sent more than once: RFC 8707 `resource`, one per service.
const REPEATABLE: [&str; 1] = ["resource"];
/// At most this many values of a repeatable parameter are kept; more is an error (the
/// logic refuses more than [`authz::resource::MAX_RESOURCES`] anyway, with its own code).
const MAX_REPEATS: usize = 64;

/// Parameters by name. RFC 6749 §3.1/§3.2: a parameter without a value counts as absent,
/// and one sent twice is an error, except the [`REPEATABLE`] ones, kept in order.
#[derive(Default)]
pub(crate) struct Params {
    single: HashMap<String, String>,
    repeated: HashMap<&'static str, Vec<String>>,
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values include passwords and client secrets: names only.
        f.debug_set()
            .entries(self.single.keys().map(String::as_str))
            .entries(self.repeated.keys())
            .finish()
    }
}

/// Why the parameters could not be read; the text is safe to show (it names a parameter,
/// never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParamError(pub(crate) String);

impl Params {
    /// Parses `a=b&c=d` (a query or a form body).
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, ParamError> {
        let mut params = HashMap::new();
        let mut repeated: HashMap<&'static str, Vec<String>> = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(bytes) {
            if value.is_empty() {
                continue;
            }
            if let Some(repeatable) = REPEATABLE.iter().find(|r| **r == name) {
                let values = repeated.entry(repeatable).or_default();
                if values.len() >= MAX_REPEATS {
                    return Err(ParamError(format!("too many {repeatable} parameters")));
                }
                values.push(value.into_owned());
                continue;
            }
            if params
                .insert(name.to_string(), value.into_owned())
                .is_some()
            {
                // The name is the sender's choice and lands on an error page: echo it only
                // when it could be a parameter name, so no sentence can be planted there.
                let plain =
                    name.len() <= 32 && name.bytes().all(|c| c.is_ascii_lowercase() || c == b'_');
                return Err(ParamError(if plain {
                    format!("parameter {name} is repeated")
                } else {
                    "a parameter is repeated".to_owned()
                }));
            }
        }
        Ok(Self {
            single: params,
            repeated,
        })
    }

    /// A form body: the content type must say so.
    pub(crate) fn form(headers: &HeaderMap, body: &[u8]) -> Result<Self, ParamError> {
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                mime.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form {
            return Err(ParamError(
                "the body must be application/x-www-form-urlencoded".to_owned(),
            ));
        }
        Self::parse(body)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.single.get(name).map(String::as_str)
    }

    pub(crate) fn owned(&self, name: &str) -> Option<String> {
        self.single.get(name).cloned()
    }

    /// Takes a parameter out (for secrets, so that only one copy lives).
    pub(crate) fn take(&mut self, name: &str) -> Option<String> {
        self.single.remove(name)
    }

    /// Every value of a [`REPEATABLE`] parameter, in the order sent.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.repeated.get(name).cloned().unwrap_or_default()
    }

    /// The authorization request parameters, wherever they came from.
    pub(crate) fn authorization_request(&self) -> AuthorizationRequest {
        AuthorizationRequest {
            response_type: self.owned("response_type"),
            client_id: self.owned("client_id"),
            redirect_uri: self.owned("redirect_uri"),
            scope: self.owned("scope"),
            state: self.owned("state"),
            code_challenge: self.owned("code_challenge"),
            code_challenge_method: self.owned("code_challenge_method"),
            nonce: self.owned("nonce"),
            response_mode: self.owned("response_mode"),
            resource: self.all("resource"),
        }
    }
}

/// The non-empty parameters of an authorization request, in a fixed order: the consent
/// form's hidden fields and the query a sign-in returns to.
pub(crate) fn authorization_fields(request: &AuthorizationRequest) -> Vec<(&'static str, String)> {
    let fields = [
        ("response_type", &request.response_type),
        ("client_id", &request.client_id),
        ("redirect_uri", &request.redirect_uri),
        ("scope", &request.scope),
        ("state", &request.state),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", &request.code_challenge_method),
        ("nonce", &request.nonce),
        ("response_mode", &request.response_mode),
    ];
    let resources = request
        .resource
        .iter()
        .filter(|value| !value.is_empty())
        .map(|value| ("resource", value.clone()));
    fields
        .into_iter()
        .filter_map(|(name, value)| {
            value
                .as_ref()
                .filter(|value| !value.is_empty())
                .map(|value| (name, value.clone()))
        })
        .chain(resources)
        .collect()
}

/// `a=b&c=d` of the pairs, encoded.
pub(crate) fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    query.finish()
}

/// Client credentials from the `Authorization: Basic` header and the body's `client_id` and
/// `client_secret` (which are taken out of `params`). `Err` when both carry a secret, the
/// ids disagree, or the Basic header is malformed.
pub(crate) fn client_credentials(
    headers: &HeaderMap,
    params: &mut Params,
) -> Result<ClientCredentials, ParamError> {
    let basic = basic_credentials(headers)?;
    let body_id = params.take("client_id");
    let body_secret = params.take("client_secret").map(SecretString::from);
    let Some((id, secret)) = basic else {
        let via = if body_secret.is_some() {
            CredentialsVia::Post
        } else {
            CredentialsVia::None
        };
        return Ok(ClientCredentials {
            client_id: body_id,
            secret: body_secret,
            via,
        });
    };
    if body_secret.is_some() {
        return Err(ParamError(
            "client authentication must use one method: HTTP Basic or client_secret, not both"
                .to_owned(),
        ));
    }
    if body_id.as_deref().is_some_and(|body_id| body_id != id) {
        return Err(ParamError(
            "client_id differs from the HTTP Basic user".to_owned(),
        ));
    }
    Ok(ClientCredentials {
        client_id: Some(id),
        secret: Some(secret),
        via: CredentialsVia::Basic,
    })
}

/// `Authorization: Basic base64(id ":" secret)`, where id and secret are each
/// form-urlencoded (RFC 6749 §2.3.1). `Ok(None)` without a Basic header.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, SecretString)>, ParamError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || ParamError("malformed HTTP Basic credentials".to_owned());
    let value = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    let id = form_decode(id);
    if id.is_empty() {
        return Err(malformed());
    }
    Ok(Some((id, SecretString::from(form_decode(secret)))))
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space, `%XX` a byte).
fn form_decode(text: &str) -> String {
    // Parsing "=value" yields one pair with an empty name and the decoded value.
    url::form_urlencoded::parse(format!("={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// The `Authorization: Bearer` token, if that is what the header carries.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use secrecy::ExposeSecret;

    fn with_auth(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn empty_is_absent_and_repeats_are_refused() {
        let params = Params::parse(b"a=1&b=&c=x+y%21").unwrap();
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some("x y!"));
        let error = Params::parse(b"a=1&a=2").unwrap_err();
        assert!(error.0.contains("a is repeated"));
    }

    #[test]
    fn resource_may_repeat_and_round_trips_through_the_fields() {
        let params = Params::parse(
            b"client_id=app&resource=imap%3A%2F%2Fh&resource=&resource=smtp%3A%2F%2Fh",
        )
        .unwrap();
        let request = params.authorization_request();
        assert_eq!(request.resource, ["imap://h", "smtp://h"]);
        assert!(Params::parse(b"a=1").unwrap().all("resource").is_empty());
        // The consent form's hidden fields and the sign-in return query carry each one.
        let fields = authorization_fields(&request);
        let query = encode_query(fields.iter().map(|(n, v)| (*n, v.as_str())));
        let again = Params::parse(query.as_bytes())
            .unwrap()
            .authorization_request();
        assert_eq!(again, request);
        let flood = "resource=x&".repeat(MAX_REPEATS + 1);
        assert!(Params::parse(flood.as_bytes()).is_err());
    }

    #[test]
    fn repeated_parameter_names_are_echoed_only_when_plain() {
        let error = Params::parse(b"client_id=1&client_id=2").unwrap_err();
        assert!(error.0.contains("client_id"), "{}", error.0);
        // A name an attacker chose is not repeated back on our pages (content spoofing).
        let spoof = b"Call+us%21=1&Call+us%21=2";
        let error = Params::parse(spoof).unwrap_err();
        assert!(!error.0.contains("Call"), "{}", error.0);
        let long = format!("{0}=1&{0}=2", "a".repeat(100));
        let error = Params::parse(long.as_bytes()).unwrap_err();
        assert!(!error.0.contains("aaaa"), "{}", error.0);
    }

    #[test]
    fn form_needs_its_content_type() {
        let mut headers = HeaderMap::new();
        assert!(Params::form(&headers, b"a=1").is_err());
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        assert_eq!(Params::form(&headers, b"a=1").unwrap().get("a"), Some("1"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // id "my client", secret "p:ss%" — encoded per RFC 6749 §2.3.1.
        let encoded = STANDARD.encode("my+client:p%3Ass%25");
        let headers = with_auth(&format!("Basic {encoded}"));
        let mut params = Params::parse(b"client_id=my+client").unwrap();
        let credentials = client_credentials(&headers, &mut params).unwrap();
        assert_eq!(credentials.client_id.as_deref(), Some("my client"));
        assert_eq!(credentials.secret.unwrap().expose_secret(), "p:ss%");
        assert_eq!(credentials.via, CredentialsVia::Basic);
    }

    #[test]
    fn two_methods_or_disagreeing_ids_are_refused() {
        let headers = with_auth(&format!("basic {}", STANDARD.encode("a:b")));
        let mut both = Params::parse(b"client_secret=b").unwrap();
        assert!(client_credentials(&headers, &mut both).is_err());
        let mut other_id = Params::parse(b"client_id=z").unwrap();
        assert!(client_credentials(&headers, &mut other_id).is_err());
        assert!(client_credentials(&with_auth("Basic !!!"), &mut Params::default()).is_err());
    }

    #[test]
    fn body_credentials() {
        let mut params = Params::parse(b"client_id=a&client_secret=s&grant_type=x").unwrap();
        let credentials = client_credentials(&HeaderMap::new(), &mut params).unwrap();
        assert_eq!(credentials.via, CredentialsVia::Post);
        assert_eq!(params.get("client_secret"), None);
        let mut public = Params::parse(b"client_id=a").unwrap();
        let credentials = client_credentials(&HeaderMap::new(), &mut public).unwrap();
        assert_eq!(credentials.via, CredentialsVia::None);
        assert!(credentials.secret.is_none());
    }

    #[test]
    fn bearer() {
        assert_eq!(
            bearer_token(&with_auth("Bearer abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(
            bearer_token(&with_auth("bearer  abc ")).as_deref(),
            Some("abc")
        );
        assert_eq!(bearer_token(&with_auth("Basic abc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
