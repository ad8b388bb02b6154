//! SNMP v1 and v2c messages (RFC 1157 §4, RFC 3416 §3) in BER (X.690): an NMS's
//! GetRequest for the MIB-II system group (RFC 1213 §6.3) and the agent's
//! GetResponse.

use super::ber::push_tlv;
use super::{Pdu, Proto};

/// The agent port (RFC 3417 §3).
pub const AGENT_PORT: u16 = 161;
/// The community the plant's agents answer (read-only, the factory default).
pub const COMMUNITY: &str = "public";

/// Message versions (RFC 1901 §3: v2c is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2c,
}

impl Version {
    fn number(self) -> u8 {
        match self {
            Version::V1 => 0,
            Version::V2c => 1,
        }
    }
}

/// MIB-II system group objects asked for, in order: sysDescr.0, sysObjectID.0,
/// sysName.0 (1.3.6.1.2.1.1.{1,2,5}.0).
pub const SYSTEM_OIDS: [&[u32]; 3] = [
    &[1, 3, 6, 1, 2, 1, 1, 1, 0],
    &[1, 3, 6, 1, 2, 1, 1, 2, 0],
    &[1, 3, 6, 1, 2, 1, 1, 5, 0],
];

/// An agent's system group: sysDescr, sysObjectID (dotted arcs), sysName.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    pub descr: String,
    pub object_id: Vec<u32>,
    pub name: String,
}

/// A BER INTEGER in its fewest octets (two's complement).
fn integer(out: &mut Vec<u8>, value: i32) {
    let bytes = value.to_be_bytes();
    let mut start = 0;
    while start < 3 {
        let (first, next) = (bytes[start], bytes[start + 1]);
        if (first == 0 && next & 0x80 == 0) || (first == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    push_tlv(out, 0x02, &bytes[start..]);
}

/// An OBJECT IDENTIFIER's content octets: the first two arcs in one, then base 128.
fn oid(arcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arcs.len() + 4);
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        _ => (0, arcs),
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        let mut septets = [0u8; 5];
        let mut n = 0;
        let mut value = arc;
        loop {
            septets[n] = (value & 0x7f) as u8;
            n += 1;
            value >>= 7;
            if value == 0 {
                break;
            }
        }
        for i in (0..n).rev() {
            out.push(septets[i] | if i > 0 { 0x80 } else { 0 });
        }
    }
    out
}

/// A message: SEQUENCE { version, community, PDU { request-id, error-status 0,
/// error-index 0, VarBindList } }.
fn message(
    out: &mut Vec<u8>,
    version: Version,
    pdu_tag: u8,
    request_id: i32,
    bindings: &[(&[u32], Vec<u8>)],
) {
    let mut list = Vec::with_capacity(256);
    for (name, value) in bindings {
        let mut binding = Vec::with_capacity(value.len() + 16);
        push_tlv(&mut binding, 0x06, &oid(name));
        binding.extend_from_slice(value);
        push_tlv(&mut list, 0x30, &binding);
    }
    let mut pdu = Vec::with_capacity(list.len() + 16);
    integer(&mut pdu, request_id);
    integer(&mut pdu, 0);
    integer(&mut pdu, 0);
    push_tlv(&mut pdu, 0x30, &list);
    let mut body = Vec::with_capacity(pdu.len() + 16);
    integer(&mut body, i32::from(version.number()));
    push_tlv(&mut body, 0x04, COMMUNITY.as_bytes());
    push_tlv(&mut body, pdu_tag, &pdu);
    push_tlv(out, 0x30, &body);
}

/// A GetRequest for the system group (values NULL). The sensor reads no requests, so
/// the truth counts none: no entry.
pub fn get_system(out: &mut Vec<u8>, version: Version, request_id: i32) {
    let null = vec![0x05, 0x00];
    let bindings: Vec<(&[u32], Vec<u8>)> =
        SYSTEM_OIDS.iter().map(|oid| (*oid, null.clone())).collect();
    message(out, version, 0xa0, request_id, &bindings);
}

/// The agent's GetResponse with its system group; truth key
/// `"<v1|v2c>/get-response"`.
pub fn system_response(
    out: &mut Vec<u8>,
    version: Version,
    request_id: i32,
    system: &System,
) -> Pdu {
    let mut descr = Vec::new();
    push_tlv(&mut descr, 0x04, system.descr.as_bytes());
    let mut object_id = Vec::new();
    push_tlv(&mut object_id, 0x06, &oid(&system.object_id));
    let mut name = Vec::new();
    push_tlv(&mut name, 0x04, system.name.as_bytes());
    let bindings = [
        (SYSTEM_OIDS[0], descr),
        (SYSTEM_OIDS[1], object_id),
        (SYSTEM_OIDS[2], name),
    ];
    message(out, version, 0xa2, request_id, &bindings);
    Pdu {
        proto: Proto::Snmp,
        function: match version {
            Version::V1 => "v1/get-response",
            Version::V2c => "v2c/get-response",
        },
        counts_as_pdu: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::snmp::{oid, oid_text, tag, PduType, Snmp};

    fn system() -> System {
        System {
            // Longer than 127 bytes: the long length form.
            descr: format!(
                "Cisco IOS Software, IE-3400 Software, Version 17.9.4\r\n{}",
                "x".repeat(200)
            ),
            object_id: vec![1, 3, 6, 1, 4, 1, 9, 1, 2685],
            name: "sw-cell-02".to_owned(),
        }
    }

    /// The sensor's view reads the request and the response of both versions: PDU
    /// type, request id, and each system value.
    #[test]
    fn the_sensor_reads_requests_and_responses() {
        for (version, number) in [(Version::V1, 0), (Version::V2c, 1)] {
            for request_id in [1, 127, 128, -1, 0x1234_5678] {
                let mut out = Vec::new();
                get_system(&mut out, version, request_id);
                let request = Snmp::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(request.version(), number);
                assert_eq!(request.pdu_type(), PduType::GetRequest);
                assert_eq!(request.request_id(), i64::from(request_id));
                assert_eq!(request.bindings().count(), 3);
                assert_eq!(
                    request.value_of(oid::SYS_NAME).map(|b| b.value_tag),
                    Some(tag::NULL)
                );

                let mut out = Vec::new();
                let pdu = system_response(&mut out, version, request_id, &system());
                assert_eq!(pdu.proto, Proto::Snmp);
                let response = Snmp::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(response.version(), number);
                assert_eq!(response.pdu_type(), PduType::GetResponse);
                assert_eq!(response.request_id(), i64::from(request_id));
                assert_eq!(response.error_status(), 0);
                assert_eq!(
                    response.value_of(oid::SYS_DESCR).map(|b| b.value),
                    Some(system().descr.as_bytes())
                );
                assert_eq!(
                    response.value_of(oid::SYS_NAME).map(|b| b.value),
                    Some(&b"sw-cell-02"[..])
                );
                let object = response
                    .value_of(oid::SYS_OBJECT_ID)
                    .unwrap_or_else(|| panic!("no sysObjectID"));
                assert_eq!(object.value_tag, tag::OBJECT_IDENTIFIER);
                let mut text = [0u8; 64];
                assert_eq!(oid_text(object.value, &mut text), b"1.3.6.1.4.1.9.1.2685");
            }
        }
    }
}
