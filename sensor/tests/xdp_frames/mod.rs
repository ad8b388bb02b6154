//! Hand-built frames for the XDP tests: every header field the pre-filter reads is set
//! explicitly here, so a test can produce exactly the odd frame it needs (fragments,
//! extension headers, stacked VLAN tags, truncations). Checksums are left zero: the
//! program never reads them and nothing in these tests hands the frames to a stack.
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86dd;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_VLAN: u16 = 0x8100;
pub const ETH_QINQ: u16 = 0x88a8;
pub const ETH_PROFINET: u16 = 0x8892;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// Ethernet II header, then optional VLAN tags (outermost first: (tpid, vid)).
pub fn ethernet(tags: &[(u16, u16)], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    frame.extend_from_slice(&MAC_B);
    frame.extend_from_slice(&MAC_A);
    for &(tpid, vid) in tags {
        frame.extend_from_slice(&tpid.to_be_bytes());
        frame.extend_from_slice(&vid.to_be_bytes());
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// IPv4 header (RFC 791), 20 bytes, `frag` = flags and fragment offset field.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let total = (20 + payload.len()) as u16;
    let mut packet = vec![0x45, 0];
    packet.extend_from_slice(&total.to_be_bytes());
    packet.extend_from_slice(&[0x12, 0x34]); // identification
    packet.extend_from_slice(&frag.to_be_bytes());
    packet.extend_from_slice(&[64, protocol, 0, 0]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

/// IPv6 header (RFC 8200), `next` = the first next-header value.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x60, 0, 0, 0];
    packet.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[next, 64]);
    packet.extend_from_slice(&src.octets());
    packet.extend_from_slice(&dst.octets());
    packet.extend_from_slice(payload);
    packet
}

/// An 8-byte IPv6 hop-by-hop or destination-options header (PadN only).
pub fn ipv6_options(next: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = vec![next, 0, 1, 4, 0, 0, 0, 0];
    header.extend_from_slice(payload);
    header
}

/// An IPv6 fragment header (RFC 8200 4.5).
pub fn ipv6_fragment(next: u8, offset_units: u16, more: bool, payload: &[u8]) -> Vec<u8> {
    let field = (offset_units << 3) | u16::from(more);
    let mut header = vec![next, 0];
    header.extend_from_slice(&field.to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 1]);
    header.extend_from_slice(payload);
    header
}

/// TCP header (RFC 9293), 20 bytes.
pub fn tcp(sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut segment = Vec::with_capacity(20 + payload.len());
    segment.extend_from_slice(&sport.to_be_bytes());
    segment.extend_from_slice(&dport.to_be_bytes());
    segment.extend_from_slice(&1u32.to_be_bytes()); // seq
    segment.extend_from_slice(&1u32.to_be_bytes()); // ack
    segment.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    segment.extend_from_slice(payload);
    segment
}

/// UDP header (RFC 768).
pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(8 + payload.len());
    datagram.extend_from_slice(&sport.to_be_bytes());
    datagram.extend_from_slice(&dport.to_be_bytes());
    datagram.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    datagram
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_HOPOPTS: u8 = 0;

pub fn tcp4(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    ethernet(
        &[],
        ETH_IPV4,
        &ipv4(src, dst, IPPROTO_TCP, 0, &tcp(sport, dport, flags, payload)),
    )
}

pub fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(
        &[],
        ETH_IPV4,
        &ipv4(src, dst, IPPROTO_UDP, 0, &udp(sport, dport, payload)),
    )
}

/// An ARP request (RFC 826) for `target` from `sender`.
pub fn arp(sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut body = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
    body.extend_from_slice(&MAC_A);
    body.extend_from_slice(&sender.octets());
    body.extend_from_slice(&[0; 6]);
    body.extend_from_slice(&target.octets());
    ethernet(&[], ETH_ARP, &body)
}

/// Zero padding up to `len` bytes of payload.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

/// Whether the tests may touch the kernel: they need root (CAP_BPF, CAP_NET_ADMIN).
/// Outside CI a non-root run skips with a printed reason; in CI (CI=true) it fails,
/// so a misconfigured runner cannot turn the kernel tests into silent passes.
pub fn kernel_tests_allowed(test: &str) -> bool {
    xtask::testlab::require_root(test)
}
