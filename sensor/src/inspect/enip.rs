//! EtherNet/IP and CIP inspection: the worker's statistics, protocol events, commands,
//! identities and protocol errors, read from the [`otsensor_wire::enip`] views.

use otsensor_wire::bytes::{le16, le32};
use otsensor_wire::cip;
use otsensor_wire::enip::*;
use otsensor_wire::vendors::{cip_vendor, vendor_text};
use otsensor_wire::{Direction, Protocol};

use crate::inspect::histogram::{pair, pair_key, Histogram};
use crate::inspect::{CipEvent, EnipEvent, EventBody, PduCtx};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Deepest CIP nesting walked (MSP in Unconnected Send in MSP ...): bounds the
/// recursion on hostile input. tshark's captures show at most depth 2.
const MAX_CIP_DEPTH: u8 = 4;

/// Requests remembered per worker for giving replies the class their request
/// addressed (tshark shows it as the generated `[Request Path]` of a reply).
const REMEMBERED_REQUESTS: usize = 256;
/// Multiple Service Packet items whose request class is remembered.
const REMEMBERED_MSP_ITEMS: usize = 32;

/// Class 0xA1 of Rockwell controllers, seen in enip-cl5000-firmware-change.pcap taking
/// the firmware image: one 0x4B, 5243 0x4D requests carrying ~3 MB in chunks, one
/// 0x51, then a Reset (0x05) of the Identity object. Only these three services on this
/// class are classified as firmware update.
const FIRMWARE_CLASS: u32 = 0xA1;
const FIRMWARE_SERVICES: [u8; 3] = [0x4B, 0x4D, 0x51];

/// What a reply needs to know about its request.
#[derive(Clone, Copy, Debug, Default)]
struct RememberedRequest {
    flow_id: u64,
    id: u32,
    used: bool,
    ts_ns: u64,
    /// Class of the outermost request (depth 0).
    class: Option<u32>,
    /// Class the request finally addresses (inside an Unconnected Send).
    effective_class: Option<u32>,
    /// Classes of the Multiple Service Packet items, in order.
    item_count: u8,
    item_classes: [Option<u32>; REMEMBERED_MSP_ITEMS],
}

/// A 4-way set-associative table of recent requests: a request goes to a free slot
/// of its set, else replaces the oldest there (whose reply then carries no class).
/// Pipelined Logix clients keep dozens of requests outstanding.
#[derive(Clone, Debug)]
struct RequestMemory {
    slots: Box<[RememberedRequest]>,
}

impl Default for RequestMemory {
    fn default() -> Self {
        RequestMemory {
            slots: vec![RememberedRequest::default(); REMEMBERED_REQUESTS].into_boxed_slice(),
        }
    }
}

const WAYS: usize = 4;

impl RequestMemory {
    fn set_of(&mut self, flow_id: u64, id: u32) -> &mut [RememberedRequest] {
        let mixed = (flow_id ^ u64::from(id)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let set = (mixed >> 40) as usize % (REMEMBERED_REQUESTS / WAYS);
        self.slots
            .get_mut(set * WAYS..set * WAYS + WAYS)
            .unwrap_or(&mut [])
    }

    fn remember(&mut self, request: RememberedRequest) {
        let set = self.set_of(request.flow_id, request.id);
        let index = set
            .iter()
            .position(|r| !r.used || (r.flow_id == request.flow_id && r.id == request.id))
            .or_else(|| (0..set.len()).min_by_key(|&i| set.get(i).map_or(u64::MAX, |r| r.ts_ns)));
        if let Some(slot) = index.and_then(|i| set.get_mut(i)) {
            *slot = request;
        }
    }

    fn take(&mut self, flow_id: u64, id: u32) -> Option<RememberedRequest> {
        let slot = self
            .set_of(flow_id, id)
            .iter_mut()
            .find(|r| r.used && r.flow_id == flow_id && r.id == id)?;
        slot.used = false;
        Some(*slot)
    }
}

/// Per-worker EtherNet/IP statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`): `command`, `status`, `list_identity_replies`, and
/// the `cip` histograms (`service` of requests, `service_response`, `general_status`,
/// `error_service_status` as `svc/status`, `class`, `depth`, `io`) over every CIP
/// message, embedded ones included.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub command: Histogram,
    pub status: Histogram,
    /// ListIdentity messages carrying identity items (key 1 = "true").
    pub list_identity_replies: Histogram,
    pub cip_service: Histogram,
    pub cip_service_response: Histogram,
    pub cip_general_status: Histogram,
    /// `service/status` pairs of failed replies.
    pub cip_error_service_status: Histogram,
    pub cip_class: Histogram,
    pub cip_depth: Histogram,
    /// Class-1 I/O datagrams (key 1 = "true").
    pub cip_io: Histogram,
    /// Not statistics: recent requests, for the class of their replies.
    requests: RequestMemory,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.command.merge(&other.command);
        self.status.merge(&other.status);
        self.list_identity_replies
            .merge(&other.list_identity_replies);
        self.cip_service.merge(&other.cip_service);
        self.cip_service_response.merge(&other.cip_service_response);
        self.cip_general_status.merge(&other.cip_general_status);
        self.cip_error_service_status
            .merge(&other.cip_error_service_status);
        self.cip_class.merge(&other.cip_class);
        self.cip_depth.merge(&other.cip_depth);
        self.cip_io.merge(&other.cip_io);
    }

    /// Non-empty histograms by their summary names; the CIP ones in a `cip` object,
    /// as tshark's summary nests them.
    pub fn summary(&self) -> serde_json::Value {
        fn put(
            out: &mut serde_json::Map<String, serde_json::Value>,
            name: &str,
            histogram: &Histogram,
            map: BTreeMap<String, u64>,
        ) {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        }
        let truth = |_| "true".to_owned();
        let mut out = serde_json::Map::new();
        put(
            &mut out,
            "command",
            &self.command,
            self.command.to_decimal_map(),
        );
        put(
            &mut out,
            "status",
            &self.status,
            self.status.to_decimal_map(),
        );
        put(
            &mut out,
            "list_identity_replies",
            &self.list_identity_replies,
            self.list_identity_replies.to_map(truth),
        );
        let mut cip = serde_json::Map::new();
        put(
            &mut cip,
            "service",
            &self.cip_service,
            self.cip_service.to_decimal_map(),
        );
        put(
            &mut cip,
            "service_response",
            &self.cip_service_response,
            self.cip_service_response.to_decimal_map(),
        );
        put(
            &mut cip,
            "general_status",
            &self.cip_general_status,
            self.cip_general_status.to_decimal_map(),
        );
        put(
            &mut cip,
            "error_service_status",
            &self.cip_error_service_status,
            self.cip_error_service_status.to_map(pair),
        );
        put(
            &mut cip,
            "class",
            &self.cip_class,
            self.cip_class.to_decimal_map(),
        );
        put(
            &mut cip,
            "depth",
            &self.cip_depth,
            self.cip_depth.to_decimal_map(),
        );
        put(&mut cip, "io", &self.cip_io, self.cip_io.to_map(truth));
        if !cip.is_empty() {
            out.insert("cip".to_owned(), serde_json::Value::Object(cip));
        }
        serde_json::Value::Object(out)
    }
}

/// The command code of a CIP request: `(class << 8) | service`, class 0 when the path
/// names none (symbolic Logix tag paths). Services above 0x4A are class specific, so
/// the class is part of the code.
pub fn cip_command_code(class: Option<u32>, service: u8) -> u32 {
    (class.unwrap_or(0) << 8) | u32::from(service)
}

/// The object a generic read (Get_Attribute_Single/List/All, Find_Next_Object_Instance,
/// Get_Member) addresses, for object sweeps: service, class, instance and attribute
/// folded into one key (class to 16 bits, instance to 24, attribute to 16). Class
/// specific services (Logix tag reads) and paths without a class are not objects here.
fn cip_object(service: u8, target: &cip::Target) -> Option<u64> {
    let class = target.class?;
    if service >= 0x4B || cip::classify(Some(class), service) != cip::CipKind::Read {
        return None;
    }
    let instance = u64::from(target.instance.unwrap_or(0) & 0xff_ffff);
    let attribute = u64::from(target.attribute.unwrap_or(0) & 0xffff);
    Some(
        (u64::from(service) << 56)
            | (u64::from(class & 0xffff) << 40)
            | (instance << 16)
            | attribute,
    )
}

/// Encapsulation-level command codes, kept apart from CIP codes.
const ENCAPSULATION_CODE: u32 = 0x1_0000;

/// The command kind of a CIP request, for the analyzer.
fn cip_command_kind(class: Option<u32>, service: u8) -> CommandKind {
    if class == Some(FIRMWARE_CLASS) && FIRMWARE_SERVICES.contains(&service) {
        return CommandKind::Firmware;
    }
    match cip::classify(class, service) {
        cip::CipKind::Read => CommandKind::Read,
        cip::CipKind::Write => CommandKind::Write,
        cip::CipKind::Reset => CommandKind::Restart,
        cip::CipKind::Start => CommandKind::Start,
        cip::CipKind::Stop => CommandKind::Stop,
        cip::CipKind::Program => CommandKind::Program,
        cip::CipKind::Other => CommandKind::Other,
    }
}

/// The command kind of an encapsulation command that carries no CIP request.
fn encapsulation_command_kind(command: Command) -> Option<CommandKind> {
    match command {
        Command::SendRRData | Command::SendUnitData => None,
        Command::ListIdentity | Command::ListServices | Command::ListInterfaces => {
            Some(CommandKind::Discovery)
        }
        _ => Some(CommandKind::Other),
    }
}

/// The request/reply matching id: the sender context (folded to 32 bits) for
/// unconnected messaging, the class-3 sequence count for connected messaging.
fn match_id(pdu: &Encapsulation<'_>, payload: &CipPayload<'_>) -> u32 {
    match payload.sequence_count {
        Some(sequence) => (1 << 31) | u32::from(sequence),
        None => {
            let context = pdu.sender_context();
            le32(context, 0).unwrap_or(0) ^ le32(context, 4).unwrap_or(0)
        }
    }
}

/// The CIP messages of one PDU being walked: the event under construction.
struct Walk {
    event: Option<EnipEvent>,
}

impl Walk {
    fn record(&mut self, message: CipEvent) {
        if let Some(event) = self.event.as_mut() {
            if event.cip.try_push(message).is_err() {
                event.cip_omitted = event.cip_omitted.saturating_add(1);
            }
        }
    }
}

/// Counts a request and what it carries; returns the class it finally addresses.
fn walk_request(
    request: cip::Request<'_>,
    depth: u8,
    walk: &mut Walk,
    memory: &mut RememberedRequest,
    ctx: &mut PduCtx<'_>,
) -> Option<u32> {
    let service = request.service();
    let target = request.target();
    let stats = &mut ctx.stats.enip;
    stats.cip_service.add(u32::from(service));
    stats.cip_depth.add(u32::from(depth));
    if let Some(class) = target.class {
        stats.cip_class.add(class);
    }
    walk.record(CipEvent {
        service,
        class: target.class,
        instance: target.instance,
        attribute: target.attribute,
        general_status: None,
    });
    ctx.command(
        Protocol::Enip,
        cip_command_kind(target.class, service),
        cip_command_code(target.class, service),
    );
    if let Some(object) = cip_object(service, &target) {
        ctx.object_access(Protocol::Enip, object);
    }
    if depth >= MAX_CIP_DEPTH {
        return target.class;
    }
    if let Some(items) = request.multiple_service_packet() {
        let first_msp = memory.item_count == 0;
        for (index, item) in items.enumerate() {
            let Ok(inner) = cip::Request::new_checked(item) else {
                continue;
            };
            let class = walk_request(inner, depth + 1, walk, memory, ctx);
            if first_msp {
                if let Some(slot) = memory.item_classes.get_mut(index) {
                    *slot = class;
                    memory.item_count = memory.item_count.saturating_add(1);
                }
            }
        }
        return target.class;
    }
    if let Some(send) = request.unconnected_send() {
        if let Ok(inner) = send.request() {
            return walk_request(inner, depth + 1, walk, memory, ctx);
        }
    }
    target.class
}

/// Counts a reply and the replies it carries; `class` is its request's class (if the
/// request was seen).
fn walk_response(
    response: cip::Response<'_>,
    depth: u8,
    class: Option<u32>,
    request: Option<&RememberedRequest>,
    walk: &mut Walk,
    ctx: &mut PduCtx<'_>,
) {
    let service = response.service();
    let status = response.general_status();
    let stats = &mut ctx.stats.enip;
    stats.cip_service_response.add(u32::from(service));
    stats.cip_general_status.add(u32::from(status));
    stats.cip_depth.add(u32::from(depth));
    if let Some(class) = class {
        stats.cip_class.add(class);
    }
    if status != cip::status::SUCCESS {
        stats
            .cip_error_service_status
            .add(pair_key(u16::from(service), u16::from(status)));
        // Partial transfer (0x06) and embedded service error (0x1E) are reported
        // too; the analyzer decides by configuration whether they matter.
        let code = (u32::from(service) << 8) | u32::from(status);
        ctx.protocol_error(Protocol::Enip, ProtocolErrorKind::ErrorReply, code);
    }
    walk.record(CipEvent {
        service: service | cip::REPLY_BIT,
        class,
        instance: None,
        attribute: None,
        general_status: Some(status),
    });
    if depth == 0
        && service == cip::service::GET_ATTRIBUTES_ALL
        && status == cip::status::SUCCESS
        && request.and_then(|r| r.effective_class) == Some(cip::class::IDENTITY)
    {
        report_identity_attributes(response.data(), ctx);
    }
    // Engineering tools poll a controller's state with Get_Attribute_List, also
    // inside Multiple Service Packets.
    if service == cip::service::GET_ATTRIBUTE_LIST
        && status == cip::status::SUCCESS
        && class == Some(cip::class::IDENTITY)
    {
        report_identity_attribute_list(response.data(), ctx);
    }
    if depth >= MAX_CIP_DEPTH {
        return;
    }
    if let Some(items) = response.multiple_service_packet() {
        for (index, item) in items.enumerate() {
            let Ok(inner) = cip::Response::new_checked(item) else {
                continue;
            };
            let class = request
                .filter(|r| index < usize::from(r.item_count))
                .and_then(|r| r.item_classes.get(index).copied().flatten());
            walk_response(inner, depth + 1, class, None, walk, ctx);
        }
    }
}

/// Short decimal/hex/version texts for identity observations, on the stack.
type Text = arrayvec::ArrayString<24>;

fn text(args: std::fmt::Arguments<'_>) -> Text {
    let mut out = Text::new();
    // Values are at most 10 digits plus a prefix: they always fit.
    let _ = out.write_fmt(args);
    out
}

/// Reports the identity attributes a device states about itself (ListIdentity item
/// or Identity object Get_Attributes_All reply; same layout from vendor id on).
fn report_identity(
    vendor: u16,
    product_code: u16,
    revision: (u8, u8),
    serial: u32,
    name: &[u8],
    ctx: &mut PduCtx<'_>,
) {
    // The ODVA name beside the raw id, or the id alone when the table has no name.
    let vendor_name = vendor_text(cip_vendor(vendor), u32::from(vendor));
    ctx.identity(
        Protocol::Enip,
        IdentityField::Vendor,
        vendor_name.as_bytes(),
    );
    let fields = [
        (
            IdentityField::ProductCode,
            text(format_args!("{product_code}")),
        ),
        (
            IdentityField::Firmware,
            text(format_args!("{}.{}", revision.0, revision.1)),
        ),
        (IdentityField::Serial, text(format_args!("0x{serial:08x}"))),
    ];
    for (field, value) in fields {
        ctx.identity(Protocol::Enip, field, value.as_bytes());
    }
    ctx.identity(Protocol::Enip, IdentityField::Product, name);
}

/// Identity object instance attributes 1-7 (Vol. 1 5-2.2.1): vendor id, device type,
/// product code, revision (major, minor), status, serial number, product name
/// (short string).
fn report_identity_attributes(data: &[u8], ctx: &mut PduCtx<'_>) {
    let (Some(vendor), Some(product_code), Some(&major), Some(&minor), Some(serial)) = (
        le16(data, 0),
        le16(data, 4),
        data.get(6),
        data.get(7),
        le32(data, 10),
    ) else {
        return;
    };
    let name_len = usize::from(data.get(14).copied().unwrap_or(0));
    let name = data.get(15..15 + name_len).unwrap_or(&[]);
    report_identity(vendor, product_code, (major, minor), serial, name, ctx);
    if let (Some(device_type), Some(status)) = (le16(data, 2), le16(data, 8)) {
        report_controller_mode(device_type, status, ctx);
    }
}

/// The device type and status of an Identity Get_Attribute_List reply (Vol. 1
/// attribute count, then per attribute its id, status and, when the status is
/// success, its value). The walk stops at an attribute whose size it does not know.
fn report_identity_attribute_list(data: &[u8], ctx: &mut PduCtx<'_>) {
    const MAX_ATTRIBUTES: u16 = 32;
    let Some(count) = le16(data, 0) else {
        return;
    };
    let (mut device_type, mut status, mut at) = (None, None, 2);
    for _ in 0..count.min(MAX_ATTRIBUTES) {
        let (Some(id), Some(attribute_status)) = (le16(data, at), le16(data, at + 2)) else {
            break;
        };
        at += 4;
        if attribute_status != 0 {
            continue;
        }
        // Sizes of attributes 1-10 (Vol. 1 5-2.2.1): 7 is a SHORT_STRING.
        let size = match id {
            1..=5 | 9 => 2,
            6 => 4,
            7 => 1 + usize::from(data.get(at).copied().unwrap_or(0)),
            8 | 10 => 1,
            _ => break,
        };
        match id {
            2 => device_type = le16(data, at),
            5 => status = le16(data, at),
            _ => {}
        }
        at += size;
    }
    if let (Some(device_type), Some(status)) = (device_type, status) {
        report_controller_mode(device_type, status, ctx);
    }
}

/// CIP device type of a programmable logic controller (Vol. 1 Table 6-7.1): the only
/// devices whose Identity status says whether a program runs.
const DEVICE_TYPE_PLC: u16 = 0x0E;

/// The mode a controller's Identity status word shows (Vol. 1 5-2.2.1.5): a major
/// fault (bits 10-11) first, then the extended device status (bits 4-7): 6 "at least
/// one I/O connection in run mode", 7 "I/O connections established, all idle", 1
/// firmware update in progress, 5 major fault. The other extended states describe
/// connections, not the controller, and report no mode.
fn controller_mode(status: u16) -> Option<&'static str> {
    const MAJOR_RECOVERABLE_FAULT: u16 = 0x0400;
    const MAJOR_UNRECOVERABLE_FAULT: u16 = 0x0800;
    if status & MAJOR_UNRECOVERABLE_FAULT != 0 {
        return Some("MAJOR FAULT (unrecoverable)");
    }
    if status & MAJOR_RECOVERABLE_FAULT != 0 {
        return Some("MAJOR FAULT (recoverable)");
    }
    match (status >> 4) & 0x0F {
        1 => Some("FIRMWARE UPDATE"),
        5 => Some("MAJOR FAULT"),
        6 => Some("RUN"),
        7 => Some("IDLE"),
        _ => None,
    }
}

fn report_controller_mode(device_type: u16, status: u16, ctx: &mut PduCtx<'_>) {
    if device_type != DEVICE_TYPE_PLC {
        return;
    }
    if let Some(mode) = controller_mode(status) {
        ctx.identity(Protocol::Enip, IdentityField::Mode, mode.as_bytes());
    }
}

fn is_io_flow(flow: &crate::inspect::FlowInfo) -> bool {
    flow.ip_protocol == 17 && (flow.server.1 == 2222 || flow.client.1 == 2222)
}

/// Inspects one EtherNet/IP PDU (an encapsulation message, or a class-1 I/O
/// datagram on UDP 2222): statistics over it and every CIP message it carries,
/// request/reply matching, observations (CIP and encapsulation commands, identity
/// from ListIdentity and Identity Get_Attributes_All replies, CIP and encapsulation
/// error statuses) and the EVE event (not for cyclic class-1 I/O).
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    if is_io_flow(ctx.flow) && !looks_like(pdu) {
        if IoPacket::parse(pdu).is_some() {
            ctx.count(Protocol::Enip);
            ctx.stats.enip.cip_io.add(1);
        } else {
            ctx.malformed(Protocol::Enip);
        }
        return;
    }
    let encapsulation = match Encapsulation::new_checked(pdu) {
        Ok(encapsulation) => encapsulation,
        Err(_) => {
            ctx.malformed(Protocol::Enip);
            return;
        }
    };
    ctx.count(Protocol::Enip);
    let command = encapsulation.command();
    let status = encapsulation.status();
    let stats = &mut ctx.stats.enip;
    stats.command.add(u32::from(command.code()));
    stats.status.add(status);
    if status != 0 {
        ctx.protocol_error(
            Protocol::Enip,
            ProtocolErrorKind::ErrorReply,
            ENCAPSULATION_CODE | (status & 0xFFFF),
        );
    }
    let mut walk = Walk {
        event: ctx.events_enabled().then(|| EnipEvent {
            command: command.code(),
            session: encapsulation.session_handle(),
            status,
            cip: arrayvec::ArrayVec::new(),
            cip_omitted: 0,
        }),
    };
    if command == Command::ListIdentity {
        let mut replied = false;
        for item in encapsulation.list_identity() {
            replied = true;
            report_identity(
                item.vendor_id(),
                item.product_code(),
                item.revision(),
                item.serial_number(),
                item.product_name(),
                ctx,
            );
            report_controller_mode(item.device_type(), item.status(), ctx);
        }
        if replied {
            ctx.stats.enip.list_identity_replies.add(1);
        }
    }
    if ctx.direction == Direction::Request {
        if let Some(kind) = encapsulation_command_kind(command) {
            ctx.command(
                Protocol::Enip,
                kind,
                ENCAPSULATION_CODE | u32::from(command.code()),
            );
        }
    }
    if let Some(payload) = encapsulation.cip() {
        let id = match_id(&encapsulation, &payload);
        match payload.parse() {
            Ok(cip::Message::Request(request)) => {
                let mut memory = RememberedRequest {
                    flow_id: ctx.flow.flow_id,
                    id,
                    used: true,
                    ts_ns: ctx.ts_ns,
                    class: request.target().class,
                    ..RememberedRequest::default()
                };
                memory.effective_class = walk_request(request, 0, &mut walk, &mut memory, ctx);
                let code = cip_command_code(memory.class, request.service());
                ctx.state.request(id, code, ctx.ts_ns);
                ctx.stats.enip.requests.remember(memory);
            }
            Ok(cip::Message::Response(response)) => {
                if let Some((_, latency)) = ctx.state.response(id, ctx.ts_ns) {
                    ctx.response_time(Protocol::Enip, latency);
                }
                let request = ctx.stats.enip.requests.take(ctx.flow.flow_id, id);
                let class = request.and_then(|r| r.class);
                walk_response(response, 0, class, request.as_ref(), &mut walk, ctx);
            }
            Err(_) => {}
        }
    }
    if let Some(event) = walk.event {
        ctx.event(EventBody::Enip(event));
    }
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod inspect_tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crossbeam_channel::Receiver;

    use super::*;
    use crate::inspect::test_capture::{commands, errors, hex, identities, objects};
    use crate::inspect::{
        AppState, FlowInfo, Outputs, ProtocolStats, RecentCache, MAX_CIP_PER_EVENT,
    };
    use crate::observe::Observation;
    use crate::observe::{Delivery, ObservationSink};
    use crate::output::eve::{EveRecord, EventSink};

    // enip-cip-example-io-listidentity.pcap frame 372 (ListIdentity reply) and
    // enip-cl5000-reboot-restart.pcap frame 8 (Unconnected Send carrying Get Attributes
    // All to Identity instance 1); see the dissector tests above.
    const LIST_IDENTITY_REPLY: &str = "63003300000000000000000000000000c1debed10000000001000c002d0001000002af120a0101a4000000000000000001000c003a00040330008e4d52000b313735362d454e42542f4103";
    const SEND_RR_DATA: &str = "6f0024000001021100000000b39b02002008e10000000000000000002000020000000000b200140052022006240107f9060001022001240101000100";
    // enip-cip-example-io-listidentity.pcap frame 377: class-1 I/O on UDP 2222.
    const IO: &str = "02000280080003064b00db943f00b1000600a587e80f0300";
    // CIP parts (cip.rs fixtures): MSP of 11 Get Attribute List requests (frame 2 of
    // the io-listidentity capture), Stop on class 0x8E (reboot-restart frame 399).
    const MSP_REQUEST: &str = "0a02200224010b00180022002c0036004c005800640072007c008a0094000302200124010100050003022069240001000b0003022073240101000200030220ac240107000100020003000500070009000a000303206825002024010013000302207024010200120013000302208e240103000300080010000302206924000100090003022068240003000f0018001900030220772401010002000302208b240101000600";
    const STOP: &str = "0702208e2401";
    const CONTEXT: [u8; 8] = [0xB3, 0x9B, 0x02, 0x00, 0x20, 0x08, 0xE1, 0x00];

    /// A SendRRData message carrying `cip` in an unconnected data item.
    fn send_rr_data(cip: &[u8], context: [u8; 8], status: u32) -> Vec<u8> {
        let mut cpf = vec![0, 0, 0, 0, 0x0A, 0, 2, 0, 0, 0, 0, 0, 0xB2, 0];
        cpf.extend_from_slice(&(cip.len() as u16).to_le_bytes());
        cpf.extend_from_slice(cip);
        let mut pdu = vec![0x6F, 0];
        pdu.extend_from_slice(&(cpf.len() as u16).to_le_bytes());
        pdu.extend_from_slice(&0x1102_0100u32.to_le_bytes());
        pdu.extend_from_slice(&status.to_le_bytes());
        pdu.extend_from_slice(&context);
        pdu.extend_from_slice(&[0; 4]);
        pdu.extend_from_slice(&cpf);
        pdu
    }

    struct Harness {
        stats: ProtocolStats,
        state: AppState,
        recent: RecentCache,
        sink: ObservationSink,
        observations: Receiver<crate::observe::Stamped>,
        events: Option<EventSink>,
        records: Receiver<EveRecord>,
        flow: FlowInfo,
    }

    impl Harness {
        fn new(server_port: u16, ip_protocol: u8, events: bool) -> Harness {
            let (tx, observations) = crossbeam_channel::bounded(1024);
            let (etx, records) = crossbeam_channel::bounded(1024);
            Harness {
                stats: ProtocolStats::default(),
                state: AppState::default(),
                recent: RecentCache::new(1024, 1_000_000_000),
                sink: ObservationSink::new(tx, Delivery::Block),
                observations,
                events: events.then(|| EventSink::new(etx, Delivery::Block)),
                records,
                flow: FlowInfo {
                    flow_id: 7,
                    client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 50000),
                    server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), server_port),
                    client_mac: None,
                    server_mac: None,
                    ip_protocol,
                    vlan: 0,
                },
            }
        }

        fn tcp() -> Harness {
            Harness::new(44818, 6, false)
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
                    events: self.events.as_mut().map(|e| e as _),
                },
            };
            inspect(pdu, &mut ctx);
            self.observations
                .try_iter()
                .map(|s| s.observation)
                .collect()
        }

        fn enip(&self) -> &Stats {
            &self.stats.enip
        }
    }

    #[test]
    fn unconnected_send_counts_both_levels_and_reports_commands() {
        let mut h = Harness::tcp();
        let observations = h.run(&hex(SEND_RR_DATA), Direction::Request, 1_000);
        assert_eq!(h.stats.pdus[Protocol::Enip.index()], 1);
        let stats = h.enip();
        assert_eq!(stats.command.get(0x6F), 1);
        assert_eq!(stats.status.get(0), 1);
        assert_eq!(stats.cip_service.get(0x52), 1);
        assert_eq!(stats.cip_service.get(0x01), 1);
        assert_eq!(stats.cip_depth.get(0), 1);
        assert_eq!(stats.cip_depth.get(1), 1);
        assert_eq!(stats.cip_class.get(6), 1);
        assert_eq!(stats.cip_class.get(1), 1);
        assert_eq!(
            commands(&observations),
            [(CommandKind::Other, 0x0652), (CommandKind::Read, 0x0101)]
        );

        // The reply (Get Attributes All reply of the Identity object, same context:
        // vendor 1, device type 0x0E, product code 0x6A, revision 20.11, status,
        // serial 0x00C0FFEE, "1769-L23E") takes the outer request's class, as tshark's generated request path does,
        // and its attributes are the device's identity.
        let mut reply = hex("8100000001000e006a00140b6000eeffc000");
        reply.push(9);
        reply.extend_from_slice(b"1769-L23E");
        let observations = h.run(
            &send_rr_data(&reply, CONTEXT, 0),
            Direction::Response,
            3_000,
        );
        let stats = h.enip();
        assert_eq!(stats.cip_service_response.get(0x01), 1);
        assert_eq!(stats.cip_general_status.get(0), 1);
        assert_eq!(stats.cip_class.get(6), 2);
        assert_eq!(h.stats.matched_responses[Protocol::Enip.index()], 1);
        assert_eq!(h.stats.response_time_ns_sum[Protocol::Enip.index()], 2_000);
        assert_eq!(
            identities(&observations),
            [
                (
                    IdentityField::Vendor,
                    "Rockwell Automation/Allen-Bradley (1)".to_owned()
                ),
                (IdentityField::ProductCode, "106".to_owned()),
                (IdentityField::Firmware, "20.11".to_owned()),
                (IdentityField::Serial, "0x00c0ffee".to_owned()),
                (IdentityField::Product, "1769-L23E".to_owned()),
                // Status 0x0060: extended device status 6, an I/O connection in run.
                (IdentityField::Mode, "RUN".to_owned()),
            ]
        );
        let summary = h.enip().summary();
        assert_eq!(summary["cip"]["service"]["82"], 1);
        assert_eq!(summary["cip"]["depth"]["1"], 1);
        assert_eq!(summary["command"]["111"], 2);
        assert!(summary["cip"].get("error_service_status").is_none());
    }

    #[test]
    fn generic_reads_report_the_object_they_address() {
        let mut h = Harness::tcp();
        // Get_Attribute_Single of class 0x64, instance 1, attribute 3 (CIP Vol 1 4-4.3).
        let get = hex("0e03206424013003");
        let observations = h.run(&send_rr_data(&get, CONTEXT, 0), Direction::Request, 1);
        assert_eq!(
            objects(&observations),
            [(0x0e_u64 << 56) | (0x64 << 40) | (1 << 16) | 3]
        );
        // Inside an Unconnected Send: Get Attributes All of Identity instance 1.
        let observations = h.run(&hex(SEND_RR_DATA), Direction::Request, 2);
        assert_eq!(
            objects(&observations),
            [(0x01_u64 << 56) | (0x01 << 40) | (1 << 16)]
        );
        // Neither a stop, nor a symbolic Read Tag, is an object read.
        let observations = h.run(&send_rr_data(&hex(STOP), [1; 8], 0), Direction::Request, 3);
        assert!(objects(&observations).is_empty());
        let read_tag = hex("4c039103414243000100");
        let observations = h.run(&send_rr_data(&read_tag, [2; 8], 0), Direction::Request, 4);
        assert!(objects(&observations).is_empty());
    }

    #[test]
    fn stop_start_reset_and_firmware_kinds() {
        let mut h = Harness::tcp();
        let observations = h.run(&send_rr_data(&hex(STOP), CONTEXT, 0), Direction::Request, 1);
        assert_eq!(commands(&observations), [(CommandKind::Stop, 0x8E07)]);
        let start = hex("0602208e2401");
        let observations = h.run(&send_rr_data(&start, [1; 8], 0), Direction::Request, 2);
        assert_eq!(commands(&observations), [(CommandKind::Start, 0x8E06)]);
        let reset = hex("050220012401");
        let observations = h.run(&send_rr_data(&reset, [2; 8], 0), Direction::Request, 3);
        assert_eq!(commands(&observations), [(CommandKind::Restart, 0x0105)]);
        let transfer = hex("4d0220a12401aabbccdd");
        let observations = h.run(&send_rr_data(&transfer, [3; 8], 0), Direction::Request, 4);
        assert_eq!(commands(&observations), [(CommandKind::Firmware, 0xA14D)]);
        // Read Tag with a symbolic path: class 0.
        let read_tag = hex("4c0391034142430001 00".replace(' ', "").as_str());
        let observations = h.run(&send_rr_data(&read_tag, [4; 8], 0), Direction::Request, 5);
        assert_eq!(commands(&observations), [(CommandKind::Read, 0x004C)]);
    }

    #[test]
    fn error_replies() {
        let mut h = Harness::tcp();
        // Get Attribute List to class 0x8B, answered with status 0x05.
        let request = hex("030220 8b240101000800".replace(' ', "").as_str());
        h.run(&send_rr_data(&request, CONTEXT, 0), Direction::Request, 1);
        let observations = h.run(
            &send_rr_data(&hex("830005010000"), CONTEXT, 0),
            Direction::Response,
            2,
        );
        assert_eq!(
            errors(&observations),
            [(ProtocolErrorKind::ErrorReply, 0x0305)]
        );
        let stats = h.enip();
        assert_eq!(stats.cip_general_status.get(5), 1);
        assert_eq!(stats.cip_error_service_status.get(pair_key(3, 5)), 1);
        assert_eq!(stats.cip_class.get(0x8B), 2);
        assert_eq!(h.enip().summary()["cip"]["error_service_status"]["3/5"], 1);
        // Partial transfer (0x06) is still an error reply, counted and reported.
        let observations = h.run(
            &send_rr_data(&hex("cc000600aabb"), [9; 8], 0),
            Direction::Response,
            3,
        );
        assert_eq!(
            errors(&observations),
            [(ProtocolErrorKind::ErrorReply, 0x4C06)]
        );
        // Encapsulation status 0x64 (invalid session handle).
        let mut bad_session = hex(SEND_RR_DATA);
        bad_session[8] = 0x64;
        let observations = h.run(&bad_session, Direction::Response, 4);
        assert!(errors(&observations).contains(&(ProtocolErrorKind::ErrorReply, 0x1_0064)));
        assert_eq!(h.enip().status.get(0x64), 1);
    }

    #[test]
    fn multiple_service_packet_items_get_their_request_classes() {
        let mut h = Harness::tcp();
        let observations = h.run(
            &send_rr_data(&hex(MSP_REQUEST), CONTEXT, 0),
            Direction::Request,
            1,
        );
        let stats = h.enip();
        assert_eq!(stats.cip_service.get(0x0A), 1);
        assert_eq!(stats.cip_service.get(0x03), 11);
        assert_eq!(stats.cip_depth.get(1), 11);
        assert_eq!(stats.cip_class.get(2), 1);
        assert_eq!(stats.cip_class.get(0x68), 2);
        // One observation per distinct (kind, code): the MSP itself plus the nine
        // distinct classes its items read.
        assert_eq!(commands(&observations).len(), 10);
        // A reply of 11 successful items: offsets 24.. step 4.
        let mut reply = hex("8a000000 0b00".replace(' ', "").as_str());
        for i in 0..11u16 {
            reply.extend_from_slice(&(24 + 4 * i).to_le_bytes());
        }
        for _ in 0..11 {
            reply.extend_from_slice(&hex("83000000"));
        }
        h.run(&send_rr_data(&reply, CONTEXT, 0), Direction::Response, 2);
        let stats = h.enip();
        assert_eq!(stats.cip_service_response.get(0x0A), 1);
        assert_eq!(stats.cip_service_response.get(0x03), 11);
        assert_eq!(stats.cip_general_status.get(0), 12);
        assert_eq!(stats.cip_depth.get(1), 22);
        assert_eq!(stats.cip_class.get(2), 2);
        assert_eq!(stats.cip_class.get(0x68), 4);
        assert_eq!(stats.cip_class.get(0x8E), 2);
    }

    #[test]
    fn list_identity_reply_reports_the_sender_identity() {
        let mut h = Harness::new(44818, 17, false);
        let observations = h.run(&hex(LIST_IDENTITY_REPLY), Direction::Response, 1);
        assert_eq!(h.enip().list_identity_replies.get(1), 1);
        assert_eq!(h.enip().command.get(0x63), 1);
        assert_eq!(
            identities(&observations),
            [
                (
                    IdentityField::Vendor,
                    "Rockwell Automation/Allen-Bradley (1)".to_owned()
                ),
                (IdentityField::ProductCode, "58".to_owned()),
                (IdentityField::Firmware, "4.3".to_owned()),
                (IdentityField::Serial, "0x00524d8e".to_owned()),
                (IdentityField::Product, "1756-ENBT/A".to_owned()),
            ]
        );
        let device = observations.iter().find_map(|o| match o {
            Observation::Identity { device, .. } => Some(*device),
            _ => None,
        });
        assert_eq!(device, Some(h.flow.server.0));
        assert_eq!(h.enip().summary()["list_identity_replies"]["true"], 1);
        // The request (no items) is discovery, not a reply.
        let request = &hex(LIST_IDENTITY_REPLY)[..24];
        let mut request = request.to_vec();
        request[2] = 0;
        let observations = h.run(&request, Direction::Request, 2);
        assert_eq!(
            commands(&observations),
            [(CommandKind::Discovery, 0x1_0063)]
        );
        assert_eq!(h.enip().list_identity_replies.get(1), 1);
    }

    #[test]
    fn class1_io_and_malformed() {
        let mut h = Harness::new(2222, 17, true);
        h.run(&hex(IO), Direction::Request, 1);
        assert_eq!(h.stats.pdus[Protocol::Enip.index()], 1);
        assert_eq!(h.enip().cip_io.get(1), 1);
        assert!(h.enip().command.is_empty());
        assert_eq!(h.enip().summary()["cip"]["io"]["true"], 1);
        assert_eq!(h.records.try_iter().count(), 0);
        let observations = h.run(&[1, 0, 2], Direction::Request, 2);
        assert_eq!(h.stats.malformed[Protocol::Enip.index()], 1);
        assert_eq!(errors(&observations), [(ProtocolErrorKind::Malformed, 0)]);

        let mut h = Harness::tcp();
        h.run(&hex(SEND_RR_DATA)[..30], Direction::Request, 1);
        assert_eq!(h.stats.malformed[Protocol::Enip.index()], 1);
        assert_eq!(h.stats.pdus[Protocol::Enip.index()], 0);
    }

    #[test]
    fn event_lists_the_cip_messages() {
        let mut h = Harness::new(44818, 6, true);
        h.run(&hex(SEND_RR_DATA), Direction::Request, 1);
        let records: Vec<_> = h.records.try_iter().collect();
        assert_eq!(records.len(), 1);
        let Some(EveRecord::Protocol(event)) = records.first() else {
            panic!("protocol event expected");
        };
        let EventBody::Enip(body) = &event.body else {
            panic!("enip event expected");
        };
        assert_eq!(body.command, 0x6F);
        assert_eq!(body.session, 0x1102_0100);
        assert_eq!(body.status, 0);
        assert_eq!(body.cip.len(), 2);
        assert_eq!(body.cip[0].service, 0x52);
        assert_eq!(body.cip[0].class, Some(6));
        assert_eq!(body.cip[1].service, 0x01);
        assert_eq!(body.cip[1].class, Some(1));
        assert_eq!(body.cip[1].instance, Some(1));
        assert_eq!(body.cip_omitted, 0);
        // An MSP of 11 items: 8 listed, 4 omitted (the MSP itself is the first).
        h.run(
            &send_rr_data(&hex(MSP_REQUEST), CONTEXT, 0),
            Direction::Request,
            2,
        );
        let Some(EveRecord::Protocol(event)) = h.records.try_iter().next() else {
            panic!("protocol event expected");
        };
        let EventBody::Enip(body) = &event.body else {
            panic!("enip event expected");
        };
        assert_eq!(body.cip.len(), MAX_CIP_PER_EVENT);
        assert_eq!(body.cip_omitted, 4);
    }

    /// The modes the controller reports, one per change.
    fn modes(observations: &[Observation]) -> Vec<String> {
        identities(observations)
            .into_iter()
            .filter(|(field, _)| *field == IdentityField::Mode)
            .map(|(_, value)| value)
            .collect()
    }

    #[test]
    fn a_controller_identity_status_reports_its_mode() {
        // enip-cl5000-reboot-restart.pcap: the CompactLogix's Get_Attributes_All
        // replies say status 0x3060 (an I/O connection in run mode) until frame 429,
        // 0x3070 (all connections idle) from there (tshark `cip.id.status`).
        let (pdus, _) = otsensor_wire::test_capture::framed_pdus(
            "enip-cl5000-reboot-restart.pcap",
            44818,
            frame,
        );
        let mut h = Harness::tcp();
        let mut observations = Vec::new();
        for (index, (direction, pdu)) in pdus.iter().enumerate() {
            observations.extend(h.run(pdu, *direction, index as u64 * 1_000));
        }
        assert_eq!(modes(&observations), ["RUN", "IDLE"]);
        // A major fault outranks the connection state; a device that is not a
        // controller (the 1756-ENBT of LIST_IDENTITY_REPLY) reports no mode.
        assert_eq!(controller_mode(0x3460), Some("MAJOR FAULT (recoverable)"));
        assert_eq!(controller_mode(0x0830), Some("MAJOR FAULT (unrecoverable)"));
        assert_eq!(controller_mode(0x0030), None);
        let mut h = Harness::new(44818, 17, false);
        assert!(modes(&h.run(&hex(LIST_IDENTITY_REPLY), Direction::Response, 1)).is_empty());
    }
}
