//! The shipped configurations — `proxy.toml` and every `examples/*.toml` — pass
//! `bearergate check-config`, and each example keeps the listeners and backends of
//! `proxy.toml`, so that it is a whole file an admin can start from.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{run, TestCerts, TestDir};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `proxy.toml` and the examples, sorted by name.
fn shipped_configs() -> Vec<PathBuf> {
    let dir = repo().join("examples");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files.insert(0, repo().join("proxy.toml"));
    files
}

fn parse(path: &Path) -> toml::Table {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{} is not TOML: {e}", path.display()))
}

/// A string key of the `[tls]` table.
fn tls_path(config: &toml::Table, key: &str) -> String {
    config["tls"][key]
        .as_str()
        .unwrap_or_else(|| panic!("tls.{key} is not a string"))
        .to_owned()
}

fn check_config(config: &Path) -> Output {
    // Run from `/`, not the config's directory: relative paths must resolve against the file.
    run(Command::new(env!("CARGO_BIN_EXE_bearergate"))
        .args(["check-config", "--config"])
        .arg(config)
        .current_dir("/"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Copies `original` into a fresh directory, with a test certificate and key at the paths its
/// `[tls]` table names (relative to the copy, as `scripts/run` creates them beside proxy.toml).
fn copy_with_certs(original: &Path, dir: &Path) -> PathBuf {
    let name = original.file_name().expect("file name");
    let copy = dir.join(name);
    fs::copy(original, &copy).unwrap_or_else(|e| panic!("copy {}: {e}", original.display()));
    let config = parse(original);
    let scratch = dir.join("generated-certs");
    fs::create_dir_all(&scratch).expect("create scratch dir");
    let certs = TestCerts::generate(&scratch);
    for (key, generated) in [("cert", &certs.cert_pem), ("key", &certs.key_pem)] {
        let target = dir.join(tls_path(&config, key));
        fs::create_dir_all(target.parent().expect("parent")).expect("create cert dir");
        fs::copy(generated, &target)
            .unwrap_or_else(|e| panic!("copy to {}: {e}", target.display()));
    }
    copy
}

#[test]
fn examples_and_proxy_toml_pass_check_config() {
    let configs = shipped_configs();
    assert!(
        configs.len() >= 6,
        "expected proxy.toml and at least five examples, found {configs:?}"
    );
    let mut failures = Vec::new();
    for original in &configs {
        let label = original.file_stem().expect("stem").to_string_lossy();
        let dir = TestDir::new(&format!("examples-{label}"));
        let copy = copy_with_certs(original, dir.path());
        let out = check_config(&copy);
        if !out.status.success() {
            failures.push(format!(
                "{} ({}):\n{}",
                original.display(),
                out.status,
                text(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "refused:\n{}", failures.join("\n"));
}

/// The check is real: an example without its certificate files is refused, naming the key.
#[test]
fn examples_without_certificates_are_refused() {
    let dir = TestDir::new("examples-nocerts");
    for original in shipped_configs() {
        let copy = dir.path().join(original.file_name().expect("file name"));
        fs::copy(&original, &copy).expect("copy config");
        let out = check_config(&copy);
        assert!(
            !out.status.success(),
            "{} accepted without its certificate",
            original.display()
        );
        assert!(
            text(&out.stderr).contains("tls.cert"),
            "{}: {}",
            original.display(),
            text(&out.stderr)
        );
    }
}

/// Every example is a whole file: the same log, TLS, listeners and backends as proxy.toml,
/// a header comment saying what to change, and a `[validator]`.
#[test]
fn examples_keep_the_listeners_and_backends_of_proxy_toml() {
    let reference = parse(&repo().join("proxy.toml"));
    for path in shipped_configs().iter().skip(1) {
        let example = parse(path);
        for table in ["drain_timeout", "log", "tls", "listeners", "backends"] {
            assert_eq!(
                example.get(table),
                reference.get(table),
                "{}: `{table}` differs from proxy.toml",
                path.display()
            );
        }
        assert!(
            example.contains_key("validator"),
            "{}: no [validator]",
            path.display()
        );
        let text = fs::read_to_string(path).expect("read example");
        assert!(
            text.starts_with("# ") && text.contains("# Change:"),
            "{}: needs a header comment with a `# Change:` line",
            path.display()
        );
    }
}

/// The systemd unit in `examples/` is one systemd accepts, runs the binary it names with the
/// documented configuration, reloads with SIGHUP and keeps its hardening.
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let original = repo().join("examples/bearergate@.service");
    let unit = fs::read_to_string(&original).expect("read the unit");
    for line in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "ExecStart=/usr/local/bin/bearergate --config /etc/bearergate/proxy.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks `{line}`");
    }
    // verify checks that commands exist: point them at the binary under test.
    let dir = TestDir::new("systemd-unit");
    let binary = env!("CARGO_BIN_EXE_bearergate");
    let copy = dir.path().join("bearergate@a.service");
    fs::write(&copy, unit.replace("/usr/local/bin/bearergate", binary)).expect("write unit");
    let output = run(Command::new("systemd-analyze").arg("verify").arg(&copy));
    let complaints = text(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{complaints}",
        output.status
    );
}
