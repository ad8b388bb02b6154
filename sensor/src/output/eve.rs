//! EVE JSON lines: one JSON object per line, Suricata's field names.

use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use serde::Serialize;

use crate::analyze::EventOutlet;
use crate::clock::rfc3339_micros;
use crate::detect::Alert;
use crate::flow::proto_name;
use crate::inspect::{EventBody, ProtocolEvent, ProtocolEventSink};
use crate::observe::{Delivery, FlowRecord};

/// What the EVE writer thread receives: from the analyzer (flows, later alerts) and,
/// when protocol events are on, from the workers.
// Protocol events are the variant workers send per PDU: boxing them would allocate on
// the hot path, so the size difference is accepted.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum EveRecord {
    Flow(FlowRecord),
    Protocol(ProtocolEvent),
    Alert(Arc<Alert>),
}

/// Bounded channel of EVE records from workers and the analyzer, counted like
/// observations.
#[derive(Debug)]
pub struct EventSink {
    tx: Sender<EveRecord>,
    delivery: Delivery,
    pub sent: u64,
    pub dropped: u64,
}

impl EventSink {
    pub fn new(tx: Sender<EveRecord>, delivery: Delivery) -> EventSink {
        EventSink {
            tx,
            delivery,
            sent: 0,
            dropped: 0,
        }
    }

    pub fn send(&mut self, record: EveRecord) {
        let delivered = match self.delivery {
            Delivery::Block => self.tx.send(record).is_ok(),
            Delivery::DropWhenFull => self.tx.try_send(record).is_ok(),
        };
        if delivered {
            self.sent += 1;
        } else {
            self.dropped += 1;
        }
    }
}

impl ProtocolEventSink for EventSink {
    fn send_event(&mut self, event: ProtocolEvent) {
        self.send(EveRecord::Protocol(event));
    }
}

impl EventOutlet for EventSink {
    fn flow(&mut self, record: FlowRecord) {
        self.send(EveRecord::Flow(record));
    }

    fn alert(&mut self, alert: Arc<Alert>) {
        self.send(EveRecord::Alert(alert));
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
    /// Set when the output is a file: what rotation and reopening need.
    file: Option<EveFile>,
    /// Raised by SIGHUP (logrotate moved the file): reopen before the next event.
    reopen: Option<Arc<AtomicBool>>,
    /// Files rotated and reopened so far.
    pub rotations: u64,
    pub reopens: u64,
}

/// Size-based rotation: when the file reaches `max_bytes`, it is renamed `NAME.1`
/// (older ones shift to `.2` … `.keep`, the oldest is deleted) and a new file begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub keep: usize,
}

struct EveFile {
    path: PathBuf,
    written: u64,
    rotation: Option<Rotation>,
}

fn open_append(path: &Path) -> std::io::Result<(Box<dyn Write + Send>, u64)> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(file), size))
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
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
        Self::open_rotating(target, None)
    }

    /// Like [`EveWriter::open`], rotating the file by size when `rotation` is given.
    pub fn open_rotating(target: &Path, rotation: Option<Rotation>) -> std::io::Result<EveWriter> {
        if target == Path::new("-") {
            return Ok(Self::from_writer(Box::new(std::io::stdout())));
        }
        let (out, written) = open_append(target)?;
        let mut writer = Self::from_writer(out);
        writer.file = Some(EveFile {
            path: target.to_owned(),
            written,
            rotation,
        });
        Ok(writer)
    }

    pub fn from_writer(out: Box<dyn Write + Send>) -> EveWriter {
        EveWriter {
            out: BufWriter::with_capacity(1 << 16, out),
            events: 0,
            file: None,
            reopen: None,
            rotations: 0,
            reopens: 0,
        }
    }

    /// Reopens the file whenever `flag` is raised (wire it to SIGHUP with
    /// [`EveWriter::reopen_on_sighup`]).
    pub fn reopen_when(&mut self, flag: Arc<AtomicBool>) {
        self.reopen = Some(flag);
    }

    /// Registers a SIGHUP handler that makes this writer reopen its file, as logrotate
    /// expects after it moved the file away.
    pub fn reopen_on_sighup(&mut self) -> std::io::Result<()> {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&flag))?;
        self.reopen_when(flag);
        Ok(())
    }

    fn reopen_file(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        self.out.flush()?;
        let (out, written) = open_append(&file.path)?;
        *self.out.get_mut() = out;
        file.written = written;
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        let Some(rotation) = file.rotation else {
            return Ok(());
        };
        self.out.flush()?;
        let path = file.path.clone();
        let keep = rotation.keep.max(1);
        let _ = std::fs::remove_file(numbered(&path, keep));
        for n in (1..keep).rev() {
            let from = numbered(&path, n);
            if from.exists() {
                std::fs::rename(&from, numbered(&path, n + 1))?;
            }
        }
        std::fs::rename(&path, numbered(&path, 1))?;
        self.rotations += 1;
        self.reopen_file()
    }

    fn write_event<T: Serialize>(&mut self, event: &T) -> std::io::Result<()> {
        if let Some(flag) = &self.reopen {
            if flag.swap(false, Ordering::AcqRel) {
                self.reopens += 1;
                self.reopen_file()?;
            }
        }
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.events += 1;
        if let Some(file) = self.file.as_mut() {
            file.written += line.len() as u64;
            if file.rotation.is_some_and(|r| file.written >= r.max_bytes) {
                self.rotate()?;
            }
        }
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
        // The protocol context under the protocol's name (Suricata's layout); the
        // devices and the learned fact under `otsensor`, as is the context of an alert
        // without an application protocol.
        let context = &alert.context;
        let mut detail = (!context.detail.is_empty())
            .then(|| serde_json::to_value(&context.detail).ok())
            .flatten();
        if let Some(otsensor) = event.get_mut("otsensor").and_then(|o| o.as_object_mut()) {
            let devices = [
                (
                    "src_device",
                    context.src_device.as_ref().map(serde_json::to_value),
                ),
                (
                    "dest_device",
                    context.dest_device.as_ref().map(serde_json::to_value),
                ),
                (
                    "baseline",
                    context.baseline.as_ref().map(serde_json::to_value),
                ),
            ];
            for (key, value) in devices {
                if let Some(Ok(value)) = value {
                    otsensor.insert(key.to_owned(), value);
                }
            }
            if alert.app_proto.is_none() {
                if let Some(detail) = detail.take() {
                    otsensor.insert("context".to_owned(), detail);
                }
            }
        }
        if let (Some(protocol), Some(map), Some(detail)) =
            (alert.app_proto, event.as_object_mut(), detail)
        {
            map.insert(protocol.name().to_owned(), detail);
        }
        if let (Some(evidence), Some(otsensor)) = (
            &alert.evidence,
            event.get_mut("otsensor").and_then(|o| o.as_object_mut()),
        ) {
            otsensor.insert(
                "evidence".to_owned(),
                serde_json::json!({"path": evidence.path, "sha256": evidence.sha256}),
            );
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

    fn sample_flow(id: u64) -> FlowRecord {
        use crate::flow::table::{DirectionCounts, EndReason};
        FlowRecord {
            flow_id: id,
            src_ip: "10.0.0.1".parse().expect("ip"),
            src_port: 1000,
            dest_ip: "10.0.0.2".parse().expect("ip"),
            dest_port: 502,
            protocol: 6,
            vlan: 0,
            first_ns: 0,
            last_ns: 1,
            to_server: DirectionCounts::default(),
            to_client: DirectionCounts::default(),
            reason: EndReason::Timeout,
            app_proto: None,
            tcp_flags_to_server: 0,
            tcp_flags_to_client: 0,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("otsensor-eve-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = temp_dir("rotate");
        let path = dir.join("eve.json");
        let mut writer = EveWriter::open_rotating(
            &path,
            Some(Rotation {
                max_bytes: 1000,
                keep: 2,
            }),
        )
        .expect("open");
        for id in 0..40 {
            writer.flow(&sample_flow(id)).expect("write");
        }
        writer.flush().expect("flush");
        assert!(writer.rotations >= 2, "rotations {}", writer.rotations);
        assert!(numbered(&path, 1).exists() && numbered(&path, 2).exists());
        assert!(!numbered(&path, 3).exists());
        for file in [path.clone(), numbered(&path, 1)] {
            let text = std::fs::read_to_string(&file).expect("read");
            assert!(
                text.len() <= 1000 + 600,
                "{} is {} bytes",
                file.display(),
                text.len()
            );
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).expect("whole JSON lines");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_alert_writes_its_devices_and_learned_fact_under_otsensor() {
        let dir = temp_dir("alert-context");
        let path = dir.join("eve.json");
        let mut writer = EveWriter::open(&path).expect("open");
        let device = serde_json::json!({
            "ip": "10.0.0.10", "class": "plc", "roles": ["s7comm server"], "summary": "plc: s7comm server"
        });
        let context = |json: serde_json::Value| serde_json::from_value(json).expect("a context");
        let mut alert = crate::control::tests_support::sample_alert();
        alert.context = context(serde_json::json!({
            "operation": "S7comm PLC Stop (function 0x29)",
            "dest_device": device,
            "baseline": {"fact": "seen writers: 10.0.0.5"},
        }));
        writer.alert(&alert).expect("write");
        // Without an application protocol the rest of the context is under otsensor.
        alert.app_proto = None;
        alert.context = context(serde_json::json!({"kind": "quiet", "src_device": device}));
        writer.alert(&alert).expect("write");
        writer.flush().expect("flush");
        let text = std::fs::read_to_string(&path).expect("read");
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON line"))
            .collect();
        assert_eq!(events.len(), 2, "{text}");
        let (with, without) = (&events[0], &events[1]);
        assert_eq!(
            with["s7comm"],
            serde_json::json!({"operation": "S7comm PLC Stop (function 0x29)"}),
            "{with}"
        );
        assert_eq!(with["otsensor"]["dest_device"], device);
        assert_eq!(
            with["otsensor"]["baseline"]["fact"],
            "seen writers: 10.0.0.5"
        );
        assert_eq!(with["flow_id"], 7);
        assert_eq!(without["otsensor"]["src_device"], device, "{without}");
        assert_eq!(
            without["otsensor"]["context"],
            serde_json::json!({"kind": "quiet"})
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn reopens_when_flagged() {
        let dir = temp_dir("reopen");
        let path = dir.join("eve.json");
        let mut writer = EveWriter::open(&path).expect("open");
        let flag = Arc::new(AtomicBool::new(false));
        writer.reopen_when(Arc::clone(&flag));
        writer.flow(&sample_flow(1)).expect("write");
        writer.flush().expect("flush");
        // logrotate moves the file, then signals.
        std::fs::rename(&path, dir.join("eve.json.old")).expect("move");
        flag.store(true, Ordering::Release);
        writer.flow(&sample_flow(2)).expect("write");
        writer.flush().expect("flush");
        assert_eq!(writer.reopens, 1);
        let fresh = std::fs::read_to_string(&path).expect("new file");
        assert_eq!(fresh.lines().count(), 1);
        assert!(fresh.contains("\"flow_id\":2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
