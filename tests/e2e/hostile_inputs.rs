//! The hostile inputs an attack on the running proxy used, kept as a table (issue 10): each
//! row × each protocol (IMAP, SMTP, ManageSieve, POP3) → the exact replies in order and
//! whether the proxy then closes the connection; an open one must still answer the
//! protocol's NOOP as the proxy, before login. Beside every row a well-behaved session on
//! the same listener logs in with a valid token and fetches, gets a script or submits a
//! message, byte for byte, and the proxy's resident memory must stay flat from one pass
//! over the table to the next.
//!
//! Replies follow DESIGN.md's "Replies every protocol gives" and the session crate's reply
//! modules. A row that fails is reported with every other failing row, not alone.
//!
//! `slow_loris`: clients trickling bytes before login are cut at `preauth_deadline`.

mod auth_rows;
mod case;
mod framing_rows;
mod peers;
mod slow_loris;

use std::sync::Arc;

use crate::support::ImapClient;

use case::{Case, Line, Step};
use peers::{connect, greeting, Proto, Stage};

/// Passes over the table: the first settles the allocator, the second must not grow.
const PASSES: usize = 2;
/// Resident memory the second pass may add: a leak of a few KiB per row shows, the
/// allocator's noise does not.
const MAX_GROWTH_KIB: u64 = 4 * 1_024;

/// One hostile input: its name and how it looks in each protocol.
pub(crate) struct Row {
    pub name: &'static str,
    pub build: fn(Proto, &Stage) -> Case,
}

impl Row {
    pub(crate) fn new(name: &'static str, build: fn(Proto, &Stage) -> Case) -> Self {
        Self { name, build }
    }
}

fn table() -> Vec<Row> {
    let mut rows = framing_rows::rows();
    rows.extend(auth_rows::rows());
    rows
}

#[tokio::test]
async fn imap_hostile_inputs() {
    run_table(Proto::Imap).await;
}

#[tokio::test]
async fn smtp_hostile_inputs() {
    run_table(Proto::Smtp).await;
}

#[tokio::test]
async fn sieve_hostile_inputs() {
    run_table(Proto::Sieve).await;
}

#[tokio::test]
async fn pop3_hostile_inputs() {
    run_table(Proto::Pop3).await;
}

async fn run_table(proto: Proto) {
    let label = format!("hostile-{}", proto.name());
    let stage = Arc::new(Stage::start(proto, &label, |_| {}).await);
    let rows = table();
    let mut failures = Vec::new();
    let mut rss = vec![rss_kib(&stage)];
    for pass in 0..PASSES {
        for row in &rows {
            let case = (row.build)(proto, &stage);
            let port = case.port;
            let hostile = tokio::spawn(run_case(Arc::clone(&stage), case));
            let good = {
                let stage = Arc::clone(&stage);
                tokio::spawn(async move { stage.good_session(port).await })
            };
            let (hostile, good) = tokio::join!(hostile, good);
            match hostile {
                Ok(Ok(())) => {}
                Ok(Err(why)) => failures.push(format!("{}: {why}", row.name)),
                Err(e) => failures.push(format!("{}: {}", row.name, panic_text(e))),
            }
            if let Err(e) = good {
                failures.push(format!(
                    "{}: the good session beside it failed: {}",
                    row.name,
                    panic_text(e)
                ));
            }
        }
        rss.push(rss_kib(&stage));
        if pass == 0 && !failures.is_empty() {
            break;
        }
    }
    match stage.check_submissions() {
        Ok(_) => {}
        Err(why) => failures.push(why),
    }
    println!(
        "{}: {} rows × {PASSES} passes; VmRSS at start {} KiB, after each pass {:?} KiB",
        proto.name(),
        rows.len(),
        rss[0],
        &rss[1..]
    );
    assert!(
        failures.is_empty(),
        "{} of {} rows failed for {}:\n{}\n--- proxy log (tail) ---\n{}",
        failures.len(),
        rows.len(),
        proto.name(),
        failures.join("\n"),
        tail(&stage.proxy.log(), 60)
    );
    let growth = rss[PASSES].saturating_sub(rss[1]);
    assert!(
        growth <= MAX_GROWTH_KIB,
        "{}: VmRSS grew by {growth} KiB over the second pass ({rss:?})",
        proto.name()
    );
}

/// Plays one case against the proxy; the first difference is the error.
async fn run_case(stage: Arc<Stage>, case: Case) -> Result<(), String> {
    let proto = stage.proto;
    let mut client = if case.raw {
        ImapClient::connect_plain(stage.proxy.addr(crate::support::TlsMode::Implicit)).await
    } else {
        connect(&stage, case.port).await
    };
    let mut steps = case.steps.into_iter().peekable();
    if case.early {
        if let Some(Step::Send(bytes)) = steps.next_if(|s| matches!(s, Step::Send(_))) {
            let _ = client.try_send(&bytes).await;
        }
    }
    if !case.raw {
        greeting(proto, &mut client).await;
    }
    let mut seen = 0usize;
    for step in steps {
        match step {
            // The proxy may close while a flood is still being written.
            Step::Send(bytes) => {
                let _ = client.try_send(&bytes).await;
            }
            Step::Tls => client.upgrade_tls(stage.env.certs.client_config()).await,
            Step::Expect(line) => {
                expect_line(&mut client, &line, seen).await?;
                seen += 1;
            }
        }
    }
    if case.closed {
        let rest = client.read_to_eof().await;
        if !rest.is_empty() {
            return Err(format!(
                "more after the last expected reply, before the close: {:?}",
                &rest[..rest.len().min(5)]
            ));
        }
        return Ok(());
    }
    let (probe, answer) = proto.probe();
    client
        .try_send(probe.as_bytes())
        .await
        .map_err(|e| format!("closed, want it open (write: {e})"))?;
    expect_line(&mut client, &Line::from(answer), seen).await
}

/// Reads the next line (through any lines before it, for [`Line::Through`]) and compares.
async fn expect_line(client: &mut ImapClient, want: &Line, n: usize) -> Result<(), String> {
    loop {
        let Some(got) = client.try_read_line().await else {
            return Err(format!("closed; reply {n} should be {want:?}"));
        };
        if want.matches(&got) {
            return Ok(());
        }
        if !matches!(want, Line::Through(_)) {
            return Err(format!("reply {n}: got {:?}, want {want:?}", shorten(&got)));
        }
    }
}

fn shorten(line: &str) -> String {
    if line.len() <= 200 {
        return line.to_owned();
    }
    let cut = (0..=200)
        .rev()
        .find(|&i| line.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}… ({} octets)", &line[..cut], line.len())
}

fn panic_text(error: tokio::task::JoinError) -> String {
    let Ok(panic) = error.try_into_panic() else {
        return "cancelled".into();
    };
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".into())
}

fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The proxy's resident set size (`VmRSS` in `/proc/PID/status`), in KiB.
pub(crate) fn rss_kib(stage: &Stage) -> u64 {
    let path = format!("/proc/{}/status", stage.proxy.pid());
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {path}"))
}
