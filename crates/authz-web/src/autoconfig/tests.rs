//! The builders over known inputs, then the routes through the router.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use super::thunderbird::escape_into;
use super::*;

const ISSUER: &str = "https://auth.example.test:8443";

fn server(protocol: MailProtocol, hostname: &str, port: u16, tls: MailTls) -> MailServer {
    MailServer {
        protocol,
        hostname: hostname.to_owned(),
        port,
        tls,
        password: false,
    }
}

/// A deployment with something of everything: two IMAP listeners (STARTTLS first in the
/// configuration), a plaintext one, one listen port twice, POP3, submission, ManageSieve.
fn services() -> MailServices {
    MailServices {
        servers: vec![
            server(
                MailProtocol::Imap,
                "mail.example.test",
                143,
                MailTls::Starttls,
            ),
            server(
                MailProtocol::Smtp,
                "mail.example.test",
                465,
                MailTls::Implicit,
            ),
            server(
                MailProtocol::Imap,
                "mail.example.test",
                10_143,
                MailTls::None,
            ),
            server(
                MailProtocol::Imap,
                "mail.example.test",
                993,
                MailTls::Implicit,
            ),
            server(
                MailProtocol::Imap,
                "mail.example.test",
                993,
                MailTls::Implicit,
            ),
            server(
                MailProtocol::Sieve,
                "mail.example.test",
                4190,
                MailTls::Starttls,
            ),
            MailServer {
                password: true,
                ..server(
                    MailProtocol::Pop3,
                    "pop.example.test",
                    995,
                    MailTls::Implicit,
                )
            },
        ],
        domains: vec!["example.test".to_owned(), "example.org".to_owned()],
        login: LoginName::LocalPart,
    }
}

fn metadata() -> Value {
    json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/auth/authorize"),
        "token_endpoint": format!("{ISSUER}/auth/token"),
        "scopes_supported": ["openid", "offline_access", authz::MAIL_SCOPE],
    })
}

#[test]
fn plaintext_listeners_are_never_advertised_and_implicit_tls_comes_first() {
    let advertised = services().advertised();
    let seen: Vec<(MailProtocol, u16)> = advertised.iter().map(|s| (s.protocol, s.port)).collect();
    assert_eq!(
        seen,
        [
            (MailProtocol::Imap, 993),
            (MailProtocol::Imap, 143),
            (MailProtocol::Pop3, 995),
            (MailProtocol::Smtp, 465),
            (MailProtocol::Sieve, 4190),
        ]
    );
    // Only plaintext: nothing at all.
    let plain = MailServices {
        servers: vec![server(
            MailProtocol::Imap,
            "mail.example.test",
            143,
            MailTls::None,
        )],
        ..MailServices::default()
    };
    assert!(plain.advertised().is_empty());
    assert!(pacc::document(ISSUER, "example.test", &plain.advertised()).is_none());
    assert!(
        thunderbird::Autoconfig::new("h", &metadata(), plain.advertised(), LoginName::Address)
            .is_none()
    );
}

#[test]
fn listeners_without_a_host_name_are_left_out() {
    let mail = MailServices {
        servers: vec![
            server(
                MailProtocol::Imap,
                "mail example<test>",
                993,
                MailTls::Implicit,
            ),
            server(MailProtocol::Imap, "", 994, MailTls::Implicit),
            server(MailProtocol::Imap, "192.0.2.7", 995, MailTls::Implicit),
            server(MailProtocol::Imap, "2001:db8::1", 996, MailTls::Implicit),
        ],
        ..MailServices::default()
    };
    let ports: Vec<u16> = mail.advertised().iter().map(|s| s.port).collect();
    assert_eq!(ports, [995, 996]);
    assert_eq!(mail.unusable().count(), 2);
}

#[test]
fn pacc_names_one_server_per_protocol_and_the_issuer() {
    let document = pacc::document(ISSUER, "example.test", &services().advertised()).unwrap();
    assert_eq!(
        document,
        json!({
            "protocols": {
                "imap": {"host": "mail.example.test", "port": 993, "tls": "implicit"},
                "pop3": {"host": "pop.example.test", "port": 995, "tls": "implicit"},
                "smtp": {"host": "mail.example.test", "port": 465, "tls": "implicit"},
                "managesieve": {"host": "mail.example.test", "port": 4190, "tls": "starttls"},
            },
            "authentication": {"oauth-public": {"issuer": ISSUER}, "password": true},
            "info": {"provider": {"name": "example.test"}},
        })
    );
}

#[test]
fn pacc_digest_is_base64_sha256_of_the_bytes() {
    // SHA-256("abc"), FIPS 180-2 appendix B.1.
    assert_eq!(
        pacc::dns_record(b"abc"),
        "v=UAAC1; a=sha256; d=ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    );
}

#[test]
fn protected_resource_metadata_is_the_issuers_origin_with_the_mail_resources() {
    let document = resource::document(
        ISSUER,
        &metadata(),
        "example.test",
        &services().advertised(),
    );
    assert_eq!(document["resource"], ISSUER);
    assert_eq!(document["authorization_servers"], json!([ISSUER]));
    assert_eq!(document["scopes_supported"], json!([authz::MAIL_SCOPE]));
    assert_eq!(document["bearer_methods_supported"], json!([]));
    assert_eq!(
        document["bearergate_mail_resources"],
        json!([
            "imap://mail.example.test",
            "pop://pop.example.test",
            "smtp://mail.example.test",
            "sieve://mail.example.test",
        ])
    );
    assert_eq!(
        document["resource_name"],
        "Mail at example.test (IMAP, POP3, SMTP submission, ManageSieve)"
    );
}

#[test]
fn xml_lists_every_advertised_server_with_oauth2_first() {
    let autoconfig = thunderbird::Autoconfig::new(
        "auth.example.test",
        &metadata(),
        services().advertised(),
        LoginName::LocalPart,
    )
    .unwrap();
    let xml = autoconfig.render(
        "example.org",
        &["example.test".into(), "example.org".into()],
    );
    let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.org">
    <domain>example.test</domain>
    <domain>example.org</domain>
    <displayName>example.org</displayName>
    <displayShortName>example.org</displayShortName>
    <incomingServer type="imap">
      <hostname>mail.example.test</hostname>
      <port>993</port>
      <socketType>SSL</socketType>
      <authentication>OAuth2</authentication>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>mail.example.test</hostname>
      <port>143</port>
      <socketType>STARTTLS</socketType>
      <authentication>OAuth2</authentication>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <incomingServer type="pop3">
      <hostname>pop.example.test</hostname>
      <port>995</port>
      <socketType>SSL</socketType>
      <authentication>OAuth2</authentication>
      <authentication>password-cleartext</authentication>
      <username>%EMAILLOCALPART%</username>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>mail.example.test</hostname>
      <port>465</port>
      <socketType>SSL</socketType>
      <authentication>OAuth2</authentication>
      <username>%EMAILLOCALPART%</username>
    </outgoingServer>
  </emailProvider>
  <setupServer type="managesieve">
    <hostname>mail.example.test</hostname>
    <port>4190</port>
    <socketType>STARTTLS</socketType>
    <authentication>OAuth2</authentication>
    <username>%EMAILLOCALPART%</username>
  </setupServer>
  <oAuth2>
    <issuer>auth.example.test</issuer>
    <scope>urn:ietf:params:oauth:scope:mail offline_access</scope>
    <authURL>https://auth.example.test:8443/auth/authorize</authURL>
    <tokenURL>https://auth.example.test:8443/auth/token</tokenURL>
  </oAuth2>
</clientConfig>
"#;
    assert_eq!(xml, expected);
}

#[test]
fn xml_logins_are_addresses_when_the_mail_server_logs_in_by_address() {
    let autoconfig = thunderbird::Autoconfig::new(
        "auth.example.test",
        &json!({}),
        services().advertised(),
        LoginName::Address,
    )
    .unwrap();
    let xml = autoconfig.render("example.test", &["example.test".into()]);
    assert!(xml.contains("<username>%EMAILADDRESS%</username>"));
    assert!(!xml.contains("EMAILLOCALPART"));
    // No endpoints in the metadata: no <oAuth2> block rather than an empty one.
    assert!(!xml.contains("oAuth2"));
}

#[test]
fn xml_values_are_escaped() {
    let mut out = String::new();
    escape_into(&mut out, "a&b<c>d\"e'f\u{0}g\u{1b}h\u{fffe}i\tj\u{1F600}");
    assert_eq!(
        out,
        "a&amp;b&lt;c&gt;d&quot;e&apos;f\u{fffd}g\u{fffd}h\u{fffd}i\tj\u{1F600}"
    );
    let autoconfig = thunderbird::Autoconfig::new(
        "h",
        &metadata(),
        vec![server(MailProtocol::Imap, "h", 993, MailTls::Implicit)],
        LoginName::Address,
    )
    .unwrap();
    let xml = autoconfig.render("x\"><evil/>", &["x&y".into()]);
    assert!(
        xml.contains("<emailProvider id=\"x&quot;&gt;&lt;evil/&gt;\">"),
        "{xml}"
    );
    assert!(xml.contains("<domain>x&amp;y</domain>"), "{xml}");
    assert!(!xml.contains("<evil/>"));
}

#[test]
fn addresses_are_bounded_and_checked() {
    assert_eq!(
        address_domain("Alice@Example.TEST").as_deref(),
        Some("example.test")
    );
    assert_eq!(
        address_domain("\"odd@local\"@example.test").as_deref(),
        Some("example.test")
    );
    let long_local = format!("{}@example.test", "a".repeat(65));
    let long_address = format!("a@{}.test", vec!["b".repeat(60); 5].join("."));
    for bad in [
        "",
        "alice",
        "@example.test",
        "alice@",
        "alice@example.test.",
        "ali ce@example.test",
        "alice\n@example.test",
        "alice@exa mple.test",
        "alice@example.test>",
        "alice@bücher.example",
        long_local.as_str(),
        long_address.as_str(),
    ] {
        assert_eq!(address_domain(bad), None, "{bad:?}");
    }
}

#[test]
fn the_emailaddress_parameter_is_read_once() {
    assert_eq!(asked_domain(None).unwrap(), None);
    assert_eq!(asked_domain(Some("other=1")).unwrap(), None);
    assert_eq!(
        asked_domain(Some("emailaddress=alice%40Example.test&x=1"))
            .unwrap()
            .as_deref(),
        Some("example.test")
    );
    let twice = asked_domain(Some("emailaddress=a%40b.test&emailaddress=c%40d.test"));
    assert_eq!(twice.unwrap_err().0, StatusCode::BAD_REQUEST);
    let long = format!("emailaddress=a%40b.test&pad={}", "x".repeat(MAX_QUERY));
    assert_eq!(
        asked_domain(Some(&long)).unwrap_err().0,
        StatusCode::URI_TOO_LONG
    );
    assert_eq!(
        asked_domain(Some("emailaddress=nobody")).unwrap_err().0,
        StatusCode::BAD_REQUEST
    );
}

// ---- through the router ------------------------------------------------------------------

struct NoPasswords;

impl crate::PasswordCheck for NoPasswords {
    fn check<'a>(
        &'a self,
        _user: &'a str,
        _password: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, String>> + Send + 'a>>
    {
        Box::pin(async { Ok(false) })
    }
}

fn router(mail: MailServices) -> axum::Router {
    let settings: authz::Settings = serde_json::from_value(json!({
        "public_url": ISSUER,
        "listen": "127.0.0.1:8443",
        "state_dir": "/nonexistent",
    }))
    .unwrap();
    let store = authz::store::SqliteStore::open_in_memory().unwrap();
    let server = Arc::new(authz::AuthServer::new(settings, Arc::new(store)).unwrap());
    crate::router(crate::WebConfig {
        server,
        passwords: Arc::new(NoPasswords),
        normalise_user: Arc::new(|typed: &str| typed.to_owned()),
        templates_dir: None,
        secure_cookies: true,
        signin_limits: authz::signin::SignInLimits::default(),
        mail,
    })
    .unwrap()
}

async fn get(router: &axum::Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, String) {
    let response = router
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn routes_serve_the_documents_cacheable_with_the_security_headers() {
    let router = router(services());
    let (status, headers, pacc) = get(&router, PACC_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let document: Value = serde_json::from_str(&pacc).unwrap();
    assert_eq!(document["authentication"]["oauth-public"]["issuer"], ISSUER);
    // Both names, the same bytes (the DNS digest covers either).
    assert_eq!(get(&router, PACC_LEGACY_PATH).await.2, pacc);

    let (status, headers, body) = get(&router, PROTECTED_RESOURCE_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    let document: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["resource"], ISSUER);

    let (status, headers, xml) = get(
        &router,
        &format!("{AUTOCONFIG_PATH}?emailaddress=alice%40example.org"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{xml}");
    assert_eq!(headers[header::CONTENT_TYPE], "text/xml; charset=utf-8");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    assert!(xml.contains("<emailProvider id=\"example.org\">"), "{xml}");
    assert!(xml.contains(&format!("<authURL>{ISSUER}/auth/authorize</authURL>")));
    // Without an address: the first mail domain.
    let (status, _, xml) = get(&router, AUTOCONFIG_WELL_KNOWN_PATH).await;
    assert_eq!(status, StatusCode::OK);
    assert!(xml.contains("<emailProvider id=\"example.test\">"), "{xml}");
    // A domain not served here.
    let (status, _, _) = get(
        &router,
        &format!("{AUTOCONFIG_PATH}?emailaddress=alice%40elsewhere.test"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = get(&router, &format!("{AUTOCONFIG_PATH}?emailaddress=%3Cx%3E")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn without_mail_domains_the_asked_domain_is_answered() {
    let router = router(MailServices {
        domains: Vec::new(),
        ..services()
    });
    let (status, _, xml) = get(
        &router,
        &format!("{AUTOCONFIG_WELL_KNOWN_PATH}?emailaddress=bob%40anywhere.test"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(xml.contains("<domain>anywhere.test</domain>"), "{xml}");
    let (status, _, _) = get(&router, AUTOCONFIG_PATH).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn nothing_to_advertise_is_not_found() {
    let router = router(MailServices::default());
    assert_eq!(get(&router, PACC_PATH).await.0, StatusCode::NOT_FOUND);
    let uri = format!("{AUTOCONFIG_PATH}?emailaddress=a%40b.test");
    assert_eq!(get(&router, &uri).await.0, StatusCode::NOT_FOUND);
    // The resource metadata still names the issuer.
    assert_eq!(
        get(&router, PROTECTED_RESOURCE_PATH).await.0,
        StatusCode::OK
    );
}
