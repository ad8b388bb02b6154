//! OPC UA binary (UA TCP / UA Secure Conversation): the message header, the secure
//! channel headers, the service type id and the request/response headers, as
//! zero-copy views.
//!
//! Follows OPC 10000-6 (cited "Part 6 §n": 7.1.2 message header and HEL/ACK/ERR
//! bodies, 6.7.2 security headers, 5.2 binary encoding) and OPC 10000-4 (Part 4: the
//! request and response headers, services). Field names follow the spec; Wireshark's
//! `opcua.*` fields are named where they match.
//!
//! [`Message::new_checked`] validates the eight-octet header and that the buffer is
//! exactly the message its size field announces; after it succeeds **no accessor can
//! panic**. Everything past the header is variable-length binary encoding and is read
//! through a bounds-checked [`Reader`]: a field that runs past the message comes back
//! as `None`, never as a panic. A body that is encrypted (a channel opened with
//! SignAndEncrypt, or an asymmetric security policy other than None on OPN) cannot be
//! read, and the accessors then report what they cannot see as `None`.

use crate::{Direction, Framing};

/// Byte offsets of the message header (Part 6 §7.1.2.2).
mod field {
    use core::ops::Range;

    /// `opcua.transport.type`: "HEL", "ACK", "ERR", "RHE", "OPN", "MSG", "CLO".
    pub const MESSAGE_TYPE: Range<usize> = 0..3;
    /// `opcua.transport.chunk`: 'F' final, 'C' intermediate, 'A' abort.
    pub const CHUNK_TYPE: usize = 3;
    /// `opcua.transport.size`: the whole message, header included, little-endian.
    pub const SIZE: Range<usize> = 4..8;
    /// The message body (HEL/ACK/ERR) or the secure channel id (OPN/MSG/CLO).
    pub const BODY: usize = 8;
}

/// Length of the message header.
pub const HEADER_LEN: usize = field::BODY;
/// The largest message size accepted when framing. Part 6 lets the peers negotiate it;
/// open62541 and the .NET stack default to a few MiB at most.
pub const MAX_MESSAGE_SIZE: u32 = 16 << 20;
/// The default TCP port (Part 6 §7.2: IANA port 4840).
pub const PORT: u16 = 4840;
/// Nesting limit for DiagnosticInfo (the spec has no limit; stacks use ~100).
const MAX_DIAGNOSTIC_DEPTH: usize = 8;

/// Why a buffer is not an OPC UA message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated message: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("message type {0:02x?} is not one of HEL ACK ERR RHE OPN MSG CLO")]
    BadMessageType([u8; 3]),
    #[error("message size {0} below the header or above the limit")]
    BadSize(u32),
    #[error("{0} bytes after the message its size announces")]
    TrailingBytes(usize),
}

impl Error {
    /// The counter label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadMessageType(_) => "bad_message_type",
            Error::BadSize(_) => "bad_size",
            Error::TrailingBytes(_) => "trailing_bytes",
        }
    }
}

/// The message types (Part 6 §7.1.2.2, table 50).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageType {
    Hello,
    Acknowledge,
    Error,
    ReverseHello,
    OpenSecureChannel,
    Message,
    CloseSecureChannel,
}

impl MessageType {
    pub const ALL: [MessageType; 7] = [
        MessageType::Hello,
        MessageType::Acknowledge,
        MessageType::Error,
        MessageType::ReverseHello,
        MessageType::OpenSecureChannel,
        MessageType::Message,
        MessageType::CloseSecureChannel,
    ];

    pub fn from_bytes(bytes: [u8; 3]) -> Option<MessageType> {
        Some(match &bytes {
            b"HEL" => MessageType::Hello,
            b"ACK" => MessageType::Acknowledge,
            b"ERR" => MessageType::Error,
            b"RHE" => MessageType::ReverseHello,
            b"OPN" => MessageType::OpenSecureChannel,
            b"MSG" => MessageType::Message,
            b"CLO" => MessageType::CloseSecureChannel,
            _ => return None,
        })
    }

    /// The three letters on the wire (and in tshark's `msg_type`).
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Hello => "HEL",
            MessageType::Acknowledge => "ACK",
            MessageType::Error => "ERR",
            MessageType::ReverseHello => "RHE",
            MessageType::OpenSecureChannel => "OPN",
            MessageType::Message => "MSG",
            MessageType::CloseSecureChannel => "CLO",
        }
    }

    /// Whether the message travels on a secure channel (has a channel id and
    /// security/sequence headers).
    pub fn is_secure(self) -> bool {
        matches!(
            self,
            MessageType::OpenSecureChannel | MessageType::Message | MessageType::CloseSecureChannel
        )
    }
}

/// The chunk type octet (Part 6 §7.1.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkType {
    Final,
    Intermediate,
    Abort,
    Unknown(u8),
}

impl From<u8> for ChunkType {
    fn from(value: u8) -> ChunkType {
        match value {
            b'F' => ChunkType::Final,
            b'C' => ChunkType::Intermediate,
            b'A' => ChunkType::Abort,
            other => ChunkType::Unknown(other),
        }
    }
}

/// Message security modes (Part 4 §7.20 MessageSecurityMode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SecurityMode {
    Invalid,
    None,
    Sign,
    SignAndEncrypt,
    Unknown(u32),
}

impl From<u32> for SecurityMode {
    fn from(value: u32) -> SecurityMode {
        match value {
            0 => SecurityMode::Invalid,
            1 => SecurityMode::None,
            2 => SecurityMode::Sign,
            3 => SecurityMode::SignAndEncrypt,
            other => SecurityMode::Unknown(other),
        }
    }
}

impl SecurityMode {
    pub fn name(self) -> &'static str {
        match self {
            SecurityMode::Invalid => "invalid",
            SecurityMode::None => "none",
            SecurityMode::Sign => "sign",
            SecurityMode::SignAndEncrypt => "sign_and_encrypt",
            SecurityMode::Unknown(_) => "unknown",
        }
    }
}

/// What a service does, for detections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// Discovery: FindServers, GetEndpoints, RegisterServer.
    Discovery,
    /// Secure channel and session management.
    Session,
    /// Browse, query, translate, register nodes.
    Browse,
    Read,
    Write,
    /// Method calls: run code on the server.
    Call,
    /// AddNodes, AddReferences, DeleteNodes, DeleteReferences: change the address space.
    NodeManagement,
    /// Subscriptions and monitored items.
    Subscription,
    /// HistoryUpdate.
    HistoryUpdate,
    /// A response carrying only a ResponseHeader: the request failed.
    Fault,
}

/// A service by its binary encoding id (`opcua.servicenodeid.numeric`, namespace 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    /// The request's DefaultBinary encoding id (the response's for a ServiceFault).
    pub request_id: u32,
    pub name: &'static str,
    pub kind: ServiceKind,
}

/// Services by the DefaultBinary encoding id of their request; the response's id is
/// the request's + 3 except where listed (Part 6 annex, NodeIds.csv).
const SERVICES: &[(u32, u32, &str, ServiceKind)] = &[
    (422, 425, "FindServers", ServiceKind::Discovery),
    (12208, 12209, "FindServersOnNetwork", ServiceKind::Discovery),
    (428, 431, "GetEndpoints", ServiceKind::Discovery),
    (437, 440, "RegisterServer", ServiceKind::Discovery),
    (12211, 12212, "RegisterServer2", ServiceKind::Discovery),
    (446, 449, "OpenSecureChannel", ServiceKind::Session),
    (452, 455, "CloseSecureChannel", ServiceKind::Session),
    (461, 464, "CreateSession", ServiceKind::Session),
    (467, 470, "ActivateSession", ServiceKind::Session),
    (473, 476, "CloseSession", ServiceKind::Session),
    (479, 482, "Cancel", ServiceKind::Session),
    (488, 491, "AddNodes", ServiceKind::NodeManagement),
    (494, 497, "AddReferences", ServiceKind::NodeManagement),
    (500, 503, "DeleteNodes", ServiceKind::NodeManagement),
    (506, 509, "DeleteReferences", ServiceKind::NodeManagement),
    (527, 530, "Browse", ServiceKind::Browse),
    (533, 536, "BrowseNext", ServiceKind::Browse),
    (
        554,
        557,
        "TranslateBrowsePathsToNodeIds",
        ServiceKind::Browse,
    ),
    (560, 563, "RegisterNodes", ServiceKind::Browse),
    (566, 569, "UnregisterNodes", ServiceKind::Browse),
    (615, 618, "QueryFirst", ServiceKind::Browse),
    (621, 624, "QueryNext", ServiceKind::Browse),
    (631, 634, "Read", ServiceKind::Read),
    (664, 667, "HistoryRead", ServiceKind::Read),
    (673, 676, "Write", ServiceKind::Write),
    (700, 703, "HistoryUpdate", ServiceKind::HistoryUpdate),
    (712, 715, "Call", ServiceKind::Call),
    (751, 754, "CreateMonitoredItems", ServiceKind::Subscription),
    (763, 766, "ModifyMonitoredItems", ServiceKind::Subscription),
    (769, 772, "SetMonitoringMode", ServiceKind::Subscription),
    (775, 778, "SetTriggering", ServiceKind::Subscription),
    (781, 784, "DeleteMonitoredItems", ServiceKind::Subscription),
    (787, 790, "CreateSubscription", ServiceKind::Subscription),
    (793, 796, "ModifySubscription", ServiceKind::Subscription),
    (799, 802, "SetPublishingMode", ServiceKind::Subscription),
    (826, 829, "Publish", ServiceKind::Subscription),
    (832, 835, "Republish", ServiceKind::Subscription),
    (841, 844, "TransferSubscriptions", ServiceKind::Subscription),
    (847, 850, "DeleteSubscriptions", ServiceKind::Subscription),
];

/// ServiceFault_Encoding_DefaultBinary (Part 4 §7.33).
pub const SERVICE_FAULT: u32 = 397;

/// The service and whether the id is its response, for a numeric type id in
/// namespace 0; `None` for ids that are not services.
pub fn service(type_id: u32) -> Option<(Service, Direction)> {
    if type_id == SERVICE_FAULT {
        let fault = Service {
            request_id: SERVICE_FAULT,
            name: "ServiceFault",
            kind: ServiceKind::Fault,
        };
        return Some((fault, Direction::Response));
    }
    SERVICES
        .iter()
        .find_map(|&(request, response, name, kind)| {
            let service = Service {
                request_id: request,
                name,
                kind,
            };
            if type_id == request {
                Some((service, Direction::Request))
            } else if type_id == response {
                Some((service, Direction::Response))
            } else {
                None
            }
        })
}

/// A bounds-checked little-endian reader over binary-encoded fields (Part 6 §5.2).
#[derive(Clone, Copy, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.u32().map(|v| v as i32)
    }

    /// A String or ByteString: Int32 length, -1 (or any negative) for null (Part 6
    /// §5.2.2.4). Null reads as an empty slice.
    pub fn string(&mut self) -> Option<&'a [u8]> {
        let len = self.i32()?;
        if len < 0 {
            return Some(&[]);
        }
        self.bytes(usize::try_from(len).ok()?)
    }

    /// An array's Int32 length (negative = null = 0 elements).
    pub fn array_len(&mut self) -> Option<usize> {
        let len = self.i32()?;
        Some(usize::try_from(len).unwrap_or(0))
    }

    /// A NodeId or ExpandedNodeId (Part 6 §5.2.2.9-10): the numeric identifier and
    /// namespace when numeric, `None` inside for string/guid/opaque ids.
    pub fn node_id(&mut self) -> Option<NodeId> {
        let encoding = self.u8()?;
        let (namespace, numeric) = match encoding & 0x0F {
            0x00 => (0, Some(u32::from(self.u8()?))),
            0x01 => (u16::from(self.u8()?), Some(u32::from(self.u16()?))),
            0x02 => (self.u16()?, Some(self.u32()?)),
            0x03 | 0x05 => {
                let ns = self.u16()?;
                self.string()?;
                (ns, None)
            }
            0x04 => {
                let ns = self.u16()?;
                self.bytes(16)?;
                (ns, None)
            }
            _ => return None,
        };
        if encoding & 0x80 != 0 {
            self.string()?; // NamespaceUri
        }
        if encoding & 0x40 != 0 {
            self.u32()?; // ServerIndex
        }
        Some(NodeId { namespace, numeric })
    }

    /// A LocalizedText (Part 6 §5.2.2.14): its text, empty when absent.
    pub fn localized_text(&mut self) -> Option<&'a [u8]> {
        let mask = self.u8()?;
        if mask & 0x01 != 0 {
            self.string()?;
        }
        if mask & 0x02 != 0 {
            return self.string();
        }
        Some(&[])
    }

    /// Skips an ExtensionObject (Part 6 §5.2.2.15).
    pub fn skip_extension_object(&mut self) -> Option<()> {
        self.node_id()?;
        match self.u8()? {
            0x00 => {}
            0x01 | 0x02 => {
                self.string()?;
            }
            _ => return None,
        }
        Some(())
    }

    /// One value of built-in type `built_in_type` (Part 6 §5.1.2, §5.2.2); `None` for
    /// DataValue and Variant (nesting is not followed) and unknown types.
    fn skip_built_in(&mut self, built_in_type: u8) -> Option<()> {
        let fixed = match built_in_type {
            1..=3 => 1,           // Boolean, SByte, Byte
            4 | 5 => 2,           // Int16, UInt16
            6 | 7 | 10 | 19 => 4, // Int32, UInt32, Float, StatusCode
            8 | 9 | 11 | 13 => 8, // Int64, UInt64, Double, DateTime
            14 => 16,             // Guid
            12 | 15 | 16 => return self.string().map(|_| ()),
            17 | 18 => return self.node_id().map(|_| ()),
            20 => {
                self.u16()?;
                return self.string().map(|_| ());
            }
            21 => return self.localized_text().map(|_| ()),
            22 => return self.skip_extension_object(),
            25 => return self.skip_diagnostic_info(),
            _ => return None,
        };
        self.bytes(fixed).map(|_| ())
    }

    /// A Variant (Part 6 §5.2.2.16): scalar or array of a built-in type other than
    /// DataValue and Variant; array dimensions are skipped.
    pub fn variant(&mut self) -> Option<Variant<'a>> {
        let mask = self.u8()?;
        let start = self.pos;
        let built_in_type = mask & 0x3F;
        let is_array = mask & 0x80 != 0;
        if built_in_type != 0 {
            if is_array {
                // Each element takes at least one octet: a bogus length stops at the
                // end of the buffer.
                for _ in 0..self.array_len()? {
                    self.skip_built_in(built_in_type)?;
                }
            } else {
                self.skip_built_in(built_in_type)?;
            }
        }
        if mask & 0x40 != 0 {
            for _ in 0..self.array_len()? {
                self.u32()?; // ArrayDimensions
            }
        }
        Some(Variant {
            built_in_type,
            is_array,
            body: self.buf.get(start..self.pos)?,
        })
    }

    /// A DataValue (Part 6 §5.2.2.17): value, status, source timestamp and
    /// picoseconds, server timestamp and picoseconds, each when its mask bit is set.
    pub fn data_value(&mut self) -> Option<DataValue<'a>> {
        let mask = self.u8()?;
        let value = if mask & 0x01 != 0 {
            Some(self.variant()?)
        } else {
            None
        };
        let status = if mask & 0x02 != 0 {
            Some(self.u32()?)
        } else {
            None
        };
        if mask & 0x04 != 0 {
            self.bytes(8)?; // SourceTimestamp
        }
        if mask & 0x10 != 0 {
            self.u16()?; // SourcePicoseconds
        }
        if mask & 0x08 != 0 {
            self.bytes(8)?; // ServerTimestamp
        }
        if mask & 0x20 != 0 {
            self.u16()?; // ServerPicoseconds
        }
        Some(DataValue { value, status })
    }

    /// Skips a DiagnosticInfo (Part 6 §5.2.2.12), nesting at most a few levels.
    pub fn skip_diagnostic_info(&mut self) -> Option<()> {
        for _ in 0..MAX_DIAGNOSTIC_DEPTH {
            let mask = self.u8()?;
            for bit in [0x01, 0x02, 0x04, 0x08] {
                if mask & bit != 0 {
                    self.u32()?;
                }
            }
            if mask & 0x10 != 0 {
                self.string()?;
            }
            if mask & 0x20 != 0 {
                self.u32()?;
            }
            if mask & 0x40 == 0 {
                return Some(());
            }
        }
        None
    }
}

/// A node id as far as the sensor needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId {
    pub namespace: u16,
    /// The identifier when the node id is numeric.
    pub numeric: Option<u32>,
}

/// One UA TCP message (one chunk of a secure conversation message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    buf: &'a [u8],
    message_type: MessageType,
}

fn le32(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

impl<'a> Message<'a> {
    /// Checks the message type, the size field, and that `buf` is exactly the message.
    pub fn new_checked(buf: &'a [u8]) -> Result<Message<'a>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated {
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let raw = [
            buf[field::MESSAGE_TYPE.start],
            buf[field::MESSAGE_TYPE.start + 1],
            buf[field::MESSAGE_TYPE.start + 2],
        ];
        let message_type = MessageType::from_bytes(raw).ok_or(Error::BadMessageType(raw))?;
        let size = le32(buf, field::SIZE.start).unwrap_or(0);
        if (size as usize) < HEADER_LEN || size > MAX_MESSAGE_SIZE {
            return Err(Error::BadSize(size));
        }
        let size = size as usize;
        match buf.len().cmp(&size) {
            std::cmp::Ordering::Less => Err(Error::Truncated {
                need: size,
                have: buf.len(),
            }),
            std::cmp::Ordering::Greater => Err(Error::TrailingBytes(buf.len() - size)),
            std::cmp::Ordering::Equal => Ok(Message { buf, message_type }),
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// `opcua.transport.type`
    pub fn message_type(&self) -> MessageType {
        self.message_type
    }

    /// `opcua.transport.chunk`
    pub fn chunk_type(&self) -> ChunkType {
        ChunkType::from(self.buf[field::CHUNK_TYPE])
    }

    /// `opcua.transport.size`
    pub fn size(&self) -> u32 {
        self.buf.len() as u32
    }

    /// The bytes after the message header.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[field::BODY..]
    }

    /// The Hello message's fields (HEL only).
    pub fn hello(&self) -> Option<Hello<'a>> {
        if self.message_type != MessageType::Hello {
            return None;
        }
        let mut r = Reader::new(self.body());
        Some(Hello {
            protocol_version: r.u32()?,
            receive_buffer_size: r.u32()?,
            send_buffer_size: r.u32()?,
            max_message_size: r.u32()?,
            max_chunk_count: r.u32()?,
            endpoint_url: r.string()?,
        })
    }

    /// The Error message's fields (ERR only): `opcua.transport.error`, `.reason`.
    pub fn error(&self) -> Option<(u32, &'a [u8])> {
        if self.message_type != MessageType::Error {
            return None;
        }
        let mut r = Reader::new(self.body());
        Some((r.u32()?, r.string().unwrap_or(&[])))
    }

    /// The secure conversation headers of OPN/MSG/CLO, and the body after them.
    pub fn secure(&self) -> Option<Secure<'a>> {
        if !self.message_type.is_secure() {
            return None;
        }
        let mut r = Reader::new(self.body());
        let secure_channel_id = r.u32()?;
        let (security_policy_uri, token_id) = if self.message_type == MessageType::OpenSecureChannel
        {
            // Asymmetric algorithm security header (Part 6 §6.7.2.3).
            let uri = r.string()?;
            r.string()?; // SenderCertificate
            r.string()?; // ReceiverCertificateThumbprint
            (Some(uri), None)
        } else {
            // Symmetric algorithm security header: the token id.
            (None, Some(r.u32()?))
        };
        Some(Secure {
            secure_channel_id,
            security_policy_uri,
            token_id,
            sequence_number: r.u32()?,
            request_id: r.u32()?,
            body: r.rest(),
        })
    }
}

/// Hello (Part 6 §7.1.2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    pub protocol_version: u32,
    pub receive_buffer_size: u32,
    pub send_buffer_size: u32,
    pub max_message_size: u32,
    pub max_chunk_count: u32,
    pub endpoint_url: &'a [u8],
}

/// The security policy URI whose asymmetric header leaves OPN bodies in clear.
pub const POLICY_NONE: &[u8] = b"http://opcfoundation.org/UA/SecurityPolicy#None";

/// The headers of a secure conversation chunk and its (possibly encrypted) body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secure<'a> {
    /// `opcua.transport.scid`
    pub secure_channel_id: u32,
    /// OPN only: the asymmetric security policy.
    pub security_policy_uri: Option<&'a [u8]>,
    /// MSG and CLO: `opcua.security.tokenid`.
    pub token_id: Option<u32>,
    /// `opcua.security.seq`
    pub sequence_number: u32,
    /// `opcua.security.rqid`
    pub request_id: u32,
    pub body: &'a [u8],
}

impl<'a> Secure<'a> {
    /// Whether this OPN's body is in clear (policy None).
    pub fn policy_is_none(&self) -> bool {
        self.security_policy_uri == Some(POLICY_NONE)
    }

    /// The service body (`opcua.servicenodeid.*` and what follows), when readable:
    /// the type id must be a numeric node id.
    pub fn service(&self) -> Option<ServiceBody<'a>> {
        let mut r = Reader::new(self.body);
        let node = r.node_id()?;
        Some(ServiceBody {
            type_id: node,
            rest: r.rest(),
        })
    }
}

/// A service request or response: its type id and the encoded structure after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceBody<'a> {
    pub type_id: NodeId,
    rest: &'a [u8],
}

/// The RequestHeader fields the sensor reads (Part 4 §7.28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub request_handle: u32,
    pub timeout_hint: u32,
}

/// The ResponseHeader fields the sensor reads (Part 4 §7.29).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHeader {
    pub request_handle: u32,
    /// `opcua.ServiceResult`: a StatusCode, severity in the top two bits.
    pub service_result: u32,
}

/// Severity "Bad" in a StatusCode's top bits (Part 4 §7.39).
pub fn status_is_bad(code: u32) -> bool {
    code & 0x8000_0000 != 0
}

impl<'a> ServiceBody<'a> {
    /// The numeric type id in namespace 0 (`opcua.servicenodeid.numeric`).
    pub fn numeric_id(&self) -> Option<u32> {
        match self.type_id {
            NodeId {
                namespace: 0,
                numeric: Some(id),
            } => Some(id),
            _ => None,
        }
    }

    /// The service and whether this body is its request or response.
    pub fn service(&self) -> Option<(Service, Direction)> {
        service(self.numeric_id()?)
    }

    /// The encoded structure after the type id.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    fn request_reader(&self) -> Option<(RequestHeader, Reader<'a>)> {
        let mut r = Reader::new(self.rest);
        r.node_id()?; // AuthenticationToken
        r.bytes(8)?; // Timestamp
        let request_handle = r.u32()?;
        r.u32()?; // ReturnDiagnostics
        r.string()?; // AuditEntryId
        let timeout_hint = r.u32()?;
        r.skip_extension_object()?; // AdditionalHeader
        Some((
            RequestHeader {
                request_handle,
                timeout_hint,
            },
            r,
        ))
    }

    fn response_reader(&self) -> Option<(ResponseHeader, Reader<'a>)> {
        let mut r = Reader::new(self.rest);
        r.bytes(8)?; // Timestamp
        let request_handle = r.u32()?;
        let service_result = r.u32()?;
        let header = ResponseHeader {
            request_handle,
            service_result,
        };
        r.skip_diagnostic_info()?;
        let strings = r.array_len()?;
        for _ in 0..strings {
            r.string()?;
        }
        r.skip_extension_object()?;
        Some((header, r))
    }

    /// The request header, when the body is a request.
    pub fn request_header(&self) -> Option<RequestHeader> {
        match self.service()? {
            (_, Direction::Request) => {
                // Only the fields before the variable-length tail are needed; a short
                // tail still yields the handle.
                let mut r = Reader::new(self.rest);
                r.node_id()?;
                r.bytes(8)?;
                let request_handle = r.u32()?;
                let timeout_hint = self.request_reader().map_or(0, |(h, _)| h.timeout_hint);
                Some(RequestHeader {
                    request_handle,
                    timeout_hint,
                })
            }
            (_, Direction::Response) => None,
        }
    }

    /// The response header's request handle and service result, when the body is a
    /// response (a ServiceFault included).
    pub fn response_header(&self) -> Option<ResponseHeader> {
        match self.service()? {
            (_, Direction::Response) => {
                let mut r = Reader::new(self.rest);
                r.bytes(8)?;
                Some(ResponseHeader {
                    request_handle: r.u32()?,
                    service_result: r.u32()?,
                })
            }
            (_, Direction::Request) => None,
        }
    }

    /// OpenSecureChannelRequest: the requested security mode (Part 4 §5.5.2.2).
    pub fn open_security_mode(&self) -> Option<SecurityMode> {
        if self.numeric_id()? != 446 {
            return None;
        }
        let (_, mut r) = self.request_reader()?;
        r.u32()?; // ClientProtocolVersion
        r.u32()?; // RequestType
        Some(SecurityMode::from(r.u32()?))
    }

    /// The servers a GetEndpoints or FindServers response describes (Part 4 §5.4):
    /// their ApplicationDescriptions.
    pub fn applications(&self) -> Applications<'a> {
        let (reader, remaining, endpoints) = match self.numeric_id() {
            Some(431) | Some(425) => match self.response_reader() {
                Some((_, mut r)) => match r.array_len() {
                    Some(n) => (r, n.min(64), self.numeric_id() == Some(431)),
                    None => (Reader::new(&[]), 0, false),
                },
                None => (Reader::new(&[]), 0, false),
            },
            _ => (Reader::new(&[]), 0, false),
        };
        Applications {
            reader,
            remaining,
            endpoints,
        }
    }

    /// ReadRequest (Part 4 §5.10.2): the first of its NodesToRead (among the first
    /// [`MAX_READ_NODES`]) that reads the server's state, the Value attribute of
    /// Server_ServerStatus_State (ns=0;i=2259) or Server_ServerStatus (ns=0;i=2256).
    pub fn server_state_read(&self) -> Option<ServerStateRead> {
        if self.numeric_id()? != READ_REQUEST {
            return None;
        }
        let (_, mut r) = self.request_reader()?;
        r.bytes(8)?; // MaxAge (Double)
        r.u32()?; // TimestampsToReturn
        let count = r.array_len()?.min(MAX_READ_NODES);
        for index in 0..count {
            // ReadValueId (Part 4): NodeId, AttributeId, IndexRange, DataEncoding.
            let node = r.node_id()?;
            let attribute = r.u32()?;
            let index_range = r.string()?;
            r.u16()?; // DataEncoding: QualifiedName namespace
            r.string()?; // and name
            if node.namespace != 0 || attribute != ATTRIBUTE_VALUE || !index_range.is_empty() {
                continue;
            }
            let node = match node.numeric {
                Some(NODE_SERVER_STATE) => ServerStatusNode::State,
                Some(NODE_SERVER_STATUS) => ServerStatusNode::ServerStatus,
                _ => continue,
            };
            return Some(ServerStateRead {
                index: index as u16,
                node,
            });
        }
        None
    }

    /// ReadResponse (Part 4 §5.10.2): the DataValue at `index` of its Results, when
    /// every DataValue before it can be skipped (a Variant nesting DataValues or
    /// Variants ends the walk).
    pub fn read_result(&self, index: usize) -> Option<DataValue<'a>> {
        if self.numeric_id()? != READ_RESPONSE || index >= MAX_READ_NODES {
            return None;
        }
        let (_, mut r) = self.response_reader()?;
        let count = r.array_len()?;
        if index >= count {
            return None;
        }
        for _ in 0..index {
            r.data_value()?;
        }
        r.data_value()
    }
}

/// ReadRequest and ReadResponse encoding ids (Part 6 annex, NodeIds.csv).
pub const READ_REQUEST: u32 = 631;
pub const READ_RESPONSE: u32 = 634;
/// Server_ServerStatus (a ServerStatusDataType) and Server_ServerStatus_State (a
/// ServerState), namespace 0 (Part 5 ServerType; NodeIds.csv).
pub const NODE_SERVER_STATUS: u32 = 2256;
pub const NODE_SERVER_STATE: u32 = 2259;
/// ServerStatusDataType_Encoding_DefaultBinary (NodeIds.csv).
pub const SERVER_STATUS_ENCODING: u32 = 864;
/// The Value attribute (Part 6 annex A.1, AttributeIds).
pub const ATTRIBUTE_VALUE: u32 = 13;
/// How many ReadValueIds (and DataValues) are looked at in one Read.
pub const MAX_READ_NODES: usize = 64;

/// Which node a ServerState read names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerStatusNode {
    /// Server_ServerStatus_State: the value is the ServerState (an Int32).
    State,
    /// Server_ServerStatus: the value is a ServerStatusDataType whose State follows
    /// StartTime and CurrentTime.
    ServerStatus,
}

/// A ReadValueId of a ReadRequest that reads the server's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerStateRead {
    /// Its position in NodesToRead, which is its result's position in the response.
    pub index: u16,
    pub node: ServerStatusNode,
}

/// The ServerState enumeration (Part 5, ServerState). Unknown values are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerState {
    Running,
    Failed,
    NoConfiguration,
    Suspended,
    Shutdown,
    Test,
    CommunicationFault,
    Unknown,
    Other(i32),
}

impl From<i32> for ServerState {
    fn from(value: i32) -> ServerState {
        match value {
            0 => ServerState::Running,
            1 => ServerState::Failed,
            2 => ServerState::NoConfiguration,
            3 => ServerState::Suspended,
            4 => ServerState::Shutdown,
            5 => ServerState::Test,
            6 => ServerState::CommunicationFault,
            7 => ServerState::Unknown,
            other => ServerState::Other(other),
        }
    }
}

impl ServerState {
    /// The enumeration's name as Part 5 spells it; `None` for a value it does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            ServerState::Running => "Running",
            ServerState::Failed => "Failed",
            ServerState::NoConfiguration => "NoConfiguration",
            ServerState::Suspended => "Suspended",
            ServerState::Shutdown => "Shutdown",
            ServerState::Test => "Test",
            ServerState::CommunicationFault => "CommunicationFault",
            ServerState::Unknown => "Unknown",
            ServerState::Other(_) => return None,
        })
    }
}

/// A DataValue (Part 6 §5.2.2.17) as far as the sensor reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataValue<'a> {
    pub value: Option<Variant<'a>>,
    /// The StatusCode, when encoded (absent means Good).
    pub status: Option<u32>,
}

impl<'a> DataValue<'a> {
    /// The server state this value carries, read as `node`'s value: an Int32 for
    /// Server_ServerStatus_State, a ServerStatusDataType for Server_ServerStatus.
    /// `None` when the status is not Good or the value is not of that type.
    pub fn server_state(&self, node: ServerStatusNode) -> Option<ServerState> {
        if self.status.is_some_and(|status| status & 0xC000_0000 != 0) {
            return None;
        }
        let value = self.value?;
        match node {
            ServerStatusNode::State => value.int32().map(ServerState::from),
            ServerStatusNode::ServerStatus => {
                let (type_id, body) = value.extension_object()?;
                if type_id
                    != (NodeId {
                        namespace: 0,
                        numeric: Some(SERVER_STATUS_ENCODING),
                    })
                {
                    return None;
                }
                let mut r = Reader::new(body);
                r.bytes(16)?; // StartTime, CurrentTime (DateTime)
                r.i32().map(ServerState::from)
            }
        }
    }
}

/// A Variant (Part 6 §5.2.2.16): its built-in type and its encoded value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant<'a> {
    /// The built-in type id (Part 6 §5.1.2: 6 Int32, 22 ExtensionObject, ...).
    pub built_in_type: u8,
    pub is_array: bool,
    /// The encoded value (after the encoding mask; array length and dimensions
    /// included for an array).
    body: &'a [u8],
}

impl<'a> Variant<'a> {
    /// A scalar Int32 (enumerations are encoded as Int32, Part 6 §5.2.4).
    pub fn int32(&self) -> Option<i32> {
        if self.built_in_type != 6 || self.is_array {
            return None;
        }
        Reader::new(self.body).i32()
    }

    /// A scalar ExtensionObject with a binary body: its type id and body.
    pub fn extension_object(&self) -> Option<(NodeId, &'a [u8])> {
        if self.built_in_type != 22 || self.is_array {
            return None;
        }
        let mut r = Reader::new(self.body);
        let type_id = r.node_id()?;
        if r.u8()? != 0x01 {
            return None;
        }
        Some((type_id, r.string()?))
    }
}

/// An ApplicationDescription's identity fields (Part 4 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Application<'a> {
    pub application_uri: &'a [u8],
    pub product_uri: &'a [u8],
    pub application_name: &'a [u8],
    /// 0 server, 1 client, 2 client and server, 3 discovery server.
    pub application_type: u32,
    /// From an EndpointDescription only.
    pub security_mode: Option<SecurityMode>,
    pub security_policy_uri: Option<&'a [u8]>,
}

/// Iterator over the ApplicationDescriptions of a GetEndpoints or FindServers
/// response; stops at the first that does not parse.
#[derive(Clone, Debug)]
pub struct Applications<'a> {
    reader: Reader<'a>,
    remaining: usize,
    /// Elements are EndpointDescriptions (GetEndpoints) rather than bare
    /// ApplicationDescriptions (FindServers).
    endpoints: bool,
}

impl<'a> Applications<'a> {
    fn next_inner(&mut self) -> Option<Application<'a>> {
        let r = &mut self.reader;
        if self.endpoints {
            r.string()?; // EndpointUrl
        }
        let application_uri = r.string()?;
        let product_uri = r.string()?;
        let application_name = r.localized_text()?;
        let application_type = r.u32()?;
        r.string()?; // GatewayServerUri
        r.string()?; // DiscoveryProfileUri
        let urls = r.array_len()?;
        for _ in 0..urls {
            r.string()?;
        }
        let (mut security_mode, mut security_policy_uri) = (None, None);
        if self.endpoints {
            r.string()?; // ServerCertificate
            security_mode = Some(SecurityMode::from(r.u32()?));
            security_policy_uri = Some(r.string()?);
            let tokens = r.array_len()?;
            for _ in 0..tokens {
                // UserTokenPolicy: PolicyId, TokenType, IssuedTokenType,
                // IssuerEndpointUrl, SecurityPolicyUri.
                r.string()?;
                r.u32()?;
                r.string()?;
                r.string()?;
                r.string()?;
            }
            r.string()?; // TransportProfileUri
            r.u8()?; // SecurityLevel
        }
        Some(Application {
            application_uri,
            product_uri,
            application_name,
            application_type,
            security_mode,
            security_policy_uri,
        })
    }
}

impl<'a> Iterator for Applications<'a> {
    type Item = Application<'a>;

    fn next(&mut self) -> Option<Application<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let next = self.next_inner();
        if next.is_none() {
            self.remaining = 0;
        }
        next
    }
}

/// Stream framing: the header's message type and size (Part 6 §7.1.2.2). A buffer that
/// does not start with a known message type, a chunk type and a plausible size is
/// skipped a byte at a time.
pub fn frame(buf: &[u8]) -> Framing {
    if buf.len() < HEADER_LEN {
        // Reject early on a wrong type so garbage does not wait for more bytes.
        let known = MessageType::ALL
            .iter()
            .any(|t| t.name().as_bytes().starts_with(&buf[..buf.len().min(3)]));
        return if known {
            Framing::Need(HEADER_LEN)
        } else {
            Framing::Resync(1)
        };
    }
    if MessageType::from_bytes([buf[0], buf[1], buf[2]]).is_none()
        || matches!(
            ChunkType::from(buf[field::CHUNK_TYPE]),
            ChunkType::Unknown(_)
        )
    {
        return Framing::Resync(1);
    }
    let size = le32(buf, field::SIZE.start).unwrap_or(0);
    if (size as usize) < HEADER_LEN || size > MAX_MESSAGE_SIZE {
        return Framing::Resync(1);
    }
    let size = size as usize;
    if buf.len() < size {
        Framing::Need(size)
    } else {
        Framing::Frame(size)
    }
}

/// A cheap signature for OPC UA on any port: a whole message with a known type, chunk
/// type F/C/A and a size that ends at the payload end or at another message header.
/// HEL must carry protocol version 0 and an `opc.tcp://` endpoint URL.
pub fn looks_like(payload: &[u8]) -> bool {
    let Framing::Frame(len) = frame(payload) else {
        return false;
    };
    let Ok(message) = Message::new_checked(&payload[..len]) else {
        return false;
    };
    let rest = &payload[len..];
    if !rest.is_empty() && !matches!(frame(rest), Framing::Frame(_) | Framing::Need(_)) {
        return false;
    }
    match message.message_type() {
        MessageType::Hello => message
            .hello()
            .is_some_and(|h| h.endpoint_url.starts_with(b"opc.tcp://")),
        MessageType::Acknowledge => message.body().len() == 20,
        MessageType::Error => message.error().is_some(),
        MessageType::ReverseHello => true,
        _ => message.secure().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_capture::hex;
    use crate::test_capture::{expected_histogram, framed_pdus};
    use std::collections::HashMap;

    // Fixtures are messages of the shared captures (frame numbers as in Wireshark).

    /// opcua-open62541-get-endpoints.pcap #5: HEL to opc.tcp://localhost:4840.
    const HELLO: &str = "48454c463800000000000000ffff0000ffff00000000000000000000180000006f70632e7463703a2f2f6c6f63616c686f73743a34383430";
    /// opcua-open62541-get-endpoints.pcap #7: ACK.
    const ACK: &str = "41434b461c00000000000000ffff0000ffff00000000000000000000";
    /// opcua-open62541-get-endpoints.pcap #9: OPN request, policy None, mode None.
    const OPEN_REQUEST: &str = "4f504e4684000000000000002f000000687474703a2f2f6f7063666f756e646174696f6e2e6f72672f55412f5365637572697479506f6c696379234e6f6e65ffffffffffffffff01000000010000000100be01000060acd99b5595d7010000000000000000ffffffff00000000000000000000000000000001000000ffffffffc0270900";
    /// opcua-open62541-get-endpoints.pcap #15: GetEndpoints response, no endpoints.
    const GET_ENDPOINTS_RESPONSE: &str = "4d53474638000000080000000800000002000000020000000100af01eebed99b5595d701010000000000000000ffffffff000000ffffffff";
    /// opcua-open62541-get-endpoints.pcap #17: CLO.
    const CLOSE: &str = "434c4f4639000000080000000800000003000000030000000100c4010000eec3d99b5595d7010100000000000000ffffffff10270000000000";

    #[test]
    fn hello_and_acknowledge() {
        let bytes = hex(HELLO);
        let message = Message::new_checked(&bytes).expect("valid HEL");
        assert_eq!(message.message_type(), MessageType::Hello);
        assert_eq!(message.chunk_type(), ChunkType::Final);
        assert_eq!(message.size(), 56);
        let hello = message.hello().expect("HEL body");
        assert_eq!(hello.protocol_version, 0);
        assert_eq!(hello.receive_buffer_size, 65535);
        assert_eq!(hello.endpoint_url, b"opc.tcp://localhost:4840");
        assert_eq!(message.secure(), None);
        let bytes = hex(ACK);
        let message = Message::new_checked(&bytes).expect("valid ACK");
        assert_eq!(message.message_type().name(), "ACK");
        assert_eq!(message.hello(), None);
    }

    #[test]
    fn open_secure_channel_request() {
        let bytes = hex(OPEN_REQUEST);
        let message = Message::new_checked(&bytes).expect("valid OPN");
        let secure = message.secure().expect("secure headers");
        assert_eq!(secure.secure_channel_id, 0);
        assert!(secure.policy_is_none());
        assert_eq!(secure.token_id, None);
        assert_eq!((secure.sequence_number, secure.request_id), (1, 1));
        let body = secure.service().expect("service body");
        assert_eq!(body.numeric_id(), Some(446));
        let (service, direction) = body.service().expect("known service");
        assert_eq!(
            (service.name, direction),
            ("OpenSecureChannel", Direction::Request)
        );
        assert_eq!(body.open_security_mode(), Some(SecurityMode::None));
        assert_eq!(body.request_header().map(|h| h.request_handle), Some(0));
        assert_eq!(body.response_header(), None);
    }

    #[test]
    fn get_endpoints_response_and_close() {
        let bytes = hex(GET_ENDPOINTS_RESPONSE);
        let message = Message::new_checked(&bytes).expect("valid MSG");
        let secure = message.secure().expect("secure headers");
        assert_eq!(secure.secure_channel_id, 8);
        assert_eq!(secure.token_id, Some(8));
        let body = secure.service().expect("service body");
        assert_eq!(body.numeric_id(), Some(431));
        assert_eq!(
            body.service().map(|(s, d)| (s.kind, d)),
            Some((ServiceKind::Discovery, Direction::Response))
        );
        let header = body.response_header().expect("response header");
        assert_eq!((header.request_handle, header.service_result), (1, 0));
        assert_eq!(body.applications().count(), 0);

        let bytes = hex(CLOSE);
        let message = Message::new_checked(&bytes).expect("valid CLO");
        let body = message.secure().and_then(|s| s.service()).expect("body");
        assert_eq!(body.numeric_id(), Some(452));
    }

    /// A GetEndpoints response with one endpoint, encoded by hand per Part 4 §5.4.4.
    fn endpoints_response() -> Vec<u8> {
        let string = |s: &[u8]| {
            let mut v = (s.len() as i32).to_le_bytes().to_vec();
            v.extend_from_slice(s);
            v
        };
        let mut body = vec![0x01, 0x00, 0xaf, 0x01]; // four-byte node id 431
        body.extend([0u8; 8]); // timestamp
        body.extend(7u32.to_le_bytes()); // request handle
        body.extend(0u32.to_le_bytes()); // service result
        body.push(0); // diagnostic info
        body.extend((-1i32).to_le_bytes()); // string table
        body.extend([0, 0, 0]); // additional header
        body.extend(1i32.to_le_bytes()); // one endpoint
        body.extend(string(b"opc.tcp://plc:4840"));
        body.extend(string(b"urn:plc:server"));
        body.extend(string(b"urn:vendor:product"));
        body.push(0x02);
        body.extend(string(b"Line 3 PLC"));
        body.extend(0u32.to_le_bytes()); // server
        body.extend((-1i32).to_le_bytes());
        body.extend((-1i32).to_le_bytes());
        body.extend((-1i32).to_le_bytes()); // discovery urls
        body.extend((-1i32).to_le_bytes()); // certificate
        body.extend(2u32.to_le_bytes()); // Sign
        body.extend(string(
            b"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
        ));
        body.extend(0i32.to_le_bytes()); // no token policies
        body.extend((-1i32).to_le_bytes());
        body.push(3);
        let mut message = b"MSGF".to_vec();
        message.extend(((8 + 16 + body.len()) as u32).to_le_bytes());
        for v in [1u32, 1, 2, 2] {
            message.extend(v.to_le_bytes());
        }
        message.extend(body);
        message
    }

    #[test]
    fn endpoints_carry_the_server_identity() {
        let bytes = endpoints_response();
        let message = Message::new_checked(&bytes).expect("valid MSG");
        let body = message.secure().and_then(|s| s.service()).expect("body");
        let apps: Vec<_> = body.applications().collect();
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].application_name, b"Line 3 PLC");
        assert_eq!(apps[0].product_uri, b"urn:vendor:product");
        assert_eq!(apps[0].security_mode, Some(SecurityMode::Sign));
        // Every cut of the message either parses fewer applications or none, and
        // never panics.
        for cut in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..cut]);
            let _ = r.node_id();
        }
    }

    /// opcua-open62541-browse-results.pcap #193: ReadRequest (handle 6) of ns=0;i=2259,
    /// attribute Value.
    const READ_SERVER_STATE: &str = "4d5347466c00000005000000090000000600000006000000010077020401006210aad2ad5214631b31c37c02b00bd0bcefa0863f8bd8010600000000000000ffffffffe8030000000000000000000000000000000000010000000100d3080d000000ffffffff0000ffffffff";
    /// opcua-open62541-browse-results.pcap #195: its ReadResponse, Int32 0 (Running)
    /// with a source timestamp.
    const READ_SERVER_STATE_RESPONSE: &str = "4d5347464a0000000500000009000000060000000600000001007a02fe02a1863f8bd801060000000000000000ffffffff00000001000000050600000000fe02a1863f8bd801ffffffff";

    fn service_body(bytes: &[u8]) -> ServiceBody<'_> {
        Message::new_checked(bytes)
            .expect("valid MSG")
            .secure()
            .and_then(|s| s.service())
            .expect("service body")
    }

    #[test]
    fn server_state_read_and_its_result() {
        let request = hex(READ_SERVER_STATE);
        let body = service_body(&request);
        assert_eq!(body.request_header().map(|h| h.request_handle), Some(6));
        assert_eq!(
            body.server_state_read(),
            Some(ServerStateRead {
                index: 0,
                node: ServerStatusNode::State
            })
        );
        assert_eq!(body.read_result(0), None, "a request has no results");

        let response = hex(READ_SERVER_STATE_RESPONSE);
        let body = service_body(&response);
        assert_eq!(body.response_header().map(|h| h.request_handle), Some(6));
        assert_eq!(body.server_state_read(), None, "a response reads nothing");
        let value = body.read_result(0).expect("one result");
        assert_eq!(value.status, None);
        let variant = value.value.expect("a value");
        assert_eq!((variant.built_in_type, variant.is_array), (6, false));
        assert_eq!(
            value.server_state(ServerStatusNode::State),
            Some(ServerState::Running)
        );
        // Read as a ServerStatus structure the Int32 is not one.
        assert_eq!(value.server_state(ServerStatusNode::ServerStatus), None);
        assert_eq!(body.read_result(1), None, "only one result");
        // Every cut of both messages parses less or nothing, never panics.
        for bytes in [&request, &response] {
            for cut in 0..bytes.len() {
                let mut r = Reader::new(&bytes[..cut]);
                let _ = r.data_value();
                let _ = r.variant();
            }
        }
    }

    /// A Read of three nodes (a string value, then the ServerStatus structure, then
    /// the State) and its response, encoded by hand per Part 4 (Read) and Part 6
    /// §5.2.2.16-17 (Variant, DataValue): no capture reads ServerStatus (i=2256).
    fn read_of_server_status(status_state: i32, state_status: Option<u32>) -> (Vec<u8>, Vec<u8>) {
        let message = |body: Vec<u8>| {
            let mut message = b"MSGF".to_vec();
            message.extend(((8 + 16 + body.len()) as u32).to_le_bytes());
            for v in [1u32, 1, 9, 9] {
                message.extend(v.to_le_bytes());
            }
            message.extend(body);
            message
        };
        let mut request = vec![0x01, 0x00, 0x77, 0x02]; // ReadRequest 631
        request.extend([0x00, 0x00]); // authentication token
        request.extend([0u8; 8]); // timestamp
        request.extend(42u32.to_le_bytes()); // request handle
        request.extend(0u32.to_le_bytes()); // return diagnostics
        request.extend((-1i32).to_le_bytes()); // audit entry id
        request.extend(1000u32.to_le_bytes()); // timeout hint
        request.extend([0, 0, 0]); // additional header
        request.extend([0u8; 8]); // max age
        request.extend(0u32.to_le_bytes()); // timestamps to return
        request.extend(3i32.to_le_bytes());
        for node in [2261u16, 2256, 2259] {
            request.push(0x01);
            request.push(0x00);
            request.extend(node.to_le_bytes());
            request.extend(13u32.to_le_bytes());
            request.extend((-1i32).to_le_bytes());
            request.extend([0, 0]);
            request.extend((-1i32).to_le_bytes());
        }
        let mut response = vec![0x01, 0x00, 0x7a, 0x02]; // ReadResponse 634
        response.extend([0u8; 8]);
        response.extend(42u32.to_le_bytes());
        response.extend(0u32.to_le_bytes());
        response.push(0);
        response.extend((-1i32).to_le_bytes());
        response.extend([0, 0, 0]);
        response.extend(3i32.to_le_bytes());
        // ProductName: a String with a source timestamp.
        response.extend([0x05, 12]);
        response.extend(4i32.to_le_bytes());
        response.extend(b"open");
        response.extend([0u8; 8]);
        // ServerStatus: ExtensionObject i=864, binary body.
        response.extend([0x01, 22, 0x01, 0x00]);
        response.extend(864u16.to_le_bytes());
        response.push(0x01);
        let mut status = vec![0u8; 16]; // start time, current time
        status.extend(status_state.to_le_bytes());
        status.extend([0u8; 8]); // the rest of the structure, not read
        response.extend((status.len() as i32).to_le_bytes());
        response.extend(status);
        // State: an Int32, with a status code when given.
        response.push(if state_status.is_some() { 0x03 } else { 0x01 });
        response.push(6);
        response.extend(5i32.to_le_bytes());
        if let Some(code) = state_status {
            response.extend(code.to_le_bytes());
        }
        response.extend((-1i32).to_le_bytes()); // diagnostic infos
        (message(request), message(response))
    }

    #[test]
    fn server_status_structure_carries_the_state() {
        let (request, response) = read_of_server_status(4, None);
        assert_eq!(
            service_body(&request).server_state_read(),
            Some(ServerStateRead {
                index: 1,
                node: ServerStatusNode::ServerStatus
            })
        );
        let body = service_body(&response);
        let state = |index| {
            body.read_result(index)
                .and_then(|v| v.server_state(ServerStatusNode::ServerStatus))
        };
        assert_eq!(state(1), Some(ServerState::Shutdown));
        assert_eq!(state(0), None, "a String is no ServerStatus");
        assert_eq!(
            body.read_result(2)
                .and_then(|v| v.server_state(ServerStatusNode::State)),
            Some(ServerState::Test)
        );
        // A Bad status hides the value; unknown enumeration values are kept.
        let (_, response) = read_of_server_status(9, Some(0x8034_0000));
        let body = service_body(&response);
        assert_eq!(
            body.read_result(2)
                .and_then(|v| v.server_state(ServerStatusNode::State)),
            None
        );
        let status = body
            .read_result(1)
            .and_then(|v| v.server_state(ServerStatusNode::ServerStatus));
        assert_eq!(status, Some(ServerState::Other(9)));
        assert_eq!(status.and_then(ServerState::name), None);
        assert_eq!(ServerState::from(6).name(), Some("CommunicationFault"));
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Message::new_checked(b"MSGF"),
            Err(Error::Truncated { need: 8, have: 4 })
        );
        assert_eq!(
            Message::new_checked(b"XYZF\x08\x00\x00\x00"),
            Err(Error::BadMessageType(*b"XYZ"))
        );
        assert_eq!(
            Message::new_checked(b"MSGF\x04\x00\x00\x00"),
            Err(Error::BadSize(4))
        );
        assert_eq!(
            Message::new_checked(b"ACKF\x08\x00\x00\x00\x00"),
            Err(Error::TrailingBytes(1))
        );
        // A MSG whose body stops inside the sequence header.
        let message =
            Message::new_checked(b"MSGF\x0c\x00\x00\x00\x01\x00\x00\x00").expect("fixture parses");
        assert_eq!(message.secure(), None);
        // A DiagnosticInfo nested deeper than the limit.
        let deep = [0x40u8; 32];
        assert_eq!(Reader::new(&deep).skip_diagnostic_info(), None);
        // A string longer than the buffer.
        assert_eq!(Reader::new(&[0x10, 0, 0, 0, b'a']).string(), None);
    }

    #[test]
    fn framing_and_recognition() {
        let mut stream = hex(HELLO);
        stream.extend(hex(ACK));
        assert_eq!(frame(&stream), Framing::Frame(56));
        assert_eq!(frame(&stream[56..]), Framing::Frame(28));
        assert_eq!(frame(&stream[..20]), Framing::Need(56));
        assert_eq!(frame(b"MS"), Framing::Need(8));
        assert_eq!(frame(b"GET / HTTP/1.1"), Framing::Resync(1));
        assert_eq!(frame(b"MSGX\x10\x00\x00\x00"), Framing::Resync(1));
        assert!(looks_like(&stream));
        assert!(looks_like(&hex(OPEN_REQUEST)));
        assert!(!looks_like(&stream[..40]));
        assert!(!looks_like(b"HELO mail.example.com\r\n"));
    }

    /// Every message of the OPC UA captures, framed like the sensor frames them: the
    /// message types and service ids equal tshark's counts.
    #[test]
    fn captures_match_tshark_histograms() {
        for name in [
            "opcua-open62541-get-endpoints.pcap",
            "opcua-open62541-discovery.pcap",
            "opcua-open62541-mainloop.pcap",
            "opcua-python-minimal.pcap",
        ] {
            let (pdus, skipped) = framed_pdus(name, PORT, frame);
            assert_eq!(skipped, 0, "{name}: resync");
            let mut types: HashMap<String, u64> = HashMap::new();
            let mut services: HashMap<String, u64> = HashMap::new();
            for (_, pdu) in &pdus {
                let message = Message::new_checked(pdu).expect("framed message parses");
                *types
                    .entry(message.message_type().name().into())
                    .or_default() += 1;
                if let Some(id) = message
                    .secure()
                    .and_then(|s| s.service())
                    .and_then(|b| b.numeric_id())
                {
                    *services.entry(id.to_string()).or_default() += 1;
                }
            }
            assert_eq!(
                types,
                expected_histogram(name, "opcua", "msg_type"),
                "{name}"
            );
            assert_eq!(
                services,
                expected_histogram(name, "opcua", "service_nodeid"),
                "{name}"
            );
        }
    }
}
