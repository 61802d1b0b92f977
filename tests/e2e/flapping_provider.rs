//! A flapping identity provider: the fake IdP is up, then answers HTTP 500, on a schedule it
//! keeps itself, while real IMAP clients log in through the proxy to Dovecot. Fresh tokens
//! must get through while it is up (the circuit breaker probes its way back within about a
//! second), and tokens it confirmed earlier all the time (`keep_confirmed_tokens`). A
//! provider answering 200 with garbage is an outage, never "wrong token".

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::support::{
    connect, oauthbearer_b64, try_oauthbearer, IdpMode, ImapClient, Proxy, Status, TestEnv, TlsMode,
};

const UP: Duration = Duration::from_secs(4);
const DOWN: Duration = Duration::from_secs(4);
/// Two whole periods: 16 s of flapping.
const PERIODS: u32 = 2;
/// A fresh login and a login with a confirmed token start this often.
const EVERY: Duration = Duration::from_millis(125);

/// The proxy in front of the environment's IdP: every login asks the IdP (no positive
/// cache, as once `cache_max_ttl` has passed), confirmed tokens are kept, and the
/// per-address limit on IdP requests is out of the way (every client here is 127.0.0.1).
fn start_proxy(env: &TestEnv) -> Proxy {
    env.start_proxy(|config| {
        config.validator.cache_max_ttl = "0s".into();
        config
            .validator
            .extra
            .push("keep_confirmed_tokens = true".into());
        config
            .auth_limits
            .push("address_idp_requests = 100000".into());
    })
}

/// OAUTHBEARER for alice on the plaintext listener: the tagged reply.
async fn log_in(addr: SocketAddr, token: String) -> Status {
    let mut client = ImapClient::connect_plain(addr).await;
    let greeting = client.read_line().await;
    assert!(greeting.starts_with("* OK"), "{greeting:?}");
    client
        .authenticate("a", "OAUTHBEARER", &oauthbearer_b64("alice", &token), true)
        .await
        .tagged
}

/// Logins that succeeded, of logins made; any reply but OK and NO [UNAVAILABLE] fails.
#[derive(Debug, Default)]
struct Ratio {
    succeeded: u32,
    made: u32,
}

impl Ratio {
    fn count(&mut self, reply: &Status) {
        assert!(
            reply.kind == "OK" || reply.is("NO", Some("UNAVAILABLE")),
            "a flapping provider must not make a good token look bad: {reply:?}"
        );
        self.made += 1;
        self.succeeded += u32::from(reply.kind == "OK");
    }

    fn share(&self) -> f64 {
        f64::from(self.succeeded) / f64::from(self.made)
    }
}

#[tokio::test]
async fn logins_get_through_a_provider_that_is_up_half_the_time() {
    let env = TestEnv::new("flapping");
    let proxy = start_proxy(&env);
    let addr = proxy.addr(TlsMode::None);

    // Eight devices whose tokens the provider confirms while it is up.
    let confirmed: Vec<String> = (0..8).map(|_| env.idp.issue("alice")).collect();
    for token in &confirmed {
        let reply = log_in(addr, token.clone()).await;
        assert_eq!(reply.kind, "OK", "{reply:?}");
    }
    let logins = (PERIODS * (UP + DOWN)).as_millis() / EVERY.as_millis();
    let fresh: Vec<String> = (0..logins).map(|_| env.idp.issue("alice")).collect();

    // The IdP keeps the schedule; the test only paces the logins and stops with the last
    // period, so every login is bounded by the schedule, not by a sleep.
    let mode = IdpMode::flapping(UP, DOWN);
    let IdpMode::Flapping { since, .. } = mode else {
        unreachable!("flapping() builds Flapping");
    };
    env.idp.set_mode(mode);
    let end = since + PERIODS * (UP + DOWN);
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut logins = JoinSet::new();
    for (n, token) in fresh.into_iter().enumerate() {
        ticks.tick().await;
        if Instant::now() >= end {
            break;
        }
        logins.spawn(async move { (true, log_in(addr, token).await) });
        let kept = confirmed[n % confirmed.len()].clone();
        logins.spawn(async move { (false, log_in(addr, kept).await) });
    }
    let (mut fresh, mut kept) = (Ratio::default(), Ratio::default());
    while let Some(done) = logins.join_next().await {
        let (is_fresh, reply) = done.expect("login task");
        if is_fresh {
            fresh.count(&reply);
        } else {
            kept.count(&reply);
        }
    }
    env.idp.set_mode(IdpMode::Normal);
    println!(
        "up {UP:?} / HTTP 500 {DOWN:?}, {PERIODS} periods: fresh {fresh:?} ({:.3}), \
         confirmed {kept:?} ({:.3}), IdP requests {}",
        fresh.share(),
        kept.share(),
        env.idp.requests()
    );
    assert!(fresh.made >= 100, "{fresh:?}");
    assert!(
        fresh.share() >= 0.40,
        "{fresh:?}: {:.3} of fresh logins got through\n{}",
        fresh.share(),
        proxy.log()
    );
    assert_eq!(kept.succeeded, kept.made, "{kept:?}\n{}", proxy.log());
    assert!(
        proxy.log().contains("token valid as confirmed earlier"),
        "{}",
        proxy.log()
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn a_provider_answering_garbage_is_unavailable_not_a_wrong_token() {
    let env = TestEnv::new("garbled");
    let proxy = start_proxy(&env);
    let confirmed = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate(
            "a",
            "OAUTHBEARER",
            &oauthbearer_b64("alice", &confirmed),
            true,
        )
        .await;
    assert_eq!(outcome.tagged.kind, "OK", "{outcome:?}");

    env.idp.set_mode(IdpMode::Malformed);
    for _ in 0..3 {
        let outcome = try_oauthbearer(&env, &proxy, "alice", &env.idp.issue("alice")).await;
        assert!(
            outcome.tagged.is("NO", Some("UNAVAILABLE")),
            "200 with {{\"active\": \"yes\"}} is no verdict on the token: {outcome:?}"
        );
    }
    assert!(
        proxy.log().contains("not an RFC 7662 answer"),
        "{}",
        proxy.log()
    );
    // A token the provider confirmed before it broke still logs in.
    let outcome = try_oauthbearer(&env, &proxy, "alice", &confirmed).await;
    assert_eq!(outcome.tagged.kind, "OK", "{outcome:?}");
}
