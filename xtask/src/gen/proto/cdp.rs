//! Cisco Discovery Protocol v2 announcements as a Cisco switch sends them: the LLC
//! SNAP header (OUI 00:00:0c, PID 0x2000), then the CDP header (version, TTL,
//! checksum) and its TLVs (type, length counting the TLV header, value). Follows
//! Wireshark's `packet-cdp.c`, as the sensor's view (`otsensor_wire::cdp`) does.

use std::net::Ipv4Addr;

use otsensor_wire::cdp::tlv;

use super::{Pdu, Proto};

/// The CDP multicast address.
pub const MULTICAST_MAC: [u8; 6] = [0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc];
/// What a switch announces; its hold time is three announcement intervals.
pub const TTL_SECONDS: u8 = 180;

/// Capability bits: a switch that snoops IGMP (`cdp.capabilities.switch`, `.igmp_capable`).
const CAPABILITIES_SWITCH_IGMP: u32 = 0x08 | 0x20;

/// What one announcement says.
#[derive(Clone, Copy, Debug)]
pub struct Announcement<'a> {
    pub device_id: &'a str,
    pub software_version: &'a str,
    pub platform: &'a str,
    pub port_id: &'a str,
    /// The management address, when the switch has one.
    pub address: Option<Ipv4Addr>,
}

fn push_tlv(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16 + 4).to_be_bytes());
    out.extend_from_slice(value);
}

/// The RFC 1071 checksum CDP carries over its whole message.
fn checksum(message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in message.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Appends the LLC PDU of an announcement (DSAP/SSAP 0xAA, UI, SNAP, CDP) to `out`;
/// returns its truth entry (function key: the CDP version).
pub fn announcement(out: &mut Vec<u8>, announcement: &Announcement<'_>) -> Pdu {
    out.extend_from_slice(&[0xaa, 0xaa, 0x03, 0x00, 0x00, 0x0c, 0x20, 0x00]);
    let start = out.len();
    out.extend_from_slice(&[2, TTL_SECONDS, 0, 0]);
    push_tlv(out, tlv::DEVICE_ID, announcement.device_id.as_bytes());
    push_tlv(
        out,
        tlv::SOFTWARE_VERSION,
        announcement.software_version.as_bytes(),
    );
    push_tlv(out, tlv::PLATFORM, announcement.platform.as_bytes());
    if let Some(address) = announcement.address {
        // One address: NLPID protocol type 1, length 1, protocol 0xCC (IP), length 4.
        let mut value = Vec::with_capacity(13);
        value.extend_from_slice(&1u32.to_be_bytes());
        value.extend_from_slice(&[1, 1, 0xcc, 0, 4]);
        value.extend_from_slice(&address.octets());
        push_tlv(out, tlv::ADDRESSES, &value);
    }
    push_tlv(out, tlv::PORT_ID, announcement.port_id.as_bytes());
    push_tlv(
        out,
        tlv::CAPABILITIES,
        &CAPABILITIES_SWITCH_IGMP.to_be_bytes(),
    );
    let sum = checksum(&out[start..]);
    out[start + 2..start + 4].copy_from_slice(&sum.to_be_bytes());
    Pdu {
        proto: Proto::Cdp,
        function: "2",
        counts_as_pdu: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::cdp::{from_snap, Anomalies};

    fn parsed(address: Option<Ipv4Addr>) -> Vec<u8> {
        let mut out = Vec::new();
        let pdu = announcement(
            &mut out,
            &Announcement {
                device_id: "sw-cell-02",
                software_version: "Cisco IOS Software, IE-3400 Software, Version 17.9.4\nTechnical Support: http://www.cisco.com/techsupport",
                platform: "cisco IE-3400-8P2S",
                port_id: "GigabitEthernet1/2",
                address,
            },
        );
        assert_eq!((pdu.proto, pdu.function), (Proto::Cdp, "2"));
        out
    }

    /// The sensor's view reads every TLV back, with and without the Addresses TLV,
    /// and finds no anomaly; the checksum verifies.
    #[test]
    fn the_sensor_reads_the_announcement() {
        for address in [Some(Ipv4Addr::new(10, 10, 3, 11)), None] {
            let out = parsed(address);
            assert_eq!(out.get(..3), Some(&[0xaa, 0xaa, 0x03][..]));
            let cdp = from_snap(&out[3..]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!((cdp.version(), cdp.ttl()), (2, TTL_SECONDS));
            assert_eq!(cdp.device_id(), Some(&b"sw-cell-02"[..]));
            assert_eq!(cdp.platform(), Some(&b"cisco IE-3400-8P2S"[..]));
            assert_eq!(cdp.port_id(), Some(&b"GigabitEthernet1/2"[..]));
            assert!(cdp
                .software_version()
                .is_some_and(|v| v.starts_with(b"Cisco IOS Software, IE-3400")));
            assert_eq!(cdp.ipv4_address(), address.map(|a| a.octets()));
            assert_eq!(cdp.anomalies(), Anomalies::default());
            // Summing the message with its checksum gives all ones.
            assert_eq!(checksum(&out[8..]), 0);
        }
    }
}
