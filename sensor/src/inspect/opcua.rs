//! OPC UA binary inspection: statistics keyed like tshark's summaries, services by
//! kind as commands (Write, Call, node management, ...), bad service results and
//! transport errors, the server's identity from GetEndpoints, and the `opcua` EVE
//! protocol event. Nothing here allocates per message.
//!
//! Per flow it keeps the security mode the client asked for in OpenSecureChannel
//! (`AppState::flags` bits 0-1): on a SignAndEncrypt channel MSG bodies are not read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inspect::histogram::Histogram;
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};
use otsensor_wire::opcua::{
    status_is_bad, Message, MessageType, SecurityMode, ServerState, ServerStateRead,
    ServerStatusNode, ServiceKind,
};
use otsensor_wire::{Direction, Protocol};

/// `AppState::flags`: the channel's security mode (0 = not seen, else the
/// MessageSecurityMode value 1-3).
const MODE_MASK: u32 = 0b11;
/// CreateSessionRequest and ActivateSessionRequest encoding ids (Part 6 annex).
const CREATE_SESSION: u32 = 461;
const ACTIVATE_SESSION: u32 = 467;
/// A pending ReadRequest that reads the server's state keeps, in its request-table
/// code beside the encoding id (< 2^16), this flag, the node it reads and its
/// position in NodesToRead (< 64): the response is matched by request handle in the
/// flow's bounded table, nothing else is stored.
const STATE_READ: u32 = 1 << 31;
const STATE_READ_SERVER_STATUS: u32 = 1 << 30;
const STATE_READ_INDEX_SHIFT: u32 = 16;
const STATE_READ_INDEX_MASK: u32 = 0x3F;

/// Per-worker OPC UA statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`: msg_type, service_nodeid, bad_service_result,
/// transport_error).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Index into [`MessageType::ALL`].
    pub msg_type: Histogram,
    pub service_nodeid: Histogram,
    /// Non-zero service results (tshark's name; uncertain codes are counted too).
    pub bad_service_result: Histogram,
    pub transport_error: Histogram,
    /// Secure conversation bodies not read because the channel encrypts them.
    pub encrypted: Histogram,
}

fn type_name(key: u32) -> String {
    MessageType::ALL
        .get(key as usize)
        .map_or("?", |t| t.name())
        .to_owned()
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.msg_type.merge(&other.msg_type);
        self.service_nodeid.merge(&other.service_nodeid);
        self.bad_service_result.merge(&other.bad_service_result);
        self.transport_error.merge(&other.transport_error);
        self.encrypted.merge(&other.encrypted);
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        put("msg_type", &self.msg_type, self.msg_type.to_map(type_name));
        put(
            "service_nodeid",
            &self.service_nodeid,
            self.service_nodeid.to_decimal_map(),
        );
        put(
            "bad_service_result",
            &self.bad_service_result,
            self.bad_service_result.to_decimal_map(),
        );
        put(
            "transport_error",
            &self.transport_error,
            self.transport_error.to_decimal_map(),
        );
        put(
            "encrypted",
            &self.encrypted,
            self.encrypted.to_map(type_name),
        );
        serde_json::Value::Object(out)
    }
}

/// The `opcua` EVE protocol event: one per message (chunk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OpcUaEvent {
    /// HEL, ACK, ERR, RHE, OPN, MSG or CLO.
    pub msg_type: &'static str,
    pub secure_channel_id: Option<u32>,
    pub request_id: Option<u32>,
    /// The numeric DefaultBinary encoding id of the service structure.
    pub service_nodeid: Option<u32>,
    /// The service's name (e.g. `Write`), null for an id that is not a service.
    pub service: Option<&'static str>,
    pub request_handle: Option<u32>,
    /// The response's StatusCode.
    pub service_result: Option<u32>,
    /// OPN: the asymmetric security policy's name (`None`, `Basic256Sha256`, ...).
    pub security_policy: Option<&'static str>,
    /// OPN request: none, sign or sign_and_encrypt.
    pub security_mode: Option<&'static str>,
    /// ERR: the transport error code.
    pub transport_error: Option<u32>,
    /// True when the body could not be read (encrypted channel).
    pub encrypted: bool,
}

/// The security policies of Part 7, by the URI fragment after '#'.
fn policy_name(uri: &[u8]) -> &'static str {
    const POLICIES: [&str; 7] = [
        "None",
        "Basic128Rsa15",
        "Basic256",
        "Basic256Sha256",
        "Aes128_Sha256_RsaOaep",
        "Aes256_Sha256_RsaPss",
        "PubSub-Aes128-CTR",
    ];
    let fragment = uri
        .iter()
        .rposition(|&b| b == b'#')
        .map_or(&[][..], |i| &uri[i + 1..]);
    POLICIES
        .iter()
        .find(|p| p.as_bytes() == fragment)
        .copied()
        .unwrap_or("other")
}

fn command_kind(kind: ServiceKind) -> Option<CommandKind> {
    Some(match kind {
        ServiceKind::Write | ServiceKind::HistoryUpdate => CommandKind::Write,
        ServiceKind::Call | ServiceKind::NodeManagement => CommandKind::Program,
        ServiceKind::Read | ServiceKind::Browse | ServiceKind::Subscription => CommandKind::Read,
        ServiceKind::Discovery => CommandKind::Discovery,
        ServiceKind::Session | ServiceKind::Fault => return None,
    })
}

/// Inspects one OPC UA message: statistics, request/response matching by request
/// handle, observations (commands by service kind, bad service results, transport
/// errors, malformed messages, server identity from GetEndpoints) and the EVE event.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let message = match Message::new_checked(pdu) {
        Ok(message) => message,
        Err(_) => {
            ctx.malformed(Protocol::OpcUa);
            return;
        }
    };
    ctx.count(Protocol::OpcUa);
    let message_type = message.message_type();
    let type_key = MessageType::ALL
        .iter()
        .position(|t| *t == message_type)
        .unwrap_or(0) as u32;
    ctx.stats.opcua.msg_type.add(type_key);
    let mut event = OpcUaEvent {
        msg_type: message_type.name(),
        secure_channel_id: None,
        request_id: None,
        service_nodeid: None,
        service: None,
        request_handle: None,
        service_result: None,
        security_policy: None,
        security_mode: None,
        transport_error: None,
        encrypted: false,
    };
    if let Some((code, _reason)) = message.error() {
        ctx.stats.opcua.transport_error.add(code);
        event.transport_error = Some(code);
        ctx.protocol_error(Protocol::OpcUa, ProtocolErrorKind::ErrorReply, code);
    }
    if let Some(secure) = message.secure() {
        event.secure_channel_id = Some(secure.secure_channel_id);
        event.request_id = Some(secure.request_id);
        let mode = ctx.state.flags & MODE_MASK;
        let readable = match message_type {
            MessageType::OpenSecureChannel => {
                event.security_policy = secure.security_policy_uri.map(policy_name);
                // A client asking for a channel under a real policy: the server
                // offers signed channels (the mode itself is in the encrypted body).
                if !secure.policy_is_none() && ctx.direction == Direction::Request {
                    ctx.channel_security(Protocol::OpcUa, true);
                }
                secure.policy_is_none()
            }
            _ => mode != 3,
        };
        if !readable {
            event.encrypted = true;
            ctx.stats.opcua.encrypted.add(type_key);
        }
        let body = if readable { secure.service() } else { None };
        if let Some(body) = body {
            inspect_service(&body, ctx, &mut event);
        } else if readable {
            // A body too short for its type id.
            ctx.protocol_error(Protocol::OpcUa, ProtocolErrorKind::Malformed, type_key);
        }
    } else if message_type.is_secure() {
        ctx.protocol_error(Protocol::OpcUa, ProtocolErrorKind::Malformed, type_key);
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::OpcUa(event));
    }
}

fn inspect_service(
    body: &otsensor_wire::opcua::ServiceBody<'_>,
    ctx: &mut PduCtx<'_>,
    event: &mut OpcUaEvent,
) {
    let Some(id) = body.numeric_id() else {
        return;
    };
    ctx.stats.opcua.service_nodeid.add(id);
    event.service_nodeid = Some(id);
    let Some((service, direction)) = body.service() else {
        ctx.protocol_error(Protocol::OpcUa, ProtocolErrorKind::UnknownFunction, id);
        return;
    };
    event.service = Some(service.name);
    match direction {
        Direction::Request => {
            if let Some(mode) = body.open_security_mode() {
                let value = match mode {
                    SecurityMode::None => 1,
                    SecurityMode::Sign => 2,
                    SecurityMode::SignAndEncrypt => 3,
                    _ => 0,
                };
                ctx.state.flags = (ctx.state.flags & !MODE_MASK) | value;
                event.security_mode = Some(mode.name());
            }
            // A session on a channel opened with SecurityPolicy None (a discovery
            // channel, GetEndpoints and FindServers, needs no session).
            if matches!(id, CREATE_SESSION | ACTIVATE_SESSION) && ctx.state.flags & MODE_MASK == 1 {
                ctx.channel_security(Protocol::OpcUa, false);
            }
            if let Some(header) = body.request_header() {
                event.request_handle = Some(header.request_handle);
                let code = body
                    .server_state_read()
                    .map_or(id, |read| state_read_code(id, read));
                ctx.state.request(header.request_handle, code, ctx.ts_ns);
            }
            if let Some(kind) = command_kind(service.kind) {
                ctx.command(Protocol::OpcUa, kind, id);
            }
        }
        Direction::Response => {
            if let Some(header) = body.response_header() {
                event.request_handle = Some(header.request_handle);
                event.service_result = Some(header.service_result);
                if let Some((code, latency)) = ctx.state.response(header.request_handle, ctx.ts_ns)
                {
                    ctx.response_time(Protocol::OpcUa, latency);
                    let read =
                        state_read_of(code).filter(|_| !status_is_bad(header.service_result));
                    if let Some(read) = read {
                        let state = body
                            .read_result(usize::from(read.index))
                            .and_then(|value| value.server_state(read.node));
                        if let Some(state) = state {
                            report_server_state(ctx, state);
                        }
                    }
                }
                if header.service_result != 0 {
                    ctx.stats
                        .opcua
                        .bad_service_result
                        .add(header.service_result);
                }
                if status_is_bad(header.service_result) {
                    ctx.protocol_error(
                        Protocol::OpcUa,
                        ProtocolErrorKind::ErrorReply,
                        header.service_result,
                    );
                }
            }
            // GetEndpoints describes the answering server itself.
            if id == 431 {
                if let Some(app) = body.applications().next() {
                    ctx.identity(Protocol::OpcUa, IdentityField::Name, app.application_name);
                    ctx.identity(Protocol::OpcUa, IdentityField::Product, app.product_uri);
                }
            }
        }
    }
}

/// The request-table code of a ReadRequest that reads the server's state.
fn state_read_code(id: u32, read: ServerStateRead) -> u32 {
    let node = match read.node {
        ServerStatusNode::State => 0,
        ServerStatusNode::ServerStatus => STATE_READ_SERVER_STATUS,
    };
    (id & 0xFFFF)
        | STATE_READ
        | node
        | ((u32::from(read.index) & STATE_READ_INDEX_MASK) << STATE_READ_INDEX_SHIFT)
}

/// The server-state read a request-table code stands for, if any.
fn state_read_of(code: u32) -> Option<ServerStateRead> {
    if code & STATE_READ == 0 {
        return None;
    }
    let node = if code & STATE_READ_SERVER_STATUS != 0 {
        ServerStatusNode::ServerStatus
    } else {
        ServerStatusNode::State
    };
    Some(ServerStateRead {
        index: ((code >> STATE_READ_INDEX_SHIFT) & STATE_READ_INDEX_MASK) as u16,
        node,
    })
}

/// Reports the server's state as its mode, by the enumeration's name (Part 5
/// ServerState: "Running", "Failed", ...; a value it does not define as
/// "ServerState <n>"), for the answering server.
fn report_server_state(ctx: &mut PduCtx<'_>, state: ServerState) {
    use std::io::Write;
    let mut buf = [0u8; 24];
    let text: &[u8] = match (state.name(), state) {
        (Some(name), _) => name.as_bytes(),
        (None, ServerState::Other(value)) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // 12 + 11 octets at most: never short.
            let _ = write!(cursor, "ServerState {value}");
            let len = cursor.position() as usize;
            &buf[..len]
        }
        (None, _) => return,
    };
    ctx.identity(Protocol::OpcUa, IdentityField::Mode, text);
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crossbeam_channel::Receiver;

    use super::*;
    use crate::inspect::test_capture::{framed_pdus, hex, identities};
    use crate::inspect::{AppState, FlowInfo, Outputs, ProtocolStats, RecentCache};
    use crate::observe::{Delivery, Observation, ObservationSink};
    use otsensor_wire::opcua::{frame, POLICY_NONE, PORT};

    /// opcua-open62541-browse-results.pcap #193: ReadRequest (handle 6) of
    /// ns=0;i=2259 (Server_ServerStatus_State), attribute Value.
    const READ_SERVER_STATE: &str = "4d5347466c00000005000000090000000600000006000000010077020401006210aad2ad5214631b31c37c02b00bd0bcefa0863f8bd8010600000000000000ffffffffe8030000000000000000000000000000000000010000000100d3080d000000ffffffff0000ffffffff";
    /// opcua-open62541-browse-results.pcap #195: its ReadResponse, Int32 0 (Running).
    /// The value's four octets start at [`STATE_VALUE_AT`].
    const READ_SERVER_STATE_RESPONSE: &str = "4d5347464a0000000500000009000000060000000600000001007a02fe02a1863f8bd801060000000000000000ffffffff00000001000000050600000000fe02a1863f8bd801ffffffff";
    const STATE_VALUE_AT: usize = 58;

    struct Harness {
        stats: ProtocolStats,
        state: AppState,
        recent: RecentCache,
        sink: ObservationSink,
        observations: Receiver<crate::observe::Stamped>,
        flow: FlowInfo,
    }

    impl Harness {
        fn new() -> Harness {
            let (tx, observations) = crossbeam_channel::bounded(1024);
            Harness {
                stats: ProtocolStats::default(),
                state: AppState::default(),
                recent: RecentCache::new(1024, 1_000_000_000),
                sink: ObservationSink::new(tx, Delivery::Block),
                observations,
                flow: FlowInfo {
                    flow_id: 7,
                    client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 50000),
                    server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), PORT),
                    client_mac: None,
                    server_mac: None,
                    ip_protocol: 6,
                    vlan: 0,
                },
            }
        }

        fn run(&mut self, pdu: &[u8], direction: Direction, ts_ns: u64) -> Vec<Observation> {
            let mut ctx = PduCtx {
                dnp3: &mut crate::inspect::dnp3::ReassemblyPool::new(1),
                segments: &mut crate::inspect::reassembly::SegmentPool::new(0),
                ts_ns,
                direction,
                flow: &self.flow,
                state: &mut self.state,
                stats: &mut self.stats,
                out: Outputs {
                    observations: &mut self.sink,
                    recent: &mut self.recent,
                    events: None,
                },
            };
            inspect(pdu, &mut ctx);
            self.observations
                .try_iter()
                .map(|s| s.observation)
                .collect()
        }
    }

    /// The modes reported, with the device each is attributed to.
    fn modes(observations: &[Observation]) -> Vec<(IpAddr, String)> {
        observations
            .iter()
            .filter_map(|o| match o {
                Observation::Identity {
                    device,
                    field: IdentityField::Mode,
                    value,
                    ..
                } => Some((*device, value.as_str().to_owned())),
                _ => None,
            })
            .collect()
    }

    const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_read_of_the_server_state_reports_the_mode_of_the_server() {
        // Every message of the capture, both of its sessions: the one Read of
        // i=2259 (#193, handle 6; stream 0 used handle 6 for a Browse before) is
        // answered Running (#195), and nothing else reports a mode.
        let (pdus, _) = framed_pdus("opcua-open62541-browse-results.pcap", PORT, frame);
        let mut h = Harness::new();
        let mut observations = Vec::new();
        for (index, (direction, pdu)) in pdus.iter().enumerate() {
            observations.extend(h.run(pdu, *direction, index as u64 * 1_000));
        }
        assert_eq!(modes(&observations), [(SERVER, "Running".to_owned())]);
    }

    #[test]
    fn the_state_needs_its_request_and_names_every_value() {
        // The response alone: nothing matches it.
        let mut h = Harness::new();
        let response = hex(READ_SERVER_STATE_RESPONSE);
        assert!(modes(&h.run(&response, Direction::Response, 1)).is_empty());
        // Request then response, with the state value changed in the captured
        // response: each value by its Part 5 name, an undefined one by number.
        for (value, name) in [
            (0i32, "Running"),
            (3, "Suspended"),
            (6, "CommunicationFault"),
            (9, "ServerState 9"),
            (-1, "ServerState -1"),
        ] {
            let mut h = Harness::new();
            let mut response = response.clone();
            response[STATE_VALUE_AT..STATE_VALUE_AT + 4].copy_from_slice(&value.to_le_bytes());
            assert!(modes(&h.run(&hex(READ_SERVER_STATE), Direction::Request, 1)).is_empty());
            let observations = h.run(&response, Direction::Response, 2);
            assert_eq!(modes(&observations), [(SERVER, name.to_owned())], "{value}");
            // Answered once: a repeated response matches nothing.
            assert!(modes(&h.run(&response, Direction::Response, 3)).is_empty());
        }
        // A Bad service result carries no state.
        let mut h = Harness::new();
        let mut response = response.clone();
        response[40..44].copy_from_slice(&0x8034_0000u32.to_le_bytes());
        h.run(&hex(READ_SERVER_STATE), Direction::Request, 1);
        let observations = h.run(&response, Direction::Response, 2);
        assert!(modes(&observations).is_empty());
        assert!(identities(&observations).is_empty());
    }

    #[test]
    fn state_read_codes_round_trip() {
        for read in [
            ServerStateRead {
                index: 0,
                node: ServerStatusNode::State,
            },
            ServerStateRead {
                index: 63,
                node: ServerStatusNode::ServerStatus,
            },
        ] {
            let code = state_read_code(631, read);
            assert_eq!(code & 0xFFFF, 631);
            assert_eq!(state_read_of(code), Some(read));
        }
        assert_eq!(state_read_of(631), None);
        assert!(IdentityField::mode_is_run("Running"));
        assert!(!IdentityField::mode_is_run("Suspended"));
    }

    #[test]
    fn policy_names() {
        assert_eq!(policy_name(POLICY_NONE), "None");
        assert_eq!(
            policy_name(b"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"),
            "Basic256Sha256"
        );
        assert_eq!(policy_name(b"urn:x"), "other");
    }

    #[test]
    fn command_kinds() {
        assert_eq!(command_kind(ServiceKind::Write), Some(CommandKind::Write));
        assert_eq!(command_kind(ServiceKind::Call), Some(CommandKind::Program));
        assert_eq!(
            command_kind(ServiceKind::NodeManagement),
            Some(CommandKind::Program)
        );
        assert_eq!(command_kind(ServiceKind::Session), None);
    }

    #[test]
    fn summary_names_message_types_like_tshark() {
        let mut stats = Stats::default();
        stats.msg_type.add(0);
        stats.msg_type.add(5);
        let summary = stats.summary();
        assert_eq!(summary["msg_type"]["HEL"], 1);
        assert_eq!(summary["msg_type"]["MSG"], 1);
    }
}
