//! MMS inspection (IEC 61850 / ISO 9506 over ISO-on-TCP): statistics keyed like
//! tshark's summaries (PDU type, confirmed services, unconfirmed services), commands
//! by kind (write, program invocation start/stop/kill/reset, domain download and
//! program management, file access), identity from identify responses, error PDUs
//! and rejects as protocol errors, and the `mms` EVE protocol event. The ISO-on-TCP
//! dispatcher ([`crate::inspect::s7comm::inspect`]) hands each COTP DT TSDU here when
//! it is not S7comm or S7comm-plus. Nothing here allocates per PDU.

use std::collections::BTreeMap;

use serde::Serialize;

use otsensor_wire::mms::{
    mms_in_dt, Anomalies, Carrier, ConfirmedService, Dt, Pdu, PduType, ServiceKind,
};
use otsensor_wire::{Direction, Protocol};

use crate::inspect::histogram::{pair, Histogram};
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};

/// Per-worker MMS statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`, "Summary document", mms).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// MMSpdu CHOICE tag of every PDU (written with tshark's PDU names).
    pub pdu: Histogram,
    /// `mms.confirmedServiceRequest` of confirmed requests that name a service.
    pub confirmed_service_request: Histogram,
    /// `mms.confirmedServiceResponse` of confirmed responses.
    pub confirmed_service_response: Histogram,
    /// `mms.unconfirmedService` of unconfirmed PDUs.
    pub unconfirmed_service: Histogram,
    /// ServiceError class/code of error PDUs ([`pair`]).
    pub error_class: Histogram,
    /// Reject problem type/code ([`pair`]).
    pub reject_reason: Histogram,
    /// Anomaly flags (bit index) of PDUs that break the spec.
    pub anomalies: Histogram,
    /// PDUs carried directly in COTP DTs (no session, presentation or ACSE).
    pub on_cotp: u64,
    /// PDUs found inside ACSE association set-up or release.
    pub in_acse: u64,
    /// Session TSDUs with no MMS PDU inside (release, abort, ...): not MMS records.
    pub session_only: u64,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.pdu.merge(&other.pdu);
        self.confirmed_service_request
            .merge(&other.confirmed_service_request);
        self.confirmed_service_response
            .merge(&other.confirmed_service_response);
        self.unconfirmed_service.merge(&other.unconfirmed_service);
        self.error_class.merge(&other.error_class);
        self.reject_reason.merge(&other.reject_reason);
        self.anomalies.merge(&other.anomalies);
        self.on_cotp += other.on_cotp;
        self.in_acse += other.in_acse;
        self.session_only += other.session_only;
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        put("pdu", &self.pdu, self.pdu.to_map(pdu_label));
        put(
            "confirmed_service_request",
            &self.confirmed_service_request,
            self.confirmed_service_request.to_decimal_map(),
        );
        put(
            "confirmed_service_response",
            &self.confirmed_service_response,
            self.confirmed_service_response.to_decimal_map(),
        );
        put(
            "unconfirmed_service",
            &self.unconfirmed_service,
            self.unconfirmed_service.to_decimal_map(),
        );
        put(
            "error_class",
            &self.error_class,
            self.error_class.to_map(pair),
        );
        put(
            "reject_reason",
            &self.reject_reason,
            self.reject_reason.to_map(pair),
        );
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
        for (name, count) in [
            ("on_cotp", self.on_cotp),
            ("in_acse", self.in_acse),
            ("session_only", self.session_only),
        ] {
            if count > 0 {
                out.insert(name.to_owned(), serde_json::json!(count));
            }
        }
        serde_json::Value::Object(out)
    }
}

fn pdu_label(tag: u32) -> String {
    match PduType::from(tag as u8).name() {
        Some(name) => name.to_owned(),
        None => tag.to_string(),
    }
}

/// Error codes reported for MMS: the error PDU's ServiceError class in bits 16..24
/// and its code below; rejects carry [`REJECT`].
pub const REJECT: u32 = 0x100_0000;

/// The `mms` EVE protocol event: one per MMS PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MmsEvent {
    /// tshark's PDU name (`confirmed-RequestPDU`, `initiate-RequestPDU`, ...).
    pub pdu: &'static str,
    pub invoke_id: Option<u32>,
    /// tshark's service name: the confirmed service of a confirmed request or
    /// response (`read`, `write`, `getNameList`, `identify`, ...), the unconfirmed
    /// service of an unconfirmed PDU (`informationReport`, ...); null otherwise or
    /// when MMS does not define the number.
    pub service: Option<&'static str>,
    /// The service's CHOICE tag number.
    pub service_code: Option<u32>,
    /// ServiceError class and code of error PDUs.
    pub error_class: Option<u32>,
    pub error_code: Option<u32>,
    /// Reject problem type and code.
    pub reject_type: Option<u32>,
    pub reject_code: Option<u32>,
    /// Where the PDU rode: `cotp` (directly in the COTP DT), `presentation` (session
    /// data transfer) or `acse` (association set-up or release).
    pub carrier: &'static str,
}

fn command_kind(kind: ServiceKind) -> CommandKind {
    match kind {
        ServiceKind::Read => CommandKind::Read,
        ServiceKind::Write => CommandKind::Write,
        ServiceKind::Start => CommandKind::Start,
        ServiceKind::Stop => CommandKind::Stop,
        ServiceKind::Reset => CommandKind::Restart,
        ServiceKind::Program => CommandKind::Program,
        ServiceKind::File => CommandKind::FileTransfer,
        ServiceKind::Diagnostic => CommandKind::Diagnostic,
        ServiceKind::Other => CommandKind::Other,
    }
}

/// Inspects one COTP DT TSDU of an ISO-on-TCP flow as MMS. Answers whether it carried
/// an MMS PDU (counted as one `mms` record, as tshark counts one per DT); a session
/// TSDU without one is only counted in `session_only`.
pub fn inspect_dt(payload: &[u8], ctx: &mut PduCtx<'_>) -> bool {
    match mms_in_dt(payload) {
        None => false,
        Some(Dt::SessionOnly(_)) => {
            ctx.stats.mms.session_only += 1;
            false
        }
        Some(Dt::Mms(bytes, carrier, _)) => {
            match Pdu::new_checked(bytes) {
                Ok(pdu) => {
                    ctx.count(Protocol::Mms);
                    inspect_pdu(&pdu, carrier, ctx);
                }
                Err(_) => ctx.malformed(Protocol::Mms),
            }
            true
        }
    }
}

/// Whether a COTP DT TSDU is MMS (for telling an ISO-on-TCP flow's protocol).
pub fn is_mms(payload: &[u8]) -> bool {
    matches!(mms_in_dt(payload), Some(Dt::Mms(..)))
}

fn inspect_pdu(pdu: &Pdu<'_>, carrier: Carrier, ctx: &mut PduCtx<'_>) {
    let pdu_type = pdu.pdu_type();
    let invoke_id = pdu.invoke_id();
    let service = pdu.confirmed_service();
    let unconfirmed = pdu.unconfirmed_service();
    let error = pdu.error_class();
    let reject = pdu.reject_reason();
    let anomalies = pdu.anomalies();
    let stats = &mut ctx.stats.mms;
    stats.pdu.add(u32::from(u8::from(pdu_type)));
    match carrier {
        Carrier::Cotp => stats.on_cotp += 1,
        Carrier::Acse => stats.in_acse += 1,
        Carrier::Presentation => {}
    }
    match (pdu_type, service) {
        (PduType::ConfirmedRequest, Some(service)) => {
            stats.confirmed_service_request.add(service.0);
        }
        (PduType::ConfirmedResponse, Some(service)) => {
            stats.confirmed_service_response.add(service.0);
        }
        _ => {}
    }
    if let Some(service) = unconfirmed {
        stats.unconfirmed_service.add(u32::from(u8::from(service)));
    }
    if let Some((class, code)) = error {
        stats.error_class.add(histogram_pair(class, code));
    }
    if let Some((kind, code)) = reject {
        stats.reject_reason.add(histogram_pair(kind, code));
    }
    for bit in 0..16 {
        if anomalies.0 & (1 << bit) != 0 {
            stats.anomalies.add(bit);
        }
    }
    if !anomalies.is_empty() {
        ctx.protocol_error(
            Protocol::Mms,
            ProtocolErrorKind::SpecViolation,
            u32::from(anomalies.0),
        );
    }

    match pdu_type {
        PduType::ConfirmedRequest => {
            let code = service.map_or(u32::MAX, |s| s.0);
            if let Some(id) = invoke_id {
                ctx.state.request(id, code, ctx.ts_ns);
            }
            // Both MMS peers may issue requests (ICCP servers read their clients);
            // commands are reported client to server, so only the client's count.
            if let (Some(service), Direction::Request) = (service, ctx.direction) {
                ctx.command(Protocol::Mms, command_kind(service.kind()), service.0);
            }
        }
        PduType::ConfirmedResponse | PduType::ConfirmedError => {
            if let Some(id) = invoke_id {
                if let Some((_, latency)) = ctx.state.response(id, ctx.ts_ns) {
                    ctx.response_time(Protocol::Mms, latency);
                }
            }
            if let Some(identify) = pdu.identify() {
                for (field, value) in [
                    (IdentityField::Vendor, identify.vendor),
                    (IdentityField::Model, identify.model),
                    (IdentityField::Firmware, identify.revision),
                ] {
                    if let Some(value) = value {
                        ctx.identity(Protocol::Mms, field, value);
                    }
                }
            }
        }
        _ => {}
    }
    if let Some((class, code)) = error {
        ctx.protocol_error(
            Protocol::Mms,
            ProtocolErrorKind::ErrorReply,
            (class.min(0xFF) << 16) | code.min(0xFFFF),
        );
    } else if matches!(
        pdu_type,
        PduType::ConfirmedError | PduType::InitiateError | PduType::ConcludeError
    ) {
        ctx.protocol_error(Protocol::Mms, ProtocolErrorKind::ErrorReply, 0xFF_FFFF);
    }
    if let Some((kind, code)) = reject {
        ctx.protocol_error(
            Protocol::Mms,
            ProtocolErrorKind::Rejected,
            REJECT | (kind.min(0xFF) << 16) | code.min(0xFFFF),
        );
    }

    if ctx.events_enabled() {
        let service_name = match pdu_type {
            PduType::ConfirmedRequest => service.and_then(ConfirmedService::name),
            PduType::ConfirmedResponse => service.and_then(ConfirmedService::response_name),
            _ => unconfirmed.and_then(|s| s.name()),
        };
        let service_code = service
            .map(|s| s.0)
            .or_else(|| unconfirmed.map(|s| u32::from(u8::from(s))));
        ctx.event(EventBody::Mms(MmsEvent {
            pdu: pdu_type.name().unwrap_or("unknown"),
            invoke_id,
            service: service_name,
            service_code,
            error_class: error.map(|(class, _)| class),
            error_code: error.map(|(_, code)| code),
            reject_type: reject.map(|(kind, _)| kind),
            reject_code: reject.map(|(_, code)| code),
            carrier: match carrier {
                Carrier::Cotp => "cotp",
                Carrier::Presentation => "presentation",
                Carrier::Acse => "acse",
            },
        }));
    }
}

fn histogram_pair(a: u32, b: u32) -> u32 {
    crate::inspect::histogram::pair_key(
        u16::try_from(a).unwrap_or(u16::MAX),
        u16::try_from(b).unwrap_or(u16::MAX),
    )
}

/// ServiceError classes (ISO 9506-2 7.4, `mms.errorClass`).
pub fn error_class_name(class: u32) -> &'static str {
    match class {
        0 => "vmd-state",
        1 => "application-reference",
        2 => "definition",
        3 => "resource",
        4 => "service",
        5 => "service-preempt",
        6 => "time-resolution",
        7 => "access",
        8 => "initiate",
        9 => "conclude",
        10 => "cancel",
        11 => "file",
        12 => "others",
        _ => "unknown",
    }
}

/// Reject problem types (ISO 9506-2 7.6, `mms.rejectReason`).
pub fn reject_type_name(kind: u32) -> &'static str {
    match kind {
        1 => "confirmed-requestPDU",
        2 => "confirmed-responsePDU",
        3 => "confirmed-errorPDU",
        4 => "unconfirmedPDU",
        5 => "pdu-error",
        6 => "cancel-requestPDU",
        7 => "cancel-responsePDU",
        8 => "cancel-errorPDU",
        9 => "conclude-requestPDU",
        10 => "conclude-responsePDU",
        11 => "conclude-errorPDU",
        _ => "unknown",
    }
}
