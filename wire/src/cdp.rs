//! Cisco Discovery Protocol (802.3 frames to 01:00:0c:cc:cc:cc, LLC SNAP with OUI
//! 00:00:0c and PID 0x2000): the header and its TLVs as zero-copy views.
//!
//! No public standard; follows Wireshark's `packet-cdp.c` (field names `cdp.*`): a
//! 4-byte header (version, TTL, checksum), then TLVs of a 2-byte type and a 2-byte
//! length that counts the TLV header. [`Cdp::new_checked`] validates the header;
//! after it succeeds **no accessor can panic**. A TLV whose length is shorter than its
//! header or runs past the frame ends the walk and is flagged.

/// The CDP multicast address.
pub const MULTICAST_MAC: [u8; 6] = [0x01, 0x00, 0x0c, 0xcc, 0xcc, 0xcc];
/// SNAP OUI and protocol id of CDP.
pub const SNAP_OUI: [u8; 3] = [0x00, 0x00, 0x0c];
pub const SNAP_PID: u16 = 0x2000;
/// The LLC SAP of SNAP.
pub const SNAP_SAP: u8 = 0xaa;
pub const HEADER_LEN: usize = 4;
pub const TLV_HEADER_LEN: usize = 4;

/// TLV types (Wireshark `cdp.tlv.type`).
pub mod tlv {
    pub const DEVICE_ID: u16 = 0x0001;
    pub const ADDRESSES: u16 = 0x0002;
    pub const PORT_ID: u16 = 0x0003;
    pub const CAPABILITIES: u16 = 0x0004;
    pub const SOFTWARE_VERSION: u16 = 0x0005;
    pub const PLATFORM: u16 = 0x0006;
    pub const MANAGEMENT_ADDRESSES: u16 = 0x0016;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("not CDP: SNAP OUI/PID differ")]
    NotCdp,
}

/// Spec violations that still parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u8);

impl Anomalies {
    /// A TLV length below its header or past the frame.
    pub const TLV_OVERRUN: u8 = 1 << 0;
    /// Version other than 1 or 2.
    pub const UNKNOWN_VERSION: u8 = 1 << 1;

    pub fn contains(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// The CDP message inside the SNAP header of an LLC payload (the bytes after the LLC
/// control field: OUI, PID, CDP).
pub fn from_snap(llc_payload: &[u8]) -> Result<Cdp<'_>, Error> {
    match llc_payload {
        [a, b, c, d, e, rest @ ..]
            if [*a, *b, *c] == SNAP_OUI && u16::from_be_bytes([*d, *e]) == SNAP_PID =>
        {
            Cdp::new_checked(rest)
        }
        _ => Err(Error::NotCdp),
    }
}

/// One CDP message (after the SNAP header).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cdp<'a> {
    buf: &'a [u8],
}

impl<'a> Cdp<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Cdp<'a>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(Cdp { buf })
    }

    /// `cdp.version`
    pub fn version(&self) -> u8 {
        self.buf[0]
    }

    /// `cdp.ttl`
    pub fn ttl(&self) -> u8 {
        self.buf[1]
    }

    /// The TLVs in order: (type, value).
    pub fn tlvs(&self) -> Tlvs<'a> {
        Tlvs {
            rest: &self.buf[HEADER_LEN..],
            overrun: false,
        }
    }

    fn first(&self, kind: u16) -> Option<&'a [u8]> {
        self.tlvs().find(|(t, _)| *t == kind).map(|(_, v)| v)
    }

    /// `cdp.deviceid`
    pub fn device_id(&self) -> Option<&'a [u8]> {
        self.first(tlv::DEVICE_ID)
    }

    /// `cdp.portid`
    pub fn port_id(&self) -> Option<&'a [u8]> {
        self.first(tlv::PORT_ID)
    }

    /// `cdp.software_version`: often several lines; the first is the useful one.
    pub fn software_version(&self) -> Option<&'a [u8]> {
        self.first(tlv::SOFTWARE_VERSION)
    }

    /// `cdp.platform`
    pub fn platform(&self) -> Option<&'a [u8]> {
        self.first(tlv::PLATFORM)
    }

    /// The first IPv4 address of the Addresses TLV (`cdp.nrgyz.ip_address`): NLPID
    /// protocol 0xCC with a 4-byte address.
    pub fn ipv4_address(&self) -> Option<[u8; 4]> {
        let value = self.first(tlv::ADDRESSES)?;
        let count = u32::from_be_bytes(value.get(..4)?.try_into().ok()?);
        let mut at = 4;
        for _ in 0..count.min(16) {
            let protocol_type = *value.get(at)?;
            let protocol_len = usize::from(*value.get(at + 1)?);
            let protocol = value.get(at + 2..at + 2 + protocol_len)?;
            let address_at = at + 2 + protocol_len;
            let address_len = usize::from(u16::from_be_bytes(
                value.get(address_at..address_at + 2)?.try_into().ok()?,
            ));
            let address = value.get(address_at + 2..address_at + 2 + address_len)?;
            if protocol_type == 1 && protocol == [0xcc] {
                if let Ok(v4) = address.try_into() {
                    return Some(v4);
                }
            }
            at = address_at + 2 + address_len;
        }
        None
    }

    pub fn anomalies(&self) -> Anomalies {
        let mut anomalies = Anomalies::default();
        let mut tlvs = self.tlvs();
        for _ in tlvs.by_ref() {}
        if tlvs.overrun {
            anomalies.0 |= Anomalies::TLV_OVERRUN;
        }
        if !matches!(self.version(), 1 | 2) {
            anomalies.0 |= Anomalies::UNKNOWN_VERSION;
        }
        anomalies
    }
}

/// The walk over CDP TLVs.
#[derive(Clone, Debug)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
    overrun: bool,
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let (kind, len) = match self.rest {
            [a, b, c, d, ..] => (
                u16::from_be_bytes([*a, *b]),
                usize::from(u16::from_be_bytes([*c, *d])),
            ),
            [] => return None,
            _ => {
                self.overrun = true;
                self.rest = &[];
                return None;
            }
        };
        let value = if len >= TLV_HEADER_LEN {
            self.rest.get(TLV_HEADER_LEN..len)
        } else {
            None
        };
        let Some(value) = value else {
            self.overrun = true;
            self.rest = &[];
            return None;
        };
        self.rest = &self.rest[len..];
        Some((kind, value))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::test_capture::hex;

    /// enip-cl5000-firmware-change.pcap frame 13, the LLC payload after the control
    /// field (SNAP OUI 00:00:0c, PID 0x2000, CDP v2): a Cisco CE500 switch, device id
    /// "Ns5gt", platform "cisco WS-CE500-24TT", address 192.168.10.253.
    pub(crate) const CE500_SNAP: &str =
        "00000c200002b40ab0000100094e73356774000500bc436973636f20494f5320\
     536f6674776172652c20434535303020536f667477617265202843453530302d\
     4c414e424153452d4d292c2056657273696f6e2031322e322832352953454734\
     2c2052454c4541534520534f4654574152452028666331290a436f7079726967\
     68742028632920313938362d3230303720627920436973636f2053797374656d\
     732c20496e632e0a436f6d70696c6564204d6f6e2031332d4175672d30372031\
     373a33342062792079656e616e6800060017636973636f2057532d4345353030\
     2d3234545400020011000000010101cc0004c0a80afd00030014476967616269\
     7445746865726e657431000400080000002800090004000a00060003000b0005\
     010012000500001300050000160011000000010101cc0004c0a80afd001a0010\
     0000000100000000ffffffff";

    #[test]
    fn identity_tlvs_of_a_real_announcement() {
        let buf = hex(CE500_SNAP);
        let cdp = from_snap(&buf).unwrap();
        assert_eq!((cdp.version(), cdp.ttl()), (2, 180));
        assert_eq!(cdp.device_id(), Some(&b"Ns5gt"[..]));
        assert_eq!(cdp.platform(), Some(&b"cisco WS-CE500-24TT"[..]));
        assert!(cdp
            .software_version()
            .unwrap()
            .starts_with(b"Cisco IOS Software, CE500 Software"));
        assert_eq!(cdp.port_id(), Some(&b"GigabitEthernet1"[..]));
        assert_eq!(cdp.ipv4_address(), Some([192, 168, 10, 253]));
        assert_eq!(cdp.anomalies(), Anomalies::default());
    }

    #[test]
    fn foreign_snap_and_bad_tlvs() {
        assert_eq!(
            from_snap(&[0, 0, 0x0c, 0x20, 0x04, 2, 180, 0, 0]),
            Err(Error::NotCdp)
        );
        // A TLV length of 2 (below its own header).
        let cdp = Cdp::new_checked(&[2, 180, 0, 0, 0, 1, 0, 2, 9, 9]).unwrap();
        assert_eq!(cdp.device_id(), None);
        assert!(cdp.anomalies().contains(Anomalies::TLV_OVERRUN));
    }
}
