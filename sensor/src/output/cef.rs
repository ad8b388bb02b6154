//! ArcSight Common Event Format (CEF) for alerts, inside RFC 5424 syslog messages.
//!
//! CEF: `CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|
//! Severity|Extension` (ArcSight "Implementing ArcSight CEF", revision 25). In header
//! fields `\` and `|` are escaped with a backslash; in extension values `\` and `=` are
//! escaped and newlines written as `\n` / `\r`. Severity is 0 (lowest) to 10.

use std::fmt::Write as _;

use crate::clock::rfc3339_micros;
use crate::detect::{Alert, Severity};
use crate::flow::proto_name;

/// The CEF header's vendor and product.
pub const VENDOR: &str = "otsensor";
pub const PRODUCT: &str = "otsensor";

/// Suricata severity (1 high … 3 low) to CEF's 0–10 scale: high 10, medium 7, low 4,
/// anything else 1 (informational).
pub fn cef_severity(severity: Severity) -> u8 {
    match severity.0 {
        1 => 10,
        2 => 7,
        3 => 4,
        _ => 1,
    }
}

/// Escapes a header field: backslash and pipe; newlines become spaces (not allowed).
pub fn escape_header(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            other => out.push(other),
        }
    }
}

/// Escapes an extension value: backslash, equals sign, and newlines.
pub fn escape_extension(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
}

fn extension(out: &mut String, key: &str, value: &str) {
    if !out.ends_with('|') {
        out.push(' ');
    }
    out.push_str(key);
    out.push('=');
    escape_extension(value, out);
}

/// The CEF line of an alert.
pub fn format_alert(alert: &Alert) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("CEF:0|");
    for field in [VENDOR, PRODUCT, env!("CARGO_PKG_VERSION")] {
        escape_header(field, &mut out);
        out.push('|');
    }
    let _ = write!(out, "{}|", alert.signature_id);
    escape_header(&alert.signature, &mut out);
    let _ = write!(out, "|{}|", cef_severity(alert.severity));
    // Milliseconds since the epoch: CEF's `rt` accepts it and every SIEM parses it.
    extension(&mut out, "rt", &(alert.last_ns / 1_000_000).to_string());
    if let Some(ip) = alert.src_ip {
        extension(&mut out, "src", &ip.to_string());
    }
    if let Some(port) = alert.src_port {
        extension(&mut out, "spt", &port.to_string());
    }
    if let Some(ip) = alert.dest_ip {
        extension(&mut out, "dst", &ip.to_string());
    }
    if let Some(port) = alert.dest_port {
        extension(&mut out, "dpt", &port.to_string());
    }
    if let Some(proto) = alert.proto {
        extension(&mut out, "proto", &proto_name(proto));
    }
    if let Some(app) = alert.app_proto {
        extension(&mut out, "app", app.name());
    }
    extension(&mut out, "cat", &alert.category);
    extension(&mut out, "msg", &alert.message);
    extension(&mut out, "cnt", &alert.count.to_string());
    extension(&mut out, "externalId", &alert.id.to_string());
    extension(&mut out, "start", &(alert.first_ns / 1_000_000).to_string());
    extension(&mut out, "end", &(alert.last_ns / 1_000_000).to_string());
    if let Some(flow) = alert.flow_id {
        extension(&mut out, "cn1Label", "flowId");
        extension(&mut out, "cn1", &flow.to_string());
    }
    extension(&mut out, "cs1Label", "mitreTechnique");
    extension(&mut out, "cs1", &alert.mitre);
    extension(&mut out, "cs2Label", "engine");
    extension(
        &mut out,
        "cs2",
        serde_json::to_value(alert.engine)
            .ok()
            .as_ref()
            .and_then(|v| v.as_str())
            .unwrap_or("unknown"),
    );
    if !alert.context.is_empty() {
        extension(&mut out, "cs3Label", "context");
        extension(&mut out, "cs3", &alert.context.to_json().to_string());
    }
    if let Some(evidence) = &alert.evidence {
        // Where the alert's packets are written (pcapng; `GET /api/alerts/{id}/pcap`).
        extension(&mut out, "cs4Label", "evidencePcap");
        extension(&mut out, "cs4", &evidence.path);
    }
    // Both devices as the inventory knows them, in one line each, and their MACs.
    for (device, mac_key, label_key, key, label) in [
        (
            &alert.context.src_device,
            "smac",
            "cs5Label",
            "cs5",
            "srcDevice",
        ),
        (
            &alert.context.dest_device,
            "dmac",
            "cs6Label",
            "cs6",
            "destDevice",
        ),
    ] {
        let Some(device) = device else {
            continue;
        };
        extension(&mut out, label_key, label);
        extension(&mut out, key, &device.summary());
        if let Some(mac) = &device.mac {
            extension(&mut out, mac_key, mac);
        }
    }
    // The learned fact the alert deviates from.
    if let Some(baseline) = &alert.context.baseline {
        extension(&mut out, "reason", &baseline.fact);
    }
    out
}

/// Syslog facility for alerts: local4 (20), commonly routed to a SIEM forwarder.
const FACILITY: u8 = 20;

/// Suricata severity to syslog severity: high → critical (2), medium → error (3),
/// low → warning (4), other → notice (5).
fn syslog_severity(severity: Severity) -> u8 {
    match severity.0 {
        1 => 2,
        2 => 3,
        3 => 4,
        _ => 5,
    }
}

/// An RFC 5424 message carrying the alert's CEF line:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`.
pub fn syslog_message(alert: &Alert, hostname: &str) -> String {
    let pri = u16::from(FACILITY) * 8 + u16::from(syslog_severity(alert.severity));
    // RFC 5424 §6.2.4: HOSTNAME is PRINTUSASCII without spaces, at most 255 chars.
    let host: String = hostname
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    let host = if host.is_empty() {
        "-".to_owned()
    } else {
        host
    };
    format!(
        "<{pri}>1 {} {host} otsensor {} alert - {}",
        rfc3339_micros(alert.last_ns).replace("+00:00", "Z"),
        std::process::id(),
        format_alert(alert)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared sample, with a signature and message that need escaping.
    fn alert() -> Alert {
        Alert {
            id: 4,
            signature: "plc|stop\\now".into(),
            message: "a=b\\c\nnext".into(),
            last_ns: 1_700_000_000_500_000_000,
            ..crate::control::tests_support::sample_alert()
        }
    }

    #[test]
    fn the_evidence_path_is_a_custom_string() {
        let mut with = alert();
        assert!(!format_alert(&with).contains("cs4"));
        with.evidence = Some(crate::detect::EvidenceRef {
            path: "/var/lib/otsensor/evidence/alert-4.pcapng".into(),
            sha256: None,
        });
        let line = format_alert(&with);
        assert!(
            line.contains(" cs4Label=evidencePcap cs4=/var/lib/otsensor/evidence/alert-4.pcapng"),
            "{line}"
        );
    }

    #[test]
    fn the_devices_are_custom_strings_and_the_learned_fact_the_reason() {
        let mut with = alert();
        let plain = format_alert(&with);
        assert!(
            !plain.contains("cs5") && !plain.contains("reason="),
            "{plain}"
        );
        with.context = serde_json::from_value(serde_json::json!({
            "src_device": {"ip": "10.0.0.5", "mac": "00:1b:21:00:00:05", "class": "hmi", "roles": ["modbus client"]},
            "dest_device": {"class": "plc", "name": "PLC-01", "vendor": "Siemens", "firmware": "V4.2", "roles": ["s7comm server"]},
            "baseline": {"fact": "seen S7comm writers of 10.0.0.10 during learning: 10.0.0.7"},
        }))
        .expect("a context");
        let line = format_alert(&with);
        for part in [
            " cs5Label=srcDevice cs5=hmi: modbus client smac=00:1b:21:00:00:05",
            " cs6Label=destDevice cs6=plc \"PLC-01\" (Siemens, firmware V4.2): s7comm server",
            " reason=seen S7comm writers of 10.0.0.10 during learning: 10.0.0.7",
            // The earlier custom fields keep their numbers.
            " cn1Label=flowId cn1=7 cs1Label=mitreTechnique cs1=T0881 cs2Label=engine cs2=operational",
            " cs3Label=context cs3={",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert!(!line.contains("dmac="), "{line}");
    }

    #[test]
    fn header_and_extensions_are_escaped() {
        let line = format_alert(&alert());
        assert!(
            line.starts_with(&format!(
                "CEF:0|otsensor|otsensor|{}|1001|plc\\|stop\\\\now|10|",
                env!("CARGO_PKG_VERSION")
            )),
            "{line}"
        );
        assert!(line.contains("msg=a\\=b\\\\c\\nnext"), "{line}");
        assert!(line.contains(" src=10.0.0.5 spt=50000 dst=10.0.0.10 dpt=102 proto=TCP"));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn syslog_frame_is_rfc5424() {
        let message = syslog_message(&alert(), "sensor 1");
        // local4 * 8 + critical = 162.
        assert!(
            message.starts_with("<162>1 2023-11-14T22:13:20.500000Z sensor1 otsensor "),
            "{message}"
        );
        assert!(message.contains(" alert - CEF:0|"));
    }

    #[test]
    fn severities_map_onto_cef_scale() {
        assert_eq!(cef_severity(Severity::HIGH), 10);
        assert_eq!(cef_severity(Severity::MEDIUM), 7);
        assert_eq!(cef_severity(Severity::LOW), 4);
        assert_eq!(cef_severity(Severity(9)), 1);
    }
}
