//! The issuer bench's PostgreSQL: the private server the authorization server's tests and the
//! end-to-end tests start (the same file, included), made as durable as the SQLite store it is
//! compared with, and the CPU time all its processes spend — the work SQLite does inside the
//! proxy happens there.
//!
//! Durability: the test cluster runs with `fsync`, `full_page_writes` and
//! `synchronous_commit` off. The SQLite store runs in WAL mode with `synchronous = NORMAL`:
//! a commit is not flushed before it is answered, but the file survives a crash of the
//! machine intact. The PostgreSQL equivalent is `synchronous_commit = off` with `fsync` and
//! `full_page_writes` on, which this server is set to before the bench uses it.

#[path = "../../../authz/tests/support/postgres.rs"]
mod server;

use std::fs;
use std::time::Duration;

use server::TestPostgres;

use super::BenchResult;

/// The database the issuer's schema goes in.
const DATABASE: &str = "issuer";

/// Settings changed from the test cluster's, each with the value `SHOW` must then give.
const DURABILITY: [(&str, &str); 3] = [
    ("fsync", "on"),
    ("full_page_writes", "on"),
    ("synchronous_commit", "off"),
];

/// A running server with an empty [`DATABASE`]; stopped and removed on drop.
#[derive(Debug)]
pub struct BenchPostgres {
    server: TestPostgres,
    /// The postmaster: every other server process is its child.
    postmaster: u32,
}

impl BenchPostgres {
    /// Starts the server (panicking with its log when it cannot, as the tests' launcher
    /// does), sets [`DURABILITY`] and restarts it so every process has it.
    pub fn start() -> BenchResult<Self> {
        let server = TestPostgres::start();
        for (name, value) in DURABILITY {
            server.psql("postgres", &format!("ALTER SYSTEM SET {name} = {value}"));
        }
        server.restart();
        for (name, want) in DURABILITY {
            let have = server.psql("postgres", &format!("SHOW {name}"));
            if have != want {
                return Err(format!("PostgreSQL has {name} = {have} after a restart").into());
            }
        }
        server.create_database(DATABASE);
        let data = server.psql("postgres", "SHOW data_directory");
        let pid_file = fs::read_to_string(format!("{data}/postmaster.pid"))?;
        let postmaster = pid_file
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .ok_or("no process id in postmaster.pid")?;
        Ok(Self { server, postmaster })
    }

    /// The `[issuer] store` URL: loopback, plaintext.
    pub fn url(&self) -> String {
        self.server.url(DATABASE)
    }

    /// User plus system CPU time of every server process so far: the postmaster's own, its
    /// children's that have exited (backends of closed connections), and its running
    /// children's (backends, WAL writer, checkpointer, autovacuum …).
    pub fn cpu_time(&self, ticks_per_second: u64) -> BenchResult<Duration> {
        let postmaster = Stat::read(&self.postmaster.to_string())?;
        let mut ticks = postmaster.ticks + postmaster.children_ticks;
        for entry in fs::read_dir("/proc")? {
            let name = entry?.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            // A process may exit between the listing and the read: it is no child then.
            if let Ok(stat) = Stat::read(pid) {
                if stat.parent == self.postmaster {
                    ticks += stat.ticks;
                }
            }
        }
        Ok(Duration::from_nanos(
            ticks.saturating_mul(1_000_000_000) / ticks_per_second.max(1),
        ))
    }
}

/// What the bench reads of `/proc/PID/stat`.
struct Stat {
    parent: u32,
    /// `utime + stime`.
    ticks: u64,
    /// `cutime + cstime`: children waited for.
    children_ticks: u64,
}

impl Stat {
    fn read(pid: &str) -> BenchResult<Self> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        // The command name may contain spaces; the fields after it do not. After ")" come
        // field 3 (state), 4 (ppid), … 14–17 (utime, stime, cutime, cstime).
        let after_name = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or("malformed /proc/PID/stat")?;
        let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
        let number = |index: usize| -> BenchResult<u64> {
            Ok(fields
                .get(index)
                .ok_or("short /proc/PID/stat")?
                .parse::<u64>()?)
        };
        Ok(Self {
            parent: u32::try_from(number(1)?)?,
            ticks: number(11)? + number(12)?,
            children_ticks: number(13)? + number(14)?,
        })
    }
}
