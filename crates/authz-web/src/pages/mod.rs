//! The pages a person sees: sign-in, consent, device code entry, sign-out. What they share:
//! rendering, redirects, the session cookie, and the checks every POST passes first
//! (origin, then CSRF).

pub(crate) mod authorize;
pub(crate) mod device;
pub(crate) mod signin;

use std::sync::Arc;

use authz::model::ClientDisplay;
use authz::paths;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use minijinja::context;

use crate::app::App;
use crate::form::{encode_query, Params};
use crate::headers::{CACHE_PUBLIC, CSP_FORMS_TO_SELF};
use crate::session::{SessionId, Visit};

/// The sign-in page.
pub(crate) const SIGNIN: &str = "/auth/signin";
/// The sign-out page.
pub(crate) const SIGNOUT: &str = "/auth/signout";
/// The stylesheet.
pub(crate) const STYLE: &str = "/auth/style.css";

/// Which Content-Security-Policy a page gets (see [`crate::headers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forms {
    /// Its forms may end in a redirect to a client: no `form-action`.
    MayLeave,
    /// Its forms only lead back here: `form-action 'self'`.
    StayHere,
}

/// Renders `template` with `context` (plus the URLs every page links to); sets the session
/// cookie when the visit has none yet.
pub(crate) fn render(
    app: &App,
    visit: Visit,
    status: StatusCode,
    template: &str,
    forms: Forms,
    context: minijinja::Value,
) -> Response {
    let context = context! {
        style_url => path_value(STYLE),
        signin_url => path_value(SIGNIN),
        signout_url => path_value(SIGNOUT),
        ..context
    };
    let html = match app.templates.render(template, context) {
        Ok(html) => html,
        Err(error) => {
            tracing::error!(%error, template, "page template failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut response = (status, Html(html)).into_response();
    if forms == Forms::StayHere {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP_FORMS_TO_SELF),
        );
    }
    if visit.fresh {
        set_cookie(app, &mut response, visit.id);
    }
    response
}

/// One of our own constant paths, for a template: marked safe so that it is written as is
/// (`/auth/signin`, not `&#x2f;auth&#x2f;signin`); only constants without markup come here.
pub(crate) fn path_value(path: &'static str) -> minijinja::Value {
    debug_assert!(path
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || b"/._-".contains(&byte)));
    minijinja::Value::from_safe_string(path.to_owned())
}

/// The error page.
pub(crate) fn error_page(
    app: &App,
    visit: Visit,
    status: StatusCode,
    title: &str,
    message: &str,
) -> Response {
    render(
        app,
        visit,
        status,
        "error.html",
        Forms::StayHere,
        context! { title, message },
    )
}

/// Our fault (the store, a task): a 500 page that says so without detail.
pub(crate) fn trouble_page(app: &App, visit: Visit) -> Response {
    error_page(
        app,
        visit,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "Something went wrong on our side. Please try again in a moment.",
    )
}

/// `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        // Only a URL the server built reaches here; one that is not a header value is a bug.
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response(),
    }
}

/// `303` to the sign-in page, which comes back to `return_to` afterwards.
pub(crate) fn to_signin(return_to: &str) -> Response {
    see_other(&format!(
        "{SIGNIN}?{}",
        encode_query([("return_to", return_to)])
    ))
}

/// The user signed in to this browser, or the `303` to sign-in that comes back to `uri`
/// (`fallback` when it has no path).
// A refusal is the response itself (the axum idiom); it is built once per request.
#[allow(clippy::result_large_err)]
pub(crate) fn signed_in(
    app: &App,
    visit: Visit,
    uri: &axum::http::Uri,
    fallback: &str,
) -> Result<String, Response> {
    match app.sessions.user(visit.id, std::time::Instant::now()) {
        Some(user) => Ok(user),
        None => {
            let here = uri
                .path_and_query()
                .map_or(fallback, |whole| whole.as_str());
            Err(to_signin(here))
        }
    }
}

/// Gives the browser session `id`.
pub(crate) fn set_cookie(app: &App, response: &mut Response, id: SessionId) {
    if let Ok(value) = HeaderValue::from_str(&app.sessions.set_cookie(id)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The session of a page request (a new one when the browser has none).
// A refusal is the response itself (the axum idiom); it is built once per request.
#[allow(clippy::result_large_err)]
pub(crate) fn visit(app: &App, headers: &HeaderMap) -> Result<Visit, Response> {
    app.sessions.visit(headers).map_err(|_| {
        tracing::error!("the system random generator failed");
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })
}

/// What every page POST passes before anything else: a readable form body, an `Origin` (or
/// `Sec-Fetch-Site`) of this server, and the CSRF token of the session (checked in constant
/// time). The session and the parameters, or the refusal.
// A refusal is the response itself (the axum idiom); it is built once per request.
#[allow(clippy::result_large_err)]
pub(crate) fn guard_post(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Visit, Params), Response> {
    let visit = visit(app, headers)?;
    let bad_request =
        |message: &str| error_page(app, visit, StatusCode::BAD_REQUEST, "Bad request", message);
    let body = body.map_err(|_| bad_request("The form was too large or could not be read."))?;
    let params = Params::form(headers, &body).map_err(|error| bad_request(&error.0))?;
    if !same_origin(app, headers) {
        return Err(error_page(
            app,
            visit,
            StatusCode::FORBIDDEN,
            "Refused",
            "This form was sent from another site, so it was refused.",
        ));
    }
    if !app.sessions.csrf_ok(visit, params.get("csrf")) {
        return Err(error_page(
            app,
            visit,
            StatusCode::FORBIDDEN,
            "Form expired",
            "This form expired; go back and try again.",
        ));
    }
    Ok((visit, params))
}

/// Whether a POST comes from our own pages: `Origin`, when present, must be the issuer's;
/// `Sec-Fetch-Site`, when present, must not name another site.
///
/// `Origin: null` is what browsers send for a form on a page with `Referrer-Policy:
/// no-referrer` (ours), and also what a sandboxed frame elsewhere sends: it passes only with
/// `Sec-Fetch-Site: same-origin`, which every browser that sends it also sends.
fn same_origin(app: &App, headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    let origin = headers.get(header::ORIGIN);
    if origin.is_some_and(|origin| origin.as_bytes() == b"null") {
        return fetch_site == Some(b"same-origin");
    }
    if let Some(origin) = origin {
        let ours = origin
            .to_str()
            .ok()
            .and_then(|origin| url::Url::parse(origin).ok())
            .is_some_and(|origin| origin.origin() == app.issuer_origin);
        if !ours {
            return false;
        }
    }
    match fetch_site {
        None | Some(b"same-origin" | b"none") => true,
        Some(_) => false,
    }
}

/// `return_to` when it is a path of this server's pages (`/auth/…`, no `//`, no scheme, no
/// `..`); the device code page otherwise. Keeps sign-in from being an open redirect.
pub(crate) fn safe_return_to(candidate: Option<&str>) -> String {
    match candidate {
        Some(path) if is_local_page(path) => path.to_owned(),
        _ => paths::DEVICE_VERIFICATION.to_owned(),
    }
}

fn is_local_page(path: &str) -> bool {
    let route = path.split(['?', '#']).next().unwrap_or(path);
    path.starts_with("/auth/")
        && !path.contains("//")
        && !path.contains('\\')
        && path.bytes().all(|byte| (0x21..=0x7e).contains(&byte))
        && !route
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
        && route != SIGNIN
        && route != SIGNOUT
}

/// How a client is named on a page: its name, else its id.
pub(crate) fn client_label(client: &ClientDisplay) -> String {
    client.name.clone().unwrap_or_else(|| client.id.clone())
}

/// `GET` the stylesheet.
pub(crate) async fn style(State(app): State<Arc<App>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_PUBLIC),
            ),
        ],
        app.templates.style().to_owned(),
    )
        .into_response()
}

/// Any other path.
pub(crate) async fn not_found(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let visit = match visit(&app, &headers) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    // No cookie for a stray request.
    let visit = Visit {
        fresh: false,
        ..visit
    };
    error_page(
        &app,
        visit,
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_stays_on_our_pages() {
        for good in [
            "/auth/authorize?client_id=a&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb",
            "/auth/device/verify?user_code=ABCD-EFGH",
            "/auth/device/verify",
        ] {
            assert_eq!(safe_return_to(Some(good)), good);
        }
        for bad in [
            "https://evil.example/auth/",
            "//evil.example/auth/",
            "/auth//evil.example",
            "/\\evil.example",
            "/auth/\\evil",
            "/other",
            "auth/authorize",
            "/auth/../x",
            "/auth/a b",
            "/auth/signin",
            "/auth/signout?x=1",
            "",
        ] {
            assert_eq!(
                safe_return_to(Some(bad)),
                paths::DEVICE_VERIFICATION,
                "{bad}"
            );
        }
        assert_eq!(safe_return_to(None), paths::DEVICE_VERIFICATION);
    }
}
