//! Several instances, as a site that outgrew one runs them: a real HAProxy (mode tcp,
//! `send-proxy-v2`, health checks, retries on another server) in front of two bearergate
//! processes on their own ports, which share the built-in issuer's state in one real
//! PostgreSQL and log in to one real Dovecot with a PROXY header of their own. Clients
//! connect to HAProxy only; tokens come from the built-in issuer (openid-client, code flow
//! with PKCE, through the first instance's endpoints).
//!
//! How a grant made on one instance is refreshed and revoked on the other is in
//! `issuer_postgres.rs`; here a revocation is followed through the balancer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::support::haproxy::{Haproxy, Pool, SendProxy};
use crate::support::imap_client::AuthOutcome;
use crate::support::issuer::{IssuerEnv, IssuerOptions, USER};
use crate::support::load::{
    allow_request_migration, logins_served, LoginLoad, SubmissionLoad, SubmissionReport,
};
use crate::support::postgres::TestPostgres;
use crate::support::proxy::ListenerConfig;
use crate::support::{
    assert_refused, oauthbearer_b64, signal, test_message, ImapClient, Proxy, ProxyConfig, TlsMode,
};

/// How long any awaited event may take on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
/// HAProxy's health checks: a dead instance is out of the rotation within two of them.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// Where the test's mail clients connect from: not HAProxy's own address.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Tokens of one grant of the built-in issuer.
#[derive(Debug)]
struct Grant {
    access: String,
    refresh: String,
    client_id: String,
}

/// The whole site. Field order is drop order: the balancer, then the instances, then
/// Dovecot and the sink, then the database.
#[derive(Debug)]
struct Site {
    haproxy: Haproxy,
    a: Proxy,
    b: Proxy,
    /// The first instance's whole configuration, to start a replacement on its addresses.
    a_config: ProxyConfig,
    grant: Grant,
    issuer: IssuerEnv,
    _database: TestPostgres,
}

impl Site {
    fn start(label: &str) -> Self {
        let database = TestPostgres::start();
        database.create_database("issuer");
        let options = IssuerOptions {
            store: Some(database.url("issuer")),
            haproxy_dovecot: true,
            ..IssuerOptions::default()
        };
        let issuer = IssuerEnv::new(label, options);
        let mut a_config = issuer.config().clone();
        behind_haproxy(&issuer, &mut a_config);
        let mut b_config = issuer.another_instance().config;
        behind_haproxy(&issuer, &mut b_config);
        let a = issuer.env.start_proxy_with(&a_config);
        let b = issuer.env.start_proxy_with(&b_config);
        let pool = |name: &str, protocol: &str| {
            let servers = [
                listen_of(&a_config, protocol),
                listen_of(&b_config, protocol),
            ];
            Pool::new(name, &servers, SendProxy::V2).checked(CHECK_EVERY)
        };
        let haproxy = Haproxy::start_pools(
            issuer.env.dir.path(),
            &[pool("imap", "imap"), pool("smtp", "smtp")],
        );

        let key = issuer.api_key(&a.config_path);
        let report = issuer.flows(&key, &["code"], &[]);
        report.assert_success();
        let grant = Grant {
            access: report.field("code", "access_token"),
            refresh: report.field("code", "refresh_token"),
            client_id: report.field("code", "client_id"),
        };
        Self {
            haproxy,
            a,
            b,
            a_config,
            grant,
            issuer,
            _database: database,
        }
    }

    /// HAProxy's IMAP frontend.
    fn imap(&self) -> SocketAddr {
        self.haproxy.frontends[0]
    }

    /// HAProxy's SMTP submission frontend.
    fn smtp(&self) -> SocketAddr {
        self.haproxy.frontends[1]
    }

    /// Both instances' logs, for failure messages.
    fn logs(&self) -> String {
        format!("--- A ---\n{}\n--- B ---\n{}", self.a.log(), self.b.log())
    }
}

/// One instance's part: plaintext IMAP and submission listeners that take the client's
/// address from HAProxy's header (loopback is where HAProxy connects from), and an IMAP
/// backend told the client's address by a PROXY header only (no IMAP ID), so that
/// Dovecot's log proves the header carried it. The sieve backend of the issuer's harness
/// stays unused.
fn behind_haproxy(issuer: &IssuerEnv, config: &mut ProxyConfig) {
    config.listeners = [ListenerConfig::imap, ListenerConfig::smtp]
        .into_iter()
        .map(|listener| {
            let mut listener = listener(TlsMode::None);
            listener.extra.push("proxy_protocol = true".into());
            listener
                .extra
                .push("proxy_trusted_networks = [\"127.0.0.0/8\"]".into());
            listener
        })
        .collect();
    let backend = config.backend_mut("imap");
    backend.address = issuer.env.dovecot.imap_haproxy_addr().to_string();
    backend.extra.push("send_proxy_protocol = true".into());
    backend.extra.push("forward_client_address = false".into());
    // Health checks open a session every few hundred milliseconds; keep their lines short.
    config.log_level = "info".into();
}

fn listen_of(config: &ProxyConfig, protocol: &str) -> SocketAddr {
    config
        .listeners
        .iter()
        .find(|listener| listener.protocol == protocol)
        .map(|listener| listener.listen)
        .unwrap_or_else(|| panic!("no {protocol} listener"))
}

/// One OAUTHBEARER login through HAProxy from [`CLIENT`], logged out again when it
/// succeeded; the outcome and the client's port (which names the session in the logs).
async fn login_through(frontend: SocketAddr, token: &str) -> (AuthOutcome, u16) {
    let mut client = ImapClient::connect_plain_from(CLIENT, frontend).await;
    let port = client.local_addr().port();
    let greeting = client.read_line().await;
    assert!(greeting.starts_with("* OK "), "greeting {greeting:?}");
    let outcome = client
        .authenticate("a", "OAUTHBEARER", &oauthbearer_b64(USER, token), true)
        .await;
    if outcome.tagged.kind == "OK" {
        let logout = client.command("b", "LOGOUT").await;
        assert!(logout.iter().any(|l| l.starts_with("b OK")), "{logout:?}");
    }
    (outcome, port)
}

fn assert_logs_in(outcome: &AuthOutcome, what: &str) {
    assert!(
        outcome.challenge.is_none() && outcome.tagged.kind == "OK",
        "{what}: want OK: {outcome:?}"
    );
}

/// Lines of `log` with `event` (`logged in`, `login refused`) for a client at [`CLIENT`].
fn events_from_client(log: &str, event: &str) -> usize {
    log.lines()
        .filter(|line| line.contains(event) && line.contains("peer=127.0.0.2:"))
        .count()
}

/// Waits until `found` holds for the two instances' logs together: woken by A's output,
/// B's looked at again every few milliseconds.
fn wait_for_both(site: &Site, found: impl Fn(&str, &str) -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    loop {
        let b_log = site.b.log();
        if site
            .a
            .wait_for_log_where(Duration::from_millis(20), |a_log| found(a_log, &b_log))
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Waits until the instances have logged `event` for [`CLIENT`] `n` times in all, each at
/// least once.
fn each_logged_some(site: &Site, event: &str, n: usize) -> bool {
    wait_for_both(site, |a, b| {
        let (a, b) = (events_from_client(a, event), events_from_client(b, event));
        a + b == n && a >= 1 && b >= 1
    })
}

/// Waits until Dovecot has logged `n` logins of the user from `rip`; a bounded poll of
/// its log file, which offers no other event.
fn wait_for_dovecot_logins(site: &Site, rip: &str, n: usize) -> usize {
    let needle = format!("rip={rip},");
    let deadline = Instant::now() + WAIT;
    loop {
        let log = site.issuer.env.dovecot.log();
        let count = log
            .lines()
            .filter(|l| l.contains(&format!("Login: user=<{USER}>")) && l.contains(&needle))
            .count();
        if count >= n || Instant::now() >= deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_spread_over_both_instances_and_dovecot_sees_the_client() {
    let site = Site::start("several-spread");
    const LOGINS: usize = 6;
    let mut ports = Vec::new();
    for _ in 0..LOGINS {
        let (outcome, port) = login_through(site.imap(), &site.grant.access).await;
        assert_logs_in(&outcome, "a login through HAProxy");
        ports.push(port);
    }

    // Each session was logged in by exactly one instance, which names the client (the
    // header's address and port) and HAProxy as the peer that relayed it.
    let line_of = |log: &str, port: u16| {
        let peer = format!("peer=127.0.0.2:{port} ");
        log.lines()
            .find(|l| l.contains("logged in") && l.contains(&peer))
            .map(str::to_owned)
    };
    let all_logged = wait_for_both(&site, |a, b| {
        ports
            .iter()
            .all(|&port| line_of(a, port).is_some() || line_of(b, port).is_some())
    });
    assert!(all_logged, "not every login was logged:\n{}", site.logs());
    let (a_log, b_log) = (site.a.log(), site.b.log());
    let mut served = [0, 0];
    for &port in &ports {
        let lines = [line_of(&a_log, port), line_of(&b_log, port)];
        assert!(
            lines.iter().filter(|line| line.is_some()).count() == 1,
            "the session from port {port} is not one instance's: {lines:?}"
        );
        for (count, line) in served.iter_mut().zip(&lines) {
            if let Some(line) = line {
                assert!(line.contains("via=127.0.0.1:"), "{line}");
                *count += 1;
            }
        }
    }
    assert!(
        served[0] >= 1 && served[1] >= 1,
        "logins served by A and B: {served:?}\n{}",
        site.logs()
    );

    // Dovecot learnt the client's address from each instance's own PROXY header.
    let at_dovecot = wait_for_dovecot_logins(&site, "127.0.0.2", LOGINS);
    assert_eq!(
        at_dovecot,
        LOGINS,
        "Dovecot logins from 127.0.0.2:\n{}",
        site.issuer.env.dovecot.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_through_one_instance_is_refused_by_both_behind_haproxy() {
    let site = Site::start("several-revoke");
    const ATTEMPTS: usize = 6;
    for _ in 0..ATTEMPTS {
        let (outcome, _) = login_through(site.imap(), &site.grant.access).await;
        assert_logs_in(&outcome, "before the revocation");
    }
    assert!(
        each_logged_some(&site, "logged in", ATTEMPTS),
        "logins before revocation:\n{}",
        site.logs()
    );

    // Revoking the refresh token through A's endpoint ends the whole grant.
    let (status, body) = site.issuer.post_form_at(
        &site.issuer.url,
        "/auth/revoke",
        &[
            ("token", &site.grant.refresh),
            ("client_id", &site.grant.client_id),
        ],
        None,
    );
    assert_eq!(status, 200, "revocation through A: {body}");
    for attempt in 1..=ATTEMPTS {
        let (outcome, _) = login_through(site.imap(), &site.grant.access).await;
        assert_refused(&outcome, &format!("attempt {attempt} after revocation"));
    }
    assert!(
        each_logged_some(&site, "login refused", ATTEMPTS),
        "refusals after revocation:\n{}",
        site.logs()
    );
}

/// A message whose Message-ID (random) and subject (worker and number) are its own.
fn numbered_message(worker: usize, n: usize) -> Vec<u8> {
    test_message(&format!("submitter {worker} message {n}"), 3_000)
}

/// Every acknowledged message is at the sink, byte-identical after the one `Received:`
/// field Dovecot prepends (duplicates of messages sent again are allowed).
fn assert_none_lost(site: &Site, report: &SubmissionReport) {
    let arrived = site.issuer.sink.wait_for(report.acknowledged.len(), WAIT);
    for sent in &report.acknowledged {
        let found = arrived.iter().any(|got| {
            let Some(added) = got
                .data
                .strip_suffix(sent.as_slice())
                .and_then(|added| std::str::from_utf8(added).ok())
            else {
                return false;
            };
            let mut lines = added.strip_suffix("\r\n").unwrap_or("-").split("\r\n");
            lines.next().is_some_and(|l| l.starts_with("Received: "))
                && lines.all(|l| l.starts_with('\t'))
        });
        let subject = String::from_utf8_lossy(sent)
            .lines()
            .find(|l| l.starts_with("Subject: "))
            .map(str::to_owned);
        assert!(
            found,
            "acknowledged but lost: {subject:?} ({} of {} arrived)",
            arrived.len(),
            report.acknowledged.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_mid_run_loses_no_acknowledged_message() {
    let mut site = Site::start("several-kill");
    // Long-lived sessions, dealt round-robin: half of them on each instance.
    let mut load = SubmissionLoad::start(
        site.smtp(),
        oauthbearer_b64(USER, &site.grant.access),
        4,
        numbered_message,
    );
    load.go_on(20, WAIT, "before the kill").await;
    for (name, proxy) in [("A", &site.a), ("B", &site.b)] {
        assert!(
            proxy.wait_for_log("logged in", WAIT),
            "{name} carries no session:\n{}",
            proxy.log()
        );
    }

    signal("-KILL", site.b.pid());
    site.b.wait_exit(WAIT).expect("B still runs after SIGKILL");
    let at_kill = load.acknowledged();
    // The sessions B carried broke; their clients came back through HAProxy to A.
    load.go_on(20, WAIT, "after the kill").await;
    assert!(
        site.haproxy.wait_for_log("smtp_servers/s1 is DOWN", WAIT),
        "HAProxy's health checks did not notice:\n{}",
        site.haproxy.log()
    );
    let report = load.finish().await;
    assert!(
        !report.errors.is_empty(),
        "no client noticed the kill ({at_kill} acknowledged before it)"
    );
    eprintln!(
        "{} messages acknowledged ({at_kill} before the kill), {} errors: {:?}",
        report.acknowledged.len(),
        report.errors.len(),
        report.errors
    );
    assert_none_lost(&site, &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_behind_haproxy_counts_no_failed_login() {
    allow_request_migration();
    let mut site = Site::start("several-rolling");
    let mut load = LoginLoad::start(site.imap(), oauthbearer_b64(USER, &site.grant.access), 4);
    load.go_on(20, WAIT, "before the restart").await;

    // A' binds A's addresses (SO_REUSEPORT) while A serves, then A drains and exits.
    let replacement = site.issuer.env.start_proxy_with(&site.a_config);
    signal("-TERM", site.a.pid());
    let status = site.a.wait_exit(WAIT).expect("A still runs after SIGTERM");
    assert!(status.success(), "A's exit status {status}");
    let by_replacement = logins_served(&replacement);
    load.go_on(20, WAIT, "after A exited").await;
    let report = load.finish().await;
    report.assert_no_failure("while A was replaced");

    assert!(
        replacement.wait_for_log_where(WAIT, |log| {
            log.matches("logged in").count() > by_replacement
        }),
        "A' served no login after A exited:\n{}",
        replacement.log()
    );
    assert!(
        logins_served(&site.a) > 0 && logins_served(&site.b) > 0,
        "{}",
        site.logs()
    );
    // A's address never stopped answering: HAProxy never had to take it out.
    assert!(
        !site.haproxy.log().contains("imap_servers/s0 is DOWN"),
        "{}",
        site.haproxy.log()
    );
    eprintln!(
        "{} logins, none failed; A' served {}",
        report.succeeded,
        logins_served(&replacement)
    );
}
