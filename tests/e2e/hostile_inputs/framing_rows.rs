//! Rows about bytes and framing: line ends, control octets, invalid UTF-8, sizes of lines and
//! literals, nesting, floods of commands, and other protocols' bytes on a mail port.

use super::case::Case;
use super::peers::Proto;
use super::Row;

/// Longer than every line limit before login (24,236 octets), well short of a literal.
const OVER_LONG: usize = 30_000;
/// Commands in one write for the flood rows.
const FLOOD: usize = 10_000;

pub(crate) fn rows() -> Vec<Row> {
    vec![
        Row::new("empty line", |p, _| {
            Case::new().send("\r\n").expect([p.syntax("*")])
        }),
        Row::new("blanks and a tab only", |p, _| {
            Case::new().send("  \t \r\n").expect([p.syntax("*")])
        }),
        Row::new("bare LF ends a command", |p, _| {
            let mut line = p.cmd("NOOP");
            line.truncate(line.len() - 2);
            line.push(b'\n');
            Case::new().send(line).expect([p.noop_ok("a")])
        }),
        Row::new("bare CR inside a command", |p, _| {
            Case::new().send(p.cmd("NO\rOP")).expect([p.pick(
                p.not_now().into(),
                p.syntax(""),
                p.not_now().into(),
                p.not_now().into(),
            )])
        }),
        Row::new("CR CR LF", |p, _| {
            Case::new().send(p.cmd("NOOP\r")).expect([p.pick(
                p.syntax("a"),
                "250 2.0.0 OK".into(),
                p.syntax(""),
                "+OK".into(),
            )])
        }),
        Row::new("LF CR between two commands", |p, _| {
            let bytes = p.pick(
                "a NOOP\n\rb NOOP\r\n",
                "NOOP\n\rNOOP\r\n",
                "NOOP\n\rNOOP\r\n",
                "NOOP\n\rNOOP\r\n",
            );
            Case::new().send(bytes).expect([
                p.noop_ok("a"),
                p.pick(
                    p.syntax("*"),
                    p.syntax(""),
                    p.syntax(""),
                    p.not_now().into(),
                ),
            ])
        }),
        Row::new("NUL inside a command", |p, _| {
            Case::new().send(p.cmd("NO\0OP")).expect([p.pick(
                p.not_now().into(),
                p.syntax(""),
                p.not_now().into(),
                p.not_now().into(),
            )])
        }),
        Row::new("NUL octets only", |p, _| {
            Case::new().send("\0\0\0\0\r\n").expect([unparsable(p)])
        }),
        Row::new("4 KiB of NUL octets", |p, _| {
            let mut line = vec![0u8; 4_096];
            line.extend_from_slice(b"\r\n");
            Case::new().send(line).expect([unparsable(p)])
        }),
        Row::new("invalid UTF-8", |p, _| {
            Case::new()
                .send(p.cmd_bytes(b"\xff\xfe\xfd"))
                .expect([p.pick(
                    p.syntax("a"),
                    p.syntax(""),
                    p.syntax(""),
                    p.not_now().into(),
                )])
        }),
        Row::new("invalid UTF-8 where the tag or verb is", |p, _| {
            Case::new().send(b"\xc3\x28 NOOP\r\n").expect([p.pick(
                p.syntax("*"),
                p.syntax(""),
                p.syntax(""),
                p.not_now().into(),
            )])
        }),
        Row::new("overlong UTF-8 NUL (C0 80) as an argument", |p, _| {
            Case::new()
                .send(p.cmd_bytes(b"NOOP \xc0\x80"))
                .expect([p.pick(
                    p.syntax("a"),
                    "250 2.0.0 OK".into(),
                    p.syntax(""),
                    "-ERR No arguments allowed.".into(),
                )])
        }),
        Row::new("terminal escapes and BEL", |p, _| {
            Case::new().send(p.cmd("NOOP\x1b[2J\x07")).expect([p.pick(
                p.syntax("a"),
                p.not_now().into(),
                p.syntax(""),
                p.not_now().into(),
            )])
        }),
        Row::new("over-long line", |p, _| {
            Case::new()
                .send(p.cmd(&format!("NOOP {}", "x".repeat(OVER_LONG))))
                .expect([p.too_long("a")])
        }),
        Row::new("over-long line and a command in one write", |p, _| {
            let mut bytes = p.cmd(&"x".repeat(OVER_LONG));
            bytes.extend_from_slice(&p.tagged("b", "NOOP"));
            Case::new()
                .send(bytes)
                .expect([p.too_long("a"), p.noop_ok("b")])
        }),
        Row::new("two over-long lines", |p, _| {
            let mut bytes = p.cmd(&"x".repeat(OVER_LONG));
            bytes.extend_from_slice(&p.tagged("b", &"y".repeat(OVER_LONG)));
            Case::new()
                .send(bytes)
                .expect(match p {
                    // ManageSieve's BYE replaces the second NO (RFC 5804 §2.1).
                    Proto::Sieve => {
                        vec![p.too_long("a"), "BYE \"Too many invalid commands.\"".into()]
                    }
                    _ => vec![p.too_long("a"), p.too_long("b")],
                })
                .expect(p.too_many_long())
                .closed()
        }),
        Row::new("1 MiB without a line end, then one", |p, _| {
            let mut bytes = vec![b'A'; 1 << 20];
            bytes.extend_from_slice(b"\r\n");
            Case::new().send(bytes).expect([p.too_long("*")])
        }),
        Row::new("a 20,000-octet line (over SMTP's 12,288)", |p, _| {
            Case::new()
                .send(p.cmd(&format!("NOOP {}", "x".repeat(20_000))))
                .expect([p.pick(
                    p.syntax("a"),
                    p.too_long(""),
                    p.syntax(""),
                    "-ERR No arguments allowed.".into(),
                )])
        }),
        Row::new("a 1,000-octet IMAP tag", |p, _| {
            let tag = "t".repeat(1_000);
            Case::new().send(format!("{tag} NOOP\r\n")).expect([p.pick(
                format!("{tag} OK NOOP completed."),
                p.syntax(""),
                p.not_now().into(),
                p.not_now().into(),
            )])
        }),
        Row::new("literal over 64 KiB, synchronizing", |p, _| {
            // ManageSieve reads {n} at once (RFC 5804 has no continuation): its octets follow.
            let octets = if p == Proto::Sieve {
                format!("{}\r\n", "x".repeat(70_000))
            } else {
                String::new()
            };
            Case::new()
                .send([p.cmd("LOGIN {70000}"), octets.into_bytes()].concat())
                .expect(p.pick(
                    vec!["a BAD [TOOBIG] Literal too large.".to_owned()],
                    vec![p.not_now().into()],
                    vec!["NO \"Literal too large.\"".into()],
                    vec![p.not_now().into()],
                ))
        }),
        Row::new("literal over 64 KiB, non-synchronizing", |p, _| {
            let bytes = [
                p.cmd("LOGIN {70000+}"),
                format!("{}\r\n", "x".repeat(70_000)).into_bytes(),
            ]
            .concat();
            Case::new().send(bytes).expect(p.pick(
                vec!["a BAD [TOOBIG] Literal too large.".to_owned()],
                vec![p.not_now().into(), p.too_long("")],
                vec!["NO \"Literal too large.\"".into()],
                vec![p.not_now().into(), p.too_long("")],
            ))
        }),
        Row::new("literal of 4 GiB, synchronizing", |p, _| {
            let case = Case::new().send(p.cmd("LOGIN {4294967296}"));
            match p {
                Proto::Imap => case.expect(["a BAD [TOOBIG] Literal too large."]),
                // Read at once, so the octets would follow: too many to skip.
                Proto::Sieve => case.expect(["BYE \"Literal too large.\""]).closed(),
                _ => case.expect([p.not_now()]),
            }
        }),
        Row::new("literal of 4 GiB, non-synchronizing", |p, _| {
            let case = Case::new().send(p.cmd("LOGIN {4294967296+}"));
            match p {
                Proto::Imap => case
                    .expect([
                        "a BAD [TOOBIG] Literal too large.",
                        "* BYE Literal too large to skip; closing.",
                    ])
                    .closed(),
                Proto::Sieve => case.expect(["BYE \"Literal too large.\""]).closed(),
                _ => case.expect([p.not_now()]),
            }
        }),
        Row::new("literal length of 30 digits", |p, _| {
            let case = Case::new().send(p.cmd(&format!("LOGIN {{{}}}", "9".repeat(30))));
            match p {
                Proto::Imap => case.expect(["a BAD [TOOBIG] Literal too large."]),
                Proto::Sieve => case.expect(["BYE \"Literal too large.\""]).closed(),
                _ => case.expect([p.not_now()]),
            }
        }),
        Row::new("literal length that is not a number", |p, _| {
            Case::new().send(p.cmd("LOGIN {12a}")).expect([p.pick(
                p.syntax("a"),
                p.not_now().into(),
                p.not_now().into(),
                p.not_now().into(),
            )])
        }),
        Row::new("literals adding up to over 128 KiB", |p, _| {
            // Three literals of 50,000 octets, each under the 64 KiB literal limit.
            let x = "x".repeat(50_000);
            let bytes = format!(
                "{}{x} {{50000+}}\r\n{x} {{50000+}}\r\n{x}\r\n",
                String::from_utf8_lossy(&p.cmd("LOGIN {50000+}"))
            );
            let case = Case::new().send(bytes);
            match p {
                Proto::Imap => case.expect(["a BAD [TOOBIG] Command too long."]),
                Proto::Sieve => case.expect(["NO \"Command too long.\""]),
                _ => case
                    .expect([p.not_now().to_owned(), p.too_long(""), p.too_long("")])
                    .expect(p.too_many_long())
                    .closed(),
            }
        }),
        Row::new("5,000 nested parentheses", |p, _| {
            let nested = format!("{}{}", "(".repeat(5_000), ")".repeat(5_000));
            Case::new()
                .send(p.cmd(&format!(
                    "{} {nested}",
                    p.pick("ID", "EHLO", "NOOP", "NOOP")
                )))
                .expect([p.pick(
                    p.syntax("a"),
                    "501 5.5.4 Syntax: EHLO hostname".into(),
                    p.syntax(""),
                    "-ERR No arguments allowed.".into(),
                )])
        }),
        Row::new("5,000 unclosed parentheses", |p, _| {
            Case::new()
                .send(p.cmd(&format!(
                    "{} {}",
                    p.pick("ID", "EHLO", "NOOP", "NOOP"),
                    "(".repeat(5_000)
                )))
                .expect([p.pick(
                    p.syntax("a"),
                    "501 5.5.4 Syntax: EHLO hostname".into(),
                    p.syntax(""),
                    "-ERR No arguments allowed.".into(),
                )])
        }),
        Row::new("10,000 NOOPs in one write", |p, _| {
            let (probe, answer) = p.probe();
            Case::new()
                .send(probe.repeat(FLOOD))
                .expect_n(answer, FLOOD)
        }),
        Row::new("10,000 unknown commands in one write", |p, _| {
            let case = Case::new().send(p.cmd("FOO").repeat(FLOOD));
            // Counted like every refused command: the tenth closes the connection.
            match p {
                // ManageSieve's BYE replaces the tenth NO (RFC 5804 §2.1).
                Proto::Sieve => case.expect_n(p.not_now(), 9),
                _ => case.expect_n(p.not_now(), 10),
            }
            .expect(p.too_many_bad())
            .closed()
        }),
        Row::new("10,000 malformed lines in one write", |p, _| {
            let case = Case::new().send("(\r\n".repeat(FLOOD));
            match p {
                Proto::Sieve => case.expect_n(&p.syntax(""), 9),
                Proto::Pop3 => case.expect_n(p.not_now(), 10),
                _ => case.expect_n(&p.syntax("*"), 10),
            }
            .expect(p.too_many_bad())
            .closed()
        }),
        Row::new("an HTTP request", |p, _| {
            Case::new()
                .send("GET / HTTP/1.1\r\nHost: mail.example\r\n\r\n")
                .expect(p.pick(
                    vec![
                        "GET BAD Command not allowed before authentication.".to_owned(),
                        "Host: BAD Command not allowed before authentication.".into(),
                        p.syntax("*"),
                    ],
                    vec![p.not_now().into(), p.not_now().into(), p.syntax("")],
                    vec![p.not_now().into(), p.not_now().into(), p.syntax("")],
                    vec![p.not_now().into(), p.not_now().into(), p.syntax("")],
                ))
        }),
        Row::new("a PROXY protocol v1 header", |p, _| {
            Case::new()
                .send("PROXY TCP4 192.0.2.1 192.0.2.2 40000 993\r\n")
                .expect([p.pick(
                    "PROXY BAD Command not allowed before authentication.",
                    p.not_now(),
                    p.not_now(),
                    p.not_now(),
                )])
        }),
        Row::new("a PROXY protocol v2 header", |p, _| {
            // The signature has QUIT and a bare LF in it.
            let mut bytes = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
            bytes.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2, 0x9c, 0x40, 0x03, 0xe1]);
            bytes.extend_from_slice(b"\r\n");
            let case = Case::new().send(bytes);
            // Two empty lines, then a NUL.
            let head = [p.syntax("*"), p.syntax("*"), unparsable(p)];
            match p {
                Proto::Imap => case.expect(head).expect([
                    "QUIT BAD Syntax error in command.".to_owned(),
                    p.syntax("*"),
                ]),
                Proto::Smtp => case.expect(head).expect(["221 2.0.0 Bye"]).closed(),
                Proto::Sieve => case.expect(head).expect([p.not_now(), p.not_now()]),
                Proto::Pop3 => case.expect(head).expect(["+OK Logging out."]).closed(),
            }
        }),
        Row::new("a TLS ClientHello on a plaintext port", |p, _| {
            let mut hello = b"\x16\x03\x01\x00\x2f\x01\x00\x00\x2b\x03\x03".to_vec();
            hello.extend_from_slice(&[0x41; 32]);
            hello.extend_from_slice(b"\x00\x00\x02\x13\x01\x01\x00\r\n");
            Case::new().send(hello).expect([unparsable(p)])
        }),
        Row::new("commands before the greeting", |p, _| {
            let (probe, answer) = p.probe();
            Case::new().early().send(probe).expect([answer])
        }),
        Row::new("implicit TLS port: a plaintext command", |p, _| {
            Case::new().raw_tls_port().send(p.probe().0).closed()
        }),
        Row::new("implicit TLS port: a record announcing 64 KiB", |_, _| {
            let mut record = b"\x16\x03\x01\xff\xff".to_vec();
            record.extend_from_slice(&[0x01; 100]);
            Case::new().raw_tls_port().send(record).closed()
        }),
        Row::new("implicit TLS port: an SSLv2 ClientHello", |_, _| {
            let mut hello = b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10".to_vec();
            hello.extend_from_slice(&[0x07; 37]);
            Case::new().raw_tls_port().send(hello).closed()
        }),
    ]
}

/// A line of octets no grammar knows (NUL, a TLS record): IMAP and ManageSieve cannot parse
/// it, SMTP finds no verb in it, POP3 takes it for a command it does not have.
fn unparsable(p: Proto) -> String {
    match p {
        Proto::Pop3 => p.not_now().into(),
        _ => p.syntax("*"),
    }
}
