//! The built-in authorization server against real third-party software: openid-client v6 for
//! discovery, RFC 7591 registration, the code flow with PKCE, the device flow, refresh
//! rotation, introspection, revocation and userinfo (`tests/issuer/flows.mjs`); Playwright
//! with the system's Chromium on the pages (`tests/issuer/browser.mjs`); and the tokens it
//! issues used by curl (IMAP), smtplib (SMTP submission) and sievelib (ManageSieve) through
//! the proxy to a real Dovecot. Then what must fail — bad redirects, wrong verifiers, replayed
//! codes, reused refresh tokens, expired device codes, guessed passwords, forged forms,
//! registration without a key — and what must last: grants across a restart, and the admin's
//! command line.

use std::fs;
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::issuer::{screenshot_dir, IssuerEnv, IssuerOptions, Users, MAIL_SCOPE, USER};
use crate::support::proxy::Proxy;
use crate::support::{
    assert_refused, client_script, expect_success, fetch_first, run, test_message, try_oauthbearer,
};

/// Dovecot's submission relays at once; this bounds only the sink's reader.
const RELAY_DEADLINE: Duration = Duration::from_secs(10);
/// A graceful stop drains open sessions; none are open when the tests stop the proxy.
const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// The environment, the running proxy and a registration key made through the CLI while it
/// runs (so the key is also proof that the CLI and the server share the store).
fn start(label: &str, options: IssuerOptions) -> (IssuerEnv, Proxy, String) {
    let env = IssuerEnv::new(label, options);
    let proxy = env.start();
    let key = env.api_key(&proxy.config_path);
    (env, proxy, key)
}

fn assert_logs_in(outcome: &crate::support::imap_client::AuthOutcome, what: &str) {
    assert!(
        outcome.challenge.is_none() && outcome.tagged.kind == "OK",
        "{what}: want OK: {outcome:?}"
    );
}

/// curl's IMAP FETCH of UID 1 over implicit TLS, logging in with OAUTHBEARER.
fn curl_fetch(env: &IssuerEnv, token: &str) -> Vec<u8> {
    let url = format!("imaps://localhost:{}/INBOX;UID=1", env.imap.port());
    let out = run(Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .arg("--cacert")
        .arg(&env.env.certs.ca_pem)
        .args(["--oauth2-bearer", token, "--user", &format!("{USER}:")])
        .arg(&url));
    expect_success(&format!("curl {url}"), &out);
    out.stdout
}

// ---- the flows, by openid-client ----------------------------------------------------------

#[tokio::test]
async fn openid_client_discovers_registers_and_completes_the_code_flow() {
    let (env, proxy, key) = start("issuer-code", IssuerOptions::default());
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("issuer code flow", 6 * 1024));

    let report = env.flows(&key, &["discovery", "register", "code", "userinfo"], &[]);
    report.assert_success();
    for step in [
        "discovery-openid-configuration",
        "discovery-oauth-authorization-server",
        "jwks",
        "register",
        "register-confidential",
        "register-without-key",
        "register-wrong-key",
        "code",
        "code-asked-again",
        "code-remembered",
        "code-deny",
        "userinfo",
        "userinfo-bad-token",
    ] {
        report.step(step);
    }

    // The code flow's access token opens alice's mailbox through the proxy.
    let token = report.field("code", "access_token");
    assert!(
        fetch_first(&env.env, &proxy, USER, &token).await == delivered,
        "fetched message differs from delivered"
    );
    // ... for alice only.
    assert_refused(
        &try_oauthbearer(&env.env, &proxy, "bob", &token).await,
        "alice's token claimed as bob",
    );
}

/// `[issuer]` beside `[validator]`: the built-in issuer's JWTs are judged in process and the
/// external provider's opaque tokens by introspection, on the same listener; each issuer's
/// token opens the mailbox, and the built-in token never costs the provider a request.
#[tokio::test]
async fn built_in_and_external_issuers_serve_side_by_side() {
    let options = IssuerOptions {
        external_validator: true,
        ..IssuerOptions::default()
    };
    let (env, proxy, key) = start("issuer-beside-external", options);
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("two issuers", 2 * 1024));

    let report = env.flows(&key, &["register", "code"], &[]);
    report.assert_success();
    let built_in = report.field("code", "access_token");
    let before = env.env.idp.requests();
    assert!(fetch_first(&env.env, &proxy, USER, &built_in).await == delivered);
    assert_eq!(
        env.env.idp.requests(),
        before,
        "a built-in token was sent to the external provider"
    );

    let external = env.env.idp.issue(USER);
    assert!(fetch_first(&env.env, &proxy, USER, &external).await == delivered);
    assert_eq!(
        env.env.idp.requests(),
        before + 1,
        "one introspection request"
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_kills_the_family() {
    let (env, proxy, key) = start("issuer-refresh", IssuerOptions::default());
    let report = env.flows(&key, &["refresh"], &[]);
    report.assert_success();
    assert_eq!(
        report.passed_steps(),
        [
            "refresh",
            "refresh-again",
            "refresh-reuse",
            "refresh-family-dead",
            "scenario:refresh"
        ]
    );
    // The rotated grant's first access token was made for mail.
    let token = report.field("refresh", "access_token");
    let (_, claims) = crate::support::oidc_provider::jwt_parts(&token);
    assert_eq!(claims["sub"], USER, "{claims}");
    assert_eq!(claims["iss"], env.url.as_str(), "{claims}");
    assert!(
        claims["scope"]
            .as_str()
            .is_some_and(|scope| scope.split(' ').any(|s| s == MAIL_SCOPE)),
        "{claims}"
    );
    drop(proxy);
}

#[tokio::test]
async fn introspection_by_a_confidential_client_and_revocation() {
    let (env, proxy, key) = start("issuer-introspect", IssuerOptions::default());
    let report = env.flows(&key, &["introspect", "revoke"], &[]);
    report.assert_success();
    for step in [
        "introspect-access",
        "introspect-refresh",
        "introspect-unknown",
        "introspect-public-client",
        "revoke",
        "revoke-refresh-dead",
        "revoke-access-dead",
        "revoke-idempotent",
    ] {
        report.step(step);
    }
    // The revoked grant's access token no longer logs in.
    let revoked = report.field("revoke", "access_token");
    assert_refused(
        &try_oauthbearer(&env.env, &proxy, USER, &revoked).await,
        "access token of a revoked grant",
    );
}

// ---- device flow end to end: IMAP, SMTP, ManageSieve, then revocation ---------------------

#[tokio::test]
async fn device_flow_token_reads_submits_and_manages_sieve_until_revoked() {
    let (env, proxy, key) = start("issuer-device", IssuerOptions::default());
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("issuer device flow", 16 * 1024));

    let report = env.flows(&key, &["device", "device-deny"], &[]);
    report.assert_success();
    report.step("device-authorization");
    report.step("device-approval");
    // Denied on the page: that poll ends with access_denied.
    report.step("device-deny");
    let token = report.field("device", "access_token");
    let refresh = report.field("device", "refresh_token");
    let client_id = report.field("device", "client_id");

    // IMAP: curl fetches exactly what Dovecot delivered.
    let fetched = curl_fetch(&env, &token);
    assert!(
        fetched == delivered,
        "curl fetched {} bytes, Dovecot delivered {}:\n{}",
        fetched.len(),
        delivered.len(),
        String::from_utf8_lossy(&fetched)
    );

    // SMTP submission: smtplib with XOAUTH2, relayed by Dovecot to the sink intact.
    let message = test_message("issuer device submission", 2 * 1024);
    let file = env.env.dir.path().join("device-submission.eml");
    fs::write(&file, &message).expect("write message");
    let out = run(Command::new("python3")
        .arg(client_script("smtplib_xoauth2_send.py"))
        .args(["localhost", &env.smtp.port().to_string()])
        .arg(&env.env.certs.ca_pem)
        .args(["implicit", USER, "alice@example.test", "bob@example.test"])
        .arg(&file)
        .env("BG_TOKEN", &token));
    expect_success("smtplib XOAUTH2 with the device-flow token", &out);
    let got = env.sink.wait_for(1, RELAY_DEADLINE);
    assert!(
        got[0].data.ends_with(&message),
        "the relayed message does not end with what was submitted:\n{}",
        String::from_utf8_lossy(&got[0].data)
    );

    // ManageSieve: sievelib with OAUTHBEARER after STARTTLS.
    let script = "require [\"fileinto\"];\nif header :contains \"subject\" \"[issuer]\" {\n  fileinto \"INBOX\";\n}\n";
    let script_file = env.env.dir.path().join("issuer.sieve");
    fs::write(&script_file, script).expect("write script");
    let outfile = env.env.dir.path().join("issuer-getscript.txt");
    let out = run(Command::new("python3")
        .arg(client_script("sievelib_oauthbearer.py"))
        .args(["localhost", &env.sieve.port().to_string(), USER, "issuer"])
        .arg(&script_file)
        .arg(&outfile)
        .env("BG_TOKEN", &token)
        .env("SSL_CERT_FILE", &env.env.certs.ca_pem));
    expect_success("sievelib OAUTHBEARER with the device-flow token", &out);
    let stored = fs::read(env.env.dovecot.home(USER).join("sieve/issuer.sieve"))
        .unwrap_or_else(|e| panic!("the script in Dovecot's sieve dir: {e}"));
    assert_eq!(
        String::from_utf8_lossy(&stored).replace("\r\n", "\n"),
        script,
        "stored script"
    );

    // Revocation (RFC 7009, a public client names itself): the next IMAP login is refused,
    // and the refresh token of the grant is dead.
    let (status, body) = env.post_form(
        "/auth/revoke",
        &[("token", token.as_str()), ("client_id", client_id.as_str())],
        None,
    );
    assert_eq!(status, 200, "revocation answered {status}: {body}");
    assert_refused(
        &try_oauthbearer(&env.env, &proxy, USER, &token).await,
        "IMAP login with a revoked token",
    );
    let out = run(Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .arg("--cacert")
        .arg(&env.env.certs.ca_pem)
        .args(["--oauth2-bearer", &token, "--user", &format!("{USER}:")])
        .arg(format!("imaps://localhost:{}/INBOX;UID=1", env.imap.port())));
    assert!(
        !out.status.success(),
        "curl fetched with a revoked token: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let (status, body) = env.post_form(
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", client_id.as_str()),
        ],
        None,
    );
    assert_eq!(status, 400, "refresh after revocation: {body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON error")["error"],
        "invalid_grant",
        "{body}"
    );
}

#[tokio::test]
async fn device_codes_expire_after_user_code_lifetime() {
    let options = IssuerOptions {
        user_code_lifetime: Some("2s".into()),
        ..IssuerOptions::default()
    };
    let (env, _proxy, key) = start("issuer-device-expiry", options);
    // Nobody approves; the expiry is found by the poll itself: the issuer's expired_token
    // (not a timer of the client) ends it, and the page refuses the dead code.
    let report = env.flows(&key, &["device-expired"], &[]);
    report.assert_success();
    report.step("device-expired");
    report.step("device-expired-page");
}

// ---- what must be refused ----------------------------------------------------------------

#[tokio::test]
async fn unregistered_clients_get_tokens_only_through_safe_redirects() {
    let (env, proxy, key) = start("issuer-unregistered", IssuerOptions::default());
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("issuer unregistered", 1024));
    let report = env.flows(&key, &["unregistered", "bad-redirect"], &[]);
    report.assert_success();
    for step in [
        "unregistered-https-redirect",
        "unregistered-non-loopback-http",
        "registered-unknown-redirect",
        "registered-other-path",
        "unregistered-without-pkce",
    ] {
        report.step(step);
    }
    let token = report.field("unregistered", "access_token");
    assert!(
        fetch_first(&env.env, &proxy, USER, &token).await == delivered,
        "an unregistered loopback client's token did not fetch the message"
    );
}

#[tokio::test]
async fn wrong_verifiers_and_replayed_codes_are_refused() {
    let (env, proxy, key) = start("issuer-pkce", IssuerOptions::default());
    let report = env.flows(&key, &["wrong-verifier", "code-replay"], &[]);
    report.assert_success();
    report.step("wrong-verifier");
    report.step("wrong-verifier-then-right");
    report.step("wrong-verifier-max");
    report.step("code-replay");
    // The replay revoked the grant: its access token no longer logs in either.
    let token = report.field("code-replay-revokes", "access_token");
    assert_refused(
        &try_oauthbearer(&env.env, &proxy, USER, &token).await,
        "access token of a replayed code's grant",
    );
}

#[tokio::test]
async fn page_posts_without_a_valid_csrf_token_are_forbidden() {
    let (env, _proxy, key) = start("issuer-csrf", IssuerOptions::default());
    let report = env.flows(&key, &["csrf"], &[]);
    report.assert_success();
    for step in [
        "csrf-missing",
        "csrf-wrong",
        "csrf-cross-origin",
        "csrf-consent",
        "csrf-origin-null-cross-site",
        "csrf-origin-null",
    ] {
        report.step(step);
    }
}

#[tokio::test]
async fn wrong_passwords_hit_the_sign_in_limit() {
    let (env, _proxy, key) = start("issuer-passwords", IssuerOptions::default());
    let report = env.flows(&key, &["password-limit"], &[]);
    report.assert_success();
    report.step("password-wrong");
    report.step("password-limit");
    report.step("password-limit-right");
}

#[tokio::test]
async fn registration_needs_an_api_key_unless_anonymous() {
    let (env, _proxy, _key) = start("issuer-registration", IssuerOptions::default());
    // An https redirect: not a native client, which could register without a key
    // (`open_native`, tests/e2e/mail_profile.rs).
    let metadata = json!({
        "client_name": "curl registration",
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "none",
    });
    let (status, body) = env.post_json("/auth/register", &metadata, None);
    assert_eq!(status, 401, "registration without a key: {body}");
    let (status, body) = env.post_json("/auth/register", &metadata, Some("bgk_guessed"));
    assert_eq!(status, 401, "registration with a wrong key: {body}");

    let options = IssuerOptions {
        anonymous_registration: true,
        ..IssuerOptions::default()
    };
    let open = IssuerEnv::new("issuer-registration-open", options);
    let _open_proxy = open.start();
    let (status, body) = open.post_json("/auth/register", &metadata, None);
    assert_eq!(status, 201, "anonymous registration: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON registration");
    assert!(answer["client_id"].is_string(), "{answer}");
}

// ---- what must last ----------------------------------------------------------------------

#[tokio::test]
async fn grants_and_keys_survive_a_restart() {
    let env = IssuerEnv::new("issuer-restart", IssuerOptions::default());
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("issuer restart", 4 * 1024));
    let mut proxy = env.start();
    let key = env.api_key(&proxy.config_path);
    let report = env.flows(&key, &["code"], &[]);
    report.assert_success();
    let client_id = report.field("code", "client_id");
    let refresh = report.field("code", "refresh_token");
    let before = report.field("code", "access_token");

    // A graceful stop (SIGTERM), then a new process on the same state_dir.
    let status = run(Command::new("kill").args(["-TERM", &proxy.pid().to_string()])).status;
    assert!(status.success(), "kill -TERM failed");
    let exit = proxy
        .wait_exit(STOP_DEADLINE)
        .unwrap_or_else(|| panic!("bearergate did not stop on SIGTERM:\n{}", proxy.log()));
    assert!(exit.success(), "bearergate exited {exit} on SIGTERM");
    drop(proxy);
    let proxy = env.start();

    // The access token from before still logs in (same signing key, same grant) ...
    assert!(
        fetch_first(&env.env, &proxy, USER, &before).await == delivered,
        "the access token from before the restart did not fetch the message"
    );
    // ... and the refresh token still works; so does the new access token.
    let again = env.flows(
        &key,
        &["refresh-once"],
        &[
            ("CLIENT_ID", client_id.as_str()),
            ("REFRESH_TOKEN", refresh.as_str()),
        ],
    );
    again.assert_success();
    let token = again.field("refresh-once", "access_token");
    assert!(
        fetch_first(&env.env, &proxy, USER, &token).await == delivered,
        "the access token refreshed after the restart did not fetch the message"
    );
    // The registration key made before the restart still registers.
    env.flows(&key, &["register"], &[]).assert_success();
}

// ---- the admin's command line ------------------------------------------------------------

#[tokio::test]
async fn cli_adds_lists_and_removes_clients_and_creates_api_keys() {
    let env = IssuerEnv::new("issuer-cli", IssuerOptions::default());
    let config = env.write_config();

    let out = env.cli(&config, &["clients", "list"]);
    expect_success("clients list (empty)", &out);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        !listing.contains("admin-app"),
        "a fresh store lists clients: {listing}"
    );

    let out = env.cli(
        &config,
        &[
            "clients",
            "add",
            "--id",
            "admin-app",
            "--redirect-uri",
            "http://127.0.0.1/callback",
            "--name",
            "Admin Mail App",
        ],
    );
    expect_success("clients add (public)", &out);
    let out = env.cli(
        &config,
        &["clients", "add", "--id", "admin-introspector", "--secret"],
    );
    expect_success("clients add --secret", &out);
    let added = String::from_utf8_lossy(&out.stdout).into_owned();
    let secret = added
        .lines()
        .find_map(|line| line.strip_prefix("client_secret: "))
        .unwrap_or_else(|| panic!("clients add --secret printed no secret: {added}"))
        .trim()
        .to_owned();
    assert!(secret.len() >= 22, "a short client secret: {secret:?}");

    // Adding the same id twice is refused.
    let out = env.cli(&config, &["clients", "add", "--id", "admin-app"]);
    assert!(!out.status.success(), "a duplicate client id was accepted");

    let out = env.cli(&config, &["clients", "list"]);
    expect_success("clients list", &out);
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = listing
        .lines()
        .find(|l| l.starts_with("admin-app"))
        .unwrap_or_else(|| panic!("admin-app not listed: {listing}"));
    assert!(
        line.contains("Admin Mail App") && line.contains("http://127.0.0.1/callback"),
        "listing of admin-app: {line}"
    );
    assert!(
        listing.lines().any(|l| l.starts_with("admin-introspector")),
        "admin-introspector not listed: {listing}"
    );
    assert!(
        !listing.contains(&secret),
        "the listing shows the client secret"
    );

    // API keys: the permission is checked; each key is new.
    let out = env.cli(
        &config,
        &["api-keys", "create", "--permission", "everything"],
    );
    assert!(!out.status.success(), "an unknown permission was accepted");
    let key = env.api_key(&config);
    assert_ne!(key, env.api_key(&config), "two keys alike");

    // The running server sees what the CLI wrote, and the CLI works beside it.
    let proxy = env.start();
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("issuer cli", 1024));
    let report = env.flows(
        &key,
        &["registered-client"],
        &[
            ("CLIENT_ID", "admin-app"),
            ("CLIENT_NAME", "Admin Mail App"),
            ("REDIRECT_URI", "http://127.0.0.1/callback"),
        ],
    );
    report.assert_success();
    let token = report.field("registered-client", "access_token");
    assert!(
        fetch_first(&env.env, &proxy, USER, &token).await == delivered,
        "the admin client's token did not fetch the message"
    );

    // The CLI's confidential client introspects over HTTP Basic.
    let basic = format!("admin-introspector:{secret}");
    let (status, body) = env.post_form("/auth/introspect", &[("token", &token)], Some(&basic));
    assert_eq!(status, 200, "introspection: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON introspection");
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["sub"], USER, "{answer}");
    assert_eq!(answer["client_id"], "admin-app", "{answer}");
    let (status, body) = env.post_form(
        "/auth/introspect",
        &[("token", &token)],
        Some("admin-introspector:wrong-secret"),
    );
    assert_eq!(status, 401, "introspection with a wrong secret: {body}");

    // Removing the client revokes its grants: the token stops working at once.
    let out = env.cli(&proxy.config_path, &["clients", "remove", "admin-app"]);
    expect_success("clients remove", &out);
    assert_refused(
        &try_oauthbearer(&env.env, &proxy, USER, &token).await,
        "a removed client's token",
    );
    let out = env.cli(&proxy.config_path, &["clients", "remove", "admin-app"]);
    assert!(
        !out.status.success(),
        "removing an unknown client succeeded"
    );
    let out = env.cli(&proxy.config_path, &["clients", "list"]);
    expect_success("clients list after remove", &out);
    assert!(
        !String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("admin-app")),
        "admin-app still listed"
    );
}

// ---- other ways to run it ----------------------------------------------------------------

#[tokio::test]
async fn passwd_file_users_sign_in() {
    let options = IssuerOptions {
        users: Users::PasswdFile,
        ..IssuerOptions::default()
    };
    let (env, proxy, key) = start("issuer-passwd-file", options);
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("issuer passwd-file", 1024));
    let report = env.flows(&key, &["code"], &[]);
    report.assert_success();
    let token = report.field("code", "access_token");
    assert!(
        fetch_first(&env.env, &proxy, USER, &token).await == delivered,
        "a passwd-file user's token did not fetch the message"
    );
}

#[tokio::test]
async fn plaintext_issuer_on_loopback() {
    let options = IssuerOptions {
        plaintext: true,
        ..IssuerOptions::default()
    };
    let (env, proxy, key) = start("issuer-plaintext", options);
    assert!(env.url.starts_with("http://127.0.0.1:"), "{}", env.url);
    let report = env.flows(&key, &["discovery", "code"], &[]);
    report.assert_success();
    let token = report.field("code", "access_token");
    assert_logs_in(
        &try_oauthbearer(&env.env, &proxy, USER, &token).await,
        "token of a plaintext issuer",
    );
}

// ---- a real browser ----------------------------------------------------------------------

#[tokio::test]
async fn chromium_signs_in_consents_and_approves_a_device() {
    let (env, proxy, key) = start("issuer-browser", IssuerOptions::default());
    let dir = screenshot_dir();
    let _ = fs::remove_dir_all(&dir);
    let report = env.browser(&key, &dir);
    report.assert_success();
    for step in [
        "signin-page",
        "signin-wrong",
        "consent-page",
        "callback",
        "device-entry",
        "device-confirm",
        "device-done",
        "framing",
        "error-page",
    ] {
        report.step(step);
    }
    for name in [
        "01-signin",
        "02-signin-wrong-password",
        "03-consent",
        "04-callback",
        "05-device-entry",
        "06-device-confirm",
        "07-device-done",
        "08-framing-refused",
        "09-error",
    ] {
        let file = dir.join(format!("{name}.png"));
        let bytes = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1_000,
            "{} is not a screenshot",
            file.display()
        );
    }
    drop(proxy);
}
