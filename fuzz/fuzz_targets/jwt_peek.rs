//! What the validator reads from a JWT before its signature is checked: the issuer peek
//! that routes a token to an issuer (`peek_issuer`), the JOSE header the key and algorithm
//! are chosen by, and `JwtValidator::verify` up to and through the signature check (with a
//! shared HMAC secret, so that nothing is fetched and the target can sign as the issuer).
//!
//! Checks: no panic and no wait; the peeks read exactly what the token's parts say (a
//! reference reading with `base64` and `serde_json`); and `verify` accepts a token only if
//! this target signed it, with an allowed algorithm, and its claims pass the documented
//! checks (`iss`, `aud`, `exp`, the header's `typ` and `crit`).
//!
//! Input: octet 0 flags (bit 0: sign the built token correctly, bit 1: the validator
//! demands `typ` `at+jwt`, bits 2–3: the algorithm signed with when the header names none
//! of HS256/384/512), then a header text, a NUL, and a claims text. The token built from
//! them is checked, and so is the input itself read as a token.
#![no_main]

use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use sasl::SecretString;
use serde_json::{Map, Value};
use validator::fuzzing::{jwt_header, peek_issuer};
use validator::{JwtConfig, JwtValidator};

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "mail";
const SECRET: &str = "a shared secret of at least 32 octets, for HS512 too";
const LEEWAY: Duration = Duration::from_secs(60);
const HMAC: [&str; 3] = ["HS256", "HS384", "HS512"];

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let demand_typ = flags & 2 != 0;
    let raw = String::from_utf8_lossy(rest);
    peeks_agree(&raw);
    if let Ok(claims) = verify(demand_typ, &raw) {
        panic!("an unsigned token verified: {claims:?}");
    }

    let (header, claims) = match rest.iter().position(|&b| b == 0) {
        Some(nul) => (&rest[..nul], &rest[nul + 1..]),
        None => (rest, &b"{}"[..]),
    };
    let signed = flags & 1 != 0;
    let (token, alg) = build(header, claims, signed, flags >> 2);
    peeks_agree(&token);
    assert_eq!(peek_issuer(&token), reference_issuer(claims));
    assert_eq!(jwt_header(&token), json_object(header));
    if let Ok(verified) = verify(demand_typ, &token) {
        accepted_rightly(demand_typ, header, claims, signed, alg, &verified);
    }
});

/// The validators, built once: one demanding `typ` `at+jwt`, one not.
fn validator(demand_typ: bool) -> &'static JwtValidator {
    static PLAIN: OnceLock<JwtValidator> = OnceLock::new();
    static TYPED: OnceLock<JwtValidator> = OnceLock::new();
    let cell = if demand_typ { &TYPED } else { &PLAIN };
    cell.get_or_init(|| {
        let mut config = JwtConfig::new(ISSUER, vec![AUDIENCE.to_owned()]);
        config.allowed_algorithms = HMAC.map(str::to_owned).to_vec();
        config.hmac_secret = Some(SecretString::from(SECRET));
        config.leeway = LEEWAY;
        config.require_typ = demand_typ.then(|| "at+jwt".to_owned());
        JwtValidator::new(config).expect("a valid configuration")
    })
}

/// `verify`, which with an HMAC secret must decide without waiting for anything.
fn verify(demand_typ: bool, token: &str) -> Result<Map<String, Value>, validator::ValidationError> {
    let token = SecretString::from(token.to_owned());
    let future = validator(demand_typ).verify(&token);
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(result) => result,
        Poll::Pending => panic!("verify waited although no key needs fetching"),
    }
}

/// A JSON object, as `serde_json` reads it.
fn json_object(text: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn reference_issuer(claims: &[u8]) -> Option<String> {
    match json_object(claims)?.remove("iss") {
        Some(Value::String(iss)) => Some(iss),
        _ => None,
    }
}

/// The peeks read the token's three parts and nothing else.
fn peeks_agree(token: &str) {
    let parts: Vec<&str> = token.split('.').collect();
    let part = |i: usize| {
        (parts.len() == 3)
            .then(|| URL_SAFE_NO_PAD.decode(parts[i]).ok())
            .flatten()
    };
    let issuer = part(1).and_then(|claims| reference_issuer(&claims));
    assert_eq!(peek_issuer(token), issuer, "issuer peek");
    let header = part(0).and_then(|header| json_object(&header));
    assert_eq!(jwt_header(token), header, "header peek");
}

/// `header.claims.signature`, signed with the header's HMAC algorithm (else the one the
/// flags pick) when `signed`, else with a signature that is one bit off.
fn build(header: &[u8], claims: &[u8], signed: bool, pick: u8) -> (String, Algorithm) {
    let named = json_object(header)
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned))
        .filter(|alg| HMAC.contains(&alg.as_str()));
    let alg = match named.as_deref().unwrap_or(HMAC[usize::from(pick % 3)]) {
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        _ => Algorithm::HS256,
    };
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, alg).expect("HMAC signs");
    let signature = if signed {
        signature
    } else {
        let mut raw = URL_SAFE_NO_PAD.decode(&signature).expect("its own base64");
        raw[0] ^= 1;
        URL_SAFE_NO_PAD.encode(raw)
    };
    (format!("{input}.{signature}"), alg)
}

/// A token `verify` accepted: this target signed it with the algorithm its header names,
/// and its header and claims pass every check the validator documents.
fn accepted_rightly(
    demand_typ: bool,
    header: &[u8],
    claims: &[u8],
    signed: bool,
    alg: Algorithm,
    verified: &Map<String, Value>,
) {
    assert!(signed, "a token with a bad signature verified");
    let header = json_object(header).expect("a verified header is a JSON object");
    let named = header.get("alg").and_then(Value::as_str);
    assert_eq!(
        named,
        Some(format!("{alg:?}").as_str()),
        "signed with another alg"
    );
    assert!(!header.contains_key("crit"), "crit accepted");
    if demand_typ {
        let typ = header
            .get("typ")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bare = typ.to_ascii_lowercase();
        let bare = bare.strip_prefix("application/").unwrap_or(&bare);
        assert_eq!(bare, "at+jwt", "typ {typ:?} accepted");
    }
    let claims = json_object(claims).expect("verified claims are a JSON object");
    assert_eq!(&claims, verified, "claims changed");
    assert_eq!(claims.get("iss").and_then(Value::as_str), Some(ISSUER));
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(AUDIENCE)),
        _ => false,
    };
    assert!(audience_ok, "aud {:?} accepted", claims.get("aud"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    let exp = claims.get("exp").and_then(Value::as_f64);
    assert!(
        exp.is_some_and(|exp| exp + LEEWAY.as_secs_f64() >= now),
        "exp {exp:?} accepted"
    );
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_f64) {
        assert!(nbf - LEEWAY.as_secs_f64() <= now, "nbf {nbf} accepted");
    }
}
