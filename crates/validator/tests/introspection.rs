//! Validator against an in-process fake introspection endpoint.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use secrecy::SecretString;
use serde_json::json;
use tokio::task::JoinSet;
use validator::{
    IntrospectionConfig, InvalidReason, IssuerConfig, Policy, Source, ValidationError, Validator,
    ValidatorConfig, ValidatorStats,
};

use support::{now_secs, refused_url, FakeIdp, Reply, Request, SHORT};

const CLIENT_SECRET: &str = "client-s3cret-value";

/// One introspection issuer whose policy takes the user from `username` and demands `mail`,
/// plus the cache settings; derefs to the introspection settings.
#[derive(Debug)]
struct Config {
    source: IntrospectionConfig,
    cache_max_ttl: Duration,
    negative_cache_ttl: Duration,
}

impl std::ops::Deref for Config {
    type Target = IntrospectionConfig;
    fn deref(&self) -> &IntrospectionConfig {
        &self.source
    }
}

impl std::ops::DerefMut for Config {
    fn deref_mut(&mut self) -> &mut IntrospectionConfig {
        &mut self.source
    }
}

fn config(url: &str) -> Config {
    let mut source = IntrospectionConfig::new(url, "bearergate", SecretString::from(CLIENT_SECRET));
    source.timeout = Duration::from_secs(5);
    Config {
        source,
        cache_max_ttl: validator::DEFAULT_CACHE_MAX_TTL,
        negative_cache_ttl: validator::DEFAULT_NEGATIVE_CACHE_TTL,
    }
}

fn build(config: Config) -> Result<Validator, validator::ConfigError> {
    let mut issuer = IssuerConfig::new("idp", Source::Introspection(config.source));
    issuer.policy = Policy {
        required_scopes: vec!["mail".to_owned()],
        ..Policy::with_claim("username")
    };
    let mut all = ValidatorConfig::single(issuer);
    all.cache_max_ttl = config.cache_max_ttl;
    all.negative_cache_ttl = config.negative_cache_ttl;
    Validator::new(all)
}

fn token(s: &str) -> SecretString {
    SecretString::from(s)
}

/// Answers by token: `alice-*` are valid, `inactive-*` are not, `noscope-*` lack `mail`.
fn idp(request: &Request) -> Reply {
    let token = request.token();
    if token.starts_with("alice") {
        return Reply::ok(json!({
            "active": true, "username": "alice", "scope": "openid mail",
            "client_id": "thunderbird", "exp": now_secs() + 3600,
        }));
    }
    if token.starts_with("noscope") {
        return Reply::ok(json!({"active": true, "username": "bob", "scope": "openid"}));
    }
    Reply::ok(json!({"active": false}))
}

#[tokio::test]
async fn request_is_rfc7662_with_basic_auth() {
    let fake = FakeIdp::start(idp).await;
    let mut config = config(&fake.url);
    config.client_id = "my:client".to_owned();
    config.client_secret = SecretString::from("s+cret %");
    let validator = build(config).unwrap();

    let identity = validator.validate(&token("alice+/=é")).await.unwrap();
    assert_eq!(identity.user, "alice");
    assert_eq!(identity.scopes, ["openid", "mail"]);
    assert_eq!(identity.client_id.as_deref(), Some("thunderbird"));
    assert!(identity.expires_at.is_some());

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/introspect");
    assert_eq!(
        request.body,
        "token=alice%2B%2F%3D%C3%A9&token_type_hint=access_token"
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.header("accept"), Some("application/json"));
    // RFC 6749 §2.3.1: each part form-urlencoded before base64.
    let expected = base64::engine::general_purpose::STANDARD.encode("my%3Aclient:s%2Bcret+%25");
    assert_eq!(
        request.header("authorization"),
        Some(format!("Basic {expected}").as_str())
    );
}

#[tokio::test]
async fn positive_answer_is_cached() {
    let fake = FakeIdp::start(idp).await;
    let validator = build(config(&fake.url)).unwrap();

    let first = validator.validate(&token("alice-1")).await.unwrap();
    let second = validator.validate(&token("alice-1")).await.unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(fake.count(), 1);

    // Another token is another entry.
    validator.validate(&token("alice-2")).await.unwrap();
    assert_eq!(fake.count(), 2);
    assert_eq!(
        validator.stats(),
        ValidatorStats {
            cache_hits: 1,
            cache_misses: 2,
            introspection_requests: 2,
            invalid: 0,
            unavailable: 0,
            kept_confirmed: 0,
        }
    );
}

#[tokio::test]
async fn positive_cache_can_be_disabled() {
    let fake = FakeIdp::start(idp).await;
    let mut config = config(&fake.url);
    config.cache_max_ttl = Duration::ZERO;
    let validator = build(config).unwrap();
    for _ in 0..3 {
        validator.validate(&token("alice")).await.unwrap();
    }
    assert_eq!(fake.count(), 3);
}

#[tokio::test]
async fn negative_answer_is_cached() {
    let fake = FakeIdp::start(idp).await;
    let validator = build(config(&fake.url)).unwrap();

    for _ in 0..3 {
        let err = validator.validate(&token("inactive-1")).await.unwrap_err();
        assert_eq!(err, ValidationError::Invalid(InvalidReason::Inactive));
    }
    for _ in 0..2 {
        let err = validator.validate(&token("noscope-1")).await.unwrap_err();
        assert_eq!(
            err,
            ValidationError::Invalid(InvalidReason::MissingScope {
                scope: "mail".to_owned()
            })
        );
    }
    assert_eq!(fake.count(), 2);
    let stats = validator.stats();
    assert_eq!(stats.invalid, 5);
    assert_eq!(stats.cache_hits, 3);
}

#[tokio::test]
async fn negative_cache_can_be_disabled() {
    let fake = FakeIdp::start(idp).await;
    let mut config = config(&fake.url);
    config.negative_cache_ttl = Duration::ZERO;
    let validator = build(config).unwrap();
    for _ in 0..3 {
        let err = validator.validate(&token("inactive")).await.unwrap_err();
        assert!(err.is_invalid());
    }
    assert_eq!(fake.count(), 3);
}

#[tokio::test]
async fn empty_and_oversized_tokens_are_invalid_without_a_request() {
    let fake = FakeIdp::start(idp).await;
    let validator = build(config(&fake.url)).unwrap();
    assert_eq!(
        validator.validate(&token("")).await.unwrap_err(),
        ValidationError::Invalid(InvalidReason::EmptyToken)
    );
    let long = "a".repeat(validator::MAX_TOKEN_LEN + 1);
    assert_eq!(
        validator.validate(&token(&long)).await.unwrap_err(),
        ValidationError::Invalid(InvalidReason::TokenTooLong)
    );
    assert_eq!(fake.count(), 0);
}

/// Validates "alice" twice on a fresh validator and checks that both attempts were
/// Unavailable (never Invalid) and both reached the server.
async fn assert_unavailable_twice(validator: &Validator, fake_count: impl Fn() -> usize) {
    for attempt in 1..=2 {
        let err = validator.validate(&token("alice")).await.unwrap_err();
        assert!(err.is_unavailable(), "attempt {attempt}: {err:?}");
    }
    assert_eq!(fake_count(), 2, "Unavailable must not be cached");
    let stats = validator.stats();
    assert_eq!(stats.unavailable, 2);
    assert_eq!(stats.invalid, 0);
    assert_eq!(stats.cache_hits, 0);
}

#[tokio::test]
async fn server_error_is_unavailable_and_not_cached() {
    let fake = FakeIdp::start(|_: &Request| Reply::Json(503, "{}".to_owned())).await;
    let validator = build(config(&fake.url)).unwrap();
    assert_unavailable_twice(&validator, || fake.count()).await;
}

#[tokio::test]
async fn refused_client_credentials_are_unavailable() {
    let fake =
        FakeIdp::start(|_: &Request| Reply::Json(401, r#"{"error":"invalid_client"}"#.to_owned()))
            .await;
    let validator = build(config(&fake.url)).unwrap();
    let err = validator.validate(&token("alice")).await.unwrap_err();
    let ValidationError::Unavailable(why) = &err else {
        panic!("our credentials being refused is not the client's fault: {err:?}");
    };
    assert!(why.detail.contains("client credentials"), "{why}");
    assert_eq!(why.kind, validator::UnavailableKind::Refused(401));
    assert!(why.is_configuration());
    assert!(validator
        .validate(&token("alice"))
        .await
        .unwrap_err()
        .is_unavailable());
    assert_eq!(fake.count(), 2, "Unavailable must not be cached");
}

#[tokio::test]
async fn timeout_is_unavailable_and_not_cached() {
    let fake = FakeIdp::start(|_: &Request| Reply::Hang).await;
    let mut config = config(&fake.url);
    config.timeout = SHORT;
    let validator = build(config).unwrap();
    let started = Instant::now();
    assert_unavailable_twice(&validator, || fake.count()).await;
    assert!(started.elapsed() < SHORT * 10, "{:?}", started.elapsed());
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let url = refused_url().await;
    let validator = build(config(&url)).unwrap();
    for _ in 0..2 {
        let err = validator.validate(&token("alice")).await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
    let stats = validator.stats();
    assert_eq!((stats.introspection_requests, stats.unavailable), (2, 2));
}

#[tokio::test]
async fn garbage_body_is_unavailable_and_not_cached() {
    for body in ["<html>oops</html>", "[true]", "", "{\"active\":true"] {
        let fake = FakeIdp::start(move |_: &Request| Reply::Json(200, body.to_owned())).await;
        let validator = build(config(&fake.url)).unwrap();
        assert_unavailable_twice(&validator, || fake.count()).await;
    }
}

#[tokio::test]
async fn oversized_body_is_unavailable() {
    let padding = "x".repeat(validator::MAX_RESPONSE_LEN);
    let fake = FakeIdp::start(move |_: &Request| {
        Reply::ok(json!({"active": true, "username": "alice", "scope": "mail", "pad": padding}))
    })
    .await;
    let validator = build(config(&fake.url)).unwrap();
    assert_unavailable_twice(&validator, || fake.count()).await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let fake = FakeIdp::start(|request: &Request| {
        if request.path == "/introspect" {
            Reply::Redirect("/elsewhere".to_owned())
        } else {
            Reply::ok(json!({"active": true, "username": "alice", "scope": "mail"}))
        }
    })
    .await;
    let validator = build(config(&fake.url)).unwrap();
    assert_unavailable_twice(&validator, || fake.count()).await;
    assert!(fake.requests().iter().all(|r| r.path == "/introspect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_validations_share_one_request() {
    let fake = FakeIdp::start_held(idp).await;
    let validator = build(config(&fake.url)).unwrap();

    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let validator = validator.clone();
        tasks.spawn(async move { validator.validate(&token("alice-shared")).await });
    }
    fake.arrived().await;
    // The answer is held, so no validation can finish; give the other 49 a moment to queue
    // behind the first (they would be served from the cache even if they came later).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tasks.try_join_next().is_none(), "answered before release");
    assert_eq!(fake.count(), 1);

    fake.release(50);
    let mut users = Vec::new();
    while let Some(result) = tasks.join_next().await {
        users.push(result.unwrap().unwrap().user.clone());
    }
    assert_eq!(users.len(), 50);
    assert!(users.iter().all(|u| u == "alice"));
    assert_eq!(fake.count(), 1);
    let stats = validator.stats();
    assert_eq!((stats.cache_misses, stats.cache_hits), (1, 49));
    assert_eq!(stats.introspection_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_validations_share_one_failure_which_is_not_cached() {
    let fake = FakeIdp::start_held(|_: &Request| Reply::Json(502, String::new())).await;
    let validator = build(config(&fake.url)).unwrap();

    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let validator = validator.clone();
        tasks.spawn(async move { validator.validate(&token("alice-shared")).await });
    }
    fake.arrived().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.release(51);
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().unwrap_err().is_unavailable());
    }
    assert_eq!(fake.count(), 1);
    assert_eq!(validator.stats().unavailable, 50);

    // The failure was not cached: the next attempt asks again.
    assert!(validator
        .validate(&token("alice-shared"))
        .await
        .unwrap_err()
        .is_unavailable());
    assert_eq!(fake.count(), 2);
}

/// The one test that lets real time pass (about two seconds): entries expire with the
/// token's `exp` and with `negative_cache_ttl`.
#[tokio::test]
async fn cache_entries_expire() {
    let exp = now_secs() + 2;
    let fake = FakeIdp::start(move |request: &Request| {
        if request.token() == "short-lived" {
            Reply::ok(json!({"active": true, "username": "alice", "scope": "mail", "exp": exp}))
        } else {
            Reply::ok(json!({"active": false}))
        }
    })
    .await;
    let mut config = config(&fake.url);
    config.negative_cache_ttl = Duration::from_millis(500);
    let validator = build(config).unwrap();

    validator.validate(&token("short-lived")).await.unwrap();
    validator.validate(&token("short-lived")).await.unwrap();
    validator.validate(&token("rejected")).await.unwrap_err();
    validator.validate(&token("rejected")).await.unwrap_err();
    assert_eq!(fake.count(), 2);

    let exp_time = UNIX_EPOCH + Duration::from_secs(exp);
    let until_exp = exp_time
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(until_exp + Duration::from_millis(50)).await;

    // Past exp: the positive entry is gone and the fresh answer is judged expired.
    assert_eq!(
        validator.validate(&token("short-lived")).await.unwrap_err(),
        ValidationError::Invalid(InvalidReason::Expired)
    );
    assert_eq!(fake.count(), 3);
    // Past negative_cache_ttl: asked again.
    assert_eq!(
        validator.validate(&token("rejected")).await.unwrap_err(),
        ValidationError::Invalid(InvalidReason::Inactive)
    );
    assert_eq!(fake.count(), 4);
}

/// A `MakeWriter` collecting every log line.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_appear_in_no_log_error_or_debug() {
    const TOKEN: &str = "alice-VERY-SECRET-TOKEN-4711";
    const BAD_TOKEN: &str = "inactive-ANOTHER-SECRET-0815";

    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = FakeIdp::start(idp).await;
    let validator = build(config(&fake.url)).unwrap();
    let mut texts = vec![format!("{:?}", config(&fake.url)), format!("{validator:?}")];

    validator.validate(&token(TOKEN)).await.unwrap();
    let invalid = validator.validate(&token(BAD_TOKEN)).await.unwrap_err();
    texts.push(format!("{invalid:?} {invalid}"));

    let down = FakeIdp::start(|_: &Request| Reply::Json(401, String::new())).await;
    let unavailable = build(config(&down.url))
        .unwrap()
        .validate(&token(TOKEN))
        .await
        .unwrap_err();
    texts.push(format!("{unavailable:?} {unavailable}"));
    let refused = build(config(&refused_url().await))
        .unwrap()
        .validate(&token(TOKEN))
        .await
        .unwrap_err();
    texts.push(format!("{refused:?} {refused}"));
    texts.push(format!("{validator:?}"));

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("token valid"),
        "debug events are emitted: {log}"
    );
    assert!(log.contains("refused the proxy's introspection credentials"));
    texts.push(log);

    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("bearergate:{CLIENT_SECRET}"));
    for text in &texts {
        for secret in [TOKEN, BAD_TOKEN, CLIENT_SECRET, basic.as_str(), "SECRET"] {
            assert!(!text.contains(secret), "{secret:?} leaked into: {text}");
        }
    }
}
