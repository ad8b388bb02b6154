//! EtherNet/IP encapsulation (ODVA CIP Vol. 2, chapter 2; TCP/UDP 44818) and the
//! common packet format (CPF, Vol. 2 2-6) that carries CIP messages and class-1 I/O
//! (UDP 2222).
//!
//! [`Encapsulation::new_checked`](crate::enip::Encapsulation::new_checked) validates the 24-byte header and that the declared
//! length fits; after it succeeds no accessor can panic. CPF items, ListIdentity items
//! and the CIP message inside a data item are read with bounds checks: what does not
//! fit ends an iterator or answers `None`.
//!
//! Field names follow Wireshark's `enip` dissector (`enip.command`, `enip.length`,
//! `enip.session`, `enip.status`, `enip.context`, `enip.options`, `enip.cpf.*`,
//! `enip.lir.*`).

use crate::bytes::{le16, le32};

use super::Framing;
use crate::cip;

/// Errors of the EtherNet/IP views; one counter label each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
}

impl Error {
    /// The metrics label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
        }
    }
}

mod field {
    use core::ops::Range;
    // Vol. 2 table 2-3.1, all little endian.
    pub const COMMAND: usize = 0;
    pub const LENGTH: usize = 2;
    pub const SESSION: usize = 4;
    pub const STATUS: usize = 8;
    pub const SENDER_CONTEXT: Range<usize> = 12..20;
    pub const OPTIONS: usize = 20;
    pub const DATA: usize = 24;
    // SendRRData / SendUnitData command data (Vol. 2 2-4.7): interface handle,
    // timeout, then the CPF.
    pub const INTERFACE_HANDLE: usize = 0;
    pub const TIMEOUT: usize = 4;
    pub const RR_CPF: usize = 6;
}

/// The encapsulation header length.
pub const HEADER_LEN: usize = field::DATA;

/// Encapsulation commands (Vol. 2 table 2-3.2, `enip.command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Nop,
    ListServices,
    ListIdentity,
    ListInterfaces,
    RegisterSession,
    UnRegisterSession,
    SendRRData,
    SendUnitData,
    IndicateStatus,
    Cancel,
    Unknown(u16),
}

impl From<u16> for Command {
    fn from(value: u16) -> Command {
        match value {
            0x0000 => Command::Nop,
            0x0004 => Command::ListServices,
            0x0063 => Command::ListIdentity,
            0x0064 => Command::ListInterfaces,
            0x0065 => Command::RegisterSession,
            0x0066 => Command::UnRegisterSession,
            0x006F => Command::SendRRData,
            0x0070 => Command::SendUnitData,
            0x0072 => Command::IndicateStatus,
            0x0073 => Command::Cancel,
            other => Command::Unknown(other),
        }
    }
}

impl Command {
    pub fn code(self) -> u16 {
        match self {
            Command::Nop => 0x0000,
            Command::ListServices => 0x0004,
            Command::ListIdentity => 0x0063,
            Command::ListInterfaces => 0x0064,
            Command::RegisterSession => 0x0065,
            Command::UnRegisterSession => 0x0066,
            Command::SendRRData => 0x006F,
            Command::SendUnitData => 0x0070,
            Command::IndicateStatus => 0x0072,
            Command::Cancel => 0x0073,
            Command::Unknown(code) => code,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Command::Nop => "NOP",
            Command::ListServices => "List Services",
            Command::ListIdentity => "List Identity",
            Command::ListInterfaces => "List Interfaces",
            Command::RegisterSession => "Register Session",
            Command::UnRegisterSession => "Unregister Session",
            Command::SendRRData => "Send RR Data",
            Command::SendUnitData => "Send Unit Data",
            Command::IndicateStatus => "Indicate Status",
            Command::Cancel => "Cancel",
            Command::Unknown(_) => "unknown",
        }
    }
}

/// CPF item type ids (Vol. 2 table 2-6.3, `enip.cpf.typeid`).
pub mod item {
    pub const NULL_ADDRESS: u16 = 0x0000;
    pub const LIST_IDENTITY: u16 = 0x000C;
    pub const CONNECTED_ADDRESS: u16 = 0x00A1;
    pub const CONNECTED_DATA: u16 = 0x00B1;
    pub const UNCONNECTED_DATA: u16 = 0x00B2;
    pub const LIST_SERVICES: u16 = 0x0100;
    pub const SOCKADDR_O_T: u16 = 0x8000;
    pub const SOCKADDR_T_O: u16 = 0x8001;
    pub const SEQUENCED_ADDRESS: u16 = 0x8002;
}

/// Stream framing: a 24-byte header and `length` bytes of data. A command with a
/// non-zero high byte is not EtherNet/IP (all defined and reserved-legacy commands are
/// below 0x0100), so the framer resyncs.
pub fn frame(buf: &[u8]) -> Framing {
    if buf.len() < HEADER_LEN {
        return Framing::Need(HEADER_LEN);
    }
    if buf.get(field::COMMAND + 1).is_some_and(|&high| high != 0) {
        return Framing::Resync(1);
    }
    let length = usize::from(le16(buf, field::LENGTH).unwrap_or(0));
    let total = HEADER_LEN + length;
    if buf.len() < total {
        Framing::Need(total)
    } else {
        Framing::Frame(total)
    }
}

/// Cheap signature check for encapsulation messages on any port: each header in
/// the payload (up to four, back to back) has a known command other than NOP and
/// options zero (Vol. 2 2-3.6: a receiver discards non-zero options), and the last
/// one ends at or after the end of the payload (a segment may cut it short).
pub fn looks_like(payload: &[u8]) -> bool {
    let mut rest = payload;
    for _ in 0..4 {
        if rest.len() < HEADER_LEN {
            return false;
        }
        let command = Command::from(le16(rest, field::COMMAND).unwrap_or(0xFFFF));
        if matches!(command, Command::Unknown(_) | Command::Nop)
            || le32(rest, field::OPTIONS) != Some(0)
        {
            return false;
        }
        let total = HEADER_LEN + usize::from(le16(rest, field::LENGTH).unwrap_or(0));
        match rest.get(total..) {
            Some([]) | None => return true,
            Some(next) => rest = next,
        }
    }
    false
}

/// Cheap signature check for class-1 I/O on UDP 2222 (Vol. 2 2-6.1, 3-2.2): a CPF
/// of a sequenced address item (8 bytes) followed by a connected data item.
pub fn looks_like_io(payload: &[u8]) -> bool {
    let Ok(mut items) = CpfItems::new_checked(payload) else {
        return false;
    };
    let first = items.next();
    let second = items.next();
    matches!(
        (first, second),
        (Some(a), Some(b)) if a.type_id == item::SEQUENCED_ADDRESS
            && a.data.len() == 8
            && b.type_id == item::CONNECTED_DATA
    )
}

/// An encapsulation message.
#[derive(Clone, Copy, Debug)]
pub struct Encapsulation<'a> {
    buf: &'a [u8],
}

impl<'a> Encapsulation<'a> {
    /// Validates the header and that `length` data bytes follow; the view ends there
    /// (a following message in the same segment is not part of it).
    pub fn new_checked(buf: &'a [u8]) -> Result<Encapsulation<'a>, Error> {
        let have = buf.len();
        if have < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                have,
            });
        }
        let need = HEADER_LEN + usize::from(le16(buf, field::LENGTH).unwrap_or(0));
        match buf.get(..need) {
            Some(buf) => Ok(Encapsulation { buf }),
            None => Err(Error::Truncated { need, have }),
        }
    }

    pub fn command(&self) -> Command {
        Command::from(le16(self.buf, field::COMMAND).unwrap_or(0))
    }

    /// Data length after the header (`enip.length`).
    pub fn length(&self) -> u16 {
        le16(self.buf, field::LENGTH).unwrap_or(0)
    }

    /// `enip.session`.
    pub fn session_handle(&self) -> u32 {
        le32(self.buf, field::SESSION).unwrap_or(0)
    }

    /// `enip.status` (0 success, 1 invalid command, 0x64 invalid session, ...).
    pub fn status(&self) -> u32 {
        le32(self.buf, field::STATUS).unwrap_or(0)
    }

    /// `enip.context`: echoed by the target, pairs requests and replies.
    pub fn sender_context(&self) -> &'a [u8] {
        self.buf.get(field::SENDER_CONTEXT).unwrap_or(&[])
    }

    /// `enip.options`; non-zero is an anomaly.
    pub fn options(&self) -> u32 {
        le32(self.buf, field::OPTIONS).unwrap_or(0)
    }

    /// Command-specific data.
    pub fn data(&self) -> &'a [u8] {
        self.buf.get(HEADER_LEN..).unwrap_or(&[])
    }

    fn is_rr_or_unit(&self) -> bool {
        matches!(self.command(), Command::SendRRData | Command::SendUnitData)
    }

    /// Interface handle of SendRRData / SendUnitData (0 for CIP).
    pub fn interface_handle(&self) -> Option<u32> {
        if !self.is_rr_or_unit() {
            return None;
        }
        le32(self.data(), field::INTERFACE_HANDLE)
    }

    /// Timeout of SendRRData / SendUnitData, in seconds.
    pub fn timeout(&self) -> Option<u16> {
        if !self.is_rr_or_unit() {
            return None;
        }
        le16(self.data(), field::TIMEOUT)
    }

    /// The CPF items of SendRRData / SendUnitData and of List* replies.
    pub fn cpf(&self) -> Option<CpfItems<'a>> {
        let cpf = match self.command() {
            Command::SendRRData | Command::SendUnitData => self.data().get(field::RR_CPF..)?,
            Command::ListIdentity | Command::ListServices | Command::ListInterfaces => self.data(),
            _ => return None,
        };
        CpfItems::new_checked(cpf).ok()
    }

    /// The CIP identity items of a ListIdentity reply.
    pub fn list_identity(&self) -> impl Iterator<Item = IdentityItem<'a>> {
        let items = match self.command() {
            Command::ListIdentity => self.cpf(),
            _ => None,
        };
        items
            .into_iter()
            .flatten()
            .filter(|item| item.type_id == item::LIST_IDENTITY)
            .filter_map(|item| IdentityItem::new_checked(item.data).ok())
    }

    /// The explicit CIP message carried: the unconnected data item of SendRRData, or
    /// the connected data item of SendUnitData with its connection id and sequence
    /// count.
    pub fn cip(&self) -> Option<CipPayload<'a>> {
        let mut connection_id = None;
        for item in self.cpf()? {
            match item.type_id {
                item::CONNECTED_ADDRESS => connection_id = le32(item.data, 0),
                item::UNCONNECTED_DATA if self.command() == Command::SendRRData => {
                    return Some(CipPayload {
                        connection_id: None,
                        sequence_count: None,
                        message: item.data,
                    });
                }
                item::CONNECTED_DATA if self.command() == Command::SendUnitData => {
                    return Some(CipPayload {
                        connection_id,
                        sequence_count: le16(item.data, 0),
                        message: item.data.get(2..).unwrap_or(&[]),
                    });
                }
                _ => {}
            }
        }
        None
    }
}

/// A CIP message found in an encapsulation message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CipPayload<'a> {
    /// `enip.cpf.cai.connid` of connected messaging.
    pub connection_id: Option<u32>,
    /// `enip.cpf.cdi.seqcnt`: the class-3 sequence count.
    pub sequence_count: Option<u16>,
    pub message: &'a [u8],
}

impl<'a> CipPayload<'a> {
    pub fn parse(&self) -> Result<cip::Message<'a>, cip::Error> {
        cip::Message::new_checked(self.message)
    }
}

/// One CPF item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpfItem<'a> {
    pub type_id: u16,
    pub data: &'a [u8],
}

/// The CPF: an item count then items (type id, length, data). Iteration stops at the
/// count or at the first item that does not fit, which sets [`CpfItems::malformed`].
#[derive(Clone, Debug)]
pub struct CpfItems<'a> {
    rest: &'a [u8],
    count: u16,
    left: u16,
    malformed: bool,
}

impl<'a> CpfItems<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<CpfItems<'a>, Error> {
        let count = le16(buf, 0).ok_or(Error::Truncated {
            need: 2,
            have: buf.len(),
        })?;
        Ok(CpfItems {
            rest: buf.get(2..).unwrap_or(&[]),
            count,
            left: count,
            malformed: false,
        })
    }

    /// `enip.cpf.itemcount`.
    pub fn item_count(&self) -> u16 {
        self.count
    }

    pub fn malformed(&self) -> bool {
        self.malformed
    }
}

impl<'a> Iterator for CpfItems<'a> {
    type Item = CpfItem<'a>;

    fn next(&mut self) -> Option<CpfItem<'a>> {
        if self.left == 0 || self.malformed {
            return None;
        }
        let parsed = le16(self.rest, 0)
            .zip(le16(self.rest, 2))
            .and_then(|(type_id, len)| {
                let end = 4 + usize::from(len);
                Some((type_id, self.rest.get(4..end)?, end))
            });
        match parsed {
            Some((type_id, data, end)) => {
                self.rest = self.rest.get(end..).unwrap_or(&[]);
                self.left -= 1;
                Some(CpfItem { type_id, data })
            }
            None => {
                self.malformed = true;
                None
            }
        }
    }
}

/// Class-1 I/O on UDP 2222: the sequenced address item's connection id and
/// sequence number, and the connected data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPacket<'a> {
    /// `enip.cpf.sai.connid`.
    pub connection_id: u32,
    /// `enip.cpf.sai.seq`.
    pub sequence: u32,
    pub data: &'a [u8],
}

impl<'a> IoPacket<'a> {
    pub fn parse(payload: &'a [u8]) -> Option<IoPacket<'a>> {
        let mut items = CpfItems::new_checked(payload).ok()?;
        let address = items.next()?;
        let data = items.next()?;
        if address.type_id != item::SEQUENCED_ADDRESS || data.type_id != item::CONNECTED_DATA {
            return None;
        }
        Some(IoPacket {
            connection_id: le32(address.data, 0)?,
            sequence: le32(address.data, 4)?,
            data: data.data,
        })
    }
}

mod identity_field {
    use core::ops::Range;
    // Vol. 2 table 2-4.4: encapsulation version, socket address (big endian
    // sin_family, sin_port, sin_addr, zero), then the identity attributes
    // (little endian), product name (short string), state.
    pub const PROTOCOL_VERSION: usize = 0;
    pub const SIN_PORT: Range<usize> = 4..6;
    pub const SIN_ADDR: Range<usize> = 6..10;
    pub const VENDOR_ID: usize = 18;
    pub const DEVICE_TYPE: usize = 20;
    pub const PRODUCT_CODE: usize = 22;
    pub const REVISION_MAJOR: usize = 24;
    pub const REVISION_MINOR: usize = 25;
    pub const STATUS: usize = 26;
    pub const SERIAL: usize = 28;
    pub const NAME_LEN: usize = 32;
    pub const NAME: usize = 33;
}

/// A ListIdentity reply item (type 0x0C).
#[derive(Clone, Copy, Debug)]
pub struct IdentityItem<'a> {
    buf: &'a [u8],
}

impl<'a> IdentityItem<'a> {
    /// Everything up to and including the product name length byte.
    pub const FIXED_LEN: usize = identity_field::NAME;

    /// Validates the fixed part and that the product name fits.
    pub fn new_checked(buf: &'a [u8]) -> Result<IdentityItem<'a>, Error> {
        let have = buf.len();
        let fixed = Self::FIXED_LEN;
        if have < fixed {
            return Err(Error::Truncated { need: fixed, have });
        }
        let name_len = usize::from(buf.get(identity_field::NAME_LEN).copied().unwrap_or(0));
        if have < fixed + name_len {
            return Err(Error::Truncated {
                need: fixed + name_len,
                have,
            });
        }
        Ok(IdentityItem { buf })
    }

    /// `enip.lir.version`.
    pub fn protocol_version(&self) -> u16 {
        le16(self.buf, identity_field::PROTOCOL_VERSION).unwrap_or(0)
    }

    /// The advertised TCP port (`enip.lir.sa.sinport`).
    pub fn socket_port(&self) -> u16 {
        match self.buf.get(identity_field::SIN_PORT) {
            Some(&[a, b]) => u16::from_be_bytes([a, b]),
            _ => 0,
        }
    }

    /// The advertised IPv4 address (`enip.lir.sa.sinaddr`).
    pub fn socket_address(&self) -> [u8; 4] {
        match self.buf.get(identity_field::SIN_ADDR) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => [0; 4],
        }
    }

    /// `enip.lir.vendor`: ODVA vendor id (1 = Rockwell Automation/Allen-Bradley).
    pub fn vendor_id(&self) -> u16 {
        le16(self.buf, identity_field::VENDOR_ID).unwrap_or(0)
    }

    /// `enip.lir.devtype`.
    pub fn device_type(&self) -> u16 {
        le16(self.buf, identity_field::DEVICE_TYPE).unwrap_or(0)
    }

    /// `enip.lir.prodcode`.
    pub fn product_code(&self) -> u16 {
        le16(self.buf, identity_field::PRODUCT_CODE).unwrap_or(0)
    }

    /// `enip.lir.revision`: (major, minor).
    pub fn revision(&self) -> (u8, u8) {
        (
            self.buf
                .get(identity_field::REVISION_MAJOR)
                .copied()
                .unwrap_or(0),
            self.buf
                .get(identity_field::REVISION_MINOR)
                .copied()
                .unwrap_or(0),
        )
    }

    /// `enip.lir.status`: the Identity object status word.
    pub fn status(&self) -> u16 {
        le16(self.buf, identity_field::STATUS).unwrap_or(0)
    }

    /// `enip.lir.serial`.
    pub fn serial_number(&self) -> u32 {
        le32(self.buf, identity_field::SERIAL).unwrap_or(0)
    }

    /// `enip.lir.name`.
    pub fn product_name(&self) -> &'a [u8] {
        let len = usize::from(self.buf.get(identity_field::NAME_LEN).copied().unwrap_or(0));
        self.buf
            .get(identity_field::NAME..identity_field::NAME + len)
            .unwrap_or(&[])
    }

    /// `enip.lir.state`; absent in some short replies.
    pub fn state(&self) -> Option<u8> {
        let len = usize::from(self.buf.get(identity_field::NAME_LEN).copied().unwrap_or(0));
        self.buf.get(identity_field::NAME + len).copied()
    }
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_capture::hex;

    // enip-cip-example-io-listidentity.pcap frame 372: ListIdentity reply.
    const LIST_IDENTITY_REPLY: &str = "63003300000000000000000000000000c1debed10000000001000c002d0001000002af120a0101a4000000000000000001000c003a00040330008e4d52000b313735362d454e42542f4103";
    // Frame 10: SendUnitData, connected Get Attribute List to class 0x8B.
    const SEND_UNIT_DATA: &str = "7000200000010211000000000000000000000000000000000000000001000200a1000400010b7c00b1000c008b070302208b240101000800";
    // Frame 13: its reply.
    const SEND_UNIT_DATA_REPLY: &str = "7000220000010211000000000000000000000000000000000000000000000200a10004002800fe80b1000e008c07830000000100090000003c00";
    // enip-cl5000-reboot-restart.pcap frame 8: SendRRData with Unconnected Send.
    const SEND_RR_DATA: &str = "6f0024000001021100000000b39b02002008e10000000000000000002000020000000000b200140052022006240107f9060001022001240101000100";
    // enip-cip-example-io-listidentity.pcap frame 377: class-1 I/O on UDP 2222.
    const IO: &str = "02000280080003064b00db943f00b1000600a587e80f0300";

    #[test]
    fn list_identity_reply() {
        let bytes = hex(LIST_IDENTITY_REPLY);
        let pdu = Encapsulation::new_checked(&bytes).unwrap();
        assert_eq!(pdu.command(), Command::ListIdentity);
        assert_eq!(pdu.length(), 0x33);
        assert_eq!(pdu.status(), 0);
        assert_eq!(pdu.sender_context(), &hex("00000000c1debed1")[..]);
        let items: Vec<_> = pdu.list_identity().collect();
        assert_eq!(items.len(), 1);
        let id = items[0];
        assert_eq!(id.protocol_version(), 1);
        assert_eq!(id.socket_port(), 44818);
        assert_eq!(id.socket_address(), [10, 1, 1, 164]);
        assert_eq!(id.vendor_id(), 1);
        assert_eq!(id.device_type(), 0x0C);
        assert_eq!(id.product_code(), 58);
        assert_eq!(id.revision(), (4, 3));
        assert_eq!(id.status(), 0x0030);
        assert_eq!(id.serial_number(), 0x0052_4D8E);
        assert_eq!(id.product_name(), b"1756-ENBT/A");
        assert_eq!(id.state(), Some(3));
        assert!(looks_like(&bytes));
        assert_eq!(frame(&bytes), Framing::Frame(bytes.len()));
    }

    #[test]
    fn connected_messaging() {
        let bytes = hex(SEND_UNIT_DATA);
        let pdu = Encapsulation::new_checked(&bytes).unwrap();
        assert_eq!(pdu.command(), Command::SendUnitData);
        assert_eq!(pdu.session_handle(), 0x1102_0100);
        assert_eq!(pdu.interface_handle(), Some(0));
        let cip = pdu.cip().unwrap();
        assert_eq!(cip.connection_id, Some(0x007C_0B01));
        assert_eq!(cip.sequence_count, Some(0x078B));
        let cip::Message::Request(request) = cip.parse().unwrap() else {
            panic!("request expected");
        };
        assert_eq!(request.service(), cip::service::GET_ATTRIBUTE_LIST);
        assert_eq!(request.target().class, Some(0x8B));

        let bytes = hex(SEND_UNIT_DATA_REPLY);
        let pdu = Encapsulation::new_checked(&bytes).unwrap();
        let cip = pdu.cip().unwrap();
        assert_eq!(cip.connection_id, Some(0x80FE_0028));
        let cip::Message::Response(response) = cip.parse().unwrap() else {
            panic!("response expected");
        };
        assert_eq!(response.service(), cip::service::GET_ATTRIBUTE_LIST);
        assert_eq!(response.general_status(), 0);
    }

    #[test]
    fn unconnected_send_in_rr_data() {
        let bytes = hex(SEND_RR_DATA);
        let pdu = Encapsulation::new_checked(&bytes).unwrap();
        assert_eq!(pdu.command(), Command::SendRRData);
        assert_eq!(pdu.timeout(), Some(0x20));
        let types: Vec<u16> = pdu.cpf().unwrap().map(|i| i.type_id).collect();
        assert_eq!(types, [item::NULL_ADDRESS, item::UNCONNECTED_DATA]);
        let cip = pdu.cip().unwrap();
        assert_eq!(cip.connection_id, None);
        let cip::Message::Request(request) = cip.parse().unwrap() else {
            panic!("request expected");
        };
        let inner = request.unconnected_send().unwrap().request().unwrap();
        assert_eq!(inner.service(), cip::service::GET_ATTRIBUTES_ALL);
        assert_eq!(inner.kind(), cip::CipKind::Read);
    }

    #[test]
    fn io_packet() {
        let bytes = hex(IO);
        assert!(looks_like_io(&bytes));
        let io = IoPacket::parse(&bytes).unwrap();
        assert_eq!(io.connection_id, 0x004B_0603);
        assert_eq!(io.sequence, 0x003F_94DB);
        assert_eq!(io.data, &hex("a587e80f0300")[..]);
        assert!(!looks_like(&bytes));
    }

    #[test]
    fn framing_and_rejects() {
        let bytes = hex(SEND_RR_DATA);
        assert_eq!(frame(&bytes[..10]), Framing::Need(24));
        assert_eq!(frame(&bytes[..30]), Framing::Need(bytes.len()));
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(frame(&two), Framing::Frame(bytes.len()));
        assert_eq!(frame(&[0x6f, 0x01].repeat(12)), Framing::Resync(1));
        assert_eq!(
            Encapsulation::new_checked(&bytes[..30]).unwrap_err(),
            Error::Truncated {
                need: bytes.len(),
                have: 30
            }
        );
        assert_eq!(
            Encapsulation::new_checked(&bytes[..3]).unwrap_err(),
            Error::Truncated { need: 24, have: 3 }
        );
        // An item longer than the CPF ends the iteration and flags it.
        let mut cut = bytes.clone();
        cut[2] -= 4;
        let short = &cut[..cut.len() - 4];
        let pdu = Encapsulation::new_checked(short).unwrap();
        let mut items = pdu.cpf().unwrap();
        assert_eq!(items.by_ref().count(), 1);
        assert!(items.malformed());
        assert!(pdu.cip().is_none());
        // The identity item needs its fixed part and the name.
        assert!(IdentityItem::new_checked(&[0; 32]).is_err());
        assert!(!looks_like(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!looks_like(&[0; 48]));
        // Two messages in one segment, and one cut short by the segment.
        assert!(looks_like(&two));
        assert!(looks_like(&bytes[..30]));
        let mut trailing = bytes.clone();
        trailing.extend_from_slice(&[0xFF; 30]);
        assert!(!looks_like(&trailing));
    }
}
