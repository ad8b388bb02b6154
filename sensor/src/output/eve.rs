//! EVE JSON lines: one JSON object per line, Suricata's field names.

use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;

use crate::detect::Alert;
use crate::dissect::inspect::{EventBody, ProtocolEvent};
use crate::observe::FlowRecord;

/// What the EVE writer thread receives: from the analyzer (flows, later alerts) and,
/// when protocol events are on, from the workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EveRecord {
    Flow(FlowRecord),
    Protocol(ProtocolEvent),
    Alert(Box<Alert>),
}

/// RFC 3339 UTC time with microseconds, from packet-time nanoseconds.
pub fn rfc3339_micros(ts_ns: u64) -> String {
    let secs = (ts_ns / 1_000_000_000) as i64;
    let micros = (ts_ns % 1_000_000_000) / 1_000;
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let base = time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00".to_owned());
    format!("{base}.{micros:06}+00:00")
}

/// The transport name as Suricata writes it.
pub fn proto_name(protocol: u8) -> String {
    match protocol {
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        1 => "ICMP".to_owned(),
        58 => "IPv6-ICMP".to_owned(),
        132 => "SCTP".to_owned(),
        other => other.to_string(),
    }
}

#[derive(Serialize)]
struct FlowCounters {
    pkts_toserver: u64,
    pkts_toclient: u64,
    bytes_toserver: u64,
    bytes_toclient: u64,
    start: String,
    end: String,
    age: u64,
    state: &'static str,
    reason: &'static str,
}

#[derive(Serialize)]
struct FlowEvent<'a> {
    timestamp: String,
    flow_id: u64,
    event_type: &'static str,
    src_ip: IpAddr,
    src_port: u16,
    dest_ip: IpAddr,
    dest_port: u16,
    proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<[u16; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_proto: Option<&'a str>,
    flow: FlowCounters,
}

#[derive(Serialize)]
struct ProtocolEventOut<'a> {
    timestamp: String,
    flow_id: u64,
    event_type: &'static str,
    src_ip: IpAddr,
    src_port: u16,
    dest_ip: IpAddr,
    dest_port: u16,
    proto: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<[u16; 1]>,
    #[serde(flatten)]
    body: &'a EventBody,
}

/// Writes EVE events to a file or standard output.
pub struct EveWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    pub events: u64,
}

impl std::fmt::Debug for EveWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EveWriter")
            .field("events", &self.events)
            .finish()
    }
}

impl EveWriter {
    /// `-` writes to standard output; anything else is a file, appended to.
    pub fn open(target: &Path) -> std::io::Result<EveWriter> {
        let out: Box<dyn Write + Send> = if target == Path::new("-") {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(target)?,
            )
        };
        Ok(Self::from_writer(out))
    }

    pub fn from_writer(out: Box<dyn Write + Send>) -> EveWriter {
        EveWriter {
            out: BufWriter::with_capacity(1 << 16, out),
            events: 0,
        }
    }

    fn write_event<T: Serialize>(&mut self, event: &T) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")?;
        self.events += 1;
        Ok(())
    }

    /// A `flow` event for a finished flow.
    pub fn flow(&mut self, record: &FlowRecord) -> std::io::Result<()> {
        let (to_server, to_client) = (record.tcp_flags_to_server, record.tcp_flags_to_client);
        let reset = (to_server | to_client) & 0x04 != 0;
        let both_fin = to_server & to_client & 0x01 != 0;
        let state = if record.protocol != 6 || to_client & 0x12 == 0x12 {
            "established"
        } else if reset || both_fin {
            "closed"
        } else {
            "new"
        };
        let state = if record.protocol == 6 && (reset || both_fin) {
            "closed"
        } else {
            state
        };
        let event = FlowEvent {
            timestamp: rfc3339_micros(record.last_ns),
            flow_id: record.flow_id,
            event_type: "flow",
            src_ip: record.src_ip,
            src_port: record.src_port,
            dest_ip: record.dest_ip,
            dest_port: record.dest_port,
            proto: proto_name(record.protocol),
            vlan: (record.vlan != 0).then_some([record.vlan]),
            app_proto: record.app_proto.map(|p| p.name()),
            flow: FlowCounters {
                pkts_toserver: record.to_server.packets,
                pkts_toclient: record.to_client.packets,
                bytes_toserver: record.to_server.bytes,
                bytes_toclient: record.to_client.bytes,
                start: rfc3339_micros(record.first_ns),
                end: rfc3339_micros(record.last_ns),
                age: (record.last_ns - record.first_ns) / 1_000_000_000,
                state,
                reason: record.reason.as_str(),
            },
        };
        self.write_event(&event)
    }

    /// A protocol event (`event_type` is the protocol's name, and so is its object's key).
    pub fn protocol(&mut self, event: &ProtocolEvent) -> std::io::Result<()> {
        let out = ProtocolEventOut {
            timestamp: rfc3339_micros(event.ts_ns),
            flow_id: event.flow_id,
            event_type: event.body.protocol().name(),
            src_ip: event.src.0,
            src_port: event.src.1,
            dest_ip: event.dest.0,
            dest_port: event.dest.1,
            proto: proto_name(event.ip_protocol),
            vlan: (event.vlan != 0).then_some([event.vlan]),
            body: &event.body,
        };
        self.write_event(&out)
    }

    /// An `alert` event: Suricata's `alert` object (`signature`, `signature_id`,
    /// `category`, `severity`), the protocol context under the protocol's name, and
    /// otsensor's evidence under `otsensor`.
    pub fn alert(&mut self, alert: &Alert) -> std::io::Result<()> {
        let mut event = serde_json::json!({
            "timestamp": rfc3339_micros(alert.last_ns),
            "event_type": "alert",
            "src_ip": alert.src_ip,
            "src_port": alert.src_port,
            "dest_ip": alert.dest_ip,
            "dest_port": alert.dest_port,
            "proto": alert.proto.map(proto_name),
            "flow_id": alert.flow_id,
            "app_proto": alert.app_proto.map(|p| p.name()),
            "alert": {
                "action": "allowed",
                "gid": 1,
                "signature_id": alert.signature_id,
                "rev": 1,
                "signature": alert.signature,
                "category": alert.category,
                "severity": alert.severity.0,
            },
            "otsensor": {
                "alert_id": alert.id,
                "src_mac": alert.src_mac,
                "engine": alert.engine,
                "mitre_technique": alert.mitre,
                "message": alert.message,
                "first_seen": rfc3339_micros(alert.first_ns),
                "last_seen": rfc3339_micros(alert.last_ns),
                "count": alert.count,
                "status": alert.status,
            },
        });
        if let (Some(protocol), Some(map)) = (alert.app_proto, event.as_object_mut()) {
            if !alert.context.is_null() {
                map.insert(protocol.name().to_owned(), alert.context.clone());
            }
        }
        self.write_event(&event)
    }

    /// Writes any record.
    pub fn record(&mut self, record: &EveRecord) -> std::io::Result<()> {
        match record {
            EveRecord::Flow(flow) => self.flow(flow),
            EveRecord::Protocol(event) => self.protocol(event),
            EveRecord::Alert(alert) => self.alert(alert),
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_microseconds() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000+00:00");
        assert_eq!(
            rfc3339_micros(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456+00:00"
        );
    }
}
