//! Measures the `bearergate` binary against its four performance targets, each next to a
//! baseline taken in the same run:
//!
//! 1. memory per idle authenticated session (≤ 4 KiB; proxy `VmRSS` growth over N sessions);
//! 2. relay throughput each way (≥ 0.90 of a direct connection to the same backend);
//! 3. latency added per command after login (≤ 20 µs; `NOOP` round trips, proxy − direct);
//! 4. proxy CPU per login with a cached token (≤ 0.3 ms; `utime + stime` over N logins).
//!
//! The proxy runs as a child process (plaintext listener, master-user login, introspection);
//! the fake identity provider and backend run on a one-thread tokio runtime in this process,
//! and the client is blocking `std` code. Counts come from the environment:
//!
//! | variable | default | what |
//! |---|---|---|
//! | `BENCH_SESSIONS` | 2 000 | idle sessions held open for the memory figure |
//! | `BENCH_LOGINS` | 2 000 | sequential logins for the CPU figure |
//! | `BENCH_ROUND_TRIPS` | 20 000 | `NOOP` round trips per path for the latency figure |
//! | `BENCH_RELAY_MIB` | 512 | MiB per direction per path for the throughput figure |
//! | `BENCH_REPEATS` | 3 | throughput runs per path and direction; the best counts |
//!
//! Run without `--bench` (as `cargo test --benches` does) it is a quick smoke run.

mod support;

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

use support::backend::FakeBackend;
use support::client::Client;
use support::idp::FakeIdp;
use support::process::{
    clock_ticks_per_second, open_files_limit, own_cpu_time, ProxyProcess, ProxySetup,
};
use support::{realistic_token, BenchResult};

const TARGET_KIB_PER_SESSION: f64 = 4.0;
const TARGET_THROUGHPUT_RATIO: f64 = 0.90;
const TARGET_ADDED_LATENCY_US: f64 = 20.0;
const TARGET_CPU_PER_LOGIN_MS: f64 = 0.3;

/// Sessions opened and closed before the memory baseline, so one-off allocations (runtime,
/// cache entry, allocator arenas) are not charged to the measured sessions.
const WARM_UP_SESSIONS: usize = 50;
/// Descriptors kept free for the runtimes, the proxy's own files and the standard streams.
const SPARE_FILES: u64 = 100;
/// Latency samples are taken in this many alternating blocks per path, so a burst of load
/// from elsewhere on the machine hits both paths alike.
const LATENCY_BLOCKS: usize = 10;
/// Round trips each path makes before latency samples are kept.
const LATENCY_WARM_UP: usize = 1_000;
/// Bytes each path moves each way before throughput is timed.
const RELAY_WARM_UP: u64 = 16 << 20;
/// Longest wait for the backend to see sessions open or close.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
/// CPU time below which `/proc` tick counts (10 ms each) are too coarse to compare.
const MIN_CPU_SAMPLE: Duration = Duration::from_millis(200);
/// A typical signed access token is 800–1 200 characters.
const TOKEN_LENGTH: usize = 800;

#[derive(Debug)]
struct Settings {
    sessions: usize,
    logins: usize,
    round_trips: usize,
    relay_bytes: u64,
    repeats: usize,
    /// Why `sessions` is lower than asked, if it is.
    sessions_note: Option<String>,
}

impl Settings {
    fn from_env() -> Self {
        let full = std::env::args().any(|arg| arg == "--bench");
        let pick = |name: &str, full_default: usize, smoke_default: usize| -> usize {
            std::env::var(name)
                .ok()
                .and_then(|v| v.replace('_', "").parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or(if full { full_default } else { smoke_default })
        };
        let mut settings = Self {
            sessions: pick("BENCH_SESSIONS", 2_000, 20),
            logins: pick("BENCH_LOGINS", 2_000, 20),
            round_trips: pick("BENCH_ROUND_TRIPS", 20_000, 200),
            relay_bytes: (pick("BENCH_RELAY_MIB", 512, 4) as u64) << 20,
            repeats: pick("BENCH_REPEATS", 3, 1),
            sessions_note: None,
        };
        // Each idle session holds two descriptors here (client and backend side) and two in
        // the proxy, which inherits this limit.
        if let Some(limit) = open_files_limit() {
            let fits = (limit.saturating_sub(SPARE_FILES) / 2) as usize;
            if settings.sessions > fits {
                settings.sessions_note = Some(format!(
                    "{} sessions asked, {fits} fit the open-files limit {limit} (raise `ulimit -n`)",
                    settings.sessions
                ));
                settings.sessions = fits;
            }
        }
        settings
    }
}

fn main() -> ExitCode {
    let settings = Settings::from_env();
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
        .worker_threads(1)
        .enable_all()
        .build()?;
    let idp = FakeIdp::start(runtime.handle())?;
    let backend = FakeBackend::start(runtime.handle())?;
    let proxy = ProxyProcess::start(&ProxySetup {
        backend: backend.addr(),
        introspection_url: idp.url(),
        max_connections: settings.sessions + 1_000,
    })?;
    let token = realistic_token(TOKEN_LENGTH);
    let initial_response = base64::engine::general_purpose::STANDARD
        .encode(format!("user=alice\x01auth=Bearer {token}\x01\x01"));

    // The first login asks the identity provider; every later one hits the cache.
    Client::authenticate(proxy.listen(), &initial_response)?.logout()?;
    backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;

    let bench = Bench {
        proxy: &proxy,
        backend: &backend,
        initial_response: &initial_response,
    };
    let memory = bench.idle_memory(settings.sessions)?;
    let login = bench.cached_logins(settings.logins)?;
    let latency = bench.latency(settings.round_trips)?;
    let relay = bench.throughput(settings.relay_bytes, settings.repeats)?;
    Ok(Report {
        memory,
        login,
        latency,
        relay,
        introspections: idp.requests(),
    })
}

struct Bench<'a> {
    proxy: &'a ProxyProcess,
    backend: &'a FakeBackend,
    initial_response: &'a str,
}

impl Bench<'_> {
    fn proxied(&self) -> BenchResult<Client> {
        Client::authenticate(self.proxy.listen(), self.initial_response)
    }

    fn direct(&self) -> BenchResult<Client> {
        Client::login(self.backend.addr())
    }

    /// Proxy RSS growth while `sessions` logged-in sessions sit idle.
    fn idle_memory(&self, sessions: usize) -> BenchResult<Memory> {
        for _ in 0..WARM_UP_SESSIONS {
            self.proxied()?.logout()?;
        }
        self.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
        thread::sleep(Duration::from_millis(200));
        let before_kib = self.proxy.rss_kib()?;
        let mut open = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            open.push(self.proxied()?);
        }
        self.backend.wait_for_logged_in(sessions, SETTLE_DEADLINE)?;
        thread::sleep(Duration::from_millis(300));
        let idle_kib = self.proxy.rss_kib()?;
        drop(open);
        self.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
        thread::sleep(Duration::from_millis(300));
        let closed_kib = self.proxy.rss_kib()?;
        Ok(Memory {
            sessions,
            before_kib,
            idle_kib,
            closed_kib,
        })
    }

    /// Proxy CPU time and wall time for `logins` sequential fresh-connection logins.
    fn cached_logins(&self, logins: usize) -> BenchResult<Logins> {
        let hz = clock_ticks_per_second();
        self.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
        let cpu_before = self.proxy.cpu_time(hz)?;
        let started = Instant::now();
        for _ in 0..logins {
            self.proxied()?.logout()?;
        }
        let wall = started.elapsed();
        // The proxy's side of the last session closes after the client's.
        self.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
        thread::sleep(Duration::from_millis(100));
        let cpu = self.proxy.cpu_time(hz)?.saturating_sub(cpu_before);
        Ok(Logins { logins, wall, cpu })
    }

    /// `NOOP` round-trip times through the proxy and straight to the backend.
    fn latency(&self, round_trips: usize) -> BenchResult<Latency> {
        let mut direct = self.direct()?;
        let mut proxied = self.proxied()?;
        for _ in 0..LATENCY_WARM_UP {
            direct.noop()?;
            proxied.noop()?;
        }
        let hz = clock_ticks_per_second();
        let per_block = round_trips.div_ceil(LATENCY_BLOCKS);
        let mut direct_ns = Vec::with_capacity(per_block * LATENCY_BLOCKS);
        let mut proxied_ns = Vec::with_capacity(per_block * LATENCY_BLOCKS);
        let mut proxy_cpu = Duration::ZERO;
        for _ in 0..LATENCY_BLOCKS {
            for (via_proxy, client, samples) in [
                (false, &mut direct, &mut direct_ns),
                (true, &mut proxied, &mut proxied_ns),
            ] {
                let proxy_before = self.proxy.cpu_time(hz)?;
                for _ in 0..per_block {
                    let started = Instant::now();
                    client.noop()?;
                    samples.push(started.elapsed().as_nanos() as u64);
                }
                if via_proxy {
                    proxy_cpu += self.proxy.cpu_time(hz)?.saturating_sub(proxy_before);
                }
            }
        }
        direct.logout()?;
        proxied.logout()?;
        let measured = proxied_ns.len() as f64;
        Ok(Latency {
            direct: Summary::of(&mut direct_ns),
            proxied: Summary::of(&mut proxied_ns),
            proxy_cpu_us: (proxy_cpu >= MIN_CPU_SAMPLE)
                .then(|| proxy_cpu.as_secs_f64() * 1e6 / measured),
        })
    }

    /// Best-of-`repeats` upload and download rates on each path, and the proxy's CPU cost.
    fn throughput(&self, bytes: u64, repeats: usize) -> BenchResult<Relay> {
        let hz = clock_ticks_per_second();
        let mut direct = self.direct()?;
        let mut proxied = self.proxied()?;
        for client in [&mut direct, &mut proxied] {
            client.upload(RELAY_WARM_UP)?;
            client.download(RELAY_WARM_UP)?;
        }
        let mut best = Relay::default();
        // CPU of this process (client and backend) per path, and of the proxy.
        let mut own_cpu = [Duration::ZERO; 2];
        let mut proxy_cpu = Duration::ZERO;
        for _ in 0..repeats {
            for upload in [true, false] {
                for via_proxy in [false, true] {
                    let client = if via_proxy { &mut proxied } else { &mut direct };
                    let own_before = own_cpu_time(hz)?;
                    let proxy_before = self.proxy.cpu_time(hz)?;
                    let started = Instant::now();
                    if upload {
                        client.upload(bytes)?;
                    } else {
                        client.download(bytes)?;
                    }
                    let rate = mib_per_second(bytes, started.elapsed());
                    own_cpu[usize::from(via_proxy)] += own_cpu_time(hz)?.saturating_sub(own_before);
                    if via_proxy {
                        proxy_cpu += self.proxy.cpu_time(hz)?.saturating_sub(proxy_before);
                    }
                    let slot = match (upload, via_proxy) {
                        (true, false) => &mut best.upload_direct,
                        (true, true) => &mut best.upload_proxied,
                        (false, false) => &mut best.download_direct,
                        (false, true) => &mut best.download_proxied,
                    };
                    *slot = slot.max(rate);
                }
            }
        }
        direct.logout()?;
        proxied.logout()?;
        let gib_per_path = (2 * repeats as u64 * bytes) as f64 / f64::from(1u32 << 30);
        let ms_per_gib = |cpu: Duration| cpu.as_secs_f64() * 1e3 / gib_per_path;
        best.direct_cpu_ms_per_gib = ms_per_gib(own_cpu[0]);
        best.peers_cpu_ms_per_gib = ms_per_gib(own_cpu[1]);
        best.proxy_cpu_ms_per_gib = ms_per_gib(proxy_cpu);
        best.cpu_measurable = own_cpu[0].min(own_cpu[1] + proxy_cpu) >= MIN_CPU_SAMPLE;
        Ok(best)
    }
}

fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / f64::from(1u32 << 20) / elapsed.as_secs_f64().max(1e-9)
}

#[derive(Debug)]
struct Memory {
    sessions: usize,
    before_kib: u64,
    idle_kib: u64,
    closed_kib: u64,
}

#[derive(Debug)]
struct Logins {
    logins: usize,
    wall: Duration,
    cpu: Duration,
}

#[derive(Debug)]
struct Latency {
    direct: Summary,
    proxied: Summary,
    /// The proxy's own CPU per proxied round trip, when enough was used to measure.
    proxy_cpu_us: Option<f64>,
}

/// Round-trip statistics in microseconds.
#[derive(Debug)]
struct Summary {
    mean: f64,
    p50: f64,
    p99: f64,
}

impl Summary {
    fn of(samples_ns: &mut [u64]) -> Self {
        samples_ns.sort_unstable();
        let n = samples_ns.len().max(1);
        let at = |q: f64| {
            let index = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            samples_ns.get(index).copied().unwrap_or(0) as f64 / 1e3
        };
        Self {
            mean: samples_ns.iter().sum::<u64>() as f64 / n as f64 / 1e3,
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// Best rates in MiB/s.
#[derive(Debug, Default)]
struct Relay {
    upload_direct: f64,
    upload_proxied: f64,
    download_direct: f64,
    download_proxied: f64,
    /// Client and backend CPU per GiB carried on the direct path.
    direct_cpu_ms_per_gib: f64,
    /// Client and backend CPU per GiB carried through the proxy.
    peers_cpu_ms_per_gib: f64,
    /// Proxy CPU per GiB relayed.
    proxy_cpu_ms_per_gib: f64,
    /// Enough CPU ticks passed for the per-GiB figures to mean something.
    cpu_measurable: bool,
}

#[derive(Debug)]
struct Report {
    memory: Memory,
    login: Logins,
    latency: Latency,
    relay: Relay,
    introspections: usize,
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

impl Report {
    fn print(&self, settings: &Settings) {
        let cpus = thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!(
            "bearergate bench ({} idle sessions, {} logins, {} round trips, {} MiB each way best of {}; {cpus} CPUs shared by client, backend and proxy)",
            self.memory.sessions,
            self.login.logins,
            settings.round_trips.div_ceil(LATENCY_BLOCKS) * LATENCY_BLOCKS,
            settings.relay_bytes >> 20,
            settings.repeats,
        );
        let m = &self.memory;
        let kib = m.idle_kib.saturating_sub(m.before_kib) as f64 / m.sessions.max(1) as f64;
        println!(
            "idle session memory      {kib:.1} KiB/session   target ≤ {TARGET_KIB_PER_SESSION:.0} KiB          (ratio {:.2} of target)   {}",
            kib / TARGET_KIB_PER_SESSION,
            verdict(kib <= TARGET_KIB_PER_SESSION),
        );
        let r = &self.relay;
        for (name, proxied, direct) in [
            ("relay upload  ", r.upload_proxied, r.upload_direct),
            ("relay download", r.download_proxied, r.download_direct),
        ] {
            let ratio = proxied / direct.max(1e-9);
            println!(
                "{name}           {proxied:.0} MiB/s   direct {direct:.0} MiB/s   ratio {ratio:.2}   target ≥ {TARGET_THROUGHPUT_RATIO:.2}   {}",
                verdict(ratio >= TARGET_THROUGHPUT_RATIO),
            );
        }
        let l = &self.latency;
        let added_mean = l.proxied.mean - l.direct.mean;
        let added_p99 = l.proxied.p99 - l.direct.p99;
        println!(
            "added latency per cmd    mean {added_mean:.1} µs  p99 {added_p99:.1} µs   (proxy {:.1} µs vs direct {:.1} µs)   target ≤ {TARGET_ADDED_LATENCY_US:.0} µs   {}",
            l.proxied.mean,
            l.direct.mean,
            verdict(added_mean <= TARGET_ADDED_LATENCY_US),
        );
        let g = &self.login;
        let cpu_ms = g.cpu.as_secs_f64() * 1e3 / g.logins.max(1) as f64;
        let per_second = g.logins as f64 / g.wall.as_secs_f64().max(1e-9);
        println!(
            "CPU per cached login     {cpu_ms:.3} ms  ({} logins, {per_second:.0} logins/s)   target ≤ {TARGET_CPU_PER_LOGIN_MS} ms   {}",
            g.logins,
            verdict(cpu_ms <= TARGET_CPU_PER_LOGIN_MS),
        );
        println!();
        println!(
            "  memory: proxy VmRSS {} KiB after warm-up, {} KiB with {} idle sessions, {} KiB after they closed",
            m.before_kib, m.idle_kib, m.sessions, m.closed_kib
        );
        println!(
            "  latency: p50 proxy {:.1} µs vs direct {:.1} µs; p99 proxy {:.1} µs vs direct {:.1} µs",
            l.proxied.p50, l.direct.p50, l.proxied.p99, l.direct.p99
        );
        match l.proxy_cpu_us {
            Some(us) => println!(
                "  latency: proxy CPU {us:.1} µs per proxied round trip; the rest of the added time is waiting to be scheduled"
            ),
            None => println!("  latency: proxy CPU per round trip too small to measure with /proc ticks"),
        }
        let proxied_cpu = r.peers_cpu_ms_per_gib + r.proxy_cpu_ms_per_gib;
        if r.cpu_measurable {
            println!(
                "  relay: CPU per GiB: direct path {:.0} ms (client+backend); proxied path {:.0} ms = {:.0} ms client+backend + {:.0} ms proxy",
                r.direct_cpu_ms_per_gib, proxied_cpu, r.peers_cpu_ms_per_gib, r.proxy_cpu_ms_per_gib
            );
            println!(
                "         when every CPU is busy the proxied rate is bounded near {:.2} of direct (direct CPU / proxied CPU)",
                r.direct_cpu_ms_per_gib / proxied_cpu.max(1e-9)
            );
        } else {
            println!("  relay: too few bytes for CPU-per-GiB figures (raise BENCH_RELAY_MIB)");
        }
        println!(
            "  logins: proxy CPU {:.0} ms over {:.2} s wall; introspection requests in the whole run: {}",
            g.cpu.as_secs_f64() * 1e3,
            g.wall.as_secs_f64(),
            self.introspections
        );
        if let Some(note) = &settings.sessions_note {
            println!("  note: {note}");
        }
    }
}
