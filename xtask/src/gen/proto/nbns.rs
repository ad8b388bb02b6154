//! NetBIOS Name Service messages (RFC 1002 §4.2) as a Windows B-node sends them on
//! its subnet: broadcast name registrations (§4.2.2) and name queries (§4.2.12), and
//! the owner's positive query response (§4.2.13). Names use the first-level encoding
//! (RFC 1001 §14.1): 15 characters padded with spaces, the suffix byte, each byte as
//! two letters 'A' + nibble.

use std::net::Ipv4Addr;

use super::{Pdu, Proto};

/// The name service port (RFC 1002 §4.2).
pub const PORT: u16 = 137;
/// NB record flags (RFC 1002 §4.2.1.3) as Windows sets them: H-node (ONT 3), and the
/// G bit for a group name.
const NB_FLAGS_UNIQUE: u16 = 0x6000;
const NB_FLAGS_GROUP: u16 = 0xe000;
/// Registration TTL Windows asks for: 300,000 s.
const TTL: u32 = 300_000;
const RTYPE_NB: u16 = 0x0020;
const CLASS_IN: u16 = 0x0001;

/// NetBIOS name suffixes (the 16th byte).
pub mod suffix {
    /// Workstation service (and a group's domain/workgroup name).
    pub const WORKSTATION: u8 = 0x00;
    /// File server service.
    pub const SERVER: u8 = 0x20;
}

/// The NetBIOS name of a host name: upper case, at most 15 characters.
pub fn netbios_name(host_name: &str) -> String {
    host_name.to_uppercase().chars().take(15).collect()
}

fn encoded_name(out: &mut Vec<u8>, name: &str, suffix: u8) {
    let mut raw = [b' '; 16];
    for (slot, byte) in raw.iter_mut().zip(name.bytes().take(15)) {
        *slot = byte;
    }
    raw[15] = suffix;
    out.push(32);
    for byte in raw {
        out.push(b'A' + (byte >> 4));
        out.push(b'A' + (byte & 0x0f));
    }
    out.push(0);
}

fn header(out: &mut Vec<u8>, id: u16, flags: u16, counts: [u16; 4]) {
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        out.extend_from_slice(&count.to_be_bytes());
    }
}

fn nb_rdata(out: &mut Vec<u8>, group: bool, address: Ipv4Addr) {
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&6u16.to_be_bytes());
    let flags = if group {
        NB_FLAGS_GROUP
    } else {
        NB_FLAGS_UNIQUE
    };
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&address.octets());
}

/// The truth entry of an NBNS message: `"<opcode>/<request|response>"`.
fn pdu(function: &'static str) -> Pdu {
    Pdu {
        proto: Proto::Nbns,
        function,
        counts_as_pdu: true,
    }
}

/// A broadcast name registration request (opcode 5, RD and B set): the question
/// names the name, an additional NB record (a pointer to it) holds the address.
pub fn registration(
    out: &mut Vec<u8>,
    id: u16,
    name: &str,
    suffix: u8,
    group: bool,
    address: Ipv4Addr,
) -> Pdu {
    header(out, id, 0x2910, [1, 0, 0, 1]);
    encoded_name(out, name, suffix);
    out.extend_from_slice(&RTYPE_NB.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&[0xc0, 0x0c]);
    out.extend_from_slice(&RTYPE_NB.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    nb_rdata(out, group, address);
    pdu("5/request")
}

/// A broadcast name query request (opcode 0, RD and B set).
pub fn query(out: &mut Vec<u8>, id: u16, name: &str, suffix: u8) -> Pdu {
    header(out, id, 0x0110, [1, 0, 0, 0]);
    encoded_name(out, name, suffix);
    out.extend_from_slice(&RTYPE_NB.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    pdu("0/request")
}

/// The owner's positive name query response (response, AA and RD set, rcode 0): one
/// NB answer with its unique name and address.
pub fn positive_response(
    out: &mut Vec<u8>,
    id: u16,
    name: &str,
    suffix: u8,
    address: Ipv4Addr,
) -> Pdu {
    header(out, id, 0x8500, [0, 1, 0, 0]);
    encoded_name(out, name, suffix);
    out.extend_from_slice(&RTYPE_NB.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    nb_rdata(out, false, address);
    pdu("0/response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::dns::rtype;
    use otsensor_wire::nbns::{nb_addresses, opcode, Nbns};

    const ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 10, 101);

    /// The sensor's view reads the names, the opcode and the NB address back; a
    /// group registration carries the G bit.
    #[test]
    fn the_sensor_reads_registrations_queries_and_answers() {
        let name = netbios_name("engineering-workstation-007");
        assert_eq!(name, "ENGINEERING-WOR");
        for (group, suffix) in [(false, suffix::WORKSTATION), (true, suffix::WORKSTATION)] {
            let mut out = Vec::new();
            let pdu = registration(&mut out, 7, "DESKTOP-042", suffix, group, ADDRESS);
            assert_eq!((pdu.proto, pdu.function), (Proto::Nbns, "5/request"));
            let nbns = Nbns::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(nbns.opcode(), opcode::REGISTRATION);
            assert!(!nbns.message.is_response());
            let (at, qtype) = nbns
                .message
                .questions()
                .next()
                .unwrap_or_else(|| panic!("no question"));
            assert_eq!(qtype, rtype::NB);
            let question = nbns.name_at(at).unwrap_or_else(|| panic!("no name"));
            assert_eq!(question.name(), b"DESKTOP-042");
            assert!(question.is_host_suffix());
            let record = nbns
                .message
                .records()
                .next()
                .unwrap_or_else(|| panic!("no record"));
            assert_eq!(record.rtype, rtype::NB);
            assert_eq!(nbns.name_at(record.name_at).map(|n| n.suffix), Some(suffix));
            let entry = nb_addresses(record.rdata)
                .next()
                .unwrap_or_else(|| panic!("no address"));
            assert_eq!((entry.address, entry.is_group()), (ADDRESS.octets(), group));
        }

        let mut out = Vec::new();
        assert_eq!(
            query(&mut out, 9, "HMI-PC", suffix::SERVER).function,
            "0/request"
        );
        let nbns = Nbns::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (nbns.opcode(), nbns.message.is_response()),
            (opcode::QUERY, false)
        );
        assert_eq!(nbns.message.records().count(), 0);

        let mut out = Vec::new();
        let pdu = positive_response(&mut out, 9, "HMI-PC", suffix::SERVER, ADDRESS);
        assert_eq!(pdu.function, "0/response");
        let nbns = Nbns::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert!(nbns.message.is_response());
        assert_eq!((nbns.opcode(), nbns.message.rcode()), (opcode::QUERY, 0));
        let record = nbns
            .message
            .records()
            .next()
            .unwrap_or_else(|| panic!("no answer"));
        let owner = nbns
            .name_at(record.name_at)
            .unwrap_or_else(|| panic!("name"));
        assert_eq!(
            (owner.name(), owner.suffix),
            (&b"HMI-PC"[..], suffix::SERVER)
        );
        assert_eq!(
            nb_addresses(record.rdata).next().map(|e| e.address),
            Some(ADDRESS.octets())
        );
    }
}
