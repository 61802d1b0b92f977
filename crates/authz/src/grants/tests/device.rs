//! The device flow: codes, polling, the person's decision.

use crate::model::TokenRequest;
use crate::scope::MAIL;
use crate::testing::{code_of, public, Harness, ISSUER};
use crate::DEVICE_CODE_GRANT;

fn poll(device_code: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some(DEVICE_CODE_GRANT.to_owned()),
        device_code: Some(device_code.to_owned()),
        ..TokenRequest::default()
    }
}

#[test]
fn device_flow_from_codes_to_tokens() {
    let h = Harness::new("");
    let start = h
        .server
        .device_authorization(None, &[], &public("tv-app"))
        .unwrap();
    assert_eq!(start.user_code.len(), 9);
    assert_eq!(start.user_code.as_bytes()[4], b'-');
    assert_eq!(
        start.verification_uri,
        format!("{ISSUER}/auth/device/verify")
    );
    assert_eq!(
        start.verification_uri_complete,
        format!("{ISSUER}/auth/device/verify?user_code={}", start.user_code)
    );
    assert_eq!(start.interval, 5);
    assert_eq!(start.expires_in, 1_800);

    let request = poll(&start.device_code);
    let client = public("tv-app");
    assert_eq!(
        code_of(h.server.token(&request, &client)),
        "authorization_pending"
    );
    // Too soon: slow down, and the interval grows by 5 s.
    h.advance(2);
    let slow = h.server.token(&request, &client).unwrap_err();
    assert_eq!(slow.code.name(), "slow_down");
    assert!(slow.description.contains("10"), "{}", slow.description);
    h.advance(9);
    assert_eq!(code_of(h.server.token(&request, &client)), "slow_down");
    // Now 15 s are needed.
    h.advance(15);
    assert_eq!(
        code_of(h.server.token(&request, &client)),
        "authorization_pending"
    );

    // Another client cannot poll this device code.
    h.advance(20);
    assert_eq!(
        code_of(h.server.token(&request, &public("other"))),
        "invalid_grant"
    );

    let typed = start.user_code.to_lowercase().replace('-', " ");
    let prompt = h.server.device_prompt(&typed).unwrap();
    assert_eq!(prompt.user_code, start.user_code);
    assert_eq!(prompt.scope, MAIL);
    assert_eq!(prompt.client.id, "tv-app");
    h.server.device_decide(&typed, "alice", true).unwrap();
    // Decided once: the code is used up.
    assert_eq!(
        code_of(h.server.device_prompt(&start.user_code)),
        "invalid_grant"
    );
    assert_eq!(
        code_of(h.server.device_decide(&start.user_code, "mallory", true)),
        "invalid_grant"
    );

    let tokens = h.server.token(&request, &client).unwrap();
    let claims = h.server.check_access_token(&tokens.access_token).unwrap();
    assert_eq!(claims.user, "alice");
    assert_eq!(claims.client_id, "tv-app");
    h.advance(20);
    assert_eq!(code_of(h.server.token(&request, &client)), "invalid_grant");
}

#[test]
fn denied_device_gets_access_denied() {
    let h = Harness::new("");
    let start = h
        .server
        .device_authorization(Some("openid"), &[], &public("tv-app"))
        .unwrap();
    h.server
        .device_decide(&start.user_code, "bob", false)
        .unwrap();
    let request = poll(&start.device_code);
    assert_eq!(
        code_of(h.server.token(&request, &public("tv-app"))),
        "access_denied"
    );
}

#[test]
fn expired_device_code() {
    let h = Harness::new("");
    let start = h
        .server
        .device_authorization(None, &[], &public("tv-app"))
        .unwrap();
    h.advance(1_800);
    let request = poll(&start.device_code);
    assert_eq!(
        code_of(h.server.token(&request, &public("tv-app"))),
        "expired_token"
    );
    let prompt = h.server.device_prompt(&start.user_code).unwrap_err();
    assert_eq!(prompt.code.name(), "invalid_grant");
    assert!(prompt.description.contains("expired"));
}

#[test]
fn user_codes_are_forgiving_but_unknown_ones_fail() {
    let h = Harness::new("");
    let start = h
        .server
        .device_authorization(None, &[], &public("tv-app"))
        .unwrap();
    let bare = start.user_code.replace('-', "");
    for typed in [
        start.user_code.clone(),
        bare.to_lowercase(),
        format!("  {} {}  ", &bare[..4], &bare[4..]),
        bare.clone(),
    ] {
        assert!(h.server.device_prompt(&typed).is_ok(), "{typed:?}");
    }
    assert_eq!(code_of(h.server.device_prompt("BCDF")), "invalid_grant");
    // A different code of the right shape (the last letter changed).
    let last = bare.as_bytes()[7];
    let other = format!("{}{}", &bare[..7], if last == b'B' { 'C' } else { 'B' });
    assert_eq!(code_of(h.server.device_prompt(&other)), "invalid_grant");
    assert_eq!(
        code_of(h.server.token(&poll("unknown"), &public("tv-app"))),
        "invalid_grant"
    );
}

#[test]
fn required_registration_lets_only_override_users_approve_devices() {
    let h = Harness::new(
        "client_override_users = [\"admin\"]\n[client_registration]\nrequire = true\n",
    );
    let start = h
        .server
        .device_authorization(None, &[], &public("tv-app"))
        .unwrap();
    let refused = h
        .server
        .device_decide(&start.user_code, "ivan", true)
        .unwrap_err();
    assert_eq!(refused.code.name(), "unauthorized_client");
    h.server
        .device_decide(&start.user_code, "admin", true)
        .unwrap();
    assert!(h
        .server
        .token(&poll(&start.device_code), &public("tv-app"))
        .is_ok());
}

#[test]
fn registered_clients_need_the_device_grant() {
    let h = Harness::new("");
    let web = h
        .server
        .add_client("web", &["https://web.example/cb".to_owned()], None, true)
        .unwrap()
        .expect("a secret");
    assert!(h
        .server
        .device_authorization(None, &[], &crate::testing::basic("web", &web))
        .is_ok());
    assert_eq!(
        code_of(
            h.server
                .device_authorization(Some("nonsense"), &[], &public("tv-app"))
        ),
        "invalid_scope"
    );
    let registered = crate::store::ClientRecord {
        id: "code-only".to_owned(),
        secret_hash: None,
        auth_method: crate::store::ClientAuthMethod::None,
        name: None,
        redirect_uris: vec!["https://x.example/cb".to_owned()],
        grant_types: vec!["authorization_code".to_owned()],
        registered_by: crate::store::RegisteredBy::ApiKey,
        created_at: h.now(),
    };
    crate::store::Store::insert_client(h.store.as_ref(), &registered).unwrap();
    assert_eq!(
        code_of(
            h.server
                .device_authorization(None, &[], &public("code-only"))
        ),
        "unauthorized_client"
    );
}
