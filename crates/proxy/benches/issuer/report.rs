//! The table printed at the end: every figure with its baseline and ratio, per store, then
//! the PostgreSQL store's figures as ratios to the SQLite store's.

use std::thread;

use crate::rates::{HttpRates, InProcessRates, Rate};
use crate::stores::IssuerMemory;
use crate::{
    CheckCosts, LoginCpu, Logins, Settings, ROUNDS, SETTLE, TARGET_CPU_PER_LOGIN_MS, WARM_UP_LOGINS,
};

/// A proxy's resident memory, KiB: all of it, and its anonymous (heap, stacks) and
/// file-backed (the binary's and libraries' pages it touched) parts.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
}

/// Everything measured over one store.
#[derive(Debug)]
pub struct StoreFigures {
    pub name: &'static str,
    /// The store is a database server, whose CPU is counted apart.
    pub database: bool,
    pub memory: IssuerMemory,
    pub http: HttpRates,
    pub in_process: InProcessRates,
    pub checks: CheckCosts,
    pub logins: LoginCpu,
}

/// Everything measured.
#[derive(Debug)]
pub struct Report {
    /// Grants made over HTTP before the "after grants" memory figure.
    pub grants: usize,
    /// The proxy without `[issuer]`.
    pub plain: Rss,
    /// SQLite first.
    pub stores: Vec<StoreFigures>,
    pub introspections: usize,
}

/// One of the in-process figures.
type CheckFigure = fn(&CheckCosts) -> f64;

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn micros(us: Option<f64>) -> String {
    us.map_or_else(|| "(too few ticks)".to_owned(), |us| format!("{us:.0} µs"))
}

/// The database's CPU per request, for a store that has one.
fn database_us(store: &StoreFigures, rate: &Rate) -> String {
    if store.database {
        micros(rate.database_us())
    } else {
        "-".to_owned()
    }
}

impl Report {
    pub fn print(&self, settings: &Settings) {
        let cpus = thread::available_parallelism().map_or(0, |n| n.get());
        let names: Vec<&str> = self.stores.iter().map(|store| store.name).collect();
        let Some(first) = self.stores.first() else {
            return;
        };
        println!();
        println!(
            "bearergate issuer bench ({} requests per grant figure (metadata: {}) over {} \
             keep-alive HTTP/1.1 connections, plaintext on loopback, in {ROUNDS} rounds \
             taking the stores in turn; {} logins per login figure; stores: {}; \
             {cpus} CPUs shared by clients, backend, proxy and database)",
            settings.requests,
            first.http.metadata.requests,
            settings.clients,
            first.logins.cached.logins,
            names.join(", "),
        );
        self.print_rates(settings);
        self.print_logins();
        self.print_memory();
        self.print_comparison();
        println!();
        println!(
            "  memory: after {WARM_UP_LOGINS} logins and a {} ms pause each; {} grants made over HTTP",
            SETTLE.as_millis(),
            self.grants
        );
        println!(
            "  logins: cached-introspection logins on the same proxy as the built-in ones; \
             introspection requests in the whole run: {}",
            self.introspections
        );
        if self.stores.iter().any(|store| store.database) {
            println!(
                "  PostgreSQL: a private server on loopback, plaintext, fsync on and \
                 synchronous_commit off (as the SQLite store's WAL with synchronous = NORMAL); \
                 database CPU: all its processes'"
            );
        }
        for store in &self.stores {
            let l = &store.logins;
            println!(
                "  logins, {}: proxy CPU {:.0} / {:.0} / {:.0} ms (cached / repeated / cold) \
                 over {:.2} / {:.2} / {:.2} s wall",
                store.name,
                l.cached.cpu.server.as_secs_f64() * 1e3,
                l.repeated.cpu.server.as_secs_f64() * 1e3,
                l.cold.cpu.server.as_secs_f64() * 1e3,
                l.cached.wall.as_secs_f64(),
                l.repeated.wall.as_secs_f64(),
                l.cold.wall.as_secs_f64(),
            );
        }
    }

    fn print_rates(&self, settings: &Settings) {
        println!();
        println!("token endpoint over HTTP                 req/s   ratio to metadata GET   proxy CPU/request   database CPU/request");
        for store in &self.stores {
            let h = &store.http;
            let base = h.metadata.per_second();
            println!(" {} store", store.name);
            for (name, rate) in [
                ("metadata GET (baseline)        ", &h.metadata),
                ("refresh_token grant            ", &h.refresh),
                ("authorization_code grant + PKCE", &h.code),
            ] {
                println!(
                    "  {name}   {:>8.0}   {:>8.3}                {:<19} {}",
                    rate.per_second(),
                    rate.per_second() / base.max(1e-9),
                    micros(rate.cpu_us()),
                    database_us(store, rate),
                );
            }
        }
        println!(
            "in process (AuthServer::token, {} threads)  req/s   HTTP ÷ in process       CPU/request   HTTP CPU ÷ in process   database CPU/request",
            settings.clients
        );
        for store in &self.stores {
            let (h, p) = (&store.http, &store.in_process);
            println!(" {} store", store.name);
            for (name, inside, over_http) in [
                ("refresh_token grant            ", &p.refresh, &h.refresh),
                ("authorization_code grant + PKCE", &p.code, &h.code),
            ] {
                let cpu_ratio = match (over_http.cpu_us(), inside.cpu_us()) {
                    (Some(http), Some(inside)) => format!("{:.2}", http / inside.max(1e-9)),
                    _ => "-".to_owned(),
                };
                println!(
                    "  {name}   {:>8.0}   {:>8.3}                {:<13} {cpu_ratio:<23} {}",
                    inside.per_second(),
                    over_http.per_second() / inside.per_second().max(1e-9),
                    micros(inside.cpu_us()),
                    database_us(store, inside),
                );
            }
        }
    }

    fn print_logins(&self) {
        println!();
        println!("proxy CPU per mail login                 ms/login   ratio to cached   logins/s   target                database ms/login");
        for store in &self.stores {
            let l = &store.logins;
            let base = l.cached.cpu_ms();
            println!(" {} store", store.name);
            for (name, logins, target) in [
                ("cached introspection (baseline)", &l.cached, false),
                ("built-in token, repeated       ", &l.repeated, true),
                ("built-in token, cold (fresh)   ", &l.cold, true),
            ] {
                let ms = logins.cpu_ms();
                let judged = match (target, logins.measurable()) {
                    (_, false) => "(too few CPU ticks)".to_owned(),
                    (false, true) => String::new(),
                    (true, true) => format!(
                        "≤ {TARGET_CPU_PER_LOGIN_MS} ms {}",
                        verdict(ms <= TARGET_CPU_PER_LOGIN_MS)
                    ),
                };
                let ratio = if l.cached.measurable() && logins.measurable() {
                    format!("{:.2}", ms / base.max(1e-9))
                } else {
                    "-".to_owned()
                };
                let database = if store.database {
                    format!("{:.3}", logins.database_ms())
                } else {
                    "-".to_owned()
                };
                println!(
                    "  {name}   {ms:>8.3}   {ratio:>8}          {:>8.0}   {judged:<21} {database}",
                    logins.per_second(),
                );
            }
        }
        let calls = self.stores.first().map_or(0, |store| store.checks.calls);
        let mut heading = format!("in process, µs per call ({calls} calls)    ");
        for store in &self.stores {
            heading.push_str(&format!("{:>12}", store.name));
        }
        println!("{heading}");
        let rows: [(&str, CheckFigure); 4] = [
            ("check_access_token, same token       ", |c| c.repeated_us),
            ("check_access_token, fresh token+grant", |c| c.cold_us),
            ("  of it: jsonwebtoken::decode (ES256)", |c| c.decode_us),
            ("  of it: the ES256 verification alone", |c| c.verify_us),
        ];
        for (name, figure) in rows {
            let mut line = format!("  {name}   ");
            for store in &self.stores {
                line.push_str(&format!("{:>12.1}", figure(&store.checks)));
            }
            println!("{line}");
        }
    }

    fn print_memory(&self) {
        let plain = self.plain;
        let row = |name: &str, rss: Rss| {
            let added = |now: u64, then: u64| now as i64 - then as i64;
            println!(
                "  {name}   {:>8}   {:>+8} KiB ({:.2}×)   {:>+8}  {:>+8}",
                rss.total,
                added(rss.total, plain.total),
                rss.total as f64 / plain.total.max(1) as f64,
                added(rss.anon, plain.anon),
                added(rss.file, plain.file),
            );
        };
        println!();
        println!("proxy memory at idle                  VmRSS KiB   added by [issuer]   of it: anon     file");
        row("without [issuer] (baseline)    ", plain);
        for store in &self.stores {
            let m = &store.memory;
            println!(" {} store", store.name);
            row("with [issuer], fresh store     ", m.fresh);
            row("  after grants over HTTP       ", m.after_grants);
            row("  restarted over those grants  ", m.restarted);
        }
    }

    /// Every other store's figures against the first's (SQLite).
    fn print_comparison(&self) {
        let Some((base, others)) = self.stores.split_first() else {
            return;
        };
        for other in others {
            println!();
            println!(
                "{} ÷ {}, same run{:<37}{:>10}   {:>10}   ratio",
                other.name, base.name, "", base.name, other.name
            );
            let line = |name: &str, sqlite: Option<f64>, other: Option<f64>, digits: usize| {
                let show =
                    |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"));
                let ratio = match (sqlite, other) {
                    (Some(sqlite), Some(other)) => format!("{:.2}", other / sqlite.max(1e-9)),
                    _ => "-".to_owned(),
                };
                println!(
                    "  {name:<60} {:>10}   {:>10}   {ratio}",
                    show(sqlite),
                    show(other)
                );
            };
            let rate = |rate: &Rate| Some(rate.per_second());
            let login = |logins: &Logins| logins.measurable().then(|| logins.cpu_ms());
            let total = |logins: &Logins| logins.measurable().then(|| logins.total_cpu_ms());
            let (b, o) = (&base.http, &other.http);
            line(
                "refresh_token grant over HTTP, req/s",
                rate(&b.refresh),
                rate(&o.refresh),
                0,
            );
            line(
                "authorization_code grant + PKCE over HTTP, req/s",
                rate(&b.code),
                rate(&o.code),
                0,
            );
            line(
                "refresh_token grant, proxy + database CPU/request, µs",
                b.refresh.total_cpu_us(),
                o.refresh.total_cpu_us(),
                0,
            );
            line(
                "authorization_code + PKCE, proxy + database CPU/request, µs",
                b.code.total_cpu_us(),
                o.code.total_cpu_us(),
                0,
            );
            let (b, o) = (&base.logins, &other.logins);
            line(
                "proxy CPU per login, built-in token used before, ms",
                login(&b.repeated),
                login(&o.repeated),
                3,
            );
            line(
                "proxy CPU per login, built-in token minted elsewhere, ms",
                login(&b.cold),
                login(&o.cold),
                3,
            );
            line(
                "  with the database's CPU, token used before, ms",
                total(&b.repeated),
                total(&o.repeated),
                3,
            );
            line(
                "  with the database's CPU, token minted elsewhere, ms",
                total(&b.cold),
                total(&o.cold),
                3,
            );
            line(
                "check_access_token in process, same token, µs",
                Some(base.checks.repeated_us),
                Some(other.checks.repeated_us),
                1,
            );
        }
    }
}
