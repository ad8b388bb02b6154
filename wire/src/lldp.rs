//! LLDP (IEEE 802.1AB, EtherType 0x88CC): the LLDPDU's TLVs as zero-copy views.
//!
//! Follows IEEE 802.1AB-2016 §8.5 (basic TLVs: 1 Chassis ID, 2 Port ID, 3 TTL, 4 Port
//! Description, 5 System Name, 6 System Description, 7 System Capabilities, 8
//! Management Address, 0 End). Field names follow Wireshark's `lldp.*`.
//!
//! [`Lldp::new_checked`] validates that the first TLV header is present; after it
//! succeeds **no accessor can panic**. TLVs are walked with bounds checks: a TLV whose
//! length runs past the frame ends the walk and is flagged. The mandatory order
//! (Chassis ID, Port ID, TTL first, §8.2) is checked as an anomaly, not an error.

/// The LLDP EtherType.
pub const ETHER_TYPE: u16 = 0x88CC;
/// One TLV header: 7-bit type, 9-bit length.
pub const TLV_HEADER_LEN: usize = 2;

/// TLV types (§8.4.1).
pub mod tlv {
    pub const END: u8 = 0;
    pub const CHASSIS_ID: u8 = 1;
    pub const PORT_ID: u8 = 2;
    pub const TTL: u8 = 3;
    pub const PORT_DESCRIPTION: u8 = 4;
    pub const SYSTEM_NAME: u8 = 5;
    pub const SYSTEM_DESCRIPTION: u8 = 6;
    pub const SYSTEM_CAPABILITIES: u8 = 7;
    pub const MANAGEMENT_ADDRESS: u8 = 8;
    pub const ORGANIZATION_SPECIFIC: u8 = 127;
}

/// Why a buffer is not an LLDPDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
}

/// Spec violations that still parse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u8);

impl Anomalies {
    /// A TLV's length runs past the frame.
    pub const TLV_OVERRUN: u8 = 1 << 0;
    /// The LLDPDU does not start with Chassis ID, Port ID, TTL (§8.2).
    pub const MANDATORY_ORDER: u8 = 1 << 1;
    /// No End TLV before the frame ends.
    pub const NO_END: u8 = 1 << 2;

    pub fn contains(self, flag: u8) -> bool {
        self.0 & flag != 0
    }
}

/// One LLDPDU (the Ethernet payload after the EtherType, padding included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lldp<'a> {
    buf: &'a [u8],
}

/// A Chassis ID or Port ID: its subtype and the id bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id<'a> {
    /// `lldp.chassis.id.subtype` / `lldp.port.subtype` (4 = MAC address for a chassis,
    /// 3 = MAC address for a port, 5/7 = interface name / locally assigned).
    pub subtype: u8,
    pub id: &'a [u8],
}

/// The management address TLV (§8.5.9): the address subtype (IANA address family: 1
/// IPv4, 2 IPv6, 6 802 MAC) and the address bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManagementAddress<'a> {
    pub subtype: u8,
    pub address: &'a [u8],
}

impl ManagementAddress<'_> {
    /// The address when it is IPv4.
    pub fn ipv4(&self) -> Option<[u8; 4]> {
        if self.subtype != 1 {
            return None;
        }
        self.address.try_into().ok()
    }
}

impl<'a> Lldp<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Lldp<'a>, Error> {
        if buf.len() < TLV_HEADER_LEN {
            return Err(Error::Truncated {
                need: TLV_HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(Lldp { buf })
    }

    /// The TLVs in order, up to (not including) End: (type, value).
    pub fn tlvs(&self) -> Tlvs<'a> {
        Tlvs {
            rest: self.buf,
            seen: 0,
            anomalies: Anomalies::default(),
        }
    }

    fn first(&self, kind: u8) -> Option<&'a [u8]> {
        self.tlvs().find(|(t, _)| *t == kind).map(|(_, v)| v)
    }

    fn id(&self, kind: u8) -> Option<Id<'a>> {
        let value = self.first(kind)?;
        let (&subtype, id) = value.split_first()?;
        Some(Id { subtype, id })
    }

    /// `lldp.chassis.id`
    pub fn chassis_id(&self) -> Option<Id<'a>> {
        self.id(tlv::CHASSIS_ID)
    }

    /// `lldp.port.id`
    pub fn port_id(&self) -> Option<Id<'a>> {
        self.id(tlv::PORT_ID)
    }

    /// `lldp.time_to_live`
    pub fn ttl(&self) -> Option<u16> {
        match self.first(tlv::TTL)? {
            [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// `lldp.port.desc`
    pub fn port_description(&self) -> Option<&'a [u8]> {
        self.first(tlv::PORT_DESCRIPTION)
    }

    /// `lldp.tlv.system.name`
    pub fn system_name(&self) -> Option<&'a [u8]> {
        self.first(tlv::SYSTEM_NAME)
    }

    /// `lldp.tlv.system.desc`
    pub fn system_description(&self) -> Option<&'a [u8]> {
        self.first(tlv::SYSTEM_DESCRIPTION)
    }

    /// `lldp.mgn.addr.*`: the first management address.
    pub fn management_address(&self) -> Option<ManagementAddress<'a>> {
        let value = self.first(tlv::MANAGEMENT_ADDRESS)?;
        // Address string length counts the subtype byte too.
        let len = usize::from(*value.first()?);
        let subtype = *value.get(1)?;
        let address = value.get(2..1 + len)?;
        Some(ManagementAddress { subtype, address })
    }

    /// The walk's anomalies and the mandatory-order check.
    pub fn anomalies(&self) -> Anomalies {
        let mut tlvs = self.tlvs();
        let mut order_ok = true;
        for (index, (kind, _)) in tlvs.by_ref().enumerate() {
            let wanted = [tlv::CHASSIS_ID, tlv::PORT_ID, tlv::TTL];
            if let Some(&want) = wanted.get(index) {
                order_ok &= kind == want;
            }
        }
        let mut anomalies = tlvs.anomalies;
        if !order_ok || tlvs.seen < 3 {
            anomalies.0 |= Anomalies::MANDATORY_ORDER;
        }
        anomalies
    }
}

/// The walk over an LLDPDU's TLVs.
#[derive(Clone, Debug)]
pub struct Tlvs<'a> {
    rest: &'a [u8],
    seen: usize,
    pub anomalies: Anomalies,
}

impl<'a> Iterator for Tlvs<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let header = match self.rest {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => {
                if !self.rest.is_empty() || self.seen > 0 {
                    self.anomalies.0 |= Anomalies::NO_END;
                }
                self.rest = &[];
                return None;
            }
        };
        let kind = (header >> 9) as u8;
        let len = usize::from(header & 0x01ff);
        if kind == tlv::END {
            self.rest = &[];
            return None;
        }
        let Some(value) = self.rest.get(TLV_HEADER_LEN..TLV_HEADER_LEN + len) else {
            self.anomalies.0 |= Anomalies::TLV_OVERRUN;
            self.rest = &[];
            return None;
        };
        self.rest = &self.rest[TLV_HEADER_LEN + len..];
        self.seen += 1;
        Some((kind, value))
    }
}

impl<'a> Tlvs<'a> {
    /// TLVs walked so far.
    pub fn seen(&self) -> usize {
        self.seen
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::test_capture::hex;

    /// enip-cl5000-firmware-change.pcap frame 2, the Ethernet payload after 0x88CC: a
    /// D-Link switch's LLDPDU (chassis MAC 00:21:91:06:f1:66, port "19", TTL 120,
    /// management address 208.73.217.142), with its Ethernet padding.
    pub(crate) const DLINK_LLDPDU: &str =
        "02070400219106f166040301313906020078100c0501d049d98e020000000000\
     00000000000000000000000000000000";

    #[test]
    fn basic_tlvs_of_a_real_lldpdu() {
        let buf = hex(DLINK_LLDPDU);
        let lldp = Lldp::new_checked(&buf).unwrap();
        let chassis = lldp.chassis_id().unwrap();
        assert_eq!(chassis.subtype, 4);
        assert_eq!(chassis.id, &[0x00, 0x21, 0x91, 0x06, 0xf1, 0x66]);
        let port = lldp.port_id().unwrap();
        assert_eq!((port.subtype, port.id), (1, &b"19"[..]));
        assert_eq!(lldp.ttl(), Some(120));
        assert_eq!(
            lldp.management_address().and_then(|m| m.ipv4()),
            Some([208, 73, 217, 142])
        );
        assert_eq!(lldp.system_name(), None);
        assert_eq!(lldp.anomalies(), Anomalies::default());
    }

    #[test]
    fn overruns_and_order_are_flagged() {
        assert!(Lldp::new_checked(&[2]).is_err());
        // System name (5) announcing 9 bytes with 3 present.
        let lldp = Lldp::new_checked(&[0x0a, 0x09, b'a', b'b', b'c']).unwrap();
        assert_eq!(lldp.system_name(), None);
        let anomalies = lldp.anomalies();
        assert!(anomalies.contains(Anomalies::TLV_OVERRUN));
        assert!(anomalies.contains(Anomalies::MANDATORY_ORDER));
    }
}
