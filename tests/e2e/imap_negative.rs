//! Failed logins: each must end in the contracted reply code, after the mechanism's error
//! challenge where the token itself is at fault, and never hang.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::imap_client::{last_status, AuthOutcome};
use crate::support::ports::closed_addr;
use crate::support::{
    connect, oauthbearer_b64, unix_now, xoauth2_b64, IdpMode, Proxy, TestEnv, TlsMode,
};

/// OAUTHBEARER (SASL-IR) and XOAUTH2 (no initial response, as imaplib) for `user` and `token`
/// on the implicit-TLS listener.
async fn both_mechanisms(
    env: &TestEnv,
    proxy: &Proxy,
    user: &str,
    token: &str,
) -> (AuthOutcome, AuthOutcome) {
    let (mut client, _) = connect(env, proxy, TlsMode::Implicit).await;
    let bearer = client
        .authenticate("a", "OAUTHBEARER", &oauthbearer_b64(user, token), true)
        .await;
    let (mut client, _) = connect(env, proxy, TlsMode::Implicit).await;
    let xoauth2 = client
        .authenticate("a", "XOAUTH2", &xoauth2_b64(user, token), false)
        .await;
    (bearer, xoauth2)
}

fn challenge_status(outcome: &AuthOutcome) -> String {
    let challenge = outcome
        .challenge
        .as_ref()
        .unwrap_or_else(|| panic!("no error challenge before the failure: {outcome:?}"));
    match challenge.get("status") {
        Some(Value::String(status)) => status.clone(),
        other => panic!("challenge without a string status ({other:?}): {challenge}"),
    }
}

/// Token at fault: challenge with `status`, then `NO [AUTHENTICATIONFAILED]`.
fn assert_rejected(outcomes: &(AuthOutcome, AuthOutcome), bearer_statuses: &[&str]) {
    assert_rejected_with(outcomes, bearer_statuses, &["401"]);
}

fn assert_rejected_with(
    outcomes: &(AuthOutcome, AuthOutcome),
    bearer_statuses: &[&str],
    xoauth2_statuses: &[&str],
) {
    let (bearer, xoauth2) = outcomes;
    let status = challenge_status(bearer);
    assert!(
        bearer_statuses.contains(&status.as_str()),
        "OAUTHBEARER challenge status {status:?}, want one of {bearer_statuses:?}"
    );
    let status = challenge_status(xoauth2);
    assert!(
        xoauth2_statuses.contains(&status.as_str()),
        "XOAUTH2 challenge status {status:?}, want one of {xoauth2_statuses:?}"
    );
    for outcome in [bearer, xoauth2] {
        assert!(
            outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
            "want NO [AUTHENTICATIONFAILED]: {outcome:?}"
        );
    }
}

/// Someone else is at fault: `NO [UNAVAILABLE]` (an error challenge first is tolerated).
fn assert_unavailable(outcomes: &(AuthOutcome, AuthOutcome)) {
    for outcome in [&outcomes.0, &outcomes.1] {
        assert!(
            outcome.tagged.is("NO", Some("UNAVAILABLE")),
            "want NO [UNAVAILABLE]: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn token_of_another_user_is_rejected() {
    let env = TestEnv::new("wronguser");
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});
    assert_rejected(
        &both_mechanisms(&env, &proxy, "bob", &token).await,
        &["invalid_token"],
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn expired_token_is_rejected_even_if_the_idp_says_active() {
    let env = TestEnv::new("expired");
    let token = env.idp.issue_with("alice", |claims| {
        claims.insert("exp".into(), (unix_now() - 60).into());
        claims.insert("iat".into(), (unix_now() - 3660).into());
    });
    let proxy = env.start_proxy(|_| {});
    assert_rejected(
        &both_mechanisms(&env, &proxy, "alice", &token).await,
        &["invalid_token"],
    );
}

#[tokio::test]
async fn inactive_and_unknown_tokens_are_rejected() {
    let env = TestEnv::new("inactive");
    let inactive = env.idp.issue_with("alice", |claims| {
        claims.insert("active".into(), false.into());
    });
    let proxy = env.start_proxy(|_| {});
    assert_rejected(
        &both_mechanisms(&env, &proxy, "alice", &inactive).await,
        &["invalid_token"],
    );
    let unknown = crate::support::random_token();
    assert_rejected(
        &both_mechanisms(&env, &proxy, "alice", &unknown).await,
        &["invalid_token"],
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn token_without_the_required_scope_is_rejected() {
    let env = TestEnv::new("scope");
    let token = env.idp.issue_with("alice", |claims| {
        claims.insert("scope".into(), "openid profile mailbox".into());
    });
    let proxy = env.start_proxy(|_| {});
    // RFC 6750: insufficient_scope, HTTP 403 in Google's XOAUTH2 terms.
    assert_rejected_with(
        &both_mechanisms(&env, &proxy, "alice", &token).await,
        &["insufficient_scope", "invalid_token"],
        &["403", "401"],
    );
}

#[tokio::test]
async fn idp_answering_503_is_unavailable() {
    let env = TestEnv::new("idp503");
    let token = env.idp.issue("alice");
    env.idp.set_mode(IdpMode::Unavailable);
    let proxy = env.start_proxy(|_| {});
    assert_unavailable(&both_mechanisms(&env, &proxy, "alice", &token).await);
    assert!(env.idp.requests() >= 1, "the IdP was never asked");
}

#[tokio::test]
async fn idp_refusing_connections_is_unavailable() {
    let mut env = TestEnv::new("idpdown");
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});
    env.idp.shutdown();
    assert_unavailable(&both_mechanisms(&env, &proxy, "alice", &token).await);
}

#[tokio::test]
async fn idp_that_never_answers_is_unavailable_after_the_timeout() {
    let env = TestEnv::new("idpstall");
    let token = env.idp.issue("alice");
    env.idp.set_mode(IdpMode::Stall);
    let proxy = env.start_proxy(|c| c.validator.timeout = "1s".into());
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let started = Instant::now();
    let outcome = client
        .authenticate("a", "OAUTHBEARER", &oauthbearer_b64("alice", &token), true)
        .await;
    assert!(outcome.tagged.is("NO", Some("UNAVAILABLE")), "{outcome:?}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "answered after {:?} with a 1 s IdP timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn backend_down_is_unavailable() {
    let env = TestEnv::new("backenddown");
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|c| c.backend_mut("imap").address = closed_addr().to_string());
    assert_unavailable(&both_mechanisms(&env, &proxy, "alice", &token).await);
    assert!(
        env.idp.requests() >= 1,
        "the token should be validated before the backend"
    );
}

#[tokio::test]
async fn unknown_mechanisms_are_refused_and_the_session_continues() {
    let env = TestEnv::new("mech");
    let proxy = env.start_proxy(|_| {});
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    for (tag, command) in [
        ("a", "AUTHENTICATE X-UNKNOWN-MECH"),
        ("b", "AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlcGFzcw=="),
        ("c", "AUTHENTICATE CRAM-MD5"),
    ] {
        let lines = client.command(tag, command).await;
        assert!(
            !lines.iter().any(|l| l.starts_with('+')),
            "{command}: no continuation for an unknown mechanism: {lines:?}"
        );
        let status = last_status(&lines);
        assert!(
            status.kind == "NO" || status.kind == "BAD",
            "{command}: want NO or BAD, got {lines:?}"
        );
    }
    let noop = client.command("d", "NOOP").await;
    assert_eq!(
        last_status(&noop).kind,
        "OK",
        "session still usable: {noop:?}"
    );
    assert_eq!(env.idp.requests(), 0, "nothing to introspect");
}
