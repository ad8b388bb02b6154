//! The catalogue of detections (stable names, ids, engines, categories, severities,
//! MITRE ATT&CK for ICS techniques, descriptions and responses) and the `Alert` record
//! the analyzer raises. Documented for operators in `docs/DETECTIONS.md`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::dissect::Protocol;

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Store id (0 until stored).
    pub id: u64,
    pub signature: String,
    pub signature_id: u32,
    pub category: String,
    pub severity: Severity,
    pub engine: Engine,
    pub mitre: String,
    /// The packet that triggered it: for alerts about one device, that device is `src`.
    pub src_ip: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dest_ip: Option<IpAddr>,
    pub dest_port: Option<u16>,
    /// IP protocol number, when the alert concerns a flow.
    pub proto: Option<u8>,
    pub flow_id: Option<u64>,
    pub app_proto: Option<Protocol>,
    /// Human-readable summary of this occurrence.
    pub message: String,
    /// Protocol context (e.g. `{"function": 41, "name": "PLC Stop"}`), keyed by protocol.
    pub context: serde_json::Value,
    /// Evidence: first and last packet time (ns since the epoch) and occurrences.
    pub first_ns: u64,
    pub last_ns: u64,
    pub count: u64,
    pub status: AlertStatus,
}
