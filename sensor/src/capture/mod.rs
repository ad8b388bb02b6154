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
}
