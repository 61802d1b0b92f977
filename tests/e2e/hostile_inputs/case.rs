//! One row of the table for one protocol: where to connect, what to send, the exact replies
//! (or reply prefixes) in order, and whether the proxy then closes the connection. A row
//! that leaves it open is probed with the protocol's NOOP afterwards, so "still open" also
//! means "still the proxy's, before login, in step".

use super::peers::{Port, Proto};

/// One expected reply line.
#[derive(Debug, Clone)]
pub(crate) enum Line {
    /// Exactly this line.
    Is(String),
    /// A line starting with this (written `"text…"` in the table).
    Starts(String),
    /// Any lines, up to and including one starting with this (a capability block).
    Through(String),
}

impl From<&str> for Line {
    fn from(text: &str) -> Self {
        match text.strip_suffix('…') {
            Some(prefix) => Line::Starts(prefix.to_owned()),
            None => Line::Is(text.to_owned()),
        }
    }
}

impl From<String> for Line {
    fn from(text: String) -> Self {
        Line::from(text.as_str())
    }
}

impl Line {
    pub(crate) fn matches(&self, line: &str) -> bool {
        match self {
            Line::Is(want) => line == want,
            Line::Starts(prefix) | Line::Through(prefix) => line.starts_with(prefix.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Step {
    Send(Vec<u8>),
    Expect(Line),
    /// The client's TLS handshake, which must succeed.
    Tls,
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub port: Port,
    /// Plain TCP even to the implicit-TLS port: the bytes sent are not a TLS handshake.
    pub raw: bool,
    /// The first `Send` goes out before the greeting is read.
    pub early: bool,
    pub steps: Vec<Step>,
    /// The proxy closes the connection after the last expected reply, saying nothing more.
    pub closed: bool,
}

impl Case {
    pub(crate) fn new() -> Self {
        Self {
            port: Port::Plain,
            raw: false,
            early: false,
            steps: Vec::new(),
            closed: false,
        }
    }

    pub(crate) fn on(mut self, port: Port) -> Self {
        self.port = port;
        self
    }

    /// Plain TCP to the implicit-TLS port.
    pub(crate) fn raw_tls_port(mut self) -> Self {
        self.port = Port::Implicit;
        self.raw = true;
        self
    }

    pub(crate) fn early(mut self) -> Self {
        self.early = true;
        self
    }

    pub(crate) fn send(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.steps.push(Step::Send(bytes.as_ref().to_vec()));
        self
    }

    pub(crate) fn expect<L: Into<Line>>(mut self, lines: impl IntoIterator<Item = L>) -> Self {
        self.steps
            .extend(lines.into_iter().map(|l| Step::Expect(l.into())));
        self
    }

    /// The same reply `n` times (a flood of commands).
    pub(crate) fn expect_n(self, line: &str, n: usize) -> Self {
        self.expect(std::iter::repeat_n(line, n))
    }

    /// Any lines, up to and including one starting with `prefix`.
    pub(crate) fn expect_through(mut self, prefix: &str) -> Self {
        self.steps.push(Step::Expect(Line::Through(prefix.into())));
        self
    }

    pub(crate) fn tls(mut self) -> Self {
        self.steps.push(Step::Tls);
        self
    }

    pub(crate) fn closed(mut self) -> Self {
        self.closed = true;
        self
    }

    /// SMTP wants EHLO before AUTH; the other protocols need nothing.
    pub(crate) fn ehlo(self, p: Proto) -> Self {
        if p != Proto::Smtp {
            return self;
        }
        self.send("EHLO hostile.test\r\n").expect_through("250 ")
    }

    /// STARTTLS (POP3: STLS), its OK and the handshake; ManageSieve re-sends its
    /// capabilities, SMTP then needs a fresh EHLO (added by [`Case::ehlo`] where wanted).
    pub(crate) fn starttls(self, p: Proto) -> Self {
        let case = self
            .send(p.cmd(p.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS")))
            .expect([p.starttls_ok()])
            .tls();
        if p != Proto::Sieve {
            return case;
        }
        case.expect_through("OK \"TLS negotiation successful.\"")
    }
}

/// Commands and replies in each protocol's words.
impl Proto {
    /// A command line with CRLF; IMAP's gets tag `a`.
    pub(crate) fn cmd(self, text: &str) -> Vec<u8> {
        self.tagged("a", text)
    }

    /// A command line with CRLF; IMAP's gets `tag`, the others none.
    pub(crate) fn tagged(self, tag: &str, text: &str) -> Vec<u8> {
        match self {
            Proto::Imap => format!("{tag} {text}\r\n").into_bytes(),
            _ => format!("{text}\r\n").into_bytes(),
        }
    }

    /// A command line of raw octets with CRLF; IMAP's gets tag `a`.
    pub(crate) fn cmd_bytes(self, octets: &[u8]) -> Vec<u8> {
        let tag: &[u8] = if self == Proto::Imap { b"a " } else { b"" };
        [tag, octets, b"\r\n"].concat()
    }

    /// The proxy's answer to NOOP (IMAP: tagged `tag`).
    pub(crate) fn noop_ok(self, tag: &str) -> String {
        match self {
            Proto::Imap => format!("{tag} OK NOOP completed."),
            _ => self.probe().1.to_owned(),
        }
    }

    /// AUTHENTICATE / AUTH with `mechanism`, and the initial response when given.
    pub(crate) fn auth(self, mechanism: &str, initial: Option<&str>) -> Vec<u8> {
        let ir = initial.map_or(String::new(), |ir| match self {
            Proto::Sieve => format!(" \"{ir}\""),
            _ => format!(" {ir}"),
        });
        match self {
            Proto::Imap => format!("a AUTHENTICATE {mechanism}{ir}\r\n"),
            Proto::Sieve => format!("AUTHENTICATE \"{mechanism}\"{ir}\r\n"),
            Proto::Smtp | Proto::Pop3 => format!("AUTH {mechanism}{ir}\r\n"),
        }
        .into_bytes()
    }

    /// One client response of a SASL exchange (ManageSieve: a quoted string).
    pub(crate) fn response(self, text: &str) -> Vec<u8> {
        match self {
            Proto::Sieve => format!("\"{text}\"\r\n"),
            _ => format!("{text}\r\n"),
        }
        .into_bytes()
    }

    /// The empty challenge that asks for the first response.
    pub(crate) fn go_ahead(self) -> &'static str {
        self.pick("+ ", "334 ", "\"\"", "+ ")
    }

    /// An error challenge: base64 of a JSON object.
    pub(crate) fn error_challenge(self) -> &'static str {
        self.pick("+ eyJ…", "334 eyJ…", "\"eyJ…", "+ eyJ…")
    }

    /// A refused token or unusable credentials, after the error challenge.
    pub(crate) fn refused(self) -> &'static str {
        self.pick(
            "a NO [AUTHENTICATIONFAILED] Authentication failed.",
            "535 5.7.8 Authentication credentials invalid",
            "NO \"Authentication failed.\"",
            "-ERR [AUTH] Authentication failed.",
        )
    }

    pub(crate) fn unknown_mechanism(self) -> &'static str {
        self.pick(
            "a NO Unsupported authentication mechanism: use XOAUTH2 or OAUTHBEARER.",
            "504 5.5.4 Unrecognized authentication type",
            "NO \"Unsupported authentication mechanism: use OAUTHBEARER or XOAUTH2.\"",
            "-ERR Unsupported authentication mechanism.",
        )
    }

    /// A command the proxy does not take before login: unknown, or one of the logged-in
    /// state.
    pub(crate) fn not_now(self) -> &'static str {
        self.pick(
            "a BAD Command not allowed before authentication.",
            "500 5.5.2 Command unrecognized",
            "NO \"Authenticate first.\"",
            "-ERR Authenticate first.",
        )
    }

    /// A line the proxy cannot parse at all (IMAP: with the tag it could read).
    pub(crate) fn syntax(self, imap_tag: &str) -> String {
        match self {
            Proto::Imap => format!("{imap_tag} BAD Syntax error in command."),
            Proto::Smtp => "500 5.5.2 Command unrecognized".into(),
            Proto::Sieve => "NO \"Syntax error in command.\"".into(),
            Proto::Pop3 => "-ERR Unknown command.".into(),
        }
    }

    /// A command line over the line limit (IMAP: with the tag it could read).
    pub(crate) fn too_long(self, imap_tag: &str) -> String {
        match self {
            Proto::Imap => format!("{imap_tag} BAD [TOOBIG] Command line too long."),
            Proto::Smtp => "500 5.5.2 Line too long".into(),
            Proto::Sieve => "NO \"Line too long.\"".into(),
            Proto::Pop3 => "-ERR Line too long.".into(),
        }
    }

    /// A SASL response (or the token in it) over the limits.
    pub(crate) fn sasl_too_long(self) -> &'static str {
        self.pick(
            "a BAD [TOOBIG] SASL response too long.",
            "500 5.5.6 Authentication Exchange line is too long",
            "NO \"SASL response too long.\"",
            "-ERR Authentication line too long.",
        )
    }

    pub(crate) fn cancelled(self) -> &'static str {
        self.pick(
            "a BAD Authentication cancelled.",
            "501 5.7.0 Authentication cancelled",
            "NO \"Authentication cancelled.\"",
            "-ERR Authentication cancelled.",
        )
    }

    pub(crate) fn starttls_ok(self) -> &'static str {
        self.pick(
            "a OK Begin TLS negotiation now.",
            "220 2.0.0 Ready to start TLS",
            "OK \"Begin TLS negotiation now.\"",
            "+OK Begin TLS negotiation",
        )
    }

    /// What closes a connection after repeated over-long input, as its own line (POP3 has
    /// none: its `-ERR` for the input is the last line).
    pub(crate) fn too_many_long(self) -> Vec<&'static str> {
        self.pick(
            vec!["* BYE Too many invalid commands."],
            vec!["421 4.7.0 Too many long lines, closing connection"],
            vec![],
            vec![],
        )
    }

    /// What closes a connection after repeated bad commands (POP3: nothing more).
    pub(crate) fn too_many_bad(self) -> Vec<&'static str> {
        self.pick(
            vec!["* BYE Too many invalid commands."],
            vec!["421 4.7.0 Too many invalid commands, closing connection"],
            vec!["BYE \"Too many invalid commands.\""],
            vec![],
        )
    }
}
