//! pcap and pcapng capture files (pcap-parser), one or several read in order.
//!
//! Timestamps are normalised to nanoseconds: pcap micro- and nanosecond magics, and
//! pcapng `if_tsresol`/`if_tsoffset` per interface. A file that ends mid-record yields
//! every complete packet and then reports itself as truncated.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

use super::{Error, LinkType, Packet, PacketSource};

const INITIAL_BUFFER: usize = 1 << 20;
/// No sane record is larger; a larger one means a corrupt length field.
const MAX_BUFFER: usize = 256 << 20;

/// Per-interface timestamp and framing parameters.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_second: u64,
    /// Seconds added to every timestamp (pcapng `if_tsoffset`).
    offset_seconds: i64,
}

/// A capture file read as a stream of packets.
pub struct PcapFile {
    path: PathBuf,
    reader: Box<dyn PcapReaderIterator + Send>,
    buffer_size: usize,
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
            reader,
            buffer_size: INITIAL_BUFFER,
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
        Error::Corrupt {
            path: self.path.clone(),
            offset: self.bytes_consumed,
            reason: reason.into(),
        }
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
            // No shift here: refill() moves only the partial record left at the end of
            // the buffer, instead of half a buffer every time the middle is passed.
            self.reader.consume_noshift(self.pending_consume);
            self.bytes_consumed += self.pending_consume as u64;
            self.pending_consume = 0;
        }
        let base = self.reader.data().as_ptr() as usize;
        let (offset, block) = match self.reader.next() {
            Ok(next) => next,
            Err(PcapError::Eof) => return Ok(None),
            Err(PcapError::Incomplete(_)) => {
                if self.reader.data().len() >= self.buffer_size / 2 {
                    // One record larger than half the buffer: grow, within reason.
                    if self.buffer_size >= MAX_BUFFER {
                        return Err(self.corrupt("record larger than 256 MiB"));
                    }
                    self.buffer_size *= 2;
                    self.reader.grow(self.buffer_size);
                }
                self.reader.refill().map_err(|_| Error::Read {
                    path: self.path.clone(),
                    source: std::io::Error::other("read failed"),
                })?;
                return Ok(Some(None));
            }
            Err(PcapError::UnexpectedEof) => {
                self.truncated = true;
                return Ok(None);
            }
            Err(PcapError::ReadError) => {
                return Err(Error::Read {
                    path: self.path.clone(),
                    source: std::io::Error::other("read failed"),
                })
            }
            Err(other) => {
                let reason = format!("{other:?}");
                return Err(self.corrupt(reason));
            }
        };
        // Copy what is needed out of the block so it no longer borrows the reader.
        let record = match block {
            PcapBlockOwned::LegacyHeader(header) => Record::Interface {
                reset: true,
                linktype: header.network.0,
                units_per_second: Some(if header.is_nanosecond_precision() {
                    1_000_000_000
                } else {
                    1_000_000
                }),
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
                        .reader
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

    /// The packet `advance` moved to.
    fn current(&self) -> Option<Packet<'_>> {
        let found = self.ready.as_ref()?;
        let data = self
            .reader
            .data()
            .get(found.start..found.start + found.len)?;
        Some(Packet {
            ts_ns: found.ts_ns,
            link: found.link,
            data,
            wire_len: found.wire_len,
        })
    }
}

impl PacketSource for PcapFile {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
        self.advance()?;
        Ok(self.current())
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

impl PacketSource for PcapFiles {
    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, Error> {
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
                        return Ok(None);
                    };
                    self.current = Some(PcapFile::open(path)?);
                    self.next += 1;
                }
            }
        }
        Ok(self.current.as_ref().and_then(PcapFile::current))
    }
}
