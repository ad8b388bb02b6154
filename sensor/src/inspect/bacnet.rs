//! BACnet inspection: the worker's statistics, protocol events, commands,
//! identities and protocol errors, read from the [`otsensor_wire::bacnet`] views.

use otsensor_wire::bacnet::*;
use otsensor_wire::vendors::{bacnet_vendor, vendor_text};
use otsensor_wire::{Direction, Protocol};

use crate::inspect::histogram::{pair, pair_key, Histogram};
use crate::inspect::reassembly::SEGMENT_BUFFER_LEN;
use crate::inspect::{BacnetEvent, EventBody, PduCtx};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};
use std::collections::BTreeMap;

/// Per-worker BACnet statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`): one count per BVLC message (one `bvlc`+`bacnet`+
/// `bacapp` record), with each histogram taking the PDU's first value of its field.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub bvlc_function: Histogram,
    pub apdu_type: Histogram,
    pub net_msg_type: Histogram,
    pub confirmed_service: Histogram,
    pub unconfirmed_service: Histogram,
    /// `class/code` of the PDU's first error (Error PDU, or the first property access
    /// error of a ReadPropertyMultiple-ACK), as tshark's first `bacapp.error_class`
    /// and `bacapp.error_code`.
    pub error_class_code: Histogram,
    pub reject_reason: Histogram,
    pub abort_reason: Histogram,
    /// Segmented confirmed requests and complex ACKs (key 1, written `true`).
    pub segmented: Histogram,
    /// Segmented messages reassembled whole (or, after an overflow, their prefix).
    pub reassembled: u64,
    /// First segments that found every reassembly buffer in use (then inspected on
    /// their own, as far as they go).
    pub reassembly_pool_exhausted: u64,
    /// Half-open messages (a first segment, no end) whose buffer was taken for a new
    /// message after `reassembly::HALF_OPEN_TIMEOUT_NS`.
    pub reassembly_expired: u64,
    /// Messages longer than a reassembly buffer: their tail is dropped, the prefix
    /// is still read for identity.
    pub reassembly_overflow: u64,
    /// Messages dropped because a segment was missing (sequence number skipped).
    pub reassembly_out_of_sequence: u64,
    /// Later segments with no message in progress (first segment missed or dropped)
    /// or belonging to another message than the one in progress.
    pub segments_unmatched: u64,
    /// Retransmitted segments already added.
    pub segments_duplicate: u64,
    /// Messages left unfinished when a new first segment came in the same direction.
    pub segments_abandoned: u64,
    /// Segment-ACK PDUs, and those that are negative (a segment was lost).
    pub segment_acks: u64,
    pub segment_naks: u64,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.bvlc_function.merge(&other.bvlc_function);
        self.apdu_type.merge(&other.apdu_type);
        self.net_msg_type.merge(&other.net_msg_type);
        self.confirmed_service.merge(&other.confirmed_service);
        self.unconfirmed_service.merge(&other.unconfirmed_service);
        self.error_class_code.merge(&other.error_class_code);
        self.reject_reason.merge(&other.reject_reason);
        self.abort_reason.merge(&other.abort_reason);
        self.segmented.merge(&other.segmented);
        self.reassembled += other.reassembled;
        self.reassembly_pool_exhausted += other.reassembly_pool_exhausted;
        self.reassembly_expired += other.reassembly_expired;
        self.reassembly_overflow += other.reassembly_overflow;
        self.reassembly_out_of_sequence += other.reassembly_out_of_sequence;
        self.segments_unmatched += other.segments_unmatched;
        self.segments_duplicate += other.segments_duplicate;
        self.segments_abandoned += other.segments_abandoned;
        self.segment_acks += other.segment_acks;
        self.segment_naks += other.segment_naks;
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        let decimal = |histogram: &Histogram| histogram.to_decimal_map();
        put(
            "bvlc_function",
            &self.bvlc_function,
            decimal(&self.bvlc_function),
        );
        put("apdu_type", &self.apdu_type, decimal(&self.apdu_type));
        put(
            "net_msg_type",
            &self.net_msg_type,
            decimal(&self.net_msg_type),
        );
        put(
            "confirmed_service",
            &self.confirmed_service,
            decimal(&self.confirmed_service),
        );
        put(
            "unconfirmed_service",
            &self.unconfirmed_service,
            decimal(&self.unconfirmed_service),
        );
        put(
            "error_class_code",
            &self.error_class_code,
            self.error_class_code.to_map(pair),
        );
        put(
            "reject_reason",
            &self.reject_reason,
            decimal(&self.reject_reason),
        );
        put(
            "abort_reason",
            &self.abort_reason,
            decimal(&self.abort_reason),
        );
        put(
            "segmented",
            &self.segmented,
            self.segmented.to_map(|_| "true".to_owned()),
        );
        // Counters, not tshark histograms: present when non-zero.
        for (name, count) in [
            ("reassembled", self.reassembled),
            ("reassembly_pool_exhausted", self.reassembly_pool_exhausted),
            ("reassembly_expired", self.reassembly_expired),
            ("reassembly_overflow", self.reassembly_overflow),
            (
                "reassembly_out_of_sequence",
                self.reassembly_out_of_sequence,
            ),
            ("segments_unmatched", self.segments_unmatched),
            ("segments_duplicate", self.segments_duplicate),
            ("segments_abandoned", self.segments_abandoned),
            ("segment_acks", self.segment_acks),
            ("segment_naks", self.segment_naks),
        ] {
            if count > 0 {
                out.insert(name.to_owned(), serde_json::json!(count));
            }
        }
        serde_json::Value::Object(out)
    }
}

/// BACnetErrorCode `password-failure` (clause 21). Error codes are one enumeration
/// across classes, and devices report it under `security` (4) or, as in
/// bacnet-iam-readproperty-example.pcap, `services` (5).
const ERROR_CODE_PASSWORD_FAILURE: u32 = 26;

/// DeviceCommunicationControl enable-disable values (clause 16.1.1.1.2).
const DCC_ENABLE: u32 = 0;

/// ReinitializeDevice reinitialized-state values (clause 16.4.1.1.1).
mod reinit_state {
    pub const COLDSTART: u32 = 0;
    pub const WARMSTART: u32 = 1;
    pub const START_BACKUP: u32 = 2;
    pub const END_BACKUP: u32 = 3;
    pub const START_RESTORE: u32 = 4;
    pub const END_RESTORE: u32 = 5;
    pub const ABORT_RESTORE: u32 = 6;
}

/// Confirmed services (clause 21) not in [`confirmed`] that change how the sensor
/// classifies a request.
const LIFE_SAFETY_OPERATION: u8 = 27;
/// Unconfirmed services (clause 21) the sensor classifies besides [`unconfirmed`].
const TIME_SYNCHRONIZATION: u8 = 6;
const UTC_TIME_SYNCHRONIZATION: u8 = 9;
const WRITE_GROUP: u8 = 10;

/// The command kind of a confirmed request. DeviceCommunicationControl and
/// ReinitializeDevice decide by their parameters; when those cannot be read (a later
/// segment, a cut body) the dangerous reading is reported, as the request may be one.
fn confirmed_command_kind(apdu: &Apdu<'_>, service: u8) -> CommandKind {
    match service {
        confirmed::DEVICE_COMMUNICATION_CONTROL => match apdu.device_communication_control() {
            Some(dcc) if dcc.enable_disable == DCC_ENABLE => CommandKind::Other,
            // disable (1), disable-initiation (2), and unknown values.
            _ => CommandKind::DisableCommunication,
        },
        confirmed::REINITIALIZE_DEVICE => {
            match apdu.reinitialize_device().map(|reinit| reinit.state) {
                // A backup copies the configuration out (clause 19.1): a transfer of
                // files that leaves the device's program in place.
                Some(reinit_state::START_BACKUP | reinit_state::END_BACKUP) => {
                    CommandKind::FileTransfer
                }
                // A restore replaces the device's configuration (clause 19.1.3):
                // the BACnet way of loading a program.
                Some(
                    reinit_state::START_RESTORE
                    | reinit_state::END_RESTORE
                    | reinit_state::ABORT_RESTORE,
                ) => CommandKind::Program,
                Some(reinit_state::COLDSTART | reinit_state::WARMSTART) => CommandKind::Restart,
                // activate-changes (7) applies pending changes, possibly by restarting;
                // unknown states and unreadable parameters take the dangerous reading.
                _ => CommandKind::Restart,
            }
        }
        LIFE_SAFETY_OPERATION => CommandKind::Operate,
        _ => match confirmed_service_kind(service) {
            ServiceKind::Read => CommandKind::Read,
            ServiceKind::Write => CommandKind::Write,
            ServiceKind::FileTransfer => CommandKind::FileTransfer,
            ServiceKind::Discovery => CommandKind::Discovery,
            ServiceKind::DeviceControl | ServiceKind::Other => CommandKind::Other,
        },
    }
}

/// The command kind of an unconfirmed request; `None` for I-Am and I-Have, which
/// answer a Who-Is / Who-Has and are reported as identity instead.
fn unconfirmed_command_kind(service: u8) -> Option<CommandKind> {
    Some(match service {
        unconfirmed::I_AM | unconfirmed::I_HAVE => return None,
        unconfirmed::WHO_IS | unconfirmed::WHO_HAS => CommandKind::Discovery,
        TIME_SYNCHRONIZATION | UTC_TIME_SYNCHRONIZATION => CommandKind::TimeSync,
        WRITE_GROUP => CommandKind::Write,
        _ => CommandKind::Other,
    })
}

/// The identity field of a device property. BACnet has no product-name property:
/// application-software-version names the application build the device runs, kept as
/// the product so that it does not overwrite firmware-revision.
fn identity_field(property_id: u32) -> Option<IdentityField> {
    Some(match property_id {
        property::VENDOR_NAME => IdentityField::Vendor,
        property::MODEL_NAME => IdentityField::Model,
        property::FIRMWARE_REVISION => IdentityField::Firmware,
        property::APPLICATION_SOFTWARE_VERSION => IdentityField::Product,
        _ => return None,
    })
}

/// Invoke ids are chosen by the requesting peer, and both BACnet peers may request on
/// the same flow (both use 47808): the id is qualified by which flow side requested.
fn transaction_key(invoke_id: u8, requester_is_client: bool) -> u32 {
    (u32::from(requester_is_client) << 8) | u32::from(invoke_id)
}

/// The first error of a PDU: an Error PDU's class and code, or the first property
/// access error of a ReadPropertyMultiple-ACK (as tshark's first `bacapp.error_*`).
fn first_error(apdu: &Apdu<'_>) -> Option<(u32, u32)> {
    if let Some(error) = apdu.error() {
        return Some(error);
    }
    apdu.property_results()?
        .find_map(|result| match result.outcome {
            PropertyOutcome::Error { class, code } => Some((class, code)),
            PropertyOutcome::Value(_) => None,
        })
}

/// Character sets of a CharacterString (clause 20.2.9).
const CHARSET_UTF8: u8 = 0;
const CHARSET_ISO_8859_1: u8 = 5;

fn clamp16(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

/// Inspects one BACnet/IP PDU (a whole BVLC message): statistics, request/response
/// matching by invoke id, observations (commands, identity, errors) and the EVE event.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let bvlc = match Bvlc::new_checked(pdu) {
        Ok(bvlc) => bvlc,
        Err(_) => {
            ctx.malformed(Protocol::Bacnet);
            return;
        }
    };
    ctx.count(Protocol::Bacnet);
    let function = bvlc.function().code();
    ctx.stats.bacnet.bvlc_function.add(u32::from(function));
    // A forwarded message's IP sender is the BBMD, not the device that spoke.
    let relayed = bvlc.function() == BvlcFunction::ForwardedNpdu;
    inspect_npdu(bvlc.npdu(), Some(function), relayed, ctx);
}

/// Inspects one BACnet PDU carried over 802.2 LLC (clause 7): an NPDU without BVLC.
/// The caller has no IP endpoints (they are unspecified in `ctx.flow`), so the sender's
/// identity is not reported: it would name no device. Commands and errors are.
pub fn inspect_llc(npdu: &[u8], ctx: &mut PduCtx<'_>) {
    if Npdu::new_checked(npdu).is_err() {
        ctx.malformed(Protocol::Bacnet);
        return;
    }
    ctx.count(Protocol::Bacnet);
    inspect_npdu(Some(npdu), None, true, ctx);
    // Without a flow no later segment can find this state: give its buffers back.
    ctx.segments.release_flow(ctx.state);
}

/// The NPDU (and APDU) part of a BACnet PDU, after its data-link header. `relayed`:
/// the IP sender is not the device that spoke (identity is then not reported).
fn inspect_npdu(
    npdu: Option<&[u8]>,
    bvlc_function: Option<u8>,
    relayed: bool,
    ctx: &mut PduCtx<'_>,
) {
    let mut event = BacnetEvent {
        llc: bvlc_function.is_none(),
        bvlc_function,
        apdu_type: None,
        service: None,
        invoke_id: None,
        error_class: None,
        error_code: None,
        reject_reason: None,
        abort_reason: None,
    };
    let apdu = match npdu.map(Npdu::new_checked) {
        None => None,
        Some(Err(_)) => {
            // The data-link header was sound, so the PDU is counted; its NPDU is not.
            ctx.protocol_error(Protocol::Bacnet, ProtocolErrorKind::Malformed, 0);
            None
        }
        Some(Ok(npdu)) => {
            if let Some(message) = npdu.network_message_type() {
                ctx.stats.bacnet.net_msg_type.add(u32::from(message));
            }
            // Behind a router the IP sender is the router, not the device.
            let relayed = relayed || npdu.source().is_some();
            match npdu.apdu() {
                Some(Ok(apdu)) => Some((apdu, relayed)),
                Some(Err(_)) => {
                    ctx.protocol_error(Protocol::Bacnet, ProtocolErrorKind::Malformed, 0);
                    None
                }
                None => None,
            }
        }
    };
    if let Some((apdu, relayed)) = apdu {
        inspect_apdu(&apdu, relayed, &mut event, ctx);
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Bacnet(event));
    }
}

fn inspect_apdu(apdu: &Apdu<'_>, relayed: bool, event: &mut BacnetEvent, ctx: &mut PduCtx<'_>) {
    let apdu_type = apdu.apdu_type();
    let stats = &mut ctx.stats.bacnet;
    stats.apdu_type.add(u32::from(apdu_type.code()));
    if let Some(service) = apdu.confirmed_service() {
        stats.confirmed_service.add(u32::from(service));
    }
    if let Some(service) = apdu.unconfirmed_service() {
        stats.unconfirmed_service.add(u32::from(service));
    }
    let error = first_error(apdu);
    if let Some((class, code)) = error {
        stats
            .error_class_code
            .add(pair_key(clamp16(class), clamp16(code)));
    }
    if let Some(reason) = apdu.reject_reason() {
        stats.reject_reason.add(u32::from(reason));
    }
    if let Some(reason) = apdu.abort_reason() {
        stats.abort_reason.add(u32::from(reason));
    }
    if apdu.segmented() {
        stats.segmented.add(1);
    }
    event.apdu_type = Some(apdu_type.code());
    event.service = apdu.service_choice();
    event.invoke_id = apdu.invoke_id();
    event.error_class = error.map(|(class, _)| class);
    event.error_code = error.map(|(_, code)| code);
    event.reject_reason = apdu.reject_reason();
    event.abort_reason = apdu.abort_reason();

    if apdu.segmented() {
        let mut message = [0u8; SEGMENT_BUFFER_LEN];
        match segment(apdu, ctx, &mut message) {
            Reassembly::Complete { len, .. } => {
                let whole = Apdu::new_checked(message.get(..len).unwrap_or(&[]));
                if let (Ok(whole), false) = (whole, relayed) {
                    // A cut message still starts right: its identity properties
                    // are read as far as they go.
                    if whole.apdu_type() == ApduType::ComplexAck {
                        report_identity(&whole, ctx);
                    }
                }
            }
            // No buffer: the first segment is read on its own.
            Reassembly::NoBuffer if !relayed && apdu_type == ApduType::ComplexAck => {
                report_identity(apdu, ctx);
            }
            _ => {}
        }
    }

    // The APDU type, not the flow's orientation, tells requests from replies: both
    // peers use port 47808 and either may request.
    let sender_is_client = ctx.direction == Direction::Request;
    // Later segments repeat the request; the first one starts the transaction.
    let first_segment = !apdu.segmented() || apdu.sequence_number() == Some(0);
    match apdu_type {
        ApduType::ConfirmedRequest => {
            let Some(service) = apdu.service_choice() else {
                return;
            };
            if !first_segment {
                return;
            }
            if let Some(invoke_id) = apdu.invoke_id() {
                let key = transaction_key(invoke_id, sender_is_client);
                ctx.state.request(key, u32::from(service), ctx.ts_ns);
            }
            let kind = confirmed_command_kind(apdu, service);
            ctx.command(Protocol::Bacnet, kind, u32::from(service));
            read_objects(service, apdu.service_data(), |object| {
                ctx.object_access(Protocol::Bacnet, object);
            });
        }
        ApduType::UnconfirmedRequest => {
            let Some(service) = apdu.service_choice() else {
                return;
            };
            if let Some(kind) = unconfirmed_command_kind(service) {
                ctx.command(Protocol::Bacnet, kind, 0x100 | u32::from(service));
            }
            if let (Some(i_am), false) = (apdu.i_am(), relayed) {
                let vendor = vendor_text(bacnet_vendor(i_am.vendor_id), i_am.vendor_id);
                ctx.identity(Protocol::Bacnet, IdentityField::Vendor, vendor.as_bytes());
            }
        }
        ApduType::SimpleAck
        | ApduType::ComplexAck
        | ApduType::Error
        | ApduType::Reject
        | ApduType::Abort => {
            // A reply answers a request of the other peer; an Abort may also come from
            // the requester itself (SRV clear) and then ends its own transaction.
            let requester_is_client = if apdu_type == ApduType::Abort && !apdu.sent_by_server() {
                sender_is_client
            } else {
                !sender_is_client
            };
            if let (Some(invoke_id), true) = (apdu.invoke_id(), first_segment) {
                let key = transaction_key(invoke_id, requester_is_client);
                if let Some((_, latency)) = ctx.state.response(key, ctx.ts_ns) {
                    ctx.response_time(Protocol::Bacnet, latency);
                }
            }
            match apdu_type {
                ApduType::Error => {
                    if let Some((class, code)) = error {
                        let kind = if code == ERROR_CODE_PASSWORD_FAILURE {
                            ProtocolErrorKind::AuthFailure
                        } else {
                            ProtocolErrorKind::ErrorReply
                        };
                        let key = (u32::from(clamp16(class)) << 16) | u32::from(clamp16(code));
                        ctx.protocol_error(Protocol::Bacnet, kind, key);
                    }
                }
                ApduType::Reject | ApduType::Abort => {
                    let reason = apdu
                        .reject_reason()
                        .or_else(|| apdu.abort_reason())
                        .unwrap_or(0);
                    let code = (u32::from(apdu_type.code()) << 8) | u32::from(reason);
                    ctx.protocol_error(Protocol::Bacnet, ProtocolErrorKind::Rejected, code);
                }
                _ => {}
            }
            // A segmented ACK is read once reassembled (see `segment`).
            if !relayed && !apdu.segmented() {
                report_identity(apdu, ctx);
            }
        }
        ApduType::SegmentAck => {
            ctx.stats.bacnet.segment_acks += 1;
            if apdu.negative_ack() {
                ctx.stats.bacnet.segment_naks += 1;
            }
        }
        ApduType::Unknown(_) => {}
    }
}

/// Property references of one ReadPropertyMultiple request reported as objects, at most.
const MAX_READ_OBJECTS: usize = 32;

/// The (object, property) pairs a ReadProperty or ReadPropertyMultiple request reads,
/// for object sweeps: object identifier (type and instance, 32 bits) and property id
/// (to 24 bits) folded into one key. Other services report nothing.
fn read_objects(service: u8, data: &[u8], mut report: impl FnMut(u64)) {
    let key = |object: ObjectId, property: u32| {
        let object = (u64::from(object.object_type & 0x3ff) << 22) | u64::from(object.instance);
        (object << 24) | u64::from(property & 0xff_ffff)
    };
    let mut tags = Tags::new(data);
    match service {
        confirmed::READ_PROPERTY => {
            let object = tags.next().and_then(|t| t.context(0)?.object_id());
            let property = tags.next().and_then(|t| t.context(1)?.unsigned());
            if let (Some(object), Some(property)) = (object, property) {
                report(key(object, property));
            }
        }
        confirmed::READ_PROPERTY_MULTIPLE => {
            // Read-access specifications: object id (context 0), then the property
            // references (context 0 ids, optional context 1 array indexes) between
            // opening and closing tag 1.
            let (mut object, mut inside, mut reported) = (None, false, 0);
            for tag in tags {
                if reported >= MAX_READ_OBJECTS {
                    break;
                }
                if inside {
                    if tag.is_closing(1) {
                        inside = false;
                    } else if let (Some(object), Some(property)) =
                        (object, tag.context(0).and_then(|t| t.unsigned()))
                    {
                        report(key(object, property));
                        reported += 1;
                    }
                } else if tag.is_opening(1) {
                    inside = true;
                } else if let Some(id) = tag.context(0).and_then(|t| t.object_id()) {
                    object = Some(id);
                } else {
                    break;
                }
            }
        }
        _ => {}
    }
}

/// Reports the identity properties of a ReadProperty(Multiple) ACK: the character
/// strings of vendor-name, model-name, firmware-revision and
/// application-software-version, and vendor-identifier named from the ASHRAE table.
fn report_identity(apdu: &Apdu<'_>, ctx: &mut PduCtx<'_>) {
    for string in apdu.identity_strings() {
        // UTF-8 and ISO 8859-1 (clause 20.2.9) read as text; UCS-2 and the other
        // wide sets would not.
        if !matches!(string.charset, CHARSET_UTF8 | CHARSET_ISO_8859_1) {
            continue;
        }
        if let Some(field) = identity_field(string.property) {
            ctx.identity(Protocol::Bacnet, field, string.text);
        }
    }
    let vendor_ids = apdu
        .property_results()
        .into_iter()
        .flatten()
        .filter(|result| result.property == property::VENDOR_IDENTIFIER)
        .filter_map(|result| result.value()?.application(app_tag::UNSIGNED)?.unsigned());
    for id in vendor_ids {
        let text = vendor_text(bacnet_vendor(id), id);
        ctx.identity(Protocol::Bacnet, IdentityField::Vendor, text.as_bytes());
    }
    // The Device object's system-status is the controller's mode; values past the
    // standard list are proprietary and say nothing comparable.
    let modes = apdu
        .property_results()
        .into_iter()
        .flatten()
        .filter(|result| {
            result.property == property::SYSTEM_STATUS
                && result.object.object_type == ObjectId::DEVICE
        })
        .filter_map(|result| result.value()?.application(app_tag::ENUMERATED)?.unsigned())
        .filter_map(device_status_name);
    for mode in modes {
        ctx.identity(Protocol::Bacnet, IdentityField::Mode, mode.as_bytes());
    }
}

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// What one segment did to its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reassembly {
    /// Added (or a harmless repeat); more segments follow.
    InProgress,
    /// A first segment that found no free buffer.
    NoBuffer,
    /// The segment was not added (its message is unknown or was dropped).
    Dropped,
    /// The last segment: the whole message, this many bytes, was copied out;
    /// `truncated` when its tail did not fit the buffer.
    Complete { len: usize, truncated: bool },
}

/// Reassembles segmented Confirmed-Requests and Complex-ACKs (clause 5.2): per flow
/// direction one message at a time, identified by its APDU type, service choice and
/// invoke id (the requester picks invoke ids, so with the direction they name the
/// transaction), segments taken in sequence-number order. The message is rebuilt in
/// its unsegmented form: the header without SEG, MOR, sequence number and window,
/// then the service data of every segment, so [`Apdu`] reads it like any other.
fn segment(
    apdu: &Apdu<'_>,
    ctx: &mut PduCtx<'_>,
    out: &mut [u8; SEGMENT_BUFFER_LEN],
) -> Reassembly {
    let (Some(sequence), Some(invoke_id), Some(service)) = (
        apdu.sequence_number(),
        apdu.invoke_id(),
        apdu.service_choice(),
    ) else {
        return Reassembly::Dropped;
    };
    let apdu_type = apdu.apdu_type();
    let tag =
        (u32::from(apdu_type.code()) << 16) | (u32::from(service) << 8) | u32::from(invoke_id);
    let direction = direction_index(ctx.direction);
    let mut handle = ctx.state.segment_slots.get(direction).copied().unwrap_or(0);
    if sequence == 0 {
        match ctx.segments.get_mut(handle) {
            // A retransmitted first segment restarts its own message silently.
            Some(buffer) if buffer.tag != tag => ctx.stats.bacnet.segments_abandoned += 1,
            Some(_) => {}
            None => {
                let acquired = ctx.segments.acquire(ctx.ts_ns);
                ctx.stats.bacnet.reassembly_expired += ctx.segments.take_expired();
                let Some(acquired) = acquired else {
                    ctx.stats.bacnet.reassembly_pool_exhausted += 1;
                    return Reassembly::NoBuffer;
                };
                handle = acquired;
                if let Some(slot) = ctx.state.segment_slots.get_mut(direction) {
                    *slot = handle;
                }
            }
        }
        let Some(buffer) = ctx.segments.get_mut(handle) else {
            return Reassembly::Dropped;
        };
        buffer.start(tag, 1);
        // Unsegmented header (clause 20.1.2.1, 20.1.5.1): a confirmed request keeps
        // its segmented-response-accepted bit and max segments / max APDU octet.
        let first = apdu_type.code() << 4;
        let header: &[u8] = match apdu_type {
            ApduType::ConfirmedRequest => &[
                first
                    | if apdu.segmented_response_accepted() {
                        pdu_flag::SEGMENTED_RESPONSE_ACCEPTED
                    } else {
                        0
                    },
                apdu.max_segments_apdu_octet().unwrap_or(0),
                invoke_id,
                service,
            ],
            _ => &[first, invoke_id, service],
        };
        let fits = buffer
            .append(header)
            .and_then(|()| buffer.append(apdu.service_data()));
        if fits.is_err() {
            ctx.stats.bacnet.reassembly_overflow += 1;
        }
    } else {
        let Some(buffer) = ctx.segments.get_mut(handle) else {
            ctx.stats.bacnet.segments_unmatched += 1;
            return Reassembly::Dropped;
        };
        if buffer.tag != tag {
            // Another message's segment: the one in progress is kept.
            ctx.stats.bacnet.segments_unmatched += 1;
            return Reassembly::Dropped;
        }
        if sequence != buffer.next_sequence {
            // Sequence numbers count modulo 256 (clause 5.3); a segment of the last
            // half-range is a retransmission, anything else means one was lost.
            if (1..=127).contains(&buffer.next_sequence.wrapping_sub(sequence)) {
                ctx.stats.bacnet.segments_duplicate += 1;
                return Reassembly::InProgress;
            }
            ctx.stats.bacnet.reassembly_out_of_sequence += 1;
            if let Some(slot) = ctx.state.segment_slots.get_mut(direction) {
                ctx.segments.release(slot);
            }
            return Reassembly::Dropped;
        }
        buffer.next_sequence = buffer.next_sequence.wrapping_add(1);
        // Overflow is counted once per message; later segments only keep the count.
        let overflowed = buffer.overflowed;
        if buffer.append(apdu.service_data()).is_err() && !overflowed {
            ctx.stats.bacnet.reassembly_overflow += 1;
        }
    }
    if apdu.more_follows() {
        return Reassembly::InProgress;
    }
    let (len, truncated) = ctx.segments.get_mut(handle).map_or((0, false), |buffer| {
        (buffer.copy_to(out), buffer.overflowed)
    });
    if let Some(slot) = ctx.state.segment_slots.get_mut(direction) {
        ctx.segments.release(slot);
    }
    ctx.stats.bacnet.reassembled += 1;
    Reassembly::Complete { len, truncated }
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::inspect::test_capture::{hex, objects};

    // Fixtures (frames of the shared captures, or hand-built per the clause named).

    // bacnet-iam-readproperty-example.pcap frame 74: I-Am from device 721.
    const I_AM: &str = "810a001401001000c4020002d12204009103210f";
    // Frame 72: Who-Is, global broadcast with DNET 0xFFFF and hop count 255.
    const WHO_IS: &str = "810b000c0120ffff00ff1008";
    // Frame 137: ReadProperty-ACK model-name "HIY-054".
    const RP_ACK_MODEL: &str = "810a001c010030020c0c020001f519463e7508004849592d3035343f";
    // Frame 145: ReadProperty-ACK application-software-version "0.5.7".
    const RP_ACK_APP_VERSION: &str = "810a001a010030040c0c020001f5190c3e750600302e352e373f";
    // Frame 572: ReinitializeDevice abortrestore (6) with password "Delcatty70".
    const REINIT: &str = "810a001101040005011409061d0b0044656c63617474793730";
    // Frame 573: Error for ReinitializeDevice, security (5) / password-failure (26).
    const ERROR: &str = "810a001101045001149105911a";
    // bacnet-schedule-rpm-error.pcapng frame 2: RPM-ACK with error 2/32 at the end.
    const RPM_ACK: &str = "810a0083010030080e0c044000581e294b4ec4044000584f294d4e74003132334f294f4e91114f29554e004f291c4e74003132334f29204ea4720101ffa4730101ff4f297b4e0e0f0e0f0e0f0e0f0e0f0e0f0e0f4f29264e4f29ae4e004f29364e4f29584e210a4f296f4e8204004f29674e91004f29514e104f29a85e910291205f1f";
    // bacnet-services-segmented.pcap frame 279 (first 40 bytes): segmented RPM-ACK.
    const SEGMENTED_ACK: &str =
        "810a002801080003016c3c8800100e0c000008351e29554e44425c00004f1f0c000008361e29554e";
    // Frame 280: Segment-ACK from the client.
    const SEGMENT_ACK: &str = "810a000f01200003016cff40880010";
    // Frames 279 (490 bytes) and 281, whole: a ReadPropertyMultiple-ACK (invoke 136)
    // of present-value for 32 analog objects in two segments; frame 282 acks the
    // second segment.
    const SEGMENTED_ACK_0: &str = "810a01ea01080003016c3c8800100e0c000008351e29554e44425c00004f1f0c000008361e29554e44425c00004f1f0c000008371e29554e44425c00004f1f0c000008381e29555e9101911f5f1f0c000008391e29555e9101911f5f1f0c0000083a1e29555e9101911f5f1f0c0000083b1e29555e9101911f5f1f0c0000083c1e29555e9101911f5f1f0c0000083d1e29555e9101911f5f1f0c0000083e1e29554e44000000004f1f0c0000083f1e29554e4442c800004f1f0c000008401e29554e44426800004f1f0c000008411e29554e44425c00004f1f0c000008421e29554e44000000004f1f0c000008431e29554e44422400004f1f0c000008441e29554e44000000004f1f0c000008451e29555e9101911f5f1f0c000008461e29555e9101911f5f1f0c000008471e29555e9101911f5f1f0c000008481e29555e9101911f5f1f0c000008491e29555e9101911f5f1f0c0000084a1e29555e9101911f5f1f0c0000084b1e29555e9101911f5f1f0c0000084c1e29555e9101911f5f1f0c0000084d1e29555e9101911f5f1f0c0000084e1e29555e9101911f5f1f0c0000084f1e29555e9101911f5f1f0c000008501e29555e9101911f5f1f0c000008511e29555e9101911f5f1f0c000008521e29555e9101911f5f1f0c000008531e29555e9101911f5f1f";
    const SEGMENTED_ACK_1: &str = "810a001e01080003016c388801100e0c000008541e29555e9101911f5f1f";
    const SEGMENT_ACK_1: &str = "810a000f01200003016cff40880110";
    // Hand-built per clause 20.1.5 and 15.7.1.3: a ReadPropertyMultiple-ACK (invoke
    // 0x11, not routed) for device 1234 with vendor-name "Acme Controls", model-name
    // "AC-100", firmware-revision "2.1.0" and vendor-identifier 5, in three segments
    // (window 4) that cut "AC-100" after "AC-"; and the same ACK unsegmented.
    const IDENTITY_SEG_0: &str = "810a002e01003c1100040e0c020004d21e29794e750e0041636d6520436f6e74726f6c734f29464e75070041432d";
    const IDENTITY_SEG_1: &str = "810a001501003c1101040e3130304f292c4e750600";
    const IDENTITY_SEG_2: &str = "810a00180100381102040e322e312e304f29784e21054f1f";
    const IDENTITY_WHOLE: &str = "810a0043010030110e0c020004d21e29794e750e0041636d6520436f6e74726f6c734f29464e75070041432d3130304f292c4e750600322e312e304f29784e21054f1f";
    // Hand-built: a segmented WritePropertyMultiple request (invoke 5, SA set, max
    // APDU code 5) in two segments; the service data is opaque here.
    const WPM_SEG_0: &str = "810a000e01000e0505000410aabbcc";
    const WPM_SEG_1: &str = "810a000e01000a0505010410ddeeff";
    // Frame 265: DeviceCommunicationControl, enable-disable = disable (1).
    const DCC: &str = "810a001301240003016cff0203841119012900";
    // bacnet-network-layer-error.pcap frame 23: Network-Number-Is (type 0x13)
    // to a global broadcast.
    const NETWORK_MESSAGE: &str = "810b000e01a0ffff00ff1300000b";
    // Hand-built per clause 20.1.7 / 20.1.8: Reject (invoke 7, reason 9
    // unrecognized-service) and Abort from the server (invoke 7, reason 4
    // segmentation-not-supported); none occurs in the shared captures.
    const REJECT: &str = "810a00090100600709";
    const ABORT: &str = "810a00090100710704";

    /// A worker's outputs for driving [`inspect`] PDU by PDU on one flow.
    mod harness {
        use super::super::inspect;
        use crate::inspect::{AppState, FlowInfo, Outputs, PduCtx, ProtocolStats, RecentCache};
        use crate::observe::Observation;
        use crate::observe::{Delivery, ObservationSink};
        use crate::output::eve::{EveRecord, EventSink};
        use crossbeam_channel::{unbounded, Receiver};
        use otsensor_wire::{Direction, Protocol};

        pub struct Flow {
            pub info: FlowInfo,
            pub state: AppState,
            pub stats: ProtocolStats,
            pub segments: crate::inspect::reassembly::SegmentPool,
            recent: RecentCache,
            sink: ObservationSink,
            observations: Receiver<crate::observe::Stamped>,
            events: Option<(EventSink, Receiver<EveRecord>)>,
        }

        impl Flow {
            pub fn new(events: bool) -> Flow {
                let (tx, observations) = unbounded();
                Flow {
                    info: FlowInfo {
                        flow_id: 7,
                        client: ("10.0.0.1".parse().unwrap(), 47808),
                        server: ("10.0.0.2".parse().unwrap(), 47808),
                        client_mac: None,
                        server_mac: None,
                        ip_protocol: 17,
                        vlan: 0,
                    },
                    state: AppState::default(),
                    stats: ProtocolStats::default(),
                    segments: crate::inspect::reassembly::SegmentPool::new(2),
                    recent: RecentCache::new(64, 1_000_000_000),
                    sink: ObservationSink::new(tx, Delivery::Block),
                    observations,
                    events: events.then(|| {
                        let (tx, rx) = unbounded();
                        (EventSink::new(tx, Delivery::Block), rx)
                    }),
                }
            }

            pub fn inspect(&mut self, pdu: &[u8], direction: Direction, ts_ns: u64) {
                let mut ctx = PduCtx {
                    dnp3: &mut crate::inspect::dnp3::ReassemblyPool::new(1),
                    segments: &mut self.segments,
                    ts_ns,
                    direction,
                    flow: &self.info,
                    state: &mut self.state,
                    stats: &mut self.stats,
                    out: Outputs {
                        observations: &mut self.sink,
                        recent: &mut self.recent,
                        events: self.events.as_mut().map(|(sink, _)| sink as _),
                    },
                };
                inspect(pdu, &mut ctx);
            }

            /// Feeds one segment straight to the reassembler; the whole message
            /// when this segment completes it.
            pub fn segment(&mut self, pdu: &[u8], direction: Direction) -> Option<Vec<u8>> {
                let apdu = super::super::apdu_of(pdu)?;
                let mut out = [0u8; crate::inspect::reassembly::SEGMENT_BUFFER_LEN];
                let mut ctx = PduCtx {
                    dnp3: &mut crate::inspect::dnp3::ReassemblyPool::new(1),
                    segments: &mut self.segments,
                    ts_ns: 1,
                    direction,
                    flow: &self.info,
                    state: &mut self.state,
                    stats: &mut self.stats,
                    out: Outputs {
                        observations: &mut self.sink,
                        recent: &mut self.recent,
                        events: None,
                    },
                };
                match super::super::segment(&apdu, &mut ctx, &mut out) {
                    super::super::Reassembly::Complete { len, .. } => Some(out[..len].to_vec()),
                    _ => None,
                }
            }

            pub fn inspect_llc(&mut self, npdu: &[u8]) {
                let mut ctx = PduCtx {
                    dnp3: &mut crate::inspect::dnp3::ReassemblyPool::new(1),
                    segments: &mut self.segments,
                    ts_ns: 1,
                    direction: Direction::Request,
                    flow: &self.info,
                    state: &mut self.state,
                    stats: &mut self.stats,
                    out: Outputs {
                        observations: &mut self.sink,
                        recent: &mut self.recent,
                        events: self.events.as_mut().map(|(sink, _)| sink as _),
                    },
                };
                super::super::inspect_llc(npdu, &mut ctx);
            }

            pub fn observations(&self) -> Vec<Observation> {
                self.observations
                    .try_iter()
                    .map(|s| s.observation)
                    .collect()
            }

            pub fn events(&self) -> Vec<EveRecord> {
                self.events
                    .as_ref()
                    .map(|(_, rx)| rx.try_iter().collect())
                    .unwrap_or_default()
            }

            pub fn pdus(&self) -> u64 {
                self.stats.pdus[Protocol::Bacnet.index()]
            }
        }
    }

    use crate::inspect::{BacnetEvent, EventBody};
    use crate::observe::{CommandKind, IdentityField, Observation, ProtocolErrorKind};
    use crate::output::eve::EveRecord;
    use harness::Flow;
    use otsensor_wire::Direction;

    fn commands(observations: &[Observation]) -> Vec<(CommandKind, u32)> {
        observations
            .iter()
            .filter_map(|o| match o {
                Observation::Command { kind, code, .. } => Some((*kind, *code)),
                _ => None,
            })
            .collect()
    }

    fn errors(observations: &[Observation]) -> Vec<(ProtocolErrorKind, u32, bool)> {
        observations
            .iter()
            .filter_map(|o| match o {
                Observation::ProtocolError {
                    kind,
                    code,
                    sender_is_server,
                    ..
                } => Some((*kind, *code, *sender_is_server)),
                _ => None,
            })
            .collect()
    }

    fn identities(observations: &[Observation]) -> Vec<(String, IdentityField, String)> {
        observations
            .iter()
            .filter_map(|o| match o {
                Observation::Identity {
                    device,
                    field,
                    value,
                    ..
                } => Some((device.to_string(), *field, value.as_str().to_owned())),
                _ => None,
            })
            .collect()
    }

    fn identity_values(flow: &Flow) -> Vec<(IdentityField, String)> {
        identities(&flow.observations())
            .into_iter()
            .map(|(_, field, value)| (field, value))
            .collect()
    }

    /// What the unsegmented identity ACK reports, in order.
    fn acme_identity() -> Vec<(IdentityField, String)> {
        vec![
            (IdentityField::Vendor, "Acme Controls".to_owned()),
            (IdentityField::Model, "AC-100".to_owned()),
            (IdentityField::Firmware, "2.1.0".to_owned()),
            // vendor-identifier 5, named from the ASHRAE table (tshark 4.0.17).
            (
                IdentityField::Vendor,
                "Johnson Controls, Inc. (5)".to_owned(),
            ),
        ]
    }

    #[test]
    fn segmented_read_property_multiple_ack_yields_identity() {
        let mut whole = Flow::new(false);
        whole.inspect(&hex(IDENTITY_WHOLE), Direction::Response, 1);
        assert_eq!(identity_values(&whole), acme_identity());

        let mut flow = Flow::new(false);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 2);
        assert!(
            flow.observations().is_empty(),
            "nothing before the last segment"
        );
        assert_eq!(flow.segments.in_use(), 1);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 3);
        assert_eq!(identity_values(&flow), acme_identity());
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.segmented.get(1), 3);
        // Per-PDU histograms still count each segment, as tshark does.
        assert_eq!(stats.apdu_type.get(3), 3);
        assert_eq!(stats.confirmed_service.get(14), 3);
        assert_eq!(flow.segments.in_use(), 0);
        assert_eq!(flow.state.segment_slots, [0, 0]);
    }

    #[test]
    fn captured_segmented_ack_reassembles_whole() {
        let mut flow = Flow::new(false);
        let message = flow.segment(&hex(SEGMENTED_ACK_0), Direction::Response);
        assert_eq!(message, None, "more segments follow");
        flow.inspect(&hex(SEGMENT_ACK), Direction::Request, 2);
        let message = flow
            .segment(&hex(SEGMENTED_ACK_1), Direction::Response)
            .unwrap();
        flow.inspect(&hex(SEGMENT_ACK_1), Direction::Request, 4);
        let apdu = Apdu::new_checked(&message).unwrap();
        assert_eq!(apdu.apdu_type(), ApduType::ComplexAck);
        assert!(!apdu.segmented());
        assert_eq!(apdu.invoke_id(), Some(0x88));
        assert_eq!(
            apdu.confirmed_service(),
            Some(confirmed::READ_PROPERTY_MULTIPLE)
        );
        // 31 objects in the first segment and one in the second, walked to a clean
        // end: object 0x854 (present-value 85) is the last.
        let mut results = apdu.property_results().unwrap();
        let all: Vec<_> = results.by_ref().collect();
        assert_eq!(all.len(), 32);
        assert!(!results.malformed());
        assert_eq!(
            all.last().map(|r| (r.object.instance, r.property)),
            Some((0x854, 85))
        );
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.segment_acks, 2);
        assert_eq!(stats.segment_naks, 0);
        assert_eq!(stats.apdu_type.get(4), 2);
        assert_eq!(flow.stats.bacnet.summary()["segment_acks"], 2);
        // The sender is a router's device (NPDU source): no identity is reported.
        assert!(identities(&flow.observations()).is_empty());
    }

    #[test]
    fn segment_acks_and_naks_are_recognised() {
        let mut flow = Flow::new(true);
        let mut nak = hex(SEGMENT_ACK);
        // The APDU follows the 7-byte routed NPDU: set its NAK bit.
        nak[11] |= 0x02;
        flow.inspect(&hex(SEGMENT_ACK), Direction::Request, 1);
        flow.inspect(&nak, Direction::Request, 2);
        assert_eq!(flow.stats.bacnet.segment_acks, 2);
        assert_eq!(flow.stats.bacnet.segment_naks, 1);
        let events = flow.events();
        assert_eq!(events.len(), 2);
        let EveRecord::Protocol(event) = &events[0] else {
            panic!("not a protocol event");
        };
        let EventBody::Bacnet(body) = &event.body else {
            panic!("not BACnet");
        };
        assert_eq!(body.apdu_type, Some(4));
        assert_eq!(body.invoke_id, Some(0x88));
    }

    #[test]
    fn lost_duplicate_and_foreign_segments() {
        // Segment 1 lost: the message is dropped and counted, nothing reported.
        let mut flow = Flow::new(false);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 2);
        assert_eq!(flow.stats.bacnet.reassembly_out_of_sequence, 1);
        assert_eq!(flow.segments.in_use(), 0);
        // A late segment of the dropped message finds none in progress.
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 3);
        assert_eq!(flow.stats.bacnet.segments_unmatched, 1);
        assert_eq!(flow.stats.bacnet.reassembled, 0);
        assert!(flow.observations().is_empty());

        // A retransmitted segment is skipped; the message still completes.
        let mut flow = Flow::new(false);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 2);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 3);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 4);
        assert_eq!(flow.stats.bacnet.segments_duplicate, 1);
        assert_eq!(identity_values(&flow), acme_identity());

        // Another message's first segment abandons the one in progress (counted);
        // segments of the abandoned one no longer match.
        let mut flow = Flow::new(false);
        flow.inspect(&hex(SEGMENTED_ACK_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 2);
        flow.inspect(&hex(SEGMENTED_ACK_1), Direction::Response, 3);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 4);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 5);
        assert_eq!(flow.stats.bacnet.segments_abandoned, 1);
        assert_eq!(flow.stats.bacnet.segments_unmatched, 1);
        assert_eq!(flow.stats.bacnet.reassembled, 1);
        assert_eq!(identity_values(&flow), acme_identity());
    }

    #[test]
    fn over_long_message_is_cut_counted_and_its_prefix_read() {
        let mut flow = Flow::new(false);
        // The whole identity in segment 0, then 7 segments of 1400 filler bytes:
        // past the 8192-byte buffer.
        let mut first = hex(IDENTITY_WHOLE);
        first[6] = 0x3c;
        first.splice(8..8, [0, 4]);
        first[3] = first.len() as u8;
        flow.inspect(&first, Direction::Response, 1);
        for sequence in 1..=7u8 {
            let mut filler = hex(IDENTITY_SEG_1)[..11].to_vec();
            filler[8] = sequence;
            if sequence == 7 {
                filler[6] = 0x38;
            }
            filler.resize(11 + 1400, 0);
            let len = filler.len() as u16;
            filler[2..4].copy_from_slice(&len.to_be_bytes());
            flow.inspect(&filler, Direction::Response, 1 + u64::from(sequence));
        }
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reassembly_overflow, 1);
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.summary()["reassembly_overflow"], 1);
        assert_eq!(flow.segments.in_use(), 0);
        assert_eq!(identity_values(&flow), acme_identity());
    }

    #[test]
    fn without_a_free_buffer_the_first_segment_is_read_alone() {
        let mut flow = Flow::new(false);
        flow.segments = crate::inspect::reassembly::SegmentPool::new(0);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 2);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 3);
        assert_eq!(flow.stats.bacnet.reassembly_pool_exhausted, 1);
        assert_eq!(flow.stats.bacnet.reassembled, 0);
        // "AC-100" is cut by the segment boundary: only vendor-name is whole.
        assert_eq!(
            identity_values(&flow),
            [(IdentityField::Vendor, "Acme Controls".to_owned())]
        );
    }

    #[test]
    fn segmented_confirmed_request_is_one_command_and_reassembled() {
        let mut flow = Flow::new(false);
        let message = flow.segment(&hex(WPM_SEG_0), Direction::Request);
        assert_eq!(message, None);
        let message = flow.segment(&hex(WPM_SEG_1), Direction::Request).unwrap();
        // Unsegmented header: SA kept, max APDU octet kept, invoke 5, service 16.
        assert_eq!(message, hex("02050510aabbccddeeff"));

        let mut flow = Flow::new(false);
        flow.inspect(&hex(WPM_SEG_0), Direction::Request, 1);
        flow.inspect(&hex(WPM_SEG_1), Direction::Request, 2);
        assert_eq!(
            commands(&flow.observations()),
            [(
                CommandKind::Write,
                u32::from(confirmed::WRITE_PROPERTY_MULTIPLE)
            )]
        );
        assert_eq!(flow.stats.bacnet.reassembled, 1);
        assert_eq!(flow.stats.bacnet.confirmed_service.get(16), 2);
    }

    #[test]
    fn reinitialize_restore_then_password_failure() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(REINIT), Direction::Request, 1_000);
        flow.inspect(&hex(ERROR), Direction::Response, 4_000);
        let observations = flow.observations();
        // abortrestore (6) ends a configuration restore: a program load.
        assert_eq!(commands(&observations), vec![(CommandKind::Program, 20)]);
        assert_eq!(
            errors(&observations),
            vec![(ProtocolErrorKind::AuthFailure, (5 << 16) | 26, true)]
        );
        assert_eq!(flow.pdus(), 2);
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.apdu_type.get(0), 1);
        assert_eq!(stats.apdu_type.get(5), 1);
        assert_eq!(stats.confirmed_service.get(20), 2);
        assert_eq!(stats.error_class_code.get(pair_key(5, 26)), 1);
        assert_eq!(stats.bvlc_function.get(0x0a), 2);
        let bacnet = Protocol::Bacnet.index();
        assert_eq!(flow.stats.matched_responses[bacnet], 1);
        assert_eq!(flow.stats.response_time_ns_sum[bacnet], 3_000);
    }

    #[test]
    fn reinitialize_states_and_dcc_kinds() {
        // ReinitializeDevice with only its state (clause 16.4.1.1.1: context tag 0,
        // length 1), invoke 3.
        let reinit = |state: u8| hex(&format!("810a000c01000005031409{state:02x}"));
        let mut flow = Flow::new(false);
        for state in [0u8, 2, 4] {
            flow.inspect(&reinit(state), Direction::Request, u64::from(state));
        }
        flow.inspect(&hex(DCC), Direction::Request, 10);
        assert_eq!(
            commands(&flow.observations()),
            vec![
                (CommandKind::Restart, 20),
                (CommandKind::FileTransfer, 20),
                (CommandKind::Program, 20),
                (CommandKind::DisableCommunication, 17),
            ]
        );
    }

    #[test]
    fn discovery_and_i_am_vendor() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(WHO_IS), Direction::Request, 1);
        flow.inspect(&hex(I_AM), Direction::Response, 2);
        let observations = flow.observations();
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Discovery, 0x108)]
        );
        assert_eq!(
            identities(&observations),
            vec![(
                "10.0.0.2".to_owned(),
                IdentityField::Vendor,
                // ASHRAE vendor 15 per the generated table (tshark 4.0.17).
                "Cornell University (15)".to_owned()
            )]
        );
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.unconfirmed_service.get(8), 1);
        assert_eq!(stats.unconfirmed_service.get(0), 1);
        assert_eq!(stats.bvlc_function.get(0x0b), 1);
    }

    #[test]
    fn read_requests_report_the_objects_they_read() {
        let key = |object_type: u64, instance: u64, property: u64| {
            (((object_type << 22) | instance) << 24) | property
        };
        let mut flow = Flow::new(false);
        // Hand-built per 15.5.1.1: ReadProperty (invoke 7) of analog-input 1,
        // present-value (85).
        flow.inspect(
            &hex("810a001101040005070c0c000000011955"),
            Direction::Request,
            1,
        );
        assert_eq!(objects(&flow.observations()), vec![key(0, 1, 85)]);
        // 15.7.1.1: ReadPropertyMultiple (invoke 8) of analog-input 2 present-value and
        // object-name (77), analog-value 3 present-value.
        flow.inspect(
            &hex("810a001e01040005080e0c000000021e0955094d1f0c008000031e09551f"),
            Direction::Request,
            2,
        );
        assert_eq!(
            objects(&flow.observations()),
            vec![key(0, 2, 85), key(0, 2, 77), key(2, 3, 85)]
        );
        // Replies and other services address nothing.
        flow.inspect(&hex(RP_ACK_MODEL), Direction::Response, 3);
        flow.inspect(&hex(REINIT), Direction::Request, 4);
        assert_eq!(objects(&flow.observations()), Vec::<u64>::new());
    }

    #[test]
    fn read_property_ack_identity_from_its_sender() {
        let mut flow = Flow::new(false);
        // Here the ACKs come from the flow's client: the device is whoever sent them.
        flow.inspect(&hex(RP_ACK_MODEL), Direction::Request, 1);
        flow.inspect(&hex(RP_ACK_APP_VERSION), Direction::Request, 2);
        assert_eq!(
            identities(&flow.observations()),
            vec![
                (
                    "10.0.0.1".to_owned(),
                    IdentityField::Model,
                    "HIY-054".to_owned()
                ),
                (
                    "10.0.0.1".to_owned(),
                    IdentityField::Product,
                    "0.5.7".to_owned()
                ),
            ]
        );
        assert_eq!(flow.stats.bacnet.apdu_type.get(3), 2);
        assert_eq!(flow.stats.bacnet.confirmed_service.get(12), 2);
    }

    #[test]
    fn invoke_ids_match_whichever_side_requests() {
        let mut flow = Flow::new(false);
        // The flow's server requests (invoke 1) and the client answers.
        flow.inspect(&hex(REINIT), Direction::Response, 100);
        // A reply with the same invoke id from the requester itself does not match.
        flow.inspect(&hex(ERROR), Direction::Response, 150);
        assert_eq!(flow.stats.matched_responses[Protocol::Bacnet.index()], 0);
        flow.inspect(&hex(ERROR), Direction::Request, 300);
        assert_eq!(flow.stats.matched_responses[Protocol::Bacnet.index()], 1);
        assert_eq!(
            flow.stats.response_time_ns_sum[Protocol::Bacnet.index()],
            200
        );
    }

    #[test]
    fn rpm_ack_error_counted_not_reported() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(RPM_ACK), Direction::Response, 1);
        assert_eq!(flow.stats.bacnet.error_class_code.get(pair_key(2, 32)), 1);
        assert_eq!(flow.stats.bacnet.confirmed_service.get(14), 1);
        assert!(errors(&flow.observations()).is_empty());
    }

    #[test]
    fn reject_abort_segmented_and_network_messages() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(REJECT), Direction::Response, 1);
        flow.inspect(&hex(ABORT), Direction::Response, 2);
        flow.inspect(&hex(SEGMENTED_ACK), Direction::Response, 3);
        flow.inspect(&hex(SEGMENT_ACK), Direction::Request, 4);
        flow.inspect(&hex(NETWORK_MESSAGE), Direction::Request, 5);
        assert_eq!(
            errors(&flow.observations()),
            vec![
                (ProtocolErrorKind::Rejected, 0x609, true),
                (ProtocolErrorKind::Rejected, 0x704, true),
            ]
        );
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reject_reason.get(9), 1);
        assert_eq!(stats.abort_reason.get(4), 1);
        assert_eq!(stats.segmented.get(1), 1);
        assert_eq!(stats.apdu_type.get(4), 1);
        assert_eq!(stats.net_msg_type.get(0x13), 1);
        assert_eq!(flow.pdus(), 5);
        let summary = stats.summary();
        assert_eq!(summary["segmented"]["true"], 1);
        assert_eq!(summary["apdu_type"]["6"], 1);
        assert!(summary.get("error_class_code").is_none());
    }

    #[test]
    fn malformed_bvlc_is_not_counted() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex("820a0004"), Direction::Request, 1);
        assert_eq!(flow.pdus(), 0);
        assert_eq!(flow.stats.malformed[Protocol::Bacnet.index()], 1);
        assert_eq!(
            errors(&flow.observations()),
            vec![(ProtocolErrorKind::Malformed, 0, false)]
        );
    }

    #[test]
    fn events_when_enabled() {
        let mut flow = Flow::new(true);
        flow.inspect(&hex(ERROR), Direction::Response, 1);
        flow.inspect(&hex(NETWORK_MESSAGE), Direction::Request, 2);
        let events = flow.events();
        let bodies: Vec<_> = events
            .iter()
            .map(|record| match record {
                EveRecord::Protocol(event) => event.body.clone(),
                other => panic!("not a protocol event: {other:?}"),
            })
            .collect();
        assert_eq!(
            bodies,
            vec![
                EventBody::Bacnet(BacnetEvent {
                    llc: false,
                    bvlc_function: Some(0x0a),
                    apdu_type: Some(5),
                    service: Some(20),
                    invoke_id: Some(1),
                    error_class: Some(5),
                    error_code: Some(26),
                    reject_reason: None,
                    abort_reason: None,
                }),
                EventBody::Bacnet(BacnetEvent {
                    llc: false,
                    bvlc_function: Some(0x0b),
                    apdu_type: None,
                    service: None,
                    invoke_id: None,
                    error_class: None,
                    error_code: None,
                    reject_reason: None,
                    abort_reason: None,
                }),
            ]
        );
        assert!(Flow::new(false).events().is_empty());
    }

    #[test]
    fn llc_pdus_count_and_mark_their_events_but_name_no_device() {
        let mut flow = Flow::new(true);
        // The NPDUs of WHO_IS and I_AM, as carried over 802.2 LLC (no BVLC).
        flow.inspect_llc(&hex(WHO_IS)[4..]);
        flow.inspect_llc(&hex(I_AM)[4..]);
        flow.inspect_llc(&[0x02]);
        assert_eq!(flow.pdus(), 2);
        assert_eq!(flow.stats.malformed[Protocol::Bacnet.index()], 1);
        assert!(flow.stats.bacnet.bvlc_function.is_empty());
        assert_eq!(flow.stats.bacnet.unconfirmed_service.get(0), 1);
        let observations = flow.observations();
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Discovery, 0x108)]
        );
        assert!(identities(&observations).is_empty());
        let events = flow.events();
        assert_eq!(events.len(), 2);
        for record in events {
            let EveRecord::Protocol(event) = record else {
                panic!("a flow record");
            };
            let EventBody::Bacnet(body) = event.body else {
                panic!("not BACnet");
            };
            assert!(body.llc);
            assert_eq!(body.bvlc_function, None);
        }
    }

    /// bacnet-services-segmented.pcap frame 630: ReadProperty-ACK of device,29
    /// system-status (112) = operational (0), from a device behind router net 3.
    const RP_ACK_SYSTEM_STATUS_ROUTED: &str = "810a001801080003011d30920c0c0200001d19703e91003f";
    /// The same ACK without its NPDU source specifier (SNET 3, SADR 0x1d): sent by
    /// the device itself, the IP sender.
    const RP_ACK_SYSTEM_STATUS: &str = "810a0014010030920c0c0200001d19703e91003f";

    #[test]
    fn a_device_system_status_is_its_mode() {
        let mode = |ack: &str| {
            let mut flow = Flow::new(false);
            flow.inspect(&hex(ack), Direction::Response, 1);
            identities(&flow.observations())
                .into_iter()
                .filter(|(_, field, _)| *field == IdentityField::Mode)
                .map(|(_, _, value)| value)
                .collect::<Vec<_>>()
        };
        assert_eq!(mode(RP_ACK_SYSTEM_STATUS), ["operational"]);
        // Routed from another network, the mode is not the IP sender's.
        assert!(mode(RP_ACK_SYSTEM_STATUS_ROUTED).is_empty());
        assert_eq!(
            mode(&RP_ACK_SYSTEM_STATUS.replacen("3e91003f", "3e91033f", 1)),
            ["download-in-progress"]
        );
        // A proprietary value (past the standard list) says nothing comparable.
        assert!(mode(&RP_ACK_SYSTEM_STATUS.replacen("3e91003f", "3e91403f", 1)).is_empty());
        // The same property of another object type is not the device's mode.
        assert!(mode(&RP_ACK_SYSTEM_STATUS.replacen("0c0200001d", "0c0000001d", 1)).is_empty());
    }
}
