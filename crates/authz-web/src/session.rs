//! Browser sessions: one random cookie per browser, a bounded server-side table of the
//! signed-in ones, and the CSRF token every form carries.
//!
//! The cookie is handed out on the first page; the table only learns about a session when
//! someone signs in with it (or does something that must be counted against it), so that
//! anonymous page views cannot fill it. A session id changes at every sign-in and sign-out:
//! an id planted before sign-in (session fixation) is worth nothing after it.
//!
//! The CSRF token is HMAC-SHA256 of the session id under a key made at start: nothing to
//! store, and a page from before a restart simply asks to be reloaded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Signed-in sessions remembered at most; the least recently used goes first beyond this.
const MAX_SESSIONS: usize = 100_000;
/// A session nobody used for this long is forgotten (12 h: a working day).
const IDLE_LIFETIME: Duration = Duration::from_secs(12 * 3_600);
/// A sign-in is good for this long however busy the session is (7 days), so that a copied
/// cookie stops working on its own.
const SIGN_IN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);

/// The cookie name with `Secure` (the `__Host-` prefix makes browsers refuse it from any
/// other host or path, so a sibling subdomain cannot plant one).
const SECURE_COOKIE: &str = "__Host-bearergate";
/// The cookie name in plaintext (test) mode, where `__Host-` cookies are refused.
const PLAIN_COOKIE: &str = "bearergate";

/// 32 random bytes; the cookie carries them base64url (43 characters).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SessionId([u8; 32]);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The id is a bearer credential once signed in.
        f.write_str("SessionId(…)")
    }
}

impl SessionId {
    fn parse(text: &str) -> Option<Self> {
        if text.len() != 43 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(SessionId(bytes.try_into().ok()?))
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

/// What the table keeps for a session.
#[derive(Debug, Clone)]
pub(crate) struct SessionData {
    /// The signed-in mail user.
    pub(crate) user: Option<String>,
    /// When they signed in.
    signed_in_at: Instant,
    /// Wrong device user codes typed in this session.
    pub(crate) device_wrong_guesses: u32,
    last_seen: Instant,
}

/// The browser's session as a request found it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Visit {
    /// The id (from the cookie, or new).
    pub(crate) id: SessionId,
    /// `true` when the request had no valid cookie: the response must set one.
    pub(crate) fresh: bool,
}

/// The session table, the CSRF key and the cookie's shape.
#[derive(Debug)]
pub(crate) struct Sessions {
    table: Mutex<HashMap<SessionId, SessionData>>,
    csrf_key: hmac::Key,
    rng: SystemRandom,
    secure: bool,
}

/// The system random generator failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RandomFailed;

impl Sessions {
    pub(crate) fn new(secure: bool) -> Result<Self, RandomFailed> {
        let rng = SystemRandom::new();
        let csrf_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| RandomFailed)?;
        Ok(Self {
            table: Mutex::new(HashMap::new()),
            csrf_key,
            rng,
            secure,
        })
    }

    fn cookie_name(&self) -> &'static str {
        if self.secure {
            SECURE_COOKIE
        } else {
            PLAIN_COOKIE
        }
    }

    /// The session of a request: the first well-formed cookie of ours in the `Cookie`
    /// headers, else a new id.
    pub(crate) fn visit(&self, headers: &axum::http::HeaderMap) -> Result<Visit, RandomFailed> {
        let name = self.cookie_name();
        let found = headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .filter(|(key, _)| *key == name)
            .find_map(|(_, value)| SessionId::parse(value.trim()));
        match found {
            Some(id) => Ok(Visit { id, fresh: false }),
            None => Ok(Visit {
                id: self.new_id()?,
                fresh: true,
            }),
        }
    }

    /// A new random id.
    pub(crate) fn new_id(&self) -> Result<SessionId, RandomFailed> {
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes).map_err(|_| RandomFailed)?;
        Ok(SessionId(bytes))
    }

    /// The `Set-Cookie` value that gives the browser `id`.
    pub(crate) fn set_cookie(&self, id: SessionId) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={}; Path=/{secure}; HttpOnly; SameSite=Lax",
            self.cookie_name(),
            id.encode()
        )
    }

    /// The CSRF token of a session.
    pub(crate) fn csrf_token(&self, id: SessionId) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(&self.csrf_key, &id.0).as_ref())
    }

    /// Whether `token` is the CSRF token of `visit`'s session. A fresh visit (no cookie)
    /// never matches: the form was not made for this browser.
    pub(crate) fn csrf_ok(&self, visit: Visit, token: Option<&str>) -> bool {
        if visit.fresh {
            return false;
        }
        let Some(tag) = token.and_then(|token| URL_SAFE_NO_PAD.decode(token).ok()) else {
            return false;
        };
        // Constant time, so the token cannot be found byte by byte.
        hmac::verify(&self.csrf_key, &visit.id.0, &tag).is_ok()
    }

    /// The session's data, if it is known and not idle too long; touches it.
    pub(crate) fn get(&self, id: SessionId, now: Instant) -> Option<SessionData> {
        let mut table = self.lock();
        let data = table.get_mut(&id)?;
        if now.saturating_duration_since(data.last_seen) >= IDLE_LIFETIME
            || now.saturating_duration_since(data.signed_in_at) >= SIGN_IN_LIFETIME
        {
            table.remove(&id);
            return None;
        }
        data.last_seen = now;
        Some(data.clone())
    }

    /// The signed-in user of a session.
    pub(crate) fn user(&self, id: SessionId, now: Instant) -> Option<String> {
        self.get(id, now).and_then(|data| data.user)
    }

    /// Signs `user` in: forgets `old`, and returns the new id the cookie must carry.
    pub(crate) fn sign_in(
        &self,
        old: SessionId,
        user: String,
        now: Instant,
    ) -> Result<SessionId, RandomFailed> {
        let id = self.new_id()?;
        let mut table = self.lock();
        table.remove(&old);
        make_room(&mut table, now);
        table.insert(
            id,
            SessionData {
                user: Some(user),
                signed_in_at: now,
                device_wrong_guesses: 0,
                last_seen: now,
            },
        );
        Ok(id)
    }

    /// Signs out: forgets `old`; the new id the cookie must carry.
    pub(crate) fn sign_out(&self, old: SessionId) -> Result<SessionId, RandomFailed> {
        self.lock().remove(&old);
        self.new_id()
    }

    /// Counts a wrong device user code against a known session; the count so far.
    pub(crate) fn count_device_guess(&self, id: SessionId, now: Instant) -> u32 {
        let mut table = self.lock();
        match table.get_mut(&id) {
            Some(data) => {
                data.device_wrong_guesses = data.device_wrong_guesses.saturating_add(1);
                data.last_seen = now;
                data.device_wrong_guesses
            }
            // Only signed-in sessions reach device entry; an unknown one has no count.
            None => 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionData>> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Before an insert into a full table: forget idle sessions, then the least recently used.
fn make_room(table: &mut HashMap<SessionId, SessionData>, now: Instant) {
    if table.len() < MAX_SESSIONS {
        return;
    }
    table.retain(|_, data| now.saturating_duration_since(data.last_seen) < IDLE_LIFETIME);
    if table.len() < MAX_SESSIONS {
        return;
    }
    let oldest = table
        .iter()
        .min_by_key(|(_, data)| data.last_seen)
        .map(|(id, _)| *id);
    if let Some(oldest) = oldest {
        table.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{header, HeaderMap, HeaderValue};

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn cookie_round_trip_and_flags() {
        let sessions = Sessions::new(true).unwrap();
        let id = sessions.new_id().unwrap();
        let set = sessions.set_cookie(id);
        assert!(set.starts_with("__Host-bearergate="));
        for flag in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
            assert!(set.contains(flag), "{set}");
        }
        let value = set.split(';').next().unwrap();
        let visit = sessions
            .visit(&headers(&format!("other=1; {value}")))
            .unwrap();
        assert!(!visit.fresh);
        assert_eq!(visit.id, id);

        let plain = Sessions::new(false).unwrap();
        let set = plain.set_cookie(id);
        assert!(set.starts_with("bearergate=") && !set.contains("Secure"));
    }

    #[test]
    fn malformed_cookie_gives_a_fresh_session() {
        let sessions = Sessions::new(false).unwrap();
        for cookie in ["bearergate=short", "bearergate=", "x=y", "bearergate"] {
            assert!(sessions.visit(&headers(cookie)).unwrap().fresh, "{cookie}");
        }
        assert!(sessions.visit(&HeaderMap::new()).unwrap().fresh);
    }

    #[test]
    fn csrf_matches_only_its_session() {
        let sessions = Sessions::new(false).unwrap();
        let a = Visit {
            id: sessions.new_id().unwrap(),
            fresh: false,
        };
        let b = Visit {
            id: sessions.new_id().unwrap(),
            fresh: false,
        };
        let token = sessions.csrf_token(a.id);
        assert!(sessions.csrf_ok(a, Some(&token)));
        assert!(!sessions.csrf_ok(b, Some(&token)));
        assert!(!sessions.csrf_ok(a, None));
        assert!(!sessions.csrf_ok(a, Some("not base64!")));
        assert!(!sessions.csrf_ok(Visit { fresh: true, ..a }, Some(&token)));
        // Another process (another key) does not accept it either.
        let other = Sessions::new(false).unwrap();
        assert!(!other.csrf_ok(a, Some(&token)));
    }

    #[test]
    fn sign_in_rotates_and_idle_sessions_expire() {
        let sessions = Sessions::new(false).unwrap();
        let now = Instant::now();
        let old = sessions.new_id().unwrap();
        let id = sessions.sign_in(old, "alice".into(), now).unwrap();
        assert_ne!(id, old);
        assert_eq!(sessions.user(id, now).as_deref(), Some("alice"));
        assert_eq!(sessions.user(old, now), None);
        assert_eq!(sessions.count_device_guess(id, now), 1);
        assert_eq!(sessions.count_device_guess(id, now), 2);
        let later = now + IDLE_LIFETIME;
        assert_eq!(sessions.user(id, later), None);

        // Busy sessions still end a week after sign-in.
        let id = sessions.sign_in(id, "alice".into(), now).unwrap();
        let mut at = now;
        while at < now + SIGN_IN_LIFETIME - Duration::from_secs(3_600) {
            at += Duration::from_secs(3_600);
            assert_eq!(sessions.user(id, at).as_deref(), Some("alice"));
        }
        assert_eq!(sessions.user(id, now + SIGN_IN_LIFETIME), None);
        let next = sessions.sign_out(id).unwrap();
        assert_ne!(next, id);
    }
}
