//! S7comm over ISO-on-TCP: TPKT (RFC 1006: version 3, length), COTP (ISO 8073:
//! connection request 0xE0, confirm 0xD0, data 0xF0) and the S7comm header (protocol id
//! 0x32, ROSCTR, PDU reference, parameter and data lengths; Wireshark `s7comm`).

use rand::Rng;

use super::{Pdu, Proto};

const ROSCTR_JOB: u8 = 1;
const ROSCTR_ACK_DATA: u8 = 3;
const FUNCTION_READ_VAR: u8 = 0x04;
const FUNCTION_SETUP_COMMUNICATION: u8 = 0xf0;
/// COTP parameters: calling TSAP 0x0100, called TSAP 0x0102 (rack 0, slot 2), TPDU size
/// 1024 (code 0x0A).
const COTP_PARAMETERS: [u8; 11] = [
    0xc1, 0x02, 0x01, 0x00, 0xc2, 0x02, 0x01, 0x02, 0xc0, 0x01, 0x0a,
];

pub(super) fn tpkt(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(&[0x03, 0x00]);
    out.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    out.extend_from_slice(body);
}

/// COTP Connection Request (class 0) from `src_ref`. Not an S7comm PDU.
pub fn connect_request(out: &mut Vec<u8>, src_ref: u16) {
    let mut body = vec![(6 + COTP_PARAMETERS.len()) as u8, 0xe0, 0x00, 0x00];
    body.extend_from_slice(&src_ref.to_be_bytes());
    body.push(0x00);
    body.extend_from_slice(&COTP_PARAMETERS);
    tpkt(out, &body);
}

/// COTP Connection Confirm. Not an S7comm PDU.
pub fn connect_confirm(out: &mut Vec<u8>, dst_ref: u16, src_ref: u16) {
    let mut body = vec![(6 + COTP_PARAMETERS.len()) as u8, 0xd0];
    body.extend_from_slice(&dst_ref.to_be_bytes());
    body.extend_from_slice(&src_ref.to_be_bytes());
    body.push(0x00);
    body.extend_from_slice(&COTP_PARAMETERS);
    tpkt(out, &body);
}

fn key(rosctr: u8, function: u8) -> &'static str {
    match (rosctr, function) {
        (ROSCTR_JOB, FUNCTION_SETUP_COMMUNICATION) => "1/240",
        (ROSCTR_ACK_DATA, FUNCTION_SETUP_COMMUNICATION) => "3/240",
        (ROSCTR_JOB, FUNCTION_READ_VAR) => "1/4",
        (ROSCTR_ACK_DATA, FUNCTION_READ_VAR) => "3/4",
        _ => "other",
    }
}

/// A COTP DT TPDU (last data unit) carrying one S7comm PDU.
fn s7_pdu(out: &mut Vec<u8>, rosctr: u8, pdu_ref: u16, parameters: &[u8], data: &[u8]) -> Pdu {
    let mut body = Vec::with_capacity(3 + 12 + parameters.len() + data.len());
    body.extend_from_slice(&[0x02, 0xf0, 0x80]);
    body.extend_from_slice(&[0x32, rosctr, 0x00, 0x00]);
    body.extend_from_slice(&pdu_ref.to_be_bytes());
    body.extend_from_slice(&(parameters.len() as u16).to_be_bytes());
    body.extend_from_slice(&(data.len() as u16).to_be_bytes());
    if rosctr == ROSCTR_ACK_DATA {
        body.extend_from_slice(&[0x00, 0x00]); // error class, error code
    }
    body.extend_from_slice(parameters);
    body.extend_from_slice(data);
    tpkt(out, &body);
    Pdu {
        proto: Proto::S7comm,
        function: key(rosctr, parameters.first().copied().unwrap_or(0)),
        counts_as_pdu: true,
    }
}

/// Setup communication job: max AmQ calling/called 1, PDU length 480.
pub fn setup_job(out: &mut Vec<u8>, pdu_ref: u16) -> Pdu {
    s7_pdu(
        out,
        ROSCTR_JOB,
        pdu_ref,
        &[0xf0, 0x00, 0x00, 0x01, 0x00, 0x01, 0x01, 0xe0],
        &[],
    )
}

/// Setup communication ack: PDU length negotiated down to 240.
pub fn setup_ack(out: &mut Vec<u8>, pdu_ref: u16) -> Pdu {
    s7_pdu(
        out,
        ROSCTR_ACK_DATA,
        pdu_ref,
        &[0xf0, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0xf0],
        &[],
    )
}

/// One data-block item of a read: DB number, byte offset, byte count.
#[derive(Clone, Copy, Debug)]
pub struct Item {
    pub db: u16,
    pub offset: u32,
    pub length: u16,
}

/// Read var job with S7-ANY items (syntax id 0x10, transport size BYTE, area DB 0x84,
/// address in bits).
pub fn read_job(out: &mut Vec<u8>, pdu_ref: u16, items: &[Item]) -> Pdu {
    let mut parameters = vec![FUNCTION_READ_VAR, items.len() as u8];
    for item in items {
        parameters.extend_from_slice(&[0x12, 0x0a, 0x10, 0x02]);
        parameters.extend_from_slice(&item.length.to_be_bytes());
        parameters.extend_from_slice(&item.db.to_be_bytes());
        parameters.push(0x84);
        let bit_address = (item.offset << 3).to_be_bytes();
        parameters.extend_from_slice(bit_address.get(1..).unwrap_or_default());
    }
    s7_pdu(out, ROSCTR_JOB, pdu_ref, &parameters, &[])
}

/// Read var ack: per item return code 0xFF (success), transport size 0x04 (length in
/// bits), the data, and a fill byte after odd-length items that are not the last.
pub fn read_ack<R: Rng>(out: &mut Vec<u8>, pdu_ref: u16, items: &[Item], rng: &mut R) -> Pdu {
    let parameters = [FUNCTION_READ_VAR, items.len() as u8];
    let mut data = Vec::with_capacity(items.iter().map(|i| 5 + usize::from(i.length)).sum());
    for (index, item) in items.iter().enumerate() {
        data.extend_from_slice(&[0xff, 0x04]);
        data.extend_from_slice(&(item.length * 8).to_be_bytes());
        for _ in 0..item.length {
            data.push(rng.random());
        }
        if item.length % 2 == 1 && index + 1 < items.len() {
            data.push(0x00);
        }
    }
    s7_pdu(out, ROSCTR_ACK_DATA, pdu_ref, &parameters, &data)
}

const ROSCTR_USERDATA: u8 = 7;

/// Userdata read-SZL request (function group 4 CPU functions, subfunction 1; type 4
/// request): data return code 0xFF, transport size 0x09 (octet string), the SZL id and
/// index.
pub fn szl_request(out: &mut Vec<u8>, pdu_ref: u16, szl_id: u16, index: u16) -> Pdu {
    let parameters = [0x00, 0x01, 0x12, 0x04, 0x11, 0x44, 0x01, 0x00];
    let mut data = vec![0xff, 0x09, 0x00, 0x04];
    data.extend_from_slice(&szl_id.to_be_bytes());
    data.extend_from_slice(&index.to_be_bytes());
    s7_pdu(out, ROSCTR_USERDATA, pdu_ref, &parameters, &data)
}

/// Userdata read-SZL response (type 8), last data unit, no error: the SZL header with
/// a 28-byte record length and no records.
pub fn szl_response(out: &mut Vec<u8>, pdu_ref: u16, szl_id: u16, index: u16) -> Pdu {
    let parameters = [
        0x00, 0x01, 0x12, 0x08, 0x12, 0x84, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00,
    ];
    let mut data = vec![0xff, 0x09, 0x00, 0x08];
    data.extend_from_slice(&szl_id.to_be_bytes());
    data.extend_from_slice(&index.to_be_bytes());
    data.extend_from_slice(&[0x00, 0x1c, 0x00, 0x00]);
    s7_pdu(out, ROSCTR_USERDATA, pdu_ref, &parameters, &data)
}

/// PLC STOP job (function 0x29) with the PI service "P_PROGRAM".
pub fn plc_stop(out: &mut Vec<u8>, pdu_ref: u16) -> Pdu {
    let mut parameters = vec![0x29, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09];
    parameters.extend_from_slice(b"P_PROGRAM");
    s7_pdu(out, ROSCTR_JOB, pdu_ref, &parameters, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_request_is_a_22_byte_tpkt() {
        let mut out = Vec::new();
        connect_request(&mut out, 0x0001);
        assert_eq!(out.len(), 22);
        assert_eq!(
            out.get(..6),
            Some(&[0x03, 0x00, 0x00, 0x16, 0x11, 0xe0][..])
        );
    }

    #[test]
    fn setup_job_header_lengths() {
        let mut out = Vec::new();
        let pdu = setup_job(&mut out, 0x0100);
        assert_eq!(pdu.function, "1/240");
        // TPKT 4 + COTP DT 3 + S7 header 10 + parameters 8.
        assert_eq!(out.len(), 25);
        assert_eq!(out.get(7..17), Some(&[0x32, 1, 0, 0, 1, 0, 0, 8, 0, 0][..]));
    }

    #[test]
    fn read_item_address_is_in_bits() {
        let mut out = Vec::new();
        let item = Item {
            db: 5,
            offset: 0x10,
            length: 4,
        };
        let pdu = read_job(&mut out, 2, &[item]);
        assert_eq!(pdu.function, "1/4");
        // Parameters begin after TPKT 4 + COTP 3 + header 10.
        assert_eq!(
            out.get(17..31),
            Some(
                &[
                    0x04, 0x01, 0x12, 0x0a, 0x10, 0x02, 0x00, 0x04, 0x00, 0x05, 0x84, 0x00, 0x00,
                    0x80
                ][..]
            )
        );
    }
}
