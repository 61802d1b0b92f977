//! Headers every response carries, set in one place (a layer over the whole router).
//!
//! The Content-Security-Policy has no `form-action` by default: browsers (Chrome) apply it
//! to the redirects that follow a form submission, and the sign-in and consent forms end in
//! a redirect to the client's `redirect_uri` (`http://127.0.0.1:PORT/…`, `com.example.app:`),
//! which `form-action 'self'` would block. Pages whose forms only ever lead back to this
//! server (device entry, sign-out) send [`CSP_FORMS_TO_SELF`] instead.

use axum::http::{header, HeaderValue};
use axum::response::Response;

/// The policy of every response that sets none: nothing but our own stylesheet and images,
/// never framed, no `<base>`.
pub(crate) const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// [`CSP`] with forms limited to this server.
pub(crate) const CSP_FORMS_TO_SELF: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// `Cache-Control` of metadata, JWKS and the stylesheet: five minutes, so that a rotated key
/// is seen soon.
pub(crate) const CACHE_PUBLIC: &str = "public, max-age=300";

/// `Strict-Transport-Security` of an https issuer: a year, this host only (its sibling
/// hosts are other services, whose TLS is not ours to promise).
pub(crate) const HSTS: &str = "max-age=31536000";

/// Adds [`HSTS`]; layered only when the issuer is https (a browser ignores it over plain
/// http anyway, and on a loopback test issuer it would only get in the way).
pub(crate) async fn strict_transport_security(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static(HSTS),
    );
    response
}

/// Adds the security headers; `Content-Security-Policy` and `Cache-Control` only when the
/// handler set none (everything is `no-store` unless it says otherwise).
pub(crate) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CSP));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
