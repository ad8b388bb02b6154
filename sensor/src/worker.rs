//! The per-queue worker: slices frames, owns its flows, de-duplicates device sightings
//! and emits observations. It shares nothing mutable; counters are plain fields that the
//! pipeline folds together at the end (and, live, once per batch).

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;

use otsensor_wire::layers::{self, Anomaly, Frame, LinkType, TcpFlags, Transport};
use otsensor_wire::{self as wire, Direction, Protocol};

use crate::capture::Packet;
use crate::config::{Policy, PolicyWatch};
use crate::evidence::WorkerEvidence;
use crate::flow::stream::{frame_all, Framer, StreamCounters, StreamPool};
use crate::flow::table::{side_index, EndReason, Flow, FlowTable, TableCounters, Timeouts};
use crate::flow::{FlowKey, Side};
use crate::inspect::{
    self, dnp3, AppState, FlowInfo, Outputs, PduCtx, ProtocolEventSink, ProtocolStats, RecentCache,
};
use crate::observe::{FlowRecord, Observation, ObservationSink};

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
    /// The evidence ring: packets kept, overwritten before any alert asked for them
    /// (packets and captured bytes), and cut to its per-packet limit. In the summary
    /// under `evidence` (all workers), not here.
    #[serde(skip)]
    pub ring_packets: u64,
    #[serde(skip)]
    pub ring_overwritten: u64,
    #[serde(skip)]
    pub ring_overwritten_bytes: u64,
    #[serde(skip)]
    pub ring_truncated: u64,
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
        self.ring_packets += other.ring_packets;
        self.ring_overwritten += other.ring_overwritten;
        self.ring_overwritten_bytes += other.ring_overwritten_bytes;
        self.ring_truncated += other.ring_truncated;
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
pub(crate) const DEVICE_REFRESH_NS: u64 = 60 * 1_000_000_000;

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
/// At most this many per worker, and never more than a quarter of its flows: a buffer
/// is lent only while a flow holds a partial PDU or an out-of-order segment.
const STREAM_BUFFERS: usize = 8192;
const STREAM_BUFFER_BYTES: usize = 8192;
/// Slots of the cache that rate-limits command/identity/error observations.
const RECENT_SLOTS: usize = 16_384;
/// A repeated command, identity or error is re-reported at most this often.
const OBSERVATION_REFRESH_NS: u64 = 60 * 1_000_000_000;

/// How often idle flows are swept, in packet time.
const SWEEP_INTERVAL_NS: u64 = 1_000_000_000;

/// What the worker owns besides its flow table: the sinks, the stream buffers, the
/// statistics and the rate-limit cache. Split from the table so that ending a flow
/// inside a table operation can still flush its streams through the dissectors.
struct Engine {
    inspect: Inspect,
    stream_pool: StreamPool,
    stream_counters: StreamCounters,
    /// GOOSE publishers' control block histories (frames go to their source MAC's
    /// worker, so each publisher's meet here).
    goose_publishers: inspect::goose::Publishers,
}

/// What per-PDU inspection writes to: split from the stream buffers, which the framer
/// holds while it hands PDUs to inspection.
struct Inspect {
    sink: ObservationSink,
    events: Option<Box<dyn ProtocolEventSink + Send>>,
    stats: ProtocolStats,
    recent: RecentCache,
    dnp3_pool: dnp3::ReassemblyPool,
    segment_pool: inspect::reassembly::SegmentPool,
}

impl Inspect {
    /// The context of one PDU: the one place a [`PduCtx`] is built.
    fn ctx<'a>(
        &'a mut self,
        ts_ns: u64,
        direction: Direction,
        flow: &'a FlowInfo,
        state: &'a mut AppState,
    ) -> PduCtx<'a> {
        PduCtx {
            ts_ns,
            direction,
            flow,
            state,
            stats: &mut self.stats,
            out: Outputs {
                observations: &mut self.sink,
                recent: &mut self.recent,
                events: self.events.as_deref_mut().map(|e| e as _),
            },
            dnp3: &mut self.dnp3_pool,
            segments: &mut self.segment_pool,
        }
    }
}

/// `networks.internal` as masks, so that the per-packet test is a few integer
/// compares (`IpNet::contains` recomputes each network's bounds on every call).
/// Rebuilt whenever the worker takes a new policy.
#[derive(Debug, Default)]
struct InternalNetworks {
    /// (network, mask)
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl InternalNetworks {
    fn of(policy: &Policy) -> InternalNetworks {
        let mut networks = InternalNetworks::default();
        for net in &policy.internal_networks {
            match net {
                ipnet::IpNet::V4(net) => networks
                    .v4
                    .push((net.network().to_bits(), net.netmask().to_bits())),
                ipnet::IpNet::V6(net) => networks
                    .v6
                    .push((net.network().to_bits(), net.netmask().to_bits())),
            }
        }
        networks
    }

    /// As [`Policy::is_internal`].
    fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => {
                let ip = ip.to_bits();
                self.v4.iter().any(|&(net, mask)| ip & mask == net)
            }
            IpAddr::V6(ip) => {
                let ip = ip.to_bits();
                self.v6.iter().any(|&(net, mask)| ip & mask == net)
            }
        }
    }
}

/// One worker's state.
pub struct Worker {
    pub id: usize,
    policy: Arc<Policy>,
    /// The policy's internal networks, for the per-packet device test.
    internal: InternalNetworks,
    flows: FlowTable,
    engine: Engine,
    devices: DeviceDedup,
    counters: WorkerCounters,
    now_ns: u64,
    next_sweep_ns: u64,
    policy_watch: Option<PolicyWatch>,
    /// The ring of recent packets behind alerts, when evidence is kept.
    evidence: Option<Box<WorkerEvidence>>,
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
    /// Puts a reloaded policy in force from the next frame on (see `reload`). Flow
    /// table sizes and timeouts were fixed at construction and stay as they are.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.internal = InternalNetworks::of(&policy);
        self.policy = policy;
    }

    /// Follow reloads: [`Worker::refresh_policy`] then picks up each new snapshot.
    pub fn watch_policy(&mut self, watch: PolicyWatch) {
        self.policy_watch = Some(watch);
    }

    /// Takes a reloaded policy if one was published: call once per batch, not per
    /// packet (one atomic load when nothing changed).
    pub fn refresh_policy(&mut self) {
        if let Some(policy) = self.policy_watch.as_mut().and_then(PolicyWatch::changed) {
            self.set_policy(policy);
        }
    }

    /// A worker with its share of the flow-table budget.
    pub fn new(
        id: usize,
        policy: Arc<Policy>,
        sink: ObservationSink,
        events: Option<Box<dyn ProtocolEventSink + Send>>,
    ) -> Worker {
        let per_worker = policy.max_flows.div_ceil(policy.workers.max(1));
        let timeouts = Timeouts {
            idle_ns: policy.flow_idle_timeout_ns,
            closed_ns: policy.flow_closed_timeout_ns,
        };
        Worker {
            id,
            flows: FlowTable::new(per_worker, timeouts),
            internal: InternalNetworks::of(&policy),
            policy,
            engine: Engine {
                inspect: Inspect {
                    sink,
                    events,
                    stats: ProtocolStats::default(),
                    recent: RecentCache::new(RECENT_SLOTS, OBSERVATION_REFRESH_NS),
                    dnp3_pool: dnp3::ReassemblyPool::new(
                        dnp3::REASSEMBLY_SLOTS.min(per_worker / 8 + 16),
                    ),
                    segment_pool: inspect::reassembly::SegmentPool::new(
                        inspect::reassembly::SEGMENT_SLOTS.min(per_worker / 16 + 16),
                    ),
                },
                stream_pool: StreamPool::new(
                    STREAM_BUFFERS.min(per_worker / 4 + 64),
                    STREAM_BUFFER_BYTES,
                ),
                stream_counters: StreamCounters::default(),
                goose_publishers: inspect::goose::Publishers::default(),
            },
            devices: DeviceDedup::new(),
            counters: WorkerCounters::default(),
            now_ns: 0,
            next_sweep_ns: 0,
            policy_watch: None,
            evidence: None,
        }
    }

    /// Keeps every packet this worker processes from now on in `evidence`'s ring, and
    /// answers its requests between batches.
    pub fn attach_evidence(&mut self, evidence: WorkerEvidence) {
        self.evidence = Some(Box::new(evidence));
    }

    /// Processes one captured packet; its capture time is its order key.
    pub fn process(&mut self, packet: &Packet<'_>) {
        let frame = packet.slice();
        self.process_captured_at(&frame, packet.link, packet.data, frame.ts_ns);
    }

    /// Processes one captured packet with an explicit order key (see
    /// [`Worker::process_frame_at`]).
    pub fn process_at(&mut self, packet: &Packet<'_>, order: u64) {
        let frame = packet.slice();
        self.process_captured_at(&frame, packet.link, packet.data, order);
    }

    /// Processes a frame sliced from `data` (captured as `link`): the bytes go to the
    /// evidence ring, if one is attached, then as [`Worker::process_frame_at`].
    pub fn process_captured_at(
        &mut self,
        frame: &Frame<'_>,
        link: LinkType,
        data: &[u8],
        order: u64,
    ) {
        if let Some(evidence) = self.evidence.as_mut() {
            evidence.keep(frame, link, data);
        }
        self.process_frame_at(frame, order);
    }

    /// Processes one sliced frame whose order key is its capture time: live capture,
    /// where frames are stamped from the wall clock as they are taken off the ring.
    /// Publish the watermark with [`Worker::publish_watermark`] after each ring batch.
    pub fn process_frame(&mut self, frame: &Frame<'_>) {
        self.process_frame_at(frame, frame.ts_ns);
    }

    /// Processes one sliced frame. `order` is its place in the source's order (a
    /// replay's packet index, live its capture time); what the frame causes is stamped
    /// with it so the analyzer can merge workers in that order. Keys must not go
    /// backwards within a worker (a smaller key counts as the last one: hand-offs).
    pub fn process_frame_at(&mut self, frame: &Frame<'_>, order: u64) {
        self.engine.inspect.sink.set_order(order);
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
            self.engine.dissect_llc(frame);
            self.engine.dissect_ethertype(frame);
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
        let engine = &mut self.engine;
        let (slot, is_new) = self.flows.lookup(&key, side, frame.ts_ns, |flow, reason| {
            engine.end_flow(flow, reason)
        });
        let flow = self.flows.get_mut(slot);
        if let Some(evidence) = self.evidence.as_mut() {
            evidence.tag_flow(flow.id);
        }
        let index = side_index(side);
        flow.sent[index].packets += 1;
        flow.sent[index].bytes += u64::from(frame.wire_len);
        if is_new {
            if let Transport::Tcp { flags, .. } = frame.transport {
                // Joined after the SYN: the SYN-ACK's sender is the server.
                if flags.has(TcpFlags::SYN) && flags.has(TcpFlags::ACK) {
                    flow.initiator = other(side);
                } else if !flags.has(TcpFlags::SYN) {
                    flow.initiator = mid_stream_initiator(&key, side);
                }
            }
            flow.app_proto = first_guess(&key, flow.initiator);
            self.engine.inspect.sink.send(flow_started(flow, frame));
        }
        self.engine.dissect(flow, side, frame);
        if let Transport::Tcp { flags, .. } = frame.transport {
            flow.tcp_flags[index] |= flags.0;
            if flags.has(TcpFlags::FIN) || flags.has(TcpFlags::RST) {
                // The sender's stream is complete: data held behind a gap will not be
                // completed, so dissect it now.
                self.engine.flush(flow, side);
            }
            if flags.has(TcpFlags::RST)
                || (flow.tcp_flags[0] & TcpFlags::FIN != 0
                    && flow.tcp_flags[1] & TcpFlags::FIN != 0)
            {
                flow.closed = true;
            }
        }
    }

    /// Sends the observations made so far to the analyzer with this watermark: every
    /// frame this worker will process later has an order key above it. Call once per
    /// batch of frames (replay: the source's index of the last packet read; live: the
    /// wall clock, read after the frames were taken off the ring).
    pub fn publish_watermark(&mut self, watermark: u64) {
        self.engine.inspect.sink.flush(watermark, false, false);
        self.serve_evidence();
    }

    /// Between batches: answers the evidence thread's requests whose window has ended.
    fn serve_evidence(&mut self) {
        if let Some(evidence) = self.evidence.as_mut() {
            evidence.serve(self.now_ns);
        }
    }

    /// Live, before parking with nothing to do: publishes `wall_ns` (the realtime clock
    /// now) and tells the analyzer that, until this worker's next batch, its watermark
    /// follows the wall clock, so an idle queue does not hold back the others.
    pub fn publish_idle(&mut self, wall_ns: u64) {
        self.engine.inspect.sink.flush(wall_ns, true, false);
        self.serve_evidence();
    }

    /// Live, with no frame to process: moves packet time to the wall clock `now_ns`, so
    /// idle flows expire; what that causes is ordered at `now_ns`.
    pub fn idle_until(&mut self, now_ns: u64) {
        self.engine.inspect.sink.set_order(now_ns);
        self.advance_clock(now_ns);
    }

    pub fn note_handoff_sent(&mut self, truncated: bool) {
        self.counters.handoffs_sent += 1;
        self.counters.handoffs_truncated += u64::from(truncated);
    }

    /// A frame for another worker's flow that its full ring could not take (live).
    pub fn note_handoff_dropped(&mut self) {
        self.counters.handoffs_dropped += 1;
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
            let engine = &mut self.engine;
            self.flows
                .expire(self.now_ns, |flow, reason| engine.end_flow(flow, reason));
            self.next_sweep_ns = self.now_ns + SWEEP_INTERVAL_NS;
        }
    }

    fn observe_device(&mut self, frame: &Frame<'_>) {
        let (ip, mac) = match (frame.src_ip, frame.arp) {
            (Some(ip), _) if layers::is_unicast(ip) && self.internal.contains(ip) => {
                (Some(ip), frame.src_mac)
            }
            (None, Some(arp)) => match arp.sender_ip {
                Some(ip) if !ip.is_unspecified() && self.internal.contains(ip.into()) => {
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
            self.engine.inspect.sink.send(Observation::DeviceSeen {
                ts_ns: frame.ts_ns,
                mac,
                ip,
                vlan: frame.vlan[0],
            });
        }
    }

    /// Ends every flow and returns the report (end of capture or shutdown).
    pub fn finish(mut self) -> WorkerReport {
        let engine = &mut self.engine;
        self.flows
            .drain(|flow, reason| engine.end_flow(flow, reason));
        // The ring goes to the evidence thread before the last observations: alerts
        // they raise are answered from it there.
        // Its counters stay with the worker's for the last metrics fold.
        self.counters = self.counters();
        if let Some(evidence) = self.evidence.take() {
            (*evidence).finish();
        }
        self.engine
            .inspect
            .sink
            .flush(crate::observe::WATERMARK_END, false, true);
        let counters = self.counters();
        WorkerReport {
            counters,
            protocols: self.engine.inspect.stats,
            stream: self.engine.stream_counters,
        }
    }

    /// The protocol and stream statistics so far (for the per-batch metrics fold).
    pub fn stats(&self) -> (&ProtocolStats, &StreamCounters) {
        (&self.engine.inspect.stats, &self.engine.stream_counters)
    }

    /// A snapshot of the counters, including the flow table's and the sink's.
    pub fn counters(&self) -> WorkerCounters {
        let TableCounters {
            created,
            expired,
            evicted,
        } = self.flows.counters;
        let mut counters = WorkerCounters {
            flows_created: created,
            flows_expired: expired,
            flows_evicted: evicted,
            observations_sent: self.engine.inspect.sink.sent,
            observations_dropped: self.engine.inspect.sink.dropped,
            ..self.counters.clone()
        };
        if let Some(evidence) = &self.evidence {
            let ring = evidence.ring_counters();
            counters.ring_packets = ring.packets;
            counters.ring_overwritten = ring.overwritten;
            counters.ring_overwritten_bytes = ring.overwritten_bytes;
            counters.ring_truncated = ring.truncated;
        }
        counters
    }
}

impl Engine {
    /// Feeds a packet's payload to its flow's protocol: recognition by signature for
    /// flows on unexpected ports, TCP stream framing, then per-PDU inspection.
    fn dissect(&mut self, flow: &mut Flow, side: Side, frame: &Frame<'_>) {
        let index = side_index(side);
        let Transport::Tcp { flags, seq, .. } = frame.transport else {
            if !frame.payload.is_empty() {
                self.dissect_datagram(flow, side, frame);
            }
            return;
        };
        if flags.has(TcpFlags::SYN) {
            flow.stream[index].on_syn(seq);
        }
        if frame.payload.is_empty() || !recognised(flow, frame.payload) {
            return;
        }
        let Some(protocol) = flow.app_proto else {
            return;
        };
        // No TCP dissector for this protocol yet: the flow is still named and counted.
        let Some(frame_fn) = wire::framer(protocol) else {
            return;
        };
        let info = flow_info(flow, side, frame);
        let direction = direction_of(flow, side);
        let Flow { stream, app, .. } = flow;
        let Engine {
            inspect,
            stream_pool,
            stream_counters,
            ..
        } = self;
        let mut framer = Framer {
            pool: stream_pool,
            counters: stream_counters,
            frame: frame_fn,
            on_pdu: |pdu: &[u8]| {
                crate::inspect::inspect(
                    protocol,
                    pdu,
                    &mut inspect.ctx(frame.ts_ns, direction, &info, app),
                );
            },
        };
        stream[index].on_segment(seq, frame.payload, &mut framer);
        // ISO-on-TCP: the DTs tell S7comm, S7comm-plus and MMS apart on one port.
        if let Some(shown) = app.protocol {
            flow.app_proto = Some(shown);
        }
    }

    /// A UDP (or other non-TCP) payload: one PDU, or several for protocols with a framer.
    fn dissect_datagram(&mut self, flow: &mut Flow, side: Side, frame: &Frame<'_>) {
        if !recognised(flow, frame.payload) {
            self.dissect_identification(flow, side, frame);
            return;
        }
        let Some(protocol) = flow.app_proto else {
            return;
        };
        let info = flow_info(flow, side, frame);
        let direction = direction_of(flow, side);
        let Engine {
            inspect,
            stream_counters,
            ..
        } = self;
        let app = &mut flow.app;
        let mut on_pdu = |pdu: &[u8]| {
            crate::inspect::inspect(
                protocol,
                pdu,
                &mut inspect.ctx(frame.ts_ns, direction, &info, app),
            );
        };
        match wire::framer(protocol) {
            Some(frame_fn) if !wire::datagram_is_one_pdu(protocol) => {
                frame_all(frame.payload, frame_fn, stream_counters, &mut on_pdu);
            }
            _ => on_pdu(frame.payload),
        }
    }

    /// An IT identification protocol (DHCP, mDNS, NBNS, SNMP) on a UDP flow that no
    /// industrial protocol claimed: the datagram is inspected by its ports, and the
    /// flow keeps no application protocol (these protocols name no flow and take no
    /// roles; see `Protocol::is_identification`).
    fn dissect_identification(&mut self, flow: &mut Flow, side: Side, frame: &Frame<'_>) {
        let Transport::Udp { src_port, dst_port } = frame.transport else {
            return;
        };
        let Some(protocol) = Protocol::identification_by_ports(src_port, dst_port) else {
            return;
        };
        let info = flow_info(flow, side, frame);
        let direction = direction_of(flow, side);
        let mut ctx = self
            .inspect
            .ctx(frame.ts_ns, direction, &info, &mut flow.app);
        inspect::inspect(protocol, frame.payload, &mut ctx);
    }

    /// Industrial protocols carried directly in an EtherType (GOOSE): no IP, so no
    /// flow. Each PDU is inspected on its own like LLC BACnet, the source MAC as the
    /// sender and the destination (multicast) MAC as the receiver.
    fn dissect_ethertype(&mut self, frame: &Frame<'_>) {
        let Some(protocol) = Protocol::by_ether_type(frame.ether_type) else {
            return;
        };
        let unspecified = (std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        let info = FlowInfo {
            flow_id: 0,
            client: unspecified,
            server: unspecified,
            client_mac: frame.src_mac,
            server_mac: frame.dst_mac,
            ip_protocol: 0,
            vlan: frame.vlan[0],
        };
        let mut state = AppState::default();
        let Engine {
            inspect,
            goose_publishers,
            ..
        } = self;
        let mut ctx = inspect.ctx(frame.ts_ns, Direction::Request, &info, &mut state);
        match protocol {
            Protocol::Goose => {
                inspect::goose::inspect_tracked(frame.payload, &mut ctx, goose_publishers);
            }
            _ => inspect::inspect(protocol, frame.payload, &mut ctx),
        }
    }

    /// BACnet over 802.2 LLC (SAP 0x82) and CDP over SNAP: no IP, so no flow. Each PDU is inspected on
    /// its own, with a fresh state and unspecified endpoints (flow id 0).
    fn dissect_llc(&mut self, frame: &Frame<'_>) {
        let Some(llc) = frame.llc else {
            return;
        };
        let protocol = match (llc.dsap, llc.ssap) {
            (wire::bacnet::LLC_SAP, wire::bacnet::LLC_SAP) => Protocol::Bacnet,
            // SNAP: CDP when its OUI and PID say so (the inspector checks).
            (wire::cdp::SNAP_SAP, wire::cdp::SNAP_SAP)
                if frame.dst_mac == Some(wire::cdp::MULTICAST_MAC) =>
            {
                Protocol::Cdp
            }
            _ => return,
        };
        let unspecified = (std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        let info = FlowInfo {
            flow_id: 0,
            client: unspecified,
            server: unspecified,
            client_mac: frame.src_mac,
            server_mac: frame.dst_mac,
            ip_protocol: 0,
            vlan: frame.vlan[0],
        };
        let mut state = AppState::default();
        let mut ctx = self
            .inspect
            .ctx(frame.ts_ns, Direction::Request, &info, &mut state);
        match protocol {
            Protocol::Bacnet => inspect::bacnet::inspect_llc(llc.payload, &mut ctx),
            _ => inspect::inspect(protocol, llc.payload, &mut ctx),
        }
    }

    /// Dissects data one side held behind a gap that will not fill (FIN, RST, flow end).
    fn flush(&mut self, flow: &mut Flow, side: Side) {
        let index = side_index(side);
        if !flow.stream[index].holds_data() {
            return;
        }
        let Some(protocol) = flow.app_proto else {
            return;
        };
        let Some(frame_fn) = wire::framer(protocol) else {
            return;
        };
        let info = FlowInfo {
            flow_id: flow.id,
            client: flow_endpoint(&flow.key, flow.initiator),
            server: flow_endpoint(&flow.key, other(flow.initiator)),
            client_mac: None,
            server_mac: None,
            ip_protocol: flow.key.protocol,
            vlan: flow.key.vlan,
        };
        let direction = direction_of(flow, side);
        let ts_ns = flow.last_ns;
        let Flow { stream, app, .. } = flow;
        let Engine {
            inspect,
            stream_pool,
            stream_counters,
            ..
        } = self;
        let mut framer = Framer {
            pool: stream_pool,
            counters: stream_counters,
            frame: frame_fn,
            on_pdu: |pdu: &[u8]| {
                crate::inspect::inspect(
                    protocol,
                    pdu,
                    &mut inspect.ctx(ts_ns, direction, &info, app),
                );
            },
        };
        stream[index].flush(&mut framer);
        if let Some(shown) = app.protocol {
            flow.app_proto = Some(shown);
        }
    }

    /// Flushes held stream data, returns the flow's buffers and reports its end.
    fn end_flow(&mut self, flow: &mut Flow, reason: EndReason) {
        self.flush(flow, Side::Lo);
        self.flush(flow, Side::Hi);
        for dir in &flow.stream {
            dir.release(&mut self.stream_pool);
        }
        self.inspect.dnp3_pool.release_flow(&mut flow.app);
        self.inspect.segment_pool.release_flow(&mut flow.app);
        self.inspect.sink.send(flow_ended(flow, reason));
    }
}

/// Recognises the flow's protocol by signature while it is still unknown, within the
/// first few payload packets. True when the flow has a protocol to dissect.
fn recognised(flow: &mut Flow, payload: &[u8]) -> bool {
    if flow.app_proto.is_none() && flow.recognition_left > 0 {
        flow.recognition_left -= 1;
        flow.app_proto = wire::recognise(flow.key.protocol, payload);
    }
    flow.app_proto.is_some()
}

fn direction_of(flow: &Flow, side: Side) -> Direction {
    if side == flow.initiator {
        Direction::Request
    } else {
        Direction::Response
    }
}

fn flow_info(flow: &Flow, side: Side, frame: &Frame<'_>) -> FlowInfo {
    let (client_mac, server_mac) = match direction_of(flow, side) {
        Direction::Request => (frame.src_mac, frame.dst_mac),
        Direction::Response => (frame.dst_mac, frame.src_mac),
    };
    FlowInfo {
        flow_id: flow.id,
        client: flow_endpoint(&flow.key, flow.initiator),
        server: flow_endpoint(&flow.key, other(flow.initiator)),
        client_mac,
        server_mac,
        ip_protocol: flow.key.protocol,
        vlan: flow.key.vlan,
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

/// Who opened a TCP session first seen mid-stream: the side whose port is a known
/// service (an industrial protocol's or below 1024) is the server; when both or neither
/// are, the lower port is. The analyzer corrects this with the ports it learned.
fn mid_stream_initiator(key: &FlowKey, sender: Side) -> Side {
    let (sender_port, receiver_port) = match sender {
        Side::Lo => (key.lo_port, key.hi_port),
        Side::Hi => (key.hi_port, key.lo_port),
    };
    let known = |port: u16| port < 1024 || Protocol::by_port(key.protocol, port).is_some();
    let sender_serves = match (known(sender_port), known(receiver_port)) {
        (true, false) => true,
        (false, true) => false,
        _ => sender_port < receiver_port,
    };
    if sender_serves {
        other(sender)
    } else {
        sender
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

fn flow_started(flow: &Flow, frame: &Frame<'_>) -> Observation {
    let tcp_flags = match frame.transport {
        Transport::Tcp { flags, .. } => flags.0,
        _ => 0,
    };
    Observation::FlowStarted {
        ts_ns: frame.ts_ns,
        flow_id: flow.id,
        client: flow_endpoint(&flow.key, flow.initiator),
        server: flow_endpoint(&flow.key, other(flow.initiator)),
        ip_protocol: flow.key.protocol,
        vlan: flow.key.vlan,
        app_proto: flow.app_proto,
        tcp_flags,
    }
}

fn flow_ended(flow: &Flow, reason: EndReason) -> Observation {
    let key = &flow.key;
    let ((src_ip, src_port), (dest_ip, dest_port)) = (
        flow_endpoint(key, flow.initiator),
        flow_endpoint(key, other(flow.initiator)),
    );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_networks_agree_with_the_policy() {
        let mut config = crate::config::Config::default();
        config.networks.internal.extend(
            ["10.9.8.0/23", "2001:db8:1::/48", "203.0.113.7/32"]
                .iter()
                .map(|s| s.parse::<ipnet::IpNet>().unwrap_or_else(|e| panic!("{e}"))),
        );
        let policy = config.validate().unwrap_or_else(|e| panic!("{e}"));
        let internal = InternalNetworks::of(&policy);
        let addresses = [
            "10.0.0.1",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.16.0.0",
            "172.31.255.255",
            "172.32.0.0",
            "192.168.7.7",
            "192.169.0.1",
            "169.254.1.1",
            "203.0.113.7",
            "203.0.113.8",
            "8.8.8.8",
            "0.0.0.0",
            "255.255.255.255",
            "fc00::1",
            "fdff:ffff::1",
            "fe00::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "2001:db8:1:ffff::1",
            "2001:db8:2::1",
            "::ffff:10.0.0.1",
            "::1",
        ];
        for address in addresses {
            let ip: IpAddr = address.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(internal.contains(ip), policy.is_internal(ip), "{address}");
        }
    }
}
