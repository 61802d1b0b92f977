//! Slow-loris before login, on every protocol: clients that send one byte every
//! [`TRICKLE`] — an endless line, or NOOPs spelled out byte by byte so that the proxy keeps
//! answering — reset the idle timer with every read, so only `preauth_deadline` (2 s here,
//! the idle timeout 30 s) can end them. Each must be gone by the deadline plus a margin,
//! read until the proxy closes, with the deadline's own goodbye last (not the idle one:
//! these clients were never idle; POP3 too), and logged as `outcome="prelogin-deadline"`;
//! meanwhile a normal client still logs in and fetches, gets or submits on the same
//! listener.
//!
//! The deadline counts from the connection (proxy.toml: "a client that has not logged in
//! this long after connecting"), so it also bounds a TLS handshake trickled byte by byte,
//! on the implicit-TLS port or after STARTTLS, and a client that pipelines commands but
//! never reads the replies, leaving the proxy waiting to write.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::peers::{Port, Proto, Stage};
use crate::support::TlsMode;

const DEADLINE: Duration = Duration::from_secs(2);
/// Time allowed after the deadline for the goodbye and the close to arrive.
const MARGIN: Duration = Duration::from_secs(3);
const TRICKLE: Duration = Duration::from_millis(100);
/// Trickling clients per protocol: half send an endless line, half NOOPs.
const LORIS: usize = 6;

/// What one trickling client saw.
#[derive(Debug)]
struct Trickled {
    local: SocketAddr,
    /// From connecting to the end of the connection (`None`: still open at the margin).
    lasted: Option<Duration>,
    received: Vec<u8>,
}

/// Connects and sends `prefix`, then `pattern` over and over, one byte per tick, until the
/// proxy closes; reads everything it says meanwhile.
async fn trickle(addr: SocketAddr, prefix: Vec<u8>, pattern: &'static [u8]) -> Trickled {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let local = stream.local_addr().expect("local address");
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(TRICKLE);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for &byte in prefix.iter().chain(pattern.iter().cycle()) {
            ticks.tick().await;
            if writer.write_all(&[byte]).await.is_err() {
                return;
            }
        }
    });
    let mut received = Vec::new();
    let read = tokio::time::timeout(DEADLINE + MARGIN, reader.read_to_end(&mut received)).await;
    sending.abort();
    // A reset (the proxy closed with a trickled byte unread) ends the connection as EOF does.
    let lasted = read.is_ok().then(|| started.elapsed());
    Trickled {
        local,
        lasted,
        received,
    }
}

/// The last line the proxy sends before it closes at the deadline.
fn goodbye(proto: Proto) -> &'static str {
    proto.pick(
        "* BYE Took too long to log in.",
        "421 4.4.2 localhost Timeout: took too long to log in",
        "BYE \"Took too long to log in.\"",
        "-ERR Took too long to log in.",
    )
}

#[tokio::test]
async fn trickling_clients_are_cut_at_the_prelogin_deadline_on_every_protocol() {
    let mut stages = Vec::new();
    for proto in Proto::ALL {
        let label = format!("loris-{}", proto.name());
        let stage = Stage::start(proto, &label, |config| {
            config.each_listener(|l| {
                l.preauth_idle_timeout = Some("30s".into());
                l.extra
                    .push(format!("preauth_deadline = \"{}s\"", DEADLINE.as_secs()));
            })
        })
        .await;
        stages.push(Arc::new(stage));
    }

    let mut loris = JoinSet::new();
    for stage in &stages {
        let addr = stage.proxy.addr(TlsMode::None);
        let noop: &'static [u8] = stage.proto.probe().0.as_bytes();
        for n in 0..LORIS {
            let pattern: &'static [u8] = if n % 2 == 0 { b"x" } else { noop };
            let proto = stage.proto;
            loris.spawn(async move { (proto, trickle(addr, Vec::new(), pattern).await) });
        }
    }
    // While they trickle, a normal client logs in and works on each listener.
    let mut good = JoinSet::new();
    for stage in &stages {
        let stage = Arc::clone(stage);
        good.spawn(async move { stage.good_session(Port::Plain).await });
    }
    while let Some(done) = good.join_next().await {
        done.expect("a normal session beside the trickling clients");
    }

    let mut seen = Vec::new();
    while let Some(done) = loris.join_next().await {
        let (proto, trickled) = done.expect("trickling client");
        let lasted = trickled.lasted.unwrap_or_else(|| {
            panic!(
                "{proto:?}: a trickling client still connected {:?} after connecting",
                DEADLINE + MARGIN
            )
        });
        assert!(
            lasted >= DEADLINE,
            "{proto:?}: cut after {lasted:?}, before the deadline"
        );
        let text = String::from_utf8_lossy(&trickled.received).into_owned();
        let last = text
            .trim_end_matches("\r\n")
            .rsplit("\r\n")
            .next()
            .unwrap_or("");
        assert_eq!(
            last,
            goodbye(proto),
            "{proto:?}: the last line before the close: {text:?}"
        );
        seen.push((proto, trickled.local, lasted));
    }
    assert_eq!(seen.len(), LORIS * Proto::ALL.len());
    for stage in &stages {
        let peers: Vec<SocketAddr> = seen
            .iter()
            .filter(|(proto, _, _)| *proto == stage.proto)
            .map(|(_, local, _)| *local)
            .collect();
        wait_for_deadline_lines(stage, &peers);
    }
    let longest = seen.iter().map(|(_, _, lasted)| *lasted).max();
    println!(
        "{} trickling clients, the longest lasted {longest:?}",
        seen.len()
    );
}

/// Waits (bounded) until the proxy logged `outcome="prelogin-deadline"` for every peer: the
/// line follows the close, which each client has already seen.
fn wait_for_deadline_lines(stage: &Stage, peers: &[SocketAddr]) {
    let logged = |log: &str, peer: &SocketAddr| {
        let peer = format!("peer={peer}");
        log.lines()
            .any(|l| l.contains(&peer) && l.contains("outcome=\"prelogin-deadline\""))
    };
    let all = stage
        .proxy
        .wait_for_log_where(Duration::from_secs(10), |log| {
            peers.iter().all(|peer| logged(log, peer))
        });
    if !all {
        let log = stage.proxy.log();
        let missing: Vec<&SocketAddr> = peers.iter().filter(|p| !logged(&log, p)).collect();
        panic!(
            "{:?}: no prelogin-deadline line for {missing:?}:\n{log}",
            stage.proto
        );
    }
}

/// A TLS record header announcing a 16 KiB handshake record: a ClientHello that never ends.
const HANDSHAKE_RECORD: &[u8] = b"\x16\x03\x01\x40\x00\x01\x00\x3f\xfc\x03\x03";

#[tokio::test]
async fn trickled_tls_handshakes_are_cut_at_the_prelogin_deadline() {
    let mut loris = JoinSet::new();
    let mut stages = Vec::new();
    for proto in Proto::ALL {
        let stage = Arc::new(deadline_stage(proto, "loris-tls").await);
        let implicit = stage.proxy.addr(TlsMode::Implicit);
        loris.spawn(async move {
            let trickled = trickle(implicit, HANDSHAKE_RECORD.to_vec(), &[0x01]).await;
            (proto, "implicit TLS", trickled)
        });
        let starttls = stage.proxy.addr(TlsMode::Starttls);
        let command = proto.cmd(proto.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS"));
        loris.spawn(async move {
            let prefix = [command, HANDSHAKE_RECORD.to_vec()].concat();
            (proto, "STARTTLS", trickle(starttls, prefix, &[0x01]).await)
        });
        stages.push(stage);
    }
    let mut late = Vec::new();
    let mut longest = Duration::ZERO;
    while let Some(done) = loris.join_next().await {
        let (proto, port, trickled) = done.expect("trickling client");
        match trickled.lasted {
            Some(lasted) => {
                assert!(lasted >= DEADLINE, "{proto:?} {port}: cut after {lasted:?}");
                longest = longest.max(lasted);
            }
            None => late.push(format!("{proto:?} {port}")),
        }
    }
    println!("trickled handshakes: the longest lasted {longest:?}");
    assert!(
        late.is_empty(),
        "still in the TLS handshake {:?} after connecting: {late:?}",
        DEADLINE + MARGIN
    );
}

// Two workers: the test blocks one waiting for the proxy's log while the writers go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_at_the_prelogin_deadline() {
    let mut late = Vec::new();
    let mut stages = Vec::new();
    let mut writers = Vec::new();
    let mut held = Vec::new();
    for proto in Proto::ALL {
        let stage = deadline_stage(proto, "loris-reader").await;
        let proxy = stage.proxy.addr(TlsMode::None);
        let socket = TcpSocket::new_v4().expect("socket");
        // A small window: the proxy's replies back up after a few KiB.
        socket.set_recv_buffer_size(4_096).expect("SO_RCVBUF");
        let stream = socket.connect(proxy).await.expect("connect");
        let started = Instant::now();
        let (SocketAddr::V4(local), SocketAddr::V4(remote)) =
            (stream.local_addr().expect("local"), proxy)
        else {
            panic!("IPv4 loopback expected");
        };
        // Commands with long answers (capabilities), pipelined, and nothing ever read.
        let chatty = proto.cmd(proto.pick("CAPABILITY", "EHLO loris.test", "CAPABILITY", "CAPA"));
        let (reader, mut writer) = stream.into_split();
        writers.push(tokio::spawn(async move {
            let flood = chatty.repeat(2 * 1_024 * 1_024 / chatty.len());
            let _ = writer.write_all(&flood).await;
            writer
        }));
        held.push(reader);
        stages.push((proto, local, remote, started, stage));
    }
    for (proto, local, remote, started, stage) in &stages {
        let end = *started + DEADLINE + MARGIN;
        // The proxy logs the session's end after closing its socket.
        let peer = format!("peer={local}");
        let wait = end.saturating_duration_since(Instant::now());
        tokio::task::block_in_place(|| {
            stage.proxy.wait_for_log_where(wait, |log| {
                log.lines()
                    .any(|l| l.contains(&peer) && l.contains("outcome=\"prelogin-deadline\""))
            })
        });
        if established(*local, *remote) {
            late.push(*proto);
        } else {
            println!(
                "{proto:?}: a client that never reads was cut after at most {:?}",
                started.elapsed()
            );
        }
    }
    writers.iter().for_each(|w| w.abort());
    assert!(
        late.is_empty(),
        "{late:?}: still connected {:?} after connecting, the proxy waiting to write \
         replies the client never reads",
        DEADLINE + MARGIN
    );
}

/// A proxy for `proto` with the short deadline and a long idle timeout.
async fn deadline_stage(proto: Proto, label: &str) -> Stage {
    let label = format!("{label}-{}", proto.name());
    Stage::start(proto, &label, |config| {
        config.each_listener(|l| {
            l.preauth_idle_timeout = Some("30s".into());
            l.extra
                .push(format!("preauth_deadline = \"{}s\"", DEADLINE.as_secs()));
        })
    })
    .await
}

/// Whether the kernel still has the TCP connection `local` → `remote` established
/// (`/proc/net/tcp`, state `01`): once the proxy closes its end, ours is in CLOSE_WAIT, or
/// gone after a reset.
fn established(local: SocketAddrV4, remote: SocketAddrV4) -> bool {
    let hex = |a: SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str())
            && fields.get(2) == Some(&remote.as_str())
            && fields.get(3) == Some(&"01")
    })
}
