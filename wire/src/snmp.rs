//! SNMP v1 and v2c messages (UDP 161/162) as zero-copy views: version, PDU type,
//! request id, error status and the variable bindings.
//!
//! Follows RFC 1157 §4 (v1 Message and PDUs), RFC 3416 §3 (v2 PDUs) and X.690 BER.
//! Field names follow Wireshark's `snmp.*`. **The community string is never exposed**:
//! the view skips it and offers no accessor for it, so nothing downstream can keep or
//! log it. SNMPv3 (version 3) is recognised and not parsed further.
//!
//! [`Snmp::new_checked`] walks the message header (SEQUENCE, version, community, PDU
//! tag and the PDU's first three INTEGERs); after it succeeds **no accessor can
//! panic**. Variable bindings are walked with bounds checks and the walk stops at the
//! first binding that does not parse.

/// The agent and trap ports (RFC 3417 §3).
pub const AGENT_PORT: u16 = 161;
pub const TRAP_PORT: u16 = 162;

/// OIDs of the MIB-II system group (RFC 1213 §6.3), BER content bytes of `x.0`.
pub mod oid {
    /// 1.3.6.1.2.1.1.1.0 sysDescr
    pub const SYS_DESCR: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 1, 0];
    /// 1.3.6.1.2.1.1.2.0 sysObjectID
    pub const SYS_OBJECT_ID: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 2, 0];
    /// 1.3.6.1.2.1.1.5.0 sysName
    pub const SYS_NAME: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 5, 0];
    /// 1.3.6.1.2.1.1.6.0 sysLocation
    pub const SYS_LOCATION: &[u8] = &[0x2b, 6, 1, 2, 1, 1, 6, 0];
}

/// BER tags used here (X.690, RFC 1155 §3.2.3, RFC 3416 §3).
pub mod tag {
    pub const INTEGER: u8 = 0x02;
    pub const OCTET_STRING: u8 = 0x04;
    pub const NULL: u8 = 0x05;
    pub const OBJECT_IDENTIFIER: u8 = 0x06;
    pub const SEQUENCE: u8 = 0x30;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("not a BER-encoded SNMP message")]
    BadEncoding,
    #[error("SNMP version {0} is not parsed (v1 and v2c are)")]
    UnsupportedVersion(u64),
}

wire_enum! {
    /// The PDU type (context tag; RFC 1157 §4.1, RFC 3416 §3).
    pub enum PduType {
        GetRequest = 0xa0 => "get-request",
        GetNextRequest = 0xa1 => "get-next-request",
        GetResponse = 0xa2 => "get-response",
        SetRequest = 0xa3 => "set-request",
        TrapV1 = 0xa4 => "trap",
        GetBulkRequest = 0xa5 => "getBulkRequest",
        InformRequest = 0xa6 => "informRequest",
        TrapV2 = 0xa7 => "snmpV2-trap",
        Report = 0xa8 => "report",
    }
}

/// One BER TLV: (tag, value, offset after it). Single-octet tags; definite lengths
/// in short or long form (at most 4 octets).
fn tlv(buf: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let tag = *buf.get(at)?;
    let first = *buf.get(at + 1)?;
    let (len, start) = if first & 0x80 == 0 {
        (usize::from(first), at + 2)
    } else {
        let octets = usize::from(first & 0x7f);
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

/// A BER INTEGER as i64 (at most 8 octets).
fn integer(value: &[u8]) -> Option<i64> {
    if value.is_empty() || value.len() > 8 {
        return None;
    }
    let negative = value[0] & 0x80 != 0;
    let mut out: i64 = if negative { -1 } else { 0 };
    for &b in value {
        out = (out << 8) | i64::from(b);
    }
    Some(out)
}

/// One SNMP v1/v2c message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snmp<'a> {
    version: u8,
    pdu_tag: u8,
    request_id: i64,
    error_status: i64,
    error_index: i64,
    /// The PDU's content after error-index (v1 traps: the whole trap PDU content).
    bindings: &'a [u8],
}

impl<'a> Snmp<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Snmp<'a>, Error> {
        let (outer, message, _) = tlv(buf, 0).ok_or(Error::BadEncoding)?;
        if outer != tag::SEQUENCE {
            return Err(Error::BadEncoding);
        }
        let (version_tag, version, at) = tlv(message, 0).ok_or(Error::BadEncoding)?;
        let version = match (version_tag, integer(version)) {
            (tag::INTEGER, Some(v @ 0..=1)) => v as u8,
            (tag::INTEGER, Some(v)) => return Err(Error::UnsupportedVersion(v as u64)),
            _ => return Err(Error::BadEncoding),
        };
        // The community: skipped, never kept.
        let (community_tag, _, at) = tlv(message, at).ok_or(Error::BadEncoding)?;
        if community_tag != tag::OCTET_STRING {
            return Err(Error::BadEncoding);
        }
        let (pdu_tag, pdu, _) = tlv(message, at).ok_or(Error::BadEncoding)?;
        if pdu_tag & 0xe0 != 0xa0 {
            return Err(Error::BadEncoding);
        }
        if pdu_tag == 0xa4 {
            // v1 Trap-PDU (RFC 1157 §4.1.6): enterprise, agent-addr, generic, specific,
            // time-stamp, then the bindings.
            let mut at = 0;
            for _ in 0..5 {
                at = tlv(pdu, at).ok_or(Error::BadEncoding)?.2;
            }
            return Ok(Snmp {
                version,
                pdu_tag,
                request_id: 0,
                error_status: 0,
                error_index: 0,
                bindings: pdu.get(at..).unwrap_or(&[]),
            });
        }
        let mut numbers = [0i64; 3];
        let mut at = 0;
        for number in &mut numbers {
            let (t, value, next) = tlv(pdu, at).ok_or(Error::BadEncoding)?;
            if t != tag::INTEGER {
                return Err(Error::BadEncoding);
            }
            *number = integer(value).ok_or(Error::BadEncoding)?;
            at = next;
        }
        Ok(Snmp {
            version,
            pdu_tag,
            request_id: numbers[0],
            error_status: numbers[1],
            error_index: numbers[2],
            bindings: pdu.get(at..).unwrap_or(&[]),
        })
    }

    /// `snmp.version`: 0 v1, 1 v2c.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// `snmp.data` (the PDU type).
    pub fn pdu_type(&self) -> PduType {
        PduType::from(self.pdu_tag)
    }

    /// `snmp.request_id`
    pub fn request_id(&self) -> i64 {
        self.request_id
    }

    /// `snmp.error_status`
    pub fn error_status(&self) -> i64 {
        self.error_status
    }

    /// `snmp.error_index`
    pub fn error_index(&self) -> i64 {
        self.error_index
    }

    /// The variable bindings: (OID content bytes, value tag, value bytes).
    pub fn bindings(&self) -> Bindings<'a> {
        let list = match tlv(self.bindings, 0) {
            Some((tag::SEQUENCE, list, _)) => list,
            _ => &[],
        };
        Bindings { list, at: 0 }
    }

    /// The value of the binding with this OID when it is an OCTET STRING or an OID.
    pub fn value_of(&self, oid: &[u8]) -> Option<Binding<'a>> {
        self.bindings().find(|b| b.oid == oid)
    }
}

/// One variable binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The OID's BER content bytes (compare with [`oid`]).
    pub oid: &'a [u8],
    pub value_tag: u8,
    pub value: &'a [u8],
}

/// The walk over a VarBindList.
#[derive(Clone, Debug)]
pub struct Bindings<'a> {
    list: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Bindings<'a> {
    type Item = Binding<'a>;

    fn next(&mut self) -> Option<Binding<'a>> {
        let (t, binding, next) = tlv(self.list, self.at)?;
        if t != tag::SEQUENCE {
            self.at = self.list.len();
            return None;
        }
        self.at = next;
        let (oid_tag, oid, after) = tlv(binding, 0)?;
        if oid_tag != tag::OBJECT_IDENTIFIER {
            return None;
        }
        let (value_tag, value, _) = tlv(binding, after)?;
        Some(Binding {
            oid,
            value_tag,
            value,
        })
    }
}

/// Writes an OID's dotted text into `out` (e.g. "1.3.6.1.4.1.9.1.1208"); the text.
pub fn oid_text<'o>(oid: &[u8], out: &'o mut [u8]) -> &'o [u8] {
    let mut written = 0;
    let mut push = |text: &[u8], written: &mut usize| {
        let n = text.len().min(out.len().saturating_sub(*written));
        out[*written..*written + n].copy_from_slice(&text[..n]);
        *written += n;
    };
    let mut value: u64 = 0;
    let mut first = true;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            if value > u64::MAX >> 7 {
                break;
            }
            continue;
        }
        let mut digits = [0u8; 20];
        let text = |n: u64, digits: &mut [u8; 20]| -> usize {
            let mut n = n;
            let mut i = digits.len();
            loop {
                i -= 1;
                digits[i] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            i
        };
        if first {
            let (a, b) = if value < 40 {
                (0, value)
            } else if value < 80 {
                (1, value - 40)
            } else {
                (2, value - 80)
            };
            let i = text(a, &mut digits);
            push(&digits[i..], &mut written);
            push(b".", &mut written);
            let i = text(b, &mut digits);
            push(&digits[i..], &mut written);
            first = false;
        } else {
            push(b".", &mut written);
            let i = text(value, &mut digits);
            push(&digits[i..], &mut written);
        }
        value = 0;
    }
    &out[..written]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::test_capture::hex;

    /// Built from RFC 1157 §4 and RFC 3416 (no shared capture carries SNMP): a v2c
    /// GetResponse, community "public", request id 0x1234, bindings sysDescr.0 =
    /// "SIMATIC NET", sysObjectID.0 = 1.3.6.1.4.1.4329.6, sysName.0 = "scalance-1",
    /// sysLocation.0 = "hall 2".
    pub(crate) const V2C_SYSTEM_RESPONSE: &str = "3074 020101 0406 7075626c6963 a267 \
        02021234 020100 020100 305b \
        3017 06082b06010201010100 040b 53494d41544943204e4554 \
        3014 06082b06010201010200 0608 2b06010401a16906 \
        3016 06082b06010201010500 040a 7363616c616e63652d31 \
        3012 06082b06010201010600 0406 68616c6c2032";

    #[test]
    fn get_response_bindings_without_the_community() {
        let buf = hex(V2C_SYSTEM_RESPONSE);
        let snmp = Snmp::new_checked(&buf).unwrap();
        assert_eq!(snmp.version(), 1);
        assert_eq!(snmp.pdu_type(), PduType::GetResponse);
        assert_eq!(snmp.request_id(), 0x1234);
        assert_eq!(snmp.error_status(), 0);
        assert_eq!(snmp.bindings().count(), 4);
        assert_eq!(
            snmp.value_of(oid::SYS_DESCR).map(|b| b.value),
            Some(&b"SIMATIC NET"[..])
        );
        assert_eq!(
            snmp.value_of(oid::SYS_NAME).map(|b| b.value),
            Some(&b"scalance-1"[..])
        );
        assert_eq!(
            snmp.value_of(oid::SYS_LOCATION).map(|b| b.value),
            Some(&b"hall 2"[..])
        );
        let object = snmp.value_of(oid::SYS_OBJECT_ID).unwrap();
        assert_eq!(object.value_tag, tag::OBJECT_IDENTIFIER);
        let mut out = [0u8; 64];
        assert_eq!(oid_text(object.value, &mut out), b"1.3.6.1.4.1.4329.6");
        // Nothing in the view's debug output carries the community.
        assert!(!format!("{snmp:?}").contains("public"));
    }

    #[test]
    fn other_versions_and_garbage() {
        // SNMPv3: version 3.
        assert_eq!(
            Snmp::new_checked(&[0x30, 0x03, 0x02, 0x01, 0x03]),
            Err(Error::UnsupportedVersion(3))
        );
        assert_eq!(
            Snmp::new_checked(&[0x30, 0x05, 0x02]),
            Err(Error::BadEncoding)
        );
        assert_eq!(Snmp::new_checked(&[]), Err(Error::BadEncoding));
    }
}
