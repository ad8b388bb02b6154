//! Hand-off of frames that arrive on a worker that does not own their flow.
//!
//! With symmetric RSS both directions of a flow land on one queue and this path is idle.
//! When they do not (a NIC without symmetric hashing, or queues assigned some other
//! way), the receiving worker copies the frame into a bounded single-producer ring owned
//! by the (receiver, owner) pair. A full ring is a counted drop in live capture; offline
//! replay waits instead (see `pipeline`).

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use otsensor_wire::layers::{self, Frame, LinkType};

/// The largest frame handed off whole; longer frames are cut to this and counted.
pub const HANDOFF_FRAME_BYTES: usize = 2048;

/// A copied frame in a hand-off ring.
#[derive(Clone)]
pub struct HandoffFrame {
    ts_ns: u64,
    wire_len: u32,
    link: LinkType,
    len: u16,
    data: [u8; HANDOFF_FRAME_BYTES],
}

impl std::fmt::Debug for HandoffFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandoffFrame")
            .field("len", &self.len)
            .finish()
    }
}

impl HandoffFrame {
    /// Copies a captured frame's bytes (read as `link`), stamped `ts_ns`, `wire_len`
    /// long on the wire; returns whether they had to be cut.
    pub fn copy_of(ts_ns: u64, link: LinkType, data: &[u8], wire_len: u32) -> (HandoffFrame, bool) {
        let len = data.len().min(HANDOFF_FRAME_BYTES);
        let mut frame = HandoffFrame {
            ts_ns,
            wire_len,
            link,
            len: len as u16,
            data: [0; HANDOFF_FRAME_BYTES],
        };
        frame.data[..len].copy_from_slice(&data[..len]);
        (frame, len < data.len())
    }

    /// The copied bytes and how to read them.
    pub fn captured(&self) -> (LinkType, &[u8]) {
        (self.link, &self.data[..self.len as usize])
    }

    /// The copied frame, sliced.
    pub fn frame(&self) -> Frame<'_> {
        layers::slice(
            self.link,
            &self.data[..self.len as usize],
            self.ts_ns,
            self.wire_len,
        )
    }
}

/// The rings between every ordered pair of workers: `ring(from, to)`.
#[derive(Debug, Clone)]
pub struct HandoffRings {
    workers: usize,
    rings: Vec<Arc<ArrayQueue<HandoffFrame>>>,
}

impl HandoffRings {
    /// Rings for every ordered pair of distinct workers.
    pub fn new(workers: usize, capacity: usize) -> HandoffRings {
        let rings = (0..workers * workers)
            .map(|_| Arc::new(ArrayQueue::new(capacity.max(1))))
            .collect();
        HandoffRings { workers, rings }
    }

    /// No rings: every frame already reaches its owner (symmetric RSS, or one worker).
    /// Saves the rings' memory, which is allocated up front.
    pub fn none(workers: usize) -> HandoffRings {
        HandoffRings {
            workers,
            rings: Vec::new(),
        }
    }

    /// The ring from one worker to another, if hand-off is enabled.
    pub fn ring(&self, from: usize, to: usize) -> Option<&ArrayQueue<HandoffFrame>> {
        self.rings.get(from * self.workers + to).map(|ring| &**ring)
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    /// True when frames can be handed off (a worker must then watch its inbox).
    pub fn enabled(&self) -> bool {
        !self.rings.is_empty()
    }
}
