//! NetBIOS Name Service (RFC 1001/1002, UDP 137): the DNS-format message view
//! ([`crate::dns`]) plus NetBIOS names (first-level encoding, RFC 1001 §14.1), the
//! opcodes and the NB / NBSTAT record data a host announces its names with.
//!
//! Follows RFC 1002 §4.2. Every read is bounds-checked: **no accessor can panic**.

use crate::dns::Message;

pub use crate::dns::Error;

/// The name service port (RFC 1002 §4.2).
pub const PORT: u16 = 137;
/// An encoded NetBIOS name: 16 bytes, each as two letters 'A'..='P'.
pub const ENCODED_NAME_LEN: usize = 32;

/// Opcodes (RFC 1002 §4.2.1.1; `nbns.flags.opcode`).
pub mod opcode {
    pub const QUERY: u8 = 0;
    pub const REGISTRATION: u8 = 5;
    pub const RELEASE: u8 = 6;
    pub const WACK: u8 = 7;
    pub const REFRESH: u8 = 8;
    /// Multi-homed registration (RFC 1002 errata; Windows uses 0xF).
    pub const MULTIHOMED_REGISTRATION: u8 = 15;
}

/// A decoded NetBIOS name: up to 15 characters (trailing spaces trimmed) and the
/// suffix byte (0x00 workstation, 0x20 file server, 0x1C domain controllers, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetbiosName {
    bytes: [u8; 15],
    len: u8,
    pub suffix: u8,
}

impl NetbiosName {
    /// Decodes the 32-letter first-level encoding; `None` for any other length or a
    /// letter outside 'A'..='P'.
    pub fn decode(encoded: &[u8]) -> Option<NetbiosName> {
        if encoded.len() != ENCODED_NAME_LEN {
            return None;
        }
        let mut raw = [0u8; 16];
        for (slot, pair) in raw.iter_mut().zip(encoded.chunks_exact(2)) {
            let (hi, lo) = (pair[0].wrapping_sub(b'A'), pair[1].wrapping_sub(b'A'));
            if hi > 15 || lo > 15 {
                return None;
            }
            *slot = (hi << 4) | lo;
        }
        Some(Self::from_raw(&raw))
    }

    /// From the 16 raw bytes (NBSTAT answers carry names unencoded).
    pub fn from_raw(raw: &[u8; 16]) -> NetbiosName {
        let mut bytes = [0u8; 15];
        bytes.copy_from_slice(&raw[..15]);
        let len = bytes
            .iter()
            .rposition(|&b| b != b' ' && b != 0)
            .map_or(0, |i| i + 1);
        NetbiosName {
            bytes,
            len: len as u8,
            suffix: raw[15],
        }
    }

    pub fn name(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// A name that identifies one host: the workstation (0x00) or server (0x20)
    /// service, not a browse or domain name (those begin with 0x01 or '_').
    pub fn is_host_suffix(&self) -> bool {
        matches!(self.suffix, 0x00 | 0x20) && self.bytes[0] > b' '
    }
}

/// One NB record data entry (RFC 1002 §4.2.1.3): flags (G bit = group name) and the
/// IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NbAddress {
    pub flags: u16,
    pub address: [u8; 4],
}

impl NbAddress {
    pub const GROUP: u16 = 0x8000;

    pub fn is_group(&self) -> bool {
        self.flags & Self::GROUP != 0
    }
}

/// The entries of an NB record's data.
pub fn nb_addresses(rdata: &[u8]) -> impl Iterator<Item = NbAddress> + '_ {
    rdata.chunks_exact(6).map(|entry| NbAddress {
        flags: u16::from_be_bytes([entry[0], entry[1]]),
        address: [entry[2], entry[3], entry[4], entry[5]],
    })
}

/// The names of an NBSTAT (node status) answer (RFC 1002 §4.2.18): (name, flags).
pub fn nbstat_names(rdata: &[u8]) -> impl Iterator<Item = (NetbiosName, u16)> + '_ {
    let count = rdata.first().map_or(0, |&n| usize::from(n));
    rdata
        .get(1..)
        .unwrap_or(&[])
        .chunks_exact(18)
        .take(count)
        .map(|entry| {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(&entry[..16]);
            (
                NetbiosName::from_raw(&raw),
                u16::from_be_bytes([entry[16], entry[17]]),
            )
        })
}

/// One NBNS message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Nbns<'a> {
    pub message: Message<'a>,
}

impl<'a> Nbns<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Nbns<'a>, Error> {
        Ok(Nbns {
            message: Message::new_checked(buf)?,
        })
    }

    /// `nbns.flags.opcode`
    pub fn opcode(&self) -> u8 {
        self.message.opcode()
    }

    /// The NetBIOS name at a name offset (question or record owner).
    pub fn name_at(&self, at: usize) -> Option<NetbiosName> {
        NetbiosName::decode(self.message.first_label(at)?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::rtype;
    use crate::test_capture::hex;

    /// profinet-mixed-rt-dcp-ptcp-cm-errors.pcap frame 120 (UDP payload): a name
    /// registration of "KW-VLIPC<00>" by 192.168.1.1 (question, then an NB additional
    /// record with flags 0x6000 and the address).
    pub(crate) const KW_VLIPC_REGISTRATION: &str =
        "92f92910000100000000000120454c4648434e4647454d454a46414544434143\
     414341434143414341434141410000200001c00c00200001000493e000066000\
     c0a80101";

    /// The same capture's frame 122: the registration of the group name
    /// "WORKGROUP<00>" (NB flags 0xe000: G bit set).
    pub(crate) const WORKGROUP_REGISTRATION: &str =
        "92fa2910000100000000000120464845504643454c4548464345504646464143\
     414341434143414341434141410000200001c00c00200001000493e00006e000\
     c0a80101";

    #[test]
    fn registration_names_and_address() {
        let buf = hex(KW_VLIPC_REGISTRATION);
        let nbns = Nbns::new_checked(&buf).unwrap();
        assert_eq!(nbns.opcode(), opcode::REGISTRATION);
        assert!(!nbns.message.is_response());
        let (name_at, qtype) = nbns.message.questions().next().unwrap();
        assert_eq!(qtype, rtype::NB);
        let name = nbns.name_at(name_at).unwrap();
        assert_eq!(name.name(), b"KW-VLIPC");
        assert!(name.is_host_suffix());
        let record = nbns.message.records().next().unwrap();
        assert_eq!(record.rtype, rtype::NB);
        let entry = nb_addresses(record.rdata).next().unwrap();
        assert_eq!(entry.address, [192, 168, 1, 1]);
        assert!(!entry.is_group());
        let buf = hex(WORKGROUP_REGISTRATION);
        let nbns = Nbns::new_checked(&buf).unwrap();
        let record = nbns.message.records().next().unwrap();
        assert!(nb_addresses(record.rdata).all(|e| e.is_group()));
    }

    #[test]
    fn encoding_errors_and_nbstat() {
        assert_eq!(NetbiosName::decode(b"EB"), None);
        assert_eq!(NetbiosName::decode(&[b'Z'; 32]), None);
        let mut rdata = vec![1u8];
        rdata.extend_from_slice(b"PLC01          \x00");
        rdata.extend_from_slice(&[0x04, 0x00]);
        let (name, flags) = nbstat_names(&rdata).next().unwrap();
        assert_eq!(
            (name.name(), name.suffix, flags),
            (&b"PLC01"[..], 0, 0x0400)
        );
        // Count larger than the entries present: only whole entries.
        assert_eq!(nbstat_names(&[5, 1, 2]).count(), 0);
    }
}
