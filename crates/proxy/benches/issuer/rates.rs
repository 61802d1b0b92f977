//! Token endpoint figures: requests per second for the metadata `GET` (the baseline) and
//! the two grants over HTTP, and the same grants called in process, each with the CPU time
//! the serving side spent (and the database server, when the store is one). Each call
//! measures one round; [`HttpRates::add`] and [`InProcessRates::add`] sum the rounds.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::http::{drive, HttpClient};
use crate::support::issuer::{caller, refresh_form, refresh_request, tokens_of, Code, Minter};
use crate::support::postgres::BenchPostgres;
use crate::support::process::{clock_ticks_per_second, own_cpu_time, ProxyProcess};
use crate::support::BenchResult;
use crate::{Settings, MIN_CPU_SAMPLE};

/// Share of each figure's requests made first, untimed.
const WARM_UP_SHARE: usize = 10;
/// The metadata baseline makes this many times the grants' requests: each is so cheap that
/// the grants' count would use too little proxy CPU to measure in ticks.
const METADATA_FACTOR: usize = 5;

/// CPU time: the serving side's — the proxy's over HTTP and at login, this process's in
/// process — and the database server's (zero with SQLite, whose work is the server side's).
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu {
    pub server: Duration,
    pub database: Duration,
}

impl Cpu {
    /// What was spent since `before`.
    pub fn since(self, before: Cpu) -> Cpu {
        Cpu {
            server: self.server.saturating_sub(before.server),
            database: self.database.saturating_sub(before.database),
        }
    }

    pub fn add(&mut self, other: Cpu) {
        self.server += other.server;
        self.database += other.database;
    }
}

/// Whose CPU time a figure counts: the serving side, and the database when the store is one.
#[derive(Debug, Clone, Copy)]
pub struct Meter<'a> {
    server: Server<'a>,
    database: Option<&'a BenchPostgres>,
}

impl<'a> Meter<'a> {
    /// The proxy child process, for requests over HTTP and logins.
    pub fn proxy(proxy: &'a ProxyProcess, database: Option<&'a BenchPostgres>) -> Self {
        Self {
            server: Server::Proxy(proxy),
            database,
        }
    }

    /// This process, for calls in process (its idle fake peers add next to nothing).
    pub fn bench(database: Option<&'a BenchPostgres>) -> Self {
        Self {
            server: Server::Bench,
            database,
        }
    }

    /// CPU time spent so far.
    pub fn read(self) -> BenchResult<Cpu> {
        let hz = clock_ticks_per_second();
        Ok(Cpu {
            server: match self.server {
                Server::Proxy(proxy) => proxy.cpu_time(hz)?,
                Server::Bench => own_cpu_time(hz)?,
            },
            database: match self.database {
                Some(database) => database.cpu_time(hz)?,
                None => Duration::ZERO,
            },
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Server<'a> {
    Proxy(&'a ProxyProcess),
    Bench,
}

/// Requests done in a wall time, and the CPU spent on them.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub requests: usize,
    pub wall: Duration,
    pub cpu: Cpu,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The serving side's CPU per request in µs, when enough was used to measure.
    pub fn cpu_us(&self) -> Option<f64> {
        self.per_request_us(self.cpu.server)
    }

    /// The serving side's and the database's CPU per request in µs, when enough was used to
    /// measure.
    pub fn total_cpu_us(&self) -> Option<f64> {
        self.per_request_us(self.cpu.server + self.cpu.database)
    }

    /// The database's CPU per request in µs, when enough was used to measure.
    pub fn database_us(&self) -> Option<f64> {
        self.per_request_us(self.cpu.database)
    }

    fn per_request_us(&self, cpu: Duration) -> Option<f64> {
        (cpu >= MIN_CPU_SAMPLE).then(|| cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64)
    }

    fn add(&mut self, other: &Rate) {
        self.requests += other.requests;
        self.wall += other.wall;
        self.cpu.add(other.cpu);
    }
}

#[derive(Debug)]
pub struct HttpRates {
    pub metadata: Rate,
    pub refresh: Rate,
    pub code: Rate,
}

impl HttpRates {
    /// Another round's figures summed into these.
    pub fn add(&mut self, round: &HttpRates) {
        self.metadata.add(&round.metadata);
        self.refresh.add(&round.refresh);
        self.code.add(&round.code);
    }
}

#[derive(Debug)]
pub struct InProcessRates {
    pub refresh: Rate,
    pub code: Rate,
}

impl InProcessRates {
    /// Another round's figures summed into these.
    pub fn add(&mut self, round: &InProcessRates) {
        self.refresh.add(&round.refresh);
        self.code.add(&round.code);
    }
}

/// Redeems its codes over one keep-alive connection, one per step.
pub struct CodeWorker {
    client: HttpClient,
    codes: std::vec::IntoIter<Code>,
    left: usize,
}

impl CodeWorker {
    pub fn is_done(&self) -> bool {
        self.left == 0
    }

    pub fn step(&mut self) -> BenchResult<()> {
        let code = self.codes.next().ok_or("out of codes")?;
        self.left -= 1;
        let (status, body) = self.client.post_form(authz::paths::TOKEN, &code.form())?;
        tokens_of(status, body).map(drop)
    }
}

pub fn http_code_worker(addr: SocketAddr, codes: Vec<Code>) -> BenchResult<CodeWorker> {
    Ok(CodeWorker {
        client: HttpClient::connect(addr)?,
        left: codes.len(),
        codes: codes.into_iter(),
    })
}

/// Runs `workers` for a warm-up and then for the measured requests, reading the CPU time
/// around the latter.
fn timed<W>(meter: Meter<'_>, workers: &mut [W], per_client: usize) -> BenchResult<Rate>
where
    W: FnMut() -> BenchResult<()> + Send,
{
    drive(workers, per_client.div_ceil(WARM_UP_SHARE))?;
    let before = meter.read()?;
    let wall = drive(workers, per_client)?;
    Ok(Rate {
        requests: per_client * workers.len(),
        wall,
        cpu: meter.read()?.since(before),
    })
}

/// Codes for every worker's warm-up and measured steps.
fn codes_per_worker(minter: &Minter, settings: &Settings) -> BenchResult<Vec<Vec<Code>>> {
    let each = settings.per_client().div_ceil(WARM_UP_SHARE) + settings.per_client();
    (0..settings.clients).map(|_| minter.codes(each)).collect()
}

/// One round of the figures over HTTP; `meter` counts the proxy's CPU (and the database's).
pub fn http_rates(
    meter: Meter<'_>,
    addr: SocketAddr,
    minter: &Minter,
    settings: &Settings,
) -> BenchResult<HttpRates> {
    let mut getters = (0..settings.clients)
        .map(|_| {
            let mut client = HttpClient::connect(addr)?;
            Ok(move || -> BenchResult<()> {
                let (status, body) = client.get(authz::paths::METADATA)?;
                let document: serde_json::Value = serde_json::from_slice(body)?;
                match (status, document.get("issuer")) {
                    (200, Some(_)) => Ok(()),
                    _ => Err(format!("metadata answered {status}").into()),
                }
            })
        })
        .collect::<BenchResult<Vec<_>>>()?;
    let metadata = timed(meter, &mut getters, settings.per_client() * METADATA_FACTOR)?;

    let mut chains = (0..settings.clients)
        .map(|_| {
            let mut client = HttpClient::connect(addr)?;
            let mut refresh_token = minter.grant()?.refresh_token;
            Ok(move || -> BenchResult<()> {
                let (status, body) =
                    client.post_form(authz::paths::TOKEN, &refresh_form(&refresh_token))?;
                refresh_token = tokens_of(status, body)?.1;
                Ok(())
            })
        })
        .collect::<BenchResult<Vec<_>>>()?;
    let refresh = timed(meter, &mut chains, settings.per_client())?;

    let mut redeemers = codes_per_worker(minter, settings)?
        .into_iter()
        .map(|codes| {
            let mut worker = http_code_worker(addr, codes)?;
            Ok(move || worker.step())
        })
        .collect::<BenchResult<Vec<_>>>()?;
    let code = timed(meter, &mut redeemers, settings.per_client())?;
    Ok(HttpRates {
        metadata,
        refresh,
        code,
    })
}

/// One round of the same grants as [`http_rates`], as calls on the bench's own server over
/// the same store (the proxy sits idle meanwhile); `meter` counts this process's CPU (and
/// the database's).
pub fn in_process_rates(
    meter: Meter<'_>,
    minter: &Minter,
    settings: &Settings,
) -> BenchResult<InProcessRates> {
    let server = minter.server();
    let mut chains = (0..settings.clients)
        .map(|_| {
            let mut refresh_token = minter.grant()?.refresh_token;
            Ok(move || -> BenchResult<()> {
                let answer = server.token(&refresh_request(&refresh_token), &caller())?;
                refresh_token = answer.refresh_token;
                Ok(())
            })
        })
        .collect::<BenchResult<Vec<_>>>()?;
    let refresh = timed(meter, &mut chains, settings.per_client())?;

    let mut redeemers = codes_per_worker(minter, settings)?
        .into_iter()
        .map(|codes| {
            let mut codes = codes.into_iter();
            move || -> BenchResult<()> {
                let code = codes.next().ok_or("out of codes")?;
                server.token(&code.request(), &caller())?;
                Ok(())
            }
        })
        .collect::<Vec<_>>();
    let code = timed(meter, &mut redeemers, settings.per_client())?;
    Ok(InProcessRates { refresh, code })
}
