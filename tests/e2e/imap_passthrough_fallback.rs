//! The two ways a login can leave the OAuth path, against the real Dovecot: passthrough to a
//! Dovecot that validates OAuth itself, and the password fallback for legacy clients.
//! (master, plain-authzid and backend TLS are in `imap_backend.rs`.)

use serde_json::Value;

use crate::support::certs::TestCerts;
use crate::support::dovecot::Dovecot;
use crate::support::idp::Idp;
use crate::support::imap_client::last_status;
use crate::support::{connect, login, test_message, xoauth2_b64, TestDir, TestEnv, TlsMode};

#[tokio::test]
async fn password_fallback_lets_the_backend_check_passwords() {
    let env = TestEnv::new("fallback");
    let message = env
        .dovecot
        .deliver("alice", &test_message("app password", 1_000));
    let proxy =
        env.start_proxy(|c| c.each_listener(|l| l.extra.push("password_fallback = true".into())));
    let (mut client, greeting) = connect(&env, &proxy, TlsMode::Implicit).await;
    assert!(
        greeting.capabilities().iter().any(|c| c == "AUTH=PLAIN"),
        "{greeting:?}"
    );
    let reply = client.command("a", "LOGIN alice alicepass").await;
    assert_eq!(last_status(&reply).kind, "OK", "{reply:?}");
    client.command("s", "SELECT INBOX").await;
    assert_eq!(client.fetch_body("b", 1).await, message);
    assert_eq!(env.idp.requests(), 0, "passwords never reach the IdP");

    // OAuth still works on the same port, and a wrong password is the backend's NO.
    let token = env.idp.issue("alice");
    let (mut oauth, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut oauth, "c", "alice", &token).await;
    let (mut wrong, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let reply = wrong.command("d", "LOGIN alice wrongpass").await;
    assert_eq!(last_status(&reply).kind, "NO", "{reply:?}");

    // Before TLS the fallback stays shut.
    let (mut plain, greeting) = connect(&env, &proxy, TlsMode::Starttls).await;
    assert!(!greeting.capabilities().iter().any(|c| c == "AUTH=PLAIN"));
    let reply = plain.command("e", "LOGIN alice alicepass").await;
    assert!(
        last_status(&reply).is("NO", Some("PRIVACYREQUIRED")),
        "{reply:?}"
    );
}

/// A Dovecot that validates tokens itself, accepting only those with the `dovecot` scope.
fn oauth_dovecot(dir: &TestDir, idp: &Idp) -> Dovecot {
    let url = idp
        .url()
        .replacen("http://", "http://bearergate:introsecret@", 1);
    Dovecot::builder(dir.path()).oauth2(&url).start()
}

#[tokio::test]
async fn passthrough_forwards_the_token_and_relays_the_backend_challenge() {
    let dir = TestDir::new("passthrough");
    let certs = TestCerts::generate(dir.path());
    let idp = Idp::start();
    let dovecot = oauth_dovecot(&dir, &idp);
    let message = dovecot.deliver("alice", &test_message("passthrough", 3_000));
    let env = TestEnv {
        dovecot,
        idp,
        certs,
        dir,
    };
    let proxy = env.start_proxy(|c| c.backend_mut("imap").login = "passthrough".into());

    let token = env.idp.issue_with("alice", |claims| {
        claims.insert("scope".into(), Value::from("mail dovecot"));
    });
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate("a", "XOAUTH2", &xoauth2_b64("alice", &token), false)
        .await;
    assert_eq!(outcome.tagged.kind, "OK", "{outcome:?}");
    client.command("s", "SELECT INBOX").await;
    assert_eq!(client.fetch_body("b", 1).await, message);
    assert_eq!(
        env.idp.requests(),
        2,
        "the proxy and Dovecot each introspected once"
    );

    // The proxy accepts this token, Dovecot does not (no `dovecot` scope): Dovecot's own
    // challenge must reach the client unchanged, then the command fails.
    let refused = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate("c", "XOAUTH2", &xoauth2_b64("alice", &refused), true)
        .await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );
    let challenge = outcome.challenge.expect("Dovecot's challenge relayed");
    assert_eq!(challenge["status"], "401", "{challenge}");
    assert_eq!(challenge["schemes"], "bearer", "{challenge}");
}
