//! The authorization endpoint: check the request, make sure someone is signed in, ask for
//! consent when needed, and send the browser back to the client.
//!
//! Form fields of `POST /auth/authorize`: the authorization request's own parameters
//! (`response_type`, `client_id`, `redirect_uri`, `scope`, `state`, `code_challenge`,
//! `code_challenge_method`, `nonce`, `response_mode`; the non-empty ones), `csrf`, and
//! `action` = `approve` | `deny`. The POST checks the request again from those parameters;
//! nothing else of the form is trusted.

use std::sync::Arc;
use std::time::Instant;

use authz::model::{AuthorizationRequest, PendingAuthorization};
use authz::{paths, AuthorizeError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{
    client_label, error_page, guard_post, render, see_other, signed_in, to_signin, trouble_page,
    visit, Forms,
};
use crate::app::App;
use crate::call::blocking;
use crate::form::{authorization_fields, encode_query, Params};
use crate::session::Visit;
use crate::templates::describe_scopes;

/// `GET /auth/authorize?…`.
pub(crate) async fn show(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let visit = match visit(&app, &headers) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let params = match Params::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(params) => params,
        Err(error) => return bad_request_page(&app, visit, &error.0),
    };
    let request = params.authorization_request();
    let pending = match check(&app, visit, &request).await {
        Ok(pending) => pending,
        Err(response) => return response,
    };
    let user = match signed_in(&app, visit, &uri, paths::AUTHORIZE) {
        Ok(user) => user,
        Err(to_signin) => return to_signin,
    };
    let needs_consent = {
        let (user, pending) = (user.clone(), pending.clone());
        blocking(&app.server, move |server| {
            server.needs_consent(&user, &pending)
        })
        .await
    };
    match needs_consent {
        Ok(Ok(false)) => approve(&app, visit, user, pending).await,
        Ok(Ok(true)) => consent_page(&app, visit, &user, &request, &pending),
        Ok(Err(error)) => {
            tracing::error!(%error, "consent lookup failed");
            trouble_page(&app, visit)
        }
        Err(_) => trouble_page(&app, visit),
    }
}

/// `POST /auth/authorize`: the person's answer on the consent page.
pub(crate) async fn decide(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (visit, params) = match guard_post(&app, &headers, body) {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    let request = params.authorization_request();
    let pending = match check(&app, visit, &request).await {
        Ok(pending) => pending,
        Err(response) => return response,
    };
    let Some(user) = app.sessions.user(visit.id, Instant::now()) else {
        let fields = authorization_fields(&request);
        let query = encode_query(fields.iter().map(|(name, value)| (*name, value.as_str())));
        return to_signin(&format!("{}?{query}", paths::AUTHORIZE));
    };
    match params.get("action") {
        Some("approve") => approve(&app, visit, user, pending).await,
        Some("deny") => match blocking(&app.server, move |server| server.deny(&pending)).await {
            Ok(location) => see_other(&location),
            Err(_) => trouble_page(&app, visit),
        },
        _ => bad_request_page(&app, visit, "Choose Allow or Deny."),
    }
}

/// Runs the server's checks; the page or redirect that ends the request when they fail.
async fn check(
    app: &App,
    visit: Visit,
    request: &AuthorizationRequest,
) -> Result<PendingAuthorization, Response> {
    let request = request.clone();
    match blocking(&app.server, move |server| server.authorize(&request)).await {
        Ok(Ok(pending)) => Ok(pending),
        Ok(Err(error)) => Err(refused(app, visit, error)),
        Err(_) => Err(trouble_page(app, visit)),
    }
}

/// The answer to a refused request: an error page when the client or its redirect URI cannot
/// be trusted (never a redirect there), else back to the client with the error.
fn refused(app: &App, visit: Visit, error: AuthorizeError) -> Response {
    match error {
        AuthorizeError::Page(error) => {
            let status = if error.code.status() >= 500 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            error_page(
                app,
                visit,
                status,
                "This request cannot be completed",
                &error.description,
            )
        }
        AuthorizeError::Redirect(location) => see_other(&location),
    }
}

async fn approve(app: &App, visit: Visit, user: String, pending: PendingAuthorization) -> Response {
    match blocking(&app.server, move |server| server.approve(&user, &pending)).await {
        Ok(Ok(location)) => see_other(&location),
        Ok(Err(error)) => refused(app, visit, error),
        Err(_) => trouble_page(app, visit),
    }
}

/// A hidden field of the consent form.
#[derive(Debug, Serialize)]
struct Field<'a> {
    name: &'a str,
    value: &'a str,
}

fn consent_page(
    app: &App,
    visit: Visit,
    user: &str,
    request: &AuthorizationRequest,
    pending: &PendingAuthorization,
) -> Response {
    let fields = authorization_fields(request);
    let fields: Vec<Field<'_>> = fields
        .iter()
        .map(|(name, value)| Field { name, value })
        .collect();
    let context = context! {
        title => "Allow access?",
        action => super::path_value(paths::AUTHORIZE),
        csrf => app.sessions.csrf_token(visit.id),
        client => &pending.client,
        client_label => client_label(&pending.client),
        scopes => describe_scopes(&pending.scope),
        user,
        fields,
    };
    render(
        app,
        visit,
        StatusCode::OK,
        "consent.html",
        Forms::MayLeave,
        context,
    )
}

fn bad_request_page(app: &App, visit: Visit, message: &str) -> Response {
    error_page(
        app,
        visit,
        StatusCode::BAD_REQUEST,
        "This request cannot be completed",
        message,
    )
}
