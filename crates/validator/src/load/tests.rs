//! `[validator]` read as the proxy reads it: TOML through `serde_path_to_error`.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;

use super::*;
use crate::config::{IntrospectionConfig, DEFAULT_TIMEOUT};
use crate::jwt::{JwtConfig, DEFAULT_JWT_ALGORITHMS};
use crate::policy::ScopeKey;
use crate::userinfo::{UserinfoConfig, UserinfoRequest};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    validator: ValidatorConfig,
}

/// The configuration, or serde's error as (key path, message).
fn parse(text: &str) -> Result<ValidatorConfig, (String, String)> {
    let deserializer = toml::Deserializer::new(text);
    serde_path_to_error::deserialize::<_, File>(deserializer)
        .map(|file| file.validator)
        .map_err(|e| (e.path().to_string(), e.into_inner().message().to_owned()))
}

fn parsed(text: &str) -> ValidatorConfig {
    parse(text).unwrap_or_else(|(key, message)| panic!("{key}: {message}"))
}

fn parse_error(text: &str) -> (String, String) {
    match parse(text) {
        Ok(config) => panic!("parsed: {config:?}"),
        Err(error) => error,
    }
}

/// The keys `validate` names, below `[validator]`.
fn problem_keys(config: &ValidatorConfig) -> Vec<String> {
    match config.validate() {
        Ok(()) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.key).collect(),
    }
}

fn introspection(issuer: &IssuerConfig) -> &IntrospectionConfig {
    match &issuer.source {
        Source::Introspection(config) => config,
        other => panic!("not introspection: {other:?}"),
    }
}

fn jwt(issuer: &IssuerConfig) -> &JwtConfig {
    match &issuer.source {
        Source::Jwt(config) => config,
        other => panic!("not jwt: {other:?}"),
    }
}

fn userinfo(issuer: &IssuerConfig) -> &UserinfoConfig {
    match &issuer.source {
        Source::Userinfo(config) => config,
        other => panic!("not userinfo: {other:?}"),
    }
}

const INTROSPECTION: &str = r#"
[validator]
kind = "introspection"
introspection_url = "https://idp.example/introspect"
client_id = "bearergate"
client_secret = "s3cret-value"
client_auth = "client_secret_post"
token_type_hint = ""
issuer = "https://idp.example"
audience = ["bearergate"]
timeout = "3s"
username_claims = ["email", "preferred_username"]
strip_domains = ["corp.example"]
username_domain = "example.org"
lowercase_username = true
user_map = { "boss@example.org" = "ceo" }
allowed_client_ids = ["thunderbird"]
required_scope = "mail  offline"
protocol_scopes = { smtp = "mail.send" }
max_concurrent_requests = 8
failure_threshold = 3
circuit_open_for = "30s"
keep_confirmed_tokens = true
openid_configuration = "https://idp.example/.well-known/openid-configuration"
cache_max_ttl = "2m"
negative_cache_ttl = "0s"
cache_capacity = 10
"#;

#[test]
fn an_introspection_issuer_written_in_validator_itself() {
    let config = parsed(INTROSPECTION);
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.cache_max_ttl, Duration::from_secs(120));
    assert_eq!(config.negative_cache_ttl, Duration::ZERO);
    assert_eq!(config.cache_capacity, 10);
    let [issuer] = &config.issuers[..] else {
        panic!("one issuer: {config:?}");
    };
    assert_eq!(issuer.name, "default");
    let source = introspection(issuer);
    assert_eq!(source.introspection_url, "https://idp.example/introspect");
    assert_eq!(source.client_id, "bearergate");
    assert_eq!(source.client_secret.expose_secret(), "s3cret-value");
    assert_eq!(source.client_auth, ClientAuth::Post);
    assert_eq!(source.token_type_hint, None, "\"\" sends no hint");
    assert_eq!(source.issuer.as_deref(), Some("https://idp.example"));
    assert_eq!(source.audiences, ["bearergate"]);
    assert_eq!(source.timeout, Duration::from_secs(3));

    let policy = &issuer.policy;
    assert_eq!(policy.username_claims, ["email", "preferred_username"]);
    assert_eq!(policy.strip_domains, ["corp.example"]);
    assert_eq!(policy.username_domain.as_deref(), Some("example.org"));
    assert!(policy.lowercase_username);
    assert_eq!(policy.user_map["boss@example.org"], "ceo");
    assert_eq!(policy.allowed_client_ids, ["thunderbird"]);
    assert_eq!(policy.required_scopes, ["mail", "offline"]);
    assert_eq!(
        policy.protocol_scopes[&ScopeKey::new("smtp")],
        ["mail.send"]
    );

    assert_eq!(issuer.guard.max_concurrent, 8);
    assert_eq!(issuer.guard.failure_threshold, 3);
    assert_eq!(issuer.guard.open_for, Duration::from_secs(30));
    assert!(issuer.keep_confirmed_tokens);
    assert_eq!(
        issuer.guard.queue_timeout,
        Duration::from_secs(3),
        "timeout"
    );
    assert_eq!(
        issuer.discovery.openid_configuration.as_deref(),
        Some("https://idp.example/.well-known/openid-configuration")
    );
    assert_eq!(
        issuer.discovery.scope.as_deref(),
        Some("mail offline"),
        "without challenge_scope, the required scopes"
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let config = parsed(
        "[validator]\nkind = \"introspection\"\nintrospection_url = \"https://idp.example/i\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\n",
    );
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.cache_max_ttl, crate::DEFAULT_CACHE_MAX_TTL);
    assert_eq!(config.cache_capacity, crate::DEFAULT_CACHE_CAPACITY);
    let issuer = &config.issuers[0];
    let source = introspection(issuer);
    assert_eq!(source.client_auth, ClientAuth::Basic);
    assert_eq!(source.token_type_hint.as_deref(), Some("access_token"));
    assert_eq!(source.timeout, DEFAULT_TIMEOUT);
    assert_eq!(issuer.policy.username_claims, ["username"]);
    assert!(issuer.policy.protocol_scopes.is_empty());
    assert_eq!(issuer.guard, crate::GuardConfig::default());
    assert!(!issuer.keep_confirmed_tokens);
    assert_eq!(issuer.discovery.scope, None);
}

#[test]
fn a_jwt_issuer() {
    let config = parsed(
        r#"
[validator]
audience = ["imap.example", "bearergate"]
issuer = "https://sso.example/realms/mail"
jwks_url = "https://sso.example/realms/mail/certs"
require_typ = "at+jwt"
leeway = "30s"
allowed_algorithms = ["ES256", "HS256"]
jwks_refetch_interval = "1m"
hmac_secret = "a-shared-secret-of-at-least-32-bytes"
username_claim = "preferred_username"
challenge_scope = "mail"
kind = "jwt"
"#,
    );
    assert_eq!(config.validate(), Ok(()), "kind may come last");
    let issuer = &config.issuers[0];
    let source = jwt(issuer);
    assert_eq!(source.issuer, "https://sso.example/realms/mail");
    assert_eq!(source.audiences, ["imap.example", "bearergate"]);
    assert_eq!(
        source.jwks_url.as_deref(),
        Some("https://sso.example/realms/mail/certs")
    );
    assert_eq!(source.require_typ.as_deref(), Some("at+jwt"));
    assert_eq!(source.leeway, Duration::from_secs(30));
    assert_eq!(source.allowed_algorithms, ["ES256", "HS256"]);
    assert_eq!(source.jwks_refetch_interval, Duration::from_secs(60));
    let hmac = source.hmac_secret.as_ref().map(|s| s.expose_secret());
    assert_eq!(hmac, Some("a-shared-secret-of-at-least-32-bytes"));
    assert_eq!(issuer.policy.username_claims, ["preferred_username"]);
    assert_eq!(issuer.discovery.scope.as_deref(), Some("mail"));

    // `[]` keeps the default algorithms, as leaving the key out does.
    let config = parsed(
        "[validator]\nkind = \"jwt\"\nissuer = \"https://sso.example\"\naudience = [\"a\"]\n\
         allowed_algorithms = []\n",
    );
    assert_eq!(
        jwt(&config.issuers[0]).allowed_algorithms,
        DEFAULT_JWT_ALGORITHMS
    );
}

#[test]
fn a_userinfo_issuer() {
    let config = parsed(
        "[validator]\nkind = \"userinfo\"\nuserinfo_url = \"https://oauth2.googleapis.com/tokeninfo\"\n\
         userinfo_request = \"form\"\ntimeout = \"2s\"\n",
    );
    assert_eq!(config.validate(), Ok(()));
    let source = userinfo(&config.issuers[0]);
    assert_eq!(source.url, "https://oauth2.googleapis.com/tokeninfo");
    assert_eq!(source.request, UserinfoRequest::Form);
    assert_eq!(source.timeout, Duration::from_secs(2));

    let config = parsed("[validator]\nkind = \"userinfo\"\nuserinfo_url = \"https://u.example\"\n");
    assert_eq!(
        userinfo(&config.issuers[0]).request,
        UserinfoRequest::Bearer
    );
}

const LISTED: &str = r#"
[validator]
cache_capacity = 5

[[validator.issuers]]
name = "keycloak"
kind = "jwt"
issuer = "https://sso.example/realms/mail"
audience = ["bearergate"]

[[validator.issuers]]
kind = "introspection"
issuer = "https://idp.example"
introspection_url = "https://idp.example/introspect"
client_id = "bearergate"
client_secret = "s3cret-value"

[[validator.issuers]]
kind = "userinfo"
userinfo_url = "https://oauth2.googleapis.com/tokeninfo"
"#;

#[test]
fn several_issuers_in_order_with_their_names() {
    let config = parsed(LISTED);
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.cache_capacity, 5);
    let names: Vec<&str> = config.issuers.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["keycloak", "https://idp.example", "issuer-2"],
        "name, else the issuer URL, else the place"
    );
    assert_eq!(config.key_path(1, "client_id"), "issuers[1].client_id");
    let single = parsed(INTROSPECTION);
    assert_eq!(single.key_path(0, "client_id"), "client_id");
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let (key, message) = parse_error(&format!("{INTROSPECTION}bogus = 1\n"));
    assert_eq!(key, "validator.bogus");
    assert!(message.contains("unknown field `bogus`"), "{message}");
    assert!(
        message.contains("cache_max_ttl"),
        "lists the keys: {message}"
    );

    let bad = LISTED.replace("client_id = \"bearergate\"", "client_idd = \"bearergate\"");
    let (key, message) = parse_error(&bad);
    assert_eq!(key, "validator.issuers[1].client_idd");
    assert!(message.contains("unknown field `client_idd`"), "{message}");
    assert!(
        !message.contains("cache_max_ttl"),
        "an issuer holds no cache keys: {message}"
    );
}

#[test]
fn wrong_values_are_refused_with_their_path() {
    let cases = [
        (
            INTROSPECTION.replace("timeout = \"3s\"", "timeout = \"soon\""),
            "validator.timeout",
            "`soon` is not a duration",
        ),
        (
            INTROSPECTION.replace("cache_capacity = 10", "cache_capacity = \"many\""),
            "validator.cache_capacity",
            "invalid type",
        ),
        (
            INTROSPECTION.replace("kind = \"introspection\"", "kind = \"ldap\""),
            "validator.kind",
            "unknown variant `ldap`",
        ),
        (
            INTROSPECTION.replace("\"client_secret_post\"", "\"client_secret_jwt\""),
            "validator.client_auth",
            "unknown variant `client_secret_jwt`",
        ),
        (
            LISTED.replace("audience = [\"bearergate\"]", "audience = \"bearergate\""),
            "validator.issuers[0].audience",
            "invalid type",
        ),
        (
            INTROSPECTION.replace(
                "keep_confirmed_tokens = true",
                "keep_confirmed_tokens = \"yes\"",
            ),
            "validator.keep_confirmed_tokens",
            "invalid type",
        ),
        (
            LISTED.replace("kind = \"userinfo\"", "kind = \"userinfo\"\nleeway = 5"),
            "validator.issuers[2].leeway",
            "invalid type",
        ),
    ];
    for (text, want_key, want_message) in cases {
        let (key, message) = parse_error(&text);
        assert_eq!(key, want_key, "{message}");
        assert!(message.contains(want_message), "{key}: {message}");
    }
}

#[test]
fn kind_is_required() {
    let (key, message) = parse_error("[validator]\nclient_id = \"c\"\n");
    assert_eq!(key, "validator");
    assert!(message.contains("missing field `kind`"), "{message}");
    let (key, _) = parse_error(&LISTED.replace("kind = \"userinfo\"\n", ""));
    assert_eq!(key, "validator.issuers[2]");
}

#[test]
fn keys_of_another_kind_are_named_whatever_their_order() {
    let text = LISTED.replace(
        "[[validator.issuers]]\nkind = \"userinfo\"",
        "[[validator.issuers]]\naudience = [\"x\"]\nhmac_secret_file = \"/nonexistent\"\nkind = \"userinfo\"",
    );
    let config = parsed(&text);
    let errors = config.validate().expect_err("foreign keys refused");
    let found: Vec<(&str, &str)> = errors
        .iter()
        .map(|e| (e.key.as_str(), e.problem.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (
                "issuers[2].audience",
                "does not apply to kind = \"userinfo\""
            ),
            (
                "issuers[2].hmac_secret_file",
                "does not apply to kind = \"userinfo\""
            ),
        ]
    );
    assert_eq!(
        errors[0].to_string(),
        "validator.issuers[2].audience: does not apply to kind = \"userinfo\""
    );

    let jwt_on_introspection =
        INTROSPECTION.replace("timeout", "jwks_url = \"https://j\"\ntimeout");
    assert_eq!(problem_keys(&parsed(&jwt_on_introspection)), ["jwks_url"]);
}

#[test]
fn keys_a_kind_needs_are_all_named() {
    let config = parsed("[validator]\nkind = \"introspection\"\n");
    let errors = config.validate().expect_err("incomplete");
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["introspection_url", "client_id", "client_secret"]);
    assert_eq!(
        errors[2].problem,
        "required for kind = \"introspection\" (or client_secret_file)"
    );
    let bearer = parsed(
        "[validator]\nkind = \"introspection\"\nclient_auth = \"bearer\"\n\
         introspection_url = \"https://i.example\"\nclient_secret = \"t\"\n",
    );
    assert_eq!(problem_keys(&bearer), Vec::<String>::new(), "no client_id");
    assert_eq!(
        problem_keys(&parsed("[validator]\nkind = \"jwt\"\naudience = [\"a\"]\n")),
        ["issuer"]
    );
    assert_eq!(
        problem_keys(&parsed("[validator]\nkind = \"userinfo\"\n")),
        ["userinfo_url"]
    );
}

#[test]
fn value_rules_name_the_key_with_the_index() {
    let text = LISTED.replace(
        "\"https://idp.example/introspect\"",
        "\"http://idp.example/i\"",
    );
    assert_eq!(
        problem_keys(&parsed(&text)),
        ["issuers[1].introspection_url"]
    );
    let text = LISTED.replace("name = \"keycloak\"", "name = \"issuer-2\"");
    assert_eq!(problem_keys(&parsed(&text)), ["issuers[2].name"]);
    let text = INTROSPECTION.replace("cache_capacity = 10", "cache_capacity = 0");
    assert_eq!(problem_keys(&parsed(&text)), ["cache_capacity"]);
    let text = INTROSPECTION.replace("smtp = \"mail.send\"", "smtp = \"mail\\\\send\"");
    assert_eq!(problem_keys(&parsed(&text)), ["protocol_scopes"]);
}

#[test]
fn issuer_keys_beside_the_issuer_list_are_named() {
    let text = LISTED.replace("cache_capacity = 5", "cache_capacity = 5\nkind = \"jwt\"");
    assert_eq!(problem_keys(&parsed(&text)), ["kind"]);
    // The other order: [validator] may follow its issuers in the file.
    let issuers = &LISTED[LISTED.find("[[validator.issuers]]").expect("issuers")..];
    let reordered = format!("{issuers}\n[validator]\ntimeout = \"1s\"\n");
    let errors = parsed(&reordered).validate().expect_err("misplaced");
    assert_eq!(errors[0].key, "timeout");
    assert_eq!(errors[0].problem, MISPLACED);
}

#[test]
fn a_secret_and_its_file_are_not_both_given() {
    let text = INTROSPECTION.replace(
        "client_secret = \"s3cret-value\"",
        "client_secret = \"s3cret-value\"\nclient_secret_file = \"secret\"",
    );
    let (key, message) = parse_error(&text);
    assert_eq!(key, "validator.client_secret_file");
    assert_eq!(
        message,
        "give client_secret or client_secret_file, not both"
    );
    let text = "[validator]\nkind = \"jwt\"\nhmac_secret_file = \"f\"\nhmac_secret = \"s\"\n";
    let (key, _) = parse_error(text);
    assert_eq!(key, "validator.hmac_secret");
}

/// A fresh directory for secret files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("validator-load-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("secrets")).expect("create scratch dir");
    dir
}

#[test]
fn secret_files_are_read_relative_to_the_configuration() {
    let dir = scratch("read");
    std::fs::write(dir.join("secrets/client"), "from-the-file\nsecond line\n").expect("write");
    let hmac = "h".repeat(40);
    std::fs::write(dir.join("hmac"), format!("{hmac}\n")).expect("write");
    let text = format!(
        "{}\n[[validator.issuers]]\nkind = \"jwt\"\nissuer = \"https://sso.example\"\n\
         audience = [\"a\"]\nallowed_algorithms = [\"HS256\"]\nhmac_secret_file = {:?}\n",
        LISTED.replace(
            "client_secret = \"s3cret-value\"",
            "client_secret_file = \"secrets/client\""
        ),
        dir.join("hmac").display().to_string(),
    );
    let mut config = parsed(&text);
    let unread = config.validate().expect_err("files not read yet");
    let keys: Vec<&str> = unread.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "issuers[1].client_secret_file",
            "issuers[3].hmac_secret_file"
        ]
    );

    assert_eq!(config.read_secret_files(&dir), Ok(()));
    assert_eq!(config.validate(), Ok(()));
    let secret = &introspection(&config.issuers[1]).client_secret;
    assert_eq!(secret.expose_secret(), "from-the-file", "the first line");
    let shared = jwt(&config.issuers[3]).hmac_secret.as_ref();
    assert_eq!(shared.map(|s| s.expose_secret()), Some(hmac.as_str()));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unreadable_secret_files_name_their_key() {
    let dir = scratch("unreadable");
    std::fs::write(dir.join("empty"), "\nsecret on line two\n").expect("write");
    let text = INTROSPECTION.replace(
        "client_secret = \"s3cret-value\"",
        "client_secret_file = \"missing\"",
    );
    let mut config = parsed(&text);
    let errors = config.read_secret_files(&dir).expect_err("missing file");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].key, "client_secret_file");
    assert!(errors[0].problem.starts_with("cannot read "), "{errors:?}");
    assert!(errors[0].problem.contains("missing"), "{errors:?}");
    assert_eq!(
        problem_keys(&config),
        ["client_secret_file"],
        "still unread"
    );

    let text = INTROSPECTION.replace(
        "client_secret = \"s3cret-value\"",
        "client_secret_file = \"empty\"",
    );
    let mut config = parsed(&text);
    let errors = config
        .read_secret_files(&dir)
        .expect_err("empty first line");
    assert!(errors[0].problem.contains("is empty"), "{errors:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn secrets_do_not_show_in_debug() {
    let config = parsed(INTROSPECTION);
    let debug = format!("{config:?}");
    assert!(!debug.contains("s3cret-value"), "{debug}");
    let config = parsed(
        "[validator]\nkind = \"jwt\"\nissuer = \"https://s.example\"\naudience = [\"a\"]\n\
         hmac_secret = \"a-shared-secret-of-at-least-32-bytes\"\n",
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains("a-shared-secret"), "{debug}");
}

#[test]
fn an_issuer_table_alone() {
    let issuer: IssuerConfig = toml::from_str(
        "kind = \"userinfo\"\nuserinfo_url = \"https://u.example\"\nname = \"google\"\n",
    )
    .expect("parses");
    assert_eq!(issuer.name, "google");
    assert_eq!(issuer.validate(), Ok(()));
    let issuer: IssuerConfig =
        toml::from_str("kind = \"userinfo\"\nuserinfo_url = \"https://u.example\"\n")
            .expect("parses");
    assert_eq!(issuer.name, "default");
    let error = toml::from_str::<IssuerConfig>("kind = \"jwt\"\ncache_capacity = 1\n")
        .expect_err("no cache keys in an issuer");
    assert!(error.message().contains("cache_capacity"), "{error}");
}
