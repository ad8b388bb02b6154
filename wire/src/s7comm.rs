//! S7comm over ISO-on-TCP (RFC 1006, TCP 102): TPKT framing, the COTP (ISO 8073)
//! header, and the S7comm PDU that rides in COTP DT TPDUs.
//!
//! Every view is built with `new_checked`, which validates each length its accessors
//! rely on; after it succeeds no accessor can panic, and variable parts (item counts,
//! SZL records, PI service names) are read with bounds checks that answer `None`
//! rather than fail. S7comm-plus (protocol id 0x72, S7-1200/1500) shares TPKT/COTP
//! but is a different protocol: [`is_s7comm_plus`](crate::s7comm::is_s7comm_plus)
//! recognises it and [`S7comm`](crate::s7comm::S7comm)
//! rejects it.
//!
//! Field names follow the Wireshark `s7comm` and `cotp` dissectors (`s7comm.header.*`,
//! `s7comm.param.*`, `s7comm.data.*`, `cotp.*`).

use crate::bytes::be16;

use super::Framing;

/// Errors of the TPKT, COTP and S7comm views; one counter label each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    /// TPKT version is not 3 (RFC 1006 section 6).
    #[error("TPKT version {0} is not 3")]
    BadVersion(u8),
    /// A length field is smaller than the header it must cover.
    #[error("length field smaller than its header")]
    BadLength,
    /// The S7 protocol id is not 0x32 (0x72 is S7comm-plus).
    #[error("S7 protocol id {0:#04x} is not 0x32")]
    BadProtocolId(u8),
}

impl Error {
    /// The metrics label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadVersion(_) => "bad_version",
            Error::BadLength => "bad_length",
            Error::BadProtocolId(_) => "bad_protocol_id",
        }
    }
}

mod field {
    use core::ops::Range;
    // RFC 1006 section 6: version, reserved, length (big endian, includes the header).
    pub const TPKT_VERSION: usize = 0;
    pub const TPKT_LENGTH: Range<usize> = 2..4;
    pub const TPKT_END: usize = 4;

    // ISO 8073 section 13: length indicator (header bytes after itself), PDU code.
    pub const COTP_LI: usize = 0;
    pub const COTP_TYPE: usize = 1;
    pub const COTP_DT_NR: usize = 2;
    // CR/CC/DR: DST-REF, SRC-REF, class/option (CR, CC) or reason (DR).
    pub const COTP_DST_REF: Range<usize> = 2..4;
    pub const COTP_SRC_REF: Range<usize> = 4..6;
    pub const COTP_CLASS: usize = 6;
    pub const COTP_CR_PARAMS: usize = 7;

    // S7comm header (Wireshark `s7comm.header.*`).
    pub const S7_PROTOCOL_ID: usize = 0;
    pub const S7_ROSCTR: usize = 1;
    pub const S7_PDU_REF: Range<usize> = 4..6;
    pub const S7_PARAM_LEN: Range<usize> = 6..8;
    pub const S7_DATA_LEN: Range<usize> = 8..10;
    pub const S7_ERR_CLASS: usize = 10;
    pub const S7_ERR_CODE: usize = 11;
    pub const S7_HEADER_END: usize = 10;
    pub const S7_ACK_HEADER_END: usize = 12;
}

/// TPKT header length (RFC 1006 section 6).
pub const TPKT_HEADER_LEN: usize = field::TPKT_END;
/// The smallest S7comm header (job and userdata).
pub const S7_HEADER_LEN: usize = field::S7_HEADER_END;
/// The S7comm header of ack and ack-data, with error class and code.
pub const S7_ACK_HEADER_LEN: usize = field::S7_ACK_HEADER_END;
/// S7comm protocol id (`s7comm.header.protid`).
pub const PROTOCOL_ID: u8 = 0x32;
/// S7comm-plus protocol id.
pub const PROTOCOL_ID_PLUS: u8 = 0x72;

/// Stream framing for TPKT: one TPKT packet per frame, length from its header.
pub fn frame(buf: &[u8]) -> Framing {
    if buf.len() < TPKT_HEADER_LEN {
        return Framing::Need(TPKT_HEADER_LEN);
    }
    let length = usize::from(be16(buf, field::TPKT_LENGTH.start).unwrap_or(0));
    // A TPKT must be version 3 and cover at least its header plus a COTP length byte.
    if buf.first() != Some(&3) || length < TPKT_HEADER_LEN + 1 {
        return Framing::Resync(1);
    }
    if buf.len() < length {
        Framing::Need(length)
    } else {
        Framing::Frame(length)
    }
}

/// The TPKT and COTP headers at the front of a payload, accepted when the TPKT
/// length may still exceed the bytes seen (the first segment of a long PDU).
fn iso_transport(payload: &[u8]) -> Option<Cotp<'_>> {
    let length = usize::from(be16(payload, field::TPKT_LENGTH.start).unwrap_or(0));
    if payload.first() != Some(&3) || payload.get(1) != Some(&0) || length < TPKT_HEADER_LEN + 2 {
        return None;
    }
    let seen = payload
        .get(TPKT_HEADER_LEN..length.min(payload.len()))
        .unwrap_or(&[]);
    let cotp = Cotp::new_checked(seen).ok()?;
    if usize::from(cotp.length_indicator()) + 1 + TPKT_HEADER_LEN > length {
        return None;
    }
    Some(cotp)
}

/// Cheap signature check for S7comm or S7comm-plus on any port: a TPKT (version 3,
/// plausible length) carrying a COTP DT whose payload starts with protocol id 0x32
/// or 0x72. Works on the first segment of a PDU. Connection setup (CR/CC) and empty
/// DTs are shared with MMS and other ISO-on-TCP users (MMS CRs even use TSAP 0x0200
/// like an S7 OP connection), so they answer false here and true in
/// [`looks_like_iso_transport`].
pub fn looks_like(payload: &[u8]) -> bool {
    iso_transport(payload).is_some_and(|cotp| {
        cotp.pdu_type() == CotpType::Data
            && matches!(
                cotp.payload().first(),
                Some(&PROTOCOL_ID) | Some(&PROTOCOL_ID_PLUS)
            )
    })
}

/// Cheap signature check for ISO-on-TCP (RFC 1006) of any user: a TPKT carrying a
/// COTP TPDU of a known type. A dispatcher can keep such a flow pending until a DT
/// shows which protocol it carries.
pub fn looks_like_iso_transport(payload: &[u8]) -> bool {
    iso_transport(payload).is_some_and(|cotp| !matches!(cotp.pdu_type(), CotpType::Unknown(_)))
}

/// Whether a COTP DT payload is S7comm-plus (protocol id 0x72), which [`S7comm`]
/// does not parse.
pub fn is_s7comm_plus(cotp_payload: &[u8]) -> bool {
    cotp_payload.first() == Some(&PROTOCOL_ID_PLUS)
}

/// A TPKT packet (RFC 1006 section 6).
#[derive(Clone, Copy, Debug)]
pub struct Tpkt<'a> {
    buf: &'a [u8],
}

impl<'a> Tpkt<'a> {
    /// Validates version 3 and that the length field fits the buffer; bytes after the
    /// length belong to the next packet and are not part of this view.
    pub fn new_checked(buf: &'a [u8]) -> Result<Tpkt<'a>, Error> {
        let have = buf.len();
        if have < TPKT_HEADER_LEN {
            return Err(Error::Truncated {
                need: TPKT_HEADER_LEN,
                have,
            });
        }
        let version = buf.get(field::TPKT_VERSION).copied().unwrap_or(0);
        if version != 3 {
            return Err(Error::BadVersion(version));
        }
        let length = usize::from(be16(buf, field::TPKT_LENGTH.start).unwrap_or(0));
        if length < TPKT_HEADER_LEN {
            return Err(Error::BadLength);
        }
        match buf.get(..length) {
            Some(buf) => Ok(Tpkt { buf }),
            None => Err(Error::Truncated { need: length, have }),
        }
    }

    pub fn version(&self) -> u8 {
        self.buf.get(field::TPKT_VERSION).copied().unwrap_or(0)
    }

    /// The packet length including the TPKT header.
    pub fn length(&self) -> u16 {
        be16(self.buf, field::TPKT_LENGTH.start).unwrap_or(0)
    }

    /// The COTP TPDU.
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(TPKT_HEADER_LEN..).unwrap_or(&[])
    }
}

/// COTP TPDU codes (ISO 8073 table 8, Wireshark `cotp.type`, the high nibble).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CotpType {
    ExpeditedData,
    ExpeditedDataAck,
    Reject,
    DataAck,
    TpduError,
    DisconnectRequest,
    DisconnectConfirm,
    ConnectionConfirm,
    ConnectionRequest,
    Data,
    Unknown(u8),
}

impl CotpType {
    /// From the PDU code byte; CR/CC/AK/RJ carry credit in the low nibble.
    pub fn from_code(code: u8) -> CotpType {
        match code >> 4 {
            0x1 => CotpType::ExpeditedData,
            0x2 => CotpType::ExpeditedDataAck,
            0x5 => CotpType::Reject,
            0x6 => CotpType::DataAck,
            0x7 => CotpType::TpduError,
            0x8 => CotpType::DisconnectRequest,
            0xC => CotpType::DisconnectConfirm,
            0xD => CotpType::ConnectionConfirm,
            0xE => CotpType::ConnectionRequest,
            0xF => CotpType::Data,
            _ => CotpType::Unknown(code),
        }
    }

    /// The value Wireshark shows as `cotp.type`.
    pub fn code(self) -> u8 {
        match self {
            CotpType::ExpeditedData => 0x1,
            CotpType::ExpeditedDataAck => 0x2,
            CotpType::Reject => 0x5,
            CotpType::DataAck => 0x6,
            CotpType::TpduError => 0x7,
            CotpType::DisconnectRequest => 0x8,
            CotpType::DisconnectConfirm => 0xC,
            CotpType::ConnectionConfirm => 0xD,
            CotpType::ConnectionRequest => 0xE,
            CotpType::Data => 0xF,
            CotpType::Unknown(code) => code >> 4,
        }
    }
}

/// A COTP TPDU (ISO 8073 section 13): header then user data.
#[derive(Clone, Copy, Debug)]
pub struct Cotp<'a> {
    buf: &'a [u8],
}

impl<'a> Cotp<'a> {
    /// Validates that the length indicator covers the PDU code and fits the buffer.
    pub fn new_checked(buf: &'a [u8]) -> Result<Cotp<'a>, Error> {
        let have = buf.len();
        let Some(&li) = buf.get(field::COTP_LI) else {
            return Err(Error::Truncated { need: 2, have });
        };
        if li < 1 {
            return Err(Error::BadLength);
        }
        let header = usize::from(li) + 1;
        if have < header {
            return Err(Error::Truncated { need: header, have });
        }
        Ok(Cotp { buf })
    }

    /// Header length after this byte (`cotp.li`).
    pub fn length_indicator(&self) -> u8 {
        self.buf.get(field::COTP_LI).copied().unwrap_or(0)
    }

    pub fn pdu_type(&self) -> CotpType {
        CotpType::from_code(self.buf.get(field::COTP_TYPE).copied().unwrap_or(0))
    }

    fn header(&self) -> &'a [u8] {
        let end = usize::from(self.length_indicator()) + 1;
        self.buf.get(..end).unwrap_or(&[])
    }

    /// DT TPDU number (`cotp.tpdu-number`), class 0 format.
    pub fn tpdu_number(&self) -> Option<u8> {
        match self.pdu_type() {
            CotpType::Data => self.header().get(field::COTP_DT_NR).map(|nr| nr & 0x7F),
            _ => None,
        }
    }

    /// DT end-of-TSDU flag (`cotp.eot`): the last TPDU of a segmented S7 PDU.
    pub fn eot(&self) -> Option<bool> {
        match self.pdu_type() {
            CotpType::Data => self
                .header()
                .get(field::COTP_DT_NR)
                .map(|nr| nr & 0x80 != 0),
            _ => None,
        }
    }

    fn has_refs(&self) -> bool {
        matches!(
            self.pdu_type(),
            CotpType::ConnectionRequest
                | CotpType::ConnectionConfirm
                | CotpType::DisconnectRequest
                | CotpType::DisconnectConfirm
        )
    }

    /// `cotp.dstref` of CR/CC/DR/DC.
    pub fn dst_ref(&self) -> Option<u16> {
        let header = self.header();
        (self.has_refs() && header.len() >= field::COTP_DST_REF.end)
            .then(|| be16(header, field::COTP_DST_REF.start).unwrap_or(0))
    }

    /// `cotp.srcref` of CR/CC/DR/DC.
    pub fn src_ref(&self) -> Option<u16> {
        let header = self.header();
        (self.has_refs() && header.len() >= field::COTP_SRC_REF.end)
            .then(|| be16(header, field::COTP_SRC_REF.start).unwrap_or(0))
    }

    /// Protocol class of CR/CC (`cotp.class`, high nibble).
    pub fn class(&self) -> Option<u8> {
        match self.pdu_type() {
            CotpType::ConnectionRequest | CotpType::ConnectionConfirm => {
                self.header().get(field::COTP_CLASS).map(|class| class >> 4)
            }
            _ => None,
        }
    }

    /// The variable part of a CR/CC header: (code, value) parameters.
    pub fn parameters(&self) -> CotpParameters<'a> {
        let rest = match self.pdu_type() {
            CotpType::ConnectionRequest | CotpType::ConnectionConfirm => {
                self.header().get(field::COTP_CR_PARAMS..).unwrap_or(&[])
            }
            _ => &[],
        };
        CotpParameters { rest }
    }

    /// Calling TSAP (parameter 0xC1, `cotp.src-tsap`).
    pub fn src_tsap(&self) -> Option<&'a [u8]> {
        self.parameters()
            .find(|&(code, _)| code == 0xC1)
            .map(|(_, v)| v)
    }

    /// Called TSAP (parameter 0xC2, `cotp.dst-tsap`).
    pub fn dst_tsap(&self) -> Option<&'a [u8]> {
        self.parameters()
            .find(|&(code, _)| code == 0xC2)
            .map(|(_, v)| v)
    }

    /// User data after the header (the S7comm PDU of a DT TPDU).
    pub fn payload(&self) -> &'a [u8] {
        let start = usize::from(self.length_indicator()) + 1;
        self.buf.get(start..).unwrap_or(&[])
    }
}

/// Iterator over the (code, value) parameters of a CR/CC TPDU (ISO 8073 13.3.4);
/// stops at the first parameter that does not fit.
#[derive(Clone, Debug)]
pub struct CotpParameters<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for CotpParameters<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&code, rest) = self.rest.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..usize::from(len))?;
        self.rest = rest.get(usize::from(len)..).unwrap_or(&[]);
        Some((code, value))
    }
}

/// S7comm message type (`s7comm.header.rosctr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rosctr {
    Job,
    Ack,
    AckData,
    Userdata,
    Unknown(u8),
}

impl From<u8> for Rosctr {
    fn from(value: u8) -> Rosctr {
        match value {
            1 => Rosctr::Job,
            2 => Rosctr::Ack,
            3 => Rosctr::AckData,
            7 => Rosctr::Userdata,
            other => Rosctr::Unknown(other),
        }
    }
}

impl Rosctr {
    pub fn code(self) -> u8 {
        match self {
            Rosctr::Job => 1,
            Rosctr::Ack => 2,
            Rosctr::AckData => 3,
            Rosctr::Userdata => 7,
            Rosctr::Unknown(code) => code,
        }
    }

    /// Ack and ack-data headers carry error class and code.
    fn has_error_fields(self) -> bool {
        matches!(self, Rosctr::Ack | Rosctr::AckData)
    }
}

/// Job / ack-data function codes (`s7comm.param.func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    CpuServices,
    ReadVar,
    WriteVar,
    RequestDownload,
    DownloadBlock,
    DownloadEnded,
    StartUpload,
    Upload,
    EndUpload,
    PiService,
    PlcStop,
    SetupCommunication,
    Unknown(u8),
}

impl From<u8> for Function {
    fn from(value: u8) -> Function {
        match value {
            0x00 => Function::CpuServices,
            0x04 => Function::ReadVar,
            0x05 => Function::WriteVar,
            0x1A => Function::RequestDownload,
            0x1B => Function::DownloadBlock,
            0x1C => Function::DownloadEnded,
            0x1D => Function::StartUpload,
            0x1E => Function::Upload,
            0x1F => Function::EndUpload,
            0x28 => Function::PiService,
            0x29 => Function::PlcStop,
            0xF0 => Function::SetupCommunication,
            other => Function::Unknown(other),
        }
    }
}

impl Function {
    pub fn code(self) -> u8 {
        match self {
            Function::CpuServices => 0x00,
            Function::ReadVar => 0x04,
            Function::WriteVar => 0x05,
            Function::RequestDownload => 0x1A,
            Function::DownloadBlock => 0x1B,
            Function::DownloadEnded => 0x1C,
            Function::StartUpload => 0x1D,
            Function::Upload => 0x1E,
            Function::EndUpload => 0x1F,
            Function::PiService => 0x28,
            Function::PlcStop => 0x29,
            Function::SetupCommunication => 0xF0,
            Function::Unknown(code) => code,
        }
    }

    /// Wireshark's name for the function.
    pub fn name(self) -> &'static str {
        match self {
            Function::CpuServices => "CPU services",
            Function::ReadVar => "Read Var",
            Function::WriteVar => "Write Var",
            Function::RequestDownload => "Request download",
            Function::DownloadBlock => "Download block",
            Function::DownloadEnded => "Download ended",
            Function::StartUpload => "Start upload",
            Function::Upload => "Upload",
            Function::EndUpload => "End upload",
            Function::PiService => "PI-Service",
            Function::PlcStop => "PLC Stop",
            Function::SetupCommunication => "Setup communication",
            Function::Unknown(_) => "unknown",
        }
    }
}

/// What an S7comm PDU does, for detections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    Read,
    Write,
    /// Block download/upload, block deletion or insertion, copy RAM to ROM.
    Program,
    Stop,
    Start,
    Setup,
    /// SZL reads (userdata group 4 subfunction 1).
    Diagnostic,
    Other,
}

/// A PI service name's classification. `P_PROGRAM` via 0x28 starts the CPU (0x29
/// with the same name stops it). `_INSE` (activate a downloaded block), `_DELE`
/// (delete a block) and `_MODU` (copy RAM to ROM) change the stored program, so they
/// are `Program`, not `Start`: a block insert alone does not change the CPU's run
/// state. Names from Wireshark's `s7comm.param.pistart.servicename` table.
pub fn pi_service_kind(name: &[u8]) -> FunctionKind {
    match name {
        b"P_PROGRAM" => FunctionKind::Start,
        // `_INS2` is a second form of `_INSE` (Wireshark: "Activates a PLC module").
        b"_INSE" | b"_INS2" | b"_DELE" | b"_MODU" => FunctionKind::Program,
        _ => FunctionKind::Other,
    }
}

/// Userdata function groups (`s7comm.param.userdata.funcgroup`).
pub mod group {
    pub const MODE_TRANSITION: u8 = 0;
    pub const PROGRAMMER: u8 = 1;
    pub const CYCLIC_DATA: u8 = 2;
    pub const BLOCK_FUNCTIONS: u8 = 3;
    pub const CPU_FUNCTIONS: u8 = 4;
    pub const SECURITY: u8 = 5;
    pub const TIME_FUNCTIONS: u8 = 7;
    /// Group 4 subfunction 1: read SZL.
    pub const SUBFUNC_READ_SZL: u8 = 1;
}

/// An S7comm PDU (the payload of a COTP DT TPDU).
#[derive(Clone, Copy, Debug)]
pub struct S7comm<'a> {
    buf: &'a [u8],
}

impl<'a> S7comm<'a> {
    /// Validates protocol id 0x32, the header for this ROSCTR, and that parameter and
    /// data lengths fit. Trailing bytes are allowed and reported by
    /// [`S7comm::trailing_bytes`].
    pub fn new_checked(buf: &'a [u8]) -> Result<S7comm<'a>, Error> {
        let have = buf.len();
        if have < S7_HEADER_LEN {
            return Err(Error::Truncated {
                need: S7_HEADER_LEN,
                have,
            });
        }
        let id = buf.get(field::S7_PROTOCOL_ID).copied().unwrap_or(0);
        if id != PROTOCOL_ID {
            return Err(Error::BadProtocolId(id));
        }
        let pdu = S7comm { buf };
        let need =
            pdu.header_len() + usize::from(pdu.parameter_length()) + usize::from(pdu.data_length());
        if have < need {
            return Err(Error::Truncated { need, have });
        }
        Ok(pdu)
    }

    pub fn protocol_id(&self) -> u8 {
        self.buf.get(field::S7_PROTOCOL_ID).copied().unwrap_or(0)
    }

    pub fn rosctr(&self) -> Rosctr {
        Rosctr::from(self.buf.get(field::S7_ROSCTR).copied().unwrap_or(0))
    }

    /// `s7comm.header.pduref`: pairs a job with its ack.
    pub fn pdu_reference(&self) -> u16 {
        be16(self.buf, field::S7_PDU_REF.start).unwrap_or(0)
    }

    pub fn parameter_length(&self) -> u16 {
        be16(self.buf, field::S7_PARAM_LEN.start).unwrap_or(0)
    }

    pub fn data_length(&self) -> u16 {
        be16(self.buf, field::S7_DATA_LEN.start).unwrap_or(0)
    }

    fn header_len(&self) -> usize {
        if self.rosctr().has_error_fields() {
            S7_ACK_HEADER_LEN
        } else {
            S7_HEADER_LEN
        }
    }

    /// `s7comm.header.errcls` of ack / ack-data.
    pub fn error_class(&self) -> Option<u8> {
        if self.rosctr().has_error_fields() {
            self.buf.get(field::S7_ERR_CLASS).copied()
        } else {
            None
        }
    }

    /// `s7comm.header.errcod` of ack / ack-data.
    pub fn error_code(&self) -> Option<u8> {
        if self.rosctr().has_error_fields() {
            self.buf.get(field::S7_ERR_CODE).copied()
        } else {
            None
        }
    }

    /// Error class and code as one value (class in the high byte), 0 = no error.
    pub fn header_error(&self) -> Option<u16> {
        Some(u16::from_be_bytes([
            self.error_class()?,
            self.error_code()?,
        ]))
    }

    /// The parameter part.
    pub fn parameter(&self) -> &'a [u8] {
        let start = self.header_len();
        let end = start + usize::from(self.parameter_length());
        self.buf.get(start..end).unwrap_or(&[])
    }

    /// The data part.
    pub fn data(&self) -> &'a [u8] {
        let start = self.header_len() + usize::from(self.parameter_length());
        let end = start + usize::from(self.data_length());
        self.buf.get(start..end).unwrap_or(&[])
    }

    /// Bytes after the data part (an anomaly: the COTP payload is longer than the
    /// lengths in the S7 header).
    pub fn trailing_bytes(&self) -> usize {
        let used = self.header_len()
            + usize::from(self.parameter_length())
            + usize::from(self.data_length());
        self.buf.len().saturating_sub(used)
    }

    /// Function code of job / ack-data PDUs (`s7comm.param.func`).
    pub fn function(&self) -> Option<Function> {
        match self.rosctr() {
            Rosctr::Job | Rosctr::AckData | Rosctr::Ack => {
                self.parameter().first().map(|&code| Function::from(code))
            }
            _ => None,
        }
    }

    /// Item count of read/write var (`s7comm.param.itemcount`).
    pub fn item_count(&self) -> Option<u8> {
        match self.function()? {
            Function::ReadVar | Function::WriteVar => self.parameter().get(1).copied(),
            _ => None,
        }
    }

    /// The item specifications of a read-var or write-var job's parameter
    /// (`s7comm.param.item`): one per item, as far as they fit the parameter.
    pub fn var_items(&self) -> VarItems<'a> {
        let is_var_job = self.rosctr() == Rosctr::Job
            && matches!(
                self.function(),
                Some(Function::ReadVar | Function::WriteVar)
            );
        let (rest, remaining) = if is_var_job {
            (
                self.parameter().get(2..).unwrap_or(&[]),
                self.parameter().get(1).copied().unwrap_or(0),
            )
        } else {
            (&[][..], 0)
        };
        VarItems { rest, remaining }
    }

    /// Service name of a PI service (0x28) or PLC stop (0x29) job
    /// (`s7comm.param.pistart.servicename`), e.g. `_INSE`, `P_PROGRAM`.
    pub fn pi_service(&self) -> Option<&'a [u8]> {
        if self.rosctr() != Rosctr::Job {
            return None;
        }
        let param = self.parameter();
        let name_at = match self.function()? {
            // func, 7 unknown bytes, 2-byte parameter block length, block, name length.
            Function::PiService => {
                let block_len = usize::from(be16(param, 8).unwrap_or(0));
                10 + block_len
            }
            // func, 5 unknown bytes, name length.
            Function::PlcStop => 6,
            _ => return None,
        };
        let len = usize::from(*param.get(name_at)?);
        param.get(name_at + 1..name_at + 1 + len)
    }

    /// The userdata parameter head, for ROSCTR 7.
    pub fn userdata(&self) -> Option<Userdata<'a>> {
        if self.rosctr() != Rosctr::Userdata {
            return None;
        }
        Userdata::new_checked(self.parameter(), self.data()).ok()
    }

    /// The classification for detections.
    pub fn kind(&self) -> FunctionKind {
        if let Some(userdata) = self.userdata() {
            return if userdata.function_group() == group::CPU_FUNCTIONS
                && userdata.subfunction() == group::SUBFUNC_READ_SZL
            {
                FunctionKind::Diagnostic
            } else {
                FunctionKind::Other
            };
        }
        match self.function() {
            Some(Function::ReadVar) => FunctionKind::Read,
            Some(Function::WriteVar) => FunctionKind::Write,
            Some(
                Function::RequestDownload
                | Function::DownloadBlock
                | Function::DownloadEnded
                | Function::StartUpload
                | Function::Upload
                | Function::EndUpload,
            ) => FunctionKind::Program,
            Some(Function::PlcStop) => FunctionKind::Stop,
            Some(Function::PiService) => self
                .pi_service()
                .map(pi_service_kind)
                .unwrap_or(FunctionKind::Other),
            Some(Function::SetupCommunication) => FunctionKind::Setup,
            _ => FunctionKind::Other,
        }
    }
}

/// Item addressing of a read/write-var request (Wireshark `s7comm.param.item.*`).
/// Every item keeps its syntax id; the other fields are those of the S7ANY syntax
/// (0x10, by far the most common) and are `None` for other syntaxes (DB read 0xB0,
/// NCK 0x82, symbolic addressing of S7-1200 ...), whose layouts differ.
///
/// Kept in 16 bytes (it rides in EVE events by value); serialized as an object whose
/// S7ANY fields are null for other syntaxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VarItem {
    syntax_id: u8,
    s7any: bool,
    transport_size: u8,
    area: u8,
    bit_address: u8,
    length: u16,
    db_number: u16,
    byte_address: u32,
}

impl VarItem {
    /// `s7comm.param.item.syntaxid`.
    pub fn syntax_id(&self) -> u8 {
        self.syntax_id
    }

    /// `s7comm.param.item.transp_size` (1 bit, 2 byte, 4 word, 6 dword, 0x1C
    /// counter, 0x1D timer, ...).
    pub fn transport_size(&self) -> Option<u8> {
        self.s7any.then_some(self.transport_size)
    }

    /// `s7comm.param.item.length`: elements of the transport size.
    pub fn length(&self) -> Option<u16> {
        self.s7any.then_some(self.length)
    }

    /// `s7comm.param.item.db` (0 outside data blocks).
    pub fn db_number(&self) -> Option<u16> {
        self.s7any.then_some(self.db_number)
    }

    /// `s7comm.param.item.area` (0x81 inputs, 0x82 outputs, 0x83 flags, 0x84 DB,
    /// ...).
    pub fn area(&self) -> Option<u8> {
        self.s7any.then_some(self.area)
    }

    /// `s7comm.param.item.address.byte`.
    pub fn byte_address(&self) -> Option<u32> {
        self.s7any.then_some(self.byte_address)
    }

    /// `s7comm.param.item.address.bit`.
    pub fn bit_address(&self) -> Option<u8> {
        self.s7any.then_some(self.bit_address)
    }
}

impl serde::Serialize for VarItem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut item = serializer.serialize_struct("VarItem", 7)?;
        item.serialize_field("syntax_id", &self.syntax_id)?;
        item.serialize_field("transport_size", &self.transport_size())?;
        item.serialize_field("length", &self.length())?;
        item.serialize_field("db_number", &self.db_number())?;
        item.serialize_field("area", &self.area())?;
        item.serialize_field("byte_address", &self.byte_address())?;
        item.serialize_field("bit_address", &self.bit_address())?;
        item.end()
    }
}

const _: () = assert!(std::mem::size_of::<VarItem>() == 16);

/// S7ANY item syntax id (`s7comm.param.item.syntaxid` 0x10).
pub const SYNTAX_ID_S7ANY: u8 = 0x10;
/// Variable specification type of every item (`s7comm.param.item.varspec`).
const VAR_SPEC: u8 = 0x12;

/// Iterator over the items of a read/write-var job; stops at the first item that does
/// not fit or does not start with the variable specification 0x12.
#[derive(Clone, Debug)]
pub struct VarItems<'a> {
    rest: &'a [u8],
    remaining: u8,
}

impl Iterator for VarItems<'_> {
    type Item = VarItem;

    fn next(&mut self) -> Option<VarItem> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let item = match self.rest {
            [VAR_SPEC, len, spec @ ..] => spec.get(..usize::from(*len)),
            _ => None,
        };
        let Some(spec) = item else {
            self.remaining = 0;
            return None;
        };
        self.rest = self.rest.get(2 + spec.len()..).unwrap_or(&[]);
        let syntax_id = *spec.first()?;
        let mut item = VarItem {
            syntax_id,
            s7any: false,
            transport_size: 0,
            area: 0,
            bit_address: 0,
            length: 0,
            db_number: 0,
            byte_address: 0,
        };
        // Syntax id, transport size, length, DB number, area, address (3 bytes: byte
        // address << 3 | bit).
        if let [SYNTAX_ID_S7ANY, size, len_hi, len_lo, db_hi, db_lo, area, a0, a1, a2] = spec {
            let address = u32::from_be_bytes([0, *a0, *a1, *a2]);
            item.s7any = true;
            item.transport_size = *size;
            item.length = u16::from_be_bytes([*len_hi, *len_lo]);
            item.db_number = u16::from_be_bytes([*db_hi, *db_lo]);
            item.area = *area;
            item.byte_address = address >> 3;
            item.bit_address = (address & 0x7) as u8;
        }
        Some(item)
    }
}

/// Userdata parameter and data (Wireshark `s7comm.param.userdata.*`): a 3-byte head
/// (00 01 12), the parameter length, method, type/group, subfunction, sequence number,
/// and in responses data unit reference, last-unit flag and an error code.
#[derive(Clone, Copy, Debug)]
pub struct Userdata<'a> {
    param: &'a [u8],
    data: &'a [u8],
}

/// Offsets inside the userdata parameter.
mod userdata_field {
    pub const METHOD: usize = 4;
    pub const TYPE_GROUP: usize = 5;
    pub const SUBFUNC: usize = 6;
    pub const SEQ: usize = 7;
    pub const END: usize = 8;
    pub const DATA_UNIT_REF: usize = 8;
    pub const LAST_DATA_UNIT: usize = 9;
    pub const ERROR_CODE: core::ops::Range<usize> = 10..12;
    // Data part: return code, transport size, length, then the payload.
    pub const DATA_RETURN_CODE: usize = 0;
    pub const DATA_LENGTH: core::ops::Range<usize> = 2..4;
    pub const DATA_PAYLOAD: usize = 4;
}

impl<'a> Userdata<'a> {
    /// Validates that the parameter holds the 8-byte head the accessors read.
    pub fn new_checked(param: &'a [u8], data: &'a [u8]) -> Result<Userdata<'a>, Error> {
        if param.len() < userdata_field::END {
            return Err(Error::Truncated {
                need: userdata_field::END,
                have: param.len(),
            });
        }
        Ok(Userdata { param, data })
    }

    fn byte(&self, at: usize) -> u8 {
        self.param.get(at).copied().unwrap_or(0)
    }

    /// 0x11 request, 0x12 response (`s7comm.param.userdata.method`).
    pub fn method(&self) -> u8 {
        self.byte(userdata_field::METHOD)
    }

    /// 0 push, 4 request, 8 response (`s7comm.param.userdata.type`).
    pub fn kind_code(&self) -> u8 {
        self.byte(userdata_field::TYPE_GROUP) >> 4
    }

    /// `s7comm.param.userdata.funcgroup`.
    pub fn function_group(&self) -> u8 {
        self.byte(userdata_field::TYPE_GROUP) & 0x0F
    }

    /// `s7comm.param.userdata.subfunc`.
    pub fn subfunction(&self) -> u8 {
        self.byte(userdata_field::SUBFUNC)
    }

    /// `s7comm.param.userdata.seq_num`.
    pub fn sequence_number(&self) -> u8 {
        self.byte(userdata_field::SEQ)
    }

    /// `s7comm.param.userdata.dataunitref` of a 12-byte parameter: ties together
    /// the PDUs of one fragmented answer.
    pub fn data_unit_reference(&self) -> Option<u8> {
        self.param.get(userdata_field::ERROR_CODE.end - 1)?;
        self.param.get(userdata_field::DATA_UNIT_REF).copied()
    }

    /// `s7comm.param.userdata.lastdataunit` of a 12-byte parameter: 0x00 = this is
    /// the last data unit, 0x01 = more follow.
    pub fn last_data_unit(&self) -> Option<bool> {
        self.param.get(userdata_field::ERROR_CODE.end - 1)?;
        self.param
            .get(userdata_field::LAST_DATA_UNIT)
            .map(|&more| more == 0)
    }

    /// A response that continues a fragmented answer: its data does not start with
    /// the SZL (or other) header. A single-PDU response has data unit reference 0;
    /// the first PDU of a fragmented one says "more follow"; so a final PDU with a
    /// non-zero reference is a continuation (s7comm-read-set-plc-time.pcap frames
    /// 16/19, s7comm-tia-go-online.pcapng frames 16/18; Wireshark reassembles these
    /// and shows no SZL id on the continuation).
    pub fn is_continuation(&self) -> bool {
        self.kind_code() == 8
            && self.data_unit_reference().is_some_and(|r| r != 0)
            && self.last_data_unit() == Some(true)
    }

    /// `s7comm.param.errcod` of a 12-byte response parameter.
    pub fn error_code(&self) -> Option<u16> {
        self.param
            .get(userdata_field::ERROR_CODE)
            .map(|_| be16(self.param, userdata_field::ERROR_CODE.start).unwrap_or(0))
    }

    /// `s7comm.data.returncode` (0xFF success).
    pub fn return_code(&self) -> Option<u8> {
        self.data.get(userdata_field::DATA_RETURN_CODE).copied()
    }

    /// The payload after return code, transport size and length, cut to that length.
    pub fn payload(&self) -> &'a [u8] {
        let declared = usize::from(be16(self.data, userdata_field::DATA_LENGTH.start).unwrap_or(0));
        let rest = self.data.get(userdata_field::DATA_PAYLOAD..).unwrap_or(&[]);
        rest.get(..declared).unwrap_or(rest)
    }

    /// A read-SZL PDU whose data starts with the SZL header.
    fn is_szl(&self) -> bool {
        self.function_group() == group::CPU_FUNCTIONS
            && self.subfunction() == group::SUBFUNC_READ_SZL
            && !self.is_continuation()
    }

    /// SZL id and index of a read-SZL request or response (`s7comm.data.szl_id`,
    /// `s7comm.data.szl_index`); `None` when this is not an SZL read or the payload is
    /// empty (e.g. an error response).
    pub fn szl(&self) -> Option<(u16, u16)> {
        if !self.is_szl() {
            return None;
        }
        let payload = self.payload();
        payload
            .get(0..4)
            .map(|_| (be16(payload, 0).unwrap_or(0), be16(payload, 2).unwrap_or(0)))
    }

    /// The records of a read-SZL response.
    pub fn szl_response(&self) -> Option<SzlResponse<'a>> {
        if !self.is_szl() || self.kind_code() != 8 {
            return None;
        }
        SzlResponse::new_checked(self.payload()).ok()
    }
}

/// A read-SZL response payload: id, index, record length, record count, records
/// (Wireshark `s7comm.data.szl_id`, `szl_index`, `szl_data.entry_length`, `count`).
#[derive(Clone, Copy, Debug)]
pub struct SzlResponse<'a> {
    buf: &'a [u8],
}

/// SZL id of module identification.
pub const SZL_MODULE_IDENTIFICATION: u16 = 0x0011;
/// SZL id of component identification.
pub const SZL_COMPONENT_IDENTIFICATION: u16 = 0x001C;
/// SZL id of the current mode transition (the CPU's operating mode).
pub const SZL_MODE_TRANSITION: u16 = 0x0424;

impl<'a> SzlResponse<'a> {
    pub const HEADER_LEN: usize = 8;

    pub fn new_checked(buf: &'a [u8]) -> Result<SzlResponse<'a>, Error> {
        if buf.len() < Self::HEADER_LEN {
            return Err(Error::Truncated {
                need: Self::HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(SzlResponse { buf })
    }

    pub fn szl_id(&self) -> u16 {
        be16(self.buf, 0).unwrap_or(0)
    }

    pub fn szl_index(&self) -> u16 {
        be16(self.buf, 2).unwrap_or(0)
    }

    pub fn record_length(&self) -> u16 {
        be16(self.buf, 4).unwrap_or(0)
    }

    pub fn record_count(&self) -> u16 {
        be16(self.buf, 6).unwrap_or(0)
    }

    /// The records, each `record_length` bytes; stops at the count or at the end of
    /// the buffer (a response split over several userdata PDUs is cut short).
    pub fn records(&self) -> SzlRecords<'a> {
        SzlRecords {
            rest: self.buf.get(Self::HEADER_LEN..).unwrap_or(&[]),
            len: usize::from(self.record_length()),
            left: self.record_count(),
        }
    }

    /// Module identification records (SZL 0x0011 and its partial lists xx11: the
    /// high byte of an SZL id selects the extract, the low byte the list).
    pub fn module_identification(&self) -> impl Iterator<Item = ModuleIdentification<'a>> {
        let valid = self.szl_id() & 0x00FF == SZL_MODULE_IDENTIFICATION;
        self.records()
            .filter(move |_| valid)
            .filter_map(ModuleIdentification::new)
    }

    /// The CPU's current operating mode from an SZL 0x0424 response: the low nibble
    /// of the first record's `bzu-id` byte (the requested, i.e. entered, mode; the
    /// high nibble is the previous one). Names as Wireshark's `s7comm_szl_ids.c`.
    pub fn cpu_mode(&self) -> Option<CpuMode> {
        if self.szl_id() != SZL_MODE_TRANSITION {
            return None;
        }
        let record = self.records().next()?;
        record.get(3).map(|bzu_id| CpuMode::from(bzu_id & 0x0F))
    }

    /// Component identification records (SZL 0x001C and its partial lists xx1C).
    pub fn component_identification(&self) -> impl Iterator<Item = ComponentIdentification<'a>> {
        let valid = self.szl_id() & 0x00FF == SZL_COMPONENT_IDENTIFICATION;
        self.records()
            .filter(move |_| valid)
            .filter_map(ComponentIdentification::new)
    }
}

/// An S7 CPU operating mode (SZL 0x0424 `bzu-id`, 4 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    StopUpdate,
    StopMemoryReset,
    StopSelfInitialization,
    StopInternal,
    StartupCompleteRestart,
    Restart,
    Run,
    Hold,
    Defect,
    Unknown(u8),
}

impl From<u8> for CpuMode {
    fn from(nibble: u8) -> CpuMode {
        match nibble {
            0x1 => CpuMode::StopUpdate,
            0x2 => CpuMode::StopMemoryReset,
            0x3 => CpuMode::StopSelfInitialization,
            0x4 => CpuMode::StopInternal,
            0x5 => CpuMode::StartupCompleteRestart,
            0x7 => CpuMode::Restart,
            0x8 => CpuMode::Run,
            0xA => CpuMode::Hold,
            0xD => CpuMode::Defect,
            other => CpuMode::Unknown(other),
        }
    }
}

impl CpuMode {
    /// Wireshark's name for the mode; `None` for a value it does not name.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            CpuMode::StopUpdate => "STOP (update)",
            CpuMode::StopMemoryReset => "STOP (memory reset)",
            CpuMode::StopSelfInitialization => "STOP (self initialization)",
            CpuMode::StopInternal => "STOP (internal)",
            CpuMode::StartupCompleteRestart => "Startup (complete restart)",
            CpuMode::Restart => "Restart",
            CpuMode::Run => "RUN",
            CpuMode::Hold => "HOLD",
            CpuMode::Defect => "DEFECT",
            CpuMode::Unknown(_) => return None,
        })
    }
}

/// Iterator over fixed-length SZL records.
#[derive(Clone, Debug)]
pub struct SzlRecords<'a> {
    rest: &'a [u8],
    len: usize,
    left: u16,
}

impl<'a> Iterator for SzlRecords<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 || self.len == 0 {
            return None;
        }
        let record = self.rest.get(..self.len)?;
        self.rest = self.rest.get(self.len..).unwrap_or(&[]);
        self.left -= 1;
        Some(record)
    }
}

/// An SZL 0x0011 record (28 bytes): index, order number (MLFB), module type
/// (BGTyp), and two version words (Ausbg, Ausbe). Index 1 names the module, 6 the
/// hardware, 7 the firmware (Wireshark `s7comm.szl.0011.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleIdentification<'a> {
    pub index: u16,
    /// Order number, space padded.
    pub order_number: &'a [u8],
    pub module_type: u16,
    pub version_high: u16,
    pub version_low: u16,
}

impl<'a> ModuleIdentification<'a> {
    pub const INDEX_MODULE: u16 = 0x0001;
    pub const INDEX_HARDWARE: u16 = 0x0006;
    pub const INDEX_FIRMWARE: u16 = 0x0007;
    const LEN: usize = 28;

    fn new(record: &'a [u8]) -> Option<ModuleIdentification<'a>> {
        record.get(..Self::LEN)?;
        Some(ModuleIdentification {
            index: be16(record, 0).unwrap_or(0),
            order_number: record.get(2..22)?,
            module_type: be16(record, 22).unwrap_or(0),
            version_high: be16(record, 24).unwrap_or(0),
            version_low: be16(record, 26).unwrap_or(0),
        })
    }

    /// Firmware version (major, minor, patch) of the index-7 record, whose version
    /// words are 'V' major, minor patch (plcscan / Wireshark show "V2.6.9" as
    /// 56 02 06 09).
    pub fn firmware_version(&self) -> Option<(u8, u8, u8)> {
        let [tag, major] = self.version_high.to_be_bytes();
        let [minor, patch] = self.version_low.to_be_bytes();
        (self.index == Self::INDEX_FIRMWARE && tag == b'V').then_some((major, minor, patch))
    }
}

/// An SZL 0x001C record (34 bytes): index and a 32-byte value. Indexes (Wireshark
/// `s7comm.szl.001c.*`): 1 automation system name, 2 module name, 3 plant
/// identification, 4 copyright, 5 serial number, 7 module type name, 8 memory card
/// serial number, 11 location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ComponentIdentification<'a> {
    pub index: u16,
    /// The value, NUL padded (index 9 and 10 hold binary ids).
    pub value: &'a [u8],
}

impl<'a> ComponentIdentification<'a> {
    pub const INDEX_SYSTEM_NAME: u16 = 1;
    pub const INDEX_MODULE_NAME: u16 = 2;
    pub const INDEX_PLANT_ID: u16 = 3;
    pub const INDEX_COPYRIGHT: u16 = 4;
    pub const INDEX_SERIAL_NUMBER: u16 = 5;
    pub const INDEX_MODULE_TYPE_NAME: u16 = 7;
    const LEN: usize = 34;

    fn new(record: &'a [u8]) -> Option<ComponentIdentification<'a>> {
        record.get(..Self::LEN)?;
        Some(ComponentIdentification {
            index: be16(record, 0).unwrap_or(0),
            value: record.get(2..Self::LEN)?,
        })
    }

    /// The value without trailing NUL and space padding.
    pub fn text(&self) -> &'a [u8] {
        trim_padding(self.value)
    }
}

/// Drops trailing NUL and space padding from a fixed-width SZL string.
pub fn trim_padding(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |last| last + 1);
    value.get(..end).unwrap_or(&[])
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_capture::hex;

    /// Frames of the S7 PDU inside a TPKT+COTP DT packet.
    fn s7(packet: &[u8]) -> S7comm<'_> {
        let tpkt = Tpkt::new_checked(packet).unwrap();
        let cotp = Cotp::new_checked(tpkt.payload()).unwrap();
        assert_eq!(cotp.pdu_type(), CotpType::Data);
        S7comm::new_checked(cotp.payload()).unwrap()
    }

    // s7comm-step7-plc-stop.pcapng frame 1: job 0x29 PLC stop "P_PROGRAM".
    const PLC_STOP: &str = "0300002102f0803201000035000010000029000000000009505f50524f4752414d";
    // Frame 2: ack-data 0x29.
    const PLC_STOP_ACK: &str = "0300001402f08032030000350000010000000029";
    // s7comm-ident-szl-upload.pcap frame 4: COTP CR with TSAPs.
    const COTP_CR: &str = "0300001611e00000000100c0010ac1020100c2020101";
    // Frame 10: userdata read SZL 0x0011 index 0.
    const SZL_REQ: &str = "0300002102f080320700000100000800080001120411440100ff09000400110000";
    // Frame 11: SZL 0x0011 response, 4 records.
    const SZL_0011: &str = "0300009902f080320700000100000c007c000112081284010000000000ff09007800110000001c0004000136455337203331352d32454831342d304142302000c000040001000636455337203331352d32454831342d304142302000c0000400010007202020202020202020202020202020202020202000c0560302060081426f6f74204c6f61646572202020202020202020000041200909";
    // Frame 13: SZL 0x001C response, 10 records.
    const SZL_001C: &str = "0300017d02f080320700000200000c0160000112081284010000000000ff09015c001c00000022000a0001534e4150372d53455256455200000000000000000000000000000000000000000002435055203331352d3220504e2f445000000000000000000000000000000000000003000000000000000000000000000000000000000000000000000000000000000000044f726967696e616c205369656d656e732045717569706d656e7400000000000000055320432d433255523238393232303132000000000000000000000000000000000007435055203331352d3220504e2f4450000000000000000000000000000000000000084d4d4320323637464631314600000000000000000000000000000000000000000009002af60000010000000000000000000000000000000000000000000000000000000a0000000000000000000000000000000000000000000000000000000000000000000b0000000000000000000000000000000000000000000000000000000000000000";
    // Frame 21: ack with header error 0xD2/0x41 to a start upload.
    const ACK_ERROR: &str = "0300001302f08032020000060000000000d241";
    // Frame 20: start upload job.
    const START_UPLOAD: &str =
        "0300002302f080320100000600001200001d00000000000000095f3042303030303041";
    // s7comm-tia-download-hwconfig-stop-start.pcapng frame 72: PI service _INSE.
    const PI_INSE: &str =
        "0300002b02f080320100007800001a000028000000000000fd000a01003042303030303750055f494e5345";
    // s7comm-varservice-libnodave.pcap frame 11: read var, 1 item.
    const READ_VAR: &str = "0300001f02f080320100000000000e00000401120a10020040000184000000";
    // s7comm-and-s7commplus-mixed.pcap frame 2 (first 32 bytes): S7comm-plus.
    const PLUS: &str = "0300007102f080720300622008c83ace381dfdbc42201789dec03b099172858efb";

    #[test]
    fn tpkt_framing() {
        let stop = hex(PLC_STOP);
        assert_eq!(frame(&stop), Framing::Frame(0x21));
        assert_eq!(frame(&stop[..3]), Framing::Need(4));
        assert_eq!(frame(&stop[..10]), Framing::Need(0x21));
        assert_eq!(frame(&[0x04, 0, 0, 0x21]), Framing::Resync(1));
        assert_eq!(frame(&[0x03, 0, 0, 0x02]), Framing::Resync(1));
        let mut two = stop.clone();
        two.extend_from_slice(&hex(PLC_STOP_ACK));
        assert_eq!(frame(&two), Framing::Frame(0x21));
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Tpkt::new_checked(&[3, 0]).unwrap_err(),
            Error::Truncated { need: 4, have: 2 }
        );
        assert_eq!(
            Tpkt::new_checked(&[2, 0, 0, 7, 2, 0xf0, 0x80]).unwrap_err(),
            Error::BadVersion(2)
        );
        assert_eq!(
            Tpkt::new_checked(&[3, 0, 0, 2]).unwrap_err(),
            Error::BadLength
        );
        assert_eq!(
            Tpkt::new_checked(&hex(PLC_STOP)[..20]).unwrap_err(),
            Error::Truncated { need: 33, have: 20 }
        );
        assert_eq!(Cotp::new_checked(&[0]).unwrap_err(), Error::BadLength);
        assert_eq!(
            Cotp::new_checked(&[6, 0xe0, 0]).unwrap_err(),
            Error::Truncated { need: 7, have: 3 }
        );
        // The S7 header announces more parameter bytes than present.
        let stop = hex(PLC_STOP);
        assert_eq!(
            S7comm::new_checked(&stop[7..stop.len() - 1]).unwrap_err(),
            Error::Truncated { need: 26, have: 25 }
        );
        let plus = hex(PLUS);
        assert_eq!(
            S7comm::new_checked(&plus[7..]).unwrap_err(),
            Error::BadProtocolId(0x72)
        );
    }

    #[test]
    fn cotp_connection_request() {
        let cr = hex(COTP_CR);
        let tpkt = Tpkt::new_checked(&cr).unwrap();
        assert_eq!(tpkt.version(), 3);
        assert_eq!(tpkt.length(), 22);
        let cotp = Cotp::new_checked(tpkt.payload()).unwrap();
        assert_eq!(cotp.length_indicator(), 17);
        assert_eq!(cotp.pdu_type(), CotpType::ConnectionRequest);
        assert_eq!(cotp.pdu_type().code(), 14);
        assert_eq!(cotp.dst_ref(), Some(0));
        assert_eq!(cotp.src_ref(), Some(1));
        assert_eq!(cotp.class(), Some(0));
        assert_eq!(cotp.src_tsap(), Some(&[0x01, 0x00][..]));
        assert_eq!(cotp.dst_tsap(), Some(&[0x01, 0x01][..]));
        assert_eq!(cotp.parameters().count(), 3);
        assert_eq!(cotp.eot(), None);
        // Connection setup is ISO-on-TCP, not yet S7.
        assert!(!looks_like(&cr));
        assert!(looks_like_iso_transport(&cr));
        let empty_dt = [0x03, 0x00, 0x00, 0x07, 0x02, 0xf0, 0x00];
        assert!(!looks_like(&empty_dt));
        assert!(looks_like_iso_transport(&empty_dt));
    }

    #[test]
    fn plc_stop_job_and_ack() {
        let stop = hex(PLC_STOP);
        let pdu = s7(&stop);
        assert_eq!(pdu.protocol_id(), 0x32);
        assert_eq!(pdu.rosctr(), Rosctr::Job);
        assert_eq!(pdu.pdu_reference(), 0x3500);
        assert_eq!(pdu.parameter_length(), 16);
        assert_eq!(pdu.data_length(), 0);
        assert_eq!(pdu.error_class(), None);
        assert_eq!(pdu.function(), Some(Function::PlcStop));
        assert_eq!(pdu.pi_service(), Some(&b"P_PROGRAM"[..]));
        assert_eq!(pdu.kind(), FunctionKind::Stop);
        assert_eq!(pdu.trailing_bytes(), 0);
        assert!(looks_like(&stop));

        let ack = hex(PLC_STOP_ACK);
        let pdu = s7(&ack);
        assert_eq!(pdu.rosctr(), Rosctr::AckData);
        assert_eq!(pdu.header_error(), Some(0));
        assert_eq!(pdu.function(), Some(Function::PlcStop));
        assert_eq!(pdu.pi_service(), None);
    }

    #[test]
    fn dt_eot_flag() {
        let stop = hex(PLC_STOP);
        let cotp = Cotp::new_checked(&stop[4..]).unwrap();
        assert_eq!(cotp.eot(), Some(true));
        assert_eq!(cotp.tpdu_number(), Some(0));
        assert_eq!(cotp.dst_ref(), None);
    }

    #[test]
    fn ack_header_error() {
        let ack = hex(ACK_ERROR);
        let pdu = s7(&ack);
        assert_eq!(pdu.rosctr(), Rosctr::Ack);
        assert_eq!(pdu.error_class(), Some(0xD2));
        assert_eq!(pdu.error_code(), Some(0x41));
        assert_eq!(pdu.function(), None);
        let job = hex(START_UPLOAD);
        let pdu = s7(&job);
        assert_eq!(pdu.function(), Some(Function::StartUpload));
        assert_eq!(pdu.kind(), FunctionKind::Program);
    }

    #[test]
    fn pi_service_insert_is_program() {
        let pi = hex(PI_INSE);
        let pdu = s7(&pi);
        assert_eq!(pdu.function(), Some(Function::PiService));
        assert_eq!(pdu.pi_service(), Some(&b"_INSE"[..]));
        assert_eq!(pdu.kind(), FunctionKind::Program);
        assert_eq!(pi_service_kind(b"P_PROGRAM"), FunctionKind::Start);
    }

    #[test]
    fn read_var_items() {
        let read = hex(READ_VAR);
        let pdu = s7(&read);
        assert_eq!(pdu.function(), Some(Function::ReadVar));
        assert_eq!(pdu.item_count(), Some(1));
        assert_eq!(pdu.kind(), FunctionKind::Read);
    }

    #[test]
    fn szl_request() {
        let req = hex(SZL_REQ);
        let pdu = s7(&req);
        assert_eq!(pdu.rosctr(), Rosctr::Userdata);
        let ud = pdu.userdata().unwrap();
        assert_eq!(ud.method(), 0x11);
        assert_eq!(ud.kind_code(), 4);
        assert_eq!(ud.function_group(), 4);
        assert_eq!(ud.subfunction(), 1);
        assert_eq!(ud.sequence_number(), 0);
        assert_eq!(ud.error_code(), None);
        assert_eq!(ud.return_code(), Some(0xFF));
        assert_eq!(ud.szl(), Some((0x0011, 0)));
        assert!(ud.szl_response().is_none());
        assert_eq!(pdu.kind(), FunctionKind::Diagnostic);
    }

    #[test]
    fn szl_0011_module_identification() {
        let resp = hex(SZL_0011);
        let pdu = s7(&resp);
        let ud = pdu.userdata().unwrap();
        assert_eq!(ud.kind_code(), 8);
        assert_eq!(ud.error_code(), Some(0));
        let szl = ud.szl_response().unwrap();
        assert_eq!(szl.szl_id(), 0x0011);
        assert_eq!(szl.record_length(), 28);
        assert_eq!(szl.record_count(), 4);
        let records: Vec<_> = szl.module_identification().collect();
        assert_eq!(records.len(), 4);
        assert_eq!(records[0].index, ModuleIdentification::INDEX_MODULE);
        assert_eq!(
            trim_padding(records[0].order_number),
            b"6ES7 315-2EH14-0AB0"
        );
        assert_eq!(records[1].index, ModuleIdentification::INDEX_HARDWARE);
        assert_eq!(records[1].version_low, 1);
        assert_eq!(records[2].index, ModuleIdentification::INDEX_FIRMWARE);
        assert_eq!(records[2].firmware_version(), Some((3, 2, 6)));
        // Index 0x0081: the boot loader record, kept but not firmware.
        assert_eq!(records[3].index, 0x0081);
        assert_eq!(records[3].firmware_version(), None);
        assert_eq!(szl.component_identification().count(), 0);
    }

    #[test]
    fn szl_001c_component_identification() {
        let resp = hex(SZL_001C);
        let pdu = s7(&resp);
        let szl = pdu.userdata().unwrap().szl_response().unwrap();
        assert_eq!(szl.szl_id(), 0x001C);
        let records: Vec<_> = szl.component_identification().collect();
        assert_eq!(records.len(), 10);
        let by_index = |index| records.iter().find(|r| r.index == index).unwrap().text();
        assert_eq!(by_index(1), b"SNAP7-SERVER");
        assert_eq!(by_index(2), b"CPU 315-2 PN/DP");
        assert_eq!(by_index(3), b"");
        assert_eq!(by_index(5), b"S C-C2UR28922012");
        assert_eq!(by_index(7), b"CPU 315-2 PN/DP");
    }

    // s7comm-read-set-plc-time.pcap frame 19: the final PDU of a fragmented SZL
    // answer (data unit reference 2, last unit), data without an SZL header.
    const SZL_CONTINUATION: &str = "0300003302f080320700000500000c0016000112081284010102000000ff09001204b505b506b507b508b501b602b603b604b6";

    #[test]
    fn szl_continuation_has_no_szl_id() {
        let bytes = hex(SZL_CONTINUATION);
        let pdu = s7(&bytes);
        let ud = pdu.userdata().unwrap();
        assert_eq!(ud.data_unit_reference(), Some(2));
        assert_eq!(ud.last_data_unit(), Some(true));
        assert!(ud.is_continuation());
        assert_eq!(ud.szl(), None);
        assert!(ud.szl_response().is_none());
        // A single-PDU answer is not a continuation.
        let bytes = hex(SZL_0011);
        let ud = s7(&bytes).userdata().unwrap();
        assert_eq!(ud.data_unit_reference(), Some(0));
        assert!(!ud.is_continuation());
    }

    #[test]
    fn szl_response_cut_short_stops() {
        let resp = hex(SZL_0011);
        // Drop the last record's final bytes; the data length check then fails for
        // the S7 PDU, so look at the SZL view alone.
        let pdu = s7(&resp);
        let payload = pdu.userdata().unwrap().payload();
        let szl = SzlResponse::new_checked(&payload[..payload.len() - 3]).unwrap();
        assert_eq!(szl.records().count(), 3);
        assert!(SzlResponse::new_checked(&payload[..7]).is_err());
    }

    #[test]
    fn s7comm_plus_is_recognised_not_parsed() {
        let plus = hex(PLUS);
        let cotp = Cotp::new_checked(&plus[4..]).unwrap();
        assert!(is_s7comm_plus(cotp.payload()));
        assert!(!is_s7comm_plus(&hex(PLC_STOP)[7..]));
        assert!(looks_like(&plus));
        assert!(!looks_like(b"GET / HTTP/1.1\r\n"));
    }
}
