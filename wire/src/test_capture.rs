//! Test support: the PDUs of a capture's TCP streams, framed by a view's framer, so that
//! view tests (here, and `otsensor`'s inspection and dissection tests through the
//! `test-support` feature) can compare themselves with the tshark expectations in
//! `../shared/pcaps/expected`. The crate has no capture reader (it does no I/O); this
//! one reads a whole pcap or pcapng file with pcap-parser, for tests only.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use pcap_parser::pcapng::Block;
use pcap_parser::{PcapBlockOwned, PcapError};

use crate::layers::{self, LinkType, Transport};
use crate::{Direction, Framing};

/// Bytes from a hex fixture (whitespace and other non-hex characters ignored).
pub fn hex(text: &str) -> Vec<u8> {
    let clean: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    clean
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("hex fixture");
            u8::from_str_radix(pair, 16).expect("hex fixture")
        })
        .collect()
}

/// The shared capture directory.
pub fn pcap_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pcaps")).join(name)
}

/// Every frame of a capture with its link type, in file order.
fn frames(name: &str) -> Vec<(LinkType, Vec<u8>)> {
    let file = std::fs::File::open(pcap_path(name)).expect("capture opens");
    let mut reader = pcap_parser::create_reader(1 << 20, file).expect("pcap or pcapng");
    let mut links = Vec::new();
    let mut frames = Vec::new();
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(header) => links = vec![header.network.0],
                    PcapBlockOwned::Legacy(record) => frames.push((links[0], record.data.to_vec())),
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => links.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        links.push(idb.linktype.0)
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let len = (epb.caplen as usize).min(epb.data.len());
                        frames.push((links[epb.if_id as usize], epb.data[..len].to_vec()));
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let len = (spb.origlen as usize).min(spb.data.len());
                        frames.push((links[0], spb.data[..len].to_vec()));
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().expect("capture reads"),
            Err(other) => panic!("{name}: {other:?}"),
        }
    }
    frames
        .into_iter()
        .map(|(link, data)| (LinkType::from_linktype(link).expect("supported link"), data))
        .collect()
}

/// One TCP direction's reassembly state: in-order bytes not yet framed.
#[derive(Default)]
struct Stream {
    next_seq: Option<u32>,
    pending: Vec<u8>,
}

/// Every PDU of the TCP streams to or from `server_port`, in capture order, as framed
/// by `framer`. Segments that start before the next expected sequence number
/// (retransmissions, which tshark does not dissect) are dropped; a gap is not filled.
/// `Resync` skips are counted in the second value.
pub fn framed_pdus(
    name: &str,
    server_port: u16,
    framer: fn(&[u8]) -> Framing,
) -> (Vec<(Direction, Vec<u8>)>, usize) {
    let mut streams: HashMap<(IpAddr, u16, IpAddr, u16), Stream> = HashMap::new();
    let mut pdus = Vec::new();
    let mut skipped = 0;
    for (link, data) in frames(name) {
        let frame = layers::slice(link, &data, 0, data.len() as u32);
        let Transport::Tcp {
            src_port,
            dst_port,
            seq,
            ..
        } = frame.transport
        else {
            continue;
        };
        let (Some(src), Some(dst)) = (frame.src_ip, frame.dst_ip) else {
            continue;
        };
        if frame.payload.is_empty() || (src_port != server_port && dst_port != server_port) {
            continue;
        }
        let direction = if dst_port == server_port {
            Direction::Request
        } else {
            Direction::Response
        };
        let stream = streams.entry((src, src_port, dst, dst_port)).or_default();
        if let Some(next) = stream.next_seq {
            // Sequence comparison modulo 2^32: a segment starting before `next` is old.
            if (seq.wrapping_sub(next) as i32) < 0 {
                continue;
            }
        }
        stream.next_seq = Some(seq.wrapping_add(frame.payload.len() as u32));
        stream.pending.extend_from_slice(frame.payload);
        loop {
            match framer(&stream.pending) {
                Framing::Frame(len) => {
                    pdus.push((direction, stream.pending[..len].to_vec()));
                    stream.pending.drain(..len);
                }
                Framing::Resync(skip) => {
                    skipped += skip;
                    stream.pending.drain(..skip.min(stream.pending.len()));
                }
                Framing::Need(_) => break,
            }
            if stream.pending.is_empty() {
                break;
            }
        }
    }
    (pdus, skipped)
}

/// The `<proto>.<histogram>` object of an expected summary, as decimal-key counts.
pub fn expected_histogram(name: &str, proto: &str, histogram: &str) -> HashMap<String, u64> {
    let stem = name.trim_end_matches(".pcapng").trim_end_matches(".pcap");
    let path = pcap_path("expected").join(format!("{stem}.summary.json"));
    let text = std::fs::read_to_string(&path).expect("expected summary exists");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("summary is JSON");
    doc.get(proto)
        .and_then(|p| p.get(histogram))
        .and_then(|h| h.as_object())
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}
