//! The device authorization grant (RFC 8628): the device asks for a pair of codes, a person
//! types the short one into a browser and decides, and the device polls the token endpoint.

use super::{invalid_grant, missing};
use crate::clients::Client;
use crate::error::{ErrorCode, OAuthError};
use crate::model::{
    ClientCredentials, DeviceAuthorizationResponse, DevicePrompt, TokenRequest, TokenResponse,
};
use crate::resource;
use crate::scope::Scopes;
use crate::server::AuthServer;
use crate::store::{DeviceRecord, DeviceStatus, StoreError, UnixTime};
use crate::{paths, tokens, DEVICE_CODE_GRANT};

/// RFC 8628 §6.1: consonants only (no vowels, so no words; no look-alikes such as 0/O, 1/I)
/// and upper case, so that case never matters.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// 20^8 ≈ 2^34.6 codes, with few live ones and the HTTP layer's per-browser guess limit.
const USER_CODE_LENGTH: usize = 8;
/// Seconds between polls (RFC 8628 §3.2 default).
const POLL_INTERVAL: u32 = 5;
/// What `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: u32 = 5;
/// A new user code colliding with a live one is retried this many times.
const USER_CODE_ATTEMPTS: usize = 8;

/// What a person typed, as stored: upper case, everything outside the alphabet dropped (so
/// a dash, spaces or lower case all work).
pub(crate) fn normalise_user_code(typed: &str) -> String {
    typed
        .chars()
        .map(|c| c.to_ascii_uppercase())
        .filter(|c| c.is_ascii() && USER_CODE_ALPHABET.contains(&(*c as u8)))
        .collect()
}

/// `XXXX-XXXX`.
fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(head), Some(tail)) if !tail.is_empty() => format!("{head}-{tail}"),
        _ => code.to_owned(),
    }
}

/// Eight uniformly random letters of the alphabet.
fn random_user_code(rng: &ring::rand::SystemRandom) -> Result<String, StoreError> {
    let mut code = String::with_capacity(USER_CODE_LENGTH);
    while code.len() < USER_CODE_LENGTH {
        for byte in tokens::random_bytes::<16>(rng)? {
            // 240 = 12 × 20: rejecting the rest keeps every letter equally likely.
            if byte < 240 && code.len() < USER_CODE_LENGTH {
                code.push(char::from(USER_CODE_ALPHABET[usize::from(byte % 20)]));
            }
        }
    }
    Ok(code)
}

impl AuthServer {
    /// The device authorization endpoint (RFC 8628 §3.1).
    pub(crate) fn start_device_authorization(
        &self,
        scope: Option<&str>,
        resource: &[String],
        caller: &ClientCredentials,
    ) -> Result<DeviceAuthorizationResponse, OAuthError> {
        let now = (self.clock)();
        let client = self.authenticate(caller)?;
        if !client.allows(DEVICE_CODE_GRANT) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client is not registered for the device grant",
            ));
        }
        let scope = Scopes::parse_request(scope)?;
        let resource = resource::requested(resource, &self.settings.mail_resources)?;
        let lifetime = self.settings.user_code_lifetime.as_secs();
        let device_code = tokens::secret(&self.rng)?;
        for _ in 0..USER_CODE_ATTEMPTS {
            let user_code = random_user_code(&self.rng)?;
            let record = DeviceRecord {
                device_hash: tokens::hash(&device_code),
                user_code: user_code.clone(),
                client_id: client.id().to_owned(),
                scope: scope.to_scope_string(),
                resource: resource.clone(),
                expires_at: now
                    .saturating_add(UnixTime::try_from(lifetime).unwrap_or(UnixTime::MAX)),
                interval: POLL_INTERVAL,
                last_poll: None,
                status: DeviceStatus::Pending,
            };
            match self.store.insert_device(&record) {
                Ok(()) => {}
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
            let shown = display_user_code(&user_code);
            let verification_uri =
                format!("{}{}", self.settings.public_url, paths::DEVICE_VERIFICATION);
            return Ok(DeviceAuthorizationResponse {
                device_code,
                verification_uri_complete: format!("{verification_uri}?user_code={shown}"),
                user_code: shown,
                verification_uri,
                expires_in: lifetime,
                interval: POLL_INTERVAL,
            });
        }
        Err(StoreError::Database("no free user code after several attempts".to_owned()).into())
    }

    /// The pending, unexpired device authorization with this user code.
    fn pending_device(&self, typed: &str) -> Result<DeviceRecord, OAuthError> {
        let now = (self.clock)();
        let code = normalise_user_code(typed);
        let not_found =
            || invalid_grant("no device is waiting for this code; check it and try again");
        if code.len() != USER_CODE_LENGTH {
            return Err(not_found());
        }
        let Some(record) = self.store.device_by_user_code(&code)? else {
            return Err(not_found());
        };
        if now >= record.expires_at {
            return Err(invalid_grant(
                "this code has expired; start again on the device",
            ));
        }
        if record.status != DeviceStatus::Pending {
            return Err(invalid_grant("this code has already been used"));
        }
        Ok(record)
    }

    /// What a person confirms after typing a user code.
    pub(crate) fn prompt_device(&self, typed: &str) -> Result<DevicePrompt, OAuthError> {
        let record = self.pending_device(typed)?;
        let client = self
            .find_client(&record.client_id)?
            .unwrap_or_else(|| Client::Unregistered(record.client_id.clone()));
        Ok(DevicePrompt {
            user_code: display_user_code(&record.user_code),
            client: client.display(None),
            scope: record.scope,
            resource: record.resource,
        })
    }

    /// A signed-in person approved or denied. Approving an unregistered client needs an
    /// override user when registration is required; denying is always allowed.
    pub(crate) fn decide_device(
        &self,
        typed: &str,
        user: &str,
        approve: bool,
    ) -> Result<(), OAuthError> {
        let record = self.pending_device(typed)?;
        let status = if approve {
            let registered = matches!(
                self.find_client(&record.client_id)?,
                Some(Client::Registered(_))
            );
            if !registered && !self.may_authorize_unregistered(user) {
                return Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    "this server only accepts registered clients; ask the administrator to \
                     register this one",
                ));
            }
            DeviceStatus::Approved {
                user: user.to_owned(),
            }
        } else {
            DeviceStatus::Denied
        };
        if !self.store.decide_device(&record.user_code, &status)? {
            return Err(invalid_grant("this code has already been used"));
        }
        Ok(())
    }

    /// `grant_type=urn:ietf:params:oauth:grant-type:device_code`: the device polls.
    pub(crate) fn device_grant(
        &self,
        request: &TokenRequest,
        client: &Client,
    ) -> Result<TokenResponse, OAuthError> {
        let now = (self.clock)();
        let Some(device_code) = request.device_code.as_deref() else {
            return Err(missing("device_code"));
        };
        let hash = tokens::hash(device_code);
        let Some(record) = self.store.device(&hash)? else {
            return Err(invalid_grant("unknown device_code"));
        };
        if record.client_id != client.id() {
            return Err(invalid_grant("unknown device_code"));
        }
        if now >= record.expires_at {
            return Err(OAuthError::new(
                ErrorCode::ExpiredToken,
                "the device_code expired",
            ));
        }
        let too_soon = record
            .last_poll
            .is_some_and(|last| now.saturating_sub(last) < i64::from(record.interval));
        if too_soon {
            let interval = record.interval.saturating_add(SLOW_DOWN_STEP);
            self.store.device_polled(&hash, now, interval)?;
            return Err(OAuthError::new(
                ErrorCode::SlowDown,
                format!("poll at most every {interval} seconds"),
            ));
        }
        self.store.device_polled(&hash, now, record.interval)?;
        match record.status {
            DeviceStatus::Pending => Err(OAuthError::new(
                ErrorCode::AuthorizationPending,
                "the user has not decided yet",
            )),
            DeviceStatus::Denied => Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user refused access",
            )),
            DeviceStatus::Finished => Err(invalid_grant(
                "tokens were already issued for this device_code",
            )),
            DeviceStatus::Approved { user } => {
                // Checked before finishing, so that a bad `resource` spends nothing.
                let resource = resource::narrowed(
                    &request.resource,
                    &record.resource,
                    &self.settings.mail_resources,
                )?;
                if !self.store.finish_device(&hash)? {
                    return Err(invalid_grant(
                        "tokens were already issued for this device_code",
                    ));
                }
                let grant = self.new_grant(
                    &user,
                    &record.client_id,
                    &record.scope,
                    &record.resource,
                    now,
                )?;
                self.store.insert_grant(&grant)?;
                self.start_grant(&grant, &resource, None, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_normalise_case_dashes_and_spaces() {
        assert_eq!(normalise_user_code("bcdf-ghjk"), "BCDFGHJK");
        assert_eq!(normalise_user_code(" BCDF GHJK "), "BCDFGHJK");
        assert_eq!(normalise_user_code("bcdfghjk"), "BCDFGHJK");
        // Vowels and digits are not in the alphabet: dropped, leaving a short code.
        assert_eq!(normalise_user_code("A0E-1"), "");
        assert_eq!(normalise_user_code("ßbç"), "B");
    }

    #[test]
    fn random_user_codes_use_the_alphabet() {
        let rng = ring::rand::SystemRandom::new();
        let code = random_user_code(&rng).unwrap();
        assert_eq!(code.len(), USER_CODE_LENGTH);
        assert_eq!(normalise_user_code(&code), code);
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }
}
