//! Authorization requests, approval, and code redemption.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::error::{AuthorizeError, ErrorCode};
use crate::model::{AuthorizationRequest, CredentialsVia, TokenRejection, TokenRequest};
use crate::scope::MAIL;
use crate::store::{ClientAuthMethod, ClientRecord, RegisteredBy, Store};
use crate::testing::{
    basic, code_exchange, code_of, param, pkce_request, public, refresh, Harness, ISSUER, LOOPBACK,
    VERIFIER,
};
use crate::tokens;

const WRONG_VERIFIER: &str = "wrong-verifier-wrong-verifier-wrong-verifier-0";

fn payload(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn registered(h: &Harness, id: &str, uris: &[&str], method: ClientAuthMethod) {
    h.store
        .insert_client(&ClientRecord {
            id: id.to_owned(),
            secret_hash: (method != ClientAuthMethod::None).then(|| tokens::hash("sekrit")),
            auth_method: method,
            name: Some("Registered App".to_owned()),
            redirect_uris: uris.iter().map(|u| (*u).to_owned()).collect(),
            grant_types: vec!["authorization_code".to_owned(), "refresh_token".to_owned()],
            registered_by: RegisteredBy::Admin,
            created_at: h.now(),
        })
        .unwrap();
}

fn page_code(result: Result<impl std::fmt::Debug, AuthorizeError>) -> ErrorCode {
    match result {
        Err(AuthorizeError::Page(error)) => error.code,
        other => panic!("expected a page error, got {other:?}"),
    }
}

fn redirect_error(result: Result<impl std::fmt::Debug, AuthorizeError>) -> String {
    match result {
        Err(AuthorizeError::Redirect(url)) => {
            assert_eq!(param(&url, "iss").as_deref(), Some(ISSUER));
            assert_eq!(param(&url, "state").as_deref(), Some("st&te"));
            param(&url, "error").expect("error parameter")
        }
        other => panic!("expected a redirect error, got {other:?}"),
    }
}

#[test]
fn full_code_flow_with_pkce() {
    let h = Harness::new("");
    let request = pkce_request("mail-app", LOOPBACK, &format!("{MAIL} openid {MAIL}"));
    let pending = h.server.authorize(&request).unwrap();
    assert_eq!(pending.scope, format!("openid {MAIL}"));
    assert_eq!(pending.client.redirect_host.as_deref(), Some("127.0.0.1"));
    assert!(!pending.client.verified);
    let url = h.approve("alice@example.test", &pending);
    assert!(url.starts_with(LOOPBACK));
    assert_eq!(param(&url, "state").as_deref(), Some("st&te"));
    assert_eq!(param(&url, "iss").as_deref(), Some(ISSUER));
    let code = param(&url, "code").unwrap();

    let tokens = h
        .server
        .token(
            &code_exchange(&code, LOOPBACK, VERIFIER),
            &public("mail-app"),
        )
        .unwrap();
    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, 3_600);
    assert_eq!(tokens.scope, format!("openid {MAIL}"));
    assert!(tokens.refresh_token.starts_with("bgr_"));

    let claims = h.server.check_access_token(&tokens.access_token).unwrap();
    assert_eq!(claims.user, "alice@example.test");
    assert_eq!(claims.client_id, "mail-app");
    assert_eq!(claims.scopes, ["openid", MAIL]);
    assert_eq!(claims.expires_at, h.now() + 3_600);
    let access = payload(&tokens.access_token);
    assert_eq!(access["iss"], ISSUER);
    assert_eq!(access["aud"], ISSUER);

    let id_token = payload(
        tokens
            .id_token
            .as_deref()
            .expect("openid gives an ID token"),
    );
    assert_eq!(id_token["aud"], "mail-app");
    assert_eq!(id_token["sub"], "alice@example.test");
    assert_eq!(id_token["nonce"], "n-0S6_WzA2Mj");
    // An ID token is no access token.
    assert_eq!(
        h.server
            .check_access_token(tokens.id_token.as_deref().unwrap()),
        Err(TokenRejection::NotOurs)
    );
    // Nor is a tampered one.
    let mut tampered = tokens.access_token.clone();
    tampered.pop();
    tampered.push(if tokens.access_token.ends_with('A') {
        'B'
    } else {
        'A'
    });
    assert_eq!(
        h.server.check_access_token(&tampered),
        Err(TokenRejection::NotOurs)
    );

    h.advance(3_600);
    assert_eq!(
        h.server.check_access_token(&tokens.access_token),
        Err(TokenRejection::Expired)
    );
}

#[test]
fn without_openid_there_is_no_id_token() {
    let h = Harness::new("");
    let code = h.code_for("bob", &pkce_request("mail-app", LOOPBACK, ""));
    let tokens = h
        .server
        .token(
            &code_exchange(&code, LOOPBACK, VERIFIER),
            &public("mail-app"),
        )
        .unwrap();
    assert_eq!(tokens.scope, MAIL);
    assert!(tokens.id_token.is_none());
}

#[test]
fn wrong_verifier_is_counted_and_kills_the_code() {
    let h = Harness::new("");
    let request = pkce_request("mail-app", LOOPBACK, MAIL);

    // One failure leaves the code usable.
    let code = h.code_for("bob", &request);
    let wrong = code_exchange(&code, LOOPBACK, WRONG_VERIFIER);
    assert_eq!(
        code_of(h.server.token(&wrong, &public("mail-app"))),
        "invalid_grant"
    );
    let record = h.store.code(&tokens::hash(&code)).unwrap().unwrap();
    assert_eq!(record.failed_attempts, 1);
    let right = code_exchange(&code, LOOPBACK, VERIFIER);
    assert!(h.server.token(&right, &public("mail-app")).is_ok());

    // max_attempts (3) failures of any kind delete it.
    let code = h.code_for("bob", &request);
    let wrong_client = code_exchange(&code, LOOPBACK, VERIFIER);
    assert_eq!(
        code_of(h.server.token(&wrong_client, &public("other-app"))),
        "invalid_grant"
    );
    let wrong_redirect = code_exchange(&code, "http://127.0.0.1:1/callback", VERIFIER);
    assert_eq!(
        code_of(h.server.token(&wrong_redirect, &public("mail-app"))),
        "invalid_grant"
    );
    let no_verifier = TokenRequest {
        code_verifier: None,
        ..code_exchange(&code, LOOPBACK, VERIFIER)
    };
    assert_eq!(
        code_of(h.server.token(&no_verifier, &public("mail-app"))),
        "invalid_grant"
    );
    assert!(h.store.code(&tokens::hash(&code)).unwrap().is_none());
    let right = code_exchange(&code, LOOPBACK, VERIFIER);
    assert_eq!(
        code_of(h.server.token(&right, &public("mail-app"))),
        "invalid_grant"
    );
}

#[test]
fn code_replay_revokes_the_grant() {
    let h = Harness::new("");
    let code = h.code_for("carol", &pkce_request("mail-app", LOOPBACK, MAIL));
    let exchange = code_exchange(&code, LOOPBACK, VERIFIER);
    let tokens = h.server.token(&exchange, &public("mail-app")).unwrap();
    assert!(h.server.check_access_token(&tokens.access_token).is_ok());

    assert_eq!(
        code_of(h.server.token(&exchange, &public("mail-app"))),
        "invalid_grant"
    );
    assert_eq!(
        h.server.check_access_token(&tokens.access_token),
        Err(TokenRejection::Revoked)
    );
    let again = h
        .server
        .token(&refresh(&tokens.refresh_token), &public("mail-app"));
    assert_eq!(code_of(again), "invalid_grant");
}

#[test]
fn concurrent_redemptions_issue_once_and_end_the_grant() {
    // Eight requests with the same code at once, as an attacker racing the client would
    // send them: one wins the store's conditional update, and since the others are replays
    // of a used code, what the winner got is revoked.
    let h = Harness::new("");
    let code = h.code_for("carol", &pkce_request("mail-app", LOOPBACK, MAIL));
    let exchange = code_exchange(&code, LOOPBACK, VERIFIER);
    let barrier = std::sync::Barrier::new(8);
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    h.server.token(&exchange, &public("mail-app"))
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for loser in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(loser.code, ErrorCode::InvalidGrant);
    }
    assert_eq!(
        h.server.check_access_token(&winners[0].access_token),
        Err(TokenRejection::Revoked)
    );
    let again = h
        .server
        .token(&refresh(&winners[0].refresh_token), &public("mail-app"));
    assert_eq!(code_of(again), "invalid_grant");
}

#[test]
fn expired_code_is_refused() {
    let h = Harness::new("");
    let code = h.code_for("dave", &pkce_request("mail-app", LOOPBACK, MAIL));
    h.advance(600);
    let exchange = code_exchange(&code, LOOPBACK, VERIFIER);
    assert_eq!(
        code_of(h.server.token(&exchange, &public("mail-app"))),
        "invalid_grant"
    );
}

#[test]
fn unregistered_clients_get_native_redirects_only() {
    let h = Harness::new("");
    for uri in [
        "https://app.example/cb",
        "http://localhost:8080/cb",
        "http://app.example/cb",
        "myapp:/cb",
    ] {
        let result = h.server.authorize(&pkce_request("mail-app", uri, MAIL));
        assert_eq!(page_code(result), ErrorCode::InvalidRequest, "{uri}");
    }
    let no_redirect = AuthorizationRequest {
        redirect_uri: None,
        ..pkce_request("mail-app", LOOPBACK, MAIL)
    };
    assert_eq!(
        page_code(h.server.authorize(&no_redirect)),
        ErrorCode::InvalidRequest
    );
    let bad_id = pkce_request(&"x".repeat(201), LOOPBACK, MAIL);
    assert_eq!(
        page_code(h.server.authorize(&bad_id)),
        ErrorCode::InvalidRequest
    );

    // Loopback on any port, IPv4 or IPv6, and private-use schemes work.
    for uri in [
        "http://127.0.0.1:1234/cb",
        "http://127.0.0.1:65000/cb",
        "http://[::1]:5000/",
        "com.example.mail:/oauth",
    ] {
        let code = h.code_for("erin", &pkce_request("mail-app", uri, MAIL));
        let exchange = code_exchange(&code, uri, VERIFIER);
        assert!(
            h.server.token(&exchange, &public("mail-app")).is_ok(),
            "{uri}"
        );
    }
}

#[test]
fn pkce_must_be_s256() {
    let h = Harness::new("");
    let plain = AuthorizationRequest {
        code_challenge_method: Some("plain".to_owned()),
        ..pkce_request("mail-app", LOOPBACK, MAIL)
    };
    assert_eq!(
        redirect_error(h.server.authorize(&plain)),
        "invalid_request"
    );
    let no_method = AuthorizationRequest {
        code_challenge_method: None,
        ..pkce_request("mail-app", LOOPBACK, MAIL)
    };
    assert_eq!(
        redirect_error(h.server.authorize(&no_method)),
        "invalid_request"
    );
    let none = AuthorizationRequest {
        code_challenge: None,
        code_challenge_method: None,
        ..pkce_request("mail-app", LOOPBACK, MAIL)
    };
    assert_eq!(redirect_error(h.server.authorize(&none)), "invalid_request");
}

#[test]
fn bad_requests_redirect_once_the_redirect_is_trusted() {
    let h = Harness::new("");
    let token = AuthorizationRequest {
        response_type: Some("token".to_owned()),
        ..pkce_request("mail-app", LOOPBACK, MAIL)
    };
    assert_eq!(
        redirect_error(h.server.authorize(&token)),
        "unsupported_response_type"
    );
    let fragment = AuthorizationRequest {
        response_mode: Some("fragment".to_owned()),
        ..pkce_request("mail-app", LOOPBACK, MAIL)
    };
    assert_eq!(
        redirect_error(h.server.authorize(&fragment)),
        "invalid_request"
    );
    let scope = pkce_request("mail-app", LOOPBACK, "openid admin");
    assert_eq!(redirect_error(h.server.authorize(&scope)), "invalid_scope");
    // Same mistakes with an untrusted redirect: a page, never a redirect.
    let untrusted = AuthorizationRequest {
        response_type: Some("token".to_owned()),
        ..pkce_request("mail-app", "https://evil.example/", MAIL)
    };
    assert_eq!(
        page_code(h.server.authorize(&untrusted)),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn registered_redirects_match_exactly_except_loopback_port() {
    let h = Harness::new("");
    registered(
        &h,
        "reg",
        &[
            "https://app.example/cb?tenant=1",
            "http://127.0.0.1:8000/cb",
        ],
        ClientAuthMethod::None,
    );
    let other_port = pkce_request("reg", "http://127.0.0.1:40000/cb", MAIL);
    let pending = h.server.authorize(&other_port).unwrap();
    assert_eq!(pending.redirect_uri, "http://127.0.0.1:40000/cb");
    assert!(pending.client.verified);
    assert_eq!(pending.client.name.as_deref(), Some("Registered App"));

    let other_path = pkce_request("reg", "https://app.example/other", MAIL);
    assert_eq!(
        page_code(h.server.authorize(&other_path)),
        ErrorCode::InvalidRequest
    );

    let url = h.approve(
        "frank",
        &h.server
            .authorize(&pkce_request(
                "reg",
                "https://app.example/cb?tenant=1",
                MAIL,
            ))
            .unwrap(),
    );
    assert!(
        url.starts_with("https://app.example/cb?tenant=1&code="),
        "{url}"
    );
    // Two registered: redirect_uri cannot be omitted.
    let omitted = AuthorizationRequest {
        redirect_uri: None,
        ..pkce_request("reg", "", MAIL)
    };
    assert_eq!(
        page_code(h.server.authorize(&omitted)),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn confidential_clients_authenticate_with_their_method() {
    let h = Harness::new("");
    registered(
        &h,
        "web",
        &["https://web.example/cb"],
        ClientAuthMethod::ClientSecretBasic,
    );
    // No PKCE needed for a confidential client, and redirect_uri may be omitted.
    let request = AuthorizationRequest {
        response_type: Some("code".to_owned()),
        client_id: Some("web".to_owned()),
        ..AuthorizationRequest::default()
    };
    let code = h.code_for("gina", &request);
    let exchange = TokenRequest {
        code_verifier: None,
        redirect_uri: None,
        ..code_exchange(&code, "", "")
    };
    assert_eq!(
        code_of(h.server.token(&exchange, &basic("web", "wrong"))),
        "invalid_client"
    );
    let mut post = basic("web", "sekrit");
    post.via = CredentialsVia::Post;
    assert_eq!(code_of(h.server.token(&exchange, &post)), "invalid_client");
    assert_eq!(
        code_of(h.server.token(&exchange, &public("web"))),
        "invalid_client"
    );
    assert!(h.server.token(&exchange, &basic("web", "sekrit")).is_ok());

    // A verifier for a code issued without a challenge is a downgrade attempt.
    let code = h.code_for("gina", &request);
    let downgrade = TokenRequest {
        redirect_uri: None,
        ..code_exchange(&code, "", VERIFIER)
    };
    assert_eq!(
        code_of(h.server.token(&downgrade, &basic("web", "sekrit"))),
        "invalid_grant"
    );
    // A public client must not send a secret.
    let code = h.code_for("gina", &pkce_request("mail-app", LOOPBACK, MAIL));
    let exchange = code_exchange(&code, LOOPBACK, VERIFIER);
    assert_eq!(
        code_of(h.server.token(&exchange, &basic("mail-app", "x"))),
        "invalid_client"
    );
}

#[test]
fn consent_is_remembered_for_recognisable_clients_only() {
    let h = Harness::new("");
    registered(
        &h,
        "reg",
        &["https://app.example/cb"],
        ClientAuthMethod::None,
    );
    let pending = h
        .server
        .authorize(&pkce_request("reg", "https://app.example/cb", MAIL))
        .unwrap();
    assert!(h.server.needs_consent("hank", &pending).unwrap());
    h.approve("hank", &pending);
    assert!(!h.server.needs_consent("hank", &pending).unwrap());
    assert!(h.server.needs_consent("other", &pending).unwrap());
    let wider = h
        .server
        .authorize(&pkce_request("reg", "https://app.example/cb", "openid"))
        .unwrap();
    assert!(h.server.needs_consent("hank", &wider).unwrap());
    h.approve("hank", &wider);
    assert!(!h.server.needs_consent("hank", &pending).unwrap());

    // Anyone can claim an unregistered id: always ask.
    let pending = h
        .server
        .authorize(&pkce_request("mail-app", LOOPBACK, MAIL))
        .unwrap();
    h.approve("hank", &pending);
    assert!(h.server.needs_consent("hank", &pending).unwrap());
}

#[test]
fn deny_redirects_with_access_denied() {
    let h = Harness::new("");
    let pending = h
        .server
        .authorize(&pkce_request("mail-app", LOOPBACK, MAIL))
        .unwrap();
    let url = h.server.deny(&pending);
    assert_eq!(param(&url, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&url, "state").as_deref(), Some("st&te"));
    assert_eq!(param(&url, "iss").as_deref(), Some(ISSUER));
    assert!(param(&url, "code").is_none());
}

#[test]
fn required_registration_lets_only_override_users_approve_unregistered_clients() {
    let h = Harness::new(
        "client_override_users = [\"admin\"]\n[client_registration]\nrequire = true\n",
    );
    let pending = h
        .server
        .authorize(&pkce_request("mail-app", LOOPBACK, MAIL))
        .unwrap();
    assert_eq!(
        page_code(h.server.approve("ivan", &pending)),
        ErrorCode::UnauthorizedClient
    );
    let url = h.approve("admin", &pending);
    assert!(param(&url, "code").is_some());
}

#[test]
fn unsupported_and_unauthorized_grant_types() {
    let h = Harness::new("");
    for grant in ["password", "client_credentials", "implicit", "urn:x"] {
        let request = TokenRequest {
            grant_type: Some(grant.to_owned()),
            ..TokenRequest::default()
        };
        assert_eq!(
            code_of(h.server.token(&request, &public("mail-app"))),
            "unsupported_grant_type"
        );
    }
    assert_eq!(
        code_of(h.server.token(&TokenRequest::default(), &public("x"))),
        "invalid_request"
    );
    // A device-only client (no redirect URIs) may not redeem codes.
    assert_eq!(h.server.add_client("tv", &[], None, false).unwrap(), None);
    let exchange = code_exchange("whatever", LOOPBACK, VERIFIER);
    assert_eq!(
        code_of(h.server.token(&exchange, &public("tv"))),
        "unauthorized_client"
    );
    let authorize = pkce_request("tv", LOOPBACK, MAIL);
    assert_eq!(
        page_code(h.server.authorize(&authorize)),
        ErrorCode::InvalidRequest
    );
}

#[test]
fn removed_client_cannot_finish_an_approval() {
    let h = Harness::new("");
    registered(
        &h,
        "reg",
        &["https://app.example/cb"],
        ClientAuthMethod::None,
    );
    let pending = h
        .server
        .authorize(&pkce_request("reg", "https://app.example/cb", MAIL))
        .unwrap();
    assert!(h.server.remove_client("reg").unwrap());
    assert_eq!(
        page_code(h.server.approve("judy", &pending)),
        ErrorCode::InvalidRequest
    );
}
