//! S7comm-plus inspection (S7-1200/1500): statistics by PDU type, opcode and function,
//! commands by function (reads, writes, the CPU's operating state set to STOP or RUN,
//! session set-up), the PLC's order number and firmware from the session's
//! CreateObject response, and the `s7commplus` EVE protocol event. The ISO-on-TCP
//! dispatcher ([`crate::inspect::s7comm::inspect`]) hands each COTP DT TSDU starting
//! with 0x72 here. Nothing here allocates per PDU.

use std::collections::BTreeMap;

use serde::Serialize;

use otsensor_wire::s7commplus::{Anomalies, CpuStateRequest, Function, Opcode, Pdu};
use otsensor_wire::{Direction, Protocol};

use crate::inspect::histogram::Histogram;
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{CommandKind, IdentityField};

/// Per-worker S7comm-plus statistics (tshark 4.0 has no S7comm-plus dissector: only
/// the PDU count is compared with it).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// The frame header's PDU type (1 connect, 2 data, 3 data with integrity).
    pub pdu_type: Histogram,
    /// `s7comm-plus.data.opcode`.
    pub opcode: Histogram,
    /// `s7comm-plus.data.function` of requests and responses.
    pub function: Histogram,
    /// Anomaly flags (bit index).
    pub anomalies: Histogram,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.pdu_type.merge(&other.pdu_type);
        self.opcode.merge(&other.opcode);
        self.function.merge(&other.function);
        self.anomalies.merge(&other.anomalies);
    }

    /// Non-empty histograms by name.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        put("pdu_type", &self.pdu_type, self.pdu_type.to_decimal_map());
        put("opcode", &self.opcode, self.opcode.to_decimal_map());
        put("function", &self.function, self.function.to_decimal_map());
        put(
            "anomalies",
            &self.anomalies,
            self.anomalies.to_map(|bit| {
                Anomalies(1u16.checked_shl(bit).unwrap_or(0))
                    .labels()
                    .next()
                    .unwrap_or("other")
                    .to_owned()
            }),
        );
        serde_json::Value::Object(out)
    }
}

/// The `s7commplus` EVE protocol event: one per S7comm-plus frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct S7commPlusEvent {
    pub pdu_type: u8,
    /// The plugin's opcode name (`Request`, `Response`, `Notification`,
    /// `Response2`); null for an undefined opcode or an empty data part.
    pub opcode: Option<&'static str>,
    pub opcode_code: Option<u8>,
    /// The plugin's function name (`CreateObject`, `SetVariable`, ...); null for
    /// notifications and unnamed codes.
    pub function: Option<&'static str>,
    pub function_code: Option<u16>,
    pub sequence: Option<u16>,
    pub session_id: Option<u32>,
}

/// Command codes: the function code, or for a SetVariable on the CPU's operating
/// state the function with this tag and the requested state in the low byte.
pub const CPU_STATE: u32 = 0x1_0000;

/// The command kind of a request's function.
fn command_kind(function: Function) -> CommandKind {
    match function {
        Function::EXPLORE
        | Function::GET_VARIABLE
        | Function::GET_MULTI_VARIABLES
        | Function::GET_LINK
        | Function::GET_VAR_SUBSTREAMED
        | Function::GET_VARIABLES_ADDRESS => CommandKind::Read,
        Function::SET_VARIABLE | Function::SET_MULTI_VARIABLES | Function::SET_VAR_SUBSTREAMED => {
            CommandKind::Write
        }
        _ => CommandKind::Other,
    }
}

/// Inspects one S7comm-plus frame (a whole COTP DT TSDU starting with 0x72).
pub fn inspect_pdu(tsdu: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(pdu) = Pdu::new_checked(tsdu) else {
        // Counted like tshark's COTP payload starting with 0x72, not dissected.
        ctx.count(Protocol::S7commPlus);
        ctx.malformed(Protocol::S7commPlus);
        return;
    };
    ctx.count(Protocol::S7commPlus);
    let opcode = pdu.opcode();
    let function = pdu.function();
    let anomalies = pdu.anomalies();
    let stats = &mut ctx.stats.s7commplus;
    stats.pdu_type.add(u32::from(u8::from(pdu.pdu_type())));
    if let Some(opcode) = opcode {
        stats.opcode.add(u32::from(u8::from(opcode)));
    }
    if let Some(function) = function {
        stats.function.add(u32::from(function.0));
    }
    for bit in 0..16 {
        if anomalies.0 & (1 << bit) != 0 {
            stats.anomalies.add(bit);
        }
    }
    // Not reported as protocol errors: a PDU split over several frames has no
    // trailer until its last frame, and its continuation frames carry no opcode
    // (s7commplus-s7-1200-upload-ob1.pcap); counted only.
    let sequence = pdu.sequence_number().map(u32::from);
    match (opcode, function, ctx.direction) {
        (Some(Opcode::Request), Some(function), Direction::Request) => {
            if let Some(sequence) = sequence {
                ctx.state
                    .request(sequence, u32::from(function.0), ctx.ts_ns);
            }
            let (kind, code) = match pdu.cpu_state_request() {
                Some(CpuStateRequest::Stop) => (CommandKind::Stop, CPU_STATE | 1),
                Some(CpuStateRequest::Run) => (CommandKind::Start, CPU_STATE | 3),
                Some(CpuStateRequest::Other(value)) => {
                    (CommandKind::Stop, CPU_STATE | u32::from(value))
                }
                None => (command_kind(function), u32::from(function.0)),
            };
            ctx.command(Protocol::S7commPlus, kind, code);
        }
        (Some(Opcode::Response | Opcode::Response2), Some(_), Direction::Response) => {
            if let Some(sequence) = sequence {
                if let Some((_, latency)) = ctx.state.response(sequence, ctx.ts_ns) {
                    ctx.response_time(Protocol::S7commPlus, latency);
                }
            }
            if let Some((order, firmware)) = pdu.order_number_and_firmware() {
                ctx.identity(Protocol::S7commPlus, IdentityField::OrderNumber, order);
                ctx.identity(Protocol::S7commPlus, IdentityField::Firmware, firmware);
            }
        }
        _ => {}
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::S7commPlus(S7commPlusEvent {
            pdu_type: u8::from(pdu.pdu_type()),
            opcode: opcode.and_then(Opcode::name),
            opcode_code: opcode.map(u8::from),
            function: function.and_then(Function::name),
            function_code: function.map(|f| f.0),
            sequence: pdu.sequence_number(),
            session_id: pdu.session_id(),
        }));
    }
}
