//! Commands and protocol errors in words, for alert messages: the inspection modules
//! pack each protocol's operation into one `u32` code (baseline keys stay small), and
//! this module, which knows those packings, turns a code back into the protocol's own
//! names ("Modbus exception 2 (Illegal Data Address) to Read Coils (function 1)").
//! Only called when an alert is raised, never per packet.

use otsensor_wire::{
    bacnet, cip, dnp3, enip, iec104, mms, modbus, profinet, s7comm, s7commplus, Protocol,
};

use crate::observe::{CommandKind, ProtocolErrorKind};

/// Encapsulation-level codes of EtherNet/IP, kept apart from CIP codes (`enip.rs`).
const ENIP_ENCAPSULATION: u32 = 0x1_0000;
/// S7comm codes: userdata functions and parameter errors carry this tag (`s7comm.rs`).
const S7_USERDATA: u32 = 0x1_0000;
/// S7comm codes: a failed item's return code carries this tag (`s7comm.rs`).
const S7_ITEM: u32 = 0x2_0000;
/// BACnet codes: unconfirmed services carry this tag (`bacnet.rs`).
const BACNET_UNCONFIRMED: u32 = 0x100;

/// What a command does, in words ("Restart" for [`CommandKind::Restart`]).
pub fn command_kind(kind: CommandKind) -> &'static str {
    match kind {
        CommandKind::Read => "Read",
        CommandKind::Write => "Write",
        CommandKind::Program => "Programming",
        CommandKind::Stop => "Stop",
        CommandKind::Start => "Start",
        CommandKind::Restart => "Restart",
        CommandKind::DisableCommunication => "Communication disable",
        CommandKind::Firmware => "Firmware",
        CommandKind::Diagnostic => "Diagnostic",
        CommandKind::FileTransfer => "File transfer",
        CommandKind::Discovery => "Discovery",
        CommandKind::Operate => "Operate",
        CommandKind::TimeSync => "Time synchronisation",
        CommandKind::Other => "Other",
    }
}

/// A command code of `protocol` in the protocol's own words.
pub fn command(protocol: Protocol, code: u32) -> String {
    let byte = (code & 0xFF) as u8;
    match protocol {
        Protocol::Modbus => {
            let function = (code >> 8) as u8;
            if code > 0xFF && modbus::FunctionCode::from(function) == modbus::FunctionCode::Umas {
                let umas = modbus::UmasFunction(byte);
                match umas.name() {
                    Some(name) => format!("Modbus UMAS {name} (function 90/{byte:#04x})"),
                    None => format!("Modbus UMAS function {byte:#04x} (function 90)"),
                }
            } else {
                modbus_function(byte)
            }
        }
        Protocol::S7comm if code & S7_USERDATA != 0 => {
            let group = ((code >> 8) & 0xFF) as u8;
            let subfunction = byte;
            match (group, subfunction) {
                (4, 1) => "S7comm Read SZL (userdata CPU functions)".to_owned(),
                _ => format!(
                    "S7comm userdata {} subfunction {subfunction}",
                    s7_userdata_group(group)
                ),
            }
        }
        Protocol::S7comm => {
            let function = s7comm::Function::from(byte);
            format!("S7comm {} (function {byte:#04x})", function.name())
        }
        Protocol::Dnp3 => match dnp3::FunctionCode::from(byte).name() {
            Some(name) => format!("DNP3 {name} (function {byte})"),
            None => format!("DNP3 function {byte}"),
        },
        Protocol::Enip if code & ENIP_ENCAPSULATION != 0 => {
            let command = enip::Command::from((code & 0xFFFF) as u16);
            format!(
                "EtherNet/IP {} (command {:#06x})",
                command.name(),
                code & 0xFFFF
            )
        }
        Protocol::Enip => {
            let class = code >> 8;
            let service = match cip::common_service_name(byte) {
                Some(name) => format!("{name} ({byte:#04x})"),
                None => format!("service {byte:#04x}"),
            };
            if class == 0 {
                format!("CIP {service}")
            } else {
                format!("CIP {service} on class {class:#x}")
            }
        }
        Protocol::Bacnet if code & BACNET_UNCONFIRMED != 0 => {
            match bacnet::unconfirmed_service_name(byte) {
                Some(name) => format!("BACnet {name} (unconfirmed service {byte})"),
                None => format!("BACnet unconfirmed service {byte}"),
            }
        }
        Protocol::Bacnet => match bacnet::confirmed_service_name(byte) {
            Some(name) => format!("BACnet {name} (confirmed service {byte})"),
            None => format!("BACnet confirmed service {byte}"),
        },
        Protocol::Iec104 => match iec104::TypeId::from(byte).name() {
            Some(name) => format!("IEC 104 {name} (type {byte})"),
            None => format!("IEC 104 type {byte}"),
        },
        Protocol::S7commPlus if code & super::s7commplus::CPU_STATE != 0 => {
            let state = match code & 0xFF {
                1 => "STOP".to_owned(),
                3 => "RUN".to_owned(),
                other => format!("state {other}"),
            };
            format!("S7comm-plus SetVariable of the CPU operating state to {state}")
        }
        Protocol::S7commPlus => {
            let function = s7commplus::Function(code as u16);
            match function.name() {
                Some(name) => format!("S7comm-plus {name} (function {code:#06x})"),
                None => format!("S7comm-plus function {code:#06x}"),
            }
        }
        Protocol::Mms => match mms::ConfirmedService(code).name() {
            Some(name) => format!("MMS {name} (confirmed service {code})"),
            None => format!("MMS confirmed service {code}"),
        },
        Protocol::Profinet if code & PROFINET_DCP != 0 => {
            let service = ((code >> 16) & 0xFF) as u8;
            let (option, suboption) = (((code >> 8) & 0xFF) as u8, byte);
            format!(
                "PROFINET DCP {} {} ({option}/{suboption})",
                dcp_service(service),
                dcp_option(option, suboption)
            )
        }
        Protocol::Profinet => match u8::try_from(code)
            .ok()
            .and_then(|op| profinet::PnioOpnum::from(op).name())
        {
            Some(name) => format!("PROFINET IO-CM {name} (opnum {code})"),
            None => format!("PROFINET IO-CM opnum {code}"),
        },
        other => format!("{} command {code:#x}", display(other)),
    }
}

/// PROFINET codes: DCP services carry this tag (`inspect/profinet.rs`).
const PROFINET_DCP: u32 = 0x0100_0000;

fn dcp_service(service: u8) -> String {
    match profinet::DcpService::from(service).name() {
        Some(name) => name.to_owned(),
        None => format!("service {service}"),
    }
}

/// DCP option/suboption names (6-10 §4.3.1.4, Wireshark `pn_dcp.suboption_*`).
fn dcp_option(option: u8, suboption: u8) -> &'static str {
    match (option, suboption) {
        (1, 1) => "MAC address",
        (1, 2) => "IP parameter",
        (1, 3) => "full IP suite",
        (1, _) => "IP option",
        (2, 1) => "type of station",
        (2, 2) => "NameOfStation",
        (2, 3) => "device id",
        (2, 4) => "device role",
        (2, 6) => "alias name",
        (2, _) => "device properties",
        (3, _) => "DHCP",
        (5, 1) => "start transaction",
        (5, 2) => "end transaction",
        (5, 3) => "signal (flash LED)",
        (5, 5) => "factory reset",
        (5, 6) => "reset to factory",
        (5, _) => "control",
        (6, _) => "device initiative",
        (0xFF, 0xFF) => "all stations",
        _ => "option",
    }
}

/// The protocol's name as its specification writes it.
pub fn display(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Modbus => "Modbus",
        Protocol::Dnp3 => "DNP3",
        Protocol::Bacnet => "BACnet",
        Protocol::Enip => "EtherNet/IP",
        Protocol::S7comm => "S7comm",
        Protocol::S7commPlus => "S7comm-plus",
        Protocol::Iec104 => "IEC 104",
        Protocol::OpcUa => "OPC UA",
        Protocol::Mqtt => "MQTT",
        Protocol::Goose => "GOOSE",
        Protocol::Dhcp => "DHCP",
        Protocol::Lldp => "LLDP",
        Protocol::Cdp => "CDP",
        Protocol::Nbns => "NetBIOS Name Service",
        Protocol::Mdns => "mDNS",
        Protocol::Snmp => "SNMP",
        Protocol::Mms => "MMS",
        Protocol::Profinet => "PROFINET",
    }
}

fn modbus_function(function: u8) -> String {
    match modbus::FunctionCode::from(function).name() {
        Some(name) => format!("Modbus {name} (function {function})"),
        None => format!("Modbus function {function}"),
    }
}

/// S7comm userdata function groups (Wireshark `s7comm.param.userdata.funcgroup`).
fn s7_userdata_group(group: u8) -> String {
    let name = match group {
        1 => "programmer commands",
        2 => "cyclic data",
        3 => "block functions",
        4 => "CPU functions",
        5 => "security",
        6 => "PBC BSEND/BRECV",
        7 => "time functions",
        15 => "NC programming",
        _ => return format!("group {group}"),
    };
    name.to_owned()
}

/// A protocol error of `protocol` in the protocol's own words.
pub fn error(protocol: Protocol, kind: ProtocolErrorKind, code: u32) -> String {
    let name = display(protocol);
    match (protocol, kind) {
        (_, ProtocolErrorKind::Malformed) => format!("malformed {name} message"),
        (Protocol::Modbus, ProtocolErrorKind::ErrorReply) => {
            let function = ((code >> 16) & 0xFF) as u8;
            let exception = (code & 0xFF) as u8;
            let operation = modbus_function(function);
            let operation = operation.trim_start_matches("Modbus ");
            match modbus::ExceptionCode::from(exception).name() {
                Some(text) => format!("Modbus exception {exception} ({text}) to {operation}"),
                None => format!("Modbus exception {exception} (undefined) to {operation}"),
            }
        }
        (Protocol::Modbus, ProtocolErrorKind::SpecViolation) => {
            let flags: Vec<&str> = modbus::Anomalies::ALL
                .iter()
                .filter(|(flag, _)| code & u32::from(*flag) != 0)
                .map(|(_, label)| *label)
                .collect();
            format!(
                "Modbus message that breaks the specification ({})",
                flags.join(", ")
            )
        }
        (Protocol::S7comm, ProtocolErrorKind::ErrorReply) if code & S7_ITEM != 0 => {
            let value = (code & 0xFF) as u8;
            format!(
                "S7comm item failed with return code {value:#04x} ({})",
                s7_item_return(value)
            )
        }
        (Protocol::S7comm, ProtocolErrorKind::ErrorReply) if code & S7_USERDATA != 0 => {
            format!("S7comm userdata error {:#06x}", code & 0xFFFF)
        }
        (Protocol::S7comm, ProtocolErrorKind::ErrorReply) => {
            let class = ((code >> 8) & 0xFF) as u8;
            format!(
                "S7comm error reply: {} (class {class:#04x}, code {:#04x})",
                s7_error_class(class),
                code & 0xFF
            )
        }
        (Protocol::S7comm, ProtocolErrorKind::SpecViolation) => {
            format!("S7comm PDU with {code} bytes after its data part")
        }
        (Protocol::Dnp3, ProtocolErrorKind::DeviceIndication) => {
            let text = match code as u16 {
                dnp3::Iin::NO_FUNC_CODE_SUPPORT => "function code not supported",
                dnp3::Iin::OBJECT_UNKNOWN => "object unknown",
                dnp3::Iin::PARAMETER_ERROR => "parameter error",
                dnp3::Iin::EVENT_BUFFER_OVERFLOW => "event buffer overflow",
                dnp3::Iin::ALREADY_EXECUTING => "operation already executing",
                dnp3::Iin::CONFIG_CORRUPT => "configuration corrupt",
                _ => "indication",
            };
            format!("DNP3 outstation rejected the request: {text} (IIN {code:#06x})")
        }
        (Protocol::Dnp3, ProtocolErrorKind::AuthFailure) => format!(
            "DNP3 secure authentication error {code} ({})",
            dnp3_auth_error(code)
        ),
        (Protocol::Enip, ProtocolErrorKind::ErrorReply) if code & ENIP_ENCAPSULATION != 0 => {
            let status = code & 0xFFFF;
            format!(
                "EtherNet/IP encapsulation error {status:#06x} ({})",
                enip_status(status)
            )
        }
        (Protocol::Enip, ProtocolErrorKind::ErrorReply) => {
            let service = ((code >> 8) & 0x7F) as u8;
            let status = (code & 0xFF) as u8;
            let service = match cip::common_service_name(service) {
                Some(text) => format!("{text} ({service:#04x})"),
                None => format!("service {service:#04x}"),
            };
            format!(
                "CIP {service} failed: general status {status:#04x} ({})",
                cip_general_status(status)
            )
        }
        (Protocol::Bacnet, ProtocolErrorKind::ErrorReply) => {
            let class = (code >> 16) as u16;
            let error = (code & 0xFFFF) as u16;
            format!(
                "BACnet Error: class {} ({class}), code {} ({error})",
                bacnet_error_class(class),
                bacnet_error_code(error)
            )
        }
        (Protocol::Bacnet, ProtocolErrorKind::Rejected) => {
            let apdu = (code >> 8) as u8;
            let reason = (code & 0xFF) as u8;
            if apdu == bacnet::ApduType::Reject.code() {
                format!(
                    "BACnet Reject: {} (reason {reason})",
                    bacnet_reject_reason(reason)
                )
            } else {
                format!(
                    "BACnet Abort: {} (reason {reason})",
                    bacnet_abort_reason(reason)
                )
            }
        }
        (Protocol::Iec104, ProtocolErrorKind::ErrorReply) => {
            let type_id = ((code >> 8) & 0xFF) as u8;
            let cause = (code & 0x3F) as u8;
            let type_name = iec104::TypeId::from(type_id)
                .name()
                .map_or_else(|| format!("type {type_id}"), str::to_owned);
            let cause_name = iec104::Cause::from(cause).name().map_or_else(
                || format!("cause {cause}"),
                |c| format!("cause {c} ({cause})"),
            );
            format!("IEC 104 negative or unknown reply to {type_name}, {cause_name}")
        }
        (Protocol::Iec104, ProtocolErrorKind::UnknownFunction) => {
            format!("IEC 104 unknown type identification {code}")
        }
        (Protocol::Mqtt, ProtocolErrorKind::AuthFailure | ProtocolErrorKind::Rejected) => {
            format!(
                "MQTT refused: {} (code {code:#04x})",
                mqtt_reason(code as u8)
            )
        }
        (Protocol::Mms, ProtocolErrorKind::ErrorReply) if code == 0xFF_FFFF => {
            "MMS error PDU".to_owned()
        }
        (Protocol::Mms, ProtocolErrorKind::ErrorReply) => {
            let class = (code >> 16) & 0xFF;
            format!(
                "MMS error: class {} ({class}), code {}",
                super::mms::error_class_name(class),
                code & 0xFFFF
            )
        }
        (Protocol::Mms, ProtocolErrorKind::Rejected) => {
            let kind = (code >> 16) & 0xFF;
            format!(
                "MMS reject: {} ({kind}), reason {}",
                super::mms::reject_type_name(kind),
                code & 0xFFFF
            )
        }
        (Protocol::Mms, ProtocolErrorKind::SpecViolation) => {
            let flags: Vec<&str> = mms::Anomalies(code as u16).labels().collect();
            format!(
                "MMS PDU that breaks the specification ({})",
                flags.join(", ")
            )
        }
        (Protocol::Profinet, ProtocolErrorKind::ErrorReply) if code & PROFINET_DCP != 0 => {
            let service = ((code >> 16) & 0xFF) as u8;
            let (option, suboption) = (((code >> 8) & 0xFF) as u8, (code & 0xFF) as u8);
            let error = code >> 28;
            if option == 0 {
                format!("PROFINET DCP {} not supported", dcp_service(service))
            } else {
                format!(
                    "PROFINET DCP {} {} ({option}/{suboption}) failed: block error {error}",
                    dcp_service(service),
                    dcp_option(option, suboption)
                )
            }
        }
        (Protocol::Profinet, ProtocolErrorKind::ErrorReply) => {
            let [a, b, c, d] = code.to_be_bytes();
            format!(
                "PROFINET IO error status {a:#04x}/{b:#04x}/{c:#04x}/{d:#04x} \
                 (ErrorCode/ErrorDecode/ErrorCode1/ErrorCode2)"
            )
        }
        (Protocol::Profinet, ProtocolErrorKind::Rejected) => {
            let name = profinet::RpcType::from(code as u8)
                .name()
                .unwrap_or("reply");
            format!("PROFINET IO-CM call refused: DCE/RPC {name}")
        }
        (Protocol::OpcUa, ProtocolErrorKind::ErrorReply) => {
            format!("OPC UA error message, status {code:#010x}")
        }
        (_, ProtocolErrorKind::UnknownFunction) => format!("{name} unknown function code {code}"),
        (_, ProtocolErrorKind::ErrorReply) => format!("{name} error reply (code {code:#x})"),
        (_, ProtocolErrorKind::Rejected) => format!("{name} request rejected (code {code:#x})"),
        (_, ProtocolErrorKind::DeviceIndication) => {
            format!("{name} device indication (code {code:#x})")
        }
        (_, ProtocolErrorKind::AuthFailure) => {
            format!("{name} authentication failure (code {code:#x})")
        }
        (_, ProtocolErrorKind::SpecViolation) => {
            format!("{name} message that breaks the specification (code {code:#x})")
        }
    }
}

/// S7comm header error classes (Wireshark `s7comm.header.errcls`).
fn s7_error_class(class: u8) -> &'static str {
    match class {
        0x00 => "no error",
        0x81 => "application relationship error",
        0x82 => "object definition error",
        0x83 => "no resources available",
        0x84 => "error on service processing",
        0x85 => "error on supplies",
        0x87 => "access error",
        _ => "unknown error class",
    }
}

/// S7comm item return codes (Wireshark `s7comm.data.returncode`).
fn s7_item_return(code: u8) -> &'static str {
    match code {
        0x01 => "hardware error",
        0x03 => "accessing the object not allowed",
        0x05 => "invalid address",
        0x06 => "data type not supported",
        0x07 => "data type inconsistent",
        0x0A => "object does not exist",
        _ => "unknown return code",
    }
}

/// DNP3 SAv5 authentication error codes (IEEE 1815-2012, g120v7).
fn dnp3_auth_error(code: u32) -> &'static str {
    match code {
        1 => "authentication failed",
        2 => "unexpected response",
        3 => "no response",
        4 => "aggressive mode not supported",
        5 => "MAC algorithm not supported",
        6 => "key wrap algorithm not supported",
        7 => "authorization failed",
        _ => "other",
    }
}

/// EtherNet/IP encapsulation status codes (CIP Vol 2, table 2-3.3).
fn enip_status(status: u32) -> &'static str {
    match status {
        0x0001 => "invalid or unsupported command",
        0x0002 => "insufficient memory",
        0x0003 => "incorrect data",
        0x0064 => "invalid session handle",
        0x0065 => "invalid length",
        0x0069 => "unsupported protocol revision",
        _ => "unknown status",
    }
}

/// CIP general status codes (CIP Vol 1, appendix B).
fn cip_general_status(status: u8) -> &'static str {
    match status {
        0x01 => "connection failure",
        0x02 => "resource unavailable",
        0x03 => "invalid parameter value",
        0x04 => "path segment error",
        0x05 => "path destination unknown",
        0x06 => "partial transfer",
        0x07 => "connection lost",
        0x08 => "service not supported",
        0x09 => "invalid attribute value",
        0x0A => "attribute list error",
        0x0B => "already in requested mode/state",
        0x0C => "object state conflict",
        0x0D => "object already exists",
        0x0E => "attribute not settable",
        0x0F => "privilege violation",
        0x10 => "device state conflict",
        0x11 => "reply data too large",
        0x12 => "fragmentation of a primitive value",
        0x13 => "not enough data",
        0x14 => "attribute not supported",
        0x15 => "too much data",
        0x16 => "object does not exist",
        0x17 => "service fragmentation sequence not in progress",
        0x18 => "no stored attribute data",
        0x19 => "store operation failure",
        0x1A => "routing failure, request packet too large",
        0x1B => "routing failure, response packet too large",
        0x1C => "missing attribute list entry data",
        0x1D => "invalid attribute value list",
        0x1E => "embedded service error",
        0x1F => "vendor specific error",
        0x20 => "invalid parameter",
        0x21 => "write-once value or medium already written",
        0x22 => "invalid reply received",
        0x25 => "key failure in path",
        0x26 => "path size invalid",
        0x27 => "unexpected attribute in list",
        0x28 => "invalid member id",
        0x29 => "member not settable",
        _ => "unknown status",
    }
}

/// BACnetErrorClass (ASHRAE 135 clause 21).
fn bacnet_error_class(class: u16) -> &'static str {
    match class {
        0 => "device",
        1 => "object",
        2 => "property",
        3 => "resources",
        4 => "security",
        5 => "services",
        6 => "vt",
        7 => "communication",
        _ => "unknown",
    }
}

/// BACnetErrorCode 0–42 (ASHRAE 135 clause 21).
fn bacnet_error_code(code: u16) -> &'static str {
    const NAMES: [&str; 43] = [
        "other",
        "authentication-failed",
        "configuration-in-progress",
        "device-busy",
        "dynamic-creation-not-supported",
        "file-access-denied",
        "incompatible-security-levels",
        "inconsistent-parameters",
        "inconsistent-selection-criterion",
        "invalid-data-type",
        "invalid-file-access-method",
        "invalid-file-start-position",
        "invalid-operator-name",
        "invalid-parameter-data-type",
        "invalid-time-stamp",
        "key-generation-error",
        "missing-required-parameter",
        "no-objects-of-specified-type",
        "no-space-for-object",
        "no-space-to-add-list-element",
        "no-space-to-write-property",
        "no-vt-sessions-available",
        "property-is-not-a-list",
        "object-deletion-not-permitted",
        "object-identifier-already-exists",
        "operational-problem",
        "password-failure",
        "read-access-denied",
        "security-not-supported",
        "service-request-denied",
        "timeout",
        "unknown-object",
        "unknown-property",
        "unknown",
        "unknown-vt-class",
        "unknown-vt-session",
        "unsupported-object-type",
        "value-out-of-range",
        "vt-session-already-closed",
        "vt-session-termination-failure",
        "write-access-denied",
        "character-set-not-supported",
        "invalid-array-index",
    ];
    NAMES.get(usize::from(code)).copied().unwrap_or("unknown")
}

/// BACnetRejectReason (ASHRAE 135 clause 21).
fn bacnet_reject_reason(reason: u8) -> &'static str {
    match reason {
        0 => "other",
        1 => "buffer-overflow",
        2 => "inconsistent-parameters",
        3 => "invalid-parameter-data-type",
        4 => "invalid-tag",
        5 => "missing-required-parameter",
        6 => "parameter-out-of-range",
        7 => "too-many-arguments",
        8 => "undefined-enumeration",
        9 => "unrecognized-service",
        _ => "unknown",
    }
}

/// BACnetAbortReason (ASHRAE 135 clause 21).
fn bacnet_abort_reason(reason: u8) -> &'static str {
    match reason {
        0 => "other",
        1 => "buffer-overflow",
        2 => "invalid-apdu-in-this-state",
        3 => "preempted-by-higher-priority-task",
        4 => "segmentation-not-supported",
        5 => "security-error",
        6 => "insufficient-security",
        7 => "window-size-out-of-range",
        8 => "application-exceeded-reply-time",
        9 => "out-of-resources",
        10 => "tsm-timeout",
        11 => "apdu-too-long",
        _ => "unknown",
    }
}

/// MQTT CONNACK return codes (3.1.1 §3.2.2.3) and 5.0 reason codes ≥ 0x80 (§2.4).
fn mqtt_reason(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        0x80 => "unspecified error",
        0x84 => "unsupported protocol version",
        0x85 => "client identifier not valid",
        0x86 => "bad user name or password",
        0x87 => "not authorized",
        0x88 => "server unavailable",
        0x8A => "banned",
        0x8F => "topic filter invalid",
        0x97 => "quota exceeded",
        _ => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modbus_exceptions_and_functions_read_as_the_spec_names_them() {
        // Exception 2 to Read Coils: the code `modbus.rs` reports (function << 16 | exception).
        assert_eq!(
            error(
                Protocol::Modbus,
                ProtocolErrorKind::ErrorReply,
                (1 << 16) | 2
            ),
            "Modbus exception 2 (Illegal Data Address) to Read Coils (function 1)"
        );
        assert_eq!(
            command(Protocol::Modbus, 6),
            "Modbus Write Single Register (function 6)"
        );
        // UMAS STOP_PLC: function 90 with the UMAS function in the low byte.
        assert_eq!(
            command(Protocol::Modbus, (90 << 8) | 0x41),
            "Modbus UMAS STOP_PLC (function 90/0x41)"
        );
        let spec = error(
            Protocol::Modbus,
            ProtocolErrorKind::SpecViolation,
            u32::from(modbus::Anomalies::QUANTITY_RANGE | modbus::Anomalies::COIL_VALUE),
        );
        assert!(spec.contains("quantity_range, coil_value"), "{spec}");
    }

    #[test]
    fn restarts_and_stops_are_named_exactly() {
        assert_eq!(
            command(Protocol::Dnp3, 13),
            "DNP3 COLD_RESTART (function 13)"
        );
        assert_eq!(
            command(Protocol::S7comm, 0x29),
            "S7comm PLC Stop (function 0x29)"
        );
        assert_eq!(
            command(Protocol::Bacnet, 20),
            "BACnet reinitializeDevice (confirmed service 20)"
        );
        assert_eq!(command_kind(CommandKind::Restart), "Restart");
    }

    #[test]
    fn cip_bacnet_and_enip_errors_name_status_class_and_reason() {
        // Get Attribute Single (0x0E) failed with 0x14 (attribute not supported).
        assert_eq!(
            error(
                Protocol::Enip,
                ProtocolErrorKind::ErrorReply,
                (0x0E << 8) | 0x14
            ),
            "CIP Get Attribute Single (0x0e) failed: general status 0x14 (attribute not supported)"
        );
        assert_eq!(
            error(
                Protocol::Enip,
                ProtocolErrorKind::ErrorReply,
                ENIP_ENCAPSULATION | 0x64
            ),
            "EtherNet/IP encapsulation error 0x0064 (invalid session handle)"
        );
        // The code the analyzer used to print as `bacnet ErrorReply (code 0x20020)`.
        assert_eq!(
            error(Protocol::Bacnet, ProtocolErrorKind::ErrorReply, 0x2_0020),
            "BACnet Error: class property (2), code unknown-property (32)"
        );
        assert_eq!(
            error(Protocol::Bacnet, ProtocolErrorKind::Rejected, (6 << 8) | 9),
            "BACnet Reject: unrecognized-service (reason 9)"
        );
        assert_eq!(
            error(Protocol::Bacnet, ProtocolErrorKind::Rejected, (7 << 8) | 4),
            "BACnet Abort: segmentation-not-supported (reason 4)"
        );
        assert_eq!(
            error(
                Protocol::S7comm,
                ProtocolErrorKind::ErrorReply,
                S7_ITEM | 0x0A
            ),
            "S7comm item failed with return code 0x0a (object does not exist)"
        );
    }

    #[test]
    fn unknown_codes_still_read_as_numbers() {
        assert_eq!(command(Protocol::Modbus, 200), "Modbus function 200");
        assert_eq!(
            error(
                Protocol::Modbus,
                ProtocolErrorKind::ErrorReply,
                (3 << 16) | 0x42
            ),
            "Modbus exception 66 (undefined) to Read Holding Registers (function 3)"
        );
        assert_eq!(
            error(Protocol::Dnp3, ProtocolErrorKind::UnknownFunction, 99),
            "DNP3 unknown function code 99"
        );
        assert_eq!(
            error(Protocol::Goose, ProtocolErrorKind::Malformed, 3),
            "malformed GOOSE message"
        );
    }
}
