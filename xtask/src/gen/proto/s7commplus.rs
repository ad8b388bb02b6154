//! S7comm-plus (S7-1200/1500) over ISO-on-TCP: an HMI's GetMultiVariables polls and
//! their responses (the mix), a SetVariable request on the CPU's requested operating
//! state and its response (scenarios), in COTP DT units. The layout
//! follows the Wireshark S7comm-plus plugin (`s7comm-plus.*`): frame header (0x72, PDU
//! type, data length), data part (opcode, reserved, function, reserved, sequence
//! number; a request adds the session id and a transport flags byte) and the trailer
//! `72 <type> 00 00`. Connection set-up reuses the COTP CR/CC of [`super::s7comm`].

use super::{Pdu, Proto};

/// PDU type 2: data without an integrity part (S7-1200 firmware V3/V4 sessions).
const PDU_TYPE_DATA: u8 = 0x02;
const OPCODE_REQUEST: u8 = 0x31;
const OPCODE_RESPONSE: u8 = 0x32;
const FUNCTION_SET_VARIABLE: u16 = 0x04f2;
const FUNCTION_GET_MULTI_VARIABLES: u16 = 0x054c;
/// The CPU execution unit object (52) and its requested operating state attribute
/// (2167, VLQ `90 77`).
const CPU_EXEC_UNIT: u32 = 52;
const OPERATING_STATE_REQ_VLQ: [u8; 2] = [0x90, 0x77];
/// The plugin's datatype UDINT.
const DATATYPE_UDINT: u8 = 0x04;
/// Requested operating states: 1 STOP, 3 RUN.
pub const STATE_STOP: u8 = 1;

/// One S7comm-plus frame with `data` as its data part, in a COTP DT (last unit).
fn cotp_frame(out: &mut Vec<u8>, data: &[u8]) {
    let mut body = vec![0x02, 0xf0, 0x80, 0x72, PDU_TYPE_DATA];
    body.extend_from_slice(&(data.len() as u16).to_be_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(&[0x72, PDU_TYPE_DATA, 0x00, 0x00]);
    super::s7comm::tpkt(out, &body);
}

/// A request's data part: opcode, reserved, function, reserved, sequence number,
/// session id and transport flags, then `body`.
fn request(out: &mut Vec<u8>, function: u16, session: u32, sequence: u16, body: &[u8]) {
    let mut data = vec![OPCODE_REQUEST, 0x00, 0x00];
    data.extend_from_slice(&function.to_be_bytes());
    data.extend_from_slice(&[0x00, 0x00]);
    data.extend_from_slice(&sequence.to_be_bytes());
    data.extend_from_slice(&session.to_be_bytes());
    data.push(0x34); // transport flags
    data.extend_from_slice(body);
    cotp_frame(out, &data);
}

/// A response's data part: opcode, reserved, function, reserved, sequence number and
/// transport flags, then `body`.
fn response(out: &mut Vec<u8>, function: u16, sequence: u16, body: &[u8]) {
    let mut data = vec![OPCODE_RESPONSE, 0x00, 0x00];
    data.extend_from_slice(&function.to_be_bytes());
    data.extend_from_slice(&[0x00, 0x00]);
    data.extend_from_slice(&sequence.to_be_bytes());
    data.push(0x34); // transport flags
    data.extend_from_slice(body);
    cotp_frame(out, &data);
}

/// A SetVariable request in `session` asking the CPU for operating `state`.
pub fn cpu_state_request(out: &mut Vec<u8>, session: u32, sequence: u16, state: u8) {
    let mut body = CPU_EXEC_UNIT.to_be_bytes().to_vec();
    body.push(0x01); // one attribute
    body.extend_from_slice(&OPERATING_STATE_REQ_VLQ);
    body.extend_from_slice(&[0x00, DATATYPE_UDINT, state, 0x00]);
    request(out, FUNCTION_SET_VARIABLE, session, sequence, &body);
}

/// The SetVariable response to `sequence` (return value 0: success).
pub fn set_variable_response(out: &mut Vec<u8>, sequence: u16) {
    response(out, FUNCTION_SET_VARIABLE, sequence, &[0x00; 6]);
}

/// A GetMultiVariables request for `items` variables. Only the header matters to the
/// sensor (a Read) and tshark 4.0 has no S7comm-plus dissector; the body is the link
/// id 0, the item count and, per item, four address bytes.
pub fn get_multi_variables(out: &mut Vec<u8>, session: u32, sequence: u16, items: u8) -> Pdu {
    let mut body = vec![0x00, 0x00, 0x00, 0x00, items];
    for item in 0..items {
        body.extend_from_slice(&[0x00, 0x01, 0x00, item]);
    }
    body.extend_from_slice(&[0x00; 4]);
    request(out, FUNCTION_GET_MULTI_VARIABLES, session, sequence, &body);
    Pdu {
        proto: Proto::S7commPlus,
        function: "49/1356",
        counts_as_pdu: true,
    }
}

/// The GetMultiVariables response to `sequence`: return value 0, then one REAL value
/// (datatype 0x08) per item.
pub fn get_multi_variables_response(out: &mut Vec<u8>, sequence: u16, values: &[f32]) -> Pdu {
    let mut body = vec![0x00];
    for (item, value) in (1u8..).zip(values) {
        body.extend_from_slice(&[item, 0x00, 0x08]);
        body.extend_from_slice(&value.to_be_bytes());
    }
    body.extend_from_slice(&[0x00; 5]);
    response(out, FUNCTION_GET_MULTI_VARIABLES, sequence, &body);
    Pdu {
        proto: Proto::S7commPlus,
        function: "50/1356",
        counts_as_pdu: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::s7commplus::{CpuStateRequest, Function, Pdu};

    /// The frames parse with the sensor's own view: the request is a STOP on the CPU
    /// state, the response a SetVariable response; neither has anomalies.
    #[test]
    fn cpu_stop_request_and_response_parse() {
        let mut out = Vec::new();
        cpu_state_request(&mut out, 0x3be, 9, STATE_STOP);
        // TPKT (4) and COTP DT (3) precede the S7comm-plus frame.
        let pdu = Pdu::new_checked(&out[7..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pdu.function(), Some(Function::SET_VARIABLE));
        assert_eq!(pdu.session_id(), Some(0x3be));
        assert_eq!(pdu.sequence_number(), Some(9));
        assert_eq!(pdu.cpu_state_request(), Some(CpuStateRequest::Stop));
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
        assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), out.len());

        let mut out = Vec::new();
        set_variable_response(&mut out, 9);
        let pdu = Pdu::new_checked(&out[7..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pdu.function(), Some(Function::SET_VARIABLE));
        assert_eq!(pdu.sequence_number(), Some(9));
        assert_eq!(pdu.cpu_state_request(), None);
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
    }

    /// The polls parse as GetMultiVariables request and response with the sequence
    /// number, and the truth keys are "<opcode>/<function>" in decimal.
    #[test]
    fn get_multi_variables_polls_parse() {
        let mut out = Vec::new();
        let key = get_multi_variables(&mut out, 0x3be, 17, 3);
        let pdu = Pdu::new_checked(&out[7..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pdu.function(), Some(Function::GET_MULTI_VARIABLES));
        assert_eq!(pdu.sequence_number(), Some(17));
        assert_eq!(pdu.session_id(), Some(0x3be));
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
        assert_eq!(key.function, "49/1356");

        let mut out = Vec::new();
        let key = get_multi_variables_response(&mut out, 17, &[1.5, 2.0, -3.25]);
        let pdu = Pdu::new_checked(&out[7..]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pdu.function(), Some(Function::GET_MULTI_VARIABLES));
        assert_eq!(pdu.sequence_number(), Some(17));
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
        assert_eq!(key.function, "50/1356");
        assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), out.len());
    }
}
