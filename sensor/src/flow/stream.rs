//! TCP stream framing: turns one direction of a TCP flow into whole PDUs.
//!
//! In-order data is framed in place (zero-copy). Only the tail of a PDU split across
//! segments, or out-of-order segments waiting for their gaps to fill (up to
//! [`HELD_RUNS`] separate runs within half a buffer: a few segments reordered, as a
//! network or two capture queues do), is copied into a buffer borrowed from a
//! preallocated [`StreamPool`] and returned as soon as it empties.
//! Retransmitted bytes are skipped by sequence number, so no PDU is seen twice; a gap that
//! does not fill, an exhausted pool or an over-long PDU are counted and framing resyncs.

use otsensor_wire::Framing;

const NIL: u32 = u32::MAX;
/// Separate runs of out-of-order bytes one direction may hold (each behind a gap).
pub const HELD_RUNS: usize = 3;
/// An out-of-order segment further ahead than this is treated as a gap at once.
const MAX_HOLD_DISTANCE: u32 = 1 << 20;

/// Fixed-size reassembly buffers shared by all flows of one worker.
#[derive(Debug)]
pub struct StreamPool {
    data: Vec<u8>,
    buffer_bytes: usize,
    free: Vec<u32>,
}

impl StreamPool {
    /// `buffers` buffers of `buffer_bytes` each; half of a buffer holds a partial PDU,
    /// the other half out-of-order segments. Memory is reserved once; the OS commits
    /// pages only as buffers are first used.
    pub fn new(buffers: usize, buffer_bytes: usize) -> StreamPool {
        let buffer_bytes = buffer_bytes.max(64) & !1;
        StreamPool {
            data: vec![0; buffers * buffer_bytes],
            buffer_bytes,
            free: (0..buffers as u32).rev().collect(),
        }
    }

    fn half(&self) -> usize {
        self.buffer_bytes / 2
    }

    fn alloc(&mut self) -> Option<u32> {
        self.free.pop()
    }

    fn release(&mut self, index: u32) {
        self.free.push(index);
    }

    fn buffer(&mut self, index: u32) -> &mut [u8] {
        let start = index as usize * self.buffer_bytes;
        &mut self.data[start..start + self.buffer_bytes]
    }

    /// Buffers currently lent to flows.
    pub fn in_use(&self) -> usize {
        self.data.len() / self.buffer_bytes - self.free.len()
    }
}

/// What stream framing counted (per worker).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamCounters {
    /// Segments whose bytes had all been seen already.
    pub retransmitted_segments: u64,
    /// Segments that arrived ahead of a gap and were held.
    pub out_of_order_segments: u64,
    /// Gaps given up on (bytes never seen); framing restarted after each.
    pub gaps: u64,
    /// Bytes skipped because they did not start a PDU.
    pub resync_bytes: u64,
    /// PDUs longer than the buffer cap, skipped.
    pub oversize_pdus: u64,
    /// Partial PDUs or held segments dropped because no buffer was free.
    pub pool_exhausted: u64,
}

impl StreamCounters {
    pub fn merge(&mut self, other: &StreamCounters) {
        self.retransmitted_segments += other.retransmitted_segments;
        self.out_of_order_segments += other.out_of_order_segments;
        self.gaps += other.gaps;
        self.resync_bytes += other.resync_bytes;
        self.oversize_pdus += other.oversize_pdus;
        self.pool_exhausted += other.pool_exhausted;
    }
}

/// The framing state of one direction of one TCP flow: small and inline in the flow.
#[derive(Clone, Copy, Debug)]
pub struct StreamDir {
    next_seq: u32,
    tracking: bool,
    buffer: u32,
    /// Bytes of a partial PDU at the start of the buffer.
    pending: u16,
    /// Out-of-order data in the buffer's second half: the byte with sequence number
    /// `held_seq + k` is at offset `k`; `held` are the runs present, as offsets
    /// `(start, end)`, sorted and apart (a gap between each). `held_seq` is at or below
    /// `next_seq` while anything is held.
    held_seq: u32,
    held: [(u16, u16); HELD_RUNS],
    held_runs: u8,
    /// Bytes still to skip of an over-long PDU.
    skip: u32,
}

impl Default for StreamDir {
    fn default() -> Self {
        StreamDir {
            next_seq: 0,
            tracking: false,
            buffer: NIL,
            pending: 0,
            held_seq: 0,
            held: [(0, 0); HELD_RUNS],
            held_runs: 0,
            skip: 0,
        }
    }
}

/// Everything one framing call needs besides the direction's state.
pub struct Framer<'p, F: FnMut(&[u8])> {
    pub pool: &'p mut StreamPool,
    pub counters: &'p mut StreamCounters,
    pub frame: fn(&[u8]) -> Framing,
    pub on_pdu: F,
}

impl StreamDir {
    /// A SYN fixes the initial sequence number: data starts one after it.
    pub fn on_syn(&mut self, seq: u32) {
        if !self.tracking {
            self.next_seq = seq.wrapping_add(1);
            self.tracking = true;
        }
    }

    /// Returns this direction's buffer to the pool (the flow ended).
    pub fn release(&self, pool: &mut StreamPool) {
        if self.buffer != NIL {
            pool.release(self.buffer);
        }
    }

    /// True while an out-of-order segment waits for its gap.
    pub fn holds_data(&self) -> bool {
        self.held_runs > 0
    }

    /// The stream will not continue (FIN, RST, flow end): give up the gap before any
    /// held segment and dissect it.
    pub fn flush<F: FnMut(&[u8])>(&mut self, framer: &mut Framer<'_, F>) {
        self.give_up_gap(framer);
    }

    /// Takes one segment's payload at sequence number `seq`.
    pub fn on_segment<F: FnMut(&[u8])>(
        &mut self,
        seq: u32,
        payload: &[u8],
        framer: &mut Framer<'_, F>,
    ) {
        if payload.is_empty() {
            return;
        }
        if !self.tracking {
            // Joined mid-stream: take the first data seen as the start.
            self.next_seq = seq;
            self.tracking = true;
        }
        let ahead = seq.wrapping_sub(self.next_seq);
        if ahead == 0 {
            self.in_order(payload, framer);
        } else if ahead >= 1 << 31 {
            // Starts before next_seq: a retransmission, perhaps with new bytes at its end.
            let seen = self.next_seq.wrapping_sub(seq) as usize;
            if seen >= payload.len() {
                framer.counters.retransmitted_segments += 1;
                return;
            }
            self.in_order(&payload[seen..], framer);
        } else if ahead <= MAX_HOLD_DISTANCE && self.hold(seq, payload, framer) {
            framer.counters.out_of_order_segments += 1;
            return;
        } else {
            self.give_up_gap(framer);
            let ahead = seq.wrapping_sub(self.next_seq);
            if ahead >= 1 << 31 {
                // The held data covered this segment's start: only its tail is new
                // (framing it whole would repeat the held PDUs).
                let seen = self.next_seq.wrapping_sub(seq) as usize;
                if seen < payload.len() {
                    self.in_order(&payload[seen..], framer);
                }
            } else {
                if ahead != 0 {
                    // Still a gap after the held data: the bytes between are lost.
                    framer.counters.gaps += 1;
                    self.restart_at(seq, framer.pool);
                }
                self.in_order(payload, framer);
            }
        }
        self.drain_held(framer);
    }

    /// Processes held data once the stream has caught up with it.
    fn drain_held<F: FnMut(&[u8])>(&mut self, framer: &mut Framer<'_, F>) {
        let half = framer.pool.half();
        while self.held_runs > 0 {
            let (start, end) = self.held[0];
            let run_seq = self.held_seq.wrapping_add(u32::from(start));
            let behind = self.next_seq.wrapping_sub(run_seq);
            if behind >= 1 << 31 {
                break; // the gap before it is still open
            }
            self.held.copy_within(1..self.held_runs as usize, 0);
            self.held_runs -= 1;
            let len = usize::from(end - start);
            if (behind as usize) < len {
                // Copy out of the buffer so framing may reuse it; held data is at most half
                // a buffer and this happens only after reordering.
                let mut held = [0u8; 4096];
                let from = half + usize::from(start) + behind as usize;
                let take = (len - behind as usize).min(held.len());
                let buffer = framer.pool.buffer(self.buffer);
                held[..take].copy_from_slice(&buffer[from..from + take]);
                self.in_order(&held[..take], framer);
            }
        }
        self.maybe_release(framer.pool);
    }

    /// Keeps an out-of-order segment for later; false if it cannot be kept (beyond
    /// half a buffer from what is held, or one gap too many).
    fn hold<F: FnMut(&[u8])>(
        &mut self,
        seq: u32,
        payload: &[u8],
        framer: &mut Framer<'_, F>,
    ) -> bool {
        let half = framer.pool.half().min(4096);
        if self.held_runs == 0 {
            self.held_seq = self.next_seq;
        }
        let offset = seq.wrapping_sub(self.held_seq) as usize;
        let end = offset + payload.len();
        if end > half {
            return false;
        }
        let (start, end) = (offset as u16, end as u16);
        // The runs after merging this one in: sorted, touching runs joined.
        let mut runs = [(0u16, 0u16); HELD_RUNS + 1];
        let mut count = 0;
        let mut new = Some((start, end));
        for &(s, e) in &self.held[..self.held_runs as usize] {
            match new {
                Some((ns, _)) if e < ns => {
                    runs[count] = (s, e);
                    count += 1;
                }
                Some((ns, ne)) if ne < s => {
                    runs[count] = (ns, ne);
                    runs[count + 1] = (s, e);
                    count += 2;
                    new = None;
                }
                Some((ns, ne)) => new = Some((ns.min(s), ne.max(e))),
                None => {
                    runs[count] = (s, e);
                    count += 1;
                }
            }
            if count > HELD_RUNS {
                return false;
            }
        }
        if let Some(run) = new {
            if count == HELD_RUNS {
                return false;
            }
            runs[count] = run;
            count += 1;
        }
        if self.buffer == NIL {
            match framer.pool.alloc() {
                Some(index) => self.buffer = index,
                None => {
                    framer.counters.pool_exhausted += 1;
                    return false;
                }
            }
        }
        let base = framer.pool.half() + offset;
        framer.pool.buffer(self.buffer)[base..base + payload.len()].copy_from_slice(payload);
        self.held[..count].copy_from_slice(&runs[..count]);
        self.held_runs = count as u8;
        true
    }

    /// The bytes before the held segments will not come: jump over each gap to the
    /// held data.
    fn give_up_gap<F: FnMut(&[u8])>(&mut self, framer: &mut Framer<'_, F>) {
        while self.held_runs > 0 {
            framer.counters.gaps += 1;
            self.pending = 0;
            self.skip = 0;
            self.next_seq = self.held_seq.wrapping_add(u32::from(self.held[0].0));
            self.drain_held(framer);
        }
    }

    /// Drops partial framing state and continues at `seq` (after a gap).
    fn restart_at(&mut self, seq: u32, pool: &mut StreamPool) {
        self.pending = 0;
        self.skip = 0;
        self.held_runs = 0;
        self.next_seq = seq;
        self.maybe_release(pool);
    }

    fn maybe_release(&mut self, pool: &mut StreamPool) {
        if self.buffer != NIL && self.pending == 0 && self.held_runs == 0 {
            pool.release(self.buffer);
            self.buffer = NIL;
        }
    }

    /// Frames bytes that continue the stream exactly at `next_seq`.
    fn in_order<F: FnMut(&[u8])>(&mut self, data: &[u8], framer: &mut Framer<'_, F>) {
        self.next_seq = self.next_seq.wrapping_add(data.len() as u32);
        let mut data = data;
        if self.skip > 0 {
            let skipped = (self.skip as usize).min(data.len());
            self.skip -= skipped as u32;
            data = &data[skipped..];
        }
        let half = framer.pool.half();
        // Complete a partial PDU from the buffer first.
        while self.pending > 0 && !data.is_empty() {
            let pending = self.pending as usize;
            let take = (half - pending).min(data.len());
            let index = self.buffer;
            framer.pool.buffer(index)[pending..pending + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            let filled = pending + take;
            let (consumed, need) = {
                let Framer {
                    pool,
                    counters,
                    frame,
                    on_pdu,
                } = framer;
                frame_all(&pool.buffer(index)[..filled], *frame, counters, on_pdu)
            };
            let left = filled - consumed;
            framer.pool.buffer(index).copy_within(consumed..filled, 0);
            self.pending = left as u16;
            if let Some(need) = need {
                if need > half {
                    // Longer than we buffer: skip the rest of this PDU.
                    framer.counters.oversize_pdus += 1;
                    self.skip = (need - left) as u32;
                    self.pending = 0;
                    let skipped = (self.skip as usize).min(data.len());
                    self.skip -= skipped as u32;
                    data = &data[skipped..];
                }
            }
        }
        self.maybe_release(framer.pool);
        if data.is_empty() {
            return;
        }
        let (consumed, need) = {
            let Framer {
                counters,
                frame,
                on_pdu,
                ..
            } = framer;
            frame_all(data, *frame, counters, on_pdu)
        };
        let rest = &data[consumed..];
        if rest.is_empty() {
            return;
        }
        let need = need.unwrap_or(rest.len() + 1);
        if need > half {
            framer.counters.oversize_pdus += 1;
            self.skip = (need - rest.len()) as u32;
            return;
        }
        if self.buffer == NIL {
            match framer.pool.alloc() {
                Some(index) => self.buffer = index,
                None => {
                    // The next segment starts mid-PDU; framing resyncs there.
                    framer.counters.pool_exhausted += 1;
                    return;
                }
            }
        }
        framer.pool.buffer(self.buffer)[..rest.len()].copy_from_slice(rest);
        self.pending = rest.len() as u16;
    }
}

/// Frames as many whole PDUs as `buf` holds. Returns the bytes consumed and, when the
/// remainder is an incomplete PDU, the total length that PDU needs.
pub fn frame_all<F: FnMut(&[u8])>(
    buf: &[u8],
    frame: fn(&[u8]) -> Framing,
    counters: &mut StreamCounters,
    on_pdu: &mut F,
) -> (usize, Option<usize>) {
    let mut offset = 0;
    while offset < buf.len() {
        let rest = &buf[offset..];
        match frame(rest) {
            Framing::Frame(len) if len > 0 && len <= rest.len() => {
                on_pdu(&rest[..len]);
                offset += len;
            }
            Framing::Need(need) if need > rest.len() => return (offset, Some(need)),
            // Resync, and any answer that would not make progress.
            Framing::Resync(skip) => {
                let skip = skip.clamp(1, rest.len());
                counters.resync_bytes += skip as u64;
                offset += skip;
            }
            _ => {
                counters.resync_bytes += 1;
                offset += 1;
            }
        }
    }
    (offset, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy framing: a PDU is a length byte L (>= 2) followed by L-1 bytes; 0 is garbage.
    fn toy_frame(buf: &[u8]) -> Framing {
        match buf.first() {
            None => Framing::Need(1),
            Some(0) => Framing::Resync(1),
            Some(&len) if (len as usize) <= buf.len() => Framing::Frame(len as usize),
            Some(&len) => Framing::Need(len as usize),
        }
    }

    fn run(segments: &[(u32, &[u8])], pool: &mut StreamPool) -> (Vec<Vec<u8>>, StreamCounters) {
        run_from(999, segments, pool)
    }

    /// Like `run`, after a SYN with initial sequence number `isn`.
    fn run_from(
        isn: u32,
        segments: &[(u32, &[u8])],
        pool: &mut StreamPool,
    ) -> (Vec<Vec<u8>>, StreamCounters) {
        let mut pdus = Vec::new();
        let mut counters = StreamCounters::default();
        let mut dir = StreamDir::default();
        dir.on_syn(isn);
        {
            let mut framer = Framer {
                pool,
                counters: &mut counters,
                frame: toy_frame,
                on_pdu: |p: &[u8]| pdus.push(p.to_vec()),
            };
            for (seq, payload) in segments {
                dir.on_segment(*seq, payload, &mut framer);
            }
        }
        (pdus, counters)
    }

    const A: &[u8] = &[3, 0, 0];
    const B: &[u8] = &[4, 0, 0, 0];

    #[test]
    fn several_pdus_in_one_segment() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, _) = run(&[(1000, &[3, 0, 0, 4, 0, 0, 0])], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn pdu_split_across_segments() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, _) = run(&[(1000, &[3, 0, 0, 4, 0]), (1005, &[0, 0])], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(pool.in_use(), 0, "buffer returned once the PDU completed");
    }

    #[test]
    fn retransmission_is_not_counted_twice() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, counters) = run(&[(1000, A), (1000, A), (1003, B)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(counters.retransmitted_segments, 1);
    }

    #[test]
    fn partial_retransmission_with_new_bytes() {
        let mut pool = StreamPool::new(4, 128);
        let joined = [3, 0, 0, 4, 0, 0, 0];
        let (pdus, _) = run(&[(1000, &joined[..4]), (1000, &joined)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
    }

    #[test]
    fn out_of_order_segment_waits_for_the_gap() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, counters) = run(&[(1003, B), (1000, A)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(counters.out_of_order_segments, 1);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_gap_that_never_fills_is_counted_and_framing_resumes() {
        let mut pool = StreamPool::new(4, 128);
        // A is lost; B is held; then a non-contiguous segment forces the gap.
        let (pdus, counters) = run(&[(1003, B), (1100, A)], &mut pool);
        assert_eq!(pdus, vec![B.to_vec(), A.to_vec()]);
        assert_eq!(counters.gaps, 2);
    }

    #[test]
    fn segments_reordered_around_two_gaps_are_framed_in_order() {
        // Every other segment arrives late (two capture queues, one handing over).
        let mut pool = StreamPool::new(4, 128);
        let (pdus, counters) = run(&[(1003, B), (1010, B), (1000, A), (1007, A)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec(), A.to_vec(), B.to_vec()]);
        assert_eq!(counters.out_of_order_segments, 2);
        assert_eq!(counters.gaps, 0);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn more_gaps_than_runs_are_given_up_in_order() {
        let mut pool = StreamPool::new(4, 128);
        // Four holes before 1003, 1010, 1017, 1024: the fourth run cannot be held.
        let (pdus, counters) = run(&[(1003, B), (1010, B), (1017, B), (1024, B)], &mut pool);
        assert_eq!(pdus.len(), 4);
        assert_eq!(counters.out_of_order_segments, 3);
        assert!(counters.gaps >= 3);
        assert_eq!(pool.in_use(), 0);
    }

    // ---- duplicates (a SPAN port delivering a frame twice) on every framing path ----

    #[test]
    fn duplicate_of_a_partial_segment_is_framed_once() {
        let mut pool = StreamPool::new(4, 128);
        let first: &[u8] = &[3, 0, 0, 4, 0];
        let (pdus, counters) = run(&[(1000, first), (1000, first), (1005, &[0, 0])], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(counters.retransmitted_segments, 1);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn duplicate_of_a_held_segment_is_framed_once() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, counters) = run(&[(1003, B), (1003, B), (1000, A), (1000, A)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(counters.retransmitted_segments, 1);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn duplicates_after_a_gap_are_framed_once() {
        let mut pool = StreamPool::new(4, 128);
        // A is lost before B (held); the stream jumps to 1100; then copies of both.
        let (pdus, counters) = run(
            &[
                (1003, B),
                (1100, A),
                (1100, A),
                (1003, B),
                (1103, B),
                (1103, B),
            ],
            &mut pool,
        );
        assert_eq!(pdus, vec![B.to_vec(), A.to_vec(), B.to_vec()]);
        assert_eq!(counters.gaps, 2);
        assert_eq!(counters.retransmitted_segments, 3);
    }

    #[test]
    fn retransmission_overlapping_a_held_run_is_framed_once() {
        let mut pool = StreamPool::new(4, 128);
        // The third PDU (1007) is held; one retransmission then carries all three.
        let all: &[u8] = &[3, 0, 0, 4, 0, 0, 0, 3, 0, 0];
        let (pdus, counters) = run(&[(1007, A), (1000, all), (1000, all)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec(), A.to_vec()]);
        assert_eq!(counters.gaps, 0);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_segment_too_long_to_hold_over_held_data_keeps_its_new_bytes() {
        let mut pool = StreamPool::new(4, 128); // half = 64: a 101-byte segment is not held
        let mut long = vec![0u8, 0];
        for _ in 0..33 {
            long.extend_from_slice(A);
        }
        // B (1003..1007) is held behind the lost A; the long segment repeats B's last two
        // bytes and carries 33 new PDUs.
        let (pdus, counters) = run(&[(1003, B), (1005, &long), (1005, &long)], &mut pool);
        let mut want = vec![B.to_vec()];
        want.extend(std::iter::repeat_n(A.to_vec(), 33));
        assert_eq!(pdus, want);
        assert_eq!(counters.gaps, 1, "only the lost A");
        assert_eq!(counters.retransmitted_segments, 1);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn garbage_is_skipped_by_resync() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, counters) = run(&[(1000, &[0, 0, 3, 0, 0])], &mut pool);
        assert_eq!(pdus, vec![A.to_vec()]);
        assert_eq!(counters.resync_bytes, 2);
    }

    #[test]
    fn oversize_pdu_is_skipped_and_counted() {
        let mut pool = StreamPool::new(4, 64); // half = 32 bytes
        let mut big = vec![200u8];
        big.extend(std::iter::repeat_n(7u8, 199));
        let segments: Vec<(u32, &[u8])> = vec![(1000, &big[..100]), (1100, &big[100..]), (1200, A)];
        let (pdus, counters) = run(&segments, &mut pool);
        assert_eq!(pdus, vec![A.to_vec()]);
        assert_eq!(counters.oversize_pdus, 1);
    }

    #[test]
    fn exhausted_pool_is_counted_not_fatal() {
        let mut pool = StreamPool::new(0, 128);
        let (pdus, counters) = run(&[(1000, &[3, 0]), (1002, &[0]), (1003, A)], &mut pool);
        assert_eq!(counters.pool_exhausted, 1);
        assert_eq!(pdus, vec![A.to_vec()], "framing resyncs on the next PDU");
    }

    // ---- sequence numbers wrapping past 2^32 (RFC 9293 3.4: modulo-2^32 arithmetic) ----

    /// Data starts three bytes before the wrap: A fills MAX-2..=MAX, B starts at 0.
    const ISN_NEAR_WRAP: u32 = u32::MAX - 3;
    const FIRST: u32 = u32::MAX - 2;

    #[test]
    fn pdus_on_both_sides_of_the_wrap() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, counters) = run_from(ISN_NEAR_WRAP, &[(FIRST, A), (0, B)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(counters.gaps, 0);
        assert_eq!(counters.retransmitted_segments, 0);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn one_segment_across_the_wrap() {
        let mut pool = StreamPool::new(4, 128);
        let joined = [3, 0, 0, 4, 0, 0, 0];
        let (pdus, counters) = run_from(ISN_NEAR_WRAP, &[(FIRST, &joined), (4, A)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec(), A.to_vec()]);
        assert_eq!(counters.gaps, 0);
    }

    #[test]
    fn a_pdu_split_at_the_wrap() {
        let mut pool = StreamPool::new(4, 128);
        // B's first byte is the last before the wrap, its rest after it.
        let (pdus, counters) = run_from(
            u32::MAX - 4,
            &[(u32::MAX - 3, &[3, 0, 0, 4]), (0, &[0, 0, 0])],
            &mut pool,
        );
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(counters.gaps, 0);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn retransmission_across_the_wrap_is_not_seen_twice() {
        let mut pool = StreamPool::new(4, 128);
        let joined = [3, 0, 0, 4, 0, 0, 0];
        // The whole segment again, then a retransmission that starts before the wrap and
        // carries new bytes after it, then an old segment from before the wrap.
        let (pdus, counters) = run_from(
            ISN_NEAR_WRAP,
            &[
                (FIRST, &joined),
                (FIRST, &joined),
                (FIRST, &[3, 0, 0, 4, 0, 0, 0, 3, 0, 0]),
                (FIRST, A),
                (7, B),
            ],
            &mut pool,
        );
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec(), A.to_vec(), B.to_vec()]);
        assert_eq!(counters.retransmitted_segments, 2);
        assert_eq!(counters.gaps, 0);
    }

    #[test]
    fn out_of_order_across_the_wrap_waits_for_the_gap() {
        let mut pool = StreamPool::new(4, 128);
        let (pdus, counters) = run_from(ISN_NEAR_WRAP, &[(0, B), (FIRST, A)], &mut pool);
        assert_eq!(pdus, vec![A.to_vec(), B.to_vec()]);
        assert_eq!(counters.out_of_order_segments, 1);
        assert_eq!(counters.gaps, 0);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_gap_across_the_wrap_is_counted_once() {
        let mut pool = StreamPool::new(4, 128);
        // A (before the wrap) is lost; B after it is held; the stream moves on far ahead.
        let (pdus, counters) = run_from(ISN_NEAR_WRAP, &[(0, B), (100, A)], &mut pool);
        assert_eq!(pdus, vec![B.to_vec(), A.to_vec()]);
        assert_eq!(
            counters.gaps, 2,
            "the lost A, then the bytes between B and 100"
        );
    }
}
