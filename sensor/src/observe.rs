//! `Observation`: the only message from workers to the analyzer. Small and bounded in
//! size; workers de-duplicate them so their rate follows network change, not packet rate.

use std::net::IpAddr;

use crossbeam_channel::Sender;

use serde::Serialize;

use otsensor_wire::layers::Mac;
use otsensor_wire::Protocol;

use crate::flow::table::{DirectionCounts, EndReason};

/// A finished flow, oriented client (initiator) to server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub flow_id: u64,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dest_ip: IpAddr,
    pub dest_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    pub vlan: u16,
    pub first_ns: u64,
    pub last_ns: u64,
    pub to_server: DirectionCounts,
    pub to_client: DirectionCounts,
    pub reason: EndReason,
    pub app_proto: Option<Protocol>,
    pub tcp_flags_to_server: u8,
    pub tcp_flags_to_client: u8,
}

/// What a command does, across protocols (the baseline keys on the protocol's own
/// code; the kind drives policy detections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    Read,
    Write,
    /// Program download/upload/delete, online edits.
    Program,
    /// Controller stop (PLC STOP, stop application).
    Stop,
    /// Controller start or run.
    Start,
    /// Restart or reset (cold/warm restart, reinitialize device).
    Restart,
    /// Disabling communication or unsolicited reporting, force listen-only.
    DisableCommunication,
    /// Firmware update.
    Firmware,
    Diagnostic,
    FileTransfer,
    /// Discovery broadcasts (Who-Is, ListIdentity).
    Discovery,
    /// Control of outputs (operate, direct operate).
    Operate,
    TimeSync,
    Other,
}

/// Which identity attribute a device reported.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum IdentityField {
    Vendor,
    Product,
    Model,
    Firmware,
    Hardware,
    Serial,
    Name,
    ProductCode,
    OrderNumber,
}

/// A protocol-level failure or anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolErrorKind {
    /// A PDU that failed validation.
    Malformed,
    /// An exception/error reply (Modbus exception, CIP status, BACnet Error, S7 error).
    ErrorReply,
    /// A rejected or aborted request (BACnet Reject/Abort).
    Rejected,
    /// A function code the protocol does not define.
    UnknownFunction,
    /// Internal indications of failure (DNP3 IIN2 bits).
    DeviceIndication,
    /// Authentication or password failure.
    AuthFailure,
    /// A message that breaks its protocol's spec but parses (Modbus `Anomalies` flags,
    /// S7comm bytes after the data part): the code says which.
    SpecViolation,
}

/// A short text carried inline (identity values): at most 64 bytes, cut on a UTF-8
/// boundary, control characters replaced.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortText {
    len: u8,
    bytes: [u8; 64],
}

impl ShortText {
    pub fn from_bytes(raw: &[u8]) -> ShortText {
        let mut text = ShortText {
            len: 0,
            bytes: [0; 64],
        };
        let trimmed = raw.trim_ascii();
        let valid = match std::str::from_utf8(trimmed) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&trimmed[..e.valid_up_to()]).unwrap_or(""),
        };
        for ch in valid.chars() {
            let ch = if ch.is_control() { ' ' } else { ch };
            let mut buf = [0u8; 4];
            let encoded = ch.encode_utf8(&mut buf).as_bytes();
            let end = text.len as usize + encoded.len();
            if end > text.bytes.len() {
                break;
            }
            text.bytes[text.len as usize..end].copy_from_slice(encoded);
            text.len = end as u8;
        }
        text
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for ShortText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl Serialize for ShortText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What a worker tells the analyzer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A host sent a frame: by internal IP (with the MAC it came from), or by MAC alone
    /// for hosts seen only at layer 2 or only forwarding foreign addresses.
    DeviceSeen {
        ts_ns: u64,
        mac: Option<Mac>,
        ip: Option<IpAddr>,
        vlan: u16,
    },
    /// A flow ended (timeout, eviction or shutdown).
    FlowEnded(FlowRecord),
    /// A worker created a flow for the first packet it saw of it, so that scans, new
    /// conversations and remote access are judged at once rather than at flow end.
    FlowStarted {
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        /// IP protocol number.
        ip_protocol: u8,
        vlan: u16,
        app_proto: Option<Protocol>,
        /// TCP flags of the first packet (0 for other transports).
        tcp_flags: u8,
    },
    /// A client sent a command of this kind and protocol code to a server.
    Command {
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        protocol: Protocol,
        kind: CommandKind,
        /// The protocol's own command key (Modbus function, CIP class<<8|service, ...).
        code: u32,
        /// The unit addressed behind the server, where the protocol has one (Modbus
        /// unit identifier): unit-id sweeps are judged on it.
        unit: Option<u8>,
    },
    /// A device reported an identity attribute about itself.
    Identity {
        ts_ns: u64,
        device: IpAddr,
        protocol: Protocol,
        field: IdentityField,
        value: ShortText,
    },
    /// A protocol failure or anomaly on a flow.
    ProtocolError {
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        sender_is_server: bool,
        protocol: Protocol,
        kind: ProtocolErrorKind,
        code: u32,
    },
    /// Packets of a conversation that the XDP pre-filter shed in the kernel (they never
    /// reached a worker), accounted there and read periodically: the delta since the
    /// last report. Oriented client to server as the kernel judged it.
    KernelConversation {
        /// The conversation's last shed packet.
        ts_ns: u64,
        client: IpAddr,
        server: IpAddr,
        ip_protocol: u8,
        server_port: u16,
        packets_to_server: u64,
        bytes_to_server: u64,
        packets_to_client: u64,
        bytes_to_client: u64,
    },
}

impl Observation {
    /// Packet time of the observation (for a finished flow, its last packet).
    pub fn ts_ns(&self) -> u64 {
        match self {
            Observation::DeviceSeen { ts_ns, .. }
            | Observation::FlowStarted { ts_ns, .. }
            | Observation::Command { ts_ns, .. }
            | Observation::Identity { ts_ns, .. }
            | Observation::ProtocolError { ts_ns, .. }
            | Observation::KernelConversation { ts_ns, .. } => *ts_ns,
            Observation::FlowEnded(record) => record.last_ns,
        }
    }
}

/// An observation as it travels the channel, stamped by the worker's sink with the
/// monotonic time it was sent ([`mono_ns`]), so the analyzer can measure
/// packet-to-alert latency without changing what inspection code builds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    pub observation: Observation,
    pub mono_ns: u64,
}

/// Nanoseconds on a monotonic clock shared by every thread of the process (counted
/// from the first call), cheap enough for the rate-limited observation path.
pub fn mono_ns() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

// Keep the message small: it is copied through a bounded, preallocated channel, and
// carried inline so that ending a flow allocates nothing.
const _: () = assert!(std::mem::size_of::<Observation>() <= 160);

/// How a full observation channel is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Wait for room: offline replay, where completeness beats latency.
    Block,
    /// Drop and count: live capture, where a worker must never stall.
    DropWhenFull,
}

/// The worker's side of the observation channel.
#[derive(Debug)]
pub struct ObservationSink {
    tx: Sender<Stamped>,
    delivery: Delivery,
    pub sent: u64,
    pub dropped: u64,
}

impl ObservationSink {
    pub fn new(tx: Sender<Stamped>, delivery: Delivery) -> ObservationSink {
        ObservationSink {
            tx,
            delivery,
            sent: 0,
            dropped: 0,
        }
    }

    pub fn send(&mut self, observation: Observation) {
        let observation = Stamped {
            observation,
            mono_ns: mono_ns(),
        };
        let delivered = match self.delivery {
            Delivery::Block => self.tx.send(observation).is_ok(),
            Delivery::DropWhenFull => self.tx.try_send(observation).is_ok(),
        };
        if delivered {
            self.sent += 1;
        } else {
            self.dropped += 1;
        }
    }
}
