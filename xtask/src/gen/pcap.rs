//! A streaming writer of legacy pcap files (the libpcap format: a 24-byte file header,
//! then a 16-byte record header before each frame), little-endian, Ethernet link type.
//! Written by hand because the format is tiny and this keeps every byte deterministic.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Microsecond-resolution magic (pcap file format, section "File Header").
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
/// Nanosecond-resolution magic.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
pub const SNAPLEN: u32 = 65_535;

/// Timestamp resolution of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Micro,
    Nano,
}

impl Resolution {
    /// The timestamp a reader will see for `ts_ns`, in nanoseconds.
    pub fn truncate(self, ts_ns: u64) -> u64 {
        match self {
            Resolution::Micro => ts_ns / 1_000 * 1_000,
            Resolution::Nano => ts_ns,
        }
    }
}

/// Writes frames to a pcap file through a buffer; nothing is kept beyond it.
pub struct PcapWriter {
    out: BufWriter<File>,
    resolution: Resolution,
}

impl PcapWriter {
    pub fn create(path: &Path, resolution: Resolution) -> std::io::Result<PcapWriter> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
        let magic = match resolution {
            Resolution::Micro => MAGIC_MICROS,
            Resolution::Nano => MAGIC_NANOS,
        };
        out.write_all(&magic.to_le_bytes())?;
        out.write_all(&2u16.to_le_bytes())?; // version major
        out.write_all(&4u16.to_le_bytes())?; // version minor
        out.write_all(&0i32.to_le_bytes())?; // thiszone
        out.write_all(&0u32.to_le_bytes())?; // sigfigs
        out.write_all(&SNAPLEN.to_le_bytes())?;
        out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
        Ok(PcapWriter { out, resolution })
    }

    /// Appends one frame captured whole at `ts_ns` (nanoseconds since the epoch).
    pub fn write(&mut self, ts_ns: u64, frame: &[u8]) -> std::io::Result<()> {
        let seconds = (ts_ns / 1_000_000_000) as u32;
        let fraction = match self.resolution {
            Resolution::Micro => (ts_ns % 1_000_000_000 / 1_000) as u32,
            Resolution::Nano => (ts_ns % 1_000_000_000) as u32,
        };
        let len = frame.len() as u32;
        self.out.write_all(&seconds.to_le_bytes())?;
        self.out.write_all(&fraction.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?; // captured length
        self.out.write_all(&len.to_le_bytes())?; // original length
        self.out.write_all(frame)
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
