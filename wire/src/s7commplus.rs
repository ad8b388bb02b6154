//! S7comm-plus (S7-1200/1500, protocol id 0x72) in a COTP DT over ISO-on-TCP: the
//! frame header (protocol id, PDU type, data length), the integrity part of PDU type 3
//! (a digest length and digest), the data part's header (opcode, function, sequence
//! number, session id) and the trailer (`72 <type> 00 00`).
//!
//! [`Pdu::new_checked`] validates the header and that the data length fits; after it
//! succeeds no accessor can panic, and fields past the data answer `None`. The data
//! part's body (object and attribute lists in Siemens' VLQ encoding) is not parsed,
//! except where the sensor needs it ([`Pdu::cpu_state_request`],
//! [`Pdu::order_number_and_firmware`]). Names follow the Wireshark `s7comm_plus`
//! plugin (`s7comm-plus.data.opcode`, `s7comm-plus.data.function`); tshark 4.0 has
//! no S7comm-plus dissector.

use crate::bytes::be16;

/// Errors of the S7comm-plus view; one counter label each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    /// The first byte is not 0x72.
    #[error("protocol id {0:#04x} is not 0x72")]
    BadProtocolId(u8),
}

impl Error {
    /// The metrics label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadProtocolId(_) => "bad_protocol_id",
        }
    }
}

mod field {
    use core::ops::Range;
    // Frame header (`s7comm-plus.header.*`).
    pub const PROTOCOL_ID: usize = 0;
    pub const PDU_TYPE: usize = 1;
    pub const DATA_LENGTH: Range<usize> = 2..4;
    pub const HEADER_END: usize = 4;
    // Data part header, from the data part's start (after any integrity part).
    pub const OPCODE: usize = 0;
    pub const FUNCTION: Range<usize> = 3..5;
    pub const SEQUENCE: Range<usize> = 7..9;
    pub const REQUEST_SESSION: Range<usize> = 9..13;
    pub const REQUEST_BODY: usize = 14;
    pub const RESPONSE_BODY: usize = 10;
    pub const TRAILER_LEN: usize = 4;
}

/// The frame header's length.
pub const HEADER_LEN: usize = field::HEADER_END;
/// S7comm-plus protocol id.
pub const PROTOCOL_ID: u8 = 0x72;

wire_enum! {
    /// The frame header's PDU type (`s7comm-plus.header.version`).
    pub enum PduType {
        Connect = 0x01 => "Connect",
        Data = 0x02 => "Data",
        DataWithIntegrity = 0x03 => "Data (with integrity)",
        KeepAlive = 0xFF => "Keep Alive",
    }
}

wire_enum! {
    /// The data part's opcode (`s7comm-plus.data.opcode`).
    pub enum Opcode {
        Request = 0x31 => "Request",
        Response = 0x32 => "Response",
        Notification = 0x33 => "Notification",
        Response2 = 0x02 => "Response2",
    }
}

/// A function code (`s7comm-plus.data.function`); codes the plugin does not name are
/// kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Function(pub u16);

impl Function {
    pub const ERROR: Function = Function(0x04B1);
    pub const EXPLORE: Function = Function(0x04BB);
    pub const CREATE_OBJECT: Function = Function(0x04CA);
    pub const DELETE_OBJECT: Function = Function(0x04D4);
    pub const SET_VARIABLE: Function = Function(0x04F2);
    pub const GET_VARIABLE: Function = Function(0x04FC);
    pub const ADD_LINK: Function = Function(0x0506);
    pub const REMOVE_LINK: Function = Function(0x051A);
    pub const GET_LINK: Function = Function(0x0524);
    pub const SET_MULTI_VARIABLES: Function = Function(0x0542);
    pub const GET_MULTI_VARIABLES: Function = Function(0x054C);
    pub const BEGIN_SEQUENCE: Function = Function(0x0556);
    pub const END_SEQUENCE: Function = Function(0x0560);
    pub const INVOKE: Function = Function(0x056B);
    pub const SET_VAR_SUBSTREAMED: Function = Function(0x057C);
    pub const GET_VAR_SUBSTREAMED: Function = Function(0x0586);
    pub const GET_VARIABLES_ADDRESS: Function = Function(0x0590);
    pub const ABORT: Function = Function(0x059A);

    /// The plugin's name, `None` for a code it does not name.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Function::ERROR => "Error",
            Function::EXPLORE => "Explore",
            Function::CREATE_OBJECT => "CreateObject",
            Function::DELETE_OBJECT => "DeleteObject",
            Function::SET_VARIABLE => "SetVariable",
            Function::GET_VARIABLE => "GetVariable",
            Function::ADD_LINK => "AddLink",
            Function::REMOVE_LINK => "RemoveLink",
            Function::GET_LINK => "GetLink",
            Function::SET_MULTI_VARIABLES => "SetMultiVariables",
            Function::GET_MULTI_VARIABLES => "GetMultiVariables",
            Function::BEGIN_SEQUENCE => "BeginSequence",
            Function::END_SEQUENCE => "EndSequence",
            Function::INVOKE => "Invoke",
            Function::SET_VAR_SUBSTREAMED => "SetVarSubStreamed",
            Function::GET_VAR_SUBSTREAMED => "GetVarSubStreamed",
            Function::GET_VARIABLES_ADDRESS => "GetVariablesAddress",
            Function::ABORT => "Abort",
            _ => return None,
        })
    }
}

/// The CPU's execution unit object (`NativeObjects.theCPUexecUnit_Rid`, 52) and its
/// requested operating state attribute (`CPUexecUnit.operatingStateREQ`, 2167, VLQ
/// `90 77`): a SetVariable of 1 stops the CPU, of 3 runs it.
pub const CPU_EXEC_UNIT: u32 = 52;
const OPERATING_STATE_REQ_VLQ: [u8; 2] = [0x90, 0x77];

/// The state a SetVariable on the CPU's operating state asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuStateRequest {
    Stop,
    Run,
    Other(u8),
}

/// Spec violations that still parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// No `72 <type> 00 00` trailer after the data part (also every frame but the
    /// last of a PDU split over several frames).
    pub const NO_TRAILER: u16 = 1 << 0;
    /// Bytes after the trailer.
    pub const TRAILING_BYTES: u16 = 1 << 1;
    /// An opcode the plugin does not define (also the continuation frames of a split
    /// PDU, whose data part starts with the PDU's remaining bytes).
    pub const UNKNOWN_OPCODE: u16 = 1 << 2;
    /// A PDU type the plugin does not define.
    pub const UNKNOWN_PDU_TYPE: u16 = 1 << 3;

    const LABELS: [(u16, &'static str); 4] = [
        (Self::NO_TRAILER, "no_trailer"),
        (Self::TRAILING_BYTES, "trailing_bytes"),
        (Self::UNKNOWN_OPCODE, "unknown_opcode"),
        (Self::UNKNOWN_PDU_TYPE, "unknown_pdu_type"),
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

/// One S7comm-plus frame (a COTP DT TSDU starting with 0x72).
#[derive(Clone, Copy, Debug)]
pub struct Pdu<'a> {
    buf: &'a [u8],
}

impl<'a> Pdu<'a> {
    /// Validates the protocol id and that the header and its data length fit.
    pub fn new_checked(buf: &'a [u8]) -> Result<Pdu<'a>, Error> {
        let have = buf.len();
        if have < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                have,
            });
        }
        if buf[field::PROTOCOL_ID] != PROTOCOL_ID {
            return Err(Error::BadProtocolId(buf[field::PROTOCOL_ID]));
        }
        let need = HEADER_LEN + usize::from(be16(buf, field::DATA_LENGTH.start).unwrap_or(0));
        if have < need {
            return Err(Error::Truncated { need, have });
        }
        Ok(Pdu { buf })
    }

    pub fn pdu_type(&self) -> PduType {
        PduType::from(self.buf[field::PDU_TYPE])
    }

    /// The header's data length (integrity part included).
    pub fn data_length(&self) -> u16 {
        be16(self.buf, field::DATA_LENGTH.start).unwrap_or(0)
    }

    fn data_with_integrity(&self) -> &'a [u8] {
        let end = HEADER_LEN + usize::from(self.data_length());
        self.buf.get(HEADER_LEN..end).unwrap_or(&[])
    }

    /// The integrity part of PDU type 3: the digest (normally 32 bytes).
    pub fn digest(&self) -> Option<&'a [u8]> {
        if self.pdu_type() != PduType::DataWithIntegrity {
            return None;
        }
        let data = self.data_with_integrity();
        let len = usize::from(*data.first()?);
        data.get(1..1 + len)
    }

    /// The data part, after any integrity part.
    pub fn data(&self) -> &'a [u8] {
        let data = self.data_with_integrity();
        match self.digest() {
            Some(digest) => data.get(1 + digest.len()..).unwrap_or(&[]),
            None => data,
        }
    }

    /// `s7comm-plus.data.opcode`; `None` for an empty data part.
    pub fn opcode(&self) -> Option<Opcode> {
        self.data().get(field::OPCODE).map(|&b| Opcode::from(b))
    }

    fn has_function(&self) -> bool {
        matches!(
            self.opcode(),
            Some(Opcode::Request | Opcode::Response | Opcode::Response2)
        )
    }

    /// `s7comm-plus.data.function` of requests and responses.
    pub fn function(&self) -> Option<Function> {
        if !self.has_function() {
            return None;
        }
        be16(self.data(), field::FUNCTION.start).map(Function)
    }

    /// `s7comm-plus.data.seqnum` of requests and responses.
    pub fn sequence_number(&self) -> Option<u16> {
        if !self.has_function() {
            return None;
        }
        be16(self.data(), field::SEQUENCE.start)
    }

    /// The session id of a request (`s7comm-plus.data.sessionid`).
    pub fn session_id(&self) -> Option<u32> {
        if self.opcode() != Some(Opcode::Request) {
            return None;
        }
        match self.data().get(field::REQUEST_SESSION) {
            Some(&[a, b, c, d]) => Some(u32::from_be_bytes([a, b, c, d])),
            _ => None,
        }
    }

    /// The body after a request's or response's header (objects, attributes, values).
    pub fn body(&self) -> &'a [u8] {
        let start = match self.opcode() {
            Some(Opcode::Request) => field::REQUEST_BODY,
            Some(Opcode::Response | Opcode::Response2) => field::RESPONSE_BODY,
            _ => return &[],
        };
        self.data().get(start..).unwrap_or(&[])
    }

    /// Whether the `72 <type> 00 00` trailer follows the data part.
    pub fn has_trailer(&self) -> bool {
        let at = HEADER_LEN + usize::from(self.data_length());
        matches!(
            self.buf.get(at..at + field::TRAILER_LEN),
            Some(&[PROTOCOL_ID, _, 0, 0])
        )
    }

    /// Bytes after the trailer (or after the data part when there is none).
    pub fn trailing_bytes(&self) -> usize {
        let end = HEADER_LEN
            + usize::from(self.data_length())
            + if self.has_trailer() {
                field::TRAILER_LEN
            } else {
                0
            };
        self.buf.len().saturating_sub(end)
    }

    /// A SetVariable request on the CPU's requested operating state (object 52,
    /// attribute 2167): the state it asks for. The body starts with the object id
    /// (4 bytes), an attribute count and the attribute id (VLQ), then the value (flags,
    /// datatype, value).
    pub fn cpu_state_request(&self) -> Option<CpuStateRequest> {
        if self.opcode() != Some(Opcode::Request) || self.function() != Some(Function::SET_VARIABLE)
        {
            return None;
        }
        let body = self.body();
        let object = match body.get(..4) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            _ => return None,
        };
        if object != CPU_EXEC_UNIT {
            return None;
        }
        // Attribute count (VLQ, one byte here), the attribute id, flags, datatype, value.
        let rest = body.get(5..)?;
        if rest.get(..2)? != OPERATING_STATE_REQ_VLQ {
            return None;
        }
        let value = *rest.get(4)?;
        Some(match value {
            1 => CpuStateRequest::Stop,
            3 => CpuStateRequest::Run,
            other => CpuStateRequest::Other(other),
        })
    }

    /// The order number and firmware a CreateObject response carries in its
    /// `"<n>;<order number>;V<x.y>"` WString (attribute 319, VLQ `82 3f`, datatype
    /// 0x15), trimmed; e.g. ("6ES7 211-1BE31-0XB0", "V3.0").
    pub fn order_number_and_firmware(&self) -> Option<(&'a [u8], &'a [u8])> {
        if !matches!(self.opcode(), Some(Opcode::Response | Opcode::Response2))
            || self.function() != Some(Function::CREATE_OBJECT)
        {
            return None;
        }
        let body = self.body();
        let at = body
            .windows(4)
            .position(|w| w == [0x82, 0x3F, 0x00, 0x15])?;
        let len = usize::from(*body.get(at + 4)?);
        if len >= 0x80 {
            return None;
        }
        let text = body.get(at + 5..at + 5 + len)?;
        let mut parts = text.split(|&b| b == b';');
        let _index = parts.next()?;
        let order = trim(parts.next()?);
        let firmware = trim(parts.next()?);
        (!order.is_empty()).then_some((order, firmware))
    }

    /// Spec violations of this frame.
    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        if !self.has_trailer() && self.pdu_type() != PduType::KeepAlive {
            flags |= Anomalies::NO_TRAILER;
        }
        if self.trailing_bytes() > 0 {
            flags |= Anomalies::TRAILING_BYTES;
        }
        if matches!(self.opcode(), Some(Opcode::Unknown(_))) {
            flags |= Anomalies::UNKNOWN_OPCODE;
        }
        if matches!(self.pdu_type(), PduType::Unknown(_)) {
            flags |= Anomalies::UNKNOWN_PDU_TYPE;
        }
        Anomalies(flags)
    }
}

fn trim(text: &[u8]) -> &[u8] {
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let end = text.iter().rposition(|b| !b.is_ascii_whitespace());
    match (start, end) {
        (Some(start), Some(end)) => text.get(start..=end).unwrap_or(&[]),
        _ => &[],
    }
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_capture::hex;

    // s7commplus-s7-1200-hmi.pcap frame 12 (COTP DT payload): the CreateObject
    // response of session set-up, with "1;6ES7 211-1BE31-0XB0 ;V3.0".
    const CREATE_OBJECT_RESPONSE: &str = "7201007a32000004ca00000001361102873e8723a100000120821f0000a38169001500a3823200170000013a823b00048200823c00048140823d00048480c040823e00048480c040823f00151b313b36455337203231312d31424533312d30584230203b56332e308240001505323b32383882410003000300a20000000072010000";
    // Same capture, frames 15 and 17: a SetMultiVariables request (session 0x3be,
    // sequence 2) and its response.
    const SET_MULTI_REQUEST: &str = "7202006b310000054200000002000003be34000003be010182320100170000013a823b00048200823c00048140823d00048480c040823e00048480c040823f0015008240001505323b3238388241000300030000000004e88969001200000000896a001300896b000400000000000072020000";
    const SET_MULTI_RESPONSE: &str = "720200103200000542000000023400000000000072020000";
    // s7comm-and-s7commplus-mixed.pcap frame 2: PDU type 3 with a 32-byte digest, a
    // notification.
    const NOTIFICATION_V3: &str = "720300622008c83ace381dfdbc42201789dec03b099172858efb6f3ef2e5e8ecb8bd2546653370000e51040000000000c98ec148019200000005000e41aa70aa9200000019000e417e538e920000001a000e41467956920000001b000e4193eb85000000000072030000";
    // Built: a SetVariable request on object 52 attribute 2167 (VLQ 90 77), flags 0,
    // datatype UDINT (4), value 1 (STOP), session 0x3be, sequence 9.
    const CPU_STOP: &str = "7202001931000004f200000009000003be34000000340190770004010072020000";

    #[test]
    fn create_object_response_names_the_plc() {
        let frame = hex(CREATE_OBJECT_RESPONSE);
        let pdu = Pdu::new_checked(&frame).unwrap();
        assert_eq!(pdu.pdu_type(), PduType::Connect);
        assert_eq!(pdu.opcode(), Some(Opcode::Response));
        assert_eq!(pdu.function(), Some(Function::CREATE_OBJECT));
        assert_eq!(pdu.function().unwrap().name(), Some("CreateObject"));
        assert_eq!(pdu.sequence_number(), Some(1));
        assert_eq!(pdu.session_id(), None);
        let (order, firmware) = pdu.order_number_and_firmware().unwrap();
        assert_eq!(order, b"6ES7 211-1BE31-0XB0");
        assert_eq!(firmware, b"V3.0");
        assert!(pdu.anomalies().is_empty());
    }

    #[test]
    fn requests_responses_and_integrity() {
        let frame = hex(SET_MULTI_REQUEST);
        let request = Pdu::new_checked(&frame).unwrap();
        assert_eq!(request.opcode(), Some(Opcode::Request));
        assert_eq!(request.function(), Some(Function::SET_MULTI_VARIABLES));
        assert_eq!(request.session_id(), Some(0x3be));
        assert_eq!(request.sequence_number(), Some(2));
        assert_eq!(request.cpu_state_request(), None);
        assert_eq!(request.order_number_and_firmware(), None);
        let frame = hex(SET_MULTI_RESPONSE);
        let response = Pdu::new_checked(&frame).unwrap();
        assert_eq!(response.opcode(), Some(Opcode::Response));
        assert!(response.has_trailer());

        let frame = hex(NOTIFICATION_V3);
        let notification = Pdu::new_checked(&frame).unwrap();
        assert_eq!(notification.pdu_type(), PduType::DataWithIntegrity);
        assert_eq!(notification.digest().map(<[u8]>::len), Some(32));
        assert_eq!(notification.opcode(), Some(Opcode::Notification));
        assert_eq!(notification.function(), None);
        assert!(notification.anomalies().is_empty());
    }

    #[test]
    fn set_variable_on_the_cpu_state_is_a_stop() {
        let frame = hex(CPU_STOP);
        let pdu = Pdu::new_checked(&frame).unwrap();
        assert_eq!(pdu.function(), Some(Function::SET_VARIABLE));
        assert_eq!(pdu.cpu_state_request(), Some(CpuStateRequest::Stop));
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
    }

    #[test]
    fn rejects_and_never_panics_on_cut_input() {
        assert_eq!(
            Pdu::new_checked(&[0x72, 0x02]).unwrap_err(),
            Error::Truncated { need: 4, have: 2 }
        );
        assert_eq!(
            Pdu::new_checked(&[0x32, 0x01, 0, 0]).unwrap_err(),
            Error::BadProtocolId(0x32)
        );
        for fixture in [
            CREATE_OBJECT_RESPONSE,
            SET_MULTI_REQUEST,
            NOTIFICATION_V3,
            CPU_STOP,
        ] {
            let frame = hex(fixture);
            for cut in 0..frame.len() {
                if let Ok(pdu) = Pdu::new_checked(&frame[..cut]) {
                    let _ = (pdu.opcode(), pdu.function(), pdu.session_id(), pdu.body());
                    let _ = (pdu.cpu_state_request(), pdu.order_number_and_firmware());
                    let _ = (pdu.anomalies(), pdu.digest(), pdu.sequence_number());
                }
            }
            // A data length that runs past the buffer is refused.
            let mut long = frame.clone();
            long[3] = long[3].wrapping_add(1);
            assert!(Pdu::new_checked(&long[..frame.len() - 4]).is_err());
        }
    }
}
