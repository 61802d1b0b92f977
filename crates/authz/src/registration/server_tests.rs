//! Registration through the server: API keys, anonymous and open native registration.

use serde_json::json;

use crate::model::TokenRequest;
use crate::store::{RegisteredBy, Store, PERMISSION_CLIENT_REGISTRATION};
use crate::testing::{
    basic, code_exchange, code_of, pkce_request, public, refresh, Harness, VERIFIER,
};

fn metadata() -> serde_json::Value {
    json!({
        "redirect_uris": ["https://app.example/cb"],
        "client_name": "Example Mail",
        "software_id": "ignored",
    })
}

#[test]
fn registration_needs_an_api_key_unless_anonymous() {
    let h = Harness::new("");
    assert_eq!(
        code_of(h.server.register(None, &metadata())),
        "invalid_token"
    );
    assert_eq!(
        code_of(h.server.register(Some("bgk_unknown"), &metadata())),
        "invalid_token"
    );
    let useless = h
        .server
        .create_api_key(&["something-else".to_owned()])
        .unwrap();
    assert_eq!(
        code_of(h.server.register(Some(&useless), &metadata())),
        "invalid_token"
    );

    let key = h
        .server
        .create_api_key(&[PERMISSION_CLIENT_REGISTRATION.to_owned()])
        .unwrap();
    assert!(key.starts_with("bgk_"));
    let answer = h.server.register(Some(&key), &metadata()).unwrap();
    let id = answer["client_id"].as_str().unwrap();
    let secret = answer["client_secret"].as_str().unwrap();
    assert_eq!(answer["client_secret_expires_at"], 0);
    assert_eq!(answer["client_id_issued_at"], h.now());
    assert_eq!(answer["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        answer["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(answer["client_name"], "Example Mail");
    assert!(answer.get("software_id").is_none());

    let record = h.store.client(id).unwrap().unwrap();
    assert_eq!(record.registered_by, RegisteredBy::ApiKey);
    assert_eq!(record.name.as_deref(), Some("Example Mail"));
    // The secret it was given authenticates it (and only the hash is stored).
    assert_ne!(
        record.secret_hash.as_ref().map(|h| h.0.as_str()),
        Some(secret)
    );
    let request = TokenRequest {
        grant_type: Some("refresh_token".to_owned()),
        refresh_token: Some("bgr_x".to_owned()),
        ..TokenRequest::default()
    };
    assert_eq!(
        code_of(h.server.token(&request, &basic(id, secret))),
        "invalid_grant"
    );
    assert_eq!(
        code_of(h.server.token(&request, &basic(id, "wrong"))),
        "invalid_client"
    );
}

#[test]
fn anonymous_registration_marks_the_client() {
    let h = Harness::new("[client_registration]\nanonymous = true\n");
    // Public but not native (an https redirect): a stored client, marked anonymous.
    let public = json!({
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "none",
        "client_name": "Web Mail",
    });
    let answer = h.server.register(None, &public).unwrap();
    assert!(answer.get("client_secret").is_none());
    let record = h
        .store
        .client(answer["client_id"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(record.registered_by, RegisteredBy::Anonymous);
    // Its name is shown, but not as verified.
    let pending = h
        .server
        .authorize(&pkce_request(&record.id, "https://app.example/cb", ""))
        .unwrap();
    assert!(!pending.client.verified);
    assert_eq!(pending.client.name.as_deref(), Some("Web Mail"));
}

fn native(extra: serde_json::Value) -> serde_json::Value {
    let mut metadata = json!({
        "redirect_uris": ["http://127.0.0.1/callback", "com.example.mail:/oauth"],
        "token_endpoint_auth_method": "none",
        "client_name": "Example Mail",
        "grant_types": ["authorization_code", "refresh_token", crate::DEVICE_CODE_GRANT],
    });
    for (key, value) in extra.as_object().unwrap() {
        metadata[key] = value.clone();
    }
    metadata
}

#[test]
fn public_native_clients_register_without_a_key_and_nothing_is_stored() {
    let h = Harness::new("");
    assert!(h.server.is_open_native_registration(&native(json!({}))));
    let answer = h.server.register(None, &native(json!({}))).unwrap();
    let id = answer["client_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("bgn1."), "{id}");
    assert!(id.len() <= 2_048);
    assert!(answer.get("client_secret").is_none());
    assert_eq!(answer["token_endpoint_auth_method"], "none");
    assert_eq!(answer["client_name"], "Example Mail");
    assert_eq!(answer["client_id_issued_at"], h.now());
    assert!(h.store.clients().unwrap().is_empty(), "a row was written");
    assert!(h.store.client(&id).unwrap().is_none());

    // The code flow: its name shown as unverified, PKCE required, redirects as registered
    // (the loopback one on any port).
    let redirect = "http://127.0.0.1:50123/callback";
    let pending = h
        .server
        .authorize(&pkce_request(&id, redirect, ""))
        .unwrap();
    assert!(!pending.client.verified);
    assert_eq!(pending.client.name.as_deref(), Some("Example Mail"));
    // Anyone may claim a loopback port: the person is asked every time.
    assert!(h.server.needs_consent("alice", &pending).unwrap());
    let mut no_pkce = pkce_request(&id, redirect, "");
    no_pkce.code_challenge = None;
    no_pkce.code_challenge_method = None;
    assert!(h.server.authorize(&no_pkce).is_err());
    assert!(h
        .server
        .authorize(&pkce_request(&id, "org.other.app:/oauth", ""))
        .is_err());
    let code = h.code_for("alice", &pkce_request(&id, redirect, ""));
    let tokens = h
        .server
        .token(&code_exchange(&code, redirect, VERIFIER), &public(&id))
        .unwrap();
    let claims = h.server.check_access_token(&tokens.access_token).unwrap();
    assert_eq!(claims.client_id, id);
    // It has no secret; one sent is refused.
    assert_eq!(
        code_of(
            h.server
                .token(&refresh(&tokens.refresh_token), &basic(&id, "x"))
        ),
        "invalid_client"
    );
    // And the device flow, which it registered for.
    assert!(h
        .server
        .device_authorization(None, &[], &public(&id))
        .is_ok());
    // A second instance over the same store knows the id (the key is shared).
    let second = h.second_server("");
    assert!(second.authorize(&pkce_request(&id, redirect, "")).is_ok());
    // The admin cannot delete what is not stored, but can end everything it was granted.
    assert!(h.server.remove_client(&id).unwrap());
    assert!(h.server.check_access_token(&tokens.access_token).is_err());
}

#[test]
fn a_tampered_native_id_is_no_client() {
    let h = Harness::new("");
    let id = h.server.register(None, &native(json!({}))).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (head, mac) = id.rsplit_once('.').unwrap();
    let flipped = if mac.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{head}.{flipped}{}", &mac[1..]);
    let refused = h.server.authorize(&pkce_request(
        &forged,
        "http://127.0.0.1:50123/callback",
        "",
    ));
    assert!(
        matches!(refused, Err(crate::AuthorizeError::Page(ref e)) if e.code.name() == "invalid_request"),
        "{refused:?}"
    );
    assert_eq!(
        code_of(h.server.device_authorization(None, &[], &public(&forged))),
        "invalid_client"
    );
    // The command line cannot take the form either.
    assert_eq!(
        code_of(h.server.add_client("bgn1.mine", &[], None, false)),
        "invalid_request"
    );
}

#[test]
fn device_only_native_clients_register_without_redirects() {
    let h = Harness::new("");
    let metadata = json!({
        "token_endpoint_auth_method": "none",
        "grant_types": [crate::DEVICE_CODE_GRANT, "refresh_token"],
    });
    let id = h.server.register(None, &metadata).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(h
        .server
        .device_authorization(None, &[], &public(&id))
        .is_ok());
    // Not registered for the code flow.
    let refused = h
        .server
        .authorize(&pkce_request(&id, "http://127.0.0.1:50123/callback", ""));
    assert!(refused.is_err());
}

#[test]
fn only_public_native_clients_may_register_without_a_key() {
    let h = Harness::new("");
    for (what, metadata) in [
        (
            "https redirect",
            native(json!({ "redirect_uris": ["https://app.example/cb"] })),
        ),
        (
            "one https among native ones",
            native(json!({ "redirect_uris": ["http://127.0.0.1/cb", "https://app.example/cb"] })),
        ),
        (
            "a secret",
            native(json!({ "token_endpoint_auth_method": "client_secret_basic" })),
        ),
        ("the default auth method", {
            let mut m = native(json!({}));
            m.as_object_mut()
                .unwrap()
                .remove("token_endpoint_auth_method");
            m
        }),
    ] {
        assert!(!h.server.is_open_native_registration(&metadata), "{what}");
        assert_eq!(
            code_of(h.server.register(None, &metadata)),
            "invalid_token",
            "{what}"
        );
    }
    // Grant types beyond the three, or localhost (a name, not the loopback address).
    for metadata in [
        native(json!({ "grant_types": ["client_credentials"] })),
        native(json!({ "redirect_uris": ["http://localhost/cb"] })),
    ] {
        assert!(h.server.register(None, &metadata).is_err(), "{metadata}");
    }
    assert!(h.store.clients().unwrap().is_empty());
}

#[test]
fn open_native_follows_require_unless_set() {
    // `require = true` keeps its promise by default: only the admin's (or API-key) clients.
    let strict = Harness::new("[client_registration]\nrequire = true\n");
    assert!(!strict
        .server
        .is_open_native_registration(&native(json!({}))));
    assert_eq!(
        code_of(strict.server.register(None, &native(json!({})))),
        "invalid_token"
    );
    let both = Harness::new("[client_registration]\nrequire = true\nopen_native = true\n");
    assert!(both.server.register(None, &native(json!({}))).is_ok());
    let off = Harness::new("[client_registration]\nopen_native = false\n");
    assert_eq!(
        code_of(off.server.register(None, &native(json!({})))),
        "invalid_token"
    );
    // With `anonymous`, the native one is still self-contained.
    let open = Harness::new("[client_registration]\nanonymous = true\n");
    open.server.register(None, &native(json!({}))).unwrap();
    assert!(open.store.clients().unwrap().is_empty());
}

#[test]
fn admin_clients_follow_the_redirect_rules() {
    let h = Harness::new("");
    let bad = h
        .server
        .add_client("x", &["http://app.example/cb".to_owned()], None, false);
    assert_eq!(code_of(bad), "invalid_redirect_uri");
    assert_eq!(
        code_of(h.server.add_client("", &[], None, false)),
        "invalid_request"
    );
    let uris = [
        "https://app.example/cb".to_owned(),
        "http://127.0.0.1/cb".to_owned(),
    ];
    assert_eq!(
        h.server
            .add_client("x", &uris, Some("X Mail"), false)
            .unwrap(),
        None
    );
    assert_eq!(
        code_of(h.server.add_client("x", &uris, None, false)),
        "invalid_request"
    );
    let record = h.store.client("x").unwrap().unwrap();
    assert_eq!(record.registered_by, RegisteredBy::Admin);
    assert!(record.grant_types.iter().any(|g| g == "authorization_code"));
    assert_eq!(h.server.clients().unwrap().len(), 1);
}

#[test]
fn native_ids_issued_earlier_do_not_outlive_open_native() {
    // Registered while native registration was open (the default)...
    let h = Harness::new("client_override_users = [\"admin\"]\n");
    let id = h.server.register(None, &native(json!({}))).unwrap()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let redirect = "http://127.0.0.1:50123/callback";
    // ...then the admin requires registration: `require`'s promise (only the admin's
    // clients, and the override users) holds for the ids already out there too.
    let strict = h.second_server(
        "client_override_users = [\"admin\"]\n[client_registration]\nrequire = true\n",
    );
    let pending = strict.authorize(&pkce_request(&id, redirect, "")).unwrap();
    assert!(pending.client.name.is_none(), "its name is no longer shown");
    assert!(
        matches!(
            strict.approve("alice", &pending),
            Err(crate::AuthorizeError::Page(ref e)) if e.code.name() == "unauthorized_client"
        ),
        "a native id from before `require` was approved"
    );
    let start = strict
        .device_authorization(None, &[], &public(&id))
        .unwrap();
    assert_eq!(
        code_of(strict.device_decide(&start.user_code, "alice", true)),
        "unauthorized_client",
        "a device-flow phish through an old native id"
    );
    strict
        .device_decide(&start.user_code, "admin", true)
        .unwrap();
    // With `open_native = true` beside `require`, the same id is a registered client again.
    let both = h.second_server("[client_registration]\nrequire = true\nopen_native = true\n");
    let pending = both.authorize(&pkce_request(&id, redirect, "")).unwrap();
    assert_eq!(pending.client.name.as_deref(), Some("Example Mail"));
    assert!(both.approve("alice", &pending).is_ok());
}
