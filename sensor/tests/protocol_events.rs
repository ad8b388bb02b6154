//! With `outputs.eve.protocol_events: true`, `--eve` carries one event per PDU whose
//! `event_type` is the protocol's name and whose object of the same name holds the
//! issue's fields, numbers as JSON numbers and fields that do not apply as null.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn shared(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/pcaps")
        .join(name)
}

fn events(captures: &[&str]) -> Vec<Value> {
    let dir =
        std::env::temp_dir().join(format!("ots-events-{}-{}", std::process::id(), captures[0]));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("otsensor.yaml");
    std::fs::write(&config, "outputs:\n  eve:\n    protocol_events: true\n").expect("config");
    let eve = dir.join("eve.json");
    let _ = std::fs::remove_file(&eve);
    let mut command = Command::new(env!("CARGO_BIN_EXE_otsensor"));
    command.arg("replay");
    for capture in captures {
        command.arg(shared(capture));
    }
    let output = command
        .arg("--config")
        .arg(&config)
        .arg("--eve")
        .arg(&eve)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(&eve)
        .expect("eve written")
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event_type"] == kind).collect()
}

#[test]
fn modbus_events_carry_transaction_unit_function_exception_direction() {
    let all = events(&["modbus-fc-scan-exceptions.pcap"]);
    let modbus = of_type(&all, "modbus");
    assert_eq!(
        modbus.len(),
        281,
        "one event per ADU, as tshark counts them"
    );
    let exceptions = modbus
        .iter()
        .filter(|e| e["modbus"]["exception"].is_number())
        .count();
    assert_eq!(
        exceptions, 130,
        "tshark's exception_code histogram sums to 130"
    );
    for event in &modbus {
        let body = &event["modbus"];
        assert!(
            body["transaction_id"].is_u64()
                && body["unit_id"].is_u64()
                && body["function"].is_u64(),
            "{event}"
        );
        assert!(
            body["exception"].is_null() || body["exception"].is_u64(),
            "{event}"
        );
        assert!(
            body["direction"] == "request" || body["direction"] == "response",
            "{event}"
        );
        assert!(
            event["src_ip"].is_string() && event["dest_port"].is_u64() && event["flow_id"].is_u64()
        );
    }
}

#[test]
fn every_protocol_has_its_event_object() {
    let all = events(&[
        "dnp3-cold-restart.pcap",
        "bacnet-network-layer-error.pcap",
        "enip-cl5000-reboot-restart.pcap",
        "s7comm-step7-plc-stop.pcapng",
    ]);
    let dnp3 = of_type(&all, "dnp3");
    assert!(
        dnp3.iter().any(|e| e["dnp3"]["function"] == 13),
        "cold restart request"
    );
    assert!(
        dnp3.iter().any(|e| e["dnp3"]["iin"].is_u64()),
        "a response with IIN"
    );
    for e in &dnp3 {
        assert!(
            e["dnp3"]["src"].is_u64() && e["dnp3"]["dst"].is_u64(),
            "{e}"
        );
    }
    let bacnet = of_type(&all, "bacnet");
    assert!(!bacnet.is_empty());
    for key in [
        "bvlc_function",
        "apdu_type",
        "service",
        "invoke_id",
        "error_class",
        "error_code",
        "reject_reason",
        "abort_reason",
    ] {
        assert!(
            bacnet.iter().all(|e| e["bacnet"].get(key).is_some()),
            "bacnet.{key} present (null when n/a)"
        );
    }
    assert!(
        bacnet.iter().any(|e| e["bacnet"]["error_class"].is_u64()),
        "the capture's Error PDU"
    );
    let enip = of_type(&all, "enip");
    assert!(
        enip.iter().any(|e| e["enip"]["cip"]
            .as_array()
            .is_some_and(|c| c.iter().any(|m| m["service"] == 0x05))),
        "CIP reset"
    );
    for e in &enip {
        assert!(
            e["enip"]["command"].is_u64()
                && e["enip"]["session"].is_u64()
                && e["enip"]["status"].is_u64(),
            "{e}"
        );
    }
    let s7 = of_type(&all, "s7comm");
    assert!(
        s7.iter().any(|e| e["s7comm"]["function"] == 0x29),
        "PLC stop"
    );
    for e in &s7 {
        assert!(e["s7comm"]["rosctr"].is_u64(), "{e}");
    }
}
