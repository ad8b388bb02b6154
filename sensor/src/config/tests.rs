//! Tests of the configuration file: defaults, the documented template, and the
//! message for every kind of refused input.

use std::collections::BTreeSet;

use super::*;

fn parse(text: &str) -> Config {
    match Config::from_yaml(text) {
        Ok(config) => config,
        Err(error) => panic!("expected {text:?} to parse, got: {error}"),
    }
}

fn refusal(text: &str) -> Error {
    match Config::from_yaml(text).and_then(|config| config.validate().map(|_| config)) {
        Ok(config) => panic!("expected {text:?} to be refused, got {config:?}"),
        Err(error) => error,
    }
}

fn policy(config: &Config) -> Policy {
    match config.validate() {
        Ok(policy) => policy,
        Err(error) => panic!("expected a valid config, got: {error}"),
    }
}

fn validate_refusal(config: &Config) -> String {
    match config.validate() {
        Ok(_) => panic!("expected {config:?} to be refused"),
        Err(error) => error.to_string(),
    }
}

const SECOND_NS: u64 = 1_000_000_000;

#[test]
fn defaults_are_valid_and_documented_values() {
    let policy = policy(&Config::default());
    assert_eq!(policy.workers, 1);
    assert_eq!(policy.batch_packets, 256);
    assert_eq!(policy.max_flows, 1_000_000);
    assert_eq!(policy.flow_idle_timeout_ns, 600 * SECOND_NS);
    assert_eq!(policy.flow_closed_timeout_ns, 30 * SECOND_NS);
    assert_eq!(policy.max_devices, 100_000);
    assert_eq!(policy.learning_duration_ns, 7 * 86_400 * SECOND_NS);
    assert_eq!(policy.scan_window_ns, 120 * SECOND_NS);
    assert_eq!(policy.silent_window_ns, 300 * SECOND_NS);
    assert_eq!(policy.port_scan_ports, 25);
    assert_eq!(policy.address_scan_hosts, 50);
    assert_eq!(policy.discovery_sweep, 10);
    assert_eq!(policy.silent_unanswered_requests, 8);
    assert_eq!(policy.silent_quiet_factor, 4);
    assert_eq!(policy.silent_quiet_floor_ns, 60 * SECOND_NS);
    assert!(policy.engineering_workstations.is_empty());
    assert_eq!(policy.first_packets_per_flow, 8);
    assert_eq!(policy.http_listen.to_string(), "127.0.0.1:9750");
    assert!(policy.http_api_token.is_none());
    assert!(!policy.eve_protocol_events);
    assert_eq!(policy.xdp_mode, XdpMode::Auto);
    assert_eq!(policy.bulk_action, BulkAction::Drop);
    for port in [502, 20000, 44818, 102, 2404, 4840, 1883, 8883] {
        assert!(policy.is_industrial_tcp_port(port), "tcp {port}");
    }
    for port in [47808, 44818, 2222, 34964, 137, 161, 5353] {
        assert!(policy.is_industrial_udp_port(port), "udp {port}");
    }
    assert!(!policy.is_industrial_tcp_port(80));
    assert!(!policy.is_industrial_udp_port(53));
    for ethertype in [0x8892, 0x88B8, 0x88CC] {
        assert!(policy.is_industrial_ethertype(ethertype));
    }
    assert!(!policy.is_industrial_ethertype(0x0800));
    for internal in [
        "10.1.2.3",
        "172.31.0.1",
        "192.168.1.1",
        "169.254.9.9",
        "fd00::1",
        "fe80::1",
    ] {
        assert!(policy.is_internal(ip(internal)), "{internal}");
    }
    for external in ["8.8.8.8", "172.32.0.1", "2001:db8::1"] {
        assert!(!policy.is_internal(ip(external)), "{external}");
    }
    assert!(!policy.is_external_allowed(ip("8.8.8.8")));
}

fn ip(text: &str) -> IpAddr {
    match text.parse() {
        Ok(ip) => ip,
        Err(error) => panic!("{text}: {error}"),
    }
}

#[test]
fn empty_and_comment_only_files_mean_all_defaults() {
    assert_eq!(parse(""), Config::default());
    assert_eq!(parse("\n  \n"), Config::default());
    assert_eq!(parse("# nothing set\n"), Config::default());
    assert_eq!(parse("---\n"), Config::default());
}

#[test]
fn the_default_template_parses_to_the_defaults() {
    assert_eq!(parse(DEFAULT_CONFIG_YAML), Config::default());
}

/// Dotted paths of every key in the template, in a simple two-space YAML layout.
fn template_keys(template: &str) -> Vec<(String, usize)> {
    let mut stack: Vec<String> = Vec::new();
    let mut keys = Vec::new();
    for (number, line) in template.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('-') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        assert_eq!(indent % 2, 0, "line {}: odd indentation", number + 1);
        let Some((key, _)) = trimmed.split_once(':') else {
            panic!("line {}: not a key: {line:?}", number + 1);
        };
        stack.truncate(indent / 2);
        stack.push(key.to_string());
        keys.push((stack.join("."), number));
    }
    keys
}

/// Dotted paths of every field of `Config`, from its serialized form.
fn config_fields() -> BTreeSet<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeSet<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                out.insert(path.clone());
                walk(&path, child, out);
            }
        }
    }
    let value = match serde_json::to_value(Config::default()) {
        Ok(value) => value,
        Err(error) => panic!("serialize: {error}"),
    };
    let mut out = BTreeSet::new();
    walk("", &value, &mut out);
    out
}

#[test]
fn the_template_names_every_field_with_a_comment_above_it() {
    let keys = template_keys(DEFAULT_CONFIG_YAML);
    let in_template: BTreeSet<String> = keys.iter().map(|(path, _)| path.clone()).collect();
    let fields = config_fields();
    assert!(fields.len() > 40, "only {} fields found", fields.len());
    assert_eq!(in_template, fields);
    let lines: Vec<&str> = DEFAULT_CONFIG_YAML.lines().collect();
    for (path, number) in keys {
        let above = lines
            .get(..number)
            .and_then(|before| before.iter().rev().find(|l| !l.trim().is_empty()));
        assert!(
            above.is_some_and(|l| l.trim_start().starts_with('#')),
            "{path} (line {}) has no comment above it",
            number + 1
        );
    }
}

#[test]
fn human_durations_and_plain_seconds_reach_the_policy() {
    let config = parse(
        "flows:\n  idle_timeout: 1h30m\n  closed_timeout: 45\nlearning:\n  duration: 0s\n\
         detection:\n  scan:\n    window: 1500ms\n",
    );
    let policy = policy(&config);
    assert_eq!(policy.flow_idle_timeout_ns, 5400 * SECOND_NS);
    assert_eq!(policy.flow_closed_timeout_ns, 45 * SECOND_NS);
    assert_eq!(policy.learning_duration_ns, 0);
    assert_eq!(policy.scan_window_ns, 1_500_000_000);
}

#[test]
fn sections_fill_missing_fields_with_defaults() {
    let config = parse("pipeline:\n  workers: 4\nnetworks:\n  external_allowlist: [203.0.113.0/24, 198.51.100.7]\n");
    assert_eq!(config.pipeline.workers, 4);
    assert_eq!(config.pipeline.batch_packets, 256);
    assert_eq!(config.networks.internal, NetworksConfig::default().internal);
    let policy = policy(&config);
    assert!(policy.is_external_allowed(ip("203.0.113.9")));
    assert!(policy.is_external_allowed(ip("198.51.100.7")));
    assert!(!policy.is_external_allowed(ip("198.51.100.8")));
}

#[test]
fn unknown_fields_are_refused_with_the_closest_name() {
    let error = refusal("flows:\n  max_flow: 10\n");
    assert_eq!(
        error.to_string(),
        "unknown field `max_flow` in `flows`; did you mean `max_flows`? (line 2, column 3)"
    );
    let old_name = refusal("flows:\n  idle_timeout_seconds: 600\n").to_string();
    assert!(
        old_name.contains("did you mean `idle_timeout`?"),
        "{old_name}"
    );
    let top = refusal("flow:\n  max_flows: 10\n").to_string();
    assert!(
        top.starts_with("unknown field `flow` at the top level; did you mean `flows`?"),
        "{top}"
    );
    let nested = refusal("detection:\n  scan:\n    windw: 2m\n").to_string();
    assert!(
        nested.starts_with("unknown field `windw` in `detection.scan`; did you mean `window`?"),
        "{nested}"
    );
    let eve = refusal("outputs:\n  eve:\n    protocol_event: true\n").to_string();
    assert!(
        eve.starts_with(
            "unknown field `protocol_event` in `outputs.eve`; did you mean `protocol_events`?"
        ),
        "{eve}"
    );
    let far = refusal("inventory:\n  zebra: 1\n").to_string();
    assert_eq!(
        far,
        "unknown field `zebra` in `inventory`; expected one of: max_devices (line 2, column 3)"
    );
}

#[test]
fn unknown_enum_values_are_refused_with_the_closest_value() {
    let error = refusal("capture:\n  xdp_mode: drivr\n").to_string();
    assert_eq!(
        error,
        "capture.xdp_mode: \"drivr\" is not valid: expected one of auto, driver, generic; \
         did you mean `driver`? (line 2, column 13)"
    );
}

#[test]
fn invalid_cidrs_name_the_element_the_value_and_why() {
    let error = refusal("networks:\n  internal:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n");
    assert_eq!(
        error.to_string(),
        "networks.internal[1]: \"10.0.0.0/33\" is not a valid CIDR: prefix length \"33\" must be \
         0 to 32 for IPv4 (line 4, column 7)"
    );
    let word = refusal("networks:\n  external_allowlist: [plant]\n").to_string();
    assert!(
        word.starts_with("networks.external_allowlist[0]: \"plant\" is not a valid CIDR"),
        "{word}"
    );
    let empty = refusal("networks:\n  internal: []\n").to_string();
    assert_eq!(
        empty,
        "networks.internal: [] is not valid: list at least one internal network"
    );
}

#[test]
fn invalid_ports_are_refused() {
    let zero = refusal("capture:\n  industrial_tcp_ports: [502, 0]\n").to_string();
    assert!(
        zero.starts_with(
            "capture.industrial_tcp_ports[1]: 0 is not a valid port: must be between 1 and 65535"
        ),
        "{zero}"
    );
    assert!(zero.contains("(line 2"), "{zero}");
    let high = refusal("capture:\n  industrial_udp_ports: [70000]\n").to_string();
    assert!(
        high.starts_with("capture.industrial_udp_ports[0]: 70000 is not a valid port"),
        "{high}"
    );
    let negative = refusal("capture:\n  industrial_udp_ports: [-1]\n").to_string();
    assert!(
        negative.starts_with("capture.industrial_udp_ports[0]: -1 is not a valid port"),
        "{negative}"
    );
    let mut config = Config::default();
    config.capture.industrial_tcp_ports = vec![502, 0];
    assert_eq!(
        validate_refusal(&config),
        "capture.industrial_tcp_ports[1]: 0 is not a valid port: must be between 1 and 65535"
    );
}

#[test]
fn ethertypes_accept_hex_and_refuse_lengths() {
    let config = parse("capture:\n  industrial_ethertypes: [0x88a4, \"0x8100\", 35020]\n");
    assert_eq!(
        config.capture.industrial_ethertypes,
        vec![0x88A4, 0x8100, 0x88CC]
    );
    let small = refusal("capture:\n  industrial_ethertypes: [0x05dc]\n").to_string();
    assert!(
        small.starts_with("capture.industrial_ethertypes[0]: 0x05dc is not a valid EtherType"),
        "{small}"
    );
}

#[test]
fn invalid_durations_are_refused() {
    let unit = refusal("flows:\n  idle_timeout: 10x\n").to_string();
    assert_eq!(
        unit,
        "flows.idle_timeout: \"10x\" is not a valid duration: unknown unit \"x\" (use ms, s, m, h, d or w) \
         (line 2, column 17)"
    );
    let negative = refusal("flows:\n  closed_timeout: -5\n").to_string();
    assert!(
        negative.starts_with("flows.closed_timeout: -5 is not a valid duration: it is negative"),
        "{negative}"
    );
    let zero = refusal("detection:\n  silent_device:\n    window: 0s\n").to_string();
    assert!(
        zero.starts_with("detection.silent_device.window: \"0s\" is not a valid duration here: must be greater than zero"),
        "{zero}"
    );
    let mut config = Config::default();
    config.flows.idle_timeout = HumanDuration::from_secs(0);
    assert_eq!(
        validate_refusal(&config),
        "flows.idle_timeout: \"0s\" is not a valid duration here: must be greater than zero"
    );
}

#[test]
fn workers_out_of_range_are_refused() {
    let zero = refusal("pipeline:\n  workers: 0\n").to_string();
    assert_eq!(
        zero,
        "pipeline.workers: 0 is out of range: must be between 1 and 256 (line 2, column 12)"
    );
    let many = refusal("pipeline:\n  workers: 1000\n").to_string();
    assert!(
        many.starts_with("pipeline.workers: 1000 is out of range"),
        "{many}"
    );
    let mut config = Config::default();
    config.pipeline.workers = 0;
    assert_eq!(
        validate_refusal(&config),
        "pipeline.workers: 0 is out of range: must be between 1 and 256"
    );
}

#[test]
fn zero_sizes_are_refused() {
    for (text, field) in [
        ("pipeline:\n  batch_packets: 0\n", "pipeline.batch_packets"),
        (
            "pipeline:\n  observation_queue: 0\n",
            "pipeline.observation_queue",
        ),
        ("flows:\n  max_flows: 0\n", "flows.max_flows"),
        ("inventory:\n  max_devices: 0\n", "inventory.max_devices"),
        ("capture:\n  ring_size: 0\n", "capture.ring_size"),
        (
            "capture:\n  first_packets_per_flow: 0\n",
            "capture.first_packets_per_flow",
        ),
        (
            "detection:\n  scan:\n    port_scan_ports: 0\n",
            "detection.scan.port_scan_ports",
        ),
    ] {
        let error = refusal(text).to_string();
        assert!(
            error.starts_with(&format!("{field}: 0 is not valid: must be at least 1")),
            "{text:?}: {error}"
        );
    }
    let mut config = Config::default();
    config.inventory.max_devices = 0;
    assert_eq!(
        validate_refusal(&config),
        "inventory.max_devices: 0 is not valid: must be at least 1"
    );
}

#[test]
fn values_of_the_wrong_type_are_refused_with_the_field() {
    let word = refusal("pipeline:\n  workers: many\n").to_string();
    assert_eq!(
        word,
        "pipeline.workers: \"many\" is not valid: must be a whole number (line 2, column 12)"
    );
    let list = refusal("flows: [1, 2]\n").to_string();
    assert!(list.starts_with("flows: "), "{list}");
    assert!(list.contains("line 1"), "{list}");
    let yes = refusal("outputs:\n  eve:\n    enabled: yes\n").to_string();
    assert!(yes.starts_with("outputs.eve.enabled: "), "{yes}");
    let scalar_root = refusal("just a string\n").to_string();
    assert!(!scalar_root.is_empty());
    let listen = refusal("http:\n  listen: localhost\n").to_string();
    assert!(
        listen.starts_with("http.listen: \"localhost\" is not a valid listen address"),
        "{listen}"
    );
}

#[test]
fn broken_yaml_is_a_syntax_error_with_a_position() {
    let error = refusal("pipeline:\n  workers: [1\nflows: {\n");
    let text = error.to_string();
    assert!(text.contains("line"), "{text}");
    let duplicate = refusal("pipeline:\n  workers: 2\n  workers: 3\n").to_string();
    assert!(
        duplicate.starts_with("pipeline: duplicate mapping key `workers`"),
        "{duplicate}"
    );
    assert!(duplicate.ends_with("(line 3, column 3)"), "{duplicate}");
}

#[test]
fn alias_bombs_and_deep_nesting_are_refused_without_exhausting_memory() {
    // The "billion laughs": each level multiplies the previous one tenfold. The schema
    // has no field that takes nested lists, so it is refused at its first key.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let previous = level - 1;
        let refs = vec![format!("*a{previous}"); 10].join(", ");
        bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    let error = refusal(&bomb).to_string();
    assert!(
        error.starts_with("unknown field `a0` at the top level"),
        "{error}"
    );

    // Aliases inside a valid field stop at the parser budget.
    let aliases = vec!["*net"; 200].join(", ");
    let flood = format!("networks:\n  external_allowlist: [&net 192.0.2.0/24, {aliases}]\n");
    let error = refusal(&flood).to_string();
    assert!(error.starts_with("networks.external_allowlist"), "{error}");
    assert!(
        error.contains("too many aliases (101; a configuration may use at most 100)"),
        "{error}"
    );

    let deep_flow = format!(
        "networks:\n  internal: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let error = refusal(&deep_flow).to_string();
    assert!(
        error.starts_with("networks.internal: recursion limit exceeded"),
        "{error}"
    );

    let mut deep_block = String::from("pipeline:\n");
    for depth in 1..200 {
        deep_block.push_str(&" ".repeat(depth * 2));
        deep_block.push_str(&format!("k{depth}:\n"));
    }
    let error = refusal(&deep_block).to_string();
    assert!(
        error.starts_with("unknown field `k1` in `pipeline`"),
        "{error}"
    );

    let documents = refusal("pipeline: {}\n---\nflows: {}\n").to_string();
    assert!(documents.contains("document"), "{documents}");

    let huge = "#".repeat(MAX_CONFIG_BYTES + 1);
    assert!(matches!(
        Config::from_yaml(&huge),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn sections_and_lists_left_empty_take_their_defaults() {
    let config = parse("flows:\ndetection:\n  scan:\nnetworks:\n  external_allowlist:\n");
    assert_eq!(config, Config::default());
    let error = refusal("pipeline:\n  workers:\n").to_string();
    assert!(
        error.starts_with("pipeline.workers: no value given"),
        "{error}"
    );
}

#[test]
fn rings_must_be_powers_of_two_and_fit_the_umem() {
    let odd = refusal("capture:\n  ring_size: 1000\n").to_string();
    assert!(
        odd.starts_with(
            "capture.ring_size: 1000 is not valid: AF_XDP rings must be a power of two"
        ),
        "{odd}"
    );
    let small = refusal("capture:\n  ring_size: 4096\n  umem_frames: 2048\n").to_string();
    assert!(
        small.starts_with("capture.umem_frames: 2048 is too small"),
        "{small}"
    );
}

#[test]
fn interface_names_are_checked() {
    let config = parse("capture:\n  interface: enp3s0f0\n");
    assert_eq!(
        policy(&config).capture_interface.as_deref(),
        Some("enp3s0f0")
    );
    let long = refusal("capture:\n  interface: an-interface-name-too-long\n").to_string();
    assert!(
        long.starts_with(
            "capture.interface: \"an-interface-name-too-long\" is not a valid interface name"
        ),
        "{long}"
    );
}

#[test]
fn api_tokens_are_checked_and_never_printed() {
    let short = refusal("http:\n  api_token: hunter2\n").to_string();
    assert!(
        short.starts_with("http.api_token: <redacted> is too short"),
        "{short}"
    );
    assert!(!short.contains("hunter2"));
    let config = parse("http:\n  api_token: 0123456789abcdef0123\n");
    let policy = policy(&config);
    let debug = format!("{config:?} {policy:?}");
    assert!(!debug.contains("0123456789abcdef"), "{debug}");
    let token = match &policy.http_api_token {
        Some(token) => token,
        None => panic!("token missing"),
    };
    assert!(token.matches("0123456789abcdef0123"));
    assert!(!token.matches("0123456789abcdef012"));
    assert!(!token.matches("0123456789abcdef01234"));
    assert!(!token.matches(""));
}

#[test]
fn eve_needs_a_path_when_enabled() {
    let error = refusal("outputs:\n  eve:\n    path: \"\"\n").to_string();
    assert!(
        error.starts_with("outputs.eve.path: \"\" is not valid"),
        "{error}"
    );
    let config = parse("outputs:\n  eve:\n    enabled: false\n    path: \"\"\n");
    assert!(!policy(&config).eve_enabled);
}

#[test]
fn load_names_the_file() {
    let missing = Config::load(Path::new("/nonexistent/otsensor.yaml"));
    match missing {
        Err(Error::Read { path, .. }) => assert_eq!(path, "/nonexistent/otsensor.yaml"),
        other => panic!("expected a read error, got {other:?}"),
    }
    let dir = std::env::temp_dir().join(format!("otsensor-config-test-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("bad.yaml");
    if let Err(error) = std::fs::write(&file, "flows:\n  max_flow: 1\n") {
        panic!("write {}: {error}", file.display());
    }
    let error = match Config::load(&file) {
        Ok(config) => panic!("expected a refusal, got {config:?}"),
        Err(error) => error.to_string(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        error.starts_with(&format!("{}: unknown field `max_flow`", file.display())),
        "{error}"
    );
}

#[test]
fn suggestions_only_name_close_fields() {
    assert_eq!(
        closest("workrs", &["workers", "batch_packets"]),
        Some("workers")
    );
    assert_eq!(
        closest("max_flow", &["max_flows", "idle_timeout"]),
        Some("max_flows")
    );
    assert_eq!(closest("zebra", &["max_devices"]), None);
    assert_eq!(closest("timeout", &["port_scan_ports", "window"]), None);
}

#[test]
fn engineering_workstations_take_addresses_and_networks() {
    let config = parse(
        "detection:\n  engineering_workstations: [10.10.0.5, 10.10.8.0/29]\n  silent_device:\n    quiet_factor: 6\n    quiet_floor: 30m\n",
    );
    let policy = policy(&config);
    let ip = |text: &str| match text.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(error) => panic!("{error}"),
    };
    assert!(policy.is_engineering_workstation(ip("10.10.0.5")));
    assert!(policy.is_engineering_workstation(ip("10.10.8.7")));
    assert!(!policy.is_engineering_workstation(ip("10.10.0.6")));
    assert!(!policy.is_engineering_workstation(ip("10.10.8.8")));
    assert_eq!(policy.silent_quiet_factor, 6);
    assert_eq!(policy.silent_quiet_floor_ns, 1800 * SECOND_NS);
    let zero = refusal("detection:\n  silent_device:\n    quiet_factor: 0\n").to_string();
    assert!(
        zero.starts_with("detection.silent_device.quiet_factor"),
        "{zero}"
    );
    let bad = refusal("detection:\n  engineering_workstations: [10.10.0.300]\n").to_string();
    assert!(bad.contains("engineering_workstations"), "{bad}");
}
