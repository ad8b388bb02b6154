//! `Observation`: the only message from workers to the analyzer. Small and bounded in
//! size; workers de-duplicate them so their rate follows network change, not packet rate.

use std::net::IpAddr;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

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
    /// The controller's operating mode as the protocol names it (S7 SZL 0x0424:
    /// "RUN", "STOP (internal)", ...; CIP Identity status: "RUN", "IDLE", "MAJOR
    /// FAULT ..."; BACnet system-status: "operational", "download-in-progress", ...;
    /// DNP3 IIN: "online", "restarted", ...; OPC UA ServerState: "Running",
    /// "Suspended", ...); see [`IdentityField::mode_is_run`].
    Mode,
    /// The host name a device gives itself (DHCP option 12 or 81, mDNS A/SRV owner
    /// names, NetBIOS workstation/server names).
    HostName,
    /// A network device's system name (LLDP System Name, CDP Device ID, SNMP sysName).
    SystemName,
    /// A free-text system description (LLDP System Description, SNMP sysDescr).
    Description,
    /// Operating system or software release (CDP Software Version).
    Os,
    /// DHCP option 60, the client's vendor class (e.g. "MSFT 5.0").
    VendorClass,
    /// SNMP sysLocation.
    Location,
    /// SNMP sysObjectID (dotted), the vendor's product object.
    ObjectId,
}

impl IdentityField {
    /// Whether a [`IdentityField::Mode`] value is a running mode (the controller
    /// executes its program).
    pub fn mode_is_run(value: &str) -> bool {
        matches!(
            value,
            "RUN" | "operational" | "operational-read-only" | "online" | "Running"
        )
    }
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

/// What a GOOSE publication showed (`Observation::Goose`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "change")]
pub enum GooseChange {
    /// The publisher published the control block.
    Published,
    /// stNum moved on by more than one since the last publication.
    StNumJump { from: u32, to: u32 },
    /// stNum went back (not a restart at 1), or sqNum went back within one stNum.
    Replay { last_st_num: u32, st_num: u32 },
    /// The simulation (edition 1: test) flag or the Reserved 1 simulation bit is set.
    Simulation,
    /// confRev differs from the last publication's.
    ConfRevChange { from: u32, to: u32 },
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
        /// The (client, server) MACs of a frame without IP (PROFINET DCP, an EtherType
        /// of its own): its endpoints are unspecified, and the analyzer finds the
        /// devices by these MACs. `None` for IP traffic.
        macs: Option<(Mac, Mac)>,
    },
    /// A device reported an identity attribute about itself (or a server about it:
    /// a DHCP reply names its client). `device` is unspecified when the protocol
    /// names the device by MAC only (LLDP, CDP, a DHCP client without an address);
    /// the analyzer then finds it by `mac`.
    Identity {
        ts_ns: u64,
        device: IpAddr,
        mac: Option<Mac>,
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
    /// The security of a client's channel to a server, where the protocol shows it:
    /// `secured` when the client opened a signed (or signed and encrypted) channel
    /// (OPC UA OpenSecureChannel under a policy other than None), not `secured` when
    /// it opened a session on a channel without security (OPC UA CreateSession or
    /// ActivateSession on a SecurityPolicy None channel). Once per flow and value
    /// per interval.
    ChannelSecurity {
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        protocol: Protocol,
        secured: bool,
    },
    /// An IEC 61850 GOOSE publication of `gocb_ref` by `publisher` (its source MAC):
    /// that it was published (once per interval, for new publishers of a control
    /// block), or how it deviated from the publisher's last publication of it.
    Goose {
        ts_ns: u64,
        publisher: Mac,
        vlan: u16,
        gocb_ref: ShortText,
        change: GooseChange,
    },
    /// A client addressed one object of a server: a Modbus (function, start address),
    /// an S7 SZL (id, index). Reported once per flow and object per interval, so
    /// normal polling costs little and a sweep over objects is seen.
    ObjectAccess {
        ts_ns: u64,
        flow_id: u64,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        protocol: Protocol,
        object: u64,
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
            | Observation::ObjectAccess { ts_ns, .. }
            | Observation::ChannelSecurity { ts_ns, .. }
            | Observation::Goose { ts_ns, .. }
            | Observation::KernelConversation { ts_ns, .. } => *ts_ns,
            Observation::FlowEnded(record) => record.last_ns,
        }
    }
}

/// An observation as it travels the channel, stamped by the worker's sink with the
/// monotonic time it was made ([`mono_ns`]), so the analyzer can measure
/// packet-to-alert latency without changing what inspection code builds, and with the
/// order key of the packet that caused it (see [`Merge`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stamped {
    pub observation: Observation,
    pub mono_ns: u64,
    /// The causing packet's place in the source's order: its index in a replay, its
    /// capture time live. Non-decreasing along one producer's stream.
    pub order: u64,
}

/// One producer's (worker's) observations since its last batch, in its order, and its
/// watermark: every observation it will send later has an order key above `watermark`.
#[derive(Clone, Debug, Default)]
pub struct ObservationBatch {
    pub producer: usize,
    pub watermark: u64,
    /// The producer parks (live, no traffic) and has stored this stamp in its
    /// [`ParkState`]: while that state still shows it, the merge takes the wall clock
    /// as the producer's watermark (see [`Merge`]).
    pub parked: Option<u64>,
    /// The producer has ended: nothing more will come from it.
    pub last: bool,
    pub items: Vec<Stamped>,
}

/// Watermark of a producer that has ended.
pub const WATERMARK_END: u64 = u64::MAX;

/// Whether a live worker is parked, shared by the worker and the analyzer's [`Merge`]:
/// the handshake that lets a parked worker's watermark follow the wall clock exactly.
///
/// The worker, before it parks, stores a stamp (the wall clock it publishes as its idle
/// watermark) and then sends its idle batch carrying the same stamp; on waking it
/// stores [`ParkState::wake`] *before* it reads the clock for any frame. The analyzer
/// reads the wall clock `T`, then loads the state. If it still holds the stamp of the
/// worker's last batch taken in, the load came before the wake in the single order of
/// SeqCst operations, so every clock reading the worker makes for a frame comes after
/// `T`; and everything the worker observed before parking was in that batch. Its
/// watermark may then be taken as `T - 1`. A peer's frame handed to a parked worker is
/// stamped by the peer, possibly before `T`: the woken worker orders it after the clock
/// it reads on waking (`live::queue`). Stamps of two parks differ (the clock moved on
/// in between), so a state left by a later park never matches an earlier idle batch.
#[derive(Debug, Default)]
pub struct ParkState {
    /// The stamp of the park in progress; [`AWAKE`] while the worker runs.
    stamp: AtomicU64,
}

const AWAKE: u64 = 0;

impl ParkState {
    /// The worker is about to park with this stamp: call after everything it observed
    /// is in its pending batch and before that batch (carrying the stamp) is sent.
    pub fn park(&self, stamp: u64) {
        self.stamp.store(stamp.max(1), Ordering::SeqCst);
    }

    /// The worker runs again: call before reading the clock for anything it stamps.
    pub fn wake(&self) {
        self.stamp.store(AWAKE, Ordering::SeqCst);
    }

    /// Whether the worker is still in the park its idle batch announced.
    fn still_parked(&self, stamp: u64) -> bool {
        self.stamp.load(Ordering::SeqCst) == stamp.max(1)
    }
}

/// Park states for `producers` workers, all awake.
pub fn park_states(producers: usize) -> Arc<[ParkState]> {
    (0..producers).map(|_| ParkState::default()).collect()
}

/// The analyzer's k-way merge of the workers' observation streams. Each worker's stream
/// is in its own order; an observation is released once every worker's watermark has
/// reached its order key, so the analyzer sees all workers' observations in one order
/// (the source's packet order in a replay) whatever the number of workers and however
/// the packets fell into batches. Ties go to the lower producer id. A parked live
/// worker's watermark is the wall clock, checked against its [`ParkState`].
#[derive(Debug)]
pub struct Merge {
    producers: Vec<Producer>,
    parks: Arc<[ParkState]>,
    held: usize,
    /// The last [`Merge::pop`] that released nothing was held back by a parked
    /// producer's clock watermark, not by a producer that will send again.
    blocked_by_clock: bool,
}

#[derive(Debug, Default)]
struct Producer {
    queue: std::collections::VecDeque<Stamped>,
    watermark: u64,
    /// The park stamp of its last batch taken in, if that batch said it parks.
    parked: Option<u64>,
}

impl Merge {
    /// A merge whose producers never park (replay, tests).
    pub fn new(producers: usize) -> Merge {
        Merge::with_park_states(park_states(producers))
    }

    /// A merge of one producer per park state (live: one per queue worker).
    pub fn with_park_states(parks: Arc<[ParkState]>) -> Merge {
        Merge {
            producers: (0..parks.len()).map(|_| Producer::default()).collect(),
            parks,
            held: 0,
            blocked_by_clock: false,
        }
    }

    /// Observations waiting for a slower producer's watermark.
    pub fn held(&self) -> usize {
        self.held
    }

    /// True when observations are held only until the wall clock moves on (a parked
    /// producer's clock watermark equals their key): no batch will come to release
    /// them, so the caller should come back shortly. Otherwise a producer that holds
    /// them back is awake and will send a batch.
    pub fn waits_on_clock(&self) -> bool {
        self.held > 0 && self.blocked_by_clock
    }

    /// Takes a batch in; its emptied vector is returned for reuse by its producer.
    pub fn push(&mut self, batch: &mut ObservationBatch) {
        let Some(producer) = self.producers.get_mut(batch.producer) else {
            return;
        };
        self.held += batch.items.len();
        producer.queue.extend(batch.items.drain(..));
        producer.watermark = if batch.last {
            WATERMARK_END
        } else {
            producer.watermark.max(batch.watermark)
        };
        producer.parked = batch.parked.filter(|_| !batch.last);
    }

    /// Ends every producer (the channel closed): everything held is released.
    pub fn end_all(&mut self) {
        for producer in &mut self.producers {
            producer.watermark = WATERMARK_END;
            producer.parked = None;
        }
    }

    /// The next observation every producer's watermark has passed, if any. `wall_ns`
    /// is the wall clock, read after the batches were taken in and kept before the
    /// park-state loads here (`capture::afxdp::clock_before_loads`); used only for
    /// parked producers, see [`ParkState`].
    pub fn pop(&mut self, wall_ns: u64) -> Option<Stamped> {
        if self.held == 0 {
            return None;
        }
        let mut bound = u64::MAX;
        let mut bound_from_clock = false;
        let mut best: Option<(u64, usize)> = None;
        for (index, producer) in self.producers.iter().enumerate() {
            let parked = producer.parked.is_some_and(|stamp| {
                self.parks
                    .get(index)
                    .is_some_and(|park| park.still_parked(stamp))
            });
            // Every key it sends later is above a clock reading made after `wall_ns`.
            let watermark = if parked {
                producer.watermark.max(wall_ns.saturating_sub(1))
            } else {
                producer.watermark
            };
            if watermark < bound {
                bound = watermark;
                bound_from_clock = parked;
            }
            if let Some(head) = producer.queue.front() {
                if best.is_none_or(|(order, _)| head.order < order) {
                    best = Some((head.order, index));
                }
            }
        }
        let (order, index) = best?;
        if order > bound {
            self.blocked_by_clock = bound_from_clock;
            return None;
        }
        self.held -= 1;
        self.producers[index].queue.pop_front()
    }
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

/// Nanoseconds since the Unix epoch (the wall clock live frames are stamped with).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// How a full observation channel is handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Wait for room: offline replay, where completeness beats latency.
    Block,
    /// Drop and count: live capture, where a worker must never stall.
    DropWhenFull,
}

/// The worker's side of the observation channel.
///
/// Batched (the pipeline): observations collect in a preallocated vector that goes to
/// the analyzer as one [`ObservationBatch`] with the worker's watermark, once per batch
/// of packets (or when full); the analyzer returns emptied vectors. Direct (unit tests,
/// benchmarks): each observation is sent on its own.
#[derive(Debug)]
pub struct ObservationSink {
    channel: Channel,
    delivery: Delivery,
    /// Order key of the packet being processed (stamped on what it causes).
    order: u64,
    /// The highest watermark published.
    watermark: u64,
    pub sent: u64,
    pub dropped: u64,
}

#[derive(Debug)]
enum Channel {
    Direct(Sender<Stamped>),
    Batched {
        producer: usize,
        tx: Sender<ObservationBatch>,
        free: Receiver<Vec<Stamped>>,
        pending: Vec<Stamped>,
    },
}

/// Observations per batch message: a fuller vector is sent at once.
pub const OBSERVATION_BATCH: usize = 256;

impl ObservationSink {
    /// Sends each observation on its own (tests, benchmarks).
    pub fn new(tx: Sender<Stamped>, delivery: Delivery) -> ObservationSink {
        ObservationSink {
            channel: Channel::Direct(tx),
            delivery,
            order: 0,
            watermark: 0,
            sent: 0,
            dropped: 0,
        }
    }

    /// Sends observations in batches with this producer's watermark; `free` brings
    /// emptied vectors back from the analyzer.
    pub fn batched(
        producer: usize,
        tx: Sender<ObservationBatch>,
        free: Receiver<Vec<Stamped>>,
        delivery: Delivery,
    ) -> ObservationSink {
        ObservationSink {
            channel: Channel::Batched {
                producer,
                tx,
                free,
                pending: Vec::with_capacity(OBSERVATION_BATCH),
            },
            delivery,
            order: 0,
            watermark: 0,
            sent: 0,
            dropped: 0,
        }
    }

    /// Sets the order key of the packet now processed; keys never go backwards.
    #[inline]
    pub fn set_order(&mut self, order: u64) {
        self.order = self.order.max(order);
    }

    pub fn send(&mut self, observation: Observation) {
        let stamped = Stamped {
            observation,
            mono_ns: mono_ns(),
            order: self.order,
        };
        match &mut self.channel {
            Channel::Direct(tx) => {
                let delivered = match self.delivery {
                    Delivery::Block => tx.send(stamped).is_ok(),
                    Delivery::DropWhenFull => tx.try_send(stamped).is_ok(),
                };
                if delivered {
                    self.sent += 1;
                } else {
                    self.dropped += 1;
                }
            }
            Channel::Batched { pending, .. } => {
                if pending.len() < pending.capacity() {
                    pending.push(stamped);
                    return;
                }
                // Full: what is held goes now; the packet being processed may still
                // cause more, so the watermark stays below its key.
                let watermark = self.order.saturating_sub(1);
                self.flush(watermark, false, false);
                match &mut self.channel {
                    Channel::Batched { pending, .. } if pending.len() < pending.capacity() => {
                        pending.push(stamped)
                    }
                    _ => self.dropped += 1,
                }
            }
        }
    }

    /// Sends what is held with `watermark` (the worker has processed every packet up to
    /// it). `idle`: the worker parks, and `watermark` is the stamp it stored in its
    /// [`ParkState`]; `last`: it ends. A live sink that finds the channel
    /// full keeps the observations for the next flush (and drops new ones while full).
    pub fn flush(&mut self, watermark: u64, idle: bool, last: bool) {
        let Channel::Batched {
            producer,
            tx,
            free,
            pending,
        } = &mut self.channel
        else {
            return;
        };
        self.watermark = self.watermark.max(watermark);
        let fresh = free
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(OBSERVATION_BATCH));
        let items = std::mem::replace(pending, fresh);
        let count = items.len() as u64;
        let batch = ObservationBatch {
            producer: *producer,
            watermark: self.watermark,
            parked: idle.then_some(watermark),
            last,
            items,
        };
        let result = match self.delivery {
            Delivery::Block => tx.send(batch).map_err(|e| e.into_inner()),
            Delivery::DropWhenFull if last => tx.send(batch).map_err(|e| e.into_inner()),
            Delivery::DropWhenFull => tx.try_send(batch).map_err(|e| e.into_inner()),
        };
        match result {
            Ok(()) => self.sent += count,
            // Keep them for the next try (the vector just taken is dropped); new
            // observations are dropped and counted while the held vector is full.
            Err(mut batch) => std::mem::swap(pending, &mut batch.items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(order: u64) -> Stamped {
        Stamped {
            observation: Observation::DeviceSeen {
                ts_ns: order,
                mac: None,
                ip: None,
                vlan: 0,
            },
            mono_ns: 0,
            order,
        }
    }

    fn batch(producer: usize, watermark: u64, orders: &[u64]) -> ObservationBatch {
        ObservationBatch {
            producer,
            watermark,
            items: orders.iter().map(|&o| seen(o)).collect(),
            ..Default::default()
        }
    }

    fn drain(merge: &mut Merge, wall_ns: u64) -> Vec<u64> {
        std::iter::from_fn(|| merge.pop(wall_ns))
            .map(|s| s.order)
            .collect()
    }

    #[test]
    fn releases_in_order_up_to_the_lowest_watermark() {
        let mut merge = Merge::new(2);
        merge.push(&mut batch(0, 10, &[1, 4, 9]));
        // Worker 1 has said nothing yet: nothing may go.
        assert_eq!(drain(&mut merge, 0), Vec::<u64>::new());
        merge.push(&mut batch(1, 5, &[2, 5]));
        assert_eq!(drain(&mut merge, 0), vec![1, 2, 4, 5]);
        assert_eq!(merge.held(), 1);
        // An empty batch (a tick) moves the watermark on.
        merge.push(&mut batch(1, 12, &[]));
        assert_eq!(drain(&mut merge, 0), vec![9]);
        merge.push(&mut batch(1, 20, &[13]));
        merge.push(&mut ObservationBatch {
            producer: 0,
            last: true,
            ..batch(0, 0, &[11, 30])
        });
        assert_eq!(drain(&mut merge, 0), vec![11, 13]);
        merge.end_all();
        assert_eq!(drain(&mut merge, 0), vec![30]);
        assert_eq!(merge.held(), 0);
    }

    fn parked(producer: usize, stamp: u64) -> ObservationBatch {
        ObservationBatch {
            parked: Some(stamp),
            ..batch(producer, stamp, &[])
        }
    }

    #[test]
    fn a_parked_producer_follows_the_wall_clock_until_it_wakes() {
        let parks = park_states(2);
        let mut merge = Merge::with_park_states(Arc::clone(&parks));
        merge.push(&mut batch(0, 5_000, &[1_000, 4_000]));
        parks[1].park(500);
        merge.push(&mut parked(1, 500));
        // Its later keys come from clock readings after this one: above 999, not 1_000.
        assert_eq!(drain(&mut merge, 1_000), Vec::<u64>::new());
        assert!(merge.waits_on_clock());
        assert_eq!(drain(&mut merge, 1_001), vec![1_000]);
        // Awake but not yet published: its own watermark holds, however late the
        // clock, and its next batch (not the clock) will release the rest.
        parks[1].wake();
        assert_eq!(drain(&mut merge, 9_000), Vec::<u64>::new());
        assert!(!merge.waits_on_clock());
        merge.push(&mut batch(1, 6_000, &[5_500]));
        assert_eq!(drain(&mut merge, 9_000), vec![4_000]);
        merge.push(&mut batch(0, 7_000, &[]));
        assert_eq!(drain(&mut merge, 9_000), vec![5_500]);
    }

    #[test]
    fn a_later_park_does_not_stand_for_an_earlier_one() {
        let parks = park_states(2);
        let mut merge = Merge::with_park_states(Arc::clone(&parks));
        parks[1].park(500);
        merge.push(&mut parked(1, 500));
        // It woke, worked and parked again; those batches are not taken in yet.
        parks[1].wake();
        parks[1].park(2_000);
        merge.push(&mut batch(0, 5_000, &[1_000]));
        assert_eq!(drain(&mut merge, 3_000), Vec::<u64>::new());
        assert!(!merge.waits_on_clock());
        merge.push(&mut batch(1, 1_500, &[1_200]));
        merge.push(&mut parked(1, 2_000));
        assert_eq!(drain(&mut merge, 3_000), vec![1_000, 1_200]);
    }

    /// The handshake against real threads and the real clock: a busy producer, one that
    /// parks and wakes all the time, and the analyzer's loop; what is released never
    /// goes back in order.
    #[test]
    fn the_park_handshake_keeps_the_order_under_races() {
        const PARKS: usize = 3_000;
        let parks = park_states(2);
        let (tx, rx) = crossbeam_channel::bounded::<ObservationBatch>(64);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let busy = {
            let (tx, stop) = (tx.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = realtime_ns();
                    let _ = tx.send(batch(0, now, &[now]));
                }
                let _ = tx.send(ObservationBatch {
                    last: true,
                    ..batch(0, 0, &[])
                });
            })
        };
        let napper = {
            let (parks, stop) = (Arc::clone(&parks), Arc::clone(&stop));
            std::thread::spawn(move || {
                for round in 0..PARKS {
                    let now = realtime_ns();
                    parks[1].park(now);
                    let _ = tx.send(parked(1, now));
                    for _ in 0..round % 64 {
                        std::hint::spin_loop();
                    }
                    parks[1].wake();
                    let now = realtime_ns();
                    let _ = tx.send(batch(1, now, &[now]));
                }
                stop.store(true, Ordering::Relaxed);
                let _ = tx.send(ObservationBatch {
                    last: true,
                    ..batch(1, 0, &[])
                });
            })
        };
        let mut merge = Merge::with_park_states(parks);
        let (mut released, mut last_order, mut ended) = (0usize, 0u64, 0usize);
        while ended < 2 {
            let Ok(mut first) = rx.recv() else { break };
            ended += usize::from(first.last);
            merge.push(&mut first);
            while let Ok(mut more) = rx.try_recv() {
                ended += usize::from(more.last);
                merge.push(&mut more);
            }
            let wall_ns = realtime_ns();
            while let Some(stamped) = merge.pop(wall_ns) {
                assert!(stamped.order >= last_order, "released out of order");
                last_order = stamped.order;
                released += 1;
            }
        }
        assert!(released > PARKS);
        assert!(napper.join().is_ok());
        assert!(busy.join().is_ok());
        merge.end_all();
        while let Some(stamped) = merge.pop(u64::MAX) {
            assert!(stamped.order >= last_order, "released out of order");
            last_order = stamped.order;
        }
    }
}
