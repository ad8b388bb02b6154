//! S7comm-plus (S7-1200/1500) over ISO-on-TCP for scenarios: a SetVariable request on
//! the CPU's requested operating state and its response, in COTP DT units. The layout
//! follows the Wireshark S7comm-plus plugin (`s7comm-plus.*`): frame header (0x72, PDU
//! type, data length), data part (opcode, reserved, function, reserved, sequence
//! number; a request adds the session id and a transport flags byte) and the trailer
//! `72 <type> 00 00`. Connection set-up reuses the COTP CR/CC of [`super::s7comm`].

/// PDU type 2: data without an integrity part (S7-1200 firmware V3/V4 sessions).
const PDU_TYPE_DATA: u8 = 0x02;
const OPCODE_REQUEST: u8 = 0x31;
const OPCODE_RESPONSE: u8 = 0x32;
const FUNCTION_SET_VARIABLE: u16 = 0x04f2;
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

/// A SetVariable request in `session` asking the CPU for operating `state`.
pub fn cpu_state_request(out: &mut Vec<u8>, session: u32, sequence: u16, state: u8) {
    let mut data = vec![OPCODE_REQUEST, 0x00, 0x00];
    data.extend_from_slice(&FUNCTION_SET_VARIABLE.to_be_bytes());
    data.extend_from_slice(&[0x00, 0x00]);
    data.extend_from_slice(&sequence.to_be_bytes());
    data.extend_from_slice(&session.to_be_bytes());
    data.push(0x34); // transport flags
    data.extend_from_slice(&CPU_EXEC_UNIT.to_be_bytes());
    data.push(0x01); // one attribute
    data.extend_from_slice(&OPERATING_STATE_REQ_VLQ);
    data.extend_from_slice(&[0x00, DATATYPE_UDINT, state, 0x00]);
    cotp_frame(out, &data);
}

/// The SetVariable response to `sequence` (return value 0: success).
pub fn set_variable_response(out: &mut Vec<u8>, sequence: u16) {
    let mut data = vec![OPCODE_RESPONSE, 0x00, 0x00];
    data.extend_from_slice(&FUNCTION_SET_VARIABLE.to_be_bytes());
    data.extend_from_slice(&[0x00, 0x00]);
    data.extend_from_slice(&sequence.to_be_bytes());
    data.push(0x34); // transport flags
    data.extend_from_slice(&[0x00; 6]);
    cotp_frame(out, &data);
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
        let pdu = Pdu::new_checked(&out[7..]).unwrap();
        assert_eq!(pdu.function(), Some(Function::SET_VARIABLE));
        assert_eq!(pdu.session_id(), Some(0x3be));
        assert_eq!(pdu.sequence_number(), Some(9));
        assert_eq!(pdu.cpu_state_request(), Some(CpuStateRequest::Stop));
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
        assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), out.len());

        let mut out = Vec::new();
        set_variable_response(&mut out, 9);
        let pdu = Pdu::new_checked(&out[7..]).unwrap();
        assert_eq!(pdu.function(), Some(Function::SET_VARIABLE));
        assert_eq!(pdu.sequence_number(), Some(9));
        assert_eq!(pdu.cpu_state_request(), None);
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
    }
}
