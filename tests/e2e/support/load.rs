//! Fallible load tools: clients that count what went wrong instead of panicking, so a test
//! can run them through a restart or a crash and then assert on the tally.
//!
//! [`LoginLoad`] keeps IMAP logins going (OAUTHBEARER with an initial response, then
//! LOGOUT) and counts every failed one. [`Submitter`] is one SMTP submission session whose
//! every step returns `Err` with what went wrong; a message is acknowledged only by the
//! `250` after its DATA. [`SubmissionLoad`] keeps submitters sending, each reconnecting
//! after an error and sending the unacknowledged message again, as a mail client does.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{run, Proxy};

/// One login's or one message's whole exchange, far above what it takes on loopback.
pub const EXCHANGE_DEADLINE: Duration = Duration::from_secs(20);

/// Lets the kernel move connections queued on a closing listener to its `SO_REUSEPORT`
/// sibling (Linux 5.14+), as the README asks of a host that does rolling restarts.
pub fn allow_request_migration() {
    let output =
        run(std::process::Command::new("sysctl").args(["-w", "net.ipv4.tcp_migrate_req=1"]));
    assert!(
        output.status.success(),
        "sysctl net.ipv4.tcp_migrate_req=1: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// How many sessions `proxy` has logged in so far (its `logged in` lines).
pub fn logins_served(proxy: &Proxy) -> usize {
    proxy
        .log()
        .lines()
        .filter(|line| line.contains("logged in"))
        .count()
}

/// `what` within [`EXCHANGE_DEADLINE`], or `Err` saying it took too long.
async fn bounded<T>(
    what: &str,
    step: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(EXCHANGE_DEADLINE, step)
        .await
        .map_err(|_| format!("{what} took longer than {EXCHANGE_DEADLINE:?}"))?
}

/// One whole plaintext IMAP login and logout.
pub async fn one_login(address: SocketAddr, initial_response: &str) -> Result<(), String> {
    bounded("login", async {
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
    })
    .await
}

/// Tasks that loop until told to stop, and the running total of what they achieved.
#[derive(Debug)]
struct Workers {
    stop: Arc<AtomicBool>,
    seen: watch::Receiver<usize>,
    handles: Vec<JoinHandle<()>>,
}

/// What each worker task is handed: the stop flag, and where to publish the total.
#[derive(Debug, Clone)]
struct Crew {
    stop: Arc<AtomicBool>,
    progress: Arc<watch::Sender<usize>>,
}

impl Crew {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn publish(&self, total: usize) {
        self.progress.send_replace(total);
    }
}

impl Workers {
    /// Spawns `n` tasks, `work(number, crew)`.
    fn spawn<F, Fut>(n: usize, work: F) -> Self
    where
        F: Fn(usize, Crew) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let (progress, seen) = watch::channel(0);
        let crew = Crew {
            stop: stop.clone(),
            progress: Arc::new(progress),
        };
        let handles = (0..n)
            .map(|i| tokio::spawn(work(i, crew.clone())))
            .collect();
        Self {
            stop,
            seen,
            handles,
        }
    }

    /// Waits until the total has grown by `more` after now; false after `within`.
    async fn go_on(&mut self, more: usize, within: Duration) -> bool {
        let from = *self.seen.borrow_and_update();
        let grown = self.seen.wait_for(|total| *total >= from + more);
        match tokio::time::timeout(within, grown).await {
            Ok(result) => {
                result.expect("workers gone");
                true
            }
            Err(_) => false,
        }
    }

    /// Stops the tasks after their current round and waits for them.
    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in self.handles {
            handle.await.expect("load worker");
        }
    }
}

/// Logins counted by the load tool.
#[derive(Debug, Default)]
struct Tally {
    succeeded: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

/// What a finished [`LoginLoad`] counted.
#[derive(Debug)]
pub struct LoadReport {
    pub succeeded: usize,
    /// Why each failed login failed.
    pub failures: Vec<String>,
}

impl LoadReport {
    /// Panics, listing the failures, unless every login succeeded.
    pub fn assert_no_failure(&self, during: &str) {
        assert!(
            self.failures.is_empty(),
            "{} of {} logins failed {during}: {:?}",
            self.failures.len(),
            self.failures.len() + self.succeeded,
            self.failures
        );
    }
}

/// Workers logging in and out in a loop, each success counted towards [`LoginLoad::go_on`].
#[derive(Debug)]
pub struct LoginLoad {
    tally: Arc<Tally>,
    workers: Workers,
}

impl LoginLoad {
    /// Starts `workers` parallel login loops against `address`.
    pub fn start(address: SocketAddr, initial_response: String, workers: usize) -> Self {
        let tally = Arc::new(Tally::default());
        let workers = Workers::spawn(workers, |_, crew| {
            let tally = tally.clone();
            let initial_response = initial_response.clone();
            async move {
                while !crew.stopped() {
                    match one_login(address, &initial_response).await {
                        Ok(()) => crew.publish(tally.succeeded.fetch_add(1, Ordering::Relaxed) + 1),
                        Err(why) => tally.failures.lock().expect("tally lock").push(why),
                    }
                }
            }
        });
        Self { tally, workers }
    }

    /// Waits until `more` logins have succeeded after now; panics after `within`.
    pub async fn go_on(&mut self, more: usize, within: Duration, what: &str) {
        assert!(
            self.workers.go_on(more, within).await,
            "{what}: fewer than {more} logins in {within:?}; failures: {:?}",
            self.tally.failures.lock().expect("tally lock")
        );
    }

    /// Stops the workers after their current login and returns the count.
    pub async fn finish(self) -> LoadReport {
        self.workers.stop().await;
        let failures = self.tally.failures.lock().expect("tally lock").clone();
        LoadReport {
            succeeded: self.tally.succeeded.load(Ordering::Relaxed),
            failures,
        }
    }
}

/// One SMTP submission session, authenticated with OAUTHBEARER.
#[derive(Debug)]
pub struct Submitter {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl Submitter {
    /// Connects, reads the `220`, says EHLO and authenticates with `initial_response`
    /// (OAUTHBEARER, base64), which must get `235`.
    pub async fn connect(address: SocketAddr, initial_response: &str) -> Result<Self, String> {
        bounded("connect and AUTH", async {
            let stream = TcpStream::connect(address)
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let (read, write) = stream.into_split();
            let mut session = Self {
                read: BufReader::new(read),
                write,
            };
            session.expect("greeting", "220").await?;
            session.command("EHLO load.test", "250").await?;
            session
                .command(&format!("AUTH OAUTHBEARER {initial_response}"), "235")
                .await?;
            Ok(session)
        })
        .await
    }

    /// MAIL, RCPT, DATA with `message` (dot-stuffed here): `Ok` only when the final reply
    /// is `250`, the acknowledgement that the message is the server's to deliver.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), String> {
        bounded("a message", async {
            self.command("MAIL FROM:<alice@example.test>", "250")
                .await?;
            self.command("RCPT TO:<bob@example.test>", "250").await?;
            self.command("DATA", "354").await?;
            self.write
                .write_all(&dot_stuffed(message))
                .await
                .map_err(|e| format!("send DATA: {e}"))?;
            self.expect("end of DATA", "250").await
        })
        .await
    }

    /// QUIT, expecting `221`.
    pub async fn quit(mut self) -> Result<(), String> {
        bounded("QUIT", self.command("QUIT", "221")).await
    }

    async fn command(&mut self, line: &str, code: &str) -> Result<(), String> {
        self.write
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("send {}: {e}", verb(line)))?;
        self.expect(verb(line), code).await
    }

    /// Reads one reply (every line up to the one with a space after the code), which must
    /// have `code`.
    async fn expect(&mut self, what: &str, code: &str) -> Result<(), String> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .read
                .read_line(&mut line)
                .await
                .map_err(|e| format!("{what}: {e}"))?;
            if n == 0 {
                return Err(format!("{what}: closed"));
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                break;
            }
        }
        if line.starts_with(code) && line.as_bytes().get(3) == Some(&b' ') {
            Ok(())
        } else {
            Err(format!("{what} answered {:?}", line.trim_end()))
        }
    }
}

/// DATA as sent on the wire (RFC 5321 §4.5.2): a line starting with `.` gets another one,
/// and the lone `.` line ends it.
pub fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    data
}

/// A command's verb, for error messages that must not repeat a token.
fn verb(line: &str) -> &str {
    line.split(' ').next().unwrap_or(line)
}

/// Consecutive errors after which a submission worker gives up (the test then sees its
/// progress stop).
const MAX_ERRORS_IN_A_ROW: usize = 20;

/// What the submission workers share.
#[derive(Debug, Default)]
struct Outbox {
    /// Every acknowledged message, in the order of its `250`.
    acknowledged: Mutex<Vec<Vec<u8>>>,
    /// Every error a worker met, with the worker's number.
    errors: Mutex<Vec<String>>,
}

/// What a finished [`SubmissionLoad`] saw.
#[derive(Debug)]
pub struct SubmissionReport {
    /// Every message that got the `250` after its DATA.
    pub acknowledged: Vec<Vec<u8>>,
    pub errors: Vec<String>,
}

/// Workers submitting messages made by `message(worker, n)` over long-lived sessions.
#[derive(Debug)]
pub struct SubmissionLoad {
    outbox: Arc<Outbox>,
    workers: Workers,
}

impl SubmissionLoad {
    /// Starts `workers` submitters against `address`, each keeping its session until an
    /// error, then connecting again and sending the message that was not acknowledged.
    pub fn start(
        address: SocketAddr,
        initial_response: String,
        workers: usize,
        message: fn(usize, usize) -> Vec<u8>,
    ) -> Self {
        let outbox = Arc::new(Outbox::default());
        let workers = Workers::spawn(workers, |worker, crew| {
            let outbox = outbox.clone();
            let initial_response = initial_response.clone();
            async move {
                let mut session: Option<Submitter> = None;
                let mut unacknowledged: Option<Vec<u8>> = None;
                let (mut made, mut in_a_row) = (0, 0);
                while !crew.stopped() && in_a_row < MAX_ERRORS_IN_A_ROW {
                    let text = unacknowledged.take().unwrap_or_else(|| {
                        made += 1;
                        message(worker, made)
                    });
                    let sent = match session.as_mut() {
                        Some(open) => open.send(&text).await,
                        None => match Submitter::connect(address, &initial_response).await {
                            Ok(open) => session.insert(open).send(&text).await,
                            Err(e) => Err(e),
                        },
                    };
                    if let Err(why) = sent {
                        outbox
                            .errors
                            .lock()
                            .expect("outbox lock")
                            .push(format!("submitter {worker}: {why}"));
                        session = None;
                        unacknowledged = Some(text);
                        in_a_row += 1;
                        continue;
                    }
                    in_a_row = 0;
                    let mut acknowledged = outbox.acknowledged.lock().expect("outbox lock");
                    acknowledged.push(text);
                    crew.publish(acknowledged.len());
                }
                if let Some(open) = session {
                    // The messages are acknowledged already; a failed QUIT loses none.
                    let _ = open.quit().await;
                }
            }
        });
        Self { outbox, workers }
    }

    /// How many messages have been acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        *self.workers.seen.borrow()
    }

    /// Waits until `more` messages have been acknowledged after now; panics after `within`.
    pub async fn go_on(&mut self, more: usize, within: Duration, what: &str) {
        assert!(
            self.workers.go_on(more, within).await,
            "{what}: fewer than {more} messages acknowledged in {within:?}; errors: {:?}",
            self.outbox.errors.lock().expect("outbox lock")
        );
    }

    /// Stops the workers after their current message and returns what they saw.
    pub async fn finish(self) -> SubmissionReport {
        self.workers.stop().await;
        SubmissionReport {
            acknowledged: self
                .outbox
                .acknowledged
                .lock()
                .expect("outbox lock")
                .clone(),
            errors: self.outbox.errors.lock().expect("outbox lock").clone(),
        }
    }
}
