//! `[auth_limits]` against the real peers: the budgets per claimed user (guesses from many
//! addresses at one account, by token and by password against Dovecot) and the ceiling on
//! identity-provider requests per address (counted at the fake IdP), with the exceptions
//! that keep working tokens working: one the cache knows, and the built-in issuer's. And
//! that the budgets count failures, not logins: many good logins at once from one address,
//! as one user, all log in, while guesses in parallel still reach no further than the budget.
//!
//! Client addresses other than 127.0.0.1 are other addresses of the loopback network
//! (`127.0.0.2`, …), which Linux routes to the same interface.

use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;

use crate::support::imap_client::{last_status, AuthOutcome, ImapClient};
use crate::support::ports::free_port;
use crate::support::{
    assert_refused, http_get, metric_value, random_token, unix_now, xoauth2_b64, Proxy,
    ProxyConfig, TestEnv, TlsMode,
};

/// Dovecot's own brute-force penalty off (as in the password-fallback tests): it would
/// delay every later login of the user's forwarded address, right or wrong, and hide which
/// refusals are the proxy's.
const NO_PENALTY: &str =
    "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}";

/// The standard proxy with these `[auth_limits]` lines (no failure delay, and budgets no
/// test reaches unless it sets them) and a `[metrics]` endpoint; `tweak` changes the rest.
fn start(
    env: &TestEnv,
    limits: &[&str],
    tweak: impl FnOnce(&mut ProxyConfig),
) -> (Proxy, SocketAddr) {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let proxy = env.start_proxy(|c| {
        let key = |line: &&str| line.split('=').next().unwrap_or_default().trim().to_owned();
        let set: Vec<String> = limits.iter().map(key).collect();
        let defaults = [
            "failure_delay = \"0s\"",
            "address_failures = 1000",
            "user_failures = 1000",
            "address_idp_requests = 1000",
        ];
        c.auth_limits = defaults
            .iter()
            .filter(|line| !set.contains(&key(line)))
            .chain(limits)
            .map(|line| line.to_string())
            .collect();
        c.extra_toml
            .push_str(&format!("\n[metrics]\nlisten = \"{metrics}\"\n"));
        tweak(c);
    });
    (proxy, metrics)
}

/// A client connection to the plaintext listener from `from`, past the greeting.
async fn connect_from(proxy: &Proxy, from: [u8; 4]) -> ImapClient {
    let address = IpAddr::from(from);
    let mut client = ImapClient::connect_plain_from(address, proxy.addr(TlsMode::None)).await;
    let greeting = client.read_line().await;
    assert!(greeting.starts_with("* OK"), "greeting {greeting:?}");
    client
}

/// XOAUTH2 from `from`, claiming `claimed`, on a connection of its own.
async fn xoauth2_from(proxy: &Proxy, from: [u8; 4], claimed: &str, token: &str) -> AuthOutcome {
    let mut client = connect_from(proxy, from).await;
    client
        .authenticate("a", "XOAUTH2", &xoauth2_b64(claimed, token), true)
        .await
}

fn assert_logged_in(outcome: &AuthOutcome, what: &str) {
    assert!(
        outcome.challenge.is_none() && outcome.tagged.kind == "OK",
        "{what}: want a login: {outcome:?}"
    );
}

/// Refused by a limit: "try again later" at once, no error challenge.
fn is_throttled(outcome: &AuthOutcome) -> bool {
    outcome.challenge.is_none() && outcome.tagged.is("NO", Some("UNAVAILABLE"))
}

fn assert_throttled(outcome: &AuthOutcome, what: &str) {
    assert!(
        is_throttled(outcome),
        "{what}: want NO [UNAVAILABLE]: {outcome:?}"
    );
}

/// A sample of `/metrics`; it must exist.
fn metric(metrics: SocketAddr, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "/metrics: {status}");
    metric_value(&body, name, labels)
        .unwrap_or_else(|| panic!("no {name} sample with {labels:?} in /metrics:\n{body}"))
}

fn limited(metrics: SocketAddr, limit: &str) -> f64 {
    metric(
        metrics,
        "bearergate_auth_limited_total",
        &[("limit", limit)],
    )
}

/// Outcomes of `count` attempts at once, the `n`-th from `address(n)` with `token(n)`.
async fn at_once(
    proxy: &Proxy,
    count: u8,
    address: impl Fn(u8) -> [u8; 4],
    claimed: impl Fn(u8) -> String,
    token: impl Fn(u8) -> String,
) -> Vec<AuthOutcome> {
    let mut clients = Vec::new();
    for n in 0..count {
        clients.push((connect_from(proxy, address(n)).await, claimed(n), token(n)));
    }
    let attempts: Vec<_> = clients
        .into_iter()
        .map(|(mut client, claimed, token)| {
            tokio::spawn(async move {
                client
                    .authenticate("g", "XOAUTH2", &xoauth2_b64(&claimed, &token), true)
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.expect("attempt task"));
    }
    outcomes
}

/// (refused, throttled) among `outcomes`; anything else fails the test.
fn tally(outcomes: &[AuthOutcome]) -> (usize, usize) {
    let throttled = outcomes.iter().filter(|o| is_throttled(o)).count();
    for outcome in outcomes.iter().filter(|o| !is_throttled(o)) {
        assert_refused(outcome, "a guess");
    }
    (outcomes.len() - throttled, throttled)
}

#[tokio::test]
async fn many_addresses_guessing_one_user_hit_its_limit_and_its_working_token_still_logs_in() {
    let env = TestEnv::new("limits-user");
    let (proxy, metrics) = start(
        &env,
        &["user_failures = 4", "user_failure_refill = \"1h\""],
        |_| {},
    );
    // alice logs in from home: her token is now known valid.
    let token = env.idp.issue("alice");
    let home = [127, 0, 0, 1];
    assert_logged_in(
        &xoauth2_from(&proxy, home, "alice", &token).await,
        "first login",
    );
    assert_eq!(env.idp.requests(), 1);

    // Twelve addresses guess at alice at once, spelling her name as they like: four
    // guesses reach the identity provider, the rest are told to try later.
    let spellings = ["alice", "Alice", "ALICE", " alice"];
    let outcomes = at_once(
        &proxy,
        12,
        |n| [127, 0, 0, 2 + n],
        |n| spellings[usize::from(n) % spellings.len()].to_owned(),
        |_| random_token(),
    )
    .await;
    assert_eq!(tally(&outcomes), (4, 8));
    assert_eq!(env.idp.requests(), 5, "four guesses asked the IdP");

    // alice's working token still logs in, from home and from anywhere else.
    for from in [home, [127, 0, 0, 30]] {
        let outcome = xoauth2_from(&proxy, from, "alice", &token).await;
        assert_logged_in(&outcome, "alice's known token after the guesses");
    }
    // A token the proxy has not seen yet waits, like any unknown token naming alice: the
    // limit is there so that nobody is asked about it.
    let fresh = env.idp.issue("alice");
    let outcome = xoauth2_from(&proxy, [127, 0, 0, 31], "alice", &fresh).await;
    assert_throttled(&outcome, "a new token naming alice");
    // Other users and the guessers' addresses are not affected.
    let outcome = xoauth2_from(&proxy, [127, 0, 0, 2], "bob", &random_token()).await;
    assert_refused(&outcome, "a wrong token for bob");
    let bob = env.idp.issue("bob");
    let outcome = xoauth2_from(&proxy, [127, 0, 0, 3], "bob", &bob).await;
    assert_logged_in(&outcome, "bob, from a guesser's address");
    assert_eq!(
        env.idp.requests(),
        7,
        "the new token of alice was not asked about"
    );

    assert_eq!(limited(metrics, "user"), 9.0);
    assert_eq!(limited(metrics, "address"), 0.0);
    assert_eq!(
        metric(
            metrics,
            "bearergate_auth_limit_tracked",
            &[("limit", "user")]
        ),
        2.0,
        "alice and bob"
    );
    let throttled = [("credential", "token"), ("outcome", "throttled")];
    assert_eq!(metric(metrics, "bearergate_logins_total", &throttled), 9.0);
}

#[tokio::test]
async fn password_guesses_from_many_addresses_lock_the_password_not_the_working_token() {
    let env = TestEnv::with_dovecot("limits-user-password", |b| b.config(NO_PENALTY));
    let (proxy, metrics) = start(
        &env,
        &["user_failures = 3", "user_failure_refill = \"1h\""],
        |c| c.each_listener(|l| l.extra.push("password_fallback = true".into())),
    );
    let token = env.idp.issue("alice");
    assert_logged_in(
        &xoauth2_from(&proxy, [127, 0, 0, 1], "alice", &token).await,
        "alice's token, before",
    );
    let mut replies = Vec::new();
    for n in 0..6 {
        let mut client = connect_from(&proxy, [127, 0, 0, 10 + n]).await;
        let reply = client.command("p", "LOGIN Alice wrongpass").await;
        replies.push(last_status(&reply));
    }
    let refused = replies
        .iter()
        .filter(|s| s.is("NO", Some("AUTHENTICATIONFAILED")))
        .count();
    let throttled = replies
        .iter()
        .filter(|s| s.is("NO", Some("UNAVAILABLE")))
        .count();
    assert_eq!((refused, throttled), (3, 3), "{replies:?}");
    assert!(
        replies[..3]
            .iter()
            .all(|s| s.is("NO", Some("AUTHENTICATIONFAILED"))),
        "the first three were Dovecot's to refuse: {replies:?}"
    );

    // Even the right password now waits, from a fresh address; Dovecot is not asked.
    let dovecot_logins = || env.dovecot.log().matches("Login: user=<alice>").count();
    let before = dovecot_logins();
    let mut client = connect_from(&proxy, [127, 0, 0, 40]).await;
    let reply = client.command("p", "LOGIN alice alicepass").await;
    assert!(
        last_status(&reply).is("NO", Some("UNAVAILABLE")),
        "the right password for a user out of failures: {reply:?}"
    );
    assert_eq!(dovecot_logins(), before, "Dovecot was not asked");
    // Her token, which the proxy knows, still works.
    let outcome = xoauth2_from(&proxy, [127, 0, 0, 41], "alice", &token).await;
    assert_logged_in(&outcome, "alice's token, after");
    assert_eq!(limited(metrics, "user"), 4.0);
    let throttled = [("credential", "password"), ("outcome", "throttled")];
    assert_eq!(metric(metrics, "bearergate_logins_total", &throttled), 4.0);
}

#[tokio::test]
async fn a_hundred_random_tokens_from_one_address_cost_at_most_the_ceiling() {
    let env = TestEnv::new("limits-idp-ceiling");
    let (proxy, metrics) = start(
        &env,
        &[
            "address_idp_requests = 8",
            "address_idp_request_refill = \"1h\"",
        ],
        |_| {},
    );
    let attacker = [127, 0, 0, 2];
    // A token the provider accepts costs nothing: its request is given back.
    let token = env.idp.issue("alice");
    assert_logged_in(
        &xoauth2_from(&proxy, attacker, "alice", &token).await,
        "alice",
    );
    assert_eq!(env.idp.requests(), 1);

    // Ten at a time, each naming another user (this is not the per-user limit's test), and
    // under the listener's limit of connections per address before login.
    let mut outcomes = Vec::new();
    for batch in 0..10u8 {
        let claimed = |n: u8| format!("user{}", batch * 10 + n);
        outcomes.extend(at_once(&proxy, 10, |_| attacker, claimed, |_| random_token()).await);
    }
    assert_eq!(tally(&outcomes), (8, 92));
    assert_eq!(
        env.idp.requests(),
        9,
        "eight of the hundred reached the IdP"
    );

    // The known token still logs in from there; an unknown one, even a good one, waits.
    let outcome = xoauth2_from(&proxy, attacker, "alice", &token).await;
    assert_logged_in(&outcome, "a known token from the address at its ceiling");
    let fresh = env.idp.issue("alice");
    let outcome = xoauth2_from(&proxy, attacker, "alice", &fresh).await;
    assert_throttled(&outcome, "an unknown token from the address at its ceiling");
    // Another address has a ceiling of its own.
    let outcome = xoauth2_from(&proxy, [127, 0, 0, 3], "bob", &random_token()).await;
    assert_refused(&outcome, "a wrong token from elsewhere");
    assert_eq!(env.idp.requests(), 10);

    assert_eq!(limited(metrics, "idp_requests"), 93.0);
    assert_eq!(limited(metrics, "address") + limited(metrics, "user"), 0.0);
    assert_eq!(
        metric(
            metrics,
            "bearergate_auth_limit_tracked",
            &[("limit", "idp_requests")]
        ),
        2.0
    );
}

#[tokio::test]
async fn a_repeated_bad_token_costs_one_identity_provider_request() {
    let env = TestEnv::new("limits-idp-negative");
    let (proxy, metrics) = start(
        &env,
        &[
            "address_idp_requests = 3",
            "address_idp_request_refill = \"1h\"",
        ],
        |_| {},
    );
    let bad = random_token();
    // Twenty tries, far over the ceiling of three: the refusal is cached after the first
    // (negative_cache_ttl 10 s), and cached answers cost the provider nothing.
    for n in 0..20 {
        let outcome = xoauth2_from(&proxy, [127, 0, 0, 2], "alice", &bad).await;
        assert_refused(&outcome, &format!("try {n} of one bad token"));
    }
    assert_eq!(env.idp.requests(), 1);
    assert_eq!(limited(metrics, "idp_requests"), 0.0);
}

#[tokio::test]
async fn the_built_in_issuers_tokens_cost_no_identity_provider_requests() {
    let env = TestEnv::new("limits-idp-local");
    let port = free_port();
    let issuer = format!("https://127.0.0.1:{port}");
    let state_dir = env.dir.path().join("issuer-state");
    let (proxy, metrics) = start(
        &env,
        &[
            "address_idp_requests = 2",
            "address_idp_request_refill = \"1h\"",
        ],
        |c| {
            c.extra_toml.push_str(&format!(
                "\n[issuer]\npublic_url = \"{issuer}\"\nlisten = \"127.0.0.1:{port}\"\n\
                 state_dir = \"{}\"\nusers = \"backend\"\nusers_backend = \"imap\"\n",
                state_dir.display()
            ))
        },
    );
    // Tokens naming the built-in issuer (forged: it refuses them) are judged in process,
    // beside the introspection issuer: none of them is a request to the provider, however
    // many there are.
    let from = [127, 0, 0, 2];
    for n in 0..10 {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"at+jwt"}"#);
        let claims = json!({"iss": issuer, "sub": "alice", "exp": unix_now() + 3_600, "n": n});
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let forged = format!("{header}.{payload}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        let outcome = xoauth2_from(&proxy, from, "alice", &forged).await;
        assert_refused(&outcome, &format!("forged built-in token {n}"));
    }
    assert_eq!(env.idp.requests(), 0);
    // Opaque tokens from the same address do cost requests, up to the ceiling.
    let outcomes = at_once(&proxy, 3, |_| from, |_| "alice".into(), |_| random_token()).await;
    assert_eq!(tally(&outcomes), (2, 1));
    assert_eq!(env.idp.requests(), 2);
    assert_eq!(limited(metrics, "idp_requests"), 1.0);
}

/// One user's many devices behind one NAT address (or a webmail server) logging in at once:
/// thirty-six logins, tokens the proxy has not seen and passwords, against budgets of ten
/// per address, per user and for the provider. Every unit an attempt holds while Dovecot
/// and the provider are asked comes back when it logs in, so the others wait moments for
/// one instead of being told to try later. Guesses from the same address afterwards still
/// get exactly the budget past the proxy: the good logins spent none of it.
#[tokio::test]
async fn many_good_logins_at_once_from_one_address_all_log_in() {
    let env = TestEnv::with_dovecot("limits-many-good", |b| b.config(NO_PENALTY));
    let (proxy, metrics) = start(
        &env,
        &[
            "address_failures = 10",
            "address_failure_refill = \"1h\"",
            "user_failures = 10",
            "user_failure_refill = \"1h\"",
            "address_idp_requests = 10",
            "address_idp_request_refill = \"1h\"",
        ],
        |c| {
            c.each_listener(|l| {
                l.extra.push("password_fallback = true".into());
                l.extra.push("max_prelogin_per_address = 100".into());
            })
        },
    );
    let nat = [127, 0, 0, 1];
    let mut clients = Vec::new();
    for n in 0..36 {
        let login = if n % 3 == 2 {
            None
        } else {
            Some(env.idp.issue("alice"))
        };
        clients.push((connect_from(&proxy, nat).await, login));
    }
    let logins: Vec<_> = clients
        .into_iter()
        .map(|(mut client, token)| {
            tokio::spawn(async move {
                let status = match token {
                    Some(token) => {
                        let response = xoauth2_b64("alice", &token);
                        let outcome = client.authenticate("a", "XOAUTH2", &response, true).await;
                        assert!(outcome.challenge.is_none(), "{outcome:?}");
                        outcome.tagged
                    }
                    None => last_status(&client.command("a", "LOGIN alice alicepass").await),
                };
                if status.kind != "OK" {
                    return Err(status);
                }
                // Logged in to Dovecot itself: the relay answers.
                let selected = last_status(&client.command("s", "SELECT INBOX").await);
                assert_eq!(selected.kind, "OK", "SELECT after login: {selected:?}");
                Ok(())
            })
        })
        .collect();
    let mut refused = Vec::new();
    for login in logins {
        if let Err(status) = login.await.expect("login task") {
            refused.push(status);
        }
    }
    assert!(refused.is_empty(), "good logins refused: {refused:?}");
    assert_eq!(env.idp.requests(), 24, "each new token asked about once");
    for limit in ["address", "user", "idp_requests"] {
        assert_eq!(limited(metrics, limit), 0.0, "refused by {limit}");
    }

    // Twelve wrong passwords at once from the same address: ten reach Dovecot, the other
    // two wait for them and are told to try later.
    let mut guessers = Vec::new();
    for _ in 0..12 {
        guessers.push(connect_from(&proxy, nat).await);
    }
    let guesses: Vec<_> = guessers
        .into_iter()
        .map(|mut client| {
            tokio::spawn(
                async move { last_status(&client.command("p", "LOGIN alice wrongpass").await) },
            )
        })
        .collect();
    let (mut failed, mut throttled) = (0, 0);
    for guess in guesses {
        let status = guess.await.expect("guess task");
        if status.is("NO", Some("AUTHENTICATIONFAILED")) {
            failed += 1;
        } else if status.is("NO", Some("UNAVAILABLE")) {
            throttled += 1;
        } else {
            panic!("unexpected reply to a guess: {status:?}");
        }
    }
    assert_eq!((failed, throttled), (10, 2));
    assert_eq!(limited(metrics, "address"), 2.0);
}
