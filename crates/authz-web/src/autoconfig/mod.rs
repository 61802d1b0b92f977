//! Autoconfiguration and discovery from the mail side: how a mail client that knows only an
//! address finds bearergate's servers and its authorization server.
//!
//! Three documents, built from the listeners bearergate really has (never hand-maintained):
//! - **PACC** ([`pacc`], draft-ietf-mailmaint-pacc-02): servers per protocol and the OAuth
//!   issuer, at `/.well-known/user-agent-configuration.json` (the draft's name) and
//!   `/.well-known/pacc.json` (the name used before the draft settled), same bytes;
//! - **Thunderbird autoconfig** ([`thunderbird`], `config-v1.1.xml`): servers with
//!   `<authentication>OAuth2</authentication>` and an `<oAuth2>` block, at
//!   `/.well-known/autoconfig/mail/config-v1.1.xml` and `/mail/config-v1.1.xml`;
//! - **RFC 9728 protected-resource metadata** ([`resource`]) at
//!   `/.well-known/oauth-protected-resource`.
//!
//! The builders are plain functions over [`MailServices`] and the issuer's metadata; the
//! handlers only pick the document and set the headers. The documents do not depend on the
//! request (the XML only on the domain asked about), so they are built once with the router
//! and rebuilt with it on reload.
//!
//! **Which listeners are advertised.** Only those with TLS (implicit or STARTTLS), implicit
//! first. A `tls = "none"` listener is never advertised, even when a protocol has nothing
//! else and even with `allow_plaintext_auth`: it exists for loopback tests and trusted
//! networks, and a client told about it would send its bearer token in clear. A client that
//! finds no server for a protocol falls back to manual set-up, which is the safe failure.
//! A listener whose `hostname` is not a host name (or an IP address) is left out too, with a
//! warning: clients would refuse the document or connect somewhere else.

pub(crate) mod pacc;
pub(crate) mod resource;
pub(crate) mod thunderbird;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::headers::CACHE_PUBLIC;

/// PACC under the name draft-ietf-mailmaint-pacc-02 gives it (on `ua-auto-config.<domain>`).
pub const PACC_PATH: &str = "/.well-known/user-agent-configuration.json";
/// PACC under its earlier name, which clients and guides written before the draft settled
/// ask for.
pub const PACC_LEGACY_PATH: &str = "/.well-known/pacc.json";
/// Thunderbird's well-known autoconfig URL (fetched at `https://<domain>/…`).
pub const AUTOCONFIG_WELL_KNOWN_PATH: &str = "/.well-known/autoconfig/mail/config-v1.1.xml";
/// Thunderbird's autoconfig URL on `autoconfig.<domain>`, with `?emailaddress=`.
pub const AUTOCONFIG_PATH: &str = "/mail/config-v1.1.xml";
/// RFC 9728 protected-resource metadata.
pub const PROTECTED_RESOURCE_PATH: &str = "/.well-known/oauth-protected-resource";

/// The longest query string the XML endpoints read: an address is at most 254 octets
/// (RFC 5321 §4.5.3.1.3), at most three times that percent-encoded, plus room for the
/// parameters clients add.
const MAX_QUERY: usize = 2_048;
/// The longest address accepted (RFC 5321 §4.5.3.1.3: a 256-octet path, less the brackets).
const MAX_ADDRESS: usize = 254;
/// The longest local part (RFC 5321 §4.5.3.1.1).
const MAX_LOCAL_PART: usize = 64;

/// A mail protocol bearergate proxies, in the order the documents list them (reading before
/// sending, then filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MailProtocol {
    /// IMAP.
    Imap,
    /// POP3.
    Pop3,
    /// SMTP submission.
    Smtp,
    /// ManageSieve.
    Sieve,
}

impl MailProtocol {
    /// The URI scheme of the protocol's RFC 8707 resource identifier, one of
    /// [`authz::resource::MAIL_SCHEMES`] (`imap`, RFC 5092; `pop`, RFC 2384; `sieve`, RFC 5804;
    /// `smtp` for submission).
    pub fn resource_scheme(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Pop3 => "pop",
            Self::Smtp => "smtp",
            Self::Sieve => "sieve",
        }
    }

    /// How people call it.
    fn label(self) -> &'static str {
        match self {
            Self::Imap => "IMAP",
            Self::Pop3 => "POP3",
            Self::Smtp => "SMTP submission",
            Self::Sieve => "ManageSieve",
        }
    }
}

/// A listener's TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailTls {
    /// TLS from the first byte.
    Implicit,
    /// Plaintext greeting, then STARTTLS (STLS for POP3).
    Starttls,
    /// No TLS at all: never advertised.
    None,
}

impl MailTls {
    /// Preference among a protocol's listeners: implicit TLS first (RFC 8314 §3), then
    /// STARTTLS.
    fn rank(self) -> u8 {
        match self {
            Self::Implicit => 0,
            Self::Starttls => 1,
            Self::None => 2,
        }
    }
}

/// One listener, as clients are to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MailServer {
    /// What it speaks.
    pub protocol: MailProtocol,
    /// The host name clients connect to (the name its certificate carries).
    pub hostname: String,
    /// The port clients connect to.
    pub port: u16,
    /// Its TLS.
    pub tls: MailTls,
    /// Whether it also takes passwords (the listener's password fallback).
    pub password: bool,
}

impl MailServer {
    /// Its RFC 8707 resource identifier, `{scheme}://{hostname}` (`imap://mail.example.com`),
    /// written by [`authz::resource::MailResource::uri`]: the form the issuer accepts in
    /// `resource` parameters and puts in a token's `aud`.
    pub fn resource(&self) -> String {
        authz::resource::MailResource {
            scheme: self.protocol.resource_scheme().to_owned(),
            host: self.hostname.clone(),
            port: self.port,
        }
        .uri()
    }
}

/// How a user's mail login relates to the address a client starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoginName {
    /// The part before `@` (`%EMAILLOCALPART%`): the mail server logs in by bare name.
    #[default]
    LocalPart,
    /// The whole address (`%EMAILADDRESS%`): the mail server logs in by address.
    Address,
}

impl LoginName {
    /// The autoconfig placeholder a client replaces with its user's value.
    fn placeholder(self) -> &'static str {
        match self {
            Self::LocalPart => "%EMAILLOCALPART%",
            Self::Address => "%EMAILADDRESS%",
        }
    }
}

/// What the autoconfiguration documents describe: the mail side of this bearergate.
#[derive(Debug, Clone, Default)]
pub struct MailServices {
    /// Every listener, in configuration order, plaintext ones included: which are advertised
    /// is decided here ([`MailServices::advertised`]).
    pub servers: Vec<MailServer>,
    /// The mail domains answered for (lower case); empty: whatever domain a client asks
    /// about.
    pub domains: Vec<String>,
    /// How logins relate to addresses.
    pub login: LoginName,
}

impl MailServices {
    /// The servers to tell clients about: with TLS and a usable host name, sorted by
    /// protocol and then implicit TLS first (configuration order otherwise), duplicates (two
    /// listen addresses behind one port) once.
    pub fn advertised(&self) -> Vec<MailServer> {
        let mut servers: Vec<MailServer> = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            if server.tls == MailTls::None || !usable_host(&server.hostname) {
                continue;
            }
            let duplicate = servers.iter().any(|seen| {
                seen.protocol == server.protocol
                    && seen.hostname == server.hostname
                    && seen.port == server.port
                    && seen.tls == server.tls
            });
            if !duplicate {
                servers.push(server.clone());
            }
        }
        servers.sort_by_key(|server| (server.protocol, server.tls.rank()));
        servers
    }

    /// Listeners left out because their `hostname` is not a host name.
    fn unusable(&self) -> impl Iterator<Item = &MailServer> {
        self.servers
            .iter()
            .filter(|server| server.tls != MailTls::None && !usable_host(&server.hostname))
    }

    /// The provider's name in the documents: the first mail domain, else the issuer's host.
    fn provider_name(&self, issuer_host: &str) -> String {
        self.domains
            .first()
            .cloned()
            .unwrap_or_else(|| issuer_host.to_owned())
    }
}

/// A host name a client can connect to: a DNS name, or an IP address.
fn usable_host(host: &str) -> bool {
    authz::settings::is_domain_name(host) || host.parse::<IpAddr>().is_ok()
}

/// The documents, built once with the router.
#[derive(Debug)]
pub(crate) struct Documents {
    /// The PACC document's exact bytes (`None`: no server to advertise).
    pacc: Option<Vec<u8>>,
    /// The RFC 9728 document's bytes.
    protected_resource: Vec<u8>,
    /// What the XML is made from (`None`: no server to advertise).
    thunderbird: Option<thunderbird::Autoconfig>,
    /// `mail_domains`.
    domains: Vec<String>,
}

impl Documents {
    /// Builds the documents for `issuer` from its RFC 8414 `metadata` and `mail`.
    pub(crate) fn new(issuer: &str, metadata: &serde_json::Value, mail: &MailServices) -> Self {
        for server in mail.unusable() {
            tracing::warn!(
                protocol = server.protocol.label(),
                hostname = %server.hostname,
                "autoconfig: a listener's hostname is not a host name; it is not advertised"
            );
        }
        let issuer_host = url::Url::parse(issuer)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default();
        let advertised = mail.advertised();
        let provider = mail.provider_name(&issuer_host);
        let pacc = pacc::document(issuer, &provider, &advertised).map(|document| {
            // serde_json's maps are sorted: the same configuration gives the same bytes, so
            // the digest published in DNS stays right until the configuration changes.
            let bytes = serde_json::to_vec(&document).unwrap_or_default();
            tracing::info!(
                record = %format!("_ua-auto-config IN TXT \"{}\"", pacc::dns_record(&bytes)),
                "autoconfig: PACC document ready; its digest for DNS"
            );
            bytes
        });
        let protected_resource = serde_json::to_vec(&resource::document(
            issuer,
            metadata,
            &provider,
            &advertised,
        ))
        .unwrap_or_default();
        let thunderbird =
            thunderbird::Autoconfig::new(&issuer_host, metadata, advertised, mail.login);
        Self {
            pacc,
            protected_resource,
            thunderbird,
            domains: mail.domains.clone(),
        }
    }
}

/// `GET` the PACC document.
pub(crate) async fn pacc(State(app): State<Arc<App>>) -> Response {
    match &app.autoconfig.pacc {
        Some(bytes) => public(CONTENT_JSON, bytes.clone()),
        None => refusal(StatusCode::NOT_FOUND, "no mail server to advertise"),
    }
}

/// `GET` the RFC 9728 protected-resource metadata.
pub(crate) async fn protected_resource(State(app): State<Arc<App>>) -> Response {
    public(CONTENT_JSON, app.autoconfig.protected_resource.clone())
}

/// `GET` Thunderbird's autoconfig XML, for the domain of `?emailaddress=` or the configured
/// mail domains.
pub(crate) async fn thunderbird(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(autoconfig) = &app.autoconfig.thunderbird else {
        return refusal(StatusCode::NOT_FOUND, "no mail server to advertise");
    };
    let asked = match asked_domain(query.as_deref()) {
        Ok(asked) => asked,
        Err((status, text)) => return refusal(status, text),
    };
    let domains = &app.autoconfig.domains;
    let (primary, listed) = match (asked, domains.first()) {
        (Some(asked), Some(_)) if !domains.contains(&asked) => {
            return refusal(StatusCode::NOT_FOUND, "not a mail domain served here");
        }
        (Some(asked), Some(_)) => (asked, domains.clone()),
        (Some(asked), None) => (asked.clone(), vec![asked]),
        (None, Some(first)) => (first.clone(), domains.clone()),
        (None, None) => {
            return refusal(
                StatusCode::BAD_REQUEST,
                "emailaddress is required: this server has no mail_domains configured",
            )
        }
    };
    public(
        CONTENT_XML,
        autoconfig.render(&primary, &listed).into_bytes(),
    )
}

const CONTENT_JSON: &str = "application/json";
/// The autoconfig draft's media type (draft-ietf-mailmaint-autoconfig §3: `text/xml`).
const CONTENT_XML: &str = "text/xml; charset=utf-8";

/// A public document: cacheable for a few minutes (it changes only with the configuration)
/// and readable by web clients on other origins (it carries nothing but what DNS and the
/// listeners already say, and no credentials are involved).
fn public(content_type: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(CACHE_PUBLIC),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body,
    )
        .into_response()
}

fn refusal(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// Why a request for the XML is refused: the status and the text shown.
type Refusal = (StatusCode, &'static str);

/// The domain of the `emailaddress` parameter, lower-cased, when there is one; a bad or
/// repeated one is `400`, an oversized query `414`.
fn asked_domain(query: Option<&str>) -> Result<Option<String>, Refusal> {
    let Some(query) = query else {
        return Ok(None);
    };
    if query.len() > MAX_QUERY {
        return Err((StatusCode::URI_TOO_LONG, "query too long"));
    }
    let mut found = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name != "emailaddress" {
            continue;
        }
        if found.is_some() {
            return Err((StatusCode::BAD_REQUEST, "emailaddress given more than once"));
        }
        found = Some(value.into_owned());
    }
    match found {
        None => Ok(None),
        Some(address) => address_domain(&address)
            .map(Some)
            .ok_or((StatusCode::BAD_REQUEST, "emailaddress is not an address")),
    }
}

/// The domain of `address` (lower case) when it is an address this server could serve:
/// `local@domain`, at most 254 octets, a local part of 1–64 octets without spaces or
/// controls, and a host name as domain (IDNs in A-label form). The local part is checked but
/// never used: the documents carry placeholders, not what the client sent.
fn address_domain(address: &str) -> Option<String> {
    if address.len() > MAX_ADDRESS {
        return None;
    }
    let (local, domain) = address.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= MAX_LOCAL_PART
        && !local.chars().any(|c| c.is_control() || c.is_whitespace());
    let domain = domain.to_ascii_lowercase();
    (local_ok && authz::settings::is_domain_name(&domain)).then_some(domain)
}

#[cfg(test)]
mod tests;
