//! Builders of valid industrial PDUs (and of the IT identification protocols the
//! sensor reads: CDP, NBNS, SNMP), one file per protocol. Each builder appends the
//! PDU's bytes to a buffer and returns the function key the ground truth counts it under
//! (see `crate::gen::truth` for the key formats).

pub mod bacnet;
pub mod ber;
pub mod cdp;
pub mod dnp3;
pub mod enip;
pub mod goose;
pub mod iec104;
pub mod mms;
pub mod modbus;
pub mod mqtt;
pub mod nbns;
pub mod opcua;
pub mod profinet;
pub mod s7comm;
pub mod s7commplus;
pub mod snmp;

/// The protocols whose PDUs the ground truth counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
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
    Profinet,
    Cdp,
    Nbns,
    Snmp,
    Mms,
}

impl Proto {
    /// The name used by the sensor's summary (`otsensor_wire::Protocol::name`).
    pub fn name(self) -> &'static str {
        match self {
            Proto::Modbus => "modbus",
            Proto::Dnp3 => "dnp3",
            Proto::Bacnet => "bacnet",
            Proto::Enip => "enip",
            Proto::S7comm => "s7comm",
            Proto::S7commPlus => "s7commplus",
            Proto::Iec104 => "iec104",
            Proto::OpcUa => "opcua",
            Proto::Mqtt => "mqtt",
            Proto::Goose => "goose",
            Proto::Profinet => "profinet",
            Proto::Cdp => "cdp",
            Proto::Nbns => "nbns",
            Proto::Snmp => "snmp",
            Proto::Mms => "mms",
        }
    }
}

/// One entry of the ground truth: its protocol and function key, and whether it is a
/// PDU of its own or a message nested in one (CIP inside an EtherNet/IP encapsulation
/// counts under `functions` but not under `protocols`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pdu {
    pub proto: Proto,
    pub function: &'static str,
    pub counts_as_pdu: bool,
}
