//! `otsensor default-config` and `otsensor check-config`, run as the built binary.

use std::collections::BTreeMap;
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
    // The file operators are pointed to, read from disk (not the constant the binary
    // embeds), and the documented defaults of docs/CONFIG.md, checked below.
    let deploy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/otsensor.yaml"
    ))
    .expect("deploy/otsensor.yaml");
    assert_eq!(
        printed, deploy,
        "default-config prints deploy/otsensor.yaml"
    );
    assert!(printed.contains("# Worker threads"), "comments missing");

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

/// Every leaf of a YAML document as (dotted path, value).
fn leaves(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(&path, value, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), normalized(other));
        }
    }
}

/// A default as docs/CONFIG.md writes it (`7d`, `[502, 20000]`, `0x8892`, `null`) as
/// the value YAML would give.
fn doc_value(text: &str) -> serde_json::Value {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let items: Vec<serde_json::Value> = inner
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(doc_value)
            .collect();
        return serde_json::Value::Array(items);
    }
    match text {
        "null" => return serde_json::Value::Null,
        "true" => return serde_json::Value::Bool(true),
        "false" => return serde_json::Value::Bool(false),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            return n.into();
        }
    }
    if let Ok(n) = text.parse::<u64>() {
        return n.into();
    }
    serde_json::Value::String(text.to_owned())
}

/// A printed scalar read the way [`doc_value`] reads the docs, so that how the YAML
/// parser types a scalar (`0x8892`, `8`) does not matter.
fn normalized(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(text) => doc_value(text),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(normalized).collect())
        }
        other => other.clone(),
    }
}

/// The `default` column of docs/CONFIG.md's field tables (and the one list documented
/// in prose), by dotted path.
fn documented_defaults() -> BTreeMap<String, serde_json::Value> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIG.md"))
        .expect("docs/CONFIG.md");
    let fields = doc
        .split_once("## Fields")
        .map(|(_, rest)| rest.split("\n## ").next().unwrap_or(rest))
        .expect("a Fields section");
    let mut defaults = BTreeMap::new();
    let mut section = String::new();
    for line in fields.lines() {
        if let Some(heading) = line.strip_prefix("### `").and_then(|h| h.strip_suffix('`')) {
            section = heading.to_owned();
            continue;
        }
        if let Some(rest) = line.strip_prefix("A list of IP addresses or CIDR networks, default `")
        {
            let value = rest.split('`').next().unwrap_or("");
            defaults.insert(section.clone(), doc_value(value));
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(field), Some(default)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(field) = field.strip_prefix('`').and_then(|f| f.strip_suffix('`')) else {
            continue;
        };
        // `a`, `b`, `c` is a list; one `x` is a scalar.
        let quoted: Vec<&str> = default.split('`').skip(1).step_by(2).collect();
        let value = match quoted.as_slice() {
            [one] => doc_value(one),
            many => serde_json::Value::Array(many.iter().map(|v| doc_value(v)).collect()),
        };
        defaults.insert(format!("{section}.{field}"), value);
    }
    defaults
}

#[test]
fn printed_defaults_are_the_documented_ones() {
    let output = otsensor(&["default-config"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let printed: serde_json::Value = match serde_saphyr::from_str(&text(&output.stdout)) {
        Ok(value) => value,
        Err(error) => panic!("printed config is not YAML: {error}"),
    };
    let mut printed_leaves = BTreeMap::new();
    leaves("", &printed, &mut printed_leaves);
    let documented = documented_defaults();
    assert!(
        documented.len() > 30,
        "only {} documented fields found: {documented:?}",
        documented.len()
    );
    let mut differences = Vec::new();
    for (path, value) in &printed_leaves {
        match documented.get(path) {
            None => differences.push(format!("{path}: printed {value}, not documented")),
            Some(doc) if doc != value => {
                differences.push(format!("{path}: printed {value}, documented {doc}"));
            }
            Some(_) => {}
        }
    }
    for path in documented.keys() {
        if !printed_leaves.contains_key(path) {
            differences.push(format!("{path}: documented, not printed"));
        }
    }
    assert!(
        differences.is_empty(),
        "default-config and docs/CONFIG.md disagree:\n{}",
        differences.join("\n")
    );
}
