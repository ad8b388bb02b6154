//! Reassembly of messages that a protocol splits into segments above the byte stream
//! or datagram: an S7comm PDU sent in several COTP DT TPDUs (ISO 8073 13.7, the EOT
//! bit), a BACnet APDU sent as a segmented Confirmed-Request or Complex-ACK
//! (ASHRAE 135 clause 5.2). A worker owns one [`SegmentPool`], allocated once; a flow
//! holds at most one buffer per direction (handles in
//! [`AppState::segment_slots`](super::AppState)) only while a message is in
//! progress, so the pool bounds the messages half-received at once and nothing is
//! allocated per packet. Every buffer has a hard cap of [`SEGMENT_BUFFER_LEN`] bytes.
//!
//! A half-finished message (a first segment whose end never comes) holds its buffer
//! at most [`HALF_OPEN_TIMEOUT_NS`] of packet time once the pool is exhausted: the
//! oldest such buffer is then taken for the new message (counted by
//! [`SegmentPool::take_expired`]), so half-open messages cannot starve the pool for
//! the flows' lifetime. Handles carry a generation, so the flow that lost its buffer
//! sees a stale handle (no buffer) rather than another flow's bytes.

use super::AppState;

/// Bytes one reassembled message may hold. S7 PDUs are at most the negotiated PDU size
/// (960 bytes on S7-300/400/1500); BACnet identity ACKs are a few kilobytes.
pub const SEGMENT_BUFFER_LEN: usize = 8192;

/// Buffers per worker at most (the worker sizes its pool from its flow budget); the
/// low byte of a handle is the slot.
pub const SEGMENT_SLOTS: usize = 256;

/// How long (packet time) a message may stay half-received before its buffer may be
/// taken for another message when the pool is exhausted. Segments of one S7 PDU or
/// BACnet message follow each other within milliseconds to a few seconds.
pub const HALF_OPEN_TIMEOUT_NS: u64 = 10_000_000_000;

/// Why a segment was not added to its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The message would exceed [`SEGMENT_BUFFER_LEN`].
    #[error("reassembled message longer than {SEGMENT_BUFFER_LEN} bytes")]
    Overflow,
}

/// One message being reassembled: its bytes so far, and what the protocol needs to
/// check that the next segment belongs to it.
#[derive(Clone)]
pub struct SegmentBuffer {
    buf: [u8; SEGMENT_BUFFER_LEN],
    len: usize,
    /// Identifies the message (e.g. BACnet invoke id, PDU type and service).
    pub tag: u32,
    /// The sequence number the next segment must carry.
    pub next_sequence: u8,
    /// The cap was hit: the message lost its tail (the bytes kept are its prefix).
    pub overflowed: bool,
    /// Packet time the buffer was taken.
    started_ns: u64,
    /// Generation of the handle that owns it (1..=255; bumped when it is released or
    /// expires).
    generation: u8,
}

impl SegmentBuffer {
    fn new() -> SegmentBuffer {
        SegmentBuffer {
            buf: [0; SEGMENT_BUFFER_LEN],
            len: 0,
            tag: 0,
            next_sequence: 0,
            overflowed: false,
            started_ns: 0,
            generation: 1,
        }
    }

    /// Empties the buffer for a new message.
    pub fn start(&mut self, tag: u32, next_sequence: u8) {
        self.len = 0;
        self.tag = tag;
        self.next_sequence = next_sequence;
        self.overflowed = false;
    }

    /// Appends a segment's bytes; on overflow the bytes that fit are kept, the rest
    /// dropped, and the buffer is marked [`SegmentBuffer::overflowed`].
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let room = SEGMENT_BUFFER_LEN - self.len;
        let take = bytes.len().min(room);
        if let (Some(target), Some(source)) = (
            self.buf.get_mut(self.len..self.len + take),
            bytes.get(..take),
        ) {
            target.copy_from_slice(source);
            self.len += take;
        }
        if take < bytes.len() {
            self.overflowed = true;
            return Err(Error::Overflow);
        }
        Ok(())
    }

    /// The message so far.
    pub fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Copies the message into `out` (so that inspecting it can borrow the context);
    /// the number of bytes copied.
    pub fn copy_to(&self, out: &mut [u8; SEGMENT_BUFFER_LEN]) -> usize {
        let bytes = self.bytes();
        if let Some(target) = out.get_mut(..bytes.len()) {
            target.copy_from_slice(bytes);
        }
        bytes.len()
    }
}

/// A fixed pool of [`SegmentBuffer`]s owned by one worker; a handle is
/// `generation << 8 | index` (never 0: generations start at 1), 0 = none.
pub struct SegmentPool {
    slots: Box<[SegmentBuffer]>,
    /// Free slot indexes; its capacity is the slot count, so pushes never allocate.
    free: Vec<u16>,
    /// Half-open messages whose buffer was taken after [`HALF_OPEN_TIMEOUT_NS`], not
    /// yet reported by [`SegmentPool::take_expired`].
    expired: u64,
}

impl std::fmt::Debug for SegmentPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentPool")
            .field("slots", &self.slots.len())
            .field("free", &self.free.len())
            .finish()
    }
}

impl SegmentPool {
    /// A pool of `slots` buffers (at most [`SEGMENT_SLOTS`]).
    pub fn new(slots: usize) -> SegmentPool {
        let slots = slots.min(SEGMENT_SLOTS);
        // Popped from the end: hand out low indexes first.
        let free = (0..slots as u16).rev().collect();
        SegmentPool {
            slots: vec![SegmentBuffer::new(); slots].into_boxed_slice(),
            free,
            expired: 0,
        }
    }

    fn handle(&self, index: usize) -> u16 {
        let generation = self.slots.get(index).map_or(1, |slot| slot.generation);
        (u16::from(generation) << 8) | (index as u16 & 0xff)
    }

    /// The slot behind a live handle.
    fn index(&self, handle: u16) -> Option<usize> {
        let index = usize::from(handle & 0xff);
        let generation = (handle >> 8) as u8;
        let slot = self.slots.get(index)?;
        (generation != 0 && slot.generation == generation).then_some(index)
    }

    /// True when `handle` still owns its buffer (it is not 0, and did not expire).
    pub fn holds(&self, handle: u16) -> bool {
        self.index(handle).is_some()
    }

    /// Half-open messages expired since the last call (for the caller's counters).
    pub fn take_expired(&mut self) -> u64 {
        std::mem::take(&mut self.expired)
    }

    /// Buffers currently held by flows.
    pub fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Takes a free buffer at packet time `now_ns`; when none is free, the oldest
    /// buffer held longer than [`HALF_OPEN_TIMEOUT_NS`] (its holder's handle goes
    /// stale). Its handle, `None` when every buffer is in use and younger.
    pub fn acquire(&mut self, now_ns: u64) -> Option<u16> {
        let index = match self.free.pop() {
            Some(index) => usize::from(index),
            None => {
                // Only when exhausted: one pass over at most SEGMENT_SLOTS buffers.
                let (index, oldest) = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, slot)| slot.started_ns)?;
                if oldest.started_ns.saturating_add(HALF_OPEN_TIMEOUT_NS) > now_ns {
                    return None;
                }
                let slot = self.slots.get_mut(index)?;
                slot.generation = slot.generation.checked_add(1).unwrap_or(1);
                self.expired += 1;
                index
            }
        };
        if let Some(slot) = self.slots.get_mut(index) {
            slot.started_ns = now_ns;
        }
        Some(self.handle(index))
    }

    /// The buffer behind `handle`; `None` for handle 0 or a stale handle.
    pub fn get_mut(&mut self, handle: u16) -> Option<&mut SegmentBuffer> {
        let index = self.index(handle)?;
        self.slots.get_mut(index)
    }

    /// Returns the buffer behind `handle` (if it still owns one) to the pool and
    /// clears the handle.
    pub fn release(&mut self, handle: &mut u16) {
        if let Some(index) = self.index(*handle) {
            // A new generation: no copy of the old handle reaches the buffer again.
            if let Some(slot) = self.slots.get_mut(index) {
                slot.generation = slot.generation.checked_add(1).unwrap_or(1);
            }
            if self.free.len() < self.slots.len() {
                self.free.push(index as u16);
            }
        }
        *handle = 0;
    }

    /// Returns every buffer a flow holds (when the flow ends).
    pub fn release_flow(&mut self, state: &mut AppState) {
        for handle in &mut state.segment_slots {
            self.release(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_bounded_and_returned() {
        let mut pool = SegmentPool::new(2);
        let mut first = pool.acquire(0).unwrap_or(0);
        let second = pool.acquire(0).unwrap_or(0);
        assert_eq!((first, second), (0x100, 0x101));
        assert_eq!(pool.acquire(0), None);
        assert_eq!(pool.in_use(), 2);

        let buffer = pool.get_mut(first).map(|b| {
            b.start(9, 1);
            (b.append(&[1, 2, 3]), b.bytes().to_vec())
        });
        assert_eq!(buffer, Some((Ok(()), vec![1, 2, 3])));
        pool.release(&mut first);
        assert_eq!(first, 0);
        assert_eq!(pool.in_use(), 1);
        assert!(pool.get_mut(0).is_none());
        // Releasing twice does not hand the slot out twice.
        pool.release(&mut first);
        assert_eq!(pool.acquire(0), Some(0x200));
        assert_eq!(pool.acquire(0), None);
    }

    #[test]
    fn overflow_keeps_the_prefix_and_says_so() {
        let mut pool = SegmentPool::new(1);
        let handle = pool.acquire(0).unwrap_or(0);
        let Some(buffer) = pool.get_mut(handle) else {
            panic!("no buffer");
        };
        buffer.start(0, 0);
        assert_eq!(buffer.append(&[7; SEGMENT_BUFFER_LEN - 1]), Ok(()));
        assert!(!buffer.overflowed);
        assert_eq!(buffer.append(&[8, 9]), Err(Error::Overflow));
        assert!(buffer.overflowed);
        assert_eq!(buffer.bytes().len(), SEGMENT_BUFFER_LEN);
        assert_eq!(buffer.bytes().last(), Some(&8));
        buffer.start(1, 0);
        assert!(!buffer.overflowed);
        assert!(buffer.bytes().is_empty());
    }

    #[test]
    fn release_flow_frees_both_directions() {
        let mut pool = SegmentPool::new(4);
        let mut state = AppState {
            segment_slots: [pool.acquire(0).unwrap_or(0), pool.acquire(0).unwrap_or(0)],
            ..AppState::default()
        };
        assert_eq!(pool.in_use(), 2);
        pool.release_flow(&mut state);
        assert_eq!(state.segment_slots, [0, 0]);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_half_open_message_loses_its_buffer_after_the_timeout() {
        let mut pool = SegmentPool::new(2);
        let mut stale = pool.acquire(0).unwrap_or(0);
        let second = pool.acquire(5_000_000_000).unwrap_or(0);
        // Exhausted, and nothing is old enough yet.
        assert_eq!(pool.acquire(HALF_OPEN_TIMEOUT_NS - 1), None);
        assert_eq!(pool.take_expired(), 0);
        // The oldest half-open message expires; its holder's handle goes stale.
        let fresh = pool.acquire(HALF_OPEN_TIMEOUT_NS).unwrap_or(0);
        assert_ne!(fresh, 0);
        assert_eq!(fresh & 0xff, stale & 0xff);
        assert!(!pool.holds(stale) && pool.holds(fresh) && pool.holds(second));
        assert!(pool.get_mut(stale).is_none());
        assert_eq!(pool.take_expired(), 1);
        assert_eq!(pool.take_expired(), 0);
        // Releasing the stale handle frees nothing that belongs to the new holder.
        pool.release(&mut stale);
        assert_eq!(stale, 0);
        assert_eq!(pool.in_use(), 2);
        assert!(pool.holds(fresh));
    }
}
