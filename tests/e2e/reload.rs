//! SIGHUP reloads the configuration file and the certificates: changed listeners are
//! re-bound while unchanged ones keep accepting, new settings apply to new sessions while
//! open ones carry on with what they started with, and an invalid file is refused with its
//! reasons logged while the running configuration keeps serving.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::support::imap_client::last_status;
use crate::support::issuer::{IssuerEnv, IssuerOptions};
use crate::support::ports::free_port;
use crate::support::proxy::ListenerConfig;
use crate::support::{
    assert_refused, connect, http_get, login, metric_value, run, signal, test_message,
    try_oauthbearer, ImapClient, Proxy, ProxyConfig, TestCerts, TestEnv, TlsMode,
};

const LOG_WAIT: Duration = Duration::from_secs(10);
const RELOADED: &str = "configuration reloaded";
const REFUSED: &str = "configuration reload refused";

/// Writes `config` over the running proxy's file and sends SIGHUP.
fn rewrite_and_hup(proxy: &Proxy, config: &ProxyConfig) {
    fs::write(&proxy.config_path, config.render()).expect("rewrite proxy.toml");
    signal("-HUP", proxy.pid());
}

/// Waits for `needle` in the log and returns the last line that holds it.
fn log_line(proxy: &Proxy, needle: &str) -> String {
    assert!(
        proxy.wait_for_log(needle, LOG_WAIT),
        "no log line with {needle:?}:\n{}",
        proxy.log()
    );
    proxy
        .log()
        .lines()
        .rev()
        .find(|line| line.contains(needle))
        .map(str::to_owned)
        .unwrap_or_default()
}

/// Connects to a plaintext IMAP listener and reads an untagged `OK` greeting; the error
/// says what came instead.
fn greeted(addr: SocketAddr) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| format!("read the greeting from {addr}: {e}"))?;
    if line.starts_with("* OK") {
        Ok(())
    } else {
        Err(format!("greeting from {addr}: {line:?}"))
    }
}

/// Waits for the log line saying the service on `addr` closed its socket (written after the
/// close), then shows that a connect to `addr` is refused.
fn wait_until_refused(proxy: &Proxy, addr: SocketAddr) -> Result<(), String> {
    let field = format!("addr={addr}");
    let closed = proxy.wait_for_log_where(LOG_WAIT, |log| {
        log.lines().any(|line| {
            line.contains(&field)
                && (line.contains("listener closed") || line.contains("HTTP service stopped"))
        })
    });
    if !closed {
        return Err(format!("no log line says {addr} closed"));
    }
    match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Err(_) => Ok(()),
        Ok(_) => Err(format!("{addr} still accepts connections")),
    }
}

/// The leaf certificate a TLS client is shown by the implicit-TLS listener at `addr`, with
/// `client` (which must trust it for the handshake to complete).
async fn peer_certificate(addr: SocketAddr, client: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = tokio::time::timeout(LOG_WAIT, TlsConnector::from(client).connect(name, tcp))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake with the trusted certificate");
    let certs = tls.get_ref().1.peer_certificates().expect("a certificate");
    certs[0].as_ref().to_vec()
}

/// The first certificate (the leaf) of a PEM chain.
fn leaf(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .expect("read the PEM chain")
        .next()
        .expect("a certificate")
        .expect("a well-formed certificate")
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn a_relaying_session_survives_a_reload_that_changes_its_listener() {
    let env = TestEnv::new("reload-relay");
    let message = env
        .dovecot
        .deliver("alice", &test_message("across a reload", 40_000));
    let mut config = env.proxy_config();
    let proxy = env.start_proxy_with(&config);
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;
    let select = client.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(
        client.fetch_body("c", 1).await == message,
        "FETCH before the reload"
    );

    // Every setting of its listener that a session reads, its backend and the validator.
    let implicit = config
        .listeners
        .iter_mut()
        .find(|l| l.tls == TlsMode::Implicit)
        .expect("an implicit-TLS listener");
    implicit.max_auth_failures = Some(1);
    implicit.preauth_idle_timeout = Some("7s".into());
    implicit.extra.push("max_connections = 50".into());
    implicit.extra.push("error_challenge = false".into());
    let address = implicit.listen;
    config
        .backend_mut("imap")
        .extra
        .push("forward_client_address = false".into());
    config.validator.timeout = "3s".into();
    rewrite_and_hup(&proxy, &config);
    let line = log_line(&proxy, RELOADED);
    assert!(
        line.contains(&format!("listeners_changed=imap {address}")),
        "{line}"
    );
    assert!(line.contains("listeners_added=none"), "{line}");
    assert!(line.contains("listeners_removed=none"), "{line}");

    // The session carries on, byte for byte.
    let noop = client.command("d", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");
    assert!(
        client.fetch_body("e", 1).await == message,
        "FETCH after the reload is not byte-identical"
    );
    let second = test_message("appended after the reload", 20_000);
    let append = client.append("f", "INBOX", &second).await;
    assert_eq!(last_status(&append).kind, "OK", "{append:?}");
    assert!(
        client.fetch_body("g", 2).await == second,
        "the appended message"
    );
    let logout = client.command("h", "LOGOUT").await;
    assert_eq!(last_status(&logout).kind, "OK", "{logout:?}");

    // A new session on the same listener gets the new settings: no error challenge.
    let refused = try_oauthbearer(&env, &proxy, "alice", "not-a-token").await;
    assert!(refused.challenge.is_none(), "{refused:?}");
    assert!(
        refused.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_moved_listener_stops_accepting_and_its_sessions_go_on() {
    let env = TestEnv::new("reload-moved");
    let message = env
        .dovecot
        .deliver("alice", &test_message("on a moved listener", 9_000));
    let mut config = env.proxy_config();
    let proxy = env.start_proxy_with(&config);
    let old_address = proxy.addr(TlsMode::None);
    let token = env.idp.issue("alice");
    let (mut open, _) = connect(&env, &proxy, TlsMode::None).await;
    login(&mut open, "a", "alice", &token).await;

    let plain = config
        .listeners
        .iter_mut()
        .find(|l| l.tls == TlsMode::None)
        .expect("a plaintext listener");
    plain.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let new_address = plain.listen;
    rewrite_and_hup(&proxy, &config);
    let line = log_line(&proxy, RELOADED);
    assert!(
        line.contains(&format!("listeners_removed=imap {old_address}")),
        "{line}"
    );
    assert!(
        line.contains(&format!("listeners_added=imap {new_address}")),
        "{line}"
    );
    if let Err(e) = wait_until_refused(&proxy, old_address) {
        panic!("the removed listener: {e}");
    }
    greeted(new_address).expect("the new address greets");

    // The session accepted on the old address goes on to its end.
    let select = open.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(
        open.fetch_body("c", 1).await == message,
        "FETCH after the move"
    );
    let logout = open.command("d", "LOGOUT").await;
    assert_eq!(last_status(&logout).kind, "OK", "{logout:?}");
}

#[tokio::test]
async fn a_reload_adds_a_listener_and_the_kept_ones_never_stop_accepting() {
    let env = TestEnv::new("reload-add");
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = env.proxy_config();
    config
        .extra_toml
        .push_str(&format!("\n[metrics]\nlisten = \"{metrics}\"\n"));
    // The connecting client below closes each connection as soon as it is greeted; however
    // slowly the proxy sees those closes, they must not add up to the per-address cap.
    config.each_listener(|l| l.extra.push("max_prelogin_per_address = 1000".into()));
    let proxy = env.start_proxy_with(&config);
    let kept = proxy.addr(TlsMode::None);

    // A client connecting over and over to a kept listener, through the reload.
    let stop = Arc::new(AtomicBool::new(false));
    let (greetings, greeted_rx) = mpsc::channel();
    let connector = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match greeted(kept) {
                    Ok(()) => {
                        let _ = greetings.send(());
                    }
                    Err(e) => failures.push(e),
                }
            }
            failures
        })
    };
    for _ in 0..20 {
        greeted_rx
            .recv_timeout(LOG_WAIT)
            .expect("greetings before the reload");
    }

    let added = ListenerConfig::imap(TlsMode::None);
    let new_address = added.listen;
    config.listeners.push(added);
    rewrite_and_hup(&proxy, &config);
    let line = log_line(&proxy, RELOADED);
    assert!(
        line.contains(&format!("listeners_added=imap {new_address}")),
        "{line}"
    );
    assert!(line.contains("listeners_changed=none"), "{line}");
    assert!(line.contains(&format!("imap {kept}")), "{line}");
    for _ in 0..20 {
        greeted_rx
            .recv_timeout(LOG_WAIT)
            .expect("greetings after the reload");
    }
    stop.store(true, Ordering::Relaxed);
    let failures = connector.join().expect("the connecting thread");
    assert!(
        failures.is_empty(),
        "the kept listener turned clients away during the reload: {failures:?}"
    );

    // The new listener serves logins.
    let token = env.idp.issue("alice");
    let mut client = ImapClient::connect_plain(new_address).await;
    let greeting = client.read_line().await;
    assert!(greeting.starts_with("* OK"), "{greeting}");
    login(&mut client, "a", "alice", &token).await;
    let noop = client.command("b", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");

    let (_, body) = http_get(metrics, "/metrics");
    let reloads = |result| {
        metric_value(
            &body,
            "bearergate_config_reloads_total",
            &[("result", result)],
        )
    };
    assert_eq!(reloads("ok"), Some(1.0), "{body}");
    assert_eq!(reloads("refused"), Some(0.0), "{body}");
}

#[tokio::test]
async fn an_invalid_configuration_is_refused_and_the_running_one_keeps_serving() {
    let env = TestEnv::new("reload-refused");
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut config = env.proxy_config();
    config
        .extra_toml
        .push_str(&format!("\n[metrics]\nlisten = \"{metrics}\"\n"));
    let proxy = env.start_proxy_with(&config);
    let token = env.idp.issue("alice");
    let (mut open, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut open, "a", "alice", &token).await;

    // An unknown key, beside a listener that must then not appear.
    let mut broken = config.clone();
    let never = ListenerConfig::imap(TlsMode::None);
    let never_address = never.listen;
    broken.listeners.push(never);
    broken.listeners[0].extra.push("colour = \"blue\"".into());
    rewrite_and_hup(&proxy, &broken);
    let line = log_line(&proxy, "unknown field `colour`");
    assert!(line.contains(REFUSED), "{line}");
    assert!(line.contains("listeners[0]"), "the key is named: {line}");
    assert!(
        greeted(never_address).is_err(),
        "a listener of the refused file was started"
    );

    // An address that cannot be bound: nothing of the file is applied, not even the
    // listener that could be.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("take a port");
    let mut unbindable = config.clone();
    let mut busy = ListenerConfig::imap(TlsMode::None);
    busy.listen = taken.local_addr().expect("address");
    let bindable = ListenerConfig::imap(TlsMode::None);
    let bindable_address = bindable.listen;
    unbindable.listeners.push(bindable);
    unbindable.listeners.push(busy);
    rewrite_and_hup(&proxy, &unbindable);
    let line = log_line(&proxy, "listeners[4].listen: cannot listen on");
    assert!(line.contains(REFUSED), "{line}");
    assert!(
        greeted(bindable_address).is_err(),
        "a listener of the refused file was started"
    );

    // A certificate file that is there but holds no certificate: found only when read.
    let mut no_cert = config.clone();
    no_cert.tls_cert = env.dir.path().join("garbage.crt");
    fs::write(&no_cert.tls_cert, "not a certificate\n").expect("write garbage.crt");
    rewrite_and_hup(&proxy, &no_cert);
    let line = log_line(&proxy, "tls.cert: ");
    assert!(line.contains(REFUSED), "{line}");
    assert!(line.contains("garbage.crt"), "{line}");

    // The running configuration serves on: the open session, and new logins everywhere.
    let noop = open.command("b", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");
    for tls in [TlsMode::Implicit, TlsMode::None] {
        let (mut client, _) = connect(&env, &proxy, tls).await;
        login(&mut client, "a", "alice", &token).await;
    }
    let (_, body) = http_get(metrics, "/metrics");
    let reloads = |result| {
        metric_value(
            &body,
            "bearergate_config_reloads_total",
            &[("result", result)],
        )
    };
    assert_eq!(reloads("refused"), Some(3.0), "{body}");
    assert_eq!(reloads("ok"), Some(0.0), "{body}");
    assert!(!proxy.log().contains(RELOADED), "{}", proxy.log());
}

#[tokio::test]
async fn a_new_certificate_is_served_to_new_connections_and_old_ones_continue() {
    let env = TestEnv::new("reload-cert");
    let message = env
        .dovecot
        .deliver("alice", &test_message("old certificate", 5_000));
    let config = env.proxy_config();
    let proxy = env.start_proxy_with(&config);
    let implicit = proxy.addr(TlsMode::Implicit);
    assert!(
        peer_certificate(implicit, env.certs.client_config()).await == leaf(&env.certs.cert_pem),
        "the first certificate"
    );
    let token = env.idp.issue("alice");
    let (mut old, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut old, "a", "alice", &token).await;

    // A new certificate from another CA, written over the files the configuration names.
    let fresh_dir = env.dir.path().join("fresh");
    fs::create_dir_all(&fresh_dir).expect("a directory for the new certificate");
    let fresh = TestCerts::generate(&fresh_dir);
    fs::copy(&fresh.cert_pem, &env.certs.cert_pem).expect("replace server.crt");
    fs::copy(&fresh.key_pem, &env.certs.key_pem).expect("replace server.key");
    rewrite_and_hup(&proxy, &config);
    let line = log_line(&proxy, RELOADED);
    assert!(
        line.contains(&format!("certificates={}", env.certs.cert_pem.display())),
        "{line}"
    );
    assert!(line.contains("listeners_changed=none"), "{line}");

    assert!(
        peer_certificate(implicit, fresh.client_config()).await == leaf(&fresh.cert_pem),
        "a new implicit-TLS connection gets the new certificate"
    );
    let mut starttls = ImapClient::connect_plain(proxy.addr(TlsMode::Starttls)).await;
    starttls.read_line().await;
    starttls.starttls("s", fresh.client_config()).await;
    login(&mut starttls, "a", "alice", &token).await;

    // The session that began under the old certificate goes on.
    let select = old.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(
        old.fetch_body("c", 1).await == message,
        "FETCH on the old session"
    );
}

#[tokio::test]
async fn a_validator_change_applies_to_new_logins_only() {
    let env = TestEnv::new("reload-validator");
    let mut config = env.proxy_config();
    let proxy = env.start_proxy_with(&config);
    let token = env.idp.issue("alice"); // scope "mail openid"
    let (mut relaying, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut relaying, "a", "alice", &token).await;
    // Connected before the reload, logging in after it.
    let (mut waiting, _) = connect(&env, &proxy, TlsMode::Implicit).await;

    config.validator.required_scope = "mail admin".into();
    rewrite_and_hup(&proxy, &config);
    log_line(&proxy, RELOADED);

    let refused = try_oauthbearer(&env, &proxy, "alice", &token).await;
    assert_refused(&refused, "a new login without the newly required scope");
    let admin = env.idp.issue_with("alice", |claims| {
        claims.insert("scope".into(), "mail admin".into());
    });
    let (mut fresh, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut fresh, "a", "alice", &admin).await;

    // Sessions opened before keep the validator they started with.
    login(&mut waiting, "a", "alice", &token).await;
    let noop = relaying.command("b", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");
}

#[tokio::test]
async fn sighup_no_longer_kills_and_is_ignored_during_the_drain() {
    let env = TestEnv::new("reload-alive");
    let mut proxy = env.start_proxy(|c| c.top_level.push("drain_timeout = \"10s\"".into()));
    signal("-HUP", proxy.pid());
    let line = log_line(&proxy, RELOADED);
    for tls in [TlsMode::Implicit, TlsMode::Starttls, TlsMode::None] {
        let kept = format!("imap {}", proxy.addr(tls));
        assert!(line.contains(&kept), "{kept} not kept: {line}");
    }
    assert!(line.contains("listeners_added=none"), "{line}");
    assert!(line.contains("listeners_changed=none"), "{line}");
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;

    signal("-TERM", proxy.pid());
    log_line(&proxy, "shutting down");
    signal("-HUP", proxy.pid());
    log_line(&proxy, "SIGHUP ignored: shutting down");
    let noop = client.command("b", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");
    let logout = client.command("c", "LOGOUT").await;
    assert_eq!(last_status(&logout).kind, "OK", "{logout:?}");
    let status = proxy
        .wait_exit(LOG_WAIT)
        .expect("the proxy exits once its last session ended");
    assert!(
        status.success(),
        "exit status {status}: a SIGHUP must not kill"
    );
    assert_eq!(proxy.log().matches(RELOADED).count(), 1, "{}", proxy.log());
}

/// The built-in issuer is rebuilt over the same store at each reload; its HTTPS service
/// keeps its socket when `[issuer] listen` stays, and moves when it changes.
#[tokio::test]
async fn the_issuer_is_rebuilt_and_moves_only_when_its_address_changes() {
    let issuer = IssuerEnv::new("reload-issuer", IssuerOptions::default());
    let proxy = issuer.start();
    let metadata = |url: &str| {
        let out = run(Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
            .arg(&issuer.env.certs.ca_pem)
            .arg(format!("{url}/.well-known/oauth-authorization-server")));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, body) = metadata(&issuer.url);
    assert!(ok && body.contains("\"issuer\""), "{body}");

    let mut config = issuer.config().clone();
    config.extra_toml = config
        .extra_toml
        .replace("max_attempts = 3", "max_attempts = 4");
    rewrite_and_hup(&proxy, &config);
    let line = log_line(&proxy, RELOADED);
    assert!(line.contains("issuer=\"rebuilt\""), "{line}");
    let (ok, body) = metadata(&issuer.url);
    assert!(
        ok && body.contains("\"issuer\""),
        "same address after the reload: {body}"
    );

    let old_port = issuer.url.rsplit(':').next().expect("a port").to_owned();
    let new_port = free_port().to_string();
    config.extra_toml = config.extra_toml.replace(
        &format!("listen = \"127.0.0.1:{old_port}\""),
        &format!("listen = \"127.0.0.1:{new_port}\""),
    );
    rewrite_and_hup(&proxy, &config);
    let line = log_line(&proxy, "issuer=\"rebuilt, on a new address\"");
    assert!(line.contains(RELOADED), "{line}");
    let moved = issuer.url.replace(&old_port, &new_port);
    let (ok, body) = metadata(&moved);
    assert!(ok && body.contains("\"issuer\""), "the new address: {body}");
    let old = SocketAddr::from(([127, 0, 0, 1], old_port.parse().expect("a port number")));
    if let Err(e) = wait_until_refused(&proxy, old) {
        panic!("the issuer's old address: {e}");
    }
}
