//! IEC 60870-5-104 inspection: statistics keyed like tshark's summaries, commands by
//! kind (operate, set-point, interrogation, clock sync, reset process, file transfer),
//! protocol errors (negative confirms, unknown type/cause/address replies, malformed
//! APDUs) and the `iec104` EVE protocol event. Nothing here allocates per APDU.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inspect::histogram::Histogram;
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{CommandKind, ProtocolErrorKind};
use otsensor_wire::iec104::{Apdu, Cause, Format, TypeKind};
use otsensor_wire::Protocol;

/// Per-worker IEC 104 statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`: apci_type, u_type, type_id, cot, negative, test).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// 0 = I, 1 = S, 2 = U.
    pub apci_type: Histogram,
    /// The U-format function bits (1/2 STARTDT act/con, 4/8 STOPDT, 16/32 TESTFR).
    pub u_type: Histogram,
    pub type_id: Histogram,
    /// Cause of transmission, bits 0-5.
    pub cot: Histogram,
    /// ASDUs with the P/N bit set, key 1.
    pub negative: Histogram,
    /// ASDUs with the test bit set, key 1.
    pub test: Histogram,
    /// APDUs with spec violations, per anomaly flag bit.
    pub anomalies: Histogram,
}

fn format_key(format: Format) -> u32 {
    match format {
        Format::I => 0,
        Format::S => 1,
        Format::U => 2,
    }
}

fn format_name(key: u32) -> String {
    match key {
        0 => "I",
        1 => "S",
        _ => "U",
    }
    .to_owned()
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.apci_type.merge(&other.apci_type);
        self.u_type.merge(&other.u_type);
        self.type_id.merge(&other.type_id);
        self.cot.merge(&other.cot);
        self.negative.merge(&other.negative);
        self.test.merge(&other.test);
        self.anomalies.merge(&other.anomalies);
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        let truth = |_: u32| "true".to_owned();
        put(
            "apci_type",
            &self.apci_type,
            self.apci_type.to_map(format_name),
        );
        put("u_type", &self.u_type, self.u_type.to_decimal_map());
        put("type_id", &self.type_id, self.type_id.to_decimal_map());
        put("cot", &self.cot, self.cot.to_decimal_map());
        put("negative", &self.negative, self.negative.to_map(truth));
        put("test", &self.test, self.test.to_map(truth));
        put(
            "anomalies",
            &self.anomalies,
            self.anomalies.to_map(|bit| {
                otsensor_wire::iec104::Anomalies(1 << bit)
                    .labels()
                    .next()
                    .unwrap_or("unknown")
                    .to_owned()
            }),
        );
        serde_json::Value::Object(out)
    }
}

/// The `iec104` EVE protocol event: one per APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Iec104Event {
    /// "I", "S" or "U".
    pub apci_type: &'static str,
    /// U-format function bits (1/2 STARTDT act/con, 4/8 STOPDT, 16/32 TESTFR).
    pub u_type: Option<u8>,
    /// N(S) and N(R).
    pub tx: Option<u16>,
    pub rx: Option<u16>,
    pub type_id: Option<u8>,
    /// The type's name (e.g. `C_SC_NA_1`), null for an undefined type.
    pub type_name: Option<&'static str>,
    /// Cause of transmission, bits 0-5.
    pub cot: Option<u8>,
    pub negative: Option<bool>,
    pub test: Option<bool>,
    pub originator: Option<u8>,
    pub common_address: Option<u16>,
    pub num_objects: Option<u8>,
    /// The address of the first information object.
    pub ioa: Option<u32>,
}

/// The command kind of a type sent as an activation or deactivation.
fn command_kind(kind: TypeKind) -> Option<CommandKind> {
    Some(match kind {
        TypeKind::Operate => CommandKind::Operate,
        TypeKind::Setpoint | TypeKind::Parameter => CommandKind::Write,
        TypeKind::Interrogation => CommandKind::Read,
        TypeKind::ClockSync => CommandKind::TimeSync,
        TypeKind::ResetProcess => CommandKind::Restart,
        TypeKind::Test => CommandKind::Diagnostic,
        TypeKind::File => CommandKind::FileTransfer,
        TypeKind::Unknown => CommandKind::Other,
        TypeKind::Monitor => return None,
    })
}

/// Inspects one IEC 104 APDU: statistics, observations (commands by kind, negative
/// confirms and unknown-object replies, undefined type ids, malformed APDUs), request
/// matching (activation → confirmation per type and object address) and the EVE event.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let apdu = match Apdu::new_checked(pdu) {
        Ok(apdu) => apdu,
        Err(_) => {
            ctx.malformed(Protocol::Iec104);
            return;
        }
    };
    ctx.count(Protocol::Iec104);
    let format = apdu.format();
    let anomalies = apdu.anomalies();
    let stats = &mut ctx.stats.iec104;
    stats.apci_type.add(format_key(format));
    if let Some(bits) = apdu.u_bits() {
        stats.u_type.add(u32::from(bits));
    }
    for bit in 0..16 {
        if anomalies.0 & (1 << bit) != 0 {
            stats.anomalies.add(bit);
        }
    }
    let asdu = apdu.asdu();
    if let Some(asdu) = asdu {
        stats.type_id.add(u32::from(asdu.raw_type_id()));
        stats.cot.add(u32::from(asdu.raw_cot() & 0x3F));
        if asdu.negative() {
            stats.negative.add(1);
        }
        if asdu.test() {
            stats.test.add(1);
        }
        let type_id = asdu.raw_type_id();
        let kind = asdu.type_id().kind();
        let cause = asdu.cause();
        let id = (u32::from(type_id) << 24) | asdu.first_address().unwrap_or(0);
        let code = u32::from(type_id);
        match cause {
            Cause::Activation | Cause::Deactivation => {
                if let Some(command) = command_kind(kind) {
                    ctx.state.request(id, code, ctx.ts_ns);
                    ctx.command(Protocol::Iec104, command, code);
                }
            }
            Cause::ActivationCon | Cause::DeactivationCon => {
                if let Some((_, latency)) = ctx.state.response(id, ctx.ts_ns) {
                    ctx.response_time(Protocol::Iec104, latency);
                }
            }
            _ => {}
        }
        let error_code = (u32::from(type_id) << 8) | u32::from(asdu.raw_cot() & 0x3F);
        if asdu.negative() || cause.is_unknown_reply() {
            ctx.protocol_error(Protocol::Iec104, ProtocolErrorKind::ErrorReply, error_code);
        }
        if kind == TypeKind::Unknown {
            ctx.protocol_error(Protocol::Iec104, ProtocolErrorKind::UnknownFunction, code);
        }
    } else if format == Format::I {
        // An I-format APDU too short for its data unit identifier.
        ctx.protocol_error(Protocol::Iec104, ProtocolErrorKind::Malformed, 0);
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Iec104(Iec104Event {
            apci_type: format.name(),
            u_type: apdu.u_bits(),
            tx: apdu.send_seq(),
            rx: apdu.recv_seq(),
            type_id: asdu.map(|a| a.raw_type_id()),
            type_name: asdu.and_then(|a| a.type_id().name()),
            cot: asdu.map(|a| a.raw_cot() & 0x3F),
            negative: asdu.map(|a| a.negative()),
            test: asdu.map(|a| a.test()),
            originator: asdu.map(|a| a.originator()),
            common_address: asdu.map(|a| a.common_address()),
            num_objects: asdu.map(|a| a.num_objects()),
            ioa: asdu.and_then(|a| a.first_address()),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_kinds_follow_the_type_groups() {
        assert_eq!(command_kind(TypeKind::Operate), Some(CommandKind::Operate));
        assert_eq!(command_kind(TypeKind::Setpoint), Some(CommandKind::Write));
        assert_eq!(
            command_kind(TypeKind::ResetProcess),
            Some(CommandKind::Restart)
        );
        assert_eq!(command_kind(TypeKind::Monitor), None);
    }

    #[test]
    fn summary_names_formats_like_tshark() {
        let mut stats = Stats::default();
        stats.apci_type.add(0);
        stats.apci_type.add(2);
        stats.negative.add(1);
        let summary = stats.summary();
        assert_eq!(summary["apci_type"]["I"], 1);
        assert_eq!(summary["apci_type"]["U"], 1);
        assert_eq!(summary["negative"]["true"], 1);
        assert!(summary.get("type_id").is_none());
    }
}
