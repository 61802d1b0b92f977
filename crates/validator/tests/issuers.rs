//! Introspection client authentication, answer checks, several issuers behind one cache,
//! per-protocol scopes and the circuit breaker, against in-process fake endpoints.

mod support;

use std::time::Duration;

use base64::Engine as _;
use secrecy::SecretString;
use serde_json::{json, Value};
use validator::{
    ClientAuth, GuardConfig, IntrospectionConfig, InvalidReason, IssuerConfig, Policy, ScopeKey,
    Source, UnavailableKind, ValidationError, Validator, ValidatorConfig,
};

use support::{now_secs, FakeIdp, Reply, Request};

fn token(s: &str) -> SecretString {
    SecretString::from(s)
}

fn introspection(name: &str, url: &str) -> IssuerConfig {
    let source = IntrospectionConfig::new(url, "bearergate", SecretString::from("s3cret-value"));
    IssuerConfig::new(name, Source::Introspection(source))
}

fn source_of(issuer: &mut IssuerConfig) -> &mut IntrospectionConfig {
    match &mut issuer.source {
        Source::Introspection(source) => source,
        other => panic!("not introspection: {other:?}"),
    }
}

/// Accepts tokens that start with `prefix` for user `user`, with the extra members `extra`.
fn accepting(prefix: &'static str, user: &'static str, extra: Value) -> impl Fn(&Request) -> Reply {
    move |request: &Request| {
        if !request.token().starts_with(prefix) {
            return Reply::ok(json!({"active": false}));
        }
        let mut answer = json!({"active": true, "username": user, "exp": now_secs() + 600});
        if let (Value::Object(answer), Value::Object(extra)) = (&mut answer, &extra) {
            answer.extend(extra.clone());
        }
        Reply::ok(answer)
    }
}

#[tokio::test]
async fn client_secret_post_puts_credentials_in_the_body_and_no_hint_when_empty() {
    let fake = FakeIdp::start(accepting("alice", "alice", json!({}))).await;
    let mut issuer = introspection("idp", &fake.url);
    source_of(&mut issuer).client_auth = ClientAuth::Post;
    source_of(&mut issuer).token_type_hint = None;
    let validator = Validator::new(ValidatorConfig::single(issuer)).unwrap();
    validator.validate(&token("alice-1")).await.unwrap();

    let request = &fake.requests()[0];
    assert_eq!(request.header("authorization"), None);
    assert_eq!(
        request.body,
        "token=alice-1&client_id=bearergate&client_secret=s3cret-value"
    );
}

#[tokio::test]
async fn bearer_client_auth_and_a_custom_hint() {
    let fake = FakeIdp::start(accepting("alice", "alice", json!({}))).await;
    let mut issuer = introspection("idp", &fake.url);
    source_of(&mut issuer).client_auth = ClientAuth::Bearer;
    source_of(&mut issuer).token_type_hint = Some("urn:x:access".to_owned());
    let validator = Validator::new(ValidatorConfig::single(issuer)).unwrap();
    validator.validate(&token("alice-1")).await.unwrap();

    let request = &fake.requests()[0];
    assert_eq!(request.header("authorization"), Some("Bearer s3cret-value"));
    assert_eq!(
        request.body,
        "token=alice-1&token_type_hint=urn%3Ax%3Aaccess"
    );
}

#[tokio::test]
async fn iss_aud_and_client_id_in_the_answer_are_checked() {
    let fake = FakeIdp::start(|request: &Request| {
        let (iss, aud, client) = match request.token().as_str() {
            "good" => ("https://idp.example", "mail", "thunderbird"),
            "other-iss" => ("https://evil.example", "mail", "thunderbird"),
            "other-aud" => ("https://idp.example", "calendar", "thunderbird"),
            _ => ("https://idp.example", "mail", "some-app"),
        };
        Reply::ok(
            json!({"active": true, "username": "alice", "iss": iss, "aud": [aud],
                         "client_id": client}),
        )
    })
    .await;
    let mut issuer = introspection("idp", &fake.url);
    source_of(&mut issuer).issuer = Some("https://idp.example".to_owned());
    source_of(&mut issuer).audiences = vec!["mail".to_owned()];
    issuer.policy.allowed_client_ids = vec!["thunderbird".to_owned()];
    let validator = Validator::new(ValidatorConfig::single(issuer)).unwrap();

    assert_eq!(
        validator.validate(&token("good")).await.unwrap().user,
        "alice"
    );
    let reason = |t: &'static str| {
        let validator = validator.clone();
        async move {
            match validator.validate(&token(t)).await {
                Err(ValidationError::Invalid(reason)) => reason,
                other => panic!("{t}: {other:?}"),
            }
        }
    };
    assert_eq!(reason("other-iss").await, InvalidReason::WrongIssuer);
    assert_eq!(reason("other-aud").await, InvalidReason::WrongAudience);
    assert_eq!(
        reason("other-client").await,
        InvalidReason::ClientNotAllowed {
            client_id: "some-app".to_owned()
        }
    );
}

#[tokio::test]
async fn opaque_tokens_try_issuers_in_order_and_the_identity_names_its_issuer() {
    let first = FakeIdp::start(accepting("alice", "alice", json!({}))).await;
    let second = FakeIdp::start(accepting("bob", "Bob@Corp.Example", json!({}))).await;
    let mut b = introspection("corp", &second.url);
    b.policy.strip_domains = vec!["corp.example".to_owned()];
    b.policy.lowercase_username = true;
    b.policy.user_map = [("bob".to_owned(), "robert".to_owned())].into();
    let config = ValidatorConfig::several(vec![introspection("home", &first.url), b]);
    let validator = Validator::new(config).unwrap();

    let alice = validator.validate(&token("alice-1")).await.unwrap();
    assert_eq!(
        (alice.issuer.as_str(), alice.user.as_str()),
        ("home", "alice")
    );
    assert_eq!(
        (first.count(), second.count()),
        (1, 0),
        "first issuer answered"
    );

    let bob = validator.validate(&token("bob-1")).await.unwrap();
    assert_eq!(bob.issuer, "corp");
    assert_eq!(bob.user, "bob");
    assert_eq!(bob.backend_user, "robert");
    assert_eq!(bob.user_claim, "username");
    assert_eq!((first.count(), second.count()), (2, 1));

    // Refused by both: the first refusal stands, and it is cached like any refusal.
    let err = validator.validate(&token("mallory")).await.unwrap_err();
    assert_eq!(err, ValidationError::Invalid(InvalidReason::Inactive));
    validator.validate(&token("mallory")).await.unwrap_err();
    assert_eq!((first.count(), second.count()), (3, 2));
}

#[tokio::test]
async fn an_unreachable_issuer_makes_an_unknown_opaque_token_unavailable() {
    let down = FakeIdp::start(|_: &Request| Reply::Json(503, String::new())).await;
    let up = FakeIdp::start(accepting("alice", "alice", json!({}))).await;
    let config = ValidatorConfig::several(vec![
        introspection("down", &down.url),
        introspection("up", &up.url),
    ]);
    let validator = Validator::new(config).unwrap();
    // Accepted by the second although the first is down.
    assert_eq!(
        validator.validate(&token("alice")).await.unwrap().issuer,
        "up"
    );
    // Refused by the second, unknown to the first: it might have been the first's.
    assert!(validator
        .validate(&token("bob"))
        .await
        .unwrap_err()
        .is_unavailable());
    // Not cached: the next attempt asks both again.
    let asked = (down.count(), up.count());
    assert!(validator
        .validate(&token("bob"))
        .await
        .unwrap_err()
        .is_unavailable());
    assert_eq!((down.count(), up.count()), (asked.0 + 1, asked.1 + 1));
}

#[tokio::test]
async fn jwts_are_routed_by_iss_and_the_challenge_follows() {
    let first = FakeIdp::start(accepting("", "alice", json!({}))).await;
    let second = FakeIdp::start(accepting("", "bob", json!({}))).await;
    let mut a = introspection("a", &first.url);
    a.discovery.scope = Some("scope-a".to_owned());
    let mut b = introspection("b", &second.url);
    source_of(&mut b).issuer = Some("https://b.example".to_owned());
    b.discovery.scope = Some("scope-b".to_owned());
    let config = ValidatorConfig::several(vec![a, b]);
    let validator = Validator::new(config).unwrap();

    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let jwt = format!(
        "{}.{}.sig",
        b64(json!({"alg":"RS256"})),
        b64(json!({"iss":"https://b.example"}))
    );
    let identity = validator.validate(&token(&jwt)).await.unwrap();
    assert_eq!(identity.issuer, "b");
    assert_eq!((first.count(), second.count()), (0, 1), "straight to b");
    assert_eq!(
        validator.discovery_for(&token(&jwt)).scope.as_deref(),
        Some("scope-b")
    );
    assert_eq!(
        validator.discovery_for(&token("opaque")).scope.as_deref(),
        Some("scope-a")
    );
}

#[tokio::test]
async fn protocol_scopes_are_checked_per_login() {
    let fake = FakeIdp::start(accepting("alice", "alice", json!({"scope": "mail.read"}))).await;
    let mut issuer = introspection("idp", &fake.url);
    issuer.policy = Policy {
        protocol_scopes: [(ScopeKey::new("smtp"), vec!["mail.send".to_owned()])].into(),
        ..Policy::with_claim("username")
    };
    let validator = Validator::new(ValidatorConfig::single(issuer)).unwrap();
    assert!(validator
        .validate_for(&token("alice"), &ScopeKey::new("imap"))
        .await
        .is_ok());
    assert_eq!(
        validator
            .validate_for(&token("alice"), &ScopeKey::new("smtp"))
            .await,
        Err(ValidationError::Invalid(InvalidReason::MissingScope {
            scope: "mail.send".to_owned()
        }))
    );
    assert_eq!(fake.count(), 1, "one answer serves both protocols");
}

#[tokio::test]
async fn an_open_circuit_answers_unavailable_without_asking() {
    let down = FakeIdp::start(|_: &Request| Reply::Json(502, String::new())).await;
    let mut issuer = introspection("idp", &down.url);
    issuer.guard = GuardConfig {
        failure_threshold: 2,
        open_for: Duration::from_secs(3600),
        ..GuardConfig::default()
    };
    let validator = Validator::new(ValidatorConfig::single(issuer)).unwrap();
    for i in 0..5 {
        let err = validator
            .validate(&token(&format!("t{i}")))
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }
    assert_eq!(down.count(), 2, "requests stop once the circuit opens");
    assert_eq!(validator.stats().unavailable, 5);
}

#[tokio::test]
async fn malformed_200_answers_are_outages_that_open_the_circuit() {
    let answers = [
        "not json at all",
        "[]",
        "{}",
        r#"{"username": "alice"}"#,
        r#"{"active": "true", "username": "alice"}"#,
        r#"{"active": 1}"#,
        r#"{"active": true, "username": "alice", "exp": "tomorrow"}"#,
        r#"{"active": true, "username": "alice", "scope": ["mail"]}"#,
    ];
    for body in answers {
        let fake = FakeIdp::start(move |_: &Request| Reply::Json(200, body.to_owned())).await;
        let mut issuer = introspection("idp", &fake.url);
        issuer.guard = GuardConfig {
            failure_threshold: 2,
            open_for: Duration::from_secs(3600),
            ..GuardConfig::default()
        };
        let validator = Validator::new(ValidatorConfig::single(issuer)).unwrap();
        for i in 0..4 {
            match validator.validate(&token(&format!("t{i}"))).await {
                Err(ValidationError::Unavailable(why)) if i < 2 => {
                    assert_eq!(why.kind, UnavailableKind::BadAnswer, "{body}: {why}");
                }
                Err(ValidationError::Unavailable(why)) => {
                    assert_eq!(why.kind, UnavailableKind::CircuitOpen, "{body}: {why}");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
        assert_eq!(
            fake.count(),
            2,
            "{body}: the breaker counted the bad answers"
        );
        assert_eq!(validator.stats().invalid, 0, "{body}");
    }
}

#[tokio::test]
async fn a_400_about_the_token_is_a_refusal_and_other_400s_an_outage() {
    let fake = FakeIdp::start(|request: &Request| match request.token().as_str() {
        "jwt-it-cannot-judge" => Reply::Json(
            400,
            json!({"error": "unsupported_token_type", "error_description": "x"}).to_string(),
        ),
        "our-credentials" => Reply::Json(400, json!({"error": "invalid_token"}).to_string()),
        _ => Reply::Json(400, json!({"error": "invalid_request"}).to_string()),
    })
    .await;
    let validator =
        Validator::new(ValidatorConfig::single(introspection("idp", &fake.url))).unwrap();
    assert_eq!(
        validator.validate(&token("jwt-it-cannot-judge")).await,
        Err(ValidationError::Invalid(InvalidReason::Inactive))
    );
    // Our own request or credentials are at fault: every user would be refused, so it is an
    // outage.
    for t in ["our-credentials", "anything"] {
        assert!(
            validator
                .validate(&token(t))
                .await
                .unwrap_err()
                .is_unavailable(),
            "{t}"
        );
    }
}

#[tokio::test]
async fn a_refusal_by_a_provider_that_knows_the_token_is_final() {
    // Both know the token; the first refuses it by policy (a foreign client), the second,
    // looser one would accept it.
    let strict = FakeIdp::start(accepting("t", "alice", json!({"client_id": "foreign"}))).await;
    let loose = FakeIdp::start(accepting("t", "alice", json!({"client_id": "foreign"}))).await;
    let mut first = introspection("strict", &strict.url);
    first.policy.allowed_client_ids = vec!["webmail".to_owned()];
    let config = ValidatorConfig::several(vec![first, introspection("loose", &loose.url)]);
    let validator = Validator::new(config).unwrap();
    assert_eq!(
        validator.validate(&token("t-1")).await,
        Err(ValidationError::Invalid(InvalidReason::ClientNotAllowed {
            client_id: "foreign".to_owned()
        }))
    );
    assert_eq!(
        (strict.count(), loose.count()),
        (1, 0),
        "the loose issuer is never asked"
    );

    // An expired answer is also the provider's knowledge: final.
    let expired = FakeIdp::start(|_: &Request| {
        Reply::ok(json!({"active": true, "username": "alice", "exp": now_secs() - 60}))
    })
    .await;
    let config = ValidatorConfig::several(vec![
        introspection("expired", &expired.url),
        introspection("loose", &loose.url),
    ]);
    let validator = Validator::new(config).unwrap();
    assert_eq!(
        validator.validate(&token("t-2")).await,
        Err(ValidationError::Invalid(InvalidReason::Expired))
    );
    assert_eq!(loose.count(), 0);
}
