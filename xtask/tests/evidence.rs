//! Alert evidence, end to end: the `combined` scenario replayed with a database and
//! EVE output. Every alert that names a flow or a pair of hosts must come with a pcapng
//! file whose path and SHA-256 are in its EVE record, which tshark reads without
//! error, and which, replayed on its own with learning disabled, raises the same
//! signature for the same hosts again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use otsensor::capture::pcap::PcapFiles;
use otsensor::config::{Config, HumanDuration};
use otsensor::output::eve::EveWriter;
use otsensor::pipeline::{replay, ReplayOptions, Summary};
use otsensor::store::Store;
use xtask::gen::scenario;
use xtask::testlab::{sha256_of, tshark_packet_count};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("otsensor-evidence-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(std::fs::create_dir_all(&dir).is_ok());
    dir
}

fn run(capture: &Path, learning_s: u64, workers: usize, options: ReplayOptions) -> Summary {
    let mut config = Config::default();
    config.learning.duration = HumanDuration::from_secs(learning_s);
    config.pipeline.workers = workers;
    let policy = Arc::new(config.validate().expect("config"));
    let mut source = PcapFiles::open(&[capture.to_path_buf()]).expect("capture");
    replay(&mut source, policy, options).expect("replay")
}

#[test]
fn every_flow_alert_of_combined_has_a_pcap_that_tshark_reads_and_that_raises_it_again() {
    let test = "every_flow_alert_of_combined_has_a_pcap_that_tshark_reads_and_that_raises_it_again";
    if !xtask::testlab::require_tools(test, &["tshark", "sha256sum"]) {
        return;
    }
    let dir = scratch("combined");
    let capture = dir.join("combined.pcap");
    let truth = scenario::generate("combined", &capture).expect("generate combined");
    let eve_path = dir.join("eve.json");
    let evidence_dir = dir.join("evidence");
    let options = ReplayOptions {
        eve: Some(EveWriter::open(&eve_path).expect("eve")),
        store: Some(Store::open(&dir.join("otsensor.db")).expect("db")),
        evidence_dir: Some(evidence_dir.clone()),
        ..ReplayOptions::default()
    };
    let summary = run(&capture, truth.learning_duration_s, 2, options);
    let report = summary.evidence.clone().expect("evidence was kept");
    assert_eq!(
        report.requests_dropped + report.collects_dropped,
        0,
        "{report:?}"
    );

    let eve = std::fs::read_to_string(&eve_path).expect("eve file");
    let alerts: Vec<serde_json::Value> = eve
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event_type"] == "alert")
        .collect();
    assert!(!alerts.is_empty());
    let mut checked = BTreeSet::new();
    for alert in &alerts {
        let signature = alert["alert"]["signature"].as_str().expect("signature");
        let src = alert["src_ip"].as_str().map(str::to_owned);
        let dst = alert["dest_ip"].as_str().map(str::to_owned);
        let names_flow = alert["flow_id"].is_u64();
        // Evidence is written for an alert's first occurrence; repeats refer to it.
        if alert["otsensor"]["count"] != 1 {
            continue;
        }
        if !names_flow && (src.is_none() || dst.is_none()) {
            continue;
        }
        let what = format!("{signature} {src:?} -> {dst:?}");
        let evidence = &alert["otsensor"]["evidence"];
        let path = PathBuf::from(
            evidence["path"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: no evidence in {alert}")),
        );
        let sha256 = evidence["sha256"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no sha256"));
        assert!(
            path.starts_with(&evidence_dir),
            "{what}: {}",
            path.display()
        );
        assert_eq!(sha256_of(&path).expect("sha256sum"), sha256, "{what}");
        let packets = tshark_packet_count(&path).expect("tshark reads the evidence");
        assert!(packets > 0, "{what}: empty file");
        // The alert's own metadata is in the file's comments.
        let bytes = std::fs::read(&path).expect("read evidence");
        let id = alert["otsensor"]["alert_id"].as_u64().expect("id");
        let comment = format!("otsensor alert_id {id}");
        assert!(
            bytes
                .windows(comment.len())
                .any(|w| w == comment.as_bytes()),
            "{what}"
        );

        // Replayed alone, learning off: the same signature for the same hosts.
        let again = run(&path, 0, 1, ReplayOptions::default());
        let raised: BTreeSet<(String, Option<String>, Option<String>)> = again
            .analyzer
            .raised
            .iter()
            .map(|a| {
                (
                    a.signature.clone(),
                    a.src.map(|ip| ip.to_string()),
                    a.dst.map(|ip| ip.to_string()),
                )
            })
            .collect();
        assert!(
            raised.contains(&(signature.to_owned(), src.clone(), dst.clone())),
            "{what}: replaying {} ({packets} packets) raised {raised:?}",
            path.display()
        );
        checked.insert(signature.to_owned());
    }
    // The scenario's flow and host-pair alerts are all there.
    for signature in [
        "plc_stop",
        "plc_programming",
        "remote_access",
        "internet_connection",
    ] {
        assert!(
            checked.contains(signature),
            "{signature} not checked: {checked:?}"
        );
    }
    assert_eq!(
        report.files_written as usize,
        std::fs::read_dir(&evidence_dir).expect("dir").count()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
