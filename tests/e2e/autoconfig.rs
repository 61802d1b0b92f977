//! Mail clients setting themselves up against the built-in issuer: the PACC document, the
//! Thunderbird autoconfig XML (parsed by Python's xml.etree) and the RFC 9728 metadata,
//! fetched over HTTPS from the running bearergate and checked against the listeners it was
//! given and the issuer's discovery document; a reload that changes the listeners changes
//! them. The RFC 7628 error challenge names the issuer's discovery document on IMAP, SMTP,
//! POP3 and ManageSieve alike. A new mail client setting itself up from an address is in
//! `new_mail_client.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::support::imap_client::{literal_size, ImapClient};
use crate::support::issuer::{IssuerEnv, IssuerOptions, MAIL_SCOPE, USER};
use crate::support::proxy::{ListenerConfig, Proxy, TlsMode};
use crate::support::{b64_decode, expect_success, oauthbearer_b64, run, signal};

/// The address the documents are asked about.
const ADDRESS: &str = "alice@example.test";
const LOG_WAIT: Duration = Duration::from_secs(10);

/// A response from the issuer's listener, read by curl trusting the test CA.
#[derive(Debug)]
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// `GET {issuer}{path}` over HTTPS.
fn fetch(env: &IssuerEnv, path: &str) -> Fetched {
    let url = format!("{}{path}", env.url);
    let out = run(Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "--dump-header",
            "-",
        ])
        .arg("--cacert")
        .arg(&env.env.certs.ca_pem)
        .arg(&url));
    expect_success(&format!("curl {url}"), &out);
    let text = String::from_utf8(out.stdout).expect("UTF-8 response");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {text:?}"));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Fetched {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Reads a `config-v1.1.xml` with Python's xml.etree into JSON: the provider, every server
/// section (incoming, outgoing, then setupServer) and the `<oAuth2>` block.
const PARSE_XML: &str = r#"
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.buffer.read())
provider = root.find("emailProvider")
def server(e):
    return {"section": e.tag, "type": e.get("type"), "hostname": e.findtext("hostname"),
            "port": int(e.findtext("port")), "socketType": e.findtext("socketType"),
            "authentication": [a.text for a in e.findall("authentication")],
            "username": e.findtext("username")}
sections = provider.findall("incomingServer") + provider.findall("outgoingServer") \
    + root.findall("setupServer")
oauth = root.find("oAuth2")
print(json.dumps({"root": root.tag, "version": root.get("version"), "id": provider.get("id"),
                  "domains": [d.text for d in provider.findall("domain")],
                  "servers": [server(e) for e in sections],
                  "oauth2": None if oauth is None else {c.tag: c.text for c in oauth}}))
"#;

fn parse_xml(xml: &str) -> Value {
    use std::io::Write as _;
    let mut child = Command::new("python3")
        .args(["-c", PARSE_XML])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(xml.as_bytes())
        .expect("write the XML");
    let out = child.wait_with_output().expect("python3 output");
    expect_success("xml.etree on config-v1.1.xml", &out);
    serde_json::from_slice(&out.stdout).expect("the parser's JSON")
}

/// What the XML must list: every listener with TLS, as (section, type, host, port,
/// socketType, whether it takes passwords).
fn expected_servers(
    listeners: &[ListenerConfig],
) -> BTreeSet<(String, String, String, u16, String, bool)> {
    listeners
        .iter()
        .filter(|l| l.tls != TlsMode::None)
        .map(|l| {
            let (section, kind) = match l.protocol.as_str() {
                "imap" => ("incomingServer", "imap"),
                "pop3" => ("incomingServer", "pop3"),
                "smtp" => ("outgoingServer", "smtp"),
                "sieve" => ("setupServer", "managesieve"),
                other => panic!("protocol {other}"),
            };
            let socket = if l.tls == TlsMode::Implicit {
                "SSL"
            } else {
                "STARTTLS"
            };
            let password = l.extra.iter().any(|e| e == "password_fallback = true");
            (
                section.to_owned(),
                kind.to_owned(),
                "localhost".to_owned(),
                l.listen.port(),
                socket.to_owned(),
                password,
            )
        })
        .collect()
}

/// The XML's servers in the same shape, each checked to offer OAuth2 first.
fn listed_servers(xml: &Value) -> BTreeSet<(String, String, String, u16, String, bool)> {
    let servers = xml["servers"].as_array().expect("servers");
    servers
        .iter()
        .map(|s| {
            let auth: Vec<&str> = s["authentication"]
                .as_array()
                .expect("authentication")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(auth.first(), Some(&"OAuth2"), "{s}");
            assert_eq!(s["username"], "%EMAILLOCALPART%", "{s}");
            let password = match auth.as_slice() {
                ["OAuth2"] => false,
                ["OAuth2", "password-cleartext"] => true,
                other => panic!("authentication {other:?} in {s}"),
            };
            (
                s["section"].as_str().unwrap_or_default().to_owned(),
                s["type"].as_str().unwrap_or_default().to_owned(),
                s["hostname"].as_str().unwrap_or_default().to_owned(),
                u16::try_from(s["port"].as_u64().unwrap_or_default()).expect("a port"),
                s["socketType"].as_str().unwrap_or_default().to_owned(),
                password,
            )
        })
        .collect()
}

/// The `d=` digest of the last PACC record the proxy logged.
fn logged_digest(proxy: &Proxy) -> String {
    assert!(
        proxy.wait_for_log("_ua-auto-config", LOG_WAIT),
        "no PACC record logged:\n{}",
        proxy.log()
    );
    let log = proxy.log();
    let line = log
        .lines()
        .rev()
        .find(|line| line.contains("_ua-auto-config"))
        .unwrap_or_default();
    let start = line.find("; d=").map(|at| at + 4).expect("a d= tag");
    line[start..]
        .split(|c: char| c == '"' || c == '\\' || c.is_whitespace())
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn autoconfig_documents_name_the_listeners_and_the_issuer() {
    // Beside IMAP (implicit), SMTP (implicit), ManageSieve (STARTTLS) and POP3 (implicit):
    // an IMAP STARTTLS listener that also takes passwords, and a plaintext one.
    let mut starttls = ListenerConfig::imap(TlsMode::Starttls);
    starttls.extra.push("password_fallback = true".into());
    let options = IssuerOptions {
        pop3: true,
        extra_listeners: vec![starttls, ListenerConfig::imap(TlsMode::None)],
        extra: vec!["mail_domains = [\"example.test\", \"example.org\"]".into()],
        ..IssuerOptions::default()
    };
    let env = IssuerEnv::new("autoconfig-documents", options);
    let proxy = env.start();
    let listeners = &env.config().listeners;
    let plaintext_port = listeners
        .iter()
        .find(|l| l.tls == TlsMode::None)
        .map(|l| l.listen.port())
        .expect("a plaintext listener");

    let discovery = fetch(&env, "/.well-known/openid-configuration");
    assert_eq!(discovery.status, 200, "{}", discovery.body);
    let discovery = discovery.json();
    assert_eq!(discovery["issuer"], env.url.as_str());

    // PACC: one server per protocol, implicit TLS preferred, and the issuer.
    let pacc = fetch(&env, "/.well-known/user-agent-configuration.json");
    assert_eq!(pacc.status, 200, "{}", pacc.body);
    assert_eq!(pacc.header("content-type"), Some("application/json"));
    assert_eq!(pacc.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(pacc.header("x-content-type-options"), Some("nosniff"));
    let server = |port: u16, tls: &str| json!({"host": "localhost", "port": port, "tls": tls});
    assert_eq!(
        pacc.json(),
        json!({
            "protocols": {
                "imap": server(env.imap.port(), "implicit"),
                "pop3": server(env.pop3.expect("pop3").port(), "implicit"),
                "smtp": server(env.smtp.port(), "implicit"),
                "managesieve": server(env.sieve.port(), "starttls"),
            },
            "authentication": {"oauth-public": {"issuer": env.url}, "password": false},
            "info": {"provider": {"name": "example.test"}},
        })
    );
    assert_eq!(fetch(&env, "/.well-known/pacc.json").body, pacc.body);
    // The digest the admin publishes in DNS is that of these very bytes.
    assert_eq!(
        logged_digest(&proxy),
        STANDARD.encode(Sha256::digest(pacc.body.as_bytes()))
    );

    // Thunderbird's XML at both addresses: every TLS listener, nothing plaintext.
    let asked = ADDRESS.replace('@', "%40");
    for path in [
        format!("/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress={asked}"),
        format!("/mail/config-v1.1.xml?emailaddress={asked}"),
    ] {
        let fetched = fetch(&env, &path);
        assert_eq!(fetched.status, 200, "{path}: {}", fetched.body);
        assert_eq!(
            fetched.header("content-type"),
            Some("text/xml; charset=utf-8")
        );
        assert_eq!(fetched.header("cache-control"), Some("public, max-age=300"));
        let xml = parse_xml(&fetched.body);
        assert_eq!(xml["root"], "clientConfig");
        assert_eq!(xml["id"], "example.test", "{xml}");
        assert_eq!(xml["domains"], json!(["example.test", "example.org"]));
        assert_eq!(listed_servers(&xml), expected_servers(listeners), "{xml}");
        assert!(
            !fetched
                .body
                .contains(&format!("<port>{plaintext_port}</port>")),
            "the plaintext listener is advertised: {}",
            fetched.body
        );
        // The preferred IMAP server (listed first) is the implicit-TLS one.
        assert_eq!(xml["servers"][0]["port"], env.imap.port());
        let oauth = &xml["oauth2"];
        assert_eq!(oauth["issuer"], "127.0.0.1", "{xml}");
        assert_eq!(oauth["authURL"], discovery["authorization_endpoint"]);
        assert_eq!(oauth["tokenURL"], discovery["token_endpoint"]);
        let scopes: Vec<&str> = oauth["scope"]
            .as_str()
            .unwrap_or_default()
            .split(' ')
            .collect();
        assert!(scopes.contains(&MAIL_SCOPE), "{oauth}");
        let offline = discovery["scopes_supported"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "offline_access"));
        assert_eq!(scopes.contains(&"offline_access"), offline, "{oauth}");
    }
    // A domain not served here, and no address at all.
    let foreign = fetch(
        &env,
        "/mail/config-v1.1.xml?emailaddress=alice%40elsewhere.test",
    );
    assert_eq!(foreign.status, 404, "{}", foreign.body);
    let bad = fetch(&env, "/mail/config-v1.1.xml?emailaddress=%3Cscript%3E");
    assert_eq!(bad.status, 400, "{}", bad.body);
    let default = fetch(&env, "/.well-known/autoconfig/mail/config-v1.1.xml");
    assert_eq!(parse_xml(&default.body)["id"], "example.test");

    // RFC 9728: the resource is the origin the document is served from.
    let metadata = fetch(&env, "/.well-known/oauth-protected-resource");
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    assert_eq!(metadata.header("content-type"), Some("application/json"));
    let metadata = metadata.json();
    assert_eq!(metadata["resource"], env.url.as_str());
    assert_eq!(metadata["authorization_servers"], json!([env.url]));
    assert_eq!(metadata["scopes_supported"], json!([MAIL_SCOPE]));
    assert_eq!(metadata["bearer_methods_supported"], json!([]));
    assert_eq!(
        metadata["bearergate_mail_resources"],
        json!([
            "imap://localhost",
            "pop://localhost",
            "smtp://localhost",
            "sieve://localhost"
        ])
    );
    drop(proxy);
}

#[tokio::test]
async fn a_reload_rebuilds_the_documents_from_the_new_listeners() {
    let env = IssuerEnv::new("autoconfig-reload", IssuerOptions::default());
    let proxy = env.start();
    let path = "/mail/config-v1.1.xml?emailaddress=alice%40example.test";
    let before = parse_xml(&fetch(&env, path).body);
    assert_eq!(
        listed_servers(&before),
        expected_servers(&env.config().listeners)
    );

    let mut config = env.config().clone();
    let added = ListenerConfig::imap(TlsMode::Implicit);
    let added_port = added.listen.port();
    config.listeners.push(added);
    fs::write(&proxy.config_path, config.render()).expect("rewrite proxy.toml");
    signal("-HUP", proxy.pid());
    assert!(
        proxy.wait_for_log("configuration reloaded", LOG_WAIT),
        "no reload:\n{}",
        proxy.log()
    );
    let after = parse_xml(&fetch(&env, path).body);
    assert_eq!(listed_servers(&after), expected_servers(&config.listeners));
    assert!(
        after["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .any(|s| s["port"] == added_port),
        "{after}"
    );
}

// ---- the RFC 7628 error challenge on every protocol -----------------------------------------

/// Reads ManageSieve response lines up to and including the status line.
async fn sieve_response(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.read_line().await;
        let done = ["OK", "NO", "BYE"]
            .iter()
            .any(|status| line.starts_with(status));
        lines.push(line);
        if done {
            return lines;
        }
    }
}

fn decode_challenge(data: &str) -> Value {
    let json = b64_decode(data);
    serde_json::from_slice(&json)
        .unwrap_or_else(|e| panic!("challenge is not JSON ({e}): {json:?}"))
}

/// OAUTHBEARER with `token` on `protocol`'s listener; the error challenge and the final
/// reply.
async fn refused(env: &IssuerEnv, protocol: &str, token: &str) -> (Value, String) {
    let tls = env.env.certs.client_config();
    let response = oauthbearer_b64(USER, token);
    match protocol {
        "imap" => {
            let mut client = ImapClient::connect_tls(env.imap, tls).await;
            client.read_line().await;
            let outcome = client
                .authenticate("a", "OAUTHBEARER", &response, true)
                .await;
            let challenge = outcome.challenge.expect("an error challenge");
            (
                challenge,
                format!("{} {:?}", outcome.tagged.kind, outcome.tagged),
            )
        }
        "smtp" | "pop3" => {
            let addr = if protocol == "smtp" {
                env.smtp
            } else {
                env.pop3.expect("pop3")
            };
            let mut client = ImapClient::connect_tls(addr, tls).await;
            client.read_line().await;
            if protocol == "smtp" {
                client.send(b"EHLO client.example\r\n").await;
                while !client.read_line().await.starts_with("250 ") {}
            }
            client
                .send(format!("AUTH OAUTHBEARER {response}\r\n").as_bytes())
                .await;
            let line = client.read_line().await;
            let data = line
                .strip_prefix("334 ")
                .or_else(|| line.strip_prefix("+ "))
                .unwrap_or_else(|| panic!("{protocol}: no challenge: {line:?}"));
            let challenge = decode_challenge(data);
            client.send(b"AQ==\r\n").await;
            (challenge, client.read_line().await)
        }
        "sieve" => {
            let mut client = ImapClient::connect_plain(env.sieve).await;
            sieve_response(&mut client).await;
            client.send(b"STARTTLS\r\n").await;
            sieve_response(&mut client).await;
            client.upgrade_tls(tls).await;
            sieve_response(&mut client).await;
            client
                .send(format!("AUTHENTICATE \"OAUTHBEARER\" \"{response}\"\r\n").as_bytes())
                .await;
            let line = client.read_line().await;
            let data = match literal_size(&line) {
                Some(n) => {
                    let data = client.read_bytes(n).await;
                    client.read_line().await;
                    String::from_utf8(data).expect("base64")
                }
                None => line
                    .strip_prefix('"')
                    .and_then(|l| l.strip_suffix('"'))
                    .unwrap_or_else(|| panic!("sieve: no challenge: {line:?}"))
                    .to_owned(),
            };
            let challenge = decode_challenge(&data);
            client.send(b"\"AQ==\"\r\n").await;
            (challenge, client.read_line().await)
        }
        other => panic!("protocol {other}"),
    }
}

#[tokio::test]
async fn a_refused_token_is_pointed_at_the_built_in_issuer_on_every_protocol() {
    let options = IssuerOptions {
        pop3: true,
        ..IssuerOptions::default()
    };
    let env = IssuerEnv::new("autoconfig-challenge", options);
    let _proxy = env.start();
    let discovery_url = format!("{}/.well-known/openid-configuration", env.url);
    for (protocol, failure) in [
        ("imap", "NO"),
        ("smtp", "535 5.7.8 "),
        ("pop3", "-ERR [AUTH] "),
        ("sieve", "NO "),
    ] {
        let (challenge, done) = refused(&env, protocol, "not-a-token-of-anyone").await;
        assert_eq!(
            challenge["status"], "invalid_token",
            "{protocol}: {challenge}"
        );
        assert_eq!(challenge["scope"], MAIL_SCOPE, "{protocol}: {challenge}");
        assert_eq!(
            challenge["openid-configuration"],
            discovery_url.as_str(),
            "{protocol}: {challenge}"
        );
        assert!(done.starts_with(failure), "{protocol}: {done:?}");
    }
    // The URL the challenge names serves this issuer's discovery document.
    let discovery = fetch(&env, "/.well-known/openid-configuration");
    assert_eq!(discovery.status, 200);
    assert_eq!(discovery.json()["issuer"], env.url.as_str());
}
