//! IEC 61850 GOOSE (EtherType 0x88B8): the four-field header and the BER-encoded
//! `goosePdu`, as zero-copy views.
//!
//! Follows IEC 61850-8-1:2011 (cited "8-1 §n": §C.2 header, annex A `IECGoosePdu`
//! ASN.1) and X.690 BER for the encoding. Field names follow Wireshark's `goose.*`.
//!
//! [`Goose::new_checked`] validates the header's length field against the buffer
//! (Ethernet padding after the APDU is ignored); after it succeeds **no accessor can
//! panic**. [`Goose::pdu`] decodes the `goosePdu` fields with a bounds-checked TLV
//! walk: fields that are missing or do not fit come back as `None`, and fields are
//! kept whatever their order (the ASN.1 fixes it; out-of-order is an anomaly).

/// The GOOSE EtherType (8-1 §C.2).
pub const ETHER_TYPE: u16 = 0x88B8;
/// APPID, Length, Reserved 1, Reserved 2.
pub const HEADER_LEN: usize = 8;
/// The `goosePdu` tag: [APPLICATION 1] constructed.
pub const PDU_TAG: u8 = 0x61;

/// Why a buffer is not a GOOSE APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("length field {0} shorter than the header")]
    BadLength(u16),
}

impl Error {
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadLength(_) => "bad_length",
        }
    }
}

/// One BER tag-length-value: (tag, value, next offset). Single-octet tags only (every
/// GOOSE tag is one); definite lengths in short or long form (at most 4 octets).
fn tlv(buf: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let tag = *buf.get(at)?;
    let first = *buf.get(at + 1)?;
    let (len, start) = if first & 0x80 == 0 {
        (usize::from(first), at + 2)
    } else {
        let octets = usize::from(first & 0x7F);
        if octets == 0 || octets > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..octets {
            len = (len << 8) | usize::from(*buf.get(at + 2 + i)?);
        }
        (len, at + 2 + octets)
    };
    let end = start.checked_add(len)?;
    Some((tag, buf.get(start..end)?, end))
}

/// A BER INTEGER as unsigned, `None` when longer than 8 octets once a leading zero
/// octet is dropped, or negative.
fn unsigned(value: &[u8]) -> Option<u64> {
    let value = match value {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [first, ..] if first & 0x80 != 0 => return None,
        _ => value,
    };
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    Some(value.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Spec violations that still parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// The APDU is not a `goosePdu` or its fields do not parse.
    pub const BAD_PDU: u16 = 1 << 0;
    /// A mandatory field (gocbRef, datSet, stNum, sqNum, confRev, ...) is missing.
    pub const MISSING_FIELD: u16 = 1 << 1;
    /// numDatSetEntries differs from the number of allData elements.
    pub const ENTRY_COUNT_MISMATCH: u16 = 1 << 2;
    /// stNum 0 (8-1 §18.1.2.5: counts from 1).
    pub const ZERO_STNUM: u16 = 1 << 3;
    /// Reserved 2 non-zero, or Reserved 1 bits other than the simulation bit.
    pub const RESERVED_BITS: u16 = 1 << 4;

    const LABELS: [(u16, &'static str); 5] = [
        (Self::BAD_PDU, "bad_pdu"),
        (Self::MISSING_FIELD, "missing_field"),
        (Self::ENTRY_COUNT_MISMATCH, "entry_count_mismatch"),
        (Self::ZERO_STNUM, "zero_stnum"),
        (Self::RESERVED_BITS, "reserved_bits"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    pub fn labels(self) -> impl Iterator<Item = &'static str> {
        Self::LABELS
            .into_iter()
            .filter(move |(flag, _)| self.0 & flag != 0)
            .map(|(_, label)| label)
    }
}

/// One GOOSE APDU (the Ethernet payload after the EtherType).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Goose<'a> {
    buf: &'a [u8],
}

impl<'a> Goose<'a> {
    /// Checks the header and that the buffer holds the length the header announces.
    pub fn new_checked(buf: &'a [u8]) -> Result<Goose<'a>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let length = u16::from_be_bytes([buf[2], buf[3]]);
        if usize::from(length) < HEADER_LEN {
            return Err(Error::BadLength(length));
        }
        let buf = buf.get(..usize::from(length)).ok_or(Error::Truncated {
            need: usize::from(length),
            have: buf.len(),
        })?;
        Ok(Goose { buf })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// `goose.appid`
    pub fn appid(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]])
    }

    /// `goose.length`
    pub fn length(&self) -> u16 {
        self.buf.len() as u16
    }

    /// `goose.reserve1`
    pub fn reserved1(&self) -> u16 {
        u16::from_be_bytes([self.buf[4], self.buf[5]])
    }

    /// `goose.reserve2`
    pub fn reserved2(&self) -> u16 {
        u16::from_be_bytes([self.buf[6], self.buf[7]])
    }

    /// The simulation bit of Reserved 1 (8-1:2011 §C.2.3.2, edition 2).
    pub fn simulation_bit(&self) -> bool {
        self.reserved1() & 0x8000 != 0
    }

    /// The APDU after the header.
    pub fn apdu(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }

    /// The decoded `goosePdu`, `None` when the APDU is not one.
    pub fn pdu(&self) -> Option<Pdu<'a>> {
        let (tag, body, _) = tlv(self.apdu(), 0)?;
        if tag != PDU_TAG {
            return None;
        }
        let mut pdu = Pdu::default();
        let mut at = 0;
        while at < body.len() {
            let (tag, value, next) = tlv(body, at)?;
            match tag {
                0x80 => pdu.gocb_ref = Some(value),
                0x81 => pdu.time_allowed_to_live = unsigned(value),
                0x82 => pdu.dat_set = Some(value),
                0x83 => pdu.go_id = Some(value),
                0x84 => pdu.t = value.try_into().ok(),
                0x85 => pdu.st_num = unsigned(value),
                0x86 => pdu.sq_num = unsigned(value),
                0x87 => pdu.simulation = value.first().map(|&b| b != 0),
                0x88 => pdu.conf_rev = unsigned(value),
                0x89 => pdu.nds_com = value.first().map(|&b| b != 0),
                0x8A => pdu.num_dat_set_entries = unsigned(value),
                0xAB => pdu.all_data = Some(value),
                _ => pdu.unknown_fields += 1,
            }
            at = next;
        }
        Some(pdu)
    }

    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        if self.reserved2() != 0 || self.reserved1() & 0x7FFF != 0 {
            flags |= Anomalies::RESERVED_BITS;
        }
        match self.pdu() {
            None => flags |= Anomalies::BAD_PDU,
            Some(pdu) => {
                if pdu.gocb_ref.is_none()
                    || pdu.dat_set.is_none()
                    || pdu.st_num.is_none()
                    || pdu.sq_num.is_none()
                    || pdu.conf_rev.is_none()
                    || pdu.all_data.is_none()
                {
                    flags |= Anomalies::MISSING_FIELD;
                }
                if pdu.st_num == Some(0) {
                    flags |= Anomalies::ZERO_STNUM;
                }
                if let (Some(n), Some(count)) = (pdu.num_dat_set_entries, pdu.data_count()) {
                    if n != count as u64 {
                        flags |= Anomalies::ENTRY_COUNT_MISMATCH;
                    }
                }
            }
        }
        Anomalies(flags)
    }
}

/// The fields of a `goosePdu` (8-1 annex A, `IECGoosePdu`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pdu<'a> {
    /// `goose.gocbRef`: the control block reference (VisibleString, ≤ 129 octets).
    pub gocb_ref: Option<&'a [u8]>,
    /// `goose.timeAllowedtoLive` in ms.
    pub time_allowed_to_live: Option<u64>,
    /// `goose.datSet`
    pub dat_set: Option<&'a [u8]>,
    /// `goose.goID`
    pub go_id: Option<&'a [u8]>,
    /// `goose.t`: UtcTime (seconds, fraction, quality).
    pub t: Option<[u8; 8]>,
    /// `goose.stNum`: the state number, incremented on each data change.
    pub st_num: Option<u64>,
    /// `goose.sqNum`: the retransmission number within a state.
    pub sq_num: Option<u64>,
    /// `goose.simulation` (edition 1: `test`).
    pub simulation: Option<bool>,
    /// `goose.confRev`
    pub conf_rev: Option<u64>,
    /// `goose.ndsCom`: needs commissioning.
    pub nds_com: Option<bool>,
    /// `goose.numDatSetEntries`
    pub num_dat_set_entries: Option<u64>,
    /// The `allData` SEQUENCE OF Data, undecoded.
    pub all_data: Option<&'a [u8]>,
    /// Fields with tags the PDU does not define.
    pub unknown_fields: u16,
}

impl Pdu<'_> {
    /// The number of top-level Data elements in allData, `None` if they do not parse.
    pub fn data_count(&self) -> Option<usize> {
        let data = self.all_data?;
        let (mut at, mut count) = (0, 0);
        while at < data.len() {
            let (_, _, next) = tlv(data, at)?;
            at = next;
            count += 1;
        }
        Some(count)
    }

    /// The `t` field's seconds since 1970.
    pub fn t_seconds(&self) -> Option<u32> {
        self.t.map(|t| u32::from_be_bytes([t[0], t[1], t[2], t[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_capture::hex;

    /// goose-demo-single.pcap #1, after the VLAN tag and EtherType: APPID 0x2000,
    /// gocbRef "111", stNum 1 encoded on 5 octets, padding after the APDU.
    const DEMO: &str = "2000006c0000000061628003313131810500000027108203323232830333333384084ddda51adbe76d008505000000000186050000000001870100880500000000018901008a05000000000aab1e830100830100830100830100830100830100830100830100830100830100";
    /// goose-sample-451.pcap #1 (APPID 0x3001, 7 + 16 data entries... 25 entries).
    const SAMPLE: &str = "300100e3000000006181d8801b414131433151303141314c44302f4c4c4e3024474f246763625f4181023a988220414131433151303141314c44302f4c4c4e3024496e7465726c6f636b696e6741830d496e7465726c6f636b696e67418408488890c1240000278503008f618601008701008801018901008a0119ab66830100830100830100830100830100830100830100840206808403030000840206808403030000840206808403030000840206008403030000840206408403030000840206408403030000840206408403030000840206408403030000840206408403030000";

    #[test]
    fn demo_frame() {
        let bytes = hex(DEMO);
        let goose = Goose::new_checked(&bytes).expect("valid GOOSE");
        assert_eq!(goose.appid(), 0x2000);
        assert_eq!(goose.length(), 0x6c);
        assert!(!goose.simulation_bit());
        let pdu = goose.pdu().expect("goosePdu");
        assert_eq!(pdu.gocb_ref, Some(&b"111"[..]));
        assert_eq!(pdu.time_allowed_to_live, Some(10_000));
        assert_eq!(pdu.dat_set, Some(&b"222"[..]));
        assert_eq!(pdu.go_id, Some(&b"333"[..]));
        assert_eq!(pdu.st_num, Some(1));
        assert_eq!(pdu.sq_num, Some(1));
        assert_eq!(pdu.simulation, Some(false));
        assert_eq!(pdu.conf_rev, Some(1));
        assert_eq!(pdu.nds_com, Some(false));
        assert_eq!(pdu.num_dat_set_entries, Some(10));
        assert_eq!(pdu.data_count(), Some(10));
        assert!(goose.anomalies().is_empty());
    }

    #[test]
    fn sample_frame() {
        let bytes = hex(SAMPLE);
        let goose = Goose::new_checked(&bytes).expect("valid GOOSE");
        assert_eq!(goose.appid(), 0x3001);
        let pdu = goose.pdu().expect("goosePdu");
        assert_eq!(pdu.gocb_ref, Some(&b"AA1C1Q01A1LD0/LLN0$GO$gcb_A"[..]));
        assert_eq!(pdu.go_id, Some(&b"InterlockingA"[..]));
        assert_eq!(pdu.st_num, Some(0x8f61));
        assert_eq!(pdu.sq_num, Some(0));
        assert_eq!(pdu.conf_rev, Some(1));
        assert_eq!(pdu.num_dat_set_entries, Some(25));
        assert_eq!(pdu.data_count(), Some(25));
        assert_eq!(pdu.t_seconds(), Some(0x488890c1));
        assert!(goose.anomalies().is_empty());
    }

    #[test]
    fn rejects_and_anomalies() {
        assert_eq!(
            Goose::new_checked(&[0x30, 0x01, 0x00]),
            Err(Error::Truncated { need: 8, have: 3 })
        );
        assert_eq!(
            Goose::new_checked(&hex("3001000400000000")),
            Err(Error::BadLength(4))
        );
        assert_eq!(
            Goose::new_checked(&hex("3001002000000000")),
            Err(Error::Truncated { need: 32, have: 8 })
        );
        // Header only: no goosePdu.
        let bytes = hex("3001000880000001");
        let goose = Goose::new_checked(&bytes).expect("fixture parses");
        assert!(goose.simulation_bit());
        assert_eq!(goose.pdu(), None);
        let anomalies = goose.anomalies();
        assert!(anomalies.contains(Anomalies::BAD_PDU));
        assert!(anomalies.contains(Anomalies::RESERVED_BITS));
        // A goosePdu whose only field claims more bytes than it has.
        let bytes = hex("300100106104800531310000");
        let goose = Goose::new_checked(&bytes[..]).err();
        assert_eq!(goose, Some(Error::Truncated { need: 16, have: 12 }));
        let bytes = hex("3001000c61028005");
        assert!(Goose::new_checked(&bytes).is_err());
        let bytes = hex("3001000c0000000061028005");
        let goose = Goose::new_checked(&bytes).expect("fixture parses");
        assert_eq!(goose.pdu(), None);
        // Unsigned decoding: negative and over-long integers are refused.
        assert_eq!(unsigned(&[0x80]), None);
        assert_eq!(unsigned(&[0; 10]), None);
        assert_eq!(unsigned(&[0x00, 0xff]), Some(255));
        // Long-form lengths.
        assert_eq!(
            tlv(&[0x80, 0x81, 0x01, 0x41], 0),
            Some((0x80, &[0x41][..], 4))
        );
        assert_eq!(tlv(&[0x80, 0x85, 0, 0, 0, 0, 1], 0), None);
    }
}
