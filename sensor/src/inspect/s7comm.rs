//! S7comm inspection: the worker's statistics, protocol events, commands,
//! identities and protocol errors, read from the [`otsensor_wire::s7comm`] views.

use otsensor_wire::s7comm::*;
use otsensor_wire::{Direction, Protocol};

use crate::inspect::histogram::{pair, pair_key, Histogram};
use crate::inspect::reassembly::SEGMENT_BUFFER_LEN;
use crate::inspect::{EventBody, PduCtx, S7commEvent};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};
use std::collections::BTreeMap;

/// Per-worker S7comm statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`, "Summary document", s7comm).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// `s7comm.header.rosctr` of every PDU.
    pub rosctr: Histogram,
    /// `s7comm.param.func` of job, ack and ack-data PDUs with a parameter part.
    pub function: Histogram,
    /// Userdata `group/subfunction` ([`pair_key`]); mode-transition PDUs (group 0)
    /// carry no `s7comm.param.userdata.subfunc` in Wireshark, so their subfunction
    /// is [`NO_SUBFUNCTION`], written `None` as tshark's summary does.
    pub userdata_group_subfunc: Histogram,
    /// Non-zero header error `class/code` of ack and ack-data.
    pub header_error: Histogram,
    /// Every `s7comm.data.returncode`: per item of read-var responses and
    /// write-var requests and responses, and the userdata data return code.
    pub return_code: Histogram,
    /// Non-zero userdata `s7comm.param.errcod`.
    pub param_error_code: Histogram,
    /// PI service names of PI-service and PLC-stop jobs, as indexes of
    /// [`PI_SERVICE_NAMES`] ([`PI_SERVICE_OTHER`] for names outside it).
    pub pi_service: Histogram,
    /// `s7comm.data.userdata.szl_id` of read-SZL requests and first responses.
    pub szl_id: Histogram,
    /// `cotp.type` of every TPDU on S7 flows (not a summary histogram of the
    /// s7comm layer: tshark counts these under `cotp`).
    pub cotp_type: Histogram,
    /// S7comm PDUs sent in several DTs (counted at their final DT).
    pub segmented: u64,
    /// Segmented PDUs reassembled and dissected.
    pub reassembled: u64,
    /// Segmented PDUs not reassembled (counted, not dissected): every buffer in use,
    /// longer than [`SEGMENT_BUFFER_LEN`], or a TPDU number out of sequence.
    pub reassembly_pool_exhausted: u64,
    /// Half-open messages (a first segment, no end) whose buffer was taken for a new
    /// message after `reassembly::HALF_OPEN_TIMEOUT_NS`.
    pub reassembly_expired: u64,
    pub reassembly_overflow: u64,
    pub reassembly_out_of_sequence: u64,
}

/// The subfunction key of mode-transition userdata, which has no subfunction field.
pub const NO_SUBFUNCTION: u16 = 0xFFFF;

/// PI service names from Wireshark's `s7comm` dissector (table `pi_service_names`:
/// the PLC services and a few NC ones); the histogram key is the index.
pub const PI_SERVICE_NAMES: &[&str] = &[
    "_INSE",
    "_INS2",
    "_DELE",
    "P_PROGRAM",
    "_MODU",
    "_GARB",
    "_N_LOGIN_",
    "_N_LOGOUT",
    "_N_CANCEL",
    "_N_DASAVE",
    "_N_F_DELE",
];

/// The `pi_service` key of a name outside [`PI_SERVICE_NAMES`].
pub const PI_SERVICE_OTHER: u32 = u32::MAX;

fn pi_service_key(name: &[u8]) -> u32 {
    PI_SERVICE_NAMES
        .iter()
        .position(|known| known.as_bytes() == name)
        .map_or(PI_SERVICE_OTHER, |index| index as u32)
}

fn pi_service_label(key: u32) -> String {
    PI_SERVICE_NAMES
        .get(key as usize)
        .map_or_else(|| "other".to_owned(), |name| (*name).to_owned())
}

fn group_subfunction_label(key: u32) -> String {
    if key & 0xFFFF == u32::from(NO_SUBFUNCTION) {
        format!("{}/None", key >> 16)
    } else {
        pair(key)
    }
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.rosctr.merge(&other.rosctr);
        self.function.merge(&other.function);
        self.userdata_group_subfunc
            .merge(&other.userdata_group_subfunc);
        self.header_error.merge(&other.header_error);
        self.return_code.merge(&other.return_code);
        self.param_error_code.merge(&other.param_error_code);
        self.pi_service.merge(&other.pi_service);
        self.szl_id.merge(&other.szl_id);
        self.cotp_type.merge(&other.cotp_type);
        self.segmented += other.segmented;
        self.reassembled += other.reassembled;
        self.reassembly_pool_exhausted += other.reassembly_pool_exhausted;
        self.reassembly_expired += other.reassembly_expired;
        self.reassembly_overflow += other.reassembly_overflow;
        self.reassembly_out_of_sequence += other.reassembly_out_of_sequence;
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        put("rosctr", &self.rosctr, self.rosctr.to_decimal_map());
        put("function", &self.function, self.function.to_decimal_map());
        put(
            "userdata_group_subfunc",
            &self.userdata_group_subfunc,
            self.userdata_group_subfunc.to_map(group_subfunction_label),
        );
        put(
            "header_error",
            &self.header_error,
            self.header_error.to_map(pair),
        );
        put(
            "return_code",
            &self.return_code,
            self.return_code.to_decimal_map(),
        );
        put(
            "param_error_code",
            &self.param_error_code,
            self.param_error_code.to_decimal_map(),
        );
        put(
            "pi_service",
            &self.pi_service,
            self.pi_service.to_map(pi_service_label),
        );
        put("szl_id", &self.szl_id, self.szl_id.to_decimal_map());
        put(
            "cotp_type",
            &self.cotp_type,
            self.cotp_type.to_decimal_map(),
        );
        for (name, count) in [
            ("segmented", self.segmented),
            ("reassembled", self.reassembled),
            ("reassembly_pool_exhausted", self.reassembly_pool_exhausted),
            ("reassembly_expired", self.reassembly_expired),
            ("reassembly_overflow", self.reassembly_overflow),
            (
                "reassembly_out_of_sequence",
                self.reassembly_out_of_sequence,
            ),
        ] {
            if count > 0 {
                out.insert(name.to_owned(), serde_json::json!(count));
            }
        }
        serde_json::Value::Object(out)
    }
}

/// `s7comm.data.returncode` of success.
pub const RETURN_CODE_SUCCESS: u8 = 0xFF;

/// `s7comm.data.returncode` 0 ("reserved") of the items of write-var requests.
pub const RETURN_CODE_RESERVED: u8 = 0x00;

/// Userdata type (`s7comm.param.userdata.type`): request and response.
const USERDATA_REQUEST: u8 = 4;
const USERDATA_RESPONSE: u8 = 8;

/// Time functions (group 7) subfunction 2: set clock (Wireshark `s7comm` table
/// `userdata_time_subfunc_names`: 1 read clock, 2 set clock, 3 read clock following,
/// 4 set clock).
const SUBFUNC_SET_CLOCK: u8 = 2;
const SUBFUNC_SET_CLOCK_ALT: u8 = 4;

/// Bits of [`AppState::flags`](crate::inspect::AppState): per direction,
/// what the first DT of an unfinished segmented TSDU carried.
const SEGMENT_NONE: u32 = 0;
const SEGMENT_S7COMM: u32 = 1;
const SEGMENT_PLUS: u32 = 2;
const SEGMENT_OTHER: u32 = 3;

fn segment_shift(direction: Direction) -> u32 {
    match direction {
        Direction::Request => 0,
        Direction::Response => 2,
    }
}

/// Walks the data items of a read-var response or write-var request: return code,
/// transport size, length (bits for sizes 3, 4 and 5, else bytes), value, and a fill
/// byte after an odd-length value that is not the last (Wireshark
/// `s7comm_decode_response_read_data`). Calls `each` with every return code.
fn data_item_return_codes(data: &[u8], items: u8, mut each: impl FnMut(u8)) {
    let mut at = 0usize;
    for item in 0..items {
        let (Some(&code), Some(&size)) = (data.get(at), data.get(at + 1)) else {
            return;
        };
        each(code);
        let Some(&[high, low]) = data.get(at + 2..at + 4) else {
            return;
        };
        let declared = usize::from(u16::from_be_bytes([high, low]));
        // Only items with data (success, or "reserved" in write requests) carry a
        // value; failed items keep a length but no value (s7comm-ident-szl-upload.pcap
        // frame 32: five 0x0A items of 4 bytes each).
        let bytes = match (code, size) {
            (RETURN_CODE_SUCCESS | RETURN_CODE_RESERVED, 3..=5) => declared.div_ceil(8),
            (RETURN_CODE_SUCCESS | RETURN_CODE_RESERVED, _) => declared,
            _ => 0,
        };
        at += 4 + bytes;
        if bytes % 2 == 1 && item + 1 < items {
            at += 1;
        }
    }
}

/// CPU functions (group 4) subfunction 0x13, alarm messages: a response's payload
/// is a function byte, an object count and one return code per object (Wireshark
/// `s7comm_decode_ud_cpu_alarm_main`; s7comm-wincc-alarm-read-write.pcapng frame 12
/// answers 0x0A). `None` for other PDUs.
const SUBFUNC_ALARM_QUERY: u8 = 0x13;

fn alarm_response_return_codes<'a>(userdata: &Userdata<'a>) -> Option<&'a [u8]> {
    if userdata.function_group() != group::CPU_FUNCTIONS
        || userdata.subfunction() != SUBFUNC_ALARM_QUERY
        || userdata.kind_code() != USERDATA_RESPONSE
    {
        return None;
    }
    let payload = userdata.payload();
    let count = usize::from(*payload.get(1)?);
    let codes = payload.get(2..)?;
    codes.get(..count.min(codes.len()))
}

/// The command kind of a job or userdata request.
fn command_kind(pdu: &S7comm<'_>) -> CommandKind {
    if let Some(userdata) = pdu.userdata() {
        if userdata.function_group() == group::TIME_FUNCTIONS
            && matches!(
                userdata.subfunction(),
                SUBFUNC_SET_CLOCK | SUBFUNC_SET_CLOCK_ALT
            )
        {
            return CommandKind::TimeSync;
        }
    }
    match pdu.kind() {
        FunctionKind::Read => CommandKind::Read,
        FunctionKind::Write => CommandKind::Write,
        FunctionKind::Program => CommandKind::Program,
        FunctionKind::Stop => CommandKind::Stop,
        FunctionKind::Start => CommandKind::Start,
        FunctionKind::Diagnostic => CommandKind::Diagnostic,
        FunctionKind::Setup | FunctionKind::Other => CommandKind::Other,
    }
}

/// Writes `args` into `buf` without allocating; the written prefix.
fn format_into<'b>(buf: &'b mut [u8], args: std::fmt::Arguments<'_>) -> &'b [u8] {
    use std::io::Write;
    let capacity = buf.len();
    let mut cursor = &mut buf[..];
    let _ = cursor.write_fmt(args);
    let written = capacity - cursor.len();
    buf.get(..written).unwrap_or(&[])
}

/// Identity the PLC reports in a read-SZL response: module identification (0x0011:
/// order number, hardware and firmware versions), the CPU's operating mode (0x0424)
/// and component identification (0x001C: names, serial number, module type).
fn report_identity(szl: &SzlResponse<'_>, ctx: &mut PduCtx<'_>) {
    for record in szl.module_identification() {
        let mut text = [0u8; 24];
        match record.index {
            ModuleIdentification::INDEX_MODULE => ctx.identity(
                Protocol::S7comm,
                IdentityField::OrderNumber,
                trim_padding(record.order_number),
            ),
            ModuleIdentification::INDEX_HARDWARE => {
                // Hardware release: the two version words (Ausbg, Ausbe).
                let value = format_into(
                    &mut text,
                    format_args!("V{}.{}", record.version_high, record.version_low),
                );
                ctx.identity(Protocol::S7comm, IdentityField::Hardware, value);
            }
            _ => {
                if let Some((major, minor, patch)) = record.firmware_version() {
                    let value = format_into(&mut text, format_args!("V{major}.{minor}.{patch}"));
                    ctx.identity(Protocol::S7comm, IdentityField::Firmware, value);
                }
            }
        }
    }
    if let Some(mode) = szl.cpu_mode() {
        let mut text = [0u8; 24];
        let value = match (mode.name(), mode) {
            (Some(name), _) => name.as_bytes(),
            (None, CpuMode::Unknown(nibble)) => {
                format_into(&mut text, format_args!("unknown (0x{nibble:x})"))
            }
            (None, _) => &[],
        };
        ctx.identity(Protocol::S7comm, IdentityField::Mode, value);
    }
    for record in szl.component_identification() {
        let field = match record.index {
            ComponentIdentification::INDEX_SYSTEM_NAME
            | ComponentIdentification::INDEX_MODULE_NAME => IdentityField::Name,
            ComponentIdentification::INDEX_SERIAL_NUMBER => IdentityField::Serial,
            ComponentIdentification::INDEX_MODULE_TYPE_NAME => IdentityField::Model,
            _ => continue,
        };
        ctx.identity(Protocol::S7comm, field, record.text());
    }
}

/// Inspects one TPKT packet of an S7 flow. COTP connection management (CR, CC, DR,
/// ...) is not S7comm (tshark counts it as `cotp`) and only counted in `cotp_type`.
/// A DT carrying protocol id 0x72 is one S7comm-plus PDU and nothing more; one
/// carrying 0x32 is one S7comm PDU: statistics, request/response matching by PDU
/// reference, commands, identity from SZL responses, error replies, the EVE event.
/// An S7comm PDU segmented into DTs without end-of-TSDU is reassembled per flow
/// direction in the worker's [`SegmentPool`](crate::inspect::reassembly::SegmentPool)
/// and dissected once, at its final DT; S7comm-plus and other TSDUs are counted once
/// there, as the protocol their first DT announced. A TSDU that cannot be reassembled
/// (no free buffer, longer than the buffer, a TPDU number out of sequence) is still
/// counted as one S7comm PDU, not dissected, and the drop is counted.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    // Before a DT shows the flow's protocol, a broken TPKT or COTP counts as S7comm's.
    let carrier = ctx.state.protocol.unwrap_or(Protocol::S7comm);
    let Ok(tpkt) = Tpkt::new_checked(pdu) else {
        ctx.malformed(carrier);
        return;
    };
    let Ok(cotp) = Cotp::new_checked(tpkt.payload()) else {
        ctx.malformed(carrier);
        return;
    };
    ctx.stats
        .s7comm
        .cotp_type
        .add(u32::from(cotp.pdu_type().code()));
    if cotp.pdu_type() != CotpType::Data {
        return;
    }
    let payload = cotp.payload();
    let number = cotp.tpdu_number().unwrap_or(0);
    let shift = segment_shift(ctx.direction);
    let pending = (ctx.state.flags >> shift) & 0b11;
    if cotp.eot() == Some(false) {
        // Empty DTs without end-of-TSDU occur between PDUs (STEP 7 sends one before
        // each request in s7comm-read-set-plc-time.pcap); they add nothing to the
        // TSDU, so they start no segment.
        if payload.is_empty() {
            return;
        }
        if pending == SEGMENT_NONE {
            let first = match payload.first() {
                Some(&PROTOCOL_ID) => SEGMENT_S7COMM,
                Some(&PROTOCOL_ID_PLUS) => SEGMENT_PLUS,
                _ => SEGMENT_OTHER,
            };
            ctx.state.flags |= first << shift;
            // Every TSDU is reassembled: S7comm, S7comm-plus, and others (MMS over
            // the OSI stack).
            start_tsdu(payload, number, ctx);
        } else {
            continue_tsdu(payload, number, ctx);
        }
        return;
    }
    if pending != SEGMENT_NONE {
        ctx.state.flags &= !(0b11 << shift);
        match pending {
            SEGMENT_S7COMM => {
                ctx.stats.s7comm.segmented += 1;
                let mut tsdu = [0u8; SEGMENT_BUFFER_LEN];
                let len = finish_tsdu(payload, number, ctx, &mut tsdu);
                identified(ctx, Protocol::S7comm);
                match S7comm::new_checked(tsdu.get(..len).unwrap_or(&[])) {
                    Ok(s7) if len > 0 => {
                        ctx.count(Protocol::S7comm);
                        ctx.stats.s7comm.reassembled += 1;
                        inspect_s7comm(&s7, ctx);
                    }
                    // Dropped on the way: the PDU is counted, not dissected.
                    _ if len == 0 => ctx.count(Protocol::S7comm),
                    _ => ctx.malformed(Protocol::S7comm),
                }
            }
            SEGMENT_PLUS => {
                identified(ctx, Protocol::S7commPlus);
                let mut tsdu = [0u8; SEGMENT_BUFFER_LEN];
                let len = finish_tsdu(payload, number, ctx, &mut tsdu);
                if len > 0 {
                    super::s7commplus::inspect_pdu(tsdu.get(..len).unwrap_or(&[]), ctx);
                } else {
                    // Dropped on the way: the PDU is counted, not dissected.
                    ctx.count(Protocol::S7commPlus);
                }
            }
            _ => {
                let mut tsdu = [0u8; SEGMENT_BUFFER_LEN];
                let len = finish_tsdu(payload, number, ctx, &mut tsdu);
                if len > 0 {
                    inspect_other(tsdu.get(..len).unwrap_or(&[]), ctx);
                }
            }
        }
        return;
    }
    match payload.first() {
        Some(&PROTOCOL_ID) => {}
        Some(&PROTOCOL_ID_PLUS) => {
            identified(ctx, Protocol::S7commPlus);
            super::s7commplus::inspect_pdu(payload, ctx);
            return;
        }
        // Empty DTs are nothing; other ISO-transport users may be MMS.
        _ => {
            inspect_other(payload, ctx);
            return;
        }
    }
    identified(ctx, Protocol::S7comm);
    let Ok(s7) = S7comm::new_checked(payload) else {
        ctx.malformed(Protocol::S7comm);
        return;
    };
    ctx.count(Protocol::S7comm);
    inspect_s7comm(&s7, ctx);
}

/// Names the flow after the first protocol one of its DTs showed.
fn identified(ctx: &mut PduCtx<'_>, protocol: Protocol) {
    if ctx.state.protocol.is_none() {
        ctx.state.protocol = Some(protocol);
    }
}

/// A whole COTP DT TSDU that is neither S7comm nor S7comm-plus: MMS (directly on COTP
/// or over the OSI session, presentation and ACSE layers) or an ISO-transport user
/// the sensor does not dissect.
fn inspect_other(tsdu: &[u8], ctx: &mut PduCtx<'_>) {
    if super::mms::inspect_dt(tsdu, ctx) {
        identified(ctx, Protocol::Mms);
    }
}

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// The TPDU number the DT after one numbered `number` may carry. ISO 8073 class 0
/// (the class S7 uses) does not sequence DTs, and S7 stacks number them all 0; a
/// stack that counts them counts up by one (mod 128). Anything else is out of
/// sequence.
fn in_sequence(previous: u8, number: u8) -> bool {
    number == previous || number == (previous + 1) & 0x7F
}

/// The first DT of a segmented S7 PDU: takes a reassembly buffer for this direction.
fn start_tsdu(payload: &[u8], number: u8, ctx: &mut PduCtx<'_>) {
    let direction = direction_index(ctx.direction);
    let mut handle = ctx.state.segment_slots.get(direction).copied().unwrap_or(0);
    // A stale handle: this direction's half-open TSDU expired (see `reassembly`).
    if !ctx.segments.holds(handle) {
        let acquired = ctx.segments.acquire(ctx.ts_ns);
        ctx.stats.s7comm.reassembly_expired += ctx.segments.take_expired();
        match acquired {
            Some(acquired) => handle = acquired,
            None => {
                ctx.stats.s7comm.reassembly_pool_exhausted += 1;
                return;
            }
        }
        if let Some(slot) = ctx.state.segment_slots.get_mut(direction) {
            *slot = handle;
        }
    }
    if let Some(buffer) = ctx.segments.get_mut(handle) {
        // The tag holds the last TPDU number seen.
        buffer.start(u32::from(number), 0);
        if buffer.append(payload).is_err() {
            ctx.stats.s7comm.reassembly_overflow += 1;
            release_tsdu(ctx);
        }
    }
}

/// A middle DT: appended to this direction's buffer, or the TSDU is dropped (out of
/// sequence, overflow). Without a buffer (exhausted pool, dropped earlier) it is
/// ignored.
fn continue_tsdu(payload: &[u8], number: u8, ctx: &mut PduCtx<'_>) {
    let direction = direction_index(ctx.direction);
    let handle = ctx.state.segment_slots.get(direction).copied().unwrap_or(0);
    let Some(buffer) = ctx.segments.get_mut(handle) else {
        return;
    };
    let previous = u8::try_from(buffer.tag).unwrap_or(0);
    if !in_sequence(previous, number) {
        ctx.stats.s7comm.reassembly_out_of_sequence += 1;
        release_tsdu(ctx);
        return;
    }
    buffer.tag = u32::from(number);
    if buffer.append(payload).is_err() {
        ctx.stats.s7comm.reassembly_overflow += 1;
        release_tsdu(ctx);
    }
}

/// The final DT (end-of-TSDU): the whole S7 PDU copied into `out`; its length, 0 when
/// the TSDU was dropped.
fn finish_tsdu(
    payload: &[u8],
    number: u8,
    ctx: &mut PduCtx<'_>,
    out: &mut [u8; SEGMENT_BUFFER_LEN],
) -> usize {
    continue_tsdu(payload, number, ctx);
    let direction = direction_index(ctx.direction);
    let handle = ctx.state.segment_slots.get(direction).copied().unwrap_or(0);
    let len = ctx
        .segments
        .get_mut(handle)
        .map_or(0, |buffer| buffer.copy_to(out));
    release_tsdu(ctx);
    len
}

/// Returns this direction's reassembly buffer to the pool.
fn release_tsdu(ctx: &mut PduCtx<'_>) {
    let direction = direction_index(ctx.direction);
    if let Some(handle) = ctx.state.segment_slots.get_mut(direction) {
        ctx.segments.release(handle);
    }
}

fn inspect_s7comm(s7: &S7comm<'_>, ctx: &mut PduCtx<'_>) {
    let rosctr = s7.rosctr();
    if s7.trailing_bytes() > 0 {
        // The COTP payload runs past the lengths in the S7 header.
        let trailing = u32::try_from(s7.trailing_bytes()).unwrap_or(u32::MAX);
        ctx.protocol_error(Protocol::S7comm, ProtocolErrorKind::SpecViolation, trailing);
    }
    let function = if s7.parameter().is_empty() {
        None
    } else {
        s7.function()
    };
    let userdata = s7.userdata();
    let stats = &mut ctx.stats.s7comm;
    stats.rosctr.add(u32::from(rosctr.code()));
    if let Some(function) = function {
        stats.function.add(u32::from(function.code()));
    }
    let header_error = s7.header_error().filter(|&error| error != 0);
    if let Some(error) = header_error {
        let [class, code] = error.to_be_bytes();
        stats
            .header_error
            .add(pair_key(u16::from(class), u16::from(code)));
        // Wireshark also shows a header error as `s7comm.param.errcod` (class << 8 |
        // code): tshark's summary counts 0xD241 under both in
        // s7comm-ident-szl-upload.pcap.
        stats.param_error_code.add(u32::from(error));
    }
    if let Some(name) = s7.pi_service() {
        stats.pi_service.add(pi_service_key(name));
    }
    // Return codes of the data items, and the first that is not success (an error
    // reply when the PDU is a response).
    let mut failed_item: Option<u8> = None;
    let mut count_code = |code: u8| {
        stats.return_code.add(u32::from(code));
        if code != RETURN_CODE_SUCCESS && failed_item.is_none() {
            failed_item = Some(code);
        }
    };
    match (rosctr, function) {
        (Rosctr::AckData, Some(Function::ReadVar)) | (Rosctr::Job, Some(Function::WriteVar)) => {
            let items = s7.parameter().get(1).copied().unwrap_or(0);
            data_item_return_codes(s7.data(), items, &mut count_code);
        }
        (Rosctr::AckData, Some(Function::WriteVar)) => {
            let items = usize::from(s7.parameter().get(1).copied().unwrap_or(0));
            for &code in s7.data().iter().take(items) {
                count_code(code);
            }
        }
        _ => {}
    }
    let mut param_error = None;
    if let Some(userdata) = &userdata {
        let group = u16::from(userdata.function_group());
        let subfunction = if group == u16::from(group::MODE_TRANSITION) {
            NO_SUBFUNCTION
        } else {
            u16::from(userdata.subfunction())
        };
        stats
            .userdata_group_subfunc
            .add(pair_key(group, subfunction));
        if let Some(code) = userdata.return_code() {
            count_code(code);
        }
        if let Some(objects) = alarm_response_return_codes(userdata) {
            objects.iter().copied().for_each(&mut count_code);
        }
        param_error = userdata.error_code().filter(|&code| code != 0);
        if let Some(code) = param_error {
            stats.param_error_code.add(u32::from(code));
        }
        if let Some((szl_id, _)) = userdata.szl() {
            stats.szl_id.add(u32::from(szl_id));
        }
    }
    if ctx.direction == Direction::Request {
        if let Some((szl_id, index)) = userdata.as_ref().and_then(|userdata| userdata.szl()) {
            ctx.object_access(
                Protocol::S7comm,
                (u64::from(szl_id) << 16) | u64::from(index),
            );
        }
    }
    let reference = u32::from(s7.pdu_reference());
    match (rosctr, &userdata) {
        (Rosctr::Job, _) => {
            let code = u32::from(function.map_or(0, Function::code));
            ctx.state.request(reference, code, ctx.ts_ns);
            ctx.command(Protocol::S7comm, command_kind(s7), code);
        }
        (Rosctr::Ack | Rosctr::AckData, _) => {
            if let Some((_, latency)) = ctx.state.response(reference, ctx.ts_ns) {
                ctx.response_time(Protocol::S7comm, latency);
            }
            if let Some(error) = header_error {
                ctx.protocol_error(
                    Protocol::S7comm,
                    ProtocolErrorKind::ErrorReply,
                    u32::from(error),
                );
            }
            if let Some(code) = failed_item {
                ctx.protocol_error(
                    Protocol::S7comm,
                    ProtocolErrorKind::ErrorReply,
                    0x2_0000 | u32::from(code),
                );
            }
        }
        (Rosctr::Userdata, Some(userdata)) => {
            // Userdata requests and responses share the PDU reference space of
            // jobs; a tag bit keeps them apart.
            let id = 0x1_0000 | reference;
            let code = 0x1_0000
                | (u32::from(userdata.function_group()) << 8)
                | u32::from(userdata.subfunction());
            match userdata.kind_code() {
                USERDATA_REQUEST => {
                    ctx.state.request(id, code, ctx.ts_ns);
                    ctx.command(Protocol::S7comm, command_kind(s7), code);
                }
                USERDATA_RESPONSE => {
                    if let Some((_, latency)) = ctx.state.response(id, ctx.ts_ns) {
                        ctx.response_time(Protocol::S7comm, latency);
                    }
                    if let Some(code) = param_error {
                        ctx.protocol_error(
                            Protocol::S7comm,
                            ProtocolErrorKind::ErrorReply,
                            0x1_0000 | u32::from(code),
                        );
                    }
                    if let Some(code) = failed_item {
                        ctx.protocol_error(
                            Protocol::S7comm,
                            ProtocolErrorKind::ErrorReply,
                            0x2_0000 | u32::from(code),
                        );
                    }
                    if let Some(szl) = userdata.szl_response() {
                        report_identity(&szl, ctx);
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    if ctx.events_enabled() {
        let mut items = arrayvec::ArrayVec::new();
        let mut items_omitted = 0u16;
        for item in s7.var_items() {
            if items.try_push(item).is_err() {
                items_omitted = items_omitted.saturating_add(1);
            }
        }
        ctx.event(EventBody::S7comm(S7commEvent {
            rosctr: rosctr.code(),
            function: function.map(Function::code),
            error_class: s7.error_class(),
            error_code: s7.error_code(),
            items,
            items_omitted,
        }));
    }
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod inspect_tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::inspect::test_capture::{commands, errors, framed_pdus, hex, identities};
    use crate::inspect::{AppState, FlowInfo, Outputs, ProtocolStats, RecentCache};
    use crate::observe::Observation;
    use crate::observe::{Delivery, ObservationSink};
    use crate::output::eve::{EveRecord, EventSink};

    // s7comm-step7-plc-stop.pcapng frames 1 and 2: job 0x29 "P_PROGRAM" and its ack.
    const PLC_STOP: &str = "0300002102f0803201000035000010000029000000000009505f50524f4752414d";
    const PLC_STOP_ACK: &str = "0300001402f08032030000350000010000000029";
    // s7comm-ident-szl-upload.pcap frames 4 (COTP CR), 10/11 (read SZL 0x0011 and
    // its response), 13 (SZL 0x001C response), 20/21 (start upload and an ack with
    // header error 0xD2/0x41), 31/32 (read var of 5 items, all answered 0x0A).
    const COTP_CR: &str = "0300001611e00000000100c0010ac1020100c2020101";
    const SZL_REQ: &str = "0300002102f080320700000100000800080001120411440100ff09000400110000";
    const SZL_0011: &str = "0300009902f080320700000100000c007c000112081284010000000000ff09007800110000001c0004000136455337203331352d32454831342d304142302000c000040001000636455337203331352d32454831342d304142302000c0000400010007202020202020202020202020202020202020202000c0560302060081426f6f74204c6f61646572202020202020202020000041200909";
    const SZL_001C: &str = "0300017d02f080320700000200000c0160000112081284010000000000ff09015c001c00000022000a0001534e4150372d53455256455200000000000000000000000000000000000000000002435055203331352d3220504e2f445000000000000000000000000000000000000003000000000000000000000000000000000000000000000000000000000000000000044f726967696e616c205369656d656e732045717569706d656e7400000000000000055320432d433255523238393232303132000000000000000000000000000000000007435055203331352d3220504e2f4450000000000000000000000000000000000000084d4d4320323637464631314600000000000000000000000000000000000000000009002af60000010000000000000000000000000000000000000000000000000000000a0000000000000000000000000000000000000000000000000000000000000000000b0000000000000000000000000000000000000000000000000000000000000000";
    const START_UPLOAD: &str =
        "0300002302f080320100000600001200001d00000000000000095f3042303030303041";
    const ACK_ERROR: &str = "0300001302f08032020000060000000000d241";
    const READ_VAR_5_FAILED: &str =
        "0300002902f080320300000a0000020014000004050a0000040a0000040a0000040a0000040a000004";
    // s7comm-read-set-plc-time.pcap frame 43: userdata group 7 subfunction 2, set clock.
    const SET_CLOCK: &str =
        "0300002702f080320700000c000008000e0001120411470200ff09000a00191408201159330400";
    // s7comm-read-set-plc-time.pcap frame 11: an empty DT without end-of-TSDU.
    const EMPTY_DT_NO_EOT: &str = "0300000702f000";
    // s7comm-ident-szl-upload.pcap frame 17: the read-SZL 0x0424 response (mode
    // transition record, bzu-id 0x08: RUN, previous mode 0).
    const SZL_0424_RUN: &str = "0300003d02f080320700000400000c0020000112081284010000000000ff09001c04240000001400015144ff0800000000000000002410042124250005";
    // SZL_0011 (s7comm-ident-szl-upload.pcap frame 11) cut after 60 bytes of its S7
    // PDU into two DTs: the first without end-of-TSDU (COTP 02 f0 00), the last with
    // it (02 f0 80), both TPDU number 0 as S7 stacks send them.
    const SZL_0011_DT1: &str = "0300004302f000320700000100000c007c000112081284010000000000ff09007800110000001c0004000136455337203331352d32454831342d304142302000c00004";
    const SZL_0011_DT2: &str = "0300005d02f0800001000636455337203331352d32454831342d304142302000c0000400010007202020202020202020202020202020202020202000c0560302060081426f6f74204c6f61646572202020202020202020000041200909";
    // A middle DT without end-of-TSDU carrying 1000 zero bytes (built: TPKT length
    // 0x03EF = 7 + 1000), TPDU number 0.
    const MIDDLE_DT_HEADER: &str = "030003ef02f000";
    // s7comm-wincc-alarm-read-write.pcapng frame 6: read var of 8 S7ANY items (DB1
    // bytes 2, 8, 4, 0; flags M1.0 and M1.1; timer 0; counter 0); frame 35: write var
    // of one bit, M1.1.
    const READ_VAR_8: &str = "0300007302f080320100000002006200000408120a10010001000184000010120a10080001000184000040120a10060001000184000020120a10040001000184000000120a10010001000083000008120a10010001000083000009120a101d000100001d000000120a101c000100001c000000";
    const WRITE_VAR_BIT: &str =
        "0300002402f080320100000001000e00050501120a100100010000830000090003000100";
    // An S7comm-plus PDU (protocol id 0x72) and a truncated S7comm header.
    const PLUS: &str = "0300000b02f08072010000";
    const TRUNCATED_S7: &str = "0300000b02f08032010000";

    struct Harness {
        flow: FlowInfo,
        state: AppState,
        segments: crate::inspect::reassembly::SegmentPool,
        stats: ProtocolStats,
        observations: ObservationSink,
        received: crossbeam_channel::Receiver<crate::observe::Stamped>,
        recent: RecentCache,
        events: EventSink,
        event_rx: crossbeam_channel::Receiver<EveRecord>,
    }

    impl Harness {
        fn new() -> Harness {
            let (tx, received) = crossbeam_channel::unbounded();
            let (event_tx, event_rx) = crossbeam_channel::unbounded();
            Harness {
                flow: FlowInfo {
                    flow_id: 7,
                    client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 49152),
                    server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 102),
                    client_mac: None,
                    server_mac: None,
                    ip_protocol: 6,
                    vlan: 0,
                },
                state: AppState::default(),
                segments: crate::inspect::reassembly::SegmentPool::new(2),
                stats: ProtocolStats::default(),
                observations: ObservationSink::new(tx, Delivery::Block),
                received,
                recent: RecentCache::new(64, 60_000_000_000),
                events: EventSink::new(event_tx, Delivery::Block),
                event_rx,
            }
        }

        fn feed(&mut self, direction: Direction, ts_ns: u64, pdu: &[u8], events: bool) {
            let mut ctx = PduCtx {
                dnp3: &mut crate::inspect::dnp3::ReassemblyPool::new(1),
                segments: &mut self.segments,
                ts_ns,
                direction,
                flow: &self.flow,
                state: &mut self.state,
                stats: &mut self.stats,
                out: Outputs {
                    observations: &mut self.observations,
                    recent: &mut self.recent,
                    events: if events { Some(&mut self.events) } else { None },
                },
            };
            inspect(pdu, &mut ctx);
        }

        fn observations(&self) -> Vec<Observation> {
            self.received.try_iter().map(|s| s.observation).collect()
        }

        fn pdus(&self, protocol: Protocol) -> u64 {
            self.stats.pdus[protocol.index()]
        }
    }

    #[test]
    fn plc_stop_is_a_stop_command_matched_to_its_ack() {
        let mut h = Harness::new();
        h.feed(Direction::Request, 1_000, &hex(PLC_STOP), true);
        h.feed(Direction::Response, 5_000, &hex(PLC_STOP_ACK), true);
        assert_eq!(h.pdus(Protocol::S7comm), 2);
        assert_eq!(commands(&h.observations()), vec![(CommandKind::Stop, 0x29)]);
        let s7 = &h.stats.s7comm;
        assert_eq!(s7.function.get(0x29), 2);
        assert_eq!(s7.rosctr.get(1), 1);
        assert_eq!(s7.rosctr.get(3), 1);
        let summary = s7.summary();
        assert_eq!(summary["pi_service"]["P_PROGRAM"], 1);
        assert_eq!(h.stats.matched_responses[Protocol::S7comm.index()], 1);
        assert_eq!(
            h.stats.response_time_ns_sum[Protocol::S7comm.index()],
            4_000
        );
        let events: Vec<_> = h.event_rx.try_iter().collect();
        assert_eq!(events.len(), 2);
        let EveRecord::Protocol(event) = &events[0] else {
            panic!("not a protocol event");
        };
        assert_eq!(
            event.body,
            EventBody::S7comm(S7commEvent {
                rosctr: 1,
                function: Some(0x29),
                error_class: None,
                error_code: None,
                items: arrayvec::ArrayVec::new(),
                items_omitted: 0,
            })
        );
    }

    #[test]
    fn header_error_is_an_error_reply_and_upload_is_program() {
        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &hex(START_UPLOAD), true);
        h.feed(Direction::Response, 2, &hex(ACK_ERROR), true);
        let observations = h.observations();
        assert_eq!(commands(&observations), vec![(CommandKind::Program, 0x1D)]);
        assert_eq!(
            errors(&observations),
            vec![(ProtocolErrorKind::ErrorReply, 0xD241)]
        );
        let summary = h.stats.s7comm.summary();
        assert_eq!(summary["header_error"]["210/65"], 1);
        assert_eq!(summary["param_error_code"]["53825"], 1);
        let events: Vec<_> = h.event_rx.try_iter().collect();
        let EveRecord::Protocol(event) = &events[1] else {
            panic!("not a protocol event");
        };
        assert_eq!(
            event.body,
            EventBody::S7comm(S7commEvent {
                rosctr: 2,
                function: None,
                error_class: Some(0xD2),
                error_code: Some(0x41),
                items: arrayvec::ArrayVec::new(),
                items_omitted: 0,
            })
        );
    }

    #[test]
    fn failed_items_are_one_error_reply_per_pdu() {
        let mut h = Harness::new();
        h.feed(Direction::Response, 1, &hex(READ_VAR_5_FAILED), false);
        assert_eq!(h.stats.s7comm.return_code.get(0x0A), 5);
        assert_eq!(
            errors(&h.observations()),
            vec![(ProtocolErrorKind::ErrorReply, 0x2_000A)]
        );
    }

    #[test]
    fn a_mode_transition_response_reports_the_cpu_mode() {
        let mut h = Harness::new();
        h.feed(Direction::Response, 1, &hex(SZL_0424_RUN), false);
        assert_eq!(
            identities(&h.observations()),
            vec![(IdentityField::Mode, "RUN".to_owned())]
        );
        // The same record with bzu-id 0x84 (entered STOP (internal), was RUN).
        let stopped = SZL_0424_RUN.replacen("5144ff08", "5144ff84", 1);
        let mut h = Harness::new();
        h.feed(Direction::Response, 1, &hex(&stopped), false);
        assert_eq!(
            identities(&h.observations()),
            vec![(IdentityField::Mode, "STOP (internal)".to_owned())]
        );
    }

    #[test]
    fn szl_reads_are_diagnostics_and_responses_carry_identity() {
        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &hex(SZL_REQ), false);
        h.feed(Direction::Response, 3, &hex(SZL_0011), false);
        h.feed(Direction::Response, 4, &hex(SZL_001C), false);
        let observations = h.observations();
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Diagnostic, 0x1_0401)]
        );
        let identities = identities(&observations);
        let has = |field: IdentityField, value: &str| {
            identities.iter().any(|(f, v)| *f == field && v == value)
        };
        assert!(
            has(IdentityField::OrderNumber, "6ES7 315-2EH14-0AB0"),
            "{identities:?}"
        );
        assert!(has(IdentityField::Firmware, "V3.2.6"), "{identities:?}");
        assert!(has(IdentityField::Hardware, "V4.1"), "{identities:?}");
        assert!(has(IdentityField::Name, "SNAP7-SERVER"), "{identities:?}");
        assert!(
            has(IdentityField::Name, "CPU 315-2 PN/DP"),
            "{identities:?}"
        );
        assert!(
            has(IdentityField::Serial, "S C-C2UR28922012"),
            "{identities:?}"
        );
        // Identity is about the sender: the PLC (server).
        assert!(observations.iter().all(|o| match o {
            Observation::Identity { device, .. } => *device == h.flow.server.0,
            _ => true,
        }));
        let s7 = &h.stats.s7comm;
        assert_eq!(s7.szl_id.get(0x0011), 2);
        assert_eq!(s7.szl_id.get(0x001C), 1);
        assert_eq!(s7.userdata_group_subfunc.get(pair_key(4, 1)), 3);
        assert_eq!(h.stats.matched_responses[Protocol::S7comm.index()], 1);
    }

    #[test]
    fn set_clock_is_time_sync() {
        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &hex(SET_CLOCK), false);
        assert_eq!(
            commands(&h.observations()),
            vec![(CommandKind::TimeSync, 0x1_0702)]
        );
    }

    #[test]
    fn cotp_management_empty_dts_plus_and_truncation() {
        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &hex(COTP_CR), false);
        h.feed(Direction::Request, 2, &hex(EMPTY_DT_NO_EOT), false);
        h.feed(Direction::Request, 3, &hex(SZL_REQ), false);
        h.feed(Direction::Request, 4, &hex(PLUS), false);
        h.feed(Direction::Request, 5, &hex(TRUNCATED_S7), false);
        assert_eq!(
            h.pdus(Protocol::S7comm),
            1,
            "the CR and the empty DT are COTP"
        );
        assert_eq!(h.pdus(Protocol::S7commPlus), 1);
        assert_eq!(h.stats.malformed[Protocol::S7comm.index()], 1);
        assert_eq!(h.stats.s7comm.cotp_type.get(0x0E), 1);
        assert_eq!(h.stats.s7comm.cotp_type.get(0x0F), 4);
    }

    #[test]
    fn segmented_pdu_counts_once_at_its_last_dt() {
        let mut h = Harness::new();
        // The SZL request cut into two DTs: the first without end-of-TSDU.
        let whole = hex(SZL_REQ);
        let s7 = &whole[7..];
        let mut first = hex("0300000002f000");
        first.extend_from_slice(&s7[..10]);
        first[3] = first.len() as u8;
        let mut last = hex("0300000002f080");
        last.extend_from_slice(&s7[10..]);
        last[3] = last.len() as u8;
        h.feed(Direction::Request, 1, &first, false);
        assert_eq!(h.pdus(Protocol::S7comm), 0);
        h.feed(Direction::Request, 2, &last, false);
        assert_eq!(h.pdus(Protocol::S7comm), 1);
        assert_eq!(h.stats.s7comm.segmented, 1);
        h.feed(Direction::Request, 3, &whole, false);
        assert_eq!(h.pdus(Protocol::S7comm), 2);
    }

    fn middle_dt(number: u8) -> Vec<u8> {
        let mut dt = hex(MIDDLE_DT_HEADER);
        dt[6] = number;
        dt.resize(1007, 0);
        dt
    }

    #[test]
    fn pdu_split_in_two_dts_is_reassembled_and_parsed_once() {
        let mut whole = Harness::new();
        whole.feed(Direction::Request, 1, &hex(SZL_REQ), false);
        whole.feed(Direction::Response, 3, &hex(SZL_0011), false);

        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &hex(SZL_REQ), false);
        h.feed(Direction::Response, 2, &hex(SZL_0011_DT1), false);
        assert_eq!(h.pdus(Protocol::S7comm), 1, "only the request so far");
        assert_ne!(h.state.segment_slots[1], 0, "a buffer holds the first DT");
        assert_eq!(h.segments.in_use(), 1);
        h.feed(Direction::Response, 3, &hex(SZL_0011_DT2), false);
        assert_eq!(h.pdus(Protocol::S7comm), 2);
        assert_eq!(h.stats.s7comm.segmented, 1);
        assert_eq!(h.stats.s7comm.reassembled, 1);
        assert_eq!(h.stats.malformed[Protocol::S7comm.index()], 0);
        // Parsed exactly as the unsegmented PDU: same histograms, same identity.
        let mut summary = h.stats.s7comm.summary();
        let object = summary.as_object_mut().unwrap();
        assert_eq!(object.remove("segmented"), Some(serde_json::json!(1)));
        assert_eq!(object.remove("reassembled"), Some(serde_json::json!(1)));
        // One more COTP DT than the unsegmented PDU.
        assert_eq!(
            object.remove("cotp_type"),
            Some(serde_json::json!({"15": 3}))
        );
        let mut expected = whole.stats.s7comm.summary();
        let cotp = expected.as_object_mut().unwrap().remove("cotp_type");
        assert_eq!(cotp, Some(serde_json::json!({"15": 2})));
        assert_eq!(summary, expected);
        assert_eq!(h.stats.s7comm.szl_id.get(0x0011), 2);
        assert_eq!(h.stats.matched_responses[Protocol::S7comm.index()], 1);
        let seen = identities(&h.observations());
        assert_eq!(seen, identities(&whole.observations()));
        assert!(seen.contains(&(IdentityField::OrderNumber, "6ES7 315-2EH14-0AB0".to_owned())));
        // The buffer went back to the pool.
        assert_eq!(h.state.segment_slots, [0, 0]);
        assert_eq!(h.segments.in_use(), 0);
    }

    #[test]
    fn eot_only_single_dt_needs_no_buffer() {
        let mut h = Harness::new();
        h.segments = crate::inspect::reassembly::SegmentPool::new(0);
        h.feed(Direction::Response, 1, &hex(SZL_0011), false);
        assert_eq!(h.pdus(Protocol::S7comm), 1);
        assert_eq!(h.stats.s7comm.szl_id.get(0x0011), 1);
        assert_eq!(h.stats.s7comm.segmented, 0);
        assert_eq!(h.stats.s7comm.reassembled, 0);
        assert_eq!(h.stats.s7comm.reassembly_pool_exhausted, 0);
        assert!(!identities(&h.observations()).is_empty());
    }

    #[test]
    fn over_long_sequence_is_dropped_and_counted() {
        let mut h = Harness::new();
        h.feed(Direction::Response, 1, &hex(SZL_0011_DT1), false);
        // 9 x 1000 bytes: past the 8192-byte buffer.
        for index in 0..9 {
            h.feed(Direction::Response, 2 + index, &middle_dt(0), false);
        }
        assert_eq!(h.stats.s7comm.reassembly_overflow, 1);
        assert_eq!(h.segments.in_use(), 0, "dropped at once, buffer returned");
        h.feed(Direction::Response, 20, &hex(SZL_0011_DT2), false);
        // Counted as one S7comm PDU, not dissected.
        assert_eq!(h.pdus(Protocol::S7comm), 1);
        assert_eq!(h.stats.s7comm.segmented, 1);
        assert_eq!(h.stats.s7comm.reassembled, 0);
        assert!(h.stats.s7comm.szl_id.is_empty());
        assert!(h.observations().is_empty());
        assert_eq!(h.stats.s7comm.summary()["reassembly_overflow"], 1);
        // The next PDU starts clean.
        h.feed(Direction::Response, 21, &hex(SZL_0011), false);
        assert_eq!(h.stats.s7comm.szl_id.get(0x0011), 1);
    }

    #[test]
    fn out_of_sequence_tpdu_and_exhausted_pool_are_counted_drops() {
        let mut h = Harness::new();
        h.feed(Direction::Response, 1, &hex(SZL_0011_DT1), false);
        // TPDU number 5 after 0: DTs were lost.
        h.feed(Direction::Response, 2, &middle_dt(5), false);
        h.feed(Direction::Response, 3, &hex(SZL_0011_DT2), false);
        assert_eq!(h.stats.s7comm.reassembly_out_of_sequence, 1);
        assert_eq!(h.stats.s7comm.reassembled, 0);
        assert_eq!(h.pdus(Protocol::S7comm), 1);
        assert_eq!(h.segments.in_use(), 0);

        // Numbers counting up by one are in sequence (1 after 0).
        let mut h = Harness::new();
        let mut first = hex(SZL_0011_DT1);
        first[6] = 0x00;
        let mut last = hex(SZL_0011_DT2);
        last[6] = 0x81;
        h.feed(Direction::Response, 1, &first, false);
        h.feed(Direction::Response, 2, &last, false);
        assert_eq!(h.stats.s7comm.reassembled, 1);

        let mut h = Harness::new();
        h.segments = crate::inspect::reassembly::SegmentPool::new(0);
        h.feed(Direction::Response, 1, &hex(SZL_0011_DT1), false);
        h.feed(Direction::Response, 2, &hex(SZL_0011_DT2), false);
        assert_eq!(h.stats.s7comm.reassembly_pool_exhausted, 1);
        assert_eq!(h.pdus(Protocol::S7comm), 1);
        assert_eq!(h.stats.s7comm.reassembled, 0);
    }

    #[test]
    fn var_items_keep_their_addresses() {
        let read = hex(READ_VAR_8);
        let tpkt = Tpkt::new_checked(&read).unwrap();
        let cotp = Cotp::new_checked(tpkt.payload()).unwrap();
        let s7 = S7comm::new_checked(cotp.payload()).unwrap();
        let items: Vec<VarItem> = s7.var_items().collect();
        assert_eq!(items.len(), 8);
        type Fields = (
            u8,
            Option<u8>,
            Option<u16>,
            Option<u16>,
            Option<u8>,
            Option<u32>,
            Option<u8>,
        );
        let fields = |item: &VarItem| -> Fields {
            (
                item.syntax_id(),
                item.transport_size(),
                item.length(),
                item.db_number(),
                item.area(),
                item.byte_address(),
                item.bit_address(),
            )
        };
        let s7any = |size, db, area, byte, bit| -> Fields {
            (
                SYNTAX_ID_S7ANY,
                Some(size),
                Some(1),
                Some(db),
                Some(area),
                Some(byte),
                Some(bit),
            )
        };
        assert_eq!(fields(&items[0]), s7any(1, 1, 0x84, 2, 0));
        assert_eq!(fields(&items[1]), s7any(8, 1, 0x84, 8, 0));
        assert_eq!(fields(&items[5]), s7any(1, 0, 0x83, 1, 1));
        assert_eq!(fields(&items[6]), s7any(0x1D, 0, 0x1D, 0, 0));
        assert_eq!(fields(&items[7]), s7any(0x1C, 0, 0x1C, 0, 0));

        // The event of a write-var job carries its item; its ack carries none.
        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &hex(WRITE_VAR_BIT), true);
        h.feed(Direction::Response, 2, &hex(ACK_ERROR), true);
        let events: Vec<_> = h.event_rx.try_iter().collect();
        let bodies: Vec<_> = events
            .iter()
            .map(|record| match record {
                EveRecord::Protocol(event) => event.body.clone(),
                _ => panic!("not a protocol event"),
            })
            .collect();
        let EventBody::S7comm(write) = &bodies[0] else {
            panic!("not S7comm");
        };
        assert_eq!(write.function, Some(0x05));
        assert_eq!(write.items.len(), 1);
        assert_eq!(fields(&write.items[0]), s7any(1, 0, 0x83, 1, 1));
        assert_eq!(write.items_omitted, 0);
        let json = serde_json::to_value(write).unwrap();
        assert_eq!(json["items"][0]["area"], 0x83);
        assert_eq!(json["items"][0]["byte_address"], 1);
        assert_eq!(json["items"][0]["bit_address"], 1);
        assert_eq!(json["items"][0]["syntax_id"], 0x10);
        let EventBody::S7comm(ack) = &bodies[1] else {
            panic!("not S7comm");
        };
        assert!(ack.items.is_empty());

        // Ten items (READ_VAR_8 and its last item twice more): eight in the event,
        // two counted as omitted.
        let mut ten = read.clone();
        let last_item = ten[ten.len() - 12..].to_vec();
        ten.extend_from_slice(&last_item);
        ten.extend_from_slice(&last_item);
        ten[3] += 24;
        ten[7 + 7] += 24;
        ten[7 + 10 + 1] = 10;
        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &ten, true);
        let Some(EveRecord::Protocol(event)) = h.event_rx.try_iter().next() else {
            panic!("no protocol event");
        };
        let EventBody::S7comm(body) = event.body else {
            panic!("not S7comm");
        };
        assert_eq!(body.items.len(), 8);
        assert_eq!(body.items_omitted, 2);

        // Another syntax keeps its id and nothing it cannot read; a cut item ends
        // the walk.
        let mut other = read.clone();
        other[7 + 10 + 4] = 0xB0;
        let s7 = S7comm::new_checked(&other[7..]).unwrap();
        let first = s7.var_items().next().unwrap();
        assert_eq!(first.syntax_id(), 0xB0);
        assert_eq!(first.area(), None);
        let json = serde_json::to_value(first).unwrap();
        assert_eq!(json["syntax_id"], 0xB0);
        assert!(json["byte_address"].is_null());
        assert_eq!(s7.var_items().count(), 8);
        let mut cut = read.clone();
        cut[7 + 10 + 2 + 12 + 1] = 0xF0;
        let s7 = S7comm::new_checked(&cut[7..]).unwrap();
        assert_eq!(s7.var_items().count(), 1);
    }

    /// Replays a capture's S7 PDUs (TCP 102) through `inspect`.
    fn replay(name: &str) -> Harness {
        let mut h = Harness::new();
        let (pdus, _) = framed_pdus(name, 102, frame);
        for (index, (direction, pdu)) in pdus.iter().enumerate() {
            h.feed(*direction, index as u64 * 1_000, pdu, false);
        }
        h
    }

    #[test]
    fn plc_stop_detected_in_captures() {
        for name in [
            "s7comm-step7-plc-stop.pcapng",
            "s7comm-tia-download-hwconfig-stop-start.pcapng",
        ] {
            let h = replay(name);
            let commands = commands(&h.observations());
            assert!(
                commands.contains(&(CommandKind::Stop, 0x29)),
                "{name}: {commands:?}"
            );
        }
        let h = replay("s7comm-tia-download-hwconfig-stop-start.pcapng");
        let commands = commands(&h.observations());
        assert!(
            commands.contains(&(CommandKind::Start, 0x28)),
            "{commands:?}"
        );
        assert!(
            commands.contains(&(CommandKind::Program, 0x1A)),
            "{commands:?}"
        );
    }

    // MMS on port 102, through the same dispatcher. mms-piccolo.pcap frames 3 and 4:
    // session GT+DT, presentation fully-encoded data, an identify request and its
    // response (vendor "INFO TECH", model "S61850 for PC", revision "0.0.1").
    const MMS_IDENTIFY: &str = "0300001b02f08001000100610e300c020103a007a0050201018200";
    const MMS_IDENTIFY_RESPONSE: &str = "0300003c02f08001000100612f302d020103a028a126020101a2218009494e464f2054454348810d53363138353020666f722050438205302e302e31";
    // mms-kill-request.pcap frame 12 and mms-delete-program-invocation.pcap frame 12:
    // MMS directly on COTP, kill (44) and deleteProgramInvocation (39).
    const MMS_KILL: &str =
        "0300002802f080a01f020101bf2c198017523339353032343339374170706c69636174696f6e5f31";
    const MMS_DELETE_PI: &str =
        "0300002702f080a01e0201019f27184d7553656375726974795f4170706c69636174696f6e5f31";
    // Built: a confirmed-ErrorPDU (invokeID 1, serviceError class access [7] code 2,
    // object-non-existent) in the piccolo session framing (GT+DT, presentation
    // context 3), and a rejectPDU (originalInvokeID 1, confirmed-requestPDU [1]
    // problem 1, unrecognized-service) directly on COTP.
    const MMS_ERROR: &str = "0300002002f0800100010061133011020103a00ca20a800101a205a003870102";
    const MMS_REJECT: &str = "0300000f02f080a406800101810101";

    #[test]
    fn mms_identify_names_the_flow_and_reports_identity() {
        let mut h = Harness::new();
        h.feed(Direction::Request, 1_000, &hex(MMS_IDENTIFY), true);
        h.feed(
            Direction::Response,
            3_000,
            &hex(MMS_IDENTIFY_RESPONSE),
            true,
        );
        assert_eq!(h.pdus(Protocol::Mms), 2);
        assert_eq!(h.pdus(Protocol::S7comm), 0);
        assert_eq!(h.state.protocol, Some(Protocol::Mms));
        let observations = h.observations();
        assert_eq!(commands(&observations), vec![(CommandKind::Diagnostic, 2)]);
        assert_eq!(
            identities(&observations),
            vec![
                (IdentityField::Vendor, "INFO TECH".to_owned()),
                (IdentityField::Model, "S61850 for PC".to_owned()),
                (IdentityField::Firmware, "0.0.1".to_owned()),
            ]
        );
        let summary = h.stats.mms.summary();
        assert_eq!(summary["pdu"]["confirmed-RequestPDU"], 1);
        assert_eq!(summary["pdu"]["confirmed-ResponsePDU"], 1);
        assert_eq!(summary["confirmed_service_request"]["2"], 1);
        assert_eq!(summary["confirmed_service_response"]["2"], 1);
        assert_eq!(h.stats.matched_responses[Protocol::Mms.index()], 1);
        let events: Vec<_> = h.event_rx.try_iter().collect();
        let EveRecord::Protocol(event) = &events[1] else {
            panic!("not a protocol event");
        };
        assert_eq!(
            event.body,
            EventBody::Mms(crate::inspect::mms::MmsEvent {
                pdu: "confirmed-ResponsePDU",
                invoke_id: Some(1),
                service: Some("identify"),
                service_code: Some(2),
                error_class: None,
                error_code: None,
                reject_type: None,
                reject_code: None,
                carrier: "presentation",
            })
        );
    }

    #[test]
    fn mms_program_invocation_control_maps_to_stop_and_program() {
        let mut h = Harness::new();
        h.feed(Direction::Request, 1, &hex(MMS_KILL), false);
        h.feed(Direction::Request, 2, &hex(MMS_DELETE_PI), false);
        assert_eq!(
            commands(&h.observations()),
            vec![(CommandKind::Stop, 44), (CommandKind::Program, 39)]
        );
        assert_eq!(h.stats.mms.on_cotp, 2);
        // The same request sent by the server (ICCP peers both ask) is counted, not
        // reported as the client's command.
        let mut h = Harness::new();
        h.feed(Direction::Response, 1, &hex(MMS_KILL), false);
        assert_eq!(h.pdus(Protocol::Mms), 1);
        assert_eq!(commands(&h.observations()), vec![]);
    }

    #[test]
    fn mms_error_and_reject_are_protocol_errors() {
        let mut h = Harness::new();
        h.feed(Direction::Response, 1, &hex(MMS_ERROR), false);
        h.feed(Direction::Response, 2, &hex(MMS_REJECT), false);
        assert_eq!(h.pdus(Protocol::Mms), 2);
        assert_eq!(
            errors(&h.observations()),
            vec![
                (ProtocolErrorKind::ErrorReply, (7 << 16) | 2),
                (
                    ProtocolErrorKind::Rejected,
                    crate::inspect::mms::REJECT | (1 << 16) | 1
                ),
            ]
        );
        let summary = h.stats.mms.summary();
        assert_eq!(summary["error_class"]["7/2"], 1);
        assert_eq!(summary["reject_reason"]["1/1"], 1);
    }

    #[test]
    fn mms_captures_count_like_tshark() {
        let h = replay("mms-piccolo.pcap");
        assert_eq!(h.pdus(Protocol::Mms), 5);
        let h = replay("mms-kill-request.pcap");
        assert_eq!(h.pdus(Protocol::Mms), 2);
        assert!(commands(&h.observations()).contains(&(CommandKind::Stop, 44)));
    }

    // S7comm-plus through the dispatcher. s7commplus-s7-1200-hmi.pcap frame 12: the
    // session's CreateObject response ("1;6ES7 211-1BE31-0XB0 ;V3.0"); built: a
    // SetVariable of the CPU's operating state (object 52, attribute 2167) to 1, STOP.
    const PLUS_CREATE_OBJECT_RESPONSE: &str = "0300008902f0807201007a32000004ca00000001361102873e8723a100000120821f0000a38169001500a3823200170000013a823b00048200823c00048140823d00048480c040823e00048480c040823f00151b313b36455337203231312d31424533312d30584230203b56332e308240001505323b32383882410003000300a20000000072010000";
    const PLUS_CPU_STOP: &str =
        "0300002802f0807202001931000004f200000009000003be34000000340190770004010072020000";

    #[test]
    fn s7comm_plus_names_the_plc_and_reports_a_cpu_stop() {
        let mut h = Harness::new();
        h.feed(
            Direction::Response,
            1,
            &hex(PLUS_CREATE_OBJECT_RESPONSE),
            true,
        );
        h.feed(Direction::Request, 2, &hex(PLUS_CPU_STOP), true);
        assert_eq!(h.pdus(Protocol::S7commPlus), 2);
        assert_eq!(h.state.protocol, Some(Protocol::S7commPlus));
        let observations = h.observations();
        assert_eq!(
            identities(&observations),
            vec![
                (IdentityField::OrderNumber, "6ES7 211-1BE31-0XB0".to_owned()),
                (IdentityField::Firmware, "V3.0".to_owned()),
            ]
        );
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Stop, crate::inspect::s7commplus::CPU_STATE | 1)]
        );
        let summary = h.stats.s7commplus.summary();
        assert_eq!(summary["function"]["1226"], 1);
        assert_eq!(summary["function"]["1266"], 1);
        let events: Vec<_> = h.event_rx.try_iter().collect();
        let EveRecord::Protocol(event) = &events[1] else {
            panic!("not a protocol event");
        };
        assert_eq!(
            event.body,
            EventBody::S7commPlus(crate::inspect::s7commplus::S7commPlusEvent {
                pdu_type: 2,
                opcode: Some("Request"),
                opcode_code: Some(0x31),
                function: Some("SetVariable"),
                function_code: Some(0x04f2),
                sequence: Some(9),
                session_id: Some(0x3be),
            })
        );
    }
}
