//! MQTT 3.1.1 control packets (OASIS MQTT 3.1.1 §3): a fixed header (type and flags,
//! Remaining Length as a variable byte integer, §2.2.3), then the variable header and
//! payload with UTF-8 strings prefixed by their two-octet length (§1.5.3).

use super::{Pdu, Proto};

fn pdu(function: &'static str) -> Pdu {
    Pdu {
        proto: Proto::Mqtt,
        function,
        counts_as_pdu: true,
    }
}

fn fixed_header(out: &mut Vec<u8>, first: u8, remaining: usize) {
    out.push(first);
    let mut left = remaining;
    loop {
        let mut byte = (left % 128) as u8;
        left /= 128;
        if left > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if left == 0 {
            break;
        }
    }
}

fn string(body: &mut Vec<u8>, text: &[u8]) {
    body.extend_from_slice(&(text.len() as u16).to_be_bytes());
    body.extend_from_slice(text);
}

/// CONNECT, protocol "MQTT" level 4 (3.1.1), clean session, keep-alive 60 s.
pub fn connect(out: &mut Vec<u8>, client_id: &str) -> Pdu {
    let mut body = Vec::with_capacity(16 + client_id.len());
    string(&mut body, b"MQTT");
    body.extend_from_slice(&[4, 0x02, 0, 60]);
    string(&mut body, client_id.as_bytes());
    fixed_header(out, 0x10, body.len());
    out.extend_from_slice(&body);
    pdu("1")
}

/// CONNACK with return `code` (0 accepted, 4 bad user name or password, 5 not
/// authorized).
pub fn connack(out: &mut Vec<u8>, code: u8) -> Pdu {
    out.extend_from_slice(&[0x20, 0x02, 0x00, code]);
    pdu("2")
}

/// PUBLISH at QoS 0 of `payload` to `topic`.
pub fn publish(out: &mut Vec<u8>, topic: &str, payload: &[u8]) -> Pdu {
    fixed_header(out, 0x30, 2 + topic.len() + payload.len());
    string(out, topic.as_bytes());
    out.extend_from_slice(payload);
    pdu("3")
}

/// SUBSCRIBE with packet id `packet_id` to one `filter` at QoS 0.
pub fn subscribe(out: &mut Vec<u8>, packet_id: u16, filter: &str) -> Pdu {
    fixed_header(out, 0x82, 2 + 2 + filter.len() + 1);
    out.extend_from_slice(&packet_id.to_be_bytes());
    string(out, filter.as_bytes());
    out.push(0);
    pdu("8")
}

/// SUBACK granting QoS 0.
pub fn suback(out: &mut Vec<u8>, packet_id: u16) -> Pdu {
    out.extend_from_slice(&[0x90, 0x03]);
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.push(0);
    pdu("9")
}

/// PINGREQ.
pub fn ping_request(out: &mut Vec<u8>) -> Pdu {
    out.extend_from_slice(&[0xc0, 0x00]);
    pdu("12")
}

/// PINGRESP.
pub fn ping_response(out: &mut Vec<u8>) -> Pdu {
    out.extend_from_slice(&[0xd0, 0x00]);
    pdu("13")
}

/// DISCONNECT.
pub fn disconnect(out: &mut Vec<u8>) -> Pdu {
    out.extend_from_slice(&[0xe0, 0x00]);
    pdu("14")
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::mqtt::{Packet, PacketType};

    #[test]
    fn packets_parse_with_the_sensor_view() {
        let mut out = Vec::new();
        connect(&mut out, "gateway-1");
        let packet = Packet::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        let connect = packet.connect().unwrap_or_else(|| panic!("no connect"));
        assert!(connect.protocol_ok());
        assert_eq!(connect.client_id, b"gateway-1");
        let mut out = Vec::new();
        let payload = [b'x'; 200];
        publish(&mut out, "plant/line1/temperature", &payload);
        let packet = Packet::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(packet.packet_type(), PacketType::Publish);
        assert_eq!(packet.topic(), Some(&b"plant/line1/temperature"[..]));
        assert!(packet.anomalies().0 == 0);
        let mut out = Vec::new();
        subscribe(&mut out, 7, "plant/#");
        let packet = Packet::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(packet.packet_id(), Some(7));
        let mut out = Vec::new();
        connack(&mut out, 5);
        let packet = Packet::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(packet.connack(), Some((false, 5)));
    }
}
