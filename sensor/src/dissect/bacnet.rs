//! BACnet/IP (ASHRAE 135, UDP 47808): the BVLC header (annex J.2), the NPDU
//! (clause 6.2), the APDU header (clause 20.1) and a small reader for BACnet tags
//! (clause 20.2) that yields what the sensor inventories: I-Am, Error, Reject, Abort,
//! device control requests, and ReadProperty / ReadPropertyMultiple ACK values such as
//! vendor-name or firmware-revision.
//!
//! `new_checked` of [`Bvlc`](crate::dissect::bacnet::Bvlc), [`Npdu`](crate::dissect::bacnet::Npdu) and [`Apdu`](crate::dissect::bacnet::Apdu) validates every length their
//! accessors rely on; after it succeeds no accessor can panic. Service data is walked
//! with [`Tags`](crate::dissect::bacnet::Tags), which stops at the first tag that does not fit and records that as
//! malformed, so a bad service body is an anomaly, not an error.
//!
//! Field names follow Wireshark's `bvlc`, `bacnet` and `bacapp` dissectors; service
//! names are its `bacapp.confirmed_service` / `bacapp.unconfirmed_service` value
//! strings (ASHRAE 135 clause 21, BACnetConfirmedServiceChoice).

use std::collections::BTreeMap;

use crate::dissect::histogram::{pair, pair_key, Histogram};
use crate::dissect::inspect::{BacnetEvent, EventBody, PduCtx};
use crate::dissect::reassembly::SEGMENT_BUFFER_LEN;
use crate::dissect::vendors::{bacnet_vendor, vendor_text};
use crate::dissect::{Direction, Protocol};
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};

/// Errors of the BACnet views; one counter label each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    /// BVLC type is not 0x81 (BACnet/IP, annex J.2.1).
    #[error("BVLC type {0:#04x} is not 0x81")]
    BadType(u8),
    /// The BVLC length is shorter than its header.
    #[error("BVLC length shorter than its header")]
    BadLength,
    /// NPDU protocol version is not 1 (clause 6.2.1).
    #[error("NPDU version {0} is not 1")]
    BadVersion(u8),
}

impl Error {
    /// The metrics label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadType(_) => "bad_type",
            Error::BadLength => "bad_length",
            Error::BadVersion(_) => "bad_version",
        }
    }
}

mod field {
    use core::ops::Range;
    // Annex J.2: type, function, length (big endian, whole BVLL message).
    pub const BVLC_TYPE: usize = 0;
    pub const BVLC_FUNCTION: usize = 1;
    pub const BVLC_LENGTH: Range<usize> = 2..4;
    pub const BVLC_END: usize = 4;
    // J.2.9 Forwarded-NPDU: the original source B/IP address (IPv4 + port).
    pub const FORWARDED_ADDRESS: Range<usize> = 4..10;
    // J.2.1 BVLC-Result: result code.
    pub const RESULT_CODE: Range<usize> = 4..6;

    // Clause 6.2: version, control, then optional DNET/DLEN/DADR, SNET/SLEN/SADR.
    pub const NPDU_VERSION: usize = 0;
    pub const NPDU_CONTROL: usize = 1;
    pub const NPDU_ADDRESSES: usize = 2;
}

/// The BVLC header length.
pub const BVLC_HEADER_LEN: usize = field::BVLC_END;
/// BVLC type of BACnet/IP.
pub const BVLC_TYPE_BACNET_IP: u8 = 0x81;
/// The smallest NPDU: version and control.
pub const NPDU_HEADER_LEN: usize = field::NPDU_ADDRESSES;

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    match buf.get(at..at + 2) {
        Some(&[a, b]) => Some(u16::from_be_bytes([a, b])),
        _ => None,
    }
}

/// BVLC functions (annex J.2, `bvlc.function`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BvlcFunction {
    Result,
    WriteBroadcastDistributionTable,
    ReadBroadcastDistributionTable,
    ReadBroadcastDistributionTableAck,
    ForwardedNpdu,
    RegisterForeignDevice,
    ReadForeignDeviceTable,
    ReadForeignDeviceTableAck,
    DeleteForeignDeviceTableEntry,
    DistributeBroadcastToNetwork,
    OriginalUnicastNpdu,
    OriginalBroadcastNpdu,
    SecureBvll,
    Unknown(u8),
}

impl From<u8> for BvlcFunction {
    fn from(value: u8) -> BvlcFunction {
        match value {
            0x00 => BvlcFunction::Result,
            0x01 => BvlcFunction::WriteBroadcastDistributionTable,
            0x02 => BvlcFunction::ReadBroadcastDistributionTable,
            0x03 => BvlcFunction::ReadBroadcastDistributionTableAck,
            0x04 => BvlcFunction::ForwardedNpdu,
            0x05 => BvlcFunction::RegisterForeignDevice,
            0x06 => BvlcFunction::ReadForeignDeviceTable,
            0x07 => BvlcFunction::ReadForeignDeviceTableAck,
            0x08 => BvlcFunction::DeleteForeignDeviceTableEntry,
            0x09 => BvlcFunction::DistributeBroadcastToNetwork,
            0x0A => BvlcFunction::OriginalUnicastNpdu,
            0x0B => BvlcFunction::OriginalBroadcastNpdu,
            0x0C => BvlcFunction::SecureBvll,
            other => BvlcFunction::Unknown(other),
        }
    }
}

impl BvlcFunction {
    pub fn code(self) -> u8 {
        match self {
            BvlcFunction::Result => 0x00,
            BvlcFunction::WriteBroadcastDistributionTable => 0x01,
            BvlcFunction::ReadBroadcastDistributionTable => 0x02,
            BvlcFunction::ReadBroadcastDistributionTableAck => 0x03,
            BvlcFunction::ForwardedNpdu => 0x04,
            BvlcFunction::RegisterForeignDevice => 0x05,
            BvlcFunction::ReadForeignDeviceTable => 0x06,
            BvlcFunction::ReadForeignDeviceTableAck => 0x07,
            BvlcFunction::DeleteForeignDeviceTableEntry => 0x08,
            BvlcFunction::DistributeBroadcastToNetwork => 0x09,
            BvlcFunction::OriginalUnicastNpdu => 0x0A,
            BvlcFunction::OriginalBroadcastNpdu => 0x0B,
            BvlcFunction::SecureBvll => 0x0C,
            BvlcFunction::Unknown(code) => code,
        }
    }

    /// Functions whose payload is an NPDU.
    pub fn carries_npdu(self) -> bool {
        matches!(
            self,
            BvlcFunction::ForwardedNpdu
                | BvlcFunction::DistributeBroadcastToNetwork
                | BvlcFunction::OriginalUnicastNpdu
                | BvlcFunction::OriginalBroadcastNpdu
        )
    }
}

/// Cheap signature check for a BACnet/IP datagram on any port: BVLC type 0x81, a
/// defined function, a length equal to the datagram, and NPDU version 1 when the
/// function carries one. Stricter than [`Bvlc::new_checked`], which accepts a
/// mismatched length on the well-known port.
pub fn looks_like(payload: &[u8]) -> bool {
    let Ok(bvlc) = Bvlc::new_checked(payload) else {
        return false;
    };
    if matches!(bvlc.function(), BvlcFunction::Unknown(_)) || bvlc.length_mismatch() {
        return false;
    }
    !bvlc.function().carries_npdu() || bvlc.npdu().is_some_and(|npdu| npdu.first() == Some(&1))
}

/// A BVLL message (annex J.2).
#[derive(Clone, Copy, Debug)]
pub struct Bvlc<'a> {
    buf: &'a [u8],
}

impl<'a> Bvlc<'a> {
    /// Validates type 0x81, a length field no shorter than the header, and the
    /// 6-byte source address of a Forwarded-NPDU. One BVLL fills one UDP datagram
    /// (annex J.2), so the view is the whole datagram: a length field that
    /// disagrees is an anomaly ([`Bvlc::length_mismatch`]), as Wireshark also
    /// dissects the datagram as given (bacnet-iam-readproperty-example.pcap has
    /// both longer and shorter lengths).
    pub fn new_checked(buf: &'a [u8]) -> Result<Bvlc<'a>, Error> {
        let have = buf.len();
        if have < BVLC_HEADER_LEN {
            return Err(Error::Truncated {
                need: BVLC_HEADER_LEN,
                have,
            });
        }
        let kind = buf.get(field::BVLC_TYPE).copied().unwrap_or(0);
        if kind != BVLC_TYPE_BACNET_IP {
            return Err(Error::BadType(kind));
        }
        let length = usize::from(be16(buf, field::BVLC_LENGTH.start).unwrap_or(0));
        let minimum = match BvlcFunction::from(buf.get(field::BVLC_FUNCTION).copied().unwrap_or(0))
        {
            BvlcFunction::ForwardedNpdu => field::FORWARDED_ADDRESS.end,
            _ => BVLC_HEADER_LEN,
        };
        if length < BVLC_HEADER_LEN {
            return Err(Error::BadLength);
        }
        if have < minimum {
            return Err(Error::Truncated {
                need: minimum,
                have,
            });
        }
        Ok(Bvlc { buf })
    }

    /// The length field differs from the datagram length (an anomaly).
    pub fn length_mismatch(&self) -> bool {
        usize::from(self.length()) != self.buf.len()
    }

    /// `bvlc.type`.
    pub fn bvlc_type(&self) -> u8 {
        self.buf.get(field::BVLC_TYPE).copied().unwrap_or(0)
    }

    /// `bvlc.function`.
    pub fn function(&self) -> BvlcFunction {
        BvlcFunction::from(self.buf.get(field::BVLC_FUNCTION).copied().unwrap_or(0))
    }

    /// `bvlc.length`: the whole BVLL message.
    pub fn length(&self) -> u16 {
        be16(self.buf, field::BVLC_LENGTH.start).unwrap_or(0)
    }

    /// The original source of a Forwarded-NPDU: IPv4 address and UDP port.
    pub fn forwarded_address(&self) -> Option<([u8; 4], u16)> {
        if self.function() != BvlcFunction::ForwardedNpdu {
            return None;
        }
        match self.buf.get(field::FORWARDED_ADDRESS) {
            Some(&[a, b, c, d, p, q]) => Some(([a, b, c, d], u16::from_be_bytes([p, q]))),
            _ => None,
        }
    }

    /// `bvlc.result` of a BVLC-Result (0 success, 0x10.. NAKs).
    pub fn result_code(&self) -> Option<u16> {
        match self.function() {
            BvlcFunction::Result => be16(self.buf, field::RESULT_CODE.start),
            _ => None,
        }
    }

    /// The NPDU of the functions that carry one.
    pub fn npdu(&self) -> Option<&'a [u8]> {
        let start = match self.function() {
            BvlcFunction::ForwardedNpdu => field::FORWARDED_ADDRESS.end,
            function if function.carries_npdu() => BVLC_HEADER_LEN,
            _ => return None,
        };
        self.buf.get(start..)
    }
}

/// NPCI control bits (clause 6.2.2).
pub mod control {
    pub const NETWORK_MESSAGE: u8 = 0x80;
    pub const DESTINATION: u8 = 0x20;
    pub const SOURCE: u8 = 0x08;
    pub const EXPECTING_REPLY: u8 = 0x04;
    pub const PRIORITY: u8 = 0x03;
}

/// Where the variable NPCI fields sit, computed from the control octet.
#[derive(Clone, Copy, Debug)]
struct NpduLayout {
    destination: Option<usize>,
    source: Option<usize>,
    hop_count: Option<usize>,
    message_type: Option<usize>,
    vendor_id: Option<usize>,
    payload: usize,
}

/// A network-layer PDU (clause 6.2).
#[derive(Clone, Copy, Debug)]
pub struct Npdu<'a> {
    buf: &'a [u8],
}

impl<'a> Npdu<'a> {
    /// Validates version 1 and that every NPCI field the control octet announces
    /// fits.
    pub fn new_checked(buf: &'a [u8]) -> Result<Npdu<'a>, Error> {
        let have = buf.len();
        if have < NPDU_HEADER_LEN {
            return Err(Error::Truncated {
                need: NPDU_HEADER_LEN,
                have,
            });
        }
        let version = buf.get(field::NPDU_VERSION).copied().unwrap_or(0);
        if version != 1 {
            return Err(Error::BadVersion(version));
        }
        match Self::layout(buf) {
            Ok(_) => Ok(Npdu { buf }),
            Err(need) => Err(Error::Truncated { need, have }),
        }
    }

    /// Offsets of the optional fields, or the length needed when they do not fit.
    fn layout(buf: &[u8]) -> Result<NpduLayout, usize> {
        let control = buf.get(field::NPDU_CONTROL).copied().unwrap_or(0);
        let mut at = field::NPDU_ADDRESSES;
        let address = |present: bool, at: &mut usize| -> Result<Option<usize>, usize> {
            if !present {
                return Ok(None);
            }
            let start = *at;
            let len = usize::from(*buf.get(start + 2).ok_or(start + 3)?);
            *at = start + 3 + len;
            if buf.len() < *at {
                return Err(*at);
            }
            Ok(Some(start))
        };
        let destination = address(control & control::DESTINATION != 0, &mut at)?;
        let source = address(control & control::SOURCE != 0, &mut at)?;
        let hop_count = destination.map(|_| {
            at += 1;
            at - 1
        });
        let (message_type, vendor_id) = if control & control::NETWORK_MESSAGE != 0 {
            let kind = *buf.get(at).ok_or(at + 1)?;
            let message_type = Some(at);
            at += 1;
            // Clause 6.2.4: message types 0x80-0xFF carry a vendor id.
            let vendor = (kind >= 0x80).then(|| {
                at += 2;
                at - 2
            });
            (message_type, vendor)
        } else {
            (None, None)
        };
        if buf.len() < at {
            return Err(at);
        }
        Ok(NpduLayout {
            destination,
            source,
            hop_count,
            message_type,
            vendor_id,
            payload: at,
        })
    }

    fn fields(&self) -> Option<NpduLayout> {
        Self::layout(self.buf).ok()
    }

    /// `bacnet.version`.
    pub fn version(&self) -> u8 {
        self.buf.get(field::NPDU_VERSION).copied().unwrap_or(0)
    }

    /// `bacnet.control`.
    pub fn control(&self) -> u8 {
        self.buf.get(field::NPDU_CONTROL).copied().unwrap_or(0)
    }

    pub fn is_network_message(&self) -> bool {
        self.control() & control::NETWORK_MESSAGE != 0
    }

    pub fn expecting_reply(&self) -> bool {
        self.control() & control::EXPECTING_REPLY != 0
    }

    /// Network priority (0 normal .. 3 life safety).
    pub fn priority(&self) -> u8 {
        self.control() & control::PRIORITY
    }

    fn address(&self, at: Option<usize>) -> Option<(u16, &'a [u8])> {
        let at = at?;
        let net = be16(self.buf, at)?;
        let len = usize::from(*self.buf.get(at + 2)?);
        Some((net, self.buf.get(at + 3..at + 3 + len)?))
    }

    /// DNET and DADR (`bacnet.dnet`, `bacnet.dadr_*`); an empty DADR is a broadcast
    /// on DNET, DNET 0xFFFF a global broadcast.
    pub fn destination(&self) -> Option<(u16, &'a [u8])> {
        self.address(self.fields()?.destination)
    }

    /// SNET and SADR (`bacnet.snet`, `bacnet.sadr_*`).
    pub fn source(&self) -> Option<(u16, &'a [u8])> {
        self.address(self.fields()?.source)
    }

    /// A source address clause 6.2.2 forbids (SNET 0xFFFF or SLEN 0): an anomaly.
    pub fn source_invalid(&self) -> bool {
        self.source()
            .is_some_and(|(net, addr)| net == 0xFFFF || addr.is_empty())
    }

    /// `bacnet.hopc`, present with a destination.
    pub fn hop_count(&self) -> Option<u8> {
        self.buf.get(self.fields()?.hop_count?).copied()
    }

    /// `bacnet.mesgtyp` of a network-layer message.
    pub fn network_message_type(&self) -> Option<u8> {
        self.buf.get(self.fields()?.message_type?).copied()
    }

    /// `bacnet.vendor` of a proprietary network-layer message.
    pub fn vendor_id(&self) -> Option<u16> {
        be16(self.buf, self.fields()?.vendor_id?)
    }

    /// The APDU, or the network-layer message body.
    pub fn payload(&self) -> &'a [u8] {
        let start = self
            .fields()
            .map_or(self.buf.len(), |layout| layout.payload);
        self.buf.get(start..).unwrap_or(&[])
    }

    /// The APDU of an application-layer NPDU.
    pub fn apdu(&self) -> Option<Result<Apdu<'a>, Error>> {
        (!self.is_network_message()).then(|| Apdu::new_checked(self.payload()))
    }
}

/// APDU types (clause 20.1.1, `bacapp.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApduType {
    ConfirmedRequest,
    UnconfirmedRequest,
    SimpleAck,
    ComplexAck,
    SegmentAck,
    Error,
    Reject,
    Abort,
    Unknown(u8),
}

impl From<u8> for ApduType {
    fn from(value: u8) -> ApduType {
        match value {
            0 => ApduType::ConfirmedRequest,
            1 => ApduType::UnconfirmedRequest,
            2 => ApduType::SimpleAck,
            3 => ApduType::ComplexAck,
            4 => ApduType::SegmentAck,
            5 => ApduType::Error,
            6 => ApduType::Reject,
            7 => ApduType::Abort,
            other => ApduType::Unknown(other),
        }
    }
}

impl ApduType {
    pub fn code(self) -> u8 {
        match self {
            ApduType::ConfirmedRequest => 0,
            ApduType::UnconfirmedRequest => 1,
            ApduType::SimpleAck => 2,
            ApduType::ComplexAck => 3,
            ApduType::SegmentAck => 4,
            ApduType::Error => 5,
            ApduType::Reject => 6,
            ApduType::Abort => 7,
            ApduType::Unknown(code) => code,
        }
    }
}

/// PDU header flag bits (clause 20.1.2-20.1.9).
mod pdu_flag {
    pub const SEGMENTED: u8 = 0x08;
    pub const MORE_FOLLOWS: u8 = 0x04;
    pub const SEGMENTED_RESPONSE_ACCEPTED: u8 = 0x02;
    pub const NEGATIVE_ACK: u8 = 0x02;
    pub const SERVER: u8 = 0x01;
}

/// Confirmed service choices (clause 21) this module reads.
pub mod confirmed {
    pub const ATOMIC_READ_FILE: u8 = 6;
    pub const ATOMIC_WRITE_FILE: u8 = 7;
    pub const ADD_LIST_ELEMENT: u8 = 8;
    pub const REMOVE_LIST_ELEMENT: u8 = 9;
    pub const CREATE_OBJECT: u8 = 10;
    pub const DELETE_OBJECT: u8 = 11;
    pub const READ_PROPERTY: u8 = 12;
    pub const READ_PROPERTY_CONDITIONAL: u8 = 13;
    pub const READ_PROPERTY_MULTIPLE: u8 = 14;
    pub const WRITE_PROPERTY: u8 = 15;
    pub const WRITE_PROPERTY_MULTIPLE: u8 = 16;
    pub const DEVICE_COMMUNICATION_CONTROL: u8 = 17;
    pub const REINITIALIZE_DEVICE: u8 = 20;
    pub const READ_RANGE: u8 = 26;
}

/// Unconfirmed service choices (clause 21) this module reads.
pub mod unconfirmed {
    pub const I_AM: u8 = 0;
    pub const I_HAVE: u8 = 1;
    pub const WHO_HAS: u8 = 7;
    pub const WHO_IS: u8 = 8;
}

/// Property identifiers (clause 21, BACnetPropertyIdentifier) the inventory reads.
pub mod property {
    pub const APPLICATION_SOFTWARE_VERSION: u32 = 12;
    pub const DESCRIPTION: u32 = 28;
    pub const FIRMWARE_REVISION: u32 = 44;
    pub const LOCATION: u32 = 58;
    pub const MODEL_NAME: u32 = 70;
    pub const OBJECT_IDENTIFIER: u32 = 75;
    pub const OBJECT_NAME: u32 = 77;
    pub const VENDOR_IDENTIFIER: u32 = 120;
    pub const VENDOR_NAME: u32 = 121;
}

/// Names of confirmed services (Wireshark `bacapp.confirmed_service`).
pub fn confirmed_service_name(code: u8) -> Option<&'static str> {
    const NAMES: [&str; 33] = [
        "acknowledgeAlarm",
        "confirmedCOVNotification",
        "confirmedEventNotification",
        "getAlarmSummary",
        "getEnrollmentSummary",
        "subscribeCOV",
        "atomicReadFile",
        "atomicWriteFile",
        "addListElement",
        "removeListElement",
        "createObject",
        "deleteObject",
        "readProperty",
        "readPropertyConditional",
        "readPropertyMultiple",
        "writeProperty",
        "writePropertyMultiple",
        "deviceCommunicationControl",
        "confirmedPrivateTransfer",
        "confirmedTextMessage",
        "reinitializeDevice",
        "vtOpen",
        "vtClose",
        "vtData",
        "authenticate",
        "requestKey",
        "readRange",
        "lifeSafetyOperation",
        "subscribeCOVProperty",
        "getEventInformation",
        "subscribeCOVPropertyMultiple",
        "confirmedCOVNotificationMultiple",
        "confirmedAuditNotification",
    ];
    NAMES.get(usize::from(code)).copied()
}

/// Names of unconfirmed services (Wireshark `bacapp.unconfirmed_service`).
pub fn unconfirmed_service_name(code: u8) -> Option<&'static str> {
    const NAMES: [&str; 14] = [
        "i-Am",
        "i-Have",
        "unconfirmedCOVNotification",
        "unconfirmedEventNotification",
        "unconfirmedPrivateTransfer",
        "unconfirmedTextMessage",
        "timeSynchronization",
        "who-Has",
        "who-Is",
        "utcTimeSynchronization",
        "writeGroup",
        "unconfirmedCOVNotificationMultiple",
        "unconfirmedAuditNotification",
        "who-Am-I",
    ];
    NAMES.get(usize::from(code)).copied()
}

/// What a BACnet request does, for detections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    Read,
    /// WriteProperty(Multiple), and the list/object services that change a device's
    /// configuration the same way (Add/RemoveListElement, Create/DeleteObject).
    Write,
    /// DeviceCommunicationControl and ReinitializeDevice.
    DeviceControl,
    /// AtomicReadFile / AtomicWriteFile.
    FileTransfer,
    /// Who-Is, Who-Has.
    Discovery,
    Other,
}

/// Classifies a confirmed service choice.
pub fn confirmed_service_kind(code: u8) -> ServiceKind {
    use confirmed::*;
    match code {
        READ_PROPERTY | READ_PROPERTY_CONDITIONAL | READ_PROPERTY_MULTIPLE | READ_RANGE => {
            ServiceKind::Read
        }
        WRITE_PROPERTY
        | WRITE_PROPERTY_MULTIPLE
        | ADD_LIST_ELEMENT
        | REMOVE_LIST_ELEMENT
        | CREATE_OBJECT
        | DELETE_OBJECT => ServiceKind::Write,
        DEVICE_COMMUNICATION_CONTROL | REINITIALIZE_DEVICE => ServiceKind::DeviceControl,
        ATOMIC_READ_FILE | ATOMIC_WRITE_FILE => ServiceKind::FileTransfer,
        _ => ServiceKind::Other,
    }
}

/// Classifies an unconfirmed service choice.
pub fn unconfirmed_service_kind(code: u8) -> ServiceKind {
    match code {
        unconfirmed::WHO_IS | unconfirmed::WHO_HAS => ServiceKind::Discovery,
        _ => ServiceKind::Other,
    }
}

/// An APDU (clause 20.1).
#[derive(Clone, Copy, Debug)]
pub struct Apdu<'a> {
    buf: &'a [u8],
}

impl<'a> Apdu<'a> {
    /// Validates the fixed header of this APDU type (with the sequence number and
    /// window size of a segmented message).
    pub fn new_checked(buf: &'a [u8]) -> Result<Apdu<'a>, Error> {
        let have = buf.len();
        let Some(&first) = buf.first() else {
            return Err(Error::Truncated { need: 1, have });
        };
        let need = Apdu::header_len_for(first);
        if have < need {
            return Err(Error::Truncated { need, have });
        }
        Ok(Apdu { buf })
    }

    /// Header length up to and including the service choice / reason.
    fn header_len_for(first: u8) -> usize {
        let segmented = first & pdu_flag::SEGMENTED != 0;
        match ApduType::from(first >> 4) {
            // type, max segs/APDU, invoke id, [seq, window], service choice.
            ApduType::ConfirmedRequest => 4 + if segmented { 2 } else { 0 },
            ApduType::UnconfirmedRequest => 2,
            ApduType::SimpleAck | ApduType::Error | ApduType::Reject | ApduType::Abort => 3,
            ApduType::ComplexAck => 3 + if segmented { 2 } else { 0 },
            ApduType::SegmentAck => 4,
            ApduType::Unknown(_) => 1,
        }
    }

    fn first(&self) -> u8 {
        self.buf.first().copied().unwrap_or(0)
    }

    fn byte(&self, at: usize) -> Option<u8> {
        self.buf.get(at).copied()
    }

    /// `bacapp.type`.
    pub fn apdu_type(&self) -> ApduType {
        ApduType::from(self.first() >> 4)
    }

    /// `bacapp.segmented_request` of confirmed requests and complex ACKs.
    pub fn segmented(&self) -> bool {
        matches!(
            self.apdu_type(),
            ApduType::ConfirmedRequest | ApduType::ComplexAck
        ) && self.first() & pdu_flag::SEGMENTED != 0
    }

    /// `bacapp.more_segments`.
    pub fn more_follows(&self) -> bool {
        self.segmented() && self.first() & pdu_flag::MORE_FOLLOWS != 0
    }

    /// `bacapp.SA` of a confirmed request.
    pub fn segmented_response_accepted(&self) -> bool {
        self.apdu_type() == ApduType::ConfirmedRequest
            && self.first() & pdu_flag::SEGMENTED_RESPONSE_ACCEPTED != 0
    }

    /// `bacapp.max_adpu_size` code of a confirmed request (clause 20.1.2.5).
    pub fn max_apdu_code(&self) -> Option<u8> {
        (self.apdu_type() == ApduType::ConfirmedRequest).then(|| self.byte(1).unwrap_or(0) & 0x0F)
    }

    /// `bacapp.invoke_id`.
    pub fn invoke_id(&self) -> Option<u8> {
        match self.apdu_type() {
            ApduType::ConfirmedRequest => self.byte(2),
            ApduType::UnconfirmedRequest | ApduType::Unknown(_) => None,
            _ => self.byte(1),
        }
    }

    fn sequence_at(&self) -> Option<usize> {
        match self.apdu_type() {
            ApduType::ConfirmedRequest if self.segmented() => Some(3),
            ApduType::ComplexAck if self.segmented() => Some(2),
            ApduType::SegmentAck => Some(2),
            _ => None,
        }
    }

    /// `bacapp.sequence_number` of a segment or Segment-ACK.
    pub fn sequence_number(&self) -> Option<u8> {
        self.byte(self.sequence_at()?)
    }

    /// `bacapp.window_size`: proposed (segment) or actual (Segment-ACK).
    pub fn window_size(&self) -> Option<u8> {
        self.byte(self.sequence_at()? + 1)
    }

    /// `bacapp.NAK` of a Segment-ACK.
    pub fn negative_ack(&self) -> bool {
        self.apdu_type() == ApduType::SegmentAck && self.first() & pdu_flag::NEGATIVE_ACK != 0
    }

    /// `bacapp.SRV`: sent by the server (Segment-ACK, Abort).
    pub fn sent_by_server(&self) -> bool {
        matches!(self.apdu_type(), ApduType::SegmentAck | ApduType::Abort)
            && self.first() & pdu_flag::SERVER != 0
    }

    fn service_at(&self) -> Option<usize> {
        match self.apdu_type() {
            ApduType::ConfirmedRequest => Some(if self.segmented() { 5 } else { 3 }),
            ApduType::UnconfirmedRequest => Some(1),
            ApduType::SimpleAck | ApduType::Error => Some(2),
            ApduType::ComplexAck => Some(if self.segmented() { 4 } else { 2 }),
            _ => None,
        }
    }

    /// The service (ACK / error) choice: confirmed for types 0, 2, 3, 5, unconfirmed
    /// for type 1.
    pub fn service_choice(&self) -> Option<u8> {
        self.byte(self.service_at()?)
    }

    /// `bacapp.confirmed_service`.
    pub fn confirmed_service(&self) -> Option<u8> {
        match self.apdu_type() {
            ApduType::UnconfirmedRequest => None,
            _ => self.service_choice(),
        }
    }

    /// `bacapp.unconfirmed_service`.
    pub fn unconfirmed_service(&self) -> Option<u8> {
        match self.apdu_type() {
            ApduType::UnconfirmedRequest => self.service_choice(),
            _ => None,
        }
    }

    /// Service parameters after the service choice (for a segment: this segment's
    /// part of them).
    pub fn service_data(&self) -> &'a [u8] {
        match self.service_at() {
            Some(at) => self.buf.get(at + 1..).unwrap_or(&[]),
            None => &[],
        }
    }

    /// Whether the service data starts the service parameters (not a later segment).
    fn data_starts_service(&self) -> bool {
        !self.segmented() || self.sequence_number() == Some(0)
    }

    /// `bacapp.reject_reason`.
    pub fn reject_reason(&self) -> Option<u8> {
        (self.apdu_type() == ApduType::Reject)
            .then(|| self.byte(2))
            .flatten()
    }

    /// `bacapp.abort_reason`.
    pub fn abort_reason(&self) -> Option<u8> {
        (self.apdu_type() == ApduType::Abort)
            .then(|| self.byte(2))
            .flatten()
    }

    /// Error class and code of an Error PDU (`bacapp.error_class`,
    /// `bacapp.error_code`): the first two enumerated application tags, also when a
    /// service wraps them in a context tag (clause 21, e.g. CreateObject-Error).
    pub fn error(&self) -> Option<(u32, u32)> {
        if self.apdu_type() != ApduType::Error {
            return None;
        }
        let mut enumerated = Tags::new(self.service_data()).filter_map(|tag| {
            (tag.is_application(app_tag::ENUMERATED))
                .then(|| tag.unsigned())
                .flatten()
        });
        Some((enumerated.next()?, enumerated.next()?))
    }

    /// Classification of a request (confirmed or unconfirmed).
    pub fn kind(&self) -> Option<ServiceKind> {
        match self.apdu_type() {
            ApduType::ConfirmedRequest => self.service_choice().map(confirmed_service_kind),
            ApduType::UnconfirmedRequest => self.service_choice().map(unconfirmed_service_kind),
            _ => None,
        }
    }

    /// I-Am parameters (clause 16.10).
    pub fn i_am(&self) -> Option<IAm> {
        if self.unconfirmed_service() != Some(unconfirmed::I_AM) {
            return None;
        }
        let mut tags = Tags::new(self.service_data());
        let device = tags
            .next()?
            .application(app_tag::OBJECT_IDENTIFIER)?
            .object_id()?;
        let max_apdu = tags.next()?.application(app_tag::UNSIGNED)?.unsigned()?;
        let segmentation = tags.next()?.application(app_tag::ENUMERATED)?.unsigned()?;
        let vendor_id = tags.next()?.application(app_tag::UNSIGNED)?.unsigned()?;
        Some(IAm {
            device,
            max_apdu,
            segmentation,
            vendor_id,
        })
    }

    fn confirmed_request(&self, service: u8) -> Option<Tags<'a>> {
        (self.apdu_type() == ApduType::ConfirmedRequest
            && self.service_choice() == Some(service)
            && self.data_starts_service())
        .then(|| Tags::new(self.service_data()))
    }

    /// DeviceCommunicationControl request (clause 16.1): `[0]` time duration
    /// (optional), `[1]` enable-disable, `[2]` password (optional).
    pub fn device_communication_control(&self) -> Option<DeviceCommunicationControl> {
        let mut tags = self.confirmed_request(confirmed::DEVICE_COMMUNICATION_CONTROL)?;
        let mut duration = None;
        let mut tag = tags.next()?;
        if tag.is_context(0) {
            duration = tag.unsigned();
            tag = tags.next()?;
        }
        let enable_disable = tag.context(1)?.unsigned()?;
        let password_present = tags.next().is_some_and(|tag| tag.is_context(2));
        Some(DeviceCommunicationControl {
            duration_minutes: duration,
            enable_disable,
            password_present,
        })
    }

    /// ReinitializeDevice request (clause 16.4): `[0]` reinitialized state, `[1]`
    /// password (optional).
    pub fn reinitialize_device(&self) -> Option<ReinitializeDevice> {
        let mut tags = self.confirmed_request(confirmed::REINITIALIZE_DEVICE)?;
        let state = tags.next()?.context(0)?.unsigned()?;
        let password_present = tags.next().is_some_and(|tag| tag.is_context(1));
        Some(ReinitializeDevice {
            state,
            password_present,
        })
    }

    /// Property results of a ReadProperty or ReadPropertyMultiple ComplexACK (the
    /// first segment only, when segmented: later segments do not start at a tag).
    pub fn property_results(&self) -> Option<PropertyResults<'a>> {
        if self.apdu_type() != ApduType::ComplexAck || !self.data_starts_service() {
            return None;
        }
        let multiple = match self.service_choice()? {
            confirmed::READ_PROPERTY => false,
            confirmed::READ_PROPERTY_MULTIPLE => true,
            _ => return None,
        };
        Some(PropertyResults {
            tags: Tags::new(self.service_data()),
            multiple,
            object: None,
            done: false,
            clean_end: false,
        })
    }

    /// The character-string values of vendor-name, model-name, firmware-revision and
    /// application-software-version in a ReadProperty(Multiple) ACK.
    pub fn identity_strings(&self) -> impl Iterator<Item = IdentityString<'a>> {
        self.property_results()
            .into_iter()
            .flatten()
            .filter(|result| {
                matches!(
                    result.property,
                    property::VENDOR_NAME
                        | property::MODEL_NAME
                        | property::FIRMWARE_REVISION
                        | property::APPLICATION_SOFTWARE_VERSION
                )
            })
            .filter_map(|result| {
                let (charset, text) = result.value()?.character_string()?;
                Some(IdentityString {
                    object: result.object,
                    property: result.property,
                    charset,
                    text,
                })
            })
    }
}

/// I-Am parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IAm {
    pub device: ObjectId,
    /// maxAPDULengthAccepted.
    pub max_apdu: u32,
    /// segmentationSupported (0 both, 1 transmit, 2 receive, 3 none).
    pub segmentation: u32,
    /// vendorID (ASHRAE-assigned).
    pub vendor_id: u32,
}

/// DeviceCommunicationControl parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCommunicationControl {
    pub duration_minutes: Option<u32>,
    /// 0 enable, 1 disable, 2 disable-initiation.
    pub enable_disable: u32,
    pub password_present: bool,
}

/// ReinitializeDevice parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReinitializeDevice {
    /// 0 coldstart, 1 warmstart, 2 startbackup, 3 endbackup, 4 startrestore,
    /// 5 endrestore, 6 abortrestore, 7 activate-changes.
    pub state: u32,
    pub password_present: bool,
}

/// A string property the inventory keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityString<'a> {
    pub object: ObjectId,
    pub property: u32,
    /// Character set (clause 20.2.9: 0 UTF-8, 4 UCS-2, 5 ISO 8859-1, ...).
    pub charset: u8,
    pub text: &'a [u8],
}

/// A BACnet object identifier (clause 20.2.14): 10-bit type, 22-bit instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    pub object_type: u16,
    pub instance: u32,
}

impl ObjectId {
    pub const DEVICE: u16 = 8;

    pub fn from_u32(raw: u32) -> ObjectId {
        ObjectId {
            object_type: (raw >> 22) as u16,
            instance: raw & 0x003F_FFFF,
        }
    }
}

/// Application tag numbers (clause 20.2.1.4).
pub mod app_tag {
    pub const NULL: u8 = 0;
    pub const BOOLEAN: u8 = 1;
    pub const UNSIGNED: u8 = 2;
    pub const SIGNED: u8 = 3;
    pub const REAL: u8 = 4;
    pub const DOUBLE: u8 = 5;
    pub const OCTET_STRING: u8 = 6;
    pub const CHARACTER_STRING: u8 = 7;
    pub const BIT_STRING: u8 = 8;
    pub const ENUMERATED: u8 = 9;
    pub const DATE: u8 = 10;
    pub const TIME: u8 = 11;
    pub const OBJECT_IDENTIFIER: u8 = 12;
}

/// The shape of a tag (clause 20.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagBody<'a> {
    /// A primitive value's content octets (empty for an application Boolean, whose
    /// value is in the length/value/type field).
    Value(&'a [u8]),
    /// Opening tag of a constructed context value.
    Opening,
    /// Closing tag.
    Closing,
}

/// One BACnet tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag<'a> {
    pub number: u8,
    /// Context-specific (class bit set) rather than application.
    pub context: bool,
    /// The raw length/value/type bits (the value of an application Boolean).
    pub lvt: u8,
    pub body: TagBody<'a>,
}

impl<'a> Tag<'a> {
    pub fn is_application(&self, number: u8) -> bool {
        !self.context && self.number == number
    }

    /// A primitive context tag with this number.
    pub fn is_context(&self, number: u8) -> bool {
        self.context && self.number == number && matches!(self.body, TagBody::Value(_))
    }

    pub fn is_opening(&self, number: u8) -> bool {
        self.context && self.number == number && self.body == TagBody::Opening
    }

    pub fn is_closing(&self, number: u8) -> bool {
        self.context && self.number == number && self.body == TagBody::Closing
    }

    /// This tag if it is the application tag `number`.
    pub fn application(self, number: u8) -> Option<Tag<'a>> {
        self.is_application(number).then_some(self)
    }

    /// This tag if it is the primitive context tag `number`.
    pub fn context(self, number: u8) -> Option<Tag<'a>> {
        self.is_context(number).then_some(self)
    }

    /// Content octets of a primitive tag.
    pub fn content(&self) -> Option<&'a [u8]> {
        match self.body {
            TagBody::Value(content) => Some(content),
            _ => None,
        }
    }

    /// Unsigned or enumerated value of 1 to 4 octets, big endian (clause 20.2.4).
    pub fn unsigned(&self) -> Option<u32> {
        let content = self.content()?;
        if content.is_empty() || content.len() > 4 {
            return None;
        }
        Some(content.iter().fold(0, |acc, &b| (acc << 8) | u32::from(b)))
    }

    /// Object identifier (4 octets).
    pub fn object_id(&self) -> Option<ObjectId> {
        match self.content()? {
            &[a, b, c, d] => Some(ObjectId::from_u32(u32::from_be_bytes([a, b, c, d]))),
            _ => None,
        }
    }

    /// Character string (application tag 7): charset byte and the encoded text.
    pub fn character_string(&self) -> Option<(u8, &'a [u8])> {
        if !self.is_application(app_tag::CHARACTER_STRING) {
            return None;
        }
        let (&charset, text) = self.content()?.split_first()?;
        Some((charset, text))
    }
}

/// A reader of consecutive tags over a borrowed slice. Iteration stops at the first
/// tag whose header or content does not fit, and [`Tags::malformed`] then says so.
#[derive(Clone, Debug)]
pub struct Tags<'a> {
    rest: &'a [u8],
    malformed: bool,
}

impl<'a> Tags<'a> {
    pub fn new(buf: &'a [u8]) -> Tags<'a> {
        Tags {
            rest: buf,
            malformed: false,
        }
    }

    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// The bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// Parses one tag at the front of `buf`: the tag and its total size.
    fn parse(buf: &'a [u8]) -> Option<(Tag<'a>, usize)> {
        let &initial = buf.first()?;
        let context = initial & 0x08 != 0;
        let lvt = initial & 0x07;
        let mut at = 1;
        let mut number = initial >> 4;
        if number == 0x0F {
            // Extended tag number (clause 20.2.1.2).
            number = *buf.get(at)?;
            at += 1;
        }
        if context && lvt == 6 {
            return Some((
                Tag {
                    number,
                    context,
                    lvt,
                    body: TagBody::Opening,
                },
                at,
            ));
        }
        if context && lvt == 7 {
            return Some((
                Tag {
                    number,
                    context,
                    lvt,
                    body: TagBody::Closing,
                },
                at,
            ));
        }
        if !context && number == app_tag::BOOLEAN {
            return Some((
                Tag {
                    number,
                    context,
                    lvt,
                    body: TagBody::Value(&[]),
                },
                at,
            ));
        }
        let len = match lvt {
            0..=4 => usize::from(lvt),
            5 => {
                // Extended length (clause 20.2.1.3.1).
                let first = *buf.get(at)?;
                at += 1;
                match first {
                    0..=253 => usize::from(first),
                    254 => {
                        let len = be16(buf, at)?;
                        at += 2;
                        usize::from(len)
                    }
                    _ => {
                        let bytes = buf.get(at..at + 4)?;
                        at += 4;
                        bytes.iter().fold(0usize, |acc, &b| {
                            acc.saturating_mul(256).saturating_add(usize::from(b))
                        })
                    }
                }
            }
            // Application tags cannot be opening/closing.
            _ => return None,
        };
        let end = at.checked_add(len)?;
        let content = buf.get(at..end)?;
        Some((
            Tag {
                number,
                context,
                lvt,
                body: TagBody::Value(content),
            },
            end,
        ))
    }

    /// The next tag without consuming it.
    pub fn peek(&self) -> Option<Tag<'a>> {
        Self::parse(self.rest).map(|(tag, _)| tag)
    }

    /// After an opening tag `number`: the bytes up to the matching closing tag, which
    /// is consumed. `None` (and malformed) when it is missing.
    pub fn constructed(&mut self, number: u8) -> Option<&'a [u8]> {
        let start = self.rest;
        let mut depth = 0usize;
        loop {
            let before = self.rest;
            let Some(tag) = self.next() else {
                // The closing tag is missing: the value runs past the data.
                self.malformed = true;
                return None;
            };
            match tag.body {
                TagBody::Opening => depth += 1,
                TagBody::Closing if depth == 0 => {
                    if tag.number != number {
                        self.malformed = true;
                        self.rest = &[];
                        return None;
                    }
                    let used = start.len() - before.len();
                    return start.get(..used);
                }
                TagBody::Closing => depth -= 1,
                TagBody::Value(_) => {}
            }
        }
    }
}

impl<'a> Iterator for Tags<'a> {
    type Item = Tag<'a>;

    fn next(&mut self) -> Option<Tag<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        match Self::parse(self.rest) {
            Some((tag, size)) => {
                self.rest = self.rest.get(size..).unwrap_or(&[]);
                Some(tag)
            }
            None => {
                self.malformed = true;
                self.rest = &[];
                None
            }
        }
    }
}

/// A property value or a property access error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyOutcome<'a> {
    /// The encoded application tags of the value.
    Value(&'a [u8]),
    /// Error class and code (ReadPropertyMultiple `[5]` propertyAccessError).
    Error { class: u32, code: u32 },
}

/// One property of a ReadProperty(Multiple) ACK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PropertyResult<'a> {
    pub object: ObjectId,
    pub property: u32,
    pub array_index: Option<u32>,
    pub outcome: PropertyOutcome<'a>,
}

impl<'a> PropertyResult<'a> {
    /// The first tag of the value.
    pub fn value(&self) -> Option<Tag<'a>> {
        match self.outcome {
            PropertyOutcome::Value(bytes) => Tags::new(bytes).next(),
            PropertyOutcome::Error { .. } => None,
        }
    }
}

/// Iterator over the results of a ReadProperty-ACK (clause 15.5.1.3: `[0]` object,
/// `[1]` property, `[2]` index, `[3]` value) or ReadPropertyMultiple-ACK (clause
/// 15.7.1.3: per object `[0]` object and `[1]` list of `[2]` property, `[3]` index,
/// `[4]` value or `[5]` error). Ends at the first tag out of place.
#[derive(Clone, Debug)]
pub struct PropertyResults<'a> {
    tags: Tags<'a>,
    multiple: bool,
    object: Option<ObjectId>,
    done: bool,
    /// The data ended at a boundary between results.
    clean_end: bool,
}

impl<'a> PropertyResults<'a> {
    /// Whether the walk stopped at a malformed or misplaced tag.
    pub fn malformed(&self) -> bool {
        self.tags.malformed()
    }

    fn fail(&mut self) -> Option<PropertyResult<'a>> {
        self.done = true;
        if !self.clean_end {
            self.tags.malformed = true;
        }
        None
    }

    fn read_property(&mut self) -> Option<PropertyResult<'a>> {
        self.done = true;
        let object = self.tags.next()?.context(0)?.object_id()?;
        let property = self.tags.next()?.context(1)?.unsigned()?;
        let mut tag = self.tags.next()?;
        let mut array_index = None;
        if tag.is_context(2) {
            array_index = tag.unsigned();
            tag = self.tags.next()?;
        }
        if !tag.is_opening(3) {
            return None;
        }
        let value = self.tags.constructed(3)?;
        Some(PropertyResult {
            object,
            property,
            array_index,
            outcome: PropertyOutcome::Value(value),
        })
    }

    fn read_property_multiple(&mut self) -> Option<PropertyResult<'a>> {
        loop {
            let Some(object) = self.object else {
                if self.tags.remaining().is_empty() {
                    self.clean_end = true;
                    return None;
                }
                let object = self.tags.next()?.context(0)?.object_id()?;
                if !self.tags.next()?.is_opening(1) {
                    return None;
                }
                self.object = Some(object);
                continue;
            };
            let tag = self.tags.next()?;
            if tag.is_closing(1) {
                self.object = None;
                continue;
            }
            let property = tag.context(2)?.unsigned()?;
            let mut tag = self.tags.next()?;
            let mut array_index = None;
            if tag.is_context(3) {
                array_index = tag.unsigned();
                tag = self.tags.next()?;
            }
            let outcome = if tag.is_opening(4) {
                PropertyOutcome::Value(self.tags.constructed(4)?)
            } else if tag.is_opening(5) {
                let error = self.tags.constructed(5)?;
                let mut enumerated = Tags::new(error)
                    .filter_map(|tag| tag.application(app_tag::ENUMERATED)?.unsigned());
                PropertyOutcome::Error {
                    class: enumerated.next()?,
                    code: enumerated.next()?,
                }
            } else {
                return None;
            };
            return Some(PropertyResult {
                object,
                property,
                array_index,
                outcome,
            });
        }
    }
}

impl<'a> Iterator for PropertyResults<'a> {
    type Item = PropertyResult<'a>;

    fn next(&mut self) -> Option<PropertyResult<'a>> {
        if self.done {
            return None;
        }
        let result = if self.multiple {
            self.read_property_multiple()
        } else {
            self.read_property()
        };
        match result {
            Some(result) => Some(result),
            None => self.fail(),
        }
    }
}

/// Parses a whole BACnet/IP datagram down to the APDU, the common path for callers.
pub fn apdu_of(payload: &[u8]) -> Option<Apdu<'_>> {
    let bvlc = Bvlc::new_checked(payload).ok()?;
    let npdu = Npdu::new_checked(bvlc.npdu()?).ok()?;
    npdu.apdu()?.ok()
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dissect::cip::tests::hex;

    // bacnet-iam-readproperty-example.pcap frame 74: I-Am from device 721.
    const I_AM: &str = "810a001401001000c4020002d12204009103210f";
    // Frame 72: Who-Is, global broadcast with DNET 0xFFFF and hop count 255.
    const WHO_IS: &str = "810b000c0120ffff00ff1008";
    // Frame 137: ReadProperty-ACK model-name "HIY-054".
    const RP_ACK_MODEL: &str = "810a001c010030020c0c020001f519463e7508004849592d3035343f";
    // Frame 145: ReadProperty-ACK application-software-version "0.5.7".
    const RP_ACK_APP_VERSION: &str = "810a001a010030040c0c020001f5190c3e750600302e352e373f";
    // Frame 572: ReinitializeDevice abortrestore (6) with password "Delcatty70".
    const REINIT: &str = "810a001101040005011409061d0b0044656c63617474793730";
    // Frame 573: Error for ReinitializeDevice, security (5) / password-failure (26).
    const ERROR: &str = "810a001101045001149105911a";
    // bacnet-schedule-rpm-error.pcapng frame 2: RPM-ACK with error 2/32 at the end.
    const RPM_ACK: &str = "810a0083010030080e0c044000581e294b4ec4044000584f294d4e74003132334f294f4e91114f29554e004f291c4e74003132334f29204ea4720101ffa4730101ff4f297b4e0e0f0e0f0e0f0e0f0e0f0e0f0e0f4f29264e4f29ae4e004f29364e4f29584e210a4f296f4e8204004f29674e91004f29514e104f29a85e910291205f1f";
    // bacnet-services-segmented.pcap frame 279 (first 40 bytes): segmented RPM-ACK.
    const SEGMENTED_ACK: &str =
        "810a002801080003016c3c8800100e0c000008351e29554e44425c00004f1f0c000008361e29554e";
    // Frame 280: Segment-ACK from the client.
    const SEGMENT_ACK: &str = "810a000f01200003016cff40880010";
    // Frames 279 (490 bytes) and 281, whole: a ReadPropertyMultiple-ACK (invoke 136)
    // of present-value for 32 analog objects in two segments; frame 282 acks the
    // second segment.
    const SEGMENTED_ACK_0: &str = "810a01ea01080003016c3c8800100e0c000008351e29554e44425c00004f1f0c000008361e29554e44425c00004f1f0c000008371e29554e44425c00004f1f0c000008381e29555e9101911f5f1f0c000008391e29555e9101911f5f1f0c0000083a1e29555e9101911f5f1f0c0000083b1e29555e9101911f5f1f0c0000083c1e29555e9101911f5f1f0c0000083d1e29555e9101911f5f1f0c0000083e1e29554e44000000004f1f0c0000083f1e29554e4442c800004f1f0c000008401e29554e44426800004f1f0c000008411e29554e44425c00004f1f0c000008421e29554e44000000004f1f0c000008431e29554e44422400004f1f0c000008441e29554e44000000004f1f0c000008451e29555e9101911f5f1f0c000008461e29555e9101911f5f1f0c000008471e29555e9101911f5f1f0c000008481e29555e9101911f5f1f0c000008491e29555e9101911f5f1f0c0000084a1e29555e9101911f5f1f0c0000084b1e29555e9101911f5f1f0c0000084c1e29555e9101911f5f1f0c0000084d1e29555e9101911f5f1f0c0000084e1e29555e9101911f5f1f0c0000084f1e29555e9101911f5f1f0c000008501e29555e9101911f5f1f0c000008511e29555e9101911f5f1f0c000008521e29555e9101911f5f1f0c000008531e29555e9101911f5f1f";
    const SEGMENTED_ACK_1: &str = "810a001e01080003016c388801100e0c000008541e29555e9101911f5f1f";
    const SEGMENT_ACK_1: &str = "810a000f01200003016cff40880110";
    // Hand-built per clause 20.1.5 and 15.7.1.3: a ReadPropertyMultiple-ACK (invoke
    // 0x11, not routed) for device 1234 with vendor-name "Acme Controls", model-name
    // "AC-100", firmware-revision "2.1.0" and vendor-identifier 5, in three segments
    // (window 4) that cut "AC-100" after "AC-"; and the same ACK unsegmented.
    const IDENTITY_SEG_0: &str = "810a002e01003c1100040e0c020004d21e29794e750e0041636d6520436f6e74726f6c734f29464e75070041432d";
    const IDENTITY_SEG_1: &str = "810a001501003c1101040e3130304f292c4e750600";
    const IDENTITY_SEG_2: &str = "810a00180100381102040e322e312e304f29784e21054f1f";
    const IDENTITY_WHOLE: &str = "810a0043010030110e0c020004d21e29794e750e0041636d6520436f6e74726f6c734f29464e75070041432d3130304f292c4e750600322e312e304f29784e21054f1f";
    // Hand-built: a segmented WritePropertyMultiple request (invoke 5, SA set, max
    // APDU code 5) in two segments; the service data is opaque here.
    const WPM_SEG_0: &str = "810a000e01000e0505000410aabbcc";
    const WPM_SEG_1: &str = "810a000e01000a0505010410ddeeff";
    // Frame 265: DeviceCommunicationControl, enable-disable = disable (1).
    const DCC: &str = "810a001301240003016cff0203841119012900";
    // bacnet-network-layer-error.pcap frame 23: Network-Number-Is (type 0x13)
    // to a global broadcast.
    const NETWORK_MESSAGE: &str = "810b000e01a0ffff00ff1300000b";
    // Hand-built per clause 20.1.7 / 20.1.8: Reject (invoke 7, reason 9
    // unrecognized-service) and Abort from the server (invoke 7, reason 4
    // segmentation-not-supported); none occurs in the shared captures.
    const REJECT: &str = "810a00090100600709";
    const ABORT: &str = "810a00090100710704";

    fn apdu(bytes: &[u8]) -> Apdu<'_> {
        apdu_of(bytes).unwrap()
    }

    #[test]
    fn i_am() {
        let bytes = hex(I_AM);
        assert!(looks_like(&bytes));
        let bvlc = Bvlc::new_checked(&bytes).unwrap();
        assert_eq!(bvlc.bvlc_type(), 0x81);
        assert_eq!(bvlc.function(), BvlcFunction::OriginalUnicastNpdu);
        assert_eq!(bvlc.length(), 20);
        let npdu = Npdu::new_checked(bvlc.npdu().unwrap()).unwrap();
        assert_eq!(npdu.version(), 1);
        assert_eq!(npdu.control(), 0);
        assert_eq!(npdu.destination(), None);
        let apdu = apdu(&bytes);
        assert_eq!(apdu.apdu_type(), ApduType::UnconfirmedRequest);
        assert_eq!(apdu.unconfirmed_service(), Some(unconfirmed::I_AM));
        assert_eq!(apdu.invoke_id(), None);
        assert_eq!(
            apdu.i_am(),
            Some(IAm {
                device: ObjectId {
                    object_type: ObjectId::DEVICE,
                    instance: 721
                },
                max_apdu: 1024,
                segmentation: 3,
                vendor_id: 15,
            })
        );
        assert_eq!(apdu.kind(), Some(ServiceKind::Other));
    }

    #[test]
    fn who_is_global_broadcast() {
        let bytes = hex(WHO_IS);
        let bvlc = Bvlc::new_checked(&bytes).unwrap();
        assert_eq!(bvlc.function(), BvlcFunction::OriginalBroadcastNpdu);
        let npdu = Npdu::new_checked(bvlc.npdu().unwrap()).unwrap();
        assert_eq!(npdu.destination(), Some((0xFFFF, &[][..])));
        assert_eq!(npdu.hop_count(), Some(255));
        assert_eq!(npdu.source(), None);
        let apdu = npdu.apdu().unwrap().unwrap();
        assert_eq!(apdu.unconfirmed_service(), Some(unconfirmed::WHO_IS));
        assert_eq!(apdu.kind(), Some(ServiceKind::Discovery));
        assert_eq!(unconfirmed_service_name(8), Some("who-Is"));
    }

    #[test]
    fn read_property_ack_strings() {
        let bytes = hex(RP_ACK_MODEL);
        let apdu = apdu(&bytes);
        assert_eq!(apdu.apdu_type(), ApduType::ComplexAck);
        assert_eq!(apdu.invoke_id(), Some(2));
        assert_eq!(apdu.confirmed_service(), Some(confirmed::READ_PROPERTY));
        let strings: Vec<_> = apdu.identity_strings().collect();
        assert_eq!(
            strings,
            [IdentityString {
                object: ObjectId {
                    object_type: 8,
                    instance: 501
                },
                property: property::MODEL_NAME,
                charset: 0,
                text: b"HIY-054",
            }]
        );
        let bytes = hex(RP_ACK_APP_VERSION);
        let strings: Vec<_> = apdu_of(&bytes).unwrap().identity_strings().collect();
        assert_eq!(strings.len(), 1);
        assert_eq!(strings[0].property, property::APPLICATION_SOFTWARE_VERSION);
        assert_eq!(strings[0].text, b"0.5.7");
    }

    #[test]
    fn read_property_multiple_ack_with_error() {
        let bytes = hex(RPM_ACK);
        let apdu = apdu(&bytes);
        assert_eq!(
            apdu.confirmed_service(),
            Some(confirmed::READ_PROPERTY_MULTIPLE)
        );
        let mut results = apdu.property_results().unwrap();
        let all: Vec<_> = results.by_ref().collect();
        assert!(!results.malformed());
        assert_eq!(all.len(), 15);
        assert!(all.iter().all(|r| r.object
            == ObjectId {
                object_type: 17,
                instance: 88
            }));
        assert_eq!(all[0].property, property::OBJECT_IDENTIFIER);
        assert_eq!(all[1].property, property::OBJECT_NAME);
        assert_eq!(
            all[1].value().unwrap().character_string(),
            Some((0, &b"123"[..]))
        );
        let last = all.last().unwrap();
        assert_eq!(last.property, 168);
        assert_eq!(last.outcome, PropertyOutcome::Error { class: 2, code: 32 });
        // No identity strings in a schedule object.
        assert_eq!(apdu.identity_strings().count(), 0);
    }

    #[test]
    fn segmented_complex_ack() {
        let bytes = hex(SEGMENTED_ACK);
        // The first 40 bytes of a 490-byte frame, BVLC length patched to 40.
        let bvlc = Bvlc::new_checked(&bytes).unwrap();
        assert!(!bvlc.length_mismatch());
        let npdu = Npdu::new_checked(bvlc.npdu().unwrap()).unwrap();
        assert_eq!(npdu.source(), Some((3, &[0x6c][..])));
        assert_eq!(npdu.destination(), None);
        let apdu = npdu.apdu().unwrap().unwrap();
        assert_eq!(apdu.apdu_type(), ApduType::ComplexAck);
        assert!(apdu.segmented());
        assert!(apdu.more_follows());
        assert_eq!(apdu.invoke_id(), Some(0x88));
        assert_eq!(apdu.sequence_number(), Some(0));
        assert_eq!(apdu.window_size(), Some(16));
        assert_eq!(
            apdu.confirmed_service(),
            Some(confirmed::READ_PROPERTY_MULTIPLE)
        );
        // The first segment is walked as far as it goes.
        let mut results = apdu.property_results().unwrap();
        assert_eq!(results.by_ref().count(), 1);
        assert!(results.malformed());
    }

    #[test]
    fn segment_ack() {
        let bytes = hex(SEGMENT_ACK);
        let apdu = apdu(&bytes);
        assert_eq!(apdu.apdu_type(), ApduType::SegmentAck);
        assert!(!apdu.negative_ack());
        assert!(!apdu.sent_by_server());
        assert_eq!(apdu.invoke_id(), Some(0x88));
        assert_eq!(apdu.sequence_number(), Some(0));
        assert_eq!(apdu.window_size(), Some(16));
        assert_eq!(apdu.service_choice(), None);
    }

    #[test]
    fn reinitialize_and_error() {
        let bytes = hex(REINIT);
        // The BVLC length says 17, the datagram has 25 bytes.
        assert!(Bvlc::new_checked(&bytes).unwrap().length_mismatch());
        let apdu = apdu(&bytes);
        assert_eq!(
            apdu.confirmed_service(),
            Some(confirmed::REINITIALIZE_DEVICE)
        );
        assert_eq!(apdu.kind(), Some(ServiceKind::DeviceControl));
        assert_eq!(
            apdu.reinitialize_device(),
            Some(ReinitializeDevice {
                state: 6,
                password_present: true
            })
        );
        assert_eq!(apdu.max_apdu_code(), Some(5));
        let bytes = hex(ERROR);
        let apdu = apdu_of(&bytes).unwrap();
        assert_eq!(apdu.apdu_type(), ApduType::Error);
        assert_eq!(apdu.invoke_id(), Some(1));
        assert_eq!(
            apdu.confirmed_service(),
            Some(confirmed::REINITIALIZE_DEVICE)
        );
        assert_eq!(apdu.error(), Some((5, 26)));
    }

    #[test]
    fn device_communication_control() {
        let bytes = hex(DCC);
        let apdu = apdu(&bytes);
        assert_eq!(
            apdu.device_communication_control(),
            Some(DeviceCommunicationControl {
                duration_minutes: None,
                enable_disable: 1,
                password_present: true
            })
        );
        assert_eq!(
            confirmed_service_name(17),
            Some("deviceCommunicationControl")
        );
    }

    #[test]
    fn reject_and_abort() {
        let bytes = hex(REJECT);
        let apdu = apdu(&bytes);
        assert_eq!(apdu.apdu_type(), ApduType::Reject);
        assert_eq!(apdu.invoke_id(), Some(7));
        assert_eq!(apdu.reject_reason(), Some(9));
        assert_eq!(apdu.abort_reason(), None);
        let bytes = hex(ABORT);
        let apdu = apdu_of(&bytes).unwrap();
        assert_eq!(apdu.apdu_type(), ApduType::Abort);
        assert!(apdu.sent_by_server());
        assert_eq!(apdu.abort_reason(), Some(4));
    }

    #[test]
    fn network_layer_message() {
        let bytes = hex(NETWORK_MESSAGE);
        let bvlc = Bvlc::new_checked(&bytes).unwrap();
        let npdu = Npdu::new_checked(bvlc.npdu().unwrap()).unwrap();
        assert!(npdu.is_network_message());
        assert_eq!(npdu.network_message_type(), Some(0x13));
        assert_eq!(npdu.vendor_id(), None);
        assert_eq!(npdu.payload(), &[0x00, 0x00, 0x0b][..]);
        assert!(npdu.apdu().is_none());
    }

    #[test]
    fn rejects() {
        assert_eq!(
            Bvlc::new_checked(&[0x81, 0x0a]).unwrap_err(),
            Error::Truncated { need: 4, have: 2 }
        );
        assert_eq!(
            Bvlc::new_checked(&[0x82, 0x0a, 0, 4]).unwrap_err(),
            Error::BadType(0x82)
        );
        assert_eq!(
            Bvlc::new_checked(&[0x81, 0x0a, 0, 3]).unwrap_err(),
            Error::BadLength
        );
        // Forwarded-NPDU needs its 6-byte address.
        assert_eq!(
            Bvlc::new_checked(&[0x81, 0x04, 0, 8, 1, 2, 3, 4]).unwrap_err(),
            Error::Truncated { need: 10, have: 8 }
        );
        assert_eq!(
            Npdu::new_checked(&[2, 0]).unwrap_err(),
            Error::BadVersion(2)
        );
        // DNET announced with DLEN 6 but only 2 address bytes.
        assert_eq!(
            Npdu::new_checked(&[1, 0x20, 0, 5, 6, 1, 2]).unwrap_err(),
            Error::Truncated { need: 11, have: 7 }
        );
        // Confirmed request without its service choice.
        assert_eq!(
            Apdu::new_checked(&[0x00, 0x05, 0x01]).unwrap_err(),
            Error::Truncated { need: 4, have: 3 }
        );
        // Segmented confirmed request needs sequence number and window.
        assert_eq!(
            Apdu::new_checked(&[0x08, 0x05, 0x01, 0x0c]).unwrap_err(),
            Error::Truncated { need: 6, have: 4 }
        );
        assert!(!looks_like(&hex("810a00ff0100")));
        assert!(!looks_like(b"\x81\x0a\x00\x06\x02\x00"));
    }

    #[test]
    fn tag_reader_forms() {
        // Extended tag number 33 context, extended length 254 form, boolean, closing.
        let mut bytes = vec![0xF9, 33, 0x00, 0x75, 254, 0x01, 0x00];
        bytes.extend(std::iter::repeat_n(b'x', 256));
        bytes.extend_from_slice(&[0x11, 0x3F]);
        let mut tags = Tags::new(&bytes);
        let tag = tags.next().unwrap();
        assert_eq!(
            (tag.number, tag.context, tag.unsigned()),
            (33, true, Some(0))
        );
        let tag = tags.next().unwrap();
        assert_eq!(tag.content().unwrap().len(), 256);
        assert_eq!(tag.character_string().unwrap().1.len(), 255);
        let tag = tags.next().unwrap();
        assert_eq!((tag.number, tag.lvt, tag.body), (1, 1, TagBody::Value(&[])));
        assert!(tags.next().unwrap().is_closing(3));
        assert!(tags.next().is_none());
        assert!(!tags.malformed());
        // A length running past the end stops the reader.
        let mut tags = Tags::new(&[0x75, 200, 0]);
        assert!(tags.next().is_none());
        assert!(tags.malformed());
        // 4-byte extended length that overflows is rejected, not wrapped.
        let mut tags = Tags::new(&[0x65, 255, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(tags.next().is_none());
        assert!(tags.malformed());
    }

    /// A worker's outputs for driving [`inspect`] PDU by PDU on one flow.
    mod harness {
        use super::super::inspect;
        use crate::dissect::inspect::{
            AppState, EventSink, FlowInfo, Outputs, PduCtx, ProtocolStats, RecentCache,
        };
        use crate::dissect::{Direction, Protocol};
        use crate::observe::Observation;
        use crate::output::eve::EveRecord;
        use crate::worker::{Delivery, ObservationSink};
        use crossbeam_channel::{unbounded, Receiver};

        pub struct Flow {
            pub info: FlowInfo,
            pub state: AppState,
            pub stats: ProtocolStats,
            pub segments: crate::dissect::reassembly::SegmentPool,
            recent: RecentCache,
            sink: ObservationSink,
            observations: Receiver<crate::observe::Stamped>,
            events: Option<(EventSink, Receiver<EveRecord>)>,
        }

        impl Flow {
            pub fn new(events: bool) -> Flow {
                let (tx, observations) = unbounded();
                Flow {
                    info: FlowInfo {
                        flow_id: 7,
                        client: ("10.0.0.1".parse().unwrap(), 47808),
                        server: ("10.0.0.2".parse().unwrap(), 47808),
                        client_mac: None,
                        server_mac: None,
                        ip_protocol: 17,
                        vlan: 0,
                    },
                    state: AppState::default(),
                    stats: ProtocolStats::default(),
                    segments: crate::dissect::reassembly::SegmentPool::new(2),
                    recent: RecentCache::new(64, 1_000_000_000),
                    sink: ObservationSink::new(tx, Delivery::Block),
                    observations,
                    events: events.then(|| {
                        let (tx, rx) = unbounded();
                        (EventSink::new(tx, Delivery::Block), rx)
                    }),
                }
            }

            pub fn inspect(&mut self, pdu: &[u8], direction: Direction, ts_ns: u64) {
                let mut ctx = PduCtx {
                    dnp3: &mut crate::dissect::dnp3::ReassemblyPool::new(1),
                    segments: &mut self.segments,
                    ts_ns,
                    direction,
                    flow: &self.info,
                    state: &mut self.state,
                    stats: &mut self.stats,
                    out: Outputs {
                        observations: &mut self.sink,
                        recent: &mut self.recent,
                        events: self.events.as_mut().map(|(sink, _)| sink),
                    },
                };
                inspect(pdu, &mut ctx);
            }

            /// Feeds one segment straight to the reassembler; the whole message
            /// when this segment completes it.
            pub fn segment(&mut self, pdu: &[u8], direction: Direction) -> Option<Vec<u8>> {
                let apdu = super::super::apdu_of(pdu)?;
                let mut out = [0u8; crate::dissect::reassembly::SEGMENT_BUFFER_LEN];
                let mut ctx = PduCtx {
                    dnp3: &mut crate::dissect::dnp3::ReassemblyPool::new(1),
                    segments: &mut self.segments,
                    ts_ns: 1,
                    direction,
                    flow: &self.info,
                    state: &mut self.state,
                    stats: &mut self.stats,
                    out: Outputs {
                        observations: &mut self.sink,
                        recent: &mut self.recent,
                        events: None,
                    },
                };
                match super::super::segment(&apdu, &mut ctx, &mut out) {
                    super::super::Reassembly::Complete { len, .. } => Some(out[..len].to_vec()),
                    _ => None,
                }
            }

            pub fn inspect_llc(&mut self, npdu: &[u8]) {
                let mut ctx = PduCtx {
                    dnp3: &mut crate::dissect::dnp3::ReassemblyPool::new(1),
                    segments: &mut self.segments,
                    ts_ns: 1,
                    direction: Direction::Request,
                    flow: &self.info,
                    state: &mut self.state,
                    stats: &mut self.stats,
                    out: Outputs {
                        observations: &mut self.sink,
                        recent: &mut self.recent,
                        events: self.events.as_mut().map(|(sink, _)| sink),
                    },
                };
                super::super::inspect_llc(npdu, &mut ctx);
            }

            pub fn observations(&self) -> Vec<Observation> {
                self.observations
                    .try_iter()
                    .map(|s| s.observation)
                    .collect()
            }

            pub fn events(&self) -> Vec<EveRecord> {
                self.events
                    .as_ref()
                    .map(|(_, rx)| rx.try_iter().collect())
                    .unwrap_or_default()
            }

            pub fn pdus(&self) -> u64 {
                self.stats.pdus[Protocol::Bacnet.index()]
            }
        }
    }

    use crate::dissect::inspect::{BacnetEvent, EventBody};
    use crate::dissect::Direction;
    use crate::observe::{CommandKind, IdentityField, Observation, ProtocolErrorKind};
    use crate::output::eve::EveRecord;
    use harness::Flow;

    fn commands(observations: &[Observation]) -> Vec<(CommandKind, u32)> {
        observations
            .iter()
            .filter_map(|o| match o {
                Observation::Command { kind, code, .. } => Some((*kind, *code)),
                _ => None,
            })
            .collect()
    }

    fn errors(observations: &[Observation]) -> Vec<(ProtocolErrorKind, u32, bool)> {
        observations
            .iter()
            .filter_map(|o| match o {
                Observation::ProtocolError {
                    kind,
                    code,
                    sender_is_server,
                    ..
                } => Some((*kind, *code, *sender_is_server)),
                _ => None,
            })
            .collect()
    }

    fn identities(observations: &[Observation]) -> Vec<(String, IdentityField, String)> {
        observations
            .iter()
            .filter_map(|o| match o {
                Observation::Identity {
                    device,
                    field,
                    value,
                    ..
                } => Some((device.to_string(), *field, value.as_str().to_owned())),
                _ => None,
            })
            .collect()
    }

    fn identity_values(flow: &Flow) -> Vec<(IdentityField, String)> {
        identities(&flow.observations())
            .into_iter()
            .map(|(_, field, value)| (field, value))
            .collect()
    }

    /// What the unsegmented identity ACK reports, in order.
    fn acme_identity() -> Vec<(IdentityField, String)> {
        vec![
            (IdentityField::Vendor, "Acme Controls".to_owned()),
            (IdentityField::Model, "AC-100".to_owned()),
            (IdentityField::Firmware, "2.1.0".to_owned()),
            // vendor-identifier 5, named from the ASHRAE table (tshark 4.0.17).
            (
                IdentityField::Vendor,
                "Johnson Controls, Inc. (5)".to_owned(),
            ),
        ]
    }

    #[test]
    fn segmented_read_property_multiple_ack_yields_identity() {
        let mut whole = Flow::new(false);
        whole.inspect(&hex(IDENTITY_WHOLE), Direction::Response, 1);
        assert_eq!(identity_values(&whole), acme_identity());

        let mut flow = Flow::new(false);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 2);
        assert!(
            flow.observations().is_empty(),
            "nothing before the last segment"
        );
        assert_eq!(flow.segments.in_use(), 1);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 3);
        assert_eq!(identity_values(&flow), acme_identity());
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.segmented.get(1), 3);
        // Per-PDU histograms still count each segment, as tshark does.
        assert_eq!(stats.apdu_type.get(3), 3);
        assert_eq!(stats.confirmed_service.get(14), 3);
        assert_eq!(flow.segments.in_use(), 0);
        assert_eq!(flow.state.segment_slots, [0, 0]);
    }

    #[test]
    fn captured_segmented_ack_reassembles_whole() {
        let mut flow = Flow::new(false);
        let message = flow.segment(&hex(SEGMENTED_ACK_0), Direction::Response);
        assert_eq!(message, None, "more segments follow");
        flow.inspect(&hex(SEGMENT_ACK), Direction::Request, 2);
        let message = flow
            .segment(&hex(SEGMENTED_ACK_1), Direction::Response)
            .unwrap();
        flow.inspect(&hex(SEGMENT_ACK_1), Direction::Request, 4);
        let apdu = Apdu::new_checked(&message).unwrap();
        assert_eq!(apdu.apdu_type(), ApduType::ComplexAck);
        assert!(!apdu.segmented());
        assert_eq!(apdu.invoke_id(), Some(0x88));
        assert_eq!(
            apdu.confirmed_service(),
            Some(confirmed::READ_PROPERTY_MULTIPLE)
        );
        // 31 objects in the first segment and one in the second, walked to a clean
        // end: object 0x854 (present-value 85) is the last.
        let mut results = apdu.property_results().unwrap();
        let all: Vec<_> = results.by_ref().collect();
        assert_eq!(all.len(), 32);
        assert!(!results.malformed());
        assert_eq!(
            all.last().map(|r| (r.object.instance, r.property)),
            Some((0x854, 85))
        );
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.segment_acks, 2);
        assert_eq!(stats.segment_naks, 0);
        assert_eq!(stats.apdu_type.get(4), 2);
        assert_eq!(flow.stats.bacnet.summary()["segment_acks"], 2);
        // The sender is a router's device (NPDU source): no identity is reported.
        assert!(identities(&flow.observations()).is_empty());
    }

    #[test]
    fn segment_acks_and_naks_are_recognised() {
        let mut flow = Flow::new(true);
        let mut nak = hex(SEGMENT_ACK);
        // The APDU follows the 7-byte routed NPDU: set its NAK bit.
        nak[11] |= 0x02;
        flow.inspect(&hex(SEGMENT_ACK), Direction::Request, 1);
        flow.inspect(&nak, Direction::Request, 2);
        assert_eq!(flow.stats.bacnet.segment_acks, 2);
        assert_eq!(flow.stats.bacnet.segment_naks, 1);
        let events = flow.events();
        assert_eq!(events.len(), 2);
        let EveRecord::Protocol(event) = &events[0] else {
            panic!("not a protocol event");
        };
        let EventBody::Bacnet(body) = &event.body else {
            panic!("not BACnet");
        };
        assert_eq!(body.apdu_type, Some(4));
        assert_eq!(body.invoke_id, Some(0x88));
    }

    #[test]
    fn lost_duplicate_and_foreign_segments() {
        // Segment 1 lost: the message is dropped and counted, nothing reported.
        let mut flow = Flow::new(false);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 2);
        assert_eq!(flow.stats.bacnet.reassembly_out_of_sequence, 1);
        assert_eq!(flow.segments.in_use(), 0);
        // A late segment of the dropped message finds none in progress.
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 3);
        assert_eq!(flow.stats.bacnet.segments_unmatched, 1);
        assert_eq!(flow.stats.bacnet.reassembled, 0);
        assert!(flow.observations().is_empty());

        // A retransmitted segment is skipped; the message still completes.
        let mut flow = Flow::new(false);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 2);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 3);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 4);
        assert_eq!(flow.stats.bacnet.segments_duplicate, 1);
        assert_eq!(identity_values(&flow), acme_identity());

        // Another message's first segment abandons the one in progress (counted);
        // segments of the abandoned one no longer match.
        let mut flow = Flow::new(false);
        flow.inspect(&hex(SEGMENTED_ACK_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 2);
        flow.inspect(&hex(SEGMENTED_ACK_1), Direction::Response, 3);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 4);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 5);
        assert_eq!(flow.stats.bacnet.segments_abandoned, 1);
        assert_eq!(flow.stats.bacnet.segments_unmatched, 1);
        assert_eq!(flow.stats.bacnet.reassembled, 1);
        assert_eq!(identity_values(&flow), acme_identity());
    }

    #[test]
    fn over_long_message_is_cut_counted_and_its_prefix_read() {
        let mut flow = Flow::new(false);
        // The whole identity in segment 0, then 7 segments of 1400 filler bytes:
        // past the 8192-byte buffer.
        let mut first = hex(IDENTITY_WHOLE);
        first[6] = 0x3c;
        first.splice(8..8, [0, 4]);
        first[3] = first.len() as u8;
        flow.inspect(&first, Direction::Response, 1);
        for sequence in 1..=7u8 {
            let mut filler = hex(IDENTITY_SEG_1)[..11].to_vec();
            filler[8] = sequence;
            if sequence == 7 {
                filler[6] = 0x38;
            }
            filler.resize(11 + 1400, 0);
            let len = filler.len() as u16;
            filler[2..4].copy_from_slice(&len.to_be_bytes());
            flow.inspect(&filler, Direction::Response, 1 + u64::from(sequence));
        }
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reassembly_overflow, 1);
        assert_eq!(stats.reassembled, 1);
        assert_eq!(stats.summary()["reassembly_overflow"], 1);
        assert_eq!(flow.segments.in_use(), 0);
        assert_eq!(identity_values(&flow), acme_identity());
    }

    #[test]
    fn without_a_free_buffer_the_first_segment_is_read_alone() {
        let mut flow = Flow::new(false);
        flow.segments = crate::dissect::reassembly::SegmentPool::new(0);
        flow.inspect(&hex(IDENTITY_SEG_0), Direction::Response, 1);
        flow.inspect(&hex(IDENTITY_SEG_1), Direction::Response, 2);
        flow.inspect(&hex(IDENTITY_SEG_2), Direction::Response, 3);
        assert_eq!(flow.stats.bacnet.reassembly_pool_exhausted, 1);
        assert_eq!(flow.stats.bacnet.reassembled, 0);
        // "AC-100" is cut by the segment boundary: only vendor-name is whole.
        assert_eq!(
            identity_values(&flow),
            [(IdentityField::Vendor, "Acme Controls".to_owned())]
        );
    }

    #[test]
    fn segmented_confirmed_request_is_one_command_and_reassembled() {
        let mut flow = Flow::new(false);
        let message = flow.segment(&hex(WPM_SEG_0), Direction::Request);
        assert_eq!(message, None);
        let message = flow.segment(&hex(WPM_SEG_1), Direction::Request).unwrap();
        // Unsegmented header: SA kept, max APDU octet kept, invoke 5, service 16.
        assert_eq!(message, hex("02050510aabbccddeeff"));

        let mut flow = Flow::new(false);
        flow.inspect(&hex(WPM_SEG_0), Direction::Request, 1);
        flow.inspect(&hex(WPM_SEG_1), Direction::Request, 2);
        assert_eq!(
            commands(&flow.observations()),
            [(
                CommandKind::Write,
                u32::from(confirmed::WRITE_PROPERTY_MULTIPLE)
            )]
        );
        assert_eq!(flow.stats.bacnet.reassembled, 1);
        assert_eq!(flow.stats.bacnet.confirmed_service.get(16), 2);
    }

    #[test]
    fn reinitialize_restore_then_password_failure() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(REINIT), Direction::Request, 1_000);
        flow.inspect(&hex(ERROR), Direction::Response, 4_000);
        let observations = flow.observations();
        // abortrestore (6) ends a configuration restore: a program load.
        assert_eq!(commands(&observations), vec![(CommandKind::Program, 20)]);
        assert_eq!(
            errors(&observations),
            vec![(ProtocolErrorKind::AuthFailure, (5 << 16) | 26, true)]
        );
        assert_eq!(flow.pdus(), 2);
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.apdu_type.get(0), 1);
        assert_eq!(stats.apdu_type.get(5), 1);
        assert_eq!(stats.confirmed_service.get(20), 2);
        assert_eq!(stats.error_class_code.get(pair_key(5, 26)), 1);
        assert_eq!(stats.bvlc_function.get(0x0a), 2);
        let bacnet = Protocol::Bacnet.index();
        assert_eq!(flow.stats.matched_responses[bacnet], 1);
        assert_eq!(flow.stats.response_time_ns_sum[bacnet], 3_000);
    }

    #[test]
    fn reinitialize_states_and_dcc_kinds() {
        // ReinitializeDevice with only its state (clause 16.4.1.1.1: context tag 0,
        // length 1), invoke 3.
        let reinit = |state: u8| hex(&format!("810a000c01000005031409{state:02x}"));
        let mut flow = Flow::new(false);
        for state in [0u8, 2, 4] {
            flow.inspect(&reinit(state), Direction::Request, u64::from(state));
        }
        flow.inspect(&hex(DCC), Direction::Request, 10);
        assert_eq!(
            commands(&flow.observations()),
            vec![
                (CommandKind::Restart, 20),
                (CommandKind::FileTransfer, 20),
                (CommandKind::Program, 20),
                (CommandKind::DisableCommunication, 17),
            ]
        );
    }

    #[test]
    fn discovery_and_i_am_vendor() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(WHO_IS), Direction::Request, 1);
        flow.inspect(&hex(I_AM), Direction::Response, 2);
        let observations = flow.observations();
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Discovery, 0x108)]
        );
        assert_eq!(
            identities(&observations),
            vec![(
                "10.0.0.2".to_owned(),
                IdentityField::Vendor,
                // ASHRAE vendor 15 per the generated table (tshark 4.0.17).
                "Cornell University (15)".to_owned()
            )]
        );
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.unconfirmed_service.get(8), 1);
        assert_eq!(stats.unconfirmed_service.get(0), 1);
        assert_eq!(stats.bvlc_function.get(0x0b), 1);
    }

    #[test]
    fn read_property_ack_identity_from_its_sender() {
        let mut flow = Flow::new(false);
        // Here the ACKs come from the flow's client: the device is whoever sent them.
        flow.inspect(&hex(RP_ACK_MODEL), Direction::Request, 1);
        flow.inspect(&hex(RP_ACK_APP_VERSION), Direction::Request, 2);
        assert_eq!(
            identities(&flow.observations()),
            vec![
                (
                    "10.0.0.1".to_owned(),
                    IdentityField::Model,
                    "HIY-054".to_owned()
                ),
                (
                    "10.0.0.1".to_owned(),
                    IdentityField::Product,
                    "0.5.7".to_owned()
                ),
            ]
        );
        assert_eq!(flow.stats.bacnet.apdu_type.get(3), 2);
        assert_eq!(flow.stats.bacnet.confirmed_service.get(12), 2);
    }

    #[test]
    fn invoke_ids_match_whichever_side_requests() {
        let mut flow = Flow::new(false);
        // The flow's server requests (invoke 1) and the client answers.
        flow.inspect(&hex(REINIT), Direction::Response, 100);
        // A reply with the same invoke id from the requester itself does not match.
        flow.inspect(&hex(ERROR), Direction::Response, 150);
        assert_eq!(flow.stats.matched_responses[Protocol::Bacnet.index()], 0);
        flow.inspect(&hex(ERROR), Direction::Request, 300);
        assert_eq!(flow.stats.matched_responses[Protocol::Bacnet.index()], 1);
        assert_eq!(
            flow.stats.response_time_ns_sum[Protocol::Bacnet.index()],
            200
        );
    }

    #[test]
    fn rpm_ack_error_counted_not_reported() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(RPM_ACK), Direction::Response, 1);
        assert_eq!(flow.stats.bacnet.error_class_code.get(pair_key(2, 32)), 1);
        assert_eq!(flow.stats.bacnet.confirmed_service.get(14), 1);
        assert!(errors(&flow.observations()).is_empty());
    }

    #[test]
    fn reject_abort_segmented_and_network_messages() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex(REJECT), Direction::Response, 1);
        flow.inspect(&hex(ABORT), Direction::Response, 2);
        flow.inspect(&hex(SEGMENTED_ACK), Direction::Response, 3);
        flow.inspect(&hex(SEGMENT_ACK), Direction::Request, 4);
        flow.inspect(&hex(NETWORK_MESSAGE), Direction::Request, 5);
        assert_eq!(
            errors(&flow.observations()),
            vec![
                (ProtocolErrorKind::Rejected, 0x609, true),
                (ProtocolErrorKind::Rejected, 0x704, true),
            ]
        );
        let stats = &flow.stats.bacnet;
        assert_eq!(stats.reject_reason.get(9), 1);
        assert_eq!(stats.abort_reason.get(4), 1);
        assert_eq!(stats.segmented.get(1), 1);
        assert_eq!(stats.apdu_type.get(4), 1);
        assert_eq!(stats.net_msg_type.get(0x13), 1);
        assert_eq!(flow.pdus(), 5);
        let summary = stats.summary();
        assert_eq!(summary["segmented"]["true"], 1);
        assert_eq!(summary["apdu_type"]["6"], 1);
        assert!(summary.get("error_class_code").is_none());
    }

    #[test]
    fn malformed_bvlc_is_not_counted() {
        let mut flow = Flow::new(false);
        flow.inspect(&hex("820a0004"), Direction::Request, 1);
        assert_eq!(flow.pdus(), 0);
        assert_eq!(flow.stats.malformed[Protocol::Bacnet.index()], 1);
        assert_eq!(
            errors(&flow.observations()),
            vec![(ProtocolErrorKind::Malformed, 0, false)]
        );
    }

    #[test]
    fn events_when_enabled() {
        let mut flow = Flow::new(true);
        flow.inspect(&hex(ERROR), Direction::Response, 1);
        flow.inspect(&hex(NETWORK_MESSAGE), Direction::Request, 2);
        let events = flow.events();
        let bodies: Vec<_> = events
            .iter()
            .map(|record| match record {
                EveRecord::Protocol(event) => event.body.clone(),
                other => panic!("not a protocol event: {other:?}"),
            })
            .collect();
        assert_eq!(
            bodies,
            vec![
                EventBody::Bacnet(BacnetEvent {
                    llc: false,
                    bvlc_function: Some(0x0a),
                    apdu_type: Some(5),
                    service: Some(20),
                    invoke_id: Some(1),
                    error_class: Some(5),
                    error_code: Some(26),
                    reject_reason: None,
                    abort_reason: None,
                }),
                EventBody::Bacnet(BacnetEvent {
                    llc: false,
                    bvlc_function: Some(0x0b),
                    apdu_type: None,
                    service: None,
                    invoke_id: None,
                    error_class: None,
                    error_code: None,
                    reject_reason: None,
                    abort_reason: None,
                }),
            ]
        );
        assert!(Flow::new(false).events().is_empty());
    }

    #[test]
    fn llc_pdus_count_and_mark_their_events_but_name_no_device() {
        let mut flow = Flow::new(true);
        // The NPDUs of WHO_IS and I_AM, as carried over 802.2 LLC (no BVLC).
        flow.inspect_llc(&hex(WHO_IS)[4..]);
        flow.inspect_llc(&hex(I_AM)[4..]);
        flow.inspect_llc(&[0x02]);
        assert_eq!(flow.pdus(), 2);
        assert_eq!(flow.stats.malformed[Protocol::Bacnet.index()], 1);
        assert!(flow.stats.bacnet.bvlc_function.is_empty());
        assert_eq!(flow.stats.bacnet.unconfirmed_service.get(0), 1);
        let observations = flow.observations();
        assert_eq!(
            commands(&observations),
            vec![(CommandKind::Discovery, 0x108)]
        );
        assert!(identities(&observations).is_empty());
        let events = flow.events();
        assert_eq!(events.len(), 2);
        for record in events {
            let EveRecord::Protocol(event) = record else {
                panic!("a flow record");
            };
            let EventBody::Bacnet(body) = event.body else {
                panic!("not BACnet");
            };
            assert!(body.llc);
            assert_eq!(body.bvlc_function, None);
        }
    }
}

/// Per-worker BACnet statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`): one count per BVLC message (one `bvlc`+`bacnet`+
/// `bacapp` record), with each histogram taking the PDU's first value of its field.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub bvlc_function: Histogram,
    pub apdu_type: Histogram,
    pub net_msg_type: Histogram,
    pub confirmed_service: Histogram,
    pub unconfirmed_service: Histogram,
    /// `class/code` of the PDU's first error (Error PDU, or the first property access
    /// error of a ReadPropertyMultiple-ACK), as tshark's first `bacapp.error_class`
    /// and `bacapp.error_code`.
    pub error_class_code: Histogram,
    pub reject_reason: Histogram,
    pub abort_reason: Histogram,
    /// Segmented confirmed requests and complex ACKs (key 1, written `true`).
    pub segmented: Histogram,
    /// Segmented messages reassembled whole (or, after an overflow, their prefix).
    pub reassembled: u64,
    /// First segments that found every reassembly buffer in use (then inspected on
    /// their own, as far as they go).
    pub reassembly_pool_exhausted: u64,
    /// Messages longer than a reassembly buffer: their tail is dropped, the prefix
    /// is still read for identity.
    pub reassembly_overflow: u64,
    /// Messages dropped because a segment was missing (sequence number skipped).
    pub reassembly_out_of_sequence: u64,
    /// Later segments with no message in progress (first segment missed or dropped)
    /// or belonging to another message than the one in progress.
    pub segments_unmatched: u64,
    /// Retransmitted segments already added.
    pub segments_duplicate: u64,
    /// Messages left unfinished when a new first segment came in the same direction.
    pub segments_abandoned: u64,
    /// Segment-ACK PDUs, and those that are negative (a segment was lost).
    pub segment_acks: u64,
    pub segment_naks: u64,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.bvlc_function.merge(&other.bvlc_function);
        self.apdu_type.merge(&other.apdu_type);
        self.net_msg_type.merge(&other.net_msg_type);
        self.confirmed_service.merge(&other.confirmed_service);
        self.unconfirmed_service.merge(&other.unconfirmed_service);
        self.error_class_code.merge(&other.error_class_code);
        self.reject_reason.merge(&other.reject_reason);
        self.abort_reason.merge(&other.abort_reason);
        self.segmented.merge(&other.segmented);
        self.reassembled += other.reassembled;
        self.reassembly_pool_exhausted += other.reassembly_pool_exhausted;
        self.reassembly_overflow += other.reassembly_overflow;
        self.reassembly_out_of_sequence += other.reassembly_out_of_sequence;
        self.segments_unmatched += other.segments_unmatched;
        self.segments_duplicate += other.segments_duplicate;
        self.segments_abandoned += other.segments_abandoned;
        self.segment_acks += other.segment_acks;
        self.segment_naks += other.segment_naks;
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        let decimal = |histogram: &Histogram| histogram.to_decimal_map();
        put(
            "bvlc_function",
            &self.bvlc_function,
            decimal(&self.bvlc_function),
        );
        put("apdu_type", &self.apdu_type, decimal(&self.apdu_type));
        put(
            "net_msg_type",
            &self.net_msg_type,
            decimal(&self.net_msg_type),
        );
        put(
            "confirmed_service",
            &self.confirmed_service,
            decimal(&self.confirmed_service),
        );
        put(
            "unconfirmed_service",
            &self.unconfirmed_service,
            decimal(&self.unconfirmed_service),
        );
        put(
            "error_class_code",
            &self.error_class_code,
            self.error_class_code.to_map(pair),
        );
        put(
            "reject_reason",
            &self.reject_reason,
            decimal(&self.reject_reason),
        );
        put(
            "abort_reason",
            &self.abort_reason,
            decimal(&self.abort_reason),
        );
        put(
            "segmented",
            &self.segmented,
            self.segmented.to_map(|_| "true".to_owned()),
        );
        // Counters, not tshark histograms: present when non-zero.
        for (name, count) in [
            ("reassembled", self.reassembled),
            ("reassembly_pool_exhausted", self.reassembly_pool_exhausted),
            ("reassembly_overflow", self.reassembly_overflow),
            (
                "reassembly_out_of_sequence",
                self.reassembly_out_of_sequence,
            ),
            ("segments_unmatched", self.segments_unmatched),
            ("segments_duplicate", self.segments_duplicate),
            ("segments_abandoned", self.segments_abandoned),
            ("segment_acks", self.segment_acks),
            ("segment_naks", self.segment_naks),
        ] {
            if count > 0 {
                out.insert(name.to_owned(), serde_json::json!(count));
            }
        }
        serde_json::Value::Object(out)
    }
}

/// BACnetErrorCode `password-failure` (clause 21). Error codes are one enumeration
/// across classes, and devices report it under `security` (4) or, as in
/// bacnet-iam-readproperty-example.pcap, `services` (5).
const ERROR_CODE_PASSWORD_FAILURE: u32 = 26;

/// DeviceCommunicationControl enable-disable values (clause 16.1.1.1.2).
const DCC_ENABLE: u32 = 0;

/// ReinitializeDevice reinitialized-state values (clause 16.4.1.1.1).
mod reinit_state {
    pub const COLDSTART: u32 = 0;
    pub const WARMSTART: u32 = 1;
    pub const START_BACKUP: u32 = 2;
    pub const END_BACKUP: u32 = 3;
    pub const START_RESTORE: u32 = 4;
    pub const END_RESTORE: u32 = 5;
    pub const ABORT_RESTORE: u32 = 6;
}

/// Confirmed services (clause 21) not in [`confirmed`] that change how the sensor
/// classifies a request.
const LIFE_SAFETY_OPERATION: u8 = 27;
/// Unconfirmed services (clause 21) the sensor classifies besides [`unconfirmed`].
const TIME_SYNCHRONIZATION: u8 = 6;
const UTC_TIME_SYNCHRONIZATION: u8 = 9;
const WRITE_GROUP: u8 = 10;

/// The command kind of a confirmed request. DeviceCommunicationControl and
/// ReinitializeDevice decide by their parameters; when those cannot be read (a later
/// segment, a cut body) the dangerous reading is reported, as the request may be one.
fn confirmed_command_kind(apdu: &Apdu<'_>, service: u8) -> CommandKind {
    match service {
        confirmed::DEVICE_COMMUNICATION_CONTROL => match apdu.device_communication_control() {
            Some(dcc) if dcc.enable_disable == DCC_ENABLE => CommandKind::Other,
            // disable (1), disable-initiation (2), and unknown values.
            _ => CommandKind::DisableCommunication,
        },
        confirmed::REINITIALIZE_DEVICE => {
            match apdu.reinitialize_device().map(|reinit| reinit.state) {
                // A backup copies the configuration out (clause 19.1): a transfer of
                // files that leaves the device's program in place.
                Some(reinit_state::START_BACKUP | reinit_state::END_BACKUP) => {
                    CommandKind::FileTransfer
                }
                // A restore replaces the device's configuration (clause 19.1.3):
                // the BACnet way of loading a program.
                Some(
                    reinit_state::START_RESTORE
                    | reinit_state::END_RESTORE
                    | reinit_state::ABORT_RESTORE,
                ) => CommandKind::Program,
                Some(reinit_state::COLDSTART | reinit_state::WARMSTART) => CommandKind::Restart,
                // activate-changes (7) applies pending changes, possibly by restarting;
                // unknown states and unreadable parameters take the dangerous reading.
                _ => CommandKind::Restart,
            }
        }
        LIFE_SAFETY_OPERATION => CommandKind::Operate,
        _ => match confirmed_service_kind(service) {
            ServiceKind::Read => CommandKind::Read,
            ServiceKind::Write => CommandKind::Write,
            ServiceKind::FileTransfer => CommandKind::FileTransfer,
            ServiceKind::Discovery => CommandKind::Discovery,
            ServiceKind::DeviceControl | ServiceKind::Other => CommandKind::Other,
        },
    }
}

/// The command kind of an unconfirmed request; `None` for I-Am and I-Have, which
/// answer a Who-Is / Who-Has and are reported as identity instead.
fn unconfirmed_command_kind(service: u8) -> Option<CommandKind> {
    Some(match service {
        unconfirmed::I_AM | unconfirmed::I_HAVE => return None,
        unconfirmed::WHO_IS | unconfirmed::WHO_HAS => CommandKind::Discovery,
        TIME_SYNCHRONIZATION | UTC_TIME_SYNCHRONIZATION => CommandKind::TimeSync,
        WRITE_GROUP => CommandKind::Write,
        _ => CommandKind::Other,
    })
}

/// The identity field of a device property. BACnet has no product-name property:
/// application-software-version names the application build the device runs, kept as
/// the product so that it does not overwrite firmware-revision.
fn identity_field(property_id: u32) -> Option<IdentityField> {
    Some(match property_id {
        property::VENDOR_NAME => IdentityField::Vendor,
        property::MODEL_NAME => IdentityField::Model,
        property::FIRMWARE_REVISION => IdentityField::Firmware,
        property::APPLICATION_SOFTWARE_VERSION => IdentityField::Product,
        _ => return None,
    })
}

/// Invoke ids are chosen by the requesting peer, and both BACnet peers may request on
/// the same flow (both use 47808): the id is qualified by which flow side requested.
fn transaction_key(invoke_id: u8, requester_is_client: bool) -> u32 {
    (u32::from(requester_is_client) << 8) | u32::from(invoke_id)
}

/// The first error of a PDU: an Error PDU's class and code, or the first property
/// access error of a ReadPropertyMultiple-ACK (as tshark's first `bacapp.error_*`).
fn first_error(apdu: &Apdu<'_>) -> Option<(u32, u32)> {
    if let Some(error) = apdu.error() {
        return Some(error);
    }
    apdu.property_results()?
        .find_map(|result| match result.outcome {
            PropertyOutcome::Error { class, code } => Some((class, code)),
            PropertyOutcome::Value(_) => None,
        })
}

/// Character sets of a CharacterString (clause 20.2.9).
const CHARSET_UTF8: u8 = 0;
const CHARSET_ISO_8859_1: u8 = 5;

fn clamp16(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

/// Inspects one BACnet/IP PDU (a whole BVLC message): statistics, request/response
/// matching by invoke id, observations (commands, identity, errors) and the EVE event.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let bvlc = match Bvlc::new_checked(pdu) {
        Ok(bvlc) => bvlc,
        Err(_) => {
            ctx.malformed(Protocol::Bacnet);
            return;
        }
    };
    ctx.count(Protocol::Bacnet);
    let function = bvlc.function().code();
    ctx.stats.bacnet.bvlc_function.add(u32::from(function));
    // A forwarded message's IP sender is the BBMD, not the device that spoke.
    let relayed = bvlc.function() == BvlcFunction::ForwardedNpdu;
    inspect_npdu(bvlc.npdu(), Some(function), relayed, ctx);
}

/// The LLC service access point of BACnet on ISO 8802-2 (clause 7.1): DSAP = SSAP.
pub const LLC_SAP: u8 = 0x82;

/// Inspects one BACnet PDU carried over 802.2 LLC (clause 7): an NPDU without BVLC.
/// The caller has no IP endpoints (they are unspecified in `ctx.flow`), so the sender's
/// identity is not reported: it would name no device. Commands and errors are.
pub fn inspect_llc(npdu: &[u8], ctx: &mut PduCtx<'_>) {
    if Npdu::new_checked(npdu).is_err() {
        ctx.malformed(Protocol::Bacnet);
        return;
    }
    ctx.count(Protocol::Bacnet);
    inspect_npdu(Some(npdu), None, true, ctx);
    // Without a flow no later segment can find this state: give its buffers back.
    ctx.segments.release_flow(ctx.state);
}

/// The NPDU (and APDU) part of a BACnet PDU, after its data-link header. `relayed`:
/// the IP sender is not the device that spoke (identity is then not reported).
fn inspect_npdu(
    npdu: Option<&[u8]>,
    bvlc_function: Option<u8>,
    relayed: bool,
    ctx: &mut PduCtx<'_>,
) {
    let mut event = BacnetEvent {
        llc: bvlc_function.is_none(),
        bvlc_function,
        apdu_type: None,
        service: None,
        invoke_id: None,
        error_class: None,
        error_code: None,
        reject_reason: None,
        abort_reason: None,
    };
    let apdu = match npdu.map(Npdu::new_checked) {
        None => None,
        Some(Err(_)) => {
            // The data-link header was sound, so the PDU is counted; its NPDU is not.
            ctx.protocol_error(Protocol::Bacnet, ProtocolErrorKind::Malformed, 0);
            None
        }
        Some(Ok(npdu)) => {
            if let Some(message) = npdu.network_message_type() {
                ctx.stats.bacnet.net_msg_type.add(u32::from(message));
            }
            // Behind a router the IP sender is the router, not the device.
            let relayed = relayed || npdu.source().is_some();
            match npdu.apdu() {
                Some(Ok(apdu)) => Some((apdu, relayed)),
                Some(Err(_)) => {
                    ctx.protocol_error(Protocol::Bacnet, ProtocolErrorKind::Malformed, 0);
                    None
                }
                None => None,
            }
        }
    };
    if let Some((apdu, relayed)) = apdu {
        inspect_apdu(&apdu, relayed, &mut event, ctx);
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Bacnet(event));
    }
}

fn inspect_apdu(apdu: &Apdu<'_>, relayed: bool, event: &mut BacnetEvent, ctx: &mut PduCtx<'_>) {
    let apdu_type = apdu.apdu_type();
    let stats = &mut ctx.stats.bacnet;
    stats.apdu_type.add(u32::from(apdu_type.code()));
    if let Some(service) = apdu.confirmed_service() {
        stats.confirmed_service.add(u32::from(service));
    }
    if let Some(service) = apdu.unconfirmed_service() {
        stats.unconfirmed_service.add(u32::from(service));
    }
    let error = first_error(apdu);
    if let Some((class, code)) = error {
        stats
            .error_class_code
            .add(pair_key(clamp16(class), clamp16(code)));
    }
    if let Some(reason) = apdu.reject_reason() {
        stats.reject_reason.add(u32::from(reason));
    }
    if let Some(reason) = apdu.abort_reason() {
        stats.abort_reason.add(u32::from(reason));
    }
    if apdu.segmented() {
        stats.segmented.add(1);
    }
    event.apdu_type = Some(apdu_type.code());
    event.service = apdu.service_choice();
    event.invoke_id = apdu.invoke_id();
    event.error_class = error.map(|(class, _)| class);
    event.error_code = error.map(|(_, code)| code);
    event.reject_reason = apdu.reject_reason();
    event.abort_reason = apdu.abort_reason();

    if apdu.segmented() {
        let mut message = [0u8; SEGMENT_BUFFER_LEN];
        match segment(apdu, ctx, &mut message) {
            Reassembly::Complete { len, .. } => {
                let whole = Apdu::new_checked(message.get(..len).unwrap_or(&[]));
                if let (Ok(whole), false) = (whole, relayed) {
                    // A cut message still starts right: its identity properties
                    // are read as far as they go.
                    if whole.apdu_type() == ApduType::ComplexAck {
                        report_identity(&whole, ctx);
                    }
                }
            }
            // No buffer: the first segment is read on its own.
            Reassembly::NoBuffer if !relayed && apdu_type == ApduType::ComplexAck => {
                report_identity(apdu, ctx);
            }
            _ => {}
        }
    }

    // The APDU type, not the flow's orientation, tells requests from replies: both
    // peers use port 47808 and either may request.
    let sender_is_client = ctx.direction == Direction::Request;
    // Later segments repeat the request; the first one starts the transaction.
    let first_segment = !apdu.segmented() || apdu.sequence_number() == Some(0);
    match apdu_type {
        ApduType::ConfirmedRequest => {
            let Some(service) = apdu.service_choice() else {
                return;
            };
            if !first_segment {
                return;
            }
            if let Some(invoke_id) = apdu.invoke_id() {
                let key = transaction_key(invoke_id, sender_is_client);
                ctx.state.request(key, u32::from(service), ctx.ts_ns);
            }
            let kind = confirmed_command_kind(apdu, service);
            ctx.command(Protocol::Bacnet, kind, u32::from(service));
        }
        ApduType::UnconfirmedRequest => {
            let Some(service) = apdu.service_choice() else {
                return;
            };
            if let Some(kind) = unconfirmed_command_kind(service) {
                ctx.command(Protocol::Bacnet, kind, 0x100 | u32::from(service));
            }
            if let (Some(i_am), false) = (apdu.i_am(), relayed) {
                let vendor = vendor_text(bacnet_vendor(i_am.vendor_id), i_am.vendor_id);
                ctx.identity(Protocol::Bacnet, IdentityField::Vendor, vendor.as_bytes());
            }
        }
        ApduType::SimpleAck
        | ApduType::ComplexAck
        | ApduType::Error
        | ApduType::Reject
        | ApduType::Abort => {
            // A reply answers a request of the other peer; an Abort may also come from
            // the requester itself (SRV clear) and then ends its own transaction.
            let requester_is_client = if apdu_type == ApduType::Abort && !apdu.sent_by_server() {
                sender_is_client
            } else {
                !sender_is_client
            };
            if let (Some(invoke_id), true) = (apdu.invoke_id(), first_segment) {
                let key = transaction_key(invoke_id, requester_is_client);
                if let Some((_, latency)) = ctx.state.response(key, ctx.ts_ns) {
                    ctx.response_time(Protocol::Bacnet, latency);
                }
            }
            match apdu_type {
                ApduType::Error => {
                    if let Some((class, code)) = error {
                        let kind = if code == ERROR_CODE_PASSWORD_FAILURE {
                            ProtocolErrorKind::AuthFailure
                        } else {
                            ProtocolErrorKind::ErrorReply
                        };
                        let key = (u32::from(clamp16(class)) << 16) | u32::from(clamp16(code));
                        ctx.protocol_error(Protocol::Bacnet, kind, key);
                    }
                }
                ApduType::Reject | ApduType::Abort => {
                    let reason = apdu
                        .reject_reason()
                        .or_else(|| apdu.abort_reason())
                        .unwrap_or(0);
                    let code = (u32::from(apdu_type.code()) << 8) | u32::from(reason);
                    ctx.protocol_error(Protocol::Bacnet, ProtocolErrorKind::Rejected, code);
                }
                _ => {}
            }
            // A segmented ACK is read once reassembled (see `segment`).
            if !relayed && !apdu.segmented() {
                report_identity(apdu, ctx);
            }
        }
        ApduType::SegmentAck => {
            ctx.stats.bacnet.segment_acks += 1;
            if apdu.negative_ack() {
                ctx.stats.bacnet.segment_naks += 1;
            }
        }
        ApduType::Unknown(_) => {}
    }
}

/// Reports the identity properties of a ReadProperty(Multiple) ACK: the character
/// strings of vendor-name, model-name, firmware-revision and
/// application-software-version, and vendor-identifier named from the ASHRAE table.
fn report_identity(apdu: &Apdu<'_>, ctx: &mut PduCtx<'_>) {
    for string in apdu.identity_strings() {
        // UTF-8 and ISO 8859-1 (clause 20.2.9) read as text; UCS-2 and the other
        // wide sets would not.
        if !matches!(string.charset, CHARSET_UTF8 | CHARSET_ISO_8859_1) {
            continue;
        }
        if let Some(field) = identity_field(string.property) {
            ctx.identity(Protocol::Bacnet, field, string.text);
        }
    }
    let vendor_ids = apdu
        .property_results()
        .into_iter()
        .flatten()
        .filter(|result| result.property == property::VENDOR_IDENTIFIER)
        .filter_map(|result| result.value()?.application(app_tag::UNSIGNED)?.unsigned());
    for id in vendor_ids {
        let text = vendor_text(bacnet_vendor(id), id);
        ctx.identity(Protocol::Bacnet, IdentityField::Vendor, text.as_bytes());
    }
}

fn direction_index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

/// What one segment did to its message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reassembly {
    /// Added (or a harmless repeat); more segments follow.
    InProgress,
    /// A first segment that found no free buffer.
    NoBuffer,
    /// The segment was not added (its message is unknown or was dropped).
    Dropped,
    /// The last segment: the whole message, this many bytes, was copied out;
    /// `truncated` when its tail did not fit the buffer.
    Complete { len: usize, truncated: bool },
}

/// Reassembles segmented Confirmed-Requests and Complex-ACKs (clause 5.2): per flow
/// direction one message at a time, identified by its APDU type, service choice and
/// invoke id (the requester picks invoke ids, so with the direction they name the
/// transaction), segments taken in sequence-number order. The message is rebuilt in
/// its unsegmented form: the header without SEG, MOR, sequence number and window,
/// then the service data of every segment, so [`Apdu`] reads it like any other.
fn segment(
    apdu: &Apdu<'_>,
    ctx: &mut PduCtx<'_>,
    out: &mut [u8; SEGMENT_BUFFER_LEN],
) -> Reassembly {
    let (Some(sequence), Some(invoke_id), Some(service)) = (
        apdu.sequence_number(),
        apdu.invoke_id(),
        apdu.service_choice(),
    ) else {
        return Reassembly::Dropped;
    };
    let apdu_type = apdu.apdu_type();
    let tag =
        (u32::from(apdu_type.code()) << 16) | (u32::from(service) << 8) | u32::from(invoke_id);
    let direction = direction_index(ctx.direction);
    let mut handle = ctx.state.segment_slots.get(direction).copied().unwrap_or(0);
    if sequence == 0 {
        match ctx.segments.get_mut(handle) {
            // A retransmitted first segment restarts its own message silently.
            Some(buffer) if buffer.tag != tag => ctx.stats.bacnet.segments_abandoned += 1,
            Some(_) => {}
            None => {
                let Some(acquired) = ctx.segments.acquire() else {
                    ctx.stats.bacnet.reassembly_pool_exhausted += 1;
                    return Reassembly::NoBuffer;
                };
                handle = acquired;
                if let Some(slot) = ctx.state.segment_slots.get_mut(direction) {
                    *slot = handle;
                }
            }
        }
        let Some(buffer) = ctx.segments.get_mut(handle) else {
            return Reassembly::Dropped;
        };
        buffer.start(tag, 1);
        // Unsegmented header (clause 20.1.2.1, 20.1.5.1): a confirmed request keeps
        // its segmented-response-accepted bit and max segments / max APDU octet.
        let first = apdu_type.code() << 4;
        let header: &[u8] = match apdu_type {
            ApduType::ConfirmedRequest => &[
                first
                    | (apdu.buf.first().copied().unwrap_or(0)
                        & pdu_flag::SEGMENTED_RESPONSE_ACCEPTED),
                apdu.buf.get(1).copied().unwrap_or(0),
                invoke_id,
                service,
            ],
            _ => &[first, invoke_id, service],
        };
        let fits = buffer
            .append(header)
            .and_then(|()| buffer.append(apdu.service_data()));
        if fits.is_err() {
            ctx.stats.bacnet.reassembly_overflow += 1;
        }
    } else {
        let Some(buffer) = ctx.segments.get_mut(handle) else {
            ctx.stats.bacnet.segments_unmatched += 1;
            return Reassembly::Dropped;
        };
        if buffer.tag != tag {
            // Another message's segment: the one in progress is kept.
            ctx.stats.bacnet.segments_unmatched += 1;
            return Reassembly::Dropped;
        }
        if sequence != buffer.next_sequence {
            // Sequence numbers count modulo 256 (clause 5.3); a segment of the last
            // half-range is a retransmission, anything else means one was lost.
            if (1..=127).contains(&buffer.next_sequence.wrapping_sub(sequence)) {
                ctx.stats.bacnet.segments_duplicate += 1;
                return Reassembly::InProgress;
            }
            ctx.stats.bacnet.reassembly_out_of_sequence += 1;
            if let Some(slot) = ctx.state.segment_slots.get_mut(direction) {
                ctx.segments.release(slot);
            }
            return Reassembly::Dropped;
        }
        buffer.next_sequence = buffer.next_sequence.wrapping_add(1);
        // Overflow is counted once per message; later segments only keep the count.
        let overflowed = buffer.overflowed;
        if buffer.append(apdu.service_data()).is_err() && !overflowed {
            ctx.stats.bacnet.reassembly_overflow += 1;
        }
    }
    if apdu.more_follows() {
        return Reassembly::InProgress;
    }
    let (len, truncated) = ctx.segments.get_mut(handle).map_or((0, false), |buffer| {
        (buffer.copy_to(out), buffer.overflowed)
    });
    if let Some(slot) = ctx.state.segment_slots.get_mut(direction) {
        ctx.segments.release(slot);
    }
    ctx.stats.bacnet.reassembled += 1;
    Reassembly::Complete { len, truncated }
}
