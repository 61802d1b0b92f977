//! One proxy with `[issuer]` per store — SQLite in `state_dir`, the default, and the
//! PostgreSQL database — each started fresh for the memory figures, then restarted over the
//! grants made meanwhile: the process every later figure of that store is measured on.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::rates::{http_code_worker, Meter};
use crate::report::Rss;
use crate::support::issuer::{issuer_settings, issuer_table, Minter};
use crate::support::postgres::BenchPostgres;
use crate::support::process::{free_local_addr, ProxyProcess};
use crate::support::BenchResult;
use crate::Peers;

/// The issuer's store directory: outlives each proxy (a restart must find it), removed at
/// the end.
struct StateDir(PathBuf);

impl Drop for StateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The memory of a proxy with `[issuer]` over one store, at idle.
#[derive(Debug, Clone, Copy)]
pub struct IssuerMemory {
    /// Fresh store.
    pub fresh: Rss,
    /// After the grants were made over HTTP.
    pub after_grants: Rss,
    /// Restarted over those grants.
    pub restarted: Rss,
}

/// A proxy whose issuer keeps its grants in one store, and a minter over the same store.
pub struct Issuer<'a> {
    /// The store's name in the report.
    pub name: &'static str,
    pub proxy: ProxyProcess,
    /// The issuer's HTTP listener.
    pub addr: SocketAddr,
    pub minter: Minter,
    /// The PostgreSQL server holding the store, if it is there.
    pub database: Option<&'a BenchPostgres>,
    pub memory: IssuerMemory,
    _state: StateDir,
}

impl<'a> Issuer<'a> {
    /// Starts a proxy over a fresh store — the database's when `database` is given, else
    /// SQLite — reads its memory, makes `grants` grants over HTTP, reads it again, and
    /// restarts it.
    pub fn start(
        peers: &Peers,
        database: Option<&'a BenchPostgres>,
        grants: usize,
    ) -> BenchResult<Self> {
        let (name, tag) = match database {
            Some(_) => ("PostgreSQL", "postgres"),
            None => ("SQLite", "sqlite"),
        };
        let state = StateDir(std::env::temp_dir().join(format!(
            "bearergate-bench-{}-issuer-{tag}-state",
            std::process::id()
        )));
        let addr = free_local_addr()?;
        let url = database.map(BenchPostgres::url);
        let table = issuer_table(addr, &state.0, url.as_deref());
        let name_of = |phase: &str| format!("issuer-{tag}{phase}");

        let proxy = ProxyProcess::start_with(&peers.setup, &name_of(""), &table)?;
        let fresh = peers.settled_rss(&proxy)?;
        let minter = Minter::open(issuer_settings(&table)?)?;
        let mut redeemer = http_code_worker(addr, minter.codes(grants)?)?;
        while !redeemer.is_done() {
            redeemer.step()?;
        }
        drop(redeemer);
        let after_grants = peers.settled_rss(&proxy)?;
        drop(proxy);
        let proxy = ProxyProcess::start_with(&peers.setup, &name_of("-restarted"), &table)?;
        let restarted = peers.settled_rss(&proxy)?;
        Ok(Self {
            name,
            proxy,
            addr,
            minter,
            database,
            memory: IssuerMemory {
                fresh,
                after_grants,
                restarted,
            },
            _state: state,
        })
    }

    /// The proxy's CPU, and the database's.
    pub fn proxy_meter(&self) -> Meter<'_> {
        Meter::proxy(&self.proxy, self.database)
    }

    /// This process's CPU, and the database's.
    pub fn bench_meter(&self) -> Meter<'_> {
        Meter::bench(self.database)
    }
}

/// The order the stores take their turns in round `round`: forwards, then backwards, so a
/// load from elsewhere that grows or fades over the run weighs on every store alike.
pub fn turns(round: usize, stores: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..stores).collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}
