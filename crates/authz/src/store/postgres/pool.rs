//! The connections: a few threads, each owning one synchronous PostgreSQL client, fed
//! calls through one bounded queue.
//!
//! Why threads of their own rather than the caller's: the synchronous client drives its
//! socket with a private Tokio runtime, which panics when entered from a thread that already
//! runs one — and the store is called from everywhere: the blocking pool of the HTTP
//! endpoints, the validator's in-process token check on a runtime worker, the admin's
//! command line without any runtime. Here every caller hands its call over and waits on a
//! plain channel, which is safe on any thread, costs two thread switches (microseconds,
//! against a database round trip) and bounds the connections to [`POOL_SIZE`].
//!
//! Bounds: the queue holds [`QUEUE`] calls (more fail at once), a caller waits at most
//! [`WAIT`] (a call still queued then is dropped unrun), every statement is limited to
//! [`STATEMENT_TIMEOUT`] by the server, and connecting to [`CONNECT_TIMEOUT`] unless the URL
//! says otherwise; data sent and not acknowledged fails the connection after
//! [`TCP_USER_TIMEOUT`], so a database that vanished from the network cannot hold a call for
//! the kernel's quarter of an hour of retransmissions.
//!
//! An unreachable database fails calls at once instead of queueing them behind connect
//! timeouts (a circuit breaker, [`Health`]): after a failed connect, calls fail without
//! waiting for [`RETRY_AFTER`]; then one call tries again while the others still fail fast,
//! until a connect succeeds. Callers on an async runtime's threads (the in-process token
//! check at login) are thus held for a round trip when the database is up, and not at all
//! while it is known to be down.
//!
//! A connection the server ended (a restart, a failover, an idle timeout) is only noticed
//! when it is used: the driver reads nothing while the connection sits idle. A read
//! ([`Pool::read`]) that finds its connection gone runs again on a fresh one, so lookups —
//! the grant read at every login — ride through a database restart. A write is never
//! repeated once sent (the server may have applied it), so a write ([`Pool::run`]) first
//! checks its connection with a round trip, and moves to a fresh one if that fails.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, GenericClient, NoTls, Row, Statement};

use super::tls::RustlsConnect;
use super::url::{Target, TlsMode};
use crate::store::StoreError;

/// Connections per store (per instance). The server's traffic is a statement or two per
/// login and token request; four round trips in flight at once serve thousands a second.
pub(super) const POOL_SIZE: usize = 4;
/// Calls waiting for a connection at most; more fail at once rather than pile up while the
/// database is away.
const QUEUE: usize = 1_024;
/// The longest a caller waits for its answer: a connect, a statement, and the wait in line.
pub(super) const WAIT: Duration = Duration::from_secs(20);
/// `connect_timeout` when the URL gives none.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server's `statement_timeout` for our sessions (lock waits included).
const STATEMENT_TIMEOUT: &str = "10s";
/// A connection idle this long is checked before use (the server may have restarted).
const IDLE_CHECK: Duration = Duration::from_secs(30);
/// How long that check may take.
const VALID_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connect, calls fail without trying again for this long.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// `tcp_user_timeout` when the URL gives none.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the database could be reached: a circuit breaker shared by the pool's threads
/// and its callers.
#[derive(Default)]
struct Health {
    /// `None`: reachable (or not tried yet). `Some(t)`: a connect failed; calls fail at once
    /// until `t`, when one call may try again.
    down_until: Mutex<Option<Instant>>,
}

impl Health {
    /// Whether a call may go ahead; the first call after the wait goes ahead as the probe,
    /// and the wait restarts for the others while it connects.
    fn admit(&self) -> bool {
        let mut down_until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *down_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                *down_until = Some(Instant::now() + CONNECT_TIMEOUT + RETRY_AFTER);
                true
            }
        }
    }

    fn connected(&self) {
        *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn failed(&self) {
        *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + RETRY_AFTER);
    }
}

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    last_used: Instant,
}

impl Conn {
    /// `sql` prepared on this connection, once: the lookups run at every login, and an
    /// unprepared statement costs a second round trip.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    /// A transaction (READ COMMITTED, the server's default) with `statements` prepared
    /// before it starts; committed by [`Tx::commit`], rolled back when dropped.
    pub(super) fn transaction(
        &mut self,
        statements: &[&'static str],
    ) -> Result<Tx<'_>, postgres::Error> {
        let mut prepared = Vec::with_capacity(statements.len());
        for &sql in statements {
            prepared.push((sql, self.statement(sql)?));
        }
        Ok(Tx {
            tx: self.client.transaction()?,
            prepared,
        })
    }

    /// The client itself, for statements that are not worth preparing (migrations).
    pub(super) fn client(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// An open transaction and the statements it may run.
pub(super) struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    prepared: Vec<(&'static str, Statement)>,
}

impl Tx<'_> {
    /// Commits.
    pub(super) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }
}

/// Running statements by their text, prepared once: the same on a connection ([`Conn`])
/// and in a transaction ([`Tx`]).
pub(super) trait Statements {
    /// What runs them.
    type Client: GenericClient;

    /// `sql` prepared, and what to run it on.
    fn prepared(
        &mut self,
        sql: &'static str,
    ) -> Result<(&mut Self::Client, Statement), postgres::Error>;

    /// At most one row.
    fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let (client, statement) = self.prepared(sql)?;
        client.query_opt(&statement, params)
    }

    /// Every row.
    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let (client, statement) = self.prepared(sql)?;
        client.query(&statement, params)
    }

    /// Rows changed.
    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let (client, statement) = self.prepared(sql)?;
        client.execute(&statement, params)
    }
}

impl Statements for Conn {
    type Client = Client;

    fn prepared(&mut self, sql: &'static str) -> Result<(&mut Client, Statement), postgres::Error> {
        let statement = self.statement(sql)?;
        Ok((&mut self.client, statement))
    }
}

impl<'a> Statements for Tx<'a> {
    type Client = postgres::Transaction<'a>;

    fn prepared(
        &mut self,
        sql: &'static str,
    ) -> Result<(&mut postgres::Transaction<'a>, Statement), postgres::Error> {
        let statement = match self.prepared.iter().find(|(text, _)| *text == sql) {
            Some((_, statement)) => statement.clone(),
            // A statement not named up front: prepared now, for this transaction only.
            None => self.tx.prepare(sql)?,
        };
        Ok((&mut self.tx, statement))
    }
}

/// What a call asks of its thread after running.
enum Outcome {
    /// Answered.
    Done,
    /// Its connection was found closed: run it once more on a fresh one.
    Again,
}

/// A call: run on a connection, or told why there is none.
type Work = Box<dyn FnMut(Result<&mut Conn, String>) -> Outcome + Send>;

struct Job {
    /// When its caller stops waiting; a job still queued then is dropped unrun.
    deadline: Instant,
    work: Work,
}

/// The queue and the connection threads behind it. Dropping it closes the queue: each
/// thread finishes its call, closes its connection and ends.
pub(super) struct Pool {
    jobs: SyncSender<Job>,
    health: Arc<Health>,
}

impl Pool {
    /// Starts the threads; they connect on their first call.
    pub(super) fn start(mut target: Target) -> Result<Self, String> {
        let connector = match target.tls {
            TlsMode::Disable => None,
            TlsMode::Prefer | TlsMode::Verify => {
                Some(RustlsConnect::new(target.root_certs.as_deref())?)
            }
        };
        if target.config.get_connect_timeout().is_none() {
            target.config.connect_timeout(CONNECT_TIMEOUT);
        }
        if target.config.get_tcp_user_timeout().is_none() {
            target.config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if target.config.get_application_name().is_none() {
            target.config.application_name("bearergate");
        }
        let (jobs, queue) = mpsc::sync_channel(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        let health = Arc::new(Health::default());
        for n in 0..POOL_SIZE {
            let worker = Worker {
                config: target.config.clone(),
                connector: connector.clone(),
                conn: None,
                health: health.clone(),
            };
            let queue = queue.clone();
            thread::Builder::new()
                .name(format!("bearergate-pg-{n}"))
                .spawn(move || worker.serve(&queue))
                .map_err(|e| format!("cannot start a database thread: {e}"))?;
        }
        Ok(Self { jobs, health })
    }

    /// Runs `work` (which writes) on a connection that has just answered, and waits for its
    /// answer (at most [`WAIT`]). `op` names the call in errors.
    pub(super) fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        work: impl FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut work = Some(work);
        let mut checked = false;
        self.submit(
            op,
            Box::new(move |conn| {
                let result = match conn {
                    Ok(conn) => {
                        if !checked && conn.client.is_valid(VALID_TIMEOUT).is_err() {
                            checked = true;
                            return Outcome::Again; // nothing of the write was sent
                        }
                        match work.take() {
                            Some(work) => work(conn),
                            None => Err(StoreError::Database(format!("{op}: run twice"))),
                        }
                    }
                    Err(why) => Err(StoreError::Database(format!("{op}: {why}"))),
                };
                // The caller may have stopped waiting.
                let _ = reply.send(result);
                Outcome::Done
            }),
            &answer,
        )
    }

    /// Like [`Pool::run`] for `work` that only reads: run again on a fresh connection when
    /// its connection turns out to be closed.
    pub(super) fn read<T: Send + 'static>(
        &self,
        op: &'static str,
        work: impl Fn(&mut Conn) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let mut retried = false;
        self.submit(
            op,
            Box::new(move |conn| {
                let result = match conn {
                    Ok(conn) => {
                        let result = work(conn);
                        if result.is_err() && conn.client.is_closed() && !retried {
                            retried = true;
                            return Outcome::Again;
                        }
                        result
                    }
                    Err(why) => Err(StoreError::Database(format!("{op}: {why}"))),
                };
                let _ = reply.send(result);
                Outcome::Done
            }),
            &answer,
        )
    }

    /// Queues `work` and waits for what it sends on `answer`.
    fn submit<T>(
        &self,
        op: &'static str,
        work: Work,
        answer: &Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.health.admit() {
            return Err(StoreError::Database(format!(
                "{op}: the database was unreachable a moment ago"
            )));
        }
        let job = Job {
            deadline: Instant::now() + WAIT,
            work,
        };
        self.jobs.try_send(job).map_err(|e| {
            StoreError::Database(match e {
                TrySendError::Full(_) => format!("{op}: too many calls waiting for the database"),
                TrySendError::Disconnected(_) => format!("{op}: the database threads ended"),
            })
        })?;
        match answer.recv_timeout(WAIT) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(StoreError::Database(format!(
                "{op}: no answer from the database within {}s",
                WAIT.as_secs()
            ))),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError::Database(format!(
                "{op}: the call was dropped unanswered"
            ))),
        }
    }
}

/// One connection thread.
struct Worker {
    config: postgres::Config,
    /// `None`: plaintext (`sslmode=disable`).
    connector: Option<RustlsConnect>,
    conn: Option<Conn>,
    health: Arc<Health>,
}

impl Worker {
    fn serve(mut self, queue: &Mutex<Receiver<Job>>) {
        loop {
            let job = {
                let queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
                queue.recv()
            };
            let Ok(job) = job else {
                return; // the store was dropped
            };
            if Instant::now() >= job.deadline {
                continue; // its caller gave up; dropping the job tells nobody
            }
            self.run(job.work);
        }
    }

    fn run(&mut self, mut work: Work) {
        // At most twice: once more when a read found its connection closed.
        for _ in 0..2 {
            let conn = match self.connection() {
                Ok(conn) => conn,
                Err(why) => {
                    work(Err(why));
                    return;
                }
            };
            // A panic in a call is a bug; it must not take the thread (and a connection of
            // the pool) with it, and the connection may be mid-transaction: start over.
            let outcome = catch_unwind(AssertUnwindSafe(|| work(Ok(&mut *conn))));
            conn.last_used = Instant::now();
            let again = matches!(outcome, Ok(Outcome::Again));
            if again || outcome.is_err() || conn.client.is_closed() {
                self.conn = None;
            }
            if !again {
                return;
            }
        }
    }

    /// The connection, made (or made again) when there is none or it went bad.
    fn connection(&mut self) -> Result<&mut Conn, String> {
        let stale = match &mut self.conn {
            Some(conn) => {
                conn.client.is_closed()
                    || (conn.last_used.elapsed() >= IDLE_CHECK
                        && conn.client.is_valid(VALID_TIMEOUT).is_err())
            }
            None => false,
        };
        if stale {
            self.conn = None;
        }
        if self.conn.is_none() {
            match self.connect() {
                Ok(client) => {
                    self.health.connected();
                    self.conn = Some(Conn {
                        client,
                        statements: HashMap::new(),
                        last_used: Instant::now(),
                    });
                }
                Err(why) => {
                    self.health.failed();
                    tracing::warn!(error = %why, "store: cannot connect to PostgreSQL");
                    return Err(why);
                }
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| "no database connection".to_owned())
    }

    fn connect(&self) -> Result<Client, String> {
        // The driver's messages name hosts and causes, never the password.
        let mut client = match &self.connector {
            None => self.config.connect(NoTls),
            Some(tls) => self.config.connect(tls.clone()),
        }
        .map_err(|e| format!("connect: {}", super::describe(&e)))?;
        client
            .batch_execute(&format!("SET statement_timeout = '{STATEMENT_TIMEOUT}'"))
            .map_err(|e| format!("connect: {}", super::describe(&e)))?;
        Ok(client)
    }
}
