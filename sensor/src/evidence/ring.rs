//! The per-worker ring of recent packets: one preallocated byte arena and a fixed
//! array of record slots, both written in arrival order and overwritten oldest first.
//! Pushing a packet copies its bytes and fills one slot: no allocation, no lock, no
//! system call. Each slot is also linked to the previous packet of its flow and of
//! each of its hosts (through fixed tables of chain heads), so reading an alert's
//! packets walks only those packets: a flood of alerts costs the worker in proportion
//! to the packets each alert names, never a scan of the whole ring per alert.

use std::hash::BuildHasher;
use std::net::IpAddr;

use otsensor_wire::layers::LinkType;

/// Where one kept packet lies in the arena, and what selects it.
#[derive(Clone, Copy, Debug)]
struct Slot {
    ts_ns: u64,
    /// The flow's id, 0 for packets outside a flow (ARP, non-IP, fragments).
    flow_id: u64,
    /// Hashes of the source and destination address ([`host_hash`]), 0 when absent.
    a: u64,
    b: u64,
    offset: u32,
    len: u32,
    wire_len: u32,
    link: LinkType,
    /// This packet's sequence number in the ring (its slot is `seq % slots`).
    seq: u64,
    /// Sequence numbers of the previous packet in the same chain bucket: of the flow,
    /// of host `a`'s bucket and of host `b`'s bucket ([`NONE`]: none).
    prev_flow: u64,
    prev_a: u64,
    prev_b: u64,
}

/// Per packet kept: the memory cost documented in CONFIG.md (`evidence`).
const _: () = assert!(std::mem::size_of::<Slot>() == 80);

/// No earlier packet in a chain (and a slot never written).
const NONE: u64 = u64::MAX;

const EMPTY: Slot = Slot {
    ts_ns: 0,
    flow_id: 0,
    a: 0,
    b: 0,
    offset: 0,
    len: 0,
    wire_len: 0,
    link: LinkType::Ethernet,
    seq: NONE,
    prev_flow: NONE,
    prev_a: NONE,
    prev_b: NONE,
};

/// Which packets an alert names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The packets of one flow (both directions); flow ids are never 0 (0 tags
    /// packets outside a flow, which no flow selector names).
    Flow(u64),
    /// Every packet between two hosts, either way ([`host_hash`] of each).
    Pair(u64, u64),
    /// Every packet from or to one host.
    Host(u64),
}

impl Selector {
    fn matches(&self, slot: &Slot) -> bool {
        match *self {
            Selector::Flow(id) => id != 0 && slot.flow_id == id,
            Selector::Pair(x, y) => (slot.a == x && slot.b == y) || (slot.a == y && slot.b == x),
            Selector::Host(h) => slot.a == h || slot.b == h,
        }
    }
}

/// A stable hash of an address for [`Selector`]s; never 0 (0 means no address).
pub fn host_hash(ip: IpAddr) -> u64 {
    foldhash::fast::FixedState::with_seed(0x0e71_de9c).hash_one(ip) | 1
}

/// Packets copied out of a ring (or several), in capture order.
#[derive(Clone, Debug, Default)]
pub struct Packets {
    pub bytes: Vec<u8>,
    pub entries: Vec<PacketEntry>,
}

/// One packet of [`Packets`].
#[derive(Clone, Copy, Debug)]
pub struct PacketEntry {
    pub ts_ns: u64,
    pub link: LinkType,
    pub wire_len: u32,
    pub start: usize,
    pub len: usize,
}

impl Packets {
    /// The bytes of `entry`.
    pub fn data(&self, entry: &PacketEntry) -> &[u8] {
        &self.bytes[entry.start..entry.start + entry.len]
    }

    /// Appends another set (from another worker).
    pub fn extend(&mut self, other: &Packets) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.entries
            .extend(other.entries.iter().map(|e| PacketEntry {
                start: e.start + base,
                ..*e
            }));
    }

    /// Orders by capture time (stable: arrival order within a worker is kept) and
    /// keeps at most `max_packets` and `max_bytes`, dropping the oldest first.
    pub fn finish(&mut self, max_packets: usize, max_bytes: usize) {
        self.entries.sort_by_key(|e| e.ts_ns);
        let mut bytes = 0usize;
        let mut keep = 0usize;
        for entry in self.entries.iter().rev() {
            if keep >= max_packets || bytes + entry.len > max_bytes {
                break;
            }
            bytes += entry.len;
            keep += 1;
        }
        let drop = self.entries.len() - keep;
        self.entries.drain(..drop);
    }
}

/// Counters of one ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Packets pushed.
    pub packets: u64,
    /// Packets overwritten before anyone asked for them, and their captured bytes.
    pub overwritten: u64,
    pub overwritten_bytes: u64,
    /// Packets cut to the ring's per-packet limit.
    pub truncated: u64,
}

/// The ring itself.
pub struct Ring {
    arena: Box<[u8]>,
    slots: Box<[Slot]>,
    /// Index of the oldest live slot, and how many are live.
    oldest: usize,
    count: usize,
    /// Where the next packet's bytes go.
    write_pos: usize,
    /// Longest packet kept whole.
    max_packet: usize,
    /// Sequence number of the next packet pushed.
    next_seq: u64,
    /// Newest packet of each chain bucket, by flow id and by host hash ([`NONE`]:
    /// none); `mask` selects the bucket.
    flow_heads: Box<[u64]>,
    host_heads: Box<[u64]>,
    mask: u64,
    pub counters: RingCounters,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("bytes", &self.arena.len())
            .field("slots", &self.slots.len())
            .field("count", &self.count)
            .finish()
    }
}

/// The largest packet kept whole (longer ones are cut; a jumbo frame fits).
pub const MAX_PACKET: usize = 16 * 1024;

impl Ring {
    /// A ring of `bytes` of packet data and `packets` slots, allocated now (pages are
    /// touched as the ring fills).
    pub fn new(bytes: usize, packets: usize) -> Ring {
        let bytes = bytes.clamp(64, u32::MAX as usize);
        let packets = packets.max(1);
        // One bucket per slot (at least 64): chains stay about one key long.
        let buckets = packets.next_power_of_two().max(64);
        Ring {
            arena: vec![0u8; bytes].into_boxed_slice(),
            slots: vec![EMPTY; packets].into_boxed_slice(),
            oldest: 0,
            count: 0,
            write_pos: 0,
            max_packet: MAX_PACKET.min(bytes / 4).max(1),
            next_seq: 0,
            flow_heads: vec![NONE; buckets].into_boxed_slice(),
            host_heads: vec![NONE; buckets].into_boxed_slice(),
            mask: buckets as u64 - 1,
            counters: RingCounters::default(),
        }
    }

    /// The chain bucket of a flow id or host hash (Fibonacci hashing: flow ids are
    /// sequential).
    #[inline]
    fn bucket(&self, key: u64) -> usize {
        ((key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) & self.mask) as usize
    }

    /// The slot of packet `seq` while it is still held.
    #[inline]
    fn held(&self, seq: u64) -> Option<&Slot> {
        let first = self.next_seq - self.count as u64;
        if seq == NONE || seq < first || seq >= self.next_seq {
            return None;
        }
        let slot = &self.slots[(seq % self.slots.len() as u64) as usize];
        (slot.seq == seq).then_some(slot)
    }

    /// Calls `visit` on the held packets of the chain `selector` names, newest first,
    /// until it returns false. Packets of other keys that share a bucket are visited
    /// too: `visit` checks [`Selector::matches`].
    fn walk(&self, selector: &Selector, mut visit: impl FnMut(&Slot) -> bool) {
        let (heads, key) = match *selector {
            Selector::Flow(id) => (&self.flow_heads, id),
            Selector::Pair(x, _) | Selector::Host(x) => (&self.host_heads, x),
        };
        let bucket = self.bucket(key);
        let mut seq = heads[bucket];
        while let Some(slot) = self.held(seq) {
            if !visit(slot) {
                return;
            }
            let next = match selector {
                Selector::Flow(_) => slot.prev_flow,
                _ if slot.a != 0 && self.bucket(slot.a) == bucket => slot.prev_a,
                _ => slot.prev_b,
            };
            // Links always point back in time; anything else ends the walk.
            if next >= seq {
                return;
            }
            seq = next;
        }
    }

    /// Packets held now.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn evict_oldest(&mut self) {
        self.counters.overwritten_bytes += u64::from(self.slots[self.oldest].len);
        self.oldest = (self.oldest + 1) % self.slots.len();
        self.count -= 1;
        self.counters.overwritten += 1;
    }

    /// Keeps a copy of one packet. Per packet: a copy, a few comparisons and up to
    /// three chain links.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        ts_ns: u64,
        link: LinkType,
        data: &[u8],
        wire_len: u32,
        flow_id: u64,
        a: u64,
        b: u64,
    ) {
        let len = data.len().min(self.max_packet);
        self.counters.packets += 1;
        if len < data.len() {
            self.counters.truncated += 1;
        }
        if self.count == self.slots.len() {
            self.evict_oldest();
        }
        // Find room for `len` bytes at the write position, wrapping to the start of
        // the arena when the end is too close; live packets in the way are evicted
        // oldest first (the oldest always lies just ahead of the write position).
        let cap = self.arena.len();
        loop {
            if self.count == 0 {
                if self.write_pos + len > cap {
                    self.write_pos = 0;
                }
                break;
            }
            let oldest = self.slots[self.oldest].offset as usize;
            if oldest >= self.write_pos {
                if self.write_pos + len <= oldest {
                    break;
                }
                self.evict_oldest();
            } else if self.write_pos + len <= cap {
                break;
            } else {
                self.write_pos = 0;
            }
        }
        let offset = self.write_pos;
        self.arena[offset..offset + len].copy_from_slice(&data[..len]);
        self.write_pos = offset + len;
        let index = (self.oldest + self.count) % self.slots.len();
        let seq = self.next_seq;
        self.next_seq += 1;
        let bucket_a = (a != 0).then(|| self.bucket(a));
        let prev_a = match bucket_a {
            Some(bucket) => std::mem::replace(&mut self.host_heads[bucket], seq),
            None => NONE,
        };
        let prev_b = match (b != 0).then(|| self.bucket(b)) {
            None => NONE,
            // Both hosts in one bucket: one link serves both.
            Some(bucket) if Some(bucket) == bucket_a => prev_a,
            Some(bucket) => std::mem::replace(&mut self.host_heads[bucket], seq),
        };
        self.slots[index] = Slot {
            ts_ns,
            flow_id: 0,
            a,
            b,
            offset: offset as u32,
            len: len as u32,
            wire_len,
            link,
            seq,
            prev_flow: NONE,
            prev_a,
            prev_b,
        };
        self.count += 1;
        self.tag_last(flow_id);
    }

    /// Names the flow of the packet pushed last (known only after the flow lookup).
    #[inline]
    pub fn tag_last(&mut self, flow_id: u64) {
        if self.count == 0 {
            return;
        }
        let index = (self.oldest + self.count - 1) % self.slots.len();
        let slot = self.slots[index];
        if slot.flow_id == flow_id {
            return;
        }
        // The last packet heads its flow's chain: untag it from the old one first.
        if slot.flow_id != 0 {
            let old = self.bucket(slot.flow_id);
            self.flow_heads[old] = slot.prev_flow;
        }
        let prev_flow = if flow_id != 0 {
            let bucket = self.bucket(flow_id);
            std::mem::replace(&mut self.flow_heads[bucket], slot.seq)
        } else {
            NONE
        };
        self.slots[index].flow_id = flow_id;
        self.slots[index].prev_flow = prev_flow;
    }

    /// True when some packet held matches `selector`.
    pub fn holds(&self, selector: &Selector) -> bool {
        let mut found = false;
        self.walk(selector, |slot| {
            found = selector.matches(slot);
            !found
        });
        found
    }

    /// Copies the packets `selector` names with a time in `from_ns..=to_ns` into `out`,
    /// oldest first.
    pub fn collect(&self, selector: &Selector, from_ns: u64, to_ns: u64, out: &mut Packets) {
        let first = out.entries.len();
        self.walk(selector, |slot| {
            if slot.ts_ns < from_ns || slot.ts_ns > to_ns || !selector.matches(slot) {
                return true;
            }
            let start = out.bytes.len();
            let data = &self.arena[slot.offset as usize..(slot.offset + slot.len) as usize];
            out.bytes.extend_from_slice(data);
            out.entries.push(PacketEntry {
                ts_ns: slot.ts_ns,
                link: slot.link,
                wire_len: slot.wire_len,
                start,
                len: data.len(),
            });
            true
        });
        // Walked newest first.
        out.entries[first..].reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(ring: &Ring) -> Vec<(u64, Vec<u8>)> {
        let mut out = Packets::default();
        ring.collect(&Selector::Host(1), 0, u64::MAX, &mut out);
        out.entries
            .iter()
            .map(|e| (e.ts_ns, out.data(e).to_vec()))
            .collect()
    }

    #[test]
    fn keeps_the_newest_packets_within_both_budgets() {
        let mut ring = Ring::new(1000, 8);
        for i in 0..100u64 {
            let data = vec![i as u8; 10 + (i as usize * 7) % 90];
            ring.push(i, LinkType::Ethernet, &data, 60, 5, 1, 2);
            let held = all(&ring);
            // Every held packet is intact and they are the newest, in order.
            let bytes: usize = held.iter().map(|(_, d)| d.len()).sum();
            assert!(
                bytes <= 1000 && held.len() <= 8,
                "{i}: {bytes} {}",
                held.len()
            );
            assert_eq!(held.last().map(|h| h.0), Some(i));
            for (n, (ts, data)) in held.iter().enumerate() {
                assert!(data.iter().all(|b| *b == *ts as u8), "{i}: corrupted {ts}");
                assert_eq!(
                    *ts,
                    i + 1 + n as u64 - held.len() as u64,
                    "{i}: not contiguous"
                );
            }
        }
        assert_eq!(ring.counters.packets, 100);
        assert_eq!(ring.counters.overwritten, 100 - ring.len() as u64);
        // The bytes overwritten are those pushed minus those still held.
        let pushed: u64 = (0..100u64).map(|i| 10 + (i * 7) % 90).sum();
        let held: u64 = all(&ring).iter().map(|(_, d)| d.len() as u64).sum();
        assert_eq!(ring.counters.overwritten_bytes, pushed - held);
    }

    #[test]
    fn selects_by_flow_pair_host_and_time() {
        let mut ring = Ring::new(4096, 64);
        ring.push(10, LinkType::Ethernet, b"a", 1, 7, 11, 22);
        ring.push(20, LinkType::Ethernet, b"b", 1, 8, 22, 11);
        ring.push(30, LinkType::Ethernet, b"c", 1, 9, 11, 33);
        let pick = |s: Selector, from, to| {
            let mut out = Packets::default();
            ring.collect(&s, from, to, &mut out);
            out.entries
                .iter()
                .map(|e| out.data(e)[0])
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(Selector::Flow(8), 0, 100), b"b");
        assert_eq!(pick(Selector::Pair(22, 11), 0, 100), b"ab");
        assert_eq!(pick(Selector::Host(11), 0, 100), b"abc");
        assert_eq!(pick(Selector::Host(11), 15, 25), b"b");
    }

    /// What `collect` must return: every held slot, oldest first, filtered (the
    /// reading before the chains, kept as the reference).
    fn collect_by_scan(
        ring: &Ring,
        selector: &Selector,
        from: u64,
        to: u64,
    ) -> Vec<(u64, Vec<u8>)> {
        (0..ring.count)
            .map(|i| &ring.slots[(ring.oldest + i) % ring.slots.len()])
            .filter(|slot| slot.ts_ns >= from && slot.ts_ns <= to && selector.matches(slot))
            .map(|slot| {
                let data = &ring.arena[slot.offset as usize..(slot.offset + slot.len) as usize];
                (slot.ts_ns, data.to_vec())
            })
            .collect()
    }

    #[test]
    fn chains_select_exactly_what_a_scan_of_every_slot_selects() {
        // xorshift: a fixed pseudo-random sequence, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        // Few slots and buckets, small arena: chains share buckets, packets are
        // evicted by count and by bytes, and the ring wraps many times.
        let mut ring = Ring::new(2_000, 48);
        for i in 0..5_000u64 {
            let (flow, a, b) = (next(12), next(9), next(9));
            let data = vec![(i % 251) as u8; 1 + next(120) as usize];
            // Time mostly rises, sometimes steps back (reordered capture).
            let ts = i * 10 - next(3) * 15;
            ring.push(ts, LinkType::Ethernet, &data, 60, 0, a, b);
            match next(4) {
                0 => {}
                1 => {
                    ring.tag_last(flow);
                    ring.tag_last(flow + 1); // re-tagged: only the last tag counts
                }
                _ => ring.tag_last(flow),
            }
            if i % 7 != 0 {
                continue;
            }
            for selector in (0..13)
                .map(Selector::Flow) // 0: untagged packets, selected by no flow
                .chain((1..9).map(Selector::Host))
                .chain((1..9).map(|x| Selector::Pair(x, 9 - x)))
            {
                let from = ts.saturating_sub(next(300));
                let to = from + next(400);
                let mut out = Packets::default();
                ring.collect(&selector, from, to, &mut out);
                let got: Vec<(u64, Vec<u8>)> = out
                    .entries
                    .iter()
                    .map(|e| (e.ts_ns, out.data(e).to_vec()))
                    .collect();
                let want = collect_by_scan(&ring, &selector, from, to);
                assert_eq!(got, want, "packet {i}, {selector:?} in {from}..={to}");
                assert_eq!(
                    ring.holds(&selector),
                    !collect_by_scan(&ring, &selector, 0, u64::MAX).is_empty(),
                    "packet {i}, {selector:?}"
                );
            }
        }
    }

    #[test]
    fn oversized_packets_are_cut_and_counted() {
        let mut ring = Ring::new(256, 4);
        ring.push(1, LinkType::Ethernet, &[9u8; 1000], 1000, 1, 1, 1);
        assert_eq!(ring.counters.truncated, 1);
        assert_eq!(all(&ring)[0].1.len(), 64);
    }

    #[test]
    fn caps_drop_the_oldest_first() {
        let mut packets = Packets::default();
        for ts in [5u64, 1, 3] {
            packets.bytes.extend_from_slice(&[ts as u8; 10]);
            packets.entries.push(PacketEntry {
                ts_ns: ts,
                link: LinkType::Ethernet,
                wire_len: 10,
                start: packets.bytes.len() - 10,
                len: 10,
            });
        }
        packets.finish(2, 1000);
        assert_eq!(
            packets.entries.iter().map(|e| e.ts_ns).collect::<Vec<_>>(),
            [3, 5]
        );
        packets.finish(10, 15);
        assert_eq!(
            packets.entries.iter().map(|e| e.ts_ns).collect::<Vec<_>>(),
            [5]
        );
    }
}
