//! The bounded flow table one worker owns.
//!
//! Slots live in a preallocated slab indexed by an open-addressing [`FlowIndex`] and
//! threaded on an intrusive LRU list, so lookup, insert, touch, expiry and eviction are O(1) and no
//! packet allocates once the table is warm. When the table is full the least recently
//! seen flow is evicted and counted.

use super::{FlowHasher, FlowKey, Side};

const NIL: u32 = u32::MAX;
/// Flows the index holds before its first growth.
pub const INITIAL_INDEX: usize = 16_384;
/// Payload packets of a flow on an unknown port that are checked against the
/// protocols' signatures before the flow is left unrecognised.
const RECOGNITION_PACKETS: u8 = 4;

/// Why a flow record ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// No packet for longer than its timeout.
    Timeout,
    /// The table was full and this was the least recently seen flow.
    Evicted,
    /// The capture ended or the sensor stopped.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Timeout => "timeout",
            EndReason::Evicted => "forced",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Per-direction packet and byte counts, indexed by the side that sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionCounts {
    pub packets: u64,
    pub bytes: u64,
}

/// One flow's state.
#[derive(Clone, Debug)]
pub struct Flow {
    pub key: FlowKey,
    pub hash: u64,
    /// Stable id for events (`flow_id`): the key hash mixed with the start time.
    pub id: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// The side that sent the first packet (the client for TCP when the SYN was seen).
    pub initiator: Side,
    /// Counts sent by the lower ([0]) and higher ([1]) endpoint.
    pub sent: [DirectionCounts; 2],
    /// TCP flags seen from each side, ORed.
    pub tcp_flags: [u8; 2],
    /// Set once a FIN from both sides or a RST was seen: the shorter timeout applies.
    pub closed: bool,
    /// The application protocol, once recognised.
    pub app_proto: Option<otsensor_wire::Protocol>,
    /// Payload packets left in which to recognise the protocol by its signature.
    pub recognition_left: u8,
    /// TCP framing state per side (indexed like `sent`).
    pub stream: [crate::flow::stream::StreamDir; 2],
    /// The protocol's per-flow state (request matching, ...).
    pub app: crate::inspect::AppState,
}

/// A slot's neighbours on the LRU list. Kept apart from the flows, in a dense array:
/// moving a flow to the front touches its neighbours' links, and in the flows
/// themselves that was up to three more cache misses per packet.
#[derive(Clone, Copy, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

impl Flow {
    /// Counts sent by the initiator (to the server) and by the responder.
    pub fn to_server(&self) -> DirectionCounts {
        self.sent[side_index(self.initiator)]
    }

    pub fn to_client(&self) -> DirectionCounts {
        self.sent[1 - side_index(self.initiator)]
    }
}

pub fn side_index(side: Side) -> usize {
    match side {
        Side::Lo => 0,
        Side::Hi => 1,
    }
}

/// Counters a worker folds into its report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableCounters {
    pub created: u64,
    pub expired: u64,
    pub evicted: u64,
}

/// Timeouts in packet-time nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub idle_ns: u64,
    pub closed_ns: u64,
}

/// A bounded flow table.
pub struct FlowTable {
    index: FlowIndex,
    slots: Vec<Flow>,
    /// The LRU list, indexed like `slots`.
    links: Vec<Link>,
    free: Vec<u32>,
    /// Most recently seen.
    head: u32,
    /// Least recently seen: the next to expire or evict.
    tail: u32,
    capacity: usize,
    timeouts: Timeouts,
    hasher: FlowHasher,
    pub counters: TableCounters,
}

impl std::fmt::Debug for FlowTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowTable")
            .field("len", &self.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl FlowTable {
    /// A table for at most `capacity` flows. Slab memory is reserved up front and slots
    /// are committed as flows first fill them, then reused. The index starts sized for
    /// [`INITIAL_INDEX`] flows and doubles when the table reaches a new high: an index
    /// sized for a million flows spreads a few thousand over 10 MB, so every lookup
    /// missed the cache (a third of the worker's time in the profile); growth happens a
    /// handful of times in a worker's life, never in the steady state.
    pub fn new(capacity: usize, timeouts: Timeouts) -> FlowTable {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        FlowTable {
            index: FlowIndex::with_capacity(capacity.min(INITIAL_INDEX)),
            // Reserved, not touched: the OS commits pages as flows first fill them, and
            // no packet ever reallocates the slab.
            slots: Vec::with_capacity(capacity),
            links: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
            capacity,
            timeouts,
            hasher: FlowHasher,
            counters: TableCounters::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len
    }

    /// The most memory a full table of `capacity` flows uses: the slab, the free list
    /// and the index (see [`FlowIndex`]).
    pub fn memory_budget(capacity: usize) -> usize {
        capacity
            * (std::mem::size_of::<Flow>()
                + std::mem::size_of::<Link>()
                + std::mem::size_of::<u32>())
            + FlowIndex::entries_for(capacity) * std::mem::size_of::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.index.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn get(&self, slot: u32) -> &Flow {
        &self.slots[slot as usize]
    }

    pub fn get_mut(&mut self, slot: u32) -> &mut Flow {
        &mut self.slots[slot as usize]
    }

    fn timeout_of(&self, flow: &Flow) -> u64 {
        if flow.closed {
            self.timeouts.closed_ns
        } else {
            self.timeouts.idle_ns
        }
    }

    fn expired(&self, flow: &Flow, now_ns: u64) -> bool {
        now_ns.saturating_sub(flow.last_ns) > self.timeout_of(flow)
    }

    /// Finds the packet's flow or starts one, and marks it most recently seen. A flow that
    /// had already timed out is ended first (so the split does not depend on when the
    /// sweep last ran), and a full table evicts its least recent flow; `on_end` sees each
    /// ended flow. Returns the slot and whether the flow is new.
    pub fn lookup<F: FnMut(&mut Flow, EndReason)>(
        &mut self,
        key: &FlowKey,
        side: Side,
        now_ns: u64,
        mut on_end: F,
    ) -> (u32, bool) {
        let hash = self.hasher.hash_key(key);
        let slots = &self.slots;
        if let Some(slot) = self.index.find(hash, |s| slots[s as usize].key == *key) {
            let flow = &self.slots[slot as usize];
            if !self.expired(flow, now_ns) {
                self.touch(slot, now_ns);
                return (slot, false);
            }
            self.counters.expired += 1;
            on_end(&mut self.slots[slot as usize], EndReason::Timeout);
            self.remove(slot);
        }
        if self.index.len >= self.capacity {
            let victim = self.tail;
            if victim != NIL {
                let reason = if self.expired(&self.slots[victim as usize], now_ns) {
                    self.counters.expired += 1;
                    EndReason::Timeout
                } else {
                    self.counters.evicted += 1;
                    EndReason::Evicted
                };
                on_end(&mut self.slots[victim as usize], reason);
                self.remove(victim);
            }
        }
        let flow = Flow {
            key: *key,
            hash,
            id: flow_id(hash, now_ns),
            first_ns: now_ns,
            last_ns: now_ns,
            initiator: side,
            sent: [DirectionCounts::default(); 2],
            tcp_flags: [0; 2],
            closed: false,
            app_proto: None,
            recognition_left: RECOGNITION_PACKETS,
            stream: Default::default(),
            app: Default::default(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = flow;
                slot
            }
            None => {
                self.slots.push(flow);
                self.links.push(UNLINKED);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(hash, slot);
        self.link_front(slot);
        self.counters.created += 1;
        (slot, true)
    }

    /// Ends every flow idle past its timeout at `now_ns` (least recent first).
    pub fn expire<F: FnMut(&mut Flow, EndReason)>(&mut self, now_ns: u64, mut on_end: F) {
        while self.tail != NIL {
            let slot = self.tail;
            if !self.expired(&self.slots[slot as usize], now_ns) {
                // The tail is the least recent; a closed flow behind a long-timeout one
                // waits at most one idle timeout longer, which is harmless.
                break;
            }
            self.counters.expired += 1;
            on_end(&mut self.slots[slot as usize], EndReason::Timeout);
            self.remove(slot);
        }
    }

    /// Ends every flow (shutdown).
    pub fn drain<F: FnMut(&mut Flow, EndReason)>(&mut self, mut on_end: F) {
        while self.tail != NIL {
            let slot = self.tail;
            on_end(&mut self.slots[slot as usize], EndReason::Shutdown);
            self.remove(slot);
        }
    }

    fn touch(&mut self, slot: u32, now_ns: u64) {
        let flow = &mut self.slots[slot as usize];
        flow.last_ns = flow.last_ns.max(now_ns);
        if self.head != slot {
            self.unlink(slot);
            self.link_front(slot);
        }
    }

    fn remove(&mut self, slot: u32) {
        let hash = self.slots[slot as usize].hash;
        self.index.remove(hash, slot);
        self.unlink(slot);
        self.free.push(slot);
    }

    fn link_front(&mut self, slot: u32) {
        let old_head = self.head;
        self.links[slot as usize] = Link {
            prev: NIL,
            next: old_head,
        };
        if old_head != NIL {
            self.links[old_head as usize].prev = slot;
        } else {
            self.tail = slot;
        }
        self.head = slot;
    }

    fn unlink(&mut self, slot: u32) {
        let Link { prev, next } = self.links[slot as usize];
        if prev != NIL {
            self.links[prev as usize].next = next;
        } else {
            self.head = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        } else {
            self.tail = prev;
        }
        self.links[slot as usize] = UNLINKED;
    }
}

/// The index from a flow's hash to its slab slot: open addressing with linear probing,
/// one `u64` per entry holding the hash's high half beside the slot. A lookup reads one
/// entry line, then the flow; hashbrown's control bytes and buckets lay apart, two cache
/// misses per packet in the profile (issue 11). At most 3/4 full, so a probe always
/// ends at an empty entry; removal shifts the entries behind back (no tombstones), and
/// growth rehashes from the entries alone, without touching the flows.
struct FlowIndex {
    entries: Vec<u64>,
    len: usize,
}

const EMPTY: u64 = u64::MAX;

impl FlowIndex {
    fn with_capacity(flows: usize) -> FlowIndex {
        FlowIndex {
            entries: vec![EMPTY; FlowIndex::entries_for(flows)],
            len: 0,
        }
    }

    /// Entries for `flows` flows at a load of at most 3/4.
    fn entries_for(flows: usize) -> usize {
        (flows.max(1) * 4 / 3 + 1).next_power_of_two()
    }

    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    /// An entry's tag (its hash's high half) also picks its home position.
    fn home(tag: u64, mask: usize) -> usize {
        tag as usize & mask
    }

    /// The slot of the entry with this hash for which `eq` holds.
    fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = hash >> 32;
        let mask = self.mask();
        let mut pos = FlowIndex::home(tag, mask);
        loop {
            let entry = self.entries[pos];
            if entry == EMPTY {
                return None;
            }
            if entry >> 32 == tag && eq(entry as u32) {
                return Some(entry as u32);
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Adds `slot` (not in the index) under `hash`; doubles the index first when it
    /// would pass 3/4 full (a new high of flows: never in the steady state).
    fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place((hash >> 32) << 32 | u64::from(slot));
        self.len += 1;
    }

    fn place(&mut self, entry: u64) {
        let mask = self.mask();
        let mut pos = FlowIndex::home(entry >> 32, mask);
        while self.entries[pos] != EMPTY {
            pos = (pos + 1) & mask;
        }
        self.entries[pos] = entry;
    }

    fn grow(&mut self) {
        let doubled = vec![EMPTY; self.entries.len() * 2];
        let old = std::mem::replace(&mut self.entries, doubled);
        for entry in old.into_iter().filter(|&entry| entry != EMPTY) {
            self.place(entry);
        }
    }

    /// Removes `slot`, stored under `hash`.
    fn remove(&mut self, hash: u64, slot: u32) {
        let mask = self.mask();
        let mut hole = FlowIndex::home(hash >> 32, mask);
        loop {
            let entry = self.entries[hole];
            if entry == EMPTY {
                return;
            }
            if entry as u32 == slot {
                break;
            }
            hole = (hole + 1) & mask;
        }
        // Backward shift: an entry further on moves into the hole when the hole lies
        // between its home and where it sits, so every probe still reaches it.
        let mut next = (hole + 1) & mask;
        loop {
            let entry = self.entries[next];
            if entry == EMPTY {
                break;
            }
            let home = FlowIndex::home(entry >> 32, mask);
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.entries[hole] = entry;
                hole = next;
            }
            next = (next + 1) & mask;
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
    }
}

/// A flow id that is stable across runs and positive in signed 64-bit (as Suricata's).
fn flow_id(hash: u64, start_ns: u64) -> u64 {
    (hash ^ start_ns.rotate_left(17)).wrapping_mul(0x9E37_79B9_7F4A_7C15) & (i64::MAX as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(n: u16) -> FlowKey {
        FlowKey {
            lo_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            hi_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            lo_port: n,
            hi_port: 502,
            protocol: 6,
            vlan: 0,
        }
    }

    const T: Timeouts = Timeouts {
        idle_ns: 100,
        closed_ns: 10,
    };

    #[test]
    fn same_key_finds_same_slot() {
        let mut table = FlowTable::new(4, T);
        let (a, new_a) = table.lookup(&key(1), Side::Lo, 1, |_, _| {});
        let (b, new_b) = table.lookup(&key(1), Side::Hi, 2, |_, _| {});
        assert_eq!((a, new_a, new_b), (b, true, false));
        assert_eq!(table.get(a).initiator, Side::Lo);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn full_table_evicts_least_recent_and_counts() {
        let mut table = FlowTable::new(2, T);
        table.lookup(&key(1), Side::Lo, 1, |_, _| {});
        table.lookup(&key(2), Side::Lo, 2, |_, _| {});
        table.lookup(&key(1), Side::Lo, 3, |_, _| {}); // key 2 is now least recent
        let mut ended = Vec::new();
        table.lookup(&key(3), Side::Lo, 4, |f, r| ended.push((f.key.lo_port, r)));
        assert_eq!(ended, vec![(2, EndReason::Evicted)]);
        assert_eq!(
            table.counters,
            TableCounters {
                created: 3,
                expired: 0,
                evicted: 1
            }
        );
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn idle_flow_is_split_on_lookup_and_swept() {
        let mut table = FlowTable::new(8, T);
        table.lookup(&key(1), Side::Lo, 0, |_, _| {});
        let mut ended = Vec::new();
        let (_, new) = table.lookup(&key(1), Side::Lo, 101, |f, r| ended.push((f.first_ns, r)));
        assert!(new);
        assert_eq!(ended, vec![(0, EndReason::Timeout)]);
        table.lookup(&key(2), Side::Lo, 150, |_, _| {});
        let mut swept = Vec::new();
        table.expire(202, |f, _| swept.push(f.key.lo_port));
        assert_eq!(swept, vec![1]);
        assert_eq!(table.len(), 1);
        table.drain(|f, r| {
            swept.push(f.key.lo_port + if r == EndReason::Shutdown { 100 } else { 0 })
        });
        assert_eq!(swept, vec![1, 102]);
        assert!(table.is_empty());
    }

    #[test]
    fn index_agrees_with_a_map_through_collisions_removals_and_growth() {
        // Few distinct tags and homes, so probes run long and wrap around.
        let mut index = FlowIndex::with_capacity(4);
        let mut model = std::collections::HashMap::new();
        let mut state = 0x1234_5678_9abc_def0u64;
        for step in 0..20_000u32 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let slot = (state % 512) as u32;
            let hash = ((state >> 20) % 24) << 32;
            match model.get(&slot) {
                Some(&stored) if step % 3 != 0 => {
                    index.remove(stored, slot);
                    model.remove(&slot);
                }
                Some(_) => {}
                None => {
                    index.insert(hash, slot);
                    model.insert(slot, hash);
                }
            }
            assert_eq!(index.len, model.len());
            for (&slot, &hash) in &model {
                assert_eq!(index.find(hash, |s| s == slot), Some(slot));
            }
            assert_eq!(index.find(hash, |s| s == 9_999), None);
        }
    }

    #[test]
    fn closed_flows_use_the_short_timeout() {
        let mut table = FlowTable::new(8, T);
        let (slot, _) = table.lookup(&key(1), Side::Lo, 0, |_, _| {});
        table.get_mut(slot).closed = true;
        let mut ended = 0;
        table.expire(11, |_, _| ended += 1);
        assert_eq!(ended, 1);
    }
}
