//! The soak (issue 10): many concurrent SMTP submissions and IMAP fetches through the
//! `bearergate` binary while the identity provider flaps — up for a while, then HTTP 500 for
//! as long, over and over. Two proxies run side by side in front of the same in-process
//! mail store and provider, one with `keep_confirmed_tokens = true` and one without; on
//! each, half the clients log in with a fresh token every time and half with one token the
//! provider confirmed before the flapping began. No positive cache (`cache_max_ttl = "0s"`):
//! every login is a question to the provider, as once a cached answer has expired.
//!
//! What must hold, or the bench fails: every message the proxy acknowledged (`250` after
//! DATA) arrives at the store exactly once, byte for byte; every fetched body is the stored
//! message, byte for byte; no client sees a reply other than success or "try again later"
//! (454 4.7.0, NO [UNAVAILABLE]) — a provider that flaps must never make a good token look
//! bad. Reported: messages submitted, acknowledged, arrived, logins refused with try-later,
//! bodies fetched, and the share of logins that succeeded in each group, against issue 10's
//! targets (≥ 40 % of fresh logins; every login with a confirmed token, where kept).
//!
//! | variable | `--bench` | smoke | what |
//! |---|---|---|---|
//! | `SOAK_SECONDS` | 180 | 6 | how long the clients keep going |
//! | `SOAK_UP_MS` / `SOAK_DOWN_MS` | 5 000 / 5 000 | 1 000 / 1 000 | the provider's halves |
//! | `SOAK_SUBMITTERS` | 4 | 1 | SMTP clients per proxy and token kind |
//! | `SOAK_FETCHERS` | 2 | 1 | IMAP clients per proxy and token kind |
//! | `SOAK_PAUSE_MS` | 100 | 50 | pause between a client's sessions |
//! | `SOAK_SHARED` | unset | unset | `1`: every client is alice from 127.0.0.1 |
//!
//! Each client is a user of its own connecting from a loopback address of its own
//! (127.0.1.1 onwards), as a proxy on the internet sees them. With `SOAK_SHARED=1` they are
//! all alice from one address, as behind a NAT or a webmail server: more logins are then in
//! flight at once than `[auth_limits]`' `address_failures` (10), and none may be refused
//! by a limit (the refusals are counted per budget at the end).
//!
//! Run without `--bench` (as `cargo test --benches` does) it is the quick smoke.

// The support modules are shared with the other benches, which use the rest of them.
#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::flapping_idp::FlappingIdp;
use support::http::HttpClient;
use support::mailstore::MailStore;
use support::process::{clock_ticks_per_second, free_local_addr, ProxyProcess};
use support::soak_clients::{self, Role, Tally, TokenKind};
use support::BenchResult;

/// Messages in the IMAP mailbox the fetchers read (one of them 1 MiB).
const MAILBOX: usize = 24;
/// Issue 10's target for fresh logins while the provider is up half the time.
const TARGET_FRESH: f64 = 0.40;

#[derive(Debug)]
struct Settings {
    duration: Duration,
    up: Duration,
    down: Duration,
    submitters: usize,
    fetchers: usize,
    pause: Duration,
    /// Every client is alice from 127.0.0.1 (a NAT or a webmail server in front), instead
    /// of a user and a loopback address of its own.
    shared: bool,
}

impl Settings {
    fn from_env() -> Self {
        let full = std::env::args().any(|arg| arg == "--bench");
        let pick = |name: &str, full_default: u64, smoke_default: u64| -> u64 {
            std::env::var(name)
                .ok()
                .and_then(|v| v.replace('_', "").parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or(if full { full_default } else { smoke_default })
        };
        Self {
            duration: Duration::from_secs(pick("SOAK_SECONDS", 180, 6)),
            up: Duration::from_millis(pick("SOAK_UP_MS", 5_000, 1_000)),
            down: Duration::from_millis(pick("SOAK_DOWN_MS", 5_000, 1_000)),
            submitters: pick("SOAK_SUBMITTERS", 4, 1) as usize,
            fetchers: pick("SOAK_FETCHERS", 2, 1) as usize,
            pause: Duration::from_millis(pick("SOAK_PAUSE_MS", 100, 50)),
            shared: std::env::var("SOAK_SHARED").is_ok_and(|v| v == "1"),
        }
    }
}

fn main() -> ExitCode {
    let settings = Settings::from_env();
    match run(&settings) {
        Ok(report) => {
            report.print(&settings);
            if report.failures().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("soak failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One of the two proxies.
struct Proxy {
    keep: bool,
    imap: SocketAddr,
    smtp: SocketAddr,
    metrics: SocketAddr,
    process: ProxyProcess,
}

impl Proxy {
    fn start(keep: bool, store: &MailStore, idp: &FlappingIdp) -> BenchResult<Self> {
        let imap = free_local_addr()?;
        let smtp = free_local_addr()?;
        let metrics = free_local_addr()?;
        let name = if keep { "soak-keep" } else { "soak-nokeep" };
        let config = render_config(keep, imap, smtp, store, idp)
            + &format!("\n[metrics]\nlisten = \"{metrics}\"\n");
        let process = ProxyProcess::start_config(name, imap, &config)?;
        Ok(Self {
            keep,
            imap,
            smtp,
            metrics,
            process,
        })
    }

    /// What the proxy's own counters say about the logins it refused with "try again
    /// later": the `[auth_limits]` budget that refused them, or the provider.
    fn refusal_causes(&self) -> BenchResult<Causes> {
        let mut client = HttpClient::connect(self.metrics)?;
        let (status, body) = client.get("/metrics")?;
        if status != 200 {
            return Err(format!("/metrics answered {status}").into());
        }
        let text = String::from_utf8_lossy(body);
        let sum = |name: &str, label: &str| -> u64 {
            text.lines()
                .filter(|line| line.starts_with(name) && line.contains(label))
                .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>() as u64
        };
        Ok(Causes {
            address: sum("bearergate_auth_limited_total{", "limit=\"address\""),
            user: sum("bearergate_auth_limited_total{", "limit=\"user\""),
            idp_requests: sum("bearergate_auth_limited_total{", "limit=\"idp_requests\""),
            idp_unavailable: sum("bearergate_idp_unavailable_total", ""),
            kept_confirmed: sum("bearergate_tokens_kept_confirmed_total", ""),
        })
    }
}

/// Counters read from a proxy's `/metrics` at the end.
#[derive(Debug)]
struct Causes {
    /// Logins refused by `[auth_limits]`, by budget.
    address: u64,
    user: u64,
    idp_requests: u64,
    /// Token checks the provider could not answer, and those answered from what it
    /// confirmed earlier instead.
    idp_unavailable: u64,
    kept_confirmed: u64,
}

/// Plaintext IMAP and SMTP listeners in front of the store, introspection without a
/// positive cache, the per-address cap on provider requests out of the way (with
/// `SOAK_SHARED` every login comes from 127.0.0.1; the failure budgets keep their
/// defaults), and only errors logged besides the ready line.
fn render_config(
    keep: bool,
    imap: SocketAddr,
    smtp: SocketAddr,
    store: &MailStore,
    idp: &FlappingIdp,
) -> String {
    let listener = |protocol: &str, listen: SocketAddr, backend: &str| {
        format!(
            "[[listeners]]\nprotocol = \"{protocol}\"\nlisten = \"{listen}\"\ntls = \"none\"\n\
             allow_plaintext_auth = true\nbackend = \"{backend}\"\nmax_connections = 1000\n\
             max_prelogin_per_address = 1000\n\n"
        )
    };
    let backend = |name: &str, address: SocketAddr| {
        format!(
            "[backends.{name}]\naddress = \"{address}\"\ntls = \"none\"\nlogin = \"master\"\n\
             master_user = \"proxymaster\"\nmaster_password = \"masterpass\"\n\
             master_user_format = \"{{user}}*{{master}}\"\n\n"
        )
    };
    format!(
        "drain_timeout = \"1s\"\n\n[log]\nformat = \"text\"\nlevel = \"error,bearergate::server=info\"\n\n\
         [auth_limits]\naddress_idp_requests = 1000000\n\n{}{}{}{}\
         [validator]\nkind = \"introspection\"\nintrospection_url = \"{}\"\nclient_id = \"bearergate\"\n\
         client_secret = \"bench-secret\"\nusername_claim = \"username\"\nrequired_scope = \"\"\n\
         cache_max_ttl = \"0s\"\ntimeout = \"2s\"\nkeep_confirmed_tokens = {keep}\n",
        listener("imap", imap, "imap"),
        listener("smtp", smtp, "submission"),
        backend("imap", store.imap_addr()),
        backend("submission", store.smtp_addr()),
        idp.url(),
    )
}

/// The clients' groups: which proxy, which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Group {
    keep: bool,
    confirmed: bool,
}

impl Group {
    fn name(self) -> String {
        format!(
            "{} token, keep_confirmed_tokens = {}",
            if self.confirmed { "confirmed" } else { "fresh" },
            self.keep
        )
    }
}

fn run(settings: &Settings) -> BenchResult<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let idp = FlappingIdp::start(runtime.handle())?;
    let store = MailStore::start(runtime.handle(), mailbox())?;
    let proxies = [
        Proxy::start(true, &store, &idp)?,
        Proxy::start(false, &store, &idp)?,
    ];
    let hz = clock_ticks_per_second();
    let start_rss: Vec<u64> = proxies
        .iter()
        .map(|p| p.process.rss_kib())
        .collect::<BenchResult<_>>()?;

    // Clients, and the tokens the provider confirms while it is still up.
    let mut clients = Vec::new();
    let mut id = 0usize;
    for proxy in &proxies {
        for confirmed in [false, true] {
            for fetch in std::iter::repeat_n(false, settings.submitters)
                .chain(std::iter::repeat_n(true, settings.fetchers))
            {
                id += 1;
                let mut role = Role {
                    id,
                    user: if settings.shared {
                        "alice".into()
                    } else {
                        format!("user{id}")
                    },
                    source: if settings.shared {
                        Ipv4Addr::LOCALHOST.into()
                    } else {
                        // 127.0.1.1 onwards: all of 127/8 is loopback.
                        Ipv4Addr::new(127, 0, 1 + (id / 250) as u8, 1 + (id % 250) as u8).into()
                    },
                    addr: if fetch { proxy.imap } else { proxy.smtp },
                    token: TokenKind::Fresh,
                    pause: settings.pause,
                    end: Instant::now(),
                };
                if confirmed {
                    let token = soak_clients::token(&role.user, id, 0);
                    runtime.block_on(soak_clients::confirm(&role, proxy.imap, &token))?;
                    role.token = TokenKind::Confirmed(token);
                }
                let group = Group {
                    keep: proxy.keep,
                    confirmed,
                };
                clients.push((group, fetch, role));
            }
        }
    }
    let cpu_before: Vec<Duration> = proxies
        .iter()
        .map(|p| p.process.cpu_time(hz))
        .collect::<BenchResult<_>>()?;

    idp.start_flapping(settings.up, settings.down);
    let started = Instant::now();
    let end = started + settings.duration;
    let mailbox = store.mailbox();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(group, fetch, mut role)| {
            role.end = end;
            let mailbox = Arc::clone(&mailbox);
            let task = runtime.spawn(async move {
                if fetch {
                    soak_clients::fetcher(role, mailbox).await
                } else {
                    soak_clients::submitter(role).await
                }
            });
            (group, task)
        })
        .collect();
    let mut tallies: Vec<(Group, Tally)> = Vec::new();
    for (group, task) in tasks {
        tallies.push((group, runtime.block_on(task)?));
    }
    let elapsed = started.elapsed();
    idp.stop_flapping();

    let mut cpu = Vec::new();
    let mut end_rss = Vec::new();
    let mut causes = Vec::new();
    for (proxy, before) in proxies.iter().zip(&cpu_before) {
        cpu.push(proxy.process.cpu_time(hz)?.saturating_sub(*before));
        end_rss.push(proxy.process.rss_kib()?);
        causes.push(proxy.refusal_causes()?);
    }
    Ok(Report::new(
        tallies,
        &store,
        idp.requests(),
        elapsed,
        cpu,
        start_rss,
        end_rss,
    )
    .with_causes(causes))
}

/// The fetchers' mailbox: messages of 1 to 64 KiB, and one of 1 MiB.
fn mailbox() -> Vec<Vec<u8>> {
    let mut messages: Vec<Vec<u8>> = (0..MAILBOX).map(|n| soak_clients::message(0, n)).collect();
    let big = &mut messages[MAILBOX / 2];
    let mut n = 0u32;
    while big.len() < 1 << 20 {
        big.extend_from_slice(format!("filler line {n:08} of the large message\r\n").as_bytes());
        n += 1;
    }
    messages
}

/// The Message-ID header field's value of a stored message.
fn message_id_of(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let header = text.split("\r\n\r\n").next()?;
    header.lines().find_map(|line| {
        let value = line.strip_prefix("Message-ID: <")?;
        Some(value.strip_suffix('>')?.to_owned())
    })
}

#[derive(Debug, Default)]
struct Counts {
    logins: usize,
    logged_in: usize,
    try_later: usize,
}

struct Report {
    groups: Vec<(Group, Counts)>,
    submitted: usize,
    acknowledged: usize,
    arrived: usize,
    /// Acknowledged but not in the store, or stored with other bytes, or stored twice.
    lost: usize,
    altered: usize,
    duplicated: usize,
    fetched: usize,
    corrupted: usize,
    errors: usize,
    first_errors: Vec<String>,
    idp_up: usize,
    idp_down: usize,
    elapsed: Duration,
    cpu: Vec<Duration>,
    start_rss: Vec<u64>,
    end_rss: Vec<u64>,
    backend_logins: (usize, usize),
    /// Per proxy (keep_confirmed_tokens = true first).
    causes: Vec<Causes>,
}

impl Report {
    fn new(
        tallies: Vec<(Group, Tally)>,
        store: &MailStore,
        (idp_up, idp_down): (usize, usize),
        elapsed: Duration,
        cpu: Vec<Duration>,
        start_rss: Vec<u64>,
        end_rss: Vec<u64>,
    ) -> Self {
        let delivered = store.delivered();
        let mut by_id: HashMap<String, Vec<&Vec<u8>>> = HashMap::new();
        for message in &delivered {
            let id = message_id_of(message).unwrap_or_default();
            by_id.entry(id).or_default().push(message);
        }
        let mut report = Self {
            groups: Vec::new(),
            submitted: 0,
            acknowledged: 0,
            arrived: delivered.len(),
            lost: 0,
            altered: 0,
            duplicated: 0,
            fetched: 0,
            corrupted: 0,
            errors: 0,
            first_errors: Vec::new(),
            idp_up,
            idp_down,
            elapsed,
            cpu,
            start_rss,
            end_rss,
            backend_logins: store.logins(),
            causes: Vec::new(),
        };
        for (group, tally) in tallies {
            report.submitted += tally.submitted;
            report.acknowledged += tally.acknowledged.len();
            report.fetched += tally.fetched;
            report.corrupted += tally.corrupted;
            report.errors += tally.errors;
            report.first_errors.extend(tally.first_errors);
            for message in &tally.acknowledged {
                let id = message_id_of(message).unwrap_or_default();
                match by_id.get(&id).map(Vec::as_slice) {
                    None | Some([]) => report.lost += 1,
                    Some([stored]) if *stored == message => {}
                    Some([_]) => report.altered += 1,
                    Some(_) => report.duplicated += 1,
                }
            }
            let counts = match report.groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, counts)) => counts,
                None => {
                    report.groups.push((group, Counts::default()));
                    &mut report.groups.last_mut().expect("just pushed").1
                }
            };
            counts.logins += tally.logins;
            counts.logged_in += tally.logged_in;
            counts.try_later += tally.try_later;
        }
        report
    }

    fn with_causes(mut self, causes: Vec<Causes>) -> Self {
        self.causes = causes;
        self
    }

    /// What broke an invariant.
    fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        for (count, what) in [
            (self.lost, "acknowledged messages missing from the store"),
            (
                self.altered,
                "acknowledged messages stored with other bytes",
            ),
            (
                self.duplicated,
                "acknowledged messages stored more than once",
            ),
            (
                self.corrupted,
                "fetched bodies that differ from the stored message",
            ),
            (self.errors, "unexpected replies or I/O errors"),
        ] {
            if count > 0 {
                failures.push(format!("{count} {what}"));
            }
        }
        if self.acknowledged == 0 || self.fetched == 0 {
            failures.push("nothing was submitted or fetched".into());
        }
        failures
    }

    fn print(&self, settings: &Settings) {
        println!();
        println!(
            "bearergate soak: {:.0} s, provider up {:?} / HTTP 500 {:?}; {} submitters and {} fetchers per proxy and token kind; 2 proxies; {}",
            self.elapsed.as_secs_f64(),
            settings.up,
            settings.down,
            settings.submitters,
            settings.fetchers,
            if settings.shared {
                "every client alice from 127.0.0.1"
            } else {
                "a user and an address per client"
            }
        );
        println!(
            "messages: submitted {}, acknowledged {}, arrived {}; lost {}, altered {}, duplicated {}",
            self.submitted, self.acknowledged, self.arrived, self.lost, self.altered, self.duplicated
        );
        let try_later: usize = self.groups.iter().map(|(_, c)| c.try_later).sum();
        println!(
            "fetched {} bodies ({} differed); logins refused with try-later {try_later}",
            self.fetched, self.corrupted
        );
        for (group, counts) in &self.groups {
            let share = counts.logged_in as f64 / counts.logins.max(1) as f64;
            let target = match (group.confirmed, group.keep) {
                (true, true) => Some((1.0, "every login")),
                (false, _) => Some((TARGET_FRESH, "≥ 40 %")),
                (true, false) => None,
            };
            let verdict = match target {
                Some((want, text)) if share + 1e-9 >= want => format!("target {text}: met"),
                Some((_, text)) => format!("target {text}: MISSED"),
                None => "(no target: nothing kept)".into(),
            };
            println!(
                "  {:<47} logins {:>6}  succeeded {:>6}  try-later {:>6}  share {share:.3}  {verdict}",
                group.name(),
                counts.logins,
                counts.logged_in,
                counts.try_later
            );
        }
        println!(
            "identity provider: {} requests answered while up, {} while down; backend logins: {} IMAP, {} SMTP",
            self.idp_up, self.idp_down, self.backend_logins.0, self.backend_logins.1
        );
        for (n, keep) in [true, false].into_iter().enumerate() {
            println!(
                "proxy keep_confirmed_tokens = {keep}: CPU {:.2} s, VmRSS {} KiB at start, {} KiB at the end",
                self.cpu[n].as_secs_f64(),
                self.start_rss[n],
                self.end_rss[n]
            );
            if let Some(c) = self.causes.get(n) {
                println!(
                    "  token checks the provider could not answer {}, answered as confirmed earlier {}; \
                     refused by [auth_limits]: address {}, user {}, idp_requests {}",
                    c.idp_unavailable, c.kept_confirmed, c.address, c.user, c.idp_requests
                );
            }
        }
        for error in &self.first_errors {
            println!("  error: {error}");
        }
        let failures = self.failures();
        if failures.is_empty() {
            println!("every acknowledged message arrived byte-identical, every fetched body was identical");
        } else {
            println!("FAILED: {}", failures.join("; "));
        }
    }
}
