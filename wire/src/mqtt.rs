//! MQTT 3.1, 3.1.1 and 5.0 control packets as zero-copy views: the fixed header, and
//! the variable headers the sensor reads (CONNECT, CONNACK, PUBLISH, SUBSCRIBE, the
//! packet identifier of the acknowledgements).
//!
//! Follows MQTT Version 3.1.1 (OASIS, cited "3.1.1 §n") and MQTT Version 5.0 (cited
//! "5.0 §n"); Wireshark's `mqtt.*` field names are given where they match.
//!
//! [`Packet::new_checked`] validates the fixed header (packet type, Remaining Length as
//! a variable byte integer of at most four octets) and that the buffer is exactly the
//! packet; after it succeeds **no accessor can panic**. Variable headers are read with
//! bounds checks and come back as `None` when they do not fit. Where 3.1.1 and 5.0
//! differ (properties after the variable header) the accessor takes the protocol
//! level, which a flow learns from its CONNECT.

use crate::Framing;

/// The default TCP port (8883 is MQTT over TLS: recognised, not dissected).
pub const PORT: u16 = 1883;
/// The largest Remaining Length (5.0 §1.5.5: four octets of variable byte integer).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
/// Protocol level of MQTT 5.0 (5.0 §3.1.2.2).
pub const LEVEL_5: u8 = 5;

/// Why a buffer is not an MQTT control packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated packet: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("packet type 0 is reserved")]
    ReservedType,
    #[error("Remaining Length longer than four octets")]
    BadRemainingLength,
    #[error("{0} bytes after the packet its Remaining Length announces")]
    TrailingBytes(usize),
}

impl Error {
    /// The counter label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::ReservedType => "reserved_type",
            Error::BadRemainingLength => "bad_remaining_length",
            Error::TrailingBytes(_) => "trailing_bytes",
        }
    }
}

wire_enum! {
    /// Control packet types (3.1.1 §2.2.1, 5.0 §2.1.2; Wireshark `mqtt.msgtype`).
    pub enum PacketType {
        Connect = 1 => "CONNECT",
        Connack = 2 => "CONNACK",
        Publish = 3 => "PUBLISH",
        Puback = 4 => "PUBACK",
        Pubrec = 5 => "PUBREC",
        Pubrel = 6 => "PUBREL",
        Pubcomp = 7 => "PUBCOMP",
        Subscribe = 8 => "SUBSCRIBE",
        Suback = 9 => "SUBACK",
        Unsubscribe = 10 => "UNSUBSCRIBE",
        Unsuback = 11 => "UNSUBACK",
        Pingreq = 12 => "PINGREQ",
        Pingresp = 13 => "PINGRESP",
        Disconnect = 14 => "DISCONNECT",
        /// MQTT 5.0 only.
        Auth = 15 => "AUTH",
    }
}

/// Spec violations that still parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// Fixed-header flags other than the ones the packet type requires (3.1.1 §2.2.2).
    pub const BAD_FLAGS: u16 = 1 << 0;
    /// PUBLISH with QoS 3.
    pub const BAD_QOS: u16 = 1 << 1;
    /// CONNECT with a protocol name other than "MQTT"/"MQIsdp" or an unknown level.
    pub const BAD_PROTOCOL: u16 = 1 << 2;
    /// A variable header that does not fit in the packet.
    pub const SHORT_VARIABLE_HEADER: u16 = 1 << 3;
    /// PUBLISH topic with a wildcard (3.1.1 §3.3.2.1).
    pub const WILDCARD_TOPIC: u16 = 1 << 4;

    const LABELS: [(u16, &'static str); 5] = [
        (Self::BAD_FLAGS, "bad_flags"),
        (Self::BAD_QOS, "bad_qos"),
        (Self::BAD_PROTOCOL, "bad_protocol"),
        (Self::SHORT_VARIABLE_HEADER, "short_variable_header"),
        (Self::WILDCARD_TOPIC, "wildcard_topic"),
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

/// The Remaining Length at `buf[1..]`: (value, octets), `Err(None)` when more bytes
/// are needed, `Err(Some(()))` when longer than four octets.
fn remaining_length(buf: &[u8]) -> Result<(usize, usize), Option<()>> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Err(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(Some(()))
}

/// A two-octet length-prefixed UTF-8 string or binary field (3.1.1 §1.5.3).
fn string(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = usize::from(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]));
    let value = buf.get(at + 2..at + 2 + len)?;
    Some((value, at + 2 + len))
}

/// A variable byte integer at `at` (5.0 §1.5.5): (value, next offset).
fn varint(buf: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *buf.get(at + i)?;
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, at + i + 1));
        }
    }
    None
}

/// Skips MQTT 5.0 properties at `at` (length, then that many octets).
fn skip_properties(buf: &[u8], at: usize) -> Option<usize> {
    let (len, start) = varint(buf, at)?;
    let end = start.checked_add(len)?;
    (end <= buf.len()).then_some(end)
}

/// One MQTT control packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    buf: &'a [u8],
    /// Where the variable header starts (after the Remaining Length).
    body: usize,
}

impl<'a> Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Packet<'a>, Error> {
        let Some(&first) = buf.first() else {
            return Err(Error::Truncated { need: 2, have: 0 });
        };
        if first >> 4 == 0 {
            return Err(Error::ReservedType);
        }
        let (remaining, octets) = match remaining_length(buf) {
            Ok(found) => found,
            Err(None) => {
                return Err(Error::Truncated {
                    need: buf.len() + 1,
                    have: buf.len(),
                })
            }
            Err(Some(())) => return Err(Error::BadRemainingLength),
        };
        let body = 1 + octets;
        let total = body + remaining;
        match buf.len().cmp(&total) {
            std::cmp::Ordering::Less => Err(Error::Truncated {
                need: total,
                have: buf.len(),
            }),
            std::cmp::Ordering::Greater => Err(Error::TrailingBytes(buf.len() - total)),
            std::cmp::Ordering::Equal => Ok(Packet { buf, body }),
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// `mqtt.msgtype`
    pub fn raw_type(&self) -> u8 {
        self.buf[0] >> 4
    }

    pub fn packet_type(&self) -> PacketType {
        PacketType::from(self.raw_type())
    }

    /// `mqtt.hdrflags` low nibble.
    pub fn flags(&self) -> u8 {
        self.buf[0] & 0x0F
    }

    /// `mqtt.dupflag` (PUBLISH).
    pub fn dup(&self) -> bool {
        self.flags() & 0x08 != 0
    }

    /// `mqtt.qos` (PUBLISH).
    pub fn qos(&self) -> u8 {
        (self.flags() >> 1) & 0x03
    }

    /// `mqtt.retain` (PUBLISH).
    pub fn retain(&self) -> bool {
        self.flags() & 0x01 != 0
    }

    /// `mqtt.len`: the Remaining Length.
    pub fn remaining_length(&self) -> usize {
        self.buf.len() - self.body
    }

    /// The variable header and payload.
    pub fn body(&self) -> &'a [u8] {
        &self.buf[self.body..]
    }

    /// The CONNECT variable header and the payload fields the sensor reads.
    pub fn connect(&self) -> Option<Connect<'a>> {
        if self.packet_type() != PacketType::Connect {
            return None;
        }
        let b = self.body();
        let (protocol_name, at) = string(b, 0)?;
        let level = *b.get(at)?;
        let flags = *b.get(at + 1)?;
        let keep_alive = u16::from_be_bytes([*b.get(at + 2)?, *b.get(at + 3)?]);
        let mut at = at + 4;
        if level == LEVEL_5 {
            at = skip_properties(b, at)?;
        }
        let (client_id, mut at) = string(b, at)?;
        if flags & 0x04 != 0 {
            if level == LEVEL_5 {
                at = skip_properties(b, at)?;
            }
            let (_, next) = string(b, at)?; // will topic
            let (_, next) = string(b, next)?; // will payload
            at = next;
        }
        let username = if flags & 0x80 != 0 {
            let (name, next) = string(b, at)?;
            at = next;
            Some(name)
        } else {
            None
        };
        let _ = at;
        Some(Connect {
            protocol_name,
            level,
            flags,
            keep_alive,
            client_id,
            username,
        })
    }

    /// CONNACK: (session present, return/reason code) (3.1.1 §3.2.2, 5.0 §3.2.2).
    pub fn connack(&self) -> Option<(bool, u8)> {
        if self.packet_type() != PacketType::Connack {
            return None;
        }
        match self.body() {
            [flags, code, ..] => Some((flags & 0x01 != 0, *code)),
            _ => None,
        }
    }

    /// PUBLISH topic name (`mqtt.topic`).
    pub fn topic(&self) -> Option<&'a [u8]> {
        if self.packet_type() != PacketType::Publish {
            return None;
        }
        string(self.body(), 0).map(|(topic, _)| topic)
    }

    /// The packet identifier (`mqtt.msgid`) of packets that carry one: PUBLISH with
    /// QoS > 0, the PUB* acknowledgements, (UN)SUBSCRIBE and their acks.
    pub fn packet_id(&self) -> Option<u16> {
        let b = self.body();
        let at = match self.packet_type() {
            PacketType::Publish if self.qos() > 0 => string(b, 0)?.1,
            PacketType::Puback
            | PacketType::Pubrec
            | PacketType::Pubrel
            | PacketType::Pubcomp
            | PacketType::Subscribe
            | PacketType::Suback
            | PacketType::Unsubscribe
            | PacketType::Unsuback => 0,
            _ => return None,
        };
        Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    }

    /// The topic filters of a SUBSCRIBE (with their options octet).
    pub fn subscriptions(&self, level: u8) -> TopicFilters<'a> {
        let b = self.body();
        let start = if self.packet_type() == PacketType::Subscribe {
            if level == LEVEL_5 {
                skip_properties(b, 2)
            } else {
                (b.len() >= 2).then_some(2)
            }
        } else {
            None
        };
        TopicFilters {
            rest: start.and_then(|at| b.get(at..)).unwrap_or(&[]),
        }
    }

    /// SUBACK return codes (after the packet id and, in 5.0, properties).
    pub fn suback_codes(&self, level: u8) -> &'a [u8] {
        if self.packet_type() != PacketType::Suback {
            return &[];
        }
        let b = self.body();
        let start = if level == LEVEL_5 {
            skip_properties(b, 2)
        } else {
            (b.len() >= 2).then_some(2)
        };
        start.and_then(|at| b.get(at..)).unwrap_or(&[])
    }

    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        let required = match self.packet_type() {
            PacketType::Publish => None,
            PacketType::Pubrel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0x02),
            _ => Some(0x00),
        };
        if required.is_some_and(|r| r != self.flags()) {
            flags |= Anomalies::BAD_FLAGS;
        }
        match self.packet_type() {
            PacketType::Publish => {
                if self.qos() == 3 {
                    flags |= Anomalies::BAD_QOS;
                }
                match self.topic() {
                    Some(topic) if topic.iter().any(|&c| c == b'+' || c == b'#') => {
                        flags |= Anomalies::WILDCARD_TOPIC;
                    }
                    Some(_) => {}
                    None => flags |= Anomalies::SHORT_VARIABLE_HEADER,
                }
            }
            PacketType::Connect => match self.connect() {
                Some(c) if !c.protocol_ok() => flags |= Anomalies::BAD_PROTOCOL,
                Some(_) => {}
                None => flags |= Anomalies::SHORT_VARIABLE_HEADER,
            },
            PacketType::Connack if self.connack().is_none() => {
                flags |= Anomalies::SHORT_VARIABLE_HEADER;
            }
            _ => {}
        }
        Anomalies(flags)
    }
}

/// The CONNECT fields the sensor reads (3.1.1 §3.1.2-3, 5.0 §3.1.2-3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connect<'a> {
    /// `mqtt.proto_name`: "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1).
    pub protocol_name: &'a [u8],
    /// `mqtt.ver`: 3 (3.1), 4 (3.1.1), 5 (5.0).
    pub level: u8,
    /// `mqtt.conflags`
    pub flags: u8,
    pub keep_alive: u16,
    /// `mqtt.clientid`
    pub client_id: &'a [u8],
    pub username: Option<&'a [u8]>,
}

impl Connect<'_> {
    /// A protocol name and level pair the specs define.
    pub fn protocol_ok(&self) -> bool {
        matches!(
            (self.protocol_name, self.level),
            (b"MQTT", 4 | 5) | (b"MQIsdp", 3)
        )
    }

    pub fn has_password(&self) -> bool {
        self.flags & 0x40 != 0
    }
}

/// SUBSCRIBE topic filters: (filter, options octet).
#[derive(Clone, Debug)]
pub struct TopicFilters<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for TopicFilters<'a> {
    type Item = (&'a [u8], u8);

    fn next(&mut self) -> Option<(&'a [u8], u8)> {
        let (filter, at) = string(self.rest, 0)?;
        let options = *self.rest.get(at)?;
        self.rest = self.rest.get(at + 1..).unwrap_or(&[]);
        Some((filter, options))
    }
}

/// Whether a CONNACK code refuses the connection for credentials or authorisation
/// (3.1.1 §3.2.2.3: 4, 5; 5.0 §3.2.2.2: 0x86, 0x87, 0x8C).
pub fn connack_is_auth_failure(code: u8) -> bool {
    matches!(code, 4 | 5 | 0x86 | 0x87 | 0x8C)
}

/// Stream framing: the fixed header's Remaining Length (3.1.1 §2.2.3). A reserved
/// packet type or a Remaining Length over four octets is skipped a byte at a time.
pub fn frame(buf: &[u8]) -> Framing {
    match buf.first() {
        None => return Framing::Need(2),
        Some(first) if first >> 4 == 0 => return Framing::Resync(1),
        Some(_) => {}
    }
    match remaining_length(buf) {
        Ok((remaining, octets)) => {
            let total = 1 + octets + remaining;
            if buf.len() < total {
                Framing::Need(total)
            } else {
                Framing::Frame(total)
            }
        }
        Err(None) => Framing::Need(buf.len() + 1),
        Err(Some(())) => Framing::Resync(1),
    }
}

/// A signature for MQTT on any port: a CONNECT with protocol name "MQTT"/"MQIsdp" and
/// a matching level, exactly filling its fixed header's length (the first packet of a
/// session; a mid-session join on another port stays unrecognised).
pub fn looks_like(payload: &[u8]) -> bool {
    let Framing::Frame(len) = frame(payload) else {
        return false;
    };
    Packet::new_checked(&payload[..len])
        .ok()
        .and_then(|p| p.connect())
        .is_some_and(|c| c.protocol_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_capture::hex;
    use crate::test_capture::{expected_histogram, framed_pdus};
    use std::collections::HashMap;

    // Fixtures are packets of mqtt-connect-publish-subscribe.pcap (Wireshark frames).

    /// #2: CONNECT, MQIsdp level 3, user name and password, client id.
    const CONNECT: &str = "104000064d514973647003c20014001663626161626362616261636262626262616161616162000c303244353035303232334433000c303244353035303232334433";
    /// #3: SUBSCRIBE packet id 1, one filter, QoS 0.
    const SUBSCRIBE: &str = "821e00010019617374722f733732302f3032443530353032323344332f393900";
    /// #4: CONNACK accepted.
    const CONNACK: &str = "20020000";
    /// #5: SUBACK packet id 1, granted QoS 0.
    const SUBACK: &str = "9003000100";
    /// #8: DISCONNECT.
    const DISCONNECT: &str = "e000";

    #[test]
    fn connect_and_connack() {
        let bytes = hex(CONNECT);
        let packet = Packet::new_checked(&bytes).expect("valid CONNECT");
        assert_eq!(packet.packet_type(), PacketType::Connect);
        assert_eq!(packet.remaining_length(), 64);
        let connect = packet.connect().expect("CONNECT header");
        assert_eq!(connect.protocol_name, b"MQIsdp");
        assert_eq!(connect.level, 3);
        assert_eq!(connect.keep_alive, 20);
        assert_eq!(connect.client_id, b"cbaabcbabacbbbbbaaaaab");
        assert_eq!(connect.username, Some(&b"02D5050223D3"[..]));
        assert!(connect.protocol_ok() && connect.has_password());
        assert!(packet.anomalies().is_empty());
        assert!(looks_like(&bytes));

        let bytes = hex(CONNACK);
        let packet = Packet::new_checked(&bytes).expect("valid CONNACK");
        assert_eq!(packet.connack(), Some((false, 0)));
        assert_eq!(packet.connect(), None);
        assert!(!looks_like(&bytes));
    }

    #[test]
    fn subscribe_and_suback() {
        let bytes = hex(SUBSCRIBE);
        let packet = Packet::new_checked(&bytes).expect("valid SUBSCRIBE");
        assert_eq!(packet.flags(), 0x02);
        assert_eq!(packet.packet_id(), Some(1));
        let filters: Vec<_> = packet.subscriptions(3).collect();
        assert_eq!(filters, vec![(&b"astr/s720/02D5050223D3/99"[..], 0)]);
        assert!(packet.anomalies().is_empty());
        let bytes = hex(SUBACK);
        let packet = Packet::new_checked(&bytes).expect("valid SUBACK");
        assert_eq!(packet.packet_id(), Some(1));
        assert_eq!(packet.suback_codes(3), &[0]);
        let bytes = hex(DISCONNECT);
        let packet = Packet::new_checked(&bytes).expect("valid DISCONNECT");
        assert_eq!(packet.packet_type().name(), Some("DISCONNECT"));
        assert_eq!(packet.remaining_length(), 0);
    }

    #[test]
    fn publish_qos_and_topic() {
        // PUBLISH QoS 1, retain, topic "a/b", packet id 10, payload "on".
        let bytes = hex("33090003612f62000a6f6e");
        let packet = Packet::new_checked(&bytes).expect("valid PUBLISH");
        assert_eq!(
            (packet.qos(), packet.retain(), packet.dup()),
            (1, true, false)
        );
        assert_eq!(packet.topic(), Some(&b"a/b"[..]));
        assert_eq!(packet.packet_id(), Some(10));
        assert!(packet.anomalies().is_empty());
        // QoS 3 and a wildcard topic.
        let bytes = hex("3607000161000a6f6e");
        let packet = Packet::new_checked(&bytes).expect("parses");
        assert!(packet.anomalies().contains(Anomalies::BAD_QOS));
        let bytes = hex("3003000123");
        let packet = Packet::new_checked(&bytes).expect("parses");
        assert_eq!(packet.topic(), Some(&b"#"[..]));
        assert!(packet.anomalies().contains(Anomalies::WILDCARD_TOPIC));
    }

    #[test]
    fn mqtt5_connect_with_properties() {
        // CONNECT "MQTT" level 5, clean start, keep alive 60, properties {0x11: 0x3c}
        // (session expiry, 4 octets), client id "plc-7".
        let bytes = hex("101700044d5154540502003c05110000003c0005706c632d37");
        let packet = Packet::new_checked(&bytes).expect("valid CONNECT");
        let connect = packet.connect().expect("CONNECT header");
        assert_eq!((connect.level, connect.client_id), (5, &b"plc-7"[..]));
        assert!(looks_like(&bytes));
    }

    #[test]
    fn rejects_and_framing() {
        assert_eq!(
            Packet::new_checked(&[]),
            Err(Error::Truncated { need: 2, have: 0 })
        );
        assert_eq!(Packet::new_checked(&[0x00, 0x00]), Err(Error::ReservedType));
        assert_eq!(
            Packet::new_checked(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(Error::BadRemainingLength)
        );
        assert_eq!(
            Packet::new_checked(&[0xe0, 0x00, 0x00]),
            Err(Error::TrailingBytes(1))
        );
        assert_eq!(
            Packet::new_checked(&[0x30, 0x05, 0x00]),
            Err(Error::Truncated { need: 7, have: 3 })
        );
        // A CONNECT cut inside its client id: parses, variable header is short.
        let bytes = hex("100a00044d5154540402003c");
        let packet = Packet::new_checked(&bytes).expect("fixed header is fine");
        assert_eq!(packet.connect(), None);
        assert!(packet
            .anomalies()
            .contains(Anomalies::SHORT_VARIABLE_HEADER));
        assert!(!looks_like(&bytes));
        let mut stream = hex(CONNACK);
        stream.extend(hex(DISCONNECT));
        assert_eq!(frame(&stream), Framing::Frame(4));
        assert_eq!(frame(&stream[4..]), Framing::Frame(2));
        assert_eq!(frame(&[0x30]), Framing::Need(2));
        assert_eq!(frame(&[0x30, 0x80]), Framing::Need(3));
        assert_eq!(frame(&[0x30, 0x80, 0x80, 0x80, 0x80]), Framing::Resync(1));
        assert_eq!(frame(&[0x0f, 0x00]), Framing::Resync(1));
        assert!(!looks_like(b"GET / HTTP/1.1\r\n\r\n"));
    }

    /// Every packet of the MQTT capture, framed like the sensor frames it: the packet
    /// types and CONNACK codes equal tshark's counts.
    #[test]
    fn capture_matches_tshark_histograms() {
        let name = "mqtt-connect-publish-subscribe.pcap";
        let (pdus, skipped) = framed_pdus(name, PORT, frame);
        assert_eq!(skipped, 0);
        let mut types: HashMap<String, u64> = HashMap::new();
        let mut codes: HashMap<String, u64> = HashMap::new();
        for (_, pdu) in &pdus {
            let packet = Packet::new_checked(pdu).expect("framed packet parses");
            *types.entry(packet.raw_type().to_string()).or_default() += 1;
            if let Some((_, code)) = packet.connack() {
                *codes.entry(code.to_string()).or_default() += 1;
            }
        }
        assert_eq!(types, expected_histogram(name, "mqtt", "msgtype"));
        assert_eq!(codes, expected_histogram(name, "mqtt", "connack_code"));
    }
}
