//! PROFINET IO as zero-copy views: real-time frames on EtherType 0x8892 ([`RtFrame`]:
//! cyclic data, alarms, DCP, PTCP), DCP ([`Dcp`] and its blocks), the alarm channel's
//! RTA-PDUs ([`Rta`]), and the context manager's DCE/RPC datagrams on UDP 34964
//! ([`Rpc`]: connectionless DCE/RPC version 4 with the PNIO interface UUIDs).
//!
//! Follows IEC 61158-6-10 (cited "6-10 §n") and, for field names, Wireshark's
//! `pn_rt.*`, `pn_dcp.*`, `pn_io.*` and `dcerpc.*` (packet-pn-rt.c, packet-pn-dcp.c,
//! packet-dcerpc-pn-io.c, packet-dcerpc.c); DCE/RPC after The Open Group's C706
//! (chapter 12, connectionless PDU header).
//!
//! Every view's `new_checked` validates the lengths its accessors rely on; after it
//! succeeds **no accessor can panic**. Values the specs do not define are kept
//! (`Unknown(..)`), and spec violations that still parse are [`Anomalies`].

use crate::bytes::be16;

/// The PROFINET real-time EtherType (6-10 §4.2.2.5).
pub const ETHER_TYPE: u16 = 0x8892;
/// The PNIO context manager's well-known UDP port (the endpoint mapper's, and the
/// port CM requests go to).
pub const UDP_PORT: u16 = 34964;

/// Why a buffer is not the PROFINET PDU a view expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("DCE/RPC version {0}, not 4 (connectionless)")]
    BadVersion(u8),
    #[error("not a PNIO interface")]
    NotPnio,
}

impl Error {
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadVersion(_) => "bad_version",
            Error::NotPnio => "not_pnio",
        }
    }
}

fn need(buf: &[u8], len: usize) -> Result<(), Error> {
    if buf.len() < len {
        return Err(Error::Truncated {
            need: len,
            have: buf.len(),
        });
    }
    Ok(())
}

/// Spec violations that still parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// A DCP header's DCPDataLength runs past the frame, or a block past the data.
    pub const DCP_BAD_LENGTH: u16 = 1 << 0;
    /// A DCP service id or service type the spec does not define.
    pub const DCP_UNKNOWN_SERVICE: u16 = 1 << 1;
    /// An RTA-PDU whose VarPartLen runs past the frame, or an unknown PDU type.
    pub const RTA_BAD_PDU: u16 = 1 << 2;
    /// A DCE/RPC body length (`len`) that runs past the datagram.
    pub const RPC_BAD_LENGTH: u16 = 1 << 3;
    /// A PNIO opnum beyond ReadImplicit (5).
    pub const RPC_UNKNOWN_OPNUM: u16 = 1 << 4;
    /// A frame id in a range the spec reserves.
    pub const RESERVED_FRAME_ID: u16 = 1 << 5;

    const LABELS: [(u16, &'static str); 6] = [
        (Self::DCP_BAD_LENGTH, "dcp_bad_length"),
        (Self::DCP_UNKNOWN_SERVICE, "dcp_unknown_service"),
        (Self::RTA_BAD_PDU, "rta_bad_pdu"),
        (Self::RPC_BAD_LENGTH, "rpc_bad_length"),
        (Self::RPC_UNKNOWN_OPNUM, "rpc_unknown_opnum"),
        (Self::RESERVED_FRAME_ID, "reserved_frame_id"),
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

// ------------------------------------------------------------------------------------
// Real-time frames

/// What a FrameID says the frame carries (6-10 §4.2.2.6, table "FrameID range";
/// Wireshark `pn_rt.frame_id`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// 0x0000-0x00FF: PTCP time synchronisation (RTSync with/without follow-up).
    TimeSync,
    /// 0x0100-0x7FFF: RT class 3 (isochronous) cyclic data.
    CyclicRtc3,
    /// 0x8000-0xBFFF: RT class 2 cyclic data.
    CyclicRtc2,
    /// 0xC000-0xFBFF: RT class 1 cyclic data.
    CyclicRtc1,
    /// 0xFC01: alarm, high priority (RTA).
    AlarmHigh,
    /// 0xFE01: alarm, low priority (RTA).
    AlarmLow,
    /// 0xFEFC: DCP Hello.
    DcpHello,
    /// 0xFEFD: DCP Get/Set (unicast).
    DcpGetSet,
    /// 0xFEFE: DCP Identify request (multicast).
    DcpIdentifyRequest,
    /// 0xFEFF: DCP Identify response.
    DcpIdentifyResponse,
    /// 0xFF00-0xFF7F: PTCP (announce, follow-up, delay request/response).
    Ptcp,
    /// 0xFF80-0xFF8F: fragmentation.
    Fragment,
    /// Any other id (reserved ranges).
    Reserved,
}

impl FrameKind {
    pub fn of(frame_id: u16) -> FrameKind {
        match frame_id {
            0x0000..=0x00FF => FrameKind::TimeSync,
            0x0100..=0x7FFF => FrameKind::CyclicRtc3,
            0x8000..=0xBFFF => FrameKind::CyclicRtc2,
            0xC000..=0xFBFF => FrameKind::CyclicRtc1,
            0xFC01 => FrameKind::AlarmHigh,
            0xFE01 => FrameKind::AlarmLow,
            0xFEFC => FrameKind::DcpHello,
            0xFEFD => FrameKind::DcpGetSet,
            0xFEFE => FrameKind::DcpIdentifyRequest,
            0xFEFF => FrameKind::DcpIdentifyResponse,
            0xFF00..=0xFF7F => FrameKind::Ptcp,
            0xFF80..=0xFF8F => FrameKind::Fragment,
            _ => FrameKind::Reserved,
        }
    }

    pub fn is_cyclic(self) -> bool {
        matches!(
            self,
            FrameKind::CyclicRtc1 | FrameKind::CyclicRtc2 | FrameKind::CyclicRtc3
        )
    }

    pub fn is_alarm(self) -> bool {
        matches!(self, FrameKind::AlarmHigh | FrameKind::AlarmLow)
    }

    pub fn is_dcp(self) -> bool {
        matches!(
            self,
            FrameKind::DcpHello
                | FrameKind::DcpGetSet
                | FrameKind::DcpIdentifyRequest
                | FrameKind::DcpIdentifyResponse
        )
    }

    pub fn is_ptcp(self) -> bool {
        matches!(self, FrameKind::TimeSync | FrameKind::Ptcp)
    }
}

/// The length of a cyclic frame's trailer: CycleCounter, DataStatus, TransferStatus.
pub const CYCLIC_TRAILER_LEN: usize = 4;

/// One PROFINET real-time frame: the Ethernet payload after EtherType 0x8892.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtFrame<'a> {
    buf: &'a [u8],
}

impl<'a> RtFrame<'a> {
    /// Checks that the FrameID is there, and for cyclic frames the trailer too.
    pub fn new_checked(buf: &'a [u8]) -> Result<RtFrame<'a>, Error> {
        need(buf, 2)?;
        let frame = RtFrame { buf };
        if frame.kind().is_cyclic() {
            need(buf, 2 + CYCLIC_TRAILER_LEN)?;
        }
        Ok(frame)
    }

    /// `pn_rt.frame_id`
    pub fn frame_id(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]])
    }

    pub fn kind(&self) -> FrameKind {
        FrameKind::of(self.frame_id())
    }

    /// The bytes after the FrameID (for cyclic frames, data and trailer; Ethernet
    /// padding of short frames included, as the frame has no length field).
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[2..]
    }

    /// The cyclic frame's trailer, `None` for other frames.
    fn trailer(&self) -> Option<&'a [u8]> {
        if !self.kind().is_cyclic() {
            return None;
        }
        self.buf.get(self.buf.len() - CYCLIC_TRAILER_LEN..)
    }

    /// `pn_rt.cycle_counter` of a cyclic frame.
    pub fn cycle_counter(&self) -> Option<u16> {
        self.trailer().and_then(|t| be16(t, 0))
    }

    /// `pn_rt.ds` of a cyclic frame (bit 4 ProviderState run, bit 5 StationProblem
    /// indicator ok, bit 2 DataValid, bit 0 primary).
    pub fn data_status(&self) -> Option<u8> {
        self.trailer().map(|t| t[2])
    }

    /// `pn_rt.transfer_status` of a cyclic frame.
    pub fn transfer_status(&self) -> Option<u8> {
        self.trailer().map(|t| t[3])
    }

    /// The cyclic IO data between FrameID and trailer.
    pub fn cyclic_data(&self) -> Option<&'a [u8]> {
        if !self.kind().is_cyclic() {
            return None;
        }
        self.buf.get(2..self.buf.len() - CYCLIC_TRAILER_LEN)
    }
}

/// DataStatus bit: the provider is in RUN (6-10 §4.7.2.1.2).
pub const DATA_STATUS_RUN: u8 = 0x10;
/// DataStatus bit: StationProblemIndicator "ok" (0 = a problem is signalled).
pub const DATA_STATUS_OK: u8 = 0x20;
/// DataStatus bit: DataValid.
pub const DATA_STATUS_VALID: u8 = 0x04;

// ------------------------------------------------------------------------------------
// DCP

wire_enum! {
    /// DCP ServiceID (6-10 §4.3.1.3.1; `pn_dcp.service_id`).
    pub enum DcpService {
        Get = 3 => "Get",
        Set = 4 => "Set",
        Identify = 5 => "Identify",
        Hello = 6 => "Hello",
    }
}

/// DCP ServiceType values (`pn_dcp.service_type`): request, response success; bit 2
/// set in a response says the service is not supported.
pub const DCP_TYPE_REQUEST: u8 = 0;
pub const DCP_TYPE_RESPONSE_SUCCESS: u8 = 1;
pub const DCP_TYPE_RESPONSE_UNSUPPORTED: u8 = 5;

/// DCP options and suboptions (6-10 §4.3.1.4).
pub mod dcp_option {
    pub const IP: u8 = 1;
    pub const IP_MAC: u8 = 1;
    pub const IP_PARAMETER: u8 = 2;
    pub const IP_FULL_SUITE: u8 = 3;
    pub const DEVICE: u8 = 2;
    pub const DEVICE_VENDOR: u8 = 1;
    pub const DEVICE_NAME_OF_STATION: u8 = 2;
    pub const DEVICE_ID: u8 = 3;
    pub const DEVICE_ROLE: u8 = 4;
    pub const DEVICE_OPTIONS: u8 = 5;
    pub const DEVICE_ALIAS: u8 = 6;
    pub const DEVICE_INSTANCE: u8 = 7;
    pub const DEVICE_OEM_ID: u8 = 8;
    pub const DHCP: u8 = 3;
    pub const CONTROL: u8 = 5;
    pub const CONTROL_START: u8 = 1;
    pub const CONTROL_STOP: u8 = 2;
    pub const CONTROL_SIGNAL: u8 = 3;
    pub const CONTROL_RESPONSE: u8 = 4;
    pub const CONTROL_FACTORY_RESET: u8 = 5;
    pub const CONTROL_RESET_TO_FACTORY: u8 = 6;
    pub const DEVICE_INITIATIVE: u8 = 6;
    pub const ALL: u8 = 0xFF;
}

/// ServiceID, ServiceType, Xid, ResponseDelay (or reserved), DCPDataLength.
pub const DCP_HEADER_LEN: usize = 10;

/// One DCP PDU: the real-time frame's payload after the FrameID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dcp<'a> {
    /// Header and the data DCPDataLength announces (clipped to the frame: Ethernet
    /// padding follows it).
    buf: &'a [u8],
    /// DCPDataLength ran past the frame.
    length_overrun: bool,
}

impl<'a> Dcp<'a> {
    /// Checks the header; data beyond the frame is clipped (and flagged).
    pub fn new_checked(buf: &'a [u8]) -> Result<Dcp<'a>, Error> {
        need(buf, DCP_HEADER_LEN)?;
        let data_len = usize::from(u16::from_be_bytes([buf[8], buf[9]]));
        let end = DCP_HEADER_LEN + data_len;
        let length_overrun = end > buf.len();
        Ok(Dcp {
            buf: &buf[..end.min(buf.len())],
            length_overrun,
        })
    }

    /// `pn_dcp.service_id`
    pub fn service_id(&self) -> u8 {
        self.buf[0]
    }

    pub fn service(&self) -> DcpService {
        DcpService::from(self.buf[0])
    }

    /// `pn_dcp.service_type`
    pub fn service_type(&self) -> u8 {
        self.buf[1]
    }

    pub fn is_request(&self) -> bool {
        self.service_type() == DCP_TYPE_REQUEST
    }

    /// `pn_dcp.xid`
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]])
    }

    /// `pn_dcp.response_delay` (Identify requests; reserved elsewhere).
    pub fn response_delay(&self) -> u16 {
        u16::from_be_bytes([self.buf[6], self.buf[7]])
    }

    /// The blocks after the header.
    pub fn data(&self) -> &'a [u8] {
        &self.buf[DCP_HEADER_LEN..]
    }

    /// The blocks with their lengths (all but a Get request, whose data is a bare
    /// list of option/suboption pairs: see [`Dcp::get_options`]). Blocks of responses
    /// start with BlockInfo, those of Set requests with BlockQualifier: both are in
    /// [`DcpBlock::data`], see [`DcpBlock::value`].
    pub fn blocks(&self) -> DcpBlocks<'a> {
        DcpBlocks {
            data: self.data(),
            at: 0,
            has_info: !self.is_request() || self.service() == DcpService::Set,
            overrun: false,
        }
    }

    /// A Get request's requested (option, suboption) pairs.
    pub fn get_options(&self) -> impl Iterator<Item = (u8, u8)> + 'a {
        self.data().chunks_exact(2).map(|pair| (pair[0], pair[1]))
    }

    /// An Identify request for all stations (the All selector 0xFF/0xFF).
    pub fn is_identify_all(&self) -> bool {
        self.service() == DcpService::Identify
            && self.is_request()
            && self
                .blocks()
                .any(|b| b.option == dcp_option::ALL && b.suboption == dcp_option::ALL)
    }

    /// What the identify response (or a Hello) says about its sender.
    pub fn station(&self) -> Station<'a> {
        let mut station = Station::default();
        for block in self.blocks() {
            let value = block.value();
            match (block.option, block.suboption) {
                (dcp_option::DEVICE, dcp_option::DEVICE_NAME_OF_STATION) => {
                    station.name_of_station = Some(value)
                }
                (dcp_option::DEVICE, dcp_option::DEVICE_VENDOR) => {
                    station.type_of_station = Some(value)
                }
                (dcp_option::DEVICE, dcp_option::DEVICE_ALIAS) => station.alias = Some(value),
                (dcp_option::DEVICE, dcp_option::DEVICE_ID) => {
                    if let (Some(vendor), Some(device)) = (be16(value, 0), be16(value, 2)) {
                        station.vendor_id = Some(vendor);
                        station.device_id = Some(device);
                    }
                }
                (dcp_option::DEVICE, dcp_option::DEVICE_ROLE) => {
                    station.role = value.first().copied()
                }
                (dcp_option::IP, dcp_option::IP_PARAMETER | dcp_option::IP_FULL_SUITE) => {
                    if let Some(ip) = value.get(..12) {
                        station.ip = Some([ip[0], ip[1], ip[2], ip[3]]);
                        station.netmask = Some([ip[4], ip[5], ip[6], ip[7]]);
                        station.gateway = Some([ip[8], ip[9], ip[10], ip[11]]);
                    }
                }
                _ => {}
            }
        }
        station
    }

    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        if self.length_overrun {
            flags |= Anomalies::DCP_BAD_LENGTH;
        }
        let mut blocks = self.blocks();
        for _ in blocks.by_ref() {}
        if blocks.overrun {
            flags |= Anomalies::DCP_BAD_LENGTH;
        }
        let type_known = matches!(
            self.service_type(),
            DCP_TYPE_REQUEST | DCP_TYPE_RESPONSE_SUCCESS | DCP_TYPE_RESPONSE_UNSUPPORTED
        );
        if matches!(self.service(), DcpService::Unknown(_)) || !type_known {
            flags |= Anomalies::DCP_UNKNOWN_SERVICE;
        }
        Anomalies(flags)
    }
}

/// One DCP block: Option, Suboption, DCPBlockLength and its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DcpBlock<'a> {
    pub option: u8,
    pub suboption: u8,
    /// The block's data as DCPBlockLength gives it (BlockInfo or BlockQualifier first
    /// where the service has one).
    pub data: &'a [u8],
    /// Whether `data` starts with BlockInfo (responses) or BlockQualifier (Set).
    pub has_info: bool,
}

impl<'a> DcpBlock<'a> {
    /// BlockInfo (responses) or BlockQualifier (Set requests), where present.
    pub fn info(&self) -> Option<u16> {
        if self.has_info {
            be16(self.data, 0)
        } else {
            None
        }
    }

    /// The block's value after BlockInfo/BlockQualifier. The Control option's blocks
    /// of a Set request carry a BlockQualifier too; its Response block (5/4) has none.
    pub fn value(&self) -> &'a [u8] {
        let skip = if self.has_info
            && !(self.option == dcp_option::CONTROL
                && self.suboption == dcp_option::CONTROL_RESPONSE)
        {
            2
        } else {
            0
        };
        self.data.get(skip..).unwrap_or(&[])
    }
}

/// Iterator over DCP blocks (each padded to an even length).
#[derive(Clone, Debug)]
pub struct DcpBlocks<'a> {
    data: &'a [u8],
    at: usize,
    has_info: bool,
    /// A block's length ran past the data.
    pub overrun: bool,
}

impl<'a> Iterator for DcpBlocks<'a> {
    type Item = DcpBlock<'a>;

    fn next(&mut self) -> Option<DcpBlock<'a>> {
        let header = self.data.get(self.at..self.at.checked_add(4)?)?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let start = self.at + 4;
        let Some(data) = self.data.get(start..start + len) else {
            self.overrun = true;
            self.at = self.data.len();
            return None;
        };
        self.at = start + len + (len & 1);
        Some(DcpBlock {
            option: header[0],
            suboption: header[1],
            data,
            has_info: self.has_info,
        })
    }
}

/// What a DCP Identify response (or Hello) says about its sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Station<'a> {
    /// NameOfStation (2/2).
    pub name_of_station: Option<&'a [u8]>,
    /// DeviceVendorValue, "type of station" (2/1).
    pub type_of_station: Option<&'a [u8]>,
    /// AliasName (2/6).
    pub alias: Option<&'a [u8]>,
    /// VendorID and DeviceID (2/3).
    pub vendor_id: Option<u16>,
    pub device_id: Option<u16>,
    /// DeviceRole bits (2/4): 0x01 IO device, 0x02 IO controller, 0x04 IO multidevice,
    /// 0x08 PN supervisor.
    pub role: Option<u8>,
    /// IP parameter (1/2): address, mask, gateway.
    pub ip: Option<[u8; 4]>,
    pub netmask: Option<[u8; 4]>,
    pub gateway: Option<[u8; 4]>,
}

/// DeviceRole bits (6-10 §4.3.1.4.11).
pub const ROLE_IO_DEVICE: u8 = 0x01;
pub const ROLE_IO_CONTROLLER: u8 = 0x02;
pub const ROLE_IO_MULTIDEVICE: u8 = 0x04;
pub const ROLE_SUPERVISOR: u8 = 0x08;

// ------------------------------------------------------------------------------------
// Alarms (RTA)

wire_enum! {
    /// RTA PDU-type, low nibble of PDUType (6-10 §4.7.3.2.6).
    pub enum RtaType {
        Data = 1 => "DATA",
        Nack = 2 => "NACK",
        Ack = 3 => "ACK",
        Err = 4 => "ERR",
    }
}

/// AlarmDstEndpoint, AlarmSrcEndpoint, PDUType, AddFlags, SendSeqNum, AckSeqNum,
/// VarPartLen.
pub const RTA_HEADER_LEN: usize = 12;

/// One RTA-PDU of the alarm channel (frame ids 0xFC01, 0xFE01), after the FrameID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rta<'a> {
    buf: &'a [u8],
}

impl<'a> Rta<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Rta<'a>, Error> {
        need(buf, RTA_HEADER_LEN)?;
        Ok(Rta { buf })
    }

    /// `pn_io.alarm_dst_endpoint`
    pub fn dst_endpoint(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]])
    }

    /// `pn_io.alarm_src_endpoint`
    pub fn src_endpoint(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// `pn_io.pdu_type.type`
    pub fn pdu_type(&self) -> RtaType {
        RtaType::from(self.buf[4] & 0x0F)
    }

    /// `pn_io.pdu_type.version`
    pub fn version(&self) -> u8 {
        self.buf[4] >> 4
    }

    /// `pn_io.add_flags`
    pub fn add_flags(&self) -> u8 {
        self.buf[5]
    }

    /// `pn_io.send_seq_num`
    pub fn send_seq_num(&self) -> u16 {
        u16::from_be_bytes([self.buf[6], self.buf[7]])
    }

    /// `pn_io.ack_seq_num`
    pub fn ack_seq_num(&self) -> u16 {
        u16::from_be_bytes([self.buf[8], self.buf[9]])
    }

    /// `pn_io.var_part_len`
    pub fn var_part_len(&self) -> u16 {
        u16::from_be_bytes([self.buf[10], self.buf[11]])
    }

    /// The var part, `None` when VarPartLen runs past the frame.
    pub fn var_part(&self) -> Option<&'a [u8]> {
        self.buf
            .get(RTA_HEADER_LEN..RTA_HEADER_LEN + usize::from(self.var_part_len()))
    }

    /// The PNIOStatus of an ERR PDU (its var part), `None` for other types.
    pub fn pnio_status(&self) -> Option<PnioStatus> {
        if self.pdu_type() != RtaType::Err {
            return None;
        }
        PnioStatus::read(self.var_part()?)
    }

    /// The AlarmType of a DATA PDU's AlarmNotification block (BlockHeader, then
    /// AlarmType), `None` for other types.
    pub fn alarm_type(&self) -> Option<u16> {
        if self.pdu_type() != RtaType::Data {
            return None;
        }
        be16(self.var_part()?, 6)
    }

    pub fn anomalies(&self) -> Anomalies {
        if self.var_part().is_none() || matches!(self.pdu_type(), RtaType::Unknown(_)) {
            Anomalies(Anomalies::RTA_BAD_PDU)
        } else {
            Anomalies::default()
        }
    }
}

/// PNIOStatus (6-10 §5.2.3.1.6): ErrorCode, ErrorDecode, ErrorCode1, ErrorCode2
/// (`pn_io.error_code`, `.error_decode`, `.error_code1`, `.error_code2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PnioStatus {
    pub error_code: u8,
    pub error_decode: u8,
    pub error_code1: u8,
    pub error_code2: u8,
}

impl PnioStatus {
    pub fn read(buf: &[u8]) -> Option<PnioStatus> {
        match buf.get(..4)? {
            &[error_code, error_decode, error_code1, error_code2] => Some(PnioStatus {
                error_code,
                error_decode,
                error_code1,
                error_code2,
            }),
            _ => None,
        }
    }

    /// Success is ErrorCode 0 (the other octets are then 0 too by the spec).
    pub fn is_error(&self) -> bool {
        self.error_code != 0
    }

    /// The four octets as one number, ErrorCode in the high octet.
    pub fn as_u32(&self) -> u32 {
        u32::from_be_bytes([
            self.error_code,
            self.error_decode,
            self.error_code1,
            self.error_code2,
        ])
    }
}

// ------------------------------------------------------------------------------------
// DCE/RPC (connectionless) carrying PNIO-CM

/// The connectionless DCE/RPC header (C706 §12.5.3.1).
pub const RPC_HEADER_LEN: usize = 80;

mod rpc_field {
    pub const VERSION: usize = 0;
    pub const PTYPE: usize = 1;
    pub const FLAGS1: usize = 2;
    pub const DREP: usize = 4;
    pub const OBJECT: usize = 8;
    pub const INTERFACE: usize = 24;
    pub const ACTIVITY: usize = 40;
    pub const SEQNUM: usize = 64;
    pub const OPNUM: usize = 68;
    pub const LEN: usize = 74;
    pub const FRAGNUM: usize = 76;
}

wire_enum! {
    /// Connectionless DCE/RPC packet types (C706 §12.5.3.1; `dcerpc.pkt_type`).
    pub enum RpcType {
        Request = 0 => "request",
        Ping = 1 => "ping",
        Response = 2 => "response",
        Fault = 3 => "fault",
        Working = 4 => "working",
        Nocall = 5 => "nocall",
        Reject = 6 => "reject",
        Ack = 7 => "ack",
        ClCancel = 8 => "cl_cancel",
        Fack = 9 => "fack",
        CancelAck = 10 => "cancel_ack",
    }
}

/// flags1 bits (C706 §12.5.3.1.6).
pub const FLAG1_LAST_FRAGMENT: u8 = 0x02;
pub const FLAG1_FRAGMENT: u8 = 0x04;
pub const FLAG1_NO_FACK: u8 = 0x08;
pub const FLAG1_IDEMPOTENT: u8 = 0x20;

wire_enum! {
    /// The PNIO interfaces (UUID DEA0000x-6C97-11D1-8271-00A02442DF7D, x = the value).
    pub enum PnioInterface {
        Device = 1 => "pn_io_device",
        Controller = 2 => "pn_io_controller",
        Supervisor = 3 => "pn_io_supervisor",
        ParameterServer = 4 => "pn_io_parameterserver",
    }
}

/// The PNIO interface UUIDs' common tail: 6C97-11D1-8271-00A02442DF7D.
const PNIO_UUID_TAIL: [u8; 12] = [
    0x6C, 0x97, 0x11, 0xD1, 0x82, 0x71, 0x00, 0xA0, 0x24, 0x42, 0xDF, 0x7D,
];
/// The high half of the UUID's first field, DEA0.
const PNIO_UUID_HIGH: u16 = 0xDEA0;

wire_enum! {
    /// PNIO opnums (6-10 §5.1.1; `pn_io.opnum`).
    pub enum PnioOpnum {
        Connect = 0 => "Connect",
        Release = 1 => "Release",
        Read = 2 => "Read",
        Write = 3 => "Write",
        Control = 4 => "Control",
        ReadImplicit = 5 => "ReadImplicit",
    }
}

/// One connectionless DCE/RPC datagram (UDP payload).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rpc<'a> {
    buf: &'a [u8],
}

impl<'a> Rpc<'a> {
    /// Checks the version (4) and the 80-byte header. A body length past the
    /// datagram is an anomaly; [`Rpc::body`] is clipped to what is there.
    pub fn new_checked(buf: &'a [u8]) -> Result<Rpc<'a>, Error> {
        if let Some(&version) = buf.get(rpc_field::VERSION) {
            if version != 4 {
                return Err(Error::BadVersion(version));
            }
        }
        need(buf, RPC_HEADER_LEN)?;
        Ok(Rpc { buf })
    }

    /// Like [`Rpc::new_checked`], and the interface is a PNIO one.
    pub fn new_pnio(buf: &'a [u8]) -> Result<Rpc<'a>, Error> {
        let rpc = Rpc::new_checked(buf)?;
        match rpc.pnio_interface() {
            Some(_) => Ok(rpc),
            None => Err(Error::NotPnio),
        }
    }

    /// `dcerpc.pkt_type`
    pub fn packet_type(&self) -> RpcType {
        RpcType::from(self.buf[rpc_field::PTYPE])
    }

    /// `dcerpc.dg_flags1`
    pub fn flags1(&self) -> u8 {
        self.buf[rpc_field::FLAGS1]
    }

    /// Integers (and UUID fields) are little-endian (`dcerpc.drep.byteorder`).
    pub fn little_endian(&self) -> bool {
        self.buf[rpc_field::DREP] & 0x10 != 0
    }

    fn u16_at(&self, at: usize) -> u16 {
        let pair = [self.buf[at], self.buf[at + 1]];
        if self.little_endian() {
            u16::from_le_bytes(pair)
        } else {
            u16::from_be_bytes(pair)
        }
    }

    fn u32_at(&self, at: usize) -> u32 {
        let quad = [
            self.buf[at],
            self.buf[at + 1],
            self.buf[at + 2],
            self.buf[at + 3],
        ];
        if self.little_endian() {
            u32::from_le_bytes(quad)
        } else {
            u32::from_be_bytes(quad)
        }
    }

    /// A UUID at `at` in its canonical (big-endian) byte order.
    fn uuid_at(&self, at: usize) -> [u8; 16] {
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&self.buf[at..at + 16]);
        if self.little_endian() {
            uuid[0..4].reverse();
            uuid[4..6].reverse();
            uuid[6..8].reverse();
        }
        uuid
    }

    /// `dcerpc.dg_if_id`, canonical byte order.
    pub fn interface_uuid(&self) -> [u8; 16] {
        self.uuid_at(rpc_field::INTERFACE)
    }

    /// `dcerpc.obj_id`, canonical byte order. For PNIO: DEA00000-6C97-11D1-8271 then
    /// instance, DeviceID and VendorID (see [`Rpc::pnio_object`]).
    pub fn object_uuid(&self) -> [u8; 16] {
        self.uuid_at(rpc_field::OBJECT)
    }

    /// `dcerpc.dg_act_id`, canonical byte order.
    pub fn activity_uuid(&self) -> [u8; 16] {
        self.uuid_at(rpc_field::ACTIVITY)
    }

    /// The PNIO interface this datagram addresses, `None` for another interface.
    pub fn pnio_interface(&self) -> Option<PnioInterface> {
        let uuid = self.interface_uuid();
        if u16::from_be_bytes([uuid[0], uuid[1]]) != PNIO_UUID_HIGH
            || uuid[4..] != PNIO_UUID_TAIL
            || uuid[2] != 0
        {
            return None;
        }
        match PnioInterface::from(uuid[3]) {
            PnioInterface::Unknown(_) => None,
            known => Some(known),
        }
    }

    /// The PNIO object UUID's (instance, DeviceID, VendorID), `None` for another
    /// object UUID.
    pub fn pnio_object(&self) -> Option<(u16, u16, u16)> {
        let uuid = self.object_uuid();
        if uuid[..4] != [0xDE, 0xA0, 0x00, 0x00] || uuid[4..10] != PNIO_UUID_TAIL[..6] {
            return None;
        }
        Some((
            u16::from_be_bytes([uuid[10], uuid[11]]),
            u16::from_be_bytes([uuid[12], uuid[13]]),
            u16::from_be_bytes([uuid[14], uuid[15]]),
        ))
    }

    /// `dcerpc.dg_seqnum`
    pub fn seqnum(&self) -> u32 {
        self.u32_at(rpc_field::SEQNUM)
    }

    /// `dcerpc.opnum`
    pub fn opnum(&self) -> u16 {
        self.u16_at(rpc_field::OPNUM)
    }

    pub fn pnio_opnum(&self) -> PnioOpnum {
        match u8::try_from(self.opnum()) {
            Ok(op) => PnioOpnum::from(op),
            Err(_) => PnioOpnum::Unknown(u8::MAX),
        }
    }

    /// `dcerpc.dg_frag_len`: the body length the header announces.
    pub fn body_len(&self) -> u16 {
        self.u16_at(rpc_field::LEN)
    }

    /// `dcerpc.dg_frag_num`
    pub fn fragment_number(&self) -> u16 {
        self.u16_at(rpc_field::FRAGNUM)
    }

    /// A fragment that is not the last: its call is complete only with later ones.
    pub fn is_inner_fragment(&self) -> bool {
        self.flags1() & FLAG1_FRAGMENT != 0 && self.flags1() & FLAG1_LAST_FRAGMENT == 0
    }

    /// The body (NDR stub data), clipped to the datagram.
    pub fn body(&self) -> &'a [u8] {
        let end = (RPC_HEADER_LEN + usize::from(self.body_len())).min(self.buf.len());
        &self.buf[RPC_HEADER_LEN..end]
    }

    /// The PNIOStatus at the start of a response's stub data (first fragment), `None`
    /// for requests and short bodies.
    pub fn pnio_status(&self) -> Option<PnioStatus> {
        if self.packet_type() != RpcType::Response || self.fragment_number() != 0 {
            return None;
        }
        PnioStatus::read(self.body())
    }

    /// The NDR array header of the stub data: ArgsMaximum (requests) or PNIOStatus
    /// (responses), ArgsLength, MaximumCount, Offset, ActualCount; then the blocks.
    pub fn blocks(&self) -> PnioBlocks<'a> {
        PnioBlocks {
            data: self.body().get(20..).unwrap_or(&[]),
            at: 0,
        }
    }

    /// The Read/Write request's record index (IODReadReqHeader/IODWriteReqHeader:
    /// block header, SeqNumber, ARUUID, API, Slot, Subslot, padding, Index), `None`
    /// when the first block is not one of these.
    pub fn record_index(&self) -> Option<u16> {
        let block = self.blocks().next()?;
        // 0x0008 IODWriteReqHeader, 0x0009 IODReadReqHeader (and their responses).
        if !matches!(block.block_type & 0x7FFF, 0x0008 | 0x0009) {
            return None;
        }
        be16(block.body, 2 + 16 + 4 + 2 + 2 + 2)
    }

    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        if RPC_HEADER_LEN + usize::from(self.body_len()) > self.buf.len() {
            flags |= Anomalies::RPC_BAD_LENGTH;
        }
        if self.pnio_interface().is_some()
            && matches!(self.pnio_opnum(), PnioOpnum::Unknown(_))
            && matches!(self.packet_type(), RpcType::Request | RpcType::Response)
        {
            flags |= Anomalies::RPC_UNKNOWN_OPNUM;
        }
        Anomalies(flags)
    }
}

/// One PNIO block: BlockType, BlockLength (counted after itself), BlockVersion and
/// the rest (`pn_io.block_type`, 6-10 §5.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PnioBlock<'a> {
    pub block_type: u16,
    pub version_high: u8,
    pub version_low: u8,
    /// After BlockVersion, BlockLength - 2 bytes (clipped to the data).
    pub body: &'a [u8],
}

/// Iterator over the top-level blocks of PNIO stub data (always big-endian).
#[derive(Clone, Debug)]
pub struct PnioBlocks<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Iterator for PnioBlocks<'a> {
    type Item = PnioBlock<'a>;

    fn next(&mut self) -> Option<PnioBlock<'a>> {
        let header = self.data.get(self.at..self.at.checked_add(6)?)?;
        let block_type = u16::from_be_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if len < 2 {
            self.at = self.data.len();
            return None;
        }
        let start = self.at + 6;
        let end = (self.at + 4 + len).min(self.data.len());
        let body = self.data.get(start..end).unwrap_or(&[]);
        self.at = self.at + 4 + len;
        Some(PnioBlock {
            block_type,
            version_high: header[4],
            version_low: header[5],
            body,
        })
    }
}

/// Whether a UDP payload is a DCE/RPC datagram for a PNIO interface.
pub fn looks_like(payload: &[u8]) -> bool {
    Rpc::new_pnio(payload).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_capture::hex;

    /// profinet-mixed-rt-dcp-ptcp-cm-errors.pcap #58, after the EtherType: DCP
    /// Identify request (5/0) for NameOfStation "siemens-x208-switch", padded.
    const DCP_IDENTIFY_REQUEST: &str =
        "fefe05000300000400010018020200137369656d656e732d783230382d73776974636800e5bf00000000";
    /// Same capture #466: the Identify response (5/1) of "versamax-pns11"
    /// (IC200PNS001, vendor 0x015a device 0x0003, IO device, 192.168.1.2/24).
    const DCP_IDENTIFY_RESPONSE: &str = "feff0501000000010000006402020010000076657273616d61782d706e7331310205000e00000102020102020203020406010201000d00004943323030504e5330303100020300060000015a000302040004000001000102000e0001c0a80102ffffff00c0a801020601000400000001";
    /// Same capture #584: an RTA ERR PDU on the low-priority alarm channel, PNIOStatus
    /// CF 81 FD 0F, padded.
    const RTA_ERR: &str = "fe01800180011401fffffffe0004cf81fd0f00000000000000000000000000000000000000000000000000000000";
    /// Same capture #586: a cyclic RTC1 frame (0xC000), cycle 61152, status 0x35.
    const CYCLIC: &str = "c00080000080808000000000800080000000000000000000000000000000000000000000000000000000eee03500";
    /// profinet-iocm-read-implicit.pcap #1, UDP payload: ReadImplicit request
    /// (little-endian drep) to the device interface, object vendor 0x015a device 3.
    const READ_IMPLICIT_REQUEST: &str = "04000800100000000000a0de976cd111827100010003015a0100a0de976cd111827100a02442df7ddbabbaec1d005443b2500b01630abafd0000000001000000000000000500ffffffff54000000000040800000400000004080000000000000400000000009003c0100000a0000000000000000000000000000000000000000000000010000f84000008000000000000000000000000000000000000000000000000000";
    /// profinet-iocm-connect-error.pcapng #76, UDP payload: a Connect response
    /// (big-endian drep) with PNIOStatus DB 81 40 04.
    const CONNECT_ERROR_RESPONSE: &str = "0402280000000000dea000006c9711d18271000100020493dea000016c9711d1827100a02442df7db8b87fc1275611b28000000c29f214f40000000000000001000000000000ffffffff001400000000db81400400000000000041380000000000000000";

    #[test]
    fn dcp_identify_request() {
        let bytes = hex(DCP_IDENTIFY_REQUEST);
        let rt = RtFrame::new_checked(&bytes).expect("RT frame");
        assert_eq!(rt.frame_id(), 0xFEFE);
        assert_eq!(rt.kind(), FrameKind::DcpIdentifyRequest);
        assert_eq!(rt.cycle_counter(), None);
        let dcp = Dcp::new_checked(rt.payload()).expect("DCP");
        assert_eq!(dcp.service(), DcpService::Identify);
        assert_eq!((dcp.service_id(), dcp.service_type()), (5, 0));
        assert_eq!(dcp.xid(), 0x0300_0004);
        assert_eq!(dcp.response_delay(), 1);
        let blocks: Vec<_> = dcp.blocks().collect();
        assert_eq!(blocks.len(), 1);
        assert_eq!((blocks[0].option, blocks[0].suboption), (2, 2));
        assert_eq!(blocks[0].value(), b"siemens-x208-switch");
        assert!(!dcp.is_identify_all());
        assert!(dcp.anomalies().is_empty());
    }

    #[test]
    fn dcp_identify_response() {
        let bytes = hex(DCP_IDENTIFY_RESPONSE);
        let rt = RtFrame::new_checked(&bytes).expect("RT frame");
        assert_eq!(rt.kind(), FrameKind::DcpIdentifyResponse);
        let dcp = Dcp::new_checked(rt.payload()).expect("DCP");
        assert_eq!((dcp.service_id(), dcp.service_type()), (5, 1));
        assert_eq!(dcp.blocks().count(), 7);
        let station = dcp.station();
        assert_eq!(station.name_of_station, Some(&b"versamax-pns11"[..]));
        assert_eq!(station.type_of_station, Some(&b"IC200PNS001"[..]));
        assert_eq!(station.vendor_id, Some(0x015A));
        assert_eq!(station.device_id, Some(0x0003));
        assert_eq!(station.role, Some(ROLE_IO_DEVICE));
        assert_eq!(station.ip, Some([192, 168, 1, 2]));
        assert_eq!(station.netmask, Some([255, 255, 255, 0]));
        assert!(dcp.anomalies().is_empty());
    }

    #[test]
    fn rta_error() {
        let bytes = hex(RTA_ERR);
        let rt = RtFrame::new_checked(&bytes).expect("RT frame");
        assert_eq!(rt.kind(), FrameKind::AlarmLow);
        let rta = Rta::new_checked(rt.payload()).expect("RTA");
        assert_eq!(rta.dst_endpoint(), 0x8001);
        assert_eq!(rta.src_endpoint(), 0x8001);
        assert_eq!(rta.pdu_type(), RtaType::Err);
        assert_eq!(rta.version(), 1);
        assert_eq!(rta.var_part_len(), 4);
        let status = rta.pnio_status().expect("PNIOStatus");
        assert_eq!(status.as_u32(), 0xCF81_FD0F);
        assert!(status.is_error());
        assert!(rta.anomalies().is_empty());
    }

    #[test]
    fn cyclic_frame() {
        let bytes = hex(CYCLIC);
        let rt = RtFrame::new_checked(&bytes).expect("RT frame");
        assert_eq!(rt.kind(), FrameKind::CyclicRtc1);
        assert_eq!(rt.cycle_counter(), Some(61152));
        assert_eq!(rt.data_status(), Some(0x35));
        assert_eq!(rt.transfer_status(), Some(0));
        assert_eq!(rt.cyclic_data().map(<[u8]>::len), Some(40));
    }

    #[test]
    fn read_implicit_request_little_endian() {
        let bytes = hex(READ_IMPLICIT_REQUEST);
        assert!(looks_like(&bytes));
        let rpc = Rpc::new_pnio(&bytes).expect("PNIO RPC");
        assert!(rpc.little_endian());
        assert_eq!(rpc.packet_type(), RpcType::Request);
        assert_eq!(rpc.pnio_interface(), Some(PnioInterface::Device));
        assert_eq!(rpc.pnio_opnum(), PnioOpnum::ReadImplicit);
        assert_eq!(rpc.pnio_object(), Some((1, 3, 0x015A)));
        assert_eq!(rpc.body_len(), 84);
        assert_eq!(rpc.body().len(), 84);
        assert_eq!(rpc.pnio_status(), None);
        let block = rpc.blocks().next().expect("block");
        assert_eq!(block.block_type, 0x0009);
        assert_eq!(rpc.record_index(), Some(0xF840));
        assert!(rpc.anomalies().is_empty());
    }

    #[test]
    fn connect_error_response_big_endian() {
        let bytes = hex(CONNECT_ERROR_RESPONSE);
        let rpc = Rpc::new_pnio(&bytes).expect("PNIO RPC");
        assert!(!rpc.little_endian());
        assert_eq!(rpc.packet_type(), RpcType::Response);
        assert_eq!(rpc.pnio_opnum(), PnioOpnum::Connect);
        assert!(!rpc.is_inner_fragment());
        let status = rpc.pnio_status().expect("status");
        assert_eq!(
            (
                status.error_code,
                status.error_decode,
                status.error_code1,
                status.error_code2
            ),
            (0xDB, 0x81, 0x40, 0x04)
        );
    }

    #[test]
    fn rejects_and_anomalies() {
        assert_eq!(
            RtFrame::new_checked(&[0xC0]),
            Err(Error::Truncated { need: 2, have: 1 })
        );
        assert_eq!(
            RtFrame::new_checked(&[0xC0, 0x00, 1]),
            Err(Error::Truncated { need: 6, have: 3 })
        );
        assert_eq!(
            Dcp::new_checked(&[5, 0, 0]),
            Err(Error::Truncated { need: 10, have: 3 })
        );
        // DCPDataLength 0x40 past the frame; a block whose length runs past the data.
        let bytes = hex("0500000000010000004002020010616263");
        let dcp = Dcp::new_checked(&bytes).expect("header");
        assert_eq!(dcp.blocks().count(), 0);
        assert!(dcp.anomalies().contains(Anomalies::DCP_BAD_LENGTH));
        // Unknown service id 9 kept.
        let bytes = hex("09000000000100000000");
        let dcp = Dcp::new_checked(&bytes).expect("header");
        assert_eq!(dcp.service(), DcpService::Unknown(9));
        assert!(dcp.anomalies().contains(Anomalies::DCP_UNKNOWN_SERVICE));
        // Identify-All: the All selector.
        let bytes = hex("0500000000010001 0004 ffff0000");
        let dcp = Dcp::new_checked(&bytes).expect("identify all");
        assert!(dcp.is_identify_all());
        // RTA whose VarPartLen runs past the frame.
        let bytes = hex("800180011401fffffffe0010cf81");
        let rta = Rta::new_checked(&bytes).expect("header");
        assert_eq!(rta.pnio_status(), None);
        assert!(rta.anomalies().contains(Anomalies::RTA_BAD_PDU));
        // DCE/RPC: version 5 and short headers refused; another interface is not PNIO.
        assert_eq!(Rpc::new_checked(&[5, 0]), Err(Error::BadVersion(5)));
        assert_eq!(
            Rpc::new_checked(&[4, 0]),
            Err(Error::Truncated { need: 80, have: 2 })
        );
        let mut other = hex(CONNECT_ERROR_RESPONSE);
        other[24] = 0xE1; // the endpoint mapper's interface is not PNIO
        assert_eq!(Rpc::new_pnio(&other), Err(Error::NotPnio));
        assert!(!looks_like(&other));
        // Body length past the datagram; unknown opnum 7 kept.
        let mut long = hex(CONNECT_ERROR_RESPONSE);
        long[74] = 0x10;
        long[69] = 7;
        let rpc = Rpc::new_pnio(&long).expect("parses");
        assert_eq!(rpc.pnio_opnum(), PnioOpnum::Unknown(7));
        let anomalies = rpc.anomalies();
        assert!(anomalies.contains(Anomalies::RPC_BAD_LENGTH));
        assert!(anomalies.contains(Anomalies::RPC_UNKNOWN_OPNUM));
        assert_eq!(FrameKind::of(0xFD00), FrameKind::Reserved);
        assert_eq!(FrameKind::of(0xFF40), FrameKind::Ptcp);
    }
}
