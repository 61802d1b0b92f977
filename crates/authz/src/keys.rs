//! Signing keys: ES256 (P-256) key pairs made by ring, kept in the store, parsed once into a
//! cache so that checking a token never reads a key from the store.
//!
//! Rotation: the newest unretired key signs. After `signing_key_lifetime` a new key takes
//! over and the old one is retired; a retired key stays published (and trusted) until every
//! token it can have signed has expired, then it is deleted.
//!
//! Several instances may share one store (PostgreSQL). What each one caches, and for how long:
//! - a token signed by a key this instance has not read yet (another instance rotated)
//!   makes it re-read the store before refusing, at most once per [`UNKNOWN_KID_RELOAD`] so
//!   that garbage tokens cannot turn into a query each: such a token verifies at once, unless
//!   another unknown key was looked up within the same second;
//! - before signing, keys read longer than [`SIGNING_FRESHNESS`] ago are re-read, so an
//!   instance signs at most that long with a key another instance retired (harmless: a
//!   retired key stays published and trusted, [`RETENTION_LEEWAY`] covers it);
//! - the published JWKS is re-read when older than [`PUBLISH_FRESHNESS`]: a key another
//!   instance made appears in every instance's JWKS within that bound;
//! - a rotation is one atomic store step ([`Store::rotate_signing_key`]): of instances
//!   rotating at once, one makes the new key and the others adopt it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::TokenRejection;
use crate::store::{KeyRecord, Store, StoreError, UnixTime};

/// The one algorithm: compact tokens, fast verification, supported by every JOSE library.
pub(crate) const ALGORITHM: &str = "ES256";

/// Before signing, keys read longer ago than this are re-read, so that an instance never
/// signs for long with a key another instance retired.
const SIGNING_FRESHNESS: UnixTime = 60;

/// A token naming an unknown `kid` makes the cache re-read the store at most this often, so
/// that garbage tokens cannot turn into a store query each.
const UNKNOWN_KID_RELOAD: UnixTime = 1;

/// The JWKS is served from keys read at most this long ago.
const PUBLISH_FRESHNESS: UnixTime = 5;

/// A retired key is deleted this long after the last token it signed can have expired:
/// covers [`SIGNING_FRESHNESS`] (a stale instance signing a little longer) and clock skew
/// between instances.
const RETENTION_LEEWAY: UnixTime = 300;

/// One parsed key.
struct LoadedKey {
    kid: String,
    /// Public point coordinates, base64url (JWK `x`, `y`).
    x: String,
    y: String,
    decoding: DecodingKey,
    /// Only for the key that signs (the newest unretired one).
    encoding: Option<EncodingKey>,
}

/// What was read from the store.
struct Loaded {
    /// Newest first; the first one, when it has an encoding key, signs.
    keys: Vec<LoadedKey>,
    loaded_at: UnixTime,
}

/// The signing keys, parsed, behind a lock that is only written when they are re-read.
pub(crate) struct KeyRing {
    loaded: RwLock<Loaded>,
    /// When a token with an unknown `kid` last made us re-read the store.
    last_unknown_reload: AtomicI64,
    /// Header checks for every token; `exp`, `iss` and `aud` are checked by the caller
    /// against the server's own clock and issuer.
    validation: Validation,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let kids: Vec<&str> = loaded.keys.iter().map(|key| key.kid.as_str()).collect();
        f.debug_struct("KeyRing")
            .field("kids", &kids)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Reads the keys, making the first one when none can sign.
    pub(crate) fn load(
        store: &dyn Store,
        rng: &SystemRandom,
        now: UnixTime,
    ) -> Result<Self, StoreError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        let ring = KeyRing {
            loaded: RwLock::new(Loaded {
                keys: Vec::new(),
                loaded_at: now,
            }),
            // Due at once: a token from an instance that rotated just now must not fail.
            last_unknown_reload: AtomicI64::new(now.saturating_sub(UNKNOWN_KID_RELOAD)),
            validation,
        };
        ring.reload(store, now)?;
        ring.ensure_signer(store, rng, now)?;
        Ok(ring)
    }

    /// Makes a signing key when none can sign: unless another instance made one meanwhile;
    /// and if an unretired key this build cannot use is in the way, one that retires it.
    fn ensure_signer(
        &self,
        store: &dyn Store,
        rng: &SystemRandom,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        if self.can_sign() {
            return Ok(());
        }
        if !store.rotate_signing_key(&generate(rng, now)?, UnixTime::MIN)? {
            self.reload(store, now)?;
            if self.can_sign() {
                return Ok(());
            }
            store.rotate_signing_key(&generate(rng, now)?, UnixTime::MAX)?;
        }
        self.reload(store, now)
    }

    fn can_sign(&self) -> bool {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        loaded
            .keys
            .first()
            .is_some_and(|key| key.encoding.is_some())
    }

    /// Re-reads every key from the store.
    pub(crate) fn reload(&self, store: &dyn Store, now: UnixTime) -> Result<(), StoreError> {
        let records = store.signing_keys()?;
        let mut keys = Vec::with_capacity(records.len());
        let mut signer_found = false;
        for record in &records {
            match parse(record) {
                Ok(mut key) => {
                    // The newest unretired key signs; older unretired ones (two instances
                    // rotating at once) only verify until the next rotation retires them.
                    if record.retired_at.is_none() && !signer_found {
                        signer_found = true;
                        key.encoding = Some(EncodingKey::from_ec_der(&record.private_pkcs8));
                        keys.insert(0, key);
                    } else {
                        keys.push(key);
                    }
                }
                Err(reason) => {
                    tracing::error!(kid = %record.kid, reason, "unusable signing key in the store");
                }
            }
        }
        let mut loaded = self.loaded.write().unwrap_or_else(PoisonError::into_inner);
        *loaded = Loaded {
            keys,
            loaded_at: now,
        };
        Ok(())
    }

    /// Signs `claims` with the current key; header `{alg: ES256, typ, kid}`.
    pub(crate) fn sign<T: Serialize>(
        &self,
        store: &dyn Store,
        rng: &SystemRandom,
        now: UnixTime,
        typ: &str,
        claims: &T,
    ) -> Result<String, StoreError> {
        let stale = {
            let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
            now - loaded.loaded_at >= SIGNING_FRESHNESS || now < loaded.loaded_at
        };
        if stale {
            self.reload(store, now)?;
        }
        // Every key was retired under us (or deleted by hand): make one rather than fail.
        self.ensure_signer(store, rng, now)?;
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let Some((key, encoding)) = loaded
            .keys
            .first()
            .and_then(|key| Some((key, key.encoding.as_ref()?)))
        else {
            return Err(StoreError::Database("no signing key".to_owned()));
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, encoding)
            .map_err(|e| StoreError::Database(format!("signing a token failed: {e}")))
    }

    /// Verifies a token's signature with the key its `kid` names and checks its header
    /// (`alg` ES256, `typ`); the claims, unchecked.
    pub(crate) fn verify<T: DeserializeOwned>(
        &self,
        store: &dyn Store,
        now: UnixTime,
        token: &str,
        typ: &str,
    ) -> Result<T, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::NotOurs)?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(typ) {
            return Err(TokenRejection::NotOurs);
        }
        let Some(kid) = header.kid else {
            return Err(TokenRejection::NotOurs);
        };
        if let Some(result) = self.verify_with(&kid, token) {
            return result;
        }
        // Another instance may have made a key we have not read yet.
        let last = self.last_unknown_reload.load(Ordering::Relaxed);
        let due = now - last >= UNKNOWN_KID_RELOAD || now < last;
        if !due
            || self
                .last_unknown_reload
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Err(TokenRejection::NotOurs);
        }
        self.reload(store, now)
            .map_err(|_| TokenRejection::Unavailable)?;
        self.verify_with(&kid, token)
            .unwrap_or(Err(TokenRejection::NotOurs))
    }

    /// `None` when no key has this `kid`.
    fn verify_with<T: DeserializeOwned>(
        &self,
        kid: &str,
        token: &str,
    ) -> Option<Result<T, TokenRejection>> {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let key = loaded.keys.iter().find(|key| key.kid == kid)?;
        Some(
            jsonwebtoken::decode::<T>(token, &key.decoding, &self.validation)
                .map(|data| data.claims)
                .map_err(|_| TokenRejection::NotOurs),
        )
    }

    /// The JWKS document: every key in the store (current and retired-but-live).
    pub(crate) fn jwks(&self) -> serde_json::Value {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        let keys: Vec<serde_json::Value> = loaded
            .keys
            .iter()
            .map(|key| {
                serde_json::json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": key.x,
                    "y": key.y,
                    "kid": key.kid,
                    "alg": ALGORITHM,
                    "use": "sig",
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Whether the cache is older than [`PUBLISH_FRESHNESS`] (for callers that want to
    /// publish what other instances made).
    pub(crate) fn is_stale(&self, now: UnixTime) -> bool {
        let loaded = self.loaded.read().unwrap_or_else(PoisonError::into_inner);
        now - loaded.loaded_at >= PUBLISH_FRESHNESS || now < loaded.loaded_at
    }

    /// Makes a new key when the current one is older than `key_lifetime` (retiring every
    /// other unretired key) unless another instance just did, deletes retired keys whose
    /// tokens have all expired, and re-reads.
    pub(crate) fn rotate(
        &self,
        store: &dyn Store,
        rng: &SystemRandom,
        now: UnixTime,
        key_lifetime: Duration,
        token_lifetime: Duration,
    ) -> Result<(), StoreError> {
        let records = store.signing_keys()?;
        let current = records
            .iter()
            .find(|record| record.retired_at.is_none() && parse(record).is_ok());
        let lifetime = seconds(key_lifetime);
        match current {
            Some(record) if now.saturating_sub(record.created_at) < lifetime => {
                // Unretired keys older than the signer (made by hand, or by instances that
                // rotated before rotation was one step) only verify: retire them.
                for other in records
                    .iter()
                    .filter(|r| r.retired_at.is_none() && r.kid != record.kid)
                {
                    store.retire_signing_key(&other.kid, now)?;
                }
            }
            _ => {
                // The new key goes in and the old ones retire in one step: never a moment
                // without a signer, and one new key however many instances rotate now.
                let fresh = generate(rng, now)?;
                if store.rotate_signing_key(&fresh, now.saturating_sub(lifetime))? {
                    tracing::info!(kid = %fresh.kid, "new signing key");
                } else {
                    tracing::debug!("another instance made the new signing key");
                }
            }
        }
        let keep = seconds(token_lifetime).saturating_add(RETENTION_LEEWAY);
        for record in &records {
            if let Some(retired_at) = record.retired_at {
                if now >= retired_at.saturating_add(keep) {
                    store.delete_signing_key(&record.kid)?;
                    tracing::info!(kid = %record.kid, "retired signing key deleted");
                }
            }
        }
        self.reload(store, now)
    }
}

fn seconds(duration: Duration) -> UnixTime {
    UnixTime::try_from(duration.as_secs()).unwrap_or(UnixTime::MAX)
}

/// Characters of the RFC 7638 thumbprint kept as the `kid`: 96 bits tell apart the few
/// keys a server ever holds at once, and the 27 characters saved are 36 octets of every
/// token (neomutt refuses tokens over 510 octets).
const KID_LENGTH: usize = 16;

/// A new P-256 key; its `kid` is the start of its RFC 7638 thumbprint.
fn generate(rng: &SystemRandom, now: UnixTime) -> Result<KeyRecord, StoreError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| StoreError::Database("generating a signing key failed".to_owned()))?;
    let mut record = KeyRecord {
        kid: String::new(),
        algorithm: ALGORITHM.to_owned(),
        private_pkcs8: pkcs8.as_ref().to_vec(),
        created_at: now,
        retired_at: None,
    };
    let parsed = parse(&record).map_err(|reason| StoreError::Database(reason.to_owned()))?;
    let mut kid = thumbprint(&parsed.x, &parsed.y);
    kid.truncate(KID_LENGTH);
    record.kid = kid;
    Ok(record)
}

/// Parses a stored key; the reason when it cannot be used.
fn parse(record: &KeyRecord) -> Result<LoadedKey, &'static str> {
    if record.algorithm != ALGORITHM {
        return Err("not an ES256 key");
    }
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &record.private_pkcs8,
        &SystemRandom::new(),
    )
    .map_err(|_| "not a P-256 PKCS#8 key")?;
    // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = pair.public_key().as_ref();
    let (Some(x), Some(y)) = (point.get(1..33), point.get(33..65)) else {
        return Err("unexpected public key encoding");
    };
    Ok(LoadedKey {
        kid: record.kid.clone(),
        x: URL_SAFE_NO_PAD.encode(x),
        y: URL_SAFE_NO_PAD.encode(y),
        decoding: DecodingKey::from_ec_der(point),
        encoding: None,
    })
}

/// RFC 7638 JWK thumbprint: SHA-256 of the required members in lexicographic order.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TokenRejection;
    use crate::testing::{Harness, LOOPBACK};

    fn header(jwt: &str) -> Header {
        jsonwebtoken::decode_header(jwt).unwrap()
    }

    fn kids(jwks: &serde_json::Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| key["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn access_tokens_carry_the_rfc_9068_header() {
        let h = Harness::new("");
        let tokens = h.tokens_for("alice", "mail-app", LOOPBACK);
        let access = header(&tokens.access_token);
        assert_eq!(access.alg, Algorithm::ES256);
        assert_eq!(access.typ.as_deref(), Some("at+jwt"));
        let jwks = h.server.jwks();
        assert_eq!(kids(&jwks), [access.kid.clone().unwrap()]);
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert_eq!(key["alg"], "ES256");
        assert_eq!(key["use"], "sig");
        assert!(key.get("d").is_none(), "never the private part");
        // The kid is the start of the RFC 7638 thumbprint of the published key.
        let kid = thumbprint(key["x"].as_str().unwrap(), key["y"].as_str().unwrap());
        assert_eq!(access.kid.as_deref(), Some(&kid[..KID_LENGTH]));
        assert_eq!(
            header(tokens.id_token.as_deref().unwrap()).typ.as_deref(),
            Some("JWT")
        );
    }

    #[test]
    fn an_access_token_fits_the_smallest_client_buffer() {
        // neomutt (Debian 12) refuses a token over 510 octets. `bearergate token` asks for the
        // mail scope and a refresh token under a short client id; a long mailbox name too.
        let h = Harness::new("");
        let scope = format!("{} offline_access", crate::scope::MAIL);
        let request = crate::testing::pkce_request("bearergate", LOOPBACK, &scope);
        let code = h.code_for("alice.longer-name@mail.example.com", &request);
        let exchange = crate::testing::code_exchange(&code, LOOPBACK, crate::testing::VERIFIER);
        let tokens = h
            .server
            .token(&exchange, &crate::testing::public("bearergate"))
            .unwrap();
        let size = tokens.access_token.len();
        assert!(
            size <= 510,
            "access token of {size} octets: {}",
            tokens.access_token
        );
        assert!(tokens.scope.contains("offline_access"), "{}", tokens.scope);
    }

    /// `header.payload.signature` of a JWT, base64url-decoded header and payload as JSON.
    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value, String) {
        let mut pieces = jwt.split('.');
        let mut json = || {
            let bytes = URL_SAFE_NO_PAD.decode(pieces.next().unwrap()).unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        let (header, payload) = (json(), json());
        (header, payload, pieces.next().unwrap().to_owned())
    }

    fn encode_part(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn forged_tokens_are_not_ours() {
        let h = Harness::new("");
        let tokens = h.tokens_for("alice", "mail-app", LOOPBACK);
        let (header, payload, signature) = parts(&tokens.access_token);
        let not_ours = |token: &str, what: &str| {
            assert_eq!(
                h.server.check_access_token(token),
                Err(TokenRejection::NotOurs),
                "{what}"
            );
        };

        // alg "none", with and without a signature.
        let mut none = header.clone();
        none["alg"] = "none".into();
        let unsigned = format!("{}.{}.", encode_part(&none), encode_part(&payload));
        not_ours(&unsigned, "alg none");
        not_ours(&format!("{unsigned}{signature}"), "alg none, signed");

        // HS256 keyed with the public key (the RS/HS confusion): both the JWK's x and the
        // uncompressed point a verifier might use as the HMAC secret.
        let jwks = h.server.jwks();
        let x = jwks["keys"][0]["x"].as_str().unwrap();
        let y = jwks["keys"][0]["y"].as_str().unwrap();
        let mut point = vec![4_u8];
        point.extend(URL_SAFE_NO_PAD.decode(x).unwrap());
        point.extend(URL_SAFE_NO_PAD.decode(y).unwrap());
        for secret in [x.as_bytes().to_vec(), point] {
            let mut hs = Header::new(Algorithm::HS256);
            hs.typ = Some("at+jwt".to_owned());
            hs.kid = header["kid"].as_str().map(str::to_owned);
            let forged = jsonwebtoken::encode(
                &hs,
                &payload,
                &jsonwebtoken::EncodingKey::from_secret(&secret),
            )
            .unwrap();
            not_ours(&forged, "HS256 with the public key");
        }

        // Another P-256 key claiming our kid; and a changed claim under our signature.
        let rng = SystemRandom::new();
        let stranger = generate(&rng, h.now()).unwrap();
        let mut es = Header::new(Algorithm::ES256);
        es.typ = Some("at+jwt".to_owned());
        es.kid = header["kid"].as_str().map(str::to_owned);
        let foreign = jsonwebtoken::encode(
            &es,
            &payload,
            &EncodingKey::from_ec_der(&stranger.private_pkcs8),
        )
        .unwrap();
        not_ours(&foreign, "another key with our kid");
        let mut widened = payload.clone();
        widened["sub"] = "bob".into();
        let tampered = format!(
            "{}.{}.{signature}",
            encode_part(&header),
            encode_part(&widened)
        );
        not_ours(&tampered, "changed claim");

        // Header variants of a genuinely signed token: no kid, unknown kid, wrong typ.
        let ours = h
            .server
            .keys
            .loaded
            .read()
            .unwrap()
            .keys
            .first()
            .and_then(|key| key.encoding.clone())
            .unwrap();
        for (kid, typ, what) in [
            (None, Some("at+jwt"), "no kid"),
            (Some("unknown"), Some("at+jwt"), "unknown kid"),
            (header["kid"].as_str(), Some("JWT"), "typ JWT (an ID token)"),
            (header["kid"].as_str(), Some("AT+JWT"), "typ in other case"),
            (header["kid"].as_str(), None, "no typ"),
        ] {
            let mut variant = Header::new(Algorithm::ES256);
            variant.kid = kid.map(str::to_owned);
            variant.typ = typ.map(str::to_owned);
            let token = jsonwebtoken::encode(&variant, &payload, &ours).unwrap();
            not_ours(&token, what);
        }

        // iss and aud must both be this issuer.
        for (claim, value) in [("iss", "https://evil.example"), ("aud", "other")] {
            let mut claims = payload.clone();
            claims[claim] = value.into();
            let mut good = Header::new(Algorithm::ES256);
            good.kid = header["kid"].as_str().map(str::to_owned);
            good.typ = Some("at+jwt".to_owned());
            let token = jsonwebtoken::encode(&good, &claims, &ours).unwrap();
            not_ours(&token, claim);
        }
        // The genuine one still passes: the checks above refused for their own reason.
        assert!(h.server.check_access_token(&tokens.access_token).is_ok());
    }

    #[test]
    fn rotation_keeps_retired_keys_while_their_tokens_live() {
        let h = Harness::new("signing_key_lifetime = \"10m\"\n");
        let before = h.tokens_for("bob", "mail-app", LOOPBACK);
        let old_kid = header(&before.access_token).kid.unwrap();
        h.server.rotate_keys().unwrap();
        assert_eq!(kids(&h.server.jwks()).len(), 1, "a young key is kept");

        h.advance(600);
        h.server.rotate_keys().unwrap();
        let after = h.tokens_for("bob", "mail-app", LOOPBACK);
        let new_kid = header(&after.access_token).kid.unwrap();
        assert_ne!(new_kid, old_kid);
        let published = kids(&h.server.jwks());
        assert_eq!(published.len(), 2);
        assert!(published.contains(&old_kid) && published.contains(&new_kid));
        assert!(h.server.check_access_token(&before.access_token).is_ok());
        assert!(h.server.check_access_token(&after.access_token).is_ok());

        // Once every token the old key signed has expired (and the leeway passed), it goes.
        h.advance(3_600 + RETENTION_LEEWAY);
        h.server.rotate_keys().unwrap();
        let published = kids(&h.server.jwks());
        assert!(!published.contains(&old_kid));
        assert!(
            published.contains(&new_kid),
            "retired at rotation, still live"
        );
        // Refused: expired (this server remembers it verified it once) and, for any other
        // instance, signed by a key no longer published.
        assert_eq!(
            h.server.check_access_token(&before.access_token),
            Err(TokenRejection::Expired)
        );
        let other = h.second_server("signing_key_lifetime = \"10m\"\n");
        assert_eq!(
            other.check_access_token(&before.access_token),
            Err(TokenRejection::NotOurs)
        );
    }

    #[test]
    fn another_instances_new_key_is_found() {
        let h = Harness::new("signing_key_lifetime = \"10m\"\n");
        let other = h.second_server("signing_key_lifetime = \"10m\"\n");
        // Both use the one key in the store.
        assert_eq!(kids(&other.jwks()), kids(&h.server.jwks()));
        h.advance(600);
        other.rotate_keys().unwrap();
        let pending = other
            .authorize(&crate::testing::pkce_request("mail-app", LOOPBACK, ""))
            .unwrap();
        let url = other.approve("carol", &pending).unwrap();
        let code = crate::testing::param(&url, "code").unwrap();
        let tokens = other
            .token(
                &crate::testing::code_exchange(&code, LOOPBACK, crate::testing::VERIFIER),
                &crate::testing::public("mail-app"),
            )
            .unwrap();
        // The first instance has not seen the new key; it reads the store for it.
        assert!(h.server.check_access_token(&tokens.access_token).is_ok());
        // And it signs with the new key too after re-reading, not with the retired one.
        let mine = h.tokens_for("carol", "mail-app", LOOPBACK);
        assert_eq!(
            header(&mine.access_token).kid,
            header(&tokens.access_token).kid
        );
    }

    #[test]
    fn a_store_without_keys_gets_one() {
        let h = Harness::new("");
        assert_eq!(h.store.signing_keys().unwrap().len(), 1);
        let other = h.second_server("");
        assert_eq!(
            h.store.signing_keys().unwrap().len(),
            1,
            "the second instance reuses it"
        );
        assert_eq!(kids(&other.jwks()).len(), 1);
    }
}
