//! Every detection scenario, replayed through the real pipeline with
//! `learning.duration` set to its learning phase, must raise exactly the alerts of its
//! ground truth (signature, src, dst) and no other, with 1, 2 and 4 workers; the clean
//! capture raises none. Also: a replay stopped half-way and continued on the same
//! database keeps inventory, baseline and alerts, and doubles nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use otsensor::capture::pcap::PcapFiles;
use otsensor::config::{Config, HumanDuration};
use otsensor::detect::AlertStatus;
use otsensor::pipeline::{replay, ReplayOptions, Summary};
use otsensor::store::Store;
use xtask::gen::scenario::{self, ExpectedAlert, ScenarioTruth};

/// Scenarios whose attack relies on protocol inspection that has not landed on this
/// branch yet (only Modbus reports commands, identity and errors here). The lead
/// empties this list after merging the DNP3, BACnet, EtherNet/IP and S7 inspection.
const SKIP: &[&str] = &[];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("otsensor-scenario-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(std::fs::create_dir_all(&dir).is_ok());
    dir
}

fn run(
    capture: &Path,
    truth: &ScenarioTruth,
    workers: usize,
    store: Option<Store>,
    stop: Option<Arc<AtomicBool>>,
) -> Summary {
    let mut config = Config::default();
    config.learning.duration = HumanDuration::from_secs(truth.learning_duration_s);
    config.pipeline.workers = workers;
    let policy = match config.validate() {
        Ok(policy) => Arc::new(policy),
        Err(error) => panic!("config: {error}"),
    };
    let mut source = match PcapFiles::open(&[capture.to_path_buf()]) {
        Ok(source) => source,
        Err(error) => panic!("{}: {error}", capture.display()),
    };
    let options = ReplayOptions {
        store,
        stop,
        ..ReplayOptions::default()
    };
    match replay(&mut source, policy, options) {
        Ok(summary) => summary,
        Err(error) => panic!("replay: {error}"),
    }
}

fn raised(summary: &Summary) -> BTreeSet<ExpectedAlert> {
    summary
        .analyzer
        .raised
        .iter()
        .map(|a| ExpectedAlert {
            signature: a.signature.clone(),
            src: a.src,
            dst: a.dst,
            src_mac: a.src_mac.clone(),
        })
        .collect()
}

fn generate(name: &str, dir: &Path) -> (PathBuf, ScenarioTruth) {
    let out = dir.join(format!("{name}.pcap"));
    match scenario::generate(name, &out) {
        Ok(truth) => (out, truth),
        Err(error) => panic!("generate {name}: {error:#}"),
    }
}

#[test]
fn every_scenario_raises_exactly_its_ground_truth() {
    let dir = scratch("all");
    let mut checked = 0;
    for name in scenario::SCENARIOS {
        let (capture, truth) = generate(name, &dir);
        if SKIP.contains(&name) {
            // Generated (the builders must work) but not judged yet.
            assert!(
                !truth.protocols.is_empty(),
                "{name} needs no inspection: unskip it"
            );
            eprintln!("skipped {name}: its protocol inspection has not landed");
            continue;
        }
        let expected: BTreeSet<ExpectedAlert> = truth.alerts.iter().cloned().collect();
        if name == "clean" {
            assert!(expected.is_empty());
        } else {
            assert!(!expected.is_empty(), "{name}: the truth lists no alert");
        }
        for workers in [1, 2, 4] {
            let summary = run(&capture, &truth, workers, None, None);
            assert_nothing_on_site_is_the_internet(name, &summary);
            let got = raised(&summary);
            assert_eq!(
                got, expected,
                "{name} with {workers} workers: raised (left) differs from the truth (right)"
            );
            assert_eq!(summary.alerts, expected.len() as u64, "{name}");
            assert_eq!(summary.devices, truth.devices, "{name}: devices");
            if name == "clean" {
                assert_clean_plant_speaks_every_protocol(&summary);
            }
        }
        checked += 1;
    }
    assert!(checked >= 13, "only {checked} scenarios checked");
}

/// The protocols the clean plant's normal traffic must carry, so that "the clean plant
/// raises nothing" covers each of them (issue 14): the sensor must have dissected PDUs
/// of every one.
const CLEAN_PLANT_PROTOCOLS: [&str; 15] = [
    "modbus",
    "bacnet",
    "s7commplus",
    "iec104",
    "opcua",
    "mqtt",
    "goose",
    "profinet",
    "dhcp",
    "lldp",
    "mdns",
    "mms",
    "cdp",
    "nbns",
    "snmp",
];

fn assert_clean_plant_speaks_every_protocol(summary: &Summary) {
    let missing: Vec<&str> = CLEAN_PLANT_PROTOCOLS
        .into_iter()
        .filter(|proto| summary.protocols.get(*proto).copied().unwrap_or(0) == 0)
        .collect();
    assert!(
        missing.is_empty(),
        "the clean plant carries no {missing:?} (sensor's counts: {:?})",
        summary.protocols
    );
}

/// Multicast, broadcast, link-local, unspecified and documentation addresses never
/// leave the site (written out here independently of the sensor's own rule).
fn stays_on_site(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            a >= 224
                || a == 0
                || (a, b) == (169, 254)
                || [(192, 0, 2), (198, 51, 100), (203, 0, 113)].contains(&(a, b, c))
        }
        std::net::IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            first & 0xff00 == 0xff00
                || first & 0xffc0 == 0xfe80
                || v6.is_unspecified()
                || (first, v6.segments()[1]) == (0x2001, 0x0db8)
        }
    }
}

fn assert_nothing_on_site_is_the_internet(name: &str, summary: &Summary) {
    for alert in &summary.analyzer.raised {
        if alert.signature != "internet_connection" {
            continue;
        }
        for ip in [alert.src, alert.dst].into_iter().flatten() {
            assert!(
                !stays_on_site(ip),
                "{name}: internet_connection names {ip}, which never leaves the site: {alert:?}"
            );
        }
    }
}

/// With no learning at all every conversation across the site boundary alerts, so the
/// clean plant's multicast, broadcast and link-local chatter is judged too.
#[test]
fn multicast_broadcast_and_link_local_traffic_is_never_the_internet() {
    let dir = scratch("on-site");
    let (capture, mut truth) = generate("clean", &dir);
    truth.learning_duration_s = 0;
    let summary = run(&capture, &truth, 2, None, None);
    assert_nothing_on_site_is_the_internet("clean without learning", &summary);
    // The plant's one real external destination does alert: the check saw alerts.
    let internet: Vec<_> = summary
        .analyzer
        .raised
        .iter()
        .filter(|alert| alert.signature == "internet_connection")
        .collect();
    assert_eq!(internet.len(), 1, "{internet:?}");
}

#[test]
fn a_stopped_replay_continues_from_the_database_without_doubling() {
    let dir = scratch("restart");
    let (capture, truth) = generate("combined", &dir);
    let db = dir.join("otsensor.db");
    let open = || match Store::open(&db) {
        Ok(store) => store,
        Err(error) => panic!("{error}"),
    };
    // A stop requested before the first packet: nothing read, the store still opens
    // and commits cleanly.
    let stop = Arc::new(AtomicBool::new(true));
    let first = run(&capture, &truth, 2, Some(open()), Some(stop));
    assert!(first.stopped);
    assert_eq!(first.packets, 0);
    // A stop requested while reading (as SIGTERM does): whatever was read is committed.
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(2));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let partial = run(&capture, &truth, 2, Some(open()), Some(stop));
    let _ = stopper.join();
    let expected: BTreeSet<ExpectedAlert> = truth.alerts.iter().cloned().collect();
    assert!(
        raised(&partial).is_subset(&expected),
        "{:?}",
        partial.analyzer.raised
    );

    let full = run(&capture, &truth, 2, Some(open()), None);
    assert_eq!(raised(&full), expected);
    let store = open();
    let stored = match store.alerts(None, 1000) {
        Ok(alerts) => alerts,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(stored.len(), expected.len());
    let devices = store.device_count().unwrap_or(0);
    assert_eq!(devices, full.devices);
    let learning = store.learning().unwrap_or_default();
    assert!(learning.started_ns.is_some());
    let baseline = store.baseline().unwrap_or_default().len();
    assert!(baseline > 10, "baseline has {baseline} items");
    drop(store);

    // The same capture again: the same alerts, counts unchanged, nothing added.
    let again = run(&capture, &truth, 1, Some(open()), None);
    assert_eq!(raised(&again), expected);
    let store = open();
    let restored = store.alerts(None, 1000).unwrap_or_default();
    assert_eq!(restored.len(), stored.len());
    let counts = |alerts: &[otsensor::store::StoredAlert]| {
        alerts
            .iter()
            .map(|a| (a.key.clone(), a.count))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(counts(&restored), counts(&stored));
    assert_eq!(store.baseline().unwrap_or_default().len(), baseline);
}

#[test]
fn a_learned_alert_stays_quiet_on_the_next_run() {
    let dir = scratch("learn");
    let (capture, truth) = generate("unauthorized_write", &dir);
    let db = dir.join("otsensor.db");
    let open = || match Store::open(&db) {
        Ok(store) => store,
        Err(error) => panic!("{error}"),
    };
    let first = run(&capture, &truth, 1, Some(open()), None);
    assert_eq!(first.alerts, 1);
    let mut store = open();
    let id = store
        .alerts(None, 10)
        .unwrap_or_default()
        .first()
        .map(|a| a.id);
    let Some(id) = id else {
        panic!("no stored alert");
    };
    assert!(store.learn_alert(id).is_ok());
    drop(store);
    // The learned write is in the baseline now: the same traffic raises nothing new.
    let second = run(&capture, &truth, 1, Some(open()), None);
    assert_eq!(second.alerts, 0, "{:?}", second.analyzer.raised);
    let store = open();
    let learned = store
        .alerts(Some(AlertStatus::Learned), 10)
        .unwrap_or_default();
    assert_eq!(learned.len(), 1);
}

#[test]
#[ignore = "diagnostic: lists each scenario's raised and expected alerts"]
fn list_scenario_differences() {
    let dir = scratch("diff");
    for name in scenario::SCENARIOS {
        let (capture, truth) = generate(name, &dir);
        let expected: BTreeSet<ExpectedAlert> = truth.alerts.iter().cloned().collect();
        let got = raised(&run(&capture, &truth, 1, None, None));
        if got != expected {
            eprintln!(
                "DIFF {name}: extra {:?} missing {:?}",
                got.difference(&expected).collect::<Vec<_>>(),
                expected.difference(&got).collect::<Vec<_>>()
            );
        }
    }
}
