//! DNP3 inspection: the worker's statistics, protocol events, commands,
//! identities and protocol errors, read from the [`otsensor_wire::dnp3`] views.

use otsensor_wire::dnp3::*;
use otsensor_wire::{Direction, Protocol};

use crate::inspect::histogram::{pair_key, Histogram};
use crate::inspect::{AppState, Dnp3Event, EventBody, PduCtx};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};
use std::collections::BTreeMap;

/// Transport reassemblers per worker. A slot is held only while a multi-segment
/// fragment is in progress (single-segment fragments need none), so this bounds the
/// number of concurrently half-received fragments, not the number of DNP3 flows. The
/// low [`INDEX_BITS`] bits of a handle are the slot, so this is also the most a pool
/// holds.
pub const REASSEMBLY_SLOTS: usize = 1 << INDEX_BITS;

/// Bits of a handle that name the slot; the rest is the slot's generation.
const INDEX_BITS: u16 = 10;
const INDEX_MASK: u16 = (1 << INDEX_BITS) - 1;
/// Generations run 1..=MAX_GENERATION (0 would make handle 0, "none", possible).
const MAX_GENERATION: u16 = u16::MAX >> INDEX_BITS;

/// A fixed pool of [`TransportReassembler`]s owned by one worker, allocated once; flows
/// hold slot handles (`generation << 10 | index`, 0 = none) in
/// [`AppState::dnp3_slots`], one per direction, so the per-flow state stays small and
/// `Copy`.
///
/// A half-finished fragment (a FIR segment whose FIN never comes) holds its slot at
/// most [`HALF_OPEN_TIMEOUT_NS`] of packet time once the pool is exhausted: the slot
/// held longest is then taken for the new fragment (counted by
/// [`ReassemblyPool::take_expired`]), the rule of [`SegmentPool`] for S7 and BACnet,
/// so half-open fragments cannot starve the pool for the flows' lifetime. The slot's
/// generation changes whenever it is released or taken, so the flow that lost it holds
/// a stale handle (its next segment is a transport error) and never reaches another
/// flow's bytes. Generations wrap after 63 reuses of one slot: a handle that stayed
/// stale that long could alias again, which at worst breaks one fragment's sequence
/// check (a counted transport error), never memory safety.
///
/// [`HALF_OPEN_TIMEOUT_NS`]: super::reassembly::HALF_OPEN_TIMEOUT_NS
/// [`SegmentPool`]: super::reassembly::SegmentPool
pub struct ReassemblyPool {
    slots: Box<[TransportReassembler]>,
    /// Per slot: its generation (1..=MAX_GENERATION) and the packet time it was taken.
    generations: Box<[u16]>,
    started_ns: Box<[u64]>,
    /// Free slot indexes; its capacity is the slot count, so pushes never allocate.
    free: Vec<u16>,
    /// Half-open fragments whose slot was taken after the timeout, not yet reported.
    expired: u64,
}

impl std::fmt::Debug for ReassemblyPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReassemblyPool")
            .field("slots", &self.slots.len())
            .field("free", &self.free.len())
            .finish()
    }
}

impl ReassemblyPool {
    /// A pool of `slots` reassemblers (at most [`REASSEMBLY_SLOTS`]).
    pub fn new(slots: usize) -> ReassemblyPool {
        let slots = slots.min(REASSEMBLY_SLOTS);
        // Popped from the end: hand out low indexes first.
        let free = (0..slots as u16).rev().collect();
        ReassemblyPool {
            slots: vec![TransportReassembler::new(); slots].into_boxed_slice(),
            generations: vec![1; slots].into_boxed_slice(),
            started_ns: vec![0; slots].into_boxed_slice(),
            free,
            expired: 0,
        }
    }

    /// Reassemblers currently held by flows.
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Half-open fragments expired since the last call (for the caller's counters).
    pub fn take_expired(&mut self) -> u64 {
        std::mem::take(&mut self.expired)
    }

    /// The slot behind a live handle (not 0, not stale).
    fn index(&self, handle: u16) -> Option<usize> {
        let index = usize::from(handle & INDEX_MASK);
        let generation = handle >> INDEX_BITS;
        let current = *self.generations.get(index)?;
        (generation != 0 && generation == current).then_some(index)
    }

    /// True when `handle` still owns its slot (it is not 0 and did not expire).
    pub fn holds(&self, handle: u16) -> bool {
        self.index(handle).is_some()
    }

    /// A new generation for slot `index`: every handle to it goes stale.
    fn bump(&mut self, index: usize) {
        if let Some(generation) = self.generations.get_mut(index) {
            *generation = if *generation >= MAX_GENERATION {
                1
            } else {
                *generation + 1
            };
        }
    }

    /// Takes a free, empty reassembler at packet time `now_ns`; when none is free, the
    /// one held longest if it was taken at least [`HALF_OPEN_TIMEOUT_NS`] ago (its
    /// holder's handle goes stale; counted). Its handle, `None` when every slot is in
    /// use and younger.
    ///
    /// [`HALF_OPEN_TIMEOUT_NS`]: super::reassembly::HALF_OPEN_TIMEOUT_NS
    fn acquire(&mut self, now_ns: u64) -> Option<u16> {
        let index = match self.free.pop() {
            Some(index) => usize::from(index),
            None => {
                // Only when exhausted: one pass over at most REASSEMBLY_SLOTS stamps.
                let (index, &oldest) = self
                    .started_ns
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, started)| **started)?;
                if oldest.saturating_add(super::reassembly::HALF_OPEN_TIMEOUT_NS) > now_ns {
                    return None;
                }
                self.bump(index);
                self.expired += 1;
                index
            }
        };
        if let Some(reassembler) = self.slots.get_mut(index) {
            reassembler.reset();
        }
        if let Some(started) = self.started_ns.get_mut(index) {
            *started = now_ns;
        }
        let generation = self.generations.get(index).copied().unwrap_or(1);
        Some((generation << INDEX_BITS) | index as u16)
    }

    /// A held slot starts a new fragment at `now_ns` (its half-open clock restarts).
    fn restart(&mut self, handle: u16, now_ns: u64) {
        if let Some(index) = self.index(handle) {
            if let Some(started) = self.started_ns.get_mut(index) {
                *started = now_ns;
            }
        }
    }

    fn get_mut(&mut self, handle: u16) -> Option<&mut TransportReassembler> {
        let index = self.index(handle)?;
        self.slots.get_mut(index)
    }

    /// Returns the slot behind `handle` (if it still owns one) to the pool and clears
    /// the handle.
    fn release(&mut self, handle: &mut u16) {
        if let Some(index) = self.index(*handle) {
            self.bump(index);
            if self.free.len() < self.slots.len() {
                self.free.push(index as u16);
            }
        }
        *handle = 0;
    }

    /// Returns every slot a flow holds (when the flow ends).
    pub fn release_flow(&mut self, state: &mut AppState) {
        for handle in &mut state.dnp3_slots {
            self.release(handle);
        }
    }
}

/// Per-worker DNP3 statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`): histograms count per link frame (`link_func`,
/// `link_addrs`) or per completed application fragment (the others, counted on the
/// link frame that completes it, as tshark does).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// `(PRM << 8) | function`, formatted `pri/N` or `sec/N`.
    pub link_func: Histogram,
    pub al_func: Histogram,
    /// Index into [`Iin::ALL`], formatted by its name.
    pub iin_bits: Histogram,
    /// Fragments with the UNS bit, under key 1 (`"true"`).
    pub unsolicited: Histogram,
    /// [`pair_key`]`(source, destination)`, formatted `src->dst`.
    pub link_addrs: Histogram,
    /// `(group << 8) | variation`, formatted `gXvY`.
    pub objects: Histogram,
    /// Multi-segment fragments skipped because every reassembler was in use.
    pub reassembly_pool_exhausted: u64,
    /// Half-open fragments (a FIR segment, no FIN) whose slot was taken for a new
    /// fragment after `reassembly::HALF_OPEN_TIMEOUT_NS`.
    pub reassembly_expired: u64,
    /// Transport segments out of sequence, without a first segment, or overflowing.
    pub transport_errors: u64,
    /// Partial fragments dropped because a new first segment arrived.
    pub fragments_abandoned: u64,
    /// Link frames whose user data failed a block CRC.
    pub data_crc_errors: u64,
    /// Reassembled fragments too short for their application header.
    pub bad_fragments: u64,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.link_func.merge(&other.link_func);
        self.al_func.merge(&other.al_func);
        self.iin_bits.merge(&other.iin_bits);
        self.unsolicited.merge(&other.unsolicited);
        self.link_addrs.merge(&other.link_addrs);
        self.objects.merge(&other.objects);
        self.reassembly_pool_exhausted += other.reassembly_pool_exhausted;
        self.reassembly_expired += other.reassembly_expired;
        self.transport_errors += other.transport_errors;
        self.fragments_abandoned += other.fragments_abandoned;
        self.data_crc_errors += other.data_crc_errors;
        self.bad_fragments += other.bad_fragments;
    }

    /// Non-empty histograms by their summary names, then non-zero error counters.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        put(
            "link_func",
            &self.link_func,
            self.link_func.to_map(|key| {
                let layer = if key >> 8 != 0 { "pri" } else { "sec" };
                format!("{layer}/{}", key & 0xFF)
            }),
        );
        put("al_func", &self.al_func, self.al_func.to_decimal_map());
        put(
            "iin_bits",
            &self.iin_bits,
            self.iin_bits.to_map(|key| {
                Iin::ALL
                    .get(key as usize)
                    .map_or_else(|| key.to_string(), |(_, name)| (*name).to_owned())
            }),
        );
        put(
            "unsolicited",
            &self.unsolicited,
            self.unsolicited.to_map(|_| "true".to_owned()),
        );
        put(
            "link_addrs",
            &self.link_addrs,
            self.link_addrs
                .to_map(|key| format!("{}->{}", key >> 16, key & 0xFFFF)),
        );
        put(
            "objects",
            &self.objects,
            self.objects
                .to_map(|key| format!("g{}v{}", key >> 8, key & 0xFF)),
        );
        for (name, count) in [
            ("reassembly_pool_exhausted", self.reassembly_pool_exhausted),
            ("reassembly_expired", self.reassembly_expired),
            ("transport_errors", self.transport_errors),
            ("fragments_abandoned", self.fragments_abandoned),
            ("data_crc_errors", self.data_crc_errors),
            ("bad_fragments", self.bad_fragments),
        ] {
            if count > 0 {
                out.insert(name.to_owned(), serde_json::json!(count));
            }
        }
        serde_json::Value::Object(out)
    }
}

/// Protocol error codes of [`ProtocolErrorKind::Malformed`] reports (0 is a link frame
/// that failed validation).
pub const MALFORMED_DATA_CRC: u32 = 1;
pub const MALFORMED_FRAGMENT: u32 = 2;

/// Group 120 variation 7: SAv5 authentication error (1815 §7.6.1.4.7, A.45.7).
const AUTH_GROUP: u8 = 120;
const AUTH_ERROR_VARIATION: u8 = 7;
/// Offset of the error code in a g120v7 object: challenge sequence (4), user number
/// (2), association id (2).
const AUTH_ERROR_CODE_OFFSET: usize = 8;

/// The outstation's state as its IIN shows it (IEEE 1815-2012 5.2.2.5.3/5.2.2.5.4),
/// most severe first: a restart not yet acknowledged, a corrupt configuration,
/// trouble, outputs switched to local control; `online` otherwise (the mode that
/// counts as running, [`IdentityField::mode_is_run`]).
fn outstation_mode(iin: Iin) -> &'static str {
    const STATES: [(u16, &str); 4] = [
        (Iin::DEVICE_RESTART, "restarted"),
        (Iin::CONFIG_CORRUPT, "configuration corrupt"),
        (Iin::DEVICE_TROUBLE, "device trouble"),
        (Iin::LOCAL_CONTROL, "local control"),
    ];
    STATES
        .iter()
        .find(|(bit, _)| iin.contains(*bit))
        .map_or("online", |(_, name)| name)
}

/// The IIN2 bits that say the outstation rejected (part of) the request.
const IIN_REQUEST_ERRORS: [u16; 3] = [
    Iin::NO_FUNC_CODE_SUPPORT,
    Iin::OBJECT_UNKNOWN,
    Iin::PARAMETER_ERROR,
];

/// The command kind of a request, for the analyzer.
///
/// Freezes (7-12) copy counters into frozen counters on the outstation, an action on
/// its data like an operate, so they are `Operate`. ENABLE_UNSOLICITED (20) and
/// ASSIGN_CLASS (22) only change what is reported: `Other`. ACTIVATE_CONFIG (31) puts a
/// new configuration in force: `Program`. Authentication (32, 33), INITIALIZE_DATA
/// (15), INITIALIZE_APPL (16) and SAVE_CONFIG (19, obsolete): `Other`.
fn command_kind(fragment: &Fragment<'_>) -> CommandKind {
    use FunctionCode::*;
    match fragment.function_code() {
        ImmediateFreeze
        | ImmediateFreezeNoResponse
        | FreezeClear
        | FreezeClearNoResponse
        | FreezeAtTime
        | FreezeAtTimeNoResponse => return CommandKind::Operate,
        ActivateConfiguration => return CommandKind::Program,
        _ => {}
    }
    match fragment.kind() {
        FunctionKind::Read => CommandKind::Read,
        FunctionKind::Write => CommandKind::Write,
        FunctionKind::Operate => CommandKind::Operate,
        FunctionKind::Restart => CommandKind::Restart,
        FunctionKind::StartApplication => CommandKind::Start,
        FunctionKind::StopApplication => CommandKind::Stop,
        FunctionKind::UnsolicitedDisable => CommandKind::DisableCommunication,
        FunctionKind::FileTransfer => CommandKind::FileTransfer,
        FunctionKind::TimeSync => CommandKind::TimeSync,
        FunctionKind::UnsolicitedEnable | FunctionKind::Response | FunctionKind::Other => {
            CommandKind::Other
        }
    }
}

/// Whether the outstation answers a request with this function (the `_NR` variants
/// and CONFIRM get no response, 1815 §4.2.2.5).
fn expects_response(function: FunctionCode) -> bool {
    use FunctionCode::*;
    !matches!(
        function,
        Confirm
            | DirectOperateNoResponse
            | ImmediateFreezeNoResponse
            | FreezeClearNoResponse
            | FreezeAtTimeNoResponse
            | AuthenticateRequestNoAck
    )
}

/// What a DNP3 master addresses, as `Observation::ObjectAccess` objects: outstation
/// link addresses, application functions, and (function, object type, first index)
/// of request object headers. A master polls a handful of these; enumeration of
/// addresses, functions or point ranges addresses many.
mod sweep_object {
    use super::{ObjectHeader, Range};

    const ADDRESS: u64 = 1 << 56;
    const FUNCTION: u64 = 2 << 56;
    const POINT: u64 = 3 << 56;

    pub(super) fn address(destination: u16) -> u64 {
        ADDRESS | u64::from(destination)
    }

    pub(super) fn function(function: u8) -> u64 {
        FUNCTION | u64::from(function)
    }

    pub(super) fn point(function: u8, header: &ObjectHeader<'_>) -> u64 {
        let start = match header.range {
            Range::StartStop { start, .. } => start,
            Range::All | Range::Count(_) => 0,
        };
        POINT
            | (u64::from(function) << 48)
            | (u64::from(header.group) << 40)
            | (u64::from(header.variation) << 32)
            | u64::from(start)
    }
}

/// The identity field a group 0 device attribute reports (1815 §11.9.1).
fn identity_field(variation: u8) -> Option<IdentityField> {
    Some(match variation {
        242 => IdentityField::Firmware,
        243 => IdentityField::Hardware,
        246 | 247 => IdentityField::Name,
        248 => IdentityField::Serial,
        250 => IdentityField::Product,
        252 => IdentityField::Vendor,
        _ => None?,
    })
}

/// Device attribute data type 1: visible string.
const ATTRIBUTE_VSTR: u8 = 1;

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// What a completed fragment contributes to the EVE event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Completed {
    function: u8,
    iin: Option<Iin>,
}

/// Inspects one DNP3 link frame: link statistics, transport reassembly (state per flow
/// direction in the worker's [`ReassemblyPool`]), and for a completed application
/// fragment its statistics, request/response matching, observations (commands,
/// group 0 identity, IIN2 error bits, SAv5 authentication errors) and the EVE event.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let link = match LinkFrame::new_checked(pdu) {
        Ok(link) => link,
        Err(_) => {
            ctx.malformed(Protocol::Dnp3);
            return;
        }
    };
    ctx.count(Protocol::Dnp3);
    let (source, destination) = (link.source(), link.destination());
    let stats = &mut ctx.stats.dnp3;
    let function = u32::from(link.function_code());
    stats.link_func.add(if link.prm() {
        0x100 | function
    } else {
        function
    });
    stats.link_addrs.add(pair_key(source, destination));
    if ctx.direction == Direction::Request && link.prm() {
        // A master probing outstation addresses (address enumeration).
        ctx.object_access(Protocol::Dnp3, sweep_object::address(destination));
    }
    let mut completed = None;
    if link.carries_user_data() {
        let mut segment = [0u8; MAX_USER_DATA];
        match link.user_data_into(&mut segment) {
            Ok(len) => completed = transport(segment.get(..len).unwrap_or(&[]), ctx),
            Err(_) => {
                ctx.stats.dnp3.data_crc_errors += 1;
                ctx.protocol_error(
                    Protocol::Dnp3,
                    ProtocolErrorKind::Malformed,
                    MALFORMED_DATA_CRC,
                );
            }
        }
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Dnp3(Dnp3Event {
            src: source,
            dst: destination,
            function: completed.map(|c| c.function),
            iin: completed.and_then(|c| c.iin).map(|iin| iin.0),
            direction: ctx.direction,
        }));
    }
}

/// Feeds one transport segment to its direction's reassembly; inspects the application
/// fragment it completes.
fn transport(segment: &[u8], ctx: &mut PduCtx<'_>) -> Option<Completed> {
    let Some(&header) = segment.first() else {
        ctx.stats.dnp3.transport_errors += 1;
        return None;
    };
    let header = TransportHeader(header);
    let direction = direction_index(ctx.direction);
    let mut handle = ctx.state.dnp3_slots.get(direction).copied().unwrap_or(0);
    if header.fir() {
        // A new fragment: whatever was in progress in this direction is abandoned.
        if ctx.dnp3.get_mut(handle).is_some_and(|r| r.in_progress()) {
            ctx.stats.dnp3.fragments_abandoned += 1;
        }
        if header.fin() {
            // A whole fragment in one segment: no reassembler needed.
            ctx.dnp3.release(&mut handle);
            set_slot(ctx, direction, handle);
            return application(segment.get(1..).unwrap_or(&[]), ctx);
        }
        if ctx.dnp3.holds(handle) {
            ctx.dnp3.restart(handle, ctx.ts_ns);
        } else {
            // No slot, or a stale handle: this direction's half-open fragment expired.
            let acquired = ctx.dnp3.acquire(ctx.ts_ns);
            ctx.stats.dnp3.reassembly_expired += ctx.dnp3.take_expired();
            match acquired {
                Some(acquired) => handle = acquired,
                None => {
                    ctx.stats.dnp3.reassembly_pool_exhausted += 1;
                    return None;
                }
            }
            set_slot(ctx, direction, handle);
        }
    }
    let Some(reassembler) = ctx.dnp3.get_mut(handle) else {
        // A continuation without its first segment (or whose first segment found the
        // pool exhausted, or whose half-open fragment expired).
        ctx.stats.dnp3.transport_errors += 1;
        return None;
    };
    // The fragment is copied out so that inspecting it can borrow the context.
    let mut fragment = [0u8; MAX_FRAGMENT_LEN];
    let len = match reassembler.push(segment) {
        Ok(None) => return None,
        Ok(Some(bytes)) => {
            let len = bytes.len().min(MAX_FRAGMENT_LEN);
            if let (Some(target), Some(source)) = (fragment.get_mut(..len), bytes.get(..len)) {
                target.copy_from_slice(source);
            }
            len
        }
        Err(_) => {
            ctx.stats.dnp3.transport_errors += 1;
            0
        }
    };
    // Complete or failed: the slot goes back to the pool either way.
    ctx.dnp3.release(&mut handle);
    set_slot(ctx, direction, handle);
    if len == 0 {
        return None;
    }
    application(fragment.get(..len).unwrap_or(&[]), ctx)
}

fn set_slot(ctx: &mut PduCtx<'_>, direction: usize, handle: u16) {
    if let Some(slot) = ctx.state.dnp3_slots.get_mut(direction) {
        *slot = handle;
    }
}

/// Inspects one complete application fragment.
fn application(bytes: &[u8], ctx: &mut PduCtx<'_>) -> Option<Completed> {
    let fragment = match Fragment::new_checked(bytes) {
        Ok(fragment) => fragment,
        Err(_) => {
            ctx.stats.dnp3.bad_fragments += 1;
            ctx.protocol_error(
                Protocol::Dnp3,
                ProtocolErrorKind::Malformed,
                MALFORMED_FRAGMENT,
            );
            return None;
        }
    };
    let code = fragment.function_code();
    let function = u8::from(code);
    let iin = fragment.iin();
    let stats = &mut ctx.stats.dnp3;
    stats.al_func.add(u32::from(function));
    if let Some(iin) = iin {
        for (index, (bit, _)) in Iin::ALL.iter().enumerate() {
            if iin.contains(*bit) {
                stats.iin_bits.add(index as u32);
            }
        }
    }
    if fragment.uns() {
        stats.unsolicited.add(1);
    }
    if let Some(iin) = iin.filter(|_| code.is_response()) {
        ctx.identity(
            Protocol::Dnp3,
            IdentityField::Mode,
            outstation_mode(iin).as_bytes(),
        );
    }
    // A request of the connection's client (CONFIRM only acknowledges a fragment).
    let client_request =
        ctx.direction == Direction::Request && !code.is_response() && code != FunctionCode::Confirm;
    if client_request {
        ctx.object_access(Protocol::Dnp3, sweep_object::function(function));
    }
    for header in fragment.object_headers() {
        ctx.stats
            .dnp3
            .objects
            .add((u32::from(header.group) << 8) | u32::from(header.variation));
        if client_request {
            ctx.object_access(Protocol::Dnp3, sweep_object::point(function, &header));
        }
        if code.is_response() {
            for attribute in header.device_attributes() {
                if attribute.data_type != ATTRIBUTE_VSTR {
                    continue;
                }
                if let Some(field) = identity_field(attribute.variation) {
                    ctx.identity(Protocol::Dnp3, field, attribute.value);
                }
            }
        }
        if (header.group, header.variation) == (AUTH_GROUP, AUTH_ERROR_VARIATION) {
            let prefix = header.qualifier.prefix_len().unwrap_or(0);
            let error = header
                .objects
                .and_then(|objects| objects.get(prefix + AUTH_ERROR_CODE_OFFSET));
            if let Some(&error) = error {
                ctx.protocol_error(
                    Protocol::Dnp3,
                    ProtocolErrorKind::AuthFailure,
                    u32::from(error),
                );
            }
        }
    }
    let seq = u32::from(fragment.seq());
    if code.is_response() {
        // Only the first fragment of a solicited response carries the request's
        // sequence number (1815 §4.2.2.4.3); unsolicited ones count their own.
        if code == FunctionCode::Response && fragment.fir() && !fragment.uns() {
            if let Some((_, latency)) = ctx.state.response(seq, ctx.ts_ns) {
                ctx.response_time(Protocol::Dnp3, latency);
            }
        }
        if let Some(iin) = iin {
            for bit in IIN_REQUEST_ERRORS {
                if iin.contains(bit) {
                    ctx.protocol_error(
                        Protocol::Dnp3,
                        ProtocolErrorKind::DeviceIndication,
                        u32::from(bit),
                    );
                }
            }
        }
    } else if code != FunctionCode::Confirm {
        // CONFIRM only acknowledges a fragment: not a command.
        if expects_response(code) {
            ctx.state.request(seq, u32::from(function), ctx.ts_ns);
        }
        ctx.command(Protocol::Dnp3, command_kind(&fragment), u32::from(function));
        if let FunctionCode::Unknown(unknown) = code {
            ctx.protocol_error(
                Protocol::Dnp3,
                ProtocolErrorKind::UnknownFunction,
                u32::from(unknown),
            );
        }
    }
    Some(Completed { function, iin })
}

#[cfg(test)]
mod inspect_tests {
    use super::*;
    use crate::inspect::test_capture::{commands, errors, hex, objects};
    use crate::inspect::{FlowInfo, Outputs, ProtocolEvent, ProtocolStats, RecentCache};
    use crate::observe::Observation;
    use crate::observe::{Delivery, ObservationSink};
    use crate::output::eve::{EveRecord, EventSink};
    use crossbeam_channel::Receiver;
    use std::net::{IpAddr, Ipv4Addr};

    /// dnp3-cold-restart.pcap #4: master 1 → outstation 10, COLD_RESTART, app seq 0.
    const COLD_RESTART_REQUEST: &str = "056408c40a000100fc42c0c00d9c86";
    /// dnp3-cold-restart.pcap #6: its response, IIN 0x0001 (function not supported).
    const COLD_RESTART_RESPONSE: &str = "05640a4401000a006e25c0c0810001c2de";
    /// dnp3-read-response.pcap #6: first transport segment (FIR, seq 19) of a response.
    const READ_RESPONSE_FIRST: &str = "0564ff4401000a005aeb53c081000001020000090202020202022d3a0202020203020000090202020202020270da02020214010000090200000000020000e30b000002000000000200000000020000004dba000200000000020000000002000000007eae02000000000200000000150100000902d3420000000002000000000200000000020069ce00000002000000000200000000020000dd5e000002000000000200000000020000004dba001e0100000902000000000200000000cd6302000000000200000000020000000002f0030000000002000000000200000000020069ce00000002000000000a0200000902020217100202020202020228010000090200000058e4000200000000020000000002000000007eae020000000002000000004e72";
    /// dnp3-read-response.pcap #8: last segment (FIN, seq 20) of that response.
    const READ_RESPONSE_LAST: &str =
        "05641a4401000a00af5d9402000000000200000000020000000066420200000000f3b9";

    /// A primary UNCONFIRMED_USER_DATA link frame (control 0xC4 from the master, 0x44
    /// from an outstation) carrying `segment`, with its header and block CRCs.
    fn link_frame(from_master: bool, destination: u16, source: u16, segment: &[u8]) -> Vec<u8> {
        let control = if from_master { 0xC4 } else { 0x44 };
        let mut frame = vec![0x05, 0x64, 5 + segment.len() as u8, control];
        frame.extend_from_slice(&destination.to_le_bytes());
        frame.extend_from_slice(&source.to_le_bytes());
        let header_crc = crc(&frame);
        frame.extend_from_slice(&header_crc.to_le_bytes());
        for block in segment.chunks(BLOCK_LEN) {
            frame.extend_from_slice(block);
            frame.extend_from_slice(&crc(block).to_le_bytes());
        }
        frame
    }

    /// A single-segment fragment (transport FIR|FIN) from `hex` application bytes.
    fn single(from_master: bool, application: &str) -> Vec<u8> {
        let mut segment = vec![0xC0];
        segment.extend_from_slice(&hex(application));
        let (destination, source) = if from_master { (10, 1) } else { (1, 10) };
        link_frame(from_master, destination, source, &segment)
    }

    struct Harness {
        pool: ReassemblyPool,
        state: AppState,
        stats: ProtocolStats,
        sink: ObservationSink,
        observations: Receiver<crate::observe::Stamped>,
        recent: RecentCache,
        events: Option<EventSink>,
        eve: Receiver<EveRecord>,
        flow: FlowInfo,
    }

    impl Harness {
        fn new(pool_slots: usize, events: bool) -> Harness {
            let (tx, observations) = crossbeam_channel::unbounded();
            let (etx, eve) = crossbeam_channel::unbounded();
            Harness {
                pool: ReassemblyPool::new(pool_slots),
                state: AppState::default(),
                stats: ProtocolStats::default(),
                sink: ObservationSink::new(tx, Delivery::Block),
                observations,
                recent: RecentCache::new(64, 1_000_000_000),
                events: events.then(|| EventSink::new(etx, Delivery::Block)),
                eve,
                flow: FlowInfo {
                    flow_id: 7,
                    client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000),
                    server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 20000),
                    client_mac: None,
                    server_mac: None,
                    ip_protocol: 6,
                    vlan: 0,
                },
            }
        }

        fn feed(&mut self, direction: Direction, frame: &[u8], ts_ns: u64) {
            let mut ctx = PduCtx {
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
                dnp3: &mut self.pool,
                segments: &mut crate::inspect::reassembly::SegmentPool::new(0),
            };
            inspect(frame, &mut ctx);
        }

        fn observations(&self) -> Vec<Observation> {
            self.observations
                .try_iter()
                .map(|s| s.observation)
                .collect()
        }

        fn summary(&self, histogram: &str) -> serde_json::Value {
            self.stats.dnp3.summary()[histogram].clone()
        }
    }

    #[test]
    fn cold_restart_is_a_restart_command_and_its_response_matches() {
        let mut h = Harness::new(4, false);
        h.feed(Direction::Request, &hex(COLD_RESTART_REQUEST), 1_000);
        h.feed(Direction::Response, &hex(COLD_RESTART_RESPONSE), 5_000);
        let observations = h.observations();
        assert_eq!(commands(&observations), [(CommandKind::Restart, 13)]);
        assert_eq!(
            errors(&observations),
            [(
                ProtocolErrorKind::DeviceIndication,
                u32::from(Iin::NO_FUNC_CODE_SUPPORT)
            )]
        );
        let dnp3 = Protocol::Dnp3.index();
        assert_eq!(h.stats.pdus[dnp3], 2);
        assert_eq!(h.stats.matched_responses[dnp3], 1);
        assert_eq!(h.stats.response_time_ns_sum[dnp3], 4_000);
        assert_eq!(h.summary("al_func"), serde_json::json!({"13": 1, "129": 1}));
        assert_eq!(h.summary("iin_bits"), serde_json::json!({"fcni": 1}));
        assert_eq!(h.summary("link_func"), serde_json::json!({"pri/4": 2}));
        assert_eq!(
            h.summary("link_addrs"),
            serde_json::json!({"1->10": 1, "10->1": 1})
        );
        assert_eq!(h.summary("unsolicited"), serde_json::Value::Null);
    }

    #[test]
    fn master_requests_report_the_address_function_and_points_they_address() {
        let mut h = Harness::new(4, false);
        // Outstation 10, COLD_RESTART: no object headers.
        h.feed(Direction::Request, &hex(COLD_RESTART_REQUEST), 1);
        assert_eq!(
            objects(&h.observations()),
            [(1_u64 << 56) | 10, (2_u64 << 56) | 13]
        );
        // READ g30v1 indexes 5..9 (qualifier 0x00, 1-octet start/stop), outstation 10.
        h.feed(Direction::Request, &single(true, "c1 01 1e01 00 05 09"), 2);
        let point = (3_u64 << 56) | (1 << 48) | (30 << 40) | (1 << 32) | 5;
        // The address was reported by this flow within the interval: not again.
        assert_eq!(objects(&h.observations()), [(2_u64 << 56) | 1, point]);
        // Responses address nothing.
        h.feed(Direction::Response, &hex(COLD_RESTART_RESPONSE), 3);
        assert_eq!(objects(&h.observations()), Vec::<u64>::new());
    }

    #[test]
    fn dangerous_and_classified_commands() {
        let mut h = Harness::new(4, false);
        for (application, want) in [
            ("c3 12", (CommandKind::Stop, 18)),
            ("c4 11", (CommandKind::Start, 17)),
            ("c5 15 3c02 06", (CommandKind::DisableCommunication, 21)),
            ("c6 14 3c02 06", (CommandKind::Other, 20)),
            ("c7 02 3201 07 01 000000000000", (CommandKind::TimeSync, 2)),
            ("c8 07 1400 06", (CommandKind::Operate, 7)),
            ("c9 19", (CommandKind::FileTransfer, 25)),
            ("ca 1f", (CommandKind::Program, 31)),
        ] {
            h.feed(Direction::Request, &single(true, application), 1);
            assert_eq!(commands(&h.observations()), [want], "{application}");
        }
        // CONFIRM is no command; an undefined function is reported as such.
        h.feed(Direction::Request, &single(true, "c0 00"), 1);
        assert_eq!(commands(&h.observations()), []);
        h.feed(Direction::Request, &single(true, "c0 70 3c01 06"), 1);
        let observations = h.observations();
        assert_eq!(commands(&observations), [(CommandKind::Other, 112)]);
        assert_eq!(
            errors(&observations),
            [(ProtocolErrorKind::UnknownFunction, 112)]
        );
        assert_eq!(
            h.summary("objects"),
            serde_json::json!({"g60v2": 2, "g50v1": 1, "g20v0": 1, "g60v1": 1})
        );
    }

    #[test]
    fn a_fragment_spanning_link_frames_counts_where_it_completes() {
        let mut h = Harness::new(4, true);
        h.feed(Direction::Response, &hex(READ_RESPONSE_FIRST), 1);
        assert_eq!(h.pool.in_use(), 1);
        assert_eq!(h.summary("al_func"), serde_json::Value::Null);
        h.feed(Direction::Response, &hex(READ_RESPONSE_LAST), 2);
        assert_eq!(
            h.pool.in_use(),
            0,
            "the slot returns once the fragment is whole"
        );
        assert_eq!(h.state.dnp3_slots, [0, 0]);
        assert_eq!(h.summary("al_func"), serde_json::json!({"129": 1}));
        assert_eq!(h.stats.pdus[Protocol::Dnp3.index()], 2);
        let events: Vec<_> = h
            .eve
            .try_iter()
            .map(|record| match record {
                EveRecord::Protocol(ProtocolEvent {
                    body: EventBody::Dnp3(event),
                    ..
                }) => event,
                other => panic!("unexpected record {other:?}"),
            })
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].src, events[0].dst, events[0].function),
            (10, 1, None)
        );
        assert_eq!(events[1].function, Some(129));
        assert_eq!(events[1].iin, Some(0x0000));
        assert_eq!(events[1].direction, Direction::Response);
    }

    #[test]
    fn pool_exhaustion_is_counted_not_fatal_and_flows_release_their_slots() {
        let mut h = Harness::new(0, false);
        h.feed(Direction::Response, &hex(READ_RESPONSE_FIRST), 1);
        h.feed(Direction::Response, &hex(READ_RESPONSE_LAST), 2);
        assert_eq!(h.stats.dnp3.reassembly_pool_exhausted, 1);
        assert_eq!(h.stats.dnp3.transport_errors, 1);
        assert_eq!(h.summary("al_func"), serde_json::Value::Null);
        assert_eq!(h.stats.pdus[Protocol::Dnp3.index()], 2);
        // Single-segment fragments need no slot.
        h.feed(Direction::Request, &hex(COLD_RESTART_REQUEST), 3);
        assert_eq!(h.summary("al_func"), serde_json::json!({"13": 1}));

        let mut h = Harness::new(1, false);
        h.feed(Direction::Response, &hex(READ_RESPONSE_FIRST), 1);
        assert_eq!(h.pool.in_use(), 1);
        h.pool.release_flow(&mut h.state);
        assert_eq!((h.pool.in_use(), h.state.dnp3_slots), (0, [0, 0]));
        // A new first segment abandons a partial fragment.
        h.feed(Direction::Response, &hex(READ_RESPONSE_FIRST), 2);
        h.feed(Direction::Response, &hex(READ_RESPONSE_FIRST), 3);
        assert_eq!(h.stats.dnp3.fragments_abandoned, 1);
        assert_eq!(h.pool.in_use(), 1);
    }

    #[test]
    fn a_half_open_fragment_loses_its_slot_after_the_timeout() {
        use crate::inspect::reassembly::HALF_OPEN_TIMEOUT_NS;
        let mut h = Harness::new(1, false);
        // Flow A: a first segment whose last never comes holds the only slot.
        h.feed(Direction::Response, &hex(READ_RESPONSE_FIRST), 0);
        assert_eq!(h.pool.in_use(), 1);
        let flow_a = std::mem::take(&mut h.state);
        // Flow B, before the timeout: the pool is exhausted, nothing expires.
        h.feed(
            Direction::Response,
            &hex(READ_RESPONSE_FIRST),
            1_000_000_000,
        );
        assert_eq!(h.stats.dnp3.reassembly_pool_exhausted, 1);
        assert_eq!(h.stats.dnp3.reassembly_expired, 0);
        h.feed(Direction::Response, &hex(READ_RESPONSE_LAST), 1_000_000_001);
        assert_eq!(h.summary("al_func"), serde_json::Value::Null);
        // After the timeout A's half-open fragment loses its slot to B, whose
        // fragment then completes.
        h.state = AppState::default();
        h.feed(
            Direction::Response,
            &hex(READ_RESPONSE_FIRST),
            HALF_OPEN_TIMEOUT_NS,
        );
        assert_eq!(h.stats.dnp3.reassembly_expired, 1);
        assert_eq!(h.stats.dnp3.reassembly_pool_exhausted, 1);
        assert_ne!(h.state.dnp3_slots[1], 0);
        h.feed(
            Direction::Response,
            &hex(READ_RESPONSE_LAST),
            HALF_OPEN_TIMEOUT_NS + 1,
        );
        assert_eq!(h.summary("al_func"), serde_json::json!({"129": 1}));
        assert_eq!(h.pool.in_use(), 0);
        // A's handle is stale: its late last segment is a transport error, and it
        // reaches no other flow's bytes.
        let errors_before = h.stats.dnp3.transport_errors;
        h.state = flow_a;
        assert!(!h.pool.holds(h.state.dnp3_slots[1]));
        h.feed(
            Direction::Response,
            &hex(READ_RESPONSE_LAST),
            HALF_OPEN_TIMEOUT_NS + 2,
        );
        assert_eq!(h.stats.dnp3.transport_errors, errors_before + 1);
        assert_eq!(h.summary("al_func"), serde_json::json!({"129": 1}));
        // Releasing the stale handle frees nothing that another flow holds.
        let mut other = AppState::default();
        std::mem::swap(&mut h.state, &mut other);
        h.feed(
            Direction::Response,
            &hex(READ_RESPONSE_FIRST),
            HALF_OPEN_TIMEOUT_NS + 3,
        );
        assert_eq!(h.pool.in_use(), 1);
        h.pool.release_flow(&mut other);
        assert_eq!((h.pool.in_use(), other.dnp3_slots), (1, [0, 0]));
        assert!(h.pool.holds(h.state.dnp3_slots[1]));
        assert_eq!(h.stats.dnp3.summary()["reassembly_expired"], 1);
    }

    #[test]
    fn device_attributes_and_authentication_errors() {
        let mut h = Harness::new(4, false);
        // g0v252 manufacturer "ACME" (VSTR), g0v250 product "RTU-9".
        h.feed(
            Direction::Response,
            &single(
                false,
                "c0 81 0000 00fc 00 0000 01 04 41434d45 00fa 00 0000 01 05 5254552d39",
            ),
            1,
        );
        let identities: Vec<_> = h
            .observations()
            .into_iter()
            .filter_map(|o| match o {
                Observation::Identity { field, value, .. } => {
                    Some((field, value.as_bytes().to_vec()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            identities,
            [
                // IIN 0x0000: no restart, trouble or local control.
                (IdentityField::Mode, b"online".to_vec()),
                (IdentityField::Vendor, b"ACME".to_vec()),
                (IdentityField::Product, b"RTU-9".to_vec()),
            ]
        );
        // g120v7 authentication error, error code 1 (authentication failed).
        h.feed(
            Direction::Response,
            &single(
                false,
                "c0 83 0000 7807 5b 01 0f00 01000000 0100 0000 01 000000000000",
            ),
            2,
        );
        assert_eq!(
            errors(&h.observations()),
            [(ProtocolErrorKind::AuthFailure, 1)]
        );
        assert_eq!(
            h.summary("al_func"),
            serde_json::json!({"129": 1, "131": 1})
        );
    }

    #[test]
    fn broken_frames_are_malformed_without_panicking() {
        let mut h = Harness::new(4, false);
        let mut bad_block = hex(COLD_RESTART_REQUEST);
        let last = bad_block.len() - 1;
        bad_block[last] ^= 0xFF;
        h.feed(Direction::Request, &bad_block, 1);
        assert_eq!(h.stats.dnp3.data_crc_errors, 1);
        h.feed(Direction::Request, &hex("0564"), 2);
        assert_eq!(h.stats.malformed[Protocol::Dnp3.index()], 1);
        // A response too short for its IIN.
        h.feed(Direction::Response, &single(false, "c0 81 00"), 3);
        assert_eq!(h.stats.dnp3.bad_fragments, 1);
        assert_eq!(
            errors(&h.observations()),
            [
                (ProtocolErrorKind::Malformed, MALFORMED_DATA_CRC),
                (ProtocolErrorKind::Malformed, 0),
                (ProtocolErrorKind::Malformed, MALFORMED_FRAGMENT)
            ]
        );
        assert_eq!(h.stats.pdus[Protocol::Dnp3.index()], 2);
    }

    #[test]
    fn an_outstation_iin_reports_its_mode_with_each_change() {
        // dnp3-digitalbond-part1.pcap: outstation 10.0.0.3 sets IIN1.7 (device
        // restart) three times, each cleared later (tshark `dnp3.al.iin.rst`
        // 0 1 0 1 0 1 over its responses).
        let (pdus, _) =
            otsensor_wire::test_capture::framed_pdus("dnp3-digitalbond-part1.pcap", 20000, frame);
        let mut h = Harness::new(16, false);
        for (index, (direction, pdu)) in pdus.iter().enumerate() {
            h.feed(*direction, pdu, index as u64 * 1_000);
        }
        let modes: Vec<String> = crate::inspect::test_capture::identities(&h.observations())
            .into_iter()
            .filter(|(field, _)| *field == IdentityField::Mode)
            .map(|(_, value)| value)
            .collect();
        assert_eq!(
            modes,
            [
                "online",
                "restarted",
                "online",
                "restarted",
                "online",
                "restarted"
            ]
        );
        assert_eq!(
            outstation_mode(Iin(Iin::LOCAL_CONTROL | Iin::NEED_TIME)),
            "local control"
        );
        assert_eq!(
            outstation_mode(Iin(Iin::DEVICE_TROUBLE | Iin::CONFIG_CORRUPT)),
            "configuration corrupt"
        );
    }
}
