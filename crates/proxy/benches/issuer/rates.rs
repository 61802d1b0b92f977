//! Token endpoint figures: requests per second for the metadata `GET` (the baseline) and
//! the two grants over HTTP, and the same grants called in process, each with the CPU time
//! the serving side spent.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::http::{drive, HttpClient};
use crate::support::issuer::{caller, refresh_form, refresh_request, tokens_of, Code, Minter};
use crate::support::process::{clock_ticks_per_second, own_cpu_time, ProxyProcess};
use crate::support::BenchResult;
use crate::{Settings, MIN_CPU_SAMPLE};

/// Share of each figure's requests made first, untimed.
const WARM_UP_SHARE: usize = 10;
/// The metadata baseline makes this many times the grants' requests: each is so cheap that
/// the grants' count would use too little proxy CPU to measure in ticks.
const METADATA_FACTOR: usize = 5;

/// Requests done in a wall time, and the CPU the server side spent on them: the proxy's
/// over HTTP, this process's in process.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub requests: usize,
    pub wall: Duration,
    pub cpu: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// CPU per request in µs, when enough was used to measure.
    pub fn cpu_us(&self) -> Option<f64> {
        (self.cpu >= MIN_CPU_SAMPLE)
            .then(|| self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64)
    }
}

#[derive(Debug)]
pub struct HttpRates {
    pub metadata: Rate,
    pub refresh: Rate,
    pub code: Rate,
}

#[derive(Debug)]
pub struct InProcessRates {
    pub refresh: Rate,
    pub code: Rate,
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

/// Whose CPU time a figure counts.
#[derive(Clone, Copy)]
enum Server<'a> {
    /// The proxy child process, for requests over HTTP.
    Proxy(&'a ProxyProcess),
    /// This process, for calls in process (its idle fake peers add next to nothing).
    Bench,
}

impl Server<'_> {
    fn cpu_time(self) -> BenchResult<Duration> {
        let hz = clock_ticks_per_second();
        match self {
            Server::Proxy(proxy) => proxy.cpu_time(hz),
            Server::Bench => own_cpu_time(hz),
        }
    }
}

/// Runs `workers` for a warm-up and then for the measured requests, reading the server
/// side's CPU time around the latter.
fn timed<W>(server: Server<'_>, workers: &mut [W], per_client: usize) -> BenchResult<Rate>
where
    W: FnMut() -> BenchResult<()> + Send,
{
    drive(workers, per_client.div_ceil(WARM_UP_SHARE))?;
    let before = server.cpu_time()?;
    let wall = drive(workers, per_client)?;
    Ok(Rate {
        requests: per_client * workers.len(),
        wall,
        cpu: server.cpu_time()?.saturating_sub(before),
    })
}

/// Codes for every worker's warm-up and measured steps.
fn codes_per_worker(minter: &Minter, settings: &Settings) -> BenchResult<Vec<Vec<Code>>> {
    let each = settings.per_client().div_ceil(WARM_UP_SHARE) + settings.per_client();
    (0..settings.clients).map(|_| minter.codes(each)).collect()
}

pub fn http_rates(
    proxy: &ProxyProcess,
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
    let metadata = timed(
        Server::Proxy(proxy),
        &mut getters,
        settings.per_client() * METADATA_FACTOR,
    )?;

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
    let refresh = timed(Server::Proxy(proxy), &mut chains, settings.per_client())?;

    let mut redeemers = codes_per_worker(minter, settings)?
        .into_iter()
        .map(|codes| {
            let mut worker = http_code_worker(addr, codes)?;
            Ok(move || worker.step())
        })
        .collect::<BenchResult<Vec<_>>>()?;
    let code = timed(Server::Proxy(proxy), &mut redeemers, settings.per_client())?;
    Ok(HttpRates {
        metadata,
        refresh,
        code,
    })
}

/// The same grants as [`http_rates`], as calls on the bench's own server over the same store
/// (the proxy sits idle meanwhile).
pub fn in_process_rates(minter: &Minter, settings: &Settings) -> BenchResult<InProcessRates> {
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
    let refresh = timed(Server::Bench, &mut chains, settings.per_client())?;

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
    let code = timed(Server::Bench, &mut redeemers, settings.per_client())?;
    Ok(InProcessRates { refresh, code })
}
