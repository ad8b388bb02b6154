//! `otsensor default-config` and `otsensor check-config`, run as the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn otsensor(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_otsensor"))
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!("cannot run otsensor {args:?}: {error}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A scratch directory per test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("otsensor-{name}-{}", std::process::id()));
        if let Err(error) = std::fs::create_dir_all(&dir) {
            panic!("create {}: {error}", dir.display());
        }
        Scratch(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Err(error) = std::fs::write(&path, contents) {
            panic!("write {}: {error}", path.display());
        }
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn check_config(path: &Path) -> Output {
    let Some(path) = path.to_str() else {
        panic!("non-UTF-8 scratch path {}", path.display());
    };
    otsensor(&["check-config", path])
}

#[test]
fn default_config_prints_the_commented_template_and_it_checks_ok() {
    let output = otsensor(&["default-config"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed = text(&output.stdout);
    assert_eq!(printed, otsensor::config::DEFAULT_CONFIG_YAML);
    assert!(printed.contains("# Worker threads"), "comments missing");
    assert!(printed.contains("idle_timeout: 10m"));

    let scratch = Scratch::new("default-config");
    let path = scratch.file("otsensor.yaml", &printed);
    let output = check_config(&path);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{}: ok\n", path.display()));
    let parsed = match otsensor::config::Config::from_yaml(&printed) {
        Ok(config) => config,
        Err(error) => panic!("printed template does not parse: {error}"),
    };
    assert_eq!(parsed, otsensor::config::Config::default());
}

#[test]
fn the_deploy_example_is_the_default_template() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/otsensor.yaml");
    let output = check_config(Path::new(path));
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn check_config_accepts_an_empty_file() {
    let scratch = Scratch::new("empty-config");
    let path = scratch.file("empty.yaml", "");
    let output = check_config(&path);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn check_config_refuses_bad_files_with_exit_1_and_the_reason() {
    let scratch = Scratch::new("bad-config");
    let cases = [
        (
            "unknown.yaml",
            "flows:\n  max_flow: 10\n",
            "unknown field `max_flow` in `flows`; did you mean `max_flows`? (line 2, column 3)",
        ),
        (
            "cidr.yaml",
            "networks:\n  internal: [10.0.0.0/8, 10.0.0.0/33]\n",
            "networks.internal[1]: \"10.0.0.0/33\" is not a valid CIDR",
        ),
        (
            "port.yaml",
            "capture:\n  industrial_tcp_ports: [0]\n",
            "capture.industrial_tcp_ports[0]: 0 is not a valid port",
        ),
        (
            "duration.yaml",
            "flows:\n  idle_timeout: soon\n",
            "flows.idle_timeout: \"soon\" is not a valid duration",
        ),
        (
            "workers.yaml",
            "pipeline:\n  workers: 0\n",
            "pipeline.workers: 0 is out of range: must be between 1 and 256 (line 2, column 12)",
        ),
        (
            "type.yaml",
            "inventory:\n  max_devices: lots\n",
            "inventory.max_devices: \"lots\" is not valid: must be a whole number",
        ),
        (
            "ring.yaml",
            "capture:\n  ring_size: 1000\n",
            "capture.ring_size: 1000 is not valid: AF_XDP rings must be a power of two",
        ),
    ];
    for (name, contents, expected) in cases {
        let path = scratch.file(name, contents);
        let output = check_config(&path);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}: printed ok");
        assert!(
            stderr.starts_with(&format!("otsensor: {}: ", path.display())),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn check_config_refuses_a_yaml_bomb_without_running_away() {
    let scratch = Scratch::new("bomb-config");
    let aliases = vec!["*net"; 5000].join(", ");
    let path = scratch.file(
        "bomb.yaml",
        &format!("networks:\n  external_allowlist: [&net 192.0.2.0/24, {aliases}]\n"),
    );
    let output = check_config(&path);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("networks.external_allowlist"), "{stderr}");
}

#[test]
fn check_config_reports_a_missing_file() {
    let output = otsensor(&["check-config", "/nonexistent/otsensor.yaml"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/otsensor.yaml: cannot read"),
        "{stderr}"
    );
}
