//! Frames as the generator plans them, and their encoding with etherparse's packet
//! builder (which fills lengths and the IPv4, TCP and UDP checksums).

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{
    ArpHardwareId, ArpOperation, ArpPacket, EtherType, IpHeaders, IpNumber, Ipv4Header, Ipv6Header,
    PacketBuilder, PacketBuilderStep, TcpOptionElement, VlanId,
};

pub type Mac = [u8; 6];

pub const BROADCAST_MAC: Mac = [0xff; 6];
/// The LLDP nearest-bridge group address (IEEE 802.1AB).
const LLDP_MAC: Mac = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
const ETHERTYPE_LLDP: u16 = 0x88cc;
/// Ethernet frames shorter than this (without FCS) are padded on the wire.
const MIN_FRAME: usize = 60;

/// TCP flag bits (RFC 9293, section 3.1).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Link-layer addressing of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2 {
    pub src: Mac,
    pub dst: Mac,
    /// 802.1Q VLAN id; 0 is untagged.
    pub vlan: u16,
}

#[derive(Clone, Debug)]
pub enum Net {
    Tcp {
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        window: u16,
        /// Announce an MSS option (SYN and SYN-ACK).
        mss: bool,
        payload: Vec<u8>,
    },
    Udp {
        src: IpAddr,
        dst: IpAddr,
        sport: u16,
        dport: u16,
        payload: Vec<u8>,
    },
    Arp {
        operation: u16,
        sender_mac: Mac,
        sender_ip: Ipv4Addr,
        target_mac: Mac,
        target_ip: Ipv4Addr,
    },
    /// An LLDP advertisement (chassis id = the sender's MAC): a layer-2-only frame,
    /// with the system name and description when given.
    Lldp {
        port: u16,
        system: Option<(String, String)>,
    },
    /// An IEEE 802.3 frame (untagged): the length field counts `payload`, the LLC
    /// header and its data (CDP over SNAP).
    Llc { payload: Vec<u8> },
    /// A frame of an industrial protocol carried directly in an EtherType (GOOSE):
    /// `payload` follows the EtherType (and the VLAN tag, if any).
    EtherType { ether_type: u16, payload: Vec<u8> },
}

#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub l2: L2,
    pub net: Net,
}

use anyhow::{anyhow, Error};

fn encode_err<E: std::fmt::Debug>(e: E) -> Error {
    anyhow!("cannot encode frame: {e:?}")
}

/// Encodes `spec` into `out` (cleared first). `ip_id` is the IPv4 identification to use.
pub fn encode(spec: &FrameSpec, ip_id: u16, out: &mut Vec<u8>) -> Result<(), Error> {
    out.clear();
    let l2 = spec.l2;
    match &spec.net {
        Net::Tcp {
            src,
            dst,
            sport,
            dport,
            seq,
            ack,
            flags,
            window,
            mss,
            payload,
        } => {
            let ip = ip_headers(*src, *dst, ip_id, etherparse::ip_number::TCP)?;
            let mut builder = ip_step(l2, ip)?.tcp(*sport, *dport, *seq, *window);
            if flags & tcp_flags::SYN != 0 {
                builder = builder.syn();
            }
            if flags & tcp_flags::FIN != 0 {
                builder = builder.fin();
            }
            if flags & tcp_flags::RST != 0 {
                builder = builder.rst();
            }
            if flags & tcp_flags::PSH != 0 {
                builder = builder.psh();
            }
            if flags & tcp_flags::ACK != 0 {
                builder = builder.ack(*ack);
            }
            if *mss {
                let mss_value = if src.is_ipv4() { 1460 } else { 1440 };
                builder = builder
                    .options(&[TcpOptionElement::MaximumSegmentSize(mss_value)])
                    .map_err(encode_err)?;
            }
            builder.write(out, payload).map_err(encode_err)?;
        }
        Net::Udp {
            src,
            dst,
            sport,
            dport,
            payload,
        } => {
            let ip = ip_headers(*src, *dst, ip_id, etherparse::ip_number::UDP)?;
            ip_step(l2, ip)?
                .udp(*sport, *dport)
                .write(out, payload)
                .map_err(encode_err)?;
        }
        Net::Arp {
            operation,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        } => {
            let arp = ArpPacket::new(
                ArpHardwareId::ETHERNET,
                EtherType::IPV4,
                ArpOperation(*operation),
                sender_mac,
                &sender_ip.octets(),
                target_mac,
                &target_ip.octets(),
            )
            .map_err(encode_err)?;
            let step = PacketBuilder::ethernet2(l2.src, l2.dst);
            if l2.vlan != 0 {
                step.single_vlan(vlan_id(l2.vlan)?)
                    .arp(arp)
                    .write(out)
                    .map_err(encode_err)?;
            } else {
                step.arp(arp).write(out).map_err(encode_err)?;
            }
        }
        Net::Lldp { port, system } => lldp(l2.src, *port, system.as_ref(), out),
        Net::Llc { payload } => {
            out.extend_from_slice(&l2.dst);
            out.extend_from_slice(&l2.src);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            out.extend_from_slice(payload);
        }
        Net::EtherType {
            ether_type,
            payload,
        } => {
            out.extend_from_slice(&l2.dst);
            out.extend_from_slice(&l2.src);
            if l2.vlan != 0 {
                // 802.1Q, priority 4 (IEC 61850-8-1 §C.2.2 default for GOOSE).
                out.extend_from_slice(&0x8100u16.to_be_bytes());
                out.extend_from_slice(&((4u16 << 13) | (l2.vlan & 0x0fff)).to_be_bytes());
            }
            out.extend_from_slice(&ether_type.to_be_bytes());
            out.extend_from_slice(payload);
        }
    }
    if out.len() < MIN_FRAME {
        out.resize(MIN_FRAME, 0);
    }
    Ok(())
}

fn vlan_id(vlan: u16) -> Result<VlanId, Error> {
    VlanId::try_new(vlan).map_err(encode_err)
}

fn ip_headers(
    src: IpAddr,
    dst: IpAddr,
    ip_id: u16,
    protocol: IpNumber,
) -> Result<IpHeaders, Error> {
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut header =
                Ipv4Header::new(0, 64, protocol, src.octets(), dst.octets()).map_err(encode_err)?;
            header.identification = ip_id;
            header.dont_fragment = true;
            Ok(IpHeaders::Ipv4(header, Default::default()))
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => Ok(IpHeaders::Ipv6(
            Ipv6Header {
                hop_limit: 64,
                source: src.octets(),
                destination: dst.octets(),
                next_header: protocol,
                ..Default::default()
            },
            Default::default(),
        )),
        _ => Err(anyhow!("mixed address families {src} -> {dst}")),
    }
}

fn ip_step(l2: L2, ip: IpHeaders) -> Result<PacketBuilderStep<IpHeaders>, Error> {
    let step = PacketBuilder::ethernet2(l2.src, l2.dst);
    Ok(if l2.vlan != 0 {
        step.single_vlan(vlan_id(l2.vlan)?).ip(ip)
    } else {
        step.ip(ip)
    })
}

/// An LLDPDU with the mandatory TLVs (IEEE 802.1AB-2016, 8.5): chassis id (subtype 4,
/// MAC address), port id (subtype 7, locally assigned), TTL; then System Name (8.5.6)
/// and System Description (8.5.7) when given; and End.
fn lldp(src: Mac, port: u16, system: Option<&(String, String)>, out: &mut Vec<u8>) {
    fn tlv(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
        let header = (kind << 9) | (value.len() as u16 & 0x1ff);
        out.extend_from_slice(&header.to_be_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&LLDP_MAC);
    out.extend_from_slice(&src);
    out.extend_from_slice(&ETHERTYPE_LLDP.to_be_bytes());
    let mut chassis = [0u8; 7];
    chassis[0] = 4;
    chassis[1..].copy_from_slice(&src);
    tlv(out, 1, &chassis);
    let port_name = format!("port-{port}");
    let mut port_id = Vec::with_capacity(port_name.len() + 1);
    port_id.push(7);
    port_id.extend_from_slice(port_name.as_bytes());
    tlv(out, 2, &port_id);
    tlv(out, 3, &120u16.to_be_bytes());
    if let Some((name, description)) = system {
        tlv(out, 5, name.as_bytes());
        tlv(out, 6, description.as_bytes());
    }
    tlv(out, 0, &[]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    #[test]
    fn tcp_frame_round_trips_with_valid_checksum_and_vlan() {
        let spec = FrameSpec {
            l2: L2 {
                src: [0, 0x1b, 0x1b, 1, 2, 3],
                dst: [0, 0x00, 0xbc, 4, 5, 6],
                vlan: 110,
            },
            net: Net::Tcp {
                src: "10.20.0.5"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                dst: "10.20.0.9"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                sport: 50_000,
                dport: 502,
                seq: 1000,
                ack: 2000,
                flags: tcp_flags::PSH | tcp_flags::ACK,
                window: 8192,
                mss: false,
                payload: vec![0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10],
            },
        };
        let mut out = Vec::new();
        assert!(encode(&spec, 7, &mut out).is_ok());
        let sliced = SlicedPacket::from_ethernet(&out);
        assert!(sliced.is_ok());
        let Ok(sliced) = sliced else { return };
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().identification(), 7);
        let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
            panic!("not tcp")
        };
        assert_eq!((tcp.source_port(), tcp.destination_port()), (50_000, 502));
        assert_eq!(tcp.sequence_number(), 1000);
        assert_eq!(tcp.acknowledgment_number(), 2000);
        assert_eq!(tcp.payload(), &[0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 10]);
        let expected = tcp
            .to_header()
            .calc_checksum_ipv4(&ip.header().to_header(), tcp.payload());
        assert_eq!(expected.ok(), Some(tcp.checksum()));
    }

    #[test]
    fn short_frames_are_padded_to_ethernet_minimum() {
        let spec = FrameSpec {
            l2: L2 {
                src: [0, 0x80, 0x63, 0, 0, 1],
                dst: LLDP_MAC,
                vlan: 0,
            },
            net: Net::Lldp {
                port: 3,
                system: None,
            },
        };
        let mut out = Vec::new();
        assert!(encode(&spec, 0, &mut out).is_ok());
        assert_eq!(out.len(), MIN_FRAME);
        assert_eq!(out.get(12..14), Some(&[0x88, 0xcc][..]));
    }
}
