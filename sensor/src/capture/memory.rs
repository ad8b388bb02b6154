//! Packets held in memory: a capture loaded once, replayed many times (benchmarks,
//! tests). Stored as one byte arena plus an index, so replay allocates nothing.

use super::{Error, LinkType, Packet, PacketSource};

#[derive(Clone, Copy, Debug)]
struct Entry {
    ts_ns: u64,
    start: usize,
    len: u32,
    wire_len: u32,
    link: LinkType,
}

/// A capture in memory.
#[derive(Clone, Debug, Default)]
pub struct MemoryCapture {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl MemoryCapture {
    /// Reads every packet of `source` into memory.
    pub fn load(source: &mut dyn PacketSource) -> Result<MemoryCapture, Error> {
        let mut capture = MemoryCapture::default();
        while let Some(packet) = source.next_packet()? {
            capture.push(&packet);
        }
        Ok(capture)
    }

    pub fn push(&mut self, packet: &Packet<'_>) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(packet.data);
        self.entries.push(Entry {
            ts_ns: packet.ts_ns,
            start,
            len: packet.data.len() as u32,
            wire_len: packet.wire_len,
            link: packet.link,
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total wire bytes.
    pub fn wire_bytes(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.wire_len)).sum()
    }

    /// The packet at `index`.
    pub fn get(&self, index: usize) -> Option<Packet<'_>> {
        let entry = self.entries.get(index)?;
        Some(Packet {
            ts_ns: entry.ts_ns,
            link: entry.link,
            data: self
                .bytes
                .get(entry.start..entry.start + entry.len as usize)?,
            wire_len: entry.wire_len,
        })
    }

    /// All packets in order.
    pub fn iter(&self) -> impl Iterator<Item = Packet<'_>> {
        (0..self.entries.len()).filter_map(|i| self.get(i))
    }

    /// A source that replays this capture from the start.
    pub fn source(&self) -> MemorySource<'_> {
        MemorySource {
            capture: self,
            next: 0,
        }
    }
}

/// Replays a [`MemoryCapture`].
#[derive(Debug)]
pub struct MemorySource<'c> {
    capture: &'c MemoryCapture,
    next: usize,
}

impl PacketSource for MemorySource<'_> {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        let packet = self.capture.get(self.next);
        self.next += 1;
        Ok(packet)
    }
}
