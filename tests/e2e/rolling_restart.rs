//! A rolling restart: a second instance starts on the same addresses (`reuse_port`, on by
//! default) while the first one serves, then the first gets SIGTERM and drains. A load tool
//! logging in all along counts no failed login, and a session relaying through the first
//! instance runs to its end, byte-identical.

use std::time::Duration;

use crate::support::imap_client::last_status;
use crate::support::load::{allow_request_migration, logins_served, LoginLoad};
use crate::support::{connect, login, oauthbearer_b64, signal, test_message, TestEnv, TlsMode};

/// Parallel logins the load tool keeps going.
const LOAD_WORKERS: usize = 4;
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_loses_no_login_and_cuts_no_relaying_session() {
    allow_request_migration();
    let env = TestEnv::new("rolling-restart");
    let message = env
        .dovecot
        .deliver("alice", &test_message("rolling restart", 16 * 1024));
    let token = env.idp.issue("alice");
    let mut config = env.proxy_config();
    config.top_level.push("drain_timeout = \"60s\"".into());
    config.log_level = "info".into();
    let mut old = env.start_proxy_with(&config);
    let address = old.addr(TlsMode::None);

    // A session that logs in before the restart and is still relaying after it.
    let (mut session, _) = connect(&env, &old, TlsMode::Implicit).await;
    login(&mut session, "a", "alice", &token).await;
    let select = session.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");

    let mut load = LoginLoad::start(address, oauthbearer_b64("alice", &token), LOAD_WORKERS);
    load.go_on(20, WAIT, "before the restart").await;

    // The new instance binds the same addresses while the old one serves.
    let new = env.start_proxy_with(&config);
    assert!(
        new.wait_for_log_where(WAIT, |log| log.contains("logged in")),
        "the new instance served no login while both ran:\n{}",
        new.log()
    );
    signal("-TERM", old.pid());
    assert!(
        old.wait_for_log("shutting down", WAIT),
        "the old instance did not start draining:\n{}",
        old.log()
    );
    load.go_on(20, WAIT, "while the old instance drains").await;

    // The old instance's relaying session carries on, byte-identical, to its end.
    assert!(
        session.fetch_body("c", 1).await == message,
        "FETCH through the draining instance differs"
    );
    let logout = session.command("d", "LOGOUT").await;
    assert!(logout.iter().any(|l| l.starts_with("* BYE")), "{logout:?}");
    let status = old
        .wait_exit(WAIT)
        .expect("the old instance still runs after its last session ended");
    assert!(status.success(), "old instance exit status {status}");

    load.go_on(20, WAIT, "after the old instance exited").await;
    load.finish()
        .await
        .assert_no_failure("during the rolling restart");
    let (by_old, by_new) = (logins_served(&old), logins_served(&new));
    assert!(
        by_old > 20 && by_new > 20,
        "logins served: old {by_old}, new {by_new}"
    );
}
