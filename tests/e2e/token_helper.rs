//! `bearergate token`, the token helper for mail programs that cannot run OAuth flows, against
//! the built-in issuer: sign-in by the device flow and through a browser (the person's side
//! played by `tests/issuer/approve.mjs`), `print` handing tokens to IMAP logins and refreshing
//! them (rotation, concurrent callers), outages that keep the sign-in, a revoked grant that
//! asks for a new one, and real mail programs — neomutt sending, mbsync fetching — that get
//! their tokens only from the helper.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::issuer::{IssuerEnv, IssuerOptions, USER};
use crate::support::token_helper::{TokenHelper, EXIT_SIGN_IN, EXIT_TRY_LATER};
use crate::support::{
    assert_refused, expect_success, fetch_first, run, test_message, try_oauthbearer, unix_now,
};

/// A `--min-validity` longer than the issuer's access tokens live (1 h): forces a refresh.
const FORCE_REFRESH: [&str; 2] = ["--min-validity", "2h"];

fn start(label: &str) -> (IssuerEnv, crate::support::Proxy) {
    let env = IssuerEnv::new(label, IssuerOptions::default());
    let proxy = env.start();
    (env, proxy)
}

/// Signs in with the device flow and checks what `login` left behind.
fn signed_in(env: &IssuerEnv, name: &str) -> TokenHelper {
    let helper = TokenHelper::new(env, name);
    let login = helper.login_device();
    assert!(
        login.status.success(),
        "login failed ({}): {}",
        login.status,
        login.stderr
    );
    assert!(
        login
            .progress
            .contains(&format!("{}/auth/device/verify", env.url))
            && login.progress.contains("(expires in 30 min), or open "),
        "progress line: {:?}",
        login.progress
    );
    assert_eq!(
        helper.modes(),
        (0o600, 0o700),
        "token file and directory modes"
    );
    assert_eq!(helper.stored_str("issuer"), env.url);
    assert_eq!(helper.stored_str("client_id"), "bearergate");
    assert!(!helper.stored_str("refresh_token").is_empty());
    // The tokens never reach the terminal.
    let access = helper.stored_str("access_token");
    assert!(!login.stderr.contains(&access) && !login.progress.contains(&access));
    helper
}

#[tokio::test(flavor = "multi_thread")]
async fn device_login_then_print_refreshes_and_rotates() {
    let (env, proxy) = start("token-device");
    let message = env
        .env
        .dovecot
        .deliver(USER, &test_message("token helper", 4 * 1024));
    let helper = signed_in(&env, "alice");

    // The stored token while it is young: no request, the same token.
    let first = helper.token(&[]);
    assert_eq!(first, helper.stored_str("access_token"));
    assert_eq!(helper.token(&[]), first);
    assert_eq!(fetch_first(&env.env, &proxy, USER, &first).await, message);

    // Due for refresh: a new access token, a rotated refresh token stored, both usable.
    let refresh_before = helper.stored_str("refresh_token");
    let second = helper.token(&FORCE_REFRESH);
    assert_ne!(second, first);
    assert_eq!(second, helper.stored_str("access_token"));
    assert_ne!(helper.stored_str("refresh_token"), refresh_before);
    assert_eq!(helper.modes().0, 0o600);
    let expires_at = helper.stored()["expires_at"].as_i64().expect("expires_at");
    assert!(
        (expires_at - unix_now() - 3_600).abs() < 60,
        "expires_at {expires_at}"
    );
    assert_eq!(fetch_first(&env.env, &proxy, USER, &second).await, message);

    // Mail programs run the command at the same moment: each refresh waits for the one
    // before it, so no rotated refresh token is presented twice (which would revoke the
    // grant) and every caller gets a token.
    let callers: Vec<Child> = (0..4)
        .map(|_| {
            let file = helper.file.to_string_lossy().into_owned();
            helper
                .command(&["print", "--token-file", &file, "--min-validity", "2h"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn print")
        })
        .collect();
    let mut tokens = Vec::new();
    for caller in callers {
        let out = caller.wait_with_output().expect("wait for print");
        assert!(
            out.status.success(),
            "concurrent print failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        tokens.push(
            String::from_utf8(out.stdout)
                .expect("UTF-8")
                .trim_end()
                .to_owned(),
        );
    }
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "each caller refreshed in turn");
    // The grant survived: one more refresh works, and its token logs in.
    let last = helper.token(&FORCE_REFRESH);
    assert_eq!(fetch_first(&env.env, &proxy, USER, &last).await, message);
}

/// Makes the stored access token expired, as time would (the file stays 0600).
fn expire_access_token(helper: &TokenHelper) {
    let mut stored = helper.stored();
    stored["expires_at"] = (unix_now() - 10).into();
    fs::write(&helper.file, stored.to_string()).expect("rewrite the token file");
    assert_eq!(helper.modes().0, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn outages_keep_the_sign_in_and_only_a_refused_grant_ends_it() {
    let (env, proxy) = start("token-outage");
    let message = env
        .env
        .dovecot
        .deliver(USER, &test_message("token helper outage", 2 * 1024));
    let helper = signed_in(&env, "alice");
    let valid = helper.token(&[]);

    // The issuer goes away (it runs in the bearergate process).
    drop(proxy);
    let before = fs::read(&helper.file).expect("read the token file");

    // Due for refresh but still valid: the stored token, with a warning.
    let out = helper.print(&FORCE_REFRESH);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "print with the issuer down: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{valid}\n"));
    assert!(
        stderr.contains("warning: cannot refresh the access token")
            && stderr.contains("using the stored one"),
        "{stderr}"
    );
    assert_eq!(fs::read(&helper.file).unwrap(), before, "file untouched");

    // Expired: the temporary-failure status, nothing on stdout, the file untouched.
    expire_access_token(&helper);
    let expired = fs::read(&helper.file).unwrap();
    let out = helper.print(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_TRY_LATER), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("the sign-in is kept, try again later") && !stderr.contains(&valid),
        "{stderr}"
    );
    assert_eq!(fs::read(&helper.file).unwrap(), expired, "file untouched");

    // The issuer is back: the kept refresh token works.
    let proxy = env.start();
    let refresh_before = helper.stored_str("refresh_token");
    let renewed = helper.token(&[]);
    assert_ne!(renewed, valid);
    assert_ne!(helper.stored_str("refresh_token"), refresh_before);
    assert_eq!(fetch_first(&env.env, &proxy, USER, &renewed).await, message);

    // The grant is revoked (RFC 7009, as `logout` or another device would): the next
    // refresh is refused with invalid_grant, which asks for a new sign-in and marks the
    // file without deleting it.
    let refresh = helper.stored_str("refresh_token");
    let (status, body) = env.post_form(
        "/auth/revoke",
        &[
            ("token", &refresh),
            ("token_type_hint", "refresh_token"),
            ("client_id", "bearergate"),
        ],
        None,
    );
    assert_eq!(status, 200, "revocation: {body}");
    let out = helper.print(&FORCE_REFRESH);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_SIGN_IN), "{stderr}");
    assert!(out.stdout.is_empty());
    let again = format!(
        "sign in again: bearergate token login --issuer {} --ca-file {} --token-file {}",
        env.url,
        env.env.certs.ca_pem.display(),
        helper.file.display()
    );
    assert!(
        stderr.contains("invalid_grant") && stderr.contains(&again),
        "{stderr}"
    );
    assert!(helper.file.is_file(), "the file is kept");
    assert!(helper
        .stored_str("login_required")
        .contains("invalid_grant"));
    assert_eq!(helper.stored_str("refresh_token"), refresh);
    // Asked again, it says the same without a request (the token is still "valid" by its
    // expiry, but the grant is gone).
    let out = helper.print(&[]);
    assert_eq!(out.status.code(), Some(EXIT_SIGN_IN));
    // A new sign-in replaces the file and clears the mark.
    let login = helper.login_device();
    assert!(login.status.success(), "{}", login.stderr);
    assert!(helper.stored()["login_required"].is_null());
    let fresh = helper.token(&[]);
    assert_eq!(fetch_first(&env.env, &proxy, USER, &fresh).await, message);
}

/// msmtp's configuration: bearergate's implicit-TLS submission listener, OAUTHBEARER with
/// the helper as `passwordeval`, the test CA trusted.
fn msmtp_rc(env: &IssuerEnv, helper: &TokenHelper) -> PathBuf {
    let rc = format!(
        "account proxy\n\
         host 127.0.0.1\n\
         port {smtp}\n\
         tls on\n\
         tls_starttls off\n\
         tls_trust_file {ca}\n\
         auth oauthbearer\n\
         user alice\n\
         from alice@example.test\n\
         passwordeval \"{print}\"\n",
        smtp = env.smtp.port(),
        ca = env.env.certs.ca_pem.display(),
        print = helper.print_command(),
    );
    let path = env.env.dir.path().join("msmtprc");
    fs::write(&path, rc).expect("write msmtprc");
    // msmtp refuses a configuration file others can read.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod msmtprc");
    path
}

/// mbsync's configuration: the proxy's IMAP listener (implicit TLS, the test CA; by name, as
/// isync matches only DNS names in certificates), XOAUTH2
/// through the Cyrus SASL plugin with the helper as `PassCmd`, INBOX pulled into a Maildir.
fn mbsync_rc(env: &IssuerEnv, helper: &TokenHelper) -> (PathBuf, PathBuf) {
    let dir = env.env.dir.path();
    let local = dir.join("mbsync-mail");
    fs::create_dir_all(&local).expect("mbsync's maildir root");
    let rc = format!(
        "IMAPAccount proxy\n\
         Host localhost\n\
         Port {imap}\n\
         User alice\n\
         PassCmd \"{print}\"\n\
         AuthMechs XOAUTH2\n\
         SSLType IMAPS\n\
         CertificateFile {ca}\n\
         \n\
         IMAPStore remote\n\
         Account proxy\n\
         \n\
         MaildirStore local\n\
         Path {local}/\n\
         Inbox {local}/INBOX\n\
         \n\
         Channel inbox\n\
         Far :remote:INBOX\n\
         Near :local:INBOX\n\
         Sync Pull\n\
         Create Near\n",
        imap = env.imap.port(),
        print = helper.print_command(),
        ca = env.env.certs.ca_pem.display(),
        local = local.display(),
    );
    let path = dir.join("mbsyncrc");
    fs::write(&path, rc).expect("write mbsyncrc");
    (path, local.join("INBOX"))
}

/// Every message file of a Maildir folder (new/ and cur/).
fn maildir_messages(folder: &Path) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for entry in entries {
            found.push(fs::read(entry.expect("maildir entry").path()).expect("read message"));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn msmtp_sends_and_mbsync_fetches_with_tokens_from_the_helper() {
    let (env, _proxy) = start("token-clients");
    let helper = signed_in(&env, "alice");

    // msmtp: SMTP over TLS to bearergate, OAUTHBEARER with the helper's token; Dovecot's
    // submission relays to the sink.
    let message = test_message("token helper via msmtp", 8 * 1024);
    let message_file = env.env.dir.path().join("msmtp-message.eml");
    fs::write(&message_file, &message).expect("write the message");
    let out = run(Command::new("msmtp")
        .arg("-C")
        .arg(msmtp_rc(&env, &helper))
        .args(["-a", "proxy", "alice@example.test"])
        .stdin(fs::File::open(&message_file).expect("open the message")));
    expect_success("msmtp through bearergate", &out);
    let sent = env.sink.wait_for(1, Duration::from_secs(20));
    assert!(
        sent[0]
            .rcpt_to
            .iter()
            .any(|r| r.contains("alice@example.test")),
        "{:?}",
        sent[0].rcpt_to
    );
    // Dovecot's submission adds its Received: header; the rest is msmtp's input unchanged.
    let data = &sent[0].data;
    let prefix = data.len().saturating_sub(message.len());
    assert!(
        data.ends_with(&message) && data.starts_with(b"Received: "),
        "the message arrived byte for byte after Dovecot's Received: header; first bytes: {:?}",
        String::from_utf8_lossy(&data[..prefix.min(300)])
    );

    // Delivered to alice's mailbox, mbsync fetches it through bearergate with XOAUTH2, its
    // password being the helper's token.
    let delivered = env.env.dovecot.deliver(USER, &sent[0].data);
    let (mbsyncrc, inbox) = mbsync_rc(&env, &helper);
    let out = run(Command::new("mbsync")
        .arg("-c")
        .arg(&mbsyncrc)
        .arg("inbox")
        .env("HOME", env.env.dir.path()));
    expect_success("mbsync pull through bearergate", &out);
    let fetched = maildir_messages(&inbox);
    assert_eq!(fetched.len(), 1, "one message fetched");
    // mbsync stores with LF line ends and adds its own X-TUID: header line; nothing else
    // may differ.
    let fetched = String::from_utf8_lossy(&fetched[0]).into_owned();
    let tuid = fetched
        .lines()
        .take_while(|line| !line.is_empty())
        .filter(|line| line.starts_with("X-TUID: "))
        .collect::<Vec<_>>();
    assert_eq!(tuid.len(), 1, "mbsync's X-TUID header");
    let unmarked = fetched.replacen(&format!("{}\n", tuid[0]), "", 1);
    let delivered = String::from_utf8_lossy(&delivered).replace("\r\n", "\n");
    assert!(
        unmarked == delivered,
        "mbsync's copy ({} bytes) differs from the delivered message ({} bytes)",
        unmarked.len(),
        delivered.len()
    );
}

/// neomutt's configuration for `helper`'s tokens: SMTP submission and IMAP through
/// bearergate's implicit-TLS listeners, the helper as both token commands, the test CA
/// trusted, nothing kept locally. `extra` lines go last.
fn neomutt_rc(env: &IssuerEnv, helper: &TokenHelper, name: &str, extra: &str) -> PathBuf {
    let rc = format!(
        "set from = \"alice@example.test\"\n\
         set realname = \"Alice\"\n\
         set use_from = yes\n\
         set smtp_url = \"smtps://alice@127.0.0.1:{smtp}/\"\n\
         set smtp_authenticators = \"oauthbearer\"\n\
         set smtp_oauth_refresh_command = \"{print}\"\n\
         set folder = \"imaps://alice@127.0.0.1:{imap}/\"\n\
         set spoolfile = \"+INBOX\"\n\
         set imap_authenticators = \"oauthbearer:xoauth2\"\n\
         set imap_oauth_refresh_command = \"{print}\"\n\
         set ssl_ca_certificates_file = \"{ca}\"\n\
         set ssl_force_tls = yes\n\
         set record = \"\"\n\
         set header_cache = \"\"\n\
         set message_cachedir = \"\"\n\
         set send_charset = \"utf-8\"\n\
         {extra}",
        smtp = env.smtp.port(),
        imap = env.imap.port(),
        print = helper.print_command(),
        ca = env.env.certs.ca_pem.display(),
    );
    let path = env.env.dir.path().join(name);
    fs::write(&path, rc).expect("write a neomuttrc");
    path
}

/// `neomutt -n -F RC ARGS` in batch mode (no terminal), with the body on stdin.
fn neomutt_send(env: &IssuerEnv, rc: &Path, subject: &str, body: &Path) -> std::process::Output {
    run(Command::new("neomutt")
        .arg("-n")
        .arg("-F")
        .arg(rc)
        .args(["-s", subject, "alice@example.test"])
        .stdin(fs::File::open(body).expect("open the body"))
        .env("HOME", env.env.dir.path())
        .env_remove("DISPLAY"))
}

/// The body of a message: everything after the first empty line, line ends as LF.
fn body_of(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message).replace("\r\n", "\n");
    text.split_once("\n\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// neomutt with the helper as `smtp_oauth_refresh_command` and `imap_oauth_refresh_command`:
/// it sends (batch mode) and reads (its index driven on a pseudo-terminal by `script`, the
/// message piped to a file), with the built-in issuer's tokens. Debian 12's neomutt
/// (20220429) refuses any token longer than 510 bytes ("OAUTH token is too big"): the
/// built-in issuer's tokens are kept under that.
#[tokio::test(flavor = "multi_thread")]
async fn neomutt_sends_and_reads_with_tokens_from_the_helper() {
    let (env, proxy) = start("token-neomutt");
    let helper = signed_in(&env, "neomutt");
    let length = helper.token(&[]).len();
    assert!(length <= 510, "built-in access token is {length} bytes");

    // Send.
    let body = "Hello from neomutt through bearergate.\n\
                Its token came from `bearergate token print`.\n\
                a LOGOUT\n* BYE not really\n";
    let body_file = env.env.dir.path().join("neomutt-body.txt");
    fs::write(&body_file, body).expect("write the body");
    let rc = neomutt_rc(&env, &helper, "neomuttrc", "");
    let out = neomutt_send(&env, &rc, "token helper via neomutt", &body_file);
    expect_success("neomutt batch send through bearergate", &out);
    let sent = env.sink.wait_for(1, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&sent[0].data);
    assert!(
        text.contains("Subject: token helper via neomutt\r\n")
            && text.contains("From: Alice <alice@example.test>\r\n"),
        "{text}"
    );
    assert_eq!(body_of(&sent[0].data), body, "the body arrived as written");

    // Read: the message delivered to alice's INBOX, piped by neomutt to a file.
    let delivered = env.env.dovecot.deliver(USER, &sent[0].data);
    let read_to = env.env.dir.path().join("neomutt-read.eml");
    let read_rc = neomutt_rc(
        &env,
        &helper,
        "neomuttrc-read",
        &format!(
            "set wait_key = no\nset quit = yes\nset pipe_decode = no\nset mark_old = no\n\
             set move = no\nset imap_check_subscribed = no\n\
             push \"<pipe-message>cat > {}<enter><quit>\"\n",
            read_to.display()
        ),
    );
    let mut child = Command::new("timeout")
        .args(["--kill-after=5", "60", "script", "-qfec"])
        .arg(format!("neomutt -n -F {}", read_rc.display()))
        .arg("/dev/null")
        .env("HOME", env.env.dir.path())
        .env("TERM", "xterm")
        .env("LINES", "24")
        .env("COLUMNS", "80")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn neomutt under script");
    // Held open until neomutt has quit: at end of input, script would type ^D at it.
    let keyboard = child.stdin.take();
    let status = child.wait().expect("wait for neomutt");
    drop(keyboard);
    assert!(status.success(), "neomutt reading INBOX: {status}");
    let read = fs::read(&read_to).expect("neomutt piped the message");
    assert_eq!(
        String::from_utf8_lossy(&read).replace("\r\n", "\n"),
        String::from_utf8_lossy(&delivered).replace("\r\n", "\n"),
        "neomutt read the delivered message"
    );
    // Both logins used the helper's token; it was young, so the issuer saw only the
    // sign-in.
    for protocol in ["smtp", "imap"] {
        let login = format!(
            "protocol=\"{protocol}\" user=\"alice\" mechanism=\"OAUTHBEARER\"}}: logged in"
        );
        assert!(
            proxy.wait_for_log(&login, Duration::from_secs(5)),
            "no {protocol} login with OAUTHBEARER in the proxy's log"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_login_through_a_loopback_redirect_then_logout_revokes() {
    let (env, proxy) = start("token-browser");
    let message = env
        .env
        .dovecot
        .deliver(USER, &test_message("token helper browser", 2 * 1024));
    let helper = TokenHelper::new(&env, "alice");
    // approve.mjs signs in, consents, sends a stray and a forged request to the loopback
    // port (answered 404 and 400; the helper keeps waiting), then the real redirect.
    let login = helper.login_browser();
    assert!(
        login.status.success(),
        "browser login ({}): {}",
        login.status,
        login.stderr
    );
    assert!(
        login.progress.starts_with(&format!(
            "To sign in, open this address in a browser on this computer: {}/auth/authorize?",
            env.url
        )) && login.progress.contains("code_challenge_method=S256")
            && login
                .progress
                .contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A"),
        "{}",
        login.progress
    );
    assert_eq!(helper.modes(), (0o600, 0o700));
    let token = helper.token(&[]);
    assert_eq!(fetch_first(&env.env, &proxy, USER, &token).await, message);

    // logout revokes the grant at the issuer and removes the file.
    let refresh = helper.stored_str("refresh_token");
    let file = helper.file.to_string_lossy().into_owned();
    let out = run(&mut helper.command(&["logout", "--token-file", &file]));
    expect_success("bearergate token logout", &out);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("the grant is revoked"), "{said}");
    assert!(!helper.file.exists(), "the token file is gone");
    let (status, body) = env.post_form(
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", "bearergate"),
        ],
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
    let outcome = try_oauthbearer(&env.env, &proxy, USER, &token).await;
    assert_refused(&outcome, "an access token of the revoked grant");
    let out = helper.print(&[]);
    assert_eq!(out.status.code(), Some(EXIT_SIGN_IN));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sign in first"));
}
