//! Flows: symmetric 5-tuple keys, the hash that picks a flow's owning worker, and the
//! bounded per-worker [`table::FlowTable`].

pub mod handoff;
pub mod stream;
pub mod table;

use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr};

use otsensor_wire::layers::{self, Frame, LinkType, Mac};

/// The transport name as Suricata writes it.
pub fn proto_name(protocol: u8) -> String {
    match protocol {
        6 => "TCP".to_owned(),
        17 => "UDP".to_owned(),
        1 => "ICMP".to_owned(),
        58 => "IPv6-ICMP".to_owned(),
        132 => "SCTP".to_owned(),
        other => other.to_string(),
    }
}

/// A flow's identity, the same for both directions: the lower (ip, port) endpoint first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub lo_ip: IpAddr,
    pub hi_ip: IpAddr,
    pub lo_port: u16,
    pub hi_port: u16,
    pub protocol: u8,
    /// Outer VLAN id (0 untagged): the same addresses on two VLANs are two flows.
    pub vlan: u16,
}

/// Which endpoint of the key sent a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Lo,
    Hi,
}

impl FlowKey {
    /// The key of an IP frame and the side that sent it; `None` for non-IP frames and
    /// for later fragments (their ports are not in the packet). Inlined: returned
    /// through memory, the key was stored in pieces and read back whole, a
    /// store-forwarding stall per packet in the worker's profile.
    #[inline]
    pub fn of(frame: &Frame<'_>) -> Option<(FlowKey, Side)> {
        let (src, dst) = (frame.src_ip?, frame.dst_ip?);
        let (sport, dport) = frame.ports().unwrap_or((0, 0));
        let protocol = frame.ip_protocol();
        let side = if (src, sport) <= (dst, dport) {
            Side::Lo
        } else {
            Side::Hi
        };
        let ((lo_ip, lo_port), (hi_ip, hi_port)) = if side == Side::Lo {
            ((src, sport), (dst, dport))
        } else {
            ((dst, dport), (src, sport))
        };
        Some((
            FlowKey {
                lo_ip,
                hi_ip,
                lo_port,
                hi_port,
                protocol,
                vlan: frame.vlan[0],
            },
            side,
        ))
    }
}

/// The fixed-seed hasher: the same flow hashes the same in every run and every worker,
/// so replays are deterministic and both directions meet on one worker.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowHasher;

const SEED: u64 = 0x6f74_7365_6e73_6f72; // "otsensor"

impl FlowHasher {
    pub fn hash_key(&self, key: &FlowKey) -> u64 {
        foldhash::fast::FixedState::with_seed(SEED).hash_one(key)
    }

    pub fn hash_mac(&self, mac: &Mac) -> u64 {
        foldhash::fast::FixedState::with_seed(SEED).hash_one(mac)
    }
}

/// The worker (0..workers) that owns frames with this hash.
pub fn owner(hash: u64, workers: usize) -> usize {
    // Multiply-shift keeps the high bits, which the hash mixes best.
    ((u128::from(hash) * workers as u128) >> 64) as usize
}

/// The owning worker of any frame: by flow key for IP, by source MAC otherwise, so that
/// per-worker de-duplication sees each device's non-IP frames in one place.
pub fn frame_owner(frame: &Frame<'_>, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let hasher = FlowHasher;
    if let Some((key, _)) = FlowKey::of(frame) {
        return owner(hasher.hash_key(&key), workers);
    }
    match frame.src_mac {
        Some(mac) => owner(hasher.hash_mac(&mac), workers),
        None => 0,
    }
}

/// The owning worker of a captured packet: [`frame_owner`] of its slice, without slicing
/// the common case. Ethernet (up to two VLAN tags) with an unfragmented IPv4 TCP or UDP
/// packet is read at fixed offsets, exactly where the slicer's own IPv4 fast path reads
/// it; every other frame is sliced.
pub fn packet_owner(link: LinkType, data: &[u8], wire_len: u32, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    if link == LinkType::Ethernet {
        if let Some(key) = ipv4_flow_key(data) {
            return owner(FlowHasher.hash_key(&key), workers);
        }
    }
    // The owner depends on addresses, ports and MACs only, not on the time.
    frame_owner(&layers::slice(link, data, 0, wire_len), workers)
}

/// The flow key of a plain IPv4 TCP/UDP Ethernet frame, under the same conditions as the
/// slicer's IPv4 fast path (`otsensor_wire::layers::slice`); `None` sends the frame to
/// the slicer.
fn ipv4_flow_key(data: &[u8]) -> Option<FlowKey> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
    };
    let mut ether_type = be16(12)?;
    let mut at = 14;
    let mut outer_vlan = None;
    for _ in 0..2 {
        if !matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        let vlan = be16(at)? & 0x0fff;
        outer_vlan.get_or_insert(vlan);
        ether_type = be16(at + 2)?;
        at += 4;
    }
    if ether_type != 0x0800 {
        return None;
    }
    let ip = data.get(at..)?;
    let header = ip.get(..20)?;
    let header_len = usize::from(header[0] & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if header[0] >> 4 != 4 || header_len < 20 || total_len < header_len || total_len > ip.len() {
        return None;
    }
    // More-fragments flag or a fragment offset.
    if u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0 {
        return None;
    }
    let protocol = header[9];
    let l4 = ip.get(header_len..total_len)?;
    match protocol {
        6 => {
            let tcp_len = usize::from(l4.get(12)? >> 4) * 4;
            if l4.len() < 20 || tcp_len < 20 || tcp_len > l4.len() {
                return None;
            }
        }
        17 if l4.len() >= 8 => {}
        _ => return None,
    }
    let addr = |at: usize| {
        IpAddr::V4(Ipv4Addr::new(
            header[at],
            header[at + 1],
            header[at + 2],
            header[at + 3],
        ))
    };
    let (src, dst) = (addr(12), addr(16));
    let sport = u16::from_be_bytes([l4[0], l4[1]]);
    let dport = u16::from_be_bytes([l4[2], l4[3]]);
    // As `FlowKey::of`: the lower (ip, port) endpoint first.
    let ((lo_ip, lo_port), (hi_ip, hi_port)) = if (src, sport) <= (dst, dport) {
        ((src, sport), (dst, dport))
    } else {
        ((dst, dport), (src, sport))
    };
    Some(FlowKey {
        lo_ip,
        hi_ip,
        lo_port,
        hi_port,
        protocol,
        vlan: outer_vlan.unwrap_or(0),
    })
}

/// The queue a NIC without symmetric RSS would pick: a hash of the packet's ordered
/// addresses and ports, so the two directions of a flow usually land apart (each
/// direction keeps its order). Used to exercise hand-offs.
pub fn asymmetric_queue(frame: &Frame<'_>, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let ports = frame.ports().unwrap_or((0, 0));
    let hash = foldhash::fast::FixedState::with_seed(SEED ^ 0xA5A5).hash_one((
        frame.src_ip,
        frame.dst_ip,
        ports,
        frame.src_mac,
    ));
    owner(hash, workers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::pcap::PcapFiles;
    use crate::capture::{Packet, PacketSource};

    /// Checks every packet, and every cut of the first packets (truncated headers at
    /// each offset), against the slicer's owner; returns how many packets were read.
    fn assert_same_owners(source: &mut dyn PacketSource, name: &str) -> u64 {
        let mut read = 0u64;
        while let Ok(Some(packet)) = source.next_packet() {
            let cuts = if read < 300 { packet.data.len() } else { 0 };
            for len in (0..cuts).chain([packet.data.len()]) {
                let cut = Packet {
                    data: &packet.data[..len],
                    ..packet
                };
                for workers in [2, 3, 4, 7] {
                    assert_eq!(
                        packet_owner(cut.link, cut.data, cut.wire_len, workers),
                        frame_owner(&cut.slice(), workers),
                        "{name}: packet {read} cut to {len}, {workers} workers"
                    );
                }
            }
            read += 1;
        }
        read
    }

    #[test]
    fn the_fast_owner_is_the_sliced_one_on_shared_captures() {
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/pcaps");
        let dir = std::fs::read_dir(shared).unwrap_or_else(|e| panic!("{shared}: {e}"));
        let mut files = 0;
        for entry in dir.flatten() {
            let path = entry.path();
            if path
                .extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng")
            {
                if let Ok(mut source) = PcapFiles::open(std::slice::from_ref(&path)) {
                    assert_same_owners(&mut source, &path.display().to_string());
                    files += 1;
                }
            }
        }
        assert!(files > 0, "no capture read in {shared}");
    }

    #[test]
    fn the_fast_owner_is_the_sliced_one_on_the_generated_mix() {
        let path =
            std::env::temp_dir().join(format!("otsensor-owner-mix-{}.pcap", std::process::id()));
        xtask::gen::mix(
            &xtask::gen::MixOptions {
                packets: 100_000,
                seed: 11,
                resolution: xtask::gen::pcap::Resolution::Micro,
            },
            &path,
        )
        .expect("generate");
        let mut source = PcapFiles::open(std::slice::from_ref(&path)).expect("open");
        let read = assert_same_owners(&mut source, "mix");
        std::fs::remove_file(&path).ok();
        std::fs::remove_file(xtask::gen::truth_path(&path)).ok();
        assert_eq!(read, 100_000);
    }
}
