//! Modbus/TCP inspection: the worker's statistics, protocol events, commands,
//! identities and protocol errors, read from the [`otsensor_wire::modbus`] views.

use otsensor_wire::modbus::*;
use otsensor_wire::{Direction, Protocol};

use crate::inspect::histogram::{pair, pair_key, Histogram};
use crate::inspect::{EventBody, ModbusEvent, PduCtx};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};
use std::collections::BTreeMap;

/// Per-worker Modbus statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`: func_code, unit_id, exception_code, func_exception,
/// mei_type, read_device_id, diagnostic_code) plus UMAS functions.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub func_code: Histogram,
    pub unit_id: Histogram,
    pub exception_code: Histogram,
    /// `fc/exception` pairs.
    pub func_exception: Histogram,
    pub mei_type: Histogram,
    pub read_device_id: Histogram,
    pub diagnostic_code: Histogram,
    pub umas_function: Histogram,
    /// Chunks on a Modbus flow that do not start with an MBAP header (protocol id 0,
    /// length 2..=255): scanners' probes, other protocols on port 502. Not Modbus
    /// PDUs; each is a [`ProtocolErrorKind::Malformed`] observation with code
    /// [`NOT_MODBUS`].
    pub non_modbus: u64,
}

/// The protocol-error code of non-Modbus traffic on a Modbus flow (code 0 is a
/// Modbus ADU that failed validation).
pub const NOT_MODBUS: u32 = 1;

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.func_code.merge(&other.func_code);
        self.unit_id.merge(&other.unit_id);
        self.exception_code.merge(&other.exception_code);
        self.func_exception.merge(&other.func_exception);
        self.mei_type.merge(&other.mei_type);
        self.read_device_id.merge(&other.read_device_id);
        self.diagnostic_code.merge(&other.diagnostic_code);
        self.umas_function.merge(&other.umas_function);
        self.non_modbus += other.non_modbus;
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        put(
            "func_code",
            &self.func_code,
            self.func_code.to_decimal_map(),
        );
        put("unit_id", &self.unit_id, self.unit_id.to_decimal_map());
        put(
            "exception_code",
            &self.exception_code,
            self.exception_code.to_decimal_map(),
        );
        put(
            "func_exception",
            &self.func_exception,
            self.func_exception.to_map(pair),
        );
        put("mei_type", &self.mei_type, self.mei_type.to_decimal_map());
        put(
            "read_device_id",
            &self.read_device_id,
            self.read_device_id.to_decimal_map(),
        );
        put(
            "diagnostic_code",
            &self.diagnostic_code,
            self.diagnostic_code.to_decimal_map(),
        );
        put(
            "umas_function",
            &self.umas_function,
            self.umas_function.to_decimal_map(),
        );
        if self.non_modbus > 0 {
            out.insert("non_modbus".to_owned(), serde_json::json!(self.non_modbus));
        }
        serde_json::Value::Object(out)
    }
}

/// FC 8 sub-functions that change the server's communication state (MB §6.8).
const DIAG_RESTART_COMMUNICATIONS: u16 = 0x0001;
const DIAG_FORCE_LISTEN_ONLY: u16 = 0x0004;

/// The command kind of a request, for the analyzer; UMAS and FC 8 decide by their
/// sub-function.
fn command_kind(adu: &Adu<'_>) -> CommandKind {
    if adu.function_code() == FunctionCode::Diagnostics {
        match adu.diagnostic_code() {
            Some(DIAG_RESTART_COMMUNICATIONS) => return CommandKind::Restart,
            Some(DIAG_FORCE_LISTEN_ONLY) => return CommandKind::DisableCommunication,
            _ => {}
        }
    }
    match adu.kind() {
        FunctionKind::Read => CommandKind::Read,
        FunctionKind::Write => CommandKind::Write,
        FunctionKind::Diagnostic => CommandKind::Diagnostic,
        FunctionKind::Program => CommandKind::Program,
        FunctionKind::Start => CommandKind::Start,
        FunctionKind::Stop => CommandKind::Stop,
        FunctionKind::Other => CommandKind::Other,
    }
}

/// The identity field a Read Device Identification object carries.
fn identity_field(object_id: u8) -> Option<IdentityField> {
    Some(match object_id {
        0 => IdentityField::Vendor,
        1 => IdentityField::ProductCode,
        2 => IdentityField::Firmware,
        4 => IdentityField::Product,
        5 => IdentityField::Model,
        _ => return None,
    })
}

/// True when `bytes` start with what Wireshark's `dissect_mbtcp` takes for Modbus/TCP
/// (protocol id 0, a length of at least 2; otsensor also bounds it by [`MAX_LENGTH`]).
fn starts_with_mbap(bytes: &[u8]) -> bool {
    match bytes {
        [_, _, 0, 0, hi, lo, ..] => {
            (MIN_LENGTH..=MAX_LENGTH).contains(&u16::from_be_bytes([*hi, *lo]))
        }
        _ => false,
    }
}

/// Inspects one Modbus/TCP ADU: statistics, request/response matching, observations
/// (commands, identity from FC 43/14, exceptions, unknown functions) and the EVE event.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let adu = match Adu::new_checked(pdu) {
        Ok(adu) => adu,
        Err(_) if !starts_with_mbap(pdu) => {
            // Not an MBAP header (the framer hands such bytes over whole): not a
            // Modbus PDU, but "non-Modbus traffic on a Modbus port", alertable.
            ctx.stats.modbus.non_modbus += 1;
            ctx.protocol_error(Protocol::Modbus, ProtocolErrorKind::Malformed, NOT_MODBUS);
            return;
        }
        Err(_) => {
            ctx.malformed(Protocol::Modbus);
            return;
        }
    };
    ctx.count(Protocol::Modbus);
    let anomalies = adu.anomalies(ctx.direction);
    if !anomalies.is_empty() {
        // The flags as the code: one report per flow and combination per interval.
        ctx.protocol_error(
            Protocol::Modbus,
            ProtocolErrorKind::SpecViolation,
            u32::from(anomalies.0),
        );
    }
    let function = adu.raw_function_code() & !EXCEPTION_BIT;
    let exception = adu
        .is_exception()
        .then(|| adu.data().first().copied().unwrap_or(0));
    let stats = &mut ctx.stats.modbus;
    stats.func_code.add(u32::from(function));
    stats.unit_id.add(u32::from(adu.unit_id()));
    if let Some(code) = exception {
        stats.exception_code.add(u32::from(code));
        stats
            .func_exception
            .add(pair_key(u16::from(function), u16::from(code)));
    }
    if let Some(mei) = adu.mei_type() {
        stats.mei_type.add(u32::from(mei));
    }
    if let Some(diagnostic) = adu.diagnostic_code() {
        stats.diagnostic_code.add(u32::from(diagnostic));
    }
    let transaction = u32::from(adu.transaction_id());
    match ctx.direction {
        Direction::Request => {
            if let Some(request) = adu.device_id_request(Direction::Request) {
                ctx.stats
                    .modbus
                    .read_device_id
                    .add(u32::from(request.read_device_id_code));
            }
            let mut code = u32::from(function);
            if let Some(umas) = adu.umas() {
                let umas_function = umas.effective_function().0;
                ctx.stats.modbus.umas_function.add(u32::from(umas_function));
                code = (code << 8) | u32::from(umas_function);
            }
            ctx.state.request(transaction, code, ctx.ts_ns);
            if let Some(access) = adu.read_access(Direction::Request) {
                ctx.object_access(
                    Protocol::Modbus,
                    (u64::from(function) << 16) | u64::from(access.address),
                );
            }
            ctx.command_to_unit(
                Protocol::Modbus,
                command_kind(&adu),
                code,
                Some(adu.unit_id()),
            );
            if !is_plausible_function(function) {
                ctx.protocol_error(
                    Protocol::Modbus,
                    ProtocolErrorKind::UnknownFunction,
                    u32::from(function),
                );
            }
        }
        Direction::Response => {
            if let Some((_, latency)) = ctx.state.response(transaction, ctx.ts_ns) {
                ctx.response_time(Protocol::Modbus, latency);
            }
            if let Some(code) = exception {
                let key = pair_key(u16::from(function), u16::from(code));
                ctx.protocol_error(Protocol::Modbus, ProtocolErrorKind::ErrorReply, key);
            }
            if let Some(identification) = adu.device_identification(Direction::Response) {
                ctx.stats
                    .modbus
                    .read_device_id
                    .add(u32::from(identification.read_device_id_code()));
                for object in identification.objects() {
                    if let Some(field) = identity_field(object.id) {
                        ctx.identity(Protocol::Modbus, field, object.value);
                    }
                }
            }
        }
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Modbus(ModbusEvent {
            transaction_id: adu.transaction_id(),
            unit_id: adu.unit_id(),
            function,
            exception,
            direction: ctx.direction,
        }));
    }
}
