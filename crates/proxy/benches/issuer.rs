//! Measures the built-in authorization server (`[issuer]`) of the `bearergate` binary, each
//! figure next to a baseline taken in the same run:
//!
//! 1. token endpoint requests per second for the `refresh_token` and `authorization_code`
//!    (+ PKCE) grants over HTTP, as a ratio to the metadata `GET` over the same client, and
//!    the same grants called in process on [`authz::AuthServer`] (the HTTP layer's share);
//! 2. proxy CPU per mail login with a built-in token, a fresh one each login ("cold") and
//!    the same one each login ("repeated"), against the cached-introspection login (target
//!    for both: ≤ 0.3 ms, `utime + stime` over N logins), and what one in-process
//!    `check_access_token` costs, with the ES256 verification inside it on its own;
//! 3. the memory the issuer adds at idle: `VmRSS` of the proxy with the same listeners with
//!    and without `[issuer]`, and with `[issuer]` after N grants exist in the store.
//!
//! The issuer listens on loopback with `plaintext = true` (no TLS in the measured path). Its
//! codes need a signed-in approval, so they are made by an [`authz::AuthServer`] in this
//! process over the proxy's own SQLite file (WAL lets a second process in), then redeemed
//! over HTTP. The fake identity provider and backend run on a one-thread tokio runtime here;
//! the HTTP and IMAP clients are blocking `std` code. Counts come from the environment:
//!
//! | variable | default | what |
//! |---|---|---|
//! | `BENCH_TOKEN_REQUESTS` | 4 000 | requests per grant figure, HTTP and in process (metadata: 5×) |
//! | `BENCH_HTTP_CLIENTS` | 4 | concurrent keep-alive connections (threads in process) |
//! | `BENCH_LOGINS` | 2 000 | sequential logins per login CPU figure |
//! | `BENCH_GRANTS` | 1 000 | grants made before the "after grants" memory figure |
//! | `BENCH_CHECKS` | 5 000 | in-process `check_access_token` calls per figure |
//!
//! Run without `--bench` (as `cargo test --benches` does) it is a quick smoke run.

// The support modules are shared with benches/proxy.rs, which uses the rest of them.
#[allow(dead_code)]
mod support;

// Beside this file rather than in benches/ itself, where Cargo would take them for benches.
#[path = "issuer/rates.rs"]
mod rates;
#[path = "issuer/report.rs"]
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

use rates::{http_code_worker, http_rates, in_process_rates};
use report::{Memory, Report, Rss};
use support::backend::FakeBackend;
use support::client::Client;
use support::idp::FakeIdp;
use support::issuer::{issuer_settings, issuer_table, Minter};
use support::process::{clock_ticks_per_second, free_local_addr, ProxyProcess, ProxySetup};
use support::{realistic_token, BenchResult};

const TARGET_CPU_PER_LOGIN_MS: f64 = 0.3;

/// Logins before each memory reading, the same for every proxy, so one-off allocations
/// (runtime, cache entry, allocator arenas) are made in all of them.
const WARM_UP_LOGINS: usize = 50;
/// How long a proxy is left alone before its `VmRSS` is read.
const SETTLE: Duration = Duration::from_millis(500);
/// Longest wait for the backend to see sessions close.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
/// Login CPU is measured in this many alternating blocks per kind, so a burst of load from
/// elsewhere on the machine hits every kind alike.
const LOGIN_BLOCKS: usize = 4;
/// CPU time below which `/proc` tick counts (10 ms each) are too coarse to compare.
const MIN_CPU_SAMPLE: Duration = Duration::from_millis(200);
/// The introspected baseline token: as long as a typical signed access token.
const TOKEN_LENGTH: usize = 800;

#[derive(Debug)]
struct Settings {
    requests: usize,
    clients: usize,
    logins: usize,
    grants: usize,
    checks: usize,
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
        let clients = pick("BENCH_HTTP_CLIENTS", 4, 2);
        Self {
            // a whole number of requests per client
            requests: pick("BENCH_TOKEN_REQUESTS", 4_000, 40).div_ceil(clients) * clients,
            clients,
            logins: pick("BENCH_LOGINS", 2_000, 20).div_ceil(LOGIN_BLOCKS) * LOGIN_BLOCKS,
            grants: pick("BENCH_GRANTS", 1_000, 20),
            checks: pick("BENCH_CHECKS", 5_000, 50),
        }
    }

    fn per_client(&self) -> usize {
        self.requests / self.clients
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

/// The issuer's store directory: outlives each proxy (a restart must find it), removed at
/// the end.
struct StateDir(PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What every proxy of the run shares: its peers, and the XOAUTH2 response of the
/// introspected baseline token.
struct Peers {
    backend: FakeBackend,
    setup: ProxySetup,
    introspected: String,
}

impl Peers {
    /// `logins` sequential logins with the introspected token, then all sessions closed.
    fn warm_up(&self, proxy: &ProxyProcess, logins: usize) -> BenchResult<()> {
        for _ in 0..logins {
            Client::authenticate(proxy.listen(), &self.introspected)?.logout()?;
        }
        self.backend.wait_for_logged_in(0, SETTLE_DEADLINE)
    }

    /// Warm-up, a pause, then the resident memory.
    fn settled_rss(&self, proxy: &ProxyProcess) -> BenchResult<Rss> {
        self.warm_up(proxy, WARM_UP_LOGINS)?;
        thread::sleep(SETTLE);
        Ok(Rss {
            total: proxy.rss_kib()?,
            anon: proxy.status_kib("RssAnon")?,
            file: proxy.status_kib("RssFile")?,
        })
    }
}

fn run(settings: &Settings) -> BenchResult<Report> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let idp = FakeIdp::start(runtime.handle())?;
    let backend = FakeBackend::start(runtime.handle())?;
    let setup = ProxySetup {
        backend: backend.addr(),
        introspection_url: idp.url(),
        max_connections: 1_000,
    };
    let introspected = xoauth2(&realistic_token(TOKEN_LENGTH));
    let peers = Peers {
        backend,
        setup,
        introspected,
    };
    let state = StateDir(std::env::temp_dir().join(format!(
        "bearergate-bench-{}-issuer-state",
        std::process::id()
    )));
    let issuer_addr = free_local_addr()?;
    let table = issuer_table(issuer_addr, &state.0);

    // Memory first, on fresh processes; the proxy restarted over the grants made meanwhile
    // serves every later figure.
    let plain = {
        let plain = ProxyProcess::start_with(&peers.setup, "plain", "")?;
        peers.settled_rss(&plain)?
    };
    let issuer = ProxyProcess::start_with(&peers.setup, "issuer", &table)?;
    let fresh = peers.settled_rss(&issuer)?;
    let minter = Minter::open(issuer_settings(&table)?)?;
    let mut redeemer = http_code_worker(issuer_addr, minter.codes(settings.grants)?)?;
    while !redeemer.is_done() {
        redeemer.step()?;
    }
    drop(redeemer);
    let after_grants = peers.settled_rss(&issuer)?;
    drop(issuer);
    let proxy = ProxyProcess::start_with(&peers.setup, "issuer-restarted", &table)?;
    let restarted = peers.settled_rss(&proxy)?;
    let memory = Memory {
        grants: settings.grants,
        plain,
        fresh,
        after_grants,
        restarted,
    };

    let http = http_rates(&proxy, issuer_addr, &minter, settings)?;
    let in_process = in_process_rates(&minter, settings)?;
    let cold_tokens = (0..settings.logins)
        .map(|_| Ok(minter.grant()?.access_token))
        .collect::<BenchResult<Vec<String>>>()?;
    let repeated_token = minter.grant()?.access_token;
    let checks = check_costs(&minter, &cold_tokens, &repeated_token, settings.checks)?;
    let logins = login_cpu(
        &peers,
        &proxy,
        &cold_tokens,
        &repeated_token,
        settings.logins,
    )?;
    Ok(Report {
        memory,
        http,
        in_process,
        checks,
        logins,
        introspections: idp.requests(),
    })
}

/// The SASL XOAUTH2 initial response for `alice` and `token`, base64.
fn xoauth2(token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!(
        "user={}\x01auth=Bearer {token}\x01\x01",
        support::issuer::USER
    ))
}

// ---------------------------------------------------------------------------------------
// 2. what a login with a built-in token costs

/// Mean wall time per in-process call, µs.
#[derive(Debug)]
struct CheckCosts {
    calls: usize,
    /// `check_access_token`, the same token every call.
    repeated_us: f64,
    /// `check_access_token`, a different token (and grant) every call.
    cold_us: f64,
    /// `jsonwebtoken::decode` with the issuer's public key: header and claims parsed, the
    /// ES256 signature verified — the part of the check a cache of verified tokens would
    /// save.
    decode_us: f64,
    /// The ES256 verification alone (`jsonwebtoken::crypto::verify`).
    verify_us: f64,
}

fn mean_us(calls: usize, mut call: impl FnMut(usize) -> BenchResult<()>) -> BenchResult<f64> {
    let started = Instant::now();
    for index in 0..calls {
        call(index)?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / calls.max(1) as f64)
}

fn check_costs(
    minter: &Minter,
    cold_tokens: &[String],
    repeated_token: &str,
    calls: usize,
) -> BenchResult<CheckCosts> {
    let server = minter.server();
    let check = |token: &str| -> BenchResult<()> {
        server
            .check_access_token(token)
            .map(drop)
            .map_err(|e| format!("check_access_token: {e}").into())
    };
    // warm-up: code paths, the store's page cache
    for token in cold_tokens.iter().take(calls) {
        check(token)?;
    }
    let repeated_us = mean_us(calls, |_| check(repeated_token))?;
    let cold_us = mean_us(calls, |i| check(&cold_tokens[i % cold_tokens.len().max(1)]))?;

    let jwks = server.jwks();
    let key = jwks
        .get("keys")
        .and_then(|keys| keys.get(0))
        .ok_or("the JWKS has no key")?;
    let component = |name: &str| key.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let decoding = jsonwebtoken::DecodingKey::from_ec_components(component("x"), component("y"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[server.issuer()]);
    validation.set_audience(&[server.issuer()]);
    let decode_us = mean_us(calls, |_| {
        jsonwebtoken::decode::<serde_json::Value>(repeated_token, &decoding, &validation)?;
        Ok(())
    })?;
    let (message, signature) = repeated_token
        .rsplit_once('.')
        .ok_or("the access token is not a JWS")?;
    let verify_us = mean_us(calls, |_| {
        let valid = jsonwebtoken::crypto::verify(
            signature,
            message.as_bytes(),
            &decoding,
            jsonwebtoken::Algorithm::ES256,
        )?;
        if valid {
            Ok(())
        } else {
            Err("the signature does not verify".into())
        }
    })?;
    Ok(CheckCosts {
        calls,
        repeated_us,
        cold_us,
        decode_us,
        verify_us,
    })
}

/// Proxy CPU and wall time over some sequential logins.
#[derive(Debug, Default, Clone, Copy)]
struct Logins {
    logins: usize,
    wall: Duration,
    cpu: Duration,
}

impl Logins {
    fn cpu_ms(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e3 / self.logins.max(1) as f64
    }

    fn per_second(&self) -> f64 {
        self.logins as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn measurable(&self) -> bool {
        self.cpu >= MIN_CPU_SAMPLE
    }
}

#[derive(Debug)]
struct LoginCpu {
    cached: Logins,
    repeated: Logins,
    cold: Logins,
}

fn login_cpu(
    peers: &Peers,
    proxy: &ProxyProcess,
    cold_tokens: &[String],
    repeated_token: &str,
    logins: usize,
) -> BenchResult<LoginCpu> {
    let hz = clock_ticks_per_second();
    let repeated = xoauth2(repeated_token);
    let mut cold = cold_tokens.iter().map(|token| xoauth2(token));
    // The introspected token's first login asks the identity provider; later ones hit the
    // cache. The built-in tokens' first logins warm their code paths.
    peers.warm_up(proxy, 1)?;
    Client::authenticate(proxy.listen(), &repeated)?.logout()?;
    let per_block = logins / LOGIN_BLOCKS;
    let mut totals = [Logins::default(); 3];
    for _ in 0..LOGIN_BLOCKS {
        for (kind, total) in totals.iter_mut().enumerate() {
            peers.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
            let before = proxy.cpu_time(hz)?;
            let started = Instant::now();
            for _ in 0..per_block {
                let response = match kind {
                    0 => peers.introspected.clone(),
                    1 => repeated.clone(),
                    _ => cold.next().ok_or("out of cold tokens")?,
                };
                Client::authenticate(proxy.listen(), &response)?.logout()?;
            }
            let wall = started.elapsed();
            // The proxy's side of the last session closes after the client's.
            peers.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
            thread::sleep(Duration::from_millis(100));
            total.logins += per_block;
            total.wall += wall;
            total.cpu += proxy.cpu_time(hz)?.saturating_sub(before);
        }
    }
    let [cached, repeated, cold] = totals;
    Ok(LoginCpu {
        cached,
        repeated,
        cold,
    })
}
