//! BACnet/IP messages (ANSI/ASHRAE 135-2020): a BVLC header (Annex J.2: type 0x81,
//! function, length), an NPDU without routing information (6.2), and an APDU (20.1).
//! Application tags follow 20.2; context tags are the service's (21).

use super::{Pdu, Proto};

const BVLC_TYPE: u8 = 0x81;
const ORIGINAL_UNICAST_NPDU: u8 = 0x0a;
const ORIGINAL_BROADCAST_NPDU: u8 = 0x0b;
/// NPDU version 1 with control 0x04 (a reply is expected) or 0x00.
const NPDU_EXPECTING_REPLY: [u8; 2] = [0x01, 0x04];
const NPDU_PLAIN: [u8; 2] = [0x01, 0x00];
/// Object type device (21.6, BACnetObjectType 8).
pub const OBJECT_DEVICE: u16 = 8;
/// Property present-value (BACnetPropertyIdentifier 85).
pub const PRESENT_VALUE: u16 = 85;
const SERVICE_READ_PROPERTY: u8 = 12;

fn object_id(object_type: u16, instance: u32) -> [u8; 4] {
    ((u32::from(object_type) << 22) | (instance & 0x3f_ffff)).to_be_bytes()
}

fn bvlc(out: &mut Vec<u8>, function: u8, npdu: [u8; 2], apdu: &[u8]) {
    out.push(BVLC_TYPE);
    out.push(function);
    out.extend_from_slice(&((4 + 2 + apdu.len()) as u16).to_be_bytes());
    out.extend_from_slice(&npdu);
    out.extend_from_slice(apdu);
}

/// A property identifier as context tag 1 (one or two octets).
fn property_tag(apdu: &mut Vec<u8>, property: u16) {
    if let Ok(small) = u8::try_from(property) {
        apdu.extend_from_slice(&[0x19, small]);
    } else {
        apdu.push(0x1a);
        apdu.extend_from_slice(&property.to_be_bytes());
    }
}

/// Who-Is (unconfirmed service 8) without a range, broadcast.
pub fn who_is(out: &mut Vec<u8>) -> Pdu {
    bvlc(out, ORIGINAL_BROADCAST_NPDU, NPDU_PLAIN, &[0x10, 0x08]);
    Pdu {
        proto: Proto::Bacnet,
        function: "unconfirmed/8",
        counts_as_pdu: true,
    }
}

/// I-Am (unconfirmed service 0), broadcast: device object id, max APDU 1476,
/// segmentation not supported (3), vendor id.
pub fn i_am(out: &mut Vec<u8>, instance: u32, vendor: u8) -> Pdu {
    let mut apdu = vec![0x10, 0x00, 0xc4];
    apdu.extend_from_slice(&object_id(OBJECT_DEVICE, instance));
    apdu.extend_from_slice(&[0x22, 0x05, 0xc4, 0x91, 0x03, 0x21, vendor]);
    bvlc(out, ORIGINAL_BROADCAST_NPDU, NPDU_PLAIN, &apdu);
    Pdu {
        proto: Proto::Bacnet,
        function: "unconfirmed/0",
        counts_as_pdu: true,
    }
}

/// ReadProperty confirmed request (15.5.1.1): object id (context 0), property (context 1).
pub fn read_property(
    out: &mut Vec<u8>,
    invoke_id: u8,
    object_type: u16,
    instance: u32,
    property: u16,
) -> Pdu {
    // Confirmed-Request, no segmentation; max segments unspecified, max APDU 1476.
    let mut apdu = vec![0x00, 0x05, invoke_id, SERVICE_READ_PROPERTY, 0x0c];
    apdu.extend_from_slice(&object_id(object_type, instance));
    property_tag(&mut apdu, property);
    bvlc(out, ORIGINAL_UNICAST_NPDU, NPDU_EXPECTING_REPLY, &apdu);
    Pdu {
        proto: Proto::Bacnet,
        function: "confirmed/12",
        counts_as_pdu: true,
    }
}

/// ReadProperty ComplexACK (15.5.1.3) carrying a REAL value in opening/closing tag 3.
pub fn read_property_ack(
    out: &mut Vec<u8>,
    invoke_id: u8,
    object_type: u16,
    instance: u32,
    property: u16,
    value: f32,
) -> Pdu {
    let mut apdu = vec![0x30, invoke_id, SERVICE_READ_PROPERTY, 0x0c];
    apdu.extend_from_slice(&object_id(object_type, instance));
    property_tag(&mut apdu, property);
    apdu.extend_from_slice(&[0x3e, 0x44]);
    apdu.extend_from_slice(&value.to_be_bytes());
    apdu.push(0x3f);
    bvlc(out, ORIGINAL_UNICAST_NPDU, NPDU_PLAIN, &apdu);
    Pdu {
        proto: Proto::Bacnet,
        function: "complex_ack/12",
        counts_as_pdu: true,
    }
}

/// Error PDU (20.1.7) for ReadProperty: class property (2), code unknown-property (32).
pub fn read_property_error(out: &mut Vec<u8>, invoke_id: u8) -> Pdu {
    let apdu = [
        0x50,
        invoke_id,
        SERVICE_READ_PROPERTY,
        0x91,
        0x02,
        0x91,
        0x20,
    ];
    bvlc(out, ORIGINAL_UNICAST_NPDU, NPDU_PLAIN, &apdu);
    Pdu {
        proto: Proto::Bacnet,
        function: "error/12",
        counts_as_pdu: true,
    }
}

/// ReinitializeDevice confirmed request (service 20, 16.4.1.1): reinitialized-state
/// (context 0, enumerated) coldstart (0), no password.
pub fn reinitialize_device(out: &mut Vec<u8>, invoke_id: u8) -> Pdu {
    let apdu = [0x00, 0x05, invoke_id, 0x14, 0x09, 0x00];
    bvlc(out, ORIGINAL_UNICAST_NPDU, NPDU_EXPECTING_REPLY, &apdu);
    Pdu {
        proto: Proto::Bacnet,
        function: "confirmed/20",
        counts_as_pdu: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_is_the_minimal_broadcast() {
        let mut out = Vec::new();
        assert_eq!(who_is(&mut out).function, "unconfirmed/8");
        assert_eq!(out, [0x81, 0x0b, 0x00, 0x08, 0x01, 0x00, 0x10, 0x08]);
    }

    #[test]
    fn read_property_encodes_object_and_property_tags() {
        let mut out = Vec::new();
        read_property(&mut out, 7, 0, 3, PRESENT_VALUE);
        assert_eq!(
            out,
            [
                0x81, 0x0a, 0x00, 0x11, 0x01, 0x04, 0x00, 0x05, 0x07, 0x0c, 0x0c, 0x00, 0x00, 0x00,
                0x03, 0x19, 0x55
            ]
        );
        out.clear();
        read_property(&mut out, 7, 2, 1, 512);
        assert_eq!(out.get(15..18), Some(&[0x1a, 0x02, 0x00][..]));
        assert_eq!(out.get(2..4), Some(&[0x00, 0x12][..]));
    }
}
