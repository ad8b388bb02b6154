//! The pipeline's results do not depend on the number of workers or on how packets are
//! spread over them (flow-hash like symmetric RSS, or asymmetric with hand-offs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use otsensor::capture::memory::MemoryCapture;
use otsensor::capture::pcap::PcapFiles;
use otsensor::config::Config;
use otsensor::output::eve::EveWriter;
use otsensor::pipeline::{self, ReplayOptions, Spread, Summary};
use xtask::testlab;

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pcaps")
        .join(name)
}

fn run(capture: &MemoryCapture, workers: usize, spread: Spread, eve: Option<EveWriter>) -> Summary {
    let mut config = Config::default();
    config.pipeline.workers = workers;
    config.pipeline.handoff_queue = 4; // tiny rings: exercise the full-ring path
    let policy = Arc::new(config.validate().expect("config"));
    pipeline::replay(
        &mut capture.source(),
        policy,
        ReplayOptions {
            spread,
            eve,
            ..Default::default()
        },
    )
    .expect("replay")
}

/// An in-memory writer the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn same_counts_for_any_worker_count_and_spreading() {
    let files: Vec<PathBuf> = [
        "modbus-pipelined-cloudshark.pcap",
        "bacnet-services-segmented.pcap",
        "s7comm-and-s7commplus-mixed.pcap",
        "enip-cip-logix-tags.pcap",
        "iec104-real-world-commands.pcap",
    ]
    .iter()
    .map(|n| shared(n))
    .collect();
    let capture = MemoryCapture::load(&mut PcapFiles::open(&files).expect("open")).expect("load");
    let reference = run(&capture, 1, Spread::FlowHash, None);
    assert_eq!(reference.packets, capture.len() as u64);
    // The reference itself is held to an independent count: tshark's dissection of the
    // same files, flows and devices by the sensor's documented definitions.
    if testlab::require_tools(
        "same_counts_for_any_worker_count_and_spreading",
        &["tshark"],
    ) {
        let census = xtask::oracle::census(&files).expect("tshark census");
        assert_eq!(census.frames, reference.packets, "tshark read every frame");
        assert_eq!(
            (reference.flows, reference.devices),
            (census.flows, census.devices),
            "(flows, devices): otsensor (left), tshark (right)"
        );
    }
    for (workers, spread) in [(2, Spread::FlowHash), (4, Spread::FlowHash)] {
        let summary = run(&capture, workers, spread, None);
        compare(&reference, &summary, workers, spread);
    }
    // Hand-offs delay one direction by a batch or so; within one capture's timeline that
    // is far below any timeout, so results match file by file (files from different
    // years concatenated are not a meaningful live case).
    for file in &files {
        let one =
            MemoryCapture::load(&mut PcapFiles::open(std::slice::from_ref(file)).expect("open"))
                .expect("load");
        let reference = run(&one, 1, Spread::FlowHash, None);
        if xtask::testlab::find_program("tshark").is_some() {
            let census = xtask::oracle::census(std::slice::from_ref(file)).expect("census");
            assert_eq!(
                (reference.flows, reference.devices),
                (census.flows, census.devices),
                "{}: (flows, devices): otsensor (left), tshark (right)",
                file.display()
            );
        }
        let summary = run(&one, 3, Spread::Asymmetric, None);
        compare(&reference, &summary, 3, Spread::Asymmetric);
    }
}

fn compare(reference: &Summary, summary: &Summary, workers: usize, spread: Spread) {
    {
        let what = format!("{workers} workers, {spread:?}");
        assert_eq!(summary.packets, reference.packets, "{what}");
        assert_eq!(summary.bytes, reference.bytes, "{what}");
        assert_eq!(summary.flows, reference.flows, "{what}");
        assert_eq!(summary.devices, reference.devices, "{what}");
        assert_eq!(summary.protocols, reference.protocols, "{what}");
        if spread == Spread::Asymmetric {
            assert!(
                summary.counters.handoffs_sent > 0 || summary.flows < 2,
                "asymmetric must hand off"
            );
            assert_eq!(
                summary.counters.handoffs_sent,
                summary.counters.handoffs_received
            );
        } else {
            assert_eq!(summary.counters.handoffs_sent, 0, "{what}");
        }
    }
}

#[test]
fn every_flow_ends_in_one_eve_flow_event() {
    let capture = MemoryCapture::load(
        &mut PcapFiles::open(&[shared("modbus-polling-fc4-fc6.pcap")]).expect("open"),
    )
    .expect("load");
    let out = Shared::default();
    let summary = run(
        &capture,
        2,
        Spread::FlowHash,
        Some(EveWriter::from_writer(Box::new(out.clone()))),
    );
    let text = String::from_utf8(out.0.lock().expect("lock").clone()).expect("utf-8");
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(events.len() as u64, summary.flows);
    let packets: u64 = events
        .iter()
        .map(|e| {
            assert_eq!(e["event_type"], "flow");
            for key in [
                "timestamp",
                "flow_id",
                "src_ip",
                "src_port",
                "dest_ip",
                "dest_port",
                "proto",
            ] {
                assert!(e.get(key).is_some(), "flow event lacks {key}: {e}");
            }
            e["flow"]["pkts_toserver"].as_u64().expect("n")
                + e["flow"]["pkts_toclient"].as_u64().expect("n")
        })
        .sum();
    assert_eq!(
        packets,
        summary.packets - summary.counters.non_ip,
        "flow packets add up"
    );
}
