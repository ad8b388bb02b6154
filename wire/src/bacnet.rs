//! BACnet/IP (ASHRAE 135, UDP 47808): the BVLC header (annex J.2), the NPDU
//! (clause 6.2), the APDU header (clause 20.1) and a small reader for BACnet tags
//! (clause 20.2) that yields what the sensor inventories: I-Am, Error, Reject, Abort,
//! device control requests, and ReadProperty / ReadPropertyMultiple ACK values such as
//! vendor-name or firmware-revision.
//!
//! `new_checked` of [`Bvlc`](crate::bacnet::Bvlc), [`Npdu`](crate::bacnet::Npdu) and [`Apdu`](crate::bacnet::Apdu) validates every length their
//! accessors rely on; after it succeeds no accessor can panic. Service data is walked
//! with [`Tags`](crate::bacnet::Tags), which stops at the first tag that does not fit and records that as
//! malformed, so a bad service body is an anomaly, not an error.
//!
//! Field names follow Wireshark's `bvlc`, `bacnet` and `bacapp` dissectors; service
//! names are its `bacapp.confirmed_service` / `bacapp.unconfirmed_service` value
//! strings (ASHRAE 135 clause 21, BACnetConfirmedServiceChoice).

use crate::bytes::be16;

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

/// The LLC service access point of BACnet on ISO 8802-2 (clause 7.1): DSAP = SSAP.
pub const LLC_SAP: u8 = 0x82;

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
/// APDU header flag bits of the first octet (clause 20.1).
pub mod pdu_flag {
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
    pub const SYSTEM_STATUS: u32 = 112;
    pub const VENDOR_IDENTIFIER: u32 = 120;
    pub const VENDOR_NAME: u32 = 121;
}

/// Names of BACnetDeviceStatus values (clause 21), the Device object's system-status.
pub fn device_status_name(value: u32) -> Option<&'static str> {
    const NAMES: [&str; 6] = [
        "operational",
        "operational-read-only",
        "download-required",
        "download-in-progress",
        "non-operational",
        "backup-in-progress",
    ];
    NAMES.get(usize::try_from(value).ok()?).copied()
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

    /// The octet after the first of a confirmed request, as sent: max segments
    /// accepted (bits 6-4) and max APDU length accepted (bits 3-0), clause 20.1.2.4-5.
    pub fn max_segments_apdu_octet(&self) -> Option<u8> {
        (self.apdu_type() == ApduType::ConfirmedRequest).then(|| self.byte(1).unwrap_or(0))
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
    use crate::test_capture::hex;

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
}
