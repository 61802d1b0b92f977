//! The harness on its own: a private Dovecot accepts the master-user login the proxy will use
//! and serves a delivered message byte for byte. Needs no proxy.

use crate::support::dovecot::{MASTER_PASSWORD, MASTER_USER};
use crate::support::imap_client::last_status;
use crate::support::{test_message, Dovecot, ImapClient, TestCerts, TestDir};

#[tokio::test]
async fn dovecot_master_login_fetches_delivered_message() {
    let dir = TestDir::new("dovecot");
    let dovecot = Dovecot::builder(dir.path()).start();
    let message = dovecot.deliver("alice", &test_message("harness check", 4 * 1024));

    let mut client = ImapClient::connect_plain(dovecot.imap_addr()).await;
    let greeting = client.read_line().await;
    assert!(greeting.starts_with("* OK"), "greeting {greeting:?}");

    let login = client
        .command(
            "b",
            &format!("LOGIN \"alice*{MASTER_USER}\" \"{MASTER_PASSWORD}\""),
        )
        .await;
    assert_eq!(
        last_status(&login).kind,
        "OK",
        "{login:?}\n{}",
        dovecot.log()
    );

    let select = client.command("c", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(select.iter().any(|l| l == "* 1 EXISTS"), "{select:?}");

    let fetched = client.fetch_body("d", 1).await;
    assert!(
        fetched == message,
        "fetched {} bytes, delivered {}",
        fetched.len(),
        message.len()
    );

    let logout = client.command("e", "LOGOUT").await;
    assert_eq!(last_status(&logout).kind, "OK", "{logout:?}");

    // A wrong master password is refused, so the login above proved something. Last, because
    // Dovecot's auth penalty then slows every later login from 127.0.0.1 by seconds.
    let mut client = ImapClient::connect_plain(dovecot.imap_addr()).await;
    client.read_line().await;
    let refused = client
        .command("a", &format!("LOGIN \"alice*{MASTER_USER}\" \"wrong\""))
        .await;
    let status = last_status(&refused);
    assert!(
        status.is("NO", Some("AUTHENTICATIONFAILED")),
        "wrong password: {refused:?}\n{}",
        dovecot.log()
    );
}

#[tokio::test]
async fn dovecot_with_sieve_and_submission_listeners_starts() {
    let dir = TestDir::new("dovecot-all");
    // The relay is only contacted when a message is submitted; no sink is needed to start.
    let relay_port = crate::support::ports::free_port();
    let dovecot = Dovecot::builder(dir.path())
        .sieve()
        .submission(relay_port)
        .start();
    assert!(dovecot.sieve_port.is_some() && dovecot.submission_port.is_some());
}

#[tokio::test]
async fn dovecot_with_tls_serves_imaps_and_starttls() {
    let dir = TestDir::new("dovecot-tls");
    let certs = TestCerts::generate(dir.path());
    let dovecot = Dovecot::builder(dir.path())
        .tls(&certs.cert_pem, &certs.key_pem)
        .start();
    let message = dovecot.deliver("alice", &test_message("over TLS", 1024));
    let login = format!("LOGIN \"alice*{MASTER_USER}\" \"{MASTER_PASSWORD}\"");

    let imaps = dovecot.imaps_addr().expect("imaps listener");
    let mut client = ImapClient::connect_tls(imaps, certs.client_config()).await;
    let greeting = client.read_line().await;
    assert!(
        greeting.starts_with("* OK"),
        "imaps greeting {greeting:?}\n{}",
        dovecot.log()
    );
    let lines = client.command("a", &login).await;
    assert_eq!(
        last_status(&lines).kind,
        "OK",
        "{lines:?}\n{}",
        dovecot.log()
    );
    client.command("b", "EXAMINE INBOX").await;
    assert!(
        client.fetch_body("c", 1).await == message,
        "fetched over imaps differs"
    );

    let mut client = ImapClient::connect_plain(dovecot.imap_addr()).await;
    let greeting = client.read_line().await;
    assert!(greeting.contains("STARTTLS"), "greeting {greeting:?}");
    client.starttls("a", certs.client_config()).await;
    let lines = client.command("b", &login).await;
    assert_eq!(last_status(&lines).kind, "OK", "{lines:?}");
}
