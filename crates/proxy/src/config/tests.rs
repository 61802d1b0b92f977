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
    assert_eq!(
        config.validator.issuers[0].policy.username_claims,
        ["username"]
    );
    assert_eq!(config.validator.issuers[0].name, "default");
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

/// The validator crate's configuration of the only (or first) issuer.
fn first_issuer(config: &Config) -> &validator::IssuerConfig {
    config.validator.issuers.first().expect("one issuer")
}

#[test]
fn jwt_validator_keys_reach_the_validator() {
    let config = Config::parse(JWT).expect("parses");
    assert!(config.validate(Path::new(".")).is_empty());
    let issuer = first_issuer(&config);
    let validator::Source::Jwt(jwt) = &issuer.source else {
        panic!("not a jwt source: {issuer:?}");
    };
    assert_eq!(jwt.issuer, "https://idp.example/realms/mail");
    assert_eq!(jwt.audiences, ["imap.example", "bearergate"]);
    assert_eq!(jwt.require_typ.as_deref(), Some("at+jwt"));
    assert_eq!(jwt.leeway, Duration::from_secs(30));
    assert_eq!(
        issuer.policy.username_claims,
        ["email", "preferred_username"]
    );
    assert_eq!(issuer.policy.required_scopes, ["mail"]);

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

const ISSUERS: &str = r#"
[validator]
cache_max_ttl = "2m"

[[validator.issuers]]
name = "keycloak"
kind = "jwt"
issuer = "https://sso.example/realms/mail"
audience = ["bearergate"]
username_claims = ["email", "preferred_username"]
username_domain = "example.org"
strip_domains = ["corp.example"]
lowercase_username = true
allowed_client_ids = ["thunderbird", "webmail"]
protocol_scopes = { smtp = "mail.send" }
user_map = { "boss@example.org" = "ceo" }
openid_configuration = "https://sso.example/realms/mail/.well-known/openid-configuration"
challenge_scope = "mail"

[[validator.issuers]]
kind = "introspection"
introspection_url = "https://idp.example/introspect"
client_id = "bearergate"
client_secret = "s3cret-value"
client_auth = "client_secret_post"
token_type_hint = ""
max_concurrent_requests = 8
failure_threshold = 3
circuit_open_for = "30s"

[[validator.issuers]]
kind = "userinfo"
userinfo_url = "https://oauth2.googleapis.com/tokeninfo"
userinfo_request = "form"
username_claims = ["email"]
allowed_client_ids = ["1234.apps.googleusercontent.com"]
"#;

fn with_listeners(validator: &str) -> String {
    let head = JWT
        .split("[validator]")
        .next()
        .expect("listeners and backends");
    format!("{head}{validator}")
}

#[test]
fn several_issuers_reach_the_validator_with_their_policies() {
    let config = Config::parse(&with_listeners(ISSUERS)).expect("parses");
    assert!(
        config.validate(Path::new(".")).is_empty(),
        "{:?}",
        config.validate(Path::new("."))
    );
    let built = &config.validator;
    assert_eq!(built.cache_max_ttl, Duration::from_secs(120));
    let names: Vec<&str> = built.issuers.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["keycloak", "issuer-1", "issuer-2"]);

    let keycloak = &built.issuers[0];
    assert_eq!(
        keycloak.policy.username_domain.as_deref(),
        Some("example.org")
    );
    assert_eq!(keycloak.policy.strip_domains, ["corp.example"]);
    assert!(keycloak.policy.lowercase_username);
    assert_eq!(
        keycloak.policy.allowed_client_ids,
        ["thunderbird", "webmail"]
    );
    assert_eq!(keycloak.policy.protocol_scopes["smtp"], ["mail.send"]);
    assert_eq!(keycloak.policy.user_map["boss@example.org"], "ceo");
    assert_eq!(keycloak.discovery.scope.as_deref(), Some("mail"));

    let validator::Source::Introspection(introspection) = &built.issuers[1].source else {
        panic!("not introspection");
    };
    assert_eq!(introspection.client_auth, validator::ClientAuth::Post);
    assert_eq!(introspection.token_type_hint, None);
    assert_eq!(built.issuers[1].guard.max_concurrent, 8);
    assert_eq!(built.issuers[1].guard.failure_threshold, 3);
    assert_eq!(built.issuers[1].guard.open_for, Duration::from_secs(30));

    let validator::Source::Userinfo(userinfo) = &built.issuers[2].source else {
        panic!("not userinfo");
    };
    assert_eq!(userinfo.request, validator::UserinfoRequest::Form);
}

#[test]
fn issuer_errors_carry_the_index() {
    let bad = ISSUERS.replace("circuit_open_for = \"30s\"", "bogus = 1");
    let error = Config::parse(&with_listeners(&bad)).expect_err("unknown key");
    assert_eq!(error.key, "validator.issuers[1].bogus");

    let bad = ISSUERS.replace("client_id = \"bearergate\"\n", "");
    let errors = Config::parse(&with_listeners(&bad))
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.issuers[1].client_id"]);

    let bad = ISSUERS.replace("smtp = \"mail.send\"", "nntp = \"mail\"");
    let errors = Config::parse(&with_listeners(&bad))
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.issuers[0].protocol_scopes"]);

    let mixed = ISSUERS.replace(
        "cache_max_ttl = \"2m\"",
        "cache_max_ttl = \"2m\"\nkind = \"jwt\"",
    );
    let errors = Config::parse(&with_listeners(&mixed))
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.kind"], "both shapes refused");

    let twice = ISSUERS.replace(
        "kind = \"userinfo\"",
        "name = \"keycloak\"\nkind = \"userinfo\"",
    );
    let errors = Config::parse(&with_listeners(&twice))
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.issuers[2].name"]);
}

#[test]
fn keys_of_another_kind_are_refused() {
    let bad = ISSUERS.replace(
        "userinfo_request = \"form\"",
        "userinfo_request = \"form\"\naudience = [\"1234.apps.googleusercontent.com\"]",
    );
    let errors = Config::parse(&with_listeners(&bad))
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.issuers[2].audience"]);
    assert!(
        errors[0].message.contains("kind = \"userinfo\""),
        "{errors:?}"
    );

    let bad = ISSUERS.replace(
        "token_type_hint = \"\"",
        "token_type_hint = \"\"\njwks_url = \"https://idp.example/jwks\"",
    );
    let errors = Config::parse(&with_listeners(&bad))
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), vec!["validator.issuers[1].jwks_url"]);
}

#[test]
fn password_fallback_towards_an_xclient_backend_is_refused() {
    let text = MINIMAL
        .replace("protocol = \"imap\"", "protocol = \"smtp\"")
        .replace(
            "allow_plaintext_auth = true",
            "allow_plaintext_auth = true\npassword_fallback = true",
        )
        .replace("login = \"master\"", "login = \"xclient\"");
    let config = Config::parse(&text).expect("parses");
    let errors = config.validate(Path::new("."));
    assert_eq!(keys(&errors), ["listeners[0].password_fallback"]);
    assert!(errors[0].message.contains("xclient"), "{}", errors[0]);
    // The same listener towards a master-user backend is fine.
    let text = text.replace("login = \"xclient\"", "login = \"master\"");
    let config = Config::parse(&text).expect("parses");
    assert!(config.validate(Path::new(".")).is_empty());
}

#[test]
fn auth_limits_have_safe_defaults_and_are_checked() {
    let config = Config::parse(MINIMAL).expect("parses");
    let limits = config.auth_limits.limits();
    assert_eq!(limits, crate::throttle::AuthLimits::default());
    assert_eq!(limits.failure_delay, Duration::from_secs(2));
    assert_eq!(limits.address_failures, 10);
    assert_eq!(limits.user_failures, 10);
    assert_eq!(limits.user_failure_refill, Duration::from_secs(60));
    assert_eq!(limits.address_idp_requests, 30);
    assert_eq!(limits.address_idp_request_refill, Duration::from_secs(2));
    assert!(config.listeners[0].error_challenge);
    let text = format!(
        "[auth_limits]\nfailure_delay = \"5s\"\nmax_failure_delay = \"1s\"\naddress_failures = 0\n\
         user_failures = 0\naddress_idp_requests = 0\nuser_failure_refill = \"0s\"\n\
         address_idp_request_refill = \"0s\"\n{MINIMAL}"
    );
    let config = Config::parse(&text).expect("parses");
    let errors = config.validate(Path::new("."));
    assert_eq!(
        keys(&errors),
        [
            "auth_limits.address_failures",
            "auth_limits.user_failures",
            "auth_limits.address_idp_requests",
            "auth_limits.user_failure_refill",
            "auth_limits.address_idp_request_refill",
            "auth_limits.max_failure_delay"
        ]
    );
    let text = format!("[auth_limits]\nuser_failure_refill = \"soon\"\n{MINIMAL}");
    let error = Config::parse(&text).expect_err("not a duration");
    assert_eq!(error.key, "auth_limits.user_failure_refill");
}

#[test]
fn protocol_scopes_must_name_protocols() {
    let bad = ISSUERS.replace("smtp = \"mail.send\"", "pop9 = \"mail\"");
    let errors = Config::parse(&with_listeners(&bad))
        .expect("parses")
        .validate(Path::new("."));
    assert_eq!(keys(&errors), ["validator.issuers[0].protocol_scopes"]);
    assert!(
        errors[0].message.contains("\"pop9\" is not a protocol")
            && errors[0].message.contains("`imap`"),
        "{}",
        errors[0]
    );
    let config = Config::parse(&with_listeners(ISSUERS)).expect("parses");
    let smtp = Protocol::Smtp.scope_key();
    assert_eq!(
        config.validator.issuers[0].policy.protocol_scopes[&smtp],
        ["mail.send"]
    );
}

/// A directory of its own for a test that writes files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bearergate-config-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("secrets")).expect("create scratch dir");
    dir
}

#[test]
fn load_reads_secret_files_relative_to_the_config_file() {
    use secrecy::ExposeSecret;

    let dir = scratch("secret-file");
    std::fs::write(dir.join("secrets/introspection"), "from-the-file\n").expect("write");
    let text = MINIMAL.replace(
        "client_secret = \"s3cret-value\"",
        "client_secret_file = \"secrets/introspection\"",
    );
    std::fs::write(dir.join("proxy.toml"), &text).expect("write");
    let config = Config::load(&dir.join("proxy.toml")).expect("valid");
    let validator::Source::Introspection(source) = &first_issuer(&config).source else {
        panic!("not introspection");
    };
    assert_eq!(source.client_secret.expose_secret(), "from-the-file");

    // A file that cannot be read is named once, with its key.
    std::fs::remove_file(dir.join("secrets/introspection")).expect("remove");
    let errors = Config::load(&dir.join("proxy.toml")).expect_err("unreadable");
    assert_eq!(keys(&errors), ["validator.client_secret_file"]);
    assert!(errors[0].message.contains("cannot read"), "{}", errors[0]);
    let _ = std::fs::remove_dir_all(dir);
}

/// MINIMAL without `[validator]`, with the built-in issuer instead; `issuer_keys` are
/// written first, so they replace the defaults written after them only where they name other
/// keys (`public_url` and `listen` are taken from them when present).
fn issuer_only(issuer_keys: &str) -> String {
    let without_validator = MINIMAL
        .split("[validator]")
        .next()
        .expect("MINIMAL has a [validator] table");
    let mut table = issuer_keys.to_owned();
    for (key, default) in [
        ("public_url", "\"https://mail.example.test:8443\""),
        ("listen", "\"127.0.0.1:8443\""),
        ("state_dir", "\"state\""),
    ] {
        if !issuer_keys
            .lines()
            .any(|l| l.starts_with(&format!("{key} =")))
        {
            table.push_str(&format!("\n{key} = {default}"));
        }
    }
    format!("{without_validator}[issuer]\n{table}\n")
}

#[test]
fn the_built_in_issuer_stands_in_for_the_validator_with_the_documented_defaults() {
    let text = format!("{}\n[tls]\ncert = \"c\"\nkey = \"k\"\n", issuer_only(""));
    let config = Config::parse(&text).expect("parses");
    let issuer = config.issuer.as_ref().expect("[issuer]");
    assert!(config.validator.issuers.is_empty());
    assert_eq!(issuer.access_token_lifetime, Duration::from_secs(3_600));
    assert_eq!(
        issuer.refresh_token_lifetime,
        Duration::from_secs(30 * 86_400)
    );
    assert_eq!(issuer.auth_code_lifetime, Duration::from_secs(600));
    assert_eq!(issuer.user_code_lifetime, Duration::from_secs(1_800));
    assert_eq!(issuer.max_attempts, 3);
    assert!(!issuer.client_registration.require);
    assert!(!issuer.client_registration.anonymous);
    assert_eq!(issuer.users, authz::settings::UserSource::Backend);
    // The certificate files do not exist here; everything else is valid.
    assert_eq!(
        keys(&config.validate(Path::new("."))),
        ["tls.cert", "tls.key"]
    );
    assert_eq!(config.password_backend(issuer), Some("imap"));
}

#[test]
fn neither_a_validator_nor_an_issuer_is_an_error_naming_both() {
    let without_validator = MINIMAL.split("[validator]").next().expect("split");
    let config = Config::parse(without_validator).expect("parses");
    let errors = config.validate(Path::new("."));
    assert_eq!(keys(&errors), ["validator"]);
    assert!(errors[0].message.contains("[issuer]"), "{}", errors[0]);
}

#[test]
fn issuer_rules_name_their_keys() {
    let cases = [
        // https only, compared exactly: no trailing slash, no path
        (
            "public_url = \"http://mail.example.test\"",
            "issuer.public_url",
        ),
        (
            "plaintext = true\nlisten = \"0.0.0.0:8443\"",
            "issuer.plaintext",
        ),
        ("plaintext = false", "issuer.cert"),
        (
            "users = \"passwd-file\"\nplaintext = true",
            "issuer.passwd_file",
        ),
        (
            "users_backend = \"nope\"\nplaintext = true",
            "issuer.users_backend",
        ),
        ("max_attempts = 0\nplaintext = true", "issuer.max_attempts"),
        // a header from anyone would let anyone choose the address the limits count by
        (
            "proxy_protocol = true\nplaintext = true",
            "issuer.proxy_trusted_networks",
        ),
        (
            "proxy_trusted_networks = [\"10.0.0.0/8\"]\nplaintext = true",
            "issuer.proxy_trusted_networks",
        ),
        (
            "proxy_protocol = true\nproxy_trusted_networks = [\"10.0.0.0/33\"]\nplaintext = true",
            "issuer.proxy_trusted_networks[0]",
        ),
        (
            "access_token_lifetime = \"2d\"\nplaintext = true",
            "issuer.access_token_lifetime",
        ),
        (
            "listen = \"127.0.0.1:1143\"\nplaintext = true",
            "issuer.listen",
        ),
    ];
    for (extra, key) in cases {
        let text = issuer_only(extra);
        let config = Config::parse(&text).unwrap_or_else(|e| panic!("{extra}: {e}"));
        let errors = config.validate(Path::new("."));
        assert!(
            keys(&errors).contains(&key),
            "{extra}: want an error on {key}, got {errors:?}"
        );
    }
    for url in [
        "https://mail.example.test/",
        "https://mail.example.test/oauth",
    ] {
        let text = issuer_only(&format!("plaintext = true\npublic_url = \"{url}\""));
        let config = Config::parse(&text).expect("parses");
        assert_eq!(
            keys(&config.validate(Path::new("."))),
            ["issuer.public_url"],
            "{url}"
        );
    }
    let unknown = Config::parse(&issuer_only("bogus = 1")).expect_err("unknown key");
    assert_eq!(unknown.key, "issuer.bogus");
}

#[test]
fn prelogin_per_address_defaults_to_20_and_refuses_zero() {
    let config = Config::parse(MINIMAL).expect("parses");
    assert_eq!(config.listeners[0].max_prelogin_per_address, 20);
    let text = MINIMAL.replace(
        "tls = \"none\"",
        "tls = \"none\"\nmax_prelogin_per_address = 0",
    );
    let config = Config::parse(&text).expect("parses");
    let errors = config.validate(Path::new("."));
    assert_eq!(keys(&errors), ["listeners[0].max_prelogin_per_address"]);
}

#[test]
fn proxy_protocol_is_off_by_default_and_needs_trusted_networks() {
    let config = Config::parse(MINIMAL).expect("parses");
    assert!(!config.listeners[0].proxy_protocol);
    assert!(config.listeners[0].proxy_trusted_networks.is_empty());
    assert!(!config.backends["imap"].send_proxy_protocol);

    let with = |lines: &str| MINIMAL.replace("tls = \"none\"", &format!("tls = \"none\"\n{lines}"));
    let text = with(
        "proxy_protocol = true\n\
         proxy_trusted_networks = [\"10.0.0.0/8\", \"2001:db8::/48\", \"192.0.2.7\", \" ::1 \"]",
    );
    let config = Config::parse(&text).expect("parses");
    assert!(config.validate(Path::new(".")).is_empty());
    let listener = &config.listeners[0];
    assert!(listener.proxy_protocol);
    let networks: Vec<String> = listener
        .proxy_trusted_networks
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        networks,
        ["10.0.0.0/8", "2001:db8::/48", "192.0.2.7/32", "::1/128"]
    );

    // Without networks anyone could choose the client address; networks without the
    // header would silently do nothing.
    for lines in [
        "proxy_protocol = true",
        "proxy_protocol = true\nproxy_trusted_networks = []",
        "proxy_trusted_networks = [\"10.0.0.0/8\"]",
    ] {
        let config = Config::parse(&with(lines)).expect("parses");
        assert_eq!(
            keys(&config.validate(Path::new("."))),
            ["listeners[0].proxy_trusted_networks"],
            "{lines}"
        );
    }
    for bad in ["10.0.0.0/33", "10.0.0", "example.net", ""] {
        let text = with(&format!(
            "proxy_protocol = true\nproxy_trusted_networks = [\"10.0.0.0/8\", \"{bad}\"]"
        ));
        let error = Config::parse(&text).expect_err("not a network");
        assert_eq!(error.key, "listeners[0].proxy_trusted_networks", "{bad}");
        assert!(error.message.contains(&format!("`{bad}`")), "{error}");
    }
    let error = Config::parse(&with("proxy_protocol = \"yes\"")).expect_err("not a bool");
    assert_eq!(error.key, "listeners[0].proxy_protocol");
}

#[test]
fn send_proxy_protocol_is_a_backend_switch() {
    let text = MINIMAL.replace(
        "master_password = \"secret\"",
        "master_password = \"secret\"\nsend_proxy_protocol = true",
    );
    let config = Config::parse(&text).expect("parses");
    assert!(config.validate(Path::new(".")).is_empty());
    assert!(config.backends["imap"].send_proxy_protocol);
    let text = MINIMAL.replace(
        "master_password = \"secret\"",
        "master_password = \"secret\"\nsend_proxy_protocol = 2",
    );
    let error = Config::parse(&text).expect_err("not a bool");
    assert_eq!(error.key, "backends.imap.send_proxy_protocol");
}

/// With `reuse_port` (the default) two of the process's own sockets on one address both
/// bind, and the kernel then splits connections between them: a mail client would reach
/// the metrics endpoint now and then. So overlapping addresses are refused here, as a bind
/// without `SO_REUSEPORT` would have refused them at start.
#[test]
fn sockets_of_one_instance_never_share_a_port() {
    let with_metrics = |metrics: &str, second: &str| {
        let text = format!(
            "{MINIMAL}\n[metrics]\nlisten = \"{metrics}\"\n\n[[listeners]]\nprotocol = \"imap\"\n\
             listen = \"{second}\"\ntls = \"none\"\nallow_plaintext_auth = true\nbackend = \"imap\"\n"
        );
        let config = Config::parse(&text).expect("parses");
        config.validate(Path::new("."))
    };
    assert!(with_metrics("127.0.0.1:9187", "127.0.0.1:1993").is_empty());
    assert!(with_metrics("127.0.0.1:1143", "127.0.0.1:1993")
        .iter()
        .any(|e| e.key == "metrics.listen" && e.message.contains("listeners[0].listen")));
    for (metrics, second) in [
        ("127.0.0.1:9187", "0.0.0.0:1143"),
        ("127.0.0.1:9187", "[::]:1143"),
    ] {
        let errors = with_metrics(metrics, second);
        assert!(
            errors
                .iter()
                .any(|e| e.key == "listeners[1].listen" && e.message.contains("listeners[0]")),
            "{metrics} {second}: {errors:?}"
        );
        assert!(
            errors.iter().all(|e| e.key != "metrics.listen"),
            "{errors:?}"
        );
    }
    let errors = with_metrics("0.0.0.0:1993", "127.0.0.1:1993");
    assert!(
        errors
            .iter()
            .any(|e| e.key == "metrics.listen" && e.message.contains("listeners[1].listen")),
        "{errors:?}"
    );
    // Another family's wildcard, or another port, is another socket.
    assert!(with_metrics("0.0.0.0:1993", "[::1]:1993").is_empty());
    assert!(with_metrics("127.0.0.1:1144", "127.0.0.2:1143").is_empty());
}
