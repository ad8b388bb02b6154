//! IEC 60870-5-104 APDUs (IEC 60870-5-104 §5, ASDUs per IEC 60870-5-101 §7): start
//! octet 0x68, length, four control octets, then for I-format an ASDU with a one-octet
//! cause of transmission, one-octet originator, two-octet common address and
//! three-octet information object addresses (the 104 profile).

use super::{Pdu, Proto};

const START: u8 = 0x68;
/// Causes of transmission (101 §7.2.3).
pub const COT_SPONTANEOUS: u8 = 3;
pub const COT_ACTIVATION: u8 = 6;
pub const COT_ACTIVATION_CON: u8 = 7;
pub const COT_ACTIVATION_TERM: u8 = 10;
pub const COT_INTERROGATED: u8 = 20;
/// Type identifications (101 §7.2.1.1).
pub const M_ME_NC_1: u8 = 13;
pub const C_SC_NA_1: u8 = 45;
pub const C_IC_NA_1: u8 = 100;
pub const C_RP_NA_1: u8 = 105;
/// U-format functions (104 §5.3): STARTDT act/con, TESTFR act/con.
pub const STARTDT_ACT: u8 = 0x04;
pub const STARTDT_CON: u8 = 0x08;
pub const TESTFR_ACT: u8 = 0x40;
pub const TESTFR_CON: u8 = 0x80;

/// A U-format APDU (`control` is the first control octet without its 0b11 format bits).
pub fn u_frame(out: &mut Vec<u8>, function: u8) -> Pdu {
    out.extend_from_slice(&[START, 4, function | 0x03, 0, 0, 0]);
    Pdu {
        proto: Proto::Iec104,
        function: "U",
        counts_as_pdu: true,
    }
}

/// An S-format APDU acknowledging up to `recv_seq`.
pub fn s_frame(out: &mut Vec<u8>, recv_seq: u16) -> Pdu {
    out.extend_from_slice(&[START, 4, 0x01, 0]);
    out.extend_from_slice(&(recv_seq << 1).to_le_bytes());
    Pdu {
        proto: Proto::Iec104,
        function: "S",
        counts_as_pdu: true,
    }
}

/// One information object: its address and element octets.
pub struct Object<'a> {
    pub address: u32,
    pub element: &'a [u8],
}

/// An I-format APDU carrying one ASDU of `type_id` with `objects` (not a sequence).
pub fn i_frame(
    out: &mut Vec<u8>,
    seqs: (u16, u16),
    type_id: u8,
    cause: u8,
    common_address: u16,
    objects: &[Object<'_>],
) -> Pdu {
    let body: usize = objects.iter().map(|o| 3 + o.element.len()).sum();
    out.push(START);
    out.push((4 + 6 + body) as u8);
    out.extend_from_slice(&(seqs.0 << 1).to_le_bytes());
    out.extend_from_slice(&(seqs.1 << 1).to_le_bytes());
    out.extend_from_slice(&[type_id, objects.len() as u8, cause, 0]);
    out.extend_from_slice(&common_address.to_le_bytes());
    for object in objects {
        out.extend_from_slice(&object.address.to_le_bytes()[..3]);
        out.extend_from_slice(object.element);
    }
    Pdu {
        proto: Proto::Iec104,
        function: function_key(type_id),
        counts_as_pdu: true,
    }
}

fn function_key(type_id: u8) -> &'static str {
    match type_id {
        M_ME_NC_1 => "I/13",
        C_SC_NA_1 => "I/45",
        C_IC_NA_1 => "I/100",
        C_RP_NA_1 => "I/105",
        _ => "I/other",
    }
}

/// C_IC_NA_1 station interrogation (QOI 20) with `cause` (act or actcon/actterm).
pub fn interrogation(out: &mut Vec<u8>, seqs: (u16, u16), cause: u8, common: u16) -> Pdu {
    let objects = [Object {
        address: 0,
        element: &[20],
    }];
    i_frame(out, seqs, C_IC_NA_1, cause, common, &objects)
}

/// M_ME_NC_1 short floating point measurands (value, QDS 0) at `first..`.
pub fn measurands(
    out: &mut Vec<u8>,
    seqs: (u16, u16),
    cause: u8,
    common: u16,
    first: u32,
    values: &[f32],
) -> Pdu {
    let elements: Vec<[u8; 5]> = values
        .iter()
        .map(|v| {
            let b = v.to_le_bytes();
            [b[0], b[1], b[2], b[3], 0]
        })
        .collect();
    let objects: Vec<Object<'_>> = elements
        .iter()
        .enumerate()
        .map(|(i, e)| Object {
            address: first + i as u32,
            element: e,
        })
        .collect();
    i_frame(out, seqs, M_ME_NC_1, cause, common, &objects)
}

/// C_SC_NA_1 single command (SCO: execute, state `on`) to object `address`.
pub fn single_command(
    out: &mut Vec<u8>,
    seqs: (u16, u16),
    cause: u8,
    common: u16,
    address: u32,
    on: bool,
) -> Pdu {
    let objects = [Object {
        address,
        element: &[u8::from(on)],
    }];
    i_frame(out, seqs, C_SC_NA_1, cause, common, &objects)
}

/// C_RP_NA_1 reset process command (QRP 1: general reset of process).
pub fn reset_process(out: &mut Vec<u8>, seqs: (u16, u16), cause: u8, common: u16) -> Pdu {
    let objects = [Object {
        address: 0,
        element: &[1],
    }];
    i_frame(out, seqs, C_RP_NA_1, cause, common, &objects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::iec104::{Apdu, Cause, Format, TypeKind};

    #[test]
    fn frames_parse_with_the_sensor_view() {
        let mut out = Vec::new();
        single_command(&mut out, (3, 2), COT_ACTIVATION, 1, 4001, true);
        let apdu = Apdu::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(apdu.format(), Format::I);
        assert!(apdu.anomalies().is_empty(), "{:?}", apdu.anomalies());
        let asdu = apdu.asdu().unwrap_or_else(|| panic!("no asdu"));
        assert_eq!(asdu.type_id().kind(), TypeKind::Operate);
        assert_eq!(asdu.cause(), Cause::Activation);
        assert_eq!(asdu.first_address(), Some(4001));
        let mut out = Vec::new();
        measurands(&mut out, (0, 0), COT_INTERROGATED, 1, 100, &[1.0, 2.5]);
        let apdu = Apdu::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert!(apdu.anomalies().is_empty(), "{:?}", apdu.anomalies());
        let mut out = Vec::new();
        u_frame(&mut out, STARTDT_ACT);
        let apdu = Apdu::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(apdu.format(), Format::U);
        assert!(apdu.anomalies().is_empty());
    }
}
