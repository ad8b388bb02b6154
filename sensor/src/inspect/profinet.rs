//! PROFINET inspection: real-time frames (EtherType 0x8892, no flow: the sender is a
//! MAC) and the context manager's DCE/RPC datagrams (UDP 34964 or recognised by the
//! PNIO interface UUID). Statistics are keyed like tshark's summaries (`layers`,
//! `dcp_service`, `io_opnum`, `io_error`); DCP Identify responses and Hellos report
//! the station's identity, Identify-All requests are discovery, DCP Set requests are
//! writes (name, IP) or restarts (factory reset), IO-CM Connect/Write/Control are
//! writes, and PNIO error statuses (CM responses, alarm ERR PDUs) are protocol errors.
//! Nothing here allocates per frame.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use crate::inspect::goose::MacText;
use crate::inspect::histogram::{pair, pair_key, Histogram};
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind, ShortText};
use otsensor_wire::profinet::{
    dcp_option, Anomalies, Dcp, DcpService, FrameKind, PnioInterface, PnioOpnum, PnioStatus, Rpc,
    RpcType, RtFrame, Rta, DCP_TYPE_RESPONSE_UNSUPPORTED,
};
use otsensor_wire::Protocol;

/// tshark's layer stacks (`layers` histogram keys), as small keys.
mod layer {
    pub const RT: u32 = 0;
    pub const RT_DCP: u32 = 1;
    pub const RT_IO: u32 = 2;
    pub const RT_PTCP: u32 = 3;
    /// Plus the PNIO interface value (1 device .. 4 parameter server).
    pub const RPC: u32 = 16;
}

fn layer_name(key: u32) -> String {
    match key {
        layer::RT => "pn_rt".to_owned(),
        layer::RT_DCP => "pn_rt+pn_dcp".to_owned(),
        layer::RT_IO => "pn_rt+pn_io".to_owned(),
        layer::RT_PTCP => "pn_rt+pn_ptcp".to_owned(),
        other => match other
            .checked_sub(layer::RPC)
            .and_then(|i| u8::try_from(i).ok())
            .and_then(|i| PnioInterface::from(i).name())
        {
            Some(name) => format!("dcerpc+{name}"),
            None => format!("layer {other}"),
        },
    }
}

fn layer_str(key: u32) -> &'static str {
    match key {
        layer::RT => "pn_rt",
        layer::RT_DCP => "pn_rt+pn_dcp",
        layer::RT_IO => "pn_rt+pn_io",
        layer::RT_PTCP => "pn_rt+pn_ptcp",
        k if k == layer::RPC + 1 => "dcerpc+pn_io_device",
        k if k == layer::RPC + 2 => "dcerpc+pn_io_controller",
        k if k == layer::RPC + 3 => "dcerpc+pn_io_supervisor",
        _ => "dcerpc+pn_io_parameterserver",
    }
}

/// A PNIOStatus formatted as tshark's summary writes it: four decimal octets.
fn status_name(key: u32) -> String {
    let [a, b, c, d] = key.to_be_bytes();
    format!("{a}/{b}/{c}/{d}")
}

/// Per-worker PROFINET statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`: layers, dcp_service, io_opnum, io_error).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub layers: Histogram,
    /// `service_id/service_type`.
    pub dcp_service: Histogram,
    pub io_opnum: Histogram,
    /// Non-zero PNIOStatus of CM responses and alarm ERR PDUs (ErrorCode high octet).
    pub io_error: Histogram,
    /// DCE/RPC datagrams of the PNIO interfaces that carry no call (ping, nocall,
    /// fack, working, ...) and fragments before the last, by packet type.
    pub rpc_other: Histogram,
    /// DCE/RPC datagrams on the PNIO port for another interface (endpoint mapper).
    pub rpc_not_pnio: u64,
    /// Alarm PDUs by RTA PDU type.
    pub alarm_type: Histogram,
    /// Frames with spec violations, per anomaly flag bit.
    pub anomalies: Histogram,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.layers.merge(&other.layers);
        self.dcp_service.merge(&other.dcp_service);
        self.io_opnum.merge(&other.io_opnum);
        self.io_error.merge(&other.io_error);
        self.rpc_other.merge(&other.rpc_other);
        self.rpc_not_pnio += other.rpc_not_pnio;
        self.alarm_type.merge(&other.alarm_type);
        self.anomalies.merge(&other.anomalies);
    }

    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, format: &dyn Fn(u32) -> String| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(histogram.to_map(format)));
            }
        };
        put("layers", &self.layers, &layer_name);
        put("dcp_service", &self.dcp_service, &pair);
        put("io_opnum", &self.io_opnum, &|k| k.to_string());
        put("io_error", &self.io_error, &status_name);
        put("rpc_other", &self.rpc_other, &|k| {
            RpcType::from(k as u8)
                .name()
                .map_or_else(|| k.to_string(), str::to_owned)
        });
        put("alarm_type", &self.alarm_type, &|k| k.to_string());
        put("anomalies", &self.anomalies, &|bit| {
            Anomalies(1 << bit)
                .labels()
                .next()
                .unwrap_or("unknown")
                .to_owned()
        });
        if self.rpc_not_pnio > 0 {
            out.insert("rpc_not_pnio".into(), serde_json::json!(self.rpc_not_pnio));
        }
        serde_json::Value::Object(out)
    }

    fn anomalies(&mut self, anomalies: Anomalies) {
        for bit in 0..16 {
            if anomalies.0 & (1 << bit) != 0 {
                self.anomalies.add(bit);
            }
        }
    }
}

/// Two numbers serialised as `a/b` (tshark's `service_id/service_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlashPair(pub u8, pub u8);

impl Serialize for SlashPair {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}/{}", self.0, self.1))
    }
}

/// A PNIOStatus serialised as `code/decode/code1/code2` in decimal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusText(pub PnioStatus);

impl Serialize for StatusText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        serializer.collect_str(&format_args!(
            "{}/{}/{}/{}",
            s.error_code, s.error_decode, s.error_code1, s.error_code2
        ))
    }
}

/// The `profinet` EVE protocol event: one per real-time frame other than cyclic data
/// (DCP, alarms, PTCP) and one per IO-CM call datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ProfinetEvent {
    /// tshark's layer stack, e.g. `pn_rt+pn_dcp`, `dcerpc+pn_io_device`.
    pub layers: &'static str,
    /// The sending MAC address of a real-time frame (no IP).
    pub src_mac: Option<MacText>,
    pub frame_id: Option<u16>,
    /// `service_id/service_type` of a DCP PDU.
    pub dcp_service: Option<SlashPair>,
    pub dcp_xid: Option<u32>,
    /// NameOfStation of an Identify response, Hello or Set request.
    pub name_of_station: Option<ShortText>,
    /// The IP address a DCP Identify response, Hello or Set request carries.
    pub station_ip: Option<Ipv4Addr>,
    /// The DCE/RPC packet type of an IO-CM datagram (0 request, 2 response).
    pub rpc_type: Option<u8>,
    pub io_opnum: Option<u16>,
    /// A non-zero PNIOStatus (CM response, alarm ERR PDU).
    pub io_error: Option<StatusText>,
    /// The RTA PDU type of an alarm frame (1 DATA, 2 NACK, 3 ACK, 4 ERR).
    pub alarm_pdu_type: Option<u8>,
    pub alarm_type: Option<u16>,
    /// The DeviceRole bits of an Identify response (1 IO device, 2 IO controller,
    /// 4 IO multidevice, 8 supervisor).
    pub device_role: Option<u8>,
}

impl ProfinetEvent {
    fn new(layers: u32) -> ProfinetEvent {
        ProfinetEvent {
            layers: layer_str(layers),
            src_mac: None,
            frame_id: None,
            dcp_service: None,
            dcp_xid: None,
            name_of_station: None,
            station_ip: None,
            rpc_type: None,
            io_opnum: None,
            io_error: None,
            alarm_pdu_type: None,
            alarm_type: None,
            device_role: None,
        }
    }
}

/// Command codes: IO-CM calls are their opnum; DCP services are
/// `DCP_CODE | service << 16 | option << 8 | suboption`.
pub const DCP_CODE: u32 = 0x0100_0000;

pub fn dcp_code(service: u8, option: u8, suboption: u8) -> u32 {
    DCP_CODE | u32::from(service) << 16 | u32::from(option) << 8 | u32::from(suboption)
}

/// The AppState flag bit saying `pending_status` holds the PNIOStatus of a fragmented
/// response's first fragment (its last fragment is the record that reports it).
const PENDING_STATUS: u32 = 1 << 31;

/// Inspects one PROFINET PDU: a real-time frame (no IP: the EtherType path) or an
/// IO-CM DCE/RPC datagram.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    if ctx.flow.ip_protocol == 0 {
        inspect_rt(pdu, ctx);
    } else {
        inspect_rpc(pdu, ctx);
    }
}

fn inspect_rt(payload: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(frame) = RtFrame::new_checked(payload) else {
        ctx.malformed(Protocol::Profinet);
        return;
    };
    ctx.count(Protocol::Profinet);
    let kind = frame.kind();
    let layers = if kind.is_dcp() {
        layer::RT_DCP
    } else if kind.is_cyclic() || kind.is_alarm() {
        layer::RT_IO
    } else if kind.is_ptcp() {
        layer::RT_PTCP
    } else {
        layer::RT
    };
    ctx.stats.profinet.layers.add(layers);
    if kind == FrameKind::Reserved {
        ctx.stats
            .profinet
            .anomalies(Anomalies(Anomalies::RESERVED_FRAME_ID));
    }
    let mut event = ProfinetEvent::new(layers);
    event.src_mac = ctx.flow.client_mac.map(MacText);
    event.frame_id = Some(frame.frame_id());
    if kind.is_dcp() {
        inspect_dcp(frame.payload(), ctx, &mut event);
    } else if kind.is_alarm() {
        inspect_alarm(frame.payload(), ctx, &mut event);
    } else if kind.is_cyclic() {
        // Cyclic data: counted, no event (thousands per second per device).
        return;
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Profinet(event));
    }
}

fn inspect_dcp(payload: &[u8], ctx: &mut PduCtx<'_>, event: &mut ProfinetEvent) {
    let Ok(dcp) = Dcp::new_checked(payload) else {
        ctx.protocol_error(Protocol::Profinet, ProtocolErrorKind::Malformed, 0);
        return;
    };
    let (service_id, service_type) = (dcp.service_id(), dcp.service_type());
    ctx.stats
        .profinet
        .dcp_service
        .add(pair_key(service_id.into(), service_type.into()));
    let anomalies = dcp.anomalies();
    ctx.stats.profinet.anomalies(anomalies);
    if !anomalies.is_empty() {
        ctx.protocol_error(
            Protocol::Profinet,
            ProtocolErrorKind::SpecViolation,
            u32::from(anomalies.0),
        );
    }
    event.dcp_service = Some(SlashPair(service_id, service_type));
    event.dcp_xid = Some(dcp.xid());
    let service = dcp.service();
    if dcp.is_request() {
        match service {
            DcpService::Identify if dcp.is_identify_all() => {
                let code = dcp_code(service_id, dcp_option::ALL, dcp_option::ALL);
                ctx.command(Protocol::Profinet, CommandKind::Discovery, code);
            }
            DcpService::Set => dcp_set(&dcp, ctx, event),
            _ => {}
        }
        return;
    }
    if service_type == DCP_TYPE_RESPONSE_UNSUPPORTED {
        ctx.protocol_error(
            Protocol::Profinet,
            ProtocolErrorKind::ErrorReply,
            dcp_code(service_id, 0, 0),
        );
    }
    // A Set or Get response's Control/Response blocks: option, suboption, BlockError.
    for block in dcp.blocks() {
        if (block.option, block.suboption) == (dcp_option::CONTROL, dcp_option::CONTROL_RESPONSE) {
            if let [option, suboption, error, ..] = *block.value() {
                if error != 0 {
                    ctx.protocol_error(
                        Protocol::Profinet,
                        ProtocolErrorKind::ErrorReply,
                        dcp_code(service_id, option, suboption) | u32::from(error & 0xF) << 28,
                    );
                }
            }
        }
    }
    if matches!(service, DcpService::Identify | DcpService::Hello) {
        dcp_station(&dcp, ctx, event);
    }
}

/// A DCP Set request: each block that changes the device is a command.
fn dcp_set(dcp: &Dcp<'_>, ctx: &mut PduCtx<'_>, event: &mut ProfinetEvent) {
    for block in dcp.blocks() {
        let kind = match (block.option, block.suboption) {
            (dcp_option::DEVICE, dcp_option::DEVICE_NAME_OF_STATION) => {
                event.name_of_station = Some(ShortText::from_bytes(block.value()));
                CommandKind::Write
            }
            (dcp_option::IP, dcp_option::IP_PARAMETER | dcp_option::IP_FULL_SUITE) => {
                event.station_ip = block
                    .value()
                    .get(..4)
                    .map(|ip| Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]));
                CommandKind::Write
            }
            (dcp_option::IP | dcp_option::DEVICE | dcp_option::DHCP, _) => CommandKind::Write,
            (
                dcp_option::CONTROL,
                dcp_option::CONTROL_FACTORY_RESET | dcp_option::CONTROL_RESET_TO_FACTORY,
            ) => CommandKind::Restart,
            (dcp_option::CONTROL, dcp_option::CONTROL_SIGNAL) => CommandKind::Diagnostic,
            // Start/Stop bracket a Set transaction; they change nothing themselves.
            _ => continue,
        };
        let code = dcp_code(dcp.service_id(), block.option, block.suboption);
        ctx.command(Protocol::Profinet, kind, code);
    }
}

/// An Identify response or Hello: the station's identity, keyed by the IP it states.
fn dcp_station(dcp: &Dcp<'_>, ctx: &mut PduCtx<'_>, event: &mut ProfinetEvent) {
    let station = dcp.station();
    event.name_of_station = station.name_of_station.map(ShortText::from_bytes);
    let ip = station
        .ip
        .map(Ipv4Addr::from)
        .filter(|ip| !ip.is_unspecified());
    event.station_ip = ip;
    let Some(ip) = ip else {
        return;
    };
    let device = IpAddr::V4(ip);
    if let Some(mac) = ctx.flow.client_mac {
        ctx.device_seen(mac, device);
    }
    let protocol = Protocol::Profinet;
    if let Some(name) = station.name_of_station {
        ctx.identity_at(device, protocol, IdentityField::Name, name);
    }
    if let Some(model) = station.type_of_station {
        ctx.identity_at(device, protocol, IdentityField::Model, model);
    }
    if let (Some(vendor), Some(device_id)) = (station.vendor_id, station.device_id) {
        // The PI's VendorID/DeviceID pair, as GSD files name a device type.
        let mut buf = [0u8; 32];
        let len = {
            let mut cursor = &mut buf[..];
            let _ = write!(cursor, "vendor {vendor:#06x} device {device_id:#06x}");
            32 - cursor.len()
        };
        ctx.identity_at(device, protocol, IdentityField::ProductCode, &buf[..len]);
    }
    if let Some(role) = station.role {
        event.device_role = Some(role);
    }
}

fn inspect_alarm(payload: &[u8], ctx: &mut PduCtx<'_>, event: &mut ProfinetEvent) {
    let Ok(rta) = Rta::new_checked(payload) else {
        ctx.protocol_error(Protocol::Profinet, ProtocolErrorKind::Malformed, 1);
        return;
    };
    let pdu_type = u8::from(rta.pdu_type());
    ctx.stats.profinet.alarm_type.add(u32::from(pdu_type));
    ctx.stats.profinet.anomalies(rta.anomalies());
    event.alarm_pdu_type = Some(pdu_type);
    event.alarm_type = rta.alarm_type();
    if let Some(status) = rta.pnio_status().filter(PnioStatus::is_error) {
        io_error(status, ctx, event);
    }
}

fn io_error(status: PnioStatus, ctx: &mut PduCtx<'_>, event: &mut ProfinetEvent) {
    ctx.stats.profinet.io_error.add(status.as_u32());
    event.io_error = Some(StatusText(status));
    ctx.protocol_error(
        Protocol::Profinet,
        ProtocolErrorKind::ErrorReply,
        status.as_u32(),
    );
}

fn inspect_rpc(datagram: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(rpc) = Rpc::new_checked(datagram) else {
        ctx.malformed(Protocol::Profinet);
        return;
    };
    let Some(interface) = rpc.pnio_interface() else {
        ctx.stats.profinet.rpc_not_pnio += 1;
        return;
    };
    let anomalies = rpc.anomalies();
    ctx.stats.profinet.anomalies(anomalies);
    let packet_type = rpc.packet_type();
    let call = matches!(packet_type, RpcType::Request | RpcType::Response);
    if !call || rpc.is_inner_fragment() {
        // Not a call record (tshark hands only whole requests and responses to PNIO).
        ctx.stats
            .profinet
            .rpc_other
            .add(u32::from(u8::from(packet_type)));
        if packet_type == RpcType::Response && rpc.fragment_number() == 0 {
            if let Some(status) = rpc.pnio_status() {
                ctx.state.flags |= PENDING_STATUS;
                ctx.state.pending_status = status.as_u32();
            }
        }
        if matches!(packet_type, RpcType::Fault | RpcType::Reject) {
            ctx.protocol_error(
                Protocol::Profinet,
                ProtocolErrorKind::Rejected,
                u32::from(u8::from(packet_type)),
            );
        }
        return;
    }
    ctx.count(Protocol::Profinet);
    let layers = layer::RPC + u32::from(u8::from(interface));
    let opnum = rpc.opnum();
    let stats = &mut ctx.stats.profinet;
    stats.layers.add(layers);
    stats.io_opnum.add(u32::from(opnum));
    let mut event = ProfinetEvent::new(layers);
    event.rpc_type = Some(packet_type.into());
    event.io_opnum = Some(opnum);
    if !anomalies.is_empty() {
        ctx.protocol_error(
            Protocol::Profinet,
            ProtocolErrorKind::SpecViolation,
            u32::from(anomalies.0),
        );
    }
    if packet_type == RpcType::Response {
        let status = if rpc.fragment_number() == 0 {
            rpc.pnio_status()
        } else if ctx.state.flags & PENDING_STATUS != 0 {
            let [a, b, c, d] = ctx.state.pending_status.to_be_bytes();
            PnioStatus::read(&[a, b, c, d])
        } else {
            None
        };
        ctx.state.flags &= !PENDING_STATUS;
        if let Some(status) = status.filter(PnioStatus::is_error) {
            io_error(status, ctx, &mut event);
        }
    } else {
        let kind = match rpc.pnio_opnum() {
            // Connect sets up the AR with its parameters; Write changes records;
            // Control (PrmEnd, ApplicationReady, Release) drives the AR's state.
            PnioOpnum::Connect | PnioOpnum::Write => Some(CommandKind::Write),
            PnioOpnum::Read | PnioOpnum::ReadImplicit => Some(CommandKind::Read),
            PnioOpnum::Control | PnioOpnum::Release => Some(CommandKind::Other),
            PnioOpnum::Unknown(_) => None,
        };
        match kind {
            Some(kind) => ctx.command(Protocol::Profinet, kind, u32::from(opnum)),
            None => ctx.protocol_error(
                Protocol::Profinet,
                ProtocolErrorKind::UnknownFunction,
                u32::from(opnum),
            ),
        }
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Profinet(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::test_capture::{commands, errors, hex, identities};
    use crate::inspect::{AppState, FlowInfo, Outputs, ProtocolEvent, ProtocolStats, RecentCache};
    use crate::observe::{Delivery, Observation, ObservationSink};
    use otsensor_wire::Direction;

    /// profinet-mixed-rt-dcp-ptcp-cm-errors.pcap #466 after the EtherType: the DCP
    /// Identify response of "versamax-pns11" (IC200PNS001, 192.168.1.2).
    const IDENTIFY_RESPONSE: &str = "feff0501000000010000006402020010000076657273616d61782d706e7331310205000e00000102020102020203020406010201000d00004943323030504e5330303100020300060000015a000302040004000001000102000e0001c0a80102ffffff00c0a801020601000400000001";
    /// Same capture #58: an Identify request filtered by NameOfStation.
    const IDENTIFY_REQUEST: &str =
        "fefe05000300000400010018020200137369656d656e732d783230382d73776974636800e5bf00000000";
    /// Same capture #584: an alarm ERR PDU, PNIOStatus CF 81 FD 0F.
    const ALARM_ERR: &str = "fe01800180011401fffffffe0004cf81fd0f00000000000000000000000000000000000000000000000000000000";
    /// Same capture #586: cyclic RTC1 data.
    const CYCLIC: &str = "c00080000080808000000000800080000000000000000000000000000000000000000000000000000000eee03500";
    /// profinet-iocm-connect-error.pcapng #76 (UDP payload): a Connect response with
    /// PNIOStatus DB 81 40 04.
    const CONNECT_ERROR: &str = "0402280000000000dea000006c9711d18271000100020493dea000016c9711d1827100a02442df7db8b87fc1275611b28000000c29f214f40000000000000001000000000000ffffffff001400000000db81400400000000000041380000000000000000";
    /// profinet-iocm-read-implicit.pcap #1 (UDP payload): a ReadImplicit request.
    const READ_IMPLICIT: &str = "04000800100000000000a0de976cd111827100010003015a0100a0de976cd111827100a02442df7ddbabbaec1d005443b2500b01630abafd0000000001000000000000000500ffffffff54000000000040800000400000004080000000000000400000000009003c0100000a0000000000000000000000000000000000000000000000010000f84000008000000000000000000000000000000000000000000000000000";

    struct Harness {
        stats: ProtocolStats,
        state: AppState,
        recent: RecentCache,
        sink: ObservationSink,
        observations: crossbeam_channel::Receiver<crate::observe::Stamped>,
        events: Vec<ProtocolEvent>,
        flow: FlowInfo,
    }

    impl Harness {
        /// `l2`: the EtherType path (no IP); otherwise an IO-CM flow over UDP.
        fn new(l2: bool) -> Harness {
            let (tx, observations) = crossbeam_channel::bounded(1024);
            let ip = |last| IpAddr::V4(Ipv4Addr::new(192, 168, 1, last));
            let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            Harness {
                stats: ProtocolStats::default(),
                state: AppState::default(),
                recent: RecentCache::new(1024, 1_000_000_000),
                sink: ObservationSink::new(tx, Delivery::Block),
                observations,
                events: Vec::new(),
                flow: FlowInfo {
                    flow_id: if l2 { 0 } else { 9 },
                    client: if l2 {
                        (unspecified, 0)
                    } else {
                        (ip(11), 49155)
                    },
                    server: if l2 {
                        (unspecified, 0)
                    } else {
                        (ip(20), 34964)
                    },
                    client_mac: Some([0x00, 0x09, 0x91, 0x43, 0xe0, 0x67]),
                    server_mac: None,
                    ip_protocol: if l2 { 0 } else { 17 },
                    vlan: 0,
                },
            }
        }

        fn run(&mut self, pdu: &[u8], direction: Direction) -> Vec<Observation> {
            let mut ctx = PduCtx {
                dnp3: &mut crate::inspect::dnp3::ReassemblyPool::new(1),
                segments: &mut crate::inspect::reassembly::SegmentPool::new(0),
                ts_ns: 1_000,
                direction,
                flow: &self.flow,
                state: &mut self.state,
                stats: &mut self.stats,
                out: Outputs {
                    observations: &mut self.sink,
                    recent: &mut self.recent,
                    events: Some(&mut self.events),
                },
            };
            inspect(pdu, &mut ctx);
            self.sink.flush(u64::MAX, false, false);
            self.observations
                .try_iter()
                .map(|s| s.observation)
                .collect()
        }

        fn summary(&self) -> serde_json::Value {
            self.stats.profinet.summary()
        }

        fn event(&self) -> ProfinetEvent {
            match self.events.last().map(|e| &e.body) {
                Some(EventBody::Profinet(event)) => *event,
                other => panic!("no PROFINET event: {other:?}"),
            }
        }
    }

    #[test]
    fn identify_response_reports_the_station() {
        let mut h = Harness::new(true);
        let observations = h.run(&hex(IDENTIFY_RESPONSE), Direction::Request);
        assert_eq!(h.stats.pdus[Protocol::Profinet.index()], 1);
        let summary = h.summary();
        assert_eq!(summary["layers"]["pn_rt+pn_dcp"], 1);
        assert_eq!(summary["dcp_service"]["5/1"], 1);
        assert_eq!(
            identities(&observations),
            vec![
                (IdentityField::Name, "versamax-pns11".to_owned()),
                (IdentityField::Model, "IC200PNS001".to_owned()),
                (
                    IdentityField::ProductCode,
                    "vendor 0x015a device 0x0003".to_owned()
                ),
            ]
        );
        let station = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2));
        assert!(observations.iter().any(|o| matches!(
            o,
            Observation::DeviceSeen { mac: Some(mac), ip: Some(ip), .. }
                if *mac == [0x00, 0x09, 0x91, 0x43, 0xe0, 0x67] && *ip == station
        )));
        assert!(observations.iter().all(|o| match o {
            Observation::Identity { device, .. } => *device == station,
            _ => true,
        }));
        let event = h.event();
        assert_eq!(event.dcp_service, Some(SlashPair(5, 1)));
        assert_eq!(event.device_role, Some(1));
        assert_eq!(event.station_ip, Some(Ipv4Addr::new(192, 168, 1, 2)));
        let json = serde_json::to_value(event).expect("serialises");
        assert_eq!(json["dcp_service"], "5/1");
        assert_eq!(json["name_of_station"], "versamax-pns11");
    }

    #[test]
    fn identify_requests_named_and_all() {
        let mut h = Harness::new(true);
        // Filtered by NameOfStation: how a controller finds its device, not a sweep.
        let observations = h.run(&hex(IDENTIFY_REQUEST), Direction::Request);
        assert!(commands(&observations).is_empty());
        // The same request with the All selector (0xFF/0xFF) instead.
        let all = hex("fefe 0500 03000004 0001 0004 ffff 0000");
        let observations = h.run(&all, Direction::Request);
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Discovery, dcp_code(5, 0xFF, 0xFF))]
        );
        assert_eq!(h.summary()["dcp_service"]["5/0"], 2);
    }

    #[test]
    fn dcp_set_is_a_write_and_factory_reset_a_restart() {
        let mut h = Harness::new(true);
        // The Identify request's NameOfStation block turned into a Set request (Get/Set
        // FrameID, ServiceID 4, BlockQualifier 1 = permanent): "siemens-x208-switch".
        let set_name = hex(
            "fefd 0400 00000007 0000 001a 0202 0015 0001 7369656d656e732d783230382d737769746368 00",
        );
        let observations = h.run(&set_name, Direction::Request);
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Write, dcp_code(4, 2, 2))]
        );
        let event = h.event();
        assert_eq!(
            event
                .name_of_station
                .map(|t| t.as_str().to_owned())
                .as_deref(),
            Some("siemens-x208-switch")
        );
        // Set IP parameter 192.168.1.50/24 and a reset to factory (5/6).
        let set_ip = hex(
            "fefd 0400 00000008 0000 0018 0102 000e 0001 c0a80132 ffffff00 c0a80101 0506 0002 0001",
        );
        let observations = h.run(&set_ip, Direction::Request);
        assert_eq!(
            commands(&observations),
            vec![
                (CommandKind::Write, dcp_code(4, 1, 2)),
                (CommandKind::Restart, dcp_code(4, 5, 6)),
            ]
        );
        assert_eq!(h.event().station_ip, Some(Ipv4Addr::new(192, 168, 1, 50)));
        // The device refuses: Control/Response block naming 1/2 with BlockError 3.
        let refused = hex("fefd 0401 00000008 0000 0008 0504 0003 010203 00");
        let observations = h.run(&refused, Direction::Response);
        assert_eq!(
            errors(&observations),
            vec![(ProtocolErrorKind::ErrorReply, dcp_code(4, 1, 2) | 3 << 28)]
        );
        assert_eq!(h.summary()["dcp_service"]["4/0"], 2);
    }

    #[test]
    fn alarm_error_and_cyclic_data() {
        let mut h = Harness::new(true);
        let observations = h.run(&hex(ALARM_ERR), Direction::Request);
        assert_eq!(
            errors(&observations),
            vec![(ProtocolErrorKind::ErrorReply, 0xCF81_FD0F)]
        );
        assert_eq!(h.summary()["io_error"]["207/129/253/15"], 1);
        assert_eq!(h.event().alarm_pdu_type, Some(4));
        let events = h.events.len();
        let observations = h.run(&hex(CYCLIC), Direction::Request);
        assert!(observations.is_empty());
        // Cyclic data is counted, not evented.
        assert_eq!(h.events.len(), events);
        assert_eq!(h.summary()["layers"]["pn_rt+pn_io"], 2);
        // A frame too short for its FrameID is malformed, not a record.
        h.run(&[0xC0], Direction::Request);
        assert_eq!(h.stats.pdus[Protocol::Profinet.index()], 2);
        assert_eq!(h.stats.malformed[Protocol::Profinet.index()], 1);
    }

    #[test]
    fn io_cm_calls_and_errors() {
        let mut h = Harness::new(false);
        let observations = h.run(&hex(READ_IMPLICIT), Direction::Request);
        assert_eq!(commands(&observations), vec![(CommandKind::Read, 5)]);
        let observations = h.run(&hex(CONNECT_ERROR), Direction::Response);
        assert_eq!(
            errors(&observations),
            vec![(ProtocolErrorKind::ErrorReply, 0xDB81_4004)]
        );
        let summary = h.summary();
        assert_eq!(summary["layers"]["dcerpc+pn_io_device"], 2);
        assert_eq!(summary["io_opnum"]["5"], 1);
        assert_eq!(summary["io_opnum"]["0"], 1);
        assert_eq!(summary["io_error"]["219/129/64/4"], 1);
        assert_eq!(h.event().io_error.map(|s| s.0.as_u32()), Some(0xDB81_4004));
        // The same response as a first fragment of two: no record; its status is
        // reported with the last fragment.
        let mut first = hex(CONNECT_ERROR);
        first[2] = 0x24; // fragment, not last
        let observations = h.run(&first, Direction::Response);
        assert!(errors(&observations).is_empty());
        let mut last = hex(CONNECT_ERROR);
        last[2] = 0x26; // fragment, last
        last[77] = 1; // fragment number 1 (big-endian)
        last[80..84].copy_from_slice(&[0, 0, 0, 0]);
        h.recent = RecentCache::new(1024, 1_000_000_000);
        let observations = h.run(&last, Direction::Response);
        assert_eq!(
            errors(&observations),
            vec![(ProtocolErrorKind::ErrorReply, 0xDB81_4004)]
        );
        assert_eq!(h.stats.pdus[Protocol::Profinet.index()], 3);
        assert_eq!(h.summary()["rpc_other"]["response"], 1);
        // The endpoint mapper's interface on the PNIO port: not a PNIO record.
        let mut epm = hex(READ_IMPLICIT);
        epm[24..40].copy_from_slice(&hex("0883afe11f5dc91191a408002b14a0fa"));
        h.run(&epm, Direction::Request);
        assert_eq!(h.stats.profinet.rpc_not_pnio, 1);
        assert_eq!(h.stats.pdus[Protocol::Profinet.index()], 3);
    }

    #[test]
    fn summary_keys_are_tsharks() {
        let mut stats = Stats::default();
        stats.layers.add(layer::RT_DCP);
        stats.layers.add(layer::RPC + 1);
        stats.layers.add(layer::RPC + 2);
        stats.dcp_service.add(pair_key(5, 1));
        stats.io_error.add(0xDB81_4004);
        stats.io_opnum.add(3);
        let summary = stats.summary();
        assert_eq!(summary["layers"]["pn_rt+pn_dcp"], 1);
        assert_eq!(summary["layers"]["dcerpc+pn_io_device"], 1);
        assert_eq!(summary["layers"]["dcerpc+pn_io_controller"], 1);
        assert_eq!(summary["dcp_service"]["5/1"], 1);
        assert_eq!(summary["io_error"]["219/129/64/4"], 1);
        assert_eq!(summary["io_opnum"]["3"], 1);
        assert!(summary.get("alarm_type").is_none());
    }

    #[test]
    fn event_texts() {
        let pair = serde_json::to_string(&SlashPair(5, 0)).ok();
        assert_eq!(pair.as_deref(), Some("\"5/0\""));
        let status = PnioStatus::read(&[0xCF, 0x81, 0xFD, 0x0F]).map(StatusText);
        let text = serde_json::to_string(&status).ok();
        assert_eq!(text.as_deref(), Some("\"207/129/253/15\""));
    }
}
