//! RFC 8707 resource indicators through every grant: asked for, approved, kept with the
//! grant, turned into the access token's `aud`, narrowed but never widened.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::AuthorizeError;
use crate::model::{AuthorizationRequest, TokenRequest, TokenResponse};
use crate::resource::MailResource;
use crate::scope::MAIL;
use crate::store::Store;
use crate::testing::{
    basic, code_exchange, code_of, param, pkce_request, public, refresh, settings, Harness, ISSUER,
    LOOPBACK, VERIFIER,
};
use crate::{tokens, DEVICE_CODE_GRANT};

const IMAP: &str = "imap://mail.example.test";
const SMTP: &str = "smtp://mail.example.test";

/// A server whose proxy serves IMAP on 993 and SMTP on 465 as `mail.example.test`.
fn harness() -> Harness {
    let mut settings = settings("");
    let service = |scheme: &str, port| MailResource {
        scheme: scheme.to_owned(),
        host: "mail.example.test".to_owned(),
        port,
    };
    settings.mail_resources = vec![service("imap", 993), service("smtp", 465)];
    Harness::with_settings(settings)
}

fn aud(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("three parts");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json");
    claims["aud"].clone()
}

fn with_resources(resources: &[&str]) -> AuthorizationRequest {
    let mut request = pkce_request("mail-app", LOOPBACK, MAIL);
    request.resource = resources.iter().map(|r| (*r).to_owned()).collect();
    request
}

fn tokens_for(h: &Harness, resources: &[&str]) -> TokenResponse {
    let code = h.code_for("alice", &with_resources(resources));
    h.server
        .token(
            &code_exchange(&code, LOOPBACK, VERIFIER),
            &public("mail-app"),
        )
        .expect("tokens")
}

fn narrowing(mut request: TokenRequest, resources: &[&str]) -> TokenRequest {
    request.resource = resources.iter().map(|r| (*r).to_owned()).collect();
    request
}

#[test]
fn the_approved_resource_is_the_audience_and_survives_refresh() {
    let h = harness();
    let pending = h
        .server
        .authorize(&with_resources(&["IMAP://Mail.Example.test"]))
        .unwrap();
    assert_eq!(pending.resource, [IMAP], "kept in normal form");
    let first = tokens_for(&h, &[IMAP]);
    assert_eq!(aud(&first.access_token), json!(IMAP));
    let claims = h.server.check_access_token(&first.access_token).unwrap();
    assert_eq!(claims.audiences, [IMAP]);

    // Refreshing without `resource` keeps the audience; the grant remembers it.
    let second = h
        .server
        .token(&refresh(&first.refresh_token), &public("mail-app"))
        .unwrap();
    assert_eq!(aud(&second.access_token), json!(IMAP));
    // Narrowing to one port of the granted host is allowed.
    let third = h
        .server
        .token(
            &narrowing(
                refresh(&second.refresh_token),
                &["imap://mail.example.test:993"],
            ),
            &public("mail-app"),
        )
        .unwrap();
    assert_eq!(
        aud(&third.access_token),
        json!("imap://mail.example.test:993")
    );
    // Widening is `invalid_target`, and spends nothing: the refresh token still works.
    for wider in [SMTP, "imap://elsewhere.example"] {
        assert_eq!(
            code_of(h.server.token(
                &narrowing(refresh(&third.refresh_token), &[wider]),
                &public("mail-app"),
            )),
            "invalid_target",
            "{wider}"
        );
    }
    let fourth = h
        .server
        .token(&refresh(&third.refresh_token), &public("mail-app"))
        .unwrap();
    assert_eq!(aud(&fourth.access_token), json!(IMAP));
}

#[test]
fn several_resources_make_an_audience_list_and_introspection_shows_it() {
    let h = harness();
    let secret = h
        .server
        .add_client("rs", &["https://rs.example/cb".to_owned()], None, true)
        .unwrap()
        .unwrap();
    let tokens = tokens_for(&h, &[IMAP, SMTP, IMAP]);
    assert_eq!(aud(&tokens.access_token), json!([IMAP, SMTP]));
    let rs = basic("rs", &secret);
    let access = h.server.introspect(&rs, &tokens.access_token).unwrap();
    assert_eq!(access["aud"], json!([IMAP, SMTP]));
    let refresh_token = h.server.introspect(&rs, &tokens.refresh_token).unwrap();
    assert_eq!(refresh_token["aud"], json!([IMAP, SMTP]));
    // Without resources, the audience stays the issuer (as before resource indicators).
    let plain = tokens_for(&h, &[]);
    assert_eq!(aud(&plain.access_token), json!(ISSUER));
    assert_eq!(
        h.server
            .check_access_token(&plain.access_token)
            .unwrap()
            .audiences,
        [ISSUER]
    );
    let plain_refresh = h.server.introspect(&rs, &plain.refresh_token).unwrap();
    assert_eq!(plain_refresh["aud"], json!(ISSUER));
}

#[test]
fn unknown_or_malformed_resources_go_back_to_the_client_as_invalid_target() {
    let h = harness();
    for bad in [
        "imap://elsewhere.example",
        "imap://mail.example.test:143",
        "imap://mail.example.test#x",
        "sieve://mail.example.test",
        "mail.example.test",
    ] {
        match h.server.authorize(&with_resources(&[IMAP, bad])) {
            Err(AuthorizeError::Redirect(url)) => {
                assert_eq!(
                    param(&url, "error").as_deref(),
                    Some("invalid_target"),
                    "{bad}"
                );
                assert_eq!(param(&url, "iss").as_deref(), Some(ISSUER));
            }
            other => panic!("{bad}: expected a redirect with invalid_target, got {other:?}"),
        }
    }
    // A server serving no listener knows no resource at all.
    let bare = Harness::new("");
    assert!(matches!(
        bare.server.authorize(&with_resources(&[IMAP])),
        Err(AuthorizeError::Redirect(url)) if url.contains("invalid_target")
    ));
}

#[test]
fn the_code_exchange_may_narrow_and_a_refused_widening_leaves_the_code_usable() {
    let h = harness();
    let code = h.code_for("alice", &with_resources(&[IMAP]));
    let widened = narrowing(code_exchange(&code, LOOPBACK, VERIFIER), &[SMTP]);
    assert_eq!(
        code_of(h.server.token(&widened, &public("mail-app"))),
        "invalid_target"
    );
    let record = h.store.code(&tokens::hash(&code)).unwrap().unwrap();
    assert_eq!(record.grant_id, None, "the code was not spent");
    assert_eq!(record.resource, [IMAP]);
    let narrowed = narrowing(
        code_exchange(&code, LOOPBACK, VERIFIER),
        &["imap://mail.example.test:993"],
    );
    let tokens = h.server.token(&narrowed, &public("mail-app")).unwrap();
    assert_eq!(
        aud(&tokens.access_token),
        json!("imap://mail.example.test:993")
    );
    // The grant keeps what was approved: a refresh without `resource` gets all of it back.
    let refreshed = h
        .server
        .token(&refresh(&tokens.refresh_token), &public("mail-app"))
        .unwrap();
    assert_eq!(aud(&refreshed.access_token), json!(IMAP));

    // A code approved without resources may be narrowed to any served one.
    let open = h.code_for("alice", &with_resources(&[]));
    let tokens = h
        .server
        .token(
            &narrowing(code_exchange(&open, LOOPBACK, VERIFIER), &[SMTP]),
            &public("mail-app"),
        )
        .unwrap();
    assert_eq!(aud(&tokens.access_token), json!(SMTP));
}

#[test]
fn the_device_flow_carries_its_resources() {
    let h = harness();
    assert_eq!(
        code_of(h.server.device_authorization(
            None,
            &["imap://elsewhere.example".to_owned()],
            &public("tv-app"),
        )),
        "invalid_target"
    );
    let start = h
        .server
        .device_authorization(None, &[SMTP.to_owned()], &public("tv-app"))
        .unwrap();
    let prompt = h.server.device_prompt(&start.user_code).unwrap();
    assert_eq!(prompt.resource, [SMTP]);
    h.server
        .device_decide(&start.user_code, "alice", true)
        .unwrap();
    let poll = TokenRequest {
        grant_type: Some(DEVICE_CODE_GRANT.to_owned()),
        device_code: Some(start.device_code.clone()),
        ..TokenRequest::default()
    };
    // Widening at the poll is refused and spends nothing; then the plain poll succeeds.
    assert_eq!(
        code_of(
            h.server
                .token(&narrowing(poll.clone(), &[IMAP]), &public("tv-app"))
        ),
        "invalid_target"
    );
    h.advance(10);
    let tokens = h.server.token(&poll, &public("tv-app")).unwrap();
    assert_eq!(aud(&tokens.access_token), json!(SMTP));
    let refreshed = h
        .server
        .token(&refresh(&tokens.refresh_token), &public("tv-app"))
        .unwrap();
    assert_eq!(aud(&refreshed.access_token), json!(SMTP));
}
