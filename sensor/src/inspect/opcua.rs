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
use otsensor_wire::opcua::{status_is_bad, Message, MessageType, SecurityMode, ServiceKind};
use otsensor_wire::{Direction, Protocol};

/// `AppState::flags`: the channel's security mode (0 = not seen, else the
/// MessageSecurityMode value 1-3).
const MODE_MASK: u32 = 0b11;
/// CreateSessionRequest and ActivateSessionRequest encoding ids (Part 6 annex).
const CREATE_SESSION: u32 = 461;
const ACTIVATE_SESSION: u32 = 467;

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
                ctx.state.request(header.request_handle, id, ctx.ts_ns);
            }
            if let Some(kind) = command_kind(service.kind) {
                ctx.command(Protocol::OpcUa, kind, id);
            }
        }
        Direction::Response => {
            if let Some(header) = body.response_header() {
                event.request_handle = Some(header.request_handle);
                event.service_result = Some(header.service_result);
                if let Some((_, latency)) = ctx.state.response(header.request_handle, ctx.ts_ns) {
                    ctx.response_time(Protocol::OpcUa, latency);
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

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::opcua::POLICY_NONE;

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
