//! Two bearergate processes sharing one real PostgreSQL (`[issuer] store`), as behind a load
//! balancer: a device-flow grant made through the first (openid-client), refreshed and then
//! revoked through the second, is refused at the next IMAP login on the first — nothing is
//! cached per instance that could let it in. And `check-config` names `issuer.store`
//! without ever printing its password.

use serde_json::Value;

use crate::support::imap_client::AuthOutcome;
use crate::support::issuer::{IssuerEnv, IssuerOptions, USER};
use crate::support::postgres::TestPostgres;
use crate::support::{assert_refused, expect_success, fetch_first, test_message, try_oauthbearer};

fn assert_logs_in(outcome: &AuthOutcome, what: &str) {
    assert!(
        outcome.challenge.is_none() && outcome.tagged.kind == "OK",
        "{what}: want OK: {outcome:?}"
    );
}

#[tokio::test]
async fn a_grant_made_on_one_instance_is_refreshed_and_revoked_on_the_other() {
    let database = TestPostgres::start();
    database.create_database("issuer");
    let options = IssuerOptions {
        store: Some(database.url("issuer")),
        ..IssuerOptions::default()
    };
    let env = IssuerEnv::new("issuer-postgres", options);
    let a = env.start();
    let second = env.another_instance();
    let b = env.env.start_proxy_with(&second.config);
    // The admin's command line writes to the shared database too.
    let key = env.api_key(&a.config_path);
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("two instances", 2 * 1024));

    // A device-flow grant, through the first instance (registration with the key included).
    let report = env.flows(&key, &["device"], &[]);
    report.assert_success();
    let access = report.field("device", "access_token");
    let refresh = report.field("device", "refresh_token");
    let client_id = report.field("device", "client_id");
    assert!(
        fetch_first(&env.env, &a, USER, &access).await == delivered,
        "fetched message differs from delivered"
    );
    assert_logs_in(
        &try_oauthbearer(&env.env, &b, USER, &access).await,
        "the first instance's token on the second",
    );

    // Refreshed through the second instance: it knows the client, the family, the key.
    let (status, body) = env.post_form_at(
        &second.base_url,
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client_id),
        ],
        None,
    );
    assert_eq!(status, 200, "refresh through the second instance: {body}");
    let rotated: Value = serde_json::from_str(&body).expect("token response JSON");
    let access2 = rotated["access_token"].as_str().expect("access_token");
    let refresh2 = rotated["refresh_token"].as_str().expect("refresh_token");
    assert_ne!(refresh2, refresh, "rotated");
    assert!(
        fetch_first(&env.env, &a, USER, access2).await == delivered,
        "the second instance's token on the first"
    );

    // Revoked through the second instance: refused at the next login on the first.
    let (status, body) = env.post_form_at(
        &second.base_url,
        "/auth/revoke",
        &[("token", refresh2), ("client_id", &client_id)],
        None,
    );
    assert_eq!(
        status, 200,
        "revocation through the second instance: {body}"
    );
    for (token, what) in [
        (access2, "refreshed token"),
        (access.as_str(), "first token"),
    ] {
        assert_refused(
            &try_oauthbearer(&env.env, &a, USER, token).await,
            &format!("{what} after revocation, on the first instance"),
        );
        assert_refused(
            &try_oauthbearer(&env.env, &b, USER, token).await,
            &format!("{what} after revocation, on the second instance"),
        );
    }
    let (status, body) = env.post_form_at(
        &env.url,
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh2),
            ("client_id", &client_id),
        ],
        None,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");

    // Neither process ever wrote the database password.
    for (name, proxy) in [("first", &a), ("second", &b)] {
        let log = proxy.log();
        assert!(log.contains("PostgreSQL store opened"), "{name}: {log}");
        assert!(
            !log.contains(database.password()),
            "{name} logged the password"
        );
    }
}

#[test]
fn check_config_names_the_store_and_hides_its_password() {
    let options = IssuerOptions {
        store: Some("postgres://bg:hunter2-secret@db.example/x?sslmode=verify-ca".to_owned()),
        ..IssuerOptions::default()
    };
    let env = IssuerEnv::new("issuer-postgres-check", options);
    let config = env.write_config();
    let out = env.cli(&config, &["check-config"]);
    assert!(
        !out.status.success(),
        "check-config accepted sslmode=verify-ca"
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("issuer.store") && text.contains("sslmode"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    // A good URL passes the check without a database to connect to.
    let options = IssuerOptions {
        store: Some("postgres://bg:hunter2-secret@db.example/x?sslmode=verify-full".to_owned()),
        ..IssuerOptions::default()
    };
    let env = IssuerEnv::new("issuer-postgres-check-ok", options);
    let config = env.write_config();
    expect_success(
        "check-config with a PostgreSQL store",
        &env.cli(&config, &["check-config"]),
    );
}
