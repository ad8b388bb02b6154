//! Acceptance of the foundation: for a 1,000,000-packet generated plant capture,
//! `otsensor replay` reports exactly the ground truth's packets, flows and devices (and
//! PDUs per protocol), identically with 1, 2 and 4 workers.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

#[test]
fn one_million_packets_match_the_ground_truth_with_any_worker_count() {
    let dir = std::env::temp_dir().join(format!("ots-mix1m-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let capture = dir.join("mix.pcap");
    let options = xtask::gen::MixOptions {
        packets: 1_000_000,
        seed: 2026,
        resolution: xtask::gen::Resolution::Nano,
    };
    let truth = xtask::gen::mix(&options, &capture).expect("generate");
    let exe = std::env::current_exe().expect("test path");
    let otsensor = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("otsensor");
    for workers in ["1", "2", "4"] {
        let summary_path = dir.join(format!("summary-{workers}.json"));
        let output = Command::new(&otsensor)
            .arg("replay")
            .arg(&capture)
            .args(["--workers", workers, "--summary-json"])
            .arg(&summary_path)
            .output()
            .expect("run otsensor");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(&summary_path).expect("summary"))
                .expect("JSON");
        assert_eq!(
            summary["packets"], truth.packets,
            "packets, {workers} workers"
        );
        assert_eq!(summary["bytes"], truth.bytes, "bytes, {workers} workers");
        assert_eq!(summary["flows"], truth.flows, "flows, {workers} workers");
        assert_eq!(
            summary["devices"], truth.devices,
            "devices, {workers} workers"
        );
        assert_eq!(summary["counters"]["flows_evicted"], 0);
        for (protocol, pdus) in &truth.protocols {
            assert_eq!(
                summary["protocols"][protocol].as_u64(),
                Some(*pdus),
                "{protocol} PDUs, {workers} workers"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
