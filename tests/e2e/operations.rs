//! Running the proxy: graceful shutdown on SIGTERM (stop accepting, drain open sessions, exit
//! 0) and the metrics / health endpoint.

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::imap_client::last_status;
use crate::support::ports::free_port;
use crate::support::{
    connect, http_get, login, oauthbearer_b64, random_token, signal, test_message,
};
use crate::support::{TestEnv, TlsMode};

/// Poll (bounded) until a TCP connect to `addr` is refused. A connect that still succeeds is
/// a listener not yet closed; the socket is dropped and the next attempt made.
fn wait_until_refused(addr: SocketAddr, deadline: Duration) -> Result<(), String> {
    let end = Instant::now() + deadline;
    let mut attempts = 0u32;
    while Instant::now() < end {
        attempts += 1;
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Err(_) => return Ok(()),
            Ok(stream) => drop(stream),
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "{addr} still accepted connections after {attempts} attempts in {deadline:?}"
    ))
}

#[tokio::test]
async fn sigterm_refuses_new_connections_and_drains_open_sessions() {
    let env = TestEnv::new("ops-drain");
    let message = env
        .dovecot
        .deliver("alice", &test_message("during drain", 8_000));
    let mut proxy = env.start_proxy(|c| c.top_level.push("drain_timeout = \"10s\"".into()));
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;
    let select = client.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");

    signal("-TERM", proxy.pid());
    assert!(
        proxy.wait_for_log("shutting down", Duration::from_secs(10)),
        "no shutdown log line after SIGTERM"
    );
    for tls in [TlsMode::Implicit, TlsMode::Starttls, TlsMode::None] {
        if let Err(e) = wait_until_refused(proxy.addr(tls), Duration::from_secs(5)) {
            panic!("{tls:?} listener after SIGTERM: {e}");
        }
    }

    // The logged-in session carries on as if nothing happened.
    let noop = client.command("c", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");
    assert!(
        client.fetch_body("d", 1).await == message,
        "FETCH during the drain is not byte-identical"
    );
    let logout = client.command("e", "LOGOUT").await;
    assert!(logout.iter().any(|l| l.starts_with("* BYE")), "{logout:?}");
    assert_eq!(last_status(&logout).kind, "OK", "{logout:?}");
    // The server closes the connection after LOGOUT (RFC 3501 6.1.3); the client has not
    // closed its side, and need not for the session to be over.
    let after = client.read_to_eof().await;
    assert!(after.is_empty(), "bytes after the LOGOUT reply: {after:?}");

    // Its end is the last session's end: the proxy exits now, well before drain_timeout.
    let status = proxy
        .wait_exit(Duration::from_secs(5))
        .expect("proxy still running 5 s after its last session ended (drain_timeout 10 s)");
    assert!(status.success(), "exit status after drain: {status}");
}

#[tokio::test]
async fn sigterm_exits_after_drain_timeout_despite_an_idle_session() {
    let env = TestEnv::new("ops-draintimeout");
    let mut proxy = env.start_proxy(|c| c.top_level.push("drain_timeout = \"1s\"".into()));
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;
    // Relay active: the backend answers through the proxy.
    let noop = client.command("b", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");

    let signalled = Instant::now();
    signal("-TERM", proxy.pid());
    let status = proxy
        .wait_exit(Duration::from_secs(6))
        .expect("proxy still running 6 s after SIGTERM with drain_timeout = 1s");
    let waited = signalled.elapsed();
    assert!(
        status.success(),
        "exit status after drain timeout: {status}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "exited after {waited:?}: the open session was not given its drain time"
    );
    assert!(
        waited < Duration::from_secs(4),
        "exited only after {waited:?} (drain_timeout 1s)"
    );
    // The idle client's connection is gone with the process.
    let rest = client.read_to_eof().await;
    assert!(
        rest.iter().all(|l| l.starts_with("* ")),
        "unexpected lines after the proxy exited: {rest:?}"
    );
}

#[tokio::test]
async fn metrics_count_logins_by_outcome_and_healthz_answers_ok() {
    let env = TestEnv::new("ops-metrics");
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = env.start_proxy(|c| {
        c.extra_toml
            .push_str(&format!("\n[metrics]\nlisten = \"{metrics}\"\n"));
    });

    let (status, body) = http_get(metrics, "/healthz");
    assert!(status.starts_with("HTTP/1.1 200"), "/healthz: {status}");
    assert_eq!(body.trim(), "ok", "/healthz body");

    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;

    let (mut refused, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = refused
        .authenticate(
            "a",
            "OAUTHBEARER",
            &oauthbearer_b64("alice", &random_token()),
            true,
        )
        .await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );

    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "/metrics: {status}");
    for line in [
        "bearergate_logins_total{protocol=\"imap\",credential=\"token\",outcome=\"success\"} 1",
        "bearergate_logins_total{protocol=\"imap\",credential=\"token\",outcome=\"refused\"} 1",
        "bearergate_logins_total{protocol=\"imap\",credential=\"token\",outcome=\"throttled\"} 0",
        "bearergate_logins_total{protocol=\"imap\",credential=\"token\",outcome=\"idp_unavailable\"} 0",
        "bearergate_logins_total{protocol=\"imap\",credential=\"token\",outcome=\"backend_unavailable\"} 0",
        "bearergate_logins_total{protocol=\"imap\",credential=\"password\",outcome=\"success\"} 0",
        "bearergate_connections_total{protocol=\"imap\"} 2",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "`{line}` missing from /metrics:\n{body}"
        );
    }
}

/// Out of descriptors: the listener pauses instead of spinning on EMFILE, says so once per
/// burst instead of flooding the log, and serves again as soon as descriptors free up.
#[tokio::test]
async fn out_of_descriptors_the_listener_pauses_and_recovers() {
    let env = TestEnv::new("ops-emfile");
    let mut config = env.proxy_config();
    config.listeners = vec![crate::support::proxy::ListenerConfig::imap(TlsMode::None)];
    config.listeners[0]
        .extra
        .push("max_connections = 1000".into());
    // All 80 come from one address: without this they would be refused (and closed) at
    // max_prelogin_per_address instead of exhausting the descriptors.
    config.listeners[0]
        .extra
        .push("max_prelogin_per_address = 1000".into());
    let proxy = crate::support::Proxy::start_with_open_files(env.dir.path(), &config, Some(64));
    assert!(
        proxy.log().contains("open files limit soft=64 hard=64"),
        "{}",
        proxy.log()
    );
    // More connections than the process may hold descriptors: the kernel completes them,
    // the proxy cannot accept them all.
    let addr = proxy.addr(TlsMode::None);
    let mut held = Vec::new();
    for _ in 0..80 {
        held.push(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    }
    assert!(
        proxy.wait_for_log("out of descriptors", Duration::from_secs(10)),
        "{}",
        proxy.log()
    );
    drop(held);
    assert!(
        proxy.wait_for_log("accepting connections again", Duration::from_secs(20)),
        "{}",
        proxy.log()
    );
    let log = proxy.log();
    assert_eq!(
        log.matches("cannot accept connections").count(),
        1,
        "one warning for the burst:\n{log}"
    );
    // And a login works again.
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::None).await;
    login(&mut client, "a", "alice", &token).await;
}
