//! Self-contained client ids for open native registration: the client's registration (name,
//! redirect URIs, grant types, when) is the id itself, signed with a server secret, so that
//! registering writes nothing to the store and a flood of registrations fills no table.
//!
//! ```text
//! client-id = "bgn1." base64url(payload) "." base64url(HMAC-SHA256(key, context || payload-text))
//! payload   = {"t": issued_at, "n": client_name?, "r": [redirect_uri…], "g": grant-bits}
//! ```
//!
//! The MAC covers the base64 text, so nothing unauthenticated is ever decoded; it is compared
//! in constant time. The key is a server secret kept in the store ([`Store::server_secret`]),
//! the same for every instance that shares the store; removing that row invalidates every such
//! client id at once (their grants stay revocable by id with `clients remove`).
//!
//! [`Store::server_secret`]: crate::store::Store::server_secret

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::clients::GRANT_TYPES;
use crate::error::{ErrorCode, OAuthError};
use crate::store::{ClientAuthMethod, ClientRecord, RegisteredBy, Store, StoreError, UnixTime};
use crate::tokens;

/// What every self-contained client id starts with (version 1 of the format).
pub(crate) const PREFIX: &str = "bgn1.";
/// The longest self-contained client id issued or accepted: 2 KiB, so that it fits in a URL
/// and a token's `client_id` with room to spare.
pub(crate) const MAX_ID_LEN: usize = 2_048;
/// The name of the MAC key among the server secrets.
pub(crate) const SECRET_NAME: &str = "client-id-mac";
/// Domain separation: the key signs nothing else, but a MAC that says what it is for cannot
/// be replayed as another kind should one be added.
const CONTEXT: &[u8] = b"bearergate native client id v1\0";
/// Bytes of a new MAC key (HMAC-SHA256's block is 64; 32 is its full strength).
const KEY_BYTES: usize = 32;

/// The signed registration.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    #[serde(rename = "t")]
    issued_at: UnixTime,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(rename = "r", default)]
    redirect_uris: Vec<String>,
    /// Bit `i` set: `GRANT_TYPES[i]` allowed.
    #[serde(rename = "g")]
    grants: u8,
}

/// Issues and opens self-contained client ids.
pub(crate) struct NativeIds {
    key: hmac::Key,
}

impl std::fmt::Debug for NativeIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeIds").finish_non_exhaustive()
    }
}

/// Whether `id` claims to be a self-contained client id (whether or not its MAC holds).
pub fn is_native_id(id: &str) -> bool {
    id.starts_with(PREFIX)
}

/// Characters of the MAC shown in [`short_form`]: 96 bits, unique among any number of ids.
const SHORT_MAC: usize = 16;

/// What a person or a log line is shown of a self-contained id (up to 2 KiB): the prefix and
/// the end of its MAC, `bgn1.…Xq3…`. Not its start: the payload begins with the time of
/// registration, so ids registered in the same few seconds begin alike. `None` for an id
/// too short to need shortening.
pub(crate) fn short_form(id: &str) -> Option<String> {
    let tail = id
        .len()
        .checked_sub(SHORT_MAC)
        .and_then(|at| id.get(at..))?;
    (is_native_id(id) && id.len() > PREFIX.len() + 1 + SHORT_MAC)
        .then(|| format!("{PREFIX}…{tail}"))
}

impl NativeIds {
    /// The key from the store, made on first use.
    pub(crate) fn load(store: &dyn Store, rng: &SystemRandom) -> Result<Self, StoreError> {
        let fresh = tokens::random_bytes::<KEY_BYTES>(rng)?;
        let secret = store.server_secret(SECRET_NAME, &fresh)?;
        if secret.len() < KEY_BYTES {
            return Err(StoreError::Database(format!(
                "server secret {SECRET_NAME} is shorter than {KEY_BYTES} bytes"
            )));
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
        })
    }

    fn mac(&self, payload_text: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(CONTEXT);
        context.update(payload_text);
        context.sign()
    }

    /// A client id for this registration; `invalid_client_metadata` when it would be longer
    /// than [`MAX_ID_LEN`] (too many or too long redirect URIs, for a registration that
    /// writes nothing).
    pub(crate) fn issue(
        &self,
        name: Option<&str>,
        redirect_uris: &[String],
        grant_types: &[String],
        issued_at: UnixTime,
    ) -> Result<String, OAuthError> {
        let grants = GRANT_TYPES
            .iter()
            .enumerate()
            .filter(|(_, grant)| grant_types.iter().any(|g| g == *grant))
            .fold(0u8, |bits, (index, _)| bits | (1 << index));
        let payload = Payload {
            issued_at,
            name: name.map(str::to_owned),
            redirect_uris: redirect_uris.to_vec(),
            grants,
        };
        let json = serde_json::to_vec(&payload).map_err(|_| {
            OAuthError::new(ErrorCode::ServerError, "the client id could not be made")
        })?;
        let text = URL_SAFE_NO_PAD.encode(json);
        let mac = URL_SAFE_NO_PAD.encode(self.mac(text.as_bytes()));
        let id = format!("{PREFIX}{text}.{mac}");
        if id.len() > MAX_ID_LEN {
            return Err(OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                "this registration is too large for a self-contained client id: use fewer or \
                 shorter redirect URIs, or a shorter client_name",
            ));
        }
        Ok(id)
    }

    /// The client a self-contained id stands for, if its MAC holds.
    pub(crate) fn open(&self, id: &str) -> Option<ClientRecord> {
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let (text, mac) = id.strip_prefix(PREFIX)?.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let expected = self.mac(text.as_bytes());
        if !bool::from(expected.as_ref().ct_eq(&mac)) {
            return None;
        }
        // Authentic from here on: only this server wrote it.
        let payload: Payload = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()?;
        let grant_types = GRANT_TYPES
            .iter()
            .enumerate()
            .filter(|(index, _)| payload.grants & (1 << index) != 0)
            .map(|(_, grant)| (*grant).to_owned())
            .collect();
        Some(ClientRecord {
            id: id.to_owned(),
            secret_hash: None,
            auth_method: ClientAuthMethod::None,
            // Checked again: the id may predate a character the rules now refuse.
            name: payload
                .name
                .filter(|name| crate::clients::check_client_name(name).is_ok()),
            redirect_uris: payload.redirect_uris,
            grant_types,
            registered_by: RegisteredBy::Anonymous,
            created_at: payload.issued_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn ids(store: &SqliteStore) -> NativeIds {
        NativeIds::load(store, &SystemRandom::new()).unwrap()
    }

    fn grants(list: &[&str]) -> Vec<String> {
        list.iter().map(|g| (*g).to_owned()).collect()
    }

    #[test]
    fn an_issued_id_opens_to_its_registration() {
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = ids(&store);
        let uris = vec![
            "http://127.0.0.1/cb".to_owned(),
            "com.example.mail:/oauth".to_owned(),
        ];
        let granted = grants(&["authorization_code", "refresh_token"]);
        let id = ids
            .issue(Some("Mail für Alice"), &uris, &granted, 1_700_000_000)
            .unwrap();
        assert!(id.starts_with(PREFIX) && is_native_id(&id));
        // RFC 6749 `client-id = *VSCHAR`, and safe in a URL as it is.
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)),
            "{id}"
        );
        let record = ids.open(&id).unwrap();
        assert_eq!(record.id, id);
        assert_eq!(record.name.as_deref(), Some("Mail für Alice"));
        assert_eq!(record.redirect_uris, uris);
        assert_eq!(record.grant_types, granted);
        assert_eq!(record.auth_method, ClientAuthMethod::None);
        assert_eq!(record.registered_by, RegisteredBy::Anonymous);
        assert_eq!(record.created_at, 1_700_000_000);

        let device = ids
            .issue(None, &[], &grants(&[crate::DEVICE_CODE_GRANT]), 1)
            .unwrap();
        let record = ids.open(&device).unwrap();
        assert_eq!(record.grant_types, [crate::DEVICE_CODE_GRANT]);
        assert!(record.name.is_none() && record.redirect_uris.is_empty());
    }

    #[test]
    fn a_changed_or_foreign_id_does_not_open() {
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = ids(&store);
        let id = ids
            .issue(
                Some("App"),
                &["http://127.0.0.1/cb".to_owned()],
                &grants(&["authorization_code"]),
                5,
            )
            .unwrap();
        let (text, mac) = id.strip_prefix(PREFIX).unwrap().split_once('.').unwrap();
        // The payload rewritten to another redirect, the MAC kept: refused.
        let forged_payload =
            URL_SAFE_NO_PAD.encode(br#"{"t":5,"n":"App","r":["https://evil.example/cb"],"g":1}"#);
        assert!(ids
            .open(&format!("{PREFIX}{forged_payload}.{mac}"))
            .is_none());
        // A flipped MAC character, a missing MAC, a truncated one.
        let flipped = if mac.starts_with('A') { "B" } else { "A" };
        assert!(ids
            .open(&format!("{PREFIX}{text}.{flipped}{}", &mac[1..]))
            .is_none());
        assert!(ids.open(&format!("{PREFIX}{text}")).is_none());
        assert!(ids
            .open(&format!("{PREFIX}{text}.{}", &mac[..20]))
            .is_none());
        assert!(ids.open("bgn1.").is_none());
        assert!(ids
            .open(&format!("{PREFIX}{}", "A".repeat(MAX_ID_LEN)))
            .is_none());
        // Another store, another key: its ids mean nothing here.
        let other = SqliteStore::open_in_memory().unwrap();
        assert!(super::NativeIds::load(&other, &SystemRandom::new())
            .unwrap()
            .open(&id)
            .is_none());
        // The same store, a second instance: the same key.
        assert!(ids_again(&store).open(&id).is_some());
    }

    fn ids_again(store: &SqliteStore) -> NativeIds {
        NativeIds::load(store, &SystemRandom::new()).unwrap()
    }

    #[test]
    fn names_the_rules_now_refuse_are_not_shown() {
        // An id signed before a character joined the refused ones keeps its name in the
        // payload; it is judged again whenever the id is opened.
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = ids(&store);
        let uris = vec!["http://127.0.0.1/cb".to_owned()];
        let id = ids
            .issue(Some("\u{3164}"), &uris, &grants(&["authorization_code"]), 1)
            .unwrap();
        let record = ids.open(&id).unwrap();
        assert_eq!(record.name, None);
        assert_eq!(record.redirect_uris, uris);
    }

    #[test]
    fn registrations_too_large_for_an_id_are_refused() {
        let store = SqliteStore::open_in_memory().unwrap();
        let ids = ids(&store);
        let uris: Vec<String> = (0..20)
            .map(|i| format!("http://127.0.0.1/{}/{i}", "x".repeat(100)))
            .collect();
        let error = ids
            .issue(None, &uris, &grants(&["authorization_code"]), 1)
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidClientMetadata);
    }
}
