//! The device flow's polling (RFC 8628 §3.4, §3.5) as a state machine without I/O: told the
//! answer to each poll and how long the flow has run, it says how long to wait before the
//! next one, or how the flow ended.
//!
//! - The first poll waits one interval (the issuer's, else 5 s; at least 1 s).
//! - `authorization_pending`: poll again after the interval.
//! - `slow_down`: the interval grows by 5 s "for this and all subsequent requests".
//! - A failure that may pass (network, 5xx, garbled answer): wait longer each time, doubling
//!   up to a minute (§3.5 asks for back-off on timeouts), and keep polling.
//! - `access_denied`, `expired_token`, or the codes' lifetime running out: stop.
//! - Anything else (`invalid_client`, `invalid_grant`, …): stop with the error.

use std::time::Duration;

use validator::client::{DeviceAuthorization, ErrorCode, Fault, RequestError, TokenAnswer};

/// RFC 8628 §3.2: the interval when the issuer names none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// RFC 8628 §3.5: what `slow_down` adds.
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// The longest wait after failures that may pass.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Where polling stands.
#[derive(Debug)]
pub struct DevicePoll {
    interval: Duration,
    lifetime: Duration,
    /// Failures that may pass, in a row.
    troubles: u32,
}

/// What to do next.
#[derive(Debug)]
pub enum PollStep {
    /// Wait this long, then poll.
    Wait(Duration),
    /// The person approved: the tokens.
    Granted(Box<TokenAnswer>),
    /// The person refused.
    Denied,
    /// The codes expired before the person decided.
    Expired,
    /// The issuer refused for another reason, or our setup is wrong.
    Failed(RequestError),
}

impl DevicePoll {
    /// Polling for codes that live `expires_in` seconds, every `interval` seconds (the
    /// issuer's answer; `None` for the default).
    pub fn new(interval: Option<u64>, expires_in: u64) -> Self {
        let interval = interval.map_or(DEFAULT_INTERVAL, |secs| Duration::from_secs(secs.max(1)));
        Self {
            interval,
            lifetime: Duration::from_secs(expires_in),
            troubles: 0,
        }
    }

    /// The interval now (after any `slow_down`).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The first step, at the start of the flow.
    pub fn start(&self) -> PollStep {
        self.wait(self.interval, Duration::ZERO)
    }

    /// The step after a poll answered `answer`, `elapsed` after the device authorization.
    pub fn on_answer(
        &mut self,
        answer: Result<TokenAnswer, RequestError>,
        elapsed: Duration,
    ) -> PollStep {
        let error = match answer {
            Ok(tokens) => return PollStep::Granted(Box::new(tokens)),
            Err(error) => error,
        };
        match error.code() {
            Some(ErrorCode::AuthorizationPending) => {
                self.troubles = 0;
                return self.wait(self.interval, elapsed);
            }
            Some(ErrorCode::SlowDown) => {
                self.troubles = 0;
                // Saturating: the interval is the issuer's number, and may be absurd.
                self.interval = self.interval.saturating_add(SLOW_DOWN_STEP);
                return self.wait(self.interval, elapsed);
            }
            Some(ErrorCode::AccessDenied) => return PollStep::Denied,
            Some(ErrorCode::ExpiredToken) => return PollStep::Expired,
            _ => {}
        }
        match error.fault() {
            Fault::Network | Fault::Server => {
                self.troubles = self.troubles.saturating_add(1);
                let factor = 1u32 << self.troubles.min(6);
                let backoff = self
                    .interval
                    .saturating_mul(factor)
                    .min(MAX_BACKOFF)
                    .max(self.interval);
                self.wait(backoff, elapsed)
            }
            Fault::Ours | Fault::Grant | Fault::Pending => PollStep::Failed(error),
        }
    }

    /// Wait `pause`, unless the codes expire before it is over (a sum beyond `Duration`'s
    /// range counts as after the expiry).
    fn wait(&self, pause: Duration, elapsed: Duration) -> PollStep {
        if elapsed.saturating_add(pause) >= self.lifetime {
            return PollStep::Expired;
        }
        PollStep::Wait(pause)
    }
}

/// The one line that tells the person what to do: where to go, what to type, for how long,
/// and the address with the code filled in when the issuer gives one.
pub fn progress_line(authorization: &DeviceAuthorization) -> String {
    let mut line = format!(
        "To sign in, open {} and enter {} (expires in {})",
        authorization.verification_uri,
        authorization.user_code,
        lifetime(authorization.expires_in)
    );
    if let Some(complete) = &authorization.verification_uri_complete {
        line.push_str(", or open ");
        line.push_str(complete);
    }
    line
}

/// "30 min", "90 s".
fn lifetime(secs: u64) -> String {
    if secs >= 120 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use validator::client::Refusal;

    use super::*;

    fn refused(code: &str) -> Result<TokenAnswer, RequestError> {
        Err(RequestError::Refused(Refusal {
            status: 400,
            code: ErrorCode::parse(code),
            description: None,
        }))
    }

    fn waits(step: &PollStep) -> Option<u64> {
        match step {
            PollStep::Wait(d) => Some(d.as_secs()),
            _ => None,
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn pending_then_slow_down_then_granted() {
        let mut poll = DevicePoll::new(Some(5), 1_800);
        assert_eq!(waits(&poll.start()), Some(5));
        assert_eq!(
            waits(&poll.on_answer(refused("authorization_pending"), S(5))),
            Some(5)
        );
        assert_eq!(
            waits(&poll.on_answer(refused("slow_down"), S(10))),
            Some(10)
        );
        // Slower for all later polls too.
        assert_eq!(
            waits(&poll.on_answer(refused("authorization_pending"), S(20))),
            Some(10)
        );
        assert_eq!(
            waits(&poll.on_answer(refused("slow_down"), S(30))),
            Some(15)
        );
        assert_eq!(poll.interval(), S(15));
        let tokens = TokenAnswer {
            access_token: SecretString::from("at"),
            expires_in: Some(60),
            refresh_token: None,
            scope: None,
        };
        assert!(matches!(
            poll.on_answer(Ok(tokens), S(45)),
            PollStep::Granted(_)
        ));
    }

    #[test]
    fn one_progress_line() {
        let mut authorization = DeviceAuthorization {
            device_code: SecretString::from("dc"),
            user_code: "WDJB-MJHT".into(),
            verification_uri: "https://example.test/device".into(),
            verification_uri_complete: None,
            expires_in: 1_800,
            interval: None,
        };
        assert_eq!(
            progress_line(&authorization),
            "To sign in, open https://example.test/device and enter WDJB-MJHT (expires in 30 min)"
        );
        authorization.verification_uri_complete =
            Some("https://example.test/device?user_code=WDJB-MJHT".into());
        authorization.expires_in = 90;
        let line = progress_line(&authorization);
        assert!(line.ends_with(
            "(expires in 90 s), or open https://example.test/device?user_code=WDJB-MJHT"
        ));
        assert!(!line.contains('\n') && !line.contains("dc"));
    }

    #[test]
    fn default_and_minimum_interval() {
        assert_eq!(DevicePoll::new(None, 600).interval(), S(5));
        assert_eq!(DevicePoll::new(Some(0), 600).interval(), S(1));
    }

    #[test]
    fn stops_at_expiry_denial_and_hard_errors() {
        let mut poll = DevicePoll::new(Some(5), 30);
        assert!(matches!(
            poll.on_answer(refused("authorization_pending"), S(26)),
            PollStep::Expired
        ));
        assert!(matches!(
            poll.on_answer(refused("authorization_pending"), S(24)),
            PollStep::Wait(_)
        ));
        assert!(matches!(
            poll.on_answer(refused("access_denied"), S(10)),
            PollStep::Denied
        ));
        assert!(matches!(
            poll.on_answer(refused("expired_token"), S(10)),
            PollStep::Expired
        ));
        for code in ["invalid_client", "invalid_grant", "unauthorized_client"] {
            assert!(
                matches!(poll.on_answer(refused(code), S(10)), PollStep::Failed(_)),
                "{code}"
            );
        }
        assert!(matches!(
            DevicePoll::new(Some(5), 5).start(),
            PollStep::Expired
        ));
    }

    #[test]
    fn absurd_intervals_from_the_issuer_end_the_flow_instead_of_a_panic() {
        // `interval` and `expires_in` come from the issuer's answer: any u64.
        let huge = DevicePoll::new(Some(u64::MAX), u64::MAX);
        assert!(matches!(huge.start(), PollStep::Expired));
        let mut poll = DevicePoll::new(Some(u64::MAX - 1), 600);
        assert!(matches!(poll.start(), PollStep::Expired));
        assert!(matches!(
            poll.on_answer(refused("slow_down"), S(1)),
            PollStep::Expired
        ));
        let down = Err(RequestError::Network("connection refused".into()));
        assert!(matches!(poll.on_answer(down, S(1)), PollStep::Expired));
        let mut slow = DevicePoll::new(Some(u64::MAX / 2), u64::MAX);
        let down = Err(RequestError::Network("connection refused".into()));
        assert!(matches!(
            slow.on_answer(down, S(u64::MAX - 1)),
            PollStep::Expired
        ));
    }

    #[test]
    fn outages_back_off_and_recover() {
        let mut poll = DevicePoll::new(Some(5), 3_600);
        let down = || Err(RequestError::Network("connection refused".into()));
        let waited: Vec<_> = (0..6)
            .map(|_| waits(&poll.on_answer(down(), S(10))).unwrap())
            .collect();
        assert_eq!(waited, [10, 20, 40, 60, 60, 60]);
        let busy = Err(RequestError::Server {
            status: Some(503),
            detail: "x".into(),
        });
        assert_eq!(waits(&poll.on_answer(busy, S(10))), Some(60));
        assert_eq!(
            waits(&poll.on_answer(refused("authorization_pending"), S(10))),
            Some(5)
        );
        assert_eq!(waits(&poll.on_answer(down(), S(10))), Some(10));
    }
}
