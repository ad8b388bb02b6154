//! Every capture in `../shared/pcaps` replays without error, and the pipeline counts
//! exactly the frames tshark counted (`expected/<name>.summary.json`, key `frames`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use otsensor::capture::pcap::PcapFiles;
use otsensor::config::Config;
use otsensor::pipeline::{self, ReplayOptions};

fn shared_pcaps() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps")
}

fn expected_frames(capture: &Path) -> u64 {
    let name = capture
        .file_name()
        .and_then(|n| n.to_str())
        .expect("file name");
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let summary = shared_pcaps()
        .join("expected")
        .join(format!("{stem}.summary.json"));
    let text =
        std::fs::read_to_string(&summary).unwrap_or_else(|e| panic!("{}: {e}", summary.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("summary JSON");
    json["frames"].as_u64().expect("frames")
}

#[test]
fn every_shared_capture_replays_with_tsharks_frame_count() {
    let mut captures: Vec<PathBuf> = std::fs::read_dir(shared_pcaps())
        .expect("../shared/pcaps beside the repository")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"))
        .collect();
    captures.sort();
    assert!(
        captures.len() >= 100,
        "expected the shared capture set, found {}",
        captures.len()
    );
    let mut total = 0;
    for capture in &captures {
        let expected = expected_frames(capture);
        for workers in [1, 3] {
            let mut config = Config::default();
            config.pipeline.workers = workers;
            let policy = Arc::new(config.validate().expect("default config"));
            let mut source = PcapFiles::open(std::slice::from_ref(capture))
                .unwrap_or_else(|e| panic!("{}: {e}", capture.display()));
            let summary = pipeline::replay(&mut source, policy, ReplayOptions::default())
                .unwrap_or_else(|e| panic!("{}: {e}", capture.display()));
            assert_eq!(
                summary.packets,
                expected,
                "{} with {workers} workers",
                capture.display()
            );
            assert!(
                source.truncated_files().is_empty(),
                "{} reported truncated",
                capture.display()
            );
        }
        total += expected;
    }
    assert_eq!(
        total, 63103,
        "the shared set's MANIFEST counts 63103 frames"
    );
}
