//! The command line contract (DESIGN.md): `--version`, and `check-config`, which exits 0 for a
//! valid file and otherwise names the key of every problem on stderr with a non-zero exit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{run, TestCerts, TestDir};

/// Run the binary with `args` from `cwd` (not the config's directory, so relative paths in a
/// config must resolve against the file's own directory).
fn bearergate(cwd: &Path, args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_bearergate"))
        .args(args)
        .current_dir(cwd))
}

fn check_config(config: &Path) -> Output {
    let config = config.to_str().expect("UTF-8 path");
    bearergate(Path::new("/"), &["check-config", "--config", config])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A complete, valid configuration: one implicit-TLS listener with the test certificates
/// (relative paths), one master-user backend, a loopback introspection endpoint.
fn good_config(dir: &Path) -> String {
    let certs = dir.join("certs");
    fs::create_dir_all(&certs).expect("create certs dir");
    TestCerts::generate(&certs);
    r#"drain_timeout = "5s"

[log]
format = "json"
level = "info,bearergate=debug"

[metrics]
listen = "127.0.0.1:9187"

[tls]
cert = "certs/server.crt"
key = "certs/server.key"

[[listeners]]
protocol = "imap"
listen = "127.0.0.1:10993"
tls = "implicit"
backend = "imap"

[backends.imap]
address = "127.0.0.1:143"
tls = "none"
login = "master"
master_user = "proxymaster"
master_password = "secret"

[validator]
kind = "introspection"
introspection_url = "http://127.0.0.1:8080/introspect"
client_id = "bearergate"
client_secret = "secret"
username_claim = "username"
required_scope = "mail"
"#
    .to_owned()
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).expect("write config");
    path
}

/// `good` with `from` replaced by `to` once; panics when `from` is not there, so a changed
/// fixture cannot silently turn a negative test into a positive one.
fn edit(good: &str, from: &str, to: &str) -> String {
    assert!(good.contains(from), "fixture lacks {from:?}");
    good.replacen(from, to, 1)
}

/// `check-config` must refuse `config` and name `key` on stderr.
fn assert_refused_naming(dir: &Path, config: &str, key: &str) {
    let path = write(dir, "bad.toml", config);
    let out = check_config(&path);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "check-config accepted a config that should fail at {key}:\n{config}\nstdout: {}",
        text(&out.stdout)
    );
    assert!(
        stderr.contains(key),
        "stderr does not name the key {key:?}:\n{stderr}"
    );
}

#[test]
fn version_prints_the_package_version_and_exits_0() {
    let dir = TestDir::new("cli-version");
    let out = bearergate(dir.path(), &["--version"]);
    assert!(out.status.success(), "--version: {:?}", out.status);
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("bearergate {}", env!("CARGO_PKG_VERSION")),
        "--version output"
    );
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = TestDir::new("cli-good");
    let path = write(dir.path(), "good.toml", &good_config(dir.path()));
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "valid config refused ({}):\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = TestDir::new("cli-unknown");
    let good = good_config(dir.path());
    let bad = edit(
        &good,
        "backend = \"imap\"\n",
        "backend = \"imap\"\nbogus = 1\n",
    );
    assert_refused_naming(dir.path(), &bad, "listeners[0].bogus");
}

#[test]
fn check_config_names_a_wrong_enum_value() {
    let dir = TestDir::new("cli-enum");
    let good = good_config(dir.path());
    let bad = edit(&good, "tls = \"implicit\"", "tls = \"sometimes\"");
    assert_refused_naming(dir.path(), &bad, "listeners[0].tls");
}

#[test]
fn check_config_names_a_missing_backend_reference() {
    let dir = TestDir::new("cli-backend");
    let good = good_config(dir.path());
    let bad = edit(&good, "backend = \"imap\"", "backend = \"nowhere\"");
    assert_refused_naming(dir.path(), &bad, "listeners[0].backend");
}

#[test]
fn check_config_names_a_missing_certificate_file() {
    let dir = TestDir::new("cli-nocert");
    let good = good_config(dir.path());
    let bad = edit(&good, "certs/server.crt", "certs/absent.crt");
    assert_refused_naming(dir.path(), &bad, "tls.cert");
}

#[test]
fn check_config_reports_a_missing_file() {
    let dir = TestDir::new("cli-missing");
    let missing = dir.path().join("no-such-proxy.toml");
    let out = check_config(&missing);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "missing file accepted");
    assert!(
        stderr.contains("no-such-proxy.toml"),
        "stderr does not name the missing file:\n{stderr}"
    );
}

/// The repository's own `proxy.toml` (the documented default) is valid once its certificate
/// exists: `scripts/run` creates `certs/server.crt|key` next to it the same way.
#[test]
fn check_config_accepts_the_shipped_proxy_toml() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proxy.toml");
    let dir = TestDir::new("cli-shipped");
    let copy = dir.path().join("proxy.toml");
    fs::copy(&shipped, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", shipped.display()));

    // Without the certificate the file is refused, naming the key: the check is real.
    let out = check_config(&copy);
    assert!(!out.status.success(), "accepted without certs/server.crt");
    assert!(
        text(&out.stderr).contains("tls.cert"),
        "{}",
        text(&out.stderr)
    );

    let certs = dir.path().join("certs");
    fs::create_dir_all(&certs).expect("create certs dir");
    TestCerts::generate(&certs);
    let out = check_config(&copy);
    assert!(
        out.status.success(),
        "shipped proxy.toml refused ({}):\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
}
