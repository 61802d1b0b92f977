//! Signing in and out.
//!
//! Form fields of `POST /auth/signin`: `csrf`, `return_to`, `username`, `password`.
//! Form fields of `POST /auth/signout`: `csrf`.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use minijinja::context;

use super::{
    guard_post, render, safe_return_to, see_other, set_cookie, visit, Forms, SIGNIN, SIGNOUT,
};
use crate::api::{retry_after, wait_seconds};
use crate::app::{App, Peer};
use crate::form::Params;
use crate::session::Visit;

/// The longest user name typed at sign-in, in bytes: a mail address's 64 + 1 + 255
/// (RFC 5321 §4.5.3.1), with room to spare for none.
const MAX_USERNAME_LEN: usize = 320;

/// `GET /auth/signin?return_to=PATH`.
pub(crate) async fn show(State(app): State<Arc<App>>, uri: Uri, headers: HeaderMap) -> Response {
    let visit = match visit(&app, &headers) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let query = Params::parse(uri.query().unwrap_or("").as_bytes()).unwrap_or_default();
    let return_to = safe_return_to(query.get("return_to"));
    signin_page(&app, visit, StatusCode::OK, &return_to, "", None)
}

/// `POST /auth/signin`.
pub(crate) async fn submit(
    State(app): State<Arc<App>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (visit, mut params) = match guard_post(&app, &headers, body) {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    let return_to = safe_return_to(params.get("return_to"));
    let typed = params.owned("username").unwrap_or_default();
    let password = params.take("password").unwrap_or_default();
    if typed.len() > MAX_USERNAME_LEN || password.len() > authz::passwd::MAX_PASSWORD_LEN {
        // Refused before the limiter and the check: a password hash's work grows with the
        // password, and a backend login would carry whatever size we pass on.
        let error = Some("The user name or password is too long.");
        return signin_page(&app, visit, StatusCode::BAD_REQUEST, &return_to, "", error);
    }
    let user = (app.normalise_user)(&typed);
    if user.is_empty() || password.is_empty() {
        let error = Some("Enter your user name and password.");
        return signin_page(
            &app,
            visit,
            StatusCode::BAD_REQUEST,
            &return_to,
            &typed,
            error,
        );
    }
    let now = Instant::now();
    if let Err(wait) = app.signin.check(address, &user, now) {
        let message = format!(
            "Too many attempts, try again in {} seconds.",
            wait_seconds(wait.retry_after)
        );
        let status = StatusCode::TOO_MANY_REQUESTS;
        let mut response = signin_page(&app, visit, status, &return_to, &typed, Some(&message));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after(wait.retry_after));
        return response;
    }
    match app.passwords.check(&user, &password).await {
        Ok(true) => {}
        Ok(false) => {
            app.signin.failed(address, &user, Instant::now());
            tracing::info!(%address, "sign-in: wrong user name or password");
            let error = Some("Wrong user name or password.");
            let status = StatusCode::UNAUTHORIZED;
            return signin_page(&app, visit, status, &return_to, &typed, error);
        }
        Err(reason) => {
            tracing::warn!(%reason, "sign-in: passwords cannot be checked");
            let error = Some("We cannot check passwords right now. Please try again later.");
            let status = StatusCode::SERVICE_UNAVAILABLE;
            return signin_page(&app, visit, status, &return_to, &typed, error);
        }
    }
    app.signin.succeeded(address, &user, Instant::now());
    tracing::info!(%address, user, "sign-in");
    // A new id at sign-in: one planted in the browser before (fixation) is worth nothing.
    let Ok(id) = app.sessions.sign_in(visit.id, user, Instant::now()) else {
        return super::trouble_page(&app, visit);
    };
    let mut response = see_other(&return_to);
    set_cookie(&app, &mut response, id);
    response
}

fn signin_page(
    app: &App,
    visit: Visit,
    status: StatusCode,
    return_to: &str,
    username: &str,
    error: Option<&str>,
) -> Response {
    let context = context! {
        title => "Sign in",
        action => super::path_value(SIGNIN),
        csrf => app.sessions.csrf_token(visit.id),
        return_to,
        username,
        error,
    };
    render(app, visit, status, "signin.html", Forms::MayLeave, context)
}

/// `GET /auth/signout`: a form, since a link alone would let any page sign a person out.
pub(crate) async fn show_signout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let visit = match visit(&app, &headers) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let user = app.sessions.user(visit.id, Instant::now());
    let context = context! {
        title => "Sign out",
        action => super::path_value(SIGNOUT),
        csrf => app.sessions.csrf_token(visit.id),
        user,
    };
    render(
        &app,
        visit,
        StatusCode::OK,
        "signout.html",
        Forms::StayHere,
        context,
    )
}

/// `POST /auth/signout`: forgets the user and the session id.
pub(crate) async fn signout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (visit, _) = match guard_post(&app, &headers, body) {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    let Ok(id) = app.sessions.sign_out(visit.id) else {
        return super::trouble_page(&app, visit);
    };
    let mut response = see_other(SIGNIN);
    set_cookie(&app, &mut response, id);
    response
}
