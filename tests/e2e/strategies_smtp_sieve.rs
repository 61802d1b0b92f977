//! Backend login strategies beyond `master` for SMTP submission and ManageSieve, against the
//! real Dovecot: `plain-authzid` for ManageSieve, `passthrough` to a Dovecot that validates
//! tokens itself (`passdb oauth2`, scope `dovecot` required) for both, and the SMTP password
//! fallback. (IMAP's are in `imap_backend.rs` and `imap_passthrough_fallback.rs`.)

use std::time::Duration;

use serde_json::Value;

use crate::support::certs::TestCerts;
use crate::support::dovecot::Dovecot;
use crate::support::idp::Idp;
use crate::support::imap_client::{literal_size, ImapClient};
use crate::support::{
    b64, b64_decode, oauthbearer_b64, test_message, xoauth2_b64, DovecotBuilder, Proxy,
    ProxyConfig, TestDir, TestEnv, TlsMode,
};

/// How long a submitted message may take to reach the sink through Dovecot.
const RELAY_DEADLINE: Duration = Duration::from_secs(20);

/// An environment whose Dovecot also validates tokens itself (`passdb oauth2` against the
/// environment's IdP, requiring the `dovecot` scope), with more services set by `configure`.
fn oauth_env(label: &str, configure: impl FnOnce(DovecotBuilder) -> DovecotBuilder) -> TestEnv {
    let dir = TestDir::new(label);
    let certs = TestCerts::generate(dir.path());
    let idp = Idp::start();
    let url = idp
        .url()
        .replacen("http://", "http://bearergate:introsecret@", 1);
    let dovecot = configure(Dovecot::builder(dir.path()).oauth2(&url)).start();
    TestEnv {
        dovecot,
        idp,
        certs,
        dir,
    }
}

/// A token the proxy accepts (scope `mail`) that Dovecot accepts too (scope `dovecot`).
fn dovecot_token(env: &TestEnv) -> String {
    env.idp.issue_with("alice", |claims| {
        claims.insert("scope".into(), Value::from("mail dovecot"));
    })
}

async fn connect(env: &TestEnv, addr: std::net::SocketAddr, tls: TlsMode) -> ImapClient {
    match tls {
        TlsMode::Implicit => ImapClient::connect_tls(addr, env.certs.client_config()).await,
        TlsMode::Starttls | TlsMode::None => ImapClient::connect_plain(addr).await,
    }
}

/// An error challenge's decoded bytes, which must be JSON.
fn decode_challenge(data: &str) -> String {
    let json = String::from_utf8(b64_decode(data)).expect("challenge is UTF-8");
    serde_json::from_str::<Value>(&json)
        .unwrap_or_else(|e| panic!("error challenge is not JSON ({e}): {json:?}"));
    json
}

/// Dovecot 2.3's own XOAUTH2 failure challenge (`mech-oauth2.c`; its scope is fixed, not
/// the passdb's `scope = dovecot`), byte for byte: the proxy must relay it unchanged.
const DOVECOT_XOAUTH2_CHALLENGE: &str = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;

mod smtp {
    use super::*;
    use crate::support::SmtpSink;

    async fn read_reply(client: &mut ImapClient) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = client.read_line().await;
            assert!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "not an SMTP reply line: {line:?} (after {lines:?})"
            );
            let done = line.len() == 3 || line.as_bytes()[3] == b' ';
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    async fn command(client: &mut ImapClient, line: &str) -> Vec<String> {
        client.send(format!("{line}\r\n").as_bytes()).await;
        read_reply(client).await
    }

    fn last(reply: &[String]) -> &str {
        reply.last().expect("a reply has lines")
    }

    /// Connect (to the proxy's listener, or to `addr` in plaintext), read the `220`, EHLO.
    async fn session(env: &TestEnv, addr: std::net::SocketAddr, tls: TlsMode) -> ImapClient {
        let mut client = connect(env, addr, tls).await;
        let greeting = read_reply(&mut client).await;
        assert!(last(&greeting).starts_with("220 "), "{greeting:?}");
        client
    }

    async fn ehlo(client: &mut ImapClient) -> Vec<String> {
        let reply = command(client, "EHLO client.test").await;
        assert!(last(&reply).starts_with("250 "), "EHLO: {reply:?}");
        reply
    }

    /// `AUTH mech initial`; a `334` error challenge is decoded and answered with the
    /// mechanism's dummy. Returns the challenge and the final reply.
    async fn auth(client: &mut ImapClient, mech: &str, initial: &str) -> (Option<String>, String) {
        let dummy = if mech == "OAUTHBEARER" { "AQ==" } else { "" };
        let mut reply = command(client, &format!("AUTH {mech} {initial}")).await;
        let mut challenge = None;
        if let Some(data) = last(&reply).strip_prefix("334 ") {
            challenge = Some(decode_challenge(data));
            reply = command(client, dummy).await;
        }
        assert!(
            !last(&reply).starts_with("334"),
            "a second challenge: {reply:?}"
        );
        (challenge, reply.join("\n"))
    }

    async fn submit(client: &mut ImapClient, message: &[u8]) {
        for line in [
            "MAIL FROM:<alice@example.test>",
            "RCPT TO:<bob@example.test>",
        ] {
            let reply = command(client, line).await;
            assert!(last(&reply).starts_with("250 "), "{line}: {reply:?}");
        }
        let reply = command(client, "DATA").await;
        assert!(last(&reply).starts_with("354 "), "DATA: {reply:?}");
        // sent as is: no line may start with a dot (no dot-stuffing here)
        assert!(!message.starts_with(b".") && !message.windows(2).any(|w| w == b"\n."));
        client.send(message).await;
        client.send(b".\r\n").await;
        let reply = read_reply(client).await;
        assert!(last(&reply).starts_with("250 "), "end of DATA: {reply:?}");
        let reply = command(client, "QUIT").await;
        assert!(last(&reply).starts_with("221 "), "QUIT: {reply:?}");
    }

    fn assert_arrived(sink: &SmtpSink, n: usize, message: &[u8]) {
        let got = sink.wait_for(n, RELAY_DEADLINE);
        let got = &got[n - 1];
        assert!(
            got.mail_from.starts_with("<alice@example.test>"),
            "{:?}",
            got.mail_from
        );
        assert!(
            got.data.ends_with(message) && got.data.starts_with(b"Received: "),
            "relayed message:\n{}",
            String::from_utf8_lossy(&got.data)
        );
    }

    fn start_proxy(env: &TestEnv, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
        let mut config = ProxyConfig::submission(env);
        tweak(&mut config);
        env.start_proxy_with(&config)
    }

    #[tokio::test]
    async fn password_fallback_lets_dovecot_check_passwords() {
        let sink = SmtpSink::start();
        let env = TestEnv::with_dovecot("smtp-fallback", |b| b.submission(sink.port()));
        let proxy = start_proxy(&env, |c| {
            c.each_listener(|l| l.extra.push("password_fallback = true".into()))
        });
        let implicit = proxy.addr(TlsMode::Implicit);

        let mut client = session(&env, implicit, TlsMode::Implicit).await;
        let caps = ehlo(&mut client).await;
        assert!(
            caps.iter()
                .any(|l| &l[4..] == "AUTH OAUTHBEARER XOAUTH2 PLAIN LOGIN"),
            "{caps:?}"
        );
        let plain = b64("\0alice\0alicepass");
        let reply = command(&mut client, &format!("AUTH PLAIN {plain}")).await;
        assert_eq!(reply.len(), 1, "{reply:?}");
        assert!(reply[0].starts_with("235 "), "Dovecot's 235: {reply:?}");
        let message = test_message("smtp password fallback", 2_000);
        submit(&mut client, &message).await;
        assert_arrived(&sink, 1, &message);

        let mut wrong = session(&env, implicit, TlsMode::Implicit).await;
        ehlo(&mut wrong).await;
        let reply = command(
            &mut wrong,
            &format!("AUTH PLAIN {}", b64("\0alice\0wrongpass")),
        )
        .await;
        assert!(last(&reply).starts_with("535 "), "Dovecot's 535: {reply:?}");
        assert_eq!(env.idp.requests(), 0, "passwords never reach the IdP");

        // Before TLS the fallback is neither offered nor taken.
        let mut plain_client =
            session(&env, proxy.addr(TlsMode::Starttls), TlsMode::Starttls).await;
        let caps = ehlo(&mut plain_client).await;
        assert!(!caps.iter().any(|l| l[4..].starts_with("AUTH")), "{caps:?}");
        let reply = command(&mut plain_client, &format!("AUTH PLAIN {plain}")).await;
        assert_eq!(reply, ["530 5.7.0 Must issue a STARTTLS command first"]);
        assert_eq!(sink.messages().len(), 1);
    }

    #[tokio::test]
    async fn passthrough_forwards_the_token_and_relays_dovecots_challenge() {
        let sink = SmtpSink::start();
        let env = oauth_env("smtp-passthrough", |b| b.submission(sink.port()));
        let proxy = start_proxy(&env, |c| {
            c.backend_mut("submission").login = "passthrough".into()
        });
        let implicit = proxy.addr(TlsMode::Implicit);

        let token = dovecot_token(&env);
        let mut client = session(&env, implicit, TlsMode::Implicit).await;
        ehlo(&mut client).await;
        let (challenge, reply) = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
        assert!(
            challenge.is_none() && reply.starts_with("235 "),
            "{challenge:?} {reply}"
        );
        let message = test_message("smtp passthrough", 3_000);
        submit(&mut client, &message).await;
        assert_arrived(&sink, 1, &message);
        assert_eq!(
            env.idp.requests(),
            2,
            "the proxy and Dovecot each introspected once"
        );

        let refused = env.idp.issue("alice");
        // Dovecot refuses it (no `dovecot` scope): its own challenge reaches the client
        // through the proxy unchanged, then 535.
        let mut client = session(&env, implicit, TlsMode::Implicit).await;
        ehlo(&mut client).await;
        let (challenge, reply) =
            auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &refused)).await;
        assert_eq!(
            challenge.as_deref(),
            Some(DOVECOT_XOAUTH2_CHALLENGE),
            "relayed challenge ({reply})"
        );
        assert!(reply.starts_with("535 "), "{reply}");
        assert_eq!(sink.messages().len(), 1);
    }
}

mod sieve {
    use super::*;

    const SCRIPT: &str = "require [\"fileinto\"];\r\n\
                          # Grüße über bearergate\ttab   \r\n\
                          if header :contains \"subject\" \"[x]\" {\r\n  fileinto \"INBOX\";\r\n}\r\n";

    fn status(line: &str) -> Option<&'static str> {
        let word = line.split([' ', '(']).next().unwrap_or("");
        ["OK", "NO", "BYE"]
            .into_iter()
            .find(|s| word.eq_ignore_ascii_case(s))
    }

    async fn read_response(client: &mut ImapClient) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut line = client.read_line().await;
            if let Some(n) = literal_size(&line) {
                let data = client.read_bytes(n).await;
                line.push_str(&String::from_utf8_lossy(&data));
            }
            let done = status(&line).is_some();
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    async fn command(client: &mut ImapClient, line: &str) -> Vec<String> {
        client.send(format!("{line}\r\n").as_bytes()).await;
        read_response(client).await
    }

    async fn session(env: &TestEnv, addr: std::net::SocketAddr, tls: TlsMode) -> ImapClient {
        let mut client = connect(env, addr, tls).await;
        let greeting = read_response(&mut client).await;
        assert_eq!(
            greeting.last().and_then(|l| status(l)),
            Some("OK"),
            "{greeting:?}"
        );
        client
    }

    /// `AUTHENTICATE "mech" "initial"`; an error challenge (quoted or literal) is decoded
    /// and answered with the mechanism's dummy. Returns the challenge and the final line.
    async fn authenticate(
        client: &mut ImapClient,
        mech: &str,
        initial: &str,
    ) -> (Option<String>, String) {
        client
            .send(format!("AUTHENTICATE \"{mech}\" \"{initial}\"\r\n").as_bytes())
            .await;
        let dummy = if mech == "OAUTHBEARER" { "AQ==" } else { "" };
        let mut challenge = None;
        loop {
            let line = client.read_line().await;
            if status(&line).is_some() {
                return (challenge, line);
            }
            let data = if let Some(n) = literal_size(&line) {
                let data = client.read_bytes(n).await;
                assert_eq!(client.read_line().await, "", "CRLF after a literal");
                String::from_utf8(data).expect("challenge is base64")
            } else {
                line.strip_prefix('"')
                    .and_then(|l| l.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("not a challenge: {line:?}"))
                    .to_string()
            };
            assert!(challenge.is_none(), "a second challenge: {line:?}");
            challenge = Some(decode_challenge(&data));
            client.send(format!("\"{dummy}\"\r\n").as_bytes()).await;
        }
    }

    async fn getscript(client: &mut ImapClient, name: &str) -> Vec<u8> {
        client
            .send(format!("GETSCRIPT \"{name}\"\r\n").as_bytes())
            .await;
        let line = client.read_line().await;
        let n = literal_size(&line).unwrap_or_else(|| panic!("GETSCRIPT answered {line:?}"));
        let script = client.read_bytes(n).await;
        assert_eq!(client.read_line().await, "", "CRLF after the literal");
        let done = client.read_line().await;
        assert_eq!(status(&done), Some("OK"), "GETSCRIPT: {done:?}");
        script
    }

    fn start_proxy(env: &TestEnv, login: &str) -> Proxy {
        let mut config = ProxyConfig::managesieve(env);
        config.backend_mut("sieve").login = login.into();
        env.start_proxy_with(&config)
    }

    #[tokio::test]
    async fn plain_authzid_login_puts_and_gets_a_script() {
        let env = TestEnv::with_dovecot("sieve-authzid", |b| b.sieve());
        let token = env.idp.issue("alice");
        let proxy = start_proxy(&env, "plain-authzid");
        let addr = proxy.addr(TlsMode::Implicit);
        for (mech, response) in [
            ("XOAUTH2", xoauth2_b64("alice", &token)),
            ("OAUTHBEARER", oauthbearer_b64("alice", &token)),
        ] {
            let mut client = session(&env, addr, TlsMode::Implicit).await;
            let (challenge, done) = authenticate(&mut client, mech, &response).await;
            assert!(
                challenge.is_none() && status(&done) == Some("OK"),
                "{mech}: {challenge:?} {done}"
            );
            let name = format!("authzid-{mech}");
            let put = format!("PUTSCRIPT \"{name}\" {{{}+}}\r\n{SCRIPT}", SCRIPT.len());
            let reply = command(&mut client, &put).await;
            assert_eq!(
                reply.last().and_then(|l| status(l)),
                Some("OK"),
                "PUTSCRIPT: {reply:?}"
            );
            assert!(
                getscript(&mut client, &name).await == SCRIPT.as_bytes(),
                "{mech}: GETSCRIPT differs from PUTSCRIPT"
            );
        }
        // The scripts landed in alice's own sieve directory.
        let stored = std::fs::read(
            env.dovecot
                .home("alice")
                .join("sieve/authzid-XOAUTH2.sieve"),
        )
        .unwrap_or_else(|e| panic!("alice's script: {e}\n{}", env.dovecot.log()));
        assert!(stored == SCRIPT.as_bytes(), "stored script differs");
    }

    #[tokio::test]
    async fn passthrough_forwards_the_token_and_relays_dovecots_challenge() {
        let env = oauth_env("sieve-passthrough", |b| b.sieve());
        let proxy = start_proxy(&env, "passthrough");
        let addr = proxy.addr(TlsMode::Implicit);

        let token = dovecot_token(&env);
        let mut client = session(&env, addr, TlsMode::Implicit).await;
        let (challenge, done) =
            authenticate(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
        assert!(
            challenge.is_none() && status(&done) == Some("OK"),
            "{challenge:?} {done}"
        );
        assert_eq!(
            command(&mut client, "LISTSCRIPTS").await,
            ["OK \"Listscripts completed.\""]
        );
        assert_eq!(
            env.idp.requests(),
            2,
            "the proxy and Dovecot each introspected once"
        );

        let refused = env.idp.issue("alice");
        // Dovecot refuses it (no `dovecot` scope): its own challenge reaches the client
        // through the proxy unchanged, then NO.
        let mut client = session(&env, addr, TlsMode::Implicit).await;
        let (challenge, done) =
            authenticate(&mut client, "XOAUTH2", &xoauth2_b64("alice", &refused)).await;
        assert_eq!(
            challenge.as_deref(),
            Some(DOVECOT_XOAUTH2_CHALLENGE),
            "relayed challenge ({done})"
        );
        assert_eq!(status(&done), Some("NO"), "{done}");
        assert!(!done.contains("TRYLATER"), "{done}");
    }
}
