//! What `print` does with a token file, decided without I/O: hand out the stored access
//! token, refresh, or ask for a sign-in; and after a failed refresh, which of those the
//! failure allows.
//!
//! The rule users of other token helpers asked for (email-oauth2-proxy #123, #358): a
//! failure that may pass — the network, the issuer's own trouble, a garbled answer, even our
//! configuration — never costs the grant. Only the issuer saying the grant itself is gone
//! (`invalid_grant`) ends it, and even then the file stays: it says how to sign in again.

use std::time::Duration;

use validator::client::{Fault, RequestError};

use super::store::TokenFile;

/// Refresh when the access token expires within this: a mail program may take a minute
/// between asking for the token and using it (connect, TLS, capability).
pub const DEFAULT_MIN_VALIDITY: Duration = Duration::from_secs(60);

/// After a failed refresh, the stored access token is still handed out while it has at
/// least this long to live: enough for a login to complete.
pub const STILL_USABLE_SECS: u64 = 5;

/// What to do with a token file now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The stored access token lives long enough.
    UseStored,
    /// Get a new access token with the refresh token.
    Refresh,
    /// Nothing can be done without a new sign-in.
    SignIn(SignInReason),
}

/// Why a sign-in is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInReason {
    /// The issuer refused the grant earlier; its words.
    Refused(String),
    /// The access token expired and the issuer gave no refresh token.
    NoRefreshToken,
}

/// The plan for `file` at `now` (seconds since the epoch), refreshing when the access token
/// has `min_validity` or less to live.
pub fn plan(file: &TokenFile, now: u64, min_validity: Duration) -> Plan {
    if let Some(reason) = &file.login_required {
        return Plan::SignIn(SignInReason::Refused(reason.clone()));
    }
    if file.remaining(now) > min_validity.as_secs() {
        return Plan::UseStored;
    }
    match &file.refresh_token {
        Some(_) => Plan::Refresh,
        // Nothing better will come; what is left of this one is still worth handing out.
        None if file.remaining(now) >= STILL_USABLE_SECS => Plan::UseStored,
        None => Plan::SignIn(SignInReason::NoRefreshToken),
    }
}

/// What a failed refresh leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Hand out the stored access token, which still lives, with a warning; the file is
    /// untouched.
    UseStored,
    /// Fail for now, keeping the file untouched: the same grant may work later.
    TryLater,
    /// Fail until the configuration changes (client id or secret, scope, CA file); the
    /// file is untouched.
    FixConfiguration,
    /// The grant is gone: mark the file and ask for a sign-in.
    SignInAgain,
}

/// The consequence of `error` for `file` at `now`.
pub fn after_failure(error: &RequestError, file: &TokenFile, now: u64) -> AfterFailure {
    let fault = error.fault();
    if fault == Fault::Grant {
        return AfterFailure::SignInAgain;
    }
    if file.remaining(now) >= STILL_USABLE_SECS {
        return AfterFailure::UseStored;
    }
    match fault {
        Fault::Ours => AfterFailure::FixConfiguration,
        Fault::Network | Fault::Server | Fault::Pending | Fault::Grant => AfterFailure::TryLater,
    }
}

#[cfg(test)]
mod tests {
    use validator::client::{ErrorCode, Refusal};

    use super::*;
    use crate::token::store::tests::sample;

    const MIN: Duration = DEFAULT_MIN_VALIDITY;

    #[test]
    fn refreshes_within_the_minimum_validity() {
        let file = sample(1_000, 3_600, "at", "rt");
        assert_eq!(plan(&file, 1_000, MIN), Plan::UseStored);
        assert_eq!(plan(&file, 4_539, MIN), Plan::UseStored);
        assert_eq!(plan(&file, 4_540, MIN), Plan::Refresh);
        assert_eq!(plan(&file, 9_999, MIN), Plan::Refresh);
        // A longer minimum forces a refresh of a young token.
        assert_eq!(
            plan(&file, 1_000, Duration::from_secs(7_200)),
            Plan::Refresh
        );
    }

    #[test]
    fn marked_or_refreshless_files_ask_for_a_sign_in() {
        let mut file = sample(1_000, 3_600, "at", "rt");
        file.mark_login_required("invalid_grant", 1_100);
        assert_eq!(
            plan(&file, 1_200, MIN),
            Plan::SignIn(SignInReason::Refused("invalid_grant".into()))
        );
        let mut file = sample(1_000, 3_600, "at", "rt");
        file.refresh_token = None;
        assert_eq!(plan(&file, 4_590, MIN), Plan::UseStored);
        assert_eq!(
            plan(&file, 4_596, MIN),
            Plan::SignIn(SignInReason::NoRefreshToken)
        );
    }

    fn refused(status: u16, code: &str) -> RequestError {
        RequestError::Refused(Refusal {
            status,
            code: ErrorCode::parse(code),
            description: None,
        })
    }

    #[test]
    fn only_a_refused_grant_ends_it() {
        let file = sample(1_000, 3_600, "at", "rt");
        let alive = 4_570; // 30 s left
        let dead = 5_000;
        let table = [
            (
                RequestError::Network("connection refused".into()),
                AfterFailure::TryLater,
            ),
            (
                RequestError::Server {
                    status: Some(503),
                    detail: "x".into(),
                },
                AfterFailure::TryLater,
            ),
            (
                RequestError::Server {
                    status: Some(200),
                    detail: "not JSON".into(),
                },
                AfterFailure::TryLater,
            ),
            (
                refused(400, "temporarily_unavailable"),
                AfterFailure::TryLater,
            ),
            (refused(400, "slow_down"), AfterFailure::TryLater),
            (
                refused(401, "invalid_client"),
                AfterFailure::FixConfiguration,
            ),
            (
                refused(400, "invalid_scope"),
                AfterFailure::FixConfiguration,
            ),
            (
                RequestError::Setup("bad CA file".into()),
                AfterFailure::FixConfiguration,
            ),
            (refused(400, "invalid_grant"), AfterFailure::SignInAgain),
        ];
        for (error, when_dead) in table {
            assert_eq!(after_failure(&error, &file, dead), when_dead, "{error:?}");
            let when_alive = if when_dead == AfterFailure::SignInAgain {
                AfterFailure::SignInAgain
            } else {
                AfterFailure::UseStored
            };
            assert_eq!(after_failure(&error, &file, alive), when_alive, "{error:?}");
        }
    }
}
