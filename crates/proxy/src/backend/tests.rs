//! The backend side's own tests: master identities, the error mapping the driver relies
//! on, and the drive loop against a fake backend on a local port. The conversations are
//! tested in `session::backend`'s transcripts.

use super::*;

fn backend(format: &str) -> Backend {
    Backend {
        name: "imap".into(),
        address: "127.0.0.1:143".into(),
        tls_mode: BackendTls::None,
        tls: None,
        login: LoginStrategy::Master,
        master_user: "proxymaster".into(),
        master_password: SecretString::from("secret"),
        master_user_format: format.into(),
        connect_timeout: Duration::from_secs(1),
        login_timeout: Duration::from_secs(1),
        forward_client_address: true,
        send_proxy_protocol: false,
        learned: std::sync::Mutex::new(Learned::default()),
    }
}

#[test]
fn master_identities_are_recognised_in_any_form() {
    let dovecot = backend("{user}*{master}");
    for name in [
        "proxymaster",
        "ProxyMaster",
        " proxymaster ",
        "alice*proxymaster",
        "bob*PROXYMASTER",
        "alice*proxymaster@example.com",
        "proxymaster@example.com",
        "proxymaster/alice",
        "alice%proxymaster",
    ] {
        assert!(dovecot.is_master_identity(name), "{name}");
    }
    for name in [
        "alice",
        "proxymaster2",
        "xproxymaster",
        "proxymaster.bob",
        "alice*proxy",
        "alice@example.com",
    ] {
        assert!(!dovecot.is_master_identity(name), "{name}");
    }
}

#[test]
fn master_login_names_follow_the_format() {
    assert_eq!(
        backend("{user}*{master}").master_login_name("alice"),
        "alice*proxymaster"
    );
    assert_eq!(
        backend("{master}/{user}").master_login_name("bob"),
        "proxymaster/bob"
    );
}

#[test]
fn login_failures_keep_their_meaning_for_the_driver() {
    let challenge = Some(b"{}".to_vec());
    assert!(matches!(
        BackendError::from(LoginError::TokenRefused { challenge }),
        BackendError::TokenRefused { challenge: Some(c) } if c == b"{}"
    ));
    assert!(matches!(
        BackendError::from(LoginError::PasswordRefused),
        BackendError::PasswordRefused
    ));
    let stage = machine::Stage::Login;
    let refused = BackendError::from(LoginError::Refused {
        stage,
        reply: "bg3 NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
    });
    assert!(matches!(refused, BackendError::Login(_)));
    assert_eq!(refused.fault(), Fault::Configuration);
    assert!(refused.to_string().contains("AUTHENTICATIONFAILED"));
    let unavailable = BackendError::from(LoginError::Unavailable {
        stage,
        reply: "454 4.7.0".into(),
    });
    assert_eq!(unavailable.fault(), Fault::Backend);
    assert_eq!(BackendError::Timeout.fault(), Fault::Backend);
    assert_eq!(BackendError::PasswordRefused.fault(), Fault::Client);
}

/// A backend on a local port that plays `script`: `Ok(bytes)` is sent, `Err(prefix)` is a
/// line the proxy must send (checked by prefix). Then it closes. Await the handle to see
/// its checks.
async fn fake_backend(
    script: Vec<Result<&'static str, &'static str>>,
) -> (String, tokio::task::JoinHandle<()>) {
    let (address, handle) = fake_backend_after_header(0, script).await;
    let handle = tokio::spawn(async move {
        handle.await.expect("the fake backend's checks");
    });
    (address, handle)
}

/// Like [`fake_backend`], reading exactly `header` octets first (a PROXY header), which the
/// handle returns.
async fn fake_backend_after_header(
    header: usize,
    script: Vec<Result<&'static str, &'static str>>,
) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let handle = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut received = vec![0; header];
        tcp.read_exact(&mut received).await.expect("the header");
        let mut tcp = BufReader::new(tcp);
        for step in script {
            match step {
                Ok(bytes) => tcp
                    .get_mut()
                    .write_all(bytes.as_bytes())
                    .await
                    .expect("write"),
                Err(prefix) => {
                    let mut line = String::new();
                    tcp.read_line(&mut line).await.expect("read");
                    assert!(line.starts_with(prefix), "{line:?} is not {prefix:?}");
                }
            }
        }
        received
    });
    (address, handle)
}

fn at(address: String, tls_mode: BackendTls) -> Backend {
    Backend {
        address,
        tls_mode,
        ..backend("{user}*{master}")
    }
}

fn token() -> BearerCredentials {
    BearerCredentials {
        mechanism: sasl::Mechanism::OAuthBearer,
        authzid: None,
        token: "tok".into(),
        host: None,
        port: None,
    }
}

fn request<'a>(credentials: &'a BearerCredentials) -> LoginRequest<'a> {
    LoginRequest {
        user: "alice",
        credentials,
        client: "192.0.2.7:51234".parse().expect("address"),
        destination: "198.51.100.1:993".parse().expect("address"),
        client_name: None,
        session_id: "s1",
    }
}

#[tokio::test]
async fn an_imap_login_hands_over_the_connection_and_what_followed_the_ok() {
    let (address, fake) = fake_backend(vec![
        Ok("* OK [CAPABILITY IMAP4rev1 ID] ready\r\n"),
        Err("bg2 ID (\"x-originating-ip\" \"192.0.2.7\""),
        Ok("bg2 OK\r\n"),
        Err("bg3 LOGIN \"alice*proxymaster\" secret"),
        Ok("bg3 OK [CAPABILITY IMAP4rev1 IDLE UNAUTHENTICATE] Logged in\r\n* 1 EXISTS\r\n"),
    ])
    .await;
    let backend = at(address, BackendTls::None);
    let credentials = token();
    let mut logged_in = login(Protocol::Imap, &backend, request(&credentials))
        .await
        .expect("logged in");
    assert_eq!(logged_in.capabilities, ["IMAP4rev1", "IDLE"]);
    // Whatever came behind the OK is the client's, in the leftover or still to be read.
    let mut client_bytes = logged_in.leftover.to_vec();
    while client_bytes.len() < b"* 1 EXISTS\r\n".len() {
        let mut more = [0; 64];
        let n = logged_in.stream.read(&mut more).await.expect("read");
        assert!(n > 0, "closed early");
        client_bytes.extend_from_slice(&more[..n]);
    }
    assert_eq!(client_bytes, b"* 1 EXISTS\r\n");
    fake.await.expect("the fake backend's checks");
}

#[tokio::test]
async fn an_smtp_probe_learns_the_extensions() {
    let (address, fake) = fake_backend(vec![
        Ok("220 mx ESMTP\r\n"),
        Err("EHLO bearergate"),
        Ok("250-mx\r\n250-CHUNKING\r\n250 SIZE 1000\r\n"),
        Err("QUIT"),
    ])
    .await;
    let backend = at(address, BackendTls::None);
    assert!(backend.learned().smtp_extensions.is_none());
    smtp::probe(&backend).await.expect("probed");
    let learned = backend.learned().smtp_extensions.expect("learned");
    assert_eq!(
        &learned[..],
        [
            ("CHUNKING".to_owned(), String::new()),
            ("SIZE".to_owned(), "1000".to_owned())
        ]
    );
    fake.await.expect("the fake backend's checks");
}

#[tokio::test]
async fn a_backend_that_closes_early_is_a_protocol_failure() {
    let (address, fake) = fake_backend(vec![Ok("* OK [CAPABILITY IMAP4rev1] ready\r\n")]).await;
    let backend = at(address, BackendTls::None);
    let credentials = token();
    let error = login(Protocol::Imap, &backend, request(&credentials))
        .await
        .expect_err("closed");
    assert!(
        matches!(
            error,
            BackendError::Login(LoginError::Protocol {
                error: machine::ProtocolError::Closed,
                ..
            })
        ),
        "{error:?}"
    );
    assert_eq!(error.fault(), Fault::Backend);
    fake.await.expect("the fake backend's checks");
}

#[tokio::test]
async fn starttls_without_tls_settings_fails_after_the_backends_ok() {
    let (address, fake) = fake_backend(vec![
        Ok("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n"),
        Err("bg0 STARTTLS"),
        Ok("bg0 OK Begin TLS negotiation now.\r\n"),
    ])
    .await;
    let backend = at(address, BackendTls::Starttls);
    let credentials = token();
    let error = login(Protocol::Imap, &backend, request(&credentials))
        .await
        .expect_err("no TLS");
    assert!(matches!(error, BackendError::NoStartTls(_)), "{error:?}");
    fake.await.expect("the fake backend's checks");
}

#[tokio::test]
async fn strategies_a_protocol_lacks_fail_before_connecting() {
    // Nothing listens there: a connection attempt would fail differently.
    let backend = at("127.0.0.1:1".into(), BackendTls::None);
    let credentials = sasl::PasswordCredentials {
        authzid: None,
        user: "alice".into(),
        password: "pw".into(),
    };
    let request = PasswordRequest {
        credentials: &credentials,
        client: "192.0.2.7:51234".parse().expect("address"),
        destination: Some("198.51.100.1:993".parse().expect("address")),
        client_name: None,
        session_id: "s1",
    };
    let error = password_login(Protocol::Sieve, &backend, request)
        .await
        .expect_err("no fallback");
    assert!(
        matches!(error, BackendError::Login(LoginError::Unsupported { .. })),
        "{error:?}"
    );
}

#[tokio::test]
async fn send_proxy_protocol_starts_each_connection_with_a_v2_header() {
    use codec::proxy_protocol::{decode, Addresses, Decoded, Limits};
    let read_back = |header: &[u8]| match decode(header, &Limits::default()) {
        Ok(Decoded::Header {
            header: h,
            consumed,
        }) if consumed == header.len() => h.addresses,
        other => panic!("{header:02x?} is not a whole header: {other:?}"),
    };
    // A client's login: the client and the address it connected to, before the greeting.
    let (address, fake) = fake_backend_after_header(
        28,
        vec![
            Ok("* OK [CAPABILITY IMAP4rev1 ID] ready\r\n"),
            Err("bg2 ID (\"x-originating-ip\" \"192.0.2.7\""),
            Ok("bg2 OK\r\n"),
            Err("bg3 LOGIN \"alice*proxymaster\" secret"),
            Ok("bg3 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
        ],
    )
    .await;
    let backend = Backend {
        send_proxy_protocol: true,
        ..at(address, BackendTls::None)
    };
    let credentials = token();
    login(Protocol::Imap, &backend, request(&credentials))
        .await
        .expect("logged in");
    let header = fake.await.expect("the fake backend's checks");
    assert_eq!(
        read_back(&header),
        Addresses::Tcp {
            source: "192.0.2.7:51234".parse().expect("address"),
            destination: "198.51.100.1:993".parse().expect("address"),
        }
    );

    // The proxy's own connections say LOCAL: a start-up probe, and a password check with
    // no client behind it.
    let (address, fake) = fake_backend_after_header(
        16,
        vec![
            Ok("220 mx ESMTP\r\n"),
            Err("EHLO"),
            Ok("250 mx\r\n"),
            Err("QUIT"),
        ],
    )
    .await;
    let backend = Backend {
        send_proxy_protocol: true,
        ..at(address, BackendTls::None)
    };
    smtp::probe(&backend).await.expect("probed");
    assert_eq!(read_back(&fake.await.expect("checks")), Addresses::Local);

    let (address, fake) = fake_backend_after_header(
        16,
        vec![
            Ok("* OK [CAPABILITY IMAP4rev1 ID] ready\r\n"),
            Err("bg2 ID"),
            Ok("bg2 OK\r\n"),
            Err("bg3 LOGIN "),
            Ok("bg3 OK [CAPABILITY IMAP4rev1] Logged in\r\n"),
        ],
    )
    .await;
    let backend = Backend {
        send_proxy_protocol: true,
        ..at(address, BackendTls::None)
    };
    let credentials = sasl::PasswordCredentials {
        authzid: None,
        user: "alice".into(),
        password: "pw".into(),
    };
    let request = PasswordRequest {
        credentials: &credentials,
        client: "127.0.0.1:0".parse().expect("address"),
        destination: None,
        client_name: None,
        session_id: "issuer-signin",
    };
    password_login(Protocol::Imap, &backend, request)
        .await
        .expect("logged in");
    assert_eq!(read_back(&fake.await.expect("checks")), Addresses::Local);

    // Off (the default): nothing before the protocol.
    assert!(at("127.0.0.1:1".into(), BackendTls::None)
        .proxy_header(None)
        .is_none());
}
