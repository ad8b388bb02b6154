//! Per-PDU inspection: what one PDU means to the rest of the sensor. The dispatcher
//! hands a whole PDU and its flow's state to the protocol's `inspect` function, which
//! counts it in the worker's [`ProtocolStats`], optionally emits an EVE protocol event,
//! and reports commands, identities and protocol errors as de-duplicated observations.
//! Nothing here allocates per PDU.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use serde::Serialize;

use otsensor_wire::layers::Mac;
use otsensor_wire::{Direction, Protocol};

use crate::observe::{
    CommandKind, IdentityField, Observation, ObservationSink, ProtocolErrorKind, ShortText,
};

/// BACnet: statistics, device control, identities, segmented messages.
pub mod bacnet;
/// Commands and protocol errors in the protocols' own words, for alert messages.
pub mod describe;
/// DNP3: statistics, transport reassembly pool, commands, IIN-based errors.
pub mod dnp3;
/// EtherNet/IP and CIP: statistics, identities, commands, CIP errors.
pub mod enip;
/// IEC 61850 GOOSE: statistics (APPID, gocbRef), malformed APDUs, EVE events.
pub mod goose;
/// Fixed-capacity histograms for per-protocol statistics.
pub mod histogram;
/// IT identification protocols (DHCP, LLDP, CDP, NBNS, mDNS, SNMP): names, models and
/// systems for the inventory, EVE events; no commands, no errors, no alerts.
pub mod identify;
/// IEC 60870-5-104: statistics, commands by kind, errors, EVE events.
pub mod iec104;
/// IEC 61850 / ISO 9506 MMS: statistics, commands by service, identify, errors, EVE events.
pub mod mms;
/// Modbus/TCP: statistics, commands (per unit), device identification, exceptions.
pub mod modbus;
/// MQTT: statistics, PUBLISH/SUBSCRIBE by topic, refused connects, EVE events.
pub mod mqtt;
/// OPC UA: statistics, services as commands, errors, identity, EVE events.
pub mod opcua;
/// PROFINET: DCP, alarms and IO-CM calls: statistics, identities, commands, PNIO errors.
pub mod profinet;
/// Reassembly of messages split above the stream (COTP DT TPDUs, BACnet segments).
pub mod reassembly;
/// S7comm: statistics, COTP reassembly, commands (CPU stop, download), SZL identities;
/// the ISO-on-TCP dispatcher that hands S7comm-plus and MMS TSDUs to their modules.
pub mod s7comm;
/// S7comm-plus: statistics by opcode and function, CPU state requests, session
/// identity, EVE events.
pub mod s7commplus;
#[cfg(test)]
pub(crate) mod test_capture;

/// Inspects one whole PDU of `protocol`.
pub fn inspect(protocol: Protocol, pdu: &[u8], ctx: &mut PduCtx<'_>) {
    match protocol {
        Protocol::Modbus => modbus::inspect(pdu, ctx),
        Protocol::Dnp3 => dnp3::inspect(pdu, ctx),
        Protocol::Bacnet => bacnet::inspect(pdu, ctx),
        Protocol::Enip => enip::inspect(pdu, ctx),
        // One TPKT framer for ISO-on-TCP; each COTP DT says which protocol it carries.
        Protocol::S7comm | Protocol::S7commPlus | Protocol::Mms => s7comm::inspect(pdu, ctx),
        Protocol::Iec104 => iec104::inspect(pdu, ctx),
        Protocol::OpcUa => opcua::inspect(pdu, ctx),
        Protocol::Mqtt => mqtt::inspect(pdu, ctx),
        Protocol::Goose => goose::inspect(pdu, ctx),
        Protocol::Dhcp => identify::dhcp(pdu, ctx),
        Protocol::Lldp => identify::lldp(pdu, ctx),
        Protocol::Cdp => identify::cdp(pdu, ctx),
        Protocol::Nbns => identify::nbns(pdu, ctx),
        Protocol::Mdns => identify::mdns(pdu, ctx),
        Protocol::Snmp => identify::snmp(pdu, ctx),
        Protocol::Profinet => profinet::inspect(pdu, ctx),
    }
}

/// The flow a PDU belongs to, oriented client (initiator) to server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowInfo {
    pub flow_id: u64,
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    pub client_mac: Option<Mac>,
    pub server_mac: Option<Mac>,
    /// IP protocol number.
    pub ip_protocol: u8,
    pub vlan: u16,
}

/// An outstanding request, for matching its response.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pending {
    id: u32,
    code: u32,
    ts_ns: u64,
    used: bool,
}

const PENDING: usize = 4;

/// Per-flow protocol state, kept inline in the flow (small and `Copy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppState {
    pending: [Pending; PENDING],
    /// Requests whose response never came before the slot was reused.
    pub unanswered: u32,
    /// Protocol-specific small state (e.g. COTP connection seen).
    pub flags: u32,
    /// DNP3 transport reassembly slots in the worker's [`dnp3::ReassemblyPool`],
    /// per direction (request, response); 0 = none.
    pub dnp3_slots: [u16; 2],
    /// Message reassembly buffers (COTP, BACnet segmentation) in the worker's
    /// [`reassembly::SegmentPool`], per direction (request, response); 0 = none.
    pub segment_slots: [u16; 2],
    /// The application protocol the flow's PDUs showed when its port or first
    /// payload could not tell (ISO-on-TCP on port 102 carries S7comm, S7comm-plus or
    /// MMS): the worker names the flow after it.
    pub protocol: Option<Protocol>,
    /// A word of protocol state kept between PDUs (PROFINET: the PNIOStatus of a
    /// fragmented response's first fragment, reported with its last).
    pub pending_status: u32,
}

impl AppState {
    /// Remembers a request by its id (transaction id, invoke id, PDU reference, ...).
    pub fn request(&mut self, id: u32, code: u32, ts_ns: u64) {
        let slot = match self.pending.iter().position(|p| !p.used || p.id == id) {
            Some(slot) => slot,
            None => {
                // All slots busy: reuse the oldest; its request stays unanswered.
                self.unanswered += 1;
                let mut oldest = 0;
                for (i, p) in self.pending.iter().enumerate() {
                    if p.ts_ns < self.pending[oldest].ts_ns {
                        oldest = i;
                    }
                }
                oldest
            }
        };
        self.pending[slot] = Pending {
            id,
            code,
            ts_ns,
            used: true,
        };
    }

    /// Matches a response to its request: the request's code and the response time.
    pub fn response(&mut self, id: u32, ts_ns: u64) -> Option<(u32, u64)> {
        let slot = self.pending.iter_mut().find(|p| p.used && p.id == id)?;
        slot.used = false;
        Some((slot.code, ts_ns.saturating_sub(slot.ts_ns)))
    }
}

/// Statistics every protocol keeps, plus each protocol's own histograms.
#[derive(Clone, Debug, Default)]
pub struct ProtocolStats {
    /// PDUs per protocol (the summary's `protocols`).
    pub pdus: [u64; Protocol::COUNT],
    /// PDUs that failed validation (counted, not dissected further).
    pub malformed: [u64; Protocol::COUNT],
    /// Responses matched to a request, and the sum of their response times.
    pub matched_responses: [u64; Protocol::COUNT],
    pub response_time_ns_sum: [u64; Protocol::COUNT],
    pub modbus: modbus::Stats,
    pub dnp3: dnp3::Stats,
    pub bacnet: bacnet::Stats,
    pub enip: enip::Stats,
    pub s7comm: s7comm::Stats,
    pub s7commplus: s7commplus::Stats,
    pub iec104: iec104::Stats,
    pub opcua: opcua::Stats,
    pub mqtt: mqtt::Stats,
    pub goose: goose::Stats,
    pub mms: mms::Stats,
    pub profinet: profinet::Stats,
}

impl ProtocolStats {
    pub fn merge(&mut self, other: &ProtocolStats) {
        for i in 0..Protocol::COUNT {
            self.pdus[i] += other.pdus[i];
            self.malformed[i] += other.malformed[i];
            self.matched_responses[i] += other.matched_responses[i];
            self.response_time_ns_sum[i] += other.response_time_ns_sum[i];
        }
        self.modbus.merge(&other.modbus);
        self.dnp3.merge(&other.dnp3);
        self.bacnet.merge(&other.bacnet);
        self.enip.merge(&other.enip);
        self.s7comm.merge(&other.s7comm);
        self.s7commplus.merge(&other.s7commplus);
        self.iec104.merge(&other.iec104);
        self.opcua.merge(&other.opcua);
        self.mqtt.merge(&other.mqtt);
        self.goose.merge(&other.goose);
        self.mms.merge(&other.mms);
        self.profinet.merge(&other.profinet);
    }

    /// Per-protocol histograms in the shape of the tshark-derived summaries
    /// (`../shared/tools/ORACLE.md`), for comparison and for the summary JSON.
    pub fn details(&self) -> BTreeMap<&'static str, serde_json::Value> {
        let mut details = BTreeMap::new();
        let mut put = |protocol: Protocol, summary: serde_json::Value| {
            if self.pdus[protocol.index()] > 0 || self.malformed[protocol.index()] > 0 {
                details.insert(protocol.name(), summary);
            }
        };
        put(Protocol::Modbus, self.modbus.summary());
        put(Protocol::Dnp3, self.dnp3.summary());
        put(Protocol::Bacnet, self.bacnet.summary());
        put(Protocol::Enip, self.enip.summary());
        put(Protocol::S7comm, self.s7comm.summary());
        put(Protocol::S7commPlus, self.s7commplus.summary());
        put(Protocol::Iec104, self.iec104.summary());
        put(Protocol::OpcUa, self.opcua.summary());
        put(Protocol::Mqtt, self.mqtt.summary());
        put(Protocol::Goose, self.goose.summary());
        put(Protocol::Mms, self.mms.summary());
        put(Protocol::Profinet, self.profinet.summary());
        details
    }
}

/// Where protocol events go: the EVE writer's queue in the sensor
/// (`output::eve::EventSink`), a vector in tests. Inspection produces plain data and
/// knows nothing of EVE's records.
pub trait ProtocolEventSink: std::fmt::Debug {
    fn send_event(&mut self, event: ProtocolEvent);
}

impl ProtocolEventSink for Vec<ProtocolEvent> {
    fn send_event(&mut self, event: ProtocolEvent) {
        self.push(event);
    }
}

/// Remembers recently reported keys so a repeated fact costs one observation per
/// refresh interval. Direct-mapped: a collision only causes a harmless repeat.
#[derive(Debug)]
pub struct RecentCache {
    slots: Box<[(u64, u64)]>,
    /// `slots.len() - 1`: the length is a power of two, so a slot is a mask of the key,
    /// not a 64-bit division per lookup.
    slot_mask: usize,
    refresh_ns: u64,
}

impl RecentCache {
    /// A cache of `slots` slots, rounded up to a power of two.
    pub fn new(slots: usize, refresh_ns: u64) -> RecentCache {
        let slots = slots.max(1).next_power_of_two();
        RecentCache {
            slots: vec![(u64::MAX, 0); slots].into_boxed_slice(),
            slot_mask: slots - 1,
            refresh_ns,
        }
    }

    /// True when `key` was not reported within the refresh interval (and records it).
    pub fn should_report(&mut self, key: u64, now_ns: u64) -> bool {
        self.should_report_in(key, key, now_ns)
    }

    /// As [`Self::should_report`], with the slot chosen by `slot_key`: keys that share
    /// it replace each other, so a new key is always reported.
    pub fn should_report_in(&mut self, slot_key: u64, key: u64, now_ns: u64) -> bool {
        let slot = &mut self.slots[slot_key as usize & self.slot_mask];
        if slot.0 == key && now_ns.saturating_sub(slot.1) < self.refresh_ns {
            return false;
        }
        *slot = (key, now_ns);
        true
    }
}

fn key_of<T: std::hash::Hash>(value: T) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5EED).hash_one(value)
}

/// Where inspection writes: the worker's sinks and caches.
#[derive(Debug)]
pub struct Outputs<'a> {
    pub observations: &'a mut ObservationSink,
    pub recent: &'a mut RecentCache,
    /// Present when `outputs.eve.protocol_events` is on.
    pub events: Option<&'a mut dyn ProtocolEventSink>,
}

/// Everything a protocol's `inspect` sees besides the PDU bytes.
#[derive(Debug)]
pub struct PduCtx<'a> {
    pub ts_ns: u64,
    pub direction: Direction,
    pub flow: &'a FlowInfo,
    pub state: &'a mut AppState,
    pub stats: &'a mut ProtocolStats,
    pub out: Outputs<'a>,
    /// The worker's DNP3 transport reassemblers (a fragment spans link frames).
    pub dnp3: &'a mut dnp3::ReassemblyPool,
    /// The worker's message reassembly buffers (S7 over COTP, BACnet segmentation).
    pub segments: &'a mut reassembly::SegmentPool,
}

impl PduCtx<'_> {
    /// The endpoint that sent this PDU and the one it went to.
    pub fn sender(&self) -> (IpAddr, u16) {
        match self.direction {
            Direction::Request => self.flow.client,
            Direction::Response => self.flow.server,
        }
    }

    pub fn receiver(&self) -> (IpAddr, u16) {
        match self.direction {
            Direction::Request => self.flow.server,
            Direction::Response => self.flow.client,
        }
    }

    /// Counts one PDU of `protocol`.
    pub fn count(&mut self, protocol: Protocol) {
        self.stats.pdus[protocol.index()] += 1;
    }

    /// Counts a PDU that failed validation, and reports it (rate-limited).
    pub fn malformed(&mut self, protocol: Protocol) {
        self.stats.malformed[protocol.index()] += 1;
        self.protocol_error(protocol, ProtocolErrorKind::Malformed, 0);
    }

    /// Records a response time for a matched request.
    pub fn response_time(&mut self, protocol: Protocol, latency_ns: u64) {
        self.stats.matched_responses[protocol.index()] += 1;
        self.stats.response_time_ns_sum[protocol.index()] += latency_ns;
    }

    /// Whether protocol events are wanted (build them only then).
    pub fn events_enabled(&self) -> bool {
        self.out.events.is_some()
    }

    /// Emits an EVE protocol event for this PDU.
    pub fn event(&mut self, body: EventBody) {
        let event = ProtocolEvent {
            ts_ns: self.ts_ns,
            flow_id: self.flow.flow_id,
            src: self.sender(),
            dest: self.receiver(),
            ip_protocol: self.flow.ip_protocol,
            vlan: self.flow.vlan,
            direction: self.direction,
            body,
        };
        if let Some(events) = self.out.events.as_deref_mut() {
            events.send_event(event);
        }
    }

    /// Reports a command a client sent (once per flow, kind and code per interval).
    pub fn command(&mut self, protocol: Protocol, kind: CommandKind, code: u32) {
        self.command_to_unit(protocol, kind, code, None);
    }

    /// Reports a command addressed to a unit behind the server (Modbus unit id): once
    /// per flow, kind, code and unit per interval, so a sweep over units is seen.
    pub fn command_to_unit(
        &mut self,
        protocol: Protocol,
        kind: CommandKind,
        code: u32,
        unit: Option<u8>,
    ) {
        // Frames without IP share flow id 0: their MACs tell their commands apart.
        let macs = match (self.flow.client_mac, self.flow.server_mac) {
            (Some(client), Some(server)) if self.flow.client.0.is_unspecified() => {
                Some((client, server))
            }
            _ => None,
        };
        let key = key_of((1u8, self.flow.flow_id, protocol, kind, code, unit, macs));
        if self.out.recent.should_report(key, self.ts_ns) {
            self.out.observations.send(Observation::Command {
                ts_ns: self.ts_ns,
                flow_id: self.flow.flow_id,
                client: self.flow.client,
                server: self.flow.server,
                protocol,
                kind,
                code,
                unit,
                macs,
            });
        }
    }

    /// Reports the object a request addresses (see `Observation::ObjectAccess`).
    pub fn object_access(&mut self, protocol: Protocol, object: u64) {
        let key = key_of((4u8, self.flow.flow_id, protocol, object));
        if self.out.recent.should_report(key, self.ts_ns) {
            self.out.observations.send(Observation::ObjectAccess {
                ts_ns: self.ts_ns,
                flow_id: self.flow.flow_id,
                client: self.flow.client,
                server: self.flow.server,
                protocol,
                object,
            });
        }
    }

    /// Reports whether the flow's channel is secured (see
    /// `Observation::ChannelSecurity`): once per flow and value per interval.
    pub fn channel_security(&mut self, protocol: Protocol, secured: bool) {
        let key = key_of((5u8, self.flow.flow_id, protocol, secured));
        if self.out.recent.should_report(key, self.ts_ns) {
            self.out.observations.send(Observation::ChannelSecurity {
                ts_ns: self.ts_ns,
                flow_id: self.flow.flow_id,
                client: self.flow.client,
                server: self.flow.server,
                protocol,
                secured,
            });
        }
    }

    /// Reports a GOOSE publication's change (see `Observation::Goose`): once per
    /// publisher, control block and kind of change per interval.
    pub fn goose_change(
        &mut self,
        publisher: Mac,
        gocb_key: u64,
        gocb_ref: ShortText,
        change: crate::observe::GooseChange,
    ) {
        let kind = std::mem::discriminant(&change);
        let key = key_of((6u8, publisher, gocb_key, kind));
        if self.out.recent.should_report(key, self.ts_ns) {
            self.out.observations.send(Observation::Goose {
                ts_ns: self.ts_ns,
                publisher,
                vlan: self.flow.vlan,
                gocb_ref,
                change,
            });
        }
    }

    /// Reports an identity attribute the sender of this PDU claims about itself.
    pub fn identity(&mut self, protocol: Protocol, field: IdentityField, value: &[u8]) {
        let (device, _) = self.sender();
        self.identity_at(device, protocol, field, value);
    }

    /// Reports an identity attribute of `device`, an address the PDU states rather than
    /// its sender's (PROFINET DCP runs without IP and names the station's address).
    pub fn identity_at(
        &mut self,
        device: IpAddr,
        protocol: Protocol,
        field: IdentityField,
        value: &[u8],
    ) {
        let text = ShortText::from_bytes(value);
        if text.is_empty() {
            return;
        }
        let key = key_of((2u8, device, protocol, field, text.as_bytes()));
        // A mode is one value at a time: its reports share one slot, so a change
        // (RUN → STOP → RUN) is reported at once however recently the old value was.
        let report = if field == IdentityField::Mode {
            let slot = key_of((2u8, device, protocol, field));
            self.out.recent.should_report_in(slot, key, self.ts_ns)
        } else {
            self.out.recent.should_report(key, self.ts_ns)
        };
        if report {
            self.out.observations.send(Observation::Identity {
                ts_ns: self.ts_ns,
                device,
                mac: None,
                protocol,
                field,
                value: text,
            });
        }
    }

    /// Reports an identity attribute of a device other than (or besides) the sender,
    /// named by address and/or MAC: DHCP replies name their client, LLDP and CDP
    /// name a device by MAC only. Rate-limited like [`PduCtx::identity`].
    pub fn identity_of(
        &mut self,
        protocol: Protocol,
        device: (Option<IpAddr>, Option<Mac>),
        field: IdentityField,
        value: &[u8],
    ) {
        let (ip, mac) = device;
        if ip.is_none() && mac.is_none() {
            return;
        }
        let text = ShortText::from_bytes(value);
        if text.is_empty() {
            return;
        }
        let key = key_of((5u8, ip, mac, protocol, field, text.as_bytes()));
        if self.out.recent.should_report(key, self.ts_ns) {
            self.out.observations.send(Observation::Identity {
                ts_ns: self.ts_ns,
                device: ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                mac,
                protocol,
                field,
                value: text,
            });
        }
    }

    /// Reports that `mac` holds `ip`, as a PDU states it (PROFINET DCP Identify).
    pub fn device_seen(&mut self, mac: Mac, ip: IpAddr) {
        let key = key_of((5u8, mac, ip, self.flow.vlan));
        if self.out.recent.should_report(key, self.ts_ns) {
            self.out.observations.send(Observation::DeviceSeen {
                ts_ns: self.ts_ns,
                mac: Some(mac),
                ip: Some(ip),
                vlan: self.flow.vlan,
            });
        }
    }

    /// Reports a protocol error or anomaly (failure replies, illegal operations).
    pub fn protocol_error(&mut self, protocol: Protocol, kind: ProtocolErrorKind, code: u32) {
        let key = key_of((3u8, self.flow.flow_id, protocol, kind, code));
        if self.out.recent.should_report(key, self.ts_ns) {
            self.out.observations.send(Observation::ProtocolError {
                ts_ns: self.ts_ns,
                flow_id: self.flow.flow_id,
                client: self.flow.client,
                server: self.flow.server,
                sender_is_server: self.direction == Direction::Response,
                protocol,
                kind,
                code,
            });
        }
    }
}

/// One EVE protocol event (`event_type` = the protocol's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolEvent {
    pub ts_ns: u64,
    pub flow_id: u64,
    pub src: (IpAddr, u16),
    pub dest: (IpAddr, u16),
    pub ip_protocol: u8,
    pub vlan: u16,
    pub direction: Direction,
    pub body: EventBody,
}

/// The protocol object of an EVE protocol event. Numbers are JSON numbers; fields that
/// do not apply are null.
// Events travel by value through a preallocated channel; boxing the large EtherNet/IP
// and S7comm variants would allocate per PDU instead.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventBody {
    Modbus(ModbusEvent),
    Dnp3(Dnp3Event),
    Bacnet(BacnetEvent),
    Enip(EnipEvent),
    S7comm(S7commEvent),
    S7commPlus(s7commplus::S7commPlusEvent),
    Iec104(iec104::Iec104Event),
    OpcUa(opcua::OpcUaEvent),
    Mqtt(mqtt::MqttEvent),
    Goose(goose::GooseEvent),
    Dhcp(identify::DhcpEvent),
    Lldp(identify::LldpEvent),
    Cdp(identify::CdpEvent),
    Nbns(identify::NbnsEvent),
    Mdns(identify::MdnsEvent),
    Snmp(identify::SnmpEvent),
    Mms(mms::MmsEvent),
    Profinet(profinet::ProfinetEvent),
}

impl EventBody {
    pub fn protocol(&self) -> Protocol {
        match self {
            EventBody::Modbus(_) => Protocol::Modbus,
            EventBody::Dnp3(_) => Protocol::Dnp3,
            EventBody::Bacnet(_) => Protocol::Bacnet,
            EventBody::Enip(_) => Protocol::Enip,
            EventBody::S7comm(_) => Protocol::S7comm,
            EventBody::S7commPlus(_) => Protocol::S7commPlus,
            EventBody::Iec104(_) => Protocol::Iec104,
            EventBody::OpcUa(_) => Protocol::OpcUa,
            EventBody::Mqtt(_) => Protocol::Mqtt,
            EventBody::Goose(_) => Protocol::Goose,
            EventBody::Dhcp(_) => Protocol::Dhcp,
            EventBody::Lldp(_) => Protocol::Lldp,
            EventBody::Cdp(_) => Protocol::Cdp,
            EventBody::Nbns(_) => Protocol::Nbns,
            EventBody::Mdns(_) => Protocol::Mdns,
            EventBody::Snmp(_) => Protocol::Snmp,
            EventBody::Mms(_) => Protocol::Mms,
            EventBody::Profinet(_) => Protocol::Profinet,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ModbusEvent {
    pub transaction_id: u16,
    pub unit_id: u8,
    pub function: u8,
    pub exception: Option<u8>,
    pub direction: Direction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Dnp3Event {
    /// Link-layer source and destination addresses.
    pub src: u16,
    pub dst: u16,
    /// Application function code (null for link frames without an application fragment).
    pub function: Option<u8>,
    /// `(IIN1 << 8) | IIN2` on responses.
    pub iin: Option<u16>,
    pub direction: Direction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BacnetEvent {
    /// BACnet over 802.2 LLC rather than BACnet/IP: the event's addresses are then
    /// unspecified (0.0.0.0, port 0) as the PDU has no IP header.
    pub llc: bool,
    /// Null for BACnet carried without BVLC (802.2 LLC).
    pub bvlc_function: Option<u8>,
    pub apdu_type: Option<u8>,
    pub service: Option<u8>,
    pub invoke_id: Option<u8>,
    pub error_class: Option<u32>,
    pub error_code: Option<u32>,
    pub reject_reason: Option<u8>,
    pub abort_reason: Option<u8>,
}

/// One CIP message inside an EtherNet/IP PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CipEvent {
    /// The service code with its reply bit (0x80).
    pub service: u8,
    pub class: Option<u32>,
    pub instance: Option<u32>,
    pub attribute: Option<u32>,
    pub general_status: Option<u8>,
}

/// CIP messages reported per EtherNet/IP event; more are counted in `cip_omitted`.
pub const MAX_CIP_PER_EVENT: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EnipEvent {
    pub command: u16,
    pub session: u32,
    pub status: u32,
    pub cip: arrayvec::ArrayVec<CipEvent, MAX_CIP_PER_EVENT>,
    pub cip_omitted: u16,
}

/// Read/write-var items reported per S7comm event; more are counted in
/// `items_omitted`.
pub const MAX_S7_ITEMS_PER_EVENT: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct S7commEvent {
    pub rosctr: u8,
    pub function: Option<u8>,
    pub error_class: Option<u8>,
    pub error_code: Option<u8>,
    /// The addressed items of a read-var or write-var request (empty otherwise).
    pub items: arrayvec::ArrayVec<otsensor_wire::s7comm::VarItem, MAX_S7_ITEMS_PER_EVENT>,
    pub items_omitted: u16,
}
