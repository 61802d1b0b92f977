//! `print` and `logout`: the lock, the file, at most one refresh, and what each outcome
//! means for the person. The refresh itself is a function handed in, so that the tests can
//! count requests and fail them at will.

use std::time::Duration;

use validator::client::{
    ClientCredentials, ClientOptions, Grant, OAuthClient, RequestError, SecretMethod, TokenAnswer,
    TokenHint, Url,
};

use super::disk::{self, StoreError};
use super::policy::{self, AfterFailure, Plan, SignInReason};
use super::store::{Secret, TokenFile};
use super::{Exit, Failure, Target};

/// The access token to print, and what the person should know about it.
#[derive(Debug)]
pub struct Fresh {
    /// The token.
    pub token: Secret,
    /// Printed on standard error: the token was not refreshed though it should have been.
    pub warning: Option<String>,
    /// Whether a refresh request was made (and succeeded).
    pub refreshed: bool,
}

/// A valid access token from `target`'s file: the stored one if it lives longer than
/// `min_validity`, else a refreshed one, stored (atomically) before it is returned. All of
/// it under the file's exclusive lock, so concurrent callers wait and then find the token
/// the first one stored. `now` is the clock (seconds since the epoch).
pub fn fresh_token(
    target: &Target,
    now: &dyn Fn() -> u64,
    min_validity: Duration,
    refresh: impl FnOnce(&TokenFile) -> Result<TokenAnswer, RequestError>,
) -> Result<Fresh, Failure> {
    let path = &target.path;
    let _lock = disk::lock(path).map_err(|e| missing_means_sign_in(e, target))?;
    let mut file = disk::read(path).map_err(|e| missing_means_sign_in(e, target))?;
    match policy::plan(&file, now(), min_validity) {
        Plan::UseStored => {
            return Ok(Fresh {
                token: file.access_token,
                warning: None,
                refreshed: false,
            })
        }
        Plan::SignIn(reason) => {
            let why = match reason {
                SignInReason::Refused(why) => format!("this sign-in was refused earlier ({why})"),
                SignInReason::NoRefreshToken => {
                    "the access token expired and the issuer gave no refresh token".to_owned()
                }
            };
            return Err(Failure::new(
                Exit::SignIn,
                format!("{why}; sign in again: {}", target.login_command(&file)),
            ));
        }
        Plan::Refresh => {}
    }
    let error = match refresh(&file) {
        Ok(answer) => {
            file.apply_refresh(answer, now());
            // A rotated refresh token that is not stored is a grant lost: never hand out the
            // access token without having kept its refresh token.
            disk::write(path, &file).map_err(|e| {
                Failure::new(
                    Exit::IoError,
                    format!(
                        "{e}; the issuer has already replaced the stored refresh token, so \
                         sign in again once the file can be written: {}",
                        target.login_command(&file)
                    ),
                )
            })?;
            return Ok(Fresh {
                token: file.access_token,
                warning: None,
                refreshed: true,
            });
        }
        Err(error) => error,
    };
    let at = now();
    match policy::after_failure(&error, &file, at) {
        AfterFailure::UseStored => Ok(Fresh {
            warning: Some(format!(
                "cannot refresh the access token ({error}); using the stored one, valid for \
                 {} s more",
                file.remaining(at)
            )),
            token: file.access_token,
            refreshed: false,
        }),
        AfterFailure::TryLater => Err(Failure::new(
            Exit::TryLater,
            format!(
                "cannot refresh the access token now: {error}; the sign-in is kept, try again \
                 later"
            ),
        )),
        AfterFailure::FixConfiguration => Err(Failure::new(
            Exit::Configuration,
            format!(
                "the issuer refused the refresh request: {error}; the sign-in is kept. Check \
                 the client id, client secret file, scope and CA file, or sign in again: {}",
                target.login_command(&file)
            ),
        )),
        AfterFailure::SignInAgain => {
            file.mark_login_required(&error.to_string(), at);
            let kept = disk::write(path, &file);
            let mut message = format!(
                "{error}: this sign-in is no longer valid; sign in again: {}",
                target.login_command(&file)
            );
            if let Err(e) = kept {
                message.push_str(&format!(" (and: {e})"));
            }
            Err(Failure::new(Exit::SignIn, message))
        }
    }
}

fn missing_means_sign_in(error: StoreError, target: &Target) -> Failure {
    match error {
        StoreError::Missing { path } => Failure::new(
            Exit::SignIn,
            format!(
                "no token file at {}; sign in first: bearergate token login --issuer URL{}{}",
                path.display(),
                if target.option.is_empty() { "" } else { " " },
                target.option
            ),
        ),
        other => other.into(),
    }
}

/// Client credentials: `client_id`, and the secret read from `secret_file` when there is one
/// (trailing line breaks dropped), to be sent by `method` (HTTP Basic when not given).
pub fn credentials(
    client_id: &str,
    secret_file: Option<&std::path::Path>,
    method: Option<SecretMethod>,
) -> Result<ClientCredentials, RequestError> {
    let secret = match secret_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                RequestError::Setup(format!(
                    "cannot read the client secret file {}: {e}",
                    path.display()
                ))
            })?;
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                return Err(RequestError::Setup(format!(
                    "the client secret file {} is empty",
                    path.display()
                )));
            }
            Some(secrecy::SecretString::from(secret.to_owned()))
        }
    };
    Ok(ClientCredentials {
        client_id: client_id.to_owned(),
        secret,
        method: method.unwrap_or(SecretMethod::Basic),
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, RequestError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RequestError::Setup(format!("cannot start the runtime: {e}")))
}

fn endpoint(raw: &str, what: &str) -> Result<Url, RequestError> {
    Url::parse(raw).map_err(|e| RequestError::Setup(format!("the stored {what} {raw:?}: {e}")))
}

/// The refresh request for `file` (RFC 6749 §6), through [`validator::client`].
pub fn refresh(file: &TokenFile, timeout: Duration) -> Result<TokenAnswer, RequestError> {
    let Some(refresh_token) = &file.refresh_token else {
        return Err(RequestError::Setup(
            "the file holds no refresh token".to_owned(),
        ));
    };
    let options = ClientOptions {
        timeout,
        ca_file: file.ca_file.clone(),
    };
    let client = OAuthClient::new(&options)?;
    let credentials = credentials(
        &file.client_id,
        file.client_secret_file.as_deref(),
        file.client_auth,
    )?;
    let endpoint = endpoint(&file.token_endpoint, "token endpoint")?;
    let grant = Grant::RefreshToken {
        refresh_token: &refresh_token.0,
        resources: &file.resources,
    };
    runtime()?.block_on(client.token(&endpoint, &credentials, grant))
}

/// `logout`: revokes the grant at the issuer (unless `revoke` is false) and removes the
/// file. A failed revocation keeps the file, so that it can be tried again.
pub fn logout(target: &Target, revoke: bool, timeout: Duration) -> Result<String, Failure> {
    let path = &target.path;
    let lock = match disk::lock(path) {
        Err(StoreError::Missing { path }) => {
            return Ok(format!(
                "no token file at {}; nothing to do",
                path.display()
            ))
        }
        lock => lock?,
    };
    let file = match disk::read(path) {
        Ok(file) => file,
        Err(StoreError::Missing { path }) => {
            return Ok(format!(
                "no token file at {}; nothing to do",
                path.display()
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let mut said = String::new();
    match (&file.revocation_endpoint, revoke) {
        (_, false) => said.push_str("not revoked at the issuer (as asked); "),
        (None, true) => said.push_str(
            "the issuer has no revocation endpoint, so the grant lives until it expires; ",
        ),
        (Some(raw), true) => {
            let revoked = revoke_grant(&file, raw, timeout);
            revoked.map_err(|e| {
                let mut failure = Failure::request("cannot revoke the grant", &e);
                failure.message.push_str(&format!(
                    "; the file is kept (remove it without revoking: bearergate token logout \
                     --no-revoke {})",
                    target.option
                ));
                failure
            })?;
            said.push_str("the grant is revoked; ");
        }
    }
    disk::remove(path)?;
    drop(lock);
    Ok(format!("{said}{} removed", path.display()))
}

fn revoke_grant(file: &TokenFile, raw: &str, timeout: Duration) -> Result<(), RequestError> {
    let options = ClientOptions {
        timeout,
        ca_file: file.ca_file.clone(),
    };
    let client = OAuthClient::new(&options)?;
    let credentials = credentials(
        &file.client_id,
        file.client_secret_file.as_deref(),
        file.client_auth,
    )?;
    let endpoint = endpoint(raw, "revocation endpoint")?;
    // Revoking the refresh token ends the grant (RFC 7009 §2.1: its access tokens too,
    // where the issuer supports that).
    let (token, hint) = match &file.refresh_token {
        Some(refresh) => (&refresh.0, TokenHint::RefreshToken),
        None => (&file.access_token.0, TokenHint::AccessToken),
    };
    runtime()?.block_on(client.revoke(&endpoint, &credentials, token, hint))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    use validator::client::{ErrorCode, Refusal};

    use super::*;
    use crate::token::disk::tests::Scratch;
    use crate::token::policy::DEFAULT_MIN_VALIDITY;
    use crate::token::store::tests::{answer, sample};

    fn target(scratch: &Scratch) -> Target {
        let path = scratch.0.join("acct.json");
        Target {
            option: format!("--token-file {}", path.display()),
            path,
        }
    }

    fn no_refresh(_: &TokenFile) -> Result<TokenAnswer, RequestError> {
        panic!("no refresh expected")
    }

    fn refused(code: &str) -> RequestError {
        RequestError::Refused(Refusal {
            status: 400,
            code: ErrorCode::parse(code),
            description: None,
        })
    }

    const NOW: u64 = 1_000_000;

    #[test]
    fn fresh_tokens_are_printed_without_a_request() {
        let scratch = Scratch::new("fresh");
        let target = target(&scratch);
        disk::write(&target.path, &sample(NOW, 3_600, "at-1", "rt-1")).unwrap();
        let fresh = fresh_token(&target, &|| NOW + 100, DEFAULT_MIN_VALIDITY, no_refresh).unwrap();
        assert_eq!(fresh.token.expose(), "at-1");
        assert!(!fresh.refreshed && fresh.warning.is_none());
    }

    #[test]
    fn refresh_is_stored_before_the_token_is_handed_out() {
        let scratch = Scratch::new("refresh");
        let target = target(&scratch);
        disk::write(&target.path, &sample(NOW, 3_600, "at-1", "rt-1")).unwrap();
        let later = NOW + 3_570;
        let fresh = fresh_token(&target, &|| later, DEFAULT_MIN_VALIDITY, |file| {
            assert_eq!(
                file.refresh_token.as_ref().map(Secret::expose),
                Some("rt-1")
            );
            Ok(answer("at-2", Some("rt-2"), Some(3_600)))
        })
        .unwrap();
        assert_eq!(fresh.token.expose(), "at-2");
        assert!(fresh.refreshed);
        let stored = disk::read(&target.path).unwrap();
        assert_eq!(
            stored.refresh_token.as_ref().map(Secret::expose),
            Some("rt-2")
        );
        assert_eq!(stored.expires_at, later + 3_600);
    }

    #[test]
    fn temporary_failures_keep_the_file_untouched() {
        let scratch = Scratch::new("temporary");
        let target = target(&scratch);
        disk::write(&target.path, &sample(NOW, 3_600, "at-1", "rt-1")).unwrap();
        let before = fs::read(&target.path).unwrap();
        let down = |_: &TokenFile| Err(RequestError::Network("connection refused".into()));
        // Still valid for 30 s: handed out with a warning.
        let fresh = fresh_token(&target, &|| NOW + 3_570, DEFAULT_MIN_VALIDITY, down).unwrap();
        assert_eq!(fresh.token.expose(), "at-1");
        assert!(fresh.warning.unwrap().contains("connection refused"));
        // Expired: fails with "try later".
        for error in [
            RequestError::Network("connection refused".into()),
            RequestError::Server {
                status: Some(503),
                detail: "down".into(),
            },
            RequestError::Server {
                status: Some(200),
                detail: "not JSON".into(),
            },
            refused("temporarily_unavailable"),
            refused("slow_down"),
        ] {
            let failure = fresh_token(&target, &|| NOW + 4_000, DEFAULT_MIN_VALIDITY, |_| {
                Err(error.clone())
            })
            .unwrap_err();
            assert_eq!(failure.exit, Exit::TryLater, "{error:?}");
            assert!(failure.message.contains("kept"), "{}", failure.message);
        }
        let failure = fresh_token(&target, &|| NOW + 4_000, DEFAULT_MIN_VALIDITY, |_| {
            Err(refused("invalid_client"))
        })
        .unwrap_err();
        assert_eq!(failure.exit, Exit::Configuration);
        assert_eq!(fs::read(&target.path).unwrap(), before);
    }

    #[test]
    fn invalid_grant_marks_the_file_and_asks_for_a_sign_in() {
        let scratch = Scratch::new("grant");
        let target = target(&scratch);
        disk::write(&target.path, &sample(NOW, 3_600, "at-1", "rt-1")).unwrap();
        let failure = fresh_token(&target, &|| NOW + 4_000, DEFAULT_MIN_VALIDITY, |_| {
            Err(refused("invalid_grant"))
        })
        .unwrap_err();
        assert_eq!(failure.exit, Exit::SignIn);
        assert!(
            failure.message.contains(&format!(
                "sign in again: bearergate token login --issuer https://mail.example.test --token-file {}",
                target.path.display()
            )),
            "{}",
            failure.message
        );
        let stored = disk::read(&target.path).unwrap();
        assert!(stored.login_required.unwrap().contains("invalid_grant"));
        assert_eq!(
            stored.refresh_token.as_ref().map(Secret::expose),
            Some("rt-1")
        );
        // No further request with a refused grant.
        let failure =
            fresh_token(&target, &|| NOW + 4_001, DEFAULT_MIN_VALIDITY, no_refresh).unwrap_err();
        assert_eq!(failure.exit, Exit::SignIn);
    }

    #[test]
    fn missing_file_asks_for_a_sign_in() {
        let scratch = Scratch::new("missing");
        let failure =
            fresh_token(&target(&scratch), &|| NOW, DEFAULT_MIN_VALIDITY, no_refresh).unwrap_err();
        assert_eq!(failure.exit, Exit::SignIn);
        assert!(failure.message.contains("sign in first"));
    }

    /// Two callers at once with a token due for refresh: one request, and both get its
    /// token. The refresh also checks that the lock is held while it runs.
    #[test]
    fn concurrent_callers_refresh_once() {
        let scratch = Scratch::new("concurrent");
        let target = target(&scratch);
        disk::write(&target.path, &sample(NOW, 3_600, "at-1", "rt-1")).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(4));
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let (target, requests, start) =
                    (target.clone(), Arc::clone(&requests), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    fresh_token(&target, &|| NOW + 3_590, DEFAULT_MIN_VALIDITY, |file| {
                        let other = fs::File::open(disk::lock_path(&target.path)).unwrap();
                        assert!(matches!(
                            other.try_lock(),
                            Err(fs::TryLockError::WouldBlock)
                        ));
                        assert_eq!(
                            file.refresh_token.as_ref().map(Secret::expose),
                            Some("rt-1")
                        );
                        requests.fetch_add(1, Ordering::SeqCst);
                        Ok(answer("at-2", Some("rt-2"), Some(3_600)))
                    })
                    .unwrap()
                })
            })
            .collect();
        let tokens: Vec<String> = callers
            .into_iter()
            .map(|c| c.join().unwrap().token.expose().to_owned())
            .collect();
        assert_eq!(requests.load(Ordering::SeqCst), 1);
        assert!(tokens.iter().all(|t| t == "at-2"), "{tokens:?}");
    }
}
