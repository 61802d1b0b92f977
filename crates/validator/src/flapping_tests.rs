//! The whole validator — cache, single-flight, circuit breaker, kept confirmations — in
//! front of a provider that flaps (up 5 s, then HTTP 500 for 5 s), under tokio's paused
//! clock: minutes of flapping run in milliseconds, and the figures are exact.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use serde_json::{json, Map, Value};
use tokio::time::{Instant, MissedTickBehavior};

use crate::cache::TokenKey;
use crate::issuer::{Issuer, IssuerConfig, Script, Source, ValidatorConfig};
use crate::{
    Identity, IntrospectionConfig, InvalidReason, Unavailable, UnavailableKind, ValidationError,
    Validator,
};

const UP: Duration = Duration::from_secs(5);
const DOWN: Duration = Duration::from_secs(5);
/// Eight periods: 80 s of flapping, 800 fresh logins and 800 with confirmed tokens.
const PERIODS: u32 = 8;
const EVERY: Duration = Duration::from_millis(100);

/// What the provider does with a token it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Up or down as the clock says: up for [`UP`], then HTTP 500 for [`DOWN`], from start.
    Flapping(Instant),
    /// Up or down as the test sets it.
    Switched,
    /// Answers 200 with JSON that is not an RFC 7662 answer.
    Garbled,
}

/// The identity provider: every token named `token-…` is alice's, unless revoked.
struct Provider {
    health: Mutex<Health>,
    up: AtomicBool,
    revoked: Mutex<HashSet<String>>,
}

impl Provider {
    fn new(health: Health) -> Arc<Self> {
        Arc::new(Self {
            health: Mutex::new(health),
            up: AtomicBool::new(true),
            revoked: Mutex::default(),
        })
    }

    fn answer(&self, token: &str) -> Result<Map<String, Value>, Unavailable> {
        let health = *self.health.lock().expect("health");
        let up = match health {
            Health::Flapping(start) => {
                let period = UP + DOWN;
                (Instant::now() - start).as_nanos() % period.as_nanos() < UP.as_nanos()
            }
            Health::Switched => self.up.load(Ordering::SeqCst),
            Health::Garbled => return Ok(object(json!({"active": "yes"}))),
        };
        if !up {
            return Err(Unavailable::new(
                UnavailableKind::HttpStatus(500),
                "identity provider answered HTTP 500",
            ));
        }
        let known = token.starts_with("token-");
        if !known || self.revoked.lock().expect("revoked").contains(token) {
            return Ok(object(json!({"active": false})));
        }
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
            + 3600;
        Ok(object(json!({
            "active": true, "username": "alice", "scope": "mail", "exp": exp,
        })))
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    fn set_health(&self, health: Health) {
        *self.health.lock().expect("health") = health;
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn token(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

/// One introspection issuer played by `provider`. No positive caching: every login asks
/// the provider, as any login does once `cache_max_ttl` has passed since the last answer;
/// nor negative caching, so that a refusal is seen at the next login.
fn validator(provider: &Arc<Provider>, keep: bool) -> Validator {
    let source = IntrospectionConfig::new(
        "https://idp.example/introspect",
        "bearergate",
        SecretString::from("s3cret"),
    );
    let mut issuer = IssuerConfig::new("idp", Source::Introspection(source));
    issuer.keep_confirmed_tokens = keep;
    let mut config = ValidatorConfig::single(issuer.clone());
    config.cache_max_ttl = Duration::ZERO;
    config.negative_cache_ttl = Duration::ZERO;
    let provider = Arc::clone(provider);
    let script = Script(Arc::new(move |token: &str| provider.answer(token)));
    let issuer = Issuer::scripted(issuer, script).expect("issuer");
    Validator::with_issuers(&config, vec![issuer])
}

/// Logins that succeeded, of logins made.
#[derive(Debug, Default, Clone, Copy)]
struct Ratio {
    succeeded: u32,
    made: u32,
}

impl Ratio {
    fn count(&mut self, result: &Result<Arc<Identity>, ValidationError>) {
        // Flapping must never make a good token look bad.
        assert!(
            !matches!(result, Err(ValidationError::Invalid(_))),
            "{result:?}"
        );
        self.made += 1;
        self.succeeded += u32::from(result.is_ok());
    }

    fn share(self) -> f64 {
        f64::from(self.succeeded) / f64::from(self.made)
    }
}

/// [`PERIODS`] periods of flapping with a fresh token and a confirmed token every
/// [`EVERY`]: the ratios for each kind. Ten users confirm their tokens first, while the
/// provider is up.
async fn flap(keep: bool) -> (Ratio, Ratio, Validator) {
    let start = Instant::now();
    let provider = Provider::new(Health::Flapping(start));
    let validator = validator(&provider, keep);
    let confirmed: Vec<SecretString> = (0..10).map(|i| token(&format!("token-kept-{i}"))).collect();
    for kept in &confirmed {
        validator.validate(kept).await.expect("confirmed while up");
    }
    let (mut fresh, mut again) = (Ratio::default(), Ratio::default());
    let end = start + (UP + DOWN) * PERIODS;
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for login in 0.. {
        if ticks.tick().await >= end {
            break;
        }
        let new = token(&format!("token-fresh-{login}"));
        fresh.count(&validator.validate(&new).await);
        again.count(
            &validator
                .validate(&confirmed[login % confirmed.len()])
                .await,
        );
    }
    (fresh, again, validator)
}

#[tokio::test(start_paused = true)]
async fn with_kept_confirmations_every_confirmed_login_succeeds_while_flapping() {
    let (fresh, confirmed, validator) = flap(true).await;
    println!(
        "keep_confirmed_tokens = true: fresh {fresh:?} {:.3}, confirmed {confirmed:?} {:.3}, {:?}",
        fresh.share(),
        confirmed.share(),
        validator.stats()
    );
    assert_eq!(fresh.made, 800);
    assert!(fresh.share() >= 0.40, "{fresh:?}");
    assert_eq!(confirmed.succeeded, confirmed.made, "{confirmed:?}");
    let stats = validator.stats();
    assert!(stats.kept_confirmed >= 300, "{stats:?}");
    assert_eq!(stats.invalid, 0, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn without_kept_confirmations_confirmed_logins_fare_like_fresh_ones() {
    let (fresh, confirmed, validator) = flap(false).await;
    println!(
        "keep_confirmed_tokens = false: fresh {fresh:?} {:.3}, confirmed {confirmed:?} {:.3}",
        fresh.share(),
        confirmed.share()
    );
    assert!(fresh.share() >= 0.40, "{fresh:?}");
    assert!(confirmed.share() < 0.60, "{confirmed:?}");
    assert_eq!(validator.stats().kept_confirmed, 0);
}

#[tokio::test(start_paused = true)]
async fn a_confirmed_token_is_kept_only_while_the_provider_cannot_answer() {
    let provider = Provider::new(Health::Switched);
    let validator = validator(&provider, true);
    let (kept, revoked, never) = (token("token-a"), token("token-b"), token("token-c"));
    validator.validate(&kept).await.expect("confirmed");
    validator.validate(&revoked).await.expect("confirmed");

    // The provider refuses a token it confirmed: refused now, and not kept for later.
    provider
        .revoked
        .lock()
        .expect("revoked")
        .insert("token-b".to_owned());
    assert_eq!(
        validator.validate(&revoked).await,
        Err(ValidationError::Invalid(InvalidReason::Inactive))
    );

    provider.set_up(false);
    assert!(validator.validate(&kept).await.is_ok());
    for (token, what) in [(&revoked, "refused since"), (&never, "never confirmed")] {
        let result = validator.validate(token).await;
        assert!(
            result.as_ref().is_err_and(ValidationError::is_unavailable),
            "{what}: {result:?}"
        );
    }
    assert_eq!(validator.stats().kept_confirmed, 1);

    // Back up: the provider's word counts again.
    provider.set_up(true);
    assert!(validator.validate(&kept).await.is_ok());
    assert_eq!(validator.stats().kept_confirmed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_confirmed_token_is_never_accepted_past_its_exp() {
    let provider = Provider::new(Health::Switched);
    let validator = validator(&provider, true);
    provider.set_up(false);
    // Confirmed ten seconds ago, for a token that expired a second ago.
    let now = SystemTime::now();
    let identity = Arc::new(Identity {
        user: "alice".into(),
        user_claim: "username".into(),
        backend_user: "alice".into(),
        issuer: "idp".into(),
        scopes: vec!["mail".into()],
        client_id: None,
        audiences: Vec::new(),
        expires_at: Some(now - Duration::from_secs(1)),
    });
    let expired = token("token-expired");
    let confirmed = validator.inner.confirmed.as_ref().expect("kept");
    confirmed
        .keep(
            TokenKey::of(&expired),
            &identity,
            now - Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        validator.validate(&expired).await,
        Err(ValidationError::Invalid(InvalidReason::Expired))
    );
}

#[tokio::test(start_paused = true)]
async fn a_garbled_answer_is_an_outage_that_opens_the_circuit_and_keeps_confirmations() {
    let provider = Provider::new(Health::Switched);
    let validator = validator(&provider, true);
    let kept = token("token-kept");
    validator.validate(&kept).await.expect("confirmed");

    provider.set_health(Health::Garbled);
    for i in 0..crate::DEFAULT_FAILURE_THRESHOLD {
        match validator.validate(&token(&format!("token-{i}"))).await {
            Err(ValidationError::Unavailable(why)) => {
                assert_eq!(why.kind, UnavailableKind::BadAnswer, "{why}");
            }
            other => panic!("a garbled answer is no verdict on the token: {other:?}"),
        }
    }
    assert_eq!(
        validator.issuer_stats()[0].circuit,
        crate::CircuitState::Open
    );
    match validator.validate(&token("token-next")).await {
        Err(ValidationError::Unavailable(why)) => {
            assert_eq!(why.kind, UnavailableKind::CircuitOpen, "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(validator.validate(&kept).await.is_ok());
    assert_eq!(validator.stats().invalid, 0);
}
