//! The JSON endpoints: metadata, JWKS, token, device authorization, introspection,
//! revocation, registration and userinfo. Errors are `{"error", "error_description"}` with
//! the status of their [`ErrorCode`], built in [`oauth_error`] only.

use std::sync::Arc;
use std::time::Instant;

use authz::model::{ClientCredentials, CredentialsVia, TokenRequest};
use authz::{ErrorCode, OAuthError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::app::{App, Peer};
use crate::call::{blocking, Interrupted};
use crate::form::{bearer_token, client_credentials, Params};
use crate::headers::CACHE_PUBLIC;

/// The challenge after failed HTTP Basic client authentication.
const BASIC_CHALLENGE: &str = "Basic realm=\"bearergate\"";

/// `GET /.well-known/oauth-authorization-server`.
pub(crate) async fn metadata(State(app): State<Arc<App>>) -> Response {
    public_json(&app, |server| server.metadata(false)).await
}

/// `GET /.well-known/openid-configuration`.
pub(crate) async fn openid_configuration(State(app): State<Arc<App>>) -> Response {
    public_json(&app, |server| server.metadata(true)).await
}

/// `GET` the JWKS.
pub(crate) async fn jwks(State(app): State<Arc<App>>) -> Response {
    public_json(&app, authz::AuthServer::jwks).await
}

async fn public_json(
    app: &App,
    work: impl FnOnce(&authz::AuthServer) -> serde_json::Value + Send + 'static,
) -> Response {
    match blocking(&app.server, work).await {
        Ok(document) => (
            [(
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_PUBLIC),
            )],
            Json(document),
        )
            .into_response(),
        Err(_) => interrupted(),
    }
}

/// `POST` the token endpoint (RFC 6749 §3.2).
pub(crate) async fn token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let response = token_response(&app, &headers, body).await;
    no_store(response)
}

async fn token_response(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (mut params, caller) = match client_form(headers, body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let request = TokenRequest {
        grant_type: params.take("grant_type"),
        code: params.take("code"),
        redirect_uri: params.take("redirect_uri"),
        code_verifier: params.take("code_verifier"),
        refresh_token: params.take("refresh_token"),
        scope: params.take("scope"),
        device_code: params.take("device_code"),
        resource: params.all("resource"),
    };
    let via = caller.via;
    let outcome = blocking(&app.server, move |server| server.token(&request, &caller)).await;
    json_answer(outcome, via)
}

/// `POST` the device authorization endpoint (RFC 8628 §3.1). A caller without a client
/// secret is limited per address: it needs no registration, and every request stores a row.
/// (A wrong secret is refused before anything is stored.)
pub(crate) async fn device_authorization(
    State(app): State<Arc<App>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (mut params, caller) = match client_form(&headers, body) {
        Ok(parsed) => parsed,
        Err(response) => return no_store(response),
    };
    if caller.secret.is_none() {
        if let Err(wait) = app.device_starts.take(address, Instant::now()) {
            return no_store(too_many(
                "too many device authorizations from this address; try again later",
                wait,
            ));
        }
    }
    let scope = params.take("scope");
    let resource = params.all("resource");
    let via = caller.via;
    let outcome = blocking(&app.server, move |server| {
        server.device_authorization(scope.as_deref(), &resource, &caller)
    })
    .await;
    no_store(json_answer(outcome, via))
}

/// `POST` introspection (RFC 7662): `token`; `token_type_hint` is ignored (the server
/// knows every kind by its shape).
pub(crate) async fn introspect(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (mut params, caller) = match client_form(&headers, body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(token) = params.take("token") else {
        return invalid_request("the token parameter is missing");
    };
    let via = caller.via;
    let outcome = blocking(&app.server, move |server| {
        server.introspect(&caller, &token)
    })
    .await;
    json_answer(outcome, via)
}

/// The JSON answer of an endpoint's call, or its error in RFC 6749 §5.2 form.
fn json_answer<T: serde::Serialize>(
    outcome: Result<Result<T, OAuthError>, Interrupted>,
    via: CredentialsVia,
) -> Response {
    match outcome {
        Ok(Ok(answer)) => Json(answer).into_response(),
        Ok(Err(error)) => oauth_error(&error, via),
        Err(_) => interrupted(),
    }
}

/// `POST` revocation (RFC 7009): `token`, `token_type_hint`; `200` with no body when done
/// (also for a token that was unknown, §2.2).
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (mut params, caller) = match client_form(&headers, body) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let Some(token) = params.take("token") else {
        return invalid_request("the token parameter is missing");
    };
    let via = caller.via;
    match blocking(&app.server, move |server| server.revoke(&caller, &token)).await {
        Ok(Ok(())) => StatusCode::OK.into_response(),
        Ok(Err(error)) => oauth_error(&error, via),
        Err(_) => interrupted(),
    }
}

/// `POST` registration (RFC 7591): a JSON document, `Authorization: Bearer <API key>` unless
/// registration is anonymous or the client is a public native one (`open_native`). Keyless
/// registrations are limited per address, native ones (which store nothing) apart from the
/// others.
pub(crate) async fn register(
    State(app): State<Arc<App>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let api_key = bearer_token(&headers);
    let rules = &app.server.settings().client_registration;
    if api_key.is_none() && !rules.anonymous && !rules.open_native() {
        return bearer_challenge(
            &OAuthError::new(
                ErrorCode::InvalidToken,
                "registration needs an API key (Authorization: Bearer)",
            ),
            false,
        );
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_rejected(&rejection),
    };
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return invalid_request("the body must be application/json");
    }
    let Ok(metadata) = serde_json::from_slice::<serde_json::Value>(&body) else {
        let error = OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "the body is not a JSON document",
        );
        return oauth_error(&error, CredentialsVia::None);
    };
    if api_key.is_none() {
        // Parsing the metadata twice is cheaper than a stored row: the logic decides whether
        // this is an open native registration, and that decides the bucket.
        let limiter = if app.server.is_open_native_registration(&metadata) {
            Some((&app.native_registrations, "native client registrations"))
        } else if rules.anonymous {
            Some((&app.registrations, "registrations"))
        } else {
            None // refused below for want of a key, at no cost
        };
        if let Some((limiter, what)) = limiter {
            if let Err(wait) = limiter.take(address, Instant::now()) {
                return too_many(
                    &format!("too many {what} from this address; try again later"),
                    wait,
                );
            }
        }
    }
    let had_key = api_key.is_some();
    let outcome = blocking(&app.server, move |server| {
        server.register(api_key.as_deref(), &metadata)
    })
    .await;
    match outcome {
        Ok(Ok(client)) => no_store((StatusCode::CREATED, Json(client)).into_response()),
        Ok(Err(error)) if error.code.status() == 401 => bearer_challenge(&error, had_key),
        Ok(Err(error)) => oauth_error(&error, CredentialsVia::None),
        Err(_) => interrupted(),
    }
}

/// `GET` or `POST` userinfo with `Authorization: Bearer`.
pub(crate) async fn userinfo(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer_token(&headers) else {
        // RFC 6750 §3.1: no error code when the request carried no token at all.
        let error = OAuthError::new(ErrorCode::InvalidToken, "a bearer access token is needed");
        return bearer_challenge(&error, false);
    };
    match blocking(&app.server, move |server| server.userinfo(&token)).await {
        Ok(Ok(claims)) => Json(claims).into_response(),
        Ok(Err(error)) if error.code.status() == 401 => bearer_challenge(&error, true),
        Ok(Err(error)) => oauth_error(&error, CredentialsVia::None),
        Err(_) => interrupted(),
    }
}

/// A form body with client credentials; the error response when it is unusable.
// A refusal is the response itself (the axum idiom); it is built once per request.
#[allow(clippy::result_large_err)]
fn client_form(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Params, ClientCredentials), Response> {
    let body = body.map_err(|rejection| body_rejected(&rejection))?;
    let mut params = Params::form(headers, &body).map_err(|error| invalid_request(&error.0))?;
    let caller =
        client_credentials(headers, &mut params).map_err(|error| invalid_request(&error.0))?;
    Ok((params, caller))
}

/// The JSON error response of `error`; `invalid_client` after HTTP Basic gets the Basic
/// challenge (RFC 6749 §5.2).
pub(crate) fn oauth_error(error: &OAuthError, via: CredentialsVia) -> Response {
    let status =
        StatusCode::from_u16(error.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::json!({
        "error": error.code.name(),
        "error_description": error.description,
    });
    let mut response = (status, Json(body)).into_response();
    if error.code == ErrorCode::InvalidClient && via == CredentialsVia::Basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BASIC_CHALLENGE),
        );
    }
    response
}

/// A 401 with `WWW-Authenticate: Bearer`, naming `invalid_token` when a token was sent.
fn bearer_challenge(error: &OAuthError, token_sent: bool) -> Response {
    let mut response = oauth_error(error, CredentialsVia::None);
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let challenge = if token_sent {
        "Bearer error=\"invalid_token\""
    } else {
        "Bearer"
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// `429 temporarily_unavailable` with `Retry-After`.
fn too_many(description: &str, wait: std::time::Duration) -> Response {
    let error = OAuthError::new(ErrorCode::TemporarilyUnavailable, description);
    let mut response = oauth_error(&error, CredentialsVia::None);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, retry_after(wait));
    response
}

fn invalid_request(description: &str) -> Response {
    oauth_error(
        &OAuthError::new(ErrorCode::InvalidRequest, description),
        CredentialsVia::None,
    )
}

/// The body could not be read: too large, or the connection failed.
fn body_rejected(rejection: &BytesRejection) -> Response {
    let mut response = invalid_request("the request body is too large or could not be read");
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        *response.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
    }
    response
}

fn interrupted() -> Response {
    oauth_error(
        &OAuthError::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        ),
        CredentialsVia::None,
    )
}

/// `Cache-Control: no-store` and `Pragma: no-cache`: responses carrying tokens, secrets or
/// errors about them (RFC 6749 §5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `Retry-After` in whole seconds, at least 1.
pub(crate) fn retry_after(wait: std::time::Duration) -> HeaderValue {
    HeaderValue::from(wait_seconds(wait))
}

/// A wait rounded up to whole seconds, at least 1.
pub(crate) fn wait_seconds(wait: std::time::Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.max(1)
}
