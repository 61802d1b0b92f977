//! Measures whether the `bearergate` binary gives memory back after a flood: its `VmRSS` at
//! idle, at the peak of a flood of short-lived connections, and once it has settled after
//! them, and the ratio of settled to idle (target ≤ 2).
//!
//! The flood is what an attack run makes: N connections in waves as large as the open-files
//! limit allows (each logged-in connection holds two descriptors in the proxy), from 4,096
//! loopback source addresses; each reads the greeting and makes one XOAUTH2 login — half
//! succeed (cached token), half claim another user with it and are refused — and every
//! connection of a wave stays open until the whole wave is in, then all close. After the
//! last wave the bench waits until the proxy has closed every connection, then reads
//! `VmRSS` until it stops falling (no new low by 1 % for 20 s, at most
//! `BENCH_FLOOD_SETTLE_SECS`): jemalloc's background thread hands pages back over its
//! 10 s decay, glibc malloc not at all.
//!
//! The allocator is the binary's: the default build's, or the system's (glibc malloc) with
//! `--no-default-features`. Compare the two with
//!
//! ```text
//! cargo bench -p bearergate --bench flood
//! cargo bench -p bearergate --bench flood --no-default-features
//! ```
//!
//! | variable | default | what |
//! |---|---|---|
//! | `BENCH_FLOOD_CONNECTIONS` | 15 000 | connections in the whole flood |
//! | `BENCH_FLOOD_IN_FLIGHT` | 128 | connections connecting or logging in at once |
//! | `BENCH_FLOOD_SETTLE_SECS` | 60 | longest wait for `VmRSS` to stop falling |
//!
//! Run without `--bench` (as `cargo test --benches` does) it is a quick smoke run (400
//! connections, 3 s to settle): it tries the code, its figures mean little.

// The support modules are shared with the other benches, which use the rest of them.
#[allow(dead_code)]
mod support;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

use support::backend::FakeBackend;
use support::client::Client;
use support::flood::{open_descriptors, Held, Wave};
use support::idp::FakeIdp;
use support::process::{open_files_limit, ProxyProcess, ProxySetup};
use support::{realistic_token, BenchResult};

/// Settled `VmRSS` over idle `VmRSS`: "within a small factor of idle".
const TARGET_SETTLED_OVER_IDLE: f64 = 2.0;

/// Logins before the idle reading, so one-off allocations (runtime, cache entry, allocator
/// arenas) count as idle, as in benches/proxy.rs.
const WARM_UP_LOGINS: usize = 50;
/// Descriptors kept free for the runtimes, the proxy's own files and the standard streams.
const SPARE_FILES: u64 = 100;
/// One login in this many fails.
const FAIL_EVERY: usize = 2;
/// A typical signed access token is 800–1 200 characters.
const TOKEN_LENGTH: usize = 800;
/// How often `VmRSS` is read during a wave (for the peak) and while settling.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
const SETTLE_SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// `VmRSS` has settled when it made no new low by more than `SETTLE_STEP` for this long:
/// twice jemalloc's decay period (it hands freed pages back over 10 s, and has been seen to
/// hold a plateau for that long before a second fall).
const SETTLED_AFTER: Duration = Duration::from_secs(20);
/// Settling readings kept for the report: one in this many.
const TRACE_EVERY: usize = 4;
/// A fall smaller than this fraction of the lowest reading so far is not a new low.
const SETTLE_STEP: f64 = 0.01;
/// Longest wait for the proxy to close a wave's connections.
const CLOSE_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Settings {
    connections: usize,
    in_flight: usize,
    settle_limit: Duration,
    /// Largest wave the open-files limit allows.
    wave: usize,
}

impl Settings {
    fn from_env(files: u64) -> Self {
        let full = std::env::args().any(|arg| arg == "--bench");
        let pick = |name: &str, full_default: usize, smoke_default: usize| -> usize {
            std::env::var(name)
                .ok()
                .and_then(|v| v.replace('_', "").parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or(if full { full_default } else { smoke_default })
        };
        let connections = pick("BENCH_FLOOD_CONNECTIONS", 15_000, 400);
        // Two descriptors per logged-in connection in the proxy; here one per client and one
        // per backend connection, the same two.
        let fits = (files.saturating_sub(SPARE_FILES) / 2).max(1) as usize;
        let waves = connections.div_ceil(fits);
        Self {
            connections,
            in_flight: pick("BENCH_FLOOD_IN_FLIGHT", 128, 32),
            settle_limit: Duration::from_secs(pick("BENCH_FLOOD_SETTLE_SECS", 60, 3) as u64),
            wave: connections.div_ceil(waves.max(1)),
        }
    }
}

fn main() -> ExitCode {
    // The proxy raises its own soft limit to the hard one; the client raises its own, which
    // the proxy also inherits, so both sides of a wave fit.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("cannot raise the open files limit: {e}");
    }
    let settings = Settings::from_env(open_files_limit().unwrap_or(1_024));
    match run(&settings) {
        Ok(report) => {
            report.print(&settings);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: &Settings) -> BenchResult<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let idp = FakeIdp::start(runtime.handle())?;
    let backend = FakeBackend::start(runtime.handle())?;
    let proxy = ProxyProcess::start_with(
        &ProxySetup {
            backend: backend.addr(),
            introspection_url: idp.url(),
            max_connections: settings.wave + 1_000,
        },
        "flood",
        // The refusal delay would only stretch the run: a refused connection is held open
        // until its wave is in either way.
        "\n[auth_limits]\nfailure_delay = \"0s\"\n",
    )?;
    let token: Arc<str> = Arc::from(realistic_token(TOKEN_LENGTH));
    let good: Arc<str> = Arc::from(
        base64::engine::general_purpose::STANDARD
            .encode(format!("user=alice\x01auth=Bearer {token}\x01\x01")),
    );
    for _ in 0..WARM_UP_LOGINS {
        Client::authenticate(proxy.listen(), &good)?.logout()?;
    }
    backend.wait_for_logged_in(0, CLOSE_DEADLINE)?;
    // Sessions end just after the backend sees them go: their descriptors tell.
    let idle_descriptors = wait_for_descriptors(&proxy, None)?;
    let idle = Rss::of(&proxy)?;

    let peak = AtomicU64::new(idle.vm_kib);
    let mut waves = Vec::new();
    let mut first = 0;
    while first < settings.connections {
        let wave = Wave {
            target: proxy.listen(),
            first,
            connections: settings.wave.min(settings.connections - first),
            in_flight: settings.in_flight,
            good: Arc::clone(&good),
            token: Arc::clone(&token),
            fail_every: FAIL_EVERY,
        };
        let held = with_peak_sampler(&proxy, &peak, || runtime.block_on(wave.run()))?;
        let full_kib = proxy.rss_kib()?;
        peak.fetch_max(full_kib, Ordering::Relaxed);
        let summary = WaveSummary::of(&held, full_kib);
        runtime.block_on(async move { drop(held) });
        backend.wait_for_logged_in(0, CLOSE_DEADLINE)?;
        wait_for_descriptors(&proxy, Some(idle_descriptors))?;
        waves.push(summary);
        first += wave.connections;
    }
    let closed = Rss::of(&proxy)?;
    let settling = settle(&proxy, settings.settle_limit)?;
    // The proxy still serves after the flood: a login from the cache.
    Client::authenticate(proxy.listen(), &good)?.logout()?;
    Ok(Report {
        idle,
        peak_kib: peak.load(Ordering::Relaxed),
        closed,
        settling,
        waves,
        introspections: idp.requests(),
    })
}

/// Runs `wave` while another thread reads the proxy's `VmRSS` every `SAMPLE_EVERY` and keeps
/// the highest reading in `peak`.
fn with_peak_sampler<T>(
    proxy: &ProxyProcess,
    peak: &AtomicU64,
    wave: impl FnOnce() -> BenchResult<T>,
) -> BenchResult<T> {
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = proxy.rss_kib() {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(SAMPLE_EVERY);
            }
        });
        let result = wave();
        done.store(true, Ordering::Relaxed);
        result
    })
}

/// Waits until the proxy has `idle` descriptors open (all connections closed) and answers
/// the count; without `idle`, until the count holds still for a few readings.
fn wait_for_descriptors(proxy: &ProxyProcess, idle: Option<usize>) -> BenchResult<usize> {
    let deadline = Instant::now() + CLOSE_DEADLINE;
    let mut last = open_descriptors(proxy.pid())?;
    let mut steady = 0;
    loop {
        thread::sleep(Duration::from_millis(50));
        let now = open_descriptors(proxy.pid())?;
        match idle {
            Some(idle) if now <= idle => return Ok(now),
            None if now == last => {
                steady += 1;
                if steady == 5 {
                    return Ok(now);
                }
            }
            _ => steady = 0,
        }
        last = now;
        if Instant::now() > deadline {
            return Err(format!(
                "the proxy still has {now} descriptors open after {CLOSE_DEADLINE:?} (idle: {idle:?})"
            )
            .into());
        }
    }
}

/// How `VmRSS` came down after the flood.
#[derive(Debug)]
struct Settling {
    /// The last reading.
    settled: Rss,
    /// From the first reading to the last.
    took: Duration,
    /// `VmRSS` in KiB, one reading a second.
    trace: Vec<u64>,
}

/// Reads `VmRSS` until it makes no new low for `SETTLED_AFTER` or `limit` has passed.
fn settle(proxy: &ProxyProcess, limit: Duration) -> BenchResult<Settling> {
    let started = Instant::now();
    let mut low = proxy.rss_kib()?;
    let mut low_at = started;
    let mut trace = vec![low];
    for sample in 1.. {
        thread::sleep(SETTLE_SAMPLE_EVERY);
        let kib = proxy.rss_kib()?;
        if sample % TRACE_EVERY == 0 {
            trace.push(kib);
        }
        if (kib as f64) < low as f64 * (1.0 - SETTLE_STEP) {
            low = kib;
            low_at = Instant::now();
        }
        if low_at.elapsed() >= SETTLED_AFTER || started.elapsed() >= limit {
            break;
        }
    }
    Ok(Settling {
        settled: Rss::of(proxy)?,
        took: started.elapsed(),
        trace,
    })
}

/// One reading of the proxy's resident memory, in KiB.
#[derive(Debug, Clone, Copy)]
struct Rss {
    vm_kib: u64,
    /// The heap and other private memory: what an allocator can give back.
    anon_kib: u64,
}

impl Rss {
    fn of(proxy: &ProxyProcess) -> BenchResult<Self> {
        Ok(Self {
            vm_kib: proxy.rss_kib()?,
            anon_kib: proxy.status_kib("RssAnon")?,
        })
    }
}

#[derive(Debug)]
struct WaveSummary {
    connections: usize,
    logged_in: usize,
    refused: usize,
    elapsed: Duration,
    /// `VmRSS` with the whole wave open.
    full_kib: u64,
}

impl WaveSummary {
    fn of(held: &Held, full_kib: u64) -> Self {
        Self {
            connections: held.streams.len(),
            logged_in: held.logged_in,
            refused: held.refused,
            elapsed: held.elapsed,
            full_kib,
        }
    }
}

#[derive(Debug)]
struct Report {
    idle: Rss,
    peak_kib: u64,
    /// Once every connection was closed, before settling.
    closed: Rss,
    settling: Settling,
    waves: Vec<WaveSummary>,
    introspections: usize,
}

/// The global allocator the binary under test was built with.
fn allocator() -> &'static str {
    if cfg!(feature = "jemalloc") {
        "jemalloc (default feature `jemalloc`)"
    } else {
        "system (glibc malloc)"
    }
}

impl Report {
    fn print(&self, settings: &Settings) {
        let mib = |kib: u64| kib as f64 / 1_024.0;
        let settled = self.settling.settled;
        let ratio = settled.vm_kib as f64 / self.idle.vm_kib.max(1) as f64;
        println!();
        println!(
            "bearergate flood bench ({} connections in {} waves of up to {}, {} in flight; allocator: {})",
            settings.connections,
            self.waves.len(),
            settings.wave,
            settings.in_flight,
            allocator(),
        );
        println!(
            "memory after the flood   idle {:.1} MiB   peak {:.1} MiB   settled {:.1} MiB   ratio {ratio:.2} of idle   target ≤ {TARGET_SETTLED_OVER_IDLE:.0}   {}",
            mib(self.idle.vm_kib),
            mib(self.peak_kib),
            mib(settled.vm_kib),
            if ratio <= TARGET_SETTLED_OVER_IDLE { "met" } else { "MISSED" },
        );
        println!();
        for (n, wave) in self.waves.iter().enumerate() {
            println!(
                "  wave {}: {} connections ({} logged in, {} refused) in {:.2} s; VmRSS {:.1} MiB with all open",
                n + 1,
                wave.connections,
                wave.logged_in,
                wave.refused,
                wave.elapsed.as_secs_f64(),
                mib(wave.full_kib),
            );
        }
        println!(
            "  VmRSS (anonymous part): idle {:.1} ({:.1}) MiB; all closed {:.1} ({:.1}) MiB; settled after {:.1} s {:.1} ({:.1}) MiB",
            mib(self.idle.vm_kib),
            mib(self.idle.anon_kib),
            mib(self.closed.vm_kib),
            mib(self.closed.anon_kib),
            self.settling.took.as_secs_f64(),
            mib(settled.vm_kib),
            mib(settled.anon_kib),
        );
        let trace: Vec<String> = self
            .settling
            .trace
            .iter()
            .map(|&kib| format!("{:.1}", mib(kib)))
            .collect();
        println!(
            "  VmRSS while settling, MiB, one reading a second: {}",
            trace.join(" ")
        );
        println!(
            "  introspection requests in the whole run: {}",
            self.introspections
        );
    }
}
