//! The table printed at the end: every figure with its baseline and ratio.

use std::thread;

use crate::rates::{HttpRates, InProcessRates, Rate};
use crate::{CheckCosts, LoginCpu, Settings, SETTLE, TARGET_CPU_PER_LOGIN_MS, WARM_UP_LOGINS};

/// A proxy's resident memory, KiB: all of it, and its anonymous (heap, stacks) and
/// file-backed (the binary's and libraries' pages it touched) parts.
#[derive(Debug, Clone, Copy)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
}

/// Proxy memory after start-up settled, without and with `[issuer]`.
#[derive(Debug)]
pub struct Memory {
    pub grants: usize,
    pub plain: Rss,
    pub fresh: Rss,
    pub after_grants: Rss,
    pub restarted: Rss,
}

/// Everything measured.
#[derive(Debug)]
pub struct Report {
    pub memory: Memory,
    pub http: HttpRates,
    pub in_process: InProcessRates,
    pub checks: CheckCosts,
    pub logins: LoginCpu,
    pub introspections: usize,
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn cpu_us(rate: &Rate) -> String {
    rate.cpu_us()
        .map_or_else(|| "(too few ticks)".to_owned(), |us| format!("{us:.0} µs"))
}

impl Report {
    pub fn print(&self, settings: &Settings) {
        let cpus = thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!(
            "bearergate issuer bench ({} requests per grant figure (metadata: {}) over {} \
             keep-alive HTTP/1.1 connections, plaintext on loopback; {} logins per login figure; \
             {cpus} CPUs shared by clients, backend and proxy)",
            settings.requests,
            self.http.metadata.requests,
            settings.clients,
            self.logins.cached.logins,
        );

        let h = &self.http;
        let base = h.metadata.per_second();
        println!();
        println!("token endpoint over HTTP                 req/s   ratio to metadata GET   proxy CPU/request");
        for (name, rate) in [
            ("metadata GET (baseline)        ", &h.metadata),
            ("refresh_token grant            ", &h.refresh),
            ("authorization_code grant + PKCE", &h.code),
        ] {
            println!(
                "  {name}   {:>8.0}   {:>8.3}                {}",
                rate.per_second(),
                rate.per_second() / base.max(1e-9),
                cpu_us(rate),
            );
        }
        let p = &self.in_process;
        println!(
            "in process (AuthServer::token, {} threads)  req/s   HTTP ÷ in process       CPU/request   HTTP CPU ÷ in process",
            settings.clients
        );
        for (name, inside, over_http) in [
            ("refresh_token grant            ", &p.refresh, &h.refresh),
            ("authorization_code grant + PKCE", &p.code, &h.code),
        ] {
            let cpu_ratio = match (over_http.cpu_us(), inside.cpu_us()) {
                (Some(http), Some(inside)) => format!("{:.2}", http / inside.max(1e-9)),
                _ => "-".to_owned(),
            };
            println!(
                "  {name}   {:>8.0}   {:>8.3}                {:<13} {cpu_ratio}",
                inside.per_second(),
                over_http.per_second() / inside.per_second().max(1e-9),
                cpu_us(inside),
            );
        }

        let l = &self.logins;
        let base = l.cached.cpu_ms();
        println!();
        println!("proxy CPU per mail login                 ms/login   ratio to cached   logins/s   target");
        for (name, logins, target) in [
            ("cached introspection (baseline)", &l.cached, false),
            ("built-in token, repeated       ", &l.repeated, true),
            ("built-in token, cold (fresh)   ", &l.cold, true),
        ] {
            let ms = logins.cpu_ms();
            let judged = match (target, logins.measurable()) {
                (_, false) => "(too few CPU ticks to judge)".to_owned(),
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
            println!(
                "  {name}   {ms:>8.3}   {ratio:>8}          {:>8.0}   {judged}",
                logins.per_second(),
            );
        }
        let c = &self.checks;
        println!("in process, µs per call ({} calls)       µs", c.calls);
        for (name, us) in [
            ("check_access_token, same token         ", c.repeated_us),
            ("check_access_token, fresh token+grant  ", c.cold_us),
            ("  of it: jsonwebtoken::decode (ES256)  ", c.decode_us),
            ("  of it: the ES256 verification alone  ", c.verify_us),
        ] {
            println!("  {name}   {us:>8.1}");
        }

        let m = &self.memory;
        println!();
        println!("proxy memory at idle                  VmRSS KiB   added by [issuer]   of it: anon     file");
        for (name, rss) in [
            ("without [issuer] (baseline)    ", m.plain),
            ("with [issuer], fresh store     ", m.fresh),
            ("  after grants over HTTP       ", m.after_grants),
            ("  restarted over those grants  ", m.restarted),
        ] {
            let added = |now: u64, then: u64| now as i64 - then as i64;
            println!(
                "  {name}   {:>8}   {:>+8} KiB ({:.2}×)   {:>+8}  {:>+8}",
                rss.total,
                added(rss.total, m.plain.total),
                rss.total as f64 / m.plain.total.max(1) as f64,
                added(rss.anon, m.plain.anon),
                added(rss.file, m.plain.file),
            );
        }
        println!();
        println!(
            "  memory: after {WARM_UP_LOGINS} logins and a {} ms pause each; {} grants made over HTTP",
            SETTLE.as_millis(),
            m.grants
        );
        println!(
            "  logins: cached-introspection logins on the same proxy as the built-in ones; \
             introspection requests in the whole run: {}",
            self.introspections
        );
        println!(
            "  logins: proxy CPU {:.0} / {:.0} / {:.0} ms (cached / repeated / cold) over {:.2} / {:.2} / {:.2} s wall",
            l.cached.cpu.as_secs_f64() * 1e3,
            l.repeated.cpu.as_secs_f64() * 1e3,
            l.cold.cpu.as_secs_f64() * 1e3,
            l.cached.wall.as_secs_f64(),
            l.repeated.wall.as_secs_f64(),
            l.cold.wall.as_secs_f64(),
        );
    }
}
