//! The per-queue worker: slices frames, owns its flows, de-duplicates device sightings
//! and emits observations. It shares nothing mutable; counters are plain fields that the
//! pipeline folds together at the end (and, live, once per batch).

use std::hash::BuildHasher;
use std::sync::Arc;

use crossbeam_channel::Sender;
use serde::Serialize;

use crate::capture::Packet;
use crate::config::Policy;
use crate::dissect::inspect::{EventSink, FlowInfo, Outputs, PduCtx, ProtocolStats, RecentCache};
use crate::dissect::{self, Direction, Protocol};
use crate::flow::stream::{frame_all, Framer, StreamCounters, StreamPool};
use crate::flow::table::{side_index, EndReason, Flow, FlowTable, TableCounters, Timeouts};
use crate::flow::{FlowKey, Side};
use crate::layers::{self, Anomaly, Frame, TcpFlags, Transport};
use crate::observe::{FlowRecord, Observation};

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
    tx: Sender<Observation>,
    delivery: Delivery,
    pub sent: u64,
    pub dropped: u64,
}

impl ObservationSink {
    pub fn new(tx: Sender<Observation>, delivery: Delivery) -> ObservationSink {
        ObservationSink {
            tx,
            delivery,
            sent: 0,
            dropped: 0,
        }
    }

    pub fn send(&mut self, observation: Observation) {
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

/// Everything a worker reports when it ends.
#[derive(Clone, Debug, Default)]
pub struct WorkerReport {
    pub counters: WorkerCounters,
    pub protocols: ProtocolStats,
    pub stream: StreamCounters,
}

impl WorkerReport {
    pub fn merge(&mut self, other: &WorkerReport) {
        self.counters.merge(&other.counters);
        self.protocols.merge(&other.protocols);
        self.stream.merge(&other.stream);
    }
}

/// Per-worker counters.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct WorkerCounters {
    pub packets: u64,
    pub bytes: u64,
    pub non_ip: u64,
    pub ip_fragments: u64,
    pub truncated: u64,
    pub malformed: u64,
    pub flows_created: u64,
    pub flows_expired: u64,
    pub flows_evicted: u64,
    pub observations_sent: u64,
    pub observations_dropped: u64,
    /// Frames this worker received but another owns, copied to the owner.
    pub handoffs_sent: u64,
    /// Hand-offs cut to the hand-off frame size.
    pub handoffs_truncated: u64,
    /// Frames other workers handed to this one.
    pub handoffs_received: u64,
    /// Hand-offs dropped because the owner's ring was full (live capture only).
    pub handoffs_dropped: u64,
}

impl WorkerCounters {
    /// Adds another worker's counters to these.
    pub fn merge(&mut self, other: &WorkerCounters) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.non_ip += other.non_ip;
        self.ip_fragments += other.ip_fragments;
        self.truncated += other.truncated;
        self.malformed += other.malformed;
        self.flows_created += other.flows_created;
        self.flows_expired += other.flows_expired;
        self.flows_evicted += other.flows_evicted;
        self.observations_sent += other.observations_sent;
        self.observations_dropped += other.observations_dropped;
        self.handoffs_sent += other.handoffs_sent;
        self.handoffs_truncated += other.handoffs_truncated;
        self.handoffs_received += other.handoffs_received;
        self.handoffs_dropped += other.handoffs_dropped;
    }
}

/// Remembers recently reported device sightings so that a busy device costs one
/// observation per refresh interval, not one per packet. Direct-mapped: a collision
/// only causes a harmless repeat.
struct DeviceDedup {
    slots: Box<[(u64, u64)]>,
}

const DEDUP_SLOTS: usize = 4096;
/// A device is re-reported at most this often (packet time), to refresh last-seen.
const DEVICE_REFRESH_NS: u64 = 60 * 1_000_000_000;

impl DeviceDedup {
    fn new() -> DeviceDedup {
        DeviceDedup {
            slots: vec![(u64::MAX, 0); DEDUP_SLOTS].into_boxed_slice(),
        }
    }

    fn should_report(&mut self, key: u64, now_ns: u64) -> bool {
        let slot = &mut self.slots[(key as usize) % DEDUP_SLOTS];
        if slot.0 == key && now_ns.saturating_sub(slot.1) < DEVICE_REFRESH_NS {
            return false;
        }
        *slot = (key, now_ns);
        true
    }
}

/// Reassembly buffers per worker and their size: half holds a partial PDU, half one
/// out-of-order segment.
const STREAM_BUFFERS: usize = 8192;
const STREAM_BUFFER_BYTES: usize = 8192;
/// Slots of the cache that rate-limits command/identity/error observations.
const RECENT_SLOTS: usize = 16_384;
/// A repeated command, identity or error is re-reported at most this often.
const OBSERVATION_REFRESH_NS: u64 = 60 * 1_000_000_000;

/// How often idle flows are swept, in packet time.
const SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

/// One worker's state.
pub struct Worker {
    pub id: usize,
    policy: Arc<Policy>,
    flows: FlowTable,
    sink: ObservationSink,
    events: Option<EventSink>,
    devices: DeviceDedup,
    stream_pool: StreamPool,
    stream_counters: StreamCounters,
    stats: ProtocolStats,
    recent: RecentCache,
    counters: WorkerCounters,
    now_ns: u64,
    next_sweep_ns: u64,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("flows", &self.flows)
            .finish()
    }
}

impl Worker {
    /// A worker with its share of the flow-table budget.
    pub fn new(
        id: usize,
        policy: Arc<Policy>,
        sink: ObservationSink,
        events: Option<EventSink>,
    ) -> Worker {
        let per_worker = policy.max_flows.div_ceil(policy.workers.max(1));
        let timeouts = Timeouts {
            idle_ns: policy.flow_idle_timeout_ns,
            closed_ns: policy.flow_closed_timeout_ns,
        };
        Worker {
            id,
            flows: FlowTable::new(per_worker, timeouts),
            policy,
            sink,
            events,
            devices: DeviceDedup::new(),
            stream_pool: StreamPool::new(STREAM_BUFFERS, STREAM_BUFFER_BYTES),
            stream_counters: StreamCounters::default(),
            stats: ProtocolStats::default(),
            recent: RecentCache::new(RECENT_SLOTS, OBSERVATION_REFRESH_NS),
            counters: WorkerCounters::default(),
            now_ns: 0,
            next_sweep_ns: 0,
        }
    }

    /// Processes one captured packet.
    pub fn process(&mut self, packet: &Packet<'_>) {
        let frame = layers::slice(packet);
        self.process_frame(&frame);
    }

    /// Processes one sliced frame.
    pub fn process_frame(&mut self, frame: &Frame<'_>) {
        self.counters.packets += 1;
        self.counters.bytes += u64::from(frame.wire_len);
        self.advance_clock(frame.ts_ns);
        match frame.anomaly {
            Some(Anomaly::Truncated) => self.counters.truncated += 1,
            Some(Anomaly::Malformed) => self.counters.malformed += 1,
            None => {}
        }
        self.observe_device(frame);
        if frame.src_ip.is_none() {
            self.counters.non_ip += 1;
            return;
        }
        if frame.fragment {
            // Fragments are counted and passed on unreassembled; they start no flow
            // because later fragments carry no ports.
            self.counters.ip_fragments += 1;
            return;
        }
        let Some((key, side)) = FlowKey::of(frame) else {
            return;
        };
        let (sink, pool) = (&mut self.sink, &mut self.stream_pool);
        let (slot, is_new) = self.flows.lookup(&key, side, frame.ts_ns, |flow, reason| {
            end_flow(flow, reason, sink, pool)
        });
        let flow = self.flows.get_mut(slot);
        let index = side_index(side);
        flow.sent[index].packets += 1;
        flow.sent[index].bytes += u64::from(frame.wire_len);
        if let Transport::Tcp { flags, .. } = frame.transport {
            flow.tcp_flags[index] |= flags.0;
            if flags.has(TcpFlags::RST)
                || (flow.tcp_flags[0] & TcpFlags::FIN != 0
                    && flow.tcp_flags[1] & TcpFlags::FIN != 0)
            {
                flow.closed = true;
            }
        }
        if is_new {
            if let Transport::Tcp { flags, .. } = frame.transport {
                // Joined after the SYN: the SYN-ACK's sender is the server.
                if flags.has(TcpFlags::SYN) && flags.has(TcpFlags::ACK) {
                    flow.initiator = if side == Side::Lo { Side::Hi } else { Side::Lo };
                }
            }
            flow.app_proto = first_guess(&key, flow.initiator);
        }
        self.dissect(slot, side, frame);
    }

    /// Feeds a packet's payload to its flow's protocol: recognition by signature for
    /// flows on unexpected ports, TCP stream framing, then per-PDU inspection.
    fn dissect(&mut self, slot: u32, side: Side, frame: &Frame<'_>) {
        let flow = self.flows.get_mut(slot);
        let index = side_index(side);
        if let Transport::Tcp { flags, seq, .. } = frame.transport {
            if flags.has(TcpFlags::SYN) {
                flow.stream[index].on_syn(seq);
            }
        }
        if frame.payload.is_empty() {
            return;
        }
        if flow.app_proto.is_none() {
            if flow.recognition_left == 0 {
                return;
            }
            flow.recognition_left -= 1;
            flow.app_proto = dissect::recognise(flow.key.protocol, frame.payload);
        }
        let Some(protocol) = flow.app_proto else {
            return;
        };
        let direction = if side == flow.initiator {
            Direction::Request
        } else {
            Direction::Response
        };
        let (client_mac, server_mac) = match direction {
            Direction::Request => (frame.src_mac, frame.dst_mac),
            Direction::Response => (frame.dst_mac, frame.src_mac),
        };
        let info = FlowInfo {
            flow_id: flow.id,
            client: flow_endpoint(&flow.key, flow.initiator),
            server: flow_endpoint(&flow.key, other(flow.initiator)),
            client_mac,
            server_mac,
            ip_protocol: flow.key.protocol,
            vlan: flow.key.vlan,
        };
        let Flow { stream, app, .. } = flow;
        let (stats, sink, recent, events) = (
            &mut self.stats,
            &mut self.sink,
            &mut self.recent,
            &mut self.events,
        );
        let ts_ns = frame.ts_ns;
        let mut on_pdu = |pdu: &[u8]| {
            let mut ctx = PduCtx {
                ts_ns,
                direction,
                flow: &info,
                state: &mut *app,
                stats: &mut *stats,
                out: Outputs {
                    observations: &mut *sink,
                    recent: &mut *recent,
                    events: events.as_mut(),
                },
            };
            dissect::inspect(protocol, pdu, &mut ctx);
        };
        match (frame.transport, dissect::framer(protocol)) {
            (Transport::Tcp { seq, .. }, Some(frame_fn)) => {
                let mut framer = Framer {
                    pool: &mut self.stream_pool,
                    counters: &mut self.stream_counters,
                    frame: frame_fn,
                    on_pdu,
                };
                stream[index].on_segment(seq, frame.payload, &mut framer);
            }
            (Transport::Tcp { .. }, None) => {}
            (_, Some(frame_fn)) => {
                // A datagram may carry several PDUs (DNP3 link frames).
                frame_all(
                    frame.payload,
                    frame_fn,
                    &mut self.stream_counters,
                    &mut on_pdu,
                );
            }
            (_, None) => on_pdu(frame.payload),
        }
    }

    pub fn note_handoff_sent(&mut self, truncated: bool) {
        self.counters.handoffs_sent += 1;
        self.counters.handoffs_truncated += u64::from(truncated);
    }

    pub fn note_handoffs_received(&mut self, frames: u64) {
        self.counters.handoffs_received += frames;
    }

    /// Moves packet time forward and sweeps idle flows once per interval.
    pub fn advance_clock(&mut self, ts_ns: u64) {
        // Packet time follows the packets, backwards too: several capture files replayed
        // in a row need not be in time order, and a flow is only ever compared with its
        // own packets' times (expiry saturates), so a jump back ends nothing early.
        self.now_ns = ts_ns;
        if self.next_sweep_ns.saturating_sub(self.now_ns) > SWEEP_INTERVAL_NS {
            self.next_sweep_ns = self.now_ns;
        }
        if self.now_ns >= self.next_sweep_ns {
            let (sink, pool) = (&mut self.sink, &mut self.stream_pool);
            self.flows.expire(self.now_ns, |flow, reason| {
                end_flow(flow, reason, sink, pool)
            });
            self.next_sweep_ns = self.now_ns + SWEEP_INTERVAL_NS;
        }
    }

    fn observe_device(&mut self, frame: &Frame<'_>) {
        let (ip, mac) = match (frame.src_ip, frame.arp) {
            (Some(ip), _) if layers::is_unicast(ip) && self.policy.is_internal(ip) => {
                (Some(ip), frame.src_mac)
            }
            (None, Some(arp)) => match arp.sender_ip {
                Some(ip) if !ip.is_unspecified() && self.policy.is_internal(ip.into()) => {
                    (Some(ip.into()), arp.sender_mac.or(frame.src_mac))
                }
                _ => (None, frame.src_mac),
            },
            // Non-IP frames, and IP frames from addresses that are not devices here
            // (external, unspecified): the sending MAC is a device on this segment.
            _ => (None, frame.src_mac),
        };
        if ip.is_none() && !mac.is_some_and(|m| layers::is_unicast_mac(&m)) {
            return;
        }
        let key = foldhash::fast::FixedState::with_seed(7).hash_one((ip, mac, frame.vlan[0]));
        if self.devices.should_report(key, frame.ts_ns) {
            self.sink.send(Observation::DeviceSeen {
                ts_ns: frame.ts_ns,
                mac,
                ip,
                vlan: frame.vlan[0],
            });
        }
    }

    /// Ends every flow and returns the counters (end of capture or shutdown).
    pub fn finish(mut self) -> WorkerReport {
        let (sink, pool) = (&mut self.sink, &mut self.stream_pool);
        self.flows
            .drain(|flow, reason| end_flow(flow, reason, sink, pool));
        WorkerReport {
            counters: self.counters(),
            protocols: self.stats,
            stream: self.stream_counters,
        }
    }

    /// A snapshot of the counters, including the flow table's and the sink's.
    pub fn counters(&self) -> WorkerCounters {
        let TableCounters {
            created,
            expired,
            evicted,
        } = self.flows.counters;
        WorkerCounters {
            flows_created: created,
            flows_expired: expired,
            flows_evicted: evicted,
            observations_sent: self.sink.sent,
            observations_dropped: self.sink.dropped,
            ..self.counters.clone()
        }
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Lo => Side::Hi,
        Side::Hi => Side::Lo,
    }
}

fn flow_endpoint(key: &FlowKey, side: Side) -> (std::net::IpAddr, u16) {
    match side {
        Side::Lo => (key.lo_ip, key.lo_port),
        Side::Hi => (key.hi_ip, key.hi_port),
    }
}

/// The port-based first guess of a new flow's protocol: the responder's port first.
fn first_guess(key: &FlowKey, initiator: Side) -> Option<Protocol> {
    let (server_port, client_port) = if initiator == Side::Lo {
        (key.hi_port, key.lo_port)
    } else {
        (key.lo_port, key.hi_port)
    };
    Protocol::by_port(key.protocol, server_port)
        .or_else(|| Protocol::by_port(key.protocol, client_port))
}

/// Returns a flow's buffers and reports its end.
fn end_flow(flow: &Flow, reason: EndReason, sink: &mut ObservationSink, pool: &mut StreamPool) {
    for dir in &flow.stream {
        dir.release(pool);
    }
    sink.send(flow_ended(flow, reason));
}

fn flow_ended(flow: &Flow, reason: EndReason) -> Observation {
    let key = &flow.key;
    let ((src_ip, src_port), (dest_ip, dest_port)) = match flow.initiator {
        Side::Lo => ((key.lo_ip, key.lo_port), (key.hi_ip, key.hi_port)),
        Side::Hi => ((key.hi_ip, key.hi_port), (key.lo_ip, key.lo_port)),
    };
    let client = side_index(flow.initiator);
    Observation::FlowEnded(FlowRecord {
        flow_id: flow.id,
        src_ip,
        src_port,
        dest_ip,
        dest_port,
        protocol: key.protocol,
        vlan: key.vlan,
        first_ns: flow.first_ns,
        last_ns: flow.last_ns,
        to_server: flow.to_server(),
        to_client: flow.to_client(),
        reason,
        app_proto: flow.app_proto,
        tcp_flags_to_server: flow.tcp_flags[client],
        tcp_flags_to_client: flow.tcp_flags[1 - client],
    })
}
