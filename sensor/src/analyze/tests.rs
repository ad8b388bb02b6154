//! Analyzer unit tests over hand-made observations.

use super::*;
use crate::config::{Config, HumanDuration};

const S: u64 = 1_000_000_000;

fn analyzer(learning_s: u64) -> Analyzer {
    let mut config = Config::default();
    config.learning.duration = HumanDuration::from_secs(learning_s);
    let policy = match config.validate() {
        Ok(policy) => policy,
        Err(error) => panic!("{error}"),
    };
    Analyzer::new(Arc::new(policy), None)
}

fn seen(a: &mut Analyzer, ts_ns: u64, ip: [u8; 4], mac: u8) {
    a.observe(Observation::DeviceSeen {
        ts_ns,
        mac: Some([0, 1, 2, 3, 4, mac]),
        ip: Some(IpAddr::from(ip)),
        vlan: 0,
    });
}

fn signatures(report: &AnalyzerReport) -> Vec<(String, Option<IpAddr>)> {
    report
        .raised
        .iter()
        .map(|a| (a.signature.clone(), a.src))
        .collect()
}

fn analyzer_with(learning_s: u64, edit: impl FnOnce(&mut Config)) -> Analyzer {
    let mut config = Config::default();
    config.learning.duration = HumanDuration::from_secs(learning_s);
    edit(&mut config);
    let policy = match config.validate() {
        Ok(policy) => policy,
        Err(error) => panic!("{error}"),
    };
    Analyzer::new(Arc::new(policy), None)
}

fn modbus_command(a: &mut Analyzer, ts_ns: u64, client: u8, kind: CommandKind, unit: u8) {
    a.observe(Observation::Command {
        ts_ns,
        flow_id: 1,
        client: (IpAddr::from([10, 0, 0, client]), 40_000),
        server: (IpAddr::from([10, 0, 0, 20]), 502),
        protocol: Protocol::Modbus,
        kind,
        code: 0x2b,
        unit: Some(unit),
    });
}

#[test]
fn a_modbus_unit_sweep_alerts_unless_the_source_swept_while_learning() {
    let mut a = analyzer(100);
    // 10.0.0.5 polls 12 units while learning (a gateway poller): known.
    for unit in 1..=12 {
        modbus_command(&mut a, u64::from(unit) * S, 5, CommandKind::Read, unit);
    }
    modbus_command(&mut a, 50 * S, 6, CommandKind::Read, 1);
    for unit in 1..=12 {
        let ts = 200 * S + u64::from(unit) * S;
        modbus_command(&mut a, ts, 5, CommandKind::Read, unit);
        modbus_command(&mut a, ts, 6, CommandKind::Read, unit);
    }
    // Nine units in the window stay under the default threshold of 10.
    for unit in 1..=9 {
        modbus_command(&mut a, 400 * S, 7, CommandKind::Read, unit);
    }
    let report = a.finish();
    let scans: Vec<_> = report
        .raised
        .iter()
        .filter(|r| r.signature == "scan")
        .map(|r| (r.src, r.dst))
        .collect();
    assert_eq!(
        scans,
        vec![(
            Some(IpAddr::from([10, 0, 0, 6])),
            Some(IpAddr::from([10, 0, 0, 20]))
        )]
    );
}

#[test]
fn a_regular_device_that_goes_quiet_is_silent_then_back() {
    let mut a = analyzer_with(120, |c| {
        c.detection.silent_device.quiet_factor = 4;
        c.detection.silent_device.quiet_floor = HumanDuration::from_secs(100);
    });
    // Device 1 every 60 s while learning (learned gap 60 s: quiet after 240 s);
    // device 2 seen once (not regular); device 3 keeps talking.
    for t in [0, 60, 120] {
        seen(&mut a, t * S, [10, 0, 0, 1], 1);
    }
    seen(&mut a, 10 * S, [10, 0, 0, 2], 2);
    for t in (0..=350).step_by(50) {
        seen(&mut a, t * S, [10, 0, 0, 3], 3);
    }
    // Due at 120 + 240 = 360 s: not yet at 350 s.
    let quiet_at_350 = a
        .alerts
        .keys()
        .any(|k| k.starts_with("device_silent|10.0.0.1|"));
    for t in (400..=650).step_by(50) {
        seen(&mut a, t * S, [10, 0, 0, 3], 3);
    }
    seen(&mut a, 700 * S, [10, 0, 0, 1], 1);
    let report = a.finish();
    assert!(!quiet_at_350);
    let one = Some(IpAddr::from([10, 0, 0, 1]));
    assert_eq!(
        signatures(&report),
        vec![
            ("device_back".to_owned(), one),
            ("device_silent".to_owned(), one)
        ]
    );
}

#[test]
fn configured_engineering_workstations_program_without_alerts() {
    let mut a = analyzer_with(0, |c| {
        c.detection.engineering_workstations =
            vec!["10.0.0.0/30".parse().unwrap_or_else(|e| panic!("{e}"))];
    });
    modbus_command(&mut a, S, 2, CommandKind::Program, 1);
    modbus_command(&mut a, S, 9, CommandKind::Program, 1);
    let report = a.finish();
    let programming: Vec<_> = report
        .raised
        .iter()
        .filter(|r| r.signature == "plc_programming")
        .map(|r| r.src)
        .collect();
    assert_eq!(programming, vec![Some(IpAddr::from([10, 0, 0, 9]))]);
}

#[test]
fn devices_seen_after_learning_alert_once() {
    let mut a = analyzer(10);
    seen(&mut a, 0, [10, 0, 0, 1], 1);
    seen(&mut a, 5 * S, [10, 0, 0, 2], 2);
    seen(&mut a, 20 * S, [10, 0, 0, 1], 1);
    seen(&mut a, 20 * S, [10, 0, 0, 3], 3);
    seen(&mut a, 90 * S, [10, 0, 0, 3], 3);
    let report = a.finish();
    assert_eq!(
        signatures(&report),
        vec![("new_device".to_owned(), Some(IpAddr::from([10, 0, 0, 3])))]
    );
    assert_eq!(report.raised.first().map(|r| r.count), Some(2));
    assert_eq!(report.devices, 3);
}

#[test]
fn a_second_mac_claiming_an_address_conflicts_unless_it_routes() {
    let mut a = analyzer(0);
    seen(&mut a, 0, [10, 0, 0, 1], 1);
    // A router's MAC carries several addresses: not a conflict.
    seen(&mut a, S, [10, 0, 0, 7], 9);
    seen(&mut a, S, [10, 0, 0, 8], 9);
    seen(&mut a, 2 * S, [10, 0, 0, 1], 9);
    assert!(a
        .finish()
        .raised
        .iter()
        .all(|r| r.signature != "ip_conflict"));

    let mut a = analyzer(0);
    seen(&mut a, 0, [10, 0, 0, 1], 1);
    seen(&mut a, S, [10, 0, 0, 1], 2);
    seen(&mut a, 2 * S, [10, 0, 0, 1], 1);
    let report = a.finish();
    let conflicts: Vec<_> = report
        .raised
        .iter()
        .filter(|r| r.signature == "ip_conflict")
        .collect();
    assert_eq!(conflicts.len(), 1);
    assert_eq!(
        conflicts.first().and_then(|c| c.src),
        Some(IpAddr::from([10, 0, 0, 1]))
    );
}

/// The alerts written to EVE: (signature, first_ns, last_ns, count).
fn eve_alerts(rx: &crossbeam_channel::Receiver<EveRecord>) -> Vec<(String, u64, u64, u64)> {
    rx.try_iter()
        .filter_map(|record| match record {
            EveRecord::Alert(alert) => Some((
                alert.signature.clone(),
                alert.first_ns,
                alert.last_ns,
                alert.count,
            )),
            _ => None,
        })
        .collect()
}

fn analyzer_with_eve(learning_s: u64) -> (Analyzer, crossbeam_channel::Receiver<EveRecord>) {
    let mut config = Config::default();
    config.learning.duration = HumanDuration::from_secs(learning_s);
    let policy = config.validate().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = crossbeam_channel::unbounded();
    let eve = EventSink::new(tx, crate::observe::Delivery::Block);
    (Analyzer::new(Arc::new(policy), Some(eve)), rx)
}

#[test]
fn a_new_device_is_reported_once_however_long_it_talks() {
    let (mut a, rx) = analyzer_with_eve(10);
    seen(&mut a, 0, [10, 0, 0, 1], 1);
    // A device first seen after learning, then every 30 s for ten minutes.
    for i in 0..20 {
        seen(&mut a, (20 + 30 * i) * S, [10, 0, 0, 3], 3);
    }
    assert_eq!(
        eve_alerts(&rx),
        vec![("new_device".to_owned(), 20 * S, 20 * S, 1)]
    );
    // The store and the API still see every occurrence.
    assert_eq!(a.finish().raised.first().map(|r| r.count), Some(20));
}

#[test]
fn a_repeated_event_alert_carries_its_true_first_seen() {
    let (mut a, rx) = analyzer_with_eve(0);
    for i in 0..3 {
        // A stop every two minutes: past the once-a-minute throttle each time.
        a.observe(Observation::Command {
            ts_ns: (1 + 120 * i) * S,
            flow_id: 1,
            client: (IpAddr::from([10, 0, 0, 5]), 40_000),
            server: (IpAddr::from([10, 0, 0, 20]), 102),
            protocol: Protocol::S7comm,
            kind: CommandKind::Stop,
            code: 0x29,
            unit: None,
        });
    }
    assert_eq!(
        eve_alerts(&rx),
        vec![
            ("plc_stop".to_owned(), S, S, 1),
            ("plc_stop".to_owned(), S, 121 * S, 2),
            ("plc_stop".to_owned(), S, 241 * S, 3),
        ]
    );
}
