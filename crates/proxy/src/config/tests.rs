use super::*;

const MINIMAL: &str = r#"
[[listeners]]
protocol = "imap"
listen = "127.0.0.1:1143"
tls = "none"
allow_plaintext_auth = true
backend = "imap"

[backends.imap]
address = "127.0.0.1:143"
login = "master"
master_user = "proxymaster"
master_password = "secret"

[validator]
kind = "introspection"
introspection_url = "http://127.0.0.1:8080/introspect"
client_id = "bearergate"
client_secret = "s3cret-value"
"#;

fn keys(errors: &[ConfigError]) -> Vec<&str> {
    errors.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn minimal_config_is_valid_and_defaults_apply() {
    let config = Config::parse(MINIMAL).expect("parses");
    assert!(config.validate(Path::new(".")).is_empty());
    let listener = &config.listeners[0];
    assert_eq!(listener.max_auth_failures, 3);
    assert_eq!(listener.preauth_idle_timeout, Duration::from_secs(60));
    assert_eq!(config.validator.cache_max_ttl, Duration::from_secs(300));
    assert_eq!(config.validator.username_claim, "username");
    assert_eq!(
        config.backends["imap"].master_user_format,
        "{user}*{master}"
    );
}

#[test]
fn unknown_key_is_named_with_its_path() {
    let text = MINIMAL.replace("tls = \"none\"", "tls = \"none\"\nbogus = 1");
    let error = Config::parse(&text).expect_err("unknown key refused");
    assert_eq!(error.key, "listeners[0].bogus");
    assert!(error.message.contains("bogus"), "{error}");
}

#[test]
fn bad_enum_value_is_named_with_its_path() {
    let text = MINIMAL.replace("tls = \"none\"", "tls = \"sometimes\"");
    let error = Config::parse(&text).expect_err("bad variant refused");
    assert_eq!(error.key, "listeners[0].tls");
}

#[test]
fn bad_duration_is_named_with_its_path() {
    let text = format!("{MINIMAL}timeout = \"soon\"\n");
    let error = Config::parse(&text).expect_err("bad duration refused");
    assert_eq!(error.key, "validator.timeout");
    assert!(error.message.contains("soon"));
}

#[test]
fn cross_field_errors_name_each_key() {
    let text = MINIMAL
        .replace("backend = \"imap\"", "backend = \"missing\"")
        .replace("tls = \"none\"", "tls = \"implicit\"")
        .replace("master_password = \"secret\"\n", "");
    let config = Config::parse(&text).expect("parses");
    let errors = config.validate(Path::new("."));
    let keys = keys(&errors);
    assert!(keys.contains(&"listeners[0].backend"), "{keys:?}");
    assert!(keys.contains(&"listeners[0].tls"), "{keys:?}");
    assert!(keys.contains(&"backends.imap.master_password"), "{keys:?}");
}

#[test]
fn missing_files_are_reported() {
    let text = format!("[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"k.pem\"\n{MINIMAL}");
    let config = Config::parse(&text).expect("parses");
    let errors = config.validate(Path::new("/nonexistent-base"));
    let keys = keys(&errors);
    assert!(
        keys.contains(&"tls.cert") && keys.contains(&"tls.key"),
        "{keys:?}"
    );
}

#[test]
fn secrets_do_not_show_in_debug() {
    let config = Config::parse(MINIMAL).expect("parses");
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret-value"));
    assert!(!debug.contains("\"secret\""));
}

#[test]
fn the_shipped_proxy_toml_parses() {
    let text = include_str!("../../../../proxy.toml");
    let config = Config::parse(text).expect("proxy.toml parses");
    // Files (certificates) are created by the run script, so only check the other rules.
    let errors: Vec<_> = config
        .validate(Path::new(env!("CARGO_MANIFEST_DIR")))
        .into_iter()
        .filter(|e| !e.message.contains("not found"))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn host_port_splitting() {
    assert_eq!(
        split_host_port("mail.example:143"),
        Some(("mail.example", 143))
    );
    assert_eq!(split_host_port("[::1]:993"), Some(("::1", 993)));
    assert_eq!(split_host_port("nohost"), None);
    assert_eq!(split_host_port(":143"), None);
    assert_eq!(split_host_port("h:99999"), None);
}

#[test]
fn validator_rules_are_reported_by_check_config() {
    let text = MINIMAL.replace("http://127.0.0.1:8080", "http://idp.example");
    let config = Config::parse(&text).expect("parses");
    let errors = config.validate(Path::new("."));
    assert_eq!(
        keys(&errors),
        vec!["validator.introspection_url"],
        "{errors:?}"
    );
    let text = MINIMAL.replace(
        "client_secret = ",
        "required_scope = \"a\\\\b\"\nclient_secret = ",
    );
    let config = Config::parse(&text).expect("parses");
    let errors = config.validate(Path::new("."));
    assert_eq!(
        keys(&errors),
        vec!["validator.required_scope"],
        "{errors:?}"
    );
}

const JWT: &str = r#"
[[listeners]]
protocol = "imap"
listen = "127.0.0.1:1143"
tls = "none"
allow_plaintext_auth = true
backend = "imap"

[backends.imap]
address = "127.0.0.1:143"
login = "master"
master_user = "proxymaster"
master_password = "secret"

[validator]
kind = "jwt"
issuer = "https://idp.example/realms/mail"
audience = ["imap.example", "bearergate"]
username_claims = ["email", "preferred_username"]
require_typ = "at+jwt"
leeway = "30s"
required_scope = "mail"
"#;

#[test]
fn jwt_validator_keys_reach_the_validator() {
    let config = Config::parse(JWT).expect("parses");
    assert!(config.validate(Path::new(".")).is_empty());
    let jwt = config.validator.jwt_config();
    assert_eq!(jwt.issuer, "https://idp.example/realms/mail");
    assert_eq!(jwt.audiences, ["imap.example", "bearergate"]);
    assert_eq!(jwt.username_claims, ["email", "preferred_username"]);
    assert_eq!(jwt.require_typ.as_deref(), Some("at+jwt"));
    assert_eq!(jwt.leeway, Duration::from_secs(30));
    assert_eq!(jwt.required_scopes, ["mail"]);

    let no_issuer = JWT.replace("issuer = \"https://idp.example/realms/mail\"\n", "");
    let errors = Config::parse(&no_issuer)
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.issuer"]);
    let no_audience = JWT.replace("audience = [\"imap.example\", \"bearergate\"]\n", "");
    let errors = Config::parse(&no_audience)
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.audience"]);
    let hs = JWT.replace("leeway", "allowed_algorithms = [\"HS256\"]\nleeway");
    let errors = Config::parse(&hs).expect("parses").validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.allowed_algorithms"]);
}
