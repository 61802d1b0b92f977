//! The PACC document: draft-ietf-mailmaint-pacc-02 ("Automatic Configuration of Email,
//! Calendar, and Contact Server Settings", §4; the format is unchanged through -04).
//!
//! ```json
//! {"authentication": {"oauth-public": {"issuer": "https://mail.example.com"},
//!                     "password": false},
//!  "info": {"provider": {"name": "example.com"}},
//!  "protocols": {"imap": {"host": "mail.example.com", "port": 993, "tls": "implicit"},
//!                "smtp": {"host": "mail.example.com", "port": 465, "tls": "implicit"}}}
//! ```
//!
//! - `protocols` holds one server per protocol (`imap`, `pop3`, `smtp`, `managesieve`), the
//!   preferred one: implicit TLS before STARTTLS.
//! - The draft's text protocols have only `host`: a client connects with implicit TLS to the
//!   protocol's registered port (993, 995, 465). `port` and `tls` are **not in the draft**:
//!   they say what bearergate really listens on where the draft cannot express it (another
//!   port, STARTTLS). A client that follows the draft to the letter
//!   ignores them (unknown members are ignored, §4) and, where they differ from its
//!   assumption, fails to connect rather than connecting in clear.
//! - `authentication.oauth-public.issuer` is the issuer identifier, exactly as in its
//!   metadata: the client discovers everything else from it (RFC 8414) and registers itself
//!   (draft-ietf-mailmaint-oauth-public). `password` says whether an advertised listener
//!   also takes passwords.
//! - The draft publishes the document at
//!   `https://ua-auto-config.<domain>/.well-known/user-agent-configuration.json` beside a
//!   DNS record `_ua-auto-config.<domain> TXT "v=UAAC1; a=sha256; d=<base64 SHA-256 of the
//!   body>"` that the client checks the bytes against ([`dns_record`]).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{MailProtocol, MailServer, MailTls};

/// The document for `issuer` and the `advertised` servers ([`super::MailServices::advertised`],
/// already sorted by preference); `None` when there is no server to name.
pub(crate) fn document(issuer: &str, provider: &str, advertised: &[MailServer]) -> Option<Value> {
    let mut protocols = Map::new();
    let mut password = false;
    for server in advertised {
        let key = protocol_key(server.protocol);
        if protocols.contains_key(key) {
            continue;
        }
        let tls = match server.tls {
            MailTls::Implicit => "implicit",
            MailTls::Starttls => "starttls",
            MailTls::None => continue,
        };
        password |= server.password;
        protocols.insert(
            key.to_owned(),
            json!({ "host": server.hostname, "port": server.port, "tls": tls }),
        );
    }
    if protocols.is_empty() {
        return None;
    }
    Some(json!({
        "protocols": protocols,
        "authentication": {
            "oauth-public": { "issuer": issuer },
            "password": password,
        },
        "info": { "provider": { "name": provider } },
    }))
}

/// The member of `protocols` a protocol goes under.
fn protocol_key(protocol: MailProtocol) -> &'static str {
    match protocol {
        MailProtocol::Imap => "imap",
        MailProtocol::Pop3 => "pop3",
        MailProtocol::Smtp => "smtp",
        MailProtocol::Sieve => "managesieve",
    }
}

/// The `_ua-auto-config` TXT record's value for a document of exactly these bytes.
pub(crate) fn dns_record(body: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, body);
    format!("v=UAAC1; a=sha256; d={}", STANDARD.encode(digest.as_ref()))
}
