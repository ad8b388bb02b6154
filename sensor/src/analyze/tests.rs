//! Analyzer unit tests over hand-made observations.

use super::*;
use crate::config::{Config, HumanDuration};
use crate::observe::GooseChange;
use crate::output::eve::{EveRecord, EventSink};

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

/// The stored alerts of `signature` (up to 10), after a commit.
fn stored_alerts(a: &mut Analyzer, signature: &str) -> Vec<crate::store::StoredAlert> {
    a.commit();
    match a.store().alerts(None, 10) {
        Ok(stored) => stored
            .into_iter()
            .filter(|s| s.alert.signature == signature)
            .collect(),
        Err(error) => panic!("{error}"),
    }
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
        macs: None,
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

/// A BACnet Who-Is broadcast from `source` (one `scan` alert per new source after
/// learning: the flood a spoofing attacker sends).
fn who_is(a: &mut Analyzer, ts_ns: u64, source: IpAddr) {
    a.observe(Observation::Command {
        ts_ns,
        flow_id: 7,
        client: (source, 47_808),
        server: (IpAddr::from([10, 0, 0, 255]), 47_808),
        protocol: Protocol::Bacnet,
        kind: CommandKind::Discovery,
        code: 8,
        unit: None,
        macs: None,
    });
}

pub(super) fn eve_alerts(rx: &crossbeam_channel::Receiver<EveRecord>) -> Vec<Alert> {
    rx.try_iter()
        .filter_map(|record| match record {
            EveRecord::Alert(alert) => Some(Arc::unwrap_or_clone(alert)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_real_plc_stop_raises_everywhere_after_a_flood_of_spoofed_alerts() {
    let (mut a, rx) = analyzer_with_eve(10);
    seen(&mut a, S, [10, 0, 0, 20], 20);
    // Learning ends at 11 s. Then more distinct spoofed sources than the table holds,
    // each a new `scan` alert (high severity, open).
    let flood = MAX_ALERTS as u32 + 5_000;
    let mut flood_alerts = Vec::new();
    for i in 0..flood {
        let source = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
        who_is(&mut a, 20 * S + u64::from(i), source);
        if i % 4096 == 0 {
            a.commit();
            flood_alerts.extend(eve_alerts(&rx));
        }
    }
    a.commit();
    flood_alerts.extend(eve_alerts(&rx));
    assert_eq!(
        flood_alerts
            .iter()
            .filter(|a| a.signature == "scan")
            .count(),
        flood as usize,
        "every spoofed source's alert reached EVE"
    );
    assert!(a.alerts.len() <= MAX_ALERTS, "{}", a.alerts.len());
    // Then a real PLC STOP from a pair never seen before.
    let stop_ts = 40 * S;
    a.observe(Observation::Command {
        ts_ns: stop_ts,
        flow_id: 9,
        client: (IpAddr::from([10, 0, 0, 66]), 49_152),
        server: (IpAddr::from([10, 0, 0, 20]), 102),
        protocol: Protocol::S7comm,
        kind: CommandKind::Stop,
        code: 0x29,
        unit: None,
        macs: None,
    });
    a.commit();
    let after = eve_alerts(&rx);
    let stop = after.iter().find(|alert| alert.signature == "plc_stop");
    assert!(stop.is_some(), "no plc_stop in EVE: {after:?}");
    let stored = match a.store().alerts(None, 10) {
        Ok(stored) => stored,
        Err(error) => panic!("{error}"),
    };
    assert_eq!(
        stored.first().map(|s| s.alert.signature.as_ref()),
        Some("plc_stop"),
        "the newest stored alert"
    );
    // The flood was shed visibly: one alert_table_full on EVE, evictions counted, and
    // every flood alert stored (at most MAX_STORED_ALERTS rows are kept).
    let table_full = flood_alerts
        .iter()
        .chain(&after)
        .filter(|alert| alert.signature == "alert_table_full")
        .count();
    assert_eq!(table_full, 1);
    assert!(a.counters.alerts_over_capacity >= 5_000);
    let scans = match a.store().alerts_where(
        &store::AlertQuery {
            signature: Some("scan".to_owned()),
            ..store::AlertQuery::default()
        },
        usize::MAX >> 1,
    ) {
        Ok(rows) => rows.len(),
        Err(error) => panic!("{error}"),
    };
    assert_eq!(
        scans, flood as usize,
        "every spoofed source's alert is stored"
    );
    assert!(
        flood_alerts
            .iter()
            .chain(&after)
            .any(|a| a.signature == "state_capped"),
        "the scan trackers' cap was reported"
    );
    assert!(a.counters.scan_sources_over_capacity > 0);
    let report = a.finish();
    assert!(report.raised.iter().any(|r| r.signature == "plc_stop"));
}

#[test]
fn an_evicted_alert_raised_again_keeps_its_id_count_and_status() {
    let mut a = analyzer(10);
    a.max_alerts = 4;
    seen(&mut a, S, [10, 0, 0, 20], 20);
    let first = IpAddr::from([11, 0, 0, 1]);
    who_is(&mut a, 20 * S, first);
    a.commit();
    let Ok(Some(AlertHistory { id, .. })) = a.store().alert_state(&format!("scan|{first}|-"))
    else {
        panic!("not stored");
    };
    if let Err(error) = a.store().set_alert_status(id, AlertStatus::Muted) {
        panic!("{error}");
    }
    // (The analyzer reloads operator changes made through another connection.)
    if let Err(error) = a.reload() {
        panic!("{error}");
    }
    for i in 2..10u8 {
        who_is(&mut a, 20 * S + u64::from(i), IpAddr::from([11, 0, 0, i]));
    }
    assert!(
        !a.alerts.contains_key(&format!("scan|{first}|-")),
        "the muted alert goes first"
    );
    a.commit();
    // Raised again: back from the store, still muted, same id, counted.
    who_is(&mut a, 200 * S, first);
    let state = a.alerts.get(&format!("scan|{first}|-"));
    assert_eq!(
        state.map(|s| (s.id, s.status, s.count)),
        Some((id, AlertStatus::Muted, 2))
    );
    assert!(a.alerts.len() <= 4);
}

#[test]
fn the_baseline_and_the_arp_maps_stop_at_their_caps_and_say_so() {
    let mut a = analyzer(1_000);
    a.max_baseline = 100;
    a.max_arp_macs = 50;
    for i in 0..200u32 {
        // A random-MAC ARP flood claiming one address, and conversations to many
        // external destinations, while learning.
        a.observe(Observation::DeviceSeen {
            ts_ns: S + u64::from(i),
            mac: Some([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
            ip: Some(IpAddr::from([10, 0, 0, 1])),
            vlan: 0,
        });
        a.observe(Observation::FlowStarted {
            ts_ns: S + u64::from(i),
            flow_id: u64::from(i),
            client: (IpAddr::from([10, 0, 0, 1]), 40_000),
            server: (IpAddr::from(std::net::Ipv4Addr::from(0x0808_0000 + i)), 443),
            ip_protocol: 6,
            app_proto: None,
            tcp_flags: 0x02,
            vlan: 0,
        });
    }
    assert!(a.baseline.len() <= 100);
    assert_eq!(a.macs_with_ip.len(), 50);
    assert!(a.mac_ipv4.len() <= 50);
    assert_eq!(a.counters.arp_macs_over_capacity, 150);
    assert!(a.counters.baseline_over_capacity > 0);
    let capped = stored_alerts(&mut a, "state_capped");
    assert_eq!(capped.len(), 1);
    let context = capped
        .first()
        .map(|s| s.alert.context.to_json().to_string())
        .unwrap_or_default();
    assert!(
        context.contains("arp_macs") && context.contains("baseline"),
        "{context}"
    );
}

#[test]
fn an_alert_on_a_quiet_network_is_committed_by_the_timer() {
    let mut a = analyzer(0);
    a.observe(Observation::Command {
        ts_ns: S,
        flow_id: 9,
        client: (IpAddr::from([10, 0, 0, 66]), 49_152),
        server: (IpAddr::from([10, 0, 0, 20]), 102),
        protocol: Protocol::S7comm,
        kind: CommandKind::Stop,
        code: 0x29,
        unit: None,
        macs: None,
    });
    let stored = |a: &Analyzer| {
        a.store()
            .alerts(None, 10)
            .map(|rows| rows.len())
            .unwrap_or(0)
    };
    // Nothing else arrives; the analyzer loop calls tick at least every TICK.
    let started = Instant::now();
    while stored(&a) == 0 && started.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
        a.tick();
    }
    assert_eq!(stored(&a), 1);
    assert!(
        started.elapsed() <= Duration::from_millis(1_000),
        "{:?}",
        started.elapsed()
    );
}

/// The alerts written to EVE: (signature, first_ns, last_ns, count).
fn eve_alert_times(rx: &crossbeam_channel::Receiver<EveRecord>) -> Vec<(String, u64, u64, u64)> {
    eve_alerts(rx)
        .into_iter()
        .map(|alert| {
            (
                alert.signature.to_string(),
                alert.first_ns,
                alert.last_ns,
                alert.count,
            )
        })
        .collect()
}

pub(super) fn analyzer_with_eve(
    learning_s: u64,
) -> (Analyzer, crossbeam_channel::Receiver<EveRecord>) {
    let mut config = Config::default();
    config.learning.duration = HumanDuration::from_secs(learning_s);
    let policy = config.validate().unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = crossbeam_channel::unbounded();
    let eve = EventSink::new(tx, crate::observe::Delivery::Block);
    (Analyzer::new(Arc::new(policy), Some(Box::new(eve))), rx)
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
        eve_alert_times(&rx),
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
            macs: None,
        });
    }
    assert_eq!(
        eve_alert_times(&rx),
        vec![
            ("plc_stop".to_owned(), S, S, 1),
            ("plc_stop".to_owned(), S, 121 * S, 2),
            ("plc_stop".to_owned(), S, 241 * S, 3),
        ]
    );
}

#[test]
fn an_output_loss_is_one_alert_rewritten_with_each_new_total() {
    use crate::control::{ControlHandler, OutputLoss};
    let (mut a, rx) = analyzer_with_eve(0);
    seen(&mut a, S, [10, 0, 0, 1], 1);
    let loss = |heartbeats, alerts| OutputLoss {
        output: "nats",
        heartbeats,
        state: 0,
        alerts,
        changes: 0,
        bound_bytes: 131_072,
    };
    a.output_loss(loss(40, 0));
    a.output_loss(loss(90, 2));
    let written = eve_alerts(&rx);
    let contexts: Vec<(u64, u64)> = written
        .iter()
        .filter(|alert| alert.signature == "output_loss")
        .map(|alert| {
            (
                alert.context.to_json()["dropped_heartbeats"]
                    .as_u64()
                    .unwrap_or(0),
                alert.context.to_json()["dropped_alerts"]
                    .as_u64()
                    .unwrap_or(0),
            )
        })
        .collect();
    // Both totals reach the sinks: the second report is not throttled away.
    assert_eq!(contexts, vec![(40, 0), (90, 2)]);
    let losses = stored_alerts(&mut a, "output_loss");
    assert_eq!(losses.len(), 1, "one alert per output");
    // The stored row holds the latest totals.
    assert_eq!(
        losses[0].alert.context.to_json()["dropped_heartbeats"].as_u64(),
        Some(90)
    );
}

fn plc_mode(a: &mut Analyzer, ts_ns: u64, mode: &str) {
    a.observe(Observation::Identity {
        ts_ns,
        device: IpAddr::from([10, 0, 0, 20]),
        mac: None,
        protocol: Protocol::S7comm,
        field: IdentityField::Mode,
        value: ShortText::from_bytes(mode.as_bytes()),
    });
}

fn mode_changes(a: &mut Analyzer) -> Vec<Option<IpAddr>> {
    a.finish()
        .raised
        .iter()
        .filter(|r| r.signature == "plc_mode_change")
        .map(|r| r.src)
        .collect()
}

#[test]
fn an_opc_ua_server_leaving_running_alerts() {
    // OPC UA ServerState names: Running is the running mode, Suspended is not.
    let server_mode = |a: &mut Analyzer, ts_ns: u64, mode: &str| {
        a.observe(Observation::Identity {
            ts_ns,
            device: IpAddr::from([10, 0, 0, 20]),
            mac: None,
            protocol: Protocol::OpcUa,
            field: IdentityField::Mode,
            value: ShortText::from_bytes(mode.as_bytes()),
        });
    };
    let mut a = analyzer(0);
    seen(&mut a, S, [10, 0, 0, 20], 20);
    server_mode(&mut a, S, "Running");
    server_mode(&mut a, 2 * S, "Suspended");
    server_mode(&mut a, 3 * S, "Running");
    server_mode(&mut a, 4 * S, "ServerState 9");
    let raised: Vec<_> = a
        .finish()
        .raised
        .iter()
        .filter(|r| r.signature == "plc_mode_change")
        .map(|r| (r.src, r.count))
        .collect();
    // Running -> Suspended and Running -> "ServerState 9": one alert, raised twice.
    assert_eq!(raised, vec![(Some(IpAddr::from([10, 0, 0, 20])), 2)]);
}

#[test]
fn a_controller_leaving_run_alerts_unless_an_engineer_is_in_session() {
    let plc = Some(IpAddr::from([10, 0, 0, 20]));
    // Nobody in session: RUN -> STOP is one alert; STOP -> RUN and a first report
    // of a stopped mode (nothing known before) are not.
    let mut a = analyzer(0);
    seen(&mut a, S, [10, 0, 0, 20], 20);
    plc_mode(&mut a, S, "RUN");
    plc_mode(&mut a, 2 * S, "STOP (internal)");
    plc_mode(&mut a, 3 * S, "RUN");
    assert_eq!(mode_changes(&mut a), vec![plc]);
    let mut a = analyzer(0);
    seen(&mut a, S, [10, 0, 0, 20], 20);
    plc_mode(&mut a, S, "STOP (internal)");
    plc_mode(&mut a, 2 * S, "RUN");
    assert_eq!(mode_changes(&mut a), Vec::new());

    // A configured engineering workstation read the PLC a minute before: its session.
    let mut a = analyzer_with(0, |c| {
        c.detection.engineering_workstations =
            vec!["10.0.0.5/32".parse().unwrap_or_else(|e| panic!("{e}"))];
    });
    seen(&mut a, S, [10, 0, 0, 20], 20);
    plc_mode(&mut a, S, "RUN");
    modbus_command(&mut a, 60 * S, 5, CommandKind::Read, 1);
    plc_mode(&mut a, 120 * S, "STOP (internal)");
    plc_mode(&mut a, 130 * S, "RUN");
    // Eleven minutes after the engineer's last command the session is over.
    plc_mode(&mut a, (60 + 11 * 60) * S, "HOLD");
    // Another host's commands open no session.
    modbus_command(&mut a, (60 + 12 * 60) * S, 9, CommandKind::Read, 1);
    assert_eq!(mode_changes(&mut a), vec![plc]);
}

fn dcp_set(a: &mut Analyzer, ts_ns: u64, client_mac: u8, kind: CommandKind, code: u32) {
    let unspecified = (IpAddr::from([0, 0, 0, 0]), 0);
    a.observe(Observation::Command {
        ts_ns,
        flow_id: 0,
        client: unspecified,
        server: unspecified,
        protocol: Protocol::Profinet,
        kind,
        code,
        unit: None,
        macs: Some(([0, 1, 2, 3, 4, client_mac], [0, 1, 2, 3, 4, 20])),
    });
}

#[test]
fn a_command_without_ip_is_attributed_to_the_devices_known_by_their_macs() {
    let ews = IpAddr::from([10, 0, 0, 5]);
    let plc = IpAddr::from([10, 0, 0, 20]);
    let unspecified = IpAddr::from([0, 0, 0, 0]);
    let mut a = analyzer(10);
    seen(&mut a, S, [10, 0, 0, 5], 5);
    seen(&mut a, S, [10, 0, 0, 20], 20);
    // DCP Set NameOfStation (4/2/2) from the workstation's MAC, then a reset to
    // factory (4/5/6) from a MAC the inventory has no address for.
    dcp_set(&mut a, 20 * S, 5, CommandKind::Write, 0x0004_0202);
    dcp_set(&mut a, 21 * S, 99, CommandKind::Restart, 0x0004_0506);
    let raised: Vec<_> = a
        .finish()
        .raised
        .iter()
        .map(|r| (r.signature.clone(), r.src, r.dst))
        .collect();
    // (A MAC the inventory has no address for stays unspecified.)
    assert_eq!(
        raised,
        vec![
            ("plc_stop".to_owned(), Some(unspecified), Some(plc)),
            ("unauthorized_write".to_owned(), Some(ews), Some(plc)),
        ]
    );
}

fn goose(a: &mut Analyzer, ts_ns: u64, publisher: u8, gocb: &str, change: GooseChange) {
    a.observe(Observation::Goose {
        ts_ns,
        publisher: [0, 1, 2, 3, 4, publisher],
        vlan: 0,
        gocb_ref: ShortText::from_bytes(gocb.as_bytes()),
        change,
    });
}

/// The `goose_anomaly` alerts raised, as (publisher MAC, times raised): alerts are
/// distinct per publisher, so each publisher's anomalies count on one alert.
fn goose_anomalies(a: &mut Analyzer) -> Vec<(String, u64)> {
    a.finish()
        .raised
        .iter()
        .filter(|r| r.signature == "goose_anomaly")
        .map(|r| (r.src_mac.clone().unwrap_or_default(), r.count))
        .collect()
}

#[test]
fn a_second_publisher_of_a_known_goose_control_block_alerts_after_learning() {
    const TRIP: &str = "IED1CTRL/LLN0$GO$gcbTrip";
    let mut a = analyzer(100);
    // While learning two IEDs publish the trip block (a redundant pair): both learned.
    goose(&mut a, S, 0x31, TRIP, GooseChange::Published);
    goose(&mut a, 2 * S, 0x32, TRIP, GooseChange::Published);
    // After learning: the learned publishers again, and the first publisher of a
    // control block never seen (its owner): no alert.
    goose(&mut a, 200 * S, 0x31, TRIP, GooseChange::Published);
    goose(
        &mut a,
        201 * S,
        0x33,
        "IED3CTRL/LLN0$GO$gcbNew",
        GooseChange::Published,
    );
    // A third MAC publishing the trip block: a new publisher, once however often.
    goose(&mut a, 300 * S, 0x66, TRIP, GooseChange::Published);
    goose(&mut a, 301 * S, 0x66, TRIP, GooseChange::Published);
    assert_eq!(
        goose_anomalies(&mut a),
        vec![("00:01:02:03:04:66".to_owned(), 1)]
    );
}

#[test]
fn goose_state_jumps_replays_simulation_and_conf_rev_changes_alert_even_while_learning() {
    const TRIP: &str = "IED1CTRL/LLN0$GO$gcbTrip";
    let (mut a, rx) = analyzer_with_eve(10_000);
    goose(&mut a, S, 0x31, TRIP, GooseChange::Published);
    // Two minutes apart, past the once-a-minute re-send throttle of event alerts.
    let changes = [
        GooseChange::StNumJump { from: 4, to: 9 },
        GooseChange::Replay {
            last_st_num: 9,
            st_num: 5,
        },
        GooseChange::Simulation,
        GooseChange::ConfRevChange { from: 1, to: 2 },
    ];
    for (i, change) in (1u64..).zip(changes) {
        goose(&mut a, 120 * i * S, 0x31, TRIP, change);
    }
    // Each deviation is sent with its own kind and publisher.
    let sent: Vec<(String, Option<String>)> = eve_alerts(&rx)
        .into_iter()
        .filter(|alert| alert.signature == "goose_anomaly")
        .map(|alert| {
            let kind = alert.context.to_json()["anomaly"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            (
                kind,
                alert.context.to_json()["gocb_ref"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect();
    let trip = Some(TRIP.to_owned());
    assert_eq!(
        sent,
        vec![
            ("st_num_jump".to_owned(), trip.clone()),
            ("replay".to_owned(), trip.clone()),
            ("simulation".to_owned(), trip.clone()),
            ("conf_rev_change".to_owned(), trip),
        ]
    );
    // One alert for the publisher, raised four times.
    assert_eq!(
        goose_anomalies(&mut a),
        vec![("00:01:02:03:04:31".to_owned(), 4)]
    );
}

fn opcua_channel(a: &mut Analyzer, ts_ns: u64, client: u8, secured: bool) {
    a.observe(Observation::ChannelSecurity {
        ts_ns,
        flow_id: u64::from(client),
        client: (IpAddr::from([10, 0, 0, client]), 50_000),
        server: (IpAddr::from([10, 0, 0, 60]), 4840),
        protocol: Protocol::OpcUa,
        secured,
    });
}

fn downgrades(a: &mut Analyzer) -> Vec<Option<IpAddr>> {
    a.finish()
        .raised
        .iter()
        .filter(|r| r.signature == "security_downgrade")
        .map(|r| r.src)
        .collect()
}

#[test]
fn an_unsecured_session_on_a_server_reached_over_signed_channels_alerts() {
    let mut a = analyzer(100);
    // Learning: the HMI (.10) signs; a legacy client (.11) uses None, which is learned.
    opcua_channel(&mut a, S, 10, true);
    opcua_channel(&mut a, 2 * S, 11, false);
    // After learning: the HMI signs again and the legacy client stays on None.
    opcua_channel(&mut a, 200 * S, 10, true);
    opcua_channel(&mut a, 201 * S, 11, false);
    // The HMI itself, then a newcomer, open sessions without security: both alert.
    opcua_channel(&mut a, 300 * S, 10, false);
    opcua_channel(&mut a, 301 * S, 99, false);
    assert_eq!(
        downgrades(&mut a),
        vec![
            Some(IpAddr::from([10, 0, 0, 10])),
            Some(IpAddr::from([10, 0, 0, 99]))
        ]
    );
    // A server nobody reached over a secured channel never alerts.
    let mut a = analyzer(0);
    opcua_channel(&mut a, S, 12, false);
    assert_eq!(downgrades(&mut a), Vec::new());
}
