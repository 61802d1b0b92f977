//! ManageSieve before login: the proxy's capability block carries the backend's own
//! capabilities (RFC 5804 §1.7: `NOTIFY` whenever `SIEVE` lists `enotify`), checked against
//! a real Dovecot Pigeonhole and with sieve-connect, which says "This violates MANAGESIEVE
//! specification" on every connection when `NOTIFY` is missing.
//!
//! sieve-connect cannot do OAuth: it is run up to its authentication, which fails because
//! it is asked for PLAIN; by then it has read the capability block twice (before and after
//! STARTTLS) and judged both.

use std::process::{Command, Stdio};

use crate::support::imap_client::{literal_size, ImapClient};
use crate::support::{oauthbearer_b64, run, Proxy, ProxyConfig, TestEnv, TlsMode};

/// One capability line, `("NAME" upper-cased, value)`.
type Capability = (String, Option<String>);

/// Capabilities the proxy says itself, or never says, whatever the backend sent.
const PROXYS_OWN: [&str; 4] = ["IMPLEMENTATION", "SASL", "STARTTLS", "XCLIENT"];

/// A response's lines up to and including its `OK`/`NO`/`BYE`; a literal's contents are
/// appended to the line that announced it.
async fn read_response(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = client.read_line().await;
        if let Some(n) = literal_size(&line) {
            let data = client.read_bytes(n).await;
            line.push_str(&String::from_utf8_lossy(&data));
        }
        let done = ["OK", "NO", "BYE"].iter().any(|status| {
            line.split([' ', '('])
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case(status))
        });
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// The capability lines of a block (`"NAME" "value"` or `"NAME"`).
fn capabilities(lines: &[String]) -> Vec<Capability> {
    lines
        .iter()
        .filter(|l| l.starts_with('"'))
        .map(|l| {
            let parts: Vec<&str> = l.split('"').collect();
            let name = parts.get(1).copied().unwrap_or("").to_ascii_uppercase();
            (name, parts.get(3).map(|v| (*v).to_string()))
        })
        .collect()
}

fn find(block: &[Capability], name: &str) -> Option<Option<String>> {
    block
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

/// Dovecot's own capability block, read from its greeting as the proxy reads it (the proxy's
/// address is in Dovecot's `login_trusted_networks`, so `XCLIENT` is offered too).
async fn dovecot_block(env: &TestEnv) -> Vec<Capability> {
    let mut client = ImapClient::connect_plain(env.dovecot.sieve_addr()).await;
    capabilities(&read_response(&mut client).await)
}

/// One OAUTHBEARER login on the implicit-TLS listener. Logging in makes the proxy read the
/// backend's capability block (it also does so at start-up, in the background); its `OK`
/// is the observable point after which every new connection gets the learned block.
async fn log_in_once(env: &TestEnv, proxy: &Proxy, token: &str) {
    let addr = proxy.addr(TlsMode::Implicit);
    let mut client = ImapClient::connect_tls(addr, env.certs.client_config()).await;
    read_response(&mut client).await;
    let command = format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer_b64("alice", token)
    );
    client.send(command.as_bytes()).await;
    let reply = read_response(&mut client).await;
    assert_eq!(reply, ["OK \"Logged in.\""], "login");
}

#[tokio::test]
async fn the_proxys_block_carries_dovecots_capabilities_and_sieve_connect_sees_no_violation() {
    let env = TestEnv::with_dovecot("sieve-fidelity", |b| b.sieve());
    let dovecot = dovecot_block(&env).await;
    let sieve = find(&dovecot, "SIEVE").flatten().unwrap_or_default();
    assert!(
        sieve.split(' ').any(|e| e == "enotify") && find(&dovecot, "NOTIFY").is_some(),
        "the test needs a backend with enotify and NOTIFY: {dovecot:?}"
    );
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy_with(&ProxyConfig::managesieve(&env));
    log_in_once(&env, &proxy, &token).await;

    // The greeting on the STARTTLS listener, and the block again after the handshake: each
    // of Dovecot's capabilities with Dovecot's value, except what the proxy says itself.
    let mut client = ImapClient::connect_plain(proxy.addr(TlsMode::Starttls)).await;
    let greeting = capabilities(&read_response(&mut client).await);
    client.send(b"STARTTLS\r\n").await;
    let reply = read_response(&mut client).await;
    assert!(reply[0].starts_with("OK"), "STARTTLS: {reply:?}");
    client.upgrade_tls(env.certs.client_config()).await;
    let after = capabilities(&read_response(&mut client).await);
    for (what, block) in [("greeting", &greeting), ("after STARTTLS", &after)] {
        for (name, value) in &dovecot {
            if PROXYS_OWN.contains(&name.as_str()) {
                continue;
            }
            assert_eq!(
                find(block, name).as_ref(),
                Some(value),
                "{what}: Dovecot's {name} (Dovecot: {dovecot:?}, proxy: {block:?})"
            );
        }
        assert_eq!(
            find(block, "IMPLEMENTATION"),
            Some(Some("bearergate".into())),
            "{what}"
        );
        for absent in ["XCLIENT", "UNAUTHENTICATE"] {
            assert_eq!(find(block, absent), None, "{what}: {block:?}");
        }
    }
    assert_eq!(find(&greeting, "STARTTLS"), Some(None), "{greeting:?}");
    assert_eq!(find(&after, "STARTTLS"), None, "{after:?}");
    assert_eq!(
        find(&after, "SASL"),
        Some(Some("OAUTHBEARER XOAUTH2".into())),
        "{after:?}"
    );

    // sieve-connect, up to its (PLAIN, so refused) authentication.
    let port = proxy.addr(TlsMode::Starttls).port().to_string();
    let args = [
        "--debug",
        "--nosrv",
        "--notlsverify",
        "--server",
        "127.0.0.1",
        "--port",
        &port,
        "--user",
        "alice",
        "--authmech",
        "PLAIN",
        "--list",
    ];
    let out = run(Command::new("sieve-connect")
        .args(args)
        .stdin(Stdio::null()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Server does not offer SASL mechanism PLAIN"),
        "sieve-connect did not get through STARTTLS to authentication:\n{text}"
    );
    for complaint in [
        "violat",
        "Unhandled server line",
        "Empty \"",
        "does not return",
    ] {
        assert!(
            !text.contains(complaint),
            "sieve-connect complains ({complaint}):\n{text}"
        );
    }
    // Its debug output shows each block it read: NOTIFY before and after STARTTLS.
    let notify = format!(
        "<<< \"NOTIFY\" \"{}\"",
        find(&dovecot, "NOTIFY").flatten().unwrap_or_default()
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(&notify)).count(),
        2,
        "want {notify} in both blocks sieve-connect read:\n{text}"
    );
}
