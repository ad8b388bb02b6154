//! EtherNet/IP encapsulation (CIP Vol. 2, chapter 2: a 24-byte header — command, length,
//! session handle, status, sender context, options — then command data) and the CIP
//! explicit messages carried by SendRRData (Common Packet Format, 2-6; CIP Vol. 1,
//! 2-4 message router request/response).

use std::net::Ipv4Addr;

use super::{Pdu, Proto};

pub const LIST_IDENTITY: u16 = 0x0063;
pub const REGISTER_SESSION: u16 = 0x0065;
pub const UNREGISTER_SESSION: u16 = 0x0066;
pub const SEND_RR_DATA: u16 = 0x006f;
/// CIP service Get_Attribute_Single; replies set bit 7.
pub const GET_ATTRIBUTE_SINGLE: u8 = 0x0e;
pub const ENIP_PORT: u16 = 44818;

fn command_key(command: u16) -> &'static str {
    match command {
        LIST_IDENTITY => "command/0x0063",
        REGISTER_SESSION => "command/0x0065",
        UNREGISTER_SESSION => "command/0x0066",
        SEND_RR_DATA => "command/0x006f",
        _ => "command/other",
    }
}

fn encapsulation(out: &mut Vec<u8>, command: u16, session: u32, context: u64, data: &[u8]) -> Pdu {
    out.extend_from_slice(&command.to_le_bytes());
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(&session.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // status: success
    out.extend_from_slice(&context.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // options
    out.extend_from_slice(data);
    Pdu {
        proto: Proto::Enip,
        function: command_key(command),
        counts_as_pdu: true,
    }
}

/// RegisterSession request (session 0) or reply (the assigned session): protocol
/// version 1, options 0.
pub fn register_session(out: &mut Vec<u8>, session: u32, context: u64) -> Pdu {
    encapsulation(
        out,
        REGISTER_SESSION,
        session,
        context,
        &[0x01, 0x00, 0x00, 0x00],
    )
}

pub fn unregister_session(out: &mut Vec<u8>, session: u32, context: u64) -> Pdu {
    encapsulation(out, UNREGISTER_SESSION, session, context, &[])
}

/// SendRRData around one unconnected CIP message: interface handle 0, timeout, and two
/// CPF items: a null address item and an unconnected data item (0x00B2).
fn send_rr_data(out: &mut Vec<u8>, session: u32, context: u64, timeout: u16, cip: &[u8]) -> Pdu {
    let mut data = Vec::with_capacity(16 + cip.len());
    data.extend_from_slice(&0u32.to_le_bytes());
    data.extend_from_slice(&timeout.to_le_bytes());
    data.extend_from_slice(&2u16.to_le_bytes());
    data.extend_from_slice(&[0x00, 0x00, 0x00, 0x00]);
    data.extend_from_slice(&0x00b2u16.to_le_bytes());
    data.extend_from_slice(&(cip.len() as u16).to_le_bytes());
    data.extend_from_slice(cip);
    encapsulation(out, SEND_RR_DATA, session, context, &data)
}

/// Identity object (class 1) attributes the generator reads.
#[derive(Clone, Copy, Debug)]
pub enum IdentityAttribute {
    VendorId,
    Status,
    ProductName,
}

impl IdentityAttribute {
    fn number(self) -> u8 {
        match self {
            IdentityAttribute::VendorId => 1,
            IdentityAttribute::Status => 5,
            IdentityAttribute::ProductName => 7,
        }
    }
}

/// SendRRData with Get_Attribute_Single on the Identity object, instance 1: 8-bit
/// logical segments class 0x20, instance 0x24, attribute 0x30 (path size 3 words).
/// Returns the encapsulation PDU and the CIP service key.
pub fn get_attribute_request(
    out: &mut Vec<u8>,
    session: u32,
    context: u64,
    attribute: IdentityAttribute,
) -> [Pdu; 2] {
    let cip = [
        GET_ATTRIBUTE_SINGLE,
        0x03,
        0x20,
        0x01,
        0x24,
        0x01,
        0x30,
        attribute.number(),
    ];
    [
        send_rr_data(out, session, context, 10, &cip),
        Pdu {
            proto: Proto::Enip,
            function: "cip/0x0e",
            counts_as_pdu: false,
        },
    ]
}

/// The reply: service 0x8E, general status 0 with the value, or 0x14 (attribute not
/// supported) when `fail`.
pub fn get_attribute_reply(
    out: &mut Vec<u8>,
    session: u32,
    context: u64,
    attribute: IdentityAttribute,
    identity: &Identity,
    fail: bool,
) -> [Pdu; 2] {
    let mut cip = vec![GET_ATTRIBUTE_SINGLE | 0x80, 0x00];
    if fail {
        cip.extend_from_slice(&[0x14, 0x00]);
    } else {
        cip.extend_from_slice(&[0x00, 0x00]);
        match attribute {
            IdentityAttribute::VendorId => cip.extend_from_slice(&identity.vendor.to_le_bytes()),
            IdentityAttribute::Status => cip.extend_from_slice(&0x0060u16.to_le_bytes()),
            IdentityAttribute::ProductName => {
                cip.push(identity.product_name.len() as u8);
                cip.extend_from_slice(identity.product_name.as_bytes());
            }
        }
    }
    [
        send_rr_data(out, session, context, 0, &cip),
        Pdu {
            proto: Proto::Enip,
            function: "cip/0x8e",
            counts_as_pdu: false,
        },
    ]
}

/// What a device says about itself in a ListIdentity reply.
#[derive(Clone, Debug)]
pub struct Identity {
    pub vendor: u16,
    pub device_type: u16,
    pub product_code: u16,
    pub revision: (u8, u8),
    pub serial: u32,
    pub product_name: String,
}

/// ListIdentity request: no data, session 0.
pub fn list_identity_request(out: &mut Vec<u8>, context: u64) -> Pdu {
    encapsulation(out, LIST_IDENTITY, 0, context, &[])
}

/// ListIdentity reply (CIP Vol. 2, 2-4.3.2): one CIP Identity item (type 0x0C).
pub fn list_identity_reply(
    out: &mut Vec<u8>,
    context: u64,
    address: Ipv4Addr,
    identity: &Identity,
) -> Pdu {
    let mut item = Vec::with_capacity(64);
    item.extend_from_slice(&1u16.to_le_bytes()); // encapsulation protocol version
                                                 // Socket address, big-endian as sockaddr_in: family 2, port, address, zero.
    item.extend_from_slice(&2u16.to_be_bytes());
    item.extend_from_slice(&ENIP_PORT.to_be_bytes());
    item.extend_from_slice(&address.octets());
    item.extend_from_slice(&[0; 8]);
    item.extend_from_slice(&identity.vendor.to_le_bytes());
    item.extend_from_slice(&identity.device_type.to_le_bytes());
    item.extend_from_slice(&identity.product_code.to_le_bytes());
    item.extend_from_slice(&[identity.revision.0, identity.revision.1]);
    item.extend_from_slice(&0x0060u16.to_le_bytes()); // status
    item.extend_from_slice(&identity.serial.to_le_bytes());
    item.push(identity.product_name.len() as u8);
    item.extend_from_slice(identity.product_name.as_bytes());
    item.push(0x03); // state: operational
    let mut data = Vec::with_capacity(item.len() + 6);
    data.extend_from_slice(&1u16.to_le_bytes());
    data.extend_from_slice(&0x000cu16.to_le_bytes());
    data.extend_from_slice(&(item.len() as u16).to_le_bytes());
    data.extend_from_slice(&item);
    encapsulation(out, LIST_IDENTITY, 0, context, &data)
}

/// An unconnected CIP request or reply in SendRRData (any service and path).
pub fn cip_message(out: &mut Vec<u8>, session: u32, context: u64, cip: &[u8]) -> Pdu {
    send_rr_data(out, session, context, 0, cip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_session_is_28_bytes_with_length_4() {
        let mut out = Vec::new();
        let pdu = register_session(&mut out, 0, 0x1122);
        assert_eq!(pdu.function, "command/0x0065");
        assert_eq!(out.len(), 28);
        assert_eq!(out.get(..4), Some(&[0x65, 0x00, 0x04, 0x00][..]));
    }

    #[test]
    fn get_attribute_request_carries_cip_path_in_unconnected_item() {
        let mut out = Vec::new();
        let [encap, cip] = get_attribute_request(&mut out, 0x42, 1, IdentityAttribute::ProductName);
        assert_eq!(
            (encap.function, cip.function),
            ("command/0x006f", "cip/0x0e")
        );
        let length = u16::from_le_bytes([out[2], out[3]]) as usize;
        assert_eq!(out.len(), 24 + length);
        // Interface handle 4 + timeout 2 + count 2 + null item 4 + data item header 4.
        assert_eq!(
            out.get(40..48),
            Some(&[0x0e, 0x03, 0x20, 0x01, 0x24, 0x01, 0x30, 0x07][..])
        );
    }
}
