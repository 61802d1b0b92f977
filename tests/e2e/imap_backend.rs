//! The proxy's side towards the real Dovecot: TLS to the backend (implicit and STARTTLS, with
//! and without verification), the login strategies, a wrong master password, commands
//! pipelined behind AUTHENTICATE, and the client's address forwarded with IMAP ID.

use std::time::{Duration, Instant};

use crate::support::imap_client::{last_status, literal_size, AuthOutcome};
use crate::support::{
    connect, login, test_message, xoauth2_b64, Dovecot, Idp, Proxy, ProxyConfig, TestCerts,
    TestDir, TestEnv, TlsMode,
};

/// A test environment whose Dovecot offers implicit TLS and STARTTLS with a certificate from
/// the test CA (which nothing trusts by default).
fn tls_env(label: &str) -> TestEnv {
    let dir = TestDir::new(label);
    let certs = TestCerts::generate(dir.path());
    let dovecot = Dovecot::builder(dir.path())
        .tls(&certs.cert_pem, &certs.key_pem)
        .start();
    TestEnv {
        dovecot,
        idp: Idp::start(),
        certs,
        dir,
    }
}

/// Backend `tls` mode and address for it, plus raw extra keys.
fn backend_tls(config: &mut ProxyConfig, env: &TestEnv, tls: &str, extra: &[String]) {
    let address = match tls {
        "implicit" => env.dovecot.imaps_addr().expect("Dovecot imaps port"),
        _ => env.dovecot.imap_addr(),
    };
    let backend = config.backend_mut("imap");
    backend.tls = tls.into();
    backend.address = address.to_string();
    backend.extra.extend(extra.iter().cloned());
}

fn verified_with_test_ca(env: &TestEnv) -> Vec<String> {
    vec![
        "tls_verify = true".into(),
        format!("ca_file = {:?}", env.certs.ca_pem.display().to_string()),
        "server_name = \"localhost\"".into(),
    ]
}

/// Log in as alice over the implicit-TLS listener and fetch message 1.
async fn login_and_fetch(env: &TestEnv, proxy: &Proxy) -> Vec<u8> {
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(env, proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;
    let select = client.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(
        select.iter().any(|l| l == "* 1 EXISTS"),
        "alice's INBOX: {select:?}"
    );
    client.fetch_body("c", 1).await
}

/// One XOAUTH2 attempt for alice with a valid token; the outcome, bounded by the client's
/// timeout (a hang fails the test).
async fn attempt(env: &TestEnv, proxy: &Proxy) -> AuthOutcome {
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(env, proxy, TlsMode::Implicit).await;
    client
        .authenticate("a", "XOAUTH2", &xoauth2_b64("alice", &token), true)
        .await
}

#[tokio::test]
async fn implicit_tls_to_the_backend_verified_against_ca_file() {
    let env = tls_env("be-implicit");
    let message = env
        .dovecot
        .deliver("alice", &test_message("implicit tls", 6_000));
    let proxy = env.start_proxy(|c| backend_tls(c, &env, "implicit", &verified_with_test_ca(&env)));
    assert!(
        login_and_fetch(&env, &proxy).await == message,
        "FETCH over a TLS backend is not byte-identical"
    );
}

#[tokio::test]
async fn starttls_to_the_backend_verified_against_ca_file() {
    let env = tls_env("be-starttls");
    let message = env
        .dovecot
        .deliver("alice", &test_message("starttls", 3_000));
    let proxy = env.start_proxy(|c| backend_tls(c, &env, "starttls", &verified_with_test_ca(&env)));
    assert!(
        login_and_fetch(&env, &proxy).await == message,
        "FETCH over a STARTTLS backend is not byte-identical"
    );
}

#[tokio::test]
async fn backend_certificate_not_in_the_public_roots_is_unavailable() {
    let env = tls_env("be-untrusted");
    let proxy = env.start_proxy(|c| {
        backend_tls(
            c,
            &env,
            "implicit",
            &[
                "tls_verify = true".into(),
                "server_name = \"localhost\"".into(),
            ],
        )
    });
    let started = Instant::now();
    let outcome = attempt(&env, &proxy).await;
    assert!(
        outcome.tagged.is("NO", Some("UNAVAILABLE")),
        "an untrusted backend certificate must be NO [UNAVAILABLE]: {outcome:?}"
    );
    assert!(
        outcome.challenge.is_none(),
        "no token challenge: {outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn backend_tls_without_verification_accepts_the_untrusted_certificate() {
    let env = tls_env("be-noverify");
    let message = env
        .dovecot
        .deliver("alice", &test_message("noverify", 1_000));
    let proxy = env.start_proxy(|c| {
        backend_tls(c, &env, "implicit", &["tls_verify = false".into()]);
    });
    assert!(
        login_and_fetch(&env, &proxy).await == message,
        "FETCH over an unverified TLS backend is not byte-identical"
    );
}

#[tokio::test]
async fn plain_authzid_opens_the_token_users_mailbox() {
    let env = TestEnv::new("be-authzid");
    // Only alice has mail: bob's session would show an empty INBOX.
    let message = env
        .dovecot
        .deliver("alice", &test_message("authzid", 2_500));
    let proxy = env.start_proxy(|c| c.backend_mut("imap").login = "plain-authzid".into());
    assert!(
        login_and_fetch(&env, &proxy).await == message,
        "FETCH through plain-authzid is not byte-identical"
    );
    // Dovecot saw a SASL PLAIN login for alice (not a LOGIN as alice*proxymaster).
    let log = wait_for_dovecot_log(&env.dovecot, "Login: user=<alice>");
    let line = log
        .lines()
        .find(|l| l.contains("Login: user=<alice>"))
        .expect("login line");
    assert!(line.contains("method=PLAIN"), "{line}");
}

#[tokio::test]
async fn wrong_master_password_is_unavailable_not_a_token_failure() {
    let env = TestEnv::new("be-masterpw");
    let proxy = env.start_proxy(|c| c.backend_mut("imap").master_password = "not-it".into());
    let outcome = attempt(&env, &proxy).await;
    assert!(
        outcome.tagged.is("NO", Some("UNAVAILABLE")),
        "a backend refusing the master user must be NO [UNAVAILABLE]: {outcome:?}\n{}",
        env.dovecot.log()
    );
    assert!(
        outcome.challenge.is_none(),
        "no token challenge: {outcome:?}"
    );
}

#[tokio::test]
async fn commands_pipelined_with_authenticate_reach_the_backend() {
    let env = TestEnv::new("be-pipeline");
    let message = env
        .dovecot
        .deliver("alice", &test_message("pipelined", 5_000));
    let proxy = env.start_proxy(|_| {});
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let burst = format!(
        "a AUTHENTICATE XOAUTH2 {}\r\nb SELECT INBOX\r\nc FETCH 1 (BODY.PEEK[])\r\n",
        xoauth2_b64("alice", &token)
    );
    client.send(burst.as_bytes()).await;

    let auth = client.read_until_tagged("a").await;
    let status = last_status(&auth);
    assert!(status.is("OK", Some("CAPABILITY")), "{auth:?}");
    assert!(
        status.capabilities().iter().any(|c| c == "IMAP4REV1"),
        "{auth:?}"
    );
    let select = client.read_until_tagged("b").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(select.iter().any(|l| l == "* 1 EXISTS"), "{select:?}");

    let header = client.read_line().await;
    assert!(
        header.starts_with("* 1 FETCH ") && header.contains("BODY[]"),
        "{header:?}"
    );
    let size = literal_size(&header).unwrap_or_else(|| panic!("no literal in {header:?}"));
    assert!(
        client.read_bytes(size).await == message,
        "pipelined FETCH is not byte-identical"
    );
    let rest = client.read_until_tagged("c").await;
    assert_eq!(last_status(&rest).kind, "OK", "{rest:?}");
}

/// Wait (bounded) until Dovecot's log contains `needle`: its log process writes
/// asynchronously, so the line may trail the IMAP reply by a little.
pub(crate) fn wait_for_dovecot_log(dovecot: &Dovecot, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = dovecot.log();
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not in Dovecot's log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn client_address_is_forwarded_to_dovecot_with_id() {
    let dir = TestDir::new("be-id");
    let certs = TestCerts::generate(dir.path());
    // Log the forwarded port and the real (proxy-side) port of each login.
    let dovecot = Dovecot::builder(dir.path())
        .config(
            "login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} \
             real_rip=%{real_rip} real_rport=%{real_rport} lip=%l mpid=%e %c session=<%{session}>",
        )
        .start();
    let env = TestEnv {
        dovecot,
        idp: Idp::start(),
        certs,
        dir,
    };
    let proxy = env.start_proxy(|_| {});
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let client_port = client.local_addr().port();
    login(&mut client, "a", "alice", &token).await;

    let log = wait_for_dovecot_log(&env.dovecot, "Login: user=<alice>");
    let line = log
        .lines()
        .find(|l| l.contains("Login: user=<alice>"))
        .expect("login line");
    // Dovecot writes `key=value, key=value, ...`.
    let field = |key: &str| -> String {
        line.split([',', ' '])
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in {line}"))
            .to_owned()
    };
    assert_eq!(field("rip"), "127.0.0.1", "{line}");
    assert_eq!(
        field("rport"),
        client_port.to_string(),
        "Dovecot did not log the client's port (forwarded with ID): {line}"
    );
    // The connection Dovecot really saw is the proxy's own, from another port.
    assert_ne!(
        field("real_rport"),
        client_port.to_string(),
        "real port equals the client's: {line}"
    );
    // x-session-ext-id: Dovecot's session id is the proxy's, for log correlation.
    let session = field("session");
    let session = session.trim_start_matches('<').trim_end_matches('>');
    assert!(
        proxy.log().contains(&format!("session{{id={session} ")),
        "Dovecot session <{session}> is not a proxy session id: {line}"
    );
}
