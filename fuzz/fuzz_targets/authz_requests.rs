//! The authorization server's decisions on what a browser or client sends, before and
//! after anyone signs in: `authorize` (client, redirect URI, PKCE, scope), `approve`, the
//! token endpoint's code exchange, user-code lookup, and the passwd-file parser.
//!
//! Checks: no panic, and the safety rules hold whatever the input:
//! - an authorization request is accepted for an unregistered client only with a PKCE
//!   `S256` challenge and a loopback (`127.0.0.1`, `[::1]`) or private-use-scheme redirect
//!   — never any other redirect (the code-theft hole of unregistered ids);
//! - a refused request redirects only to the registered client's exact redirect URI, or for
//!   an unregistered id to a loopback or private-use one;
//! - a code is exchanged only with the verifier whose S256 is its challenge, and only once.
//!
//! Input: NUL-separated fields — response_type, client_id, redirect_uri, scope, state,
//! code_challenge, code_challenge_method, a code verifier, a user code, a passwd-file text.
//! Octet 0 picks the client: bit 0 the registered one (`registered`, redirect
//! `https://app.example/cb`), else the input's client id.
#![no_main]

use std::sync::{Arc, Mutex};

use authz::model::{AuthorizationRequest, ClientCredentials, TokenRequest};
use authz::store::SqliteStore;
use authz::{AuthServer, AuthorizeError, Settings};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

const REGISTERED: &str = "registered";
const REGISTERED_REDIRECT: &str = "https://app.example/cb";

/// Inputs served by one server before a fresh one replaces it: every approved request
/// leaves a code, a grant and a refresh token in its in-memory store.
const INPUTS_PER_SERVER: u32 = 5_000;

fn build_server() -> AuthServer {
    let settings: Settings = serde_json::from_value(serde_json::json!({
        "public_url": "https://auth.example.test",
        "listen": "127.0.0.1:0",
        "state_dir": "unused",
    }))
    .expect("settings");
    let store = SqliteStore::open_in_memory().expect("in-memory store");
    let server = AuthServer::new(settings, Arc::new(store)).expect("server");
    server
        .add_client(REGISTERED, &[REGISTERED_REDIRECT.to_owned()], None, false)
        .expect("registered client");
    server
}

/// The server for this input, renewed every [`INPUTS_PER_SERVER`] inputs.
fn with_server(run: impl FnOnce(&AuthServer)) {
    static SERVER: Mutex<Option<(AuthServer, u32)>> = Mutex::new(None);
    let mut slot = SERVER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (server, used) = slot.get_or_insert_with(|| (build_server(), 0));
    run(server);
    *used += 1;
    if *used >= INPUTS_PER_SERVER {
        *slot = None;
    }
}

fn field(fields: &[&[u8]], index: usize) -> Option<String> {
    fields
        .get(index)
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .filter(|text| !text.is_empty())
}

fn is_loopback_or_private_use(redirect: &str) -> bool {
    let Ok(url) = url::Url::parse(redirect) else {
        return false;
    };
    match url.scheme() {
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "[::1]")),
        "https" => false,
        scheme => scheme.contains('.'),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let fields: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    with_server(|server| check(server, flags, &fields));
});

fn check(server: &AuthServer, flags: u8, fields: &[&[u8]]) {
    let request = AuthorizationRequest {
        response_type: field(fields, 0),
        client_id: if flags & 1 != 0 {
            Some(REGISTERED.to_owned())
        } else {
            field(fields, 1)
        },
        redirect_uri: field(fields, 2),
        scope: field(fields, 3),
        state: field(fields, 4),
        code_challenge: field(fields, 5),
        code_challenge_method: field(fields, 6),
        nonce: None,
        response_mode: None,
        // RFC 8707 resources: whatever they are, the redirect rules above must hold.
        resource: field(fields, 8).into_iter().collect(),
    };
    // The input may also name the registered client itself.
    let registered = request.client_id.as_deref() == Some(REGISTERED);
    match server.authorize(&request) {
        Ok(pending) => {
            let challenge = pending.code_challenge.clone();
            assert!(
                challenge.is_some(),
                "a public client went through without PKCE"
            );
            assert_eq!(request.code_challenge_method.as_deref(), Some("S256"));
            if !registered {
                assert!(
                    is_loopback_or_private_use(&pending.redirect_uri),
                    "unregistered client accepted with redirect {:?}",
                    pending.redirect_uri
                );
            }
            exchange(server, &pending, field(fields, 7));
        }
        Err(AuthorizeError::Redirect(to)) => {
            // Errors go back only to a redirect the client may have: the registered one, or
            // for an unregistered id one that only the local machine receives.
            if registered {
                assert!(
                    to.starts_with(REGISTERED_REDIRECT),
                    "redirected to {to:?}, not the registered URI"
                );
            } else {
                assert!(
                    is_loopback_or_private_use(&to),
                    "an unregistered client was redirected to {to:?}"
                );
            }
        }
        Err(AuthorizeError::Page(_)) => {}
    }
    if let Some(user_code) = field(fields, 8) {
        let _ = server.device_prompt(&user_code);
    }
    if let Some(text) = field(fields, 9) {
        // Parsing only: checking a password runs the entry's deliberately slow hash.
        let users = authz::passwd::PasswdFile::parse(&text);
        assert!(users.len() <= text.lines().count(), "more users than lines");
    }
}

/// Approves `pending` and exchanges its code with `verifier`: it must succeed exactly when
/// the verifier's S256 is the challenge, and a second exchange must fail.
fn exchange(
    server: &AuthServer,
    pending: &authz::model::PendingAuthorization,
    verifier: Option<String>,
) {
    let Ok(location) = server.approve("alice", pending) else {
        return;
    };
    let url = url::Url::parse(&location).expect("approve returns a URL");
    let code = url
        .query_pairs()
        .find(|(key, _)| key == "code")
        .map(|(_, value)| value.into_owned())
        .expect("a code in the redirect");
    let request = TokenRequest {
        grant_type: Some("authorization_code".into()),
        code: Some(code),
        redirect_uri: Some(pending.redirect_uri.clone()),
        code_verifier: verifier.clone(),
        ..TokenRequest::default()
    };
    let caller = ClientCredentials {
        client_id: Some(pending.client_id.clone()),
        ..ClientCredentials::default()
    };
    let matches = verifier.as_deref().is_some_and(|verifier| {
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Some(digest) == pending.code_challenge
    });
    let first = server.token(&request, &caller);
    if first.is_ok() {
        assert!(matches, "a code was exchanged with the wrong verifier");
        assert!(
            server.token(&request, &caller).is_err(),
            "a code was exchanged twice"
        );
    }
}
