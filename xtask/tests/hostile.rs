//! The `hostile` scenario through `otsensor replay --serve` with an EVE file and a
//! database: after learning, floods of spoofed discovery sources (110,000), ARP from
//! random MACs (270,000), SYNs to distinct external destinations (20,000) and
//! half-open S7 reassemblies (2,000) — scaled so every analyzer cap is exceeded and the
//! test runs in seconds (the 1 M figures are a benchmark) — then a real PLC
//! STOP and a new Modbus writer. Both real alerts reach EVE, the store and the API;
//! every cap's counter and health alert shows what was shed; no observation is dropped.

mod ops_support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use ops_support::*;

fn metric(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn real_alerts_survive_a_hostile_flood_and_every_cap_says_what_it_shed() {
    let dir = TempDir::new("hostile");
    let (pcap, truth) = scenario_capture(dir.path(), "hostile");
    let config = write_config(dir.path(), Some(&truth));
    let eve = dir.path().join("eve.json");
    let db = dir.path().join("otsensor.db");
    let arg = |p: &PathBuf| p.display().to_string();
    let (eve_arg, db_arg) = (arg(&eve), arg(&db));
    let sensor = Sensor::serve(
        &["--eve", &eve_arg, "--db", &db_arg],
        std::slice::from_ref(&pcap),
        &config,
    );
    let health = sensor.wait_replayed();

    // The two real alerts, from the API (filters run in SQL, before the limit).
    for expected in &truth.alerts {
        let url = sensor.url(&format!(
            "/api/alerts?signature={}&device={}",
            expected.signature,
            expected.src.map(|ip| ip.to_string()).unwrap_or_default()
        ));
        let alerts = get_json(&url).expect("alerts");
        let found = alerts.as_array().is_some_and(|alerts| {
            alerts.iter().any(|a| {
                a["src_ip"].as_str().and_then(|ip| ip.parse().ok()) == expected.src
                    && a["dest_ip"].as_str().and_then(|ip| ip.parse().ok()) == expected.dst
            })
        });
        assert!(found, "{expected:?} not served by the API: {alerts}");
    }

    // On EVE (the writer flushes when the capture ends).
    let eve_alerts: Vec<serde_json::Value> =
        wait_for("the EVE file", std::time::Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&eve).ok()?;
            let alerts: Vec<serde_json::Value> = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| v["event_type"] == "alert")
                .collect();
            let signatures: BTreeSet<&str> = alerts
                .iter()
                .filter_map(|a| a["alert"]["signature"].as_str())
                .collect();
            (signatures.contains("plc_stop") && signatures.contains("unauthorized_write"))
                .then_some(alerts.clone())
        });
    let count = |signature: &str| {
        eve_alerts
            .iter()
            .filter(|a| a["alert"]["signature"] == signature)
            .count()
    };
    // Every spoofed source's scan alert was written: none dropped for lack of room.
    assert!(
        count("scan") >= 110_000,
        "scan alerts on EVE: {}",
        count("scan")
    );
    assert_eq!(count("alert_table_full"), 1);
    // state_capped once per capped map (scan trackers and ARP MACs at least).
    let capped: Vec<String> = eve_alerts
        .iter()
        .filter(|a| a["alert"]["signature"] == "state_capped")
        .filter_map(|a| a["otsensor"]["message"].as_str().map(str::to_owned))
        .collect();
    for map in ["scan_sources", "arp_macs"] {
        let named = format!("analyzer state {map} reached");
        assert!(
            capped.iter().any(|m| m.contains(&named)),
            "no state_capped for {map}: {capped:?}"
        );
    }

    // In the store (read with the CLI's own code).
    let store = otsensor::store::Store::open(&db).expect("db");
    for expected in &truth.alerts {
        let key = format!(
            "{}|{}|{}",
            expected.signature,
            expected.src.map(|ip| ip.to_string()).unwrap_or("-".into()),
            expected.dst.map(|ip| ip.to_string()).unwrap_or("-".into())
        );
        assert!(
            matches!(store.alert_state(&key), Ok(Some(_))),
            "{key} not in the store"
        );
    }

    // Counters: what every cap shed, and no observation lost.
    let metrics = get_text(&sensor.url("/metrics")).expect("metrics").1;
    for map in ["alerts", "scan_sources", "arp_macs"] {
        let shed = metric(
            &metrics,
            &format!("otsensor_analyzer_state_shed_total{{map=\"{map}\"}}"),
        );
        assert!(shed > 0.0, "{map} shed nothing");
    }
    assert_eq!(metric(&metrics, "otsensor_observations_dropped_total"), 0.0);
    assert!(
        health["analyzer"]["alerts_new"].as_u64().unwrap_or(0) > 0,
        "{health}"
    );

    // Memory: DESIGN's hostile-traffic budget, read from the kernel (peak RSS of the
    // sensor process so far, which has replayed every flood).
    let status = std::fs::read_to_string(format!("/proc/{}/status", sensor.guard.child.id()))
        .expect("the sensor's /proc status");
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    println!("sensor peak RSS {:.1} MiB", peak_kib as f64 / 1024.0);
    assert!(
        peak_kib <= HOSTILE_RSS_BUDGET_KIB,
        "peak RSS {peak_kib} KiB over DESIGN's hostile-traffic budget of 1 GiB"
    );
}

/// DESIGN, speed and memory targets: "hostile traffic ... RSS ≤ 1 GiB".
const HOSTILE_RSS_BUDGET_KIB: u64 = 1024 * 1024;
