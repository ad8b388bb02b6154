//! A flood of random source MACs/IPs keeps the inventory at its cap, counts every
//! sighting beyond it, and raises `inventory_full` exactly once.

use std::collections::HashSet;

use xtask::device_flood as flood;

#[test]
fn the_inventory_stays_at_its_cap_under_a_flood() {
    const SOURCES: u64 = 200_000;
    const CAP: usize = 10_000;
    // The expected overflow, from the frames themselves: after the first CAP distinct
    // source addresses, every frame from another address is counted, not stored.
    let capture = match flood::build(SOURCES, 11) {
        Ok(capture) => capture,
        Err(error) => panic!("{error:#}"),
    };
    let mut stored = HashSet::new();
    let mut over = 0u64;
    for packet in capture.iter() {
        let Some(src) = packet.data.get(26..30) else {
            panic!("short frame");
        };
        if stored.contains(src) {
            continue;
        }
        if stored.len() < CAP {
            stored.insert(src.to_vec());
        } else {
            over += 1;
        }
    }
    drop(capture);
    let report = match flood::run(SOURCES, CAP, 1) {
        Ok(report) => report,
        Err(error) => panic!("{error:#}"),
    };
    let summary = &report.summary;
    assert_eq!(summary.packets, SOURCES);
    assert_eq!(summary.devices, CAP as u64);
    assert_eq!(summary.analyzer.counters.devices_over_capacity, over);
    assert!(over > 180_000, "overflow {over}");
    assert_eq!(summary.alerts_by_signature.get("inventory_full"), Some(&1));
    assert_eq!(summary.alerts, 1, "{:?}", summary.alerts_by_signature);
}
