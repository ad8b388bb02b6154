//! Modbus/TCP: the MBAP header and the PDU it carries, as a zero-copy view.
//!
//! Follows the *MODBUS Application Protocol Specification V1.1b3* (sections cited as
//! "MB §n") and the *MODBUS Messaging on TCP/IP Implementation Guide V1.0b* (cited as
//! "MBAP §n"); accessor names follow the spec fields, Wireshark's `mbtcp.*` and
//! `modbus.*` fields are named where they match.
//!
//! [`Adu::new_checked`] validates the MBAP header (protocol identifier, length field)
//! and that the buffer holds the whole ADU; after it succeeds **no accessor can panic**.
//! PDU fields whose presence depends on the function code and direction are returned
//! as `Option`: `None` when the function does not have the field or the PDU is too short
//! for it (the latter is also an [`Anomalies`] flag).
//!
//! Schneider Electric's UMAS (function code 90) has no public specification; its layout
//! and function names come from public research, see [`UmasFunction`].

use crate::bytes::be16;

use crate::{Direction, Framing};

/// Byte offsets of the MBAP header and the first PDU byte (MBAP §3.1.3).
mod field {
    use core::ops::Range;

    /// `mbtcp.trans_id`
    pub const TRANSACTION_ID: Range<usize> = 0..2;
    /// `mbtcp.prot_id`
    pub const PROTOCOL_ID: Range<usize> = 2..4;
    /// `mbtcp.len`: the number of bytes that follow, unit identifier included.
    pub const LENGTH: Range<usize> = 4..6;
    /// `mbtcp.unit_id`
    pub const UNIT_ID: usize = 6;
    /// `modbus.func_code`: the first PDU byte.
    pub const FUNCTION_CODE: usize = 7;
    /// The function's data.
    pub const DATA: usize = 8;
}

/// Length of the MBAP header (MBAP §3.1.3).
pub const HEADER_LEN: usize = field::FUNCTION_CODE;
/// The shortest ADU: a header and a function code.
pub const MIN_ADU_LEN: usize = field::DATA;
/// Bytes of the MBAP header that precede what its length field counts.
const LENGTH_BASE: usize = field::UNIT_ID;
/// The largest length field the spec allows: unit id + a 253-byte PDU (MB §4.1).
pub const MAX_SPEC_LENGTH: u16 = 254;
/// The largest length field accepted. Schneider Modicon PLCs send UMAS ADUs with a
/// length of 255 (seen in `modbus-umas-fc90-modicon.pcap`, which tshark dissects), so
/// one byte over the spec is framed and flagged [`Anomalies::OVERSIZED_ADU`].
pub const MAX_LENGTH: u16 = 255;
/// The smallest length field: unit id + function code.
pub const MIN_LENGTH: u16 = 2;
/// The exception bit of the function code in a response (MB §7).
pub const EXCEPTION_BIT: u8 = 0x80;

/// Why a buffer is not a Modbus/TCP ADU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated ADU: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("MBAP protocol identifier {0} is not Modbus (0)")]
    BadProtocolId(u16),
    #[error("MBAP length {0} outside {MIN_LENGTH}..={MAX_LENGTH}")]
    BadLength(u16),
}

impl Error {
    /// The counter label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadProtocolId(_) => "bad_protocol_id",
            Error::BadLength(_) => "bad_length",
        }
    }
}

wire_enum! {
    /// Public function codes (MB §5.1, Wireshark `modbus.func_code`), exception bit removed.
    pub enum FunctionCode {
        ReadCoils = 1 => "Read Coils",
        ReadDiscreteInputs = 2 => "Read Discrete Inputs",
        ReadHoldingRegisters = 3 => "Read Holding Registers",
        ReadInputRegisters = 4 => "Read Input Registers",
        WriteSingleCoil = 5 => "Write Single Coil",
        WriteSingleRegister = 6 => "Write Single Register",
        ReadExceptionStatus = 7 => "Read Exception Status",
        Diagnostics = 8 => "Diagnostics",
        GetCommEventCounter = 11 => "Get Comm Event Counter",
        GetCommEventLog = 12 => "Get Comm Event Log",
        WriteMultipleCoils = 15 => "Write Multiple Coils",
        WriteMultipleRegisters = 16 => "Write Multiple Registers",
        ReportServerId = 17 => "Report Server ID",
        ReadFileRecord = 20 => "Read File Record",
        WriteFileRecord = 21 => "Write File Record",
        MaskWriteRegister = 22 => "Mask Write Register",
        ReadWriteMultipleRegisters = 23 => "Read/Write Multiple Registers",
        ReadFifoQueue = 24 => "Read FIFO Queue",
        EncapsulatedInterfaceTransport = 43 => "Encapsulated Interface Transport",
        /// Schneider Electric UMAS, in the user-defined range's neighbourhood.
        Umas = 90 => "UMAS",
    }
}

wire_enum! {
    /// Exception codes (MB §7, Wireshark `modbus.exception_code`).
    pub enum ExceptionCode {
        IllegalFunction = 1 => "Illegal Function",
        IllegalDataAddress = 2 => "Illegal Data Address",
        IllegalDataValue = 3 => "Illegal Data Value",
        ServerDeviceFailure = 4 => "Server Device Failure",
        Acknowledge = 5 => "Acknowledge",
        ServerDeviceBusy = 6 => "Server Device Busy",
        MemoryParityError = 8 => "Memory Parity Error",
        GatewayPathUnavailable = 10 => "Gateway Path Unavailable",
        GatewayTargetFailedToRespond = 11 => "Gateway Target Device Failed to Respond",
    }
}

/// What a function does to the device, for detections (write, program, stop, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    Read,
    Write,
    /// Diagnostics, identification and status queries.
    Diagnostic,
    /// Program (strategy) transfer or online debugging of the control logic.
    Program,
    /// Puts the controller into RUN.
    Start,
    /// Puts the controller into STOP.
    Stop,
    Other,
}

impl FunctionKind {
    /// A stable lowercase name for events and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            FunctionKind::Read => "read",
            FunctionKind::Write => "write",
            FunctionKind::Diagnostic => "diagnostic",
            FunctionKind::Program => "program",
            FunctionKind::Start => "start",
            FunctionKind::Stop => "stop",
            FunctionKind::Other => "other",
        }
    }
}

impl FunctionCode {
    /// The kind of a public function code. UMAS (90) is [`FunctionKind::Other`] here:
    /// its kind depends on the UMAS function, see [`Adu::kind`].
    pub fn kind(self) -> FunctionKind {
        use FunctionCode::*;
        match self {
            ReadCoils | ReadDiscreteInputs | ReadHoldingRegisters | ReadInputRegisters
            | ReadFileRecord | ReadFifoQueue => FunctionKind::Read,
            // FC 23 also reads, but what matters for detection is that it writes.
            WriteSingleCoil
            | WriteSingleRegister
            | WriteMultipleCoils
            | WriteMultipleRegisters
            | WriteFileRecord
            | MaskWriteRegister
            | ReadWriteMultipleRegisters => FunctionKind::Write,
            ReadExceptionStatus | Diagnostics | GetCommEventCounter | GetCommEventLog
            | ReportServerId => FunctionKind::Diagnostic,
            EncapsulatedInterfaceTransport | Umas | Unknown(_) => FunctionKind::Other,
        }
    }
}

/// True for a function code (exception bit removed) that the spec defines or reserves
/// for users (MB §5: public codes, user-defined 65-72 and 100-110), or UMAS (90).
pub fn is_plausible_function(code: u8) -> bool {
    !matches!(FunctionCode::from(code), FunctionCode::Unknown(_))
        || matches!(code, 65..=72 | 100..=110)
}

/// A register or coil range: starting address and quantity (MB §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// `modbus.reference_num`: 0-based address on the wire.
    pub address: u16,
    /// Number of coils or registers (1 for single writes).
    pub quantity: u16,
}

/// Messages that break the spec but parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// MBAP length above the spec's 254 (MB §4.1).
    pub const OVERSIZED_ADU: u16 = 1 << 0;
    /// The PDU is shorter or longer than its function's layout.
    pub const PDU_LENGTH: u16 = 1 << 1;
    /// Quantity 0 or above the function's maximum (MB §6.1-6.17).
    pub const QUANTITY_RANGE: u16 = 1 << 2;
    /// A byte count that disagrees with the quantity or the data that follows.
    pub const BYTE_COUNT: u16 = 1 << 3;
    /// Write Single Coil value other than 0x0000 or 0xFF00 (MB §6.5).
    pub const COIL_VALUE: u16 = 1 << 4;
    /// An exception code the spec does not define (MB §7).
    pub const EXCEPTION_CODE: u16 = 1 << 5;
    /// A function code that is neither public, user-defined nor UMAS.
    pub const UNKNOWN_FUNCTION: u16 = 1 << 6;
    /// Address + quantity beyond the 65536-entry address space.
    pub const ADDRESS_OVERFLOW: u16 = 1 << 7;
    /// An exception response travelling in the request direction.
    pub const EXCEPTION_IN_REQUEST: u16 = 1 << 8;

    /// Every flag with its label, for counters.
    pub const ALL: [(u16, &'static str); 9] = [
        (Self::OVERSIZED_ADU, "oversized_adu"),
        (Self::PDU_LENGTH, "pdu_length"),
        (Self::QUANTITY_RANGE, "quantity_range"),
        (Self::BYTE_COUNT, "byte_count"),
        (Self::COIL_VALUE, "coil_value"),
        (Self::EXCEPTION_CODE, "exception_code"),
        (Self::UNKNOWN_FUNCTION, "unknown_function"),
        (Self::ADDRESS_OVERFLOW, "address_overflow"),
        (Self::EXCEPTION_IN_REQUEST, "exception_in_request"),
    ];

    pub fn contains(self, flag: u16) -> bool {
        self.0 & flag == flag
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Labels of the flags that are set.
    pub fn labels(self) -> impl Iterator<Item = &'static str> {
        Self::ALL
            .into_iter()
            .filter(move |(flag, _)| self.0 & flag != 0)
            .map(|(_, label)| label)
    }

    fn set(&mut self, flag: u16, when: bool) {
        if when {
            self.0 |= flag;
        }
    }
}

/// A Modbus/TCP ADU: MBAP header plus PDU, borrowed from the stream.
#[derive(Clone, Copy, Debug)]
pub struct Adu<'a> {
    /// Exactly the ADU: `6 + length` bytes, at least [`MIN_ADU_LEN`].
    buf: &'a [u8],
}

impl<'a> Adu<'a> {
    /// Validates the MBAP header and that `buf` holds the whole ADU. Bytes after the
    /// ADU (the next pipelined ADU) are not part of the view.
    pub fn new_checked(buf: &'a [u8]) -> Result<Adu<'a>, Error> {
        if buf.len() < MIN_ADU_LEN {
            return Err(Error::Truncated {
                need: MIN_ADU_LEN,
                have: buf.len(),
            });
        }
        let protocol_id = be16(buf, field::PROTOCOL_ID.start).unwrap_or(u16::MAX);
        if protocol_id != 0 {
            return Err(Error::BadProtocolId(protocol_id));
        }
        let length = be16(buf, field::LENGTH.start).unwrap_or(0);
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return Err(Error::BadLength(length));
        }
        let total = LENGTH_BASE + usize::from(length);
        match buf.get(..total) {
            Some(adu) => Ok(Adu { buf: adu }),
            None => Err(Error::Truncated {
                need: total,
                have: buf.len(),
            }),
        }
    }

    fn header_u16(&self, at: usize) -> u16 {
        be16(self.buf, at).unwrap_or(0)
    }

    fn byte(&self, at: usize) -> u8 {
        self.buf.get(at).copied().unwrap_or(0)
    }

    /// The whole ADU.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// `mbtcp.trans_id`: pairs a response with its request.
    pub fn transaction_id(&self) -> u16 {
        self.header_u16(field::TRANSACTION_ID.start)
    }

    /// `mbtcp.prot_id`: always 0 once checked.
    pub fn protocol_id(&self) -> u16 {
        self.header_u16(field::PROTOCOL_ID.start)
    }

    /// `mbtcp.len`: bytes after the length field.
    pub fn length(&self) -> u16 {
        self.header_u16(field::LENGTH.start)
    }

    /// `mbtcp.unit_id`: the addressed device behind a gateway (255 or 0 when direct).
    pub fn unit_id(&self) -> u8 {
        self.byte(field::UNIT_ID)
    }

    /// The function code byte as sent, exception bit included.
    pub fn raw_function_code(&self) -> u8 {
        self.byte(field::FUNCTION_CODE)
    }

    /// `modbus.func_code`: the function, exception bit removed.
    pub fn function_code(&self) -> FunctionCode {
        FunctionCode::from(self.raw_function_code() & !EXCEPTION_BIT)
    }

    /// True for an exception response (MB §7).
    pub fn is_exception(&self) -> bool {
        self.raw_function_code() & EXCEPTION_BIT != 0
    }

    /// `modbus.exception_code`, for exception responses.
    pub fn exception_code(&self) -> Option<ExceptionCode> {
        if !self.is_exception() {
            return None;
        }
        self.data().first().map(|&code| ExceptionCode::from(code))
    }

    /// The PDU: function code and data.
    pub fn pdu(&self) -> &'a [u8] {
        self.buf.get(field::FUNCTION_CODE..).unwrap_or(&[])
    }

    /// The function's data (after the function code).
    pub fn data(&self) -> &'a [u8] {
        self.buf.get(field::DATA..).unwrap_or(&[])
    }

    fn data_u16(&self, at: usize) -> Option<u16> {
        be16(self.data(), at)
    }

    /// Addresses read: FC 1-4 requests and the read half of an FC 23 request. Responses
    /// do not repeat the address.
    pub fn read_access(&self, direction: Direction) -> Option<Access> {
        if self.is_exception() || direction != Direction::Request {
            return None;
        }
        use FunctionCode::*;
        match self.function_code() {
            ReadCoils
            | ReadDiscreteInputs
            | ReadHoldingRegisters
            | ReadInputRegisters
            | ReadWriteMultipleRegisters => Some(Access {
                address: self.data_u16(0)?,
                quantity: self.data_u16(2)?,
            }),
            _ => None,
        }
    }

    /// Addresses written: FC 5, 6, 22 (quantity 1) and 15, 16 in both directions (the
    /// response echoes address and quantity), and the write half of an FC 23 request.
    pub fn write_access(&self, direction: Direction) -> Option<Access> {
        if self.is_exception() {
            return None;
        }
        use FunctionCode::*;
        match self.function_code() {
            WriteSingleCoil | WriteSingleRegister | MaskWriteRegister => Some(Access {
                address: self.data_u16(0)?,
                quantity: 1,
            }),
            WriteMultipleCoils | WriteMultipleRegisters => Some(Access {
                address: self.data_u16(0)?,
                quantity: self.data_u16(2)?,
            }),
            ReadWriteMultipleRegisters if direction == Direction::Request => Some(Access {
                address: self.data_u16(4)?,
                quantity: self.data_u16(6)?,
            }),
            _ => None,
        }
    }

    /// The value of a single write (FC 5 `0xFF00`/`0x0000`, FC 6 register value).
    pub fn write_value(&self) -> Option<u16> {
        if self.is_exception() {
            return None;
        }
        match self.function_code() {
            FunctionCode::WriteSingleCoil | FunctionCode::WriteSingleRegister => self.data_u16(2),
            _ => None,
        }
    }

    /// `modbus.byte_cnt`: FC 1-4 and 23 responses, FC 15, 16 and 23 requests.
    pub fn byte_count(&self, direction: Direction) -> Option<u8> {
        if self.is_exception() {
            return None;
        }
        use FunctionCode::*;
        let at = match (self.function_code(), direction) {
            (
                ReadCoils
                | ReadDiscreteInputs
                | ReadHoldingRegisters
                | ReadInputRegisters
                | ReadWriteMultipleRegisters,
                Direction::Response,
            ) => 0,
            (WriteMultipleCoils | WriteMultipleRegisters, Direction::Request) => 4,
            (ReadWriteMultipleRegisters, Direction::Request) => 8,
            _ => return None,
        };
        self.data().get(at).copied()
    }

    /// The values after the byte count (coil bits or big-endian registers), as far as
    /// the PDU holds them.
    pub fn values(&self, direction: Direction) -> Option<&'a [u8]> {
        let count = usize::from(self.byte_count(direction)?);
        let at = match direction {
            Direction::Response => 1,
            Direction::Request => match self.function_code() {
                FunctionCode::ReadWriteMultipleRegisters => 9,
                _ => 5,
            },
        };
        let rest = self.data().get(at..)?;
        Some(rest.get(..count).unwrap_or(rest))
    }

    /// `modbus.diagnostic_code`: the FC 8 sub-function (MB §6.8), both directions.
    pub fn diagnostic_code(&self) -> Option<u16> {
        if self.is_exception() || self.function_code() != FunctionCode::Diagnostics {
            return None;
        }
        self.data_u16(0)
    }

    /// `modbus.mei`: the MEI type of an FC 43 PDU (13 CANopen, 14 device identification).
    pub fn mei_type(&self) -> Option<u8> {
        if self.is_exception()
            || self.function_code() != FunctionCode::EncapsulatedInterfaceTransport
        {
            return None;
        }
        self.data().first().copied()
    }

    /// An FC 43/14 Read Device Identification request (MB §6.21).
    pub fn device_id_request(&self, direction: Direction) -> Option<DeviceIdRequest> {
        if direction != Direction::Request || self.mei_type()? != MEI_READ_DEVICE_ID {
            return None;
        }
        let data = self.data();
        Some(DeviceIdRequest {
            read_device_id_code: *data.get(1)?,
            object_id: *data.get(2)?,
        })
    }

    /// An FC 43/14 Read Device Identification response (MB §6.21).
    pub fn device_identification(&self, direction: Direction) -> Option<DeviceIdentification<'a>> {
        if direction != Direction::Response || self.mei_type()? != MEI_READ_DEVICE_ID {
            return None;
        }
        DeviceIdentification::new_checked(self.data().get(1..)?)
    }

    /// The UMAS message of an FC 90 PDU.
    pub fn umas(&self) -> Option<Umas<'a>> {
        if self.is_exception() || self.function_code() != FunctionCode::Umas {
            return None;
        }
        Umas::new_checked(self.data())
    }

    /// What the function does. For UMAS requests the UMAS function decides; a UMAS
    /// response carries only a status (see [`UmasFunction::RESPONSE_OK`]), so its kind
    /// is [`FunctionKind::Other`] and callers pair it with the request.
    pub fn kind(&self) -> FunctionKind {
        match self.function_code() {
            FunctionCode::Umas => self
                .umas()
                .map_or(FunctionKind::Other, |umas| umas.effective_function().kind()),
            FunctionCode::EncapsulatedInterfaceTransport
                if self.mei_type() == Some(MEI_READ_DEVICE_ID) =>
            {
                FunctionKind::Diagnostic
            }
            other => other.kind(),
        }
    }

    /// Spec violations that still parse. The layout checks cover FC 1-6, 15, 16, 22,
    /// 23 and exceptions; other functions are checked only for a known code.
    pub fn anomalies(&self, direction: Direction) -> Anomalies {
        let mut found = Anomalies::default();
        found.set(Anomalies::OVERSIZED_ADU, self.length() > MAX_SPEC_LENGTH);
        let code = self.raw_function_code() & !EXCEPTION_BIT;
        found.set(Anomalies::UNKNOWN_FUNCTION, !is_plausible_function(code));
        let data = self.data();
        if self.is_exception() {
            found.set(
                Anomalies::EXCEPTION_IN_REQUEST,
                direction == Direction::Request,
            );
            found.set(Anomalies::PDU_LENGTH, data.len() != 1);
            found.set(
                Anomalies::EXCEPTION_CODE,
                matches!(self.exception_code(), Some(ExceptionCode::Unknown(_))),
            );
            return found;
        }
        use FunctionCode::*;
        let function = self.function_code();
        // Fixed-size layouts (MB §6): the data length each function must have.
        let fixed_len = match (function, direction) {
            (
                ReadCoils | ReadDiscreteInputs | ReadHoldingRegisters | ReadInputRegisters,
                Direction::Request,
            )
            | (WriteSingleCoil | WriteSingleRegister, _)
            | (WriteMultipleCoils | WriteMultipleRegisters, Direction::Response) => Some(4),
            (MaskWriteRegister, _) => Some(6),
            _ => None,
        };
        if let Some(len) = fixed_len {
            found.set(Anomalies::PDU_LENGTH, data.len() != len);
        }
        if let Some(byte_count) = self.byte_count(direction) {
            let at = match (function, direction) {
                (_, Direction::Response) => 1,
                (ReadWriteMultipleRegisters, _) => 9,
                _ => 5,
            };
            let want = at + usize::from(byte_count);
            found.set(Anomalies::PDU_LENGTH, data.len() != want);
        } else if matches!(
            (function, direction),
            (
                ReadCoils
                    | ReadDiscreteInputs
                    | ReadHoldingRegisters
                    | ReadInputRegisters
                    | ReadWriteMultipleRegisters,
                Direction::Response
            ) | (
                WriteMultipleCoils | WriteMultipleRegisters | ReadWriteMultipleRegisters,
                Direction::Request
            )
        ) {
            // The function needs a byte count and the PDU ends before it.
            found.set(Anomalies::PDU_LENGTH, true);
        }
        if function == WriteSingleCoil {
            found.set(
                Anomalies::COIL_VALUE,
                !matches!(self.write_value(), None | Some(0x0000 | 0xFF00)),
            );
        }
        let check_range = |found: &mut Anomalies, access: Access, max: u16| {
            found.set(
                Anomalies::QUANTITY_RANGE,
                access.quantity == 0 || access.quantity > max,
            );
            found.set(
                Anomalies::ADDRESS_OVERFLOW,
                u32::from(access.address) + u32::from(access.quantity) > 0x1_0000,
            );
        };
        // Quantity limits (MB §6.1-6.4, 6.11, 6.12, 6.17).
        if let Some(access) = self.read_access(direction) {
            let max = match function {
                ReadCoils | ReadDiscreteInputs => 2000,
                _ => 125,
            };
            check_range(&mut found, access, max);
        }
        if let Some(access) = self.write_access(direction) {
            let max = match function {
                WriteMultipleCoils => 1968,
                WriteMultipleRegisters => 123,
                ReadWriteMultipleRegisters => 121,
                _ => 1,
            };
            check_range(&mut found, access, max);
            if direction == Direction::Request {
                // The byte count must carry exactly the written quantity.
                let expected = match function {
                    WriteMultipleCoils => Some(access.quantity.div_ceil(8)),
                    WriteMultipleRegisters | ReadWriteMultipleRegisters => {
                        Some(access.quantity.saturating_mul(2))
                    }
                    _ => None,
                };
                if let (Some(expected), Some(count)) = (expected, self.byte_count(direction)) {
                    found.set(Anomalies::BYTE_COUNT, expected != u16::from(count));
                }
            }
        }
        found
    }
}

/// MEI type of Read Device Identification (MB §6.21).
pub const MEI_READ_DEVICE_ID: u8 = 14;

/// An FC 43/14 request: which objects are asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceIdRequest {
    /// `modbus.read_device_id`: 1 basic, 2 regular, 3 extended stream, 4 one object.
    pub read_device_id_code: u8,
    /// `modbus.object_id`: the first object asked for.
    pub object_id: u8,
}

/// Byte offsets of an FC 43/14 response after the MEI type (MB §6.21).
mod device_id_field {
    pub const READ_DEVICE_ID_CODE: usize = 0;
    pub const CONFORMITY_LEVEL: usize = 1;
    pub const MORE_FOLLOWS: usize = 2;
    pub const NEXT_OBJECT_ID: usize = 3;
    pub const NUMBER_OF_OBJECTS: usize = 4;
    pub const OBJECTS: usize = 5;
}

/// An FC 43/14 Read Device Identification response body (after the MEI type).
#[derive(Clone, Copy, Debug)]
pub struct DeviceIdentification<'a> {
    /// At least [`device_id_field::OBJECTS`] bytes.
    buf: &'a [u8],
}

impl<'a> DeviceIdentification<'a> {
    /// Checks that the fixed fields are present; objects are read lazily.
    pub fn new_checked(buf: &'a [u8]) -> Option<DeviceIdentification<'a>> {
        if buf.len() < device_id_field::OBJECTS {
            return None;
        }
        Some(DeviceIdentification { buf })
    }

    fn byte(&self, at: usize) -> u8 {
        self.buf.get(at).copied().unwrap_or(0)
    }

    /// `modbus.read_device_id`
    pub fn read_device_id_code(&self) -> u8 {
        self.byte(device_id_field::READ_DEVICE_ID_CODE)
    }

    /// `modbus.conformity_level`: 0x01-0x03 (stream) or 0x81-0x83 (stream + individual).
    pub fn conformity_level(&self) -> u8 {
        self.byte(device_id_field::CONFORMITY_LEVEL)
    }

    /// `modbus.more_follows`: 0xFF when another transaction is needed.
    pub fn more_follows(&self) -> bool {
        self.byte(device_id_field::MORE_FOLLOWS) == 0xFF
    }

    /// `modbus.next_object_id`: where the next request should start.
    pub fn next_object_id(&self) -> u8 {
        self.byte(device_id_field::NEXT_OBJECT_ID)
    }

    /// `modbus.num_objects`: how many objects the response declares.
    pub fn number_of_objects(&self) -> u8 {
        self.byte(device_id_field::NUMBER_OF_OBJECTS)
    }

    /// The objects, as far as the PDU holds them (stops early on a truncated list).
    pub fn objects(&self) -> DeviceIdObjects<'a> {
        DeviceIdObjects {
            rest: self.buf.get(device_id_field::OBJECTS..).unwrap_or(&[]),
            remaining: self.number_of_objects(),
        }
    }
}

/// One identification object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceIdObject<'a> {
    /// `modbus.object_id`
    pub id: u8,
    /// `modbus.object_str_value`: ASCII for the standard objects, bytes as sent.
    pub value: &'a [u8],
}

impl DeviceIdObject<'_> {
    /// The name of a basic or regular object (MB §6.21, table of object ids).
    pub fn name(&self) -> Option<&'static str> {
        device_id_object_name(self.id)
    }
}

/// The name of a standard device identification object id (MB §6.21).
pub fn device_id_object_name(id: u8) -> Option<&'static str> {
    Some(match id {
        0 => "VendorName",
        1 => "ProductCode",
        2 => "MajorMinorRevision",
        3 => "VendorUrl",
        4 => "ProductName",
        5 => "ModelName",
        6 => "UserApplicationName",
        _ => return None,
    })
}

/// Iterator over FC 43/14 objects: `id (1) | length (1) | value (length)`.
#[derive(Clone, Debug)]
pub struct DeviceIdObjects<'a> {
    rest: &'a [u8],
    remaining: u8,
}

impl DeviceIdObjects<'_> {
    /// After iteration: true when the list ended before the declared number of objects.
    pub fn truncated(&self) -> bool {
        self.remaining > 0
    }
}

impl<'a> Iterator for DeviceIdObjects<'a> {
    type Item = DeviceIdObject<'a>;

    fn next(&mut self) -> Option<DeviceIdObject<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let (&id, after_id) = self.rest.split_first()?;
        let (&len, after_len) = after_id.split_first()?;
        let value = after_len.get(..usize::from(len))?;
        self.rest = after_len.get(usize::from(len)..).unwrap_or(&[]);
        self.remaining -= 1;
        Some(DeviceIdObject { id, value })
    }
}

/// A UMAS function code. A newtype rather than an enum because the code space is only
/// partly known (reverse-engineered, no public specification), so every value stays.
///
/// Names from "The Unity (UMAS) protocol" (lirasenlared blog, 2017), the UMAS Wireshark
/// Lua plugin by biero-el-corridor and its extension accompanying "From Pass-the-Hash to
/// Code Execution on Schneider Electric M340 PLCs" (Black Hat Europe 2024). In UMAS,
/// "upload" means engineering PC → PLC and "download" PLC → PC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UmasFunction(pub u8);

impl UmasFunction {
    pub const INIT_COMM: UmasFunction = UmasFunction(0x01);
    pub const READ_ID: UmasFunction = UmasFunction(0x02);
    pub const READ_PROJECT_INFO: UmasFunction = UmasFunction(0x03);
    pub const READ_PLC_INFO: UmasFunction = UmasFunction(0x04);
    pub const TAKE_PLC_RESERVATION: UmasFunction = UmasFunction(0x10);
    pub const RELEASE_PLC_RESERVATION: UmasFunction = UmasFunction(0x11);
    pub const WRITE_MEMORY_BLOCK: UmasFunction = UmasFunction(0x21);
    pub const WRITE_VARIABLES: UmasFunction = UmasFunction(0x23);
    pub const INITIALIZE_UPLOAD: UmasFunction = UmasFunction(0x30);
    pub const UPLOAD_BLOCK: UmasFunction = UmasFunction(0x31);
    pub const END_STRATEGY_UPLOAD: UmasFunction = UmasFunction(0x32);
    pub const INITIALIZE_DOWNLOAD: UmasFunction = UmasFunction(0x33);
    pub const DOWNLOAD_BLOCK: UmasFunction = UmasFunction(0x34);
    pub const END_STRATEGY_DOWNLOAD: UmasFunction = UmasFunction(0x35);
    /// A signed request wrapping another UMAS message (Black Hat Europe 2024).
    pub const SIGNED_REQUEST: UmasFunction = UmasFunction(0x38);
    pub const START_PLC: UmasFunction = UmasFunction(0x40);
    pub const STOP_PLC: UmasFunction = UmasFunction(0x41);
    /// Response status: success.
    pub const RESPONSE_OK: UmasFunction = UmasFunction(0xFE);
    /// Response status: error.
    pub const RESPONSE_ERROR: UmasFunction = UmasFunction(0xFD);

    /// The name used by the public research cited on the type.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x01 => "INIT_COMM",
            0x02 => "READ_ID",
            0x03 => "READ_PROJECT_INFO",
            0x04 => "READ_PLC_INFO",
            0x05 => "READ_LOADER_INFO",
            0x06 => "READ_CARD_INFO",
            0x07 => "READ_BLOCK_INFO",
            0x0A => "REPEAT",
            0x10 => "TAKE_PLC_RESERVATION",
            0x11 => "RELEASE_PLC_RESERVATION",
            0x12 => "KEEP_ALIVE",
            0x20 => "READ_MEMORY_BLOCK",
            0x21 => "WRITE_MEMORY_BLOCK",
            0x22 => "READ_VARIABLES",
            0x23 => "WRITE_VARIABLES",
            0x24 => "READ_COILS_REGISTERS",
            0x25 => "WRITE_COILS_REGISTERS",
            0x26 => "DATA_DICTIONARY",
            0x27 => "DATA_DICTIONARY_PRELOAD",
            0x28 => "READ_PHYSICAL_ADDRESS",
            0x29 => "WRITE_PHYSICAL_ADDRESS",
            0x2A => "BROWSE_EVENTS",
            0x30 => "INITIALIZE_UPLOAD",
            0x31 => "UPLOAD_BLOCK",
            0x32 => "END_STRATEGY_UPLOAD",
            0x33 => "INITIALIZE_DOWNLOAD",
            0x34 => "DOWNLOAD_BLOCK",
            0x35 => "END_STRATEGY_DOWNLOAD",
            0x36 => "BACKUP",
            0x37 => "PRELOAD_BLOCKS",
            0x38 => "SIGNED_REQUEST",
            0x39 => "READ_ETH_MASTER_DATA",
            0x40 => "START_PLC",
            0x41 => "STOP_PLC",
            0x42 => "INIT_PLC",
            0x43 => "SWAP",
            0x50 => "MONITOR_PLC",
            0x51 => "GET_AUTO_MODIF",
            0x52 => "GET_FORCED_BITS",
            0x53 => "GET_SELECTED_BLOCKS",
            0x58 => "CHECK_PLC",
            0x60 => "BKPT_SET",
            0x61 => "BKPT_DEL",
            0x62 => "STEP_OVER",
            0x63 => "STEP_IN",
            0x64 => "STEP_OUT",
            0x65 => "GET_CALL_STACK",
            0x66 => "CHECK_DEBUG_ALLOWED",
            0x6C => "PROCESS_MSG",
            0x6D => "PRIVATE",
            0x6E => "RESERVATION_NONCES",
            0x70 => "READ_IO_OBJECT",
            0x71 => "WRITE_IO_OBJECT",
            0x72 => "READ_RACK",
            0x73 => "GET_STATUS_MODULE",
            0x74 => "READ_DEVICE_DATA",
            0xFD => "RESPONSE_ERROR",
            0xFE => "RESPONSE_OK",
            _ => return None,
        })
    }

    /// What the function does to the PLC.
    pub fn kind(self) -> FunctionKind {
        match self.0 {
            0x40 => FunctionKind::Start,
            0x41 => FunctionKind::Stop,
            // Strategy transfer both ways, INIT_PLC, SWAP, and online debugging
            // (breakpoints and stepping halt or alter the running logic).
            0x30..=0x37 | 0x42 | 0x43 | 0x60..=0x64 => FunctionKind::Program,
            0x21 | 0x23 | 0x25 | 0x29 | 0x71 => FunctionKind::Write,
            0x20 | 0x22 | 0x24 | 0x26..=0x28 | 0x2A | 0x50..=0x53 | 0x65 | 0x70 | 0x72 | 0x74 => {
                FunctionKind::Read
            }
            0x02..=0x07 | 0x39 | 0x58 | 0x66 | 0x73 => FunctionKind::Diagnostic,
            _ => FunctionKind::Other,
        }
    }
}

/// Byte offsets of a UMAS message inside the FC 90 data (after `0x5A`).
mod umas_field {
    /// The session (reservation) key, 0 before a reservation.
    pub const SESSION: usize = 0;
    /// The UMAS function in a request, the status (0xFE/0xFD) in a response.
    pub const FUNCTION: usize = 1;
    pub const DATA: usize = 2;
    /// In a signed request (0x38): magic (1), signature (32), then `0x5A`, session and
    /// the wrapped function.
    pub const SIGNED_INNER_FUNCTION: usize = DATA + 1 + 32 + 2;
}

/// A UMAS message: `0x5A | session | function | data` (FC 90 PDU).
#[derive(Clone, Copy, Debug)]
pub struct Umas<'a> {
    /// The FC 90 data: at least session and function.
    buf: &'a [u8],
}

impl<'a> Umas<'a> {
    /// Checks that session and function are present.
    pub fn new_checked(buf: &'a [u8]) -> Option<Umas<'a>> {
        if buf.len() < umas_field::DATA {
            return None;
        }
        Some(Umas { buf })
    }

    /// The session key byte.
    pub fn session(&self) -> u8 {
        self.buf.get(umas_field::SESSION).copied().unwrap_or(0)
    }

    /// The UMAS function (request) or status (response).
    pub fn function_code(&self) -> UmasFunction {
        UmasFunction(self.buf.get(umas_field::FUNCTION).copied().unwrap_or(0))
    }

    /// The function after unwrapping a signed request (0x38) when it is long enough.
    pub fn effective_function(&self) -> UmasFunction {
        let function = self.function_code();
        if function == UmasFunction::SIGNED_REQUEST {
            if let Some(&inner) = self.buf.get(umas_field::SIGNED_INNER_FUNCTION) {
                return UmasFunction(inner);
            }
        }
        function
    }

    /// The bytes after the function code.
    pub fn data(&self) -> &'a [u8] {
        self.buf.get(umas_field::DATA..).unwrap_or(&[])
    }
}

/// Stream framing over the bytes of one TCP direction: the MBAP length field gives the
/// ADU size (MBAP §3.1.3).
///
/// Bytes that do not start with an MBAP header (a non-zero protocol id, or a length
/// outside [`MIN_LENGTH`]..=[`MAX_LENGTH`]) are handed on as one chunk reaching to the
/// next offset that could start a header (or to the end), which [`Adu::new_checked`]
/// rejects: the inspector counts it as non-Modbus traffic on a Modbus port (a
/// scanner's probe, another protocol on port 502) instead of the bytes vanishing in a
/// silent byte-by-byte resync. Framing continues at that offset.
pub fn frame(buf: &[u8]) -> Framing {
    if buf.len() < field::LENGTH.end {
        return if may_start_header(buf) {
            Framing::Need(field::LENGTH.end)
        } else {
            Framing::Frame(not_modbus_len(buf))
        };
    }
    if !may_start_header(buf) {
        return Framing::Frame(not_modbus_len(buf));
    }
    let length = be16(buf, field::LENGTH.start).unwrap_or(0);
    let total = LENGTH_BASE + usize::from(length);
    if buf.len() < total {
        Framing::Need(total)
    } else {
        Framing::Frame(total)
    }
}

/// True when `buf` may start an MBAP header: protocol id 0 and a length in
/// [`MIN_LENGTH`]..=[`MAX_LENGTH`], as far as `buf` holds them (Wireshark's
/// `dissect_mbtcp` heuristic checks the same two fields).
fn may_start_header(buf: &[u8]) -> bool {
    if let Some(protocol_id) = be16(buf, field::PROTOCOL_ID.start) {
        if protocol_id != 0 {
            return false;
        }
    }
    match be16(buf, field::LENGTH.start) {
        Some(length) => (MIN_LENGTH..=MAX_LENGTH).contains(&length),
        None => true,
    }
}

/// The bytes before the next offset that may start an MBAP header (all of `buf` when
/// none does); at least 1.
fn not_modbus_len(buf: &[u8]) -> usize {
    (1..buf.len())
        .find(|&at| buf.get(at..).is_some_and(may_start_header))
        .unwrap_or(buf.len())
}

/// A cheap signature for recognising Modbus/TCP on a non-standard port: protocol id 0,
/// a length field that ends the ADU exactly at the payload end or at another ADU with
/// protocol id 0, and a plausible function code.
pub fn looks_like(payload: &[u8]) -> bool {
    let Ok(adu) = Adu::new_checked(payload) else {
        return false;
    };
    if !is_plausible_function(adu.raw_function_code() & !EXCEPTION_BIT) {
        return false;
    }
    match payload.get(adu.as_bytes().len()..) {
        None | Some([]) => true,
        Some(rest) => be16(rest, field::PROTOCOL_ID.start) == Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_capture::hex;
    use crate::test_capture::{expected_histogram, framed_pdus};
    use std::collections::HashMap;

    // Fixtures are frames of the shared captures (frame numbers as in Wireshark).

    /// modbus-polling-fc3.pcap #1: Read Holding Registers, address 1, quantity 1.
    const READ_HOLDING_REQUEST: &str = "00d100000006010300010001";
    /// modbus-polling-fc3.pcap #2: its response, byte count 2, value 0.
    const READ_HOLDING_RESPONSE: &str = "00d1000000050103020000";
    /// modbus-small-fc1-fc15.pcap #4: Write Multiple Coils, address 0, 3 coils, 0b000.
    const WRITE_COILS_REQUEST: &str = "000100000008010f000000030100";
    /// modbus-small-fc1-fc15.pcap #6: its response echoing address and quantity.
    const WRITE_COILS_RESPONSE: &str = "000100000006010f00000003";
    /// modbus-polling-fc4-fc6.pcap: Write Single Register 4 = 2500, unit 7.
    const WRITE_REGISTER_REQUEST: &str = "01f5000000060706000409c4";
    /// modbus-fc-scan-exceptions.pcap: FC 8 sub-function 0 (Return Query Data).
    const DIAGNOSTICS_REQUEST: &str = "000000000006010800000000";
    /// modbus-mei-device-id-exception.pcap #1: FC 43/14, basic stream from object 0.
    const DEVICE_ID_REQUEST: &str = "000000000005002b0e0100";
    /// modbus-mei-device-id-exception.pcap #4: exception 4 (server device failure).
    const DEVICE_ID_EXCEPTION: &str = "000000000003ffab04";
    /// modbus-umas-fc90-modicon.pcap #4: UMAS READ_ID (0x02), session 0.
    const UMAS_READ_ID: &str = "000000000004005a0002";
    /// modbus-umas-fc90-modicon.pcap #8: UMAS response OK (0xFE).
    const UMAS_RESPONSE_OK: &str = "000100000011005a00fefd000104000032000000000000";

    /// A Read Device Identification response built from MB §6.21's example layout:
    /// conformity 0x81, no more follows, 3 objects (VendorName, ProductCode,
    /// MajorMinorRevision).
    fn device_id_response() -> Vec<u8> {
        let mut pdu = vec![0x2b, 0x0e, 0x01, 0x81, 0x00, 0x00, 0x03];
        for (id, value) in [(0u8, &b"Schneider"[..]), (1, b"BMX P34"), (2, b"V2.70")] {
            pdu.push(id);
            pdu.push(value.len() as u8);
            pdu.extend_from_slice(value);
        }
        let mut adu = vec![0x00, 0x07, 0x00, 0x00];
        adu.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
        adu.push(0xff);
        adu.extend_from_slice(&pdu);
        adu
    }

    fn umas_request(function: u8) -> Vec<u8> {
        hex(&format!("000500000005005a01{function:02x}00"))
    }

    #[test]
    fn read_holding_registers_request_and_response() {
        let bytes = hex(READ_HOLDING_REQUEST);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.transaction_id(), 0x00d1);
        assert_eq!(adu.protocol_id(), 0);
        assert_eq!(adu.length(), 6);
        assert_eq!(adu.unit_id(), 1);
        assert_eq!(adu.function_code(), FunctionCode::ReadHoldingRegisters);
        assert_eq!(adu.function_code().name(), Some("Read Holding Registers"));
        assert!(!adu.is_exception());
        assert_eq!(adu.exception_code(), None);
        assert_eq!(
            adu.read_access(Direction::Request),
            Some(Access {
                address: 1,
                quantity: 1
            })
        );
        assert_eq!(adu.write_access(Direction::Request), None);
        assert_eq!(adu.kind(), FunctionKind::Read);
        assert!(adu.anomalies(Direction::Request).is_empty());

        let bytes = hex(READ_HOLDING_RESPONSE);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.read_access(Direction::Response), None);
        assert_eq!(adu.byte_count(Direction::Response), Some(2));
        assert_eq!(adu.values(Direction::Response), Some(&[0u8, 0][..]));
        assert!(adu.anomalies(Direction::Response).is_empty());
    }

    #[test]
    fn write_multiple_coils_both_directions() {
        let bytes = hex(WRITE_COILS_REQUEST);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.function_code(), FunctionCode::WriteMultipleCoils);
        let access = Some(Access {
            address: 0,
            quantity: 3,
        });
        assert_eq!(adu.write_access(Direction::Request), access);
        assert_eq!(adu.byte_count(Direction::Request), Some(1));
        assert_eq!(adu.values(Direction::Request), Some(&[0u8][..]));
        assert_eq!(adu.kind(), FunctionKind::Write);
        assert!(adu.anomalies(Direction::Request).is_empty());

        let bytes = hex(WRITE_COILS_RESPONSE);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.write_access(Direction::Response), access);
        assert_eq!(adu.byte_count(Direction::Response), None);
        assert!(adu.anomalies(Direction::Response).is_empty());
    }

    #[test]
    fn write_single_register_and_read_write_multiple() {
        let bytes = hex(WRITE_REGISTER_REQUEST);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.unit_id(), 7);
        assert_eq!(
            adu.write_access(Direction::Request),
            Some(Access {
                address: 4,
                quantity: 1
            })
        );
        assert_eq!(adu.write_value(), Some(2500));

        // FC 23: read 3 at 0x10, write 1 at 0x20 with value 0x1234 (MB §6.17 layout).
        let bytes = hex("00090000000e0117001000030020000102123400");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(
            adu.read_access(Direction::Request),
            Some(Access {
                address: 0x10,
                quantity: 3
            })
        );
        assert_eq!(
            adu.write_access(Direction::Request),
            Some(Access {
                address: 0x20,
                quantity: 1
            })
        );
        assert_eq!(adu.byte_count(Direction::Request), Some(2));
        assert_eq!(adu.kind(), FunctionKind::Write);
        // One byte too many after the written value.
        assert!(adu
            .anomalies(Direction::Request)
            .contains(Anomalies::PDU_LENGTH));
    }

    #[test]
    fn diagnostics_sub_function() {
        let bytes = hex(DIAGNOSTICS_REQUEST);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.function_code(), FunctionCode::Diagnostics);
        assert_eq!(adu.diagnostic_code(), Some(0));
        assert_eq!(adu.kind(), FunctionKind::Diagnostic);
        let bytes = hex("0000000000060108000a0000");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.diagnostic_code(), Some(10));
    }

    #[test]
    fn exception_response() {
        let bytes = hex(DEVICE_ID_EXCEPTION);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.unit_id(), 255);
        assert_eq!(adu.raw_function_code(), 0xab);
        assert_eq!(
            adu.function_code(),
            FunctionCode::EncapsulatedInterfaceTransport
        );
        assert!(adu.is_exception());
        assert_eq!(
            adu.exception_code(),
            Some(ExceptionCode::ServerDeviceFailure)
        );
        assert_eq!(adu.mei_type(), None);
        assert!(adu.device_identification(Direction::Response).is_none());
        assert!(adu.anomalies(Direction::Response).is_empty());
        let request_side = adu.anomalies(Direction::Request);
        assert!(request_side.contains(Anomalies::EXCEPTION_IN_REQUEST));
        assert_eq!(
            request_side.labels().collect::<Vec<_>>(),
            ["exception_in_request"]
        );

        // An exception code the spec does not define is kept and flagged.
        let bytes = hex("00000000000301837f");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.exception_code(), Some(ExceptionCode::Unknown(0x7f)));
        assert!(adu
            .anomalies(Direction::Response)
            .contains(Anomalies::EXCEPTION_CODE));
    }

    #[test]
    fn read_device_identification() {
        let bytes = hex(DEVICE_ID_REQUEST);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.mei_type(), Some(MEI_READ_DEVICE_ID));
        assert_eq!(
            adu.device_id_request(Direction::Request),
            Some(DeviceIdRequest {
                read_device_id_code: 1,
                object_id: 0
            })
        );
        assert_eq!(adu.kind(), FunctionKind::Diagnostic);

        let bytes = device_id_response();
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        let id = adu
            .device_identification(Direction::Response)
            .expect("device identification");
        assert_eq!(id.read_device_id_code(), 1);
        assert_eq!(id.conformity_level(), 0x81);
        assert!(!id.more_follows());
        assert_eq!(id.next_object_id(), 0);
        assert_eq!(id.number_of_objects(), 3);
        let objects: Vec<_> = id
            .objects()
            .map(|object| (object.name(), object.value))
            .collect();
        assert_eq!(
            objects,
            [
                (Some("VendorName"), &b"Schneider"[..]),
                (Some("ProductCode"), b"BMX P34"),
                (Some("MajorMinorRevision"), b"V2.70"),
            ]
        );
        let mut all = id.objects();
        assert_eq!(all.by_ref().count(), 3);
        assert!(!all.truncated());
        assert_eq!(device_id_object_name(6), Some("UserApplicationName"));
        assert_eq!(device_id_object_name(0x80), None);

        // Cut inside the last object: two objects, then a clean stop.
        let short = &bytes[..bytes.len() - 2];
        let mut cut = short.to_vec();
        let new_length = (cut.len() - 6) as u16;
        cut[4..6].copy_from_slice(&new_length.to_be_bytes());
        let adu = Adu::new_checked(&cut).expect("valid ADU");
        let id = adu
            .device_identification(Direction::Response)
            .expect("device identification");
        let mut objects = id.objects();
        assert_eq!(objects.by_ref().count(), 2);
        assert!(objects.truncated());
    }

    #[test]
    fn device_identification_from_capture_is_odd_but_parses() {
        // modbus-mei-device-id-exception.pcap #2 (Zeek test trace): tshark shows
        // read_device_id 1 and no objects; "more follows" is 0x4D, not 0x00/0xFF.
        let bytes = hex("00000000000c002b0e01004db70000000000");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        let id = adu
            .device_identification(Direction::Response)
            .expect("device identification");
        assert_eq!(id.read_device_id_code(), 1);
        assert_eq!(id.conformity_level(), 0);
        assert!(!id.more_follows());
        assert_eq!(id.next_object_id(), 0xb7);
        assert_eq!(id.number_of_objects(), 0);
        assert_eq!(id.objects().count(), 0);
    }

    #[test]
    fn umas_functions() {
        let bytes = hex(UMAS_READ_ID);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.function_code(), FunctionCode::Umas);
        let umas = adu.umas().expect("UMAS message");
        assert_eq!(umas.session(), 0);
        assert_eq!(umas.function_code(), UmasFunction::READ_ID);
        assert_eq!(umas.function_code().name(), Some("READ_ID"));
        assert!(umas.data().is_empty());
        assert_eq!(adu.kind(), FunctionKind::Diagnostic);

        let bytes = hex(UMAS_RESPONSE_OK);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        let umas = adu.umas().expect("UMAS message");
        assert_eq!(umas.function_code(), UmasFunction::RESPONSE_OK);
        assert_eq!(umas.data().len(), 13);
        assert_eq!(adu.kind(), FunctionKind::Other);

        let cases = [
            (0x40, FunctionKind::Start, "START_PLC"),
            (0x41, FunctionKind::Stop, "STOP_PLC"),
            (0x31, FunctionKind::Program, "UPLOAD_BLOCK"),
            (0x34, FunctionKind::Program, "DOWNLOAD_BLOCK"),
            (0x23, FunctionKind::Write, "WRITE_VARIABLES"),
            (0x10, FunctionKind::Other, "TAKE_PLC_RESERVATION"),
        ];
        for (function, kind, name) in cases {
            let bytes = umas_request(function);
            let adu = Adu::new_checked(&bytes).expect("valid ADU");
            let umas = adu.umas().expect("UMAS message");
            assert_eq!(umas.session(), 1);
            assert_eq!(umas.function_code().name(), Some(name));
            assert_eq!(adu.kind(), kind, "{name}");
        }
        assert_eq!(UmasFunction(0x99).name(), None);

        // A signed request (0x38) wrapping STOP_PLC.
        let mut pdu = vec![0x5a, 0x01, 0x38, 0x01];
        pdu.extend_from_slice(&[0xaa; 32]);
        pdu.extend_from_slice(&[0x5a, 0x01, 0x41]);
        let mut bytes = vec![0, 9, 0, 0, 0, (pdu.len() + 1) as u8, 0];
        bytes.extend_from_slice(&pdu);
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        let umas = adu.umas().expect("UMAS message");
        assert_eq!(umas.function_code(), UmasFunction::SIGNED_REQUEST);
        assert_eq!(umas.effective_function(), UmasFunction::STOP_PLC);
        assert_eq!(adu.kind(), FunctionKind::Stop);

        // FC 90 with only the session byte: no UMAS view.
        let bytes = hex("000000000003005a00");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert!(adu.umas().is_none());
        assert_eq!(adu.kind(), FunctionKind::Other);
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Adu::new_checked(&hex("00d1000000")).map(|_| ()),
            Err(Error::Truncated { need: 8, have: 5 })
        );
        // The length field promises one more byte than present.
        assert_eq!(
            Adu::new_checked(&hex("00d100000007010300010001")).map(|_| ()),
            Err(Error::Truncated { need: 13, have: 12 })
        );
        assert_eq!(
            Adu::new_checked(&hex("00d100010006010300010001")).map(|_| ()),
            Err(Error::BadProtocolId(1))
        );
        assert_eq!(
            Adu::new_checked(&hex("00d100000001010300010001")).map(|_| ()),
            Err(Error::BadLength(1))
        );
        assert_eq!(
            Adu::new_checked(&hex("00d100000100010300010001")).map(|_| ()),
            Err(Error::BadLength(256))
        );
        assert_eq!(Error::BadLength(1).label(), "bad_length");
    }

    #[test]
    fn anomalies_are_flags() {
        // Read Coils of 0 coils at 0xFFFF: parses, flagged.
        let bytes = hex("000100000006010100000000");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert!(adu
            .anomalies(Direction::Request)
            .contains(Anomalies::QUANTITY_RANGE));
        let bytes = hex("00010000000601037fff0002");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert!(adu.anomalies(Direction::Request).is_empty());
        let bytes = hex("0001000000060103ffff0002");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert!(adu
            .anomalies(Direction::Request)
            .contains(Anomalies::ADDRESS_OVERFLOW));
        // Write Single Coil with 0x1234.
        let bytes = hex("000100000006010500011234");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert!(adu
            .anomalies(Direction::Request)
            .contains(Anomalies::COIL_VALUE));
        // Write Multiple Registers: 2 registers but a byte count of 3.
        let bytes = hex("00010000000a0110000000020300010200");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        let found = adu.anomalies(Direction::Request);
        assert!(found.contains(Anomalies::BYTE_COUNT));
        assert!(!found.contains(Anomalies::PDU_LENGTH));
        // Read Holding Registers request with its quantity missing.
        let bytes = hex("0001000000040103000a");
        let adu = Adu::new_checked(&bytes).expect("valid ADU");
        assert_eq!(adu.read_access(Direction::Request), None);
        assert!(adu
            .anomalies(Direction::Request)
            .contains(Anomalies::PDU_LENGTH));
        // Unknown function 0x30; a 255-byte length (the Modicon UMAS case).
        let bytes = hex("000100000002013000");
        let adu = Adu::new_checked(&bytes[..8]).expect("valid ADU");
        assert!(adu
            .anomalies(Direction::Request)
            .contains(Anomalies::UNKNOWN_FUNCTION));
        let mut big = hex("0001000000ff005a000a00");
        big.resize(6 + 255, 0x54);
        let adu = Adu::new_checked(&big).expect("valid ADU");
        assert!(adu
            .anomalies(Direction::Request)
            .contains(Anomalies::OVERSIZED_ADU));
    }

    #[test]
    fn framing() {
        let request = hex(READ_HOLDING_REQUEST);
        assert_eq!(frame(&request[..3]), Framing::Need(6));
        assert_eq!(frame(&request[..7]), Framing::Need(12));
        assert_eq!(frame(&request), Framing::Frame(12));
        let mut two = request.clone();
        two.extend_from_slice(&hex(READ_HOLDING_RESPONSE));
        assert_eq!(frame(&two), Framing::Frame(12));
        assert_eq!(frame(&two[12..]), Framing::Frame(11));
        // Not an MBAP header: a chunk up to the next possible header, for the inspector
        // to reject.
        // (Offset 3 holds only 3 bytes, which may start a header.)
        assert_eq!(frame(&hex("00d100010006")), Framing::Frame(3));
        // Length 1; offset 1 has protocol id 0 and its length is not there yet.
        assert_eq!(frame(&hex("00d100000001")), Framing::Frame(1));
        // Length 256.
        assert_eq!(frame(&hex("00d10000010001")), Framing::Frame(4));
        let probe = b"GET / HTTP/1.1\r\n\r\n";
        // Up to the last three bytes, which may start a header the next segment ends.
        assert_eq!(frame(probe), Framing::Frame(probe.len() - 3));
        assert!(matches!(
            Adu::new_checked(probe),
            Err(Error::BadProtocolId(_))
        ));
        // Junk before a request: the junk alone, then the request.
        let mut junk = b"\x13\x37junk".to_vec();
        junk.extend_from_slice(&hex(READ_HOLDING_REQUEST));
        assert_eq!(frame(&junk), Framing::Frame(6));
        assert_eq!(frame(&junk[6..]), Framing::Frame(12));
        assert_eq!(frame(&[]), Framing::Need(6));
    }

    #[test]
    fn recognition() {
        assert!(looks_like(&hex(READ_HOLDING_REQUEST)));
        assert!(looks_like(&hex(UMAS_READ_ID)));
        assert!(looks_like(&hex(DEVICE_ID_EXCEPTION)));
        let mut two = hex(READ_HOLDING_REQUEST);
        two.extend_from_slice(&hex(READ_HOLDING_REQUEST));
        assert!(looks_like(&two));
        // Length field disagrees with the payload.
        assert!(!looks_like(&hex("00d100000009010300010001")));
        // Function code 0x30 is not a Modbus function.
        assert!(!looks_like(&hex("000100000002013000")[..8]));
        // HTTP.
        assert!(!looks_like(b"GET / HTTP/1.1\r\n\r\n"));
        // Trailing bytes that are not an MBAP header.
        let mut junk = hex(READ_HOLDING_REQUEST);
        junk.extend_from_slice(b"xyzw");
        assert!(!looks_like(&junk));
    }

    fn function_code_histogram(name: &str) -> (HashMap<String, u64>, usize) {
        let (pdus, skipped) = framed_pdus(name, 502, frame);
        let mut histogram = HashMap::new();
        for (_, bytes) in &pdus {
            let adu = Adu::new_checked(bytes).expect("framed ADU parses");
            let code = u8::from(adu.function_code());
            *histogram.entry(code.to_string()).or_insert(0) += 1;
        }
        (histogram, skipped)
    }

    /// Function code counts over whole captures agree with tshark's `modbus.func_code`.
    #[test]
    fn function_codes_match_tshark() {
        for name in [
            "modbus-polling-fc3.pcap",
            "modbus-small-fc1-fc15.pcap",
            "modbus-umas-fc90-modicon.pcap",
            "modbus-polling-fc4-fc6.pcap",
            "modbus-pipelined-cloudshark.pcap",
            "modbus-mei-device-id-exception.pcap",
        ] {
            let (histogram, skipped) = function_code_histogram(name);
            assert_eq!(skipped, 0, "{name}: resynchronised");
            assert_eq!(
                histogram,
                expected_histogram(name, "modbus", "func_code"),
                "{name}"
            );
        }
    }

    /// Recognition on real traffic: every ADU of the polling captures looks like Modbus
    /// and not like DNP3; no DNP3 link frame looks like Modbus.
    #[test]
    fn recognition_on_captures() {
        for name in ["modbus-polling-fc3.pcap", "modbus-polling-fc4-fc6.pcap"] {
            let (pdus, _) = framed_pdus(name, 502, frame);
            assert!(!pdus.is_empty());
            for (_, bytes) in &pdus {
                assert!(looks_like(bytes), "{name}: {bytes:02x?}");
                assert!(!crate::dnp3::looks_like(bytes), "{name}");
            }
        }
        let (frames, _) = framed_pdus("dnp3-digitalbond-part1.pcap", 20000, crate::dnp3::frame);
        assert!(!frames.is_empty());
        for (_, bytes) in &frames {
            assert!(!looks_like(bytes), "{bytes:02x?}");
        }
    }

    /// FC 43/14 in the Zeek trace agrees with tshark's `mei_type` and `read_device_id`
    /// counts (3 non-exception PDUs with MEI 14 and code 1).
    #[test]
    fn device_id_matches_tshark() {
        let name = "modbus-mei-device-id-exception.pcap";
        let (pdus, _) = framed_pdus(name, 502, frame);
        let mut mei = 0;
        let mut read_device_id = 0;
        for (direction, bytes) in &pdus {
            let adu = Adu::new_checked(bytes).expect("framed ADU parses");
            if adu.mei_type() == Some(MEI_READ_DEVICE_ID) {
                mei += 1;
            }
            let code = adu
                .device_id_request(*direction)
                .map(|request| request.read_device_id_code)
                .or(adu
                    .device_identification(*direction)
                    .map(|id| id.read_device_id_code()));
            if code == Some(1) {
                read_device_id += 1;
            }
        }
        assert_eq!(expected_histogram(name, "modbus", "mei_type")["14"], mei);
        assert_eq!(
            expected_histogram(name, "modbus", "read_device_id")["1"],
            read_device_id
        );
    }
}
