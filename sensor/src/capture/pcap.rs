//! pcap and pcapng capture files (pcap-parser), one or several read in order.
//!
//! Timestamps are normalised to nanoseconds: pcap micro- and nanosecond magics, and
//! pcapng `if_tsresol`/`if_tsoffset` per interface. A file that ends mid-record yields
//! every complete packet and then reports itself as truncated.
//!
//! Legacy pcap files (the common case) are read in 1 MiB blocks by this module's own
//! record loop: packets borrow from the block, and the replay reader hands workers the
//! block itself ([`SharedBlock`]) instead of copying every packet into a batch. pcapng
//! and pcap from other byte streams go through pcap-parser's reader.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

use super::{Error, LinkType, Packet, PacketSource, SharedBlock, SharedBytes};

const INITIAL_BUFFER: usize = 1 << 20;
/// No sane record is larger; a larger one means a corrupt length field.
const MAX_BUFFER: usize = 256 << 20;
/// Legacy pcap is read in blocks of this size.
const BLOCK: usize = 1 << 20;
/// Blocks a file keeps for sharing with batches in flight (bounded memory). When every
/// one is held, the file reads into a private block whose packets the reader copies.
const MAX_SHARED_BLOCKS: usize = 32;
/// A legacy pcap record header: seconds, sub-seconds, captured and original lengths.
const RECORD_HEADER: usize = 16;

/// Per-interface timestamp and framing parameters.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_second: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    offset_seconds: i64,
}

/// How a file's bytes are read.
enum Reader {
    /// pcap-parser's reader (pcapng, any byte stream).
    Parser {
        reader: Box<dyn PcapReaderIterator + Send>,
        buffer_size: usize,
    },
    /// Legacy pcap in shareable blocks.
    Blocks(Box<LegacyBlocks>),
}

/// A legacy pcap file read block by block.
struct LegacyBlocks {
    file: File,
    big_endian: bool,
    /// The file header's interface, reported as the first record.
    header: Option<Record>,
    /// The block being parsed; records from `pos` to `filled` are not yet consumed.
    current: SharedBlock,
    pos: usize,
    filled: usize,
    /// False for a private block (every shared one was held): its packets are copied.
    shareable: bool,
    eof: bool,
    /// Shareable blocks not being parsed; free again once no batch holds them.
    pool: Vec<SharedBlock>,
    spare: Option<SharedBlock>,
}

/// One step of the block loop of either reader.
enum Step {
    End,
    /// The file ends in the middle of a record.
    Truncated,
    Again,
    Record {
        record: Record,
        consumed: usize,
    },
}

/// A capture file read as a stream of packets.
pub struct PcapFile {
    path: PathBuf,
    reader: Reader,
    /// Legacy pcap has one interface; pcapng one per Interface Description Block, reset
    /// by each Section Header Block.
    interfaces: Vec<Interface>,
    pending_consume: usize,
    bytes_consumed: u64,
    truncated: bool,
    ready: Option<Found>,
}

impl std::fmt::Debug for PcapFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// One block, reduced to plain values.
enum Record {
    Section,
    Interface {
        reset: bool,
        linktype: i32,
        units_per_second: Option<u64>,
        offset_seconds: i64,
    },
    Packet {
        if_id: u32,
        raw_ts: Option<u64>,
        legacy_ts: Option<(u32, u32)>,
        start: usize,
        len: usize,
        wire_len: u32,
    },
    Other,
}

/// Where the packet found by one step of the block loop lies in the reader's buffer.
struct Found {
    ts_ns: u64,
    link: LinkType,
    start: usize,
    len: usize,
    wire_len: u32,
}

impl PcapFile {
    /// Opens a capture file; fails on a missing, empty or non-capture file.
    pub fn open(path: &Path) -> Result<PcapFile, Error> {
        let file = File::open(path).map_err(|source| Error::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut file = match LegacyBlocks::open(file) {
            Err(file) => file,
            Ok(blocks) => {
                return Ok(PcapFile {
                    path: path.to_owned(),
                    reader: Reader::Blocks(Box::new(blocks)),
                    interfaces: Vec::new(),
                    pending_consume: 0,
                    bytes_consumed: 0,
                    truncated: false,
                    ready: None,
                })
            }
        };
        // Anything else (pcapng, modified pcap, a short or odd header) starts over with
        // pcap-parser, which also names what is wrong with the file.
        file.rewind().map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_reader(path, file)
    }

    /// Reads a capture from any byte stream (a file, or memory for benchmarks).
    pub fn from_reader<R: Read + Send + 'static>(
        path: &Path,
        reader: R,
    ) -> Result<PcapFile, Error> {
        let path = path.to_owned();
        let reader = match pcap_parser::create_reader(INITIAL_BUFFER, reader) {
            Ok(reader) => reader,
            Err(PcapError::Eof) => return Err(Error::Empty { path }),
            Err(PcapError::ReadError) => {
                return Err(Error::Read {
                    path,
                    source: std::io::Error::other("read failed"),
                })
            }
            Err(_) => return Err(Error::NotACapture { path }),
        };
        Ok(PcapFile {
            path,
            reader: Reader::Parser {
                reader,
                buffer_size: INITIAL_BUFFER,
            },
            interfaces: Vec::new(),
            pending_consume: 0,
            bytes_consumed: 0,
            truncated: false,
            ready: None,
        })
    }

    /// The file this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True once the end of the file was reached in the middle of a record.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn corrupt(&self, reason: impl Into<String>) -> Error {
        corrupt(&self.path, self.bytes_consumed, reason)
    }

    fn interface(&self, id: u32) -> Result<Interface, Error> {
        self.interfaces
            .get(id as usize)
            .copied()
            .ok_or_else(|| Error::UnknownInterface {
                path: self.path.clone(),
                interface: id,
            })
    }

    fn link_type(&self, linktype: i32) -> Result<LinkType, Error> {
        LinkType::from_linktype(linktype).ok_or_else(|| Error::UnsupportedLinkType {
            path: self.path.clone(),
            linktype,
        })
    }

    /// Advances over one block; returns where its packet lies if it carries one.
    fn step(&mut self) -> Result<Option<Option<Found>>, Error> {
        if self.pending_consume > 0 {
            if let Reader::Parser { reader, .. } = &mut self.reader {
                // No shift here: refill() moves only the partial record left at the end
                // of the buffer, instead of half a buffer every time the middle is passed.
                reader.consume_noshift(self.pending_consume);
            }
            self.bytes_consumed += self.pending_consume as u64;
            self.pending_consume = 0;
        }
        let step = match &mut self.reader {
            Reader::Parser {
                reader,
                buffer_size,
            } => parser_step(
                reader.as_mut(),
                buffer_size,
                &self.path,
                self.bytes_consumed,
            )?,
            Reader::Blocks(blocks) => blocks.step(&self.path, self.bytes_consumed)?,
        };
        let (record, offset) = match step {
            Step::End => return Ok(None),
            Step::Truncated => {
                self.truncated = true;
                return Ok(None);
            }
            Step::Again => return Ok(Some(None)),
            Step::Record { record, consumed } => (record, consumed),
        };
        self.pending_consume = offset;
        let found = match record {
            Record::Section => {
                self.interfaces.clear();
                None
            }
            Record::Other => None,
            Record::Interface {
                reset,
                linktype,
                units_per_second,
                offset_seconds,
            } => {
                let link = self.link_type(linktype)?;
                let units_per_second =
                    units_per_second.ok_or_else(|| self.corrupt("invalid if_tsresol"))?;
                if reset {
                    self.interfaces.clear();
                }
                self.interfaces.push(Interface {
                    link,
                    units_per_second,
                    offset_seconds,
                });
                None
            }
            Record::Packet {
                if_id,
                raw_ts,
                legacy_ts,
                start,
                len,
                wire_len,
            } => {
                let iface = self.interface(if_id)?;
                let ts_ns = match (legacy_ts, raw_ts) {
                    (Some((sec, frac)), _) => {
                        u64::from(sec) * 1_000_000_000
                            + u64::from(frac) * (1_000_000_000 / iface.units_per_second.max(1))
                    }
                    (None, Some(raw)) => scale_timestamp(raw, iface),
                    (None, None) => 0,
                };
                Some(Found {
                    ts_ns,
                    link: iface.link,
                    start,
                    len,
                    wire_len,
                })
            }
        };
        Ok(Some(found))
    }
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        path: path.to_owned(),
        offset,
        reason: reason.into(),
    }
}

fn read_failed(path: &Path) -> Error {
    Error::Read {
        path: path.to_owned(),
        source: std::io::Error::other("read failed"),
    }
}

/// One step of pcap-parser's reader.
fn parser_step(
    reader: &mut (dyn PcapReaderIterator + Send),
    buffer_size: &mut usize,
    path: &Path,
    consumed: u64,
) -> Result<Step, Error> {
    let base = reader.data().as_ptr() as usize;
    let (offset, block) = match reader.next() {
        Ok(next) => next,
        Err(PcapError::Eof) => return Ok(Step::End),
        Err(PcapError::Incomplete(_)) => {
            if reader.data().len() >= *buffer_size / 2 {
                // One record larger than half the buffer: grow, within reason.
                if *buffer_size >= MAX_BUFFER {
                    return Err(corrupt(path, consumed, "record larger than 256 MiB"));
                }
                *buffer_size *= 2;
                reader.grow(*buffer_size);
            }
            reader.refill().map_err(|_| read_failed(path))?;
            return Ok(Step::Again);
        }
        Err(PcapError::UnexpectedEof) => return Ok(Step::Truncated),
        Err(PcapError::ReadError) => return Err(read_failed(path)),
        Err(other) => return Err(corrupt(path, consumed, format!("{other:?}"))),
    };
    // Copy what is needed out of the block so it no longer borrows the reader.
    let record = match block {
        PcapBlockOwned::LegacyHeader(header) => Record::Interface {
            reset: true,
            linktype: header.network.0,
            units_per_second: Some(legacy_units(&header)),
            offset_seconds: 0,
        },
        PcapBlockOwned::Legacy(record) => Record::Packet {
            if_id: 0,
            raw_ts: None,
            legacy_ts: Some((record.ts_sec, record.ts_usec)),
            start: record.data.as_ptr() as usize - base,
            len: record.data.len(),
            wire_len: record.origlen,
        },
        PcapBlockOwned::NG(Block::SectionHeader(_)) => Record::Section,
        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => Record::Interface {
            reset: false,
            linktype: idb.linktype.0,
            units_per_second: idb.ts_resolution(),
            offset_seconds: idb.ts_offset(),
        },
        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => Record::Packet {
            if_id: epb.if_id,
            raw_ts: Some((u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low)),
            legacy_ts: None,
            start: epb.data.as_ptr() as usize - base,
            len: (epb.caplen as usize).min(epb.data.len()),
            wire_len: epb.origlen,
        },
        PcapBlockOwned::NG(Block::SimplePacket(spb)) => Record::Packet {
            if_id: 0,
            // A Simple Packet Block has no timestamp.
            raw_ts: Some(0),
            legacy_ts: None,
            start: spb.data.as_ptr() as usize - base,
            len: (spb.origlen as usize).min(spb.data.len()),
            wire_len: spb.origlen,
        },
        PcapBlockOwned::NG(_) => Record::Other,
    };
    Ok(Step::Record {
        record,
        consumed: offset,
    })
}

fn legacy_units(header: &pcap_parser::PcapHeader) -> u64 {
    if header.is_nanosecond_precision() {
        1_000_000_000
    } else {
        1_000_000
    }
}

impl LegacyBlocks {
    /// Reads the file header; gives the file back unless it is legacy pcap this loop
    /// reads (the caller then rewinds and lets pcap-parser read it).
    fn open(mut file: File) -> Result<LegacyBlocks, File> {
        let mut bytes = [0u8; 24];
        if file.read_exact(&mut bytes).is_err() {
            return Err(file);
        }
        let header = match pcap_parser::pcap::parse_pcap_header(&bytes) {
            Ok((_, header)) if !header.is_modified_format() => header,
            _ => return Err(file),
        };
        Ok(LegacyBlocks {
            file,
            big_endian: header.is_bigendian(),
            header: Some(Record::Interface {
                reset: true,
                linktype: header.network.0,
                units_per_second: Some(legacy_units(&header)),
                offset_seconds: 0,
            }),
            current: Arc::new(Vec::new()),
            pos: 0,
            filled: 0,
            shareable: false,
            eof: false,
            pool: Vec::new(),
            spare: None,
        })
    }

    /// The next record, as pcap-parser's legacy reader would give it.
    fn step(&mut self, path: &Path, consumed: u64) -> Result<Step, Error> {
        if let Some(header) = self.header.take() {
            return Ok(Step::Record {
                record: header,
                consumed: 24,
            });
        }
        let available = self.current.get(self.pos..self.filled).unwrap_or(&[]);
        let need = match available.get(..RECORD_HEADER) {
            Some(header) => {
                let field = |at: usize| {
                    let bytes = [header[at], header[at + 1], header[at + 2], header[at + 3]];
                    if self.big_endian {
                        u32::from_be_bytes(bytes)
                    } else {
                        u32::from_le_bytes(bytes)
                    }
                };
                let caplen = field(8) as usize;
                let need = RECORD_HEADER + caplen;
                if available.len() >= need {
                    let record = Record::Packet {
                        if_id: 0,
                        raw_ts: None,
                        legacy_ts: Some((field(0), field(4))),
                        start: self.pos + RECORD_HEADER,
                        len: caplen,
                        wire_len: field(12),
                    };
                    self.pos += need;
                    return Ok(Step::Record {
                        record,
                        consumed: need,
                    });
                }
                need
            }
            None => RECORD_HEADER,
        };
        if need >= BLOCK {
            // What pcap-parser's legacy reader says of a record its 1 MiB buffer cannot
            // hold (no real record is that large: a corrupt length field).
            return Err(corrupt(path, consumed, "BufferTooSmall"));
        }
        if self.eof {
            return Ok(if available.is_empty() {
                Step::End
            } else {
                Step::Truncated
            });
        }
        self.refill(path)?;
        Ok(Step::Again)
    }

    /// Moves the partial record left at the end of the current block to the start of
    /// a free one and fills the rest from the file.
    fn refill(&mut self, path: &Path) -> Result<(), Error> {
        let (mut next, shareable) = self.free_block();
        let tail = self.current.get(self.pos..self.filled).unwrap_or(&[]);
        // Nothing else holds a free block, so this never copies it.
        let buf = Arc::make_mut(&mut next);
        buf[..tail.len()].copy_from_slice(tail);
        let mut filled = tail.len();
        while filled < buf.len() {
            match self.file.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Read {
                        path: path.to_owned(),
                        source,
                    })
                }
            }
        }
        let done = std::mem::replace(&mut self.current, next);
        if self.shareable {
            self.pool.push(done);
        } else if done.len() == BLOCK {
            // (Not the empty placeholder a file starts with.)
            self.spare = Some(done);
        }
        self.shareable = shareable;
        self.pos = 0;
        self.filled = filled;
        Ok(())
    }

    /// A block no batch holds, and whether it may be shared: pooled blocks are, up to
    /// `MAX_SHARED_BLOCKS`; past that (every one held) a private spare is used.
    fn free_block(&mut self) -> (SharedBlock, bool) {
        if let Some(i) = self.pool.iter().position(|b| Arc::strong_count(b) == 1) {
            return (self.pool.swap_remove(i), true);
        }
        if self.pool.len() + 1 < MAX_SHARED_BLOCKS {
            return (Arc::new(vec![0; BLOCK]), true);
        }
        match self.spare.take() {
            Some(spare) => (spare, false),
            None => (Arc::new(vec![0; BLOCK]), false),
        }
    }

    fn data(&self) -> &[u8] {
        self.current.get(..self.filled).unwrap_or(&[])
    }
}

/// Converts a pcapng timestamp in interface units to nanoseconds since the epoch.
fn scale_timestamp(raw: u64, iface: Interface) -> u64 {
    let units = iface.units_per_second.max(1);
    let seconds = (raw / units) as i64 + iface.offset_seconds;
    let fraction = raw % units;
    let nanos = (u128::from(fraction) * 1_000_000_000 / u128::from(units)) as u64;
    (seconds.max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(nanos)
}

impl PcapFile {
    /// Moves to the next packet; false at the end of the file.
    fn advance(&mut self) -> Result<bool, Error> {
        loop {
            match self.step()? {
                None => {
                    self.ready = None;
                    return Ok(false);
                }
                Some(None) => continue,
                Some(Some(found)) => {
                    if self
                        .data()
                        .get(found.start..found.start + found.len)
                        .is_none()
                    {
                        return Err(self.corrupt("packet data outside its block"));
                    }
                    self.ready = Some(found);
                    return Ok(true);
                }
            }
        }
    }

    /// The bytes the current record's offsets refer to.
    fn data(&self) -> &[u8] {
        match &self.reader {
            Reader::Parser { reader, .. } => reader.data(),
            Reader::Blocks(blocks) => blocks.data(),
        }
    }

    /// The packet `advance` moved to.
    fn current(&self) -> Option<Packet<'_>> {
        let found = self.ready.as_ref()?;
        let data = self.data().get(found.start..found.start + found.len)?;
        Some(Packet {
            ts_ns: found.ts_ns,
            link: found.link,
            data,
            wire_len: found.wire_len,
        })
    }

    /// The packet `advance` moved to, with its block when that can be shared.
    fn current_shared(&self) -> Option<(Packet<'_>, Option<SharedBytes<'_>>)> {
        let packet = self.current()?;
        let shared = match (&self.reader, &self.ready) {
            (Reader::Blocks(blocks), Some(found)) if blocks.shareable => Some(SharedBytes {
                block: &blocks.current,
                start: found.start,
            }),
            _ => None,
        };
        Some((packet, shared))
    }
}

impl PacketSource for PcapFile {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        self.advance()?;
        Ok(self.current())
    }

    fn next_packet_shared(
        &mut self,
    ) -> Result<Option<(Packet<'_>, Option<SharedBytes<'_>>)>, Error> {
        self.advance()?;
        Ok(self.current_shared())
    }
}

/// Several capture files read one after another, as one source.
#[derive(Debug)]
pub struct PcapFiles {
    paths: Vec<PathBuf>,
    next: usize,
    current: Option<PcapFile>,
    truncated: Vec<PathBuf>,
}

impl PcapFiles {
    /// Opens every file up front so a bad one fails before any packet is processed.
    pub fn open(paths: &[PathBuf]) -> Result<PcapFiles, Error> {
        for path in paths {
            PcapFile::open(path)?;
        }
        Ok(PcapFiles {
            paths: paths.to_vec(),
            next: 0,
            current: None,
            truncated: Vec::new(),
        })
    }

    /// Files that ended mid-record (everything readable before the cut was delivered).
    pub fn truncated_files(&self) -> &[PathBuf] {
        &self.truncated
    }
}

impl PcapFiles {
    /// Moves to the next packet, opening the next file when one ends; false at the end.
    fn advance(&mut self) -> Result<bool, Error> {
        loop {
            match self.current.as_mut() {
                Some(file) => {
                    if file.advance()? {
                        break;
                    }
                    if file.truncated() {
                        self.truncated.push(file.path().to_owned());
                    }
                    self.current = None;
                }
                None => {
                    let Some(path) = self.paths.get(self.next) else {
                        return Ok(false);
                    };
                    self.current = Some(PcapFile::open(path)?);
                    self.next += 1;
                }
            }
        }
        Ok(true)
    }
}

impl PacketSource for PcapFiles {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        if !self.advance()? {
            return Ok(None);
        }
        Ok(self.current.as_ref().and_then(PcapFile::current))
    }

    fn next_packet_shared(
        &mut self,
    ) -> Result<Option<(Packet<'_>, Option<SharedBytes<'_>>)>, Error> {
        if !self.advance()? {
            return Ok(None);
        }
        Ok(self.current.as_ref().and_then(PcapFile::current_shared))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every packet of a source as plain values, and how the source ended.
    type ReadBack = (Vec<(u64, LinkType, Vec<u8>, u32)>, Result<bool, String>);

    fn read_all(mut file: PcapFile) -> ReadBack {
        let mut packets = Vec::new();
        loop {
            match file.next_packet_shared() {
                Ok(Some((packet, shared))) => {
                    if let Some(shared) = shared {
                        let bytes = &shared.block[shared.start..shared.start + packet.data.len()];
                        assert_eq!(bytes, packet.data, "a shared packet lies where it says");
                    }
                    packets.push((
                        packet.ts_ns,
                        packet.link,
                        packet.data.to_vec(),
                        packet.wire_len,
                    ));
                }
                Ok(None) => return (packets, Ok(file.truncated())),
                Err(e) => return (packets, Err(e.to_string())),
            }
        }
    }

    fn both_ways(path: &Path) -> (ReadBack, ReadBack) {
        let blocks = PcapFile::open(path).expect("open");
        let parser = PcapFile::from_reader(path, File::open(path).expect("open")).expect("parse");
        (read_all(blocks), read_all(parser))
    }

    fn record(out: &mut Vec<u8>, big_endian: bool, fields: [u32; 4], data: &[u8]) {
        for field in fields {
            out.extend_from_slice(&if big_endian {
                field.to_be_bytes()
            } else {
                field.to_le_bytes()
            });
        }
        out.extend_from_slice(data);
    }

    /// A legacy pcap of a few MiB: records of many sizes, so that records straddle blocks.
    fn generated(big_endian: bool, nanoseconds: bool, size: usize) -> Vec<u8> {
        let magic: u32 = if nanoseconds {
            0xa1b2_3c4d
        } else {
            0xa1b2_c3d4
        };
        let mut out = Vec::new();
        let put32 = |out: &mut Vec<u8>, v: u32| {
            out.extend_from_slice(&if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        put32(&mut out, magic);
        let version: [u16; 2] = [2, 4];
        for v in version {
            out.extend_from_slice(&if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            });
        }
        for v in [0, 0, 262_144, 1] {
            put32(&mut out, v);
        }
        let mut i = 0u32;
        while out.len() < size {
            let len = [60, 1514, 0, 9000, 342, 70_000][i as usize % 6] + (i as usize % 17);
            let data: Vec<u8> = (0..len).map(|b| (b as u32 ^ i) as u8).collect();
            record(
                &mut out,
                big_endian,
                [
                    1_700_000_000 + i,
                    i * 7 % 1_000_000,
                    len as u32,
                    len as u32 + 4,
                ],
                &data,
            );
            i += 1;
        }
        out
    }

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("otsensor-pcap-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn capture_blocks_read_what_pcap_parser_reads_shared_files() {
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pcaps");
        let dir = std::fs::read_dir(shared).unwrap_or_else(|e| panic!("{shared}: {e}"));
        let mut files = 0;
        for entry in dir.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pcap") {
                let (blocks, parser) = both_ways(&path);
                assert_eq!(blocks, parser, "{path:?}");
                files += 1;
            }
        }
        assert!(files > 0);
    }

    #[test]
    fn capture_blocks_read_what_pcap_parser_reads_across_blocks_and_cuts() {
        for (big_endian, nanoseconds) in [(false, false), (true, true)] {
            let bytes = generated(big_endian, nanoseconds, 3 * BLOCK + BLOCK / 3);
            let path = temp_file(&format!("whole-{big_endian}"), &bytes);
            let file = PcapFile::open(&path).expect("open");
            assert!(matches!(file.reader, Reader::Blocks(_)), "read in blocks");
            let (blocks, parser) = both_ways(&path);
            assert!(blocks.0.len() > 100);
            assert_eq!(blocks.1, Ok(false));
            assert_eq!(blocks, parser);
            // Cut inside the file header's record, a record header, record data, and on
            // a record boundary: the same packets, and the same truncation.
            let first_record = 24 + 16 + 60;
            for cut in [
                24 + 5,
                24 + 16 + 10,
                first_record,
                BLOCK + 7,
                2 * BLOCK + 5000,
                bytes.len() - 1,
            ] {
                let path = temp_file(&format!("cut-{big_endian}-{cut}"), &bytes[..cut]);
                let (blocks, parser) = both_ways(&path);
                assert_eq!(blocks, parser, "cut at {cut}");
                std::fs::remove_file(path).ok();
            }
            std::fs::remove_file(path).ok();
        }
    }

    #[test]
    fn capture_blocks_refuse_an_impossible_record_as_pcap_parser_does() {
        let mut bytes = generated(false, false, 0);
        record(&mut bytes, false, [1, 2, 60, 60], &[0; 60]);
        for caplen in [0xffff_fff0, 3 << 20, BLOCK as u32 - 16] {
            let mut bytes = bytes.clone();
            record(
                &mut bytes,
                false,
                [1, 2, caplen, caplen],
                &std::iter::repeat_n(0u8, 4 << 20).collect::<Vec<u8>>(),
            );
            let path = temp_file(&format!("impossible-{caplen}"), &bytes);
            let (blocks, parser) = both_ways(&path);
            assert!(blocks
                .1
                .as_ref()
                .is_err_and(|e| e.contains("BufferTooSmall")));
            assert_eq!(blocks, parser, "caplen {caplen}");
            std::fs::remove_file(path).ok();
        }
    }

    #[test]
    fn capture_blocks_held_by_batches_stay_bounded_and_intact() {
        let bytes = generated(false, false, (MAX_SHARED_BLOCKS + 3) * BLOCK);
        let path = temp_file("held", &bytes);
        let mut file = PcapFile::open(&path).expect("open");
        let (expected, _) = read_all(PcapFile::open(&path).expect("open"));
        // Hold every shared block as slow workers would: past the cap, packets come from
        // a private block (to be copied) and memory stays bounded.
        let mut held: Vec<SharedBlock> = Vec::new();
        let mut unshared = 0;
        let mut seen = 0;
        while let Some((packet, shared)) = file.next_packet_shared().expect("read") {
            assert_eq!(packet.data, &expected[seen].2[..]);
            seen += 1;
            match shared {
                Some(shared) => {
                    if !held.last().is_some_and(|b| Arc::ptr_eq(b, shared.block)) {
                        held.push(Arc::clone(shared.block));
                    }
                }
                None => unshared += 1,
            }
        }
        assert_eq!(seen, expected.len());
        assert!(held.len() <= MAX_SHARED_BLOCKS);
        assert!(
            unshared > 0,
            "past the cap, packets are read into a private block"
        );
        if let Reader::Blocks(blocks) = &file.reader {
            assert!(blocks.pool.len() <= MAX_SHARED_BLOCKS);
        }
        std::fs::remove_file(path).ok();
    }
}
