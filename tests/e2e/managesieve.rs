//! ManageSieve (RFC 5804) through the proxy to a real Dovecot Pigeonhole: sievelib from PyPI
//! and a raw client; the proxy's own greeting before and after STARTTLS; refused logins.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::imap_client::{literal_size, ImapClient};
use crate::support::ports::closed_addr;
use crate::support::{
    b64_decode, client_script, expect_success, oauthbearer_b64, run, xoauth2_b64, IdpMode, Proxy,
    ProxyConfig, TestEnv, TlsMode,
};

/// How long the proxy may take to learn Dovecot's Sieve extensions after it is ready.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

fn sieve_env(label: &str) -> TestEnv {
    TestEnv::with_dovecot(label, |b| b.sieve())
}

fn start_proxy(env: &TestEnv, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
    let mut config = ProxyConfig::managesieve(env);
    tweak(&mut config);
    env.start_proxy_with(&config)
}

/// A script with 8-bit text, CRLF line ends (as RFC 5228 wants and sievelib sends).
const SCRIPT: &str = "require [\"fileinto\"];\r\n\
                      # Grüße — über bearergate, tabs\tand trailing spaces   \r\n\
                      if header :contains \"subject\" \"[list]\" {\r\n  \
                      fileinto \"INBOX\";\r\n  stop;\r\n}\r\n";

// ---- a raw ManageSieve client over the line client -------------------------------------

/// The status word of a final response line (`OK`, `NO`, `BYE`), if it is one.
fn status(line: &str) -> Option<&'static str> {
    let word = line.split([' ', '(']).next().unwrap_or("");
    ["OK", "NO", "BYE"]
        .into_iter()
        .find(|s| word.eq_ignore_ascii_case(s))
}

/// Lines of one response, up to and including its `OK`/`NO`/`BYE`. A literal's contents
/// are appended to the line that announced it.
async fn read_response(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = client.read_line().await;
        if let Some(n) = literal_size(&line) {
            let data = client.read_bytes(n).await;
            line.push_str(&String::from_utf8_lossy(&data));
        }
        let done = status(&line).is_some();
        lines.push(line);
        if done {
            return lines;
        }
    }
}

async fn command(client: &mut ImapClient, line: &str) -> Vec<String> {
    client.send(format!("{line}\r\n").as_bytes()).await;
    read_response(client).await
}

fn last(lines: &[String]) -> &str {
    lines.last().expect("a response has lines")
}

/// `"NAME" "value"` / `"NAME"` capability lines, as (upper-cased name, value).
fn capabilities(lines: &[String]) -> Vec<(String, Option<String>)> {
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

fn capability(caps: &[(String, Option<String>)], name: &str) -> Option<Option<String>> {
    caps.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

/// Connect to the listener of this TLS mode; returns the client and its greeting, which
/// must end with `OK`.
async fn sieve_connect(env: &TestEnv, proxy: &Proxy, tls: TlsMode) -> (ImapClient, Vec<String>) {
    let addr = proxy.addr(tls);
    let mut client = match tls {
        TlsMode::Implicit => ImapClient::connect_tls(addr, env.certs.client_config()).await,
        TlsMode::Starttls | TlsMode::None => ImapClient::connect_plain(addr).await,
    };
    let greeting = read_response(&mut client).await;
    assert_eq!(status(last(&greeting)), Some("OK"), "greeting {greeting:?}");
    (client, greeting)
}

/// `STARTTLS`, `OK`, handshake; returns the capability block the server must re-send.
async fn starttls(client: &mut ImapClient, env: &TestEnv) -> Vec<String> {
    let reply = command(client, "STARTTLS").await;
    assert_eq!(status(last(&reply)), Some("OK"), "STARTTLS: {reply:?}");
    client.upgrade_tls(env.certs.client_config()).await;
    let caps = read_response(client).await;
    assert_eq!(status(last(&caps)), Some("OK"), "after STARTTLS: {caps:?}");
    caps
}

/// How the client's first SASL response travels.
#[derive(Debug, Clone, Copy)]
enum Initial {
    /// Not with the command: after the server's empty challenge `""`.
    None,
    /// `AUTHENTICATE "MECH" "base64"`.
    Quoted,
    /// `AUTHENTICATE "MECH" {n+}` and the base64 as a literal.
    Literal,
}

#[derive(Debug)]
struct SieveAuth {
    /// The error challenge (decoded JSON), if any.
    challenge: Option<Value>,
    /// The final response line.
    done: String,
}

async fn authenticate(
    client: &mut ImapClient,
    mech: &str,
    response: &str,
    initial: Initial,
) -> SieveAuth {
    let mut pending = None;
    let command = match initial {
        Initial::None => {
            pending = Some(response.to_string());
            format!("AUTHENTICATE \"{mech}\"\r\n")
        }
        Initial::Quoted => format!("AUTHENTICATE \"{mech}\" \"{response}\"\r\n"),
        Initial::Literal => {
            format!(
                "AUTHENTICATE \"{mech}\" {{{}+}}\r\n{response}\r\n",
                response.len()
            )
        }
    };
    client.send(command.as_bytes()).await;
    let dummy = if mech == "OAUTHBEARER" { "AQ==" } else { "" };
    let mut challenge = None;
    loop {
        let line = client.read_line().await;
        if status(&line).is_some() {
            return SieveAuth {
                challenge,
                done: line,
            };
        }
        let data = if let Some(n) = literal_size(&line) {
            let data = client.read_bytes(n).await;
            assert_eq!(
                client.read_line().await,
                "",
                "CRLF after a challenge literal"
            );
            String::from_utf8(data).expect("challenge is base64")
        } else {
            line.strip_prefix('"')
                .and_then(|l| l.strip_suffix('"'))
                .unwrap_or_else(|| panic!("not a challenge: {line:?}"))
                .to_string()
        };
        if let Some(response) = pending.take() {
            assert_eq!(data, "", "first challenge must be empty");
            client.send(format!("\"{response}\"\r\n").as_bytes()).await;
            continue;
        }
        assert!(challenge.is_none(), "a second error challenge: {line:?}");
        let json = b64_decode(&data);
        challenge = Some(
            serde_json::from_slice(&json)
                .unwrap_or_else(|e| panic!("error challenge is not JSON ({e}): {json:?}")),
        );
        client.send(format!("\"{dummy}\"\r\n").as_bytes()).await;
    }
}

/// Log in as `user` with OAUTHBEARER (quoted initial response), asserting success.
async fn login(client: &mut ImapClient, user: &str, token: &str) {
    let outcome = authenticate(
        client,
        "OAUTHBEARER",
        &oauthbearer_b64(user, token),
        Initial::Quoted,
    )
    .await;
    assert!(
        outcome.challenge.is_none() && status(&outcome.done) == Some("OK"),
        "login failed: {outcome:?}"
    );
}

/// `GETSCRIPT "name"`: the literal's exact bytes.
async fn getscript(client: &mut ImapClient, name: &str) -> Vec<u8> {
    client
        .send(format!("GETSCRIPT \"{name}\"\r\n").as_bytes())
        .await;
    let line = client.read_line().await;
    let n = literal_size(&line).unwrap_or_else(|| panic!("GETSCRIPT answered {line:?}"));
    let script = client.read_bytes(n).await;
    assert_eq!(
        client.read_line().await,
        "",
        "CRLF after the script literal"
    );
    let done = client.read_line().await;
    assert_eq!(status(&done), Some("OK"), "GETSCRIPT: {done:?}");
    script
}

/// Dovecot's own `"SIEVE"` capability, read from its greeting.
async fn dovecot_sieve_extensions(env: &TestEnv) -> String {
    let mut client = ImapClient::connect_plain(env.dovecot.sieve_addr()).await;
    let greeting = read_response(&mut client).await;
    capability(&capabilities(&greeting), "SIEVE")
        .flatten()
        .unwrap_or_else(|| panic!("no SIEVE in Dovecot's greeting {greeting:?}"))
}

// ---- tests -------------------------------------------------------------------------------

#[tokio::test]
async fn sievelib_oauthbearer_puts_activates_lists_and_gets_a_script() {
    let env = sieve_env("sievelib");
    // 2,000 characters: sievelib sends the base64 (about 2,700) as one quoted string, past
    // RFC 5804's 1,024-octet quoted-string limit.
    let token = env.idp.issue_sized("alice", 2_000);
    let proxy = start_proxy(&env, |_| {});

    let lf_script = SCRIPT.replace("\r\n", "\n");
    let script_file = env.dir.path().join("filter.sieve");
    fs::write(&script_file, &lf_script).expect("write script");
    let outfile = env.dir.path().join("sievelib-getscript.txt");
    let port = proxy.addr(TlsMode::Starttls).port().to_string();
    let out = run(Command::new("python3")
        .arg(client_script("sievelib_oauthbearer.py"))
        .args(["localhost", &port, "alice", "bg-filter"])
        .arg(&script_file)
        .arg(&outfile)
        .env("BG_TOKEN", &token)
        .env("SSL_CERT_FILE", &env.certs.ca_pem));
    expect_success("sievelib OAUTHBEARER client", &out);

    // sievelib's getscript joins the script's lines with "\n" (no final newline).
    let fetched = fs::read_to_string(&outfile).expect("read what sievelib fetched");
    assert_eq!(
        fetched,
        lf_script.trim_end_matches('\n'),
        "sievelib GETSCRIPT"
    );

    // sievelib sent the script with CRLF line ends; Dovecot stored exactly those bytes in
    // alice's sieve directory and linked it as the active script.
    let home = env.dovecot.home("alice");
    let stored = fs::read(home.join("sieve/bg-filter.sieve")).unwrap_or_else(|e| {
        panic!(
            "alice's script in Dovecot's sieve dir: {e}\n{}",
            env.dovecot.log()
        )
    });
    assert!(
        stored == SCRIPT.as_bytes(),
        "stored script differs: {:?}",
        String::from_utf8_lossy(&stored)
    );
    let active = fs::read_link(home.join(".dovecot.sieve")).expect("active script link");
    assert_eq!(active, std::path::Path::new("sieve/bg-filter.sieve"));

    // A raw GETSCRIPT through the proxy returns exactly the uploaded bytes.
    let (mut client, _) = sieve_connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "alice", &token).await;
    assert!(
        getscript(&mut client, "bg-filter").await == SCRIPT.as_bytes(),
        "raw GETSCRIPT differs"
    );
    assert_eq!(env.idp.requests(), 1, "one token, one introspection");
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn xoauth2_with_a_literal_initial_response_then_commands_are_relayed() {
    let env = sieve_env("sieve-raw");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let (mut client, _) = sieve_connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = authenticate(
        &mut client,
        "XOAUTH2",
        &xoauth2_b64("alice", &token),
        Initial::Literal,
    )
    .await;
    assert!(
        outcome.challenge.is_none() && status(&outcome.done) == Some("OK"),
        "XOAUTH2 with a {{n+}} literal: {outcome:?}"
    );

    // From here on Dovecot answers.
    let empty = command(&mut client, "LISTSCRIPTS").await;
    assert_eq!(empty, ["OK \"Listscripts completed.\""], "LISTSCRIPTS");
    let put = format!("PUTSCRIPT \"raw\" {{{}+}}\r\n{SCRIPT}", SCRIPT.len());
    let reply = command(&mut client, &put).await;
    assert_eq!(status(last(&reply)), Some("OK"), "PUTSCRIPT: {reply:?}");
    let listing = command(&mut client, "LISTSCRIPTS").await;
    assert_eq!(
        listing,
        ["\"raw\"", "OK \"Listscripts completed.\""],
        "LISTSCRIPTS"
    );
    assert!(
        getscript(&mut client, "raw").await == SCRIPT.as_bytes(),
        "GETSCRIPT differs from PUTSCRIPT"
    );
    let caps = command(&mut client, "CAPABILITY").await;
    let implementation = capability(&capabilities(&caps), "IMPLEMENTATION").flatten();
    assert!(
        implementation
            .as_deref()
            .is_some_and(|i| i.contains("Dovecot")),
        "CAPABILITY after login must be the backend's: {caps:?}"
    );
    // Pigeonhole does not offer UNAUTHENTICATE either, so no client can step back into a
    // pre-login state on the relayed connection.
    assert_eq!(
        capability(&capabilities(&caps), "UNAUTHENTICATE"),
        None,
        "{caps:?}"
    );
    let bye = command(&mut client, "LOGOUT").await;
    assert_eq!(status(last(&bye)), Some("OK"), "LOGOUT: {bye:?}");
    assert_eq!(client.read_to_eof().await, Vec::<String>::new());
}

#[tokio::test]
async fn commands_pipelined_behind_authenticate_reach_the_backend() {
    let env = sieve_env("sieve-pipeline");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let (mut client, _) = sieve_connect(&env, &proxy, TlsMode::Implicit).await;
    let both = format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\nLISTSCRIPTS\r\n",
        oauthbearer_b64("alice", &token)
    );
    client.send(both.as_bytes()).await;
    assert_eq!(read_response(&mut client).await, ["OK \"Logged in.\""]);
    assert_eq!(
        read_response(&mut client).await,
        ["OK \"Listscripts completed.\""]
    );
}

#[tokio::test]
async fn greetings_offer_sasl_only_under_tls_and_carry_dovecots_sieve_extensions() {
    let env = sieve_env("sieve-greeting");
    let dovecot_sieve = dovecot_sieve_extensions(&env).await;
    assert!(
        dovecot_sieve.contains("fileinto"),
        "Dovecot's SIEVE: {dovecot_sieve:?}"
    );
    let proxy = start_proxy(&env, |_| {});

    // The proxy asks the backend for its extensions at start-up, in the background: poll
    // the greeting (a bounded poll: the probe's completion is not observable otherwise).
    let deadline = Instant::now() + PROBE_DEADLINE;
    let (mut client, greeting) = loop {
        let (client, greeting) = sieve_connect(&env, &proxy, TlsMode::Starttls).await;
        let sieve = capability(&capabilities(&greeting), "SIEVE").flatten();
        if sieve.as_deref().is_some_and(|s| !s.is_empty()) {
            break (client, greeting);
        }
        assert!(
            Instant::now() < deadline,
            "the greeting's SIEVE is still empty after {PROBE_DEADLINE:?}: {greeting:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let caps = capabilities(&greeting);
    assert_eq!(
        capability(&caps, "IMPLEMENTATION"),
        Some(Some("bearergate".into()))
    );
    assert_eq!(
        capability(&caps, "SASL"),
        Some(Some(String::new())),
        "{greeting:?}"
    );
    assert_eq!(capability(&caps, "STARTTLS"), Some(None), "{greeting:?}");
    assert_eq!(
        capability(&caps, "SIEVE"),
        Some(Some(dovecot_sieve.clone()))
    );
    assert_eq!(capability(&caps, "VERSION"), Some(Some("1.0".into())));
    assert_eq!(capability(&caps, "UNAUTHENTICATE"), None, "{greeting:?}");

    // After STARTTLS the block comes again unasked: mechanisms now, STARTTLS gone.
    let after = starttls(&mut client, &env).await;
    let caps = capabilities(&after);
    assert_eq!(
        capability(&caps, "SASL"),
        Some(Some("OAUTHBEARER XOAUTH2".into())),
        "{after:?}"
    );
    assert_eq!(capability(&caps, "STARTTLS"), None, "{after:?}");
    assert_eq!(
        capability(&caps, "SIEVE"),
        Some(Some(dovecot_sieve.clone()))
    );
    assert_eq!(capability(&caps, "UNAUTHENTICATE"), None, "{after:?}");

    // Implicit TLS and the plaintext listener with allow_plaintext_auth offer the
    // mechanisms at once, and no STARTTLS.
    for tls in [TlsMode::Implicit, TlsMode::None] {
        let (_, greeting) = sieve_connect(&env, &proxy, tls).await;
        let caps = capabilities(&greeting);
        assert_eq!(
            capability(&caps, "SASL"),
            Some(Some("OAUTHBEARER XOAUTH2".into())),
            "{tls:?}: {greeting:?}"
        );
        assert_eq!(capability(&caps, "STARTTLS"), None, "{tls:?}: {greeting:?}");
        assert_eq!(capability(&caps, "UNAUTHENTICATE"), None, "{tls:?}");
    }
}

#[tokio::test]
async fn commands_injected_behind_starttls_are_discarded() {
    let env = sieve_env("sieve-injection");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let (mut client, _) = sieve_connect(&env, &proxy, TlsMode::Starttls).await;
    // STARTTLS and an injected LOGOUT in one write (CVE-2011-0411).
    client.send(b"STARTTLS\r\nLOGOUT\r\n").await;
    let reply = read_response(&mut client).await;
    assert_eq!(status(last(&reply)), Some("OK"), "STARTTLS: {reply:?}");
    // upgrade_tls fails the test if anything followed the OK in clear text
    client.upgrade_tls(env.certs.client_config()).await;
    // RFC 5804 §2.2: the capability block comes first, unasked.
    let caps = read_response(&mut client).await;
    assert!(
        caps.iter().any(|l| l.starts_with("\"SASL\"")),
        "capabilities after STARTTLS: {caps:?}"
    );
    assert_eq!(status(last(&caps)), Some("OK"), "{caps:?}");
    // The next response answers the first command sent under TLS, not the injected LOGOUT.
    assert_eq!(
        command(&mut client, "NOOP").await,
        ["OK \"NOOP completed.\""],
        "the injected LOGOUT was answered"
    );
    login(&mut client, "alice", &token).await;
}

#[tokio::test]
async fn authenticate_before_tls_gets_encrypt_needed() {
    let env = sieve_env("sieve-tlsfirst");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let (mut client, _) = sieve_connect(&env, &proxy, TlsMode::Starttls).await;
    for initial in [Initial::Quoted, Initial::Literal] {
        let outcome = authenticate(
            &mut client,
            "OAUTHBEARER",
            &oauthbearer_b64("alice", &token),
            initial,
        )
        .await;
        assert!(
            outcome.challenge.is_none() && outcome.done.starts_with("NO (ENCRYPT-NEEDED) "),
            "{initial:?}: want NO (ENCRYPT-NEEDED): {outcome:?}"
        );
    }
    assert_eq!(env.idp.requests(), 0, "no token may be checked before TLS");
    starttls(&mut client, &env).await;
    login(&mut client, "alice", &token).await;
}

#[tokio::test]
async fn token_of_another_user_gets_no_after_the_challenge() {
    let env = sieve_env("sieve-wronguser");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let (mut client, _) = sieve_connect(&env, &proxy, TlsMode::Implicit).await;
    let cases = [
        (
            "OAUTHBEARER",
            oauthbearer_b64("bob", &token),
            Initial::Quoted,
            "invalid_token",
        ),
        ("XOAUTH2", xoauth2_b64("bob", &token), Initial::None, "401"),
    ];
    for (mech, response, initial, want) in cases {
        let outcome = authenticate(&mut client, mech, &response, initial).await;
        let status_field = outcome
            .challenge
            .as_ref()
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str);
        assert_eq!(status_field, Some(want), "{mech}: {outcome:?}");
        assert!(
            outcome.done.starts_with("NO ") && !outcome.done.contains("TRYLATER"),
            "{mech}: want NO: {outcome:?}"
        );
    }
    // The connection stays usable for the right user.
    login(&mut client, "alice", &token).await;
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn without_the_error_challenge_a_refused_token_gets_no_at_once() {
    let env = sieve_env("sieve-no-challenge");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |c| {
        c.each_listener(|l| l.extra.push("error_challenge = false".into()))
    });
    let (mut client, _) = sieve_connect(&env, &proxy, TlsMode::Implicit).await;
    for (mech, response) in [
        ("OAUTHBEARER", oauthbearer_b64("bob", &token)),
        ("XOAUTH2", xoauth2_b64("bob", &token)),
    ] {
        let outcome = authenticate(&mut client, mech, &response, Initial::Quoted).await;
        assert!(outcome.challenge.is_none(), "{mech}: {outcome:?}");
        assert_eq!(outcome.done, "NO \"Authentication failed.\"", "{mech}");
    }
    login(&mut client, "alice", &token).await;
}

/// One OAUTHBEARER attempt for alice on the implicit-TLS listener at `addr`.
async fn attempt(env: &TestEnv, addr: std::net::SocketAddr, token: &str) -> SieveAuth {
    let mut client = ImapClient::connect_tls(addr, env.certs.client_config()).await;
    read_response(&mut client).await;
    let response = oauthbearer_b64("alice", token);
    authenticate(&mut client, "OAUTHBEARER", &response, Initial::Quoted).await
}

fn assert_trylater(what: &str, outcome: &SieveAuth) {
    assert!(
        outcome.challenge.is_none() && outcome.done.starts_with("NO (TRYLATER) "),
        "{what}: want NO (TRYLATER): {outcome:?}"
    );
}

#[tokio::test]
async fn idp_or_backend_unavailable_gets_no_trylater() {
    let mut env = sieve_env("sieve-unavailable");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let addr = proxy.addr(TlsMode::Implicit);
    let down = start_proxy(&env, |c| {
        c.backend_mut("sieve").address = closed_addr().to_string()
    });
    let down_addr = down.addr(TlsMode::Implicit);

    assert_trylater("backend down", &attempt(&env, down_addr, &token).await);
    env.idp.set_mode(IdpMode::Unavailable);
    assert_trylater("IdP answering 503", &attempt(&env, addr, &token).await);
    env.idp.shutdown();
    assert_trylater("IdP down", &attempt(&env, addr, &token).await);
}
