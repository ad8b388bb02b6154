//! Multicast DNS (RFC 6762, UDP 5353) and DNS-SD (RFC 6763): the DNS message view
//! ([`crate::dns`]) plus the pieces a device names itself with: host names (A/AAAA
//! owner names, SRV targets), service instance names (PTR data) and TXT keys such as
//! `md=` (the model, used by many device vendors' DNS-SD records).
//!
//! Everything here is a bounds-checked read of the checked [`Message`]: **no accessor
//! can panic**.

use crate::dns::{Message, Record};

pub use crate::dns::Error;

/// The mDNS port (RFC 6762 §3).
pub const PORT: u16 = 5353;

/// One mDNS message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mdns<'a> {
    pub message: Message<'a>,
}

impl<'a> Mdns<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Mdns<'a>, Error> {
        Ok(Mdns {
            message: Message::new_checked(buf)?,
        })
    }

    /// A response (QR set): what a device announces about itself.
    pub fn is_response(&self) -> bool {
        self.message.is_response()
    }
}

/// Whether a name is a DNS-SD service or meta name (a label starting with '_'), not
/// a host name.
pub fn is_service_name(name: &[u8]) -> bool {
    name.split(|&b| b == b'.')
        .any(|label| label.first() == Some(&b'_'))
}

/// The offset of an SRV record's target name (priority, weight, port come first; RFC
/// 2782).
pub fn srv_target_at(record: &Record<'_>) -> Option<usize> {
    (record.rdata.len() > 6).then_some(record.rdata_at + 6)
}

/// The value of `key=` in a TXT record's strings (RFC 6763 §6.3: keys are
/// case-insensitive), e.g. `md` for the model.
pub fn txt_value<'a>(rdata: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut rest = rdata;
    while let Some((&len, after)) = rest.split_first() {
        let entry = after.get(..usize::from(len))?;
        rest = &after[entry.len()..];
        if let Some(eq) = entry.iter().position(|&b| b == b'=') {
            if entry[..eq].eq_ignore_ascii_case(key) {
                return Some(&entry[eq + 1..]);
            }
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::dns::rtype;
    use crate::test_capture::hex;

    /// opcua-open62541-discovery.pcap frame 1, the UDP payload: an open62541 LDS
    /// announcing host "Maui-16714" (ten A records over five addresses) and its
    /// `_opcua-tcp` service instance by PTR.
    pub(crate) const OPCUA_LDS_RESPONSE: &str =
        "000084000000000c000000000a4d6175692d3136373134000001000100000258\
     00040a0160250e4c44532d4d6175692d31363731340a5f6f706375612d746370\
     045f746370056c6f63616c00000100010000025800040a016025c00c00010001\
     000002580004c0a86b01c02600010001000002580004c0a86b01c00c00010001\
     000002580004ac106101c02600010001000002580004ac106101c00c00010001\
     000002580004c0a8e069c02600010001000002580004c0a8e069c00c00010001\
     0000025800047f000001c026000100010000025800047f000001c035000c0001\
     000002580002c026095f7365727669636573075f646e732d7364045f756470c0\
     45000c0001000002580002c035";

    #[test]
    fn records_and_names_of_a_real_response() {
        let buf = hex(OPCUA_LDS_RESPONSE);
        let mdns = Mdns::new_checked(&buf).unwrap();
        assert!(mdns.is_response());
        let records: Vec<_> = mdns.message.records().collect();
        assert_eq!(records.len(), 12);
        assert!(mdns.message.records().complete() || records.len() == 12);
        let mut out = [0u8; 96];
        let first = mdns
            .message
            .name_into(records[0].name_at, &mut out)
            .unwrap();
        assert_eq!(first, b"Maui-16714");
        assert_eq!(records[0].rtype, rtype::A);
        assert_eq!(records[0].rdata, &[10, 1, 96, 37]);
        let ptr = records[10];
        assert_eq!(ptr.rtype, rtype::PTR);
        let target = mdns.message.name_into(ptr.rdata_at, &mut out).unwrap();
        assert_eq!(target, b"LDS-Maui-16714._opcua-tcp._tcp.local");
        assert!(is_service_name(target));
        assert!(!is_service_name(b"Maui-16714"));
    }

    #[test]
    fn txt_keys() {
        let rdata = b"\x07md=S7-1\x05fn=ab\x03bad\x08MD=other";
        assert_eq!(txt_value(rdata, b"md"), Some(&b"S7-1"[..]));
        assert_eq!(txt_value(rdata, b"fn"), Some(&b"ab"[..]));
        assert_eq!(txt_value(rdata, b"zz"), None);
        // A length past the end stops the walk.
        assert_eq!(txt_value(b"\x09md=x", b"md"), None);
    }
}
