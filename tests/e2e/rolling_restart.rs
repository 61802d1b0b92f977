//! A rolling restart: a second instance starts on the same addresses (`reuse_port`, on by
//! default) while the first one serves, then the first gets SIGTERM and drains. A load tool
//! logging in all along counts no failed login, and a session relaying through the first
//! instance runs to its end, byte-identical.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::support::imap_client::last_status;
use crate::support::{
    connect, login, oauthbearer_b64, run, signal, test_message, Proxy, TestEnv, TlsMode,
};

/// Parallel logins the load tool keeps going.
const LOAD_WORKERS: usize = 4;
/// One login's whole exchange, far above what a loopback login takes.
const LOGIN_DEADLINE: Duration = Duration::from_secs(20);
const WAIT: Duration = Duration::from_secs(30);

/// Lets the kernel move connections queued on a closing listener to its `SO_REUSEPORT`
/// sibling (Linux 5.14+), as the README asks of a host that does rolling restarts.
fn allow_request_migration() {
    let output =
        run(std::process::Command::new("sysctl").args(["-w", "net.ipv4.tcp_migrate_req=1"]));
    assert!(
        output.status.success(),
        "sysctl net.ipv4.tcp_migrate_req=1: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// One whole plaintext IMAP login and logout; `Err` says what went wrong instead of panicking,
/// so that the load tool can count failures.
async fn one_login(address: std::net::SocketAddr, initial_response: &str) -> Result<(), String> {
    let exchange = async {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = String::new();
        read.read_line(&mut line)
            .await
            .map_err(|e| format!("greeting: {e}"))?;
        if !line.starts_with("* OK") {
            return Err(format!("greeting {line:?}"));
        }
        write
            .write_all(format!("a AUTHENTICATE OAUTHBEARER {initial_response}\r\n").as_bytes())
            .await
            .map_err(|e| format!("send AUTHENTICATE: {e}"))?;
        loop {
            line.clear();
            let n = read
                .read_line(&mut line)
                .await
                .map_err(|e| format!("login reply: {e}"))?;
            if n == 0 {
                return Err("closed during login".to_owned());
            }
            if line.starts_with("a ") {
                break;
            }
        }
        if !line.starts_with("a OK") {
            return Err(format!("login answered {line:?}"));
        }
        write
            .write_all(b"b LOGOUT\r\n")
            .await
            .map_err(|e| format!("send LOGOUT: {e}"))?;
        let mut rest = Vec::new();
        read.read_to_end(&mut rest)
            .await
            .map_err(|e| format!("logout: {e}"))?;
        if !String::from_utf8_lossy(&rest).contains("b OK") {
            return Err("no tagged OK for LOGOUT".to_owned());
        }
        Ok(())
    };
    tokio::time::timeout(LOGIN_DEADLINE, exchange)
        .await
        .map_err(|_| "login took too long".to_owned())?
}

/// Logins counted by the load tool.
#[derive(Debug, Default)]
struct Tally {
    succeeded: AtomicUsize,
    failures: std::sync::Mutex<Vec<String>>,
}

/// Starts the load: each worker logs in and out in a loop until `stop`; every success is
/// published on the returned channel's total.
fn start_load(
    address: std::net::SocketAddr,
    initial_response: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) -> (watch::Receiver<usize>, Vec<tokio::task::JoinHandle<()>>) {
    let (progress, seen) = watch::channel(0);
    let progress = Arc::new(progress);
    let workers = (0..LOAD_WORKERS)
        .map(|_| {
            let (tally, stop, progress) = (tally.clone(), stop.clone(), progress.clone());
            let initial_response = initial_response.clone();
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match one_login(address, &initial_response).await {
                        Ok(()) => {
                            let total = tally.succeeded.fetch_add(1, Ordering::Relaxed) + 1;
                            progress.send_replace(total);
                        }
                        Err(why) => tally.failures.lock().expect("tally lock").push(why),
                    }
                }
            })
        })
        .collect();
    (seen, workers)
}

/// Waits until the load tool has counted `more` successful logins after now.
async fn logins_go_on(seen: &mut watch::Receiver<usize>, more: usize, what: &str) {
    let from = *seen.borrow_and_update();
    tokio::time::timeout(WAIT, seen.wait_for(|total| *total >= from + more))
        .await
        .unwrap_or_else(|_| panic!("{what}: fewer than {more} logins in {WAIT:?}"))
        .expect("load tool gone");
}

fn logins_served(proxy: &Proxy) -> usize {
    proxy
        .log()
        .lines()
        .filter(|line| line.contains("logged in"))
        .count()
}

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

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (mut seen, workers) = start_load(
        address,
        oauthbearer_b64("alice", &token),
        tally.clone(),
        stop.clone(),
    );
    logins_go_on(&mut seen, 20, "before the restart").await;

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
    logins_go_on(&mut seen, 20, "while the old instance drains").await;

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

    logins_go_on(&mut seen, 20, "after the old instance exited").await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("load worker");
    }
    let failures = tally.failures.lock().expect("tally lock").clone();
    assert!(
        failures.is_empty(),
        "{} of {} logins failed during the rolling restart: {failures:?}",
        failures.len(),
        failures.len() + tally.succeeded.load(Ordering::Relaxed)
    );
    let (by_old, by_new) = (logins_served(&old), logins_served(&new));
    assert!(
        by_old > 20 && by_new > 20,
        "logins served: old {by_old}, new {by_new}"
    );
}
