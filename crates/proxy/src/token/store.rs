//! The token file's contents: what a later `bearergate token print` needs to refresh
//! without asking anything (issuer, token endpoint, client, scope, resources, the CA file to
//! trust) and the tokens themselves. The client secret is never stored, only the path of the
//! file that holds it.
//!
//! On disk it is JSON with a `version`; `store.rs` only converts, [`super::disk`] reads and
//! writes with the right permissions.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use validator::client::{SecretMethod, TokenAnswer};

/// The format written; files of a later version are refused rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// How long an access token is taken to live when the issuer does not say (RFC 6749 §5.1
/// makes `expires_in` only RECOMMENDED): short, so that a wrong guess costs one refresh.
pub const ASSUMED_LIFETIME_SECS: u64 = 300;

/// One account's tokens and how to refresh them.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenFile {
    /// The issuer identifier, as its metadata names it.
    pub issuer: String,
    /// Where refresh requests go.
    pub token_endpoint: String,
    /// RFC 7009, for `logout`.
    pub revocation_endpoint: Option<String>,
    /// Our client id at the issuer.
    pub client_id: String,
    /// The file holding the client secret, for a confidential client (never the secret).
    pub client_secret_file: Option<PathBuf>,
    /// How the secret is sent, when there is one.
    pub client_auth: Option<SecretMethod>,
    /// PEM certificates to trust for this issuer beside the public roots.
    pub ca_file: Option<PathBuf>,
    /// The scope asked for at sign-in.
    pub scope: String,
    /// The scope the issuer said it granted, when it said.
    pub granted_scope: Option<String>,
    /// RFC 8707 resource indicators asked for at sign-in, and again at each refresh.
    pub resources: Vec<String>,
    /// The refresh token; `None` when the issuer gave none (sign-in again at expiry).
    pub refresh_token: Option<Secret>,
    /// The access token last obtained.
    pub access_token: Secret,
    /// When it expires, in seconds since the Unix epoch.
    pub expires_at: u64,
    /// Set when the issuer refused the grant (`invalid_grant`): why, for the message. The
    /// file is kept (its settings say how to sign in again) but no request is made with it.
    pub login_required: Option<String>,
    /// When the file was last written, in seconds since the Unix epoch.
    pub updated_at: u64,
}

/// A token, comparable in tests and never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl Secret {
    /// The token's text.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl From<SecretString> for Secret {
    fn from(secret: SecretString) -> Self {
        Self(secret)
    }
}

/// Why a token file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not JSON, or not the fields we write.
    #[error("not a bearergate token file: {0}")]
    Malformed(String),
    /// Written by a later bearergate.
    #[error("written in format {0}, newer than this bearergate understands ({FORMAT_VERSION})")]
    TooNew(u32),
}

/// Seconds after `now` for `expires_in`, saturating.
fn expiry(now: u64, expires_in: Option<u64>) -> u64 {
    now.saturating_add(expires_in.unwrap_or(ASSUMED_LIFETIME_SECS))
}

impl TokenFile {
    /// Seconds the access token still lives at `now` (0 once expired).
    pub fn remaining(&self, now: u64) -> u64 {
        self.expires_at.saturating_sub(now)
    }

    /// Takes a refresh answer: the new access token, and the new refresh token when the
    /// issuer rotated it (else the old one stays: Google and others keep it valid).
    pub fn apply_refresh(&mut self, answer: TokenAnswer, now: u64) {
        self.access_token = answer.access_token.into();
        self.expires_at = expiry(now, answer.expires_in);
        if let Some(refresh) = answer.refresh_token {
            self.refresh_token = Some(refresh.into());
        }
        if answer.scope.is_some() {
            self.granted_scope = answer.scope;
        }
        self.login_required = None;
        self.updated_at = now;
    }

    /// Records that the issuer refused the grant; the tokens stay (a later `login` replaces
    /// them), but `print` asks for a sign-in instead of trying them again.
    pub fn mark_login_required(&mut self, reason: &str, now: u64) {
        self.login_required = Some(reason.to_owned());
        self.updated_at = now;
    }

    /// The file's JSON, ending with a newline.
    pub fn to_json(&self) -> String {
        let stored = Stored {
            version: FORMAT_VERSION,
            issuer: self.issuer.clone(),
            token_endpoint: self.token_endpoint.clone(),
            revocation_endpoint: self.revocation_endpoint.clone(),
            client_id: self.client_id.clone(),
            client_secret_file: self.client_secret_file.clone(),
            client_auth: self.client_auth.map(|m| m.name().to_owned()),
            ca_file: self.ca_file.clone(),
            scope: self.scope.clone(),
            granted_scope: self.granted_scope.clone(),
            resources: self.resources.clone(),
            refresh_token: self.refresh_token.as_ref().map(|t| t.expose().to_owned()),
            access_token: self.access_token.expose().to_owned(),
            expires_at: self.expires_at,
            login_required: self.login_required.clone(),
            updated_at: self.updated_at,
        };
        // Serialising plain strings, paths and numbers into a String cannot fail.
        let mut text = serde_json::to_string_pretty(&stored).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a file's JSON.
    pub fn from_json(text: &str) -> Result<Self, FormatError> {
        let stored: Stored =
            serde_json::from_str(text).map_err(|e| FormatError::Malformed(e.to_string()))?;
        if stored.version > FORMAT_VERSION {
            return Err(FormatError::TooNew(stored.version));
        }
        let client_auth = match stored.client_auth.as_deref() {
            None => None,
            Some("client_secret_basic") => Some(SecretMethod::Basic),
            Some("client_secret_post") => Some(SecretMethod::Post),
            Some(other) => {
                return Err(FormatError::Malformed(format!(
                    "unknown client_auth {other:?}"
                )))
            }
        };
        Ok(Self {
            issuer: stored.issuer,
            token_endpoint: stored.token_endpoint,
            revocation_endpoint: stored.revocation_endpoint,
            client_id: stored.client_id,
            client_secret_file: stored.client_secret_file,
            client_auth,
            ca_file: stored.ca_file,
            scope: stored.scope,
            granted_scope: stored.granted_scope,
            resources: stored.resources,
            refresh_token: stored
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(|t| Secret(SecretString::from(t))),
            access_token: Secret(SecretString::from(stored.access_token)),
            expires_at: stored.expires_at,
            login_required: stored.login_required,
            updated_at: stored.updated_at,
        })
    }
}

/// What a sign-in produced, before it becomes a [`TokenFile`].
#[derive(Debug)]
pub struct SignedIn {
    /// The issuer identifier from its metadata.
    pub issuer: String,
    /// Its token endpoint.
    pub token_endpoint: String,
    /// Its revocation endpoint, if any.
    pub revocation_endpoint: Option<String>,
    /// The client.
    pub client_id: String,
    /// The client secret's file and method, for a confidential client.
    pub client_secret: Option<(PathBuf, SecretMethod)>,
    /// The CA file given at sign-in.
    pub ca_file: Option<PathBuf>,
    /// The scope asked for.
    pub scope: String,
    /// The resources asked for.
    pub resources: Vec<String>,
}

impl SignedIn {
    /// The file for the tokens of `answer`, received at `now`.
    pub fn into_file(self, answer: TokenAnswer, now: u64) -> TokenFile {
        let (client_secret_file, client_auth) = match self.client_secret {
            Some((path, method)) => (Some(path), Some(method)),
            None => (None, None),
        };
        TokenFile {
            issuer: self.issuer,
            token_endpoint: self.token_endpoint,
            revocation_endpoint: self.revocation_endpoint,
            client_id: self.client_id,
            client_secret_file,
            client_auth,
            ca_file: self.ca_file,
            scope: self.scope,
            granted_scope: answer.scope,
            resources: self.resources,
            refresh_token: answer.refresh_token.map(Secret),
            access_token: Secret(answer.access_token),
            expires_at: expiry(now, answer.expires_in),
            login_required: None,
            updated_at: now,
        }
    }
}

/// The JSON on disk. Private, and never formatted: it holds the tokens in the clear.
#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    issuer: String,
    token_endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_endpoint: Option<String>,
    client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    granted_scope: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    access_token: String,
    expires_at: u64,
    #[serde(default)]
    login_required: Option<String>,
    #[serde(default)]
    updated_at: u64,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A file as a sign-in at `now` would write it, access token `at`, refresh token `rt`.
    pub(crate) fn sample(now: u64, lifetime: u64, at: &str, rt: &str) -> TokenFile {
        let signed_in = SignedIn {
            issuer: "https://mail.example.test".into(),
            token_endpoint: "https://mail.example.test/auth/token".into(),
            revocation_endpoint: Some("https://mail.example.test/auth/revoke".into()),
            client_id: "bearergate".into(),
            client_secret: None,
            ca_file: None,
            scope: crate::token::DEFAULT_SCOPE.into(),
            resources: Vec::new(),
        };
        signed_in.into_file(answer(at, Some(rt), Some(lifetime)), now)
    }

    pub(crate) fn answer(at: &str, rt: Option<&str>, expires_in: Option<u64>) -> TokenAnswer {
        TokenAnswer {
            access_token: SecretString::from(at),
            expires_in,
            refresh_token: rt.map(SecretString::from),
            scope: None,
        }
    }

    #[test]
    fn round_trips_through_json() {
        let mut file = sample(1_000, 3_600, "at-1", "rt-1");
        file.client_secret_file = Some("/etc/secret".into());
        file.client_auth = Some(SecretMethod::Post);
        file.resources = vec!["imap://mail.example.test".into()];
        let text = file.to_json();
        assert_eq!(TokenFile::from_json(&text).unwrap(), file);
        assert!(text.contains("\"version\": 1"));
        assert!(!format!("{file:?}").contains("at-1"));
        assert!(!format!("{file:?}").contains("rt-1"));
    }

    #[test]
    fn refresh_keeps_the_old_refresh_token_when_none_comes() {
        let mut file = sample(1_000, 3_600, "at-1", "rt-1");
        file.mark_login_required("x", 1_500);
        file.apply_refresh(answer("at-2", None, None), 2_000);
        assert_eq!(file.access_token.expose(), "at-2");
        assert_eq!(
            file.refresh_token.as_ref().map(Secret::expose),
            Some("rt-1")
        );
        assert_eq!(file.expires_at, 2_000 + ASSUMED_LIFETIME_SECS);
        assert_eq!(file.login_required, None);
        file.apply_refresh(answer("at-3", Some("rt-3"), Some(60)), 3_000);
        assert_eq!(
            file.refresh_token.as_ref().map(Secret::expose),
            Some("rt-3")
        );
        assert_eq!(file.remaining(3_030), 30);
        assert_eq!(file.remaining(9_000), 0);
    }

    #[test]
    fn refuses_other_files() {
        assert!(matches!(
            TokenFile::from_json("{}"),
            Err(FormatError::Malformed(_))
        ));
        let newer = sample(1, 1, "a", "r")
            .to_json()
            .replace("\"version\": 1", "\"version\": 9");
        assert_eq!(TokenFile::from_json(&newer), Err(FormatError::TooNew(9)));
    }
}
