//! The IETF mail-client OAuth profile end to end: a new mail app (openid-client v6,
//! `tests/issuer/profile.mjs`) registers itself without an API key, signs the user in with
//! the code flow, PKCE, the mail scope and an RFC 8707 resource naming the IMAP service, and
//! the token it gets opens IMAP through the proxy but not SMTP submission, before and after a
//! refresh. A keyless registration with an https redirect and a resource of another server
//! are refused.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::support::issuer::{IssuerEnv, IssuerOptions, USER};
use crate::support::{
    assert_refused, client_script, expect_success, fetch_first, run, test_message, try_oauthbearer,
};

/// How long the proxy may take to log a refused login.
const LOG_WAIT: Duration = Duration::from_secs(10);

/// smtplib's XOAUTH2 login (and a submission) with `token` on the SMTP listener: the
/// script's exit status and what it printed on stderr (the server's replies).
fn smtp_submit(env: &IssuerEnv, token: &str, label: &str) -> (bool, String) {
    let file = env.env.dir.path().join(format!("{label}.eml"));
    fs::write(&file, test_message(label, 1024)).expect("write message");
    let out = run(Command::new("python3")
        .arg(client_script("smtplib_xoauth2_send.py"))
        .args(["localhost", &env.smtp.port().to_string()])
        .arg(&env.env.certs.ca_pem)
        .args(["implicit", USER, "alice@example.test", "bob@example.test"])
        .arg(&file)
        .env("BG_TOKEN", token));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_native_client_registers_itself_and_its_imap_token_opens_imap_only() {
    let env = IssuerEnv::new("mail-profile", IssuerOptions::default());
    let proxy = env.start();
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("mail profile", 3 * 1024));
    // The listeners' hostname is "localhost": that is the IMAP service's name.
    let report = env.script(
        "profile.mjs",
        &[&env.url],
        &[("RESOURCE", "imap://localhost")],
    );
    report.assert_success();
    assert_eq!(
        report.passed_steps(),
        [
            "register-native",
            "register-https-refused",
            "code-resource",
            "refresh-foreign-resource",
            "refresh-keeps-resource",
            "authorize-foreign-resource",
            "scenario:profile",
        ]
    );
    assert!(
        report
            .field("register-native", "client_id")
            .starts_with("bgn1."),
        "not a self-contained client id"
    );

    // The first token opens alice's mailbox over IMAP ...
    let token = report.field("code-resource", "access_token");
    assert!(
        fetch_first(&env.env, &proxy, USER, &token).await == delivered,
        "the IMAP token did not fetch the delivered message"
    );
    // ... and is refused on the SMTP listener: its audience is IMAP.
    let (sent, stderr) = smtp_submit(&env, &token, "profile-imap-token");
    assert!(!sent, "an IMAP token submitted mail:\n{stderr}");
    assert!(
        stderr.contains("535"),
        "want 535 after the error challenge:\n{stderr}"
    );
    assert!(
        proxy.wait_for_log("token is for another service", LOG_WAIT),
        "no log line names the refused audience:\n{}",
        proxy.log()
    );
    assert!(env.sink.messages().is_empty(), "a message was relayed");

    // The refreshed token keeps the audience: IMAP yes, SMTP no.
    let refreshed = report.field("refresh-keeps-resource", "access_token");
    assert!(fetch_first(&env.env, &proxy, USER, &refreshed).await == delivered);
    let (sent, stderr) = smtp_submit(&env, &refreshed, "profile-refreshed-token");
    assert!(!sent, "a refreshed IMAP token submitted mail:\n{stderr}");
    assert!(stderr.contains("535"), "{stderr}");

    // The admin removes the self-registered client: its grants end, and the CLI says that
    // the id itself, carrying its own registration, is not gone.
    let client_id = report.field("register-native", "client_id");
    let out = env.cli(&proxy.config_path, &["clients", "remove", &client_id]);
    expect_success("clients remove of a self-registered id", &out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("grants of client") && said.contains("open_native"),
        "{said}"
    );
    assert_refused(
        &try_oauthbearer(&env.env, &proxy, USER, &refreshed).await,
        "a token of a removed self-registered client",
    );
}
