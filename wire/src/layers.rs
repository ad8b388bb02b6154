//! L2–L4 slicing: one frame of any supported link type into the addresses, ports and
//! payload the pipeline needs. Built on etherparse's lax slicer so that truncated or
//! odd frames still yield what is readable; nothing here allocates or panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};

/// A MAC address.
pub type Mac = [u8; 6];

/// The transport layer of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// No transport header (non-IP, fragment, or unparsable).
    None,
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: TcpFlags,
        seq: u32,
        ack: u32,
    },
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// Another IP protocol (ICMP, SCTP, ...), by number.
    Other {
        protocol: u8,
    },
}

/// TCP flags in wire order (FIN is bit 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;

    pub fn has(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// ARP sender and target, for inventory (IP-to-MAC bindings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub operation: u16,
    pub sender_mac: Option<Mac>,
    pub sender_ip: Option<Ipv4Addr>,
    pub target_ip: Option<Ipv4Addr>,
}

/// What went wrong while slicing, for counters; the frame is still passed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// A header was cut short (snap length or a lying length field).
    Truncated,
    /// A header was invalid (bad version, bad length).
    Malformed,
}

/// The IEEE 802.2 LLC header and payload of an 802.3 frame (a length, not an
/// ethertype, after the MAC addresses). Carries non-IP protocols such as BACnet
/// (ASHRAE 135 clause 7, SAP 0x82).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Llc<'a> {
    pub dsap: u8,
    pub ssap: u8,
    pub control: u16,
    /// The LLC information field, without Ethernet padding.
    pub payload: &'a [u8],
}

/// The largest 802.3 length field; larger values are ethertypes (IEEE 802.3 3.2.6).
const MAX_8023_LENGTH: u16 = 1500;

impl<'a> Llc<'a> {
    /// Parses the LLC PDU of an 802.3 frame: `length` is the frame's length field and
    /// `data` what follows it (possibly padded).
    fn parse(length: u16, data: &'a [u8]) -> Option<Llc<'a>> {
        let pdu = data.get(..usize::from(length)).unwrap_or(data);
        let (&dsap, &ssap, &first) = (pdu.first()?, pdu.get(1)?, pdu.get(2)?);
        // Unnumbered (U) format has a 1-byte control field, I and S formats 2 bytes
        // (IEEE 802.2 clause 5.2).
        let (control, payload_at) = if first & 0x03 == 0x03 {
            (u16::from(first), 3)
        } else {
            (u16::from_be_bytes([first, *pdu.get(3)?]), 4)
        };
        Some(Llc {
            dsap,
            ssap,
            control,
            payload: pdu.get(payload_at..)?,
        })
    }
}

/// The link-layer framing of a packet, from the capture's link type (DLT / LINKTYPE_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113): 16-byte Linux cooked header.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): 20-byte Linux cooked header v2.
    LinuxSll2,
    /// LINKTYPE_NULL (0): 4-byte address family in the capturing host's byte order.
    Null,
    /// LINKTYPE_LOOP (108): like NULL but the family is in network byte order.
    Loop,
    /// LINKTYPE_RAW (101), DLT_RAW (12/14), LINKTYPE_IPV4 (228), LINKTYPE_IPV6 (229).
    RawIp,
}

impl LinkType {
    /// Maps a pcap LINKTYPE number to a supported link type.
    pub fn from_linktype(value: i32) -> Option<LinkType> {
        Some(match value {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            _ => return None,
        })
    }
}

/// One frame, sliced. Borrowed from the packet; cheap to build.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub ts_ns: u64,
    pub wire_len: u32,
    pub src_mac: Option<Mac>,
    pub dst_mac: Option<Mac>,
    /// Outer and inner 802.1Q VLAN ids (QinQ), 0 when absent.
    pub vlan: [u16; 2],
    /// The innermost ethertype.
    pub ether_type: u16,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    /// The IP packet is a fragment (first or later); it is passed on unreassembled.
    pub fragment: bool,
    pub arp: Option<Arp>,
    pub transport: Transport,
    /// The transport payload (TCP/UDP data), or the L3 payload for other protocols.
    pub payload: &'a [u8],
    /// The LLC of an 802.3 frame (no IP).
    pub llc: Option<Llc<'a>>,
    pub anomaly: Option<Anomaly>,
}

impl<'a> Frame<'a> {
    fn empty(ts_ns: u64, wire_len: u32) -> Frame<'a> {
        Frame {
            ts_ns,
            wire_len,
            src_mac: None,
            dst_mac: None,
            vlan: [0; 2],
            ether_type: 0,
            src_ip: None,
            dst_ip: None,
            fragment: false,
            arp: None,
            transport: Transport::None,
            payload: &[],
            llc: None,
            anomaly: None,
        }
    }

    /// Source and destination ports for TCP and UDP.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.transport {
            Transport::Tcp {
                src_port, dst_port, ..
            }
            | Transport::Udp { src_port, dst_port } => Some((src_port, dst_port)),
            _ => None,
        }
    }

    /// IP protocol number of the transport (6 TCP, 17 UDP, ...), 0 when not IP.
    pub fn ip_protocol(&self) -> u8 {
        match self.transport {
            Transport::Tcp { .. } => 6,
            Transport::Udp { .. } => 17,
            Transport::Other { protocol } => protocol,
            Transport::None => 0,
        }
    }
}

/// Slices one captured frame: `data` as read with `link`'s framing, captured at
/// `ts_ns` (nanoseconds since the Unix epoch), `wire_len` bytes long on the wire. Never
/// fails: what cannot be read is left empty and flagged in `anomaly`.
pub fn slice(link: LinkType, data: &[u8], ts_ns: u64, wire_len: u32) -> Frame<'_> {
    if link == LinkType::Ethernet {
        if let Some(frame) = slice_ipv4_fast(data, ts_ns, wire_len) {
            return frame;
        }
    }
    slice_lax(link, data, ts_ns, wire_len)
}

/// Slices with etherparse's lax slicer (every link type, every case).
fn slice_lax(link: LinkType, data: &[u8], ts_ns: u64, wire_len: u32) -> Frame<'_> {
    let mut frame = Frame::empty(ts_ns, wire_len);
    let sliced = match link {
        LinkType::Ethernet => match LaxSlicedPacket::from_ethernet(data) {
            Ok(sliced) => sliced,
            Err(_) => {
                frame.anomaly = Some(Anomaly::Truncated);
                return frame;
            }
        },
        LinkType::LinuxSll => {
            // 16-byte header; protocol type (an ethertype for IP) at offset 14.
            let (Some(proto), Some(rest)) = (data.get(14..16), data.get(16..)) else {
                frame.anomaly = Some(Anomaly::Truncated);
                return frame;
            };
            frame.src_mac = sll_address(data.get(4..6), data.get(6..14));
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([proto[0], proto[1]])),
                rest,
            )
        }
        LinkType::LinuxSll2 => {
            // 20-byte header; protocol type at offset 0, address length at 11, address at 12.
            let (Some(proto), Some(rest)) = (data.get(0..2), data.get(20..)) else {
                frame.anomaly = Some(Anomaly::Truncated);
                return frame;
            };
            frame.src_mac = sll_address(data.get(10..12).map(|l| &l[1..]), data.get(12..20));
            LaxSlicedPacket::from_ether_type(
                EtherType(u16::from_be_bytes([proto[0], proto[1]])),
                rest,
            )
        }
        LinkType::Null | LinkType::Loop => {
            let (Some(family), Some(rest)) = (data.get(0..4), data.get(4..)) else {
                frame.anomaly = Some(Anomaly::Truncated);
                return frame;
            };
            let family = [family[0], family[1], family[2], family[3]];
            // DLT_NULL stores the family in the capturing host's byte order; accept both.
            let value = if link == LinkType::Loop {
                u32::from_be_bytes(family)
            } else {
                let le = u32::from_le_bytes(family);
                if le < 0x1_0000 {
                    le
                } else {
                    u32::from_be_bytes(family)
                }
            };
            let ether_type = match value {
                2 => EtherType::IPV4,
                // AF_INET6 differs per BSD: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS), 10 (Linux).
                10 | 24 | 28 | 30 => EtherType::IPV6,
                _ => {
                    frame.anomaly = Some(Anomaly::Malformed);
                    return frame;
                }
            };
            LaxSlicedPacket::from_ether_type(ether_type, rest)
        }
        LinkType::RawIp => match LaxSlicedPacket::from_ip(data) {
            Ok(sliced) => sliced,
            Err(_) => {
                frame.anomaly = Some(Anomaly::Malformed);
                return frame;
            }
        },
    };
    fill(&mut frame, &sliced);
    frame
}

/// The common case sliced by hand: Ethernet, up to two VLAN tags, a complete
/// unfragmented IPv4 packet (no AH) carrying a complete TCP or UDP header. Gives exactly
/// what the lax slicer gives for such frames (see the tests) at a fraction of its cost;
/// anything else (`None`) goes to the lax slicer.
fn slice_ipv4_fast(data: &[u8], ts_ns: u64, wire_len: u32) -> Option<Frame<'_>> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
    };
    let mut ether_type = be16(12)?;
    let mut at = 14;
    let mut vlan = [0u16; 2];
    for slot in &mut vlan {
        if !matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) {
            break;
        }
        *slot = be16(at)? & 0x0fff;
        ether_type = be16(at + 2)?;
        at += 4;
    }
    if ether_type != 0x0800 {
        return None;
    }
    let ip = data.get(at..)?;
    let (&version_ihl, header) = (ip.first()?, ip.get(..20)?);
    let header_len = usize::from(version_ihl & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if version_ihl >> 4 != 4 || header_len < 20 || total_len < header_len || total_len > ip.len() {
        return None;
    }
    // More-fragments flag or a fragment offset.
    if u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0 {
        return None;
    }
    let protocol = header[9];
    let l4 = &ip[header_len..total_len];
    let (transport, payload) = match protocol {
        6 => {
            let tcp = l4.get(..20)?;
            let tcp_len = usize::from(tcp[12] >> 4) * 4;
            if tcp_len < 20 || tcp_len > l4.len() {
                return None;
            }
            let word =
                |at: usize| u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
            (
                Transport::Tcp {
                    src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
                    dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
                    flags: TcpFlags(tcp[13] & 0x1f),
                    seq: word(4),
                    ack: word(8),
                },
                &l4[tcp_len..],
            )
        }
        17 => {
            let udp = l4.get(..8)?;
            let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
            // As the lax slicer: the length field when it is plausible, else the slice.
            let end = if udp_len < 8 || udp_len > l4.len() {
                l4.len()
            } else {
                udp_len
            };
            (
                Transport::Udp {
                    src_port: u16::from_be_bytes([udp[0], udp[1]]),
                    dst_port: u16::from_be_bytes([udp[2], udp[3]]),
                },
                &l4[8..end],
            )
        }
        _ => return None,
    };
    let mac = |at: usize| -> Option<Mac> { data.get(at..at + 6)?.try_into().ok() };
    let addr =
        |at: usize| Ipv4Addr::new(header[at], header[at + 1], header[at + 2], header[at + 3]);
    Some(Frame {
        ts_ns,
        wire_len,
        src_mac: mac(6),
        dst_mac: mac(0),
        vlan,
        ether_type,
        src_ip: Some(IpAddr::V4(addr(12))),
        dst_ip: Some(IpAddr::V4(addr(16))),
        fragment: false,
        arp: None,
        transport,
        payload,
        llc: None,
        anomaly: None,
    })
}

fn sll_address(len: Option<&[u8]>, addr: Option<&[u8]>) -> Option<Mac> {
    let len = *len?.last()?;
    let addr = addr?;
    if len != 6 {
        return None;
    }
    let mut mac = [0; 6];
    mac.copy_from_slice(addr.get(..6)?);
    Some(mac)
}

fn fill<'a>(frame: &mut Frame<'a>, sliced: &LaxSlicedPacket<'a>) {
    if let Some(LinkSlice::Ethernet2(eth)) = &sliced.link {
        frame.src_mac = Some(eth.source());
        frame.dst_mac = Some(eth.destination());
        frame.ether_type = eth.ether_type().0;
    }
    let mut vlans = 0;
    for ext in &sliced.link_exts {
        if let etherparse::LaxLinkExtSlice::Vlan(vlan) = ext {
            if vlans < 2 {
                frame.vlan[vlans] = vlan.vlan_identifier().value();
                vlans += 1;
            }
            frame.ether_type = vlan.ether_type().0;
        }
    }
    if let Some((err, _layer)) = &sliced.stop_err {
        frame.anomaly = Some(match err {
            etherparse::err::packet::SliceError::Len(_) => Anomaly::Truncated,
            _ => Anomaly::Malformed,
        });
    }
    if sliced.net.is_none() {
        if let Some(ether) = sliced.ether_payload() {
            if frame.ether_type <= MAX_8023_LENGTH {
                frame.llc = Llc::parse(frame.ether_type, ether.payload);
            } else {
                // A non-IP EtherType (GOOSE, PROFINET, LLDP): its payload as is.
                frame.payload = ether.payload;
            }
        }
    }
    match &sliced.net {
        Some(LaxNetSlice::Ipv4(ipv4)) => {
            let header = ipv4.header();
            frame.ether_type = EtherType::IPV4.0;
            frame.src_ip = Some(IpAddr::V4(header.source_addr()));
            frame.dst_ip = Some(IpAddr::V4(header.destination_addr()));
            let payload = ipv4.payload();
            frame.fragment = payload.fragmented;
            frame.payload = payload.payload;
            if frame.anomaly.is_none() && payload.incomplete {
                frame.anomaly = Some(Anomaly::Truncated);
            }
            frame.transport = Transport::Other {
                protocol: payload.ip_number.0,
            };
        }
        Some(LaxNetSlice::Ipv6(ipv6)) => {
            let header = ipv6.header();
            frame.ether_type = EtherType::IPV6.0;
            frame.src_ip = Some(IpAddr::V6(Ipv6Addr::from(header.source())));
            frame.dst_ip = Some(IpAddr::V6(Ipv6Addr::from(header.destination())));
            let payload = ipv6.payload();
            frame.fragment = payload.fragmented;
            frame.payload = payload.payload;
            if frame.anomaly.is_none() && payload.incomplete {
                frame.anomaly = Some(Anomaly::Truncated);
            }
            frame.transport = Transport::Other {
                protocol: payload.ip_number.0,
            };
        }
        Some(LaxNetSlice::Arp(arp)) => {
            frame.ether_type = EtherType::ARP.0;
            let ipv4 = |bytes: &[u8]| -> Option<Ipv4Addr> {
                let octets: [u8; 4] = bytes.try_into().ok()?;
                Some(Ipv4Addr::from(octets))
            };
            let mac = |bytes: &[u8]| -> Option<Mac> { bytes.try_into().ok() };
            frame.arp = Some(Arp {
                operation: arp.operation().0,
                sender_mac: mac(arp.sender_hw_addr()),
                sender_ip: ipv4(arp.sender_protocol_addr()),
                target_ip: ipv4(arp.target_protocol_addr()),
            });
        }
        None => {}
    }
    match &sliced.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let mut flags = 0;
            for (set, bit) in [
                (tcp.fin(), TcpFlags::FIN),
                (tcp.syn(), TcpFlags::SYN),
                (tcp.rst(), TcpFlags::RST),
                (tcp.psh(), TcpFlags::PSH),
                (tcp.ack(), TcpFlags::ACK),
            ] {
                if set {
                    flags |= bit;
                }
            }
            frame.transport = Transport::Tcp {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                flags: TcpFlags(flags),
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
            };
            frame.payload = tcp.payload();
        }
        Some(TransportSlice::Udp(udp)) => {
            frame.transport = Transport::Udp {
                src_port: udp.source_port(),
                dst_port: udp.destination_port(),
            };
            frame.payload = udp.payload();
        }
        _ => {}
    }
}

/// True for addresses that name one host (not multicast, broadcast or unspecified).
pub fn is_unicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
}

/// True for a MAC address that names one interface (group bit clear, not all zero).
pub fn is_unicast_mac(mac: &Mac) -> bool {
    mac[0] & 1 == 0 && *mac != [0; 6]
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An 802.3 frame: broadcast destination, a source MAC, length 11, LLC
    /// 0x82/0x82/UI, a BACnet Who-Is NPDU (clause 7), and Ethernet padding.
    fn bacnet_llc_frame() -> Vec<u8> {
        let mut data = vec![0xff; 6];
        data.extend_from_slice(&[0x00, 0x40, 0xae, 0x00, 0x00, 0x01]);
        data.extend_from_slice(&[0x00, 0x0b, 0x82, 0x82, 0x03]);
        data.extend_from_slice(&[0x01, 0x20, 0xff, 0xff, 0x00, 0xff, 0x10, 0x08]);
        data.resize(60, 0);
        data
    }

    #[test]
    fn llc_of_an_8023_frame_without_padding() {
        let data = bacnet_llc_frame();
        let frame = slice(LinkType::Ethernet, &data, 1, 60);
        assert_eq!(frame.src_ip, None);
        assert_eq!(
            frame.llc,
            Some(Llc {
                dsap: 0x82,
                ssap: 0x82,
                control: 0x03,
                payload: &[0x01, 0x20, 0xff, 0xff, 0x00, 0xff, 0x10, 0x08],
            })
        );
    }

    /// Ethernet, a VLAN tag, IPv4 and TCP with payload, then UDP.
    fn ipv4_frames() -> Vec<Vec<u8>> {
        let mut tcp = vec![
            0x00, 0x1b, 0x1b, 0x00, 0x00, 0x02, 0x00, 0x0c, 0x29, 0x00, 0x00, 0x01,
        ];
        tcp.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a, 0x08, 0x00]);
        tcp.extend_from_slice(&[0x45, 0, 0, 52, 0, 1, 0x40, 0, 64, 6, 0, 0]);
        tcp.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        tcp.extend_from_slice(&[
            0xc0, 0x01, 0x01, 0xf6, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x18, 0x20, 0, 0, 0, 0, 0,
        ]);
        tcp.extend_from_slice(&[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10]);
        let mut udp = vec![0xff; 6];
        udp.extend_from_slice(&[0x00, 0x0c, 0x29, 0x00, 0x00, 0x01, 0x08, 0x00]);
        udp.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0, 64, 17, 0, 0]);
        udp.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 255]);
        udp.extend_from_slice(&[0xba, 0xc0, 0xba, 0xc0, 0, 20, 0, 0]);
        udp.extend_from_slice(&[
            0x81, 0x0b, 0x00, 0x0c, 0x01, 0x20, 0xff, 0xff, 0x00, 0xff, 0x10, 0x08,
        ]);
        udp.resize(60, 0);
        vec![tcp, udp]
    }

    /// The hand-written IPv4 path gives exactly what the lax slicer gives, on valid
    /// frames and on thousands of mutations of them (lengths, flags, versions, cuts).
    #[test]
    fn fast_ipv4_path_agrees_with_the_lax_slicer() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut fast = 0;
        for base in ipv4_frames() {
            for round in 0..20_000 {
                let mut data = base.clone();
                if round > 0 {
                    for _ in 0..1 + next() % 3 {
                        let at = (next() as usize) % data.len();
                        data[at] = next() as u8;
                    }
                    if next() % 4 == 0 {
                        data.truncate((next() as usize) % (data.len() + 1));
                    }
                }
                if let Some(frame) = slice_ipv4_fast(&data, 7, 99) {
                    fast += 1;
                    assert_eq!(
                        format!("{frame:?}"),
                        format!("{:?}", slice_lax(LinkType::Ethernet, &data, 7, 99)),
                        "{data:02x?}"
                    );
                }
            }
        }
        assert!(fast > 10_000, "the fast path took only {fast} frames");
    }

    #[test]
    fn payload_of_a_non_ip_ethertype_behind_a_vlan_tag() {
        // goose-demo-single.pcap #1, cut after the GOOSE header: VLAN 10, EtherType
        // 0x88B8, APPID 0x2000.
        let mut data = vec![0x01, 0x0c, 0xcd, 0x01, 0x00, 0x01];
        data.extend_from_slice(&[0x00, 0x17, 0xa4, 0xdd, 0x98, 0x1e]);
        data.extend_from_slice(&[0x81, 0x00, 0x80, 0x0a, 0x88, 0xb8]);
        data.extend_from_slice(&[0x20, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00]);
        let frame = slice(LinkType::Ethernet, &data, 1, data.len() as u32);
        assert_eq!(frame.ether_type, 0x88B8);
        assert_eq!(frame.vlan[0], 10);
        assert_eq!(frame.src_ip, None);
        assert_eq!(frame.llc, None);
        assert_eq!(frame.payload, &data[18..]);
    }

    #[test]
    fn no_llc_for_ethertype_frames_or_short_llc() {
        let mut data = bacnet_llc_frame();
        // ARP's ethertype: not a length.
        data[12] = 0x08;
        data[13] = 0x06;
        assert_eq!(slice(LinkType::Ethernet, &data, 1, 60).llc, None);
        // Length 2: DSAP and SSAP without a control field.
        assert_eq!(Llc::parse(2, &[0x82, 0x82, 0x03]), None);
        // I-format control (2 bytes).
        let llc = Llc::parse(5, &[0x42, 0x42, 0x00, 0x01, 0x99]).unwrap();
        assert_eq!((llc.control, llc.payload), (0x0001, &[0x99][..]));
    }
}
