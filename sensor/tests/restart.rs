//! The real `otsensor replay --db` binary, stopped mid-replay once with SIGTERM and
//! once with SIGKILL, then run again to the end on the same database, leaves the same
//! inventory, baseline, learning state and alert history (signature, src, dst, count,
//! status) as one uninterrupted run into a fresh database: nothing lost, nothing doubled.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use otsensor::store::{BaselineItem, LearningState, Store};

/// Capture seconds per wall second while a run is meant to be interrupted: the
/// 200 s scenario takes 10 s, so a kill after a few seconds lands mid-way.
const SPEED: &str = "20";

struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("otsensor-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(error) = std::fs::create_dir_all(&dir) {
            panic!("create {}: {error}", dir.display());
        }
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn replay_command(config: &Path, db: &Path, capture: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otsensor"));
    command
        .arg("replay")
        .arg("--config")
        .arg(config)
        .arg("--db")
        .arg(db)
        // One worker: the analyzer sees observations in capture order, so alert counts
        // (distinct packet times) are comparable between runs.
        .args(["--workers", "1"])
        .arg(capture);
    command
}

fn run_to_end(config: &Path, db: &Path, capture: &Path) -> String {
    let output = match replay_command(config, db, capture).output() {
        Ok(output) => output,
        Err(error) => panic!("cannot run otsensor: {error}"),
    };
    assert!(
        output.status.success(),
        "otsensor failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn spawn_paced(config: &Path, db: &Path, capture: &Path) -> Child {
    let mut command = replay_command(config, db, capture);
    command
        .args(["--realtime-speed", SPEED])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match command.spawn() {
        Ok(child) => child,
        Err(error) => panic!("cannot run otsensor: {error}"),
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "kill -{name} {}",
        child.id()
    );
}

/// The `packets N` line of the printed summary.
fn packets(summary: &str) -> u64 {
    summary
        .lines()
        .find_map(|line| line.strip_prefix("packets"))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no packets line in {summary:?}"))
}

fn open(db: &Path) -> Store {
    match Store::open(db) {
        Ok(store) => store,
        Err(error) => panic!("{}: {error}", db.display()),
    }
}

/// What must survive a restart, read from the database.
#[derive(Debug, PartialEq)]
struct Snapshot {
    /// Device key → the record without its traffic counters (packets re-read after a
    /// restart are counted again; see docs/DETECTIONS.md).
    devices: BTreeMap<String, serde_json::Value>,
    baseline: BTreeSet<String>,
    learning: LearningState,
    /// Alert key → (count, status).
    alerts: BTreeMap<String, (u64, String)>,
}

const TRAFFIC_COUNTERS: [&str; 4] = [
    "packets_sent",
    "bytes_sent",
    "packets_received",
    "bytes_received",
];

fn snapshot(db: &Path) -> Snapshot {
    let store = open(db);
    let devices = match store.devices() {
        Ok(devices) => devices,
        Err(error) => panic!("devices: {error}"),
    };
    let devices = devices
        .into_iter()
        .map(|(key, mut record)| {
            if let Some(map) = record.as_object_mut() {
                for field in TRAFFIC_COUNTERS {
                    map.remove(field);
                }
            }
            (key, record)
        })
        .collect();
    let baseline = match store.baseline() {
        Ok(items) => items.iter().map(BaselineItem::key).collect(),
        Err(error) => panic!("baseline: {error}"),
    };
    let learning = match store.learning() {
        Ok(learning) => learning,
        Err(error) => panic!("learning: {error}"),
    };
    let alerts = match store.alerts(None, 10_000) {
        Ok(alerts) => alerts,
        Err(error) => panic!("alerts: {error}"),
    };
    let alerts = alerts
        .into_iter()
        .map(|a| (a.key, (a.count, format!("{:?}", a.status))))
        .collect();
    Snapshot {
        devices,
        baseline,
        learning,
        alerts,
    }
}

/// Waits up to `limit` for the child to exit after a signal.
fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                panic!("otsensor did not exit within {limit:?}");
            }
            Err(error) => panic!("wait: {error}"),
        }
    }
}

#[test]
fn sigterm_and_sigkill_mid_replay_lose_and_double_nothing() {
    let dir = Scratch::new("restart");
    let capture = dir.path("combined.pcap");
    let truth = match xtask::gen::scenario::generate("combined", &capture) {
        Ok(truth) => truth,
        Err(error) => panic!("generate: {error:#}"),
    };
    let config = dir.path("otsensor.yaml");
    let yaml = format!(
        "learning:\n  duration: {}s\noutputs:\n  eve:\n    enabled: false\n",
        truth.learning_duration_s
    );
    assert!(std::fs::write(&config, yaml).is_ok());

    // The reference: one uninterrupted run into a fresh database.
    let reference_db = dir.path("reference.db");
    let full = run_to_end(&config, &reference_db, &capture);
    let total_packets = packets(&full);
    let reference = snapshot(&reference_db);
    assert!(
        reference.devices.len() >= 8,
        "{:?}",
        reference.devices.keys()
    );
    assert!(reference.baseline.len() > 10, "{:?}", reference.baseline);
    let signatures: BTreeSet<String> = reference
        .alerts
        .keys()
        .filter_map(|k| k.split('|').next().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = truth.alerts.iter().map(|a| a.signature.clone()).collect();
    assert_eq!(signatures, expected);

    let db = dir.path("interrupted.db");
    // SIGTERM during learning (about 80 s of capture time): the run stops reading,
    // drains, commits and exits cleanly with part of the capture processed.
    let mut child = spawn_paced(&config, &db, &capture);
    std::thread::sleep(Duration::from_secs(4));
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let output = match child.wait_with_output() {
        Ok(output) => output,
        Err(error) => panic!("{error}"),
    };
    assert!(
        status.success(),
        "{status:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read = packets(&String::from_utf8_lossy(&output.stdout));
    assert!(
        read > 0 && read < total_packets,
        "SIGTERM after {read} of {total_packets} packets"
    );
    let after_term = snapshot(&db);
    assert_eq!(after_term.learning, reference.learning);
    assert!(!after_term.devices.is_empty());
    assert!(after_term.alerts.is_empty(), "{:?}", after_term.alerts);

    // SIGKILL during the attacks (about 160 s of capture time): whatever was not
    // committed is lost with the process, and must come back on the next run.
    let mut child = spawn_paced(&config, &db, &capture);
    std::thread::sleep(Duration::from_millis(8_200));
    signal(&child, "KILL");
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert!(!status.success());
    let after_kill = snapshot(&db);
    eprintln!(
        "SIGTERM after {read} of {total_packets} packets; after SIGKILL {} of {} alerts, {} of {} devices stored",
        after_kill.alerts.len(),
        reference.alerts.len(),
        after_kill.devices.len(),
        reference.devices.len()
    );
    assert!(
        after_kill.alerts.len() < reference.alerts.len() || after_kill.alerts != reference.alerts,
        "the kill came too late to test anything: {:?}",
        after_kill.alerts
    );
    assert_eq!(after_kill.learning, reference.learning);
    for (key, (count, _)) in &after_kill.alerts {
        let full_count = reference.alerts.get(key).map(|(c, _)| *c);
        assert!(
            full_count.is_some_and(|c| *count <= c),
            "{key}: {count} after the kill, {full_count:?} in the reference"
        );
    }

    // Continue to the end: the same database as one uninterrupted run.
    let last = run_to_end(&config, &db, &capture);
    assert_eq!(packets(&last), total_packets);
    let continued = snapshot(&db);
    assert_eq!(continued.learning, reference.learning);
    assert_eq!(continued.baseline, reference.baseline);
    assert_eq!(
        continued.devices.keys().collect::<Vec<_>>(),
        reference.devices.keys().collect::<Vec<_>>()
    );
    for (key, record) in &reference.devices {
        assert_eq!(continued.devices.get(key), Some(record), "device {key}");
    }
    assert_eq!(continued.alerts, reference.alerts);
}
