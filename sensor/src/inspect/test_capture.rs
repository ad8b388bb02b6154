//! Test support for the inspection tests: hex fixtures, and the PDUs of a capture's
//! TCP streams framed by a view's framer (the view tests in `otsensor-wire` have their
//! own copy, as that crate has no capture reader).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use otsensor_wire::layers::Transport;
use otsensor_wire::{Direction, Framing};

use crate::capture::pcap::PcapFile;
use crate::capture::PacketSource;

/// The shared capture directory.
pub fn pcap_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pcaps")).join(name)
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
    let mut source = PcapFile::open(&pcap_path(name)).expect("capture opens");
    let mut streams: HashMap<(IpAddr, u16, IpAddr, u16), Stream> = HashMap::new();
    let mut pdus = Vec::new();
    let mut skipped = 0;
    while let Some(packet) = source.next_packet().expect("capture reads") {
        let frame = packet.slice();
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
