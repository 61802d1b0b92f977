//! JWT validation against keys generated in the test and a JWKS served by the fake endpoint.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use validator::{InvalidReason, JwtConfig, JwtValidator, UnavailableKind, ValidationError};

use support::{now_secs, FakeIdp, Reply};

const AUD: &str = "imap.example";

struct TestKey {
    kid: String,
    pair: KeyPair,
    alg: Algorithm,
}

impl TestKey {
    fn ec(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap(),
            alg: Algorithm::ES256,
        }
    }

    fn ed(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: KeyPair::generate_for(&PKCS_ED25519).unwrap(),
            alg: Algorithm::EdDSA,
        }
    }

    fn jwk(&self) -> Value {
        let raw = self.pair.public_key_raw();
        match self.alg {
            Algorithm::ES256 => json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
            }),
            _ => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": self.kid, "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(raw),
            }),
        }
    }

    fn encoding(&self) -> EncodingKey {
        let der = self.pair.serialize_der();
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(&der),
            _ => EncodingKey::from_ed_der(&der),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding()).unwrap()
    }
}

fn claims(issuer: &str) -> Value {
    json!({
        "iss": issuer, "aud": [AUD, "other"], "sub": "u-123",
        "preferred_username": "alice", "scope": "openid mail", "azp": "thunderbird",
        "exp": now_secs() + 600, "iat": now_secs(),
    })
}

type Jwks = Arc<Mutex<(u16, Value)>>;

async fn serve(keys: &[&TestKey]) -> (FakeIdp, Jwks, String) {
    let jwks: Jwks = Arc::new(Mutex::new((
        200,
        json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}),
    )));
    let shared = Arc::clone(&jwks);
    let fake = FakeIdp::start(move |request| {
        let base = format!("http://{}", request.header("host").unwrap());
        match request.path.as_str() {
            "/.well-known/openid-configuration" => {
                Reply::ok(json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}))
            }
            "/jwks" => {
                let (status, body) = shared.lock().unwrap().clone();
                Reply::Json(status, body.to_string())
            }
            _ => Reply::Json(404, "{}".to_owned()),
        }
    })
    .await;
    let issuer = fake.url.trim_end_matches("/introspect").to_owned();
    (fake, jwks, issuer)
}

fn config(issuer: &str) -> JwtConfig {
    let mut config = JwtConfig::new(issuer, vec![AUD.to_owned()]);
    config.jwks_url = Some(format!("{issuer}/jwks"));
    config.require_typ = Some("at+jwt".to_owned());
    config
}

fn secret(s: String) -> SecretString {
    SecretString::from(s)
}

fn invalid<T: std::fmt::Debug>(result: Result<T, ValidationError>) -> InvalidReason {
    match result {
        Err(ValidationError::Invalid(reason)) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_tokens_give_identity() {
    let ec = TestKey::ec("ec1");
    let ed = TestKey::ed("ed1");
    let (fake, _, issuer) = serve(&[&ec, &ed]).await;
    let validator = JwtValidator::new(config(&issuer)).unwrap();

    let verified = validator
        .verify(&secret(ec.sign(&claims(&issuer))))
        .await
        .unwrap();
    assert_eq!(verified["preferred_username"], "alice");
    assert_eq!(verified["scope"], "openid mail");
    assert!(verified["exp"].is_u64());

    let mut c = claims(&issuer);
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["mail"]);
    c["client_id"] = json!("k9");
    let verified = validator.verify(&secret(ed.sign(&c))).await.unwrap();
    assert_eq!(verified["scp"], json!(["mail"]));
    assert_eq!(verified["client_id"], "k9");
    assert_eq!(fake.count(), 1, "one JWKS fetch for both keys");
    assert_eq!(validator.jwks_requests(), 1);
}

#[tokio::test]
async fn validator_caches_jwt_answers() {
    let ec = TestKey::ec("ec1");
    let (fake, _, issuer) = serve(&[&ec]).await;
    let mut issuer_config =
        validator::IssuerConfig::new("jwt", validator::Source::Jwt(config(&issuer)));
    issuer_config.policy = validator::Policy {
        required_scopes: vec!["mail".to_owned()],
        ..validator::Policy::with_claim("preferred_username")
    };
    let validator =
        validator::Validator::new(validator::ValidatorConfig::single(issuer_config)).unwrap();
    let token = secret(ec.sign(&claims(&issuer)));
    for _ in 0..3 {
        assert_eq!(validator.validate(&token).await.unwrap().user, "alice");
    }
    let forged = secret(TestKey::ec("ec1").sign(&claims(&issuer)));
    for _ in 0..2 {
        assert_eq!(
            validator.validate(&forged).await.unwrap_err(),
            ValidationError::Invalid(InvalidReason::BadSignature)
        );
    }
    let stats = validator.stats();
    assert_eq!((stats.cache_misses, stats.cache_hits), (2, 3));
    assert_eq!(stats.introspection_requests, 1, "one JWKS fetch");
    assert_eq!(fake.count(), 1);
}

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let ec = TestKey::ec("ec1");
    let (fake, _, issuer) = serve(&[&ec]).await;
    let mut config = config(&issuer);
    config.jwks_url = None;
    let validator = JwtValidator::new(config).unwrap();
    for _ in 0..2 {
        validator
            .verify(&secret(ec.sign(&claims(&issuer))))
            .await
            .unwrap();
    }
    let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/.well-known/openid-configuration", "/jwks"]);
}

#[tokio::test]
async fn forged_tokens_are_rejected() {
    let ec = TestKey::ec("ec1");
    let ed = TestKey::ed("ed1");
    let (_fake, _, issuer) = serve(&[&ec, &ed]).await;
    let validator = JwtValidator::new(config(&issuer)).unwrap();
    let check = |token: String| {
        let validator = &validator;
        async move { invalid(validator.verify(&secret(token)).await) }
    };
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims(&issuer);
        f(&mut c);
        c
    };

    // Same kid, another key.
    let impostor = TestKey::ec("ec1");
    assert_eq!(
        check(impostor.sign(&claims(&issuer))).await,
        InvalidReason::BadSignature
    );
    // Tampered payload.
    let good = ec.sign(&claims(&issuer));
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil =
        URL_SAFE_NO_PAD.encode(with(&|c| c["preferred_username"] = json!("root")).to_string());
    parts[1] = &evil;
    assert_eq!(check(parts.join(".")).await, InvalidReason::BadSignature);

    assert_eq!(
        check(ec.sign(&with(&|c| c["iss"] = json!("https://evil.example")))).await,
        InvalidReason::WrongIssuer
    );
    assert_eq!(
        check(ec.sign(&with(&|c| c["aud"] = json!("smtp.example")))).await,
        InvalidReason::WrongAudience
    );
    assert_eq!(
        check(ec.sign(&with(&|c| {
            c.as_object_mut().unwrap().remove("aud");
        })))
        .await,
        InvalidReason::WrongAudience
    );
    assert_eq!(
        check(ec.sign(&with(&|c| c["exp"] = json!(now_secs() - 120)))).await,
        InvalidReason::Expired
    );
    // Within the 60 s leeway.
    assert!(validator
        .verify(&secret(
            ec.sign(&with(&|c| c["exp"] = json!(now_secs() - 10)))
        ))
        .await
        .is_ok());
    assert!(matches!(
        check(ec.sign(&with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        })))
        .await,
        InvalidReason::Malformed { ref claim, .. } if claim == "exp"
    ));
    assert_eq!(
        check(ec.sign(&with(&|c| c["nbf"] = json!(now_secs() + 600)))).await,
        InvalidReason::NotYetValid
    );
    // Which claims name the user, and the scopes, are the policy's business (policy
    // tests); the JWT check hands every verified claim on.
    assert_eq!(
        check(ec.sign_as("nope", &claims(&issuer))).await,
        InvalidReason::UnknownKey
    );
    assert_eq!(
        check("not.a.jwt".to_owned()).await,
        InvalidReason::MalformedJwt
    );
    assert_eq!(check("abc".to_owned()).await, InvalidReason::MalformedJwt);

    // typ is required.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec1".to_owned());
    let plain = jsonwebtoken::encode(&header, &claims(&issuer), &ec.encoding()).unwrap();
    assert_eq!(check(plain).await, InvalidReason::WrongType);
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let ec = TestKey::ec("ec1");
    let ed = TestKey::ed("ed1");
    let (_fake, _, issuer) = serve(&[&ec, &ed]).await;
    let validator = JwtValidator::new(config(&issuer)).unwrap();
    let check = |token: String| {
        let validator = &validator;
        async move { invalid(validator.verify(&secret(token)).await) }
    };
    let hs = |alg: &str| InvalidReason::AlgorithmNotAllowed {
        alg: alg.to_owned(),
    };

    // HS256 with the public key (raw point, and its JWK JSON) as the HMAC secret.
    for secret_bytes in [
        ec.pair.public_key_raw().to_vec(),
        ec.jwk().to_string().into_bytes(),
    ] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("ec1".to_owned());
        header.typ = Some("at+jwt".to_owned());
        let forged = jsonwebtoken::encode(
            &header,
            &claims(&issuer),
            &EncodingKey::from_secret(&secret_bytes),
        )
        .unwrap();
        assert_eq!(check(forged).await, hs("HS256"));
    }

    // alg none, with and without a signature.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"ec1","typ":"at+jwt"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&issuer).to_string());
    assert_eq!(check(format!("{header}.{payload}.")).await, hs("none"));
    assert_eq!(check(format!("{header}.{payload}.AAAA")).await, hs("none"));

    // An Ed25519 signature presented under the EC key's kid.
    assert_eq!(
        check(ed.sign_as("ec1", &claims(&issuer))).await,
        hs("EdDSA")
    );

    // An allowed algorithm that is not configured.
    let mut config = config(&issuer);
    config.allowed_algorithms = vec!["EdDSA".to_owned()];
    let only_ed = JwtValidator::new(config).unwrap();
    assert_eq!(
        invalid(only_ed.verify(&secret(ec.sign(&claims(&issuer)))).await),
        hs("ES256")
    );
}

#[tokio::test]
async fn key_rotation_refetches_once() {
    let old = TestKey::ec("k1");
    let new = TestKey::ed("k2");
    let (fake, jwks, issuer) = serve(&[&old]).await;
    let mut config = config(&issuer);
    config.jwks_refetch_interval = Duration::ZERO;
    let validator = JwtValidator::new(config).unwrap();

    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
    assert_eq!(fake.count(), 1);

    jwks.lock().unwrap().1 = json!({"keys": [old.jwk(), new.jwk()]});
    let token = new.sign(&claims(&issuer));
    validator.verify(&secret(token.clone())).await.unwrap();
    assert_eq!(fake.count(), 2, "exactly one extra fetch");
    validator.verify(&secret(token)).await.unwrap();
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn unknown_kid_refetch_is_rate_limited() {
    let old = TestKey::ec("k1");
    let new = TestKey::ec("k2");
    let (fake, jwks, issuer) = serve(&[&old]).await;
    let validator = JwtValidator::new(config(&issuer)).unwrap(); // default 30 s
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
    jwks.lock().unwrap().1 = json!({"keys": [old.jwk(), new.jwk()]});
    for _ in 0..3 {
        assert_eq!(
            invalid(validator.verify(&secret(new.sign(&claims(&issuer)))).await),
            InvalidReason::UnknownKey
        );
    }
    assert_eq!(fake.count(), 1, "no refetch within the interval");
}

#[tokio::test]
async fn concurrent_unknown_kid_fetches_once() {
    let old = TestKey::ec("k1");
    let new = TestKey::ec("k2");
    let (fake, jwks, issuer) = serve(&[&old]).await;
    let mut config = config(&issuer);
    config.jwks_refetch_interval = Duration::ZERO;
    let validator = Arc::new(JwtValidator::new(config).unwrap());

    // Concurrent first use: one fetch.
    let mut set = JoinSet::new();
    for _ in 0..16 {
        let (v, t) = (Arc::clone(&validator), old.sign(&claims(&issuer)));
        set.spawn(async move { v.verify(&secret(t)).await });
    }
    while let Some(result) = set.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(fake.count(), 1);

    // Concurrent unknown kid: one more fetch.
    jwks.lock().unwrap().1 = json!({"keys": [old.jwk(), new.jwk()]});
    let mut set = JoinSet::new();
    for _ in 0..16 {
        let (v, t) = (Arc::clone(&validator), new.sign(&claims(&issuer)));
        set.spawn(async move { v.verify(&secret(t)).await });
    }
    while let Some(result) = set.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn failed_refetch_keeps_known_keys() {
    let old = TestKey::ec("k1");
    let (fake, jwks, issuer) = serve(&[&old]).await;
    let mut config = config(&issuer);
    config.jwks_refetch_interval = Duration::ZERO;
    let validator = JwtValidator::new(config).unwrap();
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();

    jwks.lock().unwrap().0 = 503;
    let result = validator
        .verify(&secret(old.sign_as("k9", &claims(&issuer))))
        .await;
    assert!(
        matches!(result, Err(ValidationError::Unavailable(_))),
        "{result:?}"
    );
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
    assert_eq!(fake.count(), 2);
}

#[tokio::test]
async fn a_malformed_jwks_is_an_outage_and_keeps_the_known_keys() {
    let old = TestKey::ec("k1");
    let (fake, jwks, issuer) = serve(&[&old]).await;
    let mut config = config(&issuer);
    config.jwks_refetch_interval = Duration::ZERO;
    let validator = JwtValidator::new(config).unwrap();
    let malformed = [
        json!({"keys": "k1"}),
        json!({"keys": [7]}),
        json!({"keys": []}),
        json!({"keys": [{"kty": "unknown", "kid": "k1"}]}),
        json!({"jwks": [old.jwk()]}),
    ];
    // At first use: "try again later", never "wrong token".
    for body in &malformed {
        jwks.lock().unwrap().1 = body.clone();
        let result = validator.verify(&secret(old.sign(&claims(&issuer)))).await;
        match result {
            Err(ValidationError::Unavailable(why)) => {
                assert_eq!(why.kind, UnavailableKind::BadAnswer, "{body}: {why}");
            }
            other => panic!("{body}: {other:?}"),
        }
    }
    jwks.lock().unwrap().1 = json!({"keys": [old.jwk()]});
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
    // Once keys are known, a malformed refetch (for an unknown kid) keeps them.
    let fetched = fake.count();
    for body in malformed {
        jwks.lock().unwrap().1 = body.clone();
        let result = validator
            .verify(&secret(old.sign_as("k9", &claims(&issuer))))
            .await;
        assert!(
            result.as_ref().is_err_and(ValidationError::is_unavailable),
            "{body}: {result:?}"
        );
        validator
            .verify(&secret(old.sign(&claims(&issuer))))
            .await
            .unwrap();
    }
    assert_eq!(fake.count(), fetched + 5);
}

#[tokio::test]
async fn jwks_down_at_first_use_is_unavailable() {
    let old = TestKey::ec("k1");
    let (_fake, jwks, issuer) = serve(&[&old]).await;
    jwks.lock().unwrap().0 = 500;
    let validator = JwtValidator::new(config(&issuer)).unwrap();
    let result = validator.verify(&secret(old.sign(&claims(&issuer)))).await;
    assert!(
        result.as_ref().is_err_and(ValidationError::is_unavailable),
        "{result:?}"
    );
    // Recovers as soon as the JWKS is back, even within the refetch interval.
    jwks.lock().unwrap().0 = 200;
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
}

#[tokio::test]
async fn hs256_is_accepted_only_with_the_configured_shared_secret() {
    const SHARED: &str = "a-shared-secret-of-at-least-32-bytes!";
    let ec = TestKey::ec("ec1");
    let (fake, _, issuer) = serve(&[&ec]).await;
    let mut config = config(&issuer);
    config.allowed_algorithms = vec!["HS256".to_owned(), "ES256".to_owned()];
    config.hmac_secret = Some(SecretString::from(SHARED));
    let validator = JwtValidator::new(config).unwrap();

    let sign = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, &claims(&issuer), &EncodingKey::from_secret(secret)).unwrap()
    };
    let verified = validator
        .verify(&secret(sign(SHARED.as_bytes())))
        .await
        .unwrap();
    assert_eq!(verified["iss"], json!(issuer));
    assert_eq!(fake.count(), 0, "no JWKS needed for a shared secret");

    assert_eq!(
        invalid(
            validator
                .verify(&secret(sign(b"another-secret-also-32-bytes-long!!")))
                .await
        ),
        InvalidReason::BadSignature
    );
    // The public key as HMAC secret is still refused: the shared secret is the only key.
    assert_eq!(
        invalid(
            validator
                .verify(&secret(sign(ec.pair.public_key_raw())))
                .await
        ),
        InvalidReason::BadSignature
    );
    // Asymmetric tokens still verify against the JWKS.
    validator
        .verify(&secret(ec.sign(&claims(&issuer))))
        .await
        .unwrap();
}

/// A JWKS endpoint whose keys and `Cache-Control` the test sets.
async fn serve_cached(keys: &[&TestKey], cache_control: &str) -> (FakeIdp, Jwks, String) {
    let jwks: Jwks = Arc::new(Mutex::new((
        200,
        json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}),
    )));
    let (shared, cache_control) = (Arc::clone(&jwks), cache_control.to_owned());
    let fake = FakeIdp::start(move |request| match request.path.as_str() {
        "/jwks" => Reply::Cached(shared.lock().unwrap().1.to_string(), cache_control.clone()),
        _ => Reply::Json(404, "{}".to_owned()),
    })
    .await;
    let issuer = fake.url.trim_end_matches("/introspect").to_owned();
    (fake, jwks, issuer)
}

#[tokio::test]
async fn jwks_is_refetched_when_its_max_age_has_passed_and_withdrawn_keys_stop_working() {
    let old = TestKey::ec("old");
    let new = TestKey::ec("new");
    // max-age=0: stale at once (the refetch interval, 0 here, is the lower bound).
    let (fake, jwks, issuer) = serve_cached(&[&old], "public, max-age=0").await;
    let mut config = config(&issuer);
    config.jwks_refetch_interval = Duration::ZERO;
    let validator = JwtValidator::new(config).unwrap();
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
    assert_eq!(fake.count(), 1);

    // The issuer withdraws `old`: the next token naming it makes the stale JWKS refetch.
    jwks.lock().unwrap().1 = json!({"keys": [new.jwk()]});
    assert_eq!(
        invalid(validator.verify(&secret(old.sign(&claims(&issuer)))).await),
        InvalidReason::UnknownKey
    );
    assert_eq!(fake.count(), 2);
    validator
        .verify(&secret(new.sign(&claims(&issuer))))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_fresh_jwks_is_not_asked_again_for_a_known_key() {
    let old = TestKey::ec("old");
    let (fake, jwks, issuer) = serve_cached(&[&old], "max-age=3600").await;
    let mut config = config(&issuer);
    config.jwks_refetch_interval = Duration::ZERO;
    let validator = JwtValidator::new(config).unwrap();
    for _ in 0..3 {
        validator
            .verify(&secret(old.sign(&claims(&issuer))))
            .await
            .unwrap();
    }
    jwks.lock().unwrap().1 = json!({"keys": []});
    validator
        .verify(&secret(old.sign(&claims(&issuer))))
        .await
        .unwrap();
    assert_eq!(
        fake.count(),
        1,
        "known keys are used until their max-age passes"
    );
}

/// A fixed 2048-bit RSA test key (made with openssl for these tests only): its PKCS#1 DER,
/// its public half as PEM (what an attacker uses as an HMAC secret), and its JWK.
const RSA_DER: &[u8] = include_bytes!("fixtures/rsa2048-pkcs1.der");
const RSA_PUBLIC_PEM: &[u8] = include_bytes!("fixtures/rsa2048-public.pem");
const RSA_JWK: &str = include_str!("fixtures/rsa2048-jwk.json");

#[tokio::test]
async fn rs256_verifies_and_rs256_to_hs256_confusion_is_refused() {
    let (_fake, jwks, issuer) = serve_cached(&[], "max-age=3600").await;
    let jwk: Value = serde_json::from_str(RSA_JWK).unwrap();
    jwks.lock().unwrap().1 = json!({ "keys": [jwk] });
    let sign = |alg: Algorithm, key: &EncodingKey| {
        let mut header = Header::new(alg);
        header.kid = Some("rsa1".to_owned());
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, &claims(&issuer), key).unwrap()
    };
    let rs256 = sign(Algorithm::RS256, &EncodingKey::from_rsa_der(RSA_DER));
    let hs256 = sign(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC_PEM));

    let validator = JwtValidator::new(config(&issuer)).unwrap();
    let verified = validator.verify(&secret(rs256.clone())).await.unwrap();
    assert_eq!(verified["preferred_username"], "alice");
    assert_eq!(
        invalid(validator.verify(&secret(hs256.clone())).await),
        InvalidReason::AlgorithmNotAllowed {
            alg: "HS256".to_owned()
        }
    );

    // Even where HS256 is allowed (a shared secret is configured), the RSA public key is no
    // HMAC key: only the shared secret is.
    let mut config = config(&issuer);
    config.allowed_algorithms = vec!["RS256".to_owned(), "HS256".to_owned()];
    config.hmac_secret = Some(SecretString::from("a-shared-secret-of-at-least-32-bytes!"));
    let validator = JwtValidator::new(config).unwrap();
    validator.verify(&secret(rs256)).await.unwrap();
    assert_eq!(
        invalid(validator.verify(&secret(hs256)).await),
        InvalidReason::BadSignature
    );
}

#[tokio::test]
async fn every_supported_asymmetric_algorithm_verifies() {
    let (_fake, jwks, issuer) = serve_cached(&[], "max-age=3600").await;
    // The RSA key without its own `alg`, so one key serves RS* and PS*.
    let mut rsa: Value = serde_json::from_str(RSA_JWK).unwrap();
    rsa.as_object_mut().unwrap().remove("alg");
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let raw = p384.public_key_raw();
    let ec384 = json!({
        "kty": "EC", "crv": "P-384", "kid": "ec384", "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&raw[1..49]), "y": URL_SAFE_NO_PAD.encode(&raw[49..97]),
    });
    let ec = TestKey::ec("ec1");
    let ed = TestKey::ed("ed1");
    jwks.lock().unwrap().1 = json!({ "keys": [rsa, ec384, ec.jwk(), ed.jwk()] });
    let validator = JwtValidator::new(config(&issuer)).unwrap();

    let rsa_key = EncodingKey::from_rsa_der(RSA_DER);
    let ec384_key = EncodingKey::from_ec_der(&p384.serialize_der());
    let table = [
        (Algorithm::RS256, "rsa1", &rsa_key),
        (Algorithm::RS384, "rsa1", &rsa_key),
        (Algorithm::RS512, "rsa1", &rsa_key),
        (Algorithm::PS256, "rsa1", &rsa_key),
        (Algorithm::PS384, "rsa1", &rsa_key),
        (Algorithm::PS512, "rsa1", &rsa_key),
        (Algorithm::ES384, "ec384", &ec384_key),
    ];
    for (alg, kid, key) in table {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        let token = jsonwebtoken::encode(&header, &claims(&issuer), key).unwrap();
        let verified = validator.verify(&secret(token)).await;
        assert!(verified.is_ok(), "{alg:?}: {verified:?}");
    }
    for token in [ec.sign(&claims(&issuer)), ed.sign(&claims(&issuer))] {
        validator.verify(&secret(token)).await.unwrap();
    }
    // An ES256 header naming the P-384 key does not fit it.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("ec384".to_owned());
    header.typ = Some("at+jwt".to_owned());
    let token = jsonwebtoken::encode(&header, &claims(&issuer), &ec.encoding()).unwrap();
    assert_eq!(
        invalid(validator.verify(&secret(token)).await),
        InvalidReason::AlgorithmNotAllowed {
            alg: "ES256".to_owned()
        }
    );
}
