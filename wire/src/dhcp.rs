//! DHCP (and BOOTP) messages on UDP 67/68, as zero-copy views: the fixed BOOTP header
//! and the options a device names itself with.
//!
//! Follows RFC 2131 §2 (message format), RFC 2132 (options: 12 Host Name, 53 DHCP
//! Message Type, 55 Parameter Request List, 60 Vendor Class Identifier) and RFC 4702
//! (81 Client FQDN). Field names follow Wireshark's `dhcp.*`.
//!
//! [`Dhcp::new_checked`] validates that the fixed header is present; after it succeeds
//! **no accessor can panic**. Options are walked with bounds checks: an option whose
//! length runs past the buffer ends the walk and is flagged ([`Anomalies`]). A BOOTP
//! message without the magic cookie has no options (`has_magic_cookie` is false).

/// The BOOTP server and client ports (RFC 2131 §4.1).
pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
/// sname, file.
pub const HEADER_LEN: usize = 236;
/// RFC 2131 §3: the options field starts with 99.130.83.99.
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

mod field {
    use std::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const XID: Range<usize> = 4..8;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const CHADDR: Range<usize> = 28..44;
    pub const COOKIE: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// Option codes (RFC 2132 §3.14, §9.6, §9.8, §9.13; RFC 4702).
pub mod option {
    pub const PAD: u8 = 0;
    pub const HOST_NAME: u8 = 12;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const VENDOR_CLASS_ID: u8 = 60;
    pub const CLIENT_FQDN: u8 = 81;
    pub const END: u8 = 255;
}

/// Why a buffer is not a BOOTP/DHCP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("op {0} is neither BOOTREQUEST (1) nor BOOTREPLY (2)")]
    BadOp(u8),
}

wire_enum! {
    /// DHCP message type, option 53 (RFC 2132 §9.6, RFC 4388 for 10-13).
    pub enum MessageType {
        Discover = 1 => "Discover",
        Offer = 2 => "Offer",
        Request = 3 => "Request",
        Decline = 4 => "Decline",
        Ack = 5 => "ACK",
        Nak = 6 => "NAK",
        Release = 7 => "Release",
        Inform = 8 => "Inform",
    }
}

/// Spec violations that still parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u8);

impl Anomalies {
    /// An option's length runs past the end of the message.
    pub const OPTION_OVERRUN: u8 = 1 << 0;
    /// The options end without an End option (255).
    pub const NO_END: u8 = 1 << 1;

    pub fn contains(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// One BOOTP/DHCP message (the UDP payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dhcp<'a> {
    buf: &'a [u8],
}

impl<'a> Dhcp<'a> {
    /// Checks that the fixed header is there and `op` is a request or reply.
    pub fn new_checked(buf: &'a [u8]) -> Result<Dhcp<'a>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        match buf[field::OP] {
            1 | 2 => Ok(Dhcp { buf }),
            other => Err(Error::BadOp(other)),
        }
    }

    /// `dhcp.type`: 1 BOOTREQUEST, 2 BOOTREPLY.
    pub fn op(&self) -> u8 {
        self.buf[field::OP]
    }

    pub fn is_reply(&self) -> bool {
        self.op() == 2
    }

    /// `dhcp.id`
    pub fn xid(&self) -> u32 {
        let x = &self.buf[field::XID];
        u32::from_be_bytes([x[0], x[1], x[2], x[3]])
    }

    /// `dhcp.ip.client`: the client's address when it has one (renewing, informing).
    pub fn ciaddr(&self) -> [u8; 4] {
        let x = &self.buf[field::CIADDR];
        [x[0], x[1], x[2], x[3]]
    }

    /// `dhcp.ip.your`: the address the server assigns.
    pub fn yiaddr(&self) -> [u8; 4] {
        let x = &self.buf[field::YIADDR];
        [x[0], x[1], x[2], x[3]]
    }

    /// `dhcp.hw.mac_addr`: the client's MAC when the hardware type is Ethernet (1)
    /// with 6-byte addresses.
    pub fn client_mac(&self) -> Option<[u8; 6]> {
        if self.buf[field::HTYPE] != 1 || self.buf[field::HLEN] != 6 {
            return None;
        }
        self.buf[field::CHADDR].get(..6)?.try_into().ok()
    }

    pub fn has_magic_cookie(&self) -> bool {
        self.buf.get(field::COOKIE) == Some(&MAGIC_COOKIE[..])
    }

    /// The options in order (Pad skipped, stops at End); empty without the cookie.
    pub fn options(&self) -> Options<'a> {
        let rest = if self.has_magic_cookie() {
            self.buf.get(field::OPTIONS..).unwrap_or(&[])
        } else {
            &[]
        };
        Options {
            rest,
            anomalies: Anomalies::default(),
        }
    }

    /// The value of the first option with this code.
    pub fn option(&self, code: u8) -> Option<&'a [u8]> {
        self.options().find(|(c, _)| *c == code).map(|(_, v)| v)
    }

    /// `dhcp.option.dhcp`: option 53.
    pub fn message_type(&self) -> Option<MessageType> {
        self.option(option::MESSAGE_TYPE)
            .and_then(|v| v.first())
            .map(|&t| MessageType::from(t))
    }

    /// `dhcp.option.hostname`: option 12.
    pub fn host_name(&self) -> Option<&'a [u8]> {
        self.option(option::HOST_NAME)
    }

    /// `dhcp.option.vendor_class_id`: option 60.
    pub fn vendor_class_id(&self) -> Option<&'a [u8]> {
        self.option(option::VENDOR_CLASS_ID)
    }

    /// `dhcp.option.request_list`: option 55, one option code per byte.
    pub fn parameter_request_list(&self) -> Option<&'a [u8]> {
        self.option(option::PARAMETER_REQUEST_LIST)
    }

    /// Option 81, Client FQDN (RFC 4702 §2): flags, two deprecated RCODE bytes, name.
    pub fn client_fqdn(&self) -> Option<ClientFqdn<'a>> {
        let value = self.option(option::CLIENT_FQDN)?;
        let (&flags, name) = (value.first()?, value.get(3..)?);
        Some(ClientFqdn { flags, name })
    }

    /// Anomalies of the option walk.
    pub fn anomalies(&self) -> Anomalies {
        let mut options = self.options();
        for _ in options.by_ref() {}
        options.anomalies
    }
}

/// Option 81's flags and name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientFqdn<'a> {
    /// `dhcp.fqdn.flags`: S, O, E (canonical wire encoding), N.
    pub flags: u8,
    name: &'a [u8],
}

impl<'a> ClientFqdn<'a> {
    /// The E flag (RFC 4702 §2.1): the name is in DNS wire format, else ASCII.
    pub const ENCODED: u8 = 0x04;

    /// The name as carried (ASCII, or DNS labels when [`ClientFqdn::ENCODED`]).
    pub fn raw_name(&self) -> &'a [u8] {
        self.name
    }

    /// The name as dotted text into `out` (labels joined by '.'); the bytes written.
    pub fn name_into<'o>(&self, out: &'o mut [u8]) -> &'o [u8] {
        if self.flags & Self::ENCODED == 0 {
            let n = self.name.len().min(out.len());
            out[..n].copy_from_slice(&self.name[..n]);
            return &out[..n];
        }
        let mut written = 0;
        let mut at = 0;
        while let Some(&len) = self.name.get(at) {
            let len = usize::from(len);
            if len == 0 || len > 63 {
                break;
            }
            let Some(label) = self.name.get(at + 1..at + 1 + len) else {
                break;
            };
            if written > 0 && written < out.len() {
                out[written] = b'.';
                written += 1;
            }
            let n = label.len().min(out.len() - written);
            out[written..written + n].copy_from_slice(&label[..n]);
            written += n;
            at += 1 + len;
        }
        &out[..written]
    }
}

/// The walk over a message's options: (code, value).
#[derive(Clone, Debug)]
pub struct Options<'a> {
    rest: &'a [u8],
    pub anomalies: Anomalies,
}

impl<'a> Iterator for Options<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        loop {
            let Some((&code, after)) = self.rest.split_first() else {
                self.anomalies.0 |= Anomalies::NO_END;
                return None;
            };
            match code {
                option::PAD => self.rest = after,
                option::END => {
                    self.rest = &[];
                    return None;
                }
                _ => {
                    let value = after
                        .first()
                        .and_then(|&len| after.get(1..1 + usize::from(len)));
                    let Some(value) = value else {
                        self.anomalies.0 |= Anomalies::OPTION_OVERRUN;
                        self.rest = &[];
                        return None;
                    };
                    self.rest = &after[1 + value.len()..];
                    return Some((code, value));
                }
            }
        }
    }
}

/// Whether a UDP datagram between these ports is BOOTP/DHCP.
pub fn is_port(src_port: u16, dst_port: u16) -> bool {
    matches!(
        (src_port, dst_port),
        (CLIENT_PORT, SERVER_PORT) | (SERVER_PORT, CLIENT_PORT) | (SERVER_PORT, SERVER_PORT)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_capture::hex;

    /// profinet-mixed-rt-dcp-ptcp-cm-errors.pcap frame 118, the UDP payload: a DHCP
    /// Discover from a Siemens switch (chaddr 00:0e:8c:ef:75:c5), option 12
    /// "siemens-x208-switch".
    pub(crate) const SIEMENS_DISCOVER: &str =
        "010106003cfef3b60000000000000000000000000000000000000000000e8cef\
     75c5000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     000000000000000000000000638253633501013902024e3703011c030c137369\
     656d656e732d783230382d7377697463683d0700000e8cef75c5ff";

    /// The same capture's frame 1237: a Windows laptop's Discover, option 12
    /// "LT-US-DSWANSON", option 60 "MSFT 5.0", option 55 of 12 codes (then padding).
    pub(crate) const WINDOWS_DISCOVER: &str =
        "0101060012c1249f0000800000000000000000000000000000000000e4115b5a\
     d973000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     0000000000000000000000000000000000000000000000000000000000000000\
     000000000000000000000000638253633501013d0701e4115b5ad9730c0e4c54\
     2d55532d445357414e534f4e3c084d53465420352e30370c010f03062c2e2f1f\
     2179f92bff00000000000000";

    #[test]
    fn header_fields_and_identity_options() {
        let buf = hex(SIEMENS_DISCOVER);
        let dhcp = Dhcp::new_checked(&buf).unwrap();
        assert_eq!(dhcp.op(), 1);
        assert!(dhcp.has_magic_cookie());
        assert_eq!(
            dhcp.client_mac(),
            Some([0x00, 0x0e, 0x8c, 0xef, 0x75, 0xc5])
        );
        assert_eq!(dhcp.message_type(), Some(MessageType::Discover));
        assert_eq!(dhcp.host_name(), Some(&b"siemens-x208-switch"[..]));
        assert_eq!(dhcp.anomalies(), Anomalies::default());
        let buf = hex(WINDOWS_DISCOVER);
        let dhcp = Dhcp::new_checked(&buf).unwrap();
        assert_eq!(dhcp.host_name(), Some(&b"LT-US-DSWANSON"[..]));
        assert_eq!(dhcp.vendor_class_id(), Some(&b"MSFT 5.0"[..]));
        assert_eq!(dhcp.parameter_request_list().map(<[u8]>::len), Some(12));
        assert_eq!(
            dhcp.client_mac(),
            Some([0xe4, 0x11, 0x5b, 0x5a, 0xd9, 0x73])
        );
    }

    #[test]
    fn short_or_foreign_buffers_are_refused_and_cut_options_flagged() {
        assert_eq!(
            Dhcp::new_checked(&[1; 100]),
            Err(Error::Truncated {
                need: HEADER_LEN,
                have: 100
            })
        );
        let mut buf = vec![0u8; 240];
        buf[0] = 3;
        assert_eq!(Dhcp::new_checked(&buf), Err(Error::BadOp(3)));
        buf[0] = 1;
        buf[236..240].copy_from_slice(&MAGIC_COOKIE);
        buf.extend_from_slice(&[12, 10, b'a']);
        let dhcp = Dhcp::new_checked(&buf).unwrap();
        assert_eq!(dhcp.host_name(), None);
        assert!(dhcp.anomalies().contains(Anomalies::OPTION_OVERRUN));
        // Without the cookie: BOOTP, no options.
        buf[236] = 0;
        assert_eq!(Dhcp::new_checked(&buf).unwrap().options().count(), 0);
    }

    #[test]
    fn client_fqdn_in_wire_format_and_ascii() {
        let encoded = ClientFqdn {
            flags: ClientFqdn::ENCODED,
            name: b"\x03plc\x05plant\x05local\x00",
        };
        let mut out = [0u8; 64];
        assert_eq!(encoded.name_into(&mut out), b"plc.plant.local");
        let ascii = ClientFqdn {
            flags: 0,
            name: b"hmi.plant",
        };
        assert_eq!(ascii.name_into(&mut out), b"hmi.plant");
        // A label length past the end stops the walk.
        let cut = ClientFqdn {
            flags: ClientFqdn::ENCODED,
            name: b"\x03plc\x09pl",
        };
        assert_eq!(cut.name_into(&mut out), b"plc");
    }
}
