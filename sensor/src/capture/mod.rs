//! Packet sources: the one interface behind which live capture (AF_XDP) and capture
//! files (pcap, pcapng) feed the same pipeline.
//!
//! A source yields [`Packet`]s that borrow from the source's buffer until the next call,
//! so reading a file costs no allocation per packet.

/// Live capture: one AF_XDP socket per NIC RX queue (Linux).
#[cfg(target_os = "linux")]
pub mod afxdp;
/// Live capture: the pre-filter plus a socket per queue, handed to per-queue workers (Linux).
#[cfg(target_os = "linux")]
pub mod live;
/// A capture held in memory (benchmarks, tests).
pub mod memory;
/// pcap and pcapng files.
pub mod pcap;

use std::path::PathBuf;
use std::sync::Arc;

use otsensor_wire::layers::{self, Frame};

/// The link types a capture may carry; defined with the slicer that reads them.
pub use otsensor_wire::layers::LinkType;

/// One captured frame. `data` borrows from the source until its next call.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// Capture time, nanoseconds since the Unix epoch. All pipeline time is packet time.
    pub ts_ns: u64,
    /// How to read the first bytes of `data`.
    pub link: LinkType,
    /// The captured bytes (possibly shorter than `wire_len` when the capture was snapped).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub wire_len: u32,
}

impl<'a> Packet<'a> {
    /// Slices the packet's L2–L4 headers (see [`otsensor_wire::layers::slice`]).
    pub fn slice(&self) -> Frame<'a> {
        layers::slice(self.link, self.data, self.ts_ns, self.wire_len)
    }
}

/// A block of a capture file as read from disk. Packets read from it borrow from it, and
/// the pipeline's batches may hold it (a reference count per batch, not a copy per
/// packet); the source reuses a block only once nothing else holds it.
pub type SharedBlock = Arc<Vec<u8>>;

/// Where a packet's bytes lie in a [`SharedBlock`].
#[derive(Clone, Copy, Debug)]
pub struct SharedBytes<'a> {
    pub block: &'a SharedBlock,
    /// Offset of the packet's first byte in the block.
    pub start: usize,
}

/// Why a source could not deliver packets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: not a pcap or pcapng capture (unrecognised header)")]
    NotACapture { path: PathBuf },
    #[error("{path}: unsupported link type {linktype} (supported: Ethernet 1, Linux SLL 113, SLL2 276, BSD loopback 0/108, raw IP 101/228/229)")]
    UnsupportedLinkType { path: PathBuf, linktype: i32 },
    #[error("{path}: packet for interface {interface} that the file never described")]
    UnknownInterface { path: PathBuf, interface: u32 },
    #[error("{path}: corrupt capture at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("live capture on {interface}: {source}")]
    Live {
        interface: String,
        source: std::io::Error,
    },
    #[error("{path}: read error: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A supplier of packets in capture order.
pub trait PacketSource {
    /// The next packet, or `None` at the end of the source.
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error>;

    /// True when the next call would wait for packets to arrive (live capture): the
    /// reader then hands partial batches to the workers instead of holding them.
    fn idle(&mut self) -> bool {
        false
    }

    /// As [`PacketSource::next_packet`], and where the packet's bytes lie when the source
    /// reads into blocks it can share: the reader then hands workers the block instead
    /// of a copy of the bytes.
    fn next_packet_shared(
        &mut self,
    ) -> Result<Option<(Packet<'_>, Option<SharedBytes<'_>>)>, Error> {
        Ok(self.next_packet()?.map(|packet| (packet, None)))
    }
}
