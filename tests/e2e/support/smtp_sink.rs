//! An in-process SMTP server that Dovecot's submission service relays to
//! (`submission_relay_host/port`): it greets, answers EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP
//! and QUIT, accepts every message, and keeps each one's envelope and exact DATA bytes
//! (dot-unstuffed, without the terminating `.` line) for the test to wait on.
//!
//! Blocking std I/O on threads of its own, so tests may block freely (curl, Python) while it
//! answers. Commands are answered strictly in order from a buffered reader, which is all
//! PIPELINING (advertised, since Dovecot pipelines MAIL/RCPT/DATA when it may) needs.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What the sink calls itself in its greeting and EHLO reply.
pub const SINK_HOSTNAME: &str = "sink.test";

/// One message as it arrived at the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkMessage {
    /// The EHLO/HELO argument of the session that carried it.
    pub helo: String,
    /// The whole `MAIL FROM:` argument line (address and parameters).
    pub mail_from: String,
    /// Each `RCPT TO:` argument line.
    pub rcpt_to: Vec<String>,
    /// The DATA bytes, dot-unstuffed, ending with the CRLF before the final `.` line.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Shared {
    messages: Vec<SinkMessage>,
    /// Every command line the sink received, in order (for failure messages).
    transcript: Vec<String>,
}

type State = Arc<(Mutex<Shared>, Condvar)>;

/// The running sink; drop stops accepting (sessions in progress end with their peer).
#[derive(Debug)]
pub struct SmtpSink {
    addr: SocketAddr,
    state: State,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpSink {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink");
        let addr = listener.local_addr().expect("SMTP sink address");
        let state: State = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    // a broken session is the peer's business; the test sees its effect
                    thread::spawn(move || {
                        let _ = serve(stream, &state);
                    });
                }
            })
        };
        Self {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Messages received so far.
    pub fn messages(&self) -> Vec<SinkMessage> {
        self.lock().messages.clone()
    }

    /// Every command line received so far, across sessions.
    pub fn transcript(&self) -> Vec<String> {
        self.lock().transcript.clone()
    }

    /// Wait until at least `n` messages have arrived and return them all; panics (with the
    /// transcript) when they have not after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<SinkMessage> {
        let deadline = Instant::now() + timeout;
        let (lock, arrived) = &*self.state;
        let mut shared = lock.lock().expect("sink lock poisoned");
        loop {
            if shared.messages.len() >= n {
                return shared.messages.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "SMTP sink: {} of {n} messages after {timeout:?}; commands seen: {:?}",
                    shared.messages.len(),
                    shared.transcript
                );
            }
            shared = arrived
                .wait_timeout(shared, deadline - now)
                .expect("sink lock poisoned")
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.state.0.lock().expect("sink lock poisoned")
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the blocking accept so the thread sees the flag
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The argument after `verb` (case-insensitive), e.g. `MAIL FROM:` → `<a@b> SIZE=12`.
fn argument<'a>(line: &'a str, verb: &str) -> Option<&'a str> {
    let head = line.get(..verb.len())?;
    head.eq_ignore_ascii_case(verb)
        .then(|| line[verb.len()..].trim())
}

fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut reply = |text: &str| -> std::io::Result<()> {
        out.write_all(text.as_bytes())?;
        out.flush()
    };
    reply(&format!("220 {SINK_HOSTNAME} ESMTP test sink\r\n"))?;
    let mut helo = String::new();
    let mut mail_from: Option<String> = None;
    let mut rcpt_to = Vec::new();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw)? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&raw)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        state
            .0
            .lock()
            .expect("sink lock poisoned")
            .transcript
            .push(line.clone());
        if let Some(name) = argument(&line, "EHLO ") {
            helo = name.to_string();
            reply(&format!(
                "250-{SINK_HOSTNAME}\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
                 250-ENHANCEDSTATUSCODES\r\n250 SIZE 52428800\r\n"
            ))?;
        } else if let Some(name) = argument(&line, "HELO ") {
            helo = name.to_string();
            reply(&format!("250 {SINK_HOSTNAME}\r\n"))?;
        } else if let Some(from) = argument(&line, "MAIL FROM:") {
            mail_from = Some(from.to_string());
            rcpt_to.clear();
            reply("250 2.1.0 Ok\r\n")?;
        } else if let Some(to) = argument(&line, "RCPT TO:") {
            if mail_from.is_none() {
                reply("503 5.5.1 MAIL first\r\n")?;
                continue;
            }
            rcpt_to.push(to.to_string());
            reply("250 2.1.5 Ok\r\n")?;
        } else if line.eq_ignore_ascii_case("DATA") {
            let Some(from) = mail_from.take() else {
                reply("503 5.5.1 MAIL first\r\n")?;
                continue;
            };
            if rcpt_to.is_empty() {
                reply("554 5.5.1 No valid recipients\r\n")?;
                continue;
            }
            reply("354 End data with <CR><LF>.<CR><LF>\r\n")?;
            let data = read_data(&mut reader)?;
            let (lock, arrived) = &**state;
            lock.lock()
                .expect("sink lock poisoned")
                .messages
                .push(SinkMessage {
                    helo: helo.clone(),
                    mail_from: from,
                    rcpt_to: std::mem::take(&mut rcpt_to),
                    data,
                });
            arrived.notify_all();
            reply("250 2.0.0 Ok: queued\r\n")?;
        } else if line.eq_ignore_ascii_case("RSET") {
            mail_from = None;
            rcpt_to.clear();
            reply("250 2.0.0 Ok\r\n")?;
        } else if line.eq_ignore_ascii_case("NOOP") {
            reply("250 2.0.0 Ok\r\n")?;
        } else if line.eq_ignore_ascii_case("QUIT") {
            reply("221 2.0.0 Bye\r\n")?;
            return Ok(());
        } else {
            reply("500 5.5.2 Command unrecognized\r\n")?;
        }
    }
}

/// DATA lines up to the lone `.`, dot-unstuffed (RFC 5321 §4.5.2), line ends kept as sent.
fn read_data(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "EOF inside DATA",
            ));
        }
        if line == b".\r\n" {
            return Ok(data);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        data.extend_from_slice(unstuffed);
    }
}
