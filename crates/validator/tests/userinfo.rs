//! Userinfo mode through the public API: its configuration. The HTTP exchange is tested
//! inside `src/userinfo.rs`, where the client is reachable.

use std::time::Duration;

use validator::{ConfigError, UserinfoConfig, UserinfoRequest, DEFAULT_TIMEOUT};

fn config(url: &str) -> UserinfoConfig {
    UserinfoConfig::new(url, UserinfoRequest::Bearer)
}

#[test]
fn userinfo_config_defaults() {
    let c = UserinfoConfig::new(
        "https://oauth2.googleapis.com/tokeninfo",
        UserinfoRequest::Form,
    );
    assert_eq!(c.request, UserinfoRequest::Form);
    assert_eq!(c.timeout, DEFAULT_TIMEOUT);
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn userinfo_url_must_be_https_unless_loopback() {
    let ok = [
        "https://graph.microsoft.com/oidc/userinfo",
        "https://oauth2.googleapis.com/tokeninfo",
        "http://127.0.0.1:8080/userinfo",
        "http://localhost/userinfo",
        "http://[::1]:9000/userinfo",
    ];
    for url in ok {
        assert_eq!(config(url).validate(), Ok(()), "{url}");
    }
    let bad = [
        "graph.microsoft.com/oidc/userinfo",
        "http://graph.microsoft.com/oidc/userinfo",
        "http://10.0.0.1/userinfo",
        "ftp://idp.example/userinfo",
        "https://user:pw@idp.example/userinfo",
    ];
    for url in bad {
        match config(url).validate() {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "userinfo_url"),
            other => panic!("{url}: {other:?}"),
        }
    }
}

#[test]
fn userinfo_zero_timeout_is_refused() {
    let mut c = config("https://graph.microsoft.com/oidc/userinfo");
    c.timeout = Duration::ZERO;
    let err = c.validate().unwrap_err();
    assert!(err.to_string().starts_with("validator.timeout:"), "{err}");
}

#[test]
fn userinfo_config_debug_names_the_endpoint_and_mode() {
    let text = format!(
        "{:?}",
        UserinfoConfig::new(
            "https://oauth2.googleapis.com/tokeninfo",
            UserinfoRequest::Form
        )
    );
    assert!(text.contains("oauth2.googleapis.com/tokeninfo"), "{text}");
    assert!(text.contains("Form"), "{text}");
}
