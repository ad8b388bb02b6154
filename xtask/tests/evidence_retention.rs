//! Evidence retention, end to end: `otsensor replay --serve` on a generated alert storm
//! (one internal host opening sessions to 150 distinct internet hosts, learning off:
//! every session is an `internet_connection` alert with its own flow) with a directory
//! budget of three files' worth of bytes and a 512-packet ring (the last 64 sessions:
//! how many older sessions still find their packets depends on how far the analyzer
//! lags the worker, so the test counts files from the EVE records, not from sessions).
//!
//! Required: the directory never ends over its byte budget; what is left is exactly the
//! newest files in the order they were written (the order of the EVE records that
//! carry their SHA-256), each intact (same SHA-256) and read by tshark; the deletions
//! are counted by reason in the summary and in `/metrics`, as are the ring's
//! overwritten packets. A second run over the same directory with `max_age: 1s`, after
//! the files aged, deletes them all by age and counts them so. With retention off
//! (no size or age check) the first part fails on the budget, the second on the files
//! left.

mod ops_support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ops_support::*;
use xtask::gen::pcap::{PcapWriter, Resolution};
use xtask::gen::wire::{self, tcp_flags, FrameSpec, Net, L2};
use xtask::testlab::{sha256_of, tshark_packet_count};

/// Sessions, one second apart; each is one alert.
const SESSIONS: u32 = 150;
/// Frames per session (handshake, one exchange, close).
const FRAMES_PER_SESSION: u64 = 8;
const RING_PACKETS: u64 = 512;
const MAX_FILE_BYTES: u64 = 4096;
const MAX_TOTAL_BYTES: u64 = 3 * MAX_FILE_BYTES;

const HMI_MAC: wire::Mac = [0x00, 0x1b, 0x21, 0x00, 0x00, 0x10];
const GATEWAY_MAC: wire::Mac = [0x00, 0x1b, 0x1b, 0x00, 0x00, 0x01];
/// 2024-03-04 06:00:00 UTC.
const START_NS: u64 = 1_709_532_000_000_000_000;
const SECOND: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;

/// Writes the storm: HMI 10.10.0.10 to 45.33.x.y:443, a full TCP session each.
fn write_storm(path: &Path) {
    let mut out = PcapWriter::create(path, Resolution::Micro).expect("create capture");
    let hmi = IpAddr::V4(Ipv4Addr::new(10, 10, 0, 10));
    let mut frame = Vec::with_capacity(512);
    let mut ip_id = 1u16;
    for i in 0..SESSIONS {
        let server = IpAddr::V4(Ipv4Addr::new(
            45,
            33,
            100 + (i / 200) as u8,
            (i % 200) as u8 + 1,
        ));
        let sport = 40_000 + i as u16;
        let t0 = START_NS + u64::from(i) * SECOND;
        let (c, s) = (1_000u32, 500_000u32);
        let request = vec![0x17; 300];
        let response = vec![0x17; 300];
        let ack = tcp_flags::ACK;
        let data = tcp_flags::PSH | tcp_flags::ACK;
        let fin = tcp_flags::FIN | tcp_flags::ACK;
        // (offset, from client, seq, ack, flags, payload)
        let frames: [(u64, bool, u32, u32, u8, Vec<u8>); FRAMES_PER_SESSION as usize] = [
            (0, true, c, 0, tcp_flags::SYN, Vec::new()),
            (MS, false, s, c + 1, tcp_flags::SYN | ack, Vec::new()),
            (2 * MS, true, c + 1, s + 1, ack, Vec::new()),
            (10 * MS, true, c + 1, s + 1, data, request),
            (12 * MS, false, s + 1, c + 301, data, response),
            (20 * MS, true, c + 301, s + 301, fin, Vec::new()),
            (21 * MS, false, s + 301, c + 302, fin, Vec::new()),
            (22 * MS, true, c + 302, s + 302, ack, Vec::new()),
        ];
        for (offset, from_client, seq, ack, flags, payload) in frames {
            let (l2, src, dst, ports) = if from_client {
                (
                    L2 {
                        src: HMI_MAC,
                        dst: GATEWAY_MAC,
                        vlan: 0,
                    },
                    hmi,
                    server,
                    (sport, 443),
                )
            } else {
                (
                    L2 {
                        src: GATEWAY_MAC,
                        dst: HMI_MAC,
                        vlan: 0,
                    },
                    server,
                    hmi,
                    (443, sport),
                )
            };
            let spec = FrameSpec {
                l2,
                net: Net::Tcp {
                    src,
                    dst,
                    sport: ports.0,
                    dport: ports.1,
                    seq,
                    ack,
                    flags,
                    window: 8192,
                    mss: flags & tcp_flags::SYN != 0,
                    payload,
                },
            };
            frame.clear();
            wire::encode(&spec, ip_id, &mut frame).expect("encode");
            ip_id = ip_id.wrapping_add(1);
            out.write(t0 + offset, &frame).expect("write frame");
        }
    }
    out.finish().expect("finish capture");
}

/// The test's configuration; `extra` adds lines to `evidence:`.
fn write_config(dir: &Path, evidence: &Path, extra: &str) -> PathBuf {
    let path = dir.join("otsensor.yaml");
    let text = format!(
        "http:\n  api_token: \"{TOKEN}\"\nlearning:\n  duration: 0s\nevidence:\n  dir: {}\n  ring_packets: {RING_PACKETS}\n  after: 1s\n  max_file_bytes: {MAX_FILE_BYTES}\n  max_total_bytes: {MAX_TOTAL_BYTES}\n  max_files: 1000\n{extra}",
        evidence.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// The evidence files in `dir` by name, with their sizes; fails on anything else
/// (a half-written `.part` file left behind).
fn evidence_files(dir: &Path) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("evidence dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            name.starts_with("alert-") && name.ends_with(".pcapng"),
            "unexpected {name} in the evidence directory"
        );
        files.insert(name, entry.metadata().expect("metadata").len());
    }
    files
}

/// The value of one sample line of the Prometheus text (`name{labels}`), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_tiny_evidence_budget_keeps_the_newest_files_and_counts_what_it_deleted() {
    if !have("tshark") || !have("sha256sum") {
        return;
    }
    let dir = TempDir::new("evidence-retention");
    let capture = dir.path().join("storm.pcap");
    write_storm(&capture);
    let evidence = dir.path().join("evidence");
    let eve = dir.path().join("eve.json");
    let summary_path = dir.path().join("summary.json");
    let config = write_config(dir.path(), &evidence, "");
    let sensor = Sensor::serve(
        &[
            "--workers",
            "1",
            "--quiet",
            "--eve",
            eve.to_str().expect("path"),
            "--summary-json",
            summary_path.to_str().expect("path"),
        ],
        std::slice::from_ref(&capture),
        &config,
    );
    let packets = sensor.printed_packets();
    assert_eq!(packets, u64::from(SESSIONS) * FRAMES_PER_SESSION);
    let summary: serde_json::Value = wait_for("the summary JSON", Duration::from_secs(30), || {
        serde_json::from_str(&std::fs::read_to_string(&summary_path).ok()?).ok()
    });
    let report = &summary["evidence"];

    // The files written, in the order they were written: the evidence thread writes an
    // alert's EVE record (with the file's SHA-256) right after its file.
    let eve_text = std::fs::read_to_string(&eve).expect("eve");
    let written: Vec<(String, String)> = eve_text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event_type"] == "alert")
        .filter_map(|event| {
            let evidence = &event["otsensor"]["evidence"];
            let path = PathBuf::from(evidence["path"].as_str()?);
            let sha256 = evidence["sha256"].as_str()?.to_owned();
            let name = path.file_name()?.to_string_lossy().into_owned();
            Some((name, sha256))
        })
        .collect();
    // At least the sessions the ring still held at the end have their file.
    assert!(
        written.len() as u64 >= RING_PACKETS / FRAMES_PER_SESSION - 4,
        "{} files written: {report}",
        written.len()
    );
    assert_eq!(report["files_written"], written.len(), "{report}");

    // Within budget, and what is left is the newest files, intact and readable.
    let left = evidence_files(&evidence);
    let left_bytes: u64 = left.values().sum();
    assert!(
        left_bytes <= MAX_TOTAL_BYTES,
        "{left_bytes} bytes left, budget {MAX_TOTAL_BYTES}: {left:?}"
    );
    assert!(
        left.len() >= 2 && left.len() < written.len() / 4,
        "{} files left of {}",
        left.len(),
        written.len()
    );
    let newest = &written[written.len() - left.len()..];
    for (name, sha256) in newest {
        assert!(
            left.contains_key(name),
            "newest file {name} deleted; left {left:?}"
        );
        let path = evidence.join(name);
        assert_eq!(
            &sha256_of(&path).expect("sha256sum"),
            sha256,
            "{name} changed after it was written"
        );
        assert!(
            tshark_packet_count(&path).expect("tshark reads the evidence") > 0,
            "{name}"
        );
    }

    // Every deletion counted, by reason: the budget binds, nothing aged.
    let deleted = (written.len() - left.len()) as u64;
    assert_eq!(report["files_evicted"], deleted, "{report}");
    assert_eq!(report["files_evicted_size"], deleted, "{report}");
    assert_eq!(report["files_evicted_age"], 0, "{report}");
    assert_eq!(report["stored_files"], left.len(), "{report}");
    assert_eq!(report["stored_bytes"], left_bytes, "{report}");
    assert_eq!(report["write_errors"], 0, "{report}");
    // Every packet went through the ring; all but the last 512 were overwritten.
    assert_eq!(report["ring_packets"], packets, "{report}");
    assert_eq!(
        report["ring_overwritten"],
        packets - RING_PACKETS,
        "{report}"
    );

    // The same in /metrics.
    let (status, text) = get_text(&sensor.url("/metrics")).expect("metrics");
    assert_eq!(status, 200);
    for (series, want) in [
        (
            "otsensor_evidence_files_written_total",
            written.len() as u64,
        ),
        (
            "otsensor_evidence_files_evicted_total{reason=\"size\"}",
            deleted,
        ),
        ("otsensor_evidence_files_evicted_total{reason=\"age\"}", 0),
        ("otsensor_evidence_stored_files", left.len() as u64),
        ("otsensor_evidence_stored_bytes", left_bytes),
        ("otsensor_evidence_write_errors_total", 0),
        (
            "otsensor_evidence_ring_packets_total{worker=\"0\"}",
            packets,
        ),
        (
            "otsensor_evidence_ring_overwritten_packets_total{worker=\"0\"}",
            packets - RING_PACKETS,
        ),
    ] {
        assert_eq!(sample(&text, series), want as f64, "{series}");
    }
    assert!(
        sample(
            &text,
            "otsensor_evidence_bytes_evicted_total{reason=\"size\"}"
        ) >= (deleted * 1000) as f64
    );
    assert!(
        sample(
            &text,
            "otsensor_evidence_ring_overwritten_bytes_total{worker=\"0\"}"
        ) > 0.0
    );
    assert!(
        sample(&text, "otsensor_evidence_requests_total") >= written.len() as f64,
        "requests"
    );
    drop(sensor);

    // Age: once the files are older than max_age, the next run deletes them all at
    // start, counted by age (an empty capture: nothing new is written).
    std::thread::sleep(Duration::from_millis(2_500));
    let empty = dir.path().join("empty.pcap");
    PcapWriter::create(&empty, Resolution::Micro)
        .and_then(PcapWriter::finish)
        .expect("empty capture");
    let config = write_config(dir.path(), &evidence, "  max_age: 1s\n");
    let summary_path = dir.path().join("summary-age.json");
    let out = Command::new(otsensor_binary())
        .arg("replay")
        .arg(&empty)
        .arg("--config")
        .arg(&config)
        .arg("--quiet")
        .arg("--summary-json")
        .arg(&summary_path)
        .output()
        .expect("otsensor replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary_path).expect("summary"))
            .expect("summary JSON");
    let report = &summary["evidence"];
    assert_eq!(report["files_evicted_age"], left.len(), "{report}");
    assert_eq!(report["files_evicted_size"], 0, "{report}");
    assert_eq!(report["stored_files"], 0, "{report}");
    assert_eq!(evidence_files(&evidence), BTreeMap::new());
}
