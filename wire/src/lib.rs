//! otsensor-wire: the bottom layer of otsensor. Bytes in, typed views out: L2–L4
//! slicing of a captured frame ([`layers`]), typed zero-copy views over industrial
//! protocol PDUs (one module per protocol), their stream framers, and recognition of a
//! flow's protocol by port or payload.
//!
//! **No I/O, no clock, no project dependencies**: what a PDU means to the sensor
//! (statistics, observations, events) is `otsensor::inspect`'s business.

// Shared by the protocol modules below (textual macro scope: defined before them).
/// Declares a wire enum that keeps unknown values: `From<u8>`, `From<Self> for u8`,
/// and `name()`. `From<u8>` never yields `Unknown` for a listed value.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $value:literal => $label:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(value: u8) -> Self {
                match value {
                    $($value => $name::$variant,)+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                match value {
                    $($name::$variant => $value,)+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl $name {
            /// The spec's name, `None` for a value it does not define.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $($name::$variant => Some($label),)+
                    $name::Unknown(_) => None,
                }
            }
        }
    };
}

/// Bounds-checked integer readers shared by the views.
pub mod bytes;
/// Cisco Discovery Protocol (LLC SNAP): device id, software version, platform, address.
pub mod cdp;
/// DHCP/BOOTP (UDP 67/68): the fixed header and identity options (12, 55, 60, 81).
pub mod dhcp;
/// DNP3 (IEEE 1815): link frames with CRCs, transport reassembly, application headers.
pub mod dnp3;
/// The DNS message format shared by mDNS and NBNS: header, records, names.
pub mod dns;
/// IEC 61850 GOOSE (EtherType 0x88B8): header and BER-encoded goosePdu.
pub mod goose;
/// IEC 60870-5-104: APCI (I/S/U formats) and ASDUs with their information objects.
pub mod iec104;
/// L2–L4 slicing of one frame (etherparse) into the fields the pipeline keys on.
pub mod layers;
/// LLDP (IEEE 802.1AB, EtherType 0x88CC): chassis, port, system name/description.
pub mod lldp;
/// Multicast DNS / DNS-SD (UDP 5353): host names, service instances, TXT keys.
pub mod mdns;
/// IEC 61850 / ISO 9506 MMS over ISO-on-TCP: session, presentation and ACSE walked
/// to the BER-encoded MMS PDU.
pub mod mms;
/// Modbus/TCP: MBAP framing, function codes, device identification, UMAS (FC 90).
pub mod modbus;
/// MQTT 3.1/3.1.1/5.0 control packets: fixed header, CONNECT, CONNACK, PUBLISH, SUBSCRIBE.
pub mod mqtt;
/// NetBIOS Name Service (UDP 137): NetBIOS names, registrations, NB/NBSTAT data.
pub mod nbns;
/// OPC UA binary: UA TCP messages, secure channel headers, service ids and headers.
pub mod opcua;
/// PROFINET IO: real-time frames (EtherType 0x8892: cyclic data, alarms, DCP, PTCP)
/// and the context manager's connectionless DCE/RPC on UDP 34964.
pub mod profinet;
/// SNMP v1/v2c (UDP 161): PDU header and variable bindings (never the community).
pub mod snmp;
/// Test support (feature `test-support`): a shared capture's TCP streams framed by a
/// view's framer, and tshark's expected histograms.
#[cfg(any(test, feature = "test-support"))]
pub mod test_capture;

use serde::Serialize;

/// BACnet/IP: BVLC, NPDU, APDU and a small tag reader (ASHRAE 135 annex J, clauses 6, 20).
pub mod bacnet;
/// CIP messages (message router requests and replies, paths, MSP, Unconnected Send).
pub mod cip;
/// EtherNet/IP encapsulation, common packet format items and ListIdentity replies.
pub mod enip;
/// S7comm over TPKT/COTP (ISO-on-TCP): framing, COTP, the S7comm PDU.
pub mod s7comm;
/// S7comm-plus (S7-1200/1500, protocol id 0x72): frame header, integrity part, data
/// part header (opcode, function, sequence, session), trailer.
pub mod s7commplus;
/// CIP (ODVA) and BACnet (ASHRAE) vendor id names, generated from tshark.
pub mod vendors;

/// The application protocols the sensor names in counts and events.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Modbus,
    Dnp3,
    Bacnet,
    Enip,
    S7comm,
    S7commPlus,
    Iec104,
    OpcUa,
    Mqtt,
    Goose,
    Mms,
    Profinet,
    Dhcp,
    Lldp,
    Cdp,
    Nbns,
    Mdns,
    Snmp,
}

impl Protocol {
    pub const ALL: [Protocol; 18] = [
        Protocol::Modbus,
        Protocol::Dnp3,
        Protocol::Bacnet,
        Protocol::Enip,
        Protocol::S7comm,
        Protocol::S7commPlus,
        Protocol::Iec104,
        Protocol::OpcUa,
        Protocol::Mqtt,
        Protocol::Goose,
        Protocol::Mms,
        Protocol::Profinet,
        Protocol::Dhcp,
        Protocol::Lldp,
        Protocol::Cdp,
        Protocol::Nbns,
        Protocol::Mdns,
        Protocol::Snmp,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The name used in summaries, EVE `app_proto` and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Modbus => "modbus",
            Protocol::Dnp3 => "dnp3",
            Protocol::Bacnet => "bacnet",
            Protocol::Enip => "enip",
            Protocol::S7comm => "s7comm",
            Protocol::S7commPlus => "s7commplus",
            Protocol::Iec104 => "iec104",
            Protocol::OpcUa => "opcua",
            Protocol::Mqtt => "mqtt",
            Protocol::Goose => "goose",
            Protocol::Dhcp => "dhcp",
            Protocol::Lldp => "lldp",
            Protocol::Cdp => "cdp",
            Protocol::Nbns => "nbns",
            Protocol::Mdns => "mdns",
            Protocol::Snmp => "snmp",
            Protocol::Mms => "mms",
            Protocol::Profinet => "profinet",
        }
    }

    /// IT protocols a device names itself in (DHCP, LLDP, CDP, NBNS, mDNS, SNMP):
    /// they feed the inventory only. They never name a flow, take no client/server
    /// roles and raise no alert of their own (see [`Protocol::identification_by_ports`]).
    pub fn is_identification(self) -> bool {
        matches!(
            self,
            Protocol::Dhcp
                | Protocol::Lldp
                | Protocol::Cdp
                | Protocol::Nbns
                | Protocol::Mdns
                | Protocol::Snmp
        )
    }

    /// The identification protocol of a UDP datagram between these ports: dissected
    /// per datagram, without naming the flow (whose protocol stays what ports or
    /// payload say). SNMP only from the agent (responses and v1 traps carry the
    /// agent's own values); requests are not read.
    pub fn identification_by_ports(src_port: u16, dst_port: u16) -> Option<Protocol> {
        if dhcp::is_port(src_port, dst_port) {
            Some(Protocol::Dhcp)
        } else if src_port == mdns::PORT || dst_port == mdns::PORT {
            Some(Protocol::Mdns)
        } else if src_port == nbns::PORT || dst_port == nbns::PORT {
            Some(Protocol::Nbns)
        } else if src_port == snmp::AGENT_PORT || dst_port == snmp::TRAP_PORT {
            Some(Protocol::Snmp)
        } else {
            None
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The first guess from a well-known port (payload recognition refines it).
    pub fn by_port(ip_protocol: u8, port: u16) -> Option<Protocol> {
        match (ip_protocol, port) {
            (6, 502) => Some(Protocol::Modbus),
            (6 | 17, 20000) => Some(Protocol::Dnp3),
            (17, 47808..=47823) => Some(Protocol::Bacnet),
            (6 | 17, 44818) | (17, 2222) => Some(Protocol::Enip),
            (6, 102) => Some(Protocol::S7comm),
            (6, 2404) => Some(Protocol::Iec104),
            (6, 4840) => Some(Protocol::OpcUa),
            (6, 1883 | 8883) => Some(Protocol::Mqtt),
            (17, profinet::UDP_PORT) => Some(Protocol::Profinet),
            _ => None,
        }
    }

    /// The protocol carried directly in an Ethernet frame of this EtherType.
    pub fn by_ether_type(ether_type: u16) -> Option<Protocol> {
        match ether_type {
            goose::ETHER_TYPE => Some(Protocol::Goose),
            lldp::ETHER_TYPE => Some(Protocol::Lldp),
            profinet::ETHER_TYPE => Some(Protocol::Profinet),
            _ => None,
        }
    }
}

/// The answer of a stream framer looking at the bytes buffered for one direction of a
/// TCP flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Not enough bytes yet: at least this many in total are needed.
    Need(usize),
    /// A whole PDU of this many bytes starts at the beginning of the buffer.
    Frame(usize),
    /// The buffer does not start with a PDU: skip this many bytes and try again.
    Resync(usize),
}

/// Whether a PDU travels from client to server or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Request,
    Response,
}

/// The stream framer of a protocol carried over TCP (also used on datagrams that may
/// hold several PDUs), `None` where the sensor has no dissector yet.
pub fn framer(protocol: Protocol) -> Option<fn(&[u8]) -> Framing> {
    match protocol {
        Protocol::Modbus => Some(modbus::frame),
        Protocol::Dnp3 => Some(dnp3::frame),
        Protocol::Enip => Some(enip::frame),
        // TPKT framing; the ISO-on-TCP inspector tells S7comm, S7comm-plus and MMS
        // apart per COTP DT.
        Protocol::S7comm | Protocol::S7commPlus | Protocol::Mms => Some(s7comm::frame),
        Protocol::Iec104 => Some(iec104::frame),
        Protocol::OpcUa => Some(opcua::frame),
        Protocol::Mqtt => Some(mqtt::frame),
        _ => None,
    }
}

/// Whether a datagram of this protocol is one PDU even when a stream framer exists
/// (EtherNet/IP over UDP carries one encapsulation or one class-1 I/O packet).
pub fn datagram_is_one_pdu(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::Enip | Protocol::Bacnet | Protocol::Profinet
    )
}

/// Recognises a protocol by its payload signature (a flow on an unexpected port).
pub fn recognise(ip_protocol: u8, payload: &[u8]) -> Option<Protocol> {
    match ip_protocol {
        6 if modbus::looks_like(payload) => Some(Protocol::Modbus),
        6 if s7comm::looks_like(payload) => Some(Protocol::S7comm),
        6 if mms::looks_like(payload) => Some(Protocol::Mms),
        6 if enip::looks_like(payload) => Some(Protocol::Enip),
        6 if iec104::looks_like(payload) => Some(Protocol::Iec104),
        6 if opcua::looks_like(payload) => Some(Protocol::OpcUa),
        6 if mqtt::looks_like(payload) => Some(Protocol::Mqtt),
        6 | 17 if dnp3::looks_like(payload) => Some(Protocol::Dnp3),
        17 if bacnet::looks_like(payload) => Some(Protocol::Bacnet),
        17 if profinet::looks_like(payload) => Some(Protocol::Profinet),
        17 if enip::looks_like(payload) || enip::looks_like_io(payload) => Some(Protocol::Enip),
        _ => None,
    }
}
