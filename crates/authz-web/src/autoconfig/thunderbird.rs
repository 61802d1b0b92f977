//! Thunderbird's autoconfig XML (`config-v1.1.xml`; the format of
//! draft-ietf-mailmaint-autoconfig, which calls it version 1.2 and keeps 1.1 compatible).
//!
//! ```xml
//! <clientConfig version="1.1">
//!   <emailProvider id="example.com">
//!     <domain>example.com</domain>
//!     <displayName>example.com</displayName>
//!     <incomingServer type="imap">
//!       <hostname>mail.example.com</hostname> <port>993</port> <socketType>SSL</socketType>
//!       <authentication>OAuth2</authentication> <username>%EMAILLOCALPART%</username>
//!     </incomingServer>
//!     <outgoingServer type="smtp">…</outgoingServer>
//!   </emailProvider>
//!   <setupServer type="managesieve">…</setupServer>
//!   <oAuth2>
//!     <issuer>mail.example.com</issuer> <scope>urn:ietf:params:oauth:scope:mail …</scope>
//!     <authURL>https://…/auth/authorize</authURL> <tokenURL>https://…/auth/token</tokenURL>
//!   </oAuth2>
//! </clientConfig>
//! ```
//!
//! - Every advertised listener is a server section, the preferred first (clients take the
//!   first they can use): `socketType` `SSL` for implicit TLS, `STARTTLS` otherwise.
//! - `<authentication>OAuth2</authentication>` first; `password-cleartext` after it only
//!   where the listener takes passwords, so a client without OAuth for this provider still
//!   finds a method that works.
//! - `<oAuth2>` (a child of `clientConfig`, as in Thunderbird's ISPDB) names the issuer by
//!   its host (Thunderbird keys its OAuth providers by host name) and carries the
//!   endpoints from the issuer's RFC 8414 metadata and the mail scope (with
//!   `offline_access` when the issuer offers it, for a refresh token). No `clientID`: the
//!   client registers itself (RFC 7591), as the draft's OAuth2 requirements allow.
//! - `<username>` is a placeholder the client fills in, never what it sent.
//! - ManageSieve is a `setupServer` (a 1.2 addition; 1.1 readers skip it).

use serde_json::Value;

use super::{LoginName, MailProtocol, MailServer, MailTls};

/// The parts of the XML that do not depend on the domain asked about.
#[derive(Debug)]
pub(crate) struct Autoconfig {
    servers: Vec<MailServer>,
    login: LoginName,
    oauth: Option<OAuth2>,
}

/// The `<oAuth2>` block.
#[derive(Debug)]
struct OAuth2 {
    issuer: String,
    scope: String,
    auth_url: String,
    token_url: String,
}

impl Autoconfig {
    /// From the `advertised` servers and the issuer's RFC 8414 `metadata`; `None` when there
    /// is no server to name.
    pub(crate) fn new(
        issuer_host: &str,
        metadata: &Value,
        advertised: Vec<MailServer>,
        login: LoginName,
    ) -> Option<Self> {
        if advertised.is_empty() {
            return None;
        }
        let endpoint = |name: &str| metadata[name].as_str().map(str::to_owned);
        let offers = |scope: &str| {
            metadata["scopes_supported"]
                .as_array()
                .is_some_and(|scopes| scopes.iter().any(|offered| offered == scope))
        };
        let mut scope = authz::MAIL_SCOPE.to_owned();
        if offers("offline_access") {
            scope.push_str(" offline_access");
        }
        let oauth = match (
            endpoint("authorization_endpoint"),
            endpoint("token_endpoint"),
        ) {
            (Some(auth_url), Some(token_url)) => Some(OAuth2 {
                issuer: issuer_host.to_owned(),
                scope,
                auth_url,
                token_url,
            }),
            _ => None,
        };
        Some(Self {
            servers: advertised,
            login,
            oauth,
        })
    }

    /// The document for addresses at `primary` (the `emailProvider` id), listing `domains`.
    pub(crate) fn render(&self, primary: &str, domains: &[String]) -> String {
        let mut xml = Xml::default();
        xml.open("clientConfig", &[("version", "1.1")]);
        xml.open("emailProvider", &[("id", primary)]);
        for domain in domains {
            xml.element("domain", domain);
        }
        xml.element("displayName", primary);
        xml.element("displayShortName", primary);
        for server in &self.servers {
            match server.protocol {
                MailProtocol::Imap => self.server(&mut xml, "incomingServer", "imap", server),
                MailProtocol::Pop3 => self.server(&mut xml, "incomingServer", "pop3", server),
                MailProtocol::Smtp => self.server(&mut xml, "outgoingServer", "smtp", server),
                MailProtocol::Sieve => {}
            }
        }
        xml.close("emailProvider");
        for server in &self.servers {
            if server.protocol == MailProtocol::Sieve {
                self.server(&mut xml, "setupServer", "managesieve", server);
            }
        }
        if let Some(oauth) = &self.oauth {
            xml.open("oAuth2", &[]);
            xml.element("issuer", &oauth.issuer);
            xml.element("scope", &oauth.scope);
            xml.element("authURL", &oauth.auth_url);
            xml.element("tokenURL", &oauth.token_url);
            xml.close("oAuth2");
        }
        xml.close("clientConfig");
        xml.out
    }

    fn server(&self, xml: &mut Xml, section: &str, kind: &str, server: &MailServer) {
        let socket_type = match server.tls {
            MailTls::Implicit => "SSL",
            MailTls::Starttls => "STARTTLS",
            MailTls::None => return,
        };
        xml.open(section, &[("type", kind)]);
        xml.element("hostname", &server.hostname);
        xml.element("port", &server.port.to_string());
        xml.element("socketType", socket_type);
        xml.element("authentication", "OAuth2");
        if server.password {
            xml.element("authentication", "password-cleartext");
        }
        xml.element("username", self.login.placeholder());
        xml.close(section);
    }
}

/// A minimal XML writer: element and attribute names are ours (static), every value is
/// escaped.
struct Xml {
    out: String,
    depth: usize,
}

impl Default for Xml {
    fn default() -> Self {
        Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            depth: 0,
        }
    }
}

impl Xml {
    fn indent(&mut self) {
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str, attributes: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (attribute, value) in attributes {
            self.out.push(' ');
            self.out.push_str(attribute);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push_str(">\n");
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }

    fn element(&mut self, name: &str, text: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        escape_into(&mut self.out, text);
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
    }
}

/// Appends `text` as XML character data or an attribute value: the five special characters
/// as entities, and characters XML 1.0 forbids even as references (most C0 controls, lone
/// surrogates cannot occur in a `str`, U+FFFE/U+FFFF) as U+FFFD.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}' => {
                out.push(c)
            }
            _ => out.push('\u{FFFD}'),
        }
    }
}
