//! Device code entry and confirmation (RFC 8628 §3.3).
//!
//! `GET /auth/device/verify` shows the entry form, `?user_code=X` the confirmation for that
//! code, `?done=approved|denied` the result. Form fields of `POST /auth/device/verify`:
//! `csrf`, `user_code`, and `action` = `lookup` (from the entry form) | `approve` | `deny`
//! (from the confirmation).
//!
//! A wrong code counts against the session (`max_attempts`, then entry is locked for it) and
//! against the address (across sessions); approving and denying count like looking up, so
//! that neither is a way around the limit.

use std::sync::Arc;
use std::time::Instant;

use authz::model::DevicePrompt;
use authz::{paths, ErrorCode, OAuthError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::Response;
use minijinja::context;

use super::{
    client_label, guard_post, render, see_other, signed_in, to_signin, trouble_page, visit, Forms,
};
use crate::api::{retry_after, wait_seconds};
use crate::app::{App, Peer};
use crate::call::blocking;
use crate::form::{encode_query, Params};
use crate::session::Visit;
use crate::templates::describe_scopes;

/// Who is asking and from where.
#[derive(Debug)]
struct Person {
    visit: Visit,
    user: String,
    address: std::net::IpAddr,
}

/// `GET /auth/device/verify[?user_code=X | ?done=approved|denied]`.
pub(crate) async fn show(
    State(app): State<Arc<App>>,
    Peer(address): Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let visit = match visit(&app, &headers) {
        Ok(visit) => visit,
        Err(response) => return response,
    };
    let user = match signed_in(&app, visit, &uri, paths::DEVICE_VERIFICATION) {
        Ok(user) => user,
        Err(to_signin) => return to_signin,
    };
    let person = Person {
        visit,
        user,
        address,
    };
    let query = Params::parse(uri.query().unwrap_or("").as_bytes()).unwrap_or_default();
    if let Some(done) = query.get("done") {
        return done_page(&app, &person, done == "approved");
    }
    if let Some(refusal) = locked(&app, &person) {
        return refusal;
    }
    let Some(code) = query.owned("user_code") else {
        return entry_page(&app, &person, StatusCode::OK, "", None);
    };
    match prompt(&app, &person, &code).await {
        Ok(prompt) => confirm_page(&app, &person, &prompt),
        Err(response) => response,
    }
}

/// `POST /auth/device/verify`.
pub(crate) async fn submit(
    State(app): State<Arc<App>>,
    Peer(address): Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (visit, params) = match guard_post(&app, &headers, body) {
        Ok(checked) => checked,
        Err(refusal) => return refusal,
    };
    let code = params.owned("user_code");
    let Some(user) = app.sessions.user(visit.id, Instant::now()) else {
        let back = match &code {
            Some(code) => format!(
                "{}?{}",
                paths::DEVICE_VERIFICATION,
                encode_query([("user_code", code.as_str())])
            ),
            None => paths::DEVICE_VERIFICATION.to_owned(),
        };
        return to_signin(&back);
    };
    let person = Person {
        visit,
        user,
        address,
    };
    if let Some(refusal) = locked(&app, &person) {
        return refusal;
    }
    let Some(code) = code else {
        let error = Some("Enter the code your device shows.");
        return entry_page(&app, &person, StatusCode::BAD_REQUEST, "", error);
    };
    let approve = match params.get("action") {
        Some("approve") => true,
        Some("deny") => false,
        // The entry form: show the confirmation with a GET, so a reload posts nothing.
        _ => {
            return match prompt(&app, &person, &code).await {
                Ok(prompt) => see_other(&format!(
                    "{}?{}",
                    paths::DEVICE_VERIFICATION,
                    encode_query([("user_code", prompt.user_code.as_str())])
                )),
                Err(response) => response,
            };
        }
    };
    let user = person.user.clone();
    let decision = {
        let code = code.clone();
        blocking(&app.server, move |server| {
            server.device_decide(&code, &user, approve)
        })
        .await
    };
    match decision {
        Ok(Ok(())) => {
            let done = if approve { "approved" } else { "denied" };
            tracing::info!(user = person.user, done, "device authorization decided");
            see_other(&format!(
                "{}?{}",
                paths::DEVICE_VERIFICATION,
                encode_query([("done", done)])
            ))
        }
        Ok(Err(error)) => wrong_code(&app, &person, &code, &error),
        Err(_) => trouble_page(&app, person.visit),
    }
}

/// Looks `code` up; the entry page with the error when it is not a live code.
async fn prompt(app: &App, person: &Person, code: &str) -> Result<DevicePrompt, Response> {
    let lookup = {
        let code = code.to_owned();
        blocking(&app.server, move |server| server.device_prompt(&code)).await
    };
    match lookup {
        Ok(Ok(prompt)) => Ok(prompt),
        Ok(Err(error)) => Err(wrong_code(app, person, code, &error)),
        Err(_) => Err(trouble_page(app, person.visit)),
    }
}

/// The code was refused: counts the guess (unless the fault was ours) and shows the entry
/// page again, or the lock.
fn wrong_code(app: &App, person: &Person, code: &str, error: &OAuthError) -> Response {
    if matches!(
        error.code,
        ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable
    ) {
        return trouble_page(app, person.visit);
    }
    let now = Instant::now();
    let guesses = app.sessions.count_device_guess(person.visit.id, now);
    // Spent after the check in `locked` said there was room; an empty bucket now only
    // means the next attempt is refused.
    let _ = app.device_guesses.take(person.address, now);
    if guesses >= app.max_attempts() {
        return locked_page(app, person, None);
    }
    let message = sentence(&error.description);
    entry_page(app, person, StatusCode::BAD_REQUEST, code, Some(&message))
}

/// The server's lower-case description as a sentence: capital first letter, final stop.
fn sentence(description: &str) -> String {
    let mut chars = description.trim().chars();
    let mut text: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return "That code did not work.".to_owned(),
    };
    if !text.ends_with(['.', '!', '?']) {
        text.push('.');
    }
    text
}

/// The lock page when this session or address has guessed wrong too often.
fn locked(app: &App, person: &Person) -> Option<Response> {
    let now = Instant::now();
    let guesses = app
        .sessions
        .get(person.visit.id, now)
        .map_or(0, |data| data.device_wrong_guesses);
    if guesses >= app.max_attempts() {
        return Some(locked_page(app, person, None));
    }
    if let Err(wait) = app.device_guesses.check(person.address, now) {
        return Some(locked_page(app, person, Some(wait)));
    }
    None
}

fn locked_page(app: &App, person: &Person, wait: Option<std::time::Duration>) -> Response {
    let error = match wait {
        Some(wait) => format!(
            "Too many wrong codes from your network. Try again in {} seconds.",
            wait_seconds(wait)
        ),
        None => "Too many wrong codes. Start again on your device, then sign out and in here \
                 to enter the new code."
            .to_owned(),
    };
    let context = context! {
        title => "Enter the device code",
        locked => true,
        error,
        user => &person.user,
    };
    let mut response = render(
        app,
        person.visit,
        StatusCode::TOO_MANY_REQUESTS,
        "device_entry.html",
        Forms::StayHere,
        context,
    );
    if let Some(wait) = wait {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after(wait));
    }
    response
}

fn entry_page(
    app: &App,
    person: &Person,
    status: StatusCode,
    user_code: &str,
    error: Option<&str>,
) -> Response {
    let context = context! {
        title => "Enter the device code",
        action => super::path_value(paths::DEVICE_VERIFICATION),
        csrf => app.sessions.csrf_token(person.visit.id),
        locked => false,
        user_code,
        error,
        user => &person.user,
    };
    render(
        app,
        person.visit,
        status,
        "device_entry.html",
        Forms::StayHere,
        context,
    )
}

fn confirm_page(app: &App, person: &Person, prompt: &DevicePrompt) -> Response {
    let context = context! {
        title => "Allow the device?",
        action => super::path_value(paths::DEVICE_VERIFICATION),
        csrf => app.sessions.csrf_token(person.visit.id),
        user_code => &prompt.user_code,
        client => &prompt.client,
        client_label => client_label(&prompt.client),
        scopes => describe_scopes(&prompt.scope),
        user => &person.user,
    };
    render(
        app,
        person.visit,
        StatusCode::OK,
        "device_confirm.html",
        Forms::StayHere,
        context,
    )
}

fn done_page(app: &App, person: &Person, approved: bool) -> Response {
    let title = if approved {
        "Device allowed"
    } else {
        "Device denied"
    };
    let context = context! { title, approved };
    render(
        app,
        person.visit,
        StatusCode::OK,
        "device_done.html",
        Forms::StayHere,
        context,
    )
}

#[cfg(test)]
mod tests {
    use super::sentence;

    #[test]
    fn descriptions_become_sentences() {
        assert_eq!(sentence("no such code"), "No such code.");
        assert_eq!(sentence("expired."), "Expired.");
        assert_eq!(sentence("  "), "That code did not work.");
    }
}
