//! A minimal pcapng writer (the pcapng draft, `draft-ietf-opsawg-pcapng`): a Section
//! Header Block whose `opt_comment`s carry the alert, one Interface Description Block
//! per link type (nanosecond `if_tsresol`), and an Enhanced Packet Block per packet.
//! Written by hand because the three blocks are short and the comments are the point.

use otsensor_wire::layers::LinkType;

use super::ring::Packets;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_TSRESOL: u16 = 9;

/// LINKTYPE_* of a link type (the same numbers the capture reader maps from).
pub fn linktype(link: LinkType) -> u16 {
    match link {
        LinkType::Ethernet => 1,
        LinkType::LinuxSll => 113,
        LinkType::LinuxSll2 => 276,
        LinkType::Null => 0,
        LinkType::Loop => 108,
        LinkType::RawIp => 101,
    }
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    // An option value is at most u16::MAX long; comments are ours and short.
    let value = &value[..value.len().min(0xFFF0)];
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    out.extend_from_slice(value);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Wraps `body` as a block of `kind` (type, total length, body, total length).
fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
    let total = (12 + body.len()) as u32;
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&total.to_le_bytes());
}

/// The whole file: `comments` on the section, then `packets` in order.
pub fn write(comments: &[String], packets: &Packets) -> Vec<u8> {
    let mut out = Vec::with_capacity(packets.bytes.len() + packets.entries.len() * 32 + 512);
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    for comment in comments {
        option(&mut body, OPT_COMMENT, comment.as_bytes());
    }
    option(
        &mut body,
        SHB_USERAPPL,
        concat!("otsensor ", env!("CARGO_PKG_VERSION")).as_bytes(),
    );
    option(&mut body, OPT_END, &[]);
    block(&mut out, SHB, &body);

    // One interface per link type, in order of first use.
    let mut interfaces: Vec<LinkType> = Vec::new();
    for entry in &packets.entries {
        if !interfaces.contains(&entry.link) {
            interfaces.push(entry.link);
        }
    }
    for link in &interfaces {
        body.clear();
        body.extend_from_slice(&linktype(*link).to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes()); // snaplen: no limit
        option(&mut body, IF_TSRESOL, &[9]);
        option(&mut body, OPT_END, &[]);
        block(&mut out, IDB, &body);
    }
    for entry in &packets.entries {
        let data = packets.data(entry);
        let interface = interfaces
            .iter()
            .position(|l| *l == entry.link)
            .unwrap_or(0);
        body.clear();
        body.extend_from_slice(&(interface as u32).to_le_bytes());
        body.extend_from_slice(&((entry.ts_ns >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(entry.ts_ns as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&entry.wire_len.max(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        pad(&mut body);
        block(&mut out, EPB, &body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::ring::PacketEntry;

    #[test]
    fn the_capture_reader_reads_what_we_write() {
        let mut packets = Packets::default();
        let frames: [&[u8]; 2] = [&[1u8; 60], &[2u8; 61]];
        for (i, frame) in frames.iter().enumerate() {
            packets.entries.push(PacketEntry {
                ts_ns: 1_700_000_000_123_456_789 + i as u64,
                link: LinkType::Ethernet,
                wire_len: 100,
                start: packets.bytes.len(),
                len: frame.len(),
            });
            packets.bytes.extend_from_slice(frame);
        }
        let file = write(&["alert 7: plc_stop".to_owned()], &packets);
        assert_eq!(file.len() % 4, 0);
        let dir = std::env::temp_dir().join(format!("otsensor-pcapng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("a.pcapng");
        std::fs::write(&path, &file).expect("write");
        let mut files = crate::capture::pcap::PcapFiles::open(&[path]).expect("open");
        use crate::capture::PacketSource;
        let mut seen = Vec::new();
        while let Some(packet) = files.next_packet().expect("read") {
            seen.push((packet.ts_ns, packet.data.to_vec(), packet.wire_len));
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            seen,
            vec![
                (1_700_000_000_123_456_789, vec![1u8; 60], 100),
                (1_700_000_000_123_456_790, vec![2u8; 61], 100)
            ]
        );
        // The comment is in the section header.
        assert!(file.windows(17).any(|w| w == b"alert 7: plc_stop"));
    }
}
