//! Alerts reach a real rsyslog over TCP as valid CEF, and a rsyslog restart mid-run
//! loses none (the sink retries with back-off and reconnects).

mod ops_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ops_support::*;

use otsensor::detect::{Alert, AlertStatus, Engine, Severity};
use otsensor::metrics::Metrics;
use otsensor::output::sinks::AlertSinks;
use otsensor::output::syslog::{SyslogSink, SyslogTarget, Transport};

struct Rsyslog {
    dir: PathBuf,
    port: u16,
    output: PathBuf,
}

impl Rsyslog {
    fn new(dir: &Path) -> Rsyslog {
        let port = free_port();
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).expect("work dir");
        let output = dir.join("received.log");
        let config = dir.join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{work}\")\n\
                 module(load=\"imtcp\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\")\n\
                 action(type=\"omfile\" file=\"{out}\" template=\"raw\" flushOnTXEnd=\"on\" asyncWriting=\"off\")\n",
                work = work.display(),
                out = output.display()
            ),
        )
        .expect("rsyslog config");
        Rsyslog {
            dir: dir.to_owned(),
            port,
            output,
        }
    }

    fn start(&self) -> Guard {
        let guard = Guard::spawn(
            "rsyslogd",
            Command::new(program_path("rsyslogd"))
                .arg("-n")
                .arg("-f")
                .arg(self.dir.join("rsyslog.conf"))
                .arg("-i")
                .arg(self.dir.join("rsyslog.pid"))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(self.dir.join("rsyslog.stderr"))
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                ),
        );
        wait_for("rsyslog to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", self.port)).ok()
        });
        guard
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.output)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("CEF:"))
            .map(str::to_owned)
            .collect()
    }
}

/// Splits a CEF line into its 7 header fields and its extension map, undoing the
/// escapes; panics (fails the test) when the line is not valid CEF.
fn parse_cef(line: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let start = line.find("CEF:").expect("CEF: prefix");
    let cef = &line[start..];
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = cef.chars();
    while fields.len() < 7 {
        match chars.next() {
            Some('\\') => match chars.next() {
                Some(c @ ('\\' | '|')) => current.push(c),
                other => panic!("bad header escape {other:?} in {line}"),
            },
            Some('|') => fields.push(std::mem::take(&mut current)),
            Some(c) => current.push(c),
            None => panic!("CEF header has fewer than 7 fields: {line}"),
        }
    }
    let extension: String = chars.collect();
    // Keys are [A-Za-z0-9]+ followed by an unescaped '='.
    let mut map = BTreeMap::new();
    let mut key = String::new();
    let mut value = String::new();
    let mut in_value = false;
    let mut pending = String::new();
    let mut it = extension.chars().peekable();
    while let Some(c) = it.next() {
        if !in_value {
            if c == '=' {
                in_value = true;
            } else if c != ' ' {
                key.push(c);
            }
            continue;
        }
        match c {
            '\\' => match it.next() {
                Some('\\') => value.push('\\'),
                Some('=') => value.push('='),
                Some('n') => value.push('\n'),
                Some('r') => value.push('\r'),
                other => panic!("bad extension escape {other:?} in {line}"),
            },
            ' ' => {
                // A space ends the value if a `key=` follows.
                pending.clear();
                while let Some(&next) = it.peek() {
                    if next.is_ascii_alphanumeric() {
                        pending.push(next);
                        it.next();
                    } else {
                        break;
                    }
                }
                if it.peek() == Some(&'=') && !pending.is_empty() {
                    it.next();
                    map.insert(std::mem::take(&mut key), std::mem::take(&mut value));
                    key = std::mem::take(&mut pending);
                } else {
                    value.push(' ');
                    value.push_str(&pending);
                }
            }
            '=' => panic!("unescaped '=' in a value: {line}"),
            other => value.push(other),
        }
    }
    if in_value {
        map.insert(key, value);
    }
    assert_eq!(fields[0], "CEF:0");
    assert_eq!(fields[1], "otsensor");
    assert_eq!(fields[2], "otsensor");
    (fields, map)
}

fn alert(id: u64) -> Alert {
    Alert {
        src_mac: None,
        id,
        signature: "plc_stop".into(),
        signature_id: 1001,
        category: "Operational".into(),
        severity: Severity::HIGH,
        engine: Engine::Operational,
        mitre: "T0881".into(),
        src_ip: Some("192.168.1.10".parse().expect("ip")),
        src_port: Some(50000),
        dest_ip: Some("192.168.1.20".parse().expect("ip")),
        dest_port: Some(102),
        proto: Some(6),
        flow_id: Some(id),
        app_proto: None,
        message: format!("PLC STOP #{id}"),
        context: Default::default(),
        first_ns: 1_700_000_000_000_000_000,
        last_ns: 1_700_000_000_000_000_000 + id,
        count: 1,
        status: AlertStatus::New,
        evidence: None,
    }
}

#[test]
fn rsyslog_restart_mid_run_loses_no_alert() {
    if !have("rsyslogd") {
        return;
    }
    let dir = TempDir::new("rsyslog-restart");
    let rsyslog = Rsyslog::new(dir.path());
    let mut server = rsyslog.start();
    let metrics = Metrics::new().expect("metrics");
    let mut sinks = AlertSinks::new(Some(Arc::clone(&metrics)));
    sinks
        .add(
            SyslogSink::new(SyslogTarget {
                transport: Transport::Tcp,
                address: format!("127.0.0.1:{}", rsyslog.port),
            })
            .expect("sink"),
            100,
        )
        .expect("spawn sink");
    for id in 1..=5 {
        sinks.send(&std::sync::Arc::new(alert(id)));
    }
    wait_for("the first 5 alerts", Duration::from_secs(20), || {
        (rsyslog.lines().len() >= 5).then_some(())
    });
    server.kill();
    for id in 6..=10 {
        sinks.send(&std::sync::Arc::new(alert(id)));
    }
    // The sink fails and backs off while nobody listens.
    wait_for("a failed delivery", Duration::from_secs(20), || {
        (metrics.sink_failures.with_label_values(&["syslog"]).get() > 0).then_some(())
    });
    let _server = rsyslog.start();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let distinct = || {
        let mut ids: Vec<String> = rsyslog
            .lines()
            .iter()
            .filter_map(|l| {
                l.split("externalId=")
                    .nth(1)?
                    .split(' ')
                    .next()
                    .map(str::to_owned)
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    while distinct() < 10 {
        assert!(
            std::time::Instant::now() < deadline,
            "not all 10 alerts arrived: {:#?}; failures {}, delivered {}; log: {}",
            rsyslog.lines(),
            metrics.sink_failures.with_label_values(&["syslog"]).get(),
            metrics.sink_events.with_label_values(&["syslog"]).get(),
            std::fs::read_to_string(dir.path().join("rsyslog.stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let reports = sinks.close();
    assert_eq!(reports[0].1.delivered, 10);
    assert_eq!(reports[0].1.dropped, 0);
    let mut ids: Vec<u64> = rsyslog
        .lines()
        .iter()
        .map(|line| {
            let (header, ext) = parse_cef(line);
            assert_eq!(header[4], "1001");
            assert_eq!(header[6], "10");
            ext["externalId"].parse().expect("id")
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    // At-least-once: a message written just before the kill is sent again.
    assert_eq!(ids, (1..=10).collect::<Vec<_>>(), "every alert arrived");
}

#[test]
fn every_alert_of_a_replayed_scenario_arrives_in_rsyslog_as_valid_cef() {
    if !have("rsyslogd") {
        return;
    }
    let dir = TempDir::new("rsyslog-replay");
    let rsyslog = Rsyslog::new(dir.path());
    let _server = rsyslog.start();
    let (capture, truth) = scenario_capture(dir.path(), "combined");
    let config = write_config(dir.path(), Some(&truth));
    let output = Command::new(otsensor_binary())
        .arg("replay")
        .arg(&capture)
        .arg("--config")
        .arg(&config)
        .arg("--syslog")
        .arg(format!("tcp://127.0.0.1:{}", rsyslog.port))
        .output()
        .expect("replay");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: BTreeSet<ExpectedAlert> = truth.alerts.iter().cloned().collect();
    let received = |lines: &[String]| -> BTreeSet<ExpectedAlert> {
        lines
            .iter()
            .map(|line| {
                let (header, ext) = parse_cef(line);
                ExpectedAlert {
                    signature: header[5].clone(),
                    src: ext.get("src").and_then(|ip| ip.parse().ok()),
                    dst: ext.get("dst").and_then(|ip| ip.parse().ok()),
                    src_mac: None,
                }
            })
            .collect()
    };
    // The replay waits for its sinks before it exits, so everything has been sent.
    let lines = wait_for("every expected alert", Duration::from_secs(20), || {
        let lines = rsyslog.lines();
        (received(&lines) == expected).then_some(lines)
    });
    for line in &lines {
        // RFC 5424 header: <PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG.
        assert!(line.starts_with('<'), "{line}");
        let fields: Vec<&str> = line.splitn(8, ' ').collect();
        assert_eq!(
            fields.get(3).copied(),
            Some("otsensor") as Option<&str>,
            "{line}"
        );
        let (header, ext) = parse_cef(line);
        assert_eq!(&header[1..3], ["otsensor", "otsensor"], "{line}");
        let detection = otsensor::detect::by_name(&header[5])
            .unwrap_or_else(|| panic!("unknown signature in {line}"));
        assert_eq!(header[4], detection.id.to_string(), "{line}");
        let severity: u8 = header[6].parse().expect("CEF severity");
        assert!(severity <= 10, "{line}");
        assert!(
            ext.contains_key("msg") && ext.contains_key("externalId"),
            "{line}"
        );
    }
}
