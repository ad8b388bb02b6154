//! `otsensor replay` on bad inputs: a clear message, a non-zero exit, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn otsensor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_otsensor"))
        .args(args)
        .output()
        .expect("run otsensor")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("otsensor-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pcaps")
        .join(name)
}

fn assert_refused(output: &Output, needle: &str) {
    let err = stderr(output);
    assert!(
        !output.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        err.contains(needle),
        "stderr should mention {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
}

#[test]
fn missing_file_is_refused() {
    let output = otsensor(&["replay", "/nonexistent/capture.pcap"]);
    assert_refused(&output, "cannot open");
}

#[test]
fn empty_file_is_refused() {
    let dir = temp_dir("empty");
    let path = dir.join("empty.pcap");
    std::fs::write(&path, b"").expect("write");
    assert_refused(
        &otsensor(&["replay", path.to_str().expect("utf-8")]),
        "empty",
    );
}

#[test]
fn random_bytes_are_refused() {
    let dir = temp_dir("random");
    let path = dir.join("random.pcap");
    // A fixed pseudo-random sequence (xorshift), so the test is reproducible.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    std::fs::write(&path, bytes).expect("write");
    assert_refused(
        &otsensor(&["replay", path.to_str().expect("utf-8")]),
        "not a pcap or pcapng capture",
    );
}

#[test]
fn unknown_link_type_is_refused() {
    let dir = temp_dir("linktype");
    let path = dir.join("user0.pcap");
    // A pcap header (little endian, microseconds) with LINKTYPE_USER0 (147).
    let mut header = Vec::new();
    header.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&[0; 8]);
    header.extend_from_slice(&65535u32.to_le_bytes());
    header.extend_from_slice(&147u32.to_le_bytes());
    std::fs::write(&path, header).expect("write");
    assert_refused(
        &otsensor(&["replay", path.to_str().expect("utf-8")]),
        "unsupported link type 147",
    );
}

#[test]
fn truncated_file_yields_what_was_readable_and_fails() {
    let dir = temp_dir("truncated");
    let original = std::fs::read(shared("modbus-polling-fc3.pcap")).expect("shared capture");
    // Cut 10 bytes into the last record: 101 of its 102 packets remain whole.
    let path = dir.join("cut.pcap");
    std::fs::write(&path, &original[..original.len() - 30]).expect("write");
    let summary = dir.join("summary.json");
    let output = otsensor(&[
        "replay",
        path.to_str().expect("utf-8"),
        "--summary-json",
        summary.to_str().expect("utf-8"),
    ]);
    assert_refused(&output, "truncated capture");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
            .expect("JSON");
    assert_eq!(json["packets"], 101);
}

#[test]
fn summary_json_has_the_documented_keys() {
    let dir = temp_dir("summary");
    let summary = dir.join("summary.json");
    let output = otsensor(&[
        "replay",
        shared("modbus-polling-fc3.pcap").to_str().expect("utf-8"),
        shared("dnp3-cold-restart.pcap").to_str().expect("utf-8"),
        "--workers",
        "2",
        "--summary-json",
        summary.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary written"))
            .expect("JSON");
    for key in [
        "packets",
        "bytes",
        "flows",
        "devices",
        "alerts",
        "protocols",
    ] {
        assert!(json.get(key).is_some(), "summary lacks {key}: {json}");
    }
    assert_eq!(json["packets"], 102 + 10, "two files replayed in order");
    assert_eq!(json["flows"], 2);
}

/// `otsensor replay` under a pseudo-terminal (util-linux `script`), stdout and stderr
/// together as the terminal shows them.
fn replay_on_a_terminal(extra: &str) -> String {
    let capture = shared("modbus-mei-device-id-exception.pcap");
    // --realtime: the 3 s capture takes 3 s, long enough for several redraws.
    let command = format!(
        "{} replay --realtime {extra} {}",
        env!("CARGO_BIN_EXE_otsensor"),
        capture.display()
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("run script");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    text
}

#[test]
fn replay_shows_progress_on_a_terminal_only() {
    if !xtask::testlab::require_tools("replay_shows_progress_on_a_terminal_only", &["script"]) {
        return;
    }
    let shown = replay_on_a_terminal("");
    assert!(
        shown.contains("\r\x1b[2Kreplay ") && shown.contains("ETA") && shown.contains("alerts "),
        "no progress line on a terminal: {shown:?}"
    );
    assert!(shown.contains("pkt/s"), "{shown:?}");
    let quiet = replay_on_a_terminal("--quiet");
    assert!(
        !quiet.contains("ETA"),
        "--quiet still shows progress: {quiet:?}"
    );
    // Not a terminal: nothing but the summary.
    let piped = otsensor(&[
        "replay",
        "--realtime",
        shared("modbus-mei-device-id-exception.pcap")
            .to_str()
            .expect("utf-8"),
    ]);
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(
        !stderr(&piped).contains("ETA") && !stderr(&piped).contains('\r'),
        "progress on a pipe: {:?}",
        stderr(&piped)
    );
    assert!(String::from_utf8_lossy(&piped.stdout).contains("packets"));
}
