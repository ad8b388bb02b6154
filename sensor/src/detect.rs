//! The catalogue of detections (stable names, ids, engines, categories, severities,
//! MITRE ATT&CK for ICS techniques, descriptions and responses) and the `Alert` record
//! the analyzer raises. Documented for operators in `docs/DETECTIONS.md`.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use otsensor_wire::Protocol;

mod context;
pub use context::{
    AlertContext, Detail, DeviceContext, DeviceRole, GooseDetail, LearnedFact, ScanDetail,
    MAX_ROLES,
};

/// Suricata's severity scale: 1 is the highest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Severity(pub u8);

impl Severity {
    pub const HIGH: Severity = Severity(1);
    pub const MEDIUM: Severity = Severity(2);
    pub const LOW: Severity = Severity(3);
}

/// Which engine raised an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    PolicyViolation,
    ProtocolViolation,
    Anomaly,
    Operational,
}

/// An operator's disposition of an alert.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    New,
    Acknowledged,
    Learned,
    Muted,
}

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// Stable name, part of the output format (`alert.signature`).
    pub name: &'static str,
    /// Stable numeric id (`alert.signature_id`).
    pub id: u32,
    pub engine: Engine,
    /// `alert.category`.
    pub category: &'static str,
    pub severity: Severity,
    /// MITRE ATT&CK for ICS technique, e.g. "T0843".
    pub mitre: &'static str,
    pub description: &'static str,
    pub response: &'static str,
}

/// An alert as raised by the analyzer and written to every sink.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Store id (0 until stored).
    pub id: u64,
    pub signature: Cow<'static, str>,
    pub signature_id: u32,
    pub category: Cow<'static, str>,
    pub severity: Severity,
    pub engine: Engine,
    pub mitre: Cow<'static, str>,
    /// The packet that triggered it: for alerts about one device, that device is `src`.
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dest_ip: Option<IpAddr>,
    pub dest_port: Option<u16>,
    /// The device's MAC, for alerts about a device known only by its MAC.
    #[serde(default)]
    pub src_mac: Option<String>,
    /// IP protocol number, when the alert concerns a flow.
    pub proto: Option<u8>,
    pub flow_id: Option<u64>,
    pub app_proto: Option<Protocol>,
    /// Human-readable summary of this occurrence.
    pub message: String,
    /// Context: the signature's own fields (protocol operation, thresholds, ...) and,
    /// when known, `src_device` / `dest_device` (the inventory's view of each end) and
    /// `baseline` (the learned fact the alert deviates from); see [`AlertContext`]. EVE writes
    /// the devices and the fact under `otsensor`, CEF the devices' summaries as `cs5`/`cs6`.
    /// Typed: serialised by each sink, never built as JSON by the analyzer.
    #[serde(default)]
    pub context: AlertContext,
    /// Evidence: first and last packet time (ns since the epoch) and occurrences.
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: u64,
    pub status: AlertStatus,
    /// The packets behind the alert (`evidence`): the pcapng file's path, and its
    /// SHA-256 once written. Not stored: the file is found by the alert's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceRef>,
}

/// Where an alert's packets are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRef {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The catalogue, in id order. Names and ids are part of the output format: never
/// renumber or rename; retire an entry by leaving it unused.
pub const CATALOGUE: [Detection; 24] = [
    Detection {
        name: "new_device",
        id: 1001,
        engine: Engine::Anomaly,
        category: "New asset",
        severity: Severity::MEDIUM,
        mitre: "T0848",
        description: "A device that is not in the baseline sent traffic after learning ended.",
        response: "Identify the device and its owner; learn it if it is authorized, isolate it otherwise.",
    },
    Detection {
        name: "internet_connection",
        id: 1002,
        engine: Engine::PolicyViolation,
        category: "Internet connection",
        severity: Severity::HIGH,
        mitre: "T0883",
        description: "An internal device opened a connection to an address outside networks.internal and the external allowlist, not seen during learning (outbound, judged at the first packet, also for sessions first seen mid-stream), or a public address completed a session with an internal device (inbound, judged when the flow ends or idles out, so spoofed SYNs never raise it). Multicast, broadcast, link-local, unspecified, loopback and documentation addresses never count as the internet.",
        response: "Check why the device reaches the internet; block it at the firewall or add the destination to networks.external_allowlist.",
    },
    Detection {
        name: "remote_access",
        id: 1003,
        engine: Engine::PolicyViolation,
        category: "Remote access",
        severity: Severity::HIGH,
        mitre: "T0822",
        description: "A remote-access session (RDP, VNC, SSH, Telnet, TeamViewer, AnyDesk, ...) between hosts that did not use it during learning.",
        response: "Confirm the session with the person responsible; terminate it and review the client if it is not authorized.",
    },
    Detection {
        name: "scan",
        id: 1004,
        engine: Engine::Anomaly,
        category: "Reconnaissance",
        severity: Severity::HIGH,
        mitre: "T0846",
        description: "One source probed many ports of a host or many hosts within the scan window, or swept industrial discovery (EtherNet/IP ListIdentity, BACnet Who-Is, many Modbus unit ids of one server) when it did not do so during learning.",
        response: "Find the scanning host and the process behind it; a scan inside a plant network is rarely legitimate.",
    },
    Detection {
        name: "plc_programming",
        id: 1005,
        engine: Engine::PolicyViolation,
        category: "Controller change",
        severity: Severity::HIGH,
        mitre: "T0843",
        description: "Program download/upload/delete, online edit or firmware service from a host that is not an engineering workstation (not in detection.engineering_workstations, and none programmed from it during learning).",
        response: "Confirm a planned change with the control engineer; compare the controller's program with the approved version.",
    },
    Detection {
        name: "firmware_change",
        id: 1006,
        engine: Engine::Anomaly,
        category: "Controller change",
        severity: Severity::HIGH,
        mitre: "T0857",
        description: "A device reported a firmware or hardware revision that differs from the one in the inventory.",
        response: "Confirm the update was planned and the image came from the vendor.",
    },
    Detection {
        name: "plc_stop",
        id: 1007,
        engine: Engine::PolicyViolation,
        category: "Dangerous command",
        severity: Severity::HIGH,
        mitre: "T0881",
        description: "A command that stops, starts, restarts or silences a controller: S7 PLC stop, UMAS start/stop, CIP reset, Modbus restart or listen-only, DNP3 cold/warm restart and disable unsolicited, BACnet ReinitializeDevice and DeviceCommunicationControl. Alerts during learning too.",
        response: "Check the process state at once and confirm the command with operations.",
    },
    Detection {
        name: "device_silent",
        id: 1008,
        engine: Engine::Operational,
        category: "Availability",
        severity: Severity::MEDIUM,
        mitre: "T0814",
        description: "A device left the configured number of requests to a service it used to answer unanswered within the window, or a device that sent regularly during learning stayed quiet for longer than its learned interval times a factor (with a floor).",
        response: "Check the device's power, link and health; a silent controller may be crashed or under denial of service.",
    },
    Detection {
        name: "device_back",
        id: 1009,
        engine: Engine::Operational,
        category: "Availability",
        severity: Severity::LOW,
        mitre: "T0814",
        description: "A device reported silent is sending again.",
        response: "Confirm the process recovered; look for the cause of the outage.",
    },
    Detection {
        name: "cip_failure",
        id: 1010,
        engine: Engine::ProtocolViolation,
        category: "Protocol failure",
        severity: Severity::MEDIUM,
        mitre: "T0888",
        description: "A CIP reply carried a non-zero general status (0x06 partial transfer and 0x1E embedded service error excluded).",
        response: "Look at the request that failed: a misconfigured client, or someone probing the controller's objects.",
    },
    Detection {
        name: "bacnet_failure",
        id: 1011,
        engine: Engine::ProtocolViolation,
        category: "Protocol failure",
        severity: Severity::MEDIUM,
        mitre: "T0888",
        description: "A BACnet Error, Reject or Abort PDU.",
        response: "Look at the request that failed: a misconfigured client, or someone probing the controller.",
    },
    Detection {
        name: "illegal_operation",
        id: 1012,
        engine: Engine::ProtocolViolation,
        category: "Protocol violation",
        severity: Severity::MEDIUM,
        mitre: "T0855",
        description: "Modbus exception replies, unknown function codes, DNP3 IIN errors, S7 error replies, authentication failures and malformed PDUs.",
        response: "Identify the client: a faulty integration, a fuzzer or an attacker learning the device.",
    },
    Detection {
        name: "new_conversation",
        id: 1013,
        engine: Engine::Anomaly,
        category: "Baseline deviation",
        severity: Severity::LOW,
        mitre: "T0886",
        description: "Two known devices talked in a way not in the baseline: a new (client, server, protocol, port) conversation or a new (client, server, protocol, command) key.",
        response: "Check whether the change was planned; learn it if so.",
    },
    Detection {
        name: "unauthorized_write",
        id: 1014,
        engine: Engine::Anomaly,
        category: "Baseline deviation",
        severity: Severity::HIGH,
        mitre: "T0855",
        description: "A write or operate command from a client that never wrote to that server over that protocol during learning.",
        response: "Check the process values written and who sent them.",
    },
    Detection {
        name: "ip_conflict",
        id: 1015,
        engine: Engine::Anomaly,
        category: "Address conflict",
        severity: Severity::MEDIUM,
        mitre: "T0830",
        description: "One IPv4 address claimed by two MAC addresses on the same VLAN (ARP spoofing or a misconfigured device); routers (MACs carrying several addresses) are excluded.",
        response: "Find both MACs' switch ports; an attacker in the middle spoofs ARP this way.",
    },
    Detection {
        name: "inventory_full",
        id: 1016,
        engine: Engine::Operational,
        category: "Sensor health",
        severity: Severity::MEDIUM,
        mitre: "",
        description: "The inventory reached inventory.max_devices; new devices are counted, not stored (raised once).",
        response: "Look for a flood of spoofed addresses; raise inventory.max_devices if the plant is really that large.",
    },
    Detection {
        name: "alert_table_full",
        id: 1017,
        engine: Engine::Operational,
        category: "Sensor health",
        severity: Severity::MEDIUM,
        mitre: "",
        description: "The analyzer's in-memory alert table reached its cap (100,000 distinct alerts): to make room for a new alert the least important one is evicted from memory — acknowledged and learned first, then muted, then open ones by severity (low first) and age — while its row stays in the store (which keeps at most 200,000 rows, pruned in the same order). New alerts always reach every sink and the store (raised once per run; otsensor_analyzer_state_shed_total{map=\"alerts\"} counts evictions).",
        response: "Triage and acknowledge or learn alerts; look for a flood of spoofed sources (many scan or new_device alerts).",
    },
    Detection {
        name: "flood",
        id: 1018,
        engine: Engine::Anomaly,
        category: "Denial of service",
        severity: Severity::HIGH,
        mitre: "T0814",
        description: "Connection attempts (TCP SYN without ACK) against one device reached detection.flood.attempts within detection.flood.window, from any number of sources: one alert per target, updated while the flood lasts, with the rate, the number of sources and a sample of them. Attempts from impossible sources (multicast, broadcast, unspecified) are counted as bogons in the same alert, never alerted one by one.",
        response: "Check the target's availability at once; find where the frames enter the network (switch port, router) and filter them there.",
    },
    Detection {
        name: "vulnerable_device",
        id: 1019,
        engine: Engine::Anomaly,
        category: "Known vulnerability",
        severity: Severity::MEDIUM,
        mitre: "T0866",
        description: "A device matches a CISA ICS advisory with high confidence (exact model or order number, firmware in the affected range): when it first matches, or when its firmware changes into an affected range.",
        response: "Read the advisory (context.advisories); apply the vendor's fix or mitigations, or restrict access to the device.",
    },
    Detection {
        name: "state_capped",
        id: 1020,
        engine: Engine::Operational,
        category: "Sensor health",
        severity: Severity::MEDIUM,
        mitre: "",
        description: "A map of the analyzer keyed by what the wire says (baseline while learning, ARP MACs, scan trackers, flood targets, object sweeps) reached its cap; the least important entries are shed and counted (otsensor_analyzer_state_shed_total{map}). Raised once per map and run; context.map names the map, context.capped lists every map capped so far.",
        response: "Look for a flood of spoofed sources, MACs or destinations on the monitored segment; find where it enters the network and filter it there.",
    },
    Detection {
        name: "output_loss",
        id: 1021,
        engine: Engine::Operational,
        category: "Sensor health",
        severity: Severity::MEDIUM,
        mitre: "",
        description: "An output dropped records it could not deliver: the fleet outbox (outputs.nats) reached spool_max_bytes during a bus outage and shed its oldest heartbeats, then device/baseline changes, then alerts, or its inbound channel was full. One alert per output, updated (not throttled) whenever the totals grow; context holds dropped_alerts, dropped_state, dropped_heartbeats, dropped_changes and bound_bytes, the same counts as otsensor_fleet_spool_dropped_total{class}.",
        response: "Bring the bus back (or the sensor's route to it); if outages this long are expected, raise outputs.nats.spool_max_bytes. Alerts dropped from the outbox are still in the sensor's own store and API.",
    },
    Detection {
        name: "plc_mode_change",
        id: 1022,
        engine: Engine::Anomaly,
        category: "Controller state",
        severity: Severity::HIGH,
        mitre: "T0858",
        description: "A controller that reported RUN now reports another operating mode (STOP, HOLD, startup, defect: S7 SZL 0x0424 as read by any client) and no engineering workstation (learned or configured) sent it a command in the last 10 minutes: a key switch turned, a fault, or a stop by a host not recognised as an engineer. The mode and its history are kept on the device (identity.mode).",
        response: "Check the controller's state and the process at once; find out who or what stopped it (local key switch, fault, remote command) before restarting it.",
    },
    Detection {
        name: "security_downgrade",
        id: 1023,
        engine: Engine::Anomaly,
        category: "Security downgrade",
        severity: Severity::HIGH,
        mitre: "T0830",
        description: "A client opened an OPC UA session (CreateSession or ActivateSession) on a SecurityPolicy None channel to a server that clients reached over a signed or signed-and-encrypted channel (OpenSecureChannel under another policy) earlier in the run, and the client did not open unsecured sessions to it during learning.",
        response: "Find out why the client skipped message security: a misconfigured client, or someone in the middle stripping it to read or forge values. Disable SecurityPolicy None endpoints on the server if nothing needs them.",
    },
    Detection {
        name: "goose_anomaly",
        id: 1024,
        engine: Engine::Anomaly,
        category: "Protection message anomaly",
        severity: Severity::HIGH,
        mitre: "T0856",
        description: "An IEC 61850 GOOSE publication that deviates: a new publisher (source MAC) of a control block (gocbRef) that others published during learning, stNum moving on by more than one or going back (a replay: also sqNum going back within one stNum), the simulation flag set, or confRev changing. One alert per publisher. Deviations are judged per worker against each publisher's last publication (at most 256 (publisher, gocbRef) histories per worker, the least recently seen forgotten and counted).",
        response: "Find the frame's source port on the switch; a forged or replayed GOOSE can trip or block breakers. Check the IED's configuration when confRev changed, and take subscribers out of simulation mode unless a test is planned.",
    },
];

/// The catalogue entry named `name`.
pub fn by_name(name: &str) -> Option<&'static Detection> {
    CATALOGUE.iter().find(|d| d.name == name)
}

impl Alert {
    /// A fresh alert of `detection` with catalogue fields filled.
    pub fn of(detection: &Detection) -> Alert {
        Alert {
            id: 0,
            signature: Cow::Borrowed(detection.name),
            signature_id: detection.id,
            category: Cow::Borrowed(detection.category),
            severity: detection.severity,
            engine: detection.engine,
            mitre: Cow::Borrowed(detection.mitre),
            src_ip: None,
            src_port: None,
            dest_ip: None,
            dest_port: None,
            src_mac: None,
            proto: None,
            flow_id: None,
            app_proto: None,
            message: String::new(),
            context: AlertContext::default(),
            first_ns: 0,
            last_ns: 0,
            count: 0,
            status: AlertStatus::New,
            evidence: None,
        }
    }

    /// The de-duplication key: stable across runs, so a replay of the same capture
    /// updates the stored alert instead of adding one.
    pub fn key(&self) -> String {
        match (&self.src_ip, &self.src_mac) {
            // An alert about a device known only by its MAC (the analyzer's key).
            (None, Some(mac)) => format!("{}|mac:{mac}|-", self.signature),
            _ => alert_key(&self.signature, self.src_ip, self.dest_ip),
        }
    }
}

/// `signature|src|dst` with `-` for an absent address.
pub fn alert_key(signature: &str, src: Option<IpAddr>, dst: Option<IpAddr>) -> String {
    let show = |ip: Option<IpAddr>| ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
    format!("{signature}|{}|{}", show(src), show(dst))
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::New => "new",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Learned => "learned",
            AlertStatus::Muted => "muted",
        }
    }

    pub fn parse(text: &str) -> Option<AlertStatus> {
        Some(match text {
            "new" => AlertStatus::New,
            "acknowledged" => AlertStatus::Acknowledged,
            "learned" => AlertStatus::Learned,
            "muted" => AlertStatus::Muted,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_names_and_ids_are_unique() {
        for (i, a) in CATALOGUE.iter().enumerate() {
            for b in CATALOGUE.iter().skip(i + 1) {
                assert_ne!(a.name, b.name);
                assert_ne!(a.id, b.id);
            }
        }
        assert_eq!(by_name("plc_stop").map(|d| d.id), Some(1007));
    }

    /// `docs/DETECTIONS.md` has a section per signature of the catalogue with its
    /// trigger, thresholds, what it needs learned and its blind spots, no section for a
    /// signature that is not in it, and every default it quotes as
    /// "`key` (default `value`)" is the code's (`Config::default()`).
    #[test]
    fn the_detections_doc_covers_every_signature_and_quotes_the_defaults() {
        const PARTS: [&str; 5] = [
            "**Trigger.**",
            "**Thresholds.**",
            "**Needs learned.**",
            "**Blind spots.**",
            "**Response.**",
        ];
        let doc = include_str!("../../docs/DETECTIONS.md").replace('\n', " ");
        let sections: Vec<&str> = doc.split(" ## ").skip(1).collect();
        for detection in &CATALOGUE {
            let heading = format!("`{}` ({})", detection.name, detection.id);
            let Some(section) = sections.iter().find(|s| s.starts_with(&heading)) else {
                panic!("docs/DETECTIONS.md has no section {heading}");
            };
            for part in PARTS {
                assert!(section.contains(part), "{heading} lacks {part}");
            }
        }
        for section in &sections {
            if let Some(rest) = section.strip_prefix('`') {
                let name = rest.split('`').next().unwrap_or_default();
                assert!(
                    by_name(name).is_some(),
                    "a section for {name}, not a signature"
                );
            }
        }
        let config = serde_json::to_value(crate::config::Config::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let duration = |text: &str| text.parse::<crate::config::HumanDuration>().ok();
        let mut checked = 0;
        for (at, pattern) in doc.match_indices("` (default `") {
            let before = &doc[..at];
            let key = &before[before.rfind('`').map_or(0, |i| i + 1)..];
            let after = &doc[at + pattern.len()..];
            let quoted = &after[..after.find('`').unwrap_or(after.len())];
            let value = key
                .split('.')
                .try_fold(&config, |value, field| value.get(field))
                .unwrap_or_else(|| panic!("docs/DETECTIONS.md quotes `{key}`, not a setting"));
            let actual = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let same =
                actual == quoted || duration(&actual).is_some_and(|d| Some(d) == duration(quoted));
            assert!(
                same,
                "`{key}`: the doc says {quoted}, the default is {actual}"
            );
            checked += 1;
        }
        assert!(checked >= 10, "only {checked} defaults quoted");
    }
}
