//! Measures the built-in authorization server (`[issuer]`) of the `bearergate` binary, each
//! figure next to a baseline taken in the same run, once with the store in SQLite (the
//! default) and once in PostgreSQL (`[issuer] store`), with ratios between the two:
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
//! process over the proxy's own store (SQLite's WAL lets a second process into the file),
//! then redeemed over HTTP. The fake identity provider and backend run on a one-thread tokio
//! runtime here; the HTTP and IMAP clients are blocking `std` code.
//!
//! PostgreSQL is a private server started the way the tests start it, on loopback without
//! TLS, made as durable as the SQLite store (commits not flushed before the answer, the data
//! safe from a crash: `synchronous_commit = off`, `fsync` on; see `support/postgres.rs`).
//! Both proxies run side by side; the token endpoint figures are measured in two rounds
//! (SQLite, PostgreSQL, then PostgreSQL, SQLite) and the login blocks alternate between the
//! stores, so load from elsewhere on the machine weighs on both alike. With PostgreSQL, the
//! CPU its server processes spend is counted apart ("database CPU") and added in the
//! comparison, since SQLite does that work inside the proxy. Counts come from the
//! environment:
//!
//! | variable | default | what |
//! |---|---|---|
//! | `BENCH_TOKEN_REQUESTS` | 4 000 | requests per grant figure and store, HTTP and in process (metadata: 5×) |
//! | `BENCH_HTTP_CLIENTS` | 4 | concurrent keep-alive connections (threads in process) |
//! | `BENCH_LOGINS` | 2 000 | sequential logins per login CPU figure and store |
//! | `BENCH_GRANTS` | 1 000 | grants made before the "after grants" memory figure |
//! | `BENCH_CHECKS` | 5 000 | in-process `check_access_token` calls per figure |
//! | `BENCH_POSTGRES` | 1 | `0`: SQLite only (no PostgreSQL installed, or a shorter run) |
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
#[path = "issuer/stores.rs"]
mod stores;

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

use rates::{http_rates, in_process_rates, Cpu, HttpRates, InProcessRates, Meter};
use report::{Report, Rss, StoreFigures};
use stores::{turns, Issuer};
use support::backend::FakeBackend;
use support::client::Client;
use support::idp::FakeIdp;
use support::issuer::Minter;
use support::postgres::BenchPostgres;
use support::process::{ProxyProcess, ProxySetup};
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
/// Rounds of the token endpoint figures, each store taking its turn in each.
const ROUNDS: usize = 2;

#[derive(Debug)]
struct Settings {
    requests: usize,
    clients: usize,
    logins: usize,
    grants: usize,
    checks: usize,
    postgres: bool,
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
        let whole = clients * ROUNDS;
        Self {
            // a whole number of requests per client and round
            requests: pick("BENCH_TOKEN_REQUESTS", 4_000, 40).div_ceil(whole) * whole,
            clients,
            logins: pick("BENCH_LOGINS", 2_000, 20).div_ceil(LOGIN_BLOCKS) * LOGIN_BLOCKS,
            grants: pick("BENCH_GRANTS", 1_000, 20),
            checks: pick("BENCH_CHECKS", 5_000, 50),
            postgres: std::env::var("BENCH_POSTGRES").map_or(true, |v| v.trim() != "0"),
        }
    }

    /// Requests per client in one round.
    fn per_client(&self) -> usize {
        self.requests / self.clients / ROUNDS
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

    // Memory first, on fresh processes; each store's proxy, restarted over the grants made
    // meanwhile, serves every later figure of that store.
    let plain = {
        let plain = ProxyProcess::start_with(&peers.setup, "plain", "")?;
        peers.settled_rss(&plain)?
    };
    let database = settings.postgres.then(BenchPostgres::start).transpose()?;
    let mut issuers = vec![Issuer::start(&peers, None, settings.grants)?];
    if let Some(database) = &database {
        issuers.push(Issuer::start(&peers, Some(database), settings.grants)?);
    }

    let mut rates: Vec<(HttpRates, InProcessRates)> = Vec::new();
    for round in 0..ROUNDS {
        for index in turns(round, issuers.len()) {
            let issuer = &issuers[index];
            let http = http_rates(issuer.proxy_meter(), issuer.addr, &issuer.minter, settings)?;
            let in_process = in_process_rates(issuer.bench_meter(), &issuer.minter, settings)?;
            match rates.get_mut(index) {
                Some((sum_http, sum_in_process)) => {
                    sum_http.add(&http);
                    sum_in_process.add(&in_process);
                }
                None => rates.push((http, in_process)),
            }
        }
    }

    let mut targets = Vec::new();
    let mut checks = Vec::new();
    for issuer in &issuers {
        let cold_tokens = (0..settings.logins)
            .map(|_| Ok(issuer.minter.grant()?.access_token))
            .collect::<BenchResult<Vec<String>>>()?;
        let repeated_token = issuer.minter.grant()?.access_token;
        checks.push(check_costs(
            &issuer.minter,
            &cold_tokens,
            &repeated_token,
            settings.checks,
        )?);
        targets.push(LoginTarget {
            proxy: &issuer.proxy,
            meter: issuer.proxy_meter(),
            repeated: xoauth2(&repeated_token),
            cold: cold_tokens.iter().map(|token| xoauth2(token)).collect(),
        });
    }
    let logins = login_cpu(&peers, &targets, settings.logins)?;

    let stores = issuers
        .iter()
        .zip(rates)
        .zip(checks)
        .zip(logins)
        .map(
            |(((issuer, (http, in_process)), checks), logins)| StoreFigures {
                name: issuer.name,
                database: issuer.database.is_some(),
                memory: issuer.memory,
                http,
                in_process,
                checks,
                logins,
            },
        )
        .collect();
    Ok(Report {
        grants: settings.grants,
        plain,
        stores,
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

/// Proxy CPU (and the database's) and wall time over some sequential logins.
#[derive(Debug, Default, Clone, Copy)]
struct Logins {
    logins: usize,
    wall: Duration,
    cpu: Cpu,
}

impl Logins {
    /// The proxy's CPU per login, ms.
    fn cpu_ms(&self) -> f64 {
        self.per_login_ms(self.cpu.server)
    }

    /// The proxy's and the database's CPU per login, ms.
    fn total_cpu_ms(&self) -> f64 {
        self.per_login_ms(self.cpu.server + self.cpu.database)
    }

    /// The database's CPU per login, ms.
    fn database_ms(&self) -> f64 {
        self.per_login_ms(self.cpu.database)
    }

    fn per_login_ms(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() * 1e3 / self.logins.max(1) as f64
    }

    fn per_second(&self) -> f64 {
        self.logins as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn measurable(&self) -> bool {
        self.cpu.server >= MIN_CPU_SAMPLE
    }
}

#[derive(Debug)]
struct LoginCpu {
    cached: Logins,
    repeated: Logins,
    cold: Logins,
}

/// A proxy to log in through, with its built-in tokens (XOAUTH2 responses).
struct LoginTarget<'a> {
    proxy: &'a ProxyProcess,
    meter: Meter<'a>,
    repeated: String,
    /// One per cold login.
    cold: Vec<String>,
}

/// Login CPU of every target, in blocks that alternate between the kinds and the targets.
fn login_cpu(
    peers: &Peers,
    targets: &[LoginTarget<'_>],
    logins: usize,
) -> BenchResult<Vec<LoginCpu>> {
    // The introspected token's first login asks the identity provider; later ones hit the
    // cache. The built-in tokens' first logins warm their code paths.
    for target in targets {
        peers.warm_up(target.proxy, 1)?;
        Client::authenticate(target.proxy.listen(), &target.repeated)?.logout()?;
    }
    let mut cold: Vec<_> = targets.iter().map(|target| target.cold.iter()).collect();
    let per_block = logins / LOGIN_BLOCKS;
    let mut totals = vec![[Logins::default(); 3]; targets.len()];
    for block in 0..LOGIN_BLOCKS {
        for index in turns(block, targets.len()) {
            let target = &targets[index];
            for (kind, total) in totals[index].iter_mut().enumerate() {
                peers.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
                let before = target.meter.read()?;
                let started = Instant::now();
                for _ in 0..per_block {
                    let response = match kind {
                        0 => &peers.introspected,
                        1 => &target.repeated,
                        _ => cold[index].next().ok_or("out of cold tokens")?,
                    };
                    Client::authenticate(target.proxy.listen(), response)?.logout()?;
                }
                let wall = started.elapsed();
                // The proxy's side of the last session closes after the client's.
                peers.backend.wait_for_logged_in(0, SETTLE_DEADLINE)?;
                thread::sleep(Duration::from_millis(100));
                total.logins += per_block;
                total.wall += wall;
                total.cpu.add(target.meter.read()?.since(before));
            }
        }
    }
    Ok(totals
        .into_iter()
        .map(|[cached, repeated, cold]| LoginCpu {
            cached,
            repeated,
            cold,
        })
        .collect())
}
