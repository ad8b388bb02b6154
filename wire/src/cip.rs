//! CIP explicit messages (ODVA CIP Vol. 1, chapter 2 and appendices A and C): message
//! router requests and replies, EPATH segments, Multiple Service Packet and Unconnected
//! Send contents.
//!
//! [`Request::new_checked`](crate::cip::Request::new_checked) and [`Response::new_checked`](crate::cip::Response::new_checked) validate the path and the
//! additional-status lengths; after they succeed no accessor can panic. Variable parts
//! (path segments, MSP offsets, Unconnected Send fields) are walked with bounds checks:
//! a malformed part ends its iterator and raises an anomaly flag instead of failing.
//!
//! Field names follow Wireshark's `cip` dissector (`cip.sc`, `cip.rr`, `cip.genstat`,
//! `cip.addstat`, `cip.class`, `cip.instance`, `cip.attribute`, `cip.msp.*`, `cip.cm.*`).

use crate::bytes::{le16, le32};

/// Errors of the CIP views; one counter label each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    /// A request was expected and the reply bit is set, or the other way round.
    #[error("reply bit does not match the expected direction")]
    WrongDirection,
}

impl Error {
    /// The metrics label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::WrongDirection => "wrong_direction",
        }
    }
}

mod field {
    // Message router request (Vol. 1 2-4.1): service, path size in words, path, data.
    pub const SERVICE: usize = 0;
    pub const PATH_SIZE: usize = 1;
    pub const PATH: usize = 2;
    // Message router response (Vol. 1 2-4.2): service|0x80, reserved, general status,
    // additional status size in words, additional status, data.
    pub const GENERAL_STATUS: usize = 2;
    pub const ADDITIONAL_SIZE: usize = 3;
    pub const ADDITIONAL: usize = 4;
}

/// The smallest request: service and path size.
pub const REQUEST_HEADER_LEN: usize = field::PATH;
/// The smallest response: service, reserved, general status, additional size.
pub const RESPONSE_HEADER_LEN: usize = field::ADDITIONAL;
/// The reply bit of the service code (`cip.rr`).
pub const REPLY_BIT: u8 = 0x80;

/// Common service codes (Vol. 1 appendix A, table) and the class-specific ones
/// this crate classifies.
pub mod service {
    pub const GET_ATTRIBUTES_ALL: u8 = 0x01;
    pub const SET_ATTRIBUTES_ALL: u8 = 0x02;
    pub const GET_ATTRIBUTE_LIST: u8 = 0x03;
    pub const SET_ATTRIBUTE_LIST: u8 = 0x04;
    pub const RESET: u8 = 0x05;
    pub const START: u8 = 0x06;
    pub const STOP: u8 = 0x07;
    pub const CREATE: u8 = 0x08;
    pub const DELETE: u8 = 0x09;
    pub const MULTIPLE_SERVICE_PACKET: u8 = 0x0A;
    pub const APPLY_ATTRIBUTES: u8 = 0x0D;
    pub const GET_ATTRIBUTE_SINGLE: u8 = 0x0E;
    pub const SET_ATTRIBUTE_SINGLE: u8 = 0x10;
    pub const FIND_NEXT_OBJECT_INSTANCE: u8 = 0x11;
    pub const RESTORE: u8 = 0x15;
    pub const SAVE: u8 = 0x16;
    pub const GET_MEMBER: u8 = 0x18;
    pub const SET_MEMBER: u8 = 0x19;
    pub const INSERT_MEMBER: u8 = 0x1A;
    pub const REMOVE_MEMBER: u8 = 0x1B;
    /// Connection Manager (class 0x06), Vol. 1 3-5.5.
    pub const FORWARD_CLOSE: u8 = 0x4E;
    pub const UNCONNECTED_SEND: u8 = 0x52;
    pub const FORWARD_OPEN: u8 = 0x54;
    pub const LARGE_FORWARD_OPEN: u8 = 0x5B;
    /// Logix tag services (Rockwell 1756-PM020, "Logix 5000 Data Access").
    pub const READ_TAG: u8 = 0x4C;
    pub const WRITE_TAG: u8 = 0x4D;
    pub const READ_MODIFY_WRITE_TAG: u8 = 0x4E;
    pub const READ_TAG_FRAGMENTED: u8 = 0x52;
    pub const WRITE_TAG_FRAGMENTED: u8 = 0x53;
    pub const GET_INSTANCE_ATTRIBUTE_LIST: u8 = 0x55;
    /// File Object (class 0x37), Vol. 1 5-42; same codes in OpENer `cipfile.h`.
    pub const FILE_INITIATE_UPLOAD: u8 = 0x4B;
    pub const FILE_INITIATE_DOWNLOAD: u8 = 0x4C;
    pub const FILE_UPLOAD_TRANSFER: u8 = 0x4F;
    pub const FILE_DOWNLOAD_TRANSFER: u8 = 0x50;
}

/// Class codes this crate names (Vol. 1 table 5-1.1, Logix vendor classes).
pub mod class {
    pub const IDENTITY: u32 = 0x01;
    pub const MESSAGE_ROUTER: u32 = 0x02;
    pub const CONNECTION_MANAGER: u32 = 0x06;
    pub const FILE: u32 = 0x37;
    /// Logix Symbol Object and Template Object (1756-PM020).
    pub const SYMBOL: u32 = 0x6B;
    pub const TEMPLATE: u32 = 0x6C;
}

/// General status codes (Vol. 1 appendix B, `cip.genstat`).
pub mod status {
    pub const SUCCESS: u8 = 0x00;
    pub const PATH_DESTINATION_UNKNOWN: u8 = 0x05;
    pub const SERVICE_NOT_SUPPORTED: u8 = 0x08;
    pub const ATTRIBUTE_NOT_SUPPORTED: u8 = 0x14;
}

/// The name of a common service (Wireshark `cip.sc` value strings); class-specific
/// codes (0x4B and up) answer `None` because their meaning depends on the class.
pub fn common_service_name(code: u8) -> Option<&'static str> {
    Some(match code & !REPLY_BIT {
        0x01 => "Get Attributes All",
        0x02 => "Set Attributes All",
        0x03 => "Get Attribute List",
        0x04 => "Set Attribute List",
        0x05 => "Reset",
        0x06 => "Start",
        0x07 => "Stop",
        0x08 => "Create",
        0x09 => "Delete",
        0x0A => "Multiple Service Packet",
        0x0D => "Apply Attributes",
        0x0E => "Get Attribute Single",
        0x10 => "Set Attribute Single",
        0x11 => "Find Next Object Instance",
        0x14 => "Error Response",
        0x15 => "Restore",
        0x16 => "Save",
        0x17 => "No Operation",
        0x18 => "Get Member",
        0x19 => "Set Member",
        0x1A => "Insert Member",
        0x1B => "Remove Member",
        0x1C => "Group Sync",
        _ => return None,
    })
}

/// What a CIP request does, for detections. Keyed on (class, service) because
/// services 0x4B and up are class specific: 0x4C is Read Tag on a Logix symbol and
/// Initiate Download on the File Object, 0x52 is Read Tag Fragmented on a symbol and
/// Unconnected Send on the Connection Manager.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CipKind {
    Read,
    Write,
    /// Common service Reset (0x05): on the Identity object it restarts the device.
    Reset,
    /// Common service Start (0x06); Logix controllers take it on class 0x8E to go to
    /// run (enip-cip-start-plc.pcap, enip-cl5000-reboot-restart.pcap).
    Start,
    /// Common service Stop (0x07); on class 0x8E it stops a Logix controller.
    Stop,
    /// Writing a file (firmware, EDS) through the File Object.
    Program,
    Other,
}

/// Classifies a request service on a class (`None` for a symbolic path with no class
/// segment, as Logix tag access uses).
pub fn classify(class: Option<u32>, service_code: u8) -> CipKind {
    use service::*;
    match service_code & !REPLY_BIT {
        GET_ATTRIBUTES_ALL
        | GET_ATTRIBUTE_LIST
        | GET_ATTRIBUTE_SINGLE
        | FIND_NEXT_OBJECT_INSTANCE
        | GET_MEMBER => CipKind::Read,
        SET_ATTRIBUTES_ALL | SET_ATTRIBUTE_LIST | SET_ATTRIBUTE_SINGLE | CREATE | DELETE
        | APPLY_ATTRIBUTES | RESTORE | SET_MEMBER | INSERT_MEMBER | REMOVE_MEMBER => CipKind::Write,
        RESET => CipKind::Reset,
        START => CipKind::Start,
        STOP => CipKind::Stop,
        code if code >= 0x4B => classify_specific(class, code),
        _ => CipKind::Other,
    }
}

fn classify_specific(class: Option<u32>, code: u8) -> CipKind {
    use service::*;
    match class {
        None | Some(class::SYMBOL) | Some(class::TEMPLATE) => match code {
            READ_TAG | READ_TAG_FRAGMENTED | GET_INSTANCE_ATTRIBUTE_LIST => CipKind::Read,
            WRITE_TAG | WRITE_TAG_FRAGMENTED | READ_MODIFY_WRITE_TAG => CipKind::Write,
            _ => CipKind::Other,
        },
        Some(class::FILE) => match code {
            FILE_INITIATE_UPLOAD | FILE_UPLOAD_TRANSFER => CipKind::Read,
            FILE_INITIATE_DOWNLOAD | FILE_DOWNLOAD_TRANSFER => CipKind::Program,
            _ => CipKind::Other,
        },
        _ => CipKind::Other,
    }
}

/// A request or a reply, told apart by the reply bit.
#[derive(Clone, Copy, Debug)]
pub enum Message<'a> {
    Request(Request<'a>),
    Response(Response<'a>),
}

impl<'a> Message<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Message<'a>, Error> {
        match buf.first() {
            Some(code) if code & REPLY_BIT != 0 => {
                Response::new_checked(buf).map(Message::Response)
            }
            Some(_) => Request::new_checked(buf).map(Message::Request),
            None => Err(Error::Truncated { need: 1, have: 0 }),
        }
    }

    /// The service code without the reply bit.
    pub fn service(&self) -> u8 {
        match self {
            Message::Request(request) => request.service(),
            Message::Response(response) => response.service(),
        }
    }
}

/// A message router request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    buf: &'a [u8],
}

impl<'a> Request<'a> {
    /// Validates the reply bit is clear and the request path fits.
    pub fn new_checked(buf: &'a [u8]) -> Result<Request<'a>, Error> {
        let have = buf.len();
        if have < REQUEST_HEADER_LEN {
            return Err(Error::Truncated {
                need: REQUEST_HEADER_LEN,
                have,
            });
        }
        let request = Request { buf };
        if request.raw_service() & REPLY_BIT != 0 {
            return Err(Error::WrongDirection);
        }
        let need = REQUEST_HEADER_LEN + request.path_len();
        if have < need {
            return Err(Error::Truncated { need, have });
        }
        Ok(request)
    }

    fn raw_service(&self) -> u8 {
        self.buf.get(field::SERVICE).copied().unwrap_or(0)
    }

    /// `cip.sc`.
    pub fn service(&self) -> u8 {
        self.raw_service() & !REPLY_BIT
    }

    /// Request path size in 16-bit words.
    pub fn path_size(&self) -> u8 {
        self.buf.get(field::PATH_SIZE).copied().unwrap_or(0)
    }

    fn path_len(&self) -> usize {
        usize::from(self.path_size()) * 2
    }

    /// The request path (EPATH, Vol. 1 appendix C).
    pub fn path(&self) -> &'a [u8] {
        self.buf
            .get(field::PATH..field::PATH + self.path_len())
            .unwrap_or(&[])
    }

    pub fn segments(&self) -> Segments<'a> {
        Segments::new(self.path())
    }

    /// The class, instance, attribute... the path names.
    pub fn target(&self) -> Target {
        Target::from_path(self.path())
    }

    /// Request data after the path.
    pub fn data(&self) -> &'a [u8] {
        self.buf.get(field::PATH + self.path_len()..).unwrap_or(&[])
    }

    pub fn kind(&self) -> CipKind {
        classify(self.target().class, self.service())
    }

    /// The embedded requests of a Multiple Service Packet (0x0A).
    pub fn multiple_service_packet(&self) -> Option<ServiceList<'a>> {
        (self.service() == service::MULTIPLE_SERVICE_PACKET).then(|| ServiceList::new(self.data()))
    }

    /// The request an Unconnected Send (0x52 to the Connection Manager) carries.
    pub fn unconnected_send(&self) -> Option<UnconnectedSend<'a>> {
        if self.service() != service::UNCONNECTED_SEND
            || self.target().class != Some(class::CONNECTION_MANAGER)
        {
            return None;
        }
        UnconnectedSend::new(self.data())
    }
}

/// A message router response.
#[derive(Clone, Copy, Debug)]
pub struct Response<'a> {
    buf: &'a [u8],
}

impl<'a> Response<'a> {
    /// Validates the reply bit is set and the additional status fits.
    pub fn new_checked(buf: &'a [u8]) -> Result<Response<'a>, Error> {
        let have = buf.len();
        if have < RESPONSE_HEADER_LEN {
            return Err(Error::Truncated {
                need: RESPONSE_HEADER_LEN,
                have,
            });
        }
        let response = Response { buf };
        if buf.first().is_some_and(|code| code & REPLY_BIT == 0) {
            return Err(Error::WrongDirection);
        }
        let need = RESPONSE_HEADER_LEN + response.additional_len();
        if have < need {
            return Err(Error::Truncated { need, have });
        }
        Ok(response)
    }

    /// `cip.sc` without the reply bit.
    pub fn service(&self) -> u8 {
        self.buf.get(field::SERVICE).copied().unwrap_or(0) & !REPLY_BIT
    }

    /// `cip.genstat`.
    pub fn general_status(&self) -> u8 {
        self.buf.get(field::GENERAL_STATUS).copied().unwrap_or(0)
    }

    /// Additional status size in 16-bit words.
    pub fn additional_status_size(&self) -> u8 {
        self.buf.get(field::ADDITIONAL_SIZE).copied().unwrap_or(0)
    }

    fn additional_len(&self) -> usize {
        usize::from(self.additional_status_size()) * 2
    }

    /// `cip.addstat` words, little endian.
    pub fn additional_status(&self) -> impl Iterator<Item = u16> + 'a {
        let words = self
            .buf
            .get(field::ADDITIONAL..field::ADDITIONAL + self.additional_len())
            .unwrap_or(&[]);
        words.chunks_exact(2).map(|pair| {
            u16::from_le_bytes([
                pair.first().copied().unwrap_or(0),
                pair.get(1).copied().unwrap_or(0),
            ])
        })
    }

    /// Reply data after the additional status.
    pub fn data(&self) -> &'a [u8] {
        self.buf
            .get(field::ADDITIONAL + self.additional_len()..)
            .unwrap_or(&[])
    }

    /// The embedded replies of a Multiple Service Packet reply (0x8A).
    pub fn multiple_service_packet(&self) -> Option<ServiceList<'a>> {
        (self.service() == service::MULTIPLE_SERVICE_PACKET).then(|| ServiceList::new(self.data()))
    }
}

/// The services inside a Multiple Service Packet request or reply data (Vol. 1
/// a count, that many offsets from the start of the count field, then the
/// messages. Each item is the bytes from its offset to the next offset (or the end).
/// An offset outside the data or going backwards ends the iteration and sets
/// [`ServiceList::malformed`].
#[derive(Clone, Debug)]
pub struct ServiceList<'a> {
    data: &'a [u8],
    index: u16,
    malformed: bool,
}

impl<'a> ServiceList<'a> {
    fn new(data: &'a [u8]) -> ServiceList<'a> {
        let malformed = data.len() < 2;
        ServiceList {
            data,
            index: 0,
            malformed,
        }
    }

    /// `cip.msp.num_services`.
    pub fn service_count(&self) -> u16 {
        le16(self.data, 0).unwrap_or(0)
    }

    /// Whether an offset pointed outside the data (seen so far).
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    fn offset(&self, index: u16) -> Option<usize> {
        le16(self.data, 2 + 2 * usize::from(index)).map(usize::from)
    }
}

impl<'a> Iterator for ServiceList<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.malformed || self.index >= self.service_count() {
            return None;
        }
        let start = self.offset(self.index);
        let end = if self.index + 1 < self.service_count() {
            self.offset(self.index + 1)
        } else {
            Some(self.data.len())
        };
        let item = match (start, end) {
            (Some(start), Some(end)) if start <= end => self.data.get(start..end),
            _ => None,
        };
        match item {
            Some(item) => {
                self.index += 1;
                Some(item)
            }
            None => {
                self.malformed = true;
                None
            }
        }
    }
}

/// Unconnected Send request data (Vol. 1 3-5.5.2): priority/time tick, timeout
/// ticks, embedded message size, the message, a pad byte when odd, route path size
/// (words), reserved, route path.
#[derive(Clone, Copy, Debug)]
pub struct UnconnectedSend<'a> {
    /// `cip.cm.priority` / time tick byte.
    pub priority_time_tick: u8,
    pub timeout_ticks: u8,
    /// The embedded request (`cip.cm.msg_req_size` bytes).
    pub message: &'a [u8],
    /// The route path (port segments naming backplane slot or next hop).
    pub route_path: &'a [u8],
}

impl<'a> UnconnectedSend<'a> {
    fn new(data: &'a [u8]) -> Option<UnconnectedSend<'a>> {
        let priority_time_tick = *data.first()?;
        let timeout_ticks = *data.get(1)?;
        let size = usize::from(le16(data, 2)?);
        let message = data.get(4..4 + size)?;
        let after = 4 + size + (size & 1);
        let route_words = usize::from(data.get(after).copied().unwrap_or(0));
        let route_path = data
            .get(after + 2..after + 2 + route_words * 2)
            .unwrap_or(&[]);
        Some(UnconnectedSend {
            priority_time_tick,
            timeout_ticks,
            message,
            route_path,
        })
    }

    /// The embedded request, parsed.
    pub fn request(&self) -> Result<Request<'a>, Error> {
        Request::new_checked(self.message)
    }
}

/// Logical segment types (Vol. 1 C-1.4.2, bits 4..2 of the segment byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogicalType {
    ClassId,
    InstanceId,
    MemberId,
    ConnectionPoint,
    AttributeId,
    Special,
    ServiceId,
    Reserved,
}

impl LogicalType {
    fn from_bits(bits: u8) -> LogicalType {
        match bits & 0x07 {
            0 => LogicalType::ClassId,
            1 => LogicalType::InstanceId,
            2 => LogicalType::MemberId,
            3 => LogicalType::ConnectionPoint,
            4 => LogicalType::AttributeId,
            5 => LogicalType::Special,
            6 => LogicalType::ServiceId,
            _ => LogicalType::Reserved,
        }
    }
}

/// One EPATH segment (Vol. 1 appendix C).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment<'a> {
    /// Port segment: port number and link address (slot or IP address text).
    Port { port: u16, link_address: &'a [u8] },
    /// Logical segment with its 8, 16 or 32-bit value.
    Logical { kind: LogicalType, value: u32 },
    /// Electronic key (logical special, format 0): the key bytes.
    ElectronicKey(&'a [u8]),
    /// Network segment code and its data.
    Network { code: u8, data: &'a [u8] },
    /// Symbolic segment or ANSI extended symbol (0x91): the name.
    Symbolic(&'a [u8]),
    /// Simple data segment (0x80): the data words.
    Data(&'a [u8]),
    /// A segment this walker cannot size: the walk stops here.
    Unknown(u8),
}

/// Iterator over EPATH segments; yields `Segment::Unknown` once for a segment it
/// cannot size or that runs past the path, then stops.
#[derive(Clone, Debug)]
pub struct Segments<'a> {
    rest: &'a [u8],
}

impl<'a> Segments<'a> {
    pub fn new(path: &'a [u8]) -> Segments<'a> {
        Segments { rest: path }
    }

    /// Returns the segment at the front of `rest` and its size in bytes.
    fn parse(rest: &'a [u8]) -> Option<(Segment<'a>, usize)> {
        let &code = rest.first()?;
        match code >> 5 {
            // Port segment (C-1.3): bit 4 = extended link address, port 15 = 16-bit port.
            0 => {
                let extended_link = code & 0x10 != 0;
                let mut at = 1;
                let link_len = if extended_link {
                    at += 1;
                    usize::from(*rest.get(1)?)
                } else {
                    1
                };
                let mut port = u16::from(code & 0x0F);
                if port == 0x0F {
                    port = le16(rest, at)?;
                    at += 2;
                }
                let link_address = rest.get(at..at + link_len)?;
                let size = (at + link_len + 1) & !1;
                Some((Segment::Port { port, link_address }, size))
            }
            // Logical segment (C-1.4).
            1 => {
                let kind = LogicalType::from_bits(code >> 2);
                let format = code & 0x03;
                if kind == LogicalType::Special {
                    // Electronic key: key format 4, 8 bytes of key data (C-1.4.2).
                    let key = rest.get(2..10)?;
                    return (format == 0).then_some((Segment::ElectronicKey(key), 10));
                }
                let (value, size) = match format {
                    0 => (u32::from(*rest.get(1)?), 2),
                    1 => (u32::from(le16(rest, 2)?), 4),
                    2 => (le32(rest, 2)?, 6),
                    _ => return None,
                };
                Some((Segment::Logical { kind, value }, size))
            }
            // Network segment (C-1.5): 0x50..0x5F carry a word count, others one byte.
            2 => {
                if code & 0x10 != 0 {
                    let words = usize::from(*rest.get(1)?);
                    let data = rest.get(2..2 + words * 2)?;
                    Some((Segment::Network { code, data }, 2 + words * 2))
                } else {
                    let data = rest.get(1..2)?;
                    Some((Segment::Network { code, data }, 2))
                }
            }
            // Symbolic segment (C-1.6): low 5 bits = size; 0 = extended format.
            3 => {
                let len = usize::from(code & 0x1F);
                if len == 0 {
                    return None;
                }
                let name = rest.get(1..1 + len)?;
                Some((Segment::Symbolic(name), (1 + len + 1) & !1))
            }
            // Data segment (C-1.7): 0x80 simple data, 0x91 ANSI extended symbol.
            4 => match code {
                0x80 => {
                    let words = usize::from(*rest.get(1)?);
                    let data = rest.get(2..2 + words * 2)?;
                    Some((Segment::Data(data), 2 + words * 2))
                }
                0x91 => {
                    let len = usize::from(*rest.get(1)?);
                    let name = rest.get(2..2 + len)?;
                    Some((Segment::Symbolic(name), (2 + len + 1) & !1))
                }
                _ => None,
            },
            _ => None,
        }
    }
}

impl<'a> Iterator for Segments<'a> {
    type Item = Segment<'a>;

    fn next(&mut self) -> Option<Segment<'a>> {
        let &code = self.rest.first()?;
        match Self::parse(self.rest) {
            Some((segment, size)) => {
                self.rest = self.rest.get(size..).unwrap_or(&[]);
                Some(segment)
            }
            None => {
                self.rest = &[];
                Some(Segment::Unknown(code))
            }
        }
    }
}

/// What a request path addresses: the first class, instance, attribute, member and
/// connection point segments (Wireshark's *Request Path* subtree).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub class: Option<u32>,
    pub instance: Option<u32>,
    pub attribute: Option<u32>,
    pub member: Option<u32>,
    pub connection_point: Option<u32>,
    /// Number of symbolic segments (Logix tag names).
    pub symbols: u8,
    /// The path holds a segment the walker could not size (anomaly).
    pub malformed: bool,
}

impl Target {
    pub fn from_path(path: &[u8]) -> Target {
        let mut target = Target::default();
        for segment in Segments::new(path) {
            match segment {
                Segment::Logical { kind, value } => {
                    let slot = match kind {
                        LogicalType::ClassId => &mut target.class,
                        LogicalType::InstanceId => &mut target.instance,
                        LogicalType::AttributeId => &mut target.attribute,
                        LogicalType::MemberId => &mut target.member,
                        LogicalType::ConnectionPoint => &mut target.connection_point,
                        _ => continue,
                    };
                    slot.get_or_insert(value);
                }
                Segment::Symbolic(_) => target.symbols = target.symbols.saturating_add(1),
                Segment::Unknown(_) => target.malformed = true,
                _ => {}
            }
        }
        target
    }
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::test_capture::hex;

    // enip-cip-example-io-listidentity.pcap frame 2, CIP part: MSP of 11 Get
    // Attribute List requests to the Message Router.
    const MSP_REQUEST: &str = "0a02200224010b00180022002c0036004c005800640072007c008a0094000302200124010100050003022069240001000b0003022073240101000200030220ac240107000100020003000500070009000a000303206825002024010013000302207024010200120013000302208e240103000300080010000302206924000100090003022068240003000f0018001900030220772401010002000302208b240101000600";
    // enip-cl5000-reboot-restart.pcap frame 8, CIP part: Unconnected Send carrying
    // Get Attributes All to Identity instance 1, route to backplane slot 0.
    const UNCONNECTED_SEND: &str = "52022006240107f9060001022001240101000100";
    // Frame 280: Get Attribute List reply, status 0x05 with one additional word.
    const ERROR_REPLY: &str = "830005010000";
    // Frame 399: Stop (0x07) on class 0x8E instance 1.
    const STOP: &str = "0702208e2401";
    // Frame 454: Reset (0x05) on class 0x72 instance 1.
    const RESET: &str = "050220722401";

    #[test]
    fn msp_request_iterates_services() {
        let msp = hex(MSP_REQUEST);
        let request = Request::new_checked(&msp).unwrap();
        assert_eq!(request.service(), service::MULTIPLE_SERVICE_PACKET);
        assert_eq!(request.path_size(), 2);
        assert_eq!(
            request.target(),
            Target {
                class: Some(2),
                instance: Some(1),
                ..Target::default()
            }
        );
        let list = request.multiple_service_packet().unwrap();
        assert_eq!(list.service_count(), 11);
        let services: Vec<Request<'_>> = list
            .clone()
            .map(|item| Request::new_checked(item).unwrap())
            .collect();
        assert_eq!(services.len(), 11);
        assert!(services
            .iter()
            .all(|s| s.service() == service::GET_ATTRIBUTE_LIST));
        assert_eq!(services[0].target().class, Some(1));
        assert_eq!(services[1].target().class, Some(0x69));
        // Item 5 uses a 16-bit instance (0x25 segment).
        assert_eq!(services[4].target().class, Some(0x68));
        assert_eq!(services[4].target().instance, Some(0x2420));
        assert_eq!(services[0].kind(), CipKind::Read);
        let mut list = list;
        while list.next().is_some() {}
        assert!(!list.malformed());
    }

    #[test]
    fn msp_bad_offset_is_flagged() {
        let mut msp = hex(MSP_REQUEST);
        // Point the third offset past the end.
        msp[12] = 0xFF;
        let request = Request::new_checked(&msp).unwrap();
        let mut list = request.multiple_service_packet().unwrap();
        assert_eq!(list.by_ref().count(), 1);
        assert!(list.malformed());
    }

    #[test]
    fn unconnected_send_unwraps() {
        let bytes = hex(UNCONNECTED_SEND);
        let request = Request::new_checked(&bytes).unwrap();
        assert_eq!(request.target().class, Some(6));
        assert_eq!(request.kind(), CipKind::Other);
        let send = request.unconnected_send().unwrap();
        assert_eq!(send.priority_time_tick, 0x07);
        assert_eq!(send.timeout_ticks, 0xF9);
        let inner = send.request().unwrap();
        assert_eq!(inner.service(), service::GET_ATTRIBUTES_ALL);
        assert_eq!(inner.target().class, Some(class::IDENTITY));
        assert_eq!(inner.target().instance, Some(1));
        let route: Vec<_> = Segments::new(send.route_path).collect();
        assert_eq!(
            route,
            [Segment::Port {
                port: 1,
                link_address: &[0]
            }]
        );
    }

    #[test]
    fn error_reply() {
        let bytes = hex(ERROR_REPLY);
        let response = Response::new_checked(&bytes).unwrap();
        assert_eq!(response.service(), service::GET_ATTRIBUTE_LIST);
        assert_eq!(response.general_status(), status::PATH_DESTINATION_UNKNOWN);
        assert_eq!(response.additional_status().collect::<Vec<_>>(), [0]);
        assert!(response.data().is_empty());
        assert!(matches!(
            Message::new_checked(&bytes),
            Ok(Message::Response(_))
        ));
        assert_eq!(
            Response::new_checked(&bytes[..5]).unwrap_err(),
            Error::Truncated { need: 6, have: 5 }
        );
        assert_eq!(
            Request::new_checked(&bytes).unwrap_err(),
            Error::WrongDirection
        );
    }

    #[test]
    fn stop_reset_start_classes() {
        let stop = hex(STOP);
        let request = Request::new_checked(&stop).unwrap();
        assert_eq!(request.target().class, Some(0x8E));
        assert_eq!(request.kind(), CipKind::Stop);
        let reset = hex(RESET);
        assert_eq!(Request::new_checked(&reset).unwrap().kind(), CipKind::Reset);
        assert_eq!(classify(Some(0x8E), 0x06), CipKind::Start);
    }

    #[test]
    fn class_specific_services() {
        assert_eq!(classify(None, 0x4C), CipKind::Read);
        assert_eq!(classify(Some(class::SYMBOL), 0x4D), CipKind::Write);
        assert_eq!(classify(Some(class::FILE), 0x4C), CipKind::Program);
        assert_eq!(classify(Some(class::FILE), 0x4B), CipKind::Read);
        assert_eq!(
            classify(Some(class::CONNECTION_MANAGER), 0x52),
            CipKind::Other
        );
        assert_eq!(classify(None, 0x52), CipKind::Read);
        assert_eq!(classify(Some(0x8E), 0x4C), CipKind::Other);
        assert_eq!(classify(Some(1), 0x10), CipKind::Write);
    }

    #[test]
    fn path_forms() {
        // 32-bit class, 16-bit instance, 8-bit attribute, ANSI symbol "ab" (pad-free),
        // simple data word.
        let path = [
            0x22, 0, 0x78, 0x56, 0x34, 0x12, 0x25, 0, 0x02, 0x01, 0x30, 0x07, 0x91, 2, b'a', b'b',
            0x80, 1, 0xAA, 0xBB,
        ];
        let target = Target::from_path(&path);
        assert_eq!(target.class, Some(0x1234_5678));
        assert_eq!(target.instance, Some(0x0102));
        assert_eq!(target.attribute, Some(7));
        assert_eq!(target.symbols, 1);
        assert!(!target.malformed);
        // Odd-length symbol is padded; then an unsizeable segment flags malformed.
        let path = [0x91, 3, b'a', b'b', b'c', 0, 0xE0, 0];
        let segments: Vec<_> = Segments::new(&path).collect();
        assert_eq!(
            segments,
            [Segment::Symbolic(b"abc"), Segment::Unknown(0xE0)]
        );
        assert!(Target::from_path(&path).malformed);
        // A truncated 16-bit segment.
        assert_eq!(
            Segments::new(&[0x21, 0, 1]).collect::<Vec<_>>(),
            [Segment::Unknown(0x21)]
        );
    }

    #[test]
    fn request_rejects() {
        assert_eq!(
            Request::new_checked(&[0x0E]).unwrap_err(),
            Error::Truncated { need: 2, have: 1 }
        );
        assert_eq!(
            Request::new_checked(&[0x0E, 3, 0x20, 1]).unwrap_err(),
            Error::Truncated { need: 8, have: 4 }
        );
        assert!(Message::new_checked(&[]).is_err());
    }
}
