//! `login = "xclient"` (Postfix): the proxy vouches for the user with XCLIENT, so a password
//! it cannot check must never be accepted there, and XCLIENT stays the proxy's.

use std::fs;
use std::net::IpAddr;
use std::process::Command;

use super::smtp::{auth_token, command, read_reply};
use super::*;
use crate::support::postfix::Postfix;
use crate::support::proxy::ListenerConfig;
use crate::support::{run, TestCerts, TestDir};

/// A whole config: one plaintext SMTP listener in front of an xclient backend.
fn xclient_config(dir: &TestDir, password_fallback: bool) -> String {
    let certs = TestCerts::generate(dir.path());
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [[listeners]]\nprotocol = \"smtp\"\nlisten = \"127.0.0.1:{}\"\ntls = \"none\"\n\
         allow_plaintext_auth = true\npassword_fallback = {password_fallback}\n\
         backend = \"submission\"\n\n\
         [backends.submission]\naddress = \"127.0.0.1:25\"\ntls = \"none\"\n\
         login = \"xclient\"\n\n\
         [validator]\nkind = \"introspection\"\n\
         introspection_url = \"http://127.0.0.1:8080/introspect\"\n\
         client_id = \"bearergate\"\nclient_secret = \"secret\"\n\
         username_claim = \"username\"\nrequired_scope = \"mail\"\n",
        certs.cert_pem.display(),
        certs.key_pem.display(),
        free_port()
    )
}

fn check_config(dir: &TestDir, name: &str, config: &str) -> std::process::Output {
    let path = dir.path().join(name);
    fs::write(&path, config).expect("write config");
    run(Command::new(env!("CARGO_BIN_EXE_bearergate"))
        .arg("check-config")
        .arg("--config")
        .arg(&path))
}

#[test]
fn check_config_refuses_password_fallback_with_xclient() {
    let dir = TestDir::new("pwfb-xclient-config");
    let good = check_config(&dir, "good.toml", &xclient_config(&dir, false));
    assert!(
        good.status.success(),
        "the same config without the fallback is valid: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let bad = check_config(&dir, "bad.toml", &xclient_config(&dir, true));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "accepted:\n{stderr}");
    assert!(
        stderr.contains("password_fallback") && stderr.to_lowercase().contains("xclient"),
        "want an error naming password_fallback and xclient:\n{stderr}"
    );
}

/// The proxy in front of `postfix`: one plaintext SMTP listener (`allow_plaintext_auth`)
/// and `login = "xclient"`.
fn xclient_proxy(env: &TestEnv, postfix: &Postfix) -> Proxy {
    let mut config = env.proxy_config();
    config.listeners = vec![ListenerConfig::smtp(TlsMode::None)];
    let backend = config.backend_mut("imap");
    backend.name = "submission".into();
    backend.address = postfix.addr().to_string();
    backend.login = "xclient".into();
    backend.master_user_format = "{user}".into();
    env.start_proxy_with(&config)
}

/// XOAUTH2 as alice through the proxy on `client`, then the client's own `XCLIENT
/// LOGIN=bob`, which the relay carries to Postfix: its reply.
async fn relayed_xclient(env: &TestEnv, client: &mut ImapClient) -> Vec<String> {
    let greeting = read_reply(client).await;
    assert!(
        greeting[greeting.len() - 1].starts_with("220 "),
        "{greeting:?}"
    );
    command(client, "EHLO client.test").await;
    let token = env.idp.issue("alice");
    let reply = auth_token(client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
    assert!(reply.starts_with("235 "), "{reply}");
    command(client, "XCLIENT LOGIN=bob").await
}

/// The client comes from an address Postfix trusts with XCLIENT (127.0.0.1, the proxy's
/// own): after the proxy's `XCLIENT ADDR=127.0.0.1 LOGIN=alice`, Postfix judges the next
/// XCLIENT by that address, so the client could make itself bob. The proxy sees XCLIENT
/// in the post-login EHLO and refuses to hand the connection over.
#[tokio::test]
async fn a_client_that_could_re_xclient_itself_is_never_handed_the_connection() {
    let env = env("pwfb-xclient-relay");
    let postfix = Postfix::builder(env.dir.path()).start();
    let proxy = xclient_proxy(&env, &postfix);
    let mut client = ImapClient::connect_plain(proxy.addr(TlsMode::None)).await;
    let greeting = read_reply(&mut client).await;
    assert!(
        greeting[greeting.len() - 1].starts_with("220 "),
        "{greeting:?}"
    );
    command(&mut client, "EHLO client.test").await;
    let token = env.idp.issue("alice");
    let reply = auth_token(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
    assert!(reply.starts_with("454 4.7.0 "), "{reply}");
    // Still the proxy's session: MAIL before AUTH is refused by the proxy itself.
    let reply = command(&mut client, "MAIL FROM:<bob@example.test>").await;
    assert!(
        reply.last().is_some_and(|l| l.starts_with("530 ")),
        "{reply:?}"
    );
    assert!(
        proxy.wait_for_log("still offers XCLIENT", Duration::from_secs(10)),
        "{}",
        proxy.log()
    );
}

/// As deployed: Postfix trusts only the proxy's address with XCLIENT, and the client
/// comes from elsewhere (127.0.0.2), so its relayed XCLIENT is refused.
#[tokio::test]
async fn client_xclient_is_refused_when_only_the_proxy_is_an_xclient_host() {
    let env = env("pwfb-xclient-narrow");
    let postfix = Postfix::builder(env.dir.path()).start();
    let proxy = xclient_proxy(&env, &postfix);
    let local = IpAddr::from([127, 0, 0, 2]);
    let mut client = ImapClient::connect_plain_from(local, proxy.addr(TlsMode::None)).await;
    let reply = relayed_xclient(&env, &mut client).await;
    assert!(
        reply.last().is_some_and(|l| l.starts_with("550 ")),
        "want Postfix's 550 insufficient authorization: {reply:?}\n{}",
        postfix.log()
    );
    let reply = command(&mut client, "MAIL FROM:<alice@example.test>").await;
    assert!(
        reply.last().is_some_and(|l| l.starts_with("250 ")),
        "still alice's session: {reply:?}"
    );
}
